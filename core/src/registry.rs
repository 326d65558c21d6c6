//! A Confluent-compatible Schema Registry client (Confluent Schema Registry, Apicurio's
//! `/apis/ccompat/v7`, Redpanda, Karapace): fetches schemas by id, GUID or subject/version,
//! resolves their references recursively, and caches what it fetched so each schema is fetched
//! once per process.
//!
//! The client is blocking, and every HTTP exchange runs on a thread of its own (see
//! [`crate::http`]), so a [`SchemaRegistry`] is safe to create, call and drop from sync code and
//! from inside a tokio runtime. Cache hits take no thread and no I/O.
//!
//! Errors name the URL path and HTTP status, never the host's credentials.

use std::collections::HashSet;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use reqwest::Url;
use serde::Deserialize;

use crate::error::{Error, ErrorKind, Result};
use crate::framing::SchemaRef;
use crate::http::{off_runtime, truncate, HttpClient, HttpOptions, Reply, SendError};
pub use crate::schema::SchemaType;
use crate::schema::{SchemaSource, SchemaText};

/// Longest chain of references followed before giving up.
const MAX_REFERENCE_DEPTH: usize = 64;
const ACCEPT: &str = "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json, application/json";

/// The registry could not be reached, timed out or answered 5xx (after the configured retries).
fn unavailable(message: String) -> Error {
    Error::retryable(ErrorKind::Registry, message)
}
/// The registry does not know a schema a record or caller names (not retryable).
fn not_known(message: String) -> Error {
    Error::new(ErrorKind::Registry, message)
}

/// The registry answered something this client cannot use (malformed body, unexpected status).
fn bad_response(message: String) -> Error {
    Error::new(ErrorKind::Registry, message)
}

/// How to reach a Schema Registry.
#[derive(Clone)]
pub struct RegistryConfig {
    /// Base URL of the Confluent-compatible API, e.g. `http://127.0.0.1:8081` or
    /// `http://127.0.0.1:8080/apis/ccompat/v7` for Apicurio. Credentials in the URL
    /// (`https://user:pass@host`) are moved to `basic_auth` when that is not set.
    pub url: String,
    /// HTTP basic authentication (user, password). Confluent Cloud: (API key, API secret).
    pub basic_auth: Option<(String, String)>,
    /// `Authorization: Bearer` token (OAuth). Mutually exclusive with `basic_auth`.
    pub bearer_token: Option<String>,
    /// PEM certificates trusted in addition to the system's roots (a private CA).
    pub ca_pem: Option<Vec<u8>>,
    /// Per-attempt limit for connecting, sending and reading a response.
    pub timeout: Duration,
    /// Retries after the first attempt on connection errors, timeouts and 5xx answers.
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further retry, with jitter (each wait is
    /// between half and all of the nominal value).
    pub backoff: Duration,
    /// Schemas (by id, GUID and subject/version) kept in memory; at least 1.
    pub cache_capacity: usize,
    /// How long the answer to a "latest version of subject" lookup is reused before asking the
    /// registry again (schemas by id or by explicit version never change and are kept until
    /// evicted). Zero asks every time.
    pub latest_ttl: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            url: "http://127.0.0.1:8081".to_string(),
            basic_auth: None,
            bearer_token: None,
            ca_pem: None,
            timeout: Duration::from_secs(10),
            max_retries: 3,
            backoff: Duration::from_millis(100),
            cache_capacity: 1000,
            latest_ttl: Duration::from_secs(60),
        }
    }
}

impl RegistryConfig {
    /// A default configuration for the registry at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RegistryConfig { url: url.into(), ..Default::default() }
    }
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &redact_url(&self.url))
            .field("basic_auth", &self.basic_auth.as_ref().map(|(user, _)| (user, REDACTED)))
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| REDACTED))
            .field("ca_pem", &self.ca_pem.as_ref().map(|pem| format!("<{} bytes>", pem.len())))
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .field("cache_capacity", &self.cache_capacity)
            .field("latest_ttl", &self.latest_ttl)
            .finish()
    }
}

/// `url` with any password in it replaced; unparsable URLs are not shown at all.
fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some(REDACTED));
            }
            u.to_string()
        }
        Err(_) => "<unparsable url>".to_string(),
    }
}

/// The API's name for a schema type: `AVRO`, `JSON` or `PROTOBUF`.
pub fn schema_type_name(schema_type: SchemaType) -> &'static str {
    match schema_type {
        SchemaType::Avro => "AVRO",
        SchemaType::Json => "JSON",
        SchemaType::Protobuf => "PROTOBUF",
    }
}

/// The `schemaType` of an API answer; a missing one means Avro.
fn parse_schema_type(name: Option<&str>) -> Result<SchemaType, String> {
    match name {
        None => Ok(SchemaType::Avro),
        Some(n) if n.eq_ignore_ascii_case("AVRO") => Ok(SchemaType::Avro),
        Some(n) if n.eq_ignore_ascii_case("JSON") => Ok(SchemaType::Json),
        Some(n) if n.eq_ignore_ascii_case("PROTOBUF") => Ok(SchemaType::Protobuf),
        Some(n) => Err(format!("unsupported schema type {:?}", truncate(n, 40))),
    }
}

/// A schema a registered schema depends on (a Protobuf import, an Avro named type, a JSON `$ref`),
/// with its text fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedReference {
    /// The name the referencing schema uses (`confluent/meta.proto`, `bench.Address`, a URL...).
    pub name: String,
    pub subject: String,
    /// The version of `subject` (the actual number, also when the reference asked for latest).
    pub version: i32,
    pub text: String,
    pub schema_type: SchemaType,
}

