//! Schemaless JSON records, rewritten in one pass without building a value tree.
//!
//! [`JsonScanner`] walks only the objects and arrays that policy paths descend into; every other
//! value is copied through byte for byte (validated as it is skipped, accepting what serde_json
//! accepts). The result is a *skeleton* — the output record with holes — and the *leaves*: the
//! values the paths selected, as their raw JSON text. The codec fills each hole with the leaf's
//! replacement ([`Scan::splice`]). So numbers, escapes and whitespace the policy does not touch
//! stay exactly as the application wrote them, and a non-string value is encrypted as its exact
//! JSON text.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde_json::value::RawValue;

use super::{Emit, Fill, Leaf, ValueKind, PLAIN_JSON, PLAIN_STRING};
use crate::error::{Error, Result};
use crate::policy::{ConcretePath, FieldPath, Segment};

/// Scans schemaless JSON records (and JSON Schema records) for a list of paths.
#[derive(Debug, Clone)]
pub(crate) struct JsonScanner {
    paths: Matcher,
}

impl JsonScanner {
    pub fn new(paths: Vec<FieldPath>) -> JsonScanner {
        JsonScanner { paths: Matcher::new(&paths) }
    }
}

impl super::Scanner for JsonScanner {
    fn scan<'a>(&self, payload: &'a [u8], what: &str) -> Result<Box<dyn super::Scan<'a> + 'a>> {
        Ok(Box::new(scan_with(payload, &self.paths, what)?))
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
        if !needs_escape(text) {
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

/// [`scan_with`] for a list of paths. ([`JsonScanner`] compiles its paths once.)
#[cfg(test)]
pub(crate) fn scan<'a>(input: &'a [u8], paths: &[FieldPath], what: &str) -> Result<Scan<'a>> {
    scan_with(input, &Matcher::new(paths), what)
}

/// Scans a JSON document for the values `paths` select. Fails if the input is not JSON.
///
/// One pass over the bytes: objects and arrays that paths descend into are rewritten member by
/// member (without the whitespace between their tokens); every other value is validated and
/// copied as its exact text. Accepts exactly what `serde_json::from_slice::<IgnoredAny>` accepts
/// (no nesting limit: values outside the paths are skipped without recursion), except that the
/// member names of the objects the paths descend into must be Unicode — a lone surrogate escape
/// there is an error, as when serde_json parses them to compare with the paths.
fn scan_with<'a>(input: &'a [u8], paths: &Matcher, what: &str) -> Result<Scan<'a>> {
    let text =
        std::str::from_utf8(input).map_err(|_| Error::record(format!("{what} is not valid JSON (not UTF-8)")))?;
    let mut inline = [0u32; INLINE_CURSORS];
    let mut spilled = Vec::new();
    let cursors: &mut [u32] = if paths.cursors <= INLINE_CURSORS {
        &mut inline[..paths.cursors]
    } else {
        spilled.resize(paths.cursors, 0);
        &mut spilled
    };
    let mut walker = Walker {
        text,
        bytes: input,
        pos: 0,
        steps: &paths.steps,
        cursors,
        at: ConcretePath::default(),
        name: String::new(),
        scan: Scan {
            skeleton: Vec::with_capacity(input.len()),
            leaves: Vec::with_capacity(paths.starts.len()),
            holes: Vec::with_capacity(paths.starts.len()),
            locations: String::with_capacity(paths.locations),
        },
    };
    walker.document(&paths.starts).map_err(|fail| fail.error(input, what))?;
    Ok(walker.scan)
}

/// The paths as one table of steps: each path's segments in order, then [`Step::End`]. A cursor
/// is the index of the step a path takes next, so matching a member loads one entry.
#[derive(Debug, Clone)]
struct Matcher {
    steps: Vec<Step>,
    /// Each path's first step.
    starts: Vec<u32>,
    /// How many cursors a scan can hold at once (see [`Walker`]).
    cursors: usize,
    /// Room for the locations of one match of each path (more if wildcards match more).
    locations: usize,
}

#[derive(Debug, Clone)]
enum Step {
    Field(Box<str>),
    AnyMember,
    AnyElement,
    /// A segment no JSON value has (a schema type).
    Never,
    /// The path (its index) is matched completely.
    End(u32),
}

impl Matcher {
    fn new(paths: &[FieldPath]) -> Matcher {
        let mut steps = Vec::new();
        let mut starts = Vec::with_capacity(paths.len());
        for (n, path) in paths.iter().enumerate() {
            starts.push(u32::try_from(steps.len()).expect("fewer than 2^32 path segments"));
            steps.extend(path.segments().iter().map(|segment| match segment {
                Segment::Field(name) => Step::Field(name.as_str().into()),
                Segment::AnyMember => Step::AnyMember,
                Segment::AnyElement => Step::AnyElement,
                Segment::OfType(_) => Step::Never,
            }));
            steps.push(Step::End(u32::try_from(n).expect("fewer than 2^32 paths")));
        }
        // One level of cursors per matched segment, each at most every path.
        let levels = paths.iter().map(|p| p.segments().len()).max().unwrap_or(0) + 1;
        let locations = paths.iter().map(|p| p.as_str().len() + 4).sum();
        Matcher { steps, starts, cursors: paths.len().saturating_mul(levels), locations }
    }
}

/// Path cursors kept on the stack; more paths × segments than this spill to the heap.
const INLINE_CURSORS: usize = 64;

