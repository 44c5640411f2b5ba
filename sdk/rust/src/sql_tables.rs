//! A materialization into SQL tables, for any SQL destination the host grants as `sql`: what
//! `materialize-sqlite` and `materialize-postgres` share. A connector is one line:
//!
//! ```text
//! flow_sdk::export_materialization!(flow_sdk::sql_tables::SqlTables<flow_sdk::sql_tables::Postgres>);
//! ```
//!
//! Each binding's `resource.table` names a table with one column per field the catalog selects
//! for the binding (`fields::selected`: the key's locations, named after their pointers,
//! `/a/b` -> `a_b`, then every top-level property, every projection and what `fields.include`
//! adds, less `fields.exclude`), typed by the collection schema at the field's location (the
//! dialect choosing the SQL type), and `flow_document` holding the whole document. Standard updates keep one row per key (upserted
//! or deleted); `deltaUpdates` appends one row per combined delta. The checkpoint lives in
//! `flow_checkpoints`, written in the same transaction as the rows, and carries a *fence*:
//! every `open` takes the next fence, and a `commit` whose fence is no longer the latest
//! fails, so an instance that outlived a restart or a swap cannot commit over its successor.
//!
//! Identifiers are always quoted and values always bound as parameters: nothing of a document
//! is spliced into SQL text.

use crate::Error;
use crate::materialization::sql::{self, Value as Sv};
use crate::materialization::{Binding, Loaded, Materialization, MaterializationSpec, Stored};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::marker::PhantomData;

/// Keys per `load` query: well under every dialect's bound-parameter limit even for wide keys.
const LOAD_KEYS_PER_QUERY: usize = 200;
/// Bound parameters per multi-row statement: under PostgreSQL's 65,535 and SQLite's 32,766.
const PARAMS_PER_STATEMENT: usize = 30_000;
/// Bytes of parameter values per multi-row statement, well under a server's packet limit.
const STATEMENT_BYTES_MAX: usize = 4 << 20;

/// About the bytes a parameter takes in a statement.
fn value_bytes(v: &Sv) -> usize {
    match v {
        Sv::Text(s) => s.len(),
        Sv::Blob(b) => b.len(),
        _ => 8,
    }
}

/// What a column holds, by the collection schema at its location.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Integer,
    Number,
    Boolean,
    String,
    /// A string with `format: date-time`.
    DateTime,
    /// An object or an array, as JSON.
    Json,
    /// Several or no declared types: each value as it is (SQLite), or as JSON.
    Any,
}

/// How one SQL dialect names, types and binds things.
pub trait Dialect: 'static {
    /// The connector this dialect writes to, as endpoints name it (`sqlite`, `postgres`).
    const CONNECTOR: &'static str;
    /// A query that succeeds on this dialect's servers only, to refuse a mismatched endpoint.
    const PROBE: &'static str;
    /// The SQL type of a column of `kind`; `key` if it is part of the primary key.
    fn column_type(kind: Kind, key: bool) -> &'static str;
    /// The type of the `flow_document` column.
    const DOCUMENT_TYPE: &'static str;
    /// Whether rows are written by multi-row statements (a round trip per statement to a
    /// server) rather than one prepared single-row statement run for each row (in-process
    /// SQLite, where parsing a statement of thousands of rows costs more than it saves).
    const MULTI_ROW: bool;
    /// The `i`th (from 1) parameter placeholder of a statement, for a value of `kind`.
    fn placeholder(i: usize, kind: Kind) -> String;
    /// A placeholder where the server cannot infer its type from a column (in a `VALUES`
    /// list compared with the key columns).
    fn typed_placeholder(i: usize, kind: Kind) -> String {
        Self::placeholder(i, kind)
    }
    /// Quote an identifier.
    fn quote(ident: &str) -> String {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }
    /// The columns of `table` (name, lowercase type name), and which are its primary key.
    fn columns_query() -> &'static str;
    /// Whether a column of `kind` holds JSON, so that values are bound as JSON text.
    fn json_column(kind: Kind) -> bool;
    /// How a value of `kind` is bound: JSON columns take JSON text, others the value's own
    /// type (objects and arrays as JSON text).
    fn bind(kind: Kind, v: Option<&Value>) -> Sv {
        match v {
            None | Some(Value::Null) => Sv::Null,
            Some(Value::String(s)) if kind == Kind::DateTime => Self::date_time(s),
            Some(v) if Self::json_column(kind) => Sv::Text(json_text(v)),
            Some(v) => scalar(v),
        }
    }
    /// [`Dialect::bind`] of a value given as its JSON text (a member read straight from a
    /// document): objects, arrays and JSON columns take the text itself.
    fn bind_raw(kind: Kind, raw: &str) -> Sv {
        match raw.as_bytes().first() {
            None | Some(b'n') => Sv::Null,
            Some(b'{' | b'[') => Sv::Text(raw.to_owned()),
            Some(_) if Self::json_column(kind) => Sv::Text(raw.to_owned()),
            Some(b'"') => match serde_json::from_str::<String>(raw) {
                Ok(s) if kind == Kind::DateTime => Self::date_time(&s),
                Ok(s) => Sv::Text(s),
                Err(_) => Sv::Null,
            },
            Some(_) => match serde_json::from_str::<Value>(raw) {
                Ok(v) => scalar(&v),
                Err(_) => Sv::Null,
            },
        }
    }
    /// How a `format: date-time` string is bound: as it is (the server parses RFC 3339).
    fn date_time(s: &str) -> Sv {
        Sv::Text(s.to_owned())
    }
    /// Whether an existing column's type (as `columns_query` reports it) stores `kind`.
    fn type_matches(existing: &str, kind: Kind, key: bool) -> bool {
        existing.eq_ignore_ascii_case(Self::column_type(kind, key))
    }
    /// What follows an `INSERT` so that a row whose key exists updates it instead, up to the
    /// assignments (`ON CONFLICT (k) DO UPDATE SET`).
    fn on_conflict(keys: &[String]) -> String {
        format!("ON CONFLICT ({}) DO UPDATE SET", keys.join(", "))
    }
    /// In an upsert's assignments, the value the insert would have written to `column`.
    fn new_value(column: &str) -> String {
        format!("excluded.{column}")
    }
    /// The right side of `(k1, k2) IN ...` for a list of row tuples `(..), (..)`.
    fn in_rows(tuples: &str) -> String {
        format!("(VALUES {tuples})")
    }
}

