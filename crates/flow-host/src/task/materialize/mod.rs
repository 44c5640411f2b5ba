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
use std::time::Duration;

struct Binding {
    collection: Arc<BuiltCollection>,
    /// Which of its logical partitions are read.
    selector: Option<crate::catalog::BuiltSelector>,
    delta_updates: bool,
    /// The journals read and the offset each is read from: the collection's own, or one per
    /// logical partition (found as they appear, only ever appended to).
    parts: Vec<(String, u64)>,
    /// Offsets of partitions in the destination's checkpoint, for those not found yet.
    restored: BTreeMap<String, u64>,
}

impl Binding {
    /// Add the journals of logical partitions that appeared since the last look.
    fn find_parts(&mut self, store: &crate::storage::Store) -> anyhow::Result<()> {
        if self.collection.partitions.is_empty() {
            return Ok(());
        }
        for journal in self.collection.journals(store, self.selector.as_ref())? {
            if !self.parts.iter().any(|(j, _)| *j == journal) {
                let offset = self.restored.get(&journal).copied().unwrap_or(0);
                self.parts.push((journal, offset));
            }
        }
        Ok(())
    }

    fn offsets(&self) -> Vec<u64> {
        self.parts.iter().map(|(_, o)| *o).collect()
    }

    /// Where it read up to, as the destination's checkpoint holds it: `{collection,
    /// offset}`, or for a collection with logical partitions, `{collection, journals:
    /// {JOURNAL: offset}}`.
    fn checkpoint(&self, offsets: &[u64]) -> Value {
        if self.collection.partitions.is_empty() {
            return json!({"collection": self.collection.name, "offset": offsets.first().copied().unwrap_or(0)});
        }
        let mut journals: serde_json::Map<String, Value> = self
            .restored
            .iter()
            .map(|(j, o)| (j.clone(), json!(o)))
            .collect();
        for ((j, _), o) in self.parts.iter().zip(offsets) {
            journals.insert(j.clone(), json!(o));
        }
        json!({"collection": self.collection.name, "journals": journals})
    }
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
    /// The next transaction's documents, read while the last one was written.
    prefetched: Option<Batch>,
    /// The keys the last transaction wrote and when it committed: the next one tells from
    /// them whether it rewrote the same rows soon after.
    last: Option<(Keys, std::time::Instant)>,
    /// Whether the last transaction caught up with its sources and mostly rewrote rows the one
    /// before had written moments earlier: a firehose over few keys, where waiting folds the
    /// next documents into the same rows.
    combining: bool,
    /// Reset by an operator: this run read its sources from their beginnings, ignoring the
    /// destination's checkpoint, until its first transaction commits a new one.
    rematerialize: bool,
}

impl Task for Materialize {
    fn outputs(&self) -> Vec<String> {
        Vec::new()
    }

    fn sources(&self) -> Vec<(String, String, u64)> {
        self.bindings
            .iter()
            .enumerate()
            .flat_map(|(i, b)| {
                b.parts
                    .iter()
                    .map(move |(j, o)| (format!("binding {i}"), j.clone(), *o))
            })
            .collect()
    }

    fn combining(&self) -> bool {
        self.combining
    }

    fn transaction(&mut self, ctx: &TaskCtx) -> anyhow::Result<usize> {
        let r = transaction(
            ctx,
            self.destination.as_deref(),
            &mut self.bindings,
            &mut self.instance,
            &mut self.prefetched,
        )
        .map(|t| {
            let wait = Duration::from_millis(ctx.limits.txn_time_combining_ms);
            self.combining = combining(&t, self.last.as_ref(), wait);
            if t.n_in > 0 {
                self.last = Some((t.keys, std::time::Instant::now()));
            }
            t.n_in
        });
        // The destination now holds this run's checkpoint (or its sources are empty): a
        // restart resumes from it instead of starting over again.
        if r.is_ok() && self.rematerialize {
            super::Control::update(&ctx.store, &ctx.name, |c| c.rematerialize = false)?;
            self.rematerialize = false;
        }
        // A transaction that failed because its destination went away is retried, not failed.
        match (r, &self.destination) {
            (Err(e), Some(d)) if !d.available() => Err(anyhow::Error::new(connector::Unavailable(
                format!("the destination went away: {e:#}"),
            ))),
            (r, _) => r,
        }
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
            let parts = match collection.partitions.is_empty() {
                true => vec![(collection.name.clone(), 0)],
                false => Vec::new(),
            };
            bindings.push(Binding {
                collection,
                selector: b.partitions.clone(),
                delta_updates: b.delta_updates,
                parts,
                restored: BTreeMap::new(),
            });
        }
        let destination = match &spec.destination {
            Some(d) => Some(connector::open(&d.connector, &d.config)?),
            None => None,
        };

