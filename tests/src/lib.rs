//! Helpers for fieldcrypt's integration tests, which run against real servers on 127.0.0.1:
//!
//! ```text
//! scripts/servers.sh start all
//! eval "$(scripts/servers.sh env)"      # FIELDCRYPT_KAFKA, FIELDCRYPT_REGISTRY
//! cargo test -p fieldcrypt-it
//! scripts/servers.sh stop
//! ```
//!
//! A test whose server is not configured fails: an integration suite that skips itself when
//! nothing is running would pass on a machine where it tested nothing.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Url;
use serde_json::{json, Value};

/// The value of `name`, or a panic telling how to start the servers.
pub fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => panic!(
            "{name} is not set: start the servers and export their endpoints first:\n  \
             scripts/servers.sh start all && eval \"$(scripts/servers.sh env)\""
        ),
    }
}

/// The Confluent-compatible API of the running registry (Apicurio: `.../apis/ccompat/v7`).
pub fn registry_url() -> String {
    required_env("FIELDCRYPT_REGISTRY")
}

/// A tag unique to this test process, so reruns against one server do not collide.
pub fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        format!("{}-{:x}", std::process::id(), nanos & 0xffff_ffff)
    })
}

/// `it-<run id>-<name>`: a subject no other run uses.
pub fn unique_subject(name: &str) -> String {
    format!("it-{}-{name}", run_id())
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the repository").to_path_buf()
}

/// The text of a file given relative to the repository root (`schemas/...`, `tests/fixtures/...`).
pub fn read_repo_file(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Registers schemas through the Confluent-compatible API, as a producer's serializer would.
pub struct Ccompat {
    base: Url,
    http: reqwest::blocking::Client,
}

impl Ccompat {
    pub fn new(base: &str) -> Ccompat {
        let base = Url::parse(base.trim_end_matches('/')).unwrap_or_else(|e| panic!("bad registry url {base}: {e}"));
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Ccompat { base, http }
    }

    pub fn from_env() -> Ccompat {
        Ccompat::new(&registry_url())
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut().unwrap().pop_if_empty().extend(segments);
        url
    }

    /// `POST /subjects/{subject}/versions`; returns the schema id. `references` are
    /// `(name, subject, version)`.
    pub fn register(&self, subject: &str, schema_type: &str, schema: &str, references: &[(&str, &str, i32)]) -> i32 {
        let refs: Vec<Value> = references
            .iter()
            .map(|(name, subject, version)| json!({"name": name, "subject": subject, "version": version}))
            .collect();
        let body = json!({"schemaType": schema_type, "schema": schema, "references": refs});
        let response = self
            .http
            .post(self.url(&["subjects", subject, "versions"]))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .body(body.to_string())
            .send()
            .unwrap_or_else(|e| panic!("registering {subject}: {e}"));
        let status = response.status();
        let text = response.text().unwrap_or_default();
        assert!(status.is_success(), "registering {subject}: HTTP {status}: {text}");
        let answer: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("registering {subject}: {e}: {text}"));
        answer["id"].as_i64().unwrap_or_else(|| panic!("registering {subject}: no id in {text}")) as i32
    }
}

/// One request as a [`Capture`] saw it.
#[derive(Debug, Clone)]
pub struct CapturedRequest {
    pub request_line: String,
    /// Header lines as sent, e.g. `authorization: Basic dXNlcjpwYXNz`.
    pub headers: Vec<String>,
}

impl CapturedRequest {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// A one-connection-at-a-time HTTP listener on 127.0.0.1 that records each request and answers
/// every one with the same status and JSON body: shows what a client really sends.
pub struct Capture {
    pub url: String,
    requests: mpsc::Receiver<CapturedRequest>,
    _thread: JoinHandle<()>,
}

impl Capture {
    pub fn start(status: u16, body: &str) -> Capture {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, requests) = mpsc::channel();
        let body = body.to_string();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Some(request) = answer(stream, status, &body) {
                    if tx.send(request).is_err() {
                        return;
                    }
                }
            }
        });
        Capture { url, requests, _thread: thread }
    }

    /// The next request received (waits up to 10 s).
    pub fn next_request(&self) -> CapturedRequest {
        self.try_next_request(Duration::from_secs(10)).expect("no request reached the capture listener")
    }

    /// The next request received within `wait`, if any.
    pub fn try_next_request(&self, wait: Duration) -> Option<CapturedRequest> {
        self.requests.recv_timeout(wait).ok()
    }
}

fn answer(stream: TcpStream, status: u16, body: &str) -> Option<CapturedRequest> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
            break;
        }
        headers.push(line.trim_end().to_string());
    }
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} Captured\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    Some(CapturedRequest { request_line: request_line.trim_end().to_string(), headers })
}
