//! The materialization runtime: one task per materialization.
//!
//! Start-up: `send_plugin_open` inside a destination transaction; the plugin creates its
//! tables and returns the checkpoint it last committed, which says where each binding resumes.
//!
//! Protocol of one transaction:
//! 1. `read_sources`: a bounded batch from every binding's source, from its checkpoint.
//! 2. `combine`: documents combined by binding and key.
//! 3. In ONE destination transaction: `send_plugin_load` (standard updates) for the touched
//!    keys, full reduction of each loaded document with its combined delta,
//!    `send_plugin_store`, then `send_plugin_commit` with the new checkpoint. The host commits
//!    the destination transaction only after commit returned ok, so rows and checkpoint land
//!    together or not at all: exactly once.

use crate::catalog::{Built, BuiltCollection, BuiltMaterialization};
use crate::connector::sqlite::Sqlite;
use crate::doc::Combiner;
use crate::engine::{Materialization, World, sink_api};
use crate::journal::Journals;
use crate::runtime::{SourceStatus, TaskCtx};
use anyhow::Context;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

struct Binding {
    collection: Arc<BuiltCollection>,
    delta_updates: bool,
    offset: u64,
}

pub fn run(ctx: TaskCtx, catalog: Arc<Built>, spec: Arc<BuiltMaterialization>) {
    if let Err(e) = run_inner(&ctx, &catalog, &spec) {
        ctx.fail(&spec.plugin, &e);
    }
}

fn run_inner(ctx: &TaskCtx, catalog: &Built, spec: &BuiltMaterialization) -> anyhow::Result<()> {
    let mut bindings = Vec::new();
    for b in &spec.bindings {
        let collection = catalog
            .collection(&b.source)
            .map_err(anyhow::Error::msg)?
            .clone();
        bindings.push(Binding {
            collection,
            delta_updates: b.delta_updates,
            offset: 0,
        });
    }
    let db = match spec.config.get("path").and_then(Value::as_str) {
        Some(path) => Some(Sqlite::open(std::path::Path::new(path))?),
        None => None,
    };

    let (version, component) = ctx.registry.resolve(&spec.plugin, World::Materialization)?;
    let engine = ctx.registry.engine().clone();
    let mut instance = Materialization::instantiate(
        &engine,
        &component,
        ctx.registry.log_sink(&spec.plugin),
        &ctx.limits,
    )?;
    instance.set_sql(
        db.clone()
            .map(|d| Box::new(d) as Box<dyn crate::engine::SqlAccess>),
    );

    let open_spec = sink_api::MaterializationSpec {
        name: spec.name.clone(),
        config: spec.config.to_string(),
        bindings: spec
            .bindings
            .iter()
            .zip(&bindings)
            .map(|(b, bb)| sink_api::BindingSpec {
                collection: b.source.clone(),
                schema: bb.collection.schema.raw().to_string(),
                key: bb.collection.key.iter().map(|p| p.to_string()).collect(),
                resource: b.resource.to_string(),
                delta_updates: b.delta_updates,
            })
            .collect(),
    };
    let checkpoint = in_destination_txn(db.as_ref(), || {
        instance
            .open(&open_spec)
            .map_err(|e| anyhow::anyhow!("open: {e}"))
    })?;
    if let Some(cp) = checkpoint {
        restore_checkpoint(&cp, &mut bindings)?;
    }
    // Sources first: `Host::wait_idle` must never see a running task without its sources.
    report_sources(ctx, &bindings)?;
    ctx.statuses.update(&ctx.name, |s| {
        s.state = "running";
        s.plugin_version = Some(version.seq);
    });

    while !ctx.stopping() {
        let seen = ctx.journals.generation();
        let n = transaction(ctx, db.as_ref(), &mut bindings, &mut instance)?;
        if n == 0 {
            ctx.wait_for_appends(seen);
        }
    }
    Ok(())
}

/// Run `f` inside a destination transaction (when there is a destination database), committing
/// only if it succeeds.
fn in_destination_txn<R>(
    db: Option<&Sqlite>,
    f: impl FnOnce() -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    if let Some(db) = db {
        db.begin()?;
    }
    match f() {
        Ok(r) => {
            if let Some(db) = db {
                db.commit()?;
            }
            Ok(r)
        }
        Err(e) => {
            if let Some(db) = db {
                db.rollback();
            }
            Err(e)
        }
    }
}

