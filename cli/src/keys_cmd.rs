//! `keys list | shred | rotate`: the key store of per-subject data keys (docs/SHREDDING.md).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use fieldcrypt::keystore::{
    FileKeyStore, KafkaKeyStore, KafkaKeyStoreOptions, KeyStore, StoredDek, SubjectId, DEFAULT_KEY_TOPIC,
};
use fieldcrypt::{Codec, LocalKms, Policy};
use serde_json::json;

use crate::fail::{Failure, Outcome};
use crate::progress;
use crate::records::{load_config, load_policy};
use crate::topic::client_config;

/// Where the data keys are: `file:PATH` or `kafka:HOST:PORT[,HOST:PORT...][/TOPIC]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    File(PathBuf),
    Kafka { bootstrap: String, topic: String },
}

impl FromStr for StoreSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<StoreSpec, String> {
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err("file: needs a path (file:keys.jsonl)".into());
            }
            return Ok(StoreSpec::File(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("kafka:") {
            let (bootstrap, topic) = match rest.split_once('/') {
                Some((b, t)) if !t.is_empty() => (b, t),
                Some((b, _)) => (b, DEFAULT_KEY_TOPIC),
                None => (rest, DEFAULT_KEY_TOPIC),
            };
            if bootstrap.is_empty() {
                return Err("kafka: needs bootstrap servers (kafka:HOST:PORT[/TOPIC])".into());
            }
            return Ok(StoreSpec::Kafka { bootstrap: bootstrap.to_string(), topic: topic.to_string() });
        }
        Err(format!("{s:?}: give file:PATH or kafka:HOST:PORT[/TOPIC]"))
    }
}

#[derive(Args, Debug)]
pub struct StoreArg {
    /// The key store: file:PATH (a JSON-lines file) or kafka:HOST:PORT[/TOPIC] (a compacted
    /// topic, default _fieldcrypt_keys).
    #[arg(long, value_name = "STORE")]
    pub store: StoreSpec,
    /// Extra librdkafka client properties for a kafka: store (security.protocol=SASL_SSL,
    /// sasl.mechanism=..., ssl.ca.location=...).
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = crate::topic::key_value)]
    pub properties: Vec<(String, String)>,
}

