//! Signed policies: the security team signs a policy's exact text with Ed25519, and applications
//! accept only policies that verify under a key they trust. See `docs/POLICY.md`, "Signed policies
//! and distribution".
//!
//! The envelope carries the policy as a JSON *string*, so the signed bytes are exactly the
//! bytes the verifier checks: no canonical JSON form is needed, and reformatting the envelope
//! cannot break (or forge) a signature.
//!
//! Error messages never echo the policy text: a rejected document may be an attacker's, and the
//! messages end up in logs. They name key ids (checked to be plain identifiers) and positions.

use std::collections::BTreeMap;
use std::fmt;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::policy::Policy;

/// The signed-envelope versions this build understands.
pub const SIGNED_POLICY_FORMAT_VERSION: u32 = 1;

/// The only signature algorithm of envelope version 1.
pub const ED25519_ALGORITHM: &str = "ed25519";

/// Prefixed to the policy text before signing, so a policy signature can never be replayed as
/// (or made from) a signature over something else the same key signs.
const SIGNATURE_CONTEXT: &[u8] = b"fieldcrypt policy signature v1\0";

/// More signatures than this on one envelope is not a rotation, it is an attempt to make the
/// verifier work: refused before any is checked.
const MAX_SIGNATURES: usize = 16;

const ED25519_PUBLIC_KEY_LEN: usize = 32;
const ED25519_SIGNATURE_LEN: usize = 64;
/// DER of an Ed25519 SubjectPublicKeyInfo (RFC 8410) up to the raw key: always these 12 bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

// ---- keys ----------------------------------------------------------------------------------------

/// A security team's Ed25519 signing key. Its `Debug` shows only the public key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// A new random key (for `fieldcrypt policy keygen`).
    pub fn generate() -> Result<SigningKey> {
        let pair = Ed25519KeyPair::generate().map_err(|_| Error::config("cannot generate an Ed25519 key"))?;
        Ok(SigningKey { pair })
    }

    /// Reads an unencrypted PKCS#8 Ed25519 private key, DER or PEM (`-----BEGIN PRIVATE KEY-----`,
    /// as written by [`SigningKey::to_pkcs8_pem`] or `openssl genpkey -algorithm ED25519`).
    pub fn from_pkcs8(bytes: &[u8]) -> Result<SigningKey> {
        let der = match pem_decode(bytes, "PRIVATE KEY") {
            Some(der) => der,
            None if looks_like_pem(bytes) => {
                return Err(Error::config("the signing key is PEM but not a \"PRIVATE KEY\" (PKCS#8) block"))
            }
            None => Zeroizing::new(bytes.to_vec()),
        };
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|e| Error::config(format!("the signing key is not a PKCS#8 Ed25519 private key ({e})")))?;
        Ok(SigningKey { pair })
    }

    /// The key as PKCS#8 (v1, the form OpenSSL writes) PEM, for storing it (keep the file
    /// private).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        let der = self.pair.to_pkcs8v1().map_err(|_| Error::config("cannot encode the signing key"))?;
        Ok(pem_encode("PRIVATE KEY", der.as_ref()))
    }

    /// The public half, which applications are configured with.
    pub fn public_key(&self) -> PublicKey {
        let mut raw = [0; ED25519_PUBLIC_KEY_LEN];
        raw.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(raw)
    }

    fn sign(&self, policy_text: &str) -> [u8; ED25519_SIGNATURE_LEN] {
        let mut out = [0; ED25519_SIGNATURE_LEN];
        out.copy_from_slice(self.pair.sign(&signed_message(policy_text)).as_ref());
        out
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("public_key", &self.public_key().to_base64()).finish_non_exhaustive()
    }
}

/// An Ed25519 public key that may sign policies.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey([u8; ED25519_PUBLIC_KEY_LEN]);

impl PublicKey {
    /// Reads a key as text: standard Base64 of the raw 32 bytes, or PEM
    /// (`-----BEGIN PUBLIC KEY-----`, a SubjectPublicKeyInfo as `openssl pkey -pubout` writes).
    pub fn parse(text: &str) -> Result<PublicKey> {
        if let Some(der) = pem_decode(text.as_bytes(), "PUBLIC KEY") {
            return PublicKey::from_der(&der);
        }
        if looks_like_pem(text.as_bytes()) {
            return Err(Error::config("the public key is PEM but not a \"PUBLIC KEY\" block"));
        }
        let raw = B64
            .decode(text.trim())
            .map_err(|_| Error::config("the public key is neither PEM nor Base64 of 32 bytes"))?;
        PublicKey::from_raw(&raw)
    }

