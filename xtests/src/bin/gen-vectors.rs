//! Writes a test-vector file (xtests/README.md): `gen-vectors xtests/vectors/vN.json`.
//!
//! Every value is made by the core here and checked before the file is written: each positive
//! case decrypts to its `decrypted` record, each negative case fails with its `error` kind.
//! A file listed in `xtests/vectors/FROZEN` is never overwritten: released vectors are frozen.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use fieldcrypt::{Codec, OwnedHeader, Record, HEADER_NAME};
use fieldcrypt_xtests::{repo_root, Case, JsonRecord, Negative, Vectors, VECTORS_FORMAT};
use serde_json::{json, Value};

const VERSION: u32 = 1;

/// Fixed test KEKs (never for production): `local://xt-kek` and `local://xt-other`.
fn key_file() -> Value {
    let key = |seed: u8| B64.encode((0..32u8).map(|i| i.wrapping_mul(7).wrapping_add(seed)).collect::<Vec<u8>>());
    json!({
        "_comment": "TEST VECTORS ONLY: these keys are public.",
        "keys": {
            "xt-kek": {"primary": 1, "versions": {"1": key(1)}},
            "xt-other": {"primary": 1, "versions": {"1": key(2)}}
        }
    })
}

fn policy() -> Value {
    json!({
        "fieldcrypt_policy": 1,
        "id": "xtest-vectors",
        "revision": 1,
        "encrypt": [
            {"name": "customer", "topics": ["customers"], "fields": ["password", "visa"], "key": "local://xt-kek"},
            {"name": "nested", "topics": ["nested"], "key": "local://xt-kek",
             "fields": ["customer.ssn", "orders[*].card", "prefs.*", "matrix[*][*]", "[\"odd name\"]"]},
            {"name": "lookup", "topics": ["lookup"], "fields": ["email"], "key": "local://xt-kek",
             "algorithm": "AES256_SIV"},
            {"name": "keyed", "topics": ["keyed"], "part": "key", "fields": ["id"], "key": "local://xt-kek",
             "algorithm": "AES256_SIV"},
            {"name": "keyed-value", "topics": ["keyed"], "fields": ["note"], "key": "local://xt-kek"},
            {"name": "payments", "topics": ["payments"], "tags": ["PII"], "key": "local://xt-kek",
             "fields": ["email", "ssn", "address.street", "phone"]},
            {"name": "orders-avro", "topics": ["orders"], "key": "local://xt-kek",
             "fields": ["lines[*].card", "attributes.*", "note", "customer.ssn"]},
            {"name": "two-keys-a", "topics": ["two-keys"], "fields": ["password"], "key": "local://xt-kek"},
            {"name": "two-keys-b", "topics": ["two-keys"], "fields": ["secret"], "key": "local://xt-other"}
        ],
        "profiles": {
            "support": {"decrypt": [{"topics": ["customers"], "fields": ["visa"]}], "otherwise": "mask", "mask": "****"},
            "visa-only": {"decrypt": [{"topics": ["customers"], "fields": ["visa"]}]},
            "strict": {"decrypt": [{"topics": ["*"]}], "otherwise": "error"},
            "strict-visa": {"decrypt": [{"topics": ["customers"], "fields": ["visa"]}], "otherwise": "error"}
        }
    })
}

fn read(relative: &str) -> Vec<u8> {
    let path = repo_root().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn text(relative: &str) -> String {
    String::from_utf8(read(relative)).expect("UTF-8")
}

/// The standard payment workload's schemas, registered under ids 1 (Avro), 2 (Protobuf) and
/// 3 (JSON Schema).
fn schemas() -> Value {
    json!({
        "1": {"type": "AVRO", "name": "payment-value", "schema": text("schemas/payment/payment.avsc")},
        "2": {"type": "PROTOBUF", "name": "payment.proto", "schema": text("schemas/payment/payment.proto"),
              "references": {"confluent/meta.proto": text("schemas/confluent/meta.proto")}},
        "3": {"type": "JSON", "name": "payment-value", "schema": text("schemas/payment/payment.schema.json")},
        "4": {"type": "AVRO", "name": "orders-value", "schema": ORDER_AVSC},
        "5": {"type": "PROTOBUF", "name": "order.proto", "schema": ORDER_PROTO}
    })
}

/// Collections in the schema formats: an array of records, a map, a union and a nested record.
const ORDER_AVSC: &str = r#"{"type": "record", "name": "Order", "namespace": "xt", "fields": [
  {"name": "id", "type": "long"},
  {"name": "customer", "type": {"type": "record", "name": "Customer", "fields": [
    {"name": "name", "type": "string"}, {"name": "ssn", "type": "string"}]}},
  {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [
    {"name": "sku", "type": "string"}, {"name": "card", "type": "string"}]}}},
  {"name": "attributes", "type": {"type": "map", "values": "string"}},
  {"name": "note", "type": ["null", "string"], "default": null}
]}"#;

