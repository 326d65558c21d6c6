//! The local KMS: KEKs in process memory, for development and tests.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::RwLock;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{KekUri, Kms, WrapContext, WrappedDek};
use crate::crypto::{random_bytes, GCM_NONCE_LEN, TAG_LEN};
use crate::error::{Error, ErrorKind, Result};

/// **Development and tests only.** KEKs held in process memory, loaded from a key file or derived
/// from a secret. Anyone with the key file can decrypt everything; use a real KMS in production.
pub struct LocalKms {
    keys: RwLock<HashMap<String, LocalKek>>,
}

struct LocalKek {
    primary: u32,
    versions: BTreeMap<u32, Zeroizing<[u8; 32]>>,
}

impl fmt::Debug for LocalKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.keys.read().map(|k| k.keys().cloned().collect()).unwrap_or_default();
        f.debug_struct("LocalKms").field("keys", &names).finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default, rename = "_comment")]
    _comment: Option<String>,
    keys: BTreeMap<String, KeyFileKek>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileKek {
    primary: u32,
    versions: BTreeMap<u32, String>,
}

const LOCAL_WRAP_LABEL: &[u8] = b"fieldcrypt local-kms v1";

impl LocalKms {
    /// An empty key set; add KEKs with [`LocalKms::with_secret`] or [`LocalKms::with_key`].
    pub fn new() -> LocalKms {
        tracing::warn!(target: "fieldcrypt::audit", "local KMS in use: development and tests only, not for production");
        LocalKms { keys: RwLock::new(HashMap::new()) }
    }

    /// Loads KEKs from a JSON key file: `{"keys": {"NAME": {"primary": 1, "versions": {"1": "<base64 32 bytes>"}}}}`.
    pub fn from_json(text: &str) -> Result<LocalKms> {
        let file: KeyFile = serde_json::from_str(text).map_err(|e| {
            Error::config(format!("local key file is not valid: {}", crate::formats::json::error_position(&e)))
        })?;
        let kms = LocalKms::new();
        for (name, kek) in file.keys {
            if !kek.versions.contains_key(&kek.primary) {
                return Err(Error::config(format!(
                    "local KEK {name:?}: primary version {} is not listed",
                    kek.primary
                )));
            }
            for (version, b64) in kek.versions {
                let bytes = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .map_err(|_| Error::config(format!("local KEK {name:?} version {version} is not base64")))?,
                );
                let key: [u8; 32] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| Error::config(format!("local KEK {name:?} version {version} must be 32 bytes")))?;
                kms.insert(&name, version, key, version == kek.primary);
            }
        }
        Ok(kms)
    }

    pub fn from_file(path: impl AsRef<Path>) -> Result<LocalKms> {
        let path = path.as_ref();
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| Error::config(format!("cannot read local key file {}: {e}", path.display())))?,
        );
        LocalKms::from_json(&text)
    }

    /// Adds KEK `name` (URI `local://name`), version 1, derived from a secret with HKDF-SHA256.
    pub fn with_secret(self, name: &str, secret: &[u8]) -> LocalKms {
        let mut key = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<sha2::Sha256>::new(Some(LOCAL_WRAP_LABEL), secret)
            .expand(name.as_bytes(), key.as_mut())
            .expect("32 bytes is a valid HKDF output length");
        self.insert(name, 1, *key, true);
        self
    }

    /// Adds a version of KEK `name`; `primary` makes it the version new wraps use.
    pub fn with_key(self, name: &str, version: u32, key: [u8; 32], primary: bool) -> LocalKms {
        self.insert(name, version, key, primary);
        self
    }

    /// Adds a new random version of `name` and makes it primary (KEK rotation); returns it.
    pub fn rotate(&self, name: &str) -> u32 {
        let next = self.keys.read().unwrap().get(name).and_then(|k| k.versions.keys().max().copied()).unwrap_or(0) + 1;
        self.insert(name, next, random_bytes::<32>(), true);
        next
    }

    /// Forgets KEK `name` entirely (all versions): what it wrapped can no longer be unwrapped.
    pub fn remove(&self, name: &str) {
        self.keys.write().unwrap().remove(name);
    }

    fn insert(&self, name: &str, version: u32, key: [u8; 32], primary: bool) {
        let mut keys = self.keys.write().unwrap();
        let kek =
            keys.entry(name.to_string()).or_insert_with(|| LocalKek { primary: version, versions: BTreeMap::new() });
        kek.versions.insert(version, Zeroizing::new(key));
        if primary {
            kek.primary = version;
        }
    }

    fn with_kek<T>(
        &self,
        kek: &KekUri,
        version: Option<u32>,
        f: impl FnOnce(u32, &[u8; 32]) -> Result<T>,
    ) -> Result<T> {
        let keys = self.keys.read().unwrap();
        let entry = keys
            .get(kek.name())
            .ok_or_else(|| Error::new(ErrorKind::KeyNotFound, format!("KEK {kek} is not in the local key set")))?;
        let version = version.unwrap_or(entry.primary);
        let key = entry
            .versions
            .get(&version)
            .ok_or_else(|| Error::new(ErrorKind::KeyNotFound, format!("KEK {kek} has no version {version}")))?;
        f(version, key)
    }
}

