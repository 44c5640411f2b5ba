//! `source-postgres` against a real PostgreSQL (Debian's, `wal_level=logical`, started on
//! loopback): a backfill of 100,000 rows, then inserts, updates and deletes from the
//! replication slot, through a derivation into a materialized table that ends equal to the
//! source table; exactly once under `kill -9` of `flow serve` while the table changes; and a
//! source database restarted mid-stream.

use crate::plugins;
use crate::postgres::PASSWORD_ENV;
use flow_tests::{PgServer, Proc, get_json};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// `acme/orders`, captured from table `orders`; its key is the table's.
fn orders_collection() -> Value {
    json!({
        "schema": {"type": "object",
                   "properties": {"id": {"type": "integer"}, "customer": {"type": "string"},
                                  "amount": {"type": "number"}, "v": {"type": "integer"},
                                  "note": {"type": ["string", "null"]}},
                   // A delete carries only the key: it is checked against that, not the schema.
                   "required": ["id", "customer"]},
        "key": ["/id"],
    })
}

fn capture(pg: &PgServer, chunk_rows: u64) -> Value {
    let mut config = pg.endpoint_config(PASSWORD_ENV);
    config["backfillChunkRows"] = json!(chunk_rows);
    json!({
        "endpoint": {"connector": "postgres", "wasm": {"plugin": "source-postgres", "config": config}},
        "interval": "200ms",
        "bindings": [{"target": "acme/orders", "resource": {"namespace": "public", "stream": "orders"}}],
        // A poll of 20,000 rows runs the host's `sql` for them in a debug build, beside the
        // rest of the suite on two cores: it once took over the default second.
        "limits": {"callDeadlineMs": 10_000},
    })
}

/// The table's rows as `id|customer|amount|v|note` lines, in id order.
fn pg_rows(pg: &PgServer) -> Vec<String> {
    pg.psql("SELECT id, customer, amount::float8, v, coalesce(note, '') FROM orders ORDER BY id")
        .lines()
        .map(str::to_string)
        .collect()
}

/// A SQLite table's rows in the same form.
fn sqlite_rows(db: &std::path::Path) -> Vec<String> {
    rusqlite::Connection::open(db)
        .and_then(|c| {
            let mut stmt = c.prepare(
                "SELECT id, customer, amount, v, coalesce(note, '') FROM orders ORDER BY id",
            )?;
            stmt.query_map([], |r| {
                Ok(format!(
                    "{}|{}|{}|{}|{}",
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, f64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?
                ))
            })?
            .collect()
        })
        .unwrap_or_default()
}

