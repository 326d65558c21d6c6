//! Data-key rotation by use count and by age, the consumer's DEK cache, and KEK rotation.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use fieldcrypt::{Limits, Record};
use serde_json::Value;

fn limits(max_uses: u64) -> Limits {
    Limits { dek_max_uses: max_uses, ..Limits::default() }
}

#[test]
fn dek_rotates_after_max_uses() {
    // Each `customers` record uses its DEK 3 times: the header tag, password, visa.
    let producer = codec_sharing(demo_policy(), &Arc::new(dev_kms()), limits(10));
    let plain: Vec<Value> = (0..100).map(customer).collect();
    let sealed: Vec<Record> = plain.iter().map(|p| encrypt_value(&producer, "customers", p)).collect();

    let ids = distinct_dek_ids(&sealed);
    assert!(ids.len() > 1);
    let stats = producer.stats();
    assert_eq!(stats.deks_created, ids.len() as u64);
    assert_eq!(stats.kms_wrap_calls, ids.len() as u64);
    assert_eq!(stats.kms_unwrap_calls, 0);
    // The use count is checked when a record leases the DEK (uses < 10 ⇒ 0, 3, 6, 9): 4 records
    // per DEK, the last one taking it to 12. See the report: `dek_max_uses` is a soft limit.
    assert_eq!(ids.len(), 25);
    for chunk in sealed.chunks(4) {
        let first = dek_ids(&chunk[0]);
        assert!(chunk.iter().all(|r| dek_ids(r) == first), "4 consecutive records share a DEK");
    }
    // Every DEK's wrapped form differs, and each record's DEK is unwrapped by a fresh consumer.
    let consumer = demo_codec();
    for (p, r) in plain.iter().zip(&sealed) {
        assert_eq!(&value_json(&decrypt(&consumer, "customers", r).unwrap()), p);
    }
    assert_eq!(consumer.stats().kms_unwrap_calls, 25);
    assert_eq!(consumer.stats().dek_cache_misses, 25);
    assert_eq!(consumer.stats().dek_cache_hits, 75);
}

#[test]
fn dek_rotates_after_max_age() {
    let producer = demo_codec_with_limits(Limits { dek_max_age: Duration::from_millis(1), ..Limits::default() });
    let a = encrypt_value(&producer, "customers", &customer(1));
    std::thread::sleep(Duration::from_millis(5));
    let b = encrypt_value(&producer, "customers", &customer(2));
    std::thread::sleep(Duration::from_millis(5));
    let c = encrypt_value(&producer, "customers", &customer(3));
    assert_eq!(distinct_dek_ids([&a, &b, &c]).len(), 3);
    assert_eq!(producer.stats().deks_created, 3);
    let consumer = demo_codec();
    for (r, i) in [(&a, 1), (&b, 2), (&c, 3)] {
        assert_eq!(value_json(&decrypt(&consumer, "customers", r).unwrap()), customer(i));
    }

    // A long max age does not rotate.
    let producer = demo_codec();
    let x = encrypt_value(&producer, "customers", &customer(1));
    std::thread::sleep(Duration::from_millis(5));
    let y = encrypt_value(&producer, "customers", &customer(2));
    assert_eq!(dek_ids(&x), dek_ids(&y));
}

fn demo_codec_with_limits(limits: Limits) -> fieldcrypt::Codec {
    codec_sharing(demo_policy(), &Arc::new(dev_kms()), limits)
}

#[test]
fn consumer_unwraps_each_dek_once() {
    let producer = demo_codec();
    let sealed: Vec<Record> = (0..1000).map(|i| encrypt_value(&producer, "customers", &customer(i))).collect();
    assert_eq!(distinct_dek_ids(&sealed).len(), 1);
    assert_eq!(producer.stats().deks_created, 1);
    assert_eq!(producer.stats().kms_wrap_calls, 1);

    let consumer = demo_codec();
    for (i, r) in sealed.iter().enumerate() {
        assert_eq!(value_json(&decrypt(&consumer, "customers", r).unwrap()), customer(i));
    }
    let stats = consumer.stats();
    assert_eq!(stats.kms_unwrap_calls, 1);
    assert_eq!(stats.dek_cache_misses, 1);
    assert_eq!(stats.dek_cache_hits, 999);
    assert_eq!(stats.records_decrypted, 1000);
    assert_eq!(stats.fields_decrypted, 2000);

    // Clearing the cache costs exactly one more unwrap.
    consumer.clear_key_cache();
    decrypt(&consumer, "customers", &sealed[0]).unwrap();
    decrypt(&consumer, "customers", &sealed[1]).unwrap();
    assert_eq!(consumer.stats().kms_unwrap_calls, 2);

    // A TTL of zero means every record asks the KMS again.
    let no_cache = codec_sharing(
        demo_policy(),
        &Arc::new(dev_kms()),
        Limits { dek_cache_ttl: Duration::ZERO, ..Limits::default() },
    );
    for r in &sealed[..10] {
        decrypt(&no_cache, "customers", r).unwrap();
    }
    assert_eq!(no_cache.stats().kms_unwrap_calls, 10);
}

