//! Case tables for how annotations are found: conditionals, `$ref`s, conflicts, compile-time
//! errors, and associative reductions whose branches would change.

use super::super::schema::Schema;
use super::tests::{Expect, assoc, check_groupings, doc, full, run_reduce_cases};
use serde_json::{Value, json};

#[test]
fn annotation_cases() {
    // Conditionals select strategies per document: the branch that the rhs validates applies.
    let schema = json!({
        "$defs": {"summed": {"reduce": {"strategy": "sum"}}},
        "definitions": {"appended": {"reduce": {"strategy": "append"}}},
        "type": "object",
        "reduce": {"strategy": "merge"},
        "properties": {
            "one": {"oneOf": [{"type": "number", "$ref": "#/$defs/summed"}, {"type": "array", "$ref": "#/definitions/appended"}]},
            "cond": {
                "if": {"type": "string"},
                "then": {"reduce": {"strategy": "firstWriteWins"}},
                "else": {"reduce": {"strategy": "maximize"}},
            },
            "both": {"anyOf": [{"$ref": "#/$defs/summed"}, {"type": "integer", "reduce": {"strategy": "sum"}}]},
            "conflict": {"allOf": [{"$ref": "#/$defs/summed"}, {"reduce": {"strategy": "maximize"}}]},
            "dep": {"dependentSchemas": {"s": {"properties": {"n": {"$ref": "#/$defs/summed"}}}}, "reduce": {"strategy": "merge"}},
        },
        "patternProperties": {"^p_": {"reduce": {"strategy": "sum"}}},
        "additionalProperties": {"reduce": {"strategy": "firstWriteWins"}},
    });
    run_reduce_cases(
        schema,
        vec![
            full(json!({"one": 1}), json!({"one": 2}), doc(json!({"one": 3}))),
            full(
                json!({"one": [1]}),
                json!({"one": [2]}),
                doc(json!({"one": [1, 2]})),
            ),
            full(
                json!({"cond": "a"}),
                json!({"cond": "b"}),
                doc(json!({"cond": "a"})),
            ),
            full(
                json!({"cond": 1}),
                json!({"cond": 2}),
                doc(json!({"cond": 2})),
            ),
            full(
                json!({"cond": 3}),
                json!({"cond": 2}),
                doc(json!({"cond": 3})),
            ),
            // The same strategy from two places is no conflict; two different ones are.
            full(
                json!({"both": 1}),
                json!({"both": 2}),
                doc(json!({"both": 3})),
            ),
            full(
                json!({"conflict": 1}),
                json!({"conflict": 2}),
                Expect::Err("at /conflict: conflicting strategies '"),
            ),
            full(
                json!({"dep": {"n": 1}}),
                json!({"dep": {"n": 2}}),
                doc(json!({"dep": {"n": 2}})),
            ),
            full(
                json!({"dep": {"n": 1}}),
                json!({"dep": {"n": 2, "s": 0}}),
                doc(json!({"dep": {"n": 3, "s": 0}})),
            ),
            // patternProperties and additionalProperties.
            full(
                json!({"p_x": 1, "other": 1}),
                json!({"p_x": 2, "other": 2}),
                doc(json!({"p_x": 3, "other": 1})),
            ),
        ],
    );
}

