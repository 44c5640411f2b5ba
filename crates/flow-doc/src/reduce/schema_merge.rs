//! `jsonSchemaMerge`: both sides are JSON Schemas; the result admits every document either
//! admits (used to widen inferred schemas).
//!
//! Schemas made only of the keywords that schema inference produces (types, properties,
//! required, items, bounds, enum/const, format, annotations) are merged keyword by keyword,
//! which keeps the result readable and stays a union: a constraint is kept only where both
//! sides have one (widened), or where the other side admits no value of the type the
//! constraint is about. Any other schema falls back to `anyOf` of both (flattened, without
//! duplicates), which is exact.

use super::{Loc, ReduceError, type_error};
use serde_json::{Map, Value};
use std::cmp::Ordering;

pub(super) fn reduce(loc: &Loc, lhs: Option<Value>, rhs: Value) -> Result<Value, ReduceError> {
    let is_schema = |v: &Value| v.is_object() || v.is_boolean();
    let expected = "JSON schemas (objects or booleans)";
    if !is_schema(&rhs) || lhs.as_ref().is_some_and(|l| !is_schema(l)) {
        return Err(type_error(
            loc,
            "jsonSchemaMerge",
            expected,
            lhs.as_ref(),
            Some(&rhs),
        ));
    }
    Ok(match lhs {
        None => rhs,
        Some(lhs) => union(lhs, rhs),
    })
}

/// Keywords that only annotate; the newer side's value wins.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$comment",
    "$schema",
    "reduce",
];

/// Type-specific keyword families: (the type they constrain, their keywords).
const FAMILIES: &[(&str, &[&str])] = &[
    (
        "object",
        &["properties", "required", "additionalProperties"],
    ),
    ("array", &["items", "minItems", "maxItems"]),
    ("string", &["minLength", "maxLength", "format"]),
    ("number", &["minimum", "maximum"]),
];

pub(super) fn union(lhs: Value, rhs: Value) -> Value {
    if lhs == rhs {
        return rhs;
    }
    match (lhs, rhs) {
        (Value::Bool(true), _) | (_, Value::Bool(true)) => Value::Bool(true),
        (Value::Bool(false), other) | (other, Value::Bool(false)) => other,
        (Value::Object(l), Value::Object(r)) if structural(&l) && structural(&r) => {
            Value::Object(union_objects(l, r))
        }
        (l, r) => any_of(l, r),
    }
}

fn structural(m: &Map<String, Value>) -> bool {
    m.iter().all(|(k, v)| {
        ANNOTATIONS.contains(&k.as_str())
            || matches!(k.as_str(), "type" | "enum" | "const")
            || (k == "items" && !v.is_array())
            || FAMILIES
                .iter()
                .any(|(_, kws)| kws.contains(&k.as_str()) && k != "items")
    })
}

fn any_of(l: Value, r: Value) -> Value {
    fn branches(v: Value) -> Vec<Value> {
        match v {
            Value::Object(mut m) if m.len() == 1 && m.get("anyOf").is_some_and(Value::is_array) => {
                match m.remove("anyOf") {
                    Some(Value::Array(b)) => b,
                    _ => Vec::new(),
                }
            }
            v => vec![v],
        }
    }
    let mut all = branches(l);
    for b in branches(r) {
        if !all.contains(&b) {
            all.push(b);
        }
    }
    serde_json::json!({ "anyOf": all })
}

/// The types a schema admits; None if any.
fn types(m: &Map<String, Value>) -> Option<Vec<String>> {
    match m.get("type")? {
        Value::String(t) => Some(vec![t.clone()]),
        Value::Array(ts) => Some(
            ts.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect(),
        ),
        _ => None,
    }
}

fn admits(types: &Option<Vec<String>>, t: &str) -> bool {
    match types {
        None => true,
        Some(ts) => ts
            .iter()
            .any(|x| x == t || (t == "number" && x == "integer")),
    }
}

