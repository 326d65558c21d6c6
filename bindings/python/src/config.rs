//! The keyword arguments of `fieldcrypt.Codec(...)` as the core's configuration types: the
//! policy, KMS clients, schema source and limits. Type conversion only: every rule about what a
//! configuration means is the core's. Unknown or mistyped options are `ConfigError`s naming
//! the option (never its value: options hold credentials).

use std::path::PathBuf;
use std::time::Duration;

use fieldcrypt::framing::SchemaRef;
use fieldcrypt::kms::{
    AwsCredentials, AwsKms, AwsKmsConfig, AzureAuth, AzureKeyVault, AzureKeyVaultConfig, GcpAuth, GcpKms, GcpKmsConfig,
    VaultAuth, VaultConfig, VaultKms,
};
use fieldcrypt::registry::{RegistryConfig, SchemaRegistry};
use fieldcrypt::{
    CodecBuilder, HttpOptions, Limits, LocalKms, Policy, SchemaSource, SchemaText, SchemaType, StaticSchemas,
};
use pyo3::conversion::FromPyObjectOwned;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};

use crate::errors::{config as config_error, to_py};

/// A core result as a Python one.
pub(crate) fn core<T>(py: Python<'_>, r: fieldcrypt::Result<T>) -> PyResult<T> {
    r.map_err(|e| to_py(py, &e, None))
}

/// `json.dumps(obj)`: policies, key files and service account keys given as dicts.
fn json_text(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    obj.py().import("json")?.call_method1("dumps", (obj,))?.extract()
}

/// A dict of options, read one named option at a time; [`Options::finish`] rejects the names
/// no one asked for.
struct Options<'py> {
    what: String,
    dict: Bound<'py, PyDict>,
    known: Vec<&'static str>,
}

impl<'py> Options<'py> {
    fn new(what: impl Into<String>, obj: &Bound<'py, PyAny>) -> PyResult<Options<'py>> {
        let what = what.into();
        let dict = obj
            .cast::<PyDict>()
            .map_err(|_| config_error(obj.py(), format!("{what} must be a dict, not {}", type_name(obj))))?
            .clone();
        Ok(Options { what, dict, known: Vec::new() })
    }

    fn py(&self) -> Python<'py> {
        self.dict.py()
    }

    /// The raw value of option `name`; `None` when absent or None.
    fn raw(&mut self, name: &'static str) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.known.push(name);
        Ok(self.dict.get_item(name)?.filter(|v| !v.is_none()))
    }

    fn get<T: FromPyObjectOwned<'py>>(&mut self, name: &'static str, expected: &str) -> PyResult<Option<T>> {
        let Some(v) = self.raw(name)? else { return Ok(None) };
        let t = v.extract::<T>().ok();
        t.map(Some).ok_or_else(|| self.bad(name, expected, &v))
    }

    fn string(&mut self, name: &'static str) -> PyResult<Option<String>> {
        self.get(name, "a str")
    }

    fn path(&mut self, name: &'static str) -> PyResult<Option<PathBuf>> {
        self.get(name, "a str or os.PathLike")
    }

    /// Seconds, as an int or a float.
    fn duration(&mut self, name: &'static str) -> PyResult<Option<Duration>> {
        let Some(secs) = self.get::<f64>(name, "a number of seconds")? else { return Ok(None) };
        Duration::try_from_secs_f64(secs)
            .map(Some)
            .map_err(|_| config_error(self.py(), format!("{}.{name} must be a number of seconds >= 0", self.what)))
    }

    /// Bytes, or a str taken as UTF-8 (PEM text, secrets).
    fn bytes(&mut self, name: &'static str) -> PyResult<Option<Vec<u8>>> {
        let Some(v) = self.raw(name)? else { return Ok(None) };
        bytes_like(&v).map(Some).ok_or_else(|| self.bad(name, "bytes or str", &v))
    }

    fn bad(&self, name: &str, expected: &str, got: &Bound<'py, PyAny>) -> PyErr {
        config_error(self.py(), format!("{}.{name} must be {expected}, not {}", self.what, type_name(got)))
    }

    fn missing(&self, message: &str) -> PyErr {
        config_error(self.py(), format!("{}: {message}", self.what))
    }

    /// Fails on an option no one asked for (a typo is an error, as in policies).
    fn finish(self) -> PyResult<()> {
        let mut unknown = Vec::new();
        for key in self.dict.keys() {
            let name = key.extract::<String>().unwrap_or_else(|_| format!("{key}"));
            if !self.known.contains(&name.as_str()) {
                unknown.push(name);
            }
        }
        if unknown.is_empty() {
            return Ok(());
        }
        let mut known = self.known.clone();
        known.sort_unstable();
        Err(config_error(self.py(), format!("{}: unknown option(s) {unknown:?} (known: {known:?})", self.what)))
    }
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

