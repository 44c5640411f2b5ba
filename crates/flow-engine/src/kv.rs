//! The `kv` capability: a key-value store the host owns (Redis), granted to a connector whose
//! endpoint names one. Reads go to the store; writes are queued by the host until it commits
//! the transaction, and applied together.

use super::bindings::materialization::flow::plugin::kv;
use super::sql::SqlBounds;

/// A key-value store owned by the host, inside a transaction the host controls. Every method
/// must stop at `bounds`: past the deadline, the result cap (reads) or the transaction cap
/// (queued writes, `txn_bytes_max`) it returns an error naming the limit.
pub trait KvAccess: Send {
    fn get(&mut self, keys: &[String], bounds: &SqlBounds) -> Result<Vec<Option<String>>, String>;
    fn hget(
        &mut self,
        keys: &[String],
        field: &str,
        bounds: &SqlBounds,
    ) -> Result<Vec<Option<String>>, String>;
    fn hgetall(&mut self, key: &str, bounds: &SqlBounds) -> Result<Vec<(String, String)>, String>;
    fn set(
        &mut self,
        entries: Vec<(String, String)>,
        ttl_ms: Option<u64>,
        bounds: &SqlBounds,
    ) -> Result<(), String>;
    fn hset(
        &mut self,
        entries: Vec<(String, Vec<(String, String)>)>,
        ttl_ms: Option<u64>,
        bounds: &SqlBounds,
    ) -> Result<(), String>;
    fn del(&mut self, keys: Vec<String>, bounds: &SqlBounds) -> Result<(), String>;
    fn expect(
        &mut self,
        key: String,
        value: Option<String>,
        bounds: &SqlBounds,
    ) -> Result<(), String>;
}

const NO_KV: &str =
    "this task was granted no key-value store: its endpoint names none (`connector: redis`)";

/// What a plugin instance was granted of `kv`: the store its endpoint names, if any. Its
/// bounds are those of `sql` (the current call's deadline and caps).
#[derive(Default)]
pub(crate) struct KvGrant {
    pub(crate) access: Option<Box<dyn KvAccess>>,
    pub(crate) bounds: Option<SqlBounds>,
}

impl KvGrant {
    fn access(&mut self) -> Result<(&mut dyn KvAccess, SqlBounds), String> {
        match (self.access.as_deref_mut(), self.bounds) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(NO_KV.to_string()),
        }
    }
}

impl kv::Host for KvGrant {
    fn get(&mut self, keys: Vec<String>) -> Result<Vec<Option<String>>, String> {
        let (kv, bounds) = self.access()?;
        kv.get(&keys, &bounds)
    }
    fn hget(&mut self, keys: Vec<String>, field: String) -> Result<Vec<Option<String>>, String> {
        let (kv, bounds) = self.access()?;
        kv.hget(&keys, &field, &bounds)
    }
    fn hgetall(&mut self, key: String) -> Result<Vec<(String, String)>, String> {
        let (kv, bounds) = self.access()?;
        kv.hgetall(&key, &bounds)
    }
    fn set(&mut self, entries: Vec<kv::Entry>, ttl_ms: Option<u64>) -> Result<(), String> {
        let (kv, bounds) = self.access()?;
        kv.set(
            entries.into_iter().map(|e| (e.key, e.value)).collect(),
            ttl_ms,
            &bounds,
        )
    }
    fn hset(&mut self, entries: Vec<kv::HashEntry>, ttl_ms: Option<u64>) -> Result<(), String> {
        let (kv, bounds) = self.access()?;
        kv.hset(
            entries.into_iter().map(|e| (e.key, e.fields)).collect(),
            ttl_ms,
            &bounds,
        )
    }
    fn del(&mut self, keys: Vec<String>) -> Result<(), String> {
        let (kv, bounds) = self.access()?;
        kv.del(keys, &bounds)
    }
    fn expect(&mut self, key: String, value: Option<String>) -> Result<(), String> {
        let (kv, bounds) = self.access()?;
        kv.expect(key, value, &bounds)
    }
}
