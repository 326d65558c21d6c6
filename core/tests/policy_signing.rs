//! Signed policies, policy sources and hot reload (docs/POLICY.md, "Signed policies and
//! distribution"), without servers: keys made here, sources in memory, in files and behind a
//! small HTTP server on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fieldcrypt::{
    Codec, ErrorKind, Fetched, FileSource, HttpOptions, HttpsSource, LocalKms, MemorySource, OwnedHeader, Policy,
    PolicySource, PolicyVerifier, PublicKey, Reload, ReloadingCodec, Result, SignedPolicy, SigningKey, Verification,
};
use serde_json::Value;

const NO_HEADERS: &[OwnedHeader] = &[];
const RECORD: &[u8] = br#"{"name":"Ada","email":"ada@example.com","phone":"+44 20 7946 0000"}"#;

/// Policy `acme` at `revision`, encrypting `fields` of topic `customers`.
fn policy_text(revision: u64, fields: &[&str]) -> String {
    format!(
        r#"{{"fieldcrypt_policy": 1, "id": "acme", "revision": {revision},
  "encrypt": [{{"name": "pii", "topics": ["customers"], "fields": {}, "key": "local://demo"}}]}}"#,
        serde_json::to_string(fields).unwrap()
    )
}

fn signed(revision: u64, fields: &[&str], key_id: &str, key: &SigningKey) -> Vec<u8> {
    SignedPolicy::sign(&policy_text(revision, fields), key_id, key).unwrap().to_json().into_bytes()
}

fn verifier(key_id: &str, key: &SigningKey) -> PolicyVerifier {
    PolicyVerifier::new().trust(key_id, key.public_key()).unwrap()
}

fn factory(policy: Policy) -> Result<Codec> {
    Codec::builder(policy).kms(LocalKms::new().with_secret("demo", b"dev only")).build()
}

/// Which of the record's PII values the codec left readable after encrypting.
fn visible(codec_encrypt: impl Fn(&[u8]) -> Vec<u8>) -> Vec<&'static str> {
    let sealed = String::from_utf8(codec_encrypt(RECORD)).unwrap();
    ["ada@example.com", "+44 20 7946 0000"].into_iter().filter(|v| sealed.contains(v)).collect()
}

fn visible_with(codec: &ReloadingCodec) -> Vec<&'static str> {
    visible(|r| codec.encrypt("customers", None, Some(r), NO_HEADERS).unwrap().value.unwrap())
}

/// The envelope with its policy text changed by `edit`, signatures kept.
fn tampered(envelope: &[u8], edit: impl Fn(&str) -> String) -> Vec<u8> {
    let mut doc: Value = serde_json::from_slice(envelope).unwrap();
    let text = doc["policy"].as_str().unwrap().to_string();
    doc["policy"] = Value::String(edit(&text));
    serde_json::to_vec(&doc).unwrap()
}

// ---- signing and verification --------------------------------------------------------------------

#[test]
fn a_signed_policy_verifies_under_its_key() {
    let key = SigningKey::generate().unwrap();
    let document = signed(4, &["email"], "security-2026", &key);
    let verified = Verification::Required(verifier("security-2026", &key)).verify(&document).unwrap();
    assert_eq!(verified.policy().id(), "acme");
    assert_eq!(verified.policy().revision(), 4);
    assert_eq!(verified.signed_by(), Some("security-2026"));
    // The envelope carries the text exactly as signed.
    let envelope = SignedPolicy::from_json(&document).unwrap();
    assert_eq!(envelope.policy_text(), policy_text(4, &["email"]));
    assert_eq!(envelope.signatures()[0].algorithm, "ed25519");
    // Reformatting the envelope does not matter; the signed text is a string inside it.
    let compact = serde_json::to_vec(&serde_json::from_slice::<Value>(&document).unwrap()).unwrap();
    assert!(verifier("security-2026", &key).verify(&compact).is_ok());
}

