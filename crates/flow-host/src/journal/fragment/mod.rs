//! Journal fragments: ranges of a journal sealed into immutable, compressed NDJSON files in
//! object storage, the index of those files in redb, and reads of history from them.
//!
//! The commit order (see `docs/design/journals.md`): a range of the redb head is uploaded as
//! one file; only once the upload completed is the fragment recorded in `FRAGMENTS`; only once
//! that record committed are the range's blocks trimmed from `JOURNAL_BLOCKS`. The store is the
//! source of truth: `reconcile` adds fragments the index lacks (an upload whose record a crash
//! lost, or a whole store given to an empty data directory) and drops records of files that are
//! gone. A reader below the redb head reads fragments, then the head, then waits for appends.

mod codec;
mod name;
mod read;
mod seal;

pub use codec::Codec;
pub use name::{PARTITION, Parsed, parse as parse_name};

use crate::storage::{FRAGMENTS, Store};
use anyhow::Context;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// A collection's fragment settings (the catalog's `journals.fragments`).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Target size of a fragment, in bytes of NDJSON before compression. A fragment is sealed
    /// once this much is unsealed.
    pub length: u64,
    /// Longest a document stays unsealed: a smaller fragment is sealed once the oldest
    /// unsealed document is this old.
    pub flush_interval: Duration,
    pub codec: Codec,
    /// Fragments older than this (by upload time) are deleted; `None` keeps them forever.
    pub retention: Option<Duration>,
    /// The collection has logical partitions: its journals are `{name}/{field}={value}...`
    /// (`journal::partition`), found in redb and, for history this database lacks, by
    /// listing the store under its name.
    pub partitioned: bool,
}

impl Default for Settings {
    /// Flow's defaults: 512 MB fragments, sealed at least daily, gzip, kept forever.
    fn default() -> Self {
        Settings {
            length: 512 << 20,
            flush_interval: Duration::from_secs(24 * 3600),
            codec: Codec::Gzip,
            retention: None,
            partitioned: false,
        }
    }
}

/// A journal as messages name it: `collection C`, or `journal J of collection C`.
fn described(journal: &str) -> String {
    match crate::journal::partition::collection_of(journal) {
        c if c == journal => format!("collection {c}"),
        c => format!("journal {journal} of collection {c}"),
    }
}

/// One fragment, as recorded in the index (`FRAGMENTS`, JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fragment {
    pub begin: u64,
    pub end: u64,
    /// The file's path in the store (relative to the store's prefix).
    pub path: String,
    pub codec: Codec,
    /// SHA-256 of the file's bytes, hex; checked on every read.
    pub digest: String,
    /// The file's size in bytes.
    pub size: u64,
    /// When it was uploaded (or, if found by `reconcile`, last modified), ms since the epoch.
    pub modified_ms: u64,
}

/// What `GET /v1/collections` says about a journal's fragments.
#[derive(Clone, Debug, Default, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FragmentStatus {
    /// Fragments in the index.
    pub fragments: u64,
    /// Every offset below this is persisted in the store.
    pub persisted_through: u64,
    /// The first readable offset (above it, history is complete; below it, retention deleted it).
    pub first_offset: u64,
    /// Bytes of the redb head not yet persisted.
    pub unsealed_bytes: u64,
    /// Sealing attempts that failed in a row, the last error and when the next try is.
    pub failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
    /// Files under the journal's prefix that were skipped, with the reason (latest first,
    /// bounded).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// Per-journal sealing state kept in memory.
#[derive(Default)]
struct JournalState {
    /// The index was reconciled with the store since this host started.
    reconciled: bool,
    failures: u32,
    last_error: Option<String>,
    retry_at: Option<Instant>,
    skipped: Vec<String>,
}

const SKIPPED_MAX: usize = 20;

