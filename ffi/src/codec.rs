//! The codec handle and its calls.

use std::borrow::Cow;

use fieldcrypt::config::ConfiguredCodec;
use fieldcrypt::{Codec, Record, Reload};

use crate::packed::{self, RecordRef};
use crate::{bytes, fc_buf, fc_error, fc_stats, guard, part, put, text, Failure};

/// A codec: a policy with its KMS clients, schema source, limits and profile. Thread-safe:
/// share one per process. Made by `fc_codec_new`, freed by `fc_codec_free`.
pub struct fc_codec {
    codec: ConfiguredCodec,
}

/// The handle's codec; NULL is an invalid argument.
unsafe fn configured<'a>(codec: *const fc_codec) -> Result<&'a ConfiguredCodec, Failure> {
    // SAFETY: the caller's contract: NULL or a live handle from fc_codec_new.
    unsafe { codec.as_ref() }.map(|c| &c.codec).ok_or_else(|| Failure::invalid("codec is NULL"))
}

/// The codec of the policy in force behind a handle.
unsafe fn codec<'a>(codec: *const fc_codec) -> Result<Cow<'a, Codec>, Failure> {
    Ok(unsafe { configured(codec) }?.codec())
}

/// Makes a codec from a policy (JSON text: a policy or a signed envelope; no bytes when the
/// configuration has a `policy_source`) and a configuration document (JSON text; no bytes
/// means `{}`; see ffi/README.md). On success `*codec_out` is the new handle.
#[no_mangle]
pub unsafe extern "C" fn fc_codec_new(
    policy: *const u8,
    policy_len: usize,
    config: *const u8,
    config_len: usize,
    codec_out: *mut *mut fc_codec,
    err: *mut fc_error,
) -> i32 {
    guard(err, || {
        let policy = unsafe { text(policy, policy_len, "policy") }?;
        let config = unsafe { text(config, config_len, "config") }?;
        if codec_out.is_null() {
            return Err(Failure::invalid("codec_out is NULL"));
        }
        let policy = Some(policy).filter(|p| !p.is_empty());
        let codec = fieldcrypt::config::open(policy, config)?;
        unsafe { put(codec_out, Box::into_raw(Box::new(fc_codec { codec })), "codec_out") }
    })
}

/// Frees a codec. NULL is a no-op. No call on the codec may be running or follow.
#[no_mangle]
pub unsafe extern "C" fn fc_codec_free(codec: *mut fc_codec) {
    if codec.is_null() {
        return;
    }
    // A panic while dropping (a KMS client's destructor) must not unwind into C.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the caller's contract: a handle from fc_codec_new, freed once.
        drop(unsafe { Box::from_raw(codec) });
    }));
}

#[derive(Clone, Copy)]
enum Direction {
    Encrypt,
    Decrypt,
}

impl Direction {
    fn run(self, codec: &Codec, topic: &str, r: &RecordRef<'_>) -> fieldcrypt::Result<Record> {
        match self {
            Direction::Encrypt => codec.encrypt(topic, r.key, r.value, &r.headers),
            Direction::Decrypt => codec.decrypt(topic, r.key, r.value, &r.headers),
        }
    }
}

unsafe fn one(
    direction: Direction,
    codec: *const fc_codec,
    topic: *const u8,
    topic_len: usize,
    key: *const u8,
    key_len: i64,
    value: *const u8,
    value_len: i64,
    headers: *const u8,
    headers_len: usize,
    record_out: *mut fc_buf,
    err: *mut fc_error,
) -> i32 {
    guard(err, || {
        let codec = unsafe { self::codec(codec) }?;
        let topic = unsafe { text(topic, topic_len, "topic") }?;
        let record = RecordRef {
            key: unsafe { part(key, key_len, "key") }?,
            value: unsafe { part(value, value_len, "value") }?,
            headers: packed::headers(unsafe { bytes(headers, headers_len, "headers") }?)?,
        };
        if record_out.is_null() {
            return Err(Failure::invalid("record_out is NULL"));
        }
        let out = direction.run(&codec, topic, &record)?;
        unsafe { put(record_out, fc_buf::from_vec(packed::pack_record(&out)?), "record_out") }
    })
}

