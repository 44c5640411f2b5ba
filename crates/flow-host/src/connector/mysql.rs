//! The `sql` capability over MySQL and MariaDB: the host owns the connection, the credentials
//! and the transaction; the plugin runs statements with `?` parameters inside it.
//!
//! Why the `mysql` crate: it is the synchronous client of the most used MySQL driver family in
//! Rust (blackbeam's, with `mysql_async` beside it), pure Rust without TLS here, with a
//! per-connection cache of prepared statements; a task thread drives its destination
//! synchronously, as it does SQLite and PostgreSQL. `sqlx` would bring an async pool and
//! compile-time query machinery nothing here uses.
//!
//! MySQL differs from PostgreSQL in one way that matters for exactly once: a DDL statement
//! (CREATE, ALTER, DROP, RENAME, TRUNCATE) commits the open transaction implicitly. So:
//! - DDL runs only while the host's transaction has written nothing yet (`open` creates its
//!   tables before it writes its fence); the host begins its transaction again right after,
//!   so what follows is transactional again. After a write, DDL is refused with the reason.
//!   (What a DDL statement did stays done even if the rest of `open` fails: MySQL cannot roll
//!   DDL back.)
//! - Transaction control, session settings, locks, procedure calls, `LOAD`, SQL-level
//!   `PREPARE`, and executable comments (`/*! ... */`) are refused by the statement's first
//!   keyword, found by a lexer that skips comments as MySQL does.
//! - Paired with it, the host's transaction carries a savepoint it set at begin; at commit it
//!   releases it first, which fails if anything ended the transaction unseen (an implicit
//!   commit, a rollback on deadlock): then nothing more is committed and the task retries from
//!   its checkpoint.
//!
//! Every plugin statement is prepared (one statement per call), runs under the plugin call's
//! remaining CPU deadline (MariaDB's `max_statement_time`; MySQL's `max_execution_time`,
//! which bounds SELECTs only), and a query's rows are counted as they are read and refused
//! past the result cap. The session is strict (`STRICT_ALL_TABLES`: a value that does not fit
//! its column is an error, not a silent truncation), in UTC, READ COMMITTED, and counts the
//! rows an UPDATE matched (`CLIENT_FOUND_ROWS`), as PostgreSQL and SQLite do.

