//! fieldcrypt with Google Cloud KMS KEKs (`gcp-kms://...`).
//!
//! **No real Cloud KMS and no Cloud KMS emulator runs in these tests.** None could be installed
//! here (the community emulators are not served by the Go module proxy; see docs/kms/gcp.md).
//! Instead the real `GcpKms` client (its HTTP requests, JSON bodies, bearer auth, error mapping
//! and retries) runs inside real codecs against [`FakeCloudKms`]: a small in-process HTTP server,
//! written for these tests, that answers the two Cloud KMS REST calls the client makes
//! (`cryptoKeys.encrypt` and `cryptoKeys.decrypt`) the way Google's API reference documents them:
//! the primary version encrypts and is named in the answer, decrypt finds the version from the
//! ciphertext, additional authenticated data must match, disabled versions answer
//! `FAILED_PRECONDITION`, unknown keys `NOT_FOUND`, bad tokens `UNAUTHENTICATED`. It stores
//! plaintexts in memory against opaque ciphertext handles (it does no cryptography). What these
//! tests prove is the client's and the codec's behaviour given those answers — not that Cloud
//! KMS gives them; the answers themselves are checked against Google's documentation only.
//! The service account (JWT) flow is covered by the unit tests in core/src/kms/gcp.rs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use fieldcrypt::kms::{GcpAuth, GcpKms, GcpKmsConfig};
use fieldcrypt::{Algorithm, Codec, ErrorKind, HttpOptions, KekUri, Kms, Limits, OwnedHeader, Record};
use fieldcrypt_it::{pii_policy, run_id, value_of};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// The fake Cloud KMS.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum VersionState {
    Enabled,
    Disabled,
}

struct FakeKey {
    primary: u32,
    versions: BTreeMap<u32, VersionState>,
}

struct Blob {
    key: String,
    version: u32,
    plaintext: Vec<u8>,
    aad: Vec<u8>,
}

#[derive(Default)]
struct State {
    keys: HashMap<String, FakeKey>,
    blobs: HashMap<Vec<u8>, Blob>,
    next_blob: u64,
    encrypt_calls: u64,
    decrypt_calls: u64,
}

/// An in-process stand-in for the Cloud KMS REST API (encrypt/decrypt only) on 127.0.0.1.
struct FakeCloudKms {
    url: String,
    state: Arc<Mutex<State>>,
    frozen: Arc<(Mutex<bool>, Condvar)>,
}

/// Unfreezes the fake when dropped, so a failing test never leaves it stalled.
struct Thaw<'a>(&'a FakeCloudKms);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.0.frozen;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = false;
        cvar.notify_all();
    }
}

impl FakeCloudKms {
    /// Starts the fake; with `token`, every call must carry `Authorization: Bearer <token>`.
    fn start(token: Option<&str>) -> FakeCloudKms {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let frozen = Arc::new((Mutex::new(false), Condvar::new()));
        let (s, f, token) = (state.clone(), frozen.clone(), token.map(str::to_string));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (s, f, token) = (s.clone(), f.clone(), token.clone());
                std::thread::spawn(move || handle(stream, &s, &f, token.as_deref()));
            }
        });
        FakeCloudKms { url, state, frozen }
    }

    /// CreateCryptoKey: a new ENCRYPT_DECRYPT key whose version 1 is enabled and primary.
    fn create_key(&self, name: &str) {
        let key = FakeKey { primary: 1, versions: BTreeMap::from([(1, VersionState::Enabled)]) };
        self.state.lock().unwrap().keys.insert(name.to_string(), key);
    }

    /// CreateCryptoKeyVersion + UpdateCryptoKeyPrimaryVersion; returns the new version.
    fn rotate(&self, name: &str) -> u32 {
        let mut state = self.state.lock().unwrap();
        let key = state.keys.get_mut(name).unwrap();
        let next = key.versions.keys().max().unwrap() + 1;
        key.versions.insert(next, VersionState::Enabled);
        key.primary = next;
        next
    }

    /// UpdateCryptoKeyVersion state=DISABLED.
    fn disable(&self, name: &str, version: u32) {
        self.state.lock().unwrap().keys.get_mut(name).unwrap().versions.insert(version, VersionState::Disabled);
    }

    /// (encrypt calls, decrypt calls) answered so far.
    fn calls(&self) -> (u64, u64) {
        let state = self.state.lock().unwrap();
        (state.encrypt_calls, state.decrypt_calls)
    }

    /// Stalls every request (as `kill -STOP` would) until the guard is dropped.
    fn freeze(&self) -> Thaw<'_> {
        *self.frozen.0.lock().unwrap() = true;
        Thaw(self)
    }
}

