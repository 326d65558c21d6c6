//! Packed records: how headers, records and batches cross the ABI as one byte string each, so a
//! record costs one call and no pointer-bearing structs (which cgo, JNA and P/Invoke each handle
//! differently). All integers are `u32` little-endian; [`FC_ABSENT`] marks a missing value:
//!
//! ```text
//! headers := count { name_len name value_len|FC_ABSENT value }*count      (empty = no headers)
//! record  := key_len|FC_ABSENT key value_len|FC_ABSENT value headers
//! batch   := count record*count
//! ```

use fieldcrypt::Record;

use crate::Failure;

/// The length that marks an absent key, value or header value.
pub const FC_ABSENT: u32 = u32::MAX;

/// A header as it is read out of packed bytes: a name and a value that may be absent.
pub type HeaderRef<'a> = (&'a str, Option<&'a [u8]>);

/// A record read out of packed bytes, borrowing them.
#[derive(Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<HeaderRef<'a>>,
}

/// Reads packed data front to back; every shortfall is an invalid-argument failure.
struct Reader<'a> {
    what: &'static str,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(what: &'static str, bytes: &'a [u8]) -> Reader<'a> {
        Reader { what, rest: bytes }
    }

    fn malformed(&self, why: &str) -> Failure {
        Failure::invalid(format!("malformed packed {}: {why}", self.what))
    }

    fn u32(&mut self) -> Result<u32, Failure> {
        let Some((n, rest)) = self.rest.split_first_chunk::<4>() else {
            return Err(self.malformed("truncated length"));
        };
        self.rest = rest;
        Ok(u32::from_le_bytes(*n))
    }

    fn take(&mut self, len: u32) -> Result<&'a [u8], Failure> {
        let len = len as usize;
        if len > self.rest.len() {
            return Err(self.malformed("a length runs past the end"));
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(bytes)
    }

    fn optional(&mut self) -> Result<Option<&'a [u8]>, Failure> {
        match self.u32()? {
            FC_ABSENT => Ok(None),
            len => self.take(len).map(Some),
        }
    }

    /// A count of items, each at least `min_size` bytes: a count the data cannot hold is
    /// rejected before anything is allocated for it.
    fn count(&mut self, min_size: usize) -> Result<usize, Failure> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size) > self.rest.len() {
            return Err(self.malformed("a count exceeds the data"));
        }
        Ok(n)
    }

    /// A header list; when `may_be_missing`, no bytes left at all is an empty list.
    fn headers(&mut self, may_be_missing: bool) -> Result<Vec<HeaderRef<'a>>, Failure> {
        if may_be_missing && self.rest.is_empty() {
            return Ok(Vec::new());
        }
        let n = self.count(8)?;
        let mut headers = Vec::with_capacity(n);
        for _ in 0..n {
            let len = self.u32()?;
            let name =
                std::str::from_utf8(self.take(len)?).map_err(|_| self.malformed("a header name is not UTF-8"))?;
            headers.push((name, self.optional()?));
        }
        Ok(headers)
    }

    /// A record; a lone record may omit an empty header list, one inside a batch may not (or
    /// a batch cut short there would still parse).
    fn record(&mut self, lone: bool) -> Result<RecordRef<'a>, Failure> {
        let key = self.optional()?;
        let value = self.optional()?;
        let headers = self.headers(lone)?;
        Ok(RecordRef { key, value, headers })
    }

    fn batch(&mut self) -> Result<Vec<RecordRef<'a>>, Failure> {
        let n = self.count(12)?;
        (0..n).map(|_| self.record(false)).collect()
    }

    /// Fails unless everything was read.
    fn end(self) -> Result<(), Failure> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.malformed("trailing bytes"))
        }
    }
}

/// Parses exactly one packed header list.
pub fn headers(bytes: &[u8]) -> Result<Vec<HeaderRef<'_>>, Failure> {
    let mut r = Reader::new("headers", bytes);
    let headers = r.headers(true)?;
    r.end()?;
    Ok(headers)
}

/// Parses exactly one packed record.
pub fn record(bytes: &[u8]) -> Result<RecordRef<'_>, Failure> {
    let mut r = Reader::new("record", bytes);
    let record = r.record(true)?;
    r.end()?;
    Ok(record)
}

