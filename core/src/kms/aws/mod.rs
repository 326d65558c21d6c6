//! AWS KMS: data keys are wrapped with `Encrypt` and unwrapped with `Decrypt` under a symmetric
//! KMS key, over the JSON 1.1 protocol (`POST /`, `X-Amz-Target: TrentService.<Op>`), signed with
//! SigV4 by the `aws-sigv4` crate.
//!
//! KEK URIs name a key or an alias by ARN; the region (and so the endpoint and the signing
//! scope) comes from the ARN:
//!
//! ```text
//! aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab
//! aws-kms://arn:aws:kms:eu-west-1:111122223333:alias/orders
//! ```
//!
//! Each wrap binds the data key's id and algorithm through the encryption context
//! `{"fieldcrypt:dek": <hex id>, "fieldcrypt:alg": "AES256_GCM"}`; a wrapped key moved onto another
//! DEK id does not decrypt. The KEK version a wrap reports is the key ARN that `Encrypt` answers
//! with: AWS keeps no user-visible key versions (automatic and on-demand rotation are invisible to
//! callers, and every older backing key stays usable for `Decrypt`), so the version changes only
//! when an alias is moved to another key. Unwrap passes that key ARN as `KeyId`.

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{KekUri, Kms, WrapContext, WrappedDek};
use crate::error::{Error, ErrorKind, Result};
use crate::http::{off_runtime, truncate, HttpClient, HttpOptions, SendError};

mod credentials;

pub use credentials::AwsCredentials;
use credentials::CredentialSource;

const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const SERVICE: &str = "kms";

/// How an [`AwsKms`] client reaches AWS KMS and which credentials it signs with.
#[derive(Clone, Default)]
pub struct AwsKmsConfig {
    /// The KMS endpoint for every key, e.g. `http://127.0.0.1:4566` for a local emulator or a VPC
    /// endpoint. Default: `https://kms.<region of the key ARN>.amazonaws.com`
    /// (`.amazonaws.com.cn` in the `aws-cn` partition).
    pub endpoint: Option<String>,
    /// Explicit credentials: the first link of the provider chain (see [`AwsCredentials`] and
    /// the module docs of `credentials`). `None` looks at the environment, the shared files and
    /// web identity, in that order.
    pub credentials: Option<AwsCredentials>,
    /// The shared-file profile to use instead of `AWS_PROFILE` / `default`. When set, the
    /// environment's access keys are not looked at.
    pub profile: Option<String>,
    /// The shared credentials file, instead of `AWS_SHARED_CREDENTIALS_FILE` / `~/.aws/credentials`.
    pub credentials_file: Option<PathBuf>,
    /// The shared config file, instead of `AWS_CONFIG_FILE` / `~/.aws/config`.
    pub config_file: Option<PathBuf>,
    /// The STS endpoint for web identity, instead of `AWS_ENDPOINT_URL_STS` / the regional one.
    pub sts_endpoint: Option<String>,
    /// Timeouts, retries and extra trusted CAs for KMS and STS requests.
    pub http: HttpOptions,
}

impl fmt::Debug for AwsKmsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKmsConfig")
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials)
            .field("profile", &self.profile)
            .field("credentials_file", &self.credentials_file)
            .field("config_file", &self.config_file)
            .field("sts_endpoint", &self.sts_endpoint)
            .field("http", &self.http)
            .finish()
    }
}

/// An AWS KMS client for `aws-kms://` KEK URIs.
pub struct AwsKms {
    http: HttpClient,
    endpoint: Option<String>,
    credentials: CredentialSource,
}

impl fmt::Debug for AwsKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKms")
            .field("endpoint", &self.endpoint.as_deref().unwrap_or("https://kms.<region>.amazonaws.com"))
            .field("credentials", &self.credentials.describe())
            .finish()
    }
}

