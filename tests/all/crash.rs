//! Crash tests: the real `flow` binary, killed with SIGKILL at awkward moments and restarted on
//! the same data directory, held to the promises of DESIGN section 4.
//!
//!   cargo build -p flow-host && cargo test -p flow-tests --test all crash -- --nocapture
//!
//! (`cargo test --workspace` builds the binary itself; `--nocapture` shows where kills landed.)
//! Every random choice (inputs, batch sizes, kill delays) comes from a fixed seed, so each run
//! makes the same choices; where a kill lands within those delays still depends on the
//! machine, which is the point of running it often.

use crate::plugins;
use flow_tests::{MyServer, PgServer, Proc, RedisServer};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// splitmix64: reproducible choices from a seed; nothing here needs better randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (near enough for test delays and sizes).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn documents(collection: &str) -> String {
    format!(
        "/v1/collections/{}/documents",
        collection.replace('/', "%2F")
    )
}

/// Ingest `docs` as one NDJSON request. `true`: acknowledged (200). `false`: no answer (the
/// host died under it). Any other answer is a failure of the test: every batch is valid.
async fn ingest(http: &reqwest::Client, p: &str, collection: &str, docs: &[Value]) -> bool {
    let body: String = docs.iter().map(|d| format!("{d}\n")).collect();
    match http
        .post(format!("{p}{}", documents(collection)))
        .body(body)
        .send()
        .await
    {
        Ok(r) if r.status() == 200 => true,
        Ok(r) => {
            let status = r.status();
            panic!(
                "ingest into {collection} answered {status}: {}",
                r.text().await.unwrap_or_default()
            )
        }
        Err(_) => false,
    }
}

