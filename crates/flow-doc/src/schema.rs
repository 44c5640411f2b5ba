//! Collection schemas: compiling, validating documents, and checking collection keys.
//!
//! Schemas default to JSON Schema draft 2019-09, as Flow's do; a `$schema` keyword may choose
//! 2020-12 (or draft 7). Other documents' `$ref`s are not resolved: a schema is
//! self-contained (a catalog's loader bundles the files it references into it), which keeps
//! validation free of I/O.

use super::fast_check::FastCheck;
use super::ptr::{Pointer, Token, child, percent_decode};
use super::reduce::{Plan, ReduceError, Reduced};
use jsonschema::{Draft, Validator};
use serde_json::Value;
use std::collections::BTreeMap;

/// A compiled collection schema: its validator, and its reduce plan (the `reduce` annotations,
/// compiled so that reducing a document does not evaluate annotations from scratch).
pub struct Schema {
    raw: Value,
    validator: Validator,
    /// A quick check for schemas of the common keywords (`fast_check.rs`): where it knows a
    /// document valid, the validator is not asked.
    fast: Option<FastCheck>,
    plan: Plan,
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("invalid JSON schema: {0}")]
    Invalid(String),
    #[error("key {ptr} must point at a required location, but {reason}")]
    KeyNotRequired { ptr: String, reason: String },
    #[error(
        "key {ptr} must point at a scalar (string, integer, number, boolean), but its type is {types}"
    )]
    KeyNotScalar { ptr: String, types: String },
    #[error("a collection key must have at least one JSON pointer")]
    EmptyKey,
    #[error(transparent)]
    Pointer(#[from] super::ptr::PointerError),
    /// A `reduce` annotation that is not understood, at a schema location such as
    /// `#/properties/total`.
    #[error("at schema location {location}: {reason}")]
    Reduce { location: String, reason: String },
}

impl From<super::reduce::PlanError> for SchemaError {
    fn from(e: super::reduce::PlanError) -> Self {
        use super::reduce::PlanError;
        match e {
            PlanError::Invalid(m) => SchemaError::Invalid(m),
            PlanError::Reduce { location, reason } => SchemaError::Reduce { location, reason },
        }
    }
}

/// Why a document does not match its schema.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{}", .errors.join("; "))]
pub struct ValidationError {
    /// Each violation as `at /location: reason`, at most `MAX_REPORTED` of them.
    pub errors: Vec<String>,
}

/// How many violations of one document are reported: enough to fix several at once, few enough
/// to keep an error line readable.
const MAX_REPORTED: usize = 5;

impl Schema {
    pub fn compile(raw: &Value) -> Result<Self, SchemaError> {
        let draft = match raw.get("$schema").and_then(Value::as_str) {
            Some(s) if s.contains("2020-12") => Draft::Draft202012,
            Some(s) if s.contains("draft-07") => Draft::Draft7,
            Some(s) if s.contains("draft-06") => Draft::Draft6,
            Some(s) if s.contains("draft-04") => Draft::Draft4,
            _ => Draft::Draft201909,
        };
        let validator = jsonschema::options()
            .with_draft(draft)
            .build(raw)
            .map_err(|e| SchemaError::Invalid(format_error(&e)))?;
        let plan = Plan::compile(raw, draft)?;
        Ok(Schema {
            raw: raw.clone(),
            validator,
            fast: FastCheck::compile(raw),
            plan,
        })
    }

    /// Reduce `rhs` onto `lhs` (None: against nothing) by the schema's `reduce` annotations.
    /// `full` says lhs is the first document of its key (or absent at the start of history).
    /// `rhs` must be valid against this schema. See [`Reduced`] for what comes back: a
    /// document, a deletion (full only), or a deferral (associative only).
    pub fn reduce(
        &self,
        lhs: Option<Value>,
        rhs: Value,
        full: bool,
    ) -> Result<Reduced, ReduceError> {
        self.plan.reduce(lhs, rhs, full)
    }

