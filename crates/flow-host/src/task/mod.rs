//! Tasks: one thread each, running explicit transaction steps over journals.
//!
//! This module holds what every kind of task shares: `TaskCtx` (what a task thread is given),
//! the `Task` trait a kind implements, and `run`, the loop around it: start, report sources,
//! then transactions until stopped (a stop, and so a plugin swap, only ever lands between two
//! transactions), pausing under backpressure, sleeping until an append, failing into the
//! status and the plugin's log. `kinds.rs` is the table of kinds the host supervises; each
//! kind is a folder of its own (`derive/`, `materialize/`) with a README of its protocol, and
//! imports only this module, never `runtime`.

pub(crate) mod capture;
pub(crate) mod derive;
mod kinds;
pub(crate) mod materialize;
mod status;

pub(crate) use kinds::{KINDS, Kind, TaskDef};
pub use status::{
    AllTimings, BUCKETS_S, CapturedStatus, Control, Failure, Record, SourceStatus, Statuses,
    TaskState, TaskStatus, Timings, load_records, save_records,
};

use crate::connector;
use crate::journal::{self, Journals};
use crate::limits::Limits;
use crate::plugin::Registry;
use crate::storage::{self, Store};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What a task thread needs.
#[derive(Clone)]
pub(crate) struct TaskCtx {
    pub name: String,
    pub store: Arc<Store>,
    pub journals: Arc<Journals>,
    pub registry: Arc<Registry>,
    /// The host's limits with the task's `limits:` applied.
    pub limits: Limits,
    pub stop: Arc<AtomicBool>,
    pub statuses: Statuses,
    /// How long this task's transactions and plugin calls take.
    pub timings: std::sync::Arc<Timings>,
    /// How many documents the next transaction reads: see `TaskCtx::txn_docs`.
    pub txn_docs: Cell<usize>,
    /// Opens once no other run of this task is left (see `TaskCtx::ready`).
    pub gate: Gate,
}

/// A gate a new run of a task waits at before it touches what the task's previous run holds
/// (checkpoints, state, the destination): the supervisor starts a swapped task's new run
/// first, so it compiles, instantiates and opens its plugin while the old run goes on with its
/// transactions; once the new run has arrived at the gate (or ended before it), the old run is
/// stopped after its transaction, and the gate opens once its thread ended. A swap then costs
/// one transaction boundary, not a plugin start.
#[derive(Clone)]
pub(crate) struct Gate(Arc<(Mutex<GateState>, Condvar)>);

#[derive(Default)]
struct GateState {
    open: bool,
    /// The run is waiting at the gate: what comes before it (its plugin's start) is done.
    arrived: bool,
}

impl Gate {
    /// A gate that is already open: no other run of the task exists.
    pub fn open() -> Self {
        Gate(Arc::new((
            Mutex::new(GateState {
                open: true,
                arrived: false,
            }),
            Condvar::new(),
        )))
    }

    pub fn closed() -> Self {
        Gate(Arc::default())
    }

    /// Let the waiting run through.
    pub fn release(&self) {
        self.0.0.lock().expect("gate poisoned").open = true;
        self.0.1.notify_all();
    }

    /// Wait until the run arrives at the gate, `ended()` says it ended without arriving, or
    /// `deadline` passes; whether it arrived.
    pub fn wait_arrival(&self, deadline: std::time::Instant, ended: impl Fn() -> bool) -> bool {
        let mut g = self.0.0.lock().expect("gate poisoned");
        loop {
            let now = std::time::Instant::now();
            if g.arrived || ended() || now >= deadline {
                return g.arrived;
            }
            // Short waits: a run that ends without arriving notifies nobody.
            let step = (deadline - now).min(Duration::from_millis(10));
            g = self.0.1.wait_timeout(g, step).expect("gate poisoned").0;
        }
    }

    fn wait(&self) {
        let mut g = self.0.0.lock().expect("gate poisoned");
        if !g.arrived {
            g.arrived = true;
            self.0.1.notify_all();
        }
        let _open = self.0.1.wait_while(g, |g| !g.open);
    }
}

