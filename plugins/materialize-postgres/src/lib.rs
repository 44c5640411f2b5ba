//! Materializes collections into PostgreSQL tables through the host's `sql` capability: the
//! SDK's SQL tables (`flow_sdk::sql_tables`) in the PostgreSQL dialect. The host owns the
//! connection and its credentials (`endpoint.connector: postgres`); this plugin sees only
//! statements and rows.
//!
//! Each binding's `resource.table` names a table in the connection's current schema with one
//! column per field the catalog selects (key, top-level properties, projections, `fields`),
//! typed from the collection schema
//! (BIGINT, DOUBLE PRECISION, BOOLEAN, TEXT, TIMESTAMPTZ for `format: date-time`, JSONB for
//! objects, arrays and mixed types), the primary key on the collection key, and
//! `flow_document JSONB`. The checkpoint and a fence live in `flow_checkpoints`, written in the
//! same transaction as the rows: exactly once, and an instance that outlived a restart or a
//! swap cannot commit.
//!
//! Build: cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml

flow_sdk::export_materialization!(flow_sdk::sql_tables::SqlTables<flow_sdk::sql_tables::Postgres>);
