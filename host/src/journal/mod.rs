//! Append-only journals in redb, and readers that wake on append.
//!
//! A journal holds one collection's documents as NDJSON lines at stable byte offsets: a
//! document of `n` bytes appended at offset `o` occupies `[o, o + n + 1)` and the next begins
//! at `o + n + 1`. Offsets never change and are never reused, so a reader's checkpoint is just
//! an offset.
//!
//! Appends happen inside a caller's write transaction (so a derivation commits its outputs,
//! state and checkpoints at once); the caller calls `Journals::notify` after the commit.
//! Readers never poll: task threads block on `wait`, async readers on `subscribe`.
//!
//! Older ranges are sealed into fragments in object storage and trimmed from redb (see
//! `crate::fragment`); `read` serves any offset: from fragments below the first row still in
//! redb, then from redb.

use crate::fragment::Fragments;
use crate::storage::{JOURNAL_DOCS, JOURNAL_HEADS, Store};
use anyhow::Context;
use redb::{ReadableTable, WriteTransaction};
use serde_json::Value;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// One document read from a journal.
#[derive(Debug, Clone)]
pub struct ReadDoc {
    /// The offset the document begins at.
    pub offset: u64,
    /// The document's JSON bytes (without the trailing newline).
    pub bytes: Vec<u8>,
}

impl ReadDoc {
    /// The offset just past this document: where a reader continues.
    pub fn next_offset(&self) -> u64 {
        self.offset + self.bytes.len() as u64 + 1
    }
}

/// Reads journals (from fragments and redb) and wakes readers when any journal grows.
pub struct Journals {
    generation: Mutex<u64>,
    grown: Condvar,
    watch: tokio::sync::watch::Sender<u64>,
    /// Where sealed history lives; `None` for a host that keeps everything in redb.
    fragments: Option<Arc<Fragments>>,
}

impl Default for Journals {
    fn default() -> Self {
        Journals {
            generation: Mutex::new(0),
            grown: Condvar::new(),
            watch: tokio::sync::watch::Sender::new(0),
            fragments: None,
        }
    }
}

impl Journals {
    /// Stamp `_meta` on each document and append them to `journal` within `txn`. Returns the
    /// offsets `[begin, end)` the documents occupy. `_meta` holds `uuid` (a UUIDv7: unique, and
    /// ordered by publish time) and `published` (RFC 3339, UTC); any `_meta` a document
    /// brought is replaced, because only the host may speak for when and how it was written.
    pub fn append(
        txn: &WriteTransaction,
        journal: &str,
        docs: &[Value],
    ) -> anyhow::Result<(u64, u64)> {
        let mut heads = txn.open_table(JOURNAL_HEADS)?;
        let begin = heads.get(journal)?.map(|v| v.value()).unwrap_or(0);
        let mut table = txn.open_table(JOURNAL_DOCS)?;
        let mut offset = begin;
        let published = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
        let mut bytes = Vec::new();
        for doc in docs {
            stamped(doc, &published, &mut bytes)?;
            table.insert((journal, offset), bytes.as_slice())?;
            offset += bytes.len() as u64 + 1;
        }
        heads.insert(journal, offset)?;
        Ok((begin, offset))
    }

    /// Journals whose history is sealed into `fragments`.
    pub fn with_fragments(fragments: Arc<Fragments>) -> Self {
        Journals {
            fragments: Some(fragments),
            ..Journals::default()
        }
    }

    pub fn fragments(&self) -> Option<&Arc<Fragments>> {
        self.fragments.as_ref()
    }

