//! The table of task kinds. The host publishes, checks and supervises tasks only through it:
//! a new kind is a folder beside `capture/`, `derive/` and `materialize/` plus one row in `KINDS`.

use super::TaskCtx;
use crate::catalog::{Built, Catalog, TaskLimits, WasmEndpoint};
use flow_engine::World;
use std::sync::Arc;

/// One kind of task.
pub(crate) struct Kind {
    /// What statuses and errors call it: `capture`, `derivation`, `materialization`.
    pub name: &'static str,
    /// The world its plugins implement.
    pub world: World,
    /// Whether it acts outside Flow (writes a real destination). `flow catalog test` runs
    /// throwaway hosts without such tasks.
    pub external: bool,
    /// Its endpoints in a catalog as published, by task name: where publish takes modules
    /// from (each becomes a plugin named after its task).
    pub endpoints: for<'a> fn(&'a mut Catalog) -> Vec<(&'a String, &'a mut WasmEndpoint)>,
    /// Its tasks in a built catalog.
    pub tasks: fn(&Arc<Built>) -> Vec<TaskDef>,
}

/// One task of the built catalog, ready to spawn.
pub(crate) struct TaskDef {
    pub name: String,
    /// The plugin it runs, by name.
    pub plugin: String,
    /// Its `limits:` over the host's.
    pub limits: Option<TaskLimits>,
    /// The thread body: runs the task until stopped or failed.
    pub run: Box<dyn FnOnce(TaskCtx) + Send>,
}

pub(crate) const KINDS: &[Kind] = &[
    super::capture::KIND,
    super::derive::KIND,
    super::materialize::KIND,
];
