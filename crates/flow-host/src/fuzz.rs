//! Entry points of the fuzz targets in `fuzz/` (feature `fuzz`; never in a release build).
//! Each drives one piece of the host with arbitrary input and panics when a property the host
//! promises breaks; a panic anywhere below is a finding too. `fuzz/README.md` says how to run
//! them; `.ci/fuzz` runs each for a bounded time with the committed corpora.

use crate::catalog::{self, BuiltCollection, Catalog};
use crate::limits::Limits;
use crate::plugin::{LogBounds, PluginLogs};
use crate::storage::Store;
use arbitrary::Arbitrary;
use flow_engine::{LogLevel, SqlAccess, SqlBounds, SqlValue};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use arbitrary;

// ---------------------------------------------------------------------------------------------
// NDJSON ingest: parse, check against a collection with reductions, combine.

const DOC_BYTES_MAX: usize = 4096;

/// The ingest target's collections, built once: `fuzz/docs`, whose key is an integer and
/// whose documents reduce (sum, max, append); and `fuzz/plain`, without reductions, of the
/// keywords a scan checks (`flow_doc::Schema::scan`).
fn ingest_collections() -> &'static catalog::Built {
    static C: OnceLock<catalog::Built> = OnceLock::new();
    C.get_or_init(|| {
        let spec: Catalog = serde_yaml::from_str(
            "collections:
  fuzz/docs:
    key: [/id]
    schema:
      type: object
      reduce: {strategy: merge}
      required: [id]
      properties:
        id: {type: [integer, number, string]}
        total: {type: number, reduce: {strategy: sum}}
        best: {reduce: {strategy: maximize}}
        tags: {type: array, reduce: {strategy: append}}
  fuzz/plain:
    key: [/id, /at/day]
    schema:
      type: object
      required: [id, at]
      properties:
        id: {type: [integer, string], minimum: -5, maxLength: 8}
        at: {type: object, properties: {day: {type: integer, maximum: 31}}, required: [day], additionalProperties: false}
        total: {type: number, minimum: 0}
        tags: {type: array, items: {type: string, minLength: 1}}
        tier: {enum: [gold, silver, 1]}
        v: {const: 2}
      additionalProperties: {type: [string, boolean, 'null', object]}
",
        )
        .expect("the fuzz catalog parses");
        catalog::build("fuzz", spec).expect("the fuzz catalog builds")
    })
}

fn collection() -> &'static BuiltCollection {
    &ingest_collections().collections["fuzz/docs"]
}

fn plain_collection() -> &'static BuiltCollection {
    &ingest_collections().collections["fuzz/plain"]
}

/// `prepare` of a line decides as `prepare_parsed` does, and gives the same key and stored
/// document.
fn prepared_alike(c: &BuiltCollection, limits: &Limits, line: usize, text: &bytes::Bytes) {
    match (c.prepare(limits, text), c.prepare_parsed(limits, text)) {
        (Err(_), Err(_)) => {}
        (Ok(catalog::Prepared::Encoded(k1, e1)), Ok(catalog::Prepared::Encoded(k2, e2))) => {
            assert_eq!(k1, k2, "line {line}: the same key");
            let (mut s1, mut s2) = (Vec::new(), Vec::new());
            e1.stamp("u", "p", &mut s1);
            e2.stamp("u", "p", &mut s2);
            let (r1, r2): (Value, Value) = (
                serde_json::from_slice(&s1).expect("stored text parses"),
                serde_json::from_slice(&s2).expect("stored text parses"),
            );
            assert_eq!(r1, r2, "line {line}: the same stored document");
        }
        (a, b) => panic!(
            "line {line}: a scan and a parse decide differently: {} / {}",
            a.is_ok(),
            b.is_ok()
        ),
    }
}

/// A parsed line of an ingest body.
struct Parsed {
    line: usize,
    doc: Value,
    text: bytes::Bytes,
}