    /// The raw 32-byte key.
    pub fn from_raw(raw: &[u8]) -> Result<PublicKey> {
        let raw: [u8; ED25519_PUBLIC_KEY_LEN] = raw.try_into().map_err(|_| {
            Error::config(format!("an Ed25519 public key is {ED25519_PUBLIC_KEY_LEN} bytes, not {}", raw.len()))
        })?;
        Ok(PublicKey(raw))
    }

    /// A DER SubjectPublicKeyInfo holding an Ed25519 key.
    pub fn from_der(der: &[u8]) -> Result<PublicKey> {
        match der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
            Some(raw) if raw.len() == ED25519_PUBLIC_KEY_LEN => PublicKey::from_raw(raw),
            _ => Err(Error::config("the public key is not an Ed25519 SubjectPublicKeyInfo")),
        }
    }

    /// Standard Base64 of the raw 32 bytes: the short form for configuration files.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// PEM SubjectPublicKeyInfo, readable by OpenSSL.
    pub fn to_pem(&self) -> String {
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        pem_encode("PUBLIC KEY", &der).to_string()
    }

    fn verifies(&self, policy_text: &str, signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0).verify(&signed_message(policy_text), signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

fn signed_message(policy_text: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNATURE_CONTEXT.len() + policy_text.len());
    message.extend_from_slice(SIGNATURE_CONTEXT);
    message.extend_from_slice(policy_text.as_bytes());
    message
}

/// Key ids are plain identifiers: they appear in envelopes, errors and audit events, so an
/// envelope cannot smuggle text into a log through one.
fn check_key_id(key_id: &str) -> Result<()> {
    if is_plain_id(key_id) {
        Ok(())
    } else {
        Err(Error::config("a signing key id must be 1 to 128 characters of letters, digits and . _ - : @"))
    }
}

fn is_plain_id(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:@".contains(&b))
}

/// A key id from an envelope as it may be shown: itself if plain, else a placeholder.
fn shown_id(key_id: &str) -> String {
    if is_plain_id(key_id) {
        format!("{key_id:?}")
    } else {
        "(an invalid key id)".to_string()
    }
}

// ---- the envelope --------------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    fieldcrypt_signed_policy: u32,
    policy: String,
    signatures: Vec<SignatureDoc>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureDoc {
    key_id: String,
    algorithm: String,
    signature: String,
}

/// One signature of a [`SignedPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySignature {
    pub key_id: String,
    /// `ed25519` (the only algorithm of envelope version 1).
    pub algorithm: String,
    pub signature: Vec<u8>,
}

/// A policy text and its signatures, as published:
///
/// ```json
/// {"fieldcrypt_signed_policy": 1, "policy": "<policy JSON text>",
///  "signatures": [{"key_id": "security-2026", "algorithm": "ed25519", "signature": "<Base64>"}]}
/// ```
///
/// Each signature is Ed25519 over `"fieldcrypt policy signature v1\0" ‖ policy text (UTF-8)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPolicy {
    policy: String,
    signatures: Vec<PolicySignature>,
}

impl SignedPolicy {
    /// Signs `policy_text` exactly as given. The text must be a valid policy: nobody should be
    /// able to sign a document applications would refuse anyway.
    pub fn sign(policy_text: &str, key_id: &str, key: &SigningKey) -> Result<SignedPolicy> {
        Policy::from_json(policy_text)?;
        let mut signed = SignedPolicy { policy: policy_text.to_string(), signatures: Vec::new() };
        signed.add_signature(key_id, key)?;
        Ok(signed)
    }

    /// Adds a signature by another key (while applications move from one signing key to the
    /// next, a policy signed by both is accepted by old and new configurations alike).
    pub fn add_signature(&mut self, key_id: &str, key: &SigningKey) -> Result<()> {
        check_key_id(key_id)?;
        if self.signatures.iter().any(|s| s.key_id == key_id) {
            return Err(Error::config(format!("the policy is already signed by key {key_id:?}")));
        }
        if self.signatures.len() >= MAX_SIGNATURES {
            return Err(Error::config(format!("a policy carries at most {MAX_SIGNATURES} signatures")));
        }
        self.signatures.push(PolicySignature {
            key_id: key_id.to_string(),
            algorithm: ED25519_ALGORITHM.to_string(),
            signature: key.sign(&self.policy).to_vec(),
        });
        Ok(())
    }