#[test]
fn plan_compile_errors() {
    let cases: &[(Value, &str)] = &[
        (
            json!({"reduce": {"strategy": "average"}}),
            "at schema location #: unknown reduce strategy \"average\"",
        ),
        (
            json!({"properties": {"a": {"reduce": {"strategy": "sum", "key": []}}}}),
            "#/properties/a: unknown option \"key\" of strategy \"sum\"",
        ),
        (
            json!({"items": {"reduce": {"strategy": "merge", "key": ["k"]}}}),
            "#/items: option `key`",
        ),
        (
            json!({"$defs": {"x": {"reduce": "sum"}}}),
            "#/$defs/x: `reduce` must be an object",
        ),
        (
            json!({"reduce": {"strategy": "lastWriteWins", "delete": "yes"}}),
            "`delete` must be a boolean",
        ),
        (json!({"reduce": {}}), "must have a `strategy`"),
    ];
    for (schema, want) in cases {
        match Schema::compile(schema) {
            Ok(_) => panic!("{schema} compiled"),
            Err(e) => assert!(e.to_string().contains(want), "{schema}: {e} lacks {want}"),
        }
    }
    // Draft 2020-12 uses prefixItems for tuples.
    run_reduce_cases(
        json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "reduce": {"strategy": "merge"},
               "prefixItems": [{"reduce": {"strategy": "sum"}}], "items": {"reduce": {"strategy": "append"}}}),
        vec![full(
            json!([1, [1]]),
            json!([2, [2]]),
            doc(json!([3, [1, 2]])),
        )],
    );
}

#[test]
fn conditional_associativity_cases() {
    // The branch a combined document takes can differ from both of its parts: here `n` is
    // summed unless both `x` and `y` are present. Combining {x, n: 1} and {y, n: 2} would make
    // a document that replaces `n`, so the reduction defers.
    let schema = json!({
        "type": "object",
        "reduce": {"strategy": "merge"},
        "if": {"required": ["x", "y"]},
        "then": {"properties": {"n": {"reduce": {"strategy": "lastWriteWins"}}}},
        "else": {"properties": {"n": {"reduce": {"strategy": "sum"}}}},
    });
    run_reduce_cases(
        schema.clone(),
        vec![
            assoc(
                json!({"x": 1, "n": 1}),
                json!({"y": 1, "n": 2}),
                Expect::Deferred,
            ),
            assoc(
                json!({"x": 1, "n": 1}),
                json!({"x": 2, "n": 2}),
                doc(json!({"x": 2, "n": 3})),
            ),
            assoc(
                json!({"n": 1}),
                json!({"x": 1, "y": 1, "n": 5}),
                Expect::Deferred,
            ),
            assoc(
                json!({"x": 1, "y": 1, "n": 1}),
                json!({"x": 1, "y": 1, "n": 5}),
                doc(json!({"x": 1, "y": 1, "n": 5})),
            ),
            full(
                json!({"x": 1, "n": 1}),
                json!({"y": 1, "n": 2}),
                doc(json!({"x": 1, "y": 1, "n": 3})),
            ),
        ],
    );
    let schema = Schema::compile(&schema).unwrap();
    let docs = [
        json!({"n": 10}),
        json!({"x": 1, "n": 1}),
        json!({"y": 1, "n": 2}),
        json!({"n": 3}),
    ];
    check_groupings(&schema, &docs, &Ok(Some(json!({"x": 1, "y": 1, "n": 16}))));
}

#[test]
fn id_and_anchor_cases() {
    // A root `$id`, refs by anchor and by relative `$id`, and conditionals that `$ref` them.
    let schema = json!({
        "$id": "https://example.com/schemas/root.json",
        "$defs": {
            "num": {"$anchor": "num", "type": "number", "reduce": {"strategy": "sum"}},
            "item": {"$id": "item.json", "type": "array", "reduce": {"strategy": "append"}},
        },
        "type": "object",
        "reduce": {"strategy": "merge"},
        "properties": {
            "v": {"oneOf": [{"$ref": "#num"}, {"$ref": "item.json"}]},
            "w": {"$ref": "https://example.com/schemas/item.json"},
        },
    });
    run_reduce_cases(
        schema,
        vec![
            full(
                json!({"v": 1, "w": [1]}),
                json!({"v": 2, "w": [2]}),
                doc(json!({"v": 3, "w": [1, 2]})),
            ),
            full(
                json!({"v": [1]}),
                json!({"v": [2]}),
                doc(json!({"v": [1, 2]})),
            ),
        ],
    );
    let err = Schema::compile(
        &json!({"$defs": {"a": {"reduce": {"strategy": "sum"}}}, "allOf": [{"$ref": "other.json"}]}),
    );
    assert!(err.is_err());
}
