//! Reductions: combining an older document (lhs) with a newer one (rhs) of the same key, as the
//! schema's `reduce` annotations say (REDUCTIONS.md).
//!
//! Entry point: [`Plan::reduce`] (callers use `Schema::reduce`, which holds the plan compiled
//! with the schema). A reduction is *full* when lhs is known to be the first document of its
//! key, else *associative*. What a caller gets back:
//!
//! - [`Reduced::Doc`]: the combined document.
//! - [`Reduced::Deleted`]: only in a full reduction, when the rhs deletes the whole document
//!   (`delete: true` at the root). It holds the rhs as the tombstone; a further document of the
//!   key reduces against nothing.
//! - [`Reduced::Deferred`]: only in an associative reduction, when a step is valid only in a
//!   full one (a delete, a type change under `merge`, or conditional branches that would choose
//!   differently for the combined document). Both documents come back unchanged, in order; keep
//!   them apart until a full reduction is possible. With no lhs, a deferral returns the rhs as
//!   `Doc`, unchanged.
//!
//! How associativity is kept: each strategy is associative on its own, so combining two
//! documents is safe when the same strategies apply to lhs, rhs and result at every location.
//! Without conditional branches strategies depend only on the location, and the unsafe steps
//! are deletes and type changes, which a read-only pre-pass (`precheck.rs`) finds before the
//! reduction mutates anything. With conditional branches, the reduction also compares the
//! branches chosen for lhs, rhs and result at each location where they can differ, working on
//! copies so it can give the originals back.

mod merge;
mod plan;
mod precheck;
mod schema_merge;
mod scope;
mod set;
mod shape;
mod sum;

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_annotations;
#[cfg(test)]
mod tests_examples;
#[cfg(test)]
mod tests_keyed;
#[cfg(test)]
mod tests_merge;
#[cfg(test)]
pub(crate) mod tests_props;
#[cfg(test)]
mod tests_shapes;

use super::compare::{compare, compare_by_key};
use super::ptr::Pointer;
pub use plan::{Plan, PlanError, Strategy};
use serde_json::Value;
use shape::{At, Here};
use std::cmp::Ordering;
use std::fmt;

/// RFC 7396 JSON merge patch as reduce annotations, for a schema's `$defs`: objects merge,
/// `null` deletes the location (the whole document, at the root), anything else replaces.
/// Use it with `"$ref": "#/$defs/mergePatch"` where documents are patches.
pub const MERGE_PATCH_DEFS: &str = r##"{
  "mergePatch": {
    "if": {"type": "object"},
    "then": {
      "reduce": {"strategy": "merge"},
      "additionalProperties": {"$ref": "#/$defs/mergePatch"}
    },
    "else": {
      "if": {"type": "null"},
      "then": {"reduce": {"strategy": "lastWriteWins", "delete": true}}
    }
  }
}"##;

/// The outcome of one reduction; see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub enum Reduced {
    Doc(Value),
    Deleted(Value),
    Deferred { lhs: Value, rhs: Value },
}

/// Why two documents cannot be reduced. Each names the document location and both values.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReduceError {
    #[error("at {at}: '{strategy}' strategy expects {expected} (lhs {lhs}, rhs {rhs})")]
    UnexpectedType {
        at: String,
        strategy: &'static str,
        expected: &'static str,
        lhs: String,
        rhs: String,
    },
    #[error("at {at}: 'sum' overflows (lhs {lhs}, rhs {rhs})")]
    SumOverflow {
        at: String,
        lhs: String,
        rhs: String,
    },
    #[error("at {at}: conflicting strategies {first} and {second} apply")]
    ConflictingStrategies {
        at: String,
        first: String,
        second: String,
    },
    #[error("at {at}: 'set' {reason} (lhs {lhs}, rhs {rhs})")]
    InvalidSet {
        at: String,
        reason: &'static str,
        lhs: String,
        rhs: String,
    },
    /// A defect guard: the pre-pass missed a deferral that the reduction then met.
    #[error(
        "at {at}: documents cannot be combined associatively, and this was not detected in advance"
    )]
    UndetectedDeferral { at: String },
}

/// Longest rendering of a value inside an error message.
const VALUE_CHARS_MAX: usize = 80;

/// Render an optional value for an error message: compact JSON, truncated.
pub(crate) fn show(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "absent".to_string();
    };
    let s = v.to_string();
    if s.chars().count() <= VALUE_CHARS_MAX {
        return s;
    }
    let mut t: String = s.chars().take(VALUE_CHARS_MAX).collect();
    t.push('…');
    t
}

pub(crate) fn type_error(
    loc: &Loc,
    strategy: &'static str,
    expected: &'static str,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
) -> ReduceError {
    ReduceError::UnexpectedType {
        at: loc.to_string(),
        strategy,
        expected,
        lhs: show(lhs),
        rhs: show(rhs),
    }
}

