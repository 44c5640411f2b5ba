//! Task status as the API and CLI show it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    pub name: String,
    /// The kind of task: `capture`, `derivation` or `materialization` (`Kind::name`).
    pub kind: &'static str,
    pub state: TaskState,
    pub plugin: String,
    /// Sequence of the plugin version running, once started.
    pub plugin_version: Option<u64>,
    pub last_error: Option<String>,
    /// The last time the task failed or lost its destination, kept after it runs again (and
    /// across restarts): what an operator looks for after the fact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
    /// Counters are the task's since it was created (or reset), across restarts and
    /// publishes: saved at most a second apart and at shutdown.
    pub transactions: u64,
    pub docs_in: u64,
    pub docs_out: u64,
    /// Source documents that failed and were skipped or dead-lettered (error policy).
    pub docs_failed: u64,
    pub sources: Vec<SourceStatus>,
    /// Captures: the documents captured per binding, since the task started.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub captured: Vec<CapturedStatus>,
    /// Captures: when the connector's checkpoint was last committed, in milliseconds since
    /// the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_at_ms: Option<u64>,
    /// Captures whose source tells its time (`progress.source-time`): how far behind its
    /// source the capture was at its last committed poll, in milliseconds (0 once a poll
    /// found the source idle).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<u64>,
    /// While `retrying`: when the next attempt is, in milliseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at_ms: Option<u64>,
    /// Derivations whose next source documents are held back by `readDelay`: when the first
    /// is ready, in milliseconds since the Unix epoch (by the host's clock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wake_at_ms: Option<u64>,
    /// With `wake_at_ms`: the journals' generation the task had seen when it began to wait
    /// (an append since may give it work that does not wait).
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) waiting_since: Option<u64>,
    /// For a task that reads journals: the journals' generation as of which its last
    /// transaction read them. Until it reads past an append, `Host::wait_idle` counts it
    /// behind: the append may be to a journal it does not show among its sources yet (a new
    /// logical partition).
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) read_generation: Option<u64>,
}

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TaskState {
    /// Spawned; resolving its plugin, opening it, restoring checkpoints.
    Starting,
    /// Reading and committing transactions (its sources are reported).
    Running,
    /// Held back: an output journal refuses appends until sealing catches up (`last_error`
    /// says why).
    Backpressure,
    /// Its destination is unreachable (`last_error` says why): it tries again at
    /// `retryAtMs`, backing off, and resumes from its checkpoint once the destination is back.
    Retrying,
    /// Stopped by an error (`last_error`); a publish or deploy restarts it.
    Failed,
    /// Stopped at a transaction boundary.
    Stopped,
    /// Paused by an operator (`flow tasks pause`): not running until resumed, across
    /// restarts and publishes. Its sources keep growing; it catches up once resumed.
    Paused,
}

impl TaskState {
    /// The name the API and CLI show.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Backpressure => "backpressure",
            TaskState::Retrying => "retrying",
            TaskState::Failed => "failed",
            TaskState::Stopped => "stopped",
            TaskState::Paused => "paused",
        }
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for TaskState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// The transform (derivations) or binding index (materializations).
    pub name: String,
    pub collection: String,
    /// Next offset this task reads.
    pub offset: u64,
    /// Bytes written to the source that this task has not read yet.
    pub lag_bytes: u64,
    /// Documents written to the source that this task has not read yet (filled in when a
    /// status is asked for).
    pub lag_docs: u64,
    /// Whether `lag_docs` is estimated (part of the unread range is in fragments already).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub lag_docs_estimated: bool,
    /// How long ago the first unread document was appended, in seconds (0 when caught up);
    /// none when it is in fragments already.
    pub lag_seconds: Option<f64>,
}

/// A failure of a task, and when it was.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub message: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// What of a task's status outlives its runs and the host's: saved in `TASK_RECORDS`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub transactions: u64,
    pub docs_in: u64,
    pub docs_out: u64,
    pub docs_failed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
    /// Where it read, as last reported: what a paused task shows (its lag grows from there).
    #[serde(default)]
    pub sources: Vec<SavedSource>,
}

