//! Flow: a WebAssembly-plugin stream transformation host. See ARCHITECTURE.md for the map.
//!
//! Dependencies point one way: `api`, `cli`, `bench`, `fuzz` -> `runtime` -> `task` -> {`connector`,
//! `plugin`, `journal`, `catalog`} -> `storage`, with the `flow-engine` and `flow-doc` crates
//! below everything (`.ci/check-structure` checks it). `cli` and `bench` also use `project`
//! (plugin projects: files and toolchains, no host).

pub mod api;
pub(crate) mod bench;
pub mod catalog;
pub mod catalog_test;
pub mod cli;
pub mod clock;
pub(crate) mod connector;
#[cfg(feature = "fuzz")]
pub mod fuzz;
pub mod journal;
pub mod limits;
pub(crate) mod names;
pub(crate) mod par;
pub mod plugin;
pub mod preview;
pub(crate) mod project;
pub mod runtime;
pub mod storage;
pub(crate) mod task;

pub use limits::Limits;
pub use runtime::{Host, HostOptions};
