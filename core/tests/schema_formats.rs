//! Schema-registry formats through the codec: records framed as Confluent's serializers frame
//! them (magic byte + schema id, or the schema id in a header), writer schemas from
//! `StaticSchemas`, PII fields selected by the schemas' tags. The stored form must stay valid
//! under the same schema, keep its framing, and decrypt back to the exact original bytes.

use std::path::PathBuf;

use apache_avro::types::Value as AvroValue;
use base64::Engine;
use fieldcrypt::framing::SchemaRef;
use fieldcrypt::{Codec, ErrorKind, LocalKms, OwnedHeader, Policy, Record, SchemaText, SchemaType, StaticSchemas};
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, ReflectMessage, Value as ProtoValue};

const NO_HEADERS: &[OwnedHeader] = &[];
const PII: [&str; 4] = ["jane.doe@example.com", "123-45-6789", "1600 Amphitheatre Parkway", "+1-650-555-0100"];

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(schemas_dir().join(rel)).unwrap()
}

fn sources() -> StaticSchemas {
    StaticSchemas::new()
        .with(SchemaRef::Id(1), text(SchemaType::Avro, "payment.avsc", read("payment/payment.avsc"), vec![]))
        .with(
            SchemaRef::Id(2),
            text(
                SchemaType::Protobuf,
                "payment.proto",
                read("payment/payment.proto"),
                vec![("confluent/meta.proto".into(), read("confluent/meta.proto"))],
            ),
        )
        .with(
            SchemaRef::Id(3),
            text(SchemaType::Json, "payment.schema.json", read("payment/payment.schema.json"), vec![]),
        )
        .with(
            SchemaRef::Guid("00010203-0405-0607-0809-0a0b0c0d0e0f".into()),
            text(SchemaType::Avro, "payment.avsc", read("payment/payment.avsc"), vec![]),
        )
}

fn text(schema_type: SchemaType, name: &str, text: String, references: Vec<(String, String)>) -> SchemaText {
    SchemaText { schema_type, name: name.into(), text, references }
}

fn codec(profile: Option<&str>) -> Codec {
    let policy = Policy::from_file(schemas_dir().join("policies/demo.json")).unwrap();
    let mut b = Codec::builder(policy)
        .kms(LocalKms::from_file(schemas_dir().join("keys/local-dev.json")).unwrap())
        .schemas(sources());
    if let Some(p) = profile {
        b = b.profile(p);
    }
    b.build().unwrap()
}

