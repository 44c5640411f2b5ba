//! Case tables, one per strategy: inputs and the expected document, deletion, deferral, or
//! error (a substring of its message).

use super::super::schema::Schema;
use super::Reduced;
use serde_json::{Value, json};

pub(super) enum Expect {
    Doc(Value),
    Deleted,
    Deferred,
    Err(&'static str),
}

pub(super) struct Case {
    pub full: bool,
    pub lhs: Option<Value>,
    pub rhs: Value,
    pub expect: Expect,
}

/// A full reduction of `rhs` onto `lhs`.
pub(super) fn full(lhs: Value, rhs: Value, expect: Expect) -> Case {
    Case {
        full: true,
        lhs: Some(lhs),
        rhs,
        expect,
    }
}
/// An associative reduction of `rhs` onto `lhs`.
pub(super) fn assoc(lhs: Value, rhs: Value, expect: Expect) -> Case {
    Case {
        full: false,
        lhs: Some(lhs),
        rhs,
        expect,
    }
}
/// A reduction of `rhs` against nothing.
pub(super) fn first(full: bool, rhs: Value, expect: Expect) -> Case {
    Case {
        full,
        lhs: None,
        rhs,
        expect,
    }
}
pub(super) fn doc(v: Value) -> Expect {
    Expect::Doc(v)
}

pub(super) fn run_reduce_cases(schema: Value, cases: Vec<Case>) {
    let schema = Schema::compile(&schema).expect("schema compiles");
    for (i, case) in cases.into_iter().enumerate() {
        let what = format!(
            "case {i}: lhs {:?} rhs {} full {}",
            case.lhs, case.rhs, case.full
        );
        let got = schema.reduce(case.lhs.clone(), case.rhs.clone(), case.full);
        match (case.expect, got) {
            (Expect::Doc(want), Ok(Reduced::Doc(got))) => assert_eq!(got, want, "{what}"),
            (Expect::Deleted, Ok(Reduced::Deleted(tombstone))) => {
                assert_eq!(tombstone, case.rhs, "{what}")
            }
            (Expect::Deferred, Ok(Reduced::Deferred { lhs, rhs })) => {
                assert_eq!(
                    (Some(lhs), rhs),
                    (case.lhs, case.rhs),
                    "{what}: deferral returns both unchanged"
                )
            }
            (Expect::Err(want), Err(e)) => assert!(
                e.to_string().contains(want),
                "{what}: error {e:?} lacks {want:?}"
            ),
            (Expect::Doc(want), got) => panic!("{what}: want {want}, got {got:?}"),
            (Expect::Deleted, got) => panic!("{what}: want deleted, got {got:?}"),
            (Expect::Deferred, got) => panic!("{what}: want deferred, got {got:?}"),
            (Expect::Err(want), got) => panic!("{what}: want error {want:?}, got {got:?}"),
        }
    }
}

/// A root that merges, with `props` as its properties.
pub(super) fn merge_root(props: Value) -> Value {
    json!({"type": "object", "reduce": {"strategy": "merge"}, "properties": props})
}

#[test]
fn last_write_wins_cases() {
    // No annotation at all: the root is lastWriteWins.
    run_reduce_cases(
        json!({"type": "object"}),
        vec![
            full(json!({"a": 1}), json!({"b": 2}), doc(json!({"b": 2}))),
            assoc(json!({"a": 1}), json!({"b": 2}), doc(json!({"b": 2}))),
        ],
    );
    run_reduce_cases(
        merge_root(
            json!({"d": {"reduce": {"strategy": "lastWriteWins", "delete": true}}, "x": {}}),
        ),
        vec![
            full(
                json!({"x": 1, "y": 1}),
                json!({"x": {"z": 2}}),
                doc(json!({"x": {"z": 2}, "y": 1})),
            ),
            full(
                json!({"d": 1, "x": 1}),
                json!({"d": 5}),
                doc(json!({"x": 1})),
            ),
            full(json!({"x": 1}), json!({"d": null}), doc(json!({"x": 1}))),
            first(true, json!({"d": 5, "x": 2}), doc(json!({"x": 2}))),
            // Deletes are full-only steps: deferred, even onto nothing (which keeps rhs).
            assoc(json!({"d": 1, "x": 1}), json!({"d": 5}), Expect::Deferred),
            first(false, json!({"d": 5, "x": 2}), doc(json!({"d": 5, "x": 2}))),
        ],
    );
    run_reduce_cases(
        json!({"reduce": {"strategy": "lastWriteWins", "delete": true}}),
        vec![
            full(json!({"a": 1}), json!({"a": 2}), Expect::Deleted),
            first(true, json!({"a": 2}), Expect::Deleted),
            assoc(json!({"a": 1}), json!({"a": 2}), Expect::Deferred),
        ],
    );
}

#[test]
fn first_write_wins_cases() {
    run_reduce_cases(
        merge_root(json!({"f": {"reduce": {"strategy": "firstWriteWins"}}})),
        vec![
            full(json!({"f": 1}), json!({"f": 2}), doc(json!({"f": 1}))),
            assoc(
                json!({"f": {"a": 1}}),
                json!({"f": 2}),
                doc(json!({"f": {"a": 1}})),
            ),
            full(json!({}), json!({"f": 2}), doc(json!({"f": 2}))),
            first(true, json!({"f": null}), doc(json!({"f": null}))),
        ],
    );
}

#[test]
fn minimize_maximize_cases() {
    let schema = merge_root(json!({
        "min": {"reduce": {"strategy": "minimize"}},
        "max": {"reduce": {"strategy": "maximize"}},
        "kmin": {
            "reduce": {"strategy": "minimize", "key": ["/k"]},
            "properties": {"n": {"reduce": {"strategy": "sum"}}},
        },
    }));
    run_reduce_cases(
        schema,
        vec![
            full(
                json!({"min": 3, "max": 3}),
                json!({"min": 2, "max": 2}),
                doc(json!({"min": 2, "max": 3})),
            ),
            full(
                json!({"min": "b", "max": "b"}),
                json!({"min": "a", "max": "c"}),
                doc(json!({"min": "a", "max": "c"})),
            ),
            // Types order null < false < true < numbers < strings < arrays < objects.
            full(
                json!({"min": 1, "max": 1}),
                json!({"min": null, "max": [0]}),
                doc(json!({"min": null, "max": [0]})),
            ),
            full(
                json!({"min": [1, 2], "max": {}}),
                json!({"min": [1], "max": []}),
                doc(json!({"min": [1], "max": {}})),
            ),
            // Ties take rhs: 20 == 20.0.
            full(
                json!({"min": 20, "max": 20.0}),
                json!({"min": 20.0, "max": 20}),
                doc(json!({"min": 20.0, "max": 20})),
            ),
            first(false, json!({"min": 5}), doc(json!({"min": 5}))),
            // With a key: the smaller key wins whole; equal keys deep-merge by nested strategies.
            full(
                json!({"kmin": {"k": 2, "n": 1}}),
                json!({"kmin": {"k": 1, "n": 5}}),
                doc(json!({"kmin": {"k": 1, "n": 5}})),
            ),
            full(
                json!({"kmin": {"k": 1, "n": 1}}),
                json!({"kmin": {"k": 2, "n": 5}}),
                doc(json!({"kmin": {"k": 1, "n": 1}})),
            ),
            full(
                json!({"kmin": {"k": 1, "n": 1, "a": 1}}),
                json!({"kmin": {"k": 1, "n": 5, "b": 2}}),
                doc(json!({"kmin": {"k": 1, "n": 6, "a": 1, "b": 2}})),
            ),
            // A missing key sorts before any value, null included.
            full(
                json!({"kmin": {"k": null}}),
                json!({"kmin": {"n": 1}}),
                doc(json!({"kmin": {"n": 1}})),
            ),
            // Equal keys but containers of different kinds: a type change.
            assoc(
                json!({"kmin": {"x": 1}}),
                json!({"kmin": [1]}),
                Expect::Deferred,
            ),
        ],
    );
}

#[test]
fn sum_cases() {
    let schema = merge_root(
        json!({"totals": {"additionalProperties": {"reduce": {"strategy": "sum"}}, "reduce": {"strategy": "merge"}}}),
    );
    let t = |v: Value| json!({"totals": {"eur": v}});
    let cases = [
        (json!(1), json!(2), Ok(json!(3))),
        (json!(-5), json!(3), Ok(json!(-2))),
        // Mixed signs stay exact across the u64 range.
        (json!(u64::MAX), json!(-1), Ok(json!(u64::MAX - 1))),
        (json!(i64::MIN), json!(u64::MAX), Ok(json!(i64::MAX as u64))),
        (
            json!(u64::MAX),
            json!(1),
            Err("'sum' overflows (lhs 18446744073709551615, rhs 1)"),
        ),
        (json!(i64::MIN), json!(-1), Err("'sum' overflows")),
        // Any float makes a float.
        (json!(5), json!(-1.2), Ok(json!(3.8))),
        (json!(1), json!(0.5), Ok(json!(1.5))),
        (json!(1.0), json!(2), Ok(json!(3.0))),
        (json!(1e308), json!(1e308), Err("'sum' overflows")),
        // Numeric strings: exact decimals, giving a string.
        (json!("1.50"), json!(2), Ok(json!("3.50"))),
        (json!(0.1), json!("0.2"), Ok(json!("0.3"))),
        (
            json!("99999999999999999999999"),
            json!("1"),
            Ok(json!("100000000000000000000000")),
        ),
        (json!("-5"), json!("3.25"), Ok(json!("-1.75"))),
        (json!("1e3"), json!("-0.001"), Ok(json!("999.999"))),
        (json!("-1.5"), json!("1.5"), Ok(json!("0.0"))),
        (
            json!(u64::MAX),
            json!("1"),
            Ok(json!("18446744073709551616")),
        ),
        // Not numbers.
        (
            json!(3),
            json!("x"),
            Err(r#"at /totals/eur: 'sum' strategy expects numbers (lhs 3, rhs "x")"#),
        ),
        (
            json!(null),
            json!(3),
            Err("'sum' strategy expects numbers (lhs null, rhs 3)"),
        ),
        (json!([1]), json!(3), Err("expects numbers")),
        (json!(1), json!("1e99999"), Err("expects numbers")),
        (json!(1), json!(" 1"), Err("expects numbers")),
    ];
    let mut table: Vec<Case> = cases
        .into_iter()
        .map(|(l, r, want)| match want {
            Ok(v) => full(t(l), t(r), doc(t(v))),
            Err(e) => full(t(l), t(r), Expect::Err(e)),
        })
        .collect();
    table.push(first(true, t(json!(5)), doc(t(json!(5)))));
    table.push(first(true, t(json!("7")), doc(t(json!("7")))));
    table.push(first(
        true,
        t(json!("x")),
        Expect::Err(r#"(lhs absent, rhs "x")"#),
    ));
    table.push(assoc(t(json!(1)), t(json!(2)), doc(t(json!(3)))));
    run_reduce_cases(schema, table);
}

#[test]
fn append_cases() {
    run_reduce_cases(
        merge_root(json!({"a": {"reduce": {"strategy": "append"}}})),
        vec![
            full(
                json!({"a": [1, 2]}),
                json!({"a": [3]}),
                doc(json!({"a": [1, 2, 3]})),
            ),
            assoc(
                json!({"a": []}),
                json!({"a": [{"x": 1}]}),
                doc(json!({"a": [{"x": 1}]})),
            ),
            full(json!({}), json!({"a": [1]}), doc(json!({"a": [1]}))),
            // A null lhs stays null.
            full(
                json!({"a": null}),
                json!({"a": [1]}),
                doc(json!({"a": null})),
            ),
            full(
                json!({"a": [1]}),
                json!({"a": 5}),
                Expect::Err("at /a: 'append' strategy expects arrays (lhs [1], rhs 5)"),
            ),
            full(
                json!({"a": 5}),
                json!({"a": [1]}),
                Expect::Err("(lhs 5, rhs [1])"),
            ),
            first(
                true,
                json!({"a": "x"}),
                Expect::Err("(lhs absent, rhs \"x\")"),
            ),
        ],
    );
}

/// Reduce documents strictly left to right, fully, from nothing. None: deleted.
pub(crate) fn fold_full(
    schema: &Schema,
    docs: impl IntoIterator<Item = Value>,
) -> Result<Option<Value>, String> {
    let mut state = None;
    for d in docs {
        state = match schema.reduce(state, d, true).map_err(|e| e.to_string())? {
            Reduced::Doc(v) => Some(v),
            Reduced::Deleted(_) => None,
            Reduced::Deferred { .. } => return Err("a full reduction deferred".to_string()),
        };
    }
    Ok(state)
}

/// Reduce a run of documents associatively, as the combiner does: each onto the last kept,
/// keeping both where the reduction defers.
pub(super) fn fold_assoc(
    schema: &Schema,
    docs: impl IntoIterator<Item = Value>,
) -> Result<Vec<Value>, String> {
    let mut out: Vec<Value> = Vec::new();
    for d in docs {
        let Some(last) = out.pop() else {
            out.push(d);
            continue;
        };
        match schema
            .reduce(Some(last), d, false)
            .map_err(|e| e.to_string())?
        {
            Reduced::Doc(v) => out.push(v),
            Reduced::Deferred { lhs, rhs } => out.extend([lhs, rhs]),
            Reduced::Deleted(_) => return Err("an associative reduction deleted".to_string()),
        }
    }
    Ok(out)
}

/// Reduce `docs` in every grouping of consecutive runs (each run associatively, then all
/// fully) and check each equals the strict left-to-right result, which must be `expect`.
pub(super) fn check_groupings(
    schema: &Schema,
    docs: &[Value],
    expect: &Result<Option<Value>, String>,
) {
    let strict = fold_full(schema, docs.iter().cloned());
    assert_eq!(
        &strict, expect,
        "strict left-to-right reduction of {docs:?}"
    );
    let n = docs.len();
    for cuts in 0..(1u32 << n.saturating_sub(1)) {
        let mut runs: Vec<Vec<Value>> = vec![Vec::new()];
        for (i, d) in docs.iter().enumerate() {
            if i > 0 && cuts & (1 << (i - 1)) != 0 {
                runs.push(Vec::new());
            }
            runs.last_mut().expect("a run").push(d.clone());
        }
        let mut combined = Vec::new();
        let mut failed = None;
        for run in runs {
            match fold_assoc(schema, run) {
                Ok(docs) => combined.extend(docs),
                Err(e) => failed = Some(e),
            }
        }
        let got = match failed {
            Some(e) => Err(e),
            None => fold_full(schema, combined),
        };
        match (&got, expect) {
            (Err(_), Err(_)) => {} // Errors may surface at a different step.
            _ => assert_eq!(&got, expect, "grouping {cuts:b} of {docs:?}"),
        }
    }
}
