//! The contract is language-neutral: a derivation written in Python (componentize-py)
//! against the same wit/ runs in the host, with state.

use crate::plugins;
use flow_host::catalog::{Bundle, Catalog};
use serde_json::json;

fn catalog(module: &str) -> Bundle {
    let catalog: Catalog = serde_json::from_value(json!({
        "collections": {
            "acme/orders": {
                "schema": {"type": "object", "properties": {"id": {"type": "integer"}, "customer": {"type": "string"}, "amount": {"type": "number"}},
                           "required": ["id", "customer", "amount"]},
                "key": ["/id"],
            },
            "acme/order-counts": {
                "schema": {"type": "object", "properties": {"customer": {"type": "string"}, "orders": {"type": "integer"}, "lastId": {"type": "integer"}},
                           "required": ["customer", "orders"]},
                "key": ["/customer"],
                "derive": {
                    "using": {"wasm": {"module": "counter.wasm"}},
                    "transforms": [{"name": "fromOrders", "source": "acme/orders", "shuffle": {"key": ["/customer"]}}],
                },
            },
        },
        "tests": {
            "counts": [
                {"ingest": {"collection": "acme/orders", "documents": [
                    {"id": 1, "customer": "ann", "amount": 1}, {"id": 2, "customer": "ben", "amount": 1}, {"id": 3, "customer": "ann", "amount": 2}]}},
                {"verify": {"collection": "acme/order-counts", "documents": [
                    {"customer": "ann", "orders": 2, "lastId": 3}, {"customer": "ben", "orders": 1, "lastId": 2}]}},
                {"ingest": {"collection": "acme/orders", "documents": [{"id": 4, "customer": "ben", "amount": 5}]}},
                {"verify": {"collection": "acme/order-counts", "documents": [
                    {"customer": "ann", "orders": 2}, {"customer": "ben", "orders": 2, "lastId": 4}]}},
            ],
            "a plugin error names the document": [
                {"ingest": {"collection": "acme/orders", "documents": [{"id": 9, "customer": "eve", "amount": -3}]}},
                {"verify": {"collection": "acme/order-counts", "documents": []}},
            ],
        },
    }))
    .unwrap();
    let mut bundle = Bundle {
        source: "python.rs".into(),
        catalog,
        modules: Default::default(),
        origins: Default::default(),
    };
    bundle
        .modules
        .insert("counter.wasm".into(), crate::plugin_bytes(module));
    bundle
}

#[test]
fn python_derivation_runs_with_state() {
    let report = flow_host::catalog_test::run(
        &catalog(plugins::PY_ORDER_COUNTER),
        &flow_host::Limits::default(),
        &[],
        |_, _, _| {},
    )
    .unwrap();
    assert_eq!(
        report.passed,
        vec!["counts".to_string()],
        "{:?}",
        report.failed
    );
    // The Python plugin's error value fails the task, naming the transform, the reason and the
    // source document.
    let (name, why) = &report.failed[0];
    assert_eq!(name, "a plugin error names the document");
    assert!(
        why.contains("transform fromOrders (source acme/orders)"),
        "{why}"
    );
    assert!(why.contains("amount must not be negative: -3"), "{why}");
    assert!(why.contains(r#""customer":"eve""#), "{why}");
}