#[test]
fn tampered_policy_text_is_rejected_without_echoing_it() {
    let key = SigningKey::generate().unwrap();
    let document = signed(4, &["email", "phone"], "k1", &key);
    // Dropping a field from the rules: the change an attacker would want.
    let bad = tampered(&document, |t| t.replace(r#"["email","phone"]"#, r#"["email"]"#));
    assert_ne!(bad, document);
    let e = verifier("k1", &key).verify(&bad).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Policy);
    assert!(e.message().contains("does not verify") && e.message().contains("\"k1\""), "{e}");
    for content in ["email", "phone", "local://demo", "customers", "acme"] {
        assert!(!e.message().contains(content), "{content} in {e}");
    }
    // Even whitespace counts: the signature covers the exact text.
    let spaced = tampered(&document, |t| format!("{t} "));
    assert!(verifier("k1", &key).verify(&spaced).is_err());
}

#[test]
fn a_signature_by_another_key_under_a_trusted_id_is_rejected() {
    let trusted = SigningKey::generate().unwrap();
    let attacker = SigningKey::generate().unwrap();
    let document = signed(1, &["email"], "k1", &attacker);
    let e = verifier("k1", &trusted).verify(&document).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Policy);
    assert!(e.message().contains("does not verify"), "{e}");
}

#[test]
fn unknown_key_ids_are_rejected_naming_the_ids() {
    let key = SigningKey::generate().unwrap();
    let document = signed(1, &["email"], "someone-else", &key);
    let e = verifier("k1", &key).verify(&document).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Policy);
    assert!(e.message().contains("\"someone-else\"") && e.message().contains("\"k1\""), "{e}");
    assert!(e.message().contains("does not trust"), "{e}");
}

#[test]
fn unsigned_policies_are_rejected_when_keys_are_configured() {
    let key = SigningKey::generate().unwrap();
    let bare = policy_text(1, &["email"]);
    let e = verifier("k1", &key).verify(bare.as_bytes()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Policy);
    assert!(e.message().contains("not signed"), "{e}");
    // An envelope with its signatures stripped is no better.
    let mut doc: Value = serde_json::from_slice(&signed(1, &["email"], "k1", &key)).unwrap();
    doc["signatures"] = Value::Array(vec![]);
    let e = verifier("k1", &key).verify(&serde_json::to_vec(&doc).unwrap()).unwrap_err();
    assert!(e.message().contains("no signature"), "{e}");
    // With verification disabled (development), the bare policy loads.
    let verified = Verification::Disabled.verify(bare.as_bytes()).unwrap();
    assert_eq!((verified.policy().id(), verified.signed_by()), ("acme", None));
}

#[test]
fn rotation_one_of_several_signatures_is_enough() {
    let old = SigningKey::generate().unwrap();
    let new = SigningKey::generate().unwrap();
    let mut envelope = SignedPolicy::sign(&policy_text(2, &["email"]), "old", &old).unwrap();
    envelope.add_signature("new", &new).unwrap();
    assert_eq!(envelope.add_signature("new", &new).unwrap_err().kind(), ErrorKind::Config);
    let document = envelope.to_json().into_bytes();
    for (trusted, expect) in [(verifier("old", &old), "old"), (verifier("new", &new), "new")] {
        assert_eq!(Verification::Required(trusted).verify(&document).unwrap().signed_by(), Some(expect));
    }
    // Both trusted: accepted; a failing signature next to a good one does not matter either.
    let both = PolicyVerifier::new().trust("old", old.public_key()).unwrap().trust("new", new.public_key()).unwrap();
    assert!(both.verify(&document).is_ok());
    let wrong_old = PolicyVerifier::new()
        .trust("old", SigningKey::generate().unwrap().public_key())
        .unwrap()
        .trust("new", new.public_key())
        .unwrap();
    assert!(wrong_old.verify(&document).is_ok());
}

