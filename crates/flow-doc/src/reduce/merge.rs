//! `merge`: objects by property, arrays by index, keyed arrays as a sorted merge-join; and the
//! deep merge that `minimize`/`maximize` with `key` apply to documents of equal keys.

use super::super::ptr::Pointer;
use super::shape::Here;
use super::{Fail, Loc, Out, Walk, type_error};
use serde_json::{Map, Value};
use std::cmp::Ordering;

pub(super) fn merge(
    w: &Walk,
    loc: &Loc,
    scope: &Here,
    key: &[Pointer],
    lhs: Option<Value>,
    rhs: Value,
) -> Result<Out, Fail> {
    if !is_container(&rhs) {
        return Err(type_error(loc, "merge", "objects or arrays", lhs.as_ref(), Some(&rhs)).into());
    }
    let lhs = match lhs {
        Some(l) if same_kind(&l, &rhs) => Some(l),
        // A type change: only a full reduction may drop lhs, leaving rhs against nothing.
        Some(_) if !w.full => return Err(Fail::Defer),
        _ => None,
    };
    containers(w, loc, scope, key, lhs, rhs)
}

/// Deep-merge two documents of equal `minimize`/`maximize` keys: containers of one kind
/// recursively (arrays by index), scalars by taking rhs.
pub(super) fn deep_merge(
    w: &Walk,
    loc: &Loc,
    scope: &Here,
    lhs: Value,
    rhs: Value,
) -> Result<Out, Fail> {
    if same_kind(&lhs, &rhs) && is_container(&rhs) {
        containers(w, loc, scope, &[], Some(lhs), rhs)
    } else if w.full || (!is_container(&lhs) && !is_container(&rhs)) {
        // Scalars take rhs; a type change only in a full reduction.
        Ok(Out::Keep(rhs))
    } else {
        Err(Fail::Defer)
    }
}

/// Merge rhs (an object or array) onto lhs of the same kind, or onto nothing.
fn containers(
    w: &Walk,
    loc: &Loc,
    scope: &Here,
    key: &[Pointer],
    lhs: Option<Value>,
    rhs: Value,
) -> Result<Out, Fail> {
    let out = match rhs {
        Value::Object(mut r) => match lhs {
            Some(Value::Object(l)) if !l.is_empty() => Value::Object(objects(w, loc, scope, l, r)?),
            _ => {
                props_alone(w, loc, scope, &mut r)?;
                Value::Object(r)
            }
        },
        Value::Array(mut r) => {
            let l = match lhs {
                Some(Value::Array(l)) => l,
                _ => Vec::new(),
            };
            if l.is_empty() && (key.is_empty() || strictly_sorted(key, &r)) {
                items_alone(w, loc, scope, &mut r)?;
                Value::Array(r)
            } else if key.is_empty() {
                Value::Array(by_index(w, loc, scope, l, r)?)
            } else {
                Value::Array(keyed(w, loc, scope, key, l, r)?)
            }
        }
        scalar => scalar,
    };
    Ok(Out::Keep(out))
}

/// Reduce each property against nothing, in place: what `objects` gives onto an empty object
/// (each property in order, deleted ones left out), without building a new map.
fn props_alone(
    w: &Walk,
    loc: &Loc,
    scope: &Here,
    rhs: &mut Map<String, Value>,
) -> Result<(), Fail> {
    let mut props = w.plan.props(scope);
    let mut removed: Vec<String> = Vec::new();
    for (k, v) in rhs.iter_mut() {
        let at = props.at(k);
        if w.plan.takes_rhs(&at) {
            continue;
        }
        match w.at(&Loc::Prop(loc, k), at, None, std::mem::take(v))? {
            Out::Keep(x) => *v = x,
            Out::Removed(_) => removed.push(k.clone()),
        }
    }
    for k in removed {
        rhs.remove(&k);
    }
    Ok(())
}

/// Reduce each item against nothing, in place: what `by_index` gives onto an empty array, and
/// `keyed` too where items ascend strictly by key (each item is then its own run).
fn items_alone(w: &Walk, loc: &Loc, scope: &Here, rhs: &mut Vec<Value>) -> Result<(), Fail> {
    let mut removed: Vec<usize> = Vec::new();
    for (i, v) in rhs.iter_mut().enumerate() {
        match item_at(w, loc, scope, i, None, std::mem::take(v))? {
            Some(x) => *v = x,
            None => removed.push(i),
        }
    }
    for i in removed.into_iter().rev() {
        rhs.remove(i);
    }
    Ok(())
}

