//! A quick check of documents against schemas made only of the keywords that collection schemas
//! mostly use (`type`, `properties`, `required`, `additionalProperties`, `items`, `minimum`,
//! `maximum`, `minLength`, `maxLength`, `enum`, `const`), compiled into a tree that a document
//! is walked against directly.
//!
//! It only ever says "valid" where the `jsonschema` validator would: whatever it is unsure of
//! (a float where `integer` is asked, which drafts judge differently) counts as "not known
//! valid", and `Schema::validate` then asks the `jsonschema` validator, which also words the
//! errors. So it changes what validation costs, never what it decides. A schema with any other
//! keyword, boolean subschemas (but `additionalProperties: false`/`true`) or references gets no
//! quick check. `fast_check_agrees_with_jsonschema` in `schema.rs` compares the two.

use serde_json::{Map, Value};

pub(crate) const NULL: u8 = 1;
pub(crate) const BOOLEAN: u8 = 1 << 1;
pub(crate) const INTEGER: u8 = 1 << 2;
pub(crate) const NUMBER: u8 = 1 << 3;
pub(crate) const STRING: u8 = 1 << 4;
pub(crate) const ARRAY: u8 = 1 << 5;
pub(crate) const OBJECT: u8 = 1 << 6;

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
    // Definitions are inert unless referenced; a reference compiles its target in place.
    "$defs",
    "definitions",
    "$anchor",
];

/// How many references one quick check may follow: a bound on a schema whose references
/// fan out (a reference to a subschema already being compiled, a recursive schema, gets no
/// quick check at all).
const REFS_MAX: usize = 4096;

/// Deepest schema nesting compiled; past it, no quick check (a bound on compile recursion).
const DEPTH_MAX: usize = 64;

/// One compiled subschema.
#[derive(Debug)]
pub(crate) struct FastCheck {
    /// Allowed types as a mask; 0 when `type` is absent (anything).
    types: u8,
    /// `properties`, sorted by name (the order in which a `serde_json::Map` iterates).
    pub(crate) props: Vec<(String, FastCheck)>,
    pub(crate) required: Vec<String>,
    pub(crate) additional: Additional,
    /// `items` as a single schema: every item.
    pub(crate) items: Option<Box<FastCheck>>,
    /// `minimum` and `maximum` (inclusive in every draft), for numbers.
    minimum: Option<serde_json::Number>,
    maximum: Option<serde_json::Number>,
    /// `minLength` and `maxLength`, in characters, for strings.
    min_length: Option<u64>,
    max_length: Option<u64>,
    /// `enum`, and `const` as an enum of one: each lists the values allowed.
    pub(crate) allowed: Vec<Vec<Value>>,
    /// Every name of `properties` and `required`, with its index in each: what a member's
    /// name is, found in one lookup (`member_names`).
    names: Vec<(String, Option<usize>, Option<usize>)>,
}

#[derive(Debug)]
pub(crate) enum Additional {
    Any,
    None,
    Schema(Box<FastCheck>),
}

impl FastCheck {
    /// The quick check of `schema`, or None if it uses anything beyond the keywords above.
    #[cfg(test)]
    pub fn compile(schema: &Value) -> Option<FastCheck> {
        Self::compile_with(schema, &super::schema::anchors(schema))
    }

    /// `compile`, given the schema's anchors (`schema::anchors`).
    pub fn compile_with(schema: &Value, anchors: &super::schema::Anchors) -> Option<FastCheck> {
        let mut ctx = Ctx {
            root: schema,
            anchors,
            refs: Vec::new(),
            followed: 0,
        };
        compile(schema, 0, &mut ctx)
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
        if !self
            .allowed
            .iter()
            .all(|values| values.iter().any(|a| json_equal(a, v)))
        {
            return false;
        }
        match v {
            Value::Object(m) => self.object(m),
            Value::Array(items) => match &self.items {
                Some(c) => items.iter().all(|i| c.is_valid(i)),
                None => true,
            },
            Value::Number(n) => {
                self.minimum
                    .as_ref()
                    .is_none_or(|min| num_cmp(n, min).is_ge())
                    && self
                        .maximum
                        .as_ref()
                        .is_none_or(|max| num_cmp(n, max).is_le())
            }
            Value::String(text) => {
                if self.min_length.is_none() && self.max_length.is_none() {
                    return true;
                }
                let chars = text.chars().count() as u64;
                self.min_length.is_none_or(|m| chars >= m)
                    && self.max_length.is_none_or(|m| chars <= m)
            }
            _ => true,
        }
    }

