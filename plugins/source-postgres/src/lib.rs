//! Captures tables of a PostgreSQL database: a backfill of the rows they hold, then their
//! inserts, updates and deletes from a logical replication slot, exactly once. Every statement
//! goes through the host's `sql` capability (`endpoint.connector: postgres`, which holds the
//! connection and its password): the plugin opens no socket.
//!
//! ```yaml
//! captures:
//!   acme/source:
//!     endpoint:
//!       connector: postgres
//!       wasm:
//!         plugin: source-postgres
//!         config:
//!           address: 127.0.0.1:5432
//!           database: app
//!           user: flow                    # needs REPLICATION (or a slot made for it)
//!           password: { env: PG_PASSWORD }
//!           slot: flow_acme_source        # default: flow_ and the capture's name; created if missing
//!           publication: flow_publication # default; created (or extended) if missing
//!     bindings:
//!       - { target: acme/orders, resource: { namespace: public, stream: orders } }
//! ```
//!
//! Why `pgoutput`, read with `pg_logical_slot_peek_binary_changes`: it is built into every
//! PostgreSQL since 10 (no extension to install, unlike `wal2json`), it is what PostgreSQL's
//! own logical replication uses, a publication picks the tables, and its messages carry type
//! ids and each value's text, which parse without guessing (`test_decoding`'s text output
//! must be un-quoted). Reading through SQL, not the replication protocol, keeps the
//! connection the host's: peeking does not consume, and the slot is advanced
//! (`pg_replication_slot_advance`) only at the next poll, once the host committed the
//! previous one, or at `open` to the host's checkpoint: nothing is lost or duplicated across
//! crashes.
//!
//! The backfill reads each table in primary-key order, a chunk per poll, as `row_to_json`,
//! with the snapshot that chunk was read in (`pg_current_snapshot()`, in the same
//! statement). A change from the slot is captured when its table is backfilled past its key
//! and the change's transaction is not already in the chunk that read the key (not visible in
//! its snapshot); a change ahead of the backfill is left to the backfill, which will read the
//! row as it then is. So each table's collection sees every row once, then every change once,
//! in commit order per key, whatever happens meanwhile.
//!
//! Documents are the row's columns by name; deletes carry the key with `_meta/op: "d"` (and
//! inserts `"c"`, updates `"u"`, backfilled rows `"c"`): a materialization deletes the row of
//! a `d`. Values as `row_to_json` writes them in the backfill: booleans, integers, floats and
//! numerics as JSON numbers (NaN and infinities as strings), json/jsonb as JSON, timestamps
//! as ISO 8601, arrays and composites as JSON (converted by the server, `to_json`, a query
//! per value: rare types, asked once per type), anything else as PostgreSQL's text. An update leaves out a column whose large (TOASTed)
//! value did not change unless the table has `REPLICA IDENTITY FULL`.
//!
//! Limits: one source transaction's changes must fit the host's `hostResultBytesMax` (a poll
//! reads whole transactions); TRUNCATE is logged, not captured.
//!
//! Build: cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml

use flow_sdk::{
    Capture, CaptureSpec, Captured, Error, Poll, Value, json, serde_json, source_time, sql, warn,
};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

/// A table's key column: its name, type (as `format_type` spells it) and whether it compares
/// as text (then under `COLLATE "C"`, bytewise, as this plugin compares keys).
#[derive(Clone, Debug)]
struct KeyColumn {
    name: String,
    ty: String,
    text: bool,
}

struct Table {
    binding: usize,
    /// `"namespace"."stream"`, quoted for SQL.
    sql_name: String,
    key: Vec<KeyColumn>,
    /// The backfill read every row.
    done: bool,
    /// The key of the last row the backfill read.
    cursor: Option<Vec<Value>>,
}

/// A chunk the backfill read: its table, keys (from, to], and the snapshot it was read in.
#[derive(Clone, Debug)]
struct Chunk {
    table: String,
    from: Option<Vec<Value>>,
    to: Vec<Value>,
    snapshot: Snapshot,
    /// The server's WAL position when it was read: once the slot is past it, every change the
    /// chunk holds has been seen, and the chunk is forgotten.
    lsn: u64,
}

