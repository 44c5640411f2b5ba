//! A small HTTP server of numbered events, for `source-http`: what a paginated API does.
//!
//! - `GET /events?after=ID&limit=N`: NDJSON, the events with `id` > ID (all, without `after`),
//!   at most N (default 100), in `id` order: cursor pagination;
//! - `GET /pages?offset=O&limit=N`: JSON `{"data": [...]}`, events O.. of the list: offset
//!   pagination.
//!
//! `set_status` makes every answer that status instead (a source that is down); `requests`
//! counts what it was asked; `authorization` is the last request's `Authorization` header.

use serde_json::Value;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Feed {
    pub port: u16,
    events: Arc<Mutex<Vec<Value>>>,
    requests: Arc<AtomicU64>,
    status: Arc<AtomicU16>,
    authorization: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Feed {
    pub async fn start() -> Feed {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let requests: Arc<AtomicU64> = Arc::default();
        let status: Arc<AtomicU16> = Arc::default();
        let authorization: Arc<Mutex<Option<String>>> = Arc::default();
        let (e, r, s, a) = (
            events.clone(),
            requests.clone(),
            status.clone(),
            authorization.clone(),
        );
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (e, r, s, a) = (e.clone(), r.clone(), s.clone(), a.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &e, &r, &s, &a).await;
                });
            }
        });
        Feed {
            port,
            events,
            requests,
            status,
            authorization,
            task,
        }
    }

    /// `http://127.0.0.1:PORT` and `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Append events (each should have a growing integer `id`).
    pub fn push(&self, docs: impl IntoIterator<Item = Value>) {
        self.events.lock().unwrap().extend(docs);
    }

    pub fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// The `Authorization` header of the last request, if it had one.
    pub fn authorization(&self) -> Option<String> {
        self.authorization.lock().unwrap().clone()
    }

    /// Answer every request with `status` (None: serve events again).
    pub fn set_status(&self, status: Option<u16>) {
        self.status.store(status.unwrap_or(0), Ordering::SeqCst);
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answer the requests of one connection (keep-alive), until it closes.
async fn serve(
    mut conn: tokio::net::TcpStream,
    events: &Mutex<Vec<Value>>,
    requests: &AtomicU64,
    status: &AtomicU16,
    authorization: &Mutex<Option<String>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        // Read one request head (GETs carry no body).
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        requests.fetch_add(1, Ordering::SeqCst);
        let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        *authorization.lock().unwrap() = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("authorization")
                .then(|| v.trim().to_string())
        });
        let (code, content_type, body) = match status.load(Ordering::SeqCst) {
            0 => answer(&target, events),
            code => (code, "text/plain", "unavailable".to_string()),
        };
        let reply = format!(
            "HTTP/1.1 {code} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(reply.as_bytes()).await?;
    }
}

fn answer(target: &str, events: &Mutex<Vec<Value>>) -> (u16, &'static str, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |name: &str| -> Option<u64> {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse().ok())
    };
    let limit = param("limit").unwrap_or(100) as usize;
    let events = events.lock().unwrap();
    match path {
        "/events" => {
            let after = param("after").unwrap_or(0);
            let body: String = events
                .iter()
                .filter(|e| e["id"].as_u64().unwrap_or(0) > after)
                .take(limit)
                .map(|e| format!("{e}\n"))
                .collect();
            (200, "application/x-ndjson", body)
        }
        "/pages" => {
            let offset = (param("offset").unwrap_or(0) as usize).min(events.len());
            let page: Vec<&Value> = events[offset..].iter().take(limit).collect();
            (
                200,
                "application/json",
                serde_json::json!({ "data": page }).to_string(),
            )
        }
        _ => (404, "text/plain", format!("no such path {path}")),
    }
}
