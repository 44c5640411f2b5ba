//! Task status as the API and CLI show it.

use serde::Serialize;
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
    /// Paused: an output journal refuses appends until sealing catches up (`last_error` says why).
    Backpressure,
    /// Its destination is unreachable (`last_error` says why): it tries again at
    /// `retryAtMs`, backing off, and resumes from its checkpoint once the destination is back.
    Retrying,
    /// Stopped by an error (`last_error`); a publish or deploy restarts it.
    Failed,
    /// Stopped at a transaction boundary.
    Stopped,
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
