//! The HTTP transport shared by the Schema Registry and KMS clients: one place for timeouts,
//! trusted CAs, bounded retries with jittered backoff, body limits and error text that never
//! carries a URL's credentials.
//!
//! Clients are blocking, and every exchange runs on a thread of its own ([`off_runtime`]):
//! `reqwest`'s blocking client panics on a thread that runs an async runtime, and the codec is
//! called from async code (rdkafka's `FutureProducer`). Registry and KMS calls are rare (cache
//! misses), so the thread costs nothing that matters.

use std::fmt;
use std::io::Read;
use std::time::Duration;

use rand::Rng;

use crate::error::{Error, Result};

/// No single wait between retries is longer than this, whatever the options say.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Responses larger than this are refused (schemas, KMS answers and tokens are far smaller).
pub(crate) const MAX_BODY: u64 = 16 << 20;

/// How a client talks HTTP: timeouts, retries and trusted CAs.
#[derive(Clone)]
pub struct HttpOptions {
    /// Per-attempt limit for connecting, sending and reading a response.
    pub timeout: Duration,
    /// Retries after the first attempt on connection errors, timeouts, 429 and 5xx answers.
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further retry, with jitter (each wait is
    /// between half and all of the nominal value).
    pub backoff: Duration,
    /// PEM certificates trusted in addition to the system's roots (a private CA, a test server's
    /// self-signed certificate). Verification is never switched off.
    pub ca_pem: Option<Vec<u8>>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(10),
            max_retries: 3,
            backoff: Duration::from_millis(100),
            ca_pem: None,
        }
    }
}

impl fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpOptions")
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// A reusable HTTP client (connections are pooled) with the retry policy of its options.
pub(crate) struct HttpClient {
    client: reqwest::blocking::Client,
    max_retries: u32,
    backoff: Duration,
}

/// An HTTP answer the caller interprets: any status but 429 and 5xx, or the last of those once
/// the retries are spent.
pub(crate) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why no [`Reply`] came back.
pub(crate) enum SendError {
    /// Connection errors, timeouts, 429 or 5xx on every attempt; `last` describes the last one.
    Unavailable { attempts: u32, last: String },
    /// The request could not be built (a configuration problem).
    Invalid(String),
    /// The answer was larger than [`MAX_BODY`].
    TooLarge { status: u16 },
}

impl SendError {
    /// `"failed 4 times, last: cannot connect: ..."` and the like, for the caller's message.
    pub fn describe(&self) -> String {
        match self {
            SendError::Unavailable { attempts, last } => {
                format!("failed {attempts} time{}, last: {last}", if *attempts == 1 { "" } else { "s" })
            }
            SendError::Invalid(e) => format!("cannot build the request: {e}"),
            SendError::TooLarge { status } => format!("HTTP {status} with a body over {MAX_BODY} bytes"),
        }
    }
}

