//! Shapes (`shape.rs`): case tables for what a plan compiled to shapes walks through (named,
//! other and pattern properties, tuples, `allOf` unions, recursion, conflicts, `set` members
//! that delete), and a property test that reductions through shapes give exactly what the
//! general path gives, on random documents (valid or not), full and associative.

use super::super::schema::Schema;
use super::tests::{Expect, assoc, doc, first, full, run_reduce_cases};
use super::tests_props::STATIC;
use super::{Plan, ReduceError, Reduced};
use jsonschema::Draft;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use std::sync::LazyLock;

/// Every way a shape finds its children, without conditional branches.
static KITCHEN: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "$defs": {
            "node": {
                "type": "object",
                "reduce": {"strategy": "merge"},
                "properties": {"n": {"reduce": {"strategy": "sum"}}},
                "additionalProperties": {"$ref": "#/$defs/node"},
            },
        },
        "reduce": {"strategy": "merge"},
        "allOf": [
            {"properties": {"a": {"reduce": {"strategy": "merge"}}}},
            {"properties": {"a": {"additionalProperties": {"reduce": {"strategy": "maximize"}}}}},
        ],
        "properties": {
            "b": {
                "reduce": {"strategy": "merge"},
                "properties": {"c": {"reduce": {"strategy": "append"}}},
                "patternProperties": {"^x": {"reduce": {"strategy": "sum"}}},
                "additionalProperties": {"reduce": {"strategy": "lastWriteWins", "delete": true}},
            },
            "c": {
                "reduce": {"strategy": "merge"},
                "items": [{"reduce": {"strategy": "sum"}}, {"reduce": {"strategy": "minimize"}}],
                "additionalItems": {"reduce": {"strategy": "merge", "delete": true}},
            },
            "id": {
                "reduce": {"strategy": "merge", "key": ["/id"]},
                "items": {"reduce": {"strategy": "merge"}, "properties": {"n": {"reduce": {"strategy": "sum"}}}},
            },
            "x1": {"$ref": "#/$defs/node"},
            "add": {
                "reduce": {"strategy": "set", "key": ["/id"]},
                "additionalProperties": {
                    "items": {
                        "reduce": {"strategy": "merge"},
                        "properties": {"gone": {"reduce": {"strategy": "lastWriteWins", "delete": true}}},
                    },
                    "additionalProperties": {"reduce": {"strategy": "maximize", "key": ["/0"]}},
                },
            },
            "remove": {"allOf": [{"reduce": {"strategy": "sum"}}, {"reduce": {"strategy": "append"}}]},
            "intersect": {
                "reduce": {"strategy": "merge"},
                "properties": {"a": {}},
                "unevaluatedProperties": {"reduce": {"strategy": "sum"}},
            },
        },
    })
});

/// Both plans of a schema: with shapes, and without (the general path).
fn plans(schema: &Value) -> (Plan, Plan) {
    let fast = Plan::compile(schema, Draft::Draft201909).expect("compiles");
    let mut general = Plan::compile(schema, Draft::Draft201909).expect("compiles");
    assert!(fast.shapes.is_some(), "no shapes for {schema}");
    general.shapes = None;
    (fast, general)
}

#[test]
fn shapes_only_without_conditionals() {
    plans(&KITCHEN);
    plans(&STATIC);
    let conditional = json!({"reduce": {"strategy": "merge"}, "anyOf": [{"properties": {"a": {"reduce": {"strategy": "sum"}}}}]});
    let plan = Plan::compile(&conditional, Draft::Draft201909).expect("compiles");
    assert!(plan.shapes.is_none());
}

