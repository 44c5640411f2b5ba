//! A schema made self-contained: every `$ref` to another file is bundled in.
//!
//! Flow's catalogs reference schema files the way JSON Schema means it: `schema:
//! ride.schema.yaml#/$defs/terminus` for a collection, `$ref: exchange.schema.yaml#Exchange`
//! inside a schema, chains of them across files. The host's validator, reduce plan and key
//! checks resolve references within one document only (no I/O when validating), so loading a
//! catalog bundles: each referenced file is read once and placed under the root schema's
//! `$defs` (named after its path), and every reference into it is rewritten to a JSON
//! pointer within the root (an anchor becomes the pointer of the subschema declaring it).
//! A file's own `$id`, anchors and `$schema` are dropped with the rewrite: the bundle is one
//! resource, of one draft. So what would change meaning in one resource is refused, never
//! silently bundled: a referenced file of another draft than the collection's schema, one
//! with resources of its own (`$id`s below its root) or dynamic references
//! (`$recursiveRef`, `$dynamicRef`), a file reference inside a subschema with an `$id` of its
//! own. File references are relative to the file that holds them and must stay inside the
//! directory of the catalog file that names the schema; a remote URL is refused, never
//! fetched (the JSON Schema meta-schemas aside, which the validator knows).

use flow_doc::ptr::{Pointer, child, percent_decode, pointer_fragment};
use flow_doc::schema::{Anchors, SchemaDraft as Draft, anchors, child_paths, same_resource};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bundle `schema` as written in a catalog file: a path (with an optional `#fragment`)
/// relative to `dir`, or an inline schema whose file references are relative to `dir`.
/// `dir` (canonical) is also the directory references must stay inside. Errors name the
/// file, the location of the reference and the reason.
/// `write_schema`: for a `readSchema`, the collection's bundled `writeSchema`, which it may
/// reference as `flow://write-schema` (Flow's), bundled in like a file.
pub fn bundle(schema: &Value, dir: &Path, write_schema: Option<&Value>) -> Result<Value, String> {
    let mut b = Bundler {
        root: dir.to_path_buf(),
        files: BTreeMap::new(),
        defs: Vec::new(),
        queue: Vec::new(),
        write_schema,
        draft: Draft::of(schema),
    };
    let mut top = match schema {
        Value::String(reference) => {
            let (path, fragment) = reference.split_once('#').unwrap_or((reference, ""));
            refuse_remote(path).map_err(|e| format!("{reference:?}: {e}"))?;
            let whole = fragment.is_empty();
            let file = b
                .read(dir, path, whole)
                .map_err(|e| format!("{reference:?}: {e}"))?;
            b.draft = Draft::of(&b.files[&file].value);
            if whole {
                // The file is the root: its local references stay as they are.
                let body = b.files[&file].value.clone();
                b.rewrite_root(body, &file)?
            } else {
                let target = b.target(&file, fragment, &format!("{reference:?}"))?;
                let mut m = Map::new();
                if let Some(draft) = b.files[&file].value.get("$schema") {
                    m.insert("$schema".into(), draft.clone());
                }
                m.insert("$ref".into(), Value::String(pointer_fragment(&target)));
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
        b.defs.push((file, body));
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
        for (file, body) in std::mem::take(&mut b.defs) {
            let name = &b.files[&file].name;
            if defs.contains_key(name) {
                return Err(format!(
                    "`$defs` already has {name:?}, the name {} is bundled under; rename that definition",
                    file.display()
                ));
            }
            defs.insert(name.clone(), body);
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

/// Keywords of references and anchors whose meaning depends on the resource they are in
/// (and on the path to them): refused in a referenced file.
const DYNAMIC: &[&str] = &[
    "$recursiveRef",
    "$recursiveAnchor",
    "$dynamicRef",
    "$dynamicAnchor",
];

struct File {
    value: Value,
    /// Its key under the root's `$defs`; empty for the root file itself.
    name: String,
    /// Its pointer within the bundle: empty for the root, `/$defs/<name>` for the others.
    prefix: String,
    anchors: Anchors,
}

struct Bundler<'w> {
    root: PathBuf,
    write_schema: Option<&'w Value>,
    files: BTreeMap<PathBuf, File>,
    /// Referenced files, rewritten, in the order they were done.
    defs: Vec<(PathBuf, Value)>,
    queue: Vec<PathBuf>,
    /// The collection schema's draft, which every referenced file must share.
    draft: Draft,
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
                "{} is outside {}, the directory of the catalog file naming the schema: a schema may reference only files beside or below it",
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
            let root = File {
                anchors: anchors(&value),
                value,
                name: String::new(),
                prefix: String::new(),
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
        } else if f.anchors.is_ambiguous(&fragment) {
            return Err(format!(
                "{at}: {} declares anchor {fragment:?} more than once",
                file.display()
            ));
        } else {
            f.anchors
                .get(&fragment)
                .map(str::to_string)
                .ok_or_else(|| {
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
        let ids = anchors(&v).ids;
        self.rewrite(&mut v, file, "", true, false, &ids)?;
        Ok(v)
    }

    /// A referenced file: every reference becomes a pointer into the bundle, and its `$id`,
    /// anchors and `$schema` go (the bundle is one resource).
    fn rewrite_external(&mut self, mut v: Value, file: &Path) -> Result<Value, String> {
        let draft = Draft::of(&v);
        if draft != self.draft {
            return Err(format!(
                "{} is written for {} (its `$schema`) and the collection's schema for {}: a schema and the files it references are bundled as one, of one draft; write the same `$schema` in both",
                file.display(),
                draft.name(),
                self.draft.name()
            ));
        }
        self.rewrite(&mut v, file, "", false, false, &[])?;
        if let Value::Object(m) = &mut v {
            m.remove("$schema");
        }
        Ok(v)
    }

    /// Rewrite the references in schema `v`, at pointer `at` of `file`. `root`: `file` is the
    /// collection's schema; `in_resource`: `v` is inside a subschema with an `$id` of its own
    /// (against which references resolve); `ids`: the `$id`s the document embeds.
    fn rewrite(
        &mut self,
        v: &mut Value,
        file: &Path,
        at: &str,
        root: bool,
        mut in_resource: bool,
        ids: &[String],
    ) -> Result<(), String> {
        let Value::Object(m) = &mut *v else {
            return Ok(());
        };
        let here = || match file.file_name() {
            Some(n) if n == INLINE => format!("schema#{at}"),
            _ => format!("{}#{at}", file.display()),
        };
        let own_id = m
            .get("$id")
            .and_then(Value::as_str)
            .is_some_and(|id| !id.starts_with('#'));
        if own_id && !at.is_empty() {
            if !root {
                return Err(format!(
                    "{}: a referenced file may not hold resources of its own (an `$id` below its root); reference that subschema's file instead, or write it into the collection's schema",
                    here()
                ));
            }
            in_resource = true;
        }
        if !root && let Some(kw) = DYNAMIC.iter().find(|k| m.contains_key(**k)) {
            return Err(format!(
                "{}: `{kw}` is not bundled from a referenced file (it means the resource it is in); write it into the collection's schema",
                here()
            ));
        }
        if let Some(Value::String(reference)) = m.get("$ref") {
            let reference = reference.clone();
            let place = format!("$ref {reference:?} at {}", here());
            let new = self.rewrite_ref(&reference, file, root, in_resource, ids, &place)?;
            if let Some(new) = new {
                m.insert("$ref".into(), Value::String(new));
            }
        }
        if !root {
            m.remove("$anchor");
            m.remove("$id");
        }
        for path in child_paths(m) {
            if let Some(c) = path.query_mut(v) {
                self.rewrite(c, file, &format!("{at}{path}"), root, in_resource, ids)?;
            }
        }
        Ok(())
    }

    /// The rewritten form of `reference` found in `file`, or None to keep it.
    fn rewrite_ref(
        &mut self,
        reference: &str,
        file: &Path,
        root: bool,
        in_resource: bool,
        ids: &[String],
        place: &str,
    ) -> Result<Option<String>, String> {
        let (path, fragment) = reference.split_once('#').unwrap_or((reference, ""));
        if path.starts_with("http://json-schema.org/")
            || path.starts_with("https://json-schema.org/")
        {
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
                .map(|t| Some(pointer_fragment(&t)));
        }
        if path == "flow://inferred-schema" {
            return Err(format!(
                "{place}: the host infers no schema as documents arrive; write the schema out (`flow collections infer-schema` prints one from a collection's documents)"
            ));
        }
        if path.is_empty() {
            if root {
                return Ok(None); // Local to the root: resolved as written.
            }
            return self
                .target(file, fragment, place)
                .map(|t| Some(pointer_fragment(&t)));
        }
        if ids.iter().any(|id| same_resource(id, path)) {
            return Ok(None); // A resource the schema embeds (`$id`): resolved as written.
        }
        refuse_remote(path).map_err(|e| format!("{place}: {e}"))?;
        if in_resource {
            return Err(format!(
                "{place}: a file reference inside a subschema with an `$id` of its own would resolve against that `$id`; reference the file from outside it"
            ));
        }
        let dir = file.parent().unwrap_or(Path::new(""));
        let target_file = self
            .read(dir, path, false)
            .map_err(|e| format!("{place}: {e}"))?;
        self.target(&target_file, fragment, place)
            .map(|t| Some(pointer_fragment(&t)))
    }
}

/// A reference with a URI scheme (`https://...`, `urn:...`) or a network path (`//host/...`)
/// is refused: schemas are never fetched.
fn refuse_remote(path: &str) -> Result<(), String> {
    let scheme = path.split_once(':').is_some_and(|(s, _)| {
        !s.is_empty()
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
                "$schema": "https://json-schema.org/draft/2019-09/schema",
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
        let out = bundle(&schema, &root, None).unwrap();
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
        let whole = bundle(&json!("s/a.json"), &root, None).unwrap();
        assert_eq!(whole["properties"]["n"]["$ref"], "#N");
        assert_eq!(whole["$id"], "https://example.com/a.json");
        assert_eq!(whole["$defs"]["file:s/b.json"]["anyOf"][1]["$ref"], "#");
        // ... or a fragment of one, of the file's draft.
        let part = bundle(&json!("s/a.json#/$defs/n"), &root, None).unwrap();
        assert_eq!(part["$ref"], "#/$defs/file:s~1a.json/$defs/n");
        assert_eq!(
            part["$schema"],
            "https://json-schema.org/draft/2019-09/schema"
        );
    }

    /// What would change meaning when bundled as one resource is refused, naming the file and
    /// the place; references to resources the schema embeds stay as written; pointers are
    /// written as URI fragments.
    #[test]
    fn what_bundling_would_change_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let write = |name: &str, v: Value| {
            std::fs::write(root.join(name), serde_json::to_string(&v).unwrap()).unwrap()
        };
        let refused = |schema: Value, want: &str| {
            let why = bundle(&schema, &root, None).unwrap_err();
            assert!(why.contains(want), "{want:?} not in {why}");
        };
        write(
            "d2020.json",
            json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "prefixItems": [{"type": "integer"}]}),
        );
        refused(
            json!({"$ref": "d2020.json"}),
            "d2020.json is written for draft 2020-12 (its `$schema`) and the collection's schema for draft 2019-09",
        );
        write(
            "nested.json",
            json!({"$defs": {"x": {"$id": "x.json", "type": "string"}}}),
        );
        refused(
            json!({"$ref": "nested.json"}),
            "nested.json#/$defs/x: a referenced file may not hold resources of its own",
        );
        write(
            "tree.json",
            json!({"properties": {"kids": {"items": {"$recursiveRef": "#"}}}}),
        );
        refused(
            json!({"$ref": "tree.json"}),
            "tree.json#/properties/kids/items: `$recursiveRef` is not bundled",
        );
        refused(
            json!({"$defs": {"row": {"$id": "https://e.com/row.json", "properties": {"s": {"$ref": "tree.json"}}}}}),
            "$ref \"tree.json\" at schema#/$defs/row/properties/s: a file reference inside a subschema with an `$id` of its own",
        );
        write(
            "twice.json",
            json!({"$defs": {"a": {"$anchor": "A"}, "b": {"$anchor": "A"}}}),
        );
        refused(
            json!({"$ref": "twice.json#A"}),
            "declares anchor \"A\" more than once",
        );
        // A `$ref` inside an unknown keyword is no reference.
        let kept = json!({"x-doc": {"$ref": "https://example.com/x"}, "type": "object"});
        assert_eq!(bundle(&kept, &root, None).unwrap(), kept);
        // A reference to an embedded resource stays as written, and compiles.
        let embedded = json!({"$defs": {"row": {"$id": "https://e.com/row.json", "type": "integer"}},
            "$ref": "https://e.com/row.json"});
        let out = bundle(&embedded, &root, None).unwrap();
        assert_eq!(out, embedded);
        assert!(flow_doc::Schema::compile(&out).is_ok());
        // A pointer to a key with a `%` is written percent-encoded, and resolves.
        write("pct.json", json!({"$defs": {"a%41": {"type": "integer"}}}));
        let out = bundle(
            &json!({"properties": {"v": {"$ref": "pct.json#/$defs/a%2541"}}}),
            &root,
            None,
        )
        .unwrap();
        assert_eq!(
            out["properties"]["v"]["$ref"],
            "#/$defs/file:pct.json/$defs/a%2541"
        );
        let compiled = flow_doc::Schema::compile(&out).unwrap();
        assert!(compiled.validate(&json!({"v": "x"})).is_err());
        assert!(compiled.validate(&json!({"v": 1})).is_ok());
    }
}
