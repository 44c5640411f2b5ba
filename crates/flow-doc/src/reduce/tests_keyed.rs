//! Keyed `merge` in place (both sides strictly sorted, rhs short) against the run-by-run merge
//! that handles any arrays: the same results, errors and deferrals on random arrays.

use super::merge::{keyed, keyed_runs};
use super::{Fail, Loc, Plan, ReduceError, Walk};
use crate::ptr::Pointer;
use jsonschema::Draft;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Items merge by `/id`: `n` sums (a string is a type error), `d` deletes the item.
fn plan() -> Plan {
    let schema = json!({
        "reduce": {"strategy": "merge", "key": ["/id"]},
        "items": {
            "reduce": {"strategy": "merge"},
            "properties": {
                "n": {"reduce": {"strategy": "sum"}},
                "d": {"reduce": {"strategy": "lastWriteWins", "delete": true}},
            },
        },
    });
    Plan::compile(&schema, Draft::Draft201909).expect("compiles")
}

fn item() -> impl Strategy<Value = Value> {
    (
        proptest::option::weighted(0.9, 0i64..5),
        prop_oneof![8 => (-2i64..3).prop_map(|n| json!(n)), 1 => Just(json!("x"))],
        proptest::option::weighted(0.1, Just(json!(1))),
    )
        .prop_map(|(id, n, d)| {
            let mut m = serde_json::Map::new();
            m.extend(id.map(|id| ("id".to_string(), json!(id))));
            m.insert("n".to_string(), n);
            m.extend(d.map(|d| ("d".to_string(), d)));
            Value::Object(m)
        })
}

/// Items in any order, or (half the time) sorted by id without duplicates.
fn items() -> impl Strategy<Value = Vec<Value>> {
    (proptest::collection::vec(item(), 0..7), any::<bool>()).prop_map(|(mut v, sorted)| {
        if sorted {
            let id = |x: &Value| x.get("id").cloned().unwrap_or(Value::Null);
            v.sort_by(|a, b| crate::compare(&id(a), &id(b)));
            v.dedup_by(|a, b| id(a) == id(b));
        }
        v
    })
}

fn outcome(r: Result<Vec<Value>, Fail>) -> Result<Vec<Value>, Option<ReduceError>> {
    r.map_err(|f| match f {
        Fail::Error(e) => Some(*e),
        Fail::Defer => None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn keyed_in_place_agrees_with_runs(lhs in items(), rhs in items(), full in any::<bool>()) {
        let plan = plan();
        let key = [Pointer::parse("/id").expect("pointer")];
        let w = Walk { plan: &plan, full, check: false };
        let here = plan.here(&plan.root_at(), &Value::Null);
        let want = outcome(keyed_runs(&w, &Loc::Root, &here, &key, lhs.clone(), rhs.clone()));
        let got = outcome(keyed(&w, &Loc::Root, &here, &key, lhs.clone(), rhs.clone()));
        prop_assert_eq!(got, want, "lhs {:?} rhs {:?}", lhs, rhs);
    }
}