    /// Reads an envelope without verifying it (see [`PolicyVerifier::verify`] for that).
    pub fn from_json(document: &[u8]) -> Result<SignedPolicy> {
        match classify(document)? {
            Document::Signed(signed) => Ok(signed),
            Document::Bare(_) => Err(Error::policy("the document is a policy, not a signed policy envelope")),
        }
    }

    /// The envelope as JSON text.
    pub fn to_json(&self) -> String {
        let envelope = Envelope {
            fieldcrypt_signed_policy: SIGNED_POLICY_FORMAT_VERSION,
            policy: self.policy.clone(),
            signatures: self
                .signatures
                .iter()
                .map(|s| SignatureDoc {
                    key_id: s.key_id.clone(),
                    algorithm: s.algorithm.clone(),
                    signature: B64.encode(&s.signature),
                })
                .collect(),
        };
        serde_json::to_string_pretty(&envelope).expect("strings and numbers always serialize")
    }

    /// The policy text exactly as signed.
    pub fn policy_text(&self) -> &str {
        &self.policy
    }

    pub fn signatures(&self) -> &[PolicySignature] {
        &self.signatures
    }
}

/// A document as a source delivered it: an envelope, or a bare (unsigned) policy text.
enum Document {
    Signed(SignedPolicy),
    Bare(String),
}

/// Only the members that tell the two document kinds apart; the rest is ignored here.
#[derive(Deserialize)]
struct Probe {
    fieldcrypt_signed_policy: Option<serde::de::IgnoredAny>,
    fieldcrypt_policy: Option<serde::de::IgnoredAny>,
}

fn classify(document: &[u8]) -> Result<Document> {
    // serde_json's messages may quote values; only positions are reported.
    let probe: Probe = serde_json::from_slice(document).map_err(|e| {
        Error::policy(format!("the policy document is not a JSON object (line {}, column {})", e.line(), e.column()))
    })?;
    if probe.fieldcrypt_signed_policy.is_none() {
        if probe.fieldcrypt_policy.is_some() {
            let text = String::from_utf8(document.to_vec()).map_err(|_| Error::policy("the policy is not UTF-8"))?;
            return Ok(Document::Bare(text));
        }
        return Err(Error::policy(
            "the document is neither a signed policy (\"fieldcrypt_signed_policy\") nor a policy (\"fieldcrypt_policy\")",
        ));
    }
    let envelope: Envelope = serde_json::from_slice(document).map_err(|e| {
        Error::policy(format!(
            "the signed policy envelope is not valid (line {}, column {}): it must hold exactly \
             \"fieldcrypt_signed_policy\" (a number), \"policy\" (a string) and \"signatures\" \
             (a list of {{\"key_id\", \"algorithm\", \"signature\"}} strings)",
            e.line(),
            e.column()
        ))
    })?;
    if envelope.fieldcrypt_signed_policy != SIGNED_POLICY_FORMAT_VERSION {
        return Err(Error::policy(format!(
            "signed policy envelope version {} is not supported (this build reads version {SIGNED_POLICY_FORMAT_VERSION})",
            envelope.fieldcrypt_signed_policy
        )));
    }
    if envelope.signatures.len() > MAX_SIGNATURES {
        return Err(Error::policy(format!(
            "the signed policy carries {} signatures (at most {MAX_SIGNATURES} are read)",
            envelope.signatures.len()
        )));
    }
    let mut signatures = Vec::with_capacity(envelope.signatures.len());
    for s in envelope.signatures {
        // A signature that is not even Base64 cannot verify; keep it as empty bytes so the
        // verifier reports it with the others.
        let signature = B64.decode(s.signature.as_bytes()).unwrap_or_default();
        signatures.push(PolicySignature { key_id: s.key_id, algorithm: s.algorithm, signature });
    }
    Ok(Document::Signed(SignedPolicy { policy: envelope.policy, signatures }))
}

// ---- verification --------------------------------------------------------------------------------

/// The public keys an application trusts to sign its policy, by key id. Trusting several is how
/// signing keys rotate: add the new key, re-sign, then drop the old one.
#[derive(Clone, Default)]
pub struct PolicyVerifier {
    keys: BTreeMap<String, PublicKey>,
}