#[test]
fn malformed_documents_are_policy_errors() {
    let key = SigningKey::generate().unwrap();
    let v = verifier("k1", &key);
    let good: Value = serde_json::from_slice(&signed(1, &["email"], "k1", &key)).unwrap();
    let with = |member: &str, value: Value| {
        let mut doc = good.clone();
        doc[member] = value;
        serde_json::to_vec(&doc).unwrap()
    };
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not json".to_vec(),
        b"[1,2]".to_vec(),
        b"{}".to_vec(),
        vec![0xff, 0xfe, 0x00],
        with("fieldcrypt_signed_policy", Value::from(2)),
        with("fieldcrypt_signed_policy", Value::from("one")),
        with("policy", Value::from(17)),
        with("signatures", Value::from("nope")),
        with("extra", Value::from(true)),
        with("signatures", serde_json::json!([{"key_id": "k1", "algorithm": "ed25519", "signature": "!!"}])),
        with("signatures", serde_json::json!([{"key_id": "k1", "algorithm": "rsa", "signature": "AAAA"}])),
        with("signatures", serde_json::json!([{"key_id": "k1\n", "algorithm": "ed25519", "signature": "AAAA"}])),
        with("signatures", Value::Array(vec![good["signatures"][0].clone(); 17])),
    ];
    for case in cases {
        let e = v.verify(&case).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Policy, "{e}");
        assert!(!e.message().contains('\n'), "{e}");
    }
    // A verified text that is not a valid policy is refused when signing already.
    let e = SignedPolicy::sign(r#"{"fieldcrypt_policy": 1}"#, "k1", &key).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Policy);
    assert_eq!(SignedPolicy::sign(&policy_text(1, &["a"]), "bad id", &key).unwrap_err().kind(), ErrorKind::Config);
}

#[test]
fn trusted_keys_are_read_from_json_in_both_forms() {
    let a = SigningKey::generate().unwrap();
    let b = SigningKey::generate().unwrap();
    let config = serde_json::json!({"a": a.public_key().to_base64(), "b": b.public_key().to_pem()}).to_string();
    let v = PolicyVerifier::from_json(&config).unwrap();
    assert_eq!(v.key_ids().collect::<Vec<_>>(), ["a", "b"]);
    assert!(v.verify(&signed(1, &["email"], "b", &b)).is_ok());
    assert_eq!(PublicKey::parse(&a.public_key().to_pem()).unwrap(), a.public_key());
    let e = PolicyVerifier::from_json(r#"{"a": "AAAA"}"#).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("\"a\""), "{e}");
    assert_eq!(
        Verification::Required(PolicyVerifier::new()).verify(&signed(1, &["email"], "a", &a)).unwrap_err().kind(),
        ErrorKind::Config
    );
}

// ---- hot reload ----------------------------------------------------------------------------------

fn reloading(source: MemorySource, key: &SigningKey) -> ReloadingCodec {
    ReloadingCodec::builder(source, Verification::Required(verifier("k1", key))).manual().build(factory).unwrap()
}

#[test]
fn reload_applies_newer_revisions_and_keeps_the_last_good_policy() {
    let key = SigningKey::generate().unwrap();
    let source = MemorySource::new(signed(2, &["email"], "k1", &key));
    let codec = reloading(source.clone(), &key);
    assert_eq!(visible_with(&codec), ["+44 20 7946 0000"]);
    assert_eq!(codec.reload_now().unwrap(), Reload::Unchanged);

    // Tampered, unsigned, unparsable: each rejected, revision 2 stays in force.
    let good3 = signed(3, &["email", "phone"], "k1", &key);
    let rejected: Vec<(Vec<u8>, &str)> = vec![
        (tampered(&signed(3, &["email"], "k1", &key), |t| t.replace("email", "phone")), "does not verify"),
        (policy_text(3, &["email", "phone"]).into_bytes(), "not signed"),
        (b"{\"fieldcrypt_signed_policy\": 1, ".to_vec(), "not a JSON object"),
    ];
    for (n, (document, reason)) in rejected.into_iter().enumerate() {
        source.set(document);
        let e = codec.reload_now().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Policy);
        assert!(e.message().contains(reason), "{e}");
        let status = codec.status();
        assert_eq!((status.revision, status.rejections, status.loads), (2, n as u64 + 1, 1));
        assert_eq!(status.last_error.unwrap().message(), e.message());
        assert_eq!(visible_with(&codec), ["+44 20 7946 0000"]);
    }

    // A newer signed revision changes behaviour without a new ReloadingCodec.
    source.set(good3.clone());
    assert_eq!(codec.reload_now().unwrap(), Reload::Loaded { policy_id: "acme".into(), revision: 3 });
    assert!(visible_with(&codec).is_empty());
    assert_eq!(codec.status().signed_by.as_deref(), Some("k1"));
    // Records of the older revision still decrypt.
    let record = codec.encrypt("customers", None, Some(RECORD), NO_HEADERS).unwrap();
    let opened = codec.decrypt("customers", None, record.value.as_deref(), &record.headers).unwrap();
    assert_eq!(opened.value.as_deref(), Some(RECORD));
}

