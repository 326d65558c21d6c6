//! A policy served over HTTPS, polled with `If-None-Match` so an unchanged policy costs a `304`
//! and no body. Plain HTTP is refused except to a loopback host (a dev server on this machine):
//! TLS is what stops a network attacker from holding back a new policy, which a signature
//! cannot.

use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;

use reqwest::header::{HeaderName, HeaderValue, ETAG, IF_NONE_MATCH};
use reqwest::Url;

use super::{Fetched, LastDigest, PolicySource, MAX_POLICY_DOCUMENT};
use crate::error::{Error, ErrorKind, Result};
use crate::http::{off_runtime, HttpClient, HttpOptions, SendError};

/// A policy document at a URL. Retries, timeouts and trusted CAs come from [`HttpOptions`].
pub struct HttpsSource {
    url: Url,
    /// The URL without query or fragment, for messages (a query may carry a token).
    shown: String,
    http: HttpClient,
    headers: Vec<(HeaderName, HeaderValue)>,
    etag: Mutex<Option<HeaderValue>>,
    last: LastDigest,
}

impl fmt::Debug for HttpsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsSource").field("url", &self.shown).finish_non_exhaustive()
    }
}

impl HttpsSource {
    /// `url` must be `https://`, or `http://` to `localhost`, `127.0.0.0/8` or `[::1]`.
    pub fn new(url: &str, options: &HttpOptions) -> Result<HttpsSource> {
        let url = Url::parse(url).map_err(|e| Error::config(format!("policy URL is not valid: {e}")))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::config("the policy URL must not hold credentials; send them with a header"));
        }
        let shown = shown_url(&url);
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" => {
                return Err(Error::config(format!(
                    "policy URL {shown}: plain HTTP is allowed only for loopback hosts (a local dev server); use HTTPS"
                )))
            }
            other => return Err(Error::config(format!("policy URL scheme {other:?} is not supported (use https)"))),
        }
        let http = off_runtime(|| HttpClient::new("policy source", options))?;
        Ok(HttpsSource { url, shown, http, headers: Vec::new(), etag: Mutex::new(None), last: LastDigest::default() })
    }

    /// Sends a header with every request, e.g. `Authorization`. Its value is never shown.
    pub fn header(mut self, name: &str, value: &str) -> Result<HttpsSource> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::config(format!("{name:?} is not a valid HTTP header name")))?;
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| Error::config(format!("the value of header {name} is not valid")))?;
        value.set_sensitive(true);
        self.headers.push((name, value));
        Ok(self)
    }

    fn fetch_blocking(&self) -> Result<Fetched> {
        let etag = self.etag.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let result = self.http.send_with_headers(&|client| {
            let mut request = client.get(self.url.clone());
            for (name, value) in &self.headers {
                request = request.header(name, value);
            }
            if let Some(etag) = &etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            request
        });
        let (reply, headers) = result.map_err(|e| match e {
            SendError::Invalid(_) => Error::config(format!("policy source {}: {}", self.shown, e.describe())),
            _ => Error::retryable(ErrorKind::Policy, format!("policy source {}: {}", self.shown, e.describe())),
        })?;
        match reply.status {
            304 if etag.is_some() => Ok(Fetched::Unchanged),
            200 => {
                if reply.body.len() > MAX_POLICY_DOCUMENT {
                    return Err(Error::policy(format!(
                        "policy source {}: the document is larger than {MAX_POLICY_DOCUMENT} bytes",
                        self.shown
                    )));
                }
                // Remembered only with the body it belongs to: a new ETag with a failed read
                // would make the next poll skip a policy it never saw.
                *self.etag.lock().unwrap_or_else(|e| e.into_inner()) = headers.get(ETAG).cloned();
                Ok(self.last.check(reply.body))
            }
            status => {
                let transient = status == 429 || status >= 500;
                let message = format!("policy source {}: HTTP {status}", self.shown);
                Err(if transient { Error::retryable(ErrorKind::Policy, message) } else { Error::policy(message) })
            }
        }
    }
}

impl PolicySource for HttpsSource {
    fn fetch(&self) -> Result<Fetched> {
        // reqwest's blocking client must not run on an async runtime's thread.
        off_runtime(|| self.fetch_blocking())
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}

fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn shown_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        let o = HttpOptions::default();
        assert!(HttpsSource::new("http://127.0.0.1:9/p.json", &o).is_ok());
        assert!(HttpsSource::new("http://localhost:9/p.json", &o).is_ok());
        assert!(HttpsSource::new("http://[::1]:9/p.json", &o).is_ok());
        assert!(HttpsSource::new("https://policies.example.com/p.json", &o).is_ok());
        for bad in ["http://policies.example.com/p", "ftp://x/p", "https://u:pw@h/p", "not a url"] {
            assert_eq!(HttpsSource::new(bad, &o).unwrap_err().kind(), ErrorKind::Config, "{bad}");
        }
    }

    #[test]
    fn queries_are_not_shown() {
        let s = HttpsSource::new("https://h.example/p.json?token=s3cret", &HttpOptions::default()).unwrap();
        assert_eq!(s.describe(), "https://h.example/p.json");
        assert!(!format!("{s:?}").contains("s3cret"));
    }
}
