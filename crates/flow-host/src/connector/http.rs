//! Outgoing HTTP for connector plugins (the `http` capability): the host's client, limited to
//! the hosts on the task's allow-list (`endpoint.http.allow`).
//!
//! What a plugin can make the host do is bounded: only `http` and `https` URLs whose host is
//! allowed (a redirect is followed only to an allowed host), no proxy from the environment,
//! a request stops at the calling export's deadline, and a response (status line, headers and
//! body) over `hostResultBytesMax` is an error once the cap is passed, read no further.
//! Every refusal is written to the plugin's log as well as returned.

use flow_engine::{HttpAccess, HttpRequest, HttpResponse, LogLevel, LogSink, SqlBounds};
use reqwest::Url;

/// One entry of an allow-list: a host, a host and port, or `*.` and a domain.
#[derive(Clone, Debug, PartialEq)]
struct Allowed {
    /// Lowercase host name or IP literal (IPv6 without brackets), or the domain after `*.`.
    host: String,
    /// Its subdomains (`*.example.com`), not the host itself.
    subdomains: bool,
    port: Option<u16>,
}

impl Allowed {
    fn parse(entry: &str) -> Result<Allowed, String> {
        let bad = |why: &str| format!("http.allow: '{entry}' {why}");
        if entry.contains("://") || entry.contains('/') {
            return Err(bad(
                "must be a host (api.example.com), a host and port (api.example.com:8443) or *.domain, not a URL",
            ));
        }
        let (rest, subdomains) = match entry.strip_prefix("*.") {
            Some(r) => (r, true),
            None => (entry, false),
        };
        // `host:port`, or `[v6]:port`, or a bare host / IPv6 literal.
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("has an unclosed ["))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("has text after ]")),
            };
            (h, port)
        } else if rest.matches(':').count() == 1 {
            let (h, p) = rest.split_once(':').unwrap_or((rest, ""));
            (h, Some(p))
        } else {
            (rest, None)
        };
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| bad("has a port that is not 1-65535"))
            })
            .transpose()?;
        if port == Some(0) {
            return Err(bad("has a port that is not 1-65535"));
        }
        let host = host.to_ascii_lowercase();
        if host.is_empty()
            || host.contains('*')
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
        {
            return Err(bad(
                "is not a host name: use letters, digits, '.', '-' (and *. only in front)",
            ));
        }
        Ok(Allowed {
            host,
            subdomains,
            port,
        })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        let host_ok = if self.subdomains {
            host.strip_suffix(self.host.as_str())
                .is_some_and(|front| front.ends_with('.') && front.len() > 1)
        } else {
            host == self.host
        };
        host_ok && self.port.is_none_or(|p| p == port)
    }
}

