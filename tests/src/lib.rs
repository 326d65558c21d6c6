//! Helpers for fieldcrypt's integration tests, which run against real servers on 127.0.0.1:
//!
//! ```text
//! scripts/servers.sh start all
//! eval "$(scripts/servers.sh env)"      # FIELDCRYPT_KAFKA, FIELDCRYPT_REGISTRY
//! cargo test -p fieldcrypt-it
//! scripts/servers.sh stop
//! ```
//!
//! A test whose server is not configured fails: an integration suite that skips itself when
//! nothing is running would pass on a machine where it tested nothing.
//!
//! The KMS suites (`tests/tests/kms_*.rs`, servers from `scripts/kms/*.sh`) share the helpers of
//! the last section: the `customers` policy and records, what a sealed record holds, a lock
//! around a server that a test freezes, and the scenarios every KMS goes through (round trip,
//! revocation within the DEK cache TTL, KMS calls per DEK, outage).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fieldcrypt::header::{self, DekLocation};
use fieldcrypt::{Algorithm, Codec, KekUri, Kms, Limits, OwnedHeader, Policy, Record, WrapContext};
use reqwest::Url;
use serde_json::{json, Value};

/// The value of `name`, or a panic telling how to start the servers.
pub fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => panic!(
            "{name} is not set: start the servers and export their endpoints first:\n  \
             scripts/servers.sh start all && eval \"$(scripts/servers.sh env)\""
        ),
    }
}

/// The Confluent-compatible API of the running registry (Apicurio: `.../apis/ccompat/v7`).
pub fn registry_url() -> String {
    required_env("FIELDCRYPT_REGISTRY")
}

/// A tag unique to this test process, so reruns against one server do not collide.
pub fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        format!("{}-{:x}", std::process::id(), nanos & 0xffff_ffff)
    })
}

/// `it-<run id>-<name>`: a subject no other run uses.
pub fn unique_subject(name: &str) -> String {
    format!("it-{}-{name}", run_id())
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the repository").to_path_buf()
}

/// The text of a file given relative to the repository root (`schemas/...`, `tests/fixtures/...`).
pub fn read_repo_file(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Registers schemas through the Confluent-compatible API, as a producer's serializer would.
pub struct Ccompat {
    base: Url,
    http: reqwest::blocking::Client,
}

impl Ccompat {
    pub fn new(base: &str) -> Ccompat {
        let base = Url::parse(base.trim_end_matches('/')).unwrap_or_else(|e| panic!("bad registry url {base}: {e}"));
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Ccompat { base, http }
    }

    pub fn from_env() -> Ccompat {
        Ccompat::new(&registry_url())
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut().unwrap().pop_if_empty().extend(segments);
        url
    }

    /// `POST /subjects/{subject}/versions`; returns the schema id. `references` are
    /// `(name, subject, version)`.
    pub fn register(&self, subject: &str, schema_type: &str, schema: &str, references: &[(&str, &str, i32)]) -> i32 {
        let refs: Vec<Value> = references
            .iter()
            .map(|(name, subject, version)| json!({"name": name, "subject": subject, "version": version}))
            .collect();
        let body = json!({"schemaType": schema_type, "schema": schema, "references": refs});
        let response = self
            .http
            .post(self.url(&["subjects", subject, "versions"]))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .body(body.to_string())
            .send()
            .unwrap_or_else(|e| panic!("registering {subject}: {e}"));
        let status = response.status();
        let text = response.text().unwrap_or_default();
        assert!(status.is_success(), "registering {subject}: HTTP {status}: {text}");
        let answer: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("registering {subject}: {e}: {text}"));
        answer["id"].as_i64().unwrap_or_else(|| panic!("registering {subject}: no id in {text}")) as i32
    }
}

/// One request as a [`Capture`] saw it.
#[derive(Debug, Clone)]
pub struct CapturedRequest {
    pub request_line: String,
    /// Header lines as sent, e.g. `authorization: Basic dXNlcjpwYXNz`.
    pub headers: Vec<String>,
}