const ORDER_PROTO: &str = r#"syntax = "proto3";
package xt;
message Order {
  int64 id = 1;
  Customer customer = 2;
  repeated Line lines = 3;
  map<string, string> attributes = 4;
  optional string note = 5;
}
message Customer { string name = 1; string ssn = 2; }
message Line { string sku = 1; string card = 2; }
"#;

/// The order as Avro (apache-avro) and as Protobuf (prost-reflect), unframed.
fn order_payloads() -> (Vec<u8>, Vec<u8>) {
    use apache_avro::types::Value as A;
    let schema = apache_avro::Schema::parse_str(ORDER_AVSC).expect("Avro schema");
    let line = |sku: &str, card: &str| {
        A::Record(vec![("sku".into(), A::String(sku.into())), ("card".into(), A::String(card.into()))])
    };
    let datum = A::Record(vec![
        ("id".into(), A::Long(77)),
        (
            "customer".into(),
            A::Record(vec![("name".into(), A::String("Cy".into())), ("ssn".into(), A::String("987-65-4320".into()))]),
        ),
        ("lines".into(), A::Array(vec![line("A-1", "4111"), line("B-2", "5500")])),
        (
            "attributes".into(),
            A::Map([("gift".to_string(), A::String("yes".into())), ("vip".to_string(), A::String("no".into()))].into()),
        ),
        ("note".into(), A::Union(1, Box::new(A::String("leave at door".into())))),
    ]);
    let avro = apache_avro::to_avro_datum(&schema, datum).expect("Avro datum");

    use prost::Message;
    use prost_reflect::{DynamicMessage, MapKey, Value as P};
    let dir = std::env::temp_dir().join(format!("fieldcrypt-gen-vectors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("order.proto"), ORDER_PROTO).expect("write proto");
    let files = protox::compile(["order.proto"], [&dir]).expect("compile order.proto");
    let _ = std::fs::remove_dir_all(&dir);
    let pool = prost_reflect::DescriptorPool::from_file_descriptor_set(files).expect("descriptor pool");
    let msg = |name: &str| DynamicMessage::new(pool.get_message_by_name(name).expect("message"));
    let mut customer = msg("xt.Customer");
    customer.set_field_by_name("name", P::String("Cy".into()));
    customer.set_field_by_name("ssn", P::String("987-65-4320".into()));
    let line = |sku: &str, card: &str| {
        let mut l = msg("xt.Line");
        l.set_field_by_name("sku", P::String(sku.into()));
        l.set_field_by_name("card", P::String(card.into()));
        P::Message(l)
    };
    let mut order = msg("xt.Order");
    order.set_field_by_name("id", P::I64(77));
    order.set_field_by_name("customer", P::Message(customer));
    order.set_field_by_name("lines", P::List(vec![line("A-1", "4111"), line("B-2", "5500")]));
    order.set_field_by_name(
        "attributes",
        P::Map(
            [
                (MapKey::String("gift".into()), P::String("yes".into())),
                (MapKey::String("vip".into()), P::String("no".into())),
            ]
            .into(),
        ),
    );
    order.set_field_by_name("note", P::String("leave at door".into()));
    (avro, order.encode_to_vec())
}

fn configs() -> BTreeMap<String, Value> {
    let full = json!({"kms": {"local": {"keys": key_file()}}, "schemas": schemas()});
    let with = |extra: Value| {
        let mut c = full.clone();
        for (k, v) in extra.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    };
    let mut only_xt_kek = key_file();
    only_xt_kek["keys"].as_object_mut().expect("keys").remove("xt-other");
    BTreeMap::from([
        ("producer".to_string(), full.clone()),
        ("consumer".to_string(), full.clone()),
        ("support".to_string(), with(json!({"profile": "support"}))),
        ("visa-only".to_string(), with(json!({"profile": "visa-only"}))),
        ("strict".to_string(), with(json!({"profile": "strict"}))),
        ("strict-visa".to_string(), with(json!({"profile": "strict-visa"}))),
        (
            "strict-without-xt-other".to_string(),
            with(json!({"profile": "strict", "kms": {"local": {"keys": only_xt_kek}}})),
        ),
        // Each field and header tag is one use of a DEK: a new DEK every two customer records.
        ("rotating".to_string(), with(json!({"limits": {"dek_max_uses": 6}}))),
    ])
}

/// Confluent framing: magic byte 0, the schema id (big-endian), Protobuf's message indexes.
fn framed(id: u32, message_indexes: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(message_indexes);
    out.extend_from_slice(payload);
    out
}

fn trimmed(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(u8::is_ascii_whitespace) {
        bytes.pop();
    }
    bytes
}

fn record(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, Option<&[u8]>)]) -> Record {
    Record {
        key: key.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
        headers: headers
            .iter()
            .map(|(n, v)| OwnedHeader { name: n.to_string(), value: v.map(<[u8]>::to_vec) })
            .collect(),
    }
}

