//! `flow bench --suite pipeline`: the workloads of issue #18, side by side in one run.
//!
//! **Totals.** Orders (~240 B, 10,000 customers) go to an embedded host over its HTTP API in
//! requests of 10,000 documents, every ack fsynced; the customer-totals Wasm derivation
//! aggregates them per customer and the SQLite materialization keeps a `customer_totals` table
//! exactly once. A run ends when the table accounts for every order. Beside it: HTTP ingest
//! alone (no tasks), and the native floor (one pass over the same NDJSON, a HashMap, one
//! SQLite transaction).
//!
//! **Join.** The same orders, and before every 10,000 of them an update of 1,000 customers
//! (10% of all events): the join-customers Wasm derivation keeps the latest record of each
//! customer in state and publishes each order enriched with its customer's name and tier
//! (an inner join: an order of a customer not seen yet publishes nothing), and the SQLite
//! materialization keeps one row per enriched order. A run ends when the table holds every
//! joined order. Its floor: one pass over the same events in the same order, a HashMap of
//! customers, every enriched order serialized and inserted in one SQLite transaction.
//!
//! `--clients N` sends the orders-only workloads' requests N at a time, as several producers
//! would (default 1: each request waits for the previous one's fsynced ack). The join's
//! requests always go one at a time: its result depends on their order.
//!
//! Rounds alternate; the best time of each is reported, with the least peak RSS of this
//! process over its rounds (sampled every 10 ms; memory the allocator kept from an earlier run
//! in the same process counts, so the least is the cleanest figure).

use crate::catalog::Catalog;
use crate::runtime::{Host, HostOptions};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const DOCS_PER_REQUEST: usize = 10_000;
const CUSTOMERS: usize = 10_000;
/// Customer updates sent before each request of orders in the join workload: 10% of events.
const CUSTOMER_UPDATES_PER_REQUEST: usize = 1_000;
const ROUNDS: usize = 3;

/// One order, about 240 bytes of JSON.
pub(super) fn order(i: usize) -> String {
    format!(
        "{{\"id\":{i},\"customer\":\"customer-{:05}\",\"amount\":{}.{:02},\"currency\":\"EUR\",\"item\":\"sku-{:06}\",\"quantity\":{},\"channel\":\"web\",\"placedAt\":\"2026-12-02T10:{:02}:{:02}Z\",\"note\":\"standard delivery, leave at the door\"}}\n",
        i % CUSTOMERS,
        i % 97 + 1,
        i % 100,
        i % 100_003,
        i % 5 + 1,
        (i / 60) % 60,
        i % 60
    )
}

/// The `j`th customer update of request `r` of the join workload: request `r` updates
/// customers `r*1000 .. r*1000+999` (mod 10,000), so the first ten requests introduce them.
fn customer(r: usize, j: usize) -> String {
    const TIERS: [&str; 3] = ["gold", "silver", "bronze"];
    let c = (r * CUSTOMER_UPDATES_PER_REQUEST + j) % CUSTOMERS;
    format!(
        "{{\"id\":\"customer-{c:05}\",\"name\":\"Customer {c} v{r}\",\"tier\":\"{}\"}}\n",
        TIERS[(c + r) % 3]
    )
}

/// The requests of a run: (collection, NDJSON body), in the order they are sent.
fn requests(docs: usize, join: bool) -> impl Iterator<Item = (&'static str, String)> {
    (0..docs).step_by(DOCS_PER_REQUEST).flat_map(move |first| {
        let r = first / DOCS_PER_REQUEST;
        let customers = join.then(|| {
            let body: String = (0..CUSTOMER_UPDATES_PER_REQUEST)
                .map(|j| customer(r, j))
                .collect();
            ("acme%2Fcustomers", body)
        });
        let orders: String = (first..(first + DOCS_PER_REQUEST).min(docs))
            .map(order)
            .collect();
        customers.into_iter().chain([("acme%2Forders", orders)])
    })
}

