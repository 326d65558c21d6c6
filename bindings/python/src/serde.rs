//! Drop-in replacements for confluent-kafka's `AvroSerializer` / `AvroDeserializer` that turn
//! the Python object into Avro and encrypt it in one call (and back). The Avro encoding is the
//! core's ([`fieldcrypt::avro_values`]): this module only converts Python objects to and from
//! its value tree, finds the schema id, frames the datum and moves headers.
//!
//! Schema ids: `conf={"schema_id": N}`, or the subject `<topic>-value` (`-key`) registered once
//! per subject through a confluent-kafka `SchemaRegistryClient` (or any object with its
//! `register_schema(subject, Schema)` / `get_latest_version(subject)` / `get_schema(id)`), or one
//! built from a URL string. The codec looks the writer schema up by id in its own schema source
//! (its `registry=` or `schemas=`), as it does for any Confluent-framed record.
//!
//! `JSONSerializer` / `JSONDeserializer` do the same for JSON: the dict is written as compact
//! JSON here (key order kept; strings and numbers by serde_json), framed when a schema is given.

use std::borrow::Cow;
use std::collections::HashMap;
use std::os::raw::c_char;
use std::sync::{Arc, Mutex, OnceLock};

use fieldcrypt::avro_values::{AvroBuilder, AvroDatumSchema, AvroValue};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::{errors, headers_from, Codec, CodecCall, DECRYPT, ENCRYPT};

// `PyUnicode_AsUTF8AndSize` is in the limited API from Python 3.10 (pyo3 hides it from an
// abi3-py39 build): borrowed UTF-8 without the intermediate `bytes` object `to_cow` makes on
// abi3 < 3.10. Declared here, and called only when the running interpreter is 3.10 or newer.
extern "C" {
    fn PyUnicode_AsUTF8AndSize(unicode: *mut pyo3::ffi::PyObject, size: *mut pyo3::ffi::Py_ssize_t) -> *const c_char;
}

fn utf8_and_size_available(py: Python<'_>) -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| py.version_info() >= (3, 10))
}

/// A Python str's UTF-8, borrowed from it (copied on Python < 3.10, where the limited API has
/// no borrowed UTF-8).
///
/// # Safety
///
/// The text is `s`'s own buffer: the caller must keep the str alive (a reference to it held)
/// for `'a`.
unsafe fn str_of<'a>(s: &Bound<'_, PyString>) -> PyResult<Cow<'a, str>> {
    let py = s.py();
    if !utf8_and_size_available(py) {
        return Ok(Cow::Owned(s.to_cow()?.into_owned()));
    }
    let mut size: pyo3::ffi::Py_ssize_t = 0;
    // SAFETY: `s` is a live str (the GIL is held); the function returns a pointer to `size`
    // bytes of UTF-8 owned by `s` (or NULL with an exception set), cached in the immutable str
    // and valid while it lives, which the caller guarantees for 'a.
    unsafe {
        let p = PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut size);
        if p.is_null() {
            return Err(PyErr::fetch(py));
        }
        let bytes = std::slice::from_raw_parts(p.cast::<u8>(), usize::try_from(size).unwrap_or(0));
        Ok(Cow::Borrowed(std::str::from_utf8_unchecked(bytes)))
    }
}