impl CapturedRequest {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// A one-connection-at-a-time HTTP listener on 127.0.0.1 that records each request and answers
/// every one with the same status and JSON body: shows what a client really sends.
pub struct Capture {
    pub url: String,
    requests: mpsc::Receiver<CapturedRequest>,
    _thread: JoinHandle<()>,
}

impl Capture {
    pub fn start(status: u16, body: &str) -> Capture {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, requests) = mpsc::channel();
        let body = body.to_string();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Some(request) = answer(stream, status, &body) {
                    if tx.send(request).is_err() {
                        return;
                    }
                }
            }
        });
        Capture { url, requests, _thread: thread }
    }

    /// The next request received (waits up to 10 s).
    pub fn next_request(&self) -> CapturedRequest {
        self.try_next_request(Duration::from_secs(10)).expect("no request reached the capture listener")
    }

    /// The next request received within `wait`, if any.
    pub fn try_next_request(&self, wait: Duration) -> Option<CapturedRequest> {
        self.requests.recv_timeout(wait).ok()
    }
}

fn answer(stream: TcpStream, status: u16, body: &str) -> Option<CapturedRequest> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
            break;
        }
        headers.push(line.trim_end().to_string());
    }
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} Captured\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    Some(CapturedRequest { request_line: request_line.trim_end().to_string(), headers })
}

// ---------------------------------------------------------------------------------------------
// KMS suites

/// The topic of the KMS suites' records.
pub const CUSTOMERS: &str = "customers";

/// Policy `id`: rule `pii` encrypts fields `ssn` and `email` of `topic` under `kek`, with
/// `algorithm` (`AES256_GCM`, `AES256_SIV`) or, when None, the policy's default.
pub fn pii_policy(id: &str, topic: &str, kek: &str, algorithm: Option<&str>) -> Policy {
    let mut rule = json!({"name": "pii", "topics": [topic], "fields": ["ssn", "email"], "key": kek});
    if let Some(algorithm) = algorithm {
        rule["algorithm"] = json!(algorithm);
    }
    Policy::from_json(&json!({"fieldcrypt_policy": 1, "id": id, "encrypt": [rule]}).to_string()).expect("policy")
}

/// A codec for `policy` with the (shared) client `kms` and `limits`.
pub fn codec_with(policy: Policy, kms: Arc<dyn Kms>, limits: Limits) -> Codec {
    Codec::builder(policy).kms_shared(kms).limits(limits).build().expect("codec")
}

/// Customer `i`: `ssn` and `email` are what the policy encrypts, `id` and `name` stay as they are.
pub fn customer(i: usize) -> Value {
    json!({"id": i, "name": format!("customer {i}"), "ssn": format!("SSN-{i:06}-secret"), "email": format!("c{i}@example.com")})
}

/// `value` produced to topic `customers` (no key, no headers).
pub fn encrypt(codec: &Codec, value: &Value) -> fieldcrypt::Result<Record> {
    codec.encrypt(CUSTOMERS, None, Some(value.to_string().as_bytes()), &[] as &[OwnedHeader])
}

/// `record` consumed from topic `customers`.
pub fn decrypt(codec: &Codec, record: &Record) -> fieldcrypt::Result<Record> {
    codec.decrypt(CUSTOMERS, record.key.as_deref(), record.value.as_deref(), &record.headers)
}

/// The JSON value of `record`.
pub fn value_of(record: &Record) -> Value {
    serde_json::from_slice(record.value.as_deref().expect("a value")).expect("JSON value")
}

/// The value of `record` as text (lossy), to search for plaintext.
pub fn value_text(record: &Record) -> String {
    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned()
}

/// Asserts a sealed record shows neither secret of `plain` and carries a fieldcrypt header.
pub fn assert_sealed(record: &Record, plain: &Value) {
    let text = value_text(record);
    for field in ["ssn", "email"] {
        let secret = plain[field].as_str().unwrap();
        assert!(!text.contains(secret), "stored value contains the plaintext {field}: {text}");
    }
    assert!(record.fieldcrypt_header().is_some(), "no fieldcrypt header");
}

/// (kek, kek_version, dek id, wrapped DEK) of the single key entry of a sealed record.
pub fn key_entry(record: &Record) -> (String, String, [u8; 16], Vec<u8>) {
    let envelope = header::parse(record.fieldcrypt_header().expect("header")).expect("header parses");
    assert_eq!(envelope.keys.len(), 1);
    let k = &envelope.keys[0];
    let wrapped = match k.dek {
        DekLocation::Inline(w) => w.to_vec(),
        DekLocation::KeyStore => panic!("the wrapped DEK should travel in the header"),
    };
    (k.kek.to_string(), k.kek_version.to_string(), k.dek_id, wrapped)
}

