//! `fieldcrypt::kms::AzureKeyVault` against a real Key Vault API server: Lowkey Vault, started by
//! `scripts/kms/lowkey-vault.sh start`; `eval "$(scripts/kms/lowkey-vault.sh env)"` exports the
//! `FIELDCRYPT_AZURE_KV_*` variables read here. A test fails when they are not set.
//!
//! The server speaks HTTPS with a self-signed certificate: every client here trusts exactly that
//! certificate (`FIELDCRYPT_AZURE_KV_CA`, passed as `HttpOptions::ca_pem`); verification stays on.
//!
//! These tests are `#[ignore]`d by default: Lowkey Vault's `lowkey-vault-app` jar is not served by
//! the Maven registry this project's machines reach (checked on 2026-11-29), so no Key Vault
//! server can run in CI. With a jar at hand: `LOWKEY_VAULT_JAR=... scripts/kms/lowkey-vault.sh
//! start`, then `cargo test -p fieldcrypt-it --test kms_azure -- --ignored`.
//!
//! Lowkey checks that a bearer token is present but not its value, so wrong credentials are
//! exercised through the client-credentials flow against a local token endpoint that refuses them.
//!
//! Keys a test rotates or deletes are its own (named with the run id), made through the Key Vault
//! REST API, so the suite can run many times against one server. The outage test freezes the
//! server (SIGSTOP): it holds a lock that every other test here shares, so nothing else runs while
//! the server is frozen.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fieldcrypt::kms::{AzureAuth, AzureKeyVault, AzureKeyVaultConfig};
use fieldcrypt::{Algorithm, Codec, ErrorKind, HttpOptions, KekUri, Kms, Limits, Policy, Record, WrapContext};
use fieldcrypt_it::{
    assert_sealed, codec_with, customer, decrypt, encrypt, key_entry, kms_calls_per_dek, own_name, pii_policy,
    refused_unwrap, required_env, run_id, value_of, Capture, Outage, ServerLock, CUSTOMERS,
};
use serde_json::{json, Value};

const API: &str = "api-version=7.4";

// ---------------------------------------------------------------------------------------------
// helpers

/// Shared by every test; the outage test takes it exclusively while the server is frozen.
static SERVER: ServerLock = ServerLock::new();

/// The key `start` created: `azure-kv://127.0.0.1:PORT/keys/fieldcrypt-it`.
fn kek_uri() -> String {
    required_env("FIELDCRYPT_AZURE_KV_KEK")
}

/// `azure-kv://HOST:PORT/keys/<name>` on the test server.
fn kek_named(name: &str) -> String {
    fieldcrypt_it::kek_named(&kek_uri(), name)
}

fn ca_pem() -> Vec<u8> {
    let path = required_env("FIELDCRYPT_AZURE_KV_CA");
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read FIELDCRYPT_AZURE_KV_CA {path}: {e}"))
}

fn http_options() -> HttpOptions {
    HttpOptions { timeout: Duration::from_secs(10), max_retries: 2, ca_pem: Some(ca_pem()), ..HttpOptions::default() }
}

fn token_auth() -> AzureAuth {
    AzureAuth::bearer_token(required_env("FIELDCRYPT_AZURE_KV_TOKEN"))
}

fn client(auth: AzureAuth) -> AzureKeyVault {
    AzureKeyVault::new(AzureKeyVaultConfig { auth, http: http_options() }).expect("azure key vault client")
}

fn policy(kek: &str) -> Policy {
    pii_policy("it-azure", CUSTOMERS, kek, None)
}

fn codec(kek: &str, kms: Arc<dyn Kms>, limits: Limits) -> Codec {
    codec_with(policy(kek), kms, limits)
}

/// The Key Vault REST API of the test server, for what an operator would do.
struct Admin {
    endpoint: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Admin {
    fn new() -> Admin {
        let certs = reqwest::Certificate::from_pem_bundle(&ca_pem()).expect("FIELDCRYPT_AZURE_KV_CA is PEM");
        Admin {
            endpoint: required_env("FIELDCRYPT_AZURE_KV_ENDPOINT"),
            token: required_env("FIELDCRYPT_AZURE_KV_TOKEN"),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .tls_certs_merge(certs)
                .build()
                .unwrap(),
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}?{API}", self.endpoint);
        let mut request = self.http.request(method.clone(), &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.header("Content-Type", "application/json").body(body.to_string());
        }
        let response = request.send().unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status();
        let text = response.text().unwrap_or_default();
        assert!(status.is_success(), "{method} {url}: HTTP {status}: {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: {e}: {text}"))
        }
    }

    /// Creates key `name` (or a new version of it: Key Vault's create on an existing name) and
    /// returns the version made.
    fn create_key(&self, name: &str) -> String {
        let body = json!({"kty": "RSA", "key_size": 2048, "key_ops": ["wrapKey", "unwrapKey"]});
        let answer = self.call(reqwest::Method::POST, &format!("/keys/{name}/create"), Some(body));
        version_of(&answer)
    }

    /// The current version of key `name`.
    fn current_version(&self, name: &str) -> String {
        version_of(&self.call(reqwest::Method::GET, &format!("/keys/{name}"), None))
    }

    /// Deletes key `name` with all its versions.
    fn delete_key(&self, name: &str) {
        self.call(reqwest::Method::DELETE, &format!("/keys/{name}"), None);
    }
}

