//! Shared helpers of the integration tests: fixtures, a test policy, codec builders, and
//! accessors for the ciphertext and the `fieldcrypt` header of a record.
#![allow(dead_code)] // every test binary compiles this module and uses a different subset

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine;
use fieldcrypt::header::{self, DekLocation, Envelope};
use fieldcrypt::{
    Codec, DekId, Error, ErrorKind, KekUri, Kms, Limits, LocalKms, OwnedHeader, Policy, Record, WrapContext,
    WrappedDek, TEXT_ENCODING,
};
use serde_json::Value;
use zeroize::Zeroizing;

/// No extra record headers.
pub const NO_HEADERS: &[OwnedHeader] = &[];

/// The KEK of `schemas/keys/local-dev.json` (base64 and its 32 bytes): secrets that must never
/// show up in an error message or a `Debug` rendering.
pub const DEV_KEK_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A second KEK (`local://other-kek`) that only some tests' key sets contain.
pub const OTHER_KEK_SECRET: &[u8] = b"other kek secret for tests";

/// A policy exercising every path form, both algorithms, both record parts and two KEKs.
/// Topics:
/// * `rt`: value fields of every kind under `demo-kek`, AES-256-GCM;
/// * `keyed`: the record key's `id` and the value's `password`;
/// * `det`: `email` and `alt_email` deterministic (AES-256-SIV), `password` randomized;
/// * `multi`: `password` under `demo-kek`, `visa` under `other-kek` (two header entries);
/// * `orphan`: a KEK no key set holds (`local://missing-kek`);
/// * `plain`: no rule applies.
pub const TEST_POLICY: &str = r#"{
  "fieldcrypt_policy": 1,
  "id": "integration-tests",
  "revision": 7,
  "encrypt": [
    {"name": "rt-values", "topics": ["rt"], "key": "local://demo-kek",
     "fields": ["password", "customer.ssn", "orders[*].visa", "prefs.*", "[\"first name\"]",
                "[\"odd.key\"].v", "n", "flag", "obj", "arr", "nothing.here", "maybe"]},
    {"name": "keyed-key", "topics": ["keyed"], "part": "key", "fields": ["id"], "key": "local://demo-kek"},
    {"name": "keyed-value", "topics": ["keyed"], "fields": ["password"], "key": "local://demo-kek"},
    {"name": "det-join", "topics": ["det"], "fields": ["email", "alt_email"], "key": "local://demo-kek",
     "algorithm": "AES256_SIV"},
    {"name": "det-secret", "topics": ["det"], "fields": ["password"], "key": "local://demo-kek"},
    {"name": "multi-a", "topics": ["multi"], "fields": ["password"], "key": "local://demo-kek"},
    {"name": "multi-b", "topics": ["multi"], "fields": ["visa"], "key": "local://other-kek"},
    {"name": "orphan", "topics": ["orphan"], "fields": ["password"], "key": "local://missing-kek"}
  ],
  "profiles": {
    "rt-password": {"decrypt": [{"topics": ["rt"], "fields": ["password"]}], "otherwise": "null"}
  }
}"#;

pub fn fixture(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("schemas").join(relative)
}