/// A schema as the registry holds it, with every schema it references, transitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredSchema {
    /// The global id (what the record framing `0x00 | u32 id` carries), when the registry said it.
    pub id: Option<i32>,
    /// The GUID (newer Confluent registries), when the registry said it.
    pub guid: Option<String>,
    /// Subject and version, when the schema was looked up by subject.
    pub subject: Option<String>,
    pub version: Option<i32>,
    pub schema_type: SchemaType,
    pub text: String,
    /// All references, transitively, in dependency order: every schema comes after the schemas it
    /// references, so compiling them in this order then `text` always finds its imports. Each
    /// name appears once.
    pub references: Vec<ResolvedReference>,
    /// Confluent data-contract `metadata` and `ruleSet`, when the registry keeps them
    /// (Apicurio accepts but does not store them).
    pub metadata: Option<serde_json::Value>,
    pub rule_set: Option<serde_json::Value>,
}

/// A Schema Registry client with a bounded cache. Cheap to clone (clones share the cache).
#[derive(Clone)]
pub struct SchemaRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    config: RegistryConfig,
    http: Http,
    cache: Mutex<LruCache<CacheKey, Cached>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CacheKey {
    Id(i32),
    Guid(String),
    Version(String, i32),
    Latest(String),
}

struct Cached {
    schema: Arc<RegisteredSchema>,
    /// Only "latest" entries expire.
    expires: Option<Instant>,
}

impl fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRegistry").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl SchemaRegistry {
    /// Checks the configuration and builds the HTTP client. No request is made.
    pub fn new(mut config: RegistryConfig) -> Result<Self> {
        let Some(capacity) = NonZeroUsize::new(config.cache_capacity) else {
            return Err(Error::config("registry cache_capacity must be at least 1"));
        };
        if config.timeout.is_zero() {
            return Err(Error::config("registry timeout must be greater than zero"));
        }
        let (base, url_auth) = parse_base_url(&config.url)?;
        if config.basic_auth.is_none() {
            config.basic_auth = url_auth;
        }
        if config.basic_auth.is_some() && config.bearer_token.is_some() {
            return Err(Error::config("registry: set basic_auth or bearer_token, not both"));
        }
        config.url = base.to_string();
        let http = off_runtime(|| Http::new(base, &config))?;
        Ok(SchemaRegistry { inner: Arc::new(Inner { config, http, cache: Mutex::new(LruCache::new(capacity)) }) })
    }

    /// The configuration in use (the URL without credentials).
    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// The schema with global id `id` (what a Confluent-framed record names).
    pub fn schema_by_id(&self, id: i32) -> Result<Arc<RegisteredSchema>> {
        let key = CacheKey::Id(id);
        if let Some(hit) = self.inner.cached(&key) {
            return Ok(hit);
        }
        off_runtime(|| self.inner.fetch_by_id(id))
    }

    /// The schema with the given GUID (Confluent Schema Registry 8+, `GET /schemas/guids/{guid}`).
    pub fn schema_by_guid(&self, guid: &str) -> Result<Arc<RegisteredSchema>> {
        let key = CacheKey::Guid(guid.to_string());
        if let Some(hit) = self.inner.cached(&key) {
            return Ok(hit);
        }
        if guid.is_empty() {
            return Err(Error::record("schema guid is empty"));
        }
        off_runtime(|| self.inner.fetch_by_guid(guid))
    }

    /// Version `version` of `subject`, or its latest version for `None` (reused for
    /// [`RegistryConfig::latest_ttl`]).
    pub fn schema_by_subject_version(&self, subject: &str, version: Option<i32>) -> Result<Arc<RegisteredSchema>> {
        let key = match version {
            Some(v) => CacheKey::Version(subject.to_string(), v),
            None => CacheKey::Latest(subject.to_string()),
        };
        if let Some(hit) = self.inner.cached(&key) {
            return Ok(hit);
        }
        if subject.is_empty() {
            return Err(Error::record("schema subject is empty"));
        }
        off_runtime(|| self.inner.fetch_by_subject(subject, version, &mut Vec::new()))
    }

    /// Forgets every cached schema.
    pub fn clear_cache(&self) {
        self.inner.lock_cache().clear();
    }
}

/// What the codec asks for: the schema a record names (by the id of its `0x00 | u32` prefix or the
/// GUID of its schema-id header), as text with its references.
impl SchemaSource for SchemaRegistry {
    fn schema(&self, schema: &SchemaRef) -> Result<Arc<SchemaText>> {
        let registered = match schema {
            SchemaRef::Id(id) => match i32::try_from(*id) {
                Ok(id) => self.schema_by_id(id)?,
                Err(_) => return Err(not_known(format!("{schema} is not known to the registry (ids are int32)"))),
            },
            SchemaRef::Guid(guid) => self.schema_by_guid(guid)?,
        };
        Ok(Arc::new(registered.to_schema_text()))
    }
}

impl RegisteredSchema {
    /// The schema as the format parsers take it: named by its subject when known, else its id.
    pub fn to_schema_text(&self) -> SchemaText {
        let name = match (&self.subject, self.id, &self.guid) {
            (Some(subject), _, _) => subject.clone(),
            (None, Some(id), _) => format!("schema id {id}"),
            (None, None, Some(guid)) => format!("schema guid {guid}"),
            (None, None, None) => "schema".to_string(),
        };
        SchemaText {
            schema_type: self.schema_type,
            name,
            text: self.text.clone(),
            references: self.references.iter().map(|r| (r.name.clone(), r.text.clone())).collect(),
        }
    }
}

