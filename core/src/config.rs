//! A codec's runtime configuration as one JSON document: the KMS clients, the schema source,
//! the limits and the consumer profile. Every binding takes this same document (the C ABI as
//! text, Python as keyword arguments turned into it), so an option means the same thing in every
//! language and is read in one place.
//!
//! ```json
//! {"kms": {"local": {"key_file": "keys.json"}, "vault": "from_env"},
//!  "profile": "support", "registry": "http://127.0.0.1:8081/apis/ccompat/v7",
//!  "limits": {"dek_max_uses": 100000, "dek_cache_ttl": 300}, "validate_json_schema": false}
//! ```
//!
//! Durations are seconds (numbers); byte strings (secrets, PEM) are UTF-8 text or
//! `{"base64": "..."}`. Unknown or mistyped options are [`ErrorKind::Config`] errors naming the
//! option, never its value: options hold credentials.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{Map, Value};

use crate::framing::SchemaRef;
use crate::kms::{
    AwsCredentials, AwsKms, AwsKmsConfig, AzureAuth, AzureKeyVault, AzureKeyVaultConfig, GcpAuth, GcpKms, GcpKmsConfig,
    VaultAuth, VaultConfig, VaultKms,
};
use crate::policy::{FileSource, HttpsSource, PolicySource, PolicyVerifier, Verification};
use crate::registry::{RegistryConfig, SchemaRegistry};
use crate::{
    Codec, CodecBuilder, Error, HttpOptions, Limits, LocalKms, Policy, Reload, ReloadStatus, ReloadingCodec,
    ReloadingCodecBuilder, Result, SchemaSource, SchemaText, SchemaType, StaticSchemas,
};

/// The top-level options, in the order the documentation lists them.
const CODEC_OPTIONS: &str =
    "kms, profile, registry, schemas, limits, validate_json_schema, key_store, trusted_keys, policy_source";

/// Builds a codec for `policy` from a configuration document (see the module docs).
pub fn codec(policy: Policy, config: &Value) -> Result<Codec> {
    builder(policy, config)?.build()
}

/// Builds a codec from the texts of a policy and a configuration document; empty configuration
/// text means `{}`. [`open`] also takes signed policies and policy sources.
pub fn codec_from_json(policy: &str, config: &str) -> Result<Codec> {
    codec(Policy::from_json(policy)?, &parse(config)?)
}

/// A codec builder for `policy` with the configuration applied; callers may add to it.
pub fn builder(policy: Policy, config: &Value) -> Result<CodecBuilder> {
    let mut o = Options::new("configuration", config)?;
    let mut builder = Codec::builder(policy);
    if let Some(kms) = o.raw("kms") {
        builder = kms_clients(builder, kms)?;
    }
    if let Some(profile) = o.string("profile")? {
        builder = builder.profile(profile);
    }
    let source: Option<Arc<dyn SchemaSource>> = match (o.raw("registry"), o.raw("schemas")) {
        (Some(_), Some(_)) => return Err(Error::config("give registry or schemas, not both")),
        (Some(r), None) => Some(Arc::new(registry(r)?)),
        (None, Some(s)) => Some(Arc::new(static_schemas(s)?)),
        (None, None) => None,
    };
    if let Some(source) = source {
        builder = builder.schemas_shared(source);
    }
    if let Some(l) = o.raw("limits") {
        builder = builder.limits(limits(l)?);
    }
    builder = builder.validate_json_schema(o.bool("validate_json_schema")?.unwrap_or(false));
    if let Some(store) = o.raw("key_store") {
        builder = builder.key_store_shared(key_store(store)?);
    }
    if o.raw("policy_source").is_some() || o.raw("trusted_keys").is_some() {
        return Err(Error::config("policy_source and trusted_keys are read where the policy is (config::open)"));
    }
    o.finish_with(CODEC_OPTIONS)?;
    Ok(builder)
}

/// An object of options, read one named option at a time; [`Options::finish`] rejects the
/// names no one asked for (a typo is an error, as in policies).
struct Options<'a> {
    what: String,
    map: &'a Map<String, Value>,
    known: Vec<&'static str>,
}

impl<'a> Options<'a> {
    fn new(what: impl Into<String>, value: &'a Value) -> Result<Options<'a>> {
        let what = what.into();
        match value {
            Value::Object(map) => Ok(Options { what, map, known: Vec::new() }),
            other => Err(Error::config(format!("{what} must be an object, not {}", type_name(other)))),
        }
    }

    /// The value of option `name`; `None` when absent or null.
    fn raw(&mut self, name: &'static str) -> Option<&'a Value> {
        self.known.push(name);
        self.map.get(name).filter(|v| !v.is_null())
    }

    fn bad(&self, name: &str, expected: &str, got: &Value) -> Error {
        Error::config(format!("{}.{name} must be {expected}, not {}", self.what, type_name(got)))
    }

    fn missing(&self, message: &str) -> Error {
        Error::config(format!("{}: {message}", self.what))
    }

    fn string(&mut self, name: &'static str) -> Result<Option<String>> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.bad(name, "a string", v)),
        }
    }

    fn path(&mut self, name: &'static str) -> Result<Option<PathBuf>> {
        Ok(self.string(name)?.map(PathBuf::from))
    }

    fn bool(&mut self, name: &'static str) -> Result<Option<bool>> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.bad(name, "true or false", v)),
        }
    }

