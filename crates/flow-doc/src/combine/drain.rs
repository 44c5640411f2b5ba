//! Draining: a k-way merge of the spilled runs (oldest first) and the in-memory entries
//! (newest), in (binding, key) order. Entries of one key from several sources join in source
//! order, reducing associatively as they meet; then each key is reduced fully or yielded as
//! its kept documents, and every document leaving is validated.

use super::super::reduce::{ReduceError, Reduced};
use super::spill::{RunReader, SpillFile};
use super::{Binding, CombineError, Drained, Entry, key, push_doc};
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fs::File;
use std::sync::Arc;

enum Source {
    Run(RunReader),
    Memory(std::vec::IntoIter<(Box<[u8]>, Entry)>),
}

/// Drained documents in (binding, key) order; see [`super::Combiner::drain`]. After an error
/// the iterator ends.
pub struct Drainer {
    bindings: Arc<[Binding]>,
    full: bool,
    file: Option<File>,
    sources: Vec<Source>,
    /// Each source's next entry, whose key is in `heads`.
    next: Vec<Option<Entry>>,
    /// (packed key, source index) of each source's next entry: equal keys pop oldest first.
    heads: BinaryHeap<Reverse<(Vec<u8>, usize)>>,
    pending: VecDeque<Drained>,
    done: bool,
}

impl Drainer {
    pub(super) fn new(
        bindings: Arc<[Binding]>,
        full: bool,
        spill: Option<SpillFile>,
        memory: Vec<(Box<[u8]>, Entry)>,
    ) -> Result<Drainer, CombineError> {
        let (file, runs) = match spill {
            Some(s) => {
                let (file, runs) = s.into_parts();
                (Some(file), runs)
            }
            None => (None, Vec::new()),
        };
        let mut sources: Vec<Source> = runs
            .into_iter()
            .map(|r| Source::Run(RunReader::new(r)))
            .collect();
        sources.push(Source::Memory(memory.into_iter()));
        let count = sources.len();
        let mut d = Drainer {
            bindings,
            full,
            file,
            sources,
            next: (0..count).map(|_| None).collect(),
            heads: BinaryHeap::with_capacity(count),
            pending: VecDeque::new(),
            done: false,
        };
        for i in 0..count {
            d.advance(i)?;
        }
        Ok(d)
    }

    /// Load the next entry of source `i`.
    fn advance(&mut self, i: usize) -> Result<(), CombineError> {
        let next = match &mut self.sources[i] {
            Source::Memory(it) => it.next().map(|(k, e)| (k.into_vec(), e)),
            Source::Run(r) => r.next(self.file.as_mut().expect("runs have a file"))?,
        };
        if let Some((k, e)) = next {
            self.heads.push(Reverse((k, i)));
            self.next[i] = Some(e);
        }
        Ok(())
    }

    /// Gather all entries of the next key and reduce them into `pending`.
    fn step(&mut self) -> Result<bool, CombineError> {
        let Some(Reverse((packed, i))) = self.heads.pop() else {
            return Ok(false);
        };
        let mut entry = self.next[i].take().expect("a head has an entry");
        self.advance(i)?;
        let binding = key::binding_of(&packed) as usize;
        let bindings = self.bindings.clone();
        let b = &bindings[binding];
        while self
            .heads
            .peek()
            .is_some_and(|Reverse((k, _))| *k == packed)
        {
            let Reverse((_, j)) = self.heads.pop().expect("peeked");
            let newer = self.next[j].take().expect("a head has an entry");
            self.advance(j)?;
            if let Some(front) = newer.front {
                if entry.front.is_some() {
                    let key = Value::Array(key::decode_values(&packed)).to_string();
                    return Err(CombineError::DuplicateFront { binding, key });
                }
                entry.front = Some(front);
            }
            for doc in newer.docs {
                push_doc(b, &packed, &mut entry.docs, doc)?;
            }
        }
        self.finish(b, binding, &packed, entry)?;
        Ok(true)
    }

    fn finish(
        &mut self,
        b: &Binding,
        binding: usize,
        packed: &[u8],
        entry: Entry,
    ) -> Result<(), CombineError> {
        let front = entry.front.is_some();
        if !(self.full || front) {
            for doc in entry.docs {
                self.pending
                    .push_back(drained(b, binding, doc, false, false)?);
            }
            return Ok(());
        }
        let fail = |source| CombineError::Reduce {
            binding,
            key: Value::Array(key::decode_values(packed)).to_string(),
            source: Box::new(source),
        };
        let mut state: Option<Value> = None;
        let mut tombstone: Option<Value> = None;
        for doc in entry.front.into_iter().chain(entry.docs) {
            match b.schema.reduce(state.take(), doc, true).map_err(fail)? {
                Reduced::Doc(v) => {
                    state = Some(v);
                    tombstone = None;
                }
                Reduced::Deleted(t) => tombstone = Some(t),
                Reduced::Deferred { .. } => {
                    return Err(fail(ReduceError::UndetectedDeferral { at: "/".into() }));
                }
            }
        }
        let out = match (state, tombstone) {
            (Some(doc), _) => drained(b, binding, doc, front, false)?,
            (None, Some(t)) => drained(b, binding, t, front, true)?,
            (None, None) => return Ok(()),
        };
        self.pending.push_back(out);
        Ok(())
    }
}

/// A drained document with its key values; validated unless it is a tombstone.
fn drained(
    b: &Binding,
    binding: usize,
    doc: Value,
    front: bool,
    deleted: bool,
) -> Result<Drained, CombineError> {
    let mut key = Vec::with_capacity(b.key.len());
    for ptr in &b.key {
        match ptr.query(&doc) {
            Some(v) => key.push(v.clone()),
            None => {
                return Err(CombineError::MissingKey {
                    binding,
                    ptr: ptr.to_string(),
                });
            }
        }
    }
    if !deleted && let Err(source) = b.schema.validate(&doc) {
        return Err(CombineError::InvalidReduced {
            binding,
            key: Value::Array(key).to_string(),
            source,
        });
    }
    Ok(Drained {
        binding,
        key,
        doc,
        front,
        deleted,
    })
}

impl Iterator for Drainer {
    type Item = Result<Drained, CombineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(d) = self.pending.pop_front() {
                return Some(Ok(d));
            }
            if self.done {
                return None;
            }
            match self.step() {
                Ok(true) => {}
                Ok(false) => self.done = true,
                Err(e) => {
                    self.done = true;
                    self.pending.clear();
                    return Some(Err(e));
                }
            }
        }
    }
}