impl Inner {
    fn lock_cache(&self) -> std::sync::MutexGuard<'_, LruCache<CacheKey, Cached>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached(&self, key: &CacheKey) -> Option<Arc<RegisteredSchema>> {
        let mut cache = self.lock_cache();
        let hit = cache.get(key)?;
        if hit.expires.is_some_and(|at| Instant::now() >= at) {
            cache.pop(key);
            return None;
        }
        Some(hit.schema.clone())
    }

    fn remember(&self, schema: &Arc<RegisteredSchema>, latest_of: Option<&str>) {
        let mut cache = self.lock_cache();
        let mut put = |key: CacheKey, expires: Option<Instant>| {
            cache.put(key, Cached { schema: schema.clone(), expires });
        };
        if let Some(id) = schema.id {
            put(CacheKey::Id(id), None);
        }
        if let Some(guid) = &schema.guid {
            put(CacheKey::Guid(guid.clone()), None);
        }
        if let (Some(subject), Some(version)) = (&schema.subject, schema.version) {
            put(CacheKey::Version(subject.clone(), version), None);
        }
        if let Some(subject) = latest_of {
            if !self.config.latest_ttl.is_zero() {
                put(CacheKey::Latest(subject.to_string()), Some(Instant::now() + self.config.latest_ttl));
            }
        }
    }

    fn fetch_by_id(&self, id: i32) -> Result<Arc<RegisteredSchema>> {
        let path = ["schemas", "ids", &id.to_string()];
        let body = match self.http.get(&path)? {
            Fetched::Found(body) => body,
            Fetched::NotFound(path) => {
                return Err(not_known(format!("schema id {id} is not known to the registry (GET {path}: 404)")))
            }
        };
        let raw = parse_schema_body(&body, &self.http.path_of(&path))?;
        let schema = Arc::new(self.resolve(raw, Some(id), None, &mut Vec::new())?);
        self.remember(&schema, None);
        Ok(schema)
    }

    fn fetch_by_guid(&self, guid: &str) -> Result<Arc<RegisteredSchema>> {
        let path = ["schemas", "guids", guid];
        let body = match self.http.get(&path)? {
            Fetched::Found(body) => body,
            Fetched::NotFound(path) => {
                return Err(not_known(format!(
                    "schema guid {:?} is not known to the registry (GET {path}: 404)",
                    truncate(guid, 80)
                )))
            }
        };
        let mut raw = parse_schema_body(&body, &self.http.path_of(&path))?;
        raw.guid.get_or_insert_with(|| guid.to_string());
        let schema = Arc::new(self.resolve(raw, None, None, &mut Vec::new())?);
        self.remember(&schema, None);
        Ok(schema)
    }

    /// `stack` holds the (subject, version) pairs being resolved above this one, to detect cycles.
    fn fetch_by_subject(
        &self,
        subject: &str,
        version: Option<i32>,
        stack: &mut Vec<(String, i32)>,
    ) -> Result<Arc<RegisteredSchema>> {
        let key = match version {
            Some(v) => CacheKey::Version(subject.to_string(), v),
            None => CacheKey::Latest(subject.to_string()),
        };
        if let Some(hit) = self.cached(&key) {
            return Ok(hit);
        }
        let version_segment = version.map_or_else(|| "latest".to_string(), |v| v.to_string());
        let path = ["subjects", subject, "versions", &version_segment];
        let body = match self.http.get(&path)? {
            Fetched::Found(body) => body,
            Fetched::NotFound(path) => {
                let which = version.map_or_else(|| "latest version".to_string(), |v| format!("version {v}"));
                return Err(not_known(format!(
                    "subject {:?} {which} is not known to the registry (GET {path}: 404)",
                    truncate(subject, 200)
                )));
            }
        };
        let mut raw = parse_schema_body(&body, &self.http.path_of(&path))?;
        let actual = raw
            .version
            .or(version.filter(|v| *v > 0))
            .ok_or_else(|| bad_response(format!("GET {}: the answer names no version", self.http.path_of(&path))))?;
        raw.version = Some(actual);
        raw.subject.get_or_insert_with(|| subject.to_string());
        let here = (subject.to_string(), actual);
        if stack.contains(&here) {
            let chain: Vec<String> = stack.iter().chain([&here]).map(|(s, v)| format!("{s}/{v}")).collect();
            return Err(Error::record(format!("schema references form a cycle: {}", chain.join(" -> "))));
        }
        if stack.len() >= MAX_REFERENCE_DEPTH {
            return Err(Error::record(format!("schema references nest deeper than {MAX_REFERENCE_DEPTH}")));
        }
        stack.push(here);
        let resolved = self.resolve(raw, None, Some(actual), stack);
        stack.pop();
        let schema = Arc::new(resolved?);
        self.remember(&schema, version.is_none().then_some(subject));
        Ok(schema)
    }

    /// Fetches the references of `raw` (recursively, through the cache) and flattens them.
    fn resolve(
        &self,
        raw: SchemaBody,
        id: Option<i32>,
        version: Option<i32>,
        stack: &mut Vec<(String, i32)>,
    ) -> Result<RegisteredSchema> {
        let schema_type = parse_schema_type(raw.schema_type.as_deref()).map_err(Error::record)?;
        let mut references: Vec<ResolvedReference> = Vec::new();
        let mut names: HashSet<String> = HashSet::new();
        for r in raw.references.unwrap_or_default() {
            // -1 is how some clients write "latest" in a reference.
            let wanted = (r.version > 0).then_some(r.version);
            let dep = self.fetch_by_subject(&r.subject, wanted, stack)?;
            let dep_version = dep.version.unwrap_or(r.version);
            for transitive in &dep.references {
                add_reference(&mut references, &mut names, transitive.clone())?;
            }
            add_reference(
                &mut references,
                &mut names,
                ResolvedReference {
                    name: r.name,
                    subject: r.subject,
                    version: dep_version,
                    text: dep.text.clone(),
                    schema_type: dep.schema_type,
                },
            )?;
        }
        Ok(RegisteredSchema {
            id: raw.id.or(id),
            guid: raw.guid,
            subject: raw.subject,
            version: raw.version.or(version),
            schema_type,
            text: raw.schema,
            references,
            metadata: raw.metadata,
            rule_set: raw.rule_set,
        })
    }
}