/// Every document of `collection` from offset 0, in publish-time order.
async fn read_all(http: &reqwest::Client, p: &Proc, collection: &str) -> Vec<Value> {
    let r = http
        .get(p.url(&documents(collection)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "reading {collection}");
    let mut docs: Vec<Value> = r
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // In publish-time order (`_meta/uuid`), as tasks read them: the journals of a collection's
    // logical partitions are read back one after another (one journal is in that order).
    docs.sort_by(|a, b| {
        a["_meta"]["uuid"]
            .as_str()
            .unwrap()
            .cmp(b["_meta"]["uuid"].as_str().unwrap())
    });
    docs
}

async fn post_json(http: &reqwest::Client, p: &Proc, path: &str, body: &Value) {
    let r = http.post(p.url(path)).json(body).send().await.unwrap();
    let status = r.status();
    assert_eq!(status, 200, "POST {path}: {}", r.text().await.unwrap());
}

// ---------------------------------------------------------------------------------------------
// 1. Acknowledged ingests survive kill -9.

const EVENTS: &str = "crash/events";
/// Concurrent writers: several ingests in flight when the kill lands.
const WRITERS: u64 = 4;
/// Kill, restart and check this many times on one data directory.
const INGEST_ROUNDS: usize = 3;

/// What a writer sent, and whether the host acknowledged it.
struct Batch {
    ids: Vec<u64>,
    acked: bool,
}

/// The content of event `id`, so a read-back can be checked field by field, not only by id.
fn event(id: u64) -> Value {
    json!({"id": id, "writer": id % WRITERS, "pad": format!("{id:x}").repeat(12)})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_ingests_survive_kill_9() {
    let seed = 0x1dea_0001;
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = (dir.path().join("data"), dir.path().join("serve.log"));
    let http = client();

    let mut p = Proc::start(&data, &log).await;
    post_json(
        &http,
        &p,
        "/v1/catalog",
        &json!({"source": "crash", "catalog": {"collections": {EVENTS: {
            "schema": {"type": "object",
                       "properties": {"id": {"type": "integer"}, "writer": {"type": "integer"}, "pad": {"type": "string"}},
                       "required": ["id", "writer", "pad"]},
            "key": ["/id"],
        }}}}),
    )
    .await;

    let batches: Arc<Mutex<Vec<Batch>>> = Arc::default();
    let next_id = Arc::new(AtomicU64::new(1));
    for round in 1..=INGEST_ROUNDS {
        let (acks_tx, mut acks_rx) = tokio::sync::watch::channel(0usize);
        let acks_tx = Arc::new(acks_tx);
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (http, base, batches, next_id, acks_tx) = (
                http.clone(),
                p.base.clone(),
                batches.clone(),
                next_id.clone(),
                acks_tx.clone(),
            );
            let mut wrng = Rng(seed ^ ((round as u64) << 8) ^ w);
            writers.push(tokio::spawn(async move {
                loop {
                    let n = wrng.range(1, 8);
                    let first = next_id.fetch_add(n, Ordering::Relaxed);
                    let ids: Vec<u64> = (first..first + n).collect();
                    let docs: Vec<Value> = ids.iter().map(|i| event(*i)).collect();
                    let i = {
                        let mut b = batches.lock().unwrap();
                        b.push(Batch { ids, acked: false });
                        b.len() - 1
                    };
                    if !ingest(&http, &base, EVENTS, &docs).await {
                        return;
                    }
                    batches.lock().unwrap()[i].acked = true;
                    acks_tx.send_modify(|n| *n += 1);
                }
            }));
        }
        // Kill once the writers are in full swing, a little after an acknowledgement, so that
        // other requests are between their append and their reply, or mid-append.
        let target = rng.range(40, 120) as usize;
        tokio::time::timeout(Duration::from_secs(60), acks_rx.wait_for(|n| *n >= target))
            .await
            .expect("the writers made no progress within 60s")
            .unwrap();
        tokio::time::sleep(Duration::from_micros(rng.range(0, 20_000))).await;
        p.kill();
        for w in writers {
            w.await.unwrap();
        }

        p = Proc::start(&data, &log).await;
        let docs = read_all(&http, &p, EVENTS).await;
        let batches = batches.lock().unwrap();
        let mut count: BTreeMap<u64, usize> = BTreeMap::new();
        for d in &docs {
            let id = d["id"].as_u64().unwrap();
            *count.entry(id).or_default() += 1;
            let mut bare = d.clone();
            bare.as_object_mut().unwrap().remove("_meta");
            assert_eq!(
                bare,
                event(id),
                "round {round}: event {id} came back altered"
            );
        }
        let sent: BTreeSet<u64> = batches.iter().flat_map(|b| b.ids.clone()).collect();
        for (id, n) in &count {
            assert_eq!(
                *n, 1,
                "round {round}: event {id} is in the journal {n} times"
            );
            assert!(
                sent.contains(id),
                "round {round}: event {id} was never sent"
            );
        }
        let (mut acked, mut durable_unacked, mut lost_unacked) = (0, 0, 0);
        for b in batches.iter() {
            let present = b.ids.iter().filter(|i| count.contains_key(i)).count();
            assert!(
                present == 0 || present == b.ids.len(),
                "round {round}: a batch of {} events is partly in the journal ({present} of them: {:?}); an ingest must be all or nothing",
                b.ids.len(),
                b.ids
            );
            match (b.acked, present > 0) {
                (true, true) => acked += 1,
                (true, false) => panic!(
                    "round {round}: an acknowledged batch is lost after kill -9: events {:?}",
                    b.ids
                ),
                (false, true) => durable_unacked += 1,
                (false, false) => lost_unacked += 1,
            }
        }
        eprintln!(
            "crash ingest round {round}: {} events; {acked} acknowledged batches all present once; {durable_unacked} unacknowledged batches appended whole, {lost_unacked} absent",
            docs.len()
        );
    }
    p.kill();
}

// ---------------------------------------------------------------------------------------------
// 2. Derivation and materialization under a loop of kill -9.

const ORDERS: &str = "acme/orders";
const TOTALS: &str = "acme/customer-totals";
const N_ORDERS: u64 = 2000;
const N_CUSTOMERS: u64 = 40;
const BATCH_DOCS_MAX: u64 = 20;
/// DESIGN / issue 5: at least 20 kills, restarting each time.
const KILLS_MIN: usize = 20;
/// Past this many kills the input is finished without more: it bounds the runtime.
const KILLS_MAX: usize = 80;
/// Past this time, the input is finished without more kills once there were `KILLS_MIN`: a
/// loaded machine makes the test slower, not flaky.
const KILLING_SECS_MAX: u64 = 100;

/// The fixed input: `N_ORDERS` orders with unique ids over `N_CUSTOMERS` customers, in batches
/// of 1 to `BATCH_DOCS_MAX`. Amounts are multiples of 1/4, so every total is exact in binary
/// floating point whatever the order of additions.
fn order_batches(seed: u64) -> Vec<Vec<Value>> {
    let mut rng = Rng(seed);
    let mut batches = Vec::new();
    let mut id = 1;
    while id <= N_ORDERS {
        let n = rng.range(1, BATCH_DOCS_MAX).min(N_ORDERS - id + 1);
        batches.push(
            (id..id + n)
                .map(|i| {
                    let customer = rng.range(0, N_CUSTOMERS - 1);
                    let region = ["east", "west", "north"][(customer % 3) as usize];
                    json!({
                        "id": i,
                        "customer": format!("c{customer:02}"),
                        "amount": rng.range(0, 400) as f64 / 4.0,
                        // The logical partition of the orders in the SQLite run.
                        "region": region,
                    })
                })
                .collect(),
        );
        id += n;
    }
    batches
}

/// Where the crash loop materializes: a SQLite file, or a PostgreSQL server.
#[derive(Clone, Copy)]
enum Dest<'a> {
    Sqlite(&'a Path),
    Postgres(&'a PgServer),
    Mysql(&'a MyServer),
    /// Redis keeps one value per key: no delta log, so a replay would rewrite the same
    /// values; the run checks that the final values are the crash-free run's.
    Redis(&'a RedisServer),
}

/// Start (or spawn) `flow serve` with every server's password in its environment.
async fn start(data: &Path, log: &Path) -> Proc {
    Proc::start_with(data, log, &[], &crate::destinations::passwords()).await
}

fn spawn(data: &Path, log: &Path) -> Proc {
    Proc::spawn_with(data, log, &[], &crate::destinations::passwords())
}

/// Deploy the demo plugins and publish the demo pipeline (orders -> customer-totals ->
/// `customer_totals` in the destination), with a second binding of the same materialization
/// that appends every combined delta to `customer_totals_log`. The standard table is a
/// last-write-wins upsert, so a replayed materialization transaction would leave it unchanged;
/// the log shows a replay as a repeated row.
async fn set_up_pipeline(http: &reqwest::Client, p: &Proc, dest: Dest<'_>) {
    let (connector, materializer, path) = match dest {
        Dest::Sqlite(_) => ("sqlite", "materialize-sqlite", plugins::MATERIALIZE_SQLITE),
        Dest::Postgres(_) => (
            "postgres",
            "materialize-postgres",
            plugins::MATERIALIZE_POSTGRES,
        ),
        Dest::Mysql(_) => ("mysql", "materialize-mysql", plugins::MATERIALIZE_MYSQL),
        Dest::Redis(_) => ("redis", "materialize-redis", plugins::MATERIALIZE_REDIS),
    };
    for (name, path) in [("totals", plugins::CUSTOMER_TOTALS), (materializer, path)] {
        flow_tests::deploy(http, &p.url(""), name, path).await;
    }
    let mut bundle = crate::e2e::bundle(Path::new("unused.db"));
    bundle["catalog"]["materializations"]["acme/views"]["endpoint"] = json!({
        "connector": connector,
        "wasm": {"plugin": materializer, "config": match dest {
            Dest::Sqlite(views) => json!({"path": views}),
            Dest::Postgres(pg) => pg.endpoint_config(crate::postgres::PASSWORD_ENV),
            Dest::Mysql(my) => my.endpoint_config(crate::mysql::PASSWORD_ENV),
            Dest::Redis(r) => r.endpoint_config(crate::redis::PASSWORD_ENV),
        }},
    });
    // Tiny fragments, sealed within 100 ms: kills also land while sealing, and restarted tasks
    // read their sources back from fragments.
    for c in ["acme/orders", TOTALS] {
        bundle["catalog"]["collections"][c]["journals"] =
            json!({"fragments": {"length": 0.005, "flushInterval": "100ms"}});
    }
    // Into SQLite, the orders are logically partitioned (three journals, each with its
    // fragments and the derivation's checkpoint of its own).
    if let Dest::Sqlite(_) = dest {
        let orders = &mut bundle["catalog"]["collections"]["acme/orders"];
        orders["schema"]["properties"]["region"] = json!({"type": "string"});
        orders["schema"]["required"] = json!(["id", "customer", "amount", "region"]);
        orders["projections"] = json!({"region": {"location": "/region", "partition": true}});
    }
    let bindings = &mut bundle["catalog"]["materializations"]["acme/views"]["bindings"];
    if let Dest::Redis(_) = dest {
        *bindings = json!([{"source": TOTALS, "resource": {"prefix": "customer_totals:"}}]);
    } else {
        bindings.as_array_mut().unwrap().push(
            json!({"source": TOTALS, "resource": {"table": "customer_totals_log"}, "deltaUpdates": true}),
        );
    }
    post_json(http, p, "/v1/catalog", &bundle).await;
}

/// A `customer_totals` row: customer, total, orders, document.
type TotalsRow = (String, f64, i64, String);
/// A `customer_totals_log` row: customer, total, orders.
type LogRow = (String, f64, i64);

/// The destination's `customer_totals` rows by customer, and its `customer_totals_log` rows,
/// each read with its own client.
fn destination_rows(dest: Dest<'_>) -> (Vec<TotalsRow>, Vec<LogRow>) {
    match dest {
        Dest::Sqlite(views) => {
            let db = rusqlite::Connection::open(views).unwrap();
            let rows = db
                .prepare("SELECT customer, total, orders, flow_document FROM customer_totals ORDER BY customer")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let log = db
                .prepare("SELECT customer, total, orders FROM customer_totals_log")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            (rows, log)
        }
        Dest::Redis(r) => {
            let keys = r.cli(&["KEYS", "customer_totals:*"]);
            let mut rows: Vec<TotalsRow> = keys
                .lines()
                .filter(|k| !k.is_empty())
                .map(|k| {
                    let text = r.cli(&["GET", k]);
                    let d: Value = serde_json::from_str(&text).unwrap();
                    (
                        d["customer"].as_str().unwrap().to_string(),
                        d["total"].as_f64().unwrap(),
                        d["orders"].as_i64().unwrap(),
                        text,
                    )
                })
                .collect();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            (rows, Vec::new())
        }
        Dest::Postgres(_) | Dest::Mysql(_) => {
            let lines = |sql: &str| -> Vec<Vec<String>> {
                let text = match dest {
                    Dest::Postgres(pg) => pg.psql(sql),
                    Dest::Mysql(my) => my.sql(&sql.replace("::text", "")),
                    Dest::Sqlite(_) | Dest::Redis(_) => unreachable!(),
                };
                text.lines()
                    .filter(|l| !l.is_empty())
                    .map(|l| l.splitn(4, '|').map(String::from).collect())
                    .collect()
            };
            let rows = lines("SELECT customer, total, orders, flow_document::text FROM customer_totals ORDER BY customer")
                .into_iter()
                .map(|r| (r[0].clone(), r[1].parse().unwrap(), r[2].parse().unwrap(), r[3].clone()))
                .collect();
            let log = lines("SELECT customer, total, orders FROM customer_totals_log")
                .into_iter()
                .map(|r| (r[0].clone(), r[1].parse().unwrap(), r[2].parse().unwrap()))
                .collect();
            (rows, log)
        }
    }
}

/// Read `acme/orders` and check that it holds exactly batches `0..k`, each whole and once, in
/// order, and every acknowledged one among them; return `k`, where ingestion resumes.
async fn durable_prefix(
    http: &reqwest::Client,
    p: &Proc,
    batches: &[Vec<Value>],
    acked: &[bool],
) -> usize {
    let docs = read_all(http, p, ORDERS).await;
    let mut at = 0;
    let mut k = 0;
    while at < docs.len() {
        let batch = batches.get(k).unwrap_or_else(|| {
            panic!(
                "acme/orders has {} documents, more than were ever sent",
                docs.len()
            )
        });
        let want: BTreeSet<u64> = batch.iter().map(|d| d["id"].as_u64().unwrap()).collect();
        let got: BTreeSet<u64> = docs[at..(at + batch.len()).min(docs.len())]
            .iter()
            .map(|d| d["id"].as_u64().unwrap())
            .collect();
        assert_eq!(
            got, want,
            "acme/orders from document {at} should be batch {k} whole (an ingest is all or nothing, and nothing is re-sent that is present)"
        );
        for d in &docs[at..at + batch.len()] {
            let mut bare = d.clone();
            bare.as_object_mut().unwrap().remove("_meta");
            assert!(batch.contains(&bare), "order came back altered: {d}");
        }
        at += batch.len();
        k += 1;
    }
    if let Some(lost) = acked.iter().enumerate().skip(k).find(|(_, a)| **a) {
        panic!(
            "batch {} was acknowledged but is not in acme/orders after kill -9",
            lost.0
        );
    }
    k
}

/// Poll `/v1/tasks` until both tasks run and have read their sources to the head, failing fast
/// on a failed task. Statuses are read before heads: a task reports its offset only after its
/// commit, so an offset equal to a head read later is truly caught up.
async fn wait_caught_up(http: &reqwest::Client, p: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let tasks: Value = flow_tests::get_json(http, &p.base, "/v1/tasks").await;
        let tasks = tasks["tasks"].as_array().unwrap().clone();
        for t in &tasks {
            assert_ne!(
                t["state"],
                "failed",
                "task failed: {t}\nlog:\n{}",
                p.log_tail()
            );
        }
        let collections: Value = flow_tests::get_json(http, &p.base, "/v1/collections").await;
        // Every journal's head: a collection's own, or each of its logical partitions'.
        let heads: BTreeMap<String, u64> = collections["collections"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| {
                let journals = c["journals"].as_array().cloned().unwrap_or_default();
                std::iter::once(c.clone()).chain(journals)
            })
            .map(|j| {
                (
                    j["name"].as_str().unwrap().to_string(),
                    j["head"].as_u64().unwrap(),
                )
            })
            .collect();
        let caught_up = tasks.len() == 2
            && tasks.iter().all(|t| {
                t["state"] == "running"
                    && !t["sources"].as_array().unwrap().is_empty()
                    && t["sources"].as_array().unwrap().iter().all(|s| {
                        s["lagBytes"] == 0
                            && s["offset"].as_u64()
                                == heads.get(s["collection"].as_str().unwrap()).copied()
                    })
            });
        if caught_up {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "tasks did not catch up within 90s: {tasks:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Where a kill landed, from the task statuses and journal heads read just before it: a task
/// whose offset is short of its source's head has work it has not committed (it is in a
/// transaction, or about to start one). A status's own `lagBytes` would not say so: a task
/// reports it only after its own commit.
async fn landing(http: &reqwest::Client, base: &str) -> &'static str {
    let get = |path: &str| {
        http.get(format!("{base}{path}"))
            .timeout(Duration::from_millis(500))
            .send()
    };
    let Ok(tasks) = get("/v1/tasks").await else {
        return "host starting (API not up yet: opening the database, starting the tasks)";
    };
    let tasks = tasks.json::<Value>().await.unwrap_or_default();
    let tasks = tasks["tasks"].as_array().cloned().unwrap_or_default();
    let Ok(collections) = get("/v1/collections").await else {
        return "unknown (the API stopped answering)";
    };
    let collections = collections.json::<Value>().await.unwrap_or_default();
    // Every journal's head: a collection's own, or each of its logical partitions'.
    let heads: BTreeMap<&str, u64> = collections["collections"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| std::iter::once(c).chain(c["journals"].as_array().into_iter().flatten()))
        .filter_map(|c| Some((c["name"].as_str()?, c["head"].as_u64()?)))
        .collect();
    let behind = |kind: &str| {
        tasks.iter().any(|t| {
            t["kind"] == kind
                && t["sources"].as_array().is_some_and(|s| {
                    s.iter().any(|s| {
                        s["offset"].as_u64()
                            < s["collection"].as_str().and_then(|c| heads.get(c).copied())
                    })
                })
        })
    };
    if tasks.len() != 2 || tasks.iter().any(|t| t["state"] != "running") {
        "tasks starting (instantiating plugins, reading checkpoints)"
    } else if behind("derivation") {
        "derivation has uncommitted work (in or before a transaction)"
    } else if behind("materialization") {
        "materialization has uncommitted work, derivation caught up"
    } else {
        "both tasks caught up"
    }
}

/// What a finished run left behind, to compare with another run of the same input.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// `acme/customer-totals` reduced by key (last document per customer, without `_meta`).
    reduced: BTreeMap<String, Value>,
    /// Rows of the destination's `customer_totals`.
    rows: Vec<(String, f64, i64, String)>,
    /// Derivation state per customer.
    state: BTreeMap<String, Value>,
}

/// Finish a run whose input is all in: wait until the tasks caught up, check the derived
/// collection against the source, stop the host, and collect what it left.
async fn finish(
    http: &reqwest::Client,
    p: Proc,
    data: &Path,
    dest: Dest<'_>,
    run: &str,
) -> (Outcome, (usize, usize)) {
    wait_caught_up(http, &p).await;
    let orders = read_all(http, &p, ORDERS).await;
    let derived = read_all(http, &p, TOTALS).await;
    // History was sealed into fragments as the run went (tasks restarted on it).
    let listed: Value = flow_tests::get_json(http, &p.base, "/v1/collections").await;
    for c in listed["collections"].as_array().unwrap() {
        let sealed = c["fragments"]["fragments"].as_u64().unwrap_or(0);
        assert!(
            sealed >= 2,
            "{run}: {} has {sealed} fragments: {c}",
            c["name"]
        );
    }
    p.kill();
    // The files tile each journal from 0 to at least what was persisted when listed (the
    // sealer may have gone on since): no gap, no overlap, however the kills fell between
    // upload, index and trim.
    // Each journal: a collection's own, or each of its logical partitions'.
    let journals: Vec<Value> = listed["collections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| match c["journals"].as_array() {
            Some(js) => js.clone(),
            None => vec![c.clone()],
        })
        .collect();
    assert!(journals.len() >= 2, "{run}: {journals:?}");
    for c in &journals {
        assert!(
            c["fragments"]["fragments"].as_u64().unwrap_or(0) >= 1,
            "{run}: journal {} has no fragment: {c}",
            c["name"]
        );
        let name = c["name"].as_str().unwrap();
        // Temporary files of uploads a kill interrupted are not fragments; they are skipped.
        let (ranges, _) = flow_tests::fragment_files(&data.join("fragments"), name);
        let at = flow_tests::tiled_end(&ranges, &format!("{run}: {name}"));
        let persisted = c["fragments"]["persistedThrough"].as_u64().unwrap();
        let head = c["head"].as_u64().unwrap();
        assert!(
            persisted <= at && at <= head,
            "{run}: {name}: files end at {at}, persisted {persisted}, head {head}"
        );
    }

    // No lost and no duplicated documents. The host combines a transaction's outputs by the
    // derived key, so a customer's documents are a subsequence of its running totals, one per
    // transaction that touched it: each must be exactly the running total after the order
    // count it carries (prefix sums in source order), the counts must strictly increase (a
    // replayed or duplicated order breaks both) and end at the customer's number of orders
    // (a lost one breaks that).
    let ids: BTreeSet<u64> = orders.iter().map(|o| o["id"].as_u64().unwrap()).collect();
    assert_eq!(
        (orders.len(), ids.len()),
        (N_ORDERS as usize, N_ORDERS as usize),
        "{run}: acme/orders must hold every order once"
    );
    let mut prefix: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for o in &orders {
        let sums = prefix.entry(o["customer"].as_str().unwrap()).or_default();
        let last = sums.last().copied().unwrap_or(0.0);
        sums.push(last + o["amount"].as_f64().unwrap());
    }
    let mut reduced = BTreeMap::new();
    for d in &derived {
        let customer = d["customer"].as_str().unwrap();
        let n = d["orders"].as_u64().unwrap() as usize;
        let sums = &prefix[customer];
        assert!(
            n >= 1 && n <= sums.len() && d["total"].as_f64() == Some(sums[n - 1]),
            "{run}: derived {d} is not {customer}'s running total after {n} orders (totals: {sums:?})"
        );
        let mut bare = d.clone();
        bare.as_object_mut().unwrap().remove("_meta");
        if let Some(prev) = reduced.insert(customer.to_string(), bare) {
            assert!(
                prev["orders"].as_u64().unwrap() < n as u64,
                "{run}: {customer}'s order count went from {} to {n}: an order was processed twice",
                prev["orders"]
            );
        }
    }
    for (customer, sums) in &prefix {
        assert_eq!(
            reduced[*customer],
            json!({"customer": customer, "total": sums.last().unwrap(), "orders": sums.len()}),
            "{run}: {customer}'s final totals"
        );
    }

    // The delta log: one row per materialization transaction and customer, the last derived
    // document of that customer in the transaction. Each must be a derived document, none may
    // repeat (a replayed transaction), and each customer's last must be its final totals.
    let (rows, log) = destination_rows(dest);
    let mut logged: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    for (customer, total, orders) in &log {
        let sums = &prefix[customer.as_str()];
        let n = *orders as usize;
        assert!(
            n >= 1 && n <= sums.len() && sums[n - 1] == *total,
            "{run}: customer_totals_log row ({customer}, {total}, {orders}) is no derived document"
        );
        assert!(
            logged.entry(customer).or_default().insert(*orders),
            "{run}: customer_totals_log has ({customer}, {orders}) twice: a materialization transaction was applied twice"
        );
    }
    for (customer, sums) in prefix.iter().filter(|_| !matches!(dest, Dest::Redis(_))) {
        assert_eq!(
            logged.get(customer).and_then(|o| o.last()).copied(),
            Some(sums.len() as i64),
            "{run}: customer_totals_log's last row of {customer}"
        );
    }

    // The host is stopped; its database opens directly (after kill -9, with redb's repair).
    let store = flow_host::storage::Store::open(&data.join("flow.redb")).unwrap();
    let mut state = BTreeMap::new();
    for customer in prefix.keys() {
        let key = json!([customer]).to_string();
        let s = store
            .state(TOTALS, &key)
            .unwrap()
            .unwrap_or_else(|| panic!("{run}: no derivation state for {key}"));
        state.insert(customer.to_string(), serde_json::from_str(&s).unwrap());
    }
    (
        Outcome {
            reduced,
            rows,
            state,
        },
        (derived.len(), log.len()),
    )
}

/// How one life of the host under test ends.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// Killed a random fraction of its measured start-up time after spawn: inside `Host::open`
    /// (database repair, plugin instantiation, tasks' recovery).
    DuringStartup,
    /// Killed 0-60 ms after it answered: tasks catching up on what the last life left.
    JustReady,
    /// Killed 0-20 ms after its n-th acknowledged ingest of this life (1 to 3), with the next
    /// in flight and the tasks processing the last.
    AfterAcks(usize),
    /// Killed 0-10 ms after the materialization committed a transaction in this life: with
    /// the next under way (loading, writing, committing into the destination).
    AfterMaterialized,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derivation_and_materialization_are_exactly_once_under_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, crash) = (dir.path().join("clean.db"), dir.path().join("crash.db"));
    exactly_once_under_kill_9(Dest::Sqlite(&clean), Dest::Sqlite(&crash), 0x5eed_0005).await;
}

/// The same into PostgreSQL: the rows and the checkpoint in one PostgreSQL transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_materialization_is_exactly_once_under_kill_9() {
    let (clean, crash) = (PgServer::start(), PgServer::start());
    exactly_once_under_kill_9(Dest::Postgres(&clean), Dest::Postgres(&crash), 0x5eed_0006).await;
}

