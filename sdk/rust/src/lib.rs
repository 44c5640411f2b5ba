//! Write Flow plugins in Rust.
//!
//! Plugin authors implement a trait over [`serde_json::Value`] and call one export macro; the
//! WebAssembly component plumbing (generated from `wit/` by wit-bindgen) stays inside this
//! crate. Build for `wasm32-wasip2`: a `cdylib` built for that target is a component.
//!
//! # A complete derivation
//!
//! ```no_run
//! // Cargo.toml: [lib] crate-type = ["cdylib"]; [dependencies] flow-sdk = { path = "..." }
//! // Build:      cargo build --release --target wasm32-wasip2
//! use flow_sdk::{Derivation, DerivationSpec, Error, Publisher, Source, json, state};
//!
//! /// Keeps a lifetime total per customer in host-managed state.
//! struct Totals;
//!
//! impl Derivation for Totals {
//!     fn open(_spec: DerivationSpec) -> Result<Self, Error> {
//!         Ok(Totals)
//!     }
//!
//!     fn transform(&mut self, source: Source<'_>, out: &mut Publisher) -> Result<(), Error> {
//!         let amount = source.doc["amount"].as_f64().ok_or_else(|| Error::new("amount must be a number"))?;
//!         let total = state::get(&source.key).and_then(|s| s.as_f64()).unwrap_or(0.0) + amount;
//!         state::set(&source.key, &json!(total));
//!         out.publish(&json!({"customer": source.doc["customer"], "total": total}));
//!         Ok(())
//!     }
//! }
//!
//! flow_sdk::export_derivation!(Totals);
//! ```
//!
//! Materializations implement [`Materialization`] and use [`sql`]; see
//! `plugins/materialize-sqlite` for a complete one. Captures implement [`Capture`] and use
//! [`http`] or [`sql`]; see `plugins/source-http`.

extern crate self as flow_sdk;

/// Every plugin's allocator, unless it turns off this crate's default feature `talc`: a plugin
/// allocates for every document it reads and writes, and on `wasm32` talc does that work in
/// less time than Rust's default, dlmalloc (`flow bench --suite derive`: the pass-through
/// plugin 0.64x -> 0.75x of native Rust; see docs/benchmarks.md). With
/// `default-features = false` a plugin keeps dlmalloc or sets its own `#[global_allocator]`.
#[cfg(all(
    feature = "talc",
    target_family = "wasm",
    not(target_feature = "atomics")
))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

pub use serde;
pub use serde_json::{self, Value, json};

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

#[doc(hidden)]
pub mod derivation_bindings {
    wit_bindgen::generate!({
        path: "wit",
        // The packed derivation contract (WIT 0.1.5): a call's documents in a few buffers.
        world: "flow:plugin/derivation-packed",
        pub_export_macro: true,
        export_macro_name: "__export_derivation_world",
        default_bindings_module: "flow_sdk::derivation_bindings",
        runtime_path: "flow_sdk::__wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub mod migrating_bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "flow:plugin/migration",
        pub_export_macro: true,
        export_macro_name: "__export_migration_world",
        default_bindings_module: "flow_sdk::migrating_bindings",
        runtime_path: "flow_sdk::__wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub mod materialization_bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "flow:plugin/materialization",
        pub_export_macro: true,
        export_macro_name: "__export_materialization_world",
        default_bindings_module: "flow_sdk::materialization_bindings",
        runtime_path: "flow_sdk::__wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub mod capture_bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "flow:plugin/capture",
        pub_export_macro: true,
        export_macro_name: "__export_capture_world",
        default_bindings_module: "flow_sdk::capture_bindings",
        runtime_path: "flow_sdk::__wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub mod capture;
#[doc(hidden)]
pub mod derivation;
pub mod kv_values;
#[doc(hidden)]
pub mod materialization;
#[doc(hidden)]
pub mod migration;
pub mod sql_tables;
pub mod time;

pub use capture::{Capture, CaptureBinding, CaptureSpec, Captured, Poll, http, source_time};
pub use derivation::{
    Derivation, DerivationSpec, Json, Publisher, Source, StateKey, TransformSpec, state,
};
pub use materialization::{
    Binding, Doc, Loaded, Materialization, MaterializationSpec, Stored, sql,
};
pub use migration::Migrate;

/// An error a plugin returns: the host fails (or routes) the transaction and reports the
/// message, naming the offending document when [`Error::document`] is set.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub message: String,
    /// Index of the document in the current batch; the SDK sets it for errors returned while
    /// handling a document.
    pub document: Option<u32>,
}

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            document: None,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::new(format!("JSON: {e}"))
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::new(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::new(message)
    }
}

/// Write a line to the plugin's log (`flow plugin logs NAME`).
/// The JSON text of `v`, written straight into a string: `Value`'s `Display` (`to_string()`)
/// goes through the formatting machinery and, in a plugin, cost 15% of a derivation's time.
pub(crate) fn json_text(v: &serde_json::Value) -> String {
    // Serializing a `Value` cannot fail: its map keys are strings.
    serde_json::to_string(v).unwrap_or_default()
}

pub fn log(message: &str) {
    derivation_bindings::flow::plugin::log::write(
        derivation_bindings::flow::plugin::log::Level::Info,
        message,
    )
}

/// Write a warning to the plugin's log.
pub fn warn(message: &str) {
    derivation_bindings::flow::plugin::log::write(
        derivation_bindings::flow::plugin::log::Level::Warn,
        message,
    )
}

#[doc(hidden)]
pub use capture as __capture;
#[doc(hidden)]
pub use derivation as __derivation;
#[doc(hidden)]
pub use materialization as __materialization;
#[doc(hidden)]
pub use migration as __migration;