fn version_of(key_bundle: &Value) -> String {
    let kid = key_bundle["key"]["kid"].as_str().unwrap_or_else(|| panic!("no key.kid in {key_bundle}"));
    kid.trim_end_matches('/').rsplit('/').next().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------------
// tests

/// (1) A producer and a separate consumer, each with its own client, round-trip JSON records; the
/// stored value holds no plaintext, and the header names the key's current version.
#[test]
#[ignore = "needs Lowkey Vault, which the registries here do not serve (docs/kms/azure.md); run with --ignored"]
fn round_trip_between_separate_clients() {
    let _server = SERVER.shared();
    let kek = kek_uri();
    let name = kek.rsplit('/').next().unwrap().to_string();
    let producer = codec(&kek, Arc::new(client(token_auth())), Limits::default());
    let consumer = codec(&kek, Arc::new(client(token_auth())), Limits::default());
    let current = Admin::new().current_version(&name);
    for i in 0..20 {
        let plain = customer(i);
        let sealed = encrypt(&producer, &plain).unwrap();
        assert_sealed(&sealed, &plain);
        let (entry_kek, version, _, wrapped) = key_entry(&sealed);
        assert_eq!(entry_kek, kek);
        assert_eq!(version, current, "the header names the version used");
        assert_eq!(wrapped.len(), 256, "RSA-2048 OAEP ciphertext");
        let opened = decrypt(&consumer, &sealed).unwrap();
        assert_eq!(value_of(&opened), plain);
        assert!(opened.fieldcrypt_header().is_none(), "header removed once all is decrypted");
    }
    let (p, c) = (producer.stats(), consumer.stats());
    assert_eq!((p.deks_created, p.kms_wrap_calls), (1, 1), "{p:?}");
    assert_eq!(c.kms_unwrap_calls, 1, "{c:?}");
}

/// The client talks to the real API directly: wrap and unwrap, a pinned version, a missing key,
/// a tampered ciphertext, and a client that does not trust the server's certificate.
#[test]
#[ignore = "needs Lowkey Vault, which the registries here do not serve (docs/kms/azure.md); run with --ignored"]
fn wrap_unwrap_versions_and_failures() {
    let _server = SERVER.shared();
    let kv = client(token_auth());
    let kek = KekUri::parse(&kek_uri()).unwrap();
    let ctx = WrapContext { dek_id: &[7; 16], algorithm: Algorithm::Aes256Gcm };
    let dek = [0x5au8; 32];
    let w = kv.wrap(&kek, &dek, &ctx).unwrap();
    assert_eq!(w.kek_version.len(), 32, "Key Vault versions are 32 hex digits: {}", w.kek_version);
    assert_ne!(w.ciphertext, dek);
    assert_eq!(kv.unwrap(&kek, &w.kek_version, &w.ciphertext, &ctx).unwrap().as_slice(), &dek);
    // RSA-OAEP is randomized: the same DEK wraps differently each time.
    assert_ne!(kv.wrap(&kek, &dek, &ctx).unwrap().ciphertext, w.ciphertext);

    // A URI pinning the version wraps under it.
    let pinned = KekUri::parse(&format!("{kek}/{}", w.kek_version)).unwrap();
    let wp = kv.wrap(&pinned, &dek, &ctx).unwrap();
    assert_eq!(wp.kek_version, w.kek_version);
    assert_eq!(kv.unwrap(&kek, &wp.kek_version, &wp.ciphertext, &ctx).unwrap().as_slice(), &dek);

    // Unknown key, unknown version.
    let missing = KekUri::parse(&kek_named(&own_name("never-made"))).unwrap();
    let e = kv.wrap(&missing, &dek, &ctx).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
    assert!(e.message().contains(missing.as_str()), "{e}");
    let e = kv.unwrap(&kek, "0123456789abcdef0123456789abcdef", &w.ciphertext, &ctx).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");

    // A ciphertext the key cannot decrypt never yields a key.
    let mut tampered = w.ciphertext.clone();
    tampered[100] ^= 1;
    let e = kv.unwrap(&kek, &w.kek_version, &tampered, &ctx).unwrap_err();
    eprintln!("kms_azure: tampered ciphertext -> {} (retryable {}): {e}", e.kind(), e.is_retryable());
    assert!(matches!(e.kind(), ErrorKind::Crypto | ErrorKind::Kms), "{e}");

    // Without the test certificate the TLS handshake fails: verification is on.
    let untrusting = AzureKeyVault::new(AzureKeyVaultConfig {
        auth: token_auth(),
        http: HttpOptions { timeout: Duration::from_secs(5), max_retries: 0, ..HttpOptions::default() },
    })
    .unwrap();
    let e = untrusting.wrap(&kek, &dek, &ctx).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Kms, "{e}");
    assert!(e.message().to_lowercase().contains("certificate"), "{e}");
}

