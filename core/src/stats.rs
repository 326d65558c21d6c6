//! Counters a caller, a test or a benchmark can read: records, fields, DEKs and KMS calls.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a codec's counters since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
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
    /// KMS calls that failed (wrap or unwrap; an access denial counts too).
    pub kms_errors: u64,
    /// Records whose DEK a consumer was denied recently and so did not ask the KMS about.
    pub kms_denials_cached: u64,
    pub dek_cache_hits: u64,
    pub dek_cache_misses: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub records_encrypted: AtomicU64,
    pub records_decrypted: AtomicU64,
    pub fields_encrypted: AtomicU64,
    pub fields_decrypted: AtomicU64,
    pub fields_withheld: AtomicU64,
    pub deks_created: AtomicU64,
    pub kms_wrap_calls: AtomicU64,
    pub kms_unwrap_calls: AtomicU64,
    pub kms_derive_calls: AtomicU64,
    pub kms_errors: AtomicU64,
    pub kms_denials_cached: AtomicU64,
    pub dek_cache_hits: AtomicU64,
    pub dek_cache_misses: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> Stats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            records_encrypted: r(&self.records_encrypted),
            records_decrypted: r(&self.records_decrypted),
            fields_encrypted: r(&self.fields_encrypted),
            fields_decrypted: r(&self.fields_decrypted),
            fields_withheld: r(&self.fields_withheld),
            deks_created: r(&self.deks_created),
            kms_wrap_calls: r(&self.kms_wrap_calls),
            kms_unwrap_calls: r(&self.kms_unwrap_calls),
            kms_derive_calls: r(&self.kms_derive_calls),
            kms_errors: r(&self.kms_errors),
            kms_denials_cached: r(&self.kms_denials_cached),
            dek_cache_hits: r(&self.dek_cache_hits),
            dek_cache_misses: r(&self.dek_cache_misses),
        }
    }
}
