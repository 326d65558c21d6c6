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
//!
//! Strings and bytes are [`Cow`]s: a binding borrows its objects' text and bytes to encode
//! them without copying. Decoding can skip the tree: [`AvroDatumSchema::decode_with`] hands
//! each decoded value to an [`AvroBuilder`] (a binding's, to build its own objects directly),
//! with strings and bytes borrowed from the input and record fields numbered per schema (see
//! [`AvroDatumSchema::field_names`]) so a binding can reuse one key object per field.

use std::borrow::Cow;

use super::{put_long, AvroSchema, Ty, TyId, MAX_DEPTH};
use crate::error::{Error, ErrorKind, Result};

/// A generic Avro value (see the module documentation for how it maps to the schema types).
#[derive(Debug, Clone, PartialEq)]
pub enum AvroValue<'a> {
    Null,
    Boolean(bool),
    Long(i64),
    Double(f64),
    String(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
    Array(Vec<AvroValue<'a>>),
    /// A record (field name → value) or a map, in order.
    Map(Vec<(Cow<'a, str>, AvroValue<'a>)>),
}

/// Builds a decoded datum bottom-up, in input order (see [`AvroDatumSchema::decode_with`]).
/// `int`/`long` come as [`AvroBuilder::long`], `float`/`double` as [`AvroBuilder::double`], an
/// enum as its symbol ([`AvroBuilder::string`]), `fixed` and the length-prefixed logical types
/// as [`AvroBuilder::bytes`]; a union is its branch's value.
pub trait AvroBuilder<'a> {
    type Value;
    /// An array or map under construction.
    type Seq;
    /// The error the builder fails with; the decoder's own are converted.
    type Error: From<Error>;

    fn null(&mut self) -> std::result::Result<Self::Value, Self::Error>;
    fn boolean(&mut self, b: bool) -> std::result::Result<Self::Value, Self::Error>;
    fn long(&mut self, n: i64) -> std::result::Result<Self::Value, Self::Error>;
    fn double(&mut self, d: f64) -> std::result::Result<Self::Value, Self::Error>;
    fn string(&mut self, s: &'a str) -> std::result::Result<Self::Value, Self::Error>;
    fn bytes(&mut self, b: &'a [u8]) -> std::result::Result<Self::Value, Self::Error>;
    /// An enum symbol (the schema's text, not the input's).
    fn symbol(&mut self, s: &str) -> std::result::Result<Self::Value, Self::Error>;
    /// A new array.
    fn array(&mut self) -> std::result::Result<Self::Seq, Self::Error>;
    fn push(&mut self, array: &mut Self::Seq, v: Self::Value) -> std::result::Result<(), Self::Error>;
    /// A new map, or a new record of `fields` fields (`record`).
    fn map(&mut self, record: bool, fields: usize) -> std::result::Result<Self::Seq, Self::Error>;
    /// A map entry.
    fn entry(&mut self, map: &mut Self::Seq, key: &'a str, v: Self::Value) -> std::result::Result<(), Self::Error>;
    /// A record field: `slot` is its index in [`AvroDatumSchema::field_names`] (whose name is `name`).
    fn field(
        &mut self,
        record: &mut Self::Seq,
        slot: usize,
        name: &str,
        v: Self::Value,
    ) -> std::result::Result<(), Self::Error>;
    /// The finished array, map or record.
    fn end(&mut self, seq: Self::Seq) -> std::result::Result<Self::Value, Self::Error>;
}

/// The builder of [`AvroDatumSchema::decode`]: the [`AvroValue`] tree, borrowing the input.
struct TreeBuilder;

impl<'a> AvroBuilder<'a> for TreeBuilder {
    type Value = AvroValue<'a>;
    type Seq = AvroValue<'a>;
    type Error = Error;

    fn null(&mut self) -> Result<AvroValue<'a>> {
        Ok(AvroValue::Null)
    }
    fn boolean(&mut self, b: bool) -> Result<AvroValue<'a>> {
        Ok(AvroValue::Boolean(b))
    }
    fn long(&mut self, n: i64) -> Result<AvroValue<'a>> {
        Ok(AvroValue::Long(n))
    }
    fn double(&mut self, d: f64) -> Result<AvroValue<'a>> {
        Ok(AvroValue::Double(d))
    }
    fn string(&mut self, s: &'a str) -> Result<AvroValue<'a>> {
        Ok(AvroValue::String(Cow::Borrowed(s)))
    }
    fn bytes(&mut self, b: &'a [u8]) -> Result<AvroValue<'a>> {
        Ok(AvroValue::Bytes(Cow::Borrowed(b)))
    }
    fn symbol(&mut self, s: &str) -> Result<AvroValue<'a>> {
        Ok(AvroValue::String(Cow::Owned(s.to_owned())))
    }
    fn array(&mut self) -> Result<AvroValue<'a>> {
        Ok(AvroValue::Array(Vec::new()))
    }
    fn push(&mut self, array: &mut AvroValue<'a>, v: AvroValue<'a>) -> Result<()> {
        if let AvroValue::Array(items) = array {
            items.push(v);
        }
        Ok(())
    }
    fn map(&mut self, _record: bool, fields: usize) -> Result<AvroValue<'a>> {
        Ok(AvroValue::Map(Vec::with_capacity(fields)))
    }
    fn entry(&mut self, map: &mut AvroValue<'a>, key: &'a str, v: AvroValue<'a>) -> Result<()> {
        if let AvroValue::Map(kvs) = map {
            kvs.push((Cow::Borrowed(key), v));
        }
        Ok(())
    }
    fn field(&mut self, record: &mut AvroValue<'a>, _slot: usize, name: &str, v: AvroValue<'a>) -> Result<()> {
        if let AvroValue::Map(kvs) = record {
            kvs.push((Cow::Owned(name.to_owned()), v));
        }
        Ok(())
    }
    fn end(&mut self, seq: AvroValue<'a>) -> Result<AvroValue<'a>> {
        Ok(seq)
    }
}

