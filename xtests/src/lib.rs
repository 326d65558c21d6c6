//! fieldcrypt's cross-language harness (xtests/README.md): the test-vector file's types, shared
//! by the generator (`gen-vectors`), the checker of other languages' encryptions
//! (`check-encrypted`), the Rust vector runner (tests/vectors.rs), and the Rust peer of the
//! produce/consume matrix (`xtest-peer`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use fieldcrypt::{Codec, OwnedHeader, Record};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `format` member of a vector file.
pub const VECTORS_FORMAT: &str = "fieldcrypt-test-vectors";
/// The `format` member of an encrypt-results file.
pub const RESULTS_FORMAT: &str = "fieldcrypt-test-vector-results";

/// A record as the vector files write it: Base64 key and value (`null`: absent) and the headers
/// in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonRecord {
    pub key: Option<String>,
    pub value: Option<String>,
    pub headers: Vec<(String, Option<String>)>,
}

impl JsonRecord {
    pub fn of(record: &Record) -> JsonRecord {
        let b64 = |b: &Option<Vec<u8>>| b.as_ref().map(|b| B64.encode(b));
        JsonRecord {
            key: b64(&record.key),
            value: b64(&record.value),
            headers: record.headers.iter().map(|h| (h.name.clone(), b64(&h.value))).collect(),
        }
    }

    pub fn record(&self) -> Result<Record, String> {
        let bytes = |b: &Option<String>| -> Result<Option<Vec<u8>>, String> {
            b.as_ref().map(|b| B64.decode(b).map_err(|e| format!("bad Base64 in a vector: {e}"))).transpose()
        };
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            headers.push(OwnedHeader { name: name.clone(), value: bytes(value)? });
        }
        Ok(Record { key: bytes(&self.key)?, value: bytes(&self.value)?, headers })
    }
}

/// A positive case: `decrypted` is what decrypting `encrypted` under `decrypt_config` gives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Case {
    pub id: String,
    pub description: String,
    pub format: String,
    pub algorithm: String,
    pub policy: String,
    pub topic: String,
    pub encrypt_config: String,
    pub decrypt_config: String,
    pub plaintext: JsonRecord,
    pub encrypted: JsonRecord,
    pub decrypted: JsonRecord,
    pub deterministic: bool,
}

/// A negative case: decrypting `record` under `decrypt_config` fails with kind `error`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Negative {
    pub id: String,
    pub description: String,
    pub policy: String,
    pub topic: String,
    pub decrypt_config: String,
    pub record: JsonRecord,
    pub error: String,
}

/// A vector file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Vectors {
    pub format: String,
    pub version: u32,
    pub generator: String,
    pub policies: BTreeMap<String, Value>,
    pub configs: BTreeMap<String, Value>,
    pub cases: Vec<Case>,
    pub negative: Vec<Negative>,
}

impl Vectors {
    pub fn read(path: &Path) -> Result<Vectors, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let v: Vectors = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if v.format != VECTORS_FORMAT {
            return Err(format!("{}: not a vector file (format {:?})", path.display(), v.format));
        }
        Ok(v)
    }

    /// A codec of `policy` and `config`, made from their JSON texts as every binding makes one.
    pub fn codec(&self, policy: &str, config: &str) -> Result<Codec, String> {
        let p = self.policies.get(policy).ok_or_else(|| format!("no policy {policy:?}"))?;
        let c = self.configs.get(config).ok_or_else(|| format!("no config {config:?}"))?;
        fieldcrypt::config::codec_from_json(&p.to_string(), &c.to_string())
            .map_err(|e| format!("codec of policy {policy:?} and config {config:?}: {e}"))
    }
}

/// One language's encryption of a case's plaintext.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncryptResult {
    pub vectors: String,
    pub id: String,
    pub record: JsonRecord,
}

/// An encrypt-results file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncryptResults {
    pub format: String,
    pub version: u32,
    pub language: String,
    pub results: Vec<EncryptResult>,
}

/// The repository root (this crate is `xtests/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every vector file, `xtests/vectors/v*.json`, in version order.
pub fn vector_files() -> Vec<PathBuf> {
    let dir = repo_root().join("xtests/vectors");
    let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter_map(|p| {
                    let n = p.file_name()?.to_str()?.strip_prefix('v')?.strip_suffix(".json")?.parse().ok()?;
                    Some((n, p))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

/// Checks another language's encryption of a case: a full consumer (`configs["consumer"]`)
/// gets from it what it gets from the vector's `encrypted` record (the plaintext), and a
/// deterministic case's key and value are the vector's, byte for byte.
pub fn check_encryption(vectors: &Vectors, case: &Case, got: &JsonRecord) -> Result<(), String> {
    // Fail closed: what the vector encrypts, the language must have encrypted too (a
    // record left as it was would "decrypt" to the plaintext as well).
    let has_header = |r: &JsonRecord| r.headers.iter().any(|(name, _)| name == fieldcrypt::HEADER_NAME);
    if has_header(&case.encrypted) != has_header(got) {
        return Err("the fieldcrypt header is missing or unexpected".into());
    }
    if (case.encrypted.value != case.plaintext.value && got.value == case.plaintext.value)
        || (case.encrypted.key != case.plaintext.key && got.key == case.plaintext.key)
    {
        return Err("a part the policy encrypts came back in the clear".into());
    }
    // The same as the vector's own encryption gives a full consumer: the plaintext, up to what
    // a format normalizes (JSON comes back without insignificant whitespace).
    let consumer = vectors.codec(&case.policy, "consumer")?;
    let full = |r: &JsonRecord| -> Result<JsonRecord, String> {
        let r = r.record()?;
        let back = consumer
            .decrypt(&case.topic, r.key.as_deref(), r.value.as_deref(), &r.headers)
            .map_err(|e| format!("does not decrypt: {e}"))?;
        Ok(JsonRecord::of(&back))
    };
    if full(got)? != full(&case.encrypted)? {
        return Err("decrypts to something other than the plaintext".into());
    }
    if case.deterministic && (got.key != case.encrypted.key || got.value != case.encrypted.value) {
        return Err("deterministic (AES-256-SIV) ciphertext differs from the vector's".into());
    }
    Ok(())
}
