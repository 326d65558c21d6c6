//! The codec: encrypts the fields a policy selects inside serialized records, and decrypts what
//! a consumer's profile and KMS access allow. It works on wire bytes, so teams keep their own
//! serializers and Kafka clients. A `Codec` is `Send + Sync` and cheap to clone (an `Arc`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use base64::Engine;
use serde_json::Value;

use crate::crypto::{ct_eq, hex, random_bytes, Algorithm, Dek, DekId, GCM_NONCE_LEN};
use crate::error::{Error, ErrorKind, Result};
use crate::header::{self, DekLocation, Envelope, KeyEntry, HEADER_NAME};
use crate::json;
use crate::keys::{ActiveDek, DekCache, DekSlot, KmsRegistry, Limits};
use crate::kms::{KekUri, Kms, WrapContext};
use crate::policy::{ConcretePath, Fallback, FieldPath, Part, Policy, Profile};
use crate::stats::{Counters, Stats};

/// Field ciphertext inside string values: standard Base64 with padding (RFC 4648 §4).
pub const TEXT_ENCODING: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Read access to a record header, so callers pass whatever header type their client has.
pub trait HeaderView {
    fn name(&self) -> &str;
    fn value(&self) -> Option<&[u8]>;
}

/// An owned record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedHeader {
    pub name: String,
    pub value: Option<Vec<u8>>,
}

impl OwnedHeader {
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> OwnedHeader {
        OwnedHeader { name: name.into(), value: Some(value.into()) }
    }
}

impl HeaderView for OwnedHeader {
    fn name(&self) -> &str {
        &self.name
    }
    fn value(&self) -> Option<&[u8]> {
        self.value.as_deref()
    }
}

impl HeaderView for (&str, &[u8]) {
    fn name(&self) -> &str {
        self.0
    }
    fn value(&self) -> Option<&[u8]> {
        Some(self.1)
    }
}

impl HeaderView for (&str, Option<&[u8]>) {
    fn name(&self) -> &str {
        self.0
    }
    fn value(&self) -> Option<&[u8]> {
        self.1
    }
}

/// A record after encryption or decryption: key and value bytes, and the full header list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<OwnedHeader>,
}

impl Record {
    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|h| h.name == name).and_then(|h| h.value.as_deref())
    }

    /// The fieldcrypt header, if the record carries one.
    pub fn fieldcrypt_header(&self) -> Option<&[u8]> {
        self.header(HEADER_NAME)
    }

    fn copy_of<H: HeaderView>(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[H]) -> Record {
        Record::rebuilt(key, None, value, None, headers, false)
    }

    /// The output record: each part re-serialized if it was parsed (and so maybe changed), else
    /// copied; headers copied, minus ours if `drop_ours`.
    fn rebuilt<H: HeaderView>(
        key: Option<&[u8]>,
        key_json: Option<&Value>,
        value: Option<&[u8]>,
        value_json: Option<&Value>,
        headers: &[H],
        drop_ours: bool,
    ) -> Record {
        let part = |bytes: Option<&[u8]>, doc: Option<&Value>| match doc {
            Some(doc) => Some(serde_json::to_vec(doc).expect("a Value always serializes")),
            None => bytes.map(<[u8]>::to_vec),
        };
        let mut out_headers = Vec::with_capacity(headers.len() + 1);
        out_headers.extend(
            headers
                .iter()
                .filter(|h| !(drop_ours && h.name() == HEADER_NAME))
                .map(|h| OwnedHeader { name: h.name().to_string(), value: h.value().map(<[u8]>::to_vec) }),
        );
        Record { key: part(key, key_json), value: part(value, value_json), headers: out_headers }
    }
}

/// Builds a [`Codec`].
pub struct CodecBuilder {
    policy: Policy,
    kms: KmsRegistry,
    profile: Option<String>,
    limits: Limits,
}

impl CodecBuilder {
    /// Adds a KMS client; it serves the key URIs of its scheme.
    pub fn kms(mut self, kms: impl Kms + 'static) -> Self {
        self.kms.add(Arc::new(kms));
        self
    }

    pub fn kms_shared(mut self, kms: Arc<dyn Kms>) -> Self {
        self.kms.add(kms);
        self
    }

