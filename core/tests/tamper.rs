//! Tampering: every bit of every field ciphertext, every bit of every byte of the fieldcrypt
//! header, and truncations of both.
//!
//! # What a flipped header byte gives (the 152-byte header of `schemas/policies/demo.json`,
//! topic `customers`, fields `password` and `visa`; offsets for that header)
//!
//! | offsets   | content (FORMAT.md §2)              | single-bit flips give                                   |
//! |-----------|-------------------------------------|---------------------------------------------------------|
//! | 0         | version                             | `UnsupportedVersion` (all 8 bits)                       |
//! | 1         | flags                               | `Format` (no flag is defined)                           |
//! | 2..14     | record nonce                        | `Crypto`                                                |
//! | 14        | policy id length                    | `Format`                                                |
//! | 15..19    | policy id text `demo`               | `Crypto`; bit 7 → `Format` (text no longer UTF-8)       |
//! | 19        | policy revision (varint, value 1)   | `Crypto`; bit 7 → `Format` (becomes a continuation)     |
//! | 20        | key count                           | `Format`                                                |
//! | 21        | algorithm code                      | `Format` (1 → 0, 3, 5, 9, … are not algorithms)         |
//! | 22..38    | DEK id                              | `Crypto`                                                |
//! | 38        | KEK URI length                      | `Format`                                                |
//! | 39..47    | KEK URI `local://`                  | `Format` (unknown scheme / no `://` / not UTF-8)        |
//! | 47..55    | KEK URI name `demo-kek`             | **decrypt succeeds, nothing decrypted** (see below); `Format` when the flip makes a control character or invalid UTF-8 |
//! | 55        | KEK version length                  | `Format`                                                |
//! | 56        | KEK version `1`                     | **decrypt succeeds, nothing decrypted**; bit 7 → `Format` |
//! | 57        | DEK location                        | `Format`                                                |
//! | 58        | wrapped DEK length                  | `Format`                                                |
//! | 59..119   | wrapped DEK                         | `Crypto`                                                |
//! | 119       | field count                         | `Format`                                                |
//! | 120, 130  | record part                         | `Crypto` for bit 0 (value → key); `Format` otherwise    |
//! | 121, 131  | path lengths                        | `Format`                                                |
//! | 122..130, 132..136 | paths `password`, `visa`   | `Crypto`; bit 7 → `Format` (not UTF-8)                  |
//! | 136..152  | header authenticator                | `Crypto`                                                |
//!
//! So `UnsupportedVersion` comes only from offset 0, and `Format` only from structural bytes
//! (lengths, counts, codes, flags, the varint's continuation bit) and from flips that make a
//! text invalid UTF-8 or the KEK URI unparsable. Every byte of authenticated content gives
//! `Crypto` — except the KEK reference (URI name, version) of a single-entry header: a reader
//! cannot check the authenticator without the key the header points to, so a header naming a
//! KEK the reader's KMS does not hold is treated like a record this reader has no access to
//! (`Ok`, every field left as ciphertext, the header kept). See
//! `kek_reference_flips_leave_everything_encrypted` and, for the multi-key case where this is
//! caught, `kek_reference_flips_are_caught_by_another_entry`.

mod common;

use std::collections::BTreeMap;
use std::ops::Range;

use common::*;
use fieldcrypt::header::{self, Envelope};
use fieldcrypt::{Codec, ErrorKind, KekUri, Record};
use serde_json::{json, Value};

// ---- field ciphertext ----------------------------------------------------------------------------

const MASKS: [u8; 8] = [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80];

fn several_fields() -> Value {
    json!({
        "password": "correct horse battery staple",
        "orders": [{"visa": "4111 1111 1111 1111"}, {"visa": "4012 8888 8888 1881"}],
        "n": 12345,
        "obj": {"a": [true, null]},
        "name": "Ada"
    })
}

const SEVERAL: &[&str] = &["/password", "/orders/0/visa", "/orders/1/visa", "/n", "/obj"];

