//! Loading a catalog file into a self-contained `Bundle`: schemas referenced by path are
//! inlined, module files are read, and connector database paths are made absolute, so that
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
}

/// Read and parse `path` (YAML or JSON) and everything it references.
pub fn load(path: &Path) -> anyhow::Result<Bundle> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read catalog {}", path.display()))?;
    let mut catalog: Catalog = serde_yaml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("catalog {}: {e}", path.display()))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let source = path.display().to_string();

    for (name, collection) in catalog.collections.iter_mut() {
        if let Value::String(rel) = &collection.schema {
            let file = dir.join(rel);
            let text = std::fs::read_to_string(&file).with_context(|| {
                format!(
                    "{source}: collection {name}: failed to read schema {}",
                    file.display()
                )
            })?;
            collection.schema = serde_yaml::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{source}: collection {name}: schema {}: {e}",
                    file.display()
                )
            })?;
        }
    }

    let mut modules = BTreeMap::new();
    let mut read_module = |task: &str, wasm: &mut WasmEndpoint| -> anyhow::Result<()> {
        if let Some(rel) = &wasm.module {
            let file = dir.join(rel);
            let bytes = std::fs::read(&file).with_context(|| {
                format!("{source}: {task}: failed to read module {}", file.display())
            })?;
            modules.insert(rel.clone(), bytes);
        }
        if let Some(Value::String(db)) = wasm.config.get_mut("path") {
            *db = absolute(&dir, db).display().to_string();
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
    Ok(Bundle {
        source,
        catalog,
        modules,
    })
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
