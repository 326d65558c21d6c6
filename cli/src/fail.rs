//! Exit codes and the one error type of the commands: a message for stderr and the code the
//! process exits with. Messages name files, topics, key ids and error kinds, never record
//! values or key material.

use std::fmt;

use fieldcrypt::ErrorKind;

/// A record or an operation failed (bad policy, undecryptable record, ...).
pub const FAILED: u8 = 1;
/// Bad usage or configuration: wrong arguments, unreadable files, invalid configuration.
pub const USAGE: u8 = 2;
/// A policy signature did not verify, or a document that must be signed is not.
pub const VERIFY: u8 = 3;
/// Kafka or the KMS could not be reached or failed: trying again later may help.
pub const UNREACHABLE: u8 = 4;

/// The text every `--help` ends with.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  a record or an operation failed (the error is printed on stderr)
  2  bad usage or configuration (arguments, files, policy or configuration document)
  3  verification failed: a policy signature does not verify, or the document is not signed
  4  Kafka or the KMS could not be reached (retryable)";

#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure { code, message: message.into() }
    }
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure::new(FAILED, message)
    }
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(USAGE, message)
    }
    pub fn verify(message: impl Into<String>) -> Failure {
        Failure::new(VERIFY, message)
    }
    pub fn unreachable(message: impl Into<String>) -> Failure {
        Failure::new(UNREACHABLE, message)
    }

    /// A fieldcrypt error met while setting up (reading a policy, a configuration, opening a
    /// key store): configuration problems are usage errors (2).
    pub fn setup(context: &str, e: fieldcrypt::Error) -> Failure {
        let code = match e.kind() {
            ErrorKind::Policy | ErrorKind::Config if !e.is_retryable() => USAGE,
            _ => code_of(&e),
        };
        Failure::new(code, format!("{context}: {e}"))
    }

    /// A fieldcrypt error met while working (a record, a publication, a key operation).
    pub fn op(context: &str, e: fieldcrypt::Error) -> Failure {
        Failure::new(code_of(&e), format!("{context}: {e}"))
    }
}

/// 4 for a failure that may go away (KMS, registry or Kafka unreachable: a retryable error),
/// else 1.
pub fn code_of(e: &fieldcrypt::Error) -> u8 {
    if e.is_retryable() {
        UNREACHABLE
    } else {
        FAILED
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub type Outcome = Result<(), Failure>;

/// Reads a file given on the command line; a missing or unreadable file is a usage error.
pub fn read_file(what: &str, path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::usage(format!("cannot read {what} {}: {e}", path.display())))
}

/// [`read_file`] as UTF-8 text.
pub fn read_text(what: &str, path: &std::path::Path) -> Result<String, Failure> {
    String::from_utf8(read_file(what, path)?)
        .map_err(|_| Failure::usage(format!("{what} {} is not UTF-8 text", path.display())))
}