/// An ingest body: every non-blank line is a document exactly as `serde_json` reads it, or
/// the body is refused naming a line; accepted documents combine to one per distinct key
/// text (keys compare by value exactly when their texts are equal).
pub fn ingest(body: &[u8]) {
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    // What `Host::ingest_lines` does of a body, before the schema: its lines, each parsed.
    let limits = Limits {
        doc_bytes_max: DOC_BYTES_MAX,
        ..Limits::default()
    };
    let raw = crate::runtime::ndjson_lines(
        "fuzz/docs",
        &bytes::Bytes::copy_from_slice(body),
        DOC_BYTES_MAX,
    );
    // Every line, JSON or not: preparing it from its text (a scan, where it knows the line
    // valid) decides as parsing and validating it does, with the same key and stored text.
    if let Ok(lines) = &raw {
        let plain = plain_collection();
        for l in lines {
            prepared_alike(plain, &limits, l.line, &l.text);
        }
    }
    let parsed = raw.and_then(|lines| {
        lines
            .into_iter()
            .map(|l| {
                let doc: Value = serde_json::from_slice(&l.text).map_err(|e| {
                    format!("collection fuzz/docs: line {}: invalid JSON: {e}", l.line)
                })?;
                Ok(Parsed {
                    line: l.line,
                    doc,
                    text: l.text,
                })
            })
            .collect::<Result<Vec<Parsed>, String>>()
    });
    let docs = match parsed {
        Ok(docs) => docs,
        Err(e) => {
            assert!(
                e.contains(": line ") || e.ends_with("has no documents"),
                "a refusal names the line: {e}"
            );
            return;
        }
    };
    let blank = |l: &&[u8]| l.iter().all(u8::is_ascii_whitespace);
    assert_eq!(docs.len(), lines.iter().filter(|l| !blank(l)).count());
    for l in &docs {
        let (line, doc) = (l.line, &l.doc);
        let read: Value = serde_json::from_slice(lines[line - 1]).expect("the line parses");
        assert_eq!(&read, doc, "line {line}");
        assert_eq!(&l.text[..], lines[line - 1], "line {line}");
    }
    let c = collection();
    let accepted: Vec<Value> = docs
        .into_iter()
        .filter(|l| {
            c.check_document_of_size(&limits, &mut l.doc.clone(), l.text.len())
                .is_ok()
        })
        .map(|l| {
            // An accepted line is stored as its own text: it must read back as the document
            // that was validated, with the host's `_meta` and nothing else changed.
            let mut stored = Vec::new();
            crate::journal::Encoded::of_text(&l.text, &l.doc).stamp("u", "p", &mut stored);
            let read: Value = serde_json::from_slice(&stored).unwrap_or_else(|e| {
                panic!(
                    "line {} is stored as text that does not parse ({e}): {}",
                    l.line,
                    String::from_utf8_lossy(&stored)
                )
            });
            let mut expect = l.doc.clone();
            let op = crate::journal::op_of(&l.doc);
            if let Some(m) = expect.as_object_mut() {
                let mut meta = serde_json::json!({"uuid": "u", "published": "p"});
                if let Some(op) = op {
                    meta["op"] = op.into();
                }
                m.insert("_meta".into(), meta);
            }
            assert_eq!(
                read, expect,
                "line {} reads back as it was validated",
                l.line
            );
            l.doc
        })
        .collect();
    let keys: BTreeSet<String> = accepted.iter().map(|d| c.key_of(d).to_string()).collect();
    // A sum can overflow, which is an error, not a finding.
    if let Ok(out) = c.combine_deltas(&limits, accepted) {
        assert_eq!(out.len(), keys.len(), "one combined document per key text");
    }
}

// ---------------------------------------------------------------------------------------------
// Catalog loading.

