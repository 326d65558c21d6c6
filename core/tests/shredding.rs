//! Per-subject keys and crypto-shredding with the file-backed key store (docs/SHREDDING.md).
//! The same against a real broker and the Kafka key store: tests/tests/shredding.rs.

use std::sync::Arc;
use std::time::Duration;

use fieldcrypt::header::DekLocation;
use fieldcrypt::keystore::{FileKeyStore, KeyStore};
use fieldcrypt::{Codec, ErrorKind, LocalKms, OwnedHeader, Policy, Record};

const POLICY: &str = r#"{"fieldcrypt_policy": 1, "id": "shred-test", "revision": 1,
  "encrypt": [
    {"name": "per-customer", "topics": ["customers"], "fields": ["email", "card"], "key": "local://kek",
     "subject": "customer_id"},
    {"name": "per-key", "topics": ["events"], "fields": ["note"], "key": "local://kek", "subject": "$key"}
  ],
  "profiles": {"strict": {"decrypt": [{"topics": ["*"]}], "otherwise": "error"}}}"#;

fn kms() -> LocalKms {
    LocalKms::new().with_secret("kek", b"shredding tests")
}

fn store(dir: &tempdir::Dir) -> Arc<dyn KeyStore> {
    Arc::new(FileKeyStore::open(dir.path().join("keys.jsonl"), Duration::ZERO).unwrap())
}

fn codec(store: &Arc<dyn KeyStore>, profile: Option<&str>) -> Codec {
    let mut b = Codec::builder(Policy::from_json(POLICY).unwrap()).kms(kms()).key_store_shared(store.clone());
    if let Some(p) = profile {
        b = b.profile(p);
    }
    b.build().unwrap()
}

