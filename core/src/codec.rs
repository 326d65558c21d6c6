//! The codec: encrypts the fields a policy selects inside serialized records, and decrypts what
//! a consumer's profile and KMS access allow. It works on wire bytes, so teams keep their own
//! serializers and Kafka clients. A `Codec` is `Send + Sync` and cheap to clone (an `Arc`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine;

use crate::audit::{self, AuditEvent};
use crate::crypto::{ct_eq, hex, random_bytes, Algorithm, Dek, DekId, GCM_NONCE_LEN, TAG_LEN};
use crate::error::{Error, ErrorKind, Result};
use crate::formats::json::{self, JsonScanner};
use crate::formats::{CompiledSchema, Emit, Leaf, Scan, Scanner, ValueKind, PLAIN_BYTES, PLAIN_JSON, PLAIN_STRING};
use crate::framing::{self, SchemaRef};
use crate::header::{self, DekLocation, KeyEntry, HEADER_NAME};
use crate::keys::{ActiveDek, DekCache, DekSlot, KmsRegistry, Limits, SubjectDeks};
use crate::keystore::{KeyLookup, KeyStore, SubjectId};
use crate::kms::{KekUri, Kms, WrapContext};
use crate::policy::{Fallback, FieldPath, Part, Policy, Profile, Subject};
use crate::schema::{self, SchemaSource, SchemaType};
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
    schemas: Option<Arc<dyn SchemaSource>>,
    validate_json_schema: bool,
    key_store: Option<Arc<dyn KeyStore>>,
}

impl CodecBuilder {
    /// Where data keys held by reference live: needed by producers of rules with a `subject`
    /// (per-subject keys) and by consumers of their records (docs/SHREDDING.md).
    pub fn key_store(mut self, store: impl KeyStore + 'static) -> Self {
        self.key_store = Some(Arc::new(store));
        self
    }

    pub fn key_store_shared(mut self, store: Arc<dyn KeyStore>) -> Self {
        self.key_store = Some(store);
        self
    }

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

    /// Where writer schemas of framed records (Avro, Protobuf, JSON Schema) come from: a
    /// Schema Registry client or [`crate::StaticSchemas`].
    pub fn schemas(mut self, source: impl SchemaSource + 'static) -> Self {
        self.schemas = Some(Arc::new(source));
        self
    }

    pub fn schemas_shared(mut self, source: Arc<dyn SchemaSource>) -> Self {
        self.schemas = Some(source);
        self
    }

    /// Validate JSON Schema records against their writer schema (off by default). The producer
    /// validates the plaintext before encrypting it, and refuses a record that does not match
    /// with an [`ErrorKind::Record`] error naming the schema and the failing location (never a
    /// value). The consumer validates a record part after decrypting it, but only when every
    /// encrypted field of that part was decrypted: a field left as ciphertext, `null` or a mask
    /// (per its profile) may not match its schema type — an encrypted number is a Base64 string —
    /// so such a part is not validated. Validation covers the record parts the codec works on
    /// (those the policy selects fields of, or the header lists fields of); Avro and Protobuf
    /// records, schemaless JSON, and records passed through untouched are not validated.
    pub fn validate_json_schema(mut self, validate: bool) -> Self {
        self.validate_json_schema = validate;
        self
    }

    pub fn build(self) -> Result<Codec> {
        self.build_sharing(None)
    }

