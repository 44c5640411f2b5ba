//! Flow's plugin sandbox, and the only crate that depends on wasmtime: the engine, one linker,
//! the bindings of `wit/`, store limits, the epoch deadline, the compiled-component cache, the
//! host side of every import (one file per capability), and instance wrappers that classify
//! failures. Callers see `Component`, `World`, `Sandbox` and the typed instances, never wasmtime.
//!
//! Each plugin instance gets its own `Store` whose WASI context grants nothing: no preopened
//! directories, no environment, no arguments, no sockets, a wall clock stuck at the epoch and
//! deterministic randomness. Stdout and stderr land in the plugin's log. Every call runs under
//! an epoch deadline, and every instance under a memory cap.

mod bindings;
mod ctx;
mod fields;
mod http;
mod instance;
mod kv;
mod log;
mod packed;
mod precheck;
mod progress;
mod sql;
mod state;
mod wasi;

pub use bindings::{LogLevel, PluginError, SqlRows, SqlValue};
pub use fields::Field;
pub use http::{HttpAccess, HttpRequest, HttpResponse, quoted_url};
pub use instance::{
    CallError, CallTimer, Capture, Derivation, DeriveExports, Materialization, Migrator,
};
pub use kv::KvAccess;
pub use log::LogSink;
pub use packed::{Published, SourceBatch};
pub use sql::{SqlAccess, SqlBounds};
pub use state::StateAccess;
/// A compiled component, as the registry keeps it.
pub use wasmtime::component::Component;

pub use bindings::capture::exports::flow::plugin::source as source_api;
pub use bindings::derivation::exports::flow::plugin::derive as derive_api;
pub use bindings::materialization::exports::flow::plugin::sink as sink_api;
pub use bindings::migrating::exports::flow::plugin::migrate as migrate_api;

use anyhow::Context;
use ctx::{Limiter, PluginCtx};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};

/// How often the epoch advances; call deadlines are whole multiples of it.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The version of the WIT package: the one place the host names it (a unit test checks it
/// against `wit/flow.wit`).
macro_rules! wit_version {
    () => {
        "0.1.5"
    };
}

/// The WIT package every plugin is built against (`package` in `wit/flow.wit`).
pub const WIT_PACKAGE: &str = concat!("flow:plugin@", wit_version!());

macro_rules! wit_interface {
    ($name:literal) => {
        concat!("flow:plugin/", $name, "@", wit_version!())
    };
}

/// The packed derivation interface (0.1.5), which a derivation may export instead of `derive`.
const DERIVE_PACKED: &str = wit_interface!("derive-packed");

/// The sandbox bounds of one plugin instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sandbox {
    /// CPU time of one call, in milliseconds (rounded up to whole `EPOCH_TICK`s).
    pub call_deadline_ms: u64,
    /// Linear memory of the instance, all memories together.
    pub memory_bytes_max: usize,
    /// What one host call may return to the plugin (e.g. a SQL query's rows), in bytes.
    pub host_result_bytes_max: usize,
    /// What one transaction may make the host hold until it commits (queued key-value
    /// writes), in bytes.
    pub host_txn_bytes_max: usize,
}

/// Whether an interface name a component exports (`flow:plugin/sink@0.1.0`) is
/// semver-compatible with this host's (`flow:plugin/sink@0.1.1`): the same interface, on the
/// same track (for 0.x, the same minor version), as wasmtime links them.
fn compatible(exported: &str, ours: &str) -> bool {
    let track = |name: &str| -> Option<(String, String)> {
        let (iface, version) = name.split_once('@')?;
        let mut parts = version.split('.');
        let major = parts.next()?;
        let track = match major {
            "0" => format!("0.{}", parts.next()?),
            m => m.to_string(),
        };
        Some((iface.to_string(), track))
    };
    let theirs = track(exported);
    exported == ours || (theirs.is_some() && theirs == track(ours))
}

/// The plugin worlds of `wit/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum World {
    Derivation,
    Capture,
    Materialization,
}

