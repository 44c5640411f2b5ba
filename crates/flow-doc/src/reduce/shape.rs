//! Shapes: the plan once more, compiled for walking. Without conditional branches, the scope of
//! a document location depends on its path alone (property names and item indices), never on
//! values, so every scope that any location can have is known when the schema compiles. Each
//! distinct scope becomes a *shape* holding its strategy, the shapes of its children, and
//! whether an associative reduction there or below can ever defer. A reduction then walks the
//! documents and the shapes in lockstep: a location costs a lookup of its name among its
//! parent's named children, instead of expanding seeds, finding the strategy among the scope's
//! nodes and building the seeds of each child anew.
//!
//! Plans with conditional branches have no shapes and take the general path (`scope.rs`),
//! which decides branches per value. Property names that `patternProperties` must match are
//! also handed to the general path, from the shape of their parent; below such a property the
//! walk goes on with seeds.

use super::super::ptr::Pointer;
use super::plan::{NodeId, Plan, Strategy};
use super::scope::{Scope, Seeds};
use super::{Loc, ReduceError};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

pub(crate) type ShapeId = u32;

/// The shape of the document root.
const ROOT: ShapeId = 0;

/// Most shapes one plan may have. Recursive schemas give one shape per distinct scope, not per
/// depth, so real plans have a handful per annotated location; past this bound (combinations
/// of `allOf` branches that multiply) the plan keeps to the general path.
const SHAPES_MAX: usize = 4096;

pub(crate) struct Shape {
    /// The scope: the plan nodes that apply here, sorted.
    nodes: Vec<NodeId>,
    /// The strategy of the scope, as an index into the plan's strategies.
    strategy: Option<u16>,
    /// Whether two different strategies apply here: an error when a reduction reaches it.
    conflict: bool,
    /// Whether the strategy is `lastWriteWins` without delete (or none): rhs is the result.
    takes_rhs: bool,
    /// Whether a subschema here declares a single container `type` (only objects, or only
    /// arrays), so that every valid document holds the same kind here.
    one_kind: bool,
    /// The shapes of properties that `properties` names, sorted by name (the order of
    /// `serde_json::Map`, so a walk over an object's properties advances through these).
    props: Vec<(String, ShapeId)>,
    /// The shape of any other property; None where `patternProperties` apply, whose patterns
    /// must see each name.
    other: Option<ShapeId>,
    /// The shapes of the first items (`prefixItems`, or `items` as an array), and of the rest.
    tuple: Vec<ShapeId>,
    rest: ShapeId,
    /// Whether an associative reduction at a location of this shape, or below it, can defer
    /// (a delete, a type change under `merge`, a deep merge of unlike values). Where it cannot,
    /// the pre-pass (`precheck.rs`) need not look.
    pub may_defer: bool,
    /// Whether any child (property or item) may defer: if not, the pre-pass need not look
    /// below a location of this shape.
    children_may_defer: bool,
}

pub(crate) struct Shapes {
    shapes: Vec<Shape>,
}

/// Where the scope of a location comes from: its shape, or seeds to expand with its value.
#[derive(Clone, Debug)]
pub(crate) enum At {
    Shape(ShapeId),
    Seeds(Seeds),
}

/// The scope of a location, as strategies see it.
pub(crate) enum Here<'p> {
    Shape(&'p Shape),
    Scope(Scope<'p>),
}

impl Here<'_> {
    /// The plan nodes that apply here.
    pub fn nodes(&self) -> &[NodeId] {
        match self {
            Here::Shape(s) => &s.nodes,
            Here::Scope(s) => s.nodes(),
        }
    }
}

impl Shapes {
    /// The shapes of `plan` (compiled from `raw`), or None if it has conditional branches (or
    /// too many shapes).
    pub fn compile(plan: &Plan, raw: &Value) -> Option<Shapes> {
        if plan.conditional {
            return None;
        }
        let mut c = ShapeCompiler {
            plan,
            raw,
            shapes: Vec::new(),
            ids: HashMap::new(),
            queue: Vec::new(),
        };
        let root = c.intern(&plan.root_seeds())?;
        debug_assert_eq!(root, ROOT);
        while let Some(id) = c.queue.pop() {
            c.fill(id)?;
        }
        let mut shapes = Shapes { shapes: c.shapes };
        shapes.find_deferrals(plan);
        Some(shapes)
    }