    /// Builds; with `earlier`, shares its key caches, counters and, per (KEK, algorithm) the new
    /// policy still uses, its producer data keys (see [`Codec::with_policy`]).
    fn build_sharing(self, earlier: Option<&Inner>) -> Result<Codec> {
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
        if let Some(rule) = self.policy.rules().iter().find(|r| r.subject.is_some()) {
            if self.key_store.is_none() {
                return Err(Error::config(format!(
                    "encrypt rule {:?} keeps a key per subject: configure a key store",
                    rule.name
                )));
            }
        }
        let mut slots: HashMap<(KekUri, Algorithm), Arc<DekSlot>> = HashMap::new();
        for rule in self.policy.rules() {
            let pair = (rule.key.clone(), rule.algorithm);
            let kept = earlier.and_then(|e| e.slots.get(&pair).cloned());
            slots
                .entry(pair)
                .or_insert_with(|| kept.unwrap_or_else(|| Arc::new(DekSlot::new(rule.key.clone(), rule.algorithm))));
        }
        Ok(Codec(Arc::new(Inner {
            cache: earlier.map_or_else(|| Arc::new(DekCache::new(&self.limits)), |e| e.cache.clone()),
            subject_deks: earlier.map_or_else(|| Arc::new(SubjectDeks::new(&self.limits)), |e| e.subject_deks.clone()),
            key_store: self.key_store,
            policy: self.policy,
            kms: self.kms,
            profile,
            limits: self.limits,
            slots,
            schemas: self.schemas,
            validate_json_schema: self.validate_json_schema,
            topic_plans: PlanCache::new(),
            schema_types: PlanCache::new(),
            compiled: PlanCache::new(),
            header_scanners: PlanCache::new(),
            last_header_scanner: Default::default(),
            last_read_header: Mutex::new(None),
            unwrap_locks: Default::default(),
            counters: earlier.map_or_else(Default::default, |e| e.counters.clone()),
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
    schemas: Option<Arc<dyn SchemaSource>>,
    /// See [`CodecBuilder::validate_json_schema`].
    validate_json_schema: bool,
    topic_plans: PlanCache<String, Arc<TopicPlan>>,
    schema_types: PlanCache<SchemaRef, SchemaType>,
    compiled: PlanCache<Shape, Arc<dyn CompiledSchema>>,
    header_scanners: PlanCache<(Shape, String), Arc<dyn Scanner>>,
    last_read_header: Mutex<Option<Arc<HeaderPlan>>>,
    /// Serialize unwraps of the same DEK (striped by DEK id).
    unwrap_locks: [Mutex<()>; 16],
    /// Per part: the header scanner used last.
    last_header_scanner: [Mutex<Option<LastScanner>>; 2],
    /// Shared with the codecs [`Codec::with_policy`] makes, as are `subject_deks` and `counters`.
    cache: Arc<DekCache>,
    subject_deks: Arc<SubjectDeks>,
    key_store: Option<Arc<dyn KeyStore>>,
    counters: Arc<Counters>,
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

/// What to encrypt on one topic: per (KEK, algorithm) pair, the paths and tags of each part.
struct TopicPlan {
    /// At most [`MAX_KEYS_PER_RECORD`].
    keys: Vec<PlannedKey>,
    /// Per part (indexed by `Part::code()`), per shape: kept here so looking one up needs no
    /// topic string.
    part_plans: [PlanCache<Shape, Arc<PartPlan>>; 2],
    /// The header body of the last record, reused while records select the same paths under the
    /// same DEKs (only the record nonce differs then).
    last_header: Mutex<Option<Arc<HeaderTemplate>>>,
}

/// A header body as [`header::write_body`] wrote it, and what determined its bytes.
struct HeaderTemplate {
    plans: [Option<Arc<PartPlan>>; 2],
    present: [u64; 2],
    deks: Vec<DekId>,
    body: Vec<u8>,
}

impl HeaderTemplate {
    fn describes(&self, parts: &[ScannedPart<'_>], present: &[u64; 2], used: &[UsedKey<'_>]) -> bool {
        self.present == *present
            && self.deks.len() == used.len()
            && self.deks.iter().zip(used).all(|(id, (dek, _))| id == dek.dek.id())
            && parts.iter().all(|(part, _, plan, _)| {
                self.plans[usize::from(part.code())].as_ref().is_some_and(|p| Arc::ptr_eq(p, plan))
            })
    }
}

/// A header holds at most this many keys (docs/FORMAT.md), so a topic's plan may too.
const MAX_KEYS_PER_RECORD: usize = 64;
/// Up to this many paths per part, which paths selected a value is a bit set (and the header
/// body can be reused); beyond it, the header is written afresh for every record.
const PRESENT_SET_BITS: usize = 64;

struct PlannedKey {
    slot: Arc<DekSlot>,
    /// Per-subject keys: where the record's subject is (each subject its own DEK).
    subject: Option<Subject>,
    /// Indexed by `Part::code()`; each with the index of its rule in the policy, so a header
    /// lists paths in policy order whatever the record part.
    fields: [Vec<(usize, FieldPath)>; 2],
    tags: [Vec<(usize, String)>; 2],
}

impl TopicPlan {
    fn selects(&self, part: Part) -> bool {
        let i = usize::from(part.code());
        self.keys.iter().any(|k| !k.fields[i].is_empty() || !k.tags[i].is_empty())
    }
}

/// The scanner for one record part of one shape (schemaless JSON, or a writer schema), with the
/// paths it looks for and, when encrypting, the planned key each path belongs to.
struct PartPlan {
    scanner: Arc<dyn Scanner>,
    /// The writer schema, for schema formats.
    schema: Option<Arc<dyn CompiledSchema>>,
    paths: Vec<FieldPath>,
    owners: Vec<usize>,
    /// (rule index, position): the order a header lists the paths in.
    order: Vec<(usize, usize)>,
}

/// A header read by [`Codec::decrypt`]: what every record with this header body shares, and the
/// record's own nonce, authenticated body and authenticators.
struct ReadHeader<'h> {
    plan: Arc<HeaderPlan>,
    record_nonce: [u8; GCM_NONCE_LEN],
    body: &'h [u8],
    tags: Vec<[u8; TAG_LEN]>,
}

/// What decryption derives from a header body, for one topic.
struct HeaderPlan {
    topic: String,
    body: Vec<u8>,
    keys: Vec<OwnedKeyEntry>,
    /// Per key entry, per field: whether this codec's profile may see it.
    allowed: Vec<Vec<bool>>,
    /// Per part (indexed by `Part::code()`).
    parts: [HeaderPart; 2],
}

/// The paths a header lists for one record part, and the (key entry, field) of each.
type HeaderPart = (Vec<String>, Vec<(usize, usize)>);

impl HeaderPlan {
    /// If `header` has this plan's body but for the record nonce: that nonce, the body, and
    /// the authenticators.
    #[allow(clippy::type_complexity)]
    fn same_header<'h>(&self, header: &'h [u8]) -> Option<([u8; GCM_NONCE_LEN], &'h [u8], Vec<[u8; TAG_LEN]>)> {
        let n = self.body.len();
        if header.len() != n + self.keys.len() * TAG_LEN {
            return None;
        }
        let (body, tags) = header.split_at(n);
        let nonce = header::RECORD_NONCE_AT..header::RECORD_NONCE_AT + GCM_NONCE_LEN;
        let same = body[..nonce.start] == self.body[..nonce.start] && body[nonce.end..] == self.body[nonce.end..];
        same.then(|| {
            let record_nonce = body[nonce].try_into().expect("length checked");
            (record_nonce, body, tags.chunks_exact(TAG_LEN).map(|t| t.try_into().expect("exact chunks")).collect())
        })
    }
}

/// A header key entry, owned.
struct OwnedKeyEntry {
    algorithm: Algorithm,
    dek_id: DekId,
    kek: String,
    kek_version: String,
    wrapped: Option<Vec<u8>>,
}

impl OwnedKeyEntry {
    fn as_entry(&self) -> KeyEntry<'_> {
        KeyEntry {
            algorithm: self.algorithm,
            dek_id: self.dek_id,
            kek: &self.kek,
            kek_version: &self.kek_version,
            dek: self.wrapped.as_deref().map_or(DekLocation::KeyStore, DekLocation::Inline),
            fields: Vec::new(),
        }
    }
}

impl From<&KeyEntry<'_>> for OwnedKeyEntry {
    fn from(k: &KeyEntry<'_>) -> Self {
        OwnedKeyEntry {
            algorithm: k.algorithm,
            dek_id: k.dek_id,
            kek: k.kek.to_string(),
            kek_version: k.kek_version.to_string(),
            wrapped: match k.dek {
                DekLocation::Inline(w) => Some(w.to_vec()),
                DekLocation::KeyStore => None,
            },
        }
    }
}

struct LastScanner {
    shape: Shape,
    paths: Vec<String>,
    scanner: Arc<dyn Scanner>,
}

/// A record part located: its framing (copied through) and the shape of its payload.
struct Located<'a> {
    /// Framing bytes: the magic byte, schema id and Protobuf message indexes, if any.
    prefix: &'a [u8],
    payload: &'a [u8],
    shape: Shape,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Shape {
    Schemaless,
    Schema(SchemaRef, Vec<i32>),
}

/// A record part being encrypted: where it is, its plan, and what the plan selected in it.
type ScannedPart<'a> = (Part, Located<'a>, Arc<PartPlan>, Box<dyn Scan<'a> + 'a>);

/// A planned key that selected fields in the record being encrypted, with its leased DEK.
type UsedKey<'a> = (Arc<ActiveDek>, &'a PlannedKey);

