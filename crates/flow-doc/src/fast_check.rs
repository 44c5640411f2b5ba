//! A quick check of documents against schemas made only of the keywords that collection schemas
//! mostly use (`type`, `properties`, `required`, `additionalProperties`, `items`), compiled into
//! a tree that a document is walked against directly.
//!
//! It only ever says "valid" where the `jsonschema` validator would: whatever it is unsure of
//! (a float where `integer` is asked, which drafts judge differently) counts as "not known
//! valid", and `Schema::validate` then asks the `jsonschema` validator, which also words the
//! errors. So it changes what validation costs, never what it decides. A schema with any other
//! keyword, boolean subschemas (but `additionalProperties: false`/`true`) or references gets no
//! quick check. `fast_check_agrees_with_jsonschema` in `schema.rs` compares the two.

use serde_json::{Map, Value};

const NULL: u8 = 1;
const BOOLEAN: u8 = 1 << 1;
const INTEGER: u8 = 1 << 2;
const NUMBER: u8 = 1 << 3;
const STRING: u8 = 1 << 4;
const ARRAY: u8 = 1 << 5;
const OBJECT: u8 = 1 << 6;

/// Keywords that do not take part in validation (annotations), and so are skipped.
const ANNOTATIONS: &[&str] = &[
    "$comment",
    "$schema",
    "title",
    "description",
    "default",
    "examples",
    "readOnly",
    "writeOnly",
    "deprecated",
    "reduce",
    // Definitions are inert unless referenced, and a reference gets no quick check.
    "$defs",
    "definitions",
];

/// Deepest schema nesting compiled; past it, no quick check (a bound on compile recursion).
const DEPTH_MAX: usize = 64;

/// One compiled subschema.
#[derive(Debug)]
pub(crate) struct FastCheck {
    /// Allowed types as a mask; 0 when `type` is absent (anything).
    types: u8,
    /// `properties`, sorted by name (the order in which a `serde_json::Map` iterates).
    props: Vec<(String, FastCheck)>,
    required: Vec<String>,
    additional: Additional,
    /// `items` as a single schema: every item.
    items: Option<Box<FastCheck>>,
}

#[derive(Debug)]
enum Additional {
    Any,
    None,
    Schema(Box<FastCheck>),
}

impl FastCheck {
    /// The quick check of `schema`, or None if it uses anything beyond the keywords above.
    pub fn compile(schema: &Value) -> Option<FastCheck> {
        compile(schema, 0)
    }

    /// Whether `v` is known valid; false means "invalid or unsure".
    pub fn is_valid(&self, v: &Value) -> bool {
        if self.types != 0 {
            let kind = match v {
                Value::Null => NULL,
                Value::Bool(_) => BOOLEAN,
                Value::Number(n) => {
                    if self.types & NUMBER != 0 {
                        NUMBER
                    } else if n.is_i64() || n.is_u64() {
                        INTEGER
                    } else {
                        return false; // A float: drafts differ on `1.0`; ask the validator.
                    }
                }
                Value::String(_) => STRING,
                Value::Array(_) => ARRAY,
                Value::Object(_) => OBJECT,
            };
            if self.types & kind == 0 {
                return false;
            }
        }
        match v {
            Value::Object(m) => self.object(m),
            Value::Array(items) => match &self.items {
                Some(c) => items.iter().all(|i| c.is_valid(i)),
                None => true,
            },
            _ => true,
        }
    }

    fn object(&self, m: &Map<String, Value>) -> bool {
        if !self.required.iter().all(|r| m.contains_key(r)) {
            return false;
        }
        if self.props.is_empty() && matches!(self.additional, Additional::Any) {
            return true;
        }
        // Properties come in ascending order, and so do the schema's: try the one after the
        // last found first, and search only when that is not it.
        let mut next = 0;
        for (k, v) in m {
            let found = match self.props.get(next) {
                Some((n, _)) if n == k => Some(next),
                _ => self.props.binary_search_by(|(n, _)| n.cmp(k)).ok(),
            };
            let valid = match (found, &self.additional) {
                (Some(i), _) => {
                    next = i + 1;
                    self.props[i].1.is_valid(v)
                }
                (None, Additional::Any) => true,
                (None, Additional::None) => false,
                (None, Additional::Schema(c)) => c.is_valid(v),
            };
            if !valid {
                return false;
            }
        }
        true
    }
}

