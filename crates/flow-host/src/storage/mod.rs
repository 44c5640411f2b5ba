//! The host's redb database and every table definition, in one place.
//!
//! Only this module names redb tables. The on-disk layout is described in
//! `docs/design/storage.md`; `FORMAT_VERSION` is bumped on any incompatible change.

use anyhow::Context;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// Version of the layout below; stored under `META["format"]` and checked at open. Version 1
/// kept one journal row per document (`JOURNAL_DOCS_V1`); a version 1 database is upgraded
/// in place when it is opened (`upgrade_v1`).
pub const FORMAT_VERSION: u64 = 2;

/// Small host-wide records: `format` (u64 LE), `catalog` (the built catalog, JSON).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Journal blocks: (journal, begin offset) -> the NDJSON lines of consecutive documents, each
/// ending in a newline, occupying offsets `[begin, begin + len)`. A journal's blocks tile its
/// unsealed range; a block wholly below the journal's sealed end is trimmed, one reaching
/// past it stays until it is sealed to its end.
pub const JOURNAL_BLOCKS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("journal_blocks");
/// Format 1's journal rows: (journal, begin offset) -> one document's JSON bytes (no newline).
/// Only read when a format 1 database is upgraded.
const JOURNAL_DOCS_V1: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("journal_docs");
/// Journal write heads: journal -> the offset the next appended document begins at.
pub const JOURNAL_HEADS: TableDefinition<&str, u64> = TableDefinition::new("journal_heads");
/// The fragment index: (journal, begin offset) -> fragment record (JSON, `fragment::Fragment`).
/// A record is written only after its file's upload completed; `JOURNAL_DOCS` rows below a
/// journal's highest recorded end are trimmed only after the record committed.
pub const FRAGMENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("fragments");
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
/// Capture checkpoints: task -> the connector's position (JSON text) as of the documents it
/// committed with.
pub const CAPTURE_CHECKPOINTS: TableDefinition<&str, &str> =
    TableDefinition::new("capture_checkpoints");

/// What an operator set on a task, outside the catalog: task -> JSON (`{"paused": true}`).
/// Written by `flow tasks pause|resume` in one transaction; removed with the task.
pub const TASK_CONTROL: TableDefinition<&str, &[u8]> = TableDefinition::new("task_control");
/// A task's counters and last error as the status shows them (JSON, `task::status::Record`):
/// task -> record, saved at most a second apart and at shutdown, read back at start, so a
/// restart or a publish does not reset them.
pub const TASK_RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("task_records");
/// Plugin log lines: (plugin, seq) -> the line (JSON, `plugin::LogLine`). Exactly the lines the
/// in-memory rings hold (bounded per plugin and task), saved at most a second apart.
pub const PLUGIN_LOGS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("plugin_logs");

/// A write job: runs inside a shared write transaction. Jobs may run more than once: when
/// another job of their group fails, the group is aborted and run again without it.
type Job = Box<dyn Fn(&WriteTransaction) -> anyhow::Result<()> + Send>;

/// Told the job's outcome once it is known (after the fsync, for a commit), on the
/// committer thread: it must be quick.
type Done = Box<dyn FnOnce(anyhow::Result<()>) + Send>;

struct Request {
    job: Job,
    done: Done,
}

/// Most jobs committed together. A group waits for nothing (it takes what is queued when the
/// previous commit ends), so the bound only caps the work one fsync can be made to wait for.
const GROUP_JOBS_MAX: usize = 512;

