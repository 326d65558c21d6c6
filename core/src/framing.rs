//! Confluent Schema Registry framing, passed through unchanged: either a prefix
//! `0x00 ‖ u32 BE schema id` (Protobuf adds message indexes after it), or — in newer clients —
//! the schema id in a record header (`__value_schema_id` / `__key_schema_id`: `0x01 ‖ 16-byte
//! GUID`) and no prefix. A record with neither is schemaless.

use crate::error::{Error, Result};
use crate::policy::Part;

pub const MAGIC: u8 = 0x00;
pub const VALUE_SCHEMA_ID_HEADER: &str = "__value_schema_id";
pub const KEY_SCHEMA_ID_HEADER: &str = "__key_schema_id";
const GUID_HEADER_MAGIC: u8 = 0x01;

/// Which registered schema a record part was written with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SchemaRef {
    Id(u32),
    /// A GUID in its canonical text form (8-4-4-4-12 lower-case hex).
    Guid(String),
}

impl std::fmt::Display for SchemaRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SchemaRef::Id(id) => write!(f, "schema id {id}"),
            SchemaRef::Guid(g) => write!(f, "schema GUID {g}"),
        }
    }
}

pub fn schema_id_header(part: Part) -> &'static str {
    match part {
        Part::Value => VALUE_SCHEMA_ID_HEADER,
        Part::Key => KEY_SCHEMA_ID_HEADER,
    }
}

/// How a record part is framed: the schema, and how many leading bytes are framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed {
    pub schema: SchemaRef,
    /// Bytes of prefix before the payload (5 for a magic-byte prefix, 0 with a header id).
    /// Protobuf message indexes are not included: see [`message_indexes`].
    pub prefix_len: usize,
}

/// The framing of `bytes`, given the value of the part's schema-id header if the record has one.
/// `None`: schemaless. A header id wins over a prefix (the payload then starts at byte 0).
pub fn detect(bytes: &[u8], header: Option<&[u8]>) -> Result<Option<Framed>> {
    if let Some(h) = header {
        if h.len() != 17 || h[0] != GUID_HEADER_MAGIC {
            return Err(Error::format("schema id header is not 0x01 followed by a 16-byte GUID"));
        }
        return Ok(Some(Framed { schema: SchemaRef::Guid(guid_text(&h[1..])), prefix_len: 0 }));
    }
    match bytes.first() {
        Some(&MAGIC) => {
            if bytes.len() < 5 {
                return Err(Error::record("record starts with the schema-registry magic byte but is truncated"));
            }
            let id = u32::from_be_bytes(bytes[1..5].try_into().expect("4 bytes"));
            Ok(Some(Framed { schema: SchemaRef::Id(id), prefix_len: 5 }))
        }
        _ => Ok(None),
    }
}

/// Reads Confluent's Protobuf message indexes at the start of `payload`: a zig-zag varint count
/// then that many zig-zag varint indexes; the single byte `0x00` stands for `[0]` (the first
/// message). Returns the indexes and how many bytes they took.
pub fn message_indexes(payload: &[u8]) -> Result<(Vec<i32>, usize)> {
    let mut pos = 0;
    let count = zigzag_varint(payload, &mut pos)?;
    if count == 0 {
        return Ok((vec![0], pos));
    }
    if !(0..=64).contains(&count) {
        return Err(Error::record(format!("protobuf message index count {count} is invalid")));
    }
    let mut indexes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let i = zigzag_varint(payload, &mut pos)?;
        indexes.push(i32::try_from(i).map_err(|_| Error::record("protobuf message index out of range"))?);
    }
    Ok((indexes, pos))
}

fn zigzag_varint(b: &[u8], pos: &mut usize) -> Result<i64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or_else(|| Error::record("protobuf message indexes are truncated"))?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(((v >> 1) as i64) ^ -((v & 1) as i64));
        }
    }
    Err(Error::record("protobuf message index varint is too long"))
}

fn guid_text(b: &[u8]) -> String {
    let h = crate::crypto::hex(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_and_header_framing() {
        assert_eq!(detect(b"{\"a\":1}", None).unwrap(), None);
        let framed = detect(&[0, 0, 0, 1, 2, 9, 9], None).unwrap().unwrap();
        assert_eq!(framed, Framed { schema: SchemaRef::Id(258), prefix_len: 5 });
        assert!(detect(&[0, 0, 1], None).is_err());
        let mut h = vec![1u8];
        h.extend(0u8..16);
        let framed = detect(b"payload", Some(&h)).unwrap().unwrap();
        assert_eq!(framed.schema, SchemaRef::Guid("00010203-0405-0607-0809-0a0b0c0d0e0f".into()));
        assert_eq!(framed.prefix_len, 0);
        assert!(detect(b"x", Some(&[1, 2])).is_err());
    }

    #[test]
    fn protobuf_indexes() {
        assert_eq!(message_indexes(&[0, 0x0a]).unwrap(), (vec![0], 1));
        // count 2 (zigzag 4), indexes 1 (2) and 3 (6)
        assert_eq!(message_indexes(&[4, 2, 6, 0x0a]).unwrap(), (vec![1, 3], 3));
        assert!(message_indexes(&[4, 2]).is_err());
        assert!(message_indexes(&[]).is_err());
    }
}
