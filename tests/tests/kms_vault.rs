//! `fieldcrypt::kms::VaultKms` against a real OpenBao 2.7 dev server (HashiCorp Vault's API),
//! started by `scripts/kms/openbao.sh start`; `eval "$(scripts/kms/openbao.sh env)"` exports the
//! `FIELDCRYPT_VAULT_*` variables read here. A test fails when they are not set.
//!
//! Keys, policies, roles and tokens a test changes are its own (named with the run id), made with
//! the dev server's root token (`FIELDCRYPT_VAULT_ADMIN_TOKEN`), so the suite can run many times
//! against one server. The outage test freezes the server (SIGSTOP): it holds a lock that every
//! other test here shares, so nothing else runs while the server is frozen.

use std::collections::HashSet;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use fieldcrypt::header::{self, DekLocation};
use fieldcrypt::kms::{VaultAuth, VaultConfig, VaultKms};
use fieldcrypt::{
    Algorithm, Codec, ErrorKind, HttpOptions, KekUri, Kms, Limits, OwnedHeader, Policy, Record, WrapContext,
};
use fieldcrypt_it::{required_env, run_id};
use serde_json::{json, Value};

const TOPIC: &str = "customers";

// ---------------------------------------------------------------------------------------------
// helpers

/// Shared by every test; the outage test takes it exclusively while the server is frozen.
static SERVER: RwLock<()> = RwLock::new(());

fn shared_server() -> RwLockReadGuard<'static, ()> {
    SERVER.read().unwrap_or_else(|e| e.into_inner())
}

fn kek_uri() -> String {
    required_env("FIELDCRYPT_VAULT_KEK")
}

/// `vault://127.0.0.1:PORT/transit/keys/<name>` on the test server.
fn kek_named(name: &str) -> String {
    let shared = kek_uri();
    let base = shared.rsplit_once("/keys/").expect("FIELDCRYPT_VAULT_KEK ends in /keys/NAME").0;
    format!("{base}/keys/{name}")
}

/// A key name of this run, covered by the test policies (`fieldcrypt-it*`).
fn own_key(what: &str) -> String {
    format!("fieldcrypt-it-{}-{what}", run_id())
}

fn config(auth: VaultAuth) -> VaultConfig {
    let mut config = VaultConfig::new(auth);
    config.plain_http = true; // the dev server listens on 127.0.0.1 without TLS
    config.http = HttpOptions { timeout: Duration::from_secs(10), max_retries: 2, ..HttpOptions::default() };
    config
}

fn token_auth() -> VaultAuth {
    VaultAuth::token(required_env("FIELDCRYPT_VAULT_TOKEN"))
}

fn approle_auth() -> VaultAuth {
    VaultAuth::approle(required_env("FIELDCRYPT_VAULT_ROLE_ID"), required_env("FIELDCRYPT_VAULT_SECRET_ID"))
}

fn producer_role_auth() -> VaultAuth {
    VaultAuth::approle(
        required_env("FIELDCRYPT_VAULT_PRODUCER_ROLE_ID"),
        required_env("FIELDCRYPT_VAULT_PRODUCER_SECRET_ID"),
    )
}

fn client(auth: VaultAuth) -> VaultKms {
    VaultKms::new(config(auth)).expect("vault client")
}

fn policy(kek: &str, algorithm: &str) -> Policy {
    Policy::from_json(
        &json!({
            "fieldcrypt_policy": 1,
            "id": "it-vault",
            "encrypt": [{
                "name": "pii",
                "topics": [TOPIC],
                "fields": ["ssn", "email"],
                "key": kek,
                "algorithm": algorithm
            }]
        })
        .to_string(),
    )
    .expect("policy")
}

fn codec(kek: &str, kms: Arc<VaultKms>, limits: Limits) -> Codec {
    Codec::builder(policy(kek, "AES256_GCM")).kms_shared(kms).limits(limits).build().expect("codec")
}

fn customer(i: usize) -> Value {
    json!({
        "id": i,
        "name": format!("customer {i}"),
        "ssn": format!("SSN-{i:06}-secret"),
        "email": format!("c{i}@example.com")
    })
}

