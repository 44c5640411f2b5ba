//! The three throughput cases of `flow bench --suite combiner`, as a loop small enough to run
//! under callgrind, so that a change to the combiner can be judged by instruction counts
//! rather than by timings on a busy machine:
//!
//! ```sh
//! cargo build --release -p flow-doc --example combine_loop
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.sum \
//!     target/release/examples/combine_loop sum 100000
//! callgrind_annotate --inclusive=yes /tmp/cg.sum | grep 'combine_loop::'
//! ```
//!
//! `parse_all` parses the documents (the bench's floor); `combine_all` parses them again and
//! adds each to a combiner, then drains it fully (the bench's combine). Their ratio is the
//! bench's ratio in instructions. Documents and schemas are copied from
//! `crates/flow-host/src/bench/combiner.rs`; keep them in step.

use flow_doc::{Binding, Combiner, Pointer, Schema};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

/// As in the `flow` binary, whose allocator changes what allocation costs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn case(name: &str) -> (Value, fn(usize) -> String) {
    match name {
        "sum" => (
            json!({
                "type": "object", "reduce": {"strategy": "merge"},
                "properties": {"key": {"type": "string"}, "n": {"type": "integer", "reduce": {"strategy": "sum"}}},
                "required": ["key"],
            }),
            |i| format!(r#"{{"key":"k{}","n":{}}}"#, i % 10_000, i % 100),
        ),
        "nested" => (
            json!({
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
            |i| {
                format!(
                    r#"{{"key":"k{}","stats":{{"s{}":{{"count":1,"max":{}.5,"last":"e{i}"}},"total":{{"count":1,"max":{}}}}},"tags":["t{}"]}}"#,
                    i % 10_000,
                    i % 5,
                    i % 1000,
                    i % 77,
                    i % 9
                )
            },
        ),
        "set" => (
            json!({
                "type": "object", "reduce": {"strategy": "merge"},
                "properties": {
                    "key": {"type": "string"},
                    "members": {"type": "object", "reduce": {"strategy": "set"},
                                "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer", "reduce": {"strategy": "sum"}}}},
                },
                "required": ["key"],
            }),
            |i| {
                let term = if i % 5 == 4 { "remove" } else { "add" };
                let n = if i % 5 == 4 { 0 } else { 1 };
                format!(
                    r#"{{"key":"k{}","members":{{"{term}":{{"m{}":{n}}}}}}}"#,
                    i % 10_000,
                    i % 50
                )
            },
        ),
        other => panic!("unknown case {other:?}: sum, nested or set"),
    }
}

#[inline(never)]
fn parse_all(input: &[String]) {
    for line in input {
        std::hint::black_box(serde_json::from_str::<Value>(line).expect("parses"));
    }
}

#[inline(never)]
fn combine_all(schema: &Arc<Schema>, input: &[String]) -> usize {
    let key = vec![Pointer::parse("/key").expect("valid pointer")];
    let mut c = Combiner::new(
        vec![Binding {
            key,
            schema: schema.clone(),
        }],
        flow_doc::combine::SPILL_THRESHOLD_BYTES_DEFAULT,
    );
    for line in input {
        c.add(0, serde_json::from_str(line).expect("parses"), false)
            .expect("adds");
    }
    let mut n = 0;
    for d in c.drain(true).expect("drains") {
        std::hint::black_box(d.expect("drained"));
        n += 1;
    }
    n
}

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "sum".to_string());
    let docs: usize = args.next().map_or(100_000, |d| d.parse().expect("a count"));
    let (schema, doc) = case(&name);
    let schema = Arc::new(Schema::compile(&schema).expect("compiles"));
    let input: Vec<String> = (0..docs).map(doc).collect();
    let t = Instant::now();
    parse_all(&input);
    let parse = t.elapsed();
    let t = Instant::now();
    let keys = combine_all(&schema, &input);
    let combine = t.elapsed();
    println!(
        "{name}: {docs} docs, {keys} keys; parse {:.0} docs/s, combine {:.0} docs/s, ratio {:.2}",
        docs as f64 / parse.as_secs_f64(),
        docs as f64 / combine.as_secs_f64(),
        parse.as_secs_f64() / combine.as_secs_f64()
    );
}
