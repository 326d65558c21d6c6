//! Google Cloud KMS client over the REST API (v1).
//!
//! A KEK is a symmetric `ENCRYPT_DECRYPT` CryptoKey named by
//! `gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K`. Wrapping a data key is
//! `POST /v1/{key}:encrypt` (Cloud KMS uses the key's primary version and reports it in the
//! answer's `name`, whose last segment becomes the header's `kek_version`); unwrapping is
//! `POST /v1/{key}:decrypt` (Cloud KMS finds the version inside the ciphertext). Both bind the
//! wrapped key to its DEK id and algorithm through `additionalAuthenticatedData`.
//!
//! Credentials: a fixed OAuth access token, a service account key (a self-signed RS256 JWT is
//! exchanged for access tokens, cached until shortly before they expire), or none (emulators).
//! Secrets never appear in `Debug` output or error messages.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Deserialize;
use zeroize::{Zeroize, Zeroizing};

use super::token::TokenCache;
use super::{KekUri, Kms, WrapContext, WrappedDek};
use crate::error::{Error, ErrorKind, Result};
use crate::formats::json::error_position;
use crate::http::{off_runtime, truncate, HttpClient, HttpOptions, SendError};

/// The public Cloud KMS endpoint.
pub const GCP_KMS_DEFAULT_ENDPOINT: &str = "https://cloudkms.googleapis.com";
/// The OAuth scope requested for service account tokens.
pub const GCP_KMS_SCOPE: &str = "https://www.googleapis.com/auth/cloudkms";
/// Google's token endpoint, used when a service account key names none.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, form-encoded.
const JWT_BEARER_GRANT_FORM: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer";
/// Lifetime of a self-signed assertion (Google accepts at most one hour).
const ASSERTION_LIFETIME_SECS: u64 = 3600;
/// A cached access token is replaced this long before it expires (at most half its lifetime).
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Environment variable naming a service account key file (Google's convention).
pub const GOOGLE_APPLICATION_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// Environment variable overriding the endpoint in [`GcpKmsConfig::from_env`] (emulators).
pub const GCP_KMS_ENDPOINT_ENV: &str = "FIELDCRYPT_GCP_KMS_ENDPOINT";

/// How the client authenticates to Cloud KMS.
#[derive(Clone)]
pub enum GcpAuth {
    /// A ready OAuth 2.0 access token (e.g. `gcloud auth print-access-token`), sent as
    /// `Authorization: Bearer`. It is not refreshed: once it expires calls fail with
    /// `AccessDenied`.
    AccessToken(String),
    /// A service account key: its JSON text, or the path of the JSON key file. The client signs
    /// an RS256 assertion with the key's `private_key` and exchanges it at the key's `token_uri`
    /// for access tokens, which it caches until shortly before they expire.
    ServiceAccount(String),
    /// No `Authorization` header (local emulators only).
    None,
}

impl fmt::Debug for GcpAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GcpAuth::AccessToken(_) => f.write_str("AccessToken(<redacted>)"),
            GcpAuth::ServiceAccount(_) => f.write_str("ServiceAccount(<redacted>)"),
            GcpAuth::None => f.write_str("None"),
        }
    }
}

/// Configuration of a [`GcpKms`] client.
#[derive(Clone)]
pub struct GcpKmsConfig {
    /// Base URL of the API; `None` for [`GCP_KMS_DEFAULT_ENDPOINT`]. An emulator is
    /// `http://127.0.0.1:PORT`.
    pub endpoint: Option<String>,
    pub auth: GcpAuth,
    /// Timeouts, retries (429, 5xx and connection errors) and extra trusted CAs.
    pub http: HttpOptions,
}

impl GcpKmsConfig {
    pub fn new(auth: GcpAuth) -> GcpKmsConfig {
        GcpKmsConfig { endpoint: None, auth, http: HttpOptions::default() }
    }

    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> GcpKmsConfig {
        self.endpoint = Some(endpoint.into());
        self
    }

    pub fn with_http(mut self, http: HttpOptions) -> GcpKmsConfig {
        self.http = http;
        self
    }

    /// Service account credentials from the key file named by `GOOGLE_APPLICATION_CREDENTIALS`,
    /// and the endpoint from `FIELDCRYPT_GCP_KMS_ENDPOINT` if set.
    pub fn from_env() -> Result<GcpKmsConfig> {
        GcpKmsConfig::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<GcpKmsConfig> {
        let present = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let Some(path) = present(GOOGLE_APPLICATION_CREDENTIALS) else {
            return Err(Error::config(format!(
                "{GOOGLE_APPLICATION_CREDENTIALS} is not set: point it at a service account key file"
            )));
        };
        let mut config = GcpKmsConfig::new(GcpAuth::ServiceAccount(path));
        config.endpoint = present(GCP_KMS_ENDPOINT_ENV);
        Ok(config)
    }
}

impl fmt::Debug for GcpKmsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpKmsConfig")
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth)
            .field("http", &self.http)
            .finish()
    }
}

/// A Google Cloud KMS client for `gcp-kms://` KEKs. Blocking; share it across threads.
pub struct GcpKms {
    endpoint: String,
    http: HttpClient,
    auth: Auth,
}

enum Auth {
    Token(Zeroizing<String>),
    ServiceAccount(Box<ServiceAccount>),
    None,
}

struct ServiceAccount {
    client_email: String,
    private_key_id: Option<String>,
    token_uri: String,
    key: RsaKeyPair,
    /// The access token (under [`GCP_KMS_SCOPE`]), until shortly before it expires or a 401.
    tokens: TokenCache,
}

impl fmt::Debug for GcpKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Auth::Token(_) => "access token (redacted)".to_string(),
            Auth::ServiceAccount(sa) => format!("service account {}", sa.client_email),
            Auth::None => "none".to_string(),
        };
        f.debug_struct("GcpKms").field("endpoint", &self.endpoint).field("auth", &auth).finish()
    }
}

