//! The combiner: combines documents by (binding, key) in memory, compacting as it goes, spills
//! sorted runs past a memory threshold, and drains everything in (binding, key) order.
//!
//! How callers use it (each caller drains once per transaction):
//!
//! | caller | adds | drain |
//! | --- | --- | --- |
//! | ingest, before appending to a collection | each document, `front: false` | `drain(false)`: combined deltas, one or more per key |
//! | derivation, before appending its outputs | each output, `front: false` | `drain(false)` |
//! | materialization | the transaction's documents, then each stored row as `front: true` | `drain(true)`: one reduced row per key, `deleted` for row deletes |
//! | catalog test verify | the whole collection from its start, `front: false` | `drain(true)`: one document per key, in key order |
//!
//! `add` reduces each document associatively onto the last one kept for its key; where that
//! must wait for a full reduction (see `reduce/mod.rs`), the key keeps both. A `front` document
//! is known to be the first of its key (a materialized row), so it is kept apart and reduced
//! fully at the drain, wherever it came from: documents spilled earlier still come after it.
//! A drain reduces a key fully if it is a full drain or the key has a front document; otherwise
//! it yields the key's kept documents as they are. Every drained document (but a deletion's
//! tombstone) is validated against its binding's schema.
//!
//! An error from `add` or from the drain names the binding, the key, and the document location
//! and values; the caller aborts its transaction and drops the combiner.

mod drain;
mod key;
mod spill;

#[cfg(test)]
mod tests;

use super::ptr::Pointer;
use super::reduce::{ReduceError, Reduced};
use super::schema::{Schema, ValidationError};
pub use drain::Drainer;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Default memory threshold past which the combiner spills, in bytes of estimated heap.
///
/// Combining in memory is what makes hot keys cheap: a thousand updates of one key take the
/// memory of one document. Past a few hundred MiB the gain flattens (the keys that repeat have
/// long been compacted; the rest are distinct and must be written anyway), while the host runs
/// several tasks side by side and each holds its own combiner. Spilling is cheap: runs are
/// written sequentially, lz4-compressed, and a drain holds only one block of each run. The
/// estimate counts `serde_json` heap layout, not allocator overhead, so real usage can be up
/// to about twice this.
pub const SPILL_THRESHOLD_BYTES_DEFAULT: usize = 256 << 20;

/// What a combiner would keep of documents whose schema has no `reduce` annotation at all
/// (`lastWriteWins` of whole documents): the last document of each key, kept as they come,
/// so memory holds one item per key however many arrive. Without a combiner's bookkeeping:
/// the caller keeps what it wants of each document (`T`: its text, its encoding), which come
/// out in the order their keys first came.
pub struct LastOfEachKey<T> {
    key: Vec<Pointer>,
    /// ahash, as `Combiner::entries` (keys come from documents).
    index: HashMap<Vec<u8>, usize, ahash::RandomState>,
    kept: Vec<T>,
}

/// The key of `doc` at `key`, packed into bytes that are equal exactly when two keys are
/// (`1` and `1.0` are one key), as the combiner compares them. Fails like `Combiner::add`
/// on a document without a key value.
pub fn packed_key(key: &[Pointer], doc: &Value) -> Result<Vec<u8>, CombineError> {
    key::encode_key(0, key, doc).map_err(|ptr| CombineError::MissingKey {
        binding: 0,
        ptr: ptr.to_string(),
    })
}

impl<T> LastOfEachKey<T> {
    pub fn new(key: Vec<Pointer>) -> Self {
        LastOfEachKey {
            key,
            index: HashMap::default(),
            kept: Vec::new(),
        }
    }

    /// Keep `item` (of `doc`) in place of any earlier one of its key.
    pub fn add(&mut self, doc: &Value, item: T) -> Result<(), CombineError> {
        let packed = packed_key(&self.key, doc)?;
        self.add_packed(packed, item);
        Ok(())
    }

    /// `add` of a document whose key the caller packed (`packed_key`), e.g. on another thread.
    pub fn add_packed(&mut self, packed: Vec<u8>, item: T) {
        match self.index.get(&packed) {
            Some(&i) => self.kept[i] = item,
            None => {
                self.index.insert(packed, self.kept.len());
                self.kept.push(item);
            }
        }
    }

    /// Items kept so far (one per key).
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    pub fn into_items(self) -> Vec<T> {
        self.kept
    }
}

/// Estimated bytes of one memtable entry beyond its key and documents (hash slot, vectors).
const ENTRY_OVERHEAD_BYTES: usize = 96;

/// One kind of document the combiner holds: its key locations and its schema.
#[derive(Clone)]
pub struct Binding {
    pub key: Vec<Pointer>,
    pub schema: Arc<Schema>,
}

