//! What a publish may not change under a table that already exists (and a collection's
//! logical partition fields): the checks a publish runs between the catalog in force and the
//! one it would record, for every materialization binding that keeps a table
//! (`resource.table`), before anything is recorded.
//!
//! The first-party SQL connectors (`flow_sdk::sql_tables`) give a table one column per key
//! location and per top-level property, typed by the collection schema, with the primary key
//! on the collection key. Adding an optional property adds a column when the task opens; a
//! change that cannot be applied in place (another key, a column whose type changes) is
//! refused here, naming the table, the column and the reason, so that nothing is recorded
//! that the task would then fail on. A column's type follows the SDK's rule
//! (`sql_tables::kind_of`): keep them in step.

use super::{Built, BuiltCollection};
use serde_json::Value;

/// Why `new` cannot replace `old` for the tables `old`'s materializations keep, one line per
/// problem (empty: it can).
pub fn problems(old: &Built, new: &Built) -> Vec<String> {
    let mut out = Vec::new();
    // A collection's documents are in the journals its partition fields gave them: other
    // fields would leave them where readers no longer look.
    for (name, c) in &new.collections {
        let Some(was) = old.collections.get(name) else {
            continue;
        };
        let fields = |c: &BuiltCollection| -> Vec<String> {
            c.partitions
                .iter()
                .map(|(f, p)| format!("{f} ({p})"))
                .collect()
        };
        if fields(was) != fields(c) {
            let list = |f: Vec<String>| match f.is_empty() {
                true => "none".to_string(),
                false => f.join(", "),
            };
            out.push(format!(
                "collection {name}: its logical partition fields were {} and would be {}: the journals its documents are in follow them, so they cannot change; write a new collection instead",
                list(fields(was)),
                list(fields(c))
            ));
        }
    }
    for (name, m) in &new.materializations {
        let Some(before) = old.materializations.get(name) else {
            continue;
        };
        for (i, b) in m.bindings.iter().enumerate() {
            let Some(table) = b.resource.get("table").and_then(Value::as_str) else {
                continue;
            };
            let Some(prev) = before
                .bindings
                .iter()
                .find(|p| p.resource.get("table").and_then(Value::as_str) == Some(table))
            else {
                continue;
            };
            let (Some(was), Some(now)) = (
                old.collections.get(&prev.source),
                new.collections.get(&b.source),
            ) else {
                continue;
            };
            let at = format!("materialization {name}: binding {i} (table {table})");
            let keys = |c: &BuiltCollection| -> Vec<String> {
                c.key.iter().map(|p| p.to_string()).collect()
            };
            if !b.delta_updates && keys(was) != keys(now) {
                out.push(format!(
                    "{at}: the table's primary key is the key of {} ({}), and {} has the key ({}): a key change cannot be applied to the table in place; bind it to a new table, or drop the table first",
                    prev.source,
                    keys(was).join(", "),
                    b.source,
                    keys(now).join(", ")
                ));
                continue;
            }
            let before = columns(&prev.fields, was);
            for (column, kind) in columns(&b.fields, now) {
                if let Some((_, old_kind)) = before.iter().find(|(c, _)| *c == column)
                    && *old_kind != kind
                {
                    out.push(format!(
                        "{at}: column {column} holds {old_kind} values, and the schema of {} now makes it {kind}: a change of a column's type cannot be applied in place; add a new field instead, or bind the collection to a new table",
                        b.source
                    ));
                }
            }
        }
    }
    out
}

/// A table's columns from a binding's fields, each with the kind of value it holds.
fn columns<'a>(
    fields: &'a [super::BuiltField],
    c: &BuiltCollection,
) -> Vec<(&'a str, &'static str)> {
    fields
        .iter()
        .map(|f| (f.name.as_str(), kind_at(c, &f.pointer)))
        .collect()
}

/// As `sql_tables::kind_of`: what a column of a schema location holds (through the schema's
/// references).
fn kind_at(c: &BuiltCollection, ptr: &str) -> &'static str {
    let Ok(ptr) = flow_doc::Pointer::parse(ptr) else {
        return "mixed (JSON)";
    };
    let mut types = c.read_schema.types_at(&ptr);
    types.retain(|t| t != "null");
    // The first `format` found, as `sql_tables::kind_at` takes it.
    let date_time = c
        .read_schema
        .subschemas_at(&ptr)
        .iter()
        .find_map(|s| s.get("format"))
        .and_then(Value::as_str)
        == Some("date-time");
    let types: Vec<&str> = types.iter().map(String::as_str).collect();
    match types.as_slice() {
        ["integer"] => "integer",
        ["boolean"] => "boolean",
        ["number"] | ["integer", "number"] => "number",
        ["string"] if date_time => "date-time",
        ["string"] => "string",
        ["object"] | ["array"] => "JSON",
        _ => "mixed (JSON)",
    }
}

#[cfg(test)]
mod test {
    use super::problems;
    use crate::catalog::{Catalog, build};
    use serde_json::json;

    fn built(schema: serde_json::Value, key: &str, delta: bool) -> crate::catalog::Built {
        let catalog: Catalog = serde_json::from_value(json!({
            "collections": {"a/c": {"schema": schema, "key": [key]}},
            "materializations": {"a/m": {
                "endpoint": {"wasm": {"plugin": "p", "config": {"path": "v.db"}}},
                "bindings": [{"source": "a/c", "resource": {"table": "t"}, "deltaUpdates": delta}],
            }},
        }))
        .unwrap();
        build("test", catalog).unwrap()
    }

    #[test]
    fn key_and_type_changes_of_a_kept_table_are_refused_additions_are_not() {
        let s = |extra: serde_json::Value| {
            let mut s = json!({"type": "object", "required": ["id", "k"], "properties": {
                "id": {"type": "integer"}, "n": {"type": "integer"}, "k": {"type": "string"}}});
            for (k, v) in extra.as_object().unwrap() {
                s["properties"][k] = v.clone();
            }
            s
        };
        let old = built(s(json!({})), "/id", false);
        // A new optional field, a type made nullable, a property removed: fine.
        assert!(
            problems(
                &old,
                &built(s(json!({"new": {"type": "string"}})), "/id", false)
            )
            .is_empty()
        );
        assert!(
            problems(
                &old,
                &built(s(json!({"n": {"type": ["integer", "null"]}})), "/id", false)
            )
            .is_empty()
        );
        // Another key.
        let p = problems(&old, &built(s(json!({})), "/k", false));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("binding 0 (table t)") && p[0].contains("key change"),
            "{}",
            p[0]
        );
        // A column's type changes.
        let p = problems(
            &old,
            &built(s(json!({"n": {"type": "string"}})), "/id", false),
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("column n holds integer values") && p[0].contains("now makes it string"),
            "{}",
            p[0]
        );
        // A delta table has no primary key: another key only adds a column.
        let old = built(s(json!({})), "/id", true);
        assert!(problems(&old, &built(s(json!({})), "/k", true)).is_empty());
    }
}
