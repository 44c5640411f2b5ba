//! Host-owned destinations, granted to connector plugins through the `sql` capability (SQLite,
//! PostgreSQL, MySQL) or the `kv` capability (Redis).
//!
//! The only place that opens destination connections. A destination is one file here that
//! implements `Destination`, plus one row in `CONNECTORS`; an endpoint names its connector
//! (`endpoint.connector`, resolved by `catalog::build`), and the materialization task opens it
//! with `open`. The host runs every destination transaction; the plugin reads and writes inside
//! it through the grant.

pub(crate) mod http;
mod mysql;
mod pipeline;
mod postgres;
mod redis;
pub(crate) mod sqlite;

use flow_engine::{SqlAccess, SqlBounds, SqlRows, SqlValue};
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
    /// The connection as a plugin's capability (`sql`, or `kv`): statements run inside the
    /// host's transaction; transaction control and reaching other databases are refused.
    fn grant(&self) -> Grant;
    /// Whether the connection still works: after a failed transaction, false means the
    /// destination went away (the task retries), not that the transaction was at fault.
    fn available(&self) -> bool {
        true
    }
    /// Whether its work is done by a server, outside this process (not SQLite, which the
    /// task's own thread writes): then reading the next batch while this one is written
    /// overlaps the server's work with the host's.
    fn server(&self) -> bool {
        true
    }
}

/// What a destination grants its plugin: a SQL database, or a key-value store.
pub(crate) enum Grant {
    Sql(Box<dyn SqlAccess>),
    Kv(Box<dyn flow_engine::KvAccess>),
}

impl Grant {
    /// The SQL database granted, for callers that opened a SQL connector themselves.
    pub(crate) fn sql(self) -> Option<Box<dyn SqlAccess>> {
        match self {
            Grant::Sql(sql) => Some(sql),
            Grant::Kv(_) => None,
        }
    }
}

/// Bytes a SQL value takes in a query result, as `hostResultBytesMax` counts them.
pub(crate) fn result_value_bytes(v: &SqlValue) -> usize {
    match v {
        SqlValue::Null => 1,
        SqlValue::Integer(_) | SqlValue::Real(_) => 8,
        SqlValue::Text(s) => s.len(),
        SqlValue::Blob(b) => b.len(),
    }
}

/// A query's result as a connector reads it, counted against `hostResultBytesMax` (column
/// names and every value) row by row, so no connector holds more than the cap.
struct CappedRows {
    result: SqlRows,
    bytes: usize,
    max: usize,
}

impl CappedRows {
    fn new(columns: Vec<String>, bounds: &SqlBounds) -> Self {
        CappedRows {
            bytes: columns.iter().map(String::len).sum(),
            max: bounds.result_bytes_max,
            result: SqlRows {
                columns,
                rows: Vec::new(),
            },
        }
    }

    /// Add a row, or say that the result is over the cap.
    fn push(&mut self, row: Vec<SqlValue>) -> Result<(), String> {
        self.bytes += row.iter().map(result_value_bytes).sum::<usize>();
        if self.bytes > self.max {
            return Err(format!(
                "the query's result is over the cap of {} bytes per host call (hostResultBytesMax) after {} rows: select fewer rows or columns, or page with LIMIT",
                self.max,
                self.result.rows.len()
            ));
        }
        self.result.rows.push(row);
        Ok(())
    }
}

/// A plugin statement stopped at its call's deadline.
fn deadline_error(bounds: &SqlBounds) -> String {
    format!(
        "the statement was interrupted at the plugin's CPU deadline of {} ms per call, which host SQL counts against",
        bounds.deadline_ms
    )
}

/// Run `f` inside a transaction of `db` (when there is a destination database), committing
/// only if it succeeds and rolling back if it fails.
pub(crate) fn in_txn<R>(
    db: Option<&dyn Destination>,
    f: impl FnOnce() -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    if let Some(db) = db {
        db.begin()?;
    }
    match f() {
        Ok(r) => {
            if let Some(db) = db {
                db.commit()?;
            }
            Ok(r)
        }
        Err(e) => {
            if let Some(db) = db {
                db.rollback();
            }
            Err(e)
        }
    }
}

/// How a connector opens a connection from an endpoint's config.
type Open = fn(&Value) -> anyhow::Result<Box<dyn Destination>>;

/// One destination kind: its name in `endpoint.connector`, how to check its config without
/// connecting (at publish), and how to open it.
struct Connector {
    name: &'static str,
    check: fn(&Value) -> anyhow::Result<()>,
    open: Open,
    /// Open it as a capture's source (begin and commit do nothing: each statement runs on
    /// its own), if it can be one.
    source: Option<Open>,
}

const CONNECTORS: &[Connector] = &[
    Connector {
        name: "sqlite",
        check: |_| Ok(()),
        open: |config| Ok(Box::new(sqlite::Sqlite::open(config)?)),
        source: None,
    },
    Connector {
        name: "postgres",
        check: postgres::check,
        open: |config| Ok(Box::new(postgres::Postgres::open(config)?)),
        source: Some(|config| Ok(Box::new(postgres::Postgres::open_source(config)?))),
    },
    Connector {
        name: "mysql",
        check: mysql::check,
        open: |config| Ok(Box::new(mysql::Mysql::open(config)?)),
        source: None,
    },
    Connector {
        name: "redis",
        check: redis::check,
        open: |config| Ok(Box::new(redis::Redis::open(config)?)),
        source: None,
    },
];

