//! The CLI's HTTP client of the control API.

use anyhow::Context;
use serde_json::Value;

pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// Percent-encode a name for one path segment (`acme/orders` -> `acme%2Forders`).
pub fn segment(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Self {
        Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::new(),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    /// Send and check the response, turning an API error body into a readable error.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(Vec<u8>, &str)>,
    ) -> anyhow::Result<reqwest::Response> {
        self.send_body(method, path, body.map(|(b, t)| (reqwest::Body::from(b), t)))
            .await
    }

    /// `send` with any body (a stream, e.g. one that shows its progress).
    pub async fn send_body(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(reqwest::Body, &str)>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut r = self.request(method, path);
        if let Some((bytes, content_type)) = body {
            r = r
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes);
        }
        let resp = r.send().await.with_context(|| {
            format!("failed to reach the Flow host at {} (is `flow serve` running? set --api-url or FLOW_API_URL)", self.base)
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .unwrap_or(text);
        if status == reqwest::StatusCode::UNAUTHORIZED {
            let given = match self.token {
                Some(_) => "the token given was refused",
                None => "no token was given",
            };
            anyhow::bail!(
                "{message} (HTTP {status}): {given}; pass the host's token with --token TOKEN or the FLOW_API_TOKEN environment variable"
            );
        }
        anyhow::bail!("{message} (HTTP {status})")
    }

    pub async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(Vec<u8>, &str)>,
    ) -> anyhow::Result<Value> {
        let resp = self.send(method, path, body).await?;
        resp.json()
            .await
            .context("the host sent an invalid JSON response")
    }

    /// Read `collection`'s documents from its first, as they are stored (with `_meta`),
    /// calling `each` with each; at most `max` of them. Returns how many were read.
    pub async fn read_documents(
        &self,
        collection: &str,
        max: usize,
        mut each: impl FnMut(Value),
    ) -> anyhow::Result<usize> {
        use futures::StreamExt;
        let path = format!(
            "/v1/collections/{}/documents?offset=0&follow=false",
            segment(collection)
        );
        let mut stream = self
            .send(reqwest::Method::GET, &path, None)
            .await?
            .bytes_stream();
        let (mut n, mut pending) = (0, Vec::new());
        while n < max
            && let Some(chunk) = stream.next().await
        {
            pending.extend_from_slice(&chunk?);
            let mut start = 0;
            while n < max
                && let Some(end) = memchr::memchr(b'\n', &pending[start..])
            {
                let line = &pending[start..start + end];
                start += end + 1;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let doc = serde_json::from_slice(line).map_err(|e| {
                    anyhow::anyhow!("document {} of {collection} is not JSON: {e}", n + 1)
                })?;
                each(doc);
                n += 1;
            }
            pending.drain(..start);
        }
        Ok(n)
    }
}