fn transaction(
    ctx: &TaskCtx,
    db: Option<&Sqlite>,
    bindings: &mut [Binding],
    instance: &mut Materialization,
) -> anyhow::Result<usize> {
    // 1. read_sources, 2. combine (associatively, as documents arrive)
    let mut docs_left = ctx.limits.txn_docs_max;
    let mut next_offsets: Vec<u64> = bindings.iter().map(|b| b.offset).collect();
    // Standard bindings drain fully reduced rows; delta bindings their combined deltas.
    let new_combiner = || {
        Combiner::new(
            bindings.iter().map(|b| b.collection.binding()).collect(),
            ctx.limits.combiner_spill_bytes,
        )
    };
    let (mut standard, mut deltas) = (new_combiner(), new_combiner());
    // Keys touched per binding (JSON array text), in key order: what `load` asks for.
    let mut touched: Vec<BTreeMap<String, ()>> = vec![BTreeMap::new(); bindings.len()];
    let mut n_in = 0;
    for (i, b) in bindings.iter().enumerate() {
        if docs_left == 0 {
            break;
        }
        let docs = ctx.journals.read(
            &ctx.store,
            &b.collection.name,
            b.offset,
            docs_left,
            ctx.limits.txn_bytes_max,
        )?;
        docs_left -= docs.len();
        n_in += docs.len();
        for d in docs {
            next_offsets[i] = d.next_offset();
            let mut doc: Value = serde_json::from_slice(&d.bytes).with_context(|| {
                format!("{} offset {} is not JSON", b.collection.name, d.offset)
            })?;
            if let Some(m) = doc.as_object_mut() {
                m.remove("_meta");
            }
            if !b.delta_updates {
                touched[i].insert(b.collection.key_of(&doc).to_string(), ());
            }
            let combiner = if b.delta_updates {
                &mut deltas
            } else {
                &mut standard
            };
            combiner
                .add(i, doc, false)
                .map_err(|e| anyhow::anyhow!("combining {}: {e}", b.collection.name))?;
        }
    }
    if n_in == 0 {
        return Ok(0);
    }

    // 3. load, reduce, store, commit: one destination transaction.
    let checkpoint = json!({
        "bindings": bindings.iter().zip(&next_offsets).map(|(b, o)| json!({"collection": b.collection.name, "offset": o})).collect::<Vec<_>>()
    })
    .to_string();
    let mut n_out = 0;
    in_destination_txn(db, || {
        // send_plugin_load: stored rows join the combiner as the first document of their key,
        // so the drain is a full reduction of row + deltas.
        for (i, keys) in touched.iter().enumerate() {
            if keys.is_empty() {
                continue;
            }
            let keys: Vec<String> = keys.keys().cloned().collect();
            let name = &bindings[i].collection.name;
            for loaded in instance
                .load(i as u32, &keys)
                .map_err(|e| anyhow::anyhow!("load (binding {i}, {name}): {e}"))?
            {
                let doc: Value = serde_json::from_str(&loaded.document)
                    .map_err(|e| anyhow::anyhow!("load (binding {i}, {name}): the plugin returned a document that is not JSON: {e}"))?;
                standard.add(i, doc, true).map_err(|e| {
                    anyhow::anyhow!("load (binding {i}, {name}): stored document: {e}")
                })?;
            }
        }
        // send_plugin_store, one call per binding with all of its documents, in key order.
        let mut pending: Option<(usize, Vec<sink_api::Stored>)> = None;
        let mut flush = |pending: &mut Option<(usize, Vec<sink_api::Stored>)>,
                         n_out: &mut usize|
         -> anyhow::Result<()> {
            if let Some((i, docs)) = pending.take() {
                *n_out += docs.len();
                instance.store(i as u32, &docs).map_err(|e| {
                    anyhow::anyhow!("store (binding {i}, {}): {e}", bindings[i].collection.name)
                })?;
            }
            Ok(())
        };
        let drained = standard
            .drain(true)
            .and_then(|s| Ok(s.chain(deltas.drain(false)?)));
        for d in drained.map_err(|e| anyhow::anyhow!("combining: {e}"))? {
            let d = d.map_err(|e| anyhow::anyhow!("reducing: {e}"))?;
            if pending.as_ref().is_some_and(|(i, _)| *i != d.binding) {
                flush(&mut pending, &mut n_out)?;
            }
            let docs = &mut pending.get_or_insert_with(|| (d.binding, Vec::new())).1;
            docs.push(sink_api::Stored {
                key: Value::Array(d.key).to_string(),
                document: d.doc.to_string(),
                exists: d.front,
                delete: d.deleted,
            });
        }
        flush(&mut pending, &mut n_out)?;
        // send_plugin_commit: the checkpoint goes into the same destination transaction.
        instance
            .commit(&checkpoint)
            .map_err(|e| anyhow::anyhow!("commit: {e}"))
    })?;

    for (b, o) in bindings.iter_mut().zip(next_offsets) {
        b.offset = o;
    }
    ctx.statuses.update(&ctx.name, |s| {
        s.transactions += 1;
        s.docs_in += n_in as u64;
        s.docs_out += n_out as u64;
    });
    report_sources(ctx, bindings)?;
    Ok(n_in)
}

fn restore_checkpoint(cp: &str, bindings: &mut [Binding]) -> anyhow::Result<()> {
    let cp: Value = serde_json::from_str(cp)
        .with_context(|| format!("the destination's checkpoint is not JSON: {cp}"))?;
    let saved = cp
        .get("bindings")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, b) in bindings.iter_mut().enumerate() {
        // A binding resumes only where the same collection was at the same position before.
        if let Some(s) = saved.get(i)
            && s.get("collection").and_then(Value::as_str) == Some(b.collection.name.as_str())
        {
            b.offset = s.get("offset").and_then(Value::as_u64).unwrap_or(0);
        }
    }
    Ok(())
}

fn report_sources(ctx: &TaskCtx, bindings: &[Binding]) -> anyhow::Result<()> {
    let mut sources = Vec::new();
    for (i, b) in bindings.iter().enumerate() {
        let head = Journals::head(&ctx.store, &b.collection.name)?;
        sources.push(SourceStatus {
            name: format!("binding {i}"),
            collection: b.collection.name.clone(),
            offset: b.offset,
            lag_bytes: head.saturating_sub(b.offset),
        });
    }
    ctx.statuses.update(&ctx.name, |s| s.sources = sources);
    Ok(())
}
