//! Typed errors, fail-closed encryption, and error messages that never carry secrets.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use fieldcrypt::header;
use fieldcrypt::{
    Codec, Error, ErrorKind, KekUri, Kms, Limits, LocalKms, OwnedHeader, Policy, Record, WrapContext, HEADER_NAME,
};
use rand::Rng;
use serde_json::{json, Value};

/// Every error the tests in this file provoke, for the secrecy check at the end of each test.
struct Seen(Mutex<Vec<Error>>);

impl Seen {
    fn new() -> Seen {
        Seen(Mutex::new(Vec::new()))
    }
    fn kind<T: std::fmt::Debug>(&self, r: fieldcrypt::Result<T>) -> ErrorKind {
        let e = r.expect_err("must fail");
        let kind = e.kind();
        self.0.lock().unwrap().push(e);
        kind
    }
    /// No rendering of any error contains a secret.
    fn assert_no_secrets(&self) {
        let errors = self.0.lock().unwrap();
        assert!(!errors.is_empty());
        for e in errors.iter() {
            assert_no_secret_in(&format!("{e}"));
            assert_no_secret_in(&format!("{e:?}"));
            assert_no_secret_in(e.message());
        }
    }
}

/// The plaintexts used in this file and the local-dev KEK in every form it could leak in.
fn secrets() -> Vec<String> {
    let mut s: Vec<String> = customers()
        .iter()
        .flat_map(|c| [c["password"].as_str().unwrap().to_string(), c["visa"].as_str().unwrap().to_string()])
        .collect();
    let b64 = dev_kek_b64_from_file();
    assert_eq!(b64, DEV_KEK_B64);
    let key = b64_decode(&b64);
    s.push(b64.trim_end_matches('=').to_string());
    s.push(b64[..16].to_string());
    s.push(key.iter().map(|b| format!("{b:02x}")).collect());
    s.push(format!("{:?}", &key[..8]).trim_end_matches(']').to_string()); // "[0, 1, 2, …"
    s.push(String::from_utf8_lossy(&key[1..]).to_string());
    s.push("other kek secret".into());
    s
}

fn assert_no_secret_in(text: &str) {
    for secret in secrets() {
        assert!(!text.contains(&secret), "{text:?} contains secret {secret:?}");
    }
}

fn sealed_customer() -> (Value, Record) {
    let plain = customers()[0].clone();
    (plain.clone(), encrypt_value(&demo_codec(), "customers", &plain))
}

#[test]
fn record_errors() {
    let seen = Seen::new();
    let codec = demo_codec();
    let secret = customers()[0]["password"].as_str().unwrap().to_string();
    // Not JSON (and the message must not quote the input).
    for bad in [secret.as_bytes(), b"{\"password\": ", b"\xff\xfe", b"", b"{\"password\": \"x\"} trailing"] {
        assert_eq!(seen.kind(codec.encrypt("customers", None, Some(bad), NO_HEADERS)), ErrorKind::Record);
    }
    let half = format!("{{\"password\": \"{secret}");
    assert_eq!(seen.kind(codec.encrypt("customers", None, Some(half.as_bytes()), NO_HEADERS)), ErrorKind::Record);

    // Already encrypted: refuses to encrypt twice.
    let (_, sealed) = sealed_customer();
    let again = codec.encrypt("customers", None, sealed.value.as_deref(), &sealed.headers);
    assert_eq!(seen.kind(again), ErrorKind::Record);
    let any_header = [(HEADER_NAME, &b"whatever"[..])];
    assert_eq!(seen.kind(codec.encrypt("customers", None, Some(b"{}"), &any_header)), ErrorKind::Record);

    // Key rule without a key, or with a key that is not JSON.
    let test = test_codec();
    assert_eq!(seen.kind(test.encrypt("keyed", None, Some(b"{}"), NO_HEADERS)), ErrorKind::Record);
    assert_eq!(seen.kind(test.encrypt("keyed", Some(secret.as_bytes()), Some(b"{}"), NO_HEADERS)), ErrorKind::Record);

    // Decrypt: the header names value fields but there is no value / it is not JSON.
    assert_eq!(seen.kind(codec.decrypt("customers", None, None, &sealed.headers)), ErrorKind::Record);
    assert_eq!(
        seen.kind(codec.decrypt("customers", None, Some(secret.as_bytes()), &sealed.headers)),
        ErrorKind::Record
    );
    seen.assert_no_secrets();
}

