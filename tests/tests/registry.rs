//! `fieldcrypt::registry` against a real Apicurio Registry 3.3 (Confluent-compatible API),
//! started by `scripts/servers.sh start apicurio`; `FIELDCRYPT_REGISTRY` must name its
//! `/apis/ccompat/v7` endpoint (`eval "$(scripts/servers.sh env)"`). Fails when it is not set.
//!
//! Subjects carry a per-run tag, so the suite can run many times against one server.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fieldcrypt::framing::SchemaRef;
use fieldcrypt::registry::{RegisteredSchema, RegistryConfig, SchemaRegistry, SchemaType};
use fieldcrypt::{ErrorKind, SchemaSource};
use fieldcrypt_it::{read_repo_file, registry_url, unique_subject, Capture, Ccompat};
use serde_json::Value;

fn client() -> SchemaRegistry {
    SchemaRegistry::new(RegistryConfig::new(registry_url())).expect("registry config")
}

fn same_json(a: &str, b: &str) -> bool {
    serde_json::from_str::<Value>(a).unwrap() == serde_json::from_str::<Value>(b).unwrap()
}

/// Registers confluent/meta.proto (our test copy) under a fresh subject; returns the subject.
fn register_meta(ccompat: &Ccompat) -> String {
    let subject = unique_subject("confluent-meta");
    ccompat.register(&subject, "PROTOBUF", &read_repo_file("schemas/confluent/meta.proto"), &[]);
    subject
}

