//! Writes the seed corpora of the fuzz targets (corpus/<target>/seed-*) and, with
//! `--new-fixture`, a new sealed record for `decrypt_mutate` (fixtures/). Run in core/fuzz:
//!
//!     cargo run --example gen_corpus [-- --new-fixture]
//!
//! Records are sealed with fresh random nonces and DEKs, so every run writes different seeds
//! (all valid). After `--new-fixture`, run it once more so the `decrypt_mutate` seeds point into
//! the new fixture.

use std::fs;
use std::path::{Path, PathBuf};

use fieldcrypt::header::{self, DekLocation, KeyEntry};
use fieldcrypt::{Algorithm, Codec, LocalKms, OwnedHeader, Part, Policy};
use fieldcrypt_fuzz::{
    build_codec, join_decrypt_input, op, KEYS_JSON, OP_INSERT, OP_REMOVE, OP_TRUNCATE, OP_XOR, PLAINTEXT,
    SEALED_HEADER, SEALED_VALUE, TOPIC,
};

const CUSTOMERS: &str = include_str!("../../../schemas/records/customers.jsonl");

/// The demo KEK with AES-256-SIV, to seed the deterministic decrypt path (the demo policy has
/// only GCM rules; decrypt follows the header, so the demo codec opens these records too).
const SIV_POLICY: &str = r#"{"fieldcrypt_policy": 1, "id": "fuzz-siv", "revision": 3,
  "encrypt": [{"name": "siv", "topics": ["customers"], "fields": ["password", "visa"],
               "key": "local://demo-kek", "algorithm": "AES256_SIV"}]}"#;

fn seal(codec: &Codec, topic: &str, plain: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let rec = codec.encrypt(topic, None, Some(plain), &[] as &[OwnedHeader]).expect("seed record encrypts");
    let header = rec.fieldcrypt_header().expect("seed record has fields to encrypt").to_vec();
    (header, rec.value.expect("value"))
}