/// Documents a transaction reads when its task has no backlog. While every transaction comes
/// back full (a backlog: a burst, a backfill, a restart behind), the next one doubles, up to
/// `txnDocsMax`: a hot key's documents combine into one and the fsync is shared by more
/// documents (measured: 4,096 -> 65,536 cut the pipeline's derived documents from ~820k to
/// ~150k for 1M orders; the default cap is 32,768, which throughput did not tell apart from
/// 65,536 while the peak memory of a backlog fell by 10-15%, docs/benchmarks.md). Once a transaction finds fewer than it asked for, the task has
/// caught up and drops back, so an idle pipeline keeps small transactions and low latency.
pub(crate) const TXN_DOCS_START: usize = 4096;

/// A started task of some kind: what the shared loop needs of it.
pub(crate) trait Task {
    /// The journals it appends to: while one refuses appends, the task pauses.
    fn outputs(&self) -> Vec<String>;
    /// Where it reads: (source name, collection, next offset), as of its last transaction
    /// known to have committed.
    fn sources(&self) -> Vec<(String, String, u64)>;
    /// Run one transaction; returns how many source documents it processed (0: none was
    /// ready, and the loop sleeps until an append or `wake_ms`).
    fn transaction(&mut self, ctx: &TaskCtx) -> anyhow::Result<usize>;
    /// When a document that is not ready yet will be (ms since the epoch), if any.
    fn wake_ms(&self) -> Option<u64> {
        None
    }
    /// For a task that reads no journal (a capture polls its source): how long to sleep
    /// after a transaction that found nothing, instead of waiting for appends.
    fn idle_wait(&self) -> Option<Duration> {
        None
    }
    /// Whether waiting would fold what comes next into the rows its last transaction wrote
    /// (it caught up, and combined 2:1 or rewrote the rows of the one before moments after):
    /// then it lasts at least `txnTimeCombiningMs`.
    fn combining(&self) -> bool {
        false
    }
}

/// Run a task until it is stopped or fails: `start` it (it returns the task and the plugin
/// version it runs), report it running, then transactions. A failure lands in the task's
/// status and in `plugin`'s log, never in the host.
pub(crate) fn run<T: Task>(
    ctx: TaskCtx,
    plugin: &str,
    start: impl FnMut(&TaskCtx) -> anyhow::Result<(T, u64)>,
) {
    // A storage fault (a full disk) pauses the task instead of failing it: it starts again
    // from its checkpoints once the database takes writes, which its own commit finds out.
    // A destination that went away does the same, backing off: the task shows `retrying`.
    let mut start = start;
    let mut backoff = RETRY_FIRST;
    loop {
        let started = std::time::Instant::now();
        let result = run_once(&ctx, &mut start);
        // Nothing of this run shows in the status before the previous run is gone.
        ctx.ready();
        let wait = match result {
            Err(e) if storage::is_io_failure(&e) && !ctx.stopping() => {
                ctx.pause(format!("{e:#}"));
                STORAGE_RETRY
            }
            Err(e) if connector::is_unavailable(&e) && !ctx.stopping() => {
                // A run that went on for a while before it lost its destination starts over.
                if started.elapsed() > RETRY_MAX {
                    backoff = RETRY_FIRST;
                }
                ctx.retry(plugin, &e, backoff);
                let wait = backoff;
                backoff = (backoff * 2).min(RETRY_MAX);
                wait
            }
            Err(e) => return ctx.fail(plugin, &e),
            Ok(()) => return,
        };
        ctx.sleep(wait);
        if ctx.stopping() {
            return;
        }
    }
}

/// How long a task paused by a storage fault waits before it tries again.
const STORAGE_RETRY: Duration = Duration::from_secs(1);
/// A task whose destination is unavailable tries again after this, doubling each time up to
/// `RETRY_MAX`: soon enough for a restarted server, without hammering one that is down.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

