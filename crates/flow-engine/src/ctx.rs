//! What a plugin instance's store holds: its WASI context (which grants nothing), its memory
//! limiter, and one grant per capability. Each grant and the host side of its import live in
//! a file of their own (`log.rs`, `state.rs`, `sql.rs`, `kv.rs`, `fields.rs`, `http.rs`, `progress.rs`; `wasi.rs`
//! for WASI), which
//! need nothing of this one.

use super::bindings::derivation::flow::plugin::types;
use super::fields::FieldsGrant;
use super::http::HttpGrant;
use super::kv::KvGrant;
use super::log::LogGrant;
use super::progress::ProgressGrant;
use super::sql::SqlGrant;
use super::state::StateGrant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The store data of one plugin instance.
pub(crate) struct PluginCtx {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) log: LogGrant,
    /// Granted to derivations: reads and writes go to the current transaction.
    pub(crate) state: StateGrant,
    /// Granted to connectors whose endpoint names a database.
    pub(crate) sql: SqlGrant,
    /// Granted to connectors whose endpoint names a key-value store.
    pub(crate) kv: KvGrant,
    /// Granted to materializations: the fields of their bindings.
    pub(crate) fields: FieldsGrant,
    /// Hosts a connector may reach with `http.send`.
    pub(crate) http: HttpGrant,
    /// Granted to captures: the source time the current poll reported.
    pub(crate) progress: ProgressGrant,
}

impl WasiView for PluginCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps the memory of one instance (all its linear memories together) and notes when the cap
/// was what stopped it, so the error can say so.
pub(crate) struct Limiter {
    pub(crate) memory_bytes_max: usize,
    pub(crate) memory_bytes: usize,
    pub(crate) hit_memory_cap: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_bytes - current.min(self.memory_bytes) + desired;
        if total > self.memory_bytes_max {
            self.hit_memory_cap = true;
            return Ok(false);
        }
        self.memory_bytes = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million entries is far beyond any real plugin.
        Ok(desired <= 1_000_000)
    }
}

impl types::Host for PluginCtx {}
