//! `set`: the location is an update to a set, an object of terms `add`, `intersect` and
//! `remove` (never both of the last two). Terms are all objects (property = member) or all
//! arrays sorted by `key`.
//!
//! An update is the function `x -> (x op T) ∪ A` (op: keep, `∩ intersect`, `− remove`; `∪`
//! deep-merges equal members). Two updates compose into one of the same form, which is what an
//! associative reduction returns:
//! `(x opL TL ∪ AL) opR TR ∪ AR = x (opL TL then opR TR) ∪ ((AL opR TR) ∪ AR)`, where
//! `−RL then −RR = −(RL ∪ RR)`, `−RL then ∩IR = ∩(IR − RL)`, `∩IL then −RR = ∩(IL − RR)` and
//! `∩IL then ∩IR = ∩(IL ∩ IR)`. A full reduction applies the update to lhs's members and keeps
//! only `add`.

use super::super::ptr::Pointer;
use super::merge::{compare_key, key_of, sort_by_key};
use super::shape::Here;
use super::{Fail, Loc, Out, ReduceError, Walk, show};
use serde_json::{Map, Value};
use std::cmp::Ordering;

#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) enum Form {
    Object,
    Array,
}

/// The members of one term.
enum Members {
    Obj(Map<String, Value>),
    Arr(Vec<Value>),
}

enum Op {
    Keep,
    Intersect(Members),
    Remove(Members),
}

struct Update {
    add: Option<Members>,
    op: Op,
}

/// Check the shape of a set update; its form if it has any term.
pub(super) fn form_of(v: &Value) -> Result<Option<Form>, &'static str> {
    let Value::Object(m) = v else {
        return Err("expects an object of 'add', 'intersect' and 'remove' terms");
    };
    if m.contains_key("intersect") && m.contains_key("remove") {
        return Err("update has both 'intersect' and 'remove'");
    }
    let mut form = None;
    for (k, t) in m {
        if !matches!(k.as_str(), "add" | "intersect" | "remove") {
            return Err("update has a property other than 'add', 'intersect' and 'remove'");
        }
        let f = match t {
            Value::Object(_) => Form::Object,
            Value::Array(_) => Form::Array,
            _ => return Err("terms must be objects or arrays"),
        };
        if form.is_some_and(|g| g != f) {
            return Err("terms must all be objects or all be arrays");
        }
        form = Some(f);
    }
    Ok(form)
}

pub(super) fn reduce(
    w: &Walk,
    loc: &Loc,
    scope: &Here,
    key: &[Pointer],
    lhs: Option<Value>,
    rhs: Value,
) -> Result<Out, Fail> {
    let invalid = |reason: &'static str, lhs: Option<&Value>, rhs: &Value| {
        Fail::from(ReduceError::InvalidSet {
            at: loc.to_string(),
            reason,
            lhs: show(lhs),
            rhs: show(Some(rhs)),
        })
    };
    let rhs_form = form_of(&rhs).map_err(|r| invalid(r, lhs.as_ref(), &rhs))?;
    let lhs_form = match &lhs {
        Some(l) => form_of(l).map_err(|r| invalid(r, Some(l), &rhs))?,
        None => None,
    };
    if let (Some(a), Some(b)) = (lhs_form, rhs_form)
        && a != b
    {
        return Err(invalid(
            "terms must all be objects or all be arrays",
            lhs.as_ref(),
            &rhs,
        ));
    }
    let form = rhs_form.or(lhs_form);

    // The scope of the `add` term, whose members deep-merge by their own strategies.
    let add_at = w.plan.prop_at(scope, "add");
    let add_value = rhs
        .get("add")
        .or_else(|| lhs.as_ref().and_then(|l| l.get("add")))
        .unwrap_or(&Value::Null);
    let add_scope = w.plan.here(&add_at, add_value);
    let add_loc = Loc::Prop(loc, "add");
    let m = Adds {
        w,
        loc: &add_loc,
        scope: &add_scope,
        key,
    };

    // Terms are taken out of the documents' maps and the result written back into one of
    // them (lhs's, or rhs's against nothing), rather than rebuilding a map.
    let (Value::Object(mut rhs_map), lhs_map) = (rhs, lhs) else {
        unreachable!("form_of accepts objects only")
    };
    let rhs = m.take(&mut rhs_map)?;
    let lhs = match lhs_map {
        Some(Value::Object(mut l)) => {
            let update = m.take(&mut l)?;
            Some((update, l))
        }
        _ => None,
    };
    let (out, mut map) = match (lhs, w.full) {
        (lhs, true) => {
            // lhs is the start of history: its own intersect/remove act on nothing.
            let (base, map) = match lhs {
                Some((l, map)) => (l.add, map),
                None => (None, rhs_map),
            };
            let add = m.merge_adds(apply_op(key, base, &rhs.op), rhs.add)?;
            let out = Update {
                add: add.or_else(|| form.map(empty)),
                op: Op::Keep,
            };
            (out, map)
        }
        (None, false) => (rhs, rhs_map),
        (Some((lhs, map)), false) => {
            let add = m.merge_adds(apply_op(key, lhs.add, &rhs.op), rhs.add)?;
            let out = Update {
                add,
                op: compose(key, lhs.op, rhs.op),
            };
            (out, map)
        }
    };
    out.put(&mut map);
    Ok(Out::Keep(Value::Object(map)))
}