/// The error `kms` answers when asked directly to unwrap the DEK of `record`'s key entry under
/// `kek` (AES256_GCM); panics if it unwraps.
pub fn refused_unwrap(kms: &dyn Kms, kek: &str, record: &Record) -> fieldcrypt::Error {
    let (_, version, id, wrapped) = key_entry(record);
    let ctx = WrapContext { dek_id: &id, algorithm: Algorithm::Aes256Gcm };
    match kms.unwrap(&KekUri::parse(kek).unwrap(), &version, &wrapped, &ctx) {
        Ok(_) => panic!("{kek}: the DEK of a revoked record unwrapped"),
        Err(e) => e,
    }
}

/// `fieldcrypt-it-<run id>-<what>`: a key (or other server object) name of this run only.
pub fn own_name(what: &str) -> String {
    format!("fieldcrypt-it-{}-{what}", run_id())
}

/// The KEK URI of key `name` on the server of `kek`, a URI ending in `/keys/NAME` (Vault, Azure).
pub fn kek_named(kek: &str, name: &str) -> String {
    let base = kek.rsplit_once("/keys/").unwrap_or_else(|| panic!("{kek} does not end in /keys/NAME")).0;
    format!("{base}/keys/{name}")
}

/// Serializes a suite's tests around its server: every test holds it shared; a test that
/// freezes the server holds it exclusively, so nothing else talks to the frozen server.
#[derive(Default)]
pub struct ServerLock(RwLock<()>);

impl ServerLock {
    pub const fn new() -> ServerLock {
        ServerLock(RwLock::new(()))
    }

