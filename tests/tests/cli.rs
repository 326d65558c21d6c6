//! The `fieldcrypt` command-line tool end to end against the real broker (FIELDCRYPT_KAFKA):
//! signing keys, signing, validation with trusted keys (tampered and unsigned documents exit
//! with 3), publishing to a policy topic, `inspect` of a topic's headers without plaintext,
//! `decrypt` of a topic with a profile, the key store commands (list, rotate, shred) with a
//! file store and a Kafka store, and the JSON-lines encrypt/decrypt round trip.
//!
//! The binary is built with the cargo running these tests (same target directory), or taken
//! from FIELDCRYPT_BIN when that is set (scripts/lib.sh build_cli).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use fieldcrypt::keystore::SubjectId;
use fieldcrypt::policy::PolicyVerifier;
use fieldcrypt::{Codec, LocalKms, OwnedHeader, Policy};
use fieldcrypt_it::{repo_root, required_env, unique_subject};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

const KEK_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// The CLI binary: FIELDCRYPT_BIN, or `cargo build -p fieldcrypt-cli` (same target directory).
fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("FIELDCRYPT_BIN") {
            if !p.trim().is_empty() {
                return PathBuf::from(p.trim());
            }
        }
        let out = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "fieldcrypt-cli", "--message-format=json-render-diagnostics"])
            .current_dir(repo_root())
            .stderr(Stdio::inherit())
            .output()
            .expect("running cargo build -p fieldcrypt-cli");
        assert!(out.status.success(), "cargo build -p fieldcrypt-cli failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "fieldcrypt")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo build reported no fieldcrypt executable")
    })
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self, what: &str) -> Run {
        assert_eq!(self.code, 0, "{what}: exit {}\nstdout: {}\nstderr: {}", self.code, self.stdout, self.stderr);
        self
    }
    fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

fn fieldcrypt(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting fieldcrypt");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A fresh directory for one test's files.
fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique_subject(name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn key_file(dir: &Path) -> PathBuf {
    let path = dir.join("keys.json");
    std::fs::write(&path, json!({"keys": {"it-kek": {"primary": 1, "versions": {"1": KEK_B64}}}}).to_string()).unwrap();
    path
}

fn local_kms() -> LocalKms {
    LocalKms::from_json(&json!({"keys": {"it-kek": {"primary": 1, "versions": {"1": KEK_B64}}}}).to_string()).unwrap()
}

fn policy_text(id: &str, topic: &str, subject: bool) -> String {
    let subject = if subject { r#", "subject": "customer_id""# } else { "" };
    format!(
        r#"{{"fieldcrypt_policy": 1, "id": "{id}", "revision": 1,
  "encrypt": [{{"name": "pii", "topics": ["{topic}"], "fields": ["email", "card"], "key": "local://it-kek"{subject}}}],
  "profiles": {{
    "support": {{"decrypt": [{{"topics": ["*"], "fields": ["email"]}}], "otherwise": "mask", "mask": "****"}},
    "strict": {{"decrypt": [{{"topics": ["*"]}}], "otherwise": "error"}}
  }}}}"#
    )
}

fn customer(i: usize) -> String {
    format!(r#"{{"customer_id":"cust-{i}","email":"c{i}@example.com","card":"4000 0000 0000 {i:04}"}}"#)
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique_subject("cli-check"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

/// A record's key and value.
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Every record of partition 0 of `topic`, waiting up to 30 s for `n`.
fn read_partition(bootstrap: &str, topic: &str, n: usize) -> Vec<KeyValue> {
    let c = consumer(bootstrap);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} records in {topic}", out.len());
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            out.push((m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec)));
        }
    }
    out
}

/// Encrypts `n` customers with a library codec and produces them to a new `topic`.
fn produce_encrypted(bootstrap: &str, topic: &str, codec: &Codec, n: usize) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    for i in 0..n {
        let value = customer(i);
        let sealed = codec.encrypt(topic, None, Some(value.as_bytes()), &[] as &[OwnedHeader]).unwrap();
        let headers = sealed
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |h, x| h.insert(Header { key: &x.name, value: x.value.as_deref() }));
        let key = format!("cust-{i}");
        producer
            .send(BaseRecord::to(topic).key(&key).payload(sealed.value.as_deref().unwrap()).headers(headers))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

