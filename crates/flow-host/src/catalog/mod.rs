//! The catalog: parse and validate collections, tasks and tests into a built, deterministic
//! form the runtime consumes.

mod bundle;
pub mod evolve;
mod fields;
mod load;
mod model;
mod uses;

use crate::names::check_name;
pub use fields::BuiltField;
pub use load::{Bundle, load};
pub use model::*;
pub use uses::{Entry, Use};

use flow_doc::{Pointer, Schema};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A validated collection.
pub struct BuiltCollection {
    pub name: String,
    /// What documents written to it must match (its `schema`, or `writeSchema`); its
    /// annotations combine documents as they are written.
    pub schema: Arc<Schema>,
    /// What documents read from it must match, whose annotations combine them as they are
    /// read: `schema` itself (the same `Arc`), or `readSchema`.
    pub read_schema: Arc<Schema>,
    pub key: Vec<Pointer>,
    pub derive: Option<BuiltDerivation>,
    /// How its journal is sealed into fragments.
    pub fragments: crate::journal::fragment::Settings,
    /// Its logical partition fields (`partition: true` projections), in name order: each
    /// combination of their values is a journal of its own (`journal::partition`).
    pub partitions: Vec<(String, Pointer)>,
}

/// A partition selector of a reader, its values as journal names write them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BuiltSelector {
    include: Vec<(String, Vec<String>)>,
    exclude: Vec<(String, Vec<String>)>,
}

impl BuiltSelector {
    /// Whether a reader with this selector reads `journal`.
    pub fn matches(&self, journal: &str) -> bool {
        let labels: Vec<(&str, &str)> = crate::journal::partition::labels_of(journal).collect();
        let value = |field: &str| labels.iter().find(|(f, _)| *f == field).map(|(_, v)| *v);
        self.include
            .iter()
            .all(|(f, vs)| value(f).is_some_and(|v| vs.iter().any(|x| x == v)))
            && !self
                .exclude
                .iter()
                .any(|(f, vs)| value(f).is_some_and(|v| vs.iter().any(|x| x == v)))
    }
}

impl BuiltCollection {
    /// The journal `doc` is appended to: the collection's name, or for a collection with
    /// logical partitions, `{name}/{field}={value}...` of the document's partition values.
    pub fn journal_of(&self, doc: &Value) -> Result<String, String> {
        use crate::journal::partition::{JOURNAL_BYTES_MAX, encode_value};
        let mut journal = self.name.clone();
        for (field, ptr) in &self.partitions {
            let Some(v) = ptr.query(doc) else {
                return Err(format!("partition field {field} ({ptr}) is missing"));
            };
            let Some(text) = encode_value(v) else {
                return Err(format!(
                    "partition field {field} ({ptr}) is {}: a partition value is a string, an integer or a boolean",
                    type_name(v)
                ));
            };
            if text.len() > crate::journal::partition::VALUE_BYTES_MAX {
                return Err(format!(
                    "partition field {field} ({ptr}) is {} bytes as a journal name writes it, over the limit of {}",
                    text.len(),
                    crate::journal::partition::VALUE_BYTES_MAX
                ));
            }
            journal.push('/');
            journal.push_str(field);
            journal.push('=');
            journal.push_str(&text);
        }
        if journal.len() > JOURNAL_BYTES_MAX {
            return Err(format!(
                "its partition values make a journal name of {} bytes, over the limit of {JOURNAL_BYTES_MAX}",
                journal.len()
            ));
        }
        Ok(journal)
    }

    /// The journals a reader with `selector` reads: the collection's own, or every journal
    /// of a logical partition it has now that the selector admits (in name order).
    pub fn journals(
        &self,
        store: &crate::storage::Store,
        selector: Option<&BuiltSelector>,
    ) -> anyhow::Result<Vec<String>> {
        self.journals_in(&store.read()?, selector)
    }

    /// `journals`, as the read transaction `txn` sees them.
    pub fn journals_in(
        &self,
        txn: &redb::ReadTransaction,
        selector: Option<&BuiltSelector>,
    ) -> anyhow::Result<Vec<String>> {
        if self.partitions.is_empty() {
            return Ok(vec![self.name.clone()]);
        }
        let mut all = crate::journal::partition::journals_in(txn, &self.name)?;
        if let Some(s) = selector {
            all.retain(|j| s.matches(j));
        }
        Ok(all)
    }

    /// Whether `journal` is one of this collection's: its own name without partition fields,
    /// or with them, a name of exactly its partition fields (in order).
    pub fn owns_journal(&self, journal: &str) -> bool {
        use crate::journal::partition::{collection_of, labels_of};
        collection_of(journal) == self.name
            && labels_of(journal)
                .map(|(f, _)| f)
                .eq(self.partitions.iter().map(|(f, _)| f.as_str()))
    }

    /// Documents to append, grouped by the journal each goes to (in name order; each
    /// group's documents in their order).
    pub fn by_journal(
        &self,
        docs: Vec<crate::journal::Encoded>,
    ) -> Result<Vec<(String, Vec<crate::journal::Encoded>)>, String> {
        if self.partitions.is_empty() {
            return Ok(vec![(self.name.clone(), docs)]);
        }
        let mut groups: BTreeMap<String, Vec<crate::journal::Encoded>> = BTreeMap::new();
        for d in docs {
            let doc = d
                .to_value()
                .map_err(|e| format!("a document is not JSON: {e}"))?;
            groups.entry(self.journal_of(&doc)?).or_default().push(d);
        }
        Ok(groups.into_iter().collect())
    }

    /// A reader's partition selector, checked against this collection's partition fields.
    pub fn selector(&self, s: Option<&PartitionSelector>) -> Result<Option<BuiltSelector>, String> {
        let Some(s) = s else { return Ok(None) };
        let side = |which: &str, m: &BTreeMap<String, Vec<Value>>| {
            let mut out = Vec::new();
            for (field, values) in m {
                let Some((_, ptr)) = self.partitions.iter().find(|(f, _)| f == field) else {
                    let known: Vec<&str> =
                        self.partitions.iter().map(|(f, _)| f.as_str()).collect();
                    return Err(format!(
                        "partitions.{which}: '{field}' is not a partition field of {} ({})",
                        self.name,
                        if known.is_empty() {
                            "it has none".to_string()
                        } else {
                            format!("it has {}", known.join(", "))
                        }
                    ));
                };
                let types = self.schema.types_at(ptr);
                let mut encoded = Vec::new();
                for v in values {
                    let fits = match v {
                        Value::String(_) => types.iter().any(|t| t == "string"),
                        Value::Bool(_) => types.iter().any(|t| t == "boolean"),
                        Value::Number(_) => types.iter().any(|t| t == "integer"),
                        _ => false,
                    };
                    match encode_value_if(fits, v) {
                        Some(e) => encoded.push(e),
                        None => {
                            return Err(format!(
                                "partitions.{which}.{field}: {v} is not a value of the field (a {})",
                                types.join(" | ")
                            ));
                        }
                    }
                }
                out.push((field.clone(), encoded));
            }
            Ok(out)
        };
        Ok(Some(BuiltSelector {
            include: side("include", &s.include)?,
            exclude: side("exclude", &s.exclude)?,
        }))
    }

    /// The key of `doc` as a JSON array, e.g. `["alice"]`. Validated documents always have it.
    pub fn key_of(&self, doc: &Value) -> Value {
        key_of(&self.key, doc)
    }

