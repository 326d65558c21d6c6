//! The Rust peer of the produce/consume matrix (xtests/README.md), with rdkafka:
//!
//! ```text
//! xtest-peer produce --bootstrap HOST:PORT --spec SPEC.json --topic-prefix PREFIX
//! xtest-peer consume --bootstrap HOST:PORT --spec SPEC.json --topic-prefix PREFIX --group GROUP --out OUT.json
//! ```

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use fieldcrypt::kafka::headers_of;
use fieldcrypt::{Codec, Record};
use fieldcrypt_xtests::JsonRecord;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use serde_json::{json, Value};

/// The formats in the order every peer produces them.
const FORMATS: [&str; 4] = ["json", "avro", "protobuf", "json_schema"];

#[derive(Deserialize)]
struct Spec {
    policy: Value,
    producer_config: Value,
    consumer_config: Value,
    formats: BTreeMap<String, Vec<JsonRecord>>,
}

struct Args {
    command: String,
    options: BTreeMap<String, String>,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut it = std::env::args().skip(1);
        let command =
            it.next().ok_or("usage: xtest-peer produce|consume --bootstrap B --spec S --topic-prefix P ...")?;
        let mut options = BTreeMap::new();
        while let Some(flag) = it.next() {
            let name = flag.strip_prefix("--").ok_or_else(|| format!("unexpected argument {flag:?}"))?;
            options.insert(name.to_string(), it.next().ok_or_else(|| format!("{flag} needs a value"))?);
        }
        Ok(Args { command, options })
    }

    fn get(&self, name: &str) -> Result<&str, String> {
        self.options.get(name).map(String::as_str).ok_or_else(|| format!("--{name} is required"))
    }
}

fn codec(spec: &Spec, config: &Value) -> Result<Codec, String> {
    fieldcrypt::config::codec_from_json(&spec.policy.to_string(), &config.to_string()).map_err(|e| e.to_string())
}

fn formats(spec: &Spec) -> impl Iterator<Item = (&'static str, &Vec<JsonRecord>)> {
    FORMATS.into_iter().filter_map(|f| spec.formats.get(f).map(|r| (f, r)))
}

fn produce(args: &Args, spec: &Spec) -> Result<(), String> {
    let codec = codec(spec, &spec.producer_config)?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", args.get("bootstrap")?)
        .set("message.timeout.ms", "30000")
        .create()
        .map_err(|e| e.to_string())?;
    let prefix = args.get("topic-prefix")?;
    for (format, records) in formats(spec) {
        let topic = format!("{prefix}-{format}");
        for r in records {
            let plain = r.record()?;
            let sealed = codec
                .encrypt(&topic, plain.key.as_deref(), plain.value.as_deref(), &plain.headers)
                .map_err(|e| format!("{topic}: encrypt: {e}"))?;
            let headers = sealed
                .headers
                .iter()
                .fold(OwnedHeaders::new(), |h, x| h.insert(Header { key: &x.name, value: x.value.as_deref() }));
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(headers);
            if let Some(k) = sealed.key.as_deref() {
                record = record.key(k);
            }
            if let Some(v) = sealed.value.as_deref() {
                record = record.payload(v);
            }
            let delivery = producer.send_result(record).map_err(|(e, _)| format!("{topic}: send: {e}"))?;
            fieldcrypt::kafka::block_on(delivery)
                .map_err(|_| format!("{topic}: delivery canceled"))?
                .map_err(|(e, _)| format!("{topic}: delivery: {e}"))?;
        }
    }
    Ok(())
}

fn consume(args: &Args, spec: &Spec) -> Result<(), String> {
    let codec = codec(spec, &spec.consumer_config)?;
    let prefix = args.get("topic-prefix")?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", args.get("bootstrap")?)
        .set("group.id", args.get("group")?)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let wanted: BTreeMap<String, (&str, usize)> =
        formats(spec).map(|(f, r)| (format!("{prefix}-{f}"), (f, r.len()))).collect();
    let topics: Vec<&str> = wanted.keys().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|e| e.to_string())?;
    let mut got: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while wanted.values().any(|(f, n)| got.get(f).map_or(0, Vec::len) < *n) {
        if Instant::now() > deadline {
            return Err(format!("timed out; got {:?}", got.iter().map(|(f, r)| (f, r.len())).collect::<Vec<_>>()));
        }
        let Some(message) = consumer.poll(Duration::from_millis(500)) else { continue };
        let m = message.map_err(|e| format!("poll: {e}"))?;
        let (format, _) = wanted.get(m.topic()).ok_or_else(|| format!("unexpected topic {}", m.topic()))?;
        let headers = headers_of(&m);
        let raw = Record {
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers: headers
                .iter()
                .map(|(n, v)| fieldcrypt::OwnedHeader { name: n.to_string(), value: v.map(<[u8]>::to_vec) })
                .collect(),
        };
        let decrypted = codec
            .decrypt(m.topic(), m.key(), m.payload(), &headers)
            .map_err(|e| format!("{}: decrypt: {e}", m.topic()))?;
        got.entry(format)
            .or_default()
            .push(json!({"raw": JsonRecord::of(&raw), "decrypted": JsonRecord::of(&decrypted)}));
    }
    let out = json!({"formats": got});
    std::fs::write(args.get("out")?, serde_json::to_vec_pretty(&out).map_err(|e| e.to_string())?)
        .map_err(|e| format!("{}: {e}", args.get("out").unwrap_or_default()))
}

fn run() -> Result<(), String> {
    let args = Args::parse()?;
    let spec_path = args.get("spec")?;
    let spec: Spec = serde_json::from_slice(&std::fs::read(spec_path).map_err(|e| format!("{spec_path}: {e}"))?)
        .map_err(|e| format!("{spec_path}: {e}"))?;
    match args.command.as_str() {
        "produce" => produce(&args, &spec),
        "consume" => consume(&args, &spec),
        other => Err(format!("unknown command {other:?} (produce or consume)")),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtest-peer (rust): {e}");
            ExitCode::FAILURE
        }
    }
}
