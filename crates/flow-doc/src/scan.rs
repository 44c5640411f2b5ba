//! Checking a document from its JSON text without building it: the quick check
//! (`fast_check.rs`) driven by the parser, keeping only the few top-level properties the
//! caller needs (its key's, `_meta`).
//!
//! A `serde_json::Value` of a document costs an allocation per property and string; most
//! documents a host takes in are valid, so it parses and checks them in one pass that
//! allocates only for what it keeps. Whatever the quick check would not know valid (invalid,
//! unsure, not JSON) stops the scan, and the caller falls back to parsing the document and
//! validating it in full, which also words the error: so a scan changes what checking costs,
//! never what it decides.

use crate::fast_check::{Additional, FastCheck};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Why a scan stopped (the fallback finds out the rest).
const UNKNOWN: &str = "not known valid";

/// The top-level properties `keep` of the JSON object `text` (those it has), if the object is
/// known valid for `check` apart from its `_meta`, which is kept (when in `keep`) but not
/// checked, as validation leaves it out. None when it is not known valid, not an object,
/// or not JSON.
pub(crate) fn scan(check: &FastCheck, text: &[u8], keep: &[&str]) -> Option<Map<String, Value>> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let kept = Root { check, keep }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(kept)
}

/// The document: an object whose `keep` members are parsed and kept.
struct Root<'a> {
    check: &'a FastCheck,
    keep: &'a [&'a str],
}

impl<'de> DeserializeSeed<'de> for Root<'_> {
    type Value = Map<String, Value>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Root<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let c = self.check;
        if !c.allows(OBJECT_KIND) || !c.allowed.is_empty() {
            return Err(de::Error::custom(UNKNOWN));
        }
        let mut kept = Map::new();
        let mut seen = Required::new(c.required.len())?;
        let mut meta_seen = false;
        while let Some(member) = map.next_key_seed(Member {
            check: c,
            keep: self.keep,
        })? {
            if member.meta {
                // A second `_meta` (the parsed document keeps the last, the text both): the
                // full path decides.
                if std::mem::replace(&mut meta_seen, true) {
                    return Err(de::Error::custom(UNKNOWN));
                }
                // Not validated: the host replaces it (but its `op`).
                let v: Value = map.next_value()?;
                if let Some(k) = member.keep {
                    kept.insert(self.keep[k].to_string(), v);
                }
                continue;
            }
            if let Some(r) = member.required {
                seen.set(r);
            }
            let sub = c.member(member.prop);
            match member.keep {
                Some(k) => {
                    let v: Value = map.next_value()?;
                    if let Some(sub) = sub?
                        && !sub.is_valid(&v)
                    {
                        return Err(de::Error::custom(UNKNOWN));
                    }
                    kept.insert(self.keep[k].to_string(), v);
                }
                None => next_checked(&mut map, sub?)?,
            }
        }
        seen.all()?;
        Ok(kept)
    }
}

/// A member's name, looked up as it is parsed (no allocation): which property of the
/// schema it is, which required name, and which kept one.
struct Member<'a> {
    check: &'a FastCheck,
    keep: &'a [&'a str],
}

struct Found {
    prop: Option<usize>,
    required: Option<usize>,
    keep: Option<usize>,
    meta: bool,
}

impl<'de> DeserializeSeed<'de> for Member<'_> {
    type Value = Found;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Member<'_> {
    type Value = Found;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a property name")
    }

    fn visit_str<E>(self, name: &str) -> Result<Found, E> {
        let (prop, required) = self.check.member_names(name);
        Ok(Found {
            prop,
            required,
            keep: self.keep.iter().position(|k| *k == name),
            meta: name == "_meta",
        })
    }
}

/// Which required names were seen (a set, not a count: a name twice is once).
struct Required(u64);

impl Required {
    fn new<E: de::Error>(n: usize) -> Result<Self, E> {
        if n > 64 {
            return Err(E::custom(UNKNOWN));
        }
        Ok(Required(if n == 64 { 0 } else { u64::MAX << n }))
    }

    fn set(&mut self, i: usize) {
        self.0 |= 1 << i;
    }

    fn all<E: de::Error>(&self) -> Result<(), E> {
        if self.0 == u64::MAX {
            Ok(())
        } else {
            Err(E::custom(UNKNOWN))
        }
    }
}

