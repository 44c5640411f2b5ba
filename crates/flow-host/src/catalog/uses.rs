//! What in a built catalog uses an entry: a delete is refused while anything outside it does,
//! naming each user and where it uses the entry.

use super::{Built, TestStep};

/// What an entry of the catalog is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Collection,
    Materialization,
    Capture,
    Test,
}

impl Entry {
    pub fn as_str(self) -> &'static str {
        match self {
            Entry::Collection => "collection",
            Entry::Materialization => "materialization",
            Entry::Capture => "capture",
            Entry::Test => "test",
        }
    }
}

/// One use of an entry: the entry using it (its name) and how, e.g. `derivation
/// acme/totals (transform fromOrders)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Use {
    pub by: String,
    pub how: String,
}

impl Built {
    /// What kind of entry `name` is, if the catalog has it. A derivation is its collection.
    pub fn entry(&self, name: &str) -> Option<Entry> {
        if self.collections.contains_key(name) {
            Some(Entry::Collection)
        } else if self.materializations.contains_key(name) {
            Some(Entry::Materialization)
        } else if self.captures.contains_key(name) {
            Some(Entry::Capture)
        } else if self.tests.contains_key(name) {
            Some(Entry::Test)
        } else {
            None
        }
    }

    /// Every use of entry `name` by another entry of the catalog.
    pub fn uses_of(&self, name: &str) -> Vec<Use> {
        let mut out = Vec::new();
        let mut add = |by: &str, how: String| {
            if by != name {
                out.push(Use {
                    by: by.to_string(),
                    how,
                })
            }
        };
        for c in self.collections.values() {
            let Some(d) = &c.derive else { continue };
            for t in d.transforms.iter().filter(|t| t.source == name) {
                add(
                    &c.name,
                    format!("derivation {} (transform {})", c.name, t.name),
                );
            }
            if d.dead_letters.as_deref() == Some(name) {
                add(&c.name, format!("derivation {} (its dead letters)", c.name));
            }
        }
        for m in self.materializations.values() {
            for (i, _) in m
                .bindings
                .iter()
                .enumerate()
                .filter(|(_, b)| b.source == name)
            {
                add(&m.name, format!("materialization {} (binding {i})", m.name));
            }
        }
        for c in self.captures.values() {
            for (i, _) in c
                .bindings
                .iter()
                .enumerate()
                .filter(|(_, b)| b.target == name)
            {
                add(&c.name, format!("capture {} (binding {i})", c.name));
            }
            if c.dead_letters.as_deref() == Some(name) {
                add(&c.name, format!("capture {} (its dead letters)", c.name));
            }
        }
        for (test, steps) in &self.tests {
            for (i, step) in steps.iter().enumerate() {
                let named = match step {
                    TestStep::Ingest(d) | TestStep::Verify(d) => d.collection.name(),
                    TestStep::Capture(c) => &c.name,
                    TestStep::Materialize(m) => &m.name,
                };
                if named == name {
                    add(test, format!("test {test} (step {})", i + 1));
                }
            }
        }
        out
    }
}
