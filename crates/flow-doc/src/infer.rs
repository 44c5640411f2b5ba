//! Inferring a JSON schema from documents: the smallest schema of the common keywords
//! (`type`, `properties`, `required`, `items`, `format`) that every document seen matches.
//!
//! Each document widens a `Shape`: the types seen at a location, the properties of its
//! objects (required: those every object had), the shape of its arrays' items, and a string
//! format that every string there had (`date-time`, `date`, `uuid`). An object with more
//! distinct property names than `PROPERTIES_MAX` is taken as a map: its values' shapes merge
//! into `additionalProperties`. The host's `_meta` is left out.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Distinct property names an object location may have before it is taken as a map.
pub const PROPERTIES_MAX: usize = 500;

const NULL: u8 = 1;
const BOOLEAN: u8 = 1 << 1;
const INTEGER: u8 = 1 << 2;
const NUMBER: u8 = 1 << 3;
const STRING: u8 = 1 << 4;
const OBJECT: u8 = 1 << 5;
const ARRAY: u8 = 1 << 6;

/// What the documents seen so far look like at one location.
#[derive(Debug, Default, Clone)]
pub struct Shape {
    types: u8,
    /// Objects seen here, to tell which properties every one of them had.
    objects: u64,
    /// Each property and in how many of the objects it was.
    properties: BTreeMap<String, (Shape, u64)>,
    /// Set once the location is taken as a map: every value's shape.
    map_values: Option<Box<Shape>>,
    items: Option<Box<Shape>>,
    /// The format every string here had so far; `None` once one had none (or before any).
    format: Option<Format>,
    strings: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    DateTime,
    Date,
    Uuid,
}

impl Format {
    fn of(s: &str) -> Option<Format> {
        if is_date_time(s) {
            Some(Format::DateTime)
        } else if is_date(s.as_bytes()) {
            Some(Format::Date)
        } else if is_uuid(s) {
            Some(Format::Uuid)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::DateTime => "date-time",
            Format::Date => "date",
            Format::Uuid => "uuid",
        }
    }
}

impl Shape {
    /// Widen the shape to take `doc` (a whole document: its `_meta` is skipped).
    pub fn add_document(&mut self, doc: &Value) {
        self.add(doc, true);
    }

    fn add(&mut self, v: &Value, top: bool) {
        match v {
            Value::Null => self.types |= NULL,
            Value::Bool(_) => self.types |= BOOLEAN,
            Value::Number(n) if n.is_i64() || n.is_u64() => self.types |= INTEGER,
            Value::Number(_) => self.types |= NUMBER,
            Value::String(s) => {
                self.types |= STRING;
                let f = Format::of(s);
                self.format = if self.strings == 0 {
                    f
                } else {
                    self.format.filter(|have| Some(*have) == f)
                };
                self.strings += 1;
            }
            Value::Array(items) => {
                self.types |= ARRAY;
                let shape = self.items.get_or_insert_with(Default::default);
                for i in items {
                    shape.add(i, false);
                }
            }
            Value::Object(m) => {
                self.types |= OBJECT;
                self.objects += 1;
                for (k, v) in m {
                    if top && k == "_meta" {
                        continue;
                    }
                    if let Some(values) = &mut self.map_values {
                        values.add(v, false);
                        continue;
                    }
                    let entry = self.properties.entry(k.clone()).or_default();
                    entry.0.add(v, false);
                    entry.1 += 1;
                }
                if self.map_values.is_none() && self.properties.len() > PROPERTIES_MAX {
                    let mut values = Shape::default();
                    for (s, _) in std::mem::take(&mut self.properties).into_values() {
                        values.merge(s);
                    }
                    self.map_values = Some(Box::new(values));
                }
            }
        }
    }

