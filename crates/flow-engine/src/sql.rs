//! The `sql` capability: a database connection the host owns, granted to a connector whose
//! endpoint names a destination.

use super::bindings::materialization::flow::plugin::sql;
use super::bindings::{SqlRows, SqlValue};

/// A SQL connection owned by the host, inside a transaction the host controls.
pub trait SqlAccess: Send {
    fn execute(&mut self, statement: &str, params: &[SqlValue]) -> Result<u64, String>;
    fn execute_many(&mut self, statement: &str, rows: &[Vec<SqlValue>]) -> Result<u64, String>;
    fn query(&mut self, statement: &str, params: &[SqlValue]) -> Result<SqlRows, String>;
}

const NO_SQL: &str = "this task was granted no database: its endpoint configuration names none";

/// What a plugin instance was granted of `sql`: the destination its endpoint names, if any.
#[derive(Default)]
pub(crate) struct SqlGrant(pub(crate) Option<Box<dyn SqlAccess>>);

impl sql::Host for SqlGrant {
    fn execute(&mut self, statement: String, params: Vec<SqlValue>) -> Result<u64, String> {
        self.0
            .as_mut()
            .ok_or(NO_SQL.to_string())?
            .execute(&statement, &params)
    }
    fn execute_many(
        &mut self,
        statement: String,
        param_rows: Vec<Vec<SqlValue>>,
    ) -> Result<u64, String> {
        self.0
            .as_mut()
            .ok_or(NO_SQL.to_string())?
            .execute_many(&statement, &param_rows)
    }
    fn query(&mut self, statement: String, params: Vec<SqlValue>) -> Result<SqlRows, String> {
        self.0
            .as_mut()
            .ok_or(NO_SQL.to_string())?
            .query(&statement, &params)
    }
}