impl Default for LocalKms {
    fn default() -> Self {
        LocalKms::new()
    }
}

fn local_aad(kek: &KekUri, version: u32, ctx: &WrapContext<'_>) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64 + kek.as_str().len());
    aad.extend_from_slice(LOCAL_WRAP_LABEL);
    aad.push(0);
    aad.extend_from_slice(kek.as_str().as_bytes());
    aad.push(0);
    aad.extend_from_slice(&version.to_be_bytes());
    aad.push(ctx.algorithm.code());
    aad.extend_from_slice(ctx.dek_id);
    aad
}

impl Kms for LocalKms {
    fn scheme(&self) -> &str {
        "local"
    }

    fn wrap(&self, kek: &KekUri, dek: &[u8], ctx: &WrapContext<'_>) -> Result<WrappedDek> {
        self.with_kek(kek, None, |version, key| {
            let nonce: [u8; GCM_NONCE_LEN] = random_bytes();
            let mut out = Vec::with_capacity(GCM_NONCE_LEN + dek.len() + TAG_LEN);
            out.extend_from_slice(&nonce);
            out.extend_from_slice(dek);
            let tag = Aes256Gcm::new(key.into())
                .encrypt_in_place_detached(
                    Nonce::from_slice(&nonce),
                    &local_aad(kek, version, ctx),
                    &mut out[GCM_NONCE_LEN..],
                )
                .map_err(|_| Error::new(ErrorKind::Kms, format!("local KMS could not wrap under {kek}")))?;
            out.extend_from_slice(&tag);
            Ok(WrappedDek { kek_version: version.to_string(), ciphertext: out })
        })
    }

    fn unwrap(
        &self,
        kek: &KekUri,
        kek_version: &str,
        wrapped: &[u8],
        ctx: &WrapContext<'_>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let version: u32 = kek_version
            .parse()
            .map_err(|_| Error::new(ErrorKind::KeyNotFound, format!("KEK {kek} has no version {kek_version:?}")))?;
        self.with_kek(kek, Some(version), |version, key| {
            let fail =
                || Error::crypto(format!("wrapped data key does not authenticate under {kek} version {version}"));
            if wrapped.len() < GCM_NONCE_LEN + TAG_LEN {
                return Err(fail());
            }
            let (nonce, rest) = wrapped.split_at(GCM_NONCE_LEN);
            let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
            let mut dek = Zeroizing::new(body.to_vec());
            Aes256Gcm::new(key.into())
                .decrypt_in_place_detached(
                    Nonce::from_slice(nonce),
                    &local_aad(kek, version, ctx),
                    dek.as_mut_slice(),
                    Tag::from_slice(tag),
                )
                .map_err(|_| fail())?;
            Ok(dek)
        })
    }

    fn derive_deterministic_key(&self, kek: &KekUri, len: usize) -> Result<(String, Zeroizing<Vec<u8>>)> {
        self.with_kek(kek, None, |version, key| {
            let mut out = Zeroizing::new(vec![0u8; len]);
            hkdf::Hkdf::<sha2::Sha256>::new(Some(b"fieldcrypt deterministic dek v1"), key)
                .expand(kek.as_str().as_bytes(), &mut out)
                .map_err(|_| Error::new(ErrorKind::Kms, "deterministic key too long"))?;
            Ok((version.to_string(), out))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Algorithm;
    use crate::error::ErrorKind;

    #[test]
    fn wrap_unwrap_rotate_and_context() {
        let kms = LocalKms::new().with_secret("k", b"s3cret");
        let kek = KekUri::parse("local://k").unwrap();
        let ctx = WrapContext { dek_id: &[9; 16], algorithm: Algorithm::Aes256Gcm };
        let w = kms.wrap(&kek, &[5; 32], &ctx).unwrap();
        assert_eq!(w.kek_version, "1");
        assert_eq!(kms.unwrap(&kek, "1", &w.ciphertext, &ctx).unwrap().as_slice(), &[5; 32]);
        let other = WrapContext { dek_id: &[8; 16], algorithm: Algorithm::Aes256Gcm };
        assert_eq!(kms.unwrap(&kek, "1", &w.ciphertext, &other).unwrap_err().kind(), ErrorKind::Crypto);
        assert_eq!(kms.rotate("k"), 2);
        assert_eq!(kms.wrap(&kek, &[5; 32], &ctx).unwrap().kek_version, "2");
        assert!(kms.unwrap(&kek, "1", &w.ciphertext, &ctx).is_ok(), "old versions stay readable");
        let missing = KekUri::parse("local://nope").unwrap();
        assert_eq!(kms.wrap(&missing, &[0; 32], &ctx).unwrap_err().kind(), ErrorKind::KeyNotFound);
        assert!(!format!("{kms:?}").contains("s3cret"));
    }
}