/// A transaction snapshot, `xmin:xmax:xip,...` (64-bit transaction ids).
#[derive(Clone, Debug)]
struct Snapshot {
    xmin: u64,
    xmax: u64,
    xip: Vec<u64>,
    text: String,
}

impl Snapshot {
    fn parse(text: &str) -> Result<Snapshot, Error> {
        let bad = || Error::new(format!("a snapshot that is not xmin:xmax:xip: {text}"));
        let mut parts = text.split(':');
        let xmin = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let xmax = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let xip = match parts.next() {
            Some("") | None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|x| x.parse().map_err(|_| bad()))
                .collect::<Result<_, _>>()?,
        };
        Ok(Snapshot {
            xmin,
            xmax,
            xip,
            text: text.to_string(),
        })
    }

    /// Whether the committed transaction `xid` (32 bits, as logical decoding names it) is
    /// visible in this snapshot: it committed before the snapshot was taken.
    fn sees(&self, xid: u32) -> bool {
        // Widen to the 64-bit id nearest xmax: ids differ from it by far less than 2^31.
        let diff = i64::from(xid.wrapping_sub(self.xmax as u32) as i32);
        let full = (self.xmax as i64 + diff).max(0) as u64;
        full < self.xmin || (full < self.xmax && !self.xip.contains(&full))
    }
}

struct Column {
    name: String,
    type_oid: u32,
    key: bool,
}

/// A relation as the slot described it (`R` message).
struct Relation {
    table: String,
    columns: Vec<Column>,
}

struct SourcePostgres {
    slot: String,
    publication: String,
    chunk_rows: i64,
    changes_per_poll: i64,
    /// Tables by `namespace.stream`.
    tables: BTreeMap<String, Table>,
    chunks: Vec<Chunk>,
    relations: HashMap<u32, Relation>,
    /// Transactions whose changes were left to the backfill (`Wanted::Ahead`): the next chunk
    /// is read only in a snapshot that sees them all (decoding hands out a commit once it is
    /// flushed, a moment before other sessions see it).
    ahead: Vec<u32>,
    /// Types whose JSON the server makes (`json_type`), by oid.
    json_types: HashMap<u32, Option<String>>,
    /// The end of the last source transaction committed with the host.
    lsn: u64,
    /// An LSN the host committed whose slot was not advanced to yet.
    ack: Option<u64>,
}

fn q(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn text(v: &sql::Value) -> Option<&str> {
    match v {
        sql::Value::Text(s) => Some(s),
        _ => None,
    }
}

fn query(statement: &str, params: &[sql::Value]) -> Result<sql::Rows, Error> {
    sql::query(statement, params).map_err(Error::new)
}

fn parse_lsn(s: &str) -> Result<u64, Error> {
    let (hi, lo) = s
        .split_once('/')
        .ok_or_else(|| Error::new(format!("not an LSN: {s}")))?;
    let hi = u64::from_str_radix(hi, 16).map_err(|_| Error::new(format!("not an LSN: {s}")))?;
    let lo = u64::from_str_radix(lo, 16).map_err(|_| Error::new(format!("not an LSN: {s}")))?;
    Ok((hi << 32) | lo)
}

fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// Keys compare as the backfill orders them: numbers by value, strings bytewise (`COLLATE
/// "C"`), then by type.
fn cmp_value(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x
                .as_f64()
                .unwrap_or(0.0)
                .partial_cmp(&y.as_f64().unwrap_or(0.0))
                .unwrap_or(Ordering::Equal),
        },
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

fn cmp_key(a: &[Value], b: &[Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match cmp_value(x, y) {
            Ordering::Equal => continue,
            o => return o,
        }
    }
    a.len().cmp(&b.len())
}

/// A column's value from its text output, as `row_to_json` would write it.
fn json_value(type_oid: u32, text: &str) -> Value {
    match type_oid {
        16 => Value::Bool(text == "t"),
        20 | 21 | 23 | 26 => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(text.into())),
        700 | 701 | 1700 => match serde_json::from_str::<Value>(text) {
            Ok(n @ Value::Number(_)) => n,
            _ => Value::String(text.into()),
        },
        114 | 3802 => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into())),
        // timestamp, timestamptz: `2024-01-02 03:04:05.6+00` -> `2024-01-02T03:04:05.6+00:00`.
        1114 | 1184 => {
            let mut s = text.replacen(' ', "T", 1);
            if type_oid == 1184
                && let Some(i) = s.rfind(['+', '-']).filter(|&i| i > 10)
                && s.len() - i == 3
            {
                s.push_str(":00");
            }
            Value::String(s)
        }
        _ => Value::String(text.into()),
    }
}

