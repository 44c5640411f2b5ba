//! What a plugin instance's store holds: its WASI context (which grants nothing), its limits,
//! and the capabilities its task granted, plus the host side of every import.

use super::bindings::derivation::flow::plugin::{log, state, types};
use super::bindings::materialization::flow::plugin::{http, sql};
use super::bindings::{LogLevel, SqlRows, SqlValue};
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Where a plugin's log lines go: (level, line). Stdout and stderr arrive as `info` and `warn`.
pub type LogSink = Arc<dyn Fn(LogLevel, String) + Send + Sync>;

/// Per-key state of a derivation, as the task's transaction sees it.
pub trait StateAccess: Send {
    fn get(&mut self, key: &str) -> Option<String>;
    fn set(&mut self, key: &str, value: String);
    fn clear(&mut self, key: &str);
}

/// A SQL connection owned by the host, inside a transaction the host controls.
pub trait SqlAccess: Send {
    fn execute(&mut self, statement: &str, params: &[SqlValue]) -> Result<u64, String>;
    fn execute_many(&mut self, statement: &str, rows: &[Vec<SqlValue>]) -> Result<u64, String>;
    fn query(&mut self, statement: &str, params: &[SqlValue]) -> Result<SqlRows, String>;
}

/// The store data of one plugin instance.
pub struct PluginCtx {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: Limiter,
    pub(super) log: LogSink,
    /// Granted to derivations: reads and writes go to the current transaction.
    pub state: Option<Box<dyn StateAccess>>,
    /// Granted to connectors whose endpoint names a database.
    pub sql: Option<Box<dyn SqlAccess>>,
    /// Hosts a connector may reach with `http.send`. Empty: every request is refused.
    pub http_allow: Vec<String>,
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
pub(super) struct Limiter {
    pub memory_bytes_max: usize,
    pub memory_bytes: usize,
    pub hit_memory_cap: bool,
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

impl log::Host for PluginCtx {
    fn write(&mut self, level: log::Level, message: String) {
        (self.log)(level, message)
    }
}

impl state::Host for PluginCtx {
    fn get(&mut self, key: String) -> Option<String> {
        self.state.as_mut().and_then(|s| s.get(&key))
    }
    fn set(&mut self, key: String, value: String) {
        if let Some(s) = self.state.as_mut() {
            s.set(&key, value)
        }
    }
    fn clear(&mut self, key: String) {
        if let Some(s) = self.state.as_mut() {
            s.clear(&key)
        }
    }
}

const NO_SQL: &str = "this task was granted no database: its endpoint configuration names none";

impl sql::Host for PluginCtx {
    fn execute(&mut self, statement: String, params: Vec<SqlValue>) -> Result<u64, String> {
        self.sql
            .as_mut()
            .ok_or(NO_SQL.to_string())?
            .execute(&statement, &params)
    }
    fn execute_many(
        &mut self,
        statement: String,
        param_rows: Vec<Vec<SqlValue>>,
    ) -> Result<u64, String> {
        self.sql
            .as_mut()
            .ok_or(NO_SQL.to_string())?
            .execute_many(&statement, &param_rows)
    }
    fn query(&mut self, statement: String, params: Vec<SqlValue>) -> Result<SqlRows, String> {
        self.sql
            .as_mut()
            .ok_or(NO_SQL.to_string())?
            .query(&statement, &params)
    }
}

impl http::Host for PluginCtx {
    fn send(&mut self, request: http::Request) -> Result<http::Response, String> {
        // Outgoing HTTP is granted per task through an allow-list; none is configurable yet,
        // so every request is refused with the reason rather than silently dropped.
        Err(format!(
            "outgoing HTTP to {} refused: the host is not on this task's allow-list ({} hosts allowed)",
            request.url,
            self.http_allow.len()
        ))
    }
}

/// Plugin stdout/stderr: complete lines go to the plugin's log.
pub(super) struct LogStream {
    pub level: LogLevel,
    pub sink: LogSink,
}

impl wasmtime_wasi::cli::IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            level: self.level,
            sink: self.sink.clone(),
            partial: Vec::new(),
        })
    }

    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(LineWriter {
            level: self.level,
            sink: self.sink.clone(),
            partial: Vec::new(),
        })
    }
}

/// Splits written bytes into lines. A partial line longer than `PARTIAL_MAX` is emitted as is,
/// so a plugin that never writes a newline cannot grow host memory.
struct LineWriter {
    level: LogLevel,
    sink: LogSink,
    partial: Vec<u8>,
}

const PARTIAL_MAX: usize = 64 << 10;

impl LineWriter {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' || self.partial.len() >= PARTIAL_MAX {
                let line = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                (self.sink)(self.level, line);
                if b == b'\n' {
                    continue;
                }
            }
            self.partial.push(b);
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            (self.sink)(
                self.level,
                String::from_utf8_lossy(&self.partial).into_owned(),
            );
        }
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl wasmtime_wasi::p2::OutputStream for LineWriter {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(PARTIAL_MAX)
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// A wall clock stuck at the Unix epoch: plugins get no ambient time (DESIGN 5.4); time comes
/// from the documents. A fixed clock also keeps replays deterministic.
pub(super) struct EpochClock;

impl wasmtime_wasi::HostWallClock for EpochClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for EpochClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}