fn encrypt(codec: &Codec, value: &Value) -> fieldcrypt::Result<Record> {
    codec.encrypt(TOPIC, None, Some(value.to_string().as_bytes()), &[] as &[OwnedHeader])
}

fn decrypt(codec: &Codec, record: &Record) -> fieldcrypt::Result<Record> {
    codec.decrypt(TOPIC, record.key.as_deref(), record.value.as_deref(), &record.headers)
}

fn value_of(record: &Record) -> Value {
    serde_json::from_slice(record.value.as_deref().expect("a value")).expect("JSON value")
}

fn value_text(record: &Record) -> String {
    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned()
}

/// Asserts a sealed record shows neither secret of `plain`.
fn assert_sealed(record: &Record, plain: &Value) {
    let text = value_text(record);
    for field in ["ssn", "email"] {
        let secret = plain[field].as_str().unwrap();
        assert!(!text.contains(secret), "stored value contains the plaintext {field}: {text}");
    }
    assert!(record.fieldcrypt_header().is_some(), "no fieldcrypt header");
}

/// (kek, kek_version, dek id, wrapped DEK) of the single key entry of a sealed record.
fn key_entry(record: &Record) -> (String, String, [u8; 16], Vec<u8>) {
    let envelope = header::parse(record.fieldcrypt_header().expect("header")).expect("header parses");
    assert_eq!(envelope.keys.len(), 1);
    let k = &envelope.keys[0];
    let wrapped = match k.dek {
        DekLocation::Inline(w) => w.to_vec(),
        DekLocation::KeyStore => panic!("the wrapped DEK should travel in the header"),
    };
    (k.kek.to_string(), k.kek_version.to_string(), k.dek_id, wrapped)
}