unsafe fn batch(
    direction: Direction,
    codec: *const fc_codec,
    topic: *const u8,
    topic_len: usize,
    batch: *const u8,
    batch_len: usize,
    batch_out: *mut fc_buf,
    err: *mut fc_error,
) -> i32 {
    guard(err, || {
        let codec = unsafe { self::codec(codec) }?;
        let topic = unsafe { text(topic, topic_len, "topic") }?;
        let records = packed::batch(unsafe { bytes(batch, batch_len, "batch") }?)?;
        if batch_out.is_null() {
            return Err(Failure::invalid("batch_out is NULL"));
        }
        let count = u32::try_from(records.len()).map_err(|_| Failure::invalid("too many records"))?;
        let mut out = count.to_le_bytes().to_vec();
        for (i, r) in records.iter().enumerate() {
            let done = direction.run(&codec, topic, r).map_err(|e| Failure::from(e).at(i))?;
            packed::put_record(&mut out, &done).map_err(|f| f.at(i))?;
        }
        unsafe { put(batch_out, fc_buf::from_vec(out), "batch_out") }
    })
}

/// Encrypts the fields the policy selects for `topic` in one record. `key`/`value` with a
/// negative length are absent; `headers` is a packed header list (no bytes: none). On success
/// `*record_out` is the packed result: the new key and value, the input headers plus the
/// `fieldcrypt` header. Fails closed: on any error there is no output.
#[no_mangle]
pub unsafe extern "C" fn fc_codec_encrypt(
    codec: *const fc_codec,
    topic: *const u8,
    topic_len: usize,
    key: *const u8,
    key_len: i64,
    value: *const u8,
    value_len: i64,
    headers: *const u8,
    headers_len: usize,
    record_out: *mut fc_buf,
    err: *mut fc_error,
) -> i32 {
    unsafe {
        one(
            Direction::Encrypt,
            codec,
            topic,
            topic_len,
            key,
            key_len,
            value,
            value_len,
            headers,
            headers_len,
            record_out,
            err,
        )
    }
}

/// Decrypts what the codec's profile and KMS access allow in one record; parameters as
/// `fc_codec_encrypt`. A record without the `fieldcrypt` header comes back unchanged.
#[no_mangle]
pub unsafe extern "C" fn fc_codec_decrypt(
    codec: *const fc_codec,
    topic: *const u8,
    topic_len: usize,
    key: *const u8,
    key_len: i64,
    value: *const u8,
    value_len: i64,
    headers: *const u8,
    headers_len: usize,
    record_out: *mut fc_buf,
    err: *mut fc_error,
) -> i32 {
    unsafe {
        one(
            Direction::Decrypt,
            codec,
            topic,
            topic_len,
            key,
            key_len,
            value,
            value_len,
            headers,
            headers_len,
            record_out,
            err,
        )
    }
}

/// `fc_codec_encrypt` over a packed batch of records of one topic; `*batch_out` is the packed
/// batch of results, in order. The first failing record fails the whole call (`err->index`
/// says which) and there is no output.
#[no_mangle]
pub unsafe extern "C" fn fc_codec_encrypt_batch(
    codec: *const fc_codec,
    topic: *const u8,
    topic_len: usize,
    records: *const u8,
    records_len: usize,
    batch_out: *mut fc_buf,
    err: *mut fc_error,
) -> i32 {
    unsafe { batch(Direction::Encrypt, codec, topic, topic_len, records, records_len, batch_out, err) }
}

/// `fc_codec_decrypt` over a packed batch, like `fc_codec_encrypt_batch`.
#[no_mangle]
pub unsafe extern "C" fn fc_codec_decrypt_batch(
    codec: *const fc_codec,
    topic: *const u8,
    topic_len: usize,
    records: *const u8,
    records_len: usize,
    batch_out: *mut fc_buf,
    err: *mut fc_error,
) -> i32 {
    unsafe { batch(Direction::Decrypt, codec, topic, topic_len, records, records_len, batch_out, err) }
}

