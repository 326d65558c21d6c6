//! Shared set-up of the fieldcrypt fuzz targets: the demo policy and local key file (embedded),
//! codecs built once per process, a fixed sealed record, the input encodings of the targets, and
//! the property check of `decrypt_mutate`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use fieldcrypt::{Codec, LocalKms, Policy};
use serde_json::Value;

pub use fieldcrypt::HEADER_NAME;

pub const POLICY_JSON: &str = include_str!("../../../schemas/policies/demo.json");
pub const KEYS_JSON: &str = include_str!("../../../schemas/keys/local-dev.json");
pub const TOPIC: &str = "customers";

/// The record sealed in `fixtures/`, in compact JSON (the form decrypt re-serializes to).
pub const PLAINTEXT: &[u8] = br#"{"id":1,"name":"Ada Lovelace","email":"ada@example.com","password":"correct horse battery staple","visa":"4111 1111 1111 1111"}"#;

/// [`PLAINTEXT`] encrypted once for topic `customers` by `examples/gen_corpus.rs` (the codec
/// draws random nonces and DEKs, so the sealed record is stored rather than made at start-up:
/// a crash input of `decrypt_mutate` then reproduces in any process).
pub const SEALED_HEADER: &[u8] = include_bytes!("../fixtures/customer.header.bin");
pub const SEALED_VALUE: &[u8] = include_bytes!("../fixtures/customer.value.json");

/// Profiles the `decrypt` target chooses from: none (decrypt everything the keys allow), a
/// partial view with ciphertext fallback, and a partial view with a mask.
pub const PROFILES: [Option<&str>; 3] = [None, Some("visa-only"), Some("support")];

pub fn build_codec(profile: Option<&str>) -> Codec {
    let policy = Policy::from_json(POLICY_JSON).expect("demo policy loads");
    let kms = LocalKms::from_json(KEYS_JSON).expect("local-dev key file loads");
    let mut builder = Codec::builder(policy).kms(kms);
    if let Some(p) = profile {
        builder = builder.profile(p);
    }
    builder.build().expect("codec builds")
}

/// One codec per entry of [`PROFILES`], built on first use.
pub fn codecs() -> &'static [Codec; 3] {
    static CODECS: OnceLock<[Codec; 3]> = OnceLock::new();
    CODECS.get_or_init(|| PROFILES.map(build_codec))
}

/// `decrypt` input: `[profile, len_lo, len_hi, header.., value..]`; the header length is the
/// little-endian u16 modulo (remaining length + 1). Returns `(profile index, header, value)`.
pub fn split_decrypt_input(data: &[u8]) -> Option<(usize, &[u8], &[u8])> {
    let (&[profile, lo, hi], rest) = data.split_first_chunk::<3>()?;
    let len = usize::from(u16::from_le_bytes([lo, hi])) % (rest.len() + 1);
    let (header, value) = rest.split_at(len);
    Some((usize::from(profile) % PROFILES.len(), header, value))
}

/// The inverse of [`split_decrypt_input`] (for seeds).
pub fn join_decrypt_input(profile: u8, header: &[u8], value: &[u8]) -> Vec<u8> {
    let len = u16::try_from(header.len()).expect("seed header fits a u16");
    let mut out = vec![profile];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(value);
    out
}

/// Edit operations of `decrypt_mutate`, 4 input bytes each: `[op, pos_lo, pos_hi, byte]`. Even
/// ops edit the header, odd ops the value; positions wrap modulo the current length.
pub fn apply_ops(data: &[u8], header: &mut Vec<u8>, value: &mut Vec<u8>) {
    for op in data.chunks_exact(4) {
        let target = if op[0] & 1 == 0 { &mut *header } else { &mut *value };
        let pos = usize::from(u16::from_le_bytes([op[1], op[2]]));
        let byte = op[3];
        match (op[0] >> 1) % 4 {
            0 => {
                // XOR one byte (a zero mask is a no-op, like an empty mask).
                if !target.is_empty() {
                    let i = pos % target.len();
                    target[i] ^= byte;
                }
            }
            1 => {
                let i = pos % (target.len() + 1);
                target.truncate(i);
            }
            2 => {
                let i = pos % (target.len() + 1);
                target.insert(i, byte);
            }
            _ => {
                if !target.is_empty() {
                    let i = pos % target.len();
                    target.remove(i);
                }
            }
        }
    }
}