/// The fragment store of a host: an object store, the index, the sealer and history reads.
pub struct Fragments {
    /// The store's URL, for messages.
    pub url: String,
    object: Arc<dyn ObjectStore>,
    /// For `file://` stores: the root directory, so uploads can be fsynced.
    local_root: Option<std::path::PathBuf>,
    /// Object store I/O runs on this runtime; sync callers block on it. (An `Option` only so
    /// that `drop` can shut it down without blocking, which may happen in async code.)
    rt: Option<tokio::runtime::Runtime>,
    db: Arc<Store>,
    settings: RwLock<BTreeMap<String, Settings>>,
    state: Mutex<BTreeMap<String, JournalState>>,
    /// Serializes sealing, trimming, retention and reconciling of the journals.
    maintenance: Mutex<()>,
    /// Open fragment readers, so a reader continuing where it stopped does not download again.
    cursors: Mutex<Vec<read::Cursor>>,
    /// Unsealed head bytes above which appends are refused (`journalHeadBytesMax`).
    head_bytes_max: u64,
    stop: AtomicBool,
    sealer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Fragments {
    /// Open the store at `url`: `file:///DIR` (default `file://DATA_DIR/fragments`),
    /// `memory://` (in memory, for tests) or `s3://BUCKET[/PREFIX]`, configured by the usual
    /// `AWS_*` environment variables (`AWS_ENDPOINT` for S3-compatible servers,
    /// `AWS_ALLOW_HTTP=true` for plain HTTP ones).
    pub fn open(url: &str, db: Arc<Store>, head_bytes_max: u64) -> anyhow::Result<Arc<Self>> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("flow-fragments")
            .enable_all()
            .build()
            .context("failed to start the fragment store's runtime")?;
        let (object, local_root): (Arc<dyn ObjectStore>, _) = if let Some(dir) =
            url.strip_prefix("file://")
        {
            let dir = std::path::PathBuf::from(dir);
            if !dir.is_absolute() {
                anyhow::bail!(
                    "store {url}: a file:// store needs an absolute path, e.g. file:///var/flow/fragments"
                );
            }
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("store {url}: failed to create {}", dir.display()))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .with_context(|| format!("store {url}"))?;
            (Arc::new(fs), Some(dir))
        } else if url == "memory://" {
            tracing::warn!(
                "fragment store memory:// keeps sealed history in memory only: it is lost when the host exits"
            );
            (Arc::new(object_store::memory::InMemory::new()), None)
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                anyhow::bail!("store {url}: name a bucket, e.g. s3://my-bucket/flow");
            }
            let retry = object_store::RetryConfig {
                backoff: object_store::BackoffConfig::default(),
                max_retries: 3,
                retry_timeout: Duration::from_secs(20),
            };
            use object_store::ClientConfigKey as C;
            use object_store::aws::AmazonS3ConfigKey as K;
            // Our timeouts first, then every AWS_* variable (as `from_env` reads them), so the
            // environment can override them.
            let mut builder = object_store::aws::AmazonS3Builder::new()
                .with_config(K::Client(C::ConnectTimeout), "5s")
                .with_config(K::Client(C::Timeout), "120s");
            for (key, value) in std::env::vars() {
                if key.starts_with("AWS_")
                    && let Ok(k) = key.to_ascii_lowercase().parse::<K>()
                {
                    builder = builder.with_config(k, value);
                }
            }
            let s3 = builder
                .with_bucket_name(bucket)
                .with_retry(retry)
                .build()
                .with_context(|| format!("store {url}"))?;
            let prefix = prefix.trim_matches('/');
            if prefix.is_empty() {
                (Arc::new(s3), None)
            } else {
                let p = ObjectPath::parse(prefix)
                    .with_context(|| format!("store {url}: bad prefix '{prefix}'"))?;
                (
                    Arc::new(object_store::prefix::PrefixStore::new(s3, p)),
                    None,
                )
            }
        } else {
            anyhow::bail!(
                "store {url}: unsupported URL; use file:///DIR, s3://BUCKET[/PREFIX] or memory://"
            );
        };
        Ok(Arc::new(Fragments {
            url: url.to_string(),
            object,
            local_root,
            rt: Some(rt),
            db,
            settings: RwLock::new(BTreeMap::new()),
            state: Mutex::new(BTreeMap::new()),
            maintenance: Mutex::new(()),
            cursors: Mutex::new(Vec::new()),
            head_bytes_max,
            stop: AtomicBool::new(false),
            sealer: Mutex::new(None),
        }))
    }

    /// Set the journals and their settings (from the catalog), and reconcile the index of each
    /// journal that is new with the store. A store that cannot be listed is logged and shown in
    /// the journal's status; the journal is reconciled again later.
    pub fn configure(&self, journals: BTreeMap<String, Settings>) {
        let new: Vec<String> = {
            let known = self.settings.read().expect("settings poisoned");
            journals
                .keys()
                .filter(|j| !known.contains_key(*j))
                .cloned()
                .collect()
        };
        *self.settings.write().expect("settings poisoned") = journals;
        for journal in new {
            let result = if self.settings(&journal).partitioned {
                self.reconcile_partitions(&journal)
            } else {
                self.reconcile(&journal).map(|_| ())
            };
            match result {
                Ok(()) => self.succeeded(&journal),
                Err(e) => self.failed(&journal, &e),
            }
        }
    }

    /// The settings of a journal's collection.
    pub fn settings(&self, journal: &str) -> Settings {
        self.settings
            .read()
            .expect("settings poisoned")
            .get(crate::journal::partition::collection_of(journal))
            .cloned()
            .unwrap_or_default()
    }

    /// The journals of a configured collection: its own, or those of its logical partitions
    /// this database has.
    pub(crate) fn journals_of(
        &self,
        collection: &str,
        settings: &Settings,
    ) -> anyhow::Result<Vec<String>> {
        if settings.partitioned {
            crate::journal::partition::journals(&self.db, collection)
        } else {
            Ok(vec![collection.to_string()])
        }
    }

    /// Reconcile every journal of a collection with logical partitions that the store has
    /// history of (found by listing its directories, `{collection}/{field}={value}/.../pivot=00/`),
    /// then mark the collection listed: only then may a partition new to this database take
    /// appends (they would reuse offsets of history the store has).
    pub(crate) fn reconcile_partitions(&self, collection: &str) -> anyhow::Result<()> {
        let mut found = Vec::new();
        let mut dirs = vec![collection.to_string()];
        while let Some(dir) = dirs.pop() {
            let at = ObjectPath::parse(&dir)?;
            let listing = self
                .block_on(self.object.list_with_delimiter(Some(&at)))
                .with_context(|| format!("failed to list {dir}/ in {}", self.url))?;
            for p in listing.common_prefixes {
                let p = p.to_string();
                let last = p.rsplit('/').next().unwrap_or_default();
                if last == name::PARTITION {
                    if dir != collection {
                        found.push(dir.clone());
                    }
                } else if last.contains('=')
                    && crate::journal::partition::collection_of(&p) == collection
                {
                    dirs.push(p);
                }
            }
        }
        for journal in found {
            let reconciled = self
                .state
                .lock()
                .expect("fragment state poisoned")
                .get(&journal)
                .is_some_and(|s| s.reconciled);
            if !reconciled {
                self.reconcile(&journal)?;
            }
        }
        self.listed(collection);
        Ok(())
    }

    /// Record that the store was listed for `journal` (or a partitioned collection's
    /// directories) since this host started.
    fn listed(&self, journal: &str) {
        self.state
            .lock()
            .expect("fragment state poisoned")
            .entry(journal.to_string())
            .or_default()
            .reconciled = true;
    }

    /// Refuse an append to `journal` while its unsealed head is over the bound (the larger of
    /// `journalHeadBytesMax` and twice the fragment length): the store is failing or slow, and
    /// the head would otherwise grow without bound.
    ///
    /// A journal this data directory has never written, whose history in the store could not
    /// be listed yet, refuses appends too: they would reuse offsets of that history.
    ///
    /// Given the name of a collection with logical partitions, every journal of it is checked.
    pub fn check_append(&self, journal: &str) -> Result<(), String> {
        let collection = crate::journal::partition::collection_of(journal);
        let settings = self.settings(journal);
        if settings.partitioned && collection == journal {
            // Any partition may be new to this database: none takes appends while the
            // store's directories of the collection could not be listed.
            let unlisted = self
                .state
                .lock()
                .expect("fragment state poisoned")
                .get(collection)
                .filter(|s| !s.reconciled)
                .map(|s| s.last_error.clone().unwrap_or_default());
            if let Some(error) = unlisted {
                return Err(format!(
                    "collection {collection}: the history of its logical partitions in the fragment store {} could not be listed yet ({error}); appends wait until it is, so that they never reuse its offsets",
                    self.url
                ));
            }
            for j in self
                .journals_of(collection, &settings)
                .map_err(|e| format!("{e:#}"))?
            {
                self.check_append(&j)?;
            }
            return Ok(());
        }
        // A partition's journal is unlisted while its collection's directories are.
        let unlisted = {
            let state = self.state.lock().expect("fragment state poisoned");
            [journal, collection]
                .iter()
                .filter_map(|j| state.get(*j))
                .find(|s| !s.reconciled)
                .map(|s| s.last_error.clone().unwrap_or_default())
        };
        if let Some(error) = unlisted {
            let known = self
                .db
                .read()
                .and_then(|txn| crate::journal::rows::head_in(&txn, journal))
                .map_err(|e| format!("{e:#}"))?
                > 0;
            if !known {
                return Err(format!(
                    "{what}: its history in the fragment store {} could not be listed yet ({error}); appends wait until it is, so that they never reuse its offsets",
                    self.url,
                    what = described(journal),
                ));
            }
        }
        let unsealed = self.unsealed_bytes(journal).map_err(|e| format!("{e:#}"))?;
        let bound = self.head_bytes_max.max(2 * self.settings(journal).length);
        if unsealed <= bound {
            return Ok(());
        }
        let why = self
            .state
            .lock()
            .expect("fragment state poisoned")
            .get(journal)
            .and_then(|s| s.last_error.clone())
            .map(|e| format!("; last sealing error: {e}"))
            .unwrap_or_default();
        Err(format!(
            "{what}: {unsealed} bytes are waiting to be persisted to the fragment store {} (bound {bound} bytes); appends resume once sealing catches up{why}",
            self.url,
            what = described(journal),
        ))
    }

    /// The journal's fragment status.
    pub fn status(&self, journal: &str) -> anyhow::Result<FragmentStatus> {
        let txn = self.db.read()?;
        let index = txn.open_table(FRAGMENTS)?;
        let mut status = FragmentStatus::default();
        let mut first = None;
        for entry in index.range((journal, 0)..=(journal, u64::MAX))? {
            let f = decode(entry?.1.value())?;
            status.fragments += 1;
            first.get_or_insert(f.begin);
            status.persisted_through = status.persisted_through.max(f.end);
        }
        let extent = Extent {
            persisted: status.persisted_through,
            ..Extent::read(&txn, journal)?
        };
        status.first_offset = first.unwrap_or(extent.low).min(extent.low);
        status.unsealed_bytes = extent.unsealed_bytes();
        if let Some(s) = self
            .state
            .lock()
            .expect("fragment state poisoned")
            .get(journal)
        {
            status.failures = s.failures;
            status.last_error = s.last_error.clone();
            status.retry_in_ms = s
                .retry_at
                .map(|at| at.saturating_duration_since(Instant::now()).as_millis() as u64);
            status.skipped = s.skipped.clone();
        }
        Ok(status)
    }

    /// Every fragment of `journal` in the index, by begin offset.
    pub fn list(&self, journal: &str) -> anyhow::Result<Vec<Fragment>> {
        let txn = self.db.read()?;
        let index = txn.open_table(FRAGMENTS)?;
        let mut out = Vec::new();
        for entry in index.range((journal, 0)..=(journal, u64::MAX))? {
            out.push(decode(entry?.1.value())?);
        }
        Ok(out)
    }

    /// Unsealed bytes of the journal's redb head.
    fn unsealed_bytes(&self, journal: &str) -> anyhow::Result<u64> {
        Ok(Extent::read(&self.db.read()?, journal)?.unsealed_bytes())
    }

    /// Run a store operation to completion from a synchronous caller.
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt
            .as_ref()
            .expect("the fragment runtime lives as long as the store")
            .block_on(f)
    }

    /// Record a failed maintenance step of `journal`: backoff, status and log.
    fn failed(&self, journal: &str, error: &anyhow::Error) {
        let message = format!("{error:#}");
        let mut state = self.state.lock().expect("fragment state poisoned");
        let s = state.entry(journal.to_string()).or_default();
        s.failures += 1;
        // 250 ms, doubling, at most 30 s.
        let backoff =
            Duration::from_millis(250u64 << s.failures.min(7)).min(Duration::from_secs(30));
        s.retry_at = Some(Instant::now() + backoff);
        tracing::warn!(
            journal,
            store = %self.url,
            failures = s.failures,
            "fragment maintenance failed, retrying in {backoff:?}: {message}"
        );
        s.last_error = Some(message);
    }

    /// Record a maintenance step of `journal` that reached the store and worked.
    fn succeeded(&self, journal: &str) {
        let mut state = self.state.lock().expect("fragment state poisoned");
        let s = state.entry(journal.to_string()).or_default();
        if s.failures > 0 {
            tracing::info!(journal, store = %self.url, "fragment store works again after {} failures", s.failures);
            s.failures = 0;
            s.last_error = None;
            s.retry_at = None;
        }
    }

    /// Report a file that is not a readable fragment, and skip it.
    fn skipped(&self, journal: &str, path: &str, why: &str) {
        let line = format!("{path}: {why}");
        let mut state = self.state.lock().expect("fragment state poisoned");
        let s = state.entry(journal.to_string()).or_default();
        if s.skipped.contains(&line) {
            return;
        }
        tracing::warn!(journal, store = %self.url, "skipping {line}");
        s.skipped.insert(0, line);
        s.skipped.truncate(SKIPPED_MAX);
    }

    /// Stop the sealer thread (the host is shutting down).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.sealer.lock().expect("sealer poisoned").take() {
            let _ = t.join();
        }
    }
}