/// Python object → the core's value tree, borrowing the text of str and the bytes of `bytes`
/// objects (immutable): dict → record or map, list/tuple → array, str, bytes/bytearray, bool,
/// int, float, None. `keep` holds a reference to every object borrowed from, so the tree's
/// borrows stay valid while `keep` lives even if Python code (run by nothing here, but a str
/// subclass's methods could be) mutated the containers.
///
/// # Safety
///
/// The caller must not drop `keep` (or remove from it) while the returned tree lives: 'a must
/// not outlive `keep`.
unsafe fn to_value<'a, 'py>(
    obj: &Bound<'py, PyAny>,
    depth: u32,
    keep: &mut Vec<Bound<'py, PyAny>>,
) -> PyResult<AvroValue<'a>> {
    if depth > 128 {
        return Err(PyValueError::new_err("the object is nested too deeply"));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        // SAFETY: `s` is kept alive in `keep` for 'a.
        let text = unsafe { str_of(s) }?;
        if matches!(text, Cow::Borrowed(_)) {
            keep.push(obj.clone());
        }
        return Ok(AvroValue::String(text));
    }
    if obj.is_instance_of::<PyBool>() {
        return Ok(AvroValue::Boolean(obj.is_truthy()?));
    }
    if obj.is_instance_of::<PyInt>() {
        return Ok(AvroValue::Long(obj.extract()?));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut out = Vec::with_capacity(d.len());
        for (k, v) in d.iter() {
            let k = k.cast_into::<PyString>().map_err(|_| PyTypeError::new_err("record and map keys must be str"))?;
            // SAFETY: `k` is kept alive in `keep` for 'a.
            let key = unsafe { str_of(&k) }?;
            if matches!(key, Cow::Borrowed(_)) {
                keep.push(k.into_any());
            }
            // SAFETY: the caller's guarantee.
            out.push((key, unsafe { to_value(&v, depth + 1, keep) }?));
        }
        return Ok(AvroValue::Map(out));
    }
    if obj.is_none() {
        return Ok(AvroValue::Null);
    }
    if obj.is_instance_of::<PyFloat>() {
        return Ok(AvroValue::Double(obj.extract()?));
    }
    // SAFETY (the recursive calls): the caller's guarantee.
    if let Ok(l) = obj.cast::<PyList>() {
        return l
            .iter()
            .map(|x| unsafe { to_value(&x, depth + 1, keep) })
            .collect::<PyResult<_>>()
            .map(AvroValue::Array);
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        return t
            .iter()
            .map(|x| unsafe { to_value(&x, depth + 1, keep) })
            .collect::<PyResult<_>>()
            .map(AvroValue::Array);
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        let bytes = b.as_bytes();
        // SAFETY: a bytes object is immutable and kept alive in `keep` for 'a.
        let bytes: &'a [u8] = unsafe { std::slice::from_raw_parts(bytes.as_ptr(), bytes.len()) };
        keep.push(obj.clone());
        return Ok(AvroValue::Bytes(Cow::Borrowed(bytes)));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(AvroValue::Bytes(Cow::Owned(b.to_vec())));
    }
    Err(PyTypeError::new_err(format!(
        "cannot encode a {} as Avro (dict, list, tuple, str, bytes, int, float, bool or None)",
        obj.get_type().name()?
    )))
}

/// A decoder's error: the core's (a format error) or Python's (building an object).
enum DecodeError {
    Format(fieldcrypt::Error),
    Py(PyErr),
}

impl From<fieldcrypt::Error> for DecodeError {
    fn from(e: fieldcrypt::Error) -> Self {
        DecodeError::Format(e)
    }
}

impl From<PyErr> for DecodeError {
    fn from(e: PyErr) -> Self {
        DecodeError::Py(e)
    }
}

/// Builds the Python objects straight from the core's decoder: dicts keyed by the schema's
/// field-name strings (created once per schema), lists, str, bytes, int, float, bool, None.
struct PyBuilder<'s, 'py> {
    py: Python<'py>,
    keys: &'s [Py<PyString>],
}

