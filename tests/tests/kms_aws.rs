//! `fieldcrypt::kms::AwsKms` against real AWS KMS emulators:
//!
//! * moto server 5 (`scripts/kms/moto.sh start`, `FIELDCRYPT_AWS_*`), with IAM authentication on:
//!   every request's SigV4 signature is checked against the access key's secret (and session
//!   token), and the user's or role's IAM policy must allow the action. Users, keys and aliases a
//!   test changes are its own (named with the run id), made through `scripts/kms/moto.sh admin`.
//! * local-kms (`scripts/kms/local-kms.sh start`, `FIELDCRYPT_LOCALKMS_*`): no signature checks,
//!   but it enforces key state (a disabled key answers `DisabledException`).
//!
//! `eval "$(scripts/kms/moto.sh env)"; eval "$(scripts/kms/local-kms.sh env)"` exports what is read
//! here; a test fails when its variables are not set. The outage test freezes moto (SIGSTOP): it
//! holds a lock every other moto test here shares, so nothing else talks to moto meanwhile.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use fieldcrypt::header::{self, DekLocation};
use fieldcrypt::kms::{AwsCredentials, AwsKms, AwsKmsConfig};
use fieldcrypt::{
    Algorithm, Codec, ErrorKind, HttpOptions, KekUri, Kms, Limits, OwnedHeader, Policy, Record, WrapContext,
};
use fieldcrypt_it::{repo_root, required_env, run_id};
use serde_json::{json, Value};

const TOPIC: &str = "customers";

// ---------------------------------------------------------------------------------------------
// helpers

/// Shared by every moto test; the outage test takes it exclusively while moto is frozen.
static MOTO: RwLock<()> = RwLock::new(());

fn shared_moto() -> RwLockReadGuard<'static, ()> {
    MOTO.read().unwrap_or_else(|e| e.into_inner())
}

fn endpoint() -> String {
    required_env("FIELDCRYPT_AWS_ENDPOINT")
}

fn key_arn() -> String {
    required_env("FIELDCRYPT_AWS_KEY_ARN")
}

fn uri(arn: &str) -> String {
    format!("aws-kms://{arn}")
}

/// The application user's keys (IAM policy: kms:Encrypt, kms:Decrypt).
fn app_credentials() -> AwsCredentials {
    AwsCredentials::new(
        required_env("FIELDCRYPT_AWS_ACCESS_KEY_ID"),
        required_env("FIELDCRYPT_AWS_SECRET_ACCESS_KEY"),
        None,
    )
}

fn config_for(endpoint: String, credentials: Option<AwsCredentials>) -> AwsKmsConfig {
    AwsKmsConfig {
        endpoint: Some(endpoint),
        credentials,
        http: HttpOptions { timeout: Duration::from_secs(10), max_retries: 2, ..HttpOptions::default() },
        ..AwsKmsConfig::default()
    }
}

fn client(credentials: AwsCredentials) -> Arc<AwsKms> {
    Arc::new(AwsKms::new(config_for(endpoint(), Some(credentials))).expect("aws kms client"))
}

