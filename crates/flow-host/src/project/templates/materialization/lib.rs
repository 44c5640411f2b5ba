//! A SQLite table of per-customer totals: a Flow materialization in Rust (`flow plugin init
//! --world materialization`).
//!
//! Each binding's collection becomes a table (`resource.table`), one row per key: a column per
//! selected field (the key's first, then each top-level property) and `flow_document` with
//! the whole document. The checkpoint is written to `flow_checkpoints` in the same
//! transaction as the rows, which is what makes the table exactly once.
//!
//! Build: flow plugin build (cargo build --release --target wasm32-wasip2, then plugin.wasm)

use flow_sdk::materialization::fields::{self, Field};
use flow_sdk::sql::{self, Value as Sql};
use flow_sdk::{Error, Loaded, Materialization, MaterializationSpec, Stored, Value};

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A document's value as a column holds it: objects and arrays as their JSON text.
fn column_value(value: Option<&Value>) -> Sql {
    match value {
        None | Some(Value::Null) => Sql::Null,
        Some(Value::Bool(b)) => Sql::Integer(*b as i64),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => Sql::Integer(i),
            None => Sql::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Some(Value::String(s)) => Sql::Text(s.clone()),
        Some(v) => Sql::Text(v.to_string()),
    }
}

struct Table {
    fields: Vec<Field>,
    create: String,
    select: String,
    delete: String,
    upsert: String,
}

impl Table {
    fn new(i: usize, binding: &flow_sdk::Binding) -> Result<Table, Error> {
        let table = binding.resource["table"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::new(format!(
                    "binding {i} ({}): resource.table must name a table",
                    binding.collection
                ))
            })?;
        if binding.delta_updates {
            return Err(Error::new(format!(
                "binding {i} ({}): this materialization keeps one row per key; deltaUpdates is not supported",
                binding.collection
            )));
        }
        let name = quote(table);
        let fields = fields::selected(i);
        let keys: Vec<String> = fields.iter().filter(|f| f.key).map(|f| quote(&f.name)).collect();
        let mut columns: Vec<String> = fields.iter().map(|f| quote(&f.name)).collect();
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {name} ({}, flow_document TEXT NOT NULL, PRIMARY KEY ({}))",
            columns.join(", "),
            keys.join(", ")
        );
        columns.push("flow_document".into());
        let place: Vec<&str> = columns.iter().map(|_| "?").collect();
        let filter: Vec<String> = keys.iter().map(|k| format!("{k} = ?")).collect();
        let filter = filter.join(" AND ");
        Ok(Table {
            create,
            select: format!("SELECT flow_document FROM {name} WHERE {filter}"),
            delete: format!("DELETE FROM {name} WHERE {filter}"),
            upsert: format!(
                "INSERT OR REPLACE INTO {name} ({}) VALUES ({})",
                columns.join(", "),
                place.join(", ")
            ),
            fields,
        })
    }
}

/// A key's values as statement parameters.
fn key_params(key: &Value) -> Vec<Sql> {
    key.as_array()
        .map(|k| k.iter().map(|v| column_value(Some(v))).collect())
        .unwrap_or_default()
}

struct TotalsView {
    name: String,
    tables: Vec<Table>,
}

impl Materialization for TotalsView {
    fn open(spec: MaterializationSpec) -> Result<(Self, Option<String>), Error> {
        flow_sdk::log(&format!(
            "opening {} with {} binding(s)",
            spec.name,
            spec.bindings.len()
        ));
        let tables = spec
            .bindings
            .iter()
            .enumerate()
            .map(|(i, b)| Table::new(i, b))
            .collect::<Result<Vec<_>, _>>()?;
        sql::execute(
            "CREATE TABLE IF NOT EXISTS flow_checkpoints (materialization TEXT PRIMARY KEY, checkpoint TEXT NOT NULL)",
            &[],
        )?;
        for t in &tables {
            sql::execute(&t.create, &[])?;
        }
        let rows = sql::query(
            "SELECT checkpoint FROM flow_checkpoints WHERE materialization = ?",
            &[Sql::Text(spec.name.clone())],
        )?;
        let checkpoint = match rows.rows.first().and_then(|r| r.first()) {
            Some(Sql::Text(t)) => Some(t.clone()),
            _ => None,
        };
        let view = TotalsView {
            name: spec.name,
            tables,
        };
        Ok((view, checkpoint))
    }

    fn load(&mut self, binding: usize, keys: Vec<Value>) -> Result<Vec<Loaded>, Error> {
        let t = &self.tables[binding];
        let mut found = Vec::new();
        for key in keys {
            let rows = sql::query(&t.select, &key_params(&key))?;
            if let Some(Sql::Text(doc)) = rows.rows.first().and_then(|r| r.first()) {
                let doc = flow_sdk::serde_json::from_str(doc)?;
                found.push(Loaded { key, doc });
            }
        }
        Ok(found)
    }

    fn write(&mut self, binding: usize, docs: Vec<Stored>) -> Result<(), Error> {
        let t = &self.tables[binding];
        let mut upserts = Vec::new();
        for d in docs {
            if d.delete {
                sql::execute(&t.delete, &key_params(&d.key))?;
            } else {
                let mut row: Vec<Sql> = t
                    .fields
                    .iter()
                    .map(|f| column_value(d.doc.pointer(&f.pointer)))
                    .collect();
                row.push(Sql::Text(d.doc.text().to_string()));
                upserts.push(row);
            }
        }
        if !upserts.is_empty() {
            sql::execute_many(&t.upsert, &upserts)?;
        }
        Ok(())
    }

    fn commit(&mut self, checkpoint: &str) -> Result<(), Error> {
        sql::execute(
            "INSERT OR REPLACE INTO flow_checkpoints (materialization, checkpoint) VALUES (?, ?)",
            &[Sql::Text(self.name.clone()), Sql::Text(checkpoint.to_string())],
        )?;
        Ok(())
    }
}

flow_sdk::export_materialization!(TotalsView);