impl GcpKms {
    /// Checks the configuration, loads and parses the service account key if any, and builds
    /// the HTTP client. Makes no network call.
    pub fn new(config: GcpKmsConfig) -> Result<GcpKms> {
        let endpoint = check_endpoint(config.endpoint.as_deref().unwrap_or(GCP_KMS_DEFAULT_ENDPOINT))?;
        let auth = match config.auth {
            GcpAuth::AccessToken(token) => {
                let token = Zeroizing::new(token);
                check_token(&token).map_err(|what| Error::config(format!("GCP access token {what}")))?;
                Auth::Token(Zeroizing::new(token.trim().to_string()))
            }
            GcpAuth::ServiceAccount(source) => {
                Auth::ServiceAccount(Box::new(ServiceAccount::load(&Zeroizing::new(source))?))
            }
            GcpAuth::None => Auth::None,
        };
        let http = off_runtime(|| HttpClient::new("gcp-kms", &config.http))?;
        Ok(GcpKms { endpoint, http, auth })
    }

    /// [`GcpKms::new`] with [`GcpKmsConfig::from_env`].
    pub fn from_env() -> Result<GcpKms> {
        GcpKms::new(GcpKmsConfig::from_env()?)
    }

    /// Sends one JSON request; on 2xx returns the body. A 401 with service account credentials
    /// drops the cached token and tries once more with a fresh one.
    fn post(&self, op: Op, kek: &KekUri, url: &str, body: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let mut fresh_token = false;
        loop {
            let token = self.access_token().map_err(|e| e.context(op, kek))?;
            let result = self.http.send(&|c| {
                let request = c.post(url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_vec());
                match &token {
                    Some(token) => request.bearer_auth(token.as_str()),
                    None => request,
                }
            });
            let reply = match result {
                Ok(reply) => reply,
                Err(e) => return Err(send_error(&format!("GCP KMS {} under {kek}", op.verb()), &e)),
            };
            let reply_body = Zeroizing::new(reply.body);
            if (200..300).contains(&reply.status) {
                return Ok(reply_body);
            }
            if reply.status == 401 && !fresh_token {
                if let Auth::ServiceAccount(sa) = &self.auth {
                    sa.forget_token();
                    fresh_token = true;
                    continue;
                }
            }
            return Err(api_error(op, kek, reply.status, &reply_body));
        }
    }

    fn access_token(&self) -> std::result::Result<Option<Zeroizing<String>>, AuthError> {
        match &self.auth {
            Auth::Token(token) => Ok(Some(token.clone())),
            Auth::ServiceAccount(sa) => sa.token(&self.http).map(Some),
            Auth::None => Ok(None),
        }
    }

    fn url(&self, key: &str, method: &str) -> String {
        format!("{}/v1/{key}:{method}", self.endpoint)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Encrypt,
    Decrypt,
}

impl Op {
    fn verb(self) -> &'static str {
        match self {
            Op::Encrypt => "encrypt (wrap)",
            Op::Decrypt => "decrypt (unwrap)",
        }
    }
}

impl Kms for GcpKms {
    fn scheme(&self) -> &str {
        "gcp-kms"
    }

    fn wrap(&self, kek: &KekUri, dek: &[u8], ctx: &WrapContext<'_>) -> Result<WrappedDek> {
        let key = key_name(kek)?;
        let body = encrypt_body(dek, &ctx.bytes());
        let url = self.url(key, "encrypt");
        let reply = off_runtime(|| self.post(Op::Encrypt, kek, &url, body.as_bytes()))?;
        parse_encrypt_response(kek, key, &reply)
    }

    fn unwrap(
        &self,
        kek: &KekUri,
        kek_version: &str,
        wrapped: &[u8],
        ctx: &WrapContext<'_>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let key = key_name(kek)?;
        if !is_version_id(kek_version) {
            return Err(Error::new(ErrorKind::KeyNotFound, format!("KEK {kek} has no version {kek_version:?}")));
        }
        let body = decrypt_body(wrapped, &ctx.bytes());
        let url = self.url(key, "decrypt");
        let reply = off_runtime(|| self.post(Op::Decrypt, kek, &url, body.as_bytes()))?;
        parse_decrypt_response(kek, key, kek_version, &reply)
    }
}

/// The CryptoKey resource name of a `gcp-kms://` URI, checked to be exactly
/// `projects/P/locations/L/keyRings/R/cryptoKeys/K` with URL-safe ids.
fn key_name(kek: &KekUri) -> Result<&str> {
    let name = kek.name();
    let parts: Vec<&str> = name.split('/').collect();
    let shaped = kek.scheme() == "gcp-kms"
        && parts.len() == 8
        && parts[0] == "projects"
        && parts[2] == "locations"
        && parts[4] == "keyRings"
        && parts[6] == "cryptoKeys"
        && [1, 3, 5, 7].iter().all(|&i| is_resource_id(parts[i]));
    if shaped {
        Ok(name)
    } else {
        Err(Error::config(format!(
            "KEK {kek} is not of the form gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K \
             (a CryptoKey, not a version; ids of letters, digits and - _ . :)"
        )))
    }
}

/// Project, location, key ring and key ids: letters, digits, `-`, `_`, `.` and `:` (legacy
/// domain-scoped projects are `example.com:project`).
fn is_resource_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// CryptoKeyVersion ids are decimal numbers.
fn is_version_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit())
}

/// `{"plaintext": ..., "additionalAuthenticatedData": ...}`, built so the only copy of the
/// base64 DEK is zeroized when dropped (base64 needs no JSON escaping).
fn encrypt_body(dek: &[u8], aad: &[u8]) -> Zeroizing<String> {
    json_pair("plaintext", &Zeroizing::new(STANDARD.encode(dek)), &STANDARD.encode(aad))
}

fn decrypt_body(wrapped: &[u8], aad: &[u8]) -> Zeroizing<String> {
    json_pair("ciphertext", &Zeroizing::new(STANDARD.encode(wrapped)), &STANDARD.encode(aad))
}

