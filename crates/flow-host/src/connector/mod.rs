//! Host-owned destinations, granted to connector plugins through the `sql` capability.
//!
//! The only place that opens destination connections. A destination is one file here that
//! implements `Destination`, plus one row in `CONNECTORS`; an endpoint names its connector
//! (`endpoint.connector`, resolved by `catalog::build`), and the materialization task opens it
//! with `open`. The host runs every destination transaction; the plugin reads and writes inside
//! it through the grant.

mod sqlite;

/// Bytes a SQL value takes in a query result, as `hostResultBytesMax` counts them.
#[cfg(feature = "fuzz")]
pub(crate) use sqlite::size_of as result_value_bytes;

use flow_engine::SqlAccess;
use serde_json::Value;

/// A destination database whose transactions the host controls.
pub(crate) trait Destination: Send {
    /// Connect as the endpoint's `config` says.
    fn open(config: &Value) -> anyhow::Result<Self>
    where
        Self: Sized;
    fn begin(&self) -> anyhow::Result<()>;
    fn commit(&self) -> anyhow::Result<()>;
    /// Undo the open transaction, if any.
    fn rollback(&self);
    /// The connection as a plugin's `sql` capability: statements run inside the host's
    /// transaction; transaction control and reaching other databases are refused.
    fn grant(&self) -> Box<dyn SqlAccess>;
}

/// One destination kind: its name in `endpoint.connector`, and how to open it.
struct Connector {
    name: &'static str,
    open: fn(&Value) -> anyhow::Result<Box<dyn Destination>>,
}

const CONNECTORS: &[Connector] = &[Connector {
    name: "sqlite",
    open: |config| Ok(Box::new(sqlite::Sqlite::open(config)?)),
}];

/// The connector an endpoint names, or why there is none of that name.
fn find(name: &str) -> Result<&'static Connector, String> {
    CONNECTORS.iter().find(|c| c.name == name).ok_or_else(|| {
        let names: Vec<&str> = CONNECTORS.iter().map(|c| c.name).collect();
        format!(
            "unknown connector '{name}': this host has {}",
            names.join(", ")
        )
    })
}

/// Check that this host has connector `name` (at publish, before anything is recorded).
pub(crate) fn check(name: &str) -> Result<(), String> {
    find(name).map(drop)
}

/// Open the destination of connector `name`, configured by an endpoint's `config`.
pub(crate) fn open(name: &str, config: &Value) -> anyhow::Result<Box<dyn Destination>> {
    (find(name).map_err(anyhow::Error::msg)?.open)(config)
}