#[test]
fn avro_by_id_by_version_and_latest() {
    let ccompat = Ccompat::from_env();
    let subject = unique_subject("payment-avro-value");
    let v1_text = read_repo_file("schemas/payment/payment.avsc");
    let id1 = ccompat.register(&subject, "AVRO", &v1_text, &[]);

    let registry = client();
    let by_id = registry.schema_by_id(id1).unwrap();
    assert_eq!(by_id.id, Some(id1));
    assert_eq!(by_id.schema_type, SchemaType::Avro, "a missing schemaType means AVRO");
    assert!(same_json(&by_id.text, &v1_text), "{}", by_id.text);
    assert!(by_id.text.contains("confluent:tags"), "tags are part of the schema text");
    assert!(by_id.references.is_empty());

    let v1 = registry.schema_by_subject_version(&subject, Some(1)).unwrap();
    assert_eq!((v1.id, v1.subject.as_deref(), v1.version), (Some(id1), Some(subject.as_str()), Some(1)));
    assert!(same_json(&v1.text, &v1_text));
    let latest = registry.schema_by_subject_version(&subject, None).unwrap();
    assert_eq!((latest.id, latest.version), (Some(id1), Some(1)));

    // A second version: the latest moves, version 1 stays.
    let mut v2: Value = serde_json::from_str(&v1_text).unwrap();
    v2["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "note", "type": ["null", "string"], "default": null}));
    let id2 = ccompat.register(&subject, "AVRO", &v2.to_string(), &[]);
    assert_ne!(id1, id2);
    let fresh = client();
    let latest = fresh.schema_by_subject_version(&subject, None).unwrap();
    assert_eq!((latest.id, latest.version), (Some(id2), Some(2)));
    assert!(latest.text.contains("\"note\""));
    assert_eq!(fresh.schema_by_subject_version(&subject, Some(1)).unwrap().id, Some(id1));
    assert_eq!(fresh.schema_by_id(id2).unwrap().text, latest.text);

    // The first client still holds "latest" = version 1 for its latest_ttl (60 s by default).
    assert_eq!(registry.schema_by_subject_version(&subject, None).unwrap().version, Some(1));
    let no_ttl =
        SchemaRegistry::new(RegistryConfig { latest_ttl: Duration::ZERO, ..RegistryConfig::new(registry_url()) })
            .unwrap();
    assert_eq!(no_ttl.schema_by_subject_version(&subject, None).unwrap().version, Some(2));
}

#[test]
fn json_schema_with_a_reference() {
    let ccompat = Ccompat::from_env();
    let address_subject = unique_subject("address-json");
    let address_text = read_repo_file("tests/fixtures/json/address.schema.json");
    ccompat.register(&address_subject, "JSON", &address_text, &[]);
    let customer_subject = unique_subject("customer-json-value");
    let customer_text = read_repo_file("tests/fixtures/json/customer.schema.json");
    let id =
        ccompat.register(&customer_subject, "JSON", &customer_text, &[("address.schema.json", &address_subject, 1)]);

    let registry = client();
    let schema = registry.schema_by_id(id).unwrap();
    assert_eq!(schema.schema_type, SchemaType::Json);
    assert!(same_json(&schema.text, &customer_text));
    assert_eq!(schema.references.len(), 1);
    let r = &schema.references[0];
    assert_eq!((r.name.as_str(), r.subject.as_str(), r.version), ("address.schema.json", address_subject.as_str(), 1));
    assert_eq!(r.schema_type, SchemaType::Json);
    assert!(same_json(&r.text, &address_text));

    let latest = registry.schema_by_subject_version(&customer_subject, None).unwrap();
    assert_eq!(latest.id, Some(id));
    assert_eq!(latest.references, schema.references);

    // The plain payment JSON Schema from schemas/ too.
    let payment_subject = unique_subject("payment-json-value");
    let payment_text = read_repo_file("schemas/payment/payment.schema.json");
    let payment_id = ccompat.register(&payment_subject, "JSON", &payment_text, &[]);
    let payment = registry.schema_by_subject_version(&payment_subject, Some(1)).unwrap();
    assert_eq!((payment.id, payment.schema_type), (Some(payment_id), SchemaType::Json));
    assert!(same_json(&payment.text, &payment_text));
}

#[test]
fn protobuf_with_references() {
    let ccompat = Ccompat::from_env();
    let meta_subject = register_meta(&ccompat);
    let meta_text = read_repo_file("schemas/confluent/meta.proto");

    // payment.proto imports confluent/meta.proto
    let payment_subject = unique_subject("payment-proto-value");
    let payment_text = read_repo_file("schemas/payment/payment.proto");
    let payment_id =
        ccompat.register(&payment_subject, "PROTOBUF", &payment_text, &[("confluent/meta.proto", &meta_subject, 1)]);

    let registry = client();
    let payment = registry.schema_by_id(payment_id).unwrap();
    assert_eq!(payment.schema_type, SchemaType::Protobuf);
    assert_eq!(payment.text.trim(), payment_text.trim());
    assert_eq!(payment.references.len(), 1);
    let meta = &payment.references[0];
    assert_eq!(
        (meta.name.as_str(), meta.subject.as_str(), meta.version),
        ("confluent/meta.proto", meta_subject.as_str(), 1)
    );
    assert_eq!(meta.schema_type, SchemaType::Protobuf);
    assert_eq!(meta.text.trim(), meta_text.trim());
    let by_version = registry.schema_by_subject_version(&payment_subject, Some(1)).unwrap();
    assert_eq!(by_version.references, payment.references);

    // order.proto -> (confluent/meta.proto, bench/money.proto -> confluent/meta.proto):
    // dependency order, meta.proto once.
    let money_subject = unique_subject("money-proto");
    ccompat.register(
        &money_subject,
        "PROTOBUF",
        &read_repo_file("tests/fixtures/proto/money.proto"),
        &[("confluent/meta.proto", &meta_subject, 1)],
    );
    let order_subject = unique_subject("order-proto-value");
    let order_id = ccompat.register(
        &order_subject,
        "PROTOBUF",
        &read_repo_file("tests/fixtures/proto/order.proto"),
        &[("confluent/meta.proto", &meta_subject, 1), ("bench/money.proto", &money_subject, 1)],
    );
    let order = registry.schema_by_id(order_id).unwrap();
    let names: Vec<&str> = order.references.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["confluent/meta.proto", "bench/money.proto"]);
    assert!(order.references[1].text.contains("message Money"));

    // What the codec sees through SchemaSource.
    let text = registry.schema(&SchemaRef::Id(order_id as u32)).unwrap();
    assert_eq!(text.schema_type, SchemaType::Protobuf);
    let ref_names: Vec<&str> = text.references.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(ref_names, names);
}

