//! End-to-end tests: one binary, one module per area. `build.rs` builds the plugins first.

mod api_schema;
mod bad_input;
mod batching;
mod captures;
mod captures_postgres;
mod catalogs;
mod crash;
mod dashboard;
mod destinations;
mod disk_full;
mod e2e;
mod fragments;
mod lifecycle;
mod mysql;
mod operate;
mod ordering;
mod partitions;
mod plugin_projects;
mod policies;
mod postgres;
mod publish_crash;
mod python;
mod redis;
mod reductions;
mod sandbox;
mod sql_capability;

pub use flow_tests::{Served, plugin_bytes, plugins};
