//! The host: owns the database, journals, plugin registry and catalog; takes ingests and
//! reads. `publish.rs` validates and swaps catalogs; `lifecycle.rs` deletes, pauses, resumes
//! and resets; `supervisor.rs` spawns, stops and restarts the task threads, through the table
//! of kinds in `task/`; `records.rs` keeps counters and plugin logs across restarts.

mod lifecycle;
mod publish;
mod records;
mod supervisor;

pub use crate::task::{SourceStatus, TaskState, TaskStatus};
pub use lifecycle::{Deleted, Reset};
pub use publish::Published;

use crate::catalog::{self, Built, BuiltCollection, Catalog};
use crate::journal::fragment::Fragments;
use crate::journal::{self, Journals, ReadDoc};
use crate::limits::Limits;
use crate::plugin::Registry;
use crate::storage::Store;
use crate::task::Statuses;
use anyhow::Context;
use flow_engine::Engine;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// One line of an NDJSON ingest body that holds a document: its line number and its text
/// (without the newline), not parsed yet.
pub struct IngestLine {
    pub line: usize,
    pub text: bytes::Bytes,
}

/// The lines of an NDJSON ingest body that hold documents, or why it is refused (naming the
/// line): blank lines are skipped, a line over `doc_bytes_max` is refused before it is
/// parsed, and a body without documents is refused.
pub fn ndjson_lines(
    collection: &str,
    body: &bytes::Bytes,
    doc_bytes_max: usize,
) -> Result<Vec<IngestLine>, String> {
    let mut lines = Vec::new();
    let mut begin = 0;
    // memchr: a byte-at-a-time split was a tenth of a 10,000-document request's time.
    let ends = memchr::memchr_iter(b'\n', body).chain(std::iter::once(body.len()));
    for (i, end) in ends.enumerate() {
        let (range, line) = (begin..end, &body[begin..end]);
        begin = end + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // A line longer than any accepted document is refused before it is parsed.
        if line.len() > doc_bytes_max {
            return Err(format!(
                "collection {collection}: line {}: a document of {} bytes, over the limit of {doc_bytes_max} bytes (docBytesMax)",
                i + 1,
                line.len()
            ));
        }
        lines.push(IngestLine {
            line: i + 1,
            text: body.slice(range),
        });
    }
    if lines.is_empty() {
        return Err(format!(
            "collection {collection}: the request has no documents"
        ));
    }
    Ok(lines)
}

/// Errors of host operations, with the stable code the API shows clients.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// Refused because of something else in the catalog (the message names it).
    #[error("{0}")]
    Conflict(String),
    /// The host cannot take this now (e.g. backpressure); the client should retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A wait ran out of time (e.g. `wait_idle`).
    #[error("{0}")]
    Timeout(String),
    /// The database cannot be written now (e.g. its disk is full); retry once it is fixed.
    #[error(transparent)]
    Storage(crate::storage::StorageFault),
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for HostError {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<crate::storage::StorageFault>() {
            Ok(f) => HostError::Storage(f),
            Err(e) => HostError::Internal(e),
        }
    }
}

/// Result of an ingest.
#[derive(Debug, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ingested {
    pub collection: String,
    pub docs: usize,
    /// Documents appended after combining those of one key (by the schema's reductions).
    pub appended: usize,
    /// Journal offsets the documents were appended at (of the first journal, for a
    /// collection with logical partitions: see `journals`).
    pub begin: u64,
    pub end: u64,
    /// For a collection with logical partitions: each journal appended to, and where.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub journals: Vec<AppendedTo>,
}

/// Where an ingest appended to one journal of a partitioned collection.
#[derive(Debug, Serialize, PartialEq, schemars::JsonSchema)]
pub struct AppendedTo {
    pub journal: String,
    pub begin: u64,
    pub end: u64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CollectionInfo {
    pub name: String,
    pub key: Vec<String>,
    pub derived: bool,
    /// Bytes written so far (the journal's write head; for a collection with logical
    /// partitions, the sum of its journals').
    pub head: u64,
    /// How much of the journal is persisted to the fragment store, and any trouble doing so
    /// (for a collection with logical partitions, its journals' counts summed, and the first
    /// trouble of one).
    pub fragments: crate::journal::fragment::FragmentStatus,
    /// Its logical partition fields, if it has them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<String>,
    /// For a collection with logical partitions: each journal (one per combination of values).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub journals: Vec<JournalInfo>,
}

/// One journal of a collection with logical partitions.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JournalInfo {
    /// `{collection}/{field}={value}...`
    pub name: String,
    pub head: u64,
    pub fragments: crate::journal::fragment::FragmentStatus,
}

