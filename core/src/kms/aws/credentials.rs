//! Where the AWS KMS client gets its credentials: a small provider chain, tried in this order.
//!
//! 1. Explicit credentials in [`AwsKmsConfig::credentials`](super::AwsKmsConfig).
//! 2. The environment: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`).
//!    Skipped when `AwsKmsConfig::profile` names a profile: a choice made in code beats ambient
//!    variables.
//! 3. The shared files: profile `AwsKmsConfig::profile`, else `AWS_PROFILE`, else `default`, in
//!    the credentials file (`AwsKmsConfig::credentials_file`, else `AWS_SHARED_CREDENTIALS_FILE`,
//!    else `~/.aws/credentials`; sections `[NAME]`) and the config file
//!    (`AwsKmsConfig::config_file`, else `AWS_CONFIG_FILE`, else `~/.aws/config`; sections
//!    `[profile NAME]` and `[default]`); the credentials file wins for a key both set. A profile
//!    holds static keys, or `role_arn` + `web_identity_token_file` (+ `role_session_name`).
//! 4. Web identity: `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (+ `AWS_ROLE_SESSION_NAME`) →
//!    STS `AssumeRoleWithWebIdentity` → temporary credentials, cached until shortly before they
//!    expire; the token file is read again at each refresh (Kubernetes rotates it).
//!
//! The first source that is configured wins. A source configured only in part (an access key
//! without its secret, a profile that names a role but no token file) is an error rather than a
//! reason to fall through to the next: it is a mistake the operator wants to hear about.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, ErrorKind, Result};
use crate::http::{truncate, HttpClient, SendError};

