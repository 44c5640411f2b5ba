//! The `sql` capability: a database connection the host owns, granted to a connector whose
//! endpoint names a destination.

use super::bindings::materialization::flow::plugin::sql;
use super::bindings::{SqlRows, SqlValue};
use super::ctx::PluginCtx;

/// A SQL connection owned by the host, inside a transaction the host controls.
pub trait SqlAccess: Send {
    fn execute(&mut self, statement: &str, params: &[SqlValue]) -> Result<u64, String>;
    fn execute_many(&mut self, statement: &str, rows: &[Vec<SqlValue>]) -> Result<u64, String>;
    fn query(&mut self, statement: &str, params: &[SqlValue]) -> Result<SqlRows, String>;
}

const NO_SQL: &str = "this task was granted no database: its endpoint configuration names none";

impl sql::Host for PluginCtx {
    fn execute(&mut self, statement: String, params: Vec<SqlValue>) -> Result<u64, String> {
        self.sql
            .as_mut()
            .ok_or(NO_SQL.to_string())?
            .execute(&statement, &params)
    }
    fn execute_many(
        &mut self,
        statement: String,
        param_rows: Vec<Vec<SqlValue>>,
    ) -> Result<u64, String> {
        self.sql
            .as_mut()
            .ok_or(NO_SQL.to_string())?
            .execute_many(&statement, &param_rows)
    }
    fn query(&mut self, statement: String, params: Vec<SqlValue>) -> Result<SqlRows, String> {
        self.sql
            .as_mut()
            .ok_or(NO_SQL.to_string())?
            .query(&statement, &params)
    }
}
