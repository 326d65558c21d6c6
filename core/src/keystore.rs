//! Key stores: data keys held by reference (docs/FORMAT.md, `dek_location` 0x01) rather than
//! inline in each record's header, so deleting one makes every record under it unreadable —
//! crypto-shredding (docs/SHREDDING.md). A policy rule with a `subject` gives each data subject
//! (a customer, say) its own DEK, kept here under the subject's id; `shred(subject)` deletes the
//! subject's DEKs and leaves a marker, so consumers report `shredded` rather than a missing key.
//!
//! Two stores: [`FileKeyStore`] (a JSON-lines file, for tests and single hosts) and, with the
//! `kafka` feature, [`KafkaKeyStore`] (a compacted topic, default `_fieldcrypt_keys`).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::crypto::{hex, Algorithm, DekId, DEK_ID_LEN};
use crate::error::{Error, ErrorKind, Result};

/// The id a subject is stored under: a hash of its value, so the store's keys are not customer
/// ids. (A hash of a guessable value is not secret; it only keeps the raw value out of the key
/// topic and its logs.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SubjectId(String);

impl SubjectId {
    pub fn of(subject: &str) -> SubjectId {
        let digest = Sha256::new().chain_update(b"fieldcrypt subject v1\0").chain_update(subject.as_bytes()).finalize();
        SubjectId(hex(&digest[..16]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A data key as a store holds it: wrapped by its KEK, never in the clear.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDek {
    #[serde(with = "hex_id")]
    pub dek_id: DekId,
    pub subject: SubjectId,
    pub kek: String,
    pub kek_version: String,
    #[serde(with = "algorithm_name")]
    pub algorithm: Algorithm,
    #[serde(with = "base64_bytes")]
    pub wrapped: Vec<u8>,
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
}

impl fmt::Debug for StoredDek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredDek")
            .field("dek_id", &hex(&self.dek_id))
            .field("subject", &self.subject)
            .field("kek", &self.kek)
            .field("kek_version", &self.kek_version)
            .field("algorithm", &self.algorithm.name())
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What a store knows about a DEK id.
#[derive(Debug, Clone)]
pub enum KeyLookup {
    Found(StoredDek),
    /// Its subject was shredded: the key is gone for good.
    Shredded,
    /// Never seen (or removed without a shred marker).
    Unknown,
}

/// Shreds a data subject in `store` (see [`KeyStore::shred`]) and records the audit event:
/// the one way every caller shreds, the codec and the CLI alike.
pub fn shred(store: &dyn KeyStore, subject: &SubjectId) -> Result<usize> {
    let keys = store.shred(subject)?;
    crate::audit::emit(crate::audit::AuditEvent::SubjectShredded { subject: subject.to_string(), keys });
    Ok(keys)
}

/// Where data keys held by reference live. Implementations are shared by every codec of a
/// process and must be cheap to query: the codec asks on every record that uses a stored key,
/// so that a shred takes effect without waiting for any cache.
pub trait KeyStore: Send + Sync + fmt::Debug {
    /// The DEK with this id.
    fn lookup(&self, dek_id: &DekId) -> Result<KeyLookup>;
    /// The newest DEK of `subject` under `kek` and `algorithm`, for a producer to reuse.
    fn current(&self, subject: &SubjectId, kek: &str, algorithm: Algorithm) -> Result<Option<StoredDek>>;
    /// Stores a new DEK; returns once it is durable (a producer uses it only then).
    fn put(&self, dek: &StoredDek) -> Result<()>;
    /// Deletes every DEK of `subject` and records that it was shredded; returns how many DEKs.
    fn shred(&self, subject: &SubjectId) -> Result<usize>;
    /// Every DEK held (wrapped), for listing.
    fn list(&self) -> Result<Vec<StoredDek>>;
}

/// The in-memory view every store keeps: DEKs by id, the ids its shreds removed (so they read
/// as shredded, not unknown), and shredded subjects.
#[derive(Default)]
struct View {
    deks: HashMap<DekId, StoredDek>,
    /// The ids in `deks` per subject: a producer looks its subject up on every new key, so this
    /// must not be a scan of every key.
    by_subject: HashMap<SubjectId, Vec<DekId>>,
    gone: HashSet<DekId>,
    /// Per shredded subject: when, and every DEK id it ever lost (kept in the shred marker, so
    /// the ids still read as shredded after compaction removed their tombstones).
    shredded: HashMap<SubjectId, Shredded>,
}

/// A subject's shred marker.
#[derive(Clone, Default, Serialize, Deserialize)]
struct Shredded {
    at_ms: u64,
    #[serde(with = "hex_ids")]
    dek_ids: Vec<DekId>,
}

/// One change to a store, as the file holds it (the topic keys the same changes by id).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Change {
    Dek(StoredDek),
    Shred {
        subject: SubjectId,
        #[serde(flatten)]
        marker: Shredded,
    },
}

impl View {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Dek(d) => {
                let id = d.dek_id;
                self.gone.remove(&id);
                let subject = d.subject.clone();
                if let Some(old) = self.deks.insert(id, d) {
                    self.unindex(&old.subject, &id);
                }
                self.by_subject.entry(subject).or_default().push(id);
            }
            Change::Shred { subject, marker } => {
                for id in self.of_subject(&subject).iter().chain(&marker.dek_ids) {
                    self.remove(id);
                }
                self.shredded.insert(subject, marker);
            }
        }
    }

    fn remove(&mut self, id: &DekId) {
        if let Some(d) = self.deks.remove(id) {
            self.unindex(&d.subject, id);
        }
        self.gone.insert(*id);
    }

    fn unindex(&mut self, subject: &SubjectId, id: &DekId) {
        if let Some(ids) = self.by_subject.get_mut(subject) {
            ids.retain(|x| x != id);
            if ids.is_empty() {
                self.by_subject.remove(subject);
            }
        }
    }

    fn of_subject(&self, subject: &SubjectId) -> Vec<DekId> {
        self.by_subject.get(subject).cloned().unwrap_or_default()
    }

    /// The marker for shredding `subject` now: its current DEKs and every one shredded before.
    fn shred_marker(&self, subject: &SubjectId) -> Shredded {
        let mut dek_ids = self.of_subject(subject);
        if let Some(before) = self.shredded.get(subject) {
            dek_ids.extend(before.dek_ids.iter().filter(|id| !dek_ids.contains(id)).copied().collect::<Vec<_>>());
        }
        Shredded { at_ms: now_ms(), dek_ids }
    }

    fn lookup(&self, dek_id: &DekId) -> KeyLookup {
        match self.deks.get(dek_id) {
            Some(d) => KeyLookup::Found(d.clone()),
            None if self.gone.contains(dek_id) => KeyLookup::Shredded,
            None => KeyLookup::Unknown,
        }
    }

    fn current(&self, subject: &SubjectId, kek: &str, algorithm: Algorithm) -> Option<StoredDek> {
        self.by_subject
            .get(subject)?
            .iter()
            .filter_map(|id| self.deks.get(id))
            .filter(|d| d.kek == kek && d.algorithm == algorithm)
            .max_by_key(|d| (d.created_ms, d.dek_id))
            .cloned()
    }

    fn list(&self) -> Vec<StoredDek> {
        let mut all: Vec<StoredDek> = self.deks.values().cloned().collect();
        all.sort_by_key(|d| (d.created_ms, d.dek_id));
        all
    }
}

/// A key store in a JSON-lines file: every change appended, the file re-read when another
/// process changed it (checked at most every `refresh`). For tests and single hosts; a fleet
/// uses [`KafkaKeyStore`].
pub struct FileKeyStore {
    path: PathBuf,
    refresh: Duration,
    state: RwLock<FileState>,
    write: Mutex<()>,
}

#[derive(Default)]
struct FileState {
    view: View,
    read_len: u64,
    checked: Option<Instant>,
}

impl fmt::Debug for FileKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileKeyStore").field("path", &self.path).finish_non_exhaustive()
    }
}

