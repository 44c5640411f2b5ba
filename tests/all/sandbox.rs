//! Hostile plugins (`plugins/sandbox-probe`): an infinite loop, a memory bomb, a trap, a Rust
//! panic, a flood of output, state writes past their caps, and attempts at files, sockets,
//! environment and clock. Each ends
//! as a clean task error naming the limit or the reason; the host and a healthy task beside
//! them keep running.

use crate::{plugin_bytes, plugins};
use flow_host::catalog::{Bundle, Catalog};
use flow_host::{Host, HostOptions, Limits};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// (mode, parts of the task's error)
const CASES: &[(&str, &[&str])] = &[
    (
        "spin",
        &[
            "exceeded a sandbox limit",
            "CPU deadline of 1000 ms per call",
        ],
    ),
    (
        "memory",
        &[
            "exceeded a sandbox limit",
            "memory cap of 32 MiB per instance",
        ],
    ),
    ("trap", &["the plugin trapped", "unreachable"]),
    ("panic", &["the plugin trapped"]),
    (
        "flood",
        &[
            "exceeded a sandbox limit",
            "5000 documents from one call, over the cap of 1000",
        ],
    ),
    (
        "escape",
        &["fs: denied", "net: denied", "env: none", "clock: 0"],
    ),
    (
        "state-hoard",
        &[
            "exceeded a sandbox limit",
            "over the cap of 8388608 bytes (stateTxnBytesMax)",
        ],
    ),
    (
        "state-big",
        &[
            "exceeded a sandbox limit",
            "a state value of 4194306 bytes",
            "over the cap of 2097152 bytes (stateValueBytesMax)",
        ],
    ),
];

fn bundle() -> Bundle {
    let schema =
        json!({"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]});
    let mut collections = serde_json::Map::new();
    collections.insert("s/in".into(), json!({"schema": schema, "key": ["/id"]}));
    collections.insert(
        "s/ok".into(),
        json!({"schema": schema, "key": ["/id"], "derive": {"using": {"wasm": {"module": "pass.wasm"}}, "transforms": [{"name": "t", "source": "s/in"}]}}),
    );
    for (mode, _) in CASES {
        collections.insert(
            format!("s/{mode}"),
            json!({"schema": schema, "key": ["/id"],
                   "derive": {"using": {"wasm": {"module": "probe.wasm", "config": {"mode": mode}}}, "transforms": [{"name": "t", "source": "s/in"}]}}),
        );
    }
    let catalog: Catalog = serde_json::from_value(json!({"collections": collections})).unwrap();
    let mut b = Bundle {
        source: "sandbox.rs".into(),
        catalog,
        modules: Default::default(),
        origins: Default::default(),
    };
    b.modules
        .insert("probe.wasm".into(), plugin_bytes(plugins::SANDBOX_PROBE));
    b.modules
        .insert("pass.wasm".into(), plugin_bytes(plugins::PASSTHROUGH));
    b
}

fn count(host: &Host, collection: &str) -> usize {
    host.journals
        .read(&host.store, collection, 0, usize::MAX, usize::MAX)
        .unwrap()
        .len()
}

fn wait(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn hostile_plugins_fail_cleanly_and_the_host_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        call_deadline_ms: 1000,
        plugin_memory_bytes_max: 32 << 20,
        call_output_docs_max: 1000,
        state_value_bytes_max: 2 << 20,
        state_txn_bytes_max: 8 << 20,
        ..Limits::default()
    };
    let host = Host::open(HostOptions::new(dir.path()).limits(limits)).unwrap();
    host.publish(bundle()).unwrap();
    let docs: Vec<Value> = (0..5).map(|id| json!({"id": id})).collect();
    host.ingest("s/in", docs).unwrap();

    for (mode, parts) in CASES {
        let task = format!("s/{mode}");
        wait(&format!("{task} to fail"), || {
            host.task_status(&task).is_some_and(|s| s.state == "failed")
        });
        let e = host.task_status(&task).unwrap().last_error.unwrap();
        for p in *parts {
            assert!(e.contains(p), "{task}: expected {p:?} in {e:?}");
        }
        assert_eq!(
            count(&host, &task),
            0,
            "{task}: nothing of the failed transaction is committed"
        );
        let log = host.registry.logs().read(&task, 0);
        assert!(
            log.iter()
                .any(|l| l.message.contains(&format!("task {task} failed"))),
            "{task}: {log:?}"
        );
    }
    // The panic message went to stderr, which lands in the plugin's log.
    let log = host.registry.logs().read("s/panic", 0);
    assert!(log.iter().any(|l| l.level == "warn" && l.message.contains("boom: the probe panicked on purpose")), "{log:?}");

    // The healthy task beside them processed everything, and the host still takes ingests.
    wait("s/ok to derive 5 documents", || count(&host, "s/ok") == 5);
    host.ingest("s/in", vec![json!({"id": 5})]).unwrap();
    wait("s/ok to derive the 6th document", || {
        count(&host, "s/ok") == 6
    });
    assert_eq!(host.task_status("s/ok").unwrap().state, "running");
}

/// Every hostile mode at once, in a real `flow serve` whose memory can be read, beside a
/// healthy derivation working through a backlog: the host's peak RSS stays within 256 MiB of
/// its baseline, the hostile tasks fail with the limit named, and the healthy task derives
/// everything. Its throughput beside them is printed against the same backlog on a host with
/// it alone (a measurement, reported in the issue; the floor asserted only catches starvation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_neighbours_leave_host_memory_and_a_healthy_task_alone() {
    const DOCS: usize = 10_000;
    let limits = r#"{"callDeadlineMs": 1000, "pluginMemoryBytesMax": 33554432, "callDocsMax": 1000, "callOutputDocsMax": 1000, "stateValueBytesMax": 2097152, "stateTxnBytesMax": 8388608}"#;
    let modes: Vec<&str> = CASES.iter().map(|(m, _)| *m).chain(["log-flood"]).collect();
    let alone = healthy_run(limits, &[], DOCS).await;
    let beside = healthy_run(limits, &modes, DOCS).await;
    let (a, b) = (
        DOCS as f64 / alone.0.as_secs_f64(),
        DOCS as f64 / beside.0.as_secs_f64(),
    );
    eprintln!(
        "healthy derivation over {DOCS} docs: alone {a:.0} docs/s, beside {} hostile tasks {b:.0} docs/s ({:.2}x); host RSS beside them: baseline {} MiB, peak {} MiB",
        modes.len(),
        b / a,
        beside.1 >> 20,
        beside.2 >> 20
    );
    assert!(
        beside.2 < beside.1 + (256 << 20),
        "host peak RSS {} MiB over a baseline of {} MiB",
        beside.2 >> 20,
        beside.1 >> 20
    );
    assert!(
        b > a / 10.0,
        "the healthy task starved: {b:.0} vs {a:.0} docs/s"
    );
}

