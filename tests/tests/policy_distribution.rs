//! Policy distribution through a real Kafka broker: the security team publishes signed policies
//! to a compacted topic, applications follow it with a `ReloadingCodec`. Needs FIELDCRYPT_KAFKA
//! (`scripts/servers.sh`). Each test uses a policy topic of its own.

use std::time::{Duration, Instant};

use fieldcrypt::policy::source::{KafkaTopicSource, PolicyPublisher};
use fieldcrypt::{
    Codec, ErrorKind, LocalKms, OwnedHeader, Policy, PolicyVerifier, ReloadingCodec, Result, SignedPolicy, SigningKey,
    Verification, HEADER_NAME,
};
use fieldcrypt_it::{required_env, run_id};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

const NO_HEADERS: &[OwnedHeader] = &[];
const RECORD: &[u8] = br#"{"name":"Ada","email":"ada@example.com","phone":"+44 20 7946 0000"}"#;
const EMAIL: &str = "ada@example.com";
const PHONE: &str = "+44 20 7946 0000";

fn kafka() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", required_env("FIELDCRYPT_KAFKA"));
    config
}

fn policy_text(id: &str, revision: u64, fields: &[&str]) -> String {
    format!(
        r#"{{"fieldcrypt_policy": 1, "id": "{id}", "revision": {revision},
  "encrypt": [{{"name": "pii", "topics": ["customers-*"], "fields": {}, "key": "local://demo"}}]}}"#,
        serde_json::to_string(fields).unwrap()
    )
}

fn factory(policy: Policy) -> Result<Codec> {
    Codec::builder(policy).kms(LocalKms::new().with_secret("demo", b"dev only")).build()
}

/// Which PII values a record encrypted by `codec` still shows.
fn visible(codec: &ReloadingCodec) -> Vec<&'static str> {
    let sealed = codec.encrypt("customers-eu", None, Some(RECORD), NO_HEADERS).unwrap().value.unwrap();
    let sealed = String::from_utf8(sealed).unwrap();
    [EMAIL, PHONE].into_iter().filter(|v| sealed.contains(v)).collect()
}