#[test]
fn rollback_and_same_revision_changes_are_rejected() {
    let key = SigningKey::generate().unwrap();
    let source = MemorySource::new(signed(5, &["email"], "k1", &key));
    let codec = reloading(source.clone(), &key);

    source.set(signed(4, &["email", "phone"], "k1", &key));
    let e = codec.reload_now().unwrap_err();
    assert!(e.message().contains("rollback"), "{e}");
    source.set(signed(5, &["phone"], "k1", &key));
    let e = codec.reload_now().unwrap_err();
    assert!(e.message().contains("higher revision"), "{e}");
    assert_eq!((codec.status().revision, codec.status().rejections), (5, 2));

    // The same text again, signed by a new key (rotation): nothing changes, nothing rejected.
    let new_key = SigningKey::generate().unwrap();
    let mut envelope = SignedPolicy::sign(&policy_text(5, &["email"]), "k1", &key).unwrap();
    envelope.add_signature("k2", &new_key).unwrap();
    source.set(envelope.to_json());
    assert_eq!(codec.reload_now().unwrap(), Reload::Unchanged);
    assert_eq!(codec.status().rejections, 2);
}

#[test]
fn another_policy_id_is_rejected() {
    let key = SigningKey::generate().unwrap();
    let source = MemorySource::new(signed(1, &["email"], "k1", &key));
    let codec = reloading(source.clone(), &key);
    let other = policy_text(9, &["email"]).replace("\"acme\"", "\"other-team\"");
    source.set(SignedPolicy::sign(&other, "k1", &key).unwrap().to_json());
    let e = codec.reload_now().unwrap_err();
    assert!(e.message().contains("\"other-team\"") && e.message().contains("\"acme\""), "{e}");
    assert_eq!(codec.status().policy_id, "acme");

    // An expected id and a minimum revision also apply to the first load.
    let builder = |id: &str, min: u64| {
        ReloadingCodec::builder(MemorySource::new(other.clone()), Verification::Disabled)
            .manual()
            .policy_id(id)
            .min_revision(min)
            .build(factory)
    };
    assert_eq!(builder("acme", 0).unwrap_err().kind(), ErrorKind::Policy);
    assert!(builder("other-team", 10).unwrap_err().message().contains("minimum revision"));
    assert_eq!(builder("other-team", 9).unwrap().status().revision, 9);
}

#[test]
fn the_first_load_must_succeed() {
    let key = SigningKey::generate().unwrap();
    let bare = MemorySource::new(policy_text(1, &["email"]));
    let e = ReloadingCodec::builder(bare, Verification::Required(verifier("k1", &key))).build(factory).unwrap_err();
    assert!(e.message().contains("not signed"), "{e}");
    let missing = FileSource::new(temp_dir("first-load").join("missing.json"));
    let e = ReloadingCodec::builder(missing, Verification::Disabled).build(factory).unwrap_err();
    assert!(e.is_retryable() && e.message().contains("missing.json"), "{e}");
    // The factory's error (here: a profile the policy lacks) rejects the policy too.
    let source = MemorySource::new(signed(1, &["email"], "k1", &key));
    let e = ReloadingCodec::builder(source, Verification::Required(verifier("k1", &key)))
        .build(|p| Codec::builder(p).profile("support").build())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
}

#[test]
fn reloading_codecs_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<ReloadingCodec>();
    shared::<PolicyVerifier>();
    shared::<SigningKey>();
}

/// Counts fetches; serves one fixed document.
struct Counting(Arc<AtomicUsize>, Vec<u8>);

impl PolicySource for Counting {
    fn fetch(&self) -> Result<Fetched> {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        Ok(if n == 0 { Fetched::New(self.1.clone()) } else { Fetched::Unchanged })
    }
    fn describe(&self) -> String {
        "counting".into()
    }
}