struct Generator {
    vectors: Vectors,
    codecs: BTreeMap<String, Codec>,
}

impl Generator {
    fn codec(&mut self, config: &str) -> Codec {
        if !self.codecs.contains_key(config) {
            let codec = self.vectors.codec("main", config).expect("codec");
            self.codecs.insert(config.to_string(), codec);
        }
        self.codecs[config].clone()
    }

    fn encrypt(&mut self, config: &str, topic: &str, plain: &Record) -> Record {
        self.codec(config)
            .encrypt(topic, plain.key.as_deref(), plain.value.as_deref(), &plain.headers)
            .unwrap_or_else(|e| panic!("encrypt for {topic}: {e}"))
    }

    /// Adds a positive case; its decryption is computed (and so checked) here.
    #[allow(clippy::too_many_arguments)]
    fn case(
        &mut self,
        id: &str,
        description: &str,
        format: &str,
        algorithm: &str,
        topic: &str,
        (encrypt_config, decrypt_config): (&str, &str),
        plain: &Record,
        encrypted: &Record,
    ) {
        let decrypted = self
            .codec(decrypt_config)
            .decrypt(topic, encrypted.key.as_deref(), encrypted.value.as_deref(), &encrypted.headers)
            .unwrap_or_else(|e| panic!("{id}: decrypt: {e}"));
        if encrypted.fieldcrypt_header().is_some() {
            assert_no_secret_left(id, plain, encrypted);
        }
        let deterministic = algorithm == "AES256_SIV";
        if deterministic {
            let again = self.encrypt(encrypt_config, topic, plain);
            assert_eq!((&again.key, &again.value), (&encrypted.key, &encrypted.value), "{id}: SIV is deterministic");
        }
        self.vectors.cases.push(Case {
            id: id.into(),
            description: description.into(),
            format: format.into(),
            algorithm: algorithm.into(),
            policy: "main".into(),
            topic: topic.into(),
            encrypt_config: encrypt_config.into(),
            decrypt_config: decrypt_config.into(),
            plaintext: JsonRecord::of(plain),
            encrypted: JsonRecord::of(encrypted),
            decrypted: JsonRecord::of(&decrypted),
            deterministic,
        });
    }

    /// Adds a negative case after checking the core fails on it with `error`.
    fn negative(&mut self, id: &str, description: &str, topic: &str, decrypt_config: &str, bad: &Record, error: &str) {
        match self.codec(decrypt_config).decrypt(topic, bad.key.as_deref(), bad.value.as_deref(), &bad.headers) {
            Ok(_) => panic!("{id}: decrypts, but should fail with {error}"),
            Err(e) => assert_eq!(e.kind().as_str(), error, "{id}: {e}"),
        }
        self.vectors.negative.push(Negative {
            id: id.into(),
            description: description.into(),
            policy: "main".into(),
            topic: topic.into(),
            decrypt_config: decrypt_config.into(),
            record: JsonRecord::of(bad),
            error: error.into(),
        });
    }
}

/// Values the cases' policies encrypt: none may be left readable in an encrypted record.
const SECRETS: &[&str] = &[
    "hunter2",
    "4111",
    "5500",
    "123-45-6789",
    "987-65-4320",
    "jane.doe@example.com",
    "1600 Amphitheatre",
    "+1-650-555-0100",
    "leave at door",
    "ada@example.com",
    "cust-42",
    "1 Main St",
    "called back",
];

