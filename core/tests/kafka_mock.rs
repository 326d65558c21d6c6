//! The rdkafka integration end to end on librdkafka's in-process mock cluster (fast, no server):
//! `EncryptingProducer` → Kafka → `StreamConsumer` + `decrypt_message`. The real-broker tests
//! live in the workspace's `tests/` crate.
#![cfg(feature = "kafka")]

use std::time::Duration;

use fieldcrypt::kafka::{decrypt_message, EncryptingProducer};
use fieldcrypt::{Codec, ErrorKind, LocalKms, Policy, HEADER_NAME};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;

const POLICY: &str = r#"{"fieldcrypt_policy":1,"id":"k","encrypt":[
    {"name":"secrets","topics":["customers"],"fields":["password","visa"],"key":"local://k"}],
    "profiles":{"visa":{"decrypt":[{"topics":["customers"],"fields":["visa"]}],"otherwise":"null"}}}"#;

fn codec(profile: Option<&str>) -> Codec {
    let mut b =
        Codec::builder(Policy::from_json(POLICY).unwrap()).kms(LocalKms::new().with_secret("k", b"test secret"));
    if let Some(p) = profile {
        b = b.profile(p);
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_consume_through_rdkafka() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("customers", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    let producer = EncryptingProducer::new(producer, codec(None));

    let app_headers = OwnedHeaders::new().insert(Header { key: "trace-id", value: Some("abc") });
    for i in 0..5 {
        let value = format!(r#"{{"id":{i},"password":"pw-{i}","visa":"4111-{i}"}}"#);
        producer
            .send(
                "customers",
                Some(format!("{i}").as_bytes()),
                Some(value.as_bytes()),
                Some(&app_headers),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }
    // Fail closed: a record that is not JSON is never sent.
    let err = producer.send("customers", None, Some(b"not json"), None, Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(err, fieldcrypt::kafka::SendError::Encrypt(ref e) if e.kind() == ErrorKind::Record), "{err}");

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "t")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["customers"]).unwrap();
    let full = codec(None);
    let partial = codec(Some("visa"));
    for i in 0..5 {
        let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await.unwrap().unwrap();
        let stored = String::from_utf8(msg.payload().unwrap().to_vec()).unwrap();
        assert!(!stored.contains(&format!("pw-{i}")) && !stored.contains(&format!("4111-{i}")), "{stored}");
        let headers = msg.headers().unwrap();
        let names: Vec<&str> = headers.iter().map(|h| h.key).collect();
        assert_eq!(names, ["trace-id", HEADER_NAME]);

        let all = decrypt_message(&full, &msg).unwrap();
        assert_eq!(all.record.key.as_deref(), Some(format!("{i}").as_bytes()));
        let v: serde_json::Value = serde_json::from_slice(all.record.value.as_ref().unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"id": i, "password": format!("pw-{i}"), "visa": format!("4111-{i}")}));
        assert!(all.record.fieldcrypt_header().is_none(), "header dropped once nothing is encrypted");
        assert_eq!(all.record.header("trace-id"), Some(&b"abc"[..]));

        let some = decrypt_message(&partial, &msg).unwrap();
        let v: serde_json::Value = serde_json::from_slice(some.record.value.as_ref().unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"id": i, "password": null, "visa": format!("4111-{i}")}));
    }
    assert_eq!(full.stats().kms_unwrap_calls, 1, "one unwrap for the one DEK, not one per record");
}

/// A rejected client setting is reported by name, never by value (settings hold passwords), in
/// the key store, the policy source and through `client_creation_error`.
#[test]
fn rejected_client_settings_are_named_without_their_values() {
    use fieldcrypt::config;
    for (name, value, why) in
        [("sasl.pasword", "hunter2-secret", "no such setting"), ("acks", "hunter2-secret", "not valid")]
    {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", "127.0.0.1:1").set(name, value);
        let e = client.create::<FutureProducer>().map(|_| ()).unwrap_err();
        let text = fieldcrypt::kafka::client_creation_error(&e);
        assert!(text.contains(name) && text.contains(why) && !text.contains("hunter2"), "{text}");
        for document in [
            serde_json::json!({"key_store": {"kafka": {"bootstrap": "127.0.0.1:1", "properties": {name: value}}}}),
            serde_json::json!({"policy_source": {"kafka": {"bootstrap": "127.0.0.1:1", "properties": {name: value}},
                                                 "policy_id": "p", "allow_unsigned": true}}),
        ] {
            let policy = if document.get("policy_source").is_some() { None } else { Some(POLICY) };
            let e = config::open(policy, &document.to_string()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{e}");
            assert!(e.message().contains(name) && !e.message().contains("hunter2"), "{e}");
        }
    }
}
