//! The committed C headers must be exactly what the pinned cbindgen makes of the sources, so the
//! ABI the bindings compile against is the ABI the libraries export. Regenerate them with
//! `FIELDCRYPT_BLESS=1 cargo test -p fieldcrypt-ffi --test header`.

use std::path::Path;

fn check(crate_dir: &Path, header: &Path) {
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header")
        .write(&mut generated);
    if std::env::var_os("FIELDCRYPT_BLESS").is_some() {
        std::fs::write(header, &generated).expect("write the header");
        return;
    }
    let committed = std::fs::read(header).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: regenerate it with FIELDCRYPT_BLESS=1 cargo test -p fieldcrypt-ffi --test header",
        header.display()
    );
}

#[test]
fn committed_codec_header_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    check(dir, &dir.join("include/fieldcrypt.h"));
}

#[test]
fn committed_kafka_header_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    check(&dir.join("kafka"), &dir.join("include/fieldcrypt_kafka.h"));
}
