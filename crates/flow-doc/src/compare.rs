//! The total order of JSON values, shared by collection keys, `minimize`/`maximize`, keyed
//! `merge` and `set` (REDUCTIONS.md "Total order"):
//! `null < false < true < numbers < strings < arrays < objects`.

use super::ptr::Pointer;
use serde_json::{Number, Value};
use std::cmp::Ordering;

/// Compare two values by the total order.
pub fn compare(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(false) => 1,
            Value::Bool(true) => 2,
            Value::Number(_) => 3,
            Value::String(_) => 4,
            Value::Array(_) => 5,
            Value::Object(_) => 6,
        }
    }
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b),
        (Value::String(a), Value::String(b)) => a.as_bytes().cmp(b.as_bytes()),
        (Value::Array(a), Value::Array(b)) => {
            for (x, y) in a.iter().zip(b.iter()) {
                match compare(x, y) {
                    Ordering::Equal => continue,
                    other => return other,
                }
            }
            a.len().cmp(&b.len())
        }
        (Value::Object(a), Value::Object(b)) => {
            let mut ia = a.iter();
            let mut ib = b.iter();
            loop {
                match (ia.next(), ib.next()) {
                    (None, None) => return Ordering::Equal,
                    (None, Some(_)) => return Ordering::Less,
                    (Some(_), None) => return Ordering::Greater,
                    (Some((ka, va)), Some((kb, vb))) => {
                        match ka
                            .as_bytes()
                            .cmp(kb.as_bytes())
                            .then_with(|| compare(va, vb))
                        {
                            Ordering::Equal => continue,
                            other => return other,
                        }
                    }
                }
            }
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Compare numbers exactly by value across integers and floats: `20 == 20.0`, `-0 == 0`,
/// integers beyond 2^53 stay exact against each other and against floats
/// (`9007199254740993 > 9007199254740992.0`).
pub fn compare_numbers(a: &Number, b: &Number) -> Ordering {
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(x), None) => integer_vs_float(x, b.as_f64().unwrap_or(f64::NAN)),
        (None, Some(y)) => integer_vs_float(y, a.as_f64().unwrap_or(f64::NAN)).reverse(),
        (None, None) => {
            let (x, y) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            // `partial_cmp` makes -0.0 equal to 0.0; JSON has no NaN, but order it anyway.
            x.partial_cmp(&y).unwrap_or_else(|| x.total_cmp(&y))
        }
    }
}

/// The value of an integer-typed number (any i64 or u64).
fn integer(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// Integer `x` against float `y`, exactly: compare with `y`'s whole part (a saturating, and
/// within range exact, conversion), then let its fraction break the tie.
fn integer_vs_float(x: i128, y: f64) -> Ordering {
    if y.is_nan() {
        return Ordering::Less;
    }
    let whole = y.trunc();
    match x.cmp(&(whole as i128)) {
        Ordering::Equal if y > whole => Ordering::Less,
        Ordering::Equal if y < whole => Ordering::Greater,
        o => o,
    }
}

/// Compare two documents by the locations of `key`. A missing location sorts before any
/// present value, `null` included.
pub fn compare_by_key(key: &[Pointer], a: &Value, b: &Value) -> Ordering {
    for ptr in key {
        let ord = match (ptr.query(a), ptr.query(b)) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => compare(x, y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    #[test]
    fn total_order_cases() {
        // Each value is strictly less than the next.
        let ascending = [
            json!(null),
            json!(false),
            json!(true),
            json!(-5),
            json!(-1.5),
            json!(0),
            json!(3),
            json!(18446744073709551615u64),
            json!(""),
            json!("A"),
            json!("a"),
            json!("ab"),
            json!([]),
            json!([1]),
            json!([1, 2]),
            json!([2]),
            json!({}),
            json!({"a": 1}),
            json!({"a": 2}),
            json!({"b": 0}),
        ];
        for w in ascending.windows(2) {
            assert_eq!(compare(&w[0], &w[1]), Ordering::Less, "{} < {}", w[0], w[1]);
            assert_eq!(
                compare(&w[1], &w[0]),
                Ordering::Greater,
                "{} > {}",
                w[1],
                w[0]
            );
        }
        assert_eq!(compare(&json!(20), &json!(20.0)), Ordering::Equal);
        assert_eq!(compare(&json!(-0.0), &json!(0)), Ordering::Equal);
        assert_eq!(compare(&json!(-0.0), &json!(0.0)), Ordering::Equal);
        // Exact beyond 2^53: 2^53 + 1 is above the float 2^53, and 2^63 equals its float.
        assert_eq!(
            compare(&json!(9007199254740993u64), &json!(9007199254740992.0)),
            Ordering::Greater
        );
        assert_eq!(
            compare(
                &json!(9223372036854775808u64),
                &json!(9223372036854775808.0)
            ),
            Ordering::Equal
        );
        assert_eq!(compare(&json!(3), &json!(3.5)), Ordering::Less);
        assert_eq!(compare(&json!(-3), &json!(-3.5)), Ordering::Greater);
        assert_eq!(compare(&json!(u64::MAX), &json!(1e20)), Ordering::Less);
        assert_eq!(compare(&json!(i64::MIN), &json!(-1e19)), Ordering::Greater);
        assert_eq!(
            compare(&json!(-1), &json!(18446744073709551615u64)),
            Ordering::Less
        );

        let key = [Pointer::parse("/k").unwrap()];
        assert_eq!(
            compare_by_key(&key, &json!({}), &json!({"k": null})),
            Ordering::Less
        );
        assert_eq!(
            compare_by_key(&key, &json!({"k": 1}), &json!({"k": 1.0})),
            Ordering::Equal
        );
    }
}