fn store_error(what: impl fmt::Display) -> Error {
    Error::retryable(ErrorKind::Kms, format!("key store: {what}"))
}

impl FileKeyStore {
    /// Opens (or creates) the store at `path`; changes by other processes are seen within
    /// `refresh`.
    pub fn open(path: impl AsRef<Path>, refresh: Duration) -> Result<FileKeyStore> {
        let path = path.as_ref().to_path_buf();
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::config(format!("key store file {}: {e}", path.display())))?;
        let store = FileKeyStore { path, refresh, state: RwLock::new(FileState::default()), write: Mutex::new(()) };
        store.sync(true)?;
        Ok(store)
    }

    /// Reads what was appended since the last read (everything, if the file shrank).
    fn sync(&self, force: bool) -> Result<()> {
        {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            if !force && state.checked.is_some_and(|t| t.elapsed() < self.refresh) {
                return Ok(());
            }
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let io = |e: std::io::Error| store_error(format!("{}: {e}", self.path.display()));
        let mut file = std::fs::File::open(&self.path).map_err(io)?;
        if file.metadata().map_err(io)?.len() < state.read_len {
            *state = FileState::default(); // replaced or truncated: read it all again
        }
        // Only what was appended since the last read.
        let start = state.read_len;
        let mut bytes = Vec::new();
        file.seek(std::io::SeekFrom::Start(start)).and_then(|_| file.read_to_end(&mut bytes)).map_err(io)?;
        // Only whole lines: a writer may be half-way through one.
        let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for (n, line) in bytes[..end].split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let change: Change = serde_json::from_slice(line).map_err(|e| {
                store_error(format!("{}: bad entry after byte {start} (+{n} lines): {e}", self.path.display()))
            })?;
            state.view.apply(change);
        }
        state.read_len = start + end as u64;
        state.checked = Some(Instant::now());
        Ok(())
    }

    fn append(&self, change: &Change) -> Result<()> {
        let _one_writer = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut line = serde_json::to_vec(change).map_err(store_error)?;
        line.push(b'\n');
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| store_error(format!("{}: {e}", self.path.display())))?;
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(|e| store_error(format!("{}: {e}", self.path.display())))?;
        drop(file);
        self.sync(true)
    }
}