fn run_once<T: Task>(
    ctx: &TaskCtx,
    start: &mut impl FnMut(&TaskCtx) -> anyhow::Result<(T, u64)>,
) -> anyhow::Result<()> {
    // What it found of its sources as it started is as of this generation at least.
    let started = ctx.journals.generation();
    let (mut task, version) = start(ctx)?;
    // Sources first: `Host::wait_idle` must never see a running task without its sources.
    ctx.report_sources(&task.sources())?;
    ctx.statuses.update(&ctx.name, |s| {
        s.state = TaskState::Running;
        s.plugin_version = Some(version);
        s.retry_at_ms = None;
        s.last_error = None;
        // A wait of an earlier run is not this run's.
        s.wake_at_ms = None;
        s.waiting_since = None;
        s.read_generation = task.idle_wait().is_none().then_some(started);
    });
    let outputs = task.outputs();
    let mut reported = task.sources();
    // The wait for time last shown in the status (cleared above): (wake ms, appends seen).
    let mut shown_waiting: Option<(u64, u64)> = None;
    while !ctx.stopping() {
        if ctx.backpressure(&outputs) {
            continue;
        }
        let seen = ctx.journals.generation();
        let asked = ctx.txn_docs();
        let began = std::time::Instant::now();
        let processed = task.transaction(ctx)?;
        if processed > 0 {
            ctx.timings.transactions.observe(began.elapsed());
        }
        // A transaction that found documents lasts at least `txnTimeMinMs`, and one that
        // caught up while combining at least 2:1 at least `txnTimeCombiningMs`: what arrives
        // meanwhile is combined into the next one.
        let mut min = ctx.limits.txn_time_min_ms;
        if task.combining() {
            min = min.max(ctx.limits.txn_time_combining_ms);
        }
        let min = Duration::from_millis(min);
        if processed > 0 {
            while !ctx.stopping() && began.elapsed() < min {
                std::thread::sleep((min - began.elapsed()).min(Duration::from_millis(50)));
            }
        }
        ctx.txn_docs.set(next_txn_docs(asked, processed));
        // A task may report where it read only once that transaction committed (a
        // derivation queues its commit and settles it during the next transaction), so the
        // sources are reported whenever they moved, also after a transaction that found
        // nothing new.
        let sources = task.sources();
        if processed > 0 || sources != reported {
            ctx.report_sources(&sources)?;
            reported = sources;
        }
        if task.idle_wait().is_none() {
            ctx.statuses
                .update(&ctx.name, |s| s.read_generation = Some(seen));
        }
        // Documents held back by `readDelay` wait for a time: shown in the status (with the
        // appends seen), so a catalog test's driver knows the task waits for time alone.
        // The status is written only when that changes, not on every transaction.
        let waiting = (processed == 0)
            .then(|| task.wake_ms())
            .flatten()
            .map(|at| (at, seen));
        if waiting != shown_waiting {
            ctx.statuses.update(&ctx.name, |s| {
                s.wake_at_ms = waiting.map(|(at, _)| at);
                s.waiting_since = waiting.map(|(_, seen)| seen);
            });
            shown_waiting = waiting;
        }
        if processed == 0 {
            match task.idle_wait() {
                Some(wait) => ctx.sleep(wait),
                None => ctx.wait_for_appends(seen, task.wake_ms()),
            }
        }
    }
    Ok(())
}

/// How many documents the transaction after one that asked for `asked` and processed
/// `processed` asks for: double after a full one (a backlog), `TXN_DOCS_START` otherwise.
fn next_txn_docs(asked: usize, processed: usize) -> usize {
    if processed >= asked {
        asked.saturating_mul(2)
    } else {
        TXN_DOCS_START
    }
}

impl TaskCtx {
    /// Wait until no other run of this task is left: call it before reading or writing what
    /// the task owns (checkpoints, state, its destination). Before it, a task may only
    /// prepare (resolve, instantiate and open its plugin).
    pub fn ready(&self) {
        self.gate.wait();
    }