/// A catalog text: it is refused with a message, or it builds, and what it built from (what the
/// host persists) builds again to the same collections, as at every start-up.
pub fn catalog_text(text: &str) {
    let Ok(spec) = serde_yaml::from_str::<Catalog>(text) else {
        return;
    };
    match catalog::build("fuzz.yaml", spec) {
        Ok(built) => {
            let again = catalog::build("fuzz.yaml", built.spec.clone())
                .unwrap_or_else(|e| panic!("a built catalog must build again: {e}"));
            assert_eq!(
                built.collections.keys().collect::<Vec<_>>(),
                again.collections.keys().collect::<Vec<_>>()
            );
            assert_eq!(built.spec, again.spec);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

// ---------------------------------------------------------------------------------------------
// Reductions: combining in any grouping, with spills, equals a left-to-right model.

/// One delta document of the reduce target; absent fields are left out of the document.
#[derive(Arbitrary, Debug)]
pub struct Delta {
    key: u8,
    sum: Option<i32>,
    max: Option<i16>,
    min: Option<i16>,
    last: Option<u8>,
    first: Option<u8>,
    tags: Option<Vec<u8>>,
}

#[derive(Arbitrary, Debug)]
pub struct Reductions {
    deltas: Vec<Delta>,
    /// Where the deltas are cut into groups, each combined on its own first.
    cuts: Vec<u8>,
    /// Spill after this many KiB (0: spill after every document).
    spill_kib: u8,
}

fn reduce_binding() -> flow_doc::Binding {
    let schema = json!({
        "type": "object",
        "reduce": {"strategy": "merge"},
        "required": ["k"],
        "properties": {
            "k": {"type": "integer"},
            "sum": {"type": "integer", "reduce": {"strategy": "sum"}},
            "max": {"type": "integer", "reduce": {"strategy": "maximize"}},
            "min": {"type": "integer", "reduce": {"strategy": "minimize"}},
            "last": {"type": "integer"},
            "first": {"type": "integer", "reduce": {"strategy": "firstWriteWins"}},
            "tags": {"type": "array", "reduce": {"strategy": "append"}},
        }
    });
    flow_doc::Binding {
        key: vec![flow_doc::Pointer::parse("/k").expect("pointer")],
        schema: Arc::new(flow_doc::Schema::compile(&schema).expect("the reduce schema compiles")),
    }
}

impl Delta {
    fn doc(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("k".into(), json!(self.key % 8));
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        put("sum", self.sum.map(Value::from));
        put("max", self.max.map(Value::from));
        put("min", self.min.map(Value::from));
        put("last", self.last.map(Value::from));
        put("first", self.first.map(Value::from));
        put("tags", self.tags.as_ref().map(|t| json!(t)));
        Value::Object(m)
    }
}

/// The model: each key's deltas folded left to right, as REDUCTIONS.md defines the strategies.
fn model(deltas: &[Delta]) -> BTreeMap<u8, Value> {
    #[derive(Default)]
    struct Acc {
        sum: Option<i64>,
        max: Option<i16>,
        min: Option<i16>,
        last: Option<u8>,
        first: Option<u8>,
        tags: Option<Vec<u8>>,
    }
    let mut by_key: BTreeMap<u8, Acc> = BTreeMap::new();
    for d in deltas {
        let a = by_key.entry(d.key % 8).or_default();
        if let Some(s) = d.sum {
            a.sum = Some(a.sum.unwrap_or(0) + i64::from(s));
        }
        a.max = d.max.max(a.max);
        a.min = match (a.min, d.min) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        a.last = d.last.or(a.last);
        a.first = a.first.or(d.first);
        if let Some(t) = &d.tags {
            a.tags.get_or_insert_with(Vec::new).extend(t);
        }
    }
    by_key
        .into_iter()
        .map(|(k, a)| {
            let d = Delta {
                key: k,
                sum: None,
                max: a.max,
                min: a.min,
                last: a.last,
                first: a.first,
                tags: a.tags,
            };
            let mut doc = d.doc();
            if let Some(s) = a.sum {
                doc["sum"] = json!(s);
            }
            (k, doc)
        })
        .collect()
}

/// Combine `r.deltas` in the groups `r.cuts` make (each group drained associatively), then
/// all the groups' outputs in order, fully: the result equals the model, key by key.
pub fn reductions(r: &Reductions) {
    let binding = reduce_binding();
    let spill = usize::from(r.spill_kib) << 10;
    let mut cuts: Vec<usize> = r
        .cuts
        .iter()
        .map(|c| usize::from(*c) % (r.deltas.len() + 1))
        .collect();
    cuts.push(0);
    cuts.push(r.deltas.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut partials = Vec::new();
    for w in cuts.windows(2) {
        let mut c = flow_doc::Combiner::new(vec![binding.clone()], spill);
        for d in &r.deltas[w[0]..w[1]] {
            c.add(0, d.doc(), false).expect("a delta is added");
        }
        for d in c.drain(false).expect("drain") {
            partials.push(d.expect("an associative drain succeeds").doc);
        }
    }
    let mut c = flow_doc::Combiner::new(vec![binding], spill);
    for p in partials {
        c.add(0, p, false).expect("a partial is added");
    }
    let mut got = BTreeMap::new();
    let mut last_key = None;
    for d in c.drain(true).expect("drain") {
        let d = d.expect("a full drain succeeds");
        let k = d.doc["k"].as_u64().expect("k") as u8;
        assert!(last_key < Some(k), "drained in key order");
        last_key = Some(k);
        got.insert(k, d.doc);
    }
    assert_eq!(got, model(&r.deltas));
}

// ---------------------------------------------------------------------------------------------
// Host functions a plugin can call (`state`, `sql`, `log`), fed arbitrary arguments.

/// Pieces of SQL text that reach the authorizer's and the bounds' paths, joined by spaces.
const SQL_WORDS: &[&str] = &[
    "BEGIN",
    "COMMIT",
    "END",
    "ROLLBACK",
    "SAVEPOINT s",
    "RELEASE s",
    "ATTACH 'other.db' AS o",
    "DETACH o",
    "PRAGMA journal_mode=DELETE",
    "PRAGMA synchronous=OFF",
    "PRAGMA journal_mode",
    "/**/",
    "--\n",
    ";",
    "INSERT INTO t VALUES (?1, ?2)",
    "SELECT * FROM t",
    "SELECT ?1, ?2",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n, randomblob(64) FROM r",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
    "CREATE TABLE u(x)",
    "DROP TABLE t",
    "DELETE FROM t",
    "UPDATE t SET v = ?1",
    "VACUUM",
    "(",
    ")",
    "'",
    "\"",
    ",",
    "x",
    "1",
];

#[derive(Arbitrary, Debug)]
pub enum Piece {
    Word(u8),
    Text(String),
}

#[derive(Arbitrary, Debug)]
pub enum Param {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
pub enum Call {
    StateGet(u8),
    StateSet {
        key: u8,
        len: u16,
        fill: u8,
    },
    StateClear(u8),
    Sql {
        pieces: Vec<Piece>,
        params: Vec<Param>,
        how: u8,
    },
    Log {
        task: u8,
        level: u8,
        message: String,
        repeat: u8,
    },
}

const STATE_VALUE_MAX: usize = 128;
const STATE_TXN_MAX: usize = 1024;
const SQL_RESULT_MAX: usize = 8192;
const SQL_DEADLINE: Duration = Duration::from_millis(50);
/// How much longer than its deadline a SQL call may take here (a loaded machine, a slow disk)
/// before the fuzzer calls it unbounded.
const SQL_SLACK: Duration = Duration::from_secs(5);
const LOG_BOUNDS: LogBounds = LogBounds {
    lines_max: 8,
    bytes_max: 256,
    line_bytes_max: 64,
};

struct Sql {
    _dir: tempfile::TempDir,
    dest: Box<dyn crate::connector::Destination>,
    checker: Box<dyn crate::connector::Destination>,
}

fn fixtures() -> &'static (Arc<Store>, Mutex<Sql>) {
    static F: OnceLock<(Arc<Store>, Mutex<Sql>)> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("flow.redb")).expect("store"));
        let config = json!({"path": dir.path().join("dest.db")});
        let dest = crate::connector::open("sqlite", &config).expect("sqlite destination");
        let checker = crate::connector::open("sqlite", &config).expect("sqlite checker");
        dest.begin().expect("begin");
        dest.grant()
            .sql()
            .expect("a SQL destination")
            .execute(
                "CREATE TABLE t(k, v)",
                &[],
                &bounds(Duration::from_secs(10)),
            )
            .expect("create t");
        dest.commit().expect("commit");
        let sql = Sql {
            _dir: dir,
            dest,
            checker,
        };
        (store, Mutex::new(sql))
    })
}

