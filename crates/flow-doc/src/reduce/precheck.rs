//! A read-only pass that tells, before an associative reduction mutates anything, whether it
//! would have to defer. It follows the reduction's own path through the documents (plans
//! without conditional branches only: their strategies depend on the location alone) and finds
//! the two steps only a full reduction may take: a delete, and a type change under `merge`.
//! Where following the path exactly would mean reducing (duplicate keys within a keyed array),
//! it answers `Unsure`, and the reduction works on copies instead. With shapes (`shape.rs`) it
//! does not look below a location where no reduction can defer.

use super::merge::same_kind;
use super::plan::Plan;
use super::set::{Form, form_of};
use super::shape::{At, Here};
use super::{Loc, Strategy};
use serde_json::Value;
use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Verdict {
    Reduce,
    Unsure,
    Defer,
}

/// The verdict of reducing `rhs` onto `lhs` at a location whose scope comes from `at`.
pub(super) fn verdict(plan: &Plan, at: &At, lhs: Option<&Value>, rhs: &Value) -> Verdict {
    if !plan.may_defer(at) {
        return Verdict::Reduce;
    }
    let scope = plan.here(at, rhs);
    let Ok(strategy) = plan.strategy_of(&scope, &Loc::Root) else {
        return Verdict::Reduce; // The reduction reports the conflict.
    };
    let Some(strategy) = strategy else {
        return Verdict::Reduce;
    };
    if strategy.deletes() {
        return Verdict::Defer;
    }
    match strategy {
        Strategy::Merge { key, .. } => {
            if !(rhs.is_object() || rhs.is_array()) {
                return Verdict::Reduce; // An error, which the reduction reports.
            }
            match lhs {
                Some(l) if !same_kind(l, rhs) => Verdict::Defer,
                _ => children(plan, &scope, key, lhs, rhs),
            }
        }
        Strategy::Minimize { key } | Strategy::Maximize { key } => match lhs {
            Some(l) if !key.is_empty() && super::compare_by_key(key, l, rhs) == Ordering::Equal => {
                let container = |v: &Value| v.is_object() || v.is_array();
                if same_kind(l, rhs) && container(rhs) {
                    children(plan, &scope, &[], lhs, rhs)
                } else if container(l) || container(rhs) {
                    Verdict::Defer
                } else {
                    Verdict::Reduce
                }
            }
            _ => Verdict::Reduce,
        },
        Strategy::Set { key } => set(plan, &scope, key, lhs, rhs),
        _ => Verdict::Reduce,
    }
}

fn worst(verdicts: impl Iterator<Item = Verdict>) -> Verdict {
    let mut out = Verdict::Reduce;
    for v in verdicts {
        if v == Verdict::Defer {
            return v;
        }
        out = out.max(v);
    }
    out
}

/// The children of a merge: properties, items by index, or items matched by key.
fn children(
    plan: &Plan,
    scope: &Here,
    key: &[super::Pointer],
    lhs: Option<&Value>,
    rhs: &Value,
) -> Verdict {
    if !plan.children_may_defer(scope) {
        return Verdict::Reduce;
    }
    match rhs {
        Value::Object(r) => {
            let mut props = plan.props(scope);
            worst(r.iter().filter_map(|(k, v)| {
                // Look the property up in lhs only where a deferral is possible.
                let at = props.at(k);
                let may = plan.may_defer(&at);
                may.then(|| verdict(plan, &at, lhs.and_then(|l| l.get(k)), v))
            }))
        }
        Value::Array(r) if key.is_empty() => {
            worst(r.iter().enumerate().map(|(i, v)| {
                verdict(plan, &plan.item_at(scope, i), lhs.and_then(|l| l.get(i)), v)
            }))
        }
        Value::Array(_) if !plan.items_may_defer(scope) => Verdict::Reduce,
        Value::Array(r) => {
            let Some(ls) = sorted_unique(
                key,
                lhs.and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
            ) else {
                return Verdict::Unsure;
            };
            if sorted_unique(key, r).is_none() {
                return Verdict::Unsure;
            }
            worst(r.iter().enumerate().map(|(i, v)| {
                let l = ls
                    .binary_search_by(|x| super::compare_by_key(key, x, v))
                    .ok()
                    .map(|j| ls[j]);
                verdict(plan, &plan.item_at(scope, i), l, v)
            }))
        }
        _ => Verdict::Reduce,
    }
}

/// Items sorted by key, or None if two share a key.
fn sorted_unique<'v>(key: &[super::Pointer], items: &'v [Value]) -> Option<Vec<&'v Value>> {
    let mut refs: Vec<&Value> = items.iter().collect();
    refs.sort_by(|a, b| super::compare_by_key(key, a, b));
    match refs
        .windows(2)
        .any(|w| super::compare_by_key(key, w[0], w[1]) == Ordering::Equal)
    {
        true => None,
        false => Some(refs),
    }
}

/// A set update: added members deep-merge onto lhs's added members that survive rhs's term.
fn set(
    plan: &Plan,
    scope: &Here,
    key: &[super::Pointer],
    lhs: Option<&Value>,
    rhs: &Value,
) -> Verdict {
    let Ok(form) = form_of(rhs) else {
        return Verdict::Reduce;
    };
    if lhs.is_some_and(|l| form_of(l).is_err()) {
        return Verdict::Reduce;
    }
    let Some(radd) = rhs.get("add") else {
        // Nothing merges; but lhs's own duplicate members would be folded.
        return match (
            form,
            lhs.and_then(|l| l.get("add")).and_then(Value::as_array),
        ) {
            (_, Some(items)) if sorted_unique(key, items).is_none() => Verdict::Unsure,
            _ => Verdict::Reduce,
        };
    };
    let add_scope = plan.here(&plan.prop_at(scope, "add"), radd);
    let ladd = lhs.and_then(|l| l.get("add"));
    let survives = |member: &Value, name: Option<&str>| -> bool {
        let in_term = |t: &Value| match (t, name) {
            (Value::Object(m), Some(n)) => m.contains_key(n),
            (Value::Array(a), _) => a
                .iter()
                .any(|x| super::compare_by_key(key, x, member) == Ordering::Equal),
            _ => false,
        };
        match (rhs.get("intersect"), rhs.get("remove")) {
            (Some(i), _) => in_term(i),
            (_, Some(r)) => !in_term(r),
            _ => true,
        }
    };
    match (radd, form) {
        (Value::Object(r), Some(Form::Object)) => worst(r.iter().map(|(k, v)| {
            let l = ladd.and_then(|l| l.get(k)).filter(|m| survives(m, Some(k)));
            verdict(plan, &plan.prop_at(&add_scope, k), l, v)
        })),
        (Value::Array(r), Some(Form::Array)) => {
            let litems = ladd
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let (Some(ls), Some(_)) = (sorted_unique(key, litems), sorted_unique(key, r)) else {
                return Verdict::Unsure;
            };
            worst(r.iter().enumerate().map(|(i, v)| {
                let l = ls
                    .binary_search_by(|x| super::compare_by_key(key, x, v))
                    .ok()
                    .map(|j| ls[j])
                    .filter(|m| survives(m, None));
                verdict(plan, &plan.item_at(&add_scope, i), l, v)
            }))
        }
        _ => Verdict::Reduce,
    }
}