    fn uint<T: TryFrom<u64>>(&mut self, name: &'static str) -> Result<Option<T>> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| T::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.bad(name, "an integer >= 0 in range", v)),
        }
    }

    /// Seconds, as an integer or a fraction.
    fn duration(&mut self, name: &'static str) -> Result<Option<Duration>> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
                .map(Some)
                .ok_or_else(|| self.bad(name, "a number of seconds >= 0", v)),
        }
    }

    /// UTF-8 text, or `{"base64": "..."}` for arbitrary bytes.
    fn bytes(&mut self, name: &'static str) -> Result<Option<Vec<u8>>> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) => bytes_of(v).map(Some).ok_or_else(|| self.bad(name, "text or {\"base64\": ...}", v)),
        }
    }

    fn finish(self) -> Result<()> {
        let mut known = self.known.clone();
        known.sort_unstable();
        let known = known.join(", ");
        self.finish_with(&known)
    }

    fn finish_with(self, known: &str) -> Result<()> {
        let unknown: Vec<&String> = self.map.keys().filter(|k| !self.known.contains(&k.as_str())).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(Error::config(format!("{}: unknown option(s) {unknown:?} (known: {known})", self.what)))
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Text as its UTF-8 bytes, or `{"base64": "..."}` decoded.
fn bytes_of(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Object(m) if m.len() == 1 => m.get("base64")?.as_str().and_then(|s| B64.decode(s).ok()),
        _ => None,
    }
}

/// Timeouts, retries and trusted CAs shared by the remote KMS clients.
fn http_options(o: &mut Options<'_>) -> Result<HttpOptions> {
    let mut http = HttpOptions::default();
    if let Some(t) = o.duration("timeout")? {
        http.timeout = t;
    }
    if let Some(n) = o.uint("max_retries")? {
        http.max_retries = n;
    }
    if let Some(b) = o.duration("backoff")? {
        http.backoff = b;
    }
    http.ca_pem = o.bytes("ca_pem")?;
    Ok(http)
}

/// `"from_env"`, or the options object of one KMS client.
enum ClientConfig<'a> {
    FromEnv,
    Options(Options<'a>),
}

fn client_config<'a>(name: &str, value: &'a Value) -> Result<ClientConfig<'a>> {
    match value {
        Value::String(s) if s == "from_env" => Ok(ClientConfig::FromEnv),
        Value::String(_) => Err(Error::config(format!("kms.{name} must be an object of options or \"from_env\""))),
        v => Options::new(format!("kms.{name}"), v).map(ClientConfig::Options),
    }
}

/// Adds the KMS clients of `{"local": ..., "vault": ..., "aws": ..., "azure": ..., "gcp": ...}`.
fn kms_clients(mut builder: CodecBuilder, value: &Value) -> Result<CodecBuilder> {
    let Value::Object(clients) = value else {
        return Err(Error::config(format!("kms must be an object of KMS clients, not {}", type_name(value))));
    };
    for (name, value) in clients {
        builder = match name.as_str() {
            "local" => builder.kms(local_kms(value)?),
            "vault" => builder.kms(VaultKms::new(vault_config(value)?)?),
            "aws" => builder.kms(AwsKms::new(aws_config(value)?)?),
            "azure" => builder.kms(AzureKeyVault::new(azure_config(value)?)?),
            "gcp" => builder.kms(GcpKms::new(gcp_config(value)?)?),
            other => {
                return Err(Error::config(format!(
                    "kms: unknown client {other:?} (known: \"local\", \"vault\", \"aws\", \"azure\", \"gcp\")"
                )))
            }
        };
    }
    Ok(builder)
}

