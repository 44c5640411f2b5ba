//! The derivation task: one per derived collection. Protocol steps: `README.md`.
//!
//! `Derive::start` opens it; `transaction` runs the steps, most of them functions named as in
//! the README.

use crate::catalog::{self, Built, BuiltCollection, ErrorPolicy};
use crate::journal;
use crate::storage::{CHECKPOINTS, Store, TASK_STATE};
use crate::task::{self, Kind, Task, TaskCtx, TaskDef};
use anyhow::Context;
use flow_engine::{Derivation, Migrator, StateAccess, World, derive_api, migrate_api};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Per-key state as one transaction sees it: committed state overlaid by this transaction's
/// writes (`None` = cleared).
struct StateTxn {
    task: String,
    store: Arc<Store>,
    /// The committed state, read through one redb read transaction opened at the first `get`
    /// (one per `get` cost more than the lookup). Only this task writes its state, when a
    /// transaction commits; the one transaction that may commit while this one runs is
    /// overlaid by `writes.pending`, so the snapshot is never stale where it is read.
    committed: Option<crate::storage::StateTable>,
    writes: Writes,
    /// `stateValueBytesMax` and `stateTxnBytesMax`.
    value_bytes_max: usize,
    txn_bytes_max: usize,
}

/// The state a transaction writes, and what the transaction before it wrote, if that one is
/// still on its way to the disk (`InFlight`).
#[derive(Clone, Default)]
struct Writes {
    mine: Arc<Mutex<StateWrites>>,
    pending: Option<Arc<StateMap>>,
}

/// State writes by key (`None` = cleared).
type StateMap = BTreeMap<String, Option<String>>;

impl Writes {
    fn lock(&self) -> std::sync::LockResult<std::sync::MutexGuard<'_, StateWrites>> {
        self.mine.lock()
    }
}

/// A transaction's state writes, bounded: a write past a bound is dropped (the host never
/// holds more than the bound) and remembered, and the call that made it fails.
#[derive(Clone, Default)]
struct StateWrites {
    map: StateMap,
    /// Bytes of the keys and values in `map`.
    bytes: usize,
    /// The first bound a write broke.
    over: Option<String>,
}

impl StateWrites {
    fn put(&mut self, key: &str, value: Option<String>, txn_bytes_max: usize) {
        let size = key.len() + value.as_ref().map_or(0, String::len);
        let old = self
            .map
            .get(key)
            .map_or(0, |v| key.len() + v.as_ref().map_or(0, String::len));
        let bytes = self.bytes - old + size;
        if bytes > txn_bytes_max {
            self.over.get_or_insert_with(|| {
                format!(
                    "the transaction's state writes reached {bytes} bytes, over the cap of {txn_bytes_max} bytes (stateTxnBytesMax)"
                )
            });
            return;
        }
        self.bytes = bytes;
        // A key written before keeps its String: most writes of a transaction are to keys
        // it wrote already.
        match self.map.get_mut(key) {
            Some(v) => *v = value,
            None => {
                self.map.insert(key.to_string(), value);
            }
        }
    }

    /// Fail if a write broke a bound.
    fn check(&self) -> anyhow::Result<()> {
        match &self.over {
            Some(why) => anyhow::bail!("the plugin exceeded a sandbox limit: {why}"),
            None => Ok(()),
        }
    }
}

impl StateTxn {
    fn new(ctx: &TaskCtx, writes: &Writes) -> Self {
        StateTxn {
            task: ctx.name.clone(),
            store: ctx.store.clone(),
            committed: None,
            writes: writes.clone(),
            value_bytes_max: ctx.limits.state_value_bytes_max,
            txn_bytes_max: ctx.limits.state_txn_bytes_max,
        }
    }
}

/// A derivation's `state` capability over `store`, as a transaction grants it, with the check
/// its commit makes: what `fuzz::host_calls` drives with arbitrary calls.
#[cfg(feature = "fuzz")]
pub(crate) fn state_for_fuzz(
    store: Arc<Store>,
    value_bytes_max: usize,
    txn_bytes_max: usize,
) -> (Box<dyn StateAccess>, impl Fn() -> anyhow::Result<()>) {
    let writes = Writes::default();
    let txn = StateTxn {
        task: "fuzz".to_string(),
        store,
        committed: None,
        writes: writes.clone(),
        value_bytes_max,
        txn_bytes_max,
    };
    (Box::new(txn), move || {
        let w = writes.lock().expect("state poisoned");
        anyhow::ensure!(
            w.bytes <= txn_bytes_max,
            "state writes hold {} bytes",
            w.bytes
        );
        w.check()
    })
}

impl StateAccess for StateTxn {
    fn get(&mut self, key: &str) -> Option<String> {
        if let Some(w) = self.writes.lock().expect("state poisoned").map.get(key) {
            return w.clone();
        }
        // Written by the transaction before, which may not have committed yet: the snapshot
        // below may predate it.
        if let Some(w) = self.writes.pending.as_ref().and_then(|p| p.get(key)) {
            return w.clone();
        }
        // A read failure of the local database is not the plugin's to handle; it surfaces as
        // missing state only if redb itself is broken, which the commit will then report.
        if self.committed.is_none() {
            self.committed = self
                .store
                .read()
                .and_then(|t| Ok(t.open_table(TASK_STATE)?))
                .ok();
        }
        crate::storage::state_in(self.committed.as_ref()?, &self.task, key)
            .ok()
            .flatten()
    }
    fn set(&mut self, key: &str, value: String) {
        let mut writes = self.writes.lock().expect("state poisoned");
        if value.len() > self.value_bytes_max {
            let why = format!(
                "a state value of {} bytes (key {}) is over the cap of {} bytes (stateValueBytesMax)",
                value.len(),
                task::truncate(key),
                self.value_bytes_max
            );
            writes.over.get_or_insert(why);
            return;
        }
        writes.put(key, Some(value), self.txn_bytes_max);
    }
    fn clear(&mut self, key: &str) {
        let mut writes = self.writes.lock().expect("state poisoned");
        writes.put(key, None, self.txn_bytes_max);
    }
}

