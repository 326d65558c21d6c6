//! Released vector files never change (xtests/README.md): `xtests/vectors/FROZEN` lists each
//! with its SHA-256, and this test fails when one was edited, removed, or a vector file exists
//! that is neither frozen nor the one being prepared (`FIELDCRYPT_XTEST_DRAFT`).

use sha2::{Digest, Sha256};

#[test]
fn frozen_vector_files_are_unchanged() {
    let dir = fieldcrypt_xtests::repo_root().join("xtests/vectors");
    let listing = std::fs::read_to_string(dir.join("FROZEN")).expect("xtests/vectors/FROZEN");
    let mut frozen = Vec::new();
    for line in listing.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let (hash, name) = line.split_once("  ").unwrap_or_else(|| panic!("FROZEN: bad line {line:?}"));
        let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("frozen vector file {name}: {e}"));
        let actual: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(actual, hash, "{name} changed: released vectors are frozen; add a new vN.json instead");
        frozen.push(name.to_string());
    }
    assert!(!frozen.is_empty(), "FROZEN lists no vector file");
    let draft = std::env::var("FIELDCRYPT_XTEST_DRAFT").ok();
    for file in fieldcrypt_xtests::vector_files() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            frozen.contains(&name) || draft.as_deref() == Some(name.as_str()),
            "{name} is not listed in xtests/vectors/FROZEN (freeze it: sha256sum {name} >> FROZEN)"
        );
    }
}