/// `{"key_file": path, "keys": {...key file content...} or its text, "secrets": {name: secret}}`.
fn local_kms(value: &Value) -> Result<LocalKms> {
    let mut o = Options::new("kms.local", value)?;
    let key_file = o.path("key_file")?;
    let keys = o.raw("keys");
    let secrets = o.raw("secrets");
    o.finish()?;
    let mut kms = match (key_file, keys) {
        (Some(_), Some(_)) => return Err(Error::config("kms.local: give key_file or keys, not both")),
        (Some(path), None) => LocalKms::from_file(path)?,
        (None, Some(Value::String(text))) => LocalKms::from_json(text)?,
        (None, Some(keys @ Value::Object(_))) => LocalKms::from_json(&keys.to_string())?,
        (None, Some(other)) => {
            return Err(Error::config(format!("kms.local.keys must be an object or text, not {}", type_name(other))))
        }
        (None, None) => LocalKms::new(),
    };
    if let Some(secrets) = secrets {
        let Value::Object(secrets) = secrets else {
            return Err(Error::config("kms.local.secrets must be an object {name: secret}"));
        };
        for (name, v) in secrets {
            let secret = bytes_of(v).ok_or_else(|| {
                Error::config(format!(
                    "kms.local.secrets[{name:?}] must be text or {{\"base64\": ...}}, not {}",
                    type_name(v)
                ))
            })?;
            kms = kms.with_secret(name, &secret);
        }
    }
    Ok(kms)
}