impl KeyStore for FileKeyStore {
    fn lookup(&self, dek_id: &DekId) -> Result<KeyLookup> {
        self.sync(false)?;
        let found = self.state.read().unwrap_or_else(|e| e.into_inner()).view.lookup(dek_id);
        if !matches!(found, KeyLookup::Unknown) {
            return Ok(found);
        }
        // A key another process stored after our last read: read the file again, then answer.
        self.sync(true)?;
        Ok(self.state.read().unwrap_or_else(|e| e.into_inner()).view.lookup(dek_id))
    }

    fn current(&self, subject: &SubjectId, kek: &str, algorithm: Algorithm) -> Result<Option<StoredDek>> {
        self.sync(false)?;
        Ok(self.state.read().unwrap_or_else(|e| e.into_inner()).view.current(subject, kek, algorithm))
    }

    fn put(&self, dek: &StoredDek) -> Result<()> {
        self.append(&Change::Dek(dek.clone()))
    }

    fn shred(&self, subject: &SubjectId) -> Result<usize> {
        self.sync(true)?;
        let (n, marker) = {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            (state.view.of_subject(subject).len(), state.view.shred_marker(subject))
        };
        self.append(&Change::Shred { subject: subject.clone(), marker })?;
        Ok(n)
    }

    fn list(&self) -> Result<Vec<StoredDek>> {
        self.sync(true)?;
        Ok(self.state.read().unwrap_or_else(|e| e.into_inner()).view.list())
    }
}

#[cfg(feature = "kafka")]
pub use kafka_store::{KafkaKeyStore, KafkaKeyStoreOptions, DEFAULT_TOPIC as DEFAULT_KEY_TOPIC};

#[cfg(feature = "kafka")]
mod kafka_store {
    //! The key store on a compacted Kafka topic. Record keys: `dek/<dek id hex>` → the stored
    //! DEK (JSON), or a tombstone once shredded; `shred/<subject id>` → `{"at_ms": ...}`, a marker
    //! compaction keeps, so consumers that start after a shred still say `shredded`.

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::thread::JoinHandle;

    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    use crate::kafka::block_on;
    use rdkafka::{Offset, TopicPartitionList};