#[test]
fn policy_keygen_sign_validate_tamper_publish() {
    let bootstrap = required_env("FIELDCRYPT_KAFKA");
    let dir = workdir("cli-policy");
    let (policy, private, public, signed) =
        (dir.join("policy.json"), dir.join("sec.pem"), dir.join("sec.pub"), dir.join("signed.json"));
    let id = unique_subject("cli-policy");
    std::fs::write(&policy, policy_text(&id, "customers", false)).unwrap();

    let keygen = fieldcrypt(&["policy", "keygen", "--out", s(&private), "--public-out", s(&public)], "").ok("keygen");
    let printed = keygen.stdout.trim().to_string();
    assert!(!printed.is_empty() && !printed.contains("PRIVATE"), "keygen printed {printed:?}");
    let again = fieldcrypt(&["policy", "keygen", "--out", s(&private)], "");
    assert_eq!(again.code, 2, "keygen must not overwrite a key: {}", again.stderr);

    fieldcrypt(&["policy", "sign", s(&policy), "--key", s(&private), "--key-id", "sec-1", "--out", s(&signed)], "")
        .ok("sign");
    let trust = format!("sec-1={}", s(&public));
    let v = fieldcrypt(&["policy", "validate", s(&signed), "--trust", &trust], "").ok("validate signed");
    assert!(v.stdout.contains("verified"), "{}", v.stdout);
    // The printed Base64 public key is as good as the PEM file.
    let b64_key = dir.join("sec-1.pub");
    std::fs::write(&b64_key, &printed).unwrap();
    fieldcrypt(&["policy", "validate", s(&signed), "--trust", s(&b64_key)], "").ok("validate, key id from file name");

    // Tampered: the policy text inside the envelope changed after signing.
    let mut envelope: Value = serde_json::from_str(&std::fs::read_to_string(&signed).unwrap()).unwrap();
    let text = envelope["policy"].as_str().unwrap().replace("\"revision\": 1", "\"revision\": 2");
    envelope["policy"] = json!(text);
    let tampered = dir.join("tampered.json");
    std::fs::write(&tampered, envelope.to_string()).unwrap();
    let t = fieldcrypt(&["policy", "validate", s(&tampered), "--trust", &trust], "");
    assert_eq!(t.code, 3, "tampered: {}", t.stderr);
    assert!(t.stderr.starts_with("fieldcrypt: ") && t.stderr.contains("does not verify"), "{}", t.stderr);
    // Unsigned, with trusted keys configured.
    let u = fieldcrypt(&["policy", "validate", s(&policy), "--trust", &trust], "");
    assert_eq!(u.code, 3, "unsigned: {}", u.stderr);
    // Without --trust, both are reported valid (signatures not checked).
    fieldcrypt(&["policy", "validate", s(&policy)], "").ok("validate plain");

    // A second signature (key rotation): accepted by either key alone.
    let (private2, public2) = (dir.join("sec2.pem"), dir.join("sec2.pub"));
    fieldcrypt(&["policy", "keygen", "--out", s(&private2), "--public-out", s(&public2)], "").ok("keygen 2");
    fieldcrypt(&["policy", "sign", s(&signed), "--key", s(&private2), "--key-id", "sec-2", "--out", s(&signed)], "")
        .ok("second signature");
    fieldcrypt(&["policy", "validate", s(&signed), "--trust", &format!("sec-2={}", s(&public2))], "")
        .ok("validate by the second key");
    fieldcrypt(&["policy", "validate", s(&signed), "--trust", &trust], "").ok("validate by the first key");

    // Publishing: unsigned is refused; signed lands on the topic under the policy id.
    let topic = unique_subject("cli-policy-topic");
    let r = fieldcrypt(&["policy", "publish", s(&policy), "--bootstrap", &bootstrap, "--topic", &topic], "");
    assert_eq!(r.code, 3, "unsigned publish: {}", r.stderr);
    let r = fieldcrypt(
        &["policy", "publish", s(&tampered), "--bootstrap", &bootstrap, "--topic", &topic, "--trust", &trust],
        "",
    );
    assert_eq!(r.code, 3, "tampered publish with --trust: {}", r.stderr);
    let p =
        fieldcrypt(&["policy", "publish", s(&signed), "--bootstrap", &bootstrap, "--topic", &topic], "").ok("publish");
    assert!(p.stdout.contains(&id), "{}", p.stdout);
    let records = read_partition(&bootstrap, &topic, 1);
    let (key, payload) = &records[0];
    assert_eq!(key.as_deref(), Some(id.as_bytes()));
    let verifier =
        PolicyVerifier::new().trust("sec-1", fieldcrypt::policy::PublicKey::parse(&printed).unwrap()).unwrap();
    let published = verifier.verify(payload.as_deref().unwrap()).unwrap();
    assert_eq!(published.id(), id);

    // Unreachable Kafka: exit 4.
    let r = fieldcrypt(
        &["policy", "publish", s(&signed), "--bootstrap", "127.0.0.1:1", "--topic", &topic, "--timeout", "3"],
        "",
    );
    assert_eq!(r.code, 4, "unreachable broker: {}", r.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn inspect_and_decrypt_a_topic_with_a_profile() {
    let bootstrap = required_env("FIELDCRYPT_KAFKA");
    let dir = workdir("cli-inspect");
    let topic = unique_subject("cli-inspect");
    let id = unique_subject("cli-inspect-policy");
    let text = policy_text(&id, &topic, false);
    let codec = Codec::builder(Policy::from_json(&text).unwrap()).kms(local_kms()).build().unwrap();
    produce_encrypted(&bootstrap, &topic, &codec, 5);
    let policy = dir.join("policy.json");
    std::fs::write(&policy, &text).unwrap();
    let config = dir.join("consumer.json");
    std::fs::write(&config, json!({"kms": {"local": {"key_file": s(&key_file(&dir))}}}).to_string()).unwrap();

    let run =
        fieldcrypt(&["inspect", "--bootstrap", &bootstrap, "--topic", &topic, "--from-beginning"], "").ok("inspect");
    assert!(!run.stdout.contains("example.com") && !run.stdout.contains("4000 0000"), "plaintext: {}", run.stdout);
    let lines = run.lines();
    assert_eq!(lines.len(), 5, "{}", run.stdout);
    for l in &lines {
        assert_eq!(l["policy"]["id"], json!(id), "{l}");
        assert_eq!(l["policy"]["revision"], json!(1));
        let keys = l["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1, "{l}");
        assert_eq!(keys[0]["kek"], "local://it-kek");
        assert_eq!(keys[0]["dek"], "inline");
        assert_eq!(keys[0]["algorithm"], "AES256_GCM");
        assert_eq!(keys[0]["dek_id"].as_str().unwrap().len(), 32);
        let mut paths: Vec<&str> =
            keys[0]["fields"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
        paths.sort();
        assert_eq!(paths, ["card", "email"], "{l}");
        assert!(l["offset"].is_i64() && l["partition"].is_i64());
    }
    let two =
        fieldcrypt(&["inspect", "--bootstrap", &bootstrap, "--topic", &topic, "--from-beginning", "--max", "2"], "")
            .ok("inspect --max");
    assert_eq!(two.lines().len(), 2);
    let missing =
        fieldcrypt(&["inspect", "--bootstrap", &bootstrap, "--topic", &unique_subject("nope"), "--from-beginning"], "");
    assert_eq!(missing.code, 1, "missing topic: {}", missing.stderr);

    let base = [
        "decrypt",
        "--bootstrap",
        &bootstrap,
        "--topic",
        &topic,
        "--from-beginning",
        "--policy",
        s(&policy),
        "--config",
        s(&config),
    ];
    let support = fieldcrypt(&[&base[..], &["--profile", "support"]].concat(), "").ok("decrypt as support");
    let lines = support.lines();
    assert_eq!(lines.len(), 5, "{}", support.stdout);
    for l in &lines {
        let i: usize = l["value"]["customer_id"].as_str().unwrap().trim_start_matches("cust-").parse().unwrap();
        assert_eq!(l["value"]["email"], json!(format!("c{i}@example.com")), "{l}");
        assert_eq!(l["value"]["card"], json!("****"), "{l}");
        assert!(l.get("key_base64").is_some(), "a text key that is not JSON comes as Base64: {l}");
    }
    let all = fieldcrypt(&[&base[..], &["--max", "3"]].concat(), "").ok("decrypt, no profile");
    let lines = all.lines();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["value"]["card"].as_str().unwrap().starts_with("4000 0000 0000")));
    let unknown = fieldcrypt(&[&base[..], &["--profile", "nobody"]].concat(), "");
    assert_eq!(unknown.code, 2, "unknown profile: {}", unknown.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Per-subject keys in `store` (CLI form) / `store_config` (configuration form): encrypt two
/// customers, list, rotate one, shred it; its record no longer decrypts (kind shredded), the
/// other's does.
fn keys_scenario(dir: &Path, store: &str, store_config: Value) {
    let topic = unique_subject("cli-keys");
    let policy = dir.join("policy.json");
    std::fs::write(&policy, policy_text(&unique_subject("cli-keys-policy"), &topic, true)).unwrap();
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        json!({"kms": {"local": {"key_file": s(&key_file(dir))}}, "key_store": store_config}).to_string(),
    )
    .unwrap();
    let codec_args = ["--policy", s(&policy), "--topic", &topic, "--config", s(&config)];
    let line = |i: usize| json!({"key": null, "value": B64.encode(customer(i)), "headers": []}).to_string();
    let sealed = fieldcrypt(&[&["encrypt"][..], &codec_args].concat(), &format!("{}\n{}\n", line(1), line(2)))
        .ok("encrypt per subject");
    let sealed: Vec<String> = sealed.stdout.lines().map(str::to_string).collect();
    assert_eq!(sealed.len(), 2);

    let list = fieldcrypt(&["keys", "list", "--store", store, "--json"], "").ok("keys list");
    let keys = list.lines();
    let (one, two) = (SubjectId::of("cust-1"), SubjectId::of("cust-2"));
    let of = |keys: &[Value], id: &SubjectId| keys.iter().filter(|k| k["subject"] == json!(id.as_str())).count();
    assert_eq!((of(&keys, &one), of(&keys, &two), keys.len()), (1, 1, 2), "{}", list.stdout);
    assert!(keys.iter().all(|k| k["kek"] == "local://it-kek" && k.get("wrapped").is_none()), "{}", list.stdout);
    let table = fieldcrypt(&["keys", "list", "--store", store], "").ok("keys list (table)");
    assert!(table.stdout.contains(one.as_str()) && table.stdout.contains("DEK ID"), "{}", table.stdout);

    let rotated = fieldcrypt(
        &[&["keys", "rotate", "cust-1", "--store", store][..], &["--policy", s(&policy), "--config", s(&config)]]
            .concat(),
        "",
    )
    .ok("keys rotate");
    assert!(rotated.stdout.contains(one.as_str()), "{}", rotated.stdout);
    let keys = fieldcrypt(&["keys", "list", "--store", store, "--json", "--subject", "cust-1"], "").ok("list").lines();
    assert_eq!(keys.len(), 2, "after rotation cust-1 has two keys: {keys:?}");

    let refused = fieldcrypt(&["keys", "shred", "cust-1", "--store", store], "");
    assert_eq!(refused.code, 2, "shred without --yes and no terminal: {}", refused.stderr);
    let shred = fieldcrypt(&["keys", "shred", "cust-1", "--store", store, "--yes"], "").ok("keys shred");
    assert!(shred.stdout.contains("2 key(s) deleted"), "{}", shred.stdout);
    let keys = fieldcrypt(&["keys", "list", "--store", store, "--json"], "").ok("list").lines();
    assert_eq!((of(&keys, &one), of(&keys, &two)), (0, 1), "{keys:?}");

    let decrypt = |i: usize| {
        fieldcrypt(&[&["decrypt"][..], &codec_args, &["--profile", "strict"]].concat(), &format!("{}\n", sealed[i - 1]))
    };
    let gone = decrypt(1);
    assert_eq!(gone.code, 1, "{}", gone.stderr);
    assert!(gone.stderr.contains("shredded"), "{}", gone.stderr);
    assert!(gone.stdout.is_empty() && !gone.stderr.contains("example.com"));
    let kept = decrypt(2).ok("the other subject still decrypts");
    let value: Value = serde_json::from_str(&kept.stdout).unwrap();
    let plain = B64.decode(value["value"].as_str().unwrap()).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&plain).unwrap()["email"], "c2@example.com");
}

#[test]
fn keys_list_rotate_shred_with_a_file_store() {
    let dir = workdir("cli-keys-file");
    let path = dir.join("keys.jsonl");
    keys_scenario(&dir, &format!("file:{}", s(&path)), json!({"file": s(&path)}));
    let missing = fieldcrypt(&["keys", "list", "--store", &format!("file:{}", s(&dir.join("nope.jsonl")))], "");
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keys_list_rotate_shred_with_a_kafka_store() {
    let bootstrap = required_env("FIELDCRYPT_KAFKA");
    let dir = workdir("cli-keys-kafka");
    let topic = format!("_fieldcrypt_keys-{}", unique_subject("cli"));
    keys_scenario(
        &dir,
        &format!("kafka:{bootstrap}/{topic}"),
        json!({"kafka": {"bootstrap": bootstrap, "topic": topic}}),
    );
    // Client properties reach the store's clients; a key topic that does not exist is refused
    // (not created empty: a shred there would delete nothing, successfully).
    let store = format!("kafka:{bootstrap}/{topic}");
    fieldcrypt(&["keys", "list", "--store", &store, "--kafka-property", "client.id=fieldcrypt-cli-it"], "")
        .ok("keys list with a property");
    let bad = fieldcrypt(&["keys", "list", "--store", &store, "--kafka-property", "no.such.property=1"], "");
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let missing = format!("kafka:{bootstrap}/_fieldcrypt_keys-missing-{}", unique_subject("cli"));
    for args in [&["keys", "list", "--store", &missing][..], &["keys", "shred", "cust-1", "--store", &missing, "--yes"]]
    {
        let refused = fieldcrypt(args, "");
        assert_eq!(refused.code, 2, "{args:?}: {}", refused.stderr);
        assert!(refused.stderr.contains("does not exist"), "{}", refused.stderr);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn encrypt_decrypt_json_lines_round_trip() {
    let dir = workdir("cli-jsonl");
    let topic = "customers";
    let policy = dir.join("policy.json");
    std::fs::write(&policy, policy_text("cli-jsonl", topic, false)).unwrap();
    let keys = key_file(&dir);
    let args = ["--policy", s(&policy), "--topic", topic, "--local-keys", s(&keys)];
    let input: String = (0..3)
        .map(|i| {
            json!({"key": B64.encode(format!("k{i}")), "value": B64.encode(customer(i)), "headers": [["trace", B64.encode("t")]]})
                .to_string()
                + "\n"
        })
        .collect();
    let sealed = fieldcrypt(&[&["encrypt"][..], &args].concat(), &input).ok("encrypt");
    assert_eq!(sealed.lines().len(), 3);
    for l in sealed.lines() {
        let value = String::from_utf8(B64.decode(l["value"].as_str().unwrap()).unwrap()).unwrap();
        assert!(!value.contains("example.com"), "{value}");
        assert!(l["headers"].as_array().unwrap().iter().any(|h| h[0] == "fieldcrypt"), "{l}");
    }
    let opened = fieldcrypt(&[&["decrypt"][..], &args].concat(), &sealed.stdout).ok("decrypt");
    for (i, l) in opened.lines().iter().enumerate() {
        assert_eq!(B64.decode(l["value"].as_str().unwrap()).unwrap(), customer(i).into_bytes());
        assert_eq!(B64.decode(l["key"].as_str().unwrap()).unwrap(), format!("k{i}").into_bytes());
    }
    // The same through --config.
    let config = dir.join("config.json");
    std::fs::write(&config, json!({"kms": {"local": {"key_file": s(&keys)}}}).to_string()).unwrap();
    let via_config = ["--policy", s(&policy), "--topic", topic, "--config", s(&config)];
    let opened = fieldcrypt(&[&["decrypt"][..], &via_config, &["--profile", "support"]].concat(), &sealed.stdout)
        .ok("decrypt --config --profile");
    let first: Value =
        serde_json::from_slice(&B64.decode(opened.lines()[0]["value"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!((first["email"].as_str(), first["card"].as_str()), (Some("c0@example.com"), Some("****")));
    // A broken line: exit 1, the line number, no output for it.
    let bad = fieldcrypt(&[&["decrypt"][..], &args].concat(), "{\"value\": \"***\"}\n");
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("line 1"), "{}", bad.stderr);
    let missing = fieldcrypt(&["encrypt", "--policy", s(&dir.join("nope.json")), "--topic", topic], "");
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}
