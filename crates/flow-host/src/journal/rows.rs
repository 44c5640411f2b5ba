//! The redb head of journals: appends (with `_meta` stamping) inside a caller's write
//! transaction, write heads, the blocks still in redb and the lines in them. Below
//! `Journals` and `fragment/`, which both read it.
//!
//! A journal's head is stored in blocks (`JOURNAL_BLOCKS`): one row holds the NDJSON lines of
//! consecutive documents, up to about `BLOCK_BYTES`, under the offset of its first line. A
//! B-tree insert per document was most of the committer's time; per block it is amortized
//! over hundreds of documents, and a reader copies a block's lines out at once.

use crate::storage::{JOURNAL_BLOCKS, JOURNAL_HEADS, Store};
use redb::{ReadableTable, WriteTransaction};
use serde_json::Value;

/// One document read from a journal.
#[derive(Debug, Clone)]
pub struct ReadDoc {
    /// The offset the document begins at.
    pub offset: u64,
    /// The document's JSON bytes (without the trailing newline); a slice of the block it was
    /// read with, so reading a batch allocates per block, not per document.
    pub bytes: bytes::Bytes,
}

/// A block closes once it holds this many bytes (a larger document is a block of its own).
/// Big enough that a block's row costs little per document (~250 ordinary documents), small
/// enough that a reader that wants one document near a block's start copies little else,
/// and that a block is a handful of redb pages.
pub const BLOCK_BYTES: usize = 64 << 10;

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
    /// The change this document is, as its writer said in `_meta/op` (`c`reate, `u`pdate,
    /// `d`elete: a capture of a database's changes): the one member of `_meta` a writer may
    /// set, kept when `_meta` is stamped. A `d` deletes its key in materializations.
    op: Option<&'static str>,
}

/// The `_meta/op` of `doc`, if it is one of `c`, `u`, `d`.
pub fn op_of(doc: &Value) -> Option<&'static str> {
    match doc.get("_meta")?.get("op")?.as_str()? {
        "c" => Some("c"),
        "u" => Some("u"),
        "d" => Some("d"),
        _ => None,
    }
}

