//! `policy validate | keygen | sign | publish`: the security team's side of signed policies
//! (docs/POLICY.md).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use fieldcrypt::policy::source::{PolicyPublisher, DEFAULT_POLICY_TOPIC};
use fieldcrypt::policy::{PolicyVerifier, PublicKey, SignedPolicy, SigningKey};
use fieldcrypt::Policy;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use crate::fail::{self, Failure, Outcome};
use crate::progress;
use crate::topic::{client_config, key_value};

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Check a policy or a signed policy envelope; with --trust, verify its signatures.
    #[command(after_help = "\
Examples:
  fieldcrypt policy validate policy.json
  fieldcrypt policy validate signed.json --trust security-2026=security-2026.pub
  fieldcrypt policy validate signed.json --trust trusted-keys.json

A --trust value is ID=FILE (FILE holds a public key, PEM or Base64), a JSON file of
{\"key id\": \"public key\", ...} as applications are configured with, or a public key
file whose name without extension is the key id (security-2026.pub -> \"security-2026\").
With --trust, an unsigned policy or one whose signatures do not verify exits with 3.")]
    Validate {
        /// The policy (JSON) or signed policy envelope.
        file: PathBuf,
        /// Trust this public key (repeatable); the document must then carry a valid signature
        /// by one of the trusted keys.
        #[arg(long, value_name = "[ID=]FILE")]
        trust: Vec<String>,
    },
    /// Generate an Ed25519 key pair for signing policies; print the public key.
    #[command(after_help = "\
Examples:
  fieldcrypt policy keygen --out security-2026.pem --public-out security-2026.pub

The private key is written as PKCS#8 PEM, readable by its owner only (mode 0600); keep it
offline or in a secret manager. The public key (Base64) is printed on stdout: it is what
applications trust (PolicyVerifier, \"trusted_keys\").")]
    Keygen {
        /// Where to write the private key (PKCS#8 PEM). An existing file is not overwritten.
        #[arg(long, value_name = "PRIVATE.pem")]
        out: PathBuf,
        /// Also write the public key (PEM) to this file.
        #[arg(long, value_name = "FILE")]
        public_out: Option<PathBuf>,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Sign a policy with a private key: write a signed policy envelope.
    #[command(after_help = "\
Examples:
  fieldcrypt policy sign policy.json --key security-2026.pem --key-id security-2026 --out signed.json
  # while moving to a new signing key, add its signature to the envelope:
  fieldcrypt policy sign signed.json --key security-2027.pem --key-id security-2027 --out signed.json

The policy text is signed exactly as it is in FILE (it must be a valid policy). Applications
accept the envelope when one signature by a key they trust verifies.")]
    Sign {
        /// A policy (JSON), or a signed envelope to add a signature to.
        file: PathBuf,
        /// The private key (PKCS#8, PEM or DER), as written by `fieldcrypt policy keygen`.
        #[arg(long, value_name = "PRIVATE.pem")]
        key: PathBuf,
        /// The id applications know this key under.
        #[arg(long, value_name = "ID")]
        key_id: String,
        /// Write the envelope here instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Publish a signed policy to the compacted policy topic applications load it from.
    #[command(after_help = "\
Examples:
  fieldcrypt policy publish signed.json --bootstrap kafka-1:9092
  fieldcrypt policy publish signed.json --bootstrap kafka-1:9092 --trust trusted-keys.json

The topic is created (one partition, cleanup.policy=compact) if it is missing. The record's
key is the policy id; applications following the topic hot-reload the new revision.")]
    Publish {
        /// The signed policy envelope.
        file: PathBuf,
        /// Kafka bootstrap servers (HOST:PORT[,HOST:PORT...]).
        #[arg(long, value_name = "HOST:PORT")]
        bootstrap: String,
        /// The policy topic.
        #[arg(long, value_name = "TOPIC", default_value = DEFAULT_POLICY_TOPIC)]
        topic: String,
        /// Verify the signatures against these keys before publishing (as for `validate`).
        #[arg(long, value_name = "[ID=]FILE")]
        trust: Vec<String>,
        /// Publish a bare (unsigned) policy: only for applications that do not require signed
        /// policies (development).
        #[arg(long)]
        allow_unsigned: bool,
        /// Extra librdkafka client properties (security.protocol=SSL, sasl.mechanism=...).
        #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = key_value)]
        properties: Vec<(String, String)>,
        /// Give up (exit 4) when Kafka has not answered within this many seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 30)]
        timeout: u64,
    },
}

pub fn run(command: &PolicyCommand) -> Outcome {
    match command {
        PolicyCommand::Validate { file, trust } => validate(file, trust),
        PolicyCommand::Keygen { out, public_out, force } => keygen(out, public_out.as_deref(), *force),
        PolicyCommand::Sign { file, key, key_id, out } => sign(file, key, key_id, out.as_deref()),
        PolicyCommand::Publish { file, bootstrap, topic, trust, allow_unsigned, properties, timeout } => publish(
            file,
            &Target { bootstrap, topic, properties, timeout: Duration::from_secs(*timeout) },
            trust,
            *allow_unsigned,
        ),
    }
}

/// A verifier trusting every `--trust` value.
pub fn verifier(trust: &[String]) -> Result<PolicyVerifier, Failure> {
    let mut keys: BTreeMap<String, (String, String)> = BTreeMap::new(); // id -> (key text, origin)
    for t in trust {
        let (id, path) = match t.split_once('=') {
            Some((id, path)) if !Path::new(t).exists() => (Some(id.to_string()), PathBuf::from(path)),
            _ => (None, PathBuf::from(t)),
        };
        let text = fail::read_text("trusted key", &path)?;
        match id {
            Some(id) => {
                keys.insert(id, (text.trim().to_string(), path.display().to_string()));
            }
            None if text.trim_start().starts_with('{') => {
                let map: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|e| {
                    Failure::usage(format!(
                        "trusted keys {}: must be a JSON object of key id to public key ({e})",
                        path.display()
                    ))
                })?;
                for (id, key) in map {
                    keys.insert(id, (key, path.display().to_string()));
                }
            }
            None => {
                let id = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
                keys.insert(id, (text.trim().to_string(), path.display().to_string()));
            }
        }
    }
    let mut v = PolicyVerifier::new();
    for (id, (text, origin)) in keys {
        let key = PublicKey::parse(&text)
            .map_err(|e| Failure::usage(format!("trusted key {id:?} ({origin}): {}", e.message())))?;
        v = v.trust(&id, key).map_err(|e| Failure::setup(&format!("trusted key {id:?}"), e))?;
    }
    Ok(v)
}

fn describe(policy: &Policy) {
    println!("policy {:?} revision {}: valid", policy.id(), policy.revision());
    for r in policy.rules() {
        let fields: Vec<&str> = r.fields.iter().map(|f| f.as_str()).collect();
        println!("  rule {:?}: fields {fields:?} tags {:?} key {} {}", r.name, r.tags, r.key, r.algorithm.name());
    }
    for name in policy.profile_names() {
        println!("  profile {name:?}");
    }
}

/// The document in `bytes`: `Ok(Some)` for an envelope, `Ok(None)` for a bare policy.
fn envelope(path: &Path, bytes: &[u8]) -> Result<Option<SignedPolicy>, Failure> {
    match SignedPolicy::from_json(bytes) {
        Ok(s) => Ok(Some(s)),
        Err(_) if serde_json::from_slice::<serde_json::Value>(bytes).is_ok() => Ok(None),
        Err(e) => Err(Failure::failed(format!("{}: {e}", path.display()))),
    }
}

/// The policy in `bytes` (a plain policy or a signed envelope, not verified here): the envelope
/// if it is one, the policy, and its text.
fn read_policy(file: &Path, bytes: &[u8]) -> Result<(Option<SignedPolicy>, Policy, String), Failure> {
    let signed = envelope(file, bytes)?;
    let text = match &signed {
        Some(s) => s.policy_text().to_string(),
        None => String::from_utf8(bytes.to_vec())
            .map_err(|_| Failure::failed(format!("{} is not UTF-8 text", file.display())))?,
    };
    let policy = Policy::from_json(&text).map_err(|e| Failure::failed(format!("{}: {e}", file.display())))?;
    Ok((signed, policy, text))
}

fn validate(file: &Path, trust: &[String]) -> Outcome {
    let bytes = fail::read_file("policy", file)?;
    let verifier = if trust.is_empty() { None } else { Some(verifier(trust)?) };
    let (signed, policy, _) = read_policy(file, &bytes)?;
    match (&signed, &verifier) {
        (_, Some(v)) => {
            let verified =
                v.verify_signed(&bytes).map_err(|e| Failure::verify(format!("{}: {}", file.display(), e.message())))?;
            describe(&policy);
            println!("  signature by {:?}: verified", verified.signed_by().unwrap_or_default());
        }
        (Some(s), None) => {
            describe(&policy);
            let ids: Vec<&str> = s.signatures().iter().map(|s| s.key_id.as_str()).collect();
            println!("  signed by {ids:?} (signatures not checked: give --trust to verify them)");
        }
        (None, None) => {
            describe(&policy);
            println!("  not signed");
        }
    }
    Ok(())
}

fn write_new(path: &Path, contents: &[u8], private: bool, force: bool) -> Outcome {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Failure::usage(format!("{} exists (give --force to overwrite it)", path.display()))
        } else {
            Failure::usage(format!("cannot write {}: {e}", path.display()))
        }
    })?;
    f.write_all(contents).map_err(|e| Failure::failed(format!("writing {}: {e}", path.display())))
}

