//! `encrypt` and `decrypt`: records as JSON lines on stdin/stdout, and `decrypt` of a topic.
//!
//! The JSON-lines form (stdin and stdout of both commands):
//! `{"key": B64|null, "value": B64|null, "headers": [["name", B64|null], ...]}` (B64 = standard
//! Base64 of the raw bytes). The bindings' tests pipe records through it: keep it stable.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::Args;
use fieldcrypt::kafka::headers_of;
use fieldcrypt::policy::SignedPolicy;
use fieldcrypt::registry::{RegistryConfig, SchemaRegistry};
use fieldcrypt::{Codec, LocalKms, OwnedHeader, Policy};
use rdkafka::Message;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::fail::{self, Failure, Outcome};
use crate::inspect::Located;
use crate::progress;
use crate::topic::{ReadArgs, TopicReader};

/// How to build the codec: the policy, the KMS and schemas, from flags or a configuration file.
#[derive(Args, Debug)]
pub struct CodecArgs {
    /// The policy file: a policy (JSON) or a signed policy envelope (its signatures are not
    /// checked here: use `fieldcrypt policy validate --trust`).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// The topic the records belong to (the policy's rules are chosen by topic).
    #[arg(long, value_name = "TOPIC")]
    pub topic: String,
    /// A local key file (development only: local://NAME keys).
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub local_keys: Option<PathBuf>,
    /// Schema Registry base URL (Confluent-compatible API) for framed Avro/Protobuf/JSON Schema.
    #[arg(long, value_name = "URL", conflicts_with = "config")]
    pub registry: Option<String>,
    /// A configuration document (JSON: kms, profile, registry, schemas, limits, key_store), as
    /// the bindings take it; instead of --local-keys and --registry.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct EncryptArgs {
    #[command(flatten)]
    pub codec: CodecArgs,
}

#[derive(Args, Debug)]
pub struct DecryptArgs {
    #[command(flatten)]
    pub codec: CodecArgs,
    /// Decrypt as this profile of the policy (default: every field the keys allow).
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Consume --topic from these Kafka bootstrap servers instead of reading stdin.
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: Option<String>,
    #[command(flatten)]
    pub read: ReadArgs,
}

#[derive(Serialize, Deserialize)]
struct Line {
    key: Option<String>,
    value: Option<String>,
    #[serde(default)]
    headers: Vec<(String, Option<String>)>,
}

/// The policy text of FILE: a bare policy, or the policy inside a signed envelope.
pub fn load_policy(path: &std::path::Path) -> Result<Policy, Failure> {
    let bytes = fail::read_file("policy", path)?;
    let text = match SignedPolicy::from_json(&bytes) {
        Ok(signed) => signed.policy_text().to_string(),
        Err(_) => String::from_utf8(bytes)
            .map_err(|_| Failure::usage(format!("policy {} is not UTF-8 text", path.display())))?,
    };
    Policy::from_json(&text).map_err(|e| Failure::setup(&format!("policy {}", path.display()), e))
}

/// A configuration document from FILE (JSON object).
pub fn load_config(path: &std::path::Path) -> Result<Value, Failure> {
    let text = fail::read_text("configuration", path)?;
    serde_json::from_str(&text).map_err(|e| {
        Failure::usage(format!(
            "configuration {} is not valid JSON (line {}, column {})",
            path.display(),
            e.line(),
            e.column()
        ))
    })
}

pub fn build(args: &CodecArgs, profile: Option<&str>) -> Result<Codec, Failure> {
    let policy = load_policy(&args.policy)?;
    let mut b = match &args.config {
        Some(path) => {
            let config = load_config(path)?;
            fieldcrypt::config::builder(policy, &config)
                .map_err(|e| Failure::setup(&format!("configuration {}", path.display()), e))?
        }
        None => Codec::builder(policy),
    };
    if let Some(keys) = &args.local_keys {
        b = b.kms(LocalKms::from_file(keys).map_err(|e| Failure::setup(&format!("key file {}", keys.display()), e))?);
    }
    if let Some(url) = &args.registry {
        b = b
            .schemas(SchemaRegistry::new(RegistryConfig::new(url.clone())).map_err(|e| Failure::setup("registry", e))?);
    }
    if let Some(p) = profile {
        b = b.profile(p);
    }
    b.build().map_err(|e| Failure::setup("codec", e))
}

fn decode(field: &str, v: &Option<String>) -> Result<Option<Vec<u8>>, String> {
    v.as_ref().map(|s| B64.decode(s).map_err(|_| format!("`{field}` is not Base64"))).transpose()
}

