//! Round trips of JSON records through encrypt → decrypt: every path form, non-string values,
//! nulls, paths that match nothing, record keys, tombstones, and header pass-through.

mod common;

use common::*;
use fieldcrypt::{Codec, OwnedHeader, Part, HEADER_NAME};
use serde_json::{json, Value};

fn rt_record() -> Value {
    json!({
        "id": 42,
        "name": "Ada",
        "password": "correct horse battery staple",
        "customer": {"ssn": "123-45-6789", "city": "London"},
        "orders": [
            {"visa": "4111 1111 1111 1111", "total": 10},
            {"total": 11},
            {"visa": null, "total": 12},
            {"visa": 4012888888881881u64},
            "not an object"
        ],
        "prefs": {"home address": "1 Infinite Loop", "colour": "green", "n": 3, "nothing": null, "é": ["x", 1]},
        "first name": "Augusta",
        "odd.key": {"v": "dotted member", "w": "stays"},
        "n": -12.5,
        "flag": false,
        "obj": {"deep": {"a": [1, 2, {"b": "c"}]}, "s": "inner secret"},
        "arr": [1, "two", null, {"three": 3}],
        "maybe": null
    })
}

/// Every location of [`rt_record`] the `rt` rule encrypts, as JSON pointers.
const RT_ENCRYPTED: &[&str] = &[
    "/password",
    "/customer/ssn",
    "/orders/0/visa",
    "/orders/3/visa",
    "/prefs/home address",
    "/prefs/colour",
    "/prefs/n",
    "/prefs/é",
    "/first name",
    "/odd.key/v",
    "/n",
    "/flag",
    "/obj",
    "/arr",
];

/// Locations the rule's paths reach that must be left alone (null or absent) plus plain fields.
const RT_UNTOUCHED: &[&str] = &[
    "/id",
    "/name",
    "/customer/city",
    "/orders/0/total",
    "/orders/1",
    "/orders/2",
    "/orders/4",
    "/prefs/nothing",
    "/odd.key/w",
    "/maybe",
];

#[test]
fn every_path_form_round_trips() {
    let codec = test_codec();
    let plain = rt_record();
    let plain_bytes = to_bytes(&plain);
    let sealed = codec.encrypt("rt", None, Some(&plain_bytes), NO_HEADERS).unwrap();

    let doc = value_json(&sealed);
    for p in RT_ENCRYPTED {
        let original = plain.pointer(p).unwrap();
        let ct = field_ciphertext(&doc, p);
        // GCM: nonce(12) ‖ E(type ‖ plaintext) ‖ tag(16); type 0 = string, 1 = JSON text.
        let plain_len = match original {
            Value::String(s) => s.len(),
            other => serde_json::to_vec(other).unwrap().len(),
        };
        assert_eq!(ct.len(), 12 + 1 + plain_len + 16, "ciphertext length at {p}");
    }
    for p in RT_UNTOUCHED {
        assert_eq!(doc.pointer(p), plain.pointer(p), "{p} must not change");
    }
    assert_eq!(doc.pointer("/nothing"), None, "a path that matches nothing creates nothing");

    // The header lists the policy's paths that selected something, in policy order.
    let env = envelope(&sealed);
    assert_eq!(env.policy_id, "integration-tests");
    assert_eq!(env.policy_revision, 7);
    assert_eq!(env.keys.len(), 1);
    assert_eq!(env.keys[0].kek, "local://demo-kek");
    assert_eq!(env.keys[0].kek_version, "1");
    let listed: Vec<&str> = env.keys[0].fields.iter().map(|(_, p)| *p).collect();
    assert_eq!(
        listed,
        [
            "password",
            "customer.ssn",
            "orders[*].visa",
            "prefs.*",
            "[\"first name\"]",
            "[\"odd.key\"].v",
            "n",
            "flag",
            "obj",
            "arr"
        ],
        "`nothing.here` (no match) and `maybe` (null) are not listed"
    );
    assert!(env.keys[0].fields.iter().all(|(part, _)| *part == Part::Value));

    let opened = decrypt(&codec, "rt", &sealed).unwrap();
    assert_eq!(value_json(&opened), plain, "decrypt restores every value with its original type");
    assert!(opened.fieldcrypt_header().is_none(), "header dropped once nothing is left encrypted");
    assert!(opened.headers.is_empty());

    let stats = codec.stats();
    assert_eq!(stats.records_encrypted, 1);
    assert_eq!(stats.fields_encrypted, RT_ENCRYPTED.len() as u64);
    assert_eq!(stats.records_decrypted, 1);
    assert_eq!(stats.fields_decrypted, RT_ENCRYPTED.len() as u64);
    assert_eq!(stats.fields_withheld, 0);
}

