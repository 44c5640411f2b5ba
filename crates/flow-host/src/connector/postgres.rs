//! The `sql` capability over PostgreSQL: the host owns the connection, the credentials and
//! the transaction; the plugin runs statements with `$1`-style parameters inside it.
//!
//! Why the `postgres` crate: it is the synchronous face of `tokio-postgres` (sfackler's, the
//! most used PostgreSQL client in Rust), pure Rust, and a task thread drives its destination
//! synchronously, as it does SQLite; `sqlx` would bring an async pool and compile-time query
//! machinery nothing here uses.
//!
//! Every plugin statement is prepared (the extended protocol: one statement per call, so a
//! plugin cannot append a `COMMIT` to an `INSERT`), runs under `SET LOCAL statement_timeout`
//! set from the plugin call's remaining CPU deadline, and a query's rows are counted as they
//! are read and refused past the result cap. Transaction control and session-level statements
//! are refused by their first keyword, found by a lexer that skips comments as PostgreSQL does
//! (`/**/COMMIT` is a COMMIT); and, paired with it, the host checks at commit that the
//! transaction it began is still the one open (its `txid_current()`), so nothing a plugin ran
//! can have ended it unseen.

use super::pipeline::Pipeline;
use super::{CappedRows, Destination, Server, deadline_error, endpoint_name};
use bytes::BufMut;
use flow_engine::{SqlAccess, SqlBounds, SqlRows, SqlValue};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long connecting may take before the endpoint counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL connection shared by the task (which runs transactions) and its plugin.
#[derive(Clone)]
pub(super) struct Postgres {
    conn: Arc<Mutex<Conn>>,
    /// Statements the plugin sent, running while it goes on (`sql.send`).
    sent: Pipeline,
    /// `user@address/database`, for messages (never the password).
    name: String,
    /// A capture's source (`open_source`): no transaction around a poll, each statement its
    /// own, so nothing holds a transaction id while the plugin reads (a replication slot
    /// cannot be created, and logical decoding waits, while one is held).
    source: bool,
}

struct Conn {
    client: Client,
    /// The transaction the host began, by `txid_current()`.
    txid: Option<i64>,
    /// Statements prepared on this connection, by text: a plugin sends the same few
    /// statements every transaction, and a multi-row insert costs the server real work to
    /// parse and plan. Dropped whole past `PREPARED_MAX`; one that fails is dropped.
    prepared: std::collections::HashMap<String, postgres::Statement>,
}

/// Statements kept prepared per connection.
const PREPARED_MAX: usize = 64;

/// An endpoint's connection settings, from its config (default port 5432).
fn settings(config: &Value) -> anyhow::Result<Server> {
    Server::of(config, "postgres", 5432)
}

/// Check an endpoint config without connecting (at publish).
pub(super) fn check(config: &Value) -> anyhow::Result<()> {
    settings(config).map(drop)
}

impl Postgres {
    /// Connect as a capture's source: see `Postgres::source`.
    pub(super) fn open_source(config: &Value) -> anyhow::Result<Self> {
        let mut pg = <Self as Destination>::open(config)?;
        pg.source = true;
        Ok(pg)
    }
}

impl Destination for Postgres {
    fn open(config: &Value) -> anyhow::Result<Self> {
        let s = settings(config)?;
        let name = s.name();
        let mut pg = postgres::Config::new();
        pg.host(&s.host)
            .port(s.port)
            .dbname(&s.database)
            .user(&s.user)
            .application_name("flow")
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            // Notices ("relation ... already exists, skipping") are the plugin's business.
            .notice_callback(|n| tracing::debug!("postgres notice: {}", n.message()));
        if let Some(p) = &s.password {
            pg.password(p);
        }
        let client = pg.connect(NoTls).map_err(|e| {
            let why = format!("{}: {}", endpoint_name("postgres", &name), describe(&e));
            // The server answered and refused (a password, a database): the config's fault.
            // It did not answer, or answered that it cannot take connections now (starting
            // up, shutting down, full): it may be back later.
            match e.as_db_error() {
                Some(db) if !transient(db.code()) => anyhow::anyhow!(why),
                _ => anyhow::Error::new(super::Unavailable(why)),
            }
        })?;
        Ok(Postgres {
            conn: Arc::new(Mutex::new(Conn {
                client,
                txid: None,
                prepared: Default::default(),
            })),
            sent: Pipeline::default(),
            name,
            source: false,
        })
    }