    /// This collection as a combiner binding of what is written to it.
    pub fn binding(&self) -> flow_doc::Binding {
        flow_doc::Binding {
            key: self.key.clone(),
            schema: self.schema.clone(),
        }
    }

    /// This collection as a combiner binding of what is read from it (by its `readSchema`).
    pub fn read_binding(&self) -> flow_doc::Binding {
        flow_doc::Binding {
            key: self.key.clone(),
            schema: self.read_schema.clone(),
        }
    }

    /// Its `readSchema`, when it has one apart from the schema documents were written by:
    /// readers then check every document they read against it.
    pub fn distinct_read_schema(&self) -> Option<&Arc<Schema>> {
        (!Arc::ptr_eq(&self.schema, &self.read_schema)).then_some(&self.read_schema)
    }

    /// Check a stored document (`text`, as read from the journal) against the `readSchema`,
    /// if the collection has a distinct one: `_meta` aside, and a deletion (`_meta/op` `d`)
    /// only by its key, as on write.
    pub fn check_read(&self, text: &[u8]) -> Result<(), String> {
        if self.distinct_read_schema().is_none() {
            return Ok(());
        }
        let mut doc: Value = serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
        self.check_read_document(&mut doc)
    }

    /// Check a document read from the collection (parsed, `_meta` and all) against its read
    /// schema (`schema`, or `readSchema`): `_meta` aside (taken out for the check and put
    /// back), and a deletion (`_meta/op` `d`) only by its key, as on write.
    pub fn check_read_document(&self, doc: &mut Value) -> Result<(), String> {
        if crate::journal::op_of(doc) == Some("d") {
            return Ok(());
        }
        let meta = doc.as_object_mut().and_then(|m| m.remove("_meta"));
        let checked = self.read_schema.validate(doc).map_err(|e| {
            let which = match self.distinct_read_schema() {
                Some(_) => "readSchema",
                None => "schema",
            };
            format!("does not match the collection's {which}: {e}")
        });
        if let (Some(meta), Some(m)) = (meta, doc.as_object_mut()) {
            m.insert("_meta".to_string(), meta);
        }
        checked
    }

    /// Check one document before it is appended to this collection: an object, at most
    /// `limits.doc_bytes_max` bytes, valid against the schema (`_meta` aside: it is the host's).
    pub fn check_document(
        &self,
        limits: &crate::limits::Limits,
        doc: &Value,
    ) -> Result<(), String> {
        let size = serde_json::to_vec(doc)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        self.check_document_of_size(limits, &mut doc.clone(), size)
    }

    /// `check_document` for a document read from JSON text of `size` bytes: the size is the
    /// text's, so the document is not serialized again only to be measured. A `_meta` the
    /// writer brought is the host's to replace and is not validated: it is taken out for the
    /// check and put back (not the document copied: plugins that publish source documents
    /// pass theirs on, and the copy was a tenth of a join's host time).
    pub fn check_document_of_size(
        &self,
        limits: &crate::limits::Limits,
        doc: &mut Value,
        size: usize,
    ) -> Result<(), String> {
        let delete = crate::journal::op_of(doc) == Some("d");
        let meta = doc.as_object_mut().and_then(|m| m.remove("_meta"));
        let checked = self.check_without_meta(limits, doc, size, delete);
        if let (Some(meta), Some(m)) = (meta, doc.as_object_mut()) {
            m.insert("_meta".to_string(), meta);
        }
        checked
    }

    /// `delete`: the document is a delete (`_meta/op` `d`), which carries its key and
    /// nothing else a schema may require: its key is checked, not the schema.
    fn check_without_meta(
        &self,
        limits: &crate::limits::Limits,
        doc: &Value,
        size: usize,
        delete: bool,
    ) -> Result<(), String> {
        if !doc.is_object() {
            return Err(format!("must be a JSON object, not {}", type_name(doc)));
        }
        if size > limits.doc_bytes_max {
            return Err(format!(
                "is {size} bytes, over the limit of {} bytes",
                limits.doc_bytes_max
            ));
        }
        if delete {
            if let Some(p) = self.key.iter().find(|p| p.query(doc).is_none()) {
                return Err(format!(
                    "is a delete (_meta/op d) without its key: {p} is missing"
                ));
            }
        } else {
            self.schema
                .validate(doc)
                .map_err(|e| format!("does not match the schema of {}: {e}", self.name))?;
        }
        for p in &self.key {
            if let Some(problem) = p.query(doc).and_then(key_value_problem) {
                return Err(format!(
                    "has a key that cannot be told apart: {p} {problem}"
                ));
            }
        }
        if !self.partitions.is_empty() {
            self.journal_of(doc)?;
        }
        Ok(())
    }

    /// Combine documents of one transaction by key (associatively, by the `reduce`
    /// annotations), in key order: what is appended in their place. `_meta` is the host's and
    /// is dropped; the append stamps a new one. Every document must have passed
    /// `check_document` (it is not validated again).
    pub fn combine_deltas(
        &self,
        limits: &crate::limits::Limits,
        docs: Vec<Value>,
    ) -> Result<Vec<Value>, String> {
        let mut combiner =
            flow_doc::Combiner::new(vec![self.binding()], limits.combiner_spill_bytes);
        for mut doc in docs {
            if let Some(m) = doc.as_object_mut() {
                m.remove("_meta");
            }
            // Every caller checked the document against this schema (`check_document`).
            combiner
                .add_valid(0, doc, false)
                .map_err(|e| e.to_string())?;
        }
        let mut out = Vec::new();
        for d in combiner.drain(false).map_err(|e| e.to_string())? {
            out.push(d.map_err(|e| e.to_string())?.doc);
        }
        Ok(out)
    }
}

/// A document of a collection checked and made ready to combine, on any thread
/// (`BuiltCollection::prepare`): parsed and validated, and for a collection without `reduce`
/// annotations, its key packed and its text kept for the append.
pub enum Prepared {
    Doc(Value, bytes::Bytes),
    Encoded(Vec<u8>, crate::journal::Encoded),
}

/// Why `BuiltCollection::prepare` refused a document.
pub enum Unprepared {
    /// It is not JSON.
    Json(String),
    /// It is not a valid document of the collection (`check_document`'s reason).
    Invalid(String),
}

impl BuiltCollection {
    /// Parse, check (`check_document_of_size`) and prepare a document given as JSON text.
    pub fn prepare(
        &self,
        limits: &crate::limits::Limits,
        text: &bytes::Bytes,
    ) -> Result<Prepared, Unprepared> {
        if text.len() <= limits.doc_bytes_max
            && !self.schema.plan().annotated()
            && self.partitions.is_empty()
            && let Some(prepared) = self.prepare_scanned(text)
        {
            return Ok(prepared);
        }
        self.prepare_parsed(limits, text)
    }

    /// `prepare` by parsing the document into a `Value` and validating that: what decides
    /// (and words the error) wherever a scan does not know the document valid.
    pub(crate) fn prepare_parsed(
        &self,
        limits: &crate::limits::Limits,
        text: &bytes::Bytes,
    ) -> Result<Prepared, Unprepared> {
        let mut doc: Value =
            serde_json::from_slice(text).map_err(|e| Unprepared::Json(e.to_string()))?;
        self.check_document_of_size(limits, &mut doc, text.len())
            .map_err(Unprepared::Invalid)?;
        if self.schema.plan().annotated() {
            return Ok(Prepared::Doc(doc, text.clone()));
        }
        let packed = flow_doc::combine::packed_key(&self.key, &doc)
            .map_err(|e| Unprepared::Invalid(e.to_string()))?;
        Ok(Prepared::Encoded(
            packed,
            crate::journal::Encoded::of_text(text, &doc),
        ))
    }
}