    /// Widen this shape by everything `other` takes.
    fn merge(&mut self, other: Shape) {
        self.types |= other.types;
        self.format = match (self.strings, other.strings) {
            (_, 0) => self.format,
            (0, _) => other.format,
            _ => self.format.filter(|f| Some(*f) == other.format),
        };
        self.strings += other.strings;
        self.objects += other.objects;
        for (k, (s, n)) in other.properties {
            let entry = self.properties.entry(k).or_default();
            entry.0.merge(s);
            entry.1 += n;
        }
        if let Some(v) = other.map_values {
            self.map_values
                .get_or_insert_with(Default::default)
                .merge(*v);
        }
        if let Some(i) = other.items {
            self.items.get_or_insert_with(Default::default).merge(*i);
        }
        // A map met a plain object (or the other way round): the plain one's properties are
        // values of the map too.
        if let Some(values) = &mut self.map_values {
            for (s, _) in std::mem::take(&mut self.properties).into_values() {
                values.merge(s);
            }
        }
    }

    /// The schema of this shape (`{}` for a location never seen).
    pub fn to_schema(&self) -> Value {
        let mut s = Map::new();
        let mut types: Vec<&str> = Vec::new();
        for (bit, name) in [
            (ARRAY, "array"),
            (BOOLEAN, "boolean"),
            (INTEGER, "integer"),
            (NULL, "null"),
            (NUMBER, "number"),
            (OBJECT, "object"),
            (STRING, "string"),
        ] {
            // An integer location that also had fractions is a number.
            if self.types & bit != 0 && !(bit == INTEGER && self.types & NUMBER != 0) {
                types.push(name);
            }
        }
        match types.as_slice() {
            [] => {}
            [one] => {
                s.insert("type".into(), json!(one));
            }
            many => {
                s.insert("type".into(), json!(many));
            }
        }
        if let Some(f) = self.format {
            s.insert("format".into(), json!(f.name()));
        }
        if self.types & OBJECT != 0 {
            if let Some(values) = &self.map_values {
                s.insert("additionalProperties".into(), values.to_schema());
            } else if !self.properties.is_empty() {
                let props: Map<String, Value> = self
                    .properties
                    .iter()
                    .map(|(k, (shape, _))| (k.clone(), shape.to_schema()))
                    .collect();
                let required: Vec<&String> = self
                    .properties
                    .iter()
                    .filter(|(_, (_, n))| *n == self.objects)
                    .map(|(k, _)| k)
                    .collect();
                s.insert("properties".into(), Value::Object(props));
                if !required.is_empty() {
                    s.insert("required".into(), json!(required));
                }
            }
        }
        if let Some(items) = self
            .items
            .as_ref()
            .filter(|i| self.types & ARRAY != 0 && i.types != 0)
        {
            s.insert("items".into(), items.to_schema());
        }
        Value::Object(s)
    }
}

/// `YYYY-MM-DD`, a day of that month (February 29 in leap years only).
fn is_date(b: &[u8]) -> bool {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    if ![0..4, 5..7, 8..10]
        .into_iter()
        .all(|r| b[r].iter().all(u8::is_ascii_digit))
    {
        return false;
    }
    let num =
        |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    let (year, month, day) = (num(0..4), num(5..7), num(8..10));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// RFC 3339: a date, `T` (or `t`, or a space), `HH:MM:SS` (a leap second only at 23:59),
/// optional fraction, and `Z` or an offset `±HH:MM`.
fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || !is_date(&b[..10]) || !matches!(b[10], b'T' | b't' | b' ') {
        return false;
    }
    let two = |i: usize, max: u8| {
        b[i].is_ascii_digit()
            && b[i + 1].is_ascii_digit()
            && (b[i] - b'0') * 10 + (b[i + 1] - b'0') <= max
    };
    if !(two(11, 23) && b[13] == b':' && two(14, 59) && b[16] == b':' && two(17, 60)) {
        return false;
    }
    if b[17] == b'6' && &b[11..16] != b"23:59" {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', _, _, b':', _, _] => two(i + 1, 23) && two(i + 4, 59),
        _ => false,
    }
}

