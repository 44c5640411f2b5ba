//! The host: owns the database, journals, plugin registry and catalog, and supervises the
//! tasks (one thread each) that the catalog defines.

mod status;

pub use status::{SourceStatus, Statuses, TaskStatus};

use crate::catalog::{self, Built, Bundle, Catalog};
use crate::engine::{Engine, World};
use crate::fragment::Fragments;
use crate::journal::{Journals, ReadDoc};
use crate::limits::Limits;
use crate::plugin::Registry;
use crate::storage::Store;
use anyhow::Context;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Errors of host operations, with the stable code the API shows clients.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// The host cannot take this now (e.g. backpressure); the client should retry later.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What a task thread needs.
#[derive(Clone)]
pub struct TaskCtx {
    pub name: String,
    pub store: Arc<Store>,
    pub journals: Arc<Journals>,
    pub registry: Arc<Registry>,
    pub limits: Limits,
    pub stop: Arc<AtomicBool>,
    pub statuses: Statuses,
}

impl TaskCtx {
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleep until a journal grows (past generation `seen`), the task is stopped, or the idle
    /// re-check interval passes.
    pub fn wait_for_appends(&self, seen: u64) {
        if !self.stopping() {
            self.journals
                .wait(seen, Duration::from_millis(self.limits.idle_recheck_ms));
        }
    }

    /// Like `wait_for_appends`, but also wake at `wake_ms` (ms since the epoch), if sooner.
    pub fn wait_for_appends_until(&self, seen: u64, wake_ms: Option<u64>) {
        if self.stopping() {
            return;
        }
        let mut timeout = Duration::from_millis(self.limits.idle_recheck_ms);
        if let Some(wake) = wake_ms {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            timeout = timeout.min(Duration::from_millis(wake.saturating_sub(now) + 1));
        }
        self.journals.wait(seen, timeout);
    }

    /// If a journal in `outputs` refuses appends (its unsealed head is over its bound because
    /// the fragment store fails), show it in the task's status, sleep a moment and return
    /// true: the task retries instead of failing, and resumes once sealing catches up.
    pub fn backpressure(&self, outputs: &[String]) -> bool {
        let Some(fragments) = self.journals.fragments() else {
            return false;
        };
        let refused = outputs.iter().find_map(|j| fragments.check_append(j).err());
        match refused {
            Some(why) => {
                self.statuses.update(&self.name, |s| {
                    if s.state != "backpressure" {
                        tracing::warn!(task = %self.name, "pausing: {why}");
                    }
                    s.state = "backpressure";
                    s.last_error = Some(why);
                });
                std::thread::sleep(Duration::from_millis(100));
                true
            }
            None => {
                self.statuses.update(&self.name, |s| {
                    if s.state == "backpressure" {
                        s.state = "running";
                        s.last_error = None;
                    }
                });
                false
            }
        }
    }

    /// Record a failure in the task's status and its plugin's log.
    pub fn fail(&self, plugin: &str, error: &anyhow::Error) {
        let message = format!("{error:#}");
        tracing::error!(task = %self.name, "task failed: {message}");
        self.registry.logs().push(
            plugin,
            crate::engine::LogLevel::Error,
            format!("task {} failed: {message}", self.name),
        );
        self.statuses.update(&self.name, |s| {
            s.state = "failed";
            s.last_error = Some(message);
        });
    }
}

struct TaskHandle {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

/// Result of an ingest.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Ingested {
    pub collection: String,
    pub docs: usize,
    /// Documents appended after combining those of one key (by the schema's reductions).
    pub appended: usize,
    /// Journal offsets the documents were appended at.
    pub begin: u64,
    pub end: u64,
}

/// Result of a publish.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    pub collections: Vec<String>,
    pub derivations: Vec<String>,
    pub materializations: Vec<String>,
    /// Plugins deployed from the bundle's modules, as `name@seq`.
    pub deployed: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectionInfo {
    pub name: String,
    pub key: Vec<String>,
    pub derived: bool,
    /// Bytes written so far (the journal's write head).
    pub head: u64,
    /// How much of the journal is persisted to the fragment store, and any trouble doing so.
    pub fragments: crate::fragment::FragmentStatus,
}

