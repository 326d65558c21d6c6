//! Data-key lifecycle. Producers lease the active DEK of a (KEK, algorithm) pair, which rotates
//! after a number of uses or an age; consumers keep unwrapped DEKs in a bounded LRU with a TTL.
//! Either way the KMS is called once per DEK, never per record.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use lru::LruCache;
use sha2::Digest;

use crate::audit::{self, AuditEvent};
use crate::crypto::{hex, random_bytes, Algorithm, Dek, DekId, DEK_ID_LEN};
use crate::error::{Error, ErrorKind, Result};
use crate::keystore::{now_ms, KeyLookup, KeyStore, StoredDek, SubjectId};
use crate::kms::{KekUri, Kms, WrapContext};
use crate::stats::Counters;

/// No AES-GCM data key is ever used more than this many times (random 96-bit nonces: the
/// chance of a repeat stays below 2^-40, far inside NIST SP 800-38D's 2^-32 bound).
pub const DEK_HARD_USE_LIMIT: u64 = 1 << 28;

/// Data-key limits and cache sizes.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Rotate an AES-GCM DEK after this many encryptions (each field and each header tag counts).
    pub dek_max_uses: u64,
    /// Rotate any DEK after this age.
    pub dek_max_age: Duration,
    /// How many unwrapped DEKs a consumer keeps.
    pub dek_cache_capacity: usize,
    /// How long a consumer keeps an unwrapped DEK before asking the KMS again: the longest a
    /// consumer whose access to a KEK was revoked can go on decrypting.
    pub dek_cache_ttl: Duration,
    /// How long a consumer remembers that it may not unwrap a DEK (access denied, unknown key),
    /// so records under that DEK get the profile's fallback without a KMS call each.
    pub dek_denied_ttl: Duration,
    /// KMS outage on the producer side: when a DEK is due for rotation and the KMS cannot wrap a
    /// new one (unreachable, 5xx, throttled), the current DEK serves up to this many more uses
    /// (never past [`DEK_HARD_USE_LIMIT`]); after that, encryption fails closed with a retryable
    /// error. Zero fails at once.
    pub dek_outage_extra_uses: u64,
    /// While the KMS is failing, ask it again at most this often; records in between use the
    /// current DEK (within [`Limits::dek_outage_extra_uses`]) or fail at once, never wait.
    pub kms_retry_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            dek_max_uses: 4_000_000,
            dek_max_age: Duration::from_secs(3600),
            dek_cache_capacity: 1024,
            dek_cache_ttl: Duration::from_secs(3600),
            dek_denied_ttl: Duration::from_secs(60),
            dek_outage_extra_uses: 4_000_000,
            kms_retry_interval: Duration::from_secs(1),
        }
    }
}

impl Limits {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.dek_max_uses == 0 || self.dek_max_uses > DEK_HARD_USE_LIMIT / 2 {
            return Err(Error::config(format!(
                "dek_max_uses must be between 1 and {} (half the hard limit {DEK_HARD_USE_LIMIT})",
                DEK_HARD_USE_LIMIT / 2
            )));
        }
        if self.dek_outage_extra_uses > DEK_HARD_USE_LIMIT / 2 {
            return Err(Error::config(format!(
                "dek_outage_extra_uses must be at most {} (half the hard limit {DEK_HARD_USE_LIMIT})",
                DEK_HARD_USE_LIMIT / 2
            )));
        }
        if self.dek_cache_capacity == 0 {
            return Err(Error::config("dek_cache_capacity must be at least 1"));
        }
        Ok(())
    }
}

/// A DEK as a producer holds it: the cipher plus what the header needs to describe it.
#[derive(Debug)]
pub(crate) struct ActiveDek {
    pub dek: Arc<Dek>,
    pub kek_version: String,
    pub wrapped: Vec<u8>,
    /// Held in the key store (a per-subject key): headers name it by id only.
    pub in_store: bool,
    uses: AtomicU64,
    created: Instant,
    max_uses: u64,
    max_age: Duration,
}

impl ActiveDek {
    fn fresh(&self) -> bool {
        self.uses.load(Ordering::Relaxed) < self.max_uses && self.created.elapsed() < self.max_age
    }

    /// Whether it may still serve while the KMS cannot wrap its successor.
    fn usable_in_outage(&self, limits: &Limits) -> bool {
        self.uses.load(Ordering::Relaxed) < self.max_uses.saturating_add(limits.dek_outage_extra_uses)
    }

    /// Counts `n` uses; fails closed past the hard limit.
    pub fn use_n(&self, n: u64) -> Result<()> {
        if self.dek.algorithm().is_deterministic() {
            return Ok(()); // no nonce, no wear-out
        }
        let before = self.uses.fetch_add(n, Ordering::Relaxed);
        if before + n > DEK_HARD_USE_LIMIT {
            return Err(Error::new(
                ErrorKind::LimitExceeded,
                format!("data key {} reached its hard usage limit", hex(self.dek.id())),
            ));
        }
        Ok(())
    }
}

