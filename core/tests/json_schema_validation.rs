//! `CodecBuilder::validate_json_schema`: JSON Schema records checked against their writer schema —
//! the plaintext before encryption, and the record after decryption when every encrypted field
//! was decrypted. Errors name the schema and the failing location, never a value.

mod common;

use common::{dev_kms, fixture, read_fixture, NO_HEADERS};
use fieldcrypt::framing::SchemaRef;
use fieldcrypt::{Codec, Error, ErrorKind, Policy, Record, SchemaText, SchemaType, StaticSchemas};
use serde_json::{json, Value};

const PAYMENT_SCHEMA_ID: u32 = 3;
const AVRO_SCHEMA_ID: u32 = 1;

fn json_schema(name: &str, text: &str, references: &[(&str, &str)]) -> SchemaText {
    SchemaText {
        schema_type: SchemaType::Json,
        name: name.into(),
        text: text.into(),
        references: references.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect(),
    }
}

fn payment_schemas() -> StaticSchemas {
    StaticSchemas::new()
        .with(
            SchemaRef::Id(PAYMENT_SCHEMA_ID),
            json_schema("payment.schema.json", &read_fixture("payment/payment.schema.json"), &[]),
        )
        .with(
            SchemaRef::Id(AVRO_SCHEMA_ID),
            SchemaText {
                schema_type: SchemaType::Avro,
                name: "payment.avsc".into(),
                text: read_fixture("payment/payment.avsc"),
                references: vec![],
            },
        )
}

/// A codec of the demo policy (`payments`: fields tagged PII).
fn payment_codec(validate: bool) -> Codec {
    Codec::builder(common::demo_policy())
        .kms(dev_kms())
        .schemas(payment_schemas())
        .validate_json_schema(validate)
        .build()
        .unwrap()
}

fn framed(id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn payment() -> Value {
    serde_json::from_str(&read_fixture("payment/payment.json")).unwrap()
}

fn encrypt(codec: &Codec, topic: &str, value: &[u8]) -> fieldcrypt::Result<Record> {
    codec.encrypt(topic, None, Some(value), NO_HEADERS)
}

fn decrypt(codec: &Codec, topic: &str, record: &Record) -> fieldcrypt::Result<Record> {
    codec.decrypt(topic, record.key.as_deref(), record.value.as_deref(), &record.headers)
}

fn stored_doc(record: &Record) -> Value {
    serde_json::from_slice(&record.value.as_ref().unwrap()[5..]).unwrap()
}

/// The error must be a record error, and neither its message nor its `Display` nor its `Debug`
/// may hold any of `secrets`.
fn assert_record_error(err: &Error, secrets: &[&str]) {
    assert_eq!(err.kind(), ErrorKind::Record, "{err}");
    for text in [err.message().to_string(), err.to_string(), format!("{err:?}")] {
        for secret in secrets {
            assert!(!text.contains(secret), "error leaks {secret:?}: {text}");
        }
    }
}

/// Every string and number of a JSON document, as text: what an error must not contain.
fn values_of(doc: &Value) -> Vec<String> {
    match doc {
        Value::String(s) => vec![s.clone()],
        Value::Number(n) => vec![n.to_string()],
        Value::Array(items) => items.iter().flat_map(values_of).collect(),
        Value::Object(members) => members.values().flat_map(values_of).collect(),
        _ => vec![],
    }
}

#[test]
fn valid_record_encrypts_and_decrypts_with_validation_on() {
    let value = framed(PAYMENT_SCHEMA_ID, &serde_json::to_vec(&payment()).unwrap());
    let producer = payment_codec(true);
    let sealed = encrypt(&producer, "payments", &value).unwrap();
    assert_eq!(producer.stats().fields_encrypted, 4);
    let consumer = payment_codec(true);
    let opened = decrypt(&consumer, "payments", &sealed).unwrap();
    assert_eq!(opened.value.as_deref(), Some(&value[..]));
    assert_eq!(consumer.stats().fields_decrypted, 4);
    // Many records: the validator is compiled once and reused.
    for _ in 0..20 {
        let sealed = encrypt(&producer, "payments", &value).unwrap();
        assert_eq!(decrypt(&consumer, "payments", &sealed).unwrap().value.as_deref(), Some(&value[..]));
    }
}

#[test]
fn record_violating_the_schema_is_refused_without_its_values() {
    let producer = payment_codec(true);
    // A number as a string.
    let mut wrong_type = payment();
    wrong_type["amount_cents"] = json!("SECRET-AMOUNT-4242");
    // A tagged (secret) field of the wrong type: the message must not show it either.
    let mut wrong_tagged = payment();
    wrong_tagged["ssn"] = json!(987654321);
    // A required field missing.
    let mut missing = payment();
    missing.as_object_mut().unwrap().remove("currency");
    // Nested.
    let mut nested = payment();
    nested["address"]["zip"] = json!(94043);

    for (doc, pointer) in [
        (&wrong_type, "\"/amount_cents\""),
        (&wrong_tagged, "\"/ssn\""),
        (&missing, "the root"),
        (&nested, "\"/address/zip\""),
    ] {
        let value = framed(PAYMENT_SCHEMA_ID, &serde_json::to_vec(doc).unwrap());
        let err = encrypt(&producer, "payments", &value).unwrap_err();
        let secrets = values_of(doc);
        assert_record_error(&err, &secrets.iter().map(String::as_str).collect::<Vec<_>>());
        let msg = err.message();
        assert!(msg.contains("payment.schema.json"), "names the schema: {msg}");
        assert!(msg.contains(pointer), "names the location {pointer}: {msg}");
        assert!(msg.contains("record value"), "names the part: {msg}");
    }
    let err =
        encrypt(&producer, "payments", &framed(PAYMENT_SCHEMA_ID, &serde_json::to_vec(&missing).unwrap())).unwrap_err();
    assert!(err.message().contains("\"currency\""), "names the missing property: {err}");
    assert!(err.message().contains("required"), "{err}");
    assert_eq!(producer.stats().records_encrypted, 0, "nothing was encrypted");

    // Validation off (the default): the same records encrypt.
    let lenient = payment_codec(false);
    let default = Codec::builder(common::demo_policy()).kms(dev_kms()).schemas(payment_schemas()).build().unwrap();
    for doc in [&wrong_type, &wrong_tagged, &missing, &nested] {
        let value = framed(PAYMENT_SCHEMA_ID, &serde_json::to_vec(doc).unwrap());
        let sealed = encrypt(&lenient, "payments", &value).unwrap();
        assert!(sealed.fieldcrypt_header().is_some());
        encrypt(&default, "payments", &value).unwrap();
    }
}

#[test]
fn consumer_validates_decrypted_records_without_leaking_plaintext() {
    // A producer that does not validate lets a bad tagged value through; a validating consumer
    // with full access finds it after decryption, and does not show the plaintext.
    let mut bad = payment();
    bad["ssn"] = json!(987654321);
    let value = framed(PAYMENT_SCHEMA_ID, &serde_json::to_vec(&bad).unwrap());
    let sealed = encrypt(&payment_codec(false), "payments", &value).unwrap();
    let err = decrypt(&payment_codec(true), "payments", &sealed).unwrap_err();
    let secrets = values_of(&bad);
    assert_record_error(&err, &secrets.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.message().contains("\"/ssn\""), "{err}");
    // Without validation it decrypts to what was written.
    assert_eq!(decrypt(&payment_codec(false), "payments", &sealed).unwrap().value, Some(value));
}

#[test]
fn avro_records_are_not_validated() {
    let value = framed(AVRO_SCHEMA_ID, &std::fs::read(fixture("payment/payment.avro.bin")).unwrap());
    let codec = payment_codec(true);
    let sealed = encrypt(&codec, "payments", &value).unwrap();
    assert_eq!(decrypt(&codec, "payments", &sealed).unwrap().value, Some(value));
}

// ---- referenced schemas ------------------------------------------------------------------------

const ADDRESS_SCHEMA: &str = r#"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "type": "object",
  "properties": {
    "street": {"type": "string", "confluent:tags": ["PII"]},
    "zip": {"type": "string", "pattern": "^[0-9]{5}$"}
  },
  "required": ["street", "zip"],
  "definitions": {"Phone": {"type": "string", "minLength": 7}}
}"#;

