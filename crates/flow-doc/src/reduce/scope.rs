//! Scopes at run time: which plan nodes apply at a document location, and what strategy they
//! give. A location's *seeds* come from its parent's scope and its property name or item
//! index; expanding the seeds with the value at the location adds what they apply in place,
//! including the conditional branches that the value validates.

use super::plan::{Branch, NodeId, Plan};
use super::{Loc, ReduceError, Strategy};
use serde_json::Value;

/// The seeds of a location: the nodes that apply there before in-place expansion.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Seeds {
    Empty,
    One(NodeId),
    Many(Vec<NodeId>),
}

impl Seeds {
    /// Add a node; only a second one allocates.
    fn push(&mut self, n: NodeId) {
        *self = match std::mem::replace(self, Seeds::Empty) {
            Seeds::Empty => Seeds::One(n),
            Seeds::One(m) if m == n => Seeds::One(m),
            Seeds::One(m) => Seeds::Many(vec![m, n]),
            Seeds::Many(mut v) => {
                v.push(n);
                Seeds::Many(v)
            }
        }
    }

    fn finish(self) -> Seeds {
        match self {
            Seeds::Many(mut v) => {
                v.sort_unstable();
                v.dedup();
                if v.len() == 1 {
                    Seeds::One(v[0])
                } else {
                    Seeds::Many(v)
                }
            }
            other => other,
        }
    }

    fn as_slice(&self) -> &[NodeId] {
        match self {
            Seeds::Empty => &[],
            Seeds::One(n) => std::slice::from_ref(n),
            Seeds::Many(v) => v,
        }
    }
}

/// The nodes that apply at a location, for one value there.
#[derive(Debug, PartialEq)]
pub(crate) enum Scope<'p> {
    Static(&'p [NodeId]),
    Owned(Vec<NodeId>),
}

impl Scope<'_> {
    pub fn nodes(&self) -> &[NodeId] {
        match self {
            Scope::Static(s) => s,
            Scope::Owned(v) => v,
        }
    }
}

impl Plan {
    pub(crate) fn root_seeds(&self) -> Seeds {
        Seeds::One(self.root)
    }

    /// Whether the scope of these seeds depends on the value at the location.
    pub(crate) fn is_dynamic(&self, seeds: &Seeds) -> bool {
        seeds.as_slice().iter().any(|n| self.dynamic[*n as usize])
    }

    /// The scope of a location holding `v`: the seeds, what they apply in place, and the
    /// conditional branches that `v` validates.
    pub(crate) fn expand<'p>(&'p self, seeds: &Seeds, v: &Value) -> Scope<'p> {
        match seeds {
            Seeds::Empty => return Scope::Static(&[]),
            Seeds::One(n) if !self.dynamic[*n as usize] => {
                return Scope::Static(&self.closures[*n as usize]);
            }
            _ => {}
        }
        let mut out: Vec<NodeId> = Vec::new();
        let mut stack: Vec<NodeId> = seeds.as_slice().to_vec();
        while let Some(n) = stack.pop() {
            for &c in &self.closures[n as usize] {
                if out.contains(&c) {
                    continue;
                }
                out.push(c);
                for b in &self.nodes[c as usize].branches {
                    match b {
                        Branch::When { validator, then } => {
                            if validator.is_valid(v) {
                                stack.push(*then);
                            }
                        }
                        Branch::IfThenElse {
                            validator,
                            cond,
                            then,
                            otherwise,
                        } => {
                            if validator.is_valid(v) {
                                stack.push(*cond);
                                stack.extend(then.iter());
                            } else {
                                stack.extend(otherwise.iter());
                            }
                        }
                        Branch::Dependent { property, then } => {
                            if v.as_object().is_some_and(|m| m.contains_key(property)) {
                                stack.push(*then);
                            }
                        }
                    }
                }
            }
        }
        out.sort_unstable();
        Scope::Owned(out)
    }

    /// The strategy of a scope: None if no annotation applies (which means `lastWriteWins`).
    pub(crate) fn strategy(
        &self,
        scope: &Scope,
        loc: &Loc,
    ) -> Result<Option<&Strategy>, ReduceError> {
        let mut found: Option<(u16, NodeId)> = None;
        for &n in scope.nodes() {
            let Some(s) = self.nodes[n as usize].strategy else {
                continue;
            };
            match found {
                None => found = Some((s, n)),
                Some((f, _)) if f == s => {}
                Some((f, first)) => {
                    return Err(ReduceError::ConflictingStrategies {
                        at: loc.to_string(),
                        first: format!(
                            "'{}' ({})",
                            self.strategies[f as usize].name(),
                            self.nodes[first as usize].location
                        ),
                        second: format!(
                            "'{}' ({})",
                            self.strategies[s as usize].name(),
                            self.nodes[n as usize].location
                        ),
                    });
                }
            }
        }
        Ok(found.map(|(s, _)| &self.strategies[s as usize]))
    }

    /// The seeds of property `name` of an object whose scope is `scope`.
    pub(crate) fn prop_seeds(&self, scope: &Scope, name: &str) -> Seeds {
        self.named_prop_seeds(scope, Some(name))
    }

    /// The seeds of a property that no `properties` of the scope names, where no
    /// `patternProperties` apply: the same for every such name.
    pub(crate) fn unlisted_prop_seeds(&self, scope: &Scope) -> Seeds {
        self.named_prop_seeds(scope, None)
    }

    fn named_prop_seeds(&self, scope: &Scope, name: Option<&str>) -> Seeds {
        let mut seeds = Seeds::Empty;
        let mut evaluated = false;
        let mut name_value: Option<Value> = None;
        for &n in scope.nodes() {
            let node = &self.nodes[n as usize];
            let mut matched = false;
            if let Some(t) = name.and_then(|name| node.props.get(name)) {
                seeds.push(*t);
                matched = true;
            }
            debug_assert!(
                name.is_some() || node.patterns.is_empty(),
                "patterns need names"
            );
            for (pattern, t) in name.map_or(&[][..], |_| &node.patterns[..]) {
                let v = name_value
                    .get_or_insert_with(|| Value::String(name.unwrap_or_default().to_string()));
                if pattern.is_valid(v) {
                    seeds.push(*t);
                    matched = true;
                }
            }
            if !matched && let Some(t) = node.additional {
                seeds.push(t);
                matched = true;
            }
            evaluated |= matched;
        }
        if !evaluated {
            for n in scope.nodes() {
                if let Some(t) = self.nodes[*n as usize].unevaluated_props {
                    seeds.push(t);
                }
            }
        }
        seeds.finish()
    }

    /// The seeds of item `index` of an array whose scope is `scope`.
    pub(crate) fn item_seeds(&self, scope: &Scope, index: usize) -> Seeds {
        let mut seeds = Seeds::Empty;
        let mut evaluated = false;
        for &n in scope.nodes() {
            let node = &self.nodes[n as usize];
            if let Some(t) = node.tuple.get(index) {
                seeds.push(*t);
                evaluated = true;
            } else if let Some(t) = node.rest_items {
                seeds.push(t);
                evaluated = true;
            }
            if let Some(t) = node.contains {
                seeds.push(t);
            }
        }
        if !evaluated {
            for n in scope.nodes() {
                if let Some(t) = self.nodes[*n as usize].unevaluated_items {
                    seeds.push(t);
                }
            }
        }
        seeds.finish()
    }
}