fn compile(schema: &Value, depth: usize) -> Option<FastCheck> {
    let Value::Object(s) = schema else {
        return None;
    };
    if depth > DEPTH_MAX {
        return None;
    }
    let mut out = FastCheck {
        types: 0,
        props: Vec::new(),
        required: Vec::new(),
        additional: Additional::Any,
        items: None,
    };
    for (k, v) in s {
        match k.as_str() {
            "type" => {
                out.types = match v {
                    Value::String(t) => type_bit(t)?,
                    Value::Array(ts) if !ts.is_empty() => {
                        let mut mask = 0;
                        for t in ts {
                            mask |= type_bit(t.as_str()?)?;
                        }
                        mask
                    }
                    _ => return None,
                };
            }
            "properties" => {
                let Value::Object(props) = v else {
                    return None;
                };
                for (name, sub) in props {
                    out.props.push((name.clone(), compile(sub, depth + 1)?));
                }
                out.props.sort_by(|a, b| a.0.cmp(&b.0));
            }
            "required" => {
                let Value::Array(names) = v else {
                    return None;
                };
                for n in names {
                    out.required.push(n.as_str()?.to_string());
                }
            }
            "additionalProperties" => {
                out.additional = match v {
                    Value::Bool(true) => Additional::Any,
                    Value::Bool(false) => Additional::None,
                    sub => Additional::Schema(Box::new(compile(sub, depth + 1)?)),
                };
            }
            // A single schema for every item; `items` as an array (tuples) gets no quick check.
            "items" => out.items = Some(Box::new(compile(v, depth + 1)?)),
            other if ANNOTATIONS.contains(&other) => {}
            _ => return None,
        }
    }
    Some(out)
}

fn type_bit(t: &str) -> Option<u8> {
    Some(match t {
        "null" => NULL,
        "boolean" => BOOLEAN,
        "integer" => INTEGER,
        "number" => NUMBER,
        "string" => STRING,
        "array" => ARRAY,
        "object" => OBJECT,
        _ => return None,
    })
}

#[cfg(test)]
mod test {
    use super::super::schema::Schema;
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// The quick check knows `doc` valid exactly when the validator finds it valid, except that
    /// a document with a float where only `integer` is allowed is left to the validator.
    fn check(schema: &Value, doc: &Value, unsure_floats: bool) {
        let fast = FastCheck::compile(schema).expect("a schema of the quick check's keywords");
        let full = Schema::compile(schema).expect("compiles");
        let valid = full.validator_is_valid(doc);
        let known = fast.is_valid(doc);
        assert!(
            !known || valid,
            "quick check accepts what the validator rejects: {schema} {doc}"
        );
        if !unsure_floats {
            assert_eq!(known, valid, "quick check differs: {schema} {doc}");
        }
        assert_eq!(full.validate(doc).is_ok(), valid, "{schema} {doc}");
    }

    fn has_float(v: &Value) -> bool {
        match v {
            Value::Number(n) => !(n.is_i64() || n.is_u64()),
            Value::Array(items) => items.iter().any(has_float),
            Value::Object(m) => m.values().any(has_float),
            _ => false,
        }
    }