/// The host database. Writes go through one committer thread that runs every queued job in
/// one write transaction and one fsync: tasks and ingests that commit at the same time share
/// the fsync (group commit), while each job still succeeds or fails alone (a failed job's
/// group is aborted and committed again without it; redb savepoints need a clean
/// transaction, so they cannot isolate jobs).
pub struct Store {
    db: Arc<Slot>,
    queue: std::sync::Mutex<std::sync::mpsc::Sender<Request>>,
    /// The committer thread, joined on drop: the database file is closed (and may be opened
    /// again, e.g. by a host restarted in the same process) once the store is gone.
    committer: Option<std::thread::JoinHandle<()>>,
    /// The host's time, which appends stamp on documents (`clock.rs`).
    pub clock: crate::clock::Clock,
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the queue ends the committer once it finished what was queued.
        *self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = std::sync::mpsc::channel().0;
        if let Some(t) = self.committer.take()
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
    }
}

/// The open database, and why it cannot be written, if it cannot. After an I/O error redb
/// refuses every later write until the database is closed and opened again; the committer
/// does that as soon as a write comes and the cause (a full disk) is gone.
struct Slot {
    path: PathBuf,
    /// None only while the committer re-opens the file.
    db: RwLock<Option<Arc<Database>>>,
    fault: Mutex<Option<StorageFault>>,
}

/// The database could not be written (or re-opened): a storage fault, not a fault of the
/// write. Writes resume by themselves once the cause is gone.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct StorageFault {
    pub message: String,
    /// The filesystem is full.
    pub disk_full: bool,
}

impl StorageFault {
    fn of(path: &Path, e: &dyn std::fmt::Display) -> Self {
        let text = e.to_string();
        let disk_full = text.contains("No space left") || text.contains("StorageFull");
        let free = free_bytes(path)
            .map(|b| format!("; {b} bytes free on its filesystem"))
            .unwrap_or_default();
        StorageFault {
            message: format!(
                "the database {} cannot be written: {text}{free}",
                path.display()
            ),
            disk_full,
        }
    }
}

/// What a faulted database must take, committed, to count as writable again: about what
/// an ingest request of a few hundred documents writes.
const HEAL_PROBE_BYTES: usize = 256 << 10;
/// Where that proof is written, and removed again.
const HEAL_PROBE: TableDefinition<(), &[u8]> = TableDefinition::new("heal_probe");

/// How often a faulted database is re-opened while no write comes.
const HEAL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether an error is the database failing under the caller (redb's I/O errors), not the
/// caller. A read that met the database while the committer re-opened it after a fault
/// (redb's "Database has been closed", or our "is being re-opened") is one too: retried
/// later, it works.
pub(crate) fn is_io_failure(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<StorageFault>()
            || matches!(
                c.downcast_ref::<redb::StorageError>(),
                Some(redb::StorageError::DatabaseClosed)
            )
            || {
                let text = c.to_string();
                text.starts_with("I/O error")
                    || text.starts_with("Previous I/O error")
                    || text == "Database has been closed"
                    || text.ends_with("is being re-opened")
            }
    })
}

/// Bytes available to this process on the filesystem holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    let dir = path.parent().unwrap_or(path);
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

impl Slot {
    fn fault(&self) -> Option<StorageFault> {
        self.fault.lock().expect("fault poisoned").clone()
    }

    fn get(&self) -> anyhow::Result<Arc<Database>> {
        self.db
            .read()
            .expect("database slot poisoned")
            .clone()
            .ok_or_else(|| {
                anyhow::anyhow!("the database {} is being re-opened", self.path.display())
            })
    }

    fn set_fault(&self, fault: Option<StorageFault>) {
        if let Some(f) = &fault {
            tracing::error!("{f}");
        } else if self.fault.lock().expect("fault poisoned").is_some() {
            tracing::info!("the database {} is writable again", self.path.display());
        }
        *self.fault.lock().expect("fault poisoned") = fault;
    }

