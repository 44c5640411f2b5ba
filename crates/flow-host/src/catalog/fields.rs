//! The fields of a materialization binding: what becomes a column (or a member) in the
//! destination, resolved at build from the collection's key, its schema's top-level
//! properties, its `projections` and the binding's `fields` selection; the plugin learns them
//! through the `fields` import.

use super::{BuiltCollection, FieldSelection, Projection};
use flow_doc::Pointer;
use serde_json::Value;
use std::collections::BTreeMap;

/// One field of a binding.
#[derive(Clone, Debug, PartialEq)]
pub struct BuiltField {
    /// Its name: the column's.
    pub name: String,
    /// Where its value is in a document.
    pub pointer: String,
    /// Whether it is (part of) the collection key.
    pub key: bool,
}

/// A field named after its pointer: `/address/city` is `address_city`.
fn name_for_pointer(ptr: &str) -> String {
    ptr.trim_start_matches('/')
        .replace('/', "_")
        .replace("~1", "_")
        .replace("~0", "~")
}

/// The fields of a binding of `collection`: the key's locations first (named after their
/// pointers, or after the projection of that location), then every other top-level property,
/// every projection, and what `selection` includes, less what it excludes.
pub fn resolve(
    collection: &BuiltCollection,
    projections: &BTreeMap<String, Projection>,
    selection: Option<&FieldSelection>,
) -> Result<Vec<BuiltField>, String> {
    for (name, p) in projections {
        if name.is_empty() {
            return Err("projections: a projection needs a name".into());
        }
        Pointer::parse(p.pointer()).map_err(|e| {
            format!(
                "projection {name}: {:?} is not a JSON pointer: {e}",
                p.pointer()
            )
        })?;
        if p.pointer().is_empty() {
            return Err(format!(
                "projection {name}: the whole document is already the `flow_document` field"
            ));
        }
    }
    let projected = |ptr: &str| {
        projections
            .iter()
            .find(|(_, p)| p.pointer() == ptr)
            .map(|(n, _)| n.clone())
    };
    let mut fields: Vec<BuiltField> = collection
        .key
        .iter()
        .map(|p| {
            let pointer = p.to_string();
            BuiltField {
                name: projected(&pointer).unwrap_or_else(|| name_for_pointer(&pointer)),
                pointer,
                key: true,
            }
        })
        .collect();
    let add = |fields: &mut Vec<BuiltField>, name: String, pointer: String| match fields
        .iter()
        .find(|f| f.name == name)
    {
        Some(f) if f.pointer == pointer => Ok(()),
        Some(f) => Err(format!(
            "field {name} would be both {} and {pointer}: rename the projection",
            f.pointer
        )),
        None if fields.iter().any(|f| f.pointer == pointer) => Ok(()),
        None => {
            fields.push(BuiltField {
                name,
                pointer,
                key: false,
            });
            Ok(())
        }
    };
    for (name, p) in projections {
        add(&mut fields, name.clone(), p.pointer().to_string())?;
    }
    // Top-level properties (of what is read), also those of `allOf` branches and referenced
    // subschemas.
    let top = collection.read_schema.subschemas_at(&Pointer::root());
    let props = top
        .iter()
        .filter_map(|s| s.get("properties").and_then(Value::as_object));
    let mut top_names: Vec<&String> = props.flat_map(|p| p.keys()).collect();
    top_names.sort();
    top_names.dedup();
    for prop in top_names {
        if prop == "_meta" || prop == "flow_document" {
            continue;
        }
        let pointer = format!("/{}", prop.replace('~', "~0").replace('/', "~1"));
        if fields.iter().any(|f| f.pointer == pointer) {
            continue;
        }
        add(&mut fields, prop.clone(), pointer)?;
    }
    let Some(selection) = selection else {
        return Ok(fields);
    };
    for inc in &selection.include {
        if fields.iter().any(|f| f.name == *inc) {
            continue;
        }
        if inc.starts_with('/') {
            Pointer::parse(inc)
                .map_err(|e| format!("fields.include: {inc:?} is not a JSON pointer: {e}"))?;
            add(&mut fields, name_for_pointer(inc), inc.clone())?;
        } else {
            return Err(format!(
                "fields.include: {inc:?} is no field of the collection (its fields: {}); name a projection or a JSON pointer",
                names(&fields)
            ));
        }
    }
    for exc in &selection.exclude {
        match fields.iter().position(|f| f.name == *exc) {
            Some(i) if fields[i].key => {
                return Err(format!(
                    "fields.exclude: {exc} is part of the collection key, which every row needs"
                ));
            }
            Some(i) => {
                fields.remove(i);
            }
            None => {
                return Err(format!(
                    "fields.exclude: {exc:?} is no field of the collection (its fields: {})",
                    names(&fields)
                ));
            }
        }
    }
    Ok(fields)
}

fn names(fields: &[BuiltField]) -> String {
    fields
        .iter()
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod test {
    use crate::catalog::{Catalog, build};
    use serde_json::{Value, json};

    /// The fields of the one binding of a catalog whose collection has `projections` and
    /// whose binding selects `fields`, or the build's error.
    fn fields(projections: Value, fields: Value) -> Result<Vec<(String, String, bool)>, String> {
        let catalog: Catalog = serde_json::from_value(json!({
            "collections": {"a/c": {
                "schema": {"type": "object", "required": ["id"], "properties": {
                    "id": {"type": "integer"}, "deleted": {"type": "boolean"},
                    "address": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                "key": ["/id"],
                "projections": projections,
            }},
            "materializations": {"a/m": {
                "endpoint": {"wasm": {"plugin": "p", "config": {"path": "v.db"}}},
                "bindings": [{"source": "a/c", "resource": {"table": "t"}, "fields": fields}],
            }},
        }))
        .unwrap();
        let built = build("test", catalog).map_err(|e| e.to_string())?;
        Ok(built.materializations["a/m"].bindings[0]
            .fields
            .iter()
            .map(|f| (f.name.clone(), f.pointer.clone(), f.key))
            .collect())
    }

    #[test]
    fn fields_come_from_the_key_properties_projections_and_the_selection() {
        let f = |n: &str, p: &str, k: bool| (n.to_string(), p.to_string(), k);
        assert_eq!(
            fields(
                json!({"city": "/address/city", "ident": {"location": "/id"}}),
                json!({})
            )
            .unwrap(),
            [
                f("ident", "/id", true),
                f("city", "/address/city", false),
                f("address", "/address", false),
                f("deleted", "/deleted", false),
            ]
        );
        assert_eq!(
            fields(
                json!({}),
                json!({"include": ["/address/city"], "exclude": ["deleted"]})
            )
            .unwrap(),
            [
                f("id", "/id", true),
                f("address", "/address", false),
                f("address_city", "/address/city", false),
            ]
        );
        for (projections, selection, why) in [
            (
                json!({"x": "address"}),
                json!({}),
                "projection x: \"address\" is not a JSON pointer",
            ),
            (json!({"x": ""}), json!({}), "the whole document"),
            (
                json!({"deleted": "/address"}),
                json!({}),
                "field deleted would be both",
            ),
            (
                json!({}),
                json!({"include": ["nope"]}),
                "fields.include: \"nope\" is no field",
            ),
            (
                json!({}),
                json!({"exclude": ["id"]}),
                "fields.exclude: id is part of the collection key",
            ),
            (
                json!({}),
                json!({"exclude": ["nope"]}),
                "fields.exclude: \"nope\" is no field",
            ),
        ] {
            let e = fields(projections.clone(), selection.clone()).unwrap_err();
            assert!(e.contains(why), "{projections} {selection}: {e}");
        }
    }
}
