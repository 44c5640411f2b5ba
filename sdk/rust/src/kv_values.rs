//! A materialization into a key-value store the host grants as `kv` (Redis): what
//! `materialize-redis` is. A connector is one line:
//!
//! ```text
//! flow_sdk::export_materialization!(flow_sdk::kv_values::KvValues);
//! ```
//!
//! Each binding keeps one value per collection key, at `prefix` + the key's parts joined by
//! `:` (strings as they are, other values as JSON): with `resource: {prefix: "totals:"}`, the
//! document of key `["alice"]` is at `totals:alice`. `as: json` (the default) stores the
//! document as a JSON string; `as: hash` stores a hash with one field per top-level property
//! (strings as they are, other values as JSON) and `flow_document`, the whole document.
//! `ttlSeconds` makes each written key expire. A root delete deletes the key.
//!
//! The checkpoint is at `flow:checkpoint:<materialization>`, written in the same MULTI/EXEC as
//! the values, and a fence at `flow:fence:<materialization>`: every `open` takes the next, and
//! every commit expects it (WATCH), so an instance that outlived a restart or a swap commits
//! nothing over its successor. Redis keeps one value per key, so `deltaUpdates` bindings are
//! refused.

use crate::Error;
use crate::materialization::kv;
use crate::materialization::{Loaded, Materialization, MaterializationSpec, Stored};
use serde_json::Value;

/// How a binding stores its documents.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    /// The document as one JSON string.
    Json,
    /// A hash: a field per top-level property, and `flow_document`.
    Hash,
}

struct Binding {
    prefix: String,
    shape: Shape,
    ttl_ms: Option<u64>,
    /// Whether the collection has `reduce` annotations: without, `load` reads nothing (a new
    /// document replaces the stored one whole).
    reduced: bool,
}

/// A materialization into a key-value store.
pub struct KvValues {
    name: String,
    bindings: Vec<Binding>,
    /// The fence this instance took at `open`.
    fence: String,
}

fn fence_key(name: &str) -> String {
    format!("flow:fence:{name}")
}

fn checkpoint_key(name: &str) -> String {
    format!("flow:checkpoint:{name}")
}

/// The store's key of a collection key (a JSON array).
fn store_key(prefix: &str, key: &Value) -> String {
    let mut out = prefix.to_string();
    let parts: &[Value] = key.as_array().map(Vec::as_slice).unwrap_or_default();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        match part {
            Value::String(s) => out.push_str(s),
            other => out.push_str(&other.to_string()),
        }
    }
    out
}

/// A property's value as a hash field: strings as they are, others as JSON.
fn field_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn err(context: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::new(format!("{context}: {e}"))
}

impl KvValues {
    fn binding(&self, binding: usize) -> Result<&Binding, Error> {
        self.bindings
            .get(binding)
            .ok_or_else(|| Error::new(format!("no binding {binding}")))
    }
}

impl Materialization for KvValues {
    fn open(spec: MaterializationSpec) -> Result<(Self, Option<String>), Error> {
        let mut bindings: Vec<Binding> = Vec::new();
        for (i, b) in spec.bindings.iter().enumerate() {
            let ctx = format!("binding {i} ({})", b.collection);
            if b.delta_updates {
                return Err(Error::new(format!(
                    "{ctx}: Redis keeps one value per key, so deltaUpdates is not supported: use a standard binding"
                )));
            }
            let prefix = match &b.resource["prefix"] {
                Value::Null => format!("{}:", b.collection),
                Value::String(p) => p.clone(),
                other => {
                    return Err(Error::new(format!(
                        "{ctx}: resource.prefix must be a string, not {other}"
                    )));
                }
            };
            let shape = match b.resource["as"].as_str() {
                None | Some("json") => Shape::Json,
                Some("hash") => Shape::Hash,
                Some(other) => {
                    return Err(Error::new(format!(
                        "{ctx}: resource.as is {other:?}: it is \"json\" (a JSON string per key) or \"hash\" (a field per property)"
                    )));
                }
            };
            let ttl_ms = match &b.resource["ttlSeconds"] {
                Value::Null => None,
                v => match v.as_f64() {
                    Some(s) if s > 0.0 && s.is_finite() => Some((s * 1000.0).ceil() as u64),
                    _ => {
                        return Err(Error::new(format!(
                            "{ctx}: resource.ttlSeconds must be a positive number of seconds, not {v}"
                        )));
                    }
                },
            };
            if prefix.starts_with("flow:") {
                return Err(Error::new(format!(
                    "{ctx}: the prefix {prefix:?} is in flow:, where the checkpoint and fence live"
                )));
            }
            if let Some(j) = bindings.iter().position(|o| o.prefix == prefix) {
                return Err(Error::new(format!(
                    "{ctx}: binding {j} has the same prefix {prefix:?}: their keys would overwrite each other"
                )));
            }
            bindings.push(Binding {
                prefix,
                shape,
                ttl_ms,
                reduced: crate::sql_tables::has_reduce(&b.schema),
            });
        }

        // Take the next fence: applied when the host commits open's transaction, and only if
        // no other instance took one meanwhile.
        let (fk, ck) = (fence_key(&spec.name), checkpoint_key(&spec.name));
        let now = kv::get(&[fk.clone(), ck]).map_err(err("flow:fence"))?;
        let (fence, checkpoint) = (now[0].clone(), now[1].clone());
        let next = match &fence {
            None => 1,
            Some(f) => {
                f.parse::<i64>().map_err(|_| {
                    Error::new(format!("{fk} holds {f:?}, which is not a fence (a number)"))
                })? + 1
            }
        }
        .to_string();
        kv::expect(&fk, fence.as_deref()).map_err(err("flow:fence"))?;
        kv::set(
            &[kv::Entry {
                key: fk,
                value: next.clone(),
            }],
            None,
        )
        .map_err(err("flow:fence"))?;
        Ok((
            KvValues {
                name: spec.name,
                bindings,
                fence: next,
            },
            checkpoint.filter(|c| !c.is_empty()),
        ))
    }

