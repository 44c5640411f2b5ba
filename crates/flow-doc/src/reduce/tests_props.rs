//! Property tests: for random runs of documents, every grouping of the run into associative
//! reductions, then a full one, equals strict left-to-right full reduction. Each property has
//! a pinned `_repro` test beside it with a sequence that exercises its tricky paths.

use super::super::schema::Schema;
use super::tests::check_groupings;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use std::sync::LazyLock;

/// Fields of both schemas: every strategy without conditionals, and a nested delete.
fn static_properties() -> Value {
    let sum = json!({"type": "integer", "reduce": {"strategy": "sum"}});
    json!({
        "k": {"type": "string"},
        "sum": sum,
        "half": {"type": "number", "reduce": {"strategy": "sum"}},
        "lww": {"type": "integer"},
        "fww": {"reduce": {"strategy": "firstWriteWins"}},
        "min": {"type": "integer", "reduce": {"strategy": "minimize"}},
        "max": {"type": "integer", "reduce": {"strategy": "maximize"}},
        "app": {"type": "array", "reduce": {"strategy": "append"}},
        "obj": {"type": "object", "reduce": {"strategy": "merge"}, "additionalProperties": sum},
        "keyed": {
            "type": "array",
            "reduce": {"strategy": "merge", "key": ["/id"]},
            "items": {
                "type": "object",
                "reduce": {"strategy": "merge"},
                "properties": {"id": {"type": "integer"}, "n": sum},
                "required": ["id"],
            },
        },
        "set": {
            "type": "object",
            "reduce": {"strategy": "set"},
            "additionalProperties": {"type": "object", "additionalProperties": sum},
        },
        "maxk": {
            "type": "array",
            "reduce": {"strategy": "maximize", "key": ["/0"]},
            "items": [{"type": "integer"}, sum],
        },
        "gone": {"type": "integer", "reduce": {"strategy": "lastWriteWins", "delete": true}},
    })
}

/// A schema without conditional branches.
pub(crate) static STATIC: LazyLock<Value> = LazyLock::new(
    || json!({"type": "object", "reduce": {"strategy": "merge"}, "properties": static_properties(), "required": ["k"]}),
);

/// A schema whose strategies depend on the documents: `op: "d"` deletes the document, `patch`
/// is a JSON merge patch, and `counter` resets when `reset` is given.
pub(crate) static CONDITIONAL: LazyLock<Value> = LazyLock::new(|| {
    let mut props = static_properties();
    let p = props.as_object_mut().expect("object");
    p.insert("op".into(), json!({"enum": ["u", "d"]}));
    p.insert("patch".into(), json!({"$ref": "#/$defs/mergePatch"}));
    p.insert(
        "counter".into(),
        json!({
            "type": "object",
            "reduce": {"strategy": "merge"},
            "oneOf": [
                {"required": ["reset"], "properties": {"reset": {"const": true}, "v": {"type": "integer"}}},
                {"properties": {"reset": false, "v": {"type": "integer", "reduce": {"strategy": "sum"}}}},
            ],
        }),
    );
    // `n` is replaced once both `x` and `y` are present, else summed: a combination of two
    // documents can take a branch that neither part took.
    p.insert(
        "pair".into(),
        json!({
            "type": "object",
            "reduce": {"strategy": "merge"},
            "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
            "if": {"required": ["x", "y"]},
            "then": {"properties": {"n": {"type": "integer"}}},
            "else": {"properties": {"n": {"type": "integer", "reduce": {"strategy": "sum"}}}},
        }),
    );
    let defs: Value = serde_json::from_str(super::MERGE_PATCH_DEFS).expect("snippet parses");
    json!({
        "$defs": defs,
        "type": "object",
        "properties": props,
        "required": ["k"],
        "if": {"properties": {"op": {"const": "d"}}, "required": ["op"]},
        "then": {"reduce": {"strategy": "lastWriteWins", "delete": true}},
        "else": {"reduce": {"strategy": "merge"}},
    })
});

fn small() -> impl Strategy<Value = i64> {
    -4i64..5
}

fn members(names: &'static [&'static str]) -> impl Strategy<Value = Value> {
    proptest::collection::btree_map(proptest::sample::select(names), small(), 0..3).prop_map(|m| {
        Value::Object(
            m.into_iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect(),
        )
    })
}

fn patch(depth: u32) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        small().prop_map(|i| json!(i)),
        Just(json!([1]))
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![
        1 => leaf,
        3 => proptest::collection::btree_map(proptest::sample::select(&["a", "b", "c"][..]), patch(depth - 1), 0..3)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
    ]
    .boxed()
}

