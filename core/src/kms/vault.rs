//! HashiCorp Vault / OpenBao Transit client: data keys are wrapped with `transit/encrypt` and
//! unwrapped with `transit/decrypt` under a named Transit key; the key never leaves the server.
//!
//! KEK URI: `vault://HOST[:PORT]/MOUNT/keys/NAME`, e.g. `vault://vault.internal:8200/transit/keys/pii`.
//! `MOUNT` is the Transit mount path and may hold slashes (`secret/transit`); the last two
//! segments are always `keys/NAME`. The port defaults to 8200. The client speaks HTTPS to
//! `HOST:PORT`; plain HTTP is used only when [`VaultConfig::plain_http`] is set **and** the host
//! is a loopback address (a dev server on the same machine).
//!
//! Binding: every wrap sends `associated_data` = `fieldcrypt:v1:<hex DEK id>:<algorithm>`, so a
//! wrapped DEK only unwraps for the DEK id and algorithm it was made for. Transit accepts
//! associated data for its AEAD key types (`aes256-gcm96`, `aes128-gcm96`, `chacha20-poly1305`).
//!
//! Versions: Transit's ciphertext is `vault:vN:<base64>`; `N` is the KEK version recorded in the
//! fieldcrypt header and the whole string is the wrapped DEK. Unwrap checks that the two agree.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use reqwest::header::HeaderValue;
use serde::Deserialize;
use zeroize::{Zeroize, Zeroizing};

use super::token::{transport_error, TokenCache};
use super::{KekUri, Kms, WrapContext, WrappedDek};
use crate::error::{Error, ErrorKind, Result};
use crate::http::{off_runtime, truncate, HttpClient, HttpOptions, Reply};

/// Vault's default API port, used when a KEK URI names none.
pub const VAULT_DEFAULT_PORT: u16 = 8200;
/// The AppRole auth mount used by [`VaultAuth::approle`].
pub const VAULT_DEFAULT_APPROLE_MOUNT: &str = "approle";
/// An AppRole token is replaced once this fraction of its lease has passed.
const RENEW_AT_FRACTION: f64 = 0.8;
/// The label whose Transit HMAC seeds deterministic keys.
const DETERMINISTIC_LABEL: &[u8] = b"fieldcrypt:vault-deterministic:v1";

/// How the client authenticates to Vault.
#[derive(Clone)]
pub enum VaultAuth {
    /// A Vault token (`X-Vault-Token`), used as is; Vault's own renewal (an agent, a sidecar) keeps
    /// it alive.
    Token(String),
    /// AppRole: the client logs in with `POST /v1/auth/<mount>/login`, caches the client token
    /// (renewing it by a new login once 80% of its lease has passed), and logs in again once when
    /// Vault answers 403 (token revoked or expired) before reporting `AccessDenied`.
    AppRole { role_id: String, secret_id: String, mount: String },
}

impl VaultAuth {
    pub fn token(token: impl Into<String>) -> VaultAuth {
        VaultAuth::Token(token.into())
    }

    /// AppRole credentials for the auth mount `approle`.
    pub fn approle(role_id: impl Into<String>, secret_id: impl Into<String>) -> VaultAuth {
        VaultAuth::AppRole {
            role_id: role_id.into(),
            secret_id: secret_id.into(),
            mount: VAULT_DEFAULT_APPROLE_MOUNT.to_string(),
        }
    }

    /// The strings that must never appear in output.
    fn secrets(&self) -> Vec<&str> {
        match self {
            VaultAuth::Token(t) => vec![t.as_str()],
            VaultAuth::AppRole { role_id, secret_id, .. } => vec![role_id.as_str(), secret_id.as_str()],
        }
    }
}

impl Drop for VaultAuth {
    fn drop(&mut self) {
        match self {
            VaultAuth::Token(t) => t.zeroize(),
            VaultAuth::AppRole { role_id, secret_id, .. } => {
                role_id.zeroize();
                secret_id.zeroize();
            }
        }
    }
}

impl fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultAuth::Token(_) => f.write_str("Token(<redacted>)"),
            VaultAuth::AppRole { mount, .. } => f
                .debug_struct("AppRole")
                .field("role_id", &"<redacted>")
                .field("secret_id", &"<redacted>")
                .field("mount", mount)
                .finish(),
        }
    }
}

/// Configuration of a [`VaultKms`]. The server is named by each KEK URI; this holds how to talk
/// to it.
#[derive(Clone)]
pub struct VaultConfig {
    pub auth: VaultAuth,
    /// Vault Enterprise / OpenBao namespace, sent as `X-Vault-Namespace` on every request
    /// (login included), e.g. `team-a` or `team-a/prod`.
    pub namespace: Option<String>,
    /// Timeouts, retries and extra trusted CAs (`ca_pem`, e.g. from `VAULT_CACERT`).
    pub http: HttpOptions,
    /// Use `http://` instead of `https://` — only for hosts that are loopback addresses
    /// (`127.0.0.0/8`, `::1`, `localhost`), i.e. a dev server on this machine. A KEK URI naming
    /// any other host is refused with a `Config` error while this is set: credentials and data
    /// keys never cross a network in clear text. Default `false`.
    pub plain_http: bool,
}

impl VaultConfig {
    /// HTTPS, no namespace, default HTTP options.
    pub fn new(auth: VaultAuth) -> VaultConfig {
        VaultConfig { auth, namespace: None, http: HttpOptions::default(), plain_http: false }
    }

