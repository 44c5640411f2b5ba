//! Case tables for `merge`, `set` and `jsonSchemaMerge`, and the JSON merge patch snippet.

use super::super::schema::Schema;
use super::tests::{
    Expect, assoc, check_groupings, doc, first, full, merge_root, run_reduce_cases,
};
use serde_json::{Value, json};

#[test]
fn merge_cases() {
    let schema = merge_root(json!({
        "obj": {
            "reduce": {"strategy": "merge"},
            "properties": {"n": {"reduce": {"strategy": "sum"}}},
        },
        "arr": {"reduce": {"strategy": "merge"}, "items": {"reduce": {"strategy": "sum"}}},
        "keyed": {
            "reduce": {"strategy": "merge", "key": ["/k"]},
            "items": {"reduce": {"strategy": "merge"}, "properties": {"n": {"reduce": {"strategy": "sum"}}}},
        },
        "tuple": {"reduce": {"strategy": "merge"}, "items": [{"reduce": {"strategy": "sum"}}, {}]},
    }));
    run_reduce_cases(
        schema,
        vec![
            // Objects: union of properties, shared ones reduced, sorted.
            full(
                json!({"obj": {"n": 1, "b": 1}}),
                json!({"obj": {"n": 2, "a": 2}}),
                doc(json!({"obj": {"a": 2, "b": 1, "n": 3}})),
            ),
            full(
                json!({"z": 1}),
                json!({"obj": {"n": 2}}),
                doc(json!({"obj": {"n": 2}, "z": 1})),
            ),
            // Arrays by index; the longer side's tail is kept.
            full(
                json!({"arr": [1, 2, 3]}),
                json!({"arr": [10]}),
                doc(json!({"arr": [11, 2, 3]})),
            ),
            full(
                json!({"arr": [1]}),
                json!({"arr": [10, 20]}),
                doc(json!({"arr": [11, 20]})),
            ),
            full(
                json!({"tuple": [1, "a"]}),
                json!({"tuple": [2, "b"]}),
                doc(json!({"tuple": [3, "b"]})),
            ),
            // Keyed arrays: sorted merge-join; rhs sorted and de-duplicated first.
            full(
                json!({"keyed": [{"k": "a", "n": 1}, {"k": "c", "n": 1}]}),
                json!({"keyed": [{"k": "d", "n": 1}, {"k": "b", "n": 2}, {"k": "a", "n": 5}, {"k": "b", "n": 3}]}),
                doc(
                    json!({"keyed": [{"k": "a", "n": 6}, {"k": "b", "n": 5}, {"k": "c", "n": 1}, {"k": "d", "n": 1}]}),
                ),
            ),
            first(
                true,
                json!({"keyed": [{"k": 2}, {"k": 1, "n": 1}, {"n": 1}, {"k": 1, "n": 1}]}),
                doc(json!({"keyed": [{"n": 1}, {"k": 1, "n": 2}, {"k": 2}]})),
            ),
            // Duplicates in lhs fold too.
            assoc(
                json!({"keyed": [{"k": 1, "n": 1}, {"k": 1, "n": 1}]}),
                json!({"keyed": [{"k": 1, "n": 1}]}),
                doc(json!({"keyed": [{"k": 1, "n": 3}]})),
            ),
            // A scalar rhs is an error.
            full(
                json!({"obj": {}}),
                json!({"obj": 5}),
                Expect::Err("at /obj: 'merge' strategy expects objects or arrays (lhs {}, rhs 5)"),
            ),
            first(
                true,
                json!({"obj": null}),
                Expect::Err("'merge' strategy expects objects or arrays (lhs absent, rhs null)"),
            ),
            // A type change: full reductions take rhs (against nothing), associative ones defer.
            full(
                json!({"obj": [1]}),
                json!({"obj": {"n": 1}}),
                doc(json!({"obj": {"n": 1}})),
            ),
            full(
                json!({"obj": 5}),
                json!({"obj": {"n": 1}}),
                doc(json!({"obj": {"n": 1}})),
            ),
            assoc(
                json!({"obj": [1]}),
                json!({"obj": {"n": 1}}),
                Expect::Deferred,
            ),
            assoc(
                json!({"x": 1, "obj": {"n": 1}}),
                json!({"x": 2, "obj": [1]}),
                Expect::Deferred,
            ),
            assoc(
                json!({"obj": {"n": 1}}),
                json!({"obj": {"n": 2}}),
                doc(json!({"obj": {"n": 3}})),
            ),
        ],
    );
}

