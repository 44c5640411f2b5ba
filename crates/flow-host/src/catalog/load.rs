//! Loading a catalog file into a self-contained `Bundle`: schemas referenced by path are
//! inlined with the files they reference (`bundle.rs`), module files are read, and connector database paths are made absolute, so that
//! the bundle can be published to a host on another machine.

use super::model::{Catalog, WasmEndpoint};
use anyhow::Context;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A catalog with everything it references.
#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Where the catalog came from, for error messages.
    pub source: String,
    pub catalog: Catalog,
    /// Component files by the `module` path written in the catalog, base64 on the wire.
    #[serde(default, with = "base64_map")]
    #[schemars(with = "BTreeMap<String, String>")]
    pub modules: BTreeMap<String, Vec<u8>>,
    /// The file each item of an imported catalog file was defined in, by how errors name
    /// it (`collection acme/orders`, `materialization views`, `capture c`, `test t`), so a
    /// refusal names that file rather than `source`. Items of `source` itself are left out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub origins: BTreeMap<String, String>,
}

impl Bundle {
    /// `problems` of this bundle's catalog, each naming the file its item was defined in.
    pub fn locate(&self, mut problems: Vec<super::Problem>) -> Vec<super::Problem> {
        for p in &mut problems {
            let origin = self.origins.iter().find(|(item, _)| {
                p.at.strip_prefix(item.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
            });
            if let Some((_, file)) = origin {
                p.file = file.clone();
            }
        }
        problems
    }
}

/// Read and parse `path` (YAML or JSON) and everything it references: the catalogs it
/// imports (and they import), schema files, module files. Each file's relative paths are
/// its own directory's. A file imported twice (a diamond) is read once; an import cycle is
/// refused with its chain; a collection, task or test defined in two files is refused with
/// both.
pub fn load(path: &Path) -> anyhow::Result<Bundle> {
    let mut loader = Loader::default();
    loader.file(path, Path::new(""), &mut Vec::new())?;
    let root = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let origins = loader
        .defined
        .iter()
        .filter(|(_, file)| **file != root)
        .map(|((kind, name), file)| (format!("{kind} {name}"), file.display().to_string()))
        .collect();
    Ok(Bundle {
        source: path.display().to_string(),
        catalog: loader.catalog,
        modules: loader.modules,
        origins,
    })
}

/// What loading has gathered so far.
#[derive(Default)]
struct Loader {
    catalog: Catalog,
    modules: BTreeMap<String, Vec<u8>>,
    /// Where each collection, capture, materialization and test was defined.
    defined: BTreeMap<(&'static str, String), PathBuf>,
    /// Files read so far (canonical).
    read: std::collections::BTreeSet<PathBuf>,
}

impl Loader {
    /// Load catalog file `path` into the catalog: its imports first. `rel` is its directory
    /// relative to the first file's (module paths are written relative to that, so two
    /// files' `module: x.wasm` stay apart); `chain` is the files importing it.
    fn file(&mut self, path: &Path, rel: &Path, chain: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        let by = |chain: &[PathBuf]| match chain.last() {
            Some(p) => format!(" (imported by {})", p.display()),
            None => String::new(),
        };
        let canonical = std::fs::canonicalize(path)
            .with_context(|| format!("failed to read catalog {}{}", path.display(), by(chain)))?;
        if let Some(at) = chain.iter().position(|c| *c == canonical) {
            let cycle: Vec<String> = chain[at..]
                .iter()
                .chain(std::iter::once(&canonical))
                .map(|p| p.display().to_string())
                .collect();
            anyhow::bail!("import cycle: {}", cycle.join(" -> "));
        }
        if !self.read.insert(canonical.clone()) {
            return Ok(()); // Imported twice along different paths: once is enough.
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read catalog {}{}", path.display(), by(chain)))?;
        let mut catalog: Catalog = serde_yaml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("catalog {}: {e}", path.display()))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let source = path.display().to_string();
        self.resolve(&mut catalog, &dir, rel, &source)?;

        chain.push(canonical.clone());
        for import in std::mem::take(&mut catalog.import) {
            if import.contains("://") {
                anyhow::bail!(
                    "{source}: import {import}: only files relative to the catalog are imported, never URLs"
                );
            }
            let sub_rel = Path::new(&import).parent().unwrap_or(Path::new(""));
            self.file(&dir.join(&import), &rel.join(sub_rel), chain)?;
        }
        chain.pop();
        self.merge(catalog, &canonical)
    }