/// Ingest `docs` into `s/in` on a fresh host, then publish the healthy `s/ok` with a task of
/// each hostile mode; returns how long `s/ok` took to derive the backlog, and the host's RSS
/// before the publish and at its peak.
async fn healthy_run(limits: &str, modes: &[&str], docs: usize) -> (Duration, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("flow.log");
    let p =
        flow_tests::Proc::start_with(&dir.path().join("data"), &log, &["--limits", limits], &[])
            .await;
    let http = reqwest::Client::new();
    let mut b = bundle();
    b.catalog.collections.retain(|name, _| {
        name == "s/in" || name == "s/ok" || modes.iter().any(|m| *name == format!("s/{m}"))
    });
    for m in modes {
        if !b.catalog.collections.contains_key(&format!("s/{m}")) {
            let mut def = b.catalog.collections["s/spin"].clone();
            def.derive.as_mut().unwrap().using.wasm.config = json!({"mode": m});
            b.catalog.collections.insert(format!("s/{m}"), def);
        }
    }
    let mut only_in = b.clone();
    only_in.catalog.collections.retain(|name, _| name == "s/in");
    only_in.modules.clear();
    let r = http
        .post(p.url("/v1/catalog"))
        .json(&only_in)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "publish: {}", r.text().await.unwrap());
    for chunk in (0..docs).collect::<Vec<_>>().chunks(5000) {
        let body: String = chunk
            .iter()
            .map(|id| format!("{{\"id\": {id}}}\n"))
            .collect();
        let r = http
            .post(p.url("/v1/collections/s%2Fin/documents"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "ingest: {}", r.text().await.unwrap());
    }
    let target = flow_tests::collection_head(&http, &p.base, "s/in").await;
    let (baseline, _) = p.rss();
    let started = Instant::now();
    let r = http
        .post(p.url("/v1/catalog"))
        .json(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "publish: {}", r.text().await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut took = None;
    loop {
        let tasks = flow_tests::get_json(&http, &p.base, "/v1/tasks").await;
        assert!(
            Instant::now() < deadline,
            "timed out: {tasks:#}\n{}",
            p.log_tail()
        );
        let tasks = tasks["tasks"].as_array().unwrap().clone();
        // The healthy derivation has read (and committed) everything ingested.
        let read = tasks
            .iter()
            .find(|t| t["name"] == "s/ok")
            .and_then(|t| t["sources"][0]["offset"].as_u64())
            .unwrap_or(0);
        if took.is_none() && read >= target {
            took = Some(started.elapsed());
        }
        let failed = |m: &str| {
            tasks
                .iter()
                .any(|t| t["name"] == format!("s/{m}").as_str() && t["state"] == "failed")
        };
        // The log flood does not fail: its lines are cut (checked below).
        if took.is_some()
            && modes
                .iter()
                .filter(|m| **m != "log-flood")
                .all(|m| failed(m))
        {
            for (mode, parts) in CASES {
                let Some(t) = tasks
                    .iter()
                    .find(|t| t["name"] == format!("s/{mode}").as_str())
                else {
                    continue;
                };
                let e = t["lastError"].as_str().unwrap_or_default();
                for part in *parts {
                    assert!(e.contains(part), "s/{mode}: expected {part:?} in {e:?}");
                }
            }
            let ok = tasks.iter().find(|t| t["name"] == "s/ok").unwrap();
            assert_eq!(ok["state"], "running", "{ok}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if modes.contains(&"log-flood") {
        let lines = flow_tests::read_ndjson(&http, &p.base, "/v1/plugins/s%2Flog-flood/logs").await;
        assert!(
            lines.iter().any(|l| l["message"]
                .as_str()
                .unwrap_or("")
                .contains("bytes cut: lines are kept up to")),
            "the log flood's lines are cut: {lines:?}"
        );
    }
    let (_, peak) = p.rss();
    (took.unwrap(), baseline, peak)
}