/// The active DEK of one (KEK, algorithm) pair.
#[derive(Debug)]
pub(crate) struct DekSlot {
    pub kek: KekUri,
    pub algorithm: Algorithm,
    current: RwLock<Option<Arc<ActiveDek>>>,
    /// Set while the KMS is failing: when to ask it again, and its last (retryable) error.
    kms_failing: Mutex<Option<(Instant, Error)>>,
}

impl DekSlot {
    pub fn new(kek: KekUri, algorithm: Algorithm) -> DekSlot {
        DekSlot { kek, algorithm, current: RwLock::new(None), kms_failing: Mutex::new(None) }
    }

    /// The DEK to use now, creating (and wrapping) a new one when the current one is worn out.
    /// If the KMS cannot wrap a new one for a passing reason, the current DEK serves on within
    /// [`Limits::dek_outage_extra_uses`], and the KMS is asked again after
    /// [`Limits::kms_retry_interval`]; otherwise the error is returned (fail closed).
    pub fn lease(&self, kms: &dyn Kms, limits: &Limits, counters: &Counters) -> Result<Arc<ActiveDek>> {
        if let Some(d) = self.current.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if d.fresh() {
                return Ok(d.clone());
            }
        }
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = current.as_ref() {
            if d.fresh() {
                return Ok(d.clone()); // another thread rotated first
            }
        }
        let stand_in = current.as_ref().filter(|d| d.usable_in_outage(limits)).cloned();
        let mut failing = self.kms_failing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((retry_at, error)) = failing.as_ref() {
            if Instant::now() < *retry_at {
                return stand_in.ok_or_else(|| self.outage_error(error));
            }
        }
        let next = match self.create(kms, limits, counters) {
            Ok(next) => Arc::new(next),
            Err(error) if error.is_retryable() => {
                counters.kms_errors.fetch_add(1, Ordering::Relaxed);
                audit::emit(AuditEvent::DekRotationDeferred {
                    kek: self.kek.to_string(),
                    serving_current: stand_in.is_some(),
                    reason: error.to_string(),
                });
                let result = stand_in.ok_or_else(|| self.outage_error(&error));
                *failing = Some((Instant::now() + limits.kms_retry_interval, error));
                return result;
            }
            Err(error) => {
                counters.kms_errors.fetch_add(1, Ordering::Relaxed);
                return Err(error);
            }
        };
        *failing = None;
        audit::emit(AuditEvent::DekCreated {
            kek: self.kek.to_string(),
            kek_version: next.kek_version.clone(),
            dek_id: hex(next.dek.id()),
            algorithm: self.algorithm.name().to_string(),
        });
        *current = Some(next.clone());
        Ok(next)
    }

    fn outage_error(&self, cause: &Error) -> Error {
        Error::retryable(
            ErrorKind::Kms,
            format!("no usable data key for {}: the KMS cannot make one ({})", self.kek, cause.message()),
        )
    }

    pub(crate) fn create(&self, kms: &dyn Kms, limits: &Limits, counters: &Counters) -> Result<ActiveDek> {
        let alg = self.algorithm;
        let (key, id, max_uses) = if alg.is_deterministic() {
            // Every producer must derive the same key, or equal plaintexts would not give equal
            // ciphertexts across processes; the id is a hash of the key so it agrees too.
            counters.kms_derive_calls.fetch_add(1, Ordering::Relaxed);
            let (_, key) = kms.derive_deterministic_key(&self.kek, alg.key_len())?;
            let digest =
                sha2::Sha256::new().chain_update(b"fieldcrypt dek id v1").chain_update(key.as_slice()).finalize();
            let id: DekId = digest[..DEK_ID_LEN].try_into().expect("digest is long enough");
            (key, id, u64::MAX)
        } else {
            let mut key = zeroize::Zeroizing::new(vec![0u8; alg.key_len()]);
            rand::RngCore::fill_bytes(&mut rand::rng(), key.as_mut_slice());
            (key, random_bytes::<DEK_ID_LEN>(), limits.dek_max_uses)
        };
        counters.kms_wrap_calls.fetch_add(1, Ordering::Relaxed);
        let wrapped = kms.wrap(&self.kek, &key, &WrapContext { dek_id: &id, algorithm: alg })?;
        counters.deks_created.fetch_add(1, Ordering::Relaxed);
        Ok(ActiveDek {
            dek: Arc::new(Dek::new(id, alg, &key)?),
            kek_version: wrapped.kek_version,
            wrapped: wrapped.ciphertext,
            in_store: false,
            uses: AtomicU64::new(0),
            created: Instant::now(),
            max_uses,
            max_age: limits.dek_max_age,
        })
    }
}