/// Events (customer updates and orders) of a run.
fn events(docs: usize, join: bool) -> usize {
    if join {
        docs + docs.div_ceil(DOCS_PER_REQUEST) * CUSTOMER_UPDATES_PER_REQUEST
    } else {
        docs
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Totals,
    Join,
    IngestOnly,
}

fn catalog(views: &Path, workload: Workload) -> Catalog {
    let orders = json!({"type": "object",
        "properties": {"id": {"type": "integer"}, "customer": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
        "required": ["id", "customer", "amount"]});
    let mut c = json!({"collections": {"acme/orders": {"schema": orders, "key": ["/id"]}}});
    let collections = &mut c["collections"];
    match workload {
        Workload::IngestOnly => {}
        Workload::Totals => {
            collections["acme/customer-totals"] = json!({
                "schema": {"type": "object",
                           "properties": {"customer": {"type": "string"}, "total": {"type": "number"}, "orders": {"type": "integer"}},
                           "required": ["customer", "total", "orders"]},
                "key": ["/customer"],
                "derive": {
                    "using": {"wasm": {"plugin": "totals"}},
                    "transforms": [{"name": "fromOrders", "source": "acme/orders", "shuffle": {"key": ["/customer"]}}],
                },
            });
            c["materializations"] = json!({"acme/views": {
                "endpoint": {"wasm": {"plugin": "materialize-sqlite", "config": {"path": views}}},
                "bindings": [{"source": "acme/customer-totals", "resource": {"table": "customer_totals"}}],
            }});
        }
        Workload::Join => {
            collections["acme/customers"] = json!({
                "schema": {"type": "object",
                           "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "tier": {"type": "string"}},
                           "required": ["id", "name", "tier"]},
                "key": ["/id"],
            });
            collections["acme/enriched"] = json!({
                "schema": {"type": "object",
                           "properties": {"id": {"type": "integer"}, "customer": {"type": "string"}, "amount": {"type": "number"},
                                          "name": {"type": "string"}, "tier": {"type": "string"}},
                           "required": ["id", "customer", "amount", "name", "tier"]},
                "key": ["/id"],
                "derive": {
                    "using": {"wasm": {"plugin": "join"}},
                    "transforms": [
                        {"name": "fromCustomers", "source": "acme/customers", "shuffle": {"key": ["/id"]}},
                        {"name": "fromOrders", "source": "acme/orders", "shuffle": {"key": ["/customer"]}},
                    ],
                },
            });
            c["materializations"] = json!({"acme/views": {
                "endpoint": {"wasm": {"plugin": "materialize-sqlite", "config": {"path": views}}},
                "bindings": [{"source": "acme/enriched", "resource": {"table": "enriched"}}],
            }});
        }
    }
    serde_json::from_value(c).expect("valid catalog")
}

/// Resident memory of this process now, in bytes.
fn rss() -> u64 {
    super::status_bytes("VmRSS:")
}

/// Peak RSS while `f` runs, sampled every 10 ms.
pub(super) fn with_peak_rss<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss()));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let r = f();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    (r, peak.load(Ordering::Relaxed))
}

/// A single integer from `query` on the SQLite database at `path` (0 while it cannot answer,
/// e.g. before its table exists).
fn sqlite_count(path: &Path, query: &str) -> u64 {
    let Ok(db) = crate::connector::open("sqlite", &json!({"path": path})) else {
        return 0;
    };
    let bounds = flow_engine::SqlBounds {
        deadline: Instant::now() + Duration::from_secs(10),
        deadline_ms: 10_000,
        result_bytes_max: 1 << 20,
        txn_bytes_max: 64 << 20,
    };
    match db
        .grant()
        .sql()
        .expect("a SQL destination")
        .query(query, &[], &bounds)
    {
        Ok(rows) => match rows.rows.first().and_then(|r| r.first()) {
            Some(flow_engine::SqlValue::Integer(n)) => *n as u64,
            _ => 0,
        },
        Err(_) => 0,
    }
}

/// The rows a run's table holds once it is done: every order (totals), every joined order.
fn expected_rows(docs: usize, workload: Workload) -> u64 {
    match workload {
        Workload::Join => native_join(docs, None).map(|n| n as u64).unwrap_or(0),
        _ => docs as u64,
    }
}