    /// Reads Vault's usual environment variables:
    /// - `VAULT_ROLE_ID` + `VAULT_SECRET_ID` (AppRole; mount `VAULT_APPROLE_MOUNT`, default
    ///   `approle`), else `VAULT_TOKEN`; one of them is required;
    /// - `VAULT_NAMESPACE` (optional);
    /// - `VAULT_CACERT`: a PEM file of CAs to trust besides the system roots (optional);
    /// - `VAULT_ADDR`: only its scheme is used — `http://` sets [`VaultConfig::plain_http`]
    ///   (still loopback hosts only); the server itself comes from each KEK URI.
    pub fn from_env() -> Result<VaultConfig> {
        VaultConfig::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<VaultConfig> {
        let get = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let auth =
            match (get("VAULT_ROLE_ID"), get("VAULT_SECRET_ID"), get("VAULT_TOKEN")) {
                (Some(role_id), Some(secret_id), _) => VaultAuth::AppRole {
                    role_id,
                    secret_id,
                    mount: get("VAULT_APPROLE_MOUNT").unwrap_or_else(|| VAULT_DEFAULT_APPROLE_MOUNT.to_string()),
                },
                (Some(_), None, _) | (None, Some(_), _) => {
                    return Err(Error::config("vault: VAULT_ROLE_ID and VAULT_SECRET_ID must be set together"))
                }
                (None, None, Some(token)) => VaultAuth::Token(token),
                (None, None, None) => return Err(Error::config(
                    "vault: no credentials in the environment (set VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID)",
                )),
            };
        let mut config = VaultConfig::new(auth);
        config.namespace = get("VAULT_NAMESPACE");
        if let Some(path) = get("VAULT_CACERT") {
            let pem = std::fs::read(&path)
                .map_err(|e| Error::config(format!("vault: cannot read VAULT_CACERT file {path}: {e}")))?;
            config.http.ca_pem = Some(pem);
        }
        config.plain_http = get("VAULT_ADDR").is_some_and(|a| a.to_ascii_lowercase().starts_with("http://"));
        Ok(config)
    }
}

impl fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultConfig")
            .field("auth", &self.auth)
            .field("namespace", &self.namespace)
            .field("http", &self.http)
            .field("plain_http", &self.plain_http)
            .finish()
    }
}

/// A Vault / OpenBao Transit client serving `vault://` KEK URIs. Share one per process: it pools
/// connections and caches its AppRole token per server.
pub struct VaultKms {
    auth: VaultAuth,
    namespace: Option<HeaderValue>,
    namespace_text: Option<String>,
    plain_http: bool,
    http: HttpClient,
    /// AppRole client tokens by server base URL, replaced by a new login once due or refused.
    tokens: TokenCache,
}

impl fmt::Debug for VaultKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultKms")
            .field("auth", &self.auth)
            .field("namespace", &self.namespace_text)
            .field("plain_http", &self.plain_http)
            .finish()
    }
}

/// Where a KEK URI points: the server and the Transit key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// `https://host:port` (or `http://` for a loopback dev server).
    base: String,
    mount: String,
    name: String,
}

impl Target {
    fn path(&self, op: &str) -> String {
        format!("{}/{op}/{}", self.mount, self.name)
    }
}

/// The Transit operation a request makes, for error messages.
#[derive(Clone, Copy)]
enum Op {
    Encrypt,
    Decrypt,
    Hmac,
}

impl Op {
    fn path(self) -> &'static str {
        match self {
            Op::Encrypt => "encrypt",
            Op::Decrypt => "decrypt",
            Op::Hmac => "hmac",
        }
    }
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: Option<T>,
}

#[derive(Deserialize)]
struct EncryptData {
    ciphertext: String,
    #[serde(default)]
    key_version: Option<u64>,
}

#[derive(Deserialize)]
struct DecryptData {
    plaintext: String,
}

#[derive(Deserialize)]
struct HmacData {
    hmac: String,
}

#[derive(Deserialize)]
struct LoginEnvelope {
    auth: Option<LoginAuth>,
}

#[derive(Deserialize)]
struct LoginAuth {
    client_token: String,
    #[serde(default)]
    lease_duration: u64,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

impl VaultKms {
    /// Validates the configuration and builds the HTTP client (no request is made: AppRole logs in
    /// on first use, since the server is named by each KEK URI).
    pub fn new(config: VaultConfig) -> Result<VaultKms> {
        match &config.auth {
            VaultAuth::Token(t) => {
                if t.trim().is_empty() {
                    return Err(Error::config("vault: the token is empty"));
                }
                header_value(t, "token")?;
            }
            VaultAuth::AppRole { role_id, secret_id, mount } => {
                if role_id.trim().is_empty() || secret_id.trim().is_empty() {
                    return Err(Error::config("vault: AppRole role_id and secret_id must not be empty"));
                }
                let mount = mount.trim_matches('/');
                if mount.is_empty() || !mount.split('/').all(valid_segment) {
                    return Err(Error::config(format!("vault: AppRole mount {mount:?} is not a valid path")));
                }
            }
        }
        let namespace_text = match config.namespace.as_deref().map(|n| n.trim().trim_matches('/')) {
            None | Some("") => None,
            Some(ns) => {
                if !ns.split('/').all(valid_segment) {
                    return Err(Error::config(format!("vault: namespace {ns:?} is not a valid namespace path")));
                }
                Some(ns.to_string())
            }
        };
        let namespace = namespace_text.as_deref().map(|ns| header_value(ns, "namespace")).transpose()?;
        let http = off_runtime(|| HttpClient::new("vault", &config.http))?;
        let mut auth = config.auth.clone();
        if let VaultAuth::AppRole { mount, .. } = &mut auth {
            *mount = mount.trim_matches('/').to_string();
        }
        Ok(VaultKms { auth, namespace, namespace_text, plain_http: config.plain_http, http, tokens: TokenCache::new() })
    }

