//! Captures JSON or NDJSON from HTTP endpoints, page by page, through the host's `http`
//! capability: the hosts it may reach are the task's `endpoint.http.allow`, never its own
//! choice.
//!
//! Each binding's `resource` names one endpoint:
//!
//! ```yaml
//! resource:
//!   url: https://api.example.com/v1/events   # required
//!   items: /data          # where the documents are in a JSON response (default: the response
//!                         # is an array of documents, or NDJSON: one document per line)
//!   cursor: { param: after, field: /id }     # cursor pagination: the next request passes
//!                                            # the last document's /id as ?after=...
//!   offset: { param: offset }                # or offset pagination: ?offset=<documents so far>
//!   pageSize: { param: limit, value: 500 }   # optional: ?limit=500
//!   headers: { Accept: application/json }    # optional
//!   time: /updatedAt      # optional: when the source wrote each document (RFC 3339 text,
//!                         # or a number of ms since the epoch): the task's lag behind it
//! ```
//!
//! A poll fetches one page of the first binding (round robin) that has one. The checkpoint is
//! each binding's cursor or offset (by URL), committed by the host with the page's documents,
//! so a restarted capture asks for exactly the next page: nothing twice, nothing skipped.
//! When no binding has a new page the capture is idle, and the host polls again later
//! (at most the capture's `interval` later). A response that is not 2xx is an error naming
//! the URL, the status and the start of the body.
//!
//! Build: cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml

use flow_sdk::{Capture, CaptureSpec, Captured, Error, Poll, Value, http, json, serde_json};
use std::collections::BTreeMap;

struct Binding {
    url: String,
    items: Option<String>,
    cursor: Option<(String, String)>,
    offset: Option<String>,
    page_size: Option<(String, String)>,
    headers: Vec<(String, String)>,
    /// Where a document says when the source wrote it.
    time: Option<String>,
}

/// Where a binding is: the cursor (the last document's field, as text) or the offset.
#[derive(Clone, Default)]
struct Position {
    cursor: Option<String>,
    offset: u64,
}

struct SourceHttp {
    bindings: Vec<Binding>,
    positions: Vec<Position>,
    /// The binding the next poll tries first.
    next: usize,
}

fn string_at(v: &Value, field: &str, what: &str) -> Result<Option<String>, Error> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::new(format!(
            "{what}: `{field}` must be a string, not {other}"
        ))),
    }
}

fn param_pair(
    v: &Value,
    field: &str,
    second: &str,
    what: &str,
) -> Result<Option<(String, String)>, Error> {
    let Some(o) = v.get(field).filter(|o| !o.is_null()) else {
        return Ok(None);
    };
    let at = format!("{what}: {field}");
    let param = string_at(o, "param", &at)?
        .ok_or_else(|| Error::new(format!("{at}: `param` (the query parameter) is required")))?;
    let value = match o.get(second) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(Error::new(format!(
                "{at}: `{second}` is required (a string{})",
                if second == "value" {
                    " or a number"
                } else {
                    ""
                }
            )));
        }
    };
    Ok(Some((param, value)))
}

impl Binding {
    fn parse(resource: &Value, what: &str) -> Result<Binding, Error> {
        let url = string_at(resource, "url", what)?
            .ok_or_else(|| Error::new(format!("{what}: `url` is required")))?;
        let cursor = param_pair(resource, "cursor", "field", what)?;
        if let Some((_, field)) = &cursor
            && !(field.is_empty() || field.starts_with('/'))
        {
            return Err(Error::new(format!(
                "{what}: cursor.field must be a JSON pointer like /id, not {field}"
            )));
        }
        let offset = match resource.get("offset").filter(|o| !o.is_null()) {
            Some(o) => Some(
                string_at(o, "param", &format!("{what}: offset"))?.ok_or_else(|| {
                    Error::new(format!(
                        "{what}: offset: `param` (the query parameter) is required"
                    ))
                })?,
            ),
            None => None,
        };
        if cursor.is_some() && offset.is_some() {
            return Err(Error::new(format!(
                "{what}: give `cursor` or `offset`, not both"
            )));
        }
        if cursor.is_none() && offset.is_none() {
            return Err(Error::new(format!(
                "{what}: give `cursor` ({{param, field}}) or `offset` ({{param}}): without one every poll would fetch the same page again"
            )));
        }
        let headers = match resource.get("headers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(Error::new(format!("{what}: header {k} must be a string"))),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(Error::new(format!("{what}: `headers` must be an object"))),
        };
        Ok(Binding {
            url,
            items: string_at(resource, "items", what)?,
            cursor,
            offset,
            page_size: param_pair(resource, "pageSize", "value", what)?,
            headers,
            time: match string_at(resource, "time", what)? {
                Some(t) if !t.starts_with('/') => {
                    return Err(Error::new(format!(
                        "{what}: time must be a JSON pointer like /updatedAt, not {t}"
                    )));
                }
                t => t,
            },
        })
    }