fn bounds(deadline: Duration) -> SqlBounds {
    SqlBounds {
        deadline: Instant::now() + deadline,
        deadline_ms: deadline.as_millis() as u64,
        result_bytes_max: SQL_RESULT_MAX,
        txn_bytes_max: 64 << 20,
    }
}

fn sql_value(p: &Param) -> SqlValue {
    match p {
        Param::Null => SqlValue::Null,
        Param::Integer(i) => SqlValue::Integer(*i),
        Param::Real(f) => SqlValue::Real(*f),
        Param::Text(s) => SqlValue::Text(s.clone()),
        Param::Blob(b) => SqlValue::Blob(b.clone()),
    }
}

fn one_value(sql: &mut dyn SqlAccess, statement: &str) -> SqlValue {
    let rows = sql
        .query(statement, &[], &bounds(Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    rows.rows[0][0].clone()
}

/// A sequence of host calls inside one transaction, then the transaction is rolled back:
/// state agrees with a model of its bounds and the commit check fails exactly when a bound was
/// broken; no SQL call outlives its deadline (plus slack) or returns more than the result cap,
/// and none escapes the host's transaction or changes its durability settings (after the
/// rollback, another connection sees no row and the same journal mode); log rings stay within
/// their bounds.
pub fn host_calls(calls: &[Call]) {
    let (store, sql) = fixtures();
    let sql = sql.lock().unwrap_or_else(|p| p.into_inner());
    let (mut state, check) =
        crate::task::derive::state_for_fuzz(store.clone(), STATE_VALUE_MAX, STATE_TXN_MAX);
    let mut model: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut over = false;
    let logs = PluginLogs::new(LOG_BOUNDS);
    sql.dest.begin().expect("the host begins its transaction");
    let mut grant = sql.dest.grant().sql().expect("a SQL destination");

    for call in calls {
        match call {
            Call::StateGet(k) => {
                let key = format!("k{}", k % 16);
                assert_eq!(state.get(&key), model.get(&key).cloned().flatten(), "{key}");
            }
            Call::StateSet { key, len, fill } => {
                let key = format!("k{}", key % 16);
                let value: String =
                    std::iter::repeat_n(char::from(b'a' + fill % 26), usize::from(*len % 300))
                        .collect();
                model_put(&mut model, &mut over, &key, Some(value.clone()));
                state.set(&key, value);
            }
            Call::StateClear(k) => {
                let key = format!("k{}", k % 16);
                model_put(&mut model, &mut over, &key, None);
                state.clear(&key);
            }
            Call::Sql {
                pieces,
                params,
                how,
            } => {
                let statement: Vec<&str> = pieces
                    .iter()
                    .map(|p| match p {
                        Piece::Word(w) => SQL_WORDS[usize::from(*w) % SQL_WORDS.len()],
                        Piece::Text(t) => t.as_str(),
                    })
                    .collect();
                let statement = statement.join(" ");
                let params: Vec<SqlValue> = params.iter().map(sql_value).collect();
                let b = bounds(SQL_DEADLINE);
                let started = Instant::now();
                match how % 3 {
                    0 => drop(grant.execute(&statement, &params, &b)),
                    1 => drop(grant.execute_many(&statement, &[params.clone(), params], &b)),
                    _ => {
                        if let Ok(rows) = grant.query(&statement, &params, &b) {
                            let bytes: usize = rows.columns.iter().map(String::len).sum::<usize>()
                                + rows
                                    .rows
                                    .iter()
                                    .flatten()
                                    .map(crate::connector::result_value_bytes)
                                    .sum::<usize>();
                            assert!(
                                bytes <= SQL_RESULT_MAX,
                                "{statement}: {bytes} bytes returned"
                            );
                        }
                    }
                }
                let took = started.elapsed();
                assert!(
                    took < SQL_DEADLINE + SQL_SLACK,
                    "{statement}: took {took:?}"
                );
            }
            Call::Log {
                task,
                level,
                message,
                repeat,
            } => {
                let level = match level % 5 {
                    0 => LogLevel::Trace,
                    1 => LogLevel::Debug,
                    2 => LogLevel::Info,
                    3 => LogLevel::Warn,
                    _ => LogLevel::Error,
                };
                let message = message.repeat(usize::from(*repeat % 8) + 1);
                let task = format!("task-{}", task % 3);
                logs.push("fuzz", Some(&task), level, message);
            }
        }
    }

    assert_eq!(
        check().is_err(),
        over,
        "the commit check fails exactly when a bound broke"
    );
    sql.dest.rollback();
    let mut checker = sql.checker.grant().sql().expect("a SQL destination");
    let rows = one_value(checker.as_mut(), "SELECT count(*) FROM t");
    assert!(
        matches!(rows, SqlValue::Integer(0)),
        "a plugin's rows outlived the host's rollback: {rows:?}"
    );
    let mode = one_value(checker.as_mut(), "PRAGMA journal_mode");
    assert!(
        matches!(&mode, SqlValue::Text(m) if m == "wal"),
        "journal mode {mode:?}"
    );

    let lines = logs.read("fuzz", 0);
    let marker = "... (99999 bytes cut: lines are kept up to 64 bytes)".len();
    let mut per_task: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for l in &lines {
        assert!(
            l.message.len() <= LOG_BOUNDS.line_bytes_max + marker,
            "a log line of {} bytes",
            l.message.len()
        );
        let t = per_task.entry(l.task.as_deref().unwrap_or("")).or_default();
        t.0 += 1;
        t.1 += l.message.len();
    }
    for (task, (n, bytes)) in per_task {
        assert!(n <= LOG_BOUNDS.lines_max, "{task}: {n} lines kept");
        assert!(
            n == 1 || bytes <= LOG_BOUNDS.bytes_max,
            "{task}: {bytes} bytes kept"
        );
    }
    assert!(logs.read_page("fuzz", 0, 3).len() <= 3);
}

/// The model of the state bounds: a value over its cap, or a write that would take the
/// transaction's keys and values over theirs, is dropped and remembered.
fn model_put(
    model: &mut BTreeMap<String, Option<String>>,
    over: &mut bool,
    key: &str,
    value: Option<String>,
) {
    if value.as_ref().is_some_and(|v| v.len() > STATE_VALUE_MAX) {
        *over = true;
        return;
    }
    let mut next = model.clone();
    next.insert(key.to_string(), value);
    let bytes: usize = next
        .iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, String::len))
        .sum();
    if bytes > STATE_TXN_MAX {
        *over = true;
        return;
    }
    *model = next;
}