fn empty(form: Form) -> Members {
    match form {
        Form::Object => Members::Obj(Map::new()),
        Form::Array => Members::Arr(Vec::new()),
    }
}

/// Apply an intersect or remove term to added members.
fn apply_op(key: &[Pointer], add: Option<Members>, op: &Op) -> Option<Members> {
    Some(match (add?, op) {
        (add, Op::Keep) => add,
        (Members::Obj(mut a), Op::Intersect(Members::Obj(t))) => {
            a.retain(|k, _| t.contains_key(k));
            Members::Obj(a)
        }
        (Members::Obj(mut a), Op::Remove(Members::Obj(t))) => {
            a.retain(|k, _| !t.contains_key(k));
            Members::Obj(a)
        }
        (Members::Arr(mut a), Op::Intersect(Members::Arr(t))) => {
            a.retain(|v| contains(key, t, v));
            Members::Arr(a)
        }
        (Members::Arr(mut a), Op::Remove(Members::Arr(t))) => {
            a.retain(|v| !contains(key, t, v));
            Members::Arr(a)
        }
        (add, _) => add, // Mixed forms were rejected before.
    })
}

/// Compose two intersect/remove terms, lhs's applied first.
fn compose(key: &[Pointer], lhs: Op, rhs: Op) -> Op {
    match (lhs, rhs) {
        (l, Op::Keep) => l,
        (Op::Keep, r) => r,
        (Op::Remove(l), Op::Remove(r)) => Op::Remove(union(key, l, r)),
        (Op::Remove(l), Op::Intersect(r)) => {
            Op::Intersect(apply_op(key, Some(r), &Op::Remove(l)).expect("some"))
        }
        (Op::Intersect(l), Op::Remove(r)) => {
            Op::Intersect(apply_op(key, Some(l), &Op::Remove(r)).expect("some"))
        }
        (Op::Intersect(l), Op::Intersect(r)) => {
            Op::Intersect(apply_op(key, Some(l), &Op::Intersect(r)).expect("some"))
        }
    }
}

fn union(key: &[Pointer], a: Members, b: Members) -> Members {
    match (a, b) {
        (Members::Obj(mut a), Members::Obj(b)) => {
            a.extend(b);
            Members::Obj(a)
        }
        (Members::Arr(a), Members::Arr(b)) => {
            let mut all = a;
            all.extend(b);
            Members::Arr(dedup_sorted(key, all))
        }
        (a, _) => a,
    }
}

/// Sort by key, keeping the last of equal members (term members carry no reduced values).
fn dedup_sorted(key: &[Pointer], items: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    for (_, v) in sort_by_key(key, items) {
        match out.last_mut() {
            Some(last) if compare_key(key, &key_of(key, last), &v) == Ordering::Equal => *last = v,
            _ => out.push(v),
        }
    }
    out
}

fn contains(key: &[Pointer], sorted: &[Value], v: &Value) -> bool {
    sorted
        .binary_search_by(|t| super::compare_by_key(key, t, v))
        .is_ok()
}

/// Context for reducing the members of `add` terms.
struct Adds<'a, 'w> {
    w: &'a Walk<'w>,
    loc: &'a Loc<'a>,
    scope: &'a Here<'w>,
    key: &'a [Pointer],
}

impl Adds<'_, '_> {
    fn member(
        &self,
        loc: &Loc,
        seeds_of: Result<&str, usize>,
        lhs: Option<Value>,
        rhs: Value,
    ) -> Result<Option<Value>, Fail> {
        let at = match seeds_of {
            Ok(name) => self.w.plan.prop_at(self.scope, name),
            Err(index) => self.w.plan.item_at(self.scope, index),
        };
        Ok(match self.w.at(loc, at, lhs, rhs)? {
            Out::Keep(v) => Some(v),
            Out::Removed(_) => None,
        })
    }

