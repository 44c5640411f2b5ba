//! Captures: `source-http` paging through a real HTTP server written for the test
//! (`flow_tests::Feed`), exactly once across restarts and `kill -9`; a source that goes down
//! and comes back; and hostile captures (`capture-probe`) that fail cleanly, committing
//! nothing of the poll that broke a rule.

use crate::plugins;
use flow_tests::{Feed, Proc, Served, get_json, get_text};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn event(id: u64) -> Value {
    json!({"id": id, "kind": if id.is_multiple_of(3) { "b" } else { "a" }, "n": id * 10})
}

fn events_collection() -> Value {
    json!({
        "schema": {"type": "object",
                   "properties": {"id": {"type": "integer"}, "kind": {"type": "string"}, "n": {"type": "integer"}},
                   "required": ["id", "n"]},
        "key": ["/id"],
    })
}

/// `source-http` capturing `feed`'s `/events` (cursor pages of `page`) into `target`.
fn http_capture(feed: &Feed, target: &str, page: u64, allow: Value) -> Value {
    json!({
        "endpoint": {"wasm": {"plugin": "source-http"}, "http": {"allow": allow}},
        "interval": "200ms",
        "bindings": [{"target": target, "resource": {
            "url": feed.url("/events"),
            "cursor": {"param": "after", "field": "/id"},
            "pageSize": {"param": "limit", "value": page},
        }}],
    })
}

/// The `id`s of documents.
fn ids_of(docs: Vec<Value>) -> Vec<u64> {
    docs.iter().map(|d| d["id"].as_u64().unwrap()).collect()
}

/// The `id`s of `collection`'s documents, in journal order.
async fn ids(http: &reqwest::Client, base: &str, collection: &str) -> Vec<u64> {
    ids_of(flow_tests::documents(http, base, collection).await)
}

/// Wait until `collection` holds `n` documents; their ids.
async fn wait_for_ids(
    http: &reqwest::Client,
    base: &str,
    collection: &str,
    n: usize,
    secs: u64,
) -> Vec<u64> {
    ids_of(flow_tests::wait_for_documents(http, base, collection, n, secs).await)
}