    /// Read documents of `journal` from `from`, up to `docs_max` documents or about
    /// `bytes_max` bytes (at least one document is returned if any exists). Offsets below the
    /// first document still in redb are read from fragments; a range no fragment holds (deleted
    /// by retention, or a skipped corrupt file) is passed over.
    pub fn read(
        &self,
        store: &Store,
        journal: &str,
        mut from: u64,
        docs_max: usize,
        bytes_max: usize,
    ) -> anyhow::Result<Vec<ReadDoc>> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        // Fill the batch across fragments as a redb read would, so batch boundaries do not
        // depend on where fragments end. The rows are read in the same transaction that found
        // `from` at or above the first row: a trim committed meanwhile cannot open a gap.
        let txn = loop {
            let txn = store.read()?;
            let Some(fragments) = &self.fragments else {
                break txn;
            };
            let low = Self::low_in(&txn, journal)?;
            if from >= low {
                break txn;
            }
            drop(txn);
            let docs = fragments.read(journal, from, docs_max - out.len(), bytes_max - bytes)?;
            let Some(last) = docs.last() else {
                // No fragment holds anything in [from, low): pass over the gap.
                from = low;
                continue;
            };
            from = last.next_offset();
            bytes += docs.iter().map(|d| d.bytes.len()).sum::<usize>();
            out.extend(docs);
            if out.len() >= docs_max || bytes >= bytes_max {
                return Ok(out);
            }
        };
        let table = txn.open_table(JOURNAL_DOCS)?;
        for entry in table
            .range((journal, from)..(journal, u64::MAX))
            .context("failed to read journal")?
        {
            let (key, value) = entry?;
            let doc = ReadDoc {
                offset: key.value().1,
                bytes: value.value().to_vec(),
            };
            bytes += doc.bytes.len();
            out.push(doc);
            if out.len() >= docs_max || bytes >= bytes_max {
                break;
            }
        }
        Ok(out)
    }

    /// The offset the next document of `journal` will begin at (0 if it has none).
    pub fn head(store: &Store, journal: &str) -> anyhow::Result<u64> {
        Self::head_in(&store.read()?, journal)
    }

    /// `head`, within a read transaction.
    pub fn head_in(txn: &redb::ReadTransaction, journal: &str) -> anyhow::Result<u64> {
        let heads = txn.open_table(JOURNAL_HEADS)?;
        Ok(heads.get(journal)?.map(|v| v.value()).unwrap_or(0))
    }

    /// The offset of the journal's first row still in redb (rows below it were sealed into
    /// fragments and trimmed), or its head if it has none.
    pub fn low_in(txn: &redb::ReadTransaction, journal: &str) -> anyhow::Result<u64> {
        let docs = txn.open_table(JOURNAL_DOCS)?;
        let first = docs.range((journal, 0)..(journal, u64::MAX))?.next();
        match first {
            Some(e) => Ok(e?.0.value().1),
            None => Self::head_in(txn, journal),
        }
    }

    /// Tell readers that journals grew. Call after the appending transaction committed.
    pub fn notify(&self) {
        let mut g = self.generation.lock().expect("journal notifier poisoned");
        *g += 1;
        self.watch.send_replace(*g);
        self.grown.notify_all();
    }

    /// The current generation; pass it to `wait`.
    pub fn generation(&self) -> u64 {
        *self.generation.lock().expect("journal notifier poisoned")
    }

    /// Block until a journal grows past `seen` generation, or `timeout` passes.
    pub fn wait(&self, seen: u64, timeout: Duration) {
        let g = self.generation.lock().expect("journal notifier poisoned");
        let _ = self.grown.wait_timeout_while(g, timeout, |g| *g == seen);
    }

    /// For async readers: changes whenever journals grow.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.watch.subscribe()
    }
}

/// Serialize `doc` into `out` with the host's `_meta` as its first property, replacing any
/// `_meta` it has, without copying the document.
fn stamped(doc: &Value, published: &str, out: &mut Vec<u8>) -> anyhow::Result<()> {
    out.clear();
    let Value::Object(map) = doc else {
        serde_json::to_writer(&mut *out, doc)?;
        return Ok(());
    };
    let meta =
        serde_json::json!({"uuid": uuid::Uuid::now_v7().to_string(), "published": published});
    out.extend_from_slice(b"{\"_meta\":");
    serde_json::to_writer(&mut *out, &meta)?;
    for (k, v) in map {
        if k == "_meta" {
            continue;
        }
        out.push(b',');
        serde_json::to_writer(&mut *out, k)?;
        out.push(b':');
        serde_json::to_writer(&mut *out, v)?;
    }
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    #[test]
    fn append_read_and_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let (b, e) = store
            .write(|txn| Journals::append(txn, "a/b", &[json!({"x": 1}), json!({"x": 2})]))
            .unwrap();
        assert_eq!(b, 0);
        let docs = Journals::default()
            .read(&store, "a/b", 0, 100, 1 << 20)
            .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].offset, docs[0].next_offset());
        assert_eq!(docs[1].next_offset(), e);
        assert_eq!(Journals::head(&store, "a/b").unwrap(), e);
        let first: Value = serde_json::from_slice(&docs[0].bytes).unwrap();
        assert_eq!(first["x"], 1);
        assert!(first["_meta"]["uuid"].is_string() && first["_meta"]["published"].is_string());
        // Reading from the middle, and an unrelated journal with a shared prefix.
        store
            .write(|txn| Journals::append(txn, "a/bc", &[json!({"y": 1})]))
            .unwrap();
        let rest = Journals::default()
            .read(&store, "a/b", docs[1].offset, 100, 1 << 20)
            .unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(
            Journals::default()
                .read(&store, "a/b", e, 100, 1 << 20)
                .unwrap()
                .len(),
            0
        );
        // Limits: at least one document even when it exceeds bytes_max.
        assert_eq!(
            Journals::default()
                .read(&store, "a/b", 0, 100, 1)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_failed_transaction_appends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let res: anyhow::Result<()> = store.write(|txn| {
            Journals::append(txn, "j", &[json!({"x": 1})])?;
            anyhow::bail!("later step failed")
        });
        assert!(res.is_err());
        assert_eq!(Journals::head(&store, "j").unwrap(), 0);
        assert!(
            Journals::default()
                .read(&store, "j", 0, 10, 1 << 20)
                .unwrap()
                .is_empty()
        );
    }
}
