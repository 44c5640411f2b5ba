//! Supervising task threads: (re)start the catalog's tasks from the table of kinds, stop them
//! at a transaction boundary, and swap them when their plugin changes.

use super::Host;
use crate::catalog::{TaskLimits, TestResponse};
use crate::task::{Gate, KINDS, TaskCtx, TaskState, TaskStatus};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A running task thread.
pub(super) struct TaskHandle {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Host {
    /// A new version of `plugin` is live (deployed or rolled back to): restart the tasks that
    /// run it. Each stops at its next transaction boundary and resumes from its checkpoint on
    /// the new version, with its state intact; other tasks are not touched.
    pub fn plugin_deployed(&self, plugin: &str) {
        self.restart_tasks(&|_, p| p == plugin);
    }

    /// What a run of task `name` is given: the host's parts, and its limits over the host's.
    pub(super) fn task_ctx(
        &self,
        name: &str,
        limits: Option<&TaskLimits>,
        stop: Arc<AtomicBool>,
        gate: Gate,
    ) -> TaskCtx {
        TaskCtx {
            name: name.to_string(),
            store: self.store.clone(),
            journals: self.journals.clone(),
            registry: self.registry.clone(),
            limits: limits
                .map(|l| l.apply(&self.limits))
                .unwrap_or_else(|| self.limits.clone()),
            stop,
            statuses: self.statuses.clone(),
            timings: self.timings.of(name),
            txn_docs: std::cell::Cell::new(crate::task::TXN_DOCS_START),
            gate,
        }
    }

    /// Run capture `name` as a catalog test's `capture` step: until a poll finds its source
    /// idle, its HTTP answered by `responses` (see `catalog::TestCapture`). Nothing else runs
    /// it: a test host runs no capture task.
    pub fn run_test_capture(&self, name: &str, responses: &[TestResponse]) -> anyhow::Result<()> {
        let catalog = self.catalog();
        let spec = catalog
            .captures
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("no capture named '{name}' in the catalog"))?
            .clone();
        // Only where capture tasks never run (a catalog test's host), so no run of the
        // task can be committing beside this one.
        if self.run_external_tasks {
            anyhow::bail!(
                "capture '{name}': a test step runs captures only on a test host, which runs no capture task"
            );
        }
        let ctx = self.task_ctx(name, spec.limits.as_ref(), Arc::default(), Gate::open());
        crate::task::capture::run_test_step(&ctx, &catalog, &spec, responses)
    }