    /// The server and key a `vault://HOST[:PORT]/MOUNT/keys/NAME` URI names.
    fn target(&self, kek: &KekUri) -> Result<Target> {
        parse_target(kek, self.plain_http)
    }

    /// `text` with every credential replaced, for error messages made of server answers.
    fn redact(&self, text: &str) -> String {
        self.tokens.redact(text, self.auth.secrets())
    }

    /// One POST with the client's headers; transport failures become errors naming `what`.
    fn post(&self, url: &str, token: Option<&str>, body: &[u8], what: &dyn Fn() -> String) -> Result<Reply> {
        let token = token.map(|t| header_value(t, "token")).transpose()?;
        let result = self.http.send(&|c| {
            let mut request = c
                .post(url)
                .header("Content-Type", "application/json")
                .header("X-Vault-Request", "true")
                .body(body.to_vec());
            if let Some(t) = &token {
                request = request.header("X-Vault-Token", t.clone());
            }
            if let Some(ns) = &self.namespace {
                request = request.header("X-Vault-Namespace", ns.clone());
            }
            request
        });
        result.map_err(|e| transport_error(&what(), &e, |text| self.redact(text)))
    }

    /// The AppRole token for `base` (logging in if there is none, it is due for renewal, or it is
    /// the one of generation `stale` that Vault refused) and its generation.
    fn approle_token(&self, base: &str, kek: &KekUri, stale: Option<u64>) -> Result<(Zeroizing<String>, u64)> {
        self.tokens.get_or_fetch(base, stale, || self.approle_login(base, kek))
    }

    /// `POST /v1/auth/<mount>/login` at `base`: a client token and when to renew it.
    fn approle_login(&self, base: &str, kek: &KekUri) -> Result<(Zeroizing<String>, Option<Instant>)> {
        let VaultAuth::AppRole { role_id, secret_id, mount } = &self.auth else {
            unreachable!("approle_login is only called for AppRole auth")
        };
        let url = format!("{base}/v1/auth/{mount}/login");
        let body = Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({"role_id": role_id, "secret_id": secret_id}))
                .map_err(|e| Error::config(format!("vault: cannot encode the AppRole login: {e}")))?,
        );
        let what = || format!("Vault AppRole login (mount {mount:?}) at {base} for KEK {kek}");
        let reply = self.post(&url, None, &body, &what)?;
        let mut reply_body = Zeroizing::new(reply.body);
        let status = reply.status;
        if status != 200 {
            let detail = self.redact(&error_text(&reply_body));
            let message = format!("{} failed: HTTP {status}: {detail}", what());
            return Err(match status {
                400 | 401 | 403 => Error::new(ErrorKind::AccessDenied, message),
                404 => Error::config(message),
                429 | 412 | 500.. => Error::retryable(ErrorKind::Kms, message),
                _ => Error::new(ErrorKind::Kms, message),
            });
        }
        let parsed: LoginEnvelope = serde_json::from_slice(&reply_body)
            .map_err(|e| Error::new(ErrorKind::Kms, format!("{} returned an unreadable answer: {e}", what())))?;
        reply_body.zeroize();
        let Some(auth) = parsed.auth else {
            return Err(Error::new(ErrorKind::Kms, format!("{} returned no client token", what())));
        };
        let token = Zeroizing::new(auth.client_token);
        if token.is_empty() {
            return Err(Error::new(ErrorKind::Kms, format!("{} returned an empty client token", what())));
        }
        let renew_at = (auth.lease_duration > 0)
            .then(|| Instant::now() + Duration::from_secs(auth.lease_duration).mul_f64(RENEW_AT_FRACTION));
        tracing::debug!(
            target: "fieldcrypt::kms",
            server = base,
            mount = %mount,
            lease_s = auth.lease_duration,
            "vault AppRole login"
        );
        Ok((token, renew_at))
    }

    /// Calls Transit `op` on the key `target` names and returns the `data` of its answer.
    fn transit<T: for<'de> Deserialize<'de>>(&self, kek: &KekUri, target: &Target, op: Op, body: &[u8]) -> Result<T> {
        let url = format!("{}/v1/{}", target.base, target.path(op.path()));
        let what = || format!("Vault transit {} with KEK {kek}", op.path());
        let reply = match &self.auth {
            VaultAuth::Token(token) => self.post(&url, Some(token), body, &what)?,
            VaultAuth::AppRole { .. } => {
                let (token, generation) = self.approle_token(&target.base, kek, None)?;
                let reply = self.post(&url, Some(&token), body, &what)?;
                if reply.status == 403 {
                    // Revoked or expired token: one new login, one more try.
                    let (token, _) = self.approle_token(&target.base, kek, Some(generation))?;
                    self.post(&url, Some(&token), body, &what)?
                } else {
                    reply
                }
            }
        };
        let mut reply_body = Zeroizing::new(reply.body);
        if reply.status != 200 {
            return Err(self.classify(&what(), reply.status, &error_text(&reply_body)));
        }
        let parsed: Envelope<T> = serde_json::from_slice(&reply_body)
            .map_err(|e| Error::new(ErrorKind::Kms, format!("{} returned an unreadable answer: {e}", what())))?;
        reply_body.zeroize();
        parsed.data.ok_or_else(|| Error::new(ErrorKind::Kms, format!("{} returned no data", what())))
    }

    /// The error for a non-200 Transit answer.
    fn classify(&self, what: &str, status: u16, detail: &str) -> Error {
        let detail = self.redact(detail);
        let message = format!("{what} failed: HTTP {status}: {detail}");
        let lower = detail.to_ascii_lowercase();
        match status {
            400 if lower.contains("encryption key not found")
                || lower.contains("version is too new")
                || lower.contains("disallowed by policy") =>
            {
                Error::new(ErrorKind::KeyNotFound, message)
            }
            400 if lower.contains("message authentication failed") || lower.contains("invalid ciphertext") => {
                Error::crypto(message)
            }
            401 | 403 => Error::new(ErrorKind::AccessDenied, message),
            404 => Error::new(ErrorKind::KeyNotFound, message),
            412 | 429 | 500.. => Error::retryable(ErrorKind::Kms, message),
            _ => Error::new(ErrorKind::Kms, message),
        }
    }
}

