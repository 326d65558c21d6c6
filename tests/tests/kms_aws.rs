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

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use fieldcrypt::kms::{AwsCredentials, AwsKms, AwsKmsConfig};
use fieldcrypt::{Algorithm, Codec, ErrorKind, HttpOptions, KekUri, Kms, Limits, Policy, WrapContext};
use fieldcrypt_it::{
    assert_sealed, codec_with, customer, decrypt, encrypt, key_entry, kms_calls_per_dek, pii_policy, refused_unwrap,
    repo_root, required_env, revocation_within_ttl, round_trip, run_id, value_of, Outage, ServerLock, CUSTOMERS,
};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// helpers

/// Shared by every moto test; the outage test takes it exclusively while moto is frozen.
static MOTO: ServerLock = ServerLock::new();

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
    pii_policy("it-aws", CUSTOMERS, kek, None)
}

fn codec(kek: &str, kms: Arc<dyn Kms>, limits: Limits) -> Codec {
    codec_with(policy(kek), kms, limits)
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
    let _moto = MOTO.shared();
    let kek = uri(&key_arn());
    let (_, consumer_keys, _) = new_user("rt-consumer", "kms:Decrypt");
    let producer = codec(&kek, client(app_credentials()), Limits::default());
    let consumer = codec(&kek, client(consumer_keys), Limits::default());
    round_trip(&kek, &producer, &consumer, |version, wrapped| {
        assert_eq!(version, key_arn(), "the KEK version is the key ARN");
        assert!(wrapped.len() > 32, "a KMS ciphertext blob, not the bare DEK");
    });
}

/// Alias URIs record the target key's ARN; a key in another region is reached (moto keeps
/// regions apart, so the signing region from the ARN must be right).
#[test]
fn alias_and_region_from_the_arn() {
    let _moto = MOTO.shared();
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
    let _moto = MOTO.shared();
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
    let _moto = MOTO.shared();
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
    let _moto = MOTO.shared();
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
    let _moto = MOTO.shared();
    let kek = uri(&key_arn());
    let (user, consumer_keys, secret) = new_user("revoked", "kms:Decrypt");
    let producer = codec(&kek, client(app_credentials()), Limits::default());
    let ttl = Duration::from_millis(1500);
    let consumer_kms = client(consumer_keys);
    let consumer = codec(&kek, consumer_kms.clone(), Limits { dek_cache_ttl: ttl, ..Limits::default() });
    let sealed = revocation_within_ttl(&producer, &consumer, ttl, || {
        admin(&["revoke", &user]);
    });

    // The client's own answer: AccessDenied, naming the key, not the credentials.
    let e = refused_unwrap(&*consumer_kms, &kek, &sealed);
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(e.message().contains(&kek) && !e.to_string().contains(&secret), "{e}");
    assert!(!format!("{consumer_kms:?}").contains(&secret));
}

/// (4) Wrong credentials: a wrong secret (signature mismatch), an unknown access key, and a user
/// whose policy lacks the action are AccessDenied naming the key URI, never the secret.
#[test]
fn wrong_credentials_are_access_denied() {
    let _moto = MOTO.shared();
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
    let _moto = MOTO.shared();
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
    let _moto = MOTO.shared();
    let kek = uri(&key_arn());
    kms_calls_per_dek(
        "kms_aws",
        |limits| codec(&kek, client(app_credentials()), limits),
        || codec(&kek, client(app_credentials()), Limits::default()),
    );
}

/// (6) Outage: with moto frozen, a producer whose DEK is due for rotation keeps using it for
/// `dek_outage_extra_uses` more uses, then fails closed with a retryable Kms error; a consumer
/// keeps decrypting with cached DEKs; once moto is back, production recovers.
#[test]
fn outage_fails_closed_and_recovers() {
    let _exclusive = MOTO.exclusive();
    let kek = uri(&key_arn());
    let mut fast = config_for(endpoint(), Some(app_credentials()));
    fast.http = HttpOptions { timeout: Duration::from_millis(300), max_retries: 0, ..HttpOptions::default() };
    Outage {
        pid_file_var: "FIELDCRYPT_AWS_MOTO_PID_FILE",
        kek: &kek,
        codec: &|kms, limits| codec(&kek, kms, limits),
        fast_client: &|| Arc::new(AwsKms::new(fast.clone()).unwrap()),
        client: &|| client(app_credentials()),
        check_error_count: true,
    }
    .run();
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
    let e = refused_unwrap(&*kms, &own_alias, &after);
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(e.message().contains("DisabledException") && e.message().contains(&own_alias), "{e}");
    // The producer cannot wrap under the disabled key either: it fails closed.
    let e = encrypt(&codec(&own_alias, make(), Limits::default()), &customer(4)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
}