impl<'a, 'py> AvroBuilder<'a> for PyBuilder<'_, 'py> {
    type Value = Bound<'py, PyAny>;
    type Seq = Bound<'py, PyAny>;
    type Error = DecodeError;

    fn null(&mut self) -> Result<Self::Value, DecodeError> {
        Ok(self.py.None().into_bound(self.py))
    }
    fn boolean(&mut self, b: bool) -> Result<Self::Value, DecodeError> {
        Ok(PyBool::new(self.py, b).to_owned().into_any())
    }
    fn long(&mut self, n: i64) -> Result<Self::Value, DecodeError> {
        let Ok(n) = n.into_pyobject(self.py);
        Ok(n.into_any())
    }
    fn double(&mut self, d: f64) -> Result<Self::Value, DecodeError> {
        Ok(PyFloat::new(self.py, d).into_any())
    }
    fn string(&mut self, s: &'a str) -> Result<Self::Value, DecodeError> {
        Ok(PyString::new(self.py, s).into_any())
    }
    fn bytes(&mut self, b: &'a [u8]) -> Result<Self::Value, DecodeError> {
        Ok(PyBytes::new(self.py, b).into_any())
    }
    fn symbol(&mut self, s: &str) -> Result<Self::Value, DecodeError> {
        Ok(PyString::new(self.py, s).into_any())
    }
    fn array(&mut self) -> Result<Self::Seq, DecodeError> {
        Ok(PyList::empty(self.py).into_any())
    }
    fn push(&mut self, array: &mut Self::Seq, v: Self::Value) -> Result<(), DecodeError> {
        // SAFETY: `array()` made it a list.
        Ok(unsafe { array.cast_unchecked::<PyList>() }.append(v)?)
    }
    fn map(&mut self, _record: bool, _fields: usize) -> Result<Self::Seq, DecodeError> {
        Ok(PyDict::new(self.py).into_any())
    }
    fn entry(&mut self, map: &mut Self::Seq, key: &'a str, v: Self::Value) -> Result<(), DecodeError> {
        // SAFETY: `map()` made it a dict.
        Ok(unsafe { map.cast_unchecked::<PyDict>() }.set_item(PyString::new(self.py, key), v)?)
    }
    fn field(&mut self, record: &mut Self::Seq, slot: usize, name: &str, v: Self::Value) -> Result<(), DecodeError> {
        // SAFETY: `map()` made it a dict.
        let d = unsafe { record.cast_unchecked::<PyDict>() };
        match self.keys.get(slot) {
            Some(k) => d.set_item(k.bind(self.py), v)?,
            None => d.set_item(PyString::new(self.py, name), v)?,
        }
        Ok(())
    }
    fn end(&mut self, seq: Self::Seq) -> Result<Self::Value, DecodeError> {
        Ok(seq)
    }
}

/// A schema to decode with and its field names as Python strs, by slot.
struct DecodeSchema {
    schema: AvroDatumSchema,
    keys: Vec<Py<PyString>>,
}

impl DecodeSchema {
    fn parse(py: Python<'_>, text: &str) -> PyResult<DecodeSchema> {
        let schema = AvroDatumSchema::parse(text, &[]).map_err(|e| errors::to_py(py, &e, None))?;
        let keys = schema.field_names().into_iter().map(|n| PyString::intern(py, n).unbind()).collect();
        Ok(DecodeSchema { schema, keys })
    }

    fn decode<'py>(&self, py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        self.schema.decode_with(bytes, &mut PyBuilder { py, keys: &self.keys }).map_err(|e| match e {
            DecodeError::Format(e) => errors::to_py(py, &e, None),
            DecodeError::Py(e) => e,
        })
    }
}

fn serialization_error(py: Python<'_>, message: String) -> PyErr {
    match py.import("confluent_kafka.serialization").and_then(|m| m.getattr("SerializationError")) {
        Ok(class) => match class.call1((message.clone(),)) {
            Ok(e) => PyErr::from_value(e),
            Err(e) => e,
        },
        Err(_) => PyValueError::new_err(message),
    }
}

/// `ctx.topic`, whether `ctx.field` is the key, `ctx.headers`.
struct Ctx<'py> {
    topic: String,
    is_key: bool,
    headers: Bound<'py, PyAny>,
}

fn context<'py>(py: Python<'py>, ctx: Option<&Bound<'py, PyAny>>, what: &str) -> PyResult<Ctx<'py>> {
    let Some(ctx) = ctx.filter(|c| !c.is_none()) else {
        return Err(serialization_error(py, format!("{what} needs a SerializationContext (topic and headers)")));
    };
    let field = ctx.getattr("field")?;
    // MessageField is a str enum: MessageField.KEY == "key".
    let is_key = field.eq("key")?;
    Ok(Ctx { topic: ctx.getattr("topic")?.extract()?, is_key, headers: ctx.getattr("headers")? })
}