fn json_pair(first: &str, first_b64: &str, aad_b64: &str) -> Zeroizing<String> {
    const AAD: &str = "additionalAuthenticatedData";
    let mut body =
        Zeroizing::new(String::with_capacity(first.len() + first_b64.len() + AAD.len() + aad_b64.len() + 16));
    for piece in ["{\"", first, "\":\"", first_b64, "\",\"", AAD, "\":\"", aad_b64, "\"}"] {
        body.push_str(piece);
    }
    body
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptResponse {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    ciphertext: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DecryptResponse {
    #[serde(default)]
    plaintext: Option<String>,
    /// Not part of Cloud KMS's DecryptResponse; checked when a server reports it anyway.
    #[serde(default)]
    name: Option<String>,
}

fn parse_encrypt_response(kek: &KekUri, key: &str, body: &[u8]) -> Result<WrappedDek> {
    let bad = |what: String| Error::new(ErrorKind::Kms, format!("GCP KMS encrypt (wrap) under {kek}: {what}"));
    let response: EncryptResponse = serde_json::from_slice(body)
        .map_err(|e| bad(format!("answer is not a valid EncryptResponse ({})", error_position(&e))))?;
    let name = response.name.ok_or_else(|| bad("answer names no key version".into()))?;
    let version = version_of(key, &name).ok_or_else(|| {
        bad(format!("answer names key version {:?}, which is not a version of this key", truncate(&name, 300)))
    })?;
    let ciphertext = response
        .ciphertext
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| bad("answer holds no ciphertext".into()))?;
    let ciphertext = STANDARD.decode(ciphertext).map_err(|_| bad("answer's ciphertext is not base64".into()))?;
    Ok(WrappedDek { kek_version: version.to_string(), ciphertext })
}

fn parse_decrypt_response(kek: &KekUri, key: &str, kek_version: &str, body: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let bad = |what: &str| Error::new(ErrorKind::Kms, format!("GCP KMS decrypt (unwrap) under {kek}: {what}"));
    let mut response: DecryptResponse = serde_json::from_slice(body)
        .map_err(|e| bad(&format!("answer is not a valid DecryptResponse ({})", error_position(&e))))?;
    let plaintext = Zeroizing::new(response.plaintext.take().unwrap_or_default());
    if let Some(name) = &response.name {
        if version_of(key, name) != Some(kek_version) {
            return Err(Error::crypto(format!(
                "GCP KMS decrypted a data key recorded under {kek} version {kek_version} with key version {:?}",
                truncate(name, 300)
            )));
        }
    }
    if plaintext.is_empty() {
        return Err(bad("answer holds no plaintext"));
    }
    let dek =
        Zeroizing::new(STANDARD.decode(plaintext.as_bytes()).map_err(|_| bad("answer's plaintext is not base64"))?);
    Ok(dek)
}

/// `N` when `name` is `{key}/cryptoKeyVersions/N`.
fn version_of<'a>(key: &str, name: &'a str) -> Option<&'a str> {
    let version = name.strip_prefix(key)?.strip_prefix("/cryptoKeyVersions/")?;
    is_version_id(version).then_some(version)
}

/// Google's error body: `{"error": {"code": 404, "message": "...", "status": "NOT_FOUND"}}`.
#[derive(Deserialize)]
struct GoogleError {
    error: GoogleErrorBody,
}

