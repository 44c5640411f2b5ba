//! Every example of REDUCTIONS.md, as reductions: each sequence of documents is reduced
//! strictly left to right, and in every grouping of associative runs, to the same result.

use super::super::schema::Schema;
use super::tests::{check_groupings, merge_root};
use serde_json::{Value, json};

fn check(schema: Value, docs: Vec<Value>, expect: Value) {
    let schema = Schema::compile(&schema).expect("schema compiles");
    for d in &docs {
        schema.validate(d).expect("example documents are valid");
    }
    check_groupings(&schema, &docs, &Ok(Some(expect)));
}

/// A root that merges, keyed by `/key`, with `value` as given.
fn keyed_root(value: Value) -> Value {
    json!({
        "type": "object",
        "reduce": {"strategy": "merge"},
        "properties": {"key": {"type": "string"}, "value": value},
        "required": ["key"],
    })
}

fn kv(v: Value) -> Value {
    json!({"key": "k", "value": v})
}

#[test]
fn example_append() {
    check(
        keyed_root(json!({"reduce": {"strategy": "append"}})),
        vec![kv(json!([1, 2])), kv(json!([3, null, "abc"]))],
        kv(json!([1, 2, 3, null, "abc"])),
    );
}

#[test]
fn example_first_and_last_write_wins() {
    let schema = merge_root(json!({
        "key": {"type": "string"},
        "fww": {"reduce": {"strategy": "firstWriteWins"}},
        "lww": {"reduce": {"strategy": "lastWriteWins"}},
    }));
    check(
        schema,
        vec![
            json!({"key": "k", "fww": "one", "lww": "one"}),
            json!({"key": "k", "fww": "two", "lww": "two"}),
        ],
        json!({"key": "k", "fww": "one", "lww": "two"}),
    );
}

#[test]
fn example_merge_summed() {
    let value = json!({
        "reduce": {"strategy": "merge"},
        "items": {"reduce": {"strategy": "sum"}},
        "additionalProperties": {"reduce": {"strategy": "sum"}},
    });
    check(
        keyed_root(value.clone()),
        vec![kv(json!([1, 1])), kv(json!([2, 2, 2]))],
        kv(json!([3, 3, 2])),
    );
    check(
        keyed_root(value),
        vec![kv(json!({"a": 1, "b": 1})), kv(json!({"a": 1, "c": 1}))],
        kv(json!({"a": 2, "b": 1, "c": 1})),
    );
}

#[test]
fn example_merge_keyed() {
    let value = json!({"reduce": {"strategy": "merge", "key": ["/k"]}, "items": {"reduce": {"strategy": "firstWriteWins"}}});
    check(
        keyed_root(value),
        vec![
            kv(json!([{"k": "a", "v": 1}, {"k": "b", "v": 1}])),
            kv(json!([{"k": "a", "v": 2}, {"k": "c", "v": 2}])),
        ],
        kv(json!([{"k": "a", "v": 1}, {"k": "b", "v": 1}, {"k": "c", "v": 2}])),
    );
}

#[test]
fn example_minimize_maximize() {
    let schema = merge_root(json!({
        "key": {"type": "string"},
        "min": {"reduce": {"strategy": "minimize"}},
        "max": {"reduce": {"strategy": "maximize"}},
    }));
    check(
        schema,
        vec![
            json!({"key": "k", "min": 32, "max": "abc"}),
            json!({"key": "k", "min": 42, "max": "def"}),
        ],
        json!({"key": "k", "min": 32, "max": "def"}),
    );
}

#[test]
fn example_minimize_maximize_keyed() {
    let tuple = json!([{"type": "string"}, {"type": "number", "reduce": {"strategy": "sum"}}]);
    let docs: Vec<Value> = [
        json!(["a", 1]),
        json!(["c", 2]),
        json!(["b", 3]),
        json!(["a", 4]),
    ]
    .into_iter()
    .map(kv)
    .collect();
    check(
        keyed_root(json!({"reduce": {"strategy": "minimize", "key": ["/0"]}, "items": tuple})),
        docs.clone(),
        kv(json!(["a", 5])),
    );
    check(
        keyed_root(json!({"reduce": {"strategy": "maximize", "key": ["/0"]}, "items": tuple})),
        docs,
        kv(json!(["c", 2])),
    );
}

