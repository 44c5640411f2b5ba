//! A schema made self-contained: every `$ref` to another file is bundled in.
//!
//! Flow's catalogs reference schema files the way JSON Schema means it: `schema:
//! ride.schema.yaml#/$defs/terminus` for a collection, `$ref: exchange.schema.yaml#Exchange`
//! inside a schema, chains of them across files. The host's validator, reduce plan and key
//! checks resolve references within one document only (no I/O when validating), so loading a
//! catalog bundles: each referenced file is read once and placed under the root schema's
//! `$defs` (named after its path), and every reference into it is rewritten to a JSON
//! pointer within the root (an anchor becomes the pointer of the subschema declaring it).
//! A file's own `$id`s, anchors and `$schema` are dropped with the rewrite: the bundle is one
//! resource, whose draft is the root's. File references are relative to the file that holds
//! them, must stay inside the root catalog's directory, and a remote URL is refused, never
//! fetched (the JSON Schema meta-schemas aside, which the validator knows).

use flow_doc::ptr::{Pointer, child, percent_decode};
use flow_doc::schema::{anchors, is_data_keyword, is_map_keyword};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bundle `schema` as written in a catalog file: a path (with an optional `#fragment`)
/// relative to `dir`, or an inline schema whose file references are relative to `dir`.
/// `root` is the canonical directory that references must stay inside. Errors name the
/// file, the location of the reference and the reason.
/// `write_schema`: for a `readSchema`, the collection's bundled `writeSchema`, which it may
/// reference as `flow://write-schema` (Flow's), bundled in like a file.
pub fn bundle(
    schema: &Value,
    dir: &Path,
    root: &Path,
    write_schema: Option<&Value>,
) -> Result<Value, String> {
    let mut b = Bundler {
        root: root.to_path_buf(),
        files: BTreeMap::new(),
        defs: Vec::new(),
        queue: Vec::new(),
        write_schema,
    };
    let mut top = match schema {
        Value::String(reference) => {
            let (path, fragment) = reference.split_once('#').unwrap_or((reference, ""));
            refuse_remote(path).map_err(|e| format!("{reference:?}: {e}"))?;
            let whole = fragment.is_empty();
            let file = b
                .read(dir, path, whole)
                .map_err(|e| format!("{reference:?}: {e}"))?;
            if whole {
                // The file is the root: its local references stay as they are.
                let body = b.files[&file].value.clone();
                b.rewrite_root(body, &file)?
            } else {
                let target = b.target(&file, fragment, &format!("{reference:?}"))?;
                let mut m = Map::new();
                m.insert("$ref".into(), Value::String(format!("#{target}")));
                Value::Object(m)
            }
        }
        inline => {
            let inline_file = dir.join(INLINE);
            b.rewrite_root(inline.clone(), &inline_file)?
        }
    };
    while let Some(file) = b.queue.pop() {
        let body = b.files[&file].value.clone();
        let body = b.rewrite_external(body, &file)?;
        let name = b.files[&file].name.clone();
        b.defs.push((name, body));
    }
    if !b.defs.is_empty() {
        let Value::Object(top_map) = &mut top else {
            return Err("a schema that references other files must be an object".into());
        };
        let defs = top_map
            .entry("$defs")
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(defs) = defs else {
            return Err("`$defs` must be an object".into());
        };
        for (name, body) in std::mem::take(&mut b.defs) {
            if defs.contains_key(&name) {
                return Err(format!(
                    "`$defs` already has {name:?}, the name its referenced file is bundled under"
                ));
            }
            defs.insert(name, body);
        }
    }
    Ok(top)
}

/// How a `readSchema` names its collection's `writeSchema` (Flow's), and the `$defs` key
/// that is bundled under.
const WRITE_SCHEMA: &str = "flow://write-schema";

/// The file name standing for a schema written inline in its catalog (its directory is the
/// catalog's).
const INLINE: &str = "(inline schema)";