/// Parses exactly one packed batch.
pub fn batch(bytes: &[u8]) -> Result<Vec<RecordRef<'_>>, Failure> {
    let mut r = Reader::new("batch", bytes);
    let records = r.batch()?;
    r.end()?;
    Ok(records)
}

fn len_of(n: usize) -> Result<u32, Failure> {
    u32::try_from(n).ok().filter(|&n| n != FC_ABSENT).ok_or_else(|| Failure::invalid("a record part is 4 GiB or more"))
}

fn put_optional(out: &mut Vec<u8>, bytes: Option<&[u8]>) -> Result<(), Failure> {
    match bytes {
        None => out.extend_from_slice(&FC_ABSENT.to_le_bytes()),
        Some(b) => {
            out.extend_from_slice(&len_of(b.len())?.to_le_bytes());
            out.extend_from_slice(b);
        }
    }
    Ok(())
}

/// The packed size of a record, for reserving the output once.
fn packed_size<'a>(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> usize {
    let part = |b: Option<&[u8]>| 4 + b.map_or(0, <[u8]>::len);
    part(key) + part(value) + 4 + headers.map(|(n, v)| 4 + n.len() + part(v)).sum::<usize>()
}

/// Appends a core record in packed form.
pub fn put_record(out: &mut Vec<u8>, record: &Record) -> Result<(), Failure> {
    let headers = || record.headers.iter().map(|h| (h.name.as_str(), h.value.as_deref()));
    out.reserve(packed_size(record.key.as_deref(), record.value.as_deref(), headers()));
    put_optional(out, record.key.as_deref())?;
    put_optional(out, record.value.as_deref())?;
    put_headers(out, headers())
}

/// Appends a record given by its parts in packed form.
pub fn put_parts<'a>(
    out: &mut Vec<u8>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + Clone,
) -> Result<(), Failure> {
    out.reserve(packed_size(key, value, headers.clone()));
    put_optional(out, key)?;
    put_optional(out, value)?;
    put_headers(out, headers)
}

fn put_headers<'a>(
    out: &mut Vec<u8>,
    headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> Result<(), Failure> {
    let count_at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut n = 0u32;
    for (name, value) in headers {
        put_optional(out, Some(name.as_bytes()))?;
        put_optional(out, value)?;
        n = n.checked_add(1).ok_or_else(|| Failure::invalid("too many headers"))?;
    }
    out[count_at..count_at + 4].copy_from_slice(&n.to_le_bytes());
    Ok(())
}

/// A record packed on its own.
pub fn pack_record(record: &Record) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    put_record(&mut out, record)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldcrypt::OwnedHeader;

    fn sample() -> Record {
        Record {
            key: None,
            value: Some(b"{}".to_vec()),
            headers: vec![OwnedHeader::new("a", b"1".to_vec()), OwnedHeader { name: "n".into(), value: None }],
        }
    }

    #[test]
    fn records_round_trip_keeping_absent_and_empty_apart() {
        let mut r = sample();
        let bytes = pack_record(&r).unwrap();
        let back = record(&bytes).unwrap();
        assert_eq!(back.key, None);
        assert_eq!(back.value, Some(&b"{}"[..]));
        assert_eq!(back.headers, vec![("a", Some(&b"1"[..])), ("n", None)]);
        r.key = Some(Vec::new());
        assert_eq!(record(&pack_record(&r).unwrap()).unwrap().key, Some(&b""[..]));
    }

    #[test]
    fn a_batch_of_records_round_trips() {
        let mut bytes = 2u32.to_le_bytes().to_vec();
        put_record(&mut bytes, &sample()).unwrap();
        put_record(&mut bytes, &Record::default()).unwrap();
        let records = batch(&bytes).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1], RecordRef { key: None, value: None, headers: vec![] });
    }

    #[test]
    fn every_truncation_and_extension_is_rejected_without_panicking() {
        let bytes = pack_record(&sample()).unwrap();
        for cut in 0..bytes.len() {
            // Cutting exactly before the header count leaves a valid record without headers.
            if cut == bytes.len() - 4 - (4 + 1 + 4 + 1) - (4 + 1 + 4) {
                continue;
            }
            assert!(record(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(record(&longer).is_err());
        assert!(batch(&[0xff, 0xff, 0xff, 0x7f]).is_err(), "a huge count is refused before allocating");
        assert!(headers(&[1, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err(), "non-UTF-8 name");
    }
}