use super::pipeline::Pipeline;
use super::{CappedRows, Destination, Server, deadline_error, endpoint_name};
use flow_engine::{SqlAccess, SqlBounds, SqlRows, SqlValue};
use mysql::consts::{CapabilityFlags, ColumnType};
use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder, Params};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long connecting may take before the endpoint counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Statements kept prepared per connection (the crate's cache, by statement text).
const PREPARED_MAX: usize = 64;
/// The savepoint that marks the host's transaction.
const MARK: &str = "flow_host_txn";
/// The binary character set: a column of it holds bytes, not text.
const BINARY_CHARSET: u16 = 63;

/// A MySQL or MariaDB connection shared by the task (which runs transactions) and its plugin.
#[derive(Clone)]
pub(super) struct Mysql {
    conn: Arc<Mutex<State>>,
    /// Statements the plugin sent, running while it goes on (`sql.send`).
    sent: Pipeline,
    /// `user@address/database`, for messages (never the password).
    name: String,
}

struct State {
    conn: Conn,
    /// Whether the server is MariaDB (which bounds every statement by `max_statement_time`)
    /// rather than MySQL.
    mariadb: bool,
    /// How to connect again: to stop a statement of this connection from another
    /// (`KILL QUERY`), so that a result over the cap is not read to its end.
    opts: mysql::Opts,
    /// Whether the host's transaction is open.
    open: bool,
    /// Whether a plugin statement of this transaction may have written: DDL would then
    /// commit it implicitly, so DDL is refused.
    wrote: bool,
}

/// An endpoint's connection settings, from its config (default port 3306).
fn settings(config: &Value) -> anyhow::Result<Server> {
    Server::of(config, "mysql", 3306)
}

/// Check an endpoint config without connecting (at publish).
pub(super) fn check(config: &Value) -> anyhow::Result<()> {
    settings(config).map(drop)
}

/// A server error's text: `ERROR 1045 (28000): Access denied ...`; other errors as they are.
fn describe(e: &mysql::Error) -> String {
    match e {
        mysql::Error::MySqlError(e) => format!("ERROR {} ({}): {}", e.code, e.state, e.message),
        e => e.to_string(),
    }
}

/// Whether `e` says the server cannot be reached or is going away, rather than refusing.
fn transient(e: &mysql::Error) -> bool {
    match e {
        // Too many connections; shutdown in progress; server shutdown; connection killed;
        // lost connection during the query.
        mysql::Error::MySqlError(e) => matches!(e.code, 1040 | 1053 | 1077 | 1927 | 2006 | 2013),
        mysql::Error::IoError(_) | mysql::Error::DriverError(_) => true,
        _ => false,
    }
}

impl Destination for Mysql {
    fn open(config: &Value) -> anyhow::Result<Self> {
        let s = settings(config)?;
        let name = s.name();
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some(s.host.clone()))
            .tcp_port(s.port)
            .db_name(Some(s.database.clone()))
            .user(Some(s.user.clone()))
            .pass(s.password.clone())
            // Connect where the endpoint says, not to a socket the server names.
            .prefer_socket(false)
            .tcp_connect_timeout(Some(CONNECT_TIMEOUT))
            .tcp_keepalive_time_ms(Some(30_000))
            .stmt_cache_size(PREPARED_MAX)
            .additional_capabilities(CapabilityFlags::CLIENT_FOUND_ROWS)
            .init(vec![
                "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'",
                "SET SESSION time_zone = '+00:00'",
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                "SET SESSION autocommit = 1",
            ]);
        let unavailable_or_refused = |e: mysql::Error| {
            let why = format!("{}: {}", endpoint_name("mysql", &name), describe(&e));
            // The server answered and refused (a password, a database): the config's fault.
            // It did not answer, or cannot take connections now: it may be back later.
            if transient(&e) {
                anyhow::Error::new(super::Unavailable(why))
            } else {
                anyhow::anyhow!(why)
            }
        };
        let opts = mysql::Opts::from(opts);
        let mut conn = Conn::new(opts.clone()).map_err(unavailable_or_refused)?;
        let version: String = conn
            .query_first("SELECT VERSION()")
            .map_err(unavailable_or_refused)?
            .unwrap_or_default();
        Ok(Mysql {
            conn: Arc::new(Mutex::new(State {
                conn,
                mariadb: version.contains("MariaDB"),
                opts,
                open: false,
                wrote: false,
            })),
            sent: Pipeline::default(),
            name,
        })
    }

    fn begin(&self) -> anyhow::Result<()> {
        self.sent.discard();
        let mut c = self.lock();
        c.begin()
            .map_err(|e| self.error("failed to begin a transaction", &e))
    }

    fn commit(&self) -> anyhow::Result<()> {
        if let Err(e) = self.sent.settle() {
            self.rollback();
            anyhow::bail!(
                "{}: {e}; nothing of the transaction is committed",
                endpoint_name("mysql", &self.name)
            );
        }
        let mut c = self.lock();
        let open = std::mem::replace(&mut c.open, false);
        // The assertion after the fact: the savepoint set at begin is still there, so the
        // transaction still open is the one the host began.
        if !open
            || c.conn
                .query_drop(format!("RELEASE SAVEPOINT {MARK}"))
                .is_err()
        {
            let _ = c.conn.query_drop("ROLLBACK");
            anyhow::bail!(
                "{}: the destination transaction the host began is no longer open (a statement ended it, or the server rolled it back); nothing more of it is committed",
                endpoint_name("mysql", &self.name)
            );
        }
        c.conn
            .query_drop("COMMIT")
            .map_err(|e| self.error("failed to commit the transaction", &e))
    }

    fn rollback(&self) {
        self.sent.discard();
        let mut c = self.lock();
        c.open = false;
        let _ = c.conn.query_drop("ROLLBACK");
    }

    fn grant(&self) -> super::Grant {
        super::Grant::Sql(Box::new(self.clone()))
    }

    fn available(&self) -> bool {
        self.lock().conn.ping().is_ok()
    }
}

impl State {
    /// Begin the host's transaction and mark it with the savepoint.
    fn begin(&mut self) -> Result<(), mysql::Error> {
        self.conn.query_drop("START TRANSACTION")?;
        self.conn.query_drop(format!("SAVEPOINT {MARK}"))?;
        self.open = true;
        self.wrote = false;
        Ok(())
    }
}