/// Runs `scripts/kms/moto.sh admin ARGS` (boto3 with the admin user's keys); returns its stdout.
fn admin(args: &[&str]) -> String {
    let pid_file = PathBuf::from(required_env("FIELDCRYPT_AWS_MOTO_PID_FILE"));
    let run_dir = pid_file.parent().expect("the pid file is in the run dir");
    let out = Command::new(repo_root().join("scripts/kms/moto.sh"))
        .arg("admin")
        .args(args)
        .env("FIELDCRYPT_RUN", run_dir)
        .output()
        .expect("scripts/kms/moto.sh runs");
    assert!(
        out.status.success(),
        "moto.sh admin {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A new IAM user of this run allowed `actions`; returns its name, keys and secret.
fn new_user(what: &str, actions: &str) -> (String, AwsCredentials, String) {
    let name = format!("fc-{}-{what}", run_id());
    let out = admin(&["create-user", &name, actions]);
    let (id, secret) = out.split_once(' ').expect("ACCESS_KEY_ID SECRET");
    (name, AwsCredentials::new(id, secret, None), secret.to_string())
}

fn policy(kek: &str) -> Policy {
    Policy::from_json(
        &json!({
            "fieldcrypt_policy": 1,
            "id": "it-aws",
            "encrypt": [{"name": "pii", "topics": [TOPIC], "fields": ["ssn", "email"], "key": kek}]
        })
        .to_string(),
    )
    .expect("policy")
}

fn codec(kek: &str, kms: Arc<AwsKms>, limits: Limits) -> Codec {
    Codec::builder(policy(kek)).kms_shared(kms).limits(limits).build().expect("codec")
}

fn customer(i: usize) -> Value {
    json!({"id": i, "name": format!("customer {i}"), "ssn": format!("SSN-{i:06}-secret"), "email": format!("c{i}@example.com")})
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

/// Asserts a sealed record shows neither secret of `plain`.
fn assert_sealed(record: &Record, plain: &Value) {
    let text = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned();
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

/// A directory of this test, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("fieldcrypt-it-aws-{}-{what}", run_id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// moto

/// (1) A producer (application user) encrypts; a separate consumer with its own client and a
/// decrypt-only IAM user decrypts. The stored value holds no plaintext; the KEK version is the
/// key ARN Encrypt answered with.
#[test]
fn round_trip_between_separate_clients() {
    let _moto = shared_moto();
    let kek = uri(&key_arn());
    let (_, consumer_keys, _) = new_user("rt-consumer", "kms:Decrypt");
    let producer = codec(&kek, client(app_credentials()), Limits::default());
    let consumer = codec(&kek, client(consumer_keys), Limits::default());

    let plain: Vec<Value> = (0..20).map(customer).collect();
    let sealed: Vec<Record> = plain.iter().map(|v| encrypt(&producer, v).unwrap()).collect();
    for (record, p) in sealed.iter().zip(&plain) {
        assert_sealed(record, p);
        assert_eq!(value_of(record)["name"], p["name"], "unselected fields stay as they are");
        let (k, version, _, wrapped) = key_entry(record);
        assert_eq!(k, kek);
        assert_eq!(version, key_arn(), "the KEK version is the key ARN");
        assert!(wrapped.len() > 32, "a KMS ciphertext blob, not the bare DEK");
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

/// Alias URIs record the target key's ARN; a key in another region is reached (moto keeps
/// regions apart, so the signing region from the ARN must be right).
#[test]
fn alias_and_region_from_the_arn() {
    let _moto = shared_moto();
    let kms = client(app_credentials());
    let alias = uri(&required_env("FIELDCRYPT_AWS_ALIAS_ARN"));
    let sealed = encrypt(&codec(&alias, kms.clone(), Limits::default()), &customer(1)).unwrap();
    assert_eq!(key_entry(&sealed).1, key_arn(), "an alias records the key it points to");
    assert_eq!(value_of(&decrypt(&codec(&alias, kms.clone(), Limits::default()), &sealed).unwrap()), customer(1));

    let eu = required_env("FIELDCRYPT_AWS_EU_KEY_ARN");
    assert!(eu.contains(":eu-west-1:"));
    let eu_kek = uri(&eu);
    let sealed = encrypt(&codec(&eu_kek, kms.clone(), Limits::default()), &customer(2)).unwrap();
    assert_eq!(key_entry(&sealed).1, eu);
    assert_eq!(value_of(&decrypt(&codec(&eu_kek, kms.clone(), Limits::default()), &sealed).unwrap()), customer(2));
    // The same key id in us-east-1 does not exist: KeyNotFound.
    let wrong_region = KekUri::parse(&uri(&eu.replace(":eu-west-1:", ":us-east-1:"))).unwrap();
    let id = [7; 16];
    let ctx = WrapContext { dek_id: &id, algorithm: Algorithm::Aes256Gcm };
    let e = kms.wrap(&wrong_region, &[1; 32], &ctx).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
}

/// The encryption context binds a wrapped DEK to its id and algorithm; tampering, unknown keys
/// and versions of other keys get their kinds.
#[test]
fn wrap_binding_and_error_kinds() {
    let _moto = shared_moto();
    let kms = client(app_credentials());
    let kek = KekUri::parse(&uri(&key_arn())).unwrap();
    let id = [0x11; 16];
    let ctx = WrapContext { dek_id: &id, algorithm: Algorithm::Aes256Gcm };
    let w = kms.wrap(&kek, &[42; 32], &ctx).unwrap();
    assert_eq!(w.kek_version, key_arn());
    assert_eq!(kms.unwrap(&kek, &w.kek_version, &w.ciphertext, &ctx).unwrap().as_slice(), &[42; 32]);

    let other_id = [0x12; 16];
    let other = WrapContext { dek_id: &other_id, algorithm: Algorithm::Aes256Gcm };
    let e = kms.unwrap(&kek, &w.kek_version, &w.ciphertext, &other).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Crypto, "another DEK id: {e}");
    assert!(e.message().contains("InvalidCiphertextException") && e.message().contains(kek.as_str()), "{e}");
    let siv = WrapContext { dek_id: &id, algorithm: Algorithm::Aes256Siv };
    assert_eq!(kms.unwrap(&kek, &w.kek_version, &w.ciphertext, &siv).unwrap_err().kind(), ErrorKind::Crypto);
    let mut tampered = w.ciphertext.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(kms.unwrap(&kek, &w.kek_version, &tampered, &ctx).unwrap_err().kind(), ErrorKind::Crypto);

    // A key that does not exist.
    let missing_arn = key_arn().rsplit_once("/").unwrap().0.to_string() + "/00000000-0000-0000-0000-000000000000";
    let missing = KekUri::parse(&uri(&missing_arn)).unwrap();
    let e = kms.wrap(&missing, &[1; 32], &ctx).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
    assert!(e.message().contains(missing.as_str()) && e.message().contains("NotFoundException"), "{e}");
    // A header naming another key as the version of this one: refused without asking AWS.
    let e = kms.unwrap(&kek, &missing_arn, &w.ciphertext, &ctx).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
    // The ciphertext of key A presented as key B's (both real): AWS refuses.
    let other_key = admin(&["create-key"]);
    let other_kek = KekUri::parse(&uri(&other_key)).unwrap();
    let e = kms.unwrap(&other_kek, &other_key, &w.ciphertext, &ctx).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::AccessDenied | ErrorKind::Crypto), "{e}");
}

/// (2a) On-demand rotation of the KMS key: AWS keeps the old backing key for Decrypt and shows
/// callers no version, so the KEK version (the key ARN) stays; old and new records decrypt.
#[test]
fn kek_rotation_on_demand_is_transparent() {
    let _moto = shared_moto();
    let key = admin(&["create-key"]);
    let kek = uri(&key);
    let kms = client(app_credentials());
    let consumer = codec(&kek, client(app_credentials()), Limits::default());
    let before = encrypt(&codec(&kek, kms.clone(), Limits::default()), &customer(1)).unwrap();
    admin(&["rotate", &key]);
    let after = encrypt(&codec(&kek, kms, Limits::default()), &customer(2)).unwrap();
    assert_eq!(key_entry(&before).1, key);
    assert_eq!(key_entry(&after).1, key, "AWS rotation does not change the visible key");
    assert_ne!(key_entry(&before).2, key_entry(&after).2, "a new DEK");
    assert_eq!(value_of(&decrypt(&consumer, &before).unwrap()), customer(1));
    assert_eq!(value_of(&decrypt(&consumer, &after).unwrap()), customer(2));
}

/// (2b) Rotation by moving an alias to a new key (AWS's manual rotation): new DEKs record the new
/// key's ARN as KEK version; records under the old key still decrypt through the same alias URI.
#[test]
fn kek_rotation_by_alias() {
    let _moto = shared_moto();
    let (old_key, new_key) = (admin(&["create-key"]), admin(&["create-key"]));
    let alias_arn = format!("{}:alias/fc-{}-rotation", old_key.split(":key/").next().unwrap(), run_id());
    admin(&["alias", &alias_arn, &old_key]);
    let kek = uri(&alias_arn);
    let kms = client(app_credentials());
    let consumer = codec(&kek, client(app_credentials()), Limits::default());

    let before = encrypt(&codec(&kek, kms.clone(), Limits::default()), &customer(1)).unwrap();
    assert_eq!(key_entry(&before).1, old_key);
    admin(&["alias", &alias_arn, &new_key]);
    // A running producer picks the new key up when it rotates its DEK (here: 3 uses per record).
    let small = codec(&kek, kms, Limits { dek_max_uses: 3, ..Limits::default() });
    let r1 = encrypt(&small, &customer(2)).unwrap();
    let r2 = encrypt(&small, &customer(3)).unwrap();
    assert_eq!((key_entry(&r1).1, key_entry(&r2).1), (new_key.clone(), new_key.clone()));
    assert_ne!(key_entry(&r1).2, key_entry(&r2).2, "a new DEK per record");
    for (record, i) in [(&before, 1), (&r1, 2), (&r2, 3)] {
        assert_eq!(value_of(&decrypt(&consumer, record).unwrap()), customer(i));
    }
    assert_eq!(consumer.stats().kms_unwrap_calls, 3);
}

/// (3) Revocation by an IAM change: the consumer user's KMS policy is deleted. Within the DEK
/// cache TTL it still decrypts (cached DEK); after it, the fields stay ciphertext.
#[test]
fn revocation_by_iam_policy() {
    let _moto = shared_moto();
    let kek = uri(&key_arn());
    let (user, consumer_keys, secret) = new_user("revoked", "kms:Decrypt");
    let producer = codec(&kek, client(app_credentials()), Limits::default());
    let ttl = Duration::from_millis(1500);
    let consumer_kms = client(consumer_keys);
    let consumer = codec(&kek, consumer_kms.clone(), Limits { dek_cache_ttl: ttl, ..Limits::default() });

    let plain = customer(7);
    let sealed = encrypt(&producer, &plain).unwrap();
    assert_eq!(value_of(&decrypt(&consumer, &sealed).unwrap()), plain);
    let decrypted_at = Instant::now();
    admin(&["revoke", &user]);
    if decrypted_at.elapsed() < ttl / 2 {
        assert_eq!(value_of(&decrypt(&consumer, &sealed).unwrap()), plain, "still cached");
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
    assert!(e.message().contains(&kek) && !e.to_string().contains(&secret), "{e}");
    assert!(!format!("{consumer_kms:?}").contains(&secret));
}

/// (4) Wrong credentials: a wrong secret (signature mismatch), an unknown access key, and a user
/// whose policy lacks the action are AccessDenied naming the key URI, never the secret.
#[test]
fn wrong_credentials_are_access_denied() {
    let _moto = shared_moto();
    let kek_text = uri(&key_arn());
    let kek = KekUri::parse(&kek_text).unwrap();
    let id = [3; 16];
    let ctx = WrapContext { dek_id: &id, algorithm: Algorithm::Aes256Gcm };
    let wrong_secret = "wrongSecretQ9x7Zk2+/abcdefghijklmnopqrs";
    let (_, decrypt_only, _) = new_user("decrypt-only", "kms:Decrypt");
    let cases = [
        (
            "wrong secret",
            AwsCredentials::new(required_env("FIELDCRYPT_AWS_ACCESS_KEY_ID"), wrong_secret, None),
            "SignatureDoesNotMatch",
        ),
        ("unknown access key", AwsCredentials::new("AKIAUNKNOWNUNKNOWN00", wrong_secret, None), "InvalidClientTokenId"),
        ("no kms:Encrypt", decrypt_only, "AccessDenied"),
    ];
    for (what, credentials, code) in cases {
        let kms = client(credentials.clone());
        assert!(!format!("{kms:?}").contains(wrong_secret));
        let e = kms.wrap(&kek, &[1; 32], &ctx).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AccessDenied, "{what}: {e}");
        let text = e.to_string();
        assert!(text.contains(&kek_text) && text.contains(code), "{what}: {text}");
        assert!(!text.contains(wrong_secret), "{what}: {text}");
        assert!(!e.is_retryable());
        // Through the codec: the producer fails closed with the same error.
        let e = encrypt(&codec(&kek_text, kms.clone(), Limits::default()), &customer(1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AccessDenied, "{what}: {e}");
        assert!(!e.to_string().contains(wrong_secret));
    }
    // A consumer with a wrong secret gets the fallback.
    let sealed = encrypt(&codec(&kek_text, client(app_credentials()), Limits::default()), &customer(2)).unwrap();
    let bad = client(AwsCredentials::new(required_env("FIELDCRYPT_AWS_ACCESS_KEY_ID"), wrong_secret, None));
    let consumer = codec(&kek_text, bad, Limits::default());
    assert_eq!(decrypt(&consumer, &sealed).unwrap().value, sealed.value);
    assert_eq!(consumer.stats().fields_withheld, 2);
}

/// Credentials from a shared credentials file (a profile given in the configuration), and web
/// identity: a config-file profile with `role_arn` + `web_identity_token_file` is exchanged at
/// moto's STS (AssumeRoleWithWebIdentity, unsigned) for temporary credentials, whose session
/// token moto checks on every KMS call against the role's IAM policy.
#[test]
fn shared_file_profile_and_web_identity() {
    let _moto = shared_moto();
    let dir = TempDir::new("profiles");
    let kek = uri(&key_arn());
    let app = app_credentials();
    let credentials_file = dir.0.join("credentials");
    std::fs::write(
        &credentials_file,
        format!(
            "# test profiles\n[fc-static]\naws_access_key_id = {}\naws_secret_access_key = {}\n\
             [fc-wrong]\naws_access_key_id = {}\naws_secret_access_key = wrongwrongwrong\n",
            app.access_key_id(),
            required_env("FIELDCRYPT_AWS_SECRET_ACCESS_KEY"),
            app.access_key_id()
        ),
    )
    .unwrap();
    let token_file = dir.0.join("token");
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJmaWVsZGNyeXB0In0.c2ln\n").unwrap();
    let config_file = dir.0.join("config");
    std::fs::write(
        &config_file,
        format!(
            "[profile fc-web]\nrole_arn = {}\nweb_identity_token_file = {}\nrole_session_name = fc-it\n",
            required_env("FIELDCRYPT_AWS_WEB_ROLE_ARN"),
            token_file.display()
        ),
    )
    .unwrap();
    let from_profile = |profile: &str| {
        let mut config = config_for(endpoint(), None);
        config.profile = Some(profile.to_string());
        config.credentials_file = Some(credentials_file.clone());
        config.config_file = Some(config_file.clone());
        config.sts_endpoint = Some(endpoint());
        Arc::new(AwsKms::new(config).expect("client"))
    };

    let static_kms = from_profile("fc-static");
    assert!(static_kms.credential_source().contains("profile \"fc-static\""), "{}", static_kms.credential_source());
    let sealed = encrypt(&codec(&kek, static_kms.clone(), Limits::default()), &customer(1)).unwrap();

    let web = from_profile("fc-web");
    let source = web.credential_source();
    assert!(source.starts_with("web identity for role arn:aws:iam::123456789012:role/fieldcrypt-web"), "{source}");
    let web_codec = codec(&kek, web.clone(), Limits::default());
    assert_eq!(value_of(&decrypt(&web_codec, &sealed).unwrap()), customer(1), "decrypt with STS credentials");
    let sealed_by_web = encrypt(&web_codec, &customer(2)).unwrap();
    assert_eq!(value_of(&decrypt(&codec(&kek, static_kms, Limits::default()), &sealed_by_web).unwrap()), customer(2));

    let e = encrypt(&codec(&kek, from_profile("fc-wrong"), Limits::default()), &customer(3)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(!e.to_string().contains("wrongwrongwrong"), "{e}");
    // A token file that is gone: a configuration error naming the file, at the first call.
    std::fs::remove_file(&token_file).unwrap();
    let gone = from_profile("fc-web");
    let e = encrypt(&codec(&kek, gone, Limits::default()), &customer(4)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.message().contains("token") && e.message().contains(&kek), "{e}");
}

/// (5) KMS calls are per DEK, not per record: 100,000 records, DEK rotated every 20,000 uses.
#[test]
fn kms_calls_per_dek_not_per_record() {
    let _moto = shared_moto();
    const RECORDS: usize = 100_000;
    const MAX_USES: u64 = 20_000;
    let kek = uri(&key_arn());
    let producer = codec(&kek, client(app_credentials()), Limits { dek_max_uses: MAX_USES, ..Limits::default() });
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
    let consumer = codec(&kek, client(app_credentials()), Limits::default());
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
        "kms_aws: {RECORDS} records, {} DEKs, {} wraps, {} unwraps; encrypt {encrypt_time:?}, decrypt {decrypt_time:?}",
        ps.deks_created, ps.kms_wrap_calls, cs.kms_unwrap_calls
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
    let status = Command::new("kill").args([which, pid]).status().expect("kill runs");
    assert!(status.success(), "kill {which} {pid} failed");
}

/// (6) Outage: with moto frozen, a producer whose DEK is due for rotation keeps using it for
/// `dek_outage_extra_uses` more uses, then fails closed with a retryable Kms error; a consumer
/// keeps decrypting with cached DEKs; once moto is back, production recovers.
#[test]
fn outage_fails_closed_and_recovers() {
    let _exclusive = MOTO.write().unwrap_or_else(|e| e.into_inner());
    let pid_file = required_env("FIELDCRYPT_AWS_MOTO_PID_FILE");
    let pid = std::fs::read_to_string(&pid_file).unwrap_or_else(|e| panic!("{pid_file}: {e}")).trim().to_string();
    let kek = uri(&key_arn());
    let mut fast = config_for(endpoint(), Some(app_credentials()));
    fast.http = HttpOptions { timeout: Duration::from_millis(300), max_retries: 0, ..HttpOptions::default() };
    let limits = Limits {
        dek_max_uses: 30,          // 10 records of 3 uses
        dek_outage_extra_uses: 60, // 20 more records during an outage
        kms_retry_interval: Duration::from_millis(200),
        ..Limits::default()
    };
    let producer = codec(&kek, Arc::new(AwsKms::new(fast.clone()).unwrap()), limits.clone());
    let consumer = codec(&kek, Arc::new(AwsKms::new(fast).unwrap()), Limits::default());

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
    assert_eq!(e.kind(), ErrorKind::Kms, "{e}");
    assert!(e.is_retryable(), "{e}");
    assert!(e.message().contains(&kek), "{e}");
    assert_eq!(during, 5 + 20, "records produced during the outage");
    assert_eq!(encrypt(&producer, &customer(failed_at)).unwrap_err().kind(), ErrorKind::Kms);
    std::thread::sleep(limits.kms_retry_interval);
    assert!(encrypt(&producer, &customer(failed_at)).unwrap_err().is_retryable());
    assert!(producer.stats().kms_errors >= 2, "{:?}", producer.stats());

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

    let fresh = codec(&kek, client(app_credentials()), Limits::default());
    for (i, r) in &ok {
        assert_eq!(value_of(&decrypt(&fresh, r).unwrap()), customer(*i));
    }
}

// ---------------------------------------------------------------------------------------------
// local-kms

/// local-kms's API (unsigned: it checks no signatures), for what an operator would do.
fn local_kms_call(op: &str, body: Value) -> Value {
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/", required_env("FIELDCRYPT_LOCALKMS_ENDPOINT")))
        .header("X-Amz-Target", format!("TrentService.{op}"))
        .header("Content-Type", "application/x-amz-json-1.1")
        .body(body.to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap_or_else(|e| panic!("local-kms {op}: {e}"));
    let status = response.status();
    let text = response.text().unwrap_or_default();
    assert!(status.is_success(), "local-kms {op}: HTTP {status}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// The second implementation: a round trip (alias URI), alias rotation, context binding, and
/// revocation by DisableKey (local-kms enforces key state; moto 5 does not).
#[test]
fn local_kms_round_trip_rotation_and_disabled_key() {
    let endpoint = required_env("FIELDCRYPT_LOCALKMS_ENDPOINT");
    let key = required_env("FIELDCRYPT_LOCALKMS_KEY_ARN");
    // Any credentials: local-kms does not check them (the client still signs).
    let make = || {
        Arc::new(
            AwsKms::new(config_for(endpoint.clone(), Some(AwsCredentials::new("AKIDLOCALKMS", "local-secret", None))))
                .unwrap(),
        )
    };
    let alias = uri(&required_env("FIELDCRYPT_LOCALKMS_ALIAS_ARN"));
    let producer = codec(&alias, make(), Limits::default());
    let consumer = codec(&alias, make(), Limits::default());
    let sealed = encrypt(&producer, &customer(1)).unwrap();
    assert_sealed(&sealed, &customer(1));
    assert_eq!(key_entry(&sealed).1, key);
    assert_eq!(value_of(&decrypt(&consumer, &sealed).unwrap()), customer(1));

    // Context binding.
    let kms = make();
    let kek = KekUri::parse(&uri(&key)).unwrap();
    let (id, other_id) = ([5; 16], [6; 16]);
    let w = kms.wrap(&kek, &[9; 32], &WrapContext { dek_id: &id, algorithm: Algorithm::Aes256Gcm }).unwrap();
    let e = kms
        .unwrap(
            &kek,
            &w.kek_version,
            &w.ciphertext,
            &WrapContext { dek_id: &other_id, algorithm: Algorithm::Aes256Gcm },
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Crypto, "{e}");

    // Alias rotation onto a key of this test, then revocation by disabling that key.
    let new_key = local_kms_call("CreateKey", json!({"Description": "fc-it rotation"}))["KeyMetadata"]["Arn"]
        .as_str()
        .unwrap()
        .to_string();
    let alias_name = format!("alias/fc-{}-rotation", run_id());
    local_kms_call("CreateAlias", json!({"AliasName": alias_name, "TargetKeyId": key}));
    let own_alias = uri(&format!("{}:{alias_name}", key.split(":key/").next().unwrap()));
    let before = encrypt(&codec(&own_alias, make(), Limits::default()), &customer(2)).unwrap();
    local_kms_call("UpdateAlias", json!({"AliasName": alias_name, "TargetKeyId": new_key}));
    let after = encrypt(&codec(&own_alias, make(), Limits::default()), &customer(3)).unwrap();
    assert_eq!((key_entry(&before).1, key_entry(&after).1), (key.clone(), new_key.clone()));
    let ttl = Duration::from_millis(800);
    let reader = codec(&own_alias, make(), Limits { dek_cache_ttl: ttl, ..Limits::default() });
    assert_eq!(value_of(&decrypt(&reader, &before).unwrap()), customer(2));
    assert_eq!(value_of(&decrypt(&reader, &after).unwrap()), customer(3));

    local_kms_call("DisableKey", json!({"KeyId": new_key}));
    std::thread::sleep(ttl + Duration::from_millis(100));
    let out = decrypt(&reader, &after).expect("fallback, not an error");
    assert_eq!(out.value, after.value, "fields stay ciphertext once the key is disabled");
    assert_eq!(value_of(&decrypt(&reader, &before).unwrap()), customer(2), "the old key still works");
    let (_, version, dek_id, wrapped) = key_entry(&after);
    let ctx = WrapContext { dek_id: &dek_id, algorithm: Algorithm::Aes256Gcm };
    let e = kms.unwrap(&KekUri::parse(&own_alias).unwrap(), &version, &wrapped, &ctx).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(e.message().contains("DisabledException") && e.message().contains(&own_alias), "{e}");
    // The producer cannot wrap under the disabled key either: it fails closed.
    let e = encrypt(&codec(&own_alias, make(), Limits::default()), &customer(4)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
}