    /// Run materialization `name` as a catalog test's `materialize` step, into the SQLite
    /// database at `db` in place of its endpoint's: until it has caught up with its sources.
    /// Nothing else runs it: a test host runs no materialization task.
    pub fn run_test_materialization(&self, name: &str, db: &std::path::Path) -> anyhow::Result<()> {
        let catalog = self.catalog();
        let spec = catalog
            .materializations
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("no materialization named '{name}' in the catalog"))?;
        if self.run_external_tasks {
            anyhow::bail!(
                "materialization '{name}': a test step runs materializations only on a test host, which runs no materialization task"
            );
        }
        let mut spec = (**spec).clone();
        if let Some(c) = spec.config.as_object_mut() {
            c.insert("path".into(), db.display().to_string().into());
        }
        spec.destination = Some(crate::catalog::BuiltDestination {
            connector: "sqlite".into(),
            config: spec.config.clone(),
        });
        let ctx = self.task_ctx(name, spec.limits.as_ref(), Arc::default(), Gate::open());
        crate::task::materialize::run_test_step(&ctx, &catalog, &spec)
    }

    /// Stop every task and wait for their threads, then save their records.
    pub fn shutdown(&self) {
        self.stop_tasks(&|_| true);
        self.keeper.stop();
        self.fragments.shutdown();
    }

    /// The counters and last failure `name` goes on from: its status's, or those saved by an
    /// earlier run of the host.
    fn carried(&self, name: &str) -> Option<crate::task::Record> {
        match self.statuses.get(name) {
            Some(s) => Some(s.record()),
            None => self
                .baseline
                .lock()
                .expect("baseline poisoned")
                .get(name)
                .cloned(),
        }
    }

    /// Show `status`, going on with the counters of the task's earlier run.
    fn show(&self, mut status: TaskStatus) {
        if let Some(r) = self.carried(&status.name) {
            status.carry(&r);
        }
        self.statuses.set(status);
    }

    /// The tasks paused by an operator (`TASK_CONTROL`).
    pub(super) fn paused(&self) -> anyhow::Result<BTreeSet<String>> {
        Ok(crate::task::Control::all(&self.store)?
            .into_iter()
            .filter(|(_, c)| c.paused)
            .map(|(name, _)| name)
            .collect())
    }

    /// Stop the tasks `which` selects (by name) and wait for their threads: each finishes the
    /// transaction it is in, so a stop is always at a transaction boundary.
    pub(super) fn stop_tasks(&self, which: &dyn Fn(&str) -> bool) {
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
                if s.state != TaskState::Failed {
                    s.state = TaskState::Stopped
                }
            });
        }
    }

    /// (Re)start the catalog's tasks that `which` selects by (task, plugin); tasks no longer
    /// in the catalog are stopped.
    pub(super) fn restart_tasks(&self, which: &dyn Fn(&str, &str) -> bool) {
        let catalog = self.catalog();
        let mut defs = Vec::new();
        for kind in KINDS {
            if kind.external && !self.run_external_tasks {
                continue;
            }
            defs.extend((kind.tasks)(&catalog).into_iter().map(|d| (kind, d)));
        }
        let in_catalog: BTreeSet<String> = defs.iter().map(|(_, d)| d.name.clone()).collect();
        defs.retain(|(_, d)| which(&d.name, &d.plugin));
        // A paused task is not started; one running is stopped (at a transaction boundary).
        let paused = self.paused().unwrap_or_else(|e| {
            tracing::error!("failed to read which tasks are paused (starting them all): {e:#}");
            BTreeSet::new()
        });
        let mut pausing = Vec::new();
        defs.retain(|(kind, d)| {
            if paused.contains(&d.name) {
                pausing.push(fresh_status(kind, d, TaskState::Paused));
                return false;
            }
            true
        });
        let restarting: BTreeSet<String> = defs.iter().map(|(_, d)| d.name.clone()).collect();
        let running: BTreeSet<String> = self
            .tasks
            .lock()
            .expect("tasks poisoned")
            .keys()
            .cloned()
            .collect();

        // The new runs start first: a task that is running now gets a closed gate, so its new
        // run prepares its plugin while the old run finishes its last transaction, and waits.
        let mut started = Vec::new();
        for (kind, def) in defs {
            let stop = Arc::new(AtomicBool::new(false));
            let gate = if running.contains(&def.name) {
                Gate::closed()
            } else {
                Gate::open()
            };
            let ctx = self.task_ctx(&def.name, def.limits.as_ref(), stop.clone(), gate.clone());
            let status = fresh_status(kind, &def, TaskState::Starting);
            if gate_is_open(&running, &def.name) {
                self.show(status.clone());
            }
            let run = def.run;
            let thread = std::thread::Builder::new()
                .name(format!("task {}", def.name))
                .spawn(move || run(ctx))
                .expect("failed to spawn a task thread");
            started.push((def.name, TaskHandle { stop, thread }, gate, status));
        }

        // An old run goes on until its new run has started its plugin (a swap then stalls
        // for one transaction boundary, not for a plugin's start), or a bounded wait passed.
        let deadline = std::time::Instant::now() + PREPARE_WAIT_MAX;
        for (name, handle, gate, _) in &started {
            if !gate_is_open(&running, name) {
                gate.wait_arrival(deadline, || handle.thread.is_finished());
            }
        }
        self.stop_tasks(&|n| {
            restarting.contains(n) || paused.contains(n) || !in_catalog.contains(n)
        });
        for name in self.statuses.all().iter().map(|s| s.name.clone()) {
            if !in_catalog.contains(&name) {
                self.statuses.remove(&name);
            }
        }
        for status in pausing {
            self.show(status);
        }
        let mut tasks = self.tasks.lock().expect("tasks poisoned");
        for (name, handle, gate, status) in started {
            if !gate_is_open(&running, &name) {
                self.show(status);
                gate.release();
            }
            tasks.insert(name, handle);
        }
        drop(tasks);
        // What was saved before this host started is now carried by the statuses.
        self.baseline
            .lock()
            .expect("baseline poisoned")
            .retain(|n, _| !in_catalog.contains(n));
    }
}

/// A status for a new run of `def` (counters are carried over by `Host::show`).
fn fresh_status(
    kind: &crate::task::Kind,
    def: &crate::task::TaskDef,
    state: TaskState,
) -> TaskStatus {
    TaskStatus {
        name: def.name.clone(),
        kind: kind.name,
        state,
        plugin: def.plugin.clone(),
        plugin_version: None,
        last_error: None,
        last_failure: None,
        transactions: 0,
        docs_in: 0,
        docs_out: 0,
        docs_failed: 0,
        sources: Vec::new(),
        captured: Vec::new(),
        checkpoint_at_ms: None,
        lag_ms: None,
        retry_at_ms: None,
        wake_at_ms: None,
        waiting_since: None,
        read_generation: None,
    }
}

/// How long a swap lets the old run of a task go on while its new run starts its plugin (a
/// compiled component instantiates and opens in milliseconds; one that takes longer, e.g. a
/// destination that does not answer, no longer holds the old run up after this).
const PREPARE_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether a new run of `name` starts without waiting for an old one.
fn gate_is_open(running: &BTreeSet<String>, name: &str) -> bool {
    !running.contains(name)
}
