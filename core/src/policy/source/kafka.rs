//! The policy on a compacted Kafka topic (default [`DEFAULT_POLICY_TOPIC`]): record key = policy
//! id, value = the signed envelope. Compaction keeps the newest record per policy id for ever,
//! so a new application reads the current policy however old it is; applications need nothing
//! but the brokers they already use.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{Fetched, PolicySource, MAX_POLICY_DOCUMENT};
use crate::error::{Error, ErrorKind, Result};
use crate::kafka::{block_on, client_creation_error};
use crate::policy::signed::SignedPolicy;
use crate::policy::Policy;

/// The topic policies are published to unless configured otherwise.
pub const DEFAULT_POLICY_TOPIC: &str = "_fieldcrypt_policy";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

fn kafka_error(what: &str, e: impl fmt::Display) -> Error {
    Error::retryable(ErrorKind::Policy, format!("policy topic: {what}: {e}"))
}

// ---- reading -------------------------------------------------------------------------------------

/// Reads one policy id's newest record from the policy topic. Keeps one consumer (assigned to
/// every partition from the beginning, no consumer group offsets) and reads on from where the
/// last fetch stopped, up to the end the brokers report at each fetch.
pub struct KafkaTopicSource {
    topic: String,
    policy_id: String,
    timeout: Duration,
    reader: Mutex<Reader>,
}

struct Reader {
    consumer: BaseConsumer,
    /// Partition → next offset to read, once assigned.
    next: Option<HashMap<i32, i64>>,
    /// Whether a record for the policy id was ever seen.
    seen: bool,
}

impl fmt::Debug for KafkaTopicSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaTopicSource")
            .field("topic", &self.topic)
            .field("policy_id", &self.policy_id)
            .finish_non_exhaustive()
    }
}

impl KafkaTopicSource {
    /// Reads policy `policy_id` with the connection settings of `config` (`bootstrap.servers`,
    /// security settings); consumer settings fieldcrypt relies on are set over it.
    pub fn new(config: &ClientConfig, policy_id: &str) -> Result<KafkaTopicSource> {
        if policy_id.is_empty() || policy_id.len() > 255 {
            return Err(Error::config("policy id must be 1 to 255 bytes"));
        }
        let consumer: BaseConsumer = config
            .clone()
            // A group id routes messages to the consumer queue; with `assign` it joins no group
            // and, without commits, stores no offsets.
            .set("group.id", "fieldcrypt-policy-reader")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(|e| Error::config(format!("policy topic consumer: {}", client_creation_error(&e))))?;
        Ok(KafkaTopicSource {
            topic: DEFAULT_POLICY_TOPIC.to_string(),
            policy_id: policy_id.to_string(),
            timeout: DEFAULT_TIMEOUT,
            reader: Mutex::new(Reader { consumer, next: None, seen: false }),
        })
    }

    /// [`KafkaTopicSource::new`] with only `bootstrap.servers` set (no TLS or SASL).
    pub fn from_bootstrap(bootstrap: &str, policy_id: &str) -> Result<KafkaTopicSource> {
        KafkaTopicSource::new(ClientConfig::new().set("bootstrap.servers", bootstrap), policy_id)
    }

    /// Reads `topic` instead of [`DEFAULT_POLICY_TOPIC`].
    pub fn topic(mut self, topic: &str) -> KafkaTopicSource {
        self.topic = topic.to_string();
        self
    }

