//! `flow bench --suite materialize`: what a materialization costs its destination, for each
//! destination this machine can run (SQLite always; PostgreSQL, MariaDB and Redis when their
//! server programs are installed, started here on loopback in a temp dir, as the tests do;
//! Redis with an append-only file fsynced at every write, as durable as the others).
//!
//! - **Writes per event**: 100,000 events over 1,000 keys of a collection whose `n` is summed
//!   (`reduce`), ingested in requests of 10,000 (as in the pipeline suite) as fast as the host
//!   takes them, into a fact table (standard updates). The combiner folds each transaction's
//!   events by key, so the destination sees far fewer row writes than events (the issue's
//!   target: at most 1 in 20); a destination that commits faster takes more, smaller
//!   transactions, and so more writes, but for `txnTimeCombiningMs` (default 50 ms): a
//!   transaction that caught up while folding 2:1, or while rewriting the rows the one before
//!   wrote moments earlier, lasts that long, so the next requests fold into the same rows.
//!   Measured again with it off (0). Checked: the table's sum.
//! - **Latency**: 1,000 docs/s, one per ingest, for 6 s (the first not measured), into a table
//!   keyed by `id`; a poller on its own connection (through the host's connector, a
//!   transaction per poll on PostgreSQL) reads `max(id)` every millisecond, and a
//!   document's latency runs from its ingest's acknowledgement (`Host::ingest` returning once
//!   it is durable; the HTTP hop, ~0.1 ms on loopback, is left out) to the poll that first
//!   sees its row.
//! - **Backfill** (PostgreSQL): `--docs` documents written before the materialization exists,
//!   then its time to fill the table, beside `psql`'s `\copy` of the same rows (CSV) into a
//!   table of the same shape.

use crate::catalog::Catalog;
use crate::runtime::{Host, HostOptions};
use anyhow::Context;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const EVENTS: usize = 100_000;
const KEYS: usize = 1_000;
const EVENTS_PER_REQUEST: usize = 10_000;
/// The fact table is measured with the default `txnTimeCombiningMs` and with it off (0): a
/// destination that commits faster than requests arrive then writes every key per request.
const TXN_TIME_COMBINING_MS: u64 = crate::limits::Limits::TXN_TIME_COMBINING_MS;
const LATENCY_RATE: usize = 1_000;
const LATENCY_SECS: usize = 6;
const BACKFILL_PER_REQUEST: usize = 10_000;