/// Encodes one `decrypt_mutate` operation (for seeds).
pub fn op(kind: u8, on_value: bool, pos: u16, byte: u8) -> [u8; 4] {
    let [lo, hi] = pos.to_le_bytes();
    [(kind << 1) | u8::from(on_value), lo, hi, byte]
}
pub const OP_XOR: u8 = 0;
pub const OP_TRUNCATE: u8 = 1;
pub const OP_INSERT: u8 = 2;
pub const OP_REMOVE: u8 = 3;

/// The values decrypt replaced: every location (RFC 6901 JSON pointer) where `before` held a
/// string and `after` holds something else. Decrypt only ever replaces strings (ciphertext) —
/// every other difference is reported as an error. Numbers are not compared: serde_json's
/// default float parsing does not promise that a re-serialized float parses back bit-exact.
pub fn replaced_values(before: &Value, after: &Value) -> Result<Vec<(String, Value)>, String> {
    let mut out = Vec::new();
    walk(before, after, &mut String::new(), &mut out)?;
    Ok(out)
}

fn walk(before: &Value, after: &Value, at: &mut String, out: &mut Vec<(String, Value)>) -> Result<(), String> {
    match (before, after) {
        (Value::String(b), Value::String(a)) if a == b => Ok(()),
        (Value::String(_), a) => {
            out.push((at.clone(), a.clone()));
            Ok(())
        }
        (Value::Object(b), Value::Object(a)) => {
            if b.len() != a.len() || b.keys().any(|k| !a.contains_key(k)) {
                return Err(format!("decrypt changed the members of the object at {at:?}"));
            }
            for (k, bv) in b {
                let mark = at.len();
                at.push('/');
                at.push_str(&k.replace('~', "~0").replace('/', "~1"));
                walk(bv, &a[k], at, out)?;
                at.truncate(mark);
            }
            Ok(())
        }
        (Value::Array(b), Value::Array(a)) => {
            if b.len() != a.len() {
                return Err(format!("decrypt changed the length of the array at {at:?}"));
            }
            for (i, (bv, av)) in b.iter().zip(a).enumerate() {
                let mark = at.len();
                at.push('/');
                at.push_str(&i.to_string());
                walk(bv, av, at, out)?;
                at.truncate(mark);
            }
            Ok(())
        }
        (Value::Number(_), Value::Number(_)) => Ok(()),
        (b, a) if b == a => Ok(()),
        (b, a) => Err(format!("decrypt changed a non-string value at {at:?}: {b} -> {a}")),
    }
}

/// What `decrypt_mutate` checks against: a codec without profile, and the plaintext of each
/// encrypted location of the sealed record.
pub struct Fixture {
    pub codec: Codec,
    pub plaintext_at: BTreeMap<String, Value>,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let codec = build_codec(None);
        let stale = "fixtures/ no longer decrypt: regenerate them with \
                     `cargo run --example gen_corpus -- --new-fixture` in core/fuzz";
        let rec = codec
            .decrypt(TOPIC, None, Some(SEALED_VALUE), &[(HEADER_NAME, SEALED_HEADER)])
            .unwrap_or_else(|e| panic!("{stale}: {e}"));
        assert_eq!(rec.value.as_deref(), Some(PLAINTEXT), "{stale}");
        assert!(rec.headers.is_empty(), "{stale}");
        let sealed: Value = serde_json::from_slice(SEALED_VALUE).expect("sealed value is JSON");
        let plain: Value = serde_json::from_slice(PLAINTEXT).expect("plaintext is JSON");
        let plaintext_at: BTreeMap<String, Value> =
            replaced_values(&sealed, &plain).expect("decrypt replaced only ciphertext").into_iter().collect();
        assert_eq!(plaintext_at.keys().collect::<Vec<_>>(), ["/password", "/visa"], "{stale}");
        Fixture { codec, plaintext_at }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decrypt(header: &[u8], value: &[u8]) -> fieldcrypt::Result<fieldcrypt::Record> {
        fixture().codec.decrypt(TOPIC, None, Some(value), &[(HEADER_NAME, header)])
    }

