//! Materializes collections into Redis through the host's `kv` capability: the SDK's
//! key-value materialization (`flow_sdk::kv_values`). The host owns the connection and its
//! credentials (`endpoint.connector: redis`) and applies each transaction's writes in one
//! MULTI/EXEC; this plugin sees only keys and values.
//!
//! Each binding's `resource` says where its documents go: `prefix` (default: the collection
//! name and `:`) joined with the key's parts, `as: json` (a JSON string, the default) or
//! `as: hash` (a field per top-level property and `flow_document`), and an optional
//! `ttlSeconds`. The checkpoint and the fence live at `flow:checkpoint:<name>` and
//! `flow:fence:<name>`, written in the same MULTI/EXEC: exactly once, and an instance that
//! outlived a restart or a swap cannot commit.
//!
//! Build: cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml

flow_sdk::export_materialization!(flow_sdk::kv_values::KvValues);
