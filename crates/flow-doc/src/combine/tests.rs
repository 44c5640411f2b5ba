//! Combiner cases (adds, a drain, and the expected drained documents or error), and property
//! tests: a combiner that spills after every document drains as one that never spills, and
//! as strict left-to-right reduction of each key's documents.

use super::super::ptr::Pointer;
use super::super::reduce::tests::fold_full;
use super::super::reduce::tests_props::{CONDITIONAL, STATIC, doc};
use super::super::schema::Schema;
use super::{Binding, Combiner, Drained};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

fn binding(schema: &Value) -> Binding {
    Binding {
        key: vec![Pointer::parse("/k").unwrap()],
        schema: Arc::new(Schema::compile(schema).unwrap()),
    }
}

fn drain(c: &mut Combiner, full: bool) -> Result<Vec<Drained>, String> {
    c.drain(full)
        .map_err(|e| e.to_string())?
        .map(|d| d.map_err(|e| e.to_string()))
        .collect()
}

/// What a drained document is checked for: (binding, doc, front, deleted).
type Out = (usize, Value, bool, bool);

struct Case {
    adds: Vec<(usize, Value, bool)>,
    full: bool,
    expect: Result<Vec<Out>, &'static str>,
}

fn run_combine_cases(schemas: &[Value], cases: Vec<Case>) {
    for (i, case) in cases.into_iter().enumerate() {
        for threshold in [usize::MAX, 0] {
            let mut c = Combiner::new(schemas.iter().map(binding).collect(), threshold);
            let added: Result<(), String> = case
                .adds
                .iter()
                .cloned()
                .try_for_each(|(b, d, front)| c.add(b, d, front).map_err(|e| e.to_string()));
            let got = added.and_then(|()| drain(&mut c, case.full)).map(|ds| {
                ds.into_iter()
                    .map(|d| {
                        assert_eq!(
                            d.key,
                            vec![d.doc["k"].clone()],
                            "case {i}: drained key values"
                        );
                        (d.binding, d.doc, d.front, d.deleted)
                    })
                    .collect::<Vec<Out>>()
            });
            match (&case.expect, got) {
                (Ok(want), Ok(got)) => {
                    assert_eq!(&got, want, "case {i}, spill threshold {threshold}")
                }
                (Err(want), Err(got)) => {
                    assert!(got.contains(want), "case {i}: error {got:?} lacks {want:?}")
                }
                (want, got) => {
                    panic!("case {i}, spill threshold {threshold}: want {want:?}, got {got:?}")
                }
            }
            if case.expect.is_ok() {
                assert!(c.is_empty(), "a drain empties the combiner");
            }
        }
    }
}

fn counters() -> Value {
    json!({
        "type": "object",
        "properties": {
            "k": {"type": "string"},
            "n": {"type": "integer", "maximum": 100, "reduce": {"strategy": "sum"}},
            "any": {"reduce": {"strategy": "sum"}},
            "op": {"enum": ["u", "d"]},
        },
        "required": ["k"],
        "if": {"properties": {"op": {"const": "d"}}, "required": ["op"]},
        "then": {"reduce": {"strategy": "lastWriteWins", "delete": true}},
        "else": {"reduce": {"strategy": "merge"}},
    })
}

