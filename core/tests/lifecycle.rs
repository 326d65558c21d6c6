//! The key lifecycle around a KMS that fails: producers ride out an outage on their current DEK
//! within a budget, then fail closed; consumers remember denials; revocation takes effect within
//! the DEK cache TTL. The KMS here is the local one behind a switch that makes it fail the way a
//! remote KMS does ([`SwitchedKms`]; the real servers are exercised by `tests/tests/kms_*.rs`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use fieldcrypt::{Codec, ErrorKind, Limits, Record};
use serde_json::Value;

fn codec(kms: &Arc<SwitchedKms>, limits: Limits) -> Codec {
    Codec::builder(demo_policy()).kms_shared(kms.clone()).limits(limits).build().unwrap()
}

fn customer(i: usize) -> Value {
    serde_json::json!({"id": i, "name": "Ada", "password": format!("pw-{i}"), "visa": format!("4111-{i:04}")})
}

fn encrypt(codec: &Codec, i: usize) -> fieldcrypt::Result<Record> {
    let value = to_bytes(&customer(i));
    codec.encrypt("customers", None, Some(&value), &[] as &[fieldcrypt::OwnedHeader])
}

#[test]
fn producer_rides_out_an_outage_within_its_budget_then_fails_closed_then_recovers() {
    let kms = SwitchedKms::new();
    // Each `customers` record uses its DEK 3 times (header, password, visa).
    let limits = Limits {
        dek_max_uses: 30,
        dek_outage_extra_uses: 60,
        kms_retry_interval: Duration::from_millis(100),
        ..Limits::default()
    };
    let producer = codec(&kms, limits);
    let mut sealed = Vec::new();
    for i in 0..10 {
        sealed.push((i, encrypt(&producer, i).unwrap())); // 30 uses: the DEK is now due
    }
    kms.set(UNREACHABLE);
    let calls_before = kms.calls();
    let mut i = 10;
    let error = loop {
        match encrypt(&producer, i) {
            Ok(record) => sealed.push((i, record)),
            Err(e) => break e,
        }
        i += 1;
        assert!(i < 1000, "never failed closed");
    };
    // 60 extra uses = 20 more records on the old DEK, then a retryable KMS error.
    assert_eq!(i, 30, "records served during the outage");
    assert_eq!((error.kind(), error.is_retryable()), (ErrorKind::Kms, true), "{error}");
    assert!(error.message().contains("local://demo-kek"), "{error}");
    assert_eq!(kms.calls() - calls_before, 1, "the KMS is asked at most once per retry interval");
    assert!(encrypt(&producer, 99).is_err(), "still closed");

    kms.set(UP);
    std::thread::sleep(Duration::from_millis(150));
    sealed.push((100, encrypt(&producer, 100).expect("recovers once the KMS answers")));
    assert_eq!(distinct_dek_ids(sealed.iter().map(|(_, r)| r)).len(), 2);

    // Nothing lost, nothing in the clear: every record that was accepted decrypts.
    let consumer = demo_codec();
    for (i, record) in &sealed {
        assert!(!String::from_utf8_lossy(record.value.as_deref().unwrap()).contains(&format!("pw-{i}")));
        assert_eq!(value_json(&decrypt(&consumer, "customers", record).unwrap()), customer(*i));
    }
}

#[test]
fn producer_without_a_dek_fails_at_once_during_an_outage_and_does_not_hammer_the_kms() {
    let kms = SwitchedKms::new();
    kms.set(UNREACHABLE);
    let producer = codec(&kms, Limits { kms_retry_interval: Duration::from_secs(60), ..Limits::default() });
    for i in 0..50 {
        let e = encrypt(&producer, i).unwrap_err();
        assert!(e.is_retryable() && e.kind() == ErrorKind::Kms, "{e}");
    }
    assert_eq!(kms.calls(), 1);
    assert_eq!(producer.stats().kms_errors, 1);
}

#[test]
fn access_denied_at_rotation_fails_closed_at_once() {
    let kms = SwitchedKms::new();
    let producer = codec(&kms, Limits { dek_max_uses: 3, ..Limits::default() });
    encrypt(&producer, 0).unwrap();
    kms.set(DENIED);
    let e = encrypt(&producer, 1).unwrap_err();
    assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::AccessDenied, false), "{e}");
}