    /// Which of `properties` `name` is: the one at `next` is tried first (the one after the
    /// last found, as members mostly come in the schema's order), then a search.
    pub(crate) fn prop(&self, name: &str, next: usize) -> Option<usize> {
        match self.props.get(next) {
            Some((n, _)) if n == name => Some(next),
            _ => self
                .props
                .binary_search_by(|(n, _)| n.as_str().cmp(name))
                .ok(),
        }
    }

    /// Which of `properties` and of `required` a member named `name` is. A few names are
    /// compared by length first; many are searched.
    pub(crate) fn member_names(&self, name: &str) -> (Option<usize>, Option<usize>) {
        let found = if self.names.len() <= 16 {
            self.names
                .iter()
                .find(|(n, _, _)| n.len() == name.len() && n == name)
        } else {
            self.names
                .binary_search_by(|(n, _, _)| n.as_str().cmp(name))
                .ok()
                .map(|i| &self.names[i])
        };
        found.map_or((None, None), |(_, p, r)| (*p, *r))
    }

    /// Whether `type` allows a value of `kind` (an integer is a number too).
    pub(crate) fn allows(&self, kind: u8) -> bool {
        let mask = if kind == INTEGER {
            INTEGER | NUMBER
        } else {
            kind
        };
        self.types == 0 || self.types & mask != 0
    }

    /// Whether it checks more of a scalar than its type.
    pub(crate) fn checks_scalars(&self) -> bool {
        self.minimum.is_some()
            || self.maximum.is_some()
            || self.min_length.is_some()
            || self.max_length.is_some()
            || !self.allowed.is_empty()
    }

    fn object(&self, m: &Map<String, Value>) -> bool {
        if !self.required.iter().all(|r| m.contains_key(r)) {
            return false;
        }
        if self.props.is_empty() && matches!(self.additional, Additional::Any) {
            return true;
        }
        // Properties come in ascending order, and so do the schema's.
        let mut next = 0;
        for (k, v) in m {
            let found = self.prop(k, next);
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

/// What compiling needs of the whole schema: its root and anchors (for `$ref`s), the
/// references being compiled (a cycle gets no quick check) and how many were followed.
struct Ctx<'a> {
    root: &'a Value,
    anchors: &'a super::schema::Anchors,
    refs: Vec<String>,
    followed: usize,
}

impl<'a> Ctx<'a> {
    /// The target of a `$ref` of the root document: a JSON pointer or an anchor declared
    /// once. None where that is not certainly what the validator resolves it to: a schema
    /// with resources of its own below the root (`$id`s), against which references resolve.
    fn target(&self, reference: &str) -> Option<(&'a Value, String)> {
        if !self.anchors.ids.is_empty() {
            return None;
        }
        let ptr = self.anchors.pointer_of(reference)?;
        let target = super::ptr::Pointer::parse(&ptr).ok()?.query(self.root)?;
        Some((target, ptr))
    }
}

fn compile(schema: &Value, depth: usize, ctx: &mut Ctx<'_>) -> Option<FastCheck> {
    let Value::Object(s) = schema else {
        return None;
    };
    if depth > DEPTH_MAX {
        return None;
    }
    // A `$ref` beside annotations only is its target's check (beside other keywords, both
    // would apply: no quick check).
    if let Some(reference) = s.get("$ref") {
        let alone = s
            .keys()
            .all(|k| k == "$ref" || ANNOTATIONS.contains(&k.as_str()));
        let (target, ptr) = ctx.target(reference.as_str()?).filter(|_| alone)?;
        ctx.followed += 1;
        if ctx.refs.contains(&ptr) || ctx.followed > REFS_MAX {
            return None;
        }
        ctx.refs.push(ptr);
        let out = compile(target, depth + 1, ctx);
        ctx.refs.pop();
        return out;
    }
    let mut out = FastCheck {
        types: 0,
        props: Vec::new(),
        required: Vec::new(),
        additional: Additional::Any,
        items: None,
        minimum: None,
        maximum: None,
        min_length: None,
        max_length: None,
        allowed: Vec::new(),
        names: Vec::new(),
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
                    out.props
                        .push((name.clone(), compile(sub, depth + 1, ctx)?));
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
                    sub => Additional::Schema(Box::new(compile(sub, depth + 1, ctx)?)),
                };
            }
            // A single schema for every item; `items` as an array (tuples) gets no quick check.
            "items" => out.items = Some(Box::new(compile(v, depth + 1, ctx)?)),
            // Inclusive in every draft (draft 4's boolean `exclusiveMinimum` gets no quick check).
            "minimum" => out.minimum = Some(v.as_number()?.clone()),
            "maximum" => out.maximum = Some(v.as_number()?.clone()),
            "minLength" => out.min_length = Some(v.as_u64()?),
            "maxLength" => out.max_length = Some(v.as_u64()?),
            "enum" => out.allowed.push(v.as_array()?.clone()),
            "const" => out.allowed.push(vec![v.clone()]),
            other if ANNOTATIONS.contains(&other) => {}
            _ => return None,
        }
    }
    out.required.sort();
    out.required.dedup();
    let mut names: std::collections::BTreeMap<&str, (Option<usize>, Option<usize>)> =
        Default::default();
    for (i, (n, _)) in out.props.iter().enumerate() {
        names.entry(n).or_default().0 = Some(i);
    }
    for (i, n) in out.required.iter().enumerate() {
        names.entry(n).or_default().1 = Some(i);
    }
    out.names = names
        .into_iter()
        .map(|(n, (p, r))| (n.to_string(), p, r))
        .collect();
    Some(out)
}