    use super::*;

    /// The default name of the key topic.
    pub const DEFAULT_TOPIC: &str = "_fieldcrypt_keys";

    struct Shared {
        view: RwLock<View>,
        stop: AtomicBool,
        /// Offsets read so far, per partition.
        positions: RwLock<HashMap<i32, i64>>,
    }

    /// A key store on a compacted topic, read in full at start and followed by a background
    /// thread, so a shred reaches running consumers within about `poll` plus the broker's
    /// latency.
    pub struct KafkaKeyStore {
        topic: String,
        shared: Arc<Shared>,
        /// Each write waits for its own acknowledgement, so concurrent writers (new subjects'
        /// keys made on several threads) neither wait for each other's nor take their errors.
        producer: FutureProducer,
        consumer: Arc<BaseConsumer>,
        reader: Option<JoinHandle<()>>,
        bootstrap: String,
        timeout: Duration,
    }

    impl fmt::Debug for KafkaKeyStore {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("KafkaKeyStore")
                .field("topic", &self.topic)
                .field("bootstrap", &self.bootstrap)
                .finish_non_exhaustive()
        }
    }

    /// A client that cannot be made: its settings are wrong (a configuration error, not worth a
    /// retry).
    fn client_error(what: &str, e: rdkafka::error::KafkaError) -> Error {
        Error::config(format!("key store topic: {what}: {}", crate::kafka::client_creation_error(&e)))
    }

    fn kafka_error(what: &str, e: impl fmt::Display) -> Error {
        Error::retryable(ErrorKind::Kms, format!("key store topic: {what}: {e}"))
    }

    impl KafkaKeyStore {
        /// Connects to `bootstrap` (no TLS or SASL), creates `topic` (compacted) if it is
        /// missing, reads it to its end, and follows it. [`KafkaKeyStore::open_with`] takes
        /// security settings and options.
        pub fn open(bootstrap: &str, topic: &str) -> Result<KafkaKeyStore> {
            let mut config = ClientConfig::new();
            config.set("bootstrap.servers", bootstrap);
            KafkaKeyStore::open_with(&config, &KafkaKeyStoreOptions { topic: topic.to_string(), ..Default::default() })
        }

        /// Opens the store with the connection settings of `config` (`bootstrap.servers`,
        /// `security.protocol`, SASL and TLS properties); settings the store relies on are set
        /// over it.
        pub fn open_with(config: &ClientConfig, options: &KafkaKeyStoreOptions) -> Result<KafkaKeyStore> {
            let KafkaKeyStoreOptions { topic, timeout, create_topic, replication_factor } = options;
            let (topic, timeout) = (topic.as_str(), *timeout);
            if timeout.is_zero() {
                return Err(Error::config("the key store timeout must be greater than zero"));
            }
            if let Some(replication) = create_topic.then_some(*replication_factor) {
                create_compacted(config, topic, replication, timeout)?;
            }
            let bootstrap = config.get("bootstrap.servers").unwrap_or_default();
            let producer: FutureProducer = config
                .clone()
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .set("linger.ms", "0")
                .create()
                .map_err(|e| client_error("producer", e))?;
            let consumer: BaseConsumer = config
                .clone()
                .set("group.id", "fieldcrypt-key-store")
                .set("enable.auto.commit", "false")
                .set("enable.partition.eof", "false")
                .create()
                .map_err(|e| client_error("consumer", e))?;
            let metadata = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| kafka_error("metadata", e))?;
            let partitions: Vec<i32> =
                metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
            if partitions.is_empty() {
                // Missing (create_topic off), or not visible to this client: an empty store would
                // look like one without keys, and a shred would succeed while deleting nothing.
                return Err(Error::config(format!(
                    "key store topic {topic:?} does not exist or is not readable (create_topic is {create_topic})"
                )));
            }
            let mut assignment = TopicPartitionList::new();
            for p in &partitions {
                assignment.add_partition_offset(topic, *p, Offset::Beginning).map_err(|e| kafka_error("assign", e))?;
            }
            consumer.assign(&assignment).map_err(|e| kafka_error("assign", e))?;
            let shared = Arc::new(Shared {
                view: RwLock::new(View::default()),
                stop: AtomicBool::new(false),
                positions: RwLock::new(HashMap::new()),
            });
            let consumer = Arc::new(consumer);
            let follower = consumer.clone();
            let store = KafkaKeyStore {
                topic: topic.to_string(),
                shared: shared.clone(),
                producer,
                consumer: consumer.clone(),
                reader: None,
                bootstrap: bootstrap.to_string(),
                timeout,
            };
            let reader = std::thread::Builder::new()
                .name("fieldcrypt-key-store".into())
                .spawn(move || follow(&follower, &shared))
                .map_err(|e| kafka_error("reader thread", e))?;
            let mut store = store;
            store.reader = Some(reader);
            store.catch_up()?;
            Ok(store)
        }

        /// Waits until the reader reached the end the broker reports now.
        fn catch_up(&self) -> Result<()> {
            let consumer = &self.consumer;
            let deadline = Instant::now() + self.timeout;
            let metadata =
                consumer.fetch_metadata(Some(&self.topic), self.timeout).map_err(|e| kafka_error("metadata", e))?;
            let mut ends = Vec::new();
            for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
                let (_, high) = consumer
                    .fetch_watermarks(&self.topic, p.id(), self.timeout)
                    .map_err(|e| kafka_error("watermarks", e))?;
                ends.push((p.id(), high));
            }
            loop {
                let positions = self.shared.positions.read().unwrap_or_else(|e| e.into_inner()).clone();
                if ends.iter().all(|(p, high)| *high == 0 || positions.get(p).is_some_and(|&at| at + 1 >= *high)) {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(kafka_error("catching up", "timed out"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        fn send(&self, key: &str, value: Option<&[u8]>) -> Result<()> {
            let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic).key(key);
            if let Some(v) = value {
                record = record.payload(v);
            }
            block_on(self.producer.send(record, self.timeout)).map(|_| ()).map_err(|(e, _)| kafka_error("send", e))
        }
    }

    impl Drop for KafkaKeyStore {
        fn drop(&mut self) {
            self.shared.stop.store(true, Ordering::Relaxed);
            if let Some(reader) = self.reader.take() {
                let _ = reader.join();
            }
        }
    }

    /// How a [`KafkaKeyStore`] finds and, if need be, creates its topic.
    #[derive(Debug, Clone)]
    pub struct KafkaKeyStoreOptions {
        /// Default [`DEFAULT_TOPIC`].
        pub topic: String,
        /// How long opening (reading the topic to its end), a write and a catch-up may take.
        /// Default 30 s.
        pub timeout: Duration,
        /// Create the topic, compacted with one partition, when it is missing. Default true;
        /// turn it off where the security team creates topics (and denies applications to).
        pub create_topic: bool,
        /// Replicas of a created topic; -1 (the default) takes the broker's
        /// `default.replication.factor`.
        pub replication_factor: i32,
    }

    impl Default for KafkaKeyStoreOptions {
        fn default() -> Self {
            KafkaKeyStoreOptions {
                topic: DEFAULT_TOPIC.to_string(),
                timeout: Duration::from_secs(30),
                create_topic: true,
                replication_factor: -1,
            }
        }
    }

    fn create_compacted(config: &ClientConfig, topic: &str, replication: i32, timeout: Duration) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = config.create().map_err(|e| client_error("admin", e))?;
        let new = NewTopic::new(topic, 1, TopicReplication::Fixed(replication)).set("cleanup.policy", "compact");
        let options = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
        let done = block_on(admin.create_topics([&new], &options)).map_err(|e| kafka_error("create topic", e))?;
        for result in done {
            match result {
                Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(kafka_error("create topic", code)),
            }
        }
        Ok(())
    }

    fn follow(consumer: &BaseConsumer, shared: &Shared) {
        while !shared.stop.load(Ordering::Relaxed) {
            let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else { continue };
            let key = m.key().and_then(|k| std::str::from_utf8(k).ok()).unwrap_or_default();
            {
                let mut view = shared.view.write().unwrap_or_else(|e| e.into_inner());
                if let Some(id) = key.strip_prefix("dek/") {
                    match (m.payload(), parse_hex_id(id)) {
                        (Some(v), _) => {
                            if let Ok(d) = serde_json::from_slice::<StoredDek>(v) {
                                view.apply(Change::Dek(d));
                            }
                        }
                        (None, Some(id)) => view.remove(&id),
                        (None, None) => {}
                    }
                } else if let Some(subject) = key.strip_prefix("shred/") {
                    let marker =
                        m.payload().and_then(|v| serde_json::from_slice::<Shredded>(v).ok()).unwrap_or_default();
                    view.apply(Change::Shred { subject: SubjectId(subject.to_string()), marker });
                }
            }
            shared.positions.write().unwrap_or_else(|e| e.into_inner()).insert(m.partition(), m.offset());
        }
    }

    impl KeyStore for KafkaKeyStore {
        fn lookup(&self, dek_id: &DekId) -> Result<KeyLookup> {
            let found = self.shared.view.read().unwrap_or_else(|e| e.into_inner()).lookup(dek_id);
            if !matches!(found, KeyLookup::Unknown) {
                return Ok(found);
            }
            // A producer stores a key before the first record under it; a record may still
            // arrive before the key topic's reader saw it. Read up to the end, then answer.
            self.catch_up()?;
            Ok(self.shared.view.read().unwrap_or_else(|e| e.into_inner()).lookup(dek_id))
        }

        fn current(&self, subject: &SubjectId, kek: &str, algorithm: Algorithm) -> Result<Option<StoredDek>> {
            Ok(self.shared.view.read().unwrap_or_else(|e| e.into_inner()).current(subject, kek, algorithm))
        }

        fn put(&self, dek: &StoredDek) -> Result<()> {
            let value = serde_json::to_vec(dek).map_err(|e| kafka_error("encode", e))?;
            self.send(&format!("dek/{}", hex(&dek.dek_id)), Some(&value))?;
            // Read-your-writes: the producer uses the key at once.
            self.shared.view.write().unwrap_or_else(|e| e.into_inner()).apply(Change::Dek(dek.clone()));
            Ok(())
        }

        fn shred(&self, subject: &SubjectId) -> Result<usize> {
            let (ids, marker) = {
                let view = self.shared.view.read().unwrap_or_else(|e| e.into_inner());
                (view.of_subject(subject), view.shred_marker(subject))
            };
            // The marker first: it names the DEKs, so a consumer that sees a tombstone (or,
            // after compaction, none) can already say why.
            self.send(
                &format!("shred/{subject}"),
                Some(&serde_json::to_vec(&marker).map_err(|e| kafka_error("encode", e))?),
            )?;
            for id in &ids {
                self.send(&format!("dek/{}", hex(id)), None)?;
            }
            self.shared
                .view
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .apply(Change::Shred { subject: subject.clone(), marker });
            Ok(ids.len())
        }

        fn list(&self) -> Result<Vec<StoredDek>> {
            Ok(self.shared.view.read().unwrap_or_else(|e| e.into_inner()).list())
        }
    }
}

mod hex_id {
    use super::*;
    pub fn serialize<S: serde::Serializer>(id: &DekId, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&hex(id))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<DekId, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_hex_id(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("dek_id must be {DEK_ID_LEN} bytes in hex")))
    }
}

mod hex_ids {
    use super::*;
    pub fn serialize<S: serde::Serializer>(ids: &[DekId], s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(ids.iter().map(|id| hex(id)))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<DekId>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| super::parse_hex_id(t).ok_or_else(|| serde::de::Error::custom("bad dek id")))
            .collect()
    }
}

/// A DEK id from its hex form.
fn parse_hex_id(text: &str) -> Option<DekId> {
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<_>>()?;
    bytes.try_into().ok()
}

mod algorithm_name {
    use super::*;
    pub fn serialize<S: serde::Serializer>(a: &Algorithm, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(a.name())
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Algorithm, D::Error> {
        let name = String::deserialize(d)?;
        Algorithm::from_name(&name).ok_or_else(|| serde::de::Error::custom("unknown algorithm"))
    }
}

mod base64_bytes {
    use super::*;
    pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(b))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<u8>, D::Error> {
        B64.decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}
