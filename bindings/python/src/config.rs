//! The keyword arguments of `fieldcrypt.Codec(...)` as the core's configuration document
//! (`fieldcrypt::config`, the same document every binding takes): Python values become JSON
//! values (`bytes` become `{"base64": ...}`, paths their text, int dict keys their digits) and
//! the core reads the options. Type conversion only: what an option means, and the errors for
//! unknown or mistyped ones, are the core's.

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Value};

use crate::errors::{config as config_error, to_py};

/// A core result as a Python one.
pub(crate) fn core<T>(py: Python<'_>, r: fieldcrypt::Result<T>) -> PyResult<T> {
    r.map_err(|e| to_py(py, &e, None))
}

/// `json.dumps(obj)`: policies, key files and service account keys given as dicts.
fn json_text(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    obj.py().import("json")?.call_method1("dumps", (obj,))?.extract()
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// `bytes`, `bytearray`, or a `str` as UTF-8.
pub(crate) fn bytes_like(v: &Bound<'_, PyAny>) -> Option<Vec<u8>> {
    if let Ok(b) = v.cast::<PyBytes>() {
        Some(b.as_bytes().to_vec())
    } else if let Ok(b) = v.cast::<PyByteArray>() {
        Some(b.to_vec())
    } else if let Ok(s) = v.cast::<PyString>() {
        s.extract::<String>().ok().map(String::into_bytes)
    } else {
        None
    }
}

/// The policy's text (bare, or a signed envelope): a dict, JSON text (a str starting with `{`),
/// or the path of a policy file. The core parses and verifies it (`fieldcrypt::config::open`).
pub(crate) fn policy_text(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    let py = obj.py();
    if obj.cast::<PyDict>().is_ok() {
        return json_text(obj);
    }
    let path = if let Ok(s) = obj.cast::<PyString>() {
        let s: String = s.extract()?;
        if s.trim_start().starts_with('{') {
            return Ok(s);
        }
        PathBuf::from(s)
    } else {
        obj.extract::<PathBuf>().map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "policy must be a dict, JSON text or a path, not {}",
                type_name(obj)
            ))
        })?
    };
    // The core's message for an unreadable policy file (`Policy::from_file`).
    std::fs::read_to_string(&path).map_err(|e| {
        to_py(
            py,
            &fieldcrypt::Error::new(
                fieldcrypt::ErrorKind::Policy,
                format!("cannot read policy file {}: {e}", path.display()),
            ),
            None,
        )
    })
}

/// The configuration document of `Codec(...)`'s options; `None` options are left out.
pub(crate) fn document(options: &[(&str, Option<&Bound<'_, PyAny>>)]) -> PyResult<Map<String, Value>> {
    let mut document = Map::new();
    for (name, value) in options {
        if let Some(value) = value.filter(|v| !v.is_none()) {
            document.insert(name.to_string(), json_value(name, value)?);
        }
    }
    Ok(document)
}

/// A Python configuration value as JSON. `at` names where it sits, for the error message.
fn json_value(at: &str, obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    let py = obj.py();
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.cast::<PyInt>().is_ok() {
        if let Ok(n) = obj.extract::<i64>() {
            return Ok(n.into());
        }
        return obj.extract::<u64>().map(Value::from).map_err(|_| config_error(py, format!("{at} is out of range")));
    }
    if obj.cast::<PyFloat>().is_ok() {
        let f: f64 = obj.extract()?;
        return serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| config_error(py, format!("{at} must be a finite number")));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.extract()?));
    }
    if obj.cast::<PyBytes>().is_ok() || obj.cast::<PyByteArray>().is_ok() {
        let bytes = bytes_like(obj).unwrap_or_default();
        return Ok(serde_json::json!({ "base64": B64.encode(bytes) }));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut map = Map::new();
        for (k, v) in dict.iter() {
            let key = if let Ok(s) = k.cast::<PyString>() {
                s.extract::<String>()?
            } else if k.cast::<PyInt>().is_ok() && k.cast::<PyBool>().is_err() {
                k.extract::<u64>()
                    .map_err(|_| config_error(py, format!("{at}: keys must be str or ints >= 0")))?
                    .to_string()
            } else {
                return Err(config_error(py, format!("{at}: keys must be str (or schema ids), not {}", type_name(&k))));
            };
            let value = json_value(&format!("{at}.{key}"), &v)?;
            map.insert(key, value);
        }
        return Ok(Value::Object(map));
    }
    if obj.cast::<PyList>().is_ok() || obj.cast::<PyTuple>().is_ok() {
        let mut items = Vec::new();
        for (i, item) in obj.try_iter()?.enumerate() {
            items.push(json_value(&format!("{at}[{i}]"), &item?)?);
        }
        return Ok(Value::Array(items));
    }
    if let Ok(path) = obj.extract::<PathBuf>() {
        return Ok(Value::String(path.to_string_lossy().into_owned()));
    }
    Err(config_error(py, format!("{at}: a {} is not a configuration value", type_name(obj))))
}
