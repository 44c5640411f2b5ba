//! Derivations read their sources in publish-time order across sources, also when batch
//! limits cut a source off, so a backfill from the start sees what the live run saw; and
//! `readDelay` holds documents back until they are old enough.

use crate::{plugin_bytes, plugins};
use flow_host::catalog::{Bundle, Catalog};
use flow_host::{Host, HostOptions};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn bundle(read_delay: Option<&str>) -> Bundle {
    let mut from_b = json!({"name": "fromB", "source": "o/b"});
    if let Some(d) = read_delay {
        from_b["readDelay"] = json!(d);
    }
    let schema =
        json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
    let catalog: Catalog = serde_json::from_value(json!({
        "collections": {
            "o/a": {"schema": schema, "key": ["/n"]},
            "o/b": {"schema": schema, "key": ["/n"]},
            "o/merged": {
                "schema": schema,
                "key": ["/n"],
                "derive": {
                    "using": {"wasm": {"module": "p.wasm"}},
                    "transforms": [{"name": "fromA", "source": "o/a"}, from_b],
                    // Small transactions, so sources are cut off by the batch limit.
                    "limits": {"txnDocsMax": 4},
                },
            },
        },
    }))
    .unwrap();
    let mut b = Bundle {
        source: "ordering.rs".into(),
        catalog,
        modules: Default::default(),
        origins: Default::default(),
    };
    b.modules
        .insert("p.wasm".into(), plugin_bytes(plugins::PASSTHROUGH));
    b
}

fn merged_order(host: &Host) -> Vec<u64> {
    host.journals
        .read(&host.store, "o/merged", 0, usize::MAX, usize::MAX)
        .unwrap()
        .iter()
        .map(|d| {
            serde_json::from_slice::<Value>(&d.bytes).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn sources_merge_in_publish_order_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::open(HostOptions::new(dir.path())).unwrap();
    // The collections first, so the documents exist before the derivation backfills them.
    let mut only_collections = bundle(None);
    only_collections.catalog.collections.remove("o/merged");
    host.publish(only_collections).unwrap();
    // Sixteen documents of a, then one of b, then more of both, each its own transaction.
    let mut n = 0u64;
    let mut ingest = |c: &str, count: usize| {
        for _ in 0..count {
            host.ingest(c, vec![json!({"n": n})]).unwrap();
            n += 1;
            // UUIDv7 clocks have millisecond resolution; keep publish times distinct.
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    ingest("o/a", 8);
    ingest("o/b", 1);
    ingest("o/a", 7);
    ingest("o/b", 5);
    ingest("o/a", 3);
    host.publish(bundle(None)).unwrap();
    host.wait_idle(Duration::from_secs(60)).unwrap();
    assert_eq!(
        merged_order(&host),
        (0..24).collect::<Vec<_>>(),
        "documents in publish order"
    );
}

#[test]
fn read_delay_holds_documents_until_they_are_old_enough() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::open(HostOptions::new(dir.path())).unwrap();
    host.publish(bundle(Some("700ms"))).unwrap();
    let start = Instant::now();
    host.ingest("o/b", vec![json!({"n": 1})]).unwrap();
    host.ingest("o/a", vec![json!({"n": 2})]).unwrap();
    // The undelayed source flows at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while merged_order(&host) != vec![2] {
        assert!(
            Instant::now() < deadline,
            "o/a's document did not arrive: {:?}",
            merged_order(&host)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        start.elapsed() < Duration::from_millis(700),
        "too slow to tell the delay apart"
    );
    // The delayed one arrives once 700 ms old, without further appends to wake the task.
    let deadline = Instant::now() + Duration::from_secs(10);
    while merged_order(&host) != vec![2, 1] {
        assert!(
            Instant::now() < deadline,
            "o/b's document did not arrive: {:?}",
            merged_order(&host)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        start.elapsed() >= Duration::from_millis(700),
        "arrived before its delay: {:?}",
        start.elapsed()
    );

    let mut bad = bundle(Some("soon"));
    bad.catalog.collections.get_mut("o/merged").unwrap().key = vec!["/n".into()];
    let e = host.publish(bad).unwrap_err().to_string();
    assert!(e.contains("transform fromB: readDelay \"soon\""), "{e}");
}
