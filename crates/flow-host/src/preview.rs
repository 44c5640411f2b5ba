//! `flow preview`: run one derivation of a catalog, unpublished, in a throwaway embedded host,
//! against fixture documents or a copy of a live host's collections, and show what it
//! publishes after each source transaction.
//!
//! The throwaway host holds only the derivation, its sources (as plain collections: a
//! source that is itself a derivation does not run, the input is written into it) and its
//! dead-letter collection. Each input transaction is ingested, the derivation runs to
//! completion (a `readDelay` completes by the test clock), and the documents it appended
//! since the last transaction are handed out as they were appended: combined within the
//! derivation's transaction by the derived collection's key and `reduce` annotations.

use crate::catalog::{Bundle, Catalog, SourceRef, TestDocs};
use crate::limits::Limits;
use crate::runtime::{Host, HostOptions};
use anyhow::Context;
use serde_json::Value;
use std::time::Duration;

/// How long one input transaction may take to go through the derivation.
const TIMEOUT: Duration = Duration::from_secs(120);

/// What a preview reports as it goes.
pub enum Event<'a> {
    /// A document the derivation appended (its `_meta` left out, but an `op` it published).
    Published(&'a Value),
    /// Input transaction `index` (of `collection`, `inputs` documents) went through, and
    /// the derivation appended `outputs` documents for it.
    Transaction {
        index: usize,
        collection: &'a str,
        inputs: usize,
        outputs: usize,
    },
}

/// What a preview ran.
#[derive(Debug, Default)]
pub struct Previewed {
    /// Input transactions and documents.
    pub transactions: usize,
    pub inputs: usize,
    /// Documents the derivation appended.
    pub outputs: usize,
}