impl AwsKms {
    /// Builds the client and runs the credential chain (reading the environment and the shared
    /// files now; a web identity is exchanged for credentials at the first KMS call).
    pub fn new(config: AwsKmsConfig) -> Result<AwsKms> {
        let endpoint = config.endpoint.as_deref().map(|e| check_endpoint("AWS KMS endpoint", e)).transpose()?;
        let sts = config.sts_endpoint.as_deref().map(|e| check_endpoint("AWS STS endpoint", e)).transpose()?;
        let credentials = CredentialSource::resolve(
            config.credentials.as_ref(),
            config.profile.as_deref(),
            credentials::SharedFiles {
                credentials: config.credentials_file.as_deref(),
                config: config.config_file.as_deref(),
            },
            sts.as_deref(),
            &credentials::process_env,
        )?;
        let http = off_runtime(|| HttpClient::new("aws-kms", &config.http))?;
        Ok(AwsKms { http, endpoint, credentials })
    }

    /// Where the credentials come from (`access key AKIA... from the environment`, `web identity
    /// for role ...`), for logs. Never holds a secret.
    pub fn credential_source(&self) -> String {
        self.credentials.describe()
    }

    fn endpoint_for(&self, arn: &KeyArn<'_>) -> Result<String> {
        if let Some(e) = &self.endpoint {
            return Ok(e.clone());
        }
        match arn.partition {
            "aws" | "aws-us-gov" => Ok(format!("https://kms.{}.amazonaws.com", arn.region)),
            "aws-cn" => Ok(format!("https://kms.{}.amazonaws.com.cn", arn.region)),
            other => Err(Error::config(format!(
                "AWS partition {other:?} has no default KMS endpoint: set AwsKmsConfig::endpoint"
            ))),
        }
    }

    /// One KMS call: sign, send (with the transport's retries), and map a failure to an error
    /// naming `kek`, the operation and the AWS error code. Returns the answer's body.
    fn call(&self, kek: &KekUri, arn: &KeyArn<'_>, op: &str, body: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let endpoint = self.endpoint_for(arn)?;
        let what = format!("AWS KMS {op} with {kek}");
        let credentials = self.credentials.credentials(&self.http).map_err(|e| {
            let message = format!("{what}: no credentials: {}", e.message());
            if e.is_retryable() {
                Error::retryable(e.kind(), message)
            } else {
                Error::new(e.kind(), message)
            }
        })?;
        let url = format!("{endpoint}/");
        let target = format!("TrentService.{op}");
        let signed = sign_request(&credentials, arn.region, &url, &target, body, SystemTime::now())
            .map_err(|e| Error::new(ErrorKind::Kms, format!("{what}: {e}")))?;
        let reply = self
            .http
            .send(&|c| {
                let mut request = c
                    .post(&url)
                    .header("Content-Type", CONTENT_TYPE)
                    .header("X-Amz-Target", &target)
                    .body(body.to_vec());
                for (name, value) in &signed {
                    request = request.header(name.as_str(), value.as_str());
                }
                request
            })
            .map_err(|e| match e {
                SendError::Invalid(_) => Error::config(format!("{what} at {endpoint}: {}", e.describe())),
                SendError::TooLarge { .. } => Error::new(ErrorKind::Kms, format!("{what}: {}", e.describe())),
                SendError::Unavailable { .. } => {
                    Error::retryable(ErrorKind::Kms, format!("{what} at {endpoint}: {}", e.describe()))
                }
            })?;
        let body = Zeroizing::new(reply.body);
        if reply.status == 200 {
            return Ok(body);
        }
        Err(error_from_reply(&what, reply.status, &body, &credentials))
    }
}

impl Kms for AwsKms {
    fn scheme(&self) -> &str {
        "aws-kms"
    }