/// SQLite: dynamic typing, so columns take an affinity and values keep their own type.
pub struct Sqlite;

impl Dialect for Sqlite {
    const CONNECTOR: &'static str = "sqlite";
    const PROBE: &'static str = "SELECT sqlite_version()";
    const DOCUMENT_TYPE: &'static str = "TEXT";
    const MULTI_ROW: bool = false;

    fn column_type(kind: Kind, _key: bool) -> &'static str {
        match kind {
            Kind::Integer | Kind::Boolean => "INTEGER",
            Kind::Number => "REAL",
            Kind::String | Kind::DateTime | Kind::Json => "TEXT",
            // No affinity, so each value keeps the type it was written with (SQLite would
            // otherwise turn 3 into '3' in a TEXT column).
            Kind::Any => "",
        }
    }

    fn placeholder(i: usize, _kind: Kind) -> String {
        format!("?{i}")
    }

    fn columns_query() -> &'static str {
        "SELECT name, type, pk > 0 FROM pragma_table_info(?1)"
    }

    fn json_column(kind: Kind) -> bool {
        kind == Kind::Json
    }
}

/// PostgreSQL: real types (`jsonb` for objects, arrays and mixed types; `timestamptz` for
/// `format: date-time`), `$1` placeholders.
pub struct Postgres;

impl Dialect for Postgres {
    const CONNECTOR: &'static str = "postgres";
    const PROBE: &'static str = "SELECT current_setting('server_version_num')";
    const DOCUMENT_TYPE: &'static str = "JSONB";
    const MULTI_ROW: bool = true;

    fn column_type(kind: Kind, _key: bool) -> &'static str {
        match kind {
            Kind::Integer => "BIGINT",
            Kind::Number => "DOUBLE PRECISION",
            Kind::Boolean => "BOOLEAN",
            Kind::String => "TEXT",
            Kind::DateTime => "TIMESTAMPTZ",
            Kind::Json | Kind::Any => "JSONB",
        }
    }

    fn placeholder(i: usize, kind: Kind) -> String {
        match kind {
            // The host binds text; the server parses it as a timestamp.
            Kind::DateTime => format!("${i}::text::timestamptz"),
            _ => format!("${i}"),
        }
    }

    fn typed_placeholder(i: usize, kind: Kind) -> String {
        match kind {
            Kind::DateTime => format!("${i}::text::timestamptz"),
            k => format!("${i}::{}", Self::column_type(k, true)),
        }
    }

    fn columns_query() -> &'static str {
        "SELECT c.column_name::text, c.data_type::text, \
                EXISTS (SELECT 1 FROM information_schema.key_column_usage k \
                        JOIN information_schema.table_constraints t \
                          ON t.constraint_name = k.constraint_name AND t.table_schema = k.table_schema \
                        WHERE t.constraint_type = 'PRIMARY KEY' AND k.table_schema = c.table_schema \
                          AND k.table_name = c.table_name AND k.column_name = c.column_name) \
         FROM information_schema.columns c \
         WHERE c.table_schema = current_schema() AND c.table_name = $1"
    }

    fn json_column(kind: Kind) -> bool {
        matches!(kind, Kind::Json | Kind::Any)
    }

    fn type_matches(existing: &str, kind: Kind, key: bool) -> bool {
        let want = match Self::column_type(kind, key) {
            "TIMESTAMPTZ" => "timestamp with time zone",
            t => t,
        };
        existing.eq_ignore_ascii_case(want)
    }
}

/// MySQL and MariaDB: real types (`JSON` for objects, arrays and mixed types, `DATETIME(6)` in
/// UTC for `format: date-time`, `VARCHAR(255)` for string keys, which an index must bound),
/// backquoted identifiers, `?` placeholders (so every statement names its parameters in
/// order), `ON DUPLICATE KEY UPDATE`.
pub struct Mysql;

impl Dialect for Mysql {
    const CONNECTOR: &'static str = "mysql";
    // `@@` variables are MySQL's: PostgreSQL and SQLite refuse this.
    const PROBE: &'static str = "SELECT @@version";
    const DOCUMENT_TYPE: &'static str = "JSON";
    const MULTI_ROW: bool = true;