/// Check an endpoint's `http` as a publish does: every allow-list entry must be a host,
/// host:port or *.domain; every header a valid name with a secret's reference for a value.
pub(crate) fn check(
    allow: &[String],
    headers: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Result<(), String> {
    allow.iter().try_for_each(|e| Allowed::parse(e).map(drop))?;
    for (name, value) in headers {
        reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("http.headers: '{name}' is not an HTTP header name"))?;
        super::secret_form(&format!("http.headers.{name}"), value).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Whether `url` may be requested under `allow`; the reason when not.
fn permitted(allow: &[Allowed], url: &Url) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "its scheme is {}, and only http and https are allowed",
            url.scheme()
        ));
    }
    let Some(host) = url.host_str() else {
        return Err("it names no host".into());
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(0);
    if allow.iter().any(|a| a.matches(host, port)) {
        Ok(())
    } else if allow.is_empty() {
        Err("this task's endpoint allows no host (endpoint.http.allow is empty)".into())
    } else {
        Err(format!(
            "{host}:{port} is not on this task's allow-list (endpoint.http.allow: {})",
            allow
                .iter()
                .map(|a| {
                    let mut s = if a.subdomains {
                        format!("*.{}", a.host)
                    } else {
                        a.host.clone()
                    };
                    if let Some(p) = a.port {
                        s.push_str(&format!(":{p}"));
                    }
                    s
                })
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Whether secrets may travel to `url`: over https, or to this machine.
fn secure(url: &Url) -> bool {
    let host = url.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    url.scheme() == "https"
        || host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The host's HTTP client of one task.
pub(crate) struct Http {
    allow: std::sync::Arc<Vec<Allowed>>,
    /// The endpoint's secret headers, read at start: added to every request.
    headers: reqwest::header::HeaderMap,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    log: LogSink,
    down: Down,
}

/// Why the last request found its server unavailable (no connection, no answer in time, or
/// 429/502/503/504), cleared by any other answer: a task whose plugin fails right after
/// retries with backoff instead of failing (`Unavailable`).
#[derive(Clone, Default)]
pub(crate) struct Down(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl Down {
    pub(crate) fn set(&self, why: Option<String>) {
        *self.0.lock().expect("http state poisoned") = why;
    }

    /// Why the server of the last request was unavailable, if it was.
    pub(crate) fn why(&self) -> Option<String> {
        self.0.lock().expect("http state poisoned").clone()
    }
}

/// Most redirects one request follows.
const REDIRECTS_MAX: usize = 5;

impl Http {
    /// A client for the hosts on `allow` (checked at publish; an entry that fails the check
    /// here is an error too), adding `headers` (secrets, read now) to every request, writing
    /// refusals to `log`.
    pub(crate) fn new(
        allow: &[String],
        headers: &std::collections::BTreeMap<String, serde_json::Value>,
        log: LogSink,
    ) -> anyhow::Result<Http> {
        let mut secret_headers = reqwest::header::HeaderMap::new();
        for (name, reference) in headers {
            let value = super::secret_value(name, reference)
                .map_err(|e| anyhow::anyhow!("http.headers: {e:#}"))?;
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())?;
            let mut value = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                anyhow::anyhow!("http.headers.{name}: the secret is not a valid header value")
            })?;
            value.set_sensitive(true);
            secret_headers.insert(name, value);
        }
        let allow = std::sync::Arc::new(
            allow
                .iter()
                .map(|e| Allowed::parse(e))
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?,
        );
        let redirect = {
            let allow = allow.clone();
            let secrets = !secret_headers.is_empty();
            reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= REDIRECTS_MAX {
                    return attempt.error(format!("more than {REDIRECTS_MAX} redirects"));
                }
                if secrets && !secure(attempt.url()) {
                    let to = flow_engine::quoted_url(attempt.url().as_str());
                    return attempt.error(format!(
                        "redirect to {to} refused: this task's secret headers (http.headers) go over https only"
                    ));
                }
                match permitted(&allow, attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(why) => {
                        let to = flow_engine::quoted_url(attempt.url().as_str());
                        attempt.error(format!("redirect to {to} refused: {why}"))
                    }
                }
            })
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(redirect)
            .user_agent(concat!("flow/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Http {
            allow,
            headers: secret_headers,
            client,
            runtime,
            log,
            down: Down::default(),
        })
    }

    /// Whether the server of the last request was unavailable: shared, for the task to read
    /// after its plugin failed.
    pub(crate) fn down(&self) -> Down {
        self.down.clone()
    }
}

impl HttpAccess for Http {
    fn send(&mut self, request: HttpRequest, bounds: &SqlBounds) -> Result<HttpResponse, String> {
        let secrets = !self.headers.is_empty();
        let (url, method, mut headers) =
            checked_request(&self.allow, secrets, &self.log, &request)?;
        // The endpoint's own headers win over the plugin's.
        for (name, value) in &self.headers {
            headers.insert(name, value.clone());
        }
        let left = bounds
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        let deadline = || {
            format!(
                "the request to {} did not complete within the plugin's CPU deadline of {} ms per call, which host calls count against",
                flow_engine::quoted_url(&request.url),
                bounds.deadline_ms
            )
        };
        if left.is_zero() {
            return Err(deadline());
        }
        let max = bounds.result_bytes_max;
        let call = self
            .client
            .request(method, url)
            .headers(headers)
            .body(request.body);
        let down = self.down.clone();
        let result = self.runtime.block_on(async {
            tokio::time::timeout(left, async move {
                let mut response = call.send().await.map_err(|e| {
                    let why = describe(&e);
                    // No server answered (not a refused redirect, not a bad certificate).
                    if e.is_connect() || e.is_timeout() {
                        down.set(Some(why.clone()));
                    }
                    why
                })?;
                let status = response.status().as_u16();
                down.set(
                    matches!(status, 429 | 502 | 503 | 504)
                        .then(|| format!("the server answered {status}")),
                );
                let mut bytes = 16;
                let mut headers = Vec::new();
                for (name, value) in response.headers() {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    bytes += name.as_str().len() + value.len();
                    headers.push((name.as_str().to_string(), value));
                }
                let mut body = Vec::new();
                loop {
                    if bytes + body.len() > max {
                        return Err(over_cap(max));
                    }
                    match response.chunk().await.map_err(|e| describe(&e))? {
                        Some(chunk) => body.extend_from_slice(&chunk),
                        None => break,
                    }
                }
                Ok(HttpResponse {
                    status,
                    headers,
                    body,
                })
            })
            .await
        });
        match result {
            Ok(r) => r,
            Err(_elapsed) => {
                let why = deadline();
                self.down.set(Some(why.clone()));
                Err(why)
            }
        }
    }
}

/// What a request must be before it is sent (by `Http`) or answered (by a test's `Fixture`):
/// an absolute http(s) URL whose host is on the allow-list, a method, valid headers of which
/// none is `Host` (the host is the URL's, checked above), and, when the endpoint adds secret
/// headers (`secrets`), a URL they may travel to (https, or this machine). Its URL, method
/// and headers; refusals of where it goes are written to `log` too.
fn checked_request(
    allow: &[Allowed],
    secrets: bool,
    log: &LogSink,
    request: &HttpRequest,
) -> Result<(Url, reqwest::Method, reqwest::header::HeaderMap), String> {
    let refuse = |why: String| refused(log, &request.url, why);
    let url =
        Url::parse(&request.url).map_err(|e| refuse(format!("it is not an absolute URL ({e})")))?;
    permitted(allow, &url).map_err(refuse)?;
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| format!("'{}' is not an HTTP method", request.method))?;
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &request.headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("'{name}' is not an HTTP header name"))?;
        if name == reqwest::header::HOST {
            return Err("the Host header is the URL's: a request may not set it".into());
        }
        let value = reqwest::header::HeaderValue::from_str(value)
            .map_err(|_| format!("the value of header {name} is not valid in HTTP"))?;
        headers.append(name, value);
    }
    if secrets && !secure(&url) {
        return Err(refuse(
            "this task's endpoint adds secret headers (http.headers), which go over https only"
                .into(),
        ));
    }
    Ok((url, method, headers))
}

