//! Where applications get their policy from: a file, an HTTPS URL, or (feature `kafka`) a
//! compacted Kafka topic. A source only delivers bytes; whether they are an acceptable policy
//! (signed by a trusted key, newer than the current one) is decided by the reader, e.g.
//! [`crate::ReloadingCodec`].

mod file;
mod https;
#[cfg(feature = "kafka")]
mod kafka;
mod memory;

pub use file::FileSource;
pub use https::HttpsSource;
#[cfg(feature = "kafka")]
pub use kafka::{KafkaTopicSource, PolicyPublisher, Published, DEFAULT_POLICY_TOPIC};
pub use memory::MemorySource;

use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::error::Result;

/// A policy document larger than this is refused by every source (policies are kilobytes).
pub const MAX_POLICY_DOCUMENT: usize = 4 << 20;

/// What a [`PolicySource::fetch`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The same document as the last fetch returned (the first fetch never says this).
    Unchanged,
    /// A document different from the last one returned: an envelope or a bare policy.
    New(Vec<u8>),
}

/// A place a policy document is read from. `fetch` is called from a background thread on an
/// interval, so it blocks (within the source's timeouts) and must not panic on any input.
pub trait PolicySource: Send + Sync {
    /// The current document, or [`Fetched::Unchanged`] when it is the one returned last.
    /// Errors (unreadable file, server down) are the source's; the caller keeps its policy.
    fn fetch(&self) -> Result<Fetched>;

    /// Where this source reads from, for logs and errors: no credentials, no query strings.
    fn describe(&self) -> String;
}

impl<S: PolicySource + ?Sized> PolicySource for Box<S> {
    fn fetch(&self) -> Result<Fetched> {
        (**self).fetch()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

impl<S: PolicySource + ?Sized> PolicySource for std::sync::Arc<S> {
    fn fetch(&self) -> Result<Fetched> {
        (**self).fetch()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Remembers the digest of the last document returned, so an unchanged document is reported as
/// such even when the transport cannot tell (a file rewritten with the same bytes, a server
/// without ETags).
#[derive(Default)]
pub(crate) struct LastDigest(Mutex<Option<[u8; 32]>>);

impl LastDigest {
    /// `New(document)` if it differs from the last one, else `Unchanged`; records it.
    pub(crate) fn check(&self, document: Vec<u8>) -> Fetched {
        let digest: [u8; 32] = Sha256::digest(&document).into();
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref() == Some(&digest) {
            Fetched::Unchanged
        } else {
            *last = Some(digest);
            Fetched::New(document)
        }
    }
}