#[test]
fn combine_cases() {
    let n = |k: &str, n: i64| json!({"k": k, "n": n});
    let del = |k: &str| json!({"k": k, "op": "d"});
    let add = |d: Value| (0, d, false);
    let front = |d: Value| (0, d, true);
    run_combine_cases(
        &[counters(), json!({"type": "object", "required": ["k"]})],
        vec![
            // Keys drain in order, combined.
            Case {
                adds: vec![
                    add(n("b", 1)),
                    add(n("a", 1)),
                    add(n("c", 1)),
                    add(n("a", 2)),
                    add(n("b", 3)),
                ],
                full: false,
                expect: Ok(vec![
                    (0, n("a", 3), false, false),
                    (0, n("b", 4), false, false),
                    (0, n("c", 1), false, false),
                ]),
            },
            // A front document is first, wherever it was added; a full drain reduces onto it.
            Case {
                adds: vec![
                    add(n("a", 1)),
                    front(n("a", 10)),
                    add(n("a", 2)),
                    add(n("b", 1)),
                ],
                full: true,
                expect: Ok(vec![
                    (0, n("a", 13), true, false),
                    (0, n("b", 1), false, false),
                ]),
            },
            // Keys with a front document reduce fully in any drain.
            Case {
                adds: vec![add(n("a", 1)), front(n("a", 10))],
                full: false,
                expect: Ok(vec![(0, n("a", 11), true, false)]),
            },
            // A delete of a stored row; a later document starts the key anew.
            Case {
                adds: vec![front(n("a", 5)), add(del("a"))],
                full: true,
                expect: Ok(vec![(0, del("a"), true, true)]),
            },
            Case {
                adds: vec![front(n("a", 5)), add(del("a")), add(n("a", 1))],
                full: true,
                expect: Ok(vec![(0, n("a", 1), true, false)]),
            },
            Case {
                adds: vec![add(del("a"))],
                full: true,
                expect: Ok(vec![(0, del("a"), false, true)]),
            },
            // An associative drain keeps a delete apart from what it follows.
            Case {
                adds: vec![
                    add(n("a", 1)),
                    add(n("a", 1)),
                    add(del("a")),
                    add(n("a", 4)),
                ],
                full: false,
                expect: Ok(vec![
                    (0, n("a", 2), false, false),
                    (0, del("a"), false, false),
                    (0, n("a", 4), false, false),
                ]),
            },
            // Bindings drain in order, then keys.
            Case {
                adds: vec![
                    (1, json!({"k": "a", "x": 1}), false),
                    add(n("z", 1)),
                    (1, json!({"k": "a", "y": 1}), false),
                ],
                full: true,
                expect: Ok(vec![
                    (0, n("z", 1), false, false),
                    (1, json!({"k": "a", "y": 1}), false, false),
                ]),
            },
            // Errors name the binding, the key, and the location and values.
            Case {
                adds: vec![(2, n("a", 1), false)],
                full: false,
                expect: Err("binding 2 does not exist (the combiner has 2)"),
            },
            Case {
                adds: vec![add(json!({"n": 1}))],
                full: false,
                expect: Err("binding 0: document has no value at key location /k"),
            },
            Case {
                adds: vec![add(json!({"k": "a", "n": "x"}))],
                full: false,
                expect: Err(r#"binding 0, key ["a"]: document is invalid: at /n"#),
            },
            Case {
                adds: vec![
                    add(json!({"k": "a", "any": 1})),
                    add(json!({"k": "a", "any": "x"})),
                ],
                full: false,
                expect: Err(
                    r#"binding 0, key ["a"]: at /any: 'sum' strategy expects numbers (lhs 1, rhs "x")"#,
                ),
            },
            Case {
                adds: vec![front(n("a", 1)), front(n("a", 1))],
                full: true,
                expect: Err(r#"binding 0, key ["a"]: a second front document"#),
            },
            Case {
                adds: vec![add(n("a", 60)), add(n("a", 60))],
                full: false,
                expect: Err(r#"binding 0, key ["a"]: reduced document is invalid: at /n"#),
            },
        ],
    );
}

#[test]
fn spills_drain_like_memory() {
    let bindings = vec![binding(&counters()), binding(&counters())];
    let docs: Vec<(usize, Value)> = (0..2000)
        .map(|i: i64| {
            (
                (i % 2) as usize,
                json!({"k": format!("key{}", (i * 7919) % 97), "n": 1, "any": i}),
            )
        })
        .collect();
    let mut drains = Vec::new();
    for threshold in [usize::MAX, 8 << 10] {
        let mut c = Combiner::new(bindings.clone(), threshold);
        for (b, d) in &docs {
            c.add(*b, d.clone(), false).unwrap();
        }
        assert_eq!(
            c.spilled_runs() > 10,
            threshold != usize::MAX,
            "runs spilled: {}",
            c.spilled_runs()
        );
        drains.push(drain(&mut c, false).unwrap());
    }
    assert_eq!(drains[0].len(), 2 * 97);
    assert_eq!(drains[0], drains[1]);
    let total: i64 = drains[0].iter().map(|d| d.doc["n"].as_i64().unwrap()).sum();
    assert_eq!(total, 2000);
}

/// Add `docs` (key, doc, front) to a combiner with the given spill threshold and drain it;
/// check it against strict left-to-right reduction of each key's documents, front first.
fn check_combiner(schema: &Value, docs: &[(&'static str, Value, bool)]) {
    let b = binding(schema);
    let mut reference: BTreeMap<&str, (bool, Vec<Value>)> = BTreeMap::new();
    for (k, d, front) in docs {
        let e = reference.entry(k).or_default();
        if *front {
            e.0 = true;
            e.1.insert(0, d.clone());
        } else {
            e.1.push(d.clone());
        }
    }
    let want: Vec<(Value, bool, Option<Value>)> = reference
        .iter()
        .map(|(k, (front, ds))| {
            (
                json!(k),
                *front,
                fold_full(&b.schema, ds.iter().cloned()).unwrap(),
            )
        })
        .collect();

    for full in [true, false] {
        let mut drains = Vec::new();
        for threshold in [usize::MAX, 0] {
            let mut c = Combiner::new(vec![b.clone()], threshold);
            for (_, d, front) in docs {
                c.add(0, d.clone(), *front).unwrap();
            }
            drains.push(drain(&mut c, full).unwrap());
        }
        if full {
            assert_eq!(drains[0], drains[1], "spilling changes nothing");
        }
        for drained in drains {
            // Fold each key's drained documents fully (an associative drain may yield several).
            let mut got: Vec<(Value, bool, Option<Value>)> = Vec::new();
            let mut i = 0;
            while i < drained.len() {
                let key = drained[i].key[0].clone();
                let run: Vec<&Drained> = drained[i..]
                    .iter()
                    .take_while(|d| d.key[0] == key)
                    .collect();
                i += run.len();
                let front = run[0].front;
                let state = match run.as_slice() {
                    [one] if one.deleted => None,
                    _ => fold_full(&b.schema, run.iter().map(|d| d.doc.clone())).unwrap(),
                };
                got.push((key, front, state));
            }
            assert_eq!(got, want, "full drain {full}");
        }
    }
}

fn combiner_docs(conditional: bool) -> impl Strategy<Value = Vec<(&'static str, Value, bool)>> {
    let key = proptest::sample::select(&["a", "b", "c"][..]);
    proptest::collection::vec(
        (key, any::<u8>())
            .prop_flat_map(move |(k, r)| doc(k, conditional).prop_map(move |d| (k, d, r < 20))),
        1..12,
    )
    .prop_map(|mut docs| {
        // At most one front document per key.
        let mut seen = std::collections::BTreeSet::new();
        for (k, _, front) in docs.iter_mut() {
            if *front && !seen.insert(*k) {
                *front = false;
            }
        }
        docs
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn spilling_combiner_drains_as_strict_order_static(docs in combiner_docs(false)) {
        check_combiner(&STATIC, &docs);
    }

    #[test]
    fn spilling_combiner_drains_as_strict_order_conditional(docs in combiner_docs(true)) {
        check_combiner(&CONDITIONAL, &docs);
    }
}

#[test]
fn spilling_combiner_drains_as_strict_order_repro() {
    let docs = vec![
        ("b", json!({"k": "b", "sum": 1, "app": [1]}), false),
        ("a", json!({"k": "a", "sum": 1, "patch": {"x": 1}}), false),
        ("a", json!({"k": "a", "op": "d"}), false),
        (
            "b",
            json!({"k": "b", "sum": 2, "set": {"add": {"a": 1}}}),
            true,
        ),
        (
            "a",
            json!({"k": "a", "sum": 5, "patch": {"x": null, "y": 2}}),
            false,
        ),
        (
            "a",
            json!({"k": "a", "counter": {"reset": true, "v": 3}}),
            true,
        ),
        (
            "b",
            json!({"k": "b", "app": [2], "set": {"remove": {"a": 0}}}),
            false,
        ),
    ];
    check_combiner(&CONDITIONAL, &docs);
}

#[test]
fn shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Schema>();
    send_sync::<Binding>();
    send::<Combiner>();
    send::<super::Drainer>();
    send_sync::<super::CombineError>();
}

#[test]
fn without_annotations_the_last_document_of_each_key_is_kept() {
    use crate::combine::LastOfEachKey;
    let key = vec![Pointer::parse("/k").unwrap()];
    let docs = [
        json!({"k": 1, "v": "a"}),
        json!({"k": 2, "v": "b"}),
        json!({"k": 1.0, "v": "c"}),
        json!({"k": 3, "v": "d"}),
    ];
    let mut last = LastOfEachKey::new(key.clone());
    for (i, d) in docs.iter().enumerate() {
        last.add(d, i).unwrap();
    }
    // Keys compare by value: 1 and 1.0 are one key, whose last document is kept, where the
    // key first came.
    assert_eq!(last.len(), 3);
    assert_eq!(last.into_items(), vec![2, 1, 3]);
    let mut last = LastOfEachKey::new(key.clone());
    assert!(last.add(&json!({"v": 1}), ()).is_err());
    // A key packed elsewhere is the same key.
    let mut last = LastOfEachKey::new(key.clone());
    last.add(&docs[0], "a").unwrap();
    last.add_packed(crate::combine::packed_key(&key, &docs[2]).unwrap(), "c");
    assert_eq!(last.into_items(), vec!["c"]);
}

#[test]
fn drains_in_key_order_past_a_shared_prefix() {
    // Keys that share their first 16 packed bytes, keys that are prefixes of others, an
    // escaped zero byte and numbers: the drain's order is the total order of the keys.
    let schema = json!({"type": "object", "properties": {"k": {}}, "required": ["k"]});
    let b = binding(&schema);
    let mut c = Combiner::new(vec![b], super::SPILL_THRESHOLD_BYTES_DEFAULT);
    let keys = [
        json!("abcdefghijklmnopq"),
        json!("abcdefghijklmnop"),
        json!("abcdefghijklmnopr"),
        json!("abcdefghijkl"),
        json!("abcdefghijkl\u{0}"),
        json!("abcdefghijklm"),
        json!(""),
        json!(2),
        json!(-1.5),
        json!(null),
    ];
    for k in &keys {
        c.add(0, json!({"k": k}), false).expect("adds");
    }
    let drained: Vec<Value> = drain(&mut c, true)
        .expect("drains")
        .into_iter()
        .map(|d| d.key[0].clone())
        .collect();
    let mut want = keys.to_vec();
    want.sort_by(super::super::compare::compare);
    assert_eq!(drained, want);
}