fn customer(i: u32) -> Vec<u8> {
    format!(r#"{{"customer_id":"c-{i}","email":"user{i}@example.com","card":"4000-{i:04}","n":{i}}}"#).into_bytes()
}

fn encrypt(codec: &Codec, topic: &str, key: Option<&[u8]>, value: &[u8]) -> Record {
    codec.encrypt(topic, key, Some(value), &[] as &[OwnedHeader]).unwrap()
}

fn decrypt(codec: &Codec, topic: &str, r: &Record) -> fieldcrypt::Result<Record> {
    codec.decrypt(topic, r.key.as_deref(), r.value.as_deref(), &r.headers)
}

/// Tiny scratch directory, removed on drop (no extra dependency).
mod tempdir {
    pub struct Dir(std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            let p = std::env::temp_dir().join(format!("fieldcrypt-shred-{}-{}", std::process::id(), rand_suffix()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn rand_suffix() -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0);
        h.finish()
    }
}

#[test]
fn each_subject_has_its_own_key_held_by_reference() {
    let dir = tempdir::Dir::new();
    let store = store(&dir);
    let producer = codec(&store, None);
    let a1 = encrypt(&producer, "customers", None, &customer(1));
    let a2 = encrypt(&producer, "customers", None, &customer(1));
    let b = encrypt(&producer, "customers", None, &customer(2));
    let entry = |r: &Record| {
        let h = fieldcrypt::header::parse(r.fieldcrypt_header().unwrap()).unwrap();
        assert!(matches!(h.keys[0].dek, DekLocation::KeyStore), "per-subject keys are held by reference");
        h.keys[0].dek_id
    };
    assert_eq!(entry(&a1), entry(&a2), "one key per subject");
    assert_ne!(entry(&a1), entry(&b), "another subject, another key");
    assert_eq!(store.list().unwrap().len(), 2);
    let consumer = codec(&store, None);
    assert_eq!(decrypt(&consumer, "customers", &a1).unwrap().value.unwrap(), customer(1));
    assert_eq!(decrypt(&consumer, "customers", &b).unwrap().value.unwrap(), customer(2));
}

/// Threads encrypting records of new subjects at once: each subject gets exactly one key (records
/// of one new subject wait for the one being made), and different subjects do not wait on each
/// other's store writes for correctness.
#[test]
fn concurrent_records_of_new_subjects_share_one_key_per_subject() {
    let dir = tempdir::Dir::new();
    let store = store(&dir);
    let producer = codec(&store, None);
    let ids: Vec<Vec<fieldcrypt::DekId>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let producer = &producer;
                s.spawn(move || {
                    (0..20u32)
                        .map(|i| {
                            let r = encrypt(producer, "customers", None, &customer(i));
                            fieldcrypt::header::parse(r.fieldcrypt_header().unwrap()).unwrap().keys[0].dek_id
                        })
                        .collect()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for i in 0..20 {
        assert!(ids.iter().all(|t| t[i] == ids[0][i]), "customer {i}: one key across threads");
    }
    assert_eq!(store.list().unwrap().len(), 20, "one stored key per subject");
    assert_eq!(producer.stats().deks_created, 20);
}

/// Shred one of 1,000 customers: its records no longer decrypt, in a fresh consumer and in one
/// that had its key cached; every other customer's still do; new records of the shredded
/// customer get a new key.
#[test]
fn shredding_one_of_1000_customers() {
    let dir = tempdir::Dir::new();
    let store = store(&dir);
    let producer = codec(&store, None);
    let records: Vec<Record> = (0..1000).map(|i| encrypt(&producer, "customers", None, &customer(i))).collect();
    let running = codec(&store, Some("strict"));
    for (i, r) in records.iter().enumerate() {
        assert_eq!(decrypt(&running, "customers", r).unwrap().value.unwrap(), customer(i as u32));
    }

    assert_eq!(producer.shred("c-42").unwrap(), 1);

    let fresh = codec(&store, Some("strict"));
    let lenient = codec(&store, None);
    for consumer in [&running, &fresh] {
        for (i, r) in records.iter().enumerate() {
            match decrypt(consumer, "customers", r) {
                Ok(_) => assert_ne!(i, 42, "customer 42 still decrypts"),
                Err(e) => {
                    assert_eq!(i, 42, "customer {i}: {e}");
                    assert_eq!(e.kind(), ErrorKind::Shredded, "{e}");
                }
            }
            if i != 42 {
                assert_eq!(decrypt(consumer, "customers", r).unwrap().value.unwrap(), customer(i as u32));
            }
        }
    }
    // Without `otherwise: error`, the fields stay ciphertext and the record is returned.
    let out = decrypt(&lenient, "customers", &records[42]).unwrap();
    assert_eq!(out, records[42]);
    let text = String::from_utf8(out.value.unwrap()).unwrap();
    assert!(!text.contains("user42@example.com") && text.contains("\"c-42\""));

    // The producer writes on for customer 42 under a new key, readable again.
    let again = encrypt(&producer, "customers", None, &customer(42));
    assert_eq!(decrypt(&fresh, "customers", &again).unwrap().value.unwrap(), customer(42));
    assert_eq!(decrypt(&fresh, "customers", &records[42]).unwrap_err().kind(), ErrorKind::Shredded);
}

#[test]
fn the_record_key_can_be_the_subject() {
    let dir = tempdir::Dir::new();
    let store = store(&dir);
    let producer = codec(&store, None);
    let r = encrypt(&producer, "events", Some(b"c-7"), br#"{"note":"called"}"#);
    let consumer = codec(&store, Some("strict"));
    assert_eq!(decrypt(&consumer, "events", &r).unwrap().value.unwrap(), br#"{"note":"called"}"#);
    producer.shred("c-7").unwrap();
    assert_eq!(decrypt(&consumer, "events", &r).unwrap_err().kind(), ErrorKind::Shredded);
}

#[test]
fn subjects_must_be_present_and_a_store_configured() {
    let dir = tempdir::Dir::new();
    let store = store(&dir);
    let producer = codec(&store, None);
    let no_subject =
        producer.encrypt("customers", None, Some(br#"{"email":"x@y"}"#), &[] as &[OwnedHeader]).unwrap_err();
    assert_eq!(no_subject.kind(), ErrorKind::Record, "fail closed: {no_subject}");
    let no_key = producer.encrypt("events", None, Some(br#"{"note":"x"}"#), &[] as &[OwnedHeader]).unwrap_err();
    assert_eq!(no_key.kind(), ErrorKind::Record);
    let e = Codec::builder(Policy::from_json(POLICY).unwrap()).kms(kms()).build().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    // The subject may not be one of the rule's encrypted fields.
    let bad = POLICY.replace(r#""fields": ["email", "card"]"#, r#""fields": ["email", "customer_id"]"#);
    assert_eq!(Policy::from_json(&bad).unwrap_err().kind(), ErrorKind::Policy);
}

#[test]
fn a_second_process_sees_the_shred_through_the_file() {
    let dir = tempdir::Dir::new();
    let one = store(&dir);
    let other: Arc<dyn KeyStore> =
        Arc::new(FileKeyStore::open(dir.path().join("keys.jsonl"), Duration::from_millis(50)).unwrap());
    let producer = codec(&one, None);
    let r = encrypt(&producer, "customers", None, &customer(5));
    let consumer = codec(&other, Some("strict"));
    assert!(decrypt(&consumer, "customers", &r).is_ok());
    producer.shred("c-5").unwrap();
    std::thread::sleep(Duration::from_millis(120)); // the documented delay: the store's refresh
    assert_eq!(decrypt(&consumer, "customers", &r).unwrap_err().kind(), ErrorKind::Shredded);
}

#[test]
fn rotating_a_subject_keeps_old_records_readable_until_the_shred() {
    let dir = tempdir::Dir::new();
    let store = store(&dir);
    let producer = codec(&store, None);
    let before = encrypt(&producer, "customers", None, &customer(9));
    let new_ids = producer.rotate_subject("c-9").unwrap();
    assert_eq!(new_ids.len(), 1, "one per-subject KEK in the policy");
    let after = encrypt(&producer, "customers", None, &customer(9));
    let dek = |r: &Record| fieldcrypt::header::parse(r.fieldcrypt_header().unwrap()).unwrap().keys[0].dek_id;
    assert_ne!(dek(&before), dek(&after));
    assert_eq!(dek(&after), new_ids[0]);
    let consumer = codec(&store, Some("strict"));
    assert!(decrypt(&consumer, "customers", &before).is_ok() && decrypt(&consumer, "customers", &after).is_ok());
    assert_eq!(producer.shred("c-9").unwrap(), 2, "both keys of the subject");
    assert_eq!(decrypt(&consumer, "customers", &before).unwrap_err().kind(), ErrorKind::Shredded);
    assert_eq!(decrypt(&consumer, "customers", &after).unwrap_err().kind(), ErrorKind::Shredded);
}

/// Audit events reach an application's hook with ids only: the subject is hashed, no e-mail,
/// card or key material appears.
#[test]
fn audit_events_reach_the_hook_without_personal_data() {
    use std::sync::Mutex;
    let seen: Arc<Mutex<Vec<fieldcrypt::audit::AuditEvent>>> = Arc::default();
    let sink = seen.clone();
    fieldcrypt::audit::set_hook(move |e| sink.lock().unwrap().push(e.clone()));
    let dir = tempdir::Dir::new();
    let store = store(&dir);
    let producer = codec(&store, None);
    encrypt(&producer, "customers", None, &customer(777));
    producer.rotate_subject("c-777").unwrap();
    producer.shred("c-777").unwrap();
    fieldcrypt::audit::clear_hook();
    let subject = fieldcrypt::keystore::SubjectId::of("c-777").to_string();
    let ours: Vec<String> = seen.lock().unwrap().iter().map(|e| e.to_json()).filter(|j| j.contains(&subject)).collect();
    let names: Vec<&str> = ours.iter().map(|j| j.split('"').nth(3).unwrap()).collect();
    // A rotation stores a new key (key_created) and makes it current (key_rotated).
    assert_eq!(names, ["key_created", "key_created", "key_rotated", "subject_shredded"], "{ours:?}");
    for json in &ours {
        assert!(!json.contains("c-777") && !json.contains("user777") && !json.contains("4000-0777"), "{json}");
    }
}

/// After compaction removed a DEK's record and its tombstone, the shred marker alone still
/// makes its id read as shredded, not unknown.
#[test]
fn the_shred_marker_alone_names_the_shredded_keys() {
    let dir = tempdir::Dir::new();
    let store = store(&dir);
    let producer = codec(&store, None);
    let r = encrypt(&producer, "customers", None, &customer(3));
    producer.shred("c-3").unwrap();
    let path = dir.path().join("keys.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let marker_only: String = text.lines().filter(|l| l.contains("\"shred\"")).map(|l| format!("{l}\n")).collect();
    assert_eq!(marker_only.lines().count(), 1, "{text}");
    let compacted = dir.path().join("compacted.jsonl");
    std::fs::write(&compacted, marker_only).unwrap();
    let after: Arc<dyn KeyStore> = Arc::new(FileKeyStore::open(&compacted, Duration::ZERO).unwrap());
    let consumer = codec(&after, Some("strict"));
    assert_eq!(decrypt(&consumer, "customers", &r).unwrap_err().kind(), ErrorKind::Shredded);
}

/// Per-subject keys read the subject from Avro and Protobuf records too: a top-level string,
/// integer (in a union) or enum, found past fields of other types.
#[test]
fn avro_and_protobuf_records_name_their_subject() {
    use fieldcrypt::framing::SchemaRef;
    use fieldcrypt::{SchemaText, SchemaType, StaticSchemas};

    const AVRO: &str = r#"{"type": "record", "name": "Customer", "fields": [
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "address", "type": {"type": "record", "name": "Address", "fields": [{"name": "city", "type": "string"}]}},
        {"name": "customer_id", "type": ["null", "long"]},
        {"name": "email", "type": "string"}]}"#;
    const PROTO: &str = r#"syntax = "proto3"; package t;
        message Customer { repeated string tags = 1; string customer_id = 2; string email = 3; }"#;
    let policy = r#"{"fieldcrypt_policy": 1, "id": "binary-subjects", "encrypt": [
        {"name": "a", "topics": ["avro", "proto"], "fields": ["email"], "key": "local://kek", "subject": "customer_id"}],
        "profiles": {"strict": {"decrypt": [{"topics": ["*"]}], "otherwise": "error"}}}"#;
    let schemas = || {
        StaticSchemas::new()
            .with(
                SchemaRef::Id(1),
                SchemaText {
                    schema_type: SchemaType::Avro,
                    name: "c.avsc".into(),
                    text: AVRO.into(),
                    references: vec![],
                },
            )
            .with(
                SchemaRef::Id(2),
                SchemaText {
                    schema_type: SchemaType::Protobuf,
                    name: "c.proto".into(),
                    text: PROTO.into(),
                    references: vec![],
                },
            )
    };
    let dir = tempdir::Dir::new();
    let store = store(&dir);
    let build = |profile: Option<&str>| {
        let mut b = Codec::builder(Policy::from_json(policy).unwrap())
            .kms(kms())
            .key_store_shared(store.clone())
            .schemas(schemas());
        if let Some(p) = profile {
            b = b.profile(p);
        }
        b.build().unwrap()
    };
    let (producer, consumer) = (build(None), build(Some("strict")));

    // Avro: [tags: ["vip", "eu"]] [address.city] [customer_id: union branch 1, long 42] [email]
    let avro = |id: Option<i64>| {
        let mut v = vec![0u8, 0, 0, 0, 1];
        v.extend_from_slice(&[0x04, 0x06, b'v', b'i', b'p', 0x04, b'e', b'u', 0x00]);
        v.extend_from_slice(&[0x0c, b'L', b'o', b'n', b'd', b'o', b'n']);
        match id {
            Some(n) => v.extend_from_slice(&[0x02, (n << 1) as u8]),
            None => v.push(0x00),
        }
        v.extend_from_slice(&[0x0e, b'a', b'@', b'b', b'.', b'c', b'o', b'm']);
        v
    };
    // Protobuf: message index [0] (one 0 byte), tags = "vip", customer_id = "c-9", email.
    let proto = |id: &str| {
        let mut v = vec![0u8, 0, 0, 0, 2, 0];
        v.extend_from_slice(&[0x0a, 3, b'v', b'i', b'p', 0x12, id.len() as u8]);
        v.extend_from_slice(id.as_bytes());
        v.extend_from_slice(&[0x1a, 7, b'a', b'@', b'b', b'.', b'c', b'o', b'm']);
        v
    };
    let a42 = encrypt(&producer, "avro", None, &avro(Some(42)));
    let a43 = encrypt(&producer, "avro", None, &avro(Some(43)));
    let p9 = encrypt(&producer, "proto", None, &proto("c-9"));
    for (topic, r) in [("avro", &a42), ("avro", &a43), ("proto", &p9)] {
        let sealed = r.value.as_deref().unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"a@b.com"), "{topic}: email encrypted");
        assert!(decrypt(&consumer, topic, r).is_ok());
    }
    // Subject 42 (the long, in decimal) and "c-9" are shredded; 43 still reads.
    assert!(producer.shred("42").unwrap() >= 1);
    assert!(producer.shred("c-9").unwrap() >= 1);
    assert_eq!(decrypt(&consumer, "avro", &a42).unwrap_err().kind(), ErrorKind::Shredded);
    assert_eq!(decrypt(&consumer, "proto", &p9).unwrap_err().kind(), ErrorKind::Shredded);
    assert_eq!(decrypt(&consumer, "avro", &a43).unwrap().value.unwrap(), avro(Some(43)));
    // No subject (null in Avro, unset in proto3): nothing is encrypted, the record fails.
    for (topic, value) in [("avro", avro(None)), ("proto", proto(""))] {
        let e = producer.encrypt(topic, None, Some(&value), &[] as &[OwnedHeader]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Record, "{topic}: {e}");
    }
}

/// The Kafka key store's timeout bounds every step of opening it, topic creation included, so an
/// unreachable broker is a clear, retryable error after about that long (librdkafka's own
/// request timeout is 60 s).
#[cfg(feature = "kafka")]
#[test]
fn an_unreachable_kafka_key_store_fails_within_its_timeout() {
    use fieldcrypt::keystore::{KafkaKeyStore, KafkaKeyStoreOptions};
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", "127.0.0.1:1");
    let options = KafkaKeyStoreOptions { timeout: Duration::from_secs(1), ..Default::default() };
    let started = std::time::Instant::now();
    let e = KafkaKeyStore::open_with(&config, &options).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Kms, "{e}");
    assert!(e.is_retryable(), "{e}");
    assert!(started.elapsed() < Duration::from_secs(30), "the timeout is not honoured: {:?}", started.elapsed());
}