/// A registry client: the object given, or confluent-kafka's `SchemaRegistryClient` for a URL.
fn registry_client<'py>(client: Option<&Bound<'py, PyAny>>) -> PyResult<Option<Py<PyAny>>> {
    let Some(client) = client.filter(|c| !c.is_none()) else { return Ok(None) };
    if let Ok(url) = client.cast::<PyString>() {
        let py = client.py();
        let conf = PyDict::new(py);
        conf.set_item("url", url)?;
        let class = py.import("confluent_kafka.schema_registry")?.getattr("SchemaRegistryClient")?;
        return Ok(Some(class.call1((conf,))?.unbind()));
    }
    Ok(Some(client.clone().unbind()))
}

fn conf_dict<'py>(conf: Option<&Bound<'py, PyAny>>, known: &[&str]) -> PyResult<Option<Bound<'py, PyDict>>> {
    let Some(conf) = conf.filter(|c| !c.is_none()) else { return Ok(None) };
    let py = conf.py();
    let d = conf.cast::<PyDict>().map_err(|_| PyTypeError::new_err("conf must be a dict"))?.clone();
    for k in d.keys() {
        let name: String = k.extract()?;
        if !known.contains(&name.as_str()) {
            return Err(errors::config(
                py,
                format!("unknown serializer option {name:?} (known: {})", known.join(", ")),
            ));
        }
    }
    Ok(Some(d))
}

/// `<topic>-value` / `<topic>-key`: confluent-kafka's default `topic_subject_name_strategy`.
fn subject(ctx: &Ctx<'_>) -> String {
    format!("{}-{}", ctx.topic, if ctx.is_key { "key" } else { "value" })
}

/// Puts the codec's output headers into `ctx.headers` in place, as fieldcrypt.kafka does.
fn write_headers(py: Python<'_>, ctx: &Ctx<'_>, out: &[fieldcrypt::OwnedHeader]) -> PyResult<()> {
    if !out.iter().any(|h| h.name == fieldcrypt::HEADER_NAME) {
        return Ok(());
    }
    fn item<'a, 'py>(py: Python<'py>, h: &'a fieldcrypt::OwnedHeader) -> (&'a str, Option<Bound<'py, PyBytes>>) {
        (h.name.as_str(), h.value.as_deref().map(|v| PyBytes::new(py, v)))
    }
    if let Ok(list) = ctx.headers.cast::<PyList>() {
        list.call_method0("clear")?;
        for h in out {
            list.append(item(py, h))?;
        }
        return Ok(());
    }
    if let Ok(dict) = ctx.headers.cast::<PyDict>() {
        dict.clear();
        for h in out {
            let (k, v) = item(py, h);
            dict.set_item(k, v)?;
        }
        return Ok(());
    }
    Err(serialization_error(
        py,
        format!(
            "the record for topic {:?} was encrypted, but produce() was called without a headers list to add \
             the fieldcrypt header to: pass headers=[] (SerializingProducer sends only the headers object it \
             was given)",
            ctx.topic
        ),
    ))
}

/// Where a serializer's schema id comes from: `conf["schema_id"]`, or the subject registered
/// (or, without auto-registration, its latest version) through the registry client, once per
/// subject.
struct SchemaIds {
    client: Option<Py<PyAny>>,
    schema_str: String,
    schema_type: &'static str,
    schema_id: Option<u32>,
    auto_register: bool,
    ids: Mutex<HashMap<String, u32>>,
}

