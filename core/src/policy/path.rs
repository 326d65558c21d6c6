//! Field paths: `customer.password`, `orders[*].visa`, `prefs.*` (every map value),
//! `["odd.name"].x` (a member name that needs quoting), and for schema formats
//! `acme.Address::street` (field `street` of the named type `acme.Address`, wherever it occurs —
//! how schema tags are recorded, and the only finite way to name a field of a recursive type).

use std::fmt::{self, Write};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A named member of an object / record.
    Field(String),
    /// `*`: every member value of an object (map values).
    AnyMember,
    /// `[*]`: every element of an array.
    AnyElement,
    /// `Type::`: the named schema type (full name) whose field the next segment names. Only as
    /// the first of exactly two segments.
    OfType(String),
}

/// A parsed field path. Its canonical text (`Display`) is what the header records.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    segments: Vec<Segment>,
    text: String,
}

impl FieldPath {
    /// Parses a path; the error says what is wrong, for the policy loader to put in context.
    pub fn parse(input: &str) -> Result<FieldPath, String> {
        if let Some((type_name, field)) = input.split_once("::") {
            let valid =
                |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '$'));
            if !valid(type_name) || type_name.starts_with('.') || type_name.ends_with('.') {
                return Err(format!("type name {type_name:?} in {input:?} is not a schema full name"));
            }
            if field.is_empty() || !field.chars().all(is_plain_name_char) {
                return Err(format!("field name {field:?} in {input:?} is not a plain name"));
            }
            return Ok(FieldPath::from_segments(vec![Segment::OfType(type_name.into()), Segment::Field(field.into())]));
        }
        let mut segments = Vec::new();
        let bytes = input.as_bytes();
        let mut i = 0;
        if bytes.is_empty() {
            return Err("path is empty".into());
        }
        let mut expect_member = true; // at start or after '.'
        while i < bytes.len() {
            match bytes[i] {
                b'[' => {
                    if input[i..].starts_with("[*]") {
                        segments.push(Segment::AnyElement);
                        i += 3;
                    } else if input[i..].starts_with("[\"") {
                        let (name, used) = parse_quoted(&input[i + 1..])?;
                        if !input[i + 1 + used..].starts_with(']') {
                            return Err(format!("expected ']' after quoted name at byte {}", i + 1 + used));
                        }
                        segments.push(Segment::Field(name));
                        i += used + 2;
                    } else {
                        return Err(format!("expected '[*]' or '[\"name\"]' at byte {i}"));
                    }
                    expect_member = false;
                }
                b'.' => {
                    if expect_member {
                        return Err(format!("empty segment at byte {i}"));
                    }
                    expect_member = true;
                    i += 1;
                    if i == bytes.len() {
                        return Err("path ends with '.'".into());
                    }
                }
                _ => {
                    if !expect_member {
                        return Err(format!("expected '.' or '[' at byte {i}"));
                    }
                    let start = i;
                    while i < bytes.len() && !matches!(bytes[i], b'.' | b'[') {
                        i += 1;
                    }
                    let name = &input[start..i];
                    if name == "*" {
                        segments.push(Segment::AnyMember);
                    } else if let Some(bad) = name.chars().find(|c| !is_plain_name_char(*c)) {
                        return Err(format!("character {bad:?} in name {name:?} needs quoting: [\"...\"]"));
                    } else {
                        segments.push(Segment::Field(name.to_string()));
                    }
                    expect_member = false;
                }
            }
        }
        Ok(FieldPath::from_segments(segments))
    }

    pub fn from_segments(segments: Vec<Segment>) -> FieldPath {
        let mut text = String::new();
        for (n, s) in segments.iter().enumerate() {
            match s {
                Segment::Field(name) => {
                    let after_type = n > 0 && matches!(segments[n - 1], Segment::OfType(_));
                    if name.chars().all(is_plain_name_char) && !name.is_empty() {
                        if n > 0 && !after_type {
                            text.push('.');
                        }
                        text.push_str(name);
                    } else {
                        push_quoted(&mut text, name);
                    }
                }
                Segment::AnyMember => {
                    if n > 0 {
                        text.push('.');
                    }
                    text.push('*');
                }
                Segment::AnyElement => text.push_str("[*]"),
                Segment::OfType(name) => {
                    text.push_str(name);
                    text.push_str("::");
                }
            }
        }
        FieldPath { segments, text }
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// For `Type::field` paths, the type's full name and the field name.
    pub fn type_field(&self) -> Option<(&str, &str)> {
        match self.segments.as_slice() {
            [Segment::OfType(t), Segment::Field(f)] => Some((t, f)),
            _ => None,
        }
    }

    /// True when some concrete location could be matched by both paths, or one lies inside the
    /// other (`address` and `address.street`): encrypting both would nest ciphertexts.
    pub fn overlaps(&self, other: &FieldPath) -> bool {
        if self.type_field().is_some() || other.type_field().is_some() {
            // Type-qualified fields are checked against the schema when the plan is compiled.
            return self == other;
        }
        self.segments.iter().zip(other.segments.iter()).all(|(a, b)| match (a, b) {
            (Segment::Field(x), Segment::Field(y)) => x == y,
            (Segment::AnyElement, Segment::AnyElement) => true,
            (Segment::AnyElement, _) | (_, Segment::AnyElement) => false,
            _ => true, // AnyMember against a name or AnyMember
        })
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn is_plain_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '$' | '@' | ':')
}

