//! Packed keys: (binding, key values) encoded so that comparing the bytes compares the binding,
//! then the key values by the total order (compare.rs). The memtable sorts them and the
//! k-way merge of spilled runs compares them without decoding anything.
//!
//! Layout: the binding as 4 big-endian bytes, then each key value:
//! `null` 0x02, `false` 0x03, `true` 0x04; a number is 0x05, 8 bytes ordering it as an f64,
//! then 16 bytes of its exact integer value (so integers beyond 2^53 stay distinct); a string
//! is 0x06, its bytes with 0x00 escaped as 0x00 0xFF, then 0x00 0x01; an array is 0x07, its
//! items, 0x00; an object is 0x08, its (property as a string, value) pairs, 0x00.
//!
//! Numbers compare exactly as compare.rs does (`20 == 20.0`, `-0.0 == 0`, an integer beyond
//! 2^53 above the float it rounds to).

use super::super::ptr::Pointer;
use serde_json::Value;

const END: u8 = 0x00;
const NULL: u8 = 0x02;
const FALSE: u8 = 0x03;
const TRUE: u8 = 0x04;
const NUMBER: u8 = 0x05;
const STRING: u8 = 0x06;
const ARRAY: u8 = 0x07;
const OBJECT: u8 = 0x08;

/// Encode the key of `doc`; Err names the first key location that `doc` lacks.
pub(super) fn encode_key<'k>(
    binding: u32,
    key: &'k [Pointer],
    doc: &Value,
) -> Result<Vec<u8>, &'k Pointer> {
    let mut out = Vec::with_capacity(4 + 16 * key.len());
    encode_key_into(binding, key, doc, &mut out)?;
    Ok(out)
}

/// `encode_key` into `out` (cleared first), which a caller can reuse from one document to the
/// next: most documents' keys are already in the memtable, and need no allocation of their own.
pub(super) fn encode_key_into<'k>(
    binding: u32,
    key: &'k [Pointer],
    doc: &Value,
    out: &mut Vec<u8>,
) -> Result<(), &'k Pointer> {
    out.clear();
    out.extend_from_slice(&binding.to_be_bytes());
    for ptr in key {
        encode_value(ptr.query(doc).ok_or(ptr)?, out);
    }
    Ok(())
}

/// The binding of a packed key.
pub(super) fn binding_of(packed: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&packed[..4]);
    u32::from_be_bytes(b)
}

pub(super) fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Number(n) => {
            out.push(NUMBER);
            let (f, exact): (f64, i128) = if let Some(i) = n.as_i64() {
                (i as f64, i as i128)
            } else if let Some(u) = n.as_u64() {
                (u as f64, u as i128)
            } else {
                // -0.0 is 0 (adding 0.0 turns it into +0.0 and leaves every other float).
                let f = n.as_f64().unwrap_or(0.0) + 0.0;
                // A float ties with an integer only if it is integral; give it that integer.
                let exact = if f.fract() == 0.0 && f.abs() < 1.7e38 {
                    f as i128
                } else {
                    0
                };
                (f, exact)
            };
            let bits = f.to_bits();
            let ordered = if bits >> 63 == 1 {
                !bits
            } else {
                bits | (1 << 63)
            };
            out.extend_from_slice(&ordered.to_be_bytes());
            out.extend_from_slice(&((exact as u128) ^ (1 << 127)).to_be_bytes());
        }
        Value::String(s) => encode_str(s, out),
        Value::Array(items) => {
            out.push(ARRAY);
            for item in items {
                encode_value(item, out);
            }
            out.push(END);
        }
        Value::Object(m) => {
            out.push(OBJECT);
            for (k, v) in m {
                encode_str(k, out);
                encode_value(v, out);
            }
            out.push(END);
        }
    }
}