    /// Re-open and prove the database takes a write again; clear the fault if it does. The
    /// proof writes `HEAL_PROBE_BYTES` and commits (then removes them): an empty commit
    /// succeeds on a full disk, and would call the database healthy while every real write
    /// still fails.
    fn heal(&self) {
        let fault = |e: &dyn std::fmt::Display| StorageFault::of(&self.path, e);
        let proof = self.reopen().and_then(|()| {
            let db = self.get().map_err(|e| fault(&e))?;
            let probe = vec![0u8; HEAL_PROBE_BYTES];
            for value in [Some(probe.as_slice()), None] {
                let txn = db.begin_write().map_err(|e| fault(&e))?;
                {
                    let mut t = txn.open_table(HEAL_PROBE).map_err(|e| fault(&e))?;
                    match value {
                        Some(v) => t.insert((), v).map(drop),
                        None => t.remove(()).map(drop),
                    }
                    .map_err(|e| fault(&e))?;
                }
                txn.commit().map_err(|e| fault(&e))?;
            }
            Ok(())
        });
        match proof {
            Ok(()) => self.set_fault(None),
            Err(f) => *self.fault.lock().expect("fault poisoned") = Some(f),
        }
    }

    /// After a fault: close the database and open it again (redb repairs it). Fails while the
    /// cause lasts, or while a reader still holds the old one.
    fn reopen(&self) -> Result<(), StorageFault> {
        let mut slot = self.db.write().expect("database slot poisoned");
        if let Some(old) = slot.take() {
            match Arc::try_unwrap(old) {
                Ok(db) => drop(db),
                Err(old) => {
                    *slot = Some(old);
                    return Err(StorageFault::of(
                        &self.path,
                        &"it is still in use by a reader; retrying",
                    ));
                }
            }
        }
        match create(&self.path) {
            Ok(db) => {
                *slot = Some(Arc::new(db));
                Ok(())
            }
            Err(e) => Err(StorageFault::of(&self.path, &e)),
        }
    }
}

/// redb's page cache. Its default (1 GiB) is most of what `flow serve` held after a large
/// ingest (peak RSS ~820 MiB for 1M documents); the hot data of a host (journal heads, task
/// state, checkpoints) is written recently and read soon, so a small cache serves it and the
/// kernel's page cache holds the rest without counting against the process. redb fills it
/// with a write transaction's pages too (a heap profile of the pipeline showed all of it
/// held); 16 MiB ran the pipeline as fast as 64 MiB (`flow bench --suite pipeline`, same
/// run) with ~50 MiB less peak RSS.
const CACHE_BYTES: usize = 16 << 20;

fn create(path: &Path) -> Result<Database, redb::DatabaseError> {
    redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create(path)
}

/// Move format 1's one-row-per-document journals into blocks (one line per block: their
/// offsets stay as they were) and drop the old table, inside the opening transaction, so a
/// crash leaves the database wholly in one format or the other. Returns the rows moved.
fn upgrade_v1(txn: &WriteTransaction) -> anyhow::Result<u64> {
    let mut moved = 0;
    {
        let old = txn.open_table(JOURNAL_DOCS_V1)?;
        let mut blocks = txn.open_table(JOURNAL_BLOCKS)?;
        let mut line = Vec::new();
        for entry in old.iter()? {
            let (k, v) = entry?;
            let (journal, offset) = k.value();
            line.clear();
            line.extend_from_slice(v.value());
            line.push(b'\n');
            blocks.insert((journal, offset), line.as_slice())?;
            moved += 1;
        }
    }
    txn.delete_table(JOURNAL_DOCS_V1)?;
    Ok(moved)
}

/// The state table as one read transaction sees it.
pub type StateTable = redb::ReadOnlyTable<(&'static str, &'static str), &'static [u8]>;

/// A derivation's state for one key in `table`.
pub fn state_in(table: &StateTable, task: &str, key: &str) -> anyhow::Result<Option<String>> {
    Ok(table
        .get((task, key))?
        .map(|v| String::from_utf8_lossy(v.value()).into_owned()))
}

