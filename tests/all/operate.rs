//! Operating a host: pause, resume, reset and delete under continuous ingest (counts checked),
//! counters, pauses and plugin logs that survive publishes, restarts and `kill -9`, the CLI's
//! verbs and exit codes, and `/metrics` read by a real OpenMetrics parser.

use crate::{Served, plugins};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const BATCH_DOCS: usize = 10;
const KEYS: usize = 5;

/// `lifecycle.rs`'s catalog (events counted per key by the `counter` plugin), with an
/// unrelated collection if `extra`.
fn bundle(extra: bool) -> Value {
    let mut b = crate::lifecycle::bundle();
    b["source"] = json!("operate.rs");
    if extra {
        b["catalog"]["collections"]["s/other"] = json!({"schema": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}, "key": ["/id"]});
    }
    b
}

/// Events `from..to` as an NDJSON body.
fn events(from: usize, to: usize) -> String {
    (from..to)
        .map(|id| format!("{{\"id\":{id},\"key\":\"k{}\"}}\n", id % KEYS))
        .collect()
}

async fn post(http: &reqwest::Client, url: String, body: Option<Value>) -> (u16, Value) {
    let mut r = http.post(url);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn task(http: &reqwest::Client, base: &str) -> Value {
    flow_tests::get_json(http, base, "/v1/tasks/s%2Fcounts").await
}

/// Wait until the task's `docsIn` is `n`.
async fn docs_in(http: &reqwest::Client, base: &str, n: u64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let t = task(http, base).await;
        if t["docsIn"] == n {
            return t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "docsIn never reached {n}: {t}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_idle(served: &Served) {
    let host = served.host.clone();
    tokio::task::spawn_blocking(move || host.wait_idle(Duration::from_secs(60)))
        .await
        .unwrap()
        .unwrap();
}

/// Per key, the counts of `docs` in order.
fn counts(docs: &[Value]) -> BTreeMap<String, Vec<u64>> {
    let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for d in docs {
        per_key
            .entry(d["key"].as_str().unwrap().to_string())
            .or_default()
            .push(d["count"].as_u64().unwrap());
    }
    per_key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_reset_and_delete_under_continuous_ingest_lose_and_duplicate_nothing() {
    let served = Served::start(None).await;
    let http = reqwest::Client::new();
    let base = served.base.clone();
    flow_tests::deploy(&http, &base, "counter", plugins::COUNTER_V1).await;
    flow_tests::publish(&http, &base, &bundle(false)).await;

    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ingest = {
        let (http, url, sent, stop) = (
            http.clone(),
            served.url("/v1/collections/s%2Fevents/documents"),
            sent.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut b = 0;
            while !stop.load(Ordering::SeqCst) && b < 5000 {
                let body = events(b * BATCH_DOCS, (b + 1) * BATCH_DOCS);
                let r = http.post(&url).body(body).send().await.unwrap();
                assert_eq!(r.status(), 200);
                sent.fetch_add(1, Ordering::SeqCst);
                b += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let wait_sent = |n: usize| {
        let sent = sent.clone();
        async move {
            while sent.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    wait_sent(20).await;

    // Paused: it stops at a transaction boundary and reads nothing more while ingest goes on.
    let (status, t) = post(&http, served.url("/v1/tasks/s%2Fcounts/pause"), None).await;
    assert_eq!((status, t["state"].as_str()), (200, Some("paused")), "{t}");
    let at_pause = task(&http, &base).await["docsIn"].as_u64().unwrap();
    let before = sent.load(Ordering::SeqCst);
    wait_sent(before + 20).await;
    let t = task(&http, &base).await;
    assert_eq!(t["state"], "paused", "{t}");
    assert_eq!(t["docsIn"], at_pause, "a paused task reads nothing: {t}");
    let lag = t["sources"][0]["lagDocs"].as_u64().unwrap();
    assert!(lag >= 20 * BATCH_DOCS as u64, "lag in documents: {t}");
    assert!(t["sources"][0]["lagSeconds"].as_f64().unwrap() > 0.0, "{t}");
    // Pausing twice changes nothing; an unrelated publish neither resumes it nor resets its
    // counters.
    assert_eq!(
        post(&http, served.url("/v1/tasks/s%2Fcounts/pause"), None)
            .await
            .0,
        200
    );
    flow_tests::publish(&http, &base, &bundle(true)).await;
    let t = task(&http, &base).await;
    assert_eq!(
        (t["state"].as_str(), t["docsIn"].as_u64()),
        (Some("paused"), Some(at_pause)),
        "{t}"
    );

    // Resumed, it catches up; a publish while it runs keeps its counters too.
    let (status, t) = post(&http, served.url("/v1/tasks/s%2Fcounts/resume"), None).await;
    assert_eq!(status, 200, "{t}");
    wait_sent(sent.load(Ordering::SeqCst) + 20).await;
    let running = task(&http, &base).await["docsIn"].as_u64().unwrap();
    assert!(running > at_pause);
    flow_tests::publish(&http, &base, &bundle(true)).await;
    assert!(task(&http, &base).await["docsIn"].as_u64().unwrap() >= running);
    stop.store(true, Ordering::SeqCst);
    ingest.await.unwrap();
    let total = sent.load(Ordering::SeqCst) * BATCH_DOCS;
    docs_in(&http, &base, total as u64).await;
    wait_idle(&served).await;
    let docs = flow_tests::read_ndjson(&http, &base, "/v1/collections/s%2Fcounts/documents").await;
    let mut ids: Vec<u64> = docs.iter().map(|d| d["id"].as_u64().unwrap()).collect();
    ids.sort();
    assert_eq!(
        ids,
        (0..total as u64).collect::<Vec<_>>(),
        "through pause, resume and publishes each event is derived exactly once"
    );
    let full: Vec<u64> = (1..=(total / KEYS) as u64).collect();
    for (key, c) in counts(&docs) {
        assert_eq!(c, full, "state of {key} carried through the pause");
    }

    // Deletes that would leave a user behind are refused, deleting nothing, naming the user.
    let (status, e) = post(
        &http,
        served.url("/v1/catalog/delete"),
        Some(json!({"names": ["s/events"]})),
    )
    .await;
    assert_eq!(status, 409, "{e}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(
        message
            .contains("collection s/events is used by derivation s/counts (transform fromEvents)"),
        "{message}"
    );
    let r = http
        .delete(served.url("/v1/plugins/counter/versions/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]["message"].as_str().unwrap().contains("s/counts"),
        "{e}"
    );
    let (status, e) = post(
        &http,
        served.url("/v1/catalog/delete"),
        Some(json!({"names": ["s/nosuch"]})),
    )
    .await;
    assert_eq!(status, 404, "{e}");
    assert_eq!(task(&http, &base).await["state"], "running");

    // Reset: the derivation forgets its checkpoints and state and derives every event again.
    let (status, r) = post(&http, served.url("/v1/tasks/s%2Fcounts/reset"), None).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["kind"], "derivation");
    docs_in(&http, &base, total as u64).await;
    wait_idle(&served).await;
    let after = flow_tests::read_ndjson(&http, &base, "/v1/collections/s%2Fcounts/documents").await;
    assert_eq!(after.len(), 2 * total, "each event derived once more");
    let again = &after[total..];
    let mut ids: Vec<u64> = again.iter().map(|d| d["id"].as_u64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, (0..total as u64).collect::<Vec<_>>());
    for (key, c) in counts(again) {
        assert_eq!(c, full, "{key} counted again from nothing after the reset");
    }

    // Deleted together, they go; the plugin's version then has no user and can go too.
    let (status, d) = post(
        &http,
        served.url("/v1/catalog/delete"),
        Some(json!({"names": ["s/events", "s/counts"]})),
    )
    .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["tasks"], json!(["s/counts"]));
    let tasks = flow_tests::get_json(&http, &base, "/v1/tasks").await;
    assert_eq!(tasks["tasks"], json!([]));
    let catalog = flow_tests::get_json(&http, &base, "/v1/catalog").await;
    assert_eq!(
        catalog["collections"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec!["s/other"]
    );
    let r = http
        .delete(served.url("/v1/plugins/counter/versions/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(served.url("/v1/plugins/counter/logs"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the last version took the logs with it");
    // Published again, the derivation starts from nothing (its checkpoints went with it) and
    // finds its source's documents, which stayed.
    flow_tests::deploy(&http, &base, "counter", plugins::COUNTER_V1).await;
    flow_tests::publish(&http, &base, &bundle(false)).await;
    docs_in(&http, &base, total as u64).await;
}

/// Run the `flow` CLI against `base`: (exit success, stdout, stderr).
fn cli(base: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(flow_tests::Proc::binary())
        .arg("--api-url")
        .arg(base)
        .args(args)
        .env_remove("FLOW_API_TOKEN")
        .env_remove("FLOW_OUTPUT")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Parse OpenMetrics text with prometheus_client's parser: each sample as `name{labels} value`.
fn openmetrics_samples(text: &str) -> String {
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {float(s.value):g}")
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed (make setup-test installs prometheus_client)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_pauses_and_logs_survive_publishes_restarts_and_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("flow.log");
    let http = reqwest::Client::new();
    let p = flow_tests::Proc::start(&data, &log).await;
    flow_tests::deploy(&http, &p.base, "counter", plugins::COUNTER_V1).await;
    flow_tests::publish(&http, &p.base, &bundle(false)).await;
    let ingest = |base: String, from: usize, to: usize| {
        let http = http.clone();
        async move {
            let r = http
                .post(format!("{base}/v1/collections/s%2Fevents/documents"))
                .body(events(from, to))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    ingest(p.base.clone(), 0, 200).await;
    docs_in(&http, &p.base, 200).await;

    // The CLI's verbs, output and exit codes.
    let (ok, out, err) = cli(&p.base, &["tasks", "pause", "s/counts"]);
    assert!(ok && out.contains("paused"), "{out}{err}");
    let (ok, _, err) = cli(&p.base, &["tasks", "show", "s/nosuch"]);
    assert!(!ok && err.contains("no task named 's/nosuch'"), "{err}");
    let (ok, _, err) = cli(&p.base, &["plugin", "logs", "nosuch"]);
    assert!(!ok && err.contains("no plugin named 'nosuch'"), "{err}");
    let (ok, _, err) = cli(&p.base, &["tasks", "reset", "s/counts"]);
    assert!(!ok && err.contains("--yes"), "a reset asks first: {err}");
    let (ok, out, err) = cli(&p.base, &["catalog", "delete", "s/events", "--yes"]);
    assert!(
        !ok && err.contains("used by derivation s/counts"),
        "{out}{err}"
    );
    let (ok, out, _) = cli(&p.base, &["--output", "json", "tasks"]);
    assert!(ok);
    let tasks: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(tasks["tasks"][0]["state"], "paused", "{tasks}");
    let (ok, out, _) = cli(&p.base, &["completions", "bash"]);
    assert!(
        ok && out.contains("_flow") && out.contains("pause"),
        "{out}"
    );

    // An unrelated publish and more documents while paused: counters stay, the lag shows.
    flow_tests::publish(&http, &p.base, &bundle(true)).await;
    ingest(p.base.clone(), 200, 300).await;
    let t = task(&http, &p.base).await;
    assert_eq!(
        (t["state"].as_str(), t["docsIn"].as_u64()),
        (Some("paused"), Some(200)),
        "{t}"
    );
    assert_eq!(t["sources"][0]["lagDocs"], 100, "{t}");
    let (ok, out, _) = cli(&p.base, &["tasks"]);
    assert!(ok && out.contains("100 docs"), "lag in documents: {out}");

    // /metrics as OpenMetrics, read by a real parser.
    let text = http
        .get(p.url("/metrics"))
        .header("Accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = openmetrics_samples(&text);
    for line in [
        "flow_task_docs_in_total{task=s/counts} 200",
        "flow_task_lag_documents{collection=s/events,source=fromEvents,task=s/counts} 100",
        "flow_task_state{state=paused,task=s/counts} 1",
        "flow_journal_written_bytes_total{collection=s/events}",
        "flow_task_transaction_seconds_count{task=s/counts}",
        "flow_task_plugin_call_seconds_bucket{le=+Inf,task=s/counts}",
    ] {
        assert!(samples.contains(line), "{line} not in:\n{samples}");
    }

    // A clean stop (SIGTERM) and a start: still paused, counters and logs as they were.
    p.terminate(Duration::from_secs(30));
    let p = flow_tests::Proc::start(&data, &log).await;
    let t = task(&http, &p.base).await;
    assert_eq!(
        (t["state"].as_str(), t["docsIn"].as_u64()),
        (Some("paused"), Some(200)),
        "{t}"
    );
    let logs = flow_tests::get_text(&http, &p.base, "/v1/plugins/counter/logs").await;
    assert!(
        logs.contains("deployed version 1") && logs.contains("task s/counts running version 1"),
        "logs kept across the restart: {logs}"
    );

    // Resumed; then killed a while after it caught up: its counters were saved meanwhile.
    let (ok, out, err) = cli(&p.base, &["tasks", "resume", "s/counts"]);
    assert!(ok, "{out}{err}");
    docs_in(&http, &p.base, 300).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.kill();
    let p = flow_tests::Proc::start(&data, &log).await;
    let t = docs_in(&http, &p.base, 300).await;
    assert_eq!(t["state"], "running", "{t}");
    let docs =
        flow_tests::read_ndjson(&http, &p.base, "/v1/collections/s%2Fcounts/documents").await;
    assert_eq!(docs.len(), 300, "each event derived once");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains('\u{1b}'),
        "no terminal colors in a log written to a file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_materialization_writes_every_row_again_and_one_of_reduced_rows_is_refused() {
    let (served, http) = crate::bad_input::setup_with(None).await;
    let views = served.dir.path().join("views.db");
    let r = http
        .post(served.url("/v1/collections/acme%2Forders/documents"))
        .body(
            (1..=20)
                .map(|i| {
                    format!(
                        "{{\"id\":{i},\"customer\":\"c{}\",\"amount\":{i}}}\n",
                        i % 4
                    )
                })
                .collect::<String>(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_idle(&served).await;
    let before = crate::e2e::wait_for_rows(&views, 4);
    // Rows changed behind its back are written again from the collection's history.
    rusqlite::Connection::open(&views)
        .unwrap()
        .execute("UPDATE customer_totals SET total = -1", [])
        .unwrap();
    let (status, r) = post(&http, served.url("/v1/tasks/acme%2Fviews/reset"), None).await;
    assert_eq!(
        (status, r["kind"].as_str()),
        (200, Some("materialization")),
        "{r}"
    );
    wait_idle(&served).await;
    let derived = flow_tests::read_ndjson(
        &http,
        &served.base,
        "/v1/collections/acme%2Fcustomer-totals/documents",
    )
    .await;
    let t = flow_tests::get_json(&http, &served.base, "/v1/tasks/acme%2Fviews").await;
    assert_eq!(
        t["docsIn"].as_u64(),
        Some(derived.len() as u64),
        "every derived document read again: {t}"
    );
    assert_eq!(crate::e2e::wait_for_rows(&views, 4), before);
    // The plugin's log says why it read everything again.
    let logs =
        flow_tests::get_text(&http, &served.base, "/v1/plugins/materialize-sqlite/logs").await;
    assert!(logs.contains("acme/views was reset"), "{logs}");

    // A collection reduced by annotations: its rows cannot be materialized again.
    let mut bundle = crate::e2e::bundle(&views);
    bundle["catalog"]["collections"]["acme/sums"] = json!({
        "schema": {"type": "object", "reduce": {"strategy": "merge"},
                   "properties": {"customer": {"type": "string"}, "total": {"type": "number", "reduce": {"strategy": "sum"}}},
                   "required": ["customer"]},
        "key": ["/customer"],
    });
    bundle["catalog"]["materializations"]["acme/sums-view"] = json!({
        "endpoint": {"wasm": {"plugin": "materialize-sqlite", "config": {"path": served.dir.path().join("sums.db")}}},
        "bindings": [{"source": "acme/sums", "resource": {"table": "sums"}}],
    });
    flow_tests::publish(&http, &served.base, &bundle).await;
    let (status, e) = post(&http, served.url("/v1/tasks/acme%2Fsums-view/reset"), None).await;
    assert_eq!(status, 400, "{e}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("binding 0 keeps rows of acme/sums reduced by its `reduce` annotations"),
        "{message}"
    );
}