/// Run the suite; `docs` is the backfill's size; `only`: the measures to run (`writes`,
/// `latency`, `backfill`; all when empty).
pub fn run(plugins: &Path, docs: usize, only: &[String]) -> anyhow::Result<()> {
    const MEASURES: [&str; 3] = ["writes", "latency", "backfill"];
    if let Some(m) = only.iter().find(|m| !MEASURES.contains(&m.as_str())) {
        anyhow::bail!(
            "--only {m}: suite materialize measures {}",
            MEASURES.join(", ")
        );
    }
    let run = |m: &str| only.is_empty() || only.iter().any(|o| o == m);
    let mut destinations = vec![Destination::Sqlite];
    match Postgres::start() {
        Ok(pg) => destinations.push(Destination::Postgres(pg)),
        Err(e) => eprintln!("PostgreSQL: not measured ({e:#})"),
    }
    match Mariadb::start() {
        Ok(my) => destinations.push(Destination::Mysql(my)),
        Err(e) => eprintln!("MariaDB: not measured ({e:#})"),
    }
    match RedisServer::start() {
        Ok(r) => destinations.push(Destination::Redis(r)),
        Err(e) => eprintln!("Redis: not measured ({e:#})"),
    }
    println!("materialize suite (release numbers only mean something from a release build)");
    println!(
        "| destination | row writes per event (100k events, 1k keys; default txnTimeCombiningMs {TXN_TIME_COMBINING_MS}) | the same, txnTimeCombiningMs 0 | ack -> row visible p50 / p99 / max, 1k docs/s | backfill rows/s | vs psql \\copy |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for d in &destinations {
        let backfills = matches!(d, Destination::Postgres(_)) && run("backfill");
        if !run("writes") && !run("latency") && !backfills {
            continue;
        }
        let writes = run("writes")
            .then(|| fact_table(plugins, d, TXN_TIME_COMBINING_MS))
            .transpose()?;
        let writes_off = run("writes")
            .then(|| fact_table(plugins, d, 0))
            .transpose()?;
        let lat = run("latency").then(|| latency(plugins, d)).transpose()?;
        let backfill = match d {
            Destination::Postgres(pg) if backfills => Some(backfill(plugins, pg, docs)?),
            _ => None,
        };
        let (rate, ratio) = match backfill {
            Some((flow, copy)) => (
                format!("{:.0}", docs as f64 / flow.as_secs_f64()),
                format!("{:.2}x", copy.as_secs_f64() / flow.as_secs_f64()),
            ),
            None => ("-".into(), "-".into()),
        };
        let per_event = |w: Option<(u64, usize)>| match w {
            Some((writes, events)) => format!(
                "{writes} / {events} = 1/{:.0}",
                events as f64 / writes.max(1) as f64
            ),
            None => "-".into(),
        };
        let lat = match lat {
            Some((p50, p99, max)) => {
                format!("{:.2} / {:.2} / {:.2} ms", ms(p50), ms(p99), ms(max))
            }
            None => "-".into(),
        };
        println!(
            "| {} | {} | {} | {lat} | {rate} | {ratio} |",
            d.name(),
            per_event(writes),
            per_event(writes_off),
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A connection of the bench's own to a destination, through the host's connector (only
/// `connector/` opens destination connections): each statement in a transaction of its own on
/// PostgreSQL (whose connector runs statements only inside one), autocommit on SQLite.
struct Reader {
    db: Box<dyn crate::connector::Destination>,
    access: Access,
    txn: bool,
}

/// What the reader's connection grants: SQL, or keys and values (Redis).
enum Access {
    Sql(Box<dyn flow_engine::SqlAccess>),
    Kv(Box<dyn flow_engine::KvAccess>),
}

impl Reader {
    fn bounds() -> flow_engine::SqlBounds {
        flow_engine::SqlBounds {
            deadline: Instant::now() + Duration::from_secs(60),
            deadline_ms: 60_000,
            result_bytes_max: 16 << 20,
            txn_bytes_max: 64 << 20,
        }
    }

    /// Run `f` on the connection, in a transaction of its own where the connector wants one.
    fn run<R>(&mut self, f: impl FnOnce(&mut Access) -> Result<R, String>) -> anyhow::Result<R> {
        let Reader { db, access, txn } = self;
        crate::connector::in_txn(txn.then_some(&**db), || {
            f(access).map_err(anyhow::Error::msg)
        })
    }

    /// The rows of `query`, or why not.
    fn rows(&mut self, query: &str) -> anyhow::Result<Vec<Vec<flow_engine::SqlValue>>> {
        Ok(self
            .run(|a| match a {
                Access::Sql(sql) => sql.query(query, &[], &Self::bounds()),
                Access::Kv(_) => Err("a key-value store answers no SQL".into()),
            })?
            .rows)
    }

    /// One integer from `query` (None: no answer yet, e.g. before its table exists).
    fn int(&mut self, query: &str) -> Option<i64> {
        match self.rows(query).ok()?.first()?.first()? {
            flow_engine::SqlValue::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// The string values of `keys` (a key-value store).
    fn values(&mut self, keys: &[String]) -> anyhow::Result<Vec<Option<String>>> {
        self.run(|a| match a {
            Access::Kv(kv) => kv.get(keys, &Self::bounds()),
            Access::Sql(_) => Err("a SQL database has no keys".into()),
        })
    }

    /// The highest id in `ticks` (a table, or `ticks:<id>` keys probed upwards from `from`).
    fn max_tick(&mut self, from: usize) -> Option<i64> {
        if let Access::Sql(_) = self.access {
            return self.int("SELECT max(id) FROM ticks");
        }
        let keys: Vec<String> = (from..from + 256).map(|i| format!("ticks:{i}")).collect();
        let seen = self.values(&keys).ok()?;
        let n = seen.iter().take_while(|v| v.is_some()).count();
        (n > 0).then(|| (from + n - 1) as i64)
    }

    /// The sum of `n` over fact table `table` (or the `<table>:<k>` documents of `keys` keys).
    fn sum_facts(&mut self, table: &str, keys: usize) -> Option<i64> {
        match self.access {
            // Summed here: SQL dialects disagree on the type of sum(BIGINT).
            Access::Sql(_) => self
                .rows(&format!("SELECT n FROM {table}"))
                .ok()?
                .iter()
                .map(|r| match r.first() {
                    Some(flow_engine::SqlValue::Integer(n)) => Some(*n),
                    _ => None,
                })
                .sum(),
            Access::Kv(_) => {
                let names: Vec<String> = (0..keys).map(|k| format!("{table}:{k}")).collect();
                let docs = self.values(&names).ok()?;
                docs.iter()
                    .map(|d| {
                        let d: Value = serde_json::from_str(d.as_deref()?).ok()?;
                        d["n"].as_i64()
                    })
                    .sum()
            }
        }
    }

    fn execute(&mut self, statement: &str) -> anyhow::Result<()> {
        self.run(|a| match a {
            Access::Sql(sql) => sql.execute(statement, &[], &Self::bounds()),
            Access::Kv(_) => Err("a key-value store answers no SQL".into()),
        })
        .map(drop)
    }
}

enum Destination {
    Sqlite,
    Postgres(Postgres),
    Mysql(Mariadb),
    Redis(RedisServer),
}

impl Destination {
    fn name(&self) -> &'static str {
        match self {
            Destination::Sqlite => "SQLite",
            Destination::Postgres(_) => "PostgreSQL",
            Destination::Mysql(_) => "MariaDB",
            Destination::Redis(_) => "Redis",
        }
    }

    /// The endpoint of a materialization into this destination (`dir`: the run's temp dir).
    fn endpoint(&self, dir: &Path) -> Value {
        match self {
            Destination::Sqlite => json!({"wasm": {"plugin": "materialize-sqlite",
                "config": self.config(dir)}}),
            Destination::Postgres(_) => json!({"connector": "postgres",
                "wasm": {"plugin": "materialize-postgres", "config": self.config(dir)}}),
            Destination::Mysql(_) => json!({"connector": "mysql",
                "wasm": {"plugin": "materialize-mysql", "config": self.config(dir)}}),
            Destination::Redis(_) => json!({"connector": "redis",
                "wasm": {"plugin": "materialize-redis", "config": self.config(dir)}}),
        }
    }

    /// A binding's resource: a table, or for Redis a key prefix.
    fn resource(&self, table: &str) -> Value {
        match self {
            Destination::Redis(_) => json!({"prefix": format!("{table}:")}),
            _ => json!({"table": table}),
        }
    }

    fn config(&self, dir: &Path) -> Value {
        match self {
            Destination::Sqlite => json!({"path": dir.join("views.db")}),
            Destination::Postgres(pg) => pg.config(),
            Destination::Mysql(my) => my.config(),
            Destination::Redis(r) => r.config(),
        }
    }

    /// A connection of the bench's own, reading the destination.
    fn reader(&self, dir: &Path) -> anyhow::Result<Reader> {
        let (connector, txn) = match self {
            Destination::Sqlite => ("sqlite", false),
            Destination::Postgres(_) => ("postgres", true),
            Destination::Mysql(_) => ("mysql", true),
            Destination::Redis(_) => ("redis", true),
        };
        // The task may hold the database a moment (SQLite: switching it to WAL as it opens):
        // busy is retried, as the task itself retries.
        let started = Instant::now();
        let db = loop {
            match crate::connector::open(connector, &self.config(dir)) {
                Err(e)
                    if e.is::<crate::connector::Unavailable>()
                        && started.elapsed() < Duration::from_secs(10) =>
                {
                    std::thread::sleep(Duration::from_millis(10))
                }
                r => break r?,
            }
        };
        let access = match db.grant() {
            crate::connector::Grant::Sql(sql) => Access::Sql(sql),
            crate::connector::Grant::Kv(kv) => Access::Kv(kv),
        };
        Ok(Reader { db, access, txn })
    }
}

/// A host in `dir` with the materialization plugins deployed and `catalog` published.
fn host(plugins: &Path, dir: &Path, catalog: Value) -> anyhow::Result<Arc<Host>> {
    let host = Host::open(HostOptions::new(dir.join("data")))?;
    super::deploy(
        &host,
        plugins,
        &[
            ("materialize-sqlite", "materialize_sqlite.wasm"),
            ("materialize-postgres", "materialize_postgres.wasm"),
            ("materialize-mysql", "materialize_mysql.wasm"),
            ("materialize-redis", "materialize_redis.wasm"),
        ],
    )?;
    publish(&host, catalog)?;
    Ok(host)
}

/// Publish a catalog written as JSON.
fn publish(host: &Host, catalog: Value) -> anyhow::Result<()> {
    let catalog: Catalog = serde_json::from_value(catalog).context("bench catalog")?;
    super::publish(host, catalog)
}

/// Events summed by key into a fact table, with `txnTimeCombiningMs` `combining_ms`: (row
/// writes, events).
fn fact_table(plugins: &Path, d: &Destination, combining_ms: u64) -> anyhow::Result<(u64, usize)> {
    let dir = tempfile::tempdir()?;
    // A table and a task of each run's own: a server keeps the last run's, checkpoint too.
    let (name, table) = (
        format!("bench/facts-{combining_ms}"),
        format!("facts_{combining_ms}"),
    );
    let catalog = json!({
        "collections": {"bench/events": {
            "schema": {"type": "object", "reduce": {"strategy": "merge"},
                       "properties": {"k": {"type": "integer"}, "n": {"type": "integer", "reduce": {"strategy": "sum"}}},
                       "required": ["k", "n"]},
            "key": ["/k"],
        }},
        "materializations": {name.clone(): {
            "limits": {"txnTimeCombiningMs": combining_ms},
            "endpoint": d.endpoint(dir.path()),
            "bindings": [{"source": "bench/events", "resource": d.resource(&table)}],
        }},
    });
    let host = host(plugins, dir.path(), catalog)?;
    for first in (0..EVENTS).step_by(EVENTS_PER_REQUEST) {
        let docs: Vec<Value> = (first..first + EVENTS_PER_REQUEST)
            .map(|i| json!({"k": i % KEYS, "n": 1}))
            .collect();
        host.ingest("bench/events", docs)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    host.wait_idle(Duration::from_secs(300))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let sum = d.reader(dir.path())?.sum_facts(&table, KEYS);
    anyhow::ensure!(
        sum == Some(EVENTS as i64),
        "{}: the fact table sums to {sum:?}, not {EVENTS}",
        d.name()
    );
    let writes = host.task_status(&name).map(|s| s.docs_out).unwrap_or(0);
    host.shutdown();
    Ok((writes, EVENTS))
}

/// Ingest acknowledged -> row visible to the destination's own reader: (p50, p99, max).
fn latency(plugins: &Path, d: &Destination) -> anyhow::Result<(Duration, Duration, Duration)> {
    let dir = tempfile::tempdir()?;
    let catalog = json!({
        "collections": {"bench/ticks": {
            "schema": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]},
            "key": ["/id"],
        }},
        "materializations": {"bench/ticks": {
            "endpoint": d.endpoint(dir.path()),
            "bindings": [{"source": "bench/ticks", "resource": d.resource("ticks")}],
        }},
    });
    let host = host(plugins, dir.path(), catalog)?;
    let total = LATENCY_RATE * LATENCY_SECS;
    // id -> when the poller first saw it.
    let seen: Arc<Mutex<HashMap<usize, Instant>>> = Default::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (seen, stop) = (seen.clone(), stop.clone());
        let mut read = d.reader(dir.path())?;
        std::thread::spawn(move || {
            let mut upto = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(max) = read.max_tick(upto) {
                    let now = Instant::now();
                    let max = max as usize + 1;
                    if max > upto {
                        let mut s = seen.lock().expect("seen poisoned");
                        for id in upto..max {
                            s.insert(id, now);
                        }
                        upto = max;
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let mut acked = Vec::with_capacity(total);
    let started = Instant::now();
    for id in 0..total {
        let due = started + Duration::from_secs_f64(id as f64 / LATENCY_RATE as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        host.ingest("bench/ticks", vec![json!({"id": id})])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        acked.push(Instant::now());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().expect("seen poisoned").len() < total {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{}: only {} of {total} rows became visible",
            d.name(),
            seen.lock().expect("seen poisoned").len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = poller.join();
    host.shutdown();
    let seen = seen.lock().expect("seen poisoned");
    let mut lat: Vec<Duration> = (LATENCY_RATE..total)
        .map(|id| seen[&id].saturating_duration_since(acked[id]))
        .collect();
    lat.sort();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    Ok((at(0.5), at(0.99), at(1.0)))
}

/// One backfilled row: id, a customer, an amount, a note.
fn history_doc(i: usize) -> Value {
    json!({"id": i, "customer": format!("customer-{:05}", i % 10_000), "amount": (i % 9_973) as f64 / 100.0,
           "note": "standard delivery, leave at the door"})
}

/// `docs` documents written first, then a materialization into PostgreSQL created: its time
/// to fill the table, and `psql`'s `\copy` of the same rows.
fn backfill(plugins: &Path, pg: &Postgres, docs: usize) -> anyhow::Result<(Duration, Duration)> {
    let dir = tempfile::tempdir()?;
    let collection = json!({"bench/history": {
        "schema": {"type": "object",
                   "properties": {"id": {"type": "integer"}, "customer": {"type": "string"},
                                  "amount": {"type": "number"}, "note": {"type": "string"}},
                   "required": ["id", "customer", "amount", "note"]},
        "key": ["/id"],
    }});
    let host = host(plugins, dir.path(), json!({"collections": collection}))?;
    for first in (0..docs).step_by(BACKFILL_PER_REQUEST) {
        let batch: Vec<Value> = (first..(first + BACKFILL_PER_REQUEST).min(docs))
            .map(history_doc)
            .collect();
        host.ingest("bench/history", batch)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let started = Instant::now();
    publish(
        &host,
        json!({
            "collections": collection,
            "materializations": {"bench/history": {
                "endpoint": Destination::Postgres(pg.clone()).endpoint(dir.path()),
                "bindings": [{"source": "bench/history", "resource": {"table": "history"}}],
            }},
        }),
    )?;
    host.wait_idle(Duration::from_secs(1800))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let flow = started.elapsed();
    host.shutdown();
    let mut db = Destination::Postgres(pg.clone()).reader(dir.path())?;
    let rows = db.int("SELECT count(*) FROM history");
    anyhow::ensure!(
        rows == Some(docs as i64),
        "the history table has {rows:?} rows, not {docs}"
    );

    // The same rows as CSV, copied by psql into a table of the same shape.
    db.execute("CREATE TABLE history_copy (LIKE history INCLUDING ALL)")?;
    let csv = dir.path().join("history.csv");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&csv)?);
        let mut row = csv::Row::default();
        for i in 0..docs {
            let d = history_doc(i);
            row.write(&mut w, &d)?;
        }
        w.flush()?;
    }
    let columns: Vec<String> = db
        .rows(
            "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'history' ORDER BY ordinal_position",
        )?
        .into_iter()
        .filter_map(|r| match r.into_iter().next() {
            Some(flow_engine::SqlValue::Text(c)) => Some(c),
            _ => None,
        })
        .collect();
    let copy = format!(
        "\\copy history_copy ({}) FROM '{}' WITH (FORMAT csv)",
        columns
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", "),
        csv.display()
    );
    anyhow::ensure!(
        columns == ["id", "amount", "customer", "note", "flow_document"],
        "the history table's columns are {columns:?}: the CSV's order needs updating"
    );
    let started = Instant::now();
    pg.psql(&copy)?;
    let copied = started.elapsed();
    let rows = db.int("SELECT count(*) FROM history_copy");
    anyhow::ensure!(
        rows == Some(docs as i64),
        "\\copy loaded {rows:?} rows, not {docs}"
    );
    Ok((flow, copied))
}

/// CSV rows in the history table's column order (id, amount, customer, note, flow_document).
mod csv {
    use serde_json::Value;

    #[derive(Default)]
    pub struct Row(String);

    impl Row {
        pub fn write(&mut self, w: &mut impl std::io::Write, d: &Value) -> std::io::Result<()> {
            let doc = d.to_string();
            self.0.clear();
            self.0.push_str(&format!(
                "{},{},{},{},{}\n",
                d["id"],
                d["amount"],
                quote(d["customer"].as_str().unwrap_or_default()),
                quote(d["note"].as_str().unwrap_or_default()),
                quote(&doc)
            ));
            w.write_all(self.0.as_bytes())
        }
    }

    fn quote(s: &str) -> String {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

/// A PostgreSQL server of this bench's own, on loopback in a temp dir, stopped on drop. As
/// root it runs as the `postgres` user (the server refuses root), as in the tests.
#[derive(Clone)]
pub(super) struct Postgres {
    inner: Arc<PgDir>,
}

struct PgDir {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

const PG_PASSWORD: &str = "flow-bench-secret";

impl Drop for PgDir {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = run_pg(
            &self.bin,
            self.dir.path(),
            "pg_ctl",
            &["-D", &data.to_string_lossy(), "-m", "immediate", "stop"],
        );
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Run PostgreSQL's program `program` (as `postgres` when this is root).
fn run_pg(bin: &Path, cwd: &Path, program: &str, args: &[&str]) -> anyhow::Result<()> {
    let exe = bin.join(program);
    let out = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&exe)
            .args(args)
            .current_dir(cwd)
            .output()
    } else {
        Command::new(&exe).args(args).current_dir(cwd).output()
    }
    .with_context(|| format!("failed to run {}", exe.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{program} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

impl Postgres {
    /// With `wal_level=logical` (as a capture's source needs); user `flow` is its superuser.
    pub(super) fn start() -> anyhow::Result<Postgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| {
                let mut found: Vec<PathBuf> = d
                    .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                    .filter(|b| b.join("initdb").is_file())
                    .collect();
                found.sort();
                found.pop()
            })
            .context(
                "PostgreSQL's server programs are not installed (apt-get install postgresql)",
            )?;
        let dir = tempfile::tempdir()?;
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()?;
            anyhow::ensure!(ok.success(), "chown of {}", dir.path().display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, PG_PASSWORD)?;
        let data = dir.path().join("data");
        run_pg(
            &bin,
            dir.path(),
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "flow",
                "--auth=scram-sha-256",
                "--pwfile",
                &pw.to_string_lossy(),
                "--no-sync",
            ],
        )?;
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c wal_level=logical",
            dir.path().display()
        );
        let log = dir.path().join("server.log");
        run_pg(
            &bin,
            dir.path(),
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        Ok(Postgres {
            inner: Arc::new(PgDir { dir, bin, port }),
        })
    }

    /// The endpoint config: the password from a file (a secret is never inline).
    pub(super) fn config(&self) -> Value {
        json!({"address": format!("127.0.0.1:{}", self.inner.port), "database": "postgres", "user": "flow",
               "password": {"file": self.inner.dir.path().join("pw")}})
    }

    /// Run `command` with `psql`, PostgreSQL's own client.
    pub(super) fn psql(&self, command: &str) -> anyhow::Result<()> {
        self.psql_output(command).map(drop)
    }

    /// `psql -c command`: its standard output.
    pub(super) fn psql_output(&self, command: &str) -> anyhow::Result<Vec<u8>> {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.inner.port.to_string(),
                "-U",
                "flow",
                "-d",
                "postgres",
            ])
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", command])
            .env("PGPASSWORD", PG_PASSWORD)
            .output()
            .context("failed to run psql")?;
        anyhow::ensure!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(out.stdout)
    }
}

/// A MariaDB server of this bench's own, on loopback in a temp dir, killed on drop; user
/// `flow` with a password owns database `views`. As root, it is told to run as root.
struct Mariadb {
    dir: tempfile::TempDir,
    port: u16,
    server: std::process::Child,
}

const MY_PASSWORD: &str = "flow-bench-secret";

impl Drop for Mariadb {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

impl Mariadb {
    fn start() -> anyhow::Result<Mariadb> {
        let program = |name: &str| {
            ["/usr/sbin", "/usr/bin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
                .with_context(|| {
                    format!("MariaDB's {name} is not installed (apt-get install mariadb-server)")
                })
        };
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let socket = dir.path().join("mysqld.sock");
        let user = is_root().then_some("--user=root");
        let out = Command::new(program("mariadb-install-db")?)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .args(user)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let server = Command::new(program("mariadbd")?)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-error={}",
                dir.path().join("server.log").display()
            ))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
            ])
            .args(user)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let my = Mariadb { dir, port, server };
        let setup = format!(
            "CREATE DATABASE views; CREATE USER 'flow'@'127.0.0.1' IDENTIFIED BY '{MY_PASSWORD}'; \
             GRANT ALL ON views.* TO 'flow'@'127.0.0.1'"
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new(program("mariadb")?)
                .arg("--no-defaults")
                .arg(format!("--socket={}", socket.display()))
                .args(["-u", "root", "-e", &setup])
                .output()?;
            if out.status.success() {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "mariadbd did not answer: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::fs::write(my.dir.path().join("pw"), MY_PASSWORD)?;
        Ok(my)
    }

    /// The endpoint config: the password from a file (a secret is never inline).
    pub(super) fn config(&self) -> Value {
        json!({"address": format!("127.0.0.1:{}", self.port), "database": "views", "user": "flow",
               "password": {"file": self.dir.path().join("pw")}})
    }
}

/// A Redis server of this bench's own, on loopback in a temp dir, with a password and an
/// append-only file fsynced at every write; killed on drop.
struct RedisServer {
    dir: tempfile::TempDir,
    port: u16,
    server: std::process::Child,
}

const REDIS_PASSWORD: &str = "flow-bench-secret";

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

impl RedisServer {
    fn start() -> anyhow::Result<RedisServer> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let server = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.path())
            .args(["--requirepass", REDIS_PASSWORD])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("redis-server is not installed (apt-get install redis-server)")?;
        std::fs::write(dir.path().join("pw"), REDIS_PASSWORD)?;
        let r = RedisServer { dir, port, server };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(r)
    }

    /// The endpoint config: the password from a file (a secret is never inline).
    pub(super) fn config(&self) -> Value {
        json!({"address": format!("127.0.0.1:{}", self.port),
               "password": {"file": self.dir.path().join("pw")}})
    }
}