pub struct Host {
    pub data_dir: PathBuf,
    pub store: Arc<Store>,
    pub journals: Arc<Journals>,
    pub fragments: Arc<Fragments>,
    pub registry: Arc<Registry>,
    pub limits: Limits,
    catalog: RwLock<Arc<Built>>,
    tasks: Mutex<BTreeMap<String, supervisor::TaskHandle>>,
    statuses: Statuses,
    /// Counters and last failures saved by an earlier run of the host, for tasks that have
    /// not started since (taken by `restart_tasks`).
    baseline: Mutex<BTreeMap<String, crate::task::Record>>,
    /// Every task's histograms of transaction and plugin call time.
    timings: crate::task::AllTimings,
    /// Saves task records and plugin logs.
    keeper: records::Keeper,
    /// Serializes publishes, so two never interleave their checks and swaps.
    publishing: Mutex<()>,
    /// Whether tasks of kinds that act outside Flow run (`Kind::external`): catalog tests
    /// run without them, since they would write to real destinations.
    run_external_tasks: bool,
}

/// What `Host::wait_idle_with` waits for.
#[derive(Clone, Copy)]
enum Idle {
    /// Every task caught up.
    Caught,
    /// Every task caught up or waiting for time alone.
    Quiet,
    /// Every task caught up, moving the clock forward while all that is left waits for it.
    Advance,
}

/// How to open a host.
#[derive(Clone, Debug)]
pub struct HostOptions {
    /// Where the redb database, compiled plugins and (by default) fragments live.
    pub data_dir: PathBuf,
    pub limits: Limits,
    /// The fragment store (`file://`, `s3://`, `memory://`); default `file://DATA_DIR/fragments`.
    /// An empty data directory given an existing store reads its history.
    pub store_url: Option<String>,
    /// Run materializations (and every kind that acts outside Flow); default true.
    pub run_external_tasks: bool,
}

impl HostOptions {
    /// Default limits, fragments under `data_dir`, every task kind runs.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        HostOptions {
            data_dir: data_dir.into(),
            limits: Limits::default(),
            store_url: None,
            run_external_tasks: true,
        }
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn store_url(mut self, url: Option<String>) -> Self {
        self.store_url = url;
        self
    }

    pub fn run_external_tasks(mut self, run: bool) -> Self {
        self.run_external_tasks = run;
        self
    }
}

const CATALOG_KEY: &str = "catalog";

