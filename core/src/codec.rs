//! The codec: encrypts the fields a policy selects inside serialized records, and decrypts what
//! a consumer's profile and KMS access allow. It works on wire bytes, so teams keep their own
//! serializers and Kafka clients. A `Codec` is `Send + Sync` and cheap to clone (an `Arc`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use base64::Engine;

use crate::crypto::{ct_eq, hex, random_bytes, Algorithm, Dek, DekId, GCM_NONCE_LEN};
use crate::error::{Error, ErrorKind, Result};
use crate::formats::json::{self, JsonScanner};
use crate::formats::{Emit, Leaf, Scan, Scanner, ValueKind, PLAIN_BYTES, PLAIN_JSON, PLAIN_STRING};
use crate::header::{self, DekLocation, Envelope, KeyEntry, HEADER_NAME};
use crate::keys::{ActiveDek, DekCache, DekSlot, KmsRegistry, Limits};
use crate::kms::{KekUri, Kms, WrapContext};
use crate::policy::{Fallback, FieldPath, Part, Policy, Profile};
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
        Record::with_parts(None, key, None, value, headers, false)
    }

    /// The output record: each part's new bytes if it has them, else a copy of the input's;
    /// headers copied, minus ours if `drop_ours`.
    fn with_parts<H: HeaderView>(
        new_key: Option<Vec<u8>>,
        key: Option<&[u8]>,
        new_value: Option<Vec<u8>>,
        value: Option<&[u8]>,
        headers: &[H],
        drop_ours: bool,
    ) -> Record {
        let mut out_headers = Vec::with_capacity(headers.len() + 1);
        out_headers.extend(
            headers
                .iter()
                .filter(|h| !(drop_ours && h.name() == HEADER_NAME))
                .map(|h| OwnedHeader { name: h.name().to_string(), value: h.value().map(<[u8]>::to_vec) }),
        );
        Record {
            key: new_key.or_else(|| key.map(<[u8]>::to_vec)),
            value: new_value.or_else(|| value.map(<[u8]>::to_vec)),
            headers: out_headers,
        }
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

/// What to encrypt on one topic: the fields of each (KEK, algorithm) pair, and per record part
/// the paths to scan for.
struct TopicPlan {
    keys: Vec<PlannedKey>,
    parts: [PartPaths; 2],
}

struct PlannedKey {
    slot: Arc<DekSlot>,
    fields: Vec<(Part, FieldPath)>,
}

/// The paths to look for in one record part, each with its owner: (key entry, field in entry).
struct PartPaths {
    scanner: JsonScanner,
    owners: Vec<(usize, usize)>,
}

impl PartPaths {
    fn of(fields: impl IntoIterator<Item = (usize, usize, Part, FieldPath)>) -> [PartPaths; 2] {
        let mut paths: [Vec<FieldPath>; 2] = Default::default();
        let mut owners: [Vec<(usize, usize)>; 2] = Default::default();
        for (entry, field, part, path) in fields {
            paths[usize::from(part.code())].push(path);
            owners[usize::from(part.code())].push((entry, field));
        }
        let [value_paths, key_paths] = paths;
        let [value_owners, key_owners] = owners;
        [
            PartPaths { scanner: JsonScanner::new(value_paths), owners: value_owners },
            PartPaths { scanner: JsonScanner::new(key_paths), owners: key_owners },
        ]
    }

    fn paths(&self) -> &[FieldPath] {
        self.scanner.paths()
    }
}

const PARTS: [Part; 2] = [Part::Value, Part::Key];

fn part_name(part: Part) -> &'static str {
    match part {
        Part::Value => "record value",
        Part::Key => "record key",
    }
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
        let parts = PartPaths::of(keys.iter().enumerate().flat_map(|(k, pk)| {
            pk.fields.iter().enumerate().map(move |(f, (part, path))| (k, f, *part, path.clone()))
        }));
        let plan = Arc::new(TopicPlan { keys, parts });
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
        // Find the selected values; a tombstone (no value) has none.
        let mut scans: [Option<Box<dyn Scan<'_> + '_>>; 2] = [None, None];
        for part in PARTS {
            let paths = &plan.parts[usize::from(part.code())];
            let bytes = if part == Part::Key { key } else { value };
            scans[usize::from(part.code())] = match bytes {
                _ if paths.paths().is_empty() => None,
                Some(bytes) => Some(paths.scanner.scan(bytes, part_name(part))?),
                None if part == Part::Value => None,
                None => {
                    return Err(Error::record(format!(
                        "policy encrypts key fields of topic {topic:?}, but the record has no key"
                    )))
                }
            };
        }
        let mut selected: Vec<Vec<bool>> = plan.keys.iter().map(|k| vec![false; k.fields.len()]).collect();
        for (scan, part) in scans.iter().zip(&plan.parts) {
            for leaf in scan.iter().flat_map(|s| s.leaves()) {
                let (k, f) = part.owners[leaf.path];
                selected[k][f] = true;
            }
        }

        // Lease a DEK for each key entry that selected something.
        let mut used: Vec<(Arc<ActiveDek>, &PlannedKey, &[bool])> = Vec::new();
        let mut entry_of_key: Vec<usize> = vec![usize::MAX; plan.keys.len()];
        for (k, pk) in plan.keys.iter().enumerate() {
            if !selected[k].contains(&true) {
                continue;
            }
            let kms = inner.kms.for_scheme(pk.slot.kek.scheme())?;
            let dek = pk.slot.lease(kms, &inner.limits, &inner.counters)?;
            dek.use_n(1)?; // the header authenticator
            entry_of_key[k] = used.len();
            used.push((dek, pk, &selected[k]));
        }
        if used.is_empty() {
            return Ok(Record::copy_of(key, value, headers));
        }

        // The header: body, then one authenticator per key entry.
        let record_nonce: [u8; GCM_NONCE_LEN] = random_bytes();
        let entries: Vec<KeyEntry<'_>> = used
            .iter()
            .map(|(dek, pk, selected)| KeyEntry {
                algorithm: pk.slot.algorithm,
                dek_id: *dek.dek.id(),
                kek: pk.slot.kek.as_str(),
                kek_version: &dek.kek_version,
                dek: DekLocation::Inline(&dek.wrapped),
                fields: pk
                    .fields
                    .iter()
                    .zip(selected.iter())
                    .filter(|(_, s)| **s)
                    .map(|((part, path), _)| (*part, path.as_str()))
                    .collect(),
            })
            .collect();
        let mut header_bytes = Vec::with_capacity(256);
        header::write_body(&mut header_bytes, &record_nonce, inner.policy.id(), inner.policy.revision(), &entries);
        let mut tags = Vec::with_capacity(used.len());
        for (dek, _, _) in &used {
            tags.push(dek.dek.header_tag(&record_nonce, &header_bytes)?);
        }
        for tag in &tags {
            header_bytes.extend_from_slice(tag);
        }

        // The fields.
        let mut aad = Vec::with_capacity(128);
        let mut sealed = Vec::with_capacity(128);
        let mut text = String::with_capacity(128);
        let mut fields = 0u64;
        let mut outputs: [Option<Vec<u8>>; 2] = [None, None];
        for ((scan, part), (paths, output)) in scans.iter().zip(PARTS).zip(plan.parts.iter().zip(&mut outputs)) {
            let Some(scan) = scan.as_ref().filter(|s| !s.leaves().is_empty()) else { continue };
            *output = Some(scan.write(&mut |leaf, at, emit| {
                let (k, _) = paths.owners[leaf.path];
                let (dek, _, _) = &used[entry_of_key[k]];
                dek.use_n(1)?;
                field_aad(&mut aad, &dek.dek, &tags[entry_of_key[k]], part, paths.paths()[leaf.path].as_str(), at);
                seal_leaf(&dek.dek, &aad, leaf, &mut sealed, &mut text, emit)?;
                fields += 1;
                Ok(())
            })?);
        }

        let [value_out, key_out] = outputs;
        let mut out = Record::with_parts(key_out, key, value_out, value, headers, false);
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

        // Per key entry: which of its paths this consumer may see, and the DEK if it can have it.
        let mut access: Vec<(Option<Arc<Dek>>, Vec<bool>)> = Vec::with_capacity(env.keys.len());
        for (entry, tag) in env.keys.iter().zip(&env.tags) {
            let allowed: Vec<bool> = entry
                .fields
                .iter()
                .map(|(part, path)| inner.profile.as_ref().is_none_or(|p| p.allows(topic, *part, path)))
                .collect();
            let dek = if allowed.contains(&true) { self.dek_for(&env, entry, tag)? } else { None };
            access.push((dek, allowed));
        }

        // Paths are interpreted only after the header authenticated (above).
        let mut fields = Vec::new();
        for (e, entry) in env.keys.iter().enumerate() {
            for (f, (part, text)) in entry.fields.iter().enumerate() {
                let path = FieldPath::parse(text)
                    .map_err(|err| Error::format(format!("header field path {text:?} is invalid: {err}")))?;
                fields.push((e, f, *part, path));
            }
        }
        let parts = PartPaths::of(fields);

        let fallback = inner.profile.as_ref().map_or(&Fallback::Ciphertext, |p| &p.otherwise);
        let mut ciphertext_left = false;
        let (mut decrypted, mut withheld) = (0u64, 0u64);
        let mut aad = Vec::with_capacity(128);
        let mut sealed = Vec::with_capacity(128);
        let mut outputs: [Option<Vec<u8>>; 2] = [None, None];
        for ((part, paths), output) in PARTS.into_iter().zip(&parts).zip(&mut outputs) {
            if paths.paths().is_empty() {
                continue;
            }
            let bytes = if part == Part::Key { key } else { value };
            let bytes = bytes.ok_or_else(|| {
                Error::record(format!("header lists fields of the {}, but the record has none", part_name(part)))
            })?;
            let scan = paths.scanner.scan(bytes, part_name(part))?;
            // The header lists only paths that selected a value when the record was encrypted:
            // one that selects nothing now means a field was renamed, removed or nulled.
            let mut found = vec![false; paths.paths().len()];
            scan.leaves().iter().for_each(|leaf| found[leaf.path] = true);
            if let Some(missing) = found.iter().position(|f| !f) {
                return Err(Error::crypto(format!(
                    "encrypted field {} of the {} is missing: the record was altered",
                    paths.paths()[missing],
                    part_name(part)
                )));
            }
            *output = Some(scan.write(&mut |leaf, at, emit| {
                let (e, f) = paths.owners[leaf.path];
                match &access[e] {
                    (Some(dek), allowed) if allowed[f] => {
                        field_aad(&mut aad, dek, &env.tags[e], part, paths.paths()[leaf.path].as_str(), at);
                        open_leaf(dek, &aad, leaf, at, &mut sealed, emit)?;
                        decrypted += 1;
                    }
                    _ => {
                        withheld += 1;
                        match fallback {
                            Fallback::Ciphertext => {
                                ciphertext_left = true;
                                emit.keep()?;
                            }
                            Fallback::Null => emit.null()?,
                            Fallback::Mask(mask) => emit.text(mask)?,
                        }
                    }
                }
                Ok(())
            })?);
        }

        let [value_out, key_out] = outputs;
        let out = Record::with_parts(key_out, key, value_out, value, headers, !ciphertext_left);
        inner.counters.records_decrypted.fetch_add(1, Ordering::Relaxed);
        inner.counters.fields_decrypted.fetch_add(decrypted, Ordering::Relaxed);
        inner.counters.fields_withheld.fetch_add(withheld, Ordering::Relaxed);
        Ok(out)
    }

    /// The DEK of a header key entry, checked against the header authenticator. `None` when this
    /// consumer has no access to the KEK (unknown key, or no KMS client for its scheme).
    fn dek_for(&self, env: &Envelope<'_>, entry: &KeyEntry<'_>, tag: &[u8; 16]) -> Result<Option<Arc<Dek>>> {
        let inner = &*self.0;
        let cached_dek = inner.cache.get(&entry.dek_id, entry.kek, entry.kek_version);
        let cached = cached_dek.is_some();
        let dek = match cached_dek {
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
        if !cached {
            // Cached only once the header proved the key genuine, so a tampered header can
            // neither evict nor replace a good entry.
            inner.cache.insert(entry.kek, entry.kek_version, dek.clone());
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
        Ok(Arc::new(Dek::new(entry.dek_id, entry.algorithm, &key)?))
    }
}

/// Encrypts one selected value and emits its ciphertext: raw in a bytes field, as standard
/// Base64 text anywhere else.
fn seal_leaf(
    dek: &Dek,
    aad: &[u8],
    leaf: &Leaf<'_>,
    sealed: &mut Vec<u8>,
    text: &mut String,
    emit: &mut dyn Emit,
) -> Result<()> {
    sealed.clear();
    match leaf.kind {
        ValueKind::Text => dek.seal(aad, PLAIN_STRING, leaf.value, sealed)?,
        ValueKind::Bytes => dek.seal(aad, PLAIN_BYTES, leaf.value, sealed)?,
        ValueKind::Json => {
            let raw = std::str::from_utf8(leaf.value).map_err(|_| Error::record("JSON value is not UTF-8"))?;
            let (type_byte, plain) = json::plaintext(raw)?;
            dek.seal(aad, type_byte, plain.as_bytes(), sealed)?;
        }
    }
    if leaf.kind == ValueKind::Bytes {
        emit.bytes(sealed)
    } else {
        text.clear();
        TEXT_ENCODING.encode_string(&sealed[..], text);
        emit.text(text)
    }
}

/// Decrypts one selected value and emits its plaintext, restored to its original type.
fn open_leaf(
    dek: &Dek,
    aad: &[u8],
    leaf: &Leaf<'_>,
    at: &str,
    sealed: &mut Vec<u8>,
    emit: &mut dyn Emit,
) -> Result<()> {
    let not_ours = || Error::crypto(format!("field {at} does not hold fieldcrypt ciphertext"));
    let ciphertext: &[u8] = match leaf.kind {
        ValueKind::Bytes => leaf.value,
        ValueKind::Text | ValueKind::Json => {
            let raw = std::str::from_utf8(leaf.value).map_err(|_| not_ours())?;
            let text =
                if leaf.kind == ValueKind::Json { json::string_value(raw).ok_or_else(not_ours)? } else { raw.into() };
            sealed.clear();
            TEXT_ENCODING.decode_vec(text.as_bytes(), sealed).map_err(|_| not_ours())?;
            sealed
        }
    };
    let (type_byte, plain) = dek.open(aad, ciphertext)?;
    let bad = |what: &str| Error::record(format!("decrypted field {at} {what}"));
    match type_byte {
        PLAIN_STRING => emit.text(std::str::from_utf8(&plain).map_err(|_| bad("is not UTF-8"))?),
        PLAIN_JSON => {
            let s = std::str::from_utf8(&plain).ok().filter(|s| json::check_json_text(s));
            emit.json(s.ok_or_else(|| bad("is not a JSON value"))?)
        }
        PLAIN_BYTES => emit.bytes(&plain),
        other => Err(bad(&format!("has unknown plaintext type {other}"))),
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
