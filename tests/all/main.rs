//! End-to-end tests: one binary, one module per area. `build.rs` builds the plugins first.

mod bad_input;
mod catalogs;
mod crash;
mod e2e;
mod fragments;
mod lifecycle;
mod ordering;
mod policies;
mod python;
mod reductions;
mod sandbox;

pub use flow_tests::{Served, plugin_bytes, plugins};