    fn arb_schema() -> impl Strategy<Value = Value> {
        let types = prop::sample::subsequence(
            vec![
                "null", "boolean", "integer", "number", "string", "array", "object",
            ],
            0..=3,
        );
        let leaf = (types, any::<bool>()).prop_map(|(ts, reduce)| {
            let mut s = Map::new();
            match ts.len() {
                0 => {}
                1 => drop(s.insert("type".into(), json!(ts[0]))),
                _ => drop(s.insert("type".into(), json!(ts))),
            }
            if reduce {
                s.insert("reduce".into(), json!({"strategy": "lastWriteWins"}));
                s.insert("description".into(), json!("d"));
            }
            Value::Object(s)
        });
        leaf.prop_recursive(4, 24, 4, |inner| {
            (
                prop::option::of(prop::sample::select(vec!["object", "array"])),
                prop::collection::btree_map(
                    prop::sample::select(vec!["a", "b", "c", "d"]),
                    inner.clone(),
                    0..3,
                ),
                prop::sample::subsequence(vec!["a", "b", "c"], 0..=2),
                prop::option::of(prop_oneof![
                    Just(json!(false)),
                    Just(json!(true)),
                    inner.clone()
                ]),
                prop::option::of(inner),
            )
                .prop_map(|(ty, props, required, additional, items)| {
                    let mut s = Map::new();
                    if let Some(t) = ty {
                        s.insert("type".into(), json!(t));
                    }
                    if !props.is_empty() {
                        s.insert("properties".into(), json!(props));
                    }
                    if !required.is_empty() {
                        s.insert("required".into(), json!(required));
                    }
                    if let Some(a) = additional {
                        s.insert("additionalProperties".into(), a);
                    }
                    if let Some(i) = items {
                        s.insert("items".into(), i);
                    }
                    Value::Object(s)
                })
        })
    }

    fn arb_doc() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-3i64..3).prop_map(Value::from),
            Just(json!(u64::MAX)),
            prop::sample::select(vec![0.5, 1.0, -2.0]).prop_map(Value::from),
            prop::sample::select(vec!["", "x"]).prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec!["a", "b", "c", "d", "e"]).prop_map(String::from),
                    inner,
                    0..4,
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn fast_check_agrees_with_jsonschema(
            schema in arb_schema(),
            docs in prop::collection::vec(arb_doc(), 1..8),
        ) {
            for doc in &docs {
                check(&schema, doc, has_float(doc));
            }
        }
    }

    #[test]
    fn fast_check_agrees_with_jsonschema_repro() {
        let schema = json!({
            "type": "object",
            "reduce": {"strategy": "merge"},
            "properties": {
                "k": {"type": "string"},
                "n": {"type": "integer"},
                "x": {"type": ["number", "null"]},
                "o": {"type": "object", "additionalProperties": false, "properties": {"a": {}}},
                "arr": {"type": "array", "items": {"type": "object", "required": ["id"]}},
            },
            "required": ["k"],
            "additionalProperties": {"type": "boolean"},
        });
        for doc in [
            json!({"k": "a"}),
            json!({"k": "a", "n": -1, "x": 0.5, "o": {"a": [1]}, "arr": [{"id": 1}], "z": true}),
            json!({"n": 1}),
            json!({"k": 1}),
            json!({"k": "a", "o": {"b": 1}}),
            json!({"k": "a", "arr": [{"id": 1}, {}]}),
            json!({"k": "a", "z": 1}),
            json!({"k": "a", "x": null, "n": u64::MAX}),
            json!([]),
        ] {
            check(&schema, &doc, false);
        }
        // Drafts differ on `1.0` as an integer: the validator decides.
        let ints = json!({"type": "integer"});
        assert!(!FastCheck::compile(&ints).unwrap().is_valid(&json!(1.0)));
        assert!(
            Schema::compile(&ints)
                .unwrap()
                .validate(&json!(1.0))
                .is_ok()
        );
        let draft4 =
            json!({"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer"});
        assert!(
            Schema::compile(&draft4)
                .unwrap()
                .validate(&json!(1.0))
                .is_err()
        );
        // Anything else: no quick check.
        for schema in [
            json!({"$ref": "#/$defs/a", "$defs": {"a": {}}}),
            json!({"properties": {"a": {"minimum": 1}}}),
            json!({"items": [{"type": "string"}]}),
            json!({"properties": {"a": true}}),
            json!({"type": "object", "format": "email"}),
            json!(true),
        ] {
            assert!(FastCheck::compile(&schema).is_none(), "{schema}");
        }
    }
}
