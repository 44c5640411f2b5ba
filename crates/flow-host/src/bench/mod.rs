//! `flow bench` suites, one file each: Wasm vs native derivation and the whole pipeline
//! (`derive.rs`), the combiner's throughput and memory (`combiner.rs`), end-to-end latency
//! and plugin swap (`latency.rs`), fragment sealing and reads (`fragments.rs`), and issue #18's
//! workload, orders over HTTP -> customer totals -> SQLite beside ingest alone and a native
//! floor (`pipeline.rs`). Results go in
//! `docs/benchmarks.md`; `make bench` runs them all in release.

pub(crate) mod combiner;
pub(crate) mod derive;
pub(crate) mod fragments;
pub(crate) mod latency;
pub(crate) mod pipeline;

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