impl Mysql {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.conn.lock().expect("mysql connection poisoned")
    }

    fn error(&self, what: &str, e: &mysql::Error) -> anyhow::Error {
        let why = format!(
            "{}: {what}: {}",
            endpoint_name("mysql", &self.name),
            describe(e)
        );
        if transient(e) {
            anyhow::Error::new(super::Unavailable(why))
        } else {
            anyhow::anyhow!(why)
        }
    }

    /// Run a plugin statement that returns no rows, now: how many rows it changed.
    fn execute_now(
        &self,
        statement: &str,
        values: &[SqlValue],
        bounds: &SqlBounds,
    ) -> Result<u64, String> {
        self.plugin_statement(statement, bounds, |conn, _| {
            conn.exec_drop(statement, params(values))
                .map_err(|e| describe(&e))?;
            Ok(conn.affected_rows())
        })
    }

    /// Run `f` as a plugin statement: refused if it would leave the host's control, under the
    /// call's remaining deadline, with errors that say which bound or rule stopped it.
    fn plugin_statement<R>(
        &self,
        statement: &str,
        bounds: &SqlBounds,
        f: impl FnOnce(&mut Conn, &mysql::Opts) -> Result<R, String>,
    ) -> Result<R, String> {
        let class = classify(statement).map_err(|why| format!("statement refused: {why}"))?;
        let left = bounds.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(deadline_error(bounds));
        }
        let mut c = self.lock();
        if !c.open {
            return Err("no destination transaction is open: SQL runs only inside the calls of a transaction".into());
        }
        if class == Class::Ddl && c.wrote {
            return Err(format!(
                "statement refused: {}: in MySQL a DDL statement commits the open transaction, and this one has written rows; change tables in `open`, before the first write",
                leading_words(statement, 1).join("")
            ));
        }
        let timeout = if c.mariadb {
            format!(
                "SET SESSION max_statement_time = {:.3}",
                left.as_secs_f64().max(0.001)
            )
        } else {
            format!(
                "SET SESSION max_execution_time = {}",
                left.as_millis().max(1)
            )
        };
        c.conn.query_drop(timeout).map_err(|e| describe(&e))?;
        if class == Class::Write {
            c.wrote = true;
        }
        let State { conn, opts, .. } = &mut *c;
        let result = f(conn, opts);
        if class == Class::Ddl {
            // It committed what came before it; what follows is the host's transaction again.
            if let Err(e) = c.begin() {
                c.open = false;
                return Err(format!(
                    "failed to begin the transaction again after DDL: {}",
                    describe(&e)
                ));
            }
        }
        result.map_err(|e| {
            // ERROR 1969 (MariaDB) and 3024 (MySQL): the statement ran out of time. (A result
            // over the cap stays that: its rest was read and dropped, which may take until the
            // deadline ends the statement.)
            if e.starts_with("ERROR 1969 ")
                || e.starts_with("ERROR 3024 ")
                || (Instant::now() >= bounds.deadline && !e.contains("(hostResultBytesMax)"))
            {
                deadline_error(bounds)
            } else {
                e
            }
        })
    }
}

/// What a plugin statement is, by its first keywords.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Class {
    /// Reads only (SELECT, SHOW, DESCRIBE, EXPLAIN).
    Read,
    /// Changes a table's definition, which MySQL commits implicitly.
    Ddl,
    /// Anything else: may write.
    Write,
}

/// A plugin statement's class, or why it is refused.
fn classify(statement: &str) -> Result<Class, String> {
    if statement.contains("/*!") || statement.contains("/*M!") {
        return Err("executable comments (/*! ... */) are refused: MySQL runs their text".into());
    }
    let words = leading_words(statement, 2);
    let first = words.first().map(String::as_str).unwrap_or("");
    let second = words.get(1).map(String::as_str).unwrap_or("");
    let refuse = |why: &str| Err(format!("{first}: {why}"));
    match first {
        "BEGIN" | "START" | "COMMIT" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" | "XA" => refuse(
            "transaction control is the host's: it begins and commits every destination transaction",
        ),
        "SET" | "RESET" | "USE" => refuse(
            "session settings are the host's (it sets the statement timeout from the plugin's deadline)",
        ),
        "LOCK" | "UNLOCK" => refuse("table locks commit the open transaction implicitly"),
        "LOAD" => refuse("LOAD is refused: rows go through statements with parameters"),
        "CALL" | "PREPARE" | "EXECUTE" | "DEALLOCATE" | "HANDLER" => refuse(
            "procedures and SQL-level prepared statements are refused: one plugin statement is one statement the host can see",
        ),
        "GRANT" | "REVOKE" | "FLUSH" | "KILL" | "SHUTDOWN" | "INSTALL" | "UNINSTALL" | "CHANGE"
        | "STOP" | "PURGE" | "BINLOG" | "ANALYZE" | "OPTIMIZE" | "REPAIR" | "CHECK" | "CACHE"
        | "BACKUP" => refuse("administrative statements are refused"),
        "CREATE" | "ALTER" | "DROP" | "RENAME" | "TRUNCATE" => match (first, second) {
            (
                _,
                "TABLE" | "TABLES" | "INDEX" | "UNIQUE" | "FULLTEXT" | "SPATIAL" | "VIEW" | "OR"
                | "TEMPORARY" | "IF",
            )
            | ("TRUNCATE", _) => Ok(Class::Ddl),
            _ => Err(format!(
                "{first} {second}: only tables, indexes and views may be created, altered or dropped"
            )),
        },
        "SELECT" | "SHOW" | "DESCRIBE" | "DESC" | "EXPLAIN" => Ok(Class::Read),
        _ => Ok(Class::Write),
    }
}

