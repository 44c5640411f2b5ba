//! Publishing a bundle: every check first (catalog, modules' worlds, referenced plugins,
//! connectors), then the deploys, the persisted catalog and the swap of tasks. Task kinds are
//! known only through `task::KINDS`.

use super::{CATALOG_KEY, Host, HostError, fragment_settings};
use crate::catalog::{self, Bundle};
use crate::connector;
use crate::plugin::Registry;
use crate::task::KINDS;
use anyhow::Context;
use flow_engine::World;
use serde::Serialize;
use std::sync::Arc;

/// Result of a publish.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    pub collections: Vec<String>,
    pub derivations: Vec<String>,
    pub materializations: Vec<String>,
    pub captures: Vec<String>,
    /// Plugins deployed from the bundle's modules, as `name@seq`.
    pub deployed: Vec<String>,
}

impl Host {
    /// Validate a bundle, deploy its modules, merge it into the catalog and restart tasks.
    /// Nothing changes unless every check passes.
    pub fn publish(&self, bundle: Bundle) -> Result<Published, HostError> {
        let _guard = self.publishing.lock().expect("publish lock poisoned");
        let mut update = bundle.catalog.clone();
        let invalid = |task: &str, why: String| {
            HostError::Invalid(format!("{}: {task}: {why}", bundle.source))
        };

        // Modules become plugins named after their task.
        let mut modules: Vec<(String, World, Vec<u8>)> = Vec::new();
        for kind in KINDS {
            for (task, wasm) in (kind.endpoints)(&mut update) {
                let Some(path) = wasm.module.take() else {
                    continue;
                };
                let bytes = bundle.modules.get(&path).ok_or_else(|| {
                    invalid(
                        task,
                        format!("module {path} is not in the published bundle"),
                    )
                })?;
                modules.push((task.clone(), kind.world, bytes.clone()));
                wasm.plugin = Some(task.clone());
            }
        }

        let merged = catalog::merge(&self.catalog().spec, &update);
        let built = Arc::new(
            catalog::build(&bundle.source, merged)
                .map_err(|e| match e {
                    catalog::CatalogError::Invalid(problems) => {
                        catalog::CatalogError::Invalid(bundle.locate(problems))
                    }
                    other => other,
                })
                .map_err(|e| HostError::Invalid(e.to_string()))?,
        );

        // Every module must be a component of the right world before anything is recorded.
        let mut prepared = Vec::new();
        for (task, world, bytes) in &modules {
            let p = self
                .registry
                .prepare(task, bytes)
                .map_err(|e| invalid(task, format!("module: {e}")))?;
            if p.world != *world {
                return Err(invalid(
                    task,
                    format!(
                        "module implements the {} world, but {task} needs a {} plugin",
                        p.world.name(),
                        world.name()
                    ),
                ));
            }
            prepared.push(p);
        }
        // Plugins referenced by name must exist, with the right world.
        for kind in KINDS {
            for def in (kind.tasks)(&built) {
                let (task, plugin) = (def.name.as_str(), def.plugin.as_str());
                if modules.iter().any(|(t, _, _)| t == plugin) {
                    continue;
                }
                match self.registry.live(plugin)? {
                    None => {
                        return Err(invalid(
                            task,
                            format!(
                                "no plugin named '{plugin}' is deployed (deploy it with `flow plugin deploy {plugin} FILE.wasm`)"
                            ),
                        ));
                    }
                    Some(v) if v.world != kind.world => {
                        return Err(invalid(
                            task,
                            format!(
                                "plugin '{plugin}' implements the {} world, but {task} needs a {} plugin",
                                v.world.name(),
                                kind.world.name()
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        // Endpoints name connectors this host has, and hosts an `http` grant can reach.
        for m in built.materializations.values() {
            if let Some(d) = &m.destination {
                connector::check(&d.connector, &d.config).map_err(|why| invalid(&m.name, why))?;
            }
            connector::http::check(&m.http.allow, &m.http.headers)
                .map_err(|why| invalid(&m.name, why))?;
        }
        for c in built.captures.values() {
            if let Some(d) = &c.source {
                connector::check_source(&d.connector, &d.config)
                    .map_err(|why| invalid(&c.name, why))?;
            }
            connector::http::check(&c.http.allow, &c.http.headers)
                .map_err(|why| invalid(&c.name, why))?;
        }
        // A test's canned responses answer requests its capture may make.
        for (test, steps) in &built.tests {
            for (i, step) in steps.iter().enumerate() {
                let catalog::TestStep::Capture(step) = step else {
                    continue;
                };
                let Some(c) = built.captures.get(&step.name) else {
                    continue;
                };
                connector::http::Fixture::new(
                    &c.http.allow,
                    !c.http.headers.is_empty(),
                    crate::task::capture::canned(&step.responses),
                    Arc::new(|_, _| {}),
                )
                .map_err(|why| invalid(&format!("test {test}: step {}", i + 1), why))?;
            }
        }

        // Tables that exist keep their key and their columns' types; collections their
        // partition fields, by the catalog in force and by the journals they have (a
        // collection deleted and written again finds its old journals).
        let mut problems = catalog::evolve::problems(&self.catalog(), &built);
        for c in built.collections.values() {
            let fields: Vec<&str> = c.partitions.iter().map(|(f, _)| f.as_str()).collect();
            let own = crate::journal::head(&self.store, &c.name)? > 0;
            let other = crate::journal::partition::journals(&self.store, &c.name)?
                .into_iter()
                .find(|j| !c.owns_journal(j));
            let was = match (own && !fields.is_empty(), other) {
                (true, _) => {
                    Some("its documents are in one journal, without partitions".to_string())
                }
                (false, Some(j)) => Some(format!("it has documents in journal {j}")),
                (false, None) => None,
            };
            if let Some(was) = was {
                let now = match fields.is_empty() {
                    true => "none".to_string(),
                    false => fields.join(", "),
                };
                problems.push(format!(
                    "collection {}: {was}, and its partition fields would be {now}: they cannot change once it has documents; write a new collection instead",
                    c.name
                ));
            }
        }
        problems.dedup();
        if !problems.is_empty() {
            return Err(HostError::Invalid(format!(
                "{}: {}",
                bundle.source,
                problems.join("\n")
            )));
        }

        // One transaction: the new versions and the catalog become live together, or (on a
        // crash before it commits) neither does.
        crate::storage::pause_point("publish-prepared");
        let spec_bytes =
            serde_json::to_vec(&built.spec).context("failed to serialize the catalog")?;
        let versions = self.store.write({
            let prepared = prepared.clone();
            move |txn| {
                let mut versions = Vec::new();
                for p in &prepared {
                    versions.push(Registry::record(txn, p)?);
                }
                crate::storage::pause_point("publish-recording");
                txn.open_table(crate::storage::META)?
                    .insert(CATALOG_KEY, spec_bytes.as_slice())?;
                Ok(versions)
            }
        })?;
        crate::storage::pause_point("publish-committed");
        let mut deployed = Vec::new();
        for (p, v) in prepared.iter().zip(&versions) {
            self.registry.recorded(p, v);
            deployed.push(format!("{}@{}", v.name, v.seq));
        }
        let published = Published {
            collections: update.collections.keys().cloned().collect(),
            derivations: update
                .collections
                .iter()
                .filter(|(_, c)| c.derive.is_some())
                .map(|(n, _)| n.clone())
                .collect(),
            materializations: update.materializations.keys().cloned().collect(),
            captures: update.captures.keys().cloned().collect(),
            deployed,
        };
        // New collections are reconciled with the store before any task reads them.
        self.fragments.configure(fragment_settings(&built));
        *self.catalog.write().expect("catalog lock poisoned") = built;
        self.restart_tasks(&|_, _| true);
        Ok(published)
    }
}