fn keygen(out: &Path, public_out: Option<&Path>, force: bool) -> Outcome {
    let key = SigningKey::generate().map_err(|e| Failure::op("generating a key", e))?;
    let pem = key.to_pkcs8_pem().map_err(|e| Failure::op("encoding the key", e))?;
    let public = key.public_key();
    write_new(out, pem.as_bytes(), true, force)?;
    if let Some(p) = public_out {
        write_new(p, public.to_pem().as_bytes(), false, force)?;
    }
    println!("{}", public.to_base64());
    Ok(())
}

fn sign(file: &Path, key: &Path, key_id: &str, out: Option<&Path>) -> Outcome {
    let bytes = fail::read_file("policy", file)?;
    let key_bytes = fail::read_file("private key", key)?;
    let key = SigningKey::from_pkcs8(&key_bytes).map_err(|e| Failure::setup(&format!("{}", key.display()), e))?;
    let signed = match envelope(file, &bytes)? {
        Some(mut signed) => {
            signed.add_signature(key_id, &key).map_err(|e| Failure::setup("signing", e))?;
            signed
        }
        None => {
            let text = String::from_utf8(bytes)
                .map_err(|_| Failure::failed(format!("{} is not UTF-8 text", file.display())))?;
            SignedPolicy::sign(&text, key_id, &key).map_err(|e| Failure::failed(format!("{}: {e}", file.display())))?
        }
    };
    let mut json = signed.to_json();
    json.push('\n');
    match out {
        Some(path) => {
            std::fs::write(path, json).map_err(|e| Failure::usage(format!("cannot write {}: {e}", path.display())))
        }
        None => {
            print!("{json}");
            Ok(())
        }
    }
}

