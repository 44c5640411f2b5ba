//! `flow bench --suite languages`: the customer-totals derivation of `flow plugin init` in each
//! language with a template, through the same host calls (state in memory, batches of 1,024):
//! docs/s next to the Rust plugin's and native Rust doing the same work; component size; and
//! deploy-to-live on a running host, cold (compiled at deploy) and cached (a rollback to it).
//! Python, JavaScript, TypeScript and C are built here from their templates (`crate::project`),
//! so their toolchains must be installed; a language that cannot be built says why and is not
//! measured.

use super::derive::{MemState, packed, transform_all};
use crate::project::{Lang, World};
use flow_engine::derive_api;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Customer totals natively, with the same JSON work as the plugins: parse the order, read and
/// parse the customer's state, add, write the state and the output as JSON text.
fn native_totals(
    batch: &[derive_api::SourceDocument],
    state: &mut HashMap<String, String>,
) -> usize {
    #[derive(serde::Deserialize)]
    struct Order<'a> {
        #[serde(borrow)]
        customer: std::borrow::Cow<'a, str>,
        amount: f64,
    }
    #[derive(serde::Serialize, serde::Deserialize, Default)]
    struct Totals {
        total: f64,
        orders: u64,
    }
    let mut out = 0;
    for d in batch {
        let order: Order = serde_json::from_str(&d.document).expect("order is JSON");
        let mut t: Totals = state
            .get(&d.key)
            .map(|s| serde_json::from_str(s).expect("state is JSON"))
            .unwrap_or_default();
        t.total += order.amount;
        t.orders += 1;
        state.insert(d.key.clone(), serde_json::to_string(&t).expect("JSON"));
        let doc = json!({"customer": order.customer, "total": t.total, "orders": t.orders});
        out += std::hint::black_box(doc.to_string()).len().min(1);
    }
    out
}

/// Best docs/s of three runs of `component` over `batch`, and the outputs of one run.
fn measure(component: &[u8], batch: &[derive_api::SourceDocument]) -> anyhow::Result<(f64, usize)> {
    let mut instance = super::derive::open_derivation(
        component,
        "bench/customer-totals",
        "/customer",
        &[("fromOrders", "bench/orders", "/customer")],
    )?;
    let calls = packed(batch);
    let (mut best, mut outputs) = (Duration::MAX, 0);
    for _ in 0..3 {
        instance.set_state(Some(Box::new(MemState(Default::default()))));
        let t = Instant::now();
        outputs = transform_all(&mut instance, &calls)?;
        best = best.min(t.elapsed());
    }
    Ok((batch.len() as f64 / best.as_secs_f64(), outputs))
}

/// The template of `lang` built in a temporary project.
fn build_template(lang: Lang) -> anyhow::Result<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    let project = dir.path().join("totals");
    crate::project::init(&project, None, lang, World::Derivation)?;
    let out = crate::project::build(&project)?;
    Ok(std::fs::read(out)?)
}

pub fn run(plugins: &Path, n: usize) -> anyhow::Result<()> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| {
            anyhow::anyhow!("failed to read {}: {e} (build: make plugins)", p.display())
        })
    };
    let rust = read(&plugins.join("customer_totals.wasm"))?;
    let v1 = read(&plugins.join("counter_v1.wasm"))?;
    let batch: Vec<derive_api::SourceDocument> = (0..n)
        .map(|i| {
            let c = format!("c{}", (i * 7919) % 10_000);
            derive_api::SourceDocument {
                transform: 0,
                key: json!([c]).to_string(),
                document: json!({"id": i, "customer": c, "amount": (i % 100) as f64 / 4.0})
                    .to_string(),
            }
        })
        .collect();

    let mut native = Duration::MAX;
    for _ in 0..3 {
        let mut state = HashMap::new();
        let t = Instant::now();
        for chunk in batch.chunks(1024) {
            native_totals(chunk, &mut state);
        }
        native = native.min(t.elapsed());
    }
    let native = n as f64 / native.as_secs_f64();

    println!(
        "languages: the customer-totals derivation, {n} orders over 10,000 customers, state in memory"
    );
    println!(
        "(best of 3; deploy-to-live on a running host: cold = compiled at deploy, cached = rolled back to)"
    );
    println!(
        "{:<12} {:>12} {:>9} {:>10} {:>14} {:>10} {:>10}",
        "language", "docs/s", "/ Rust", "/ native", "component B", "cold ms", "cached ms"
    );
    println!(
        "{:<12} {native:>12.0} {:>9} {:>10.2}",
        "native Rust", "", 1.0
    );
    let mut rust_rate = None;
    for (name, lang) in [
        ("Rust", Lang::Rust),
        ("Python", Lang::Python),
        ("JavaScript", Lang::Js),
        ("TypeScript", Lang::Ts),
        ("C", Lang::C),
    ] {
        let component = match lang {
            Lang::Rust => Ok(rust.clone()),
            _ => build_template(lang),
        };
        let component = match component {
            Ok(c) => c,
            Err(e) => {
                println!("{name:<12} not measured: {e:#}");
                continue;
            }
        };
        let (rate, outputs) = match measure(&component, &batch) {
            Ok(m) => m,
            Err(e) if lang != Lang::Rust => {
                println!("{name:<12} not measured: {e:#}");
                continue;
            }
            Err(e) => return Err(e),
        };
        anyhow::ensure!(outputs == n, "{name}: {outputs} outputs for {n} orders");
        let rust_rate = *rust_rate.get_or_insert(rate);
        let (cold, cached) = super::latency::deploy_to_live(&v1, &component)?;
        println!(
            "{name:<12} {rate:>12.0} {:>9.2} {:>10.2} {:>14} {:>10.1} {:>10.1}",
            rate / rust_rate,
            rate / native,
            component.len(),
            cold.as_secs_f64() * 1e3,
            cached.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
