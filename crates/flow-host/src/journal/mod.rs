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
//! Older ranges are sealed into fragments in object storage and trimmed from redb
//! (`fragment/`, the only place that does object store I/O); `read` serves any offset: from
//! fragments below the first block still in redb, then from redb's blocks (`rows.rs`, which
//! `fragment/` also reads, so the two never import each other's parents).

pub mod fragment;
pub mod partition;
pub(crate) mod rows;

pub use rows::{
    Encoded, Lag, ReadDoc, append, append_encoded, head, head_in, lag, low_in, op_of, uuid_of,
    without_meta,
};

use crate::storage::Store;
use anyhow::Context;
use fragment::Fragments;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

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
            let low = low_in(&txn, journal)?;
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
        let blocks = rows::blocks(&txn)?;
        let docs = rows::read_docs(
            &blocks,
            journal,
            from,
            docs_max - out.len(),
            bytes_max.saturating_sub(bytes).max(1),
        )
        .with_context(|| format!("failed to read journal {journal}"))?;
        out.extend(docs);
        Ok(out)
    }

    /// `read` as a reader merging several journals by publish time does: only what is below
    /// `head` (the journal's head as of the one moment every merged journal was looked at;
    /// None: no cap), and whether the read was cut off by `bytes_max` short of `docs_max` and
    /// of `head` (then its last document bounds the merge: other journals' documents past it
    /// may be preceded by ones of this journal not read yet).
    pub fn read_until(
        &self,
        store: &Store,
        journal: &str,
        from: u64,
        head: Option<u64>,
        docs_max: usize,
        bytes_max: usize,
    ) -> anyhow::Result<(Vec<ReadDoc>, bool)> {
        let mut docs = self.read(store, journal, from, docs_max, bytes_max)?;
        let read = docs.len();
        if let Some(head) = head {
            docs.retain(|d| d.offset < head);
        }
        let bytes: usize = docs.iter().map(|d| d.bytes.len()).sum();
        let cut = docs.len() == read && docs.len() < docs_max && bytes >= bytes_max;
        Ok((docs, cut))
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

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn append_read_and_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let (b, e) = store
            .write(|txn| append(txn, "a/b", &[json!({"x": 1}), json!({"x": 2})]))
            .unwrap();
        assert_eq!(b, 0);
        let docs = Journals::default()
            .read(&store, "a/b", 0, 100, 1 << 20)
            .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].offset, docs[0].next_offset());
        assert_eq!(docs[1].next_offset(), e);
        assert_eq!(head(&store, "a/b").unwrap(), e);
        let first: Value = serde_json::from_slice(&docs[0].bytes).unwrap();
        assert_eq!(first["x"], 1);
        assert!(first["_meta"]["uuid"].is_string() && first["_meta"]["published"].is_string());
        // Reading from the middle, and an unrelated journal with a shared prefix.
        store
            .write(|txn| append(txn, "a/bc", &[json!({"y": 1})]))
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

    /// An append larger than a block is stored as several blocks that tile its range, and
    /// reads from any document's offset, with any limits, see exactly the documents there.
    #[test]
    fn blocks_tile_appends_and_reads_start_anywhere() {
        use redb::ReadableTableMetadata;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        // ~300 KiB: several blocks; a 100 KiB document is a block of its own.
        let mut docs: Vec<Value> = (0..2000)
            .map(|i| json!({"i": i, "pad": "y".repeat(i % 300)}))
            .collect();
        docs.insert(700, json!({"i": -1, "big": "z".repeat(100 << 10)}));
        let (b, e) = store
            .write({
                let docs = docs.clone();
                move |txn| append(txn, "j", &docs)
            })
            .unwrap();
        store
            .write(|txn| append(txn, "j", &[json!({"i": 2000})]))
            .unwrap();
        let journals = Journals::default();
        let all = journals
            .read(&store, "j", 0, usize::MAX, usize::MAX)
            .unwrap();
        assert_eq!(all.len(), 2002);
        assert_eq!((b, all[2001].offset), (0, e));
        for w in all.windows(2) {
            assert_eq!(w[0].next_offset(), w[1].offset);
        }
        let blocks = store
            .read()
            .unwrap()
            .open_table(crate::storage::JOURNAL_BLOCKS)
            .unwrap()
            .len()
            .unwrap();
        assert!(blocks >= 5, "{blocks} blocks");
        for (k, d) in all.iter().enumerate().step_by(37) {
            for (docs_max, bytes_max) in [
                (1, usize::MAX),
                (50, usize::MAX),
                (usize::MAX, 10_000),
                (3, 1),
            ] {
                let got = journals
                    .read(&store, "j", d.offset, docs_max, bytes_max)
                    .unwrap();
                assert!(!got.is_empty());
                let n = got.len();
                assert!(n <= docs_max);
                assert_eq!(
                    got.iter()
                        .map(|g| (g.offset, g.bytes.clone()))
                        .collect::<Vec<_>>(),
                    all[k..k + n]
                        .iter()
                        .map(|g| (g.offset, g.bytes.clone()))
                        .collect::<Vec<_>>()
                );
                let bytes: usize = got[..n - 1].iter().map(|g| g.bytes.len()).sum();
                assert!(bytes < bytes_max, "stops once about bytes_max is read");
            }
        }
        // From inside a document: the next whole one.
        let got = journals
            .read(&store, "j", all[5].offset + 3, 1, usize::MAX)
            .unwrap();
        assert_eq!(got[0].offset, all[6].offset);
        for (d, v) in all.iter().zip(docs.iter()) {
            let read: Value = serde_json::from_slice(&d.bytes).unwrap();
            assert_eq!(read["i"], v["i"]);
        }
    }

    #[test]
    fn a_document_is_stored_as_the_text_it_came_as_with_the_hosts_meta() {
        let stored = |text: &str| {
            let doc: Value = serde_json::from_str(text).unwrap();
            let mut out = Vec::new();
            Encoded::of_text(&bytes::Bytes::copy_from_slice(text.as_bytes()), &doc)
                .stamp("U", "P", &mut out);
            String::from_utf8(out).unwrap()
        };
        let meta = r#"{"_meta":{"uuid":"U","published":"P"}"#;
        // The text is kept as it came (only surrounding whitespace goes).
        assert_eq!(
            stored(r#"{"a": 1.50, "b":[1, 2]}"#),
            format!(r#"{meta},"a": 1.50, "b":[1, 2]}}"#)
        );
        assert_eq!(stored(" {\"a\":1}\r"), format!(r#"{meta},"a":1}}"#));
        assert_eq!(stored("{ }"), format!("{meta}}}"));
        assert_eq!(stored("{}"), format!("{meta}}}"));
        // A `_meta` the writer brought is the host's to replace: the document is serialized.
        assert_eq!(
            stored(r#"{"_meta": {"uuid": "mine"}, "a": 1}"#),
            format!(r#"{meta},"a":1}}"#)
        );
        // Every stored text reads back as the document plus the host's `_meta`.
        for text in [
            r#"{"a": 1.50, "b":[1, 2]}"#,
            "{ }",
            r#"{"_meta": 1, "z": "\u00e9"}"#,
        ] {
            let mut expect: Value = serde_json::from_str(text).unwrap();
            expect["_meta"] = json!({"uuid": "U", "published": "P"});
            let read: Value = serde_json::from_str(&stored(text)).unwrap();
            assert_eq!(read, expect, "{text}");
        }
    }

    /// A capture's `{"_meta":{"op":...},` in front is cut without parsing, its op kept; any
    /// other `_meta` is left to the serializing path.
    #[test]
    fn a_captured_document_keeps_its_text_and_op() {
        let stored = |text: &str, op: Option<&'static str>| {
            let text = bytes::Bytes::copy_from_slice(text.as_bytes());
            Encoded::of_object_text(&text, Some(op)).map(|e| {
                let mut out = Vec::new();
                e.stamp("U", "P", &mut out);
                String::from_utf8(out).unwrap()
            })
        };
        let meta = |op: &str| format!(r#"{{"_meta":{{"uuid":"U","published":"P","op":"{op}"}}"#);
        assert_eq!(
            stored(r#"{"_meta":{"op":"c"},"id":1, "a":"x"}"#, Some("c")),
            Some(format!(r#"{},"id":1, "a":"x"}}"#, meta("c")))
        );
        assert_eq!(
            stored(r#" { "_meta":{"op":"u"} , "id":1}"#, Some("u")),
            Some(format!(r#"{},"id":1}}"#, meta("u")))
        );
        assert_eq!(
            stored(r#"{"_meta":{"op":"c"}}"#, Some("c")),
            Some(format!("{}}}", meta("c")))
        );
        for other in [
            r#"{"id":1,"_meta":{"op":"c"}}"#,
            r#"{"_meta":{"op":"c","x":1},"id":1}"#,
            r#"{"_meta":{ "op":"c"},"id":1}"#,
            r#"{"_meta":{"op":"u"},"id":1}"#,
        ] {
            assert_eq!(stored(other, Some("c")), None, "{other}");
        }
        assert_eq!(stored(r#"{"_meta":{"op":"x"},"id":1}"#, None), None);
        let plain = bytes::Bytes::from_static(br#"{"id":1}"#);
        let mut out = Vec::new();
        Encoded::of_object_text(&plain, None)
            .unwrap()
            .stamp("U", "P", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"_meta":{"uuid":"U","published":"P"},"id":1}"#
        );
    }

    #[test]
    fn without_meta_cuts_exactly_what_the_append_stamped() {
        for text in [
            r#"{"a": 1.50, "b":[1, 2]}"#,
            "{}",
            r#"{"z":"\u00e9","_x":{"_meta":1}}"#,
        ] {
            let doc: Value = serde_json::from_str(text).unwrap();
            let mut stored = Vec::new();
            Encoded::of_text(&bytes::Bytes::copy_from_slice(text.as_bytes()), &doc).stamp(
                "0190a0b0-c0d0-7e00-8000-000000000001",
                "2026-12-06T13:00:00.123456Z",
                &mut stored,
            );
            let cut = without_meta(&stored).unwrap();
            assert_eq!(serde_json::from_str::<Value>(&cut).unwrap(), doc, "{text}");
        }
        // Anything else is the caller's to parse.
        assert_eq!(
            without_meta(br#"{"_meta":{"published":"P","uuid":"U"},"a":1}"#),
            None
        );
        assert_eq!(without_meta(br#"{"a":1}"#), None);
    }

    #[test]
    fn a_failed_transaction_appends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let res: anyhow::Result<()> = store.write(|txn| {
            append(txn, "j", &[json!({"x": 1})])?;
            anyhow::bail!("later step failed")
        });
        assert!(res.is_err());
        assert_eq!(head(&store, "j").unwrap(), 0);
        assert!(
            Journals::default()
                .read(&store, "j", 0, 10, 1 << 20)
                .unwrap()
                .is_empty()
        );
    }

    /// Concurrent writers share transactions; a failing job is rolled back alone, and every
    /// successful job's writes are there exactly once.
    #[test]
    fn group_commit_isolates_failing_appends() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(&dir.path().join("db")).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut ok = 0;
                    for i in 0..50 {
                        let fail = i % 5 == 0;
                        let r = store.write(move |txn| {
                            append(txn, &format!("j{t}"), &[json!({"i": i})])?;
                            if fail {
                                anyhow::bail!("job {t}/{i} fails after writing");
                            }
                            Ok(i)
                        });
                        match (fail, r) {
                            (false, Ok(v)) => {
                                assert_eq!(v, i);
                                ok += 1;
                            }
                            (true, Err(e)) => {
                                assert!(e.to_string().contains("fails after writing"), "{e}")
                            }
                            (f, r) => panic!("job {t}/{i} (fail: {f}) gave {r:?}"),
                        }
                    }
                    ok
                })
            })
            .collect();
        for (t, h) in threads.into_iter().enumerate() {
            let ok = h.join().unwrap();
            let docs = Journals::default()
                .read(&store, &format!("j{t}"), 0, usize::MAX, usize::MAX)
                .unwrap();
            let is: Vec<u64> = docs
                .iter()
                .map(|d| {
                    serde_json::from_slice::<serde_json::Value>(&d.bytes).unwrap()["i"]
                        .as_u64()
                        .unwrap()
                })
                .collect();
            assert_eq!(is.len(), ok);
            assert_eq!(is, (0..50).filter(|i| i % 5 != 0).collect::<Vec<u64>>());
        }
    }
}