/// The policy: a dict, JSON text (a str starting with `{`), or the path of a policy file.
pub(crate) fn policy(obj: &Bound<'_, PyAny>) -> PyResult<Policy> {
    let py = obj.py();
    if obj.cast::<PyDict>().is_ok() {
        return core(py, Policy::from_json(&json_text(obj)?));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        let s: String = s.extract()?;
        if s.trim_start().starts_with('{') {
            return core(py, Policy::from_json(&s));
        }
        return core(py, Policy::from_file(s));
    }
    match obj.extract::<PathBuf>() {
        Ok(path) => core(py, Policy::from_file(path)),
        Err(_) => Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "policy must be a dict, JSON text or a path, not {}",
            type_name(obj)
        ))),
    }
}

/// Timeouts, retries and trusted CAs shared by the remote KMS clients.
fn http_options(o: &mut Options<'_>) -> PyResult<HttpOptions> {
    let mut http = HttpOptions::default();
    if let Some(t) = o.duration("timeout")? {
        http.timeout = t;
    }
    if let Some(n) = o.get("max_retries", "an int >= 0")? {
        http.max_retries = n;
    }
    if let Some(b) = o.duration("backoff")? {
        http.backoff = b;
    }
    http.ca_pem = o.bytes("ca_pem")?;
    Ok(http)
}

/// `"from_env"`, or the options dict of one KMS client.
enum ClientConfig<'py> {
    FromEnv,
    Options(Options<'py>),
}

fn client_config<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<ClientConfig<'py>> {
    if let Ok(s) = obj.cast::<PyString>() {
        return match s.extract::<String>()?.as_str() {
            "from_env" => Ok(ClientConfig::FromEnv),
            _ => Err(config_error(obj.py(), format!("kms.{name} must be a dict of options or \"from_env\""))),
        };
    }
    Options::new(format!("kms.{name}"), obj).map(ClientConfig::Options)
}

/// Adds the KMS clients of `kms={...}` to the codec builder: `{"local": ..., "vault": ...,
/// "aws": ..., "azure": ..., "gcp": ...}`.
pub(crate) fn kms(mut builder: CodecBuilder, obj: &Bound<'_, PyAny>) -> PyResult<CodecBuilder> {
    let py = obj.py();
    let clients = obj
        .cast::<PyDict>()
        .map_err(|_| config_error(py, format!("kms must be a dict of KMS clients, not {}", type_name(obj))))?;
    for (name, value) in clients.iter() {
        let name: String = name.extract().map_err(|_| config_error(py, "kms: client names must be str"))?;
        builder = match name.as_str() {
            "local" => builder.kms(local_kms(&value)?),
            "vault" => builder.kms(core(py, VaultKms::new(vault_config(&value)?))?),
            "aws" => builder.kms(core(py, AwsKms::new(aws_config(&value)?))?),
            "azure" => builder.kms(core(py, AzureKeyVault::new(azure_config(&value)?))?),
            "gcp" => builder.kms(core(py, GcpKms::new(gcp_config(&value)?))?),
            other => {
                return Err(config_error(
                    py,
                    format!("kms: unknown client {other:?} (known: \"local\", \"vault\", \"aws\", \"azure\", \"gcp\")"),
                ))
            }
        };
    }
    Ok(builder)
}

