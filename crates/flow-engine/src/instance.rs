//! Instances of plugin components, one per task, with every call under the deadline and
//! memory cap and its failure classified.

use super::bindings::{self, PluginError};
use super::ctx::PluginCtx;
use super::packed::{Published, SourceBatch};
use super::{
    Engine, HttpAccess, LogSink, Sandbox, SqlAccess, StateAccess, derive_api, migrate_api,
    sink_api, source_api,
};
use wasmtime::Store;
use wasmtime::component::Component;

/// Why a plugin call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The plugin returned an error value.
    #[error("the plugin returned an error: {message}")]
    Plugin {
        message: String,
        document: Option<u32>,
    },
    /// The call exceeded a sandbox limit: the CPU deadline, the memory cap or an output cap.
    #[error("the plugin exceeded a sandbox limit: {0}")]
    Limit(String),
    /// The plugin returned packed documents whose offsets do not fit their text (a bug in
    /// the plugin or its SDK).
    #[error("the plugin returned malformed output: {0}")]
    Packing(String),
    /// The plugin trapped (a bug: panic, unreachable, out-of-bounds access, ...).
    #[error("the plugin trapped: {0}")]
    Trap(String),
}

impl From<PluginError> for CallError {
    fn from(e: PluginError) -> Self {
        CallError::Plugin {
            message: e.message,
            document: e.document,
        }
    }
}

/// An instantiated component of world `B`.
pub struct Instance<B> {
    store: Store<PluginCtx>,
    bindings: B,
    deadline_ticks: u64,
    deadline_ms: u64,
    memory_bytes_max: usize,
    /// Set after a trap: the instance's state is undefined and it must not be called again.
    poisoned: bool,
    /// Told each call's duration, if set.
    timer: Option<CallTimer>,
}

/// Told how long each call into a plugin took (a task's histogram of plugin call time).
pub type CallTimer = std::sync::Arc<dyn Fn(std::time::Duration) + Send + Sync>;

pub type Derivation = Instance<DeriveExports>;

/// What a derivation component exports: `derive`, or (WIT 0.1.5) `derive-packed`.
pub enum DeriveExports {
    Plain(bindings::derivation::Derivation),
    Packed(bindings::derivation_packed::DerivationPacked),
}
pub type Materialization = Instance<bindings::materialization::Materialization>;
pub type Capture = Instance<bindings::capture::Capture>;
/// A derivation component that exports `migrate`, instantiated to migrate state.
pub type Migrator = Instance<bindings::migrating::Migration>;

impl<B> Instance<B> {
    fn new(
        engine: &Engine,
        log: LogSink,
        sandbox: &Sandbox,
        make: impl FnOnce(&mut Store<PluginCtx>) -> wasmtime::Result<B>,
    ) -> anyhow::Result<Self> {
        let mut store = engine.new_store(log, sandbox);
        store.set_epoch_deadline(Engine::deadline_ticks(sandbox));
        let bindings = make(&mut store)
            .map_err(|e| anyhow::anyhow!("failed to instantiate the plugin: {e:#}"))?;
        Ok(Instance {
            store,
            bindings,
            deadline_ticks: Engine::deadline_ticks(sandbox),
            deadline_ms: sandbox.call_deadline_ms,
            memory_bytes_max: sandbox.memory_bytes_max,
            poisoned: false,
            timer: None,
        })
    }

    /// Grant the database its endpoint names (a connector's destination or source).
    pub fn set_sql(&mut self, sql: Option<Box<dyn SqlAccess>>) {
        self.store.data_mut().sql.access = sql;
    }

    /// Grant outgoing HTTP (the host's client holds the task's allow-list).
    pub fn set_http(&mut self, http: Option<Box<dyn HttpAccess>>) {
        self.store.data_mut().http.access = http;
    }

    /// Tell `timer` how long each call takes.
    pub fn set_call_timer(&mut self, timer: CallTimer) {
        self.timer = Some(timer);
    }

    /// Whether a trap left this instance unusable.
    pub fn poisoned(&self) -> bool {
        self.poisoned
    }

    fn call<R>(
        &mut self,
        f: impl FnOnce(&mut Store<PluginCtx>, &B) -> wasmtime::Result<Result<R, PluginError>>,
    ) -> Result<R, CallError> {
        if self.poisoned {
            return Err(CallError::Trap(
                "the instance trapped earlier and was not restarted".into(),
            ));
        }
        self.store.set_epoch_deadline(self.deadline_ticks);
        // Host calls made on the plugin's behalf stop at the same deadline.
        let data = self.store.data_mut();
        data.sql.bounds.deadline =
            std::time::Instant::now() + std::time::Duration::from_millis(self.deadline_ms);
        data.kv.bounds = Some(data.sql.bounds);
        data.state.deadline = Some(data.sql.bounds.deadline);
        data.http.bounds = Some(data.sql.bounds);
        let began = std::time::Instant::now();
        let result = f(&mut self.store, &self.bindings);
        if let Some(timer) = &self.timer {
            timer(began.elapsed());
        }
        match result {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => {
                self.poisoned = true;
                Err(self.classify(e))
            }
        }
    }

    fn classify(&mut self, e: wasmtime::Error) -> CallError {
        if self.store.data().limiter.hit_memory_cap {
            return CallError::Limit(format!(
                "memory cap of {} MiB per instance",
                self.memory_bytes_max >> 20
            ));
        }
        if let Some(wasmtime::Trap::Interrupt) = e.downcast_ref::<wasmtime::Trap>() {
            return CallError::Limit(format!("CPU deadline of {} ms per call", self.deadline_ms));
        }
        CallError::Trap(format!("{e:#}"))
    }
}

