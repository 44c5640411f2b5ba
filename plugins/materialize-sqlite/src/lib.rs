//! Materializes collections into SQLite tables through the host's `sql` capability.
//!
//! Each binding's `resource.table` names a table with one column per key location (named
//! after the pointer, `/a/b` -> `a_b`), one column per other top-level property of the
//! collection schema (INTEGER, REAL or TEXT by its type; objects and arrays as JSON text), and
//! `flow_document` holding the whole document. Standard updates keep one row per key (upserted
//! or deleted); `deltaUpdates` appends one row per combined delta. The checkpoint lives in
//! `flow_checkpoints`, written in the same transaction as the rows, so the table is exactly
//! once.
//!
//! Build: cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml

use flow_sdk::sql::{self, Value as Sv};
use flow_sdk::{Error, Loaded, Materialization, MaterializationSpec, Stored, Value};

/// Keys per `load` query: well under SQLite's bound-parameter limit even for wide keys.
const LOAD_KEYS_PER_QUERY: usize = 200;

struct Table {
    name: String,
    key_ptrs: Vec<String>,
    key_cols: Vec<String>,
    /// (column, top-level property) of non-key fields.
    value_cols: Vec<(String, String)>,
    delta: bool,
    upsert: String,
    delete: String,
}

struct SqliteMaterialization {
    name: String,
    tables: Vec<Table>,
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn column_for_pointer(ptr: &str) -> String {
    ptr.trim_start_matches('/')
        .replace('/', "_")
        .replace("~1", "_")
        .replace("~0", "~")
}

fn sql_type(schema: &Value) -> &'static str {
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => vec![],
    };
    match types.as_slice() {
        ["integer"] | ["boolean"] => "INTEGER",
        ["number"] | ["integer", "number"] | ["number", "integer"] => "REAL",
        ["string"] | ["object"] | ["array"] => "TEXT",
        // Mixed or unspecified types: no affinity, so each value keeps the type it was
        // written with (SQLite would otherwise turn 3 into '3' in a TEXT column).
        _ => "",
    }
}

/// JSON text written straight into a string (`Value`'s `Display` goes through the formatting
/// machinery, measurably slower in a plugin).
fn json_text(v: &Value) -> String {
    flow_sdk::serde_json::to_string(v).unwrap_or_default()
}

fn to_sql(v: Option<&Value>) -> Sv {
    match v {
        None | Some(Value::Null) => Sv::Null,
        Some(Value::Bool(b)) => Sv::Integer(i64::from(*b)),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => Sv::Integer(i),
            None => Sv::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Some(Value::String(s)) => Sv::Text(s.clone()),
        Some(other) => Sv::Text(json_text(other)),
    }
}

fn key_of(ptrs: &[String], doc: &Value) -> Value {
    Value::Array(
        ptrs.iter()
            .map(|p| doc.pointer(p).cloned().unwrap_or(Value::Null))
            .collect(),
    )
}

fn err(context: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::new(format!("{context}: {e}"))
}