/// The same into MariaDB: the rows and the checkpoint in one InnoDB transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_materialization_is_exactly_once_under_kill_9() {
    let (clean, crash) = (MyServer::start(), MyServer::start());
    exactly_once_under_kill_9(Dest::Mysql(&clean), Dest::Mysql(&crash), 0x5eed_0007).await;
}

/// The same into Redis: the values and the checkpoint in one MULTI/EXEC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_materialization_is_exactly_once_under_kill_9() {
    let (clean, crash) = (RedisServer::start(), RedisServer::start());
    exactly_once_under_kill_9(Dest::Redis(&clean), Dest::Redis(&crash), 0x5eed_0008).await;
}

/// A crash-free run of the pipeline into `clean`, then the same input into `crash` under a
/// loop of kill -9: the derived collection, the derivation state and the destination's rows
/// must be the same.
async fn exactly_once_under_kill_9(clean_dest: Dest<'_>, crash_dest: Dest<'_>, seed: u64) {
    let started = Instant::now();
    let batches = order_batches(seed);
    let http = client();

    // The crash-free run.
    let clean = tempfile::tempdir().unwrap();
    let clean_data = clean.path().join("data");
    let p = start(&clean_data, &clean.path().join("serve.log")).await;
    set_up_pipeline(&http, &p, clean_dest).await;
    for b in &batches {
        assert!(ingest(&http, &p.base, ORDERS, b).await, "crash-free ingest");
    }
    let (expected, (clean_derived, clean_log)) =
        finish(&http, p, &clean_data, clean_dest, "crash-free run").await;
    let clean_secs = started.elapsed().as_secs_f64();

    // The same input under a loop of kill -9.
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = (dir.path().join("data"), dir.path().join("serve.log"));
    let mut rng = Rng(seed ^ 0xdead);
    {
        let p = start(&data, &log).await;
        set_up_pipeline(&http, &p, crash_dest).await;
        p.kill();
    }
    let acked: Arc<Mutex<Vec<bool>>> = Arc::new(Mutex::new(vec![false; batches.len()]));
    let batches = Arc::new(batches);
    let mut startup_ms = 500u64;
    let mut landings: BTreeMap<String, usize> = BTreeMap::new();
    let mut kills = 0;
    // Batch in flight at the last kill, to learn after the restart whether it was appended.
    let mut in_flight: Option<usize> = None;
    let mut appended_unacked = 0;
    let final_host = loop {
        let mode = match rng.range(0, 99) {
            0..15 => Kill::DuringStartup,
            15..30 => Kill::JustReady,
            30..55 => Kill::AfterMaterialized,
            _ => Kill::AfterAcks(rng.range(1, 3) as usize),
        };
        let stop_killing = kills >= KILLS_MAX
            || (kills >= KILLS_MIN && started.elapsed() > Duration::from_secs(KILLING_SECS_MAX));
        if let Kill::DuringStartup = mode
            && !stop_killing
        {
            let p = spawn(&data, &log);
            tokio::time::sleep(Duration::from_millis(rng.range(0, startup_ms))).await;
            let at = landing(&http, &p.base).await;
            p.kill();
            kills += 1;
            *landings.entry(format!("DuringStartup: {at}")).or_default() += 1;
            continue;
        }

        let spawned = Instant::now();
        let p = start(&data, &log).await;
        startup_ms = spawned.elapsed().as_millis() as u64;
        let acked_now = acked.lock().unwrap().clone();
        let next = durable_prefix(&http, &p, &batches, &acked_now).await;
        if let Some(i) = in_flight.take()
            && i < next
        {
            appended_unacked += 1;
        }
        if stop_killing || (next == batches.len() && kills >= KILLS_MIN) {
            break (p, next);
        }

        // Ingest sequentially from the first batch the source does not hold, until killed.
        let (acks_tx, mut acks_rx) = tokio::sync::watch::channel(0usize);
        let current = Arc::new(AtomicU64::new(u64::MAX));
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (http, base, batches, acked, current, done) = (
                http.clone(),
                p.base.clone(),
                batches.clone(),
                acked.clone(),
                current.clone(),
                done.clone(),
            );
            tokio::spawn(async move {
                for i in next..batches.len() {
                    current.store(i as u64, Ordering::SeqCst);
                    if !ingest(&http, &base, ORDERS, &batches[i]).await {
                        return;
                    }
                    acked.lock().unwrap()[i] = true;
                    acks_tx.send_modify(|n| *n += 1);
                }
                done.store(true, Ordering::SeqCst);
                acks_tx.send_modify(|n| *n += 1);
            })
        };
        match mode {
            Kill::JustReady | Kill::DuringStartup => {
                tokio::time::sleep(Duration::from_millis(rng.range(0, 60))).await;
            }
            Kill::AfterAcks(n) => {
                tokio::time::timeout(
                    Duration::from_secs(60),
                    acks_rx.wait_for(|a| *a >= n || done.load(Ordering::SeqCst)),
                )
                .await
                .expect("no ingest was acknowledged within 60s")
                .unwrap();
                tokio::time::sleep(Duration::from_micros(rng.range(0, 20_000))).await;
            }
            Kill::AfterMaterialized => {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let tasks: Value = flow_tests::get_json(&http, &p.base, "/v1/tasks").await;
                    let committed = tasks["tasks"].as_array().into_iter().flatten().any(|t| {
                        t["kind"] == "materialization" && t["transactions"].as_u64() > Some(0)
                    });
                    if committed || done.load(Ordering::SeqCst) || Instant::now() > deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                tokio::time::sleep(Duration::from_micros(rng.range(0, 10_000))).await;
            }
        }
        let at = landing(&http, &p.base).await;
        p.kill();
        writer.await.unwrap();
        kills += 1;
        let i = current.load(Ordering::SeqCst) as usize;
        let busy = if done.load(Ordering::SeqCst) || i == usize::MAX {
            "no ingest in flight"
        } else if acked.lock().unwrap()[i] {
            "between ingests"
        } else {
            in_flight = Some(i);
            "an ingest in flight"
        };
        let kind = match mode {
            Kill::AfterAcks(_) => "AfterAcks",
            Kill::AfterMaterialized => "AfterMaterialized",
            _ => "JustReady",
        };
        *landings.entry(format!("{kind}: {at}; {busy}")).or_default() += 1;
    };
    let (p, next) = final_host;
    // Only when KILLS_MAX or KILLING_SECS_MAX stopped the loop early is there input left.
    for (i, b) in batches.iter().enumerate().skip(next) {
        assert!(
            ingest(&http, &p.base, ORDERS, b).await,
            "ingest of batch {i}"
        );
    }
    let (got, (crash_derived, crash_log)) = finish(&http, p, &data, crash_dest, "crash run").await;

    eprintln!(
        "crash loop: {kills} kills in {:.1}s (crash-free run {clean_secs:.1}s); {appended_unacked} in-flight ingests were appended but never acknowledged; derived documents {crash_derived} (crash-free run {clean_derived}: one per derivation transaction and customer), customer_totals_log rows {crash_log} (crash-free run {clean_log}: one per materialization transaction and customer); where the kills landed:",
        started.elapsed().as_secs_f64()
    );
    for (at, n) in &landings {
        eprintln!("  {n:3} x {at}");
    }
    assert!(kills >= KILLS_MIN, "only {kills} kills");
    assert_eq!(
        got.reduced, expected.reduced,
        "derived collection, reduced by key"
    );
    assert_eq!(got.rows, expected.rows, "the destination's customer_totals");
    assert_eq!(got.state, expected.state, "derivation state");
    assert_eq!(got.rows.len(), expected.reduced.len());
    for (customer, total, orders, _) in &got.rows {
        let d = &expected.reduced[customer];
        assert_eq!(
            (Some(*total), Some(*orders)),
            (d["total"].as_f64(), d["orders"].as_i64()),
            "row of {customer}"
        );
        assert_eq!(
            expected.state[customer],
            json!({"total": d["total"], "orders": d["orders"]}),
            "state of {customer}"
        );
    }
}
