//! Schema-directed Avro encoding and decoding of a generic value tree ([`AvroValue`]): what a
//! language binding needs to offer a drop-in `AvroSerializer` (its objects → [`AvroValue`] →
//! Avro binary, in one call with the encryption). The schema is the same compiled type graph
//! the scanner uses ([`AvroSchema`]), so the named types, references and tags are resolved once.
//!
//! The tree is deliberately loose, as dynamic languages' records are: a record is a
//! [`AvroValue::Map`] of its field names, `int`/`long` (and their logical types) are
//! [`AvroValue::Long`], `float`/`double` are [`AvroValue::Double`] (a `Long` is accepted too),
//! an enum is its symbol as a [`AvroValue::String`], a `fixed` is [`AvroValue::Bytes`]. A union
//! takes the first branch the value fits (`null` for [`AvroValue::Null`], a record or map for a
//! `Map`, ...). A record field missing from the map is written as `null` when its type allows
//! one (`null`, or a union with a `null` branch); otherwise it is an error. Field defaults other
//! than `null` are not applied.

use super::{put_long, AvroSchema, Ty, TyId, MAX_DEPTH};
use crate::error::{Error, ErrorKind, Result};

/// A generic Avro value (see the module documentation for how it maps to the schema types).
#[derive(Debug, Clone, PartialEq)]
pub enum AvroValue {
    Null,
    Boolean(bool),
    Long(i64),
    Double(f64),
    String(String),
    Bytes(Vec<u8>),
    Array(Vec<AvroValue>),
    /// A record (field name → value) or a map, in order.
    Map(Vec<(String, AvroValue)>),
}

/// A parsed Avro schema that encodes [`AvroValue`]s to Avro binary and decodes them back.
#[derive(Debug)]
pub struct AvroDatumSchema {
    schema: AvroSchema,
}

fn err(detail: impl Into<String>) -> Error {
    Error::new(ErrorKind::Format, detail.into())
}

impl AvroDatumSchema {
    /// Parses a schema; `references` are the texts of the named types it refers to.
    pub fn parse(schema_json: &str, references: &[String]) -> Result<AvroDatumSchema> {
        Ok(AvroDatumSchema { schema: AvroSchema::parse(schema_json, references)? })
    }

    /// Appends the Avro binary encoding of `value` to `out`.
    pub fn encode(&self, value: &AvroValue, out: &mut Vec<u8>) -> Result<()> {
        self.enc(self.schema.root, value, out, 0, &mut Vec::new())
    }

    /// Decodes one datum; the whole input must be consumed.
    pub fn decode(&self, bytes: &[u8]) -> Result<AvroValue> {
        let mut r = Reader { bytes, pos: 0 };
        let v = self.dec(self.schema.root, &mut r, 0)?;
        if r.pos != bytes.len() {
            return Err(err(format!("{} bytes after the Avro datum", bytes.len() - r.pos)));
        }
        Ok(v)
    }

    fn ty(&self, t: TyId) -> &Ty {
        &self.schema.types[t as usize]
    }

    fn fits(&self, t: TyId, v: &AvroValue) -> bool {
        matches!(
            (self.ty(t), v),
            (Ty::Null, AvroValue::Null)
                | (Ty::Boolean, AvroValue::Boolean(_))
                | (Ty::Int(_) | Ty::Long(_), AvroValue::Long(_))
                | (Ty::Float | Ty::Double, AvroValue::Double(_) | AvroValue::Long(_))
                | (Ty::String | Ty::Enum { .. }, AvroValue::String(_))
                | (Ty::Bytes | Ty::Blob(_) | Ty::Fixed { .. }, AvroValue::Bytes(_))
                | (Ty::Blob(_), AvroValue::String(_))
                | (Ty::Array(_), AvroValue::Array(_))
                | (Ty::Map(_) | Ty::Record(_), AvroValue::Map(_))
        )
    }

