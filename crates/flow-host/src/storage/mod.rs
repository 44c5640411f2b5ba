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

/// A write job: runs inside a shared write transaction. Jobs may run more than once: when
/// another job of their group fails, the group is aborted and run again without it.
type Job = Box<dyn Fn(&WriteTransaction) -> anyhow::Result<()> + Send>;

struct Request {
    job: Job,
    done: std::sync::mpsc::SyncSender<anyhow::Result<()>>,
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
    db: std::sync::Arc<Database>,
    queue: std::sync::Mutex<std::sync::mpsc::Sender<Request>>,
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
            txn.open_table(FRAGMENTS)?;
            txn.open_table(PLUGIN_VERSIONS)?;
            txn.open_table(PLUGIN_BLOBS)?;
            txn.open_table(TASK_STATE)?;
            txn.open_table(CHECKPOINTS)?;
        }
        txn.commit()?;
        let db = std::sync::Arc::new(db);
        let (tx, rx) = std::sync::mpsc::channel::<Request>();
        let committer_db = db.clone();
        std::thread::Builder::new()
            .name("flow-committer".into())
            .spawn(move || committer(&committer_db, &rx))
            .context("failed to start the committer thread")?;
        Ok(Store {
            db,
            queue: std::sync::Mutex::new(tx),
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
        let job: Job = Box::new(move |txn| {
            let r = f(txn)?;
            *slot.lock().expect("result slot poisoned") = Some(r);
            Ok(())
        });
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        self.queue
            .lock()
            .expect("committer queue poisoned")
            .send(Request { job, done })
            .map_err(|_| anyhow::anyhow!("the committer thread stopped"))?;
        wait.recv()
            .map_err(|_| anyhow::anyhow!("the committer thread stopped"))??;
        let r = out.lock().expect("result slot poisoned").take();
        r.context("a committed job left no result")
    }

    pub fn read(&self) -> anyhow::Result<redb::ReadTransaction> {
        self.db
            .begin_read()
            .context("failed to begin a read transaction")
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
        let txn = self.read()?;
        let table = txn.open_table(TASK_STATE)?;
        Ok(table
            .get((task, key))?
            .map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    }
}

/// The committer: take every queued job and run them in one transaction, committed with one
/// fsync; if a job fails, answer it, abort, and run the rest of the group again without it.
fn committer(db: &Database, rx: &std::sync::mpsc::Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < GROUP_JOBS_MAX {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        while !group.is_empty() {
            let txn = match db.begin_write() {
                Ok(t) => t,
                Err(e) => {
                    for r in group.drain(..) {
                        let _ = r.done.send(Err(anyhow::anyhow!(
                            "failed to begin a write transaction: {e}"
                        )));
                    }
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
                        .map_err(|e| anyhow::anyhow!("failed to begin a write transaction: {e}"))
                        .and_then(|txn| {
                            let result = (r.job)(&txn);
                            let _ = txn.abort();
                            result
                        });
                    let _ = r.done.send(match result {
                        Ok(()) => Err(anyhow::anyhow!(
                            "the write failed, then succeeded alone; it was not committed"
                        )),
                        Err(e) => Err(e),
                    });
                }
                None => {
                    let result = txn.commit().map_err(|e| format!("failed to commit: {e}"));
                    for r in group.drain(..) {
                        let _ = r.done.send(result.clone().map_err(anyhow::Error::msg));
                    }
                }
            }
        }
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