/// A source of a task, as a record keeps it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SavedSource {
    pub name: String,
    pub collection: String,
    pub offset: u64,
}

impl TaskStatus {
    /// What of this status is kept across runs.
    pub fn record(&self) -> Record {
        Record {
            transactions: self.transactions,
            docs_in: self.docs_in,
            docs_out: self.docs_out,
            docs_failed: self.docs_failed,
            last_failure: self.last_failure.clone(),
            sources: self
                .sources
                .iter()
                .map(|s| SavedSource {
                    name: s.name.clone(),
                    collection: s.collection.clone(),
                    offset: s.offset,
                })
                .collect(),
        }
    }

    /// Take up the counters and last failure of an earlier run (or of the record saved).
    pub fn carry(&mut self, from: &Record) {
        self.transactions = from.transactions;
        self.docs_in = from.docs_in;
        self.docs_out = from.docs_out;
        self.docs_failed = from.docs_failed;
        self.last_failure = from.last_failure.clone();
        // Until the run reports its own (a paused task never does).
        if self.sources.is_empty() {
            self.sources = from
                .sources
                .iter()
                .map(|s| SourceStatus {
                    name: s.name.clone(),
                    collection: s.collection.clone(),
                    offset: s.offset,
                    lag_bytes: 0,
                    lag_docs: 0,
                    lag_docs_estimated: false,
                    lag_seconds: None,
                })
                .collect();
        }
    }
}

/// Every task's saved record.
pub fn load_records(store: &crate::storage::Store) -> anyhow::Result<BTreeMap<String, Record>> {
    use redb::ReadableTable;
    let txn = store.read()?;
    let table = txn.open_table(crate::storage::TASK_RECORDS)?;
    let mut out = BTreeMap::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        // A record that does not parse (written by a later version) starts from zero.
        if let Ok(r) = serde_json::from_slice(v.value()) {
            out.insert(k.value().to_string(), r);
        }
    }
    Ok(out)
}

/// Save `records` (replacing what each task had) in `txn`.
pub fn save_records(
    txn: &redb::WriteTransaction,
    records: &[(String, Record)],
) -> anyhow::Result<()> {
    let mut table = txn.open_table(crate::storage::TASK_RECORDS)?;
    for (name, r) in records {
        table.insert(name.as_str(), serde_json::to_vec(r)?.as_slice())?;
    }
    Ok(())
}

/// What one binding of a capture brought in.
#[derive(Clone, Debug, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapturedStatus {
    /// The binding's index in the catalog.
    pub binding: u32,
    /// The collection it appends to.
    pub collection: String,
    /// Documents the connector returned for it (before they were combined by key).
    pub docs: u64,
}

/// Shared, updatable status of every task.
#[derive(Clone, Default)]
pub struct Statuses(Arc<Mutex<BTreeMap<String, TaskStatus>>>);

impl Statuses {
    pub fn set(&self, status: TaskStatus) {
        self.0
            .lock()
            .expect("statuses poisoned")
            .insert(status.name.clone(), status);
    }

    pub fn update(&self, name: &str, f: impl FnOnce(&mut TaskStatus)) {
        if let Some(s) = self.0.lock().expect("statuses poisoned").get_mut(name) {
            f(s)
        }
    }

    pub fn get(&self, name: &str) -> Option<TaskStatus> {
        self.0.lock().expect("statuses poisoned").get(name).cloned()
    }

    pub fn all(&self) -> Vec<TaskStatus> {
        self.0
            .lock()
            .expect("statuses poisoned")
            .values()
            .cloned()
            .collect()
    }

    pub fn remove(&self, name: &str) {
        self.0.lock().expect("statuses poisoned").remove(name);
    }
}