    /// Decrypt as the named profile of the policy. Without one, a codec decrypts every field
    /// its KMS credentials can unwrap.
    pub fn profile(mut self, name: impl Into<String>) -> Self {
        self.profile = Some(name.into());
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn build(self) -> Result<Codec> {
        self.limits.validate()?;
        let profile = match &self.profile {
            Some(name) => Some(self.policy.profile(name).cloned().ok_or_else(|| {
                let known: Vec<&str> = self.policy.profile_names().collect();
                Error::config(format!(
                    "profile {name:?} is not defined in policy {:?} (defined: {known:?})",
                    self.policy.id()
                ))
            })?),
            None => None,
        };
        let mut slots: HashMap<(KekUri, Algorithm), Arc<DekSlot>> = HashMap::new();
        for rule in self.policy.rules() {
            slots
                .entry((rule.key.clone(), rule.algorithm))
                .or_insert_with(|| Arc::new(DekSlot::new(rule.key.clone(), rule.algorithm)));
        }
        Ok(Codec(Arc::new(Inner {
            cache: DekCache::new(&self.limits),
            policy: self.policy,
            kms: self.kms,
            profile,
            limits: self.limits,
            slots,
            plans: RwLock::new(HashMap::new()),
            counters: Counters::default(),
        })))
    }
}

/// Encrypts and decrypts the fields of Kafka records as a policy says.
#[derive(Clone)]
pub struct Codec(Arc<Inner>);

struct Inner {
    policy: Policy,
    kms: KmsRegistry,
    profile: Option<Profile>,
    limits: Limits,
    slots: HashMap<(KekUri, Algorithm), Arc<DekSlot>>,
    plans: RwLock<HashMap<String, Arc<TopicPlan>>>,
    cache: DekCache,
    counters: Counters,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("policy", &self.0.policy.id())
            .field("revision", &self.0.policy.revision())
            .field("profile", &self.0.profile.as_ref().map(|p| &p.name))
            .finish_non_exhaustive()
    }
}

/// What to encrypt on one topic: the fields of each (KEK, algorithm) pair.
struct TopicPlan {
    keys: Vec<PlannedKey>,
}

struct PlannedKey {
    slot: Arc<DekSlot>,
    fields: Vec<(Part, FieldPath)>,
}

/// A planned key that selected fields in the record being encrypted, with its leased DEK.
struct UsedKey<'p> {
    planned: &'p PlannedKey,
    dek: Arc<ActiveDek>,
    matched: Vec<&'p (Part, FieldPath)>,
}

const MAX_CACHED_PLANS: usize = 10_000;

impl Codec {
    pub fn builder(policy: Policy) -> CodecBuilder {
        CodecBuilder { policy, kms: KmsRegistry::default(), profile: None, limits: Limits::default() }
    }

    pub fn policy(&self) -> &Policy {
        &self.0.policy
    }

    pub fn stats(&self) -> Stats {
        self.0.counters.snapshot()
    }

    /// Drops every cached unwrapped data key; the next records ask the KMS again.
    pub fn clear_key_cache(&self) {
        self.0.cache.clear();
    }

    fn plan(&self, topic: &str) -> Result<Arc<TopicPlan>> {
        if let Some(p) = self.0.plans.read().unwrap_or_else(|e| e.into_inner()).get(topic) {
            return Ok(p.clone());
        }
        let mut keys: Vec<PlannedKey> = Vec::new();
        for rule in self.0.policy.rules_for(topic)? {
            let slot = &self.0.slots[&(rule.key.clone(), rule.algorithm)];
            let fields = rule.fields.iter().map(|p| (rule.part, p.clone()));
            match keys.iter_mut().find(|k| Arc::ptr_eq(&k.slot, slot)) {
                Some(k) => k.fields.extend(fields),
                None => keys.push(PlannedKey { slot: slot.clone(), fields: fields.collect() }),
            }
        }
        let plan = Arc::new(TopicPlan { keys });
        let mut plans = self.0.plans.write().unwrap_or_else(|e| e.into_inner());
        if plans.len() >= MAX_CACHED_PLANS {
            plans.clear();
        }
        plans.insert(topic.to_string(), plan.clone());
        Ok(plan)
    }