#[derive(Deserialize)]
struct GoogleErrorBody {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

/// The error for a non-2xx answer from Cloud KMS (after the transport's retries for 429/5xx).
fn api_error(op: Op, kek: &KekUri, http_status: u16, body: &[u8]) -> Error {
    let parsed = serde_json::from_slice::<GoogleError>(body).ok().map(|e| e.error);
    let status = parsed.as_ref().and_then(|e| e.status.as_deref()).unwrap_or("");
    let mut text = format!("GCP KMS {} under {kek} failed: HTTP {http_status}", op.verb());
    if let Some(e) = &parsed {
        if !status.is_empty() {
            text.push(' ');
            text.push_str(&printable(status, 40));
        }
        if let Some(code) = e.code.filter(|&c| c != i64::from(http_status)) {
            text.push_str(&format!(" (code {code})"));
        }
        if let Some(message) = e.message.as_deref().filter(|m| !m.is_empty()) {
            text.push_str(": ");
            text.push_str(&printable(message, 300));
        }
    }
    let (kind, retryable) = match (http_status, status) {
        (_, "NOT_FOUND") | (404, _) => (ErrorKind::KeyNotFound, false),
        (_, "UNAUTHENTICATED" | "PERMISSION_DENIED") | (401 | 403, _) => (ErrorKind::AccessDenied, false),
        // A disabled, destroyed or scheduled-for-destruction key version: access was withdrawn.
        (_, "FAILED_PRECONDITION") => (ErrorKind::AccessDenied, false),
        (429, _) | (500..=599, _) | (_, "RESOURCE_EXHAUSTED" | "UNAVAILABLE" | "DEADLINE_EXCEEDED" | "INTERNAL") => {
            (ErrorKind::Kms, true)
        }
        // Decrypt refuses a ciphertext or AAD that does not authenticate with INVALID_ARGUMENT.
        (_, "INVALID_ARGUMENT") if op == Op::Decrypt => (ErrorKind::Crypto, false),
        _ => (ErrorKind::Kms, false),
    };
    if kind == ErrorKind::AccessDenied && status == "FAILED_PRECONDITION" {
        text.push_str(" (key version disabled or destroyed: treated as access denied)");
    }
    if retryable {
        Error::retryable(kind, text)
    } else {
        Error::new(kind, text)
    }
}

/// `what` failed in transport (after retries): connection errors, timeouts, 429/5xx.
fn send_error(what: &str, e: &SendError) -> Error {
    match e {
        SendError::Unavailable { .. } => Error::retryable(ErrorKind::Kms, format!("{what}: {}", e.describe())),
        SendError::Invalid(_) => Error::config(format!("{what}: {}", e.describe())),
        SendError::TooLarge { .. } => Error::new(ErrorKind::Kms, format!("{what}: {}", e.describe())),
    }
}

/// Server text for an error message: control characters replaced, length bounded.
fn printable(s: &str, max: usize) -> String {
    truncate(s, max).chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn check_endpoint(endpoint: &str) -> Result<String> {
    let trimmed = endpoint.trim().trim_end_matches('/');
    let bad = |why: &str| Error::config(format!("GCP KMS endpoint {:?} {why}", printable(trimmed, 200)));
    let url = reqwest::Url::parse(trimmed).map_err(|_| bad("is not a URL"))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(bad("must be an http:// or https:// URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::config("GCP KMS endpoint must not carry credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() || url.host_str().is_none() {
        return Err(bad("must be a base URL without query or fragment"));
    }
    Ok(trimmed.to_string())
}

/// An access token must be a non-empty header-safe string.
fn check_token(token: &str) -> std::result::Result<(), &'static str> {
    let token = token.trim();
    if token.is_empty() {
        return Err("is empty");
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("contains characters not allowed in an HTTP header");
    }
    Ok(())
}

/// Why no access token could be had. Becomes an [`Error`] naming the operation and KEK.
#[derive(Debug)]
struct AuthError {
    kind: ErrorKind,
    retryable: bool,
    message: String,
}

impl AuthError {
    fn context(self, op: Op, kek: &KekUri) -> Error {
        let message = format!("GCP KMS {} under {kek}: {}", op.verb(), self.message);
        if self.retryable {
            Error::retryable(self.kind, message)
        } else {
            Error::new(self.kind, message)
        }
    }
}

/// The fields of a Google JSON key file fieldcrypt reads; wiped when dropped.
#[derive(Deserialize, Zeroize, zeroize::ZeroizeOnDrop)]
struct KeyFile {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    client_email: Option<String>,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    private_key: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

impl ServiceAccount {
    /// `source` is the key's JSON text, or the path of its key file.
    fn load(source: &str) -> Result<ServiceAccount> {
        let (text, origin) = if source.trim_start().starts_with('{') {
            (Zeroizing::new(source.to_string()), "given inline".to_string())
        } else {
            let path = Path::new(source.trim());
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::config(format!("cannot read GCP service account key file {}: {e}", path.display()))
            })?;
            (Zeroizing::new(text), format!("file {}", path.display()))
        };
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| {
            Error::config(format!("GCP service account key ({origin}) is not valid JSON: {}", error_position(&e)))
        })?;
        let bad = |what: &str| Error::config(format!("GCP service account key ({origin}) {what}"));
        if let Some(kind) = file.kind.as_deref().filter(|k| *k != "service_account") {
            return Err(bad(&format!(
                "has type {:?}; only \"service_account\" keys are supported",
                printable(kind, 40)
            )));
        }
        let client_email =
            file.client_email.clone().filter(|e| !e.trim().is_empty()).ok_or_else(|| bad("has no client_email"))?;
        let pem =
            file.private_key.as_deref().filter(|k| !k.trim().is_empty()).ok_or_else(|| bad("has no private_key"))?;
        let key = parse_rsa_private_key(pem)
            .map_err(|why| bad(&format!("(client_email {client_email}): private_key {why}")))?;
        let token_uri = file.token_uri.clone().unwrap_or_else(|| DEFAULT_TOKEN_URI.to_string());
        let parsed = reqwest::Url::parse(&token_uri).ok();
        if !parsed.as_ref().is_some_and(|u| u.scheme() == "https" || u.scheme() == "http") {
            return Err(bad(&format!("has token_uri {:?}, which is not an http(s) URL", printable(&token_uri, 200))));
        }
        Ok(ServiceAccount {
            client_email,
            private_key_id: file.private_key_id.clone().filter(|k| !k.is_empty()),
            token_uri,
            key,
            tokens: TokenCache::new(),
        })
    }

    /// A cached token, or a new one from the token endpoint.
    fn token(&self, http: &HttpClient) -> std::result::Result<Zeroizing<String>, AuthError> {
        let (token, _) = self.tokens.get_or_fetch(GCP_KMS_SCOPE, None, || {
            let asked = Instant::now();
            let (token, lifetime) = self.fetch_token(http)?;
            Ok((token, Some(asked + refresh_after(lifetime))))
        })?;
        Ok(token)
    }

    fn forget_token(&self) {
        self.tokens.forget(GCP_KMS_SCOPE);
    }

    /// The signed JWT asking `token_uri` for a Cloud KMS token, issued at `iat` (Unix seconds).
    fn assertion(&self, iat: u64) -> std::result::Result<Zeroizing<String>, AuthError> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = kid.as_str().into();
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": GCP_KMS_SCOPE,
            "aud": self.token_uri,
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME_SECS,
        });
        let mut jwt = Zeroizing::new(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        ));
        let mut signature = vec![0u8; self.key.public_modulus_len()];
        self.key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), jwt.as_bytes(), &mut signature).map_err(|_| {
            AuthError {
                kind: ErrorKind::Kms,
                retryable: false,
                message: format!("cannot sign the token request of service account {}", self.client_email),
            }
        })?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(&signature));
        Ok(jwt)
    }

    /// Exchanges a fresh assertion for an access token; returns it and its lifetime.
    fn fetch_token(&self, http: &HttpClient) -> std::result::Result<(Zeroizing<String>, Duration), AuthError> {
        let assertion = self.assertion(unix_now())?;
        let mut form = Zeroizing::new(String::with_capacity(assertion.len() + 80));
        for piece in ["grant_type=", JWT_BEARER_GRANT_FORM, "&assertion=", assertion.as_str()] {
            form.push_str(piece);
        }
        let what = format!("token request for service account {} at {}", self.client_email, self.token_uri);
        let result = http.send(&|c| {
            c.post(&self.token_uri)
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.as_bytes().to_vec())
        });
        let reply = result.map_err(|e| {
            let error = send_error(&what, &e);
            AuthError { kind: error.kind(), retryable: error.is_retryable(), message: error.message().to_string() }
        })?;
        let body = Zeroizing::new(reply.body);
        if !(200..300).contains(&reply.status) {
            return Err(token_error(&what, reply.status, &body));
        }
        parse_token_response(&body).map_err(|why| AuthError {
            kind: ErrorKind::Kms,
            retryable: false,
            message: format!("{what}: {why}"),
        })
    }
}

#[derive(Deserialize, Zeroize, zeroize::ZeroizeOnDrop)]
struct TokenResponse {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    token_type: Option<String>,
}

fn parse_token_response(body: &[u8]) -> std::result::Result<(Zeroizing<String>, Duration), String> {
    let response: TokenResponse = serde_json::from_slice(body)
        .map_err(|e| format!("the answer is not a token response ({})", error_position(&e)))?;
    if let Some(kind) = response.token_type.as_deref().filter(|t| !t.eq_ignore_ascii_case("bearer")) {
        return Err(format!("the answer has token_type {:?}, not Bearer", printable(kind, 40)));
    }
    let token = Zeroizing::new(response.access_token.clone().unwrap_or_default());
    check_token(&token).map_err(|what| format!("the answer's access_token {what}"))?;
    let lifetime = Duration::from_secs(response.expires_in.unwrap_or(ASSERTION_LIFETIME_SECS));
    Ok((Zeroizing::new(token.trim().to_string()), lifetime))
}