    pub fn get(&self, id: ShapeId) -> &Shape {
        &self.shapes[id as usize]
    }

    /// Which shapes may defer: a fixpoint, since a `set` may defer only through its members,
    /// a merge of one kind only through its children, and recursive schemas make cycles.
    ///
    /// A merge (or a deep merge of `minimize`/`maximize` with `key`) changes type only where
    /// lhs and rhs hold different kinds. Where the schema allows only objects (or only arrays),
    /// both do: rhs is valid, and so is lhs, or it is a reduction of valid documents, which
    /// keeps the kind at each location (every strategy gives one of its inputs, or a merge of
    /// two of one kind, or fails). That holds only while values stay at their location: an
    /// `append` or a keyed merge moves items to other indices, which tuple schemas (`prefixItems`)
    /// give other shapes, so a plan with tuples keeps every merge as one that may defer.
    fn find_deferrals(&mut self, plan: &Plan) {
        let tuples = self.shapes.iter().any(|s| !s.tuple.is_empty());
        let through_children = |s: &Shape| {
            s.one_kind
                && !tuples
                && matches!(
                    s.strategy.map(|i| &plan.strategies[i as usize]),
                    Some(Strategy::Merge { delete: false, .. })
                        | Some(Strategy::Minimize { .. } | Strategy::Maximize { .. })
                )
        };
        for s in &mut self.shapes {
            s.may_defer = !s.conflict
                && !through_children(s)
                && match s.strategy.map(|i| &plan.strategies[i as usize]) {
                    Some(Strategy::Merge { .. }) => true,
                    Some(Strategy::LastWriteWins { delete }) => *delete,
                    Some(Strategy::Minimize { key } | Strategy::Maximize { key }) => {
                        !key.is_empty()
                    }
                    _ => false,
                };
        }
        loop {
            let mut changed = false;
            for i in 0..self.shapes.len() {
                let s = &self.shapes[i];
                let is_set = matches!(
                    s.strategy.map(|i| &plan.strategies[i as usize]),
                    Some(Strategy::Set { .. })
                );
                if s.may_defer || s.conflict {
                    continue;
                }
                let children_may_defer = if is_set {
                    match s.prop("add") {
                        Some(add) => self.any_child_may_defer(add),
                        None => true,
                    }
                } else if through_children(s) {
                    // `minimize`/`maximize` without `key` never merges.
                    let keyless = matches!(
                        s.strategy.map(|i| &plan.strategies[i as usize]),
                        Some(Strategy::Minimize { key } | Strategy::Maximize { key })
                            if key.is_empty()
                    );
                    !keyless && self.any_child_may_defer(i as ShapeId)
                } else {
                    continue;
                };
                if children_may_defer {
                    self.shapes[i].may_defer = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        for i in 0..self.shapes.len() {
            self.shapes[i].children_may_defer = self.any_child_may_defer(i as ShapeId);
        }
    }

    /// Whether any child of a shape (property or item) may defer.
    fn any_child_may_defer(&self, id: ShapeId) -> bool {
        let s = self.get(id);
        let may = |c: &ShapeId| self.get(*c).may_defer;
        s.props.iter().any(|(_, c)| may(c))
            || s.other.is_none_or(|c| may(&c))
            || s.tuple.iter().any(may)
            || may(&s.rest)
    }
}

impl Shape {
    /// The shape of property `name`; None if the general path must find its seeds.
    pub fn prop(&self, name: &str) -> Option<ShapeId> {
        match self.props.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => Some(self.props[i].1),
            Err(_) => self.other,
        }
    }

    /// The shape of item `index`.
    pub fn item(&self, index: usize) -> ShapeId {
        self.tuple.get(index).copied().unwrap_or(self.rest)
    }

    /// Whether any item may defer.
    pub fn items_may_defer(&self, shapes: &Shapes) -> bool {
        self.tuple.iter().any(|c| shapes.get(*c).may_defer) || shapes.get(self.rest).may_defer
    }
}

struct ShapeCompiler<'p> {
    plan: &'p Plan,
    raw: &'p Value,
    shapes: Vec<Shape>,
    ids: HashMap<Vec<NodeId>, ShapeId>,
    /// Shapes interned but not yet filled in.
    queue: Vec<ShapeId>,
}

impl ShapeCompiler<'_> {
    /// The shape of the scope that `seeds` expand to; None past `SHAPES_MAX`.
    fn intern(&mut self, seeds: &Seeds) -> Option<ShapeId> {
        // The plan has no conditional branches, so the value does not matter.
        let nodes = self.plan.expand(seeds, &Value::Null).nodes().to_vec();
        if let Some(id) = self.ids.get(&nodes) {
            return Some(*id);
        }
        if self.shapes.len() >= SHAPES_MAX {
            return None;
        }
        let id = self.shapes.len() as ShapeId;
        self.ids.insert(nodes.clone(), id);
        self.shapes.push(Shape {
            nodes,
            strategy: None,
            conflict: false,
            takes_rhs: false,
            one_kind: false,
            props: Vec::new(),
            other: None,
            tuple: Vec::new(),
            rest: id,
            may_defer: false,
            children_may_defer: false,
        });
        self.queue.push(id);
        Some(id)
    }

