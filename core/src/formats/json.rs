//! Schemaless JSON records, rewritten in one pass without building a value tree.
//!
//! [`scan`] walks only the objects and arrays that policy paths descend into; every other value is
//! copied through byte for byte (serde_json validates it as it skips it). The result is a
//! *skeleton* — the output record with holes — and the *leaves*: the values the paths selected,
//! as their raw JSON text. The codec fills each hole with the leaf's replacement ([`Scan::splice`]).
//! So numbers, escapes and whitespace the policy does not touch stay exactly as the application
//! wrote them, and a non-string value is encrypted as its exact JSON text.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::{Emit, Fill, Leaf, ValueKind, PLAIN_JSON, PLAIN_STRING};
use crate::error::{Error, Result};
use crate::policy::{ConcretePath, FieldPath, Segment};

/// Scans schemaless JSON records (and JSON Schema records) for a list of paths.
#[derive(Debug, Clone)]
pub(crate) struct JsonScanner {
    paths: Vec<FieldPath>,
}

impl JsonScanner {
    pub fn new(paths: Vec<FieldPath>) -> JsonScanner {
        JsonScanner { paths }
    }
}

impl super::Scanner for JsonScanner {
    fn scan<'a>(&self, payload: &'a [u8], what: &str) -> Result<Box<dyn super::Scan<'a> + 'a>> {
        Ok(Box::new(scan(payload, &self.paths, what)?))
    }
}

/// A record split into skeleton and leaves. `null` leaves are not reported: they stay `null`.
#[derive(Debug)]
pub(crate) struct Scan<'a> {
    skeleton: Vec<u8>,
    leaves: Vec<Leaf<'a>>,
    /// Where each leaf's replacement goes in the skeleton.
    holes: Vec<usize>,
    locations: String,
}

impl<'a> super::Scan<'a> for Scan<'a> {
    fn leaves(&self) -> &[Leaf<'a>] {
        &self.leaves
    }

    fn write(&self, fill: &mut Fill<'_, 'a>) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.skeleton.len() + self.leaves.len() * 96);
        let mut copied = 0;
        for (leaf, &hole) in self.leaves.iter().zip(&self.holes) {
            out.extend_from_slice(&self.skeleton[copied..hole]);
            copied = hole;
            fill(leaf, &self.locations[leaf.at.clone()], &mut JsonEmit { out: &mut out, raw: leaf.value })?;
        }
        out.extend_from_slice(&self.skeleton[copied..]);
        Ok(out)
    }
}

struct JsonEmit<'o, 'r> {
    out: &'o mut Vec<u8>,
    raw: &'r [u8],
}

impl Emit for JsonEmit<'_, '_> {
    fn text(&mut self, text: &str) -> Result<()> {
        if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            // Nothing to escape (always so for Base64 ciphertext): copy it between quotes.
            self.out.reserve(text.len() + 2);
            self.out.push(b'"');
            self.out.extend_from_slice(text.as_bytes());
            self.out.push(b'"');
        } else {
            serde_json::to_writer(&mut *self.out, text).expect("writing to a Vec cannot fail");
        }
        Ok(())
    }
    fn bytes(&mut self, _: &[u8]) -> Result<()> {
        Err(Error::record("a JSON record cannot hold raw bytes"))
    }
    fn json(&mut self, raw: &str) -> Result<()> {
        self.out.extend_from_slice(raw.as_bytes());
        Ok(())
    }
    fn null(&mut self) -> Result<()> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn keep(&mut self) -> Result<()> {
        self.out.extend_from_slice(self.raw);
        Ok(())
    }
}

/// Scans a JSON document for the values `paths` select. Fails if the input is not JSON.
pub(crate) fn scan<'a>(input: &'a [u8], paths: &[FieldPath], what: &str) -> Result<Scan<'a>> {
    let text =
        std::str::from_utf8(input).map_err(|_| Error::record(format!("{what} is not valid JSON (not UTF-8)")))?;
    let mut scan = Scan {
        skeleton: Vec::with_capacity(input.len()),
        leaves: Vec::new(),
        holes: Vec::new(),
        locations: String::new(),
    };
    let active: Vec<Cursor> = (0..paths.len()).map(|path| Cursor { path, depth: 0 }).collect();
    let mut at = ConcretePath::default();
    walk(text, paths, &active, &mut at, &mut scan, true).map_err(|e| invalid(what, &e))?;
    Ok(scan)
}

