//! `fieldcrypt-ffi`: the C ABI of fieldcrypt, for the Go, C# and Java bindings. Conventions
//! (rustls-ffi's): every symbol prefixed `fc_`; opaque handles with `_new`/`_free`; every fallible
//! call returns an `int32_t` status and fills the caller's `fc_error`; Rust-owned output buffers
//! freed by `fc_buf_free`; every entry point catches panics; no thread-local state. The layout
//! of packed records and the configuration document are in `ffi/README.md`.
//!
//! Only marshaling lives here: every rule about records, keys and formats is the core's.

#![allow(non_camel_case_types)]
// The entry points check their pointers themselves (NULL → FC_ERR_INVALID_ARGUMENT); the rest
// of their contract (valid, live pointers of the stated lengths) is the caller's, in C terms.
#![allow(clippy::missing_safety_doc)]
// C signatures pass each byte string as a pointer and a length.
#![allow(clippy::too_many_arguments)]

mod codec;
pub mod packed;

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

pub use codec::*;
use fieldcrypt::ErrorKind;

pub const FC_OK: i32 = 0;
pub const FC_ERR_POLICY: i32 = 1;
pub const FC_ERR_CONFIG: i32 = 2;
pub const FC_ERR_RECORD: i32 = 3;
pub const FC_ERR_FORMAT: i32 = 4;
pub const FC_ERR_UNSUPPORTED_VERSION: i32 = 5;
pub const FC_ERR_CRYPTO: i32 = 6;
pub const FC_ERR_KEY_NOT_FOUND: i32 = 7;
pub const FC_ERR_ACCESS_DENIED: i32 = 8;
pub const FC_ERR_KMS: i32 = 9;
pub const FC_ERR_REGISTRY: i32 = 10;
pub const FC_ERR_LIMIT_EXCEEDED: i32 = 11;
/// The record's data key was shredded (its data subject was erased): unreadable for good.
pub const FC_ERR_SHREDDED: i32 = 12;
/// A NULL where a value is required, text that is not UTF-8, or malformed packed data.
pub const FC_ERR_INVALID_ARGUMENT: i32 = 100;
/// The library panicked; the call had no effect. Please report it.
pub const FC_ERR_PANIC: i32 = 101;
/// An error kind newer than this ABI's list.
pub const FC_ERR_OTHER: i32 = 102;
/// The Kafka client of fieldcrypt-ffi-kafka failed (connect, produce, consume).
pub const FC_ERR_KAFKA: i32 = 200;

/// Bytes owned by the library: free them with `fc_buf_free`. A zeroed buffer holds nothing.
#[repr(C)]
pub struct fc_buf {
    pub data: *mut u8,
    pub len: usize,
    pub cap: usize,
}

/// What went wrong, filled by a call that fails. `message` is UTF-8 with a NUL after its `len`
/// bytes; free it with `fc_error_free`.
#[repr(C)]
pub struct fc_error {
    /// The status the call returned.
    pub status: i32,
    /// 1 when calling again later may succeed (the KMS or registry was unreachable), else 0.
    pub retryable: i32,
    /// For batch calls, the position of the record that failed; -1 otherwise.
    pub index: i64,
    pub message: fc_buf,
}

/// A codec's counters since it was built (`fc_codec_stats`).
#[repr(C)]
#[derive(Default)]
pub struct fc_stats {
    pub records_encrypted: u64,
    pub records_decrypted: u64,
    pub fields_encrypted: u64,
    pub fields_decrypted: u64,
    /// Fields a consumer left as ciphertext, nulled or masked (no access, or not in its profile).
    pub fields_withheld: u64,
    pub deks_created: u64,
    pub kms_wrap_calls: u64,
    pub kms_unwrap_calls: u64,
    pub kms_derive_calls: u64,
    pub kms_errors: u64,
    pub kms_denials_cached: u64,
    pub dek_cache_hits: u64,
    pub dek_cache_misses: u64,
}

