//! `flow bench --suite latency`: end-to-end latency from an HTTP ingest returning to the
//! derived document being readable (by a follower of the derived collection), at a fixed
//! open-loop rate; the worst stall while the plugin is hot-swapped; deploy-to-live times.

use crate::catalog::{Bundle, Catalog};
use crate::runtime::Host;
use crate::runtime::HostOptions;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Run {
    /// p50 and p99 from the ack to the derived document's append (its `_meta.published`).
    to_commit: (Duration, Duration),
    docs: usize,
    /// CPU seconds of the whole process per second of the measured run.
    cores: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// When the run swapped: latencies around the hot-swap.
    swap: Option<Swap>,
}

struct Swap {
    /// Worst latency of documents acknowledged from 0.5 s before the deploy call (compile,
    /// then the cut-over) to 0.5 s after it.
    worst: Duration,
    /// The same from 50 ms before the end of the compile to 50 ms after the cut-over: the
    /// cut-over alone (a document waits for it at most one transaction of the old run).
    worst_cutover: Duration,
    compile: Duration,
    cutover: Duration,
}

fn catalog() -> Catalog {
    serde_json::from_value(json!({
        "collections": {
            "b/in": {"schema": {"type": "object", "properties": {"id": {"type": "integer"}, "key": {"type": "string"}}, "required": ["id", "key"]}, "key": ["/id"]},
            "b/out": {
                "schema": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]},
                "key": ["/id"],
                "derive": {"using": {"wasm": {"plugin": "counter"}}, "transforms": [{"name": "t", "source": "b/in", "shuffle": {"key": ["/key"]}}]},
            },
        }
    }))
    .expect("valid catalog")
}