/// Where the input stops being JSON: the offset of the offending byte (the length: it ends too
/// soon). Never the input's text.
#[derive(Debug, Clone, Copy)]
struct Fail {
    at: usize,
}

impl Fail {
    fn error(self, input: &[u8], what: &str) -> Error {
        let category = if self.at >= input.len() { "unexpected end" } else { "syntax error" };
        let at = self.at.min(input.len());
        let line_start = input[..at].iter().rposition(|&b| b == b'\n').map_or(0, |n| n + 1);
        let line = 1 + input[..line_start].iter().filter(|&&b| b == b'\n').count();
        let column = (at + 1).min(input.len()) - line_start;
        Error::record(format!("{what} is not valid JSON ({category} at line {line} column {column})"))
    }
}

type Done<T = ()> = std::result::Result<T, Fail>;

/// The scan in progress. `cursors` holds a stack of levels: the paths still matching the
/// container being walked at depth `d` are a range of it (as indexes of their next steps), and
/// every one of them has matched exactly `d` segments. A level is at most every path and there
/// are at most (longest path + 1) levels, so the slice never grows.
struct Walker<'a, 'p, 'c> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    steps: &'p [Step],
    cursors: &'c mut [u32],
    at: ConcretePath,
    /// Scratch for member names with escapes.
    name: String,
    scan: Scan<'a>,
}

impl<'a> Walker<'a, '_, '_> {
    fn document(&mut self, starts: &[u32]) -> Done {
        self.whitespace();
        match self.peek() {
            Some(b'{' | b'[') => {
                // The top-level container is always rewritten, even when no path can match.
                self.cursors[..starts.len()].copy_from_slice(starts);
                self.container(0, starts.len())?;
                self.end()
            }
            _ => {
                // A scalar document: copied whole, surrounding whitespace included.
                self.skip_value()?;
                self.end()?;
                self.scan.skeleton.extend_from_slice(self.bytes);
                Ok(())
            }
        }
    }