/// A parsed Avro schema that encodes [`AvroValue`]s to Avro binary and decodes them back.
#[derive(Debug)]
pub struct AvroDatumSchema {
    schema: AvroSchema,
    /// Per type: the slot of a record's first field (records' fields are numbered in type order).
    field_base: Vec<usize>,
}

fn err(detail: impl Into<String>) -> Error {
    Error::new(ErrorKind::Format, detail.into())
}

impl AvroDatumSchema {
    /// Parses a schema; `references` are the texts of the named types it refers to.
    pub fn parse(schema_json: &str, references: &[String]) -> Result<AvroDatumSchema> {
        let schema = AvroSchema::parse(schema_json, references)?;
        let mut field_base = Vec::with_capacity(schema.types.len());
        let mut next = 0;
        for t in &schema.types {
            field_base.push(next);
            if let Ty::Record(r) = t {
                next += r.fields.len();
            }
        }
        Ok(AvroDatumSchema { schema, field_base })
    }

    /// The names of all record fields of the schema, by slot (see [`AvroBuilder::field`]).
    pub fn field_names(&self) -> Vec<&str> {
        let records = self.schema.types.iter().filter_map(|t| if let Ty::Record(r) = t { Some(r) } else { None });
        records.flat_map(|r| r.fields.iter().map(|f| f.name.as_str())).collect()
    }

    /// Appends the Avro binary encoding of `value` to `out`.
    pub fn encode(&self, value: &AvroValue<'_>, out: &mut Vec<u8>) -> Result<()> {
        self.enc(self.schema.root, value, out, 0, &mut Vec::new())
    }