    fn wrap(&self, kek: &KekUri, dek: &[u8], ctx: &WrapContext<'_>) -> Result<WrappedDek> {
        let arn = KeyArn::of_uri(kek)?;
        let plaintext = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(dek));
        let request = Zeroizing::new(
            serde_json::to_vec(&EncryptRequest {
                key_id: arn.arn,
                plaintext: &plaintext,
                encryption_context: EncryptionContext::of(ctx),
            })
            .map_err(|e| Error::new(ErrorKind::Kms, format!("cannot encode an AWS KMS request: {e}")))?,
        );
        let body = off_runtime(|| self.call(kek, &arn, "Encrypt", &request))?;
        let bad = |why: &str| Error::new(ErrorKind::Kms, format!("AWS KMS Encrypt with {kek}: {why}"));
        let answer: EncryptResponse =
            serde_json::from_slice(&body).map_err(|_| bad("the answer is not the expected JSON"))?;
        let key_id = answer.key_id.ok_or_else(|| bad("the answer has no KeyId"))?;
        let blob = answer.ciphertext_blob.ok_or_else(|| bad("the answer has no CiphertextBlob"))?;
        let ciphertext = base64::engine::general_purpose::STANDARD
            .decode(blob.trim())
            .map_err(|_| bad("the answer's CiphertextBlob is not base64"))?;
        if ciphertext.is_empty() {
            return Err(bad("the answer's CiphertextBlob is empty"));
        }
        arn.accepts_version(&key_id).map_err(|why| bad(&why))?;
        Ok(WrappedDek { kek_version: key_id, ciphertext })
    }

    fn unwrap(
        &self,
        kek: &KekUri,
        kek_version: &str,
        wrapped: &[u8],
        ctx: &WrapContext<'_>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let arn = KeyArn::of_uri(kek)?;
        arn.accepts_version(kek_version).map_err(|why| {
            Error::new(ErrorKind::KeyNotFound, format!("AWS KMS key {kek_version:?} is not usable with {kek}: {why}"))
        })?;
        let blob = base64::engine::general_purpose::STANDARD.encode(wrapped);
        let request = serde_json::to_vec(&DecryptRequest {
            ciphertext_blob: &blob,
            key_id: kek_version,
            encryption_context: EncryptionContext::of(ctx),
        })
        .map_err(|e| Error::new(ErrorKind::Kms, format!("cannot encode an AWS KMS request: {e}")))?;
        let body = off_runtime(|| self.call(kek, &arn, "Decrypt", &request))?;
        let bad = |why: &str| Error::new(ErrorKind::Kms, format!("AWS KMS Decrypt with {kek}: {why}"));
        let mut answer: DecryptResponse =
            serde_json::from_slice(&body).map_err(|_| bad("the answer is not the expected JSON"))?;
        let plaintext = Zeroizing::new(answer.plaintext.take().ok_or_else(|| bad("the answer has no Plaintext"))?);
        if let Some(key_id) = &answer.key_id {
            if key_id != kek_version {
                return Err(bad(&format!("the answer names key {key_id}, not {kek_version}")));
            }
        }
        let dek = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(plaintext.trim())
                .map_err(|_| bad("the answer's Plaintext is not base64"))?,
        );
        Ok(dek)
    }
}

/// `{"fieldcrypt:dek": <hex DEK id>, "fieldcrypt:alg": <algorithm>}`: what AWS binds a wrapped
/// DEK to (its equivalent of [`WrapContext::bytes`]).
#[derive(Serialize)]
struct EncryptionContext {
    #[serde(rename = "fieldcrypt:dek")]
    dek: String,
    #[serde(rename = "fieldcrypt:alg")]
    alg: &'static str,
}