impl Store {
    /// Open (or create) the database at `path`, creating every table and checking the format.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let db =
            create(path).with_context(|| format!("failed to open database {}", path.display()))?;
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
                Some(1) => {
                    let rows = upgrade_v1(&txn)?;
                    meta.insert("format", FORMAT_VERSION.to_le_bytes().as_slice())?;
                    tracing::info!(
                        "upgraded database {} from format 1 to {FORMAT_VERSION}: {rows} journal documents moved into blocks",
                        path.display()
                    );
                }
                Some(v) => anyhow::bail!(
                    "database {} has format version {v}, but this host reads version {FORMAT_VERSION}",
                    path.display()
                ),
            }
            txn.open_table(JOURNAL_BLOCKS)?;
            txn.open_table(JOURNAL_HEADS)?;
            txn.open_table(FRAGMENTS)?;
            txn.open_table(PLUGIN_VERSIONS)?;
            txn.open_table(PLUGIN_BLOBS)?;
            txn.open_table(TASK_STATE)?;
            txn.open_table(CHECKPOINTS)?;
            txn.open_table(CAPTURE_CHECKPOINTS)?;
            txn.open_table(TASK_CONTROL)?;
            txn.open_table(TASK_RECORDS)?;
            txn.open_table(PLUGIN_LOGS)?;
        }
        txn.commit()?;
        let db = Arc::new(Slot {
            path: path.to_path_buf(),
            db: RwLock::new(Some(Arc::new(db))),
            fault: Mutex::new(None),
        });
        let (tx, rx) = std::sync::mpsc::channel::<Request>();
        let committer_db = db.clone();
        let committer = std::thread::Builder::new()
            .name("flow-committer".into())
            .spawn(move || committer(&committer_db, &rx))
            .context("failed to start the committer thread")?;
        Ok(Store {
            db,
            queue: std::sync::Mutex::new(tx),
            committer: Some(committer),
            clock: Default::default(),
        })
    }

    /// Run `f` in a write transaction and return once it committed durably (fsync). Nothing
    /// of `f`'s writes is visible or durable if it returns an error; other jobs committed in
    /// the same transaction are not affected by its failure.
    pub fn write<R: Send + 'static>(
        &self,
        f: impl Fn(&WriteTransaction) -> anyhow::Result<R> + Send + 'static,
    ) -> anyhow::Result<R> {
        let out = std::sync::Arc::new(std::sync::Mutex::new(None));
        let slot = out.clone();
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        self.write_then(
            move |txn| {
                let r = f(txn)?;
                *slot.lock().expect("result slot poisoned") = Some(r);
                Ok(())
            },
            move |result| {
                let _ = done.send(result);
            },
        )?;
        wait.recv()
            .map_err(|_| anyhow::anyhow!("the committer thread stopped"))??;
        let r = out.lock().expect("result slot poisoned").take();
        r.context("a committed job left no result")
    }

    /// `write` without waiting: `then` is told the outcome on the committer thread, after the
    /// commit's fsync (or the failure), and must be quick. Jobs are committed in the order
    /// they are queued, so a writer's later job never lands before an earlier one.
    pub fn write_then(
        &self,
        f: impl Fn(&WriteTransaction) -> anyhow::Result<()> + Send + 'static,
        then: impl FnOnce(anyhow::Result<()>) + Send + 'static,
    ) -> anyhow::Result<()> {
        self.queue
            .lock()
            .expect("committer queue poisoned")
            .send(Request {
                job: Box::new(f),
                done: Box::new(then),
            })
            .map_err(|_| anyhow::anyhow!("the committer thread stopped"))
    }

    pub fn read(&self) -> anyhow::Result<redb::ReadTransaction> {
        self.db
            .get()?
            .begin_read()
            .context("failed to begin a read transaction")
    }

    /// Why the database cannot be written now, if it cannot (health checks show it).
    pub fn fault(&self) -> Option<StorageFault> {
        self.db.fault()
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

    /// A capture's checkpoint, if it ever committed one.
    pub fn capture_checkpoint(&self, task: &str) -> anyhow::Result<Option<String>> {
        let txn = self.read()?;
        let table = txn.open_table(CAPTURE_CHECKPOINTS)?;
        Ok(table.get(task)?.map(|v| v.value().to_string()))
    }

    /// Every (key, state) of a derivation, in key order.
    pub fn task_states(&self, task: &str) -> anyhow::Result<Vec<(String, String)>> {
        let txn = self.read()?;
        let table = txn.open_table(TASK_STATE)?;
        let mut out = Vec::new();
        for entry in table.range((task, "")..)? {
            let (k, v) = entry?;
            let (t, key) = k.value();
            if t != task {
                break;
            }
            out.push((
                key.to_string(),
                String::from_utf8_lossy(v.value()).into_owned(),
            ));
        }
        Ok(out)
    }

    /// The META key recording which component (digest) last wrote `task`'s state.
    pub fn state_digest_key(task: &str) -> String {
        format!("state-digest/{task}")
    }

    /// A derivation's state for one key.
    pub fn state(&self, task: &str, key: &str) -> anyhow::Result<Option<String>> {
        state_in(&self.read()?.open_table(TASK_STATE)?, task, key)
    }
}