    /// Encrypts the fields the policy selects for `topic`. Returns the new key, value and
    /// headers (the input headers plus the fieldcrypt header). Fails closed: on any error no
    /// record is returned. A record the policy selects nothing in is returned unchanged.
    pub fn encrypt<H: HeaderView>(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[H],
    ) -> Result<Record> {
        let inner = &*self.0;
        let plan = self.plan(topic)?;
        if headers.iter().any(|h| h.name() == HEADER_NAME) {
            return Err(Error::record(format!(
                "record for topic {topic:?} already carries a {HEADER_NAME:?} header; refusing to encrypt it twice"
            )));
        }
        if plan.keys.is_empty() {
            return Ok(Record::copy_of(key, value, headers));
        }
        let uses = |part: Part| plan.keys.iter().flat_map(|k| &k.fields).any(|(p, _)| *p == part);
        let mut key_json = match (uses(Part::Key), key) {
            (true, Some(bytes)) => Some(json::parse(bytes, "record key")?),
            (true, None) => {
                return Err(Error::record(format!(
                    "policy encrypts key fields of topic {topic:?}, but the record has no key"
                )))
            }
            (false, _) => None,
        };
        // A tombstone (no value) has no fields to protect.
        let mut value_json = match (uses(Part::Value), value) {
            (true, Some(bytes)) => Some(json::parse(bytes, "record value")?),
            _ => None,
        };

        // Which planned fields this record has, and the DEK for each key that has any.
        let mut used: Vec<UsedKey<'_>> = Vec::new();
        for pk in &plan.keys {
            let matched: Vec<&(Part, FieldPath)> = pk
                .fields
                .iter()
                .filter(|(part, path)| {
                    let doc = if *part == Part::Key { &key_json } else { &value_json };
                    doc.as_ref().is_some_and(|d| json::has_match(d, path.segments()))
                })
                .collect();
            if matched.is_empty() {
                continue;
            }
            let kms = inner.kms.for_scheme(pk.slot.kek.scheme())?;
            let dek = pk.slot.lease(kms, &inner.limits, &inner.counters)?;
            dek.use_n(1)?; // the header authenticator
            used.push(UsedKey { planned: pk, dek, matched });
        }
        if used.is_empty() {
            return Ok(Record::copy_of(key, value, headers));
        }
        // A part with nothing selected keeps its original bytes.
        let selects = |part: Part| used.iter().flat_map(|u| &u.matched).any(|(p, _)| *p == part);
        if !selects(Part::Key) {
            key_json = None;
        }
        if !selects(Part::Value) {
            value_json = None;
        }

        // The header: body, then one authenticator per key.
        let record_nonce: [u8; GCM_NONCE_LEN] = random_bytes();
        let entries: Vec<KeyEntry<'_>> = used
            .iter()
            .map(|UsedKey { planned: pk, dek, matched }| KeyEntry {
                algorithm: pk.slot.algorithm,
                dek_id: *dek.dek.id(),
                kek: pk.slot.kek.as_str(),
                kek_version: &dek.kek_version,
                dek: DekLocation::Inline(&dek.wrapped),
                fields: matched.iter().map(|(part, path)| (*part, path.as_str())).collect(),
            })
            .collect();
        let mut header_bytes = Vec::with_capacity(256);
        header::write_body(&mut header_bytes, &record_nonce, inner.policy.id(), inner.policy.revision(), &entries);
        let mut tags = Vec::with_capacity(used.len());
        for UsedKey { dek, .. } in &used {
            tags.push(dek.dek.header_tag(&record_nonce, &header_bytes)?);
        }
        for tag in &tags {
            header_bytes.extend_from_slice(tag);
        }

        // The fields.
        let mut aad = Vec::with_capacity(128);
        let mut sealed = Vec::with_capacity(128);
        let mut fields = 0u64;
        for (UsedKey { dek, matched, .. }, tag) in used.iter().zip(&tags) {
            for (part, path) in matched {
                let doc = if *part == Part::Key { key_json.as_mut() } else { value_json.as_mut() };
                let doc = doc.expect("matched paths have a document");
                json::visit_mut(doc, path.segments(), &mut ConcretePath::default(), &mut |v, at| {
                    dek.use_n(1)?;
                    field_aad(&mut aad, &dek.dek, tag, *part, path.as_str(), at);
                    let (type_byte, plain) = json::plaintext(v);
                    sealed.clear();
                    dek.dek.seal(&aad, type_byte, &plain, &mut sealed)?;
                    *v = Value::String(TEXT_ENCODING.encode(&sealed));
                    fields += 1;
                    Ok(())
                })?;
            }
        }

        let mut out = Record::rebuilt(key, key_json.as_ref(), value, value_json.as_ref(), headers, false);
        out.headers.push(OwnedHeader { name: HEADER_NAME.to_string(), value: Some(header_bytes) });
        inner.counters.records_encrypted.fetch_add(1, Ordering::Relaxed);
        inner.counters.fields_encrypted.fetch_add(fields, Ordering::Relaxed);
        Ok(out)
    }