#[test]
fn set_cases() {
    let object_set = merge_root(json!({
        "s": {"reduce": {"strategy": "set"}, "additionalProperties": {"additionalProperties": {"reduce": {"strategy": "sum"}}}},
    }));
    let s = |v: Value| json!({"s": v});
    run_reduce_cases(
        object_set,
        vec![
            full(
                s(json!({"add": {"a": 1}})),
                s(json!({"add": {"a": 1, "b": 1}})),
                doc(s(json!({"add": {"a": 2, "b": 1}}))),
            ),
            full(
                s(json!({"add": {"a": 1, "b": 1}})),
                s(json!({"remove": {"a": 0}})),
                doc(s(json!({"add": {"b": 1}}))),
            ),
            // Within one update, intersect/remove apply before add.
            full(
                s(json!({"add": {"a": 1, "b": 1}})),
                s(json!({"intersect": {"a": 0}, "add": {"c": 1}})),
                doc(s(json!({"add": {"a": 1, "c": 1}}))),
            ),
            full(
                s(json!({"add": {"a": 1}})),
                s(json!({"remove": {"a": 0}, "add": {"a": 5}})),
                doc(s(json!({"add": {"a": 5}}))),
            ),
            // A full reduction keeps only add; lhs's own terms act on nothing.
            first(
                true,
                s(json!({"remove": {"a": 0}})),
                doc(s(json!({"add": {}}))),
            ),
            full(
                s(json!({"add": {"a": 1}, "remove": {"z": 0}})),
                s(json!({})),
                doc(s(json!({"add": {"a": 1}}))),
            ),
            // Associative: the updates compose.
            assoc(
                s(json!({"remove": {"a": 0}})),
                s(json!({"remove": {"b": 0}})),
                doc(s(json!({"remove": {"a": 0, "b": 0}}))),
            ),
            assoc(
                s(json!({"remove": {"a": 0}})),
                s(json!({"intersect": {"a": 0, "b": 0}})),
                doc(s(json!({"intersect": {"b": 0}}))),
            ),
            assoc(
                s(json!({"intersect": {"a": 0, "b": 0}, "add": {"c": 1}})),
                s(json!({"remove": {"b": 0, "c": 0}})),
                doc(s(json!({"intersect": {"a": 0}, "add": {}}))),
            ),
            assoc(
                s(json!({"intersect": {"a": 0, "b": 0}})),
                s(json!({"intersect": {"b": 0, "c": 0}})),
                doc(s(json!({"intersect": {"b": 0}}))),
            ),
            assoc(
                s(json!({"add": {"a": 1}})),
                s(json!({"add": {"a": 2}, "remove": {"x": 0}})),
                doc(s(json!({"add": {"a": 3}, "remove": {"x": 0}}))),
            ),
            first(
                false,
                s(json!({"remove": {"a": 0}})),
                doc(s(json!({"remove": {"a": 0}}))),
            ),
            // Errors.
            full(
                s(json!({})),
                s(json!({"intersect": {}, "remove": {}})),
                Expect::Err("at /s: 'set' update has both 'intersect' and 'remove'"),
            ),
            full(
                s(json!({})),
                s(json!({"add": {}, "remove": []})),
                Expect::Err("terms must all be objects or all be arrays"),
            ),
            full(
                s(json!({"add": []})),
                s(json!({"add": {}})),
                Expect::Err("terms must all be objects or all be arrays"),
            ),
            full(
                s(json!({})),
                s(json!({"plus": {}})),
                Expect::Err("other than 'add'"),
            ),
            full(
                s(json!({})),
                s(json!([1])),
                Expect::Err("'set' expects an object"),
            ),
            full(
                s(json!({})),
                s(json!({"add": 5})),
                Expect::Err("terms must be objects or arrays"),
            ),
        ],
    );

    let array_set = merge_root(json!({
        "s": {
            "reduce": {"strategy": "set", "key": ["/id"]},
            "additionalProperties": {"items": {"reduce": {"strategy": "merge"}, "properties": {"n": {"reduce": {"strategy": "sum"}}}}},
        },
    }));
    let m = |id: i64, n: i64| json!({"id": id, "n": n});
    run_reduce_cases(
        array_set,
        vec![
            full(
                s(json!({"add": [m(1, 1), m(3, 1)]})),
                s(json!({"add": [m(4, 1), m(2, 1), m(1, 1)]})),
                doc(s(json!({"add": [m(1, 2), m(2, 1), m(3, 1), m(4, 1)]}))),
            ),
            full(
                s(json!({"add": [m(1, 1), m(2, 1), m(3, 1)]})),
                s(json!({"remove": [{"id": 2}]})),
                doc(s(json!({"add": [m(1, 1), m(3, 1)]}))),
            ),
            full(
                s(json!({"add": [m(1, 1), m(2, 1)]})),
                s(json!({"intersect": [{"id": 2}, {"id": 9}]})),
                doc(s(json!({"add": [m(2, 1)]}))),
            ),
            assoc(
                s(json!({"remove": [{"id": 3}, {"id": 1}]})),
                s(json!({"remove": [{"id": 2}]})),
                doc(s(json!({"remove": [{"id": 1}, {"id": 2}, {"id": 3}]}))),
            ),
            // Duplicate added members fold.
            first(
                true,
                s(json!({"add": [m(1, 1), m(1, 2)]})),
                doc(s(json!({"add": [m(1, 3)]}))),
            ),
        ],
    );
}

