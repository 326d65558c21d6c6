//! A codec whose policy follows a [`PolicySource`]: a background thread polls the source, and a
//! new policy that verifies and is newer replaces the running one without restarting the
//! application. Anything else keeps the last good policy in force and is recorded.
//!
//! Rules (docs/POLICY.md, "Hot reload"):
//! - the first load must succeed, or there is no codec;
//! - a document that does not verify (unsigned, unknown key, bad signature) or does not parse is
//!   rejected;
//! - the policy id may not change, and a changed policy text must carry a higher revision:
//!   an older revision is a rollback (an attacker replaying an old, weaker signed policy) and an
//!   equal one would make two policies indistinguishable in record headers;
//! - the same policy text again (re-signed, say by a new signing key) changes nothing.
//!
//! Each load and rejection is an audit event (`tracing` target `fieldcrypt::audit`, events
//! `policy_loaded` / `policy_rejected`) with the policy id, revisions and a reason, never the
//! policy text or any key.

use std::fmt;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use rand::Rng;

use crate::audit::{self, AuditEvent};

use crate::codec::{Codec, HeaderView, Record};
use crate::error::{Error, Result};
use crate::policy::signed::{Verification, VerifiedPolicy};
use crate::policy::source::{Fetched, PolicySource};
use crate::policy::Policy;

/// How often the source is polled unless configured otherwise.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// Makes the codec for a policy: the application's KMS clients, profile, schema source, limits.
type CodecFactory = dyn Fn(Policy) -> Result<Codec> + Send + Sync;

/// Configures a [`ReloadingCodec`].
pub struct ReloadingCodecBuilder {
    source: Box<dyn PolicySource>,
    verification: Verification,
    interval: Option<Duration>,
    policy_id: Option<String>,
    min_revision: u64,
}

impl ReloadingCodecBuilder {
    /// Poll the source this often (default [`DEFAULT_RELOAD_INTERVAL`], ±10% jitter so that a
    /// fleet started together does not poll together).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    /// No background thread: the policy changes only on [`ReloadingCodec::reload_now`].
    pub fn manual(mut self) -> Self {
        self.interval = None;
        self
    }

    /// Accept only this policy id, from the first load on (a source serving another policy
    /// signed by the same team is then refused).
    pub fn policy_id(mut self, id: impl Into<String>) -> Self {
        self.policy_id = Some(id.into());
        self
    }

    /// Refuse revisions below this one, from the first load on. Rollback protection otherwise
    /// starts at the first policy loaded; an application that persists the last revision it ran
    /// passes it here to keep the protection across restarts.
    pub fn min_revision(mut self, revision: u64) -> Self {
        self.min_revision = revision;
        self
    }

    /// Loads the policy (fails if that is not possible) and starts polling. `factory` makes the
    /// codec of the first policy; each later one is `Codec::with_policy` of the current codec
    /// (same KMS clients, caches and data keys). A codec that cannot be made for a policy (its
    /// profile is not in it, say) rejects that policy.
    pub fn build(self, factory: impl Fn(Policy) -> Result<Codec> + Send + Sync + 'static) -> Result<ReloadingCodec> {
        if self.interval.is_some_and(|i| i.is_zero()) {
            return Err(Error::config("the policy reload interval must be greater than zero"));
        }
        if let Verification::Required(verifier) = &self.verification {
            if verifier.is_empty() {
                return Err(Error::config("signed policies are required but no trusted signing key is configured"));
            }
        } else {
            audit::emit(AuditEvent::PolicyVerificationDisabled { source: self.source.describe() });
        }
        let source_name = self.source.describe();
        let shared = Shared {
            source: self.source,
            verification: self.verification,
            factory: Box::new(factory),
            expected_id: self.policy_id,
            min_revision: self.min_revision,
            source_name,
            current: RwLock::new(None),
            status: Mutex::new(Counters::default()),
            reloading: Mutex::new(()),
        };
        match shared.reload()? {
            Reload::Loaded { .. } => {}
            Reload::Unchanged => return Err(Error::policy("the policy source reported no policy on the first fetch")),
        }
        let shared = Arc::new(shared);
        let worker = match self.interval {
            Some(interval) => Some(Worker::start(shared.clone(), interval)?),
            None => None,
        };
        Ok(ReloadingCodec { shared, worker })
    }
}

/// A codec that follows its policy source. Encrypt and decrypt with [`ReloadingCodec::encrypt`]
/// and [`ReloadingCodec::decrypt`], or take the [`ReloadingCodec::current`] codec for a batch
/// (one policy for the whole batch). Share it with an `Arc`; dropping it stops the polling
/// thread (waiting for a fetch in progress, which the source's timeouts bound).
pub struct ReloadingCodec {
    shared: Arc<Shared>,
    worker: Option<Worker>,
}

