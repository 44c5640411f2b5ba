//! Journal maintenance: sealing the redb head into fragments, trimming what was sealed,
//! deleting fragments past retention, and reconciling the index with the store.

use super::{Extent, Fragment, Fragments, Settings, decode, index_insert, name, now_ms};
use crate::journal::rows;
use crate::storage::{FRAGMENTS, JOURNAL_BLOCKS, JOURNAL_HEADS};
use anyhow::Context;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use redb::ReadableTable;
use sha2::Digest;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often the sealer looks at every journal.
const TICK: Duration = Duration::from_millis(100);
/// How often every journal's index is reconciled with a listing of the store.
const RECONCILE_EVERY: Duration = Duration::from_secs(300);

/// What `reconcile` changed.
#[derive(Debug, Default, PartialEq)]
pub struct Reconciled {
    /// Fragments found in the store that the index lacked.
    pub added: usize,
    /// Index records whose file is gone from the store.
    pub dropped: usize,
    /// Files under the journal's prefix that are not fragments of it.
    pub skipped: usize,
}

impl Fragments {
    /// Start the sealer thread: it seals, trims and applies retention to every configured
    /// journal, and reconciles them with the store every few minutes.
    pub fn start(self: &Arc<Self>) -> anyhow::Result<()> {
        let me = self.clone();
        let thread = std::thread::Builder::new()
            .name("flow-sealer".into())
            .spawn(move || me.sealer())
            .context("failed to start the sealer thread")?;
        *self.sealer.lock().expect("sealer poisoned") = Some(thread);
        Ok(())
    }