pub fn read_fixture(relative: &str) -> String {
    let path = fixture(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn demo_policy() -> Policy {
    Policy::from_file(fixture("policies/demo.json")).expect("demo policy loads")
}

pub fn test_policy() -> Policy {
    Policy::from_json(TEST_POLICY).expect("test policy loads")
}

/// `schemas/keys/local-dev.json` (`local://demo-kek`, version 1).
pub fn dev_kms() -> LocalKms {
    LocalKms::from_file(fixture("keys/local-dev.json")).expect("local key file loads")
}

/// The dev key set plus `local://other-kek`.
pub fn full_kms() -> LocalKms {
    dev_kms().with_secret("other-kek", OTHER_KEK_SECRET)
}

/// The KEK bytes of the key file, read from the file itself (not from [`DEV_KEK_B64`]).
pub fn dev_kek_b64_from_file() -> String {
    let file: Value = serde_json::from_str(&read_fixture("keys/local-dev.json")).unwrap();
    file["keys"]["demo-kek"]["versions"]["1"].as_str().unwrap().to_string()
}

pub fn demo_codec() -> Codec {
    Codec::builder(demo_policy()).kms(dev_kms()).build().unwrap()
}

pub fn demo_codec_with_profile(profile: &str) -> Codec {
    Codec::builder(demo_policy()).kms(dev_kms()).profile(profile).build().unwrap()
}

/// A codec of [`TEST_POLICY`] holding both test KEKs.
pub fn test_codec() -> Codec {
    Codec::builder(test_policy()).kms(full_kms()).build().unwrap()
}

pub fn test_codec_with_limits(limits: Limits) -> Codec {
    Codec::builder(test_policy()).kms(full_kms()).limits(limits).build().unwrap()
}

/// A codec sharing `kms` (so tests can rotate or remove KEKs behind its back).
pub fn codec_sharing(policy: Policy, kms: &Arc<LocalKms>, limits: Limits) -> Codec {
    Codec::builder(policy).kms_shared(kms.clone()).limits(limits).build().unwrap()
}

/// The customer records of `schemas/records/customers.jsonl`.
pub fn customers() -> Vec<Value> {
    read_fixture("records/customers.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("customers.jsonl holds JSON lines"))
        .collect()
}

pub fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

pub fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("record bytes are JSON")
}

/// Encrypts a JSON value on `topic` (no key, no headers).
pub fn encrypt_value(codec: &Codec, topic: &str, value: &Value) -> Record {
    codec.encrypt(topic, None, Some(&to_bytes(value)), NO_HEADERS).expect("encrypt succeeds")
}

/// Decrypts a record as `codec.encrypt` returned it (or as a test rewrote it).
pub fn decrypt(codec: &Codec, topic: &str, record: &Record) -> fieldcrypt::Result<Record> {
    codec.decrypt(topic, record.key.as_deref(), record.value.as_deref(), &record.headers)
}

/// The error kind of a decrypt that must fail.
pub fn decrypt_err(codec: &Codec, topic: &str, record: &Record) -> ErrorKind {
    match decrypt(codec, topic, record) {
        Ok(r) => panic!("decrypt should fail, but returned {r:?}"),
        Err(e) => e.kind(),
    }
}

pub fn value_json(record: &Record) -> Value {
    parse(record.value.as_deref().expect("record has a value"))
}

pub fn key_json(record: &Record) -> Value {
    parse(record.key.as_deref().expect("record has a key"))
}

/// A copy of `record` with its value replaced by `value`.
pub fn with_value(record: &Record, value: &Value) -> Record {
    Record { value: Some(to_bytes(value)), ..record.clone() }
}

/// A copy of `record` with the fieldcrypt header's bytes replaced.
pub fn with_header(record: &Record, header_bytes: Vec<u8>) -> Record {
    let mut out = record.clone();
    let h = out.headers.iter_mut().find(|h| h.name == fieldcrypt::HEADER_NAME).expect("record has a fieldcrypt header");
    h.value = Some(header_bytes);
    out
}

pub fn b64_decode(text: &str) -> Vec<u8> {
    TEXT_ENCODING.decode(text).expect("field holds Base64")
}

pub fn b64_encode(bytes: &[u8]) -> String {
    TEXT_ENCODING.encode(bytes)
}

/// The decoded ciphertext at JSON pointer `pointer` of an encrypted document.
pub fn field_ciphertext(doc: &Value, pointer: &str) -> Vec<u8> {
    let text = doc.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("{pointer} holds no string"));
    b64_decode(text)
}

/// Replaces the value at `pointer` (which must exist).
pub fn set_at(doc: &mut Value, pointer: &str, v: Value) {
    *doc.pointer_mut(pointer).unwrap_or_else(|| panic!("{pointer} is not in the document")) = v;
}

pub fn header_bytes(record: &Record) -> &[u8] {
    record.fieldcrypt_header().expect("record has a fieldcrypt header")
}

pub fn envelope(record: &Record) -> Envelope<'_> {
    header::parse(header_bytes(record)).expect("fieldcrypt header parses")
}

/// The DEK ids a record's header names, in entry order.
pub fn dek_ids(record: &Record) -> Vec<DekId> {
    envelope(record).keys.iter().map(|k| k.dek_id).collect()
}

/// `(part, path)` of every field a header lists, in order, over all entries.
pub fn header_paths(record: &Record) -> Vec<(fieldcrypt::Part, String)> {
    envelope(record).keys.iter().flat_map(|k| k.fields.iter().map(|(p, s)| (*p, s.to_string()))).collect()
}

/// The record nonce of a header: bytes 2..14 (FORMAT.md §2).
pub fn record_nonce(record: &Record) -> [u8; 12] {
    header_bytes(record)[2..14].try_into().unwrap()
}