/// A document location, built on the stack while walking and rendered only for errors.
#[derive(Clone, Copy)]
pub(crate) enum Loc<'a> {
    Root,
    Prop(&'a Loc<'a>, &'a str),
    Item(&'a Loc<'a>, usize),
}

impl fmt::Display for Loc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn write(loc: &Loc, f: &mut fmt::Formatter<'_>) -> Result<bool, fmt::Error> {
            match loc {
                Loc::Root => Ok(false),
                Loc::Prop(parent, p) => {
                    write(parent, f)?;
                    write!(f, "/{}", p.replace('~', "~0").replace('/', "~1"))?;
                    Ok(true)
                }
                Loc::Item(parent, i) => {
                    write(parent, f)?;
                    write!(f, "/{i}")?;
                    Ok(true)
                }
            }
        }
        if !write(self, f)? {
            f.write_str("/")?;
        }
        Ok(())
    }
}

/// Why a walk stopped early. The error is boxed: every step of a walk returns a
/// `Result<Out, Fail>`, which an unboxed error would make several times larger to move.
pub(crate) enum Fail {
    Error(Box<ReduceError>),
    Defer,
}

impl From<ReduceError> for Fail {
    fn from(e: ReduceError) -> Self {
        Fail::Error(Box::new(e))
    }
}

/// The result at one location: a value, or removed by a delete (holding the rhs, which is the
/// tombstone when the location is the root).
pub(crate) enum Out {
    Keep(Value),
    Removed(Value),
}

/// One reduction in progress.
pub(crate) struct Walk<'p> {
    pub plan: &'p Plan,
    pub full: bool,
    /// Compare the scopes of lhs, rhs and result at dynamic locations (conditional plans in
    /// associative reductions).
    pub check: bool,
}

impl Plan {
    /// Whether any `reduce` annotation applies anywhere: if not, documents of one key reduce
    /// to the last of them (`lastWriteWins` at the root).
    pub fn annotated(&self) -> bool {
        self.annotated
    }

    /// Reduce `rhs` onto `lhs` (None: reduce against nothing). `rhs` must be valid against the
    /// schema (the combiner validates every document it is given): strategies of unconditional
    /// subschemas are taken to apply. `lhs` must be valid too, or a reduction of valid
    /// documents: where the schema allows one kind only, a merge takes lhs to be of that kind.
    pub fn reduce(
        &self,
        lhs: Option<Value>,
        rhs: Value,
        full: bool,
    ) -> Result<Reduced, ReduceError> {
        if !self.annotated {
            return Ok(Reduced::Doc(rhs)); // `lastWriteWins` at the root.
        }
        let walk = Walk {
            plan: self,
            full,
            check: !full && self.conditional,
        };
        if full {
            return match walk.at(&Loc::Root, self.root_at(), lhs, rhs) {
                Ok(Out::Keep(doc)) => Ok(Reduced::Doc(doc)),
                Ok(Out::Removed(tombstone)) => Ok(Reduced::Deleted(tombstone)),
                Err(Fail::Error(e)) => Err(*e),
                Err(Fail::Defer) => Err(ReduceError::UndetectedDeferral {
                    at: "/".to_string(),
                }),
            };
        }
        let backup = match walk.check {
            true => Some((lhs.clone(), rhs.clone())),
            false => match precheck::verdict(self, &self.root_at(), lhs.as_ref(), &rhs) {
                precheck::Verdict::Reduce => None,
                precheck::Verdict::Defer => return Ok(deferred(lhs, rhs)),
                precheck::Verdict::Unsure => Some((lhs.clone(), rhs.clone())),
            },
        };
        match walk.at(&Loc::Root, self.root_at(), lhs, rhs) {
            Ok(Out::Keep(doc)) => Ok(Reduced::Doc(doc)),
            Ok(Out::Removed(_)) => Err(ReduceError::UndetectedDeferral {
                at: "/".to_string(),
            }),
            Err(Fail::Error(e)) => Err(*e),
            Err(Fail::Defer) => match backup {
                Some((lhs, rhs)) => Ok(deferred(lhs, rhs)),
                None => Err(ReduceError::UndetectedDeferral {
                    at: "/".to_string(),
                }),
            },
        }
    }
}

fn deferred(lhs: Option<Value>, rhs: Value) -> Reduced {
    match lhs {
        Some(lhs) => Reduced::Deferred { lhs, rhs },
        None => Reduced::Doc(rhs),
    }
}

