//! `flow bench --suite capture`: what capturing a PostgreSQL table costs (`source-postgres`,
//! against a server of this bench's own, started on loopback with `wal_level=logical`).
//!
//! - **Backfill**: a table of `--docs` rows (`id bigint` key, a text, a numeric and a nullable
//!   text column, ~60 bytes of JSON each) captured into a collection, from publish to the
//!   task's status showing every row committed; beside `psql -c "COPY orders TO STDOUT"` of
//!   the same table (its output read and dropped), the fastest way PostgreSQL hands out a
//!   table's rows.
//! - **Latency**: then 1,000 single-row insert transactions a second for 6 s (the first
//!   second not measured), committed on the bench's own connection; a document's latency runs
//!   from its insert's commit returning to a follower of the collection (the HTTP API's
//!   `follow=true`) reading it.

use super::materialize::Postgres;
use crate::runtime::{Host, HostOptions};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RATE: usize = 1_000;
const SECS: usize = 6;

pub fn run(plugins: &Path, docs: usize) -> anyhow::Result<()> {
    let pg = Postgres::start()?;
    pg.psql(
        "CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, amount numeric NOT NULL, note text)",
    )?;
    pg.psql(&format!(
        "INSERT INTO orders SELECT i, 'customer-' || (i % 10000), (i % 997) + 0.25, \
         CASE WHEN i % 4 = 0 THEN 'note ' || i END FROM generate_series(1, {docs}) i"
    ))?;
    pg.psql("VACUUM ANALYZE orders")?;

    // psql's COPY, twice (the first warms the cache), the second timed.
    pg.psql_output("COPY orders TO STDOUT")?;
    let began = Instant::now();
    let copied = pg.psql_output("COPY orders TO STDOUT")?;
    let copy = began.elapsed();
    let copy_rows = copied.iter().filter(|b| **b == b'\n').count();
    anyhow::ensure!(copy_rows == docs, "COPY gave {copy_rows} rows, not {docs}");

    let dir = tempfile::tempdir()?;
    let host = Host::open(HostOptions::new(dir.path().join("data")))?;
    super::deploy(
        &host,
        plugins,
        &[("source-postgres", "source_postgres.wasm")],
    )?;
    let began = Instant::now();
    let cpu = super::cpu_seconds();
    super::publish(&host, catalog(&pg))?;
    wait_captured(&host, docs as u64, Duration::from_secs(600))?;
    let backfill = began.elapsed();
    let cores = (super::cpu_seconds() - cpu) / backfill.as_secs_f64();

    let (p50, p99, max) = tokio::runtime::Runtime::new()?.block_on(latency(&host, &pg, docs))?;

    println!("capture suite (release numbers only mean something from a release build)");
    println!(
        "| measure | source-postgres | psql COPY TO STDOUT | ratio |\n| --- | ---: | ---: | ---: |"
    );
    let rate = |d: Duration| docs as f64 / d.as_secs_f64();
    println!(
        "| backfill of {docs} rows, rows/s | {:.0} ({:.2} s, {cores:.2} cores) | {:.0} ({:.2} s) | {:.2}x |",
        rate(backfill),
        backfill.as_secs_f64(),
        rate(copy),
        copy.as_secs_f64(),
        rate(backfill) / rate(copy)
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "| commit -> captured document read by a follower, {RATE} changes/s: p50 / p99 / max | {:.1} / {:.1} / {:.1} ms | | |",
        ms(p50),
        ms(p99),
        ms(max)
    );
    Ok(())
}

fn catalog(pg: &Postgres) -> crate::catalog::Catalog {
    serde_json::from_value(json!({
        "collections": {"b/orders": {
            "schema": {"type": "object",
                       "properties": {"id": {"type": "integer"}, "customer": {"type": "string"},
                                      "amount": {"type": "number"}, "note": {"type": ["string", "null"]}},
                       "required": ["id"]},
            "key": ["/id"],
        }},
        "captures": {"b/pg": {
            "endpoint": {"connector": "postgres", "wasm": {"plugin": "source-postgres", "config": pg.config()}},
            "bindings": [{"target": "b/orders", "resource": {"namespace": "public", "stream": "orders"}}],
        }},
    }))
    .expect("valid catalog")
}

/// Wait until the capture's status shows `n` documents committed.
fn wait_captured(host: &Host, n: u64, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let s = host.task_statuses().into_iter().find(|s| s.name == "b/pg");
        if let Some(s) = &s {
            anyhow::ensure!(
                s.state != crate::task::TaskState::Failed,
                "the capture failed: {:?}",
                s.last_error
            );
            if s.docs_in >= n {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the capture did not finish: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Insert `RATE` rows a second for `SECS` s, ids after `from`; latencies from commit to the
/// follower reading the captured document (p50, p99, max), the first second left out.
async fn latency(
    host: &Arc<Host>,
    pg: &Postgres,
    from: usize,
) -> anyhow::Result<(Duration, Duration, Duration)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(crate::api::serve(
        listener,
        crate::api::router(host.clone(), None),
    ));
    let seen: Arc<Mutex<HashMap<u64, Instant>>> = Default::default();
    let resp = reqwest::Client::new()
        .get(format!(
            "{base}/v1/collections/b%2Forders/documents?follow=true&offset=end"
        ))
        .send()
        .await?;
    let follower = {
        let seen = seen.clone();
        super::follow(resp, move |doc, now| {
            if let Some(id) = doc["id"].as_u64() {
                seen.lock().expect("seen poisoned").insert(id, now);
            }
        })
    };
    // The writer: its own connection, each insert its own transaction.
    let config = pg.config();
    let committed = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(u64, Instant)>> {
        let db = crate::connector::open_source("postgres", &config)?;
        let mut sql = db
            .grant()
            .sql()
            .ok_or_else(|| anyhow::anyhow!("no SQL grant"))?;
        let bounds = flow_engine::SqlBounds {
            deadline: Instant::now() + Duration::from_secs(3600),
            deadline_ms: 3_600_000,
            result_bytes_max: 1 << 20,
            txn_bytes_max: 1 << 20,
        };
        let began = Instant::now();
        let mut out = Vec::with_capacity(RATE * SECS);
        for i in 0..RATE * SECS {
            let at = began + Duration::from_secs_f64(i as f64 / RATE as f64);
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let id = (from + 1 + i) as i64;
            sql.execute(
                "INSERT INTO orders (id, customer, amount) VALUES ($1, 'live', 1)",
                &[flow_engine::SqlValue::Integer(id)],
                &bounds,
            )
            .map_err(anyhow::Error::msg)?;
            out.push((id as u64, Instant::now()));
        }
        Ok(out)
    })
    .await??;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().expect("seen poisoned").len() < committed.len() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {} changes were captured",
            seen.lock().unwrap().len(),
            committed.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    follower.abort();
    let seen = seen.lock().unwrap().clone();
    let mut lat: Vec<Duration> = committed
        .iter()
        .skip(RATE)
        .map(|(id, at)| seen[id].saturating_duration_since(*at))
        .collect();
    lat.sort();
    let pick = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    Ok((
        pick(0.5),
        pick(0.99),
        *lat.last().unwrap_or(&Duration::ZERO),
    ))
}
