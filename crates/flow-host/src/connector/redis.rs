//! The `kv` capability over Redis: the host owns the connection, the credentials and the
//! transaction; the plugin reads keys and queues writes.
//!
//! Why the `redis` crate: it is the Redis client of the Rust ecosystem (redis-rs), and its
//! synchronous connection fits a task thread that drives its destination synchronously, as the
//! SQL connectors do. Built without default features: no TLS, no cluster, no async runtime.
//!
//! A transaction's writes are queued in the host (bounded by `txn_bytes_max`) and applied at
//! commit as one MULTI/EXEC: Redis applies all of them or, if the host never sends EXEC,
//! none. The plugin's `expect(key, value)` calls become a WATCH of each key before the
//! MULTI, a check that each holds what the plugin expects, and an EXEC that Redis aborts if
//! any of them changed meanwhile: the fence that keeps a stale instance of a task from
//! committing. A plugin reaches only the keys of the endpoint's database (`SELECT n` at
//! connect); it sends no command of its own.

use super::{Destination, Grant, endpoint_name};
use anyhow::Context;
use flow_engine::{KvAccess, SqlBounds};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long connecting may take before the endpoint counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Keys per MGET or pipeline of HGETs.
const KEYS_PER_READ: usize = 1_000;
/// How long a commit may wait on the server.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);

/// A Redis connection shared by the task (which runs transactions) and its plugin.
#[derive(Clone)]
pub(super) struct Redis {
    state: Arc<Mutex<State>>,
    /// `user@address/database`, for messages (never the password).
    name: String,
}

struct State {
    conn: redis::Connection,
    /// Whether the host's transaction is open.
    open: bool,
    /// The writes of the open transaction, in order, and their bytes.
    queued: Vec<redis::Cmd>,
    queued_bytes: usize,
    /// Keys that must hold these values at commit (`expect`).
    expected: Vec<(String, Option<String>)>,
}

/// An endpoint's connection settings, from its config.
struct Settings {
    host: String,
    port: u16,
    database: i64,
    user: Option<String>,
    password: Option<String>,
}

impl Settings {
    /// `address` (`host:port`, default port 6379), `database` (a number, default 0), `user`
    /// (an ACL user, optional) and `password` as a secret reference (`super::secret`).
    fn of(config: &Value) -> anyhow::Result<Self> {
        let (host, port) = super::address(config, "redis", 6379)?;
        let database = match config.get("database") {
            None => 0,
            Some(v) => v
                .as_i64()
                .filter(|n| *n >= 0)
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .with_context(|| {
                    format!("`database` {v}: a Redis database is a number (0, 1, ...)")
                })?,
        };
        let user = match config.get("user") {
            None => None,
            Some(Value::String(u)) if !u.is_empty() => Some(u.clone()),
            Some(v) => anyhow::bail!("`user` {v}: an ACL user name is a non-empty string"),
        };
        Ok(Settings {
            host,
            port,
            database,
            user,
            password: super::secret(config, "password")?,
        })
    }

    fn name(&self) -> String {
        format!(
            "{}@{}:{}/{}",
            self.user.as_deref().unwrap_or("default"),
            self.host,
            self.port,
            self.database
        )
    }
}

/// Check an endpoint config without connecting (at publish).
pub(super) fn check(config: &Value) -> anyhow::Result<()> {
    Settings::of(config).map(drop)
}

/// Whether `e` says the server cannot be reached or went away, rather than refusing.
fn transient(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_connection_dropped()
        || matches!(
            e.code(),
            Some("LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN")
        )
}

impl Destination for Redis {
    fn open(config: &Value) -> anyhow::Result<Self> {
        let s = Settings::of(config)?;
        let name = s.name();
        let mut redis_settings = RedisConnectionInfo::default().set_db(s.database);
        if let Some(u) = &s.user {
            redis_settings = redis_settings.set_username(u);
        }
        if let Some(p) = &s.password {
            redis_settings = redis_settings.set_password(p);
        }
        let fail = |e: redis::RedisError| {
            let why = format!("{}: {e}", endpoint_name("redis", &name));
            if transient(&e) {
                anyhow::Error::new(super::Unavailable(why))
            } else {
                anyhow::anyhow!(why)
            }
        };
        let info = ConnectionAddr::Tcp(s.host.clone(), s.port)
            .into_connection_info()
            .map_err(fail)?
            .set_redis_settings(redis_settings);
        let client = redis::Client::open(info).map_err(fail)?;
        let conn = client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .map_err(fail)?;
        Ok(Redis {
            state: Arc::new(Mutex::new(State {
                conn,
                open: false,
                queued: Vec::new(),
                queued_bytes: 0,
                expected: Vec::new(),
            })),
            name,
        })
    }

    fn begin(&self) -> anyhow::Result<()> {
        let mut s = self.lock();
        s.clear();
        s.open = true;
        Ok(())
    }

    fn commit(&self) -> anyhow::Result<()> {
        let mut s = self.lock();
        let result = s.apply(&self.name);
        s.clear();
        result
    }