impl fmt::Debug for ReloadingCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.status();
        f.debug_struct("ReloadingCodec")
            .field("source", &self.shared.source_name)
            .field("policy", &status.policy_id)
            .field("revision", &status.revision)
            .field("polling", &self.worker.is_some())
            .finish_non_exhaustive()
    }
}

/// What a [`ReloadingCodec::reload_now`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The source had nothing new (or the same policy text again).
    Unchanged,
    /// A new revision is in force.
    Loaded { policy_id: String, revision: u64 },
}

/// Counters and the policy in force, for health checks and metrics.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    pub policy_id: String,
    pub revision: u64,
    /// The trusted key whose signature verified the policy in force (`None` if unverified).
    pub signed_by: Option<String>,
    /// Where the policy is read from (`None` for a policy given once).
    pub source: Option<String>,
    /// Policies loaded, the first included.
    pub loads: u64,
    /// Documents refused (signature, parse, rollback, policy id, codec factory).
    pub rejections: u64,
    /// Fetches that failed (source unreachable, unreadable, timed out).
    pub fetch_errors: u64,
    /// The error of the last rejection or failed fetch, if any happened.
    pub last_error: Option<Error>,
}

impl ReloadStatus {
    /// As a JSON object, for bindings: `{"policy_id", "revision", "signed_by", "source", "loads",
    /// "rejections", "fetch_errors", "last_error": {"kind", "message"} | null}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "policy_id": self.policy_id,
            "revision": self.revision,
            "signed_by": self.signed_by,
            "source": self.source,
            "loads": self.loads,
            "rejections": self.rejections,
            "fetch_errors": self.fetch_errors,
            "last_error": self.last_error.as_ref().map(|e| serde_json::json!({
                "kind": e.kind().as_str(),
                "message": e.message(),
            })),
        })
    }
}

impl ReloadingCodec {
    /// Reads policies from `source`, checked as `verification` says (state it: there is no
    /// default).
    pub fn builder(source: impl PolicySource + 'static, verification: Verification) -> ReloadingCodecBuilder {
        ReloadingCodecBuilder {
            source: Box::new(source),
            verification,
            interval: Some(DEFAULT_RELOAD_INTERVAL),
            policy_id: None,
            min_revision: 0,
        }
    }

    /// The codec of the policy in force (a cheap clone).
    pub fn current(&self) -> Codec {
        self.shared.current().codec.clone()
    }

    /// [`Codec::encrypt`] with the policy in force.
    pub fn encrypt<H: HeaderView>(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[H],
    ) -> Result<Record> {
        self.current().encrypt(topic, key, value, headers)
    }

    /// [`Codec::decrypt`] with the policy in force (records of older revisions decrypt too:
    /// the header says which keys they need).
    pub fn decrypt<H: HeaderView>(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[H],
    ) -> Result<Record> {
        self.current().decrypt(topic, key, value, headers)
    }

    /// Fetches from the source now. A rejection or fetch error is returned (and recorded as
    /// by the background thread); the policy in force stays.
    pub fn reload_now(&self) -> Result<Reload> {
        self.shared.reload()
    }

    pub fn status(&self) -> ReloadStatus {
        let current = self.shared.current();
        let counters = self.shared.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
        ReloadStatus {
            policy_id: current.codec.policy().id().to_string(),
            revision: current.codec.policy().revision(),
            signed_by: current.signed_by.clone(),
            source: Some(self.shared.source_name.clone()),
            loads: counters.loads,
            rejections: counters.rejections,
            fetch_errors: counters.fetch_errors,
            last_error: counters.last_error,
        }
    }
}

impl Drop for ReloadingCodec {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.stop();
        }
    }
}

// ---- the shared state ----------------------------------------------------------------------------

struct Shared {
    source: Box<dyn PolicySource>,
    verification: Verification,
    factory: Box<CodecFactory>,
    expected_id: Option<String>,
    min_revision: u64,
    source_name: String,
    /// `None` only until the first load, which `build` requires.
    current: RwLock<Option<Arc<Current>>>,
    status: Mutex<Counters>,
    /// One reload at a time (background and `reload_now`), so checks and swap are atomic.
    reloading: Mutex<()>,
}

struct Current {
    codec: Codec,
    /// SHA-256 of the policy text.
    digest: [u8; 32],
    signed_by: Option<String>,
}

#[derive(Default, Clone)]
struct Counters {
    loads: u64,
    rejections: u64,
    fetch_errors: u64,
    last_error: Option<Error>,
}

