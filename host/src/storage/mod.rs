//! The host's redb database and every table definition, in one place.
//!
//! Only this module names redb tables. The on-disk layout is described in
//! `docs/design/storage.md`; `FORMAT_VERSION` is bumped on any incompatible change.

use anyhow::Context;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use std::path::Path;

/// Version of the layout below; stored under `META["format"]` and checked at open.
pub const FORMAT_VERSION: u64 = 1;

/// Small host-wide records: `format` (u64 LE), `catalog` (the built catalog, JSON).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Journal documents: (journal, begin offset) -> the document's JSON bytes. A document with
/// `n` bytes occupies offsets `[begin, begin + n + 1)`, as one NDJSON line.
pub const JOURNAL_DOCS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("journal_docs");
/// Journal write heads: journal -> the offset the next appended document begins at.
pub const JOURNAL_HEADS: TableDefinition<&str, u64> = TableDefinition::new("journal_heads");
/// Plugin versions: (plugin name, sequence) -> version record (JSON). Sequence 1 is the first
/// deploy; the highest sequence not rolled back is live.
pub const PLUGIN_VERSIONS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("plugin_versions");
/// Component bytes by content digest (`sha256:...`), shared by every version that has them.
pub const PLUGIN_BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("plugin_blobs");
/// Derivation state: (task, shuffle key as JSON array text) -> state JSON.
pub const TASK_STATE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("task_state");
/// Task read checkpoints: (task, source name) -> next offset to read.
pub const CHECKPOINTS: TableDefinition<(&str, &str), u64> = TableDefinition::new("checkpoints");

/// The host database.
pub struct Store {
    db: Database,
}

impl Store {
    /// Open (or create) the database at `path`, creating every table and checking the format.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let db = Database::create(path)
            .with_context(|| format!("failed to open database {}", path.display()))?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta
                .get("format")?
                .map(|v| u64::from_le_bytes(v.value().try_into().unwrap_or_default()));
            match found {
                None => {
                    meta.insert("format", FORMAT_VERSION.to_le_bytes().as_slice())?;
                }
                Some(v) if v == FORMAT_VERSION => {}
                Some(v) => anyhow::bail!(
                    "database {} has format version {v}, but this host reads version {FORMAT_VERSION}",
                    path.display()
                ),
            }
            txn.open_table(JOURNAL_DOCS)?;
            txn.open_table(JOURNAL_HEADS)?;
            txn.open_table(PLUGIN_VERSIONS)?;
            txn.open_table(PLUGIN_BLOBS)?;
            txn.open_table(TASK_STATE)?;
            txn.open_table(CHECKPOINTS)?;
        }
        txn.commit()?;
        Ok(Store { db })
    }

    /// Run `f` in one write transaction and commit it durably (fsync) before returning.
    /// Nothing of `f`'s writes is visible or durable if it returns an error.
    pub fn write<R>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> anyhow::Result<R>,
    ) -> anyhow::Result<R> {
        let txn = self
            .db
            .begin_write()
            .context("failed to begin a write transaction")?;
        let out = f(&txn)?;
        txn.commit().context("failed to commit")?;
        Ok(out)
    }

    pub fn read(&self) -> anyhow::Result<redb::ReadTransaction> {
        Ok(self
            .db
            .begin_read()
            .context("failed to begin a read transaction")?)
    }

    /// A META record.
    pub fn meta(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let txn = self.read()?;
        let table = txn.open_table(META)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    /// A checkpoint, or 0 (the beginning) if the task never committed one for `source`.
    pub fn checkpoint(&self, task: &str, source: &str) -> anyhow::Result<u64> {
        let txn = self.read()?;
        let table = txn.open_table(CHECKPOINTS)?;
        Ok(table.get((task, source))?.map(|v| v.value()).unwrap_or(0))
    }

    /// A derivation's state for one key.
    pub fn state(&self, task: &str, key: &str) -> anyhow::Result<Option<String>> {
        let txn = self.read()?;
        let table = txn.open_table(TASK_STATE)?;
        Ok(table
            .get((task, key))?
            .map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    }
}
