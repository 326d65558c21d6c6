//! Azure Key Vault (and Managed HSM) client: data keys are wrapped with `wrapkey` and unwrapped
//! with `unwrapkey` under an RSA key, algorithm RSA-OAEP-256; the private key never leaves the
//! vault.
//!
//! KEK URI: `azure-kv://VAULT_HOST[:PORT]/keys/NAME[/VERSION]`, e.g.
//! `azure-kv://myvault.vault.azure.net/keys/kek` or `azure-kv://127.0.0.1:8443/keys/kek`. The
//! client always speaks HTTPS to `VAULT_HOST[:PORT]` (a test server's self-signed certificate is
//! trusted through [`HttpOptions::ca_pem`], never by switching verification off).
//!
//! Versions: without `VERSION` a wrap first reads the key (`GET /keys/NAME`) to learn its current
//! version, then wraps under that exact version; with `VERSION` the URI pins it. The version used
//! (the last segment of the `kid` Key Vault returns) is the `kek_version` in the fieldcrypt header,
//! and unwrap calls `/keys/NAME/<kek_version>/unwrapkey`.
//!
//! Binding: RSA-OAEP has no associated data, so a wrapped DEK is *not* bound by the KMS to the DEK
//! id and algorithm it was made for. The binding rests on the fieldcrypt header authenticator,
//! which is keyed by the DEK itself: a wrapped DEK moved onto another header entry unwraps to a key
//! that fails that check.
//!
//! Authentication: a bearer token used as is, or OAuth 2.0 client credentials of a Microsoft Entra
//! app registration (the token is fetched on first use, cached until shortly before it expires,
//! and fetched again once when Key Vault answers 401).

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use reqwest::header::HeaderValue;
use reqwest::Url;
use serde::Deserialize;
use zeroize::{Zeroize, Zeroizing};

use super::token::{transport_error, TokenCache};
use super::{KekUri, Kms, WrapContext, WrappedDek};
use crate::error::{Error, ErrorKind, Result};
use crate::http::{off_runtime, truncate, HttpClient, HttpOptions, Reply, SendError};

/// The Key Vault REST API version every request names.
pub const AZURE_KV_API_VERSION: &str = "7.4";
/// The key-wrapping algorithm (RSA-OAEP with SHA-256 and MGF1-SHA-256).
pub const AZURE_KV_WRAP_ALGORITHM: &str = "RSA-OAEP-256";
/// Microsoft Entra ID's public-cloud authority, the default of
/// [`AzureAuth::ClientCredentials`]'s `authority_host`.
pub const AZURE_DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// A client-credentials token is fetched again this long before it expires (or after 80% of its
/// lifetime, for tokens shorter than ten minutes).
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(120);
/// Lifetime assumed for a token answer without `expires_in`.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// How the client authenticates to Key Vault.
#[derive(Clone)]
pub enum AzureAuth {
    /// A Microsoft Entra access token for Key Vault (audience `https://vault.azure.net`), used as
    /// is: whoever supplies it must replace the client before it expires.
    BearerToken(String),
    /// OAuth 2.0 client credentials of an app registration (service principal): the client posts
    /// them to `{authority_host}/{tenant_id}/oauth2/v2.0/token` with the scope of the vault's cloud
    /// (`https://vault.azure.net/.default` for the public cloud), caches the token until shortly
    /// before `expires_in`, and fetches a new one once when Key Vault answers 401.
    /// `authority_host` must be HTTPS (plain HTTP only for a loopback test endpoint); empty means
    /// [`AZURE_DEFAULT_AUTHORITY_HOST`].
    ClientCredentials { tenant_id: String, client_id: String, client_secret: String, authority_host: String },
}

impl AzureAuth {
    pub fn bearer_token(token: impl Into<String>) -> AzureAuth {
        AzureAuth::BearerToken(token.into())
    }

    /// Client credentials against the public-cloud authority.
    pub fn client_credentials(
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> AzureAuth {
        AzureAuth::ClientCredentials {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            authority_host: AZURE_DEFAULT_AUTHORITY_HOST.to_string(),
        }
    }

    /// The strings that must never appear in output.
    fn secrets(&self) -> Vec<&str> {
        match self {
            AzureAuth::BearerToken(t) => vec![t.as_str()],
            AzureAuth::ClientCredentials { client_secret, .. } => vec![client_secret.as_str()],
        }
    }
}

impl Drop for AzureAuth {
    fn drop(&mut self) {
        match self {
            AzureAuth::BearerToken(t) => t.zeroize(),
            AzureAuth::ClientCredentials { client_secret, .. } => client_secret.zeroize(),
        }
    }
}

impl fmt::Debug for AzureAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AzureAuth::BearerToken(_) => f.write_str("BearerToken(<redacted>)"),
            AzureAuth::ClientCredentials { tenant_id, client_id, authority_host, .. } => f
                .debug_struct("ClientCredentials")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .field("authority_host", authority_host)
                .finish(),
        }
    }
}

/// Configuration of an [`AzureKeyVault`]. The vault is named by each KEK URI; this holds how to
/// authenticate and talk HTTP.
#[derive(Clone, Debug)]
pub struct AzureKeyVaultConfig {
    pub auth: AzureAuth,
    /// Timeouts, retries and extra trusted CAs (a test server's self-signed certificate).
    pub http: HttpOptions,
}

impl AzureKeyVaultConfig {
    /// Default HTTP options.
    pub fn new(auth: AzureAuth) -> AzureKeyVaultConfig {
        AzureKeyVaultConfig { auth, http: HttpOptions::default() }
    }