        let (version, component) = ctx.registry.resolve(&spec.plugin, World::Materialization)?;
        let engine = ctx.registry.engine().clone();
        let log = ctx.registry.log_sink(&spec.plugin, &ctx.name);
        let mut instance =
            Materialization::instantiate(&engine, &component, log.clone(), &ctx.limits.sandbox())?;
        instance.set_call_timer(ctx.call_timer());
        instance.set_http(Some(Box::new(connector::http::Http::new(
            &spec.http.allow,
            &spec.http.headers,
            log,
        )?)));
        instance.set_fields(
            spec.bindings
                .iter()
                .map(|b| {
                    b.fields
                        .iter()
                        .map(|f| flow_engine::Field {
                            name: f.name.clone(),
                            pointer: f.pointer.clone(),
                            key: f.key,
                        })
                        .collect()
                })
                .collect(),
        );
        match destination.as_ref().map(|d| d.grant()) {
            Some(connector::Grant::Sql(sql)) => instance.set_sql(Some(sql)),
            Some(connector::Grant::Kv(kv)) => instance.set_kv(Some(kv)),
            None => {}
        }
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
                    schema: bb.collection.read_schema.raw().to_string(),
                    key: bb.collection.key.iter().map(|p| p.to_string()).collect(),
                    resource: b.resource.to_string(),
                    delta_updates: b.delta_updates,
                })
                .collect(),
        };
        let checkpoint = connector::in_txn(destination.as_deref(), || {
            instance
                .open(&open_spec)
                .map_err(|e| anyhow::anyhow!("open: {e}"))
        })?;
        let rematerialize = super::Control::of(&ctx.store, &ctx.name)?.rematerialize;
        match checkpoint {
            Some(_) if rematerialize => ctx.registry.logs().push(
                &spec.plugin,
                Some(&ctx.name),
                flow_engine::LogLevel::Info,
                format!(
                    "task {} was reset: it ignores the checkpoint its destination holds and materializes its sources from their beginnings",
                    ctx.name
                ),
            ),
            Some(cp) => restore_checkpoint(&cp, &mut bindings)?,
            None => {}
        }
        // Its sources are reported as it starts: the partitions there are now.
        for b in &mut bindings {
            b.find_parts(&ctx.store)?;
        }
        let task = Materialize {
            bindings,
            destination,
            instance,
            prefetched: None,
            last: None,
            combining: false,
            rematerialize,
        };
        Ok((task, version.seq))
    }
}

/// The most transactions a catalog test's `materialize` step runs before it gives up on
/// catching up (each reads up to `txnDocsMax` documents).
const TEST_TXNS_MAX: usize = 10_000;

/// Run materialization `spec` as a catalog test's `materialize` step, into the destination
/// it names (a test's own SQLite database): from the checkpoint there until a transaction
/// finds nothing more to read.
pub(crate) fn run_test_step(
    ctx: &TaskCtx,
    catalog: &Built,
    spec: &BuiltMaterialization,
) -> anyhow::Result<()> {
    let (mut task, _) = Materialize::start(ctx, catalog, spec)?;
    for _ in 0..TEST_TXNS_MAX {
        if task.transaction(ctx)? == 0 {
            return Ok(());
        }
    }
    anyhow::bail!("it had still not caught up with its sources after {TEST_TXNS_MAX} transactions")
}