/// (2) KEK rotation: after a new key version is made, the producer's next DEKs are wrapped under
/// it (read from the header), and records under the old version still decrypt.
#[test]
#[ignore = "needs Lowkey Vault, which the registries here do not serve (docs/kms/azure.md); run with --ignored"]
fn kek_rotation() {
    let _server = SERVER.shared();
    let admin = Admin::new();
    let name = own_name("rotation");
    let v1 = admin.create_key(&name);
    let kek = kek_named(&name);
    // 3 uses per record (2 fields and the header tag): a new DEK every record.
    let producer = codec(&kek, Arc::new(client(token_auth())), Limits { dek_max_uses: 3, ..Limits::default() });
    let before: Vec<Record> = (0..3).map(|i| encrypt(&producer, &customer(i)).unwrap()).collect();
    for r in &before {
        assert_eq!(key_entry(r).1, v1);
    }
    let v2 = admin.create_key(&name);
    assert_ne!(v1, v2);
    assert_eq!(admin.current_version(&name), v2);
    let after: Vec<Record> = (3..6).map(|i| encrypt(&producer, &customer(i)).unwrap()).collect();
    for r in &after {
        assert_eq!(key_entry(r).1, v2, "new DEKs use the new KEK version");
    }
    let consumer = codec(&kek, Arc::new(client(token_auth())), Limits::default());
    for (i, r) in before.iter().chain(&after).enumerate() {
        assert_eq!(value_of(&decrypt(&consumer, r).unwrap()), customer(i), "record {i}");
    }
    let s = producer.stats();
    assert_eq!((s.deks_created, s.kms_wrap_calls), (6, 6), "{s:?}");
}