/// A reader of one pgoutput message.
struct Msg<'a> {
    b: &'a [u8],
}

impl<'a> Msg<'a> {
    fn err() -> Error {
        Error::new("a replication message ended early (not pgoutput protocol 1?)")
    }
    fn u8(&mut self) -> Result<u8, Error> {
        let (&v, rest) = self.b.split_first().ok_or_else(Self::err)?;
        self.b = rest;
        Ok(v)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.b.len() < n {
            return Err(Self::err());
        }
        let (v, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(v)
    }
    fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(
            self.take(2)?.try_into().map_err(|_| Self::err())?,
        ))
    }
    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().map_err(|_| Self::err())?,
        ))
    }
    fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().map_err(|_| Self::err())?,
        ))
    }
    fn string(&mut self) -> Result<String, Error> {
        let end = self.b.iter().position(|&c| c == 0).ok_or_else(Self::err)?;
        let s = String::from_utf8_lossy(&self.b[..end]).into_owned();
        self.b = &self.b[end + 1..];
        Ok(s)
    }
    /// TupleData: per column, None for an unchanged TOASTed value, Some(None) for NULL.
    fn tuple(&mut self) -> Result<Vec<Option<Option<String>>>, Error> {
        let n = self.u16()?;
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            out.push(match self.u8()? {
                b'n' => Some(None),
                b'u' => None,
                b't' | b'b' => {
                    let len = self.u32()? as usize;
                    Some(Some(String::from_utf8_lossy(self.take(len)?).into_owned()))
                }
                k => {
                    return Err(Error::new(format!(
                        "unknown tuple value kind {:?}",
                        k as char
                    )));
                }
            });
        }
        Ok(out)
    }
}

/// What to do with a change (`SourcePostgres::wanted`).
enum Wanted {
    Yes,
    No,
    /// Left to the backfill, which has not read its row yet.
    Ahead,
}

/// One row change of a source transaction.
struct Change {
    relation: u32,
    op: &'static str,
    tuple: Vec<Option<Option<String>>>,
    /// Only the key columns are in `tuple` (a delete's or update's old key).
    key_only: bool,
}

impl SourcePostgres {
    fn checkpoint(&self) -> Value {
        let tables: BTreeMap<&String, Value> = self
            .tables
            .iter()
            .map(|(name, t)| (name, json!({"done": t.done, "cursor": t.cursor})))
            .collect();
        let chunks: Vec<Value> = self
            .chunks
            .iter()
            .map(|c| {
                json!({"table": c.table, "from": c.from, "to": c.to,
                       "snapshot": c.snapshot.text, "lsn": lsn_text(c.lsn)})
            })
            .collect();
        json!({"lsn": lsn_text(self.lsn), "tables": tables, "chunks": chunks, "ahead": self.ahead})
    }