    fn fill(&mut self, id: ShapeId) -> Option<()> {
        let plan = self.plan;
        let nodes = self.shapes[id as usize].nodes.clone();
        let scope = Scope::Static(&nodes);
        let mut strategies = nodes
            .iter()
            .filter_map(|n| plan.nodes[*n as usize].strategy);
        let strategy = strategies.next();
        let conflict = strategies.any(|s| Some(s) != strategy);

        let names: BTreeSet<&String> = nodes
            .iter()
            .flat_map(|n| plan.nodes[*n as usize].props.keys())
            .collect();
        let mut props = Vec::with_capacity(names.len());
        for name in names {
            props.push((name.clone(), self.intern(&plan.prop_seeds(&scope, name))?));
        }
        let patterns = nodes
            .iter()
            .any(|n| !plan.nodes[*n as usize].patterns.is_empty());
        let other = match patterns {
            true => None,
            false => Some(self.intern(&plan.unlisted_prop_seeds(&scope))?),
        };
        let tuple_len = nodes
            .iter()
            .map(|n| plan.nodes[*n as usize].tuple.len())
            .max()
            .unwrap_or(0);
        let mut tuple = Vec::with_capacity(tuple_len);
        for i in 0..tuple_len {
            tuple.push(self.intern(&plan.item_seeds(&scope, i))?);
        }
        // Past every tuple, each node gives its `items` (or nothing) whatever the index.
        let rest = self.intern(&plan.item_seeds(&scope, tuple_len))?;

        let takes_rhs = !conflict
            && matches!(
                strategy.map(|i| &plan.strategies[i as usize]),
                None | Some(Strategy::LastWriteWins { delete: false })
            );
        let one_kind = nodes
            .iter()
            .any(|n| declares_one_kind(self.raw, &plan.nodes[*n as usize].location));
        let s = &mut self.shapes[id as usize];
        s.one_kind = one_kind;
        s.strategy = strategy;
        s.conflict = conflict;
        s.takes_rhs = takes_rhs;
        s.props = props;
        s.other = other;
        s.tuple = tuple;
        s.rest = rest;
        Some(())
    }
}

/// Whether the subschema at `location` (`#/properties/a`) declares `type` to be only
/// `object` or only `array`. A subschema beside a reference is not trusted: before draft
/// 2019-09, `$ref` made validators ignore its siblings.
fn declares_one_kind(raw: &Value, location: &str) -> bool {
    let Some(Value::Object(s)) = location
        .strip_prefix('#')
        .and_then(|p| Pointer::parse(p).ok())
        .and_then(|p| p.query(raw))
    else {
        return false;
    };
    if ["$ref", "$recursiveRef", "$dynamicRef"]
        .iter()
        .any(|k| s.contains_key(*k))
    {
        return false;
    }
    let one = |t: &Value| matches!(t.as_str(), Some("object" | "array"));
    match s.get("type") {
        Some(t @ Value::String(_)) => one(t),
        Some(Value::Array(ts)) => ts.len() == 1 && one(&ts[0]),
        _ => false,
    }
}

impl Plan {
    /// Where the root's scope comes from.
    #[inline]
    pub(crate) fn root_at(&self) -> At {
        match self.shapes {
            Some(_) => At::Shape(ROOT),
            None => At::Seeds(self.root_seeds()),
        }
    }

