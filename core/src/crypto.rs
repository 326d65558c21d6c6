//! The two field ciphers, over vetted RustCrypto crates: AES-256-GCM (randomized, 96-bit random
//! nonces) and AES-256-SIV (RFC 5297, deterministic). A [`Dek`] holds the expanded cipher, never
//! the raw key bytes; both are zeroized on drop (the `zeroize` features of `aes`).

use std::fmt;
use std::sync::{Mutex, MutexGuard};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use aes_siv::siv::Aes256Siv;
use rand::RngCore;

use crate::error::{Error, Result};

pub const GCM_NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
pub const DEK_ID_LEN: usize = 16;

/// Identifies one data key; random (GCM) or derived from the key itself (SIV).
pub type DekId = [u8; DEK_ID_LEN];

/// A field encryption algorithm. The numeric codes are part of the header format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// AES-256-GCM, random 96-bit nonce; field = nonce(12) ‖ ciphertext ‖ tag(16).
    Aes256Gcm,
    /// AES-256-SIV (RFC 5297), deterministic; field = siv(16) ‖ ciphertext.
    Aes256Siv,
}

impl Algorithm {
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "AES256_GCM" => Some(Algorithm::Aes256Gcm),
            "AES256_SIV" => Some(Algorithm::Aes256Siv),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Aes256Gcm => "AES256_GCM",
            Algorithm::Aes256Siv => "AES256_SIV",
        }
    }
    pub fn code(self) -> u8 {
        match self {
            Algorithm::Aes256Gcm => 1,
            Algorithm::Aes256Siv => 2,
        }
    }
    pub fn from_code(code: u8) -> Option<Algorithm> {
        match code {
            1 => Some(Algorithm::Aes256Gcm),
            2 => Some(Algorithm::Aes256Siv),
            _ => None,
        }
    }
    /// Length of the raw data key: 32 bytes for GCM, 64 for SIV (two AES-256 keys).
    pub fn key_len(self) -> usize {
        match self {
            Algorithm::Aes256Gcm => 32,
            Algorithm::Aes256Siv => 64,
        }
    }
    /// Whether equal plaintexts give equal ciphertexts (and so no per-record binding).
    pub fn is_deterministic(self) -> bool {
        self == Algorithm::Aes256Siv
    }
    /// Bytes a field ciphertext adds to the plaintext.
    pub fn overhead(self) -> usize {
        match self {
            Algorithm::Aes256Gcm => GCM_NONCE_LEN + TAG_LEN,
            Algorithm::Aes256Siv => TAG_LEN,
        }
    }
}

// GCM is the hot path and stays inline; the rarer SIV schedule is boxed.
#[allow(clippy::large_enum_variant)]
enum Cipher {
    Gcm(Aes256Gcm),
    // `Siv` methods take `&mut self` and the type is not `Clone`: share the expanded key
    // schedule behind a lock (held for one field, uncontended in the common case).
    Siv(Box<Mutex<Aes256Siv>>),
}

/// A data key ready for use.
pub struct Dek {
    id: DekId,
    algorithm: Algorithm,
    cipher: Cipher,
}

impl fmt::Debug for Dek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dek").field("id", &hex(&self.id)).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

impl Dek {
    pub fn new(id: DekId, algorithm: Algorithm, key: &[u8]) -> Result<Dek> {
        if key.len() != algorithm.key_len() {
            return Err(Error::crypto(format!("data key {} has the wrong length for {}", hex(&id), algorithm.name())));
        }
        let cipher = match algorithm {
            Algorithm::Aes256Gcm => Cipher::Gcm(Aes256Gcm::new_from_slice(key).expect("length checked")),
            Algorithm::Aes256Siv => {
                Cipher::Siv(Box::new(Mutex::new(Aes256Siv::new_from_slice(key).expect("length checked"))))
            }
        };
        Ok(Dek { id, algorithm, cipher })
    }

