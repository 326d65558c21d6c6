//! `fieldcrypt._fieldcrypt`: the Python binding of the fieldcrypt core (pyo3, abi3). A thin
//! layer: Python values in, the core's `Codec` does the work, Python values out. Encryption,
//! formats and policy live in the core only.
//!
//! Calls release the GIL while the core works: `encrypt`/`decrypt` borrow the (immutable)
//! `bytes` they are given, the batch forms copy every record into Rust-owned buffers first and
//! then run the whole batch detached. A `Codec` is `Send + Sync`; share one across threads.
//!
//! A `Codec` is the core's `fieldcrypt::config::ConfiguredCodec`: a fixed policy, or one that
//! follows a policy source (`policy_source=`, hot reload). Each call (each batch) takes the
//! policy in force once.

mod config;
mod errors;
mod serde;

use std::borrow::Cow;

use fieldcrypt::config::ConfiguredCodec;
use fieldcrypt::{OwnedHeader, Reload, HEADER_NAME};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::config::bytes_like;

/// A record after `encrypt` or `decrypt`: `key` and `value` (bytes or None) and `headers`, a
/// new list of `(name, value)` tuples in confluent-kafka's form.
#[pyclass(module = "fieldcrypt", name = "Record", frozen)]
struct Record {
    #[pyo3(get)]
    key: Option<Py<PyBytes>>,
    #[pyo3(get)]
    value: Option<Py<PyBytes>>,
    #[pyo3(get)]
    headers: Py<PyList>,
}

#[pymethods]
impl Record {
    /// Sizes and header names only: a decrypted record's bytes do not belong in logs.
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let size = |b: &Option<Py<PyBytes>>| match b {
            Some(b) => format!("<{} bytes>", b.bind(py).as_bytes().len()),
            None => "None".to_string(),
        };
        let mut names = Vec::new();
        for h in self.headers.bind(py).iter() {
            names.push(h.get_item(0)?.repr()?.to_string());
        }
        Ok(format!("Record(key={}, value={}, headers=[{}])", size(&self.key), size(&self.value), names.join(", ")))
    }
}

/// A core record as a Python one.
fn record(py: Python<'_>, r: fieldcrypt::Record) -> PyResult<Record> {
    let bytes = |b: Option<Vec<u8>>| b.map(|b| PyBytes::new(py, &b).unbind());
    let headers = PyList::empty(py);
    for h in r.headers {
        headers.append((h.name, bytes(h.value)))?;
    }
    Ok(Record { key: bytes(r.key), value: bytes(r.value), headers: headers.unbind() })
}

/// Headers in confluent-kafka's forms: None, a list (any iterable) of `(name, value)` tuples,
/// or a dict; names are str, values bytes, bytearray, str (UTF-8) or None. Copied; the input
/// is never changed.
pub(crate) fn headers_from(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<OwnedHeader>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else { return Ok(Vec::new()) };
    let one = |name: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>| -> PyResult<OwnedHeader> {
        let name: String = name.extract().map_err(|_| PyTypeError::new_err("header names must be str"))?;
        let value = if value.is_none() {
            None
        } else {
            Some(bytes_like(value).ok_or_else(|| {
                PyTypeError::new_err(format!("header {name:?}: the value must be bytes, str or None"))
            })?)
        };
        Ok(OwnedHeader { name, value })
    };
    if let Ok(dict) = obj.cast::<PyDict>() {
        return dict.iter().map(|(k, v)| one(&k, &v)).collect();
    }
    let not_headers = || PyTypeError::new_err("headers must be a list of (name, value) tuples, a dict, or None");
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(not_headers());
    }
    let mut out = Vec::new();
    for item in obj.try_iter().map_err(|_| not_headers())? {
        let item = item?;
        let (name, value) = item.extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>)>().map_err(|_| not_headers())?;
        out.push(one(&name, &value)?);
    }
    Ok(out)
}

/// One record of a batch, copied into Rust-owned buffers.
struct OwnedRecord {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<OwnedHeader>,
}