/// `{"key_file": path, "keys": {...key file content...}, "secrets": {name: secret}}`, any of them.
fn local_kms(obj: &Bound<'_, PyAny>) -> PyResult<LocalKms> {
    let py = obj.py();
    let mut o = Options::new("kms.local", obj)?;
    let key_file = o.path("key_file")?;
    let keys = o.raw("keys")?;
    let secrets = o.raw("secrets")?;
    o.finish()?;
    let mut kms = match (key_file, keys) {
        (Some(_), Some(_)) => return Err(config_error(py, "kms.local: give key_file or keys, not both")),
        (Some(path), None) => core(py, LocalKms::from_file(path))?,
        (None, Some(keys)) => {
            let text = if keys.cast::<PyDict>().is_ok() { json_text(&keys)? } else { keys.extract()? };
            core(py, LocalKms::from_json(&text))?
        }
        (None, None) => LocalKms::new(),
    };
    if let Some(secrets) = secrets {
        let secrets = secrets
            .cast::<PyDict>()
            .map_err(|_| config_error(py, "kms.local.secrets must be a dict {name: secret}"))?;
        for (name, v) in secrets.iter() {
            let name: String =
                name.extract().map_err(|_| config_error(py, "kms.local.secrets: key names must be str"))?;
            let secret = bytes_like(&v).ok_or_else(|| {
                config_error(py, format!("kms.local.secrets[{name:?}] must be bytes or str, not {}", type_name(&v)))
            })?;
            kms = kms.with_secret(&name, &secret);
        }
    }
    Ok(kms)
}

/// `"from_env"` (VAULT_TOKEN or VAULT_ROLE_ID + VAULT_SECRET_ID, ...), or `{"token"}` /
/// `{"role_id", "secret_id", "approle_mount"}` with `namespace`, `plain_http` and HTTP options.
fn vault_config(obj: &Bound<'_, PyAny>) -> PyResult<VaultConfig> {
    let py = obj.py();
    let mut o = match client_config("vault", obj)? {
        ClientConfig::FromEnv => return core(py, VaultConfig::from_env()),
        ClientConfig::Options(o) => o,
    };
    let token = o.string("token")?;
    let role_id = o.string("role_id")?;
    let secret_id = o.string("secret_id")?;
    let mount = o.string("approle_mount")?;
    let auth = match (token, role_id, secret_id) {
        (Some(token), None, None) if mount.is_none() => VaultAuth::token(token),
        (None, Some(role_id), Some(secret_id)) => match mount {
            Some(mount) => VaultAuth::AppRole { role_id, secret_id, mount },
            None => VaultAuth::approle(role_id, secret_id),
        },
        _ => return Err(o.missing("give token, or role_id and secret_id (with approle_mount)")),
    };
    let mut config = VaultConfig::new(auth);
    config.namespace = o.string("namespace")?;
    config.plain_http = o.get("plain_http", "a bool")?.unwrap_or(false);
    config.http = http_options(&mut o)?;
    o.finish()?;
    Ok(config)
}

/// `"from_env"` (the default credential chain: environment, shared files, web identity), or
/// `{"endpoint", "access_key_id", "secret_access_key", "session_token", "profile",
/// "credentials_file", "config_file", "sts_endpoint"}` with HTTP options.
fn aws_config(obj: &Bound<'_, PyAny>) -> PyResult<AwsKmsConfig> {
    let mut o = match client_config("aws", obj)? {
        ClientConfig::FromEnv => return Ok(AwsKmsConfig::default()),
        ClientConfig::Options(o) => o,
    };
    let mut config = AwsKmsConfig { endpoint: o.string("endpoint")?, ..Default::default() };
    let key_id = o.string("access_key_id")?;
    let secret = o.string("secret_access_key")?;
    let session_token = o.string("session_token")?;
    config.credentials = match (key_id, secret) {
        (Some(id), Some(secret)) => Some(AwsCredentials::new(id, secret, session_token)),
        (None, None) if session_token.is_none() => None,
        _ => return Err(o.missing("access_key_id and secret_access_key go together (session_token with them)")),
    };
    config.profile = o.string("profile")?;
    config.credentials_file = o.path("credentials_file")?;
    config.config_file = o.path("config_file")?;
    config.sts_endpoint = o.string("sts_endpoint")?;
    config.http = http_options(&mut o)?;
    o.finish()?;
    Ok(config)
}

