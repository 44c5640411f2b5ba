//! Shared harnesses of the end-to-end tests, one file per concern: plugin components built by
//! `build.rs` (`components.rs`), a host served in-process (`served.rs`), `flow serve` as a child
//! process to kill (`proc.rs`), an S3-compatible server (`s3.rs`), a PostgreSQL server
//! (`postgres.rs`), a proxy that simulates an
//! outage (`outage.rs`), a paginated HTTP API of events (`feed.rs`), fragment files on disk
//! (`fragments.rs`), and API calls (`http.rs`).

mod components;
mod feed;
mod fragments;
mod http;
mod mysql;
mod outage;
mod postgres;
mod proc;
mod redis;
mod s3;
mod served;

pub use components::{digest, module_base64, plugin_bytes, plugins};
pub use feed::Feed;
pub use fragments::{fragment_files, tiled_end};
pub use http::{
    collection_head, deploy, documents, free_port, get_json, get_text, publish, read_ndjson,
    wait_for_documents,
};
pub use mysql::{MY_DATABASE, MY_PASSWORD, MY_USER, MyServer};
pub use outage::Outage;
pub use postgres::{PG_DATABASE, PG_PASSWORD, PG_USER, PgServer};
pub use proc::Proc;
pub use redis::{REDIS_PASSWORD, RedisServer};
pub use s3::{S3Server, s3_env};
pub use served::Served;