/// One run on a fresh host: post the workload's requests over HTTP; with tasks, wait until
/// the table accounts for all of them. Returns the wall time.
/// `clients`: requests in flight at once (orders only: the join's result depends on the order
/// of its customer updates and orders, so its requests go one at a time).
fn host_run(
    plugins: &Path,
    docs: usize,
    workload: Workload,
    clients: usize,
) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let views = dir.path().join("views.db");
    let host = Host::open(HostOptions::new(dir.path().join("data")))?;
    let plugins_used: &[(&str, &str)] = match workload {
        Workload::IngestOnly => &[],
        Workload::Totals => &[
            ("totals", "customer_totals.wasm"),
            ("materialize-sqlite", "materialize_sqlite.wasm"),
        ],
        Workload::Join => &[
            ("join", "join_customers.wasm"),
            ("materialize-sqlite", "materialize_sqlite.wasm"),
        ],
    };
    super::deploy(&host, plugins, plugins_used)?;
    super::publish(&host, catalog(&views, workload))?;
    let (query, expect) = match workload {
        Workload::Totals => (
            "SELECT coalesce(sum(orders), 0) FROM customer_totals",
            expected_rows(docs, workload),
        ),
        Workload::Join => (
            "SELECT count(*) FROM enriched",
            expected_rows(docs, workload),
        ),
        Workload::IngestOnly => ("", 0),
    };
    let rt = tokio::runtime::Runtime::new()?;
    let took = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}/v1/collections", listener.local_addr()?);
        let app = crate::api::router(host.clone(), None);
        tokio::spawn(async move { crate::api::serve(listener, app).await });
        let http = reqwest::Client::new();
        let started = Instant::now();
        let in_flight = if workload == Workload::Join {
            1
        } else {
            clients.max(1)
        };
        let mut sent = futures::stream::iter(requests(docs, workload == Workload::Join))
            .map(|(collection, body)| {
                let post = http
                    .post(format!("{base}/{collection}/documents"))
                    .body(body);
                async move {
                    let r = post.send().await?;
                    anyhow::ensure!(r.status().is_success(), "ingest: {}", r.text().await?);
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(in_flight);
        while let Some(r) = sent.next().await {
            r?;
        }
        if workload != Workload::IngestOnly {
            // Done when every task has read everything (polling task statuses, which costs
            // nothing beside the run; counting a table of a million rows every few
            // milliseconds took a fifth of the CPU), then the table must account for all.
            let h = host.clone();
            tokio::task::spawn_blocking(move || h.wait_idle(Duration::from_secs(900)))
                .await?
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let got = sqlite_count(&views, query);
            anyhow::ensure!(
                got == expect,
                "the table accounts for {got} documents, not {expect}"
            );
        }
        anyhow::Ok(started.elapsed())
    })?;
    // How the tasks batched the run: transactions, and documents in and out.
    for s in host.task_statuses() {
        eprintln!(
            "  {} {}: {} transactions, {} documents in, {} out",
            s.kind, s.name, s.transactions, s.docs_in, s.docs_out
        );
    }
    host.shutdown();
    Ok(took)
}

fn sql_bounds() -> flow_engine::SqlBounds {
    flow_engine::SqlBounds {
        deadline: Instant::now() + Duration::from_secs(120),
        deadline_ms: 120_000,
        result_bytes_max: 1 << 20,
        txn_bytes_max: 64 << 20,
    }
}