    /// Reads the Azure SDKs' environment variables:
    /// - `AZURE_TENANT_ID` + `AZURE_CLIENT_ID` + `AZURE_CLIENT_SECRET` (client credentials;
    ///   authority `AZURE_AUTHORITY_HOST`, default the public cloud), else `AZURE_KEYVAULT_TOKEN`
    ///   (a bearer token); one of them is required;
    /// - `AZURE_KEYVAULT_CACERT`: a PEM file of CAs to trust besides the system roots (optional).
    pub fn from_env() -> Result<AzureKeyVaultConfig> {
        AzureKeyVaultConfig::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<AzureKeyVaultConfig> {
        let get = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let auth =
            match (get("AZURE_TENANT_ID"), get("AZURE_CLIENT_ID"), get("AZURE_CLIENT_SECRET")) {
                (Some(tenant_id), Some(client_id), Some(client_secret)) => AzureAuth::ClientCredentials {
                    tenant_id,
                    client_id,
                    client_secret,
                    authority_host: get("AZURE_AUTHORITY_HOST").unwrap_or_else(|| AZURE_DEFAULT_AUTHORITY_HOST.into()),
                },
                (None, None, None) => match get("AZURE_KEYVAULT_TOKEN") {
                    Some(token) => AzureAuth::BearerToken(token),
                    None => {
                        return Err(Error::config(
                            "azure key vault: no credentials in the environment (set AZURE_TENANT_ID, \
                         AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, or AZURE_KEYVAULT_TOKEN)",
                        ))
                    }
                },
                _ => return Err(Error::config(
                    "azure key vault: AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET must be set together",
                )),
            };
        let mut config = AzureKeyVaultConfig::new(auth);
        if let Some(path) = get("AZURE_KEYVAULT_CACERT") {
            let pem = std::fs::read(&path).map_err(|e| {
                Error::config(format!("azure key vault: cannot read AZURE_KEYVAULT_CACERT file {path}: {e}"))
            })?;
            config.http.ca_pem = Some(pem);
        }
        Ok(config)
    }
}

/// An Azure Key Vault / Managed HSM client serving `azure-kv://` KEK URIs. Share one per process:
/// it pools connections and caches its access tokens.
pub struct AzureKeyVault {
    auth: AzureAuth,
    /// `{authority}/{tenant}/oauth2/v2.0/token` for client credentials.
    token_url: Option<Url>,
    http: HttpClient,
    /// `https`, or `http` in this module's tests against a local stub.
    vault_scheme: &'static str,
    /// Client-credentials tokens by scope, fetched again once due or refused (401).
    tokens: TokenCache,
}

impl fmt::Debug for AzureKeyVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureKeyVault").field("auth", &self.auth).finish_non_exhaustive()
    }
}

/// Where a KEK URI points: the vault and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyRef {
    /// `https://host[:port]/`.
    base: Url,
    name: String,
    version: Option<String>,
}

impl KeyRef {
    /// `https://host/keys/NAME[/VERSION][/op]?api-version=7.4`.
    fn url(&self, version: Option<&str>, op: Option<&str>) -> Url {
        let mut url = self.base.clone();
        {
            let mut segments = url.path_segments_mut().expect("checked: https URL with a host");
            segments.pop_if_empty().push("keys").push(&self.name);
            if let Some(v) = version {
                segments.push(v);
            }
            if let Some(op) = op {
                segments.push(op);
            }
        }
        url.query_pairs_mut().append_pair("api-version", AZURE_KV_API_VERSION);
        url
    }
}

/// The Key Vault operation a request makes, for URLs and error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    GetKey,
    Wrap,
    Unwrap,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::GetKey => "get key",
            Op::Wrap => "wrapkey",
            Op::Unwrap => "unwrapkey",
        }
    }
}

#[derive(Deserialize)]
struct KeyOpResult<'a> {
    #[serde(default)]
    kid: Option<String>,
    #[serde(borrow)]
    value: &'a str,
}

#[derive(Deserialize)]
struct KeyBundle {
    key: Option<JsonWebKey>,
    #[serde(default)]
    attributes: Option<KeyAttributes>,
}

#[derive(Deserialize)]
struct JsonWebKey {
    kid: Option<String>,
}

#[derive(Deserialize)]
struct KeyAttributes {
    #[serde(default)]
    enabled: Option<bool>,
}

#[derive(Deserialize)]
struct KvErrorBody {
    error: Option<KvError>,
}

#[derive(Deserialize)]
struct KvError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

impl Drop for TokenAnswer {
    fn drop(&mut self) {
        if let Some(t) = &mut self.access_token {
            t.zeroize();
        }
    }
}

#[derive(Deserialize)]
struct TokenError {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

impl AzureKeyVault {
    /// Validates the configuration and builds the HTTP client. No request is made: a
    /// client-credentials token is fetched on first use.
    pub fn new(config: AzureKeyVaultConfig) -> Result<AzureKeyVault> {
        let token_url = match &config.auth {
            AzureAuth::BearerToken(token) => {
                if token.trim().is_empty() {
                    return Err(Error::config("azure key vault: the bearer token is empty"));
                }
                bearer_header(token)?;
                None
            }
            AzureAuth::ClientCredentials { tenant_id, client_id, client_secret, authority_host } => {
                if !valid_tenant(tenant_id) {
                    return Err(Error::config(format!(
                        "azure key vault: tenant_id {tenant_id:?} is not a tenant id or domain"
                    )));
                }
                if client_id.trim().is_empty() || client_id.chars().any(char::is_control) {
                    return Err(Error::config("azure key vault: client_id is empty or invalid"));
                }
                if client_secret.is_empty() {
                    return Err(Error::config("azure key vault: client_secret is empty"));
                }
                Some(token_url(authority_host, tenant_id)?)
            }
        };
        let http = off_runtime(|| HttpClient::new("azure key vault", &config.http))?;
        Ok(AzureKeyVault {
            auth: config.auth.clone(),
            token_url,
            http,
            vault_scheme: "https",
            tokens: TokenCache::new(),
        })
    }

    /// The vault and key an `azure-kv://` URI names.
    fn key_ref(&self, kek: &KekUri) -> Result<KeyRef> {
        parse_key_ref(kek, self.vault_scheme)
    }

    /// `text` with every credential replaced, for error messages made of server answers.
    fn redact(&self, text: &str) -> String {
        self.tokens.redact(text, self.auth.secrets())
    }

    /// The access token for `scope` (fetching one if there is none, it is due for refresh, or it
    /// is the one of generation `stale` that Key Vault refused) and its generation.
    fn token(&self, scope: &str, kek: &KekUri, stale: Option<u64>) -> Result<(Zeroizing<String>, u64)> {
        if let AzureAuth::BearerToken(token) = &self.auth {
            return Ok((Zeroizing::new(token.clone()), 0));
        }
        self.tokens.get_or_fetch(scope, stale, || self.fetch_token(scope, kek))
    }

