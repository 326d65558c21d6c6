//! Reading a topic for `inspect` and `decrypt --bootstrap`: every partition assigned directly
//! (no consumer group membership, no offset commits), from the beginning or the end.

use std::collections::HashMap;
use std::time::Duration;

use clap::Args;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::fail::Failure;
use crate::progress;

const TIMEOUT: Duration = Duration::from_secs(15);

/// Where to read and when to stop.
#[derive(Args, Debug, Clone)]
pub struct ReadArgs {
    /// Stop after this many records.
    #[arg(long, value_name = "N", requires = "bootstrap")]
    pub max: Option<u64>,
    /// Read from the oldest record and stop at the end of the topic as it was at start (add
    /// --follow to go on waiting). Without it, only records produced from now on are read.
    #[arg(long, requires = "bootstrap")]
    pub from_beginning: bool,
    /// With --from-beginning: do not stop at the end of the topic, wait for new records.
    #[arg(long, requires = "from_beginning")]
    pub follow: bool,
    /// Extra librdkafka client properties (security.protocol=SSL, sasl.mechanism=...).
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = key_value, requires = "bootstrap")]
    pub properties: Vec<(String, String)>,
}

pub fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

pub struct TopicReader {
    consumer: BaseConsumer,
    topic: String,
    /// Partitions still to read to their end: the offset one past their last record at start.
    ends: HashMap<i32, i64>,
    stop_at_end: bool,
    max: Option<u64>,
    /// Records there were to read at start (with --from-beginning), for the progress bar.
    pub expected: Option<u64>,
}

pub fn client_config(bootstrap: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (k, v) in properties {
        config.set(k, v);
    }
    config
}

impl TopicReader {
    pub fn open(bootstrap: &str, topic: &str, args: &ReadArgs) -> Result<TopicReader, Failure> {
        let spinner = progress::spinner(&format!("connecting to {bootstrap}"));
        let kafka = |what: &str, e: KafkaError| Failure::unreachable(format!("kafka {bootstrap}: {what}: {e}"));
        let consumer: BaseConsumer = client_config(bootstrap, &args.properties)
            .set("group.id", format!("fieldcrypt-cli-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(|e| Failure::usage(format!("kafka client: {}", fieldcrypt::kafka::client_creation_error(&e))))?;
        let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT).map_err(|e| kafka("metadata", e))?;
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Err(Failure::failed(format!("topic {topic:?} not found")));
        };
        if let Some(e) = t.error() {
            return Err(match RDKafkaErrorCode::from(e) {
                RDKafkaErrorCode::UnknownTopicOrPartition => Failure::failed(format!("topic {topic:?} not found")),
                code => Failure::unreachable(format!("kafka {bootstrap}: topic {topic:?}: {code}")),
            });
        }
        if t.partitions().is_empty() {
            return Err(Failure::failed(format!("topic {topic:?} not found (no partitions)")));
        }
        let mut assignment = TopicPartitionList::new();
        let mut ends = HashMap::new();
        let mut expected = 0u64;
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), TIMEOUT).map_err(|e| kafka("watermarks", e))?;
            let start = if args.from_beginning { Offset::Beginning } else { Offset::End };
            assignment
                .add_partition_offset(topic, p.id(), start)
                .map_err(|e| Failure::failed(format!("assign partition {}: {e}", p.id())))?;
            if high > low {
                ends.insert(p.id(), high);
                expected += (high - low) as u64;
            }
        }
        consumer.assign(&assignment).map_err(|e| kafka("assign", e))?;
        spinner.finish_and_clear();
        let stop_at_end = args.from_beginning && !args.follow;
        Ok(TopicReader {
            consumer,
            topic: topic.to_string(),
            ends,
            stop_at_end,
            max: args.max,
            expected: if stop_at_end { Some(args.max.map_or(expected, |m| m.min(expected))) } else { args.max },
        })
    }

    /// Calls `f` with each record until `--max` records were read or, with --from-beginning
    /// (and no --follow), the end of the topic as it was at start was reached. Returns how many.
    pub fn each(&mut self, mut f: impl FnMut(&BorrowedMessage<'_>) -> Result<(), Failure>) -> Result<u64, Failure> {
        let mut n = 0u64;
        loop {
            if self.max.is_some_and(|m| n >= m) || (self.stop_at_end && self.ends.is_empty()) {
                return Ok(n);
            }
            match self.consumer.poll(Duration::from_millis(300)) {
                None => {
                    // Idle: a partition whose position passed its end (its last offsets were
                    // transaction markers or compacted away) is done too.
                    if self.stop_at_end {
                        self.drop_finished_partitions();
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    return Err(Failure::unreachable(format!("kafka: reading topic {:?}: {e}", self.topic)))
                }
                Some(Ok(m)) => {
                    if let Some(end) = self.ends.get(&m.partition()) {
                        if m.offset() + 1 >= *end {
                            self.ends.remove(&m.partition());
                        }
                    }
                    f(&m)?;
                    n += 1;
                }
            }
        }
    }

    fn drop_finished_partitions(&mut self) {
        let Ok(positions) = self.consumer.position() else { return };
        for e in positions.elements_for_topic(&self.topic) {
            if let (Offset::Offset(at), Some(end)) = (e.offset(), self.ends.get(&e.partition())) {
                if at >= *end {
                    self.ends.remove(&e.partition());
                }
            }
        }
    }
}
