//! Documents: JSON pointers, keys, the total order, schema validation, reductions and the
//! combiner.
//!
//! This crate is pure: it performs no I/O beyond the combiner's spill file, and depends on
//! neither tokio, wasmtime, axum nor redb (`.ci/check-structure` checks its dependencies).

pub mod compare;
mod fast_check;
pub mod infer;
pub mod partial;
pub mod ptr;
mod scan;

pub use compare::{compare, compare_by_key};
pub use ptr::Pointer;
pub mod schema;
pub use schema::{Schema, SchemaError, ValidationError};
pub mod reduce;
pub use reduce::{ReduceError, Reduced, Strategy};
pub mod combine;
pub use combine::{Binding, CombineError, Combiner, Drained};