fn compact(line: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::from_str::<serde_json::Value>(line).expect("record is JSON")).unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let new_fixture = std::env::args().any(|a| a == "--new-fixture");
    let codec = build_codec(None);

    if new_fixture {
        let (header, value) = seal(&codec, TOPIC, PLAINTEXT);
        write(&root.join("fixtures"), "customer.header.bin", &header);
        write(&root.join("fixtures"), "customer.value.json", &value);
        println!("wrote a new fixture; run once more without --new-fixture to refresh the seeds");
        return;
    }
    let corpus = root.join("corpus");
    for t in ["header_parse", "decrypt", "decrypt_mutate"] {
        let dir = corpus.join(t);
        if dir.exists() {
            for e in fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.file_name().unwrap().to_string_lossy().starts_with("seed-") {
                    fs::remove_file(p).unwrap();
                }
            }
        }
    }

    // Sealed records: the fixture, the other customers, a SIV record, a payments record
    // (nested path `address.street`; decrypted as topic `customers`, which follows the header).
    let mut sealed: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![("fixture", SEALED_HEADER.to_vec(), SEALED_VALUE.to_vec())];
    for (i, line) in CUSTOMERS.lines().skip(1).enumerate() {
        let (h, v) = seal(&codec, TOPIC, &compact(line));
        sealed.push((["customer2", "customer3"][i.min(1)], h, v));
    }
    let siv = Codec::builder(Policy::from_json(SIV_POLICY).unwrap())
        .kms(LocalKms::from_json(KEYS_JSON).unwrap())
        .build()
        .unwrap();
    let (h, v) = seal(&siv, TOPIC, PLAINTEXT);
    sealed.push(("siv", h, v));
    let payment = br#"{"email":"ada@example.com","phone":"+44 20 7946 0958","address":{"street":"12 St James's Square","city":"London"},"amount":12.5}"#;
    let (h, v) = seal(&codec, "payments", payment);
    sealed.push(("payment", h, v));

    // Hand-built headers: two key entries (inline and key-store DEKs, key and value parts,
    // wildcard and quoted paths), and a KEK this consumer does not hold (fields withheld).
    let mut two_keys = Vec::new();
    let entries = [
        KeyEntry {
            algorithm: Algorithm::Aes256Gcm,
            dek_id: [0x11; 16],
            kek: "local://demo-kek",
            kek_version: "1",
            dek: DekLocation::Inline(&[0x5a; 60]),
            fields: vec![(Part::Value, "orders[*].visa"), (Part::Key, "id")],
        },
        KeyEntry {
            algorithm: Algorithm::Aes256Siv,
            dek_id: [0x22; 16],
            kek: "vault://127.0.0.1:8200/transit/keys/k",
            kek_version: "7",
            dek: DekLocation::KeyStore,
            fields: vec![(Part::Value, "prefs.*"), (Part::Value, "[\"home address\"].street")],
        },
    ];
    header::write_body(&mut two_keys, &[7; 12], "demo", 300, &entries);
    two_keys.extend_from_slice(&[0xee; 32]);
    let mut unknown_kek = Vec::new();
    let entry = KeyEntry {
        algorithm: Algorithm::Aes256Gcm,
        dek_id: [0x33; 16],
        kek: "local://not-here",
        kek_version: "1",
        dek: DekLocation::Inline(&[0xa5; 60]),
        fields: vec![(Part::Value, "password"), (Part::Value, "visa")],
    };
    header::write_body(&mut unknown_kek, &[9; 12], "demo", 1, &[entry]);
    unknown_kek.extend_from_slice(&[0xcc; 16]);

    let dir = corpus.join("header_parse");
    for (name, h, _) in &sealed {
        write(&dir, &format!("seed-{name}"), h);
    }
    write(&dir, "seed-two-keys", &two_keys);
    write(&dir, "seed-unknown-kek", &unknown_kek);

    let dir = corpus.join("decrypt");
    for (profile, (name, h, v)) in sealed.iter().enumerate() {
        write(&dir, &format!("seed-{name}"), &join_decrypt_input((profile % 3) as u8, h, v));
    }
    let orders = br#"{"orders":[{"visa":"AAAA"},{"visa":null}],"prefs":{"a":"AAAA"},"home address":{"street":"x"}}"#;
    write(&dir, "seed-two-keys", &join_decrypt_input(2, &two_keys, orders));
    write(&dir, "seed-unknown-kek", &join_decrypt_input(2, &unknown_kek, SEALED_VALUE));

    // decrypt_mutate: edits of the fixture that stop at different checks.
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle).unwrap() as u16;
    let dir = corpus.join("decrypt_mutate");
    let tag_start = (SEALED_HEADER.len() - 16) as u16;
    let kek_end = find(SEALED_HEADER, b"local://demo-kek") + 16; // the KEK version's length byte
    let seeds: Vec<(&str, Vec<[u8; 4]>)> = vec![
        ("unmodified", vec![]),
        ("header-tag", vec![op(OP_XOR, false, tag_start + 3, 0x01)]),
        ("header-kek", vec![op(OP_XOR, false, find(SEALED_HEADER, b"demo-kek") + 7, 0x1f)]),
        // KEK version "1" -> "01": the local KMS parses it as version 1 and unwraps the DEK; the
        // header authenticator must still reject it.
        ("header-kek-version", vec![op(OP_XOR, false, kek_end, 0x03), op(OP_INSERT, false, kek_end + 1, b'0')]),
        ("header-truncated", vec![op(OP_TRUNCATE, false, tag_start, 0)]),
        ("value-name", vec![op(OP_XOR, true, find(SEALED_VALUE, b"Ada") + 2, 0x03)]),
        ("value-member", vec![op(OP_XOR, true, find(SEALED_VALUE, b"\"visa\"") + 2, 0x01)]),
        ("value-ciphertext", vec![op(OP_XOR, true, find(SEALED_VALUE, b"\"password\":\"") + 20, 0x01)]),
        ("value-remove", vec![op(OP_REMOVE, true, find(SEALED_VALUE, b"\"visa\":\"") + 8, 0)]),
    ];
    for (name, ops) in seeds {
        write(&dir, &format!("seed-{name}"), &ops.concat());
    }
    println!("seed corpora written under {}", corpus.display());
}