#[test]
fn config_errors() {
    let seen = Seen::new();
    // No KMS client for the rule's scheme: the codec builds, encrypt fails (and nothing leaks).
    let no_kms = Codec::builder(demo_policy()).build().unwrap();
    let plain = to_bytes(&customers()[0]);
    assert_eq!(seen.kind(no_kms.encrypt("customers", None, Some(&plain), NO_HEADERS)), ErrorKind::Config);
    // …but a record it has nothing to encrypt in needs no KMS.
    assert!(no_kms.encrypt("customers", None, Some(b"{\"id\": 1}"), NO_HEADERS).unwrap().headers.is_empty());

    let vault = Policy::from_json(
        r#"{"fieldcrypt_policy":1,"id":"v","encrypt":[{"name":"r","topics":["t"],"fields":["password"],
            "key":"vault://127.0.0.1:8200/transit/keys/k"}]}"#,
    )
    .unwrap();
    let local_only = Codec::builder(vault).kms(dev_kms()).build().unwrap();
    assert_eq!(seen.kind(local_only.encrypt("t", None, Some(&plain), NO_HEADERS)), ErrorKind::Config);

    // Limits are validated at build.
    for limits in [
        Limits { dek_max_uses: 0, ..Limits::default() },
        Limits { dek_max_uses: fieldcrypt::DEK_HARD_USE_LIMIT, ..Limits::default() },
        Limits { dek_cache_capacity: 0, ..Limits::default() },
    ] {
        assert_eq!(seen.kind(Codec::builder(demo_policy()).kms(dev_kms()).limits(limits).build()), ErrorKind::Config);
    }
    assert!(Codec::builder(demo_policy())
        .limits(Limits { dek_max_uses: fieldcrypt::DEK_HARD_USE_LIMIT / 2, ..Limits::default() })
        .build()
        .is_ok());
    assert_eq!(seen.kind(Codec::builder(demo_policy()).profile("nope").build()), ErrorKind::Config);

    // Bad key files.
    for file in ["not json", r#"{"keys": {"k": {"primary": 2, "versions": {"1": "AAAA"}}}}"#, r#"{"keys": {}, "x": 1}"#]
    {
        assert_eq!(seen.kind(LocalKms::from_json(file)), ErrorKind::Config);
    }
    assert_eq!(seen.kind(LocalKms::from_file("/nonexistent/keys.json")), ErrorKind::Config);
    seen.assert_no_secrets();
}

#[test]
fn header_format_errors() {
    let seen = Seen::new();
    let codec = demo_codec();
    let (_, sealed) = sealed_customer();
    let value = sealed.value.as_deref();
    let h = header_bytes(&sealed).to_vec();

    // Empty, valueless, and random headers.
    assert_eq!(seen.kind(codec.decrypt("customers", None, value, &[(HEADER_NAME, &b""[..])])), ErrorKind::Format);
    assert_eq!(seen.kind(codec.decrypt("customers", None, value, &[(HEADER_NAME, None::<&[u8]>)])), ErrorKind::Format);
    let mut rng = rand::rng();
    for n in 0..400 {
        let mut random: Vec<u8> = (0..rng.random_range(0..200)).map(|_| rng.random()).collect();
        if n % 2 == 0 && !random.is_empty() {
            random[0] = 1; // the version this build reads: what follows is garbage
        }
        let want = match random.first() {
            Some(&v) if v != 1 => ErrorKind::UnsupportedVersion,
            _ => ErrorKind::Format,
        };
        let got = seen.kind(codec.decrypt("customers", None, value, &[(HEADER_NAME, &random[..])]));
        assert_eq!(got, want, "{random:?}");
    }

    // Unknown versions.
    for v in [0u8, 2, 3, 0x7f, 0x80, 0xff] {
        let mut bad = h.clone();
        bad[0] = v;
        assert_eq!(seen.kind(decrypt(&codec, "customers", &with_header(&sealed, bad))), ErrorKind::UnsupportedVersion);
    }

    // Two fieldcrypt headers, even two identical valid ones.
    let mut two = sealed.clone();
    two.headers.push(OwnedHeader::new(HEADER_NAME, h.clone()));
    assert_eq!(seen.kind(decrypt(&codec, "customers", &two)), ErrorKind::Format);
    let mut two = sealed.clone();
    two.headers.insert(0, OwnedHeader { name: HEADER_NAME.into(), value: None });
    assert_eq!(seen.kind(decrypt(&codec, "customers", &two)), ErrorKind::Format);

    // The header name is exact: other spellings are ordinary headers, passed through.
    let renamed = Record { headers: vec![OwnedHeader::new("Fieldcrypt", h.clone())], ..sealed.clone() };
    assert_eq!(decrypt(&codec, "customers", &renamed).unwrap(), renamed);
    seen.assert_no_secrets();
}