impl EncryptionContext {
    fn of(ctx: &WrapContext<'_>) -> EncryptionContext {
        EncryptionContext { dek: ctx.dek_id_hex(), alg: ctx.algorithm.name() }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptRequest<'a> {
    key_id: &'a str,
    plaintext: &'a str,
    encryption_context: EncryptionContext,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptRequest<'a> {
    ciphertext_blob: &'a str,
    key_id: &'a str,
    encryption_context: EncryptionContext,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptResponse {
    ciphertext_blob: Option<String>,
    key_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptResponse {
    plaintext: Option<String>,
    key_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// ARNs and endpoints

/// `arn:PARTITION:kms:REGION:ACCOUNT:key/ID` or `...:alias/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyArn<'a> {
    arn: &'a str,
    partition: &'a str,
    region: &'a str,
    account: &'a str,
    resource: Resource<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource<'a> {
    Key(&'a str),
    Alias(&'a str),
}

impl<'a> KeyArn<'a> {
    fn parse(arn: &'a str) -> std::result::Result<KeyArn<'a>, String> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [prefix, partition, service, region, account, resource] = parts[..] else {
            return Err("is not an ARN of the form arn:aws:kms:REGION:ACCOUNT:key/ID or ...:alias/NAME".into());
        };
        if prefix != "arn" || service != "kms" {
            return Err("is not an AWS KMS ARN (arn:aws:kms:...)".into());
        }
        if partition.is_empty() || !partition.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
            return Err(format!("has an invalid partition {partition:?}"));
        }
        if !valid_region(region) {
            return Err(format!("has an invalid region {region:?}"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("has an invalid account id {account:?} (12 digits)"));
        }
        let resource = if let Some(id) = resource.strip_prefix("key/") {
            if id.is_empty() || id.len() > 256 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(format!("has an invalid key id {id:?}"));
            }
            Resource::Key(id)
        } else if let Some(name) = resource.strip_prefix("alias/") {
            let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-');
            if name.is_empty() || name.len() > 250 || !name.bytes().all(ok) {
                return Err(format!("has an invalid alias name {name:?}"));
            }
            Resource::Alias(name)
        } else {
            return Err("names neither key/ID nor alias/NAME".into());
        };
        Ok(KeyArn { arn, partition, region, account, resource })
    }

    fn of_uri(kek: &'a KekUri) -> Result<KeyArn<'a>> {
        if kek.scheme() != "aws-kms" {
            return Err(Error::config(format!("KEK {kek} is not an aws-kms:// URI")));
        }
        KeyArn::parse(kek.name()).map_err(|why| Error::config(format!("KEK {kek} {why}")))
    }

    /// Whether `version` (a key ARN from a wrap) belongs to this URI's key: a key ARN in the same
    /// partition, region and account, and for a key URI that very key. For an alias URI any key of
    /// the account and region is accepted, since the alias may have pointed elsewhere when the
    /// data key was wrapped.
    fn accepts_version(&self, version: &str) -> std::result::Result<(), String> {
        let v = KeyArn::parse(version).map_err(|why| format!("the KEK version {why}"))?;
        let Resource::Key(_) = v.resource else {
            return Err("the KEK version is not a key ARN".into());
        };
        if (v.partition, v.region, v.account) != (self.partition, self.region, self.account) {
            return Err("the KEK version is a key of another account or region".into());
        }
        if let Resource::Key(_) = self.resource {
            if v.arn != self.arn {
                return Err(format!("the KEK version names key {version}, not {}", self.arn));
            }
        }
        Ok(())
    }
}

pub(crate) fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 64
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-')
}

/// An `http(s)://host[:port][/path]` endpoint without credentials, query or fragment, returned
/// without its trailing `/`.
pub(crate) fn check_endpoint(what: &str, endpoint: &str) -> Result<String> {
    let url = reqwest::Url::parse(endpoint.trim())
        .map_err(|e| Error::config(format!("{what} {:?} is not a URL: {e}", truncate(endpoint, 200))))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(Error::config(format!("{what} must be an http:// or https:// URL with a host")));
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err(Error::config(format!("{what} must not carry credentials, a query or a fragment")));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

// ---------------------------------------------------------------------------------------------
// Signing and errors

/// The SigV4 headers (`authorization`, `x-amz-date`, `x-amz-security-token`) for a KMS request
/// that also carries `Content-Type` and `X-Amz-Target` (signed too) and `host` (from the URL).
fn sign_request(
    credentials: &AwsCredentials,
    region: &str,
    url: &str,
    target: &str,
    body: &[u8],
    time: SystemTime,
) -> std::result::Result<Vec<(String, String)>, String> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;

    let identity = aws_credential_types::Credentials::new(
        credentials.access_key_id(),
        credentials.secret_access_key(),
        credentials.session_token().map(str::to_string),
        None,
        "fieldcrypt",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("cannot sign the request: {e}"))?
        .into();
    let headers = [("content-type", CONTENT_TYPE), ("x-amz-target", target)];
    let request = SignableRequest::new("POST", url, headers.into_iter(), SignableBody::Bytes(body))
        .map_err(|e| format!("cannot sign the request: {e}"))?;
    let (instructions, _signature) =
        sign(request, &params).map_err(|e| format!("cannot sign the request: {e}"))?.into_parts();
    let (headers, _query) = instructions.into_parts();
    Ok(headers.into_iter().map(|h| (h.name().to_string(), h.value().to_string())).collect())
}

/// The error code and message of a failed answer: JSON (`__type`, `message`) as KMS sends, or
/// XML (`<Code>`, `<Message>`) as some front ends and emulators do.
fn error_code(body: &[u8]) -> (String, String) {
    #[derive(Deserialize)]
    struct JsonError {
        #[serde(rename = "__type")]
        kind: Option<String>,
        #[serde(alias = "Message")]
        message: Option<String>,
    }
    if let Ok(e) = serde_json::from_slice::<JsonError>(body) {
        let kind = e.kind.unwrap_or_default();
        // `com.amazonaws.kms#NotFoundException` and the like: the part after `#`.
        let code = kind.rsplit('#').next().unwrap_or_default().split(':').next().unwrap_or_default();
        return (code.to_string(), e.message.unwrap_or_default());
    }
    let text = String::from_utf8_lossy(body);
    match credentials::xml_text(&text, "Code") {
        Some(code) => (code, credentials::xml_text(&text, "Message").unwrap_or_default()),
        None => (String::new(), String::new()),
    }
}

/// Maps an AWS error answer onto an error kind (see the module docs and docs/kms/aws.md).
fn error_from_reply(what: &str, status: u16, body: &[u8], credentials: &AwsCredentials) -> Error {
    let (code, message) = error_code(body);
    let kind = match code.as_str() {
        "NotFoundException" => Some((ErrorKind::KeyNotFound, false)),
        "AccessDeniedException"
        | "AccessDenied"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "MissingAuthenticationToken"
        | "AuthFailure"
        // The key is disabled, pending deletion or pending import: unusable for now.
        | "DisabledException"
        | "KMSInvalidStateException" => Some((ErrorKind::AccessDenied, false)),
        "InvalidSignatureException" | "SignatureDoesNotMatch" | "IncompleteSignature" => {
            Some((ErrorKind::AccessDenied, false))
        }
        "InvalidCiphertextException" | "IncorrectKeyException" => Some((ErrorKind::Crypto, false)),
        "ThrottlingException"
        | "Throttling"
        | "LimitExceededException"
        | "KMSInternalException"
        | "DependencyTimeoutException"
        | "KeyUnavailableException"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "InternalFailure" => Some((ErrorKind::Kms, true)),
        _ => None,
    };
    let (kind, retryable) = kind.unwrap_or(match status {
        429 | 500.. => (ErrorKind::Kms, true),
        401 | 403 => (ErrorKind::AccessDenied, false),
        _ => (ErrorKind::Kms, false),
    });
    // Signature errors may echo the canonical request (which holds the session token): their
    // text is not passed on. Other messages are cut short and scrubbed of the secrets anyway.
    let shown = if code.contains("Signature") || message.is_empty() {
        String::new()
    } else {
        format!(": {}", truncate(&credentials.scrub(&message), 300))
    };
    let code = if code.is_empty() { "no error code".to_string() } else { code };
    let message = format!("{what}: HTTP {status} {code}{shown}");
    if retryable {
        Error::retryable(kind, message)
    } else {
        Error::new(kind, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Algorithm;
    use crate::kms::test_http::stub;
    use std::time::{Duration, UNIX_EPOCH};

    const KEY: &str = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn uri(arn: &str) -> KekUri {
        KekUri::parse(&format!("aws-kms://{arn}")).unwrap()
    }

    fn client(endpoint: &str, retries: u32) -> AwsKms {
        AwsKms::new(AwsKmsConfig {
            endpoint: Some(endpoint.into()),
            credentials: Some(AwsCredentials::new("AKIDTEST", "test-secret-key", Some("test-session-token".into()))),
            http: HttpOptions { max_retries: retries, backoff: Duration::from_millis(1), ..Default::default() },
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn arns_parse_and_versions_are_checked() {
        let k = KeyArn::parse(KEY).unwrap();
        assert_eq!((k.partition, k.region, k.account), ("aws", "eu-west-1", "123456789012"));
        assert_eq!(k.resource, Resource::Key("1234abcd-12ab-34cd-56ef-1234567890ab"));
        let a = KeyArn::parse("arn:aws-cn:kms:cn-north-1:123456789012:alias/team/orders_v2").unwrap();
        assert_eq!(a.resource, Resource::Alias("team/orders_v2"));
        for bad in [
            "arn:aws:kms:eu-west-1:123456789012:key/",
            "arn:aws:kms:eu-west-1:12345:key/x",
            "arn:aws:s3:eu-west-1:123456789012:key/x",
            "arn:aws:kms:EU:123456789012:key/x",
            "arn:aws:kms:eu-west-1:123456789012:grant/x",
            "arn:aws:kms:eu-west-1:123456789012:key/a b",
            "1234abcd-12ab",
            "alias/foo",
        ] {
            assert!(KeyArn::parse(bad).is_err(), "{bad}");
        }
        assert!(k.accepts_version(KEY).is_ok());
        assert!(k.accepts_version(&KEY.replace("1234abcd", "9999abcd")).is_err(), "another key");
        let alias = KeyArn::parse("arn:aws:kms:eu-west-1:123456789012:alias/orders").unwrap();
        assert!(alias.accepts_version(KEY).is_ok(), "an alias accepts any key of its account and region");
        assert!(alias.accepts_version(&KEY.replace("eu-west-1", "us-east-1")).is_err());
        assert!(alias.accepts_version(&KEY.replace("123456789012", "210987654321")).is_err());
        assert!(alias.accepts_version("arn:aws:kms:eu-west-1:123456789012:alias/orders").is_err());
        assert!(alias.accepts_version("2").is_err());
    }

    #[test]
    fn endpoints() {
        let kms = AwsKms::new(AwsKmsConfig {
            credentials: Some(AwsCredentials::new("AKID", "secret", None)),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(kms.endpoint_for(&KeyArn::parse(KEY).unwrap()).unwrap(), "https://kms.eu-west-1.amazonaws.com");
        let cn = KeyArn::parse("arn:aws-cn:kms:cn-north-1:123456789012:key/x").unwrap();
        assert_eq!(kms.endpoint_for(&cn).unwrap(), "https://kms.cn-north-1.amazonaws.com.cn");
        let iso = KeyArn::parse("arn:aws-iso:kms:us-iso-east-1:123456789012:key/x").unwrap();
        assert_eq!(kms.endpoint_for(&iso).unwrap_err().kind(), ErrorKind::Config);
        assert_eq!(check_endpoint("e", "http://127.0.0.1:5000/").unwrap(), "http://127.0.0.1:5000");
        assert_eq!(check_endpoint("e", "https://vpce.example/kms").unwrap(), "https://vpce.example/kms");
        for bad in ["ftp://x", "http://user:pw@h", "http://h/?q=1", "not a url", "http://"] {
            assert_eq!(check_endpoint("e", bad).unwrap_err().kind(), ErrorKind::Config, "{bad}");
        }
    }

    /// The signature of a fixed request, as botocore 1.44's `SigV4Auth` computes it (recorded
    /// with moto's venv: same credentials, time, URL, headers and body).
    #[test]
    fn signature_matches_botocore() {
        let creds = AwsCredentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None);
        let time = UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 2015-08-30T12:36:00Z
        let body = br#"{"KeyId":"alias/x"}"#;
        let url = "https://kms.us-east-1.amazonaws.com/";
        let headers = sign_request(&creds, "us-east-1", url, "TrentService.Encrypt", body, time).unwrap();
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(get("authorization"), Some(BOTOCORE_AUTHORIZATION));
        assert_eq!(get("x-amz-security-token"), None);
        let with_token =
            AwsCredentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", Some("tok".into()));
        let headers = sign_request(&with_token, "us-east-1", url, "TrentService.Encrypt", body, time).unwrap();
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("x-amz-security-token"), Some("tok"));
        assert_eq!(get("authorization"), Some(BOTOCORE_AUTHORIZATION_WITH_TOKEN));
    }

    const BOTOCORE_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 \
        Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request, \
        SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
        Signature=2275c38545141149c21777e05fbf9139caa0bbc9f6f8f343eca0fabf0c53e085";
    const BOTOCORE_AUTHORIZATION_WITH_TOKEN: &str = "AWS4-HMAC-SHA256 \
        Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request, \
        SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, \
        Signature=0f1ed3e0b269fcda7e0f707ddd1ff017a65b6be078b0c9c668e453eb929e32a4";

    #[test]
    fn wrap_and_unwrap_requests() {
        let (url, seen) = stub(CONTENT_TYPE, |n, req| {
            if n == 0 {
                (
                    200,
                    format!(
                        r#"{{"CiphertextBlob":"AQIDBA==","KeyId":"{KEY}","EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}}"#
                    ),
                )
            } else {
                assert!(req.body.contains("AQIDBA=="));
                (200, format!(r#"{{"Plaintext":"BQUFBQ==","KeyId":"{KEY}"}}"#))
            }
        });
        let kms = client(&url, 0);
        let kek = uri(KEY);
        let ctx = WrapContext { dek_id: &[0xab; 16], algorithm: Algorithm::Aes256Gcm };
        let w = kms.wrap(&kek, &[5; 4], &ctx).unwrap();
        assert_eq!(w, WrappedDek { kek_version: KEY.into(), ciphertext: vec![1, 2, 3, 4] });
        assert_eq!(kms.unwrap(&kek, KEY, &w.ciphertext, &ctx).unwrap().as_slice(), &[5; 4]);
        let seen = seen.lock().unwrap();
        let enc = &seen[0];
        assert_eq!(enc.line, "POST / HTTP/1.1");
        assert_eq!(enc.header("x-amz-target"), Some("TrentService.Encrypt"));
        assert_eq!(enc.header("content-type"), Some(CONTENT_TYPE));
        assert_eq!(enc.header("x-amz-security-token"), Some("test-session-token"));
        let auth = enc.header("authorization").unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/"), "{auth}");
        assert!(auth.contains("/eu-west-1/kms/aws4_request"), "the region comes from the ARN: {auth}");
        assert!(auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target"));
        let body: serde_json::Value = serde_json::from_str(&enc.body).unwrap();
        let context = serde_json::json!({"fieldcrypt:dek": "ab".repeat(16), "fieldcrypt:alg": "AES256_GCM"});
        assert_eq!(body, serde_json::json!({"KeyId": KEY, "Plaintext": "BQUFBQ==", "EncryptionContext": context}));
        let dec: serde_json::Value = serde_json::from_str(&seen[1].body).unwrap();
        assert_eq!(dec, serde_json::json!({"CiphertextBlob": "AQIDBA==", "KeyId": KEY, "EncryptionContext": context}));
        assert_eq!(seen[1].header("x-amz-target"), Some("TrentService.Decrypt"));
        assert!(!format!("{kms:?}").contains("test-secret-key") && !format!("{kms:?}").contains("test-session"));
    }

    #[test]
    fn unwrap_refuses_a_version_of_another_key_without_asking() {
        let (url, seen) = stub(CONTENT_TYPE, |_, _| (500, String::new()));
        let kms = client(&url, 0);
        let ctx = WrapContext { dek_id: &[1; 16], algorithm: Algorithm::Aes256Gcm };
        let other = KEY.replace("1234abcd", "ffffffff");
        let e = kms.unwrap(&uri(KEY), &other, &[1, 2], &ctx).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::KeyNotFound);
        assert!(seen.lock().unwrap().is_empty());
    }

    #[test]
    fn errors_map_to_kinds() {
        let cases: &[(u16, &str, ErrorKind, bool)] = &[
            (
                400,
                r#"{"__type":"NotFoundException","message":"Key 'x' does not exist"}"#,
                ErrorKind::KeyNotFound,
                false,
            ),
            (400, r#"{"__type":"AccessDeniedException","Message":"no"}"#, ErrorKind::AccessDenied, false),
            (
                400,
                r#"{"__type":"com.amazon.coral.service#UnrecognizedClientException"}"#,
                ErrorKind::AccessDenied,
                false,
            ),
            (
                400,
                r#"{"__type":"InvalidSignatureException","message":"canonical test-session-token"}"#,
                ErrorKind::AccessDenied,
                false,
            ),
            (400, r#"{"__type":"ExpiredTokenException"}"#, ErrorKind::AccessDenied, false),
            (400, r#"{"__type":"DisabledException","message":"key is disabled"}"#, ErrorKind::AccessDenied, false),
            (400, r#"{"__type":"KMSInvalidStateException"}"#, ErrorKind::AccessDenied, false),
            (400, r#"{"__type":"InvalidCiphertextException"}"#, ErrorKind::Crypto, false),
            (400, r#"{"__type":"ThrottlingException"}"#, ErrorKind::Kms, true),
            (400, r#"{"__type":"ValidationException"}"#, ErrorKind::Kms, false),
            (503, "", ErrorKind::Kms, true),
            (
                403,
                "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>x</Message></Error></ErrorResponse>",
                ErrorKind::AccessDenied,
                false,
            ),
            (403, "<Error><Code>InvalidClientTokenId</Code></Error>", ErrorKind::AccessDenied, false),
            (403, "forbidden", ErrorKind::AccessDenied, false),
        ];
        let creds = AwsCredentials::new("AKID", "test-secret-key", Some("test-session-token".into()));
        for (status, body, kind, retryable) in cases {
            let e = error_from_reply("AWS KMS Decrypt with aws-kms://k", *status, body.as_bytes(), &creds);
            assert_eq!((e.kind(), e.is_retryable()), (*kind, *retryable), "{status} {body}: {e}");
            assert!(e.message().starts_with("AWS KMS Decrypt with aws-kms://k: HTTP "), "{e}");
            assert!(!e.message().contains("test-session-token") && !e.message().contains("test-secret"), "{e}");
        }
        let e =
            error_from_reply("w", 400, br#"{"__type":"NotFoundException","message":"Key 'x' does not exist"}"#, &creds);
        assert_eq!(e.message(), "w: HTTP 400 NotFoundException: Key 'x' does not exist");
    }

    #[test]
    fn transport_failures_are_retryable_and_retries_happen() {
        // 5xx twice, then an answer: the transport retries.
        let (url, seen) = stub(CONTENT_TYPE, |n, _| {
            if n < 2 {
                (500, r#"{"__type":"KMSInternalException"}"#.into())
            } else {
                (200, format!(r#"{{"CiphertextBlob":"AQ==","KeyId":"{KEY}"}}"#))
            }
        });
        let ctx = WrapContext { dek_id: &[1; 16], algorithm: Algorithm::Aes256Gcm };
        assert!(client(&url, 3).wrap(&uri(KEY), &[0; 32], &ctx).is_ok());
        assert_eq!(seen.lock().unwrap().len(), 3);
        // Nothing listening: a retryable Kms error naming the key.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let e = client(&format!("http://127.0.0.1:{port}"), 1).wrap(&uri(KEY), &[0; 32], &ctx).unwrap_err();
        assert!(e.kind() == ErrorKind::Kms && e.is_retryable(), "{e:?}");
        assert!(e.message().contains(KEY) && e.message().contains("failed 2 times"), "{e}");
        // A bad answer is an error, not a panic.
        let (url, _) =
            stub(CONTENT_TYPE, |_, _| (200, r#"{"KeyId":"arn:aws:kms:eu-west-1:123456789012:key/other"}"#.into()));
        assert_eq!(client(&url, 0).wrap(&uri(KEY), &[0; 32], &ctx).unwrap_err().kind(), ErrorKind::Kms);
    }

    #[test]
    fn config_debug_redacts() {
        let c = AwsKmsConfig {
            credentials: Some(AwsCredentials::new("AKIDSHOWN", "hidden-secret", Some("hidden-token".into()))),
            ..Default::default()
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDSHOWN") && !shown.contains("hidden"), "{shown}");
    }
}
