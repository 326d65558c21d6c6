//! The one error type of fieldcrypt. Messages name rules, paths, key URIs and ids — never
//! plaintext, ciphertext contents or key bytes.

use std::fmt;

/// What went wrong, as a caller can match on it. Bindings map each kind to their own error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The policy document is invalid (bad JSON, unknown key scheme, bad path or algorithm...).
    Policy,
    /// The runtime configuration is invalid (no KMS client for a scheme, bad limits, unknown profile).
    Config,
    /// The record is not what the policy expects (not JSON, missing value) — nothing was encrypted.
    Record,
    /// The fieldcrypt header is malformed (truncated, bad lengths, trailing bytes).
    Format,
    /// The fieldcrypt header has a format version this build does not know.
    UnsupportedVersion,
    /// Authentication failed: tampered or truncated ciphertext, tampered header, wrong key.
    Crypto,
    /// A key (KEK or DEK) is unknown to the KMS or key store.
    KeyNotFound,
    /// The KMS refused this client access to a key: wrong or expired credentials, or a permission
    /// that was revoked. Consumers treat it like a missing key (the profile's fallback applies).
    AccessDenied,
    /// The KMS failed or could not be reached.
    Kms,
    /// The schema registry failed, could not be reached, or does not know a record's schema.
    Registry,
    /// A data key reached its hard usage limit and no new one could be made.
    LimitExceeded,
    /// The record's data key was deleted on purpose (its data subject was shredded): the fields
    /// under it are unreadable for good. Consumers treat it like a missing key (the profile's
    /// fallback applies).
    Shredded,
}

impl ErrorKind {
    /// Every kind this build has, for bindings that map each to a type of their own.
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::Policy,
        ErrorKind::Config,
        ErrorKind::Record,
        ErrorKind::Format,
        ErrorKind::UnsupportedVersion,
        ErrorKind::Crypto,
        ErrorKind::KeyNotFound,
        ErrorKind::AccessDenied,
        ErrorKind::Kms,
        ErrorKind::Registry,
        ErrorKind::LimitExceeded,
        ErrorKind::Shredded,
    ];

    /// A stable, lower-case name for the kind, shared by every binding and the test vectors.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Policy => "policy",
            ErrorKind::Config => "config",
            ErrorKind::Record => "record",
            ErrorKind::Format => "format",
            ErrorKind::UnsupportedVersion => "unsupported_version",
            ErrorKind::Crypto => "crypto",
            ErrorKind::KeyNotFound => "key_not_found",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::Kms => "kms",
            ErrorKind::Registry => "registry",
            ErrorKind::LimitExceeded => "limit_exceeded",
            ErrorKind::Shredded => "shredded",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fieldcrypt error: a kind to match on, a message for humans, and whether retrying may help.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind} error: {message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    retryable: bool,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), retryable: false }
    }

    /// An error that may go away if the same call is made again later (KMS unreachable...).
    pub fn retryable(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), retryable: true }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    pub(crate) fn policy(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Policy, message)
    }
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    pub(crate) fn record(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Record, message)
    }
    pub(crate) fn format(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Format, message)
    }
    pub(crate) fn crypto(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Crypto, message)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