    fn end(&mut self) -> Done {
        self.whitespace();
        if self.pos < self.bytes.len() {
            return Err(self.fail());
        }
        Ok(())
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// An error at the current byte (or the end of the input, there).
    fn fail(&self) -> Fail {
        Fail { at: self.pos }
    }

    /// Expects `byte` (after whitespace) and steps over it.
    #[inline]
    fn expect(&mut self, byte: u8) -> Done {
        self.whitespace();
        if self.peek() != Some(byte) {
            return Err(self.fail());
        }
        self.pos += 1;
        Ok(())
    }

    /// Writes the cursors of `cursors[lo..hi]` whose next step matches the member `name` (or, for
    /// `None`, an array element), advanced, after `hi`; returns the end of that new level.
    #[inline]
    fn advance(&mut self, lo: usize, hi: usize, name: Option<&str>) -> usize {
        let mut next = hi;
        for n in lo..hi {
            let cursor = self.cursors[n];
            let hit = match (&self.steps[cursor as usize], name) {
                (Step::Field(field), Some(name)) => field.len() == name.len() && **field == *name,
                (Step::AnyMember, Some(_)) | (Step::AnyElement, None) => true,
                _ => false,
            };
            if hit {
                self.cursors[next] = cursor + 1;
                next += 1;
            }
        }
        next
    }

    /// The object or array at `pos`, which paths `cursors[lo..hi]` descend into.
    fn container(&mut self, lo: usize, hi: usize) -> Done {
        if self.bytes[self.pos] == b'{' {
            self.object(lo, hi)
        } else {
            self.array(lo, hi)
        }
    }

    fn object(&mut self, lo: usize, hi: usize) -> Done {
        let text = self.text;
        self.pos += 1;
        self.scan.skeleton.push(b'{');
        self.whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.scan.skeleton.push(b'}');
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.fail());
            }
            let start = self.pos;
            let escaped = self.skip_string()?;
            let raw = &text[start + 1..self.pos - 1];
            let mut unescaped = None;
            if escaped {
                // As serde_json reads it (a lone surrogate is an error) and writes it back.
                let mut name = std::mem::take(&mut self.name);
                name.clear();
                unescape(raw, &mut name).map_err(|()| Fail { at: start })?;
                serde_json::to_writer(&mut self.scan.skeleton, name.as_str()).expect("writing to a Vec cannot fail");
                unescaped = Some(name);
            } else {
                // No escapes: the text between the quotes is the name itself.
                self.scan.skeleton.extend_from_slice(&self.bytes[start..self.pos]);
            }
            let name = unescaped.as_deref().unwrap_or(raw);
            self.expect(b':')?;
            self.scan.skeleton.push(b':');
            self.whitespace();
            let next = self.advance(lo, hi, Some(name));
            let mark = self.at.len();
            if next > hi {
                self.at.push_field(name);
            }
            self.value(hi, next)?;
            self.at.truncate(mark);
            if let Some(buffer) = unescaped {
                self.name = buffer;
            }
            self.whitespace();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.scan.skeleton.push(b',');
                    self.whitespace();
                }
                Some(b'}') => {
                    self.pos += 1;
                    self.scan.skeleton.push(b'}');
                    return Ok(());
                }
                _ => return Err(self.fail()),
            }
        }
    }

    fn array(&mut self, lo: usize, hi: usize) -> Done {
        self.pos += 1;
        self.scan.skeleton.push(b'[');
        let next = self.advance(lo, hi, None);
        self.whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.scan.skeleton.push(b']');
            return Ok(());
        }
        let mut index = 0;
        loop {
            let mark = self.at.len();
            if next > hi {
                self.at.push_index(index);
            }
            self.value(hi, next)?;
            self.at.truncate(mark);
            self.whitespace();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.scan.skeleton.push(b',');
                    self.whitespace();
                    index += 1;
                }
                Some(b']') => {
                    self.pos += 1;
                    self.scan.skeleton.push(b']');
                    return Ok(());
                }
                _ => return Err(self.fail()),
            }
        }
    }

    /// The value at `pos` (whitespace skipped), which paths `cursors[lo..hi]` have reached:
    /// a leaf, a container to walk, or bytes to copy.
    fn value(&mut self, lo: usize, hi: usize) -> Done {
        let start = self.pos;
        if lo < hi {
            let steps = self.steps;
            let done = self.cursors[lo..hi].iter().find_map(|&c| match steps[c as usize] {
                Step::End(path) => Some(path),
                _ => None,
            });
            if let Some(path) = done {
                self.skip_value()?;
                let raw = &self.bytes[start..self.pos];
                if raw == b"null" {
                    self.scan.skeleton.extend_from_slice(raw);
                } else {
                    let from = self.scan.locations.len();
                    self.scan.locations.push_str(self.at.as_str());
                    self.scan.holes.push(self.scan.skeleton.len());
                    self.scan.leaves.push(Leaf {
                        path: path as usize,
                        at: from..self.scan.locations.len(),
                        kind: ValueKind::Json,
                        value: raw,
                    });
                }
                return Ok(());
            }
            if let Some(b'{' | b'[') = self.peek() {
                return self.container(lo, hi);
            }
        }
        self.skip_value()?;
        self.scan.skeleton.extend_from_slice(&self.bytes[start..self.pos]);
        Ok(())
    }

    /// Steps over the value at `pos` (whitespace skipped), validating it.
    fn skip_value(&mut self) -> Done {
        match self.peek() {
            Some(b'"') => self.skip_string().map(drop),
            Some(b'{' | b'[') => self.skip_container(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.fail()),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Done {
        for &b in word {
            if self.peek() != Some(b) {
                return Err(self.fail());
            }
            self.pos += 1;
        }
        Ok(())
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Done {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.fail());
                }
            }
            Some(b'1'..=b'9') => {
                self.pos += 1;
                self.digits();
            }
            _ => return Err(self.fail()),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.fail());
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.fail());
            }
        }
        Ok(())
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    /// Steps over the string at `pos` (its opening quote); says whether it has escapes.
    #[inline]
    fn skip_string(&mut self) -> Done<bool> {
        let bytes = self.bytes;
        let mut at = self.pos + 1;
        let mut escaped = false;
        loop {
            at = special_byte(bytes, at);
            match bytes.get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    match bytes.get(at + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => at += 2,
                        Some(b'u') => {
                            if bytes.len() < at + 6 {
                                return Err(Fail { at: bytes.len() });
                            }
                            if !bytes[at + 2..at + 6].iter().all(u8::is_ascii_hexdigit) {
                                return Err(Fail { at: at + 2 });
                            }
                            at += 6;
                        }
                        _ => return Err(Fail { at: at + 1 }),
                    }
                }
                _ => return Err(Fail { at }), // a control character, or the end
            }
        }
    }

    /// Steps over the object or array at `pos` and everything in it, without recursion.
    fn skip_container(&mut self) -> Done {
        let mut open = Nesting::default();
        let mut object = self.bytes[self.pos] == b'{';
        self.pos += 1;
        let mut first = true; // just inside the brackets
        let mut after = false; // just after a member value or element
        loop {
            self.whitespace();
            let close = if object { b'}' } else { b']' };
            if after {
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        after = false;
                        first = false;
                    }
                    Some(b) if b == close => {
                        self.pos += 1;
                        match open.pop() {
                            Some(outer) => object = outer,
                            None => return Ok(()),
                        }
                    }
                    _ => return Err(self.fail()),
                }
                continue;
            }
            if first && self.peek() == Some(close) {
                self.pos += 1;
                match open.pop() {
                    Some(outer) => object = outer,
                    None => return Ok(()),
                }
                after = true;
                continue;
            }
            if object {
                if self.peek() != Some(b'"') {
                    return Err(self.fail());
                }
                self.skip_string()?;
                self.expect(b':')?;
                self.whitespace();
            }
            match self.peek() {
                Some(b @ (b'{' | b'[')) => {
                    open.push(object);
                    object = b == b'{';
                    self.pos += 1;
                    first = true;
                }
                _ => {
                    self.skip_value()?;
                    after = true;
                }
            }
        }
    }
}

/// The kinds (object or array) of the containers enclosing the one being skipped: a bit each,
/// in a word for the first 128 levels and on the heap beyond.
#[derive(Default)]
struct Nesting {
    depth: usize,
    bits: u128,
    deeper: Vec<bool>,
}

impl Nesting {
    fn push(&mut self, object: bool) {
        if self.depth < 128 {
            self.bits = (self.bits & !(1 << self.depth)) | (u128::from(object) << self.depth);
        } else {
            self.deeper.push(object);
        }
        self.depth += 1;
    }

    fn pop(&mut self) -> Option<bool> {
        self.depth = self.depth.checked_sub(1)?;
        if self.depth < 128 {
            Some(self.bits >> self.depth & 1 == 1)
        } else {
            self.deeper.pop()
        }
    }
}