pub fn wrapped_dek<'a>(env: &Envelope<'a>, entry: usize) -> &'a [u8] {
    match env.keys[entry].dek {
        DekLocation::Inline(w) => w,
        DekLocation::KeyStore => panic!("entry {entry} has no inline DEK"),
    }
}

/// Offset of `part` (a sub-slice of `base`, as the header parser returns them) inside `base`.
pub fn offset_in(base: &[u8], part: &[u8]) -> usize {
    let (b, p) = (base.as_ptr() as usize, part.as_ptr() as usize);
    assert!(p >= b && p + part.len() <= b + base.len(), "not a sub-slice");
    p - b
}

/// Offset of the first occurrence of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && find(haystack, needle).is_some()
}

/// The set of distinct DEK ids over many records.
pub fn distinct_dek_ids<'a>(records: impl IntoIterator<Item = &'a Record>) -> BTreeSet<DekId> {
    records.into_iter().flat_map(dek_ids).collect()
}

/// Every string position of an encrypted document at `pointers`, decoded.
pub fn ciphertexts_at(doc: &Value, pointers: &[&str]) -> Vec<Vec<u8>> {
    pointers.iter().map(|p| field_ciphertext(doc, p)).collect()
}

/// A customer-like record for the `customers` topic of the demo policy.
pub fn customer(i: usize) -> Value {
    serde_json::json!({
        "id": i,
        "name": format!("Customer {i}"),
        "email": format!("c{i}@example.com"),
        "password": format!("pw-{i}-Tr0ub4dor&3"),
        "visa": format!("4111 1111 1111 {i:04}"),
    })
}

// ---- a KMS that fails on demand ----

pub const UP: u8 = 0;
pub const UNREACHABLE: u8 = 1;
pub const DENIED: u8 = 2;

/// The dev-key local KMS behind a switch, failing the way a remote KMS does: up, unreachable
/// (a retryable `kms` error) or denying access; and optionally failing the next N wraps or
/// unwraps as unreachable. Counts every call.
#[derive(Debug)]
pub struct SwitchedKms {
    inner: LocalKms,
    state: AtomicU8,
    calls: AtomicUsize,
    fail_wraps: AtomicU32,
    fail_unwraps: AtomicU32,
}

impl SwitchedKms {
    pub fn new() -> Arc<SwitchedKms> {
        Arc::new(SwitchedKms {
            inner: dev_kms(),
            state: AtomicU8::new(UP),
            calls: AtomicUsize::new(0),
            fail_wraps: AtomicU32::new(0),
            fail_unwraps: AtomicU32::new(0),
        })
    }
    pub fn set(&self, state: u8) {
        self.state.store(state, Ordering::SeqCst);
    }
    /// The next `wraps` wraps and `unwraps` unwraps fail as unreachable.
    pub fn fail_next(&self, wraps: u32, unwraps: u32) {
        self.fail_wraps.store(wraps, Ordering::SeqCst);
        self.fail_unwraps.store(unwraps, Ordering::SeqCst);
    }
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    fn check(&self, kek: &KekUri, planned_failures: &AtomicU32) -> fieldcrypt::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if planned_failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(Error::retryable(ErrorKind::Kms, format!("{kek}: KMS unavailable")));
        }
        match self.state.load(Ordering::SeqCst) {
            UNREACHABLE => Err(Error::retryable(ErrorKind::Kms, format!("{kek}: cannot connect"))),
            DENIED => Err(Error::new(ErrorKind::AccessDenied, format!("{kek}: HTTP 403"))),
            _ => Ok(()),
        }
    }
}

impl Kms for SwitchedKms {
    fn scheme(&self) -> &str {
        "local"
    }
    fn wrap(&self, kek: &KekUri, dek: &[u8], ctx: &WrapContext<'_>) -> fieldcrypt::Result<WrappedDek> {
        self.check(kek, &self.fail_wraps)?;
        self.inner.wrap(kek, dek, ctx)
    }
    fn unwrap(
        &self,
        kek: &KekUri,
        kek_version: &str,
        wrapped: &[u8],
        ctx: &WrapContext<'_>,
    ) -> fieldcrypt::Result<Zeroizing<Vec<u8>>> {
        self.check(kek, &self.fail_unwraps)?;
        self.inner.unwrap(kek, kek_version, wrapped, ctx)
    }
}