    /// Advance the slot to `lsn` if it is behind it: what the host committed.
    fn advance(&self, lsn: u64) -> Result<(), Error> {
        let rows = query(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[sql::Value::Text(self.slot.clone())],
        )?;
        let confirmed = rows
            .rows
            .first()
            .and_then(|r| r.first())
            .and_then(text)
            .ok_or_else(|| Error::new(format!("replication slot {} is gone", self.slot)))?;
        if parse_lsn(confirmed)? < lsn {
            query(
                "SELECT end_lsn::text FROM pg_replication_slot_advance($1, $2::text::pg_lsn)",
                &[
                    sql::Value::Text(self.slot.clone()),
                    sql::Value::Text(lsn_text(lsn)),
                ],
            )?;
        }
        Ok(())
    }

    fn relation(&mut self, m: &mut Msg) -> Result<(), Error> {
        let oid = m.u32()?;
        let namespace = m.string()?;
        let name = m.string()?;
        let _identity = m.u8()?;
        let n = m.u16()?;
        let mut columns = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let flags = m.u8()?;
            let name = m.string()?;
            let type_oid = m.u32()?;
            let _typmod = m.u32()?;
            columns.push(Column {
                name,
                type_oid,
                key: flags & 1 == 1,
            });
        }
        let namespace = if namespace.is_empty() {
            "pg_catalog".into()
        } else {
            namespace
        };
        self.relations.insert(
            oid,
            Relation {
                table: format!("{namespace}.{name}"),
                columns,
            },
        );
        Ok(())
    }

    /// The document of a change, and its key; None for a table this capture does not bind.
    /// For a type whose `row_to_json` form is not its text (arrays, composites): its name, to
    /// have the server convert a value as the backfill's `row_to_json` does. Asked once per
    /// type.
    fn json_type(&mut self, oid: u32) -> Result<Option<String>, Error> {
        if let Some(t) = self.json_types.get(&oid) {
            return Ok(t.clone());
        }
        let rows = query(
            "SELECT format_type(oid, NULL), typcategory::text FROM pg_type WHERE oid = $1::text::oid",
            &[sql::Value::Text(oid.to_string())],
        )?;
        let t = rows.rows.first().and_then(|r| {
            let name = r.first().and_then(text)?;
            matches!(r.get(1).and_then(text), Some("A" | "C")).then(|| name.to_string())
        });
        self.json_types.insert(oid, t.clone());
        Ok(t)
    }

    /// A column's value as the backfill's `row_to_json` writes it.
    fn value(&mut self, type_oid: u32, raw: &str) -> Result<Value, Error> {
        match self.json_type(type_oid)? {
            None => Ok(json_value(type_oid, raw)),
            Some(ty) => {
                let rows = query(
                    &format!("SELECT to_json($1::text::{ty})::text"),
                    &[sql::Value::Text(raw.to_string())],
                )?;
                let json = rows.rows.first().and_then(|r| r.first()).and_then(text);
                Ok(json
                    .and_then(|j| serde_json::from_str(j).ok())
                    .unwrap_or_else(|| Value::String(raw.to_string())))
            }
        }
    }

    fn document(&mut self, c: &Change) -> Result<Option<(usize, Vec<Value>, String)>, Error> {
        let rel = self.relations.get(&c.relation).ok_or_else(|| {
            Error::new(format!(
                "a change of relation {} came before its description",
                c.relation
            ))
        })?;
        if !self.tables.contains_key(&rel.table) {
            return Ok(None);
        }
        let columns: Vec<(String, u32, bool)> = rel
            .columns
            .iter()
            .map(|col| (col.name.clone(), col.type_oid, col.key))
            .collect();
        let table_name = rel.table.clone();
        let mut doc = serde_json::Map::new();
        doc.insert("_meta".into(), json!({"op": c.op}));
        for ((name, type_oid, key), v) in columns.iter().zip(&c.tuple) {
            if c.key_only && !key {
                continue;
            }
            match v {
                None => {} // unchanged TOAST: left out
                Some(None) => {
                    doc.insert(name.clone(), Value::Null);
                }
                Some(Some(t)) => {
                    let v = self.value(*type_oid, t)?;
                    doc.insert(name.clone(), v);
                }
            }
        }
        let table = &self.tables[&table_name];
        let key = table
            .key
            .iter()
            .map(|k| doc.get(&k.name).cloned().unwrap_or(Value::Null))
            .collect();
        Ok(Some((table.binding, key, Value::Object(doc).to_string())))
    }

    /// Whether a change of `table` at `key` by transaction `xid` is to be captured: its row
    /// was backfilled, and not by a chunk that already held this change. `Ahead`: its row is
    /// yet to be backfilled, by a chunk whose snapshot must see the change.
    fn wanted(&self, table: &str, key: &[Value], xid: u32) -> Wanted {
        let Some(t) = self.tables.get(table) else {
            return Wanted::No;
        };
        if !t.done {
            match &t.cursor {
                None => return Wanted::Ahead,
                Some(c) if cmp_key(key, c) == Ordering::Greater => return Wanted::Ahead,
                _ => {}
            }
        }
        let held = self.chunks.iter().any(|c| {
            c.table == table
                && c.from
                    .as_ref()
                    .is_none_or(|f| cmp_key(key, f) == Ordering::Greater)
                && cmp_key(key, &c.to) != Ordering::Greater
                && c.snapshot.sees(xid)
        });
        if held { Wanted::No } else { Wanted::Yes }
    }

    /// Read what the slot has: whole transactions, up to `changes_per_poll` changes.
    fn stream(&mut self, out: &mut Captured) -> Result<usize, Error> {
        let rows = query(
            "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, 'proto_version', '1', 'publication_names', $3)",
            &[
                sql::Value::Text(self.slot.clone()),
                sql::Value::Integer(self.changes_per_poll),
                sql::Value::Text(self.publication.clone()),
            ],
        )?;
        let mut txns = 0;
        let mut xid = 0u32;
        // The commit time of the transaction being read, and of the last one read.
        let (mut ts, mut last_ts) = (0u64, None);
        let mut changes: Vec<Change> = Vec::new();
        for row in &rows.rows {
            let Some(sql::Value::Blob(data)) = row.first() else {
                return Err(Error::new("the slot returned a message that is not bytes"));
            };
            let mut m = Msg { b: data };
            match m.u8()? {
                b'B' => {
                    let _final_lsn = m.u64()?;
                    ts = m.u64()?;
                    xid = m.u32()?;
                    changes.clear();
                }
                b'C' => {
                    let _flags = m.u8()?;
                    let _commit_lsn = m.u64()?;
                    let end = m.u64()?;
                    if end > self.lsn {
                        for c in changes.drain(..) {
                            let Some((binding, key, doc)) = self.document(&c)? else {
                                continue;
                            };
                            let table = &self.relations[&c.relation].table;
                            match self.wanted(table, &key, xid) {
                                Wanted::Yes => out.document_text(binding, doc),
                                Wanted::No => {}
                                Wanted::Ahead => {
                                    if !self.ahead.contains(&xid) {
                                        self.ahead.push(xid);
                                    }
                                }
                            }
                        }
                        self.lsn = end;
                        txns += 1;
                        last_ts = Some(ts);
                    }
                    changes.clear();
                }
                b'R' => self.relation(&mut m)?,
                b'I' => {
                    let relation = m.u32()?;
                    let _n = m.u8()?;
                    changes.push(Change {
                        relation,
                        op: "c",
                        tuple: m.tuple()?,
                        key_only: false,
                    });
                }
                b'U' => {
                    let relation = m.u32()?;
                    let mut kind = m.u8()?;
                    let mut old = None;
                    if kind == b'K' || kind == b'O' {
                        old = Some((kind, m.tuple()?));
                        kind = m.u8()?;
                    }
                    if kind != b'N' {
                        return Err(Error::new("an update without its new row"));
                    }
                    let tuple = m.tuple()?;
                    // An update of the key moves the row: the old key is deleted first (its
                    // old key comes as `K`; with REPLICA IDENTITY FULL the old row, `O`).
                    if let Some((kind, old)) = old {
                        let moved = kind == b'K'
                            || self.relations.get(&relation).is_none_or(|r| {
                                r.columns
                                    .iter()
                                    .zip(old.iter().zip(&tuple))
                                    .any(|(c, (o, n))| c.key && o != n)
                            });
                        if moved {
                            changes.push(Change {
                                relation,
                                op: "d",
                                tuple: old,
                                key_only: true,
                            });
                        }
                    }
                    changes.push(Change {
                        relation,
                        op: "u",
                        tuple,
                        key_only: false,
                    });
                }
                b'D' => {
                    let relation = m.u32()?;
                    let kind = m.u8()?;
                    changes.push(Change {
                        relation,
                        op: "d",
                        tuple: m.tuple()?,
                        key_only: kind == b'K',
                    });
                }
                b'T' => {
                    warn("a TRUNCATE was not captured: its rows stay in the collections");
                }
                _ => {} // type, origin and other messages
            }
        }
        // PostgreSQL's timestamps count microseconds from 2000-01-01.
        if let Some(ts) = last_ts {
            source_time(ts / 1000 + 946_684_800_000);
        }
        // Chunks whose changes the slot has all passed are not needed any more.
        let lsn = self.lsn;
        self.chunks.retain(|c| c.lsn > lsn);
        Ok(txns)
    }

    /// Read the next chunk of the first table whose backfill is not done; whether there was
    /// one.
    fn backfill(&mut self, out: &mut Captured) -> Result<bool, Error> {
        let Some((name, t)) = self.tables.iter_mut().find(|(_, t)| !t.done) else {
            return Ok(false);
        };
        let col = |k: &KeyColumn| {
            let c = format!("t.{}", q(&k.name));
            if k.text {
                format!("{c} COLLATE \"C\"")
            } else {
                c
            }
        };
        let cols: Vec<String> = t.key.iter().map(col).collect();
        let mut params = Vec::new();
        let filter = match &t.cursor {
            None => String::new(),
            Some(cursor) => {
                let mut ps = Vec::new();
                for (i, (k, v)) in t.key.iter().zip(cursor).enumerate() {
                    let p = format!("${}::text::{}", i + 1, k.ty);
                    ps.push(if k.text {
                        format!("{p} COLLATE \"C\"")
                    } else {
                        p
                    });
                    params.push(sql::Value::Text(match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    }));
                }
                format!("WHERE ({}) > ({})", cols.join(", "), ps.join(", "))
            }
        };
        let statement = format!(
            "WITH s AS MATERIALIZED (SELECT pg_current_snapshot()::text AS snap, pg_current_wal_insert_lsn()::text AS lsn) \
             SELECT s.snap, s.lsn, r.doc FROM s LEFT JOIN LATERAL \
             (SELECT row_to_json(t)::text AS doc FROM {} t {filter} ORDER BY {} LIMIT {}) r ON true",
            t.sql_name,
            cols.join(", "),
            self.chunk_rows
        );
        let rows = query(&statement, &params)?;
        let first = rows
            .rows
            .first()
            .ok_or_else(|| Error::new("the backfill query returned no row"))?;
        let snapshot = Snapshot::parse(first.first().and_then(text).unwrap_or(""))?;
        let lsn = parse_lsn(first.get(1).and_then(text).unwrap_or(""))?;
        // A change left to the backfill must be in what it reads: if this snapshot does not
        // see one yet (it committed a moment ago), the chunk is read again at the next poll.
        if self.ahead.iter().any(|x| !snapshot.sees(*x)) {
            return Ok(false);
        }
        self.ahead.clear();
        let mut n = 0;
        let mut last = None;
        for row in &rows.rows {
            let Some(doc) = row.get(2).and_then(text) else {
                continue;
            };
            n += 1;
            last = Some(doc);
            // `{"_meta":{"op":"c"},` before the row's columns.
            let mut d = String::with_capacity(doc.len() + 20);
            d.push_str("{\"_meta\":{\"op\":\"c\"}");
            if doc.len() > 2 {
                d.push(',');
            }
            d.push_str(&doc[1..]);
            out.document_text(t.binding, d);
        }
        if let Some(last) = last {
            let v: Value = serde_json::from_str(last)?;
            let to: Vec<Value> = t
                .key
                .iter()
                .map(|k| v.get(&k.name).cloned().unwrap_or(Value::Null))
                .collect();
            self.chunks.push(Chunk {
                table: name.clone(),
                from: t.cursor.clone(),
                to: to.clone(),
                snapshot,
                lsn,
            });
            t.cursor = Some(to);
        }
        if n < self.chunk_rows as usize {
            t.done = true;
        }
        Ok(true)
    }
}