    fn column_type(kind: Kind, key: bool) -> &'static str {
        match kind {
            Kind::Integer => "BIGINT",
            Kind::Number => "DOUBLE",
            Kind::Boolean => "BOOLEAN",
            Kind::String if key => "VARCHAR(255)",
            Kind::String => "LONGTEXT",
            Kind::DateTime => "DATETIME(6)",
            Kind::Json | Kind::Any => "JSON",
        }
    }

    fn placeholder(_i: usize, _kind: Kind) -> String {
        "?".to_string()
    }

    fn quote(ident: &str) -> String {
        format!("`{}`", ident.replace('`', "``"))
    }

    fn columns_query() -> &'static str {
        "SELECT column_name, data_type, column_key = 'PRI' FROM information_schema.columns \
         WHERE table_schema = DATABASE() AND table_name = ?"
    }

    fn json_column(kind: Kind) -> bool {
        matches!(kind, Kind::Json | Kind::Any)
    }

    /// MySQL's DATETIME takes no offset: the value in UTC, without one.
    fn date_time(s: &str) -> Sv {
        Sv::Text(utc_datetime(s))
    }

    fn type_matches(existing: &str, kind: Kind, key: bool) -> bool {
        let want = match Self::column_type(kind, key) {
            "BOOLEAN" => "tinyint",
            "VARCHAR(255)" => "varchar",
            "DATETIME(6)" => "datetime",
            // MariaDB's JSON is LONGTEXT with a validity check.
            "JSON" if existing.eq_ignore_ascii_case("longtext") => "longtext",
            t => t,
        };
        existing.eq_ignore_ascii_case(want)
    }

    fn on_conflict(_keys: &[String]) -> String {
        "ON DUPLICATE KEY UPDATE".to_string()
    }

    fn new_value(column: &str) -> String {
        format!("VALUES({column})")
    }

    fn in_rows(tuples: &str) -> String {
        format!("({tuples})")
    }
}

/// An RFC 3339 date-time (`2026-12-06T10:00:00.5+01:00`) as MySQL's UTC `DATETIME` text
/// (`2026-12-06 09:00:00.500000`); text that is not one is passed on for the server to refuse.
fn utc_datetime(s: &str) -> String {
    parse_rfc3339(s).unwrap_or_else(|| s.to_string())
}

fn parse_rfc3339(s: &str) -> Option<String> {
    let us = crate::time::rfc3339_micros(s)?;
    let (t, micros) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
    // Back to a civil date in UTC.
    let (days, rem) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, mo, d) = crate::time::civil_from_days(days);
    Some(format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}.{micros:06}",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    ))
}

/// JSON text written straight into a string (`Value`'s `Display` goes through the formatting
/// machinery, measurably slower in a plugin).
fn json_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn scalar(v: &Value) -> Sv {
    match v {
        Value::Null => Sv::Null,
        Value::Bool(b) => Sv::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Sv::Integer(i),
            None => Sv::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Sv::Text(s.clone()),
        other => Sv::Text(json_text(other)),
    }
}

/// Whether a schema has a `reduce` annotation anywhere (conservatively: any member of that
/// name, also inside subschemas that may never apply).
pub(crate) fn has_reduce(schema: &Value) -> bool {
    match schema {
        Value::Object(m) => m.contains_key("reduce") || m.values().any(has_reduce),
        Value::Array(a) => a.iter().any(has_reduce),
        _ => false,
    }
}

/// What a column of a schema location holds.
fn kind_of(schema: &Value) -> Kind {
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => vec![],
    };
    match types.as_slice() {
        ["integer"] => Kind::Integer,
        ["boolean"] => Kind::Boolean,
        ["number"] | ["integer", "number"] | ["number", "integer"] => Kind::Number,
        ["string"] if schema["format"] == "date-time" => Kind::DateTime,
        ["string"] => Kind::String,
        ["object"] | ["array"] => Kind::Json,
        _ => Kind::Any,
    }
}

/// What a column of document location `ptr` holds, by the types (and format) the schema
/// declares there through `properties`, `allOf` and its `$ref`s. The host bundles references
/// to other files into the schema, so each is a JSON pointer or an anchor within it.
fn kind_at(root: &Value, ptr: &str) -> Kind {
    let mut here = expand(root, vec![root]);
    for token in ptr.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        let next = here
            .iter()
            .filter_map(|s| s.get("properties").and_then(|p| p.get(&token)))
            .collect();
        here = expand(root, next);
    }
    let mut types: Vec<Value> = Vec::new();
    for s in &here {
        match s.get("type") {
            Some(Value::Array(ts)) => types.extend(ts.iter().cloned()),
            Some(t) => types.push(t.clone()),
            None => {}
        }
    }
    types.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    types.dedup();
    let format = here.iter().find_map(|s| s.get("format")).cloned();
    let mut merged = serde_json::Map::new();
    merged.insert("type".into(), Value::Array(types));
    if let Some(f) = format {
        merged.insert("format".into(), f);
    }
    kind_of(&Value::Object(merged))
}

/// `schemas` with every subschema that applies with them: `allOf` branches and the targets
/// of `$ref`s within `root`, transitively (a cycle stops after a bound).
fn expand<'a>(root: &'a Value, schemas: Vec<&'a Value>) -> Vec<&'a Value> {
    let mut out = Vec::new();
    let mut stack = schemas;
    while let Some(s) = stack.pop() {
        if out.len() > 256 {
            break;
        }
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            stack.extend(all);
        }
        if let Some(target) = s
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|f| resolve(root, f))
        {
            stack.push(target);
        }
        out.push(s);
    }
    out
}