#[test]
fn the_background_thread_polls_and_stops_on_drop() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let source = Counting(fetches.clone(), policy_text(1, &["email"]).into_bytes());
    let codec = ReloadingCodec::builder(source, Verification::Disabled)
        .interval(Duration::from_millis(20))
        .build(factory)
        .unwrap();
    wait_for("three polls", || fetches.load(Ordering::SeqCst) >= 3);
    drop(codec);
    let after = fetches.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(fetches.load(Ordering::SeqCst), after, "no fetch after drop");
}

/// Audit events through the application hook (a `tracing` subscriber gets the same events; a
/// hook is what tests can check without racing other tests' subscribers).
#[test]
fn reload_events_are_audited_without_policy_text() {
    use fieldcrypt::audit::{self, AuditEvent};
    struct Named(MemorySource);
    impl PolicySource for Named {
        fn fetch(&self) -> fieldcrypt::Result<Fetched> {
            self.0.fetch()
        }
        fn describe(&self) -> String {
            "audit-test source".into()
        }
    }
    let key = SigningKey::generate().unwrap();
    let events: Arc<Mutex<Vec<AuditEvent>>> = Arc::default();
    let sink = events.clone();
    audit::set_hook(move |e| {
        if e.to_json().contains("audit-test source") {
            sink.lock().unwrap().push(e.clone());
        }
    });
    let source = MemorySource::new(signed(1, &["email"], "k1", &key));
    let codec = ReloadingCodec::builder(Named(source.clone()), Verification::Required(verifier("k1", &key)))
        .manual()
        .build(factory)
        .unwrap();
    source.set(tampered(&signed(2, &["email"], "k1", &key), |t| t.replace("email", "phone")));
    codec.reload_now().unwrap_err();
    source.set(signed(2, &["phone"], "k1", &key));
    codec.reload_now().unwrap();
    audit::clear_hook();
    let events = events.lock().unwrap().clone();
    let names: Vec<&str> = events.iter().map(AuditEvent::name).collect();
    assert_eq!(names, ["policy_loaded", "policy_rejected", "policy_loaded"], "{events:?}");
    assert!(matches!(&events[0], AuditEvent::PolicyLoaded { policy_id, revision: 1, signed_by: Some(k), .. }
        if policy_id == "acme" && k == "k1"));
    assert!(
        matches!(&events[1], AuditEvent::PolicyRejected { revision: Some(1), reason, .. } if reason.contains("does not verify"))
    );
    assert!(matches!(&events[2], AuditEvent::PolicyLoaded { revision: 2, previous_revision: Some(1), .. }));
    for event in &events {
        let all = event.to_json();
        assert!(!all.contains("local://demo") && !all.contains("fieldcrypt_policy"), "{all}");
    }
}

