//! The reduce plan: a schema's `reduce` annotations compiled once into a graph of nodes, so
//! that reducing a document does not evaluate JSON Schema annotations from scratch.
//!
//! Each node stands for one subschema (named by its location in the schema, `#/properties/a`).
//! Edges say how subschemas apply: *in place* at the same document location (`allOf`, `$ref`),
//! *conditionally* in place (`anyOf`, `oneOf`, `if`/`then`/`else`, `dependentSchemas`,
//! `contains`), or at a child location (`properties`, `items`, ...). The set of nodes that apply
//! at a document location is its *scope*; the scope's `reduce` annotations give the strategy.
//!
//! Annotation semantics: a strategy applies only if the subschema carrying it validated the
//! location of the right-hand document. Documents are valid as a whole (the combiner validates
//! each one it is given), so unconditional subschemas validated; conditional branches are
//! decided by validating the branch against the value at the location, with a validator
//! compiled for that branch alone. Branches that carry no annotation anywhere beneath are
//! dropped at compile time, so they cost nothing per document.

use super::super::ptr::{Pointer, child, percent_decode, pointer_fragment};
use super::super::schema::{ARRAY_KEYWORDS, MAP_KEYWORDS, SINGLE_KEYWORDS, same_resource};
use jsonschema::{Draft, Validator};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Why a schema's annotations do not compile to a plan. `schema::SchemaError` takes it over
/// with the same messages, so this module needs nothing of `schema`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("invalid JSON schema: {0}")]
    Invalid(String),
    /// A `reduce` annotation that is not understood, at a schema location such as
    /// `#/properties/total`.
    #[error("at schema location {location}: {reason}")]
    Reduce { location: String, reason: String },
}

pub(crate) type NodeId = u32;

/// A reduction strategy with its options, as written in a `reduce` annotation.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    LastWriteWins { delete: bool },
    FirstWriteWins,
    Minimize { key: Vec<Pointer> },
    Maximize { key: Vec<Pointer> },
    Sum,
    Append,
    Merge { key: Vec<Pointer>, delete: bool },
    Set { key: Vec<Pointer> },
    JsonSchemaMerge,
}

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::LastWriteWins { .. } => "lastWriteWins",
            Strategy::FirstWriteWins => "firstWriteWins",
            Strategy::Minimize { .. } => "minimize",
            Strategy::Maximize { .. } => "maximize",
            Strategy::Sum => "sum",
            Strategy::Append => "append",
            Strategy::Merge { .. } => "merge",
            Strategy::Set { .. } => "set",
            Strategy::JsonSchemaMerge => "jsonSchemaMerge",
        }
    }

    /// Whether a full reduction removes the location (and an associative one must defer).
    pub fn deletes(&self) -> bool {
        matches!(
            self,
            Strategy::LastWriteWins { delete: true } | Strategy::Merge { delete: true, .. }
        )
    }

    fn parse(location: &str, annotation: &Value) -> Result<Strategy, PlanError> {
        let fail = |reason: String| PlanError::Reduce {
            location: location.to_string(),
            reason,
        };
        let Some(obj) = annotation.as_object() else {
            return Err(fail(format!(
                "`reduce` must be an object, not {annotation}"
            )));
        };
        let Some(name) = obj.get("strategy").and_then(Value::as_str) else {
            return Err(fail("`reduce` must have a `strategy` string".to_string()));
        };
        let allowed: &[&str] = match name {
            "lastWriteWins" => &["delete"],
            "merge" => &["key", "delete"],
            "minimize" | "maximize" | "set" => &["key"],
            "firstWriteWins" | "sum" | "append" | "jsonSchemaMerge" => &[],
            other => return Err(fail(format!("unknown reduce strategy {other:?}"))),
        };
        if let Some(option) = obj
            .keys()
            .find(|k| *k != "strategy" && !allowed.contains(&k.as_str()))
        {
            return Err(fail(format!(
                "unknown option {option:?} of strategy {name:?}"
            )));
        }
        let delete = match obj.get("delete") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(fail(format!(
                    "option `delete` must be a boolean, not {other}"
                )));
            }
        };
        let key = match obj.get("key") {
            None => Vec::new(),
            Some(Value::Array(ptrs)) => {
                let mut key = Vec::with_capacity(ptrs.len());
                for p in ptrs {
                    let s = p.as_str().ok_or_else(|| {
                        fail(format!("option `key` must hold JSON pointers, not {p}"))
                    })?;
                    key.push(Pointer::parse(s).map_err(|e| fail(format!("option `key`: {e}")))?);
                }
                key
            }
            Some(other) => {
                return Err(fail(format!(
                    "option `key` must be an array of JSON pointers, not {other}"
                )));
            }
        };
        Ok(match name {
            "lastWriteWins" => Strategy::LastWriteWins { delete },
            "firstWriteWins" => Strategy::FirstWriteWins,
            "minimize" => Strategy::Minimize { key },
            "maximize" => Strategy::Maximize { key },
            "sum" => Strategy::Sum,
            "append" => Strategy::Append,
            "merge" => Strategy::Merge { key, delete },
            "set" => Strategy::Set { key },
            _ => Strategy::JsonSchemaMerge,
        })
    }
}

