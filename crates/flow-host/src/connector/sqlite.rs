//! The `sql` capability over SQLite: the host owns the connection and its transactions.
//!
//! A plugin may run any statement except those that would escape the host's control:
//! transaction control (the host begins and commits), and ATTACH (another file). Both are
//! refused with the reason.

use super::Destination;
use anyhow::Context;
use flow_engine::{SqlAccess, SqlRows, SqlValue};
use rusqlite::types::{Value as Sv, ValueRef};
use rusqlite::{Connection, params_from_iter};
use serde_json::Value;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A SQLite database shared by the task (which runs transactions) and its plugin.
#[derive(Clone)]
pub(super) struct Sqlite {
    conn: Arc<Mutex<Connection>>,
}

impl Destination for Sqlite {
    /// `config.path`: the database file (made absolute by `catalog::load`), created if missing.
    fn open(config: &Value) -> anyhow::Result<Self> {
        let path = config.get("path").and_then(Value::as_str).context(
            "the sqlite connector needs `path` in the endpoint config: the database file",
        )?;
        Self::open_file(Path::new(path))
    }

    fn begin(&self) -> anyhow::Result<()> {
        self.lock()
            .execute_batch("BEGIN IMMEDIATE")
            .context("failed to begin a SQLite transaction")
    }

    fn commit(&self) -> anyhow::Result<()> {
        self.lock()
            .execute_batch("COMMIT")
            .context("failed to commit the SQLite transaction")
    }

    fn rollback(&self) {
        let conn = self.lock();
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }

    fn grant(&self) -> Box<dyn SqlAccess> {
        Box::new(self.clone())
    }
}

impl Sqlite {
    fn open_file(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        let conn = Connection::open(path)
            .with_context(|| format!("failed to open SQLite database {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // No other database files: a plugin's reach is this database only.
        conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0)?;
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().expect("sqlite connection poisoned")
    }

    fn check_statement(statement: &str) -> Result<(), String> {
        let first = statement
            .trim_start()
            .split(|c: char| !c.is_ascii_alphabetic())
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        if matches!(
            first.as_str(),
            "BEGIN"
                | "COMMIT"
                | "END"
                | "ROLLBACK"
                | "SAVEPOINT"
                | "RELEASE"
                | "VACUUM"
                | "ATTACH"
                | "DETACH"
        ) {
            return Err(format!(
                "statement {first} is not allowed: the host owns transactions and the connection"
            ));
        }
        Ok(())
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
    fn execute(&mut self, statement: &str, params: &[SqlValue]) -> Result<u64, String> {
        Self::check_statement(statement)?;
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(statement).map_err(|e| e.to_string())?;
        let n = stmt
            .execute(params_from_iter(params.iter().map(to_sql)))
            .map_err(|e| e.to_string())?;
        Ok(n as u64)
    }

    fn execute_many(&mut self, statement: &str, rows: &[Vec<SqlValue>]) -> Result<u64, String> {
        Self::check_statement(statement)?;
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(statement).map_err(|e| e.to_string())?;
        let mut n = 0u64;
        for (i, params) in rows.iter().enumerate() {
            n += stmt
                .execute(params_from_iter(params.iter().map(to_sql)))
                .map_err(|e| format!("parameter row {}: {e}", i + 1))? as u64;
        }
        Ok(n)
    }

    fn query(&mut self, statement: &str, params: &[SqlValue]) -> Result<SqlRows, String> {
        Self::check_statement(statement)?;
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(statement).map_err(|e| e.to_string())?;
        let columns: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
        let n = columns.len();
        let mut rows = stmt
            .query(params_from_iter(params.iter().map(to_sql)))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| e.to_string())? {
            out.push(
                (0..n)
                    .map(|i| row.get_ref(i).map(from_sql).unwrap_or(SqlValue::Null))
                    .collect(),
            );
        }
        Ok(SqlRows { columns, rows: out })
    }
}