struct Transform {
    name: String,
    source: String,
    /// The source collection and which of its logical partitions are read.
    collection: Arc<BuiltCollection>,
    selector: Option<catalog::BuiltSelector>,
    /// The journals read: the source's own, or one per logical partition (found as they
    /// appear; only ever appended to, so positions stay put).
    parts: Vec<Part>,
    shuffle_key: Vec<flow_doc::Pointer>,
    /// `flow_doc::partial::tops(shuffle_key)`: what a source document is parsed for.
    key_tops: Option<Vec<String>>,
    read_delay_ms: u64,
    /// When the next delayed document of this source becomes ready (ms since the epoch).
    wake_ms: Option<u64>,
    /// The source, when it has a `readSchema` of its own that every document read must
    /// match.
    read_check: Option<Arc<BuiltCollection>>,
}

/// One journal a transform reads.
struct Part {
    journal: String,
    /// Its checkpoint's name (`CHECKPOINTS`): the transform's, for a source without logical
    /// partitions (as before they existed); `{transform}\u{1f}{journal}` for a partition.
    checkpoint: String,
    /// Where the next transaction reads from.
    offset: u64,
    /// Where reading resumes after the last transaction known to have committed: what the
    /// task reports, and where a restart would begin.
    committed: u64,
}

impl Transform {
    /// Add the journals of logical partitions that appeared since the last look, each from
    /// its checkpoint.
    fn find_parts(&mut self, ctx: &TaskCtx, txn: &redb::ReadTransaction) -> anyhow::Result<()> {
        if self.collection.partitions.is_empty() {
            return Ok(());
        }
        for journal in self.collection.journals_in(txn, self.selector.as_ref())? {
            if self.parts.iter().any(|p| p.journal == journal) {
                continue;
            }
            let checkpoint = format!("{}\u{1f}{journal}", self.name);
            let offset = ctx.store.checkpoint(&ctx.name, &checkpoint)?;
            self.parts.push(Part {
                journal,
                checkpoint,
                offset,
                committed: offset,
            });
        }
        Ok(())
    }
}

pub(crate) const KIND: Kind = Kind {
    name: "derivation",
    world: World::Derivation,
    external: false,
    endpoints: |catalog| {
        catalog
            .collections
            .iter_mut()
            .filter_map(|(name, c)| c.derive.as_mut().map(|d| (name, &mut d.using.wasm)))
            .collect()
    },
    tasks: |catalog| {
        catalog
            .collections
            .values()
            .filter_map(|c| {
                let d = c.derive.as_ref()?;
                let (catalog, collection) = (catalog.clone(), c.clone());
                let plugin = d.plugin.clone();
                Some(TaskDef {
                    name: c.name.clone(),
                    plugin: d.plugin.clone(),
                    limits: d.limits.clone(),
                    run: Box::new(move |ctx| {
                        task::run(ctx, &plugin, |ctx| {
                            Derive::start(ctx, catalog.clone(), collection.clone())
                        })
                    }),
                })
            })
            .collect()
    },
};

/// A running derivation of one collection.
struct Derive {
    catalog: Arc<Built>,
    collection: Arc<BuiltCollection>,
    transforms: Vec<Transform>,
    plugin: Plugin,
    /// The last transaction, queued to the committer and not yet known to have committed:
    /// the next one runs meanwhile (so the plugin works while the disk syncs), and is queued
    /// only once this one committed.
    in_flight: Option<InFlight>,
}

/// A transaction handed to the committer.
struct InFlight {
    /// Its state writes, which the next transaction reads through.
    writes: Arc<StateMap>,
    /// Each transform's parts' next offsets once it committed.
    offsets: Vec<Vec<u64>>,
    done: std::sync::mpsc::Receiver<anyhow::Result<()>>,
}

impl Derive {
    /// Wait until the transaction in flight, if any, committed: its failure fails the
    /// transaction that ran on top of it too (the task restarts from its checkpoints).
    fn settle(&mut self) -> anyhow::Result<()> {
        let Some(f) = self.in_flight.take() else {
            return Ok(());
        };
        f.done
            .recv()
            .map_err(|_| anyhow::anyhow!("the committer thread stopped"))??;
        for (t, offsets) in self.transforms.iter_mut().zip(f.offsets) {
            for (p, o) in t.parts.iter_mut().zip(offsets) {
                p.committed = o;
            }
        }
        Ok(())
    }
}

impl Drop for Derive {
    /// A task stops (or restarts) only once its last transaction is settled, so whatever
    /// starts after it reads its checkpoints as they end up.
    fn drop(&mut self) {
        if let Err(e) = self.settle() {
            tracing::warn!(collection = %self.collection.name, "the last transaction did not commit: {e:#}");
        }
    }
}

impl Task for Derive {
    fn outputs(&self) -> Vec<String> {
        let mut outputs = vec![self.collection.name.clone()];
        if let Some(d) = &self.collection.derive {
            outputs.extend(d.dead_letters.clone());
        }
        outputs
    }