/// One drained document.
#[derive(Debug, Clone, PartialEq)]
pub struct Drained {
    pub binding: usize,
    /// The key values of `doc`, in the order of the binding's key.
    pub key: Vec<Value>,
    /// The reduced document; for a deletion, the document that deleted it (the tombstone).
    pub doc: Value,
    /// Whether a front document (a stored row) took part.
    pub front: bool,
    /// Whether the key's documents reduce to a deletion (only in a full reduction).
    pub deleted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CombineError {
    #[error("binding {binding} does not exist (the combiner has {count})")]
    UnknownBinding { binding: usize, count: usize },
    #[error("binding {binding}: document has no value at key location {ptr}")]
    MissingKey { binding: usize, ptr: String },
    #[error("binding {binding}, key {key}: document is invalid: {source}")]
    InvalidDocument {
        binding: usize,
        key: String,
        source: ValidationError,
    },
    #[error("binding {binding}, key {key}: reduced document is invalid: {source}")]
    InvalidReduced {
        binding: usize,
        key: String,
        source: ValidationError,
    },
    #[error("binding {binding}, key {key}: {source}")]
    Reduce {
        binding: usize,
        key: String,
        source: Box<ReduceError>,
    },
    #[error("binding {binding}, key {key}: a second front document was added for the key")]
    DuplicateFront { binding: usize, key: String },
    #[error("combiner spill file: {0}")]
    Spill(#[from] std::io::Error),
}

/// The documents kept for one key.
pub(crate) struct Entry {
    /// The first document of the key, if known.
    front: Option<Value>,
    /// Later documents, each the associative reduction of a run; more than one only where a
    /// reduction deferred.
    docs: Vec<Value>,
    /// Estimated heap bytes, and the value of that estimate when last computed exactly.
    bytes: usize,
    bytes_exact: usize,
}

pub struct Combiner {
    bindings: Arc<[Binding]>,
    spill_threshold_bytes: usize,
    /// Keys come from documents, so the hasher must resist collision attacks: ahash, keyed at
    /// random per process (already built for jsonschema), hashes a short key in a fraction of
    /// the instructions of std's SipHash.
    entries: HashMap<Box<[u8]>, Entry, ahash::RandomState>,
    mem_bytes: usize,
    spill: Option<spill::SpillFile>,
    /// The packed key of the document being added, kept for the next one's.
    packed: Vec<u8>,
}

impl Combiner {
    /// A combiner of documents of `bindings` that spills past `spill_threshold_bytes` of
    /// estimated memory ([`SPILL_THRESHOLD_BYTES_DEFAULT`] unless a test wants spills).
    pub fn new(bindings: Vec<Binding>, spill_threshold_bytes: usize) -> Combiner {
        assert!(
            bindings.len() <= u32::MAX as usize,
            "binding indices are stored as u32"
        );
        Combiner {
            bindings: bindings.into(),
            spill_threshold_bytes,
            entries: HashMap::default(),
            mem_bytes: 0,
            spill: None,
            packed: Vec::new(),
        }
    }

    /// Add a document of `binding`. It is validated, then reduced associatively onto what the
    /// combiner holds for its key. `front: true` marks the first document of its key (e.g. a
    /// row loaded from a materialized table): at most one per key per drain.
    pub fn add(&mut self, binding: usize, doc: Value, front: bool) -> Result<(), CombineError> {
        self.add_inner(binding, doc, front, true)
    }

    /// `add` of a document the caller has just validated against this binding's schema (the
    /// host checks what it ingests and what plugins output before it combines them): the
    /// same, without validating it a second time.
    pub fn add_valid(
        &mut self,
        binding: usize,
        doc: Value,
        front: bool,
    ) -> Result<(), CombineError> {
        self.add_inner(binding, doc, front, false)
    }

    fn add_inner(
        &mut self,
        binding: usize,
        doc: Value,
        front: bool,
        validate: bool,
    ) -> Result<(), CombineError> {
        let Some(b) = self.bindings.get(binding) else {
            return Err(CombineError::UnknownBinding {
                binding,
                count: self.bindings.len(),
            });
        };
        let packed = &mut self.packed;
        key::encode_key_into(binding as u32, &b.key, &doc, packed).map_err(|ptr| {
            CombineError::MissingKey {
                binding,
                ptr: ptr.to_string(),
            }
        })?;
        if validate && let Err(source) = b.schema.validate(&doc) {
            return Err(CombineError::InvalidDocument {
                binding,
                key: key_string(&b.key, &doc),
                source,
            });
        }
        let doc_bytes = value_bytes(&doc);
        let Some(entry) = self.entries.get_mut(packed.as_slice()) else {
            let bytes = doc_bytes + packed.len() + ENTRY_OVERHEAD_BYTES;
            let entry = match front {
                true => Entry {
                    front: Some(doc),
                    docs: Vec::new(),
                    bytes,
                    bytes_exact: bytes,
                },
                false => Entry {
                    front: None,
                    docs: vec![doc],
                    bytes,
                    bytes_exact: bytes,
                },
            };
            self.entries.insert(packed.as_slice().into(), entry);
            self.mem_bytes += bytes;
            return self.maybe_spill();
        };
        let before = entry.bytes;
        if front {
            if entry.front.is_some() {
                return Err(CombineError::DuplicateFront {
                    binding,
                    key: key_string(&b.key, &doc),
                });
            }
            entry.front = Some(doc);
        } else {
            push_doc(b, packed, &mut entry.docs, doc)?;
        }
        entry.bytes += doc_bytes;
        // Re-measure once the estimate doubles: amortized, this costs a constant per byte added.
        if entry.bytes > 2 * entry.bytes_exact + 4096 {
            let exact = packed.len()
                + ENTRY_OVERHEAD_BYTES
                + entry
                    .front
                    .iter()
                    .chain(entry.docs.iter())
                    .map(value_bytes)
                    .sum::<usize>();
            entry.bytes = exact;
            entry.bytes_exact = exact;
        }
        self.mem_bytes = self.mem_bytes - before + entry.bytes;
        self.maybe_spill()
    }

    /// Drain everything in (binding, key) order, leaving the combiner empty for reuse.
    /// `full: true` reduces every key fully, its first document being the start of its history
    /// (one document per key); `full: false` reduces fully only keys with a front document and
    /// yields the others' kept documents.
    pub fn drain(&mut self, full: bool) -> Result<Drainer, CombineError> {
        let entries = sorted(std::mem::take(&mut self.entries));
        self.mem_bytes = 0;
        Drainer::new(self.bindings.clone(), full, self.spill.take(), entries)
    }

    /// Estimated heap bytes held in memory.
    pub fn mem_bytes(&self) -> usize {
        self.mem_bytes
    }

    /// How many runs have been spilled since the last drain.
    pub fn spilled_runs(&self) -> usize {
        self.spill.as_ref().map_or(0, |s| s.runs.len())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.spill.is_none()
    }

    fn maybe_spill(&mut self) -> Result<(), CombineError> {
        if self.mem_bytes <= self.spill_threshold_bytes {
            return Ok(());
        }
        let entries = sorted(std::mem::take(&mut self.entries));
        let spill = match &mut self.spill {
            Some(s) => s,
            None => self.spill.insert(spill::SpillFile::new()?),
        };
        spill.write_run(entries.iter().map(|(k, e)| (&k[..], e)))?;
        self.mem_bytes = 0;
        Ok(())
    }
}

/// The memtable's entries in packed key order. What is sorted is each key's first 16 bytes as
/// a number with the entry's index, 32 bytes, rather than the entries themselves (several
/// times that) compared through `memcmp`: most keys differ within 16 bytes, and only ties
/// compare whole keys.
fn sorted(entries: HashMap<Box<[u8]>, Entry, ahash::RandomState>) -> Vec<(Box<[u8]>, Entry)> {
    let entries: Vec<(Box<[u8]>, Entry)> = entries.into_iter().collect();
    let prefix = |k: &[u8]| {
        let mut b = [0u8; 16];
        let n = k.len().min(16);
        b[..n].copy_from_slice(&k[..n]);
        // Zero padding keeps the order: a key that is a prefix of another ties, or is less.
        u128::from_be_bytes(b)
    };
    let mut order: Vec<(u128, usize)> = entries
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (prefix(k), i))
        .collect();
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| entries[a.1].0.cmp(&entries[b.1].0))
    });
    let mut slots: Vec<Option<(Box<[u8]>, Entry)>> = entries.into_iter().map(Some).collect();
    order
        .iter()
        .map(|(_, i)| slots[*i].take().expect("each index once"))
        .collect()
}