/// OAuth error body: `{"error": "invalid_grant", "error_description": "..."}`.
#[derive(Deserialize)]
struct OAuthError {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

fn token_error(what: &str, status: u16, body: &[u8]) -> AuthError {
    let mut message = format!("{what} failed: HTTP {status}");
    if let Ok(e) = serde_json::from_slice::<OAuthError>(body) {
        if let Some(code) = e.error.as_deref().filter(|c| !c.is_empty()) {
            message.push(' ');
            message.push_str(&printable(code, 60));
        }
        if let Some(description) = e.error_description.as_deref().filter(|d| !d.is_empty()) {
            message.push_str(": ");
            message.push_str(&printable(description, 300));
        }
    }
    let (kind, retryable) = match status {
        // invalid_grant (bad signature, unknown or disabled key), invalid_client, unauthorized_client.
        400 | 401 | 403 => (ErrorKind::AccessDenied, false),
        429 | 500..=599 => (ErrorKind::Kms, true),
        _ => (ErrorKind::Kms, false),
    };
    AuthError { kind, retryable, message }
}

/// How long after asking a token of `lifetime` it is replaced: [`TOKEN_REFRESH_MARGIN`] early,
/// or at half its lifetime if that is shorter.
fn refresh_after(lifetime: Duration) -> Duration {
    lifetime - TOKEN_REFRESH_MARGIN.min(lifetime / 2)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// An RSA key from PEM: PKCS#8 (`BEGIN PRIVATE KEY`, what Google issues) or PKCS#1
/// (`BEGIN RSA PRIVATE KEY`). The error says what is wrong without quoting the key.
fn parse_rsa_private_key(pem: &str) -> std::result::Result<RsaKeyPair, String> {
    let (label, der) = pem_body(pem)?;
    match label.as_str() {
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("is not a PKCS#8 RSA private key ({e})")),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der).map_err(|e| format!("is not a PKCS#1 RSA private key ({e})")),
        _ => Err(format!("is a PEM {:?} block, not a private key", printable(&label, 40))),
    }
}

