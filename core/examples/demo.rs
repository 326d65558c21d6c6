//! fieldcrypt demo: the whole produce → store → consume path on an in-process Kafka (librdkafka's
//! mock cluster), with no server to install. Run it with `make demo`.
//!
//! It produces customer records whose `password` and `visa` fields are encrypted under a local
//! KEK, shows one record as Kafka stores it, then consumes the topic twice: as a consumer allowed
//! to decrypt both fields, and as one allowed only `visa`.

use std::time::Duration;

use fieldcrypt::header::{self, DekLocation};
use fieldcrypt::kafka::{decrypt_message, EncryptingProducer};
use fieldcrypt::{Codec, LocalKms, Policy, HEADER_NAME};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;

const TOPIC: &str = "customers";

fn fixture(path: &str) -> String {
    format!("{}/../schemas/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn codec(profile: Option<&str>) -> Result<Codec, fieldcrypt::Error> {
    let policy = Policy::from_file(fixture("policies/demo.json"))?;
    let mut builder = Codec::builder(policy).kms(LocalKms::from_file(fixture("keys/local-dev.json"))?);
    if let Some(p) = profile {
        builder = builder.profile(p);
    }
    builder.build()
}

fn consumer(bootstrap: &str, group: &str) -> Result<StreamConsumer, Box<dyn std::error::Error>> {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    c.subscribe(&[TOPIC])?;
    Ok(c)
}

async fn consume_as(
    bootstrap: &str,
    title: &str,
    codec: Option<&Codec>,
    count: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    println!("\n== {title} ==");
    let consumer = consumer(bootstrap, &format!("demo-{}", title.len()))?;
    for _ in 0..count {
        let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await??;
        match codec {
            None => {
                println!("value  : {}", String::from_utf8_lossy(msg.payload().unwrap_or_default()));
                let headers = msg.headers().expect("encrypted records carry headers");
                for h in headers.iter() {
                    let v = h.value.unwrap_or_default();
                    println!("header : {} ({} bytes) = {}", h.key, v.len(), to_hex(v));
                    if h.key == HEADER_NAME {
                        describe_header(v)?;
                    }
                }
                break; // one raw record is enough to show the stored form
            }
            Some(codec) => {
                let decrypted = decrypt_message(codec, &msg)?;
                let left =
                    if decrypted.record.fieldcrypt_header().is_some() { "  (some fields still encrypted)" } else { "" };
                println!("{}{left}", String::from_utf8_lossy(decrypted.record.value.as_deref().unwrap_or_default()));
            }
        }
    }
    Ok(())
}

fn describe_header(bytes: &[u8]) -> Result<(), fieldcrypt::Error> {
    let env = header::parse(bytes)?;
    println!("         format v{}, policy {:?} revision {}", bytes[0], env.policy_id, env.policy_revision);
    for k in &env.keys {
        let wrapped = match k.dek {
            DekLocation::Inline(w) => format!("wrapped DEK inline ({} bytes)", w.len()),
            DekLocation::KeyStore => "wrapped DEK in key store".into(),
        };
        let fields: Vec<&str> = k.fields.iter().map(|(_, p)| *p).collect();
        println!(
            "         key: {} | KEK {} v{} | DEK {} | {wrapped} | fields {fields:?}",
            k.algorithm.name(),
            k.kek,
            k.kek_version,
            to_hex(&k.dek_id)
        );
    }
    Ok(())
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = MockCluster::new(1)?;
    cluster.create_topic(TOPIC, 1, 1)?;
    let bootstrap = cluster.bootstrap_servers();
    println!("fieldcrypt demo — in-process Kafka mock cluster at {bootstrap}");
    println!(
        "policy: schemas/policies/demo.json (encrypt `password` and `visa` of topic `{TOPIC}` under local://demo-kek)"
    );
    println!("keys  : schemas/keys/local-dev.json (LOCAL DEVELOPMENT KEY, NOT FOR PRODUCTION)");

    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).set("message.timeout.ms", "10000").create()?;
    let producer = EncryptingProducer::new(producer, codec(None)?);
    let records = std::fs::read_to_string(fixture("records/customers.jsonl"))?;
    let records: Vec<&str> = records.lines().filter(|l| !l.trim().is_empty()).collect();
    println!("\n== produced (plaintext the application sent) ==");
    for (i, line) in records.iter().enumerate() {
        println!("{line}");
        let key = (i + 1).to_string();
        producer.send(TOPIC, Some(key.as_bytes()), Some(line.as_bytes()), None, Duration::from_secs(10)).await?;
    }

    consume_as(&bootstrap, "stored in Kafka (raw consumer, no fieldcrypt)", None, 1).await?;
    consume_as(
        &bootstrap,
        "consumer with profile `full` (decrypts password and visa)",
        Some(&codec(Some("full"))?),
        records.len(),
    )
    .await?;
    consume_as(
        &bootstrap,
        "consumer with profile `visa-only` (partial view: password stays ciphertext)",
        Some(&codec(Some("visa-only"))?),
        records.len(),
    )
    .await?;
    println!("\ndemo finished");
    Ok(())
}