/// Where `publish` writes.
struct Target<'a> {
    bootstrap: &'a str,
    topic: &'a str,
    properties: &'a [(String, String)],
    timeout: Duration,
}

fn publish(file: &Path, target: &Target<'_>, trust: &[String], allow_unsigned: bool) -> Outcome {
    let topic = target.topic;
    let bytes = fail::read_file("policy", file)?;
    if !trust.is_empty() {
        verifier(trust)?
            .verify_signed(&bytes)
            .map_err(|e| Failure::verify(format!("{}: {}", file.display(), e.message())))?;
    }
    let (signed, policy, text) = read_policy(file, &bytes)?;
    let config = client_config(target.bootstrap, target.properties);
    let publisher = PolicyPublisher::new(&config)
        .map_err(|e| Failure::setup("kafka client", e))?
        .topic(topic)
        .timeout(target.timeout);
    let spinner = progress::spinner(&format!("publishing to {topic}"));
    let result = match &signed {
        Some(s) if s.signatures().is_empty() => {
            Err(Failure::verify(format!("{}: the envelope carries no signature", file.display())))
        }
        Some(s) => publisher
            .publish(s)
            .map(|p| (p.partition, p.offset))
            .map_err(|e| Failure::op(&format!("publishing to {topic:?}"), e)),
        None if !allow_unsigned => Err(Failure::verify(format!(
            "{} is not signed: sign it with `fieldcrypt policy sign` (or give --allow-unsigned for \
             applications that do not require signed policies)",
            file.display()
        ))),
        None => publish_unsigned(&publisher, &config, target, policy.id(), &text),
    };
    spinner.finish_and_clear();
    let (partition, offset) = result?;
    println!(
        "published policy {:?} revision {} to {topic:?} (partition {partition}, offset {offset})",
        policy.id(),
        policy.revision()
    );
    Ok(())
}

/// A bare policy, keyed by its id like an envelope (the publisher refuses unsigned documents).
fn publish_unsigned(
    publisher: &PolicyPublisher,
    config: &rdkafka::ClientConfig,
    target: &Target<'_>,
    id: &str,
    text: &str,
) -> Result<(i32, i64), Failure> {
    let topic = target.topic;
    publisher.ensure_topic().map_err(|e| Failure::op(&format!("policy topic {topic:?}"), e))?;
    let reports = std::sync::Arc::new(std::sync::Mutex::new(None));
    let producer: ThreadedProducer<Reports> = config
        .clone()
        .set("acks", "all")
        .set("message.timeout.ms", target.timeout.as_millis().to_string())
        .create_with_context(Reports(reports.clone()))
        .map_err(|e| Failure::usage(format!("kafka client: {}", fieldcrypt::kafka::client_creation_error(&e))))?;
    producer
        .send(BaseRecord::<str, str>::to(topic).key(id).payload(text))
        .map_err(|(e, _)| Failure::unreachable(format!("publishing to {topic:?}: {e}")))?;
    producer.flush(target.timeout).map_err(|e| Failure::unreachable(format!("publishing to {topic:?}: {e}")))?;
    let report = reports.lock().unwrap_or_else(|e| e.into_inner()).take();
    match report {
        Some(Ok(at)) => Ok(at),
        Some(Err(e)) => Err(Failure::unreachable(format!("publishing to {topic:?}: {e}"))),
        None => Err(Failure::unreachable(format!("publishing to {topic:?}: no delivery report"))),
    }
}

type Report = std::sync::Arc<std::sync::Mutex<Option<Result<(i32, i64), String>>>>;

struct Reports(Report);

impl rdkafka::ClientContext for Reports {}

impl rdkafka::producer::ProducerContext for Reports {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        use rdkafka::Message;
        let r = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.to_string()),
        };
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    }
}