    fn rollback(&self) {
        // Nothing was sent: the queue is dropped.
        self.lock().clear();
    }

    fn grant(&self) -> Grant {
        Grant::Kv(Box::new(self.clone()))
    }

    fn available(&self) -> bool {
        let mut s = self.lock();
        let _ = s.conn.set_read_timeout(Some(CONNECT_TIMEOUT));
        redis::cmd("PING").query::<String>(&mut s.conn).is_ok()
    }
}

impl State {
    fn clear(&mut self) {
        self.open = false;
        self.queued.clear();
        self.queued_bytes = 0;
        self.expected.clear();
    }

    /// WATCH the expected keys, check them, then MULTI, the queued writes, EXEC.
    fn apply(&mut self, name: &str) -> anyhow::Result<()> {
        let endpoint = endpoint_name("redis", name);
        let error = |what: &str, e: redis::RedisError| {
            let why = format!("{endpoint}: {what}: {e}");
            if transient(&e) {
                anyhow::Error::new(super::Unavailable(why))
            } else {
                anyhow::anyhow!(why)
            }
        };
        anyhow::ensure!(self.open, "{endpoint}: no transaction is open to commit");
        if self.queued.is_empty() && self.expected.is_empty() {
            return Ok(());
        }
        self.conn
            .set_read_timeout(Some(COMMIT_TIMEOUT))
            .map_err(|e| error("failed to commit", e))?;
        if !self.expected.is_empty() {
            let keys: Vec<&str> = self.expected.iter().map(|(k, _)| k.as_str()).collect();
            redis::cmd("WATCH")
                .arg(&keys)
                .query::<()>(&mut self.conn)
                .map_err(|e| error("failed to commit", e))?;
            let now: Vec<Option<String>> = redis::cmd("MGET")
                .arg(&keys)
                .query(&mut self.conn)
                .map_err(|e| error("failed to commit", e))?;
            for ((key, want), got) in self.expected.iter().zip(&now) {
                if want != got {
                    let _ = redis::cmd("UNWATCH").query::<()>(&mut self.conn);
                    anyhow::bail!(
                        "{endpoint}: fenced: key {key} holds {}, not {} as this transaction expects (another instance of the task opened after this one); nothing of it was written",
                        shown(got),
                        shown(want)
                    );
                }
            }
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for cmd in &self.queued {
            pipe.add_command(cmd.clone()).ignore();
        }
        // With WATCHed keys, EXEC answers nil (None) if any of them changed.
        let applied: Option<()> = pipe
            .query(&mut self.conn)
            .map_err(|e| error("failed to commit the transaction", e))?;
        if applied.is_none() {
            anyhow::bail!(
                "{endpoint}: fenced: a key this transaction expects changed before it was applied (another instance of the task); nothing of it was written"
            );
        }
        Ok(())
    }
}

fn shown(v: &Option<String>) -> String {
    match v {
        Some(v) => format!("{v:?}"),
        None => "nothing".into(),
    }
}

impl Redis {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("redis connection poisoned")
    }

    /// Run a read under the call's remaining deadline, with its result counted against the
    /// result cap.
    fn read<R>(
        &self,
        bounds: &SqlBounds,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<R>,
        size: impl FnOnce(&R) -> usize,
    ) -> Result<R, String> {
        let left = bounds.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(super::deadline_error(bounds));
        }
        let mut s = self.lock();
        if !s.open {
            return Err("no destination transaction is open: the store is read only inside the calls of a transaction".into());
        }
        s.conn
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let r = f(&mut s.conn).map_err(|e| {
            if e.is_timeout() || Instant::now() >= bounds.deadline {
                super::deadline_error(bounds)
            } else {
                e.to_string()
            }
        })?;
        let bytes = size(&r);
        if bytes > bounds.result_bytes_max {
            return Err(format!(
                "the read's result is {bytes} bytes, over the cap of {} bytes per host call (hostResultBytesMax): read fewer keys per call",
                bounds.result_bytes_max
            ));
        }
        Ok(r)
    }

    /// Queue writes of `bytes` bytes for the commit, or say why not.
    fn queue(&self, cmds: Vec<redis::Cmd>, bytes: usize, bounds: &SqlBounds) -> Result<(), String> {
        if Instant::now() >= bounds.deadline {
            return Err(super::deadline_error(bounds));
        }
        let mut s = self.lock();
        if !s.open {
            return Err("no destination transaction is open: writes are queued only inside the calls of a transaction".into());
        }
        if s.queued_bytes + bytes > bounds.txn_bytes_max {
            return Err(format!(
                "the transaction's queued writes would be over the cap of {} bytes (stateTxnBytesMax): the host holds them until it commits; lower the task's txnDocsMax or raise the cap",
                bounds.txn_bytes_max
            ));
        }
        s.queued_bytes += bytes;
        s.queued.extend(cmds);
        Ok(())
    }
}

fn options_bytes(v: &[Option<String>]) -> usize {
    v.iter().map(|o| o.as_ref().map_or(1, String::len)).sum()
}

