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

/// A document ready to append, prepared outside the committer (which runs every writer's
/// appends one after another): its JSON text after the opening brace, so an append only puts
/// `{"_meta":{...}` in front. Made from a `Value` (serialized once) or from the JSON text a
/// document was parsed from (not serialized at all).
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The members after `{` and the closing `}`; or, for a document that is not an object
    /// (no collection takes one, but a journal can hold it), the whole value.
    text: bytes::Bytes,
    object: bool,
}

impl Encoded {
    /// Serialize `doc`, leaving out any `_meta` it has (the host's own is stamped on append).
    pub fn of(doc: &Value) -> Encoded {
        let Value::Object(map) = doc else {
            let text = serde_json::to_vec(doc).unwrap_or_else(|_| b"null".to_vec());
            return Encoded {
                text: text.into(),
                object: false,
            };
        };
        let mut out = Vec::with_capacity(128);
        let mut first = true;
        for (k, v) in map {
            if k == "_meta" {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            // Serializing strings and `Value`s into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, k);
            out.push(b':');
            let _ = serde_json::to_writer(&mut out, v);
        }
        out.push(b'}');
        Encoded {
            text: out.into(),
            object: true,
        }
    }

    /// The document `doc` as the JSON `text` it was parsed from, without serializing it: an
    /// object without `_meta` keeps its text (whitespace and all, which any reader parses to
    /// the same document); anything else is serialized by `of`.
    pub fn of_text(text: bytes::Bytes, doc: &Value) -> Encoded {
        let start = text.len() - text.trim_ascii_start().len();
        let end = text.trim_ascii_end().len();
        match doc {
            Value::Object(map) if !map.contains_key("_meta") && text.get(start) == Some(&b'{') => {
                // After the brace, up to and with the closing one.
                let members = text.slice(start + 1..end);
                let skip = members.len() - members.trim_ascii_start().len();
                Encoded {
                    text: members.slice(skip..),
                    object: true,
                }
            }
            _ => Encoded::of(doc),
        }
    }

    /// The stored text of this document: `{"_meta":{"uuid":...,"published":...}` and its
    /// members (`_meta` first, so readers find a document's clock without parsing the rest).
    pub(crate) fn stamp(&self, uuid: &str, published: &str, out: &mut Vec<u8>) {
        out.clear();
        if self.object {
            out.extend_from_slice(b"{\"_meta\":{\"uuid\":\"");
            out.extend_from_slice(uuid.as_bytes());
            out.extend_from_slice(b"\",\"published\":\"");
            out.extend_from_slice(published.as_bytes());
            out.extend_from_slice(b"\"}");
            if self.text.first() != Some(&b'}') {
                out.push(b',');
            }
        }
        out.extend_from_slice(&self.text);
    }
}

/// Stamp `_meta` on each document and append them to `journal` within `txn`. Returns the
/// offsets `[begin, end)` the documents occupy. `_meta` holds `uuid` (a UUIDv7: unique, and
/// ordered by publish time) and `published` (RFC 3339, UTC); any `_meta` a document
/// brought is replaced, because only the host may speak for when and how it was written.
pub fn append(txn: &WriteTransaction, journal: &str, docs: &[Value]) -> anyhow::Result<(u64, u64)> {
    let encoded: Vec<Encoded> = docs.iter().map(Encoded::of).collect();
    append_encoded(txn, journal, &encoded)
}

/// `append` of documents encoded beforehand (`Encoded`): the committer only stamps them.
pub fn append_encoded(
    txn: &WriteTransaction,
    journal: &str,
    docs: &[Encoded],
) -> anyhow::Result<(u64, u64)> {
    let mut heads = txn.open_table(JOURNAL_HEADS)?;
    let begin = heads.get(journal)?.map(|v| v.value()).unwrap_or(0);
    let mut table = txn.open_table(JOURNAL_DOCS)?;
    let mut offset = begin;
    let published = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    let mut bytes = Vec::new();
    let mut uuid = uuid::Uuid::encode_buffer();
    for doc in docs {
        let id = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut uuid);
        doc.stamp(id, &published, &mut bytes);
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