/// A document of a binding whose collection has no `reduce` annotations, kept as text: its
/// stored row (if any) is simply replaced by the last document of its key (`lastWriteWins`),
/// so nothing is parsed into a tree, reduced or validated again (it was validated when it was
/// appended). The common case, and the one where a transaction's documents are many distinct
/// keys (an enriched stream of orders), whose trees filled hundreds of MiB.
struct Text {
    /// The key as a JSON array (what `load` and `write` name it by).
    key: String,
    /// The document without `_meta`.
    doc: String,
    /// Its `_meta/op` is `d`: a captured delete, which deletes the row.
    delete: bool,
}

/// What one transaction holds of a binding's documents.
enum Combined {
    /// By reductions: the binding's documents are in the transaction's combiners.
    Reduced,
    /// Without: the last document of each key, by packed key.
    Text(flow_doc::combine::LastOfEachKey<(Vec<u8>, Text)>),
}

/// Read a stored document for a text binding: its packed key, key text and text without
/// `_meta`, parsing only the properties its key points into (or all of it, for a key
/// elsewhere or a text not stamped as the host stamps).
fn read_text(
    c: &BuiltCollection,
    tops: Option<&[String]>,
    bytes: &[u8],
) -> anyhow::Result<(Vec<u8>, Text)> {
    let doc = crate::journal::without_meta(bytes);
    let keyed = match (tops, &doc) {
        (Some(tops), Some(_)) => flow_doc::partial::properties(bytes, tops)?,
        _ => serde_json::from_slice(bytes)?,
    };
    let packed = flow_doc::combine::packed_key(&c.key, &keyed)?;
    let key = c.key_of(&keyed).to_string();
    // A text stamped with no more than the host's `_meta` is no delete; one with an `op`
    // (or stamped otherwise) was parsed whole above.
    let (doc, delete) = match doc {
        Some(d) => (d, false),
        None => {
            let mut v = keyed;
            let delete = crate::journal::op_of(&v) == Some("d");
            if let Some(m) = v.as_object_mut() {
                m.remove("_meta");
            }
            (serde_json::to_string(&v)?, delete)
        }
    };
    Ok((packed, Text { key, doc, delete }))
}

/// What a transaction did: documents read, rows written, whether it caught up (read all
/// that was ready: `Batch::caught_up`), the keys it wrote and when it began.
struct Done {
    n_in: usize,
    n_out: usize,
    caught_up: bool,
    keys: Keys,
    began: std::time::Instant,
}

/// The keys a transaction wrote, each hashed with its binding (the first `KEYS_TRACKED`).
/// Fixed seeds, so that two transactions' hashes compare; a key chosen to collide only
/// changes whether a transaction waits.
type Keys = std::collections::HashSet<u64, ahash::RandomState>;

/// How `Keys` hashes a written key.
const KEY_HASH: ahash::RandomState = ahash::RandomState::with_seeds(1, 2, 3, 4);

/// Whether waiting `wait` after transaction `t` would fold the next documents into the rows
/// it wrote: it caught up with its sources, and it either combined its own documents at least
/// 2:1 or mostly rewrote the rows of the transaction before (`last`: their keys and when it
/// ended), which had ended at most twice `wait` before `t` began (a firehose over few keys
/// arriving in pieces that each hold every key once).
fn combining(t: &Done, last: Option<&(Keys, std::time::Instant)>, wait: Duration) -> bool {
    if !t.caught_up || t.n_in == 0 {
        return false;
    }
    if t.n_out * 2 <= t.n_in {
        return true;
    }
    last.is_some_and(|(keys, ended)| {
        let rewritten = t.keys.iter().filter(|k| keys.contains(k)).count();
        rewritten * 2 >= t.keys.len() && t.began.saturating_duration_since(*ended) <= wait * 2
    })
}

/// Written keys a transaction remembers for the next one (8 bytes each: 512 KiB at most).
const KEYS_TRACKED: usize = 65_536;