/// A header value that is never printed (`Debug` of a sensitive value shows `Sensitive`).
fn header_value(text: &str, what: &str) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(text)
        .map_err(|_| Error::config(format!("vault: the {what} holds characters not allowed in an HTTP header")))?;
    value.set_sensitive(true);
    Ok(value)
}

/// A path segment Vault accepts for mounts, key names and namespaces.
fn valid_segment(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn parse_target(kek: &KekUri, plain_http: bool) -> Result<Target> {
    let bad = |why: &str| {
        Error::config(format!(
            "KEK {kek} is not a Vault key URI of the form vault://HOST[:PORT]/MOUNT/keys/NAME: {why}"
        ))
    };
    if kek.scheme() != "vault" {
        return Err(bad("wrong scheme"));
    }
    let (authority, path) = kek.name().split_once('/').ok_or_else(|| bad("no path"))?;
    if authority.contains('@') {
        return Err(bad("credentials do not belong in the URI"));
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(|| bad("unclosed IPv6 bracket"))?;
        v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad("invalid IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after the IPv6 address"))?),
        };
        (format!("[{v6}]"), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)) {
            return Err(bad("invalid host"));
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => VAULT_DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(bad("invalid port")),
        },
    };
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() < 3 || segments[segments.len() - 2] != "keys" {
        return Err(bad("the path must end in /keys/NAME after the mount"));
    }
    if !segments.iter().all(|s| valid_segment(s)) {
        return Err(bad("path segments may hold only letters, digits, '-', '_' and '.'"));
    }
    let name = segments[segments.len() - 1].to_string();
    let mount = segments[..segments.len() - 2].join("/");
    let scheme = if plain_http {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = bare == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(Error::config(format!(
                "KEK {kek}: plain HTTP is allowed only for loopback hosts (a local dev server); use HTTPS"
            )));
        }
        "http"
    } else {
        "https"
    };
    Ok(Target { base: format!("{scheme}://{host}:{port}"), mount, name })
}

/// Vault's `{"errors": [...]}` as one line (at most 300 bytes), or a note that there was none.
fn error_text(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) if !e.errors.is_empty() => {
            e.errors.iter().map(|m| m.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("; ")
        }
        _ if body.is_empty() => "(no body)".to_string(),
        _ => "(no error message)".to_string(),
    };
    let text = text.trim_start_matches("1 error occurred: * ").to_string();
    truncate(&text, 300).to_string()
}

/// The version `N` of a Transit `vault:vN:...` string, if it has that form.
fn transit_version(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("vault:v")?;
    let (version, body) = rest.split_once(':')?;
    let well_formed = !version.is_empty()
        && version.len() <= 10
        && version.bytes().all(|b| b.is_ascii_digit())
        && !version.starts_with('0')
        && !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
    well_formed.then_some(version)
}

impl Kms for VaultKms {
    fn scheme(&self) -> &str {
        "vault"
    }

    fn wrap(&self, kek: &KekUri, dek: &[u8], ctx: &WrapContext<'_>) -> Result<WrappedDek> {
        let target = self.target(kek)?;
        // Base64 needs no JSON escaping; built by hand so the only copies of the DEK are zeroized.
        let mut body = Zeroizing::new(String::with_capacity(64 + dek.len() * 2));
        body.push_str("{\"plaintext\":\"");
        B64.encode_string(dek, &mut body);
        body.push_str("\",\"associated_data\":\"");
        B64.encode_string(ctx.bytes(), &mut body);
        body.push_str("\"}");
        let data: EncryptData = off_runtime(|| self.transit(kek, &target, Op::Encrypt, body.as_bytes()))?;
        let version = transit_version(&data.ciphertext).ok_or_else(|| {
            Error::new(ErrorKind::Kms, format!("Vault transit encrypt with KEK {kek} returned a malformed ciphertext"))
        })?;
        if let Some(v) = data.key_version {
            if v.to_string() != version {
                return Err(Error::new(
                    ErrorKind::Kms,
                    format!(
                        "Vault transit encrypt with KEK {kek} reported key version {v} for a v{version} ciphertext"
                    ),
                ));
            }
        }
        Ok(WrappedDek { kek_version: version.to_string(), ciphertext: data.ciphertext.into_bytes() })
    }