/// A path and how many of its segments are already matched.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    path: usize,
    depth: usize,
}

enum Step<'k> {
    Member(&'k str),
    Element,
}

fn advance(paths: &[FieldPath], active: &[Cursor], step: Step<'_>) -> Vec<Cursor> {
    active
        .iter()
        .filter(|c| match (&paths[c.path].segments()[c.depth], &step) {
            (Segment::Field(name), Step::Member(key)) => name == key,
            (Segment::AnyMember, Step::Member(_)) => true,
            (Segment::AnyElement, Step::Element) => true,
            _ => false,
        })
        .map(|c| Cursor { path: c.path, depth: c.depth + 1 })
        .collect()
}

fn walk<'a>(
    raw: &'a str,
    paths: &[FieldPath],
    active: &[Cursor],
    at: &mut ConcretePath,
    scan: &mut Scan<'a>,
    top: bool,
) -> serde_json::Result<()> {
    match raw.trim_start().as_bytes().first() {
        Some(b'{' | b'[') => match serde_json::from_str::<Container<'a>>(raw)? {
            Container::Object(members) => {
                scan.skeleton.push(b'{');
                for (n, (key, value)) in members.iter().enumerate() {
                    if n > 0 {
                        scan.skeleton.push(b',');
                    }
                    match key {
                        // No escapes in the input: its text between the quotes is the key itself.
                        Cow::Borrowed(k) => {
                            scan.skeleton.push(b'"');
                            scan.skeleton.extend_from_slice(k.as_bytes());
                            scan.skeleton.push(b'"');
                        }
                        Cow::Owned(k) => serde_json::to_writer(&mut scan.skeleton, k)?,
                    }
                    scan.skeleton.push(b':');
                    let next = advance(paths, active, Step::Member(key));
                    let mark = at.len();
                    if !next.is_empty() {
                        at.push_field(key);
                    }
                    visit(value.get(), paths, &next, at, scan)?;
                    at.truncate(mark);
                }
                scan.skeleton.push(b'}');
            }
            Container::Array(items) => {
                scan.skeleton.push(b'[');
                let next = advance(paths, active, Step::Element);
                for (i, value) in items.iter().enumerate() {
                    if i > 0 {
                        scan.skeleton.push(b',');
                    }
                    let mark = at.len();
                    if !next.is_empty() {
                        at.push_index(i);
                    }
                    visit(value.get(), paths, &next, at, scan)?;
                    at.truncate(mark);
                }
                scan.skeleton.push(b']');
            }
        },
        _ => {
            if top {
                serde_json::from_str::<&RawValue>(raw)?; // a scalar document: still must be JSON
            }
            scan.skeleton.extend_from_slice(raw.as_bytes());
        }
    }
    Ok(())
}

fn visit<'a>(
    raw: &'a str,
    paths: &[FieldPath],
    next: &[Cursor],
    at: &mut ConcretePath,
    scan: &mut Scan<'a>,
) -> serde_json::Result<()> {
    if next.is_empty() {
        scan.skeleton.extend_from_slice(raw.as_bytes());
    } else if let Some(done) = next.iter().find(|c| c.depth == paths[c.path].segments().len()) {
        if raw == "null" {
            scan.skeleton.extend_from_slice(b"null");
        } else {
            let start = scan.locations.len();
            scan.locations.push_str(at.as_str());
            scan.holes.push(scan.skeleton.len());
            scan.leaves.push(Leaf {
                path: done.path,
                at: start..scan.locations.len(),
                kind: ValueKind::Json,
                value: raw.as_bytes(),
            });
        }
    } else {
        walk(raw, paths, next, at, scan, false)?;
    }
    Ok(())
}

fn invalid(what: &str, e: &serde_json::Error) -> Error {
    Error::record(format!("{what} is not valid JSON ({})", error_position(e)))
}

/// A serde_json error as category and position only: its own message can quote the input,
/// which may be a secret (a record field, a key file).
pub(crate) fn error_position(e: &serde_json::Error) -> String {
    let category = match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected structure",
        serde_json::error::Category::Eof => "unexpected end",
    };
    format!("{category} at line {} column {}", e.line(), e.column())
}