impl BuiltCollection {
    /// `prepare` of a document a scan of its text knows valid (`Schema::scan`), without
    /// building a `Value` of it. None when the full path must decide (and word the error):
    /// the scan did not know it valid, it is a delete (checked by its key alone), a key
    /// value is missing or cannot be told apart, or its `_meta` is not `{"op":...}` in front.
    fn prepare_scanned(&self, text: &bytes::Bytes) -> Option<Prepared> {
        let kept = Value::Object(self.schema.scan(text, &self.key)?);
        let op = crate::journal::op_of(&kept);
        if op == Some("d")
            || self.key.iter().any(|p| {
                p.query(&kept)
                    .is_none_or(|v| key_value_problem(v).is_some())
            })
        {
            return None;
        }
        let packed = flow_doc::combine::packed_key(&self.key, &kept).ok()?;
        let encoded = crate::journal::Encoded::of_object_text(text, kept.get("_meta").map(|_| op))?;
        Some(Prepared::Encoded(packed, encoded))
    }
}

/// One transaction's checked documents of a collection, combined by key as they come, so
/// memory holds about one document per key however many arrive: a collection with `reduce`
/// annotations reduces them in a combiner; one without keeps the last document of each key
/// (as `lastWriteWins` does), as the JSON text it came as when the caller has it, so it is
/// not serialized again. `finish` encodes what to append for the committer.
pub struct Combining {
    kind: CombiningKind,
    /// The collection key, and the last change of each key once a deletion came.
    key: Vec<Pointer>,
    ops: LastOps,
}

enum CombiningKind {
    Reduce(flow_doc::Combiner),
    Last(flow_doc::combine::LastOfEachKey<crate::journal::Encoded>),
}

impl Combining {
    pub fn new(collection: &BuiltCollection, limits: &crate::limits::Limits) -> Self {
        let kind = if collection.schema.plan().annotated() {
            CombiningKind::Reduce(flow_doc::Combiner::new(
                vec![collection.binding()],
                limits.combiner_spill_bytes,
            ))
        } else {
            CombiningKind::Last(flow_doc::combine::LastOfEachKey::new(
                collection.key.clone(),
            ))
        };
        Combining {
            kind,
            key: collection.key.clone(),
            ops: LastOps::default(),
        }
    }

    /// Add a document that passed `check_document` (it is not validated again), and the
    /// text it was parsed from, if the caller has it.
    pub fn add(&mut self, mut doc: Value, text: Option<bytes::Bytes>) -> Result<(), String> {
        match &mut self.kind {
            CombiningKind::Reduce(c) => {
                keep_only_op(&mut doc);
                self.ops.add(|| key_of(&self.key, &doc).to_string(), &doc);
                c.add_valid(0, doc, false).map_err(|e| e.to_string())
            }
            CombiningKind::Last(l) => {
                let encoded = match text {
                    Some(t) => crate::journal::Encoded::of_text(&t, &doc),
                    None => crate::journal::Encoded::of(&doc),
                };
                l.add(&doc, encoded).map_err(|e| e.to_string())
            }
        }
    }

    /// `add` of a document of a collection without reductions, encoded and its key packed
    /// (`flow_doc::combine::packed_key`) by the caller, e.g. on another core.
    pub fn add_encoded(
        &mut self,
        packed: Vec<u8>,
        encoded: crate::journal::Encoded,
    ) -> Result<(), String> {
        match &mut self.kind {
            CombiningKind::Last(l) => {
                l.add_packed(packed, encoded);
                Ok(())
            }
            CombiningKind::Reduce(_) => {
                Err("a collection with reductions combines documents, not encodings".into())
            }
        }
    }

    /// `add` of a document `BuiltCollection::prepare` made ready.
    pub fn add_prepared(&mut self, p: Prepared) -> Result<(), String> {
        match p {
            Prepared::Doc(doc, text) => self.add(doc, Some(text)),
            Prepared::Encoded(packed, encoded) => self.add_encoded(packed, encoded),
        }
    }

    pub fn finish(self) -> Result<Vec<crate::journal::Encoded>, String> {
        use crate::journal::Encoded;
        match self.kind {
            CombiningKind::Reduce(mut c) => {
                let mut out = Vec::new();
                let mut drained = c.drain(false).map_err(|e| e.to_string())?.peekable();
                while let Some(d) = drained.next() {
                    let mut doc = d.map_err(|e| e.to_string())?.doc;
                    // A key's last document (of those its reductions kept apart) is its
                    // last change.
                    if !self.ops.is_empty() {
                        let key = key_of(&self.key, &doc);
                        let last = match drained.peek() {
                            Some(Ok(next)) => key_of(&self.key, &next.doc) != key,
                            _ => true,
                        };
                        if last {
                            self.ops.apply(|| key.to_string(), &mut doc);
                        }
                    }
                    out.push(Encoded::of(&doc));
                }
                Ok(out)
            }
            CombiningKind::Last(l) => Ok(l.into_items()),
        }
    }
}

fn encode_value_if(fits: bool, v: &Value) -> Option<String> {
    fits.then(|| crate::journal::partition::encode_value(v))
        .flatten()
}

/// The logical partition fields of a collection: its `partition: true` projections, each
/// named as a journal segment can hold and at a required string, integer or boolean.
fn partition_fields(
    schema: &Schema,
    projections: &BTreeMap<String, Projection>,
) -> Result<Vec<(String, Pointer)>, String> {
    let mut out = Vec::new();
    for (name, p) in projections.iter().filter(|(_, p)| p.partition()) {
        if name.is_empty()
            || name.len() > 50
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        {
            return Err(format!(
                "projection {name}: a partition field's name is 1-50 letters, digits, '_' and '-' (it names journals)"
            ));
        }
        if crate::journal::partition::RESERVED_FIELDS.contains(&name.as_str()) {
            return Err(format!(
                "projection {name}: '{name}' names the directories of fragments; give the partition field another name"
            ));
        }
        let ptr = Pointer::parse(p.pointer()).map_err(|e| format!("projection {name}: {e}"))?;
        match schema.check_key(std::slice::from_ref(&ptr)) {
            Err(flow_doc::SchemaError::KeyNotRequired { reason, .. }) => {
                return Err(format!(
                    "projection {name}: a partition field must be a location every document has, but {reason}"
                ));
            }
            Err(flow_doc::SchemaError::KeyNotScalar { .. }) | Ok(()) => {}
            Err(e) => return Err(format!("projection {name}: {e}")),
        }
        let types = schema.types_at(&ptr);
        if !matches!(
            types
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice(),
            ["string"] | ["integer"] | ["boolean"]
        ) {
            return Err(format!(
                "projection {name}: a partition field is of one type, string, integer or boolean, but {} is {}",
                p.pointer(),
                if types.is_empty() {
                    "unspecified".to_string()
                } else {
                    types.join(" | ")
                }
            ));
        }
        out.push((name.clone(), ptr));
    }
    Ok(out)
}

/// Drop a document's `_meta` but its `op` (`c`, `u`, `d`: the one member a writer keeps), so
/// reductions see it (`if _meta/op is d then delete`) and the append stamps it again.
pub fn keep_only_op(doc: &mut Value) {
    let op = crate::journal::op_of(doc);
    set_op(doc, op);
}