#[test]
fn json_schema_merge_cases() {
    let schema = merge_root(json!({"s": {"reduce": {"strategy": "jsonSchemaMerge"}}}));
    let s = |v: Value| json!({"s": v});
    run_reduce_cases(
        schema,
        vec![
            full(
                s(json!({"type": "string"})),
                s(json!({"type": "integer"})),
                doc(s(json!({"type": ["integer", "string"]}))),
            ),
            full(
                s(json!({"type": "integer"})),
                s(json!({"type": "number"})),
                doc(s(json!({"type": "number"}))),
            ),
            full(
                s(
                    json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": false}),
                ),
                s(
                    json!({"type": "object", "properties": {"b": {"type": "integer"}}, "required": ["b"]}),
                ),
                // Under lhs, `b` is not allowed at all; under rhs, `a` may be anything.
                doc(s(
                    json!({"type": "object", "properties": {"a": true, "b": {"type": "integer"}}}),
                )),
            ),
            full(
                s(
                    json!({"type": "object", "properties": {"a": {"type": "string", "maxLength": 3}}, "required": ["a"]}),
                ),
                s(
                    json!({"type": "object", "properties": {"a": {"type": "integer", "maximum": 5}}, "required": ["a", "b"]}),
                ),
                doc(s(
                    json!({"type": "object", "properties": {"a": {"type": ["integer", "string"], "maxLength": 3, "maximum": 5}}, "required": ["a"]}),
                )),
            ),
            full(
                s(json!({"const": 1})),
                s(json!({"const": 2})),
                doc(s(json!({"enum": [1, 2]}))),
            ),
            full(
                s(json!({"type": "number", "minimum": 3})),
                s(json!({"type": "number", "minimum": 1})),
                doc(s(json!({"type": "number", "minimum": 1}))),
            ),
            full(
                s(json!(false)),
                s(json!({"type": "string"})),
                doc(s(json!({"type": "string"}))),
            ),
            full(
                s(json!({"type": "string"})),
                s(json!(true)),
                doc(s(json!(true))),
            ),
            // Other keywords: anyOf of both, flattened.
            full(
                s(json!({"pattern": "a"})),
                s(json!({"pattern": "b"})),
                doc(s(json!({"anyOf": [{"pattern": "a"}, {"pattern": "b"}]}))),
            ),
            full(
                s(json!({"anyOf": [{"pattern": "a"}, {"pattern": "b"}]})),
                s(json!({"pattern": "b"})),
                doc(s(json!({"anyOf": [{"pattern": "a"}, {"pattern": "b"}]}))),
            ),
            full(
                s(json!({})),
                s(json!(5)),
                Expect::Err("'jsonSchemaMerge' strategy expects JSON schemas"),
            ),
        ],
    );
}