    /// `path` names where the encoder is, for messages (field names only: never values).
    fn enc(&self, t: TyId, v: &AvroValue, out: &mut Vec<u8>, depth: u32, path: &mut Vec<String>) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(err("the value is nested too deeply"));
        }
        let mismatch = |path: &Vec<String>| {
            err(format!("{}: a {} value does not fit {}", at(path), kind(v), self.schema.describe(t)))
        };
        match (self.ty(t), v) {
            (Ty::Null, AvroValue::Null) => {}
            (Ty::Boolean, AvroValue::Boolean(b)) => out.push(u8::from(*b)),
            (Ty::Int(_), AvroValue::Long(n)) => {
                let n = i32::try_from(*n).map_err(|_| err(format!("{}: the number does not fit an int", at(path))))?;
                put_long(out, i64::from(n));
            }
            (Ty::Long(_), AvroValue::Long(n)) => put_long(out, *n),
            (Ty::Float, AvroValue::Double(d)) => out.extend_from_slice(&(*d as f32).to_le_bytes()),
            (Ty::Float, AvroValue::Long(n)) => out.extend_from_slice(&(*n as f32).to_le_bytes()),
            (Ty::Double, AvroValue::Double(d)) => out.extend_from_slice(&d.to_le_bytes()),
            (Ty::Double, AvroValue::Long(n)) => out.extend_from_slice(&(*n as f64).to_le_bytes()),
            (Ty::String | Ty::Blob(_), AvroValue::String(s)) => put_bytes(out, s.as_bytes()),
            (Ty::Bytes | Ty::Blob(_), AvroValue::Bytes(b)) => put_bytes(out, b),
            (Ty::Fixed { size, .. }, AvroValue::Bytes(b)) => {
                if b.len() != *size {
                    return Err(err(format!("{}: {} bytes for a fixed of size {size}", at(path), b.len())));
                }
                out.extend_from_slice(b);
            }
            (Ty::Enum { symbols, name }, AvroValue::String(s)) => {
                let i = symbols
                    .iter()
                    .position(|x| x == s)
                    .ok_or_else(|| err(format!("{}: not a symbol of enum {name}", at(path))))?;
                put_long(out, i as i64);
            }
            (Ty::Array(items), AvroValue::Array(vs)) => {
                if !vs.is_empty() {
                    put_long(out, vs.len() as i64);
                    for x in vs {
                        self.enc(*items, x, out, depth + 1, path)?;
                    }
                }
                out.push(0);
            }
            (Ty::Map(values), AvroValue::Map(kvs)) => {
                if !kvs.is_empty() {
                    put_long(out, kvs.len() as i64);
                    for (k, x) in kvs {
                        put_bytes(out, k.as_bytes());
                        self.enc(*values, x, out, depth + 1, path)?;
                    }
                }
                out.push(0);
            }
            (Ty::Record(r), AvroValue::Map(kvs)) => {
                for (i, f) in r.fields.iter().enumerate() {
                    // Fields usually come in schema order: look there first.
                    let found = match kvs.get(i) {
                        Some((k, x)) if *k == f.name => Some(x),
                        _ => kvs.iter().find(|(k, _)| *k == f.name).map(|(_, x)| x),
                    };
                    path.push(f.name.clone());
                    match found {
                        Some(x) => self.enc(f.ty, x, out, depth + 1, path)?,
                        None => self.enc(f.ty, &AvroValue::Null, out, depth + 1, path).map_err(|_| {
                            err(format!("{}: the record has no such field and it has no null", at(path)))
                        })?,
                    }
                    path.pop();
                }
            }
            (Ty::Union(branches), _) => {
                let (i, b) =
                    branches.iter().enumerate().find(|(_, b)| self.fits(**b, v)).ok_or_else(|| mismatch(path))?;
                put_long(out, i as i64);
                self.enc(*b, v, out, depth + 1, path)?;
            }
            _ => return Err(mismatch(path)),
        }
        Ok(())
    }

    fn dec(&self, t: TyId, r: &mut Reader<'_>, depth: u32) -> Result<AvroValue> {
        if depth > MAX_DEPTH {
            return Err(err("the Avro datum is nested too deeply"));
        }
        Ok(match self.ty(t) {
            Ty::Null => AvroValue::Null,
            Ty::Boolean => match r.byte()? {
                0 => AvroValue::Boolean(false),
                1 => AvroValue::Boolean(true),
                _ => return Err(err("an Avro boolean is neither 0 nor 1")),
            },
            Ty::Int(_) => {
                let n = r.long()?;
                i32::try_from(n).map_err(|_| err("an Avro int is out of range"))?;
                AvroValue::Long(n)
            }
            Ty::Long(_) => AvroValue::Long(r.long()?),
            Ty::Float => AvroValue::Double(f64::from(f32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes")))),
            Ty::Double => AvroValue::Double(f64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"))),
            Ty::String => {
                let n = r.len()?;
                let s = std::str::from_utf8(r.take(n)?).map_err(|_| err("an Avro string is not UTF-8"))?;
                AvroValue::String(s.to_string())
            }
            Ty::Bytes | Ty::Blob(_) => {
                let n = r.len()?;
                AvroValue::Bytes(r.take(n)?.to_vec())
            }
            Ty::Fixed { size, .. } => AvroValue::Bytes(r.take(*size)?.to_vec()),
            Ty::Enum { symbols, .. } => {
                let i = r.long()?;
                let s = usize::try_from(i).ok().and_then(|i| symbols.get(i));
                AvroValue::String(s.ok_or_else(|| err("an Avro enum index is out of range"))?.clone())
            }
            Ty::Array(items) => {
                let mut out = Vec::new();
                while let Some(n) = r.block()? {
                    for _ in 0..n {
                        out.push(self.dec(*items, r, depth + 1)?);
                    }
                }
                AvroValue::Array(out)
            }
            Ty::Map(values) => {
                let mut out = Vec::new();
                while let Some(n) = r.block()? {
                    for _ in 0..n {
                        let k = r.len()?;
                        let k = std::str::from_utf8(r.take(k)?).map_err(|_| err("an Avro map key is not UTF-8"))?;
                        let k = k.to_string();
                        out.push((k, self.dec(*values, r, depth + 1)?));
                    }
                }
                AvroValue::Map(out)
            }
            Ty::Union(branches) => {
                let i = r.long()?;
                let b = usize::try_from(i).ok().and_then(|i| branches.get(i));
                self.dec(*b.ok_or_else(|| err("an Avro union index is out of range"))?, r, depth + 1)?
            }
            Ty::Record(rec) => {
                let mut out = Vec::with_capacity(rec.fields.len());
                for f in &rec.fields {
                    out.push((f.name.clone(), self.dec(f.ty, r, depth + 1)?));
                }
                AvroValue::Map(out)
            }
        })
    }
}

fn at(path: &[String]) -> String {
    if path.is_empty() {
        "the value".into()
    } else {
        format!("field {}", path.join("."))
    }
}

fn kind(v: &AvroValue) -> &'static str {
    match v {
        AvroValue::Null => "null",
        AvroValue::Boolean(_) => "boolean",
        AvroValue::Long(_) => "integer",
        AvroValue::Double(_) => "float",
        AvroValue::String(_) => "string",
        AvroValue::Bytes(_) => "bytes",
        AvroValue::Array(_) => "array",
        AvroValue::Map(_) => "map",
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn truncated() -> Error {
        err("the Avro datum is truncated")
    }

    fn byte(&mut self) -> Result<u8> {
        let b = *self.bytes.get(self.pos).ok_or_else(Self::truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(Self::truncated)?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn long(&mut self) -> Result<i64> {
        let mut z: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            z |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        Err(err("an Avro varint is too long"))
    }

    fn len(&mut self) -> Result<usize> {
        let n = self.long()?;
        usize::try_from(n).ok().filter(|&n| n <= self.bytes.len() - self.pos).ok_or_else(Self::truncated)
    }

    /// The item count of the next array or map block; None at the end marker.
    fn block(&mut self) -> Result<Option<usize>> {
        let n = self.long()?;
        if n == 0 {
            return Ok(None);
        }
        if n < 0 {
            self.long()?; // the block's byte size
        }
        let n = usize::try_from(n.unsigned_abs()).map_err(|_| err("an Avro block count is out of range"))?;
        // Every item takes at least... zero bytes (null items): bound by the remaining input
        // only for the preallocation, which the loop does not do.
        Ok(Some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Value;

    const PAYMENT: &str = r#"{
      "type": "record", "name": "Payment", "namespace": "bench",
      "fields": [
        {"name": "id", "type": "string"},
        {"name": "customer_id", "type": "long"},
        {"name": "email", "type": "string", "confluent:tags": ["PII"]},
        {"name": "n", "type": "int"},
        {"name": "ratio", "type": "double"},
        {"name": "f", "type": "float"},
        {"name": "ok", "type": "boolean"},
        {"name": "raw", "type": "bytes"},
        {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
        {"name": "fx", "type": {"type": "fixed", "name": "F2", "size": 2}},
        {"name": "address", "type": {"type": "record", "name": "Address",
          "fields": [{"name": "street", "type": "string"}, {"name": "zip", "type": "string"}]}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": "long"}},
        {"name": "home", "type": ["null", "Address"], "default": null},
        {"name": "phone", "type": ["null", "string"], "default": null}
      ]}"#;

    fn s(x: &str) -> AvroValue {
        AvroValue::String(x.into())
    }

    fn record(phone: AvroValue) -> AvroValue {
        let addr = AvroValue::Map(vec![("street".into(), s("1 Main St")), ("zip".into(), s("94043"))]);
        AvroValue::Map(vec![
            ("id".into(), s("p-1")),
            ("customer_id".into(), AvroValue::Long(123_456_789_012)),
            ("email".into(), s("jane@example.com")),
            ("n".into(), AvroValue::Long(-7)),
            ("ratio".into(), AvroValue::Double(0.25)),
            ("f".into(), AvroValue::Double(1.5)),
            ("ok".into(), AvroValue::Boolean(true)),
            ("raw".into(), AvroValue::Bytes(vec![0, 1, 255])),
            ("color".into(), s("GREEN")),
            ("fx".into(), AvroValue::Bytes(vec![9, 8])),
            ("address".into(), addr.clone()),
            ("tags".into(), AvroValue::Array(vec![s("a"), s("b")])),
            ("attrs".into(), AvroValue::Map(vec![("x".into(), AvroValue::Long(1))])),
            ("home".into(), addr),
            ("phone".into(), phone),
        ])
    }

    #[test]
    fn round_trips_and_matches_apache_avro() {
        let schema = AvroDatumSchema::parse(PAYMENT, &[]).unwrap();
        let avro = apache_avro::Schema::parse_str(PAYMENT).unwrap();
        for phone in [AvroValue::Null, s("+1-650")] {
            let v = record(phone);
            let mut out = Vec::new();
            schema.encode(&v, &mut out).unwrap();
            assert_eq!(schema.decode(&out).unwrap(), v);
            // apache-avro reads what we write, with the same values.
            let read = apache_avro::from_avro_datum(&avro, &mut &out[..], None).unwrap();
            let Value::Record(fields) = &read else { panic!("{read:?}") };
            assert_eq!(fields[0], ("id".into(), Value::String("p-1".into())));
            assert_eq!(fields[8], ("color".into(), Value::Enum(1, "GREEN".into())));
            // and we read what apache-avro writes.
            let theirs = apache_avro::to_avro_datum(&avro, read).unwrap();
            assert_eq!(theirs, out);
        }
    }

    #[test]
    fn missing_nullable_fields_are_null_and_fields_may_come_in_any_order() {
        let schema = AvroDatumSchema::parse(PAYMENT, &[]).unwrap();
        let AvroValue::Map(mut fields) = record(AvroValue::Null) else { unreachable!() };
        let mut full = Vec::new();
        schema.encode(&AvroValue::Map(fields.clone()), &mut full).unwrap();
        fields.retain(|(k, _)| k != "phone");
        fields.reverse();
        let mut out = Vec::new();
        schema.encode(&AvroValue::Map(fields.clone()), &mut out).unwrap();
        assert_eq!(out, full);
        fields.retain(|(k, _)| k != "email");
        let e = schema.encode(&AvroValue::Map(fields), &mut Vec::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Format);
        assert!(e.to_string().contains("field email"), "{e}");
    }

    #[test]
    fn type_mismatches_and_bad_input_are_format_errors_without_values() {
        let schema = AvroDatumSchema::parse(PAYMENT, &[]).unwrap();
        let AvroValue::Map(mut fields) = record(AvroValue::Null) else { unreachable!() };
        fields[2].1 = AvroValue::Long(5);
        let e = schema.encode(&AvroValue::Map(fields.clone()), &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("field email") && e.to_string().contains("integer"), "{e}");
        fields[2].1 = s("x");
        fields[3].1 = AvroValue::Long(1 << 40);
        assert!(schema.encode(&AvroValue::Map(fields.clone()), &mut Vec::new()).is_err());
        fields[3].1 = AvroValue::Long(1);
        fields[8].1 = s("BLUE");
        assert!(schema.encode(&AvroValue::Map(fields.clone()), &mut Vec::new()).is_err());
        fields[8].1 = s("RED");
        fields[14].1 = AvroValue::Long(1);
        let e = schema.encode(&AvroValue::Map(fields.clone()), &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("union"), "{e}");
        fields[14].1 = s("secret-phone");
        let mut out = Vec::new();
        schema.encode(&AvroValue::Map(fields), &mut out).unwrap();
        for cut in 0..out.len() {
            let e = schema.decode(&out[..cut]).unwrap_err();
            assert!(!e.to_string().contains("secret"), "{e}");
        }
        out.push(0);
        assert!(schema.decode(&out).is_err());
    }

    #[test]
    fn reads_sized_blocks() {
        let schema = AvroDatumSchema::parse(r#"{"type": "array", "items": "long"}"#, &[]).unwrap();
        // -2 items in 2 bytes, then 1, 2, then the end.
        let bytes = [3, 4, 2, 4, 0];
        assert_eq!(schema.decode(&bytes).unwrap(), AvroValue::Array(vec![AvroValue::Long(1), AvroValue::Long(2)]));
    }
}
