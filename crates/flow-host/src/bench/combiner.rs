//! `flow bench --suite combiner`: combiner throughput against plain `serde_json` parsing of the
//! same input (the floor), and peak memory with many distinct keys.

use flow_doc::{Binding, Combiner, Pointer, Schema};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Case {
    name: &'static str,
    schema: Value,
    /// Document `i` of the input, as JSON text.
    doc: fn(usize) -> String,
    docs: usize,
    spill_bytes: usize,
}

fn cases(docs: usize) -> Vec<Case> {
    let sum_schema = json!({
        "type": "object", "reduce": {"strategy": "merge"},
        "properties": {"key": {"type": "string"}, "n": {"type": "integer", "reduce": {"strategy": "sum"}}},
        "required": ["key"],
    });
    vec![
        Case {
            name: "sum by key (10k keys)",
            schema: sum_schema.clone(),
            doc: |i| format!(r#"{{"key":"k{}","n":{}}}"#, i % 10_000, i % 100),
            docs,
            spill_bytes: flow_doc::combine::SPILL_THRESHOLD_BYTES_DEFAULT,
        },
        Case {
            name: "nested merge (10k keys)",
            schema: json!({
                "type": "object", "reduce": {"strategy": "merge"},
                "properties": {
                    "key": {"type": "string"},
                    "stats": {"type": "object", "reduce": {"strategy": "merge"},
                              "additionalProperties": {"type": "object", "reduce": {"strategy": "merge"},
                                  "properties": {"count": {"type": "integer", "reduce": {"strategy": "sum"}},
                                                 "max": {"type": "number", "reduce": {"strategy": "maximize"}},
                                                 "last": {"type": "string"}}}},
                    "tags": {"type": "array", "reduce": {"strategy": "merge", "key": [""]}, "items": {"type": "string"}},
                },
                "required": ["key"],
            }),
            doc: |i| {
                format!(
                    r#"{{"key":"k{}","stats":{{"s{}":{{"count":1,"max":{}.5,"last":"e{i}"}},"total":{{"count":1,"max":{}}}}},"tags":["t{}"]}}"#,
                    i % 10_000,
                    i % 5,
                    i % 1000,
                    i % 77,
                    i % 9
                )
            },
            docs,
            spill_bytes: flow_doc::combine::SPILL_THRESHOLD_BYTES_DEFAULT,
        },
        Case {
            name: "set add/remove (10k keys)",
            schema: json!({
                "type": "object", "reduce": {"strategy": "merge"},
                "properties": {
                    "key": {"type": "string"},
                    "members": {"type": "object", "reduce": {"strategy": "set"},
                                "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer", "reduce": {"strategy": "sum"}}}},
                },
                "required": ["key"],
            }),
            doc: |i| {
                if i % 5 == 4 {
                    format!(
                        r#"{{"key":"k{}","members":{{"remove":{{"m{}":0}}}}}}"#,
                        i % 10_000,
                        i % 50
                    )
                } else {
                    format!(
                        r#"{{"key":"k{}","members":{{"add":{{"m{}":1}}}}}}"#,
                        i % 10_000,
                        i % 50
                    )
                }
            },
            docs,
            spill_bytes: flow_doc::combine::SPILL_THRESHOLD_BYTES_DEFAULT,
        },
        Case {
            name: "sum by key, spilling forced (1 MiB)",
            schema: sum_schema,
            doc: |i| format!(r#"{{"key":"k{}","n":{}}}"#, i % 10_000, i % 100),
            docs,
            spill_bytes: 1 << 20,
        },
    ]
}

fn key() -> Vec<Pointer> {
    vec![Pointer::parse("/key").expect("valid pointer")]
}

/// Run the throughput cases with `docs` documents each.
pub fn throughput(docs: usize) -> anyhow::Result<()> {
    println!(
        "combiner throughput, {docs} documents per case (best of 3; ratio = combine / parse-only):"
    );
    println!(
        "{:<38} {:>14} {:>14} {:>7} {:>8}",
        "case", "parse docs/s", "combine docs/s", "ratio", "spills"
    );
    for case in cases(docs) {
        let input: Vec<String> = (0..case.docs).map(case.doc).collect();
        let schema = Arc::new(Schema::compile(&case.schema).map_err(|e| anyhow::anyhow!("{e}"))?);
        let (mut parse, mut combine, mut spills) = (Duration::MAX, Duration::MAX, 0);
        for _ in 0..3 {
            let t = Instant::now();
            for line in &input {
                std::hint::black_box(serde_json::from_str::<Value>(line)?);
            }
            parse = parse.min(t.elapsed());

            let t = Instant::now();
            let mut c = Combiner::new(
                vec![Binding {
                    key: key(),
                    schema: schema.clone(),
                }],
                case.spill_bytes,
            );
            for line in &input {
                c.add(0, serde_json::from_str(line)?, false)?;
            }
            spills = c.spilled_runs();
            let mut n = 0;
            for d in c.drain(true)? {
                std::hint::black_box(d?);
                n += 1;
            }
            combine = combine.min(t.elapsed());
            anyhow::ensure!(
                n == 10_000,
                "{}: drained {n} keys, expected 10000",
                case.name
            );
        }
        let rate = |d: Duration| case.docs as f64 / d.as_secs_f64();
        println!(
            "{:<38} {:>14.0} {:>14.0} {:>7.2} {:>8}",
            case.name,
            rate(parse),
            rate(combine),
            rate(combine) / rate(parse),
            spills
        );
    }
    Ok(())
}

/// Combine `keys` distinct keys under a `threshold_bytes` spill threshold and report the
/// process's peak resident memory. Run it in a fresh process: the peak is the process's.
pub fn memory(keys: usize, threshold_bytes: usize) -> anyhow::Result<()> {
    let schema = Arc::new(Schema::compile(&json!({
        "type": "object", "reduce": {"strategy": "merge"},
        "properties": {"key": {"type": "string"}, "n": {"type": "integer", "reduce": {"strategy": "sum"}}},
        "required": ["key"],
    }))
    .map_err(|e| anyhow::anyhow!("{e}"))?);
    let before = peak_rss_bytes();
    let t = Instant::now();
    let mut c = Combiner::new(vec![Binding { key: key(), schema }], threshold_bytes);
    let mut line = String::new();
    for i in 0..keys {
        use std::fmt::Write;
        line.clear();
        write!(line, r#"{{"key":"k{i:010}","n":1}}"#)?;
        c.add(0, serde_json::from_str(&line)?, false)?;
    }
    let spills = c.spilled_runs();
    let mut n = 0usize;
    for d in c.drain(true)? {
        d?;
        n += 1;
    }
    anyhow::ensure!(n == keys, "drained {n} keys, expected {keys}");
    println!(
        "combiner memory: {keys} distinct keys, spill threshold {} MiB: {} spilled runs, peak RSS {} MiB (before: {} MiB), {:.1} s",
        threshold_bytes >> 20,
        spills,
        peak_rss_bytes() >> 20,
        before >> 20,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Peak resident set size of this process (Linux `VmHWM`), or 0 where unknown.
fn peak_rss_bytes() -> usize {
    super::status_bytes("VmHWM:") as usize
}
