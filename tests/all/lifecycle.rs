//! Plugin lifecycle: versions, hot-swap under continuous ingest with state carried over,
//! rollback the same way.

use crate::{Served, plugin_bytes, plugins};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Batches ingested before the first swap; ingest then goes on until each version has derived
/// documents (a loaded machine can take seconds to switch versions).
const BATCHES: usize = 50;
const BATCH_DOCS: usize = 10;
const KEYS: usize = 5;

pub(crate) fn bundle() -> Value {
    json!({
        "source": "lifecycle.rs",
        "catalog": {
            "collections": {
                "s/events": {
                    "schema": {"type": "object", "properties": {"id": {"type": "integer"}, "key": {"type": "string"}}, "required": ["id", "key"]},
                    "key": ["/id"],
                },
                "s/counts": {
                    "schema": {"type": "object",
                               "properties": {"id": {"type": "integer"}, "key": {"type": "string"}, "count": {"type": "integer"}, "version": {"type": "integer"}},
                               "required": ["id", "key", "count", "version"]},
                    "key": ["/id"],
                    "derive": {
                        "using": {"wasm": {"plugin": "counter"}},
                        "transforms": [{"name": "fromEvents", "source": "s/events", "shuffle": {"key": ["/key"]}}],
                    },
                },
            },
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_and_rollback_under_continuous_ingest() {
    let served = Served::start(None).await;
    let http = reqwest::Client::new();
    let deploy = |bytes: Vec<u8>| {
        let (http, url) = (http.clone(), served.url("/v1/plugins/counter"));
        async move {
            let r = http.post(url).body(bytes).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(deploy(plugin_bytes(plugins::COUNTER_V1)).await["seq"], 1);
    let r = http
        .post(served.url("/v1/catalog"))
        .json(&bundle())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // Ingest continuously in the background while versions change, until told to stop.
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
            // Bounded: the waits below fail the test long before this many.
            while !stop.load(Ordering::SeqCst) && b < 100 * BATCHES {
                let body: String = (0..BATCH_DOCS)
                    .map(|j| {
                        let id = b * BATCH_DOCS + j;
                        format!("{{\"id\":{id},\"key\":\"k{}\"}}\n", id % KEYS)
                    })
                    .collect();
                let r = http.post(&url).body(body).send().await.unwrap();
                assert_eq!(r.status(), 200);
                sent.fetch_add(1, Ordering::SeqCst);
                b += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    // Wait until the derived collection's last document is of `version` (by seq).
    let derived_by = |version: u64| {
        let (http, base) = (http.clone(), served.base.clone());
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            loop {
                let docs =
                    flow_tests::read_ndjson(&http, &base, "/v1/collections/s%2Fcounts/documents")
                        .await;
                if docs.last().is_some_and(|d| d["version"] == version) {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no document derived by version {version} in 120 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let wait_sent = |n: usize| {
        let sent = sent.clone();
        async move {
            while sent.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    wait_sent(BATCHES).await;
    derived_by(1).await;
    assert_eq!(deploy(plugin_bytes(plugins::COUNTER_V2)).await["seq"], 2);
    derived_by(2).await;
    let r: Value = http
        .post(served.url("/v1/plugins/counter/rollback"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (r["seq"].as_u64(), r["rollbackOf"].as_u64()),
        (Some(3), Some(1)),
        "{r}"
    );
    derived_by(1).await;
    stop.store(true, Ordering::SeqCst);
    ingest.await.unwrap();

    let total = sent.load(Ordering::SeqCst) * BATCH_DOCS;
    let host = served.host.clone();
    tokio::task::spawn_blocking(move || host.wait_idle(Duration::from_secs(60)))
        .await
        .unwrap()
        .unwrap();
    let docs =
        flow_tests::read_ndjson(&http, &served.base, "/v1/collections/s%2Fcounts/documents").await;

    // Nothing lost, nothing processed twice.
    let mut ids: Vec<u64> = docs.iter().map(|d| d["id"].as_u64().unwrap()).collect();
    ids.sort();
    assert_eq!(
        ids,
        (0..total as u64).collect::<Vec<_>>(),
        "each event must be derived exactly once"
    );

    // Every output before a cut-over is from the old version and after it from the new one.
    let mut runs: Vec<u64> = Vec::new();
    for d in &docs {
        let v = d["version"].as_u64().unwrap();
        if runs.last() != Some(&v) {
            runs.push(v);
        }
    }
    assert_eq!(runs, vec![1, 2, 1], "versions in journal order");

    // State carried over both swaps: per key, counts continue 1, 2, 3, ... without a reset.
    let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for d in &docs {
        per_key
            .entry(d["key"].as_str().unwrap().to_string())
            .or_default()
            .push(d["count"].as_u64().unwrap());
    }
    for (key, counts) in per_key {
        assert_eq!(
            counts,
            (1..=(total / KEYS) as u64).collect::<Vec<_>>(),
            "counts of {key}"
        );
    }

    let history: Value =
        flow_tests::get_json(&http, &served.base, "/v1/plugins/counter/versions").await;
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[0]["digest"], versions[2]["digest"]);
    assert_ne!(versions[0]["digest"], versions[1]["digest"]);
    let logs = flow_tests::get_text(&http, &served.base, "/v1/plugins/counter/logs").await;
    for line in [
        "counter v1 opened",
        "counter v2 opened",
        "rolled back to version 1 as version 3",
        "task s/counts running version 3",
    ] {
        assert!(logs.contains(line), "{line:?} not in logs:\n{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_errors_name_the_reason() {
    let served = Served::start(None).await;
    let http = reqwest::Client::new();
    let rollback = |body: &'static str| {
        let (http, url) = (http.clone(), served.url("/v1/plugins/counter/rollback"));
        async move {
            let r = http.post(url).body(body).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap()["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        }
    };
    let (s, m) = rollback("").await;
    assert_eq!(s, 400);
    assert!(m.contains("no plugin named 'counter'"), "{m}");
    http.post(served.url("/v1/plugins/counter"))
        .body(plugin_bytes(plugins::COUNTER_V1))
        .send()
        .await
        .unwrap();
    let (s, m) = rollback("").await;
    assert_eq!(s, 400);
    assert!(m.contains("no earlier version"), "{m}");
    let (s, m) = rollback("{\"to\": 7}").await;
    assert_eq!(s, 400);
    assert!(m.contains("has no version 7"), "{m}");
}

/// A new version that exports `migrate` converts state written by the old one before it
/// runs; counting continues across the switch although the state format changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_migrates_state_written_by_an_older_one() {
    let served = Served::start(None).await;
    let http = reqwest::Client::new();
    flow_tests::deploy(&http, &served.base, "counter", plugins::COUNTER_V1).await;
    let r = http
        .post(served.url("/v1/catalog"))
        .json(&bundle())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let host = served.host.clone();
    let ingest = |ids: std::ops::Range<usize>| {
        let host = host.clone();
        async move {
            let docs: Vec<Value> = ids
                .map(|id| json!({"id": id, "key": format!("k{}", id % 2)}))
                .collect();
            tokio::task::spawn_blocking(move || {
                host.ingest("s/events", docs).unwrap();
                host.wait_idle(Duration::from_secs(60)).unwrap();
            })
            .await
            .unwrap();
        }
    };
    ingest(0..10).await;
    let v3 = flow_tests::deploy(&http, &served.base, "counter", plugins::COUNTER_V3).await;
    let h = host.clone();
    tokio::task::spawn_blocking(move || h.plugin_deployed("counter"))
        .await
        .unwrap();
    ingest(10..20).await;

    let docs =
        flow_tests::read_ndjson(&http, &served.base, "/v1/collections/s%2Fcounts/documents").await;
    let k0: Vec<(u64, u64)> = docs
        .iter()
        .filter(|d| d["key"] == "k0")
        .map(|d| (d["count"].as_u64().unwrap(), d["version"].as_u64().unwrap()))
        .collect();
    let expect: Vec<(u64, u64)> = (1..=10).map(|c| (c, if c <= 5 { 1 } else { 3 })).collect();
    assert_eq!(k0, expect, "counts continue across the migration");
    let state = host.store.state("s/counts", r#"["k0"]"#).unwrap().unwrap();
    assert_eq!(state, r#"{"n":10}"#);
    let logs = host.registry.logs().read("counter", 0);
    let migrated = format!(
        "migrated the state of 2 of 2 keys written by {}",
        flow_tests::digest(plugins::COUNTER_V1)
    );
    assert!(
        logs.iter().any(|l| l.message.contains(&migrated)),
        "{migrated:?} not in {logs:?}"
    );
    assert!(v3["digest"].is_string());
}