    /// A client-credentials token for `scope` from the token endpoint, and when to refresh it.
    fn fetch_token(&self, scope: &str, kek: &KekUri) -> Result<(Zeroizing<String>, Option<Instant>)> {
        let AzureAuth::ClientCredentials { tenant_id, client_id, client_secret, .. } = &self.auth else {
            unreachable!("fetch_token is only called for client credentials")
        };
        let token_url = self.token_url.as_ref().expect("set for client credentials");
        let what = || {
            format!(
                "Microsoft Entra token request (tenant {tenant_id}, client {client_id}, scope {scope}) for KEK {kek}"
            )
        };
        let body = Zeroizing::new(form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("scope", scope),
        ]));
        let result = self.http.send(&|c| {
            c.post(token_url.clone())
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("Accept", "application/json")
                .body(body.as_bytes().to_vec())
        });
        let reply = self.transport(result, &what)?;
        let status = reply.status;
        let reply_body = Zeroizing::new(reply.body);
        if status != 200 {
            let detail = self.redact(&token_error_text(&reply_body));
            let message = format!("{} failed: HTTP {status}{detail}", what());
            return Err(match status {
                400 | 401 | 403 => Error::new(ErrorKind::AccessDenied, message),
                404 => Error::config(message),
                429 | 500.. => Error::retryable(ErrorKind::Kms, message),
                _ => Error::new(ErrorKind::Kms, message),
            });
        }
        let answer: TokenAnswer = serde_json::from_slice(&reply_body)
            .map_err(|e| Error::new(ErrorKind::Kms, format!("{} returned an unreadable answer: {e}", what())))?;
        if let Some(kind) = answer.token_type.as_deref() {
            if !kind.eq_ignore_ascii_case("bearer") {
                return Err(Error::new(ErrorKind::Kms, format!("{} returned a {kind:?} token, not Bearer", what())));
            }
        }
        let token = match answer.access_token.as_deref() {
            Some(t) if !t.is_empty() => Zeroizing::new(t.to_string()),
            _ => return Err(Error::new(ErrorKind::Kms, format!("{} returned no access_token", what()))),
        };
        bearer_header(&token).map_err(|_| {
            Error::new(ErrorKind::Kms, format!("{} returned an access_token that is not a valid header", what()))
        })?;
        let lifetime = parse_expires_in(answer.expires_in.as_ref()).unwrap_or(DEFAULT_TOKEN_LIFETIME);
        let margin = TOKEN_REFRESH_MARGIN.min(lifetime / 5);
        Ok((token, Some(Instant::now() + (lifetime - margin))))
    }

    /// Transport failures as errors naming `what`.
    fn transport(&self, result: std::result::Result<Reply, SendError>, what: &dyn Fn() -> String) -> Result<Reply> {
        result.map_err(|e| transport_error(&what(), &e, |text| self.redact(text)))
    }

    /// One Key Vault request (`body` None: GET), with a fresh token and one more try when Key
    /// Vault refuses a client-credentials token. Returns the body of a 200 answer.
    fn call(&self, kek: &KekUri, op: Op, url: &Url, body: Option<&[u8]>) -> Result<Zeroizing<Vec<u8>>> {
        let scope = scope_for(url.host_str().unwrap_or_default());
        let what = || format!("Azure Key Vault {} with KEK {kek}", op.name());
        let mut stale = None;
        loop {
            let (token, generation) = self.token(scope, kek, stale)?;
            let auth = bearer_header(&token)?;
            let result = self.http.send(&|c| {
                let request = match body {
                    Some(body) => c.post(url.clone()).header("Content-Type", "application/json").body(body.to_vec()),
                    None => c.get(url.clone()),
                };
                request.header("Accept", "application/json").header("Authorization", auth.clone())
            });
            let reply = self.transport(result, &what)?;
            let status = reply.status;
            let reply_body = Zeroizing::new(reply.body);
            if status == 200 {
                return Ok(reply_body);
            }
            if status == 401 && stale.is_none() && matches!(self.auth, AzureAuth::ClientCredentials { .. }) {
                // The token expired early or was revoked: fetch a new one, once.
                stale = Some(generation);
                continue;
            }
            let detail = self.redact(&kv_error_text(&reply_body));
            let message = format!("{} failed: HTTP {status}{detail}", what());
            return Err(match status {
                401 | 403 => Error::new(ErrorKind::AccessDenied, message),
                404 => Error::new(ErrorKind::KeyNotFound, message),
                // Key Vault answers 400 BadParameter to a ciphertext its key cannot decrypt.
                400 if op == Op::Unwrap => Error::crypto(message),
                429 | 500.. => Error::retryable(ErrorKind::Kms, message),
                _ => Error::new(ErrorKind::Kms, message),
            });
        }
    }

    /// The current version of the key (`GET /keys/NAME`), refusing a disabled one.
    fn current_version(&self, kek: &KekUri, key: &KeyRef) -> Result<String> {
        let body = self.call(kek, Op::GetKey, &key.url(None, None), None)?;
        let bundle: KeyBundle = serde_json::from_slice(&body).map_err(|e| {
            Error::new(ErrorKind::Kms, format!("Azure Key Vault get key {kek} returned an unreadable answer: {e}"))
        })?;
        if bundle.attributes.and_then(|a| a.enabled) == Some(false) {
            return Err(Error::new(
                ErrorKind::AccessDenied,
                format!("Azure Key Vault key {kek} is disabled: nothing can be wrapped under it"),
            ));
        }
        let kid = bundle.key.and_then(|k| k.kid).ok_or_else(|| {
            Error::new(ErrorKind::Kms, format!("Azure Key Vault get key {kek} returned a key without kid"))
        })?;
        kid_version(&kid, &key.name)
            .ok_or_else(|| Error::new(ErrorKind::Kms, format!("Azure Key Vault get key {kek} returned kid {kid:?}")))
    }

    /// POSTs `{"alg": RSA-OAEP-256, "value": base64url(input)}` to `op` of `version`; returns the
    /// decoded `value` and the version named by the answer's `kid`.
    fn key_operation(
        &self,
        kek: &KekUri,
        key: &KeyRef,
        version: &str,
        op: Op,
        input: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, Option<String>)> {
        let mut encoded = Zeroizing::new(String::with_capacity(input.len() * 4 / 3 + 4));
        B64URL.encode_string(input, &mut encoded);
        let body = Zeroizing::new(
            format!(r#"{{"alg":"{AZURE_KV_WRAP_ALGORITHM}","value":"{}"}}"#, encoded.as_str()).into_bytes(),
        );
        let url = key.url(Some(version), Some(if op == Op::Wrap { "wrapkey" } else { "unwrapkey" }));
        let answer = self.call(kek, op, &url, Some(&body))?;
        let bad = |what: String| {
            Error::new(ErrorKind::Kms, format!("Azure Key Vault {} with KEK {kek} returned {what}", op.name()))
        };
        let parsed: KeyOpResult<'_> =
            serde_json::from_slice(&answer).map_err(|e| bad(format!("an unreadable answer: {e}")))?;
        let output = Zeroizing::new(
            B64URL
                .decode(parsed.value.trim_end_matches('='))
                .map_err(|_| bad("a value that is not base64url".into()))?,
        );
        if output.is_empty() {
            return Err(bad("an empty value".into()));
        }
        let kid_version = match &parsed.kid {
            Some(kid) => Some(kid_version(kid, &key.name).ok_or_else(|| bad(format!("kid {kid:?}")))?),
            None => None,
        };
        Ok((output, kid_version))
    }
}

