//! The plugin registry: immutable versions by content digest, the compile cache, and logs.
//!
//! Every deploy of a plugin name records a version (sequence, digest, world, size, time).
//! A component is refused before it is recorded unless it compiles and implements a known
//! world of `wit/`, so a bad upload never replaces a running version.

mod logs;

pub use logs::{LogBounds, LogLine, PluginLogs, load as load_logs, save as save_logs};

use crate::storage::{PLUGIN_BLOBS, PLUGIN_VERSIONS, Store};
use flow_engine::{Component, Engine, EngineError, LogSink, World};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::sync::Arc;

/// One deployed version of a plugin.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    pub name: String,
    /// 1 for the first deploy of this name, then 2, 3, ...
    pub seq: u64,
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    #[schemars(schema_with = "world_schema")]
    pub world: World,
    pub size_bytes: u64,
    /// RFC 3339, UTC.
    pub deployed_at: String,
    /// Set when this version was made by a rollback: the sequence whose component it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u64>,
}

/// How the API document describes a `World` (flow-engine has no schema support of its own).
fn world_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "enum": ["derivation", "capture", "materialization"]})
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("plugin name: {0}")]
    Name(String),
    #[error("the component is {size} bytes, over the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("plugin {name} implements the {found} world, but this use needs a {expected} plugin")]
    WrongWorld {
        name: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error(transparent)]
    Storage(#[from] anyhow::Error),
}

/// A checked, compiled component, ready to be recorded as a version of `name`.
#[derive(Clone)]
pub struct Prepared {
    pub name: String,
    pub digest: String,
    pub world: World,
    bytes: Arc<Vec<u8>>,
    /// The live version, when it already runs these bytes.
    live: Option<Version>,
}

/// SHA-256 of `bytes` (what version digests are made of).
pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(bytes).to_vec()
}

pub struct Registry {
    store: Arc<Store>,
    engine: Arc<Engine>,
    logs: Arc<PluginLogs>,
    /// `Limits::component_bytes_max`: the largest component a deploy takes.
    component_bytes_max: usize,
}