/// An object's members in order (duplicates kept) or an array's elements, values left raw.
enum Container<'a> {
    Object(Vec<(Cow<'a, str>, &'a RawValue)>),
    Array(Vec<&'a RawValue>),
}

impl<'de> de::Deserialize<'de> for Container<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(ContainerVisitor)
    }
}

struct ContainerVisitor;

impl<'de> Visitor<'de> for ContainerVisitor {
    type Value = Container<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object or array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(key) = map.next_key::<Key<'de>>()? {
            members.push((key.0, map.next_value::<&'de RawValue>()?));
        }
        Ok(Container::Object(members))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(8));
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            items.push(item);
        }
        Ok(Container::Array(items))
    }
}

/// A member name, borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The plaintext of a JSON value: a string as its (unescaped) UTF-8 text, any other value as its
/// exact JSON text.
pub(crate) fn plaintext(raw: &str) -> Result<(u8, Cow<'_, str>)> {
    if raw.starts_with('"') {
        let s = string_value(raw).ok_or_else(|| Error::record("bad JSON string"))?;
        Ok((PLAIN_STRING, s))
    } else {
        Ok((PLAIN_JSON, Cow::Borrowed(raw)))
    }
}

/// The text of a JSON string value, unescaped; `None` if the value is not a string.
pub(crate) fn string_value(raw: &str) -> Option<Cow<'_, str>> {
    if raw.starts_with('"') {
        serde_json::from_str::<Key<'_>>(raw).ok().map(|k| k.0)
    } else {
        None
    }
}

/// Checks that decrypted plaintext of type [`PLAIN_JSON`] is one JSON value.
pub(crate) fn check_json_text(text: &str) -> bool {
    serde_json::from_str::<&RawValue>(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(doc: &str, path: &str) -> Vec<(String, String)> {
        let paths = [FieldPath::parse(path).unwrap()];
        let s = scan(doc.as_bytes(), &paths, "test").unwrap();
        s.leaves
            .iter()
            .map(|l| (s.locations[l.at.clone()].to_string(), String::from_utf8(l.value.to_vec()).unwrap()))
            .collect()
    }

    #[test]
    fn finds_concrete_locations() {
        let doc = r#"{"a": {"b": 1.50}, "orders": [{"visa": "x"}, {"visa": null}, {"visa": "y"}],
                      "prefs": {"k 1": "v", "k2": "w"}, "s": "not an object"}"#;
        assert_eq!(leaves(doc, "a.b"), [("a.b".into(), "1.50".into())]);
        assert_eq!(
            leaves(doc, "orders[*].visa"),
            [("orders[0].visa".into(), "\"x\"".into()), ("orders[2].visa".into(), "\"y\"".into())]
        );
        assert_eq!(leaves(doc, "prefs.*").len(), 2);
        assert_eq!(leaves(doc, "prefs.*")[0].0, "prefs[\"k 1\"]");
        assert!(leaves(doc, "missing.x").is_empty());
        assert!(leaves(doc, "s.x").is_empty(), "a path through a scalar selects nothing");
    }

    #[test]
    fn skeleton_keeps_untouched_bytes() {
        let doc = r#"{"n": 1.0e+2, "big": 123456789012345678901234567890, "esc": "a\u0041", "p": "secret"}"#;
        let paths = [FieldPath::parse("p").unwrap()];
        let s = scan(doc.as_bytes(), &paths, "test").unwrap();
        let out = super::super::Scan::write(&s, &mut |_, _, emit| emit.text("X")).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"n":1.0e+2,"big":123456789012345678901234567890,"esc":"a\u0041","p":"X"}"#
        );
    }

    #[test]
    fn rejects_non_json() {
        let paths = [FieldPath::parse("p").unwrap()];
        for bad in ["", "{", "{\"p\":1} x", "nope", "[1,]", "\u{0}"] {
            assert!(scan(bad.as_bytes(), &paths, "v").is_err(), "{bad:?}");
        }
        assert!(scan(b"42", &paths, "v").unwrap().leaves.is_empty());
    }
}