impl Table {
    fn create(binding: usize, b: &flow_sdk::Binding) -> Result<Table, Error> {
        let name = b.resource["table"]
            .as_str()
            .ok_or_else(|| {
                Error::new(format!(
                    "binding {binding} ({}): resource.table (a table name) is required",
                    b.collection
                ))
            })?
            .to_string();
        if name.is_empty() || name.starts_with("sqlite_") {
            return Err(Error::new(format!(
                "binding {binding}: invalid table name {name:?}"
            )));
        }
        let key_cols: Vec<String> = b.key.iter().map(|p| column_for_pointer(p)).collect();
        let mut columns: Vec<(String, &'static str)> = Vec::new();
        for (ptr, col) in b.key.iter().zip(&key_cols) {
            let schema = b
                .schema
                .pointer(&schema_path(ptr))
                .cloned()
                .unwrap_or(Value::Null);
            columns.push((col.clone(), sql_type(&schema)));
        }
        let mut value_cols = Vec::new();
        if let Some(props) = b.schema["properties"].as_object() {
            for (prop, schema) in props {
                if prop == "_meta" || key_cols.contains(prop) || prop == "flow_document" {
                    continue;
                }
                columns.push((prop.clone(), sql_type(schema)));
                value_cols.push((prop.clone(), prop.clone()));
            }
        }
        let defs: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, (c, t))| {
                if i < key_cols.len() {
                    format!("{} {t} NOT NULL", quote(c))
                } else {
                    format!("{} {t}", quote(c))
                }
            })
            .collect();
        let pk = if b.delta_updates {
            String::new()
        } else {
            format!(
                ", PRIMARY KEY ({})",
                key_cols
                    .iter()
                    .map(|c| quote(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let ctx = format!("binding {binding} (table {name})");
        sql::execute(
            &format!(
                "CREATE TABLE IF NOT EXISTS {} ({}, flow_document TEXT NOT NULL{pk})",
                quote(&name),
                defs.join(", ")
            ),
            &[],
        )
        .map_err(err(&ctx))?;
        // Fields added to the schema since the table was created become new columns.
        let existing = sql::query(
            "SELECT name FROM pragma_table_info(?1)",
            &[Sv::Text(name.clone())],
        )
        .map_err(err(&ctx))?;
        let existing: Vec<String> = existing
            .rows
            .iter()
            .filter_map(|r| match r.first() {
                Some(Sv::Text(t)) => Some(t.clone()),
                _ => None,
            })
            .collect();
        for (c, t) in &columns {
            if !existing.contains(c) {
                sql::execute(
                    &format!("ALTER TABLE {} ADD COLUMN {} {t}", quote(&name), quote(c)),
                    &[],
                )
                .map_err(err(&ctx))?;
            }
        }

        let all_cols: Vec<String> = key_cols
            .iter()
            .cloned()
            .chain(value_cols.iter().map(|(c, _)| c.clone()))
            .chain(["flow_document".to_string()])
            .collect();
        let placeholders: Vec<String> = (1..=all_cols.len()).map(|i| format!("?{i}")).collect();
        let insert = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote(&name),
            all_cols
                .iter()
                .map(|c| quote(c))
                .collect::<Vec<_>>()
                .join(", "),
            placeholders.join(", ")
        );
        let upsert = if b.delta_updates {
            insert
        } else {
            let updates: Vec<String> = all_cols[key_cols.len()..]
                .iter()
                .map(|c| format!("{0} = excluded.{0}", quote(c)))
                .collect();
            format!(
                "{insert} ON CONFLICT ({}) DO UPDATE SET {}",
                key_cols
                    .iter()
                    .map(|c| quote(c))
                    .collect::<Vec<_>>()
                    .join(", "),
                updates.join(", ")
            )
        };
        let delete = format!(
            "DELETE FROM {} WHERE {}",
            quote(&name),
            key_cols
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{} = ?{}", quote(c), i + 1))
                .collect::<Vec<_>>()
                .join(" AND ")
        );
        Ok(Table {
            name,
            key_ptrs: b.key.clone(),
            key_cols,
            value_cols,
            delta: b.delta_updates,
            upsert,
            delete,
        })
    }

    fn row(&self, doc: &Value) -> Vec<Sv> {
        let mut row: Vec<Sv> = self
            .key_ptrs
            .iter()
            .map(|p| to_sql(doc.pointer(p)))
            .collect();
        row.extend(
            self.value_cols
                .iter()
                .map(|(_, prop)| to_sql(doc.get(prop))),
        );
        row.push(Sv::Text(json_text(doc)));
        row
    }
}

/// The schema location of a document pointer (`/a/b` -> `/properties/a/properties/b`).
fn schema_path(ptr: &str) -> String {
    ptr.split('/')
        .skip(1)
        .map(|p| format!("/properties/{p}"))
        .collect()
}

impl Materialization for SqliteMaterialization {
    fn open(spec: MaterializationSpec) -> Result<(Self, Option<String>), Error> {
        let tables = spec
            .bindings
            .iter()
            .enumerate()
            .map(|(i, b)| Table::create(i, b))
            .collect::<Result<Vec<_>, _>>()?;
        sql::execute(
            "CREATE TABLE IF NOT EXISTS flow_checkpoints (materialization TEXT PRIMARY KEY NOT NULL, checkpoint TEXT NOT NULL)",
            &[],
        )
        .map_err(err("flow_checkpoints"))?;
        let rows = sql::query(
            "SELECT checkpoint FROM flow_checkpoints WHERE materialization = ?1",
            &[Sv::Text(spec.name.clone())],
        )
        .map_err(err("flow_checkpoints"))?;
        let checkpoint = rows.rows.first().and_then(|r| match r.first() {
            Some(Sv::Text(t)) => Some(t.clone()),
            _ => None,
        });
        Ok((
            SqliteMaterialization {
                name: spec.name,
                tables,
            },
            checkpoint,
        ))
    }

    fn load(&mut self, binding: usize, keys: Vec<Value>) -> Result<Vec<Loaded>, Error> {
        let t = self.tables.get(binding).ok_or("no such binding")?;
        let mut out = Vec::new();
        let width = t.key_cols.len();
        for chunk in keys.chunks(LOAD_KEYS_PER_QUERY) {
            let mut params = Vec::with_capacity(chunk.len() * width);
            let mut tuples = Vec::with_capacity(chunk.len());
            for key in chunk {
                let parts = key.as_array().ok_or("a key must be a JSON array")?;
                let base = params.len();
                tuples.push(format!(
                    "({})",
                    (1..=width)
                        .map(|i| format!("?{}", base + i))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                params.extend(parts.iter().map(|v| to_sql(Some(v))));
            }
            let cols = t
                .key_cols
                .iter()
                .map(|c| quote(c))
                .collect::<Vec<_>>()
                .join(", ");
            let query = format!(
                "SELECT flow_document FROM {} WHERE ({cols}) IN (VALUES {})",
                quote(&t.name),
                tuples.join(", ")
            );
            let rows = sql::query(&query, &params).map_err(err(&t.name))?;
            for r in rows.rows {
                if let Some(Sv::Text(text)) = r.first() {
                    let doc: Value = flow_sdk::serde_json::from_str(text)?;
                    out.push(Loaded {
                        key: key_of(&t.key_ptrs, &doc),
                        doc,
                    });
                }
            }
        }
        Ok(out)
    }

    fn write(&mut self, binding: usize, docs: Vec<Stored>) -> Result<(), Error> {
        let t = self.tables.get(binding).ok_or("no such binding")?;
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for d in &docs {
            if d.delete && !t.delta {
                deletes.push(
                    d.key
                        .as_array()
                        .map(|k| k.iter().map(|v| to_sql(Some(v))).collect())
                        .unwrap_or_default(),
                );
            } else if !d.delete {
                upserts.push(t.row(&d.doc));
            }
        }
        if !upserts.is_empty() {
            sql::execute_many(&t.upsert, &upserts).map_err(err(&t.name))?;
        }
        if !deletes.is_empty() {
            sql::execute_many(&t.delete, &deletes).map_err(err(&t.name))?;
        }
        Ok(())
    }

    fn commit(&mut self, checkpoint: &str) -> Result<(), Error> {
        sql::execute(
            "INSERT INTO flow_checkpoints (materialization, checkpoint) VALUES (?1, ?2) \
             ON CONFLICT (materialization) DO UPDATE SET checkpoint = excluded.checkpoint",
            &[
                Sv::Text(self.name.clone()),
                Sv::Text(checkpoint.to_string()),
            ],
        )
        .map_err(err("flow_checkpoints"))?;
        Ok(())
    }
}

flow_sdk::export_materialization!(SqliteMaterialization);