/// An embedded host running the counter plugin `v1` over `b/in` -> `b/out`.
pub(super) fn counter_host(v1: &[u8]) -> anyhow::Result<(tempfile::TempDir, std::sync::Arc<Host>)> {
    let dir = tempfile::tempdir()?;
    let host = Host::open(HostOptions::new(dir.path()))?;
    host.registry
        .deploy("counter", v1)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    host.publish(Bundle {
        source: "bench".into(),
        catalog: catalog(),
        modules: Default::default(),
        origins: Default::default(),
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((dir, host))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn scenario(
    v1: &[u8],
    v2: Option<&[u8]>,
    rate: usize,
    per_request: usize,
    secs: u64,
) -> anyhow::Result<Run> {
    // Publishing reconciles fragments on the host's own runtime: not from an async task.
    let v1_owned = v1.to_vec();
    let (_dir, host) = tokio::task::spawn_blocking(move || counter_host(&v1_owned)).await??;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(crate::api::serve(
        listener,
        crate::api::router(host.clone(), None),
    ));
    let http = reqwest::Client::new();

    let seen: Arc<Mutex<HashMap<u64, Instant>>> = Default::default();
    // When each derived document was appended (its `_meta.published`), and each source
    // document acknowledged, by the wall clock: where the latency goes.
    let published: Arc<Mutex<HashMap<u64, std::time::SystemTime>>> = Default::default();
    let acked_wall: Arc<Mutex<HashMap<u64, std::time::SystemTime>>> = Default::default();
    let follower = {
        let (seen, published, resp) = (
            seen.clone(),
            published.clone(),
            http.get(format!(
                "{base}/v1/collections/b%2Fout/documents?follow=true"
            ))
            .send()
            .await?,
        );
        super::follow(resp, move |doc, now| {
            if let Some(id) = doc["id"].as_u64() {
                seen.lock().expect("seen poisoned").insert(id, now);
                if let Some(t) = doc["_meta"]["published"]
                    .as_str()
                    .and_then(|p| humantime::parse_rfc3339(p).ok())
                {
                    published.lock().expect("published poisoned").insert(id, t);
                }
            }
        })
    };

    let total = rate * secs as usize;
    let acked: Arc<Mutex<HashMap<u64, Instant>>> = Default::default();
    let mut ticker =
        tokio::time::interval(Duration::from_secs_f64(per_request as f64 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut inflight = Vec::new();
    let mut swap_at: Option<(Instant, Instant, Instant)> = None;
    let mut swap_task = None;
    let (cpu, began) = (super::cpu_seconds(), Instant::now());
    for start in (0..total).step_by(per_request) {
        ticker.tick().await;
        if let Some(v2) = v2
            && start == total / 2 / per_request * per_request
        {
            let (host, v2) = (host.clone(), v2.to_vec());
            swap_task = Some(tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                host.registry.deploy("counter", &v2).map(|_| ())?;
                let compiled = Instant::now();
                host.plugin_deployed("counter");
                Ok::<_, crate::plugin::DeployError>((t, compiled, Instant::now()))
            }));
        }
        let body: String = (start..(start + per_request).min(total))
            .map(|id| format!("{{\"id\":{id},\"key\":\"k{}\"}}\n", id % 100))
            .collect();
        let (http, url, acked, acked_wall) = (
            http.clone(),
            format!("{base}/v1/collections/b%2Fin/documents"),
            acked.clone(),
            acked_wall.clone(),
        );
        inflight.push(tokio::spawn(async move {
            let r = http.post(url).body(body).send().await?;
            anyhow::ensure!(
                r.status().is_success(),
                "ingest failed: {}",
                r.text().await?
            );
            let (now, wall) = (Instant::now(), std::time::SystemTime::now());
            let mut a = acked.lock().expect("acked poisoned");
            let mut w = acked_wall.lock().expect("acked poisoned");
            for id in start..(start + per_request).min(total) {
                a.insert(id as u64, now);
                w.insert(id as u64, wall);
            }
            Ok(())
        }));
    }
    for f in inflight {
        f.await??;
    }
    if let Some(t) = swap_task {
        swap_at = Some(t.await?.map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().expect("seen poisoned").len() < total {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {total} derived documents arrived",
            seen.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cores = (super::cpu_seconds() - cpu) / began.elapsed().as_secs_f64();
    follower.abort();
    let (seen, acked) = (seen.lock().unwrap().clone(), acked.lock().unwrap().clone());
    // The first second warms up connections and caches; it is not measured.
    let warmup = rate as u64;
    let mut lat: Vec<Duration> = acked
        .iter()
        .filter(|(id, _)| **id >= warmup)
        .map(|(id, a)| seen[id].saturating_duration_since(*a))
        .collect();
    lat.sort();
    // The derived document's append time splits each latency in two: until the derivation's
    // commit (picked up, transformed, queued, fsynced), and from there to the follower.
    let (published, acked_wall) = (
        published.lock().unwrap().clone(),
        acked_wall.lock().unwrap().clone(),
    );
    let mut to_commit: Vec<Duration> = Vec::new();
    for (id, a) in acked_wall.iter().filter(|(id, _)| **id >= warmup) {
        if let Some(p) = published.get(id) {
            to_commit.push(p.duration_since(*a).unwrap_or_default());
        }
    }
    to_commit.sort();
    let swap = swap_at.map(|(from, compiled, to)| {
        let worst = |from: Instant, to: Instant, window: Duration| {
            acked
                .iter()
                .filter(|(_, a)| **a + window >= from && **a <= to + window)
                .map(|(id, a)| seen[id].saturating_duration_since(*a))
                .max()
                .unwrap_or_default()
        };
        Swap {
            worst: worst(from, to, Duration::from_millis(500)),
            worst_cutover: worst(compiled, to, Duration::from_millis(50)),
            compile: compiled - from,
            cutover: to - compiled,
        }
    });
    let _ = tokio::task::spawn_blocking(move || host.shutdown()).await;
    Ok(Run {
        to_commit: (percentile(&to_commit, 0.5), percentile(&to_commit, 0.99)),
        docs: lat.len(),
        cores,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        max: *lat.last().unwrap_or(&Duration::ZERO),
        swap,
    })
}

/// Deploy-to-live of `new` on a host running the counter plugin `v1`: cold (compiled at the
/// deploy), then cached (after a rollback to `v1`, a rollback to `new`, already compiled).
pub(super) fn deploy_to_live(v1: &[u8], new: &[u8]) -> anyhow::Result<(Duration, Duration)> {
    let (_dir, host) = counter_host(v1)?;
    host.wait_idle(Duration::from_secs(60))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let live = |seq: u64| -> anyhow::Result<()> {
        let t = Instant::now();
        while host.task_status("b/out").and_then(|s| s.plugin_version) != Some(seq)
            || host.task_status("b/out").map(|s| s.state)
                != Some(crate::runtime::TaskState::Running)
        {
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(120),
                "the task did not go live on version {seq}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    };
    let err = |e: crate::plugin::DeployError| anyhow::anyhow!("{e}");
    let t = Instant::now();
    let v = host.registry.deploy("counter", new).map_err(err)?;
    host.plugin_deployed("counter");
    live(v.seq)?;
    let cold = t.elapsed();
    let back = host.registry.rollback("counter", Some(1)).map_err(err)?;
    host.plugin_deployed("counter");
    live(back.seq)?;
    let t = Instant::now();
    let again = host
        .registry
        .rollback("counter", Some(v.seq))
        .map_err(err)?;
    host.plugin_deployed("counter");
    live(again.seq)?;
    let cached = t.elapsed();
    host.shutdown();
    Ok((cold, cached))
}

pub fn run(plugins: &Path, python: Option<&Path>) -> anyhow::Result<()> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| {
            anyhow::anyhow!("failed to read {}: {e} (build: make plugins)", p.display())
        })
    };
    let v1 = read(&plugins.join("counter_v1.wasm"))?;
    let v2 = read(&plugins.join("counter_v2.wasm"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "latency: HTTP ingest acknowledged -> derived document read by a follower (stateful counter plugin);"
    );
    println!("         open-loop rate for 6 s, the first second not measured (warm-up)");
    for (rate, per_request, swap) in [(1_000, 1, false), (10_000, 10, false), (1_000, 1, true)] {
        let r = rt.block_on(scenario(
            &v1,
            if swap { Some(&v2) } else { None },
            rate,
            per_request,
            6,
        ))?;
        println!(
            "  {rate:>6} docs/s ({per_request} per request), {} docs measured: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {:.2} cores busy",
            r.docs,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.max.as_secs_f64() * 1e3,
            r.cores
        );
        println!(
            "         of which ack -> derived document appended: p50 {:.2} ms, p99 {:.2} ms",
            r.to_commit.0.as_secs_f64() * 1e3,
            r.to_commit.1.as_secs_f64() * 1e3
        );
        if let Some(w) = r.swap {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "         hot-swap v1 -> v2 mid-run (deploy: compile {:.1} ms, then cut-over {:.1} ms): worst latency around the deploy {:.2} ms ({:.1}x p99), around the cut-over alone {:.2} ms ({:.1}x p99)",
                ms(w.compile),
                ms(w.cutover),
                ms(w.worst),
                ms(w.worst) / ms(r.p99),
                ms(w.worst_cutover),
                ms(w.worst_cutover) / ms(r.p99),
            );
        }
    }
    drop(rt);
    let mut components = vec![("Rust", v2)];
    if let Some(py) = python {
        // Any derivation component serves to time compile and swap; its outputs don't matter.
        components.push(("Python", read(py)?));
    }
    for (label, new) in components {
        let (cold, cached) = deploy_to_live(&v1, &new)?;
        println!(
            "deploy-to-live, {label} component {} bytes: cold (compile) {:.1} ms, cached (rolled back to) {:.1} ms",
            new.len(),
            cold.as_secs_f64() * 1e3,
            cached.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