    fn page_url(&self, at: &Position) -> String {
        let mut params = Vec::new();
        if let Some((param, _)) = &self.cursor
            && let Some(c) = &at.cursor
        {
            params.push((param.as_str(), c.clone()));
        }
        if let Some(param) = &self.offset {
            params.push((param.as_str(), at.offset.to_string()));
        }
        if let Some((param, value)) = &self.page_size {
            params.push((param.as_str(), value.clone()));
        }
        let mut url = self.url.clone();
        for (i, (k, v)) in params.into_iter().enumerate() {
            let sep = if i == 0 && !self.url.contains('?') {
                '?'
            } else {
                '&'
            };
            url.push(sep);
            url.push_str(&encode(k));
            url.push('=');
            url.push_str(&encode(&v));
        }
        url
    }
}

/// Percent-encode a query component.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The documents of a response body, as JSON text each.
fn documents(b: &Binding, url: &str, response: &http::Response) -> Result<Vec<String>, Error> {
    let body = std::str::from_utf8(&response.body)
        .map_err(|_| Error::new(format!("the response of {url} is not UTF-8 text")))?;
    let content_type = http::header(response, "content-type").unwrap_or("");
    let json_array = |v: Value, at: &str| -> Result<Vec<String>, Error> {
        match v {
            Value::Array(items) => Ok(items.iter().map(|d| d.to_string()).collect()),
            Value::Null => Ok(Vec::new()),
            other => Err(Error::new(format!(
                "the response of {url} has no array of documents at {at:?}: found {}",
                kind(&other)
            ))),
        }
    };
    if let Some(items) = &b.items {
        let mut v: Value = serde_json::from_str(body)
            .map_err(|e| Error::new(format!("the response of {url} is not JSON: {e}")))?;
        let found = v.pointer_mut(items).map(Value::take).unwrap_or(Value::Null);
        return json_array(found, items);
    }
    let trimmed = body.trim_start();
    let ndjson = content_type.contains("ndjson") || content_type.contains("jsonl");
    if !ndjson && trimmed.starts_with('[') {
        let v: Value = serde_json::from_str(body)
            .map_err(|e| Error::new(format!("the response of {url} is not JSON: {e}")))?;
        return json_array(v, "");
    }
    // NDJSON: each non-empty line is a document, passed on as the text it is (the host
    // parses and validates it).
    Ok(body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// When document `text` says the source wrote it, at `field`: RFC 3339 text or a number of
/// ms since the epoch. None if it does not say (lag is then not shown for it).
fn time_ms(text: &str, field: &str) -> Option<u64> {
    let doc: Value = serde_json::from_str(text).ok()?;
    match doc.pointer(field)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => u64::try_from(flow_sdk::time::rfc3339_micros(s)? / 1000).ok(),
        _ => None,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn preview(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    if body.len() > 200 {
        format!("{s}...")
    } else {
        s
    }
}

impl SourceHttp {
    fn checkpoint(&self) -> Value {
        let mut out = BTreeMap::new();
        for (b, p) in self.bindings.iter().zip(&self.positions) {
            let mut o = serde_json::Map::new();
            if let Some(c) = &p.cursor {
                o.insert("cursor".into(), json!(c));
            }
            if b.offset.is_some() {
                o.insert("offset".into(), json!(p.offset));
            }
            out.insert(b.url.clone(), Value::Object(o));
        }
        json!({ "bindings": out })
    }

    /// Fetch binding `i`'s next page; the documents, and its position after them.
    fn fetch(&self, i: usize) -> Result<(Vec<String>, Position), Error> {
        let b = &self.bindings[i];
        let at = &self.positions[i];
        let url = b.page_url(at);
        let headers: Vec<(&str, &str)> = b
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let response =
            http::get(&url, &headers).map_err(|e| Error::new(format!("GET {url}: {e}")))?;
        if !(200..300).contains(&response.status) {
            return Err(Error::new(format!(
                "GET {url}: the server answered {}: {}",
                response.status,
                preview(&response.body)
            )));
        }
        let docs = documents(b, &url, &response)?;
        let mut next = at.clone();
        next.offset += docs.len() as u64;
        if let (Some((_, field)), Some(last)) = (&b.cursor, docs.last()) {
            let doc: Value = serde_json::from_str(last).map_err(|e| {
                Error::new(format!("GET {url}: its last document is not JSON ({e})"))
            })?;
            next.cursor = Some(match doc.pointer(field) {
                Some(Value::String(s)) => s.clone(),
                Some(v @ Value::Number(_)) => v.to_string(),
                other => {
                    return Err(Error::new(format!(
                        "GET {url}: the last document has no cursor at {field} (a string or number), found {}: {}",
                        other.map(kind).unwrap_or("nothing"),
                        preview(last.as_bytes())
                    )));
                }
            });
        }
        Ok((docs, next))
    }
}

impl Capture for SourceHttp {
    fn open(spec: CaptureSpec, checkpoint: Option<Value>) -> Result<Self, Error> {
        let mut bindings = Vec::new();
        for (i, b) in spec.bindings.iter().enumerate() {
            bindings.push(Binding::parse(
                &b.resource,
                &format!("binding {i} ({})", b.target),
            )?);
        }
        let saved = checkpoint
            .as_ref()
            .and_then(|c| c.get("bindings"))
            .cloned()
            .unwrap_or(Value::Null);
        let positions = bindings
            .iter()
            .map(|b| {
                let p = &saved[&b.url];
                Position {
                    cursor: p["cursor"].as_str().map(str::to_string),
                    offset: p["offset"].as_u64().unwrap_or(0),
                }
            })
            .collect();
        Ok(SourceHttp {
            bindings,
            positions,
            next: 0,
        })
    }

    fn poll(&mut self, out: &mut Captured) -> Result<Poll, Error> {
        let n = self.bindings.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            let (docs, position) = self.fetch(i)?;
            if docs.is_empty() {
                continue;
            }
            if let Some(field) = &self.bindings[i].time
                && let Some(ms) = docs.iter().filter_map(|d| time_ms(d, field)).max()
            {
                flow_sdk::source_time(ms);
            }
            for d in docs {
                out.document_text(i, d);
            }
            self.positions[i] = position;
            self.next = (i + 1) % n;
            out.checkpoint(&self.checkpoint());
            return Ok(Poll::More);
        }
        Ok(Poll::Idle)
    }
}

flow_sdk::export_capture!(SourceHttp);

#[cfg(test)]
mod test {
    #[test]
    fn times_of_documents() {
        use super::time_ms as ms;
        assert_eq!(ms(r#"{"at": 1234}"#, "/at"), Some(1234));
        assert_eq!(
            ms(r#"{"at": "2026-12-07T03:20:00.123Z"}"#, "/at"),
            Some(1_796_613_600_123)
        );
        assert_eq!(ms(r#"{"at": "1969-12-31T23:59:59Z"}"#, "/at"), None);
        assert_eq!(ms(r#"{"at": "no"}"#, "/at"), None);
        assert_eq!(ms(r#"{"other": 1}"#, "/at"), None);
    }
}