fn union_objects(mut l: Map<String, Value>, mut r: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for kw in ANNOTATIONS {
        if let Some(v) = r.remove(*kw).or_else(|| l.remove(*kw)) {
            out.insert(kw.to_string(), v);
        }
    }
    let (lt, rt) = (types(&l), types(&r));
    if let (Some(a), Some(b)) = (&lt, &rt) {
        let mut all: Vec<String> = a.iter().chain(b.iter()).cloned().collect();
        if all.iter().any(|t| t == "number") {
            all.retain(|t| t != "integer");
        }
        all.sort();
        all.dedup();
        let t = match all.len() {
            1 => Value::String(all.remove(0)),
            _ => Value::Array(all.into_iter().map(Value::String).collect()),
        };
        out.insert("type".to_string(), t);
    }
    let values = |m: &Map<String, Value>| match (m.get("const"), m.get("enum")) {
        (Some(c), _) => Some(vec![c.clone()]),
        (None, Some(Value::Array(e))) => Some(e.clone()),
        _ => None,
    };
    if let (Some(mut a), Some(b)) = (values(&l), values(&r)) {
        for v in b {
            if !a.contains(&v) {
                a.push(v);
            }
        }
        match a.len() {
            1 => out.insert("const".to_string(), a.remove(0)),
            _ => out.insert("enum".to_string(), Value::Array(a)),
        };
    }
    for (t, kws) in FAMILIES {
        match (admits(&lt, t), admits(&rt, t)) {
            (false, false) => {}
            (true, false) => copy(&mut out, &mut l, kws),
            (false, true) => copy(&mut out, &mut r, kws),
            (true, true) => merge_family(&mut out, t, &mut l, &mut r),
        }
    }
    out
}

fn copy(out: &mut Map<String, Value>, from: &mut Map<String, Value>, kws: &[&str]) {
    for kw in kws {
        if let Some(v) = from.remove(*kw) {
            out.insert(kw.to_string(), v);
        }
    }
}

fn merge_family(
    out: &mut Map<String, Value>,
    t: &str,
    l: &mut Map<String, Value>,
    r: &mut Map<String, Value>,
) {
    let bound = |out: &mut Map<String, Value>,
                 kw: &str,
                 keep: Ordering,
                 l: &Map<String, Value>,
                 r: &Map<String, Value>| {
        if let (Some(a), Some(b)) = (l.get(kw), r.get(kw)) {
            let v = if super::compare(a, b) == keep {
                a.clone()
            } else {
                b.clone()
            };
            out.insert(kw.to_string(), v);
        }
    };
    match t {
        "object" => {
            let (la, ra) = (
                l.remove("additionalProperties"),
                r.remove("additionalProperties"),
            );
            let (lp, rp) = (take_map(l, "properties"), take_map(r, "properties"));
            let mut props = Map::new();
            for k in lp.keys().chain(rp.keys()) {
                if props.contains_key(k) {
                    continue;
                }
                let a = lp
                    .get(k)
                    .or(la.as_ref())
                    .cloned()
                    .unwrap_or(Value::Bool(true));
                let b = rp
                    .get(k)
                    .or(ra.as_ref())
                    .cloned()
                    .unwrap_or(Value::Bool(true));
                props.insert(k.clone(), union(a, b));
            }
            if !props.is_empty() {
                out.insert("properties".to_string(), Value::Object(props));
            }
            let (lr, rr) = (
                l.get("required").and_then(Value::as_array),
                r.get("required").and_then(Value::as_array),
            );
            if let (Some(a), Some(b)) = (lr, rr) {
                let both: Vec<Value> = a.iter().filter(|x| b.contains(x)).cloned().collect();
                if !both.is_empty() {
                    out.insert("required".to_string(), Value::Array(both));
                }
            }
            let additional = union(
                la.unwrap_or(Value::Bool(true)),
                ra.unwrap_or(Value::Bool(true)),
            );
            if additional != Value::Bool(true) {
                out.insert("additionalProperties".to_string(), additional);
            }
        }
        "array" => {
            let items = union(
                l.remove("items").unwrap_or(Value::Bool(true)),
                r.remove("items").unwrap_or(Value::Bool(true)),
            );
            if items != Value::Bool(true) {
                out.insert("items".to_string(), items);
            }
            bound(out, "minItems", Ordering::Less, l, r);
            bound(out, "maxItems", Ordering::Greater, l, r);
        }
        "string" => {
            bound(out, "minLength", Ordering::Less, l, r);
            bound(out, "maxLength", Ordering::Greater, l, r);
            if let (Some(a), Some(b)) = (l.get("format"), r.get("format"))
                && a == b
            {
                out.insert("format".to_string(), a.clone());
            }
        }
        _ => {
            bound(out, "minimum", Ordering::Less, l, r);
            bound(out, "maximum", Ordering::Greater, l, r);
        }
    }
}

fn take_map(m: &mut Map<String, Value>, kw: &str) -> Map<String, Value> {
    match m.remove(kw) {
        Some(Value::Object(p)) => p,
        _ => Map::new(),
    }
}
