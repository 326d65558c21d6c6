//! All three schema formats through the real stack: schemas registered in Apicurio (Confluent
//! compatible API), records produced with rdkafka + fieldcrypt to a real Kafka broker, consumed
//! back, checked in their stored (encrypted) form, then decrypted with the registry as schema
//! source. Needs FIELDCRYPT_KAFKA and FIELDCRYPT_REGISTRY (`scripts/servers.sh`).

use std::time::Duration;

use apache_avro::types::Value as AvroValue;
use base64::Engine;
use fieldcrypt::kafka::{decrypt_message, EncryptingProducer};
use fieldcrypt::registry::{RegistryConfig, SchemaRegistry};
use fieldcrypt::{Codec, LocalKms, Policy, HEADER_NAME, TEXT_ENCODING};
use fieldcrypt_it::{read_repo_file, registry_url, required_env, unique_subject, Ccompat};
use prost_reflect::{DescriptorPool, DynamicMessage};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;

const PII: [&str; 4] = ["jane.doe@example.com", "123-45-6789", "1600 Amphitheatre Parkway", "+1-650-555-0100"];

fn codec(profile: Option<&str>) -> Codec {
    let policy = Policy::from_json(&read_repo_file("schemas/policies/demo.json")).unwrap();
    let keys = LocalKms::from_json(&read_repo_file("schemas/keys/local-dev.json")).unwrap();
    let registry = SchemaRegistry::new(RegistryConfig::new(registry_url())).unwrap();
    let mut b = Codec::builder(policy).kms(keys).schemas(registry);
    if let Some(p) = profile {
        b = b.profile(p);
    }
    b.build().unwrap()
}

/// Runs the test's own blocking HTTP calls (schema registration) off the async runtime.
fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().expect("registration thread")
}

fn fixture_bytes(relative: &str) -> Vec<u8> {
    std::fs::read(fieldcrypt_it::repo_root().join(relative)).unwrap()
}

fn framed(id: i32, extra: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&(id as u32).to_be_bytes());
    out.extend_from_slice(extra);
    out.extend_from_slice(payload);
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Produces `value` to a fresh topic (named after `format`) matched by the `payments-*` rule,
/// consumes it raw, returns (stored message value, decrypted value).
async fn through_kafka(format: &str, value: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let bootstrap = required_env("FIELDCRYPT_KAFKA");
    let topic = format!("payments-{}", unique_subject(format));
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).set("message.timeout.ms", "30000").create().unwrap();
    let producer = EncryptingProducer::new(producer, codec(None));
    producer.send(&topic, Some(b"k1"), Some(value), None, Duration::from_secs(30)).await.unwrap();

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("it-{topic}"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let msg =
        tokio::time::timeout(Duration::from_secs(60), consumer.recv()).await.expect("a record within 60 s").unwrap();
    let stored = msg.payload().unwrap().to_vec();
    let names: Vec<&str> = msg.headers().unwrap().iter().map(|h| h.key).collect();
    assert_eq!(names, [HEADER_NAME]);
    for secret in PII {
        assert!(contains(value, secret));
        assert!(!contains(&stored, secret), "{format}: {secret} stored in the clear");
    }
    // A fresh consumer codec: schemas from the registry, DEK unwrapped through the KMS.
    let reader = codec(None);
    let opened = decrypt_message(&reader, &msg).unwrap();
    assert_eq!(reader.stats().fields_decrypted, 4);
    (stored, opened.record.value.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_through_kafka_and_the_registry() {
    let id = off_runtime(|| {
        Ccompat::from_env().register(
            &unique_subject("avro-value"),
            "AVRO",
            &read_repo_file("schemas/payment/payment.avsc"),
            &[],
        )
    });
    let value = framed(id, &[], &fixture_bytes("schemas/payment/payment.avro.bin"));
    let (stored, opened) = through_kafka("avro", &value).await;
    assert_eq!(opened, value, "decrypted record equals the original bytes");
    assert_eq!(&stored[..5], &value[..5], "framing unchanged");
    // The stored record is still valid Avro under the registered schema.
    let schema = apache_avro::Schema::parse_str(&read_repo_file("schemas/payment/payment.avsc")).unwrap();
    let AvroValue::Record(fields) = apache_avro::from_avro_datum(&schema, &mut &stored[5..], None).unwrap() else {
        panic!("not a record")
    };
    let get = |n: &str| fields.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert_eq!(get("full_name"), AvroValue::String("Jane Alexandra Doe".into()));
    let AvroValue::String(email) = get("email") else { panic!("email is a string") };
    assert!(TEXT_ENCODING.decode(email).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_through_kafka_and_the_registry() {
    let id = off_runtime(|| {
        let ccompat = Ccompat::from_env();
        let meta_subject = unique_subject("confluent-meta");
        ccompat.register(&meta_subject, "PROTOBUF", &read_repo_file("schemas/confluent/meta.proto"), &[]);
        ccompat.register(
            &unique_subject("proto-value"),
            "PROTOBUF",
            &read_repo_file("schemas/payment/payment.proto"),
            &[("confluent/meta.proto", &meta_subject, 1)],
        )
    });
    // bench.Payment is the second message of the file: message indexes [1].
    let value = framed(id, &[2, 2], &fixture_bytes("schemas/payment/payment.pb.bin"));
    let (stored, opened) = through_kafka("proto", &value).await;
    assert_eq!(opened, value);
    let fds = protox::compile(["payment/payment.proto"], [fieldcrypt_it::repo_root().join("schemas")]).unwrap();
    let desc = DescriptorPool::from_file_descriptor_set(fds).unwrap().get_message_by_name("bench.Payment").unwrap();
    let m = DynamicMessage::decode(desc, &stored[7..]).expect("stored record is still a valid bench.Payment");
    assert_eq!(m.get_field_by_name("full_name").unwrap().as_str(), Some("Jane Alexandra Doe"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_schema_through_kafka_and_the_registry() {
    let id = off_runtime(|| {
        Ccompat::from_env().register(
            &unique_subject("json-value"),
            "JSON",
            &read_repo_file("schemas/payment/payment.schema.json"),
            &[],
        )
    });
    let doc: serde_json::Value = serde_json::from_str(&read_repo_file("schemas/payment/payment.json")).unwrap();
    let value = framed(id, &[], &serde_json::to_vec(&doc).unwrap());
    let (stored, opened) = through_kafka("json", &value).await;
    assert_eq!(opened, value);
    let stored_doc: serde_json::Value = serde_json::from_slice(&stored[5..]).unwrap();
    assert_eq!(stored_doc["full_name"], "Jane Alexandra Doe");
}