    /// Take the terms out of an update whose shape `form_of` accepted, sorting array terms;
    /// duplicate added members fold left to right. The map keeps the terms' slots (holding
    /// null) for `Update::put`.
    fn take(&self, m: &mut Map<String, Value>) -> Result<Update, Fail> {
        let mut update = Update {
            add: None,
            op: Op::Keep,
        };
        for (k, t) in m.iter_mut() {
            let members = match (k.as_str(), std::mem::take(t)) {
                ("add", Value::Array(items)) => Members::Arr(self.fold_sorted(items)?),
                (_, Value::Array(items)) => Members::Arr(dedup_sorted(self.key, items)),
                (_, Value::Object(o)) => Members::Obj(o),
                _ => continue,
            };
            match k.as_str() {
                "add" => update.add = Some(members),
                "intersect" => update.op = Op::Intersect(members),
                _ => update.op = Op::Remove(members),
            }
        }
        Ok(update)
    }

    fn fold_sorted(&self, items: Vec<Value>) -> Result<Vec<Value>, Fail> {
        let mut out: Vec<Value> = Vec::with_capacity(items.len());
        for (i, v) in sort_by_key(self.key, items) {
            match out.last_mut() {
                Some(last)
                    if compare_key(self.key, &key_of(self.key, last), &v) == Ordering::Equal =>
                {
                    let l = std::mem::take(last);
                    match self.member(&Loc::Item(self.loc, i), Err(i), Some(l), v)? {
                        Some(m) => *out.last_mut().expect("present") = m,
                        None => {
                            out.pop();
                        }
                    }
                }
                _ => out.push(v),
            }
        }
        Ok(out)
    }

    /// Deep-merge added members `rhs` onto `lhs`.
    fn merge_adds(
        &self,
        lhs: Option<Members>,
        rhs: Option<Members>,
    ) -> Result<Option<Members>, Fail> {
        let (lhs, rhs) = match (lhs, rhs) {
            (l, None) => return Ok(l),
            (None, Some(r)) => (empty(form(&r)), r),
            (Some(l), Some(r)) => (l, r),
        };
        Ok(Some(match (lhs, rhs) {
            (Members::Obj(mut l), Members::Obj(r)) => {
                use serde_json::map::Entry;
                for (k, v) in r {
                    match l.entry(k) {
                        Entry::Occupied(mut e) => {
                            let prev = std::mem::take(e.get_mut());
                            let loc = Loc::Prop(self.loc, e.key());
                            match self.member(&loc, Ok(e.key()), Some(prev), v)? {
                                Some(m) => *e.get_mut() = m,
                                None => drop(e.remove()),
                            }
                        }
                        Entry::Vacant(e) => {
                            let loc = Loc::Prop(self.loc, e.key());
                            if let Some(m) = self.member(&loc, Ok(e.key()), None, v)? {
                                e.insert(m);
                            }
                        }
                    }
                }
                Members::Obj(l)
            }
            (Members::Arr(l), Members::Arr(r)) => {
                let mut out = Vec::with_capacity(l.len() + r.len());
                let mut l = l.into_iter().peekable();
                for (i, v) in r.into_iter().enumerate() {
                    let k = key_of(self.key, &v);
                    while let Some(x) =
                        l.next_if(|x| compare_key(self.key, &k, x) == Ordering::Greater)
                    {
                        out.push(x);
                    }
                    let prev = l.next_if(|x| compare_key(self.key, &k, x) == Ordering::Equal);
                    out.extend(self.member(&Loc::Item(self.loc, i), Err(i), prev, v)?);
                }
                out.extend(l);
                Members::Arr(out)
            }
            (l, _) => l,
        }))
    }
}

fn form(m: &Members) -> Form {
    match m {
        Members::Obj(_) => Form::Object,
        Members::Arr(_) => Form::Array,
    }
}

impl Members {
    fn into_value(self) -> Value {
        match self {
            Members::Obj(m) => Value::Object(m),
            Members::Arr(a) => Value::Array(a),
        }
    }
}

impl Update {
    /// Write the update into the map its terms were taken from (or any map of terms): into
    /// the slots it has, then whatever has no slot.
    fn put(self, m: &mut Map<String, Value>) {
        let mut terms = match self.op {
            Op::Keep => [("add", self.add), ("intersect", None), ("remove", None)],
            Op::Intersect(t) => [("add", self.add), ("intersect", Some(t)), ("remove", None)],
            Op::Remove(t) => [("add", self.add), ("intersect", None), ("remove", Some(t))],
        };
        let mut emptied = false;
        for (k, slot) in m.iter_mut() {
            match terms.iter_mut().find(|(name, _)| *name == k.as_str()) {
                Some((_, term @ Some(_))) => {
                    *slot = term.take().expect("some").into_value();
                }
                _ => emptied = true,
            }
        }
        if emptied {
            m.retain(|_, slot| !slot.is_null());
        }
        for (name, term) in terms {
            if let Some(t) = term {
                m.insert(name.to_string(), t.into_value());
            }
        }
    }
}