    /// How long one fetch may take to reach the end of the topic (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> KafkaTopicSource {
        self.timeout = timeout;
        self
    }

    /// Assigns every partition of the topic from its beginning, on the first fetch (so the
    /// source can be made before the topic exists).
    fn assign(&self, reader: &mut Reader) -> Result<()> {
        if reader.next.is_some() {
            return Ok(());
        }
        let metadata =
            reader.consumer.fetch_metadata(Some(&self.topic), self.timeout).map_err(|e| kafka_error("metadata", e))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(Error::retryable(
                ErrorKind::Policy,
                format!("policy topic {:?} does not exist (publish a policy first)", self.topic),
            ));
        }
        let mut assignment = TopicPartitionList::new();
        for p in &partitions {
            assignment
                .add_partition_offset(&self.topic, *p, Offset::Beginning)
                .map_err(|e| kafka_error("assign", e))?;
        }
        reader.consumer.assign(&assignment).map_err(|e| kafka_error("assign", e))?;
        reader.next = Some(partitions.into_iter().map(|p| (p, 0)).collect());
        Ok(())
    }

    /// Reads up to the current end of every partition; the newest record for the policy id
    /// among those read, if any: `Some(None)` for a tombstone.
    fn read_to_end(&self, reader: &mut Reader) -> Result<Option<Option<Vec<u8>>>> {
        let deadline = Instant::now() + self.timeout;
        let next = reader.next.as_mut().expect("assigned before reading");
        let mut pending = Vec::new();
        for (&partition, &at) in next.iter() {
            let (_, high) = reader
                .consumer
                .fetch_watermarks(&self.topic, partition, self.timeout)
                .map_err(|e| kafka_error("watermarks", e))?;
            if at > high {
                // The topic was deleted and created again: read the new one from its start.
                reader.next = None;
                return Err(kafka_error(
                    "reading",
                    "the topic ends before the last offset read (recreated?); reading it again from the beginning",
                ));
            }
            if at < high {
                pending.push((partition, high));
            }
        }
        // Per partition, the newest matching record read: offsets order records within a
        // partition. Records of one key all go to one partition (the publisher keys them);
        // timestamps only decide between partitions if someone produced elsewhere.
        let mut newest: HashMap<i32, (i64, Option<Vec<u8>>)> = HashMap::new();
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(kafka_error("reading to the end", format!("timed out after {:?}", self.timeout)));
            }
            match reader.consumer.poll(left.min(Duration::from_millis(500))) {
                None => {}
                // An end-of-partition event may be left over from the last fetch (which stopped
                // at the last offset before the event arrived): trust it only if the consumer's
                // position, which also moves past transaction markers, reached the end.
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    let position =
                        reader.consumer.position().ok().and_then(|list| {
                            list.find_partition(&self.topic, partition).and_then(|p| p.offset().to_raw())
                        });
                    pending.retain(|(p, high)| *p != partition || position.is_none_or(|at| at < *high));
                }
                Some(Err(e)) => return Err(kafka_error("reading", e)),
                Some(Ok(m)) => {
                    next.insert(m.partition(), m.offset() + 1);
                    pending.retain(|(p, high)| *p != m.partition() || m.offset() + 1 < *high);
                    if m.key() != Some(self.policy_id.as_bytes()) {
                        continue;
                    }
                    if m.payload().is_some_and(|v| v.len() > MAX_POLICY_DOCUMENT) {
                        return Err(Error::policy(format!(
                            "policy topic {:?}: the record for {:?} is larger than {MAX_POLICY_DOCUMENT} bytes",
                            self.topic, self.policy_id
                        )));
                    }
                    let timestamp = m.timestamp().to_millis().unwrap_or(0);
                    newest.insert(m.partition(), (timestamp, m.payload().map(<[u8]>::to_vec)));
                }
            }
        }
        Ok(newest.into_values().max_by_key(|(timestamp, _)| *timestamp).map(|(_, value)| value))
    }
}

impl PolicySource for KafkaTopicSource {
    fn fetch(&self) -> Result<Fetched> {
        let mut reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        self.assign(&mut reader)?;
        match self.read_to_end(&mut reader)? {
            Some(Some(document)) => {
                reader.seen = true;
                Ok(Fetched::New(document))
            }
            Some(None) => {
                reader.seen = true;
                Err(Error::policy(format!(
                    "policy {:?} was withdrawn from topic {:?} (tombstone); the current policy stays in force",
                    self.policy_id, self.topic
                )))
            }
            None if reader.seen => Ok(Fetched::Unchanged),
            None => Err(Error::retryable(
                ErrorKind::Policy,
                format!("policy topic {:?} holds no policy {:?}", self.topic, self.policy_id),
            )),
        }
    }

