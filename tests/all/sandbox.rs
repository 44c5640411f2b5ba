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
            "CPU deadline of 200 ms per call",
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
            "100000 documents from one call, over the cap of 1000",
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
        call_deadline_ms: 200,
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