pub struct Host {
    pub data_dir: PathBuf,
    pub store: Arc<Store>,
    pub journals: Arc<Journals>,
    pub fragments: Arc<Fragments>,
    pub registry: Arc<Registry>,
    pub limits: Limits,
    catalog: RwLock<Arc<Built>>,
    tasks: Mutex<BTreeMap<String, TaskHandle>>,
    statuses: Statuses,
    /// Serializes publishes, so two never interleave their checks and swaps.
    publishing: Mutex<()>,
    /// Catalog tests run without materializations: they would write to real destinations.
    run_materializations: bool,
}

const CATALOG_KEY: &str = "catalog";

impl Host {
    /// Open the host over `data_dir`, rebuild the persisted catalog and start its tasks.
    pub fn open(data_dir: &Path, limits: Limits) -> anyhow::Result<Arc<Self>> {
        Self::open_with(data_dir, limits, true)
    }

    pub fn open_with(
        data_dir: &Path,
        limits: Limits,
        run_materializations: bool,
    ) -> anyhow::Result<Arc<Self>> {
        Self::open_store(data_dir, limits, None, run_materializations)
    }

    /// Open the host with its fragments in the store at `store_url` (default
    /// `file://DATA_DIR/fragments`). Every collection's index is reconciled with the store
    /// before tasks start, so an empty data directory given an existing store reads its
    /// history.
    pub fn open_store(
        data_dir: &Path,
        limits: Limits,
        store_url: Option<&str>,
        run_materializations: bool,
    ) -> anyhow::Result<Arc<Self>> {
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
        let engine = Engine::new(limits.clone(), Some(data_dir.join("compiled")))?;
        let registry = Arc::new(Registry::new(store.clone(), engine));
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
        let host = Arc::new(Host {
            data_dir: data_dir.to_path_buf(),
            store,
            journals: Arc::new(Journals::with_fragments(fragments.clone())),
            fragments,
            registry,
            limits,
            catalog: RwLock::new(Arc::new(built)),
            tasks: Mutex::new(BTreeMap::new()),
            statuses: Statuses::default(),
            publishing: Mutex::new(()),
            run_materializations,
        });
        host.restart_tasks(&|_, _| true);
        Ok(host)
    }

    pub fn catalog(&self) -> Arc<Built> {
        self.catalog.read().expect("catalog lock poisoned").clone()
    }