// ---- sources -------------------------------------------------------------------------------------

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fieldcrypt-policy-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `bytes` to `path` atomically, as the documentation tells operators to.
fn replace_file(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn file_source_reports_changes_by_content() {
    let path = temp_dir("file").join("policy.json");
    replace_file(&path, b"one");
    let source = FileSource::new(&path);
    assert_eq!(source.fetch().unwrap(), Fetched::New(b"one".to_vec()));
    assert_eq!(source.fetch().unwrap(), Fetched::Unchanged);
    replace_file(&path, b"one");
    assert_eq!(source.fetch().unwrap(), Fetched::Unchanged, "same bytes rewritten");
    replace_file(&path, b"two");
    assert_eq!(source.fetch().unwrap(), Fetched::New(b"two".to_vec()));
    std::fs::remove_file(&path).unwrap();
    let e = source.fetch().unwrap_err();
    assert!(e.is_retryable() && e.kind() == ErrorKind::Policy, "{e}");
    assert!(source.describe().contains("policy.json"));
}

#[test]
fn file_policies_hot_reload_in_the_background() {
    let key = SigningKey::generate().unwrap();
    let path = temp_dir("reload").join("policy.json");
    replace_file(&path, &signed(1, &["email"], "k1", &key));
    let codec = ReloadingCodec::builder(FileSource::new(&path), Verification::Required(verifier("k1", &key)))
        .interval(Duration::from_millis(25))
        .build(factory)
        .unwrap();
    assert_eq!(visible_with(&codec), ["+44 20 7946 0000"]);
    replace_file(&path, &policy_text(2, &["email", "phone"]).into_bytes());
    wait_for("the unsigned policy's rejection", || codec.status().rejections == 1);
    assert_eq!(visible_with(&codec), ["+44 20 7946 0000"]);
    replace_file(&path, &signed(2, &["email", "phone"], "k1", &key));
    wait_for("revision 2", || codec.status().revision == 2);
    assert!(visible_with(&codec).is_empty());
    // Each record's header names the revision that encrypted it.
    let record = codec.current().encrypt("customers", None, Some(RECORD), NO_HEADERS).unwrap();
    let header = fieldcrypt::header::parse(record.fieldcrypt_header().unwrap()).unwrap();
    assert_eq!((header.policy_id, header.policy_revision), ("acme", 2));
}

/// An HTTP server on 127.0.0.1 serving one document with an ETag, answering `304` to a
/// matching `If-None-Match`. Records each request's `If-None-Match`.
struct EtagServer {
    url: String,
    state: Arc<Mutex<(Vec<u8>, u32)>>,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl EtagServer {
    fn start(document: &[u8]) -> EtagServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/policy.json", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new((document.to_vec(), 1)));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (state2, seen2) = (state.clone(), seen.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut inm = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.trim_end().split_once(':') {
                        if name.eq_ignore_ascii_case("if-none-match") {
                            inm = Some(value.trim().to_string());
                        }
                    }
                }
                seen2.lock().unwrap().push(inm.clone());
                let (body, version) = state2.lock().unwrap().clone();
                let etag = format!("\"v{version}\"");
                let _ = if inm.as_deref() == Some(&etag) {
                    write!(stream, "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n")
                } else {
                    write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nETag: {etag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .and_then(|_| stream.write_all(&body))
                };
            }
        });
        EtagServer { url, state, seen }
    }

    fn set(&self, document: &[u8]) {
        let mut state = self.state.lock().unwrap();
        state.0 = document.to_vec();
        state.1 += 1;
    }
}

#[test]
fn https_source_polls_with_if_none_match() {
    let server = EtagServer::start(b"first");
    let source = HttpsSource::new(&server.url, &HttpOptions::default()).unwrap();
    assert_eq!(source.fetch().unwrap(), Fetched::New(b"first".to_vec()));
    assert_eq!(source.fetch().unwrap(), Fetched::Unchanged);
    server.set(b"second");
    assert_eq!(source.fetch().unwrap(), Fetched::New(b"second".to_vec()));
    assert_eq!(source.fetch().unwrap(), Fetched::Unchanged);
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen, [None, Some("\"v1\"".into()), Some("\"v1\"".into()), Some("\"v2\"".into())]);
}

#[test]
fn https_source_errors_name_the_url_not_its_query() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let options = HttpOptions { max_retries: 1, backoff: Duration::from_millis(1), ..Default::default() };
    let source = HttpsSource::new(&format!("http://127.0.0.1:{closed}/p.json?token=s3cret"), &options).unwrap();
    let e = source.fetch().unwrap_err();
    assert!(e.is_retryable() && e.kind() == ErrorKind::Policy, "{e}");
    assert!(e.message().contains("/p.json") && !e.message().contains("s3cret"), "{e}");
}

#[test]
fn a_signed_policy_over_http_drives_a_reloading_codec() {
    let key = SigningKey::generate().unwrap();
    let server = EtagServer::start(&signed(1, &["email"], "k1", &key));
    let source = HttpsSource::new(&server.url, &HttpOptions::default()).unwrap();
    let codec =
        ReloadingCodec::builder(source, Verification::Required(verifier("k1", &key))).manual().build(factory).unwrap();
    assert_eq!(visible_with(&codec), ["+44 20 7946 0000"]);
    assert_eq!(codec.reload_now().unwrap(), Reload::Unchanged);
    server.set(&signed(2, &["phone"], "k1", &key));
    assert_eq!(codec.reload_now().unwrap(), Reload::Loaded { policy_id: "acme".into(), revision: 2 });
    assert_eq!(visible_with(&codec), ["ada@example.com"]);
}