#[test]
fn fields_that_should_hold_ciphertext() {
    let seen = Seen::new();
    let codec = demo_codec();
    let (plain, sealed) = sealed_customer();
    let doc = value_json(&sealed);
    let secret = plain["password"].clone();
    for replacement in [json!(42), json!(true), json!({"a": 1}), json!([1]), secret.clone(), json!("QUJD"), json!("")] {
        let mut tampered = doc.clone();
        tampered["password"] = replacement.clone();
        let kind = seen.kind(decrypt(&codec, "customers", &with_value(&sealed, &tampered)));
        assert_eq!(kind, ErrorKind::Crypto, "password = {replacement}");
    }
    // Ciphertext that decrypts, but in the wrong place, is covered by tests/swap.rs. The message
    // of a failed field names the field, never its content.
    let mut tampered = doc.clone();
    tampered["visa"] = plain["visa"].clone();
    let e = decrypt(&codec, "customers", &with_value(&sealed, &tampered)).unwrap_err();
    assert!(e.message().contains("visa"), "{e}");
    seen.0.lock().unwrap().push(e);

    // A field listed in the header that is now null, missing or renamed means the record was
    // altered after encryption (FORMAT.md §6, step 4).
    let mut nulled = doc.clone();
    nulled["password"] = Value::Null;
    let e = decrypt(&codec, "customers", &with_value(&sealed, &nulled)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Crypto, "{e}");
    assert!(e.message().contains("password"), "{e}");
    let mut removed = doc.clone();
    removed.as_object_mut().unwrap().remove("visa");
    assert_eq!(seen.kind(decrypt(&codec, "customers", &with_value(&sealed, &removed))), ErrorKind::Crypto);
    let mut renamed = doc.clone();
    let visa = renamed.as_object_mut().unwrap().remove("visa").unwrap();
    renamed["Visa"] = visa;
    assert_eq!(seen.kind(decrypt(&codec, "customers", &with_value(&sealed, &renamed))), ErrorKind::Crypto);
    seen.assert_no_secrets();
}