impl Derivation {
    /// Instantiate under the task's `sandbox` (deadline, memory cap).
    pub fn instantiate(
        engine: &Engine,
        component: &Component,
        log: LogSink,
        sandbox: &Sandbox,
    ) -> anyhow::Result<Self> {
        let packed = engine.exports(component, super::DERIVE_PACKED);
        Self::new(engine, log, sandbox, |store| {
            Ok(if packed {
                DeriveExports::Packed(bindings::derivation_packed::DerivationPacked::instantiate(
                    store,
                    component,
                    &engine.linker,
                )?)
            } else {
                DeriveExports::Plain(bindings::derivation::Derivation::instantiate(
                    store,
                    component,
                    &engine.linker,
                )?)
            })
        })
    }

    /// Grant (or revoke) the state of the current transaction.
    pub fn set_state(&mut self, state: Option<Box<dyn StateAccess>>) {
        self.store.data_mut().state.access = state;
    }

    pub fn open(&mut self, spec: &derive_api::DerivationSpec) -> Result<(), CallError> {
        self.call(|s, b| match b {
            DeriveExports::Plain(b) => b.flow_plugin_derive().call_open(s, spec),
            DeriveExports::Packed(b) => b.flow_plugin_derive_packed().call_open(s, spec),
        })
    }

    /// One call with a batch of source documents; returns the documents published.
    pub fn transform(&mut self, batch: &SourceBatch) -> Result<Published, CallError> {
        let out = self.call(|s, b| match b {
            DeriveExports::Plain(b) => Ok(b
                .flow_plugin_derive()
                .call_transform(s, &batch.unpacked())?
                .map(Published::packed)),
            DeriveExports::Packed(b) => Ok(b
                .flow_plugin_derive_packed()
                .call_transform(s, &batch.0)?
                .map(Published::checked)),
        })?;
        out.map_err(CallError::Packing)
    }

    /// The call at the end of every transaction; returns the documents published.
    pub fn flush(&mut self) -> Result<Published, CallError> {
        let out = self.call(|s, b| match b {
            DeriveExports::Plain(b) => {
                Ok(b.flow_plugin_derive().call_flush(s)?.map(Published::packed))
            }
            DeriveExports::Packed(b) => Ok(b
                .flow_plugin_derive_packed()
                .call_flush(s)?
                .map(Published::checked)),
        })?;
        out.map_err(CallError::Packing)
    }
}

impl Materialization {
    /// Instantiate under the task's `sandbox` (deadline, memory cap).
    pub fn instantiate(
        engine: &Engine,
        component: &Component,
        log: LogSink,
        sandbox: &Sandbox,
    ) -> anyhow::Result<Self> {
        Self::new(engine, log, sandbox, |store| {
            bindings::materialization::Materialization::instantiate(
                store,
                component,
                &engine.linker,
            )
        })
    }

    /// Tell the plugin the fields of its bindings (`fields[binding]`).
    pub fn set_fields(&mut self, fields: Vec<Vec<crate::Field>>) {
        self.store.data_mut().fields.bindings = fields;
    }

    /// Grant the destination key-value store.
    pub fn set_kv(&mut self, kv: Option<Box<dyn crate::KvAccess>>) {
        self.store.data_mut().kv.access = kv;
    }

    pub fn open(
        &mut self,
        spec: &sink_api::MaterializationSpec,
    ) -> Result<Option<String>, CallError> {
        self.call(|s, b| b.flow_plugin_sink().call_open(s, spec))
    }

    pub fn load(
        &mut self,
        binding: u32,
        keys: &[String],
    ) -> Result<Vec<sink_api::Loaded>, CallError> {
        self.call(|s, b| b.flow_plugin_sink().call_load(s, binding, keys))
    }

    pub fn write(&mut self, binding: u32, docs: &[sink_api::Stored]) -> Result<(), CallError> {
        self.call(|s, b| b.flow_plugin_sink().call_write(s, binding, docs))
    }

    pub fn commit(&mut self, checkpoint: &str) -> Result<(), CallError> {
        self.call(|s, b| b.flow_plugin_sink().call_commit(s, checkpoint))
    }
}

impl Capture {
    /// Instantiate under the task's `sandbox` (deadline, memory cap).
    pub fn instantiate(
        engine: &Engine,
        component: &Component,
        log: LogSink,
        sandbox: &Sandbox,
    ) -> anyhow::Result<Self> {
        Self::new(engine, log, sandbox, |store| {
            bindings::capture::Capture::instantiate(store, component, &engine.linker)
        })
    }

    pub fn open(
        &mut self,
        spec: &source_api::CaptureSpec,
        checkpoint: Option<&str>,
    ) -> Result<(), CallError> {
        self.call(|s, b| b.flow_plugin_source().call_open(s, spec, checkpoint))
    }

    /// Poll; with the source time the plugin reported during the call, if it did.
    pub fn poll(&mut self) -> Result<(source_api::PollResult, Option<u64>), CallError> {
        self.store.data_mut().progress.source_ms = None;
        let r = self.call(|s, b| b.flow_plugin_source().call_poll(s))?;
        Ok((r, self.store.data().progress.source_ms))
    }
}

impl Migrator {
    pub fn instantiate(
        engine: &Engine,
        component: &Component,
        log: LogSink,
        sandbox: &Sandbox,
    ) -> anyhow::Result<Self> {
        Self::new(engine, log, sandbox, |store| {
            bindings::migrating::Migration::instantiate(store, component, &engine.linker)
        })
    }

    pub fn migrate(
        &mut self,
        from_digest: &str,
        batch: &[migrate_api::KeyedState],
    ) -> Result<Vec<migrate_api::KeyedState>, CallError> {
        self.call(|s, b| b.flow_plugin_migrate().call_migrate(s, from_digest, batch))
    }
}
