//! Criterion benchmarks of the schema-registry formats on the standard workload (the payment
//! record of `schemas/payment/`, four PII-tagged fields), beside each format's generic
//! decode + encode of the same record, measured in the same run:
//!
//! * `avro/encrypt`, `avro/decrypt`: `Codec::encrypt` / `decrypt` of the Confluent-framed Avro
//!   record (tags resolved from the writer schema, `StaticSchemas`, warm caches);
//!   `avro/plain_roundtrip`: apache-avro `from_avro_datum` + `to_avro_datum` (generic `Value`).
//! * `proto/encrypt`, `proto/decrypt`, `proto/plain_roundtrip`: the same for Protobuf, the
//!   baseline being prost-reflect `DynamicMessage` decode + encode.
//!
//! Run with `cargo bench -p fieldcrypt --bench formats`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fieldcrypt::framing::SchemaRef;
use fieldcrypt::{Codec, LocalKms, OwnedHeader, Policy, SchemaText, SchemaType, StaticSchemas};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage};

const TOPIC: &str = "payments";
const NO_HEADERS: &[OwnedHeader] = &[];

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(schemas_dir().join(rel)).unwrap()
}

fn codec() -> Codec {
    let avro = SchemaText {
        schema_type: SchemaType::Avro,
        name: "payment.avsc".into(),
        text: read("payment/payment.avsc"),
        references: vec![],
    };
    let proto = SchemaText {
        schema_type: SchemaType::Protobuf,
        name: "payment.proto".into(),
        text: read("payment/payment.proto"),
        references: vec![("confluent/meta.proto".into(), read("confluent/meta.proto"))],
    };
    let schemas = StaticSchemas::new().with(SchemaRef::Id(1), avro).with(SchemaRef::Id(2), proto);
    Codec::builder(Policy::from_file(schemas_dir().join("policies/demo.json")).unwrap())
        .kms(LocalKms::from_file(schemas_dir().join("keys/local-dev.json")).unwrap())
        .schemas(schemas)
        .build()
        .unwrap()
}

fn framed(id: u32, indexes: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(indexes);
    out.extend_from_slice(payload);
    out
}

/// Encrypt / decrypt benchmarks of one framed record, with checks that they do the real work.
fn bench_codec(c: &mut Criterion, group: &str, record: &[u8], plain: impl Fn() -> Vec<u8>) {
    let producer = codec();
    let consumer = codec();
    let sealed = producer.encrypt(TOPIC, None, Some(record), NO_HEADERS).unwrap();
    assert_eq!(producer.stats().fields_encrypted, 4, "{group}: the four PII fields are encrypted");
    let opened = consumer.decrypt(TOPIC, None, sealed.value.as_deref(), &sealed.headers).unwrap();
    assert_eq!(opened.value.as_deref(), Some(record), "{group}: decrypt restores the record");
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    g.bench_function("encrypt", |b| {
        b.iter(|| producer.encrypt(black_box(TOPIC), None, Some(black_box(record)), NO_HEADERS).unwrap())
    });
    g.bench_function("decrypt", |b| {
        b.iter(|| {
            consumer.decrypt(black_box(TOPIC), None, black_box(sealed.value.as_deref()), &sealed.headers).unwrap()
        })
    });
    g.bench_function("plain_roundtrip", |b| b.iter(&plain));
    g.finish();
    assert_eq!(consumer.stats().kms_unwrap_calls, 1, "{group}: the consumer never went back to the KMS");
}

fn formats(c: &mut Criterion) {
    let avro_payload = std::fs::read(schemas_dir().join("payment/payment.avro.bin")).unwrap();
    let schema = apache_avro::Schema::parse_str(&read("payment/payment.avsc")).unwrap();
    let avro_record = framed(1, &[], &avro_payload);
    bench_codec(c, "avro", &avro_record, || {
        let value = apache_avro::from_avro_datum(&schema, &mut black_box(&avro_payload[..]), None).unwrap();
        apache_avro::to_avro_datum(&schema, value).unwrap()
    });

    let pb_payload = std::fs::read(schemas_dir().join("payment/payment.pb.bin")).unwrap();
    let fds = protox::compile(["payment/payment.proto"], [schemas_dir()]).unwrap();
    let desc = DescriptorPool::from_file_descriptor_set(fds).unwrap().get_message_by_name("bench.Payment").unwrap();
    let pb_record = framed(2, &[2, 2], &pb_payload); // bench.Payment: message indexes [1]
    bench_codec(c, "proto", &pb_record, || {
        DynamicMessage::decode(desc.clone(), black_box(&pb_payload[..])).unwrap().encode_to_vec()
    });
}

criterion_group!(benches, formats);
criterion_main!(benches);
