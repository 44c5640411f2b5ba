//! Version 1 of the counter derivation (see ../body.rs), for hot-swap and rollback tests.
//!
//! Build: cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml

const VERSION: u32 = 1;

include!("../../body.rs");