/// How number `a` compares with `b`, exactly (an integer beside a float is not rounded).
fn num_cmp(a: &serde_json::Number, b: &serde_json::Number) -> std::cmp::Ordering {
    let int = |n: &serde_json::Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    // Floats in JSON are finite.
    let float = |n: &serde_json::Number| n.as_f64().unwrap_or(0.0);
    match (int(a), int(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(x), None) => int_float_cmp(x, float(b)),
        (None, Some(y)) => int_float_cmp(y, float(a)).reverse(),
        (None, None) => float(a).total_cmp(&float(b)),
    }
}

/// Integer `x` beside finite float `f`, exactly.
fn int_float_cmp(x: i128, f: f64) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    // Beyond i128 the float is larger or smaller than any integer here.
    if f >= 2f64.powi(127) {
        return Ordering::Less;
    }
    if f < -(2f64.powi(127)) {
        return Ordering::Greater;
    }
    // `trunc` is an integer in range, so the cast is exact.
    let whole = f.trunc() as i128;
    x.cmp(&whole).then_with(|| {
        let fraction = f - f.trunc();
        0f64.partial_cmp(&fraction).unwrap_or(Ordering::Equal)
    })
}

/// Whether `a` and `b` are equal as JSON Schema compares them (`enum`, `const`): numbers
/// by value (`1` equals `1.0`), arrays item by item, objects member by member.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => num_cmp(x, y).is_eq(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => false,
    }
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
pub(crate) mod test {
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

