//! `sum`: integers stay exact (mixed signs included), any float makes a float, overflow is an
//! error, and numbers given as strings are summed exactly as decimals, giving a string.

use super::{Loc, ReduceError, show, type_error};
use serde_json::{Number, Value};

/// Most digits a decimal string may expand to (`1e400` has 401): a bound on the memory and time
/// one numeric string can cost, far beyond any real amount.
const DECIMAL_DIGITS_MAX: usize = 4096;

pub(super) fn sum(loc: &Loc, lhs: Option<Value>, rhs: Value) -> Result<Value, ReduceError> {
    let not_numbers =
        |lhs: Option<&Value>, rhs: &Value| type_error(loc, "sum", "numbers", lhs, Some(rhs));
    let Some(r) = Num::of(&rhs) else {
        return Err(not_numbers(lhs.as_ref(), &rhs));
    };
    let Some(lhs) = lhs else { return Ok(rhs) }; // Against nothing: 0 + rhs.
    let Some(l) = Num::of(&lhs) else {
        return Err(not_numbers(Some(&lhs), &rhs));
    };
    let overflow = || ReduceError::SumOverflow {
        at: loc.to_string(),
        lhs: show(Some(&lhs)),
        rhs: show(Some(&rhs)),
    };
    match (l, r) {
        (Num::Int(a), Num::Int(b)) => {
            let s = a + b; // Both fit in 64 bits, so i128 cannot overflow.
            if let Ok(i) = i64::try_from(s) {
                Ok(Value::Number(Number::from(i)))
            } else if let Ok(u) = u64::try_from(s) {
                Ok(Value::Number(Number::from(u)))
            } else {
                Err(overflow())
            }
        }
        (l @ (Num::Int(_) | Num::Float(_)), r @ (Num::Int(_) | Num::Float(_))) => {
            let s = l.as_f64() + r.as_f64();
            Number::from_f64(s).map(Value::Number).ok_or_else(overflow)
        }
        (l, r) => {
            let (Some(a), Some(b)) = (l.into_decimal(), r.into_decimal()) else {
                return Err(overflow());
            };
            let s = a.add(&b);
            if s.digits.len() > DECIMAL_DIGITS_MAX {
                return Err(overflow());
            }
            Ok(Value::String(s.to_string()))
        }
    }
}

enum Num {
    Int(i128),
    Float(f64),
    Decimal(Decimal),
}

impl Num {
    fn of(v: &Value) -> Option<Num> {
        match v {
            Value::Number(n) => Some(if let Some(i) = n.as_i64() {
                Num::Int(i as i128)
            } else if let Some(u) = n.as_u64() {
                Num::Int(u as i128)
            } else {
                Num::Float(n.as_f64()?)
            }),
            Value::String(s) => Decimal::parse(s).map(Num::Decimal),
            _ => None,
        }
    }

    fn as_f64(&self) -> f64 {
        match self {
            Num::Int(i) => *i as f64,
            Num::Float(f) => *f,
            Num::Decimal(_) => f64::NAN,
        }
    }

    fn into_decimal(self) -> Option<Decimal> {
        match self {
            Num::Int(i) => Decimal::parse(&i.to_string()),
            // Display of f64 is the shortest decimal that round-trips, without an exponent.
            Num::Float(f) => Decimal::parse(&f.to_string()),
            Num::Decimal(d) => Some(d),
        }
    }
}

/// An exact decimal: `digits` (most significant first, no leading zeros) times 10^-scale.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    scale: usize,
}