impl Host {
    /// Open the host as `options` say: reconcile every collection's fragment index with the
    /// store, rebuild the persisted catalog and start its tasks.
    pub fn open(options: HostOptions) -> anyhow::Result<Arc<Self>> {
        let HostOptions {
            data_dir,
            limits,
            store_url,
            run_external_tasks,
        } = options;
        let data_dir = data_dir.as_path();
        let store_url = store_url.as_deref();
        limits
            .check()
            .map_err(|e| anyhow::anyhow!("invalid limits: {e}"))?;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("failed to create data dir {}", data_dir.display()))?;
        let store = Arc::new(Store::open(&data_dir.join("flow.redb"))?);
        let default_url;
        let store_url = match store_url {
            Some(u) => u,
            None => {
                let dir = std::path::absolute(data_dir.join("fragments"))
                    .context("failed to resolve the data dir")?;
                default_url = format!("file://{}", dir.display());
                &default_url
            }
        };
        let fragments = Fragments::open(store_url, store.clone(), limits.journal_head_bytes_max)?;
        let engine = Engine::new(Some(data_dir.join("compiled")))?;
        let registry = Arc::new(Registry::new(store.clone(), engine, &limits));
        let built = match store.meta(CATALOG_KEY)? {
            None => Built::default(),
            Some(bytes) => {
                let spec: Catalog = serde_json::from_slice(&bytes)
                    .context("failed to parse the persisted catalog")?;
                catalog::build("persisted catalog", spec).map_err(|e| anyhow::anyhow!("{e}"))?
            }
        };
        fragments.configure(fragment_settings(&built));
        fragments.start()?;
        let built = Arc::new(built);
        // What operators read after the fact: counters of the catalog's tasks (records of
        // tasks no longer in it are dropped) and plugin logs.
        let mut baseline = crate::task::load_records(&store)?;
        let stale: Vec<String> = baseline
            .keys()
            .filter(|t| !built_has_task(&built, t))
            .cloned()
            .collect();
        if !stale.is_empty() {
            store.write(move |txn| {
                let mut t = txn.open_table(crate::storage::TASK_RECORDS)?;
                for name in &stale {
                    t.remove(name.as_str())?;
                }
                Ok(())
            })?;
            baseline.retain(|t, _| built_has_task(&built, t));
        }
        registry.logs().restore(crate::plugin::load_logs(&store)?);
        let statuses = Statuses::default();
        let keeper = records::Keeper::start(
            store.clone(),
            statuses.clone(),
            registry.clone(),
            baseline.clone(),
        )?;
        let host = Arc::new(Host {
            data_dir: data_dir.to_path_buf(),
            store,
            journals: Arc::new(Journals::with_fragments(fragments.clone())),
            fragments,
            registry,
            limits,
            catalog: RwLock::new(built),
            tasks: Mutex::new(BTreeMap::new()),
            statuses,
            baseline: Mutex::new(baseline),
            timings: Default::default(),
            keeper,
            publishing: Mutex::new(()),
            run_external_tasks,
        });
        host.restart_tasks(&|_, _| true);
        Ok(host)
    }

    pub fn catalog(&self) -> Arc<Built> {
        self.catalog.read().expect("catalog lock poisoned").clone()
    }

    /// Every document of `journal` from offset `from` to its end now, parsed, in order, to
    /// `each`: without its `_meta` but its `op` (a captured change: `d`, a deletion).
    /// Returns the offset after the last.
    pub fn for_each_document(
        &self,
        journal: &str,
        from: u64,
        mut each: impl FnMut(Value) -> anyhow::Result<()>,
    ) -> anyhow::Result<u64> {
        self.for_each_stored(journal, from, |_, doc| each(doc))
    }

    /// `for_each_document`, each document with its `_meta/uuid` (its publish time).
    fn for_each_stored(
        &self,
        journal: &str,
        mut from: u64,
        mut each: impl FnMut(&str, Value) -> anyhow::Result<()>,
    ) -> anyhow::Result<u64> {
        loop {
            let docs = self.journals.read(
                &self.store,
                journal,
                from,
                10_000,
                self.limits.txn_bytes_max,
            )?;
            let Some(last) = docs.last() else {
                return Ok(from);
            };
            from = last.next_offset();
            for d in docs {
                let mut doc: Value = serde_json::from_slice(&d.bytes)?;
                crate::catalog::keep_only_op(&mut doc);
                let uuid = journal::uuid_of(&d.bytes).with_context(|| {
                    format!("{journal} offset {} has no _meta/uuid in front", d.offset)
                })?;
                each(uuid, doc)?;
            }
        }
    }

    /// Every document of `collection` (of the logical partitions `selector` admits, if it
    /// has partitions), as `for_each_document` hands them out: one journal in its order, or
    /// several merged in publish-time order (`_meta/uuid`, a UUIDv7).
    pub fn for_each_document_of(
        &self,
        collection: &catalog::BuiltCollection,
        selector: Option<&catalog::BuiltSelector>,
        mut each: impl FnMut(Value) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let journals = collection.journals(&self.store, selector)?;
        if let [journal] = journals.as_slice() {
            self.for_each_document(journal, 0, each)?;
            return Ok(());
        }
        let mut all: Vec<(String, Value)> = Vec::new();
        for journal in &journals {
            self.for_each_stored(journal, 0, |uuid, doc| {
                all.push((uuid.to_string(), doc));
                Ok(())
            })?;
        }
        // Hyphenated lower-case UUIDv7s sort as their times do; a stable sort keeps each
        // journal's order.
        all.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, doc) in all {
            each(doc)?;
        }
        Ok(())
    }

    /// Validate documents against the collection's schema, combine them by key (its `reduce`
    /// annotations), and append them in one durable transaction: all of them or, on any
    /// error, none.
    pub fn ingest(&self, collection: &str, docs: Vec<Value>) -> Result<Ingested, HostError> {
        self.ingest_checked(collection, docs, None, |c, i, doc| {
            c.check_document(&self.limits, doc)
                .map_err(|e| format!("document {}: {e}", i + 1))
        })
    }

    /// `ingest` of NDJSON lines (`ndjson_lines`): parsed and checked in one pass on every
    /// core (an error names the first failing line), each document once, by the size of its
    /// text; a document is appended as the text it came as unless combining changed it.
    pub fn ingest_lines(
        &self,
        collection: &str,
        lines: Vec<IngestLine>,
    ) -> Result<Ingested, HostError> {
        let catalog = self.catalog();
        let c = catalog
            .collection(collection)
            .map_err(|e| HostError::NotFound(e.to_string()))?;
        let checked = crate::par::try_map(&lines, |_, l| {
            let at = |e: String| format!("collection {collection}: line {}: {e}", l.line);
            c.prepare(&self.limits, &l.text).map_err(|e| match e {
                catalog::Unprepared::Json(e) => at(format!("invalid JSON: {e}")),
                catalog::Unprepared::Invalid(e) => at(format!("document {e}")),
            })
        })
        .map_err(HostError::Invalid)?;
        let n = checked.len();
        let mut combining = catalog::Combining::new(c, &self.limits);
        for item in checked {
            combining
                .add_prepared(item)
                .map_err(|e| HostError::Invalid(format!("collection {collection}: {e}")))?;
        }
        self.append(collection, n, combining)
    }

    /// Check every document (`check`, by index), combine them by key and append them in one
    /// durable transaction. A collection without `reduce` annotations keeps the last
    /// document of each key as it came (and its text, if given); one with annotations
    /// reduces them in a combiner.
    fn ingest_checked(
        &self,
        collection: &str,
        docs: Vec<Value>,
        texts: Option<Vec<bytes::Bytes>>,
        check: impl Fn(&BuiltCollection, usize, &Value) -> Result<(), String> + Sync,
    ) -> Result<Ingested, HostError> {
        let catalog = self.catalog();
        let c = catalog
            .collection(collection)
            .map_err(|e| HostError::NotFound(e.to_string()))?;
        // On every core; the first failing document (in order) is the one reported.
        crate::par::try_map(&docs, |i, doc| check(c, i, doc)).map_err(HostError::Invalid)?;
        let n = docs.len();
        let mut combining = catalog::Combining::new(c, &self.limits);
        let mut texts = texts.map(Vec::into_iter);
        for doc in docs {
            combining
                .add(doc, texts.as_mut().and_then(Iterator::next))
                .map_err(|e| HostError::Invalid(format!("collection {collection}: {e}")))?;
        }
        self.append(collection, n, combining)
    }

    /// Append what `combining` kept of `n` checked documents in one durable transaction.
    fn append(
        &self,
        collection: &str,
        n: usize,
        combining: catalog::Combining,
    ) -> Result<Ingested, HostError> {
        let encoded = combining
            .finish()
            .map_err(|e| HostError::Invalid(format!("collection {collection}: {e}")))?;
        let appended = encoded.len();
        let catalog = self.catalog();
        let c = catalog
            .collection(collection)
            .map_err(|e| HostError::NotFound(e.to_string()))?;
        let partitioned = !c.partitions.is_empty();
        let groups = c
            .by_journal(encoded)
            .map_err(|e| HostError::Invalid(format!("collection {collection}: {e}")))?;
        for (journal, _) in &groups {
            self.fragments
                .check_append(journal)
                .map_err(HostError::Unavailable)?;
        }
        let mut ranges = self.store.write({
            let clock = self.store.clock.clone();
            move |txn| {
                let mut ranges = Vec::new();
                for (journal, docs) in &groups {
                    let (begin, end) = journal::append_encoded(txn, journal, docs, &clock)?;
                    ranges.push(AppendedTo {
                        journal: journal.clone(),
                        begin,
                        end,
                    });
                }
                Ok(ranges)
            }
        })?;
        let (begin, end) = ranges.first().map_or((0, 0), |r| (r.begin, r.end));
        if !partitioned {
            ranges.clear();
        }
        self.journals.notify();
        Ok(Ingested {
            collection: collection.to_string(),
            docs: n,
            appended,
            begin,
            end,
            journals: ranges,
        })
    }

    /// The journals of `collection` a reader asking for `journal` reads: that one (which
    /// must be the collection's, or one of its logical partitions'), or without it, the
    /// collection's own, or every partition's (in name order; none yet for a collection with
    /// partitions that has no documents).
    pub fn journals_to_read(
        &self,
        collection: &str,
        journal: Option<&str>,
    ) -> Result<Vec<String>, HostError> {
        let catalog = self.catalog();
        let c = catalog
            .collection(collection)
            .map_err(|e| HostError::NotFound(e.to_string()))?;
        let Some(journal) = journal else {
            return Ok(c.journals(&self.store, None)?);
        };
        if !c.owns_journal(journal) {
            return Err(HostError::NotFound(format!(
                "journal {journal} is not one of collection {collection}'s{}",
                if c.partitions.is_empty() {
                    " (it has one journal, named as it is)".to_string()
                } else {
                    format!(
                        " (one per value of its partition fields, e.g. {collection}/FIELD=VALUE)"
                    )
                }
            )));
        }
        Ok(vec![journal.to_string()])
    }

    /// Read documents of a journal of `collection` (its own, or a logical partition's) from
    /// `offset`.
    pub fn read(
        &self,
        collection: &str,
        journal: &str,
        offset: u64,
        docs_max: usize,
    ) -> Result<Vec<ReadDoc>, HostError> {
        self.journals_to_read(collection, Some(journal))?;
        Ok(self.journals.read(
            &self.store,
            journal,
            offset,
            docs_max,
            self.limits.txn_bytes_max,
        )?)
    }

    pub fn collections(&self) -> anyhow::Result<Vec<CollectionInfo>> {
        let catalog = self.catalog();
        let mut out = Vec::new();
        for c in catalog.collections.values() {
            let mut journals = Vec::new();
            if !c.partitions.is_empty() {
                for name in c.journals(&self.store, None)? {
                    journals.push(JournalInfo {
                        head: journal::head(&self.store, &name)?,
                        fragments: self.fragments.status(&name)?,
                        name,
                    });
                }
            }
            let (head, fragments) = match c.partitions.is_empty() {
                true => (
                    journal::head(&self.store, &c.name)?,
                    self.fragments.status(&c.name)?,
                ),
                false => {
                    // A failed listing of the collection's directories is its own trouble.
                    let own = self.fragments.status(&c.name)?;
                    let mut all = crate::journal::fragment::FragmentStatus {
                        failures: own.failures,
                        last_error: own.last_error,
                        retry_in_ms: own.retry_in_ms,
                        skipped: own.skipped,
                        ..Default::default()
                    };
                    for j in &journals {
                        let f = &j.fragments;
                        all.fragments += f.fragments;
                        all.persisted_through += f.persisted_through;
                        all.unsealed_bytes += f.unsealed_bytes;
                        if all.last_error.is_none() && f.last_error.is_some() {
                            all.failures = f.failures;
                            all.last_error = f.last_error.clone();
                            all.retry_in_ms = f.retry_in_ms;
                        }
                        all.skipped.extend(f.skipped.iter().cloned());
                    }
                    (journals.iter().map(|j| j.head).sum(), all)
                }
            };
            out.push(CollectionInfo {
                name: c.name.clone(),
                key: c.key.iter().map(|p| p.to_string()).collect(),
                derived: c.derive.is_some(),
                head,
                fragments,
                partitions: c.partitions.iter().map(|(f, _)| f.clone()).collect(),
                journals,
            });
        }
        Ok(out)
    }

    /// Every task's histograms of transaction and plugin call time, by name.
    pub fn task_timings(&self) -> Vec<(String, Arc<crate::task::Timings>)> {
        self.timings.all()
    }

    /// Every task's status (each source's lag in bytes; see `task_reports` for documents and
    /// time).
    pub fn task_statuses(&self) -> Vec<TaskStatus> {
        self.statuses.all()
    }

    pub fn task_status(&self, name: &str) -> Option<TaskStatus> {
        self.statuses.get(name)
    }

    /// Every task's status with each source's lag in documents and time too, as the API
    /// shows it: counting costs a scan of up to 1 MiB per source, so loops that poll a
    /// status use `task_statuses`.
    pub fn task_reports(&self) -> Vec<TaskStatus> {
        let mut all = self.statuses.all();
        for s in &mut all {
            self.fill_lag(s);
        }
        all
    }

    /// `task_status` with lag in documents and time (`task_reports`).
    pub fn task_report(&self, name: &str) -> Option<TaskStatus> {
        let mut s = self.statuses.get(name)?;
        self.fill_lag(&mut s);
        Some(s)
    }

    /// Count what each source of `status` has not read yet (`journal::lag`).
    fn fill_lag(&self, status: &mut TaskStatus) {
        let now = self.store.clock.now_ms();
        for src in &mut status.sources {
            if let Ok(head) = journal::head(&self.store, &src.collection) {
                src.lag_bytes = head.saturating_sub(src.offset);
            }
            match journal::lag(&self.store, &src.collection, src.offset) {
                Ok(lag) => {
                    src.lag_docs = lag.docs;
                    src.lag_docs_estimated = lag.estimated;
                    src.lag_seconds = match (lag.docs, lag.oldest_ms) {
                        (0, _) => Some(0.0),
                        (_, Some(at)) => Some(now.saturating_sub(at) as f64 / 1000.0),
                        (_, None) => None,
                    };
                }
                Err(e) => tracing::debug!("failed to count the lag of {}: {e:#}", src.collection),
            }
        }
    }

    /// Block until every running task has read everything written to its sources, or one has
    /// failed (returned as the error), or `timeout` passes.
    pub fn wait_idle(&self, timeout: Duration) -> Result<(), HostError> {
        self.wait_idle_with(timeout, Idle::Caught)
    }

    /// For a catalog test's driver after an ingest: wait until every task has done what it
    /// can without time passing: each is caught up, or waits for time alone (its next source
    /// documents held back by `readDelay`, nothing appended since it began to wait).
    pub fn wait_quiet(&self, timeout: Duration) -> Result<(), HostError> {
        self.wait_idle_with(timeout, Idle::Quiet)
    }

    /// `wait_idle` with a test clock, for a catalog test's driver before a verify: while
    /// every task still behind waits for time alone, the host's clock moves forward to the
    /// first of those times instead of waiting for it.
    pub fn wait_idle_advancing_clock(&self, timeout: Duration) -> Result<(), HostError> {
        self.wait_idle_with(timeout, Idle::Advance)
    }

    fn wait_idle_with(&self, timeout: Duration, until: Idle) -> Result<(), HostError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let generation = self.journals.generation();
            let statuses = self.statuses.all();
            if let Some(failed) = statuses.iter().find(|s| s.state == TaskState::Failed) {
                return Err(HostError::Invalid(format!(
                    "task {} failed: {}",
                    failed.name,
                    failed.last_error.clone().unwrap_or_default()
                )));
            }
            // A paused task is behind on purpose: it is not waited for.
            let statuses: Vec<_> = statuses
                .into_iter()
                .filter(|s| s.state != TaskState::Paused)
                .collect();
            if statuses.iter().all(|s| s.state == TaskState::Running) {
                // The first time a task behind waits for, if every task behind waits for one.
                let mut behind = false;
                let mut wake: Option<u64> = Some(u64::MAX);
                for s in &statuses {
                    // It has not read since the last append: it may have work there.
                    let mut lagging = s.read_generation.is_some_and(|g| g < generation);
                    for src in &s.sources {
                        if journal::head(&self.store, &src.collection)? > src.offset {
                            lagging = true;
                        }
                    }
                    if lagging {
                        behind = true;
                        wake = match (wake, s.wake_at_ms, s.waiting_since) {
                            (Some(w), Some(at), Some(seen)) if seen == generation => {
                                Some(w.min(at))
                            }
                            _ => None,
                        };
                    }
                }
                // Nothing appended while the statuses and heads were read.
                let still = self.journals.generation() == generation;
                match (behind, until, wake) {
                    (false, _, _) if still => return Ok(()),
                    (true, Idle::Quiet, Some(_)) if still => return Ok(()),
                    (true, Idle::Advance, Some(at)) if still => {
                        self.store.clock.advance_to_ms(at);
                        self.journals.notify();
                    }
                    _ => {}
                }
            }
            if std::time::Instant::now() > deadline {
                return Err(HostError::Timeout(format!(
                    "tasks did not catch up within {timeout:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Whether `task` is a task of `built` (of any kind).
fn built_has_task(built: &Arc<Built>, task: &str) -> bool {
    crate::task::KINDS
        .iter()
        .any(|k| (k.tasks)(built).iter().any(|d| d.name == task))
}

/// Each collection's fragment settings.
fn fragment_settings(built: &Built) -> BTreeMap<String, crate::journal::fragment::Settings> {
    built
        .collections
        .values()
        .map(|c| {
            let mut settings = c.fragments.clone();
            settings.partitioned = !c.partitions.is_empty();
            (c.name.clone(), settings)
        })
        .collect()
}