const PARTS: [Part; 2] = [Part::Value, Part::Key];

fn part_name(part: Part) -> &'static str {
    match part {
        Part::Value => "record value",
        Part::Key => "record key",
    }
}

fn header_value<'h, H: HeaderView>(headers: &'h [H], name: &str) -> Option<&'h [u8]> {
    headers.iter().find(|h| h.name() == name).and_then(|h| h.value())
}

const MAX_CACHED_PLANS: usize = 10_000;

/// A small bounded map for plans: cleared when full (plans are cheap to rebuild; the bound only
/// stops an unbounded set of topics or schemas from growing memory).
/// Hashed with foldhash: these lookups happen several times per record, and SipHash showed in
/// profiles; keys are topic names and schema references the application controls.
struct PlanCache<K, V>(RwLock<HashMap<K, V, foldhash::fast::RandomState>>);

impl<K: std::hash::Hash + Eq, V: Clone> PlanCache<K, V> {
    fn new() -> Self {
        PlanCache(RwLock::new(HashMap::default()))
    }

    fn get_or_try_insert<Q>(&self, key: &Q, make: impl FnOnce() -> Result<V>) -> Result<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(v) = self.0.read().unwrap_or_else(|e| e.into_inner()).get(key) {
            return Ok(v.clone());
        }
        let v = make()?;
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_CACHED_PLANS {
            map.clear();
        }
        map.insert(key.to_owned(), v.clone());
        Ok(v)
    }
}

impl Codec {
    pub fn builder(policy: Policy) -> CodecBuilder {
        CodecBuilder {
            policy,
            kms: KmsRegistry::default(),
            profile: None,
            limits: Limits::default(),
            schemas: None,
            validate_json_schema: false,
            key_store: None,
        }
    }

    /// A codec for `policy` with this codec's KMS clients, schema source, key store, limits and
    /// profile, sharing its key caches and counters and, for every (KEK, algorithm) the new
    /// policy still uses, its current data keys: a policy hot reload then costs no KMS calls for
    /// keys in use. Fails like [`CodecBuilder::build`] (e.g. the profile is not in `policy`).
    pub fn with_policy(&self, policy: Policy) -> Result<Codec> {
        let inner = &*self.0;
        CodecBuilder {
            policy,
            kms: inner.kms.clone(),
            profile: inner.profile.as_ref().map(|p| p.name.clone()),
            limits: inner.limits.clone(),
            schemas: inner.schemas.clone(),
            validate_json_schema: inner.validate_json_schema,
            key_store: inner.key_store.clone(),
        }
        .build_sharing(Some(inner))
    }

    /// Rotates a data subject's keys: stores a new DEK for it under every KEK a per-subject rule
    /// of the policy uses. Records encrypted before still decrypt (their DEKs stay in the store
    /// until the subject is shredded). Returns the new DEK ids.
    pub fn rotate_subject(&self, subject: &str) -> Result<Vec<DekId>> {
        let inner = &*self.0;
        let store =
            inner.key_store.as_deref().ok_or_else(|| Error::config("rotating a subject's keys needs a key store"))?;
        let id = SubjectId::of(subject);
        let mut done: Vec<(KekUri, Algorithm)> = Vec::new();
        let mut ids = Vec::new();
        for rule in inner.policy.rules().iter().filter(|r| r.subject.is_some()) {
            let pair = (rule.key.clone(), rule.algorithm);
            if done.contains(&pair) {
                continue;
            }
            let slot = &inner.slots[&pair];
            let kms = inner.kms.for_scheme(slot.kek.scheme())?;
            ids.push(inner.subject_deks.rotate(slot, &id, kms, store, &inner.limits, &inner.counters)?);
            done.push(pair);
        }
        if ids.is_empty() {
            return Err(Error::config(format!("policy {:?} has no per-subject rule", inner.policy.id())));
        }
        Ok(ids)
    }