/// The subschema of `root` at URI fragment `fragment`: a JSON pointer, or an anchor
/// (`$anchor`, or draft 7's `$id: "#Name"`) declared once.
fn resolve<'a>(root: &'a Value, fragment: &str) -> Option<&'a Value> {
    let fragment = percent_decode(fragment);
    if fragment.is_empty() || fragment.starts_with('/') {
        return root.pointer(&fragment);
    }
    fn find<'a>(v: &'a Value, anchor: &str, out: &mut Vec<&'a Value>) {
        match v {
            Value::Object(m) => {
                let id = m.get("$id").and_then(Value::as_str);
                if m.get("$anchor").and_then(Value::as_str) == Some(anchor)
                    || id.and_then(|i| i.split_once('#')).map(|(_, a)| a) == Some(anchor)
                {
                    out.push(v);
                }
                for (k, c) in m {
                    if !matches!(k.as_str(), "const" | "enum" | "default" | "examples") {
                        find(c, anchor, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|c| find(c, anchor, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    find(root, &fragment, &mut found);
    match found.as_slice() {
        [one] => Some(one),
        _ => None, // None, or declared twice: which one is meant is not for us to guess.
    }
}

/// A URI fragment with its percent-escapes decoded.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) if b[i] == b'%' => {
                out.push(byte);
                i += 3;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn err(context: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::new(format!("{context}: {e}"))
}

/// A column: its name, what it holds, and where in a document (a key pointer, or a top-level
/// property).
struct Column {
    name: String,
    kind: Kind,
    ptr: Pointer,
}

/// Reads the members of a document's top-level object that columns need, as raw JSON slices
/// of its text, skipping the rest: no tree is built (`found[i]` is member `i` of `index`).
struct Members<'a, 'de> {
    index: &'a HashMap<String, usize>,
    found: &'a mut [Option<&'de RawValue>],
}

impl<'a, 'de> Members<'a, 'de> {
    /// Read `text`; a document that is not an object has no members (as `Value::pointer`
    /// finds none).
    fn read(
        text: &'de str,
        index: &'a HashMap<String, usize>,
        found: &'a mut [Option<&'de RawValue>],
    ) {
        let mut de = serde_json::Deserializer::from_str(text);
        if serde::Deserializer::deserialize_map(
            &mut de,
            Members {
                index,
                found: &mut *found,
            },
        )
        .is_err()
        {
            found.fill(None);
        }
    }
}

impl<'de> Visitor<'de> for Members<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key_seed(Name)? {
            match self.index.get(&*name) {
                Some(&i) => self.found[i] = Some(map.next_value::<&'de RawValue>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A member's name, borrowed from the text unless it has escapes.
struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = Cow<'de, str>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a member name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// A JSON pointer split into its unescaped tokens once, so looking a value up per document
/// neither splits nor unescapes (`Value::pointer` does both, each time).
struct Pointer(Vec<String>);

impl Pointer {
    fn new(ptr: &str) -> Pointer {
        Pointer(
            ptr.split('/')
                .skip(1)
                .map(|t| t.replace("~1", "/").replace("~0", "~"))
                .collect(),
        )
    }

    fn get<'v>(&self, mut v: &'v Value) -> Option<&'v Value> {
        for t in &self.0 {
            v = match v {
                Value::Object(m) => m.get(t.as_str())?,
                // An index as RFC 6901 writes it: digits, no sign, no leading zero.
                Value::Array(a) if t == "0" || !(t.starts_with('0') || t.starts_with('+')) => {
                    a.get(t.parse::<usize>().ok()?)?
                }
                _ => return None,
            };
        }
        Some(v)
    }
}

struct Table<D: Dialect> {
    name: String,
    keys: Vec<Column>,
    values: Vec<Column>,
    delta: bool,
    /// The single-row upsert, for dialects that do not write multi-row statements.
    upsert_one: String,
    /// The top-level members that columns read, by name, each with its slot: these are read
    /// from a document's text without parsing it whole.
    members: HashMap<String, usize>,
    /// The slot of each column (in `columns()` order) that reads a top-level member.
    slots: Vec<Option<usize>>,
    /// Whether the collection's schema has `reduce` annotations. Without, a new document
    /// replaces the stored one whole, so `load` has nothing to give: it reads nothing.
    reduced: bool,
    _dialect: PhantomData<D>,
}

impl<D: Dialect> Table<D> {
    fn new(name: String, keys: Vec<Column>, values: Vec<Column>, delta: bool) -> Self {
        let mut table = Table {
            name,
            keys,
            values,
            delta,
            upsert_one: String::new(),
            members: HashMap::new(),
            slots: Vec::new(),
            reduced: true,
            _dialect: PhantomData,
        };
        table.upsert_one = table.upsert(1);
        let mut members = HashMap::new();
        let slots = table
            .columns()
            .map(|c| match c.ptr.0.as_slice() {
                [name] => {
                    let next = members.len();
                    Some(*members.entry(name.clone()).or_insert(next))
                }
                _ => None,
            })
            .collect();
        (table.members, table.slots) = (members, slots);
        table
    }

    /// Create the binding's table if it is missing, add columns for fields the schema gained,
    /// and refuse one that cannot hold the collection (another key, a column of another type).
    fn create(binding: usize, b: &Binding) -> Result<Self, Error> {
        let name = b.resource["table"]
            .as_str()
            .ok_or_else(|| {
                Error::new(format!(
                    "binding {binding} ({}): resource.table (a table name) is required",
                    b.collection
                ))
            })?
            .to_string();
        if name.is_empty() || name.starts_with("sqlite_") || name.starts_with("pg_") {
            return Err(Error::new(format!(
                "binding {binding}: invalid table name {name:?}"
            )));
        }
        // The fields the catalog selected (the key's first), each a column typed by the
        // schema at its location.
        let column = |f: &crate::materialization::fields::Field| Column {
            name: f.name.clone(),
            kind: kind_at(&b.schema, &f.pointer),
            ptr: Pointer::new(&f.pointer),
        };
        let fields = crate::materialization::fields::selected(binding);
        let keys: Vec<Column> = fields.iter().filter(|f| f.key).map(column).collect();
        let values: Vec<Column> = fields
            .iter()
            .filter(|f| !f.key && f.name != "flow_document")
            .map(column)
            .collect();
        if keys.len() != b.key.len() {
            return Err(Error::new(format!(
                "binding {binding} ({}): the host gave {} key fields for a key of {} locations",
                b.collection,
                keys.len(),
                b.key.len()
            )));
        }
        let mut table = Table::new(name, keys, values, b.delta_updates);
        table.reduced = has_reduce(&b.schema);
        table.ensure(binding)?;
        Ok(table)
    }

    fn ctx(&self, binding: usize) -> String {
        format!("binding {binding} (table {})", self.name)
    }

    fn ensure(&self, binding: usize) -> Result<(), Error> {
        let ctx = self.ctx(binding);
        let q = D::quote;
        let mut defs: Vec<String> = self
            .keys
            .iter()
            .map(|c| format!("{} {} NOT NULL", q(&c.name), D::column_type(c.kind, true)))
            .collect();
        defs.extend(
            self.values
                .iter()
                .map(|c| format!("{} {}", q(&c.name), D::column_type(c.kind, false))),
        );
        defs.push(format!("flow_document {} NOT NULL", D::DOCUMENT_TYPE));
        if !self.delta {
            defs.push(format!(
                "PRIMARY KEY ({})",
                self.keys
                    .iter()
                    .map(|c| q(&c.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        sql::execute(
            &format!(
                "CREATE TABLE IF NOT EXISTS {} ({})",
                q(&self.name),
                defs.join(", ")
            ),
            &[],
        )
        .map_err(err(&ctx))?;

        // The table may have existed: it must hold the collection as this spec says.
        let existing =
            sql::query(D::columns_query(), &[Sv::Text(self.name.clone())]).map_err(err(&ctx))?;
        let existing: Vec<(String, String, bool)> = existing
            .rows
            .iter()
            .filter_map(|r| match (r.first(), r.get(1), r.get(2)) {
                (Some(Sv::Text(n)), Some(Sv::Text(t)), Some(Sv::Integer(pk))) => {
                    Some((n.clone(), t.clone(), *pk != 0))
                }
                _ => None,
            })
            .collect();
        if !self.delta {
            let mut pk: Vec<&str> = existing
                .iter()
                .filter(|c| c.2)
                .map(|c| c.0.as_str())
                .collect();
            let mut want: Vec<&str> = self.keys.iter().map(|c| c.name.as_str()).collect();
            pk.sort_unstable();
            want.sort_unstable();
            if pk != want {
                return Err(Error::new(format!(
                    "{ctx}: the table exists with primary key ({}), but the collection's key is ({}): drop or rename the table, or materialize into another",
                    pk.join(", "),
                    want.join(", ")
                )));
            }
        }
        for (c, key) in self
            .keys
            .iter()
            .map(|c| (c, true))
            .chain(self.values.iter().map(|c| (c, false)))
        {
            match existing.iter().find(|e| e.0 == c.name) {
                Some((_, ty, _)) if !D::type_matches(ty, c.kind, key) => {
                    return Err(Error::new(format!(
                        "{ctx}: column {} exists with type {ty}, but the collection schema makes it {}: a change of type cannot be applied in place",
                        c.name,
                        D::column_type(c.kind, key)
                    )));
                }
                Some(_) => {}
                // A field the schema gained: a new nullable column.
                None => {
                    sql::execute(
                        &format!(
                            "ALTER TABLE {} ADD COLUMN {} {}",
                            q(&self.name),
                            q(&c.name),
                            D::column_type(c.kind, key)
                        ),
                        &[],
                    )
                    .map_err(err(&ctx))?;
                }
            }
        }
        Ok(())
    }

    fn columns(&self) -> impl Iterator<Item = &Column> {
        self.keys.iter().chain(self.values.iter())
    }

    /// The statement writing `rows` rows: a multi-row insert, and for standard updates an
    /// upsert on the key (the rows of one call have distinct keys).
    fn upsert(&self, rows: usize) -> String {
        let q = D::quote;
        let names: Vec<String> = self
            .columns()
            .map(|c| q(&c.name))
            .chain(["flow_document".to_string()])
            .collect();
        let width = names.len();
        let kinds: Vec<Kind> = self.columns().map(|c| c.kind).chain([Kind::Json]).collect();
        let tuples: Vec<String> = (0..rows)
            .map(|r| {
                let ps: Vec<String> = kinds
                    .iter()
                    .enumerate()
                    .map(|(i, k)| D::placeholder(r * width + i + 1, *k))
                    .collect();
                format!("({})", ps.join(", "))
            })
            .collect();
        let insert = format!(
            "INSERT INTO {} ({}) VALUES {}",
            q(&self.name),
            names.join(", "),
            tuples.join(", ")
        );
        if self.delta {
            return insert;
        }
        let updates: Vec<String> = names[self.keys.len()..]
            .iter()
            .map(|c| format!("{c} = {}", D::new_value(c)))
            .collect();
        let keys: Vec<String> = self.keys.iter().map(|c| q(&c.name)).collect();
        format!("{insert} {} {}", D::on_conflict(&keys), updates.join(", "))
    }

    fn delete(&self) -> String {
        let q = D::quote;
        format!(
            "DELETE FROM {} WHERE {}",
            q(&self.name),
            self.keys
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{} = {}", q(&c.name), D::placeholder(i + 1, c.kind)))
                .collect::<Vec<_>>()
                .join(" AND ")
        )
    }

    /// A document's values, in column order, then the document itself (its text as the host
    /// sent it). Top-level members are read from the text; only a nested pointer parses it.
    fn row(&self, d: Stored, out: &mut Vec<Sv>) {
        let text = d.doc.text();
        let mut found = vec![None; self.members.len()];
        Members::read(text, &self.members, &mut found);
        for (c, slot) in self.columns().zip(&self.slots) {
            out.push(match slot {
                Some(i) => match found[*i] {
                    Some(raw) => D::bind_raw(c.kind, raw.get()),
                    None => Sv::Null,
                },
                None => D::bind(c.kind, c.ptr.get(&d.doc)),
            });
        }
        drop(found);
        out.push(Sv::Text(d.doc.into_text()));
    }
}

/// A materialization into SQL tables of dialect `D`.
pub struct SqlTables<D: Dialect> {
    name: String,
    tables: Vec<Table<D>>,
    /// The fence this instance took at `open`.
    fence: i64,
}

impl<D: Dialect> SqlTables<D> {
    fn table(&self, binding: usize) -> Result<&Table<D>, Error> {
        self.tables
            .get(binding)
            .ok_or_else(|| Error::new(format!("no binding {binding}")))
    }
}

impl<D: Dialect> Materialization for SqlTables<D> {
    fn open(spec: MaterializationSpec) -> Result<(Self, Option<String>), Error> {
        sql::query(D::PROBE, &[]).map_err(|e| {
            Error::new(format!(
                "this plugin writes to {} and the endpoint's database does not answer as one ({e}): set the endpoint's `connector: {}`",
                D::CONNECTOR,
                D::CONNECTOR
            ))
        })?;
        let tables = spec
            .bindings
            .iter()
            .enumerate()
            .map(|(i, b)| Table::<D>::create(i, b))
            .collect::<Result<Vec<_>, _>>()?;
        let (fence, checkpoint) = take_fence::<D>(&spec.name)?;
        Ok((
            SqlTables {
                name: spec.name,
                tables,
                fence,
            },
            checkpoint,
        ))
    }

    fn load(&mut self, binding: usize, keys: Vec<Value>) -> Result<Vec<Loaded>, Error> {
        let t = self.table(binding)?;
        let mut out = Vec::new();
        // Rows are upserted, so whether one exists does not matter; only a reduction needs
        // the stored document (a backfill into an empty table skips a query per 200 keys).
        if !t.reduced {
            return Ok(out);
        }
        let width = t.keys.len();
        let q = D::quote;
        for chunk in keys.chunks(LOAD_KEYS_PER_QUERY) {
            let mut params = Vec::with_capacity(chunk.len() * width);
            let mut tuples = Vec::with_capacity(chunk.len());
            for key in chunk {
                let parts = key.as_array().ok_or("a key must be a JSON array")?;
                let base = params.len();
                tuples.push(format!(
                    "({})",
                    t.keys
                        .iter()
                        .enumerate()
                        .map(|(i, c)| D::typed_placeholder(base + i + 1, c.kind))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                params.extend(
                    t.keys
                        .iter()
                        .zip(parts)
                        .map(|(c, v)| D::bind(c.kind, Some(v))),
                );
            }
            let query = format!(
                "SELECT flow_document FROM {} WHERE ({}) IN {}",
                q(&t.name),
                t.keys
                    .iter()
                    .map(|c| q(&c.name))
                    .collect::<Vec<_>>()
                    .join(", "),
                D::in_rows(&tuples.join(", "))
            );
            let rows = sql::query(&query, &params).map_err(err(&t.name))?;
            for r in rows.rows {
                if let Some(Sv::Text(text)) = r.first() {
                    let doc: Value = serde_json::from_str(text)?;
                    let key = Value::Array(
                        t.keys
                            .iter()
                            .map(|c| c.ptr.get(&doc).cloned().unwrap_or(Value::Null))
                            .collect(),
                    );
                    out.push(Loaded { key, doc });
                }
            }
        }
        Ok(out)
    }

    fn write(&mut self, binding: usize, docs: Vec<Stored>) -> Result<(), Error> {
        let t = self.table(binding)?;
        let (deletes, upserts): (Vec<Stored>, Vec<Stored>) =
            docs.into_iter().partition(|d| d.delete);
        let width = t.keys.len() + t.values.len() + 1;
        if D::MULTI_ROW {
            let per_statement = (PARAMS_PER_STATEMENT / width).max(1);
            let mut upserts = upserts.into_iter().peekable();
            while upserts.peek().is_some() {
                let mut params = Vec::with_capacity(per_statement * width);
                let mut rows = 0;
                // Also bounded by bytes: a server takes statements up to a packet size
                // (MySQL's `max_allowed_packet`, 16 MiB by default in MariaDB).
                let mut bytes = 0;
                while rows < per_statement && bytes < STATEMENT_BYTES_MAX {
                    let Some(d) = upserts.next() else { break };
                    let from = params.len();
                    t.row(d, &mut params);
                    bytes += params[from..].iter().map(value_bytes).sum::<usize>();
                    rows += 1;
                }
                // Sent, not executed: the host runs it while this builds the next, and a
                // failure is the answer of the next call that waits (at the latest, commit's).
                sql::send(&t.upsert(rows), &params).map_err(err(&t.name))?;
            }
        } else if !upserts.is_empty() {
            let rows: Vec<Vec<Sv>> = upserts
                .into_iter()
                .map(|d| {
                    let mut row = Vec::with_capacity(width);
                    t.row(d, &mut row);
                    row
                })
                .collect();
            sql::execute_many(&t.upsert_one, &rows).map_err(err(&t.name))?;
        }
        if !t.delta && !deletes.is_empty() {
            let deletes: Vec<Vec<Sv>> = deletes
                .iter()
                .map(|d| {
                    t.keys
                        .iter()
                        .zip(d.key.as_array().map(Vec::as_slice).unwrap_or(&[]))
                        .map(|(c, v)| D::bind(c.kind, Some(v)))
                        .collect()
                })
                .collect();
            sql::execute_many(&t.delete(), &deletes).map_err(err(&t.name))?;
        }
        Ok(())
    }

    fn commit(&mut self, checkpoint: &str) -> Result<(), Error> {
        let (p1, p2, p3) = (
            D::placeholder(1, Kind::String),
            D::placeholder(2, Kind::String),
            D::placeholder(3, Kind::Integer),
        );
        // Placeholders in the order of their parameters: some dialects' are positional (`?`).
        let changed = sql::execute(
            &format!(
                "UPDATE flow_checkpoints SET checkpoint = {p1} WHERE materialization = {p2} AND fence = {p3}"
            ),
            &[
                Sv::Text(checkpoint.to_string()),
                Sv::Text(self.name.clone()),
                Sv::Integer(self.fence),
            ],
        )
        .map_err(err("flow_checkpoints"))?;
        if changed == 0 {
            return Err(Error::new(format!(
                "fenced: another instance of {} opened this destination after this one (whose fence is {}); this one commits nothing",
                self.name, self.fence
            )));
        }
        Ok(())
    }
}

/// Take the next fence of materialization `name` and read its checkpoint ("" is none).
fn take_fence<D: Dialect>(name: &str) -> Result<(i64, Option<String>), Error> {
    let ctx = err("flow_checkpoints");
    sql::execute(
        &format!(
            "CREATE TABLE IF NOT EXISTS flow_checkpoints (materialization {} PRIMARY KEY NOT NULL, checkpoint {} NOT NULL, fence {} NOT NULL DEFAULT 0)",
            D::column_type(Kind::String, true),
            D::column_type(Kind::String, false),
            D::column_type(Kind::Integer, false)
        ),
        &[],
    )
    .map_err(&ctx)?;
    // Tables written before fences had none: every instance then starts from fence 0.
    let cols =
        sql::query(D::columns_query(), &[Sv::Text("flow_checkpoints".into())]).map_err(&ctx)?;
    let has_fence = cols
        .rows
        .iter()
        .any(|r| matches!(r.first(), Some(Sv::Text(n)) if n == "fence"));
    if !has_fence {
        sql::execute(
            &format!(
                "ALTER TABLE flow_checkpoints ADD COLUMN fence {} NOT NULL DEFAULT 0",
                D::column_type(Kind::Integer, false)
            ),
            &[],
        )
        .map_err(&ctx)?;
    }
    let (p1, p2) = (
        D::placeholder(1, Kind::String),
        D::placeholder(2, Kind::String),
    );
    sql::execute(
        &format!(
            "INSERT INTO flow_checkpoints (materialization, checkpoint, fence) VALUES ({p1}, {p2}, 1) \
             {} fence = flow_checkpoints.fence + 1",
            D::on_conflict(&["materialization".to_string()])
        ),
        &[Sv::Text(name.to_string()), Sv::Text(String::new())],
    )
    .map_err(&ctx)?;
    let rows = sql::query(
        &format!("SELECT fence, checkpoint FROM flow_checkpoints WHERE materialization = {p1}"),
        &[Sv::Text(name.to_string())],
    )
    .map_err(&ctx)?;
    match rows.rows.first().map(Vec::as_slice) {
        Some([Sv::Integer(fence), Sv::Text(cp)]) => {
            Ok((*fence, (!cp.is_empty()).then(|| cp.clone())))
        }
        other => Err(Error::new(format!(
            "flow_checkpoints: unexpected row for {name}: {other:?}"
        ))),
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn statements_quote_identifiers_and_number_placeholders() {
        let t = Table::<Postgres>::new(
            "my \"table\"".into(),
            vec![Column {
                name: "id".into(),
                kind: Kind::Integer,
                ptr: Pointer::new("/id"),
            }],
            vec![Column {
                name: "at".into(),
                kind: Kind::DateTime,
                ptr: Pointer::new("/at"),
            }],
            false,
        );
        assert_eq!(
            t.upsert(2),
            "INSERT INTO \"my \"\"table\"\"\" (\"id\", \"at\", flow_document) VALUES ($1, $2::text::timestamptz, $3), ($4, $5::text::timestamptz, $6) ON CONFLICT (\"id\") DO UPDATE SET \"at\" = excluded.\"at\", flow_document = excluded.flow_document"
        );
        assert_eq!(
            t.delete(),
            "DELETE FROM \"my \"\"table\"\"\" WHERE \"id\" = $1"
        );
    }

    #[test]
    fn reductions_are_found_anywhere_in_a_schema() {
        use serde_json::json;
        assert!(!has_reduce(
            &json!({"type": "object", "properties": {"a": {"type": "integer"}}})
        ));
        assert!(has_reduce(
            &json!({"properties": {"a": {"reduce": {"strategy": "sum"}}}})
        ));
        assert!(has_reduce(
            &json!({"if": {}, "then": {"reduce": {"strategy": "merge"}}})
        ));
        assert!(has_reduce(
            &json!({"$defs": {"x": {"anyOf": [{"reduce": {"strategy": "set"}}]}}})
        ));
    }

    #[test]
    fn kinds_follow_the_schema() {
        use serde_json::json;
        for (schema, kind) in [
            (json!({"type": "integer"}), Kind::Integer),
            (json!({"type": ["integer", "null"]}), Kind::Integer),
            (
                json!({"type": "string", "format": "date-time"}),
                Kind::DateTime,
            ),
            (json!({"type": "object"}), Kind::Json),
            (json!({"type": ["string", "integer"]}), Kind::Any),
            (json!({}), Kind::Any),
        ] {
            assert_eq!(kind_of(&schema), kind, "{schema}");
        }
        // Through `$ref`s (pointers and anchors, as the host bundles them) and `allOf`.
        let schema = json!({
            "$defs": {
                "ts": {"$anchor": "Ts", "type": "string", "format": "date-time"},
                "station": {"type": "object", "properties": {"id": {"type": "integer"}}},
            },
            "type": "object",
            "properties": {
                "at": {"$ref": "#Ts"},
                "station": {"$ref": "#/%24defs/station"},
                "n": {"allOf": [{"type": ["number", "null"]}, {"type": "number"}]},
            },
        });
        for (ptr, kind) in [
            ("/at", Kind::DateTime),
            ("/station", Kind::Json),
            ("/station/id", Kind::Integer),
            ("/n", Kind::Number),
            ("/none", Kind::Any),
        ] {
            assert_eq!(kind_at(&schema, ptr), kind, "{ptr}");
        }
    }

    /// Every column reads the same value from a document's text as from its parsed tree.
    fn rows_from_text_and_tree<D: Dialect>() {
        use serde_json::json;
        let kinds = [
            Kind::Integer,
            Kind::Number,
            Kind::Boolean,
            Kind::String,
            Kind::DateTime,
            Kind::Json,
            Kind::Any,
        ];
        let names = ["a", "b~c/d", "é\"q", "nested", "missing"];
        let mut values = Vec::new();
        for name in names {
            for kind in kinds {
                values.push(Column {
                    name: format!("{name}{kind:?}"),
                    kind,
                    ptr: Pointer(vec![name.to_string()]),
                });
            }
        }
        values.push(Column {
            name: "deep".into(),
            kind: Kind::Any,
            ptr: Pointer::new("/nested/x~1y/1"),
        });
        let key = Column {
            name: "id".into(),
            kind: Kind::Integer,
            ptr: Pointer::new("/id"),
        };
        let t = Table::<D>::new("t".into(), vec![key], values, false);
        let texts = [
            r#"{"id": 1, "a": 3, "b~c/d": "x\ty", "\u00e9\"q": {"k": [1, 2.5, null]}, "nested": {"x/y": [true, {"z": -0.5e3}]}}"#,
            r#"{"id":2,"a":1.5,"b~c/d":true,"é\"q":null,"nested":[1,"two"],"a":"last wins"}"#,
            r#"{"id":18446744073709551615,"a":-9223372036854775808,"b~c/d":[],"é\"q":"2024-01-01T00:00:00Z","nested":{}}"#,
            r#"[1,2,3]"#,
            r#""a string""#,
            r#"{}"#,
        ];
        for text in texts {
            let tree: Value = serde_json::from_str(text).unwrap();
            let mut want: Vec<Sv> = t
                .columns()
                .map(|c| D::bind(c.kind, c.ptr.get(&tree)))
                .collect();
            let mut got = Vec::new();
            t.row(
                Stored {
                    key: json!([]),
                    doc: crate::materialization::Doc::new(text.to_string()),
                    exists: false,
                    delete: false,
                },
                &mut got,
            );
            assert_eq!(
                got.pop().map(|d| format!("{d:?}")),
                Some(format!("{:?}", Sv::Text(text.to_string())))
            );
            // The text path keeps a member's own JSON text; compare what it means.
            let meaning = |v: &mut Vec<Sv>| -> Vec<String> {
                v.iter()
                    .map(|sv| match sv {
                        Sv::Text(s) => match serde_json::from_str::<Value>(s) {
                            Ok(j) if s.starts_with(['{', '[']) => format!("json {j}"),
                            _ => format!("{sv:?}"),
                        },
                        other => format!("{other:?}"),
                    })
                    .collect()
            };
            assert_eq!(meaning(&mut got), meaning(&mut want), "{text}");
        }
    }

    #[test]
    fn rows_read_from_text_as_from_the_tree() {
        rows_from_text_and_tree::<Sqlite>();
        rows_from_text_and_tree::<Postgres>();
        rows_from_text_and_tree::<Mysql>();
    }

    #[test]
    fn mysql_statements_backquote_and_take_parameters_in_order() {
        let t = Table::<Mysql>::new(
            "my `table`".into(),
            vec![
                Column {
                    name: "id".into(),
                    kind: Kind::Integer,
                    ptr: Pointer::new("/id"),
                },
                Column {
                    name: "k".into(),
                    kind: Kind::String,
                    ptr: Pointer::new("/k"),
                },
            ],
            vec![Column {
                name: "select".into(),
                kind: Kind::String,
                ptr: Pointer::new("/select"),
            }],
            false,
        );
        assert_eq!(
            t.upsert(2),
            "INSERT INTO `my ``table``` (`id`, `k`, `select`, flow_document) VALUES (?, ?, ?, ?), (?, ?, ?, ?) ON DUPLICATE KEY UPDATE `select` = VALUES(`select`), flow_document = VALUES(flow_document)"
        );
        assert_eq!(
            t.delete(),
            "DELETE FROM `my ``table``` WHERE `id` = ? AND `k` = ?"
        );
        assert_eq!(Mysql::column_type(Kind::String, true), "VARCHAR(255)");
        assert!(Mysql::type_matches("longtext", Kind::Json, false));
        assert!(Mysql::type_matches("tinyint", Kind::Boolean, false));
        assert!(!Mysql::type_matches("int", Kind::Integer, true));
    }

    #[test]
    fn date_times_become_utc_datetime_text() {
        for (rfc, utc) in [
            ("2026-12-06T10:00:00Z", "2026-12-06 10:00:00.000000"),
            ("2026-12-06T10:00:00.5+01:00", "2026-12-06 09:00:00.500000"),
            (
                "2024-02-28T23:30:00.1234567-01:00",
                "2024-02-29 00:30:00.123456",
            ),
            ("2000-01-01T00:15:00+00:30", "1999-12-31 23:45:00.000000"),
            ("1969-12-31t23:59:59z", "1969-12-31 23:59:59.000000"),
        ] {
            assert_eq!(utc_datetime(rfc), utc, "{rfc}");
        }
        for bad in [
            "2026-12-06",
            "2026-13-01T00:00:00Z",
            "2026-12-06T10:00:00",
            "soon",
        ] {
            assert_eq!(utc_datetime(bad), bad);
        }
    }
}