fn framed(id: u32, extra: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(extra);
    out.extend_from_slice(payload);
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn round_trip(topic: &str, value: &[u8], headers: &[OwnedHeader], prefix_len: usize) -> Record {
    let producer = codec(None);
    let sealed = producer.encrypt(topic, None, Some(value), headers).unwrap();
    let stored = sealed.value.clone().unwrap();
    assert_eq!(&stored[..prefix_len], &value[..prefix_len], "framing passes through unchanged");
    for secret in PII {
        assert!(contains(value, secret), "fixture holds {secret}");
        assert!(!contains(&stored, secret), "{secret} left in the clear");
    }
    assert_eq!(producer.stats().fields_encrypted, 4);
    let header = fieldcrypt::header::parse(sealed.fieldcrypt_header().unwrap()).unwrap();
    assert_eq!(header.keys.len(), 1);
    let consumer = codec(None);
    let opened = consumer.decrypt(topic, None, sealed.value.as_deref(), &sealed.headers).unwrap();
    assert_eq!(opened.value.as_deref(), Some(value), "decrypt restores the exact original bytes");
    sealed
}

// ---- Avro ---------------------------------------------------------------------------------------

fn avro_schema() -> apache_avro::Schema {
    apache_avro::Schema::parse_str(&read("payment/payment.avsc")).unwrap()
}

fn avro_payment(phone: Option<&str>) -> Vec<u8> {
    let json: serde_json::Value = serde_json::from_str(&read("payment/payment.json")).unwrap();
    let schema = avro_schema();
    let mut fields: Vec<(String, AvroValue)> = Vec::new();
    let s = |k: &str| AvroValue::String(json[k].as_str().unwrap().into());
    let l = |k: &str| AvroValue::Long(json[k].as_i64().unwrap());
    fields.push(("id".into(), s("id")));
    fields.push(("customer_id".into(), l("customer_id")));
    fields.push(("email".into(), s("email")));
    fields.push(("full_name".into(), s("full_name")));
    fields.push(("ssn".into(), s("ssn")));
    fields.push(("amount_cents".into(), l("amount_cents")));
    fields.push(("currency".into(), s("currency")));
    fields.push(("created_at".into(), l("created_at")));
    let a = &json["address"];
    let addr = ["street", "city", "zip", "country"]
        .iter()
        .map(|k| (k.to_string(), AvroValue::String(a[k].as_str().unwrap().into())))
        .collect();
    fields.push(("address".into(), AvroValue::Record(addr)));
    let tags = json["tags"].as_array().unwrap().iter().map(|t| AvroValue::String(t.as_str().unwrap().into())).collect();
    fields.push(("tags".into(), AvroValue::Array(tags)));
    let phone = match phone {
        Some(p) => AvroValue::Union(1, Box::new(AvroValue::String(p.into()))),
        None => AvroValue::Union(0, Box::new(AvroValue::Null)),
    };
    fields.push(("phone".into(), phone));
    apache_avro::to_avro_datum(&schema, AvroValue::Record(fields)).unwrap()
}

fn avro_field(payload: &[u8], schema: &apache_avro::Schema, name: &str) -> AvroValue {
    let AvroValue::Record(fields) = apache_avro::from_avro_datum(schema, &mut &payload[..], None).unwrap() else {
        panic!("not a record")
    };
    fields.into_iter().find(|(n, _)| n == name).unwrap().1
}

#[test]
fn avro_tagged_fields_round_trip_and_stay_valid() {
    let value = framed(1, &[], &avro_payment(Some(PII[3])));
    let sealed = round_trip("payments", &value, NO_HEADERS, 5);
    // Still valid Avro under the same writer schema: a consumer without fieldcrypt reads it.
    let stored = sealed.value.unwrap();
    let schema = avro_schema();
    assert_eq!(avro_field(&stored[5..], &schema, "full_name"), AvroValue::String("Jane Alexandra Doe".into()));
    let AvroValue::String(email) = avro_field(&stored[5..], &schema, "email") else { panic!() };
    assert!(fieldcrypt::TEXT_ENCODING.decode(&email).is_ok_and(|ct| ct.len() > 28), "Base64 ciphertext: {email}");
    let header = fieldcrypt::header::parse(sealed.headers.last().unwrap().value.as_ref().unwrap()).unwrap().keys[0]
        .fields
        .iter()
        .map(|(_, p)| p.to_string())
        .collect::<Vec<_>>();
    assert_eq!(header, ["bench.Payment::email", "bench.Payment::ssn", "bench.Address::street", "bench.Payment::phone"]);
}

#[test]
fn avro_null_union_branch_is_not_selected() {
    let value = framed(1, &[], &avro_payment(None));
    let producer = codec(None);
    let sealed = producer.encrypt("payments", None, Some(&value), NO_HEADERS).unwrap();
    assert_eq!(producer.stats().fields_encrypted, 3, "phone is null: nothing to encrypt there");
    let stored = sealed.value.clone().unwrap();
    assert_eq!(avro_field(&stored[5..], &avro_schema(), "phone"), AvroValue::Union(0, Box::new(AvroValue::Null)));
    let opened = codec(None).decrypt("payments", None, sealed.value.as_deref(), &sealed.headers).unwrap();
    assert_eq!(opened.value.as_deref(), Some(&value[..]));
}

#[test]
fn avro_schema_id_in_a_header() {
    let mut guid = vec![1u8];
    guid.extend(0u8..16);
    let headers = [OwnedHeader::new("__value_schema_id", guid)];
    let value = avro_payment(Some(PII[3]));
    let sealed = round_trip("payments", &value, &headers, 0);
    assert_eq!(sealed.header("__value_schema_id"), headers[0].value.as_deref(), "schema id header kept");
}

#[test]
fn avro_reader_with_a_newer_schema_reads_the_decrypted_record() {
    let value = framed(1, &[], &avro_payment(Some(PII[3])));
    let sealed = codec(None).encrypt("payments", None, Some(&value), NO_HEADERS).unwrap();
    let opened = codec(None).decrypt("payments", None, sealed.value.as_deref(), &sealed.headers).unwrap();
    // v2 adds a field with a default; the consumer resolves writer v1 -> reader v2.
    let mut v2: serde_json::Value = serde_json::from_str(&read("payment/payment.avsc")).unwrap();
    v2["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "channel", "type": "string", "default": "web"}));
    let reader = apache_avro::Schema::parse_str(&v2.to_string()).unwrap();
    let payload = &opened.value.as_ref().unwrap()[5..];
    let AvroValue::Record(fields) =
        apache_avro::from_avro_datum(&avro_schema(), &mut &payload[..], Some(&reader)).unwrap()
    else {
        panic!()
    };
    let get = |n: &str| fields.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert_eq!(get("email"), AvroValue::String(PII[0].into()));
    assert_eq!(get("channel"), AvroValue::String("web".into()));
}

#[test]
fn unknown_schema_id_and_missing_schema_source_are_clear_errors() {
    let value = framed(99, &[], &avro_payment(None));
    let e = codec(None).encrypt("payments", None, Some(&value), NO_HEADERS).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Registry, "{e}");
    assert!(e.message().contains("99"), "{e}");
    let policy = Policy::from_file(schemas_dir().join("policies/demo.json")).unwrap();
    let bare = Codec::builder(policy)
        .kms(LocalKms::from_file(schemas_dir().join("keys/local-dev.json")).unwrap())
        .build()
        .unwrap();
    let e = bare.encrypt("payments", None, Some(&framed(1, &[], &avro_payment(None))), NO_HEADERS).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}

// ---- Protobuf -----------------------------------------------------------------------------------

fn proto_message() -> MessageDescriptor {
    let fds = protox::compile(["payment/payment.proto"], [schemas_dir()]).unwrap();
    DescriptorPool::from_file_descriptor_set(fds).unwrap().get_message_by_name("bench.Payment").unwrap()
}

fn proto_payment() -> Vec<u8> {
    let json: serde_json::Value = serde_json::from_str(&read("payment/payment.json")).unwrap();
    let desc = proto_message();
    let mut m = DynamicMessage::new(desc.clone());
    for k in ["id", "email", "full_name", "ssn", "currency", "phone"] {
        m.set_field_by_name(k, ProtoValue::String(json[k].as_str().unwrap().into()));
    }
    for k in ["customer_id", "amount_cents", "created_at"] {
        m.set_field_by_name(k, ProtoValue::I64(json[k].as_i64().unwrap()));
    }
    let addr_desc = desc.get_field_by_name("address").unwrap().kind();
    let mut addr = DynamicMessage::new(addr_desc.as_message().unwrap().clone());
    for k in ["street", "city", "zip", "country"] {
        addr.set_field_by_name(k, ProtoValue::String(json["address"][k].as_str().unwrap().into()));
    }
    m.set_field_by_name("address", ProtoValue::Message(addr));
    let tags =
        json["tags"].as_array().unwrap().iter().map(|t| ProtoValue::String(t.as_str().unwrap().into())).collect();
    m.set_field_by_name("tags", ProtoValue::List(tags));
    prost::Message::encode_to_vec(&m)
}

#[test]
fn protobuf_tagged_fields_round_trip_and_stay_valid() {
    // bench.Payment is the file's second message: message indexes [1], written as the zig-zag
    // varints count 1 (0x02) and index 1 (0x02).
    let value = framed(2, &[2, 2], &proto_payment());
    let sealed = round_trip("payments", &value, NO_HEADERS, 7);
    let stored = sealed.value.unwrap();
    let m = DynamicMessage::decode(proto_message(), &stored[7..]).expect("still a valid bench.Payment");
    assert_eq!(m.get_field_by_name("full_name").unwrap().as_str(), Some("Jane Alexandra Doe"));
    let email = m.get_field_by_name("email").unwrap().as_str().unwrap().to_string();
    assert!(fieldcrypt::TEXT_ENCODING.decode(&email).is_ok(), "{email}");
    assert_eq!(m.descriptor().full_name(), "bench.Payment");
}

// ---- JSON Schema --------------------------------------------------------------------------------

#[test]
fn json_schema_tagged_fields_round_trip() {
    // Compact JSON: fieldcrypt drops insignificant whitespace inside the objects it rewrites.
    let json: serde_json::Value = serde_json::from_str(&read("payment/payment.json")).unwrap();
    let value = framed(3, &[], &serde_json::to_vec(&json).unwrap());
    let sealed = round_trip("payments", &value, NO_HEADERS, 5);
    let doc: serde_json::Value = serde_json::from_slice(&sealed.value.unwrap()[5..]).unwrap();
    assert_eq!(doc["full_name"], "Jane Alexandra Doe");
    assert!(doc["address"]["street"].as_str().unwrap().len() > 40);
}

/// The binary forms of the payment record in `schemas/payment/` (shared with every other test
/// suite) are exactly what apache-avro and prost-reflect encode from `payment.json`.
/// `FIELDCRYPT_REGENERATE=1 cargo test --test schema_formats` rewrites them.
#[test]
fn binary_payment_fixtures_match_their_encoders() {
    for (file, bytes) in
        [("payment/payment.avro.bin", avro_payment(Some(PII[3]))), ("payment/payment.pb.bin", proto_payment())]
    {
        let path = schemas_dir().join(file);
        if std::env::var_os("FIELDCRYPT_REGENERATE").is_some() {
            std::fs::write(&path, &bytes).unwrap();
        }
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{file} is stale: regenerate it");
    }
}

/// Confluent's Python serializer registers Protobuf schemas as the Base64 of a serialized
/// `FileDescriptorProto`, and Apicurio returns them that way: such a schema works too.
#[test]
fn protobuf_schema_registered_as_a_base64_descriptor() {
    // The raw FileDescriptorProto (prost_types would drop the extension options, i.e. the tags).
    let mut compiler = protox::Compiler::new([schemas_dir()]).unwrap();
    compiler.open_file("payment/payment.proto").unwrap();
    let set = compiler.encode_file_descriptor_set();
    let file = raw_files(&set).into_iter().find(|f| contains(f, "payment/payment.proto")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(file);
    let schemas = StaticSchemas::new().with(
        SchemaRef::Id(2),
        text(
            SchemaType::Protobuf,
            "payments-value",
            b64,
            vec![("confluent/meta.proto".into(), read("confluent/meta.proto"))],
        ),
    );
    let policy = Policy::from_file(schemas_dir().join("policies/demo.json")).unwrap();
    let keys = || LocalKms::from_file(schemas_dir().join("keys/local-dev.json")).unwrap();
    let producer = Codec::builder(policy.clone()).kms(keys()).schemas(schemas).build().unwrap();
    let value = framed(2, &[2, 2], &proto_payment());
    let sealed = producer.encrypt("payments", None, Some(&value), NO_HEADERS).unwrap();
    assert_eq!(producer.stats().fields_encrypted, 4);
    let opened = codec(None).decrypt("payments", None, sealed.value.as_deref(), &sealed.headers).unwrap();
    assert_eq!(opened.value.as_deref(), Some(&value[..]));
}

/// The `file` entries (field 1) of an encoded FileDescriptorSet, as raw bytes.
fn raw_files(set: &[u8]) -> Vec<&[u8]> {
    let (mut pos, mut out) = (0, Vec::new());
    let varint = |pos: &mut usize| {
        let (mut v, mut shift) = (0usize, 0);
        loop {
            let b = set[*pos];
            *pos += 1;
            v |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    };
    while pos < set.len() {
        assert_eq!(varint(&mut pos), (1 << 3) | 2, "FileDescriptorSet holds only field 1");
        let len = varint(&mut pos);
        out.push(&set[pos..pos + len]);
        pos += len;
    }
    out
}
