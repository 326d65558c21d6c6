//! How fast a producer makes keys for new data subjects with the Kafka key store (a real
//! broker): each new subject's DEK is stored and acknowledged (`acks=all`) before the record that
//! needs it is returned, so this is the cost of a customer's first record. Baseline in the same
//! run: one thread; then 4 and 8 threads sharing one codec (different subjects proceed in
//! parallel; records of one subject share one key). Each run uses a fresh key topic.
//!
//! ```text
//! scripts/servers.sh start kafka && eval "$(scripts/servers.sh env)"
//! cargo bench -p fieldcrypt-it --bench subject_keys
//! ```

use std::sync::Arc;
use std::time::Instant;

use fieldcrypt::keystore::{KafkaKeyStore, KeyStore};
use fieldcrypt::{Codec, LocalKms, OwnedHeader, Policy};
use fieldcrypt_it::{required_env, unique_subject};

const SUBJECTS: usize = 2000;
const POLICY: &str = r#"{"fieldcrypt_policy": 1, "id": "bench-subjects", "encrypt": [
    {"name": "per-customer", "topics": ["customers"], "fields": ["email"], "key": "local://k",
     "subject": "customer_id"}]}"#;

/// New subjects per second with `threads` threads.
fn rate(bootstrap: &str, threads: usize, round: usize) -> f64 {
    let key_topic = format!("_fieldcrypt_keys-{}", unique_subject(&format!("bench-{threads}-{round}")));
    let store: Arc<dyn KeyStore> = Arc::new(KafkaKeyStore::open(bootstrap, &key_topic).expect("key store opens"));
    let codec = Codec::builder(Policy::from_json(POLICY).expect("policy"))
        .kms(LocalKms::new().with_secret("k", b"bench only"))
        .key_store_shared(store.clone())
        .build()
        .expect("codec builds");
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let codec = &codec;
            s.spawn(move || {
                for i in (t..SUBJECTS).step_by(threads) {
                    let value = format!(r#"{{"customer_id":"c-{i}","email":"c-{i}@example.com"}}"#);
                    codec.encrypt("customers", None, Some(value.as_bytes()), &[] as &[OwnedHeader]).expect("encrypts");
                }
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(codec.stats().deks_created, SUBJECTS as u64, "one new key per subject");
    assert_eq!(store.list().expect("lists").len(), SUBJECTS, "every key stored");
    SUBJECTS as f64 / secs
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this once more, quickly.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let bootstrap = required_env("FIELDCRYPT_KAFKA");
    println!("new data subjects per second, Kafka key store ({SUBJECTS} subjects per run, best of 3):");
    let mut baseline = 0.0;
    for threads in [1usize, 4, 8] {
        let best = (0..3).map(|round| rate(&bootstrap, threads, round)).fold(0.0, f64::max);
        if threads == 1 {
            baseline = best;
        }
        println!("  {threads} thread(s): {best:>7.0}/s  ({:.2}x one thread)", best / baseline);
    }
}
