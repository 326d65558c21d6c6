//! Arbitrary bytes into the header parser: it must never panic, and every header it accepts must
//! be canonical (the format has exactly one byte form per header: re-encoding gives the input).
#![no_main]

use fieldcrypt::header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(env) = header::parse(data) else { return };
    let mut again = Vec::with_capacity(data.len());
    header::write_body(&mut again, &env.record_nonce, env.policy_id, env.policy_revision, &env.keys);
    assert_eq!(again.as_slice(), env.body, "accepted header body is not canonical");
    for tag in &env.tags {
        again.extend_from_slice(tag);
    }
    assert_eq!(again.as_slice(), data, "accepted header does not re-encode to its bytes");
});