    pub fn id(&self) -> &DekId {
        &self.id
    }
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Appends the ciphertext of `type_byte ‖ plaintext` to `out`.
    pub fn seal(&self, aad: &[u8], type_byte: u8, plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        match &self.cipher {
            Cipher::Gcm(c) => {
                let mut nonce = [0u8; GCM_NONCE_LEN];
                rand::rng().fill_bytes(&mut nonce);
                out.extend_from_slice(&nonce);
                let start = out.len();
                out.push(type_byte);
                out.extend_from_slice(plaintext);
                let tag = c
                    .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut out[start..])
                    .map_err(|_| Error::crypto("AES-256-GCM encryption failed"))?;
                out.extend_from_slice(&tag);
            }
            Cipher::Siv(c) => {
                let start = out.len();
                out.extend_from_slice(&[0u8; TAG_LEN]);
                out.push(type_byte);
                out.extend_from_slice(plaintext);
                let tag = lock(c)
                    .encrypt_in_place_detached([aad], &mut out[start + TAG_LEN..])
                    .map_err(|_| Error::crypto("AES-256-SIV encryption failed"))?;
                out[start..start + TAG_LEN].copy_from_slice(&tag);
            }
        }
        Ok(())
    }

    /// Decrypts a field ciphertext into `buf` (cleared first); returns the type byte and the
    /// plaintext, which lives in `buf`.
    pub fn open<'b>(&self, aad: &[u8], ciphertext: &[u8], buf: &'b mut Vec<u8>) -> Result<(u8, &'b [u8])> {
        let overhead = self.algorithm.overhead();
        if ciphertext.len() < overhead + 1 {
            return Err(Error::crypto("field ciphertext is truncated"));
        }
        let fail = || Error::crypto(format!("field does not authenticate under data key {}", hex(&self.id)));
        buf.clear();
        match &self.cipher {
            Cipher::Gcm(c) => {
                let (nonce, rest) = ciphertext.split_at(GCM_NONCE_LEN);
                let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
                buf.extend_from_slice(body);
                c.decrypt_in_place_detached(Nonce::from_slice(nonce), aad, buf, Tag::from_slice(tag))
                    .map_err(|_| fail())?;
            }
            Cipher::Siv(c) => {
                let (tag, body) = ciphertext.split_at(TAG_LEN);
                buf.extend_from_slice(body);
                lock(c).decrypt_in_place_detached([aad], buf, aes_siv::Tag::from_slice(tag)).map_err(|_| fail())?;
            }
        }
        let (type_byte, plaintext) = buf.split_first().expect("length checked");
        Ok((*type_byte, plaintext))
    }

    /// The header authenticator: an AEAD tag over `body` with an empty plaintext. GCM uses the
    /// record nonce (fresh per record); SIV is deterministic over a body holding that nonce.
    pub fn header_tag(&self, record_nonce: &[u8; GCM_NONCE_LEN], body: &[u8]) -> Result<[u8; TAG_LEN]> {
        let tag = match &self.cipher {
            Cipher::Gcm(c) => c
                .encrypt_in_place_detached(Nonce::from_slice(record_nonce), body, &mut [])
                .map_err(|_| Error::crypto("header authentication failed"))?,
            Cipher::Siv(c) => lock(c)
                .encrypt_in_place_detached([body], &mut [])
                .map_err(|_| Error::crypto("header authentication failed"))?,
        };
        Ok(tag.into())
    }
}

fn lock(siv: &Mutex<Aes256Siv>) -> MutexGuard<'_, Aes256Siv> {
    siv.lock().unwrap_or_else(|e| e.into_inner())
}

/// Random bytes from the thread-local CSPRNG (ChaCha, reseeded from the OS).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

/// Constant-time comparison for authenticators.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcm_and_siv_round_trip_and_bind_aad() {
        for alg in [Algorithm::Aes256Gcm, Algorithm::Aes256Siv] {
            let key = vec![7u8; alg.key_len()];
            let dek = Dek::new([1; 16], alg, &key).unwrap();
            let mut ct = Vec::new();
            dek.seal(b"path-a", 0, b"secret", &mut ct).unwrap();
            assert_eq!(ct.len(), 7 + alg.overhead());
            let mut buf = Vec::new();
            assert_eq!(dek.open(b"path-a", &ct, &mut buf).unwrap(), (0, &b"secret"[..]));
            assert_eq!(dek.open(b"path-b", &ct, &mut buf).unwrap_err().kind(), crate::ErrorKind::Crypto);
            let mut again = Vec::new();
            dek.seal(b"path-a", 0, b"secret", &mut again).unwrap();
            assert_eq!(alg.is_deterministic(), again == ct);
        }
    }

    #[test]
    fn siv_matches_rfc5297_vector() {
        // RFC 5297 A.1 (deterministic mode, AES-SIV-CMAC-256): the crate implements the RFC.
        use aes_siv::siv::Aes128Siv;
        let key = hex_decode("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
        let ad = hex_decode("101112131415161718191a1b1c1d1e1f2021222324252627");
        let pt = hex_decode("112233445566778899aabbccddee");
        let mut siv = Aes128Siv::new_from_slice(&key).unwrap();
        let ct = siv.encrypt([&ad], &pt).unwrap();
        assert_eq!(hex(&ct), "85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c");
    }

    fn hex_decode(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
}
