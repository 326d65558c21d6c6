//! The governance scenario every binding runs (schemas/governance/README.md), here through
//! `fieldcrypt::config::open`, the entry point the C ABI and Python use: a signed policy followed
//! on a Kafka topic, hot reload, a tampered revision refused, per-subject keys in the Kafka key
//! store, and shredding seen by a fresh and a running consumer. Needs FIELDCRYPT_KAFKA.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fieldcrypt::config::{self, ConfiguredCodec};
use fieldcrypt::{ErrorKind, OwnedHeader, Record, Reload};
use fieldcrypt_it::{required_env, run_id};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

const NO_HEADERS: &[OwnedHeader] = &[];

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/governance").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Publishes a policy document as the security team's tooling would: key = policy id.
fn publish(bootstrap: &str, topic: &str, document: &str) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    producer.send(BaseRecord::to(topic).key("governance-demo").payload(document)).map_err(|(e, _)| e).unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn configuration(bootstrap: &str, policy_topic: &str, key_topic: &str, profile: Option<&str>) -> String {
    let trusted: Value = serde_json::from_str(&fixture("trusted-keys.json")).unwrap();
    let mut config = json!({
        "kms": {"local": {"secrets": {"governance": "governance-test-secret"}}},
        "trusted_keys": trusted,
        "policy_source": {"kafka": {"bootstrap": bootstrap, "topic": policy_topic, "timeout": 20},
                          "policy_id": "governance-demo", "manual": true},
        "key_store": {"kafka": {"bootstrap": bootstrap, "topic": key_topic, "timeout": 20}},
    });
    if let Some(profile) = profile {
        config["profile"] = json!(profile);
    }
    config.to_string()
}

fn customer(id: &str) -> Vec<u8> {
    json!({"customer_id": id, "email": format!("{id}@example.com"), "card": format!("4111-{id}")})
        .to_string()
        .into_bytes()
}

fn encrypt(codec: &ConfiguredCodec, topic: &str, id: &str) -> Record {
    codec.codec().encrypt(topic, None, Some(&customer(id)), NO_HEADERS).unwrap()
}

/// Which of the customer's PII values the encrypted record still shows.
fn in_clear(record: &Record, id: &str) -> Vec<&'static str> {
    let text = String::from_utf8(record.value.clone().unwrap()).unwrap();
    let mut shown = Vec::new();
    if text.contains(&format!("{id}@example.com")) {
        shown.push("email");
    }
    if text.contains(&format!("4111-{id}")) {
        shown.push("card");
    }
    shown
}

fn decrypts(codec: &ConfiguredCodec, topic: &str, record: &Record) -> fieldcrypt::Result<Vec<u8>> {
    codec.codec().decrypt(topic, None, record.value.as_deref(), &record.headers).map(|r| r.value.unwrap())
}

#[test]
fn the_governance_scenario_through_the_configuration_document() {
    let bootstrap = required_env("FIELDCRYPT_KAFKA");
    let run = run_id();
    let (policy_topic, key_topic, topic) = (
        format!("_fieldcrypt_policy-gov-{run}"),
        format!("_fieldcrypt_keys-gov-{run}"),
        format!("customers-gov-{run}"),
    );

    // 1. Revision 1, signed: email encrypted, card not.
    publish(&bootstrap, &policy_topic, &fixture("policy-r1.signed.json"));
    let producer = config::open(None, &configuration(&bootstrap, &policy_topic, &key_topic, None)).unwrap();
    let status = producer.status();
    assert_eq!((status.policy_id.as_str(), status.revision), ("governance-demo", 1));
    assert_eq!(status.signed_by.as_deref(), Some("governance-test"));
    assert_eq!(in_clear(&encrypt(&producer, &topic, "c-1"), "c-1"), ["card"]);

    // 2. A tampered revision 2 is refused; revision 1 stays in force.
    publish(&bootstrap, &policy_topic, &fixture("policy-r2.tampered.json"));
    assert_eq!(producer.reload_now().unwrap_err().kind(), ErrorKind::Policy);
    let status = producer.status();
    assert_eq!((status.revision, status.rejections), (1, 1));
    assert_eq!(in_clear(&encrypt(&producer, &topic, "c-1"), "c-1"), ["card"]);

    // 3. The signed revision 2 loads without a restart: card is encrypted too.
    publish(&bootstrap, &policy_topic, &fixture("policy-r2.signed.json"));
    assert_eq!(producer.reload_now().unwrap(), Reload::Loaded { policy_id: "governance-demo".into(), revision: 2 });
    assert_eq!(producer.status().revision, 2);
    assert!(in_clear(&encrypt(&producer, &topic, "c-1"), "c-1").is_empty());

    // 4. Shredding c-2 through the producer's codec.
    let records: Vec<(&str, Record)> =
        ["c-1", "c-2", "c-3"].into_iter().map(|c| (c, encrypt(&producer, &topic, c))).collect();
    let strict = configuration(&bootstrap, &policy_topic, &key_topic, Some("strict"));
    let running = config::open(None, &strict).unwrap();
    for (_, r) in &records {
        decrypts(&running, &topic, r).unwrap();
    }
    assert!(producer.codec().shred("c-2").unwrap() >= 1);
    let fresh = config::open(None, &strict).unwrap();
    for consumer in [&fresh, &running] {
        let deadline = Instant::now() + Duration::from_secs(10);
        for (id, record) in &records {
            if *id == "c-2" {
                loop {
                    match decrypts(consumer, &topic, record) {
                        Err(e) if e.kind() == ErrorKind::Shredded => break,
                        other => assert!(Instant::now() < deadline, "c-2 still reads: {:?}", other.map(|_| ())),
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            } else {
                let clear = decrypts(consumer, &topic, record).unwrap();
                assert!(String::from_utf8(clear).unwrap().contains(&format!("{id}@example.com")));
            }
        }
    }
}
