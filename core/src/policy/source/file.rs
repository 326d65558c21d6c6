//! A policy file, re-read on each fetch: policies are small, and comparing contents (not
//! modification times, which have coarse resolution and survive `cp -p`) never misses a change.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{Fetched, LastDigest, PolicySource, MAX_POLICY_DOCUMENT};
use crate::error::{Error, ErrorKind, Result};

/// A policy (envelope or bare) in a file. Replace the file atomically (write elsewhere, then
/// rename) so a fetch never reads half a document; a half-written one would only be rejected.
pub struct FileSource {
    path: PathBuf,
    last: LastDigest,
}

impl FileSource {
    pub fn new(path: impl AsRef<Path>) -> FileSource {
        FileSource { path: path.as_ref().to_path_buf(), last: LastDigest::default() }
    }

    fn read(&self) -> std::io::Result<Vec<u8>> {
        let mut document = Vec::new();
        std::fs::File::open(&self.path)?.take(MAX_POLICY_DOCUMENT as u64 + 1).read_to_end(&mut document)?;
        Ok(document)
    }
}

impl PolicySource for FileSource {
    fn fetch(&self) -> Result<Fetched> {
        let document = self.read().map_err(|e| {
            Error::retryable(ErrorKind::Policy, format!("cannot read policy file {}: {e}", self.path.display()))
        })?;
        if document.len() > MAX_POLICY_DOCUMENT {
            return Err(Error::policy(format!(
                "policy file {} is larger than {MAX_POLICY_DOCUMENT} bytes",
                self.path.display()
            )));
        }
        Ok(self.last.check(document))
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}
