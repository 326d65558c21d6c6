//! `fieldcrypt` — the command-line tool. Records travel as JSON lines so any language or shell
//! can pipe them: `{"key": B64|null, "value": B64|null, "headers": [["name", B64|null], ...]}`
//! (B64 = standard Base64 of the raw bytes).
//!
//! Exit codes: 0 success; 1 a record failed (the error is printed, processing stops, nothing
//! is written for that record); 2 bad usage or configuration.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::{Args, Parser, Subcommand};
use fieldcrypt::registry::{RegistryConfig, SchemaRegistry};
use fieldcrypt::{Codec, LocalKms, OwnedHeader, Policy};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(name = "fieldcrypt", version, about = "Field-level encryption for Kafka records")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Encrypt records read as JSON lines on stdin; write them to stdout.
    Encrypt(CodecArgs),
    /// Decrypt records read as JSON lines on stdin; write them to stdout.
    Decrypt {
        #[command(flatten)]
        codec: CodecArgs,
        /// Decrypt as this profile of the policy (default: every field the keys allow).
        #[arg(long)]
        profile: Option<String>,
    },
    /// Check a policy file; print its rules and profiles.
    Validate {
        /// The policy file (JSON).
        policy: PathBuf,
    },
}

#[derive(Args)]
struct CodecArgs {
    /// The policy file (JSON).
    #[arg(long)]
    policy: PathBuf,
    /// The topic the records belong to.
    #[arg(long)]
    topic: String,
    /// A local key file (development only: local://NAME keys).
    #[arg(long)]
    local_keys: Option<PathBuf>,
    /// Schema Registry base URL (Confluent-compatible API) for framed Avro/Protobuf/JSON Schema.
    #[arg(long)]
    registry: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Line {
    key: Option<String>,
    value: Option<String>,
    #[serde(default)]
    headers: Vec<(String, Option<String>)>,
}

fn build(args: &CodecArgs, profile: Option<&str>) -> Result<Codec, fieldcrypt::Error> {
    let mut b = Codec::builder(Policy::from_file(&args.policy)?);
    if let Some(keys) = &args.local_keys {
        b = b.kms(LocalKms::from_file(keys)?);
    }
    if let Some(url) = &args.registry {
        b = b.schemas(SchemaRegistry::new(RegistryConfig::new(url.clone()))?);
    }
    if let Some(p) = profile {
        b = b.profile(p);
    }
    b.build()
}

fn decode(field: &str, v: &Option<String>) -> Result<Option<Vec<u8>>, String> {
    v.as_ref().map(|s| B64.decode(s).map_err(|_| format!("`{field}` is not Base64"))).transpose()
}

fn run(codec: &Codec, topic: &str, encrypt: bool) -> Result<(), String> {
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for (n, line) in stdin.lines().enumerate() {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = |e: String| format!("line {}: {e}", n + 1);
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
        let r = result.map_err(|e| at(e.to_string()))?;
        let line = Line {
            key: r.key.map(|k| B64.encode(k)),
            value: r.value.map(|v| B64.encode(v)),
            headers: r.headers.into_iter().map(|h| (h.name, h.value.map(|v| B64.encode(v)))).collect(),
        };
        serde_json::to_writer(&mut out, &line).map_err(|e| e.to_string())?;
        out.write_all(b"\n").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (args, profile, encrypt) = match &cli.command {
        Command::Encrypt(args) => (args, None, true),
        Command::Decrypt { codec, profile } => (codec, profile.as_deref(), false),
        Command::Validate { policy } => {
            return match Policy::from_file(policy) {
                Ok(p) => {
                    println!("policy {:?} revision {}: valid", p.id(), p.revision());
                    for r in p.rules() {
                        let fields: Vec<&str> = r.fields.iter().map(|f| f.as_str()).collect();
                        println!(
                            "  rule {:?}: fields {fields:?} tags {:?} key {} {}",
                            r.name,
                            r.tags,
                            r.key,
                            r.algorithm.name()
                        );
                    }
                    for name in p.profile_names() {
                        println!("  profile {name:?}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("fieldcrypt: {e}");
                    ExitCode::from(1)
                }
            };
        }
    };
    let codec = match build(args, profile) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fieldcrypt: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&codec, &args.topic, encrypt) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fieldcrypt: {e}");
            ExitCode::from(1)
        }
    }
}
