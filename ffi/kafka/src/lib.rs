//! `fieldcrypt-ffi-kafka`: just enough of librdkafka (bundled by the `rdkafka` crate) behind the
//! C ABI to produce and consume packed records, for languages whose Kafka client cannot be
//! installed here (C#: NuGet is not reachable). A test and demo aid: applications use their own
//! Kafka client and the codec. Same conventions, buffers, errors and statuses as fieldcrypt-ffi.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

use std::time::Duration;

use fieldcrypt::kafka::DeliveryReports;
use fieldcrypt_ffi::packed::{self, RecordRef};
use fieldcrypt_ffi::{bytes, fc_buf, fc_error, guard, put, text, Failure, FC_ERR_KAFKA};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn kafka_failure(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure { status: FC_ERR_KAFKA, retryable: false, index: -1, message: format!("kafka: {what}: {e}") }
}

/// librdkafka properties from a JSON object of strings.
unsafe fn client_config(config: *const u8, config_len: usize) -> Result<ClientConfig, Failure> {
    let text = unsafe { text(config, config_len, "config") }?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| Failure::invalid("config is not a JSON object of strings"))?;
    let serde_json::Value::Object(properties) = value else {
        return Err(Failure::invalid("config is not a JSON object of strings"));
    };
    let mut config = ClientConfig::new();
    for (name, value) in properties {
        let value =
            value.as_str().ok_or_else(|| Failure::invalid(format!("config property {name:?} is not a string")))?;
        config.set(name, value);
    }
    Ok(config)
}

/// A producer. Thread-safe. Made by `fc_kafka_producer_new`, freed by `fc_kafka_producer_free`.
pub struct fc_kafka_producer {
    producer: BaseProducer<DeliveryReports>,
}

/// A consumer subscribed to its topics. Made by `fc_kafka_consumer_new`, freed by
/// `fc_kafka_consumer_free`.
pub struct fc_kafka_consumer {
    consumer: BaseConsumer,
}

/// Makes a producer from librdkafka properties (a JSON object of strings, e.g.
/// `{"bootstrap.servers": "127.0.0.1:9092"}`).
#[no_mangle]
pub unsafe extern "C" fn fc_kafka_producer_new(
    config: *const u8,
    config_len: usize,
    producer_out: *mut *mut fc_kafka_producer,
    err: *mut fc_error,
) -> i32 {
    guard(err, || {
        let config = unsafe { client_config(config, config_len) }?;
        if producer_out.is_null() {
            return Err(Failure::invalid("producer_out is NULL"));
        }
        let producer = config
            .create_with_context(DeliveryReports::default())
            .map_err(|e| kafka_failure("creating the producer", fieldcrypt::kafka::client_creation_error(&e)))?;
        unsafe { put(producer_out, Box::into_raw(Box::new(fc_kafka_producer { producer })), "producer_out") }
    })
}

/// Sends one packed record to `topic` and waits up to `timeout_ms` for the broker to acknowledge it.
#[no_mangle]
pub unsafe extern "C" fn fc_kafka_produce(
    producer: *const fc_kafka_producer,
    topic: *const u8,
    topic_len: usize,
    record: *const u8,
    record_len: usize,
    timeout_ms: i32,
    err: *mut fc_error,
) -> i32 {
    guard(err, || {
        // SAFETY: the caller's contract: NULL or a live producer.
        let p = unsafe { producer.as_ref() }.ok_or_else(|| Failure::invalid("producer is NULL"))?;
        let topic = unsafe { text(topic, topic_len, "topic") }?;
        let RecordRef { key, value, headers } = packed::record(unsafe { bytes(record, record_len, "record") }?)?;
        let headers = headers.iter().fold(OwnedHeaders::new_with_capacity(headers.len()), |acc, &(key, value)| {
            acc.insert(Header { key, value })
        });
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).headers(headers);
        if let Some(k) = key {
            r = r.key(k);
        }
        if let Some(v) = value {
            r = r.payload(v);
        }
        p.producer.send(r).map_err(|(e, _)| kafka_failure("send", e))?;
        let timeout = Duration::from_millis(timeout_ms.max(0) as u64);
        fieldcrypt::kafka::wait_for_delivery(&p.producer, timeout).map_err(|e| kafka_failure("delivery", e))
    })
}

/// Frees a producer (pending records are given up to 5 s). NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn fc_kafka_producer_free(producer: *mut fc_kafka_producer) {
    if producer.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the caller's contract: a handle from fc_kafka_producer_new, freed once.
        let p = unsafe { Box::from_raw(producer) };
        let _ = p.producer.flush(Duration::from_secs(5));
    }));
}

/// Makes a consumer from librdkafka properties (a JSON object of strings; `group.id` needed)
/// subscribed to `topics` (comma-separated names).
#[no_mangle]
pub unsafe extern "C" fn fc_kafka_consumer_new(
    config: *const u8,
    config_len: usize,
    topics: *const u8,
    topics_len: usize,
    consumer_out: *mut *mut fc_kafka_consumer,
    err: *mut fc_error,
) -> i32 {
    guard(err, || {
        let config = unsafe { client_config(config, config_len) }?;
        let topics: Vec<&str> = unsafe { text(topics, topics_len, "topics") }?.split(',').map(str::trim).collect();
        if topics.iter().any(|t| t.is_empty()) {
            return Err(Failure::invalid("topics: give comma-separated topic names"));
        }
        if consumer_out.is_null() {
            return Err(Failure::invalid("consumer_out is NULL"));
        }
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| kafka_failure("creating the consumer", fieldcrypt::kafka::client_creation_error(&e)))?;
        consumer.subscribe(&topics).map_err(|e| kafka_failure("subscribe", e))?;
        unsafe { put(consumer_out, Box::into_raw(Box::new(fc_kafka_consumer { consumer })), "consumer_out") }
    })
}

/// Waits up to `timeout_ms` for one message: `*record_out` gets it packed, or stays empty
/// (`len` 0) when none came.
#[no_mangle]
pub unsafe extern "C" fn fc_kafka_consumer_poll(
    consumer: *const fc_kafka_consumer,
    timeout_ms: i32,
    record_out: *mut fc_buf,
    err: *mut fc_error,
) -> i32 {
    guard(err, || {
        // SAFETY: the caller's contract: NULL or a live consumer.
        let c = unsafe { consumer.as_ref() }.ok_or_else(|| Failure::invalid("consumer is NULL"))?;
        if record_out.is_null() {
            return Err(Failure::invalid("record_out is NULL"));
        }
        let timeout = Duration::from_millis(timeout_ms.max(0) as u64);
        let packed = match c.consumer.poll(timeout) {
            None => Vec::new(),
            Some(Err(e)) => return Err(kafka_failure("poll", e)),
            Some(Ok(m)) => {
                let headers = fieldcrypt::kafka::headers_of(&m);
                let mut out = Vec::new();
                packed::put_parts(&mut out, m.key(), m.payload(), headers.iter().copied())?;
                out
            }
        };
        unsafe { put(record_out, fc_buf::from_vec(packed), "record_out") }
    })
}

/// Frees a consumer (it leaves its group). NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn fc_kafka_consumer_free(consumer: *mut fc_kafka_consumer) {
    if consumer.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the caller's contract: a handle from fc_kafka_consumer_new, freed once.
        drop(unsafe { Box::from_raw(consumer) });
    }));
}