impl fmt::Debug for PolicyVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyVerifier").field("key_ids", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

/// A policy that passed verification, and who signed it.
#[derive(Debug, Clone)]
pub struct VerifiedPolicy {
    policy: Policy,
    signed_by: Option<String>,
    digest: [u8; 32],
}

impl VerifiedPolicy {
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The id of the trusted key whose signature verified; `None` when verification is
    /// [`Verification::Disabled`].
    pub fn signed_by(&self) -> Option<&str> {
        self.signed_by.as_deref()
    }

    pub fn into_policy(self) -> Policy {
        self.policy
    }

    /// SHA-256 of the policy text: tells a re-signed policy from a changed one.
    pub(crate) fn digest(&self) -> [u8; 32] {
        self.digest
    }
}

impl PolicyVerifier {
    pub fn new() -> PolicyVerifier {
        PolicyVerifier::default()
    }

    /// Trusts `key` under `key_id` (the id signers put in their signatures).
    pub fn trust(mut self, key_id: &str, key: PublicKey) -> Result<PolicyVerifier> {
        check_key_id(key_id)?;
        if self.keys.insert(key_id.to_string(), key).is_some() {
            return Err(Error::config(format!("signing key id {key_id:?} is listed twice")));
        }
        Ok(self)
    }

    /// Reads trusted keys from JSON: `{"security-2026": "<Base64 or PEM public key>", ...}`.
    pub fn from_json(text: &str) -> Result<PolicyVerifier> {
        let keys: BTreeMap<String, String> = serde_json::from_str(text).map_err(|e| {
            Error::config(format!(
                "trusted keys must be a JSON object of key id to public key (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let mut verifier = PolicyVerifier::new();
        for (id, key) in keys {
            let key =
                PublicKey::parse(&key).map_err(|e| Error::config(format!("trusted key {id:?}: {}", e.message())))?;
            verifier = verifier.trust(&id, key)?;
        }
        Ok(verifier)
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Accepts a signed envelope with at least one signature by a trusted key that verifies,
    /// and returns its policy. Rejects with a **policy** error: a bare (unsigned) policy, an
    /// envelope whose signatures are all by unknown keys or do not verify (the policy text was
    /// changed after signing), and a verified text that is not a valid policy.
    pub fn verify(&self, document: &[u8]) -> Result<Policy> {
        self.verify_signed(document).map(VerifiedPolicy::into_policy)
    }

    /// [`PolicyVerifier::verify`], also telling which key signed.
    pub fn verify_signed(&self, document: &[u8]) -> Result<VerifiedPolicy> {
        if self.keys.is_empty() {
            return Err(Error::config("no trusted policy signing key is configured"));
        }
        match classify(document)? {
            Document::Bare(_) => Err(Error::policy(
                "the policy is not signed: trusted signing keys are configured, so only a signed policy \
                 (\"fieldcrypt_signed_policy\" envelope) is accepted",
            )),
            Document::Signed(signed) => {
                let key_id = self.check_signatures(&signed)?;
                accepted(&signed.policy, Some(key_id))
            }
        }
    }

    /// The id of the first trusted key whose signature verifies, or why none does.
    fn check_signatures(&self, signed: &SignedPolicy) -> Result<String> {
        if signed.signatures.is_empty() {
            return Err(Error::policy("the signed policy carries no signature"));
        }
        let (mut failed, mut unknown, mut unsupported) = (Vec::new(), Vec::new(), Vec::new());
        for s in &signed.signatures {
            let Some(key) = self.keys.get(&s.key_id) else {
                unknown.push(shown_id(&s.key_id));
                continue;
            };
            if s.algorithm != ED25519_ALGORITHM {
                unsupported.push(shown_id(&s.key_id));
            } else if s.signature.len() == ED25519_SIGNATURE_LEN && key.verifies(&signed.policy, &s.signature) {
                return Ok(s.key_id.clone());
            } else {
                failed.push(shown_id(&s.key_id));
            }
        }
        // The most telling reason first: a trusted key's signature that fails means tampering.
        let message = if !failed.is_empty() {
            format!(
                "the policy signature by {} does not verify: the policy was changed after it was signed, \
                 or signed with another key under that id",
                list(&failed)
            )
        } else if !unsupported.is_empty() {
            format!(
                "the signature by {} uses an unsupported algorithm (only \"{ED25519_ALGORITHM}\")",
                list(&unsupported)
            )
        } else {
            format!(
                "the policy is signed only by keys this application does not trust ({}; trusted: {})",
                list(&unknown),
                list(&self.keys.keys().map(|k| format!("{k:?}")).collect::<Vec<_>>())
            )
        };
        Err(Error::policy(message))
    }
}

fn list(items: &[String]) -> String {
    items.join(", ")
}

fn accepted(policy_text: &str, signed_by: Option<String>) -> Result<VerifiedPolicy> {
    let policy = Policy::from_json(policy_text)?;
    let digest = Sha256::digest(policy_text.as_bytes()).into();
    Ok(VerifiedPolicy { policy, signed_by, digest })
}

/// Whether policies must be signed. There is no default: an application says which it wants.
#[derive(Debug, Clone)]
pub enum Verification {
    /// Accept only envelopes signed by one of these keys.
    Required(PolicyVerifier),
    /// Accept bare policies and envelopes without checking any signature. For development only:
    /// anyone who can write to the policy source then decides what is encrypted.
    Disabled,
}

impl Verification {
    /// The policy in `document` if it is acceptable under this setting.
    pub fn verify(&self, document: &[u8]) -> Result<VerifiedPolicy> {
        match self {
            Verification::Required(verifier) => verifier.verify_signed(document),
            Verification::Disabled => match classify(document)? {
                Document::Bare(text) => accepted(&text, None),
                Document::Signed(signed) => accepted(&signed.policy, None),
            },
        }
    }

    /// Whether signatures are checked.
    pub fn is_required(&self) -> bool {
        matches!(self, Verification::Required(_))
    }
}

// ---- PEM -----------------------------------------------------------------------------------------

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// The DER inside the first `-----BEGIN {label}-----` block, if there is a well-formed one.
fn pem_decode(bytes: &[u8], label: &str) -> Option<Zeroizing<Vec<u8>>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let body: Zeroizing<String> = Zeroizing::new(text[start..stop].chars().filter(|c| !c.is_whitespace()).collect());
    B64.decode(body.as_bytes()).ok().map(Zeroizing::new)
}

fn pem_encode(label: &str, der: &[u8]) -> Zeroizing<String> {
    let body = Zeroizing::new(B64.encode(der));
    let mut out = Zeroizing::new(format!("-----BEGIN {label}-----\n"));
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("Base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    const POLICY: &str = r#"{"fieldcrypt_policy":1,"id":"p","revision":3,"encrypt":[]}"#;

    #[test]
    fn keys_round_trip_through_pem_and_base64() {
        let key = SigningKey::generate().unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        let again = SigningKey::from_pkcs8(pem.as_bytes()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let public = key.public_key();
        assert_eq!(PublicKey::parse(&public.to_pem()).unwrap(), public);
        assert_eq!(PublicKey::parse(&public.to_base64()).unwrap(), public);
        assert!(!format!("{key:?}").contains(&*pem));
    }

    #[test]
    fn openssl_keys_are_read() {
        // `openssl genpkey -algorithm ED25519` (RFC 8032 test key 1) and its `pkey -pubout`.
        let private = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
        let public = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n";
        let key = SigningKey::from_pkcs8(private.as_bytes()).unwrap();
        assert_eq!(key.public_key(), PublicKey::parse(public).unwrap());
    }

    #[test]
    fn bad_keys_are_config_errors_without_key_bytes() {
        let e = SigningKey::from_pkcs8(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(PublicKey::parse("AAAA").is_err());
        assert!(PublicKey::from_der(&[0; 44]).is_err());
    }

    #[test]
    fn the_envelope_round_trips() {
        let key = SigningKey::generate().unwrap();
        let signed = SignedPolicy::sign(POLICY, "k1", &key).unwrap();
        let parsed = SignedPolicy::from_json(signed.to_json().as_bytes()).unwrap();
        assert_eq!(parsed, signed);
        assert_eq!(parsed.policy_text(), POLICY);
    }

    #[test]
    fn envelope_errors_do_not_quote_the_document() {
        let e = classify(br#"{"fieldcrypt_signed_policy":1,"policy":"x","signatures":"SECRET-ish"}"#).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Policy);
        assert!(!e.message().contains("SECRET"), "{e}");
    }
}