    fn sealer(&self) {
        let mut last_reconcile = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let reconcile = last_reconcile.elapsed() >= RECONCILE_EVERY;
            if reconcile {
                last_reconcile = Instant::now();
            }
            let collections: Vec<(String, Settings)> = self
                .settings
                .read()
                .expect("settings poisoned")
                .iter()
                .map(|(j, s)| (j.clone(), s.clone()))
                .collect();
            let mut journals = Vec::new();
            for (collection, settings) in collections {
                if settings.partitioned {
                    // History of partitions in the store, until it was listed once, and
                    // again every `RECONCILE_EVERY`.
                    let (listed, waiting) = self
                        .state
                        .lock()
                        .expect("fragment state poisoned")
                        .get(&collection)
                        .map(|s| {
                            (
                                s.reconciled,
                                s.retry_at.is_some_and(|at| at > Instant::now()),
                            )
                        })
                        .unwrap_or((false, false));
                    if (reconcile || !listed) && !waiting {
                        match self.reconcile_partitions(&collection) {
                            Ok(()) => self.succeeded(&collection),
                            Err(e) => self.failed(&collection, &e),
                        }
                    }
                }
                match self.journals_of(&collection, &settings) {
                    Ok(js) => journals.extend(js.into_iter().map(|j| (j, settings.clone()))),
                    Err(e) => self.failed(&collection, &e),
                }
            }
            for (journal, settings) in journals {
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                let (waiting, reconciled) = self
                    .state
                    .lock()
                    .expect("fragment state poisoned")
                    .get(&journal)
                    .map(|s| {
                        (
                            s.retry_at.is_some_and(|at| at > Instant::now()),
                            s.reconciled,
                        )
                    })
                    .unwrap_or((false, false));
                if waiting {
                    continue;
                }
                // Store I/O that worked clears the failure state; a pass with nothing to do
                // says nothing about the store.
                let result = if reconcile || !reconciled {
                    self.reconcile(&journal).map(|_| true)
                } else {
                    Ok(false)
                }
                .and_then(|listed| {
                    let sealed = self.maintain(&journal, &settings, false)?;
                    Ok(listed || !sealed.is_empty())
                });
                match result {
                    Ok(true) => self.succeeded(&journal),
                    Ok(false) => {}
                    Err(e) => self.failed(&journal, &e),
                }
            }
            std::thread::sleep(TICK);
        }
    }

    /// One maintenance pass over `journal`: trim rows already sealed, seal every range that is
    /// due (or, with `force`, everything unsealed), and delete fragments past retention.
    /// Returns the fragments sealed.
    pub fn maintain(
        &self,
        journal: &str,
        settings: &Settings,
        force: bool,
    ) -> anyhow::Result<Vec<Fragment>> {
        let _guard = self.maintenance.lock().expect("maintenance poisoned");
        self.trim(journal)?;
        let mut sealed = Vec::new();
        loop {
            let (start, head, published) = {
                let txn = self.db.read()?;
                let extent = Extent::read(&txn, journal)?;
                let (start, head) = (extent.unsealed_from(), extent.head);
                if start >= head {
                    break;
                }
                let mut first = None;
                rows::blocks_from(&rows::blocks(&txn)?, journal, start, |begin, block| {
                    first = rows::lines(begin, block, start)
                        .next()
                        .filter(|(offset, _)| *offset == start)
                        .map(|(_, r)| published_of(&block[r]));
                    Ok(false)
                })?;
                let first = first.with_context(|| {
                    format!("journal {journal} has no document at offset {start}, where the unsealed head begins")
                })?;
                (start, head, first)
            };
            let age = published
                .as_deref()
                .and_then(|p| humantime::parse_rfc3339(p).ok())
                .and_then(|t| t.elapsed().ok())
                .unwrap_or_default();
            let due = force || head - start >= settings.length || age >= settings.flush_interval;
            if !due {
                break;
            }
            let f = self.seal(journal, start, settings, published.as_deref().unwrap_or(""))?;
            sealed.push(f);
        }
        if let Some(retention) = settings.retention {
            self.expire(journal, retention)?;
        }
        Ok(sealed)
    }

    /// Seal one fragment of `journal` beginning at `start`: upload, then record, then trim.
    fn seal(
        &self,
        journal: &str,
        start: u64,
        settings: &Settings,
        published: &str,
    ) -> anyhow::Result<Fragment> {
        let mut encoder = settings.codec.encoder()?;
        let mut end = start;
        {
            let txn = self.db.read()?;
            // Whole lines from `start` until the fragment is `length` long: it may end inside
            // a block, which then stays in redb until a later fragment seals the rest of it.
            rows::blocks_from(&rows::blocks(&txn)?, journal, start, |begin, block| {
                let from = end.max(begin);
                if from != end {
                    anyhow::bail!(
                        "journal {journal} has a gap at offset {end} (next block at {begin})"
                    );
                }
                let lo = (from - begin) as usize;
                let mut hi = lo;
                for (offset, r) in rows::lines(begin, block, from) {
                    hi = r.end + 1;
                    end = offset + (r.len() + 1) as u64;
                    if end - start >= settings.length {
                        break;
                    }
                }
                encoder.write_all(&block[lo..hi])?;
                Ok(end - start < settings.length)
            })?;
        }
        let file = encoder.finish()?;
        let digest = hex::encode(sha2::Sha256::digest(&file));
        let path = name::path(journal, published, start, end, &digest, settings.codec);
        let fragment = Fragment {
            begin: start,
            end,
            path,
            codec: settings.codec,
            digest,
            size: file.len() as u64,
            modified_ms: now_ms(),
        };
        self.put(&fragment.path, file)?;
        crate::storage::pause_point("sealed-uploaded");
        let (j, f) = (journal.to_string(), fragment.clone());
        self.db.write(move |txn| index_insert(txn, &j, &f))?;
        crate::storage::pause_point("sealed-indexed");
        self.trim(journal)?;
        tracing::debug!(journal, path = %fragment.path, bytes = end - start, "sealed a fragment");
        Ok(fragment)
    }

    /// Upload a file; for `file://` stores, fsync it and its directory, so the index never
    /// records a file a power cut could lose.
    fn put(&self, path: &str, file: Vec<u8>) -> anyhow::Result<()> {
        let location =
            ObjectPath::parse(path).with_context(|| format!("bad fragment path {path}"))?;
        self.block_on(self.object.put(&location, PutPayload::from(file)))
            .with_context(|| format!("failed to upload {path} to {}", self.url))?;
        if let Some(root) = &self.local_root {
            let local = root.join(path);
            let sync = |p: &std::path::Path| std::fs::File::open(p).and_then(|f| f.sync_all());
            sync(&local)
                .and_then(|()| local.parent().map(sync).unwrap_or(Ok(())))
                .with_context(|| format!("failed to fsync {}", local.display()))?;
        }
        Ok(())
    }

    /// Delete the journal's redb blocks that end at or below its persisted end: they are in
    /// the store, and the index records it. A block reaching past it stays whole.
    fn trim(&self, journal: &str) -> anyhow::Result<()> {
        let txn = self.db.read()?;
        let sealed = Extent::read(&txn, journal)?.persisted;
        // Nothing to do unless the first block ends at or below the sealed end (a block that
        // reaches past it stays, and must not cost a write on every pass).
        let mut first_end = None;
        rows::blocks_from(&rows::blocks(&txn)?, journal, 0, |begin, block| {
            first_end = Some(begin + block.len() as u64);
            Ok(false)
        })?;
        drop(txn);
        if first_end.is_none_or(|end| end > sealed) {
            return Ok(());
        }
        let journal = journal.to_string();
        self.db.write(move |txn| {
            let mut blocks = txn.open_table(JOURNAL_BLOCKS)?;
            blocks.retain_in(
                (journal.as_str(), 0)..(journal.as_str(), sealed),
                |(_, begin), block| begin + block.len() as u64 > sealed,
            )?;
            Ok(())
        })
    }

    /// Delete fragments uploaded longer ago than `retention`: the file first, then its record
    /// (a crash between the two leaves a record of a missing file, dropped by `reconcile`).
    fn expire(&self, journal: &str, retention: Duration) -> anyhow::Result<()> {
        let cutoff = now_ms().saturating_sub(retention.as_millis() as u64);
        for f in self.list(journal)? {
            if f.modified_ms >= cutoff {
                continue;
            }
            let location = ObjectPath::parse(&f.path)?;
            match self.block_on(self.object.delete(&location)) {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    return Err(anyhow::Error::from(e)
                        .context(format!("failed to delete expired fragment {}", f.path)));
                }
            }
            let (j, begin) = (journal.to_string(), f.begin);
            self.db.write(move |txn| {
                txn.open_table(FRAGMENTS)?.remove((j.as_str(), begin))?;
                Ok(())
            })?;
            tracing::info!(journal, path = %f.path, "deleted a fragment past its retention");
        }
        Ok(())
    }

    /// Make the index agree with a listing of the store: record fragments it lacks, drop
    /// records of files that are gone, report files that are not fragments, and move the
    /// journal's write head past every persisted offset (so appends never reuse one).
    pub fn reconcile(&self, journal: &str) -> anyhow::Result<Reconciled> {
        let _guard = self.maintenance.lock().expect("maintenance poisoned");
        let prefix = name::journal_prefix(journal);
        let listed: Vec<object_store::ObjectMeta> = self
            .block_on(
                self.object
                    .list(Some(&ObjectPath::from(prefix.trim_end_matches('/'))))
                    .try_collect(),
            )
            .with_context(|| format!("failed to list {prefix} in {}", self.url))?;
        let mut report = Reconciled::default();
        let mut found: BTreeMap<String, Fragment> = BTreeMap::new();
        for meta in listed {
            let path = meta.location.to_string();
            let parsed = match name::parse(&path) {
                Ok(p) if p.journal == journal => p,
                Ok(p) => {
                    self.skipped(journal, &path, &format!("names journal {}", p.journal));
                    report.skipped += 1;
                    continue;
                }
                Err(why) => {
                    self.skipped(journal, &path, &format!("not a fragment: {why}"));
                    report.skipped += 1;
                    continue;
                }
            };
            found.insert(
                path.clone(),
                Fragment {
                    begin: parsed.begin,
                    end: parsed.end,
                    path,
                    codec: parsed.codec,
                    digest: parsed.digest,
                    size: meta.size,
                    modified_ms: meta.last_modified.timestamp_millis().max(0) as u64,
                },
            );
        }
        let indexed = self.list(journal)?;
        let gone: Vec<Fragment> = indexed
            .iter()
            .filter(|f| !found.contains_key(&f.path))
            .cloned()
            .collect();
        let known: std::collections::BTreeSet<&str> =
            indexed.iter().map(|f| f.path.as_str()).collect();
        let new: Vec<Fragment> = found
            .values()
            .filter(|f| !known.contains(f.path.as_str()))
            .cloned()
            .collect();
        for f in &gone {
            tracing::warn!(journal, path = %f.path, store = %self.url, "an indexed fragment is gone from the store; dropping its record");
        }
        let max_end = found.values().map(|f| f.end).max().unwrap_or(0);
        let j = journal.to_string();
        let (added, dropped) = self.db.write(move |txn| {
            let mut added = 0;
            for f in &new {
                if index_insert(txn, &j, f)? {
                    added += 1;
                }
            }
            let mut index = txn.open_table(FRAGMENTS)?;
            for f in &gone {
                let same = match index.get((j.as_str(), f.begin))? {
                    Some(v) => decode(v.value())?.path == f.path,
                    None => false,
                };
                if same {
                    index.remove((j.as_str(), f.begin))?;
                }
            }
            let mut heads = txn.open_table(JOURNAL_HEADS)?;
            let head = heads.get(j.as_str())?.map(|v| v.value()).unwrap_or(0);
            if max_end > head {
                heads.insert(j.as_str(), max_end)?;
            }
            Ok((added, gone.len()))
        })?;
        report.added = added;
        report.dropped = dropped;
        self.listed(journal);
        if added > 0 || dropped > 0 {
            tracing::info!(journal, store = %self.url, added, dropped, "reconciled the fragment index with the store");
        }
        drop(_guard);
        self.trim(journal)?;
        Ok(report)
    }
}

/// The `_meta.published` of a stored document (the host writes `_meta` first).
fn published_of(doc: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\"published\":\"";
    let head = &doc[..doc.len().min(256)];
    let at = head.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = head[at..].iter().position(|&b| b == b'"')?;
    String::from_utf8(head[at..at + len].to_vec()).ok()
}