    fn describe(&self) -> String {
        format!("kafka topic {} (policy {})", self.topic, self.policy_id)
    }
}

// ---- publishing ----------------------------------------------------------------------------------

/// Publishes signed policies to the policy topic (for `fieldcrypt policy publish`), creating
/// the topic, compacted, when it is missing.
pub struct PolicyPublisher {
    config: ClientConfig,
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
}

impl fmt::Debug for PolicyPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyPublisher").field("topic", &self.topic).finish_non_exhaustive()
    }
}

/// Where a policy was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub policy_id: String,
    pub revision: u64,
}

impl PolicyPublisher {
    pub fn new(config: &ClientConfig) -> Result<PolicyPublisher> {
        let producer: FutureProducer = config
            .clone()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .create()
            .map_err(|e| Error::config(format!("policy topic producer: {}", client_creation_error(&e))))?;
        Ok(PolicyPublisher {
            config: config.clone(),
            producer,
            topic: DEFAULT_POLICY_TOPIC.to_string(),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// [`PolicyPublisher::new`] with only `bootstrap.servers` set (no TLS or SASL).
    pub fn from_bootstrap(bootstrap: &str) -> Result<PolicyPublisher> {
        PolicyPublisher::new(ClientConfig::new().set("bootstrap.servers", bootstrap))
    }

    /// Publishes to `topic` instead of [`DEFAULT_POLICY_TOPIC`].
    pub fn topic(mut self, topic: &str) -> PolicyPublisher {
        self.topic = topic.to_string();
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> PolicyPublisher {
        self.timeout = timeout;
        self
    }

    /// Creates the topic (one partition, `cleanup.policy=compact`, the brokers' default
    /// replication) if it is missing; fails if it exists without compaction, where retention
    /// would one day delete the only record of a policy.
    pub fn ensure_topic(&self) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self
            .config
            .create()
            .map_err(|e| Error::config(format!("policy topic admin client: {}", client_creation_error(&e))))?;
        let options = AdminOptions::new().operation_timeout(Some(self.timeout)).request_timeout(Some(self.timeout));
        let new = NewTopic::new(&self.topic, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
        for result in block_on(admin.create_topics([&new], &options)).map_err(|e| kafka_error("create topic", e))? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(kafka_error("create topic", code)),
            }
        }
        let described = block_on(admin.describe_configs([&ResourceSpecifier::Topic(&self.topic)], &options))
            .map_err(|e| kafka_error("describe topic", e))?;
        for resource in described {
            let resource = resource.map_err(|code| kafka_error("describe topic", code))?;
            let cleanup = resource.get("cleanup.policy").and_then(|e| e.value.as_deref()).unwrap_or("");
            if !cleanup.split(',').any(|p| p.trim() == "compact") {
                return Err(Error::config(format!(
                    "policy topic {:?} exists with cleanup.policy={cleanup:?}; it must be compacted \
                     (cleanup.policy=compact) or retention would delete published policies",
                    self.topic
                )));
            }
        }
        Ok(())
    }

    /// Publishes `signed` under its policy id (after [`PolicyPublisher::ensure_topic`]). The
    /// envelope is not verified here: applications verify what they read.
    pub fn publish(&self, signed: &SignedPolicy) -> Result<Published> {
        if signed.signatures().is_empty() {
            return Err(Error::policy("refusing to publish a policy without signatures"));
        }
        let policy = Policy::from_json(signed.policy_text())?;
        self.ensure_topic()?;
        let document = signed.to_json();
        let record: FutureRecord<'_, str, str> = FutureRecord::to(&self.topic).key(policy.id()).payload(&document);
        let delivery = block_on(self.producer.send(record, self.timeout)).map_err(|(e, _)| kafka_error("send", e))?;
        Ok(Published {
            topic: self.topic.clone(),
            partition: delivery.partition,
            offset: delivery.offset,
            policy_id: policy.id().to_string(),
            revision: policy.revision(),
        })
    }
}