    pub(crate) fn arb_schema() -> impl Strategy<Value = Value> {
        let types = prop::sample::subsequence(
            vec![
                "null", "boolean", "integer", "number", "string", "array", "object",
            ],
            0..=3,
        );
        let bound = || {
            prop::option::of(prop::sample::select(vec![
                json!(-2),
                json!(0),
                json!(1),
                json!(0.5),
                json!(-1.5),
                json!(u64::MAX),
            ]))
        };
        let length = || prop::option::of(0u64..3);
        let choices = prop::option::of(prop::sample::select(vec![
            json!(["x", 1, null]),
            json!([true, "", 0.5]),
            json!([1.0]),
            json!([[1], {"a": 1}]),
        ]));
        let constant = prop::option::of(prop::sample::select(vec![
            json!("x"),
            json!(1),
            json!(1.0),
            json!(false),
        ]));
        let checks = (bound(), bound(), length(), length(), choices, constant);
        let leaf = (types, any::<bool>(), checks).prop_map(|(ts, reduce, checks)| {
            let mut s = Map::new();
            match ts.len() {
                0 => {}
                1 => drop(s.insert("type".into(), json!(ts[0]))),
                _ => drop(s.insert("type".into(), json!(ts))),
            }
            let (min, max, min_len, max_len, choices, constant) = checks;
            for (k, v) in [
                ("minimum", min),
                ("maximum", max),
                ("minLength", min_len.map(Value::from)),
                ("maxLength", max_len.map(Value::from)),
                ("enum", choices),
                ("const", constant),
            ] {
                if let Some(v) = v {
                    s.insert(k.into(), v);
                }
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

    pub(crate) fn arb_doc() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-3i64..3).prop_map(Value::from),
            Just(json!(u64::MAX)),
            Just(json!(i64::MIN)),
            prop::sample::select(vec![0.5, 1.0, -2.0, -1.5, 1e300]).prop_map(Value::from),
            prop::sample::select(vec!["", "x", "xy", "ééé"]).prop_map(Value::from),
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
        // Bounds, lengths and allowed values, exactly (2^53 + 1 is over a float 2^53).
        let bounded = json!({
            "properties": {
                "amount": {"type": "number", "minimum": 0, "maximum": 9007199254740992.0},
                "code": {"type": "string", "minLength": 2, "maxLength": 3},
                "tier": {"enum": ["gold", "silver", 1]},
                "v": {"const": 2},
            },
        });
        for doc in [
            json!({"amount": 0, "code": "ab", "tier": "gold", "v": 2.0}),
            json!({"amount": -0.01}),
            json!({"amount": 9007199254740992u64}),
            json!({"amount": 9007199254740993u64}),
            json!({"code": "a"}),
            json!({"code": "éèà"}),
            json!({"code": "abcd"}),
            json!({"tier": "bronze"}),
            json!({"tier": 1.0}),
            json!({"v": 3}),
        ] {
            check(&bounded, &doc, false);
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
        // References alone are their targets' checks; recursive ones get no quick check.
        let defs = json!({
            "a": {"$anchor": "A", "type": "integer", "minimum": 1},
            "o": {"type": "object", "properties": {"n": {"$ref": "#A"}}, "required": ["n"]},
            "list": {"type": "object", "properties": {"next": {"$ref": "#/$defs/list"}}},
        });
        let schema = json!({"$defs": defs, "type": "object", "properties": {
            "o": {"$ref": "#/%24defs/o", "description": "an annotation beside it"},
            "p": {"$ref": "#/$defs/o"},
        }});
        let check = FastCheck::compile(&schema).expect("references alone");
        assert!(check.is_valid(&json!({"o": {"n": 1}, "p": {"n": 2}})));
        assert!(!check.is_valid(&json!({"o": {"n": 0}})));
        assert!(!check.is_valid(&json!({"p": {}})));
        // References the validator may resolve otherwise than from the root: no quick check
        // (an anchor declared twice, a resource of its own below the root, draft 7's
        // `$anchor`, which is no anchor there).
        let twice = json!({"$defs": {"a": {"$anchor": "A", "type": "string"}, "b": {"$anchor": "A", "type": "integer"}},
            "properties": {"v": {"$ref": "#A"}}});
        let nested = json!({"$defs": {"ext": {"$id": "https://e.com/ext.json", "$defs": {"y": {"type": "string"}, "x": {"$ref": "#/$defs/y"}}},
            "y": {"type": "integer"}}, "properties": {"v": {"$ref": "#/$defs/ext/$defs/x"}}});
        let draft7 = json!({"$schema": "http://json-schema.org/draft-07/schema#",
            "definitions": {"a": {"$anchor": "A", "type": "string"}, "b": {"$id": "#A", "type": "integer"}},
            "properties": {"v": {"$ref": "#A"}}});
        for (schema, doc) in [
            (twice, json!({"v": "x"})),
            (nested, json!({"v": 1})),
            (draft7, json!({"v": "x"})),
        ] {
            let compiled = Schema::compile(&schema).unwrap();
            assert!(!compiled.validator_is_valid(&doc), "{schema}");
            assert!(compiled.validate(&doc).is_err(), "{schema}");
        }
        // Anything else: no quick check.
        for schema in [
            json!({"$ref": "#/$defs/list", "$defs": defs}),
            json!({"$ref": "#/$defs/a", "minimum": 2, "$defs": defs}),
            json!({"$ref": "#/$defs/none", "$defs": defs}),
            json!({"$ref": "other.json#/a"}),
            json!({"properties": {"a": {"exclusiveMinimum": 1}}}),
            json!({"minimum": 0, "exclusiveMinimum": true}),
            json!({"pattern": "^a"}),
            json!({"items": [{"type": "string"}]}),
            json!({"properties": {"a": true}}),
            json!({"type": "object", "format": "email"}),
            json!(true),
        ] {
            assert!(FastCheck::compile(&schema).is_none(), "{schema}");
        }
    }
}