#[test]
fn non_string_values_become_strings_and_come_back_typed() {
    let codec = test_codec();
    let cases = [
        json!(0),
        json!(-1),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(3.25),
        json!(-0.5e-10),
        json!(true),
        json!(false),
        json!({}),
        json!([]),
        json!({"a": {"b": [null, true, 1.5, "x"]}}),
        json!([[1], [2, [3]], {"k": null}]),
        json!(""),
        json!("1234"),
        json!("{\"looks\": \"like json\"}"),
        json!("true"),
    ];
    for v in cases {
        let sealed = encrypt_value(&codec, "rt", &json!({ "n": v.clone() }));
        let doc = value_json(&sealed);
        assert!(doc["n"].is_string(), "{v} must be stored as a Base64 string, got {}", doc["n"]);
        let opened = value_json(&decrypt(&codec, "rt", &sealed).unwrap());
        assert_eq!(opened["n"], v, "value and type restored");
        // A string that looks like a number/JSON must come back as that string, not reparsed.
        assert_eq!(opened["n"].is_string(), v.is_string());
    }
}

#[test]
fn null_is_left_as_null_and_unmatched_paths_change_nothing() {
    let codec = test_codec();
    // Only nulls at encrypted paths: nothing to encrypt, record returned byte-for-byte.
    let raw = br#"{ "password" : null,  "maybe": null, "orders": [{"visa": null}], "other": "x" }"#;
    let out = codec.encrypt("rt", None, Some(raw), NO_HEADERS).unwrap();
    assert_eq!(out.value.as_deref(), Some(&raw[..]), "unchanged bytes, formatting included");
    assert!(out.fieldcrypt_header().is_none(), "no header when nothing was encrypted");
    assert!(out.headers.is_empty());

    // Paths that match nothing at all.
    let raw = br#"{"unrelated": {"password": "not at the top level"}, "orders": "not an array"}"#;
    let out = codec.encrypt("rt", None, Some(raw), NO_HEADERS).unwrap();
    assert_eq!(out.value.as_deref(), Some(&raw[..]));
    assert!(out.headers.is_empty());

    // A topic no rule applies to.
    let raw = br#"{"password": "hunter2"}"#;
    let out = codec.encrypt("plain", Some(b"k"), Some(raw), NO_HEADERS).unwrap();
    assert_eq!((out.key.as_deref(), out.value.as_deref()), (Some(&b"k"[..]), Some(&raw[..])));
    assert!(out.headers.is_empty());

    // Decrypting a record without a header returns it unchanged.
    let back = codec.decrypt("rt", None, Some(raw), NO_HEADERS).unwrap();
    assert_eq!(back.value.as_deref(), Some(&raw[..]));
    assert_eq!(codec.stats().fields_encrypted, 0);

    // A null next to encrypted values stays null, and is not listed in the header.
    let sealed = encrypt_value(&codec, "rt", &json!({"password": "p4ss", "maybe": null}));
    assert_eq!(value_json(&sealed)["maybe"], Value::Null);
    assert_eq!(header_paths(&sealed), vec![(Part::Value, "password".to_string())]);
}

#[test]
fn record_key_fields_round_trip() {
    let codec = test_codec();
    let key = json!({"id": "customer-42", "region": "eu"});
    let value = json!({"password": "s3cr3t-value", "name": "Ada"});
    let (key_bytes, value_bytes) = (to_bytes(&key), to_bytes(&value));
    let sealed = codec.encrypt("keyed", Some(&key_bytes), Some(&value_bytes), NO_HEADERS).unwrap();

    let k = key_json(&sealed);
    assert_eq!(k["region"], "eu");
    assert!(!contains(sealed.key.as_deref().unwrap(), b"customer-42"));
    assert_eq!(field_ciphertext(&k, "/id").len(), 12 + 1 + "customer-42".len() + 16);
    assert!(!contains(sealed.value.as_deref().unwrap(), b"s3cr3t-value"));
    assert_eq!(
        header_paths(&sealed),
        vec![(Part::Key, "id".to_string()), (Part::Value, "password".to_string())],
        "both parts share one entry (same KEK and algorithm)"
    );

    let opened = decrypt(&codec, "keyed", &sealed).unwrap();
    assert_eq!(key_json(&opened), key);
    assert_eq!(value_json(&opened), value);
    assert!(opened.headers.is_empty());

    // A key rule needs a key.
    let e = codec.encrypt("keyed", None, Some(&value_bytes), NO_HEADERS).unwrap_err();
    assert_eq!(e.kind(), fieldcrypt::ErrorKind::Record);
}