/// Temporary credentials are refreshed once they have less than this left.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// An AWS access key: id, secret and, for temporary credentials, a session token. `Debug` shows
/// the access key id only.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct AwsCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl AwsCredentials {
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> AwsCredentials {
        AwsCredentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: session_token.filter(|t| !t.is_empty()),
        }
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub(crate) fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    pub(crate) fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref()
    }

    /// Removes the secret and the session token from `text` (an error message from a server).
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in [Some(self.secret_access_key.as_str()), self.session_token.as_deref()].into_iter().flatten() {
            if secret.len() >= 8 {
                out = out.replace(secret, "<redacted>");
            }
        }
        out
    }

    fn validate(&self, from: &str) -> Result<()> {
        if self.access_key_id.trim().is_empty() || self.secret_access_key.is_empty() {
            return Err(Error::config(format!("AWS credentials from {from} have an empty access key id or secret")));
        }
        let printable = |s: &str| s.chars().all(|c| c.is_ascii_graphic());
        if !printable(&self.access_key_id)
            || !printable(&self.secret_access_key)
            || !self.session_token.as_deref().is_none_or(printable)
        {
            return Err(Error::config(format!(
                "AWS credentials from {from} contain spaces or characters that are not printable ASCII"
            )));
        }
        Ok(())
    }
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Locations of the shared files given in the configuration (else the environment's or `~/.aws`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SharedFiles<'a> {
    pub credentials: Option<&'a Path>,
    pub config: Option<&'a Path>,
}

/// Reads an environment variable; tests pass a map instead of the process environment.
pub(crate) type EnvFn<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The source the chain chose, able to hand out current credentials.
pub(crate) enum CredentialSource {
    Static { credentials: AwsCredentials, from: String },
    WebIdentity(WebIdentity),
}

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl CredentialSource {
    /// Runs the chain. `explicit`, `profile` and `sts_endpoint` come from the client's
    /// configuration; everything else from `env`.
    pub(crate) fn resolve(
        explicit: Option<&AwsCredentials>,
        profile: Option<&str>,
        files: SharedFiles<'_>,
        sts_endpoint: Option<&str>,
        env: EnvFn<'_>,
    ) -> Result<CredentialSource> {
        // 1. explicit
        if let Some(credentials) = explicit {
            credentials.validate("the client configuration")?;
            return Ok(CredentialSource::Static {
                credentials: credentials.clone(),
                from: "the client configuration".into(),
            });
        }
        // 2. environment (skipped when the configuration names a profile: an explicit choice
        // in code beats ambient variables)
        let from_env = if profile.is_none() { env } else { &|_: &str| None };
        let id = from_env("AWS_ACCESS_KEY_ID").or_else(|| from_env("AWS_ACCESS_KEY"));
        let secret = Zeroizing::new(from_env("AWS_SECRET_ACCESS_KEY").or_else(|| from_env("AWS_SECRET_KEY")));
        match (id, secret.as_ref()) {
            (Some(id), Some(secret)) => {
                let credentials = AwsCredentials::new(id, secret.as_str(), from_env("AWS_SESSION_TOKEN"));
                credentials.validate("the environment")?;
                return Ok(CredentialSource::Static { credentials, from: "the environment".into() });
            }
            (Some(_), None) => {
                return Err(Error::config("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"));
            }
            (None, Some(_)) => {
                return Err(Error::config("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not"));
            }
            (None, None) => {}
        }
        // 3. shared credentials and config files
        let explicit_profile = profile.map(str::to_string).or_else(|| env("AWS_PROFILE"));
        let profile_name = explicit_profile.clone().unwrap_or_else(|| "default".to_string());
        let home = env("HOME").or_else(|| env("USERPROFILE")).map(PathBuf::from);
        let credentials_path = files
            .credentials
            .map(Path::to_path_buf)
            .or_else(|| env("AWS_SHARED_CREDENTIALS_FILE").map(|p| expand_home(&p, home.as_deref())))
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join("credentials")));
        let config_path = files
            .config
            .map(Path::to_path_buf)
            .or_else(|| env("AWS_CONFIG_FILE").map(|p| expand_home(&p, home.as_deref())))
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join("config")));
        let files = ProfileFiles::load(credentials_path.as_deref(), config_path.as_deref())?;
        let sts = || sts_endpoint_from(sts_endpoint, env);
        if let Some(found) = files.profile(&profile_name) {
            let from = format!("profile {profile_name:?} ({})", found.files.join(", "));
            return found.into_source(&profile_name, from, sts(), env);
        }
        if explicit_profile.is_some() {
            return Err(Error::config(format!("AWS profile {profile_name:?} is not in {}", files.describe_paths())));
        }
        // 4. web identity
        let token_file = env("AWS_WEB_IDENTITY_TOKEN_FILE");
        let role_arn = env("AWS_ROLE_ARN");
        match (token_file, role_arn) {
            (Some(token_file), Some(role_arn)) => Ok(CredentialSource::WebIdentity(WebIdentity::new(
                PathBuf::from(token_file),
                role_arn,
                env("AWS_ROLE_SESSION_NAME"),
                sts()?,
                "the environment (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN)".into(),
            ))),
            (Some(_), None) => Err(Error::config("AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not")),
            (None, Some(_)) => Err(Error::config("AWS_ROLE_ARN is set but AWS_WEB_IDENTITY_TOKEN_FILE is not")),
            (None, None) => Err(Error::config(format!(
                "no AWS credentials found: none in the client configuration, none in the environment \
                 (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), no profile {profile_name:?} in {}, no web identity \
                 (AWS_WEB_IDENTITY_TOKEN_FILE/AWS_ROLE_ARN)",
                files.describe_paths()
            ))),
        }
    }

    /// Which source this is, for logs and `Debug` (never a secret).
    pub(crate) fn describe(&self) -> String {
        match self {
            CredentialSource::Static { credentials, from } => {
                format!("access key {} from {from}", credentials.access_key_id)
            }
            CredentialSource::WebIdentity(w) => {
                format!("web identity for role {} via {} from {}", w.role_arn, w.sts_endpoint, w.from)
            }
        }
    }

    /// Current credentials; for web identity, from the cache or a fresh STS call. Must run off
    /// any async runtime (it may make an HTTP call).
    pub(crate) fn credentials(&self, http: &HttpClient) -> Result<AwsCredentials> {
        match self {
            CredentialSource::Static { credentials, .. } => Ok(credentials.clone()),
            CredentialSource::WebIdentity(w) => w.credentials(http, SystemTime::now()),
        }
    }
}

fn expand_home(path: &str, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

/// The STS endpoint: the configuration's, else `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`,
/// else the regional endpoint of `AWS_REGION` / `AWS_DEFAULT_REGION`, else the global one.
fn sts_endpoint_from(configured: Option<&str>, env: EnvFn<'_>) -> Result<String> {
    let endpoint = match configured.map(str::to_string).or_else(|| env("AWS_ENDPOINT_URL_STS")) {
        Some(e) => e,
        None => match env("AWS_ENDPOINT_URL") {
            Some(e) => e,
            None => match env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")) {
                Some(region) if super::valid_region(&region) => {
                    let suffix = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
                    format!("https://sts.{region}.{suffix}")
                }
                Some(region) => return Err(Error::config(format!("AWS region {region:?} is not valid"))),
                None => "https://sts.amazonaws.com".to_string(),
            },
        },
    };
    super::check_endpoint("STS endpoint", &endpoint)
}

// ---------------------------------------------------------------------------------------------
// Shared config and credentials files

/// One parsed INI file: section name -> (lower-case key -> value). Later sections and keys of the
/// same name override earlier ones.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Ini {
    pub sections: BTreeMap<String, BTreeMap<String, String>>,
}