fn encode_str(s: &str, out: &mut Vec<u8>) {
    out.push(STRING);
    if !s.as_bytes().contains(&0) {
        // Nothing to escape, as in nearly every key: one copy.
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(&[0x00, 0x01]);
        return;
    }
    for b in s.bytes() {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

/// Decode the key values of a packed key (for messages: an integral float comes back as an
/// integer).
pub(super) fn decode_values(packed: &[u8]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut p = 4;
    while p < packed.len() {
        match decode_value(packed, &mut p) {
            Some(v) => out.push(v),
            None => break,
        }
    }
    out
}

fn decode_value(b: &[u8], p: &mut usize) -> Option<Value> {
    let tag = *b.get(*p)?;
    *p += 1;
    Some(match tag {
        NULL => Value::Null,
        FALSE => Value::Bool(false),
        TRUE => Value::Bool(true),
        NUMBER => {
            let ordered = u64::from_be_bytes(b.get(*p..*p + 8)?.try_into().ok()?);
            let exact = u128::from_be_bytes(b.get(*p + 8..*p + 24)?.try_into().ok()?);
            *p += 24;
            let bits = if ordered >> 63 == 1 {
                ordered ^ (1 << 63)
            } else {
                !ordered
            };
            let f = f64::from_bits(bits);
            let exact = (exact ^ (1 << 127)) as i128;
            if let Ok(i) = i64::try_from(exact)
                .map(Value::from)
                .or_else(|_| u64::try_from(exact).map(Value::from))
                && f.fract() == 0.0
                && (exact as f64).to_bits() == f.to_bits()
            {
                i
            } else {
                Value::from(f)
            }
        }
        STRING => Value::String(decode_str(b, p)?),
        ARRAY => {
            let mut items = Vec::new();
            while *b.get(*p)? != END {
                items.push(decode_value(b, p)?);
            }
            *p += 1;
            Value::Array(items)
        }
        OBJECT => {
            let mut m = serde_json::Map::new();
            while *b.get(*p)? != END {
                *p += 1; // The property's string tag.
                let k = decode_str(b, p)?;
                m.insert(k, decode_value(b, p)?);
            }
            *p += 1;
            Value::Object(m)
        }
        _ => return None,
    })
}

fn decode_str(b: &[u8], p: &mut usize) -> Option<String> {
    let mut s = Vec::new();
    loop {
        let c = *b.get(*p)?;
        *p += 1;
        if c != 0 {
            s.push(c);
            continue;
        }
        let next = *b.get(*p)?;
        *p += 1;
        match next {
            0xFF => s.push(0),
            _ => return String::from_utf8(s).ok(),
        }
    }
}

#[cfg(test)]
mod test {
    use super::super::super::compare::compare;
    use super::*;
    use serde_json::json;
    use std::cmp::Ordering;

    #[test]
    fn encoding_follows_the_total_order() {
        let ascending = [
            json!(null),
            json!(false),
            json!(true),
            json!(-1e300),
            json!(i64::MIN),
            json!(-5),
            json!(-1.5),
            json!(0),
            json!(0.5),
            json!(3),
            json!(9007199254740993u64),
            json!(u64::MAX),
            json!(1e300),
            json!(""),
            json!("\u{0}"),
            json!("A"),
            json!("a"),
            json!("a\u{0}"),
            json!("ab"),
            json!([]),
            json!([null]),
            json!([1]),
            json!([1, 2]),
            json!([2]),
            json!({}),
            json!({"a": 1}),
            json!({"a": 2}),
            json!({"b": 0}),
        ];
        let enc = |v: &Value| {
            let mut out = Vec::new();
            encode_value(v, &mut out);
            out
        };
        for (i, a) in ascending.iter().enumerate() {
            for b in &ascending[i + 1..] {
                assert_eq!(compare(a, b), Ordering::Less, "{a} < {b} by compare");
                assert_eq!(enc(a).cmp(&enc(b)), Ordering::Less, "{a} < {b} by encoding");
            }
        }
        assert_eq!(enc(&json!(20)), enc(&json!(20.0)));
        assert_eq!(enc(&json!(-0.0)), enc(&json!(0)));
        assert_eq!(enc(&json!([20, {"x": 1}])), enc(&json!([20.0, {"x": 1.0}])));

        let key = [Pointer::parse("/k").unwrap(), Pointer::parse("/n").unwrap()];
        let a = encode_key(7, &key, &json!({"k": "a", "n": 2})).unwrap();
        let b = encode_key(7, &key, &json!({"k": "ab", "n": 1})).unwrap();
        let c = encode_key(8, &key, &json!({"k": "a", "n": 1})).unwrap();
        assert!(a < b && b < c);
        assert_eq!(binding_of(&c), 8);
        assert_eq!(
            encode_key(7, &key, &json!({"k": "a"}))
                .unwrap_err()
                .to_string(),
            "/n"
        );
        for v in &ascending {
            let packed = encode_key(1, &[Pointer::root()], v).unwrap();
            let back = decode_values(&packed);
            assert_eq!(
                compare(&back[0], v),
                Ordering::Equal,
                "{v} decodes to {}",
                back[0]
            );
        }
    }
}