impl fc_buf {
    pub const EMPTY: fc_buf = fc_buf { data: std::ptr::null_mut(), len: 0, cap: 0 };

    /// Hands `bytes` to the caller.
    pub fn from_vec(bytes: Vec<u8>) -> fc_buf {
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        fc_buf { data: bytes.as_mut_ptr(), len: bytes.len(), cap: bytes.capacity() }
    }
}

/// Why a call failed, before it is written into the caller's `fc_error`.
#[derive(Debug)]
pub struct Failure {
    pub status: i32,
    pub retryable: bool,
    pub index: i64,
    pub message: String,
}

impl Failure {
    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure { status: FC_ERR_INVALID_ARGUMENT, retryable: false, index: -1, message: message.into() }
    }

    pub fn at(mut self, index: usize) -> Failure {
        self.index = i64::try_from(index).unwrap_or(i64::MAX);
        self
    }

    fn write(self, err: *mut fc_error) {
        if err.is_null() {
            return;
        }
        let mut message = self.message.into_bytes();
        let len = message.len();
        message.push(0);
        let mut buf = fc_buf::from_vec(message);
        buf.len = len;
        // SAFETY: non-NULL, and the caller's contract is a writable fc_error.
        unsafe {
            err.write(fc_error {
                status: self.status,
                retryable: self.retryable.into(),
                index: self.index,
                message: buf,
            })
        };
    }
}

impl From<fieldcrypt::Error> for Failure {
    fn from(e: fieldcrypt::Error) -> Failure {
        Failure { status: status_of(e.kind()), retryable: e.is_retryable(), index: -1, message: e.to_string() }
    }
}

/// The status code of a core error kind.
pub fn status_of(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::Policy => FC_ERR_POLICY,
        ErrorKind::Config => FC_ERR_CONFIG,
        ErrorKind::Record => FC_ERR_RECORD,
        ErrorKind::Format => FC_ERR_FORMAT,
        ErrorKind::UnsupportedVersion => FC_ERR_UNSUPPORTED_VERSION,
        ErrorKind::Crypto => FC_ERR_CRYPTO,
        ErrorKind::KeyNotFound => FC_ERR_KEY_NOT_FOUND,
        ErrorKind::AccessDenied => FC_ERR_ACCESS_DENIED,
        ErrorKind::Kms => FC_ERR_KMS,
        ErrorKind::Registry => FC_ERR_REGISTRY,
        ErrorKind::LimitExceeded => FC_ERR_LIMIT_EXCEEDED,
        ErrorKind::Shredded => FC_ERR_SHREDDED,
        _ => FC_ERR_OTHER,
    }
}

/// Runs an entry point's body: its failure, or a panic, becomes a status and the caller's error.
pub fn guard(err: *mut fc_error, body: impl FnOnce() -> Result<(), Failure>) -> i32 {
    let failure = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return FC_OK,
        Ok(Err(failure)) => failure,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Failure {
                status: FC_ERR_PANIC,
                retryable: false,
                index: -1,
                message: format!("fieldcrypt panicked: {what}"),
            }
        }
    };
    let status = failure.status;
    failure.write(err);
    status
}

/// `len` bytes at `ptr`; NULL is allowed only for no bytes.
pub unsafe fn bytes<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL but its length is {len}")));
    }
    if len > isize::MAX as usize {
        return Err(Failure::invalid(format!("{what}: length {len} is too large")));
    }
    // SAFETY: non-NULL; the caller's contract is `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A record part: absent when `len < 0`.
pub unsafe fn part<'a>(ptr: *const u8, len: i64, what: &str) -> Result<Option<&'a [u8]>, Failure> {
    if len < 0 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| Failure::invalid(format!("{what}: length {len} is too large")))?;
    unsafe { bytes(ptr, len, what) }.map(Some)
}

/// UTF-8 text of `len` bytes at `ptr`.
pub unsafe fn text<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a str, Failure> {
    std::str::from_utf8(unsafe { bytes(ptr, len, what) }?).map_err(|_| Failure::invalid(format!("{what} is not UTF-8")))
}