/// The totals floor: the same NDJSON parsed once, totals in a HashMap, one SQLite transaction.
fn native_totals(docs: usize) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let db = crate::connector::open("sqlite", &json!({"path": dir.path().join("native.db")}))?;
    let started = Instant::now();
    let mut totals: HashMap<String, (f64, i64)> = HashMap::new();
    for (_, body) in requests(docs, false) {
        for line in body.lines() {
            let v: Value = serde_json::from_str(line)?;
            let t = totals
                .entry(v["customer"].as_str().unwrap_or_default().to_string())
                .or_default();
            t.0 += v["amount"].as_f64().unwrap_or(0.0);
            t.1 += 1;
        }
    }
    let bounds = sql_bounds();
    let mut sql = db.grant().sql().expect("a SQL destination");
    db.begin()?;
    sql.execute(
        "CREATE TABLE totals (customer TEXT PRIMARY KEY, total REAL, orders INTEGER)",
        &[],
        &bounds,
    )
    .map_err(anyhow::Error::msg)?;
    let rows: Vec<Vec<flow_engine::SqlValue>> = totals
        .into_iter()
        .map(|(c, (t, n))| {
            vec![
                flow_engine::SqlValue::Text(c),
                flow_engine::SqlValue::Real(t),
                flow_engine::SqlValue::Integer(n),
            ]
        })
        .collect();
    sql.execute_many("INSERT INTO totals VALUES (?1, ?2, ?3)", &rows, &bounds)
        .map_err(anyhow::Error::msg)?;
    db.commit()?;
    Ok(started.elapsed())
}

/// The join floor: the same events parsed once in the same order, customers in a HashMap,
/// every joined order enriched, serialized and inserted in one SQLite transaction (into
/// `dir`, or nowhere, to count the joined orders). Returns how many orders were joined.
fn native_join(docs: usize, dir: Option<&Path>) -> anyhow::Result<usize> {
    use flow_engine::SqlValue as Sv;
    let db = match dir {
        Some(dir) => {
            let db = crate::connector::open("sqlite", &json!({"path": dir.join("native.db")}))?;
            db.begin()?;
            db.grant().sql().expect("a SQL destination")
                .execute(
                    "CREATE TABLE enriched (id INTEGER PRIMARY KEY, customer TEXT, amount REAL, name TEXT, tier TEXT, flow_document TEXT NOT NULL)",
                    &[],
                    &sql_bounds(),
                )
                .map_err(anyhow::Error::msg)?;
            Some(db)
        }
        None => None,
    };
    use serde_json::value::RawValue;
    use std::borrow::Cow;
    use std::collections::BTreeMap;
    // The same JSON work as the join-customers plugin: a customer's name and tier kept as
    // their JSON text, an order read as its properties' raw text and written out enriched.
    #[derive(serde::Deserialize)]
    struct Customer<'a> {
        id: Cow<'a, str>,
        name: Box<RawValue>,
        tier: Box<RawValue>,
    }
    let mut customers: HashMap<String, (Box<RawValue>, Box<RawValue>)> = HashMap::new();
    let mut joined = 0;
    for (collection, body) in requests(docs, true) {
        // Rows are inserted a request at a time, all in the one transaction.
        let mut rows: Vec<Vec<Sv>> = Vec::new();
        for line in body.lines() {
            if collection == "acme%2Fcustomers" {
                let c: Customer = serde_json::from_str(line)?;
                customers.insert(c.id.into_owned(), (c.name, c.tier));
                continue;
            }
            let mut order: BTreeMap<Cow<str>, &RawValue> = serde_json::from_str(line)?;
            let customer: Cow<str> = match order.get("customer") {
                Some(c) => serde_json::from_str(c.get())?,
                None => continue,
            };
            let Some((name, tier)) = customers.get(customer.as_ref()) else {
                continue;
            };
            joined += 1;
            if db.is_none() {
                continue;
            }
            // The columns materialize-sqlite writes: each top-level property, and the document.
            let number = |k: &str| -> anyhow::Result<Value> {
                Ok(order
                    .get(k)
                    .map(|v| serde_json::from_str(v.get()))
                    .transpose()?
                    .unwrap_or(Value::Null))
            };
            let (id, amount) = (number("id")?, number("amount")?);
            let (name_text, tier_text): (String, String) = (
                serde_json::from_str(name.get())?,
                serde_json::from_str(tier.get())?,
            );
            order.insert("name".into(), name);
            order.insert("tier".into(), tier);
            rows.push(vec![
                Sv::Integer(id.as_i64().unwrap_or_default()),
                Sv::Text(customer.to_string()),
                Sv::Real(amount.as_f64().unwrap_or_default()),
                Sv::Text(name_text),
                Sv::Text(tier_text),
                Sv::Text(serde_json::to_string(&order)?),
            ]);
        }
        if let Some(db) = &db
            && !rows.is_empty()
        {
            db.grant()
                .sql()
                .expect("a SQL destination")
                .execute_many(
                    "INSERT INTO enriched VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    &rows,
                    &sql_bounds(),
                )
                .map_err(anyhow::Error::msg)?;
        }
    }
    if let Some(db) = db {
        db.commit()?;
    }
    Ok(joined)
}