#[test]
fn merge_patch_cases() {
    // The examples of RFC 7396, appendix A, as full reductions of (target, patch).
    let defs: Value = serde_json::from_str(super::MERGE_PATCH_DEFS).unwrap();
    let schema = json!({"$defs": defs, "$ref": "#/$defs/mergePatch"});
    run_reduce_cases(
        schema.clone(),
        vec![
            full(json!({"a": "b"}), json!({"a": "c"}), doc(json!({"a": "c"}))),
            full(
                json!({"a": "b"}),
                json!({"b": "c"}),
                doc(json!({"a": "b", "b": "c"})),
            ),
            full(json!({"a": "b"}), json!({"a": null}), doc(json!({}))),
            full(
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                doc(json!({"b": "c"})),
            ),
            full(
                json!({"a": ["b"]}),
                json!({"a": "c"}),
                doc(json!({"a": "c"})),
            ),
            full(
                json!({"a": "c"}),
                json!({"a": ["b"]}),
                doc(json!({"a": ["b"]})),
            ),
            full(
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                doc(json!({"a": {"b": "d"}})),
            ),
            full(
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                doc(json!({"a": [1]})),
            ),
            full(json!(["a", "b"]), json!(["c", "d"]), doc(json!(["c", "d"]))),
            full(json!({"a": "b"}), json!(["c"]), doc(json!(["c"]))),
            // A null patch of the whole document deletes it.
            full(json!({"a": "foo"}), json!(null), Expect::Deleted),
            full(json!({"a": "foo"}), json!("bar"), doc(json!("bar"))),
            full(
                json!({"e": null}),
                json!({"a": 1}),
                doc(json!({"e": null, "a": 1})),
            ),
            full(
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                doc(json!({"a": "b"})),
            ),
            full(
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                doc(json!({"a": {"bb": {}}})),
            ),
            // Associatively, patches that delete or change a type wait for a full reduction.
            assoc(
                json!({"a": {"x": 1}}),
                json!({"a": {"y": 2}}),
                doc(json!({"a": {"x": 1, "y": 2}})),
            ),
            assoc(json!({"a": 1}), json!({"a": null}), Expect::Deferred),
            // A replacing value after a delete gives the same result onto anything.
            assoc(json!({"a": null}), json!({"a": 1}), doc(json!({"a": 1}))),
            assoc(json!({"a": null}), json!({"a": {"x": 1}}), Expect::Deferred),
            assoc(json!({"a": 1}), json!({"a": {"x": 1}}), Expect::Deferred),
            assoc(
                json!({"a": 1}),
                json!({"b": 2}),
                doc(json!({"a": 1, "b": 2})),
            ),
        ],
    );
    let schema = Schema::compile(&schema).unwrap();
    let patches = [
        json!({"a": 1, "b": {"c": 1}}),
        json!({"b": {"c": null, "d": 2}}),
        json!({"a": null}),
        json!({"a": {"z": 1}}),
    ];
    check_groupings(
        &schema,
        &patches,
        &Ok(Some(json!({"a": {"z": 1}, "b": {"d": 2}}))),
    );
}