/// Make `doc`'s `_meta` exactly `{op}`, or leave it out for none.
fn set_op(doc: &mut Value, op: Option<&str>) {
    if let Some(m) = doc.as_object_mut() {
        match op {
            Some(op) => {
                m.insert("_meta".to_string(), serde_json::json!({ "op": op }));
            }
            None => {
                m.remove("_meta");
            }
        }
    }
}

/// The last change (`_meta/op`) of each key of one combine, once a deletion was among its
/// documents: what the key's combined document is, whatever the reductions made of `_meta`
/// (a root `merge` keeps a deletion's `op` under a write that has none; `firstWriteWins`
/// keeps the first). A deletion then a write of a key is a write, a write then a deletion a
/// deletion. Before the first deletion nothing is kept: writes alone need no correcting.
#[derive(Default)]
pub struct LastOps {
    last: std::collections::HashMap<String, Option<&'static str>>,
}

impl LastOps {
    /// Note the change `doc` (its `_meta/op`, if any) is to its key, as it is combined.
    pub fn add(&mut self, key: impl FnOnce() -> String, doc: &Value) {
        let op = crate::journal::op_of(doc);
        if op == Some("d") || !self.last.is_empty() {
            self.last.insert(key(), op);
        }
    }

    /// Whether no deletion was seen (nothing to correct).
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    /// Give a key's combined document its key's last change.
    pub fn apply(&self, key: impl FnOnce() -> String, doc: &mut Value) {
        if self.last.is_empty() {
            return;
        }
        if let Some(op) = self.last.get(&key()) {
            set_op(doc, *op);
        }
    }
}

/// How an error message names the JSON type of `v`.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The values at `key` of `doc` as a JSON array (missing locations are null), with numbers in
/// one spelling per value: keys compare by value (`0 == -0 == 0.0`, as the combiner orders
/// them), so their text, which names state and destination rows, must too.
pub fn key_of(key: &[Pointer], doc: &Value) -> Value {
    Value::Array(
        key.iter()
            .map(|p| p.query(doc).map(canonical).unwrap_or(Value::Null))
            .collect(),
    )
}

/// A float that is a whole number in the 64-bit integer range becomes that integer (exactly:
/// such floats convert without loss), so one value has one spelling, as `compare` sees it.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f > I64_MIN && f < 0.0 => Value::from(f as i64),
            // -0.0 is in this range too (it is not below 0.0), and becomes 0.
            Some(f) if f.fract() == 0.0 && (0.0..U64_END).contains(&f) => Value::from(f as u64),
            _ => v.clone(),
        },
        _ => v.clone(),
    }
}

/// -2^63, the least i64, and 2^64, one past the greatest u64: JSON integers outside the 64-bit
/// range are read as floats, which cannot tell neighbouring big integers apart. -2^63 itself is
/// such a float too when it is read from `-9223372036854775809` (it rounds to -2^63), so as a
/// float it counts as outside.
const I64_MIN: f64 = -9_223_372_036_854_775_808.0;
const U64_END: f64 = 18_446_744_073_709_551_616.0;

/// Why a key value cannot be a key: a whole number outside the 64-bit range, where
/// `18446744073709551616` and `18446744073709551617` would read as one float and share a key.
fn key_value_problem(v: &Value) -> Option<String> {
    let Value::Number(n) = v else { return None };
    let f = n.as_f64()?;
    if n.is_i64() || n.is_u64() || f.fract() != 0.0 || (f > I64_MIN && f < U64_END) {
        return None;
    }
    Some(format!(
        "is the number {n}, a whole number outside the 64-bit integer range (-2^63 to 2^64-1): \
         such numbers lose their exact value, so neighbours would share one key; send it as a string"
    ))
}

pub struct BuiltDerivation {
    /// The plugin that runs it, by name (modules are deployed under the collection's name).
    pub plugin: String,
    pub config: Value,
    pub transforms: Vec<BuiltTransform>,
    pub on_error: ErrorPolicy,
    /// For `deadLetter`: the collection of failure records.
    pub dead_letters: Option<String>,
    pub limits: Option<TaskLimits>,
}

pub struct BuiltTransform {
    pub name: String,
    pub source: String,
    pub shuffle: BuiltShuffle,
    pub read_delay_ms: u64,
    /// Which logical partitions of the source it reads (None: all).
    pub partitions: Option<BuiltSelector>,
}

/// How a transform's source documents are keyed for the plugin and its state.
#[derive(Clone, Debug, PartialEq)]
pub enum BuiltShuffle {
    /// By the source collection's key (no `shuffle` written).
    SourceKey,
    Key(Vec<Pointer>),
    /// `shuffle: any`: no key; the whole transform shares one state, under `[]`.
    Any,
}

impl BuiltTransform {
    /// The shuffle key's pointers, given the source collection's key: none for `any`.
    pub fn shuffle_key(&self, source_key: &[Pointer]) -> Vec<Pointer> {
        match &self.shuffle {
            BuiltShuffle::SourceKey => source_key.to_vec(),
            BuiltShuffle::Key(k) => k.clone(),
            BuiltShuffle::Any => Vec::new(),
        }
    }
}

#[derive(Clone)]
pub struct BuiltMaterialization {
    pub name: String,
    pub plugin: String,
    pub config: Value,
    /// The host-owned destination the endpoint names, granted to the plugin as `sql`.
    pub destination: Option<BuiltDestination>,
    pub bindings: Vec<BuiltMaterializationBinding>,
    /// The hosts its plugin may reach over `http` (none: every request is refused), and the
    /// secret headers the host adds.
    pub http: HttpEndpoint,
    pub limits: Option<TaskLimits>,
}

pub struct BuiltCapture {
    pub name: String,
    pub plugin: String,
    pub config: Value,
    /// The host-owned source database the endpoint names, granted to the plugin as `sql`.
    pub source: Option<BuiltDestination>,
    pub bindings: Vec<BuiltCaptureBinding>,
    /// The hosts its plugin may reach over `http` (none: every request is refused), and the
    /// secret headers the host adds.
    pub http: HttpEndpoint,
    /// The longest wait between polls of an idle source.
    pub interval_ms: u64,
    /// What a document its target refuses does.
    pub on_error: ErrorPolicy,
    /// For `deadLetter`: where records of refused documents go.
    pub dead_letters: Option<String>,
    pub limits: Option<TaskLimits>,
}

pub struct BuiltCaptureBinding {
    /// The collection its documents are appended to.
    pub target: String,
    pub resource: Value,
}

/// How long an idle capture waits at most between polls, unless its `interval` says.
pub const CAPTURE_INTERVAL_DEFAULT_MS: u64 = 5_000;

/// A destination an endpoint names: which connector (`connector/`) and its configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct BuiltDestination {
    pub connector: String,
    pub config: Value,
}

impl BuiltDestination {
    /// The connector an endpoint names: its `connector`, or `sqlite` when its config has a
    /// `path` (the form of DESIGN 3: `config: { path: views.db }`); none otherwise.
    fn of(endpoint: &Endpoint) -> Option<Self> {
        let config = &endpoint.wasm.config;
        let connector = match &endpoint.connector {
            Some(c) => c.clone(),
            None if config.get("path").is_some() => "sqlite".to_string(),
            None => return None,
        };
        Some(BuiltDestination {
            connector,
            config: config.clone(),
        })
    }
}