    /// Decodes one datum; the whole input must be consumed. Strings and bytes borrow `bytes`.
    pub fn decode<'a>(&self, bytes: &'a [u8]) -> Result<AvroValue<'a>> {
        self.decode_with(bytes, &mut TreeBuilder)
    }

    /// Decodes one datum into `builder`'s values; the whole input must be consumed.
    pub fn decode_with<'a, B: AvroBuilder<'a>>(
        &self,
        bytes: &'a [u8],
        builder: &mut B,
    ) -> std::result::Result<B::Value, B::Error> {
        let mut r = Reader::new(bytes);
        let v = self.dec(self.schema.root, &mut r, 0, builder)?;
        if r.pos != bytes.len() {
            return Err(err(format!("{} bytes after the Avro datum", bytes.len() - r.pos)).into());
        }
        Ok(v)
    }

    fn ty(&self, t: TyId) -> &Ty {
        &self.schema.types[t as usize]
    }

    fn fits(&self, t: TyId, v: &AvroValue<'_>) -> bool {
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
    fn enc<'s>(
        &'s self,
        t: TyId,
        v: &AvroValue<'_>,
        out: &mut Vec<u8>,
        depth: u32,
        path: &mut Vec<&'s str>,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(err("the value is nested too deeply"));
        }
        let mismatch = |path: &Vec<&str>| {
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
                    .position(|x| *x == **s)
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
                    path.push(&f.name);
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

    fn dec<'a, B: AvroBuilder<'a>>(
        &self,
        t: TyId,
        r: &mut Reader<'a>,
        depth: u32,
        b: &mut B,
    ) -> std::result::Result<B::Value, B::Error> {
        if depth > MAX_DEPTH {
            return Err(err("the Avro datum is nested too deeply").into());
        }
        match self.ty(t) {
            Ty::Null => b.null(),
            Ty::Boolean => match r.byte()? {
                0 => b.boolean(false),
                1 => b.boolean(true),
                _ => Err(err("an Avro boolean is neither 0 nor 1").into()),
            },
            Ty::Int(_) => {
                let n = r.long()?;
                i32::try_from(n).map_err(|_| err("an Avro int is out of range"))?;
                b.long(n)
            }
            Ty::Long(_) => b.long(r.long()?),
            Ty::Float => b.double(f64::from(f32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes")))),
            Ty::Double => b.double(f64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"))),
            Ty::String => {
                let n = r.len()?;
                b.string(std::str::from_utf8(r.take(n)?).map_err(|_| err("an Avro string is not UTF-8"))?)
            }
            Ty::Bytes | Ty::Blob(_) => {
                let n = r.len()?;
                b.bytes(r.take(n)?)
            }
            Ty::Fixed { size, .. } => b.bytes(r.take(*size)?),
            Ty::Enum { symbols, .. } => {
                let i = r.long()?;
                let s = usize::try_from(i).ok().and_then(|i| symbols.get(i));
                let s: &str = s.ok_or_else(|| err("an Avro enum index is out of range"))?;
                b.symbol(s)
            }
            Ty::Array(items) => {
                let mut out = b.array()?;
                // Items of zero bytes cost no input: bound their count by the input's size, or a
                // few bytes could ask for 2^62 values.
                let zero = self.schema.zero_sized(*items, &mut Vec::new());
                while let Some(n) = r.block()? {
                    if zero {
                        r.zero_items_left = r.zero_items_left.checked_sub(n).ok_or_else(|| {
                            err(format!("the Avro datum holds more than {MAX_ZERO_ITEMS} zero-byte array items"))
                        })?;
                    }
                    for _ in 0..n {
                        let v = self.dec(*items, r, depth + 1, b)?;
                        b.push(&mut out, v)?;
                    }
                }
                b.end(out)
            }
            Ty::Map(values) => {
                let mut out = b.map(false, 0)?;
                while let Some(n) = r.block()? {
                    for _ in 0..n {
                        let k = r.len()?;
                        let k = std::str::from_utf8(r.take(k)?).map_err(|_| err("an Avro map key is not UTF-8"))?;
                        let v = self.dec(*values, r, depth + 1, b)?;
                        b.entry(&mut out, k, v)?;
                    }
                }
                b.end(out)
            }
            Ty::Union(branches) => {
                let i = r.long()?;
                let br = usize::try_from(i).ok().and_then(|i| branches.get(i));
                self.dec(*br.ok_or_else(|| err("an Avro union index is out of range"))?, r, depth + 1, b)
            }
            Ty::Record(rec) => {
                let base = self.field_base[t as usize];
                let mut out = b.map(true, rec.fields.len())?;
                for (i, f) in rec.fields.iter().enumerate() {
                    let v = self.dec(f.ty, r, depth + 1, b)?;
                    b.field(&mut out, base + i, &f.name, v)?;
                }
                b.end(out)
            }
        }
    }
}

fn at(path: &[&str]) -> String {
    if path.is_empty() {
        "the value".into()
    } else {
        format!("field {}", path.join("."))
    }
}

fn kind(v: &AvroValue<'_>) -> &'static str {
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
    /// Array items of zero bytes (null, empty records) still to be accepted in this datum: they
    /// cost no input, so without a bound a few bytes could ask for 2^62 values.
    zero_items_left: usize,
}

/// The most zero-byte array items one datum may hold.
const MAX_ZERO_ITEMS: usize = 1 << 20;

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0, zero_items_left: MAX_ZERO_ITEMS }
    }
}

impl<'a> Reader<'a> {
    fn truncated() -> Error {
        err("the Avro datum is truncated")
    }

    fn byte(&mut self) -> Result<u8> {
        let b = *self.bytes.get(self.pos).ok_or_else(Self::truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(Self::truncated)?;
        let bytes: &'a [u8] = self.bytes;
        let s = &bytes[self.pos..end];
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

/// Reading one top-level field without decoding the rest (per-subject keys).
impl AvroSchema {
    /// The text of the root record's field `member`: a string (or `uuid`), an int or long in
    /// decimal, an enum symbol, or one of those in a union; `None` for null, other types, a
    /// root that is not a record, or no such field.
    pub(crate) fn top_level_text(&self, bytes: &[u8], member: &str) -> Result<Option<String>> {
        let Ty::Record(rec) = &self.types[self.root as usize] else { return Ok(None) };
        let mut r = Reader::new(bytes);
        for f in &rec.fields {
            if f.name == member {
                return self.scalar_text(f.ty, &mut r, true);
            }
            self.skip(f.ty, &mut r, 1)?;
        }
        Ok(None)
    }

    fn scalar_text(&self, t: TyId, r: &mut Reader<'_>, union_allowed: bool) -> Result<Option<String>> {
        Ok(match &self.types[t as usize] {
            Ty::String | Ty::Blob("uuid") => {
                let n = r.len()?;
                Some(std::str::from_utf8(r.take(n)?).map_err(|_| err("an Avro string is not UTF-8"))?.to_string())
            }
            Ty::Int(_) | Ty::Long(_) => Some(r.long()?.to_string()),
            Ty::Enum { symbols, .. } => {
                let i = r.long()?;
                let s = usize::try_from(i).ok().and_then(|i| symbols.get(i));
                Some(s.ok_or_else(|| err("an Avro enum index is out of range"))?.clone())
            }
            Ty::Union(branches) if union_allowed => {
                let i = r.long()?;
                let b = usize::try_from(i).ok().and_then(|i| branches.get(i));
                self.scalar_text(*b.ok_or_else(|| err("an Avro union index is out of range"))?, r, false)?
            }
            _ => None,
        })
    }

    /// Moves `r` past one value of type `t`.
    fn skip(&self, t: TyId, r: &mut Reader<'_>, depth: u32) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(err("the Avro datum is nested too deeply"));
        }
        match &self.types[t as usize] {
            Ty::Null => {}
            Ty::Boolean => {
                r.byte()?;
            }
            Ty::Int(_) | Ty::Long(_) | Ty::Enum { .. } => {
                r.long()?;
            }
            Ty::Float => {
                r.take(4)?;
            }
            Ty::Double => {
                r.take(8)?;
            }
            Ty::String | Ty::Bytes | Ty::Blob(_) => {
                let n = r.len()?;
                r.take(n)?;
            }
            Ty::Fixed { size, .. } => {
                r.take(*size)?;
            }
            Ty::Array(items) => self.skip_blocks(*items, false, r, depth)?,
            Ty::Map(values) => self.skip_blocks(*values, true, r, depth)?,
            Ty::Union(branches) => {
                let i = r.long()?;
                let b = usize::try_from(i).ok().and_then(|i| branches.get(i));
                self.skip(*b.ok_or_else(|| err("an Avro union index is out of range"))?, r, depth + 1)?;
            }
            Ty::Record(rec) => {
                for f in &rec.fields {
                    self.skip(f.ty, r, depth + 1)?;
                }
            }
        }
        Ok(())
    }

    fn skip_blocks(&self, item: TyId, keyed: bool, r: &mut Reader<'_>, depth: u32) -> Result<()> {
        // Array items of zero bytes (null, empty records) take no input: their blocks are passed
        // whole, so a huge count is no long loop.
        let zero = !keyed && self.zero_sized(item, &mut Vec::new());
        while let Some(n) = r.block()? {
            for _ in 0..if zero { 0 } else { n } {
                if keyed {
                    let k = r.len()?;
                    r.take(k)?;
                }
                self.skip(item, r, depth + 1)?;
            }
        }
        Ok(())
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

    fn s(x: &str) -> AvroValue<'_> {
        AvroValue::String(x.into())
    }

    fn record(phone: AvroValue<'static>) -> AvroValue<'static> {
        let addr = AvroValue::Map(vec![("street".into(), s("1 Main St")), ("zip".into(), s("94043"))]);
        AvroValue::Map(vec![
            ("id".into(), s("p-1")),
            ("customer_id".into(), AvroValue::Long(123_456_789_012)),
            ("email".into(), s("jane@example.com")),
            ("n".into(), AvroValue::Long(-7)),
            ("ratio".into(), AvroValue::Double(0.25)),
            ("f".into(), AvroValue::Double(1.5)),
            ("ok".into(), AvroValue::Boolean(true)),
            ("raw".into(), AvroValue::Bytes(vec![0, 1, 255].into())),
            ("color".into(), s("GREEN")),
            ("fx".into(), AvroValue::Bytes(vec![9, 8].into())),
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
    fn top_level_fields_read_past_every_other_type() {
        let schema = AvroDatumSchema::parse(PAYMENT, &[]).unwrap();
        for phone in [AvroValue::Null, s("+1-650")] {
            let mut out = Vec::new();
            schema.encode(&record(phone.clone()), &mut out).unwrap();
            let read = |m: &str| schema.schema.top_level_text(&out, m).unwrap();
            assert_eq!(read("id").as_deref(), Some("p-1"));
            assert_eq!(read("customer_id").as_deref(), Some("123456789012"));
            assert_eq!(read("n").as_deref(), Some("-7"));
            assert_eq!(read("color").as_deref(), Some("GREEN"));
            assert_eq!(read("phone"), if phone == AvroValue::Null { None } else { Some("+1-650".into()) });
            // Not scalar text, or not there: None.
            for other in ["ratio", "ok", "raw", "fx", "address", "tags", "attrs", "home", "nope"] {
                assert_eq!(read(other), None, "{other}");
            }
            // Truncated input is an error, never a panic.
            for cut in 0..out.len() - 1 {
                let _ = schema.schema.top_level_text(&out[..cut], "phone");
            }
        }
        // A huge block of zero-byte items is skipped at once.
        let nulls = r#"{"type": "record", "name": "N", "fields": [
            {"name": "z", "type": {"type": "array", "items": "null"}}, {"name": "id", "type": "string"}]}"#;
        let schema = AvroDatumSchema::parse(nulls, &[]).unwrap();
        let mut out = Vec::new();
        put_long(&mut out, i64::MAX / 2);
        out.push(0);
        put_bytes(&mut out, b"c-1");
        assert_eq!(schema.schema.top_level_text(&out, "id").unwrap().as_deref(), Some("c-1"));
    }

    #[test]
    fn a_huge_block_of_zero_byte_items_is_refused_not_allocated() {
        let nulls =
            r#"{"type": "record", "name": "N", "fields": [{"name": "z", "type": {"type": "array", "items": "null"}}]}"#;
        let schema = AvroDatumSchema::parse(nulls, &[]).unwrap();
        let mut out = Vec::new();
        put_long(&mut out, i64::MAX / 2);
        out.push(0);
        assert_eq!(schema.decode(&out).unwrap_err().kind(), ErrorKind::Format);
        // A block as long as the datum still decodes.
        let out = [0x06, 0x00]; // 3 nulls in 2 bytes
        assert_eq!(
            schema.decode(&out).unwrap(),
            AvroValue::Map(vec![("z".into(), AvroValue::Array(vec![AvroValue::Null; 3]))])
        );
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

    /// Records the field slots a builder is given, and builds the tree.
    struct Slots(Vec<(usize, String)>);

    impl<'a> AvroBuilder<'a> for Slots {
        type Value = AvroValue<'a>;
        type Seq = AvroValue<'a>;
        type Error = Error;
        fn null(&mut self) -> Result<AvroValue<'a>> {
            TreeBuilder.null()
        }
        fn boolean(&mut self, b: bool) -> Result<AvroValue<'a>> {
            TreeBuilder.boolean(b)
        }
        fn long(&mut self, n: i64) -> Result<AvroValue<'a>> {
            TreeBuilder.long(n)
        }
        fn double(&mut self, d: f64) -> Result<AvroValue<'a>> {
            TreeBuilder.double(d)
        }
        fn string(&mut self, s: &'a str) -> Result<AvroValue<'a>> {
            TreeBuilder.string(s)
        }
        fn bytes(&mut self, b: &'a [u8]) -> Result<AvroValue<'a>> {
            TreeBuilder.bytes(b)
        }
        fn symbol(&mut self, s: &str) -> Result<AvroValue<'a>> {
            TreeBuilder.symbol(s)
        }
        fn array(&mut self) -> Result<AvroValue<'a>> {
            TreeBuilder.array()
        }
        fn push(&mut self, array: &mut AvroValue<'a>, v: AvroValue<'a>) -> Result<()> {
            TreeBuilder.push(array, v)
        }
        fn map(&mut self, record: bool, fields: usize) -> Result<AvroValue<'a>> {
            TreeBuilder.map(record, fields)
        }
        fn entry(&mut self, map: &mut AvroValue<'a>, key: &'a str, v: AvroValue<'a>) -> Result<()> {
            TreeBuilder.entry(map, key, v)
        }
        fn field(&mut self, record: &mut AvroValue<'a>, slot: usize, name: &str, v: AvroValue<'a>) -> Result<()> {
            self.0.push((slot, name.to_owned()));
            TreeBuilder.field(record, slot, name, v)
        }
        fn end(&mut self, seq: AvroValue<'a>) -> Result<AvroValue<'a>> {
            TreeBuilder.end(seq)
        }
    }

    #[test]
    fn builders_get_borrowed_values_and_one_slot_per_schema_field() {
        let schema = AvroDatumSchema::parse(PAYMENT, &[]).unwrap();
        let v = record(s("+1-650"));
        let mut out = Vec::new();
        schema.encode(&v, &mut out).unwrap();
        let mut slots = Slots(Vec::new());
        assert_eq!(schema.decode_with(&out, &mut slots).unwrap(), v);
        let names = schema.field_names();
        assert_eq!(names.len(), 17, "{names:?}"); // Payment's 15 and Address's 2, once
        for (slot, name) in &slots.0 {
            assert_eq!(names[*slot], name);
        }
        // `address` and `home` are the same Address: the same slots.
        let street: Vec<usize> = slots.0.iter().filter(|(_, n)| n == "street").map(|(i, _)| *i).collect();
        assert_eq!(street.len(), 2);
        assert_eq!(street[0], street[1]);
        // Strings are borrowed from the input.
        let AvroValue::Map(fields) = schema.decode(&out).unwrap() else { unreachable!() };
        assert!(matches!(fields[0].1, AvroValue::String(Cow::Borrowed("p-1"))));
    }

    #[test]
    fn reads_sized_blocks() {
        let schema = AvroDatumSchema::parse(r#"{"type": "array", "items": "long"}"#, &[]).unwrap();
        // -2 items in 2 bytes, then 1, 2, then the end.
        let bytes = [3, 4, 2, 4, 0];
        assert_eq!(schema.decode(&bytes).unwrap(), AvroValue::Array(vec![AvroValue::Long(1), AvroValue::Long(2)]));
    }
}