fn assert_no_secret_left(id: &str, plain: &Record, encrypted: &Record) {
    let has = |b: &Option<Vec<u8>>, s: &str| b.as_ref().is_some_and(|b| b.windows(s.len()).any(|w| w == s.as_bytes()));
    for secret in SECRETS {
        for (p, e) in [(&plain.key, &encrypted.key), (&plain.value, &encrypted.value)] {
            assert!(!(has(p, secret) && has(e, secret)), "{id}: {secret:?} left in clear");
        }
    }
}

/// The Base64 text of a JSON string member `name` in `value` (a ciphertext field).
fn member<'a>(value: &'a [u8], name: &str) -> &'a str {
    let text = std::str::from_utf8(value).expect("JSON");
    let start = text.find(&format!("\"{name}\":\"")).unwrap_or_else(|| panic!("no {name}")) + name.len() + 4;
    let len = text[start..].find('"').expect("end of string");
    &text[start..start + len]
}

fn replace_value(r: &Record, from: &str, to: &str) -> Record {
    let text = String::from_utf8(r.value.clone().expect("value")).expect("UTF-8");
    assert!(text.contains(from));
    Record { value: Some(text.replacen(from, to, 1).into_bytes()), ..r.clone() }
}

fn with_header(r: &Record, f: impl FnOnce(&mut Vec<u8>)) -> Record {
    let mut out = r.clone();
    let h = out.headers.iter_mut().find(|h| h.name == HEADER_NAME).expect("fieldcrypt header");
    f(h.value.as_mut().expect("value"));
    out
}

