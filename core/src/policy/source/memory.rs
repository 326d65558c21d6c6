//! A source held in memory: for tests, and for applications that receive the policy some way
//! fieldcrypt does not know (a configuration service's callback...) and hand it over.

use std::sync::{Arc, Mutex};

use super::{Fetched, PolicySource};
use crate::error::Result;

/// A document set by the application. Clones share the document, so one clone can be given to
/// a [`crate::ReloadingCodec`] and the other kept to [`MemorySource::set`] new documents.
#[derive(Clone)]
pub struct MemorySource {
    state: Arc<Mutex<State>>,
}

struct State {
    document: Vec<u8>,
    /// Bumped by each `set`; what the last fetch returned.
    version: u64,
    fetched: Option<u64>,
}

impl MemorySource {
    pub fn new(document: impl Into<Vec<u8>>) -> MemorySource {
        MemorySource { state: Arc::new(Mutex::new(State { document: document.into(), version: 0, fetched: None })) }
    }

    /// Replaces the document; the next fetch returns it (even if the bytes are equal).
    pub fn set(&self, document: impl Into<Vec<u8>>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.document = document.into();
        state.version += 1;
    }
}

impl PolicySource for MemorySource {
    fn fetch(&self) -> Result<Fetched> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.fetched == Some(state.version) {
            return Ok(Fetched::Unchanged);
        }
        state.fetched = Some(state.version);
        Ok(Fetched::New(state.document.clone()))
    }

    fn describe(&self) -> String {
        "in-memory policy".to_string()
    }
}