/// Parse the next value of `map`, checked against `check` (None: anything).
fn next_checked<'de, A: MapAccess<'de>>(
    map: &mut A,
    check: Option<&FastCheck>,
) -> Result<(), A::Error> {
    match check {
        Some(c) => map.next_value_seed(Checked(c)),
        None => map.next_value_seed(Anything),
    }
}

/// Any JSON value, parsed through (not built) as a full parse would: strings are checked for
/// UTF-8 and escapes, numbers for range, nesting for depth. (`IgnoredAny` skips values
/// without checking them, and would let through text that no reader can parse.)
struct Anything;

impl<'de> DeserializeSeed<'de> for Anything {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Anything {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Anything)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Anything)?.is_some() {
            map.next_value_seed(Anything)?;
        }
        Ok(())
    }
}

/// A value that must be known valid for a quick check.
struct Checked<'a>(&'a FastCheck);

const OBJECT_KIND: u8 = crate::fast_check::OBJECT;

impl<'de> DeserializeSeed<'de> for Checked<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Checked<'_> {
    /// A scalar: its kind allowed, and then the rest of the check on it as a `Value` (cheap
    /// for a scalar; a string is copied only when the check has lengths or allowed values).
    fn scalar<E: de::Error>(&self, kind: u8, v: impl FnOnce() -> Value) -> Result<(), E> {
        let c = self.0;
        if !c.allows(kind) {
            return Err(E::custom(UNKNOWN));
        }
        if c.checks_scalars() && !c.is_valid(&v()) {
            return Err(E::custom(UNKNOWN));
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for Checked<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(crate::fast_check::NULL, || Value::Null)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<(), E> {
        self.scalar(crate::fast_check::BOOLEAN, || Value::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<(), E> {
        self.scalar(crate::fast_check::INTEGER, || Value::from(n))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<(), E> {
        self.scalar(crate::fast_check::INTEGER, || Value::from(n))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<(), E> {
        // A float where only `integer` is allowed: unsure (drafts differ on `1.0`).
        self.scalar(crate::fast_check::NUMBER, || {
            Number::from_f64(n)
                .map(Value::Number)
                .unwrap_or(Value::Null)
        })
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.scalar(crate::fast_check::STRING, || Value::String(s.to_string()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let c = self.0;
        if !c.allows(crate::fast_check::ARRAY) || !c.allowed.is_empty() {
            return Err(de::Error::custom(UNKNOWN));
        }
        match &c.items {
            Some(items) => while seq.next_element_seed(Checked(items))?.is_some() {},
            None => while seq.next_element_seed(Anything)?.is_some() {},
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let c = self.0;
        if !c.allows(OBJECT_KIND) || !c.allowed.is_empty() {
            return Err(de::Error::custom(UNKNOWN));
        }
        let mut seen = Required::new(c.required.len())?;
        while let Some(member) = map.next_key_seed(Member {
            check: c,
            keep: &[],
        })? {
            if let Some(r) = member.required {
                seen.set(r);
            }
            next_checked(&mut map, c.member(member.prop)?)?;
        }
        seen.all()
    }
}

impl FastCheck {
    /// The check of a member that is property `prop` (None: not one of `properties`);
    /// Ok(None) for anything goes, an error for a member that may not be there.
    fn member<E: de::Error>(&self, prop: Option<usize>) -> Result<Option<&FastCheck>, E> {
        match (prop, &self.additional) {
            (Some(i), _) => Ok(Some(&self.props[i].1)),
            (None, Additional::Any) => Ok(None),
            (None, Additional::None) => Err(E::custom(UNKNOWN)),
            (None, Additional::Schema(c)) => Ok(Some(c)),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::fast_check::test::{arb_doc, arb_schema};
    use proptest::prelude::*;
    use serde_json::json;

    proptest! {
        /// A scan of a document's text knows it valid exactly when the quick check knows
        /// the parsed document valid (but for an `enum` or `const` on the whole document,
        /// which a scan leaves to the fallback), and keeps what the document has.
        #[test]
        fn a_scan_agrees_with_the_quick_check(
            schema in arb_schema(),
            docs in prop::collection::vec(arb_doc(), 1..8),
        ) {
            let Some(c) = FastCheck::compile(&schema) else { return Ok(()) };
            for doc in docs.iter().filter(|d| d.is_object()) {
                let text = serde_json::to_vec(doc).unwrap();
                let scanned = scan(&c, &text, &["a", "c"]);
                let known = c.is_valid(doc);
                prop_assert!(scanned.is_none() || known, "{schema} {doc}");
                if c.allowed.is_empty() {
                    prop_assert_eq!(scanned.is_some(), known, "{} {}", schema, doc);
                }
                if let Some(kept) = scanned {
                    for k in ["a", "c"] {
                        prop_assert_eq!(kept.get(k), doc.get(k));
                    }
                }
            }
        }
    }

    fn compiled(schema: &Value) -> FastCheck {
        FastCheck::compile(schema).expect("a schema of the quick check's keywords")
    }

    #[test]
    fn a_scan_keeps_what_is_asked_and_knows_valid_what_the_quick_check_does() {
        let schema = json!({
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "customer": {"type": "string", "minLength": 1},
                "amount": {"type": "number", "minimum": 0},
                "tags": {"type": "array", "items": {"type": "string"}},
                "nested": {"type": "object", "properties": {"a": {"enum": [1, "x"]}}, "required": ["a"], "additionalProperties": false},
            },
            "required": ["id", "customer"],
            "additionalProperties": {"type": ["string", "null"]},
        });
        let c = compiled(&schema);
        let keep = ["id", "_meta"];
        let text = br#"{"_meta":{"op":"c","anything":[1]},"id":7,"customer":"c\u00e9","amount":1.5,"tags":["a"],"nested":{"a":"x"},"extra":null}"#;
        let kept = scan(&c, text, &keep).unwrap();
        assert_eq!(
            Value::Object(kept),
            json!({"id": 7, "_meta": {"op": "c", "anything": [1]}})
        );
        for invalid in [
            &br#"{"customer":"c"}"#[..],
            br#"{"id":"7","customer":"c"}"#,
            br#"{"id":7,"customer":""}"#,
            br#"{"id":7,"customer":"c","amount":-1}"#,
            br#"{"id":7,"customer":"c","tags":[1]}"#,
            br#"{"id":7,"customer":"c","nested":{"a":2}}"#,
            br#"{"id":7,"customer":"c","nested":{"a":1,"b":1}}"#,
            br#"{"id":7,"customer":"c","extra":1}"#,
            br#"{"id":7.0,"customer":"c"}"#,
            br#"{"id":7,"customer":"c","amount":}"#,
            br#"{"id":7,"customer":"c"} trailing"#,
            br#"[{"id":7,"customer":"c"}]"#,
        ] {
            assert!(
                scan(&c, invalid, &keep).is_none(),
                "{}",
                String::from_utf8_lossy(invalid)
            );
        }
        // What a full parse refuses anywhere, checked or not, a scan refuses too: bad UTF-8,
        // a lone surrogate, a number out of range, nesting past the parser's depth.
        let mut deep = br#"{"id":1,"customer":"c","x":"#.to_vec();
        deep.extend(std::iter::repeat_n(b'[', 129));
        deep.extend(std::iter::repeat_n(b']', 129));
        deep.push(b'}');
        for unparsable in [
            &b"{\"id\":1,\"customer\":\"c\",\"x\":\"\xff\"}"[..],
            br#"{"id":1,"customer":"c","x":"\ud800"}"#,
            br#"{"id":1,"customer":"c","x":1e400}"#,
            br#"{"id":1,"customer":"c","\ud800":1}"#,
            br#"{"id":1,"customer":"c","tags":["a"],"x":[1e400]}"#,
            &deep,
        ] {
            assert!(serde_json::from_slice::<Value>(unparsable).is_err());
            assert!(
                scan(&c, unparsable, &keep).is_none(),
                "{}",
                String::from_utf8_lossy(unparsable)
            );
        }
        let loose = compiled(&json!({"type": "object"}));
        assert!(scan(&loose, br#"{"x":[[1e400]]}"#, &keep).is_none());
        assert!(scan(&loose, br#"{"x":[[1e300]]}"#, &keep).is_some());
        // A second `_meta` (escaped or not) is the full path's to judge.
        for twice in [
            &br#"{"_meta":{"op":"c"},"id":1,"customer":"c","_meta":{"uuid":"forged"}}"#[..],
            br#"{"_meta":{"op":"c"},"id":1,"customer":"c","\u005fmeta":{"uuid":"forged"}}"#,
        ] {
            assert!(scan(&c, twice, &keep).is_none());
        }
        // A name twice is once: both values are checked, the last is kept.
        let twice = br#"{"id":1,"id":2,"customer":"c"}"#;
        assert_eq!(scan(&c, twice, &keep).unwrap()["id"], json!(2));
        assert!(scan(&c, br#"{"id":1,"id":"x","customer":"c"}"#, &keep).is_none());
    }
}
