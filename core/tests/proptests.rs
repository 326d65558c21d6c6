//! Property tests: arbitrary JSON values at encrypted paths round-trip exactly, and no encrypted
//! string is ever visible in the record bytes or the fieldcrypt header.

mod common;

use std::sync::OnceLock;

use common::*;
use fieldcrypt::Codec;
use proptest::prelude::*;
use serde_json::{json, Value};

/// `rt` encrypts `password`, `customer.ssn`, `orders[*].visa` and `prefs.*` (among others);
/// `det` encrypts `email` deterministically.
const SLOTS: &[&str] = &["/password", "/customer/ssn", "/orders/0/visa", "/orders/1/visa", "/prefs/k0", "/prefs/k 1"];

fn codecs() -> &'static (Codec, Codec) {
    static CODECS: OnceLock<(Codec, Codec)> = OnceLock::new();
    CODECS.get_or_init(|| (test_codec(), test_codec()))
}

/// Floats whose shortest text parses back to the same bits with serde_json's default parser
/// (which this test uses to compare records; without `float_roundtrip` it misreads some 17-digit
/// floats by 1 ULP). The codec itself keeps number text exactly: `tests/fidelity.rs`.
fn json_exact_float() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite, and exact through serde_json text (see tests/fidelity.rs)", |f| {
        f.is_finite()
            && serde_json::from_str::<f64>(&serde_json::to_string(f).unwrap()).unwrap().to_bits() == f.to_bits()
    })
}

/// Strings with ASCII, JSON escapes, controls, and multi-byte UTF-8 (2, 3 and 4 bytes).
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _.:/+=\"\\\\\u{0}-\u{1f}\u{7f}éßø€中文字🎉🔑\u{10FFFF}]{0,24}"
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        json_exact_float().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// A record with `values` at the encrypted slots, and public members around them.
fn record(values: &[Value]) -> Value {
    let mut doc = json!({
        "id": 7,
        "password": null,
        "customer": {"ssn": null, "city": "Zürich"},
        "orders": [{"visa": null, "total": 1}, {"visa": null}],
        "prefs": {"k0": null, "k 1": null},
        "public": "visible text"
    });
    for (slot, v) in SLOTS.iter().zip(values) {
        set_at(&mut doc, slot, v.clone());
    }
    doc
}

/// Every string inside a value, object member names included.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                strings(v, out);
            }
        }
        _ => {}
    }
}

const B64_ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";