/// Records from stdin to stdout; stops at the first record that fails (exit 1).
fn pipe(codec: &Codec, topic: &str, encrypt: bool) -> Outcome {
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let write_err = |e: std::io::Error| Failure::failed(format!("writing stdout: {e}"));
    for (n, line) in stdin.lines().enumerate() {
        let line = line.map_err(|e| Failure::failed(format!("reading stdin: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = |e: String| Failure::failed(format!("line {}: {e}", n + 1));
        let rec: Line = serde_json::from_str(&line).map_err(|e| at(format!("not a record line ({e})")))?;
        let key = decode("key", &rec.key).map_err(at)?;
        let value = decode("value", &rec.value).map_err(at)?;
        let mut headers = Vec::with_capacity(rec.headers.len());
        for (name, v) in &rec.headers {
            headers.push(OwnedHeader { name: name.clone(), value: decode("headers", v).map_err(at)? });
        }
        let result = if encrypt {
            codec.encrypt(topic, key.as_deref(), value.as_deref(), &headers)
        } else {
            codec.decrypt(topic, key.as_deref(), value.as_deref(), &headers)
        };
        let r = result.map_err(|e| Failure::new(fail::code_of(&e), format!("line {}: {e}", n + 1)))?;
        let line = Line {
            key: r.key.map(|k| B64.encode(k)),
            value: r.value.map(|v| B64.encode(v)),
            headers: r.headers.into_iter().map(|h| (h.name, h.value.map(|v| B64.encode(v)))).collect(),
        };
        serde_json::to_writer(&mut out, &line).map_err(|e| Failure::failed(e.to_string()))?;
        out.write_all(b"\n").map_err(write_err)?;
    }
    out.flush().map_err(write_err)
}

pub fn encrypt(args: &EncryptArgs) -> Outcome {
    let codec = build(&args.codec, None)?;
    pipe(&codec, &args.codec.topic, true)
}

pub fn decrypt(args: &DecryptArgs) -> Outcome {
    let codec = build(&args.codec, args.profile.as_deref())?;
    match &args.bootstrap {
        None => pipe(&codec, &args.codec.topic, false),
        Some(bootstrap) => decrypt_topic(&codec, bootstrap, &args.codec.topic, &args.read),
    }
}

/// `bytes` under `name` as JSON when they parse as JSON, else under `name_base64` as Base64.
fn put_bytes(out: &mut Map<String, Value>, name: &str, bytes: Option<&[u8]>) {
    match bytes {
        None => {
            out.insert(name.to_string(), Value::Null);
        }
        Some(b) => match serde_json::from_slice::<Value>(b) {
            Ok(v) => {
                out.insert(name.to_string(), v);
            }
            Err(_) => {
                out.insert(format!("{name}_base64"), Value::String(B64.encode(b)));
            }
        },
    }
}

/// Consumes `topic` and prints each record decrypted as a JSON line; a record that does not
/// decrypt is printed as `{"partition", "offset", "error": {"kind", "message"}}` and makes the
/// exit code 1 once every record was read.
fn decrypt_topic(codec: &Codec, bootstrap: &str, topic: &str, read: &ReadArgs) -> Outcome {
    let mut reader = TopicReader::open(bootstrap, topic, read)?;
    let bar = progress::bar(reader.expected, &format!("decrypting {topic}"));
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut failed = 0u64;
    let read = reader.each(|m| {
        let headers: Vec<OwnedHeader> = headers_of(m)
            .into_iter()
            .map(|(name, value)| OwnedHeader { name: name.to_string(), value: value.map(<[u8]>::to_vec) })
            .collect();
        let mut line = Map::new();
        match codec.decrypt(topic, m.key(), m.payload(), &headers) {
            Ok(r) => {
                put_bytes(&mut line, "key", r.key.as_deref());
                put_bytes(&mut line, "value", r.value.as_deref());
            }
            Err(e) => {
                failed += 1;
                line.insert("error".into(), json!({"kind": e.kind().as_str(), "message": e.message()}));
            }
        }
        let line = Located {
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            rest: Value::Object(line),
        };
        serde_json::to_writer(&mut out, &line).map_err(|e| Failure::failed(e.to_string()))?;
        out.write_all(b"\n").map_err(|e| Failure::failed(format!("writing stdout: {e}")))?;
        bar.inc(1);
        Ok(())
    });
    bar.finish_and_clear();
    out.flush().map_err(|e| Failure::failed(format!("writing stdout: {e}")))?;
    let read = read?;
    if failed > 0 {
        return Err(Failure::failed(format!("{failed} of {read} records of {topic:?} did not decrypt")));
    }
    Ok(())
}
