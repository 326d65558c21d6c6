//! Local HTTP stand-ins for the KMS clients' unit tests: each connection carries one request,
//! which is read whole ([`read_request`]) and answered with a JSON body before the connection
//! closes ([`respond`]). [`stub`] is a ready-made server; tests that need another order of
//! answering build theirs from the two functions.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A request as a stand-in saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `POST /path?query HTTP/1.1`.
    pub line: String,
    pub method: String,
    /// The request target: path and query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// Reads one request: the request line, the headers, and a body of `Content-Length` bytes. None
/// when the connection closes before a request line.
pub fn read_request(stream: &TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let line = line.trim_end().to_string();
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((n, v)) = h.trim_end().split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0usize);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Seen { line, method, path, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// Answers `status` with `body` as `content_type` and closes the connection.
pub fn respond(mut stream: TcpStream, status: u16, content_type: &str, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Starts a stand-in answering requests one at a time: `answer(n, request)` gives the status and
/// body (of type `content_type`) of the answer to the n-th request (from 0). Returns its URL
/// (`http://127.0.0.1:PORT`) and every request it saw.
pub fn stub(
    content_type: &'static str,
    answer: impl Fn(usize, &Seen) -> (u16, String) + Send + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut n = 0;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let Some(request) = read_request(&stream) else { continue };
            let (status, text) = answer(n, &request);
            n += 1;
            log.lock().unwrap().push(request);
            respond(stream, status, content_type, &text);
        }
    });
    (url, seen)
}