impl Kms for AzureKeyVault {
    fn scheme(&self) -> &str {
        "azure-kv"
    }

    fn wrap(&self, kek: &KekUri, dek: &[u8], _ctx: &WrapContext<'_>) -> Result<WrappedDek> {
        // RSA-OAEP takes no associated data: see the module documentation for what binds `_ctx`.
        let key = self.key_ref(kek)?;
        off_runtime(|| {
            let version = match &key.version {
                Some(v) => v.clone(),
                None => self.current_version(kek, &key)?,
            };
            let (ciphertext, kid_version) = self.key_operation(kek, &key, &version, Op::Wrap, dek)?;
            if let Some(used) = kid_version {
                if used != version {
                    return Err(Error::new(
                        ErrorKind::Kms,
                        format!("Azure Key Vault wrapped under version {used} of {kek}, not the requested {version}"),
                    ));
                }
            }
            Ok(WrappedDek { kek_version: version, ciphertext: ciphertext.to_vec() })
        })
    }

    fn unwrap(
        &self,
        kek: &KekUri,
        kek_version: &str,
        wrapped: &[u8],
        _ctx: &WrapContext<'_>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let key = self.key_ref(kek)?;
        if !valid_version(kek_version) {
            return Err(Error::new(ErrorKind::KeyNotFound, format!("KEK {kek} has no version {kek_version:?}")));
        }
        off_runtime(|| {
            let (dek, kid_version) = self.key_operation(kek, &key, kek_version, Op::Unwrap, wrapped)?;
            if let Some(used) = kid_version {
                if used != kek_version {
                    return Err(Error::new(
                        ErrorKind::Kms,
                        format!("Azure Key Vault unwrapped with version {used} of {kek}, not {kek_version}"),
                    ));
                }
            }
            Ok(dek)
        })
    }
}

/// Parses `azure-kv://HOST[:PORT]/keys/NAME[/VERSION]`.
fn parse_key_ref(kek: &KekUri, scheme: &str) -> Result<KeyRef> {
    let bad = |why: &str| {
        Error::config(format!(
            "key {kek} is not an Azure Key Vault key URI of the form \
             azure-kv://VAULT_HOST[:PORT]/keys/NAME[/VERSION]: {why}"
        ))
    };
    if kek.scheme() != "azure-kv" {
        return Err(bad("wrong scheme"));
    }
    let (authority, path) = kek.name().split_once('/').ok_or_else(|| bad("no /keys/NAME path"))?;
    if authority.is_empty()
        || !authority.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    {
        return Err(bad("the vault host is empty or holds characters a host name cannot"));
    }
    let base = Url::parse(&format!("{scheme}://{authority}/")).map_err(|e| bad(&format!("bad vault host: {e}")))?;
    if base.host_str().is_none_or(str::is_empty) || base.path() != "/" {
        return Err(bad("bad vault host"));
    }
    let segments: Vec<&str> = path.split('/').collect();
    let (name, version) = match segments.as_slice() {
        ["keys", name] => (*name, None),
        ["keys", name, version] => (*name, Some(*version)),
        _ => return Err(bad("the path must be /keys/NAME or /keys/NAME/VERSION")),
    };
    if !valid_name(name) {
        return Err(bad("NAME must be 1-127 letters, digits and dashes"));
    }
    if let Some(v) = version {
        if !valid_version(v) {
            return Err(bad("VERSION must be 1-64 letters and digits"));
        }
    }
    Ok(KeyRef { base, name: name.to_string(), version: version.map(str::to_string) })
}

