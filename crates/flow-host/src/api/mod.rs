//! The HTTP control API (axum), versioned under `/v1`. `router` builds it without a
//! listener, so tests call it directly; `serve` binds it.

mod error;
mod metrics;
mod openapi;

pub use error::ApiError;

use crate::catalog::Bundle;
use crate::runtime::Host;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Clone)]
struct AppState {
    host: Arc<Host>,
    token: Option<Arc<str>>,
}

/// Largest request body: bundles carry components, ingests carry NDJSON batches.
const BODY_BYTES_MAX: usize = 256 << 20;

/// Documents per chunk of a streamed read.
const READ_CHUNK_DOCS: usize = 1000;

/// The API router. With a `token`, every route but `/v1/health` requires
/// `Authorization: Bearer <token>`.
pub fn router(host: Arc<Host>, token: Option<String>) -> Router {
    let state = AppState {
        host,
        token: token.map(Into::into),
    };
    Router::new()
        .route("/", get(dashboard))
        .route("/v1/health", get(health))
        .route(
            "/v1/openapi.json",
            get(|| async { Json(openapi::document()) }),
        )
        .route("/metrics", get(metrics))
        .route("/v1/catalog", get(get_catalog).post(publish))
        .route("/v1/catalog/delete", post(delete_entries))
        .route("/v1/catalog/{name}", delete(delete_entry))
        .route("/v1/collections", get(list_collections))
        .route(
            "/v1/collections/{name}/documents",
            get(read_documents).post(ingest),
        )
        .route("/v1/plugins", get(list_plugins))
        .route("/v1/plugins/{name}", post(deploy_plugin))
        .route("/v1/plugins/{name}/versions", get(plugin_history))
        .route(
            "/v1/plugins/{name}/versions/{seq}",
            delete(delete_plugin_version),
        )
        .route("/v1/plugins/{name}/rollback", post(rollback_plugin))
        .route("/v1/plugins/{name}/logs", get(plugin_logs))
        .route("/v1/tasks", get(list_tasks))
        .route("/v1/tasks/{name}", get(get_task))
        .route("/v1/tasks/{name}/{verb}", post(task_verb))
        .fallback(|| async { ApiError::not_found("no such route; see /v1/openapi.json") })
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(middleware::map_response(json_rejections))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state)
}

async fn auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // The health check and the dashboard's page (which asks for the token and sends it with
    // every API call it makes) need none.
    if let Some(token) = &state.token
        && !matches!(req.uri().path(), "/v1/health" | "/")
    {
        // The scheme is case-insensitive (RFC 9110); the token is compared in constant time.
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        if !presented.is_some_and(|p| same_secret(p.as_bytes(), token.as_bytes())) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required (Authorization: Bearer ...; the flow CLI sends it from --token or FLOW_API_TOKEN)",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Answers axum's own rejections (a body over the limit, a query that does not parse, a
/// method a route lacks) in the API's JSON error shape, keeping their status and headers.
async fn json_rejections(response: Response) -> Response {
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let status = response.status();
    if json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "too_large",
            format!("the request body is over the limit of {BODY_BYTES_MAX} bytes"),
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this route does not take that method; see /v1/openapi.json".to_string(),
        ),
        s if s.is_server_error() => ("internal", text.into_owned()),
        _ => ("invalid", text.into_owned()),
    };
    let fresh = ApiError::new(status, code, message).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, fresh.into_body())
}

/// Whether two secrets are equal, in time that depends on their lengths only.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, ApiError> + Send + 'static,
) -> Result<R, ApiError> {
    tokio::task::spawn_blocking(f).await?
}

/// The web dashboard: one page, built into the binary, that uses only the public API.
async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("dashboard.html"),
    )
        .into_response()
}

/// 200 while the host can take writes; 503 with the reason while its database cannot.
async fn health(State(s): State<AppState>) -> Response {
    match s.host.store.fault() {
        None => Json(json!({"status": "ok"})).into_response(),
        Some(f) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unhealthy", "reason": f.message, "diskFull": f.disk_full})),
        )
            .into_response(),
    }
}