#[test]
fn tombstones() {
    let codec = test_codec();
    // Value rules only: a tombstone has nothing to protect.
    let out = codec.encrypt("rt", Some(b"raw key, not JSON"), None, NO_HEADERS).unwrap();
    assert_eq!(out.key.as_deref(), Some(&b"raw key, not JSON"[..]));
    assert_eq!(out.value, None);
    assert!(out.headers.is_empty());
    let back = codec.decrypt("rt", out.key.as_deref(), None, &out.headers).unwrap();
    assert_eq!(back, out);

    // Key rule: the key of a tombstone is still encrypted, the value stays absent.
    let key = json!({"id": "customer-7"});
    let sealed = codec.encrypt("keyed", Some(&to_bytes(&key)), None, NO_HEADERS).unwrap();
    assert_eq!(sealed.value, None);
    assert!(key_json(&sealed)["id"].is_string());
    assert_ne!(key_json(&sealed), key);
    assert_eq!(header_paths(&sealed), vec![(Part::Key, "id".to_string())]);
    let opened = decrypt(&codec, "keyed", &sealed).unwrap();
    assert_eq!(opened.value, None);
    assert_eq!(key_json(&opened), key);
    assert!(opened.headers.is_empty());
}

#[test]
fn inputs_are_not_mutated_and_other_headers_pass_through_in_order() {
    let codec = test_codec();
    let key = to_bytes(&json!({"id": "k-1"}));
    let value = to_bytes(&json!({"password": "pa55word!"}));
    let (key_copy, value_copy) = (key.clone(), value.clone());
    let trace_a = b"trace-a".to_vec();
    let trace_b = b"trace-b".to_vec();

    // `(&str, &[u8])` headers.
    let headers: Vec<(&str, &[u8])> =
        vec![("traceparent", trace_a.as_slice()), ("dup", b"1"), ("empty", b""), ("dup", b"2")];
    let headers_copy = headers.clone();
    let sealed = codec.encrypt("keyed", Some(&key), Some(&value), &headers).unwrap();
    assert_eq!((&key, &value, &headers), (&key_copy, &value_copy, &headers_copy), "inputs unchanged");
    let names: Vec<&str> = sealed.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["traceparent", "dup", "empty", "dup", HEADER_NAME], "fieldcrypt header appended last");
    assert_eq!(sealed.headers[..4], headers.iter().map(|(n, v)| OwnedHeader::new(*n, *v)).collect::<Vec<_>>()[..]);

    // Decrypt with `(&str, Option<&[u8]>)` headers, one of them valueless, fieldcrypt in the middle.
    let fc = header_bytes(&sealed).to_vec();
    let in_headers: Vec<(&str, Option<&[u8]>)> =
        vec![("traceparent", Some(&trace_b)), (HEADER_NAME, Some(&fc)), ("null-valued", None), ("dup", Some(b"3"))];
    let in_copy = in_headers.clone();
    let (sk, sv) = (sealed.key.clone().unwrap(), sealed.value.clone().unwrap());
    let opened = codec.decrypt("keyed", Some(&sk), Some(&sv), &in_headers).unwrap();
    assert_eq!(in_headers, in_copy);
    assert_eq!((sealed.key.as_ref(), sealed.value.as_ref()), (Some(&sk), Some(&sv)));
    assert_eq!(
        opened.headers,
        vec![
            OwnedHeader::new("traceparent", trace_b.clone()),
            OwnedHeader { name: "null-valued".into(), value: None },
            OwnedHeader::new("dup", b"3".to_vec()),
        ]
    );
    assert_eq!(opened.key.as_deref(), Some(&key[..]));
    assert_eq!(opened.value.as_deref(), Some(&value[..]));

    // `OwnedHeader` headers, with a valueless one, pass through encrypt too.
    let owned = vec![OwnedHeader { name: "n".into(), value: None }, OwnedHeader::new("m", b"x".to_vec())];
    let sealed = codec.encrypt("rt", None, Some(br#"{"password":"abcd"}"#), &owned).unwrap();
    assert_eq!(sealed.headers[..2], owned[..]);
    assert_eq!(sealed.headers.len(), 3);
    let opened = decrypt(&codec, "rt", &sealed).unwrap();
    assert_eq!(opened.headers, owned);
}

#[test]
fn customers_fixture_round_trips_under_the_demo_policy() {
    let producer = demo_codec();
    let consumer = demo_codec();
    for plain in customers() {
        let sealed = encrypt_value(&producer, "customers", &plain);
        let bytes = sealed.value.as_deref().unwrap();
        for secret in ["password", "visa"] {
            let s = plain[secret].as_str().unwrap();
            assert!(!contains(bytes, s.as_bytes()), "{secret} in clear");
            assert!(!contains(header_bytes(&sealed), s.as_bytes()));
        }
        assert!(contains(bytes, plain["email"].as_str().unwrap().as_bytes()), "email is not encrypted on customers");
        // FORMAT.md §2.2: this policy and field pair give a 152-byte header.
        assert_eq!(header_bytes(&sealed).len(), 152);
        let opened = decrypt(&consumer, "customers", &sealed).unwrap();
        assert_eq!(value_json(&opened), plain);
        assert!(opened.headers.is_empty());
    }
}

#[test]
fn payment_fixture_round_trips_on_glob_topics() {
    let codec: Codec = demo_codec();
    let plain: Value = serde_json::from_str(&read_fixture("payment/payment.json")).unwrap();
    for topic in ["payments", "payments-eu"] {
        let sealed = encrypt_value(&codec, topic, &plain);
        let doc = value_json(&sealed);
        for p in ["/email", "/ssn", "/address/street", "/phone"] {
            assert_ne!(doc.pointer(p), plain.pointer(p), "{p} encrypted on {topic}");
            assert!(doc.pointer(p).unwrap().is_string());
        }
        for p in ["/id", "/customer_id", "/full_name", "/amount_cents", "/address/city", "/tags"] {
            assert_eq!(doc.pointer(p), plain.pointer(p), "{p} untouched on {topic}");
        }
        assert_eq!(value_json(&decrypt(&codec, topic, &sealed).unwrap()), plain);
    }
    // Not matched by `payments` / `payments-*`.
    let out = encrypt_value(&codec, "payment", &plain);
    assert!(out.headers.is_empty());
}

#[test]
fn parts_with_nothing_selected_keep_their_bytes() {
    let codec = test_codec();
    // `keyed` encrypts key `id` and value `password`. Here the value has no password: its bytes
    // (odd spacing, escapes, number spellings) stay exactly as written.
    let key = br#"{"id":"k-9"}"#;
    let value = br#"{ "name" : "caf\u00e9", "n": 1.0e2, "big": 123456789012345678901234567890 }"#;
    let sealed = codec.encrypt("keyed", Some(key), Some(value), NO_HEADERS).unwrap();
    assert_eq!(sealed.value.as_deref(), Some(&value[..]));
    assert_ne!(sealed.key.as_deref(), Some(&key[..]));
    let opened = decrypt(&codec, "keyed", &sealed).unwrap();
    assert_eq!(opened.value.as_deref(), Some(&value[..]));
    assert_eq!(opened.key.as_deref(), Some(&key[..]));

    // Value selected, key not JSON at all and not selected by any rule of `rt`: kept as is.
    let raw_key = b"\x00\x01 binary key";
    let sealed = codec.encrypt("rt", Some(raw_key), Some(br#"{"password":"pw-pw"}"#), NO_HEADERS).unwrap();
    assert_eq!(sealed.key.as_deref(), Some(&raw_key[..]));
    let opened = decrypt(&codec, "rt", &sealed).unwrap();
    assert_eq!(opened.key.as_deref(), Some(&raw_key[..]));
    assert_eq!(opened.value.as_deref(), Some(&br#"{"password":"pw-pw"}"#[..]));
}

/// The producer reuses a header body while records select the same paths under the same DEK;
/// records that select different subsets must still list exactly their own paths, each with a
/// fresh record nonce.
#[test]
fn header_follows_each_records_selection() {
    let producer = demo_codec();
    let consumer = demo_codec();
    let shapes = [
        json!({"id": 1, "password": "p1", "visa": "4111"}),
        json!({"id": 2, "password": "p2"}),
        json!({"id": 3, "password": "p3"}),
        json!({"id": 4, "visa": "4012"}),
        json!({"id": 5, "password": "p5", "visa": "4222"}),
        json!({"id": 6, "password": "p6", "visa": "4333"}),
    ];
    let mut nonces = std::collections::HashSet::new();
    for plain in shapes.iter().cycle().take(30) {
        let sealed = encrypt_value(&producer, "customers", plain);
        let expected: Vec<(Part, String)> = ["password", "visa"]
            .into_iter()
            .filter(|f| plain.get(f).is_some())
            .map(|f| (Part::Value, f.to_string()))
            .collect();
        assert_eq!(header_paths(&sealed), expected, "{plain}");
        assert!(nonces.insert(envelope(&sealed).record_nonce), "record nonce repeated");
        assert_eq!(&value_json(&decrypt(&consumer, "customers", &sealed).unwrap()), plain);
    }
}