/// `"from_env"` (AZURE_TENANT_ID + AZURE_CLIENT_ID + AZURE_CLIENT_SECRET, or
/// AZURE_KEYVAULT_TOKEN), or `{"bearer_token"}` / `{"tenant_id", "client_id", "client_secret",
/// "authority_host"}` with HTTP options.
fn azure_config(obj: &Bound<'_, PyAny>) -> PyResult<AzureKeyVaultConfig> {
    let py = obj.py();
    let mut o = match client_config("azure", obj)? {
        ClientConfig::FromEnv => return core(py, AzureKeyVaultConfig::from_env()),
        ClientConfig::Options(o) => o,
    };
    let token = o.string("bearer_token")?;
    let tenant = o.string("tenant_id")?;
    let client = o.string("client_id")?;
    let secret = o.string("client_secret")?;
    let authority = o.string("authority_host")?;
    let auth = match (token, tenant, client, secret) {
        (Some(token), None, None, None) if authority.is_none() => AzureAuth::bearer_token(token),
        (None, Some(tenant_id), Some(client_id), Some(client_secret)) => {
            let mut auth = AzureAuth::client_credentials(tenant_id, client_id, client_secret);
            if let (Some(host), AzureAuth::ClientCredentials { authority_host, .. }) = (authority, &mut auth) {
                *authority_host = host;
            }
            auth
        }
        _ => return Err(o.missing("give bearer_token, or tenant_id, client_id and client_secret")),
    };
    let mut config = AzureKeyVaultConfig::new(auth);
    config.http = http_options(&mut o)?;
    o.finish()?;
    Ok(config)
}

/// `"from_env"` (GOOGLE_APPLICATION_CREDENTIALS, FIELDCRYPT_GCP_KMS_ENDPOINT), or
/// `{"access_token"}` / `{"service_account": JSON text, dict or key file path}` /
/// `{"no_auth": True}` (emulators), with `endpoint` and HTTP options.
fn gcp_config(obj: &Bound<'_, PyAny>) -> PyResult<GcpKmsConfig> {
    let py = obj.py();
    let mut o = match client_config("gcp", obj)? {
        ClientConfig::FromEnv => return core(py, GcpKmsConfig::from_env()),
        ClientConfig::Options(o) => o,
    };
    let token = o.string("access_token")?;
    let account = match o.raw("service_account")? {
        Some(v) if v.cast::<PyDict>().is_ok() => Some(json_text(&v)?),
        Some(v) => match v.extract::<PathBuf>() {
            Ok(p) => Some(p.to_string_lossy().into_owned()),
            Err(_) => return Err(o.bad("service_account", "JSON text, a dict or a path", &v)),
        },
        None => None,
    };
    let no_auth = o.get("no_auth", "a bool")?.unwrap_or(false);
    let auth = match (token, account, no_auth) {
        (Some(token), None, false) => GcpAuth::AccessToken(token),
        (None, Some(account), false) => GcpAuth::ServiceAccount(account),
        (None, None, true) => GcpAuth::None,
        _ => return Err(o.missing("give one of access_token, service_account or no_auth=True")),
    };
    let mut config = GcpKmsConfig::new(auth);
    config.endpoint = o.string("endpoint")?;
    config.http = http_options(&mut o)?;
    o.finish()?;
    Ok(config)
}

/// `registry="http://..."` or `{"url", "basic_auth": (user, password), "bearer_token",
/// "ca_pem", "timeout", "max_retries", "backoff", "cache_capacity", "latest_ttl"}`.
pub(crate) fn registry(obj: &Bound<'_, PyAny>) -> PyResult<SchemaRegistry> {
    let py = obj.py();
    if let Ok(url) = obj.cast::<PyString>() {
        return core(py, SchemaRegistry::new(RegistryConfig::new(url.extract::<String>()?)));
    }
    let mut o = Options::new("registry", obj)?;
    let url = o.string("url")?.ok_or_else(|| o.missing("url is required"))?;
    let mut config = RegistryConfig::new(url);
    config.basic_auth = o.get("basic_auth", "a (user, password) tuple")?;
    config.bearer_token = o.string("bearer_token")?;
    config.ca_pem = o.bytes("ca_pem")?;
    if let Some(t) = o.duration("timeout")? {
        config.timeout = t;
    }
    if let Some(n) = o.get("max_retries", "an int >= 0")? {
        config.max_retries = n;
    }
    if let Some(b) = o.duration("backoff")? {
        config.backoff = b;
    }
    if let Some(n) = o.get("cache_capacity", "an int >= 1")? {
        config.cache_capacity = n;
    }
    if let Some(t) = o.duration("latest_ttl")? {
        config.latest_ttl = t;
    }
    o.finish()?;
    core(py, SchemaRegistry::new(config))
}