impl Decimal {
    /// Parse the JSON number grammar, leniently: a leading `+`, and `5.` or `.5`, are accepted.
    pub(super) fn parse(s: &str) -> Option<Decimal> {
        let b = s.as_bytes();
        let mut i = 0;
        let negative = match b.first() {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let mut digits = Vec::new();
        let int_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            digits.push(b[i] - b'0');
            i += 1;
        }
        let mut any = i > int_start;
        let mut scale: i64 = 0;
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let frac_start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                digits.push(b[i] - b'0');
                i += 1;
            }
            scale = (i - frac_start) as i64;
            any |= i > frac_start;
        }
        if !any {
            return None;
        }
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            i += 1;
            let exp_negative = match b.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let exp_start = i;
            let mut exp: i64 = 0;
            while i < b.len() && b[i].is_ascii_digit() {
                exp = exp.checked_mul(10)?.checked_add((b[i] - b'0') as i64)?;
                if exp > DECIMAL_DIGITS_MAX as i64 {
                    return None;
                }
                i += 1;
            }
            if i == exp_start {
                return None;
            }
            scale -= if exp_negative { -exp } else { exp };
        }
        if i != b.len() {
            return None;
        }
        if scale < 0 {
            digits.extend(std::iter::repeat_n(0, (-scale) as usize));
            scale = 0;
        }
        let leading = digits.iter().take_while(|d| **d == 0).count();
        digits.drain(..leading);
        if digits.len() + scale as usize > DECIMAL_DIGITS_MAX {
            return None;
        }
        Some(Decimal {
            negative: negative && !digits.is_empty(),
            digits,
            scale: scale as usize,
        })
    }

    /// Exact sum, at the larger of the two scales.
    pub(super) fn add(&self, other: &Decimal) -> Decimal {
        let scale = self.scale.max(other.scale);
        let a = self.scaled(scale);
        let b = other.scaled(scale);
        let (negative, digits) = if self.negative == other.negative {
            (self.negative, add_magnitudes(&a, &b))
        } else {
            match compare_magnitudes(&a, &b) {
                std::cmp::Ordering::Less => (other.negative, sub_magnitudes(&b, &a)),
                _ => (self.negative, sub_magnitudes(&a, &b)),
            }
        };
        let leading = digits.iter().take_while(|d| **d == 0).count();
        let digits = digits[leading..].to_vec();
        Decimal {
            negative: negative && !digits.is_empty(),
            digits,
            scale,
        }
    }

    fn scaled(&self, scale: usize) -> Vec<u8> {
        let mut d = self.digits.clone();
        d.extend(std::iter::repeat_n(0, scale - self.scale));
        d
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut digits: Vec<u8> = vec![0; (self.scale + 1).saturating_sub(self.digits.len())];
        digits.extend_from_slice(&self.digits);
        let point = digits.len() - self.scale;
        let mut s = String::with_capacity(digits.len() + 2);
        if self.negative {
            s.push('-');
        }
        for (i, d) in digits.iter().enumerate() {
            if i == point {
                s.push('.');
            }
            s.push((b'0' + d) as char);
        }
        f.write_str(&s)
    }
}

fn compare_magnitudes(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let strip = |x: &[u8]| x.iter().position(|d| *d != 0).map_or(0, |p| x.len() - p);
    let (la, lb) = (strip(a), strip(b));
    la.cmp(&lb)
        .then_with(|| a[a.len() - la..].cmp(&b[b.len() - lb..]))
}

fn add_magnitudes(a: &[u8], b: &[u8]) -> Vec<u8> {
    let n = a.len().max(b.len());
    let mut out = vec![0u8; n + 1];
    let mut carry = 0;
    for i in 0..n {
        let x = if i < a.len() { a[a.len() - 1 - i] } else { 0 };
        let y = if i < b.len() { b[b.len() - 1 - i] } else { 0 };
        let s = x + y + carry;
        out[n - i] = s % 10;
        carry = s / 10;
    }
    out[0] = carry;
    out
}

/// a - b, where |a| >= |b|.
fn sub_magnitudes(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i8;
    for i in 0..a.len() {
        let x = a[a.len() - 1 - i] as i8;
        let y = if i < b.len() {
            b[b.len() - 1 - i] as i8
        } else {
            0
        };
        let mut d = x - y - borrow;
        borrow = 0;
        if d < 0 {
            d += 10;
            borrow = 1;
        }
        out[a.len() - 1 - i] = d as u8;
    }
    out
}
