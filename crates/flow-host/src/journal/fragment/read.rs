//! Reading history from fragments.
//!
//! A fragment is downloaded whole and its digest checked before any of it is read, so a
//! reader never sees part of a corrupt file. Its NDJSON is then decoded as the reader asks for
//! more; a reader that stops mid-fragment leaves its cursor here, and the next read from where
//! it stopped continues the same decoder instead of downloading again.

use super::{Fragment, Fragments, decode};
use crate::journal::rows::ReadDoc;
use crate::storage::FRAGMENTS;
use object_store::ObjectStoreExt;
use sha2::Digest;
use std::io::BufRead;

/// Cursors kept for readers that stopped mid-fragment. Each holds its compressed fragment
/// (about `length` / 10 bytes), so this bounds their memory.
const CURSORS_MAX: usize = 8;

pub(super) struct Cursor {
    journal: String,
    fragment: Fragment,
    /// The offset of the next line `lines` yields.
    next: u64,
    lines: Box<dyn BufRead + Send>,
}

/// Why a fragment could not be read.
enum ReadError {
    /// The file is not what its name and index record say: skip it.
    Content(String),
    /// The store failed (unreachable, denied, ...): the reader should try again later.
    Store(anyhow::Error),
}

impl Fragments {
    /// Documents of `journal` from the first fragment holding an offset at or above `from`,
    /// starting at the first document at or after `from`: at least one document unless no
    /// fragment is there, and at most `docs_max` documents or about `bytes_max` bytes (reads
    /// stop at the fragment's end). Files that are not what the index says are reported in
    /// the journal's status and skipped; a failing store is an error.
    pub fn read(
        &self,
        journal: &str,
        mut from: u64,
        docs_max: usize,
        bytes_max: usize,
    ) -> anyhow::Result<Vec<ReadDoc>> {
        loop {
            let Some(fragment) = self.fragment_at(journal, from)? else {
                return Ok(Vec::new());
            };
            from = from.max(fragment.begin);
            let taken = {
                let mut cursors = self.cursors.lock().expect("cursors poisoned");
                cursors
                    .iter()
                    .position(|c| c.journal == journal && c.next == from && c.fragment == fragment)
                    .map(|i| cursors.swap_remove(i))
            };
            let cursor = match taken {
                Some(c) => Ok(c),
                None => self.open_cursor(journal, &fragment, from),
            };
            let result = cursor.and_then(|mut c| {
                let docs = next_docs(&mut c, docs_max, bytes_max)?;
                Ok((c, docs))
            });
            match result {
                Ok((cursor, docs)) => {
                    if cursor.next < cursor.fragment.end {
                        let mut cursors = self.cursors.lock().expect("cursors poisoned");
                        if cursors.len() >= CURSORS_MAX {
                            cursors.remove(0);
                        }
                        cursors.push(cursor);
                    }
                    if docs.is_empty() {
                        // Positioned past the last document (a `from` inside the last line).
                        from = fragment.end;
                        continue;
                    }
                    return Ok(docs);
                }
                Err(ReadError::Content(why)) => {
                    self.skipped(journal, &fragment.path, &why);
                    from = fragment.end;
                }
                Err(ReadError::Store(e)) => {
                    return Err(e.context(format!(
                        "failed to read fragment {} of {journal} from {}",
                        fragment.path, self.url
                    )));
                }
            }
        }
    }

    /// The indexed fragment holding `from` (the one reaching furthest if several do), or else
    /// the first one beginning after it.
    fn fragment_at(&self, journal: &str, from: u64) -> anyhow::Result<Option<Fragment>> {
        let txn = self.db.read()?;
        let index = txn.open_table(FRAGMENTS)?;
        let mut best: Option<Fragment> = None;
        // Fragments beginning at or below `from`: the nearest few, since ranges rarely overlap.
        for entry in index.range((journal, 0)..=(journal, from))?.rev().take(16) {
            let f = decode(entry?.1.value())?;
            if f.end > from && best.as_ref().is_none_or(|b| f.end > b.end) {
                best = Some(f);
            }
        }
        if best.is_none()
            && let Some(entry) = index.range((journal, from)..=(journal, u64::MAX))?.next()
        {
            best = Some(decode(entry?.1.value())?);
        }
        Ok(best)
    }

    /// Download a fragment, check it, and position a cursor at the first document at or after
    /// `from`.
    fn open_cursor(&self, journal: &str, f: &Fragment, from: u64) -> Result<Cursor, ReadError> {
        let path = object_store::path::Path::parse(&f.path)
            .map_err(|e| ReadError::Content(format!("bad path: {e}")))?;
        let file = self.block_on(async {
            let got = self.object.get(&path).await?;
            got.bytes().await
        });
        let file = match file {
            Ok(b) => b,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(ReadError::Content(
                    "the index records it, but the store no longer has it".into(),
                ));
            }
            Err(e) => return Err(ReadError::Store(e.into())),
        };
        if file.len() as u64 != f.size {
            return Err(ReadError::Content(format!(
                "is {} bytes, but {} were uploaded",
                file.len(),
                f.size
            )));
        }
        let digest = hex::encode(sha2::Sha256::digest(&file));
        if digest != f.digest {
            return Err(ReadError::Content(format!(
                "content digest {digest} does not match its name's {}",
                f.digest
            )));
        }
        let lines = f
            .codec
            .decoder(file)
            .map_err(|e| ReadError::Content(format!("cannot decode as {:?}: {e}", f.codec)))?;
        let mut cursor = Cursor {
            journal: journal.to_string(),
            fragment: f.clone(),
            next: f.begin,
            lines,
        };
        // Skip to `from`.
        let mut line = Vec::new();
        while cursor.next < from {
            if !next_line(&mut cursor, &mut line)? {
                break;
            }
        }
        Ok(cursor)
    }
}

/// Read the next line into `line` (without its newline). False at the fragment's end.
fn next_line(c: &mut Cursor, line: &mut Vec<u8>) -> Result<bool, ReadError> {
    line.clear();
    let n = c
        .lines
        .read_until(b'\n', line)
        .map_err(|e| ReadError::Content(format!("cannot decode at offset {}: {e}", c.next)))?;
    if n == 0 {
        if c.next != c.fragment.end {
            return Err(ReadError::Content(format!(
                "ends at offset {}, but its name says {}",
                c.next, c.fragment.end
            )));
        }
        return Ok(false);
    }
    if line.last() != Some(&b'\n') {
        return Err(ReadError::Content(format!(
            "its last line, at offset {}, has no newline",
            c.next
        )));
    }
    line.pop();
    c.next += n as u64;
    if c.next > c.fragment.end {
        return Err(ReadError::Content(format!(
            "runs past offset {}, the end its name says",
            c.fragment.end
        )));
    }
    Ok(true)
}

fn next_docs(c: &mut Cursor, docs_max: usize, bytes_max: usize) -> Result<Vec<ReadDoc>, ReadError> {
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut line = Vec::new();
    while out.len() < docs_max && (bytes < bytes_max || out.is_empty()) {
        let offset = c.next;
        if !next_line(c, &mut line)? {
            break;
        }
        bytes += line.len();
        out.push(ReadDoc {
            offset,
            bytes: std::mem::take(&mut line).into(),
        });
    }
    Ok(out)
}