/// `schemas={id or GUID: {"type": "AVRO" | "PROTOBUF" | "JSON", "schema": text,
/// "name": str, "references": {name: text} | [(name, text), ...]}}`.
pub(crate) fn static_schemas(obj: &Bound<'_, PyAny>) -> PyResult<StaticSchemas> {
    let py = obj.py();
    let all = obj
        .cast::<PyDict>()
        .map_err(|_| config_error(py, format!("schemas must be a dict, not {}", type_name(obj))))?;
    let mut schemas = StaticSchemas::new();
    for (id, spec) in all.iter() {
        let schema_ref = if let Ok(n) = id.extract::<u32>() {
            SchemaRef::Id(n)
        } else if let Ok(guid) = id.extract::<String>() {
            SchemaRef::Guid(guid.to_ascii_lowercase())
        } else {
            return Err(config_error(py, "schemas: keys must be schema ids (int >= 0) or GUIDs (str)"));
        };
        let mut o = Options::new(format!("schemas[{id}]"), &spec)?;
        let schema_type = match o.string("type")?.map(|t| t.to_ascii_uppercase()).as_deref() {
            Some("AVRO") => SchemaType::Avro,
            Some("PROTOBUF") => SchemaType::Protobuf,
            Some("JSON") => SchemaType::Json,
            _ => return Err(o.missing("type must be \"AVRO\", \"PROTOBUF\" or \"JSON\"")),
        };
        let text = o.string("schema")?.ok_or_else(|| o.missing("schema (the schema text) is required"))?;
        let name = o.string("name")?.unwrap_or_else(|| format!("schema-{id}"));
        let references: Vec<(String, String)> = match o.raw("references")? {
            None => Vec::new(),
            Some(r) => {
                let pairs = match r.cast::<PyDict>() {
                    Ok(d) => d.items().into_any(),
                    Err(_) => r.clone(),
                };
                pairs.extract().map_err(|_| o.bad("references", "a dict or a list of (name, text) pairs", &r))?
            }
        };
        o.finish()?;
        schemas = schemas.with(schema_ref, SchemaText { schema_type, name, text, references });
    }
    Ok(schemas)
}

/// Either schema source, or none.
pub(crate) fn schema_source(
    py: Python<'_>,
    registry_cfg: Option<&Bound<'_, PyAny>>,
    schemas_cfg: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<std::sync::Arc<dyn SchemaSource>>> {
    Ok(match (registry_cfg, schemas_cfg) {
        (Some(_), Some(_)) => return Err(config_error(py, "give registry or schemas, not both")),
        (Some(r), None) => Some(std::sync::Arc::new(registry(r)?)),
        (None, Some(s)) => Some(std::sync::Arc::new(static_schemas(s)?)),
        (None, None) => None,
    })
}

/// `limits={"dek_max_uses": int, "dek_max_age": seconds, "dek_cache_capacity": int,
/// "dek_cache_ttl": seconds, "dek_denied_ttl": seconds, "dek_outage_extra_uses": int,
/// "kms_retry_interval": seconds}`; the core checks the values when the codec is built.
pub(crate) fn limits(obj: &Bound<'_, PyAny>) -> PyResult<Limits> {
    let mut o = Options::new("limits", obj)?;
    let mut l = Limits::default();
    if let Some(n) = o.get("dek_max_uses", "an int")? {
        l.dek_max_uses = n;
    }
    if let Some(d) = o.duration("dek_max_age")? {
        l.dek_max_age = d;
    }
    if let Some(n) = o.get("dek_cache_capacity", "an int")? {
        l.dek_cache_capacity = n;
    }
    if let Some(d) = o.duration("dek_cache_ttl")? {
        l.dek_cache_ttl = d;
    }
    if let Some(d) = o.duration("dek_denied_ttl")? {
        l.dek_denied_ttl = d;
    }
    if let Some(n) = o.get("dek_outage_extra_uses", "an int")? {
        l.dek_outage_extra_uses = n;
    }
    if let Some(d) = o.duration("kms_retry_interval")? {
        l.kms_retry_interval = d;
    }
    o.finish()?;
    Ok(l)
}