    fn begin(&self) -> anyhow::Result<()> {
        self.sent.discard();
        if self.source {
            return Ok(());
        }
        let mut c = self.lock();
        c.client
            .batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            .map_err(|e| self.error("failed to begin a transaction", &e))?;
        let txid: i64 = c
            .client
            .query_one("SELECT txid_current()", &[])
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.error("failed to begin a transaction", &e))?;
        c.txid = Some(txid);
        Ok(())
    }

    fn commit(&self) -> anyhow::Result<()> {
        if let Err(e) = self.sent.settle() {
            self.rollback();
            anyhow::bail!(
                "{}: {e}; nothing of the transaction is committed",
                endpoint_name("postgres", &self.name)
            );
        }
        if self.source {
            return Ok(());
        }
        let mut c = self.lock();
        let began = c.txid.take();
        // The assertion after the fact: the transaction still open is the one the host began.
        let now: Option<i64> = c
            .client
            .query_one("SELECT txid_current()", &[])
            .and_then(|r| r.try_get(0))
            .ok();
        if began.is_none() || now != began {
            let _ = c.client.batch_execute("ROLLBACK");
            anyhow::bail!(
                "{}: the destination transaction the host began is no longer open (a plugin statement ended it); nothing of it is committed",
                endpoint_name("postgres", &self.name)
            );
        }
        c.client
            .batch_execute("COMMIT")
            .map_err(|e| self.error("failed to commit the transaction", &e))
    }

    fn rollback(&self) {
        self.sent.discard();
        if self.source {
            return;
        }
        let mut c = self.lock();
        c.txid = None;
        if !c.client.is_closed() {
            let _ = c.client.batch_execute("ROLLBACK");
        }
    }

    fn grant(&self) -> super::Grant {
        super::Grant::Sql(Box::new(self.clone()))
    }

    fn available(&self) -> bool {
        !self.lock().client.is_closed()
    }
}

/// Whether a server's refusal passes by itself: connection exceptions (class 08), the server
/// starting up or shutting down (57P01-57P03), too many connections (53300).
fn transient(code: &postgres::error::SqlState) -> bool {
    let c = code.code();
    c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03" | "53300")
}

/// A PostgreSQL error as a person needs it: the server's message with its detail and hint,
/// or the client's (connection refused, authentication failed, closed).
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {}", db.severity(), db.message());
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("; hint: {h}"));
            }
            s
        }
        None => {
            // The client's message, with its cause (e.g. "connection refused").
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                s.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            s
        }
    }
}