fn customer_schema(id: Option<&str>) -> String {
    let id = id.map(|id| format!(r#""$id": "{id}","#)).unwrap_or_default();
    format!(
        r#"{{
          "$schema": "http://json-schema.org/draft-07/schema#", {id}
          "type": "object",
          "properties": {{
            "name": {{"type": "string"}},
            "address": {{"$ref": "address.schema.json"}},
            "phone": {{"$ref": "address.schema.json#/definitions/Phone", "confluent:tags": ["PII"]}}
          }},
          "required": ["name", "address"]
        }}"#
    )
}

const CUSTOMER_POLICY: &str = r#"{
  "fieldcrypt_policy": 1,
  "id": "validation-tests",
  "encrypt": [
    {"name": "pii", "topics": ["customers", "orders"], "tags": ["PII"], "key": "local://demo-kek"}
  ],
  "profiles": {
    "none": {"decrypt": []},
    "nulls": {"decrypt": [], "otherwise": "null"},
    "masked": {"decrypt": [], "otherwise": "mask", "mask": "****"}
  }
}"#;

fn codec_for(schemas: StaticSchemas, profile: Option<&str>) -> Codec {
    let mut b = Codec::builder(Policy::from_json(CUSTOMER_POLICY).unwrap())
        .kms(dev_kms())
        .schemas(schemas)
        .validate_json_schema(true);
    if let Some(p) = profile {
        b = b.profile(p);
    }
    b.build().unwrap()
}