impl Walk<'_> {
    /// Reduce at one location whose scope comes from `at`.
    pub fn at(&self, loc: &Loc, at: At, lhs: Option<Value>, rhs: Value) -> Result<Out, Fail> {
        let plan = self.plan;
        let seeds = match at {
            // Shapes exist only without conditional branches: there is nothing to check.
            At::Shape(_) => {
                let here = plan.here(&at, &rhs);
                let strategy = plan.strategy_of(&here, loc)?;
                return self.apply(loc, &here, strategy, lhs, rhs);
            }
            At::Seeds(seeds) => seeds,
        };
        let seeds = &seeds;
        let scope = Here::Scope(plan.expand(seeds, &rhs));
        let strategy = plan.strategy_of(&scope, loc)?;
        let mut verify = false;
        if self.check && plan.is_dynamic(seeds) {
            match (strategy, &lhs) {
                // The result is rhs itself, which a later reduction treats as rhs was treated.
                (None | Some(Strategy::LastWriteWins { delete: false }), _) => {}
                // The result is lhs itself; that is what strict order gives unless lhs deleted
                // this location.
                (Some(Strategy::FirstWriteWins), Some(l)) => {
                    let lhs_scope = plan.expand(seeds, l);
                    if plan
                        .strategy(&lhs_scope, loc)?
                        .is_some_and(Strategy::deletes)
                    {
                        return Err(Fail::Defer);
                    }
                }
                (_, Some(l)) => {
                    if plan.expand(seeds, l).nodes() != scope.nodes() {
                        return Err(Fail::Defer);
                    }
                    verify = true;
                }
                (_, None) => verify = true,
            }
        }
        let out = self.apply(loc, &scope, strategy, lhs, rhs)?;
        if verify
            && let Out::Keep(doc) = &out
            && plan.expand(seeds, doc).nodes() != scope.nodes()
        {
            return Err(Fail::Defer);
        }
        Ok(out)
    }

    fn apply(
        &self,
        loc: &Loc,
        scope: &Here,
        strategy: Option<&Strategy>,
        lhs: Option<Value>,
        rhs: Value,
    ) -> Result<Out, Fail> {
        let out = match strategy {
            None | Some(Strategy::LastWriteWins { delete: false }) => rhs,
            Some(s) if s.deletes() => {
                return if self.full {
                    Ok(Out::Removed(rhs))
                } else {
                    Err(Fail::Defer)
                };
            }
            Some(Strategy::FirstWriteWins) => lhs.unwrap_or(rhs),
            Some(Strategy::Minimize { key }) => {
                return self.min_max(loc, scope, key, lhs, rhs, Ordering::Less);
            }
            Some(Strategy::Maximize { key }) => {
                return self.min_max(loc, scope, key, lhs, rhs, Ordering::Greater);
            }
            Some(Strategy::Sum) => sum::sum(loc, lhs, rhs)?,
            Some(Strategy::Append) => append(loc, lhs, rhs)?,
            Some(Strategy::Merge { key, .. }) => {
                return merge::merge(self, loc, scope, key, lhs, rhs);
            }
            Some(Strategy::Set { key }) => return set::reduce(self, loc, scope, key, lhs, rhs),
            Some(Strategy::JsonSchemaMerge) => schema_merge::reduce(loc, lhs, rhs)?,
            Some(Strategy::LastWriteWins { delete: true }) => {
                unreachable!("deleting strategies are handled above")
            }
        };
        Ok(Out::Keep(out))
    }

    /// `minimize` (`keep_lhs` = Less) and `maximize` (`keep_lhs` = Greater).
    fn min_max(
        &self,
        loc: &Loc,
        scope: &Here,
        key: &[Pointer],
        lhs: Option<Value>,
        rhs: Value,
        keep_lhs: Ordering,
    ) -> Result<Out, Fail> {
        let Some(lhs) = lhs else {
            return Ok(Out::Keep(rhs));
        };
        let ord = if key.is_empty() {
            compare(&lhs, &rhs)
        } else {
            compare_by_key(key, &lhs, &rhs)
        };
        if ord == keep_lhs {
            Ok(Out::Keep(lhs))
        } else if ord == Ordering::Equal && !key.is_empty() {
            merge::deep_merge(self, loc, scope, lhs, rhs)
        } else {
            Ok(Out::Keep(rhs)) // Ties take rhs.
        }
    }
}

fn append(loc: &Loc, lhs: Option<Value>, rhs: Value) -> Result<Value, ReduceError> {
    match (lhs, rhs) {
        (None, rhs @ Value::Array(_)) => Ok(rhs),
        // A null lhs stays null: a conditional can turn appends off.
        (Some(Value::Null), Value::Array(_)) => Ok(Value::Null),
        (Some(Value::Array(mut l)), Value::Array(r)) => {
            l.extend(r);
            Ok(Value::Array(l))
        }
        (lhs, rhs) => Err(type_error(
            loc,
            "append",
            "arrays",
            lhs.as_ref(),
            Some(&rhs),
        )),
    }
}
