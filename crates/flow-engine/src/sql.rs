//! The `sql` capability: a database connection the host owns, granted to a connector whose
//! endpoint names a destination.

use super::bindings::materialization::flow::plugin::sql;
use super::bindings::{SqlRows, SqlValue};
use std::time::Instant;

/// The bounds of one host SQL call, set from the plugin call it is part of: a statement is
/// interrupted when the call's CPU deadline passes (so host time counts against it), and a
/// query may return at most `result_bytes_max` bytes, counted as rows are read.
#[derive(Clone, Copy, Debug)]
pub struct SqlBounds {
    pub deadline: Instant,
    /// The deadline as configured, for messages.
    pub deadline_ms: u64,
    pub result_bytes_max: usize,
    /// What one transaction may queue in the host until it commits (`kv` writes).
    pub txn_bytes_max: usize,
}

/// A SQL connection owned by the host, inside a transaction the host controls. Every method
/// must stop at `bounds`: past the deadline or the result cap it returns an error naming the
/// limit, having kept no more than the cap in memory.
pub trait SqlAccess: Send {
    fn execute(
        &mut self,
        statement: &str,
        params: &[SqlValue],
        bounds: &SqlBounds,
    ) -> Result<u64, String>;
    fn execute_many(
        &mut self,
        statement: &str,
        rows: &[Vec<SqlValue>],
        bounds: &SqlBounds,
    ) -> Result<u64, String>;
    fn query(
        &mut self,
        statement: &str,
        params: &[SqlValue],
        bounds: &SqlBounds,
    ) -> Result<SqlRows, String>;
    /// Queue a statement whose outcome is not needed, to run in order with the others (by
    /// default: run it now). Its error is the next waiting call's, and fails the commit.
    fn send(
        &mut self,
        statement: String,
        params: Vec<SqlValue>,
        bounds: &SqlBounds,
    ) -> Result<(), String> {
        self.execute(&statement, &params, bounds).map(drop)
    }
}

const NO_SQL: &str = "this task was granted no database: its endpoint configuration names none";

/// What a plugin instance was granted of `sql`: the destination its endpoint names, if any,
/// and the bounds of the current call.
pub(crate) struct SqlGrant {
    pub(crate) access: Option<Box<dyn SqlAccess>>,
    pub(crate) bounds: SqlBounds,
}

impl SqlGrant {
    fn access(&mut self) -> Result<(&mut dyn SqlAccess, SqlBounds), String> {
        let bounds = self.bounds;
        match self.access.as_deref_mut() {
            Some(a) => Ok((a, bounds)),
            None => Err(NO_SQL.to_string()),
        }
    }
}

impl sql::Host for SqlGrant {
    fn execute(&mut self, statement: String, params: Vec<SqlValue>) -> Result<u64, String> {
        let (sql, bounds) = self.access()?;
        sql.execute(&statement, &params, &bounds)
    }
    fn execute_many(
        &mut self,
        statement: String,
        param_rows: Vec<Vec<SqlValue>>,
    ) -> Result<u64, String> {
        let (sql, bounds) = self.access()?;
        sql.execute_many(&statement, &param_rows, &bounds)
    }
    fn query(&mut self, statement: String, params: Vec<SqlValue>) -> Result<SqlRows, String> {
        let (sql, bounds) = self.access()?;
        sql.query(&statement, &params, &bounds)
    }
    fn send(&mut self, statement: String, params: Vec<SqlValue>) -> Result<(), String> {
        let (sql, bounds) = self.access()?;
        sql.send(statement, params, &bounds)
    }
}