#[test]
fn debug_renderings_hold_no_secrets() {
    let kms = dev_kms();
    let shared = Arc::new(full_kms());
    let codec = Codec::builder(demo_policy()).kms(dev_kms()).profile("support").build().unwrap();
    let (_, sealed) = sealed_customer();
    decrypt(&codec, "customers", &sealed).unwrap(); // a DEK in the cache
    let producer = demo_codec();
    encrypt_value(&producer, "customers", &customers()[1]); // an active DEK
    for text in [
        format!("{kms:?}"),
        format!("{shared:?}"),
        format!("{codec:?}"),
        format!("{codec:#?}"),
        format!("{producer:?}"),
        format!("{:?}", demo_policy()),
        format!("{:?}", codec.stats()),
        format!("{:?}", header::parse(header_bytes(&sealed)).unwrap()),
    ] {
        assert_no_secret_in(&text);
    }
    assert!(format!("{kms:?}").contains("demo-kek"), "names are fine to show");
    // A wrapped DEK's Debug shows its length, not its bytes.
    let kek = KekUri::parse("local://demo-kek").unwrap();
    let ctx = WrapContext { dek_id: &[1; 16], algorithm: fieldcrypt::Algorithm::Aes256Gcm };
    let wrapped = kms.wrap(&kek, &[7u8; 32], &ctx).unwrap();
    assert_eq!(format!("{wrapped:?}"), r#"WrappedDek { kek_version: "1", len: 60 }"#);
}

#[test]
fn key_file_errors_never_echo_key_material() {
    // Regression: serde_json's own messages quote the offending value, so a key file with a
    // structural mistake once put the base64 key into the error (Display, Debug, message).
    let seen = Seen::new();
    let key = dev_kek_b64_from_file();
    for file in [
        format!(r#"{{"keys": {{"demo-kek": "{key}"}}}}"#), // key written where the KEK object goes
        format!(r#"{{"keys": {{"demo-kek": {{"primary": "{key}", "versions": {{}}}}}}}}"#),
        format!(r#"{{"keys": {{"demo-kek": {{"primary": 1, "versions": {{"{key}": "x"}}}}}}}}"#),
        format!(r#"{{"keys": {{"demo-kek": {{"primary": 1, "versions": {{"1": "{key}"}}, "{key}": 1}}}}}}"#),
        format!(r#"{{"keys": {{"demo-kek": {{"primary": 1, "versions": {{"1": "{}"}}}}}}}}"#, &key[..40]),
    ] {
        assert_eq!(seen.kind(LocalKms::from_json(&file)), ErrorKind::Config, "{file}");
    }
    seen.assert_no_secrets();
}

// ---- fail closed ---------------------------------------------------------------------------------

#[test]
fn missing_kek_fails_closed() {
    let seen = Seen::new();
    let codec = test_codec(); // holds demo-kek and other-kek, not missing-kek
    let plain = to_bytes(&json!({"password": "correct horse battery staple"}));
    for _ in 0..3 {
        assert_eq!(seen.kind(codec.encrypt("orphan", None, Some(&plain), NO_HEADERS)), ErrorKind::KeyNotFound);
    }
    let stats = codec.stats();
    assert_eq!((stats.records_encrypted, stats.deks_created), (0, 0));

    // One rule of two lacks its KEK: the whole record fails, no partial encryption.
    let demo_only = Codec::builder(test_policy()).kms(dev_kms()).build().unwrap();
    let both = to_bytes(&json!({"password": "correct horse battery staple", "visa": "4111 1111 1111 1111"}));
    assert_eq!(seen.kind(demo_only.encrypt("multi", None, Some(&both), NO_HEADERS)), ErrorKind::KeyNotFound);
    // The field of the missing KEK absent: the record is fine.
    let pw_only = demo_only.encrypt("multi", None, Some(&plain), NO_HEADERS).unwrap();
    assert!(pw_only.fieldcrypt_header().is_some());

    // Deterministic rules derive their key from the KEK: same.
    let empty = Codec::builder(test_policy()).kms(LocalKms::new()).build().unwrap();
    let det = to_bytes(&json!({"email": "ada@example.com"}));
    assert_eq!(seen.kind(empty.encrypt("det", None, Some(&det), NO_HEADERS)), ErrorKind::KeyNotFound);
    seen.assert_no_secrets();
}

#[test]
fn kms_outages_are_errors_not_plaintext_or_silent_fallbacks() {
    let seen = Seen::new();
    let kms = SwitchedKms::new();
    kms.fail_next(2, 1);
    // Ask the KMS on every record (the default waits a second between attempts).
    let limits = fieldcrypt::Limits { kms_retry_interval: std::time::Duration::ZERO, ..Default::default() };
    let codec = Codec::builder(demo_policy()).kms_shared(kms.clone()).limits(limits).build().unwrap();
    let plain = to_bytes(&customers()[0]);
    for _ in 0..2 {
        let e = codec.encrypt("customers", None, Some(&plain), NO_HEADERS).unwrap_err();
        assert!(e.is_retryable());
        assert_eq!(seen.kind::<()>(Err(e)), ErrorKind::Kms);
    }
    let sealed = codec.encrypt("customers", None, Some(&plain), NO_HEADERS).unwrap();
    assert_eq!(codec.stats().deks_created, 1);

    // Consumer side: a KMS outage is an error (retryable), not "no access".
    let consumer = Codec::builder(demo_policy()).kms_shared(kms).build().unwrap();
    let e = decrypt(&consumer, "customers", &sealed).unwrap_err();
    assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::Kms, true));
    seen.0.lock().unwrap().push(e);
    assert_eq!(decrypt(&consumer, "customers", &sealed).unwrap().value.as_deref(), Some(&plain[..]));
    seen.assert_no_secrets();
}

#[test]
fn policy_errors() {
    let seen = Seen::new();
    for text in [
        "{}",
        r#"{"fieldcrypt_policy": 2, "id": "x"}"#,
        r#"{"fieldcrypt_policy": 1, "id": ""}"#,
        r#"{"fieldcrypt_policy": 1, "id": "x", "encrypt": [{"name": "r", "topics": ["t"], "fields": ["a"], "key": "s3://k"}]}"#,
        r#"{"fieldcrypt_policy": 1, "id": "x", "encrypt": [{"name": "r", "topics": ["t"], "fields": ["a", "a.b"], "key": "local://k"}]}"#,
        r#"{"fieldcrypt_policy": 1, "id": "x", "encrypt": [{"name": "r", "topics": [], "fields": ["a"], "key": "local://k"}]}"#,
        r#"{"fieldcrypt_policy": 1, "id": "x", "profiles": {"p": {"otherwise": "shred"}}}"#,
    ] {
        assert_eq!(seen.kind(Policy::from_json(text)), ErrorKind::Policy, "{text}");
    }
    // Overlapping rules on one topic are found when the topic is first used.
    let p = Policy::from_json(
        r#"{"fieldcrypt_policy":1,"id":"x","encrypt":[
            {"name":"a","topics":["t*"],"fields":["prefs.*"],"key":"local://demo-kek"},
            {"name":"b","topics":["tx"],"fields":["prefs.home"],"key":"local://demo-kek"}]}"#,
    )
    .unwrap();
    let codec = Codec::builder(p).kms(dev_kms()).build().unwrap();
    assert!(codec.encrypt("ty", None, Some(b"{}"), NO_HEADERS).is_ok());
    assert_eq!(seen.kind(codec.encrypt("tx", None, Some(b"{}"), NO_HEADERS)), ErrorKind::Policy);
    seen.assert_no_secrets();
}