fn handle(stream: TcpStream, state: &Mutex<State>, frozen: &(Mutex<bool>, Condvar), token: Option<&str>) {
    let Some((line, headers, body)) = read_request(&stream) else { return };
    {
        let (lock, cvar) = frozen;
        let mut stalled = lock.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + Duration::from_secs(60);
        while *stalled && Instant::now() < deadline {
            stalled = cvar.wait_timeout(stalled, Duration::from_millis(50)).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
    let (status, answer) = respond(&line, &headers, &body, state, token);
    let text = answer.to_string();
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} Fake\r\nContent-Type: application/json; charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

/// Request line, lower-cased header names with values, body.
type Request = (String, Vec<(String, String)>, Vec<u8>);

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 || h == "\r\n" {
            break;
        }
        let (n, v) = h.trim_end().split_once(':')?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    Some((line.trim_end().to_string(), headers, body))
}

fn google_error(code: u16, status: &str, message: &str) -> (u16, Value) {
    (code, json!({"error": {"code": code, "message": message, "status": status}}))
}

fn respond(
    line: &str,
    headers: &[(String, String)],
    body: &[u8],
    state: &Mutex<State>,
    token: Option<&str>,
) -> (u16, Value) {
    let Some(path) = line.strip_prefix("POST ").and_then(|l| l.strip_suffix(" HTTP/1.1")) else {
        return google_error(404, "NOT_FOUND", "unknown request");
    };
    if let Some(token) = token {
        let sent = headers.iter().find(|(n, _)| n == "authorization").map(|(_, v)| v.as_str());
        if sent != Some(format!("Bearer {token}").as_str()) {
            return google_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            );
        }
    }
    let Some((name, method)) = path.strip_prefix("/v1/").and_then(|p| p.rsplit_once(':')) else {
        return google_error(404, "NOT_FOUND", "unknown path");
    };
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
    };
    let field = |n: &str| request[n].as_str().map(|s| STANDARD.decode(s));
    let aad = match field("additionalAuthenticatedData") {
        None => Vec::new(),
        Some(Ok(aad)) => aad,
        Some(Err(_)) => {
            return google_error(400, "INVALID_ARGUMENT", "Invalid value at 'additional_authenticated_data'")
        }
    };
    let mut state = state.lock().unwrap();
    let Some(key) = state.keys.get(name) else {
        return google_error(404, "NOT_FOUND", &format!("CryptoKey {name} not found."));
    };
    let not_enabled = |v: u32, s: VersionState| {
        google_error(
            400,
            "FAILED_PRECONDITION",
            &format!(
                "{name}/cryptoKeyVersions/{v} is not enabled, current state is: {}.",
                format!("{s:?}").to_uppercase()
            ),
        )
    };
    match method {
        "encrypt" => {
            let Some(Ok(plaintext)) = field("plaintext") else {
                return google_error(400, "INVALID_ARGUMENT", "Invalid value at 'plaintext'");
            };
            let version = key.primary;
            let version_state = key.versions[&version];
            if version_state != VersionState::Enabled {
                return not_enabled(version, version_state);
            }
            state.encrypt_calls += 1;
            state.next_blob += 1;
            let mut handle = b"fake-cloud-kms:".to_vec();
            handle.extend_from_slice(&version.to_be_bytes());
            handle.extend_from_slice(&state.next_blob.to_be_bytes());
            let blob = Blob { key: name.to_string(), version, plaintext, aad };
            state.blobs.insert(handle.clone(), blob);
            (
                200,
                json!({
                    "name": format!("{name}/cryptoKeyVersions/{version}"),
                    "ciphertext": STANDARD.encode(&handle),
                    "protectionLevel": "SOFTWARE",
                }),
            )
        }
        "decrypt" => {
            let invalid = || google_error(400, "INVALID_ARGUMENT", "Decryption failed: the ciphertext is invalid.");
            let Some(Ok(ciphertext)) = field("ciphertext") else { return invalid() };
            let Some(blob) = state.blobs.get(&ciphertext) else { return invalid() };
            if blob.key != name || blob.aad != aad {
                return invalid();
            }
            let version_state = key.versions[&blob.version];
            if version_state != VersionState::Enabled {
                return not_enabled(blob.version, version_state);
            }
            let answer = json!({
                "plaintext": STANDARD.encode(&blob.plaintext),
                "usedPrimary": blob.version == key.primary,
                "protectionLevel": "SOFTWARE",
            });
            state.decrypt_calls += 1;
            (200, answer)
        }
        _ => google_error(404, "NOT_FOUND", "unknown method"),
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

const TOKEN: &str = "ya29.it-access-token-secret";

fn key_name(test: &str) -> String {
    format!("projects/fieldcrypt-it/locations/global/keyRings/ring/cryptoKeys/{test}-{}", run_id())
}

fn uri(key: &str) -> String {
    format!("gcp-kms://{key}")
}

fn client(fake: &FakeCloudKms, token: &str, http: HttpOptions) -> GcpKms {
    let config = GcpKmsConfig::new(GcpAuth::AccessToken(token.to_string())).with_endpoint(&fake.url).with_http(http);
    GcpKms::new(config).unwrap()
}

fn quick_http() -> HttpOptions {
    HttpOptions { timeout: Duration::from_secs(5), max_retries: 1, backoff: Duration::from_millis(20), ca_pem: None }
}

fn codec(key: &str, kms: GcpKms, limits: Limits) -> Codec {
    Codec::builder(pii_policy("it-gcp", "t", &uri(key), None)).kms(kms).limits(limits).build().unwrap()
}

fn record(i: usize) -> Value {
    json!({"id": i, "ssn": format!("{:03}-45-6789", i % 1000), "email": format!("user{i}@example.com"), "note": "hi"})
}

fn encrypt(codec: &Codec, value: &Value) -> fieldcrypt::Result<Record> {
    codec.encrypt("t", None, Some(value.to_string().as_bytes()), &[] as &[OwnedHeader])
}

fn decrypt(codec: &Codec, stored: &Record) -> Record {
    codec.decrypt("t", stored.key.as_deref(), stored.value.as_deref(), &stored.headers).unwrap()
}

fn header_versions(stored: &Record) -> Vec<String> {
    let header = fieldcrypt::header::parse(stored.fieldcrypt_header().unwrap()).unwrap();
    header.keys.iter().map(|k| k.kek_version.to_string()).collect()
}

fn dek_ids(stored: &Record) -> Vec<Vec<u8>> {
    let header = fieldcrypt::header::parse(stored.fieldcrypt_header().unwrap()).unwrap();
    header.keys.iter().map(|k| k.dek_id.to_vec()).collect()
}

fn assert_sealed(stored: &Record, plain: &Value) {
    let text = String::from_utf8_lossy(stored.value.as_deref().unwrap()).to_string();
    for field in ["ssn", "email"] {
        let secret = plain[field].as_str().unwrap();
        assert!(!text.contains(secret), "stored value shows {field}: {text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn round_trip_between_separate_producer_and_consumer() {
    let fake = FakeCloudKms::start(Some(TOKEN));
    let key = key_name("round-trip");
    fake.create_key(&key);
    let producer = codec(&key, client(&fake, TOKEN, quick_http()), Limits::default());
    let consumer = codec(&key, client(&fake, TOKEN, quick_http()), Limits::default());

    let originals: Vec<Value> = (0..50).map(record).collect();
    let stored: Vec<Record> = originals.iter().map(|v| encrypt(&producer, v).unwrap()).collect();
    for (plain, stored) in originals.iter().zip(&stored) {
        assert_sealed(stored, plain);
        assert_eq!(header_versions(stored), ["1"]);
        let header = fieldcrypt::header::parse(stored.fieldcrypt_header().unwrap()).unwrap();
        assert_eq!(header.keys[0].kek, uri(&key));
        let back = decrypt(&consumer, stored);
        assert_eq!(&value_of(&back), plain);
        assert!(back.fieldcrypt_header().is_none(), "header removed once everything is decrypted");
    }
    let (p, c) = (producer.stats(), consumer.stats());
    assert_eq!((p.kms_wrap_calls, p.deks_created), (1, 1));
    assert_eq!(c.kms_unwrap_calls, 1);
    assert_eq!(c.fields_decrypted, 100);
    assert_eq!(fake.calls(), (1, 1));
}

#[test]
fn kek_rotation_new_deks_use_the_new_version_and_old_records_still_decrypt() {
    let fake = FakeCloudKms::start(Some(TOKEN));
    let key = key_name("rotation");
    fake.create_key(&key);
    // Small DEKs so the long-running producer makes new ones while it runs.
    let limits = Limits { dek_max_uses: 12, ..Limits::default() };
    let producer = codec(&key, client(&fake, TOKEN, quick_http()), limits);

    let mut stored = Vec::new();
    for i in 0..10 {
        stored.push((record(i), encrypt(&producer, &record(i)).unwrap()));
    }
    assert!(stored.iter().all(|(_, r)| header_versions(r) == ["1"]));
    assert_eq!(fake.rotate(&key), 2);
    let before = producer.stats().deks_created;
    let mut rotated = false;
    for i in 10..40 {
        let r = encrypt(&producer, &record(i)).unwrap();
        rotated |= header_versions(&r) == ["2"];
        stored.push((record(i), r));
    }
    assert!(rotated, "DEKs made after the rotation are wrapped under version 2");
    assert!(producer.stats().deks_created > before);
    // A producer started after the rotation wraps under version 2 from its first record.
    let fresh = codec(&key, client(&fake, TOKEN, quick_http()), Limits::default());
    let r = encrypt(&fresh, &record(99)).unwrap();
    assert_eq!(header_versions(&r), ["2"]);
    stored.push((record(99), r));

    let consumer = codec(&key, client(&fake, TOKEN, quick_http()), Limits::default());
    for (plain, r) in &stored {
        assert_eq!(&value_of(&decrypt(&consumer, r)), plain, "records under versions 1 and 2 decrypt");
    }
    assert_eq!(consumer.stats().fields_withheld, 0);
}

#[test]
fn revocation_disabling_the_key_version_withholds_fields_after_the_cache_ttl() {
    let fake = FakeCloudKms::start(Some(TOKEN));
    let key = key_name("revocation");
    fake.create_key(&key);
    let producer = codec(&key, client(&fake, TOKEN, quick_http()), Limits::default());
    let originals: Vec<Value> = (0..5).map(record).collect();
    let stored: Vec<Record> = originals.iter().map(|v| encrypt(&producer, v).unwrap()).collect();

    let ttl = Duration::from_millis(1500);
    let limits = Limits { dek_cache_ttl: ttl, dek_denied_ttl: Duration::from_millis(100), ..Limits::default() };
    let consumer = codec(&key, client(&fake, TOKEN, quick_http()), limits);
    for (plain, r) in originals.iter().zip(&stored) {
        assert_eq!(&value_of(&decrypt(&consumer, r)), plain);
    }
    let revoked_at = Instant::now();
    fake.disable(&key, 1);
    // Within the TTL the cached DEK still serves (the documented revocation delay).
    let cached = decrypt(&consumer, &stored[0]);
    if revoked_at.elapsed() < ttl {
        assert_eq!(value_of(&cached), originals[0]);
    }
    std::thread::sleep(ttl + Duration::from_millis(200));
    for (plain, r) in originals.iter().zip(&stored) {
        let out = decrypt(&consumer, r);
        let seen = value_of(&out);
        assert_eq!(seen, value_of(r), "after the TTL the fields stay ciphertext (the default fallback)");
        assert_ne!(seen["ssn"], plain["ssn"]);
        assert_sealed(&out, plain);
    }
    let stats = consumer.stats();
    assert!(stats.fields_withheld > 0);
    assert!(stats.kms_errors > 0);

    // The client reports the disabled version as AccessDenied, for wrap and for unwrap.
    let kms = client(&fake, TOKEN, quick_http());
    let kek = KekUri::parse(&uri(&key)).unwrap();
    let id = [7u8; 16];
    let ctx = fieldcrypt::WrapContext { dek_id: &id, algorithm: Algorithm::Aes256Gcm };
    let e = kms.wrap(&kek, &[1; 32], &ctx).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(e.message().contains("FAILED_PRECONDITION") && e.message().contains(kek.as_str()), "{e}");
    assert_eq!(fake.rotate(&key), 2);
    let wrapped = kms.wrap(&kek, &[1; 32], &ctx).unwrap();
    assert_eq!(wrapped.kek_version, "2");
    fake.disable(&key, 2);
    let e = kms.unwrap(&kek, "2", &wrapped.ciphertext, &ctx).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
}

#[test]
fn wrong_credentials_are_access_denied_naming_the_key_not_the_token() {
    let fake = FakeCloudKms::start(Some(TOKEN));
    let key = key_name("credentials");
    fake.create_key(&key);
    let wrong = "ya29.wrong-token-value-secret";
    let producer = codec(&key, client(&fake, wrong, quick_http()), Limits::default());
    let e = encrypt(&producer, &record(1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    let text = e.to_string();
    assert!(text.contains(&uri(&key)) && text.contains("401"), "{text}");
    assert!(!text.contains(wrong) && !text.contains(TOKEN), "{text}");

    // A consumer with wrong credentials gets the fallback, not an error and not plaintext.
    let good = codec(&key, client(&fake, TOKEN, quick_http()), Limits::default());
    let stored = encrypt(&good, &record(2)).unwrap();
    let consumer = codec(&key, client(&fake, wrong, quick_http()), Limits::default());
    let out = decrypt(&consumer, &stored);
    assert_eq!(value_of(&out), value_of(&stored));
    assert!(consumer.stats().fields_withheld > 0);
    // Wrapping with the wrong token never reached the key.
    assert_eq!(fake.calls(), (1, 0));
}

#[test]
fn unknown_key_is_key_not_found() {
    let fake = FakeCloudKms::start(None);
    let key = key_name("missing");
    let kms = GcpKms::new(GcpKmsConfig::new(GcpAuth::None).with_endpoint(&fake.url).with_http(quick_http())).unwrap();
    let kek = KekUri::parse(&uri(&key)).unwrap();
    let id = [7u8; 16];
    let ctx = fieldcrypt::WrapContext { dek_id: &id, algorithm: Algorithm::Aes256Gcm };
    let e = kms.wrap(&kek, &[1; 32], &ctx).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
    // A wrapped DEK moved onto another DEK id does not unwrap: the context is bound as AAD.
    fake.create_key(&key);
    let wrapped = kms.wrap(&kek, &[1; 32], &ctx).unwrap();
    let other_id = [8u8; 16];
    let other = fieldcrypt::WrapContext { dek_id: &other_id, algorithm: Algorithm::Aes256Gcm };
    assert_eq!(kms.unwrap(&kek, "1", &wrapped.ciphertext, &other).unwrap_err().kind(), ErrorKind::Crypto);
    assert_eq!(kms.unwrap(&kek, "1", &wrapped.ciphertext, &ctx).unwrap().as_slice(), &[1; 32]);
}

#[test]
fn kms_calls_are_one_per_data_key() {
    let fake = FakeCloudKms::start(Some(TOKEN));
    let key = key_name("calls");
    fake.create_key(&key);
    let producer =
        codec(&key, client(&fake, TOKEN, quick_http()), Limits { dek_max_uses: 20_000, ..Limits::default() });
    let started = Instant::now();
    let n = 100_000;
    let stored: Vec<Record> = (0..n).map(|i| encrypt(&producer, &record(i)).unwrap()).collect();
    let p = producer.stats();
    let distinct: HashSet<Vec<u8>> = stored.iter().flat_map(dek_ids).collect();
    eprintln!(
        "{n} records: {} DEKs, {} wrap calls, {} fields, {:?}",
        p.deks_created,
        p.kms_wrap_calls,
        p.fields_encrypted,
        started.elapsed()
    );
    assert_eq!(p.kms_wrap_calls, p.deks_created);
    assert_eq!(distinct.len() as u64, p.deks_created);
    assert_eq!(fake.calls().0, p.kms_wrap_calls, "the fake saw exactly the codec's wrap calls");
    // 2 fields (+ the header tag) per record at 20,000 uses per DEK: 10 to 20 DEKs.
    assert!((10..=20).contains(&p.deks_created), "{} DEKs", p.deks_created);

    let consumer = codec(&key, client(&fake, TOKEN, quick_http()), Limits::default());
    for r in &stored {
        decrypt(&consumer, r);
    }
    let c = consumer.stats();
    assert_eq!(c.kms_unwrap_calls, distinct.len() as u64);
    assert_eq!(fake.calls().1, c.kms_unwrap_calls);
    assert_eq!(c.fields_decrypted, 2 * n as u64);
    assert_eq!(c.fields_withheld, 0);
}

#[test]
fn outage_producer_uses_extra_dek_uses_then_fails_closed_and_recovers() {
    let fake = FakeCloudKms::start(Some(TOKEN));
    let key = key_name("outage");
    fake.create_key(&key);
    let http = HttpOptions {
        timeout: Duration::from_millis(300),
        max_retries: 0,
        backoff: Duration::from_millis(10),
        ca_pem: None,
    };
    let retry_interval = Duration::from_millis(200);
    let limits =
        Limits { dek_max_uses: 30, dek_outage_extra_uses: 60, kms_retry_interval: retry_interval, ..Limits::default() };
    let producer = codec(&key, client(&fake, TOKEN, http.clone()), limits);
    let consumer = codec(&key, client(&fake, TOKEN, http), Limits::default());

    let mut ok: Vec<(Value, Record)> = Vec::new();
    for i in 0..5 {
        let r = encrypt(&producer, &record(i)).unwrap();
        assert_eq!(value_of(&decrypt(&consumer, &r)), record(i), "consumer cache warmed");
        ok.push((record(i), r));
    }

    let failure = {
        let _thaw = fake.freeze();
        let mut failure = None;
        for i in 5..200 {
            match encrypt(&producer, &record(i)) {
                Ok(r) => {
                    assert_sealed(&r, &record(i));
                    ok.push((record(i), r));
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        // Consumers keep decrypting with cached DEKs while the KMS is down.
        for (plain, r) in &ok {
            if dek_ids(r) == dek_ids(&ok[0].1) {
                assert_eq!(&value_of(&decrypt(&consumer, r)), plain);
            }
        }
        failure
    };
    let e = failure.expect("the producer fails closed once the outage allowance is spent");
    assert_eq!(e.kind(), ErrorKind::Kms, "{e}");
    assert!(e.is_retryable(), "{e}");
    assert!(!e.to_string().contains(TOKEN));
    // Every record so far used the first DEK (none could be made), at 2 or more uses a record:
    // more than 15 records means it served past dek_max_uses (30) on the outage allowance.
    assert!(ok.iter().all(|(_, r)| dek_ids(r) == dek_ids(&ok[0].1)));
    assert!(ok.len() > 15, "only {} records before failing closed", ok.len());
    assert!(producer.stats().kms_errors > 0);
    eprintln!("outage: {} records on the current DEK, then: {e}", ok.len());

    // Thawed: production recovers once the retry interval has passed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let recovered = loop {
        match encrypt(&producer, &record(500)) {
            Ok(r) => break r,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Kms, "{e}");
                assert!(Instant::now() < deadline, "no recovery: {e}");
                std::thread::sleep(retry_interval / 2);
            }
        }
    };
    ok.push((record(500), recovered));
    let fresh = codec(&key, client(&fake, TOKEN, quick_http()), Limits::default());
    for (plain, r) in &ok {
        assert_eq!(&value_of(&decrypt(&fresh, r)), plain);
    }
}