/// The label and DER bytes of the first PEM block in `pem`.
fn pem_body(pem: &str) -> std::result::Result<(String, Zeroizing<Vec<u8>>), String> {
    let mut lines = pem.lines().map(str::trim).skip_while(|l| !l.starts_with("-----BEGIN "));
    let begin = lines.next().ok_or("is not PEM (no -----BEGIN line)")?;
    let label = begin
        .strip_prefix("-----BEGIN ")
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or("is not PEM (malformed -----BEGIN line)")?
        .to_string();
    let end = format!("-----END {label}-----");
    let mut body = Zeroizing::new(String::with_capacity(pem.len()));
    let mut ended = false;
    for line in lines {
        if line == end {
            ended = true;
            break;
        }
        if line.contains(':') {
            return Err("is an encrypted or annotated PEM block; give an unencrypted key".into());
        }
        body.push_str(line);
    }
    if !ended {
        return Err(format!("is not PEM (no {end} line)"));
    }
    let der = Zeroizing::new(STANDARD.decode(body.as_bytes()).map_err(|_| "is not PEM (body is not base64)")?);
    Ok((label, der))
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;

    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{KeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

    use super::*;
    use crate::crypto::Algorithm;
    use crate::kms::test_http::{read_request, respond, Seen};

    const KEY: &str = "projects/fieldcrypt-test/locations/global/keyRings/ring/cryptoKeys/kek";
    const TOKEN: &str = "ya29.test-token-do-not-log";

    fn kek() -> KekUri {
        KekUri::parse(&format!("gcp-kms://{KEY}")).unwrap()
    }

    fn ctx(id: &DekIdBytes) -> WrapContext<'_> {
        WrapContext { dek_id: id, algorithm: Algorithm::Aes256Gcm }
    }
    type DekIdBytes = crate::crypto::DekId;

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/gcp").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }

    fn fast_http() -> HttpOptions {
        HttpOptions {
            timeout: Duration::from_secs(5),
            max_retries: 1,
            backoff: Duration::from_millis(10),
            ca_pem: None,
        }
    }

    /// A local HTTP server answering requests, in order, with scripted (status, body) pairs.
    struct Stub {
        url: String,
        seen: mpsc::Receiver<Seen>,
    }

    impl Stub {
        fn start(answers: Vec<(u16, String)>) -> Stub {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let (tx, seen) = mpsc::channel();
            std::thread::spawn(move || {
                let mut answers = answers.into_iter();
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let Some((status, body)) = answers.next() else { return };
                    if let Some(request) = serve(stream, status, &body) {
                        if tx.send(request).is_err() {
                            return;
                        }
                    }
                }
            });
            Stub { url, seen }
        }

        fn next(&self) -> Seen {
            self.seen.recv_timeout(Duration::from_secs(10)).expect("the stub saw no request")
        }

        fn none_left(&self) {
            assert!(self.seen.recv_timeout(Duration::from_millis(100)).is_err(), "unexpected extra request");
        }
    }

    fn serve(stream: TcpStream, status: u16, body: &str) -> Option<Seen> {
        let request = read_request(&stream)?;
        respond(stream, status, "application/json", body);
        Some(request)
    }

    fn client(url: &str, auth: GcpAuth) -> GcpKms {
        GcpKms::new(GcpKmsConfig::new(auth).with_endpoint(url).with_http(fast_http())).unwrap()
    }

    /// A fresh RSA key, as a Google key file would hold it (PKCS#8 PEM).
    fn test_key() -> (RsaKeyPair, String) {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key).unwrap();
        let b64 = STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        (key, pem)
    }

    fn key_file(pem: &str, token_uri: &str) -> String {
        serde_json::json!({
            "type": "service_account",
            "project_id": "fieldcrypt-test",
            "private_key_id": "0123456789abcdef",
            "private_key": pem,
            "client_email": "fieldcrypt@fieldcrypt-test.iam.gserviceaccount.com",
            "client_id": "1234567890",
            "token_uri": token_uri,
        })
        .to_string()
    }

    #[test]
    fn key_names_are_checked() {
        assert_eq!(key_name(&kek()).unwrap(), KEY);
        let ok = KekUri::parse("gcp-kms://projects/example.com:p-1/locations/us-east1/keyRings/r_1/cryptoKeys/k.2");
        assert!(key_name(&ok.unwrap()).is_ok());
        for bad in [
            "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
            "gcp-kms://projects/p/locations/l/keyRings/r",
            "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/",
            "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k?x=1",
            "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k%2F..",
            "gcp-kms://project/p/locations/l/keyRings/r/cryptoKeys/k",
        ] {
            let e = key_name(&KekUri::parse(bad).unwrap()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{bad}");
            assert!(e.message().contains(bad), "{}", e.message());
        }
        let local = KekUri::parse("local://projects/p/locations/l/keyRings/r/cryptoKeys/k").unwrap();
        assert!(key_name(&local).is_err());
    }

    #[test]
    fn wrap_sends_plaintext_and_aad_and_reads_the_version() {
        let stub = Stub::start(vec![(200, fixture("encrypt_response.json"))]);
        let kms = client(&stub.url, GcpAuth::AccessToken(TOKEN.into()));
        let id = [7u8; 16];
        let dek = [0x42u8; 32];
        let wrapped = kms.wrap(&kek(), &dek, &ctx(&id)).unwrap();
        assert_eq!(wrapped.kek_version, "3");
        let expected: serde_json::Value = serde_json::from_str(&fixture("encrypt_response.json")).unwrap();
        assert_eq!(wrapped.ciphertext, STANDARD.decode(expected["ciphertext"].as_str().unwrap()).unwrap());

        let seen = stub.next();
        assert_eq!(seen.line, format!("POST /v1/{KEY}:encrypt HTTP/1.1"));
        assert_eq!(seen.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
        assert_eq!(seen.header("content-type"), Some("application/json"));
        let body = seen.json();
        assert_eq!(body["plaintext"], STANDARD.encode(dek));
        assert_eq!(body["additionalAuthenticatedData"], STANDARD.encode(ctx(&id).bytes()));
        assert_eq!(body.as_object().unwrap().len(), 2);
    }

    #[test]
    fn unwrap_sends_ciphertext_and_aad() {
        let stub = Stub::start(vec![(200, fixture("decrypt_response.json"))]);
        let kms = client(&stub.url, GcpAuth::None);
        let id = [9u8; 16];
        let dek = kms.unwrap(&kek(), "3", b"opaque-ciphertext", &ctx(&id)).unwrap();
        let expected: serde_json::Value = serde_json::from_str(&fixture("decrypt_response.json")).unwrap();
        assert_eq!(dek.as_slice(), STANDARD.decode(expected["plaintext"].as_str().unwrap()).unwrap());
        let seen = stub.next();
        assert_eq!(seen.line, format!("POST /v1/{KEY}:decrypt HTTP/1.1"));
        assert_eq!(seen.header("authorization"), None, "GcpAuth::None sends no credentials");
        let body = seen.json();
        assert_eq!(body["ciphertext"], STANDARD.encode(b"opaque-ciphertext"));
        assert_eq!(body["additionalAuthenticatedData"], STANDARD.encode(ctx(&id).bytes()));
    }

    #[test]
    fn unwrap_checks_a_reported_version_and_rejects_bad_versions() {
        let answer = format!(r#"{{"name": "{KEY}/cryptoKeyVersions/2", "plaintext": "AAAA"}}"#);
        let stub = Stub::start(vec![(200, answer.clone()), (200, answer)]);
        let kms = client(&stub.url, GcpAuth::None);
        let id = [1u8; 16];
        assert_eq!(kms.unwrap(&kek(), "3", b"x", &ctx(&id)).unwrap_err().kind(), ErrorKind::Crypto);
        assert_eq!(kms.unwrap(&kek(), "2", b"x", &ctx(&id)).unwrap().as_slice(), &[0, 0, 0]);
        for bad in ["", "v1", "1/../2"] {
            assert_eq!(kms.unwrap(&kek(), bad, b"x", &ctx(&id)).unwrap_err().kind(), ErrorKind::KeyNotFound);
        }
    }

    #[test]
    fn malformed_answers_are_kms_errors() {
        let other_key = r#"{"name": "projects/x/locations/global/keyRings/ring/cryptoKeys/kek/cryptoKeyVersions/1", "ciphertext": "AAAA"}"#;
        let stub = Stub::start(vec![
            (200, other_key.into()),
            (200, format!(r#"{{"name": "{KEY}/cryptoKeyVersions/1"}}"#)),
            (200, "not json".into()),
            (200, "{}".into()),
        ]);
        let kms = client(&stub.url, GcpAuth::None);
        let id = [1u8; 16];
        for _ in 0..3 {
            let e = kms.wrap(&kek(), &[1; 32], &ctx(&id)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Kms);
            assert!(!e.is_retryable());
        }
        let e = kms.unwrap(&kek(), "1", b"x", &ctx(&id)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Kms, "{e}");
    }

    #[test]
    fn google_errors_map_to_kinds() {
        // (fixture, HTTP status, operation, kind, retryable)
        let cases = [
            ("error_not_found.json", 404, Op::Encrypt, ErrorKind::KeyNotFound, false),
            ("error_permission_denied.json", 403, Op::Encrypt, ErrorKind::AccessDenied, false),
            ("error_permission_denied.json", 403, Op::Decrypt, ErrorKind::AccessDenied, false),
            ("error_unauthenticated.json", 401, Op::Decrypt, ErrorKind::AccessDenied, false),
            ("error_failed_precondition_disabled.json", 400, Op::Encrypt, ErrorKind::AccessDenied, false),
            ("error_failed_precondition_destroyed.json", 400, Op::Decrypt, ErrorKind::AccessDenied, false),
            ("error_invalid_argument_decrypt.json", 400, Op::Decrypt, ErrorKind::Crypto, false),
            ("error_invalid_argument_encrypt.json", 400, Op::Encrypt, ErrorKind::Kms, false),
            ("error_resource_exhausted.json", 429, Op::Encrypt, ErrorKind::Kms, true),
            ("error_unavailable.json", 503, Op::Decrypt, ErrorKind::Kms, true),
            ("error_internal.json", 500, Op::Encrypt, ErrorKind::Kms, true),
        ];
        for (name, status, op, kind, retryable) in cases {
            let body = fixture(name);
            let google: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(google["error"]["code"], status, "{name}: fixture code and HTTP status agree");
            // Through the client, so retries and the transport's handling of 429/5xx are covered.
            let stub = Stub::start(vec![(status, body.clone()), (status, body.clone())]);
            let kms = client(&stub.url, GcpAuth::AccessToken(TOKEN.into()));
            let id = [3u8; 16];
            let e = match op {
                Op::Encrypt => kms.wrap(&kek(), &[1; 32], &ctx(&id)).unwrap_err(),
                Op::Decrypt => kms.unwrap(&kek(), "1", b"x", &ctx(&id)).unwrap_err(),
            };
            assert_eq!((e.kind(), e.is_retryable()), (kind, retryable), "{name}: {e}");
            let text = e.to_string();
            assert!(text.contains(kek().as_str()), "{name}: {text}");
            assert!(text.contains(&format!("HTTP {status}")), "{name}: {text}");
            assert!(text.contains(google["error"]["status"].as_str().unwrap()), "{name}: {text}");
            assert!(!text.contains(TOKEN), "{name}: {text}");
        }
        // A body that is not Google's error shape still maps by HTTP status.
        let e = api_error(Op::Encrypt, &kek(), 404, b"<html>nope</html>");
        assert_eq!(e.kind(), ErrorKind::KeyNotFound);
        assert!(!e.message().contains("html"));
        assert_eq!(api_error(Op::Decrypt, &kek(), 418, b"{}").kind(), ErrorKind::Kms);
    }

    #[test]
    fn retries_5xx_then_succeeds() {
        let stub = Stub::start(vec![(503, fixture("error_unavailable.json")), (200, fixture("encrypt_response.json"))]);
        let kms = client(&stub.url, GcpAuth::None);
        let id = [3u8; 16];
        assert_eq!(kms.wrap(&kek(), &[1; 32], &ctx(&id)).unwrap().kek_version, "3");
        stub.next();
        stub.next();
    }

    #[test]
    fn unreachable_is_a_retryable_kms_error() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let kms = client(&format!("http://127.0.0.1:{port}"), GcpAuth::AccessToken(TOKEN.into()));
        let id = [3u8; 16];
        let e = kms.wrap(&kek(), &[1; 32], &ctx(&id)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Kms);
        assert!(e.is_retryable());
        assert!(e.message().contains(kek().as_str()) && e.message().contains("cannot connect"), "{e}");
        assert!(!e.to_string().contains(TOKEN));
    }

    #[test]
    fn jwt_assertion_has_google_claims_and_verifies() {
        let (key, pem) = test_key();
        let sa = ServiceAccount::load(&key_file(&pem, "https://oauth2.googleapis.com/token")).unwrap();
        let jwt = sa.assertion(1_700_000_000).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "0123456789abcdef"}));
        let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({
                "iss": "fieldcrypt@fieldcrypt-test.iam.gserviceaccount.com",
                "scope": "https://www.googleapis.com/auth/cloudkms",
                "aud": "https://oauth2.googleapis.com/token",
                "iat": 1_700_000_000u64,
                "exp": 1_700_003_600u64,
            })
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert_eq!(signature.len(), 256);
        let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.public_key().as_ref().to_vec());
        let signed = format!("{}.{}", parts[0], parts[1]);
        public.verify(signed.as_bytes(), &signature).expect("the signature verifies with the key's public half");
        assert!(public.verify(format!("{signed}x").as_bytes(), &signature).is_err());
        // Another key's public half does not verify it.
        let (other, _) = test_key();
        let other = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, other.public_key().as_ref().to_vec());
        assert!(other.verify(signed.as_bytes(), &signature).is_err());
    }

    #[test]
    fn service_account_token_is_exchanged_cached_and_refreshed_on_401() {
        let token = serde_json::from_str::<serde_json::Value>(&fixture("token_response.json")).unwrap();
        let access_token = token["access_token"].as_str().unwrap().to_string();
        // One server plays both the token endpoint and Cloud KMS, answering in order.
        let stub = Stub::start(vec![
            (200, fixture("token_response.json")),
            (200, fixture("encrypt_response.json")),
            (200, fixture("encrypt_response.json")),
            (401, fixture("error_unauthenticated.json")),
            (200, fixture("token_response.json")),
            (200, fixture("encrypt_response.json")),
        ]);
        let (_, pem) = test_key();
        let kms = client(&stub.url, GcpAuth::ServiceAccount(key_file(&pem, &format!("{}/token", stub.url))));
        let id = [5u8; 16];
        for _ in 0..3 {
            assert_eq!(kms.wrap(&kek(), &[1; 32], &ctx(&id)).unwrap().kek_version, "3");
        }
        let exchange = stub.next();
        assert_eq!(exchange.line, "POST /token HTTP/1.1");
        assert_eq!(exchange.header("content-type"), Some("application/x-www-form-urlencoded"));
        let form = exchange.body;
        let assertion = form
            .strip_prefix("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=")
            .unwrap_or_else(|| panic!("unexpected form {form}"));
        assert_eq!(assertion.split('.').count(), 3);
        let bearer = format!("Bearer {access_token}");
        for _ in 0..2 {
            let call = stub.next();
            assert!(call.line.ends_with(":encrypt HTTP/1.1"), "cached token reused: {}", call.line);
            assert_eq!(call.header("authorization"), Some(bearer.as_str()));
        }
        assert!(stub.next().line.ends_with(":encrypt HTTP/1.1"), "the call answered 401");
        assert_eq!(stub.next().line, "POST /token HTTP/1.1", "a 401 drops the cached token");
        assert!(stub.next().line.ends_with(":encrypt HTTP/1.1"));
        stub.none_left();
        assert!(!format!("{kms:?}").contains(&access_token));
    }

    #[test]
    fn token_endpoint_refusal_is_access_denied_without_secrets() {
        let stub = Stub::start(vec![(400, fixture("token_error_invalid_grant.json"))]);
        let (_, pem) = test_key();
        let kms = client(&stub.url, GcpAuth::ServiceAccount(key_file(&pem, &format!("{}/token", stub.url))));
        let id = [5u8; 16];
        let e = kms.wrap(&kek(), &[1; 32], &ctx(&id)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
        let text = e.to_string();
        assert!(text.contains(kek().as_str()) && text.contains("invalid_grant"), "{text}");
        assert!(text.contains("fieldcrypt@fieldcrypt-test.iam.gserviceaccount.com"), "{text}");
        let exchange = stub.next();
        let form = exchange.body;
        let assertion = form.rsplit('=').next().unwrap();
        assert!(!text.contains(assertion) && !text.contains("PRIVATE KEY"), "{text}");
        let key_body = pem.lines().nth(1).unwrap();
        assert!(!text.contains(key_body));
    }

    #[test]
    fn token_response_parsing_and_refresh_timing() {
        let (token, lifetime) = parse_token_response(fixture("token_response.json").as_bytes()).unwrap();
        assert!(token.starts_with("ya29."));
        assert_eq!(lifetime, Duration::from_secs(3599));
        assert_eq!(refresh_after(lifetime), Duration::from_secs(3299));
        assert_eq!(refresh_after(Duration::from_secs(60)), Duration::from_secs(30));
        assert!(parse_token_response(br#"{"access_token": "a", "token_type": "MAC"}"#).is_err());
        assert!(parse_token_response(br#"{"expires_in": 10}"#).is_err());
        let e = parse_token_response(br#"{"access_token": 12}"#).unwrap_err();
        assert!(!e.contains("12"), "{e}");
    }

    #[test]
    fn service_account_from_a_file_and_from_the_environment() {
        let (_, pem) = test_key();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("fieldcrypt-gcp-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key.json");
        std::fs::write(&path, key_file(&pem, "https://oauth2.googleapis.com/token")).unwrap();
        let path_text = path.to_str().unwrap().to_string();

        let kms = GcpKms::new(GcpKmsConfig::new(GcpAuth::ServiceAccount(path_text.clone()))).unwrap();
        assert_eq!(kms.endpoint, GCP_KMS_DEFAULT_ENDPOINT);
        assert!(format!("{kms:?}").contains("fieldcrypt@fieldcrypt-test.iam.gserviceaccount.com"));

        let vars = |name: &str| match name {
            GOOGLE_APPLICATION_CREDENTIALS => Some(path_text.clone()),
            GCP_KMS_ENDPOINT_ENV => Some("http://127.0.0.1:9".to_string()),
            _ => None,
        };
        let config = GcpKmsConfig::from_vars(vars).unwrap();
        assert_eq!(config.endpoint.as_deref(), Some("http://127.0.0.1:9"));
        assert!(matches!(&config.auth, GcpAuth::ServiceAccount(p) if *p == path_text));
        GcpKms::new(config).unwrap();
        assert_eq!(GcpKmsConfig::from_vars(|_| None).unwrap_err().kind(), ErrorKind::Config);

        let missing =
            GcpKms::new(GcpKmsConfig::new(GcpAuth::ServiceAccount(dir.join("nope.json").display().to_string())));
        assert_eq!(missing.unwrap_err().kind(), ErrorKind::Config);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_configuration_is_reported_without_secrets() {
        let (_, pem) = test_key();
        let key_line = pem.lines().nth(1).unwrap().to_string();
        let config = |auth: GcpAuth| GcpKms::new(GcpKmsConfig::new(auth)).unwrap_err();
        let broken_pem = pem.replace(&key_line, &key_line[..20]);
        let cases = [
            GcpAuth::ServiceAccount(key_file(&broken_pem, "https://oauth2.googleapis.com/token")),
            GcpAuth::ServiceAccount(key_file(&pem.replace("PRIVATE KEY", "CERTIFICATE"), "https://x/token")),
            GcpAuth::ServiceAccount(key_file(&pem, "ftp://x/token")),
            GcpAuth::ServiceAccount(key_file(&pem, "https://x/token").replace("service_account", "authorized_user")),
            GcpAuth::ServiceAccount(format!("{{\"private_key\": {:?}", pem)),
            GcpAuth::ServiceAccount(format!("{{\"private_key\": {:?}}}", pem)),
            GcpAuth::AccessToken(" ".into()),
            GcpAuth::AccessToken("tok\nen-secret".into()),
        ];
        for auth in cases {
            let e = config(auth);
            assert_eq!(e.kind(), ErrorKind::Config, "{e}");
            let text = e.to_string();
            assert!(!text.contains(&key_line[..20]) && !text.contains("secret"), "{text}");
        }
        for endpoint in ["ftp://x", "not a url", "https://user:pw@kms.example", "https://kms.example/?q=1"] {
            let e = GcpKms::new(GcpKmsConfig::new(GcpAuth::None).with_endpoint(endpoint)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            assert!(!e.to_string().contains("pw@"), "{e}");
        }
        // A PKCS#1 key (`BEGIN RSA PRIVATE KEY`) is accepted too: for a 2048-bit key, PKCS#8 is
        // a 26-byte prefix (version, rsaEncryption algorithm, OCTET STRING header) on PKCS#1.
        let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key).unwrap();
        let der = der.as_ref();
        assert_eq!(&der[4..24], b"\x02\x01\x00\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01\x05\x00\x04\x82");
        let pkcs1 = format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
            STANDARD.encode(&der[26..])
        );
        let parsed = parse_rsa_private_key(&pkcs1).unwrap();
        assert_eq!(parsed.public_key().as_ref(), key.public_key().as_ref());
        assert!(parse_rsa_private_key(
            "-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n-----END PRIVATE KEY-----"
        )
        .is_err());
        assert!(parse_rsa_private_key("no pem here").is_err());
    }

    #[test]
    fn debug_output_redacts_credentials() {
        let (_, pem) = test_key();
        let sa = GcpAuth::ServiceAccount(key_file(&pem, "https://oauth2.googleapis.com/token"));
        let config = GcpKmsConfig::new(GcpAuth::AccessToken(TOKEN.into()));
        let text = format!("{sa:?} {config:?} {:?}", GcpKms::new(config.clone()).unwrap());
        assert!(!text.contains(TOKEN) && !text.contains("PRIVATE") && !text.contains("ya29"), "{text}");
        let kms = GcpKms::new(GcpKmsConfig::new(sa)).unwrap();
        let text = format!("{kms:?}");
        assert!(!text.contains("PRIVATE") && !text.contains("0123456789abcdef"), "{text}");
    }

    #[test]
    fn calls_work_from_inside_an_async_runtime() {
        let stub = Stub::start(vec![(200, fixture("encrypt_response.json"))]);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let kms = runtime.block_on(async { client(&stub.url, GcpAuth::None) });
        let id = [3u8; 16];
        let wrapped = runtime.block_on(async { kms.wrap(&kek(), &[1; 32], &ctx(&id)) }).unwrap();
        assert_eq!(wrapped.kek_version, "3");
    }
}