impl SchemaIds {
    fn new(
        client: Option<&Bound<'_, PyAny>>,
        schema_str: String,
        schema_type: &'static str,
        conf: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<SchemaIds> {
        let conf = conf_dict(conf, &["schema_id", "auto.register.schemas"])?;
        let get = |k: &str| conf.as_ref().map(|c| c.get_item(k)).transpose().map(Option::flatten);
        let schema_id = get("schema_id")?.map(|v| v.extract::<u32>()).transpose()?;
        let auto_register = get("auto.register.schemas")?.map(|v| v.extract::<bool>()).transpose()?.unwrap_or(true);
        Ok(SchemaIds {
            client: registry_client(client)?,
            schema_str,
            schema_type,
            schema_id,
            auto_register,
            ids: Mutex::new(HashMap::new()),
        })
    }

    fn id_for(&self, py: Python<'_>, ctx: &Ctx<'_>) -> PyResult<u32> {
        if let Some(id) = self.schema_id {
            return Ok(id);
        }
        let subject = subject(ctx);
        if let Some(id) = self.ids.lock().unwrap_or_else(|e| e.into_inner()).get(&subject) {
            return Ok(*id);
        }
        let Some(client) = &self.client else {
            return Err(errors::config(py, "no schema registry client and no conf schema_id: cannot name the schema"));
        };
        let client = client.bind(py);
        let id: u32 = if self.auto_register {
            let schema = py
                .import("confluent_kafka.schema_registry")?
                .getattr("Schema")?
                .call1((&self.schema_str, self.schema_type))?;
            client.call_method1("register_schema", (&subject, schema))?.extract()?
        } else {
            client.call_method1("get_latest_version", (&subject,))?.getattr("schema_id")?.extract()?
        };
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).insert(subject, id);
        Ok(id)
    }
}

/// A schema text given as a str or as confluent-kafka's `Schema` (its `schema_str`).
fn schema_text(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    match obj.extract() {
        Ok(s) => Ok(s),
        Err(_) => obj.getattr("schema_str")?.extract(),
    }
}

/// Runs the codec (`ENCRYPT` or `DECRYPT`) on `data`, the serialized key or value of `ctx`,
/// without the GIL: the resulting record.
fn codec_part(
    py: Python<'_>,
    call: CodecCall,
    codec: &Py<Codec>,
    ctx: &Ctx<'_>,
    data: &[u8],
) -> PyResult<fieldcrypt::Record> {
    let headers = headers_from(Some(&ctx.headers))?;
    let codec = codec.get().current();
    let (topic, is_key) = (&ctx.topic, ctx.is_key);
    let (key, value) = if is_key { (Some(data), None) } else { (None, Some(data)) };
    py.detach(|| call(&codec, topic, key, value, &headers)).map_err(|e| errors::to_py(py, &e, None))
}

/// Encrypts `data` (a serialized key or value) for `ctx` and puts the headers back in place.
fn encrypt_part(py: Python<'_>, codec: &Py<Codec>, ctx: &Ctx<'_>, data: &[u8]) -> PyResult<Option<Py<PyBytes>>> {
    let out = codec_part(py, ENCRYPT, codec, ctx, data)?;
    write_headers(py, ctx, &out.headers)?;
    let bytes = if ctx.is_key { out.key } else { out.value };
    Ok(bytes.map(|b| PyBytes::new(py, &b).unbind()))
}

/// Decrypts `data` for `ctx` (its headers unchanged): the plaintext part.
fn decrypt_part(py: Python<'_>, codec: &Py<Codec>, ctx: &Ctx<'_>, data: &[u8]) -> PyResult<Vec<u8>> {
    let out = codec_part(py, DECRYPT, codec, ctx, data)?;
    Ok(if ctx.is_key { out.key } else { out.value }.unwrap_or_default())
}

/// Serializes a dict to Confluent-framed Avro (`0x00`, the 4-byte big-endian schema id, the
/// datum) and encrypts the fields the codec's policy selects, in one call; adds the
/// `fieldcrypt` header to `ctx.headers` in place.
#[pyclass(module = "fieldcrypt", name = "AvroSerializer", frozen)]
pub(crate) struct AvroSerializer {
    ids: SchemaIds,
    schema: AvroDatumSchema,
    codec: Py<Codec>,
}