impl Registry {
    pub fn new(store: Arc<Store>, engine: Arc<Engine>, limits: &crate::limits::Limits) -> Self {
        Registry {
            store,
            engine,
            logs: Arc::new(PluginLogs::new(LogBounds {
                lines_max: limits.plugin_log_lines_max,
                bytes_max: limits.plugin_log_bytes_max,
                line_bytes_max: limits.plugin_log_line_bytes_max,
            })),
            component_bytes_max: limits.component_bytes_max,
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Validate and record a new version of `name`. Deploying the bytes of the live version
    /// again returns that version unchanged.
    pub fn deploy(&self, name: &str, bytes: &[u8]) -> Result<Version, DeployError> {
        let prepared = self.prepare(name, bytes)?;
        let version = self.store.write({
            let prepared = prepared.clone();
            move |txn| Registry::record(txn, &prepared)
        })?;
        self.recorded(&prepared, &version);
        Ok(version)
    }

    /// Everything of a deploy but recording it: checks, compile, world. Nothing is written.
    pub fn prepare(&self, name: &str, bytes: &[u8]) -> Result<Prepared, DeployError> {
        crate::names::check_name(name).map_err(DeployError::Name)?;
        let max = self.component_bytes_max;
        if bytes.len() > max {
            return Err(DeployError::TooLarge {
                size: bytes.len(),
                max,
            });
        }
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
        let live = self.live(name)?.filter(|live| live.digest == digest);
        let world = match &live {
            Some(v) => v.world,
            None => {
                let component = self.engine.compile(&digest, bytes).map_err(|e| match e
                    .downcast::<EngineError>()
                {
                    Ok(e) => DeployError::Engine(e),
                    Err(e) => DeployError::Storage(e),
                })?;
                self.engine.world_of(&component)?
            }
        };
        Ok(Prepared {
            name: name.to_string(),
            digest,
            world,
            bytes: Arc::new(bytes.to_vec()),
            live,
        })
    }

    /// Record a prepared version within the caller's write transaction (so a publish records
    /// its plugins and its catalog at once). A prepared version that is already live is
    /// returned as it is. A pure function of its inputs and the transaction.
    pub fn record(txn: &redb::WriteTransaction, p: &Prepared) -> anyhow::Result<Version> {
        if let Some(live) = &p.live {
            return Ok(live.clone());
        }
        let name = p.name.as_str();
        let mut versions = txn.open_table(PLUGIN_VERSIONS)?;
        let seq = versions
            .range((name, 0)..=(name, u64::MAX))?
            .next_back()
            .transpose()?
            .map(|(k, _)| k.value().1)
            .unwrap_or(0)
            + 1;
        let version = Version {
            name: name.to_string(),
            seq,
            digest: p.digest.clone(),
            world: p.world,
            size_bytes: p.bytes.len() as u64,
            deployed_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                .to_string(),
            rollback_of: None,
        };
        versions.insert((name, seq), serde_json::to_vec(&version)?.as_slice())?;
        txn.open_table(PLUGIN_BLOBS)?
            .insert(p.digest.as_str(), p.bytes.as_slice())?;
        Ok(version)
    }

    /// After the transaction that recorded `version` committed: say so in the plugin's log.
    pub fn recorded(&self, p: &Prepared, version: &Version) {
        if p.live.is_none() {
            self.logs.push(
                &version.name,
                None,
                flow_engine::LogLevel::Info,
                format!("deployed version {} ({})", version.seq, version.digest),
            );
        }
    }

    /// Make an earlier version live again, as a new version that runs its component: `to` a
    /// given sequence, or by default the newest earlier version with a different component.
    pub fn rollback(&self, name: &str, to: Option<u64>) -> Result<Version, DeployError> {
        let history = self.history(name)?;
        let live = history
            .last()
            .ok_or_else(|| DeployError::Name(format!("no plugin named '{name}' is deployed")))?
            .clone();
        let target = match to {
            Some(seq) => history.iter().find(|v| v.seq == seq).ok_or_else(|| {
                DeployError::Name(format!("plugin {name} has no version {seq} (versions 1 to {})", live.seq))
            })?,
            None => history.iter().rev().find(|v| v.digest != live.digest).ok_or_else(|| {
                DeployError::Name(format!("plugin {name} has no earlier version with a different component to roll back to"))
            })?,
        };
        if target.digest == live.digest {
            return Err(DeployError::Name(format!(
                "plugin {name}: version {} already runs that component (live is {})",
                target.seq, live.seq
            )));
        }
        let version = Version {
            name: name.to_string(),
            seq: live.seq + 1,
            digest: target.digest.clone(),
            world: target.world,
            size_bytes: target.size_bytes,
            deployed_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                .to_string(),
            rollback_of: Some(target.seq),
        };
        let record = version.clone();
        self.store.write(move |txn| {
            let mut versions = txn.open_table(PLUGIN_VERSIONS)?;
            let version = &record;
            versions.insert(
                (version.name.as_str(), version.seq),
                serde_json::to_vec(&version)?.as_slice(),
            )?;
            Ok(())
        })?;
        self.logs.push(
            name,
            None,
            flow_engine::LogLevel::Info,
            format!(
                "rolled back to version {} as version {} ({})",
                target.seq, version.seq, version.digest
            ),
        );
        Ok(version)
    }

    /// Every version of `name`, oldest first.
    /// Remove version `seq` of plugin `name` (the caller checked nothing runs it), and the
    /// component's bytes once no version of any plugin has them. The plugin's logs go with
    /// its last version.
    pub fn delete_version(&self, name: &str, seq: u64) -> anyhow::Result<Version> {
        let (plugin, gone) = (name.to_string(), seq);
        let (version, last) = self.store.write(move |txn| {
            let mut versions = txn.open_table(PLUGIN_VERSIONS)?;
            let version: Version = match versions.remove((plugin.as_str(), gone))? {
                Some(v) => serde_json::from_slice(v.value())?,
                None => anyhow::bail!("plugin {plugin} has no version {gone}"),
            };
            let mut shared = false;
            let mut last = true;
            for entry in versions.iter()? {
                let (k, v) = entry?;
                let other: Version = serde_json::from_slice(v.value())?;
                shared |= other.digest == version.digest;
                last &= k.value().0 != plugin;
            }
            if !shared {
                txn.open_table(PLUGIN_BLOBS)?
                    .remove(version.digest.as_str())?;
            }
            Ok((version, last))
        })?;
        if last {
            self.logs.forget(name);
        } else {
            self.logs.push(
                name,
                None,
                flow_engine::LogLevel::Info,
                format!("deleted version {seq} ({})", version.digest),
            );
        }
        Ok(version)
    }

    pub fn history(&self, name: &str) -> anyhow::Result<Vec<Version>> {
        let txn = self.store.read()?;
        let versions = txn.open_table(PLUGIN_VERSIONS)?;
        let mut out = Vec::new();
        for entry in versions.range((name, 0)..=(name, u64::MAX))? {
            out.push(serde_json::from_slice(entry?.1.value())?);
        }
        Ok(out)
    }

    /// The version tasks using `name` run: the newest.
    pub fn live(&self, name: &str) -> anyhow::Result<Option<Version>> {
        Ok(self.history(name)?.pop())
    }

    /// The live version of every plugin, by name.
    pub fn list(&self) -> anyhow::Result<Vec<Version>> {
        let txn = self.store.read()?;
        let versions = txn.open_table(PLUGIN_VERSIONS)?;
        let mut out: Vec<Version> = Vec::new();
        for entry in versions.iter()? {
            let v: Version = serde_json::from_slice(entry?.1.value())?;
            match out.last_mut() {
                Some(last) if last.name == v.name => *last = v,
                _ => out.push(v),
            }
        }
        Ok(out)
    }

    /// The compiled component of the live version of `name`, which must be of `world`.
    pub fn resolve(&self, name: &str, world: World) -> anyhow::Result<(Version, Component)> {
        let version = self
            .live(name)?
            .ok_or_else(|| anyhow::anyhow!("no plugin named '{name}' is deployed (deploy it with `flow plugin deploy {name} FILE.wasm`)"))?;
        if version.world != world {
            return Err(DeployError::WrongWorld {
                name: name.to_string(),
                found: version.world.name(),
                expected: world.name(),
            }
            .into());
        }
        let txn = self.store.read()?;
        let blobs = txn.open_table(PLUGIN_BLOBS)?;
        let bytes = blobs.get(version.digest.as_str())?.ok_or_else(|| {
            anyhow::anyhow!(
                "plugin {name}: component {} is missing from the store",
                version.digest
            )
        })?;
        let component = self.engine.compile(&version.digest, bytes.value())?;
        Ok((version, component))
    }

    pub fn logs(&self) -> &Arc<PluginLogs> {
        &self.logs
    }

    /// Where the plugin `name` writes its log.
    /// Where the instance of plugin `name` that `task` runs writes its log.
    pub fn log_sink(&self, name: &str, task: &str) -> LogSink {
        let logs = self.logs.clone();
        let (name, task) = (name.to_string(), task.to_string());
        Arc::new(move |level, line| logs.push(&name, Some(&task), level, line))
    }
}
