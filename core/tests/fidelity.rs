//! Fields the policy does not select must come out exactly as the application wrote them
//! (FORMAT.md: "Everything else — other fields, other headers, the serializer framing — is left
//! as the application wrote it"), and encrypted numbers must come back exactly.
//!
//! These tests compare number *text* in the record bytes, because parsing the output with
//! serde_json (as the codec does) would hide the very loss they look for.
//!
//! Regression: an early codec parsed the whole record into a `serde_json::Value` and
//! re-serialized it, so a float needing 17 significant digits came back 1 ULP off
//! (`2.291712365432881e-9` → `2.2917123654328812e-9`) and an integer beyond 64 bits became a
//! float. The codec now copies untouched values byte for byte and encrypts a non-string value as
//! its exact JSON text.

mod common;

use common::*;

/// Finds `"name":<number>` in compact JSON and returns the number's text.
fn number_text(json: &[u8], name: &str) -> String {
    let text = std::str::from_utf8(json).unwrap();
    let key = format!("\"{name}\":");
    let start = text.find(&key).unwrap_or_else(|| panic!("{name} not in {text}")) + key.len();
    text[start..].chars().take_while(|c| c.is_ascii_digit() || "+-.eE".contains(*c)).collect()
}

// Shortest round-trip form of these f64s (what Rust's and serde_json's printers write).
const FLOATS: &[&str] = &["2.291712365432881e-9", "-1.527077339613215e-236", "3.0328247929935305e-68", "0.1"];

/// Encrypts `{"password": .., <plain>}` and returns the encrypted and the decrypted value bytes.
fn through_codec(plain_members: &str) -> [(&'static str, Vec<u8>); 2] {
    let codec = test_codec();
    let plain = format!(r#"{{"password":"pw-1234",{plain_members}}}"#);
    let sealed = codec.encrypt("rt", None, Some(plain.as_bytes()), NO_HEADERS).unwrap();
    assert!(sealed.fieldcrypt_header().is_some());
    let opened = decrypt(&codec, "rt", &sealed).unwrap();
    [("encrypted record", sealed.value.unwrap()), ("decrypted record", opened.value.unwrap())]
}

#[test]
fn unencrypted_big_integers_are_left_as_written() {
    for (what, bytes) in through_codec(r#""big":123456789012345678901234567890"#) {
        assert_eq!(number_text(&bytes, "big"), "123456789012345678901234567890", "{what}: big integer changed");
    }
}

#[test]
fn unencrypted_floats_are_left_as_written() {
    let members: Vec<String> = FLOATS.iter().enumerate().map(|(i, f)| format!(r#""f{i}":{f}"#)).collect();
    for (what, bytes) in through_codec(&members.join(",")) {
        for (i, f) in FLOATS.iter().enumerate() {
            assert_eq!(number_text(&bytes, &format!("f{i}")), *f, "{what}: plain float f{i} changed");
        }
    }
}

#[test]
fn encrypted_floats_come_back_bit_exact() {
    let codec = test_codec();
    for f in FLOATS {
        let expected: f64 = f.parse().unwrap(); // Rust's parser is correctly rounded
        let plain = format!(r#"{{"n":{f}}}"#);
        let sealed = codec.encrypt("rt", None, Some(plain.as_bytes()), NO_HEADERS).unwrap();
        let opened = decrypt(&codec, "rt", &sealed).unwrap();
        let back = number_text(opened.value.as_deref().unwrap(), "n");
        let back_f: f64 = back.parse().unwrap();
        assert_eq!(back_f.to_bits(), expected.to_bits(), "encrypted float {f} came back as {back}");
    }
}
