//! Key-encryption keys (KEKs) live in a KMS; fieldcrypt only asks it to wrap and unwrap data keys.
//! The [`Kms`] trait is shaped for Vault Transit, AWS KMS, Azure Key Vault and GCP KMS: each
//! wraps opaque bytes under a named key, reports the key version it used, and accepts context
//! that binds the wrapped key to what it protects. [`LocalKms`] is for development and tests.

use std::fmt;

use zeroize::Zeroizing;

use crate::crypto::{hex, Algorithm, DekId};
use crate::error::{Error, ErrorKind, Result};

mod aws;
mod azure;
mod gcp;
mod local;
#[cfg(test)]
pub(crate) mod test_http;
mod token;
mod vault;

pub use aws::{AwsCredentials, AwsKms, AwsKmsConfig};
pub use azure::{AzureAuth, AzureKeyVault, AzureKeyVaultConfig};
pub use gcp::{GcpAuth, GcpKms, GcpKmsConfig};
pub use local::LocalKms;
pub use vault::{VaultAuth, VaultConfig, VaultKms};

/// URI schemes a policy may name. Clients for all but `local` arrive with the KMS issue; a policy
/// naming them loads, and a codec without a client for the scheme fails at construction.
pub const KNOWN_SCHEMES: &[&str] = &["local", "vault", "aws-kms", "azure-kv", "gcp-kms"];

/// A KEK reference such as `local://demo` or `aws-kms://arn:aws:kms:...`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KekUri {
    uri: String,
    scheme_len: usize,
}

impl KekUri {
    pub fn parse(uri: &str) -> Result<KekUri, String> {
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err(format!("key {uri:?} is not a URI of the form scheme://name"));
        };
        if !KNOWN_SCHEMES.contains(&scheme) {
            return Err(format!("key {uri:?} has unknown scheme {scheme:?} (known: {})", KNOWN_SCHEMES.join(", ")));
        }
        if rest.is_empty() || uri.len() > 1024 || uri.chars().any(char::is_control) {
            return Err(format!("key {uri:?} has an empty or invalid name"));
        }
        Ok(KekUri { uri: uri.to_string(), scheme_len: scheme.len() })
    }
    pub fn scheme(&self) -> &str {
        &self.uri[..self.scheme_len]
    }
    /// The part after `scheme://`.
    pub fn name(&self) -> &str {
        &self.uri[self.scheme_len + 3..]
    }
    pub fn as_str(&self) -> &str {
        &self.uri
    }
}

impl fmt::Display for KekUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

/// What a wrapped data key is bound to (AAD / encryption context in the KMS).
#[derive(Debug, Clone, Copy)]
pub struct WrapContext<'a> {
    pub dek_id: &'a DekId,
    pub algorithm: Algorithm,
}

impl WrapContext<'_> {
    /// The DEK id in lowercase hex, as the KMS requests carry it.
    pub(crate) fn dek_id_hex(&self) -> String {
        hex(self.dek_id)
    }

    /// The bytes a wrapped DEK is bound to where a KMS takes associated data (Vault Transit
    /// `associated_data`, Cloud KMS `additionalAuthenticatedData`):
    /// `fieldcrypt:v1:<hex DEK id>:<algorithm>`.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        format!("fieldcrypt:v1:{}:{}", self.dek_id_hex(), self.algorithm.name()).into_bytes()
    }
}

/// A data key wrapped by a KEK, with the KEK version the KMS used.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedDek {
    pub kek_version: String,
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for WrappedDek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedDek")
            .field("kek_version", &self.kek_version)
            .field("len", &self.ciphertext.len())
            .finish()
    }
}

/// A key management service holding KEKs. Calls are rare (once per data key), so the trait is
/// blocking; implementations must be safe to share across threads.
pub trait Kms: Send + Sync + fmt::Debug {
    /// The URI scheme this client serves (`local`, `vault`, ...).
    fn scheme(&self) -> &str;

    /// Wraps `dek` under the current version of `kek`.
    fn wrap(&self, kek: &KekUri, dek: &[u8], ctx: &WrapContext<'_>) -> Result<WrappedDek>;

    /// Unwraps a data key wrapped by [`Kms::wrap`] under `kek_version`.
    fn unwrap(
        &self,
        kek: &KekUri,
        kek_version: &str,
        wrapped: &[u8],
        ctx: &WrapContext<'_>,
    ) -> Result<Zeroizing<Vec<u8>>>;

    /// A key of `len` bytes that every producer derives identically from the current version of
    /// `kek` (for deterministic encryption, whose ciphertexts must agree across processes).
    /// Returns the KEK version used. KMSs with an HMAC operation can implement it.
    fn derive_deterministic_key(&self, kek: &KekUri, len: usize) -> Result<(String, Zeroizing<Vec<u8>>)> {
        let _ = len;
        Err(Error::new(ErrorKind::Kms, format!("KMS {} cannot derive deterministic keys for {kek}", self.scheme())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_schemes() {
        assert_eq!(KekUri::parse("local://demo").unwrap().name(), "demo");
        assert!(KekUri::parse("vault://127.0.0.1:8200/transit/keys/k").is_ok());
        assert!(KekUri::parse("foo://x").unwrap_err().contains("unknown scheme"));
        assert!(KekUri::parse("local://").is_err());
        assert!(KekUri::parse("demo").is_err());
    }

    #[test]
    fn context_is_the_documented_byte_string() {
        let id = [0xab; 16];
        let ctx = WrapContext { dek_id: &id, algorithm: Algorithm::Aes256Gcm };
        assert_eq!(ctx.dek_id_hex(), "ab".repeat(16));
        assert_eq!(String::from_utf8(ctx.bytes()).unwrap(), format!("fieldcrypt:v1:{}:AES256_GCM", "ab".repeat(16)));
    }
}