/// One document of key `key`; `conditional` adds the fields of CONDITIONAL.
pub(crate) fn doc(key: &'static str, conditional: bool) -> impl Strategy<Value = Value> {
    let set = (
        proptest::option::of(members(&["a", "b", "c", "d"])),
        0..3u8,
        members(&["a", "b", "c", "d"]),
    )
        .prop_map(|(add, which, term)| {
            let mut m = Map::new();
            if let Some(add) = add {
                m.insert("add".into(), add);
            }
            match which {
                1 => drop(m.insert("intersect".into(), term)),
                2 => drop(m.insert("remove".into(), term)),
                _ => {}
            }
            Value::Object(m)
        });
    let keyed = proptest::collection::vec((0i64..4, small()), 0..3).prop_map(|items| {
        Value::Array(
            items
                .into_iter()
                .map(|(id, n)| json!({"id": id, "n": n}))
                .collect(),
        )
    });
    let fields = (
        (
            proptest::option::of(small().prop_map(|i| json!(i))),
            proptest::option::of(small().prop_map(|i| json!(i as f64 * 0.5))),
            proptest::option::of((0i64..3).prop_map(|i| json!(i))),
            proptest::option::of((0i64..3).prop_map(|i| json!(i))),
            proptest::option::of(small().prop_map(|i| json!(i))),
            proptest::option::of(small().prop_map(|i| json!(i))),
        ),
        (
            proptest::option::of(proptest::collection::vec(small(), 0..3).prop_map(|v| json!(v))),
            proptest::option::of(members(&["a", "b", "c"])),
            proptest::option::of(keyed),
            proptest::option::weighted(0.8, set),
            proptest::option::of((0i64..3, small()).prop_map(|(k, n)| json!([k, n]))),
            // Rare: a delete defers every associative reduction of its document.
            proptest::option::weighted(0.1, (0i64..3).prop_map(|i| json!(i))),
        ),
    );
    let extra = (
        proptest::option::of(prop_oneof![4 => Just(json!("u")), 1 => Just(json!("d"))]),
        proptest::option::of(patch(2)),
        proptest::option::of((any::<bool>(), small())),
        proptest::option::of((any::<bool>(), any::<bool>(), small())),
    );
    (fields, extra).prop_map(move |((a, b), (op, patch, counter, pair))| {
        let names = ["sum", "half", "lww", "fww", "min", "max"];
        let more = ["app", "obj", "keyed", "set", "maxk", "gone"];
        let mut m = Map::new();
        m.insert("k".into(), json!(key));
        for (name, v) in names.iter().zip([a.0, a.1, a.2, a.3, a.4, a.5]) {
            m.extend(v.map(|v| (name.to_string(), v)));
        }
        for (name, v) in more.iter().zip([b.0, b.1, b.2, b.3, b.4, b.5]) {
            m.extend(v.map(|v| (name.to_string(), v)));
        }
        if conditional {
            m.extend(op.map(|v| ("op".to_string(), v)));
            m.extend(patch.map(|v| ("patch".to_string(), v)));
            if let Some((reset, v)) = counter {
                let c = if reset {
                    json!({"reset": true, "v": v})
                } else {
                    json!({"v": v})
                };
                m.insert("counter".into(), c);
            }
            if let Some((x, y, n)) = pair {
                let mut p = Map::new();
                p.insert("n".into(), json!(n));
                if x {
                    p.insert("x".into(), json!(1));
                }
                if y {
                    p.insert("y".into(), json!(1));
                }
                m.insert("pair".into(), Value::Object(p));
            }
        }
        Value::Object(m)
    })
}

fn check(schema: &Value, docs: &[Value]) {
    let schema = Schema::compile(schema).expect("schema compiles");
    for d in docs {
        schema
            .validate(d)
            .unwrap_or_else(|e| panic!("generated {d} is invalid: {e}"));
    }
    let strict = super::tests::fold_full(&schema, docs.iter().cloned());
    check_groupings(&schema, docs, &strict);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn groupings_equal_strict_order_static(docs in proptest::collection::vec(doc("a", false), 1..6)) {
        check(&STATIC, &docs);
    }

    #[test]
    fn groupings_equal_strict_order_conditional(docs in proptest::collection::vec(doc("a", true), 1..6)) {
        check(&CONDITIONAL, &docs);
    }
}

#[test]
fn groupings_equal_strict_order_static_repro() {
    // A nested delete and a keyed array with duplicate keys between sums and set updates.
    let docs = [
        json!({"k": "a", "sum": 1, "keyed": [{"id": 1, "n": 1}, {"id": 1, "n": 2}], "set": {"add": {"a": 1}}}),
        json!({"k": "a", "gone": 1, "set": {"remove": {"a": 0}, "add": {"b": 2}}, "maxk": [1, 1]}),
        json!({"k": "a", "sum": -3, "keyed": [{"id": 0, "n": 1}, {"id": 1, "n": 1}], "set": {"intersect": {"a": 0, "b": 0}}}),
        json!({"k": "a", "gone": 2, "app": [1], "maxk": [1, 4], "half": 0.5}),
        json!({"k": "a", "obj": {"a": 1}, "set": {"add": {"b": 1, "c": 1}}, "min": -1, "fww": 2}),
    ];
    check(&STATIC, &docs);
}

#[test]
fn groupings_equal_strict_order_conditional_repro() {
    // A document delete, merge patches with deletes and type changes, and counter resets.
    let docs = [
        json!({"k": "a", "sum": 2, "patch": {"a": 1, "b": {"c": 1}}, "counter": {"v": 2}, "pair": {"n": 10}}),
        json!({"k": "a", "op": "d"}),
        json!({"k": "a", "pair": {"n": 10}}),
        json!({"k": "a", "patch": {"b": {"c": null}, "a": {"x": 1}}, "counter": {"v": 3}}),
        json!({"k": "a", "counter": {"reset": true, "v": 0}, "patch": {"a": null}}),
        json!({"k": "a", "op": "u", "counter": {"v": 1}, "patch": [1], "sum": 1, "pair": {"x": 1, "n": 1}}),
        json!({"k": "a", "pair": {"y": 1, "n": 2}}),
    ];
    check(&CONDITIONAL, &docs);
}