/// The first `n` words of `sql` in upper case, skipping whitespace, `#` and `-- ` line
/// comments and `/* */` block comments, as MySQL's lexer does.
fn leading_words(sql: &str, n: usize) -> Vec<String> {
    let b = sql.as_bytes();
    let mut i = 0;
    let mut words = Vec::new();
    while words.len() < n && i < b.len() {
        match b[i] {
            c if c.is_ascii_whitespace() => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-')
                && b.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                words.push(sql[start..i].to_ascii_uppercase());
            }
            // Anything else (a parenthesis, a quote) ends the words that matter.
            _ => break,
        }
    }
    words
}

/// A plugin's parameter as a MySQL value: the server converts it to its column's type.
fn param(v: &SqlValue) -> mysql::Value {
    match v {
        SqlValue::Null => mysql::Value::NULL,
        SqlValue::Integer(i) => mysql::Value::Int(*i),
        SqlValue::Real(f) => mysql::Value::Double(*f),
        SqlValue::Text(s) => mysql::Value::Bytes(s.as_bytes().to_vec()),
        SqlValue::Blob(b) => mysql::Value::Bytes(b.clone()),
    }
}

fn params(values: &[SqlValue]) -> Params {
    if values.is_empty() {
        Params::Empty
    } else {
        Params::Positional(values.iter().map(param).collect())
    }
}

/// One value of a result row as a SQL value: numbers as numbers, text as text (bytes of a
/// binary column as a blob), dates and times as their text.
fn column(v: mysql::Value, c: &mysql::Column) -> SqlValue {
    use mysql::Value as V;
    match v {
        V::NULL => SqlValue::Null,
        V::Int(i) => SqlValue::Integer(i),
        V::UInt(u) => match i64::try_from(u) {
            Ok(i) => SqlValue::Integer(i),
            Err(_) => SqlValue::Real(u as f64),
        },
        V::Float(f) => SqlValue::Real(f.into()),
        V::Double(f) => SqlValue::Real(f),
        V::Bytes(b) => {
            let numeric = matches!(
                c.column_type(),
                ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL
            );
            if c.character_set() == BINARY_CHARSET
                && !numeric
                && c.column_type() != ColumnType::MYSQL_TYPE_JSON
            {
                SqlValue::Blob(b)
            } else {
                match String::from_utf8(b) {
                    Ok(s) => SqlValue::Text(s),
                    Err(e) => SqlValue::Blob(e.into_bytes()),
                }
            }
        }
        V::Date(y, mo, d, h, mi, s, us) => {
            SqlValue::Text(if c.column_type() == ColumnType::MYSQL_TYPE_DATE {
                format!("{y:04}-{mo:02}-{d:02}")
            } else {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
            })
        }
        V::Time(neg, days, h, mi, s, us) => SqlValue::Text(format!(
            "{}{:02}:{mi:02}:{s:02}.{us:06}",
            if neg { "-" } else { "" },
            u32::from(h) + days * 24
        )),
    }
}

impl SqlAccess for Mysql {
    fn execute(
        &mut self,
        statement: &str,
        values: &[SqlValue],
        bounds: &SqlBounds,
    ) -> Result<u64, String> {
        self.sent.settle()?;
        self.execute_now(statement, values, bounds)
    }