/// The dev server's admin API (root token), for what an operator would do.
struct Admin {
    addr: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Admin {
    fn new() -> Admin {
        Admin {
            addr: required_env("FIELDCRYPT_VAULT_ADDR"),
            token: required_env("FIELDCRYPT_VAULT_ADMIN_TOKEN"),
            http: reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap(),
        }
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/v1/{path}", self.addr);
        let request = match method {
            "POST" => self.http.post(&url),
            "PUT" => self.http.put(&url),
            "GET" => self.http.get(&url),
            other => panic!("method {other}"),
        };
        let request = request.header("X-Vault-Token", &self.token);
        let request = if method == "GET" { request } else { request.json(&body) };
        let response = request.send().unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let text = response.text().unwrap_or_default();
        assert!(status.is_success(), "{method} {path}: HTTP {status}: {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    fn create_key(&self, name: &str) {
        self.call("POST", &format!("transit/keys/{name}"), json!({"type": "aes256-gcm96"}));
    }

    fn rotate(&self, name: &str) {
        self.call("POST", &format!("transit/keys/{name}/rotate"), json!({}));
    }

    fn put_policy(&self, name: &str, key: &str, ops: &[&str]) {
        let hcl: Vec<String> =
            ops.iter().map(|op| format!("path \"transit/{op}/{key}\" {{ capabilities = [\"update\"] }}")).collect();
        self.call("PUT", &format!("sys/policies/acl/{name}"), json!({"policy": hcl.join("\n")}));
    }

    fn create_token(&self, policies: &[&str]) -> String {
        let answer = self.call("POST", "auth/token/create", json!({"policies": policies, "ttl": "1h"}));
        answer["auth"]["client_token"].as_str().unwrap().to_string()
    }

    fn revoke_token(&self, token: &str) {
        self.call("POST", "auth/token/revoke", json!({"token": token}));
    }

    /// An AppRole role with `policies`; returns its (role_id, secret_id).
    fn approle(&self, role: &str, policies: &[&str]) -> (String, String) {
        self.call("POST", &format!("auth/approle/role/{role}"), json!({"token_policies": policies, "token_ttl": "1h"}));
        let role_id = self.call("GET", &format!("auth/approle/role/{role}/role-id"), Value::Null)["data"]["role_id"]
            .as_str()
            .unwrap()
            .to_string();
        let secret_id = self.call("POST", &format!("auth/approle/role/{role}/secret-id"), json!({}))["data"]
            ["secret_id"]
            .as_str()
            .unwrap()
            .to_string();
        (role_id, secret_id)
    }
}

// ---------------------------------------------------------------------------------------------
// tests

/// (1) A producer (AppRole) encrypts, a separate consumer with its own client (token) decrypts;
/// the stored value holds no plaintext and the wrapped DEK is a Transit ciphertext.
#[test]
fn round_trip_between_separate_clients() {
    let _server = shared_server();
    let kek = kek_uri();
    let producer = codec(&kek, Arc::new(client(approle_auth())), Limits::default());
    let consumer = codec(&kek, Arc::new(client(token_auth())), Limits::default());

    let plain: Vec<Value> = (0..20).map(customer).collect();
    let sealed: Vec<Record> = plain.iter().map(|v| encrypt(&producer, v).unwrap()).collect();
    for (record, p) in sealed.iter().zip(&plain) {
        assert_sealed(record, p);
        assert_eq!(value_of(record)["name"], p["name"], "unselected fields stay as they are");
        let (k, version, _, wrapped) = key_entry(record);
        assert_eq!(k, kek);
        assert!(version.parse::<u32>().unwrap() >= 1, "{version}");
        let wrapped = String::from_utf8(wrapped).unwrap();
        assert!(wrapped.starts_with(&format!("vault:v{version}:")), "{wrapped}");
    }
    for (record, p) in sealed.iter().zip(&plain) {
        let opened = decrypt(&consumer, record).unwrap();
        assert_eq!(&value_of(&opened), p);
        assert!(opened.fieldcrypt_header().is_none(), "header removed once all is plaintext");
    }
    let (ps, cs) = (producer.stats(), consumer.stats());
    assert_eq!((ps.deks_created, ps.kms_wrap_calls), (1, 1), "{ps:?}");
    assert_eq!(cs.kms_unwrap_calls, 1, "{cs:?}");
    assert_eq!(cs.fields_decrypted, 40);
}

/// The context binds a wrapped DEK to its DEK id and algorithm; the version in the header must
/// match the ciphertext's; missing keys and refused operations get their own kinds.
#[test]
fn wrap_binding_versions_and_missing_keys() {
    let _server = shared_server();
    let kms = client(token_auth());
    let kek = KekUri::parse(&kek_uri()).unwrap();
    let id = [0x11; 16];
    let ctx = WrapContext { dek_id: &id, algorithm: Algorithm::Aes256Gcm };
    let w = kms.wrap(&kek, &[42; 32], &ctx).unwrap();
    assert_eq!(kms.unwrap(&kek, &w.kek_version, &w.ciphertext, &ctx).unwrap().as_slice(), &[42; 32]);

    let other_id = [0x12; 16];
    let other = WrapContext { dek_id: &other_id, algorithm: Algorithm::Aes256Gcm };
    let e = kms.unwrap(&kek, &w.kek_version, &w.ciphertext, &other).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Crypto, "another DEK id: {e}");
    let siv = WrapContext { dek_id: &id, algorithm: Algorithm::Aes256Siv };
    assert_eq!(kms.unwrap(&kek, &w.kek_version, &w.ciphertext, &siv).unwrap_err().kind(), ErrorKind::Crypto);
    let e = kms.unwrap(&kek, "99", &w.ciphertext, &ctx).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Crypto, "version mismatch: {e}");
    // A ciphertext claiming a version the key does not have.
    let text = String::from_utf8(w.ciphertext.clone()).unwrap();
    let future = text.replacen(&format!("vault:v{}:", w.kek_version), "vault:v99:", 1);
    let e = kms.unwrap(&kek, "99", future.as_bytes(), &ctx).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
    // A flipped ciphertext byte.
    let mut tampered = text.into_bytes();
    let at = tampered.len() - 5;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    assert_eq!(kms.unwrap(&kek, &w.kek_version, &tampered, &ctx).unwrap_err().kind(), ErrorKind::Crypto);