/// A refused request's error, written to the plugin's log too.
fn refused(log: &LogSink, url: &str, why: String) -> String {
    let message = format!(
        "outgoing HTTP to {} refused: {why}",
        flow_engine::quoted_url(url)
    );
    log(LogLevel::Warn, message.clone());
    message
}

fn over_cap(max: usize) -> String {
    format!(
        "the response is over the cap of {max} bytes per host call (hostResultBytesMax): request less at a time (a smaller page)"
    )
}

/// A canned response of a catalog test's `capture` step.
pub(crate) struct Canned {
    pub method: String,
    pub url: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The `http` capability of a capture run by a catalog test: requests pass the task's
/// allow-list as they would for `Http`, and are then answered from canned responses by method
/// and URL, never sent. A request none answers is an error naming it and what the responses
/// answer. No secret header is read.
pub(crate) struct Fixture {
    allow: Vec<Allowed>,
    /// Whether the endpoint has secret headers (`http.headers`), which go over https (or to
    /// loopback) only: a request that would carry them elsewhere is refused, as `Http` does.
    secrets: bool,
    /// (method, URL as parsed) -> response.
    canned: std::collections::BTreeMap<(String, String), HttpResponse>,
    log: LogSink,
    misses: Misses,
}

/// The requests a `Fixture` had no response for, as their errors: the step fails on them
/// even when the plugin swallowed the error.
#[derive(Clone, Default)]
pub(crate) struct Misses(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Misses {
    pub(crate) fn first(&self) -> Option<String> {
        self.0.lock().expect("misses poisoned").first().cloned()
    }

    fn push(&self, miss: String) {
        self.0.lock().expect("misses poisoned").push(miss);
    }
}

impl Fixture {
    /// Canned responses for a task allowed `allow`; an error when one could never be asked
    /// for (not an absolute URL, or a host off the allow-list) or two answer the same request.
    pub(crate) fn new(
        allow: &[String],
        secrets: bool,
        canned: Vec<Canned>,
        log: LogSink,
    ) -> Result<Fixture, String> {
        let allow = allow
            .iter()
            .map(|e| Allowed::parse(e))
            .collect::<Result<Vec<_>, _>>()?;
        let mut by_request = std::collections::BTreeMap::new();
        for c in canned {
            let quoted = flow_engine::quoted_url(&c.url);
            let url = Url::parse(&c.url)
                .map_err(|e| format!("response for {quoted}: it is not an absolute URL ({e})"))?;
            permitted(&allow, &url).map_err(|why| {
                format!("response for {quoted}: the capture may never request it: {why}")
            })?;
            let key = (c.method.to_ascii_uppercase(), url.to_string());
            let response = HttpResponse {
                status: c.status,
                headers: c.headers,
                body: c.body,
            };
            if by_request.insert(key, response).is_some() {
                return Err(format!("two responses for {} {quoted}", c.method));
            }
        }
        Ok(Fixture {
            allow,
            secrets,
            canned: by_request,
            log,
            misses: Misses::default(),
        })
    }

    /// Record requests without a response in `misses`.
    pub(crate) fn with_misses(mut self, misses: Misses) -> Self {
        self.misses = misses;
        self
    }
}

impl HttpAccess for Fixture {
    fn send(&mut self, request: HttpRequest, bounds: &SqlBounds) -> Result<HttpResponse, String> {
        let (url, _, _) = checked_request(&self.allow, self.secrets, &self.log, &request)?;
        let key = (request.method.to_ascii_uppercase(), url.to_string());
        let Some(response) = self.canned.get(&key) else {
            let answered: Vec<String> = self
                .canned
                .keys()
                .map(|(m, u)| format!("{m} {}", flow_engine::quoted_url(u)))
                .collect();
            let message = format!(
                "the test's responses have none for {} {} (they answer: {})",
                key.0,
                flow_engine::quoted_url(&key.1),
                if answered.is_empty() {
                    "nothing".to_string()
                } else {
                    answered.join(", ")
                }
            );
            (self.log)(LogLevel::Warn, message.clone());
            self.misses.push(message.clone());
            return Err(message);
        };
        let bytes = 16
            + response.body.len()
            + response
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>();
        if bytes > bounds.result_bytes_max {
            return Err(over_cap(bounds.result_bytes_max));
        }
        Ok(response.clone())
    }
}

/// A transport error with its causes (reqwest's own message says only "error sending request").
fn describe(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

#[cfg(test)]
mod test {
    use super::*;

    fn allow(entries: &[&str]) -> Vec<Allowed> {
        entries.iter().map(|e| Allowed::parse(e).unwrap()).collect()
    }

    #[test]
    fn the_allow_list_admits_its_hosts_ports_and_subdomains_only() {
        let list = allow(&[
            "api.example.com",
            "127.0.0.1:8080",
            "*.corp.example",
            "[::1]:9000",
        ]);
        let ok = |u: &str| permitted(&list, &Url::parse(u).unwrap()).is_ok();
        assert!(ok("https://api.example.com/v1"));
        assert!(
            ok("http://API.example.com:81/v1"),
            "any port of a bare host"
        );
        assert!(ok("http://127.0.0.1:8080/x"));
        assert!(!ok("http://127.0.0.1:8081/x"), "another port");
        assert!(!ok("http://127.0.0.1/x"), "port 80 is not 8080");
        assert!(ok("https://a.corp.example/"));
        assert!(ok("https://a.b.corp.example/"));
        assert!(!ok("https://corp.example/"), "*. is subdomains only");
        assert!(!ok("https://evilcorp.example/"));
        assert!(!ok("https://api.example.com.evil.net/"));
        assert!(ok("http://[::1]:9000/"));
        assert!(!ok("ftp://api.example.com/"));
        assert!(!ok("file:///etc/passwd"));
        let why = permitted(&list, &Url::parse("http://10.0.0.1/").unwrap()).unwrap_err();
        assert!(
            why.contains("10.0.0.1:80 is not on this task's allow-list"),
            "{why}"
        );
        let none = permitted(&[], &Url::parse("http://a/").unwrap()).unwrap_err();
        assert!(none.contains("allows no host"), "{none}");
        let secure = |u: &str| secure(&Url::parse(u).unwrap());
        assert!(secure("https://api.example.com/") && secure("http://127.0.0.1:9/"));
        assert!(secure("http://[::1]:9/") && secure("http://localhost/"));
        assert!(!secure("http://api.example.com/") && !secure("http://10.0.0.1/"));
    }

    /// A test's canned responses answer only what `Http` would send, and remember what they
    /// could not answer.
    #[test]
    fn a_fixture_refuses_what_http_refuses_and_records_misses() {
        let canned = |url: &str| Canned {
            method: "GET".into(),
            url: url.into(),
            status: 200,
            headers: vec![],
            body: b"[]".to_vec(),
        };
        let log: LogSink = std::sync::Arc::new(|_, _| {});
        let bounds = SqlBounds {
            deadline: std::time::Instant::now() + std::time::Duration::from_secs(5),
            deadline_ms: 5000,
            result_bytes_max: 1 << 20,
            txn_bytes_max: 1 << 20,
        };
        let request = |method: &str, url: &str, headers: Vec<(String, String)>| HttpRequest {
            method: method.into(),
            url: url.into(),
            headers,
            body: vec![],
        };
        let misses = Misses::default();
        let mut f = Fixture::new(
            &["api.example.com".into()],
            true,
            vec![
                canned("https://api.example.com/a"),
                canned("http://api.example.com/b"),
            ],
            log.clone(),
        )
        .unwrap()
        .with_misses(misses.clone());
        assert_eq!(
            f.send(request("get", "https://api.example.com/a", vec![]), &bounds)
                .unwrap()
                .body,
            b"[]"
        );
        let host = vec![("Host".to_string(), "evil".to_string())];
        let refused = [
            f.send(request("GET", "https://api.example.com/a", host), &bounds),
            f.send(
                request("G ET", "https://api.example.com/a", vec![]),
                &bounds,
            ),
            f.send(request("GET", "http://api.example.com/b", vec![]), &bounds),
            f.send(
                request("GET", "https://other.example.com/a", vec![]),
                &bounds,
            ),
        ];
        for (r, why) in refused.iter().zip([
            "the Host header is the URL's",
            "is not an HTTP method",
            "secret headers (http.headers), which go over https only",
            "not on this task's allow-list",
        ]) {
            let Err(e) = r else {
                panic!("{why}: not refused")
            };
            assert!(e.contains(why), "{e}");
        }
        assert_eq!(misses.first(), None, "refusals are not misses");
        let miss = f
            .send(request("GET", "https://api.example.com/c", vec![]), &bounds)
            .unwrap_err();
        assert!(miss.contains("the test's responses have none for GET https://api.example.com/c"));
        assert_eq!(misses.first(), Some(miss));
        let off_list = Fixture::new(&[], false, vec![canned("https://a.example/")], log);
        assert!(
            off_list
                .err()
                .unwrap()
                .contains("the capture may never request it")
        );
    }

    #[test]
    fn allow_list_entries_that_are_not_hosts_are_refused() {
        for bad in [
            "http://a.com",
            "a.com/x",
            "a.com:0",
            "a.com:99999",
            "*",
            "a*.com",
            "",
            "[::1",
        ] {
            assert!(Allowed::parse(bad).is_err(), "{bad} was accepted");
        }
        let no_headers = Default::default();
        assert!(check(&["a.com".into(), "b.com:443".into()], &no_headers).is_ok());
        let inline = [("Authorization".to_string(), serde_json::json!("Bearer x"))].into();
        let why = check(&[], &inline).unwrap_err();
        assert!(why.contains("a secret is never written inline"), "{why}");
        let bad_name = [("a b".to_string(), serde_json::json!({"env": "X"}))].into();
        assert!(check(&[], &bad_name).is_err());
    }
}