/// One transaction's documents, read and combined (steps 1 and 2), not yet written.
struct Batch {
    began: std::time::Instant,
    /// Each reduced key's last change, once a deletion was read (`binding key` keyed).
    ops: crate::catalog::LastOps,
    /// Each binding's journals' offsets it was read from.
    from: Vec<Vec<u64>>,
    /// Documents read.
    n_in: usize,
    /// Each binding's journals' offsets after what was read.
    next_offsets: Vec<Vec<u64>>,
    /// Standard bindings drain fully reduced rows; delta bindings their combined deltas.
    standard: Combiner,
    deltas: Combiner,
    /// A text binding's rows in key order, as the combiner drains.
    texts: Vec<Option<Vec<Text>>>,
    /// Keys of reduced standard bindings (JSON array text), in key order: what `load` asks for.
    touched: Vec<BTreeMap<String, ()>>,
    /// Whether it read fewer documents than it asked for, none of its sources cut off by
    /// `txnBytesMax`: all that was ready.
    caught_up: bool,
}

/// What reading a batch needs of the task: shared with the thread that reads the next batch
/// while this one is written (a `TaskCtx` is not `Sync`).
#[derive(Clone, Copy)]
struct Sources<'a> {
    store: &'a crate::storage::Store,
    journals: &'a crate::journal::Journals,
    limits: &'a crate::limits::Limits,
}