/// Parses the AWS shared-file dialect of INI: `[section]` headers (a comment may follow the
/// `]`), `key = value` properties, full-line comments starting with `#` or `;`, inline comments
/// in values only after whitespace (`key = value # note`; a secret may contain `#` or `;` not
/// preceded by whitespace), indented continuation lines (sub-properties such as `s3 =` blocks,
/// kept appended to the value), blank lines. A property before any section, or a line that is
/// neither, is an error that names the line (never its contents: it might hold a secret).
pub(crate) fn parse_ini(text: &str, file: &str) -> Result<Ini> {
    let mut ini = Ini::default();
    let mut section: Option<String> = None;
    let mut last_key: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let bad = |what: &str| Error::config(format!("{file} line {line_no}: {what}"));
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if trimmed.starts_with('[') {
            let Some(end) = trimmed.find(']') else {
                return Err(bad("section header without a closing ']'"));
            };
            let rest = trimmed[end + 1..].trim();
            if !(rest.is_empty() || rest.starts_with('#') || rest.starts_with(';')) {
                return Err(bad("text after a section header"));
            }
            let name = trimmed[1..end].trim();
            if name.is_empty() {
                return Err(bad("empty section name"));
            }
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            ini.sections.entry(name.clone()).or_default();
            section = Some(name);
            last_key = None;
            continue;
        }
        let Some(current) = section.as_ref() else {
            return Err(bad("a property before any [section]"));
        };
        let props = ini.sections.get_mut(current).expect("section was inserted");
        if raw.starts_with([' ', '\t']) {
            // A continuation of the previous property (e.g. the lines of an `s3 =` block).
            let Some(key) = last_key.as_ref() else {
                return Err(bad("an indented line that continues no property"));
            };
            let value = props.get_mut(key).expect("last key was inserted");
            value.push('\n');
            value.push_str(strip_inline_comment(trimmed));
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            return Err(bad("expected `key = value`"));
        };
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() {
            return Err(bad("empty property name"));
        }
        props.insert(key.clone(), strip_inline_comment(value.trim()).to_string());
        last_key = Some(key);
    }
    Ok(ini)
}

/// `value # comment` -> `value`; `a#b` stays (a comment needs whitespace before it).
fn strip_inline_comment(value: &str) -> &str {
    let bytes = value.as_bytes();
    for i in 1..bytes.len() {
        if (bytes[i] == b'#' || bytes[i] == b';') && bytes[i - 1].is_ascii_whitespace() {
            return value[..i].trim_end();
        }
    }
    value
}

/// The credentials file and the config file, parsed.
struct ProfileFiles {
    credentials: Option<(String, Ini)>,
    config: Option<(String, Ini)>,
    paths: Vec<String>,
}

/// The properties of one profile merged from both files (credentials file wins), and which files
/// had it.
struct FoundProfile {
    props: BTreeMap<String, String>,
    files: Vec<String>,
}

impl ProfileFiles {
    fn load(credentials: Option<&Path>, config: Option<&Path>) -> Result<ProfileFiles> {
        let read = |path: Option<&Path>| -> Result<Option<(String, Ini)>> {
            let Some(path) = path else { return Ok(None) };
            let shown = path.display().to_string();
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let text = Zeroizing::new(text);
                    Ok(Some((shown.clone(), parse_ini(&text, &shown)?)))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::config(format!("cannot read {shown}: {e}"))),
            }
        };
        let paths = [credentials, config].into_iter().flatten().map(|p| p.display().to_string()).collect();
        Ok(ProfileFiles { credentials: read(credentials)?, config: read(config)?, paths })
    }

    fn describe_paths(&self) -> String {
        if self.paths.is_empty() {
            "the shared AWS files (no home directory)".to_string()
        } else {
            self.paths.join(" or ")
        }
    }

    fn profile(&self, name: &str) -> Option<FoundProfile> {
        let mut props = BTreeMap::new();
        let mut files = Vec::new();
        // The config file names profiles `[profile NAME]`; `[default]` is accepted there too.
        if let Some((path, ini)) = &self.config {
            let mut found = false;
            if name == "default" {
                if let Some(p) = ini.sections.get("default") {
                    props.extend(p.clone());
                    found = true;
                }
            }
            if let Some(p) = ini.sections.get(&format!("profile {name}")) {
                props.extend(p.clone());
                found = true;
            }
            if found {
                files.push(path.clone());
            }
        }
        // The credentials file names profiles `[NAME]` and overrides the config file.
        if let Some((path, ini)) = &self.credentials {
            if let Some(p) = ini.sections.get(name) {
                props.extend(p.clone());
                files.push(path.clone());
            }
        }
        (!files.is_empty()).then_some(FoundProfile { props, files })
    }
}

