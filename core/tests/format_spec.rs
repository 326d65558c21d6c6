//! docs/FORMAT.md is the contract: this test decodes a record by hand from the spec's text alone,
//! with its own header parser and the raw AES-GCM primitive — no fieldcrypt decoding code — and
//! checks it recovers the plaintext. If the code and the spec drift apart, this fails.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine;
use fieldcrypt::{Codec, LocalKms, OwnedHeader, Policy};

const KEK: [u8; 32] = [0x42; 32];

fn varint(b: &[u8], pos: &mut usize) -> u64 {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let byte = b[*pos];
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

fn take<'a>(b: &'a [u8], pos: &mut usize, n: usize) -> &'a [u8] {
    let s = &b[*pos..*pos + n];
    *pos += n;
    s
}

fn string<'a>(b: &'a [u8], pos: &mut usize) -> &'a str {
    let n = varint(b, pos) as usize;
    std::str::from_utf8(take(b, pos, n)).unwrap()
}

#[test]
fn a_record_decodes_by_hand_from_the_spec() {
    let policy = Policy::from_json(
        r#"{"fieldcrypt_policy":1,"id":"spec","revision":3,
            "encrypt":[{"name":"r","topics":["t"],"fields":["password","orders[*].n"],"key":"local://spec-kek"}]}"#,
    )
    .unwrap();
    let codec = Codec::builder(policy).kms(LocalKms::new().with_key("spec-kek", 7, KEK, true)).build().unwrap();
    let plain = br#"{"user":"ada","password":"hunter2","orders":[{"n":12.5},{"n":null},{"n":[1,"x"]}]}"#;
    let sealed = codec.encrypt("t", None, Some(plain), &[] as &[OwnedHeader]).unwrap();
    let header = sealed.fieldcrypt_header().expect("header named `fieldcrypt`");

    // §2: the header.
    let mut p = 0;
    assert_eq!(take(header, &mut p, 1), [1], "version");
    assert_eq!(take(header, &mut p, 1), [0], "flags");
    let record_nonce: [u8; 12] = take(header, &mut p, 12).try_into().unwrap();
    assert_eq!(string(header, &mut p), "spec");
    assert_eq!(varint(header, &mut p), 3);
    assert_eq!(varint(header, &mut p), 1, "one key entry");
    assert_eq!(take(header, &mut p, 1), [1], "AES-256-GCM");
    let dek_id: [u8; 16] = take(header, &mut p, 16).try_into().unwrap();
    let kek_uri = string(header, &mut p).to_string();
    assert_eq!(kek_uri, "local://spec-kek");
    assert_eq!(string(header, &mut p), "7", "KEK version");
    assert_eq!(take(header, &mut p, 1), [0], "wrapped DEK inline");
    let wlen = varint(header, &mut p) as usize;
    let wrapped = take(header, &mut p, wlen).to_vec();
    assert_eq!(wrapped.len(), 60, "§5.1: a 32-byte DEK wraps to 60 bytes");
    assert_eq!(varint(header, &mut p), 2, "two paths matched");
    assert_eq!(take(header, &mut p, 1), [0], "part = value");
    assert_eq!(string(header, &mut p), "password");
    assert_eq!(take(header, &mut p, 1), [0]);
    assert_eq!(string(header, &mut p), "orders[*].n");
    let body = &header[..p];
    let tag: [u8; 16] = take(header, &mut p, 16).try_into().unwrap();
    assert_eq!(p, header.len(), "nothing after the tags");

    // §5.1: unwrap the DEK with the local KMS's associated data.
    let mut aad = b"fieldcrypt local-kms v1".to_vec();
    aad.push(0);
    aad.extend_from_slice(kek_uri.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&7u32.to_be_bytes());
    aad.push(1);
    aad.extend_from_slice(&dek_id);
    let (nonce, rest) = wrapped.split_at(12);
    let (ct, wtag) = rest.split_at(rest.len() - 16);
    let mut dek = ct.to_vec();
    Aes256Gcm::new_from_slice(&KEK)
        .unwrap()
        .decrypt_in_place_detached(Nonce::from_slice(nonce), &aad, &mut dek, Tag::from_slice(wtag))
        .expect("DEK unwraps as §5.1 says");
    let cipher = Aes256Gcm::new_from_slice(&dek).unwrap();

    // §2.1: the header tag is GCM over the empty plaintext with the record nonce and the body.
    let computed = cipher.encrypt_in_place_detached(Nonce::from_slice(&record_nonce), body, &mut []).unwrap();
    assert_eq!(computed.as_slice(), tag);

    // §3 + §4: each field is Base64(nonce ‖ C ‖ T) with aad = 0x01 ‖ tag ‖ part ‖ location.
    let open = |field: &serde_json::Value, location: &str| -> Vec<u8> {
        let sealed = base64::engine::general_purpose::STANDARD.decode(field.as_str().unwrap()).unwrap();
        let (nonce, rest) = sealed.split_at(12);
        let (ct, t) = rest.split_at(rest.len() - 16);
        let mut aad = vec![1u8];
        aad.extend_from_slice(&tag);
        aad.push(0);
        aad.extend_from_slice(location.as_bytes());
        let mut pt = ct.to_vec();
        cipher.decrypt_in_place_detached(Nonce::from_slice(nonce), &aad, &mut pt, Tag::from_slice(t)).unwrap();
        pt
    };
    let value: serde_json::Value = serde_json::from_slice(sealed.value.as_ref().unwrap()).unwrap();
    assert_eq!(value["user"], "ada", "other fields untouched");
    assert_eq!(open(&value["password"], "password"), b"\x00hunter2", "type 0x00 = string");
    assert_eq!(open(&value["orders"][0]["n"], "orders[0].n"), b"\x0112.5", "type 0x01 = JSON text");
    assert!(value["orders"][1]["n"].is_null(), "null is never encrypted");
    assert_eq!(open(&value["orders"][2]["n"], "orders[2].n"), b"\x01[1,\"x\"]");
}
