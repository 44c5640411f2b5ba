//! The derivation side of the SDK.

use crate::Error;
use crate::derivation_bindings::exports::flow::plugin::derive as wit;
use crate::derivation_bindings::flow::plugin::types::PluginError;
use serde_json::Value;
use std::any::Any;
use std::cell::RefCell;

/// A derivation: the host calls [`Derivation::transform`] for each source document, in order
/// per shuffle key, and [`Derivation::flush`] at the end of each transaction.
pub trait Derivation: Sized + 'static {
    /// Called once when the task starts (or switches to this plugin version).
    fn open(spec: DerivationSpec) -> Result<Self, Error>;
    /// Handle one source document; publish any number of documents into the derived
    /// collection.
    fn transform(&mut self, source: Source<'_>, out: &mut Publisher) -> Result<(), Error>;
    /// Called at the end of every transaction.
    fn flush(&mut self, _out: &mut Publisher) -> Result<(), Error> {
        Ok(())
    }
}

/// The derivation being opened.
#[derive(Debug, Clone)]
pub struct DerivationSpec {
    /// The derived collection, e.g. `acme/customer-totals`.
    pub name: String,
    /// The endpoint's `config`.
    pub config: Value,
    /// The derived collection's key, as JSON pointers.
    pub key: Vec<String>,
    pub transforms: Vec<TransformSpec>,
}

#[derive(Debug, Clone)]
pub struct TransformSpec {
    pub name: String,
    /// The source collection.
    pub source: String,
    /// The shuffle key, as JSON pointers.
    pub shuffle_key: Vec<String>,
}

/// One source document.
#[derive(Debug)]
pub struct Source<'a> {
    /// Index of the transform in [`DerivationSpec::transforms`].
    pub transform: usize,
    /// The transform's name.
    pub transform_name: &'a str,
    /// The shuffle key as a JSON array; the key of [`state`].
    pub key: Value,
    /// The document, with the host's `_meta`.
    pub doc: Value,
}

/// Collects the documents a derivation publishes.
#[derive(Default)]
pub struct Publisher {
    docs: Vec<String>,
}

impl Publisher {
    /// Publish a document into the derived collection. The host validates it against the
    /// collection's schema and replaces any `_meta`.
    pub fn publish(&mut self, doc: &Value) {
        self.docs.push(crate::json_text(doc));
    }
}

/// Per-shuffle-key state kept by the host and committed atomically with each transaction.
pub mod state {
    use crate::derivation_bindings::flow::plugin::state as wit;
    use serde_json::Value;

    /// The state of `key` (a shuffle key, as in [`crate::Source::key`]), if any.
    pub fn get(key: &Value) -> Option<Value> {
        wit::get(&crate::json_text(key)).and_then(|s| serde_json::from_str(&s).ok())
    }

    /// Replace the state of `key`.
    pub fn set(key: &Value, value: &Value) {
        wit::set(&crate::json_text(key), &crate::json_text(value))
    }

    /// Remove the state of `key`.
    pub fn clear(key: &Value) {
        wit::clear(&crate::json_text(key))
    }
}

struct Running {
    instance: Box<dyn Any>,
    transforms: Vec<String>,
}

thread_local! {
    // Components are single-threaded; the instance lives between calls here.
    static RUNNING: RefCell<Option<Running>> = const { RefCell::new(None) };
}

fn to_wit(e: Error) -> PluginError {
    PluginError {
        message: e.message,
        document: e.document,
    }
}

#[doc(hidden)]
pub fn open<T: Derivation>(spec: wit::DerivationSpec) -> Result<(), PluginError> {
    let config = serde_json::from_str(&spec.config).unwrap_or(Value::Null);
    let transforms: Vec<TransformSpec> = spec
        .transforms
        .into_iter()
        .map(|t| TransformSpec {
            name: t.name,
            source: t.source,
            shuffle_key: t.shuffle_key,
        })
        .collect();
    let names = transforms.iter().map(|t| t.name.clone()).collect();
    let instance = T::open(DerivationSpec {
        name: spec.name,
        config,
        key: spec.key,
        transforms,
    })
    .map_err(to_wit)?;
    RUNNING.with(|r| {
        *r.borrow_mut() = Some(Running {
            instance: Box::new(instance),
            transforms: names,
        })
    });
    Ok(())
}

fn with_running<T: Derivation, R>(
    f: impl FnOnce(&mut T, &[String]) -> Result<R, Error>,
) -> Result<R, PluginError> {
    RUNNING.with(|r| {
        let mut r = r.borrow_mut();
        let running = r.as_mut().ok_or_else(|| PluginError {
            message: "called before open".into(),
            document: None,
        })?;
        let instance = running
            .instance
            .downcast_mut::<T>()
            .expect("one derivation type per component");
        f(instance, &running.transforms).map_err(to_wit)
    })
}

#[doc(hidden)]
pub fn transform<T: Derivation>(
    batch: Vec<wit::SourceDocument>,
) -> Result<Vec<String>, PluginError> {
    with_running::<T, _>(|instance, names| {
        let mut out = Publisher::default();
        for (i, d) in batch.into_iter().enumerate() {
            let at = |mut e: Error| {
                e.document.get_or_insert(i as u32);
                e
            };
            let key: Value = serde_json::from_str(&d.key).map_err(|e| at(e.into()))?;
            let doc: Value = serde_json::from_str(&d.document).map_err(|e| at(e.into()))?;
            let transform = d.transform as usize;
            let transform_name = names.get(transform).map(String::as_str).unwrap_or("");
            instance
                .transform(
                    Source {
                        transform,
                        transform_name,
                        key,
                        doc,
                    },
                    &mut out,
                )
                .map_err(at)?;
        }
        Ok(out.docs)
    })
}

#[doc(hidden)]
pub fn flush<T: Derivation>() -> Result<Vec<String>, PluginError> {
    with_running::<T, _>(|instance, _| {
        let mut out = Publisher::default();
        instance.flush(&mut out)?;
        Ok(out.docs)
    })
}

/// Export `$t` (a [`Derivation`]) as this component's derivation.
#[macro_export]
macro_rules! export_derivation {
    ($t:ty) => {
        #[doc(hidden)]
        pub struct __FlowDerivationExport;

        impl $crate::derivation_bindings::exports::flow::plugin::derive::Guest for __FlowDerivationExport {
            fn open(
                spec: $crate::derivation_bindings::exports::flow::plugin::derive::DerivationSpec,
            ) -> Result<(), $crate::derivation_bindings::flow::plugin::types::PluginError> {
                $crate::__derivation::open::<$t>(spec)
            }
            fn transform(
                batch: Vec<$crate::derivation_bindings::exports::flow::plugin::derive::SourceDocument>,
            ) -> Result<Vec<String>, $crate::derivation_bindings::flow::plugin::types::PluginError> {
                $crate::__derivation::transform::<$t>(batch)
            }
            fn flush() -> Result<Vec<String>, $crate::derivation_bindings::flow::plugin::types::PluginError> {
                $crate::__derivation::flush::<$t>()
            }
        }

        $crate::derivation_bindings::__export_derivation_world!(__FlowDerivationExport with_types_in $crate::derivation_bindings);
    };
}