/// The index of the first `"`, `\` or control character in `bytes` at or after `from`, or the
/// length. Sixteen bytes at a time (most member names and many values fit in one step).
#[inline]
fn special_byte(bytes: &[u8], mut from: usize) -> usize {
    while let Some(chunk) = bytes.get(from..from + 16) {
        let (low, high) = chunk.split_at(8);
        let low = special_flags(u64::from_le_bytes(low.try_into().expect("8 bytes")));
        let high = special_flags(u64::from_le_bytes(high.try_into().expect("8 bytes")));
        if low | high != 0 {
            let first = if low != 0 { low.trailing_zeros() } else { 64 + high.trailing_zeros() };
            return from + (first / 8) as usize;
        }
        from += 16;
    }
    while from < bytes.len() && bytes[from] >= 0x20 && bytes[from] != b'"' && bytes[from] != b'\\' {
        from += 1;
    }
    from
}

/// The high bit of each byte of `word` (little-endian) that is `"`, `\` or a control character.
/// A flag can be set spuriously only above a genuine one (by a borrow), so the lowest is exact.
#[inline]
fn special_flags(word: u64) -> u64 {
    const ONES: u64 = u64::MAX / 255;
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let quote = quote.wrapping_sub(ONES) & !quote;
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let backslash = backslash.wrapping_sub(ONES) & !backslash;
    (control | quote | backslash) & (ONES << 7)
}

/// Appends the text of a string body whose escapes are already checked; a `\u` escape of a lone
/// surrogate is an error.
fn unescape(raw: &str, out: &mut String) -> std::result::Result<(), ()> {
    let bytes = raw.as_bytes();
    let hex = |at: usize| u32::from_str_radix(&raw[at..at + 4], 16).map_err(drop);
    let (mut at, mut copied) = (0, 0);
    while let Some(skip) = bytes[at..].iter().position(|&b| b == b'\\') {
        at += skip;
        out.push_str(&raw[copied..at]);
        let c = match bytes[at + 1] {
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = hex(at + 2)?;
                at += 4;
                let code = match unit {
                    0xD800..=0xDBFF if bytes.get(at + 2..at + 4) == Some(b"\\u") => {
                        let low = hex(at + 4)?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(());
                        }
                        at += 6;
                        0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    }
                    0xD800..=0xDFFF => return Err(()),
                    unit => unit,
                };
                char::from_u32(code).ok_or(())?
            }
            other => char::from(other), // `"`, `\` or `/`
        };
        out.push(c);
        at += 2;
        copied = at;
    }
    out.push_str(&raw[copied..]);
    Ok(())
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
    // Without escapes, quotes or control characters inside, the text between the quotes is the
    // value (the common case: Base64 ciphertext, most plaintext).
    if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        if !needs_escape(inner) {
            return Some(Cow::Borrowed(inner));
        }
    }
    if raw.starts_with('"') {
        serde_json::from_str::<Key<'_>>(raw).ok().map(|k| k.0)
    } else {
        None
    }
}

/// Whether `text` holds a byte a JSON string must escape (`"`, `\`, a control character).
/// Branch-free over the bytes, so it vectorizes.
fn needs_escape(text: &str) -> bool {
    text.bytes().fold(false, |found, b| found | (b < 0x20) | (b == b'"') | (b == b'\\'))
}

/// Checks that decrypted plaintext of type [`PLAIN_JSON`] is one JSON value.
pub(crate) fn check_json_text(text: &str) -> bool {
    serde_json::from_str::<&RawValue>(text).is_ok()
}