/// A conditional in-place applicator whose target applies only for some values.
pub(crate) enum Branch {
    /// `anyOf`/`oneOf` branches and `contains`: applies if `validator` accepts the value.
    When { validator: Validator, then: NodeId },
    /// `if` applies (with `then`) if it validates, else `else` applies.
    IfThenElse {
        validator: Validator,
        cond: NodeId,
        then: Option<NodeId>,
        otherwise: Option<NodeId>,
    },
    /// `dependentSchemas`: applies if the value is an object with `property`.
    Dependent { property: String, then: NodeId },
}

#[derive(Default)]
pub(crate) struct Node {
    /// Where the subschema is, as a URI fragment (`#/properties/a`), for error messages.
    pub location: String,
    pub strategy: Option<u16>,
    pub in_place: Vec<NodeId>,
    pub branches: Vec<Branch>,
    pub props: BTreeMap<String, NodeId>,
    pub patterns: Vec<(Validator, NodeId)>,
    pub additional: Option<NodeId>,
    pub unevaluated_props: Option<NodeId>,
    pub tuple: Vec<NodeId>,
    pub rest_items: Option<NodeId>,
    pub unevaluated_items: Option<NodeId>,
    /// A synthetic node holding `contains` as a `When` branch, seeded at every item.
    pub contains: Option<NodeId>,
}

/// The compiled plan of one schema.
pub struct Plan {
    pub(crate) nodes: Vec<Node>,
    pub(crate) strategies: Vec<Strategy>,
    /// Per node: the node and everything it applies unconditionally in place, sorted.
    pub(crate) closures: Vec<Vec<NodeId>>,
    /// Per node: whether its closure has conditional branches (its scope depends on values).
    pub(crate) dynamic: Vec<bool>,
    /// Whether any strategy is reachable from the root at all.
    pub(crate) annotated: bool,
    /// Whether any conditional branch survived pruning: associative reductions then check that
    /// the branches chosen for lhs, rhs and result agree (see `mod.rs`).
    pub(crate) conditional: bool,
    pub(crate) root: NodeId,
    /// The plan compiled for walking, where it has no conditional branches (`shape.rs`).
    pub(crate) shapes: Option<super::shape::Shapes>,
}

/// A branch before its validator is compiled (validators are built only for kept branches).
enum RawBranch {
    When {
        ptr: String,
        then: NodeId,
    },
    IfThenElse {
        ptr: String,
        cond: NodeId,
        then: Option<NodeId>,
        otherwise: Option<NodeId>,
    },
    Dependent {
        property: String,
        then: NodeId,
    },
}

/// The base URI the root schema is registered under, so a branch validator can `$ref` into it.
const ROOT_URI: &str = "urn:flow:schema";

struct Compiler<'s> {
    root: &'s Value,
    draft: Draft,
    strategies: Vec<Strategy>,
    annotations: HashMap<String, u16>,
    ids: Vec<(String, String)>,
    anchors: HashMap<String, String>,
    uses_unevaluated: bool,
    nodes: Vec<Node>,
    raw_branches: Vec<Vec<RawBranch>>,
    raw_patterns: Vec<Vec<(String, NodeId)>>,
    by_ptr: HashMap<String, NodeId>,
    queue: Vec<(NodeId, String, String)>,
}

impl Plan {
    /// Compile the plan of `raw`, a schema that `jsonschema` already accepted for `draft`.
    pub fn compile(raw: &Value, draft: Draft) -> Result<Plan, PlanError> {
        let mut c = Compiler {
            root: raw,
            draft,
            strategies: Vec::new(),
            annotations: HashMap::new(),
            ids: Vec::new(),
            anchors: HashMap::new(),
            uses_unevaluated: false,
            nodes: Vec::new(),
            raw_branches: Vec::new(),
            raw_patterns: Vec::new(),
            by_ptr: HashMap::new(),
            queue: Vec::new(),
        };
        c.scan(raw, "")?;
        let root = c.node_for(String::new(), String::new());
        while let Some((id, ptr, resource)) = c.queue.pop() {
            c.build(id, &ptr, resource)?;
        }
        let mut plan = c.finish(root)?;
        plan.shapes = super::shape::Shapes::compile(&plan, raw);
        Ok(plan)
    }
}