/// Up to `docs` documents of a binding's journals from `offsets`, each with its journal's
/// index in `parts`, and whether a journal's read was cut off by `txnBytesMax`. Several
/// journals (logical partitions) are merged in publish-time order, as a derivation merges
/// its sources: each is read up to `docs` documents (and its share of the byte limit), so
/// the first `docs` of them all are the lowest; one cut off by bytes bounds the batch at
/// the last document read of it.
fn read_parts(
    src: Sources,
    b: &Binding,
    offsets: &[u64],
    docs: usize,
) -> anyhow::Result<(Vec<(usize, crate::journal::ReadDoc)>, bool)> {
    if let ([(journal, _)], true) = (b.parts.as_slice(), b.collection.partitions.is_empty()) {
        let read = src.journals.read(
            src.store,
            journal,
            offsets[0],
            docs,
            src.limits.txn_bytes_max,
        )?;
        let cut = read.iter().map(|d| d.bytes.len()).sum::<usize>() >= src.limits.txn_bytes_max;
        return Ok((read.into_iter().map(|d| (0, d)).collect(), cut));
    }
    let bytes_max = (src.limits.txn_bytes_max / b.parts.len().max(1)).max(1);
    let mut merged: Vec<(String, usize, crate::journal::ReadDoc)> = Vec::new();
    let mut bound: Option<String> = None;
    // Read as of one moment: each journal up to its head then (see the derivation's
    // `read_sources`). A partition that appeared since the task looked is found next
    // transaction; until then nothing of this binding is read (it could hold documents
    // published before those of the others).
    let heads = {
        let txn = src.store.read()?;
        let known = |j: &String| b.parts.iter().any(|(p, _)| p == j);
        if !b
            .collection
            .journals_in(&txn, b.selector.as_ref())?
            .iter()
            .all(known)
        {
            return Ok((Vec::new(), true));
        }
        b.parts
            .iter()
            .map(|(j, _)| crate::journal::head_in(&txn, j).map(Some))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    for (k, (journal, _)) in b.parts.iter().enumerate() {
        let (read, cut) = src
            .journals
            .read_until(src.store, journal, offsets[k], heads[k], docs, bytes_max)?;
        let mut last = None;
        for d in read {
            let uuid = crate::journal::uuid_of(&d.bytes)
                .with_context(|| {
                    format!("{journal} offset {} has no _meta/uuid in front", d.offset)
                })?
                .to_string();
            last = Some(uuid.clone());
            merged.push((uuid, k, d));
        }
        if cut && let Some(l) = last {
            bound = Some(match bound {
                Some(b) if b <= l => b,
                _ => l,
            });
        }
    }
    // A stable sort: a journal's documents of one publish time keep their order.
    merged.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    if let Some(b) = &bound {
        merged.retain(|m| &m.0 <= b);
    }
    merged.truncate(docs);
    Ok((
        merged.into_iter().map(|(_, k, d)| (k, d)).collect(),
        bound.is_some(),
    ))
}

/// Steps 1 (read_sources: up to `docs` documents from every binding's source, from `offsets`)
/// and 2 (combine, associatively, as documents arrive).
fn read_batch(
    src: Sources,
    bindings: &[Binding],
    offsets: &[Vec<u64>],
    docs: usize,
) -> anyhow::Result<Batch> {
    let began = std::time::Instant::now();
    let mut docs_left = docs;
    let mut next_offsets = offsets.to_vec();
    let new_combiner = || {
        Combiner::new(
            bindings
                .iter()
                .map(|b| b.collection.read_binding())
                .collect(),
            src.limits.combiner_spill_bytes,
        )
    };
    let (mut standard, mut deltas) = (new_combiner(), new_combiner());
    let mut combined: Vec<Combined> = bindings
        .iter()
        .map(|b| {
            if b.collection.read_schema.plan().annotated() {
                Combined::Reduced
            } else {
                Combined::Text(flow_doc::combine::LastOfEachKey::new(Vec::new()))
            }
        })
        .collect();
    let mut touched: Vec<BTreeMap<String, ()>> = vec![BTreeMap::new(); bindings.len()];
    let (mut n_in, mut cut_by_bytes) = (0, false);
    let mut ops = crate::catalog::LastOps::default();
    for (i, b) in bindings.iter().enumerate() {
        if docs_left == 0 {
            break;
        }
        let (docs, cut) = read_parts(src, b, &offsets[i], docs_left)?;
        docs_left -= docs.len();
        n_in += docs.len();
        cut_by_bytes |= cut;
        let tops = flow_doc::partial::tops(&b.collection.key);
        {
            for (k, d) in docs {
                let journal = &b.parts[k].0;
                next_offsets[i][k] = d.next_offset();
                let not_json = || format!("{journal} offset {} is not JSON", d.offset);
                b.collection
                    .check_read(&d.bytes)
                    .map_err(|e| anyhow::anyhow!("{journal} offset {}: {e}", d.offset))?;
                if let Combined::Text(last) = &mut combined[i] {
                    let (packed, text) = read_text(&b.collection, tops.as_deref(), &d.bytes)
                        .with_context(not_json)?;
                    last.add_packed(packed.clone(), (packed, text));
                    continue;
                }
                let mut doc: Value = serde_json::from_slice(&d.bytes).with_context(not_json)?;
                // Its `_meta/op` stays for the reductions; the key's last change decides
                // whether it is a row (`LastOps`: a `d` deletes it below).
                crate::catalog::keep_only_op(&mut doc);
                ops.add(|| format!("{i} {}", b.collection.key_of(&doc)), &doc);
                if !b.delta_updates {
                    touched[i].insert(b.collection.key_of(&doc).to_string(), ());
                }
                let combiner = if b.delta_updates {
                    &mut deltas
                } else {
                    &mut standard
                };
                // Validated when it was appended (before `_meta` was stamped).
                combiner
                    .add_valid(i, doc, false)
                    .map_err(|e| anyhow::anyhow!("combining {}: {e}", b.collection.name))?;
            }
        }
    }
    // Fewer than asked for, and no source cut off by `txnBytesMax`: all that was ready (a
    // transaction that combined may wait for more); otherwise a backlog, read on at once.
    let caught_up = n_in < docs && !cut_by_bytes;
    let texts: Vec<Option<Vec<Text>>> = combined
        .into_iter()
        .map(|c| match c {
            Combined::Reduced => None,
            Combined::Text(last) => {
                let mut items = last.into_items();
                items.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                Some(items.into_iter().map(|(_, t)| t).collect())
            }
        })
        .collect();
    Ok(Batch {
        began,
        ops,
        from: offsets.to_vec(),
        n_in,
        next_offsets,
        standard,
        deltas,
        texts,
        touched,
        caught_up,
    })
}

/// Run one transaction: the batch read ahead while the last one was written, if it found
/// documents, or one read now. While a backlog lasts (the batch is full) into a destination
/// server, the next batch is read on another thread while this one is written, so the
/// server's work overlaps the reading; it waits in `prefetched` for the next call (a stop or
/// failure just drops it).
fn transaction(
    ctx: &TaskCtx,
    db: Option<&dyn Destination>,
    bindings: &mut [Binding],
    instance: &mut Materialization,
    prefetched: &mut Option<Batch>,
) -> anyhow::Result<Done> {
    let src = Sources {
        store: &ctx.store,
        journals: &ctx.journals,
        limits: &ctx.limits,
    };
    let asked = ctx.txn_docs();
    for b in bindings.iter_mut() {
        b.find_parts(&ctx.store)?;
    }
    let offsets: Vec<Vec<u64>> = bindings.iter().map(Binding::offsets).collect();
    let batch = match prefetched.take() {
        Some(b) if b.n_in > 0 && b.from == offsets => b,
        _ => read_batch(src, bindings, &offsets, asked)?,
    };
    if batch.n_in == 0 {
        return Ok(Done {
            n_in: 0,
            n_out: 0,
            caught_up: true,
            keys: Default::default(),
            began: batch.began,
        });
    }
    let (n_in, caught_up, began) = (batch.n_in, batch.caught_up, batch.began);
    let next_offsets = batch.next_offsets.clone();
    // Only where a server does the destination's work: beside SQLite, written by this thread,
    // a reading thread only competes for the cores (measured: the join pipeline 2-4% slower).
    let read_ahead = !caught_up && db.is_some_and(|d| d.server());
    let next_docs = asked.saturating_mul(2).min(ctx.limits.txn_docs_max).max(1);
    let shared: &[Binding] = bindings;
    let (written, next) = std::thread::scope(|s| {
        let next = read_ahead.then(|| {
            std::thread::Builder::new()
                .name(format!("{} read-ahead", ctx.name))
                .spawn_scoped(s, || read_batch(src, shared, &next_offsets, next_docs))
        });
        let written = write_batch(ctx, db, shared, instance, batch);
        // A read-ahead that failed (or could not start) is dropped: the next call reads again.
        let next = next.and_then(|h| h.ok()?.join().ok()?.ok());
        (written, next)
    });
    let (n_out, keys) = written?;
    *prefetched = next;
    for (b, offsets) in bindings.iter_mut().zip(next_offsets) {
        for ((_, o), next) in b.parts.iter_mut().zip(offsets) {
            *o = next;
        }
    }
    ctx.statuses.update(&ctx.name, |s| {
        s.transactions += 1;
        s.docs_in += n_in as u64;
        s.docs_out += n_out as u64;
    });
    Ok(Done {
        n_in,
        n_out,
        caught_up,
        keys,
        began,
    })
}

/// Step 3 (load, reduce, store, commit) of `batch`: one destination transaction. Returns
/// the rows written and their keys.
fn write_batch(
    ctx: &TaskCtx,
    db: Option<&dyn Destination>,
    bindings: &[Binding],
    instance: &mut Materialization,
    batch: Batch,
) -> anyhow::Result<(usize, Keys)> {
    let Batch {
        ops,
        next_offsets,
        mut standard,
        mut deltas,
        texts,
        touched,
        ..
    } = batch;
    let checkpoint = json!({
        "bindings": bindings.iter().zip(&next_offsets).map(|(b, o)| b.checkpoint(o)).collect::<Vec<_>>()
    })
    .to_string();
    connector::in_txn(db, || {
        let mut writer = Writer::new(ctx, bindings, instance);
        // send_plugin_load, then send_plugin_write of text bindings: a stored row only tells
        // whether the key exists; the last document replaces it.
        for (i, items) in texts.into_iter().enumerate() {
            let Some(items) = items else { continue };
            let exists: std::collections::HashSet<String> = if bindings[i].delta_updates {
                Default::default()
            } else {
                let keys: Vec<String> = items.iter().map(|t| t.key.clone()).collect();
                load(ctx, writer.instance, bindings, i, &keys)?
                    .into_iter()
                    .map(|l| l.key)
                    .collect()
            };
            for t in items {
                writer.push(
                    i,
                    sink_api::Stored {
                        exists: exists.contains(&t.key),
                        key: t.key,
                        document: t.doc,
                        // A delta binding appends changes: a delete is one more.
                        delete: t.delete && !bindings[i].delta_updates,
                    },
                )?;
            }
        }
        // send_plugin_load of reduced bindings: stored rows join the combiner as the first
        // document of their key, so the drain is a full reduction of row + deltas.
        for (i, keys) in touched.iter().enumerate() {
            if keys.is_empty() {
                continue;
            }
            let keys: Vec<String> = keys.keys().cloned().collect();
            let name = &bindings[i].collection.name;
            for loaded in load(ctx, writer.instance, bindings, i, &keys)? {
                let doc: Value = serde_json::from_str(&loaded.document)
                    .map_err(|e| anyhow::anyhow!("load (binding {i}, {name}): the plugin returned a document that is not JSON: {e}"))?;
                standard.add(i, doc, true).map_err(|e| {
                    anyhow::anyhow!("load (binding {i}, {name}): stored document: {e}")
                })?;
            }
        }
        // send_plugin_write of reduced bindings, in key order.
        let drained = standard
            .drain(true)
            .and_then(|s| Ok(s.chain(deltas.drain(false)?)));
        for d in drained.map_err(|e| anyhow::anyhow!("combining: {e}"))? {
            let mut d = d.map_err(|e| anyhow::anyhow!("reducing: {e}"))?;
            if !bindings[d.binding].delta_updates && !ops.is_empty() {
                // Spelled as when it was noted (`key_of`: `1.0` is `1`).
                let key = bindings[d.binding].collection.key_of(&d.doc);
                ops.apply(|| format!("{} {key}", d.binding), &mut d.doc);
            }
            // A reduced document whose last change was a delete (`_meta/op` `d`) deletes
            // its row (standard updates); `_meta` is not written.
            let delete = d.deleted
                || (!bindings[d.binding].delta_updates
                    && crate::journal::op_of(&d.doc) == Some("d"));
            if let Some(m) = d.doc.as_object_mut() {
                m.remove("_meta");
            }
            writer.push(
                d.binding,
                sink_api::Stored {
                    key: serde_json::to_string(&d.key)?,
                    document: serde_json::to_string(&d.doc)?,
                    exists: d.front,
                    delete,
                },
            )?;
        }
        let written = writer.finish()?;
        // send_plugin_commit: the checkpoint goes into the same destination transaction.
        instance
            .commit(&checkpoint)
            .map_err(|e| anyhow::anyhow!("commit: {e}"))?;
        Ok(written)
    })
}

/// `load` the stored documents of `keys` of binding `i`, in calls of `callDocsMax` keys: a
/// plugin holds one call's keys and rows.
fn load(
    ctx: &TaskCtx,
    instance: &mut Materialization,
    bindings: &[Binding],
    i: usize,
    keys: &[String],
) -> anyhow::Result<Vec<sink_api::Loaded>> {
    let name = &bindings[i].collection.name;
    let mut out = Vec::new();
    for chunk in keys.chunks(ctx.limits.call_docs_max) {
        out.extend(
            instance
                .load(i as u32, chunk)
                .map_err(|e| anyhow::anyhow!("load (binding {i}, {name}): {e}"))?,
        );
    }
    Ok(out)
}

/// `write` calls: a binding's documents in calls of at most `callDocsMax` documents and
/// `callOutputBytesMax` bytes (a plugin holds one call's documents, and a transaction of many
/// distinct keys must not need a plugin memory of its size: one call of 65,536 rows once
/// exceeded materialize-sqlite's 64 MiB).
struct Writer<'a> {
    ctx: &'a TaskCtx,
    bindings: &'a [Binding],
    instance: &'a mut Materialization,
    pending: Option<(usize, Vec<sink_api::Stored>)>,
    bytes: usize,
    written: usize,
    /// The keys written.
    keys: Keys,
}