#[pymethods]
impl AvroSerializer {
    #[new]
    #[pyo3(signature = (schema_registry_client, schema_str, codec, conf = None))]
    fn new(
        py: Python<'_>,
        schema_registry_client: Option<&Bound<'_, PyAny>>,
        schema_str: &Bound<'_, PyAny>,
        codec: Py<Codec>,
        conf: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<AvroSerializer> {
        let schema_str = schema_text(schema_str)?;
        let schema = AvroDatumSchema::parse(&schema_str, &[]).map_err(|e| errors::to_py(py, &e, None))?;
        let ids = SchemaIds::new(schema_registry_client, schema_str, "AVRO", conf)?;
        Ok(AvroSerializer { ids, schema, codec })
    }

    #[pyo3(signature = (obj, ctx = None))]
    fn __call__(
        &self,
        py: Python<'_>,
        obj: &Bound<'_, PyAny>,
        ctx: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<Py<PyBytes>>> {
        if obj.is_none() {
            return Ok(None);
        }
        let ctx = context(py, ctx, "AvroSerializer")?;
        let id = self.ids.id_for(py, &ctx)?;
        let mut keep = Vec::with_capacity(32);
        // SAFETY: `keep` outlives `value` (dropped at the end of this function, after it).
        let value = unsafe { to_value(obj, 0, &mut keep) }?;
        let mut datum = Vec::with_capacity(256);
        datum.push(0);
        datum.extend_from_slice(&id.to_be_bytes());
        self.schema.encode(&value, &mut datum).map_err(|e| errors::to_py(py, &e, None))?;
        drop(value);
        drop(keep);
        encrypt_part(py, &self.codec, &ctx, &datum)
    }

    fn __repr__(&self) -> String {
        format!("<fieldcrypt.AvroSerializer schema_id={:?}>", self.ids.schema_id)
    }
}

/// Decrypts a Confluent-framed Avro record with the codec (using `ctx.headers`, unchanged) and
/// decodes it to a dict, in one call.
#[pyclass(module = "fieldcrypt", name = "AvroDeserializer", frozen)]
pub(crate) struct AvroDeserializer {
    client: Option<Py<PyAny>>,
    /// Used for every schema id when given (the reader's schema must be the writer's).
    schema: Option<Arc<DecodeSchema>>,
    codec: Py<Codec>,
    by_id: Mutex<HashMap<u32, Arc<DecodeSchema>>>,
}

impl AvroDeserializer {
    fn schema_for(&self, py: Python<'_>, id: u32) -> PyResult<Arc<DecodeSchema>> {
        if let Some(s) = &self.schema {
            return Ok(s.clone());
        }
        if let Some(s) = self.by_id.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Ok(s.clone());
        }
        let Some(client) = &self.client else {
            return Err(errors::config(py, "AvroDeserializer: no schema registry client and no schema_str"));
        };
        let text: String = client.bind(py).call_method1("get_schema", (id,))?.getattr("schema_str")?.extract()?;
        let schema = Arc::new(DecodeSchema::parse(py, &text)?);
        self.by_id.lock().unwrap_or_else(|e| e.into_inner()).insert(id, schema.clone());
        Ok(schema)
    }
}

#[pymethods]
impl AvroDeserializer {
    #[new]
    #[pyo3(signature = (schema_registry_client, schema_str = None, codec = None, conf = None))]
    fn new(
        py: Python<'_>,
        schema_registry_client: Option<&Bound<'_, PyAny>>,
        schema_str: Option<&Bound<'_, PyAny>>,
        codec: Option<Py<Codec>>,
        conf: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<AvroDeserializer> {
        let codec = codec.ok_or_else(|| errors::config(py, "AvroDeserializer needs a codec"))?;
        conf_dict(conf, &[])?;
        let schema = match schema_str.filter(|s| !s.is_none()) {
            None => None,
            Some(s) => {
                let text = schema_text(s)?;
                Some(Arc::new(DecodeSchema::parse(py, &text)?))
            }
        };
        Ok(AvroDeserializer {
            client: registry_client(schema_registry_client)?,
            schema,
            codec,
            by_id: Mutex::new(HashMap::new()),
        })
    }

    #[pyo3(signature = (data, ctx = None))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        data: Option<&[u8]>,
        ctx: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let Some(data) = data else { return Ok(py.None().into_bound(py)) };
        let ctx = context(py, ctx, "AvroDeserializer")?;
        let plain = decrypt_part(py, &self.codec, &ctx, data)?;
        let topic = &ctx.topic;
        if plain.len() < 5 || plain[0] != 0 {
            return Err(serialization_error(
                py,
                format!("the record for topic {topic:?} is not Confluent-framed Avro (magic byte 0, schema id)"),
            ));
        }
        let id = u32::from_be_bytes(plain[1..5].try_into().expect("4 bytes"));
        let schema = self.schema_for(py, id)?;
        // Decoding takes about a microsecond: not worth releasing the GIL for.
        schema.decode(py, &plain[5..])
    }