/// Appends `r` unless a reference of the same name is there; the same name for another schema
/// is an error (a Protobuf file set, for one, cannot hold two files of one name).
fn add_reference(out: &mut Vec<ResolvedReference>, names: &mut HashSet<String>, r: ResolvedReference) -> Result<()> {
    if names.contains(&r.name) {
        let first = out.iter().find(|x| x.name == r.name).expect("names mirrors out");
        if first.subject != r.subject || first.version != r.version {
            return Err(Error::record(format!(
                "schema reference {:?} names both {}/{} and {}/{}",
                r.name, first.subject, first.version, r.subject, r.version
            )));
        }
        return Ok(());
    }
    names.insert(r.name.clone());
    out.push(r);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Wire format

/// The body of `GET /schemas/ids/{id}`, `/schemas/guids/{guid}` and
/// `/subjects/{subject}/versions/{version}`.
#[derive(Debug, Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    references: Option<Vec<ReferenceBody>>,
    subject: Option<String>,
    version: Option<i32>,
    id: Option<i32>,
    guid: Option<String>,
    metadata: Option<serde_json::Value>,
    #[serde(rename = "ruleSet")]
    rule_set: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct ReferenceBody {
    name: String,
    subject: String,
    version: i32,
}

/// The registry's error body: `{"error_code": 40403, "message": "Schema 7 not found."}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error_code: Option<i64>,
    message: Option<String>,
}

fn parse_schema_body(body: &[u8], path: &str) -> Result<SchemaBody> {
    serde_json::from_slice(body).map_err(|e| {
        bad_response(format!(
            "GET {path}: the registry's answer is not a schema ({}: {})",
            e.classify_display(),
            truncate(&e.to_string(), 200)
        ))
    })
}

trait ClassifyDisplay {
    fn classify_display(&self) -> &'static str;
}

impl ClassifyDisplay for serde_json::Error {
    fn classify_display(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Data => "unexpected fields",
            serde_json::error::Category::Eof => "truncated JSON",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// The base URL without credentials, and the credentials it held.
fn parse_base_url(url: &str) -> Result<(Url, Option<(String, String)>)> {
    let mut base = Url::parse(url.trim())
        .map_err(|e| Error::config(format!("registry url {:?} is invalid: {e}", redact_url(url))))?;
    if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
        return Err(Error::config(format!(
            "registry url {:?} must be http:// or https:// with a host",
            redact_url(url)
        )));
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(Error::config(format!("registry url {:?} must not have a query or fragment", redact_url(url))));
    }
    let auth = if base.username().is_empty() {
        None
    } else {
        let decode = |s: &str| percent_decode(s).ok_or_else(|| Error::config("registry url credentials are not UTF-8"));
        Some((decode(base.username())?, decode(base.password().unwrap_or(""))?))
    };
    let _ = base.set_username("");
    let _ = base.set_password(None);
    // A trailing slash would add an empty segment before ours.
    if let Ok(mut segments) = base.path_segments_mut() {
        segments.pop_if_empty();
    }
    Ok((base, auth))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

enum Auth {
    None,
    Basic(String, String),
    Bearer(String),
}

struct Http {
    client: HttpClient,
    base: Url,
    auth: Auth,
}

enum Fetched {
    Found(Vec<u8>),
    /// A 404 with the registry's error body; holds the path asked for.
    NotFound(String),
}

impl Http {
    /// Must run off any async runtime (reqwest's blocking builder waits for its own thread).
    fn new(base: Url, config: &RegistryConfig) -> Result<Http> {
        let options = HttpOptions {
            timeout: config.timeout,
            max_retries: config.max_retries,
            backoff: config.backoff,
            ca_pem: config.ca_pem.clone(),
        };
        let client = HttpClient::new("registry", &options)?;
        let auth = match (&config.basic_auth, &config.bearer_token) {
            (Some((user, password)), _) => Auth::Basic(user.clone(), password.clone()),
            (None, Some(token)) => Auth::Bearer(token.clone()),
            (None, None) => Auth::None,
        };
        Ok(Http { client, base, auth })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("checked: http(s) URL with a host").extend(segments);
        url
    }

    fn path_of(&self, segments: &[&str]) -> String {
        self.url(segments).path().to_string()
    }

    /// GET with retries on connection errors, timeouts and 5xx.
    fn get(&self, segments: &[&str]) -> Result<Fetched> {
        let url = self.url(segments);
        let path = url.path().to_string();
        let reply = self.client.send(&|client| {
            let request = client.get(url.clone()).header(reqwest::header::ACCEPT, ACCEPT);
            match &self.auth {
                Auth::None => request,
                Auth::Basic(user, password) => request.basic_auth(user, Some(password)),
                Auth::Bearer(token) => request.bearer_auth(token),
            }
        });
        let Reply { status, body } = match reply {
            Ok(reply) => reply,
            Err(e @ SendError::Unavailable { .. }) => {
                return Err(unavailable(format!("schema registry unavailable: GET {path} {}", e.describe())))
            }
            Err(e @ SendError::Invalid(_)) => return Err(Error::config(format!("GET {path}: {}", e.describe()))),
            Err(e @ SendError::TooLarge { .. }) => return Err(bad_response(format!("GET {path}: {}", e.describe()))),
        };
        match status {
            200..=299 => Ok(Fetched::Found(body)),
            404 if is_registry_error(&body) => Ok(Fetched::NotFound(path)),
            404 => Err(Error::config(format!(
                "GET {path}: HTTP 404 without a Schema Registry error body: the URL does not lead to a \
                 Confluent-compatible API (Apicurio: .../apis/ccompat/v7), or the registry lacks this endpoint"
            ))),
            401 | 403 => Err(Error::config(format!(
                "GET {path}: HTTP {status} (the registry refused the configured credentials){}",
                registry_detail(&body)
            ))),
            429 | 500.. => {
                let last = format!("HTTP {status}{}", registry_detail(&body));
                let failed = SendError::Unavailable { attempts: self.client.attempts(), last };
                Err(unavailable(format!("schema registry unavailable: GET {path} {}", failed.describe())))
            }
            code => Err(bad_response(format!("GET {path}: unexpected HTTP {code}{}", registry_detail(&body)))),
        }
    }
}

fn is_registry_error(body: &[u8]) -> bool {
    serde_json::from_slice::<ErrorBody>(body).is_ok_and(|e| e.error_code.is_some())
}

/// ` (error_code 40403: Schema 7 not found.)` from a registry error body, or nothing.
fn registry_detail(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error_code: Some(code), message }) => {
            format!(" (error_code {code}: {})", truncate(message.as_deref().unwrap_or(""), 200))
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};