impl World {
    /// The interface a component of this world exports.
    pub fn export(self) -> &'static str {
        match self {
            World::Derivation => wit_interface!("derive"),
            World::Capture => wit_interface!("source"),
            World::Materialization => wit_interface!("sink"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            World::Derivation => "derivation",
            World::Capture => "capture",
            World::Materialization => "materialization",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error(
        "the component implements no known world of {WIT_PACKAGE}: it must export one of \
         {d} or {DERIVE_PACKED} (derivation), {c} (capture) or {m} (materialization); it \
         exports [{0}]",
        d = World::Derivation.export(),
        c = World::Capture.export(),
        m = World::Materialization.export()
    )]
    NoKnownWorld(String),
    #[error(
        "the component imports {import}, which this host grants no plugin, so it could never \
         be instantiated: {hint}"
    )]
    UngrantedImport { import: String, hint: String },
    #[error("the component does not fit the {world} world: {reason}")]
    WorldMismatch { world: &'static str, reason: String },
}

/// The wasmtime engine, linkers per world, and compiled components by digest.
pub struct Engine {
    engine: wasmtime::Engine,
    linker: Linker<PluginCtx>,
    cache_dir: Option<PathBuf>,
    compiled: Mutex<HashMap<String, Component>>,
}

impl Engine {
    /// `cache_dir`: where compiled components are kept across restarts (None: memory only).
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Arc<Self>> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // For profiling plugins: `FLOW_WASM_PERFMAP=1` writes /tmp/perf-PID.map, so `perf
        // report` names the plugin's own functions instead of `[unknown]` JIT addresses.
        if std::env::var_os("FLOW_WASM_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        lower_compile_priority();
        let engine = wasmtime::Engine::new(&config).map_err(anyhow::Error::from)?;

        // One linker serves all worlds: each world's imports are a subset of these.
        let mut linker: Linker<PluginCtx> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(anyhow::Error::from)?;
        // Each capability is served by its grant in the store data.
        use bindings::derivation::flow::plugin::{log, state, types};
        use bindings::materialization::flow::plugin::{fields, http, kv, sql};
        types::add_to_linker::<_, HasSelf<_>>(&mut linker, |c: &mut PluginCtx| c)
            .map_err(anyhow::Error::from)?;
        log::add_to_linker::<_, HasSelf<_>>(&mut linker, |c: &mut PluginCtx| &mut c.log)
            .map_err(anyhow::Error::from)?;
        state::add_to_linker::<_, HasSelf<_>>(&mut linker, |c: &mut PluginCtx| &mut c.state)
            .map_err(anyhow::Error::from)?;
        sql::add_to_linker::<_, HasSelf<_>>(&mut linker, |c: &mut PluginCtx| &mut c.sql)
            .map_err(anyhow::Error::from)?;
        kv::add_to_linker::<_, HasSelf<_>>(&mut linker, |c: &mut PluginCtx| &mut c.kv)
            .map_err(anyhow::Error::from)?;
        fields::add_to_linker::<_, HasSelf<_>>(&mut linker, |c: &mut PluginCtx| &mut c.fields)
            .map_err(anyhow::Error::from)?;
        http::add_to_linker::<_, HasSelf<_>>(&mut linker, |c: &mut PluginCtx| &mut c.http)
            .map_err(anyhow::Error::from)?;
        bindings::capture::flow::plugin::progress::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |c: &mut PluginCtx| &mut c.progress,
        )
        .map_err(anyhow::Error::from)?;

        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
        }
        let this = Arc::new(Engine {
            engine,
            linker,
            cache_dir,
            compiled: Mutex::new(HashMap::new()),
        });
        spawn_ticker(Arc::downgrade(&this));
        Ok(this)
    }

    /// Compile a component (or fetch it from the cache by `digest`). Cranelift runs on rayon's
    /// pool, whose threads run at a lower priority than the host's (see
    /// `lower_compile_priority`), so a deploy never takes CPU from running tasks. Only a component that
    /// implements a known world is compiled into the caches.
    pub fn compile(&self, digest: &str, bytes: &[u8]) -> anyhow::Result<Component> {
        if let Some(c) = self
            .compiled
            .lock()
            .expect("compile cache poisoned")
            .get(digest)
        {
            return Ok(c.clone());
        }
        let file = self
            .cache_dir
            .as_ref()
            .map(|d| d.join(format!("{}.cwasm", digest.replace(':', "-"))));
        let component = match file
            .as_ref()
            .filter(|f| f.exists())
            .map(|f| self.deserialize(f))
        {
            Some(Ok(c)) => c,
            _ => {
                if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
                    return Err(EngineError::NotAComponent(
                        "the file does not start with the WebAssembly magic bytes (\\0asm): it is not WebAssembly at all".into(),
                    )
                    .into());
                }
                if wasmparser_is_core_module(bytes) {
                    return Err(EngineError::NotAComponent(
                        "this is a core WebAssembly module; build a component (e.g. target wasm32-wasip2, or `wasm-tools component new`)".into(),
                    )
                    .into());
                }
                // Before compiling (seconds to a minute for a large component): what it
                // imports and exports, by name.
                precheck::check(bytes)?;
                let c = Component::new(&self.engine, bytes)
                    .map_err(|e| EngineError::NotAComponent(format!("{e:#}")))?;
                // A component of no known world is refused before it is cached anywhere.
                self.world_of(&c)?;
                if let Some(f) = &file {
                    // A failed cache write costs a recompile next start, nothing more.
                    if let Ok(serialized) = c.serialize() {
                        let tmp = f.with_extension("tmp");
                        if std::fs::write(&tmp, serialized).is_ok() {
                            let _ = std::fs::rename(&tmp, f);
                        }
                    }
                }
                c
            }
        };
        self.compiled
            .lock()
            .expect("compile cache poisoned")
            .insert(digest.to_string(), component.clone());
        Ok(component)
    }

    #[allow(unsafe_code)]
    fn deserialize(&self, file: &std::path::Path) -> anyhow::Result<Component> {
        // SAFETY: the file was written by `Component::serialize` of this host into its own
        // data directory, named by the digest of its source; wasmtime additionally checks that
        // it was produced by a compatible engine and configuration.
        unsafe { Component::deserialize_file(&self.engine, file) }.map_err(anyhow::Error::from)
    }

    /// Whether a derivation component exports the optional `migrate` interface.
    pub fn exports_migrate(&self, component: &Component) -> bool {
        self.exports(component, wit_interface!("migrate"))
    }

    /// Whether a component exports `interface` (or a semver-compatible version of it).
    pub(crate) fn exports(&self, component: &Component, interface: &str) -> bool {
        component
            .component_type()
            .exports(&self.engine)
            .any(|(name, _)| compatible(name, interface))
    }

    /// Which world a component implements, checking that its imports can all be satisfied and
    /// that its exports have the types of that world.
    pub fn world_of(&self, component: &Component) -> Result<World, EngineError> {
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let packed = exports.iter().any(|e| compatible(e, DERIVE_PACKED));
        let world = [World::Derivation, World::Capture, World::Materialization]
            .into_iter()
            .find(|w| {
                (packed && *w == World::Derivation)
                    || exports.iter().any(|e| compatible(e, w.export()))
            })
            .ok_or_else(|| EngineError::NoKnownWorld(exports.join(", ")))?;
        let mismatch = |e: wasmtime::Error| EngineError::WorldMismatch {
            world: world.name(),
            reason: format!("{e:#}"),
        };
        let pre = self.linker.instantiate_pre(component).map_err(mismatch)?;
        match world {
            World::Derivation if packed => {
                bindings::derivation_packed::DerivationPackedPre::new(pre)
                    .map(drop)
                    .map_err(mismatch)?
            }
            World::Derivation => bindings::derivation::DerivationPre::new(pre)
                .map(drop)
                .map_err(mismatch)?,
            World::Capture => bindings::capture::CapturePre::new(pre)
                .map(drop)
                .map_err(mismatch)?,
            World::Materialization => bindings::materialization::MaterializationPre::new(pre)
                .map(drop)
                .map_err(mismatch)?,
        }
        Ok(world)
    }

    fn new_store(&self, log: LogSink, sandbox: &Sandbox) -> wasmtime::Store<PluginCtx> {
        let ctx = PluginCtx {
            wasi: wasi::sealed(&log),
            table: wasmtime::component::ResourceTable::new(),
            limiter: Limiter {
                memory_bytes_max: sandbox.memory_bytes_max,
                memory_bytes: 0,
                hit_memory_cap: false,
            },
            log: log::LogGrant(log),
            state: state::StateGrant {
                access: None,
                result_bytes_max: sandbox
                    .host_result_bytes_max
                    .min(sandbox.memory_bytes_max / 16),
                deadline: None,
            },
            sql: sql::SqlGrant {
                access: None,
                bounds: SqlBounds {
                    deadline: std::time::Instant::now(),
                    deadline_ms: sandbox.call_deadline_ms,
                    result_bytes_max: sandbox.host_result_bytes_max,
                    txn_bytes_max: sandbox.host_txn_bytes_max,
                },
            },
            kv: Default::default(),
            fields: Default::default(),
            http: Default::default(),
            progress: Default::default(),
        };
        let mut store = wasmtime::Store::new(&self.engine, ctx);
        store.limiter(|c| &mut c.limiter);
        store.epoch_deadline_trap();
        store
    }

    fn deadline_ticks(sandbox: &Sandbox) -> u64 {
        (sandbox.call_deadline_ms / EPOCH_TICK.as_millis() as u64).max(1)
    }
}