/// A batch item: a `Record`, or a `(value, headers)` or `(value, headers, key)` tuple.
fn owned_record(item: &Bound<'_, PyAny>) -> PyResult<OwnedRecord> {
    let py = item.py();
    let bytes = |b: Option<Bound<'_, PyAny>>, what: &str| -> PyResult<Option<Vec<u8>>> {
        match b.filter(|b| !b.is_none()) {
            None => Ok(None),
            Some(b) => match b.cast::<PyBytes>() {
                Ok(b) => Ok(Some(b.as_bytes().to_vec())),
                Err(_) => Err(PyTypeError::new_err(format!("batch record {what} must be bytes or None"))),
            },
        }
    };
    if let Ok(r) = item.cast::<Record>() {
        let r = r.get();
        return Ok(OwnedRecord {
            key: r.key.as_ref().map(|b| b.bind(py).as_bytes().to_vec()),
            value: r.value.as_ref().map(|b| b.bind(py).as_bytes().to_vec()),
            headers: headers_from(Some(r.headers.bind(py).as_any()))?,
        });
    }
    let tuple = item.cast::<PyTuple>().ok().filter(|t| matches!(t.len(), 2 | 3)).ok_or_else(|| {
        PyTypeError::new_err("batch records must be (value, headers) or (value, headers, key) tuples, or Records")
    })?;
    Ok(OwnedRecord {
        value: bytes(Some(tuple.get_item(0)?), "value")?,
        headers: headers_from(Some(&tuple.get_item(1)?))?,
        key: bytes(tuple.get_item(2).ok(), "key")?,
    })
}

/// Encrypts and decrypts the fields of Kafka records as a policy says. Thread-safe: share one
/// per process.
#[pyclass(module = "fieldcrypt", name = "Codec", frozen)]
pub(crate) struct Codec {
    inner: ConfiguredCodec,
}

/// The policy in force and the reload counters (`Codec.policy_status()`).
#[pyclass(module = "fieldcrypt", name = "PolicyStatus", frozen)]
struct PolicyStatus {
    #[pyo3(get)]
    policy_id: String,
    #[pyo3(get)]
    revision: u64,
    #[pyo3(get)]
    signed_by: Option<String>,
    #[pyo3(get)]
    source: Option<String>,
    #[pyo3(get)]
    loads: u64,
    #[pyo3(get)]
    rejections: u64,
    #[pyo3(get)]
    fetch_errors: u64,
    /// The error of the last rejection or failed fetch, as the exception of its kind (not
    /// raised), or None.
    #[pyo3(get)]
    last_error: Option<Py<PyAny>>,
}

#[pymethods]
impl PolicyStatus {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let opt = |s: &Option<String>| s.as_ref().map_or("None".to_string(), |s| format!("{s:?}"));
        let last_error = match &self.last_error {
            Some(e) => e.bind(py).repr()?.to_string(),
            None => "None".to_string(),
        };
        Ok(format!(
            "PolicyStatus(policy_id={:?}, revision={}, signed_by={}, source={}, loads={}, rejections={}, \
             fetch_errors={}, last_error={last_error})",
            self.policy_id,
            self.revision,
            opt(&self.signed_by),
            opt(&self.source),
            self.loads,
            self.rejections,
            self.fetch_errors,
        ))
    }
}

pub(crate) type CodecCall = fn(
    &fieldcrypt::Codec,
    &str,
    Option<&[u8]>,
    Option<&[u8]>,
    &[OwnedHeader],
) -> fieldcrypt::Result<fieldcrypt::Record>;

pub(crate) const ENCRYPT: CodecCall = |c, topic, key, value, headers| c.encrypt(topic, key, value, headers);
pub(crate) const DECRYPT: CodecCall = |c, topic, key, value, headers| c.decrypt(topic, key, value, headers);