/// The codec's counters since it was built.
#[no_mangle]
pub unsafe extern "C" fn fc_codec_stats(codec: *const fc_codec, stats_out: *mut fc_stats, err: *mut fc_error) -> i32 {
    guard(err, || {
        let s = unsafe { self::codec(codec) }?.stats();
        let stats = fc_stats {
            records_encrypted: s.records_encrypted,
            records_decrypted: s.records_decrypted,
            fields_encrypted: s.fields_encrypted,
            fields_decrypted: s.fields_decrypted,
            fields_withheld: s.fields_withheld,
            deks_created: s.deks_created,
            kms_wrap_calls: s.kms_wrap_calls,
            kms_unwrap_calls: s.kms_unwrap_calls,
            kms_derive_calls: s.kms_derive_calls,
            kms_errors: s.kms_errors,
            kms_denials_cached: s.kms_denials_cached,
            dek_cache_hits: s.dek_cache_hits,
            dek_cache_misses: s.dek_cache_misses,
        };
        unsafe { put(stats_out, stats, "stats_out") }
    })
}

/// Drops every cached unwrapped data key; the next records ask the KMS again.
#[no_mangle]
pub unsafe extern "C" fn fc_codec_clear_key_cache(codec: *const fc_codec, err: *mut fc_error) -> i32 {
    guard(err, || {
        unsafe { self::codec(codec) }?.clear_key_cache();
        Ok(())
    })
}

/// Crypto-shreds a data subject (docs/SHREDDING.md): deletes every data key the codec's key
/// store holds for `subject` (its value, UTF-8), so none of its records decrypts again.
/// `*keys_out` (may be NULL) gets how many keys were deleted. Needs a `key_store` in the
/// codec's configuration.
#[no_mangle]
pub unsafe extern "C" fn fc_codec_shred(
    codec: *const fc_codec,
    subject: *const u8,
    subject_len: usize,
    keys_out: *mut u64,
    err: *mut fc_error,
) -> i32 {
    guard(err, || {
        let codec = unsafe { self::codec(codec) }?;
        let subject = unsafe { text(subject, subject_len, "subject") }?;
        let n = codec.shred(subject)?;
        if !keys_out.is_null() {
            unsafe { put(keys_out, n as u64, "keys_out") }?;
        }
        Ok(())
    })
}

/// Rotates a data subject's keys: stores a new data key for `subject` under every KEK a
/// per-subject rule uses; older records still decrypt until the subject is shredded.
#[no_mangle]
pub unsafe extern "C" fn fc_codec_rotate_subject(
    codec: *const fc_codec,
    subject: *const u8,
    subject_len: usize,
    err: *mut fc_error,
) -> i32 {
    guard(err, || {
        let codec = unsafe { self::codec(codec) }?;
        let subject = unsafe { text(subject, subject_len, "subject") }?;
        codec.rotate_subject(subject)?;
        Ok(())
    })
}

/// Fetches the codec's policy source now (a codec made with a `policy_source`). `*loaded_out`
/// (may be NULL) is true when a new revision is now in force, false when the source had nothing
/// new. A policy that does not verify, or a source that cannot be read, is an error and the
/// policy in force stays.
#[no_mangle]
pub unsafe extern "C" fn fc_codec_reload(codec: *const fc_codec, loaded_out: *mut bool, err: *mut fc_error) -> i32 {
    guard(err, || {
        let loaded = matches!(unsafe { configured(codec) }?.reload_now()?, Reload::Loaded { .. });
        if !loaded_out.is_null() {
            unsafe { put(loaded_out, loaded, "loaded_out") }?;
        }
        Ok(())
    })
}

/// The policy in force and its reload counters, as JSON text in `*status_out`:
/// `{"policy_id", "revision", "signed_by", "source", "loads", "rejections", "fetch_errors",
/// "last_error": {"kind", "message"} | null}`.
#[no_mangle]
pub unsafe extern "C" fn fc_codec_policy_status(
    codec: *const fc_codec,
    status_out: *mut fc_buf,
    err: *mut fc_error,
) -> i32 {
    guard(err, || {
        let codec = unsafe { configured(codec) }?;
        if status_out.is_null() {
            return Err(Failure::invalid("status_out is NULL"));
        }
        let status = codec.status().to_json().to_string();
        unsafe { put(status_out, fc_buf::from_vec(status.into_bytes()), "status_out") }
    })
}