    fn load(&mut self, binding: usize, keys: Vec<Value>) -> Result<Vec<Loaded>, Error> {
        let b = self.binding(binding)?;
        if !b.reduced || keys.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = keys.iter().map(|k| store_key(&b.prefix, k)).collect();
        let docs = match b.shape {
            Shape::Json => kv::get(&names),
            Shape::Hash => kv::hget(&names, "flow_document"),
        }
        .map_err(err(&b.prefix))?;
        let mut out = Vec::new();
        for (key, doc) in keys.into_iter().zip(docs) {
            if let Some(text) = doc {
                let doc: Value = serde_json::from_str(&text).map_err(|e| {
                    Error::new(format!(
                        "{}: the stored value is not a JSON document: {e}",
                        store_key(&b.prefix, &key)
                    ))
                })?;
                out.push(Loaded { key, doc });
            }
        }
        Ok(out)
    }

    fn write(&mut self, binding: usize, docs: Vec<Stored>) -> Result<(), Error> {
        let b = self.binding(binding)?;
        let mut deletes = Vec::new();
        let mut values = Vec::new();
        let mut hashes = Vec::new();
        for d in docs {
            let key = store_key(&b.prefix, &d.key);
            if d.delete {
                deletes.push(key);
                continue;
            }
            match b.shape {
                Shape::Json => values.push(kv::Entry {
                    key,
                    value: d.doc.into_text(),
                }),
                Shape::Hash => {
                    let mut fields: Vec<(String, String)> = d
                        .doc
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .filter(|(k, _)| *k != "flow_document" && *k != "_meta")
                                .map(|(k, v)| (k.clone(), field_text(v)))
                                .collect()
                        })
                        .unwrap_or_default();
                    fields.push(("flow_document".into(), d.doc.into_text()));
                    hashes.push(kv::HashEntry { key, fields });
                }
            }
        }
        kv::del(&deletes).map_err(err(&b.prefix))?;
        if !values.is_empty() {
            kv::set(&values, b.ttl_ms).map_err(err(&b.prefix))?;
        }
        if !hashes.is_empty() {
            kv::hset(&hashes, b.ttl_ms).map_err(err(&b.prefix))?;
        }
        Ok(())
    }

    fn commit(&mut self, checkpoint: &str) -> Result<(), Error> {
        let fk = fence_key(&self.name);
        kv::expect(&fk, Some(&self.fence)).map_err(err(&fk))?;
        kv::set(
            &[kv::Entry {
                key: checkpoint_key(&self.name),
                value: checkpoint.to_string(),
            }],
            None,
        )
        .map_err(err("flow:checkpoint"))
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    #[test]
    fn store_keys_join_the_key_parts() {
        assert_eq!(store_key("t:", &json!(["alice"])), "t:alice");
        assert_eq!(store_key("t:", &json!(["a", 3, true])), "t:a:3:true");
        assert_eq!(store_key("", &json!([1.5])), "1.5");
        assert_eq!(field_text(&json!("x")), "x");
        assert_eq!(field_text(&json!({"a": [1]})), "{\"a\":[1]}");
    }
}
