//! Host bindings of `wit/`, generated once per world. Shared interfaces (`types`, `log`, `sql`,
//! `http`) are generated once and reused through `with`, so each has one Rust type and one
//! host implementation.

pub mod derivation {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "flow:plugin/derivation",
    });
}

pub mod derivation_packed {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "flow:plugin/derivation-packed",
        with: {
            "flow:plugin/types": super::derivation::flow::plugin::types,
            "flow:plugin/log": super::derivation::flow::plugin::log,
            "flow:plugin/state": super::derivation::flow::plugin::state,
        },
    });
}

pub mod migrating {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "flow:plugin/migration",
        with: {
            "flow:plugin/types": super::derivation::flow::plugin::types,
            "flow:plugin/log": super::derivation::flow::plugin::log,
        },
    });
}

pub mod materialization {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "flow:plugin/materialization",
        with: {
            "flow:plugin/types": super::derivation::flow::plugin::types,
            "flow:plugin/log": super::derivation::flow::plugin::log,
        },
    });
}

pub mod capture {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "flow:plugin/capture",
        with: {
            "flow:plugin/types": super::derivation::flow::plugin::types,
            "flow:plugin/log": super::derivation::flow::plugin::log,
            "flow:plugin/sql": super::materialization::flow::plugin::sql,
            "flow:plugin/http": super::materialization::flow::plugin::http,
        },
    });
}

pub use derivation::flow::plugin::log::Level as LogLevel;
pub use derivation::flow::plugin::types::PluginError;
pub use materialization::flow::plugin::sql::{Rows as SqlRows, Value as SqlValue};