async fn get_catalog(State(s): State<AppState>) -> Json<Value> {
    Json(serde_json::to_value(&s.host.catalog().spec).unwrap_or_default())
}

async fn publish(State(s): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let bundle: Bundle = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("invalid catalog bundle: {e}")))?;
    let host = s.host.clone();
    let published = blocking(move || Ok(host.publish(bundle)?)).await?;
    Ok(Json(serde_json::to_value(published).unwrap_or_default()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteBody {
    /// Collections, materializations, captures and tests to delete together.
    names: Vec<String>,
}

/// Delete several catalog entries in one transaction (`flow catalog delete A B`).
async fn delete_entries(State(s): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let req: DeleteBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("invalid delete request: {e}")))?;
    let host = s.host.clone();
    let deleted = blocking(move || Ok(host.delete(&req.names)?)).await?;
    Ok(Json(serde_json::to_value(deleted).unwrap_or_default()))
}

async fn delete_entry(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let host = s.host.clone();
    let deleted = blocking(move || Ok(host.delete(&[name])?)).await?;
    Ok(Json(serde_json::to_value(deleted).unwrap_or_default()))
}

/// `POST /v1/tasks/{name}/{verb}`: pause, resume or reset.
async fn task_verb(
    State(s): State<AppState>,
    Path((name, verb)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let host = s.host.clone();
    let answer = blocking(move || {
        Ok(match verb.as_str() {
            "pause" => serde_json::to_value(host.pause_task(&name)?),
            "resume" => serde_json::to_value(host.resume_task(&name)?),
            "reset" => serde_json::to_value(host.reset_task(&name)?),
            _ => {
                return Err(ApiError::not_found(format!(
                    "no such route: a task takes pause, resume or reset, not {verb:?}"
                )));
            }
        })
    })
    .await?;
    Ok(Json(answer.unwrap_or_default()))
}

async fn delete_plugin_version(
    State(s): State<AppState>,
    Path((name, seq)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let seq: u64 = seq
        .parse()
        .map_err(|_| ApiError::invalid(format!("a version is a number, not {seq:?}")))?;
    let host = s.host.clone();
    let version = blocking(move || Ok(host.delete_plugin_version(&name, seq)?)).await?;
    Ok(Json(serde_json::to_value(version).unwrap_or_default()))
}

async fn list_collections(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let host = s.host.clone();
    let list = blocking(move || Ok(host.collections()?)).await?;
    Ok(Json(json!({"collections": list})))
}

/// Ingest an NDJSON body: every line is validated before any is appended.
async fn ingest(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let host = s.host.clone();
    // Parsing and checking are CPU work on every core: off the async workers. Each document
    // is checked once, by the host, and failures are reported by line.
    let result = blocking(move || {
        let lines = crate::runtime::ndjson_lines(&name, &body, host.limits.doc_bytes_max)
            .map_err(ApiError::invalid)?;
        Ok(host.ingest_lines(&name, lines)?)
    })
    .await?;
    Ok(Json(serde_json::to_value(result).unwrap_or_default()))
}

#[derive(Deserialize)]
struct ReadQuery {
    /// Offset to start at; default 0 (the beginning). `end` starts at the current head.
    offset: Option<String>,
    /// Keep the stream open and send documents as they are appended.
    #[serde(default)]
    follow: bool,
    /// For a collection with logical partitions: the journal of one of them.
    journal: Option<String>,
}

/// Stream NDJSON: each line a document, from `offset`.
async fn read_documents(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ReadQuery>,
) -> Result<Response, ApiError> {
    let partitioned = !s
        .host
        .catalog()
        .collection(&name)
        .map_err(|e| ApiError::not_found(e.to_string()))?
        .partitions
        .is_empty();
    let host = s.host.clone();
    let (h, n, j) = (host.clone(), name.clone(), q.journal.clone());
    // The journals to read, one after another: one, unless every partition is read.
    let journals = blocking(move || Ok(h.journals_to_read(&n, j.as_deref())?)).await?;
    let all_partitions = partitioned && q.journal.is_none();
    if all_partitions && (q.follow || !matches!(q.offset.as_deref(), None | Some("0"))) {
        let mut named = journals
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if journals.len() > 10 {
            named.push_str(&format!(" and {} more", journals.len() - 10));
        }
        if named.is_empty() {
            named = "none has documents yet".into();
        }
        return Err(ApiError::invalid(format!(
            "collection {name} has logical partitions, each a journal with offsets of its own: follow one, or read one from an offset (?journal=, or `flow collections read --collection JOURNAL`: {named}), or read all from their beginnings without `offset` and `follow`"
        )));
    }
    let start = match q.offset.as_deref() {
        None => 0,
        Some("end") => {
            let (h, j) = (host.clone(), journals[0].clone());
            blocking(move || Ok(crate::journal::head(&h.store, &j)?)).await?
        }
        Some(o) => o.parse().map_err(|_| {
            ApiError::invalid(format!("offset must be a number or 'end', not {o:?}"))
        })?,
    };
    let grown = host.journals.subscribe();
    let follow = q.follow;
    let stream = futures::stream::unfold(Some((0usize, start)), move |at| {
        let host = host.clone();
        let name = name.clone();
        let journals = journals.clone();
        let mut grown_rx = grown.clone();
        async move {
            let (mut i, mut offset) = at?;
            loop {
                let journal = journals.get(i)?.clone();
                grown_rx.mark_unchanged();
                let (h, n) = (host.clone(), name.clone());
                let docs = tokio::task::spawn_blocking(move || {
                    h.read(&n, &journal, offset, READ_CHUNK_DOCS)
                })
                .await;
                let docs = match docs {
                    Ok(Ok(d)) => d,
                    Ok(Err(e)) => return Some((Err(std::io::Error::other(e.to_string())), None)),
                    Err(e) => return Some((Err(std::io::Error::other(e.to_string())), None)),
                };
                if !docs.is_empty() {
                    let mut out = Vec::new();
                    for d in &docs {
                        out.extend_from_slice(&d.bytes);
                        out.push(b'\n');
                    }
                    offset = docs.last().map(|d| d.next_offset()).unwrap_or(offset);
                    return Some((Ok(Bytes::from(out)), Some((i, offset))));
                }
                if i + 1 < journals.len() {
                    (i, offset) = (i + 1, 0);
                    continue;
                }
                if !follow {
                    return None;
                }
                if grown_rx.changed().await.is_err() {
                    return None;
                }
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn list_plugins(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let host = s.host.clone();
    let list = blocking(move || Ok(host.registry.list()?)).await?;
    Ok(Json(json!({"plugins": list})))
}

async fn deploy_plugin(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let host = s.host.clone();
    let version = blocking(move || {
        let v = host
            .registry
            .deploy(&name, &body)
            .map_err(|e| ApiError::invalid(format!("plugin {name}: {e}")))?;
        host.plugin_deployed(&name);
        Ok(v)
    })
    .await?;
    Ok(Json(serde_json::to_value(version).unwrap_or_default()))
}

#[derive(Deserialize, Default)]
struct RollbackBody {
    /// The version to return to; default: the newest earlier one with another component.
    to: Option<u64>,
}

async fn rollback_plugin(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: RollbackBody = if body.is_empty() {
        RollbackBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("invalid rollback request: {e}")))?
    };
    let host = s.host.clone();
    let version = blocking(move || {
        let v = host
            .registry
            .rollback(&name, req.to)
            .map_err(|e| ApiError::invalid(format!("plugin {name}: {e}")))?;
        host.plugin_deployed(&name);
        Ok(v)
    })
    .await?;
    Ok(Json(serde_json::to_value(version).unwrap_or_default()))
}

async fn plugin_history(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let host = s.host.clone();
    let n = name.clone();
    let versions = blocking(move || Ok(host.registry.history(&n)?)).await?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!(
            "no plugin named '{name}' is deployed"
        )));
    }
    Ok(Json(json!({"versions": versions})))
}

#[derive(Deserialize)]
struct LogsQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    follow: bool,
    /// Most lines in the response (without `follow`); default and cap `LOG_PAGE_LINES`.
    limit: Option<usize>,
}

/// Lines per page of a log read: a response (or a chunk of a followed one) is built from at
/// most this many lines, each at most `pluginLogLineBytesMax`.
const LOG_PAGE_LINES: usize = 1000;

/// Plugin log lines as NDJSON, optionally followed.
async fn plugin_logs(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let logs = s.host.registry.logs().clone();
    // A name with neither versions nor lines is a mistake, not an empty log.
    let (host, n) = (s.host.clone(), name.clone());
    let deployed = blocking(move || Ok(!host.registry.history(&n)?.is_empty())).await?;
    if !deployed && logs.read_page(&name, 0, 1).is_empty() {
        return Err(ApiError::not_found(format!(
            "no plugin named '{name}' is deployed"
        )));
    }
    let mut grown = logs.subscribe();
    grown.mark_unchanged();
    let follow = q.follow;
    let page = q.limit.unwrap_or(LOG_PAGE_LINES).clamp(1, LOG_PAGE_LINES);
    // Without `follow`, one page; with it, page after page as lines come.
    let mut left = if follow { usize::MAX } else { page };
    let stream = futures::stream::unfold((q.after, grown), move |(after, mut grown)| {
        let logs = logs.clone();
        let name = name.clone();
        let want = page.min(left);
        left -= want;
        async move {
            loop {
                if want == 0 {
                    return None;
                }
                let lines = logs.read_page(&name, after, want);
                if let Some(last) = lines.last() {
                    let next = last.seq;
                    let mut out = Vec::new();
                    for l in &lines {
                        out.extend(serde_json::to_vec(l).unwrap_or_default());
                        out.push(b'\n');
                    }
                    return Some((Ok::<_, std::io::Error>(Bytes::from(out)), (next, grown)));
                }
                if !follow || grown.changed().await.is_err() {
                    return None;
                }
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn list_tasks(State(s): State<AppState>) -> Json<Value> {
    let host = s.host.clone();
    let tasks = tokio::task::spawn_blocking(move || host.task_reports())
        .await
        .unwrap_or_default();
    Json(json!({"tasks": tasks}))
}

async fn get_task(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    // Counting the lag reads the database: off the async workers, as `list_tasks` does.
    let host = s.host.clone();
    let status = blocking(move || {
        host.task_report(&name)
            .ok_or_else(|| ApiError::not_found(format!("no task named '{name}'")))
    })
    .await?;
    Ok(Json(serde_json::to_value(status).unwrap_or_default()))
}

/// The host's metrics: OpenMetrics when the scraper accepts it, else Prometheus text 0.0.4.
async fn metrics(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let host = s.host.clone();
    let text = blocking(move || {
        let collections = host.collections()?;
        let tasks = host.task_reports();
        Ok(metrics::render(
            &collections,
            &tasks,
            &host.task_timings(),
            openmetrics,
        ))
    })
    .await?;
    let content_type = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
}

pub use axum::Router;

/// Serve `app` on `listener` until the listener fails.
///
/// Every accepted connection has `TCP_NODELAY`: a follower's stream is many small writes, and
/// with Nagle's algorithm each waited for the client's delayed ACK (up to 40 ms; it was the
/// p99 at 10k docs/s, `flow bench --suite latency`).
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("failed to set TCP_NODELAY on a connection: {e}");
        }
    });
    axum::serve(listener, app).await
}

#[cfg(test)]
mod test {
    use super::*;

    #[tokio::test]
    async fn rejections_answer_in_json() {
        let plain = (StatusCode::PAYLOAD_TOO_LARGE, "length limit exceeded").into_response();
        let r = json_rejections(plain).await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "too_large");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("over the limit of")
        );
        let query = (
            StatusCode::BAD_REQUEST,
            "Failed to deserialize query string",
        )
            .into_response();
        let r = json_rejections(query).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "invalid");
        assert_eq!(v["error"]["message"], "Failed to deserialize query string");
        assert!(
            same_secret(b"abc", b"abc")
                && !same_secret(b"abc", b"abd")
                && !same_secret(b"ab", b"abc")
        );
    }
}