/// Writes `value` through an out-pointer that must not be NULL.
pub unsafe fn put<T>(out: *mut T, value: T, what: &str) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL; the caller's contract is a writable T.
    unsafe { out.write(value) };
    Ok(())
}

/// The library's version, e.g. "0.1.0" (static; do not free).
#[no_mangle]
pub extern "C" fn fc_version() -> *const c_char {
    static VERSION: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };
    VERSION.as_ptr()
}

/// The stable name of a status: "ok", the core's error kind ("crypto", "key_not_found", ...),
/// "invalid_argument", "panic", "other", "kafka", or "unknown" (static; do not free).
#[no_mangle]
pub extern "C" fn fc_status_name(status: i32) -> *const c_char {
    status_name(status).as_ptr()
}

fn status_name(status: i32) -> &'static CStr {
    match status {
        FC_OK => c"ok",
        FC_ERR_POLICY => c"policy",
        FC_ERR_CONFIG => c"config",
        FC_ERR_RECORD => c"record",
        FC_ERR_FORMAT => c"format",
        FC_ERR_UNSUPPORTED_VERSION => c"unsupported_version",
        FC_ERR_CRYPTO => c"crypto",
        FC_ERR_KEY_NOT_FOUND => c"key_not_found",
        FC_ERR_ACCESS_DENIED => c"access_denied",
        FC_ERR_KMS => c"kms",
        FC_ERR_REGISTRY => c"registry",
        FC_ERR_LIMIT_EXCEEDED => c"limit_exceeded",
        FC_ERR_SHREDDED => c"shredded",
        FC_ERR_INVALID_ARGUMENT => c"invalid_argument",
        FC_ERR_PANIC => c"panic",
        FC_ERR_OTHER => c"other",
        FC_ERR_KAFKA => c"kafka",
        _ => c"unknown",
    }
}

/// Frees a buffer the library returned and zeroes it. NULL, or a zeroed buffer, is a no-op.
#[no_mangle]
pub unsafe extern "C" fn fc_buf_free(buf: *mut fc_buf) {
    let _ = catch_unwind(|| {
        // SAFETY: the caller's contract: NULL, or a buffer this library filled and not yet freed.
        let Some(buf) = (unsafe { buf.as_mut() }) else { return };
        let taken = std::mem::replace(buf, fc_buf::EMPTY);
        if !taken.data.is_null() {
            // SAFETY: made by fc_buf::from_vec from a Vec of this capacity; len <= cap.
            drop(unsafe { Vec::from_raw_parts(taken.data, taken.len, taken.cap) });
        }
    });
}

/// Frees the message of an error the library filled and zeroes the error. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn fc_error_free(err: *mut fc_error) {
    // SAFETY: the caller's contract: NULL, or an error this library filled (or zeroed).
    let Some(e) = (unsafe { err.as_mut() }) else { return };
    unsafe { fc_buf_free(&mut e.message) };
    e.status = FC_OK;
    e.retryable = 0;
    e.index = -1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_are_the_core_kind_names() {
        for kind in ErrorKind::ALL {
            let status = status_of(kind);
            assert_ne!(status, FC_ERR_OTHER, "{kind}");
            assert_eq!(status_name(status).to_str().unwrap(), kind.as_str());
        }
        assert_eq!(status_name(12345).to_str().unwrap(), "unknown");
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let mut err = fc_error { status: 0, retryable: 0, index: 0, message: fc_buf::EMPTY };
        let status = guard(&mut err, || panic!("boom"));
        assert_eq!(status, FC_ERR_PANIC);
        assert_eq!(err.status, FC_ERR_PANIC);
        // SAFETY: filled by guard.
        let message = unsafe { std::slice::from_raw_parts(err.message.data, err.message.len + 1) };
        assert_eq!(message, b"fieldcrypt panicked: boom\0");
        unsafe { fc_error_free(&mut err) };
        assert!(err.message.data.is_null());
        unsafe { fc_error_free(&mut err) };
    }
}