/// Upper bounds of the histograms' buckets, in seconds (`+Inf` follows).
pub const BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram of durations, updated without a lock.
#[derive(Default)]
pub struct Histogram {
    /// Per bucket of `BUCKETS_S`, then `+Inf`: observations at most its bound (not cumulative).
    buckets: [std::sync::atomic::AtomicU64; 15],
    sum_us: std::sync::atomic::AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = d.as_secs_f64();
        let i = BUCKETS_S
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BUCKETS_S.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// Cumulative counts per bucket (the last is `+Inf`, the count), and the sum in seconds.
    pub fn read(&self) -> ([u64; 15], f64) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = [0u64; 15];
        let mut total = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            total += b.load(Relaxed);
            out[i] = total;
        }
        (out, self.sum_us.load(Relaxed) as f64 / 1e6)
    }
}

/// How long a task's transactions and plugin calls take (since the host started).
#[derive(Default)]
pub struct Timings {
    /// Each transaction that found documents, from its read to its commit being queued.
    pub transactions: Histogram,
    /// Each call into the plugin.
    pub plugin_calls: Histogram,
}

/// Every task's timings, by name: kept across a task's runs (a publish, a swap).
#[derive(Clone, Default)]
pub struct AllTimings(Arc<Mutex<BTreeMap<String, Arc<Timings>>>>);

impl AllTimings {
    pub fn of(&self, task: &str) -> Arc<Timings> {
        self.0
            .lock()
            .expect("timings poisoned")
            .entry(task.to_string())
            .or_default()
            .clone()
    }

    pub fn all(&self) -> Vec<(String, Arc<Timings>)> {
        self.0
            .lock()
            .expect("timings poisoned")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn remove(&self, task: &str) {
        self.0.lock().expect("timings poisoned").remove(task);
    }
}

/// What an operator set on a task, outside the catalog (`TASK_CONTROL`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Control {
    /// Not started until resumed (`flow tasks pause`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// A materialization reset: its next run ignores the checkpoint its destination holds
    /// and reads its sources from their beginnings; cleared once a transaction of that run
    /// committed (and with it a new checkpoint).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rematerialize: bool,
}

impl Control {
    /// Every task's control record that says something.
    pub fn all(store: &crate::storage::Store) -> anyhow::Result<BTreeMap<String, Control>> {
        use redb::ReadableTable;
        let txn = store.read()?;
        let table = txn.open_table(crate::storage::TASK_CONTROL)?;
        let mut out = BTreeMap::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let control: Control = serde_json::from_slice(v.value()).unwrap_or_default();
            out.insert(k.value().to_string(), control);
        }
        Ok(out)
    }

    /// `task`'s record.
    pub fn of(store: &crate::storage::Store, task: &str) -> anyhow::Result<Control> {
        let txn = store.read()?;
        let table = txn.open_table(crate::storage::TASK_CONTROL)?;
        Ok(table
            .get(task)?
            .and_then(|v| serde_json::from_slice(v.value()).ok())
            .unwrap_or_default())
    }

    /// Change `task`'s record by `f`, in one write (a record that says nothing is removed).
    pub fn update(
        store: &crate::storage::Store,
        task: &str,
        f: impl Fn(&mut Control) + Send + 'static,
    ) -> anyhow::Result<()> {
        let task = task.to_string();
        store.write(move |txn| Control::update_in(txn, &task, &f))
    }

    /// `update`, within a write transaction.
    pub fn update_in(
        txn: &redb::WriteTransaction,
        task: &str,
        f: &dyn Fn(&mut Control),
    ) -> anyhow::Result<()> {
        use redb::ReadableTable;
        let mut table = txn.open_table(crate::storage::TASK_CONTROL)?;
        let mut control: Control = table
            .get(task)?
            .and_then(|v| serde_json::from_slice(v.value()).ok())
            .unwrap_or_default();
        f(&mut control);
        if control == Control::default() {
            table.remove(task)?;
        } else {
            table.insert(task, serde_json::to_vec(&control)?.as_slice())?;
        }
        Ok(())
    }
}
