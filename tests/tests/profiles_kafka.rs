//! Consumer profiles through a real broker (issue 8): one record with three PII fields under two
//! KEKs, read back by consumers of different visibility levels. Each sees exactly its fields;
//! a profile never grants what the consumer's KMS access denies.

use std::time::{Duration, Instant};

use fieldcrypt::kafka::headers_of;
use fieldcrypt::{Codec, LocalKms, OwnedHeader, Policy};
use fieldcrypt_it::{required_env, unique_subject};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use serde_json::{json, Value};

fn policy(topic: &str) -> Policy {
    Policy::from_json(&format!(
        r#"{{"fieldcrypt_policy": 1, "id": "it-profiles", "revision": 3,
            "encrypt": [
              {{"name": "contact", "topics": ["{topic}"], "fields": ["email"], "key": "local://contact-kek"}},
              {{"name": "payment", "topics": ["{topic}"], "fields": ["visa", "ssn"], "key": "local://payment-kek"}}
            ],
            "profiles": {{
              "support":   {{"decrypt": [{{"topics": ["{topic}"], "fields": ["email"]}}], "otherwise": "mask"}},
              "fraud":     {{"decrypt": [{{"topics": ["{topic}"], "fields": ["email", "visa", "ssn"]}}]}},
              "analytics": {{"decrypt": [], "otherwise": "null"}}
            }}}}"#
    ))
    .unwrap()
}

fn kms(keks: &[&str]) -> LocalKms {
    keks.iter().fold(LocalKms::new(), |k, name| k.with_secret(name, format!("secret of {name}").as_bytes()))
}

#[test]
fn each_profile_sees_exactly_its_fields_through_kafka() {
    let bootstrap = required_env("FIELDCRYPT_KAFKA");
    let topic = unique_subject("profiles");
    let plain = json!({"id": 7, "name": "Ada", "email": "ada@example.com", "visa": "4111 1111 1111 1111", "ssn": "123-45-6789"});
    let producer_codec = Codec::builder(policy(&topic)).kms(kms(&["contact-kek", "payment-kek"])).build().unwrap();
    let sealed =
        producer_codec.encrypt(&topic, None, Some(plain.to_string().as_bytes()), &[] as &[OwnedHeader]).unwrap();
    let producer: ThreadedProducer<_> = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    let headers = sealed
        .headers
        .iter()
        .fold(OwnedHeaders::new(), |h, x| h.insert(Header { key: &x.name, value: x.value.as_deref() }));
    producer
        .send(BaseRecord::<(), [u8]>::to(&topic).payload(sealed.value.as_deref().unwrap()).headers(headers))
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("it-{topic}"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let message = loop {
        assert!(Instant::now() < deadline, "no record within 60 s");
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            break m;
        }
    };
    let stored = message.payload().unwrap();
    for secret in ["ada@example.com", "4111", "123-45-6789"] {
        assert!(!String::from_utf8_lossy(stored).contains(secret), "{secret} stored in the clear");
    }
    let read = |profile: Option<&str>, keks: &[&str]| -> Value {
        let mut b = Codec::builder(policy(&topic)).kms(kms(keks));
        if let Some(p) = profile {
            b = b.profile(p);
        }
        let out = b.build().unwrap().decrypt(&topic, None, message.payload(), &headers_of(&message)).unwrap();
        serde_json::from_slice(out.value.as_deref().unwrap()).unwrap()
    };
    let ciphertext = |field: &str| -> Value { serde_json::from_slice::<Value>(stored).unwrap()[field].clone() };
    let all = ["contact-kek", "payment-kek"];

    // support: email only; the rest masked.
    let support = read(Some("support"), &all);
    assert_eq!(
        (support["email"].clone(), support["visa"].clone(), support["ssn"].clone()),
        (json!("ada@example.com"), json!("****"), json!("****"))
    );
    // fraud: everything.
    assert_eq!(read(Some("fraud"), &all), plain);
    // analytics: nothing, as nulls; the unencrypted fields as they were.
    let analytics = read(Some("analytics"), &all);
    assert_eq!(
        (analytics["email"].clone(), analytics["visa"].clone(), analytics["name"].clone()),
        (Value::Null, Value::Null, json!("Ada"))
    );
    // fraud, but the consumer's KMS access covers only the contact KEK: the payment fields stay
    // ciphertext whatever the profile says.
    let limited = read(Some("fraud"), &["contact-kek"]);
    assert_eq!(limited["email"], "ada@example.com");
    assert_eq!((limited["visa"].clone(), limited["ssn"].clone()), (ciphertext("visa"), ciphertext("ssn")));
    // The header records which policy (and revision) encrypted the record.
    let message_headers = headers_of(&message);
    let fc = message_headers.iter().find(|(n, _)| *n == fieldcrypt::HEADER_NAME).and_then(|(_, v)| *v).unwrap();
    let header = fieldcrypt::header::parse(fc).unwrap();
    assert_eq!((header.policy_id, header.policy_revision), ("it-profiles", 3));
}
