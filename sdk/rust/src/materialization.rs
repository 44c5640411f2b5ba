//! The materialization side of the SDK.

use crate::Error;
use crate::derivation_bindings::flow::plugin::types::PluginError as DerivePluginError;
use crate::materialization_bindings::exports::flow::plugin::sink as wit;
use crate::materialization_bindings::flow::plugin::types::PluginError;
use serde_json::Value;
use std::any::Any;
use std::cell::RefCell;

/// A materialization: keeps a destination up to date. Per transaction the host calls
/// [`Materialization::load`] (standard updates), [`Materialization::store`], then
/// [`Materialization::commit`], all inside one destination transaction that the host commits
/// after `commit` returns `Ok`.
pub trait Materialization: Sized + 'static {
    /// Create or update destination resources; return the instance and the checkpoint last
    /// written by `commit`, if any.
    fn open(spec: MaterializationSpec) -> Result<(Self, Option<String>), Error>;
    /// The stored documents of those `keys` (JSON arrays) that exist.
    fn load(&mut self, binding: usize, keys: Vec<Value>) -> Result<Vec<Loaded>, Error>;
    /// Write documents of one binding.
    fn write(&mut self, binding: usize, docs: Vec<Stored>) -> Result<(), Error>;
    /// Record `checkpoint` in the destination, in the same transaction as the documents.
    fn commit(&mut self, checkpoint: &str) -> Result<(), Error>;
}

#[derive(Debug, Clone)]
pub struct MaterializationSpec {
    pub name: String,
    pub config: Value,
    pub bindings: Vec<Binding>,
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub collection: String,
    pub schema: Value,
    /// The collection key, as JSON pointers.
    pub key: Vec<String>,
    pub resource: Value,
    pub delta_updates: bool,
}

/// A document returned by `load`.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub key: Value,
    pub doc: Value,
}

/// A document to store.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: Value,
    /// The document: its text as the host sent it, parsed on first use.
    pub doc: Doc,
    /// Whether `load` returned a document for this key in this transaction.
    pub exists: bool,
    /// The reduction deleted the document: remove it.
    pub delete: bool,
}

/// A document to store, as the JSON text the host sent: [`Doc::text`] is what a whole-document
/// column stores without serializing anything again; the parsed `Value` is built on first use
/// (`Deref`, so `doc["field"]` and `&*doc` work), and a plugin that reads only some fields can
/// read them from the text without building it.
///
/// The host sends only valid JSON (every stored document was validated); text that is not JSON
/// traps the plugin on first use, which the host reports and recovers from.
#[derive(Clone)]
pub struct Doc {
    text: String,
    value: std::cell::OnceCell<Value>,
}

impl Doc {
    /// A document of this JSON text.
    pub fn new(text: String) -> Doc {
        Doc {
            text,
            value: std::cell::OnceCell::new(),
        }
    }

    /// The JSON text, exactly as the host sent it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The JSON text, owned.
    pub fn into_text(self) -> String {
        self.text
    }

    /// The parsed value, owned.
    pub fn into_value(self) -> Value {
        let text = self.text;
        self.value.into_inner().unwrap_or_else(|| parse_doc(&text))
    }
}

fn parse_doc(text: &str) -> Value {
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("the host sent text that is not JSON: {e}"))
}

impl std::ops::Deref for Doc {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.value.get_or_init(|| parse_doc(&self.text))
    }
}

impl std::fmt::Debug for Doc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq<Value> for Doc {
    fn eq(&self, other: &Value) -> bool {
        **self == *other
    }
}

/// The host-owned SQL database of this task.
pub mod sql {
    use crate::materialization_bindings::flow::plugin::sql as wit;
    pub use wit::{Rows, Value};

    /// Run one statement; returns rows changed.
    pub fn execute(statement: &str, params: &[Value]) -> Result<u64, String> {
        wit::execute(statement, params)
    }

    /// Run one statement per parameter row, in one host call.
    pub fn execute_many(statement: &str, rows: &[Vec<Value>]) -> Result<u64, String> {
        wit::execute_many(statement, rows)
    }

    /// Run a query and return its rows.
    pub fn query(statement: &str, params: &[Value]) -> Result<Rows, String> {
        wit::query(statement, params)
    }

    /// Queue one statement whose outcome is not needed (no rows, no count): the host may run
    /// it while the plugin goes on; if it fails, the next call that waits (`execute`,
    /// `execute_many`, `query`) returns the error and nothing of the transaction commits.
    /// Needs a host of WIT 0.1.3 or later.
    pub fn send(statement: &str, params: &[Value]) -> Result<(), String> {
        wit::send(statement, params)
    }
}

/// The fields of each binding as the catalog selects them (the key, top-level properties,
/// projections, `fields.include`/`exclude`).
pub mod fields {
    use crate::materialization_bindings::flow::plugin::fields as wit;
    pub use wit::Field;

    /// The fields of binding `binding`, the key's first.
    pub fn selected(binding: usize) -> Vec<Field> {
        wit::selected(binding as u32)
    }
}

/// The key-value store the host granted (Redis, `connector: redis`): reads see the store as
/// committed; writes are queued and applied in one MULTI/EXEC when the host commits.
pub mod kv {
    use crate::materialization_bindings::flow::plugin::kv as wit;
    pub use wit::{Entry, HashEntry};

