//! The `sql` capability over SQLite: the host owns the connection and its transactions.
//!
//! A plugin may run any statement except those that would escape the host's control. SQLite's
//! own authorizer, which sees every statement as it is compiled (comments, case and spacing
//! make no difference), refuses transaction control (the host begins and commits), ATTACH and
//! DETACH (other files), and pragmas that would weaken durability. A progress handler
//! interrupts a statement when the plugin call's CPU deadline passes, and a query's rows are
//! counted as they are read and refused past the result cap: a plugin cannot make the host
//! hold more than the cap, or run longer than its own deadline.

use super::{CappedRows, Destination, deadline_error};
use anyhow::Context;
use flow_engine::{SqlAccess, SqlBounds, SqlRows, SqlValue};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::{Value as Sv, ValueRef};
use rusqlite::{Connection, params_from_iter};
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Pragmas a plugin may not set: they would weaken durability or the host's control.
const HOST_PRAGMAS: &[&str] = &[
    "synchronous",
    "journal_mode",
    "locking_mode",
    "writable_schema",
    "mmap_size",
];

/// Virtual-machine steps between two checks of the deadline.
const PROGRESS_STEPS: i32 = 1000;

/// A SQLite database shared by the task (which runs transactions) and its plugin.
#[derive(Clone)]
pub(super) struct Sqlite {
    conn: Arc<Mutex<Connection>>,
    guard: Arc<Guard>,
}

/// What the authorizer and progress handler consult.
#[derive(Default)]
struct Guard {
    /// Set while the host runs its own transaction control.
    host: AtomicBool,
    /// When the running plugin statement must stop.
    deadline: Mutex<Option<Instant>>,
    /// What the authorizer refused last, for the error message.
    refused: Mutex<Option<String>>,
}

impl Destination for Sqlite {
    fn server(&self) -> bool {
        false
    }

    /// `config.path`: the database file (made absolute by `catalog::load`), created if missing.
    fn open(config: &Value) -> anyhow::Result<Self> {
        let path = config.get("path").and_then(Value::as_str).context(
            "the sqlite connector needs `path` in the endpoint config: the database file",
        )?;
        Self::open_file(Path::new(path))
    }

    fn begin(&self) -> anyhow::Result<()> {
        // Another process held the database for the whole busy timeout: retried.
        self.host_statement("BEGIN IMMEDIATE")
            .map_err(|e| busy_or_failed("failed to begin a SQLite transaction", e))
    }

    fn commit(&self) -> anyhow::Result<()> {
        self.host_statement("COMMIT")
            .context("failed to commit the SQLite transaction")
    }

    fn rollback(&self) {
        if !self.lock().is_autocommit() {
            let _ = self.host_statement("ROLLBACK");
        }
    }

    fn grant(&self) -> super::Grant {
        super::Grant::Sql(Box::new(self.clone()))
    }
}

/// `e` after `what`: `Unavailable` (the task retries) if SQLite answered that another
/// connection holds the database busy or locked, a plain error otherwise.
fn busy_or_failed(what: &str, e: rusqlite::Error) -> anyhow::Error {
    let why = format!("{what}: {e}");
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            anyhow::Error::new(super::Unavailable(why))
        }
        _ => anyhow::anyhow!(why),
    }
}

impl Sqlite {
    fn open_file(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        let mut conn = Connection::open(path)
            .with_context(|| format!("failed to open SQLite database {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Another process may hold the file (a reader switching it to WAL at the same moment,
        // a writer): that is the destination being busy, which the task retries, not a fault.
        let what = format!("SQLite database {}", path.display());
        let busy = |e| busy_or_failed(&what, e);
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(busy)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(busy)?;
        // No other database files: a plugin's reach is this database only.
        conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0)?;
        let guard = Arc::new(Guard::default());
        let g = guard.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| g.authorize(&ctx)))?;
        let g = guard.clone();
        conn.progress_handler(
            PROGRESS_STEPS,
            Some(move || {
                g.deadline
                    .lock()
                    .expect("sqlite guard poisoned")
                    .is_some_and(|d| Instant::now() >= d)
            }),
        )?;
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
            guard,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().expect("sqlite connection poisoned")
    }

    /// Run one of the host's own transaction statements, which the authorizer lets through.
    fn host_statement(&self, sql: &str) -> rusqlite::Result<()> {
        let conn = self.lock();
        self.guard.host.store(true, Ordering::SeqCst);
        let r = conn.execute_batch(sql);
        self.guard.host.store(false, Ordering::SeqCst);
        r
    }

    /// Run `f` as a plugin statement: under the call's deadline, with errors that say which
    /// bound or rule stopped it.
    fn plugin_statement<R>(
        &self,
        bounds: &SqlBounds,
        f: impl FnOnce(&Connection) -> Result<R, String>,
    ) -> Result<R, String> {
        if Instant::now() >= bounds.deadline {
            return Err(deadline_error(bounds));
        }
        let conn = self.lock();
        *self.guard.deadline.lock().expect("sqlite guard poisoned") = Some(bounds.deadline);
        *self.guard.refused.lock().expect("sqlite guard poisoned") = None;
        let r = f(&conn);
        *self.guard.deadline.lock().expect("sqlite guard poisoned") = None;
        r.map_err(|e| {
            if let Some(what) = self
                .guard
                .refused
                .lock()
                .expect("sqlite guard poisoned")
                .take()
            {
                format!("statement refused: {what}")
            } else if Instant::now() >= bounds.deadline {
                deadline_error(bounds)
            } else {
                e
            }
        })
    }
}