/// Union of properties; shared ones reduced recursively, rhs-only ones against nothing.
pub(super) fn objects(
    w: &Walk,
    loc: &Loc,
    scope: &Here,
    mut out: Map<String, Value>,
    rhs: Map<String, Value>,
) -> Result<Map<String, Value>, Fail> {
    use serde_json::map::Entry;
    let mut props = w.plan.props(scope);
    for (k, rv) in rhs {
        let at = props.at(&k);
        if w.plan.takes_rhs(&at) {
            out.insert(k, rv); // What reducing gives, with one lookup.
            continue;
        }
        match out.entry(k) {
            Entry::Occupied(mut e) => {
                let lv = std::mem::take(e.get_mut());
                match w.at(&Loc::Prop(loc, e.key()), at, Some(lv), rv)? {
                    Out::Keep(v) => *e.get_mut() = v,
                    Out::Removed(_) => drop(e.remove()),
                }
            }
            Entry::Vacant(e) => {
                if let Out::Keep(v) = w.at(&Loc::Prop(loc, e.key()), at, None, rv)? {
                    e.insert(v);
                }
            }
        }
    }
    Ok(out)
}

/// Item by item; the longer side's tail is kept (rhs's reduced against nothing). An item
/// deleted by a full reduction is dropped.
fn by_index(
    w: &Walk,
    loc: &Loc,
    scope: &Here,
    lhs: Vec<Value>,
    rhs: Vec<Value>,
) -> Result<Vec<Value>, Fail> {
    let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
    let mut lhs = lhs.into_iter();
    for (i, rv) in rhs.into_iter().enumerate() {
        let at = w.plan.item_at(scope, i);
        if let Out::Keep(v) = w.at(&Loc::Item(loc, i), at, lhs.next(), rv)? {
            out.push(v);
        }
    }
    out.extend(lhs);
    Ok(out)
}

/// The key values of a document, missing locations as None.
pub(super) fn key_of(key: &[Pointer], doc: &Value) -> Vec<Option<Value>> {
    key.iter().map(|p| p.query(doc).cloned()).collect()
}

