//! Arbitrary header and value bytes into `Codec::decrypt` (topic `customers`, no record key),
//! under one of three profiles. It must never panic, whatever it returns.
//! Input: `[profile, len_lo, len_hi, header.., value..]` (see `split_decrypt_input`).
#![no_main]

use fieldcrypt_fuzz::{codecs, split_decrypt_input, HEADER_NAME, TOPIC};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((profile, header, value)) = split_decrypt_input(data) else { return };
    let _ = codecs()[profile].decrypt(TOPIC, None, Some(value), &[(HEADER_NAME, header)]);
});