fn native_join_run(docs: usize) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    native_join(docs, Some(dir.path()))?;
    Ok(started.elapsed())
}

/// A measure: (short name for `--only`, what it is, its workload's events, whether it is a
/// floor, and the run).
type Measure<'a> = (
    &'a str,
    &'a str,
    usize,
    bool,
    Box<dyn Fn() -> anyhow::Result<Duration> + 'a>,
);

/// Run the suite; `only` keeps the measures whose short names it lists (`native`, `totals`,
/// `ingest`, `native-join`, `join`), for profiling one of them.
pub fn run(plugins: &Path, docs: usize, only: &[String], clients: usize) -> anyhow::Result<()> {
    let measures: Vec<Measure> = vec![
        (
            "native",
            "native floor: one pass, HashMap, one SQLite txn",
            events(docs, false),
            true,
            Box::new(|| native_totals(docs)),
        ),
        (
            "totals",
            "Flow: HTTP ingest (10k-doc requests) -> customer-totals Wasm -> SQLite",
            events(docs, false),
            false,
            Box::new(|| host_run(plugins, docs, Workload::Totals, clients)),
        ),
        (
            "ingest",
            "Flow: HTTP ingest alone (no tasks)",
            events(docs, false),
            false,
            Box::new(|| host_run(plugins, docs, Workload::IngestOnly, clients)),
        ),
        (
            "native-join",
            "native join floor: one pass, HashMap of customers, one SQLite txn of enriched orders",
            events(docs, true),
            true,
            Box::new(|| native_join_run(docs)),
        ),
        (
            "join",
            "Flow: HTTP ingest of orders and customer updates -> join-customers Wasm -> SQLite",
            events(docs, true),
            false,
            Box::new(|| host_run(plugins, docs, Workload::Join, clients)),
        ),
    ];
    let measures: Vec<Measure> = measures
        .into_iter()
        .filter(|m| only.is_empty() || only.iter().any(|o| o == m.0))
        .collect();
    // (time, peak RSS, cores busy) of each measure's best round.
    let mut best = vec![(Duration::MAX, 0u64, 0f64); measures.len()];
    for round in 1..=ROUNDS {
        for (i, (_, name, events, _, f)) in measures.iter().enumerate() {
            let cpu = super::cpu_seconds();
            let (took, peak) = with_peak_rss(f);
            let took = took?;
            let cores = (super::cpu_seconds() - cpu) / took.as_secs_f64();
            eprintln!(
                "round {round}: {name}: {:.0} docs/s, peak RSS {} MiB, {cores:.2} cores busy",
                *events as f64 / took.as_secs_f64(),
                peak >> 20
            );
            let peak = if round == 1 {
                peak
            } else {
                best[i].1.min(peak)
            };
            best[i] = if took < best[i].0 {
                (took, peak, cores)
            } else {
                (best[i].0, peak, best[i].2)
            };
        }
    }
    println!(
        "pipeline suite: {docs} orders (the join: and {} customer updates), {clients} request(s) in flight (the join: 1), best of {ROUNDS} alternating rounds (peak RSS: the least over the rounds)",
        events(docs, true) - docs
    );
    println!("| measure | docs/s | vs its native floor | peak RSS | cores busy |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    // Each measure is compared with the floor listed last before it.
    let mut floor: Option<f64> = None;
    for ((_, name, events, is_floor, _), (took, peak, cores)) in measures.iter().zip(&best) {
        let rate = *events as f64 / took.as_secs_f64();
        if *is_floor {
            floor = Some(rate);
        }
        let ratio = floor.map_or("-".to_string(), |f| format!("{:.3}x", rate / f));
        println!(
            "| {name} | {rate:.0} | {ratio} | {} MiB | {cores:.2} |",
            peak >> 20
        );
    }
    Ok(())
}