/// Produces `value` under key `key` as is: what an attacker or a careless script could write.
fn produce_raw(topic: &str, key: &str, value: &[u8]) {
    let producer: BaseProducer = kafka().create().unwrap();
    producer.send(BaseRecord::to(topic).key(key).payload(value)).map_err(|(e, _)| e).unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn follow(topic: &str, key_id: &str, key: &SigningKey) -> ReloadingCodec {
    let source = KafkaTopicSource::new(&kafka(), "acme").unwrap().topic(topic);
    let verifier = PolicyVerifier::new().trust(key_id, key.public_key()).unwrap();
    ReloadingCodec::builder(source, Verification::Required(verifier))
        .interval(Duration::from_millis(200))
        .build(factory)
        .unwrap()
}

#[test]
fn signed_policies_reach_applications_and_hot_reload() {
    let topic = format!("_fieldcrypt_policy-it-{}", run_id());
    let key = SigningKey::generate().unwrap();
    let publisher = PolicyPublisher::new(&kafka()).unwrap().topic(&topic);

    // Another team's policy on the same topic is not ours.
    publisher.publish(&SignedPolicy::sign(&policy_text("other-team", 50, &["name"]), "sec", &key).unwrap()).unwrap();
    let published =
        publisher.publish(&SignedPolicy::sign(&policy_text("acme", 1, &["email"]), "sec", &key).unwrap()).unwrap();
    assert_eq!((published.policy_id.as_str(), published.revision, published.topic.as_str()), ("acme", 1, &*topic));

    let codec = follow(&topic, "sec", &key);
    assert_eq!((codec.status().policy_id.as_str(), codec.status().revision), ("acme", 1));
    assert_eq!(visible(&codec), [PHONE], "revision 1 encrypts email only");

    // Tampered: a signed envelope whose policy text was edited (phone dropped from a rule
    // that would add it). Rejected; revision 1 stays in force.
    let envelope = SignedPolicy::sign(&policy_text("acme", 2, &["email", "phone"]), "sec", &key).unwrap().to_json();
    let mut doc: serde_json::Value = serde_json::from_str(&envelope).unwrap();
    doc["policy"] = policy_text("acme", 2, &["phone"]).into();
    produce_raw(&topic, "acme", doc.to_string().as_bytes());
    wait_for("the tampered policy's rejection", || codec.status().rejections == 1);
    let e = codec.status().last_error.unwrap();
    assert_eq!(e.kind(), ErrorKind::Policy);
    assert!(e.message().contains("does not verify"), "{e}");
    assert_eq!((codec.status().revision, visible(&codec)), (1, vec![PHONE]));

    // A new signed revision: behaviour changes in the running codec.
    publisher.publish(&SignedPolicy::sign(&policy_text("acme", 2, &["email", "phone"]), "sec", &key).unwrap()).unwrap();
    wait_for("revision 2", || codec.status().revision == 2);
    assert!(visible(&codec).is_empty(), "revision 2 encrypts email and phone");
    let record = codec.encrypt("customers-eu", None, Some(RECORD), NO_HEADERS).unwrap();
    let header = fieldcrypt::header::parse(record.fieldcrypt_header().unwrap()).unwrap();
    assert_eq!((header.policy_id, header.policy_revision), ("acme", 2));

    // Unsigned: rejected.
    produce_raw(&topic, "acme", policy_text("acme", 3, &["name"]).as_bytes());
    wait_for("the unsigned policy's rejection", || codec.status().rejections == 2);
    assert!(codec.status().last_error.unwrap().message().contains("not signed"));

    // A signed but older revision (a replay): rejected.
    publisher.publish(&SignedPolicy::sign(&policy_text("acme", 1, &["email"]), "sec", &key).unwrap()).unwrap();
    wait_for("the rollback's rejection", || codec.status().rejections == 3);
    assert!(codec.status().last_error.unwrap().message().contains("rollback"));
    assert_eq!((codec.status().revision, visible(&codec)), (2, vec![]));
    assert_eq!(codec.status().loads, 2);

    // Signed by a key the application does not trust: rejected.
    let stranger = SigningKey::generate().unwrap();
    publisher.publish(&SignedPolicy::sign(&policy_text("acme", 9, &["name"]), "sec", &stranger).unwrap()).unwrap();
    wait_for("the foreign signature's rejection", || codec.status().rejections == 4);
    assert_eq!(codec.status().revision, 2);

    // A fresh application reads the topic's newest acme record (here revision 9, untrusted):
    // it refuses to start rather than run unverified rules.
    let source = KafkaTopicSource::from_bootstrap(&required_env("FIELDCRYPT_KAFKA"), "acme").unwrap().topic(&topic);
    let verifier = PolicyVerifier::new().trust("sec", key.public_key()).unwrap();
    let e = ReloadingCodec::builder(source, Verification::Required(verifier)).manual().build(factory).unwrap_err();
    assert!(e.message().contains("does not verify"), "{e}");

    // A tombstone withdraws nothing: reported, and the running policy stays.
    let producer: BaseProducer = kafka().create().unwrap();
    producer.send(BaseRecord::<str, [u8]>::to(&topic).key("acme")).map_err(|(e, _)| e).unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    wait_for("the tombstone to be reported", || codec.status().fetch_errors == 1);
    assert!(codec.status().last_error.unwrap().message().contains("withdrawn"));
    assert_eq!((codec.status().revision, codec.status().rejections), (2, 4));
    assert!(visible(&codec).is_empty());
}

#[test]
fn records_produced_under_each_revision_say_which_one_and_decrypt() {
    let policy_topic = format!("_fieldcrypt_policy-it-{}-records", run_id());
    let data_topic = format!("customers-it-{}", run_id());
    let key = SigningKey::generate().unwrap();
    let publisher = PolicyPublisher::new(&kafka()).unwrap().topic(&policy_topic);
    publisher.publish(&SignedPolicy::sign(&policy_text("acme", 1, &["email"]), "sec", &key).unwrap()).unwrap();
    let producer_side = follow(&policy_topic, "sec", &key);
    let producer: BaseProducer = kafka().create().unwrap();
    let send = |codec: &ReloadingCodec| {
        let sealed = codec.encrypt(&data_topic, None, Some(RECORD), NO_HEADERS).unwrap();
        let headers = sealed
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |h, x| h.insert(Header { key: &x.name, value: x.value.as_deref() }));
        let value = sealed.value.unwrap();
        producer
            .send(BaseRecord::<(), _>::to(&data_topic).payload(&value).headers(headers))
            .map_err(|(e, _)| e)
            .unwrap();
        producer.flush(Duration::from_secs(30)).unwrap();
    };
    send(&producer_side);
    publisher.publish(&SignedPolicy::sign(&policy_text("acme", 2, &["email", "phone"]), "sec", &key).unwrap()).unwrap();
    wait_for("revision 2", || producer_side.status().revision == 2);
    send(&producer_side);

    // A consumer that follows the same policy topic decrypts both.
    let consumer_side = follow(&policy_topic, "sec", &key);
    let consumer: BaseConsumer =
        kafka().set("group.id", format!("it-{data_topic}")).set("auto.offset.reset", "earliest").create().unwrap();
    consumer.subscribe(&[&data_topic]).unwrap();
    let mut revisions = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while revisions.len() < 2 {
        assert!(Instant::now() < deadline, "two records within 60 s");
        let Some(message) = consumer.poll(Duration::from_millis(500)) else { continue };
        let message = message.unwrap();
        let headers: Vec<(&str, Option<&[u8]>)> =
            message.headers().map(|h| h.iter().map(|h| (h.key, h.value)).collect()).unwrap_or_default();
        let ours = headers.iter().find(|(n, _)| *n == HEADER_NAME).and_then(|(_, v)| *v).unwrap();
        revisions.push(fieldcrypt::header::parse(ours).unwrap().policy_revision);
        let opened = consumer_side.decrypt(&data_topic, None, message.payload(), &headers).unwrap();
        assert_eq!(opened.value.as_deref(), Some(RECORD));
    }
    assert_eq!(revisions, [1, 2]);
}

#[test]
fn the_publisher_creates_a_compacted_topic_and_refuses_an_uncompacted_one() {
    let compacted = format!("_fieldcrypt_policy-it-{}-created", run_id());
    PolicyPublisher::new(&kafka()).unwrap().topic(&compacted).ensure_topic().unwrap();
    // Creating again is fine (the topic exists and is compacted).
    PolicyPublisher::new(&kafka()).unwrap().topic(&compacted).ensure_topic().unwrap();

    let plain = format!("_fieldcrypt_policy-it-{}-plain", run_id());
    let admin: AdminClient<DefaultClientContext> = kafka().create().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let new = NewTopic::new(&plain, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "delete");
    let created = runtime.block_on(admin.create_topics([&new], &AdminOptions::new())).unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    let key = SigningKey::generate().unwrap();
    let e = PolicyPublisher::new(&kafka())
        .unwrap()
        .topic(&plain)
        .publish(&SignedPolicy::sign(&policy_text("acme", 1, &["email"]), "sec", &key).unwrap())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("compact"), "{e}");
}
