//! AES256_SIV rules: equal plaintexts give equal ciphertexts across records and across codec
//! instances that share a key file; other paths and other values give other ciphertexts.

mod common;

use common::*;
use fieldcrypt::{Algorithm, Codec, LocalKms, Policy};
use serde_json::json;

#[test]
fn equal_values_give_equal_ciphertexts_across_records_and_codecs() {
    let a = test_codec();
    let b = Codec::builder(test_policy()).kms(full_kms()).build().unwrap(); // independent instance
    let plain = json!({"email": "ada@example.com", "alt_email": "ada@example.com", "password": "pw-pw-pw"});

    let r1 = encrypt_value(&a, "det", &plain);
    let r2 = encrypt_value(&a, "det", &plain);
    let r3 = encrypt_value(&b, "det", &plain);
    let (d1, d2, d3) = (value_json(&r1), value_json(&r2), value_json(&r3));
    assert_eq!(d1["email"], d2["email"], "across records");
    assert_eq!(d1["email"], d3["email"], "across codec instances");
    assert_eq!(d1["alt_email"], d3["alt_email"]);
    assert_ne!(d1["email"], d1["alt_email"], "same value, other path: other ciphertext");
    assert_ne!(d1["password"], d2["password"], "the GCM field of the same records stays randomized");
    assert_ne!(record_nonce(&r1), record_nonce(&r2));

    // The SIV entry names the same DEK everywhere; SIV ciphertext is siv(16) ‖ E(type ‖ text).
    let env = envelope(&r1);
    assert_eq!(env.keys.len(), 2, "SIV and GCM under one KEK are two entries");
    assert_eq!(env.keys[0].algorithm, Algorithm::Aes256Siv);
    assert_eq!(env.keys[1].algorithm, Algorithm::Aes256Gcm);
    assert_eq!(dek_ids(&r1)[0], dek_ids(&r3)[0]);
    assert_ne!(dek_ids(&r1)[1], dek_ids(&r3)[1], "GCM DEKs are per producer");
    assert_eq!(field_ciphertext(&d1, "/email").len(), 16 + 1 + "ada@example.com".len());

    // Different values: different ciphertexts.
    let other = encrypt_value(&a, "det", &json!({"email": "alan@example.com"}));
    assert_ne!(value_json(&other)["email"], d1["email"]);
    // Non-string values too, and a string "1" differs from the number 1.
    let n = encrypt_value(&a, "det", &json!({"email": 1, "alt_email": "1"}));
    let n2 = encrypt_value(&b, "det", &json!({"email": 1}));
    assert_eq!(value_json(&n)["email"], value_json(&n2)["email"]);
    let s = encrypt_value(&a, "det", &json!({"email": "1"}));
    assert_ne!(value_json(&n)["email"], value_json(&s)["email"]);

    // Round trips, in either codec.
    for (r, p) in [(&r1, &plain), (&r3, &plain)] {
        assert_eq!(&value_json(&decrypt(&a, "det", r).unwrap()), p);
        assert_eq!(&value_json(&decrypt(&b, "det", r).unwrap()), p);
    }
    assert_eq!(value_json(&decrypt(&b, "det", &n).unwrap()), json!({"email": 1, "alt_email": "1"}));
}

#[test]
fn deterministic_ciphertext_depends_on_the_kek() {
    let policy = r#"{"fieldcrypt_policy":1,"id":"p","encrypt":[
        {"name":"d","topics":["t"],"fields":["email"],"key":"local://k","algorithm":"AES256_SIV"}]}"#;
    let with = |secret: &[u8]| {
        Codec::builder(Policy::from_json(policy).unwrap())
            .kms(LocalKms::new().with_secret("k", secret))
            .build()
            .unwrap()
    };
    let plain = json!({"email": "ada@example.com"});
    let x = encrypt_value(&with(b"secret one"), "t", &plain);
    let y = encrypt_value(&with(b"secret one"), "t", &plain);
    let z = encrypt_value(&with(b"secret two"), "t", &plain);
    assert_eq!(value_json(&x)["email"], value_json(&y)["email"]);
    assert_ne!(value_json(&x)["email"], value_json(&z)["email"]);
    assert_ne!(dek_ids(&x), dek_ids(&z));
    // A KEK with the same name but other bytes cannot unwrap the DEK: a crypto error.
    assert_eq!(decrypt_err(&with(b"secret two"), "t", &x), fieldcrypt::ErrorKind::Crypto);
}

#[test]
fn deterministic_record_keys_keep_partitioning_stable() {
    let policy = r#"{"fieldcrypt_policy":1,"id":"p","encrypt":[
        {"name":"k","topics":["t"],"part":"key","fields":["id"],"key":"local://demo-kek","algorithm":"AES256_SIV"}]}"#;
    let a = Codec::builder(Policy::from_json(policy).unwrap()).kms(dev_kms()).build().unwrap();
    let b = Codec::builder(Policy::from_json(policy).unwrap()).kms(dev_kms()).build().unwrap();
    let key = to_bytes(&json!({"id": "customer-42"}));
    let ka = a.encrypt("t", Some(&key), Some(b"opaque value"), NO_HEADERS).unwrap();
    let kb = b.encrypt("t", Some(&key), None, NO_HEADERS).unwrap();
    assert_eq!(ka.key, kb.key, "equal keys encrypt to equal bytes: same partition");
    assert_eq!(ka.value.as_deref(), Some(&b"opaque value"[..]), "value untouched (no value rule)");
    let opened = decrypt(&b, "t", &ka).unwrap();
    assert_eq!(opened.key.as_deref(), Some(&key[..]));
    assert_eq!(opened.value.as_deref(), Some(&b"opaque value"[..]));
}