/// `8-4-4-4-12` hexadecimal digits.
fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod test {
    use super::*;

    fn infer(docs: &[Value]) -> Value {
        let mut shape = Shape::default();
        for d in docs {
            shape.add_document(d);
        }
        shape.to_schema()
    }

    #[test]
    fn shapes_widen_to_take_every_document() {
        let docs = [
            json!({"_meta": {"uuid": "x"}, "id": 1, "name": "a", "at": "2026-12-07T10:00:00Z",
                   "tags": ["x"], "address": {"city": "Oslo"}, "score": 1}),
            json!({"id": 2, "name": null, "at": "2026-12-07T10:00:01.5+01:00", "tags": [],
                   "address": {"city": "Rome", "zip": "00100"}, "score": 2.5,
                   "day": "2026-12-07", "ref": "0192f6a8-7c1e-7abc-8def-0123456789ab"}),
        ];
        let schema = infer(&docs);
        assert_eq!(
            schema,
            json!({
                "type": "object",
                "properties": {
                    "address": {"type": "object", "properties": {
                        "city": {"type": "string"}, "zip": {"type": "string"}}, "required": ["city"]},
                    "at": {"type": "string", "format": "date-time"},
                    "day": {"type": "string", "format": "date"},
                    "id": {"type": "integer"},
                    "name": {"type": ["null", "string"]},
                    "ref": {"type": "string", "format": "uuid"},
                    "score": {"type": "number"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["address", "at", "id", "name", "score", "tags"],
            })
        );
        let compiled = crate::Schema::compile(&schema).unwrap();
        for d in &docs {
            let mut d = d.clone();
            d.as_object_mut().unwrap().remove("_meta");
            assert!(compiled.validate(&d).is_ok(), "{d}");
        }
        // A string without the format drops it.
        let s = infer(&[json!({"at": "2026-12-07"}), json!({"at": "soon"})]);
        assert_eq!(s["properties"]["at"], json!({"type": "string"}));
    }

    #[test]
    fn many_property_names_are_a_map() {
        let mut doc = Map::new();
        for i in 0..=PROPERTIES_MAX {
            doc.insert(format!("k{i}"), json!(i));
        }
        let schema = infer(&[json!({"counts": doc}), json!({"counts": {"other": 1.5}})]);
        assert_eq!(
            schema["properties"]["counts"],
            json!({"type": "object", "additionalProperties": {"type": "number"}})
        );
        // A map among whose values is another map and a plain object: both are values.
        let mut inner = Map::new();
        for i in 0..=PROPERTIES_MAX {
            inner.insert(format!("a{i}"), json!(0));
        }
        let mut m = Map::new();
        m.insert("big".into(), Value::Object(inner));
        m.insert("small".into(), json!({"p": "x"}));
        for i in 0..PROPERTIES_MAX {
            m.insert(format!("f{i}"), json!(0));
        }
        let doc = json!({"m": m});
        let schema = infer(std::slice::from_ref(&doc));
        let compiled = crate::Schema::compile(&schema).unwrap();
        assert!(
            compiled.validate(&doc).is_ok(),
            "{}",
            schema["properties"]["m"]
        );
    }

    #[test]
    fn formats_are_strict() {
        for ok in [
            "2026-12-07T10:00:00Z",
            "2026-12-07t10:00:00.123456-05:30",
            "2026-12-07 23:59:60Z",
        ] {
            assert!(is_date_time(ok), "{ok}");
        }
        for bad in [
            "2026-12-07T24:00:00Z",
            "2026-13-07T10:00:00Z",
            "2026-12-07T10:00:00",
            "2026-12-07T10:00:00.Z",
            "2026-12-07T10:00:00+5:00",
        ] {
            assert!(!is_date_time(bad), "{bad}");
        }
        for (date, ok) in [
            ("2026-02-28", true),
            ("2024-02-29", true),
            ("2026-02-29", false),
            ("1900-02-29", false),
            ("2026-02-30", false),
            ("2026-04-31", false),
            ("2026-2-28", false),
            ("2026-00-10", false),
        ] {
            assert_eq!(is_date(date.as_bytes()), ok, "{date}");
        }
        assert!(!is_date_time("2026-12-07T10:59:60Z"));
        // Text that is not ASCII is no date, without a panic at a byte that is no boundary.
        assert_eq!(Format::of("東京都千代田区丸の内一丁目"), None);
        assert_eq!(Format::of("Müller-Lüdenscheidt GmbH"), None);
        assert!(!is_uuid("0192f6a8-7c1e-7abc-8def-0123456789aZ"));
    }
}