    // Decrypt under a key that does not exist (the policy allows the path): KeyNotFound.
    let missing = KekUri::parse(&kek_named(&own_key("missing"))).unwrap();
    let e = kms.unwrap(&missing, &w.kek_version, &w.ciphertext, &ctx).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
    assert!(e.message().contains(missing.as_str()), "{e}");
    // Encrypt under it: Transit would create the key, which needs `create`; the policy grants
    // only `update`, so Vault refuses.
    assert_eq!(kms.wrap(&missing, &[1; 32], &ctx).unwrap_err().kind(), ErrorKind::AccessDenied);
    // A mount that does not exist.
    let no_mount = KekUri::parse(&kek_uri().replace("/transit/keys/", "/no-such-mount/keys/")).unwrap();
    let e = kms.wrap(&no_mount, &[1; 32], &ctx).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::AccessDenied | ErrorKind::KeyNotFound), "{e}");
}

/// (2) KEK rotation: new DEKs carry the new version; records under the old one still decrypt.
#[test]
fn kek_rotation() {
    let _server = shared_server();
    let admin = Admin::new();
    let name = own_key("rotation");
    admin.create_key(&name);
    let kek = kek_named(&name);
    let producer_kms = Arc::new(client(token_auth()));
    let consumer = codec(&kek, Arc::new(client(approle_auth())), Limits::default());

    let before = encrypt(&codec(&kek, producer_kms.clone(), Limits::default()), &customer(1)).unwrap();
    assert_eq!(key_entry(&before).1, "1");
    admin.rotate(&name);
    // A new DEK (a new producer codec; a running one would rotate at dek_max_uses / dek_max_age).
    let producer = codec(&kek, producer_kms.clone(), Limits::default());
    let after = encrypt(&producer, &customer(2)).unwrap();
    let (_, version, _, wrapped) = key_entry(&after);
    assert_eq!(version, "2");
    assert!(wrapped.starts_with(b"vault:v2:"));
    admin.rotate(&name);
    // A running producer rotating its DEK by use count picks up version 3.
    let small = codec(&kek, producer_kms, Limits { dek_max_uses: 3, ..Limits::default() });
    let r1 = encrypt(&small, &customer(3)).unwrap();
    let r2 = encrypt(&small, &customer(4)).unwrap();
    assert_eq!((key_entry(&r1).1.as_str(), key_entry(&r2).1.as_str()), ("3", "3"));
    assert_ne!(key_entry(&r1).2, key_entry(&r2).2, "3 uses per record: a new DEK per record");

    for (record, i) in [(&before, 1), (&after, 2), (&r1, 3), (&r2, 4)] {
        assert_eq!(value_of(&decrypt(&consumer, record).unwrap()), customer(i));
    }
    assert_eq!(consumer.stats().kms_unwrap_calls, 4);
}

/// (3a) Revocation by a policy change: the consumer's AppRole policy loses `decrypt`. Within the
/// DEK cache TTL it still decrypts (cached DEK); after it, the fields stay ciphertext. The client
/// logs in again on the 403 (the new token has the same, reduced policy) before giving up.
#[test]
fn revocation_by_policy_change() {
    let _server = shared_server();
    let admin = Admin::new();
    let name = own_key("revoke-policy");
    admin.create_key(&name);
    let kek = kek_named(&name);
    let policy_name = format!("fc-it-{}-revoke", run_id());
    admin.put_policy(&policy_name, &name, &["encrypt", "decrypt"]);
    let (role_id, secret_id) = admin.approle(&policy_name, &[&policy_name]);

    let producer = codec(&kek, Arc::new(client(token_auth())), Limits::default());
    let ttl = Duration::from_millis(1500);
    let consumer_kms = Arc::new(client(VaultAuth::approle(role_id, secret_id.clone())));
    let consumer = codec(&kek, consumer_kms.clone(), Limits { dek_cache_ttl: ttl, ..Limits::default() });

    let plain = customer(7);
    let sealed = encrypt(&producer, &plain).unwrap();
    assert_eq!(value_of(&decrypt(&consumer, &sealed).unwrap()), plain);
    let decrypted_at = Instant::now();

    admin.put_policy(&policy_name, &name, &["encrypt"]);
    // Still cached: plaintext (the longest a revoked consumer keeps reading is the cache TTL).
    if decrypted_at.elapsed() < ttl / 2 {
        assert_eq!(value_of(&decrypt(&consumer, &sealed).unwrap()), plain);
    }
    std::thread::sleep(ttl.saturating_sub(decrypted_at.elapsed()) + Duration::from_millis(100));
    let withheld_before = consumer.stats().fields_withheld;
    let out = decrypt(&consumer, &sealed).expect("fallback, not an error");
    assert_sealed(&out, &plain);
    assert_eq!(out.value, sealed.value, "fields stay ciphertext");
    assert_eq!(consumer.stats().fields_withheld - withheld_before, 2);

    // The client's own answer: AccessDenied, naming the key, not the credentials.
    let (_, version, id, wrapped) = key_entry(&sealed);
    let ctx = WrapContext { dek_id: &id, algorithm: Algorithm::Aes256Gcm };
    let e = consumer_kms.unwrap(&KekUri::parse(&kek).unwrap(), &version, &wrapped, &ctx).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(e.message().contains(&kek) && !e.to_string().contains(&secret_id), "{e}");
    // The producer side of the same role can still encrypt.
    let enc_only = codec(&kek, consumer_kms, Limits::default());
    assert_sealed(&encrypt(&enc_only, &plain).unwrap(), &plain);
}

