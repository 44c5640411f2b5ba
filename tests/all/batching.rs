//! Transactions grow while a task has a backlog: a derivation that starts behind reads in
//! doubling transactions (4,096, 8,192, ... up to `txnDocsMax`) and combines each one's
//! outputs by key, with the same results as one document at a time.

use crate::{plugin_bytes, plugins};
use flow_host::catalog::{Bundle, Catalog};
use flow_host::{Host, HostOptions};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const ORDERS: usize = 60_000;
const CUSTOMERS: usize = 100;

fn bundle(with_derivation: bool) -> Bundle {
    let mut collections = json!({
        "b/orders": {
            "schema": {"type": "object",
                       "properties": {"id": {"type": "integer"}, "customer": {"type": "string"}, "amount": {"type": "number"}},
                       "required": ["id", "customer", "amount"]},
            "key": ["/id"],
        },
    });
    if with_derivation {
        collections["b/totals"] = json!({
            "schema": {"type": "object",
                       "properties": {"customer": {"type": "string"}, "total": {"type": "number"}, "orders": {"type": "integer"}},
                       "required": ["customer", "total", "orders"]},
            "key": ["/customer"],
            "derive": {
                "using": {"wasm": {"module": "totals.wasm"}},
                "transforms": [{"name": "fromOrders", "source": "b/orders", "shuffle": {"key": ["/customer"]}}],
            },
        });
    }
    let catalog: Catalog = serde_json::from_value(json!({"collections": collections})).unwrap();
    let mut b = Bundle {
        source: "batching.rs".into(),
        catalog,
        modules: Default::default(),
        origins: Default::default(),
    };
    b.modules
        .insert("totals.wasm".into(), plugin_bytes(plugins::CUSTOMER_TOTALS));
    b
}

#[test]
fn a_backlog_is_read_in_growing_transactions_and_combined() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::open(HostOptions::new(dir.path())).unwrap();
    host.publish(bundle(false)).unwrap();
    for first in (0..ORDERS).step_by(10_000) {
        let docs: Vec<Value> = (first..first + 10_000)
            .map(|i| json!({"id": i, "customer": format!("c{}", i % CUSTOMERS), "amount": 1.5}))
            .collect();
        host.ingest("b/orders", docs).unwrap();
    }
    // The derivation starts with every order waiting.
    host.publish(bundle(true)).unwrap();
    host.wait_idle(Duration::from_secs(120)).unwrap();

    let status = host.task_status("b/totals").unwrap();
    assert_eq!(status.docs_in, ORDERS as u64);
    // 4,096 + 8,192 + 16,384 + 32,768 >= 60,000: four transactions, where fixed transactions
    // of 4,096 would take fifteen.
    assert_eq!(status.transactions, 4, "{status:?}");
    // Each transaction's outputs combine to one document per customer.
    assert!(
        status.docs_out <= 4 * CUSTOMERS as u64,
        "outputs were not combined: {status:?}"
    );

    // And the totals are exactly what one order at a time gives.
    let mut last: BTreeMap<String, Value> = BTreeMap::new();
    for d in host.read("b/totals", "b/totals", 0, usize::MAX).unwrap() {
        let doc: Value = serde_json::from_slice(&d.bytes).unwrap();
        last.insert(doc["customer"].as_str().unwrap().to_string(), doc);
    }
    assert_eq!(last.len(), CUSTOMERS);
    let per = (ORDERS / CUSTOMERS) as u64;
    for (customer, doc) in last {
        assert_eq!(doc["orders"], per, "{customer}: {doc}");
        assert_eq!(
            doc["total"].as_f64(),
            Some(1.5 * per as f64),
            "{customer}: {doc}"
        );
    }
}

/// A materialization transaction of many distinct rows is written (and loaded) in calls of at
/// most `callDocsMax` documents: one call of all 4,096 rows of a ~1 KiB document each held
/// more than this plugin's 4 MiB memory cap (the join of `flow bench --suite pipeline` failed
/// so at 65,536 rows and the default 64 MiB).
#[test]
fn a_materialization_writes_a_large_transaction_in_bounded_calls() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::open(HostOptions::new(dir.path().join("data"))).unwrap();
    let views = dir.path().join("views.db");
    let catalog: Catalog = serde_json::from_value(json!({
        "collections": {
            "b/orders": {
                "schema": {"type": "object",
                           "properties": {"id": {"type": "integer"}, "note": {"type": "string"}},
                           "required": ["id", "note"]},
                "key": ["/id"],
            },
        },
        "materializations": {
            "b/views": {
                "endpoint": {"wasm": {"module": "sqlite.wasm", "config": {"path": views}}},
                "bindings": [{"source": "b/orders", "resource": {"table": "orders"}}],
                "limits": {"pluginMemoryBytesMax": 4194304, "callDocsMax": 256},
            },
        },
    }))
    .unwrap();
    let mut b = Bundle {
        source: "batching.rs".into(),
        catalog,
        modules: Default::default(),
        origins: Default::default(),
    };
    b.modules.insert(
        "sqlite.wasm".into(),
        plugin_bytes(plugins::MATERIALIZE_SQLITE),
    );
    let docs: Vec<Value> = (0..4096)
        .map(|i| json!({"id": i, "note": format!("{i:04}-{}", "x".repeat(1000))}))
        .collect();
    // All rows wait before the task starts, so its first transaction reads all of them.
    host.publish(Bundle {
        catalog: serde_json::from_value(
            json!({"collections": {"b/orders": b.catalog.collections["b/orders"]}}),
        )
        .unwrap(),
        ..b.clone()
    })
    .unwrap();
    host.ingest("b/orders", docs).unwrap();
    host.publish(b).unwrap();
    host.wait_idle(Duration::from_secs(120)).unwrap();
    let status = host.task_status("b/views").unwrap();
    assert_eq!(
        (status.transactions, status.docs_out),
        (1, 4096),
        "{status:?}"
    );
    let rows: i64 = rusqlite::Connection::open(&views)
        .unwrap()
        .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 4096);
}