impl Postgres {
    fn lock(&self) -> std::sync::MutexGuard<'_, Conn> {
        self.conn.lock().expect("postgres connection poisoned")
    }

    fn error(&self, what: &str, e: &postgres::Error) -> anyhow::Error {
        anyhow::anyhow!(
            "{}: {what}: {}",
            endpoint_name("postgres", &self.name),
            describe(e)
        )
    }

    /// Run a plugin statement that returns no rows, now: how many rows it changed.
    fn execute_now(
        &self,
        statement: &str,
        params: &[SqlValue],
        bounds: &SqlBounds,
    ) -> Result<u64, String> {
        self.plugin_statement(statement, bounds, |client, stmt| {
            let params: Vec<Param> = params.iter().map(Param).collect();
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            client.execute(stmt, &refs).map_err(|e| describe(&e))
        })
    }

    /// Run `f` as a plugin statement: refused if it would leave the host's control, under the
    /// call's remaining deadline, with errors that say which bound or rule stopped it.
    fn plugin_statement<R>(
        &self,
        statement: &str,
        bounds: &SqlBounds,
        f: impl FnOnce(&mut Client, &postgres::Statement) -> Result<R, String>,
    ) -> Result<R, String> {
        if let Some(why) = refused(statement) {
            return Err(format!("statement refused: {why}"));
        }
        let left = bounds.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(deadline_error(bounds));
        }
        let mut c = self.lock();
        // A source's statements run each on its own (autocommit), under the session's
        // timeout; a destination's inside the host's transaction, under its local one.
        let timeout = if self.source {
            "SET statement_timeout"
        } else if c.txid.is_none() {
            return Err("no destination transaction is open: SQL runs only inside the calls of a transaction".into());
        } else {
            "SET LOCAL statement_timeout"
        };
        c.client
            .batch_execute(&format!("{timeout} = {}", left.as_millis().max(1)))
            .map_err(|e| describe(&e))?;
        let stmt = match c.prepared.get(statement) {
            Some(stmt) => stmt.clone(),
            None => {
                let stmt = c.client.prepare(statement).map_err(|e| describe(&e))?;
                if c.prepared.len() >= PREPARED_MAX {
                    c.prepared.clear();
                }
                c.prepared.insert(statement.to_string(), stmt.clone());
                stmt
            }
        };
        let Conn {
            client, prepared, ..
        } = &mut *c;
        f(client, &stmt).map_err(|e| {
            // It may be the statement that went stale (a table changed under it).
            prepared.remove(statement);
            if Instant::now() >= bounds.deadline || e.contains("statement timeout") {
                deadline_error(bounds)
            } else {
                e
            }
        })
    }
}

/// Why a plugin statement is refused, if it is: by its first keyword (and the second, for
/// `ALTER SYSTEM`), read past whitespace and comments.
fn refused(statement: &str) -> Option<String> {
    let words = leading_words(statement, 2);
    let first = words.first().map(String::as_str).unwrap_or("");
    let why = match first {
        "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" | "SAVEPOINT" | "RELEASE"
        | "PREPARE" => {
            "transaction control is the host's: it begins and commits every destination transaction"
        }
        "SET" | "RESET" | "DISCARD" => {
            "session settings are the host's (it sets the statement timeout from the plugin's deadline)"
        }
        "COPY" => "COPY is refused: rows go through statements with parameters",
        "LISTEN" | "UNLISTEN" | "NOTIFY" | "LOAD" => "session-level statements are refused",
        "ALTER" if words.get(1).map(String::as_str) == Some("SYSTEM") => {
            "ALTER SYSTEM is refused: the server's configuration is not a plugin's"
        }
        _ => return None,
    };
    Some(format!("{first}: {why}"))
}