/// (3b) Revocation by revoking the consumer's token (token auth).
#[test]
fn revocation_by_token_revoke() {
    let _server = shared_server();
    let admin = Admin::new();
    let kek = kek_uri();
    let token = admin.create_token(&["fieldcrypt-it-full"]);
    let producer = codec(&kek, Arc::new(client(approle_auth())), Limits::default());
    let ttl = Duration::from_millis(800);
    let consumer = codec(
        &kek,
        Arc::new(client(VaultAuth::token(token.clone()))),
        Limits { dek_cache_ttl: ttl, ..Limits::default() },
    );
    let plain = customer(8);
    let sealed = encrypt(&producer, &plain).unwrap();
    assert_eq!(value_of(&decrypt(&consumer, &sealed).unwrap()), plain);
    admin.revoke_token(&token);
    std::thread::sleep(ttl + Duration::from_millis(100));
    let out = decrypt(&consumer, &sealed).unwrap();
    assert_eq!(out.value, sealed.value);
    assert!(consumer.stats().fields_withheld >= 2);
}

/// An encrypt-only role produces; it cannot read back what it wrote; a full consumer can.
#[test]
fn encrypt_only_role_cannot_decrypt() {
    let _server = shared_server();
    let kek = kek_uri();
    let producer_kms = Arc::new(client(producer_role_auth()));
    let producer = codec(&kek, producer_kms.clone(), Limits::default());
    let plain = customer(9);
    let sealed = encrypt(&producer, &plain).unwrap();
    assert_sealed(&sealed, &plain);
    let same_role = codec(&kek, producer_kms, Limits::default());
    let out = decrypt(&same_role, &sealed).unwrap();
    assert_eq!(out.value, sealed.value);
    assert_eq!(same_role.stats().fields_withheld, 2);
    assert_eq!(
        value_of(&decrypt(&codec(&kek, Arc::new(client(token_auth())), Limits::default()), &sealed).unwrap()),
        plain
    );
}