/// `"from_env"` (VAULT_TOKEN or VAULT_ROLE_ID + VAULT_SECRET_ID, ...), or `{"token"}` /
/// `{"role_id", "secret_id", "approle_mount"}` with `namespace`, `plain_http` and HTTP options.
fn vault_config(value: &Value) -> Result<VaultConfig> {
    let mut o = match client_config("vault", value)? {
        ClientConfig::FromEnv => return VaultConfig::from_env(),
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
    config.plain_http = o.bool("plain_http")?.unwrap_or(false);
    config.http = http_options(&mut o)?;
    o.finish()?;
    Ok(config)
}

/// `"from_env"` (the default credential chain: environment, shared files, web identity), or
/// `{"endpoint", "access_key_id", "secret_access_key", "session_token", "profile",
/// "credentials_file", "config_file", "sts_endpoint"}` with HTTP options.
fn aws_config(value: &Value) -> Result<AwsKmsConfig> {
    let mut o = match client_config("aws", value)? {
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
fn azure_config(value: &Value) -> Result<AzureKeyVaultConfig> {
    let mut o = match client_config("azure", value)? {
        ClientConfig::FromEnv => return AzureKeyVaultConfig::from_env(),
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
/// `{"access_token"}` / `{"service_account": key object, its JSON text or a key file path}` /
/// `{"no_auth": true}` (emulators), with `endpoint` and HTTP options.
fn gcp_config(value: &Value) -> Result<GcpKmsConfig> {
    let mut o = match client_config("gcp", value)? {
        ClientConfig::FromEnv => return GcpKmsConfig::from_env(),
        ClientConfig::Options(o) => o,
    };
    let token = o.string("access_token")?;
    let account = match o.raw("service_account") {
        Some(v @ Value::Object(_)) => Some(v.to_string()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => return Err(o.bad("service_account", "a key object, its JSON text or a path", v)),
        None => None,
    };
    let no_auth = o.bool("no_auth")?.unwrap_or(false);
    let auth = match (token, account, no_auth) {
        (Some(token), None, false) => GcpAuth::AccessToken(token),
        (None, Some(account), false) => GcpAuth::ServiceAccount(account),
        (None, None, true) => GcpAuth::None,
        _ => return Err(o.missing("give one of access_token, service_account or no_auth: true")),
    };
    let mut config = GcpKmsConfig::new(auth);
    config.endpoint = o.string("endpoint")?;
    config.http = http_options(&mut o)?;
    o.finish()?;
    Ok(config)
}

/// `{"file": path, "refresh": seconds}` or `{"kafka": {"bootstrap": "host:port", "topic":
/// "_fieldcrypt_keys"}}` (builds with the `kafka` feature).
fn key_store(value: &Value) -> Result<Arc<dyn crate::keystore::KeyStore>> {
    let mut o = Options::new("key_store", value)?;
    let file = o.path("file")?;
    let refresh = o.duration("refresh")?.unwrap_or(std::time::Duration::from_secs(1));
    let kafka = o.raw("kafka");
    o.finish()?;
    match (file, kafka) {
        (Some(path), None) => Ok(Arc::new(crate::keystore::FileKeyStore::open(path, refresh)?)),
        (None, Some(kafka)) => kafka_key_store(kafka),
        _ => Err(Error::config("key_store: give \"file\" or \"kafka\"")),
    }
}

#[cfg(feature = "kafka")]
fn kafka_key_store(value: &Value) -> Result<Arc<dyn crate::keystore::KeyStore>> {
    let mut o = Options::new("key_store.kafka", value)?;
    let client = kafka_client(&mut o)?;
    let mut options = crate::keystore::KafkaKeyStoreOptions::default();
    if let Some(topic) = o.string("topic")? {
        options.topic = topic;
    }
    if let Some(timeout) = o.duration("timeout")? {
        options.timeout = timeout;
    }
    if let Some(create) = o.bool("create_topic")? {
        options.create_topic = create;
    }
    if let Some(v) = o.raw("replication_factor") {
        options.replication_factor = v
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .filter(|n| *n == -1 || *n >= 1)
            .ok_or_else(|| o.bad("replication_factor", "-1 (the broker's default) or an integer >= 1", v))?;
    }
    o.finish()?;
    Ok(Arc::new(crate::keystore::KafkaKeyStore::open_with(&client, &options)?))
}

#[cfg(not(feature = "kafka"))]
fn kafka_key_store(_: &Value) -> Result<Arc<dyn crate::keystore::KeyStore>> {
    Err(no_kafka("key_store.kafka"))
}

#[cfg(not(feature = "kafka"))]
fn no_kafka(option: &str) -> Error {
    Error::config(format!(
        "{option}: this build of fieldcrypt has no Kafka client (cargo feature `kafka`; from C, Go, C#, Java: \
         the fieldcrypt_ffi_kafka library)"
    ))
}

/// `"bootstrap"` (required) and `"properties"`: librdkafka settings for TLS and SASL
/// (`security.protocol`, `sasl.mechanism`, ...), an object of strings. Their values are never
/// shown in errors (they hold passwords).
#[cfg(feature = "kafka")]
fn kafka_client(o: &mut Options<'_>) -> Result<rdkafka::ClientConfig> {
    let bootstrap = o.string("bootstrap")?.ok_or_else(|| o.missing("bootstrap is required"))?;
    let mut client = rdkafka::ClientConfig::new();
    match o.raw("properties") {
        None => {}
        Some(Value::Object(properties)) => {
            for (name, value) in properties {
                let value = value
                    .as_str()
                    .ok_or_else(|| Error::config(format!("{}.properties[{name:?}] must be a string", o.what)))?;
                client.set(name, value);
            }
        }
        Some(v) => return Err(o.bad("properties", "an object of librdkafka settings (strings)", v)),
    }
    client.set("bootstrap.servers", bootstrap);
    Ok(client)
}

// ---- the policy and where it comes from ----------------------------------------------------------

/// A codec made by [`open`]: with the policy it was given, or following a policy source
/// (`"policy_source"`, hot reload). Share it; every call uses the policy in force.
pub struct ConfiguredCodec(Configured);

enum Configured {
    Fixed { codec: Codec, signed_by: Option<String> },
    Reloading(ReloadingCodec),
}

impl fmt::Debug for ConfiguredCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Configured::Fixed { codec, .. } => f.debug_tuple("ConfiguredCodec").field(codec).finish(),
            Configured::Reloading(r) => f.debug_tuple("ConfiguredCodec").field(r).finish(),
        }
    }
}

impl ConfiguredCodec {
    /// The codec of the policy in force (borrowed when the policy is fixed; a cheap clone when
    /// it follows a source). Use one for a whole batch, so the batch sees one policy.
    pub fn codec(&self) -> Cow<'_, Codec> {
        match &self.0 {
            Configured::Fixed { codec, .. } => Cow::Borrowed(codec),
            Configured::Reloading(r) => Cow::Owned(r.current()),
        }
    }

    /// Fetches the policy source now ([`ReloadingCodec::reload_now`]); a codec with a fixed
    /// policy has nothing to reload (a `config` error).
    pub fn reload_now(&self) -> Result<Reload> {
        match &self.0 {
            Configured::Fixed { .. } => Err(Error::config("this codec has a fixed policy: configure a policy_source")),
            Configured::Reloading(r) => r.reload_now(),
        }
    }

    /// The policy in force and the reload counters (for a fixed policy: one load, no source).
    pub fn status(&self) -> ReloadStatus {
        match &self.0 {
            Configured::Fixed { codec, signed_by } => ReloadStatus {
                policy_id: codec.policy().id().to_string(),
                revision: codec.policy().revision(),
                signed_by: signed_by.clone(),
                source: None,
                loads: 1,
                rejections: 0,
                fetch_errors: 0,
                last_error: None,
            },
            Configured::Reloading(r) => r.status(),
        }
    }
}

/// Builds a codec from a policy text (bare, or a signed envelope) and a configuration document
/// (text; empty means `{}`). With `"policy_source"` in the configuration there is no policy
/// text (`None`): the policy is fetched, verified and hot-reloaded. With `"trusted_keys"`, the
/// policy, given or fetched, must be signed by one of them.
pub fn open(policy: Option<&str>, config: &str) -> Result<ConfiguredCodec> {
    let mut config = parse(config)?;
    let Value::Object(map) = &mut config else {
        return Err(Error::config(format!("configuration must be an object, not {}", type_name(&config))));
    };
    let trusted = map.remove("trusted_keys").filter(|v| !v.is_null());
    let source = map.remove("policy_source").filter(|v| !v.is_null());
    let verifier = trusted.as_ref().map(trusted_keys).transpose()?;
    match (policy, source) {
        (Some(text), None) => {
            let verified = match verifier {
                Some(verifier) => verifier.verify_signed(text.as_bytes())?,
                None => Verification::Disabled.verify(text.as_bytes())?,
            };
            let signed_by = verified.signed_by().map(str::to_string);
            Ok(ConfiguredCodec(Configured::Fixed { codec: codec(verified.into_policy(), &config)?, signed_by }))
        }
        (None, Some(source)) => {
            let reloading = policy_source(&source, verifier)?.build(move |policy| codec(policy, &config))?;
            Ok(ConfiguredCodec(Configured::Reloading(reloading)))
        }
        (Some(_), Some(_)) => Err(Error::config("give a policy or a policy_source, not both")),
        (None, None) => Err(Error::config("no policy: give a policy, or a policy_source in the configuration")),
    }
}

fn parse(config: &str) -> Result<Value> {
    if config.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_str(config).map_err(|e| {
        Error::config(format!("the configuration is not valid JSON (line {}, column {})", e.line(), e.column()))
    })
}

/// `{"key id": "public key, Base64 or PEM", ...}`.
fn trusted_keys(value: &Value) -> Result<PolicyVerifier> {
    let Value::Object(keys) = value else {
        return Err(Error::config(format!(
            "trusted_keys must be an object of key id to public key, not {}",
            type_name(value)
        )));
    };
    if keys.is_empty() {
        return Err(Error::config("trusted_keys is empty: no policy could verify"));
    }
    PolicyVerifier::from_json(&value.to_string())
}

/// `{"file": path | "url": URL | "kafka": {"bootstrap", "topic", "properties"}, "policy_id",
/// "interval": seconds, "manual": bool, "min_revision": int, "allow_unsigned": bool}`, with
/// `"headers"` and the HTTP options for a URL.
fn policy_source(value: &Value, verifier: Option<PolicyVerifier>) -> Result<ReloadingCodecBuilder> {
    let mut o = Options::new("policy_source", value)?;
    let file = o.path("file")?;
    let url = o.string("url")?;
    let kafka = o.raw("kafka");
    let policy_id = o.string("policy_id")?;
    let source: Box<dyn PolicySource> = match (file, url, kafka) {
        (Some(path), None, None) => Box::new(FileSource::new(path)),
        (None, Some(url), None) => {
            let http = http_options(&mut o)?;
            let mut source = HttpsSource::new(&url, &http)?;
            match o.raw("headers") {
                None => {}
                Some(Value::Object(headers)) => {
                    for (name, v) in headers {
                        let v = v.as_str().ok_or_else(|| {
                            Error::config(format!("policy_source.headers[{name:?}] must be a string"))
                        })?;
                        source = source.header(name, v)?;
                    }
                }
                Some(v) => return Err(o.bad("headers", "an object of header name to value", v)),
            }
            Box::new(source)
        }
        (None, None, Some(kafka)) => {
            let id = policy_id.as_deref().ok_or_else(|| o.missing("a kafka source needs policy_id"))?;
            kafka_policy_source(kafka, id)?
        }
        _ => return Err(o.missing("give one of file, url or kafka")),
    };
    let verification = match (verifier, o.bool("allow_unsigned")?.unwrap_or(false)) {
        (Some(verifier), false) => Verification::Required(verifier),
        (None, true) => Verification::Disabled,
        (Some(_), true) => return Err(o.missing("allow_unsigned with trusted_keys: choose one")),
        (None, false) => {
            return Err(o.missing(
                "give trusted_keys (the security team's public keys), or allow_unsigned: true for development",
            ))
        }
    };
    let mut builder = ReloadingCodec::builder(source, verification);
    builder = match (o.duration("interval")?, o.bool("manual")?.unwrap_or(false)) {
        (_, true) => builder.manual(),
        (Some(interval), false) => builder.interval(interval),
        (None, false) => builder,
    };
    if let Some(id) = policy_id {
        builder = builder.policy_id(id);
    }
    if let Some(revision) = o.uint("min_revision")? {
        builder = builder.min_revision(revision);
    }
    o.finish()?;
    Ok(builder)
}

#[cfg(feature = "kafka")]
fn kafka_policy_source(value: &Value, policy_id: &str) -> Result<Box<dyn PolicySource>> {
    let mut o = Options::new("policy_source.kafka", value)?;
    let client = kafka_client(&mut o)?;
    let mut source = crate::policy::source::KafkaTopicSource::new(&client, policy_id)?;
    if let Some(topic) = o.string("topic")? {
        source = source.topic(&topic);
    }
    if let Some(timeout) = o.duration("timeout")? {
        source = source.timeout(timeout);
    }
    o.finish()?;
    Ok(Box::new(source))
}

#[cfg(not(feature = "kafka"))]
fn kafka_policy_source(_: &Value, _: &str) -> Result<Box<dyn PolicySource>> {
    Err(no_kafka("policy_source.kafka"))
}

/// A URL, or `{"url", "basic_auth": [user, password], "bearer_token", "ca_pem", "timeout",
/// "max_retries", "backoff", "cache_capacity", "latest_ttl"}`.
fn registry(value: &Value) -> Result<SchemaRegistry> {
    if let Value::String(url) = value {
        return SchemaRegistry::new(RegistryConfig::new(url.clone()));
    }
    let mut o = Options::new("registry", value)?;
    let url = o.string("url")?.ok_or_else(|| o.missing("url is required"))?;
    let mut config = RegistryConfig::new(url);
    config.basic_auth = match o.raw("basic_auth") {
        None => None,
        Some(Value::Array(pair)) if pair.len() == 2 && pair.iter().all(Value::is_string) => {
            Some((pair[0].as_str().unwrap_or_default().to_string(), pair[1].as_str().unwrap_or_default().to_string()))
        }
        Some(v) => return Err(o.bad("basic_auth", "a [user, password] pair", v)),
    };
    config.bearer_token = o.string("bearer_token")?;
    config.ca_pem = o.bytes("ca_pem")?;
    if let Some(t) = o.duration("timeout")? {
        config.timeout = t;
    }
    if let Some(n) = o.uint("max_retries")? {
        config.max_retries = n;
    }
    if let Some(b) = o.duration("backoff")? {
        config.backoff = b;
    }
    if let Some(n) = o.uint("cache_capacity")? {
        config.cache_capacity = n;
    }
    if let Some(t) = o.duration("latest_ttl")? {
        config.latest_ttl = t;
    }
    o.finish()?;
    SchemaRegistry::new(config)
}

/// `{id or GUID: {"type": "AVRO" | "PROTOBUF" | "JSON", "schema": text, "name": text,
/// "references": {name: text} | [[name, text], ...]}}`.
fn static_schemas(value: &Value) -> Result<StaticSchemas> {
    let Value::Object(all) = value else {
        return Err(Error::config(format!("schemas must be an object, not {}", type_name(value))));
    };
    let mut schemas = StaticSchemas::new();
    for (id, spec) in all {
        let schema_ref = match id.parse::<u32>() {
            Ok(n) => SchemaRef::Id(n),
            Err(_) => SchemaRef::Guid(id.to_ascii_lowercase()),
        };
        let mut o = Options::new(format!("schemas[{id}]"), spec)?;
        let schema_type = match o.string("type")?.map(|t| t.to_ascii_uppercase()).as_deref() {
            Some("AVRO") => SchemaType::Avro,
            Some("PROTOBUF") => SchemaType::Protobuf,
            Some("JSON") => SchemaType::Json,
            _ => return Err(o.missing("type must be \"AVRO\", \"PROTOBUF\" or \"JSON\"")),
        };
        let text = o.string("schema")?.ok_or_else(|| o.missing("schema (the schema text) is required"))?;
        let name = o.string("name")?.unwrap_or_else(|| format!("schema-{id}"));
        let references = match o.raw("references") {
            None => Vec::new(),
            Some(r) => {
                references(r).ok_or_else(|| o.bad("references", "an object or a list of [name, text] pairs", r))?
            }
        };
        o.finish()?;
        schemas = schemas.with(schema_ref, SchemaText { schema_type, name, text, references });
    }
    Ok(schemas)
}

fn references(value: &Value) -> Option<Vec<(String, String)>> {
    match value {
        Value::Object(m) => m.iter().map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect(),
        Value::Array(pairs) => pairs
            .iter()
            .map(|p| match p.as_array()?.as_slice() {
                [Value::String(name), Value::String(text)] => Some((name.clone(), text.clone())),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// `{"dek_max_uses": int, "dek_max_age": seconds, "dek_cache_capacity": int, "dek_cache_ttl":
/// seconds, "dek_denied_ttl": seconds, "dek_outage_extra_uses": int, "kms_retry_interval":
/// seconds}`; the codec checks the values when it is built.
fn limits(value: &Value) -> Result<Limits> {
    let mut o = Options::new("limits", value)?;
    let mut l = Limits::default();
    if let Some(n) = o.uint("dek_max_uses")? {
        l.dek_max_uses = n;
    }
    if let Some(d) = o.duration("dek_max_age")? {
        l.dek_max_age = d;
    }
    if let Some(n) = o.uint("dek_cache_capacity")? {
        l.dek_cache_capacity = n;
    }
    if let Some(d) = o.duration("dek_cache_ttl")? {
        l.dek_cache_ttl = d;
    }
    if let Some(d) = o.duration("dek_denied_ttl")? {
        l.dek_denied_ttl = d;
    }
    if let Some(n) = o.uint("dek_outage_extra_uses")? {
        l.dek_outage_extra_uses = n;
    }
    if let Some(d) = o.duration("kms_retry_interval")? {
        l.kms_retry_interval = d;
    }
    o.finish()?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use serde_json::json;

    const POLICY: &str = r#"{"fieldcrypt_policy": 1, "id": "t",
        "encrypt": [{"name": "r", "topics": ["t"], "fields": ["secret"], "key": "local://k"}],
        "profiles": {"ops": {"decrypt": [{"topics": ["*"]}]}}}"#;

    fn build(config: Value) -> Result<Codec> {
        codec(Policy::from_json(POLICY)?, &config)
    }

    #[test]
    fn a_full_local_configuration_round_trips() {
        let codec = build(json!({
            "kms": {"local": {"secrets": {"k": {"base64": "AAECAw=="}}}},
            "profile": "ops",
            "limits": {"dek_max_uses": 10, "dek_cache_ttl": 1.5},
        }))
        .unwrap();
        let r = codec.encrypt("t", None, Some(br#"{"secret":"s"}"#), &[] as &[crate::OwnedHeader]).unwrap();
        let back = codec.decrypt("t", None, r.value.as_deref(), &r.headers).unwrap();
        assert_eq!(back.value.as_deref(), Some(&br#"{"secret":"s"}"#[..]));
    }

    #[test]
    fn text_and_base64_secrets_are_the_same_key() {
        let a = build(json!({"kms": {"local": {"secrets": {"k": "abc"}}}})).unwrap();
        let b = build(json!({"kms": {"local": {"secrets": {"k": {"base64": "YWJj"}}}}})).unwrap();
        let r = a.encrypt("t", None, Some(br#"{"secret":"s"}"#), &[] as &[crate::OwnedHeader]).unwrap();
        assert!(b.decrypt("t", None, r.value.as_deref(), &r.headers).is_ok());
    }

    #[test]
    fn mistakes_are_config_errors_that_name_the_option_not_its_value() {
        for (config, needle) in [
            (json!({"kms": {"local": {}}, "limit": {}}), "\"limit\""),
            (json!({"kms": {"local": {"secret": {"k": "hunter2"}}}}), "\"secret\""),
            (json!({"kms": {"vault": {"token": 5}}}), "kms.vault.token must be a string"),
            (json!({"kms": {"vault": "hunter2"}}), "from_env"),
            (json!({"kms": {"local": {}}, "limits": {"dek_max_uses": -1}}), "limits.dek_max_uses"),
            (json!({"kms": {"local": {}}, "limits": {"dek_cache_ttl": "5"}}), "seconds"),
            (json!({"kms": {"local": {}}, "registry": "http://x", "schemas": {}}), "not both"),
            (json!({"kms": {"hsm": {}}}), "unknown client"),
            (json!({"kms": {"local": {}}, "registry": {"url": "http://x", "basic_auth": ["u"]}}), "basic_auth"),
            (json!({"kms": {"local": {}}, "schemas": {"1": {"type": "XML", "schema": ""}}}), "type must be"),
            (json!([1]), "configuration must be an object"),
        ] {
            let e = build(config.clone()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{config}");
            assert!(e.message().contains(needle), "{config}: {}", e.message());
            assert!(!e.message().contains("hunter2"), "{}", e.message());
        }
    }

    #[test]
    fn text_entry_point_reports_bad_json_and_bad_policies_by_kind() {
        assert_eq!(codec_from_json(POLICY, "{").unwrap_err().kind(), ErrorKind::Config);
        assert_eq!(codec_from_json("{", "").unwrap_err().kind(), ErrorKind::Policy);
        assert_eq!(
            codec_from_json(POLICY, r#"{"kms": {"local": {}}, "profile": "nobody"}"#).unwrap_err().kind(),
            ErrorKind::Config
        );
        assert!(codec_from_json(POLICY, r#"{"kms": {"local": {"secrets": {"k": "x"}}}}"#).is_ok());
    }

    fn signer() -> (crate::policy::SigningKey, String) {
        let key = crate::policy::SigningKey::generate().unwrap();
        let public = key.public_key().to_base64();
        (key, public)
    }

    fn policy_at(revision: u64, field: &str) -> String {
        format!(
            r#"{{"fieldcrypt_policy": 1, "id": "t", "revision": {revision},
            "encrypt": [{{"name": "r", "topics": ["t"], "fields": ["{field}"], "key": "local://k"}}]}}"#
        )
    }

    fn signed(text: &str, key: &crate::policy::SigningKey) -> String {
        crate::policy::SignedPolicy::sign(text, "sec", key).unwrap().to_json()
    }

    const LOCAL: &str = r#""kms": {"local": {"secrets": {"k": "abc"}}}"#;

    fn encrypts(codec: &ConfiguredCodec, field: &str) -> bool {
        let value = format!(r#"{{"{field}":"s"}}"#);
        let r = codec.codec().encrypt("t", None, Some(value.as_bytes()), &[] as &[crate::OwnedHeader]).unwrap();
        r.value.as_deref() != Some(value.as_bytes())
    }

    #[test]
    fn a_given_policy_must_be_signed_by_a_trusted_key_when_keys_are_configured() {
        let (key, public) = signer();
        let (other, _) = signer();
        let config = format!(r#"{{{LOCAL}, "trusted_keys": {{"sec": "{public}"}}}}"#);
        let ok = open(Some(&signed(&policy_at(1, "a"), &key)), &config).unwrap();
        assert_eq!(ok.status().signed_by.as_deref(), Some("sec"));
        assert!(encrypts(&ok, "a"));
        for bad in [policy_at(1, "a"), signed(&policy_at(1, "a"), &other)] {
            assert_eq!(open(Some(&bad), &config).unwrap_err().kind(), ErrorKind::Policy);
        }
        // Without trusted keys a bare policy is taken as given.
        let plain = open(Some(&policy_at(1, "a")), &format!("{{{LOCAL}}}")).unwrap();
        assert_eq!(plain.status().signed_by, None);
        assert_eq!(plain.reload_now().unwrap_err().kind(), ErrorKind::Config);
    }

    #[test]
    fn a_file_source_is_verified_and_reloaded() {
        let (key, public) = signer();
        let dir = std::env::temp_dir().join(format!("fieldcrypt-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policy.json");
        std::fs::write(&path, signed(&policy_at(1, "a"), &key)).unwrap();
        let config = json!({
            "kms": {"local": {"secrets": {"k": "abc"}}},
            "trusted_keys": {"sec": public},
            "policy_source": {"file": path, "manual": true, "policy_id": "t"},
        })
        .to_string();
        let codec = open(None, &config).unwrap();
        assert!(encrypts(&codec, "a") && !encrypts(&codec, "b"));
        std::fs::write(&path, signed(&policy_at(2, "b"), &key)).unwrap();
        assert_eq!(codec.reload_now().unwrap(), Reload::Loaded { policy_id: "t".into(), revision: 2 });
        assert!(encrypts(&codec, "b") && !encrypts(&codec, "a"));
        // Unsigned, then a rollback: refused, revision 2 stays.
        std::fs::write(&path, policy_at(3, "a")).unwrap();
        assert_eq!(codec.reload_now().unwrap_err().kind(), ErrorKind::Policy);
        std::fs::write(&path, signed(&policy_at(1, "a"), &key)).unwrap();
        assert_eq!(codec.reload_now().unwrap_err().kind(), ErrorKind::Policy);
        let status = codec.status();
        assert_eq!((status.revision, status.loads, status.rejections), (2, 2, 2));
        assert!(status.source.unwrap().contains("policy.json"));
        let json = codec.status().to_json();
        assert_eq!(json["last_error"]["kind"], "policy");
        assert_eq!(json["signed_by"], "sec");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn policy_source_mistakes_are_config_errors() {
        let (_, public) = signer();
        for (policy, config, needle) in [
            (None, json!({}), "no policy"),
            (
                Some(policy_at(1, "a")),
                json!({"policy_source": {"file": "p"}, "trusted_keys": {"sec": public}}),
                "not both",
            ),
            (None, json!({"policy_source": {"file": "p"}}), "trusted_keys"),
            (
                None,
                json!({"policy_source": {"file": "p", "allow_unsigned": true}, "trusted_keys": {"sec": public}}),
                "choose one",
            ),
            (None, json!({"policy_source": {"allow_unsigned": true}}), "one of file, url or kafka"),
            (None, json!({"policy_source": {"file": "p", "url": "https://x", "allow_unsigned": true}}), "one of file"),
            (None, json!({"policy_source": {"file": "p", "allow_unsigned": true, "timeout": 1}}), "\"timeout\""),
            (None, json!({"policy_source": {"url": "http://example.com/p", "allow_unsigned": true}}), "loopback"),
            (None, json!({"policy_source": {"kafka": {"bootstrap": "h:1"}, "allow_unsigned": true}}), "policy_id"),
            (None, json!({"trusted_keys": {}, "policy_source": {"file": "p"}}), "empty"),
            (None, json!({"trusted_keys": {"sec": "nope"}, "policy_source": {"file": "p"}}), "\"sec\""),
        ] {
            let e = open(policy.as_deref(), &config.to_string()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{config}: {e}");
            assert!(e.message().contains(needle), "{config}: {}", e.message());
        }
        // The plain builder does not silently ignore them.
        let e = codec(Policy::from_json(POLICY).unwrap(), &json!({"policy_source": {"file": "p"}})).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
    }
}