    /// Decrypts the fields this codec's profile may see and its KMS access can unwrap. Fields it
    /// may not or cannot decrypt get the profile's fallback (ciphertext by default). The
    /// fieldcrypt header is removed once no ciphertext is left. A record without the header is
    /// returned unchanged.
    pub fn decrypt<H: HeaderView>(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[H],
    ) -> Result<Record> {
        let inner = &*self.0;
        let mut ours = headers.iter().filter(|h| h.name() == HEADER_NAME);
        let Some(found) = ours.next() else {
            return Ok(Record::copy_of(key, value, headers));
        };
        if ours.next().is_some() {
            return Err(Error::format(format!("record carries more than one {HEADER_NAME:?} header")));
        }
        let header_bytes =
            found.value().ok_or_else(|| Error::format(format!("the {HEADER_NAME:?} header is empty")))?;
        let env = header::parse(header_bytes)?;

        let mut docs = Docs { key, value, key_json: None, value_json: None };
        let mut ciphertext_left = false;
        let (mut decrypted, mut withheld) = (0u64, 0u64);
        let mut aad = Vec::with_capacity(128);
        for (entry, tag) in env.keys.iter().zip(&env.tags) {
            let allowed: Vec<bool> = entry
                .fields
                .iter()
                .map(|(part, path)| inner.profile.as_ref().is_none_or(|p| p.allows(topic, *part, path)))
                .collect();
            let dek = if allowed.contains(&true) { self.dek_for(&env, entry, tag)? } else { None };
            for ((part, path_text), allowed) in entry.fields.iter().zip(allowed) {
                let path = FieldPath::parse(path_text)
                    .map_err(|e| Error::format(format!("header field path {path_text:?} is invalid: {e}")))?;
                match (&dek, allowed) {
                    (Some(dek), true) => {
                        let doc = docs.get(*part)?;
                        json::visit_mut(doc, path.segments(), &mut ConcretePath::default(), &mut |v, at| {
                            let Value::String(text) = v else {
                                return Err(Error::crypto(format!("field {at} does not hold fieldcrypt ciphertext")));
                            };
                            let sealed = TEXT_ENCODING
                                .decode(text.as_bytes())
                                .map_err(|_| Error::crypto(format!("field {at} does not hold Base64 ciphertext")))?;
                            field_aad(&mut aad, dek, tag, *part, path_text, at);
                            let (type_byte, plain) = dek.open(&aad, &sealed)?;
                            *v = json::from_plaintext(type_byte, plain, at)?;
                            decrypted += 1;
                            Ok(())
                        })?;
                    }
                    _ => {
                        let fallback = inner.profile.as_ref().map_or(&Fallback::Ciphertext, |p| &p.otherwise);
                        let replacement = match fallback {
                            Fallback::Ciphertext => {
                                ciphertext_left = true;
                                withheld += 1;
                                continue;
                            }
                            Fallback::Null => Value::Null,
                            Fallback::Mask(mask) => Value::String(mask.clone()),
                        };
                        let doc = docs.get(*part)?;
                        json::visit_mut(doc, path.segments(), &mut ConcretePath::default(), &mut |v, _| {
                            *v = replacement.clone();
                            withheld += 1;
                            Ok(())
                        })?;
                    }
                }
            }
        }

        let out =
            Record::rebuilt(key, docs.key_json.as_ref(), value, docs.value_json.as_ref(), headers, !ciphertext_left);
        inner.counters.records_decrypted.fetch_add(1, Ordering::Relaxed);
        inner.counters.fields_decrypted.fetch_add(decrypted, Ordering::Relaxed);
        inner.counters.fields_withheld.fetch_add(withheld, Ordering::Relaxed);
        Ok(out)
    }