    /// Validate a bundle, deploy its modules, merge it into the catalog and restart tasks.
    /// Nothing changes unless every check passes.
    pub fn publish(&self, bundle: Bundle) -> Result<Published, HostError> {
        let _guard = self.publishing.lock().expect("publish lock poisoned");
        let mut update = bundle.catalog.clone();

        // Modules become plugins named after their task.
        let mut modules: Vec<(String, World, Vec<u8>)> = Vec::new();
        let mut take_module =
            |task: &str, world: World, wasm: &mut catalog::WasmEndpoint| -> Result<(), HostError> {
                let Some(path) = wasm.module.take() else {
                    return Ok(());
                };
                let bytes = bundle.modules.get(&path).ok_or_else(|| {
                    HostError::Invalid(format!(
                        "{}: {task}: module {path} is not in the published bundle",
                        bundle.source
                    ))
                })?;
                modules.push((task.to_string(), world, bytes.clone()));
                wasm.plugin = Some(task.to_string());
                Ok(())
            };
        for (name, c) in update.collections.iter_mut() {
            if let Some(d) = c.derive.as_mut() {
                take_module(name, World::Derivation, &mut d.using.wasm)?;
            }
        }
        for (name, m) in update.materializations.iter_mut() {
            take_module(name, World::Materialization, &mut m.endpoint.wasm)?;
        }
        for (name, c) in update.captures.iter_mut() {
            take_module(name, World::Capture, &mut c.endpoint.wasm)?;
        }

        let merged = catalog::merge(&self.catalog().spec, &update);
        let built = catalog::build(&bundle.source, merged).map_err(HostError::Invalid)?;

        // Every module must be a component of the right world before anything is recorded.
        let engine = self.registry.engine();
        for (task, world, bytes) in &modules {
            let digest = format!(
                "sha256:{}",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
            );
            let component = engine.compile(&digest, bytes).map_err(|e| {
                HostError::Invalid(format!("{}: {task}: module: {e:#}", bundle.source))
            })?;
            let found = engine.world_of(&component).map_err(|e| {
                HostError::Invalid(format!("{}: {task}: module: {e}", bundle.source))
            })?;
            if found != *world {
                return Err(HostError::Invalid(format!(
                    "{}: {task}: module implements the {} world, but {task} needs a {} plugin",
                    bundle.source,
                    found.name(),
                    world.name()
                )));
            }
        }
        // Plugins referenced by name must exist, with the right world.
        let from_modules: Vec<&str> = modules.iter().map(|(t, _, _)| t.as_str()).collect();
        let mut wanted: Vec<(&str, &str, World)> = Vec::new();
        for c in built.collections.values() {
            if let Some(d) = &c.derive {
                wanted.push((&c.name, &d.plugin, World::Derivation));
            }
        }
        for m in built.materializations.values() {
            wanted.push((&m.name, &m.plugin, World::Materialization));
        }
        for (task, plugin, world) in wanted {
            if from_modules.contains(&plugin) {
                continue;
            }
            match self.registry.live(plugin)? {
                None => {
                    return Err(HostError::Invalid(format!(
                        "{}: {task}: no plugin named '{plugin}' is deployed (deploy it with `flow plugin deploy {plugin} FILE.wasm`)",
                        bundle.source
                    )));
                }
                Some(v) if v.world != world => {
                    return Err(HostError::Invalid(format!(
                        "{}: {task}: plugin '{plugin}' implements the {} world, but {task} needs a {} plugin",
                        bundle.source,
                        v.world.name(),
                        world.name()
                    )));
                }
                Some(_) => {}
            }
        }

        let mut deployed = Vec::new();
        for (task, _, bytes) in &modules {
            let v = self
                .registry
                .deploy(task, bytes)
                .map_err(|e| HostError::Invalid(format!("{task}: {e}")))?;
            deployed.push(format!("{}@{}", v.name, v.seq));
        }
        let spec_bytes =
            serde_json::to_vec(&built.spec).context("failed to serialize the catalog")?;
        self.store.write(move |txn| {
            txn.open_table(crate::storage::META)?
                .insert(CATALOG_KEY, spec_bytes.as_slice())?;
            Ok(())
        })?;

        let published = Published {
            collections: update.collections.keys().cloned().collect(),
            derivations: update
                .collections
                .iter()
                .filter(|(_, c)| c.derive.is_some())
                .map(|(n, _)| n.clone())
                .collect(),
            materializations: update.materializations.keys().cloned().collect(),
            deployed,
        };
        // New collections are reconciled with the store before any task reads them.
        self.fragments.configure(fragment_settings(&built));
        *self.catalog.write().expect("catalog lock poisoned") = Arc::new(built);
        self.restart_tasks(&|_, _| true);
        Ok(published)
    }

    /// Validate documents against the collection's schema, combine them by key (its `reduce`
    /// annotations), and append them in one durable transaction: all of them or, on any
    /// error, none.
    pub fn ingest(&self, collection: &str, docs: Vec<Value>) -> Result<Ingested, HostError> {
        let catalog = self.catalog();
        let c = catalog
            .collection(collection)
            .map_err(HostError::NotFound)?;
        for (i, doc) in docs.iter().enumerate() {
            check_document(&self.limits, c, doc)
                .map_err(|e| HostError::Invalid(format!("document {}: {e}", i + 1)))?;
        }
        let n = docs.len();
        let combined = combine_deltas(&self.limits, c, docs)
            .map_err(|e| HostError::Invalid(format!("collection {collection}: {e}")))?;
        let appended = combined.len();
        self.fragments
            .check_append(collection)
            .map_err(HostError::Unavailable)?;
        let (begin, end) = self.store.write({
            let collection = collection.to_string();
            move |txn| Journals::append(txn, &collection, &combined)
        })?;
        self.journals.notify();
        Ok(Ingested {
            collection: collection.to_string(),
            docs: n,
            appended,
            begin,
            end,
        })
    }