    /// String values of `keys`, in order (none: no such key, or not a string).
    pub fn get(keys: &[String]) -> Result<Vec<Option<String>>, String> {
        wit::get(keys)
    }
    /// Field `field` of the hashes at `keys`, in order.
    pub fn hget(keys: &[String], field: &str) -> Result<Vec<Option<String>>, String> {
        wit::hget(keys, field)
    }
    /// All fields of the hash at `key`.
    pub fn hgetall(key: &str) -> Result<Vec<(String, String)>, String> {
        wit::hgetall(key)
    }
    /// Queue string values, expiring after `ttl_ms` when given.
    pub fn set(entries: &[Entry], ttl_ms: Option<u64>) -> Result<(), String> {
        wit::set(entries, ttl_ms)
    }
    /// Queue hashes (each replaces what its key held), expiring after `ttl_ms` when given.
    pub fn hset(entries: &[HashEntry], ttl_ms: Option<u64>) -> Result<(), String> {
        wit::hset(entries, ttl_ms)
    }
    /// Queue deletes.
    pub fn del(keys: &[String]) -> Result<(), String> {
        wit::del(keys)
    }
    /// Commit only if `key` then holds `value` (None: does not exist).
    pub fn expect(key: &str, value: Option<&str>) -> Result<(), String> {
        wit::expect(key, value)
    }
}

thread_local! {
    static RUNNING: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

fn to_wit(e: Error) -> PluginError {
    PluginError {
        message: e.message,
        document: e.document,
    }
}

// Keep the derivation error type referenced so both worlds' shared types stay in sync.
const _: fn(DerivePluginError) = |_| {};

fn parse(s: &str) -> Result<Value, PluginError> {
    serde_json::from_str(s).map_err(|e| to_wit(e.into()))
}

#[doc(hidden)]
pub fn open<T: Materialization>(
    spec: wit::MaterializationSpec,
) -> Result<Option<String>, PluginError> {
    let mut bindings = Vec::new();
    for b in spec.bindings {
        bindings.push(Binding {
            collection: b.collection,
            schema: parse(&b.schema)?,
            key: b.key,
            resource: parse(&b.resource)?,
            delta_updates: b.delta_updates,
        });
    }
    let config = parse(&spec.config)?;
    let (instance, checkpoint) = T::open(MaterializationSpec {
        name: spec.name,
        config,
        bindings,
    })
    .map_err(to_wit)?;
    RUNNING.with(|r| *r.borrow_mut() = Some(Box::new(instance)));
    Ok(checkpoint)
}

fn with_running<T: Materialization, R>(
    f: impl FnOnce(&mut T) -> Result<R, Error>,
) -> Result<R, PluginError> {
    RUNNING.with(|r| {
        let mut r = r.borrow_mut();
        let instance = r
            .as_mut()
            .ok_or_else(|| PluginError {
                message: "called before open".into(),
                document: None,
            })?
            .downcast_mut::<T>()
            .expect("one materialization type per component");
        f(instance).map_err(to_wit)
    })
}

#[doc(hidden)]
pub fn load<T: Materialization>(
    binding: u32,
    keys: Vec<String>,
) -> Result<Vec<wit::Loaded>, PluginError> {
    let keys: Vec<Value> = keys.iter().map(|k| parse(k)).collect::<Result<_, _>>()?;
    with_running::<T, _>(|m| {
        let loaded = m.load(binding as usize, keys)?;
        Ok(loaded
            .into_iter()
            .map(|l| wit::Loaded {
                key: crate::json_text(&l.key),
                document: crate::json_text(&l.doc),
            })
            .collect())
    })
}

#[doc(hidden)]
pub fn write<T: Materialization>(binding: u32, docs: Vec<wit::Stored>) -> Result<(), PluginError> {
    let mut stored = Vec::with_capacity(docs.len());
    for d in docs {
        stored.push(Stored {
            key: parse(&d.key)?,
            doc: Doc::new(d.document),
            exists: d.exists,
            delete: d.delete,
        });
    }
    with_running::<T, _>(|m| m.write(binding as usize, stored))
}

#[doc(hidden)]
pub fn commit<T: Materialization>(checkpoint: String) -> Result<(), PluginError> {
    with_running::<T, _>(|m| m.commit(&checkpoint))
}

/// Export `$t` (a [`Materialization`]) as this component's materialization.
#[macro_export]
macro_rules! export_materialization {
    ($t:ty) => {
        #[doc(hidden)]
        pub struct __FlowMaterializationExport;

        impl $crate::materialization_bindings::exports::flow::plugin::sink::Guest for __FlowMaterializationExport {
            fn open(
                spec: $crate::materialization_bindings::exports::flow::plugin::sink::MaterializationSpec,
            ) -> Result<Option<String>, $crate::materialization_bindings::flow::plugin::types::PluginError> {
                $crate::__materialization::open::<$t>(spec)
            }
            fn load(
                binding: u32,
                keys: Vec<String>,
            ) -> Result<
                Vec<$crate::materialization_bindings::exports::flow::plugin::sink::Loaded>,
                $crate::materialization_bindings::flow::plugin::types::PluginError,
            > {
                $crate::__materialization::load::<$t>(binding, keys)
            }
            fn write(
                binding: u32,
                documents: Vec<$crate::materialization_bindings::exports::flow::plugin::sink::Stored>,
            ) -> Result<(), $crate::materialization_bindings::flow::plugin::types::PluginError> {
                $crate::__materialization::write::<$t>(binding, documents)
            }
            fn commit(checkpoint: String) -> Result<(), $crate::materialization_bindings::flow::plugin::types::PluginError> {
                $crate::__materialization::commit::<$t>(checkpoint)
            }
        }

        $crate::materialization_bindings::__export_materialization_world!(__FlowMaterializationExport with_types_in $crate::materialization_bindings);
    };
}