/// Wait until task `name`'s status satisfies `ok`; it. Panics with it after 30 s.
pub(crate) async fn wait_for_task(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tasks = get_json(http, base, "/v1/tasks").await;
        let task = tasks["tasks"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == name).cloned())
            .unwrap_or(Value::Null);
        if ok(&task) {
            return task;
        }
        assert!(
            Instant::now() < deadline,
            "task {name} never got there: {task:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn one_to(n: u64) -> Vec<u64> {
    (1..=n).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_captures_page_through_cursor_and_offset_apis_into_collections_and_on() {
    let served = Served::start(None).await;
    let http = reqwest::Client::new();
    let feed = Feed::start().await;
    feed.push((1..=2500).map(event));
    for (name, path) in [
        ("source-http", plugins::SOURCE_HTTP),
        ("materialize-sqlite", plugins::MATERIALIZE_SQLITE),
    ] {
        flow_tests::deploy(&http, &served.base, name, path).await;
    }
    let views = served.dir.path().join("views.db");
    let mut capture = http_capture(
        &feed,
        "acme/events",
        250,
        json!([format!("127.0.0.1:{}", feed.port)]),
    );
    // A secret header the host adds to every request: the plugin never sees it.
    let token = served.dir.path().join("token");
    std::fs::write(&token, "Bearer s3cret\n").unwrap();
    capture["endpoint"]["http"]["headers"] = json!({"Authorization": {"file": token}});
    capture["bindings"][0]["resource"]["time"] = json!("/at");
    capture["bindings"]
        .as_array_mut()
        .unwrap()
        .push(json!({"target": "acme/pages", "resource": {
            "url": feed.url("/pages"),
            "items": "/data",
            "offset": {"param": "offset"},
            "pageSize": {"param": "limit", "value": 300},
        }}));
    let bundle = json!({
        "source": "captures",
        "catalog": {
            "collections": {"acme/events": events_collection(), "acme/pages": events_collection()},
            "captures": {"acme/feed": capture},
            "materializations": {"acme/views": {
                "endpoint": {"wasm": {"plugin": "materialize-sqlite", "config": {"path": views}}},
                "bindings": [{"source": "acme/events", "resource": {"table": "events"}}],
            }},
        },
    });
    let published = flow_tests::publish(&http, &served.base, &bundle).await;
    assert_eq!(published["captures"], json!(["acme/feed"]));

    // The backfill: every page of both APIs, each document once, in the source's order.
    assert_eq!(
        wait_for_ids(&http, &served.base, "acme/events", 2500, 60).await,
        one_to(2500)
    );
    assert_eq!(
        wait_for_ids(&http, &served.base, "acme/pages", 2500, 60).await,
        one_to(2500)
    );
    let status = wait_for_task(&http, &served.base, "acme/feed", |t| {
        t["captured"][0]["docs"] == 2500 && t["captured"][1]["docs"] == 2500
    })
    .await;
    assert_eq!(status["kind"], "capture");
    assert_eq!(status["state"], "running");
    assert_eq!(status["captured"][0]["collection"], "acme/events");
    assert!(status["checkpointAtMs"].as_u64().is_some(), "{status:#}");
    assert_eq!(feed.authorization().as_deref(), Some("Bearer s3cret"));
    let catalog = get_text(&http, &served.base, "/v1/catalog").await;
    assert!(
        !catalog.contains("s3cret"),
        "the catalog shows the secret: {catalog}"
    );

    assert!(
        status["lagMs"].is_null(),
        "no document said when it was written: {status:#}"
    );

    // Live: what the API gains arrives after the next (backed-off) poll. These events say
    // when the source wrote them (`time: /at`), a minute ago: the task's lag shows it
    // (`rfc3339_times` in source-http checks the times it reads).
    let minute_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 60_000;
    feed.push((2501..=3000).map(|id| {
        let mut e = event(id);
        e["at"] = json!(minute_ago + id);
        e
    }));
    assert_eq!(
        wait_for_ids(&http, &served.base, "acme/events", 3000, 30).await,
        one_to(3000)
    );
    assert_eq!(
        wait_for_ids(&http, &served.base, "acme/pages", 3000, 30).await,
        one_to(3000)
    );
    let status = wait_for_task(&http, &served.base, "acme/feed", |t| {
        t["lagMs"].as_u64().is_some()
    })
    .await;
    // A minute behind while it read them, then caught up (an idle poll says 0).
    let lag = status["lagMs"].as_u64().unwrap();
    eprintln!("lag after the live events: {lag} ms");
    assert!(
        lag == 0 || (60_000..120_000).contains(&lag),
        "a minute behind its source, or caught up: {status:#}"
    );

    // Captured documents flow on like ingested ones: into a materialized table.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows: i64 = rusqlite::Connection::open(&views)
            .and_then(|c| c.query_row("SELECT count(*), sum(n) FROM events", [], |r| r.get(0)))
            .unwrap_or(0);
        if rows == 3000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the table has {rows} of 3000 rows"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Captures swap and roll back like every other plugin, keeping their checkpoint: a
    // version that cannot read it fails at open; rolling back resumes where the capture was.
    flow_tests::deploy(&http, &served.base, "source-http", plugins::CAPTURE_PROBE).await;
    let failed = wait_for_task(&http, &served.base, "acme/feed", |t| t["state"] == "failed").await;
    assert!(
        failed["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains("open: "),
        "{failed:#}"
    );
    let r = http
        .post(served.url("/v1/plugins/source-http/rollback"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_for_task(&http, &served.base, "acme/feed", |t| {
        t["state"] == "running" && t["pluginVersion"] == 3
    })
    .await;
    feed.push((3001..=3100).map(event));
    assert_eq!(
        wait_for_ids(&http, &served.base, "acme/events", 3100, 30).await,
        one_to(3100)
    );

    // An idle capture backs off to its interval: a few requests a second, not a busy loop.
    let before = feed.requests();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let polled = feed.requests() - before;
    assert!(polled <= 16, "{polled} requests in an idle second");
}

/// Publish `source-http` capturing `feed` into `acme/events` on the host at `base`.
async fn publish_capture(http: &reqwest::Client, base: &str, feed: &Feed) {
    flow_tests::deploy(http, base, "source-http", plugins::SOURCE_HTTP).await;
    let bundle = json!({
        "source": "captures",
        "catalog": {
            "collections": {"acme/events": events_collection()},
            "captures": {"acme/feed": http_capture(feed, "acme/events", 50, json!(["127.0.0.1"]))},
        },
    });
    flow_tests::publish(http, base, &bundle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_capture_is_exactly_once_under_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = (dir.path().join("data"), dir.path().join("flow.log"));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let feed = std::sync::Arc::new(Feed::start().await);
    let mut p = Proc::start(&data, &log).await;
    publish_capture(&http, &p.base, &feed).await;

    // The API grows while the host is killed at random moments: 24 kills, each after
    // 50-600 ms of running, with ~1,000 events a second arriving meanwhile.
    const TOTAL: u64 = 12_000;
    let producer = {
        let feed = feed.clone();
        tokio::spawn(async move {
            let mut next = 1;
            while next <= TOTAL {
                let end = (next + 39).min(TOTAL);
                feed.push((next..=end).map(event));
                next = end + 1;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    let mut seed: u64 = 0x5eed_c0de;
    let mut rand = move |lo: u64, hi: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        lo + seed % (hi - lo + 1)
    };
    let mut seen = Vec::new();
    for _ in 0..24 {
        tokio::time::sleep(Duration::from_millis(rand(50, 600))).await;
        seen.push(ids(&http, &p.base, "acme/events").await.len());
        p.kill();
        p = Proc::start(&data, &log).await;
    }
    producer.await.unwrap();
    eprintln!("documents captured at each of the 24 kills: {seen:?}");
    let got = wait_for_ids(&http, &p.base, "acme/events", TOTAL as usize, 120).await;
    // Each event once, in the source's order: a poll's documents and its cursor committed
    // together, and every restart resumed from exactly there.
    assert_eq!(
        got.len(),
        TOTAL as usize,
        "duplicates: kills landed at {seen:?}"
    );
    assert_eq!(got, one_to(TOTAL), "kills landed at {seen:?}");
    assert!(
        seen.windows(2).filter(|w| w[1] > w[0]).count() >= 10,
        "the capture made too little progress between kills to test much: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_retries_while_its_source_is_down_and_resumes() {
    let served = Served::start(None).await;
    let http = reqwest::Client::new();
    let feed = Feed::start().await;
    feed.push((1..=300).map(event));
    publish_capture(&http, &served.base, &feed).await;
    wait_for_ids(&http, &served.base, "acme/events", 300, 30).await;

    feed.set_status(Some(503));
    feed.push((301..=600).map(event));
    let status = wait_for_task(&http, &served.base, "acme/feed", |t| {
        t["state"] == "retrying"
    })
    .await;
    let error = status["lastError"].as_str().unwrap_or_default();
    assert!(
        error.contains("the source is unavailable (the server answered 503)"),
        "{status:#}"
    );
    assert!(status["retryAtMs"].as_u64().is_some(), "{status:#}");

    feed.set_status(None);
    assert_eq!(
        wait_for_ids(&http, &served.base, "acme/events", 600, 60).await,
        one_to(600)
    );
    wait_for_task(&http, &served.base, "acme/feed", |t| {
        t["state"] == "running"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_captures_fail_naming_the_binding_document_and_reason_and_commit_nothing_of_that_poll()
 {
    let served = Served::start(None).await;
    let http = reqwest::Client::new();
    let feed = Feed::start().await;
    // Event 150 breaks the schema (`n` must be an integer): the second page of 100.
    feed.push((1..=300).map(|i| {
        let mut e = event(i);
        if i == 150 {
            e["n"] = json!("lots");
        }
        e
    }));
    for (name, path) in [
        ("source-http", plugins::SOURCE_HTTP),
        ("capture-probe", plugins::CAPTURE_PROBE),
    ] {
        flow_tests::deploy(&http, &served.base, name, path).await;
    }
    let probe = |mode: &str, target: &str| {
        json!({
            "endpoint": {"wasm": {"plugin": "capture-probe", "config": {"mode": mode, "url": feed.url("/events")}}},
            "bindings": [{"target": target}],
        })
    };
    let mut collections = serde_json::Map::new();
    for c in [
        "t/schema",
        "t/host",
        "t/checkpoint",
        "t/binding",
        "t/flood",
        "t/sneaky",
    ] {
        collections.insert(c.into(), events_collection());
    }
    let bundle = json!({
        "source": "hostile",
        "catalog": {
            "collections": collections,
            "captures": {
                "c/schema": http_capture(&feed, "t/schema", 100, json!(["127.0.0.1"])),
                "c/host": http_capture(&feed, "t/host", 100, json!(["127.0.0.1:1", "*.example.com"])),
                "c/checkpoint": probe("bad-checkpoint", "t/checkpoint"),
                "c/binding": probe("unknown-binding", "t/binding"),
                "c/flood": {
                    "endpoint": {"wasm": {"plugin": "capture-probe", "config": {"mode": "flood"}}},
                    "bindings": [{"target": "t/flood"}],
                    "limits": {"callOutputDocsMax": 1000},
                },
                // No allow-list at all: the plugin's own URL is refused too.
                "c/sneaky": probe("http", "t/sneaky"),
            },
        },
    });
    flow_tests::publish(&http, &served.base, &bundle).await;

    let failed = |name: &'static str| {
        let (http, base) = (http.clone(), served.base.clone());
        async move {
            let t = wait_for_task(&http, &base, name, |t| t["state"] == "failed").await;
            t["lastError"].as_str().unwrap_or_default().to_string()
        }
    };
    let expect = |error: &str, parts: &[&str]| {
        for part in parts {
            assert!(error.contains(part), "{part:?} is not in: {error}");
        }
    };

    // A document that breaks its target's schema: the poll's other 99 are not committed
    // either; the page before it is.
    let error = failed("c/schema").await;
    expect(
        &error,
        &[
            "binding 0 (t/schema): document 50 of the poll does not match the schema of t/schema",
            "\"id\":150",
        ],
    );
    assert_eq!(ids(&http, &served.base, "t/schema").await, one_to(100));

    // A host that is not on the allow-list: refused before any request, and logged.
    let error = failed("c/host").await;
    let port = feed.port;
    expect(
        &error,
        &[
            &format!("outgoing HTTP to http://127.0.0.1:{port}/events?limit=100 refused"),
            &format!(
                "127.0.0.1:{port} is not on this task's allow-list (endpoint.http.allow: 127.0.0.1:1, *.example.com)"
            ),
        ],
    );
    let error = failed("c/sneaky").await;
    expect(&error, &["refused: this task's endpoint allows no host"]);
    let logs = get_text(&http, &served.base, "/v1/plugins/source-http/logs").await;
    assert!(logs.contains("not on this task's allow-list"), "{logs}");
    assert!(ids(&http, &served.base, "t/host").await.is_empty());
    // Only t/schema's requests reached the server: its two pages.
    assert_eq!(feed.requests(), 2, "a refused request reached the server");

    let error = failed("c/checkpoint").await;
    expect(
        &error,
        &["the poll's checkpoint is not JSON text", "{not json"],
    );
    let error = failed("c/binding").await;
    expect(
        &error,
        &[
            "document 2 of the poll names binding 7, but the capture has 1 binding(s): {\"id\":2,\"n\":2}",
        ],
    );
    let error = failed("c/flood").await;
    expect(
        &error,
        &["returned 5000 documents from one poll, over the cap of 1000"],
    );
    for c in ["t/checkpoint", "t/binding", "t/flood", "t/sneaky"] {
        assert!(
            ids(&http, &served.base, c).await.is_empty(),
            "{c} got documents"
        );
    }
    let logs = get_text(&http, &served.base, "/v1/plugins/capture-probe/logs").await;
    assert!(logs.contains("task c/checkpoint failed"), "{logs}");
}