#[test]
fn unknown_ids_and_subjects_are_registry_errors() {
    let registry = client();
    let err = registry.schema_by_id(2_000_000_000).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Registry, "{err}");
    assert!(!err.is_retryable());
    assert!(err.message().contains("schema id 2000000000 is not known to the registry"), "{err}");
    assert!(err.message().contains("/apis/ccompat/v7/schemas/ids/2000000000"), "{err}");

    let subject = unique_subject("never-registered");
    let err = registry.schema_by_subject_version(&subject, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Registry, "{err}");
    let err = registry.schema_by_subject_version(&subject, Some(3)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Registry, "{err}");
    assert!(err.message().contains("version 3"), "{err}");

    let err = registry.schema(&SchemaRef::Id(u32::MAX)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Registry, "{err}");
}

#[test]
fn a_url_without_the_api_path_is_a_config_error() {
    let url = registry_url();
    let root = url.split("/apis/").next().unwrap().to_string();
    let registry = SchemaRegistry::new(RegistryConfig::new(root)).unwrap();
    let err = registry.schema_by_id(1).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.message().contains("/schemas/ids/1") && err.message().contains("404"), "{err}");
}

#[test]
fn registry_down_is_retryable_after_the_configured_backoff() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let registry = SchemaRegistry::new(RegistryConfig {
        max_retries: 3,
        backoff: Duration::from_millis(100),
        ..RegistryConfig::new(format!("http://127.0.0.1:{port}/apis/ccompat/v7"))
    })
    .unwrap();
    let started = Instant::now();
    let err = registry.schema_by_id(1).unwrap_err();
    let elapsed = started.elapsed();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.kind(), ErrorKind::Registry, "{err}");
    assert!(err.message().contains("GET /apis/ccompat/v7/schemas/ids/1"), "{err}");
    assert!(err.message().contains("4 times") && err.message().contains("cannot connect"), "{err}");
    // Waits of 100, 200, 400 ms nominal, each jittered into [half, full]: 350..700 ms, plus
    // connection attempts that fail at once on a closed local port.
    eprintln!("registry down: gave up after {elapsed:?}");
    assert!(elapsed >= Duration::from_millis(350), "gave up too early: {elapsed:?}");
    assert!(elapsed < Duration::from_millis(700 + 1000), "took too long: {elapsed:?}");

    // No retries: one attempt, no wait.
    let once = SchemaRegistry::new(RegistryConfig {
        max_retries: 0,
        backoff: Duration::from_secs(5),
        ..RegistryConfig::new(format!("http://127.0.0.1:{port}"))
    })
    .unwrap();
    let started = Instant::now();
    let err = once.schema_by_id(1).unwrap_err();
    assert!(err.is_retryable() && err.message().contains("1 time,"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

const CANNED: &str = r#"{"schema":"{\"type\":\"string\"}"}"#;

#[test]
fn basic_auth_header_is_sent_and_never_shown() {
    let capture = Capture::start(200, CANNED);
    let registry = SchemaRegistry::new(RegistryConfig {
        basic_auth: Some(("fieldcrypt".into(), "s3cr3t".into())),
        ..RegistryConfig::new(format!("{}/apis/ccompat/v7", capture.url))
    })
    .unwrap();
    let schema = registry.schema_by_id(1).unwrap();
    assert_eq!(schema.schema_type, SchemaType::Avro);
    let request = capture.next_request();
    assert_eq!(request.request_line, "GET /apis/ccompat/v7/schemas/ids/1 HTTP/1.1");
    // base64("fieldcrypt:s3cr3t")
    assert_eq!(request.header("authorization"), Some("Basic ZmllbGRjcnlwdDpzM2NyM3Q="));
    assert!(request.header("accept").unwrap_or("").contains("application/vnd.schemaregistry.v1+json"));
    assert!(request.header("user-agent").unwrap_or("").starts_with("fieldcrypt/"));
    assert!(!format!("{registry:?}").contains("s3cr3t"));

    // Cached: a second lookup sends nothing.
    registry.schema_by_id(1).unwrap();
    assert!(capture.try_next_request(Duration::from_millis(200)).is_none());

    // Credentials in the URL become basic auth and leave the URL.
    let capture = Capture::start(200, CANNED);
    let url = capture.url.replace("http://", "http://fieldcrypt:s3cr3t@");
    let registry = SchemaRegistry::new(RegistryConfig::new(url)).unwrap();
    registry.schema_by_id(2).unwrap();
    assert_eq!(capture.next_request().header("authorization"), Some("Basic ZmllbGRjcnlwdDpzM2NyM3Q="));
    assert!(!registry.config().url.contains("s3cr3t") && !format!("{registry:?}").contains("s3cr3t"));

    // Refused credentials: a config error naming the status, not the secret.
    let capture = Capture::start(401, r#"{"error_code":40101,"message":"Unauthorized"}"#);
    let registry = SchemaRegistry::new(RegistryConfig {
        basic_auth: Some(("fieldcrypt".into(), "s3cr3t".into())),
        ..RegistryConfig::new(&capture.url)
    })
    .unwrap();
    let err = registry.schema_by_id(3).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.message().contains("HTTP 401") && !err.message().contains("s3cr3t"), "{err}");
    capture.next_request();
    assert!(capture.try_next_request(Duration::from_millis(200)).is_none(), "a 401 is not retried");
}

#[test]
fn bearer_token_header_is_sent() {
    let capture = Capture::start(200, CANNED);
    let registry = SchemaRegistry::new(RegistryConfig {
        bearer_token: Some("oauth-token-xyz".into()),
        ..RegistryConfig::new(&capture.url)
    })
    .unwrap();
    registry.schema_by_id(1).unwrap();
    assert_eq!(capture.next_request().header("authorization"), Some("Bearer oauth-token-xyz"));
    assert!(!format!("{registry:?}").contains("oauth-token-xyz"));
}

/// Registers payment.avsc and returns its id, off the async runtime.
async fn register_avro_off_runtime() -> i32 {
    tokio::task::spawn_blocking(|| {
        Ccompat::from_env().register(
            &unique_subject("payment-async-value"),
            "AVRO",
            &read_repo_file("schemas/payment/payment.avsc"),
            &[],
        )
    })
    .await
    .unwrap()
}

fn check(schema: &Arc<RegisteredSchema>, id: i32) {
    assert_eq!((schema.id, schema.schema_type), (Some(id), SchemaType::Avro));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usable_inside_a_multi_thread_runtime() {
    let id = register_avro_off_runtime().await;
    // Built, used and dropped on runtime threads: reqwest's blocking client would panic here.
    let registry = client();
    check(&registry.schema_by_id(id).unwrap(), id);
    let task = tokio::spawn(async move {
        registry.clear_cache();
        let schema = registry.schema_by_id(id).unwrap();
        drop(registry);
        schema
    });
    check(&task.await.unwrap(), id);
}

#[tokio::test(flavor = "current_thread")]
async fn usable_inside_a_current_thread_runtime() {
    let id = register_avro_off_runtime().await;
    let registry = client();
    check(&registry.schema_by_id(id).unwrap(), id);
    let err = registry.schema_by_id(2_000_000_001).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Registry);
}
