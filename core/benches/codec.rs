//! Criterion benchmarks of the JSON codec on the standard benchmark workload
//! (`schemas/payment/payment.json`, a copy of `/work/shared/bench/`): one 11-field payment
//! record whose PII fields `email`, `ssn`, `address.street` and `phone` the demo policy
//! (`schemas/policies/demo.json`, rule `payment-pii`, topic `payments`) encrypts under
//! `local://demo-kek` with AES-256-GCM.
//!
//! * `json/encrypt` — one producer `Codec::encrypt` of the record: locating the four fields,
//!   sealing them, writing the fieldcrypt header (body + authenticator) and the output record.
//! * `json/decrypt` — one `Codec::decrypt` of that encrypted record by a separate consumer codec
//!   (no profile: every field) whose DEK cache is warm, so no KMS unwrap is measured.
//! * `json/plain_roundtrip` — `serde_json::from_slice::<Value>` + `serde_json::to_vec` of the
//!   same plaintext record: the baseline (a generic parse + serialize of the record).
//!
//! Run with `cargo bench -p fieldcrypt --bench codec`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fieldcrypt::{Codec, LocalKms, OwnedHeader, Policy, HEADER_NAME};
use serde_json::Value;

const TOPIC: &str = "payments";
const PII_FIELDS: u64 = 4;

fn fixture(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

fn read(relative: &str) -> Vec<u8> {
    let path = fixture(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

fn codec() -> Codec {
    let policy_text = String::from_utf8(read("schemas/policies/demo.json")).expect("policy is UTF-8");
    let policy = Policy::from_json(&policy_text).expect("demo policy loads");
    let kms = LocalKms::from_file(fixture("schemas/keys/local-dev.json")).expect("local key file loads");
    Codec::builder(policy).kms(kms).build().expect("codec builds")
}

fn json(c: &mut Criterion) {
    // The record exactly as serialized by the producer (minus the file's trailing newline).
    let mut plain = read("schemas/payment/payment.json");
    while plain.last().is_some_and(u8::is_ascii_whitespace) {
        plain.pop();
    }
    let plain = plain;
    let no_headers: &[OwnedHeader] = &[];

    let producer = codec();
    let consumer = codec(); // separate instance: its own DEK cache, nothing shared with the producer

    // Fixture for the decrypt benchmark, and sanity checks so the figures measure real work.
    let sealed = producer.encrypt(TOPIC, None, Some(&plain), no_headers).expect("encrypt");
    assert!(sealed.fieldcrypt_header().is_some(), "encrypted record carries the {HEADER_NAME} header");
    let sealed_text = String::from_utf8_lossy(sealed.value.as_deref().unwrap()).into_owned();
    for secret in ["jane.doe@example.com", "123-45-6789", "1600 Amphitheatre Parkway", "+1-650-555-0100"] {
        assert!(!sealed_text.contains(secret), "{secret} left in clear");
    }
    assert_eq!(producer.stats().fields_encrypted, PII_FIELDS);

    // Warm the consumer's DEK cache (one KMS unwrap), and check all four fields come back.
    let opened = consumer.decrypt(TOPIC, None, sealed.value.as_deref(), &sealed.headers).expect("decrypt");
    let restored: Value = serde_json::from_slice(opened.value.as_deref().expect("decrypted value")).unwrap();
    assert_eq!(restored, serde_json::from_slice::<Value>(&plain).unwrap(), "decrypt restores the record");
    assert!(opened.fieldcrypt_header().is_none(), "header removed once nothing is left encrypted");
    let warm = consumer.stats();
    assert_eq!((warm.fields_decrypted, warm.fields_withheld, warm.kms_unwrap_calls), (PII_FIELDS, 0, 1));

    let mut group = c.benchmark_group("json");
    group.throughput(Throughput::Elements(1));

    group.bench_function("encrypt", |b| {
        b.iter(|| producer.encrypt(black_box(TOPIC), None, Some(black_box(&plain[..])), black_box(no_headers)).unwrap())
    });

    group.bench_function("decrypt", |b| {
        b.iter(|| {
            consumer
                .decrypt(black_box(TOPIC), None, black_box(sealed.value.as_deref()), black_box(&sealed.headers[..]))
                .unwrap()
        })
    });

    group.bench_function("plain_roundtrip", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_slice(black_box(&plain[..])).unwrap();
            serde_json::to_vec(&v).unwrap()
        })
    });

    group.finish();

    // The cache stayed warm: the consumer never went back to the KMS while measured.
    let after = consumer.stats();
    assert_eq!(after.kms_unwrap_calls, 1, "decrypt benchmark hit the KMS");
    assert_eq!(after.fields_withheld, 0);
}

criterion_group!(benches, json);
criterion_main!(benches);
