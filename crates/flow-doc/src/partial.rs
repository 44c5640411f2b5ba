//! Reading a few properties of a document without building the rest of it.
//!
//! A task reading its source needs only a document's clock and shuffle key, while a full
//! `serde_json::Value` of it costs an allocation per property and string. This parses the
//! whole text (so a document that is not JSON is still refused) but keeps only the wanted
//! top-level properties, skipping the others without allocating.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// An object holding only the `wanted` top-level properties of the JSON object in `text`
/// (those it has). Fails if `text` is not JSON; a value that is not an object gives an empty
/// object.
pub fn properties(text: &[u8], wanted: &[String]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let out = Document { wanted }.deserialize(&mut de)?;
    de.end()?;
    Ok(Value::Object(out))
}

/// The top-level properties `ptrs` point into (what `properties` must keep for them), or
/// None if one of them is the whole document or starts with an array index.
pub fn tops(ptrs: &[crate::Pointer]) -> Option<Vec<String>> {
    ptrs.iter()
        .map(|p| match p.0.first() {
            Some(crate::ptr::Token::Property(name)) => Some(name.clone()),
            _ => None,
        })
        .collect()
}

struct Document<'w> {
    wanted: &'w [String],
}

impl<'de> DeserializeSeed<'de> for Document<'_> {
    type Value = Map<String, Value>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Document<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        while let Some(wanted) = map.next_key_seed(Key {
            wanted: self.wanted,
        })? {
            match wanted {
                Some(i) => {
                    let v: Value = map.next_value()?;
                    out.insert(self.wanted[i].clone(), v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }

    // Any other JSON value: parsed to its end and ignored.
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Map::new())
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Map::new())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Map::new())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Map::new())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Map::new())
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Map::new())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Map::new())
    }
}

/// A property name: which of the wanted ones it is, if any (no allocation for the rest).
struct Key<'w> {
    wanted: &'w [String],
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a property name")
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.wanted.iter().position(|w| *w == v))
    }
}

#[cfg(test)]
mod test {
    use serde_json::{Value, json};

    fn properties(text: &[u8], wanted: &[&str]) -> Result<Value, serde_json::Error> {
        let wanted: Vec<String> = wanted.iter().map(|w| w.to_string()).collect();
        super::properties(text, &wanted)
    }

    #[test]
    fn keeps_only_what_is_wanted_and_still_refuses_what_is_not_json() {
        let text = br#"{"_meta":{"uuid":"u"},"a":{"b":[1,2]},"skip":{"deep":["x",{"y":null}]},"c\u0041":"esc","n":1.5}"#;
        let got = properties(text, &["a", "cA", "n", "missing"]).unwrap();
        assert_eq!(got, json!({"a": {"b": [1, 2]}, "cA": "esc", "n": 1.5}));
        // What a full parse gives, at the wanted properties.
        let full: Value = serde_json::from_slice(text).unwrap();
        for p in ["a", "cA", "n"] {
            assert_eq!(got[p], full[p]);
        }
        assert!(properties(br#"{"a":1,"b":}"#, &["a"]).is_err());
        assert!(properties(br#"{"a":1} trailing"#, &["a"]).is_err());
        assert!(properties(br#"{"a":1,"skip":[1,}"#, &["a"]).is_err());
        assert_eq!(properties(b"[1,2]", &["a"]).unwrap(), json!({}));
    }
}