#[test]
fn denied_consumer_asks_the_kms_once_per_denial_ttl() {
    let sealed: Vec<Record> = (0..100).map(|i| encrypt(&demo_codec(), i).unwrap()).collect();
    let kms = SwitchedKms::new();
    kms.set(DENIED);
    let consumer = codec(&kms, Limits { dek_denied_ttl: Duration::from_millis(200), ..Limits::default() });
    let one_dek: Vec<Record> = {
        let producer = demo_codec();
        (0..100).map(|i| encrypt(&producer, i).unwrap()).collect()
    };
    for record in &one_dek {
        let out = decrypt(&consumer, "customers", record).unwrap();
        assert_eq!(value_json(&out)["password"], value_json(record)["password"], "ciphertext kept");
    }
    let stats = consumer.stats();
    assert_eq!((kms.calls(), stats.kms_unwrap_calls, stats.kms_denials_cached), (1, 1, 99));
    assert_eq!(stats.fields_withheld, 200);

    // Records under 100 different DEKs: one call each.
    for record in &sealed {
        decrypt(&consumer, "customers", record).unwrap();
    }
    assert_eq!(kms.calls(), 101);

    // After the denial TTL the consumer asks again, and access granted meanwhile takes effect.
    kms.set(UP);
    std::thread::sleep(Duration::from_millis(250));
    let out = decrypt(&consumer, "customers", &one_dek[0]).unwrap();
    assert_eq!(value_json(&out), customer(0));
}

#[test]
fn revocation_takes_effect_within_the_dek_cache_ttl() {
    let producer = demo_codec();
    let kms = SwitchedKms::new();
    let consumer = codec(&kms, Limits { dek_cache_ttl: Duration::from_millis(200), ..Limits::default() });
    let first = encrypt(&producer, 1).unwrap();
    assert_eq!(value_json(&decrypt(&consumer, "customers", &first).unwrap()), customer(1));
    kms.set(DENIED); // access revoked in the KMS
    let second = encrypt(&producer, 2).unwrap(); // same DEK: still cached by the consumer
    assert_eq!(value_json(&decrypt(&consumer, "customers", &second).unwrap()), customer(2));
    std::thread::sleep(Duration::from_millis(250));
    let out = decrypt(&consumer, "customers", &second).unwrap();
    assert_ne!(value_json(&out)["password"], customer(2)["password"], "no plaintext after the TTL");
    assert_eq!(value_json(&out)["password"], value_json(&second)["password"], "ciphertext kept");
}

#[test]
fn consumer_keeps_decrypting_cached_deks_while_the_kms_is_down() {
    let producer = demo_codec();
    let kms = SwitchedKms::new();
    let consumer = codec(&kms, Limits::default());
    let records: Vec<Record> = (0..20).map(|i| encrypt(&producer, i).unwrap()).collect();
    decrypt(&consumer, "customers", &records[0]).unwrap();
    kms.set(UNREACHABLE);
    for (i, record) in records.iter().enumerate() {
        assert_eq!(value_json(&decrypt(&consumer, "customers", record).unwrap()), customer(i));
    }
    // A DEK it has not seen: a retryable error, not ciphertext passed off as decrypted.
    let other = encrypt(&demo_codec(), 99).unwrap();
    let e = decrypt(&consumer, "customers", &other).unwrap_err();
    assert!(e.kind() == ErrorKind::Kms && e.is_retryable(), "{e}");
}

/// A policy reload through `Codec::with_policy` keeps the data keys in use, the consumer's key
/// cache and the counters: no KMS call for keys already in use; the new revision is in force.
#[test]
fn a_new_policy_revision_keeps_keys_caches_and_counters() {
    let kms = std::sync::Arc::new(fieldcrypt::LocalKms::new().with_secret("demo-kek", b"reload"));
    let v1 = fieldcrypt::Policy::from_json(
        r#"{"fieldcrypt_policy": 1, "id": "reload", "revision": 1,
            "encrypt": [{"name": "r", "topics": ["t"], "fields": ["password"], "key": "local://demo-kek"}]}"#,
    )
    .unwrap();
    let v2 = fieldcrypt::Policy::from_json(
        r#"{"fieldcrypt_policy": 1, "id": "reload", "revision": 2,
            "encrypt": [{"name": "r", "topics": ["t"], "fields": ["password", "visa"], "key": "local://demo-kek"}]}"#,
    )
    .unwrap();
    let one = fieldcrypt::Codec::builder(v1).kms_shared(kms).build().unwrap();
    let record = br#"{"password":"pw","visa":"4111"}"#;
    let none: &[fieldcrypt::OwnedHeader] = &[];
    let a = one.encrypt("t", None, Some(record), none).unwrap();
    let two = one.with_policy(v2).unwrap();
    let b = two.encrypt("t", None, Some(record), none).unwrap();
    let header = |r: &fieldcrypt::Record| {
        fieldcrypt::header::parse(r.fieldcrypt_header().unwrap())
            .map(|h| (h.policy_revision, h.keys[0].dek_id, h.keys[0].fields.len()))
            .unwrap()
    };
    let (rev_a, dek_a, fields_a) = header(&a);
    let (rev_b, dek_b, fields_b) = header(&b);
    assert_eq!((rev_a, fields_a, rev_b, fields_b), (1, 1, 2, 2), "revision 2 encrypts visa too");
    assert_eq!(dek_a, dek_b, "the producer's data key carried over");
    assert_eq!(two.stats().kms_wrap_calls, 1, "one wrap in all");
    assert_eq!(two.stats().records_encrypted, 2, "counters carried over");
    assert_eq!(two.decrypt("t", None, a.value.as_deref(), &a.headers).unwrap().value.as_deref(), Some(&record[..]));
}