    #[test]
    fn input_encodings() {
        let joined = join_decrypt_input(2, b"hdr", b"value");
        assert_eq!(split_decrypt_input(&joined), Some((2, &b"hdr"[..], &b"value"[..])));
        assert_eq!(split_decrypt_input(&[1, 2]), None);
        let (mut h, mut v) = (b"abc".to_vec(), b"xyz".to_vec());
        let ops = [op(OP_XOR, false, 4, 0x20), op(OP_INSERT, true, 3, b'!'), op(OP_REMOVE, true, 0, 0)];
        apply_ops(&ops.concat(), &mut h, &mut v);
        assert_eq!((h.as_slice(), v.as_slice()), (&b"aBc"[..], &b"yz!"[..]));
        apply_ops(&op(OP_TRUNCATE, false, 1, 0), &mut h, &mut v);
        assert_eq!(h, b"a");
    }

    #[test]
    fn replaced_values_reports_only_replaced_strings() {
        let before = serde_json::json!({"a": "CT", "b": [1.5, "x", null], "c": {"d": "CT2"}});
        let after = serde_json::json!({"a": {"n": 1}, "b": [1.5, "x", null], "c": {"d": "p"}});
        let got = replaced_values(&before, &after).unwrap();
        assert_eq!(got, [("/a".to_string(), serde_json::json!({"n": 1})), ("/c/d".to_string(), "p".into())]);
        assert!(replaced_values(&before, &serde_json::json!({"a": "CT"})).is_err());
        assert!(replaced_values(&serde_json::json!([true]), &serde_json::json!([false])).is_err());
    }

    /// Why `decrypt_mutate` checks replaced fields, not the whole value: these modified records
    /// decrypt successfully to something other than the original plaintext, by design.
    #[test]
    fn modified_records_that_still_decrypt() {
        assert_eq!(fixture().plaintext_at.len(), 2);
        // A field outside the policy is not authenticated.
        let mut value = SEALED_VALUE.to_vec();
        let at = value.windows(3).position(|w| w == b"Ada").unwrap();
        value[at + 2] = b'b';
        let out = decrypt(SEALED_HEADER, &value).unwrap().value.unwrap();
        assert_ne!(out, PLAINTEXT);
        assert_eq!(out, String::from_utf8_lossy(PLAINTEXT).replace("Ada", "Adb").into_bytes());
        // A header naming a KEK this consumer does not hold: nothing decrypted, header kept.
        let mut header = SEALED_HEADER.to_vec();
        let at = header.windows(8).position(|w| w == b"demo-kek").unwrap();
        header[at + 7] = b'x';
        let rec = decrypt(&header, SEALED_VALUE).unwrap();
        assert_eq!(rec.value.as_deref(), Some(SEALED_VALUE));
        assert_eq!(rec.fieldcrypt_header(), Some(header.as_slice()));
        // An encrypted field under another member name is detected: the header's path no
        // longer selects anything, so the record was altered.
        let mut value = SEALED_VALUE.to_vec();
        let at = value.windows(6).position(|w| w == b"\"visa\"").unwrap();
        value[at + 1] = b'V';
        assert_eq!(decrypt(SEALED_HEADER, &value).unwrap_err().kind(), fieldcrypt::ErrorKind::Crypto);
        // Any change to the header's authenticated bytes or a ciphertext fails.
        let mut header = SEALED_HEADER.to_vec();
        *header.last_mut().unwrap() ^= 1;
        assert_eq!(decrypt(&header, SEALED_VALUE).unwrap_err().kind(), fieldcrypt::ErrorKind::Crypto);
    }
}