/// Key Vault object names: 1-127 characters of `0-9a-zA-Z-`.
fn valid_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Key Vault versions are 32 hex digits; accept any short alphanumeric string (other servers),
/// never anything that could change the request path.
fn valid_version(version: &str) -> bool {
    (1..=64).contains(&version.len()) && version.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A tenant GUID or domain (`contoso.onmicrosoft.com`), or `organizations`/`common`.
fn valid_tenant(tenant: &str) -> bool {
    (1..=253).contains(&tenant.len()) && tenant.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The version in a `kid` (`https://vault/keys/NAME/VERSION`) whose name matches `name` (Key Vault
/// names are case-insensitive).
fn kid_version(kid: &str, name: &str) -> Option<String> {
    let url = Url::parse(kid).ok()?;
    let segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [.., "keys", kid_name, version] if kid_name.eq_ignore_ascii_case(name) && valid_version(version) => {
            Some((*version).to_string())
        }
        _ => None,
    }
}

/// `{authority_host}/{tenant}/oauth2/v2.0/token`.
fn token_url(authority_host: &str, tenant_id: &str) -> Result<Url> {
    let authority = match authority_host.trim() {
        "" => AZURE_DEFAULT_AUTHORITY_HOST,
        a => a,
    };
    let bad = |why: &str| Error::config(format!("azure key vault: authority_host {authority:?} {why}"));
    let mut url = Url::parse(authority).map_err(|e| bad(&format!("is not a URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not hold credentials, a query or a fragment"));
    }
    match url.scheme() {
        "https" => {}
        "http" if url.host_str().is_some_and(is_loopback) => {}
        _ => return Err(bad("must be https:// (http:// only for a loopback test endpoint)")),
    }
    url.path_segments_mut()
        .map_err(|_| bad("cannot hold a path"))?
        .pop_if_empty()
        .extend([tenant_id, "oauth2", "v2.0", "token"]);
    Ok(url)
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The token scope of the cloud a vault host belongs to (what Key Vault's 401 challenge would
/// name); the public cloud for hosts it does not know (a test server).
fn scope_for(host: &str) -> &'static str {
    const CLOUDS: &[(&str, &str)] = &[
        (".vault.azure.net", "https://vault.azure.net/.default"),
        (".managedhsm.azure.net", "https://managedhsm.azure.net/.default"),
        (".vault.azure.cn", "https://vault.azure.cn/.default"),
        (".managedhsm.azure.cn", "https://managedhsm.azure.cn/.default"),
        (".vault.usgovcloudapi.net", "https://vault.usgovcloudapi.net/.default"),
        (".managedhsm.usgovcloudapi.net", "https://managedhsm.usgovcloudapi.net/.default"),
    ];
    let host = host.to_ascii_lowercase();
    CLOUDS.iter().find(|(suffix, _)| host.ends_with(suffix)).map_or(CLOUDS[0].1, |(_, scope)| scope)
}

/// `Bearer <token>` as a header value marked sensitive (kept out of reqwest's debug output).
fn bearer_header(token: &str) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
        .map_err(|_| Error::config("azure key vault: the bearer token holds characters a header cannot"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// `application/x-www-form-urlencoded` (every byte but unreserved ones percent-encoded).
fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        for (j, part) in [name, value].into_iter().enumerate() {
            if j > 0 {
                out.push('=');
            }
            for b in part.bytes() {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
    out
}

/// `expires_in` as a number or a numeric string (Entra's v1 endpoint sends strings).
fn parse_expires_in(value: Option<&serde_json::Value>) -> Option<Duration> {
    let secs = match value? {
        serde_json::Value::Number(n) => n.as_u64()?,
        serde_json::Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs.min(86_400 * 7)))
}

/// ` KeyNotFound: A key with (name/id) x was not found...` from a Key Vault error body.
fn kv_error_text(body: &[u8]) -> String {
    match serde_json::from_slice::<KvErrorBody>(body).ok().and_then(|b| b.error) {
        Some(KvError { code, message }) => {
            let text = [code, message].into_iter().flatten().collect::<Vec<_>>().join(": ");
            if text.is_empty() {
                String::new()
            } else {
                format!(" {}", clean(&text))
            }
        }
        None if body.is_empty() => String::new(),
        None => format!(" {}", clean(&String::from_utf8_lossy(body))),
    }
}

/// ` invalid_client: AADSTS7000215: Invalid client secret provided...` from a token error body
/// (its first line: the rest is trace and correlation ids).
fn token_error_text(body: &[u8]) -> String {
    match serde_json::from_slice::<TokenError>(body) {
        Ok(TokenError { error, error_description }) => {
            let description = error_description.map(|d| d.lines().next().unwrap_or_default().to_string());
            let text = [error, description].into_iter().flatten().collect::<Vec<_>>().join(": ");
            if text.is_empty() {
                String::new()
            } else {
                format!(" {}", clean(&text))
            }
        }
        Err(_) if body.is_empty() => String::new(),
        Err(_) => format!(" {}", clean(&String::from_utf8_lossy(body))),
    }
}

/// At most 300 bytes of `text` on one line.
fn clean(text: &str) -> String {
    let one_line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    truncate(one_line.trim(), 300).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Algorithm;
    use crate::kms::test_http::{read_request, respond, Seen};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};

    const CTX: WrapContext<'static> = WrapContext { dek_id: &[7; 16], algorithm: Algorithm::Aes256Gcm };
    const V1: &str = "0123456789abcdef0123456789abcdef";
    const V2: &str = "fedcba9876543210fedcba9876543210";

    fn kek(uri: &str) -> KekUri {
        KekUri::parse(uri).unwrap()
    }

    // ---- URIs ----

    #[test]
    fn key_uris() {
        let k = parse_key_ref(&kek("azure-kv://myvault.vault.azure.net/keys/kek"), "https").unwrap();
        assert_eq!(k.name, "kek");
        assert_eq!(k.version, None);
        assert_eq!(k.url(None, None).as_str(), "https://myvault.vault.azure.net/keys/kek?api-version=7.4", "GET key");
        assert_eq!(
            k.url(Some(V1), Some("wrapkey")).as_str(),
            format!("https://myvault.vault.azure.net/keys/kek/{V1}/wrapkey?api-version=7.4")
        );
        let k = parse_key_ref(&kek(&format!("azure-kv://127.0.0.1:8443/keys/k-1/{V2}")), "https").unwrap();
        assert_eq!(k.version.as_deref(), Some(V2));
        assert_eq!(
            k.url(Some(V2), Some("unwrapkey")).as_str(),
            format!("https://127.0.0.1:8443/keys/k-1/{V2}/unwrapkey?api-version=7.4")
        );
        assert!(parse_key_ref(&kek("azure-kv://[::1]:8443/keys/k"), "https").is_ok());
        for bad in [
            "azure-kv://myvault.vault.azure.net",
            "azure-kv://myvault.vault.azure.net/",
            "azure-kv://myvault.vault.azure.net/keys",
            "azure-kv://myvault.vault.azure.net/keys/",
            "azure-kv://myvault.vault.azure.net/secrets/k",
            "azure-kv://myvault.vault.azure.net/keys/k/v/extra",
            "azure-kv://myvault.vault.azure.net/keys/k_underscore",
            "azure-kv://myvault.vault.azure.net/keys/k/v-1",
            "azure-kv://myvault.vault.azure.net/keys/k/..",
            "azure-kv://user@myvault.vault.azure.net/keys/k",
            "azure-kv://myvault.vault.azure.net:notaport/keys/k",
            "azure-kv:///keys/k",
            "azure-kv://host?x=1/keys/k",
            "local://k",
        ] {
            let err = parse_key_ref(&kek(bad), "https").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{bad}");
            assert!(err.message().contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn kid_versions() {
        assert_eq!(kid_version(&format!("https://v.vault.azure.net/keys/KEK/{V1}"), "kek").as_deref(), Some(V1));
        assert_eq!(kid_version(&format!("https://127.0.0.1:1/keys/kek/{V1}/"), "kek").as_deref(), Some(V1));
        assert_eq!(kid_version(&format!("https://v/keys/other/{V1}"), "kek"), None);
        assert_eq!(kid_version("https://v/keys/kek", "kek"), None);
        assert_eq!(kid_version("not a url", "kek"), None);
    }

    #[test]
    fn scopes_follow_the_cloud() {
        assert_eq!(scope_for("x.vault.azure.net"), "https://vault.azure.net/.default");
        assert_eq!(scope_for("X.VAULT.AZURE.CN"), "https://vault.azure.cn/.default");
        assert_eq!(scope_for("h.managedhsm.azure.net"), "https://managedhsm.azure.net/.default");
        assert_eq!(scope_for("127.0.0.1"), "https://vault.azure.net/.default");
        assert_eq!(scope_for("vault.azure.net.evil.com"), "https://vault.azure.net/.default");
    }

    #[test]
    fn token_urls() {
        assert_eq!(
            token_url("", "contoso.onmicrosoft.com").unwrap().as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(
            token_url("https://login.microsoftonline.us/", "t").unwrap().as_str(),
            "https://login.microsoftonline.us/t/oauth2/v2.0/token"
        );
        assert_eq!(
            token_url("http://127.0.0.1:9/p", "t").unwrap().as_str(),
            "http://127.0.0.1:9/p/t/oauth2/v2.0/token"
        );
        for bad in
            ["http://login.example.com", "https://u:p@login.example.com", "ftp://x", "https://x/?q=1", "nonsense"]
        {
            assert_eq!(token_url(bad, "t").unwrap_err().kind(), ErrorKind::Config, "{bad}");
        }
    }

    #[test]
    fn form_encoding_and_expiry() {
        assert_eq!(
            form_encode(&[("grant_type", "client_credentials"), ("scope", "https://vault.azure.net/.default")]),
            "grant_type=client_credentials&scope=https%3A%2F%2Fvault.azure.net%2F.default"
        );
        assert_eq!(form_encode(&[("s", "a+b &=é")]), "s=a%2Bb%20%26%3D%C3%A9");
        assert_eq!(parse_expires_in(Some(&serde_json::json!(3599))), Some(Duration::from_secs(3599)));
        assert_eq!(parse_expires_in(Some(&serde_json::json!("3599"))), Some(Duration::from_secs(3599)));
        assert_eq!(parse_expires_in(Some(&serde_json::json!(0))), None);
        assert_eq!(parse_expires_in(None), None);
    }

    #[test]
    fn config_is_checked_and_debug_redacts() {
        let secret = "s3cr3t-client-secret";
        let config = AzureKeyVaultConfig::new(AzureAuth::client_credentials("tenant-1", "client-1", secret));
        let shown = format!("{config:?}");
        assert!(!shown.contains(secret) && shown.contains("client-1") && shown.contains("tenant-1"), "{shown}");
        let kv = AzureKeyVault::new(config).unwrap();
        assert!(!format!("{kv:?}").contains(secret));
        let token = AzureAuth::bearer_token("eyJ0eXAiOiJKV1Q.secret-token");
        assert!(!format!("{token:?}").contains("secret-token"));

        let bad = [
            AzureAuth::bearer_token(""),
            AzureAuth::bearer_token("line\nbreak"),
            AzureAuth::client_credentials("", "c", "s"),
            AzureAuth::client_credentials("t/../x", "c", "s"),
            AzureAuth::client_credentials("t", "", "s"),
            AzureAuth::client_credentials("t", "c", ""),
            AzureAuth::ClientCredentials {
                tenant_id: "t".into(),
                client_id: "c".into(),
                client_secret: "s".into(),
                authority_host: "http://login.example.com".into(),
            },
        ];
        for auth in bad {
            let shown = format!("{auth:?}");
            let err = AzureKeyVault::new(AzureKeyVaultConfig::new(auth)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{shown}: {err}");
        }
    }

    #[test]
    fn config_from_environment() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        };
        let c = AzureKeyVaultConfig::from_vars(vars(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
            ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us"),
        ]))
        .unwrap();
        assert!(matches!(&c.auth, AzureAuth::ClientCredentials { authority_host, .. }
            if authority_host == "https://login.microsoftonline.us"));
        let c = AzureKeyVaultConfig::from_vars(vars(&[("AZURE_KEYVAULT_TOKEN", "tok")])).unwrap();
        assert!(matches!(&c.auth, AzureAuth::BearerToken(t) if t == "tok"));
        assert!(AzureKeyVaultConfig::from_vars(vars(&[])).is_err());
        assert!(AzureKeyVaultConfig::from_vars(vars(&[("AZURE_TENANT_ID", "t")])).is_err());
        let err =
            AzureKeyVaultConfig::from_vars(vars(&[("AZURE_KEYVAULT_TOKEN", "t"), ("AZURE_KEYVAULT_CACERT", "/nope")]))
                .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
    }

    #[test]
    fn error_texts() {
        let body =
            br#"{"error":{"code":"KeyNotFound","message":"A key with (name/id) k was not found in this key vault."}}"#;
        assert_eq!(kv_error_text(body), " KeyNotFound: A key with (name/id) k was not found in this key vault.");
        assert_eq!(kv_error_text(b""), "");
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1\r\nCorrelation ID: 2"}"#;
        assert_eq!(token_error_text(body), " invalid_client: AADSTS7000215: Invalid client secret provided.");
    }

    // ---- a tiny HTTP server standing in for Key Vault and the token endpoint ----

    type Handler = dyn Fn(&Seen) -> (u16, String) + Send + Sync;

    struct Stub {
        addr: String,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Stub {
        fn start(handler: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static) -> Stub {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let (log, handler): (_, Arc<Handler>) = (seen.clone(), Arc::new(handler));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let (log, handler) = (log.clone(), handler.clone());
                    std::thread::spawn(move || serve(stream, &log, &*handler));
                }
            });
            Stub { addr, seen }
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }

        fn paths(&self) -> Vec<String> {
            self.seen().into_iter().map(|s| format!("{} {}", s.method, s.path)).collect()
        }

        fn kek(&self, rest: &str) -> KekUri {
            kek(&format!("azure-kv://{}/keys/{rest}", self.addr))
        }

        fn client(&self, auth: AzureAuth) -> AzureKeyVault {
            let http = HttpOptions {
                timeout: Duration::from_secs(5),
                max_retries: 1,
                backoff: Duration::from_millis(5),
                ca_pem: None,
            };
            let mut kv = AzureKeyVault::new(AzureKeyVaultConfig { auth, http }).unwrap();
            kv.vault_scheme = "http";
            kv
        }

        fn client_credentials(&self, secret: &str) -> AzureKeyVault {
            self.client(AzureAuth::ClientCredentials {
                tenant_id: "tenant-1".into(),
                client_id: "client-1".into(),
                client_secret: secret.into(),
                authority_host: format!("http://{}/login", self.addr),
            })
        }
    }

    fn serve(stream: TcpStream, log: &Mutex<Vec<Seen>>, handler: &Handler) {
        let Some(seen) = read_request(&stream) else { return };
        log.lock().unwrap().push(seen.clone());
        let (status, body) = handler(&seen);
        respond(stream, status, "application/json", &body);
    }

    /// A "vault" whose wrap is byte reversal: enough to see what goes where.
    fn fake_vault(addr_version: &'static str) -> impl Fn(&Seen) -> (u16, String) + Send + Sync {
        move |s: &Seen| {
            let path = s.path.split('?').next().unwrap_or_default();
            if s.method == "GET" && path == "/keys/kek" {
                let kid = format!("https://vault.example/keys/kek/{addr_version}");
                return (
                    200,
                    serde_json::json!({"key": {"kid": kid, "kty": "RSA"}, "attributes": {"enabled": true}}).to_string(),
                );
            }
            if s.method == "POST" && (path.ends_with("/wrapkey") || path.ends_with("/unwrapkey")) {
                let request: serde_json::Value = serde_json::from_str(&s.body).unwrap();
                assert_eq!(request["alg"], AZURE_KV_WRAP_ALGORITHM);
                let mut bytes = B64URL.decode(request["value"].as_str().unwrap()).unwrap();
                bytes.reverse();
                let version = path.split('/').nth(3).unwrap();
                let kid = format!("https://vault.example/keys/kek/{version}");
                return (200, serde_json::json!({"kid": kid, "value": B64URL.encode(&bytes)}).to_string());
            }
            (404, r#"{"error":{"code":"NotFound","message":"no such thing"}}"#.to_string())
        }
    }

    #[test]
    fn wraps_under_the_current_version_and_unwraps_by_version() {
        let stub = Stub::start(fake_vault(V1));
        let kv = stub.client(AzureAuth::bearer_token("tok-1"));
        let kek = stub.kek("kek");
        let dek = [1u8, 2, 3, 4, 250, 251, 252, 253];
        let w = kv.wrap(&kek, &dek, &CTX).unwrap();
        assert_eq!(w.kek_version, V1);
        assert_eq!(w.ciphertext, dek.iter().rev().copied().collect::<Vec<_>>());
        assert_eq!(kv.unwrap(&kek, V1, &w.ciphertext, &CTX).unwrap().as_slice(), &dek);
        assert_eq!(
            stub.paths(),
            [
                "GET /keys/kek?api-version=7.4".to_string(),
                format!("POST /keys/kek/{V1}/wrapkey?api-version=7.4"),
                format!("POST /keys/kek/{V1}/unwrapkey?api-version=7.4"),
            ]
        );
        for s in stub.seen() {
            assert_eq!(s.header("authorization"), Some("Bearer tok-1"));
        }
        let wrap_body: serde_json::Value = serde_json::from_str(&stub.seen()[1].body).unwrap();
        assert_eq!(wrap_body, serde_json::json!({"alg": "RSA-OAEP-256", "value": B64URL.encode(dek)}));
        assert_eq!(kv.scheme(), "azure-kv");
    }

    #[test]
    fn a_pinned_version_skips_the_lookup() {
        let stub = Stub::start(fake_vault(V1));
        let kv = stub.client(AzureAuth::bearer_token("tok"));
        let w = kv.wrap(&stub.kek(&format!("kek/{V2}")), &[9; 32], &CTX).unwrap();
        assert_eq!(w.kek_version, V2);
        assert_eq!(stub.paths(), [format!("POST /keys/kek/{V2}/wrapkey?api-version=7.4")]);
    }

    #[test]
    fn a_bad_version_makes_no_request() {
        let stub = Stub::start(fake_vault(V1));
        let kv = stub.client(AzureAuth::bearer_token("tok"));
        for v in ["", "../../secrets/x", "a/b", "v 1", &"a".repeat(65)] {
            let err = kv.unwrap(&stub.kek("kek"), v, &[1; 256], &CTX).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::KeyNotFound, "{v:?}");
        }
        assert!(stub.paths().is_empty());
    }

    #[test]
    fn statuses_map_to_kinds() {
        let secret = "tok-do-not-print";
        for (status, body, kind, retryable) in [
            (
                401,
                r#"{"error":{"code":"Unauthorized","message":"AKV10032: Invalid issuer."}}"#,
                ErrorKind::AccessDenied,
                false,
            ),
            (
                403,
                r#"{"error":{"code":"Forbidden","message":"Operation unwrapKey is not allowed on a disabled key."}}"#,
                ErrorKind::AccessDenied,
                false,
            ),
            (
                404,
                r#"{"error":{"code":"KeyNotFound","message":"A key with (name/id) kek was not found in this key vault."}}"#,
                ErrorKind::KeyNotFound,
                false,
            ),
            (400, r#"{"error":{"code":"BadParameter","message":"Invalid ciphertext."}}"#, ErrorKind::Crypto, false),
            (429, r#"{"error":{"code":"Throttled","message":"slow down"}}"#, ErrorKind::Kms, true),
            (503, "", ErrorKind::Kms, true),
            (409, r#"{"error":{"code":"Conflict","message":"?"}}"#, ErrorKind::Kms, false),
        ] {
            let stub = Stub::start(move |_| (status, body.to_string()));
            let kv = stub.client(AzureAuth::bearer_token(secret));
            let kek = stub.kek("kek");
            let err = kv.unwrap(&kek, V1, &[1; 256], &CTX).unwrap_err();
            assert_eq!((err.kind(), err.is_retryable()), (kind, retryable), "HTTP {status}: {err}");
            let text = err.to_string();
            assert!(text.contains(kek.as_str()) && text.contains(&status.to_string()), "{text}");
            assert!(!text.contains(secret), "{text}");
            // 429 and 5xx are retried (max_retries 1); the others are not.
            let expected_requests = if retryable { 2 } else { 1 };
            assert_eq!(stub.seen().len(), expected_requests, "HTTP {status}");
        }
        // A 400 on wrap is not a ciphertext problem.
        let stub = Stub::start(|_| (400, r#"{"error":{"code":"BadParameter","message":"bad alg"}}"#.into()));
        let kv = stub.client(AzureAuth::bearer_token("t"));
        let err = kv.wrap(&stub.kek(&format!("kek/{V1}")), &[1; 32], &CTX).unwrap_err();
        assert_eq!((err.kind(), err.is_retryable()), (ErrorKind::Kms, false), "{err}");
    }

    #[test]
    fn an_unreachable_vault_is_a_retryable_kms_error() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let stub = Stub { addr: format!("127.0.0.1:{port}"), seen: Arc::new(Mutex::new(Vec::new())) };
        let kv = stub.client(AzureAuth::bearer_token("t"));
        let err = kv.wrap(&stub.kek("kek"), &[1; 32], &CTX).unwrap_err();
        assert_eq!((err.kind(), err.is_retryable()), (ErrorKind::Kms, true), "{err}");
        assert!(err.message().contains("unavailable") && err.message().contains("azure-kv://"), "{err}");
    }

    #[test]
    fn a_disabled_key_is_refused_before_wrapping() {
        let stub = Stub::start(|s| {
            assert_eq!(s.method, "GET");
            let kid = format!("https://v/keys/kek/{V1}");
            (200, serde_json::json!({"key": {"kid": kid}, "attributes": {"enabled": false}}).to_string())
        });
        let kv = stub.client(AzureAuth::bearer_token("t"));
        let err = kv.wrap(&stub.kek("kek"), &[1; 32], &CTX).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
        assert_eq!(stub.seen().len(), 1);
    }

    #[test]
    fn unexpected_answers_are_kms_errors() {
        for body in [
            "not json".to_string(),
            r#"{"kid":"x"}"#.to_string(),
            serde_json::json!({"kid": format!("https://v/keys/kek/{V1}"), "value": "***"}).to_string(),
            serde_json::json!({"kid": format!("https://v/keys/kek/{V1}"), "value": ""}).to_string(),
            serde_json::json!({"kid": format!("https://v/keys/other/{V1}"), "value": "AQID"}).to_string(),
            serde_json::json!({"kid": format!("https://v/keys/kek/{V2}"), "value": "AQID"}).to_string(),
        ] {
            let answer = body.clone();
            let stub = Stub::start(move |_| (200, answer.clone()));
            let kv = stub.client(AzureAuth::bearer_token("t"));
            let err = kv.unwrap(&stub.kek("kek"), V1, &[1; 256], &CTX).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Kms, "{body}: {err}");
        }
        // Padded base64url is accepted, and an answer without kid too.
        let stub = Stub::start(|_| (200, r#"{"value":"AQI="}"#.into()));
        let kv = stub.client(AzureAuth::bearer_token("t"));
        assert_eq!(kv.unwrap(&stub.kek("kek"), V1, &[1; 256], &CTX).unwrap().as_slice(), &[1, 2]);
    }

    fn token_then_vault(
        token_status: u16,
        token_body: &'static str,
        vault: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static,
    ) -> impl Fn(&Seen) -> (u16, String) + Send + Sync {
        move |s: &Seen| {
            if s.path.starts_with("/login/") {
                (token_status, token_body.to_string())
            } else {
                vault(s)
            }
        }
    }

    #[test]
    fn client_credentials_fetch_one_token_and_reuse_it() {
        let secret = "cl13nt-s3cret/+=";
        let stub = Stub::start(token_then_vault(
            200,
            r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"at-1"}"#,
            fake_vault(V1),
        ));
        let kv = stub.client_credentials(secret);
        let kek = stub.kek("kek");
        for _ in 0..3 {
            let w = kv.wrap(&kek, &[5; 32], &CTX).unwrap();
            kv.unwrap(&kek, &w.kek_version, &w.ciphertext, &CTX).unwrap();
        }
        let seen = stub.seen();
        let token_requests: Vec<&Seen> = seen.iter().filter(|s| s.path.starts_with("/login/")).collect();
        assert_eq!(token_requests.len(), 1, "{:?}", stub.paths());
        let t = token_requests[0];
        assert_eq!((t.method.as_str(), t.path.as_str()), ("POST", "/login/tenant-1/oauth2/v2.0/token"));
        assert_eq!(t.header("content-type"), Some("application/x-www-form-urlencoded"));
        assert_eq!(
            t.body,
            "grant_type=client_credentials&client_id=client-1&client_secret=cl13nt-s3cret%2F%2B%3D\
             &scope=https%3A%2F%2Fvault.azure.net%2F.default"
        );
        for s in seen.iter().filter(|s| !s.path.starts_with("/login/")) {
            assert_eq!(s.header("authorization"), Some("Bearer at-1"));
        }
    }

    #[test]
    fn a_refused_token_is_replaced_once() {
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = fetches.clone();
        let vault = fake_vault(V1);
        let stub = Stub::start(move |s: &Seen| {
            if s.path.starts_with("/login/") {
                let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                return (200, format!(r#"{{"token_type":"Bearer","expires_in":3599,"access_token":"at-{n}"}}"#));
            }
            // The first token was revoked.
            if s.header("authorization") == Some("Bearer at-1") {
                return (401, r#"{"error":{"code":"Unauthorized","message":"AKV10022: Invalid audience."}}"#.into());
            }
            vault(s)
        });
        let kv = stub.client_credentials("s");
        let w = kv.wrap(&stub.kek(&format!("kek/{V1}")), &[5; 32], &CTX).unwrap();
        assert_eq!(w.kek_version, V1);
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 2);

        // A vault that refuses every token: one refetch, then AccessDenied.
        let stub = Stub::start(token_then_vault(200, r#"{"access_token":"at","expires_in":"3599"}"#, |_| {
            (401, r#"{"error":{"code":"Unauthorized","message":"nope"}}"#.into())
        }));
        let kv = stub.client_credentials("s");
        let err = kv.wrap(&stub.kek(&format!("kek/{V1}")), &[5; 32], &CTX).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
        let paths = stub.paths();
        assert_eq!(paths.iter().filter(|p| p.contains("/login/")).count(), 2, "{paths:?}");
        assert_eq!(paths.iter().filter(|p| p.contains("/wrapkey")).count(), 2, "{paths:?}");
    }

    #[test]
    fn wrong_client_credentials_are_access_denied_without_the_secret() {
        let secret = "wr0ng-s3cret-value";
        let stub = Stub::start(token_then_vault(
            401,
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x","error_codes":[7000215]}"#,
            fake_vault(V1),
        ));
        let kv = stub.client_credentials(secret);
        let kek = stub.kek("kek");
        let err = kv.wrap(&kek, &[5; 32], &CTX).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
        let text = err.to_string();
        assert!(
            text.contains(kek.as_str()) && text.contains("invalid_client") && text.contains("AADSTS7000215"),
            "{text}"
        );
        assert!(!text.contains(secret) && !text.contains("Trace ID"), "{text}");
        assert!(stub.paths().iter().all(|p| p.contains("/login/")), "no vault request without a token");

        // An endpoint that echoes the secret back does not get it into the message either.
        let stub = Stub::start(move |s: &Seen| {
            (400, format!(r#"{{"error":"invalid_request","error_description":"{}"}}"#, s.body))
        });
        let err = stub.client_credentials(secret).wrap(&stub.kek("kek"), &[5; 32], &CTX).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
        assert!(!err.to_string().contains(secret), "{err}");
    }

    #[test]
    fn a_short_lived_token_is_refreshed() {
        let stub = Stub::start(token_then_vault(200, r#"{"access_token":"short","expires_in":1}"#, fake_vault(V1)));
        let kv = stub.client_credentials("s");
        let kek = stub.kek(&format!("kek/{V1}"));
        kv.wrap(&kek, &[5; 32], &CTX).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        kv.wrap(&kek, &[5; 32], &CTX).unwrap();
        assert_eq!(stub.paths().iter().filter(|p| p.contains("/login/")).count(), 2);
    }

    #[test]
    fn works_inside_an_async_runtime() {
        let stub = Stub::start(fake_vault(V1));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let kv = stub.client(AzureAuth::bearer_token("t"));
            let w = kv.wrap(&stub.kek("kek"), &[3; 32], &CTX).unwrap();
            assert_eq!(kv.unwrap(&stub.kek("kek"), &w.kek_version, &w.ciphertext, &CTX).unwrap().as_slice(), &[3; 32]);
        });
    }
}