#[test]
fn shape_cases() {
    run_reduce_cases(
        KITCHEN.clone(),
        vec![
            // `a` merges (one `allOf` branch) with maximized members (the other).
            full(
                json!({"a": {"p": 1, "q": 5}}),
                json!({"a": {"p": 3, "q": 2}}),
                doc(json!({"a": {"p": 3, "q": 5}})),
            ),
            // Named, pattern and other properties; others delete, so only a full reduction.
            full(
                json!({"b": {"c": [1], "x9": 1, "z": 1}}),
                json!({"b": {"c": [2], "x9": 2, "z": 2}}),
                doc(json!({"b": {"c": [1, 2], "x9": 3}})),
            ),
            assoc(
                json!({"b": {"x9": 1}}),
                json!({"b": {"x9": 2, "z": 2}}),
                Expect::Deferred,
            ),
            assoc(
                json!({"b": {"x9": 1, "xa": 1}}),
                json!({"b": {"x9": 2, "c": [1]}}),
                doc(json!({"b": {"c": [1], "x9": 3, "xa": 1}})),
            ),
            // A tuple, then items that delete.
            full(
                json!({"c": [1, 5, {"k": 1}]}),
                json!({"c": [2, 3, {"k": 2}]}),
                doc(json!({"c": [3, 3]})),
            ),
            assoc(
                json!({"c": [1, 5]}),
                json!({"c": [2, 7]}),
                doc(json!({"c": [3, 5]})),
            ),
            assoc(
                json!({"c": [1]}),
                json!({"c": [2, 7, {}]}),
                Expect::Deferred,
            ),
            // Keyed items merge by key; a type change of an item defers.
            assoc(
                json!({"id": [{"id": 2, "n": 1}, {"id": 1, "n": 1}]}),
                json!({"id": [{"id": 1, "n": 2}, {"id": 3, "n": 3}]}),
                doc(json!({"id": [{"id": 1, "n": 3}, {"id": 2, "n": 1}, {"id": 3, "n": 3}]})),
            ),
            // Recursion through `$ref`: the same shape at every depth.
            full(
                json!({"x1": {"n": 1, "d": {"n": 1, "e": {"n": 1}}}}),
                json!({"x1": {"n": 1, "d": {"n": 2, "e": {"n": 3}}}}),
                doc(json!({"x1": {"n": 2, "d": {"n": 3, "e": {"n": 4}}}})),
            ),
            assoc(
                json!({"x1": {"d": {"e": {"n": 1}}}}),
                json!({"x1": {"d": {"e": [1]}}}),
                Expect::Deferred,
            ),
            // Set members (the items of array terms) that delete: the set may defer through
            // them, though a set alone never does.
            assoc(
                json!({"add": {"add": [{"id": 1}]}}),
                json!({"add": {"add": [{"id": 1, "gone": 1}]}}),
                Expect::Deferred,
            ),
            assoc(
                json!({"add": {"add": [{"id": 1}]}}),
                json!({"add": {"add": [{"id": 2, "gone": 1}]}}),
                Expect::Deferred,
            ),
            full(
                json!({"add": {"add": [{"id": 1, "gone": 1}]}}),
                json!({"add": {"add": [{"id": 1, "gone": 2, "v": 1}], "remove": [{"id": 3}]}}),
                doc(json!({"add": {"add": [{"id": 1, "v": 1}]}})),
            ),
            // Object terms: members maximized by their first item, deep-merged on ties.
            assoc(
                json!({"add": {"add": {"o": [1, 1]}}}),
                json!({"add": {"add": {"o": [1, 2]}}}),
                doc(json!({"add": {"add": {"o": [1, 2]}}})),
            ),
            // Two strategies at one location: the error names both, at the location.
            full(
                json!({"remove": 1}),
                json!({"remove": 2}),
                Expect::Err("at /remove: conflicting strategies 'sum'"),
            ),
            // No sibling named the property: `unevaluatedProperties` sums it.
            first(
                false,
                json!({"intersect": {"a": 1, "b": 1}}),
                doc(json!({"intersect": {"a": 1, "b": 1}})),
            ),
            full(
                json!({"intersect": {"a": 1, "b": 1}}),
                json!({"intersect": {"a": 2, "b": 2}}),
                doc(json!({"intersect": {"a": 2, "b": 3}})),
            ),
        ],
    );
}