    /// Held by every test that uses the server.
    pub fn shared(&self) -> RwLockReadGuard<'_, ()> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Held by the test that freezes the server.
    pub fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The pid in the pid file named by environment variable `pid_file_var`.
pub fn pid_from_file(pid_file_var: &str) -> String {
    let pid_file = required_env(pid_file_var);
    std::fs::read_to_string(&pid_file).unwrap_or_else(|e| panic!("{pid_file}: {e}")).trim().to_string()
}

/// A process stopped with SIGSTOP, continued (SIGCONT) when dropped: a failing test never leaves
/// its server frozen.
pub struct Frozen(String);

impl Frozen {
    pub fn stop(pid: &str) -> Frozen {
        signal("-STOP", pid);
        Frozen(pid.to_string())
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal("-CONT", &self.0);
    }
}

fn signal(which: &str, pid: &str) {
    let status = std::process::Command::new("kill").args([which, pid]).status().expect("kill runs");
    assert!(status.success(), "kill {which} {pid} failed");
}

/// (1) Round trip between separate clients: `producer` seals 20 customers under `kek`; each
/// stored value holds no plaintext and keeps its unselected fields, its one key entry names
/// `kek`, and `check_entry(kek_version, wrapped DEK)` checks what the KMS made of it; `consumer`
/// opens them all (header removed) with one unwrap, after `producer` wrapped one DEK.
pub fn round_trip(kek: &str, producer: &Codec, consumer: &Codec, check_entry: impl Fn(&str, Vec<u8>)) {
    let plain: Vec<Value> = (0..20).map(customer).collect();
    let sealed: Vec<Record> = plain.iter().map(|v| encrypt(producer, v).unwrap()).collect();
    for (record, p) in sealed.iter().zip(&plain) {
        assert_sealed(record, p);
        assert_eq!(value_of(record)["name"], p["name"], "unselected fields stay as they are");
        let (k, version, _, wrapped) = key_entry(record);
        assert_eq!(k, kek);
        check_entry(&version, wrapped);
    }
    for (record, p) in sealed.iter().zip(&plain) {
        let opened = decrypt(consumer, record).unwrap();
        assert_eq!(&value_of(&opened), p);
        assert!(opened.fieldcrypt_header().is_none(), "header removed once all is plaintext");
    }
    let (ps, cs) = (producer.stats(), consumer.stats());
    assert_eq!((ps.deks_created, ps.kms_wrap_calls), (1, 1), "{ps:?}");
    assert_eq!(cs.kms_unwrap_calls, 1, "{cs:?}");
    assert_eq!(cs.fields_decrypted, 40);
}

/// (3) Revocation takes effect within the DEK cache TTL: `consumer` (DEK cache TTL `ttl`) opens
/// customer 7 as sealed by `producer`, then `revoke()` withdraws its access. While less than half
/// the TTL has passed it still reads the record (cached DEK); once the TTL is over the consumer
/// gets the fallback, not an error: both fields stay ciphertext. Returns the sealed record.
pub fn revocation_within_ttl(producer: &Codec, consumer: &Codec, ttl: Duration, revoke: impl FnOnce()) -> Record {
    let plain = customer(7);
    let sealed = encrypt(producer, &plain).unwrap();
    assert_eq!(value_of(&decrypt(consumer, &sealed).unwrap()), plain);
    let decrypted_at = Instant::now();
    revoke();
    // Still cached: plaintext (the longest a revoked consumer keeps reading is the cache TTL).
    if decrypted_at.elapsed() < ttl / 2 {
        assert_eq!(value_of(&decrypt(consumer, &sealed).unwrap()), plain, "still cached");
    }
    std::thread::sleep(ttl.saturating_sub(decrypted_at.elapsed()) + Duration::from_millis(100));
    let withheld_before = consumer.stats().fields_withheld;
    let out = decrypt(consumer, &sealed).expect("fallback, not an error");
    assert_sealed(&out, &plain);
    assert_eq!(out.value, sealed.value, "fields stay ciphertext");
    assert_eq!(consumer.stats().fields_withheld - withheld_before, 2);
    sealed
}

/// (5) KMS calls are per DEK, not per record: 100,000 customers through the codec `producer`
/// makes from limits that replace a DEK every 20,000 uses wrap exactly one DEK per 20,000 uses,
/// and the codec `consumer` makes once they are sealed unwraps each DEK once. `suite` names the
/// timing line printed to stderr.
pub fn kms_calls_per_dek(suite: &str, producer: impl FnOnce(Limits) -> Codec, consumer: impl FnOnce() -> Codec) {
    const RECORDS: usize = 100_000;
    const MAX_USES: u64 = 20_000;
    let producer = producer(Limits { dek_max_uses: MAX_USES, ..Limits::default() });
    let t0 = Instant::now();
    let sealed: Vec<Record> = (0..RECORDS).map(|i| encrypt(&producer, &customer(i)).unwrap()).collect();
    let encrypt_time = t0.elapsed();
    let ps = producer.stats();
    // Each record uses its DEK once per field (2) and once for the header tag.
    let uses_per_record = 3u64;
    let records_per_dek = MAX_USES.div_ceil(uses_per_record);
    let expected_deks = (RECORDS as u64).div_ceil(records_per_dek);
    assert_eq!(ps.kms_wrap_calls, ps.deks_created, "{ps:?}");
    assert_eq!(ps.deks_created, expected_deks, "{ps:?}");

    let distinct: HashSet<[u8; 16]> = sealed.iter().map(|r| key_entry(r).2).collect();
    assert_eq!(distinct.len() as u64, ps.deks_created);
    let consumer = consumer();
    let t1 = Instant::now();
    for (i, record) in sealed.iter().enumerate() {
        let opened = decrypt(&consumer, record).unwrap();
        if i % 997 == 0 {
            assert_eq!(value_of(&opened), customer(i));
        }
    }
    let decrypt_time = t1.elapsed();
    let cs = consumer.stats();
    assert_eq!(cs.kms_unwrap_calls, distinct.len() as u64, "{cs:?}");
    assert_eq!(cs.fields_decrypted, 2 * RECORDS as u64);
    eprintln!(
        "{suite}: {RECORDS} records, {} DEKs, {} wraps, {} unwraps; encrypt {encrypt_time:?}, decrypt {decrypt_time:?}",
        ps.deks_created, ps.kms_wrap_calls, cs.kms_unwrap_calls
    );
}

/// (6) Outage, with the server process frozen (SIGSTOP): a producer whose DEK is due for
/// rotation keeps using it for `dek_outage_extra_uses` more uses, then fails closed with a
/// retryable Kms error naming the KEK; a consumer keeps decrypting with cached DEKs; once the
/// server is back (SIGCONT), production recovers on a new DEK, and a fresh consumer reads every
/// record made. The caller holds its suite's [`ServerLock`] exclusively.
pub struct Outage<'a> {
    /// The environment variable naming the server's pid file.
    pub pid_file_var: &'a str,
    /// The KEK of the codecs.
    pub kek: &'a str,
    /// A codec for `kek` with the client and limits given.
    pub codec: &'a dyn Fn(Arc<dyn Kms>, Limits) -> Codec,
    /// A client that gives up fast (300 ms timeout, no retries), for the producer and the
    /// consumer that live through the outage.
    pub fast_client: &'a dyn Fn() -> Arc<dyn Kms>,
    /// A client with the suite's usual options, for the consumer that reads everything at the end.
    pub client: &'a dyn Fn() -> Arc<dyn Kms>,
    /// Also check that the producer counted its failed KMS calls (`Stats::kms_errors`).
    pub check_error_count: bool,
}