/// A TTL's `PEXPIRE` argument, refusing zero (which would delete the key at once).
fn ttl(ttl_ms: Option<u64>) -> Result<Option<u64>, String> {
    match ttl_ms {
        Some(0) => Err("a TTL of 0 ms would expire the key at once: leave it out for none".into()),
        t => Ok(t),
    }
}

impl KvAccess for Redis {
    fn get(&mut self, keys: &[String], bounds: &SqlBounds) -> Result<Vec<Option<String>>, String> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(KEYS_PER_READ) {
            let got: Vec<Option<String>> = self.read(
                bounds,
                |c| redis::cmd("MGET").arg(chunk).query(c),
                |r: &Vec<Option<String>>| options_bytes(r) + options_bytes(&out),
            )?;
            out.extend(got);
        }
        Ok(out)
    }

    fn hget(
        &mut self,
        keys: &[String],
        field: &str,
        bounds: &SqlBounds,
    ) -> Result<Vec<Option<String>>, String> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(KEYS_PER_READ) {
            let got: Vec<Option<String>> = self.read(
                bounds,
                |c| {
                    let mut pipe = redis::pipe();
                    for key in chunk {
                        pipe.cmd("HGET").arg(key).arg(field);
                    }
                    pipe.query(c)
                },
                |r: &Vec<Option<String>>| options_bytes(r) + options_bytes(&out),
            )?;
            out.extend(got);
        }
        Ok(out)
    }

    fn hgetall(&mut self, key: &str, bounds: &SqlBounds) -> Result<Vec<(String, String)>, String> {
        self.read(
            bounds,
            |c| redis::cmd("HGETALL").arg(key).query(c),
            |r: &Vec<(String, String)>| r.iter().map(|(f, v)| f.len() + v.len()).sum(),
        )
    }

    fn set(
        &mut self,
        entries: Vec<(String, String)>,
        ttl_ms: Option<u64>,
        bounds: &SqlBounds,
    ) -> Result<(), String> {
        let ttl = ttl(ttl_ms)?;
        let bytes = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        let cmds = entries
            .into_iter()
            .map(|(k, v)| {
                let mut c = redis::cmd("SET");
                c.arg(k).arg(v);
                if let Some(ms) = ttl {
                    c.arg("PX").arg(ms);
                }
                c
            })
            .collect();
        self.queue(cmds, bytes, bounds)
    }

    fn hset(
        &mut self,
        entries: Vec<(String, Vec<(String, String)>)>,
        ttl_ms: Option<u64>,
        bounds: &SqlBounds,
    ) -> Result<(), String> {
        let ttl = ttl(ttl_ms)?;
        let mut bytes = 0;
        let mut cmds = Vec::with_capacity(entries.len() * 3);
        for (key, fields) in entries {
            bytes += key.len() + fields.iter().map(|(f, v)| f.len() + v.len()).sum::<usize>();
            // The hash is replaced whole: fields the new value lacks go.
            cmds.push(redis::cmd("DEL").arg(&key).to_owned());
            if !fields.is_empty() {
                let mut c = redis::cmd("HSET");
                c.arg(&key);
                for (f, v) in fields {
                    c.arg(f).arg(v);
                }
                cmds.push(c);
                if let Some(ms) = ttl {
                    cmds.push(redis::cmd("PEXPIRE").arg(&key).arg(ms).to_owned());
                }
            }
        }
        self.queue(cmds, bytes, bounds)
    }

    fn del(&mut self, keys: Vec<String>, bounds: &SqlBounds) -> Result<(), String> {
        if keys.is_empty() {
            return Ok(());
        }
        let bytes = keys.iter().map(String::len).sum();
        self.queue(vec![redis::cmd("DEL").arg(keys).to_owned()], bytes, bounds)
    }

    fn expect(
        &mut self,
        key: String,
        value: Option<String>,
        bounds: &SqlBounds,
    ) -> Result<(), String> {
        let bytes = key.len() + value.as_ref().map_or(0, String::len);
        self.queue(Vec::new(), bytes, bounds)?;
        self.lock().expected.push((key, value));
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::Settings;
    use serde_json::json;

    #[test]
    fn configs_are_checked_without_connecting() {
        let s = Settings::of(&json!({"address": "127.0.0.1"})).unwrap();
        assert_eq!(
            (s.port, s.database, s.name()),
            (6379, 0, "default@127.0.0.1:6379/0".to_string())
        );
        let s = Settings::of(&json!({"address": "r:7000", "database": 3, "user": "flow"})).unwrap();
        assert_eq!(s.name(), "flow@r:7000/3");
        for (config, why) in [
            (json!({}), "needs `address`"),
            (json!({"address": "r:port"}), "not a port number"),
            (json!({"address": "r", "database": "x"}), "is a number"),
            (
                json!({"address": "r", "password": "inline"}),
                "never written inline",
            ),
        ] {
            let e = format!("{:#}", Settings::of(&config).err().unwrap());
            assert!(e.contains(why), "{config}: {e}");
        }
    }
}
