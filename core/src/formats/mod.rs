//! Record formats. Each finds the values that policy paths select in an encoded record (a
//! [`Scan`]) and writes the record back with each selected value replaced through [`Emit`],
//! copying every other byte through unchanged. The codec decides what each value becomes
//! (ciphertext, plaintext, a fallback); formats only know their encoding.

pub(crate) mod avro;
pub(crate) mod json;
pub(crate) mod jsonschema;
pub(crate) mod protobuf;

use std::ops::Range;

use crate::error::Result;
use crate::policy::FieldPath;

/// Plaintext type markers: the first byte inside every field ciphertext (FORMAT.md §3).
pub(crate) const PLAIN_STRING: u8 = 0;
pub(crate) const PLAIN_JSON: u8 = 1;
pub(crate) const PLAIN_BYTES: u8 = 2;

/// What a selected value is, in its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueKind {
    /// A string field of a schema format: `value` is its UTF-8 text.
    Text,
    /// A bytes field of a schema format: `value` is the bytes.
    Bytes,
    /// Any JSON value: `value` is its JSON text exactly as it stands in the record.
    Json,
}

/// One value a path selected.
#[derive(Debug, Clone)]
pub(crate) struct Leaf<'a> {
    /// Index of the path that selected it, in the scanner's path list.
    pub path: usize,
    /// Its concrete location, a range of the scan's location text.
    pub at: Range<usize>,
    pub kind: ValueKind,
    pub value: &'a [u8],
}

/// Writes one selected value's replacement, in the record's own encoding.
pub(crate) trait Emit {
    /// A string (for a bytes field: its UTF-8 bytes).
    fn text(&mut self, text: &str) -> Result<()>;
    /// Bytes (a string field cannot hold them: an error).
    fn bytes(&mut self, bytes: &[u8]) -> Result<()>;
    /// A JSON value's text (JSON records only).
    fn json(&mut self, raw: &str) -> Result<()>;
    /// No value: `null`, or the format's nearest equivalent (documented per format).
    fn null(&mut self) -> Result<()>;
    /// The value as it was.
    fn keep(&mut self) -> Result<()>;
}

/// Fills the value of one leaf: `(leaf, its concrete location — `orders[2].visa`, bound into
/// associated data —, where to write)`.
pub(crate) type Fill<'f, 'a> = dyn FnMut(&Leaf<'a>, &str, &mut dyn Emit) -> Result<()> + 'f;

/// A scanned record.
pub(crate) trait Scan<'a> {
    /// The selected values, in record order. `null` values are never selected.
    fn leaves(&self) -> &[Leaf<'a>];
    /// The record with every leaf replaced by what `fill` emits for it.
    fn write(&self, fill: &mut Fill<'_, 'a>) -> Result<Vec<u8>>;
}

/// Scans records of one shape (schema) for one list of paths.
pub(crate) trait Scanner: Send + Sync {
    /// `what` names the record part in errors ("record value").
    fn scan<'a>(&self, payload: &'a [u8], what: &str) -> Result<Box<dyn Scan<'a> + 'a>>;
}

/// A parsed writer schema of a schema-registry format (Avro, Protobuf message, JSON Schema).
pub(crate) trait CompiledSchema: Send + Sync {
    /// The fields tagged with any of `tags` (`confluent:tags`, `(confluent.field_meta).tags`), as
    /// type-qualified paths `Full.TypeName::field`, in schema order, without duplicates.
    fn tagged_fields(&self, tags: &[String]) -> Vec<FieldPath>;

    /// A scanner for `paths`: root paths (`address.street`, `items[*].sku`, `attrs.*`) and
    /// type-qualified paths. A path the schema does not have, or that selects a field of a type
    /// the format cannot encrypt in place, is a [`crate::ErrorKind::Policy`] error naming it.
    fn scanner(&self, paths: Vec<FieldPath>) -> Result<Box<dyn Scanner>>;

    /// The text of the record's top-level field `member`, for per-subject keys: a string, an
    /// integer in decimal, an enum symbol. `None` when the schema has no such field, or the
    /// record holds null, nothing, or a value of another type there. JSON formats read the
    /// payload as a JSON object (the default); binary formats override this.
    fn top_level_text(&self, payload: &[u8], member: &str) -> Result<Option<String>> {
        json::top_level_text(payload, member)
    }

    /// Checks a record payload (without framing) against the schema, for
    /// [`crate::CodecBuilder::validate_json_schema`]: a [`crate::ErrorKind::Record`] error naming
    /// the schema and the failing location, never a value. Only JSON Schema validates; the
    /// binary formats' decoders already hold records to their schema, so they accept any.
    /// `what` names the record part ("record value").
    fn validate(&self, payload: &[u8], what: &str) -> Result<()> {
        let _ = (payload, what);
        Ok(())
    }
}