impl Shared {
    fn current(&self) -> Arc<Current> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone().expect("loaded before the codec is handed out")
    }

    fn reload(&self) -> Result<Reload> {
        let _one = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let document = match self.source.fetch() {
            Ok(Fetched::New(document)) => document,
            Ok(Fetched::Unchanged) => return Ok(Reload::Unchanged),
            Err(e) => {
                tracing::warn!(target: "fieldcrypt::policy", source = %self.source_name, error = %e, "policy fetch failed");
                let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
                status.fetch_errors += 1;
                status.last_error = Some(e.clone());
                return Err(e);
            }
        };
        let current = self.current.read().unwrap_or_else(|e| e.into_inner()).clone();
        let verified = match self.verification.verify(&document).and_then(|v| self.admissible(v, current.as_deref())) {
            Ok(verified) => verified,
            Err(e) => return Err(self.rejected(e, current.as_deref(), None)),
        };
        let Some(verified) = verified else { return Ok(Reload::Unchanged) };
        let (id, revision) = (verified.policy().id().to_string(), verified.policy().revision());
        // The first policy goes through the application's factory; later ones keep that codec's
        // KMS clients, caches and data keys (`Codec::with_policy`), so a reload costs no KMS calls
        // for keys in use.
        let made = match current.as_deref() {
            None => (self.factory)(verified.policy().clone()),
            Some(c) => c.codec.with_policy(verified.policy().clone()),
        };
        let codec = match made {
            Ok(codec) => codec,
            Err(e) => return Err(self.rejected(e, current.as_deref(), Some(revision))),
        };
        audit::emit(AuditEvent::PolicyLoaded {
            policy_id: id.clone(),
            revision,
            previous_revision: current.as_ref().map(|c| c.codec.policy().revision()),
            signed_by: verified.signed_by().map(str::to_string),
            source: self.source_name.clone(),
        });
        let next = Current { codec, digest: verified.digest(), signed_by: verified.signed_by().map(str::to_string) };
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(next));
        self.status.lock().unwrap_or_else(|e| e.into_inner()).loads += 1;
        Ok(Reload::Loaded { policy_id: id, revision })
    }

    /// The verified policy if it may replace `current`; `None` if it is the same policy text.
    fn admissible(&self, verified: VerifiedPolicy, current: Option<&Current>) -> Result<Option<VerifiedPolicy>> {
        let (id, revision) = (verified.policy().id(), verified.policy().revision());
        let expected = current.map(|c| c.codec.policy().id()).or(self.expected_id.as_deref());
        if let Some(expected) = expected.filter(|e| *e != id) {
            return Err(Error::policy(format!(
                "the source delivered policy {id:?}, but this application runs policy {expected:?}"
            )));
        }
        if revision < self.min_revision {
            return Err(Error::policy(format!(
                "policy {id:?} revision {revision} is below the minimum revision {} (rollback refused)",
                self.min_revision
            )));
        }
        let Some(current) = current else { return Ok(Some(verified)) };
        let running = current.codec.policy().revision();
        if verified.digest() == current.digest {
            return Ok(None);
        }
        if revision < running {
            return Err(Error::policy(format!(
                "policy {id:?} revision {revision} is older than revision {running} in force (rollback refused)"
            )));
        }
        if revision == running {
            return Err(Error::policy(format!(
                "policy {id:?} revision {revision} differs from the policy in force with the same revision: \
                 a changed policy needs a higher revision"
            )));
        }
        Ok(Some(verified))
    }

    /// Records a rejection and returns its error.
    fn rejected(&self, error: Error, current: Option<&Current>, offered_revision: Option<u64>) -> Error {
        let policy = current.map(|c| c.codec.policy());
        audit::emit(AuditEvent::PolicyRejected {
            policy_id: policy.map(Policy::id).or(self.expected_id.as_deref()).map(str::to_string),
            revision: policy.map(Policy::revision),
            offered_revision,
            source: self.source_name.clone(),
            reason: error.to_string(),
        });
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.rejections += 1;
        status.last_error = Some(error.clone());
        error
    }
}

// ---- the polling thread --------------------------------------------------------------------------

struct Worker {
    /// Dropping it wakes and ends the thread.
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Worker {
    fn start(shared: Arc<Shared>, interval: Duration) -> Result<Worker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fieldcrypt-policy".into())
            .spawn(move || loop {
                let wait = interval.mul_f64(rand::rng().random_range(0.9..=1.1));
                match stopped.recv_timeout(wait) {
                    // Errors are recorded and logged by `reload`; the policy in force stays.
                    Err(RecvTimeoutError::Timeout) => {
                        let _ = shared.reload();
                    }
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            })
            .map_err(|e| Error::config(format!("cannot start the policy reload thread: {e}")))?;
        Ok(Worker { stop, thread })
    }

    fn stop(self) {
        drop(self.stop);
        // A panic in the thread has already been reported; nothing more to do with it here.
        let _ = self.thread.join();
    }
}