const CREATE_ORDERS: &str = "CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, \
     amount numeric NOT NULL, v bigint NOT NULL DEFAULT 0, note text, tags text[])";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_capture_backfills_then_streams_changes_into_a_table_equal_to_the_source() {
    let pg = PgServer::start();
    pg.psql(CREATE_ORDERS);
    pg.psql(
        "INSERT INTO orders (id, customer, amount, note, tags) \
         SELECT i, 'c' || (i % 1000), (i % 97) + 0.5, CASE WHEN i % 10 = 0 THEN 'n' || i END, \
         CASE WHEN i % 10 = 0 THEN ARRAY['t' || i] END FROM generate_series(1, 100000) i",
    );
    let dir = tempfile::tempdir().unwrap();
    let p = crate::destinations::serve(dir.path()).await;
    let http = client();
    for (name, path) in [
        ("source-postgres", plugins::SOURCE_POSTGRES),
        ("passthrough", plugins::PASSTHROUGH),
        ("materialize-sqlite", plugins::MATERIALIZE_SQLITE),
    ] {
        flow_tests::deploy(&http, &p.base, name, path).await;
    }
    let views = dir.path().join("views.db");
    let mut copy = orders_collection();
    copy["derive"] = json!({"using": {"wasm": {"plugin": "passthrough"}},
                            "transforms": [{"name": "fromOrders", "source": "acme/orders"}]});
    let bundle = json!({
        "source": "pg-capture",
        "catalog": {
            "collections": {"acme/orders": orders_collection(), "acme/orders-copy": copy},
            "captures": {"acme/pg": capture(&pg, 20_000)},
            "materializations": {"acme/views": {
                "endpoint": {"wasm": {"plugin": "materialize-sqlite", "config": {"path": views}}},
                "bindings": [{"source": "acme/orders-copy", "resource": {"table": "orders"}}],
            }},
        },
    });
    flow_tests::publish(&http, &p.base, &bundle).await;

    // The backfill: every row once, as the table holds it.
    let docs = flow_tests::wait_for_documents(&http, &p.base, "acme/orders", 100_000, 120).await;
    let ids: Vec<u64> = docs.iter().map(|d| d["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=100_000).collect::<Vec<u64>>());
    assert_eq!(docs[9]["note"], "n10");
    assert_eq!(docs[9]["tags"], json!(["t10"]));
    assert_eq!(docs[0]["amount"], 1.5);
    assert_eq!(docs[0]["_meta"]["op"], "c");

    // Changes, each step captured before the next: inserts, updates (one row twice in one
    // transaction: one poll, combined by key into its last state), deletes, an insert again.
    let steps: [(&str, usize); 6] = [
        (
            "INSERT INTO orders (id, customer, amount) SELECT i, 'new', 1 FROM generate_series(100001, 101000) i",
            1000,
        ),
        (
            "UPDATE orders SET amount = amount + 100, v = v + 1 WHERE id % 200 = 0",
            505,
        ),
        (
            "BEGIN; UPDATE orders SET note = 'twice', v = v + 1 WHERE id = 7; UPDATE orders SET v = v + 1, tags = ARRAY['a', 'b,c'] WHERE id = 7; COMMIT",
            1,
        ),
        ("DELETE FROM orders WHERE id % 333 = 0", 303),
        // The key changes: the old key's row is deleted, the new one written.
        ("UPDATE orders SET id = 200005 WHERE id = 5", 2),
        (
            "INSERT INTO orders (id, customer, amount) VALUES (333, 'back', 3)",
            1,
        ),
    ];
    let mut n = 100_000;
    for (sql, changed) in steps {
        pg.psql(sql);
        n += changed;
        flow_tests::wait_for_documents(&http, &p.base, "acme/orders", n, 60).await;
    }
    let expected = pg_rows(&pg);

    // The materialized table ends equal to the source table: deletes removed its rows.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = sqlite_rows(&views);
        if got == expected {
            break;
        }
        if Instant::now() > deadline {
            let tasks = get_json(&http, &p.base, "/v1/tasks").await;
            let missing: Vec<&String> = expected
                .iter()
                .filter(|r| !got.contains(r))
                .take(5)
                .collect();
            panic!(
                "the table has {} rows, the source {} (first missing: {missing:?}); tasks: {tasks:#}",
                got.len(),
                expected.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every change once, in commit order.
    let docs = flow_tests::documents(&http, &p.base, "acme/orders").await;
    assert_eq!(docs.len(), n, "more documents than changes");
    let changes = &docs[100_000..];
    let count = |op: &str| changes.iter().filter(|d| d["_meta"]["op"] == op).count();
    assert_eq!((count("c"), count("u"), count("d")), (1_001, 507, 304));
    let seven: Vec<&Value> = changes.iter().filter(|d| d["id"] == 7).collect();
    assert_eq!(seven.len(), 1);
    assert_eq!(
        (&seven[0]["v"], &seven[0]["note"]),
        (&json!(2), &json!("twice"))
    );
    // An array, as the backfill's row_to_json writes it (not its text, {a,"b,c"}).
    assert_eq!(seven[0]["tags"], json!(["a", "b,c"]));
    let deleted = changes.iter().find(|d| d["id"] == 666).unwrap();
    assert_eq!(deleted["_meta"]["op"], "d");
    assert_eq!(
        deleted.as_object().unwrap().len(),
        2,
        "a delete carries its key: {deleted}"
    );

    // The slot was advanced to what the host committed: it holds nothing older.
    let slot = pg.psql(
        "SELECT confirmed_flush_lsn >= pg_current_wal_lsn() - 1000000 FROM pg_replication_slots WHERE slot_name = 'flow_acme_pg'",
    );
    assert_eq!(slot.trim(), "t", "the slot lags behind");
    let task = get_json(&http, &p.base, "/v1/tasks/acme%2Fpg").await;
    assert_eq!(task["kind"], "capture");
    assert_eq!(task["captured"][0]["docs"], 101_813, "{task:#}");
    // The source tells when it committed what was captured: the lag behind it.
    let lag = task["lagMs"].as_u64().unwrap_or(u64::MAX);
    assert!(lag < 60_000, "{task:#}");
}

/// A writer of changes to `orders`: random inserts, updates and deletes of 1..=`keys`, each
/// setting `v` to the next value of one counter, so every change is told apart; what it did,
/// per key, in commit order (`-1` for a delete).
struct Writer {
    rng: u64,
    next_v: i64,
    keys: u64,
    live: std::collections::BTreeSet<u64>,
    history: BTreeMap<u64, Vec<i64>>,
}

impl Writer {
    fn rand(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n
    }

    /// One source transaction of a few changes, as SQL.
    fn transaction(&mut self) -> String {
        let mut sql = String::from("BEGIN;");
        for _ in 0..1 + self.rand(4) {
            let id = 1 + self.rand(self.keys);
            self.next_v += 1;
            let v = self.next_v;
            if self.live.contains(&id) {
                if self.rand(4) == 0 {
                    sql.push_str(&format!("DELETE FROM orders WHERE id = {id};"));
                    self.live.remove(&id);
                    self.history.entry(id).or_default().push(-1);
                } else {
                    sql.push_str(&format!("UPDATE orders SET v = {v} WHERE id = {id};"));
                    self.history.entry(id).or_default().push(v);
                }
            } else {
                sql.push_str(&format!(
                    "INSERT INTO orders (id, customer, amount, v) VALUES ({id}, 'w', 1, {v});"
                ));
                self.live.insert(id);
                self.history.entry(id).or_default().push(v);
            }
        }
        sql.push_str("COMMIT;");
        sql
    }
}

/// Per key, the `v`s of `collection`'s documents in journal order (`-1` for a delete).
async fn captured(http: &reqwest::Client, base: &str) -> BTreeMap<u64, Vec<i64>> {
    let mut out: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for d in flow_tests::documents(http, base, "acme/orders").await {
        let v = if d["_meta"]["op"] == "d" {
            -1
        } else {
            d["v"].as_i64().unwrap()
        };
        out.entry(d["id"].as_u64().unwrap()).or_default().push(v);
    }
    out
}

/// Each key's captured history is its source history from some point on (the backfill read
/// the row as it was then), in order, nothing repeated, and ends where the source ends. A
/// poll combines what it read by key, so changes of one key within one poll show as the last
/// of them: the history is a subsequence, not always every change.
fn check_histories(source: &BTreeMap<u64, Vec<i64>>, got: &BTreeMap<u64, Vec<i64>>) {
    for (id, hist) in source {
        let g = got.get(id).cloned().unwrap_or_default();
        // A key deleted before its backfill may never show.
        if g.is_empty() {
            assert_eq!(
                hist.last(),
                Some(&-1),
                "key {id}: nothing captured of {hist:?}"
            );
            continue;
        }
        let mut rest = hist.iter();
        for v in &g {
            assert!(
                rest.any(|h| h == v),
                "key {id}: captured {g:?} is not its changes {hist:?} in order, each once"
            );
        }
        assert_eq!(
            g.last(),
            hist.last(),
            "key {id}: captured {g:?}, changes {hist:?}"
        );
    }
    for id in got.keys() {
        assert!(
            source.contains_key(id),
            "key {id} was captured but never written"
        );
    }
}

/// Wait until every key's last captured state is the source's (panics with `why()` after 90
/// s), then check the histories.
async fn wait_caught_up(
    http: &reqwest::Client,
    base: &str,
    source: &BTreeMap<u64, Vec<i64>>,
    why: impl Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = captured(http, base).await;
        let done = source.iter().all(|(id, h)| {
            got.get(id).and_then(|g| g.last()) == h.last()
                || (h.last() == Some(&-1) && !got.contains_key(id))
        });
        if done {
            return check_histories(source, &got);
        }
        assert!(
            Instant::now() < deadline,
            "the capture did not catch up: {}",
            why()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn start_pg_capture(http: &reqwest::Client, p: &Proc, pg: &PgServer, chunk_rows: u64) {
    flow_tests::deploy(http, &p.base, "source-postgres", plugins::SOURCE_POSTGRES).await;
    let bundle = json!({
        "source": "pg-capture",
        "catalog": {
            "collections": {"acme/orders": orders_collection()},
            "captures": {"acme/pg": capture(pg, chunk_rows)},
        },
    });
    flow_tests::publish(http, &p.base, &bundle).await;
}

/// A table of `rows` rows (each `v` 0) and its writer, which also inserts keys past them.
fn seeded(pg: &PgServer, seed: u64, rows: u64) -> Writer {
    pg.psql(CREATE_ORDERS);
    pg.psql(&format!(
        "INSERT INTO orders (id, customer, amount) SELECT i, 'c', 1 FROM generate_series(1, {rows}) i"
    ));
    Writer {
        rng: seed,
        next_v: 0,
        keys: rows + rows / 3,
        live: (1..=rows).collect(),
        history: (1..=rows).map(|i| (i, vec![0])).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_capture_is_exactly_once_under_kill_9_while_the_table_changes() {
    let pg = PgServer::start();
    let mut writer = seeded(&pg, 0x9e37_79b9_7f4a_7c15, 150_000);
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = (dir.path().join("data"), dir.path().join("serve.log"));
    let envs = crate::destinations::passwords();
    let http = client();
    let mut p = Proc::start_with(&data, &log, &[], &envs).await;
    start_pg_capture(&http, &p, &pg, 250).await;

    // 22 kills while the table changes, about half of them while the backfill of 150,000 rows in
    // chunks of 250 is under way: the writer commits a few transactions (over existing rows,
    // rows not backfilled yet, and new keys) between kills.
    let mut landed = Vec::new();
    for kill in 0..22u64 {
        let sql: String = (0..3 + kill % 5).map(|_| writer.transaction()).collect();
        pg.psql(&sql);
        tokio::time::sleep(Duration::from_millis(100 + (kill * 137) % 400)).await;
        landed.push(
            flow_tests::documents(&http, &p.base, "acme/orders")
                .await
                .len(),
        );
        p.kill();
        p = Proc::start_with(&data, &log, &[], &envs).await;
    }
    let final_rows = pg_rows(&pg).len();
    eprintln!("documents captured at each kill: {landed:?}; {final_rows} rows at the end");

    wait_caught_up(&http, &p.base, &writer.history, || p.log_tail()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_capture_retries_while_its_database_restarts_and_resumes_from_its_lsn() {
    let pg = PgServer::start();
    let mut writer = seeded(&pg, 42, 3_000);
    let dir = tempfile::tempdir().unwrap();
    let p = crate::destinations::serve(dir.path()).await;
    let http = client();
    start_pg_capture(&http, &p, &pg, 500).await;
    flow_tests::wait_for_documents(&http, &p.base, "acme/orders", 3000, 60).await;
    let sql: String = (0..20).map(|_| writer.transaction()).collect();
    pg.psql(&sql);

    pg.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = get_json(&http, &p.base, "/v1/tasks/acme%2Fpg").await;
        if t["state"] == "retrying" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the capture did not retry: {t:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pg.restart();
    let sql: String = (0..20).map(|_| writer.transaction()).collect();
    pg.psql(&sql);

    let tasks = get_json(&http, &p.base, "/v1/tasks").await;
    wait_caught_up(&http, &p.base, &writer.history, || format!("{tasks:#}")).await;
    let t = get_json(&http, &p.base, "/v1/tasks/acme%2Fpg").await;
    assert_eq!(t["state"], "running", "{t:#}");
}