impl Guard {
    fn authorize(&self, ctx: &AuthContext<'_>) -> Authorization {
        if self.host.load(Ordering::SeqCst) {
            return Authorization::Allow;
        }
        let refused = match &ctx.action {
            AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => Some(
                "transaction control is the host's: it begins and commits every destination transaction"
                    .to_string(),
            ),
            AuthAction::Attach { .. } | AuthAction::Detach { .. } => {
                Some("ATTACH and DETACH are refused: a plugin reaches this database only".into())
            }
            AuthAction::Pragma {
                pragma_name,
                pragma_value: Some(_),
            } if HOST_PRAGMAS.contains(&pragma_name.to_ascii_lowercase().as_str()) => Some(
                format!("PRAGMA {pragma_name} is the host's: it keeps the database durable"),
            ),
            _ => None,
        };
        match refused {
            Some(why) => {
                *self.refused.lock().expect("sqlite guard poisoned") = Some(why);
                Authorization::Deny
            }
            None => Authorization::Allow,
        }
    }
}

fn to_sql(v: &SqlValue) -> Sv {
    match v {
        SqlValue::Null => Sv::Null,
        SqlValue::Integer(i) => Sv::Integer(*i),
        SqlValue::Real(f) => Sv::Real(*f),
        SqlValue::Text(s) => Sv::Text(s.clone()),
        SqlValue::Blob(b) => Sv::Blob(b.clone()),
    }
}

fn from_sql(v: ValueRef<'_>) -> SqlValue {
    match v {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i) => SqlValue::Integer(i),
        ValueRef::Real(f) => SqlValue::Real(f),
        ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
    }
}

impl SqlAccess for Sqlite {
    fn execute(
        &mut self,
        statement: &str,
        params: &[SqlValue],
        bounds: &SqlBounds,
    ) -> Result<u64, String> {
        self.plugin_statement(bounds, |conn| {
            let mut stmt = conn.prepare_cached(statement).map_err(|e| e.to_string())?;
            let n = stmt
                .execute(params_from_iter(params.iter().map(to_sql)))
                .map_err(|e| e.to_string())?;
            Ok(n as u64)
        })
    }

    fn execute_many(
        &mut self,
        statement: &str,
        rows: &[Vec<SqlValue>],
        bounds: &SqlBounds,
    ) -> Result<u64, String> {
        self.plugin_statement(bounds, |conn| {
            let mut stmt = conn.prepare_cached(statement).map_err(|e| e.to_string())?;
            let mut n = 0u64;
            for (i, params) in rows.iter().enumerate() {
                n += stmt
                    .execute(params_from_iter(params.iter().map(to_sql)))
                    .map_err(|e| format!("parameter row {}: {e}", i + 1))?
                    as u64;
            }
            Ok(n)
        })
    }

    fn query(
        &mut self,
        statement: &str,
        params: &[SqlValue],
        bounds: &SqlBounds,
    ) -> Result<SqlRows, String> {
        self.plugin_statement(bounds, |conn| {
            let mut stmt = conn.prepare_cached(statement).map_err(|e| e.to_string())?;
            let columns: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
            let n = columns.len();
            let mut result = CappedRows::new(columns, bounds);
            let mut rows = stmt
                .query(params_from_iter(params.iter().map(to_sql)))
                .map_err(|e| e.to_string())?;
            while let Some(row) = rows.next().map_err(|e| e.to_string())? {
                result.push(
                    (0..n)
                        .map(|i| row.get_ref(i).map(from_sql).unwrap_or(SqlValue::Null))
                        .collect(),
                )?;
            }
            Ok(result.result)
        })
    }
}

/// The columns and rows of `query` on the SQLite database at `path`, opened read-only (a
/// catalog test's `materialize` step reads what a materialization wrote): integers and reals
/// as numbers, texts as strings, blobs as base-16 strings.
pub(crate) fn read_rows(
    path: &Path,
    query: &str,
) -> anyhow::Result<(Vec<String>, Vec<Vec<Value>>)> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("failed to open SQLite database {}", path.display()))?;
    let mut stmt = conn.prepare(query)?;
    let columns: Vec<String> = stmt.column_names().map(str::to_string).collect();
    let mut rows = Vec::new();
    let mut cursor = stmt.query([])?;
    while let Some(row) = cursor.next()? {
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            values.push(match row.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => n.into(),
                ValueRef::Real(f) => f.into(),
                ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
                ValueRef::Blob(b) => b
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
                    .into(),
            });
        }
        rows.push(values);
    }
    Ok((columns, rows))
}

#[cfg(test)]
mod test {
    use super::{Destination, Sqlite};

    /// Another connection holding the database's write lock past the busy timeout makes the
    /// destination unavailable (the task retries), not the transaction at fault.
    #[test]
    fn a_database_another_connection_holds_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("views.db");
        let db = Sqlite::open_file(&path).unwrap();
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let e = db.begin().unwrap_err();
        assert!(super::super::is_unavailable(&e), "{e:#}");
        assert!(format!("{e:#}").contains("database is locked"), "{e:#}");
        other.execute_batch("ROLLBACK").unwrap();
        db.begin().unwrap();
        db.rollback();
    }
}
