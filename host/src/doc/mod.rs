//! Documents: JSON pointers, keys, the total order, schema validation, reductions and the
//! combiner.
//!
//! This module is pure: it performs no I/O beyond the combiner's spill file, and imports
//! neither tokio, wasmtime, axum nor redb. Its files refer to each other with `super::` only,
//! so that it also compiles as a crate of its own (which is how its invariant is checked).

pub mod compare;
pub mod ptr;

pub use compare::{compare, compare_by_key};
pub use ptr::Pointer;
pub mod schema;
pub use schema::{Schema, SchemaError, ValidationError};
pub mod reduce;
pub use reduce::{ReduceError, Reduced, Strategy};
pub mod combine;
pub use combine::{Binding, CombineError, Combiner, Drained};