impl Drop for Fragments {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn decode(bytes: &[u8]) -> anyhow::Result<Fragment> {
    serde_json::from_slice(bytes).context("corrupt fragment index record")
}

/// Where a journal's history stands, read in one transaction.
struct Extent {
    /// The write head.
    head: u64,
    /// The first row still in redb (or the head).
    low: u64,
    /// The highest end of an indexed fragment.
    persisted: u64,
}

impl Extent {
    fn read(txn: &redb::ReadTransaction, journal: &str) -> anyhow::Result<Self> {
        Ok(Extent {
            head: crate::journal::rows::head_in(txn, journal)?,
            low: crate::journal::rows::low_in(txn, journal)?,
            persisted: persisted_end(txn, journal)?,
        })
    }

    /// Where the unsealed head begins.
    fn unsealed_from(&self) -> u64 {
        self.persisted.max(self.low).min(self.head)
    }

    fn unsealed_bytes(&self) -> u64 {
        self.head - self.unsealed_from()
    }
}

/// The highest end offset of the journal's indexed fragments (0 if none).
fn persisted_end(txn: &redb::ReadTransaction, journal: &str) -> anyhow::Result<u64> {
    let index = txn.open_table(FRAGMENTS)?;
    let mut end = 0;
    // Fragments are contiguous and rarely overlap; the last few by begin hold the highest end.
    for entry in index
        .range((journal, 0)..=(journal, u64::MAX))?
        .rev()
        .take(16)
    {
        end = end.max(decode(entry?.1.value())?.end);
    }
    Ok(end)
}

/// Record `f` in the index, keeping the longer of two fragments with the same begin.
fn index_insert(txn: &WriteTransaction, journal: &str, f: &Fragment) -> anyhow::Result<bool> {
    let mut index = txn.open_table(FRAGMENTS)?;
    if let Some(existing) = index.get((journal, f.begin))?
        && decode(existing.value())?.end >= f.end
    {
        return Ok(false);
    }
    index.insert((journal, f.begin), serde_json::to_vec(f)?.as_slice())?;
    Ok(true)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod test;