#[test]
fn kek_rotation_applies_to_new_deks_and_old_records_stay_readable() {
    let kms = Arc::new(dev_kms());
    // 3 uses per record, rotate at 6: records 1-2 share a DEK, record 3 gets a new one.
    let producer = codec_sharing(demo_policy(), &kms, limits(6));
    let version_of = |r: &Record| envelope(r).keys[0].kek_version.to_string();

    let r1 = encrypt_value(&producer, "customers", &customer(1));
    assert_eq!(version_of(&r1), "1");
    assert_eq!(kms.rotate("demo-kek"), 2);
    let r2 = encrypt_value(&producer, "customers", &customer(2));
    assert_eq!(dek_ids(&r2), dek_ids(&r1), "the active DEK keeps being used after the KEK rotates");
    assert_eq!(version_of(&r2), "1", "…still wrapped under KEK version 1");
    let r3 = encrypt_value(&producer, "customers", &customer(3));
    assert_ne!(dek_ids(&r3), dek_ids(&r1));
    assert_eq!(version_of(&r3), "2", "a new DEK is wrapped under the new KEK version");
    assert_eq!(producer.stats().deks_created, 2);

    // A consumer sharing the rotated KMS reads everything.
    let consumer = codec_sharing(demo_policy(), &kms, Limits::default());
    for (r, i) in [(&r1, 1), (&r2, 2), (&r3, 3)] {
        assert_eq!(value_json(&decrypt(&consumer, "customers", r).unwrap()), customer(i));
    }
    assert_eq!(consumer.stats().kms_unwrap_calls, 2);

    // A consumer with only the key file (version 1) reads the old records; the new one is
    // left as ciphertext, header kept, no error.
    let stale = demo_codec();
    assert_eq!(value_json(&decrypt(&stale, "customers", &r1).unwrap()), customer(1));
    assert_eq!(value_json(&decrypt(&stale, "customers", &r2).unwrap()), customer(2));
    let out = decrypt(&stale, "customers", &r3).unwrap();
    assert_eq!(out, r3);
    assert_eq!(stale.stats().fields_withheld, 2);

    // Rotating twice more: version 1 stays readable.
    assert_eq!(kms.rotate("demo-kek"), 3);
    let fresh = codec_sharing(demo_policy(), &kms, Limits::default());
    assert_eq!(value_json(&decrypt(&fresh, "customers", &r1).unwrap()), customer(1));

    // Removing the KEK: the producer's active DEK keeps working until it rotates, then the
    // producer fails closed.
    kms.remove("demo-kek");
    let e = (0..3)
        .map(|i| producer.encrypt("customers", None, Some(&to_bytes(&customer(i))), NO_HEADERS))
        .find_map(Result::err);
    assert_eq!(e.map(|e| e.kind()), Some(fieldcrypt::ErrorKind::KeyNotFound));
}

#[test]
fn deterministic_dek_is_derived_again_not_rotated_randomly() {
    // An SIV DEK is derived from the KEK: when it "rotates" by age it is the same key again.
    let producer = codec_sharing(
        test_policy(),
        &Arc::new(full_kms()),
        Limits { dek_max_age: Duration::from_millis(1), ..Limits::default() },
    );
    let plain = serde_json::json!({"email": "same@example.com"});
    let a = encrypt_value(&producer, "det", &plain);
    std::thread::sleep(Duration::from_millis(5));
    let b = encrypt_value(&producer, "det", &plain);
    assert_eq!(dek_ids(&a), dek_ids(&b));
    assert_eq!(value_json(&a)["email"], value_json(&b)["email"]);
    assert_eq!(producer.stats().kms_derive_calls, 2);
}