impl FoundProfile {
    fn into_source(
        mut self,
        name: &str,
        from: String,
        sts: Result<String>,
        env: EnvFn<'_>,
    ) -> Result<CredentialSource> {
        let result = self.source(name, from, sts, env);
        for value in self.props.values_mut() {
            value.zeroize();
        }
        result
    }

    fn source(&self, name: &str, from: String, sts: Result<String>, env: EnvFn<'_>) -> Result<CredentialSource> {
        let get = |k: &str| self.props.get(k).filter(|v| !v.is_empty()).cloned();
        match (get("aws_access_key_id"), get("aws_secret_access_key")) {
            (Some(id), Some(secret)) => {
                let secret = Zeroizing::new(secret);
                let credentials = AwsCredentials::new(id, secret.as_str(), get("aws_session_token"));
                credentials.validate(&from)?;
                return Ok(CredentialSource::Static { credentials, from });
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::config(format!(
                    "{from} has only one of aws_access_key_id and aws_secret_access_key"
                )));
            }
            (None, None) => {}
        }
        match (get("web_identity_token_file"), get("role_arn")) {
            (Some(token_file), Some(role_arn)) => {
                let home = env("HOME").or_else(|| env("USERPROFILE")).map(PathBuf::from);
                return Ok(CredentialSource::WebIdentity(WebIdentity::new(
                    expand_home(&token_file, home.as_deref()),
                    role_arn,
                    get("role_session_name"),
                    sts?,
                    from,
                )));
            }
            (Some(_), None) => {
                return Err(Error::config(format!("{from} has web_identity_token_file but no role_arn")));
            }
            _ => {}
        }
        let unsupported: Vec<&str> = ["source_profile", "credential_source", "credential_process", "sso_session"]
            .into_iter()
            .chain(self.props.keys().map(String::as_str).filter(|k| k.starts_with("sso_")))
            .filter(|k| self.props.contains_key(*k))
            .collect();
        if !unsupported.is_empty() {
            return Err(Error::config(format!(
                "{from} uses {}, which fieldcrypt does not support: give it static keys or \
                 role_arn + web_identity_token_file, or use the environment",
                unsupported.join(", ")
            )));
        }
        Err(Error::config(format!("AWS profile {name:?} ({from}) holds no credentials")))
    }
}

// ---------------------------------------------------------------------------------------------
// Web identity (STS AssumeRoleWithWebIdentity)

pub(crate) struct WebIdentity {
    token_file: PathBuf,
    role_arn: String,
    session_name: String,
    sts_endpoint: String,
    from: String,
    cache: Mutex<Option<(AwsCredentials, SystemTime)>>,
}

impl WebIdentity {
    fn new(
        token_file: PathBuf,
        role_arn: String,
        session_name: Option<String>,
        sts_endpoint: String,
        from: String,
    ) -> WebIdentity {
        let session_name = session_name.unwrap_or_else(|| {
            let millis = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
            format!("fieldcrypt-{millis}")
        });
        WebIdentity { token_file, role_arn, session_name, sts_endpoint, from, cache: Mutex::new(None) }
    }

    /// Cached credentials while they have more than [`REFRESH_MARGIN`] left, else fresh ones.
    /// The lock is held across the STS call: concurrent callers wait for one refresh.
    pub(crate) fn credentials(&self, http: &HttpClient, now: SystemTime) -> Result<AwsCredentials> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((credentials, expires)) = cache.as_ref() {
            if now + REFRESH_MARGIN < *expires {
                return Ok(credentials.clone());
            }
        }
        let (credentials, expires) = self.assume_role(http)?;
        *cache = Some((credentials.clone(), expires));
        Ok(credentials)
    }

    fn assume_role(&self, http: &HttpClient) -> Result<(AwsCredentials, SystemTime)> {
        let token = Zeroizing::new(std::fs::read_to_string(&self.token_file).map_err(|e| {
            Error::config(format!("cannot read the web identity token file {}: {e}", self.token_file.display()))
        })?);
        let token = token.trim();
        if token.is_empty() {
            return Err(Error::config(format!("the web identity token file {} is empty", self.token_file.display())));
        }
        let body = Zeroizing::new(
            form_urlencoded::Serializer::new(String::new())
                .append_pair("Action", "AssumeRoleWithWebIdentity")
                .append_pair("Version", "2011-06-15")
                .append_pair("RoleArn", &self.role_arn)
                .append_pair("RoleSessionName", &self.session_name)
                .append_pair("WebIdentityToken", token)
                .finish(),
        );
        let url = format!("{}/", self.sts_endpoint);
        let what = format!("STS AssumeRoleWithWebIdentity for role {} at {}", self.role_arn, self.sts_endpoint);
        let reply = http
            .send(&|c| {
                c.post(&url)
                    .header("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
                    .header("Accept", "application/xml")
                    .body(body.as_bytes().to_vec())
            })
            .map_err(|e| match e {
                SendError::Invalid(_) => Error::config(format!("{what}: {}", e.describe())),
                _ => Error::retryable(ErrorKind::Kms, format!("{what}: {}", e.describe())),
            })?;
        let text = Zeroizing::new(String::from_utf8_lossy(&reply.body).into_owned());
        if reply.status != 200 {
            let code = xml_text(&text, "Code").unwrap_or_default();
            let message = xml_text(&text, "Message").map(|m| truncate(&m, 300).to_string()).unwrap_or_default();
            let detail = format!("{what}: HTTP {} {code}: {message}", reply.status);
            return Err(match (reply.status, code.as_str()) {
                (429, _) | (500.., _) | (_, "IDPCommunicationError" | "Throttling" | "ServiceUnavailable") => {
                    Error::retryable(ErrorKind::Kms, detail)
                }
                (401 | 403, _)
                | (_, "InvalidIdentityToken" | "ExpiredTokenException" | "AccessDenied" | "IDPRejectedClaim") => {
                    Error::new(ErrorKind::AccessDenied, detail)
                }
                _ => Error::new(ErrorKind::Kms, detail),
            });
        }
        parse_sts_credentials(&text).map_err(|e| Error::new(ErrorKind::Kms, format!("{what}: {e}")))
    }
}

