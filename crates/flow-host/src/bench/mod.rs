//! `flow bench` suites, one file each: Wasm vs native derivation and the whole pipeline
//! (`derive.rs`), the combiner's throughput and memory (`combiner.rs`), end-to-end latency
//! and plugin swap (`latency.rs`), fragment sealing and reads (`fragments.rs`), and issue #18's
//! workload, orders over HTTP -> customer totals -> SQLite beside ingest alone and a native
//! floor (`pipeline.rs`), a derivation backfilling a long history (`backfill.rs`), what
//! materializations cost their destinations (`materialize.rs`), and capturing a PostgreSQL
//! table (`capture.rs`).
//! Results go in `docs/benchmarks.md`; `make bench` runs them all in release.

pub(crate) mod backfill;
pub(crate) mod capture;
pub(crate) mod combiner;
pub(crate) mod derive;
pub(crate) mod fragments;
pub(crate) mod languages;
pub(crate) mod latency;
pub(crate) mod materialize;
pub(crate) mod pipeline;

/// Deploy plugins to `host`: each (plugin name, its component's file in `plugins`).
pub(crate) fn deploy(
    host: &crate::runtime::Host,
    plugins: &std::path::Path,
    which: &[(&str, &str)],
) -> anyhow::Result<()> {
    for (name, file) in which {
        let path = plugins.join(file);
        let bytes = std::fs::read(&path).map_err(|e| {
            anyhow::anyhow!("{}: {e} (build the plugins: make plugins)", path.display())
        })?;
        host.registry
            .deploy(name, &bytes)
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    }
    Ok(())
}

/// Publish `catalog` to `host`, as the bench's.
pub(crate) fn publish(
    host: &crate::runtime::Host,
    catalog: crate::catalog::Catalog,
) -> anyhow::Result<()> {
    host.publish(crate::catalog::Bundle {
        source: "bench".into(),
        catalog,
        modules: Default::default(),
        origins: Default::default(),
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// Follow an NDJSON stream of documents (`GET .../documents?follow=true`): `on_doc` gets
/// each document with when the chunk holding it arrived.
pub(crate) fn follow(
    resp: reqwest::Response,
    mut on_doc: impl FnMut(serde_json::Value, std::time::Instant) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    use futures::StreamExt;
    tokio::spawn(async move {
        let mut stream = resp.bytes_stream();
        let mut buf = Vec::new();
        while let Some(Ok(chunk)) = stream.next().await {
            let now = std::time::Instant::now();
            buf.extend_from_slice(&chunk);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                if let Ok(doc) = serde_json::from_slice(&line) {
                    on_doc(doc, now);
                }
            }
        }
    })
}

/// CPU time this process has used (user and system, all threads), in seconds, from
/// /proc/self/stat (clock ticks of 1/100 s on Linux).
pub(crate) fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// A memory figure of this process from `/proc/self/status` (`field` is e.g. `VmRSS:` or
/// `VmHWM:`), in bytes, or 0 where unknown.
fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        << 10
}