/// The text of top-level member `member` of a JSON object: a string, or a number as written.
/// A payload that is not a JSON object is a record error.
pub(crate) fn top_level_text(payload: &[u8], member: &str) -> Result<Option<String>> {
    let doc: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(payload)
        .map_err(|_| Error::record(format!("subject member {member:?}: the record value is not a JSON object")))?;
    Ok(match doc.get(member) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// The serde_json-driven scan this module used before its own scanner: the reference the tests
/// compare [`scan`] with.
#[cfg(test)]
mod reference {
    use std::borrow::Cow;
    use std::fmt;

    use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::value::RawValue;

    use super::{error_position, Key, Scan};
    use crate::error::{Error, Result};
    use crate::formats::{Leaf, ValueKind};
    use crate::policy::{ConcretePath, FieldPath, Segment};

    /// Scans a JSON document for the values `paths` select. Fails if the input is not JSON.
    pub(crate) fn reference_scan<'a>(input: &'a [u8], paths: &[FieldPath], what: &str) -> Result<Scan<'a>> {
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

    // ---- The byte-level scanner against serde_json and the reference scan ----

    use proptest::prelude::*;
    use serde::de::IgnoredAny;
    use serde_json::{Number, Value};

    type Parts = (Vec<u8>, Vec<(usize, std::ops::Range<usize>, ValueKind, Vec<u8>)>, Vec<usize>, String);

    fn parts(s: &Scan<'_>) -> Parts {
        let leaves = s.leaves.iter().map(|l| (l.path, l.at.clone(), l.kind, l.value.to_vec())).collect();
        (s.skeleton.clone(), leaves, s.holes.clone(), s.locations.clone())
    }

    fn parse_paths(paths: &[&str]) -> Vec<FieldPath> {
        paths.iter().map(|p| FieldPath::parse(p).unwrap()).collect()
    }

    /// Whether `doc` has a `\u` escape of a UTF-16 surrogate: the one place where serde_json
    /// ignoring a value and serde_json reading a member name disagree (see [`scan`]).
    fn has_surrogate_escape(doc: &[u8]) -> bool {
        doc.windows(4).any(|w| {
            w[0] == b'\\'
                && w[1] == b'u'
                && matches!(w[2], b'd' | b'D')
                && matches!(w[3], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
        })
    }

    /// An error message names a category and a position, never input text.
    fn check_message(e: &Error) -> std::result::Result<(), String> {
        let text = e.to_string();
        let (_, rest) = text.split_once("t is not valid JSON (").ok_or_else(|| text.clone())?;
        let rest = rest.strip_suffix(')').ok_or_else(|| text.clone())?;
        let rest = rest.strip_prefix("syntax error at line ").or_else(|| rest.strip_prefix("unexpected end at line "));
        let ok = match rest {
            Some(rest) => {
                let (line, column) = rest.split_once(" column ").unwrap_or(("", ""));
                !line.is_empty()
                    && line.bytes().all(|b| b.is_ascii_digit())
                    && column.bytes().all(|b| b.is_ascii_digit())
            }
            None => text.ends_with("t is not valid JSON (not UTF-8)"),
        };
        if ok {
            Ok(())
        } else {
            Err(text)
        }
    }

    /// Scans `doc` both ways and checks that they agree with each other and with serde_json.
    /// Returns whether it was accepted.
    fn agree(doc: &[u8], paths: &[FieldPath]) -> std::result::Result<bool, String> {
        let new = scan(doc, paths, "t");
        let old = reference::reference_scan(doc, paths, "t");
        let serde = std::str::from_utf8(doc).is_ok() && serde_json::from_slice::<IgnoredAny>(doc).is_ok();
        let show = || {
            format!(
                "{:?} with {:?}",
                String::from_utf8_lossy(doc),
                paths.iter().map(FieldPath::as_str).collect::<Vec<_>>()
            )
        };
        if new.is_ok() != old.is_ok() {
            return Err(format!("scan {:?}, reference {:?}: {}", new.is_ok(), old.is_ok(), show()));
        }
        if new.is_ok() != serde && !(serde && has_surrogate_escape(doc)) {
            return Err(format!("scan {:?}, serde_json {serde:?}: {}", new.is_ok(), show()));
        }
        match (new, old) {
            (Ok(new), Ok(old)) => {
                if parts(&new) != parts(&old) {
                    return Err(format!("{:?}\n!= reference {:?}\nfor {}", parts(&new), parts(&old), show()));
                }
                Ok(true)
            }
            (Err(e), _) => check_message(&e).map(|()| false),
            _ => unreachable!(),
        }
    }

    #[track_caller]
    fn accepted(doc: &str, paths: &[&str]) -> Scan<'static> {
        let doc: &'static str = Box::leak(doc.to_string().into_boxed_str());
        let paths = parse_paths(paths);
        assert_eq!(agree(doc.as_bytes(), &paths), Ok(true));
        scan(doc.as_bytes(), &paths, "t").unwrap()
    }

    fn skeleton(s: &Scan<'_>) -> String {
        String::from_utf8(s.skeleton.clone()).unwrap()
    }

    fn found(s: &Scan<'_>) -> Vec<(String, String)> {
        s.leaves
            .iter()
            .map(|l| (s.locations[l.at.clone()].to_string(), String::from_utf8(l.value.to_vec()).unwrap()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn escaped_member_names_match_by_their_text() {
        let s = accepted(
            r#"{"\u0061": 1, "k\u0020\u0031": {"\/x": 2}, "\u00e9": 3, "\ud83d\ude00": 4, "c\u001f\n": 5}"#,
            &["a", "[\"k 1\"][\"/x\"]", "é", "[\"😀\"]"],
        );
        assert_eq!(found(&s), pairs(&[("a", "1"), ("[\"k 1\"][\"/x\"]", "2"), ("é", "3"), ("[\"😀\"]", "4")]));
        // Names with escapes are written back as serde_json writes them; others as they were.
        assert_eq!(skeleton(&s), r#"{"a":,"k 1":{"/x":},"é":,"😀":,"c\u001f\n":5}"#);
        let s = accepted(r#"{"\u0061": {"\u0062": 1}}"#, &["x"]);
        assert_eq!(skeleton(&s), r#"{"a":{"\u0062": 1}}"#, "only containers walked into are rewritten");
    }

    #[test]
    fn nested_arrays_and_wildcards() {
        let doc =
            r#"{"m": [[1, 2], [3, null, {"x": [true]}], []], "o": {"p": {"x": 1}, "q": [{"x": 2}], "r": {"x": null}}}"#;
        let s = accepted(doc, &["m[*][*]"]);
        assert_eq!(
            found(&s),
            pairs(&[("m[0][0]", "1"), ("m[0][1]", "2"), ("m[1][0]", "3"), ("m[1][2]", r#"{"x": [true]}"#)])
        );
        assert_eq!(skeleton(&s), r#"{"m":[[,],[,null,],[]],"o":{"p": {"x": 1}, "q": [{"x": 2}], "r": {"x": null}}}"#);
        let s = accepted(doc, &["o.*.x", "m[*]"]);
        assert_eq!(
            found(&s),
            pairs(&[("m[0]", "[1, 2]"), ("m[1]", r#"[3, null, {"x": [true]}]"#), ("m[2]", "[]"), ("o.p.x", "1")])
        );
        let s = accepted(doc, &["*"]);
        assert_eq!(found(&s).len(), 2);
        assert_eq!(skeleton(&s), "{\"m\":,\"o\":}");
        let s = accepted(doc, &["*.*", "m[*][*].x[*]"]);
        assert_eq!(
            found(&s),
            pairs(&[
                ("m[1][2].x[0]", "true"),
                ("o.p", r#"{"x": 1}"#),
                ("o.q", r#"[{"x": 2}]"#),
                ("o.r", r#"{"x": null}"#)
            ])
        );
        let s = accepted(r#"[{"a": 1}, [2], {"a": null}, {"a": {"b": 3}}]"#, &["[*].a", "[*][*]"]);
        assert_eq!(found(&s), pairs(&[("[0].a", "1"), ("[1][0]", "2"), ("[3].a", r#"{"b": 3}"#)]));
    }

    #[test]
    fn duplicate_members_are_all_kept() {
        let s = accepted(r#"{"a": 1, "b": 0, "a": {"c": 2}, "a": [3]}"#, &["a", "a.c"]);
        assert_eq!(found(&s), pairs(&[("a", "1"), ("a", r#"{"c": 2}"#), ("a", "[3]")]));
        assert_eq!(s.leaves.iter().map(|l| l.path).collect::<Vec<_>>(), [0, 0, 0], "the first path that ends here");
        assert_eq!(skeleton(&s), r#"{"a":,"b":0,"a":,"a":}"#);
    }

    #[test]
    fn whitespace_everywhere() {
        let doc = " \t\r\n{ \n\"a\" \t: \r[ 1 , { \"b\"\n:\n\"x\" } ,\n[ ] ] ,\"c\" : { } , \"d\":\"y\"\n}\r\n ";
        let s = accepted(doc, &["a[*].b", "d"]);
        assert_eq!(skeleton(&s), r#"{"a":[1,{"b":},[]],"c":{ },"d":}"#, "`[ ]` may hold a `b`: walked into");
        assert_eq!(found(&s), pairs(&[("a[1].b", "\"x\""), ("d", "\"y\"")]));
        // A scalar document is copied whole, its whitespace included.
        for doc in [" 42 ", "\n\"s\"\t", "null", " -0.5e+3", "true\r\n"] {
            assert_eq!(skeleton(&accepted(doc, &["a"])), doc);
        }
        assert_eq!(skeleton(&accepted(" [ 1 ,2 ] ", &[])), "[1,2]", "the top container is always rewritten");
        assert_eq!(skeleton(&accepted(" { } ", &[])), "{}");
    }

    #[test]
    fn deep_nesting_is_skipped_without_recursion() {
        // serde_json's IgnoredAny (and so the reference scan) has no nesting limit: neither has the
        // scanner, which skips what the paths do not reach without recursion.
        for depth in [200, 100_000] {
            let doc = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let paths = parse_paths(&["[*][*]", "a"]);
            assert_eq!(agree(doc.as_bytes(), &paths), Ok(true), "{depth}");
            let doc = format!("{}1{}", "{\"a\":[".repeat(depth), "]}".repeat(depth));
            let s = scan(doc.as_bytes(), &parse_paths(&["a[*].a"]), "t").unwrap();
            assert_eq!(found(&s)[0].0, "a[0].a");
            assert_eq!(s.leaves[0].value, &doc.as_bytes()[11..doc.len() - 3]); // {"a":[{"a": … }]}
            assert!(scan(&doc.as_bytes()[..doc.len() - 1], &paths, "t").is_err());
            assert!(scan(&doc.as_bytes()[..doc.len() / 2], &paths, "t").is_err());
        }
        let doc = "[{\"a\":".repeat(1_000_000);
        assert!(scan(doc.as_bytes(), &parse_paths(&["[*].a"]), "t").is_err());
        // Paths deeper than the inline cursor stack spill to the heap.
        let long: String = (0..40).map(|_| "a").collect::<Vec<_>>().join(".");
        let doc = format!("{}7{}", "{\"a\":".repeat(40), "}".repeat(40));
        let s = accepted(&doc, &[&long, "a.a", "a.*.a", "*"]);
        assert_eq!(found(&s), pairs(&[("a", &doc[5..doc.len() - 1])]));
        let s = accepted(&doc, &[&long, "b"]);
        assert_eq!(found(&s), pairs(&[(&long, "7")]));
    }

    #[test]
    fn lone_surrogates() {
        let paths = parse_paths(&["a.b"]);
        // In values and in names the scanner does not read, as serde_json ignores them.
        for doc in [r#"{"x": "\ud800"}"#, r#"{"a": "\udc00\ud800\u0041"}"#, r#"{"x": {"\ud800": 1}}"#, r#"["\uDFFF"]"#]
        {
            assert_eq!(agree(doc.as_bytes(), &paths), Ok(true), "{doc}");
        }
        // A name compared with the paths must be text, as when serde_json reads it.
        for doc in [
            r#"{"\ud800": 1}"#,
            r#"{"\udc00": 1}"#,
            r#"{"\ud800\u0041": 1}"#,
            r#"{"\ud800\ud800": 1}"#,
            r#"{"\ud800\n": 1}"#,
            r#"{"a": {"\ud800x": 1}}"#,
        ] {
            assert!(serde_json::from_str::<IgnoredAny>(doc).is_ok());
            assert_eq!(agree(doc.as_bytes(), &paths), Ok(false), "{doc}");
        }
        assert_eq!(agree(br#"{"\ud800\udc00": 1}"#, &paths), Ok(true));
    }

    #[test]
    fn rejects_every_kind_of_invalid_json() {
        let bad = [
            // literals
            "tru",
            "truee",
            "True",
            "nul",
            "nulll",
            "f",
            "falsy",
            "[t]",
            "[nul]",
            "NaN",
            "Infinity",
            "-Infinity",
            "undefined",
            "{\"a\":tru}",
            "{\"a\":nulL}",
            // numbers
            "01",
            "-01",
            "00",
            "1.",
            "-",
            "-.5",
            ".5",
            "+1",
            "1e",
            "1e+",
            "1E-",
            "0x10",
            "1.e5",
            "1_000",
            "--1",
            "1.5.5",
            "[1 2]",
            "[-]",
            "[01]",
            "{\"a\":01}",
            "{\"a\":1.}",
            "[1e]",
            "[- 1]",
            "{\"a\":-}",
            "1e5.0",
            "[.1]",
            "[1.]",
            "{\"a\":+1}",
            "0e",
            "-0.",
            "2.e3",
            // strings
            "\"abc",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\u12g4\"",
            "\"\\\"",
            "\"a\u{1}b\"",
            "\"tab\tin\"",
            "\"nl\n\"",
            "'single'",
            "\"\\U0041\"",
            "\"\\",
            "\"\\u",
            "\"\\u00",
            "{\"a\u{0}\":1}",
            "{\"\\q\":1}",
            "{\"a\":\"\\a\"}",
            "[\"\u{1f}\"]",
            "{\"a\":\"x}",
            "{\"a\":\"\\u004\"}",
            "{\"\\u00G1\":1}",
            "{\"a\": {\"\\x\": 1}}",
            // structure
            "",
            "   ",
            "{",
            "}",
            "[",
            "]",
            "{]",
            "[}",
            "{\"a\"}",
            "{\"a\" 1}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{,}",
            "[,]",
            "[1,]",
            "[,1]",
            "{a:1}",
            "{1:1}",
            "{\"a\":1 \"b\":2}",
            "[1]]",
            "{} {}",
            "{}x",
            "[]\u{a0}",
            "\u{feff}{}",
            "// c\n{}",
            "{\"a\":1}/",
            "\u{b}{}",
            "\u{c}[]",
            "\u{a0}1",
            "{\"a\":[1,{\"b\":}]}",
            "{\"a\":[1,{\"b\":1]}",
            "[{]}",
            "{\"a\":{\"b\":[}}",
            "{\"a\"::1}",
            "{\"a\":1,,\"b\":2}",
            "[1,,2]",
            "{\"a\":[[[]]}",
            "[[[]]",
            "{\"a\":{}",
            "{\"a\":{\"x\":1}",
            "1 2",
            "\"a\" \"b\"",
            "[\"a\":1]",
            "{\"a\",1}",
            "{\"a\":1:2}",
            "[1;2]",
        ];
        let path_sets = [parse_paths(&[]), parse_paths(&["a", "a.b", "a[*]", "b.*"]), parse_paths(&["*", "[*]"])];
        for doc in bad {
            assert!(serde_json::from_str::<IgnoredAny>(doc).is_err(), "serde_json accepts {doc:?}");
            for paths in &path_sets {
                assert_eq!(agree(doc.as_bytes(), paths), Ok(false), "{doc:?}");
            }
        }
        assert!(scan(b"{\"a\": \"\xff\"}", &[], "t").is_err(), "not UTF-8");
    }

    #[test]
    fn errors_give_a_position_not_the_input() {
        let paths = parse_paths(&["a"]);
        let e = scan(b"{\"a\": 1,\n \"secret\": x}", &paths, "record value").unwrap_err().to_string();
        assert!(e.ends_with("record value is not valid JSON (syntax error at line 2 column 12)"), "{e}");
        let e = scan(b"{\"a\": \"secret", &paths, "v").unwrap_err().to_string();
        assert!(e.contains("unexpected end") && !e.contains("secret"), "{e}");
    }

    const KEYS: &[&str] = &["a", "b", "c", "k 1", "é", "q\"x", "s\\t", "", "😀", "a\u{1}", "/"];
    const PATHS: &[&str] = &[
        "a",
        "b",
        "a.b",
        "a.b.c",
        "a[*]",
        "a[*].b",
        "a[*][*]",
        "*",
        "*.a",
        "a.*",
        "*.*",
        "[*]",
        "[*].a",
        "[*][*]",
        "[*].*",
        "[\"k 1\"]",
        "[\"k 1\"].a",
        "é.b",
        "[\"q\\\"x\"]",
        "[\"s\\\\t\"]",
        "c.*.b",
        "b[*].*",
        "[\"\"]",
        "[\"😀\"][*]",
        "[\"/\"]",
        "*[*]",
    ];

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![8 => prop::sample::select(KEYS).prop_map(String::from), 1 => any::<String>()]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from), // not finite: null
            any::<String>().prop_map(Value::String),
            prop::sample::select(KEYS).prop_map(Value::from),
        ];
        leaf.prop_recursive(6, 64, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Mostly objects, as records are.
    fn document() -> impl Strategy<Value = Value> {
        let members = prop::collection::vec((key(), json_value()), 0..8);
        prop_oneof![3 => members.prop_map(|m| Value::Object(m.into_iter().collect())), 1 => json_value()]
    }

    fn paths() -> impl Strategy<Value = Vec<FieldPath>> {
        prop::collection::vec(prop::sample::select(PATHS), 0..4).prop_map(|p| parse_paths(&p))
    }

    /// Writes a value as JSON with whitespace, escapes, number spellings and duplicate members
    /// chosen by `choices`.
    struct Render<'c> {
        choices: &'c [u8],
        next: usize,
        out: Vec<u8>,
    }

    impl Render<'_> {
        fn pick(&mut self) -> u8 {
            let c = self.choices.get(self.next % self.choices.len().max(1)).copied().unwrap_or(0);
            self.next += 1;
            c
        }

        fn space(&mut self) {
            let ws: &[u8] = match self.pick() % 10 {
                0 => b" ",
                1 => b"\n  ",
                2 => b"\t",
                3 => b"\r\n",
                _ => b"",
            };
            self.out.extend_from_slice(ws);
        }

        fn string(&mut self, s: &str) {
            self.out.push(b'"');
            for c in s.chars() {
                let escape = self.pick() % 5 == 0;
                let short = match c {
                    '"' => Some('"'),
                    '\\' => Some('\\'),
                    '/' if escape => Some('/'),
                    '\u{8}' => Some('b'),
                    '\u{c}' => Some('f'),
                    '\n' => Some('n'),
                    '\r' => Some('r'),
                    '\t' => Some('t'),
                    _ => None,
                };
                if let (Some(e), false) = (short, escape && c < ' ') {
                    self.out.extend_from_slice(&[b'\\', e as u8]);
                } else if escape || c < ' ' {
                    let upper = self.pick() % 2 == 0;
                    for unit in c.encode_utf16(&mut [0; 2]) {
                        let hex = if upper { format!("\\u{unit:04X}") } else { format!("\\u{unit:04x}") };
                        self.out.extend_from_slice(hex.as_bytes());
                    }
                } else {
                    self.out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
            }
            self.out.push(b'"');
        }

        fn number(&mut self, n: &Number) {
            let mut text = n.to_string();
            let plain = !text.contains(['.', 'e', 'E']);
            match self.pick() % 6 {
                0 if plain => text.push_str(".0"),
                1 if plain => text.push_str(".500"),
                2 if !text.contains(['e', 'E']) => text.push_str("e0"),
                3 if !text.contains(['e', 'E']) => text.push_str("E+01"),
                4 if !text.contains(['e', 'E']) => text.push_str("e-2"),
                _ => {}
            }
            self.out.extend_from_slice(text.as_bytes());
        }

        fn value(&mut self, v: &Value) {
            match v {
                Value::Null => self.out.extend_from_slice(b"null"),
                Value::Bool(b) => self.out.extend_from_slice(if *b { b"true" } else { b"false" }),
                Value::Number(n) => self.number(n),
                Value::String(s) => self.string(s),
                Value::Array(items) => {
                    self.out.push(b'[');
                    for (n, item) in items.iter().enumerate() {
                        self.space();
                        if n > 0 {
                            self.out.push(b',');
                            self.space();
                        }
                        self.value(item);
                    }
                    self.space();
                    self.out.push(b']');
                }
                Value::Object(members) => {
                    self.out.push(b'{');
                    let mut first = true;
                    for (key, value) in members {
                        for _ in 0..if self.pick() % 8 == 0 { 2 } else { 1 } {
                            self.space();
                            if !first {
                                self.out.push(b',');
                                self.space();
                            }
                            first = false;
                            self.string(key);
                            self.space();
                            self.out.push(b':');
                            self.space();
                            self.value(value);
                        }
                    }
                    self.space();
                    self.out.push(b'}');
                }
            }
        }
    }

    fn render(v: &Value, choices: &[u8]) -> Vec<u8> {
        let mut r = Render { choices, next: 0, out: Vec::new() };
        r.space();
        r.value(v);
        r.space();
        r.out
    }

    const ALPHABET: &[u8] = b"{}[],:\" \n\\/0123456789.-+eEtrufalsnuU\x00\x1f\xc3\xa9abdD8";

    fn mutate(mut doc: Vec<u8>, edits: &[(usize, u8, usize)]) -> Vec<u8> {
        for &(at, op, byte) in edits {
            let at = at % (doc.len() + 1);
            let byte = ALPHABET[byte % ALPHABET.len()];
            match op % 4 {
                0 => doc.truncate(at),
                1 => doc.insert(at, byte),
                2 if at < doc.len() => {
                    doc.remove(at);
                }
                _ if at < doc.len() => doc[at] = byte,
                _ => {}
            }
        }
        doc
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn valid_documents_scan_like_the_reference(
            value in document(),
            choices in prop::collection::vec(any::<u8>(), 1..64),
            paths in paths(),
        ) {
            let doc = render(&value, &choices);
            prop_assert_eq!(agree(&doc, &paths), Ok(true));
            // Writing every leaf back unchanged gives the same document.
            let s = scan(&doc, &paths, "t").unwrap();
            let out = super::super::Scan::write(&s, &mut |_, _, emit| emit.keep()).unwrap();
            prop_assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), serde_json::from_slice::<Value>(&doc).unwrap());
        }

        #[test]
        fn mutated_documents_are_judged_like_serde_json(
            value in document(),
            choices in prop::collection::vec(any::<u8>(), 1..64),
            edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<usize>()), 1..4),
            paths in paths(),
        ) {
            let doc = mutate(render(&value, &choices), &edits);
            agree(&doc, &paths).map_err(TestCaseError::fail)?;
        }

        #[test]
        fn short_byte_strings_are_judged_like_serde_json(
            doc in prop::collection::vec(prop::sample::select(ALPHABET), 0..16),
            paths in paths(),
        ) {
            agree(&doc, &paths).map_err(TestCaseError::fail)?;
        }
    }
}