    fn unwrap(
        &self,
        kek: &KekUri,
        kek_version: &str,
        wrapped: &[u8],
        ctx: &WrapContext<'_>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let target = self.target(kek)?;
        let ciphertext =
            std::str::from_utf8(wrapped).ok().filter(|c| transit_version(c).is_some()).ok_or_else(|| {
                Error::crypto(format!("wrapped data key for KEK {kek} is not a Vault transit ciphertext"))
            })?;
        let version = transit_version(ciphertext).unwrap_or_default();
        if version != kek_version {
            return Err(Error::crypto(format!(
                "wrapped data key for KEK {kek} is of key version {version}, but the header says {kek_version:?}"
            )));
        }
        let body = serde_json::json!({"ciphertext": ciphertext, "associated_data": B64.encode(ctx.bytes())});
        let body = serde_json::to_vec(&body).expect("a JSON value serializes");
        let data: DecryptData = off_runtime(|| self.transit(kek, &target, Op::Decrypt, &body))?;
        let plaintext = Zeroizing::new(data.plaintext);
        let dek = B64.decode(plaintext.as_bytes()).map_err(|_| {
            Error::new(
                ErrorKind::Kms,
                format!("Vault transit decrypt with KEK {kek} returned a plaintext that is not base64"),
            )
        })?;
        Ok(Zeroizing::new(dek))
    }