    fn send(
        &mut self,
        statement: String,
        values: Vec<SqlValue>,
        bounds: &SqlBounds,
    ) -> Result<(), String> {
        match classify(&statement) {
            Err(why) => return Err(format!("statement refused: {why}")),
            // DDL commits implicitly in MySQL: it runs only through `execute`, which checks
            // it against the transaction's writes when it is asked, not later.
            Ok(Class::Ddl) => {
                return Err(format!(
                    "statement refused: {}: in MySQL a DDL statement commits the open transaction, so it is executed, not sent",
                    leading_words(&statement, 1).join("")
                ));
            }
            Ok(_) => {}
        }
        let my = self.clone();
        self.sent
            .send_statement(statement, values, bounds, move |s, v, b| {
                my.execute_now(s, v, b)
            })
    }

    fn execute_many(
        &mut self,
        statement: &str,
        rows: &[Vec<SqlValue>],
        bounds: &SqlBounds,
    ) -> Result<u64, String> {
        self.sent.settle()?;
        self.plugin_statement(statement, bounds, |conn, _| {
            let stmt = conn.prep(statement).map_err(|e| describe(&e))?;
            let mut n = 0;
            for (i, row) in rows.iter().enumerate() {
                if Instant::now() >= bounds.deadline {
                    return Err(deadline_error(bounds));
                }
                conn.exec_drop(&stmt, params(row))
                    .map_err(|e| format!("parameter row {}: {}", i + 1, describe(&e)))?;
                n += conn.affected_rows();
            }
            Ok(n)
        })
    }

    fn query(
        &mut self,
        statement: &str,
        values: &[SqlValue],
        bounds: &SqlBounds,
    ) -> Result<SqlRows, String> {
        self.sent.settle()?;
        self.plugin_statement(statement, bounds, |conn, opts| {
            let stmt = conn.prep(statement).map_err(|e| describe(&e))?;
            let columns: Vec<mysql::Column> = stmt.columns().to_vec();
            let id = conn.connection_id();
            let mut result = CappedRows::new(
                columns.iter().map(|c| c.name_str().into_owned()).collect(),
                bounds,
            );
            let rows = conn
                .exec_iter(&stmt, params(values))
                .map_err(|e| describe(&e))?;
            for row in rows {
                let row = row.map_err(|e| describe(&e))?;
                let pushed = result.push(
                    row.unwrap()
                        .into_iter()
                        .zip(&columns)
                        .map(|(v, c)| column(v, c))
                        .collect(),
                );
                if let Err(e) = pushed {
                    // Stop the statement, so that what the server still sends (read and
                    // dropped, to keep the connection usable) ends soon.
                    if let Ok(mut other) = Conn::new(opts.clone()) {
                        let _ = other.query_drop(format!("KILL QUERY {id}"));
                    }
                    return Err(e);
                }
            }
            Ok(result.result)
        })
    }
}

#[cfg(test)]
mod test {
    use super::{Class, classify, leading_words};

    #[test]
    fn statements_are_classified_by_their_first_keywords_past_comments() {
        for (sql, class) in [
            ("SELECT 1", Some(Class::Read)),
            ("  show tables", Some(Class::Read)),
            ("INSERT INTO t VALUES (?)", Some(Class::Write)),
            ("with x as (select 1) delete from t", Some(Class::Write)),
            ("CREATE TABLE IF NOT EXISTS `t` (a INT)", Some(Class::Ddl)),
            ("create or replace view v as select 1", Some(Class::Ddl)),
            ("ALTER TABLE t ADD COLUMN c TEXT", Some(Class::Ddl)),
            ("drop table if exists t", Some(Class::Ddl)),
            ("TRUNCATE t", Some(Class::Ddl)),
            ("COMMIT", None),
            ("/* x */ commit", None),
            ("# line\nBEGIN", None),
            ("-- line\nrollback", None),
            ("/*!COMMIT*/", None),
            ("SELECT 1 /*!50000 , SLEEP(10) */", None),
            ("start transaction", None),
            ("SET autocommit = 0", None),
            ("LOCK TABLES t WRITE", None),
            ("CALL p()", None),
            ("PREPARE s FROM 'COMMIT'", None),
            ("CREATE USER x", None),
            ("DROP DATABASE views", None),
            ("LOAD DATA INFILE 'x' INTO TABLE t", None),
            ("XA START 'x'", None),
            ("GRANT ALL ON *.* TO x", None),
        ] {
            assert_eq!(classify(sql).ok(), class, "{sql}");
        }
        assert_eq!(
            leading_words("/*x*/ create /*y*/ table", 2),
            ["CREATE", "TABLE"]
        );
        // `--` starts a comment only when whitespace follows it.
        assert_eq!(leading_words("--1", 1), Vec::<String>::new());
    }
}