/// Per-subject DEKs on the producer side (policy rules with a `subject`): one per (KEK,
/// subject), kept in the key store so that shredding the subject deletes it. Bounded: a subject
/// not seen for a while is looked up in the store again.
pub(crate) struct SubjectDeks {
    active: Mutex<LruCache<(String, SubjectId), Arc<ActiveDek>>>,
    /// Serializes making a subject's key (KMS and key store round trips) per stripe of
    /// subjects, so records of one new subject share one key while other subjects proceed.
    making: [Mutex<()>; MAKING_STRIPES],
}

const MAKING_STRIPES: usize = 64;

impl SubjectDeks {
    pub fn new(limits: &Limits) -> SubjectDeks {
        let cap = NonZeroUsize::new(limits.dek_cache_capacity).unwrap_or(NonZeroUsize::MIN);
        SubjectDeks { active: Mutex::new(LruCache::new(cap)), making: std::array::from_fn(|_| Mutex::new(())) }
    }

    /// The DEK in use for `key` if it is fresh and its subject not shredded.
    fn in_use(&self, key: &(String, SubjectId), store: &dyn KeyStore) -> Result<Option<Arc<ActiveDek>>> {
        let found = self.active.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned();
        match found {
            Some(d) if d.fresh() && matches!(store.lookup(d.dek.id())?, KeyLookup::Found(_)) => Ok(Some(d)),
            _ => Ok(None),
        }
    }

    /// The DEK for `subject` under `slot`'s KEK: the one in use while fresh and not shredded,
    /// else the newest the store holds (unwrapped), else a new one, stored before it is used.
    /// Concurrent records of a new subject share one new key.
    pub fn lease(
        &self,
        slot: &DekSlot,
        subject: &SubjectId,
        kms: &dyn Kms,
        store: &dyn KeyStore,
        limits: &Limits,
        counters: &Counters,
    ) -> Result<Arc<ActiveDek>> {
        let key = (slot.kek.as_str().to_string(), subject.clone());
        if let Some(d) = self.in_use(&key, store)? {
            return Ok(d);
        }
        let stripe = {
            use std::hash::{BuildHasher, BuildHasherDefault};
            let hasher = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
            (hasher.hash_one(&key) as usize) % MAKING_STRIPES
        };
        let _making = self.making[stripe].lock().unwrap_or_else(|e| e.into_inner());
        // Another thread may have made it while this one waited.
        if let Some(d) = self.in_use(&key, store)? {
            return Ok(d);
        }
        let reuse = store
            .current(subject, slot.kek.as_str(), slot.algorithm)?
            .filter(|d| now_ms().saturating_sub(d.created_ms) < limits.dek_max_age.as_millis() as u64);
        let dek = match reuse {
            Some(stored) => Self::unwrapped(slot, stored, kms, limits, counters)?,
            None => Self::stored_new(slot, subject, kms, store, limits, counters)?,
        };
        let dek = Arc::new(dek);
        self.active.lock().unwrap_or_else(|e| e.into_inner()).put(key, dek.clone());
        Ok(dek)
    }

    /// Stores a new DEK for `subject` under `slot`'s KEK and makes it this producer's current
    /// one; other producers pick it up when theirs is due for renewal. Older DEKs still decrypt.
    pub fn rotate(
        &self,
        slot: &DekSlot,
        subject: &SubjectId,
        kms: &dyn Kms,
        store: &dyn KeyStore,
        limits: &Limits,
        counters: &Counters,
    ) -> Result<DekId> {
        let dek = Self::stored_new(slot, subject, kms, store, limits, counters)?;
        let id = *dek.dek.id();
        let key = (slot.kek.as_str().to_string(), subject.clone());
        self.active.lock().unwrap_or_else(|e| e.into_inner()).put(key, Arc::new(dek));
        audit::emit(AuditEvent::KeyRotated {
            kek: slot.kek.to_string(),
            dek_id: hex(&id),
            subject: subject.to_string(),
        });
        Ok(id)
    }

    fn unwrapped(
        slot: &DekSlot,
        stored: StoredDek,
        kms: &dyn Kms,
        limits: &Limits,
        counters: &Counters,
    ) -> Result<ActiveDek> {
        counters.kms_unwrap_calls.fetch_add(1, Ordering::Relaxed);
        let ctx = WrapContext { dek_id: &stored.dek_id, algorithm: stored.algorithm };
        let raw = kms.unwrap(&slot.kek, &stored.kek_version, &stored.wrapped, &ctx)?;
        Ok(ActiveDek {
            dek: Arc::new(Dek::new(stored.dek_id, stored.algorithm, &raw)?),
            kek_version: stored.kek_version,
            wrapped: stored.wrapped,
            in_store: true,
            uses: AtomicU64::new(0),
            created: Instant::now(),
            max_uses: limits.dek_max_uses,
            max_age: limits.dek_max_age,
        })
    }