#[test]
fn schema_with_a_ref_to_a_referenced_schema_validates() {
    let refs = [("address.schema.json", ADDRESS_SCHEMA)];
    let schemas = StaticSchemas::new()
        .with(SchemaRef::Id(10), json_schema("customer", &customer_schema(None), &refs))
        // With an absolute `$id`, the name resolves against it.
        .with(
            SchemaRef::Id(11),
            json_schema("customer-with-id", &customer_schema(Some("https://example.com/schemas/customer.json")), &refs),
        );
    let codec = codec_for(schemas, None);
    for id in [10, 11] {
        let good = json!({"name": "Jane", "address": {"street": "1600 Amphitheatre Parkway", "zip": "94043"},
                          "phone": "+1-650-555-0100"});
        let value = framed(id, &serde_json::to_vec(&good).unwrap());
        let sealed = encrypt(&codec, "customers", &value).unwrap();
        let stored = stored_doc(&sealed);
        assert_ne!(
            stored["address"]["street"], good["address"]["street"],
            "tagged field in the reference is encrypted"
        );
        assert_ne!(stored["phone"], good["phone"]);
        assert_eq!(decrypt(&codec, "customers", &sealed).unwrap().value, Some(value));

        // Constraints of the referenced schema apply: a bad zip, a short phone.
        let bad_zip = json!({"name": "Jane", "address": {"street": "1600 Amphitheatre Parkway", "zip": "9404X"}});
        let bad_phone = json!({"name": "Jane", "address": {"street": "Main St 1", "zip": "94043"}, "phone": "555"});
        for (doc, pointer) in [(&bad_zip, "\"/address/zip\""), (&bad_phone, "\"/phone\"")] {
            let err = encrypt(&codec, "customers", &framed(id, &serde_json::to_vec(doc).unwrap())).unwrap_err();
            assert_record_error(&err, &["9404X", "555", "1600 Amphitheatre", "Main St"]);
            assert!(err.message().contains(pointer), "{err}");
        }
    }
}

#[test]
fn unresolvable_ref_is_a_schema_error() {
    // The schema names a reference the registry did not supply: it is not fetched.
    let schemas =
        StaticSchemas::new().with(SchemaRef::Id(12), json_schema("customer-no-refs", &customer_schema(None), &[]));
    let codec = codec_for(schemas, None);
    let good = json!({"name": "Jane", "address": {"street": "Main St 1", "zip": "94043"}});
    let err = encrypt(&codec, "customers", &framed(12, &serde_json::to_vec(&good).unwrap())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Format, "{err}");
    assert!(err.message().contains("customer-no-refs"), "{err}");
    // The failure is remembered, and stays an error.
    let err = encrypt(&codec, "customers", &framed(12, &serde_json::to_vec(&good).unwrap())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Format, "{err}");
}

// ---- non-string tagged values --------------------------------------------------------------------

const ORDER_SCHEMA: &str = r#"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "type": "object",
  "properties": {
    "id": {"type": "string"},
    "email": {"type": "string", "confluent:tags": ["PII"]},
    "amount": {"type": "integer", "minimum": 0, "confluent:tags": ["PII"]},
    "vip": {"type": "boolean", "confluent:tags": ["PII"]}
  },
  "required": ["id", "email", "amount", "vip"],
  "additionalProperties": false
}"#;

#[test]
fn withheld_non_string_fields_skip_validation_on_decrypt() {
    let schemas = || StaticSchemas::new().with(SchemaRef::Id(20), json_schema("order", ORDER_SCHEMA, &[]));
    let order = json!({"id": "o-1", "email": "jane.doe@example.com", "amount": 1999, "vip": true});
    let value = framed(20, &serde_json::to_vec(&order).unwrap());
    let producer = codec_for(schemas(), None);
    let sealed = encrypt(&producer, "orders", &value).unwrap();

    // The stored record holds Base64 strings where the schema wants an integer and a boolean:
    // it does not validate against the schema — which is why withheld fields skip validation.
    let stored = stored_doc(&sealed);
    assert!(stored["amount"].is_string() && stored["vip"].is_string());
    let schema: Value = serde_json::from_str(ORDER_SCHEMA).unwrap();
    assert!(!jsonschema::validator_for(&schema).unwrap().is_valid(&stored));

    // Fields left as ciphertext, null or a mask: decrypts, not validated.
    for (profile, amount) in [("none", stored["amount"].clone()), ("nulls", Value::Null), ("masked", json!("****"))] {
        let consumer = codec_for(schemas(), Some(profile));
        let opened = decrypt(&consumer, "orders", &sealed).unwrap();
        assert_eq!(stored_doc(&opened)["amount"], amount, "profile {profile}");
        assert_eq!(consumer.stats().fields_withheld, 3);
    }

    // Full access: decrypted, validated, the original bytes.
    let consumer = codec_for(schemas(), None);
    assert_eq!(decrypt(&consumer, "orders", &sealed).unwrap().value, Some(value));

    // Plaintext that violates the schema on a non-string tagged field is refused before
    // encryption, without the value.
    let bad = json!({"id": "o-2", "email": "jane.doe@example.com", "amount": -424242, "vip": true});
    let err = encrypt(&producer, "orders", &framed(20, &serde_json::to_vec(&bad).unwrap())).unwrap_err();
    assert_record_error(&err, &["424242", "jane.doe", "o-2"]);
    assert!(err.message().contains("\"/amount\"") && err.message().contains("minimum"), "{err}");
}