#[test]
fn example_set() {
    let value = json!({
        "reduce": {"strategy": "set"},
        "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer", "reduce": {"strategy": "sum"}}},
    });
    let first = vec![
        kv(json!({"add": {"a": 1, "b": 1, "c": 1}})),
        kv(json!({"remove": {"b": 0}})),
        kv(json!({"add": {"a": 1, "d": 1}})),
    ];
    check(
        keyed_root(value.clone()),
        first.clone(),
        kv(json!({"add": {"a": 2, "c": 1, "d": 1}})),
    );
    let mut all = first;
    all.push(kv(
        json!({"intersect": {"a": 0, "d": 0}, "add": {"a": 1, "e": 1}}),
    ));
    check(
        keyed_root(value),
        all,
        kv(json!({"add": {"a": 3, "d": 1, "e": 1}})),
    );
}

#[test]
fn example_sum() {
    check(
        keyed_root(json!({"reduce": {"strategy": "sum"}})),
        vec![kv(json!(5)), kv(json!(-1.2))],
        kv(json!(3.8)),
    );
}

#[test]
fn example_resettable_sum() {
    let schema = json!({
        "type": "object",
        "reduce": {"strategy": "merge"},
        "properties": {"key": {"type": "string"}, "action": {"enum": ["reset", "sum"]}, "value": {"type": "number"}},
        "required": ["key", "action"],
        "oneOf": [
            {"properties": {"action": {"const": "reset"}, "value": {"reduce": {"strategy": "lastWriteWins"}}}},
            {"properties": {"action": {"const": "sum"}, "value": {"reduce": {"strategy": "sum"}}}},
        ],
    });
    let doc = |action: &str, value: f64| json!({"key": "k", "action": action, "value": value});
    check(
        schema.clone(),
        vec![doc("sum", 5.0), doc("sum", -1.2)],
        json!({"key": "k", "action": "sum", "value": 3.8}),
    );
    // Combining "reset 0" and "sum 1.3" into one delta would sum onto the old total: the
    // conditional chooses differently for each, so an associative reduction defers.
    check(
        schema,
        vec![
            doc("sum", 5.0),
            doc("sum", -1.2),
            doc("reset", 0.0),
            doc("sum", 1.3),
        ],
        json!({"key": "k", "action": "sum", "value": 1.3}),
    );
}

#[test]
fn example_reactive_outer_join() {
    // Two transforms shuffle on /Key: one publishes {Key, LHS: Int}, the other {Key, RHS: [String]}.
    let schema = json!({
        "type": "object",
        "reduce": {"strategy": "merge"},
        "properties": {
            "Key": {"type": "string"},
            "LHS": {"type": "integer", "reduce": {"strategy": "sum"}},
            "RHS": {"type": "array", "items": {"type": "string"}, "reduce": {"strategy": "append"}},
        },
        "required": ["Key"],
    });
    let from_int = |i: i64| json!({"Key": "k", "LHS": i});
    let from_string = |s: &str| json!({"Key": "k", "RHS": [s]});
    check(
        schema.clone(),
        vec![from_int(5)],
        json!({"Key": "k", "LHS": 5}),
    );
    check(
        schema.clone(),
        vec![from_int(5), from_string("hello")],
        json!({"Key": "k", "LHS": 5, "RHS": ["hello"]}),
    );
    check(
        schema,
        vec![
            from_int(5),
            from_string("hello"),
            from_int(7),
            from_string("goodbye"),
        ],
        json!({"Key": "k", "LHS": 12, "RHS": ["hello", "goodbye"]}),
    );
}