    fn stored_new(
        slot: &DekSlot,
        subject: &SubjectId,
        kms: &dyn Kms,
        store: &dyn KeyStore,
        limits: &Limits,
        counters: &Counters,
    ) -> Result<ActiveDek> {
        let mut fresh = slot.create(kms, limits, counters)?;
        store.put(&StoredDek {
            dek_id: *fresh.dek.id(),
            subject: subject.clone(),
            kek: slot.kek.as_str().to_string(),
            kek_version: fresh.kek_version.clone(),
            algorithm: slot.algorithm,
            wrapped: fresh.wrapped.clone(),
            created_ms: now_ms(),
        })?;
        audit::emit(AuditEvent::KeyCreated {
            kek: slot.kek.to_string(),
            dek_id: hex(fresh.dek.id()),
            subject: subject.to_string(),
        });
        fresh.in_store = true;
        Ok(fresh)
    }
}

struct CachedDek {
    kek: String,
    kek_version: String,
    dek: Arc<Dek>,
    inserted: Instant,
}

/// A DEK this consumer was refused: the KEK (and version) it was presented with, when, and why.
struct DeniedDek {
    kek: String,
    kek_version: String,
    denied: Instant,
    reason: Error,
}

/// Unwrapped DEKs on the consumer side: bounded, with a TTL so revoked keys age out; and the
/// DEKs it was refused, remembered for a while so a denied consumer does not hammer the KMS.
pub(crate) struct DekCache {
    entries: Mutex<LruCache<DekId, CachedDek>>,
    ttl: Duration,
    denied: Mutex<LruCache<DekId, DeniedDek>>,
    denied_ttl: Duration,
}

impl DekCache {
    pub fn new(limits: &Limits) -> DekCache {
        let cap = NonZeroUsize::new(limits.dek_cache_capacity).unwrap_or(NonZeroUsize::MIN);
        DekCache {
            entries: Mutex::new(LruCache::new(cap)),
            ttl: limits.dek_cache_ttl,
            denied: Mutex::new(LruCache::new(cap)),
            denied_ttl: limits.dek_denied_ttl,
        }
    }

    /// Why unwrapping this DEK under this KEK was refused, if it was less than the denial TTL ago.
    pub fn denied(&self, id: &DekId, kek: &str, kek_version: &str) -> Option<Error> {
        let mut denied = self.denied.lock().unwrap_or_else(|e| e.into_inner());
        match denied.get(id) {
            Some(d) if d.denied.elapsed() >= self.denied_ttl => {
                denied.pop(id);
                None
            }
            Some(d) if d.kek == kek && d.kek_version == kek_version => Some(d.reason.clone()),
            _ => None,
        }
    }

    pub fn deny(&self, id: &DekId, kek: &str, kek_version: &str, reason: &Error) {
        if self.denied_ttl.is_zero() {
            return;
        }
        let entry = DeniedDek {
            kek: kek.to_string(),
            kek_version: kek_version.to_string(),
            denied: Instant::now(),
            reason: reason.clone(),
        };
        self.denied.lock().unwrap_or_else(|e| e.into_inner()).put(*id, entry);
    }

    pub fn get(&self, id: &DekId, kek: &str, kek_version: &str) -> Option<Arc<Dek>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let hit = entries.get(id)?;
        if hit.inserted.elapsed() >= self.ttl {
            entries.pop(id);
            return None;
        }
        // An id presented with another KEK is not the key we cached: unwrap it afresh.
        (hit.kek == kek && hit.kek_version == kek_version).then(|| hit.dek.clone())
    }

    pub fn insert(&self, kek: &str, kek_version: &str, dek: Arc<Dek>) {
        let entry = CachedDek {
            kek: kek.to_string(),
            kek_version: kek_version.to_string(),
            dek: dek.clone(),
            inserted: Instant::now(),
        };
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).put(*dek.id(), entry);
    }

    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.denied.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The KMS clients of a codec, by URI scheme.
#[derive(Debug, Default, Clone)]
pub(crate) struct KmsRegistry {
    clients: HashMap<String, Arc<dyn Kms>>,
}

impl KmsRegistry {
    pub fn add(&mut self, kms: Arc<dyn Kms>) {
        self.clients.insert(kms.scheme().to_string(), kms);
    }

    pub fn for_scheme(&self, scheme: &str) -> Result<&dyn Kms> {
        self.clients
            .get(scheme)
            .map(|k| k.as_ref())
            .ok_or_else(|| Error::config(format!("no KMS client is configured for key scheme {scheme:?}")))
    }
}