/// The first `n` words of `sql` in upper case, skipping whitespace, `--` line comments and
/// (nested) `/* */` block comments, as PostgreSQL's lexer does.
fn leading_words(sql: &str, n: usize) -> Vec<String> {
    let b = sql.as_bytes();
    let mut i = 0;
    let mut words = Vec::new();
    while words.len() < n && i < b.len() {
        match b[i] {
            c if c.is_ascii_whitespace() => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
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

/// A plugin's parameter, converted to whatever type PostgreSQL inferred for its place in the
/// statement (`$1` in `INSERT INTO t (n) VALUES ($1)` takes `n`'s type).
#[derive(Debug)]
struct Param<'a>(&'a SqlValue);

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use SqlValue as V;
        let v = self.0;
        if matches!(v, V::Null) {
            return Ok(IsNull::Yes);
        }
        let whole = |f: f64| (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64);
        match *ty {
            Type::BOOL => match v {
                V::Integer(i) => (*i != 0).to_sql(ty, out),
                _ => Err(mismatch(v, ty)),
            },
            Type::INT2 | Type::INT4 | Type::INT8 => {
                let i = match v {
                    V::Integer(i) => *i,
                    V::Real(f) => whole(*f).ok_or_else(|| mismatch(v, ty))?,
                    _ => return Err(mismatch(v, ty)),
                };
                match *ty {
                    Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                    Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                    _ => i.to_sql(ty, out),
                }
            }
            Type::FLOAT4 | Type::FLOAT8 => {
                let f = match v {
                    V::Real(f) => *f,
                    V::Integer(i) => *i as f64,
                    _ => return Err(mismatch(v, ty)),
                };
                if *ty == Type::FLOAT4 {
                    (f as f32).to_sql(ty, out)
                } else {
                    f.to_sql(ty, out)
                }
            }
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => match v {
                V::Text(s) => s.as_str().to_sql(ty, out),
                V::Integer(i) => i.to_string().as_str().to_sql(&Type::TEXT, out),
                V::Real(f) => f.to_string().as_str().to_sql(&Type::TEXT, out),
                _ => Err(mismatch(v, ty)),
            },
            Type::JSON | Type::JSONB => match v {
                V::Text(s) => {
                    // JSONB's binary form is a version byte, then the text.
                    if *ty == Type::JSONB {
                        out.put_u8(1);
                    }
                    out.put_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
                _ => Err(mismatch(v, ty)),
            },
            Type::BYTEA => match v {
                V::Blob(b) => b.as_slice().to_sql(ty, out),
                _ => Err(mismatch(v, ty)),
            },
            _ => Err(format!(
                "a parameter of type {ty} is not supported: pass it as text and cast it, e.g. $1::text::{ty}"
            )
            .into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn mismatch(v: &SqlValue, ty: &Type) -> Box<dyn std::error::Error + Sync + Send> {
    let kind = match v {
        SqlValue::Null => "null",
        SqlValue::Integer(_) => "integer",
        SqlValue::Real(_) => "real",
        SqlValue::Text(_) => "text",
        SqlValue::Blob(_) => "blob",
    };
    format!("a {kind} value cannot be a parameter of type {ty}").into()
}

/// One column of a result row as a SQL value.
fn column(row: &postgres::Row, i: usize) -> Result<SqlValue, String> {
    let c = &row.columns()[i];
    let ty = c.type_();
    let get_err = |e: postgres::Error| format!("column {}: {e}", c.name());
    let v = match *ty {
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)
            .map_err(get_err)?
            .map(|b| SqlValue::Integer(b as i64)),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)
            .map_err(get_err)?
            .map(|n| SqlValue::Integer(n.into())),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)
            .map_err(get_err)?
            .map(|n| SqlValue::Integer(n.into())),
        Type::INT8 => row
            .try_get::<_, Option<i64>>(i)
            .map_err(get_err)?
            .map(SqlValue::Integer),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)
            .map_err(get_err)?
            .map(|f| SqlValue::Real(f.into())),
        Type::FLOAT8 => row
            .try_get::<_, Option<f64>>(i)
            .map_err(get_err)?
            .map(SqlValue::Real),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => row
            .try_get::<_, Option<String>>(i)
            .map_err(get_err)?
            .map(SqlValue::Text),
        Type::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(i)
            .map_err(get_err)?
            .map(SqlValue::Blob),
        Type::JSON | Type::JSONB => row
            .try_get::<_, Option<Json>>(i)
            .map_err(get_err)?
            .map(|j| SqlValue::Text(j.0)),
        _ => {
            return Err(format!(
                "column {} is of type {ty}, which a plugin cannot read: cast it in the query, e.g. {}::text",
                c.name(),
                c.name()
            ));
        }
    };
    Ok(v.unwrap_or(SqlValue::Null))
}

/// JSON or JSONB read as its text.
struct Json(String);

impl<'a> postgres::types::FromSql<'a> for Json {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = if *ty == Type::JSONB {
            match raw.split_first() {
                Some((1, rest)) => rest,
                _ => return Err("unknown JSONB version".into()),
            }
        } else {
            raw
        };
        Ok(Json(std::str::from_utf8(text)?.to_string()))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }
}