    fn __repr__(&self) -> String {
        "<fieldcrypt.AvroDeserializer>".to_string()
    }
}

/// Writes a Python object as compact JSON, dict keys in their order: dict (str keys),
/// list/tuple, str, int, float (finite), bool, None. Strings and numbers are written by
/// serde_json.
fn write_json(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: u32) -> PyResult<()> {
    let put = |out: &mut Vec<u8>, v: &dyn erased::Json| v.write(out);
    if depth > 128 {
        return Err(PyValueError::new_err("the object is nested too deeply"));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        // SAFETY: the text is written while `s` is alive.
        return put(out, &unsafe { str_of(s) }?.as_ref());
    }
    if obj.is_instance_of::<PyBool>() {
        out.extend_from_slice(if obj.is_truthy()? { b"true" } else { b"false" });
        return Ok(());
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(n) = obj.extract::<i64>() {
            return put(out, &n);
        }
        return put(out, &obj.extract::<u64>()?);
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        out.push(b'{');
        for (i, (k, v)) in d.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let k = k.cast::<PyString>().map_err(|_| PyTypeError::new_err("JSON object keys must be str"))?;
            // SAFETY: the text is written while `k` is alive.
            put(out, &unsafe { str_of(k) }?.as_ref())?;
            out.push(b':');
            write_json(&v, out, depth + 1)?;
        }
        out.push(b'}');
        return Ok(());
    }
    if obj.is_none() {
        out.extend_from_slice(b"null");
        return Ok(());
    }
    if obj.is_instance_of::<PyFloat>() {
        let f: f64 = obj.extract()?;
        if !f.is_finite() {
            return Err(PyValueError::new_err("NaN and infinities are not JSON"));
        }
        return put(out, &f);
    }
    let items: Vec<Bound<'_, PyAny>> = if let Ok(l) = obj.cast::<PyList>() {
        l.iter().collect()
    } else if let Ok(t) = obj.cast::<PyTuple>() {
        t.iter().collect()
    } else {
        return Err(PyTypeError::new_err(format!(
            "cannot encode a {} as JSON (dict, list, tuple, str, int, float, bool or None)",
            obj.get_type().name()?
        )));
    };
    out.push(b'[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(x, out, depth + 1)?;
    }
    out.push(b']');
    Ok(())
}

mod erased {
    use pyo3::exceptions::PyValueError;
    use pyo3::PyResult;

    /// A scalar serde_json writes.
    pub(super) trait Json {
        fn write(&self, out: &mut Vec<u8>) -> PyResult<()>;
    }

    impl<T: serde::Serialize> Json for T {
        fn write(&self, out: &mut Vec<u8>) -> PyResult<()> {
            serde_json::to_writer(out, self).map_err(|e| PyValueError::new_err(e.to_string()))
        }
    }
}