/// (4) Wrong credentials: AccessDenied naming the key URI, never the secret.
#[test]
fn wrong_credentials_are_access_denied() {
    let _server = shared_server();
    let kek_text = kek_uri();
    let kek = KekUri::parse(&kek_text).unwrap();
    let id = [3; 16];
    let ctx = WrapContext { dek_id: &id, algorithm: Algorithm::Aes256Gcm };
    let bad_token = "s.NotAValidTokenQ9x7Zk2";
    let bad_secret = "0f0e0d0c-dead-beef-0000-123456789abc";
    let cases = [
        ("token", VaultAuth::token(bad_token), bad_token),
        ("approle", VaultAuth::approle(required_env("FIELDCRYPT_VAULT_ROLE_ID"), bad_secret), bad_secret),
    ];
    for (what, auth, secret) in cases {
        let kms = Arc::new(client(auth));
        assert!(!format!("{kms:?}").contains(secret));
        let e = kms.wrap(&kek, &[1; 32], &ctx).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AccessDenied, "{what}: {e}");
        let text = e.to_string();
        assert!(text.contains(&kek_text), "{what}: {text}");
        assert!(!text.contains(secret), "{what}: {text}");
        assert!(!e.is_retryable());
        // Through the codec: the producer fails closed with the same error.
        let e = encrypt(&codec(&kek_text, kms.clone(), Limits::default()), &customer(1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AccessDenied, "{what}: {e}");
        assert!(!e.to_string().contains(secret));
        // A consumer with bad credentials gets the fallback.
        let sealed =
            encrypt(&codec(&kek_text, Arc::new(client(token_auth())), Limits::default()), &customer(2)).unwrap();
        let consumer = codec(&kek_text, kms, Limits::default());
        assert_eq!(decrypt(&consumer, &sealed).unwrap().value, sealed.value, "{what}");
        assert_eq!(consumer.stats().fields_withheld, 2);
    }
    // The right role id with the wrong mount: a 403 from Vault, AccessDenied too.
    let mut wrong_mount = config(VaultAuth::AppRole {
        role_id: required_env("FIELDCRYPT_VAULT_ROLE_ID"),
        secret_id: required_env("FIELDCRYPT_VAULT_SECRET_ID"),
        mount: "no-such-approle".into(),
    });
    wrong_mount.http.max_retries = 0;
    let e = VaultKms::new(wrong_mount).unwrap().wrap(&kek, &[1; 32], &ctx).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::AccessDenied | ErrorKind::Config), "{e}");
    assert!(!e.to_string().contains(&required_env("FIELDCRYPT_VAULT_SECRET_ID")), "{e}");
}

/// The namespace header: a namespace's token and key work only with `namespace` set.
#[test]
fn namespace_header() {
    let _server = shared_server();
    let kek_text = kek_uri();
    let kek = KekUri::parse(&kek_text).unwrap();
    let ns_token = required_env("FIELDCRYPT_VAULT_NS_TOKEN");
    let mut in_ns = config(VaultAuth::token(ns_token.clone()));
    in_ns.namespace = Some(required_env("FIELDCRYPT_VAULT_NAMESPACE"));
    let ns_kms = Arc::new(VaultKms::new(in_ns).unwrap());

    let plain = customer(5);
    let sealed = encrypt(&codec(&kek_text, ns_kms.clone(), Limits::default()), &plain).unwrap();
    let consumer = codec(&kek_text, ns_kms, Limits::default());
    assert_eq!(value_of(&decrypt(&consumer, &sealed).unwrap()), plain);

    // The same token without the header: refused in the root namespace.
    let id = [4; 16];
    let ctx = WrapContext { dek_id: &id, algorithm: Algorithm::Aes256Gcm };
    let e = client(VaultAuth::token(ns_token)).wrap(&kek, &[1; 32], &ctx).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    // The root namespace's key of the same name is another key: its consumer cannot unwrap.
    let root_ns = codec(&kek_text, Arc::new(client(token_auth())), Limits::default());
    let err = decrypt(&root_ns, &sealed).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Crypto, "{err}");
}

/// Deterministic (AES256_SIV) rules: two producers with separate clients derive the same key
/// from the Transit HMAC, so equal values give equal ciphertexts; a consumer decrypts.
#[test]
fn deterministic_keys_agree_across_clients() {
    let _server = shared_server();
    let kek = kek_uri();
    let make = |auth| Codec::builder(policy(&kek, "AES256_SIV")).kms(client(auth)).build().expect("codec");
    let (a, b) = (make(token_auth()), make(approle_auth()));
    let plain = customer(11);
    let (ra, rb) = (encrypt(&a, &plain).unwrap(), encrypt(&b, &plain).unwrap());
    assert_eq!(ra.value, rb.value, "deterministic ciphertexts agree across producers");
    assert_sealed(&ra, &plain);
    assert_eq!(a.stats().kms_derive_calls, 1);
    let consumer = codec(&kek, Arc::new(client(approle_auth())), Limits::default());
    assert_eq!(value_of(&decrypt(&consumer, &ra).unwrap()), plain);
    assert_eq!(value_of(&decrypt(&consumer, &rb).unwrap()), plain);
    // Without `hmac` permission (the encrypt-only role has it; a decrypt-only token does not).
    let admin = Admin::new();
    let pol = format!("fc-it-{}-nohmac", run_id());
    admin.put_policy(&pol, "fieldcrypt-it", &["encrypt", "decrypt"]);
    let e = encrypt(&make(VaultAuth::token(admin.create_token(&[&pol]))), &plain).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
}

