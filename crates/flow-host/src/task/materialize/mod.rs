//! The materialization task: one per materialization. Protocol steps: `README.md`.
//!
//! `Materialize::start` opens it; `transaction` runs the steps, marked by comments.

use crate::catalog::{Built, BuiltCollection, BuiltMaterialization};
use crate::connector::{self, Destination};
use crate::task::{self, Kind, Task, TaskCtx, TaskDef};
use anyhow::Context;
use flow_doc::Combiner;
use flow_engine::{Materialization, World, sink_api};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

struct Binding {
    collection: Arc<BuiltCollection>,
    delta_updates: bool,
    offset: u64,
}

pub(crate) const KIND: Kind = Kind {
    name: "materialization",
    world: World::Materialization,
    external: true,
    endpoints: |catalog| {
        catalog
            .materializations
            .iter_mut()
            .map(|(name, m)| (name, &mut m.endpoint.wasm))
            .collect()
    },
    tasks: |catalog| {
        catalog
            .materializations
            .values()
            .map(|m| {
                let (catalog, spec) = (catalog.clone(), m.clone());
                TaskDef {
                    name: m.name.clone(),
                    plugin: m.plugin.clone(),
                    limits: m.limits.clone(),
                    run: Box::new(move |ctx| {
                        let plugin = spec.plugin.clone();
                        task::run(ctx, &plugin, |ctx| Materialize::start(ctx, &catalog, &spec))
                    }),
                }
            })
            .collect()
    },
};

/// A running materialization.
struct Materialize {
    bindings: Vec<Binding>,
    destination: Option<Box<dyn Destination>>,
    instance: Materialization,
}

impl Task for Materialize {
    fn outputs(&self) -> Vec<String> {
        Vec::new()
    }

    fn sources(&self) -> Vec<(String, String, u64)> {
        self.bindings
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("binding {i}"), b.collection.name.clone(), b.offset))
            .collect()
    }

    fn transaction(&mut self, ctx: &TaskCtx) -> anyhow::Result<usize> {
        transaction(
            ctx,
            self.destination.as_deref(),
            &mut self.bindings,
            &mut self.instance,
        )
    }
}

impl Materialize {
    /// Open the destination its endpoint names, instantiate the plugin with the destination
    /// granted, and once the task is the only run (`TaskCtx::ready`), `open` it in a
    /// destination transaction and resume from the checkpoint it returns.
    fn start(
        ctx: &TaskCtx,
        catalog: &Built,
        spec: &BuiltMaterialization,
    ) -> anyhow::Result<(Self, u64)> {
        let mut bindings = Vec::new();
        for b in &spec.bindings {
            let collection = catalog.collection(&b.source)?.clone();
            bindings.push(Binding {
                collection,
                delta_updates: b.delta_updates,
                offset: 0,
            });
        }
        let destination = match &spec.destination {
            Some(d) => Some(connector::open(&d.connector, &d.config)?),
            None => None,
        };

        let (version, component) = ctx.registry.resolve(&spec.plugin, World::Materialization)?;
        let engine = ctx.registry.engine().clone();
        let mut instance = Materialization::instantiate(
            &engine,
            &component,
            ctx.registry.log_sink(&spec.plugin, &ctx.name),
            &ctx.limits.sandbox(),
        )?;
        instance.set_sql(destination.as_ref().map(|d| d.grant()));
        // Until here nothing touched the destination's data: a swapped-out run of this task
        // may still be committing its last transaction there.
        ctx.ready();

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
        let checkpoint = in_destination_txn(destination.as_deref(), || {
            instance
                .open(&open_spec)
                .map_err(|e| anyhow::anyhow!("open: {e}"))
        })?;
        if let Some(cp) = checkpoint {
            restore_checkpoint(&cp, &mut bindings)?;
        }
        let task = Materialize {
            bindings,
            destination,
            instance,
        };
        Ok((task, version.seq))
    }
}

/// Run `f` inside a destination transaction (when there is a destination database), committing
/// only if it succeeds.
fn in_destination_txn<R>(
    db: Option<&dyn Destination>,
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
    db: Option<&dyn Destination>,
    bindings: &mut [Binding],
    instance: &mut Materialization,
) -> anyhow::Result<usize> {
    // 1. read_sources, 2. combine (associatively, as documents arrive)
    let mut docs_left = ctx.txn_docs();
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
            // In calls of `callDocsMax` keys: a plugin holds one call's keys and rows.
            let mut loaded_all = Vec::new();
            for chunk in keys.chunks(ctx.limits.call_docs_max) {
                loaded_all.extend(
                    instance
                        .load(i as u32, chunk)
                        .map_err(|e| anyhow::anyhow!("load (binding {i}, {name}): {e}"))?,
                );
            }
            for loaded in loaded_all {
                let doc: Value = serde_json::from_str(&loaded.document)
                    .map_err(|e| anyhow::anyhow!("load (binding {i}, {name}): the plugin returned a document that is not JSON: {e}"))?;
                standard.add(i, doc, true).map_err(|e| {
                    anyhow::anyhow!("load (binding {i}, {name}): stored document: {e}")
                })?;
            }
        }
        // send_plugin_write, one call per binding with all of its documents, in key order.
        let mut pending: Option<(usize, Vec<sink_api::Stored>)> = None;
        let mut flush = |pending: &mut Option<(usize, Vec<sink_api::Stored>)>,
                         n_out: &mut usize|
         -> anyhow::Result<()> {
            if let Some((i, docs)) = pending.take() {
                *n_out += docs.len();
                instance.write(i as u32, &docs).map_err(|e| {
                    anyhow::anyhow!("write (binding {i}, {}): {e}", bindings[i].collection.name)
                })?;
            }
            Ok(())
        };
        // A call's documents are bounded like a derivation's (`callDocsMax`, and a call's
        // bytes by `callOutputBytesMax`): a plugin holds one call's documents, and a
        // transaction of many distinct keys must not need a plugin memory of its size.
        let full = |pending: &Option<(usize, Vec<sink_api::Stored>)>, bytes: usize| {
            pending.as_ref().is_some_and(|(_, d)| {
                d.len() >= ctx.limits.call_docs_max || bytes >= ctx.limits.call_output_bytes_max
            })
        };
        let mut bytes = 0;
        let drained = standard
            .drain(true)
            .and_then(|s| Ok(s.chain(deltas.drain(false)?)));
        for d in drained.map_err(|e| anyhow::anyhow!("combining: {e}"))? {
            let d = d.map_err(|e| anyhow::anyhow!("reducing: {e}"))?;
            if pending.as_ref().is_some_and(|(i, _)| *i != d.binding) || full(&pending, bytes) {
                flush(&mut pending, &mut n_out)?;
                bytes = 0;
            }
            let docs = &mut pending.get_or_insert_with(|| (d.binding, Vec::new())).1;
            let stored = sink_api::Stored {
                key: serde_json::to_string(&d.key)?,
                document: serde_json::to_string(&d.doc)?,
                exists: d.front,
                delete: d.deleted,
            };
            bytes += stored.key.len() + stored.document.len();
            docs.push(stored);
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