/// The credentials and their expiry in an `AssumeRoleWithWebIdentityResponse`.
pub(crate) fn parse_sts_credentials(xml: &str) -> std::result::Result<(AwsCredentials, SystemTime), String> {
    let block = xml_text(xml, "Credentials").ok_or("the answer holds no Credentials")?;
    let field = |name: &str| xml_text(&block, name).ok_or_else(|| format!("the answer's Credentials lack {name}"));
    let credentials = AwsCredentials::new(
        field("AccessKeyId")?,
        Zeroizing::new(field("SecretAccessKey")?).as_str(),
        Some(field("SessionToken")?),
    );
    credentials.validate("STS").map_err(|e| e.message().to_string())?;
    let expiration = field("Expiration")?;
    let expires =
        aws_smithy_types::DateTime::from_str(expiration.trim(), aws_smithy_types::date_time::Format::DateTime)
            .ok()
            .and_then(|t| SystemTime::try_from(t).ok())
            .ok_or_else(|| format!("the answer's Expiration {expiration:?} is not an RFC 3339 time"))?;
    Ok((credentials, expires))
}

/// The unescaped text between the first `<tag>` and the next `</tag>` (a tiny XML reader for
/// the flat answers of STS; attributes on the tag are allowed, CDATA is not used by STS).
pub(crate) fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open_plain = format!("<{tag}>");
    let open_attr = format!("<{tag} ");
    let start = match (xml.find(&open_plain), xml.find(&open_attr)) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => return None,
    };
    let content_start = start + xml[start..].find('>')? + 1;
    let close = format!("</{tag}>");
    let end = content_start + xml[content_start..].find(&close)?;
    Some(xml_unescape(xml[content_start..end].trim()))
}