    fn sources(&self) -> Vec<(String, String, u64)> {
        self.transforms
            .iter()
            .flat_map(|t| {
                t.parts
                    .iter()
                    .map(|p| (t.name.clone(), p.journal.clone(), p.committed))
            })
            .collect()
    }

    fn transaction(&mut self, ctx: &TaskCtx) -> anyhow::Result<usize> {
        transaction(ctx, self)
    }

    /// Sleep until an append, or until a delayed document becomes ready.
    fn wake_ms(&self) -> Option<u64> {
        self.transforms.iter().filter_map(|t| t.wake_ms).min()
    }
}

impl Derive {
    /// Resolve and open the plugin (while a swapped-out run of this task may still finish
    /// its last transaction), then, once the task is the only run (`TaskCtx::ready`), migrate
    /// state written by another version and resume every transform from its checkpoint.
    fn start(
        ctx: &TaskCtx,
        catalog: Arc<Built>,
        collection: Arc<BuiltCollection>,
    ) -> anyhow::Result<(Self, u64)> {
        let derive = collection.derive.as_ref().context("not a derivation")?;
        let mut transforms = Vec::new();
        for t in &derive.transforms {
            let source = catalog.collection(&t.source)?;
            let shuffle_key = t.shuffle_key(&source.key);
            transforms.push(Transform {
                name: t.name.clone(),
                source: t.source.clone(),
                collection: source.clone(),
                selector: t.partitions.clone(),
                parts: Vec::new(),
                key_tops: flow_doc::partial::tops(&shuffle_key),
                shuffle_key,
                read_delay_ms: t.read_delay_ms,
                wake_ms: None,
                read_check: source
                    .distinct_read_schema()
                    .is_some()
                    .then(|| source.clone()),
            });
        }

        let (version, component) = ctx.registry.resolve(&derive.plugin, World::Derivation)?;
        let spec = derive_api::DerivationSpec {
            name: collection.name.clone(),
            config: derive.config.to_string(),
            key: collection.key.iter().map(|p| p.to_string()).collect(),
            transforms: transforms
                .iter()
                .map(|t| derive_api::TransformSpec {
                    name: t.name.clone(),
                    source: t.source.clone(),
                    shuffle_key: t.shuffle_key.iter().map(|p| p.to_string()).collect(),
                })
                .collect(),
        };
        let plugin = Plugin::open(ctx, &derive.plugin, version.clone(), component, spec)?;
        ctx.ready();
        migrate_state(ctx, &derive.plugin, &version, &plugin.component)?;
        for t in &mut transforms {
            if t.collection.partitions.is_empty() {
                let offset = ctx.store.checkpoint(&ctx.name, &t.name)?;
                t.parts.push(Part {
                    journal: t.source.clone(),
                    checkpoint: t.name.clone(),
                    offset,
                    committed: offset,
                });
            } else {
                t.find_parts(ctx, &ctx.store.read()?)?;
            }
        }
        let resume: Vec<String> = transforms
            .iter()
            .flat_map(|t| {
                t.parts.iter().map(|p| match p.journal == t.source {
                    true => format!("{}@{}", t.name, p.offset),
                    false => format!("{} {}@{}", t.name, p.journal, p.offset),
                })
            })
            .collect();
        ctx.log_running(&derive.plugin, version.seq, &resume.join(", "));
        let derive = Derive {
            catalog,
            collection,
            transforms,
            plugin,
            in_flight: None,
        };
        Ok((derive, version.seq))
    }
}