fn generate() -> Vectors {
    let mut g = Generator {
        vectors: Vectors {
            format: VECTORS_FORMAT.into(),
            version: VERSION,
            generator: format!("fieldcrypt-xtests {}", env!("CARGO_PKG_VERSION")),
            policies: BTreeMap::from([("main".to_string(), policy())]),
            configs: configs(),
            cases: Vec::new(),
            negative: Vec::new(),
        },
        codecs: BTreeMap::new(),
    };
    let gcm = "AES256_GCM";
    let siv = "AES256_SIV";
    let full = ("producer", "consumer");

    // --- JSON ----------------------------------------------------------------------------------
    let customer = record(
        Some(b"cust-1"),
        Some(br#"{"id":1,"name":"Ada","password":"hunter2","visa":"4111 1111 1111 1111","tier":"gold"}"#),
        &[("trace", Some(b"abc-123")), ("empty", None)],
    );
    let sealed_customer = g.encrypt("producer", "customers", &customer);
    g.case(
        "json/gcm/customer",
        "two top-level string fields, other headers kept (one with a null value)",
        "json",
        gcm,
        "customers",
        full,
        &customer,
        &sealed_customer,
    );
    g.case(
        "json/gcm/profile-support",
        "profile `support`: visa decrypted, password masked, header removed",
        "json",
        gcm,
        "customers",
        ("producer", "support"),
        &customer,
        &sealed_customer,
    );
    g.case(
        "json/gcm/profile-visa-only",
        "profile `visa-only`: visa decrypted, password left as ciphertext, header kept",
        "json",
        gcm,
        "customers",
        ("producer", "visa-only"),
        &customer,
        &sealed_customer,
    );

    let nested = record(
        None,
        Some(
            br#"{"customer":{"name":"Bo","ssn":"123-45-6789"},"orders":[{"card":"4111","qty":1},{"card":"5500","qty":2}],"prefs":{"home":"1 Main St","work":{"floor":3}},"matrix":[[1,2],[true,null]],"odd name":"x y","n":7}"#,
        ),
        &[],
    );
    let sealed = g.encrypt("producer", "nested", &nested);
    g.case(
        "json/gcm/nested-arrays-maps",
        "a nested member, array elements, map values of any JSON type, nested arrays, a quoted member name; null key",
        "json",
        gcm,
        "nested",
        full,
        &nested,
        &sealed,
    );

    let lookup = record(None, Some(br#"{"email":"ada@example.com","visits":3}"#), &[]);
    let sealed_lookup = g.encrypt("producer", "lookup", &lookup);
    g.case(
        "json/siv/lookup",
        "AES-256-SIV: the ciphertext is the same in every language and every record",
        "json",
        siv,
        "lookup",
        full,
        &lookup,
        &sealed_lookup,
    );
    let keyed = record(Some(br#"{"id":"cust-42"}"#), Some(br#"{"note":"called back"}"#), &[]);
    let sealed = g.encrypt("producer", "keyed", &keyed);
    g.case(
        "json/siv/record-key",
        "a field of the record key under AES-256-SIV and one of the value under AES-256-GCM",
        "json",
        gcm,
        "keyed",
        full,
        &keyed,
        &sealed,
    );
    let key_only = record(Some(br#"{"id":"cust-42"}"#), None, &[]);
    let sealed = g.encrypt("producer", "keyed", &key_only);
    g.case(
        "json/siv/record-key-tombstone",
        "a tombstone whose key is encrypted deterministically: the same key ciphertext",
        "json",
        siv,
        "keyed",
        full,
        &key_only,
        &sealed,
    );

    let two = record(None, Some(br#"{"password":"pw","secret":"s3"}"#), &[]);
    let sealed_two = g.encrypt("producer", "two-keys", &two);
    g.case("json/gcm/two-keys", "two KEKs, two header entries", "json", gcm, "two-keys", full, &two, &sealed_two);

    let untouched = record(Some(b"k"), Some(br#"{"password":"not in any rule's topic"}"#), &[("h", Some(b"v"))]);
    let same = g.encrypt("producer", "elsewhere", &untouched);
    g.case(
        "json/none/unselected-topic",
        "a topic no rule selects: the record passes through, no header",
        "json",
        gcm,
        "elsewhere",
        full,
        &untouched,
        &same,
    );
    let tombstone = record(Some(b"cust-1"), None, &[]);
    let same = g.encrypt("producer", "customers", &tombstone);
    g.case(
        "json/none/tombstone",
        "a tombstone (no value) on an encrypted topic: unchanged, no header",
        "json",
        gcm,
        "customers",
        full,
        &tombstone,
        &same,
    );

    // DEK rotation within one stream: one producer, a new DEK every two records.
    let mut dek_ids = Vec::new();
    for i in 1..=4 {
        let plain = record(
            None,
            Some(format!(r#"{{"id":{i},"password":"pw-{i}","visa":"4000 0000 0000 000{i}"}}"#).as_bytes()),
            &[],
        );
        let sealed = g.encrypt("rotating", "customers", &plain);
        dek_ids.push(
            fieldcrypt::header::parse(sealed.fieldcrypt_header().expect("header")).expect("header").keys[0].dek_id,
        );
        g.case(
            &format!("json/gcm/rotation-{i}"),
            "one producer stream whose DEK rotates every two records",
            "json",
            gcm,
            "customers",
            ("rotating", "consumer"),
            &plain,
            &sealed,
        );
    }
    assert!(dek_ids[0] == dek_ids[1] && dek_ids[1] != dek_ids[2] && dek_ids[2] == dek_ids[3], "the stream rotates");

    // --- schema-registry formats ---------------------------------------------------------------
    let avro = framed(1, &[], &read("schemas/payment/payment.avro.bin"));
    // Message indexes [1]: `Payment` is the second message of payment.proto (count 1, index 1, zigzag).
    let proto = framed(2, &[2, 2], &read("schemas/payment/payment.pb.bin"));
    let json_schema = framed(3, &[], &trimmed(read("schemas/payment/payment.json")));
    for (format, bytes, what) in [
        ("avro", avro, "Avro: tagged fields incl. a nested record field and a union"),
        ("protobuf", proto, "Protobuf: tagged fields incl. a nested message field and an optional"),
        ("json_schema", json_schema, "JSON Schema: tagged fields incl. a nested object member and a nullable"),
    ] {
        let plain = record(Some(b"pay-1"), Some(&bytes), &[]);
        let sealed = g.encrypt("producer", "payments", &plain);
        g.case(
            &format!("{format}/gcm/payment"),
            &format!("{what} (the standard payment workload)"),
            format,
            gcm,
            "payments",
            full,
            &plain,
            &sealed,
        );
        if format == "avro" {
            let value = sealed.value.clone().expect("value");
            let mut flipped = sealed.clone();
            let mut v = value.clone();
            let at = v.len() - 3;
            v[at] ^= 0x01;
            flipped.value = Some(v);
            g.negative(
                "avro/gcm/bit-flipped-record",
                "a bit flipped near the end of the encrypted Avro record",
                "payments",
                "consumer",
                &flipped,
                "crypto",
            );
        }
    }

    let (avro_order, proto_order) = order_payloads();
    for (format, bytes) in [("avro", framed(4, &[], &avro_order)), ("protobuf", framed(5, &[0], &proto_order))] {
        let plain = record(None, Some(&bytes), &[]);
        let sealed = g.encrypt("producer", "orders", &plain);
        g.case(
            &format!("{format}/gcm/collections"),
            "by path: a member of every array element, every map value, a union (optional) and a nested record field",
            format,
            gcm,
            "orders",
            full,
            &plain,
            &sealed,
        );
    }

    // --- negative vectors ----------------------------------------------------------------------
    let value = sealed_customer.value.clone().expect("value");
    let password = member(&value, "password").to_string();
    let visa = member(&value, "visa").to_string();
    let mut raw = B64.decode(&password).expect("Base64");
    raw.truncate(raw.len() - 4);
    g.negative(
        "json/gcm/truncated-ciphertext",
        "the password ciphertext lost its last 4 bytes",
        "customers",
        "consumer",
        &replace_value(&sealed_customer, &password, &B64.encode(&raw)),
        "crypto",
    );
    let mut raw = B64.decode(&password).expect("Base64");
    raw[5] ^= 0x80;
    g.negative(
        "json/gcm/bit-flipped-ciphertext",
        "one bit of the password ciphertext flipped",
        "customers",
        "consumer",
        &replace_value(&sealed_customer, &password, &B64.encode(&raw)),
        "crypto",
    );
    let swapped = replace_value(&replace_value(&sealed_customer, &password, "@@"), &visa, &password);
    g.negative(
        "json/gcm/swapped-fields",
        "password and visa ciphertexts swapped (associated data binds the path)",
        "customers",
        "consumer",
        &replace_value(&swapped, "@@", &visa),
        "crypto",
    );
    g.negative(
        "json/gcm/unknown-header-version",
        "the fieldcrypt header says version 9",
        "customers",
        "consumer",
        &with_header(&sealed_customer, |h| h[0] = 9),
        "unsupported_version",
    );
    g.negative(
        "json/gcm/truncated-header",
        "the fieldcrypt header lost its last byte",
        "customers",
        "consumer",
        &with_header(&sealed_customer, |h| {
            h.pop();
        }),
        "format",
    );
    g.negative(
        "json/gcm/malformed-header",
        "the fieldcrypt header is three bytes of nothing",
        "customers",
        "consumer",
        &with_header(&sealed_customer, |h| *h = vec![1, 0, 0]),
        "format",
    );
    g.negative(
        "json/gcm/tampered-header",
        "one byte of the header's policy id changed (the header is authenticated)",
        "customers",
        "consumer",
        &with_header(&sealed_customer, |h| h[16] ^= 0x20),
        "crypto",
    );
    let mut twice = sealed_customer.clone();
    twice.headers.push(OwnedHeader::new(HEADER_NAME, sealed_customer.fieldcrypt_header().expect("header").to_vec()));
    g.negative("json/gcm/duplicate-header", "two fieldcrypt headers", "customers", "consumer", &twice, "format");
    g.negative(
        "json/gcm/unknown-key",
        "a strict consumer (otherwise: error) whose KMS lacks one of the two KEKs",
        "two-keys",
        "strict-without-xt-other",
        &sealed_two,
        "key_not_found",
    );
    g.negative(
        "json/gcm/profile-denied",
        "a strict profile reading a field it does not list",
        "customers",
        "strict-visa",
        &sealed_customer,
        "access_denied",
    );
    g.vectors
}

fn main() -> ExitCode {
    let Some(out) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: gen-vectors xtests/vectors/vN.json");
        return ExitCode::from(2);
    };
    if is_frozen(&out) {
        eprintln!(
            "{} is frozen (xtests/vectors/FROZEN): released vectors never change; write a new vN.json",
            out.display()
        );
        return ExitCode::from(1);
    }
    let vectors = generate();
    let mut text = serde_json::to_string_pretty(&vectors).expect("serialize");
    text.push('\n');
    std::fs::write(&out, text).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    println!("{}: {} cases, {} negative", out.display(), vectors.cases.len(), vectors.negative.len());
    ExitCode::SUCCESS
}

fn is_frozen(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
    std::fs::read_to_string(repo_root().join("xtests/vectors/FROZEN"))
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(name))
}