impl<'s> Compiler<'s> {
    /// Visit every subschema (reachable or not), checking each `reduce` annotation and
    /// collecting `$id`s and anchors for `$ref` resolution.
    fn scan(&mut self, v: &Value, ptr: &str) -> Result<(), PlanError> {
        let Value::Object(m) = v else { return Ok(()) };
        if let Some(annotation) = m.get("reduce") {
            let strategy = Strategy::parse(&format!("#{ptr}"), annotation)?;
            let index = match self.strategies.iter().position(|s| *s == strategy) {
                Some(i) => i,
                None => {
                    self.strategies.push(strategy);
                    self.strategies.len() - 1
                }
            };
            self.annotations.insert(ptr.to_string(), index as u16);
        }
        if let Some(id) = m.get("$id").and_then(Value::as_str) {
            match id.split_once('#') {
                Some((base, anchor)) if !anchor.is_empty() && !anchor.starts_with('/') => {
                    self.anchors.insert(anchor.to_string(), ptr.to_string());
                    if !base.is_empty() {
                        self.ids.push((base.to_string(), ptr.to_string()));
                    }
                }
                _ => self
                    .ids
                    .push((id.trim_end_matches('#').to_string(), ptr.to_string())),
            }
        }
        for kw in ["$anchor", "$dynamicAnchor"] {
            if let Some(a) = m.get(kw).and_then(Value::as_str) {
                self.anchors.insert(a.to_string(), ptr.to_string());
            }
        }
        if m.contains_key("unevaluatedProperties") || m.contains_key("unevaluatedItems") {
            self.uses_unevaluated = true;
        }
        for kw in SINGLE_KEYWORDS {
            if let Some(s) = m.get(*kw).filter(|s| s.is_object()) {
                self.scan(s, &child(ptr, kw))?;
            }
        }
        for kw in ARRAY_KEYWORDS {
            if let Some(Value::Array(items)) = m.get(*kw) {
                for (i, s) in items.iter().enumerate() {
                    self.scan(s, &child(&child(ptr, kw), &i.to_string()))?;
                }
            }
        }
        for kw in MAP_KEYWORDS {
            if let Some(Value::Object(map)) = m.get(*kw) {
                for (name, s) in map {
                    self.scan(s, &child(&child(ptr, kw), name))?;
                }
            }
        }
        Ok(())
    }

    fn node_for(&mut self, ptr: String, resource: String) -> NodeId {
        if let Some(id) = self.by_ptr.get(&ptr) {
            return *id;
        }
        let id = self.nodes.len() as NodeId;
        self.nodes.push(Node {
            location: format!("#{ptr}"),
            ..Default::default()
        });
        self.raw_branches.push(Vec::new());
        self.raw_patterns.push(Vec::new());
        self.by_ptr.insert(ptr.clone(), id);
        self.queue.push((id, ptr, resource));
        id
    }

