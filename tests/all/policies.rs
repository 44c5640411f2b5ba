//! Error policies: `fail` stops the task with nothing of the failing transaction committed,
//! and a fixed plugin resumes it from its checkpoint; `skip` and `deadLetter` pin the failure
//! on its document and go on.

use crate::{plugin_bytes, plugins};
use flow_host::catalog::{Bundle, Catalog};
use flow_host::{Host, HostOptions};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn bundle(on_error: Value) -> Bundle {
    let catalog: Catalog = serde_json::from_value(catalog_json(on_error)).unwrap();
    Bundle {
        source: "policies.rs".into(),
        catalog,
        modules: Default::default(),
        origins: Default::default(),
    }
}

fn catalog_json(on_error: Value) -> Value {
    let mut derive = json!({
        "using": {"wasm": {"plugin": "counter"}},
        "transforms": [{"name": "fromEvents", "source": "s/events", "shuffle": {"key": ["/key"]}}],
    });
    if !on_error.is_null() {
        derive["onError"] = on_error;
    }
    json!({
        "collections": {
            "s/events": {
                "schema": {"type": "object", "properties": {"id": {"type": "integer"}, "key": {"type": "string"}}, "required": ["id", "key"]},
                "key": ["/id"],
            },
            "s/counts": {
                "schema": {"type": "object",
                           "properties": {"id": {"type": "integer"}, "key": {"type": "string"}, "count": {"type": "integer"}},
                           "required": ["id", "key", "count"]},
                "key": ["/id"],
                "derive": derive,
            },
            "s/dead": {
                "schema": {"type": "object",
                           "properties": {"id": {"type": "string"}, "error": {"type": "string"}, "document": {"type": "object"}},
                           "required": ["id", "error", "document", "plugin", "version", "transform"]},
                "key": ["/id"],
            },
        },
    })
}

fn events(ids: std::ops::Range<u64>, poison: &[u64]) -> Vec<Value> {
    ids.map(|id| {
        let mut d = json!({"id": id, "key": format!("k{}", id % 2)});
        if poison.contains(&id) {
            d["poison"] = json!(true);
        }
        d
    })
    .collect()
}

fn host() -> (tempfile::TempDir, std::sync::Arc<Host>) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::open(HostOptions::new(dir.path())).unwrap();
    host.registry
        .deploy("counter", &plugin_bytes(plugins::COUNTER_V1))
        .unwrap();
    (dir, host)
}

fn derived(host: &Host, collection: &str) -> Vec<Value> {
    flow_host::catalog_test::reduced_documents(host, &collection.into()).unwrap()
}