#[derive(Clone)]
pub struct BuiltMaterializationBinding {
    pub source: String,
    /// Which logical partitions of the source it reads (None: all).
    pub partitions: Option<BuiltSelector>,
    pub resource: Value,
    pub delta_updates: bool,
    /// What becomes a column: the key first, then the selected fields (`fields.rs`).
    pub fields: Vec<BuiltField>,
}

/// The catalog as the runtime uses it.
#[derive(Default)]
pub struct Built {
    /// The catalog it was built from, with `module`s replaced by the plugins they were
    /// deployed as: what the host persists and rebuilds at start-up.
    pub spec: Catalog,
    pub collections: BTreeMap<String, Arc<BuiltCollection>>,
    pub materializations: BTreeMap<String, Arc<BuiltMaterialization>>,
    pub captures: BTreeMap<String, Arc<BuiltCapture>>,
    pub tests: BTreeMap<String, Vec<TestStep>>,
}

impl Built {
    pub fn collection(&self, name: &str) -> Result<&Arc<BuiltCollection>, CatalogError> {
        self.collections.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.collections.keys().map(String::as_str).collect();
            CatalogError::UnknownCollection {
                name: name.to_string(),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            }
        })
    }
}

/// One problem of a catalog, located: the file, the thing in it, and what is wrong.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{file}: {at}{}{reason}", if at.is_empty() { "" } else { ": " })]
pub struct Problem {
    /// The catalog file (or `persisted catalog`).
    pub file: String,
    /// What in it, e.g. `collection acme/orders`, `materialization views: binding 0`.
    pub at: String,
    pub reason: String,
}

/// Why a catalog was refused, or a lookup in it failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CatalogError {
    /// Every problem `build` found (one per line), not only the first.
    #[error("{}", .0.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
    #[error("unknown collection '{name}' (known: {known})")]
    UnknownCollection { name: String, known: String },
}

/// Merge `update` over `base`: specs of the same name are replaced, others kept.
pub fn merge(base: &Catalog, update: &Catalog) -> Catalog {
    let mut out = base.clone();
    // Unresolved imports (a bundle not made by `load`) stay, for `build` to refuse.
    out.import.extend(update.import.clone());
    out.collections.extend(update.collections.clone());
    out.materializations.extend(update.materializations.clone());
    out.captures.extend(update.captures.clone());
    out.tests.extend(update.tests.clone());
    out
}