    fn build(&mut self, id: NodeId, ptr: &str, mut resource: String) -> Result<(), PlanError> {
        let Some(Value::Object(m)) = Pointer::parse(ptr).ok().and_then(|p| p.query(self.root))
        else {
            return Ok(()); // `true`, `false`: no annotations.
        };
        if m.get("$id")
            .and_then(Value::as_str)
            .is_some_and(|i| !i.starts_with('#'))
        {
            resource = ptr.to_string();
        }
        let n = id as usize;
        self.nodes[n].strategy = self.annotations.get(ptr).copied();
        let sub = |c: &mut Self, path: &[&str]| {
            let p = path.iter().fold(ptr.to_string(), |p, t| child(&p, t));
            c.node_for(p, resource.clone())
        };

        let legacy = matches!(self.draft, Draft::Draft4 | Draft::Draft6 | Draft::Draft7);
        for kw in ["$ref", "$recursiveRef", "$dynamicRef"] {
            if let Some(r) = m.get(kw).and_then(Value::as_str)
                && let Some(target) = self.resolve(ptr, r, &resource)?
            {
                let t = self.node_for(target, resource.clone());
                self.nodes[n].in_place.push(t);
            }
        }
        if legacy && m.contains_key("$ref") {
            return Ok(()); // Before 2019-09, `$ref` overrides its siblings.
        }
        if let Some(Value::Array(all)) = m.get("allOf") {
            for i in 0..all.len() {
                let t = sub(self, &["allOf", &i.to_string()]);
                self.nodes[n].in_place.push(t);
            }
        }
        for kw in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = m.get(kw) {
                for i in 0..branches.len() {
                    let then = sub(self, &[kw, &i.to_string()]);
                    let ptr = child(&child(ptr, kw), &i.to_string());
                    self.raw_branches[n].push(RawBranch::When { ptr, then });
                }
            }
        }
        if m.contains_key("if") {
            let cond = sub(self, &["if"]);
            let then = m.contains_key("then").then(|| sub(self, &["then"]));
            let otherwise = m.contains_key("else").then(|| sub(self, &["else"]));
            self.raw_branches[n].push(RawBranch::IfThenElse {
                ptr: child(ptr, "if"),
                cond,
                then,
                otherwise,
            });
        }
        for kw in ["dependentSchemas", "dependencies"] {
            if let Some(Value::Object(deps)) = m.get(kw) {
                for (property, s) in deps {
                    if s.is_object() || s.is_boolean() {
                        let then = sub(self, &[kw, property]);
                        self.raw_branches[n].push(RawBranch::Dependent {
                            property: property.clone(),
                            then,
                        });
                    }
                }
            }
        }
        if let Some(Value::Object(props)) = m.get("properties") {
            for name in props.keys() {
                let t = sub(self, &["properties", name]);
                self.nodes[n].props.insert(name.clone(), t);
            }
        }
        if let Some(Value::Object(patterns)) = m.get("patternProperties") {
            for pattern in patterns.keys() {
                let t = sub(self, &["patternProperties", pattern]);
                self.raw_patterns[n].push((pattern.clone(), t));
            }
        }
        if m.contains_key("additionalProperties") {
            self.nodes[n].additional = Some(sub(self, &["additionalProperties"]));
        }
        if m.contains_key("unevaluatedProperties") {
            self.nodes[n].unevaluated_props = Some(sub(self, &["unevaluatedProperties"]));
        }
        let (tuple_kw, rest_kw) = match (self.draft, m.get("items")) {
            (Draft::Draft202012, _) => ("prefixItems", "items"),
            (_, Some(Value::Array(_))) => ("items", "additionalItems"),
            _ => ("", "items"),
        };
        if let Some(Value::Array(tuple)) = m.get(tuple_kw) {
            for i in 0..tuple.len() {
                let t = sub(self, &[tuple_kw, &i.to_string()]);
                self.nodes[n].tuple.push(t);
            }
        }
        if m.get(rest_kw)
            .is_some_and(|s| s.is_object() || s.is_boolean())
        {
            self.nodes[n].rest_items = Some(sub(self, &[rest_kw]));
        }
        if m.contains_key("unevaluatedItems") {
            self.nodes[n].unevaluated_items = Some(sub(self, &["unevaluatedItems"]));
        }
        if m.contains_key("contains") {
            let then = sub(self, &["contains"]);
            let synthetic = self.nodes.len() as NodeId;
            self.nodes.push(Node {
                location: format!("#{ptr}/contains"),
                ..Default::default()
            });
            self.raw_branches.push(vec![RawBranch::When {
                ptr: child(ptr, "contains"),
                then,
            }]);
            self.raw_patterns.push(Vec::new());
            self.nodes[n].contains = Some(synthetic);
        }
        Ok(())
    }

    /// Resolve a `$ref` to the pointer of its target within the root schema. References to
    /// the JSON Schema meta-schemas resolve to nothing (they carry no annotations).
    fn resolve(
        &self,
        at: &str,
        reference: &str,
        resource: &str,
    ) -> Result<Option<String>, PlanError> {
        let fail = || PlanError::Reduce {
            location: format!("#{at}"),
            reason: format!("cannot resolve $ref {reference:?} within the schema"),
        };
        let (base, fragment) = reference.split_once('#').unwrap_or((reference, ""));
        let resource = if base.is_empty() {
            resource.to_string()
        } else if let Some((_, p)) = self.ids.iter().find(|(id, _)| same_resource(id, base)) {
            p.clone()
        } else if base.contains("json-schema.org/") {
            return Ok(None);
        } else {
            return Err(fail());
        };
        let fragment = percent_decode(fragment);
        let target = if fragment.is_empty() {
            resource
        } else if fragment.starts_with('/') {
            format!("{resource}{fragment}")
        } else {
            self.anchors.get(&fragment).cloned().ok_or_else(fail)?
        };
        match Pointer::parse(&target)
            .ok()
            .and_then(|p| p.query(self.root))
        {
            Some(_) => Ok(Some(target)),
            None => Err(fail()),
        }
    }

    fn finish(mut self, root: NodeId) -> Result<Plan, PlanError> {
        let count = self.nodes.len();
        // Which nodes reach an annotation, by any edge: a fixpoint over a graph with cycles.
        let mut annotated: Vec<bool> = self.nodes.iter().map(|n| n.strategy.is_some()).collect();
        loop {
            let mut changed = false;
            for i in 0..count {
                if annotated[i] {
                    continue;
                }
                let node = &self.nodes[i];
                let mut targets = node
                    .in_place
                    .iter()
                    .chain(node.props.values())
                    .chain(node.tuple.iter())
                    .chain(node.additional.iter())
                    .chain(node.unevaluated_props.iter())
                    .chain(node.rest_items.iter())
                    .chain(node.unevaluated_items.iter())
                    .chain(node.contains.iter())
                    .copied()
                    .collect::<Vec<_>>();
                targets.extend(self.raw_patterns[i].iter().map(|(_, t)| *t));
                for b in &self.raw_branches[i] {
                    match b {
                        RawBranch::When { then, .. } | RawBranch::Dependent { then, .. } => {
                            targets.push(*then)
                        }
                        RawBranch::IfThenElse {
                            cond,
                            then,
                            otherwise,
                            ..
                        } => {
                            targets.push(*cond);
                            targets.extend(then.iter().chain(otherwise.iter()));
                        }
                    }
                }
                if targets.iter().any(|t| annotated[*t as usize]) {
                    annotated[i] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }

        let registry = jsonschema::Registry::new()
            .draft(self.draft)
            .add(ROOT_URI, self.draft.create_resource(self.root.clone()))
            .and_then(|r| r.prepare())
            .map_err(|e| PlanError::Invalid(e.to_string()))?;
        let compile = |ptr: &str, schema: Value| -> Result<Validator, PlanError> {
            jsonschema::options()
                .with_draft(self.draft)
                .with_registry(&registry)
                .build(&schema)
                .map_err(|e| PlanError::Reduce {
                    location: format!("#{ptr}"),
                    reason: e.to_string(),
                })
        };
        let keep = |targets: &[Option<NodeId>]| {
            self.uses_unevaluated || targets.iter().flatten().any(|t| annotated[*t as usize])
        };
        let raw_branches = std::mem::take(&mut self.raw_branches);
        let mut conditional = false;
        for (i, branches) in raw_branches.into_iter().enumerate() {
            for b in branches {
                let branch = match b {
                    RawBranch::When { ptr, then } if keep(&[Some(then)]) => {
                        let validator = compile(&ptr, branch_ref(&ptr))?;
                        Branch::When { validator, then }
                    }
                    RawBranch::IfThenElse {
                        ptr,
                        cond,
                        then,
                        otherwise,
                    } if keep(&[Some(cond), then, otherwise]) => {
                        let validator = compile(&ptr, branch_ref(&ptr))?;
                        Branch::IfThenElse {
                            validator,
                            cond,
                            then,
                            otherwise,
                        }
                    }
                    RawBranch::Dependent { property, then } if keep(&[Some(then)]) => {
                        Branch::Dependent { property, then }
                    }
                    _ => continue,
                };
                conditional = true;
                self.nodes[i].branches.push(branch);
            }
        }
        let raw_patterns = std::mem::take(&mut self.raw_patterns);
        for (i, patterns) in raw_patterns.into_iter().enumerate() {
            for (pattern, target) in patterns {
                let validator = compile(
                    &self.nodes[i].location[1..],
                    serde_json::json!({"pattern": pattern}),
                )?;
                self.nodes[i].patterns.push((validator, target));
            }
        }

        let mut closures = Vec::with_capacity(count);
        let mut dynamic = Vec::with_capacity(count);
        for i in 0..count {
            let mut closure: Vec<NodeId> = vec![i as NodeId];
            let mut next = 0;
            while next < closure.len() {
                for t in &self.nodes[closure[next] as usize].in_place {
                    if !closure.contains(t) {
                        closure.push(*t);
                    }
                }
                next += 1;
            }
            closure.sort_unstable();
            dynamic.push(
                closure
                    .iter()
                    .any(|c| !self.nodes[*c as usize].branches.is_empty()),
            );
            closures.push(closure);
        }
        Ok(Plan {
            nodes: self.nodes,
            strategies: self.strategies,
            closures,
            dynamic,
            annotated: annotated[root as usize],
            conditional,
            root,
            shapes: None,
        })
    }
}

/// `{"$ref": ...}` into the root schema at `ptr`, the fragment percent-encoded.
fn branch_ref(ptr: &str) -> Value {
    serde_json::json!({ "$ref": format!("{ROOT_URI}{}", pointer_fragment(ptr)) })
}