impl HttpClient {
    /// `service` names the client in configuration errors ("registry", "vault"...). Must run
    /// off any async runtime (reqwest's blocking builder waits for its own thread).
    pub fn new(service: &str, options: &HttpOptions) -> Result<HttpClient> {
        if options.timeout.is_zero() {
            return Err(Error::config(format!("{service} timeout must be greater than zero")));
        }
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("fieldcrypt/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &options.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::config(format!("{service} ca_pem is not valid PEM: {e}")))?;
            if certs.is_empty() {
                return Err(Error::config(format!("{service} ca_pem holds no certificate")));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let client =
            builder.build().map_err(|e| Error::config(format!("{service} HTTP client: {}", e.without_url())))?;
        Ok(HttpClient { client, max_retries: options.max_retries, backoff: options.backoff })
    }

    /// How many attempts [`HttpClient::send`] makes at most.
    pub fn attempts(&self) -> u32 {
        self.max_retries + 1
    }

    /// Sends the request `build` makes (called again for each attempt), retrying connection
    /// errors, timeouts, 429 and 5xx with jittered exponential backoff.
    pub fn send(
        &self,
        build: &dyn Fn(&reqwest::blocking::Client) -> reqwest::blocking::RequestBuilder,
    ) -> std::result::Result<Reply, SendError> {
        self.send_with_headers(build).map(|(reply, _)| reply)
    }

    /// [`HttpClient::send`], also returning the answer's headers (the policy source needs its
    /// `ETag`).
    pub fn send_with_headers(
        &self,
        build: &dyn Fn(&reqwest::blocking::Client) -> reqwest::blocking::RequestBuilder,
    ) -> std::result::Result<(Reply, reqwest::header::HeaderMap), SendError> {
        let mut last = String::new();
        for attempt in 0..=self.max_retries {
            if attempt > 0 {
                std::thread::sleep(backoff_delay(self.backoff, attempt - 1, &mut rand::rng()));
            }
            let response = match build(&self.client).send() {
                Ok(response) => response,
                Err(e) if e.is_builder() => return Err(SendError::Invalid(e.without_url().to_string())),
                Err(e) => {
                    last = describe(&e);
                    continue;
                }
            };
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = match read_body(response) {
                Ok(body) => body,
                Err(BodyError::TooLarge) => return Err(SendError::TooLarge { status }),
                Err(BodyError::Read(e)) => {
                    last = format!("HTTP {status} then {e}");
                    continue;
                }
            };
            if status == 429 || status >= 500 {
                if attempt == self.max_retries {
                    return Ok((Reply { status, body }, headers));
                }
                last = format!("HTTP {status}");
                continue;
            }
            return Ok((Reply { status, body }, headers));
        }
        Err(SendError::Unavailable { attempts: self.max_retries + 1, last })
    }
}

/// Runs `f` on a fresh thread and waits for it: the thread has no async runtime, so reqwest's
/// blocking client may be built, used and read from there. A panic in `f` is re-raised here.
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("fieldcrypt-http".into())
            .spawn_scoped(s, f)
            .map_err(|e| Error::config(format!("cannot start a thread for an HTTP request: {e}")))?;
        match worker.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

enum BodyError {
    TooLarge,
    Read(String),
}

fn read_body(response: reqwest::blocking::Response) -> std::result::Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    let mut limited = response.take(MAX_BODY + 1);
    if let Err(e) = limited.read_to_end(&mut body) {
        // reqwest's reader wraps its own error in an io::Error.
        let text = match e.get_ref().and_then(|inner| inner.downcast_ref::<reqwest::Error>()) {
            Some(e) => describe(e),
            None => format!("reading the body failed: {e}"),
        };
        return Err(BodyError::Read(text));
    }
    if body.len() as u64 > MAX_BODY {
        return Err(BodyError::TooLarge);
    }
    Ok(body)
}

/// A transport error without its URL, with its causes (`connection refused`, `timed out`...).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut text = what.to_string();
    let mut source = e.source();
    let mut seen = 0;
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(truncate(&cause_text, 200));
        }
        source = cause.source();
        seen += 1;
        if seen > 5 {
            break;
        }
    }
    text
}

/// The wait before retry number `retry` (0 for the first): `backoff * 2^retry`, capped at
/// [`MAX_BACKOFF`], then a uniformly random point in its upper half ("equal jitter") so that
/// clients that failed together do not retry together.
pub(crate) fn backoff_delay(backoff: Duration, retry: u32, rng: &mut impl Rng) -> Duration {
    let nominal = backoff.saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX)).min(MAX_BACKOFF);
    let half = nominal / 2;
    half + half.mul_f64(rng.random::<f64>())
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let mut rng = rand::rng();
        let base = Duration::from_millis(100);
        for retry in 0..6 {
            let nominal = base * 2u32.pow(retry);
            for _ in 0..50 {
                let d = backoff_delay(base, retry, &mut rng);
                assert!(d >= nominal / 2 && d <= nominal, "retry {retry}: {d:?}");
            }
        }
        assert!(backoff_delay(base, 40, &mut rng) <= MAX_BACKOFF);
    }

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn debug_hides_the_ca() {
        let o = HttpOptions { ca_pem: Some(b"-----BEGIN CERTIFICATE-----".to_vec()), ..Default::default() };
        assert!(!format!("{o:?}").contains("BEGIN"));
    }
}