    /// How many documents this transaction may read: `TXN_DOCS_START`, doubled per full
    /// transaction while a backlog lasts, never over `txnDocsMax`.
    pub fn txn_docs(&self) -> usize {
        self.txn_docs.get().min(self.limits.txn_docs_max).max(1)
    }

    /// What a plugin instance tells of each call's duration (`Instance::set_call_timer`).
    pub fn call_timer(&self) -> flow_engine::CallTimer {
        let timings = self.timings.clone();
        std::sync::Arc::new(move |d| timings.plugin_calls.observe(d))
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleep for `wait`, or until the task is stopped.
    fn sleep(&self, wait: Duration) {
        let until = std::time::Instant::now() + wait;
        while !self.stopping() {
            let now = std::time::Instant::now();
            if now >= until {
                return;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }

    /// Sleep until a journal grows (past generation `seen`), the task is stopped, the idle
    /// re-check interval passes, or `wake_ms` (ms since the epoch) comes, if sooner.
    fn wait_for_appends(&self, seen: u64, wake_ms: Option<u64>) {
        if self.stopping() {
            return;
        }
        let mut timeout = Duration::from_millis(self.limits.idle_recheck_ms);
        if let Some(wake) = wake_ms {
            let now = self.store.clock.now_ms();
            timeout = timeout.min(Duration::from_millis(wake.saturating_sub(now) + 1));
        }
        self.journals.wait(seen, timeout);
    }

    /// If a journal in `outputs` refuses appends (its unsealed head is over its bound because
    /// the fragment store fails), show it in the task's status, sleep a moment and return
    /// true: the task retries instead of failing, and resumes once sealing catches up.
    fn backpressure(&self, outputs: &[String]) -> bool {
        let Some(fragments) = self.journals.fragments() else {
            return false;
        };
        let refused = outputs.iter().find_map(|j| fragments.check_append(j).err());
        match refused {
            Some(why) => {
                self.pause(why);
                std::thread::sleep(Duration::from_millis(100));
                true
            }
            None => {
                self.statuses.update(&self.name, |s| {
                    if s.state == TaskState::Backpressure {
                        s.state = TaskState::Running;
                        s.last_error = None;
                    }
                });
                false
            }
        }
    }

    /// Show the task as paused for `why` (warned once per pause), not failed.
    fn pause(&self, why: String) {
        self.statuses.update(&self.name, |s| {
            if s.state != TaskState::Backpressure {
                tracing::warn!(task = %self.name, "pausing: {why}");
            }
            s.state = TaskState::Backpressure;
            s.last_error = Some(why);
        });
    }

    /// Show where the task reads, and how far behind each source's head it is.
    fn report_sources(&self, sources: &[(String, String, u64)]) -> anyhow::Result<()> {
        let mut out = Vec::new();
        for (name, collection, offset) in sources {
            let head = journal::head(&self.store, collection)?;
            out.push(SourceStatus {
                name: name.clone(),
                collection: collection.clone(),
                offset: *offset,
                lag_bytes: head.saturating_sub(*offset),
                lag_docs: 0,
                lag_docs_estimated: false,
                lag_seconds: None,
            });
        }
        self.statuses.update(&self.name, |s| s.sources = out);
        Ok(())
    }

    /// Show the task as retrying after its destination went away: the reason and when it
    /// tries again, in its status and (once per outage) its plugin's log.
    fn retry(&self, plugin: &str, error: &anyhow::Error, wait: Duration) {
        let message = format!("{error:#}");
        let at_ms = std::time::SystemTime::now()
            .checked_add(wait)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64);
        let mut first = false;
        self.statuses.update(&self.name, |s| {
            first = s.state != TaskState::Retrying;
            s.state = TaskState::Retrying;
            s.last_error = Some(message.clone());
            s.last_failure = Some(Failure {
                message: message.clone(),
                at_ms: now_ms(),
            });
            s.retry_at_ms = at_ms;
        });
        tracing::warn!(task = %self.name, "retrying in {wait:?}: {message}");
        if first {
            self.registry.logs().push(
                plugin,
                Some(&self.name),
                flow_engine::LogLevel::Warn,
                format!(
                    "task {}: its destination is unavailable, retrying with backoff: {message}",
                    self.name
                ),
            );
        }
    }

    /// Tell `plugin`'s log that this task runs its version `seq`, resuming `from`.
    pub fn log_running(&self, plugin: &str, seq: u64, from: &str) {
        self.registry.logs().push(
            plugin,
            Some(&self.name),
            flow_engine::LogLevel::Info,
            format!("task {} running version {seq} from {from}", self.name),
        );
    }

    /// Record a failure in the task's status and its plugin's log.
    fn fail(&self, plugin: &str, error: &anyhow::Error) {
        let message = format!("{error:#}");
        tracing::error!(task = %self.name, "task failed: {message}");
        self.registry.logs().push(
            plugin,
            Some(&self.name),
            flow_engine::LogLevel::Error,
            format!("task {} failed: {message}", self.name),
        );
        self.statuses.update(&self.name, |s| {
            s.state = TaskState::Failed;
            s.last_failure = Some(Failure {
                message: message.clone(),
                at_ms: now_ms(),
            });
            s.last_error = Some(message);
        });
    }
}

/// Check what one plugin call returned (`per`: `call`, `poll`) against the task's output
/// caps: `docs` documents of `bytes` bytes in all.
pub(crate) fn check_output_caps(
    ctx: &TaskCtx,
    per: &str,
    docs: usize,
    bytes: usize,
) -> anyhow::Result<()> {
    if docs > ctx.limits.call_output_docs_max {
        anyhow::bail!(
            "the plugin exceeded a sandbox limit: it returned {docs} documents from one {per}, over the cap of {} (callOutputDocsMax)",
            ctx.limits.call_output_docs_max
        );
    }
    if bytes > ctx.limits.call_output_bytes_max {
        anyhow::bail!(
            "the plugin exceeded a sandbox limit: it returned {bytes} bytes of documents from one {per}, over the cap of {} (callOutputBytesMax)",
            ctx.limits.call_output_bytes_max
        );
    }
    Ok(())
}

/// Put the document a dead-letter `record` is about into it, as `document`: as JSON (or its
/// text, when it is not JSON), or, when that would not leave the record room under
/// `docBytesMax` (its target refused it for its size, or it is near it), the start of its
/// text and `documentBytes`: a record that cannot be appended would stop the task on it.
pub(crate) fn dead_letter_document(limits: &Limits, record: &mut serde_json::Value, text: &[u8]) {
    let error = record["error"].as_str().map_or(0, str::len);
    let room = limits.doc_bytes_max.saturating_sub(1024 + error);
    record["document"] = if text.len() <= room / 2 {
        serde_json::from_slice(text)
            .unwrap_or_else(|_| String::from_utf8_lossy(text).into_owned().into())
    } else {
        record["documentBytes"] = text.len().into();
        truncate(&String::from_utf8_lossy(text)).into()
    };
}

/// The wall clock, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// At most the first 300 bytes of `s` (a document a message quotes), `...` marking a cut.
pub(crate) fn truncate(s: &str) -> String {
    const MAX: usize = 300;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod test {
    use super::{TXN_DOCS_START, next_txn_docs};

    #[test]
    fn transactions_double_through_a_backlog_and_drop_back_once_caught_up() {
        let mut asked = TXN_DOCS_START;
        let mut sizes = Vec::new();
        // A backlog of 100,000 documents under a cap of 65,536.
        let mut left = 100_000;
        while left > 0 {
            let size = asked.min(65_536);
            let processed = size.min(left);
            sizes.push(processed);
            left -= processed;
            asked = next_txn_docs(size, processed);
        }
        assert_eq!(sizes, [4096, 8192, 16384, 32768, 38560]);
        assert_eq!(asked, TXN_DOCS_START, "caught up: small transactions again");
        // A task that finds nothing stays small.
        assert_eq!(next_txn_docs(TXN_DOCS_START, 0), TXN_DOCS_START);
    }
}