/// A destination that cannot be reached (connection refused or lost, a timeout), as opposed
/// to one that refused something: a task whose destination is unavailable retries with
/// backoff instead of failing, and resumes from its checkpoint once it is back.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unavailable(pub String);

/// Whether `e` is a destination being unavailable (`Unavailable` anywhere in its chain).
pub(crate) fn is_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Unavailable>())
}

/// How messages name a destination: `postgres endpoint flow@127.0.0.1:5432/views`.
fn endpoint_name(connector: &str, name: &str) -> String {
    format!("{connector} endpoint {name}")
}

/// A secret of an endpoint config (`field`, e.g. `password`): `{env: NAME}` reads the host's
/// environment variable, `{file: PATH}` a file (its content, trailing newline trimmed). An
/// inline value is refused: the catalog is readable through the API, and a secret must never
/// be. The secret itself never appears in a message; its reference does.
fn secret(config: &Value, field: &str) -> anyhow::Result<Option<String>> {
    config
        .get(field)
        .map(|v| secret_value(field, v))
        .transpose()
}

/// The secret `v` (the value of `field`) refers to, read now (see `secret`).
fn secret_value(field: &str, v: &Value) -> anyhow::Result<String> {
    secret_form(field, v)?;
    let reference = |what: &str, name: &str| format!("`{field}` ({what} {name})");
    if let Some(name) = v.get("env").and_then(Value::as_str) {
        return std::env::var(name).map_err(|_| {
            anyhow::anyhow!(
                "{}: the host has no environment variable {name} (set it where `flow serve` runs)",
                reference("environment variable", name)
            )
        });
    }
    let path = v.get("file").and_then(Value::as_str).unwrap_or_default();
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot be read: {e}", reference("file", path)))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// Check that `v`, the value of `field`, is written as a secret is: `{env: NAME}` or `{file:
/// PATH}` (at publish, without reading it).
fn secret_form(field: &str, v: &Value) -> anyhow::Result<()> {
    match v {
        Value::Object(m)
            if m.len() == 1
                && (m.get("env").is_some_and(Value::is_string)
                    || m.get("file").is_some_and(Value::is_string)) =>
        {
            Ok(())
        }
        _ => anyhow::bail!(
            "`{field}` must be {{env: NAME}} or {{file: PATH}}: a secret is never written inline in a catalog, which the API shows"
        ),
    }
}

/// A field of an endpoint config that must be a non-empty string.
fn required(config: &Value, connector: &str, field: &str) -> anyhow::Result<String> {
    config
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            anyhow::anyhow!("the {connector} connector needs `{field}` in the endpoint config")
        })
}

/// An endpoint's `address`: `host:port`, or `host` and the connector's default port.
fn address(config: &Value, connector: &str, default_port: u16) -> anyhow::Result<(String, u16)> {
    let address = required(config, connector, "address")?;
    Ok(match address.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse::<u16>().map_err(|_| {
                anyhow::anyhow!("`address` {address:?}: the port {p:?} is not a port number")
            })?,
        ),
        None => (address, default_port),
    })
}

/// A SQL server an endpoint names (PostgreSQL, MySQL): `address`, `database`, `user`, and
/// `password` as a secret reference (`secret`).
struct Server {
    host: String,
    port: u16,
    database: String,
    user: String,
    password: Option<String>,
}

impl Server {
    fn of(config: &Value, connector: &str, default_port: u16) -> anyhow::Result<Self> {
        let (host, port) = address(config, connector, default_port)?;
        Ok(Server {
            host,
            port,
            database: required(config, connector, "database")?,
            user: required(config, connector, "user")?,
            password: secret(config, "password")?,
        })
    }

    /// `user@host:port/database`, for messages (never the password).
    fn name(&self) -> String {
        format!(
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }
}

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

/// Check that this host has connector `name` and that `config` is a config of it (at publish,
/// before anything is recorded; nothing is connected to).
pub(crate) fn check(name: &str, config: &Value) -> Result<(), String> {
    (find(name)?.check)(config).map_err(|e| format!("{e:#}"))
}

/// Check a capture's source endpoint without connecting (at publish): its connector must be
/// one that can be a source.
pub(crate) fn check_source(name: &str, config: &Value) -> Result<(), String> {
    let c = find(name)?;
    if c.source.is_none() {
        let sources: Vec<&str> = CONNECTORS
            .iter()
            .filter(|c| c.source.is_some())
            .map(|c| c.name)
            .collect();
        return Err(format!(
            "connector '{name}' cannot be a capture's source: this host captures from {}",
            sources.join(", ")
        ));
    }
    (c.check)(config).map_err(|e| format!("{e:#}"))
}

/// Open connector `name` as a capture's source.
pub(crate) fn open_source(name: &str, config: &Value) -> anyhow::Result<Box<dyn Destination>> {
    let c = find(name).map_err(anyhow::Error::msg)?;
    let open = c
        .source
        .ok_or_else(|| anyhow::anyhow!("connector '{name}' cannot be a capture's source"))?;
    open(config)
}

/// Open the destination of connector `name`, configured by an endpoint's `config`.
pub(crate) fn open(name: &str, config: &Value) -> anyhow::Result<Box<dyn Destination>> {
    (find(name).map_err(anyhow::Error::msg)?.open)(config)
}
