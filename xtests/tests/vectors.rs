//! The Rust vector runner (xtests/README.md): every vector file, every case. The other
//! languages run the same file from their own suites.

use fieldcrypt_xtests::{
    check_encryption, vector_files, EncryptResult, EncryptResults, JsonRecord, Vectors, RESULTS_FORMAT,
};

fn all() -> Vec<(String, Vectors)> {
    let files = vector_files();
    assert!(!files.is_empty(), "no xtests/vectors/v*.json");
    files.iter().map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), Vectors::read(p).unwrap())).collect()
}

#[test]
fn positive_vectors_decrypt_to_the_expected_records() {
    for (file, v) in all() {
        for case in &v.cases {
            let codec = v.codec(&case.policy, &case.decrypt_config).unwrap();
            let r = case.encrypted.record().unwrap();
            let out = codec
                .decrypt(&case.topic, r.key.as_deref(), r.value.as_deref(), &r.headers)
                .unwrap_or_else(|e| panic!("{file} {}: {e}", case.id));
            assert_eq!(JsonRecord::of(&out), case.decrypted, "{file} {}", case.id);
        }
    }
}

#[test]
fn negative_vectors_fail_with_the_stated_kind() {
    for (file, v) in all() {
        for case in &v.negative {
            let codec = v.codec(&case.policy, &case.decrypt_config).unwrap();
            let r = case.record.record().unwrap();
            match codec.decrypt(&case.topic, r.key.as_deref(), r.value.as_deref(), &r.headers) {
                Ok(_) => panic!("{file} {}: decrypted, should fail with {}", case.id, case.error),
                Err(e) => assert_eq!(e.kind().as_str(), case.error, "{file} {}: {e}", case.id),
            }
        }
    }
}

/// Encrypts every plaintext and checks it as the other languages' encryptions are checked;
/// writes `encrypted-rust.json` too when FIELDCRYPT_XTEST_OUT is set.
#[test]
fn encryptions_of_every_plaintext_pass_the_checker() {
    let mut results = Vec::new();
    for (file, v) in all() {
        for case in &v.cases {
            let codec = v.codec(&case.policy, &case.encrypt_config).unwrap();
            let p = case.plaintext.record().unwrap();
            let out = codec.encrypt(&case.topic, p.key.as_deref(), p.value.as_deref(), &p.headers).unwrap();
            let got = JsonRecord::of(&out);
            check_encryption(&v, case, &got).unwrap_or_else(|e| panic!("{file} {}: {e}", case.id));
            results.push(EncryptResult { vectors: file.clone(), id: case.id.clone(), record: got });
        }
    }
    if let Some(dir) = std::env::var_os("FIELDCRYPT_XTEST_OUT") {
        let file = EncryptResults { format: RESULTS_FORMAT.into(), version: 1, language: "rust".into(), results };
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            std::path::Path::new(&dir).join("encrypted-rust.json"),
            serde_json::to_vec_pretty(&file).unwrap(),
        )
        .unwrap();
    }
}