impl Outage<'_> {
    pub fn run(&self) {
        let pid = pid_from_file(self.pid_file_var);
        let kek = self.kek;
        let limits = Limits {
            dek_max_uses: 30,          // 10 records of 3 uses
            dek_outage_extra_uses: 60, // 20 more records during an outage
            kms_retry_interval: Duration::from_millis(200),
            ..Limits::default()
        };
        let producer = (self.codec)((self.fast_client)(), limits.clone());
        let consumer = (self.codec)((self.fast_client)(), Limits::default());

        let mut ok: Vec<(usize, Record)> = Vec::new();
        for i in 0..5 {
            let r = encrypt(&producer, &customer(i)).unwrap();
            assert_eq!(value_of(&decrypt(&consumer, &r).unwrap()), customer(i)); // consumer caches DEK 1
            ok.push((i, r));
        }
        let first_dek = key_entry(&ok[0].1).2;

        let frozen = Frozen::stop(&pid);
        let mut during = 0;
        let mut failure = None;
        for i in 5..200 {
            match encrypt(&producer, &customer(i)) {
                Ok(r) => {
                    assert_sealed(&r, &customer(i));
                    assert_eq!(key_entry(&r).2, first_dek, "no new DEK can be made while the KMS is down");
                    // Cached DEK: the consumer reads it without the KMS.
                    assert_eq!(value_of(&decrypt(&consumer, &r).unwrap()), customer(i), "cached DEK");
                    ok.push((i, r));
                    during += 1;
                }
                Err(e) => {
                    failure = Some((i, e));
                    break;
                }
            }
        }
        let (failed_at, e) = failure.expect("production must fail closed once the extra uses are spent");
        assert_eq!(e.kind(), fieldcrypt::ErrorKind::Kms, "{e}");
        assert!(e.is_retryable(), "{e}");
        assert!(e.message().contains(kek), "{e}");
        // 10 records on the DEK's normal budget (5 before the freeze), then 20 extra.
        assert_eq!(during, 5 + 20, "records produced during the outage");
        // Still failing within the retry interval, and again after a retry.
        assert_eq!(encrypt(&producer, &customer(failed_at)).unwrap_err().kind(), fieldcrypt::ErrorKind::Kms);
        std::thread::sleep(limits.kms_retry_interval);
        assert!(encrypt(&producer, &customer(failed_at)).unwrap_err().is_retryable());
        if self.check_error_count {
            let stats = producer.stats();
            assert!(stats.kms_errors >= 2, "{stats:?}");
        }

        drop(frozen); // SIGCONT
        let deadline = Instant::now() + Duration::from_secs(15);
        let recovered = loop {
            match encrypt(&producer, &customer(1000)) {
                Ok(r) => break r,
                Err(e) => {
                    assert!(e.is_retryable(), "{e}");
                    assert!(Instant::now() < deadline, "production did not recover: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        assert_ne!(key_entry(&recovered).2, first_dek, "a new DEK once the KMS is back");
        ok.push((1000, recovered));

        let fresh = (self.codec)((self.client)(), Limits::default());
        for (i, r) in &ok {
            assert_eq!(value_of(&decrypt(&fresh, r).unwrap()), customer(*i));
        }
    }
}
