//! Crypto-shredding through a real broker (docs/SHREDDING.md): 1,000 customers' records
//! produced to Kafka with a key per customer held in the Kafka key store (a compacted topic),
//! one customer shredded; a fresh consumer and one that was already running (with the key
//! cached) can no longer read that customer's records, and read every other customer's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fieldcrypt::kafka::headers_of;
use fieldcrypt::keystore::{KafkaKeyStore, KeyStore};
use fieldcrypt::{Codec, ErrorKind, LocalKms, OwnedHeader, Policy};
use fieldcrypt_it::{required_env, unique_subject};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

const CUSTOMERS: usize = 1000;
const SHREDDED: usize = 421;

fn policy(topic: &str) -> Policy {
    Policy::from_json(&format!(
        r#"{{"fieldcrypt_policy": 1, "id": "it-shred", "revision": 1,
            "encrypt": [{{"name": "per-customer", "topics": ["{topic}"], "fields": ["email", "card"],
                          "key": "local://it-kek", "subject": "customer_id"}}],
            "profiles": {{"strict": {{"decrypt": [{{"topics": ["*"]}}], "otherwise": "error"}}}}}}"#
    ))
    .unwrap()
}

fn codec(topic: &str, store: &Arc<dyn KeyStore>, profile: Option<&str>) -> Codec {
    let mut b = Codec::builder(policy(topic))
        .kms(LocalKms::new().with_secret("it-kek", b"shredding it"))
        .key_store_shared(store.clone());
    if let Some(p) = profile {
        b = b.profile(p);
    }
    b.build().unwrap()
}

fn value(i: usize) -> Vec<u8> {
    format!(r#"{{"customer_id":"cust-{i}","email":"c{i}@example.com","card":"4000 0000 0000 {i:04}"}}"#).into_bytes()
}

/// Every record of `topic` (one partition), as (key, value, headers).
fn consume_all(bootstrap: &str, topic: &str, n: usize) -> Vec<(Vec<u8>, Vec<u8>, Vec<OwnedHeader>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("it-{topic}-{}", unique_subject("g")))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} records within 60 s", out.len());
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else { continue };
        let headers = headers_of(&m)
            .into_iter()
            .map(|(k, v)| OwnedHeader { name: k.to_string(), value: v.map(<[u8]>::to_vec) })
            .collect();
        out.push((m.key().unwrap_or_default().to_vec(), m.payload().unwrap_or_default().to_vec(), headers));
    }
    out
}

#[test]
fn shredding_one_of_1000_customers_through_kafka() {
    let bootstrap = required_env("FIELDCRYPT_KAFKA");
    let topic = unique_subject("customers-shred");
    let key_topic = format!("_fieldcrypt_keys-{}", unique_subject("it"));
    let producer_store: Arc<dyn KeyStore> = Arc::new(KafkaKeyStore::open(&bootstrap, &key_topic).unwrap());
    let producer_codec = codec(&topic, &producer_store, None);
    let producer: ThreadedProducer<_> =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).set("message.timeout.ms", "30000").create().unwrap();
    for i in 0..CUSTOMERS {
        let sealed = producer_codec.encrypt(&topic, None, Some(&value(i)), &[] as &[OwnedHeader]).unwrap();
        let headers = sealed
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |h, x| h.insert(Header { key: &x.name, value: x.value.as_deref() }));
        let key = format!("cust-{i}");
        let record = BaseRecord::to(&topic).key(&key).payload(sealed.value.as_deref().unwrap()).headers(headers);
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    assert_eq!(producer_store.list().unwrap().len(), CUSTOMERS, "one key per customer in the key topic");

    let stored = consume_all(&bootstrap, &topic, CUSTOMERS);
    let by_customer: HashMap<String, usize> =
        stored.iter().enumerate().map(|(n, (k, _, _))| (String::from_utf8(k.clone()).unwrap(), n)).collect();
    let record_of = |i: usize| &stored[by_customer[&format!("cust-{i}")]];
    let open = |codec: &Codec, i: usize| {
        let (_, v, h) = record_of(i);
        codec.decrypt(&topic, None, Some(v), h)
    };

    // A consumer running before the shred, with its own view of the key topic, reads everything.
    let running_store: Arc<dyn KeyStore> = Arc::new(KafkaKeyStore::open(&bootstrap, &key_topic).unwrap());
    let running = codec(&topic, &running_store, Some("strict"));
    for i in 0..CUSTOMERS {
        assert_eq!(open(&running, i).unwrap().value.unwrap(), value(i));
    }

    assert_eq!(producer_codec.shred(&format!("cust-{SHREDDED}")).unwrap(), 1);

    // The running consumer sees the shred within the documented delay (its reader polls the
    // key topic continuously; allow 10 s for a loaded machine).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match open(&running, SHREDDED) {
            Err(e) if e.kind() == ErrorKind::Shredded => break,
            other => {
                assert!(Instant::now() < deadline, "running consumer still reads the shredded customer: {other:?}")
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // A fresh consumer (reads the compacted key topic from the start).
    let fresh_store: Arc<dyn KeyStore> = Arc::new(KafkaKeyStore::open(&bootstrap, &key_topic).unwrap());
    let fresh = codec(&topic, &fresh_store, Some("strict"));
    for consumer in [&running, &fresh] {
        for i in 0..CUSTOMERS {
            match open(consumer, i) {
                Ok(r) => {
                    assert_ne!(i, SHREDDED);
                    assert_eq!(r.value.unwrap(), value(i));
                }
                Err(e) => {
                    assert_eq!(i, SHREDDED, "customer {i}: {e}");
                    assert_eq!(e.kind(), ErrorKind::Shredded);
                }
            }
        }
    }
    // The stored record still holds the customer's id but no readable PII.
    let (_, v, _) = record_of(SHREDDED);
    let text = String::from_utf8_lossy(v);
    assert!(text.contains(&format!("\"cust-{SHREDDED}\"")) && !text.contains(&format!("c{SHREDDED}@example.com")));
}
