//! Associated data: a ciphertext moved to another field, another array element or another
//! record — or a header moved to another record — must not decrypt (FORMAT.md §4).

mod common;

use common::*;
use fieldcrypt::{ErrorKind, Part, Record};
use serde_json::{json, Value};

fn order_record(tag: &str) -> Value {
    json!({
        "password": format!("password of {tag}"),
        "customer": {"ssn": format!("ssn-{tag}")},
        "orders": [{"visa": format!("visa 0 of {tag}")}, {"visa": format!("visa 1 of {tag}")}],
        "prefs": {"a": format!("pref a of {tag}"), "b": format!("pref b of {tag}")}
    })
}

/// `doc` with the values at `from` and `to` exchanged (or `to` overwritten with `from`'s).
fn moved(doc: &Value, from: &str, to: &str, exchange: bool) -> Value {
    let mut out = doc.clone();
    let a = doc.pointer(from).unwrap().clone();
    let b = doc.pointer(to).unwrap().clone();
    set_at(&mut out, to, a);
    if exchange {
        set_at(&mut out, from, b);
    }
    out
}

#[test]
fn moving_ciphertext_within_a_record_fails() {
    let codec = test_codec();
    let sealed = encrypt_value(&codec, "rt", &order_record("r1"));
    let doc = value_json(&sealed);
    let pairs = [
        ("/password", "/customer/ssn"),       // between fields
        ("/orders/0/visa", "/orders/1/visa"), // between array elements, same policy path
        ("/prefs/a", "/prefs/b"),             // between map values, same policy path
        ("/password", "/prefs/a"),
    ];
    for (from, to) in pairs {
        for exchange in [false, true] {
            let tampered = with_value(&sealed, &moved(&doc, from, to, exchange));
            assert_eq!(decrypt_err(&codec, "rt", &tampered), ErrorKind::Crypto, "{from} -> {to} (exchange {exchange})");
        }
    }
    // Moving a value-part ciphertext into the record key fails as well (part is bound).
    let keyed = codec
        .encrypt(
            "keyed",
            Some(&to_bytes(&json!({"id": "k"}))),
            Some(&to_bytes(&json!({"password": "p-w-d"}))),
            NO_HEADERS,
        )
        .unwrap();
    assert_eq!(header_paths(&keyed), [(Part::Key, "id".to_string()), (Part::Value, "password".to_string())]);
    let (k, v) = (key_json(&keyed), value_json(&keyed));
    let swapped = Record {
        key: Some(to_bytes(&json!({"id": v["password"]}))),
        value: Some(to_bytes(&json!({"password": k["id"]}))),
        headers: keyed.headers.clone(),
    };
    assert_eq!(decrypt_err(&codec, "keyed", &swapped), ErrorKind::Crypto);
    // Unmodified, both still decrypt.
    assert!(decrypt(&codec, "rt", &sealed).is_ok());
    assert!(decrypt(&codec, "keyed", &keyed).is_ok());
}

#[test]
fn moving_ciphertext_between_records_fails() {
    let codec = test_codec();
    let r1 = encrypt_value(&codec, "rt", &order_record("r1"));
    let r2 = encrypt_value(&codec, "rt", &order_record("r2"));
    assert_eq!(dek_ids(&r1), dek_ids(&r2), "same codec, same DEK: only the record binding differs");
    assert_ne!(record_nonce(&r1), record_nonce(&r2));
    let (d1, d2) = (value_json(&r1), value_json(&r2));
    for p in ["/password", "/customer/ssn", "/orders/0/visa", "/orders/1/visa", "/prefs/a"] {
        // Same field, same path, same DEK — other record.
        let mut doc = d1.clone();
        set_at(&mut doc, p, d2.pointer(p).unwrap().clone());
        assert_eq!(decrypt_err(&codec, "rt", &with_value(&r1, &doc)), ErrorKind::Crypto, "{p} from r2 into r1");
    }
    // The whole value of another record under this record's header.
    assert_eq!(decrypt_err(&codec, "rt", &with_value(&r1, &d2)), ErrorKind::Crypto);
}

#[test]
fn swapping_headers_between_records_fails() {
    let codec = test_codec();
    let r1 = encrypt_value(&codec, "rt", &order_record("r1"));
    let r2 = encrypt_value(&codec, "rt", &order_record("r2"));
    let r1_with_h2 = with_header(&r1, header_bytes(&r2).to_vec());
    let r2_with_h1 = with_header(&r2, header_bytes(&r1).to_vec());
    assert_eq!(decrypt_err(&codec, "rt", &r1_with_h2), ErrorKind::Crypto);
    assert_eq!(decrypt_err(&codec, "rt", &r2_with_h1), ErrorKind::Crypto);

    // A header from a record that encrypted fewer fields does not authenticate them either.
    let small = encrypt_value(&codec, "rt", &json!({"password": "only this one"}));
    assert_eq!(decrypt_err(&codec, "rt", &with_header(&r1, header_bytes(&small).to_vec())), ErrorKind::Crypto);
}

#[test]
fn deterministic_ciphertext_is_bound_to_its_path_not_its_record() {
    // By design (FORMAT.md §4) an SIV ciphertext moves between records at the same path, but not
    // to another path.
    let codec = test_codec();
    let r1 = encrypt_value(&codec, "det", &json!({"email": "a@example.com", "alt_email": "b@example.com"}));
    let r2 = encrypt_value(&codec, "det", &json!({"email": "c@example.com", "alt_email": "d@example.com"}));
    let (d1, d2) = (value_json(&r1), value_json(&r2));

    let mut doc = d1.clone();
    set_at(&mut doc, "/email", d2["email"].clone());
    let opened = value_json(&decrypt(&codec, "det", &with_value(&r1, &doc)).unwrap());
    assert_eq!(opened["email"], "c@example.com", "same path, other record: accepted by design");

    for exchange in [false, true] {
        let tampered = with_value(&r1, &moved(&d1, "/email", "/alt_email", exchange));
        assert_eq!(decrypt_err(&codec, "det", &tampered), ErrorKind::Crypto, "other path");
    }
}
