//! The WASI context of a plugin: it grants nothing. No preopened directories, environment,
//! arguments or sockets; clocks fixed at zero; deterministic randomness. Stdout and stderr go
//! to the plugin's log.

use super::bindings::LogLevel;
use super::log::{LogSink, LogStream};
use wasmtime_wasi::WasiCtx;

/// A WASI context that grants nothing.
pub(crate) fn sealed(log: &LogSink) -> WasiCtx {
    WasiCtx::builder()
        .stdout(LogStream {
            level: LogLevel::Info,
            sink: log.clone(),
        })
        .stderr(LogStream {
            level: LogLevel::Warn,
            sink: log.clone(),
        })
        .wall_clock(EpochClock)
        .monotonic_clock(EpochClock)
        .secure_random(wasmtime_wasi::Deterministic::new(vec![7; 32]))
        .insecure_random(wasmtime_wasi::Deterministic::new(vec![11; 32]))
        .insecure_random_seed(0)
        .allow_ip_name_lookup(false)
        .allow_tcp(false)
        .allow_udp(false)
        .build()
}

/// A wall clock stuck at the Unix epoch: plugins get no ambient time (DESIGN 5.4); time comes
/// from the documents. A fixed clock also keeps replays deterministic.
struct EpochClock;

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