fn wait_state(host: &Host, task: &str, state: &str) -> flow_host::runtime::TaskStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = host.task_status(task).unwrap();
        if s.state == state {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "task {task} never became {state}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn fail_commits_nothing_then_a_fixed_plugin_resumes_from_the_checkpoint() {
    let (_dir, host) = host();
    host.publish(bundle(Value::Null)).unwrap();
    host.ingest("s/events", events(0..4, &[])).unwrap();
    host.wait_idle(Duration::from_secs(60)).unwrap();
    // One transaction with good documents around a poison one.
    host.ingest("s/events", events(4..10, &[6])).unwrap();
    let status = wait_state(&host, "s/counts", "failed");
    let e = status.last_error.unwrap();
    assert!(e.contains("transform fromEvents (source s/events)"), "{e}");
    assert!(e.contains("v1 cannot handle poison documents"), "{e}");
    assert!(
        e.contains(r#""poison":true"#),
        "the error names the document: {e}"
    );
    // Nothing of the failed transaction was committed.
    let ids: Vec<u64> = derived(&host, "s/counts")
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![0, 1, 2, 3]);
    assert!(
        host.registry
            .logs()
            .read("counter", 0)
            .iter()
            .any(|l| l.message.contains("task s/counts failed"))
    );

    // Version 2 fixes the bug; the task resumes from its checkpoint with its state.
    host.registry
        .deploy("counter", &plugin_bytes(plugins::COUNTER_V2))
        .unwrap();
    host.plugin_deployed("counter");
    host.wait_idle(Duration::from_secs(60)).unwrap();
    let docs = derived(&host, "s/counts");
    let ids: Vec<u64> = docs.iter().map(|d| d["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (0..10).collect::<Vec<_>>());
    let counts: Vec<u64> = docs
        .iter()
        .filter(|d| d["key"] == "k0")
        .map(|d| d["count"].as_u64().unwrap())
        .collect();
    assert_eq!(
        counts,
        vec![1, 2, 3, 4, 5],
        "state carried across the failure and the fix"
    );
}

#[test]
fn skip_counts_and_logs_the_failing_document_and_goes_on() {
    let (_dir, host) = host();
    host.publish(bundle(json!({"policy": "skip"}))).unwrap();
    host.ingest("s/events", events(0..10, &[3, 6])).unwrap();
    host.wait_idle(Duration::from_secs(60)).unwrap();
    let docs = derived(&host, "s/counts");
    let ids: Vec<u64> = docs.iter().map(|d| d["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![0, 1, 2, 4, 5, 7, 8, 9]);
    // A skipped document's state writes are undone: k0 counts 0, 2, 4, 8 -> 1, 2, 3, 4.
    let counts: Vec<u64> = docs
        .iter()
        .filter(|d| d["key"] == "k0")
        .map(|d| d["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, vec![1, 2, 3, 4]);
    let status = host.task_status("s/counts").unwrap();
    assert_eq!((status.state.as_str(), status.docs_failed), ("running", 2));
    let logs = host.registry.logs().read("counter", 0);
    assert_eq!(
        logs.iter()
            .filter(|l| l.message.contains("skipped document of s/events"))
            .count(),
        2,
        "{logs:?}"
    );
    assert!(derived(&host, "s/dead").is_empty());
}

#[test]
fn dead_letter_records_the_document_error_version_and_transform() {
    let (_dir, host) = host();
    host.publish(bundle(
        json!({"policy": "deadLetter", "collection": "s/dead"}),
    ))
    .unwrap();
    host.ingest("s/events", events(0..6, &[1])).unwrap();
    host.wait_idle(Duration::from_secs(60)).unwrap();
    assert_eq!(derived(&host, "s/counts").len(), 5);
    let dead = derived(&host, "s/dead");
    assert_eq!(dead.len(), 1, "{dead:?}");
    let r = &dead[0];
    assert_eq!(r["document"]["id"], 1);
    assert_eq!(
        (
            r["plugin"].as_str(),
            r["version"].as_u64(),
            r["transform"].as_str()
        ),
        (Some("counter"), Some(1), Some("fromEvents"))
    );
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("v1 cannot handle poison documents"),
        "{r}"
    );
    assert!(r["digest"].as_str().unwrap().starts_with("sha256:"));

    // A dead-letter policy without a collection, or naming an unknown one, is refused.
    for (on_error, expect) in [
        (json!({"policy": "deadLetter"}), "needs a `collection`"),
        (
            json!({"policy": "deadLetter", "collection": "s/nope"}),
            "dead-letter collection 's/nope' must be another collection",
        ),
        (
            json!({"policy": "skip", "collection": "s/dead"}),
            "only for policy deadLetter",
        ),
        (json!({"policy": "retry"}), "unknown variant `retry`"),
    ] {
        let e = match serde_json::from_value::<Catalog>(catalog_json(on_error)) {
            Err(e) => e.to_string(),
            Ok(c) => host
                .publish(Bundle {
                    source: "policies.rs".into(),
                    catalog: c,
                    modules: Default::default(),
                    origins: Default::default(),
                })
                .unwrap_err()
                .to_string(),
        };
        assert!(e.contains(expect), "{expect:?} not in {e:?}");
    }
}

/// Past `txnTimeMaxMs` a transaction commits the prefix it processed and the task reads on:
/// with a zero budget and one document per call, every document is its own transaction, and
/// every one is still derived exactly once, in order, with its state.
#[test]
fn time_bounded_transactions_commit_prefixes() {
    let (_dir, host) = host();
    let mut catalog = catalog_json(Value::Null);
    catalog["collections"]["s/counts"]["derive"]["limits"] =
        json!({"callDocsMax": 1, "txnTimeMaxMs": 0});
    let catalog: Catalog = serde_json::from_value(catalog).unwrap();
    host.publish(Bundle {
        source: "policies.rs".into(),
        catalog,
        modules: Default::default(),
        origins: Default::default(),
    })
    .unwrap();
    host.ingest("s/events", events(0..20, &[])).unwrap();
    host.wait_idle(Duration::from_secs(60)).unwrap();
    let status = host.task_status("s/counts").unwrap();
    assert_eq!(
        (status.docs_in, status.transactions),
        (20, 20),
        "{status:?}"
    );
    let docs = derived(&host, "s/counts");
    assert_eq!(
        docs.iter()
            .map(|d| d["id"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        (0..20).collect::<Vec<_>>()
    );
    let counts: Vec<u64> = docs
        .iter()
        .filter(|d| d["key"] == "k1")
        .map(|d| d["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, (1..=10).collect::<Vec<_>>());
}

/// A plugin output that violates the derived schema fails the task naming the transform, the
/// source document and the reason; nothing of the transaction is committed.
#[test]
fn an_invalid_output_names_the_transform_and_source_document() {
    let (_dir, host) = host();
    let mut catalog = catalog_json(Value::Null);
    catalog["collections"]["s/counts"]["schema"]["properties"]["count"] =
        json!({"type": "integer", "maximum": 3});
    let catalog: Catalog = serde_json::from_value(catalog).unwrap();
    host.publish(Bundle {
        source: "policies.rs".into(),
        catalog,
        modules: Default::default(),
        origins: Default::default(),
    })
    .unwrap();
    // Key k0 gets its 4th document at id 6: its output has count 4.
    host.ingest("s/events", events(0..10, &[])).unwrap();
    let e = wait_state(&host, "s/counts", "failed").last_error.unwrap();
    assert!(e.contains("transform fromEvents (source s/events)"), "{e}");
    assert!(e.contains("does not match the schema of s/counts"), "{e}");
    assert!(e.contains("at /count") && e.contains("maximum"), "{e}");
    assert!(
        e.contains(r#""id":6"#),
        "the error names the source document: {e}"
    );
    assert!(
        derived(&host, "s/counts").is_empty(),
        "nothing of the failed transaction is committed"
    );
}