/// (3) Revocation by deleting the key: a consumer that decrypted keeps its cached DEK until the
/// cache TTL, then gets the profile's fallback (ciphertext) instead of plaintext.
#[test]
#[ignore = "needs Lowkey Vault, which the registries here do not serve (docs/kms/azure.md); run with --ignored"]
fn revocation_by_key_deletion() {
    let _server = SERVER.shared();
    let admin = Admin::new();
    let name = own_name("revoked");
    admin.create_key(&name);
    let kek = kek_named(&name);
    let producer = codec(&kek, Arc::new(client(token_auth())), Limits::default());
    let sealed: Vec<Record> = (0..5).map(|i| encrypt(&producer, &customer(i)).unwrap()).collect();
    let ttl = Duration::from_millis(1500);
    let consumer = codec(
        &kek,
        Arc::new(client(token_auth())),
        Limits { dek_cache_ttl: ttl, dek_denied_ttl: Duration::from_millis(100), ..Limits::default() },
    );
    for (i, r) in sealed.iter().enumerate() {
        assert_eq!(value_of(&decrypt(&consumer, r).unwrap()), customer(i));
    }
    admin.delete_key(&name);
    let deleted_at = Instant::now();
    // Within the TTL the cached DEK still serves (the documented revocation delay).
    if deleted_at.elapsed() < ttl / 2 {
        assert_eq!(value_of(&decrypt(&consumer, &sealed[0]).unwrap()), customer(0));
    }
    std::thread::sleep(ttl.saturating_sub(deleted_at.elapsed()) + Duration::from_millis(200));
    let withheld_before = consumer.stats().fields_withheld;
    for (i, r) in sealed.iter().enumerate() {
        let opened = decrypt(&consumer, r).unwrap();
        assert_sealed(&opened, &customer(i));
        assert_eq!(value_of(&opened)["name"], customer(i)["name"], "fields outside the rule are untouched");
    }
    let s = consumer.stats();
    assert!(s.fields_withheld >= withheld_before + 10, "{s:?}");
    // The client itself reports why.
    let e = refused_unwrap(&client(token_auth()), &kek, &sealed[0]);
    assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
    // And a producer can no longer make DEKs under it.
    let e = encrypt(&codec(&kek, Arc::new(client(token_auth())), Limits::default()), &customer(9)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
}

/// (4) Wrong credentials: client credentials the token endpoint refuses give AccessDenied naming
/// the key URI, never the secret; accepted ones reach the real vault with the token they got.
#[test]
#[ignore = "needs Lowkey Vault, which the registries here do not serve (docs/kms/azure.md); run with --ignored"]
fn wrong_credentials_are_access_denied() {
    let _server = SERVER.shared();
    let secret = format!("wrong-secret-{}", run_id());
    let kek = kek_uri();
    let refusing = Capture::start(
        401,
        r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.\r\nTrace ID: 0\r\nCorrelation ID: 0","error_codes":[7000215]}"#,
    );
    let kv = client(AzureAuth::ClientCredentials {
        tenant_id: "00000000-0000-0000-0000-000000000001".into(),
        client_id: "fieldcrypt-it-client".into(),
        client_secret: secret.clone(),
        authority_host: refusing.url.clone(),
    });
    let producer = codec(&kek, Arc::new(kv), Limits::default());
    let e = encrypt(&producer, &customer(1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    let text = format!("{e} {e:?}");
    assert!(text.contains(&kek) && text.contains("AADSTS7000215"), "{text}");
    assert!(!text.contains(&secret), "the secret leaked: {text}");
    let request = refusing.next_request();
    assert_eq!(request.request_line, "POST /00000000-0000-0000-0000-000000000001/oauth2/v2.0/token HTTP/1.1");
    assert_eq!(request.header("content-type"), Some("application/x-www-form-urlencoded"));

    // A consumer whose credentials are refused gets the fallback, not an error.
    let sealed = encrypt(&codec(&kek, Arc::new(client(token_auth())), Limits::default()), &customer(2)).unwrap();
    let kv = client(AzureAuth::ClientCredentials {
        tenant_id: "t".into(),
        client_id: "c".into(),
        client_secret: secret.clone(),
        authority_host: refusing.url.clone(),
    });
    let consumer = codec(&kek, Arc::new(kv), Limits::default());
    let opened = decrypt(&consumer, &sealed).unwrap();
    assert_sealed(&opened, &customer(2));
    assert_eq!(consumer.stats().fields_withheld, 2);

    // Accepted credentials: one token request, then the vault calls carry that token.
    let granting = Capture::start(200, r#"{"token_type":"Bearer","expires_in":3599,"access_token":"it-access-token"}"#);
    let kv = client(AzureAuth::ClientCredentials {
        tenant_id: "t".into(),
        client_id: "c".into(),
        client_secret: secret.clone(),
        authority_host: granting.url.clone(),
    });
    let producer = codec(&kek, Arc::new(kv), Limits { dek_max_uses: 3, ..Limits::default() });
    for i in 0..3 {
        encrypt(&producer, &customer(i)).unwrap();
    }
    assert_eq!(producer.stats().deks_created, 3);
    granting.next_request();
    assert!(granting.try_next_request(Duration::from_millis(200)).is_none(), "the token is cached");
}

/// (5) KMS calls are per DEK, not per record: 100,000 records, DEK rotated every 20,000 uses.
#[test]
#[ignore = "needs Lowkey Vault, which the registries here do not serve (docs/kms/azure.md); run with --ignored"]
fn kms_calls_per_dek_not_per_record() {
    let _server = SERVER.shared();
    let kek = kek_uri();
    kms_calls_per_dek(
        "kms_azure",
        |limits| codec(&kek, Arc::new(client(token_auth())), limits),
        || codec(&kek, Arc::new(client(token_auth())), Limits::default()),
    );
}

/// (6) Outage: with the server frozen, a producer whose DEK is due for rotation keeps using it for
/// `dek_outage_extra_uses` more uses, then fails closed with a retryable Kms error; a consumer
/// keeps decrypting with cached DEKs; once the server is back, production recovers.
#[test]
#[ignore = "needs Lowkey Vault, which the registries here do not serve (docs/kms/azure.md); run with --ignored"]
fn outage_fails_closed_and_recovers() {
    let _exclusive = SERVER.exclusive();
    let kek = kek_uri();
    let fast = || {
        AzureKeyVault::new(AzureKeyVaultConfig {
            auth: token_auth(),
            http: HttpOptions {
                timeout: Duration::from_millis(300),
                max_retries: 0,
                ca_pem: Some(ca_pem()),
                ..HttpOptions::default()
            },
        })
        .unwrap()
    };
    Outage {
        pid_file_var: "FIELDCRYPT_AZURE_KV_PID_FILE",
        kek: &kek,
        codec: &|kms, limits| codec(&kek, kms, limits),
        fast_client: &|| Arc::new(fast()),
        client: &|| Arc::new(client(token_auth())),
        check_error_count: false,
    }
    .run();
}