#[test]
fn every_bit_of_every_field_ciphertext_is_authenticated() {
    let producer = test_codec();
    let consumer = test_codec();
    let sealed = encrypt_value(&producer, "rt", &several_fields());
    let doc = value_json(&sealed);
    assert_eq!(value_json(&decrypt(&consumer, "rt", &sealed).unwrap()), several_fields());
    let mut checked = 0;
    for pointer in SEVERAL {
        let ct = field_ciphertext(&doc, pointer);
        for i in 0..ct.len() {
            for mask in MASKS {
                let mut bad = ct.clone();
                bad[i] ^= mask;
                let mut tampered = doc.clone();
                set_at(&mut tampered, pointer, Value::String(b64_encode(&bad)));
                let kind = decrypt_err(&consumer, "rt", &with_value(&sealed, &tampered));
                assert_eq!(kind, ErrorKind::Crypto, "{pointer} byte {i} mask {mask:#04x}");
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "{checked}");
    // The good record still decrypts afterwards (no state was poisoned).
    assert_eq!(value_json(&decrypt(&consumer, "rt", &sealed).unwrap()), several_fields());
}

#[test]
fn every_bit_of_a_deterministic_field_ciphertext_is_authenticated() {
    let codec = test_codec();
    let plain = json!({"email": "ada@example.com", "alt_email": {"x": 1}, "password": "pw-pw-pw"});
    let sealed = encrypt_value(&codec, "det", &plain);
    let doc = value_json(&sealed);
    for pointer in ["/email", "/alt_email", "/password"] {
        let ct = field_ciphertext(&doc, pointer);
        for i in 0..ct.len() {
            for mask in MASKS {
                let mut bad = ct.clone();
                bad[i] ^= mask;
                let mut tampered = doc.clone();
                set_at(&mut tampered, pointer, Value::String(b64_encode(&bad)));
                assert_eq!(decrypt_err(&codec, "det", &with_value(&sealed, &tampered)), ErrorKind::Crypto);
            }
        }
    }
}

#[test]
fn truncated_or_extended_field_ciphertext_is_a_crypto_error() {
    let codec = test_codec();
    let sealed = encrypt_value(&codec, "rt", &several_fields());
    let det = encrypt_value(&codec, "det", &json!({"email": "ada@example.com"}));
    for (record, topic, pointer) in [(&sealed, "rt", "/password"), (&sealed, "rt", "/n"), (&det, "det", "/email")] {
        let doc = value_json(record);
        let ct = field_ciphertext(&doc, pointer);
        let mut variants: Vec<String> = (0..ct.len()).map(|n| b64_encode(&ct[..n])).collect();
        variants.push(b64_encode(&[&ct[..], &[0]].concat())); // one byte too many
        variants.push(b64_encode(&ct[1..])); // first byte dropped
        let text = doc.pointer(pointer).unwrap().as_str().unwrap().to_string();
        if text.ends_with('=') {
            variants.push(text.trim_end_matches('=').to_string()); // padding removed: not Base64
        }
        variants.push(format!("{text}!")); // not Base64
        variants.push(text[..text.len() - 1].to_string());
        for v in variants {
            let mut tampered = doc.clone();
            set_at(&mut tampered, pointer, Value::String(v.clone()));
            assert_eq!(
                decrypt_err(&codec, topic, &with_value(record, &tampered)),
                ErrorKind::Crypto,
                "{pointer} = {v:?}"
            );
        }
    }
}

// ---- header ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Region {
    Version,
    Flags,
    RecordNonce,
    PolicyIdLen,
    PolicyId,
    Revision,
    KeyCount,
    Algorithm,
    DekId,
    KekLen,
    Kek,
    KekVersionLen,
    KekVersion,
    Location,
    WrappedLen,
    Wrapped,
    FieldCount,
    Part,
    PathLen,
    Path,
    Tag,
}

/// What decrypting a record with a tampered header gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Crypto,
    Format,
    UnsupportedVersion,
    /// `Ok`, with every field left as it was (ciphertext) and the header kept.
    NothingDecrypted,
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

struct Layout {
    regions: Vec<(Range<usize>, Region)>,
    at: usize,
}

impl Layout {
    fn take(&mut self, len: usize, region: Region) {
        self.regions.push((self.at..self.at + len, region));
        self.at += len;
    }
    /// Everything up to `offset` (the bytes of a length prefix).
    fn upto(&mut self, offset: usize, region: Region) {
        self.take(offset - self.at, region);
    }
}

/// Maps every byte of a header to its region, using the parser's borrowed slices; asserts the
/// regions tile the header exactly (so the map is the whole truth about the layout).
fn regions(h: &[u8], env: &Envelope<'_>) -> Vec<(Range<usize>, Region)> {
    let mut l = Layout { regions: Vec::new(), at: 0 };
    l.take(1, Region::Version);
    l.take(1, Region::Flags);
    l.take(12, Region::RecordNonce);
    l.upto(offset_in(h, env.policy_id.as_bytes()), Region::PolicyIdLen);
    l.take(env.policy_id.len(), Region::PolicyId);
    l.take(varint_len(env.policy_revision), Region::Revision);
    l.take(varint_len(env.keys.len() as u64), Region::KeyCount);
    for (i, k) in env.keys.iter().enumerate() {
        l.take(1, Region::Algorithm);
        assert_eq!(h[l.at..l.at + 16], k.dek_id);
        l.take(16, Region::DekId);
        l.upto(offset_in(h, k.kek.as_bytes()), Region::KekLen);
        l.take(k.kek.len(), Region::Kek);
        l.upto(offset_in(h, k.kek_version.as_bytes()), Region::KekVersionLen);
        l.take(k.kek_version.len(), Region::KekVersion);
        l.take(1, Region::Location);
        let w = wrapped_dek(env, i);
        l.upto(offset_in(h, w), Region::WrappedLen);
        l.take(w.len(), Region::Wrapped);
        l.take(varint_len(k.fields.len() as u64), Region::FieldCount);
        for (_, path) in &k.fields {
            l.take(1, Region::Part);
            l.upto(offset_in(h, path.as_bytes()), Region::PathLen);
            l.take(path.len(), Region::Path);
        }
    }
    assert_eq!(l.at, env.body.len(), "body fully mapped");
    l.take(16 * env.keys.len(), Region::Tag);
    assert_eq!(l.at, h.len(), "header fully mapped");
    l.regions
}

fn region_at(map: &[(Range<usize>, Region)], i: usize) -> (Range<usize>, Region) {
    map.iter().find(|(r, _)| r.contains(&i)).cloned().expect("every byte is mapped")
}

/// The outcome a single-bit flip at `i` must have (see the table at the top of this file).
fn expected(h: &[u8], map: &[(Range<usize>, Region)], i: usize, mask: u8) -> Outcome {
    let (range, region) = region_at(map, i);
    let mut flipped = h[range.clone()].to_vec();
    flipped[i - range.start] ^= mask;
    let text = std::str::from_utf8(&flipped).ok();
    match region {
        Region::Version => Outcome::UnsupportedVersion,
        Region::RecordNonce | Region::DekId | Region::Wrapped | Region::Tag => Outcome::Crypto,
        Region::PolicyId | Region::Path => text.map_or(Outcome::Format, |_| Outcome::Crypto),
        // A single-byte varint stays a valid, different varint unless the continuation bit is set.
        Region::Revision if range.len() == 1 => {
            if flipped[0] & 0x80 == 0 {
                Outcome::Crypto
            } else {
                Outcome::Format
            }
        }
        Region::Part if flipped[0] <= 1 => Outcome::Crypto,
        // The reader cannot authenticate a header without the key it names (see the file docs).
        Region::Kek => match text.map(KekUri::parse) {
            Some(Ok(_)) => Outcome::NothingDecrypted,
            _ => Outcome::Format,
        },
        Region::KekVersion => text.map_or(Outcome::Format, |_| Outcome::NothingDecrypted),
        _ => Outcome::Format,
    }
}

fn outcome(consumer: &Codec, topic: &str, tampered: &Record) -> Outcome {
    match decrypt(consumer, topic, tampered) {
        Err(e) => match e.kind() {
            ErrorKind::Crypto => Outcome::Crypto,
            ErrorKind::Format => Outcome::Format,
            ErrorKind::UnsupportedVersion => Outcome::UnsupportedVersion,
            other => panic!("unexpected error kind {other:?}: {e}"),
        },
        Ok(out) => {
            assert_eq!(out.value, tampered.value, "a tampered header must never yield plaintext");
            assert_eq!(out.key, tampered.key);
            assert_eq!(out.headers, tampered.headers, "the header stays: ciphertext is left");
            Outcome::NothingDecrypted
        }
    }
}

/// Flips every bit of every header byte of `sealed`; checks each outcome against [`expected`]
/// and the parser, and returns the outcome counts per region.
fn flip_every_header_bit(
    consumer: &Codec,
    topic: &str,
    sealed: &Record,
    cold: bool,
) -> BTreeMap<(Region, Outcome), usize> {
    let h = header_bytes(sealed).to_vec();
    let env = header::parse(&h).unwrap();
    let map = regions(&h, &env);
    let mut seen = BTreeMap::new();
    for i in 0..h.len() {
        for mask in MASKS {
            let mut bad = h.clone();
            bad[i] ^= mask;
            if cold {
                consumer.clear_key_cache();
            }
            let got = outcome(consumer, topic, &with_header(sealed, bad.clone()));
            let want = expected(&h, &map, i, mask);
            assert_eq!(got, want, "header byte {i} ({:?}) mask {mask:#04x}", region_at(&map, i).1);
            // The codec's kind agrees with the parser's wherever the parser already rejects.
            if let Err(e) = header::parse(&bad) {
                let parsed = if e.kind() == ErrorKind::Format { Outcome::Format } else { Outcome::UnsupportedVersion };
                assert_eq!(got, parsed, "byte {i} mask {mask:#04x}");
            }
            *seen.entry((region_at(&map, i).1, got)).or_insert(0) += 1;
        }
    }
    seen
}

fn demo_record() -> (Codec, Record) {
    let producer = demo_codec();
    let sealed = encrypt_value(&producer, "customers", &customers()[0]);
    assert_eq!(header_bytes(&sealed).len(), 152);
    (producer, sealed)
}

#[test]
fn every_bit_of_the_header_cold_consumer() {
    let (_, sealed) = demo_record();
    let consumer = demo_codec();
    let seen = flip_every_header_bit(&consumer, "customers", &sealed, true);
    for ((region, outcome), n) in &seen {
        println!("{region:?}: {outcome:?} x{n}");
    }
    // The fixed layout of the table above.
    let h = header_bytes(&sealed);
    let env = header::parse(h).unwrap();
    let layout: Vec<(Range<usize>, Region)> = regions(h, &env);
    let starts: Vec<(usize, Region)> = layout.iter().map(|(r, g)| (r.start, *g)).collect();
    use Region::*;
    assert_eq!(
        starts,
        [
            (0, Version),
            (1, Flags),
            (2, RecordNonce),
            (14, PolicyIdLen),
            (15, PolicyId),
            (19, Revision),
            (20, KeyCount),
            (21, Algorithm),
            (22, DekId),
            (38, KekLen),
            (39, Kek),
            (55, KekVersionLen),
            (56, KekVersion),
            (57, Location),
            (58, WrappedLen),
            (59, Wrapped),
            (119, FieldCount),
            (120, Part),
            (121, PathLen),
            (122, Path),
            (130, Part),
            (131, PathLen),
            (132, Path),
            (136, Tag),
        ]
    );
    // Every region of authenticated content produced Crypto for at least its ASCII-safe flips.
    for region in [RecordNonce, PolicyId, Revision, DekId, Wrapped, Part, Path, Tag] {
        assert!(seen.contains_key(&(region, Outcome::Crypto)), "{region:?}");
    }
    assert_eq!(seen[&(Version, Outcome::UnsupportedVersion)], 8);
    assert_eq!(seen.keys().filter(|(_, o)| *o == Outcome::UnsupportedVersion).count(), 1, "only the version byte");
}

#[test]
fn every_bit_of_the_header_warm_consumer() {
    let (_, sealed) = demo_record();
    let consumer = demo_codec();
    decrypt(&consumer, "customers", &sealed).unwrap(); // the DEK is now cached
    flip_every_header_bit(&consumer, "customers", &sealed, false);
    // Still usable, and the cached DEK is the right one.
    assert_eq!(value_json(&decrypt(&consumer, "customers", &sealed).unwrap()), customers()[0]);
}

#[test]
fn a_cached_dek_does_not_skip_header_authentication() {
    // With the DEK cached under its id, a tampered wrapped DEK is never sent to the KMS; the
    // header authenticator (which covers the wrapped DEK) is what rejects it.
    let (_, sealed) = demo_record();
    let consumer = demo_codec();
    decrypt(&consumer, "customers", &sealed).unwrap();
    assert_eq!(consumer.stats().kms_unwrap_calls, 1);
    let h = header_bytes(&sealed).to_vec();
    let env = header::parse(&h).unwrap();
    let w = offset_in(&h, wrapped_dek(&env, 0));
    for i in w..w + 60 {
        let mut bad = h.clone();
        bad[i] ^= 0x55;
        assert_eq!(decrypt_err(&consumer, "customers", &with_header(&sealed, bad)), ErrorKind::Crypto);
    }
    assert_eq!(consumer.stats().kms_unwrap_calls, 1, "served from the cache");
}

#[test]
fn every_bit_of_a_two_entry_header() {
    // Two entries (demo-kek/GCM and demo-kek/SIV), a reader with every key.
    let codec = test_codec();
    let sealed = encrypt_value(&codec, "det", &json!({"email": "a@b.c", "alt_email": "x@y.z", "password": "pw-pw"}));
    assert_eq!(envelope(&sealed).keys.len(), 2);
    let h = header_bytes(&sealed).to_vec();
    let env = header::parse(&h).unwrap();
    let map = regions(&h, &env);
    for i in 0..h.len() {
        for mask in MASKS {
            let mut bad = h.clone();
            bad[i] ^= mask;
            codec.clear_key_cache();
            let got = outcome(&codec, "det", &with_header(&sealed, bad));
            let (_, region) = region_at(&map, i);
            let want = expected(&h, &map, i, mask);
            if matches!(region, Region::Kek | Region::KekVersion) {
                // The other entry's authenticator covers the whole body, KEK references included:
                // what a one-entry header lets through is caught here. (An unparsable URI is a
                // format error if its entry is read first, else the first entry's tag fails.)
                assert!(
                    got == Outcome::Crypto || (got == Outcome::Format && want == Outcome::Format),
                    "byte {i} ({region:?}) mask {mask:#04x}: {got:?}"
                );
            } else {
                assert_eq!(got, want, "byte {i} ({region:?}) mask {mask:#04x}");
            }
        }
    }
}

#[test]
fn kek_reference_flips_leave_everything_encrypted() {
    // The documented exception, spelled out: flip the KEK name and the KEK version of a
    // single-entry header. Decrypt returns Ok, decrypts nothing, keeps ciphertext and header —
    // as for a consumer without access. With a profile whose fallback is a mask, the record is
    // indistinguishable from a legitimately masked one.
    let (_, sealed) = demo_record();
    let h = header_bytes(&sealed).to_vec();
    let env = header::parse(&h).unwrap();
    let name_at = offset_in(&h, env.keys[0].kek.as_bytes()) + "local://".len();
    let version_at = offset_in(&h, env.keys[0].kek_version.as_bytes());
    for (i, mask) in [(name_at, 0x01), (name_at + 3, 0x20), (version_at, 0x01), (version_at, 0x08)] {
        let mut bad = h.clone();
        bad[i] ^= mask;
        let tampered = with_header(&sealed, bad);
        let consumer = demo_codec();
        let out = decrypt(&consumer, "customers", &tampered).unwrap();
        assert_eq!(out, tampered, "nothing decrypted, nothing dropped");
        assert_eq!(consumer.stats().fields_withheld, 2);
        assert_eq!(consumer.stats().fields_decrypted, 0);

        let support = demo_codec_with_profile("support");
        let masked = decrypt(&support, "customers", &tampered).unwrap();
        assert_eq!(value_json(&masked)["password"], "****");
        assert_eq!(value_json(&masked)["visa"], "****", "visa is allowed, but its KEK now looks unknown");
        assert!(masked.headers.is_empty());
    }
}

#[test]
fn kek_reference_flips_are_caught_by_another_entry() {
    // topic `multi`: password under demo-kek, visa under other-kek; a reader holding both.
    let codec = test_codec();
    let sealed = encrypt_value(&codec, "multi", &json!({"password": "pw-1234", "visa": "4111 1111 1111 1111"}));
    let h = header_bytes(&sealed).to_vec();
    let env = header::parse(&h).unwrap();
    assert_eq!(env.keys.len(), 2);
    for entry in 0..2 {
        let kek = offset_in(&h, env.keys[entry].kek.as_bytes());
        let version = offset_in(&h, env.keys[entry].kek_version.as_bytes());
        for i in (kek + "local://".len()..kek + env.keys[entry].kek.len()).chain([version]) {
            let mut bad = h.clone();
            bad[i] ^= 0x01;
            codec.clear_key_cache();
            assert_eq!(
                decrypt_err(&codec, "multi", &with_header(&sealed, bad)),
                ErrorKind::Crypto,
                "entry {entry} byte {i}"
            );
        }
    }
}

#[test]
fn header_truncations_and_extensions_are_format_errors() {
    let (_, sealed) = demo_record();
    let consumer = demo_codec();
    let h = header_bytes(&sealed).to_vec();
    for n in 0..h.len() {
        let kind = decrypt_err(&consumer, "customers", &with_header(&sealed, h[..n].to_vec()));
        assert_eq!(kind, ErrorKind::Format, "header truncated to {n} bytes");
    }
    for extra in [&[0u8][..], &[0xff], &h[..16]] {
        let kind = decrypt_err(&consumer, "customers", &with_header(&sealed, [&h[..], extra].concat()));
        assert_eq!(kind, ErrorKind::Format, "trailing bytes");
    }
    // The untouched header still works.
    assert!(decrypt(&consumer, "customers", &sealed).is_ok());
}