fn xml_unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x").or_else(|| entity.strip_prefix("#X")) {
                    u32::from_str_radix(hex, 16).ok()
                } else {
                    entity.strip_prefix('#').and_then(|d| d.parse().ok())
                };
                code.and_then(char::from_u32)
            }
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k: &str| map.get(k).cloned()
    }

    #[test]
    fn ini_sections_comments_continuations_and_overrides() {
        let text = "\
# full-line comment
; another
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key=abc#def;ghi   ; trailing comment
  
[profile dev] # comment after header
region = eu-west-1
s3 =
  max_concurrent_requests = 10
  max_queue_size = 1000
AWS_Session_Token = tok
[  profile   dev  ]
region = us-east-2
";
        let ini = parse_ini(text, "f").unwrap();
        let d = &ini.sections["default"];
        assert_eq!(d["aws_access_key_id"], "AKIDDEFAULT");
        assert_eq!(d["aws_secret_access_key"], "abc#def;ghi", "a comment needs whitespace before it");
        let dev = &ini.sections["profile dev"];
        assert_eq!(dev["region"], "us-east-2", "a later section of the same name overrides");
        assert_eq!(dev["s3"], "\nmax_concurrent_requests = 10\nmax_queue_size = 1000");
        assert_eq!(dev["aws_session_token"], "tok", "keys are case-insensitive");
    }

    #[test]
    fn ini_errors_name_the_line_not_its_contents() {
        let e = parse_ini("aws_secret_access_key = SECRETVALUE\n", "creds").unwrap_err();
        assert!(e.message().contains("creds line 1"), "{e}");
        assert!(!e.message().contains("SECRETVALUE"));
        assert!(parse_ini("[default\n", "f").is_err());
        assert!(parse_ini("[default]\njust words SECRET\n", "f").unwrap_err().message().contains("line 2"));
        assert!(!parse_ini("[default]\njust words SECRET\n", "f").unwrap_err().message().contains("SECRET"));
        assert!(parse_ini("[]\n", "f").is_err());
        assert!(parse_ini("[a] junk\n", "f").is_err());
        assert_eq!(parse_ini("", "f").unwrap(), Ini::default());
    }

    struct Files {
        dir: PathBuf,
    }

    impl Files {
        fn new(credentials: Option<&str>, config: Option<&str>) -> Files {
            let dir = std::env::temp_dir().join(format!(
                "fieldcrypt-aws-creds-{}-{:x}",
                std::process::id(),
                rand::random::<u64>()
            ));
            std::fs::create_dir_all(dir.join(".aws")).unwrap();
            if let Some(c) = credentials {
                std::fs::write(dir.join(".aws/credentials"), c).unwrap();
            }
            if let Some(c) = config {
                std::fs::write(dir.join(".aws/config"), c).unwrap();
            }
            Files { dir }
        }
        fn home(&self) -> &str {
            self.dir.to_str().unwrap()
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn resolve(explicit: Option<&AwsCredentials>, profile: Option<&str>, env: &[(&str, &str)]) -> Result<String> {
        let env = env_of(env);
        CredentialSource::resolve(explicit, profile, SharedFiles::default(), None, &env).map(|s| match s {
            CredentialSource::Static { credentials, from } => format!("{} from {from}", credentials.access_key_id),
            CredentialSource::WebIdentity(w) => {
                format!("web identity {} {} {} {}", w.role_arn, w.session_name, w.sts_endpoint, w.token_file.display())
            }
        })
    }

    #[test]
    fn chain_order_explicit_env_profile_web_identity() {
        let files = Files::new(
            Some("[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = filesecret\n"),
            Some("[profile other]\naws_access_key_id = AKIDCONFIG\naws_secret_access_key = cfgsecret\n"),
        );
        let home = files.home();
        let env_keys = [("AWS_ACCESS_KEY_ID", "AKIDENV"), ("AWS_SECRET_ACCESS_KEY", "envsecret")];
        let web = [("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"), ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r")];
        let all: Vec<(&str, &str)> = [("HOME", home)].into_iter().chain(env_keys).chain(web).collect();
        let explicit = AwsCredentials::new("AKIDEXPLICIT", "explicitsecret", None);

        assert_eq!(resolve(Some(&explicit), None, &all).unwrap(), "AKIDEXPLICIT from the client configuration");
        assert_eq!(resolve(None, None, &all).unwrap(), "AKIDENV from the environment");
        let no_env: Vec<(&str, &str)> = [("HOME", home)].into_iter().chain(web).collect();
        assert!(resolve(None, None, &no_env).unwrap().starts_with("AKIDFILE from profile \"default\""));
        // AWS_PROFILE, or the configured profile, picks a `[profile NAME]` of the config file.
        let with_profile: Vec<(&str, &str)> = no_env.iter().copied().chain([("AWS_PROFILE", "other")]).collect();
        assert!(resolve(None, None, &with_profile).unwrap().starts_with("AKIDCONFIG from profile \"other\""));
        assert!(resolve(None, Some("other"), &no_env).unwrap().starts_with("AKIDCONFIG"));
        // A profile named explicitly that does not exist is an error, not a fall-through.
        let e = resolve(None, Some("missing"), &no_env).unwrap_err();
        assert!(e.message().contains("\"missing\" is not in"), "{e}");
        // No files: web identity.
        let empty = Files::new(None, None);
        let web_only: Vec<(&str, &str)> =
            [("HOME", empty.home()), ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9/")].into_iter().chain(web).collect();
        let got = resolve(None, None, &web_only).unwrap();
        assert!(got.starts_with("web identity arn:aws:iam::1:role/r fieldcrypt-"), "{got}");
        assert!(got.ends_with(" http://127.0.0.1:9 /t"), "{got}");
        let named: Vec<(&str, &str)> = web_only.iter().copied().chain([("AWS_ROLE_SESSION_NAME", "s1")]).collect();
        assert!(resolve(None, None, &named).unwrap().contains(" s1 "));
        // Nothing at all.
        let e = resolve(None, None, &[("HOME", empty.home())]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("no AWS credentials found"), "{e}");
    }

    #[test]
    fn a_configured_profile_beats_the_environment_and_file_paths_can_be_given() {
        let files = Files::new(None, None);
        let config = files.dir.join("my-config");
        std::fs::write(&config, "[profile mine]\naws_access_key_id = AKIDMINE\naws_secret_access_key = s\n").unwrap();
        let env =
            env_of(&[("HOME", files.home()), ("AWS_ACCESS_KEY_ID", "AKIDENV"), ("AWS_SECRET_ACCESS_KEY", "envsecret")]);
        let paths = SharedFiles { credentials: None, config: Some(&config) };
        let got = CredentialSource::resolve(None, Some("mine"), paths, None, &env).unwrap();
        assert!(got.describe().starts_with("access key AKIDMINE from profile \"mine\""), "{}", got.describe());
        // Without the configured profile the environment wins, as in the AWS SDKs.
        let got = CredentialSource::resolve(None, None, paths, None, &env).unwrap();
        assert!(got.describe().starts_with("access key AKIDENV from the environment"));
        // A configured profile that is missing is an error even with keys in the environment.
        assert!(CredentialSource::resolve(None, Some("other"), paths, None, &env).is_err());
    }

    #[test]
    fn credentials_file_overrides_config_and_paths_come_from_env() {
        let files = Files::new(
            Some("[p]\naws_secret_access_key = fromcreds\naws_access_key_id = AKIDCREDS\n"),
            Some("[profile p]\naws_access_key_id = AKIDCFG\naws_secret_access_key = fromcfg\nregion = x\n"),
        );
        let env = [("HOME", files.home()), ("AWS_PROFILE", "p")];
        assert!(resolve(None, None, &env).unwrap().starts_with("AKIDCREDS from profile \"p\""));
        // Explicit file locations instead of ~/.aws.
        let elsewhere = Files::new(None, None);
        let creds_path = files.dir.join(".aws/credentials");
        let env = [
            ("HOME", elsewhere.home()),
            ("AWS_PROFILE", "p"),
            ("AWS_SHARED_CREDENTIALS_FILE", creds_path.to_str().unwrap()),
            ("AWS_CONFIG_FILE", "/nonexistent/config"),
        ];
        assert!(resolve(None, None, &env).unwrap().starts_with("AKIDCREDS"));
    }

    #[test]
    fn partial_and_unsupported_sources_are_errors() {
        let empty = Files::new(None, None);
        let h = ("HOME", empty.home());
        let e = resolve(None, None, &[h, ("AWS_ACCESS_KEY_ID", "AKID")]).unwrap_err();
        assert!(e.message().contains("AWS_SECRET_ACCESS_KEY is not"), "{e}");
        let e = resolve(None, None, &[h, ("AWS_SECRET_ACCESS_KEY", "topsecret")]).unwrap_err();
        assert!(!e.message().contains("topsecret"));
        assert!(resolve(None, None, &[h, ("AWS_ROLE_ARN", "arn")]).is_err());
        let e = resolve(None, None, &[h, ("AWS_ACCESS_KEY_ID", "AK ID"), ("AWS_SECRET_ACCESS_KEY", "s")]).unwrap_err();
        assert!(e.message().contains("not printable"), "{e}");

        let files = Files::new(
            Some("[half]\naws_access_key_id = AKID\n"),
            Some(
                "[profile sso]\nsso_start_url = https://x\nsso_region = us-east-1\n\
                 [profile assume]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = default\n\
                 [profile web]\nrole_arn = arn:aws:iam::1:role/w\nweb_identity_token_file = ~/token\n\
                 role_session_name = sess\n[profile empty]\nregion = eu-west-1\n",
            ),
        );
        let h = ("HOME", files.home());
        assert!(resolve(None, Some("half"), &[h]).unwrap_err().message().contains("only one of"));
        let e = resolve(None, Some("sso"), &[h]).unwrap_err();
        assert!(e.message().contains("sso_region, sso_start_url"), "{e}");
        assert!(resolve(None, Some("assume"), &[h]).unwrap_err().message().contains("source_profile"));
        assert!(resolve(None, Some("empty"), &[h]).unwrap_err().message().contains("holds no credentials"));
        let got = resolve(None, Some("web"), &[h, ("AWS_REGION", "eu-central-1")]).unwrap();
        let token = files.dir.join("token");
        assert_eq!(
            got,
            format!(
                "web identity arn:aws:iam::1:role/w sess https://sts.eu-central-1.amazonaws.com {}",
                token.display()
            )
        );
    }

    #[test]
    fn debug_and_scrub_hide_secrets() {
        let c = AwsCredentials::new("AKIDX", "very-secret-key", Some("session-token-value".into()));
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDX") && !shown.contains("very-secret") && !shown.contains("session-token"));
        assert_eq!(c.scrub("a very-secret-key b session-token-value"), "a <redacted> b <redacted>");
        let source = CredentialSource::Static { credentials: c, from: "x".into() };
        assert!(!format!("{source:?}").contains("very-secret"));
    }

    #[test]
    fn sts_answers_parse() {
        let xml = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
      <SecretAccessKey>se/cr+et&amp;x</SecretAccessKey>
      <SessionToken>to&#x6b;en</SessionToken>
      <Expiration>2030-01-02T03:04:05.123Z</Expiration>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#;
        let (c, expires) = parse_sts_credentials(xml).unwrap();
        assert_eq!(c.access_key_id(), "ASIAEXAMPLE");
        assert_eq!(c.secret_access_key(), "se/cr+et&x");
        assert_eq!(c.session_token(), Some("token"));
        assert_eq!(expires.duration_since(UNIX_EPOCH).unwrap().as_secs(), 1_893_553_445);
        assert!(parse_sts_credentials("<x/>").is_err());
        assert!(parse_sts_credentials(&xml.replace("2030-01-02T03:04:05.123Z", "soon")).is_err());
        assert_eq!(xml_text("<a x=\"1\">v&lt;</a>", "a").as_deref(), Some("v<"));
        assert_eq!(xml_unescape("a&bogus;b&"), "a&bogus;b&");
    }

    fn stub(
        answer: impl Fn(usize) -> (u16, String) + Send + 'static,
    ) -> (String, std::sync::Arc<Mutex<Vec<crate::kms::test_http::Seen>>>) {
        crate::kms::test_http::stub(super::super::CONTENT_TYPE, move |n, _| answer(n))
    }

    fn sts_answer(expires: &str) -> String {
        format!(
            "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
             <AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>secret1</SecretAccessKey>\
             <SessionToken>token1</SessionToken><Expiration>{expires}</Expiration></Credentials>\
             </AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
        )
    }

    #[test]
    fn web_identity_caches_until_shortly_before_expiry() {
        let (url, seen) = stub(|_| (200, sts_answer("2030-01-01T00:00:00Z")));
        let files = Files::new(None, None);
        let token_path = files.dir.join("token");
        std::fs::write(&token_path, "jwt-token-1\n").unwrap();
        let w = WebIdentity::new(token_path.clone(), "arn:aws:iam::1:role/r".into(), Some("s".into()), url, "t".into());
        let http = HttpClient::new("sts", &Default::default()).unwrap();
        let expiry =
            aws_smithy_types::DateTime::from_str("2030-01-01T00:00:00Z", aws_smithy_types::date_time::Format::DateTime)
                .map(|t| SystemTime::try_from(t).unwrap())
                .unwrap();
        let long_before = expiry - Duration::from_secs(3600);
        assert_eq!(w.credentials(&http, long_before).unwrap().access_key_id(), "ASIA1");
        assert_eq!(w.credentials(&http, long_before).unwrap().session_token(), Some("token1"));
        assert_eq!(seen.lock().unwrap().len(), 1, "the second call is served from the cache");
        let body = seen.lock().unwrap()[0].body.clone();
        assert!(body.contains("Action=AssumeRoleWithWebIdentity") && body.contains("WebIdentityToken=jwt-token-1"));
        assert!(body.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr") && body.contains("RoleSessionName=s"));
        // Within the refresh margin: a new call, with the token file read again.
        std::fs::write(&token_path, "jwt-token-2").unwrap();
        w.credentials(&http, expiry - Duration::from_secs(60)).unwrap();
        assert_eq!(seen.lock().unwrap().len(), 2);
        assert!(seen.lock().unwrap()[1].body.contains("WebIdentityToken=jwt-token-2"));
    }

    #[test]
    fn web_identity_errors_map_to_kinds() {
        let files = Files::new(None, None);
        let token_path = files.dir.join("token");
        std::fs::write(&token_path, "jwt").unwrap();
        let http = HttpClient::new("sts", &crate::http::HttpOptions { max_retries: 0, ..Default::default() }).unwrap();
        let denied = "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>\
                      <Message>bad token</Message></Error></ErrorResponse>";
        let (url, _) = stub(move |_| (400, denied.to_string()));
        let w = WebIdentity::new(token_path.clone(), "arn:r".into(), None, url, "t".into());
        let e = w.credentials(&http, SystemTime::now()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AccessDenied);
        assert!(e.message().contains("InvalidIdentityToken: bad token"), "{e}");
        let (url, _) = stub(|_| (503, String::new()));
        let w = WebIdentity::new(token_path.clone(), "arn:r".into(), None, url, "t".into());
        let e = w.credentials(&http, SystemTime::now()).unwrap_err();
        assert!(e.kind() == ErrorKind::Kms && e.is_retryable(), "{e:?}");
        let w =
            WebIdentity::new(files.dir.join("missing"), "arn:r".into(), None, "http://127.0.0.1:9".into(), "t".into());
        assert_eq!(w.credentials(&http, SystemTime::now()).unwrap_err().kind(), ErrorKind::Config);
    }
}
