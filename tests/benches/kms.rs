//! The per-record cost of encryption and decryption with a real KMS behind the DEK cache
//! (OpenBao's Vault Transit, started by `scripts/kms/openbao.sh`) against the same with the local
//! KMS, in one criterion run: once a DEK is wrapped (producer) or unwrapped (consumer), a record
//! costs the same whichever KMS holds the KEK. The workload is the standard payment record
//! (`schemas/payment/payment.json`, four PII fields), topic `payments` of the demo policy with its
//! KEK swapped for the Vault key.
//!
//! ```text
//! scripts/kms/openbao.sh start && eval "$(scripts/kms/openbao.sh env)"
//! cargo bench -p fieldcrypt-it --bench kms
//! ```
//!
//! Benchmark ids: `kms/local/encrypt`, `kms/vault/encrypt`, `kms/local/decrypt`, `kms/vault/decrypt`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fieldcrypt::kms::{VaultAuth, VaultConfig, VaultKms};
use fieldcrypt::{Codec, Kms, LocalKms, OwnedHeader, Policy};
use fieldcrypt_it::{read_repo_file, repo_root, required_env};

const TOPIC: &str = "payments";

fn policy_with_key(kek: &str) -> Policy {
    let text = read_repo_file("schemas/policies/demo.json").replace("local://demo-kek", kek);
    Policy::from_json(&text).expect("demo policy with the KEK swapped loads")
}

fn codec(kek: &str, kms: impl Kms + 'static) -> Codec {
    Codec::builder(policy_with_key(kek)).kms(kms).build().expect("codec builds")
}

fn vault() -> VaultKms {
    let mut config = VaultConfig::new(VaultAuth::token(required_env("FIELDCRYPT_VAULT_TOKEN")));
    config.plain_http = true; // the dev server on 127.0.0.1
    VaultKms::new(config).expect("vault client builds")
}

fn local() -> LocalKms {
    LocalKms::from_file(repo_root().join("schemas/keys/local-dev.json")).expect("local key file loads")
}

fn kms(c: &mut Criterion) {
    let vault_kek = required_env("FIELDCRYPT_VAULT_KEK");
    let mut plain = read_repo_file("schemas/payment/payment.json").into_bytes();
    while plain.last().is_some_and(u8::is_ascii_whitespace) {
        plain.pop();
    }
    let none: &[OwnedHeader] = &[];
    let setups = [
        ("local", codec("local://demo-kek", local()), codec("local://demo-kek", local())),
        ("vault", codec(&vault_kek, vault()), codec(&vault_kek, vault())),
    ];
    let mut group = c.benchmark_group("kms");
    group.throughput(Throughput::Elements(1));
    for (name, producer, consumer) in &setups {
        let sealed = producer.encrypt(TOPIC, None, Some(&plain), none).expect("encrypt");
        let opened = consumer.decrypt(TOPIC, None, sealed.value.as_deref(), &sealed.headers).expect("decrypt");
        let json = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).expect("JSON");
        assert_eq!(json(opened.value.as_deref().expect("value")), json(&plain), "{name}: round trip");
        group.bench_function(format!("{name}/encrypt"), |b| {
            b.iter(|| producer.encrypt(black_box(TOPIC), None, Some(black_box(&plain[..])), none).unwrap())
        });
        group.bench_function(format!("{name}/decrypt"), |b| {
            b.iter(|| consumer.decrypt(TOPIC, None, black_box(sealed.value.as_deref()), &sealed.headers).unwrap())
        });
        // One wrap and one unwrap: the KMS is behind the cache, never per record.
        let (p, c) = (producer.stats(), consumer.stats());
        assert_eq!((p.kms_wrap_calls, c.kms_unwrap_calls), (p.deks_created, 1), "{name}: {p:?} {c:?}");
        println!("{name}: {} DEK(s) wrapped, {} unwrap(s)", p.kms_wrap_calls, c.kms_unwrap_calls);
    }
    group.finish();
}

criterion_group!(benches, kms);
criterion_main!(benches);
