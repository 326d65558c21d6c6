//! `fieldcrypt::kms::VaultKms` against a real OpenBao 2.7 dev server (HashiCorp Vault's API),
//! started by `scripts/kms/openbao.sh start`; `eval "$(scripts/kms/openbao.sh env)"` exports the
//! `FIELDCRYPT_VAULT_*` variables read here. A test fails when they are not set.
//!
//! Keys, policies, roles and tokens a test changes are its own (named with the run id), made with
//! the dev server's root token (`FIELDCRYPT_VAULT_ADMIN_TOKEN`), so the suite can run many times
//! against one server. The outage test freezes the server (SIGSTOP): it holds a lock that every
//! other test here shares, so nothing else runs while the server is frozen.

use std::sync::Arc;
use std::time::Duration;

use fieldcrypt::kms::{VaultAuth, VaultConfig, VaultKms};
use fieldcrypt::{Algorithm, Codec, ErrorKind, HttpOptions, KekUri, Kms, Limits, Policy, WrapContext};
use fieldcrypt_it::{
    assert_sealed, codec_with, customer, decrypt, encrypt, key_entry, kms_calls_per_dek, own_name, pii_policy,
    refused_unwrap, required_env, revocation_within_ttl, round_trip, run_id, value_of, Outage, ServerLock, CUSTOMERS,
};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// helpers

/// Shared by every test; the outage test takes it exclusively while the server is frozen.
static SERVER: ServerLock = ServerLock::new();

fn kek_uri() -> String {
    required_env("FIELDCRYPT_VAULT_KEK")
}

/// `vault://127.0.0.1:PORT/transit/keys/<name>` on the test server.
fn kek_named(name: &str) -> String {
    fieldcrypt_it::kek_named(&kek_uri(), name)
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
    pii_policy("it-vault", CUSTOMERS, kek, Some(algorithm))
}

fn codec(kek: &str, kms: Arc<dyn Kms>, limits: Limits) -> Codec {
    codec_with(policy(kek, "AES256_GCM"), kms, limits)
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
    let _server = SERVER.shared();
    let kek = kek_uri();
    let producer = codec(&kek, Arc::new(client(approle_auth())), Limits::default());
    let consumer = codec(&kek, Arc::new(client(token_auth())), Limits::default());
    round_trip(&kek, &producer, &consumer, |version, wrapped| {
        assert!(version.parse::<u32>().unwrap() >= 1, "{version}");
        let wrapped = String::from_utf8(wrapped).unwrap();
        assert!(wrapped.starts_with(&format!("vault:v{version}:")), "{wrapped}");
    });
}

/// The context binds a wrapped DEK to its DEK id and algorithm; the version in the header must
/// match the ciphertext's; missing keys and refused operations get their own kinds.
#[test]
fn wrap_binding_versions_and_missing_keys() {
    let _server = SERVER.shared();
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
    let missing = KekUri::parse(&kek_named(&own_name("missing"))).unwrap();
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
    let _server = SERVER.shared();
    let admin = Admin::new();
    let name = own_name("rotation");
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
    let _server = SERVER.shared();
    let admin = Admin::new();
    let name = own_name("revoke-policy");
    admin.create_key(&name);
    let kek = kek_named(&name);
    let policy_name = format!("fc-it-{}-revoke", run_id());
    admin.put_policy(&policy_name, &name, &["encrypt", "decrypt"]);
    let (role_id, secret_id) = admin.approle(&policy_name, &[&policy_name]);

    let producer = codec(&kek, Arc::new(client(token_auth())), Limits::default());
    let ttl = Duration::from_millis(1500);
    let consumer_kms = Arc::new(client(VaultAuth::approle(role_id, secret_id.clone())));
    let consumer = codec(&kek, consumer_kms.clone(), Limits { dek_cache_ttl: ttl, ..Limits::default() });
    let sealed =
        revocation_within_ttl(&producer, &consumer, ttl, || admin.put_policy(&policy_name, &name, &["encrypt"]));

    // The client's own answer: AccessDenied, naming the key, not the credentials.
    let e = refused_unwrap(&*consumer_kms, &kek, &sealed);
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(e.message().contains(&kek) && !e.to_string().contains(&secret_id), "{e}");
    // The producer side of the same role can still encrypt.
    let enc_only = codec(&kek, consumer_kms, Limits::default());
    let plain = customer(7);
    assert_sealed(&encrypt(&enc_only, &plain).unwrap(), &plain);
}

/// (3b) Revocation by revoking the consumer's token (token auth).
#[test]
fn revocation_by_token_revoke() {
    let _server = SERVER.shared();
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
    let _server = SERVER.shared();
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
    let _server = SERVER.shared();
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
    let _server = SERVER.shared();
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
    let _server = SERVER.shared();
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
    let _server = SERVER.shared();
    let kek = kek_uri();
    kms_calls_per_dek(
        "kms_vault",
        |limits| codec(&kek, Arc::new(client(approle_auth())), limits),
        || codec(&kek, Arc::new(client(token_auth())), Limits::default()),
    );
}

/// (6) Outage: with the server frozen, a producer whose DEK is due for rotation keeps using it for
/// `dek_outage_extra_uses` more uses, then fails closed with a retryable Kms error; a consumer
/// keeps decrypting with cached DEKs; once the server is back, production recovers.
#[test]
fn outage_fails_closed_and_recovers() {
    let _exclusive = SERVER.exclusive();
    let kek = kek_uri();
    let mut fast = config(token_auth());
    fast.http = HttpOptions { timeout: Duration::from_millis(300), max_retries: 0, ..HttpOptions::default() };
    Outage {
        pid_file_var: "FIELDCRYPT_VAULT_PID_FILE",
        kek: &kek,
        codec: &|kms, limits| codec(&kek, kms, limits),
        fast_client: &|| Arc::new(VaultKms::new(fast.clone()).unwrap()),
        client: &|| Arc::new(client(approle_auth())),
        check_error_count: true,
    }
    .run();
}