    /// Make `catalog`'s references self-contained: schema files inlined, module files read
    /// (keyed by their path relative to the first catalog), database paths absolute.
    fn resolve(
        &mut self,
        catalog: &mut Catalog,
        dir: &Path,
        rel: &Path,
        source: &str,
    ) -> anyhow::Result<()> {
        for (name, collection) in catalog.collections.iter_mut() {
            let fail = |field: &str, e: String| {
                anyhow::anyhow!("{source}: collection {name}: {field}: {e}")
            };
            // Schema references stay inside the directory of the catalog file naming them.
            let root = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
            let bundle = |s: &Value, write: Option<&Value>| super::bundle::bundle(s, &root, write);
            if let Some(s) = &mut collection.schema {
                *s = bundle(s, None).map_err(|e| fail("schema", e))?;
            }
            if let Some(s) = &mut collection.write_schema {
                *s = bundle(s, None).map_err(|e| fail("writeSchema", e))?;
            }
            if collection.read_schema.is_some() && collection.write_schema.is_none() {
                return Err(fail(
                    "readSchema",
                    "a readSchema needs a writeSchema beside it (instead of `schema`)".into(),
                ));
            }
            if let Some(s) = &mut collection.read_schema {
                *s = bundle(s, collection.write_schema.as_ref())
                    .map_err(|e| fail("readSchema", e))?;
            }
        }
        let modules = &mut self.modules;
        let mut read_module = |task: &str, wasm: &mut WasmEndpoint| -> anyhow::Result<()> {
            if let Some(module) = &mut wasm.module {
                let file = dir.join(&*module);
                let bytes = std::fs::read(&file).with_context(|| {
                    format!("{source}: {task}: failed to read module {}", file.display())
                })?;
                if !rel.as_os_str().is_empty() {
                    *module = rel.join(&*module).display().to_string();
                }
                modules.insert(module.clone(), bytes);
            }
            if let Some(Value::String(db)) = wasm.config.get_mut("path") {
                *db = absolute(dir, db).display().to_string();
            }
            Ok(())
        };
        for (name, c) in catalog.collections.iter_mut() {
            if let Some(d) = c.derive.as_mut() {
                read_module(name, &mut d.using.wasm)?;
            }
        }
        for (name, m) in catalog.materializations.iter_mut() {
            read_module(name, &mut m.endpoint.wasm)?;
        }
        for (name, c) in catalog.captures.iter_mut() {
            read_module(name, &mut c.endpoint.wasm)?;
        }
        Ok(())
    }

    /// Add `catalog` (from `file`) to what was loaded; a name defined twice is an error
    /// naming both files.
    fn merge(&mut self, catalog: Catalog, file: &Path) -> anyhow::Result<()> {
        fn add<T>(
            defined: &mut BTreeMap<(&'static str, String), PathBuf>,
            into: &mut BTreeMap<String, T>,
            kind: &'static str,
            from: BTreeMap<String, T>,
            file: &Path,
        ) -> anyhow::Result<()> {
            for (name, def) in from {
                if let Some(first) = defined.get(&(kind, name.clone())) {
                    anyhow::bail!(
                        "{kind} {name} is defined twice: in {} and in {}",
                        first.display(),
                        file.display()
                    );
                }
                defined.insert((kind, name.clone()), file.to_path_buf());
                into.insert(name, def);
            }
            Ok(())
        }
        let d = &mut self.defined;
        let c = &mut self.catalog;
        add(
            d,
            &mut c.collections,
            "collection",
            catalog.collections,
            file,
        )?;
        add(
            d,
            &mut c.materializations,
            "materialization",
            catalog.materializations,
            file,
        )?;
        add(d, &mut c.captures, "capture", catalog.captures, file)?;
        add(d, &mut c.tests, "test", catalog.tests, file)?;
        Ok(())
    }
}

fn absolute(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    };
    std::path::absolute(&joined).unwrap_or(joined)
}

mod base64_map {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<String, Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let encoded: BTreeMap<&String, String> = m
            .iter()
            .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(v)))
            .collect();
        encoded.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
        let encoded = BTreeMap::<String, String>::deserialize(d)?;
        encoded
            .into_iter()
            .map(|(k, v)| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map_err(|e| {
                        serde::de::Error::custom(format!("module {k}: invalid base64: {e}"))
                    })?;
                Ok((k, bytes))
            })
            .collect()
    }
}