struct File {
    value: Value,
    /// Its key under the root's `$defs`; empty for the root file itself.
    name: String,
    /// Its pointer within the bundle: empty for the root, `/$defs/<name>` for the others.
    prefix: String,
    /// Its anchors (`$anchor`, or an `$id` of `#Name`) and their pointers within the file.
    anchors: BTreeMap<String, String>,
}

struct Bundler<'w> {
    root: PathBuf,
    write_schema: Option<&'w Value>,
    files: BTreeMap<PathBuf, File>,
    defs: Vec<(String, Value)>,
    queue: Vec<PathBuf>,
}

impl Bundler<'_> {
    /// Read the schema file at `path` relative to `dir` (once), returning its canonical path.
    /// `is_root`: it is the collection's schema itself, not a file placed under `$defs`.
    fn read(&mut self, dir: &Path, path: &str, is_root: bool) -> Result<PathBuf, String> {
        let joined = dir.join(path);
        let file = std::fs::canonicalize(&joined)
            .map_err(|e| format!("cannot read {}: {e}", joined.display()))?;
        if !file.starts_with(&self.root) {
            return Err(format!(
                "{} is outside the catalog's directory {}: a schema may reference only files beside or below its catalog",
                file.display(),
                self.root.display()
            ));
        }
        if self.files.contains_key(&file) {
            return Ok(file);
        }
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let value: Value = serde_yaml::from_str(&text)
            .map_err(|e| format!("{} is not a YAML or JSON schema: {e}", file.display()))?;
        if is_root {
            let anchors = anchors(&value);
            let root = File {
                value,
                name: String::new(),
                prefix: String::new(),
                anchors,
            };
            self.files.insert(file.clone(), root);
        } else {
            let name = self.def_name(&file);
            self.add(file.clone(), value, name);
        }
        Ok(file)
    }

    /// Add `value` as a file to bundle under `$defs/<name>`.
    fn add(&mut self, file: PathBuf, value: Value, name: String) {
        let f = File {
            anchors: anchors(&value),
            prefix: child("/$defs", &name),
            value,
            name,
        };
        self.files.insert(file.clone(), f);
        self.queue.push(file);
    }

    /// A `$defs` key for `file`: `file:` and its path under the root, in characters that
    /// need no percent-escaping in a URI fragment, unique in the bundle.
    fn def_name(&self, file: &Path) -> String {
        let rel = file.strip_prefix(&self.root).unwrap_or(file);
        let path: String = rel
            .display()
            .to_string()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let base = format!("file:{path}");
        let taken = |n: &str| self.files.values().any(|f| f.name == n);
        let mut name = base.clone();
        let mut i = 2;
        while taken(&name) {
            name = format!("{base}_{i}");
            i += 1;
        }
        name
    }

    /// The pointer within the bundle of `fragment` (a JSON pointer or an anchor) of `file`.
    fn target(&self, file: &Path, fragment: &str, at: &str) -> Result<String, String> {
        let f = &self.files[file];
        let fragment = percent_decode(fragment);
        let within = if fragment.is_empty() || fragment.starts_with('/') {
            let found = Pointer::parse(&fragment)
                .ok()
                .and_then(|p| p.query(&f.value).map(|_| ()));
            if found.is_none() {
                return Err(format!(
                    "{at}: {} has nothing at #{fragment}",
                    file.display()
                ));
            }
            fragment
        } else {
            f.anchors.get(&fragment).cloned().ok_or_else(|| {
                format!(
                    "{at}: {} declares no anchor {fragment:?} (`$anchor: {fragment}`)",
                    file.display()
                )
            })?
        };
        Ok(format!("{}{within}", f.prefix))
    }

    /// The collection's own schema (`file`: where it was written): references to other files
    /// become pointers into the bundle; its local references stay.
    fn rewrite_root(&mut self, mut v: Value, file: &Path) -> Result<Value, String> {
        self.rewrite(&mut v, file, "", true, false)?;
        Ok(v)
    }

    /// A referenced file: every reference becomes a pointer into the bundle, and its `$id`s,
    /// anchors and `$schema` go (the bundle is one resource).
    fn rewrite_external(&mut self, mut v: Value, file: &Path) -> Result<Value, String> {
        self.rewrite(&mut v, file, "", false, false)?;
        if let Value::Object(m) = &mut v {
            m.remove("$schema");
        }
        Ok(v)
    }

    /// Rewrite the references in `v`, at pointer `at` of `file`; `is_map`: `v` maps names to
    /// schemas (`properties`, `$defs`, ...) rather than being a schema.
    fn rewrite(
        &mut self,
        v: &mut Value,
        file: &Path,
        at: &str,
        root: bool,
        is_map: bool,
    ) -> Result<(), String> {
        match v {
            Value::Object(m) => {
                if !is_map {
                    if let Some(Value::String(reference)) = m.get("$ref") {
                        let reference = reference.clone();
                        let place = match file.file_name() {
                            Some(n) if n == INLINE => format!("$ref {reference:?} at schema#{at}"),
                            _ => format!("$ref {reference:?} at {}#{at}", file.display()),
                        };
                        if let Some(new) = self.rewrite_ref(&reference, file, root, &place)? {
                            m.insert("$ref".into(), Value::String(new));
                        }
                    }
                    if !root {
                        m.remove("$anchor");
                        if m.get("$id").is_some_and(Value::is_string) {
                            m.remove("$id");
                        }
                    }
                }
                for (k, c) in m.iter_mut() {
                    if is_map || !is_data_keyword(k) {
                        let map = !is_map && is_map_keyword(k);
                        self.rewrite(c, file, &child(at, k), root, map)?;
                    }
                }
                Ok(())
            }
            Value::Array(items) => {
                for (i, c) in items.iter_mut().enumerate() {
                    self.rewrite(c, file, &child(at, &i.to_string()), root, false)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The rewritten form of `reference` found in `file`, or None to keep it.
    fn rewrite_ref(
        &mut self,
        reference: &str,
        file: &Path,
        root: bool,
        place: &str,
    ) -> Result<Option<String>, String> {
        let (path, fragment) = reference.split_once('#').unwrap_or((reference, ""));
        if path.contains("json-schema.org/") {
            return Ok(None); // A meta-schema: the validator knows these.
        }
        if path == WRITE_SCHEMA {
            let write = self.write_schema.ok_or_else(|| {
                format!("{place}: only a collection's readSchema may reference {WRITE_SCHEMA}")
            })?;
            let file = PathBuf::from(WRITE_SCHEMA);
            if !self.files.contains_key(&file) {
                self.add(file.clone(), write.clone(), WRITE_SCHEMA.to_string());
            }
            return self
                .target(&file, fragment, place)
                .map(|t| Some(format!("#{t}")));
        }
        if path == "flow://inferred-schema" {
            return Err(format!(
                "{place}: the host infers no schema as documents arrive; write the schema out (`flow collections infer-schema` prints one from a collection's documents)"
            ));
        }
        refuse_remote(path).map_err(|e| format!("{place}: {e}"))?;
        if path.is_empty() {
            if root {
                return Ok(None); // Local to the root: resolved as written.
            }
            return self
                .target(file, fragment, place)
                .map(|t| Some(format!("#{t}")));
        }
        let dir = file.parent().unwrap_or(Path::new(""));
        let target_file = self
            .read(dir, path, false)
            .map_err(|e| format!("{place}: {e}"))?;
        self.target(&target_file, fragment, place)
            .map(|t| Some(format!("#{t}")))
    }
}

/// A reference with a URI scheme (`https://...`, `urn:...`) or a network path (`//host/...`)
/// is refused: schemas are never fetched.
fn refuse_remote(path: &str) -> Result<(), String> {
    let scheme = path.split_once(':').is_some_and(|(s, _)| {
        s.len() > 1
            && s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    if scheme || path.starts_with("//") {
        return Err(format!(
            "{path} is remote: schemas are never fetched; save it in a file beside the catalog and reference that"
        ));
    }
    if Path::new(path).is_absolute() {
        return Err(format!(
            "{path} is an absolute path: reference schema files relative to the file that references them"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    /// A chain and a cycle of references across files: each file is bundled once under
    /// `$defs`, every reference becomes a pointer into the bundle, the bundled files lose
    /// their `$id`s, anchors and `$schema`, and the result validates and reduces as written.
    #[test]
    fn files_are_bundled_once_and_references_become_pointers() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("s")).unwrap();
        let write = |name: &str, v: Value| {
            std::fs::write(root.join(name), serde_json::to_string(&v).unwrap()).unwrap()
        };
        write(
            "s/a.json",
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$id": "https://example.com/a.json",
                "$defs": {"n": {"$anchor": "N", "type": "integer", "reduce": {"strategy": "sum"}}},
                "type": "object",
                "properties": {"n": {"$ref": "#N"}, "b": {"$ref": "b.json"}},
            }),
        );
        // b refers back to a: a cycle through files.
        write(
            "s/b.json",
            json!({"anyOf": [{"type": "null"}, {"$ref": "a.json"}]}),
        );
        let schema = json!({
            "type": "object",
            "reduce": {"strategy": "merge"},
            "properties": {
                "id": {"$ref": "s/a.json#N"},
                "x": {"$ref": "s/a.json"},
                "properties": {"$ref": "s/b.json"},
                "default": {"const": {"$ref": "not a reference"}},
            },
            "required": ["id"],
        });
        let out = bundle(&schema, &root, &root, None).unwrap();
        let defs = out["$defs"].as_object().unwrap();
        assert_eq!(
            defs.keys().collect::<Vec<_>>(),
            ["file:s/a.json", "file:s/b.json"]
        );
        let p = &out["properties"];
        assert_eq!(p["id"]["$ref"], "#/$defs/file:s~1a.json/$defs/n");
        assert_eq!(p["x"]["$ref"], "#/$defs/file:s~1a.json");
        assert_eq!(p["properties"]["$ref"], "#/$defs/file:s~1b.json");
        assert_eq!(p["default"]["const"], json!({"$ref": "not a reference"}));
        let a = &defs["file:s/a.json"];
        assert_eq!(a.get("$schema"), None);
        assert_eq!(a.get("$id"), None);
        assert_eq!(a["$defs"]["n"].get("$anchor"), None);
        assert_eq!(
            a["properties"]["n"]["$ref"],
            "#/$defs/file:s~1a.json/$defs/n"
        );
        assert_eq!(
            defs["file:s/b.json"]["anyOf"][1]["$ref"],
            "#/$defs/file:s~1a.json"
        );

        let compiled = flow_doc::Schema::compile(&out).unwrap();
        let doc = json!({"id": 1, "x": {"n": 2, "b": {"n": 3, "b": null}}});
        assert!(compiled.validate(&doc).is_ok());
        assert!(
            compiled
                .validate(&json!({"id": 1, "x": {"n": "2"}}))
                .is_err()
        );
        let key = [flow_doc::Pointer::parse("/id").unwrap()];
        assert!(compiled.check_key(&key).is_ok());
        let flow_doc::Reduced::Doc(r) = compiled
            .reduce(Some(json!({"id": 1})), json!({"id": 2}), true)
            .unwrap()
        else {
            panic!("a document")
        };
        assert_eq!(r, json!({"id": 3}), "the sum annotation of a.json applies");

        // A collection's schema that is a file is that file, its local references as they are.
        let whole = bundle(&json!("s/a.json"), &root, &root, None).unwrap();
        assert_eq!(whole["properties"]["n"]["$ref"], "#N");
        assert_eq!(whole["$id"], "https://example.com/a.json");
        assert_eq!(whole["$defs"]["file:s/b.json"]["anyOf"][1]["$ref"], "#");
        // ... or a fragment of one.
        let part = bundle(&json!("s/a.json#/$defs/n"), &root, &root, None).unwrap();
        assert_eq!(part["$ref"], "#/$defs/file:s~1a.json/$defs/n");
    }
}