impl SqlAccess for Postgres {
    fn execute(
        &mut self,
        statement: &str,
        params: &[SqlValue],
        bounds: &SqlBounds,
    ) -> Result<u64, String> {
        self.sent.settle()?;
        self.execute_now(statement, params, bounds)
    }

    fn send(
        &mut self,
        statement: String,
        params: Vec<SqlValue>,
        bounds: &SqlBounds,
    ) -> Result<(), String> {
        if let Some(why) = refused(&statement) {
            return Err(format!("statement refused: {why}"));
        }
        let pg = self.clone();
        self.sent
            .send_statement(statement, params, bounds, move |s, p, b| {
                pg.execute_now(s, p, b)
            })
    }

    fn execute_many(
        &mut self,
        statement: &str,
        rows: &[Vec<SqlValue>],
        bounds: &SqlBounds,
    ) -> Result<u64, String> {
        self.sent.settle()?;
        self.plugin_statement(statement, bounds, |client, stmt| {
            let mut n = 0;
            for (i, row) in rows.iter().enumerate() {
                if Instant::now() >= bounds.deadline {
                    return Err(deadline_error(bounds));
                }
                let params: Vec<Param> = row.iter().map(Param).collect();
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                n += client
                    .execute(stmt, &refs)
                    .map_err(|e| format!("parameter row {}: {}", i + 1, describe(&e)))?;
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
        self.sent.settle()?;
        self.plugin_statement(statement, bounds, |client, stmt| {
            let columns: Vec<String> = stmt
                .columns()
                .iter()
                .map(|c| c.name().to_string())
                .collect();
            let mut result = CappedRows::new(columns, bounds);
            let params: Vec<Param> = params.iter().map(Param).collect();
            let mut rows = client
                .query_raw(stmt, params.iter().map(|p| p as &dyn ToSql))
                .map_err(|e| describe(&e))?;
            while let Some(row) = rows.next().map_err(|e| describe(&e))? {
                result.push(
                    (0..row.len())
                        .map(|i| column(&row, i))
                        .collect::<Result<Vec<SqlValue>, String>>()?,
                )?;
            }
            Ok(result.result)
        })
    }
}

#[cfg(test)]
mod test {
    use super::{leading_words, refused, transient};
    use postgres::error::SqlState;

    #[test]
    fn a_server_starting_up_or_full_is_unavailable_not_misconfigured() {
        for code in [
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::CONNECTION_FAILURE,
        ] {
            assert!(transient(&code), "{code:?}");
        }
        for code in [
            SqlState::INVALID_PASSWORD,
            SqlState::INVALID_CATALOG_NAME,
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        ] {
            assert!(!transient(&code), "{code:?}");
        }
    }

    #[test]
    fn statements_are_refused_by_their_first_keyword_past_comments() {
        for (sql, refuse) in [
            ("COMMIT", true),
            ("  commit;", true),
            ("/**/COMMIT", true),
            ("/* a /* nested */ comment */ rollback", true),
            ("-- line\nBEGIN", true),
            ("start transaction", true),
            ("SAVEPOINT a", true),
            ("PREPARE TRANSACTION 'x'", true),
            ("set statement_timeout = 0", true),
            ("COPY t FROM STDIN", true),
            ("alter system set fsync = off", true),
            ("ALTER TABLE t ADD COLUMN c TEXT", false),
            ("INSERT INTO t VALUES ($1)", false),
            ("select 1 -- COMMIT", false),
            ("WITH x AS (SELECT 1) SELECT * FROM x", false),
            ("(SELECT 1)", false),
        ] {
            assert_eq!(refused(sql).is_some(), refuse, "{sql}");
        }
        assert_eq!(
            leading_words("/*x*/ alter /*y*/ system", 2),
            ["ALTER", "SYSTEM"]
        );
    }
}
