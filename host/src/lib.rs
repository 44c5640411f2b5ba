//! Flow: a WebAssembly-plugin stream transformation host. See ARCHITECTURE.md for the map.

pub mod api;
pub mod bench;
pub mod bench_combiner;
pub mod bench_fragments;
pub mod bench_latency;
pub mod catalog;
pub mod cli;
pub mod connector;
pub mod derive;
pub mod doc;
pub mod engine;
pub mod fragment;
pub mod journal;
pub mod limits;
pub mod materialize;
pub mod plugin;
pub mod runtime;
pub mod storage;
pub mod testing;

pub use limits::Limits;
pub use runtime::Host;