/// Advance the epoch every tick while the engine lives.
fn spawn_ticker(engine: Weak<Engine>) {
    std::thread::Builder::new()
        .name("flow-epoch".into())
        .spawn(move || {
            while let Some(e) = engine.upgrade() {
                e.engine.increment_epoch();
                drop(e);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("failed to spawn the epoch thread");
}

/// A core module starts with the magic and version 1; a component with the magic and a
/// different version/layer word.
/// Plugin compilation (wasmtime's parallel compile runs on rayon's global pool) gets the
/// CPU the running tasks leave: each pool thread is niced to `COMPILE_NICE`. Measured with
/// `flow bench --suite latency`: a deploy's compile on both cores was the worst latency of a
/// hot-swap (the cut-over itself costs under a millisecond). The pool is set up once per
/// process; if something built it before, compiles run at normal priority.
fn lower_compile_priority() {
    const COMPILE_NICE: i32 = 10;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("flow-compile-{i}"))
            .start_handler(|_| {
                // Linux: a thread id names one thread for PRIO_PROCESS.
                let _ = rustix::process::setpriority_process(
                    Some(rustix::thread::gettid()),
                    COMPILE_NICE,
                );
            })
            .build_global();
    });
}

fn wasmparser_is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[0..4] == b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    #[test]
    fn interfaces_match_on_their_semver_track() {
        use super::compatible;
        assert!(compatible(
            "flow:plugin/sink@0.1.0",
            "flow:plugin/sink@0.1.1"
        ));
        assert!(compatible(
            "flow:plugin/sink@0.1.1",
            "flow:plugin/sink@0.1.1"
        ));
        assert!(!compatible(
            "flow:plugin/sink@0.2.0",
            "flow:plugin/sink@0.1.1"
        ));
        assert!(!compatible(
            "flow:plugin/derive@0.1.0",
            "flow:plugin/sink@0.1.1"
        ));
        assert!(!compatible("flow:plugin/sink", "flow:plugin/sink@0.1.1"));
        assert!(compatible("a:b/c@1.2.0", "a:b/c@1.0.0"));
        assert!(!compatible("a:b/c@2.0.0", "a:b/c@1.0.0"));
    }

    use super::*;

    #[test]
    fn wit_package_matches_the_wit_file() {
        let wit = include_str!("../../../wit/flow.wit");
        assert!(
            wit.lines()
                .any(|l| l.trim() == format!("package {WIT_PACKAGE};")),
            "wit/flow.wit does not declare `package {WIT_PACKAGE};`: update wit_version! with \
             the WIT version"
        );
        assert_eq!(
            World::Derivation.export(),
            WIT_PACKAGE.replace(":plugin@", ":plugin/derive@")
        );
    }
}