    /// The scope of a location holding `v`.
    #[inline]
    pub(crate) fn here(&self, at: &At, v: &Value) -> Here<'_> {
        match at {
            At::Shape(id) => Here::Shape(self.shape(*id)),
            At::Seeds(seeds) => Here::Scope(self.expand(seeds, v)),
        }
    }

    #[inline]
    fn shape(&self, id: ShapeId) -> &Shape {
        self.shapes.as_ref().expect("shapes exist").get(id)
    }

    /// The strategy at a location: None if no annotation applies (`lastWriteWins`).
    #[inline]
    pub(crate) fn strategy_of(
        &self,
        here: &Here,
        loc: &Loc,
    ) -> Result<Option<&Strategy>, ReduceError> {
        match here {
            Here::Shape(s) if !s.conflict => Ok(s.strategy.map(|i| &self.strategies[i as usize])),
            Here::Shape(s) => self.strategy(&Scope::Static(&s.nodes), loc),
            Here::Scope(scope) => self.strategy(scope, loc),
        }
    }

    /// Where the scope of property `name` comes from.
    #[inline]
    pub(crate) fn prop_at(&self, here: &Here, name: &str) -> At {
        match here {
            Here::Shape(s) => match s.prop(name) {
                Some(id) => At::Shape(id),
                None => At::Seeds(self.prop_seeds(&Scope::Static(&s.nodes), name)),
            },
            Here::Scope(scope) => At::Seeds(self.prop_seeds(scope, name)),
        }
    }

    /// Where the scopes of an object's properties come from, property by property.
    #[inline]
    pub(crate) fn props<'h, 'p>(&'p self, here: &'h Here<'p>) -> Props<'h, 'p> {
        Props {
            plan: self,
            here,
            next: 0,
        }
    }

    /// Where the scope of item `index` comes from.
    #[inline]
    pub(crate) fn item_at(&self, here: &Here, index: usize) -> At {
        match here {
            Here::Shape(s) => At::Shape(s.item(index)),
            Here::Scope(scope) => At::Seeds(self.item_seeds(scope, index)),
        }
    }

    /// Whether reducing at `at` is known to give rhs itself (`lastWriteWins` without delete,
    /// or no strategy), so that a walk can put rhs in place without reducing.
    #[inline]
    pub(crate) fn takes_rhs(&self, at: &At) -> bool {
        match at {
            At::Shape(id) => self.shape(*id).takes_rhs,
            At::Seeds(_) => false,
        }
    }

    /// Whether an associative reduction at `at` can defer (true where unknown).
    #[inline]
    pub(crate) fn may_defer(&self, at: &At) -> bool {
        match at {
            At::Shape(id) => self.shape(*id).may_defer,
            At::Seeds(_) => true,
        }
    }

    /// Whether any child of a location at `here` can defer (true where unknown).
    #[inline]
    pub(crate) fn children_may_defer(&self, here: &Here) -> bool {
        match here {
            Here::Shape(s) => s.children_may_defer,
            Here::Scope(_) => true,
        }
    }

    /// Whether any item of an array at `here` can defer (true where unknown).
    pub(crate) fn items_may_defer(&self, here: &Here) -> bool {
        match (here, &self.shapes) {
            (Here::Shape(s), Some(shapes)) => s.items_may_defer(shapes),
            _ => true,
        }
    }
}

/// Where the scopes of an object's properties come from, for names asked in ascending order
/// (as a `serde_json::Map` iterates). Each name is first tried against the named child after
/// the last one found, where it is when the object has the properties that the schema names;
/// otherwise it is searched for, so any order gives the right answer.
pub(crate) struct Props<'h, 'p> {
    plan: &'p Plan,
    here: &'h Here<'p>,
    next: usize,
}

impl Props<'_, '_> {
    #[inline]
    pub fn at(&mut self, name: &str) -> At {
        let s = match self.here {
            Here::Shape(s) => s,
            Here::Scope(scope) => return At::Seeds(self.plan.prop_seeds(scope, name)),
        };
        let found = match s.props.get(self.next) {
            Some((n, _)) if n == name => Some(self.next),
            _ => s.props.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok(),
        };
        match (found, s.other) {
            (Some(i), _) => {
                self.next = i + 1;
                At::Shape(s.props[i].1)
            }
            (None, Some(id)) => At::Shape(id),
            (None, None) => At::Seeds(self.plan.prop_seeds(&Scope::Static(&s.nodes), name)),
        }
    }
}