    /// Shreds a data subject: deletes every data key the key store holds for it, so none of its
    /// records decrypts again anywhere, and forgets the keys this codec had in use. Returns how
    /// many keys were deleted. See docs/SHREDDING.md for what this does and does not guarantee.
    pub fn shred(&self, subject: &str) -> Result<usize> {
        let store = self.0.key_store.as_deref().ok_or_else(|| Error::config("shred needs a key store"))?;
        crate::keystore::shred(store, &SubjectId::of(subject))
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

    fn topic_plan(&self, topic: &str) -> Result<Arc<TopicPlan>> {
        self.0.topic_plans.get_or_try_insert(topic, || {
            let mut keys: Vec<PlannedKey> = Vec::new();
            for (rule_index, rule) in self.0.policy.rules_for(topic)?.into_iter().enumerate() {
                let slot = &self.0.slots[&(rule.key.clone(), rule.algorithm)];
                let key = match keys.iter().position(|k| Arc::ptr_eq(&k.slot, slot) && k.subject == rule.subject) {
                    Some(i) => &mut keys[i],
                    None => {
                        keys.push(PlannedKey {
                            slot: slot.clone(),
                            subject: rule.subject.clone(),
                            fields: Default::default(),
                            tags: Default::default(),
                        });
                        keys.last_mut().expect("just pushed")
                    }
                };
                let i = usize::from(rule.part.code());
                key.fields[i].extend(rule.fields.iter().map(|f| (rule_index, f.clone())));
                key.tags[i].extend(rule.tags.iter().map(|t| (rule_index, t.clone())));
            }
            if keys.len() > MAX_KEYS_PER_RECORD {
                return Err(Error::policy(format!(
                    "topic {topic:?} would need {} keys per record; a header holds at most {MAX_KEYS_PER_RECORD}",
                    keys.len()
                )));
            }
            Ok(Arc::new(TopicPlan {
                keys,
                part_plans: [PlanCache::new(), PlanCache::new()],
                last_header: Mutex::new(None),
            }))
        })
    }

    /// The data subject of a record for a per-subject rule (see [`Subject`]).
    fn subject_of<H: HeaderView>(
        &self,
        subject: &Subject,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[H],
    ) -> Result<String> {
        match subject {
            Subject::RecordKey => {
                let key = key
                    .ok_or_else(|| Error::record("a per-subject rule uses the record key, and the record has none"))?;
                Ok(String::from_utf8_lossy(key).into_owned())
            }
            Subject::Member(member) => {
                let value =
                    value.ok_or_else(|| Error::record("a per-subject rule reads the record value, and it has none"))?;
                let located = self.locate(Part::Value, value, headers)?;
                let text = match self.compiled(&located.shape)? {
                    Some(schema) => schema.top_level_text(located.payload, member)?,
                    None => crate::formats::json::top_level_text(located.payload, member)?,
                };
                text.filter(|t| !t.is_empty()).ok_or_else(|| {
                    Error::record(format!(
                        "subject member {member:?} is missing or not a non-empty string or number: nothing encrypted"
                    ))
                })
            }
        }
    }

    /// Finds a part's framing and, for schema formats, its writer schema.
    fn locate<'a, H: HeaderView>(&self, part: Part, bytes: &'a [u8], headers: &[H]) -> Result<Located<'a>> {
        let Some(framed) = framing::detect(bytes, header_value(headers, framing::schema_id_header(part)))? else {
            return Ok(Located { prefix: &[], payload: bytes, shape: Shape::Schemaless });
        };
        let source = self.0.schemas.as_deref().ok_or_else(|| {
            Error::config(format!(
                "the {} is framed with {}, and no schema registry or schema source is configured",
                part_name(part),
                framed.schema
            ))
        })?;
        // Only the schema's type is needed here; remember it rather than ask the source per record.
        let schema_type =
            self.0.schema_types.get_or_try_insert(&framed.schema, || Ok(source.schema(&framed.schema)?.schema_type))?;
        let mut prefix_len = framed.prefix_len;
        let mut indexes = Vec::new();
        if schema_type == SchemaType::Protobuf {
            let (found, len) = framing::message_indexes(&bytes[prefix_len..])?;
            indexes = found;
            prefix_len += len;
        }
        Ok(Located {
            prefix: &bytes[..prefix_len],
            payload: &bytes[prefix_len..],
            shape: Shape::Schema(framed.schema, indexes),
        })
    }

    fn compiled(&self, shape: &Shape) -> Result<Option<Arc<dyn CompiledSchema>>> {
        let Shape::Schema(schema, indexes) = shape else { return Ok(None) };
        self.0
            .compiled
            .get_or_try_insert(shape, || {
                let source = self.0.schemas.as_deref().expect("located with a schema source");
                schema::compile(source.schema(schema)?.as_ref(), indexes)
            })
            .map(Some)
    }

    /// The encryption plan of one part of one topic in one shape: the policy's paths, plus the
    /// fields the writer schema tags.
    fn part_plan(&self, plan: &TopicPlan, part: Part, shape: &Shape) -> Result<Arc<PartPlan>> {
        let i = usize::from(part.code());
        plan.part_plans[i].get_or_try_insert(shape, || {
            let schema = self.compiled(shape)?;
            let (mut paths, mut owners, mut order) = (Vec::new(), Vec::new(), Vec::new());
            for (k, pk) in plan.keys.iter().enumerate() {
                // Schemaless records: each rule's paths. Schema records: a rule's tags when it has
                // any (the schema says where they are), else its paths.
                let mut tagged_rules: Vec<usize> = pk.tags[i].iter().map(|(r, _)| *r).collect();
                tagged_rules.dedup();
                let mut candidates: Vec<(usize, FieldPath)> = pk.fields[i]
                    .iter()
                    .filter(|(r, _)| schema.is_none() || !tagged_rules.contains(r))
                    .cloned()
                    .collect();
                if let Some(s) = &schema {
                    for r in tagged_rules {
                        let tags: Vec<String> =
                            pk.tags[i].iter().filter(|(x, _)| *x == r).map(|(_, t)| t.clone()).collect();
                        candidates.extend(s.tagged_fields(&tags).into_iter().map(|p| (r, p)));
                    }
                }
                candidates.sort_by_key(|(r, _)| *r); // stable: explicit paths, then tagged, per rule
                for (n, (rule, path)) in candidates.into_iter().enumerate() {
                    if !paths.contains(&path) {
                        paths.push(path);
                        owners.push(k);
                        order.push((rule, n));
                    }
                }
            }
            let scanner: Arc<dyn Scanner> = match &schema {
                Some(s) => Arc::from(s.scanner(paths.clone())?),
                None => Arc::new(JsonScanner::new(paths.clone())),
            };
            Ok(Arc::new(PartPlan { scanner, schema, paths, owners, order }))
        })
    }

    /// A scanner for the paths a header lists for one part, in one shape; cached, so a stream
    /// of records with the same header paths parses and compiles them once. The last one used
    /// is checked first, which needs no allocation.
    fn header_scanner(&self, part: Part, shape: &Shape, paths: &[String]) -> Result<Arc<dyn Scanner>> {
        let last = &self.0.last_header_scanner[usize::from(part.code())];
        if let Some(hit) = last.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if hit.shape == *shape && hit.paths == paths {
                return Ok(hit.scanner.clone());
            }
        }
        let key = (shape.clone(), paths.join("\n"));
        let scanner = self.0.header_scanners.get_or_try_insert(&key, || {
            let parsed = paths
                .iter()
                .map(|text| {
                    FieldPath::parse(text)
                        .map_err(|err| Error::format(format!("header field path {text:?} is invalid: {err}")))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(match self.compiled(shape)? {
                None => Arc::new(JsonScanner::new(parsed)) as Arc<dyn Scanner>,
                Some(schema) => Arc::from(schema.scanner(parsed)?),
            })
        })?;
        let paths = paths.to_vec();
        *last.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(LastScanner { shape: shape.clone(), paths, scanner: scanner.clone() });
        Ok(scanner)
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
        let plan = self.topic_plan(topic)?;
        if headers.iter().any(|h| h.name() == HEADER_NAME) {
            return Err(Error::record(format!(
                "record for topic {topic:?} already carries a {HEADER_NAME:?} header; refusing to encrypt it twice"
            )));
        }
        if plan.keys.is_empty() {
            return Ok(Record::copy_of(key, value, headers));
        }
        // Find the selected values; a tombstone (no value) has none.
        let mut parts: Vec<ScannedPart<'_>> = Vec::with_capacity(2);
        for part in PARTS {
            if !plan.selects(part) {
                continue;
            }
            let bytes = match (part, if part == Part::Key { key } else { value }) {
                (_, Some(bytes)) => bytes,
                (Part::Value, None) => continue,
                (Part::Key, None) => {
                    return Err(Error::record(format!(
                        "policy encrypts key fields of topic {topic:?}, but the record has no key"
                    )))
                }
            };
            let located = self.locate(part, bytes, headers)?;
            let part_plan = self.part_plan(&plan, part, &located.shape)?;
            let scan = part_plan.scanner.scan(located.payload, part_name(part))?;
            if inner.validate_json_schema {
                if let Some(schema) = &part_plan.schema {
                    schema.validate(located.payload, part_name(part))?;
                }
            }
            parts.push((part, located, part_plan, scan));
        }

        // Which paths selected a value, which planned keys that makes, and how many fields each
        // key encrypts (each field and the header authenticator is one use of its DEK).
        let mut present = [0u64; 2];
        let mut cacheable = true;
        let mut keys_used = 0u64;
        let mut uses = [0u64; MAX_KEYS_PER_RECORD];
        for (part, _, part_plan, scan) in &parts {
            cacheable &= part_plan.paths.len() <= PRESENT_SET_BITS;
            for leaf in scan.leaves() {
                let k = part_plan.owners[leaf.path];
                keys_used |= 1 << k;
                uses[k] += 1;
                if leaf.path < PRESENT_SET_BITS {
                    present[usize::from(part.code())] |= 1 << leaf.path;
                }
            }
        }
        if keys_used == 0 {
            return Ok(Record::copy_of(key, value, headers));
        }

        // Lease a DEK for each planned key that selected something.
        let mut used: Vec<UsedKey<'_>> = Vec::with_capacity(keys_used.count_ones() as usize);
        let mut entry_of_key = [usize::MAX; MAX_KEYS_PER_RECORD];
        for (k, pk) in plan.keys.iter().enumerate().filter(|(k, _)| keys_used & (1 << k) != 0) {
            let kms = inner.kms.for_scheme(pk.slot.kek.scheme())?;
            let dek = match &pk.subject {
                None => pk.slot.lease(kms, &inner.limits, &inner.counters)?,
                Some(subject) => {
                    let id = SubjectId::of(&self.subject_of(subject, key, value, headers)?);
                    let store = inner.key_store.as_deref().ok_or_else(|| Error::config("no key store configured"))?;
                    inner.subject_deks.lease(&pk.slot, &id, kms, store, &inner.limits, &inner.counters)?
                }
            };
            dek.use_n(uses[k] + 1)?;
            entry_of_key[k] = used.len();
            used.push((dek, pk));
        }

        // The header: body, then one authenticator per key entry.
        let record_nonce: [u8; GCM_NONCE_LEN] = random_bytes();
        let mut header_bytes = Vec::new();
        let last = if cacheable { plan.last_header.lock().unwrap_or_else(|e| e.into_inner()).clone() } else { None };
        match last.filter(|t| t.describes(&parts, &present, &used)) {
            Some(template) => {
                header_bytes.reserve_exact(template.body.len() + used.len() * TAG_LEN);
                header_bytes.extend_from_slice(&template.body);
                header::set_record_nonce(&mut header_bytes, &record_nonce);
            }
            None => {
                let entries: Vec<KeyEntry<'_>> = plan
                    .keys
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| keys_used & (1 << k) != 0)
                    .zip(&used)
                    .map(|((k, pk), (dek, _))| KeyEntry {
                        algorithm: pk.slot.algorithm,
                        dek_id: *dek.dek.id(),
                        kek: pk.slot.kek.as_str(),
                        kek_version: &dek.kek_version,
                        dek: if dek.in_store { DekLocation::KeyStore } else { DekLocation::Inline(&dek.wrapped) },
                        fields: header_fields(&parts, k),
                    })
                    .collect();
                header::write_body(
                    &mut header_bytes,
                    &record_nonce,
                    inner.policy.id(),
                    inner.policy.revision(),
                    &entries,
                );
                if cacheable {
                    let mut plans = [None, None];
                    for (part, _, part_plan, _) in &parts {
                        plans[usize::from(part.code())] = Some(part_plan.clone());
                    }
                    let deks = used.iter().map(|(dek, _)| *dek.dek.id()).collect();
                    let template = HeaderTemplate { plans, present, deks, body: header_bytes.clone() };
                    *plan.last_header.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(template));
                }
            }
        }
        let mut tags = Vec::with_capacity(used.len());
        for (dek, _) in &used {
            tags.push(dek.dek.header_tag(&record_nonce, &header_bytes)?);
        }
        for tag in &tags {
            header_bytes.extend_from_slice(tag);
        }

        // The fields.
        let mut aad = Vec::with_capacity(128);
        let mut sealed = Vec::with_capacity(128);
        let mut text = Vec::with_capacity(128);
        let mut fields = 0u64;
        let mut outputs: [Option<Vec<u8>>; 2] = [None, None];
        for (part, located, part_plan, scan) in &parts {
            if scan.leaves().is_empty() {
                continue;
            }
            let payload = scan.write(&mut |leaf, at, emit| {
                let e = entry_of_key[part_plan.owners[leaf.path]];
                let dek = &used[e].0.dek;
                field_aad(&mut aad, dek, &tags[e], *part, part_plan.paths[leaf.path].as_str(), at);
                seal_leaf(dek, &aad, leaf, &mut sealed, &mut text, emit)?;
                fields += 1;
                Ok(())
            })?;
            outputs[usize::from(part.code())] = Some(framed(located.prefix, payload));
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
        let read = self.read_header(topic, header_bytes)?;
        let (plan, record_nonce, body, tags) = (&read.plan, &read.record_nonce, read.body, &read.tags);

        // Per key entry: the DEK if this consumer may see any of its fields and can have it,
        // else why not.
        let mut deks: Vec<std::result::Result<Arc<Dek>, Error>> = Vec::with_capacity(plan.keys.len());
        for (e, entry) in plan.keys.iter().enumerate() {
            deks.push(if plan.allowed[e].contains(&true) {
                self.dek_for(record_nonce, body, entry, &tags[e])?
            } else {
                Err(Error::new(ErrorKind::AccessDenied, "the profile lists none of its fields"))
            });
        }

        // Paths are interpreted only after the header authenticated (above).
        let fallback = inner.profile.as_ref().map_or(&Fallback::Ciphertext, |p| &p.otherwise);
        let profile_name = inner.profile.as_ref().map_or("", |p| p.name.as_str());
        let mut ciphertext_left = false;
        let (mut decrypted, mut withheld) = (0u64, 0u64);
        let mut aad = Vec::with_capacity(128);
        let mut scratch = Scratch::default();
        let mut outputs: [Option<Vec<u8>>; 2] = [None, None];
        for part in PARTS {
            let (paths, owners) = &plan.parts[usize::from(part.code())];
            if paths.is_empty() {
                continue;
            }
            let bytes = if part == Part::Key { key } else { value };
            let bytes = bytes.ok_or_else(|| {
                Error::record(format!("header lists fields of the {}, but the record has none", part_name(part)))
            })?;
            let located = self.locate(part, bytes, headers)?;
            let scanner = self.header_scanner(part, &located.shape, paths)?;
            let scan = scanner.scan(located.payload, part_name(part))?;
            // The header lists only paths that selected a value when the record was encrypted:
            // one that selects nothing now means a field was renamed, removed or nulled.
            let mut found = [false; PRESENT_SET_BITS];
            let mut found_more = vec![false; paths.len().saturating_sub(PRESENT_SET_BITS)];
            for leaf in scan.leaves() {
                match found.get_mut(leaf.path) {
                    Some(f) => *f = true,
                    None => found_more[leaf.path - PRESENT_SET_BITS] = true,
                }
            }
            let all_found = found.iter().take(paths.len()).chain(&found_more).position(|f| !f);
            if let Some(missing) = all_found {
                return Err(Error::crypto(format!(
                    "encrypted field {} of the {} is missing: the record was altered",
                    paths[missing],
                    part_name(part)
                )));
            }
            let withheld_before = withheld;
            let payload = scan.write(&mut |leaf, at, emit| {
                let (e, f) = owners[leaf.path];
                match &deks[e] {
                    Ok(dek) if plan.allowed[e][f] => {
                        field_aad(&mut aad, dek, &tags[e], part, &paths[leaf.path], at);
                        open_leaf(dek, &aad, leaf, at, &mut scratch, emit)?;
                        decrypted += 1;
                    }
                    unavailable => {
                        withheld += 1;
                        match fallback {
                            Fallback::Ciphertext => {
                                ciphertext_left = true;
                                emit.keep()?;
                            }
                            Fallback::Null => emit.null()?,
                            Fallback::Mask(mask) => emit.text(mask)?,
                            Fallback::Error => {
                                let field = &paths[leaf.path];
                                return Err(match unavailable {
                                    Err(why) => Error::new(
                                        why.kind(),
                                        format!(
                                            "cannot decrypt field {field} (profile {profile_name:?}): {}",
                                            why.message()
                                        ),
                                    ),
                                    Ok(_) => Error::new(
                                        ErrorKind::AccessDenied,
                                        format!("profile {profile_name:?} does not list field {field}"),
                                    ),
                                });
                            }
                        }
                    }
                }
                Ok(())
            })?;
            // Only a fully decrypted part is its writer's plaintext again (see
            // `CodecBuilder::validate_json_schema`).
            if inner.validate_json_schema && withheld == withheld_before {
                if let Some(schema) = self.compiled(&located.shape)? {
                    schema.validate(&payload, part_name(part))?;
                }
            }
            outputs[usize::from(part.code())] = Some(framed(located.prefix, payload));
        }

        let [value_out, key_out] = outputs;
        let out = Record::with_parts(key_out, key, value_out, value, headers, !ciphertext_left);
        inner.counters.records_decrypted.fetch_add(1, Ordering::Relaxed);
        inner.counters.fields_decrypted.fetch_add(decrypted, Ordering::Relaxed);
        inner.counters.fields_withheld.fetch_add(withheld, Ordering::Relaxed);
        Ok(out)
    }

    /// Parses a fieldcrypt header into what decryption needs. Consecutive records usually carry
    /// the same header but for the record nonce and the authenticators; the last one read is
    /// reused then, so its paths, access and scanners are worked out once. Nothing in it is
    /// trusted before [`Codec::dek_for`] authenticates this record's header.
    fn read_header<'h>(&self, topic: &str, header_bytes: &'h [u8]) -> Result<ReadHeader<'h>> {
        let last = self.0.last_read_header.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(plan) = last.filter(|p| p.topic == topic) {
            if let Some((record_nonce, body, tags)) = plan.same_header(header_bytes) {
                return Ok(ReadHeader { plan, record_nonce, body, tags });
            }
        }
        let env = header::parse(header_bytes)?;
        let profile = self.0.profile.as_ref();
        let mut parts: [HeaderPart; 2] = Default::default();
        for (e, entry) in env.keys.iter().enumerate() {
            for (f, (part, path)) in entry.fields.iter().enumerate() {
                let (paths, owners) = &mut parts[usize::from(part.code())];
                paths.push(path.to_string());
                owners.push((e, f));
            }
        }
        let plan = Arc::new(HeaderPlan {
            topic: topic.to_string(),
            body: env.body.to_vec(),
            allowed: env
                .keys
                .iter()
                .map(|k| {
                    k.fields.iter().map(|(part, path)| profile.is_none_or(|p| p.allows(topic, *part, path))).collect()
                })
                .collect(),
            keys: env.keys.iter().map(OwnedKeyEntry::from).collect(),
            parts,
        });
        *self.0.last_read_header.lock().unwrap_or_else(|e| e.into_inner()) = Some(plan.clone());
        Ok(ReadHeader { plan, record_nonce: env.record_nonce, body: env.body, tags: env.tags })
    }

    /// The DEK of a header key entry, checked against the header authenticator. `None` when this
    /// consumer has no access to the KEK (unknown key, or no KMS client for its scheme).
    fn dek_for(
        &self,
        record_nonce: &[u8; GCM_NONCE_LEN],
        body: &[u8],
        entry: &OwnedKeyEntry,
        tag: &[u8; TAG_LEN],
    ) -> Result<std::result::Result<Arc<Dek>, Error>> {
        let inner = &*self.0;
        // A key held by reference is looked up in the store before any cache: once its subject
        // is shredded, no cached copy may decrypt another record.
        let stored = match &entry.wrapped {
            Some(_) => None,
            None => match self.stored_dek(entry)? {
                Ok(stored) => Some(stored),
                Err(unavailable) => return Ok(Err(unavailable)),
            },
        };
        let mut cached_dek = inner.cache.get(&entry.dek_id, &entry.kek, &entry.kek_version);
        // One KMS call per DEK even when threads miss together: a thread that misses waits for
        // any unwrap in progress in its stripe, then looks again. Held until the key is cached.
        let mut _unwrapping = None;
        if cached_dek.is_none() {
            let stripe = &inner.unwrap_locks[usize::from(entry.dek_id[0]) % inner.unwrap_locks.len()];
            _unwrapping = Some(stripe.lock().unwrap_or_else(|e| e.into_inner()));
            cached_dek = inner.cache.get(&entry.dek_id, &entry.kek, &entry.kek_version);
        }
        let cached = cached_dek.is_some();
        if !cached {
            if let Some(why) = inner.cache.denied(&entry.dek_id, &entry.kek, &entry.kek_version) {
                inner.counters.kms_denials_cached.fetch_add(1, Ordering::Relaxed);
                return Ok(Err(why));
            }
        }
        let dek = match cached_dek {
            Some(dek) => {
                inner.counters.dek_cache_hits.fetch_add(1, Ordering::Relaxed);
                dek
            }
            None => {
                inner.counters.dek_cache_misses.fetch_add(1, Ordering::Relaxed);
                let unwrapped = match &stored {
                    Some(d) => self.unwrap_dek(&entry.as_entry(), &d.kek_version, &d.wrapped),
                    None => self.unwrap_dek(
                        &entry.as_entry(),
                        &entry.kek_version,
                        entry.wrapped.as_deref().unwrap_or_default(),
                    ),
                };
                match unwrapped {
                    Ok(dek) => dek,
                    Err(e)
                        if matches!(e.kind(), ErrorKind::KeyNotFound | ErrorKind::AccessDenied | ErrorKind::Config) =>
                    {
                        inner.cache.deny(&entry.dek_id, &entry.kek, &entry.kek_version, &e);
                        audit::emit(AuditEvent::DecryptionDenied {
                            kek: entry.kek.clone(),
                            dek_id: hex(&entry.dek_id),
                            reason: e.to_string(),
                        });
                        return Ok(Err(e));
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        if !ct_eq(&dek.header_tag(record_nonce, body)?, tag) {
            return Err(Error::crypto(format!(
                "fieldcrypt header does not authenticate under data key {}",
                hex(&entry.dek_id)
            )));
        }
        if !cached {
            // Cached only once the header proved the key genuine, so a tampered header can
            // neither evict nor replace a good entry.
            inner.cache.insert(&entry.kek, &entry.kek_version, dek.clone());
        }
        Ok(Ok(dek))
    }

    /// A key held by reference, as the key store has it; or why it cannot be had.
    fn stored_dek(&self, entry: &OwnedKeyEntry) -> Result<std::result::Result<crate::keystore::StoredDek, Error>> {
        let id = hex(&entry.dek_id);
        let Some(store) = self.0.key_store.as_deref() else {
            return Ok(Err(Error::new(
                ErrorKind::KeyNotFound,
                format!("data key {id} is held in a key store, and none is configured"),
            )));
        };
        Ok(match store.lookup(&entry.dek_id)? {
            KeyLookup::Found(d) if d.kek == entry.kek && d.algorithm == entry.algorithm => Ok(d),
            KeyLookup::Found(_) => {
                return Err(Error::crypto(format!("the header and the key store disagree about data key {id}")))
            }
            KeyLookup::Shredded => Err(Error::new(ErrorKind::Shredded, format!("data key {id} was shredded"))),
            KeyLookup::Unknown => {
                Err(Error::new(ErrorKind::KeyNotFound, format!("data key {id} is not in the key store")))
            }
        })
    }

    /// Unwraps a DEK with the KMS of its KEK (`wrapped` from the header or the key store).
    fn unwrap_dek(&self, entry: &KeyEntry<'_>, kek_version: &str, wrapped: &[u8]) -> Result<Arc<Dek>> {
        let inner = &*self.0;
        let kek = KekUri::parse(entry.kek).map_err(|e| Error::format(format!("header KEK: {e}")))?;
        let kms = inner.kms.for_scheme(kek.scheme())?;
        inner.counters.kms_unwrap_calls.fetch_add(1, Ordering::Relaxed);
        let ctx = WrapContext { dek_id: &entry.dek_id, algorithm: entry.algorithm };
        let key = kms.unwrap(&kek, kek_version, wrapped, &ctx).inspect_err(|_| {
            inner.counters.kms_errors.fetch_add(1, Ordering::Relaxed);
        })?;
        Ok(Arc::new(Dek::new(entry.dek_id, entry.algorithm, &key)?))
    }
}

/// The `(part, path)` pairs the header entry of planned key `k` lists: each path of the key that
/// selected a value in this record, once, in policy order.
fn header_fields<'p>(parts: &'p [ScannedPart<'_>], k: usize) -> Vec<(Part, &'p str)> {
    let mut selected: Vec<((usize, usize), Part, &str)> = Vec::new();
    for (part, _, part_plan, scan) in parts {
        let mut seen = vec![false; part_plan.paths.len()];
        for leaf in scan.leaves().iter().filter(|l| part_plan.owners[l.path] == k) {
            if !std::mem::replace(&mut seen[leaf.path], true) {
                selected.push((part_plan.order[leaf.path], *part, part_plan.paths[leaf.path].as_str()));
            }
        }
    }
    selected.sort_by_key(|(order, part, _)| (*order, part.code()));
    selected.into_iter().map(|(_, part, path)| (part, path)).collect()
}

/// The framing prefix followed by the new payload.
fn framed(prefix: &[u8], payload: Vec<u8>) -> Vec<u8> {
    if prefix.is_empty() {
        return payload;
    }
    let mut out = Vec::with_capacity(prefix.len() + payload.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(&payload);
    out
}

/// Encrypts one selected value and emits its ciphertext: raw in a bytes field, as standard
/// Base64 text anywhere else.
fn seal_leaf(
    dek: &Dek,
    aad: &[u8],
    leaf: &Leaf<'_>,
    sealed: &mut Vec<u8>,
    text: &mut Vec<u8>,
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
        // Into a reused buffer: `encode_string` goes through a chunked encoder that zeroes a
        // kilobyte of scratch per call.
        text.resize(base64::encoded_len(sealed.len(), true).expect("ciphertext length fits"), 0);
        let n = TEXT_ENCODING.encode_slice(&sealed[..], text).expect("buffer sized by encoded_len");
        emit.text(std::str::from_utf8(&text[..n]).expect("Base64 is ASCII"))
    }
}

/// Buffers reused across the fields of a record: the decoded ciphertext and the plaintext.
#[derive(Default)]
struct Scratch {
    sealed: Vec<u8>,
    opened: Vec<u8>,
}

/// Decrypts one selected value and emits its plaintext, restored to its original type.
fn open_leaf(
    dek: &Dek,
    aad: &[u8],
    leaf: &Leaf<'_>,
    at: &str,
    scratch: &mut Scratch,
    emit: &mut dyn Emit,
) -> Result<()> {
    let Scratch { sealed, opened } = scratch;
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
    let (type_byte, plain) = dek.open(aad, ciphertext, opened)?;
    let bad = |what: &str| Error::record(format!("decrypted field {at} {what}"));
    match type_byte {
        PLAIN_STRING => emit.text(std::str::from_utf8(plain).map_err(|_| bad("is not UTF-8"))?),
        PLAIN_JSON => {
            let s = std::str::from_utf8(plain).ok().filter(|s| json::check_json_text(s));
            emit.json(s.ok_or_else(|| bad("is not a JSON value"))?)
        }
        PLAIN_BYTES => emit.bytes(plain),
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