    /// Read documents of a collection from `offset`.
    pub fn read(
        &self,
        collection: &str,
        offset: u64,
        docs_max: usize,
    ) -> Result<Vec<ReadDoc>, HostError> {
        self.catalog()
            .collection(collection)
            .map_err(HostError::NotFound)?;
        Ok(self.journals.read(
            &self.store,
            collection,
            offset,
            docs_max,
            self.limits.txn_bytes_max,
        )?)
    }

    pub fn collections(&self) -> anyhow::Result<Vec<CollectionInfo>> {
        let catalog = self.catalog();
        let mut out = Vec::new();
        for c in catalog.collections.values() {
            out.push(CollectionInfo {
                name: c.name.clone(),
                key: c.key.iter().map(|p| p.to_string()).collect(),
                derived: c.derive.is_some(),
                head: Journals::head(&self.store, &c.name)?,
                fragments: self.fragments.status(&c.name)?,
            });
        }
        Ok(out)
    }

    pub fn task_statuses(&self) -> Vec<TaskStatus> {
        self.statuses.all()
    }

    pub fn task_status(&self, name: &str) -> Option<TaskStatus> {
        self.statuses.get(name)
    }

    /// Block until every running task has read everything written to its sources, or one has
    /// failed (returned as the error), or `timeout` passes.
    pub fn wait_idle(&self, timeout: Duration) -> Result<(), HostError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let statuses = self.statuses.all();
            if let Some(failed) = statuses.iter().find(|s| s.state == "failed") {
                return Err(HostError::Invalid(format!(
                    "task {} failed: {}",
                    failed.name,
                    failed.last_error.clone().unwrap_or_default()
                )));
            }
            let mut idle = statuses.iter().all(|s| s.state == "running");
            if idle {
                for s in &statuses {
                    for src in &s.sources {
                        if Journals::head(&self.store, &src.collection)? > src.offset {
                            idle = false;
                        }
                    }
                }
            }
            if idle {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(HostError::Invalid(format!(
                    "tasks did not catch up within {timeout:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// A new version of `plugin` is live (deployed or rolled back to): restart the tasks that
    /// run it. Each stops at its next transaction boundary and resumes from its checkpoint on
    /// the new version, with its state intact; other tasks are not touched.
    pub fn plugin_deployed(&self, plugin: &str) {
        self.restart_tasks(&|_, p| p == plugin);
    }

    /// Stop every task and wait for their threads.
    pub fn shutdown(&self) {
        self.stop_tasks(&|_| true);
        self.fragments.shutdown();
    }

    /// Stop the tasks `which` selects (by name) and wait for their threads: each finishes the
    /// transaction it is in, so a stop is always at a transaction boundary.
    fn stop_tasks(&self, which: &dyn Fn(&str) -> bool) {
        let stopping: Vec<(String, TaskHandle)> = {
            let mut tasks = self.tasks.lock().expect("tasks poisoned");
            let names: Vec<String> = tasks.keys().filter(|n| which(n)).cloned().collect();
            names
                .into_iter()
                .filter_map(|n| tasks.remove(&n).map(|t| (n, t)))
                .collect()
        };
        for (_, t) in &stopping {
            t.stop.store(true, Ordering::Relaxed);
        }
        self.journals.notify();
        for (name, t) in stopping {
            let _ = t.thread.join();
            self.statuses.update(&name, |s| {
                if s.state != "failed" {
                    s.state = "stopped"
                }
            });
        }
    }

    /// (Re)start the catalog's tasks that `which` selects by (task, plugin); tasks no longer
    /// in the catalog are stopped.
    fn restart_tasks(&self, which: &dyn Fn(&str, &str) -> bool) {
        let catalog = self.catalog();
        type Runner = Box<dyn FnOnce(TaskCtx) + Send>;
        let mut specs: Vec<(String, &'static str, String, Limits, Runner)> = Vec::new();
        for c in catalog.collections.values() {
            let Some(d) = &c.derive else { continue };
            let (catalog, collection) = (catalog.clone(), c.clone());
            specs.push((
                c.name.clone(),
                "derivation",
                d.plugin.clone(),
                d.limits
                    .as_ref()
                    .map(|l| l.apply(&self.limits))
                    .unwrap_or_else(|| self.limits.clone()),
                Box::new(move |ctx| crate::derive::run(ctx, catalog, collection)),
            ));
        }
        if self.run_materializations {
            for m in catalog.materializations.values() {
                let (catalog, m2) = (catalog.clone(), m.clone());
                specs.push((
                    m.name.clone(),
                    "materialization",
                    m.plugin.clone(),
                    m.limits
                        .as_ref()
                        .map(|l| l.apply(&self.limits))
                        .unwrap_or_else(|| self.limits.clone()),
                    Box::new(move |ctx| crate::materialize::run(ctx, catalog, m2)),
                ));
            }
        }
        specs.retain(|(name, _, plugin, _, _)| which(name, plugin));
        let known: Vec<String> = specs.iter().map(|s| s.0.clone()).collect();
        let in_catalog = |n: &str| {
            catalog
                .collections
                .get(n)
                .is_some_and(|c| c.derive.is_some())
                || (self.run_materializations && catalog.materializations.contains_key(n))
        };
        self.stop_tasks(&|n| known.iter().any(|k| k == n) || !in_catalog(n));
        for name in self.statuses.all().iter().map(|s| s.name.clone()) {
            if !in_catalog(&name) {
                self.statuses.remove(&name);
            }
        }

        let mut tasks = self.tasks.lock().expect("tasks poisoned");
        for (name, kind, plugin, limits, run) in specs {
            let stop = Arc::new(AtomicBool::new(false));
            let ctx = TaskCtx {
                name: name.clone(),
                store: self.store.clone(),
                journals: self.journals.clone(),
                registry: self.registry.clone(),
                limits,
                stop: stop.clone(),
                statuses: self.statuses.clone(),
            };
            self.statuses.set(TaskStatus {
                name: name.clone(),
                kind,
                state: "starting",
                plugin,
                plugin_version: None,
                last_error: None,
                transactions: 0,
                docs_in: 0,
                docs_out: 0,
                docs_failed: 0,
                sources: Vec::new(),
            });
            let thread = std::thread::Builder::new()
                .name(format!("task {name}"))
                .spawn(move || run(ctx))
                .expect("failed to spawn a task thread");
            tasks.insert(name, TaskHandle { stop, thread });
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Each collection's fragment settings.
fn fragment_settings(built: &Built) -> BTreeMap<String, crate::fragment::Settings> {
    built
        .collections
        .values()
        .map(|c| (c.name.clone(), c.fragments.clone()))
        .collect()
}

/// Check one document before it is appended to collection `c`.
pub fn check_document(
    limits: &Limits,
    c: &catalog::BuiltCollection,
    doc: &Value,
) -> Result<(), String> {
    if !doc.is_object() {
        return Err(format!("must be a JSON object, not {}", type_name(doc)));
    }
    let size = serde_json::to_vec(doc)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > limits.doc_bytes_max {
        return Err(format!(
            "is {size} bytes, over the limit of {} bytes",
            limits.doc_bytes_max
        ));
    }
    let mut without_meta;
    let doc = if doc.get("_meta").is_some() {
        // `_meta` is the host's: what a writer brought is replaced, so it is not validated.
        without_meta = doc.clone();
        without_meta.as_object_mut().map(|m| m.remove("_meta"));
        &without_meta
    } else {
        doc
    };
    c.schema
        .validate(doc)
        .map_err(|e| format!("does not match the schema of {}: {e}", c.name))
}

/// Combine documents of one transaction by key (associatively, by the collection's `reduce`
/// annotations), in key order: what is appended in their place. `_meta` is the host's and is
/// dropped; the append stamps a new one.
pub fn combine_deltas(
    limits: &Limits,
    c: &catalog::BuiltCollection,
    docs: Vec<Value>,
) -> Result<Vec<Value>, String> {
    let mut combiner = crate::doc::Combiner::new(vec![c.binding()], limits.combiner_spill_bytes);
    for mut doc in docs {
        if let Some(m) = doc.as_object_mut() {
            m.remove("_meta");
        }
        combiner.add(0, doc, false).map_err(|e| e.to_string())?;
    }
    let mut out = Vec::new();
    for d in combiner.drain(false).map_err(|e| e.to_string())? {
        out.push(d.map_err(|e| e.to_string())?.doc);
    }
    Ok(out)
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