/// What `clear_task` removes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Clear {
    /// Where the task read and what it kept (checkpoints, state, its capture checkpoint) and
    /// its counters: it starts over from the beginning (`flow tasks reset`).
    Progress,
    /// That and whether it is paused: the task is gone (`flow catalog delete`).
    Everything,
}

/// Remove what the host keeps for `task`, in `txn`.
pub fn clear_task(txn: &WriteTransaction, task: &str, what: Clear) -> anyhow::Result<()> {
    let mut state = txn.open_table(TASK_STATE)?;
    for k in task_keys(&state, task)? {
        state.remove((task, k.as_str()))?;
    }
    let mut checkpoints = txn.open_table(CHECKPOINTS)?;
    for s in task_keys(&checkpoints, task)? {
        checkpoints.remove((task, s.as_str()))?;
    }
    txn.open_table(CAPTURE_CHECKPOINTS)?.remove(task)?;
    txn.open_table(META)?
        .remove(Store::state_digest_key(task).as_str())?;
    txn.open_table(TASK_RECORDS)?.remove(task)?;
    if what == Clear::Everything {
        txn.open_table(TASK_CONTROL)?.remove(task)?;
    }
    Ok(())
}

/// The second parts of the keys `(task, _)` of a table keyed by (task, name).
fn task_keys<V: redb::Value + 'static>(
    table: &redb::Table<(&'static str, &'static str), V>,
    task: &str,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in table.range((task, "")..)? {
        let (k, _) = entry?;
        let (t, name) = k.value();
        if t != task {
            break;
        }
        out.push(name.to_string());
    }
    Ok(out)
}

