//! What the C ABI adds per record, measured from Rust on the standard benchmark workload (the
//! JSON payment record of `schemas/payment/payment.json`, demo policy, topic `payments`, four
//! PII fields):
//!
//! * `abi/encrypt` vs `core/encrypt` — `fc_codec_encrypt` (argument checks, packed headers in,
//!   the packed record out into a Rust-owned buffer, `fc_buf_free`) against `Codec::encrypt`;
//! * `abi/decrypt` vs `core/decrypt` — the same for decryption by a warm consumer codec.
//!
//! The difference is the marshaling cost every binding pays on top of its own call overhead
//! (cgo, P/Invoke, JNA), which each binding's benchmark states. Run with
//! `cargo bench -p fieldcrypt-ffi --bench abi`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use fieldcrypt::OwnedHeader;
use fieldcrypt_ffi::{fc_buf, fc_buf_free, fc_codec, fc_codec_decrypt, fc_codec_encrypt, fc_codec_new, FC_OK};

const TOPIC: &str = "payments";

fn fixture(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

fn texts() -> (String, String) {
    let policy = std::fs::read_to_string(fixture("schemas/policies/demo.json")).expect("policy");
    let keys = fixture("schemas/keys/local-dev.json");
    (policy, format!(r#"{{"kms": {{"local": {{"key_file": {:?}}}}}}}"#, keys.display().to_string()))
}

fn abi_codec(policy: &str, config: &str) -> *mut fc_codec {
    let mut codec = std::ptr::null_mut();
    let status = unsafe {
        fc_codec_new(policy.as_ptr(), policy.len(), config.as_ptr(), config.len(), &mut codec, std::ptr::null_mut())
    };
    assert_eq!(status, FC_OK);
    codec
}

/// Calls the ABI once; the output is freed as a binding would after copying it.
fn call(
    f: unsafe extern "C" fn(
        *const fc_codec,
        *const u8,
        usize,
        *const u8,
        i64,
        *const u8,
        i64,
        *const u8,
        usize,
        *mut fc_buf,
        *mut fieldcrypt_ffi::fc_error,
    ) -> i32,
    codec: *const fc_codec,
    value: &[u8],
    headers: &[u8],
) -> fc_buf {
    let mut out = fc_buf::EMPTY;
    let status = unsafe {
        f(
            codec,
            TOPIC.as_ptr(),
            TOPIC.len(),
            std::ptr::null(),
            -1,
            value.as_ptr(),
            value.len() as i64,
            headers.as_ptr(),
            headers.len(),
            &mut out,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(status, FC_OK);
    out
}

fn bench(c: &mut Criterion) {
    let (policy, config) = texts();
    let mut plain = std::fs::read(fixture("schemas/payment/payment.json")).expect("record");
    while plain.last().is_some_and(u8::is_ascii_whitespace) {
        plain.pop();
    }
    let producer = fieldcrypt::config::codec_from_json(&policy, &config).expect("codec");
    let consumer = fieldcrypt::config::codec_from_json(&policy, &config).expect("codec");
    let abi_producer = abi_codec(&policy, &config);
    let abi_consumer = abi_codec(&policy, &config);

    let none: &[OwnedHeader] = &[];
    let sealed = producer.encrypt(TOPIC, None, Some(&plain), none).expect("encrypt");
    let mut packed_headers = Vec::new();
    fieldcrypt_ffi::packed::put_parts(
        &mut packed_headers,
        None,
        None,
        sealed.headers.iter().map(|h| (h.name.as_str(), h.value.as_deref())),
    )
    .expect("pack");
    let packed_headers = packed_headers[8..].to_vec(); // the header list alone: drop the absent key and value
    let sealed_value = sealed.value.clone().expect("value");

    let mut g = c.benchmark_group("json");
    g.bench_function("core/encrypt", |b| {
        b.iter(|| black_box(producer.encrypt(TOPIC, None, Some(black_box(&plain)), none).unwrap()))
    });
    g.bench_function("abi/encrypt", |b| {
        b.iter(|| {
            let mut out = call(fc_codec_encrypt, abi_producer, black_box(&plain), &[]);
            unsafe { fc_buf_free(&mut out) };
        })
    });
    g.bench_function("core/decrypt", |b| {
        b.iter(|| black_box(consumer.decrypt(TOPIC, None, Some(black_box(&sealed_value)), &sealed.headers).unwrap()))
    });
    g.bench_function("abi/decrypt", |b| {
        b.iter(|| {
            let mut out = call(fc_codec_decrypt, abi_consumer, black_box(&sealed_value), &packed_headers);
            unsafe { fc_buf_free(&mut out) };
        })
    });
    g.finish();
    unsafe {
        fieldcrypt_ffi::fc_codec_free(abi_producer);
        fieldcrypt_ffi::fc_codec_free(abi_consumer);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