/// The secrets worth searching for in the output, in every form they could take there.
fn needles(values: &[Value], public: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut all = Vec::new();
    values.iter().for_each(|v| strings(v, &mut all));
    let mut out = Vec::new();
    for s in all {
        if s.chars().count() < 4 {
            continue; // too short: would match by chance
        }
        // Base64 ciphertext is random text over 65 characters: a short string made only of
        // those could occur in it by chance; require 10 characters (chance < 2^-50 per spot).
        if s.chars().all(|c| B64_ALPHABET.contains(c)) && s.len() < 10 {
            continue;
        }
        let escaped = serde_json::to_string(&s).unwrap();
        let escaped = escaped.as_bytes()[1..escaped.len() - 1].to_vec();
        let mut forms = vec![s.as_bytes().to_vec()];
        if escaped != forms[0] {
            forms.push(escaped);
        }
        for form in forms {
            if !contains(public, &form) {
                out.push((s.clone(), form));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn any_json_at_encrypted_paths_round_trips(values in prop::collection::vec(arb_json(), SLOTS.len())) {
        let (producer, consumer) = codecs();
        let plain = record(&values);
        let sealed = encrypt_value(producer, "rt", &plain);
        let doc = value_json(&sealed);
        let encrypted: Vec<&&str> = SLOTS.iter().zip(&values).filter(|(_, v)| !v.is_null()).map(|(s, _)| s).collect();
        for slot in &encrypted {
            prop_assert!(doc.pointer(slot).unwrap().is_string(), "{} holds ciphertext", slot);
        }
        for (slot, v) in SLOTS.iter().zip(&values) {
            if v.is_null() {
                prop_assert_eq!(doc.pointer(slot), Some(&Value::Null));
            }
        }
        prop_assert_eq!(sealed.fieldcrypt_header().is_some(), !encrypted.is_empty(), "header iff something encrypted");

        let opened = decrypt(consumer, "rt", &sealed).unwrap();
        prop_assert_eq!(value_json(&opened), plain);
        prop_assert!(opened.headers.is_empty());
    }

    #[test]
    fn encrypted_strings_never_appear_in_the_output(values in prop::collection::vec(arb_json(), SLOTS.len())) {
        let (producer, _) = codecs();
        let plain = record(&values);
        let sealed = encrypt_value(producer, "rt", &plain);
        // What is public anyway: the record with the encrypted slots nulled, the policy (paths,
        // KEK URI, policy id end up in the header) and the topic.
        // (With empty strings too, so that JSON punctuation like `d":"` counts as public.)
        let mut public = to_bytes(&record(&[]));
        public.extend_from_slice(&to_bytes(&record(&vec![json!(""); SLOTS.len()])));
        public.extend_from_slice(TEST_POLICY.as_bytes());
        public.extend_from_slice(b"rt fieldcrypt");
        let value_bytes = sealed.value.as_deref().unwrap();
        let header = sealed.fieldcrypt_header().unwrap_or_default();
        for (s, form) in needles(&values, &public) {
            prop_assert!(!contains(value_bytes, &form), "plaintext {:?} visible in the record value", s);
            prop_assert!(!contains(header, &form), "plaintext {:?} visible in the fieldcrypt header", s);
        }
    }

    #[test]
    fn deterministic_fields_round_trip_and_repeat(v in arb_json(), other in text()) {
        let (producer, consumer) = codecs();
        let plain = json!({"email": v, "alt_email": other, "password": "randomized"});
        let a = encrypt_value(producer, "det", &plain);
        let b = encrypt_value(consumer, "det", &plain); // an independent codec, same key file
        let (da, db) = (value_json(&a), value_json(&b));
        prop_assert_eq!(&da["email"], &db["email"], "SIV: same value, same ciphertext");
        prop_assert_eq!(&da["alt_email"], &db["alt_email"]);
        prop_assert_ne!(&da["password"], &db["password"], "GCM stays randomized");
        prop_assert_eq!(value_json(&decrypt(consumer, "det", &a).unwrap()), plain.clone());
        prop_assert_eq!(value_json(&decrypt(producer, "det", &b).unwrap()), plain);
    }
}

#[test]
fn record_helper_covers_every_slot() {
    // Guards the property tests above: every slot is one the policy encrypts.
    let codec = test_codec();
    let values: Vec<Value> = (0..SLOTS.len()).map(|i| Value::String(format!("secret value {i}"))).collect();
    let sealed = encrypt_value(&codec, "rt", &record(&values));
    let doc = value_json(&sealed);
    for (slot, v) in SLOTS.iter().zip(&values) {
        assert_ne!(doc.pointer(slot), Some(v), "{slot} is not encrypted by the policy");
    }
    assert_eq!(doc["public"], "visible text");
}

#[test]
fn needles_find_plaintext_when_it_is_there() {
    // Guards the leak property: its search would notice a string left in the clear.
    let values: Vec<Value> = vec![json!("secret: \"quoted\" €"), json!({"nested key!": ["deep secret"]}), json!("abc")];
    let found = needles(&values, &to_bytes(&record(&[])));
    let mut texts: Vec<&str> = found.iter().map(|(s, _)| s.as_str()).collect();
    texts.dedup();
    assert_eq!(texts, ["secret: \"quoted\" €", "nested key!", "deep secret"], "`abc` is too short to search for");
    let clear = to_bytes(&record(&values));
    for s in texts {
        assert!(found.iter().any(|(t, form)| t == s && contains(&clear, form)), "{s} would go unnoticed");
    }
}