/// Run derivation `name` of `bundle` over `input` (transactions of source documents, in
/// order), reporting each document it appended and each transaction done to `out`. Every
/// input document reaches the derivation as written: a transaction in which a key repeats
/// goes through in parts (each appended and derived before the next), so its documents are
/// not combined by the source's key first.
/// Errors name what is wrong: an unknown derivation, one run by a deployed plugin (not a
/// `module:` file), an input into a collection the derivation does not read, a document a
/// source refuses, a failing plugin.
pub fn run(
    bundle: &Bundle,
    name: &str,
    input: &[TestDocs],
    limits: &Limits,
    mut out: impl FnMut(Event<'_>),
) -> anyhow::Result<Previewed> {
    let only = derivation_alone(bundle, name)?;
    let sources = sources_of(bundle, name);
    for (i, t) in input.iter().enumerate() {
        if t.collection.name() == name {
            anyhow::bail!(
                "input transaction {} is for {name} itself: give input to its sources ({})",
                i + 1,
                sources.join(", ")
            );
        }
        if t.collection.partitions().is_some() {
            anyhow::bail!(
                "input transaction {}: `partitions` selects what a reader reads; input documents go to the partitions their values name",
                i + 1
            );
        }
        if !sources.iter().any(|s| s == t.collection.name()) {
            anyhow::bail!(
                "input transaction {} is for {}, which {name} does not read (its sources: {})",
                i + 1,
                t.collection,
                sources.join(", ")
            );
        }
    }
    let scratch = tempfile::tempdir().context("failed to create a scratch directory")?;
    let host = Host::open(
        HostOptions::new(scratch.path().join("preview"))
            .limits(limits.clone())
            .run_external_tasks(false),
    )?;
    let outcome = (|| -> anyhow::Result<Previewed> {
        host.publish(only.clone())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let catalog = host.catalog();
        let mut done = Previewed::default();
        // Where each journal of the derivation was read to (one per logical partition, if
        // it has them).
        let mut offsets: std::collections::BTreeMap<String, u64> = Default::default();
        let derived = catalog.collection(name)?;
        for (i, t) in input.iter().enumerate() {
            let at = || format!("input transaction {} ({})", i + 1, t.collection);
            let source = catalog.collection(t.collection.name())?;
            for part in without_repeated_keys(&t.documents, |d| source.key_of(d).to_string()) {
                host.ingest(t.collection.name(), part.to_vec())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
                host.wait_idle_advancing_clock(TIMEOUT)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
            }
            let mut outputs = 0;
            for journal in derived.journals(&host.store, None)? {
                let from = offsets.get(&journal).copied().unwrap_or(0);
                let to = host.for_each_document(&journal, from, |doc| {
                    out(Event::Published(&doc));
                    outputs += 1;
                    Ok(())
                })?;
                offsets.insert(journal, to);
            }
            out(Event::Transaction {
                index: i,
                collection: t.collection.name(),
                inputs: t.documents.len(),
                outputs,
            });
            done.transactions += 1;
            done.inputs += t.documents.len();
            done.outputs += outputs;
        }
        Ok(done)
    })();
    host.shutdown();
    outcome
}

/// `docs` in consecutive parts in none of which a key (by `key_of`) repeats.
fn without_repeated_keys(docs: &[Value], key_of: impl Fn(&Value) -> String) -> Vec<&[Value]> {
    let mut parts = Vec::new();
    let (mut start, mut seen) = (0, std::collections::HashSet::new());
    for (i, d) in docs.iter().enumerate() {
        if !seen.insert(key_of(d)) {
            parts.push(&docs[start..i]);
            start = i;
            seen.clear();
            seen.insert(key_of(d));
        }
    }
    if start < docs.len() {
        parts.push(&docs[start..]);
    }
    parts
}

/// The collections derivation `name` reads, itself aside (a derivation may read its own
/// output; the preview gives it no input).
pub fn sources_of(bundle: &Bundle, name: &str) -> Vec<String> {
    let mut out: Vec<String> = bundle
        .catalog
        .collections
        .get(name)
        .and_then(|c| c.derive.as_ref())
        .map(|d| {
            d.transforms
                .iter()
                .map(|t| t.source.name().to_string())
                .filter(|s| s != name)
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}

/// `bundle` cut down to derivation `name`, its sources (not derived) and its dead-letter
/// collection; no tests, captures or materializations.
fn derivation_alone(bundle: &Bundle, name: &str) -> anyhow::Result<Bundle> {
    let all = &bundle.catalog.collections;
    let derived: Vec<&str> = all
        .iter()
        .filter(|(_, c)| c.derive.is_some())
        .map(|(n, _)| n.as_str())
        .collect();
    let Some(def) = all.get(name).filter(|c| c.derive.is_some()) else {
        anyhow::bail!(
            "{} has no derivation {name} (its derivations: {})",
            bundle.source,
            if derived.is_empty() {
                "none".to_string()
            } else {
                derived.join(", ")
            }
        );
    };
    let derive = def.derive.as_ref().expect("a derivation");
    if let Some(plugin) = &derive.using.wasm.plugin {
        anyhow::bail!(
            "{name} runs deployed plugin {plugin}; a preview runs a derivation from its component file: write `using: {{ wasm: {{ module: path/to/component.wasm }} }}` to preview it"
        );
    }
    let mut catalog = Catalog::default();
    let mut keep = |n: &str| -> anyhow::Result<()> {
        let mut c = all
            .get(n)
            .with_context(|| format!("{name} reads {n}, which {} does not define", bundle.source))?
            .clone();
        c.derive = None;
        catalog.collections.insert(n.to_string(), c);
        Ok(())
    };
    for t in &derive.transforms {
        keep(t.source.name())?;
    }
    if let Some(dl) = derive
        .on_error
        .as_ref()
        .and_then(|e| e.collection.as_deref())
    {
        let mut c = all
            .get(dl)
            .with_context(|| {
                format!(
                    "{name}'s dead-letter collection {dl} is not defined in {}",
                    bundle.source
                )
            })?
            .clone();
        c.derive = None;
        catalog.collections.insert(dl.to_string(), c);
    }
    catalog.collections.insert(name.to_string(), def.clone());
    let modules = bundle
        .modules
        .iter()
        .filter(|(m, _)| derive.using.wasm.module.as_ref() == Some(*m))
        .map(|(m, b)| (m.clone(), b.clone()))
        .collect();
    Ok(Bundle {
        source: bundle.source.clone(),
        catalog,
        modules,
        origins: bundle.origins.clone(),
    })
}

/// Documents read from a live host's source collections, each with its `_meta` (its UUID
/// orders them by publish time), as input transactions: in publish-time order across
/// sources, each run of one source's documents one transaction of at most `txn_docs`. A
/// `_meta` is dropped but its `op` (a captured deletion stays one).
pub fn live_input(mut by_source: Vec<(String, Vec<Value>)>, txn_docs: usize) -> Vec<TestDocs> {
    let uuid = |d: &Value| {
        d.pointer("/_meta/uuid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut all: Vec<(String, String, Value)> = Vec::new();
    for (source, docs) in by_source.drain(..) {
        for d in docs {
            all.push((uuid(&d), source.clone(), d));
        }
    }
    // UUIDv7 text sorts by time; a stable sort keeps each source's own order.
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<TestDocs> = Vec::new();
    for (_, source, mut doc) in all {
        crate::catalog::keep_only_op(&mut doc);
        match out.last_mut() {
            Some(t) if t.collection.name() == source && t.documents.len() < txn_docs.max(1) => {
                t.documents.push(doc)
            }
            _ => out.push(TestDocs {
                description: None,
                collection: SourceRef::Name(source),
                documents: vec![doc],
            }),
        }
    }
    out
}