    /// The DEK of a header key entry, checked against the header authenticator. `None` when this
    /// consumer has no access to the KEK (unknown key, or no KMS client for its scheme).
    fn dek_for(&self, env: &Envelope<'_>, entry: &KeyEntry<'_>, tag: &[u8; 16]) -> Result<Option<Arc<Dek>>> {
        let inner = &*self.0;
        let dek = match inner.cache.get(&entry.dek_id, entry.kek, entry.kek_version) {
            Some(dek) => {
                inner.counters.dek_cache_hits.fetch_add(1, Ordering::Relaxed);
                dek
            }
            None => {
                inner.counters.dek_cache_misses.fetch_add(1, Ordering::Relaxed);
                match self.unwrap_dek(entry) {
                    Ok(dek) => dek,
                    Err(e) if matches!(e.kind(), ErrorKind::KeyNotFound | ErrorKind::Config) => {
                        tracing::info!(
                            target: "fieldcrypt::audit",
                            event = "decryption_denied",
                            kek = entry.kek,
                            dek_id = %hex(&entry.dek_id),
                            reason = %e,
                        );
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        if !ct_eq(&dek.header_tag(&env.record_nonce, env.body)?, tag) {
            return Err(Error::crypto(format!(
                "fieldcrypt header does not authenticate under data key {}",
                hex(&entry.dek_id)
            )));
        }
        Ok(Some(dek))
    }

    fn unwrap_dek(&self, entry: &KeyEntry<'_>) -> Result<Arc<Dek>> {
        let inner = &*self.0;
        let DekLocation::Inline(wrapped) = entry.dek else {
            return Err(Error::new(
                ErrorKind::KeyNotFound,
                format!("data key {} is held in a key store, and none is configured", hex(&entry.dek_id)),
            ));
        };
        let kek = KekUri::parse(entry.kek).map_err(|e| Error::format(format!("header KEK: {e}")))?;
        let kms = inner.kms.for_scheme(kek.scheme())?;
        inner.counters.kms_unwrap_calls.fetch_add(1, Ordering::Relaxed);
        let ctx = WrapContext { dek_id: &entry.dek_id, algorithm: entry.algorithm };
        let key = kms.unwrap(&kek, entry.kek_version, wrapped, &ctx)?;
        let dek = Arc::new(Dek::new(entry.dek_id, entry.algorithm, &key)?);
        inner.cache.insert(entry.kek, entry.kek_version, dek.clone());
        Ok(dek)
    }
}

/// The key and value of a record being decrypted, parsed only when a field in them changes.
struct Docs<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    key_json: Option<Value>,
    value_json: Option<Value>,
}

impl Docs<'_> {
    fn get(&mut self, part: Part) -> Result<&mut Value> {
        let (bytes, doc, what) = match part {
            Part::Key => (self.key, &mut self.key_json, "record key"),
            Part::Value => (self.value, &mut self.value_json, "record value"),
        };
        if doc.is_none() {
            let bytes = bytes
                .ok_or_else(|| Error::record(format!("header lists fields of the {what}, but the record has none")))?;
            *doc = Some(json::parse(bytes, what)?);
        }
        Ok(doc.as_mut().expect("parsed above"))
    }
}

/// Associated data of one field ciphertext (see docs/FORMAT.md §4). Randomized fields bind to
/// this record's header authenticator and their concrete location; deterministic fields to the
/// DEK and the policy path, so that equal values agree across records.
fn field_aad(aad: &mut Vec<u8>, dek: &Dek, header_tag: &[u8; 16], part: Part, policy_path: &str, at: &str) {
    aad.clear();
    aad.push(header::FORMAT_VERSION);
    if dek.algorithm().is_deterministic() {
        aad.extend_from_slice(dek.id());
        aad.push(part.code());
        aad.extend_from_slice(policy_path.as_bytes());
    } else {
        aad.extend_from_slice(header_tag);
        aad.push(part.code());
        aad.extend_from_slice(at.as_bytes());
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync + Clone>() {}
    is::<Codec>();
    let _: Option<DekId> = None;
}