/// Run one transaction; returns how many source documents it processed. Its commit is
/// queued, not waited for: `Derive::settle` waits before the next one is queued.
fn transaction(ctx: &TaskCtx, task: &mut Derive) -> anyhow::Result<usize> {
    let catalog = task.catalog.clone();
    let collection = task.collection.clone();
    let derive = collection.derive.as_ref().context("not a derivation")?;
    // 1. read_sources
    let (mut batch, positions) = read_sources(ctx, &mut task.transforms)?;
    if batch.is_empty() {
        task.settle()?;
        return Ok(0);
    }
    let (transforms, plugin) = (&task.transforms[..], &mut task.plugin);

    // 2. send_plugin_transform, send_plugin_flush, 3. check_outputs
    let writes = Writes {
        pending: task.in_flight.as_ref().map(|f| f.writes.clone()),
        ..Writes::default()
    };
    plugin
        .instance
        .set_state(Some(Box::new(StateTxn::new(ctx, &writes))));
    let result = match send_plugin_transform(ctx, &collection, transforms, plugin, &batch, &writes)
    {
        Ok((docs, processed)) => {
            // Past the time budget only a prefix was processed: commit that, read on after.
            batch.truncate(processed);
            Ok((docs, Vec::new()))
        }
        // Fail: replay one document per call to name the failing source document (a batched
        // call's outputs cannot be traced to their inputs), stopping at the first failure,
        // then fail with that error.
        Err(e) if derive.on_error == ErrorPolicy::Fail => {
            *writes.lock().expect("state poisoned") = StateWrites::default();
            match process_each(ctx, &collection, transforms, plugin, &batch, &writes, true) {
                Ok((_, failures, _)) if !failures.is_empty() => {
                    Err(anyhow::anyhow!("{}", failures[0].1))
                }
                // The replay succeeded, ran out of time before the failure, or failed in
                // flush: report the original error.
                _ => Err(e),
            }
        }
        // Find the failing documents: replay the transaction one document at a time, as far
        // as the transaction's time budget goes (the rest is read again next transaction).
        Err(_) => {
            *writes.lock().expect("state poisoned") = StateWrites::default();
            process_each(ctx, &collection, transforms, plugin, &batch, &writes, false).map(
                |(docs, failures, processed)| {
                    batch.truncate(processed);
                    (docs, failures)
                },
            )
        }
    };
    plugin.instance.set_state(None);
    let (docs, failures) = result?;
    let mut next_offsets: Vec<Vec<u64>> = transforms
        .iter()
        .map(|t| t.parts.iter().map(|p| p.offset).collect())
        .collect();
    for &(i, part, next) in &positions[..batch.len()] {
        next_offsets[i][part] = next;
    }
    let dead_letters =
        failure_records(ctx, &catalog, derive, transforms, plugin, &batch, failures)?;
    // Combine by the derived key and reductions: a hot key's outputs become one document,
    // encoded here, not in the committer that every writer shares.
    let docs = docs
        .0
        .finish()
        .map_err(|e| anyhow::anyhow!("combining outputs: {e}"))?;
    let n_out = docs.len();
    // Each document into its journal (of its logical partition, if the collection has them).
    let mut groups = collection
        .by_journal(docs)
        .map_err(|e| anyhow::anyhow!("outputs: {e}"))?;
    if let Some((dl, records)) = dead_letters {
        let records: Vec<journal::Encoded> = records.iter().map(journal::Encoded::of).collect();
        groups.extend(
            catalog
                .collection(&dl)?
                .by_journal(records)
                .map_err(|e| anyhow::anyhow!("dead-letter records: {e}"))?,
        );
    }
    groups.retain(|(_, docs)| !docs.is_empty());
    // Readers of what it appends (its outputs, or only dead letters) are woken.
    let appends = !groups.is_empty();

    // 4. commit
    let state: Arc<StateMap> = Arc::new(std::mem::take(
        &mut writes.lock().expect("state poisoned").map,
    ));
    let task_name = ctx.name.clone();
    // Which component wrote the state, for `migrate` on a later version switch.
    let state_digest = (!state.is_empty()).then(|| {
        (
            Store::state_digest_key(&ctx.name),
            plugin.version.digest.clone(),
        )
    });
    let checkpoints: Vec<(String, u64)> = transforms
        .iter()
        .zip(&next_offsets)
        .flat_map(|(t, o)| {
            t.parts
                .iter()
                .zip(o)
                .map(|(p, o)| (p.checkpoint.clone(), *o))
        })
        .collect();
    let job = {
        let state = state.clone();
        let clock = ctx.store.clock.clone();
        move |txn: &redb::WriteTransaction| {
            for (journal, docs) in &groups {
                journal::append_encoded(txn, journal, docs, &clock)?;
            }
            let mut table = txn.open_table(TASK_STATE)?;
            for (key, value) in state.iter() {
                match value {
                    Some(v) => {
                        table.insert((task_name.as_str(), key.as_str()), v.as_bytes())?;
                    }
                    None => {
                        table.remove((task_name.as_str(), key.as_str()))?;
                    }
                }
            }
            if let Some((key, digest)) = &state_digest {
                txn.open_table(crate::storage::META)?
                    .insert(key.as_str(), digest.as_bytes())?;
            }
            let mut table = txn.open_table(CHECKPOINTS)?;
            for (name, offset) in &checkpoints {
                table.insert((task_name.as_str(), name.as_str()), *offset)?;
            }
            Ok(())
        }
    };
    let n_in = batch.len();
    // Told on the committer thread once it is durable: readers wake without waiting for this
    // task to finish its next transaction.
    let (done, wait) = std::sync::mpsc::sync_channel(1);
    let then = {
        let (journals, statuses, name) =
            (ctx.journals.clone(), ctx.statuses.clone(), ctx.name.clone());
        move |result: anyhow::Result<()>| {
            if result.is_ok() {
                if appends {
                    journals.notify();
                }
                statuses.update(&name, |s| {
                    s.transactions += 1;
                    s.docs_in += n_in as u64;
                    s.docs_out += n_out as u64;
                });
            }
            let _ = done.send(result);
        }
    };
    // The transaction before must have committed first: this one read its state.
    task.settle()?;
    ctx.store.write_then(job, then)?;
    for (t, offsets) in task.transforms.iter_mut().zip(&next_offsets) {
        for (p, o) in t.parts.iter_mut().zip(offsets) {
            p.offset = *o;
        }
    }
    task.in_flight = Some(InFlight {
        writes: state,
        offsets: next_offsets,
        done: wait,
    });
    Ok(n_in)
}

/// One source document of a transaction. Its text stays a slice of the block it was read
/// with (no copy per document) until its plugin call packs it (`pack`, a chunk at a time).
struct SourceDoc {
    transform: u32,
    /// The shuffle key as JSON array text.
    key: String,
    doc: bytes::Bytes,
}

impl SourceDoc {
    /// The document's text, for messages (a document that is not UTF-8 never reaches a
    /// plugin: `pack` refuses it).
    fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.doc)
    }
}

/// Pack documents for one plugin call, from the front of `docs`: up to `docs_max`, fewer if
/// the batch's text would pass 4 GiB (at least one). Returns how many were packed.
fn pack(
    batch: &mut flow_engine::SourceBatch,
    docs: &[SourceDoc],
    docs_max: usize,
) -> anyhow::Result<usize> {
    batch.clear();
    for d in docs.iter().take(docs_max.max(1)) {
        let text = simdutf8::basic::from_utf8(&d.doc)
            .ok()
            .context("source document is not UTF-8")?;
        if !batch.push(d.transform, &d.key, text) {
            anyhow::ensure!(!batch.is_empty(), "a source document is over 4 GiB");
            break;
        }
    }
    Ok(batch.len())
}