impl<'a> Writer<'a> {
    fn new(ctx: &'a TaskCtx, bindings: &'a [Binding], instance: &'a mut Materialization) -> Self {
        Writer {
            ctx,
            bindings,
            instance,
            pending: None,
            bytes: 0,
            written: 0,
            keys: Default::default(),
        }
    }

    fn push(&mut self, binding: usize, stored: sink_api::Stored) -> anyhow::Result<()> {
        let full = self.pending.as_ref().is_some_and(|(i, d)| {
            *i != binding
                || d.len() >= self.ctx.limits.call_docs_max
                || self.bytes >= self.ctx.limits.call_output_bytes_max
        });
        if full {
            self.flush()?;
        }
        if self.keys.len() < KEYS_TRACKED {
            self.keys.insert(KEY_HASH.hash_one((binding, &stored.key)));
        }
        self.bytes += stored.key.len() + stored.document.len();
        self.pending
            .get_or_insert_with(|| (binding, Vec::new()))
            .1
            .push(stored);
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if let Some((i, docs)) = self.pending.take() {
            self.written += docs.len();
            self.bytes = 0;
            self.instance.write(i as u32, &docs).map_err(|e| {
                anyhow::anyhow!(
                    "write (binding {i}, {}): {e}",
                    self.bindings[i].collection.name
                )
            })?;
        }
        Ok(())
    }

