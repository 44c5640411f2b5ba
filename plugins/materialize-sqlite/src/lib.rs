//! Materializes collections into SQLite tables through the host's `sql` capability: the SDK's
//! SQL tables (`flow_sdk::sql_tables`) in the SQLite dialect.
//!
//! Each binding's `resource.table` names a table with one column per key location (named
//! after the pointer, `/a/b` -> `a_b`), one column per other top-level property of the
//! collection schema (INTEGER, REAL or TEXT by its type; objects and arrays as JSON text), and
//! `flow_document` holding the whole document. Standard updates keep one row per key (upserted
//! or deleted); `deltaUpdates` appends one row per combined delta. The checkpoint lives in
//! `flow_checkpoints`, written in the same transaction as the rows, so the table is exactly
//! once.
//!
//! Build: cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml

flow_sdk::export_materialization!(flow_sdk::sql_tables::SqlTables<flow_sdk::sql_tables::Sqlite>);