/// Validate `spec` and build it. `source` names the file in errors. Every problem found is
/// reported, not only the first.
pub fn build(source: &str, spec: Catalog) -> Result<Built, CatalogError> {
    let mut errors: Vec<Problem> = Vec::new();
    let problem = |at: String, reason: String| Problem {
        file: source.to_string(),
        at,
        reason,
    };
    let mut collections = BTreeMap::new();

    if !spec.import.is_empty() {
        errors.push(problem(
            "import".into(),
            format!(
                "{} is not resolved: imports are read from files by `flow catalog publish` and `flow catalog test`, which send the catalog with them included",
                spec.import.join(", ")
            ),
        ));
    }

    for (name, def) in &spec.collections {
        let mut err = |e: String| errors.push(problem(format!("collection {name}"), e));
        if let Err(e) = check_name(name) {
            err(e);
            continue;
        }
        let (write_raw, read_raw) = match (&def.schema, &def.write_schema, &def.read_schema) {
            (Some(s), None, None) => (("schema", s), None),
            (None, Some(w), Some(r)) => (("writeSchema", w), Some(("readSchema", r))),
            _ => {
                err(
                    "a collection has either `schema`, or both `writeSchema` and `readSchema`"
                        .into(),
                );
                continue;
            }
        };
        let compile = |(field, raw): (&str, &Value)| {
            Schema::compile(raw)
                .map(Arc::new)
                .map_err(|e| format!("{field}: {e}"))
        };
        let schemas = compile(write_raw).and_then(|w| match read_raw {
            None => Ok((w.clone(), w)),
            Some(r) => Ok((w, compile(r)?)),
        });
        let (schema, read_schema) = match schemas {
            Ok(s) => s,
            Err(e) => {
                err(e);
                continue;
            }
        };
        let key = match parse_pointers(&def.key) {
            Ok(k) => k,
            Err(e) => {
                err(format!("key: {e}"));
                continue;
            }
        };
        // The key must be a required scalar by both schemas.
        let checked = schema
            .check_key(&key)
            .and_then(|()| read_schema.check_key(&key));
        if let Err(e) = checked {
            match read_raw {
                None => err(format!("key: {e}")),
                Some(_) => err(format!("key (by writeSchema and by readSchema): {e}")),
            }
            continue;
        }
        let fragments = match def
            .journals
            .as_ref()
            .map(|j| j.fragments.settings())
            .transpose()
        {
            Ok(f) => f.unwrap_or_default(),
            Err(e) => {
                err(e);
                continue;
            }
        };
        let partitions = match partition_fields(&schema, &def.projections) {
            Ok(p) => p,
            Err(e) => {
                err(e);
                continue;
            }
        };
        let derive = match &def.derive {
            None => None,
            Some(d) => match build_derivation(name, d) {
                Ok(d) => Some(d),
                Err(e) => {
                    err(e);
                    continue;
                }
            },
        };
        collections.insert(
            name.clone(),
            Arc::new(BuiltCollection {
                name: name.clone(),
                schema,
                read_schema,
                key,
                derive,
                fragments,
                partitions,
            }),
        );
    }

    // Cross-references, once every collection is known.
    // (derivation, transform index, its partition selector)
    let mut selectors: Vec<(String, usize, BuiltSelector)> = Vec::new();
    for c in collections.values() {
        let Some(d) = &c.derive else { continue };
        let mut arity = None;
        // (transform, types per shuffle key component) of the first transform, to compare.
        let mut first_types: Option<(String, Vec<Vec<String>>)> = None;
        for (i, t) in d.transforms.iter().enumerate() {
            let Some(src) = collections.get(&t.source) else {
                errors.push(problem(
                    format!("collection {}: transform {}", c.name, t.name),
                    format!("unknown source collection '{}'", t.source),
                ));
                continue;
            };
            let written = spec
                .collections
                .get(&c.name)
                .and_then(|def| def.derive.as_ref())
                .and_then(|d| d.transforms.get(i))
                .and_then(|t| t.source.partitions());
            match src.selector(written) {
                Ok(Some(s)) => selectors.push((c.name.clone(), i, s)),
                Ok(None) => {}
                Err(e) => errors.push(problem(
                    format!("collection {}: transform {}", c.name, t.name),
                    e,
                )),
            }
            if t.shuffle == BuiltShuffle::Any {
                continue; // One state for the transform: no key to agree on.
            }
            let key = t.shuffle_key(&src.key);
            let n = key.len();
            match arity {
                None => arity = Some(n),
                Some(a) if a != n => errors.push(problem(
                    format!("collection {}: transform {}", c.name, t.name),
                    format!("shuffle key has {n} components, but other transforms have {a}"),
                )),
                _ => {}
            }
            let types: Vec<Vec<String>> = key.iter().map(|p| src.read_schema.types_at(p)).collect();
            match &first_types {
                None => first_types = Some((t.name.clone(), types)),
                Some((other, theirs)) => {
                    for (n, (mine, theirs)) in types.iter().zip(theirs).enumerate() {
                        if !mine.is_empty() && !theirs.is_empty() && mine != theirs {
                            errors.push(problem(
                                format!("collection {}: transform {}", c.name, t.name),
                                format!(
                                    "shuffle key component {} has type {}, but transform {other}'s has type {}",
                                    n + 1,
                                    mine.join(" | "),
                                    theirs.join(" | ")
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }

    for (name, i, selector) in selectors {
        // Nothing else holds the collection yet.
        if let Some(d) = collections
            .get_mut(&name)
            .and_then(Arc::get_mut)
            .and_then(|c| c.derive.as_mut())
        {
            d.transforms[i].partitions = Some(selector);
        }
    }

    // Dead-letter collections must exist (and may not be the derivation itself).
    for c in collections.values() {
        if let Some(dl) = c.derive.as_ref().and_then(|d| d.dead_letters.as_ref())
            && (!collections.contains_key(dl) || dl == &c.name)
        {
            errors.push(problem(
                format!("collection {}: onError", c.name),
                format!("dead-letter collection '{dl}' must be another collection of the catalog"),
            ));
        }
    }

    // Projections name locations of their collection's documents.
    for (name, c) in &collections {
        if let Some(def) = spec.collections.get(name)
            && let Err(e) = fields::resolve(c, &def.projections, None)
        {
            errors.push(problem(format!("collection {name}"), e));
        }
    }

    let mut materializations = BTreeMap::new();
    for (name, def) in &spec.materializations {
        let mut err = |e: String| errors.push(problem(format!("materialization {name}"), e));
        if let Err(e) = check_name(name) {
            err(e);
            continue;
        }
        let plugin = match endpoint_plugin(name, &def.endpoint.wasm) {
            Ok(p) => p,
            Err(e) => {
                err(e);
                continue;
            }
        };
        if let Err(e) = check_limits(&def.limits) {
            err(e);
        }
        let mut bindings = Vec::new();
        for (i, b) in def.bindings.iter().enumerate() {
            let mut partitions = None;
            let fields = match collections.get(b.source.name()) {
                None => {
                    err(format!(
                        "binding {i}: unknown source collection '{}'",
                        b.source.name()
                    ));
                    Vec::new()
                }
                Some(c) => {
                    partitions = c.selector(b.source.partitions()).unwrap_or_else(|e| {
                        err(format!("binding {i} ({}): {e}", b.source.name()));
                        None
                    });
                    let projections = spec
                        .collections
                        .get(b.source.name())
                        .map(|d| d.projections.clone())
                        .unwrap_or_default();
                    fields::resolve(c, &projections, b.fields.as_ref()).unwrap_or_else(|e| {
                        err(format!("binding {i} ({}): {e}", b.source.name()));
                        Vec::new()
                    })
                }
            };
            bindings.push(BuiltMaterializationBinding {
                source: b.source.name().to_string(),
                partitions,
                resource: b.resource.clone(),
                delta_updates: b.delta_updates,
                fields,
            });
        }
        if bindings.is_empty() {
            err("it has no bindings".into());
        }
        materializations.insert(
            name.clone(),
            Arc::new(BuiltMaterialization {
                name: name.clone(),
                plugin,
                config: def.endpoint.wasm.config.clone(),
                destination: BuiltDestination::of(&def.endpoint),
                bindings,
                http: def.endpoint.http.clone().unwrap_or_default(),
                limits: def.limits.clone(),
            }),
        );
    }

    let mut captures = BTreeMap::new();
    for (name, def) in &spec.captures {
        let mut err = |e: String| errors.push(problem(format!("capture {name}"), e));
        if let Err(e) = check_name(name) {
            err(e);
            continue;
        }
        if collections.contains_key(name) || spec.materializations.contains_key(name) {
            err("a collection or a materialization has this name too: captures, collections and materializations need names of their own".into());
        }
        let plugin = match endpoint_plugin(name, &def.endpoint.wasm) {
            Ok(p) => p,
            Err(e) => {
                err(e);
                continue;
            }
        };
        if let Err(e) = check_limits(&def.limits) {
            err(e);
        }
        let (on_error, dead_letters) = match error_policy(&def.on_error) {
            Ok(p) => p,
            Err(e) => {
                err(e);
                continue;
            }
        };
        if let Some(dl) = &dead_letters {
            match collections.get(dl) {
                None => err(format!("onError: unknown dead-letter collection '{dl}'")),
                Some(c) if c.derive.is_some() => err(format!(
                    "onError: dead-letter collection '{dl}' is a derivation: only its derivation writes it"
                )),
                Some(_) => {}
            }
        }
        let interval_ms = match &def.interval {
            None => CAPTURE_INTERVAL_DEFAULT_MS,
            Some(i) => match humantime::parse_duration(i) {
                Ok(d) if !d.is_zero() => d.as_millis() as u64,
                Ok(_) => {
                    err("interval: must be longer than zero".into());
                    continue;
                }
                Err(e) => {
                    err(format!(
                        "interval: '{i}' is not a duration like 30s or 5m: {e}"
                    ));
                    continue;
                }
            },
        };
        let mut bindings = Vec::new();
        for (i, b) in def.bindings.iter().enumerate() {
            let at = format!("capture {name}: binding {i}");
            match collections.get(&b.target) {
                None => errors.push(problem(
                    at,
                    format!("unknown target collection '{}'", b.target),
                )),
                Some(c) if c.derive.is_some() => errors.push(problem(
                    at,
                    format!(
                        "target collection '{}' is a derivation: only its derivation writes it",
                        b.target
                    ),
                )),
                Some(_) => {}
            }
            bindings.push(BuiltCaptureBinding {
                target: b.target.clone(),
                resource: b.resource.clone(),
            });
        }
        if bindings.is_empty() {
            errors.push(problem(
                format!("capture {name}"),
                "it has no bindings".into(),
            ));
        }
        captures.insert(
            name.clone(),
            Arc::new(BuiltCapture {
                name: name.clone(),
                plugin,
                config: def.endpoint.wasm.config.clone(),
                // A source database only by `connector` (a `path` in the config is the plugin's).
                source: def.endpoint.connector.as_ref().map(|c| BuiltDestination {
                    connector: c.clone(),
                    config: def.endpoint.wasm.config.clone(),
                }),
                bindings,
                http: def.endpoint.http.clone().unwrap_or_default(),
                interval_ms,
                on_error,
                dead_letters,
                limits: def.limits.clone(),
            }),
        );
    }

    for (name, steps) in &spec.tests {
        for (i, step) in steps.iter().enumerate() {
            let at = format!("test {name}: step {}", i + 1);
            let why = match step {
                TestStep::Ingest(d) | TestStep::Verify(d) => {
                    match collections.get(d.collection.name()) {
                        None => Some(format!("unknown collection '{}'", d.collection.name())),
                        Some(_) if matches!(step, TestStep::Ingest(_))
                            && d.collection.partitions().is_some() =>
                        {
                            Some("an ingest writes each document to its own partition: `partitions` selects what a `verify` reads".to_string())
                        }
                        Some(c) => c.selector(d.collection.partitions()).err(),
                    }
                }
                TestStep::Capture(c) => check_test_capture(c, captures.get(&c.name)).err(),
                TestStep::Materialize(m) => {
                    check_test_materialize(m, materializations.get(&m.name)).err()
                }
            };
            if let Some(why) = why {
                errors.push(problem(at, why));
            }
        }
    }

    if !errors.is_empty() {
        return Err(CatalogError::Invalid(errors));
    }
    let tests = spec.tests.clone();
    Ok(Built {
        spec,
        collections,
        materializations,
        captures,
        tests,
    })
}

/// A `capture` test step runs a capture of the catalog without a database source, with
/// responses of real statuses. (Whether its responses answer requests the capture may make,
/// each at most once, publish checks by building them: `connector::http::Fixture::new`.)
fn check_test_capture(
    step: &TestCapture,
    capture: Option<&Arc<BuiltCapture>>,
) -> Result<(), String> {
    let Some(capture) = capture else {
        return Err(format!("unknown capture '{}'", step.name));
    };
    if let Some(source) = &capture.source {
        return Err(format!(
            "capture '{}' reads a database (endpoint.connector: {}): a test step can run only captures whose source is HTTP, answered by the step's `responses`",
            step.name, source.connector
        ));
    }
    for r in &step.responses {
        if !(100..=599).contains(&r.status) {
            return Err(format!(
                "response for {}: status {} is not 100-599",
                r.url, r.status
            ));
        }
    }
    Ok(())
}

/// A `materialize` test step runs a materialization of the catalog into SQLite (which a test
/// replaces with a database of its own), and reads either a table or a query.
fn check_test_materialize(
    step: &TestMaterialize,
    materialization: Option<&Arc<BuiltMaterialization>>,
) -> Result<(), String> {
    let Some(m) = materialization else {
        return Err(format!("unknown materialization '{}'", step.name));
    };
    match &m.destination {
        Some(d) if d.connector == "sqlite" => {}
        Some(d) => {
            return Err(format!(
                "materialization '{}' writes to {} (endpoint.connector): a test step runs only materializations into SQLite (`config.path`), each test into a database of its own",
                step.name, d.connector
            ));
        }
        None => {
            return Err(format!(
                "materialization '{}' names no database (`config.path` for SQLite): a test step runs only materializations into SQLite, each test into a database of its own",
                step.name
            ));
        }
    }
    match (&step.table, &step.query) {
        (Some(_), None) | (None, Some(_)) => Ok(()),
        _ => Err(
            "a materialize step names exactly one of `table` or `query`: the rows it compares"
                .to_string(),
        ),
    }
}

fn build_derivation(name: &str, d: &DeriveDef) -> Result<BuiltDerivation, String> {
    let plugin = endpoint_plugin(name, &d.using.wasm)?;
    if d.transforms.is_empty() {
        return Err("derive: it has no transforms".into());
    }
    let mut transforms = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for t in &d.transforms {
        if !names.insert(t.name.as_str()) {
            return Err(format!("derive: transform name '{}' is used twice", t.name));
        }
        let shuffle = match &t.shuffle {
            // No pointers: the source's key, as before `shuffle: any` (catalogs published
            // then still load).
            Some(Shuffle::Key(s)) if s.key.is_empty() => BuiltShuffle::SourceKey,
            Some(Shuffle::Key(s)) => BuiltShuffle::Key(
                parse_pointers(&s.key)
                    .map_err(|e| format!("transform {}: shuffle key: {e}", t.name))?,
            ),
            Some(Shuffle::Any(word)) if word == "any" => BuiltShuffle::Any,
            Some(Shuffle::Any(word)) => {
                return Err(format!(
                    "transform {}: shuffle {word:?} is not a shuffle: write `any` or `{{key: [/pointer, ...]}}`",
                    t.name
                ));
            }
            None => BuiltShuffle::SourceKey,
        };
        let read_delay_ms = match &t.read_delay {
            None => 0,
            Some(d) => humantime::parse_duration(d)
                .map_err(|e| {
                    format!(
                        "transform {}: readDelay {d:?}: {e} (write e.g. \"30s\" or \"2h\")",
                        t.name
                    )
                })?
                .as_millis() as u64,
        };
        transforms.push(BuiltTransform {
            name: t.name.clone(),
            source: t.source.name().to_string(),
            shuffle,
            read_delay_ms,
            // Built once every collection is known (`build`).
            partitions: None,
        });
    }
    let (policy, dead_letters) = error_policy(&d.on_error)?;
    check_limits(&d.limits)?;
    Ok(BuiltDerivation {
        plugin,
        config: d.using.wasm.config.clone(),
        transforms,
        on_error: policy,
        dead_letters,
        limits: d.limits.clone(),
    })
}

/// A task's `onError`: its policy, and the collection of its dead letters (for
/// `deadLetter`, which needs one; the others take none).
fn error_policy(on_error: &Option<OnError>) -> Result<(ErrorPolicy, Option<String>), String> {
    let policy = on_error.as_ref().map(|o| o.policy).unwrap_or_default();
    let dead_letters = on_error.as_ref().and_then(|o| o.collection.clone());
    match (policy, &dead_letters) {
        (ErrorPolicy::DeadLetter, None) => {
            Err("onError: policy deadLetter needs a `collection` for the records".into())
        }
        (ErrorPolicy::Fail | ErrorPolicy::Skip, Some(c)) => Err(format!(
            "onError: `collection: {c}` is only for policy deadLetter"
        )),
        _ => Ok((policy, dead_letters)),
    }
}

fn check_limits(limits: &Option<TaskLimits>) -> Result<(), String> {
    match limits {
        Some(l) => l
            .apply(&crate::limits::Limits::default())
            .check()
            .map_err(|e| format!("limits: {e}")),
        None => Ok(()),
    }
}

/// The plugin name a `wasm` endpoint runs: its `plugin`, or for a `module` the task's name.
fn endpoint_plugin(task: &str, wasm: &WasmEndpoint) -> Result<String, String> {
    match (&wasm.module, &wasm.plugin) {
        (Some(_), Some(_)) => Err("wasm: give either `module` or `plugin`, not both".into()),
        (None, None) => {
            Err("wasm: give `module` (a component file) or `plugin` (a deployed plugin)".into())
        }
        (Some(_), None) => Ok(task.to_string()),
        (None, Some(p)) => Ok(p.clone()),
    }
}

fn parse_pointers(ptrs: &[String]) -> Result<Vec<Pointer>, String> {
    ptrs.iter()
        .map(|p| Pointer::parse(p).map_err(|e| e.to_string()))
        .collect()
}

#[cfg(test)]
mod test {
    use super::*;

    fn build_yaml(yaml: &str) -> Result<Built, String> {
        let spec: Catalog = serde_yaml::from_str(yaml).map_err(|e| format!("parse: {e}"))?;
        build("test.yaml", spec).map_err(|e| e.to_string())
    }

    const ORDERS: &str = r#"
collections:
  acme/orders:
    schema:
      type: object
      properties: { id: { type: integer }, customer: { type: string }, note: { type: string }, tags: { type: array } }
      required: [id, customer, tags]
    key: [/id]
"#;

    #[test]
    fn valid_catalog_builds() {
        let built = build_yaml(ORDERS).unwrap();
        let c = built.collection("acme/orders").unwrap();
        assert_eq!(
            c.key_of(&serde_json::json!({"id": 3})),
            serde_json::json!([3])
        );
        assert!(
            built
                .collection("nope")
                .err()
                .unwrap()
                .to_string()
                .contains("unknown collection 'nope' (known: acme/orders)")
        );
    }

    #[test]
    fn bad_catalog_cases() {
        let cases: &[(&str, &str)] = &[
            (
                &ORDERS.replace("key: [/id]", "key: [/note]"),
                "key /note must point at a required location",
            ),
            (
                &ORDERS.replace("key: [/id]", "key: [/tags]"),
                "must point at a scalar",
            ),
            (
                &ORDERS.replace("key: [/id]", "key: [id]"),
                "must be empty or begin with '/'",
            ),
            (
                &ORDERS.replace("key: [/id]", "key: [/id]\n    colour: blue"),
                "unknown field `colour`",
            ),
            (
                &ORDERS.replace("acme/orders:", "acme//orders:"),
                "invalid name 'acme//orders'",
            ),
            (
                &format!(
                    "{ORDERS}  acme/d:\n    schema: {{type: object, properties: {{id: {{type: integer}}}}, required: [id]}}\n    key: [/id]\n    derive:\n      using: {{ wasm: {{ plugin: p }} }}\n      transforms: [{{ name: t, source: acme/missing }}]\n"
                ),
                "transform t: unknown source collection 'acme/missing'",
            ),
            (
                &format!(
                    "{ORDERS}materializations:\n  acme/v:\n    endpoint: {{ wasm: {{ plugin: p, module: m.wasm }} }}\n    bindings: [{{ source: acme/orders }}]\n"
                ),
                "either `module` or `plugin`, not both",
            ),
            (
                &format!(
                    "{ORDERS}  acme/d:\n    schema: {{type: object, properties: {{id: {{type: integer}}}}, required: [id]}}\n    key: [/id]\n    derive:\n      using: {{ wasm: {{ plugin: p }} }}\n      transforms: [{{ name: byId, source: acme/orders }}, {{ name: byCustomer, source: acme/orders, shuffle: {{ key: [/customer] }} }}]\n"
                ),
                "transform byCustomer: shuffle key component 1 has type string, but transform byId's has type integer",
            ),
            (
                &format!(
                    "{ORDERS}  acme/d:\n    schema: {{type: object, properties: {{id: {{type: integer}}}}, required: [id]}}\n    key: [/id]\n    derive:\n      using: {{ wasm: {{ plugin: p }} }}\n      transforms: [{{ name: t, source: acme/orders, shuffle: anything }}]\n"
                ),
                "transform t: shuffle \"anything\" is not a shuffle: write `any` or `{key: [/pointer, ...]}`",
            ),
            (
                &format!(
                    "{ORDERS}  acme/d:\n    schema: {{type: object, properties: {{id: {{type: integer}}}}, required: [id]}}\n    key: [/id]\n    derive:\n      using: {{ wasm: {{ plugin: p }} }}\n      transforms: [{{ name: t, source: acme/orders, shuffle: {{ key: /id }} }}]\n"
                ),
                "invalid type: string \"/id\", expected a sequence",
            ),
            (
                &format!(
                    "{ORDERS}  acme/d:\n    schema: {{type: object, properties: {{id: {{type: integer}}}}, required: [id]}}\n    key: [/id]\n    derive:\n      using: {{ wasm: {{ plugin: p }} }}\n      transforms: [{{ name: t, source: acme/orders }}]\n      limits: {{ callDeadlineMs: 1 }}\n"
                ),
                "limits: callDeadlineMs must be at least one epoch tick",
            ),
        ];
        for (yaml, expect) in cases {
            let err = build_yaml(yaml).err().unwrap_or_default();
            assert!(err.contains(expect), "expected {expect:?} in {err:?}");
        }
    }

    #[test]
    fn settings_from_the_catalog() {
        let def: super::FragmentsDef = serde_yaml::from_str(
            "{length: 0.5, flushInterval: 90s, compressionCodec: ZSTANDARD, retention: 720h}",
        )
        .unwrap();
        let s = def.settings().unwrap();
        assert_eq!(s.length, 500_000);
        assert_eq!(s.flush_interval, std::time::Duration::from_secs(90));
        assert_eq!(s.codec, crate::journal::fragment::Codec::Zstd);
        assert_eq!(
            s.retention,
            Some(std::time::Duration::from_secs(720 * 3600))
        );
        for (yaml, why) in [
            ("{length: 0}", "between 0 and"),
            ("{flushInterval: soon}", "not a duration"),
            ("{retention: 0s}", "longer than zero"),
        ] {
            let def: super::FragmentsDef = serde_yaml::from_str(yaml).unwrap();
            let e = def.settings().unwrap_err();
            assert!(e.contains(why), "{yaml}: {e}");
        }
        assert!(serde_yaml::from_str::<super::FragmentsDef>("{compressionCodec: lz4}").is_err());
    }

    #[test]
    fn keys_compare_by_value() {
        let key = vec![Pointer::parse("/k").unwrap()];
        let text = |doc: Value| key_of(&key, &doc).to_string();
        use serde_json::json;
        assert_eq!(text(json!({"k": -0.0})), "[0]");
        assert_eq!(text(json!({"k": 0.0})), text(json!({"k": 0})));
        assert_eq!(text(json!({"k": 20.0})), "[20]");
        assert_eq!(text(json!({"k": 2.5})), "[2.5]");
        assert_eq!(text(json!({"k": u64::MAX})), format!("[{}]", u64::MAX));
        assert_eq!(text(json!({"k": "0"})), "[\"0\"]");
        assert_eq!(text(json!({"k": 1e18})), "[1000000000000000000]");
        // Two values share a key text exactly when the combiner finds them equal.
        let values: Vec<Value> = [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1",
            "1.0",
            "1.5",
            "-1",
            "-1.0",
            "9007199254740992",
            "9007199254740993",
            "9007199254740992.0",
            "1e18",
            "1000000000000000000",
            "1000000000000000001",
            "18446744073709551615",
            "-9223372036854775808",
            "1e300",
        ]
        .iter()
        .map(|t| json!({"k": serde_json::from_str::<Value>(t).unwrap()}))
        .collect();
        for a in &values {
            for b in &values {
                let same = flow_doc::compare_by_key(&key, a, b).is_eq();
                assert_eq!(same, text(a.clone()) == text(b.clone()), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn big_integer_keys_are_refused() {
        let parse = |t: &str| serde_json::from_str::<Value>(t).unwrap();
        // Beyond 64 bits JSON integers read as floats: these two would be one key.
        assert_eq!(parse("18446744073709551616"), parse("18446744073709551617"));
        for t in [
            "18446744073709551616",
            "-9223372036854775809",
            "1e20",
            "-1e300",
            "1.5e300",
        ] {
            let why = key_value_problem(&parse(t)).expect(t);
            assert!(why.contains("outside the 64-bit integer range"), "{why}");
        }
        for t in [
            "18446744073709551615",
            "-9223372036854775808",
            "2.5",
            "\"big\"",
        ] {
            assert_eq!(key_value_problem(&parse(t)), None, "{t}");
        }
    }

    #[test]
    fn endpoints_name_their_connector() {
        let endpoint = |yaml: &str| -> Endpoint { serde_yaml::from_str(yaml).unwrap() };
        let named = BuiltDestination::of(&endpoint(
            "{connector: sqlite, wasm: {plugin: m, config: {path: /tmp/v.db}}}",
        ));
        assert_eq!(named.unwrap().connector, "sqlite");
        // DESIGN's form: a `path` and no `connector` is a SQLite database.
        let by_path = BuiltDestination::of(&endpoint("{wasm: {plugin: m, config: {path: v.db}}}"));
        assert_eq!(
            by_path,
            Some(BuiltDestination {
                connector: "sqlite".into(),
                config: serde_json::json!({"path": "v.db"}),
            })
        );
        assert_eq!(
            BuiltDestination::of(&endpoint("{wasm: {plugin: m, config: {}}}")),
            None
        );
        let other = BuiltDestination::of(&endpoint("{connector: redis, wasm: {plugin: m}}"));
        assert_eq!(other.unwrap().connector, "redis");
    }
}