/// A random document over a few property names (of KITCHEN and STATIC) and small values, so
/// that two documents often share locations.
fn any_doc(depth: u32) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-2i64..4).prop_map(|i| json!(i)),
        Just(json!(0.5)),
        prop_oneof![Just("s"), Just("t"), Just("1")].prop_map(|s| json!(s)),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    const NAMES: &[&str] = &[
        "a",
        "b",
        "c",
        "d",
        "n",
        "id",
        "x1",
        "x9",
        "z",
        "add",
        "remove",
        "intersect",
        "gone",
        "m",
        "k",
        "sum",
        "obj",
        "keyed",
        "set",
        "maxk",
    ];
    prop_oneof![
        2 => leaf,
        1 => proptest::collection::vec(any_doc(depth - 1), 0..4).prop_map(Value::Array),
        3 => proptest::collection::btree_map(proptest::sample::select(NAMES), any_doc(depth - 1), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())),
    ]
    .boxed()
}

fn outcome(
    plan: &Plan,
    lhs: Option<&Value>,
    rhs: &Value,
    full: bool,
) -> Result<Reduced, ReduceError> {
    plan.reduce(lhs.cloned(), rhs.clone(), full)
}

/// Reduce a run both ways, each step onto the previous result, and compare every step.
fn agree(schema: &Value, docs: &[Value]) {
    let (fast, general) = plans(schema);
    for full in [false, true] {
        let mut state: Option<Value> = None;
        for d in docs {
            let want = outcome(&general, state.as_ref(), d, full);
            let got = outcome(&fast, state.as_ref(), d, full);
            assert_eq!(got, want, "full {full}: {state:?} then {d}");
            state = match want {
                Ok(Reduced::Doc(v)) => Some(v),
                Ok(Reduced::Deferred { rhs, .. }) => Some(rhs),
                Ok(Reduced::Deleted(_)) | Err(_) => None,
            };
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn shapes_agree_with_general_path_kitchen(docs in proptest::collection::vec(any_doc(4), 1..5)) {
        agree(&KITCHEN, &docs);
    }

    #[test]
    fn shapes_agree_with_general_path_static(docs in proptest::collection::vec(super::tests_props::doc("a", false), 1..5)) {
        agree(&STATIC, &docs);
    }

    #[test]
    fn shapes_agree_with_general_path_static_any(docs in proptest::collection::vec(any_doc(3), 1..5)) {
        agree(&STATIC, &docs);
    }
}

/// Merges whose schema allows one kind only, and no tuples: their pre-pass looks only below
/// them, so they agree with the general path on valid documents (KITCHEN and STATIC have
/// tuples, so that their merges may still defer on invalid documents too).
static ONE_KIND: LazyLock<Value> = LazyLock::new(|| {
    let sum = json!({"type": "integer", "reduce": {"strategy": "sum"}});
    json!({
        "type": "object",
        "reduce": {"strategy": "merge"},
        "properties": {
            "obj": {"type": "object", "reduce": {"strategy": "merge"}, "additionalProperties": {
                "type": "object", "reduce": {"strategy": "merge"}, "properties": {"n": sum, "m": {"type": "array", "reduce": {"strategy": "append"}}},
            }},
            "a": {"type": ["array"], "reduce": {"strategy": "merge"}, "items": sum},
            "keyed": {"type": "array", "reduce": {"strategy": "merge", "key": ["/id"]}, "items": {
                "type": "object", "reduce": {"strategy": "merge"}, "properties": {"id": {"type": "integer"}, "n": sum},
                "required": ["id"],
            }},
            "m": {"type": "object", "reduce": {"strategy": "maximize", "key": ["/k"]}, "properties": {"n": sum}},
            "gone": {"type": "object", "reduce": {"strategy": "merge"}, "properties": {
                "x": {"reduce": {"strategy": "lastWriteWins", "delete": true}},
            }},
            "any": {"reduce": {"strategy": "merge"}},
        },
    })
});

/// `agree` on the documents of a run that are valid.
fn agree_valid(schema: &Value, docs: &[Value]) {
    let compiled = Schema::compile(schema).expect("compiles");
    let valid: Vec<Value> = docs
        .iter()
        .filter(|d| compiled.validate(d).is_ok())
        .cloned()
        .collect();
    agree(schema, &valid);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn shapes_agree_with_general_path_one_kind(docs in proptest::collection::vec(any_doc(4), 1..8)) {
        agree_valid(&ONE_KIND, &docs);
    }
}

#[test]
fn shapes_agree_with_general_path_one_kind_repro() {
    let docs = [
        json!({"obj": {"p": {"n": 1}}, "a": [1], "gone": {"x": 1}, "any": {"n": 1}}),
        json!({"obj": {"p": {"n": 2, "m": [1]}, "q": {}}, "a": [1, 2], "keyed": [{"id": 1, "n": 1}, {"id": 1}]}),
        json!({"any": [1], "gone": {"x": 2}, "m": {"k": 1, "n": 1}}),
        json!({"m": {"k": 1, "n": 2}, "keyed": [{"id": 0, "n": 1}, {"id": 1, "n": 1}]}),
    ];
    agree_valid(&ONE_KIND, &docs);
    let (fast, _) = plans(&ONE_KIND);
    let shapes = fast.shapes.as_ref().expect("shapes");
    let root = shapes.get(0);
    let at = |name: &str| shapes.get(root.prop(name).expect("a shape"));
    // One kind, nothing below that defers: the pre-pass skips them.
    assert!(
        !at("obj").may_defer && !at("a").may_defer && !at("keyed").may_defer && !at("m").may_defer
    );
    // A delete below, a merge of any type, and so the root: the pre-pass looks.
    assert!(at("gone").may_defer && at("any").may_defer && root.may_defer);

    // With a tuple anywhere, items may move to an index of another shape: every merge may defer.
    let mut tuples = ONE_KIND.clone();
    tuples["properties"]["t"] =
        json!({"type": "array", "reduce": {"strategy": "append"}, "items": [{"type": "string"}]});
    let (fast, _) = plans(&tuples);
    let shapes = fast.shapes.as_ref().expect("shapes");
    assert!(
        shapes
            .get(shapes.get(0).prop("obj").expect("a shape"))
            .may_defer
    );

    // A `type` beside `$ref` is not trusted (drafts before 2019-09 ignore it).
    let beside_ref = json!({
        "$defs": {"o": {}},
        "reduce": {"strategy": "merge"},
        "properties": {"o": {"$ref": "#/$defs/o", "type": "object", "reduce": {"strategy": "merge"}}},
    });
    let (fast, _) = plans(&beside_ref);
    let shapes = fast.shapes.as_ref().expect("shapes");
    assert!(
        shapes
            .get(shapes.get(0).prop("o").expect("a shape"))
            .may_defer
    );
}

#[test]
fn shapes_agree_with_general_path_repro() {
    // Pattern properties taking the general path below a shape, a deferral inside a tuple's
    // rest, and duplicate keys folding in a keyed array.
    let docs = [
        json!({"b": {"x9": {"n": 1}, "c": [1]}, "c": [1, 2, {"a": 1}], "id": [{"id": 1, "n": 1}, {"id": 1, "n": 2}]}),
        json!({"b": {"x9": {"n": 2}, "z": 1}, "c": [1, 2, [1]], "id": [{"id": 1, "n": 5}]}),
        json!({"x1": {"q": {"n": 1}}, "add": {"add": [{"id": 1}, {"id": 1, "gone": 1}]}}),
        json!({"x1": {"q": [1]}, "add": {"remove": [{"id": 1}], "add": [{"id": 2}]}}),
    ];
    agree(&KITCHEN, &docs);
    let schema = Schema::compile(&KITCHEN).expect("compiles");
    schema.validate(&docs[0]).expect("the first is even valid");
}