fn json_to_py<'py>(py: Python<'py>, v: serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value;
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any()
            }
        }
        Value::String(s) => PyString::new(py, &s).into_any(),
        Value::Array(items) => {
            let l = PyList::empty(py);
            for x in items {
                l.append(json_to_py(py, x)?)?;
            }
            l.into_any()
        }
        Value::Object(kvs) => {
            let d = PyDict::new(py);
            for (k, x) in kvs {
                d.set_item(PyString::new(py, &k), json_to_py(py, x)?)?;
            }
            d.into_any()
        }
    })
}

/// Serializes a dict to JSON in Rust and encrypts the fields the codec's policy selects, in one
/// call; with a schema, the JSON is Confluent-framed (`0x00`, the 4-byte schema id) as
/// confluent-kafka's `JSONSerializer` frames it. Without `schema_str` the record is plain JSON.
#[pyclass(module = "fieldcrypt", name = "JSONSerializer", frozen)]
pub(crate) struct JsonSerializer {
    ids: Option<SchemaIds>,
    codec: Py<Codec>,
}

#[pymethods]
impl JsonSerializer {
    #[new]
    #[pyo3(signature = (schema_str, schema_registry_client, codec, conf = None))]
    fn new(
        schema_str: Option<&Bound<'_, PyAny>>,
        schema_registry_client: Option<&Bound<'_, PyAny>>,
        codec: Py<Codec>,
        conf: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<JsonSerializer> {
        let ids = match schema_str.filter(|s| !s.is_none()) {
            Some(s) => Some(SchemaIds::new(schema_registry_client, schema_text(s)?, "JSON", conf)?),
            None => {
                conf_dict(conf, &[])?;
                None
            }
        };
        Ok(JsonSerializer { ids, codec })
    }

    #[pyo3(signature = (obj, ctx = None))]
    fn __call__(
        &self,
        py: Python<'_>,
        obj: &Bound<'_, PyAny>,
        ctx: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<Py<PyBytes>>> {
        if obj.is_none() {
            return Ok(None);
        }
        let ctx = context(py, ctx, "JSONSerializer")?;
        let mut out = Vec::with_capacity(256);
        if let Some(ids) = &self.ids {
            out.push(0);
            out.extend_from_slice(&ids.id_for(py, &ctx)?.to_be_bytes());
        }
        write_json(obj, &mut out, 0)?;
        encrypt_part(py, &self.codec, &ctx, &out)
    }
}

/// Decrypts a JSON record (Confluent-framed or plain) with the codec and parses it, in one call.
#[pyclass(module = "fieldcrypt", name = "JSONDeserializer", frozen)]
pub(crate) struct JsonDeserializer {
    codec: Py<Codec>,
}

#[pymethods]
impl JsonDeserializer {
    /// `schema_str` is accepted for confluent-kafka's call shape; records are not validated.
    #[new]
    #[pyo3(signature = (schema_str, codec, schema_registry_client = None, conf = None))]
    fn new(
        schema_str: Option<&Bound<'_, PyAny>>,
        codec: Py<Codec>,
        schema_registry_client: Option<&Bound<'_, PyAny>>,
        conf: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<JsonDeserializer> {
        let _ = (schema_str, schema_registry_client);
        conf_dict(conf, &[])?;
        Ok(JsonDeserializer { codec })
    }

    #[pyo3(signature = (data, ctx = None))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        data: Option<&[u8]>,
        ctx: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let Some(data) = data else { return Ok(py.None().into_bound(py)) };
        let ctx = context(py, ctx, "JSONDeserializer")?;
        let plain = decrypt_part(py, &self.codec, &ctx, data)?;
        // JSON text never starts with a 0 byte: a Confluent frame does.
        let text = if plain.first() == Some(&0) && plain.len() >= 5 { &plain[5..] } else { &plain[..] };
        let value: serde_json::Value = serde_json::from_slice(text)
            .map_err(|e| serialization_error(py, format!("the record for topic {:?} is not JSON: {e}", ctx.topic)))?;
        json_to_py(py, value)
    }
}
