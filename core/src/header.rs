//! The fieldcrypt record header, format version 1 — specified byte by byte in `docs/FORMAT.md`.
//! Every record fieldcrypt encrypted carries exactly one header named [`HEADER_NAME`]; it lists
//! each data key the record needs (algorithm, DEK id, KEK URI and version, the wrapped DEK) and
//! the field paths encrypted under it, and ends with one authenticator per key.

use crate::crypto::{Algorithm, DekId, DEK_ID_LEN, GCM_NONCE_LEN, TAG_LEN};
use crate::error::{Error, ErrorKind, Result};
use crate::policy::Part;

/// The Kafka record header name fieldcrypt writes and reads.
pub const HEADER_NAME: &str = "fieldcrypt";
/// The format version this build writes.
pub const FORMAT_VERSION: u8 = 1;
/// Format versions this build reads. Every version ever released stays here.
pub const READABLE_VERSIONS: &[u8] = &[1];

const MAX_KEYS: u64 = 64;
const MAX_FIELDS: u64 = 4096;
const MAX_STR: u64 = 4096;
const MAX_WRAPPED: u64 = 8192;

/// Where the reader finds the wrapped data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DekLocation<'a> {
    /// The wrapped DEK travels in the header (self-contained records).
    Inline(&'a [u8]),
    /// The wrapped DEK is held in a key store under its DEK id.
    KeyStore,
}

/// One data key of a record and the fields it encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry<'a> {
    pub algorithm: Algorithm,
    pub dek_id: DekId,
    pub kek: &'a str,
    pub kek_version: &'a str,
    pub dek: DekLocation<'a>,
    /// Paths as written in the policy (`orders[*].visa`), with the record part they are in.
    pub fields: Vec<(Part, &'a str)>,
}

/// A parsed header. `body` is the authenticated prefix; `tags[i]` authenticates it under key `i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub record_nonce: [u8; GCM_NONCE_LEN],
    pub policy_id: &'a str,
    pub policy_revision: u64,
    pub keys: Vec<KeyEntry<'a>>,
    pub tags: Vec<[u8; TAG_LEN]>,
    pub body: &'a [u8],
}

/// Where [`write_body`] puts the record nonce: after the version and flags bytes.
pub(crate) const RECORD_NONCE_AT: usize = 2;

/// Replaces the record nonce of a header body [`write_body`] wrote.
pub fn set_record_nonce(body: &mut [u8], record_nonce: &[u8; GCM_NONCE_LEN]) {
    body[RECORD_NONCE_AT..RECORD_NONCE_AT + GCM_NONCE_LEN].copy_from_slice(record_nonce);
}

