//! rdkafka integration (cargo feature `kafka`): encrypt before `send`, decrypt what a consumer
//! received. Works with `FutureProducer` and `StreamConsumer` (any `Message`).
//!
//! ```no_run
//! # async fn run(producer: rdkafka::producer::FutureProducer, codec: fieldcrypt::Codec) {
//! use fieldcrypt::kafka::EncryptingProducer;
//! let producer = EncryptingProducer::new(producer, codec);
//! producer.send("customers", Some(b"42"), Some(br#"{"password":"x"}"#), None, std::time::Duration::from_secs(5)).await.unwrap();
//! # }
//! ```

use std::fmt;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, Timestamp};
use rdkafka::producer::future_producer::Delivery;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::{Codec, Record, Result};

/// Why a Kafka client could not be made, without the values of its settings: librdkafka's own
/// message for a rejected setting repeats the value, and settings hold passwords
/// (`sasl.password`, `ssl.key.password`).
pub fn client_creation_error(e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(code, _, key, _) => {
            let why = match code {
                rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN => "there is no such setting",
                rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID => "its value is not valid",
                _ => "it is not accepted",
            };
            format!("client setting {key:?}: {why}")
        }
        other => other.to_string(),
    }
}

/// The record headers of an rdkafka message, as borrowed name/value pairs.
pub fn headers_of<M: Message>(message: &M) -> Vec<(&str, Option<&[u8]>)> {
    message.headers().map(|h| h.iter().map(|h| (h.key, h.value)).collect()).unwrap_or_default()
}

fn owned_headers_view(headers: Option<&OwnedHeaders>) -> Vec<(&str, Option<&[u8]>)> {
    headers.map(|h| h.iter().map(|h| (h.key, h.value)).collect()).unwrap_or_default()
}

/// A record encrypted for a topic, ready to hand to a producer.
#[derive(Debug, Clone)]
pub struct EncryptedRecord {
    pub topic: String,
    pub record: Record,
}

impl EncryptedRecord {
    /// Headers in rdkafka's form, the fieldcrypt header included.
    pub fn owned_headers(&self) -> OwnedHeaders {
        self.record.headers.iter().fold(OwnedHeaders::new_with_capacity(self.record.headers.len()), |acc, h| {
            acc.insert(Header { key: &h.name, value: h.value.as_deref() })
        })
    }

    /// A `FutureRecord` borrowing this record's bytes, with all headers set.
    pub fn future_record(&self) -> FutureRecord<'_, [u8], [u8]> {
        let mut r = FutureRecord::to(&self.topic).headers(self.owned_headers());
        if let Some(k) = &self.record.key {
            r = r.key(k.as_slice());
        }
        if let Some(v) = &self.record.value {
            r = r.payload(v.as_slice());
        }
        r
    }
}

/// Encrypts a record the application is about to produce. Fails closed: on error there is
/// nothing to send.
pub fn encrypt_for_send(
    codec: &Codec,
    topic: &str,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    headers: Option<&OwnedHeaders>,
) -> Result<EncryptedRecord> {
    let record = codec.encrypt(topic, key, payload, &owned_headers_view(headers))?;
    Ok(EncryptedRecord { topic: topic.to_string(), record })
}

/// A consumed message after decryption.
#[derive(Debug, Clone)]
pub struct DecryptedMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Timestamp,
    pub record: Record,
}

/// Decrypts a message received from any rdkafka consumer.
pub fn decrypt_message<M: Message>(codec: &Codec, message: &M) -> Result<DecryptedMessage> {
    let record = codec.decrypt(message.topic(), message.key(), message.payload(), &headers_of(message))?;
    Ok(DecryptedMessage {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp: message.timestamp(),
        record,
    })
}

/// Why a send through [`EncryptingProducer`] failed.
#[derive(Debug)]
pub enum SendError {
    /// Encryption failed; nothing was sent.
    Encrypt(crate::Error),
    /// Kafka refused or timed out the (encrypted) record.
    Kafka(KafkaError),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Encrypt(e) => write!(f, "not sent, encryption failed: {e}"),
            SendError::Kafka(e) => write!(f, "send failed: {e}"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Encrypt(e) => Some(e),
            SendError::Kafka(e) => Some(e),
        }
    }
}

/// A `FutureProducer` that encrypts every record before it is queued.
#[derive(Clone)]
pub struct EncryptingProducer {
    producer: FutureProducer,
    codec: Codec,
}

impl EncryptingProducer {
    pub fn new(producer: FutureProducer, codec: Codec) -> Self {
        EncryptingProducer { producer, codec }
    }

    pub fn inner(&self) -> &FutureProducer {
        &self.producer
    }

    /// Encrypts, then sends with `FutureProducer::send`.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: Option<&OwnedHeaders>,
        queue_timeout: impl Into<Timeout>,
    ) -> std::result::Result<Delivery, SendError> {
        let encrypted = encrypt_for_send(&self.codec, topic, key, payload, headers).map_err(SendError::Encrypt)?;
        self.producer.send(encrypted.future_record(), queue_timeout).await.map_err(|(e, _)| SendError::Kafka(e))
    }
}

/// Waits for an rdkafka future without an async runtime: rdkafka completes admin and delivery
/// futures from its own threads, so parking until woken is all it takes.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        // A timeout, not a bare park: a wake-up that raced the poll is never lost for long.
        std::thread::park_timeout(std::time::Duration::from_millis(50));
    }
}

/// A producer context that remembers the first failed delivery since it was last asked, for
/// producers that wait for each acknowledgement themselves (key store, test aids).
#[derive(Default)]
pub struct DeliveryReports {
    failed: std::sync::Mutex<Option<String>>,
}

impl DeliveryReports {
    /// The first delivery failure since the last call, if any.
    pub fn take_failure(&self) -> Option<String> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl rdkafka::ClientContext for DeliveryReports {}

impl rdkafka::producer::ProducerContext for DeliveryReports {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| e.to_string());
        }
    }
}

/// Waits until `producer` has no record in flight, serving its delivery reports itself (a
/// short poll, where `flush` polls in 100 ms steps), then reports the first failed delivery.
pub fn wait_for_delivery(
    producer: &rdkafka::producer::BaseProducer<DeliveryReports>,
    timeout: std::time::Duration,
) -> std::result::Result<(), String> {
    use rdkafka::producer::Producer;
    let deadline = std::time::Instant::now() + timeout;
    while producer.in_flight_count() > 0 {
        if std::time::Instant::now() > deadline {
            return Err("no acknowledgement from the broker in time".into());
        }
        producer.poll(std::time::Duration::from_millis(2));
    }
    producer.context().take_failure().map_or(Ok(()), Err)
}