/// Compare extracted key values with a document's, in the total order (missing first).
pub(super) fn compare_key(key: &[Pointer], values: &[Option<Value>], doc: &Value) -> Ordering {
    for (p, v) in key.iter().zip(values) {
        let ord = match (v, p.query(doc)) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(a), Some(b)) => super::compare(a, b),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// Sort items by key, stably, remembering their original indices.
pub(super) fn sort_by_key(key: &[Pointer], items: Vec<Value>) -> Vec<(usize, Value)> {
    let mut items: Vec<(usize, Value)> = items.into_iter().enumerate().collect();
    if !items
        .windows(2)
        .all(|w| super::compare_by_key(key, &w[0].1, &w[1].1) != Ordering::Greater)
    {
        items.sort_by(|a, b| super::compare_by_key(key, &a.1, &b.1));
    }
    items
}

/// Both sides sorted by key; each run of equal keys reduced left to right, lhs items first; the
/// result stays sorted and has one item per key.
pub(super) fn keyed(
    w: &Walk,
    loc: &Loc,
    scope: &Here,
    key: &[Pointer],
    lhs: Vec<Value>,
    rhs: Vec<Value>,
) -> Result<Vec<Value>, Fail> {
    if rhs.len() <= IN_PLACE_ITEMS_MAX && strictly_sorted(key, &rhs) && strictly_sorted(key, &lhs) {
        return keyed_in_place(w, loc, scope, key, lhs, rhs);
    }
    keyed_runs(w, loc, scope, key, lhs, rhs)
}

/// `keyed` for any arrays: run by run.
pub(super) fn keyed_runs(
    w: &Walk,
    loc: &Loc,
    scope: &Here,
    key: &[Pointer],
    lhs: Vec<Value>,
    rhs: Vec<Value>,
) -> Result<Vec<Value>, Fail> {
    let mut out = Vec::with_capacity(lhs.len() + rhs.len());
    let (mut lhs, mut rhs) = (ByKey::new(key, lhs), ByKey::new(key, rhs));
    let (mut l, mut r) = (0, 0);
    while l < lhs.len() || r < rhs.len() {
        // The smallest key of either side starts the next run, which ends where keys change.
        let (l_end, r_end) = {
            let head = match (lhs.get(l), rhs.get(r)) {
                (Some(a), Some(b)) if super::compare_by_key(key, a, b) == Ordering::Greater => b,
                (Some(a), _) => a,
                (None, b) => b.expect("a side has items left"),
            };
            (lhs.run_end(key, l, head), rhs.run_end(key, r, head))
        };
        let mut acc: Option<Value> = None;
        for j in l..l_end {
            let (i, item) = lhs.take(j);
            // The first lhs item is the state; later duplicates fold onto it.
            acc = if j == l {
                Some(item)
            } else {
                item_at(w, loc, scope, i, acc, item)?
            };
        }
        for j in r..r_end {
            let (i, item) = rhs.take(j);
            acc = item_at(w, loc, scope, i, acc, item)?;
        }
        out.extend(acc);
        (l, r) = (l_end, r_end);
    }
    Ok(out)
}

/// Most rhs items that a keyed merge inserts into lhs in place: each insert moves lhs's tail.
const IN_PLACE_ITEMS_MAX: usize = 8;

/// Whether items ascend strictly by key (sorted, no key twice), as reduced arrays do.
fn strictly_sorted(key: &[Pointer], items: &[Value]) -> bool {
    items
        .windows(2)
        .all(|w| super::compare_by_key(key, &w[0], &w[1]) == Ordering::Less)
}

/// `keyed` where both sides ascend strictly by key, and rhs is short: every run of equal keys
/// has at most one item of each side, so each rhs item reduces onto the lhs item of its key
/// (found by binary search) or against nothing, in key order, as `keyed` would; lhs is kept
/// and the result written into it.
fn keyed_in_place(
    w: &Walk,
    loc: &Loc,
    scope: &Here,
    key: &[Pointer],
    mut lhs: Vec<Value>,
    rhs: Vec<Value>,
) -> Result<Vec<Value>, Fail> {
    let mut from = 0;
    for (i, item) in rhs.into_iter().enumerate() {
        let at = from
            + lhs[from..]
                .partition_point(|l| super::compare_by_key(key, l, &item) == Ordering::Less);
        let found = lhs
            .get(at)
            .is_some_and(|l| super::compare_by_key(key, l, &item) == Ordering::Equal);
        let prev = found.then(|| std::mem::take(&mut lhs[at]));
        match (item_at(w, loc, scope, i, prev, item)?, found) {
            (Some(v), true) => lhs[at] = v,
            (Some(v), false) => lhs.insert(at, v),
            (None, true) => {
                lhs.remove(at);
                from = at;
                continue;
            }
            (None, false) => {
                from = at;
                continue;
            }
        }
        from = at + 1;
    }
    Ok(lhs)
}

/// Items in key order (stable), each with its original index. Items already in order, as
/// reduced arrays are, are neither moved nor given an index array.
struct ByKey {
    items: Vec<Value>,
    order: Option<Vec<usize>>,
}

impl ByKey {
    fn new(key: &[Pointer], items: Vec<Value>) -> ByKey {
        let sorted = items
            .windows(2)
            .all(|w| super::compare_by_key(key, &w[0], &w[1]) != Ordering::Greater);
        let order = (!sorted).then(|| {
            let mut order: Vec<usize> = (0..items.len()).collect();
            order.sort_by(|a, b| super::compare_by_key(key, &items[*a], &items[*b]));
            order
        });
        ByKey { items, order }
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn index(&self, j: usize) -> usize {
        self.order.as_ref().map_or(j, |o| o[j])
    }

    /// The `j`th item in key order.
    fn get(&self, j: usize) -> Option<&Value> {
        (j < self.len()).then(|| &self.items[self.index(j)])
    }

    /// Where the run of items from `from` with the key of `head` ends.
    fn run_end(&self, key: &[Pointer], from: usize, head: &Value) -> usize {
        let mut end = from;
        while self
            .get(end)
            .is_some_and(|v| super::compare_by_key(key, head, v) == Ordering::Equal)
        {
            end += 1;
        }
        end
    }

    /// Move out the `j`th item in key order, with its original index.
    fn take(&mut self, j: usize) -> (usize, Value) {
        let i = self.index(j);
        (i, std::mem::take(&mut self.items[i]))
    }
}

fn item_at(
    w: &Walk,
    loc: &Loc,
    scope: &Here,
    i: usize,
    lhs: Option<Value>,
    rhs: Value,
) -> Result<Option<Value>, Fail> {
    let at = w.plan.item_at(scope, i);
    if w.plan.takes_rhs(&at) {
        return Ok(Some(rhs));
    }
    Ok(match w.at(&Loc::Item(loc, i), at, lhs, rhs)? {
        Out::Keep(v) => Some(v),
        Out::Removed(_) => None,
    })
}

fn is_container(v: &Value) -> bool {
    matches!(v, Value::Object(_) | Value::Array(_))
}

pub(super) fn same_kind(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}
