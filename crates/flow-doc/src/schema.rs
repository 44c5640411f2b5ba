//! Collection schemas: compiling, validating documents, and checking collection keys.
//!
//! Schemas default to JSON Schema draft 2019-09, as Flow's do; a `$schema` keyword may choose
//! 2020-12 (or draft 7). Other documents' `$ref`s are not resolved: a schema is
//! self-contained (a catalog's loader bundles the files it references into it), which keeps
//! validation free of I/O.

use super::fast_check::FastCheck;
use super::ptr::{Pointer, Token, percent_decode};
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
    /// Its anchors, for the `$ref`s the key checks follow.
    anchors: Anchors,
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
        let draft = SchemaDraft::of(raw).validator();
        let validator = jsonschema::options()
            .with_draft(draft)
            .build(raw)
            .map_err(|e| SchemaError::Invalid(format_error(&e)))?;
        let plan = Plan::compile(raw, draft)?;
        let anchors = anchors(raw);
        Ok(Schema {
            raw: raw.clone(),
            validator,
            fast: FastCheck::compile_with(raw, &anchors),
            plan,
            anchors,
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
        Pointer::parse(&self.anchors.pointer_of(reference)?)
            .ok()?
            .query(&self.raw)
    }
}

/// Keywords whose value is a subschema (`items` may also be an array of them).
pub const SINGLE_KEYWORDS: &[&str] = &[
    "additionalProperties",
    "unevaluatedProperties",
    "additionalItems",
    "unevaluatedItems",
    "items",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
];
/// Keywords whose value is an array of subschemas.
pub const ARRAY_KEYWORDS: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems", "items"];
/// Keywords whose value maps names to subschemas (draft 7's `dependencies` may also map to
/// arrays of names, which are not schemas).
pub const MAP_KEYWORDS: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
    "dependencies",
];

/// The subschemas directly inside schema object `m`, each by its pointer from `m`
/// (`/properties/a`, `/allOf/0`). Only keywords of JSON Schema are looked in: a `$ref`
/// inside an unknown keyword is no reference.
pub fn child_paths(m: &serde_json::Map<String, Value>) -> Vec<Pointer> {
    let path = |tokens: &[&str]| {
        Pointer(
            tokens
                .iter()
                .map(|t| Token::Property(t.to_string()))
                .collect(),
        )
    };
    let mut out = Vec::new();
    for (k, v) in m {
        let k = k.as_str();
        match v {
            Value::Object(_) | Value::Bool(_) if SINGLE_KEYWORDS.contains(&k) => {
                out.push(path(&[k]));
            }
            Value::Array(items) if ARRAY_KEYWORDS.contains(&k) => {
                for i in 0..items.len() {
                    out.push(path(&[k, &i.to_string()]));
                }
            }
            Value::Object(map) if MAP_KEYWORDS.contains(&k) => {
                for (name, sub) in map {
                    if sub.is_object() || sub.is_boolean() {
                        out.push(path(&[k, name]));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The draft a schema is written for, by its `$schema`: 2019-09 when it names none, as
/// Flow's schemas default to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SchemaDraft {
    D4,
    D6,
    D7,
    D2019,
    D2020,
}

impl SchemaDraft {
    pub fn of(schema: &Value) -> SchemaDraft {
        match schema.get("$schema").and_then(Value::as_str) {
            Some(s) if s.contains("2020-12") => SchemaDraft::D2020,
            Some(s) if s.contains("draft-07") => SchemaDraft::D7,
            Some(s) if s.contains("draft-06") => SchemaDraft::D6,
            Some(s) if s.contains("draft-04") => SchemaDraft::D4,
            _ => SchemaDraft::D2019,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SchemaDraft::D4 => "draft 4",
            SchemaDraft::D6 => "draft 6",
            SchemaDraft::D7 => "draft 7",
            SchemaDraft::D2019 => "draft 2019-09",
            SchemaDraft::D2020 => "draft 2020-12",
        }
    }

    /// Drafts 4 to 7, whose anchors are `$id`s of a fragment (`$id: "#Name"`).
    pub fn is_legacy(self) -> bool {
        matches!(self, SchemaDraft::D4 | SchemaDraft::D6 | SchemaDraft::D7)
    }

    fn validator(self) -> Draft {
        match self {
            SchemaDraft::D4 => Draft::Draft4,
            SchemaDraft::D6 => Draft::Draft6,
            SchemaDraft::D7 => Draft::Draft7,
            SchemaDraft::D2019 => Draft::Draft201909,
            SchemaDraft::D2020 => Draft::Draft202012,
        }
    }
}

/// The anchors a schema declares, as its draft means them: `$anchor` and `$dynamicAnchor`
/// (2019-09 and later), or an `$id` of a fragment `#Name` (drafts 4 to 7); and the `$id`s of
/// the resources it embeds below its root.
#[derive(Debug, Default, Clone)]
pub struct Anchors {
    /// Each anchor and the pointer of the subschema declaring it; None where the name is
    /// declared more than once (which one a validator takes is not for us to guess).
    map: BTreeMap<String, Option<String>>,
    /// The `$id`s (without a fragment) of subschemas below the root: resources of their own,
    /// against which the references inside them resolve (so a reference there is not simply
    /// resolved from the root).
    pub ids: Vec<String>,
}

impl Anchors {
    /// The pointer of anchor `name`, if it is declared exactly once.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name)?.as_deref()
    }

    /// Whether anchor `name` is declared more than once.
    pub fn is_ambiguous(&self, name: &str) -> bool {
        matches!(self.map.get(name), Some(None))
    }

    /// The pointer (from the root) a `$ref` of the document names: `#/...` percent-decoded,
    /// or `#Name` an anchor declared once. None for a reference to another document.
    pub fn pointer_of(&self, reference: &str) -> Option<String> {
        let fragment = percent_decode(reference.strip_prefix('#')?);
        if fragment.is_empty() || fragment.starts_with('/') {
            Some(fragment)
        } else {
            self.get(&fragment).map(str::to_string)
        }
    }
}

/// The anchors of `schema` (see `Anchors`), found through the keywords of JSON Schema.
pub fn anchors(schema: &Value) -> Anchors {
    fn walk(v: &Value, at: &str, legacy: bool, root: bool, out: &mut Anchors) {
        let Value::Object(m) = v else { return };
        let mut declare = |a: &str| {
            out.map
                .entry(a.to_string())
                .and_modify(|p| *p = None)
                .or_insert_with(|| Some(at.to_string()));
        };
        if let Some(id) = m.get("$id").and_then(Value::as_str) {
            let (base, fragment) = id.split_once('#').unwrap_or((id, ""));
            if legacy && !fragment.is_empty() && !fragment.starts_with('/') {
                declare(fragment);
            }
            if !base.is_empty() && !root {
                out.ids.push(base.to_string());
            }
        }
        if !legacy {
            for kw in ["$anchor", "$dynamicAnchor"] {
                if let Some(a) = m.get(kw).and_then(Value::as_str) {
                    declare(a);
                }
            }
        }
        for path in child_paths(m) {
            if let Some(c) = path.query(v) {
                walk(c, &format!("{at}{path}"), legacy, false, out);
            }
        }
    }
    let mut out = Anchors::default();
    walk(
        schema,
        "",
        SchemaDraft::of(schema).is_legacy(),
        true,
        &mut out,
    );
    out
}

/// Whether reference `base` names the resource of `$id` `id`: written alike, or one a
/// relative form of the other.
pub fn same_resource(id: &str, base: &str) -> bool {
    id == base || id.ends_with(&format!("/{base}")) || base.ends_with(&format!("/{id}"))
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