    /// Write what is pending; how many documents were written in all, and their keys.
    fn finish(mut self) -> anyhow::Result<(usize, Keys)> {
        self.flush()?;
        Ok((self.written, self.keys))
    }
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
        let Some(s) = saved.get(i).filter(|s| {
            s.get("collection").and_then(Value::as_str) == Some(b.collection.name.as_str())
        }) else {
            continue;
        };
        if b.collection.partitions.is_empty() {
            if let Some((_, o)) = b.parts.first_mut() {
                *o = s.get("offset").and_then(Value::as_u64).unwrap_or(0);
            }
        } else if let Some(journals) = s.get("journals").and_then(Value::as_object) {
            b.restored = journals
                .iter()
                .filter_map(|(j, o)| Some((j.clone(), o.as_u64()?)))
                .collect();
        }
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::{Done, Keys, combining};
    use std::time::{Duration, Instant};

    fn done(n_in: usize, keys: std::ops::Range<u64>, caught_up: bool, began: Instant) -> Done {
        let keys: Keys = keys.collect();
        Done {
            n_in,
            n_out: keys.len(),
            caught_up,
            keys,
            began,
        }
    }

    #[test]
    fn a_transaction_waits_only_when_waiting_folds_rows() {
        let wait = Duration::from_millis(50);
        let t0 = Instant::now();
        let (at, ms) = (|ms| t0 + Duration::from_millis(ms), Duration::from_millis);
        // Its own documents folded 10:1, caught up: wait. Behind (a backlog): read on.
        assert!(combining(&done(10_000, 0..1_000, true, at(0)), None, wait));
        assert!(!combining(
            &done(10_000, 0..1_000, false, at(0)),
            None,
            wait
        ));
        // Distinct keys (orders): nothing to fold, commit at once.
        assert!(!combining(&done(1_000, 0..1_000, true, at(0)), None, wait));
        // Every key once, but the same keys the transaction before wrote 5 ms earlier: wait.
        let before = (t0.checked_sub(ms(5)).unwrap_or(t0), (0..1_000).collect());
        let last = Some((before.1, before.0));
        assert!(combining(
            &done(1_000, 0..1_000, true, at(0)),
            last.as_ref(),
            wait
        ));
        // ... or mostly other keys: do not.
        assert!(!combining(
            &done(1_000, 600..1_600, true, at(0)),
            last.as_ref(),
            wait
        ));
        // The same keys, but written long before (a slow stream of updates): do not.
        let long_ago = last.as_ref().map(|(k, e)| (k.clone(), *e));
        assert!(!combining(
            &done(1_000, 0..1_000, true, at(200)),
            long_ago.as_ref(),
            wait
        ));
        // Nothing read: nothing to wait for.
        assert!(!combining(&done(0, 0..0, true, at(0)), last.as_ref(), wait));
    }
}