impl Codec {
    /// The core codec of the policy in force: take it once per call or batch.
    pub(crate) fn current(&self) -> Cow<'_, fieldcrypt::Codec> {
        self.inner.codec()
    }

    fn one(
        &self,
        py: Python<'_>,
        call: CodecCall,
        topic: &str,
        value: Option<&[u8]>,
        headers: Option<&Bound<'_, PyAny>>,
        key: Option<&[u8]>,
    ) -> PyResult<Record> {
        let headers = headers_from(headers)?;
        let codec = self.current();
        // `key` and `value` borrow immutable `bytes` that the caller's frame keeps alive.
        let out = py.detach(|| call(&codec, topic, key, value, &headers));
        record(py, out.map_err(|e| errors::to_py(py, &e, None))?)
    }

    fn batch(&self, py: Python<'_>, call: CodecCall, topic: &str, records: &Bound<'_, PyAny>) -> PyResult<Vec<Record>> {
        let items: Vec<OwnedRecord> = records.try_iter()?.map(|item| owned_record(&item?)).collect::<PyResult<_>>()?;
        let codec = self.current();
        let out = py.detach(|| {
            items
                .iter()
                .enumerate()
                .map(|(i, r)| call(&codec, topic, r.key.as_deref(), r.value.as_deref(), &r.headers).map_err(|e| (i, e)))
                .collect::<Result<Vec<_>, _>>()
        });
        let out = out.map_err(|(i, e)| errors::to_py(py, &e, Some(i)))?;
        out.into_iter().map(|r| record(py, r)).collect()
    }
}

#[pymethods]
impl Codec {
    #[new]
    #[pyo3(signature = (policy = None, *, kms, profile = None, registry = None, schemas = None, limits = None, validate_json_schema = false, key_store = None, trusted_keys = None, policy_source = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        policy: Option<&Bound<'_, PyAny>>,
        kms: &Bound<'_, PyAny>,
        profile: Option<String>,
        registry: Option<&Bound<'_, PyAny>>,
        schemas: Option<&Bound<'_, PyAny>>,
        limits: Option<&Bound<'_, PyAny>>,
        validate_json_schema: bool,
        key_store: Option<&Bound<'_, PyAny>>,
        trusted_keys: Option<&Bound<'_, PyAny>>,
        policy_source: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Codec> {
        let policy = policy.filter(|p| !p.is_none()).map(config::policy_text).transpose()?;
        let mut document = config::document(&[
            ("kms", Some(kms)),
            ("registry", registry),
            ("schemas", schemas),
            ("limits", limits),
            ("key_store", key_store),
            ("trusted_keys", trusted_keys),
            ("policy_source", policy_source),
        ])?;
        if let Some(profile) = profile {
            document.insert("profile".into(), profile.into());
        }
        document.insert("validate_json_schema".into(), validate_json_schema.into());
        let document = serde_json::Value::Object(document).to_string();
        // Opening may fetch the policy and read a Kafka key store: I/O, without the GIL.
        let inner = config::core(py, py.detach(|| fieldcrypt::config::open(policy.as_deref(), &document)))?;
        Ok(Codec { inner })
    }

    /// Fetches the policy source now: True when a new revision is in force, False when the
    /// source had nothing new. A rejected document raises (`PolicyError`) and the policy in
    /// force stays; a codec with a fixed policy raises `ConfigError`.
    fn reload(&self, py: Python<'_>) -> PyResult<bool> {
        let out = config::core(py, py.detach(|| self.inner.reload_now()))?;
        Ok(matches!(out, Reload::Loaded { .. }))
    }

    /// The policy in force (id, revision, signing key, source) and the reload counters.
    fn policy_status(&self, py: Python<'_>) -> PolicyStatus {
        let s = self.inner.status();
        PolicyStatus {
            policy_id: s.policy_id,
            revision: s.revision,
            signed_by: s.signed_by,
            source: s.source,
            loads: s.loads,
            rejections: s.rejections,
            fetch_errors: s.fetch_errors,
            last_error: s.last_error.map(|e| errors::to_py(py, &e, None).into_value(py).into_any()),
        }
    }