/// The committer: take every queued job and run them in one transaction, committed with one
/// fsync; if a job fails, answer it, abort, and run the rest of the group again without it.
/// A failure of the database itself (begin, commit, or an I/O error under a job) answers
/// with a `StorageFault`; the next group, or the next idle second, first heals the database.
fn committer(slot: &Slot, rx: &std::sync::mpsc::Receiver<Request>) {
    loop {
        let first = match rx.recv_timeout(HEAL_INTERVAL) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                // Nothing to write: while faulted, try to heal anyway, so readers and health
                // checks recover even when no writer comes (e.g. ingests refused up front).
                if slot.fault().is_some() {
                    slot.heal();
                }
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut group = vec![first];
        while group.len() < GROUP_JOBS_MAX {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        // A faulted database is healed (or not) before anything of the group runs.
        if slot.fault().is_some() {
            slot.heal();
        }
        let db = match slot.fault() {
            Some(f) => Err(f),
            None => slot.get().map_err(|e| StorageFault::of(&slot.path, &e)),
        };
        let db = match db {
            Ok(db) => db,
            Err(f) => {
                refuse(&mut group, &f);
                continue;
            }
        };
        while !group.is_empty() {
            let txn = match db.begin_write() {
                Ok(t) => t,
                Err(e) => {
                    let f = StorageFault::of(&slot.path, &e);
                    slot.set_fault(Some(f.clone()));
                    refuse(&mut group, &f);
                    break;
                }
            };
            let failed = group.iter().position(|r| (r.job)(&txn).is_err());
            match failed {
                Some(i) => {
                    let _ = txn.abort();
                    // Run the failed job alone for its own error, then retry the others.
                    let r = group.remove(i);
                    let result = db
                        .begin_write()
                        .map_err(|e| anyhow::Error::from(StorageFault::of(&slot.path, &e)))
                        .and_then(|txn| {
                            let result = (r.job)(&txn);
                            let _ = txn.abort();
                            result
                        });
                    (r.done)(match result {
                        Ok(()) => Err(anyhow::anyhow!(
                            "the write failed, then succeeded alone; it was not committed"
                        )),
                        // The database failed under the job, not the job itself.
                        Err(e) if is_io_failure(&e) => {
                            let f = StorageFault::of(&slot.path, &format!("{e:#}"));
                            slot.set_fault(Some(f.clone()));
                            Err(f.into())
                        }
                        Err(e) => Err(e),
                    });
                }
                None => match txn.commit() {
                    Ok(()) => {
                        for r in group.drain(..) {
                            (r.done)(Ok(()));
                        }
                    }
                    Err(e) => {
                        let f = StorageFault::of(&slot.path, &e);
                        slot.set_fault(Some(f.clone()));
                        refuse(&mut group, &f);
                    }
                },
            }
        }
    }
}

/// Answer every request of `group` with `fault`.
fn refuse(group: &mut Vec<Request>, fault: &StorageFault) {
    for r in group.drain(..) {
        (r.done)(Err(fault.clone().into()));
    }
}

/// Pause here forever if `FLOW_PAUSE_AT` names this point: a test hook, so a crash test can
/// `kill -9` the host at a precise step (it waits for the line on stderr).
pub(crate) fn pause_point(point: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| std::env::var("FLOW_PAUSE_AT").ok());
    if at.as_deref() == Some(point) {
        eprintln!("flow: paused at {point} (FLOW_PAUSE_AT)");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// A format 1 database (one journal row per document) opens as format 2 with the same
    /// documents at the same offsets, each a block of one line.
    #[test]
    fn a_format_1_database_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("format", 1u64.to_le_bytes().as_slice())
                .unwrap();
            let mut docs = txn.open_table(JOURNAL_DOCS_V1).unwrap();
            docs.insert(("a/b", 0), br#"{"x":1}"#.as_slice()).unwrap();
            docs.insert(("a/b", 8), br#"{"x":22}"#.as_slice()).unwrap();
            docs.insert(("c", 5), br#"{}"#.as_slice()).unwrap();
            drop(docs);
            txn.open_table(JOURNAL_HEADS)
                .unwrap()
                .insert("a/b", 17)
                .unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        let txn = store.read().unwrap();
        let blocks: Vec<((String, u64), Vec<u8>)> = txn
            .open_table(JOURNAL_BLOCKS)
            .unwrap()
            .iter()
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                let (j, o) = k.value();
                ((j.to_string(), o), v.value().to_vec())
            })
            .collect();
        assert_eq!(
            blocks,
            vec![
                (("a/b".into(), 0), b"{\"x\":1}\n".to_vec()),
                (("a/b".into(), 8), b"{\"x\":22}\n".to_vec()),
                (("c".into(), 5), b"{}\n".to_vec()),
            ]
        );
        assert!(
            txn.open_table(JOURNAL_DOCS_V1).is_err(),
            "the old table is gone"
        );
        assert_eq!(
            store.meta("format").unwrap().unwrap(),
            FORMAT_VERSION.to_le_bytes().to_vec()
        );
    }
}