/// Writes the header body (everything before the tags). Append one tag per key to finish it.
pub fn write_body(
    out: &mut Vec<u8>,
    record_nonce: &[u8; GCM_NONCE_LEN],
    policy_id: &str,
    policy_revision: u64,
    keys: &[KeyEntry<'_>],
) {
    let start = out.len();
    out.push(FORMAT_VERSION);
    out.push(0); // flags: none defined in v1
    debug_assert_eq!(out.len() - start, RECORD_NONCE_AT);
    out.extend_from_slice(record_nonce);
    put_str(out, policy_id);
    put_varint(out, policy_revision);
    put_varint(out, keys.len() as u64);
    for k in keys {
        out.push(k.algorithm.code());
        out.extend_from_slice(&k.dek_id);
        put_str(out, k.kek);
        put_str(out, k.kek_version);
        match k.dek {
            DekLocation::Inline(w) => {
                out.push(0);
                put_varint(out, w.len() as u64);
                out.extend_from_slice(w);
            }
            DekLocation::KeyStore => out.push(1),
        }
        put_varint(out, k.fields.len() as u64);
        for (part, path) in &k.fields {
            out.push(part.code());
            put_str(out, path);
        }
    }
}

/// Parses a header value. Never panics; every malformation is a [`ErrorKind::Format`] error and
/// an unknown version is [`ErrorKind::UnsupportedVersion`].
pub fn parse(bytes: &[u8]) -> Result<Envelope<'_>> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let version = r.u8("format version")?;
    if !READABLE_VERSIONS.contains(&version) {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!("fieldcrypt header format version {version} is not supported by this build (reads {READABLE_VERSIONS:?})"),
        ));
    }
    let flags = r.u8("flags")?;
    if flags != 0 {
        return Err(Error::format(format!("header flags {flags:#04x} are not defined in format version 1")));
    }
    let record_nonce = r.array::<GCM_NONCE_LEN>("record nonce")?;
    let policy_id = r.str("policy id")?;
    let policy_revision = r.varint("policy revision", u64::MAX)?;
    let key_count = r.varint("key count", MAX_KEYS)?;
    if key_count == 0 {
        return Err(Error::format("header lists no keys"));
    }
    let mut keys = Vec::with_capacity(key_count as usize);
    for _ in 0..key_count {
        let code = r.u8("algorithm")?;
        let algorithm =
            Algorithm::from_code(code).ok_or_else(|| Error::format(format!("unknown algorithm code {code}")))?;
        let dek_id = r.array::<DEK_ID_LEN>("DEK id")?;
        let kek = r.str("KEK URI")?;
        let kek_version = r.str("KEK version")?;
        let dek = match r.u8("DEK location")? {
            0 => {
                let len = r.varint("wrapped DEK length", MAX_WRAPPED)? as usize;
                DekLocation::Inline(r.take(len, "wrapped DEK")?)
            }
            1 => DekLocation::KeyStore,
            other => return Err(Error::format(format!("unknown DEK location {other}"))),
        };
        let field_count = r.varint("field count", MAX_FIELDS)?;
        if field_count == 0 {
            return Err(Error::format("a header key lists no fields"));
        }
        let mut fields = Vec::with_capacity(field_count as usize);
        for _ in 0..field_count {
            let code = r.u8("record part")?;
            let part = Part::from_code(code).ok_or_else(|| Error::format(format!("unknown record part {code}")))?;
            fields.push((part, r.str("field path")?));
        }
        keys.push(KeyEntry { algorithm, dek_id, kek, kek_version, dek, fields });
    }
    let body = &bytes[..r.pos];
    let mut tags = Vec::with_capacity(keys.len());
    for _ in 0..keys.len() {
        tags.push(r.array::<TAG_LEN>("header authenticator")?);
    }
    if r.pos != bytes.len() {
        return Err(Error::format(format!("{} unexpected bytes after the header", bytes.len() - r.pos)));
    }
    Ok(Envelope { record_nonce, policy_id, policy_revision, keys, tags, body })
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            return Err(Error::format(format!("header truncated in {what}")));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self.take(N, what)?.try_into().expect("length taken"))
    }
    /// Unsigned LEB128, minimal encoding only (so each header has exactly one byte form).
    fn varint(&mut self, what: &str, max: u64) -> Result<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8(what)?;
            let bits = u64::from(b & 0x7f);
            if i == 9 && b > 1 {
                return Err(Error::format(format!("{what} overflows")));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(Error::format(format!("{what} is not minimally encoded")));
                }
                if v > max {
                    return Err(Error::format(format!("{what} {v} exceeds the limit {max}")));
                }
                return Ok(v);
            }
        }
        Err(Error::format(format!("{what} is too long")))
    }
    fn str(&mut self, what: &str) -> Result<&'a str> {
        let len = self.varint(what, MAX_STR)? as usize;
        std::str::from_utf8(self.take(len, what)?).map_err(|_| Error::format(format!("{what} is not UTF-8")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let keys = [KeyEntry {
            algorithm: Algorithm::Aes256Gcm,
            dek_id: [0xAB; 16],
            kek: "local://demo",
            kek_version: "1",
            dek: DekLocation::Inline(&[1, 2, 3]),
            fields: vec![(Part::Value, "password"), (Part::Key, "id")],
        }];
        let mut out = Vec::new();
        write_body(&mut out, &[7; 12], "pol", 300, &keys);
        out.extend_from_slice(&[0xEE; 16]);
        out
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let env = parse(&bytes).unwrap();
        assert_eq!(env.policy_id, "pol");
        assert_eq!(env.policy_revision, 300);
        assert_eq!(env.keys[0].fields, vec![(Part::Value, "password"), (Part::Key, "id")]);
        assert_eq!(env.keys[0].dek, DekLocation::Inline(&[1, 2, 3]));
        assert_eq!(env.tags, vec![[0xEE; 16]]);
        assert_eq!(env.body.len(), bytes.len() - 16);
    }

    #[test]
    fn every_truncation_is_a_format_error() {
        let bytes = sample();
        for n in 0..bytes.len() {
            let e = parse(&bytes[..n]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Format, "prefix {n}: {e}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(parse(&long).unwrap_err().kind(), ErrorKind::Format);
    }

    #[test]
    fn unknown_version() {
        let mut bytes = sample();
        bytes[0] = 2;
        assert_eq!(parse(&bytes).unwrap_err().kind(), ErrorKind::UnsupportedVersion);
    }

    #[test]
    fn non_minimal_varint_is_rejected() {
        let mut r = Reader { buf: &[0x80, 0x00], pos: 0 };
        assert!(r.varint("x", 10).is_err());
        let mut r = Reader { buf: &[0xff; 11], pos: 0 };
        assert!(r.varint("x", u64::MAX).is_err());
    }
}