fn config_str(config: &Value, field: &str, default: &str) -> Result<String, Error> {
    match config.get(field) {
        None | Some(Value::Null) => Ok(default.to_string()),
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(other) => Err(Error::new(format!(
            "config: `{field}` must be a name, not {other}"
        ))),
    }
}

fn config_int(config: &Value, field: &str, default: i64) -> Result<i64, Error> {
    match config.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_i64().filter(|n| *n > 0).ok_or_else(|| {
            Error::new(format!(
                "config: `{field}` must be a positive integer, not {v}"
            ))
        }),
    }
}

impl Capture for SourcePostgres {
    fn open(spec: CaptureSpec, checkpoint: Option<Value>) -> Result<Self, Error> {
        let config = &spec.config;
        // A slot of its own per capture by default: two captures advancing one slot would
        // each lose what the other confirmed.
        let default_slot: String = format!("flow_{}", spec.name)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(63)
            .collect();
        let slot = config_str(config, "slot", &default_slot)?;
        let publication = config_str(config, "publication", "flow_publication")?;
        let mut tables = BTreeMap::new();
        let rows = query(
            "SELECT datcollate FROM pg_database WHERE datname = current_database()",
            &[],
        )?;
        let c_collation = rows
            .rows
            .first()
            .and_then(|r| r.first())
            .and_then(text)
            .is_some_and(|c| c == "C" || c == "POSIX");
        for (i, b) in spec.bindings.iter().enumerate() {
            let what = format!("binding {i} ({})", b.target);
            let namespace = config_str(&b.resource, "namespace", "public")?;
            let stream = match b.resource.get("stream").and_then(Value::as_str) {
                Some(s) => s.to_string(),
                None => {
                    return Err(Error::new(format!(
                        "{what}: resource needs `stream`, the table's name (and `namespace`, default public)"
                    )));
                }
            };
            let sql_name = format!("{}.{}", q(&namespace), q(&stream));
            let key = query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
                 (a.atttypid IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype, 'name'::regtype))::int \
                 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = $1::text::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
                &[sql::Value::Text(sql_name.clone())],
            )
            .map_err(|e| Error::new(format!("{what}: table {namespace}.{stream}: {e}")))?;
            let key: Vec<KeyColumn> = key
                .rows
                .iter()
                .map(|r| KeyColumn {
                    name: r.first().and_then(text).unwrap_or_default().to_string(),
                    ty: r.get(1).and_then(text).unwrap_or_default().to_string(),
                    text: matches!(r.get(2), Some(sql::Value::Integer(1))) && !c_collation,
                })
                .collect();
            if key.is_empty() {
                return Err(Error::new(format!(
                    "{what}: table {namespace}.{stream} has no primary key: a capture reads it in key order and names its changes by key"
                )));
            }
            tables.insert(
                format!("{namespace}.{stream}"),
                Table {
                    binding: i,
                    sql_name,
                    key,
                    done: false,
                    cursor: None,
                },
            );
        }

        // The publication names the tables; the slot keeps their changes from now on.
        let exists = query(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[sql::Value::Text(publication.clone())],
        )?;
        if exists.rows.is_empty() {
            let names: Vec<&str> = tables.values().map(|t| t.sql_name.as_str()).collect();
            sql::execute(
                &format!(
                    "CREATE PUBLICATION {} FOR TABLE {}",
                    q(&publication),
                    names.join(", ")
                ),
                &[],
            )
            .map_err(|e| Error::new(format!("creating publication {publication}: {e}")))?;
        } else {
            for (name, t) in &tables {
                let (ns, table) = name.split_once('.').unwrap_or(("public", name));
                let has = query(
                    "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
                    &[
                        sql::Value::Text(publication.clone()),
                        sql::Value::Text(ns.into()),
                        sql::Value::Text(table.into()),
                    ],
                )?;
                if has.rows.is_empty() {
                    sql::execute(
                        &format!(
                            "ALTER PUBLICATION {} ADD TABLE {}",
                            q(&publication),
                            t.sql_name
                        ),
                        &[],
                    )
                    .map_err(|e| {
                        Error::new(format!("adding {name} to publication {publication}: {e}"))
                    })?;
                }
            }
        }
        let slot_rows = query(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[sql::Value::Text(slot.clone())],
        )?;
        let slot_lsn = match slot_rows
            .rows
            .first()
            .and_then(|r| r.first())
            .and_then(text)
        {
            Some(l) => parse_lsn(l)?,
            None => {
                if checkpoint.is_some() {
                    return Err(Error::new(format!(
                        "replication slot {slot} is gone: the changes since this capture's checkpoint are lost; recreate the capture (under a new name) to backfill again"
                    )));
                }
                let rows = query(
                    "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                    &[sql::Value::Text(slot.clone())],
                )
                .map_err(|e| {
                    Error::new(format!(
                        "creating replication slot {slot} (the user needs REPLICATION): {e}"
                    ))
                })?;
                parse_lsn(
                    rows.rows
                        .first()
                        .and_then(|r| r.first())
                        .and_then(text)
                        .unwrap_or(""),
                )?
            }
        };

        let mut this = SourcePostgres {
            slot,
            publication,
            chunk_rows: config_int(config, "backfillChunkRows", 20_000)?,
            changes_per_poll: config_int(config, "changesPerPoll", 10_000)?,
            tables,
            chunks: Vec::new(),
            relations: HashMap::new(),
            json_types: HashMap::new(),
            ahead: Vec::new(),
            lsn: slot_lsn,
            ack: None,
        };
        if let Some(cp) = checkpoint {
            this.lsn = parse_lsn(cp["lsn"].as_str().unwrap_or(""))
                .map_err(|e| Error::new(format!("the checkpoint's lsn: {}", e.message)))?;
            for (name, t) in &mut this.tables {
                // A table new to the capture is backfilled from the start.
                if let Some(saved) = cp["tables"].get(name) {
                    t.done = saved["done"].as_bool().unwrap_or(false);
                    t.cursor = saved["cursor"].as_array().cloned();
                }
            }
            for c in cp["chunks"].as_array().into_iter().flatten() {
                this.chunks.push(Chunk {
                    table: c["table"].as_str().unwrap_or_default().to_string(),
                    from: c["from"].as_array().cloned(),
                    to: c["to"].as_array().cloned().unwrap_or_default(),
                    snapshot: Snapshot::parse(c["snapshot"].as_str().unwrap_or(""))?,
                    lsn: parse_lsn(c["lsn"].as_str().unwrap_or(""))?,
                });
            }
            this.ahead = cp["ahead"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_u64().map(|x| x as u32))
                .collect();
            // What the host committed is done: the slot need not keep it.
            this.advance(this.lsn)?;
        }
        Ok(this)
    }

    fn poll(&mut self, out: &mut Captured) -> Result<Poll, Error> {
        // The host committed the last poll (it polls again only then): let the slot go.
        if let Some(lsn) = self.ack.take() {
            self.advance(lsn)?;
        }
        let before = self.lsn;
        let txns = self.stream(out)?;
        let backfilled = self.backfill(out)?;
        if txns == 0 && !backfilled && out.is_empty() {
            return Ok(Poll::Idle);
        }
        out.checkpoint(&self.checkpoint());
        if self.lsn > before {
            self.ack = Some(self.lsn);
        }
        Ok(Poll::More)
    }
}

flow_sdk::export_capture!(SourcePostgres);
