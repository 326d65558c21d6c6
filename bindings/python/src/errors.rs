//! fieldcrypt errors as Python exceptions: one base class, `fieldcrypt.Error`, and one subclass
//! per [`ErrorKind`]. [`exception_type`] is the only place a kind is mapped to a class.

use fieldcrypt::ErrorKind;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyType;

create_exception!(
    fieldcrypt,
    Error,
    PyException,
    "Base class of every fieldcrypt error. `kind` is the error kind's stable name (`\"policy\"`, \
     `\"crypto\"`, ...), `retryable` whether the same call may succeed later, `index` the position \
     of the failing record in a batch call (else None). The message never holds plaintext or key \
     material."
);
create_exception!(fieldcrypt, PolicyError, Error, "The policy document is invalid.");
create_exception!(
    fieldcrypt,
    ConfigError,
    Error,
    "The runtime configuration is invalid (KMS clients, profile, limits, schemas)."
);
create_exception!(fieldcrypt, RecordError, Error, "The record is not what the policy expects; nothing was encrypted.");
create_exception!(fieldcrypt, FormatError, Error, "The fieldcrypt header is malformed.");
create_exception!(
    fieldcrypt,
    UnsupportedVersionError,
    Error,
    "The fieldcrypt header has a format version this build does not know."
);
create_exception!(
    fieldcrypt,
    CryptoError,
    Error,
    "Authentication failed: tampered or truncated ciphertext or header, or a wrong key."
);
create_exception!(fieldcrypt, KeyNotFoundError, Error, "A key (KEK or DEK) is unknown to the KMS.");
create_exception!(fieldcrypt, AccessDeniedError, Error, "The KMS refused this client access to a key.");
create_exception!(fieldcrypt, KmsError, Error, "The KMS failed or could not be reached.");
create_exception!(
    fieldcrypt,
    RegistryError,
    Error,
    "The schema registry failed, could not be reached, or does not know a record's schema."
);
create_exception!(
    fieldcrypt,
    LimitExceededError,
    Error,
    "A data key reached its hard usage limit and no new one could be made."
);
create_exception!(
    fieldcrypt,
    ShreddedError,
    Error,
    "The record's data key was shredded (its data subject was erased): unreadable for good."
);

/// The exception class of an error kind: the one mapping from kinds to classes. A kind added to
/// the core later raises the base class (with its `kind` name) until it gets a class here.
fn exception_type(py: Python<'_>, kind: ErrorKind) -> Bound<'_, PyType> {
    match kind {
        ErrorKind::Policy => py.get_type::<PolicyError>(),
        ErrorKind::Config => py.get_type::<ConfigError>(),
        ErrorKind::Record => py.get_type::<RecordError>(),
        ErrorKind::Format => py.get_type::<FormatError>(),
        ErrorKind::UnsupportedVersion => py.get_type::<UnsupportedVersionError>(),
        ErrorKind::Crypto => py.get_type::<CryptoError>(),
        ErrorKind::KeyNotFound => py.get_type::<KeyNotFoundError>(),
        ErrorKind::AccessDenied => py.get_type::<AccessDeniedError>(),
        ErrorKind::Kms => py.get_type::<KmsError>(),
        ErrorKind::Registry => py.get_type::<RegistryError>(),
        ErrorKind::LimitExceeded => py.get_type::<LimitExceededError>(),
        ErrorKind::Shredded => py.get_type::<ShreddedError>(),
        _ => py.get_type::<Error>(),
    }
}

/// A core error as the Python exception of its kind, with `kind`, `retryable` and, for a batch
/// call, the `index` of the record that failed. The message is the core's.
pub(crate) fn to_py(py: Python<'_>, e: &fieldcrypt::Error, index: Option<usize>) -> PyErr {
    let err = PyErr::from_type(exception_type(py, e.kind()), e.message().to_owned());
    let value = err.value(py);
    let set = || -> PyResult<()> {
        value.setattr("kind", e.kind().as_str())?;
        value.setattr("retryable", e.is_retryable())?;
        value.setattr("index", index)?;
        Ok(())
    };
    match set() {
        Ok(()) => err,
        // Only a MemoryError can get here; raise that rather than a half-made error.
        Err(other) => other,
    }
}

/// A configuration error found by the binding itself (a bad option in `kms=`, `limits=`...).
pub(crate) fn config(py: Python<'_>, message: impl Into<String>) -> PyErr {
    to_py(py, &fieldcrypt::Error::new(ErrorKind::Config, message), None)
}

/// Adds the exception classes to the module, each subclass with its `kind` as a class attribute
/// (and the base class with the defaults of `retryable` and `index`).
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let base = py.get_type::<Error>();
    base.setattr("kind", "error")?;
    base.setattr("retryable", false)?;
    base.setattr("index", py.None())?;
    m.add("Error", base)?;
    for kind in ErrorKind::ALL {
        let class = exception_type(py, kind);
        class.setattr("kind", kind.as_str())?;
        m.add(class.name()?, class)?;
    }
    Ok(())
}