impl StoreArg {
    /// Opens the store; `must_exist` refuses a store that is not there — a file, or a key topic
    /// (a mistyped path or topic would otherwise list nothing or shred nothing, successfully).
    pub fn open(&self, must_exist: bool) -> Result<Arc<dyn KeyStore>, Failure> {
        match &self.store {
            StoreSpec::File(path) => {
                if must_exist && !path.exists() {
                    return Err(Failure::usage(format!("no key store file at {}", path.display())));
                }
                let store = FileKeyStore::open(path, Duration::from_secs(1))
                    .map_err(|e| Failure::setup(&format!("key store {}", path.display()), e))?;
                Ok(Arc::new(store))
            }
            StoreSpec::Kafka { bootstrap, topic } => {
                let spinner = progress::spinner(&format!("reading key topic {topic} from {bootstrap}"));
                let options =
                    KafkaKeyStoreOptions { topic: topic.clone(), create_topic: !must_exist, ..Default::default() };
                let store = KafkaKeyStore::open_with(&client_config(bootstrap, &self.properties), &options)
                    .map_err(|e| Failure::setup(&format!("key store topic {topic:?} on {bootstrap}"), e));
                spinner.finish_and_clear();
                Ok(Arc::new(store?))
            }
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// List the data keys a key store holds (wrapped; no key material is printed).
    #[command(after_help = "\
Examples:
  fieldcrypt keys list --store kafka:kafka-1:9092
  fieldcrypt keys list --store file:keys.jsonl --json
  fieldcrypt keys list --store kafka:kafka-1:9092 --subject cust-42

Subjects are shown as their subject id (a hash of the subject value): the store never holds
the raw customer ids.")]
    List {
        #[command(flatten)]
        store: StoreArg,
        /// Only the keys of this subject (its value, e.g. a customer id).
        #[arg(long, value_name = "SUBJECT")]
        subject: Option<String>,
        /// One JSON object per key instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Crypto-shred a data subject: delete every data key of the subject, for good.
    #[command(after_help = "\
Examples:
  fieldcrypt keys shred cust-42 --store kafka:kafka-1:9092 --yes
  fieldcrypt keys shred cust-42 --store kafka:kafka-1:9093 --kafka-property security.protocol=SSL --yes
  fieldcrypt keys shred 5f1c0a... --by-id --store file:keys.jsonl --yes

Every record of the subject encrypted under those keys becomes unreadable in every consumer
(running consumers within the delay documented in docs/SHREDDING.md): decryption fails with
the error kind \"shredded\", or the consumer's profile fallback applies. Copies of the
plaintext made before cannot be reached. Without --yes, asks for confirmation on a terminal
and refuses otherwise.")]
    Shred {
        /// The subject's value as the policy's `subject` field holds it (e.g. a customer id).
        subject: String,
        #[command(flatten)]
        store: StoreArg,
        /// SUBJECT is a subject id as `keys list` shows it, not a subject value.
        #[arg(long)]
        by_id: bool,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Store a new data key for a subject; producers move to it when their current key expires.
    #[command(after_help = "\
Examples:
  fieldcrypt keys rotate cust-42 --store file:keys.jsonl --policy policy.json --local-keys keys.json
  fieldcrypt keys rotate cust-42 --store kafka:kafka-1:9092 --kek vault://transit/customers --config kms.json

The new key is made for every KEK a per-subject rule of --policy uses, or for --kek alone
(with --algorithm). Producers pick it up when the key they use reaches its age or use limit
(limits.dek_max_age, default 1 hour); records encrypted under older keys still decrypt until
the subject is shredded.")]
    Rotate {
        /// The subject's value (e.g. a customer id).
        subject: String,
        #[command(flatten)]
        store: StoreArg,
        /// The policy whose per-subject rules name the KEKs (and algorithms) to rotate under.
        #[arg(long, value_name = "FILE", required_unless_present = "kek", conflicts_with = "kek")]
        policy: Option<PathBuf>,
        /// The KEK to wrap the new key with (a key URI: local://NAME, vault://..., aws-kms://...).
        #[arg(long, value_name = "URI")]
        kek: Option<String>,
        /// With --kek: the algorithm the key is for.
        #[arg(long, value_name = "NAME", default_value = "AES256_GCM", requires = "kek")]
        algorithm: String,
        /// A local key file (development only: local://NAME keys).
        #[arg(long, value_name = "FILE", required_unless_present = "config", conflicts_with = "config")]
        local_keys: Option<PathBuf>,
        /// A configuration document whose "kms" section configures the KMS clients.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

pub fn run(command: &KeysCommand) -> Outcome {
    match command {
        KeysCommand::List { store, subject, json } => list(store, subject.as_deref(), *json),
        KeysCommand::Shred { subject, store, by_id, yes } => shred(store, subject, *by_id, *yes),
        KeysCommand::Rotate { subject, store, policy, kek, algorithm, local_keys, config } => rotate(
            store,
            subject,
            policy.as_deref(),
            kek.as_deref(),
            algorithm,
            local_keys.as_deref(),
            config.as_deref(),
        ),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn subject_id(subject: &str, by_id: bool) -> Result<SubjectId, Failure> {
    if !by_id {
        return Ok(SubjectId::of(subject));
    }
    if subject.len() != 32 || !subject.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Failure::usage(format!("{subject:?} is not a subject id (32 hex digits, as `keys list` shows)")));
    }
    serde_json::from_value(json!(subject.to_ascii_lowercase()))
        .map_err(|e| Failure::usage(format!("{subject:?} is not a subject id: {e}")))
}

fn list(spec: &StoreArg, subject: Option<&str>, as_json: bool) -> Outcome {
    let store = spec.open(true)?;
    let wanted = subject.map(SubjectId::of);
    let keys: Vec<StoredDek> = store
        .list()
        .map_err(|e| Failure::op("listing keys", e))?
        .into_iter()
        .filter(|d| wanted.as_ref().is_none_or(|w| &d.subject == w))
        .collect();
    let bar = if keys.len() > 10_000 { progress::bar(Some(keys.len() as u64), "listing") } else { progress::hidden() };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let w = |e: std::io::Error| Failure::failed(format!("writing stdout: {e}"));
    if !as_json {
        writeln!(
            out,
            "{:<32}  {:<32}  {:<10}  {:<24}  {:<8}  CREATED (ms since epoch)",
            "DEK ID", "SUBJECT", "ALGORITHM", "KEK", "VERSION"
        )
        .map_err(w)?;
    }
    for d in &keys {
        if as_json {
            let line = json!({
                "dek_id": hex(&d.dek_id),
                "subject": d.subject.as_str(),
                "kek": d.kek,
                "kek_version": d.kek_version,
                "algorithm": d.algorithm.name(),
                "created_ms": d.created_ms,
            });
            writeln!(out, "{line}").map_err(w)?;
        } else {
            writeln!(
                out,
                "{:<32}  {:<32}  {:<10}  {:<24}  {:<8}  {}",
                hex(&d.dek_id),
                d.subject.as_str(),
                d.algorithm.name(),
                d.kek,
                d.kek_version,
                d.created_ms
            )
            .map_err(w)?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    out.flush().map_err(w)?;
    if !as_json {
        eprintln!("{} key(s)", keys.len());
    }
    Ok(())
}

fn confirm(question: &str) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage("refusing to shred without --yes (stdin is not a terminal to ask on)"));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|e| Failure::usage(format!("reading stdin: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

fn shred(spec: &StoreArg, subject: &str, by_id: bool, yes: bool) -> Outcome {
    let id = subject_id(subject, by_id)?;
    let store = spec.open(true)?;
    if !yes {
        let held = store.list().map_err(|e| Failure::op("listing keys", e))?.iter().filter(|d| d.subject == id).count();
        if !confirm(&format!(
            "Shred subject {subject:?} (id {id})? Its {held} data key(s) are deleted for good and its records \
             can never be decrypted again."
        ))? {
            return Err(Failure::failed("not shredded"));
        }
    }
    let n = fieldcrypt::keystore::shred(store.as_ref(), &id)
        .map_err(|e| Failure::op(&format!("shredding subject {id}"), e))?;
    println!("shredded subject id {id}: {n} key(s) deleted");
    Ok(())
}

/// A one-rule policy for rotating under `kek` alone.
fn kek_policy(kek: &str, algorithm: &str) -> Result<Policy, Failure> {
    let text = json!({
        "fieldcrypt_policy": 1,
        "id": "fieldcrypt-cli-rotate",
        "revision": 1,
        "encrypt": [{
            "name": "rotate",
            "topics": ["*"],
            "fields": ["subject_key"],
            "key": kek,
            "algorithm": algorithm,
            "subject": "$key"
        }]
    })
    .to_string();
    Policy::from_json(&text).map_err(|e| Failure::usage(format!("--kek {kek:?} --algorithm {algorithm:?}: {e}")))
}

fn rotate(
    spec: &StoreArg,
    subject: &str,
    policy: Option<&std::path::Path>,
    kek: Option<&str>,
    algorithm: &str,
    local_keys: Option<&std::path::Path>,
    config: Option<&std::path::Path>,
) -> Outcome {
    let policy = match (policy, kek) {
        (Some(path), _) => load_policy(path)?,
        (None, Some(kek)) => kek_policy(kek, algorithm)?,
        (None, None) => return Err(Failure::usage("give --policy or --kek")),
    };
    let store = spec.open(false)?;
    let mut b = match config {
        Some(path) => {
            let mut value = load_config(path)?;
            // The store is --store's; a key_store in the document would be opened for nothing.
            if let Some(o) = value.as_object_mut() {
                o.remove("key_store");
            }
            fieldcrypt::config::builder(policy, &value)
                .map_err(|e| Failure::setup(&format!("configuration {}", path.display()), e))?
        }
        None => Codec::builder(policy),
    };
    if let Some(keys) = local_keys {
        b = b.kms(LocalKms::from_file(keys).map_err(|e| Failure::setup(&format!("key file {}", keys.display()), e))?);
    }
    let codec = b.key_store_shared(store.clone()).build().map_err(|e| Failure::setup("codec", e))?;
    let ids = codec.rotate_subject(subject).map_err(|e| Failure::op("rotating", e))?;
    let all = store.list().map_err(|e| Failure::op("listing keys", e))?;
    for id in ids {
        match all.iter().find(|d| d.dek_id == id) {
            Some(d) => println!(
                "new data key {} for subject id {} under {} (version {}, {})",
                hex(&id),
                d.subject,
                d.kek,
                d.kek_version,
                d.algorithm.name()
            ),
            None => println!("new data key {} for subject id {}", hex(&id), SubjectId::of(subject)),
        }
    }
    Ok(())
}
