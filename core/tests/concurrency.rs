//! One codec shared by many threads: no GCM nonce is ever reused under a DEK, DEK rotation under
//! contention creates each DEK exactly once, and every record decrypts in another codec.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::thread;

use common::*;
use fieldcrypt::{Codec, DekId, Limits, LocalKms, Record};
use serde_json::{json, Value};

const THREADS: usize = 8;
const PER_THREAD: usize = 2000;
/// Small enough that the producer rotates its DEK many times while the threads race.
const MAX_USES: u64 = 2000;

#[test]
fn codec_is_send_sync_clone() {
    fn assert_traits<T: Send + Sync + Clone + 'static>() {}
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_traits::<Codec>();
    assert_traits::<Record>();
    assert_send_sync::<LocalKms>();
    assert_send_sync::<fieldcrypt::Error>();
    assert_send_sync::<fieldcrypt::Policy>();
}

fn record(thread: usize, i: usize) -> Value {
    json!({
        "thread": thread,
        "i": i,
        "password": format!("password {thread}/{i}"),
        "orders": [{"visa": format!("visa {thread}/{i}/a")}, {"visa": format!("visa {thread}/{i}/b")}],
        "n": i
    })
}

const ENCRYPTED: &[&str] = &["/password", "/orders/0/visa", "/orders/1/visa", "/n"];

#[test]
fn shared_codec_never_repeats_a_nonce() {
    let producer = test_codec_with_limits(Limits { dek_max_uses: MAX_USES, ..Limits::default() });
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let codec = producer.clone();
            thread::spawn(move || {
                (0..PER_THREAD).map(|i| (record(t, i), encrypt_value(&codec, "rt", &record(t, i)))).collect::<Vec<_>>()
            })
        })
        .collect();
    let sealed: Vec<(Value, Record)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert_eq!(sealed.len(), THREADS * PER_THREAD);

    // Every GCM nonce used under each DEK: the record nonce (nonce of the header tag, FORMAT.md
    // §2.1) and each field's nonce (§3) share one nonce space per key.
    let mut nonces: HashMap<DekId, HashSet<[u8; 12]>> = HashMap::new();
    let mut uses: HashMap<DekId, u64> = HashMap::new();
    let mut total = 0usize;
    for (_, r) in &sealed {
        let ids = dek_ids(r);
        assert_eq!(ids.len(), 1);
        let set = nonces.entry(ids[0]).or_default();
        assert!(set.insert(record_nonce(r)), "record nonce repeated");
        let doc = value_json(r);
        for ct in ciphertexts_at(&doc, ENCRYPTED) {
            assert!(set.insert(ct[..12].try_into().unwrap()), "field nonce repeated");
        }
        total += 1 + ENCRYPTED.len();
        *uses.entry(ids[0]).or_default() += 1 + ENCRYPTED.len() as u64;
    }
    assert_eq!(nonces.values().map(HashSet::len).sum::<usize>(), total);
    // And across all DEKs too (random 96-bit nonces: a repeat would mean a broken RNG).
    let all: HashSet<&[u8; 12]> = nonces.values().flatten().collect();
    assert_eq!(all.len(), total);

    // Rotation under contention: each DEK was created (and wrapped) exactly once.
    let stats = producer.stats();
    assert_eq!(stats.records_encrypted, (THREADS * PER_THREAD) as u64);
    assert_eq!(stats.fields_encrypted, (THREADS * PER_THREAD * ENCRYPTED.len()) as u64);
    assert_eq!(stats.deks_created, nonces.len() as u64);
    assert_eq!(stats.kms_wrap_calls, nonces.len() as u64);
    let min_deks = (total as u64).div_ceil(MAX_USES + (THREADS * (1 + ENCRYPTED.len())) as u64);
    assert!(nonces.len() as u64 >= min_deks, "{} DEKs for {total} uses", nonces.len());
    // `dek_max_uses` is checked when a record leases the DEK, so a DEK can overshoot it by what
    // the records that leased it concurrently use; never more.
    for (id, n) in &uses {
        assert!(*n < MAX_USES + (THREADS * (1 + ENCRYPTED.len())) as u64, "DEK {id:?} used {n} times");
    }

    // Every record decrypts, in a second codec (its own DEK cache, KMS unwraps), on many threads.
    let consumer = test_codec();
    let sealed = Arc::new(sealed);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (codec, sealed) = (consumer.clone(), sealed.clone());
            thread::spawn(move || {
                for (plain, r) in sealed.iter().skip(t).step_by(THREADS) {
                    let out = decrypt(&codec, "rt", r).unwrap();
                    assert_eq!(&value_json(&out), plain);
                    assert!(out.headers.is_empty());
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    let stats = consumer.stats();
    assert_eq!(stats.records_decrypted, (THREADS * PER_THREAD) as u64);
    assert_eq!(stats.fields_decrypted, (THREADS * PER_THREAD * ENCRYPTED.len()) as u64);
    // Concurrent misses on a new DEK may each unwrap it; at least one unwrap per DEK.
    assert!(stats.kms_unwrap_calls >= nonces.len() as u64);
    assert!(stats.kms_unwrap_calls <= (nonces.len() * THREADS) as u64);
}

#[test]
fn one_codec_encrypts_and_decrypts_concurrently() {
    // Producers and consumers on the same codec at once, on different topics and algorithms.
    let codec = test_codec();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let codec = codec.clone();
            thread::spawn(move || {
                for i in 0..200 {
                    let (topic, plain) = if t % 2 == 0 {
                        ("rt", record(t, i))
                    } else {
                        ("det", json!({"email": format!("u{}@example.com", i % 7), "password": format!("p{t}-{i}")}))
                    };
                    let sealed = encrypt_value(&codec, topic, &plain);
                    assert_eq!(value_json(&decrypt(&codec, topic, &sealed).unwrap()), plain);
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(codec.stats().records_decrypted, (THREADS * 200) as u64);
}

/// Threads that miss the DEK cache together still cost one KMS unwrap: the others wait for it.
#[test]
fn concurrent_cache_misses_unwrap_once() {
    let producer = demo_codec();
    let sealed: Vec<_> = (0..64).map(|i| encrypt_value(&producer, "customers", &record(0, i))).collect();
    for _ in 0..20 {
        let consumer = demo_codec(); // cold cache
        let barrier = std::sync::Barrier::new(8);
        std::thread::scope(|s| {
            for t in 0..8 {
                let (consumer, sealed, barrier) = (&consumer, &sealed, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    for r in sealed.iter().skip(t * 8).take(8) {
                        decrypt(consumer, "customers", r).unwrap();
                    }
                });
            }
        });
        assert_eq!(consumer.stats().kms_unwrap_calls, 1);
    }
}
