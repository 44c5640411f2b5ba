//! What an operator does to what is already published: delete catalog entries and plugin
//! versions, pause, resume and reset tasks. Each is one database transaction, taken under the
//! publish lock, so it is as atomic as a publish: it happens whole or not at all, and never
//! interleaves with a publish.

use super::{CATALOG_KEY, Host, HostError, fragment_settings};
use crate::catalog::{self, Entry};
use crate::plugin::Version;
use crate::storage::{self, Clear};
use crate::task::{Control, KINDS, TaskStatus};
use anyhow::Context;
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;

/// What a delete removed from the catalog.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    pub collections: Vec<String>,
    pub materializations: Vec<String>,
    pub captures: Vec<String>,
    pub tests: Vec<String>,
    /// Tasks stopped, whose checkpoints, state and counters were removed with them.
    pub tasks: Vec<String>,
}

/// What a reset did.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reset {
    pub task: String,
    /// `derivation`, `capture` or `materialization`.
    pub kind: String,
    /// What it starts from now.
    pub message: String,
    pub status: Option<TaskStatus>,
}

impl Host {
    /// The kind of task `name` is, or NotFound naming the tasks there are.
    fn task_kind(&self, name: &str) -> Result<&'static str, HostError> {
        let catalog = self.catalog();
        for kind in KINDS {
            if (kind.tasks)(&catalog).iter().any(|d| d.name == name) {
                return Ok(kind.name);
            }
        }
        let known: Vec<String> = KINDS
            .iter()
            .flat_map(|k| (k.tasks)(&catalog).into_iter().map(|d| d.name))
            .collect();
        Err(HostError::NotFound(format!(
            "no task named '{name}' (tasks: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )))
    }

    /// Pause task `name` at its next transaction boundary, until `resume_task`: across
    /// restarts and publishes. Pausing a paused task changes nothing.
    pub fn pause_task(&self, name: &str) -> Result<TaskStatus, HostError> {
        let _guard = self.publishing.lock().expect("publish lock poisoned");
        self.task_kind(name)?;
        Control::update(&self.store, name, |c| c.paused = true)?;
        self.restart_tasks(&|t, _| t == name);
        tracing::info!(task = name, "paused");
        self.task_report(name)
            .ok_or_else(|| HostError::NotFound(format!("no task named '{name}'")))
    }

    /// Resume a paused task from its checkpoint. Resuming a task that is not paused changes
    /// nothing (it is not restarted).
    pub fn resume_task(&self, name: &str) -> Result<TaskStatus, HostError> {
        let _guard = self.publishing.lock().expect("publish lock poisoned");
        self.task_kind(name)?;
        if self.paused()?.contains(name) {
            Control::update(&self.store, name, |c| c.paused = false)?;
            self.restart_tasks(&|t, _| t == name);
            tracing::info!(task = name, "resumed");
        }
        self.task_report(name)
            .ok_or_else(|| HostError::NotFound(format!("no task named '{name}'")))
    }

    /// Start task `name` over from the beginning of its sources: a derivation forgets its
    /// checkpoints and state and derives everything again (appending to its collection
    /// what it derives again), a capture forgets its connector's checkpoint and captures its
    /// source again, a materialization ignores its destination's checkpoint once and
    /// materializes everything again (refused where that would reduce rows twice). Its
    /// counters start from zero; a paused task stays paused.
    pub fn reset_task(&self, name: &str) -> Result<Reset, HostError> {
        let _guard = self.publishing.lock().expect("publish lock poisoned");
        let kind = self.task_kind(name)?;
        let message = match kind {
            "derivation" => {
                "its checkpoints and state are gone: it derives every document of its sources again, from their beginnings, appending what it derives to its collection (readers see those documents again; a keyed materialization of it ends with the same rows)"
            }
            "capture" => {
                "its connector's checkpoint is gone: the connector starts as on its first run (a backfill of its source), and what it captures again is appended to its collections"
            }
            _ => {
                self.can_rematerialize(name)?;
                "the checkpoint its destination holds is ignored: it materializes every document of its sources again, from their beginnings, each row replaced by its key's last document (a delta-updates binding appends every document again)"
            }
        };
        self.stop_tasks(&|t| t == name);
        let (task, rematerialize) = (name.to_string(), kind == "materialization");
        let cleared = self.store.write(move |txn| {
            storage::clear_task(txn, &task, Clear::Progress)?;
            if rematerialize {
                Control::update_in(txn, &task, &|c| c.rematerialize = true)?;
            }
            Ok(())
        });
        // Whatever happened, the task runs again (or stays paused) from what is committed.
        self.statuses.remove(name);
        if cleared.is_ok() {
            self.keeper.forget(name);
        }
        self.restart_tasks(&|t, _| t == name);
        cleared?;
        tracing::info!(task = name, "reset: {message}");
        self.registry.logs().push(
            &self.task_report(name).map(|s| s.plugin).unwrap_or_default(),
            Some(name),
            flow_engine::LogLevel::Info,
            format!("task {name} reset by an operator: {message}"),
        );
        Ok(Reset {
            task: name.to_string(),
            kind: kind.to_string(),
            message: message.to_string(),
            status: self.task_report(name),
        })
    }

    /// Whether materialization `name` can be materialized again from the beginning: not if
    /// a standard-updates binding reads a collection with `reduce` annotations, whose rows
    /// would be reduced from their own earlier reductions (the reason names the binding).
    fn can_rematerialize(&self, name: &str) -> Result<(), HostError> {
        let catalog = self.catalog();
        let Some(m) = catalog.materializations.get(name) else {
            return Ok(());
        };
        for (i, b) in m.bindings.iter().enumerate() {
            let reduced = catalog
                .collections
                .get(&b.source)
                .is_some_and(|c| c.read_schema.plan().annotated());
            if reduced && !b.delta_updates {
                return Err(HostError::Invalid(format!(
                    "materialization {name} cannot be reset: binding {i} keeps rows of {} reduced by its `reduce` annotations, and materializing its history again would reduce each stored row with the documents it already holds; drop its tables and checkpoint in the destination, or publish it under a new name into new tables",
                    b.source
                )));
            }
        }
        Ok(())
    }

    /// Delete entries of the catalog (collections, derivations as their collections,
    /// materializations, captures, tests) in one transaction. Refused, changing nothing,
    /// while an entry not deleted with them uses one (each user named). Deleted tasks stop,
    /// and their checkpoints, state and counters go with them; documents stay in their
    /// journals (a collection published again under the same name reads them), and a
    /// materialization's tables and checkpoint stay in its destination.
    pub fn delete(&self, names: &[String]) -> Result<Deleted, HostError> {
        let _guard = self.publishing.lock().expect("publish lock poisoned");
        let current = self.catalog();
        if names.is_empty() {
            return Err(HostError::Invalid(
                "name at least one collection, materialization, capture or test to delete".into(),
            ));
        }
        let deleting: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        let mut deleted = Deleted {
            collections: Vec::new(),
            materializations: Vec::new(),
            captures: Vec::new(),
            tests: Vec::new(),
            tasks: Vec::new(),
        };
        let mut used = Vec::new();
        for name in &deleting {
            match current.entry(name) {
                None => {
                    return Err(HostError::NotFound(format!(
                        "the catalog has no collection, materialization, capture or test named '{name}'"
                    )));
                }
                Some(Entry::Collection) => deleted.collections.push(name.to_string()),
                Some(Entry::Materialization) => deleted.materializations.push(name.to_string()),
                Some(Entry::Capture) => deleted.captures.push(name.to_string()),
                Some(Entry::Test) => deleted.tests.push(name.to_string()),
            }
            let users: Vec<String> = current
                .uses_of(name)
                .into_iter()
                .filter(|u| !deleting.contains(u.by.as_str()))
                .map(|u| u.how)
                .collect();
            if !users.is_empty() {
                let what = current.entry(name).map(Entry::as_str).unwrap_or("entry");
                used.push(format!("{what} {name} is used by {}", users.join(", ")));
            }
        }
        if !used.is_empty() {
            return Err(HostError::Conflict(format!(
                "nothing was deleted: {}; delete those with it (name them too) or publish them without it first",
                used.join("; ")
            )));
        }
        let mut spec = current.spec.clone();
        for name in &deleting {
            spec.collections.remove(*name);
            spec.materializations.remove(*name);
            spec.captures.remove(*name);
            spec.tests.remove(*name);
        }
        let built = Arc::new(
            catalog::build("catalog after the delete", spec)
                .map_err(|e| HostError::Invalid(format!("nothing was deleted: {e}")))?,
        );
        let tasks: BTreeSet<String> = KINDS
            .iter()
            .flat_map(|k| (k.tasks)(&current).into_iter().map(|d| d.name))
            .filter(|t| deleting.contains(t.as_str()))
            .collect();
        deleted.tasks = tasks.iter().cloned().collect();

        // The deleted tasks stop first, so none commits after its records are removed.
        self.stop_tasks(&|t| tasks.contains(t));
        crate::storage::pause_point("delete-stopped");
        let spec_bytes =
            serde_json::to_vec(&built.spec).context("failed to serialize the catalog")?;
        let removing = tasks.clone();
        let written = self.store.write(move |txn| {
            txn.open_table(storage::META)?
                .insert(CATALOG_KEY, spec_bytes.as_slice())?;
            for t in &removing {
                storage::clear_task(txn, t, Clear::Everything)?;
            }
            Ok(())
        });
        if let Err(e) = written {
            // Nothing changed: the stopped tasks run again.
            self.restart_tasks(&|t, _| tasks.contains(t));
            return Err(e.into());
        }
        self.fragments.configure(fragment_settings(&built));
        *self.catalog.write().expect("catalog lock poisoned") = built;
        self.restart_tasks(&|_, _| false);
        for t in &tasks {
            self.keeper.forget(t);
            self.timings.remove(t);
        }
        tracing::info!("deleted from the catalog: {}", names.join(", "));
        Ok(deleted)
    }

    /// Delete version `seq` of plugin `name`. Refused for the version a task of the catalog
    /// runs (the live one, while a task names the plugin); an earlier version, or any of a
    /// plugin no task uses, can go. The component's bytes go once no version has them.
    pub fn delete_plugin_version(&self, name: &str, seq: u64) -> Result<Version, HostError> {
        let _guard = self.publishing.lock().expect("publish lock poisoned");
        let catalog = self.catalog();
        let users: Vec<String> = KINDS
            .iter()
            .flat_map(|k| (k.tasks)(&catalog))
            .filter(|d| d.plugin == name)
            .map(|d| d.name)
            .collect();
        let history = self.registry.history(name)?;
        let Some(live) = history.last() else {
            return Err(HostError::NotFound(format!(
                "no plugin named '{name}' is deployed"
            )));
        };
        if !history.iter().any(|v| v.seq == seq) {
            let seqs: Vec<String> = history.iter().map(|v| v.seq.to_string()).collect();
            return Err(HostError::NotFound(format!(
                "plugin {name} has no version {seq} (it has {})",
                seqs.join(", ")
            )));
        }
        if live.seq == seq && !users.is_empty() {
            return Err(HostError::Conflict(format!(
                "version {seq} of plugin {name} is the one running for {}: deploy or roll back to another version first, or delete those tasks",
                users.join(", ")
            )));
        }
        let version = self.registry.delete_version(name, seq)?;
        Ok(version)
    }
}