    // ---- a tiny HTTP server: answers each request with the handler's (status, body) ----

    type Handler = dyn Fn(&str) -> (u16, String) + Send + Sync;
    /// (path, header lines) of each request served.
    type Requests = Mutex<Vec<(String, Vec<String>)>>;

    struct Stub {
        url: String,
        requests: Arc<Requests>,
    }

    impl Stub {
        fn start(handler: impl Fn(&str) -> (u16, String) + Send + Sync + 'static) -> Stub {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let requests = Arc::new(Mutex::new(Vec::new()));
            let seen = requests.clone();
            let handler: Arc<Handler> = Arc::new(handler);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let (seen, handler) = (seen.clone(), handler.clone());
                    std::thread::spawn(move || serve(stream, &seen, &*handler));
                }
            });
            Stub { url, requests }
        }

        fn paths(&self) -> Vec<String> {
            self.requests.lock().unwrap().iter().map(|(p, _)| p.clone()).collect()
        }

        fn count(&self, path: &str) -> usize {
            self.paths().iter().filter(|p| *p == path).count()
        }

        fn registry(&self) -> SchemaRegistry {
            SchemaRegistry::new(RegistryConfig { backoff: Duration::from_millis(5), ..RegistryConfig::new(&self.url) })
                .unwrap()
        }
    }

    fn serve(stream: TcpStream, seen: &Requests, handler: &Handler) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            headers.push(h.trim_end().to_string());
        }
        seen.lock().unwrap().push((path.clone(), headers));
        let (status, body) = handler(&path);
        let mut stream = stream;
        let _ = write!(
            stream,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }

    fn schema_json(text: &str, schema_type: Option<&str>, refs: &[(&str, &str, i32)]) -> serde_json::Value {
        let mut v = serde_json::json!({ "schema": text });
        if let Some(t) = schema_type {
            v["schemaType"] = t.into();
        }
        if !refs.is_empty() {
            v["references"] = refs
                .iter()
                .map(|(name, subject, version)| serde_json::json!({"name": name, "subject": subject, "version": version}))
                .collect();
        }
        v
    }

    fn version_json(subject: &str, version: i32, id: i32, text: &str, refs: &[(&str, &str, i32)]) -> String {
        let mut v = schema_json(text, Some("PROTOBUF"), refs);
        v["subject"] = subject.into();
        v["version"] = version.into();
        v["id"] = id.into();
        v.to_string()
    }

    const NOT_FOUND: &str = r#"{"error_code":40403,"message":"Schema not found."}"#;

    // ---- configuration ----

    #[test]
    fn debug_redacts_secrets() {
        let config = RegistryConfig {
            url: "https://key:url-secret@registry.example:8081/base".into(),
            basic_auth: Some(("api-key".into(), "s3cret-pass".into())),
            bearer_token: Some("t0ken-value".into()),
            ca_pem: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
            ..Default::default()
        };
        let text = format!("{config:?}");
        for secret in ["url-secret", "s3cret-pass", "t0ken-value", "BEGIN"] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
        assert!(text.contains("api-key") && text.contains(REDACTED) && text.contains("registry.example"), "{text}");
    }

    #[test]
    fn url_credentials_move_to_basic_auth_and_out_of_the_url() {
        let registry =
            SchemaRegistry::new(RegistryConfig::new("http://us%40er:p%3Ass@127.0.0.1:1/apis/ccompat/v7/")).unwrap();
        assert_eq!(registry.config().basic_auth, Some(("us@er".to_string(), "p:ss".to_string())));
        assert_eq!(registry.config().url, "http://127.0.0.1:1/apis/ccompat/v7");
        assert!(!format!("{registry:?}").contains("p:ss"));
    }

    #[test]
    fn bad_configs_are_config_errors() {
        let bad = [
            RegistryConfig::new("not a url"),
            RegistryConfig::new("ftp://host/x"),
            RegistryConfig::new("http://host/x?q=1"),
            RegistryConfig { cache_capacity: 0, ..Default::default() },
            RegistryConfig { timeout: Duration::ZERO, ..Default::default() },
            RegistryConfig {
                basic_auth: Some(("u".into(), "p".into())),
                bearer_token: Some("t".into()),
                ..Default::default()
            },
            RegistryConfig { ca_pem: Some(b"garbage".to_vec()), ..Default::default() },
        ];
        for config in bad {
            let shown = format!("{config:?}");
            let err = SchemaRegistry::new(config).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{shown}: {err}");
            assert!(!err.is_retryable());
        }
    }

    #[test]
    fn urls_are_built_segment_by_segment() {
        for (base, want) in [
            ("http://h:1", "/subjects/confluent%2Fmeta.proto/versions/latest"),
            ("http://h:1/", "/subjects/confluent%2Fmeta.proto/versions/latest"),
            ("http://h:1/apis/ccompat/v7", "/apis/ccompat/v7/subjects/confluent%2Fmeta.proto/versions/latest"),
            ("http://h:1/apis/ccompat/v7/", "/apis/ccompat/v7/subjects/confluent%2Fmeta.proto/versions/latest"),
        ] {
            let (url, _) = parse_base_url(base).unwrap();
            let http = off_runtime(|| Http::new(url, &RegistryConfig::default())).unwrap();
            assert_eq!(http.path_of(&["subjects", "confluent/meta.proto", "versions", "latest"]), want, "{base}");
        }
        let (url, _) = parse_base_url("http://h:1/x").unwrap();
        let http = off_runtime(|| Http::new(url, &RegistryConfig::default())).unwrap();
        assert_eq!(http.path_of(&["subjects", "a b?#%", "versions", "1"]), "/x/subjects/a%20b%3F%23%25/versions/1");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b%3a").as_deref(), Some("a@b:"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%4").as_deref(), None);
        assert_eq!(percent_decode("bad%zz").as_deref(), None);
        assert_eq!(percent_decode("%ff").as_deref(), None);
    }

    // ---- parsing ----

    #[test]
    fn parses_the_three_kinds_of_body() {
        let by_id = br#"{"schema":"{\"type\":\"string\"}"}"#;
        let b = parse_schema_body(by_id, "/p").unwrap();
        assert_eq!(parse_schema_type(b.schema_type.as_deref()).unwrap(), SchemaType::Avro);
        assert!(b.references.is_none() && b.id.is_none());

        let proto = br#"{"schema":"syntax = \"proto3\";","schemaType":"PROTOBUF",
            "references":[{"name":"confluent/meta.proto","subject":"confluent/meta.proto","version":1}],
            "guid":"0f2c-guid","ruleSet":{"domainRules":[{"type":"ENCRYPT","tags":["PII"]}]},
            "metadata":{"properties":{"owner":"sec"}},"someFutureField":true}"#;
        let b = parse_schema_body(proto, "/p").unwrap();
        assert_eq!(parse_schema_type(b.schema_type.as_deref()).unwrap(), SchemaType::Protobuf);
        let refs = b.references.unwrap();
        assert_eq!(
            (refs[0].name.as_str(), refs[0].subject.as_str(), refs[0].version),
            ("confluent/meta.proto", "confluent/meta.proto", 1)
        );
        assert_eq!(b.guid.as_deref(), Some("0f2c-guid"));
        assert_eq!(b.rule_set.unwrap()["domainRules"][0]["type"], "ENCRYPT");

        let version =
            br#"{"subject":"payment-value","version":3,"id":7,"schemaType":"JSON","schema":"{}","references":null}"#;
        let b = parse_schema_body(version, "/p").unwrap();
        assert_eq!((b.subject.as_deref(), b.version, b.id), (Some("payment-value"), Some(3), Some(7)));
        assert_eq!(parse_schema_type(b.schema_type.as_deref()).unwrap(), SchemaType::Json);

        assert!(parse_schema_type(Some("XML")).is_err());
        assert_eq!(parse_schema_type(Some("protobuf")).unwrap(), SchemaType::Protobuf);
        for bad in [&b"not json"[..], br#"{"id":1}"#, br#"{"schema":1}"#, b""] {
            let err = parse_schema_body(bad, "/schemas/ids/1").unwrap_err();
            assert!(err.message().contains("/schemas/ids/1"), "{err}");
        }
    }

    #[test]
    fn registry_error_bodies() {
        assert!(is_registry_error(NOT_FOUND.as_bytes()));
        assert!(!is_registry_error(br#"{"detail":"RESTEASY003210: Could not find resource","status":404}"#));
        assert!(!is_registry_error(b""));
        assert_eq!(registry_detail(NOT_FOUND.as_bytes()), " (error_code 40403: Schema not found.)");
        assert_eq!(registry_detail(b"<html>"), "");
    }

    // ---- against the stub server ----

    #[test]
    fn fetches_once_then_serves_from_the_cache() {
        let stub = Stub::start(|path| match path {
            "/schemas/ids/7" => (200, schema_json("\"string\"", None, &[]).to_string()),
            _ => (404, NOT_FOUND.into()),
        });
        let registry = stub.registry();
        let a = registry.schema_by_id(7).unwrap();
        let b = registry.clone().schema_by_id(7).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!((a.id, a.schema_type, a.text.as_str()), (Some(7), SchemaType::Avro, "\"string\""));
        assert_eq!(stub.count("/schemas/ids/7"), 1);
        registry.clear_cache();
        registry.schema_by_id(7).unwrap();
        assert_eq!(stub.count("/schemas/ids/7"), 2);
    }

    #[test]
    fn cache_is_bounded() {
        let stub = Stub::start(|path| (200, schema_json(path, None, &[]).to_string()));
        let registry =
            SchemaRegistry::new(RegistryConfig { cache_capacity: 2, ..RegistryConfig::new(&stub.url) }).unwrap();
        for id in [1, 2, 3, 1] {
            registry.schema_by_id(id).unwrap();
        }
        // 1 was evicted by 3, so it was fetched twice.
        assert_eq!(stub.count("/schemas/ids/1"), 2);
        assert_eq!(registry.inner.lock_cache().len(), 2);
    }

    #[test]
    fn unknown_id_is_a_registry_error_without_retries() {
        let stub = Stub::start(|_| (404, NOT_FOUND.into()));
        let err = stub.registry().schema_by_id(42).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Registry);
        assert!(!err.is_retryable());
        assert!(
            err.message().contains("schema id 42 is not known") && err.message().contains("/schemas/ids/42"),
            "{err}"
        );
        assert_eq!(stub.count("/schemas/ids/42"), 1);
    }

    #[test]
    fn a_404_without_registry_body_means_a_wrong_url() {
        let stub = Stub::start(|_| (404, r#"{"detail":"Could not find resource"}"#.into()));
        let err = stub.registry().schema_by_id(1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.message().contains("ccompat"), "{err}");
    }

    #[test]
    fn client_errors_are_not_retried() {
        for status in [400, 401, 403, 422] {
            let stub = Stub::start(move |_| (status, r#"{"error_code":40101,"message":"nope"}"#.into()));
            let err = stub.registry().schema_by_id(1).unwrap_err();
            assert!(!err.is_retryable(), "{status}: {err}");
            assert!(err.message().contains(&format!("HTTP {status}")), "{err}");
            assert_eq!(stub.count("/schemas/ids/1"), 1, "{status}");
        }
    }

    #[test]
    fn server_errors_are_retried_then_succeed() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let stub = Stub::start(move |_| {
            if c.fetch_add(1, Ordering::SeqCst) < 2 {
                (503, r#"{"error_code":50301,"message":"busy"}"#.into())
            } else {
                (200, schema_json("{}", Some("JSON"), &[]).to_string())
            }
        });
        let schema = stub.registry().schema_by_id(5).unwrap();
        assert_eq!(schema.schema_type, SchemaType::Json);
        assert_eq!(stub.count("/schemas/ids/5"), 3);
    }

    #[test]
    fn server_errors_exhaust_the_retries() {
        let stub = Stub::start(|_| (500, r#"{"error_code":50001,"message":"boom"}"#.into()));
        let registry = SchemaRegistry::new(RegistryConfig {
            max_retries: 2,
            backoff: Duration::from_millis(1),
            ..RegistryConfig::new(format!("{}/apis/ccompat/v7", stub.url))
        })
        .unwrap();
        let err = registry.schema_by_id(9).unwrap_err();
        assert!(err.is_retryable());
        assert!(
            err.message().contains("/apis/ccompat/v7/schemas/ids/9") && err.message().contains("HTTP 500"),
            "{err}"
        );
        assert!(err.message().contains("3 times"), "{err}");
        assert_eq!(stub.count("/apis/ccompat/v7/schemas/ids/9"), 3);
    }

    #[test]
    fn references_are_resolved_in_dependency_order() {
        // payment -> (common, money); common -> meta; money -> meta  (a diamond on meta)
        let stub = Stub::start(|path| match path {
            "/schemas/ids/10" => (
                200,
                schema_json(
                    "payment",
                    Some("PROTOBUF"),
                    &[("common.proto", "common", 2), ("money.proto", "money", -1)],
                )
                .to_string(),
            ),
            "/subjects/common/versions/2" => {
                (200, version_json("common", 2, 3, "common", &[("meta.proto", "meta", 1)]))
            }
            "/subjects/money/versions/latest" => {
                (200, version_json("money", 4, 5, "money", &[("meta.proto", "meta", 1)]))
            }
            "/subjects/meta/versions/1" => (200, version_json("meta", 1, 1, "meta", &[])),
            _ => (404, NOT_FOUND.into()),
        });
        let registry = stub.registry();
        let schema = registry.schema_by_id(10).unwrap();
        let order: Vec<(&str, &str, i32)> =
            schema.references.iter().map(|r| (r.name.as_str(), r.text.as_str(), r.version)).collect();
        assert_eq!(order, [("meta.proto", "meta", 1), ("common.proto", "common", 2), ("money.proto", "money", 4)]);
        assert!(schema.references.iter().all(|r| r.schema_type == SchemaType::Protobuf));
        assert_eq!(stub.count("/subjects/meta/versions/1"), 1, "meta fetched once: {:?}", stub.paths());
        // the dependencies are cached too
        let common = registry.schema_by_subject_version("common", Some(2)).unwrap();
        assert_eq!(common.references.len(), 1);
        assert_eq!(registry.schema_by_id(3).unwrap(), common);
        assert_eq!(stub.count("/subjects/common/versions/2"), 1);
    }

    #[test]
    fn reference_cycles_are_detected() {
        let stub = Stub::start(|path| match path {
            "/schemas/ids/1" => (200, schema_json("root", Some("PROTOBUF"), &[("a.proto", "a", 1)]).to_string()),
            "/subjects/a/versions/1" => (200, version_json("a", 1, 2, "a", &[("b.proto", "b", 1)])),
            "/subjects/b/versions/1" => (200, version_json("b", 1, 3, "b", &[("a.proto", "a", 1)])),
            _ => (404, NOT_FOUND.into()),
        });
        let err = stub.registry().schema_by_id(1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Record);
        assert!(err.message().contains("cycle: a/1 -> b/1 -> a/1"), "{err}");
    }

    #[test]
    fn a_missing_reference_names_its_subject() {
        let stub = Stub::start(|path| match path {
            "/schemas/ids/1" => (200, schema_json("root", Some("PROTOBUF"), &[("gone.proto", "gone", 3)]).to_string()),
            _ => (404, r#"{"error_code":40401,"message":"Subject 'gone' not found."}"#.into()),
        });
        let err = stub.registry().schema_by_id(1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Registry);
        assert!(err.message().contains("\"gone\" version 3"), "{err}");
    }

    #[test]
    fn conflicting_reference_names_are_refused() {
        let stub = Stub::start(|path| match path {
            "/schemas/ids/1" => (200, schema_json("root", None, &[("x", "a", 1), ("x", "b", 1)]).to_string()),
            p if p.starts_with("/subjects/a/") => (200, version_json("a", 1, 2, "a", &[])),
            p if p.starts_with("/subjects/b/") => (200, version_json("b", 1, 3, "b", &[])),
            _ => (404, NOT_FOUND.into()),
        });
        let err = stub.registry().schema_by_id(1).unwrap_err();
        assert!(err.message().contains("\"x\" names both a/1 and b/1"), "{err}");
    }

    #[test]
    fn latest_is_reused_for_its_ttl_only() {
        let version = Arc::new(AtomicUsize::new(1));
        let v = version.clone();
        let stub = Stub::start(move |path| match path {
            "/subjects/s/versions/latest" => {
                let n = v.load(Ordering::SeqCst) as i32;
                (200, version_json("s", n, 100 + n, "t", &[]))
            }
            _ => (404, NOT_FOUND.into()),
        });
        let registry = SchemaRegistry::new(RegistryConfig {
            latest_ttl: Duration::from_millis(300),
            ..RegistryConfig::new(&stub.url)
        })
        .unwrap();
        assert_eq!(registry.schema_by_subject_version("s", None).unwrap().version, Some(1));
        version.store(2, Ordering::SeqCst);
        assert_eq!(registry.schema_by_subject_version("s", None).unwrap().version, Some(1));
        assert_eq!(stub.count("/subjects/s/versions/latest"), 1);
        // The version and the id it resolved to are cached without expiry.
        assert_eq!(registry.schema_by_subject_version("s", Some(1)).unwrap().id, Some(101));
        assert_eq!(registry.schema_by_id(101).unwrap().version, Some(1));
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(registry.schema_by_subject_version("s", None).unwrap().version, Some(2));
        assert_eq!(stub.count("/subjects/s/versions/latest"), 2);
        assert_eq!(stub.paths().len(), 2, "{:?}", stub.paths());
    }

    #[test]
    fn credentials_are_sent_and_never_shown() {
        let stub = Stub::start(|_| (500, "{}".into()));
        let registry = SchemaRegistry::new(RegistryConfig {
            basic_auth: Some(("alice".into(), "wonder-land".into())),
            max_retries: 0,
            ..RegistryConfig::new(&stub.url)
        })
        .unwrap();
        let err = registry.schema_by_id(1).unwrap_err();
        assert!(!err.to_string().contains("wonder") && !format!("{registry:?}").contains("wonder"));
        let headers = stub.requests.lock().unwrap()[0].1.clone();
        // base64("alice:wonder-land")
        assert!(
            headers.iter().any(|h| h.eq_ignore_ascii_case("authorization: Basic YWxpY2U6d29uZGVyLWxhbmQ=")),
            "{headers:?}"
        );

        let stub = Stub::start(|_| (200, schema_json("{}", None, &[]).to_string()));
        let registry = SchemaRegistry::new(RegistryConfig {
            bearer_token: Some("tok-123".into()),
            ..RegistryConfig::new(&stub.url)
        })
        .unwrap();
        registry.schema_by_id(1).unwrap();
        let headers = stub.requests.lock().unwrap()[0].1.clone();
        assert!(headers.iter().any(|h| h.eq_ignore_ascii_case("authorization: Bearer tok-123")), "{headers:?}");
    }

    #[test]
    fn unreachable_registry_is_retryable() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let registry = SchemaRegistry::new(RegistryConfig {
            max_retries: 2,
            backoff: Duration::from_millis(20),
            ..RegistryConfig::new(format!("http://127.0.0.1:{port}"))
        })
        .unwrap();
        let started = Instant::now();
        let err = registry.schema_by_subject_version("x", Some(1)).unwrap_err();
        let elapsed = started.elapsed();
        assert!(err.is_retryable(), "{err}");
        assert!(err.message().contains("cannot connect") && err.message().contains("3 times"), "{err}");
        // waits of 10..20 ms then 20..40 ms
        assert!(elapsed >= Duration::from_millis(30), "{elapsed:?}");
    }

    #[test]
    fn a_registry_built_and_dropped_inside_tokio_does_not_panic() {
        let stub = Stub::start(|_| (200, schema_json("{}", None, &[]).to_string()));
        for flavor in ["current_thread", "multi_thread"] {
            let rt = match flavor {
                "current_thread" => tokio::runtime::Builder::new_current_thread().enable_all().build(),
                _ => tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build(),
            }
            .unwrap();
            let url = stub.url.clone();
            rt.block_on(async move {
                let registry = SchemaRegistry::new(RegistryConfig::new(url)).unwrap();
                let schema = registry.schema_by_id(1).unwrap();
                assert_eq!(schema.schema_type, SchemaType::Avro);
                let task = tokio::spawn(async move { registry.schema_by_id(2).map(|s| s.text.clone()) });
                assert_eq!(task.await.unwrap().unwrap(), "{}");
            });
        }
    }

    #[tokio::test]
    async fn usable_from_a_tokio_test() {
        let stub = Stub::start(|_| (200, schema_json("{}", Some("JSON"), &[]).to_string()));
        let registry = SchemaRegistry::new(RegistryConfig::new(&stub.url)).unwrap();
        assert_eq!(registry.schema_by_id(3).unwrap().schema_type, SchemaType::Json);
        drop(registry);
    }
}