/// Milliseconds since the Unix epoch in a UUIDv7 (its first 48 bits).
fn uuid_ms(uuid: &str) -> u64 {
    let hex: String = uuid.chars().filter(|c| *c != '-').take(12).collect();
    u64::from_str_radix(&hex, 16).unwrap_or(0)
}

/// The UUID in a stored document's `_meta` and its shuffle key (as JSON array text), parsing
/// no more of it than that takes: the UUID is read from the front, where every append puts
/// it, and only the top-level properties the key points into are built.
/// `tops` is `flow_doc::partial::tops(shuffle_key)`, computed once per transform.
fn clock_and_key(
    bytes: &[u8],
    shuffle_key: &[flow_doc::Pointer],
    tops: Option<&[String]>,
) -> anyhow::Result<(String, String)> {
    const FRONT: &[u8] = br#"{"_meta":{"uuid":""#;
    let front = bytes
        .strip_prefix(FRONT)
        .filter(|rest| rest.get(36) == Some(&b'"'))
        .and_then(|rest| std::str::from_utf8(&rest[..36]).ok());
    let (uuid, doc) = match (front, tops) {
        (Some(uuid), Some(tops)) => (
            uuid.to_string(),
            flow_doc::partial::properties(bytes, tops)?,
        ),
        // Written before `_meta` came first, or a key of the whole document: parse it all.
        _ => {
            let doc: Value = serde_json::from_slice(bytes)?;
            let uuid = doc
                .pointer("/_meta/uuid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            (uuid, doc)
        }
    };
    Ok((uuid, catalog::key_of(shuffle_key, &doc).to_string()))
}

/// Read the next batch from every transform's source, in publish-time order across sources.
///
/// A document's clock is its publish time (from `_meta.uuid`) plus its transform's
/// `readDelay`; it is ready once its clock has passed. The batch is the `txnDocsMax` ready
/// documents with the lowest clocks of all sources, in clock order, so every batch (live, or
/// replayed from the start) is the same. Each source is read up to `txnDocsMax` documents,
/// which makes the lowest `txnDocsMax` of the union the global lowest; a source cut off
/// earlier by the byte limit bounds the batch at its last read clock. Returns the batch and
/// each transform's next offset; `Transform::wake_ms` is set when a delayed document waits.
#[allow(clippy::type_complexity)]
fn read_sources(
    ctx: &TaskCtx,
    transforms: &mut [Transform],
) -> anyhow::Result<(Vec<SourceDoc>, Vec<(usize, usize, u64)>)> {
    let now_ms = ctx.store.clock.now_ms();
    let docs_max = ctx.txn_docs();
    // (clock ms, uuid, (transform, part), next offset, document)
    let mut ready: Vec<(u64, String, (usize, usize), u64, SourceDoc)> = Vec::new();
    let mut bound: Option<(u64, String)> = None;
    // Several journals are read as of one moment: the partitions there are and each journal
    // up to its head then, in one read transaction (documents appended later, to any journal,
    // even one that appears later, have later publish times and are read next time), so
    // merging by publish time never passes over one committed meanwhile.
    let txn = ctx.store.read()?;
    for t in transforms.iter_mut() {
        t.wake_ms = None;
        t.find_parts(ctx, &txn)?;
    }
    let n: usize = transforms.iter().map(|t| t.parts.len()).sum();
    let merged = n > 1
        || transforms
            .iter()
            .any(|t| !t.collection.partitions.is_empty());
    let mut heads = Vec::with_capacity(n);
    for p in transforms.iter().flat_map(|t| t.parts.iter()) {
        heads.push(match merged {
            true => Some(journal::head_in(&txn, &p.journal)?),
            false => None,
        });
    }
    drop(txn);
    let mut heads = heads.into_iter();
    for (i, t) in transforms.iter_mut().enumerate() {
        // The transform's journals (logical partitions) share its byte limit.
        let bytes_max = (ctx.limits.txn_bytes_max / t.parts.len().max(1)).max(1);
        for (part, p) in t.parts.iter().enumerate() {
            let (docs, cut_by_bytes) = ctx.journals.read_until(
                &ctx.store,
                &p.journal,
                p.offset,
                heads.next().flatten(),
                docs_max,
                bytes_max,
            )?;
            let mut last: Option<(u64, String)> = None;
            // Each document's clock and shuffle key, parsed on every core (a document's own
            // error is raised where the serial walk below reaches it).
            // A source with a `readSchema` of its own has each document checked against it.
            let parsed = crate::par::chunks(&docs, |_, chunk| {
                chunk
                    .iter()
                    .map(|d| {
                        if let Some(source) = &t.read_check {
                            source.check_read(&d.bytes).map_err(|e| {
                                anyhow::anyhow!("source {} offset {}: {e}", p.journal, d.offset)
                            })?;
                        }
                        clock_and_key(&d.bytes, &t.shuffle_key, t.key_tops.as_deref()).with_context(
                            || format!("source {} offset {} is not JSON", p.journal, d.offset),
                        )
                    })
                    .collect::<Vec<_>>()
            });
            let mut delayed = false;
            for (d, parsed) in docs.into_iter().zip(parsed.into_iter().flatten()) {
                let next = d.next_offset();
                let (uuid, key) = parsed?;
                let clock = uuid_ms(&uuid) + t.read_delay_ms;
                if clock > now_ms {
                    t.wake_ms = Some(t.wake_ms.map_or(clock, |w| w.min(clock)));
                    delayed = true;
                    break;
                }
                last = Some((clock, uuid.clone()));
                ready.push((
                    clock,
                    uuid,
                    (i, part),
                    next,
                    SourceDoc {
                        transform: i as u32,
                        key,
                        doc: d.bytes,
                    },
                ));
            }
            // A journal cut off by the byte limit (not waiting for a delay) bounds the batch
            // at its last read clock.
            if cut_by_bytes
                && !delayed
                && let Some(l) = last
            {
                bound = Some(match bound {
                    Some(b) if b <= l => b,
                    _ => l,
                });
            }
        }
    }
    // A stable sort: documents of one source with equal clocks keep their journal order.
    ready.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
    if let Some(b) = &bound {
        ready.retain(|r| (r.0, &r.1) <= (b.0, &b.1));
    }
    ready.truncate(docs_max);
    let mut positions = Vec::with_capacity(ready.len());
    let mut batch = Vec::with_capacity(ready.len());
    for (_, _, (i, part), next, doc) in ready {
        positions.push((i, part, next));
        batch.push(doc);
    }
    Ok((batch, positions))
}

/// If another component wrote this task's state and the new one exports `migrate`, migrate
/// all of the state before the task starts: every changed key and the new state digest are
/// committed in one transaction, so a crash mid-way migrates again from the old state.
fn migrate_state(
    ctx: &TaskCtx,
    plugin: &str,
    version: &crate::plugin::Version,
    component: &flow_engine::Component,
) -> anyhow::Result<()> {
    let marker = Store::state_digest_key(&ctx.name);
    let Some(from) = ctx
        .store
        .meta(&marker)?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
    else {
        return Ok(());
    };
    let engine = ctx.registry.engine().clone();
    if from == version.digest || !engine.exports_migrate(component) {
        return Ok(());
    }
    let mut migrator = Migrator::instantiate(
        &engine,
        component,
        ctx.registry.log_sink(plugin, &ctx.name),
        &ctx.limits.sandbox(),
    )?;
    let states = ctx.store.task_states(&ctx.name)?;
    let mut changed: Vec<(String, String)> = Vec::new();
    for chunk in states.chunks(ctx.limits.call_docs_max) {
        let batch: Vec<migrate_api::KeyedState> = chunk
            .iter()
            .map(|(key, state)| migrate_api::KeyedState {
                key: key.clone(),
                state: state.clone(),
            })
            .collect();
        let out = migrator
            .migrate(&from, &batch)
            .map_err(|e| anyhow::anyhow!("migrating state written by {from}: {e}"))?;
        for s in out {
            anyhow::ensure!(
                chunk.iter().any(|(k, _)| *k == s.key),
                "migrating state written by {from}: the plugin returned key {} which was not in the batch",
                s.key
            );
            serde_json::from_str::<Value>(&s.state).map_err(|e| {
                anyhow::anyhow!(
                    "migrating state written by {from}: new state of key {} is not JSON: {e}",
                    s.key
                )
            })?;
            changed.push((s.key, s.state));
        }
    }
    let (task, digest, n) = (ctx.name.clone(), version.digest.clone(), changed.len());
    ctx.store.write(move |txn| {
        let mut table = txn.open_table(TASK_STATE)?;
        for (key, state) in &changed {
            table.insert((task.as_str(), key.as_str()), state.as_bytes())?;
        }
        txn.open_table(crate::storage::META)?
            .insert(marker.as_str(), digest.as_bytes())?;
        Ok(())
    })?;
    ctx.registry.logs().push(
        plugin,
        Some(&ctx.name),
        flow_engine::LogLevel::Info,
        format!(
            "task {}: migrated the state of {n} of {} keys written by {from}",
            ctx.name,
            states.len()
        ),
    );
    Ok(())
}

/// The running plugin instance, and what it takes to start it again after a trap.
struct Plugin {
    name: String,
    version: crate::plugin::Version,
    component: flow_engine::Component,
    spec: derive_api::DerivationSpec,
    instance: Derivation,
}

impl Plugin {
    fn open(
        ctx: &TaskCtx,
        name: &str,
        version: crate::plugin::Version,
        component: flow_engine::Component,
        spec: derive_api::DerivationSpec,
    ) -> anyhow::Result<Self> {
        let instance = Self::start(ctx, name, &component, &spec)?;
        Ok(Plugin {
            name: name.to_string(),
            version,
            component,
            spec,
            instance,
        })
    }

    fn start(
        ctx: &TaskCtx,
        name: &str,
        component: &flow_engine::Component,
        spec: &derive_api::DerivationSpec,
    ) -> anyhow::Result<Derivation> {
        let engine = ctx.registry.engine().clone();
        let mut instance = Derivation::instantiate(
            &engine,
            component,
            ctx.registry.log_sink(name, &ctx.name),
            &ctx.limits.sandbox(),
        )?;
        instance.set_call_timer(ctx.call_timer());
        instance
            .open(spec)
            .map_err(|e| anyhow::anyhow!("open: {e}"))?;
        Ok(instance)
    }

    /// Replace a trapped instance with a fresh one (state lives in the host, so nothing of
    /// it is lost); the current transaction's state grant moves over.
    fn restart_if_poisoned(&mut self, ctx: &TaskCtx, state: &Writes) -> anyhow::Result<()> {
        if self.instance.poisoned() {
            self.instance = Self::start(ctx, &self.name, &self.component, &self.spec)?;
            self.instance
                .set_state(Some(Box::new(StateTxn::new(ctx, state))));
        }
        Ok(())
    }
}

/// The fast path: the batch in calls of `callDocsMax` until done or past `txnTimeMaxMs`,
/// then flush; any failure fails the batch. Returns the outputs and how many documents (a
/// prefix of the batch) were processed.
fn send_plugin_transform(
    ctx: &TaskCtx,
    collection: &BuiltCollection,
    transforms: &[Transform],
    plugin: &mut Plugin,
    batch: &[SourceDoc],
    writes: &Writes,
) -> anyhow::Result<(Outputs, usize)> {
    let started = std::time::Instant::now();
    let budget = std::time::Duration::from_millis(ctx.limits.txn_time_max_ms);
    let mut docs = Outputs::new(ctx, collection);
    let mut processed = 0;
    let mut packed = flow_engine::SourceBatch::default();
    while processed < batch.len() {
        if processed > 0 && started.elapsed() >= budget {
            break;
        }
        let n = pack(&mut packed, &batch[processed..], ctx.limits.call_docs_max)?;
        let chunk = &batch[processed..processed + n];
        let out = plugin
            .instance
            .transform(&packed)
            .map_err(|e| describe(&e, chunk, transforms))?;
        writes.lock().expect("state poisoned").check()?;
        docs.add(check_outputs(ctx, collection, out)?)?;
        processed += n;
    }
    let out = plugin
        .instance
        .flush()
        .map_err(|e| anyhow::anyhow!("flush: {e}"))?;
    writes.lock().expect("state poisoned").check()?;
    docs.add(check_outputs(ctx, collection, out)?)?;
    Ok((docs, processed))
}

/// The error path: one document per call, so a failure is pinned on its document; a failed
/// document's state writes are undone and a trapped instance is restarted. Returns the
/// outputs, the failures (batch index, error) and how many documents were processed: with
/// `first_failure`, up to the first failure (policy fail); always within the transaction's
/// time budget, since every failing call may take a whole call deadline (a plugin that spins
/// on every document must not hold a transaction, and a stop or publish waiting for it, for
/// documents x deadline).
#[allow(clippy::type_complexity)]
fn process_each(
    ctx: &TaskCtx,
    collection: &BuiltCollection,
    transforms: &[Transform],
    plugin: &mut Plugin,
    batch: &[SourceDoc],
    writes: &Writes,
    first_failure: bool,
) -> anyhow::Result<(Outputs, Vec<(usize, String)>, usize)> {
    let started = std::time::Instant::now();
    let budget = std::time::Duration::from_millis(ctx.limits.txn_time_max_ms);
    plugin.restart_if_poisoned(ctx, writes)?;
    let mut docs = Outputs::new(ctx, collection);
    let mut failures = Vec::new();
    let mut processed = 0;
    let mut packed = flow_engine::SourceBatch::default();
    for (i, doc) in batch.iter().enumerate() {
        if (first_failure && !failures.is_empty()) || (i > 0 && started.elapsed() >= budget) {
            break;
        }
        processed = i + 1;
        let before = writes.lock().expect("state poisoned").clone();
        let one = std::slice::from_ref(doc);
        let result = pack(&mut packed, one, 1)
            .and_then(|_| {
                plugin
                    .instance
                    .transform(&packed)
                    .map_err(|e| describe(&e, one, transforms))
            })
            .and_then(|out| {
                writes.lock().expect("state poisoned").check()?;
                check_outputs(ctx, collection, out).map_err(|e| {
                    let t = &transforms[doc.transform as usize];
                    anyhow::anyhow!(
                        "transform {} (source {}): {e:#}; document: {}",
                        t.name,
                        t.source,
                        task::truncate(&doc.text())
                    )
                })
            });
        match result {
            Ok(out) => docs.add(out)?,
            Err(e) => {
                *writes.lock().expect("state poisoned") = before;
                failures.push((i, format!("{e:#}")));
                plugin.restart_if_poisoned(ctx, writes)?;
            }
        }
    }
    // A flush failure cannot be pinned on a document: it fails the task.
    let out = plugin
        .instance
        .flush()
        .map_err(|e| anyhow::anyhow!("flush: {e}"))?;
    writes.lock().expect("state poisoned").check()?;
    docs.add(check_outputs(ctx, collection, out)?)?;
    Ok((docs, failures, processed))
}

/// A transaction's checked outputs, combined by the derived key as they come (one document
/// per key in memory, however many the plugin publishes), each kept with the JSON text it was
/// read from (so a document appended unchanged is not serialized again).
struct Outputs(crate::catalog::Combining);

impl Outputs {
    fn new(ctx: &TaskCtx, collection: &BuiltCollection) -> Self {
        Outputs(crate::catalog::Combining::new(collection, &ctx.limits))
    }

    fn add(&mut self, checked: Vec<crate::catalog::Prepared>) -> anyhow::Result<()> {
        for p in checked {
            self.0
                .add_prepared(p)
                .map_err(|e| anyhow::anyhow!("combining outputs: {e}"))?;
        }
        Ok(())
    }
}

/// Check one call's outputs: caps, then each is JSON and valid for the derived collection
/// (schema, size, key), on every core; the first that is not (in output order) is named.
fn check_outputs(
    ctx: &TaskCtx,
    collection: &BuiltCollection,
    out: flow_engine::Published,
) -> anyhow::Result<Vec<crate::catalog::Prepared>> {
    task::check_output_caps(ctx, "call", out.len(), out.bytes())?;
    // Each document its own buffer: a slice of the call's would keep the whole call's
    // output in memory for as long as one of its documents is combined.
    let text = out.text();
    let texts: Vec<bytes::Bytes> = out
        .ranges()
        .map(|r| bytes::Bytes::copy_from_slice(text[r].as_bytes()))
        .collect();
    let limits = &ctx.limits;
    crate::par::try_map(&texts, |i, text| {
        collection.prepare(limits, text).map_err(|e| {
            let quoted = task::truncate(&String::from_utf8_lossy(text));
            match e {
                crate::catalog::Unprepared::Json(e) => {
                    anyhow::anyhow!("output {} of the plugin is not JSON ({e}): {quoted}", i + 1)
                }
                crate::catalog::Unprepared::Invalid(e) => {
                    anyhow::anyhow!("output {} of the plugin {e}: {quoted}", i + 1)
                }
            }
        })
    })
}

/// Act on failed documents per the error policy: log and count them (skip), and for
/// deadLetter build the records to append with the transaction.
#[allow(clippy::type_complexity)]
fn failure_records(
    ctx: &TaskCtx,
    catalog: &Built,
    derive: &crate::catalog::BuiltDerivation,
    transforms: &[Transform],
    plugin: &Plugin,
    batch: &[SourceDoc],
    failures: Vec<(usize, String)>,
) -> anyhow::Result<Option<(String, Vec<Value>)>> {
    if failures.is_empty() {
        return Ok(None);
    }
    let n = failures.len() as u64;
    ctx.statuses.update(&ctx.name, |s| s.docs_failed += n);
    let mut records = Vec::new();
    for (i, error) in failures {
        let d = &batch[i];
        let t = &transforms[d.transform as usize];
        let document: Value = serde_json::from_slice(&d.doc).unwrap_or(Value::Null);
        ctx.registry.logs().push(
            &plugin.name,
            Some(&ctx.name),
            flow_engine::LogLevel::Warn,
            format!(
                "task {}: {} document of {} ({error}): {}",
                ctx.name,
                if derive.on_error == ErrorPolicy::Skip {
                    "skipped"
                } else {
                    "dead-lettered"
                },
                t.source,
                task::truncate(&d.text())
            ),
        );
        let mut record = serde_json::json!({
            "id": document.pointer("/_meta/uuid").cloned().unwrap_or(Value::Null),
            "task": ctx.name,
            "transform": t.name,
            "source": t.source,
            "plugin": plugin.name,
            "version": plugin.version.seq,
            "digest": plugin.version.digest,
            "error": error,
        });
        task::dead_letter_document(&ctx.limits, &mut record, &d.doc);
        records.push(record);
    }
    let Some(dl) = derive
        .dead_letters
        .as_ref()
        .filter(|_| derive.on_error == ErrorPolicy::DeadLetter)
    else {
        return Ok(None);
    };
    let c = catalog.collection(dl)?;
    for r in &records {
        c.check_document(&ctx.limits, r)
            .map_err(|e| anyhow::anyhow!("dead-letter record {e}"))?;
    }
    Ok(Some((dl.clone(), records)))
}

/// Name the transform and source document a plugin error points at.
fn describe(
    e: &flow_engine::CallError,
    chunk: &[SourceDoc],
    transforms: &[Transform],
) -> anyhow::Error {
    if let flow_engine::CallError::Plugin {
        document: Some(i), ..
    } = e
        && let Some(d) = chunk.get(*i as usize)
    {
        let t = &transforms[d.transform as usize];
        return anyhow::anyhow!(
            "transform {} (source {}): {e}; document: {}",
            t.name,
            t.source,
            task::truncate(&d.text())
        );
    }
    anyhow::anyhow!("transform: {e}")
}

#[cfg(test)]
mod test {
    use flow_doc::Pointer;

    fn clock_and_key(text: &[u8], key: &[Pointer]) -> anyhow::Result<(String, String)> {
        super::clock_and_key(text, key, flow_doc::partial::tops(key).as_deref())
    }

    #[test]
    fn clock_and_key_read_from_the_front_agree_with_a_full_parse() {
        let key = |ps: &[&str]| -> Vec<Pointer> {
            ps.iter().map(|p| Pointer::parse(p).unwrap()).collect()
        };
        let uuid = "0190a0b0-c0d0-7e00-8000-000000000001";
        let stored = format!(
            r#"{{"_meta":{{"uuid":"{uuid}","published":"P"}},"c":{{"id":7.0}},"x":[1,{{"y":"z"}}]}}"#
        );
        // The way documents were stamped before `_meta.uuid` came first.
        let older = format!(
            r#"{{"_meta":{{"published":"P","uuid":"{uuid}"}},"c":{{"id":7.0}},"x":[1,{{"y":"z"}}]}}"#
        );
        for text in [&stored, &older] {
            for (ptrs, expect) in [
                (key(&["/c/id"]), "[7]"),
                (key(&["/x/1/y", "/c"]), r#"["z",{"id":7.0}]"#),
                (key(&["/missing"]), "[null]"),
                (key(&[""]), ""),
            ] {
                let (u, k) = clock_and_key(text.as_bytes(), &ptrs).unwrap();
                assert_eq!(u, uuid, "{text}");
                if !expect.is_empty() {
                    assert_eq!(k, expect, "{text} {ptrs:?}");
                }
            }
        }
        assert!(
            clock_and_key(
                br#"{"_meta":{"uuid":"0190a0b0-c0d0-7e00-8000-000000000001"},"c":}"#,
                &key(&["/c"])
            )
            .is_err()
        );
    }
}
