//! `flow bench --suite backfill`: a derivation created after its source holds `--docs`
//! documents reads all of them (from fragments in the object store, then the redb head) and
//! catches up: its throughput, and the peak RSS of the process while it does. The history is
//! written first (not timed), through the same path as an HTTP ingest, in requests of 10,000;
//! the sealer seals it into gzip fragments meanwhile, as a long-running host would have.

use crate::catalog::Catalog;
use crate::runtime::{Host, HostOptions};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const DOCS_PER_REQUEST: usize = 10_000;

fn catalog(with_derivation: bool) -> Catalog {
    let mut c = json!({"collections": {"acme/orders": {
        "schema": {"type": "object",
                   "properties": {"id": {"type": "integer"}, "customer": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
                   "required": ["id", "customer", "amount"]},
        "key": ["/id"],
        // Fragments of 64 MB, so that most of the history is in the store by the time the
        // derivation starts.
        "journals": {"fragments": {"length": 64}},
    }}});
    if with_derivation {
        c["collections"]["acme/customer-totals"] = json!({
            "schema": {"type": "object",
                       "properties": {"customer": {"type": "string"}, "total": {"type": "number"}, "orders": {"type": "integer"}},
                       "required": ["customer", "total", "orders"]},
            "key": ["/customer"],
            "derive": {
                "using": {"wasm": {"plugin": "totals"}},
                "transforms": [{"name": "fromOrders", "source": "acme/orders", "shuffle": {"key": ["/customer"]}}],
            },
        });
    }
    serde_json::from_value(c).expect("valid catalog")
}

pub fn run(plugins: &Path, docs: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::open(HostOptions::new(dir.path().join("data")))?;
    super::deploy(&host, plugins, &[("totals", "customer_totals.wasm")])?;
    let publish = |with_derivation| super::publish(&host, catalog(with_derivation));
    publish(false)?;
    let written = Instant::now();
    for first in (0..docs).step_by(DOCS_PER_REQUEST) {
        let body: String = (first..(first + DOCS_PER_REQUEST).min(docs))
            .map(super::pipeline::order)
            .collect();
        let body = bytes::Bytes::from(body);
        let lines = crate::runtime::ndjson_lines("acme/orders", &body, host.limits.doc_bytes_max)
            .map_err(anyhow::Error::msg)?;
        host.ingest_lines("acme/orders", lines)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let written = written.elapsed();
    let orders = host
        .collections()?
        .into_iter()
        .find(|c| c.name == "acme/orders")
        .ok_or_else(|| anyhow::anyhow!("no acme/orders"))?;
    println!(
        "backfill suite: {docs} orders ({} MB) written in {:.1} s ({:.0} docs/s, not part of the measure); {} fragments hold {} MB of them, {} MB are in redb",
        orders.head >> 20,
        written.as_secs_f64(),
        docs as f64 / written.as_secs_f64(),
        orders.fragments.fragments,
        orders.fragments.persisted_through >> 20,
        orders.fragments.unsealed_bytes >> 20,
    );

    // Now the derivation, from the first document.
    let before = super::status_bytes("VmRSS:");
    let cpu = super::cpu_seconds();
    let (result, peak) = super::pipeline::with_peak_rss(|| -> anyhow::Result<()> {
        let started = Instant::now();
        publish(true)?;
        host.wait_idle(Duration::from_secs(3600))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let took = started.elapsed();
        let s = host
            .task_status("acme/customer-totals")
            .ok_or_else(|| anyhow::anyhow!("no status of the derivation"))?;
        anyhow::ensure!(
            s.docs_in == docs as u64,
            "the derivation read {} of {docs} documents",
            s.docs_in
        );
        println!(
            "backfill through customer-totals: {docs} documents in {:.1} s = {:.0} docs/s ({} transactions, {} documents out), {:.2} cores busy",
            took.as_secs_f64(),
            docs as f64 / took.as_secs_f64(),
            s.transactions,
            s.docs_out,
            (super::cpu_seconds() - cpu) / took.as_secs_f64()
        );
        Ok(())
    });
    result?;
    println!(
        "peak RSS during the backfill: {} MiB (RSS before it: {} MiB)",
        peak >> 20,
        before >> 20
    );
    host.shutdown();
    Ok(())
}