/// Reduce `doc` associatively onto the last kept document, or keep both if that must wait.
pub(crate) fn push_doc(
    b: &Binding,
    packed: &[u8],
    docs: &mut Vec<Value>,
    doc: Value,
) -> Result<(), CombineError> {
    let Some(last) = docs.pop() else {
        docs.push(doc);
        return Ok(());
    };
    let fail = |source| CombineError::Reduce {
        binding: key::binding_of(packed) as usize,
        key: Value::Array(key::decode_values(packed)).to_string(),
        source: Box::new(source),
    };
    match b.schema.reduce(Some(last), doc, false) {
        Ok(Reduced::Doc(v)) => docs.push(v),
        Ok(Reduced::Deferred { lhs, rhs }) => docs.extend([lhs, rhs]),
        Ok(Reduced::Deleted(_)) => {
            return Err(fail(ReduceError::UndetectedDeferral { at: "/".into() }));
        }
        Err(source) => return Err(fail(source)),
    }
    Ok(())
}

/// The key values of `doc` as a JSON array, for messages.
pub(crate) fn key_string(key: &[Pointer], doc: &Value) -> String {
    Value::Array(
        key.iter()
            .map(|p| p.query(doc).cloned().unwrap_or(Value::Null))
            .collect(),
    )
    .to_string()
}

/// Estimated heap bytes of a document: `serde_json` layout, without allocator overhead.
pub(crate) fn value_bytes(v: &Value) -> usize {
    const VALUE: usize = std::mem::size_of::<Value>();
    const MAP_ENTRY: usize = std::mem::size_of::<String>() + std::mem::size_of::<Value>() + 16;
    VALUE
        + match v {
            Value::String(s) => s.len(),
            Value::Array(items) => items.iter().map(value_bytes).sum(),
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| MAP_ENTRY - VALUE + k.len() + value_bytes(v))
                .sum(),
            _ => 0,
        }
}