impl Encoded {
    /// Serialize `doc`, leaving out any `_meta` it has (the host's own is stamped on append)
    /// but its `op`.
    pub fn of(doc: &Value) -> Encoded {
        let Value::Object(map) = doc else {
            let text = serde_json::to_vec(doc).unwrap_or_else(|_| b"null".to_vec());
            return Encoded {
                text: text.into(),
                object: false,
                op: None,
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
            op: op_of(doc),
        }
    }

    /// The document `doc` as the JSON `text` it was parsed from, without serializing it: an
    /// object without `_meta` keeps its text (whitespace and all, which any reader parses to
    /// the same document); anything else is serialized by `of`.
    /// One slice of `text` is taken (a reference count shared by every line of a request,
    /// which parallel parsers contend on, so no more than one).
    pub fn of_text(text: &bytes::Bytes, doc: &Value) -> Encoded {
        match doc {
            Value::Object(map) if !map.contains_key("_meta") => {
                Encoded::of_object_text(text, None).unwrap_or_else(|| Encoded::of(doc))
            }
            _ => Encoded::of(doc),
        }
    }

    /// The JSON object `text` as it is, without serializing it. `meta`: None if it has no
    /// `_meta`; Some(op) if it has one, which must then be its first member, exactly
    /// `"_meta":{"op":"c"}` (or `u`, `d`: `op`), as captures write it; it is cut (the
    /// append stamps the host's), its op kept. None for any other text.
    pub fn of_object_text(
        text: &bytes::Bytes,
        meta: Option<Option<&'static str>>,
    ) -> Option<Encoded> {
        let start = text.len() - text.trim_ascii_start().len();
        let end = text.trim_ascii_end().len();
        if text.get(start) != Some(&b'{') {
            return None;
        }
        // After the brace and any space, up to and with the closing one.
        let mut from = start + 1;
        from += text[from..end].len() - text[from..end].trim_ascii_start().len();
        if let Some(op) = meta {
            let prefix = match op? {
                "c" => &br#""_meta":{"op":"c"}"#[..],
                "u" => br#""_meta":{"op":"u"}"#,
                _ => br#""_meta":{"op":"d"}"#,
            };
            let after = text[from..end].strip_prefix(prefix)?.trim_ascii_start();
            from = end - after.len();
            match after.first() {
                Some(b',') => {
                    from += 1;
                    from += text[from..end].len() - text[from..end].trim_ascii_start().len();
                }
                Some(b'}') => {}
                _ => return None,
            }
        }
        Some(Encoded {
            text: text.slice(from..end),
            object: true,
            op: meta.flatten(),
        })
    }

    /// The document parsed (without `_meta`): for the few writers that need a value of it
    /// after combining, e.g. to find a partitioned collection's journal.
    pub fn to_value(&self) -> serde_json::Result<Value> {
        if !self.object {
            return serde_json::from_slice(&self.text);
        }
        let mut text = Vec::with_capacity(self.text.len() + 1);
        text.push(b'{');
        text.extend_from_slice(&self.text);
        serde_json::from_slice(&text)
    }

    /// Append the stored text of this document to `out`: `{"_meta":{"uuid":...,
    /// "published":...[,"op":...]}` and its members (`_meta` first, so readers find a document's clock
    /// without parsing the rest).
    pub(crate) fn stamp(&self, uuid: &str, published: &str, out: &mut Vec<u8>) {
        if self.object {
            out.extend_from_slice(b"{\"_meta\":{\"uuid\":\"");
            out.extend_from_slice(uuid.as_bytes());
            out.extend_from_slice(b"\",\"published\":\"");
            out.extend_from_slice(published.as_bytes());
            if let Some(op) = self.op {
                out.extend_from_slice(b"\",\"op\":\"");
                out.extend_from_slice(op.as_bytes());
            }
            out.extend_from_slice(b"\"}");
            if self.text.first() != Some(&b'}') {
                out.push(b',');
            }
        }
        out.extend_from_slice(&self.text);
    }
}

/// A stored document's `_meta/uuid` (its publish time, as a UUIDv7 that sorts by it), read
/// from the front of its text where its append stamped it, without parsing the rest.
pub fn uuid_of(stored: &[u8]) -> Option<&str> {
    let rest = stored.strip_prefix(br#"{"_meta":{"uuid":""#)?;
    std::str::from_utf8(rest.get(..36)?).ok()
}

/// A stored document's text without the `_meta` its append stamped in front, without parsing
/// it: `{"_meta":{"uuid":"…","published":"…"},"a":1}` gives `{"a":1}`. None if the text does
/// not begin with `_meta` exactly as `Encoded::stamp` writes it (the caller then parses it).
pub fn without_meta(stored: &[u8]) -> Option<String> {
    let rest = stored.strip_prefix(br#"{"_meta":{"uuid":""#)?;
    let rest = rest.get(36..)?.strip_prefix(br#"","published":""#)?;
    // RFC 3339 in UTC: digits, '-', ':', 'T', '.', 'Z' only, so no escapes to look for.
    let end = rest.iter().position(|&b| b == b'"')?;
    let rest = rest[end..].strip_prefix(br#""}"#)?;
    let members = match rest.first()? {
        b',' => &rest[1..],
        b'}' => rest,
        _ => return None,
    };
    let mut out = String::with_capacity(members.len() + 1);
    out.push('{');
    out.push_str(std::str::from_utf8(members).ok()?);
    Some(out)
}

/// Stamp `_meta` on each document and append them to `journal` within `txn`. Returns the
/// offsets `[begin, end)` the documents occupy. `_meta` holds `uuid` (a UUIDv7: unique, and
/// ordered by publish time) and `published` (RFC 3339, UTC); any `_meta` a document
/// brought is replaced, because only the host may speak for when and how it was written,
/// except its `op` (`c`, `u` or `d`: which change of its source it is).
pub fn append(txn: &WriteTransaction, journal: &str, docs: &[Value]) -> anyhow::Result<(u64, u64)> {
    let encoded: Vec<Encoded> = docs.iter().map(Encoded::of).collect();
    // One clock for every such append of the process, so their UUIDs keep increasing.
    static SYSTEM: std::sync::LazyLock<crate::clock::Clock> =
        std::sync::LazyLock::new(crate::clock::Clock::default);
    append_encoded(txn, journal, &encoded, &SYSTEM)
}

/// `append` of documents encoded beforehand (`Encoded`): the committer only stamps them, into
/// blocks of about `BLOCK_BYTES`, as published now by `clock` (the host's: `Store::clock`).
pub fn append_encoded(
    txn: &WriteTransaction,
    journal: &str,
    docs: &[Encoded],
    clock: &crate::clock::Clock,
) -> anyhow::Result<(u64, u64)> {
    let at = clock.now();
    let mut heads = txn.open_table(JOURNAL_HEADS)?;
    let begin = heads.get(journal)?.map(|v| v.value()).unwrap_or(0);
    let mut table = txn.open_table(JOURNAL_BLOCKS)?;
    let published = humantime::format_rfc3339_micros(at).to_string();
    let mut uuids = clock.uuids_v7(at);
    let expect: usize = docs.iter().map(|d| d.text.len() + 96).sum();
    let mut block = Vec::with_capacity(expect.min(BLOCK_BYTES + (BLOCK_BYTES >> 2)));
    let (mut block_begin, mut offset) = (begin, begin);
    let mut uuid = uuid::Uuid::encode_buffer();
    for doc in docs {
        let id = uuids.issue().hyphenated().encode_lower(&mut uuid);
        let at = block.len();
        doc.stamp(id, &published, &mut block);
        block.push(b'\n');
        offset += (block.len() - at) as u64;
        if block.len() >= BLOCK_BYTES {
            table.insert((journal, block_begin), block.as_slice())?;
            block.clear();
            block_begin = offset;
        }
    }
    if !block.is_empty() {
        table.insert((journal, block_begin), block.as_slice())?;
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

/// The offset of the journal's first block still in redb (blocks wholly below its sealed
/// end were trimmed), or its head if it has none.
pub fn low_in(txn: &redb::ReadTransaction, journal: &str) -> anyhow::Result<u64> {
    let blocks = txn.open_table(JOURNAL_BLOCKS)?;
    let first = blocks.range((journal, 0)..(journal, u64::MAX))?.next();
    match first {
        Some(e) => Ok(e?.0.value().1),
        None => head_in(txn, journal),
    }
}

/// How far a reader at an offset is behind a journal's head, in documents and time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Lag {
    /// Documents from the offset to the head.
    pub docs: u64,
    /// Whether `docs` is estimated: the part of the range already in fragments is counted
    /// at the average document size of the part in redb (counted exactly).
    pub estimated: bool,
    /// When the first unread document was appended (ms since the epoch, from its UUIDv7),
    /// if it is in redb.
    pub oldest_ms: Option<u64>,
}

/// Most bytes `lag` scans: a status asked for every second (the dashboard, a scraper) costs
/// at most this per source however far behind it is.
const LAG_SCAN_BYTES_MAX: u64 = 1 << 20;

/// The lag of a reader of `journal` at offset `from`: the first `LAG_SCAN_BYTES_MAX` of it
/// that are in redb are counted (a newline scan), the rest (in fragments, or past what is
/// scanned) estimated at the counted part's average document size.
pub fn lag(store: &Store, journal: &str, from: u64) -> anyhow::Result<Lag> {
    let txn = store.read()?;
    let head = head_in(&txn, journal)?;
    if from >= head {
        return Ok(Lag::default());
    }
    let low = low_in(&txn, journal)?;
    let blocks = blocks(&txn)?;
    let (mut docs, mut bytes, mut oldest_ms) = (0u64, 0u64, None);
    let start = from.max(low);
    blocks_from(&blocks, journal, start, |begin, block| {
        if begin < start {
            for (_, range) in lines(begin, block, start) {
                if oldest_ms.is_none() {
                    oldest_ms = uuid_ms(&block[range]);
                }
                docs += 1;
            }
            bytes += begin + block.len() as u64 - start;
        } else {
            if oldest_ms.is_none() {
                let end = memchr::memchr(b'\n', block).unwrap_or(block.len());
                oldest_ms = uuid_ms(&block[..end]);
            }
            docs += memchr::memchr_iter(b'\n', block).count() as u64;
            bytes += block.len() as u64;
        }
        Ok(bytes < LAG_SCAN_BYTES_MAX)
    })?;
    let mut lag = Lag {
        docs,
        estimated: false,
        oldest_ms: if from >= low { oldest_ms } else { None },
    };
    // What was not counted: [from, low) in fragments, and whatever is past the scanned part
    // of redb; about as many documents per byte as the counted part.
    let uncounted = (low.saturating_sub(from)) + head.saturating_sub(start + bytes);
    if uncounted > 0 {
        let per_doc = bytes.checked_div(docs).unwrap_or(256).max(1);
        lag.docs += uncounted.div_ceil(per_doc);
        lag.estimated = true;
    }
    Ok(lag)
}

/// The time in a stored document's UUIDv7 (its first 48 bits, ms since the epoch).
fn uuid_ms(stored: &[u8]) -> Option<u64> {
    let uuid = uuid_of(stored)?;
    let hex: String = uuid.chars().filter(|c| *c != '-').take(12).collect();
    u64::from_str_radix(&hex, 16).ok()
}

/// The journal's blocks as a read transaction sees them.
pub(crate) type Blocks = redb::ReadOnlyTable<(&'static str, u64), &'static [u8]>;

/// Open the blocks table in `txn`.
pub(crate) fn blocks(txn: &redb::ReadTransaction) -> anyhow::Result<Blocks> {
    Ok(txn.open_table(JOURNAL_BLOCKS)?)
}

/// Visit the blocks of `journal` in redb from the one holding `from` (or the first after
/// it), in order: `visit(begin, block)` until it returns false. Blocks must tile: a gap
/// between two is an error naming it.
pub(crate) fn blocks_from(
    blocks: &Blocks,
    journal: &str,
    from: u64,
    mut visit: impl FnMut(u64, &[u8]) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    // The block holding `from`: the last one beginning at or before it, if it reaches `from`.
    let start = match blocks.range((journal, 0)..=(journal, from))?.next_back() {
        Some(e) => {
            let (k, v) = e?;
            let begin = k.value().1;
            if begin + v.value().len() as u64 > from {
                begin
            } else {
                from
            }
        }
        None => from,
    };
    let mut expect: Option<u64> = None;
    for entry in blocks.range((journal, start)..(journal, u64::MAX))? {
        let (k, v) = entry?;
        let begin = k.value().1;
        if let Some(e) = expect
            && e != begin
        {
            anyhow::bail!("journal {journal} has a gap at offset {e} (next block at {begin})");
        }
        let block = v.value();
        anyhow::ensure!(
            block.last() == Some(&b'\n'),
            "journal {journal}: the block at offset {begin} does not end with a newline"
        );
        expect = Some(begin + block.len() as u64);
        if !visit(begin, block)? {
            break;
        }
    }
    Ok(())
}

/// The lines of a block that begins at `begin`, from the first at or after `from`: each line's
/// offset and its range in the block (without the newline).
pub(crate) fn lines(
    begin: u64,
    block: &[u8],
    from: u64,
) -> impl Iterator<Item = (u64, std::ops::Range<usize>)> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < block.len() {
            let len = memchr::memchr(b'\n', &block[at..]).unwrap_or(block.len() - at);
            let (offset, range) = (begin + at as u64, at..at + len);
            at += len + 1;
            if offset >= from {
                return Some((offset, range));
            }
        }
        None
    })
}

/// Up to `docs_max` documents (or about `bytes_max` bytes; at least one if any) of `journal`
/// in redb from the first document at or after `from`. What is read of a block is copied out
/// in one piece, and its documents are slices of it.
pub(crate) fn read_docs(
    blocks: &Blocks,
    journal: &str,
    from: u64,
    docs_max: usize,
    bytes_max: usize,
) -> anyhow::Result<Vec<ReadDoc>> {
    let mut out: Vec<ReadDoc> = Vec::new();
    let mut bytes = 0usize;
    let mut taken: Vec<(u64, std::ops::Range<usize>)> = Vec::new();
    blocks_from(blocks, journal, from, |begin, block| {
        let mut more = true;
        for (offset, range) in lines(begin, block, from) {
            bytes += range.len();
            taken.push((offset, range));
            more = out.len() + taken.len() < docs_max && bytes < bytes_max;
            if !more {
                break;
            }
        }
        if let (Some(first), Some(last)) = (taken.first(), taken.last()) {
            let (lo, hi) = (first.1.start, last.1.end);
            let copy = bytes::Bytes::copy_from_slice(&block[lo..hi]);
            out.extend(taken.drain(..).map(|(offset, r)| ReadDoc {
                offset,
                bytes: copy.slice(r.start - lo..r.end - lo),
            }));
        }
        Ok(more)
    })?;
    Ok(out)
}
