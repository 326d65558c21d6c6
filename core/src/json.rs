//! Schemaless JSON records: locating the values a path selects, and turning a value into field
//! plaintext and back. Strings are encrypted as their UTF-8 bytes; any other JSON value as its
//! compact JSON text, restored to its original type on decrypt. `null` is left as it is.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::policy::{ConcretePath, Segment};

/// Plaintext type markers: the first byte inside every field ciphertext.
pub(crate) const PLAIN_STRING: u8 = 0;
pub(crate) const PLAIN_JSON: u8 = 1;

pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| {
        // serde_json's message names line/column and category, never the input text.
        Error::record(format!("{what} is not valid JSON ({})", e.classify_name()))
    })
}

trait ClassifyName {
    fn classify_name(&self) -> String;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> String {
        let category = match self.classify() {
            serde_json::error::Category::Io => "I/O",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "data error",
            serde_json::error::Category::Eof => "unexpected end",
        };
        format!("{category} at line {} column {}", self.line(), self.column())
    }
}

/// Whether the path selects at least one non-null value.
pub(crate) fn has_match(value: &Value, segments: &[Segment]) -> bool {
    let Some((first, rest)) = segments.split_first() else {
        return !value.is_null();
    };
    match (first, value) {
        (Segment::Field(name), Value::Object(map)) => map.get(name).is_some_and(|v| has_match(v, rest)),
        (Segment::AnyMember, Value::Object(map)) => map.values().any(|v| has_match(v, rest)),
        (Segment::AnyElement, Value::Array(items)) => items.iter().any(|v| has_match(v, rest)),
        _ => false,
    }
}

/// Calls `f` on every non-null value the path selects, with its concrete location.
pub(crate) fn visit_mut(
    value: &mut Value,
    segments: &[Segment],
    at: &mut ConcretePath,
    f: &mut dyn FnMut(&mut Value, &str) -> Result<()>,
) -> Result<()> {
    let Some((first, rest)) = segments.split_first() else {
        return if value.is_null() { Ok(()) } else { f(value, at.as_str()) };
    };
    let mark = at.len();
    match (first, value) {
        (Segment::Field(name), Value::Object(map)) => {
            if let Some(v) = map.get_mut(name) {
                at.push_field(name);
                visit_mut(v, rest, at, f)?;
            }
        }
        (Segment::AnyMember, Value::Object(map)) => {
            for (name, v) in map.iter_mut() {
                at.push_field(name);
                visit_mut(v, rest, at, f)?;
                at.truncate(mark);
            }
        }
        (Segment::AnyElement, Value::Array(items)) => {
            for (i, v) in items.iter_mut().enumerate() {
                at.push_index(i);
                visit_mut(v, rest, at, f)?;
                at.truncate(mark);
            }
        }
        _ => {}
    }
    at.truncate(mark);
    Ok(())
}

/// The plaintext of a value: its type marker and bytes (borrowed for strings).
pub(crate) fn plaintext(value: &Value) -> (u8, std::borrow::Cow<'_, [u8]>) {
    match value {
        Value::String(s) => (PLAIN_STRING, s.as_bytes().into()),
        other => (PLAIN_JSON, serde_json::to_vec(other).expect("a Value always serializes").into()),
    }
}

/// Rebuilds a value from decrypted plaintext.
pub(crate) fn from_plaintext(type_byte: u8, bytes: Vec<u8>, at: &str) -> Result<Value> {
    match type_byte {
        PLAIN_STRING => String::from_utf8(bytes)
            .map(Value::String)
            .map_err(|_| Error::record(format!("decrypted field {at} is not UTF-8 text"))),
        PLAIN_JSON => serde_json::from_slice(&bytes)
            .map_err(|_| Error::record(format!("decrypted field {at} is not a JSON value"))),
        other => Err(Error::record(format!("decrypted field {at} has plaintext type {other}, which JSON cannot hold"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::FieldPath;
    use serde_json::json;

    fn locations(v: &mut Value, path: &str) -> Vec<String> {
        let p = FieldPath::parse(path).unwrap();
        let mut out = Vec::new();
        visit_mut(v, p.segments(), &mut ConcretePath::default(), &mut |_, at| {
            out.push(at.to_string());
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn concrete_locations() {
        let mut v = json!({"a": {"b": 1}, "orders": [{"visa": "x"}, {"visa": null}, {"visa": "y"}],
                           "prefs": {"k 1": "v", "k2": "w"}});
        assert_eq!(locations(&mut v, "a.b"), ["a.b"]);
        assert_eq!(locations(&mut v, "orders[*].visa"), ["orders[0].visa", "orders[2].visa"]);
        assert_eq!(locations(&mut v, "prefs.*"), ["prefs[\"k 1\"]", "prefs.k2"]);
        assert!(locations(&mut v, "missing.x").is_empty());
        assert!(has_match(&v, FieldPath::parse("orders[*].visa").unwrap().segments()));
        assert!(!has_match(&v, FieldPath::parse("orders[*].nope").unwrap().segments()));
    }
}
