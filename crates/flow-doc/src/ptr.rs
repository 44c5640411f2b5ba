//! JSON pointers (RFC 6901): parsed once, then used to query and create document locations.

use serde_json::Value;
use std::fmt;

/// One token of a pointer. Index-like tokens also match object properties of that name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Token {
    /// A property name or array index, e.g. `items` or `3`.
    Property(String),
    /// `-`: one past the end of an array (only meaningful when creating).
    NextIndex,
}

/// A parsed JSON pointer such as `/customer` or `/items/0/id`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pointer(pub Vec<Token>);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PointerError {
    #[error("JSON pointer {0:?} must be empty or begin with '/'")]
    NoLeadingSlash(String),
    #[error("JSON pointer {0:?} has an invalid escape (only ~0 and ~1 are allowed)")]
    BadEscape(String),
}

impl Pointer {
    /// The empty pointer, which addresses the whole document.
    pub fn root() -> Self {
        Pointer(Vec::new())
    }

    pub fn parse(s: &str) -> Result<Self, PointerError> {
        if s.is_empty() {
            return Ok(Self::root());
        }
        let Some(rest) = s.strip_prefix('/') else {
            return Err(PointerError::NoLeadingSlash(s.to_string()));
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            if raw == "-" {
                tokens.push(Token::NextIndex);
                continue;
            }
            let mut out = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err(PointerError::BadEscape(s.to_string())),
                    }
                } else {
                    out.push(c);
                }
            }
            tokens.push(Token::Property(out));
        }
        Ok(Pointer(tokens))
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The value at this location, if present.
    pub fn query<'v>(&self, mut v: &'v Value) -> Option<&'v Value> {
        for token in &self.0 {
            v = match (token, v) {
                (Token::Property(p), Value::Object(m)) => m.get(p)?,
                (Token::Property(p), Value::Array(a)) => a.get(array_index(p)?)?,
                _ => return None,
            };
        }
        Some(v)
    }

    /// The value at this location, if present, mutably.
    pub fn query_mut<'v>(&self, mut v: &'v mut Value) -> Option<&'v mut Value> {
        for token in &self.0 {
            v = match (token, v) {
                (Token::Property(p), Value::Object(m)) => m.get_mut(p)?,
                (Token::Property(p), Value::Array(a)) => a.get_mut(array_index(p)?)?,
                _ => return None,
            };
        }
        Some(v)
    }

    /// The value at this location, creating objects (or padding arrays with nulls) on the way.
    /// Returns None where an existing scalar is in the way.
    pub fn create<'v>(&self, mut v: &'v mut Value) -> Option<&'v mut Value> {
        for token in &self.0 {
            if v.is_null() {
                *v = match token {
                    Token::Property(p) if array_index(p).is_none() => {
                        Value::Object(Default::default())
                    }
                    Token::Property(_) => Value::Object(Default::default()),
                    Token::NextIndex => Value::Array(Vec::new()),
                };
            }
            v = match (token, v) {
                (Token::Property(p), Value::Object(m)) => m.entry(p.clone()).or_insert(Value::Null),
                (Token::Property(p), Value::Array(a)) => {
                    let i = array_index(p)?;
                    if a.len() <= i {
                        a.resize(i + 1, Value::Null);
                    }
                    &mut a[i]
                }
                (Token::NextIndex, Value::Array(a)) => {
                    a.push(Value::Null);
                    a.last_mut().expect("just pushed")
                }
                _ => return None,
            };
        }
        Some(v)
    }

    /// The last property name, which names a projected column (`/a/b` -> `b`).
    pub fn last_property(&self) -> Option<&str> {
        match self.0.last() {
            Some(Token::Property(p)) => Some(p),
            _ => None,
        }
    }
}

fn array_index(p: &str) -> Option<usize> {
    // RFC 6901: no leading zeros, decimal digits only.
    if p.is_empty() || (p.len() > 1 && p.starts_with('0')) || !p.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    p.parse().ok()
}

/// `ptr` (a pointer's text) extended by one property `token`, escaped (`~` as `~0`, `/` as
/// `~1`).
pub fn child(ptr: &str, token: &str) -> String {
    format!("{ptr}/{}", token.replace('~', "~0").replace('/', "~1"))
}

/// A URI fragment with its percent-escapes decoded (`#/%24defs/a` means `/$defs/a`).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        if bytes[i] == b'%'
            && let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JSON pointer written as a URI fragment (`#` and it): characters a fragment may not
/// hold, and `%` itself, percent-encoded.
pub fn pointer_fragment(ptr: &str) -> String {
    let mut out = String::with_capacity(ptr.len() + 1);
    out.push('#');
    for b in ptr.bytes() {
        let plain = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for token in &self.0 {
            match token {
                Token::Property(p) => write!(f, "/{}", p.replace('~', "~0").replace('/', "~1"))?,
                Token::NextIndex => f.write_str("/-")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_query_create_cases() {
        let doc = json!({"a": {"b~c": [1, {"d/e": true}]}, "": 5, "0": "zero"});
        let cases: &[(&str, Option<Value>)] = &[
            ("", Some(doc.clone())),
            ("/", Some(json!(5))),
            ("/a/b~0c/0", Some(json!(1))),
            ("/a/b~0c/1/d~1e", Some(json!(true))),
            ("/a/b~0c/2", None),
            ("/a/b~0c/01", None),
            ("/0", Some(json!("zero"))),
            ("/missing/x", None),
        ];
        for (ptr, expect) in cases {
            let p = Pointer::parse(ptr).unwrap();
            assert_eq!(p.query(&doc).cloned(), *expect, "{ptr}");
            assert_eq!(p.to_string(), *ptr, "round trip");
        }
        assert_eq!(
            Pointer::parse("a"),
            Err(PointerError::NoLeadingSlash("a".into()))
        );
        assert_eq!(
            Pointer::parse("/a~2"),
            Err(PointerError::BadEscape("/a~2".into()))
        );

        let mut v = Value::Null;
        *Pointer::parse("/x/y").unwrap().create(&mut v).unwrap() = json!(1);
        *Pointer::parse("/list/-").unwrap().create(&mut v).unwrap() = json!(2);
        assert_eq!(v, json!({"x": {"y": 1}, "list": [2]}));
        assert!(Pointer::parse("/x/y/z").unwrap().create(&mut v).is_none());
    }
}