/// (5) KMS calls are per DEK, not per record: 100,000 records, DEK rotated every 20,000 uses.
#[test]
fn kms_calls_per_dek_not_per_record() {
    let _server = shared_server();
    const RECORDS: usize = 100_000;
    const MAX_USES: u64 = 20_000;
    let kek = kek_uri();
    let producer =
        codec(&kek, Arc::new(client(approle_auth())), Limits { dek_max_uses: MAX_USES, ..Limits::default() });
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
    let consumer = codec(&kek, Arc::new(client(token_auth())), Limits::default());
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
        "kms_vault: {RECORDS} records, {} DEKs, {} wraps, {} unwraps; encrypt {:?}, decrypt {:?}",
        ps.deks_created, ps.kms_wrap_calls, cs.kms_unwrap_calls, encrypt_time, decrypt_time
    );
}

/// Continues a stopped process when dropped, so a failing test never leaves the server frozen.
struct Frozen(String);

impl Frozen {
    fn stop(pid: &str) -> Frozen {
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

/// (6) Outage: with the server frozen, a producer whose DEK is due for rotation keeps using it for
/// `dek_outage_extra_uses` more uses, then fails closed with a retryable Kms error; a consumer
/// keeps decrypting with cached DEKs; once the server is back, production recovers.
#[test]
fn outage_fails_closed_and_recovers() {
    let _exclusive = SERVER.write().unwrap_or_else(|e| e.into_inner());
    let pid_file = required_env("FIELDCRYPT_VAULT_PID_FILE");
    let pid = std::fs::read_to_string(&pid_file).unwrap_or_else(|e| panic!("{pid_file}: {e}")).trim().to_string();
    let kek = kek_uri();
    let mut fast = config(token_auth());
    fast.http = HttpOptions { timeout: Duration::from_millis(300), max_retries: 0, ..HttpOptions::default() };
    let limits = Limits {
        dek_max_uses: 30,          // 10 records of 3 uses
        dek_outage_extra_uses: 60, // 20 more records during an outage
        kms_retry_interval: Duration::from_millis(200),
        ..Limits::default()
    };
    let producer = codec(&kek, Arc::new(VaultKms::new(fast.clone()).unwrap()), limits.clone());
    let consumer = codec(&kek, Arc::new(VaultKms::new(fast).unwrap()), Limits::default());

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
                assert_eq!(value_of(&decrypt(&consumer, &r).unwrap()), customer(i));
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
    assert_eq!(e.kind(), ErrorKind::Kms, "{e}");
    assert!(e.is_retryable(), "{e}");
    assert!(e.message().contains(&kek), "{e}");
    // 10 records on the DEK's normal budget (5 before the freeze), then 20 extra.
    assert_eq!(during, 5 + 20, "records produced during the outage");
    // Still failing fast within the retry interval, and again after a retry.
    assert_eq!(encrypt(&producer, &customer(failed_at)).unwrap_err().kind(), ErrorKind::Kms);
    std::thread::sleep(limits.kms_retry_interval);
    assert!(encrypt(&producer, &customer(failed_at)).unwrap_err().is_retryable());
    let stats = producer.stats();
    assert!(stats.kms_errors >= 2, "{stats:?}");

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

    let fresh = codec(&kek, Arc::new(client(approle_auth())), Limits::default());
    for (i, r) in &ok {
        assert_eq!(value_of(&decrypt(&fresh, r).unwrap()), customer(*i));
    }
}
