//! The committed C header must be exactly what the pinned cbindgen makes of the sources, so the
//! ABI the bindings compile against is the ABI the library exports. Regenerate it with
//! `FIELDCRYPT_BLESS=1 cargo test -p fieldcrypt-ffi --test header`.

use std::path::Path;

#[test]
fn committed_header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header")
        .write(&mut generated);
    let path = crate_dir.join("include/fieldcrypt.h");
    if std::env::var_os("FIELDCRYPT_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write the header");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: regenerate it with FIELDCRYPT_BLESS=1 cargo test -p fieldcrypt-ffi --test header",
        path.display()
    );
}