fn parse_quoted(s: &str) -> Result<(String, usize), String> {
    // s starts with '"'; returns the unescaped name and the bytes used including both quotes.
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\'))) => out.push(e),
                _ => return Err("only \\\" and \\\\ escapes are allowed in quoted names".into()),
            },
            c => out.push(c),
        }
    }
    Err("unterminated quoted name".into())
}

pub(crate) fn push_quoted(out: &mut String, name: &str) {
    out.push_str("[\"");
    for c in name.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push_str("\"]");
}

/// What a field name adds to a concrete location, as [`ConcretePath`] writes it: first in a
/// location (`street`) and after another step (`.street`; `["odd name"]` in both places).
/// Precomputed once per schema field by the format plans, so scans format nothing.
#[derive(Debug)]
pub(crate) struct FieldStep {
    pub first: Box<str>,
    pub later: Box<str>,
}

impl FieldStep {
    pub fn of(name: &str) -> FieldStep {
        let mut first = ConcretePath::default();
        first.push_field(name);
        let mut later = ConcretePath::default();
        later.push_field("x");
        let prefix = later.len();
        later.push_field(name);
        FieldStep { first: first.as_str().into(), later: later.as_str()[prefix..].into() }
    }
}

/// Builds the concrete location of one matched value (`orders[2].visa`, `prefs["k"]`); this is
/// what associated data binds randomized ciphertext to.
#[derive(Debug, Default, Clone)]
pub(crate) struct ConcretePath {
    text: String,
}

impl ConcretePath {
    pub fn len(&self) -> usize {
        self.text.len()
    }
    pub fn truncate(&mut self, len: usize) {
        self.text.truncate(len);
    }
    pub fn push_field(&mut self, name: &str) {
        if !name.is_empty() && name.chars().all(is_plain_name_char) {
            if !self.text.is_empty() {
                self.text.push('.');
            }
            self.text.push_str(name);
        } else {
            push_quoted(&mut self.text, name);
        }
    }
    pub fn push_index(&mut self, index: usize) {
        let _ = write!(self.text, "[{index}]");
    }
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonically() {
        for (input, canonical) in [
            ("password", "password"),
            ("customer.password", "customer.password"),
            ("orders[*].visa", "orders[*].visa"),
            ("prefs.*", "prefs.*"),
            ("[\"a.b\"].c", "[\"a.b\"].c"),
            ("matrix[*][*]", "matrix[*][*]"),
            ("bench.Address::street", "bench.Address::street"),
            ("Node::value", "Node::value"),
        ] {
            assert_eq!(FieldPath::parse(input).unwrap().as_str(), canonical, "{input}");
        }
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in ["", ".a", "a.", "a..b", "a[0]", "a[*", "a b", "[\"x", "a[*]b", "::x", "T::", "T::a.b", ".T::a"] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn overlap() {
        let p = |s| FieldPath::parse(s).unwrap();
        assert!(p("address").overlaps(&p("address.street")));
        assert!(p("prefs.*").overlaps(&p("prefs.x")));
        assert!(!p("a.b").overlaps(&p("a.c")));
        assert!(!p("a[*]").overlaps(&p("a.b")));
    }
}