    /// HMAC-SHA-512 of a fixed label under the key's current version (Transit `hmac`, which needs
    /// the `update` capability on `MOUNT/hmac/NAME`), expanded with HKDF-SHA-256 to `len` bytes:
    /// every client with access derives the same key for the same key version.
    fn derive_deterministic_key(&self, kek: &KekUri, len: usize) -> Result<(String, Zeroizing<Vec<u8>>)> {
        let target = self.target(kek)?;
        let body = serde_json::json!({"input": B64.encode(DETERMINISTIC_LABEL), "algorithm": "sha2-512"});
        let body = serde_json::to_vec(&body).expect("a JSON value serializes");
        let data: HmacData = off_runtime(|| self.transit(kek, &target, Op::Hmac, &body))?;
        let hmac = Zeroizing::new(data.hmac);
        let malformed =
            || Error::new(ErrorKind::Kms, format!("Vault transit hmac with KEK {kek} returned a malformed HMAC"));
        let version = transit_version(&hmac).ok_or_else(malformed)?.to_string();
        let mac = Zeroizing::new(B64.decode(&hmac[hmac.rfind(':').map_or(0, |i| i + 1)..]).map_err(|_| malformed())?);
        if mac.len() != 64 {
            return Err(malformed());
        }
        let mut out = Zeroizing::new(vec![0u8; len]);
        hkdf::Hkdf::<sha2::Sha256>::new(Some(DETERMINISTIC_LABEL), &mac)
            .expand(format!("len={len}").as_bytes(), &mut out)
            .map_err(|_| Error::new(ErrorKind::Kms, "deterministic key too long"))?;
        Ok((version, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Algorithm;
    use crate::kms::test_http::{stub, Seen};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// A local HTTP stub answering each request with the next scripted (status, body), then 500.
    struct Stub {
        addr: String,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Stub {
        fn start(script: Vec<(u16, &str)>) -> Stub {
            let script: Vec<(u16, String)> = script.into_iter().map(|(s, b)| (s, b.to_string())).collect();
            let (url, seen) = stub("application/json", move |n, _| {
                script.get(n).cloned().unwrap_or((500, "{\"errors\":[\"script done\"]}".into()))
            });
            Stub { addr: url.trim_start_matches("http://").to_string(), seen }
        }
        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
        fn kek(&self, mount: &str, name: &str) -> KekUri {
            KekUri::parse(&format!("vault://{}/{mount}/keys/{name}", self.addr)).unwrap()
        }
    }

    fn client(auth: VaultAuth, namespace: Option<&str>) -> VaultKms {
        let mut config = VaultConfig::new(auth);
        config.plain_http = true;
        config.namespace = namespace.map(str::to_string);
        config.http = HttpOptions { timeout: Duration::from_secs(5), max_retries: 0, ..Default::default() };
        VaultKms::new(config).unwrap()
    }

    const DEK_ID: [u8; 16] = [0xab; 16];
    fn ctx() -> WrapContext<'static> {
        WrapContext { dek_id: &DEK_ID, algorithm: Algorithm::Aes256Gcm }
    }

    #[test]
    fn uri_forms() {
        let t = |uri: &str, plain: bool| parse_target(&KekUri::parse(uri).unwrap(), plain);
        assert_eq!(
            t("vault://vault.example:8443/transit/keys/pii", false).unwrap(),
            Target { base: "https://vault.example:8443".into(), mount: "transit".into(), name: "pii".into() }
        );
        assert_eq!(
            t("vault://Vault.Example/secret/transit/keys/k-1_a.b", false).unwrap(),
            Target {
                base: "https://vault.example:8200".into(),
                mount: "secret/transit".into(),
                name: "k-1_a.b".into()
            }
        );
        assert_eq!(t("vault://[::1]:8200/transit/keys/k", true).unwrap().base, "http://[::1]:8200");
        assert_eq!(t("vault://127.0.0.1:1234/transit/keys/k", true).unwrap().base, "http://127.0.0.1:1234");
        assert_eq!(t("vault://localhost:1234/transit/keys/k", true).unwrap().base, "http://localhost:1234");
        assert_eq!(t("vault://127.0.0.1:1234/transit/keys/k", false).unwrap().base, "https://127.0.0.1:1234");
        for bad in [
            "vault://h:8200/transit/k",
            "vault://h:8200/keys/k",
            "vault://h:8200/transit/keys/",
            "vault://h:8200/transit/keys/a/b",
            "vault://h:8200/../keys/k",
            "vault://h:8200/transit//keys/k",
            "vault://h:8200/transit/keys/k?x=1",
            "vault://h:8200/transit/keys/k%2f",
            "vault://user:pw@h:8200/transit/keys/k",
            "vault://h:0/transit/keys/k",
            "vault://h:99999/transit/keys/k",
            "vault://h:/transit/keys/k",
            "vault://[::1/transit/keys/k",
            "vault://h",
        ] {
            let e = t(bad, false).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{bad}");
            assert!(e.message().contains(bad), "{bad}: {e}");
        }
        let e = t("vault://vault.example:8200/transit/keys/k", true).unwrap_err();
        assert!(e.message().contains("loopback"), "{e}");
        assert_eq!(t("vault://10.0.0.1:8200/transit/keys/k", true).unwrap_err().kind(), ErrorKind::Config);
    }

    #[test]
    fn transit_versions() {
        assert_eq!(transit_version("vault:v1:AAAA"), Some("1"));
        assert_eq!(transit_version("vault:v12:ab+/=="), Some("12"));
        for bad in ["vault:v:AAAA", "vault:v01:AAAA", "vault:v1:", "vault:vx:AA", "vault:v1:a b", "x:v1:AA", "vault:v1"]
        {
            assert_eq!(transit_version(bad), None, "{bad}");
        }
    }

    #[test]
    fn wrap_sends_dek_and_context_and_parses_the_version() {
        let stub =
            Stub::start(vec![(200, r#"{"data":{"ciphertext":"vault:v3:c2VhbGVk","key_version":3},"errors":null}"#)]);
        let kms = client(VaultAuth::token("s.tok-123"), Some("team-a/prod"));
        let kek = stub.kek("secret/transit", "pii");
        let w = kms.wrap(&kek, &[7; 32], &ctx()).unwrap();
        assert_eq!(w.kek_version, "3");
        assert_eq!(w.ciphertext, b"vault:v3:c2VhbGVk");
        let seen = stub.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].line, "POST /v1/secret/transit/encrypt/pii HTTP/1.1");
        assert_eq!(seen[0].header("x-vault-token"), Some("s.tok-123"));
        assert_eq!(seen[0].header("x-vault-namespace"), Some("team-a/prod"));
        assert_eq!(seen[0].header("x-vault-request"), Some("true"));
        let body = seen[0].json();
        assert_eq!(body["plaintext"], B64.encode([7; 32]));
        let expected_ctx = format!("fieldcrypt:v1:{}:AES256_GCM", "ab".repeat(16));
        assert_eq!(body["associated_data"], B64.encode(&expected_ctx));
        assert_eq!(ctx().bytes(), expected_ctx.as_bytes());
    }

    #[test]
    fn unwrap_checks_the_version_and_returns_the_key() {
        let stub = Stub::start(vec![(200, &format!(r#"{{"data":{{"plaintext":"{}"}}}}"#, B64.encode([9u8; 32])))]);
        let kms = client(VaultAuth::token("t0ken"), None);
        let kek = stub.kek("transit", "k");
        // A mismatched version or a foreign blob fails before any request.
        let e = kms.unwrap(&kek, "2", b"vault:v1:AAAA", &ctx()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Crypto, "{e}");
        assert_eq!(kms.unwrap(&kek, "1", b"\x00\x01garbage", &ctx()).unwrap_err().kind(), ErrorKind::Crypto);
        assert_eq!(kms.unwrap(&kek, "1", b"vault:v1:AA\"}", &ctx()).unwrap_err().kind(), ErrorKind::Crypto);
        assert!(stub.seen().is_empty());
        let dek = kms.unwrap(&kek, "1", b"vault:v1:AAAA", &ctx()).unwrap();
        assert_eq!(dek.as_slice(), &[9; 32]);
        let seen = stub.seen();
        assert_eq!(seen[0].line, "POST /v1/transit/decrypt/k HTTP/1.1");
        assert_eq!(seen[0].header("x-vault-namespace"), None);
        assert_eq!(seen[0].json()["ciphertext"], "vault:v1:AAAA");
        assert_eq!(seen[0].json()["associated_data"], B64.encode(ctx().bytes()));
    }

    #[test]
    fn errors_map_to_kinds_and_name_the_key_not_the_token() {
        let cases: Vec<(u16, &str, ErrorKind, bool)> = vec![
            (400, r#"{"errors":["cipher: message authentication failed"]}"#, ErrorKind::Crypto, false),
            (400, r#"{"errors":["invalid ciphertext: no prefix"]}"#, ErrorKind::Crypto, false),
            (400, r#"{"errors":["encryption key not found"]}"#, ErrorKind::KeyNotFound, false),
            (400, r#"{"errors":["invalid ciphertext: version is too new"]}"#, ErrorKind::KeyNotFound, false),
            (
                400,
                r#"{"errors":["ciphertext or signature version is disallowed by policy (too old)"]}"#,
                ErrorKind::KeyNotFound,
                false,
            ),
            (403, r#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#, ErrorKind::AccessDenied, false),
            (
                404,
                r#"{"errors":["no handler for route \"transit/decrypt/k\". route entry not found."]}"#,
                ErrorKind::KeyNotFound,
                false,
            ),
            (503, r#"{"errors":["Vault is sealed"]}"#, ErrorKind::Kms, true),
            (400, r#"{"errors":["something else"]}"#, ErrorKind::Kms, false),
            (400, "not json", ErrorKind::Kms, false),
        ];
        for (status, body, kind, retryable) in cases {
            let stub = Stub::start(vec![(status, body)]);
            let kms = client(VaultAuth::token("SECRET-TOKEN-XYZ"), None);
            let kek = stub.kek("transit", "k");
            let e = kms.unwrap(&kek, "1", b"vault:v1:AAAA", &ctx()).unwrap_err();
            assert_eq!((e.kind(), e.is_retryable()), (kind, retryable), "{status} {body}: {e}");
            let text = e.to_string();
            assert!(text.contains(kek.as_str()) && text.contains(&status.to_string()), "{text}");
            assert!(!text.contains("SECRET-TOKEN-XYZ"), "{text}");
        }
        let permission = Stub::start(vec![(403, r#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#)]);
        let e = client(VaultAuth::token("t0ken"), None)
            .wrap(&permission.kek("transit", "k"), &[1; 32], &ctx())
            .unwrap_err();
        assert!(e.message().ends_with("HTTP 403: permission denied"), "{e}");
    }

    #[test]
    fn unreachable_server_is_a_retryable_kms_error() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // closed again
        let kms = client(VaultAuth::token("SECRET-TOKEN-XYZ"), None);
        let kek = KekUri::parse(&format!("vault://127.0.0.1:{port}/transit/keys/k")).unwrap();
        let e = kms.wrap(&kek, &[1; 32], &ctx()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Kms);
        assert!(e.is_retryable());
        assert!(e.message().contains(kek.as_str()) && !e.message().contains("SECRET"), "{e}");
    }

    #[test]
    fn a_server_that_echoes_credentials_is_redacted() {
        let stub = Stub::start(vec![(400, r#"{"errors":["bad token SECRET-TOKEN-XYZ"]}"#)]);
        let kms = client(VaultAuth::token("SECRET-TOKEN-XYZ"), None);
        let e = kms.wrap(&stub.kek("transit", "k"), &[1; 32], &ctx()).unwrap_err();
        assert!(!e.to_string().contains("SECRET-TOKEN-XYZ") && e.to_string().contains("<redacted>"), "{e}");
    }

    const LOGIN: &str = r#"{"auth":{"client_token":"s.login-1","lease_duration":3600,"renewable":true}}"#;
    const LOGIN2: &str = r#"{"auth":{"client_token":"s.login-2","lease_duration":3600,"renewable":true}}"#;
    const ENCRYPTED: &str = r#"{"data":{"ciphertext":"vault:v1:AAAA","key_version":1}}"#;
    const DENIED: &str = r#"{"errors":["permission denied"]}"#;

    #[test]
    fn approle_logs_in_once_and_caches_the_token() {
        let stub = Stub::start(vec![(200, LOGIN), (200, ENCRYPTED), (200, ENCRYPTED)]);
        let kms = client(VaultAuth::approle("role-AAA", "secret-BBB"), Some("ns1"));
        let kek = stub.kek("transit", "k");
        kms.wrap(&kek, &[1; 32], &ctx()).unwrap();
        kms.wrap(&kek, &[2; 32], &ctx()).unwrap();
        let seen = stub.seen();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].line, "POST /v1/auth/approle/login HTTP/1.1");
        assert_eq!(seen[0].json(), serde_json::json!({"role_id": "role-AAA", "secret_id": "secret-BBB"}));
        assert_eq!(seen[0].header("x-vault-token"), None);
        assert_eq!(seen[0].header("x-vault-namespace"), Some("ns1"));
        for s in &seen[1..] {
            assert_eq!(s.header("x-vault-token"), Some("s.login-1"));
            assert_eq!(s.header("x-vault-namespace"), Some("ns1"));
        }
    }

    #[test]
    fn approle_relogs_in_once_on_403() {
        // Token revoked: a new login, and the retry succeeds.
        let stub = Stub::start(vec![(200, LOGIN), (403, DENIED), (200, LOGIN2), (200, ENCRYPTED)]);
        let kms = client(
            VaultAuth::AppRole { role_id: "r".into(), secret_id: "s3cr3t".into(), mount: "/auth-ci/approle/".into() },
            None,
        );
        kms.wrap(&stub.kek("transit", "k"), &[1; 32], &ctx()).unwrap();
        let seen = stub.seen();
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[0].line, "POST /v1/auth/auth-ci/approle/login HTTP/1.1");
        assert_eq!(seen[2].line, "POST /v1/auth/auth-ci/approle/login HTTP/1.1");
        assert_eq!(seen[3].header("x-vault-token"), Some("s.login-2"));

        // Permission really gone: one new login, then AccessDenied.
        let stub = Stub::start(vec![(200, LOGIN), (403, DENIED), (200, LOGIN2), (403, DENIED), (403, DENIED)]);
        let kms = client(VaultAuth::approle("r", "s3cr3t"), None);
        let e = kms.unwrap(&stub.kek("transit", "k"), "1", b"vault:v1:AAAA", &ctx()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
        assert_eq!(stub.seen().len(), 4);
        assert!(!e.to_string().contains("s.login"), "{e}");
    }

    #[test]
    fn approle_bad_credentials_are_access_denied_without_the_secret() {
        let stub = Stub::start(vec![(400, r#"{"errors":["invalid role or secret ID"]}"#)]);
        let kms = client(VaultAuth::approle("role-AAA", "secret-BBB-123"), None);
        let kek = stub.kek("transit", "k");
        let e = kms.wrap(&kek, &[1; 32], &ctx()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
        let text = e.to_string();
        assert!(text.contains(kek.as_str()) && text.contains("invalid role or secret ID"), "{text}");
        assert!(!text.contains("secret-BBB-123") && !text.contains("role-AAA"), "{text}");
        let stub = Stub::start(vec![(503, r#"{"errors":["sealed"]}"#)]);
        let e = kms.wrap(&stub.kek("transit", "k"), &[1; 32], &ctx()).unwrap_err();
        assert!(e.kind() == ErrorKind::Kms && e.is_retryable(), "{e}");
    }

    #[test]
    fn deterministic_keys_come_from_the_transit_hmac() {
        let mac = B64.encode([5u8; 64]);
        let answer = format!(r#"{{"data":{{"hmac":"vault:v4:{mac}"}}}}"#);
        let stub = Stub::start(vec![(200, &answer), (200, &answer)]);
        let kms = client(VaultAuth::token("t0ken"), None);
        let kek = stub.kek("transit", "k");
        let (v, a) = kms.derive_deterministic_key(&kek, 64).unwrap();
        let (_, b) = kms.derive_deterministic_key(&kek, 64).unwrap();
        assert_eq!(v, "4");
        assert_eq!(a.len(), 64);
        assert_eq!(a, b);
        assert_ne!(a.as_slice(), &[5u8; 64]);
        let seen = stub.seen();
        assert_eq!(seen[0].line, "POST /v1/transit/hmac/k HTTP/1.1");
        assert_eq!(seen[0].json()["algorithm"], "sha2-512");
    }

    #[test]
    fn debug_and_config_errors_hide_secrets() {
        let mut config = VaultConfig::new(VaultAuth::approle("role-AAA", "secret-BBB"));
        config.namespace = Some("ns".into());
        let text = format!("{config:?} {:?}", VaultAuth::token("tok-CCC"));
        for secret in ["role-AAA", "secret-BBB", "tok-CCC"] {
            assert!(!text.contains(secret), "{text}");
        }
        let kms = VaultKms::new(config).unwrap();
        assert!(!format!("{kms:?}").contains("secret-BBB"));
        let e = VaultKms::new(VaultConfig::new(VaultAuth::token("bad\ntoken-DDD"))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(!e.to_string().contains("token-DDD"), "{e}");
        assert_eq!(VaultKms::new(VaultConfig::new(VaultAuth::token(" "))).unwrap_err().kind(), ErrorKind::Config);
        let mut bad_ns = VaultConfig::new(VaultAuth::token("t"));
        bad_ns.namespace = Some("a/../b".into());
        assert_eq!(VaultKms::new(bad_ns).unwrap_err().kind(), ErrorKind::Config);
    }

    #[test]
    fn config_from_environment_variables() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        };
        let c = VaultConfig::from_vars(vars(&[("VAULT_TOKEN", "t"), ("VAULT_NAMESPACE", "ns")])).unwrap();
        assert!(matches!(&c.auth, VaultAuth::Token(t) if t == "t"));
        assert_eq!(c.namespace.as_deref(), Some("ns"));
        assert!(!c.plain_http);
        let c = VaultConfig::from_vars(vars(&[
            ("VAULT_TOKEN", "t"),
            ("VAULT_ROLE_ID", "r"),
            ("VAULT_SECRET_ID", "s"),
            ("VAULT_ADDR", "http://127.0.0.1:8200"),
        ]))
        .unwrap();
        assert!(matches!(&c.auth, VaultAuth::AppRole { role_id, mount, .. } if role_id == "r" && mount == "approle"));
        assert!(c.plain_http);
        assert_eq!(VaultConfig::from_vars(vars(&[("VAULT_ROLE_ID", "r")])).unwrap_err().kind(), ErrorKind::Config);
        assert_eq!(VaultConfig::from_vars(vars(&[])).unwrap_err().kind(), ErrorKind::Config);
        let e =
            VaultConfig::from_vars(vars(&[("VAULT_TOKEN", "t"), ("VAULT_CACERT", "/nonexistent/ca.pem")])).unwrap_err();
        assert!(e.message().contains("/nonexistent/ca.pem"), "{e}");
    }
}
