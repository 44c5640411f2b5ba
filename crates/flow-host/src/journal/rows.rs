//! The redb head of journals: appends (with `_meta` stamping) inside a caller's write
//! transaction, write heads, and the first row still in redb. Below `Journals` and
//! `fragment/`, which both read it.

use crate::storage::{JOURNAL_DOCS, JOURNAL_HEADS, Store};
use redb::{ReadableTable, WriteTransaction};
use serde_json::Value;

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

/// Stamp `_meta` on each document and append them to `journal` within `txn`. Returns the
/// offsets `[begin, end)` the documents occupy. `_meta` holds `uuid` (a UUIDv7: unique, and
/// ordered by publish time) and `published` (RFC 3339, UTC); any `_meta` a document
/// brought is replaced, because only the host may speak for when and how it was written.
pub fn append(txn: &WriteTransaction, journal: &str, docs: &[Value]) -> anyhow::Result<(u64, u64)> {
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

/// The offset the next document of `journal` will begin at (0 if it has none).
pub fn head(store: &Store, journal: &str) -> anyhow::Result<u64> {
    head_in(&store.read()?, journal)
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
        None => head_in(txn, journal),
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