    /// Encrypts the fields the policy selects for `topic`; the result's headers are the input
    /// headers plus the `fieldcrypt` header.
    #[pyo3(signature = (topic, value, headers = None, *, key = None))]
    fn encrypt(
        &self,
        py: Python<'_>,
        topic: String,
        value: Option<&[u8]>,
        headers: Option<&Bound<'_, PyAny>>,
        key: Option<&[u8]>,
    ) -> PyResult<Record> {
        self.one(py, ENCRYPT, &topic, value, headers, key)
    }

    /// Decrypts what this codec's profile and KMS access allow; a record without the
    /// `fieldcrypt` header comes back unchanged.
    #[pyo3(signature = (topic, value, headers = None, *, key = None))]
    fn decrypt(
        &self,
        py: Python<'_>,
        topic: String,
        value: Option<&[u8]>,
        headers: Option<&Bound<'_, PyAny>>,
        key: Option<&[u8]>,
    ) -> PyResult<Record> {
        self.one(py, DECRYPT, &topic, value, headers, key)
    }

    /// `encrypt` over `(value, headers[, key])` tuples (or Records), the whole batch without the
    /// GIL. The first failure raises, with `index` set to that record's position.
    fn encrypt_batch(&self, py: Python<'_>, topic: String, records: &Bound<'_, PyAny>) -> PyResult<Vec<Record>> {
        self.batch(py, ENCRYPT, &topic, records)
    }

    /// `decrypt` over `(value, headers[, key])` tuples (or Records), like `encrypt_batch`.
    fn decrypt_batch(&self, py: Python<'_>, topic: String, records: &Bound<'_, PyAny>) -> PyResult<Vec<Record>> {
        self.batch(py, DECRYPT, &topic, records)
    }

    /// The codec's counters since it was built: records, fields, DEKs, KMS calls.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.current().stats();
        let d = PyDict::new(py);
        for (name, n) in [
            ("records_encrypted", s.records_encrypted),
            ("records_decrypted", s.records_decrypted),
            ("fields_encrypted", s.fields_encrypted),
            ("fields_decrypted", s.fields_decrypted),
            ("fields_withheld", s.fields_withheld),
            ("deks_created", s.deks_created),
            ("kms_wrap_calls", s.kms_wrap_calls),
            ("kms_unwrap_calls", s.kms_unwrap_calls),
            ("kms_derive_calls", s.kms_derive_calls),
            ("kms_errors", s.kms_errors),
            ("kms_denials_cached", s.kms_denials_cached),
            ("dek_cache_hits", s.dek_cache_hits),
            ("dek_cache_misses", s.dek_cache_misses),
        ] {
            d.set_item(name, n)?;
        }
        Ok(d)
    }

    /// Drops every cached unwrapped data key; the next records ask the KMS again.
    fn clear_key_cache(&self) {
        self.current().clear_key_cache();
    }

    /// Crypto-shreds a data subject: deletes its data keys from the key store; returns how many.
    fn shred(&self, py: Python<'_>, subject: &str) -> PyResult<usize> {
        let codec = self.current();
        config::core(py, py.detach(|| codec.shred(subject)))
    }

    /// Stores a new data key for a data subject; older records still decrypt.
    fn rotate_subject(&self, py: Python<'_>, subject: &str) -> PyResult<()> {
        let codec = self.current();
        config::core(py, py.detach(|| codec.rotate_subject(subject)).map(|_| ()))
    }

    fn __repr__(&self) -> String {
        let codec = self.current();
        let policy = codec.policy();
        format!("<fieldcrypt.Codec policy={:?} revision={}>", policy.id(), policy.revision())
    }
}

#[pymodule]
#[pyo3(name = "_fieldcrypt")]
fn fieldcrypt_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Codec>()?;
    m.add_class::<Record>()?;
    m.add_class::<PolicyStatus>()?;
    m.add_class::<serde::AvroSerializer>()?;
    m.add_class::<serde::AvroDeserializer>()?;
    m.add_class::<serde::JsonSerializer>()?;
    m.add_class::<serde::JsonDeserializer>()?;
    errors::register(m)?;
    m.add("HEADER_NAME", HEADER_NAME)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
