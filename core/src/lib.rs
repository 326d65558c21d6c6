//! # fieldcrypt
//!
//! Client-side field-level encryption for Kafka records. A security team's [`Policy`] says which
//! fields of which topics are encrypted, under which KMS key and algorithm; a [`Codec`] rewrites
//! those fields inside the serialized record (teams keep their serializers) and records in a
//! header ([`HEADER_NAME`], `docs/FORMAT.md`) what a consumer needs to decrypt them.
//!
//! ```
//! use fieldcrypt::{Codec, LocalKms, Policy, OwnedHeader};
//! let policy = Policy::from_json(r#"{"fieldcrypt_policy": 1, "id": "doc",
//!     "encrypt": [{"name": "secrets", "topics": ["customers"], "fields": ["password"],
//!                  "key": "local://demo"}]}"#)?;
//! let codec = Codec::builder(policy).kms(LocalKms::new().with_secret("demo", b"dev only")).build()?;
//! let plain = br#"{"name":"Ada","password":"hunter2"}"#;
//! let sealed = codec.encrypt("customers", None, Some(plain), &[] as &[OwnedHeader])?;
//! assert!(!String::from_utf8_lossy(sealed.value.as_ref().unwrap()).contains("hunter2"));
//! let opened = codec.decrypt("customers", None, sealed.value.as_deref(), &sealed.headers)?;
//! assert_eq!(opened.value.as_deref(), Some(&plain[..]));
//! # Ok::<(), fieldcrypt::Error>(())
//! ```

pub mod audit;
mod codec;
pub mod config;
mod crypto;
mod error;
mod formats;
pub mod framing;
pub mod header;
mod http;
mod keys;
pub mod keystore;
pub mod kms;
pub mod policy;
pub mod registry;
mod reload;
mod schema;
mod stats;

#[cfg(feature = "kafka")]
pub mod kafka;

/// Schema-directed Avro encoding of a generic value tree, for bindings' drop-in serializers.
pub mod avro_values {
    pub use crate::formats::avro::values::{AvroBuilder, AvroDatumSchema, AvroValue};
}

pub use codec::{Codec, CodecBuilder, HeaderView, OwnedHeader, Record, TEXT_ENCODING};
pub use crypto::{Algorithm, DekId};
pub use error::{Error, ErrorKind, Result};
pub use header::HEADER_NAME;
pub use http::HttpOptions;
pub use keys::{Limits, DEK_HARD_USE_LIMIT};
pub use kms::{KekUri, Kms, LocalKms, WrapContext, WrappedDek};
pub use policy::{
    Fetched, FileSource, HttpsSource, MemorySource, Part, Policy, PolicySource, PolicyVerifier, PublicKey,
    SignedPolicy, SigningKey, Verification,
};
pub use reload::{Reload, ReloadStatus, ReloadingCodec, ReloadingCodecBuilder, DEFAULT_RELOAD_INTERVAL};
pub use schema::{SchemaSource, SchemaText, SchemaType, StaticSchemas};
pub use stats::Stats;
