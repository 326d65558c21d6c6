//! Starts from a valid sealed record (fixtures/) and edits its header and value with the input's
//! operations (XOR, truncate, insert, remove; see `apply_ops`), so that mutations reach the
//! authentication and field-decryption code. Besides never panicking, decrypt must keep this
//! promise: every field it replaces holds exactly the original plaintext of that location.
//!
//! It is NOT true that a successful decrypt of a modified record returns the original value:
//! fields outside the policy are not authenticated (`"Ada"` -> `"Adb"` decrypts fine), an
//! encrypted field whose member name is changed is silently skipped, and a header naming a KEK
//! this consumer lacks decrypts nothing and succeeds with the ciphertext left in place.
#![no_main]

use fieldcrypt_fuzz::{
    apply_ops, fixture, replaced_values, HEADER_NAME, PLAINTEXT, SEALED_HEADER, SEALED_VALUE, TOPIC,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let (mut header, mut value) = (SEALED_HEADER.to_vec(), SEALED_VALUE.to_vec());
    apply_ops(data, &mut header, &mut value);
    let result = fx.codec.decrypt(TOPIC, None, Some(&value), &[(HEADER_NAME, header.as_slice())]);

    if header == SEALED_HEADER && value == SEALED_VALUE {
        let rec = result.expect("the unmodified record decrypts");
        assert_eq!(rec.value.as_deref(), Some(PLAINTEXT));
        assert!(rec.headers.is_empty(), "nothing is left encrypted, so the header is dropped");
        return;
    }
    let Ok(rec) = result else { return };
    let out = rec.value.as_deref().expect("decrypt keeps the value");
    if out == value.as_slice() {
        return; // nothing replaced
    }
    let before: Value = serde_json::from_slice(&value).expect("decrypt changed a value that is not JSON");
    let after: Value = serde_json::from_slice(out).expect("decrypted value is JSON");
    let replaced = replaced_values(&before, &after).unwrap_or_else(|e| panic!("{e}"));
    for (at, plain) in replaced {
        match fx.plaintext_at.get(&at) {
            Some(orig) if *orig == plain => {}
            orig => panic!("modified record decrypted {at} to {plain}, but the sealed record held {orig:?} there"),
        }
    }
});