    /// The compiled reduce plan.
    /// Check the JSON object `text` without building it (`scan.rs`), keeping its `_meta` and
    /// the top-level properties `key` points into: them, when it is known valid (`_meta`
    /// aside, as `validate` is asked without it); None when a full parse and `validate` must
    /// decide (not known valid, not a JSON object, no quick check for this schema, or a key
    /// that is the whole document).
    pub fn scan(&self, text: &[u8], key: &[Pointer]) -> Option<serde_json::Map<String, Value>> {
        let fast = self.fast.as_ref()?;
        let mut keep = Vec::with_capacity(key.len() + 1);
        keep.push("_meta");
        for p in key {
            match p.0.first() {
                Some(Token::Property(name)) => keep.push(name.as_str()),
                _ => return None,
            }
        }
        super::scan::scan(fast, text, &keep)
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The schema as written.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    pub fn validate(&self, doc: &Value) -> Result<(), ValidationError> {
        if self.fast.as_ref().is_some_and(|f| f.is_valid(doc)) || self.validator.is_valid(doc) {
            return Ok(());
        }
        let errors: Vec<String> = self
            .validator
            .iter_errors(doc)
            .take(MAX_REPORTED)
            .map(|e| format_error(&e))
            .collect();
        Err(ValidationError { errors })
    }

    /// The `jsonschema` validator's verdict alone, for tests of the quick check.
    #[cfg(test)]
    pub(crate) fn validator_is_valid(&self, doc: &Value) -> bool {
        self.validator.is_valid(doc)
    }

    /// Check that every key pointer names a location that every valid document has, holding a
    /// scalar. Key locations are found through `properties`, `required`, `allOf` and `$ref`s
    /// within the schema (JSON pointers and anchors).
    pub fn check_key(&self, key: &[Pointer]) -> Result<(), SchemaError> {
        if key.is_empty() {
            return Err(SchemaError::EmptyKey);
        }
        for ptr in key {
            self.check_key_location(ptr)?;
        }
        Ok(())
    }

    /// The subschemas that apply at document location `ptr`, through `properties`, `allOf`
    /// and `$ref`s within the schema (pointers and anchors): what a reader of the schema
    /// (types, formats, property names) must look at. Empty where the schema says nothing.
    pub fn subschemas_at(&self, ptr: &Pointer) -> Vec<&Value> {
        let mut here: Vec<&Value> = vec![&self.raw];
        for token in &ptr.0 {
            let Token::Property(prop) = token else {
                return Vec::new();
            };
            here = self
                .expand(&here)
                .iter()
                .filter_map(|s| s.get("properties").and_then(|p| p.get(prop)))
                .collect();
        }
        self.expand(&here)
    }

    /// The JSON types the schema declares at `ptr` (see `subschemas_at`), sorted and
    /// de-duplicated; empty where the schema says nothing.
    pub fn types_at(&self, ptr: &Pointer) -> Vec<String> {
        let mut types: Vec<String> = Vec::new();
        for s in self.subschemas_at(ptr) {
            match s.get("type") {
                Some(Value::String(t)) => types.push(t.clone()),
                Some(Value::Array(ts)) => {
                    types.extend(ts.iter().filter_map(|t| t.as_str().map(String::from)))
                }
                _ => {}
            }
        }
        types.sort();
        types.dedup();
        types
    }

    fn check_key_location(&self, ptr: &Pointer) -> Result<(), SchemaError> {
        let not_required = |reason: String| SchemaError::KeyNotRequired {
            ptr: ptr.to_string(),
            reason,
        };
        let mut here: Vec<&Value> = vec![&self.raw];
        for token in &ptr.0 {
            let Token::Property(prop) = token else {
                return Err(not_required("'-' is not a location".to_string()));
            };
            let scopes = self.expand(&here);
            let required = scopes.iter().any(|s| {
                s.get("required")
                    .and_then(Value::as_array)
                    .is_some_and(|r| r.iter().any(|p| p == prop))
            });
            if !required {
                return Err(not_required(format!(
                    "'{prop}' is not listed in `required`"
                )));
            }
            here = scopes
                .iter()
                .filter_map(|s| s.get("properties").and_then(|p| p.get(prop)))
                .collect();
            if here.is_empty() {
                return Err(not_required(format!(
                    "'{prop}' has no schema under `properties`"
                )));
            }
        }
        let scopes = self.expand(&here);
        let mut types: Vec<String> = Vec::new();
        for s in &scopes {
            match s.get("type") {
                Some(Value::String(t)) => types.push(t.clone()),
                Some(Value::Array(ts)) => {
                    types.extend(ts.iter().filter_map(|t| t.as_str().map(String::from)))
                }
                _ => {}
            }
        }
        let scalar = |t: &String| matches!(t.as_str(), "string" | "integer" | "number" | "boolean");
        if types.is_empty() || !types.iter().all(scalar) {
            let types = if types.is_empty() {
                "unspecified".to_string()
            } else {
                types.join(" | ")
            };
            return Err(SchemaError::KeyNotScalar {
                ptr: ptr.to_string(),
                types,
            });
        }
        Ok(())
    }

    /// The subschemas that all apply at a location: the schemas themselves, their `allOf`
    /// branches and the targets of local `$ref`s, transitively.
    fn expand<'a>(&'a self, schemas: &[&'a Value]) -> Vec<&'a Value> {
        let mut out: Vec<&Value> = Vec::new();
        let mut stack: Vec<&Value> = schemas.to_vec();
        while let Some(s) = stack.pop() {
            if out.len() > 256 {
                break; // A cyclic $ref; what was gathered so far decides.
            }
            if let Some(all) = s.get("allOf").and_then(Value::as_array) {
                stack.extend(all.iter());
            }
            if let Some(target) = s
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| self.resolve_local(r))
            {
                stack.push(target);
            }
            out.push(s);
        }
        out
    }

    /// The target of a `$ref` within this schema: a JSON pointer (`#/$defs/a`) or an anchor
    /// (`#Name`: a subschema's `$anchor`, or a legacy `$id: "#Name"`). A reference to another
    /// document resolves to nothing: a catalog's loader has bundled those in already.
    fn resolve_local(&self, reference: &str) -> Option<&Value> {
        let fragment = percent_decode(reference.strip_prefix('#')?);
        let ptr = if fragment.is_empty() || fragment.starts_with('/') {
            fragment
        } else {
            anchors(&self.raw).remove(&fragment)?
        };
        Pointer::parse(&ptr).ok()?.query(&self.raw)
    }
}

/// The anchors `schema` declares (`$anchor: Name`, or draft 7's `$id: "#Name"`), each with the
/// pointer of the subschema declaring it; the first wins where a name repeats. Values of
/// `const`, `enum`, `default` and `examples` are data, not schemas, and are not searched.
pub fn anchors(schema: &Value) -> BTreeMap<String, String> {
    fn walk(v: &Value, at: &str, is_map: bool, out: &mut BTreeMap<String, String>) {
        match v {
            Value::Object(m) => {
                if !is_map {
                    let id_anchor = m.get("$id").and_then(Value::as_str).and_then(|id| {
                        id.split_once('#')
                            .map(|(_, a)| a)
                            .filter(|a| !a.is_empty() && !a.starts_with('/'))
                    });
                    for a in [m.get("$anchor").and_then(Value::as_str), id_anchor]
                        .into_iter()
                        .flatten()
                    {
                        out.entry(a.to_string()).or_insert_with(|| at.to_string());
                    }
                }
                for (k, c) in m {
                    if is_map || !is_data_keyword(k) {
                        walk(c, &child(at, k), !is_map && is_map_keyword(k), out);
                    }
                }
            }
            Value::Array(items) => {
                for (i, c) in items.iter().enumerate() {
                    walk(c, &child(at, &i.to_string()), false, out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    walk(schema, "", false, &mut out);
    out
}

/// Keywords whose value is data, never a schema.
pub fn is_data_keyword(k: &str) -> bool {
    matches!(k, "const" | "enum" | "default" | "examples")
}

/// Keywords whose value maps names to schemas (the names are not keywords).
pub fn is_map_keyword(k: &str) -> bool {
    matches!(
        k,
        "properties"
            | "patternProperties"
            | "$defs"
            | "definitions"
            | "dependentSchemas"
            | "dependencies"
    )
}

fn format_error(e: &jsonschema::ValidationError<'_>) -> String {
    let at = e.instance_path().to_string();
    let at = if at.is_empty() { "/".to_string() } else { at };
    format!("at {at}: {e}")
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    #[test]
    fn validation_cases() {
        let schema = Schema::compile(&json!({
            "type": "object",
            "properties": {"id": {"type": "integer"}, "items": {"items": [{"type": "string"}]}},
            "required": ["id"],
        }))
        .unwrap();
        assert!(schema.validate(&json!({"id": 1})).is_ok());
        let err = schema
            .validate(&json!({"id": "x"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at /id") && err.contains("integer"), "{err}");
        let err = schema.validate(&json!({})).unwrap_err().to_string();
        assert!(err.contains("at /") && err.contains("id"), "{err}");
        // Draft 2019-09 by default: `items: [..]` is tuple validation.
        assert!(
            schema
                .validate(&json!({"id": 1, "items": ["a", 2]}))
                .is_ok()
        );
        assert!(schema.validate(&json!({"id": 1, "items": [1]})).is_err());

        assert!(matches!(
            Schema::compile(&json!({"type": 12})),
            Err(SchemaError::Invalid(_))
        ));
    }

    #[test]
    fn key_cases() {
        let schema = Schema::compile(&json!({
            "$defs": {"name": {"type": "string"}},
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "opt": {"type": "string"},
                "obj": {"type": "object", "properties": {"n": {"$ref": "#/$defs/name"}}, "required": ["n"]},
                "arr": {"type": "array"},
                "any": {},
            },
            "required": ["id", "obj", "arr", "any"],
            "allOf": [{"required": ["extra"], "properties": {"extra": {"type": ["string", "integer"]}}}],
        }))
        .unwrap();
        let check = |ptrs: &[&str]| {
            let key: Vec<Pointer> = ptrs.iter().map(|p| Pointer::parse(p).unwrap()).collect();
            schema.check_key(&key).map_err(|e| e.to_string())
        };
        assert_eq!(check(&["/id"]), Ok(()));
        assert_eq!(check(&["/id", "/obj/n", "/extra"]), Ok(()));
        assert!(
            check(&["/opt"])
                .unwrap_err()
                .contains("'opt' is not listed in `required`")
        );
        assert!(
            check(&["/arr"])
                .unwrap_err()
                .contains("must point at a scalar")
        );
        assert!(check(&["/any"]).unwrap_err().contains("unspecified"));
        assert!(check(&[]).unwrap_err().contains("at least one"));
    }

    #[test]
    fn key_checks_follow_anchors() {
        // As Flow's examples write them: `$ref: "#Exchange"` to an `$anchor`, and a chain of
        // references through `$defs` and `definitions`.
        let schema = Schema::compile(&json!({
            "$defs": {
                "exchange": {"$anchor": "Exchange", "type": "string", "enum": ["NYSE", "NASDAQ"]},
                "tick": {"$ref": "#/definitions/tickBody"},
            },
            "definitions": {
                "tickBody": {
                    "type": "object",
                    "properties": {"security": {"$anchor": "Security", "type": "string"}},
                    "required": ["security"],
                },
                "sym": {"$ref": "#Security"},
                "loose": {"$anchor": "Loose"},
            },
            "type": "object",
            "properties": {
                "exchange": {"$ref": "#Exchange"},
                "tick": {"$ref": "#/%24defs/tick"},
                "symbol": {"$ref": "#/definitions/sym"},
                "loose": {"$ref": "#/definitions/loose"},
            },
            "required": ["exchange", "tick", "symbol", "loose"],
        }))
        .unwrap();
        let check = |ptrs: &[&str]| {
            let key: Vec<Pointer> = ptrs.iter().map(|p| Pointer::parse(p).unwrap()).collect();
            schema.check_key(&key).map_err(|e| e.to_string())
        };
        assert_eq!(check(&["/exchange", "/tick/security", "/symbol"]), Ok(()));
        assert_eq!(
            schema.types_at(&Pointer::parse("/exchange").unwrap()),
            ["string"]
        );
        assert!(check(&["/loose"]).unwrap_err().contains("unspecified"));

        // Draft 7's anchors are `$id`s of a fragment.
        let schema = Schema::compile(&json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "definitions": {"id": {"$id": "#Id", "type": "integer"}},
            "type": "object",
            "properties": {"id": {"$ref": "#Id"}},
            "required": ["id"],
        }))
        .unwrap();
        let key = [Pointer::parse("/id").unwrap()];
        assert!(schema.check_key(&key).is_ok());
    }
}
