//! `flow plugin deploy|rollback|list|history|logs` against a host, and `init|build|test` of a
//! plugin project without one (`crate::project`).

use super::client::{Client, segment};
use clap::Subcommand;
use futures::StreamExt;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum PluginCmd {
    /// Write a new plugin project into DIR: the plugin's source (a derivation keeping running
    /// totals per customer in host state; with `--world capture` a capture paging through an
    /// orders API by id; with `--world materialization` a table per binding in the host's
    /// database, one row per key, exactly once), `flow.yaml` (a catalog using it, with tests)
    /// and `flow-plugin.yaml` (its name, language and world). Then `flow plugin test DIR`.
    Init {
        /// The project's folder; it must not exist or be empty.
        dir: PathBuf,
        /// The plugin's language: rust (cargo, target wasm32-wasip2), python
        /// (componentize-py), js (componentize-js, installed by npm into the project), ts
        /// (the same, after `jco types` from wit/ and `tsc`) or c (clang for wasm32-wasi;
        /// flow itself writes the bindings and makes the component).
        #[arg(long, value_enum)]
        lang: crate::project::Lang,
        /// The plugin's name, as `flow plugin deploy` and the catalog's `wasm: { plugin }`
        /// use it (default: DIR's folder name).
        #[arg(long)]
        name: Option<String>,
        /// The world the plugin implements: derivation, capture or materialization.
        #[arg(long, value_enum, default_value = "derivation")]
        world: crate::project::World,
    },
    /// Build the plugin project in DIR into DIR/plugin.wasm with its language's toolchain
    /// (cargo for rust, componentize-py for python, `npm run build` for js and ts, clang for
    /// c), saying what to install where one is missing.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Build the plugin project in DIR, then run its flow.yaml's tests in a throwaway
    /// embedded host (no server), the fresh plugin.wasm standing for the project's plugin
    /// name. Exits 0 iff every test passes.
    Test {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Upload a component as a new version of plugin NAME. Prints the version. A component
    /// that does not implement a known world of wit/ is refused with the reason.
    Deploy {
        /// Plugin name, e.g. `acme/totals`.
        name: String,
        /// The component file (.wasm).
        file: PathBuf,
        /// Keep running and redeploy whenever the file changes: rebuild, and tasks using the
        /// plugin switch to the new version at their next transaction boundary.
        #[arg(long)]
        watch: bool,
    },
    /// Make an earlier version live again (as a new version running its component). Tasks
    /// switch at their next transaction boundary, with their state.
    Rollback {
        name: String,
        /// The version to return to (default: the newest earlier one with another component).
        #[arg(long)]
        to: Option<u64>,
    },
    /// Delete a version of a plugin. Refused for the version a task runs (the live one,
    /// while a task of the catalog names the plugin); earlier versions, or any version of a
    /// plugin nothing uses, can go. The last version takes the plugin's logs with it.
    Delete {
        name: String,
        /// The version to delete, by its number (`flow plugin history NAME` lists them).
        seq: u64,
    },
    /// The live version of every plugin.
    List,
    /// Every version of a plugin, oldest first.
    History { name: String },
    /// What a plugin wrote through `log`, stdout or stderr.
    Logs {
        name: String,
        /// Keep printing new lines as they arrive.
        #[arg(long)]
        follow: bool,
    },
}

fn print_version(v: &serde_json::Value) {
    let rollback = v["rollbackOf"]
        .as_u64()
        .map(|s| format!("  (rollback to {s})"))
        .unwrap_or_default();
    println!(
        "{}@{}  {}  {}  {} bytes  {}{rollback}",
        v["name"].as_str().unwrap_or_default(),
        v["seq"],
        v["world"].as_str().unwrap_or_default(),
        v["digest"].as_str().unwrap_or_default(),
        v["sizeBytes"],
        v["deployedAt"].as_str().unwrap_or_default()
    );
}

impl PluginCmd {
    /// Whether the command works on a local project, without a host.
    pub fn is_local(&self) -> bool {
        matches!(
            self,
            PluginCmd::Init { .. } | PluginCmd::Build { .. } | PluginCmd::Test { .. }
        )
    }

    /// Run a local command (`is_local`).
    pub fn run_local(self) -> anyhow::Result<ExitCode> {
        match self {
            PluginCmd::Init {
                dir,
                lang,
                name,
                world,
            } => {
                crate::project::init(&dir, name.as_deref(), lang, world)?;
                eprintln!(
                    "wrote a plugin project to {0}: build and test it with `flow plugin test {0}`",
                    dir.display()
                );
            }
            PluginCmd::Build { dir } => {
                let out = crate::project::build(&dir)?;
                let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
                eprintln!("built {} ({size} bytes)", out.display());
            }
            PluginCmd::Test { dir } => {
                let name = crate::project::read_manifest(&dir)?.name;
                let source = dir.join("flow.yaml");
                let bundle = crate::catalog::load(&source)?;
                anyhow::ensure!(
                    !bundle.catalog.tests.is_empty(),
                    "{} has no tests: add some under `tests:` (ingest, then verify), as `flow plugin init` writes them",
                    source.display()
                );
                let plugin =
                    crate::catalog_test::TestPlugin::read(name, crate::project::build(&dir)?)?;
                eprintln!(
                    "built {} ({} bytes)",
                    plugin.file.display(),
                    plugin.bytes.len()
                );
                return super::catalog::run_loaded_tests(&bundle, &[plugin]);
            }
            _ => unreachable!("not a local command"),
        }
        Ok(ExitCode::SUCCESS)
    }

    pub async fn run(self, client: &Client, output: super::Output) -> anyhow::Result<ExitCode> {
        match self {
            PluginCmd::Init { .. } | PluginCmd::Build { .. } | PluginCmd::Test { .. } => {
                unreachable!("local commands run without a host (`run_local`)")
            }
            PluginCmd::Deploy { name, file, watch } => {
                let deploy = |bytes: Vec<u8>| {
                    let path = format!("/v1/plugins/{}", segment(&name));
                    async move {
                        client
                            .json(
                                reqwest::Method::POST,
                                &path,
                                Some((bytes, "application/wasm")),
                            )
                            .await
                    }
                };
                let read = || {
                    std::fs::read(&file)
                        .map_err(|e| anyhow::anyhow!("failed to read {}: {e}", file.display()))
                };
                if !watch {
                    let bytes = read()?;
                    let spinner = super::progress::Progress::spinner(&format!(
                        "deploying {name}: the host checks and compiles the component"
                    ));
                    let v = deploy(bytes).await;
                    drop(spinner);
                    print_version(&v?);
                    return Ok(ExitCode::SUCCESS);
                }
                eprintln!("watching {} (Ctrl-C to stop)", file.display());
                let mut last: Option<Vec<u8>> = None;
                loop {
                    // A file being rewritten by a build may be partial: deploy only bytes that
                    // are stable across two reads.
                    if let Ok(bytes) = read()
                        && last.as_ref() != Some(&bytes)
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        if read().ok().as_ref() == Some(&bytes) {
                            match deploy(bytes.clone()).await {
                                Ok(v) => print_version(&v),
                                Err(e) => eprintln!("deploy refused: {e:#}"),
                            }
                            last = Some(bytes);
                        }
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                }
            }
            PluginCmd::Rollback { name, to } => {
                let body = serde_json::to_vec(&serde_json::json!({ "to": to }))?;
                let v = client
                    .json(
                        reqwest::Method::POST,
                        &format!("/v1/plugins/{}/rollback", segment(&name)),
                        Some((body, "application/json")),
                    )
                    .await?;
                print_version(&v);
            }
            PluginCmd::Delete { name, seq } => {
                let v = client
                    .json(
                        reqwest::Method::DELETE,
                        &format!("/v1/plugins/{}/versions/{seq}", segment(&name)),
                        None,
                    )
                    .await?;
                if output == super::Output::Json {
                    return super::print_json(&v);
                }
                eprint!("deleted ");
                print_version(&v);
            }
            PluginCmd::List => {
                let v = client
                    .json(reqwest::Method::GET, "/v1/plugins", None)
                    .await?;
                if output == super::Output::Json {
                    return super::print_json(&v);
                }
                for p in v["plugins"].as_array().into_iter().flatten() {
                    print_version(p);
                }
            }
            PluginCmd::History { name } => {
                let v = client
                    .json(
                        reqwest::Method::GET,
                        &format!("/v1/plugins/{}/versions", segment(&name)),
                        None,
                    )
                    .await?;
                if output == super::Output::Json {
                    return super::print_json(&v);
                }
                for p in v["versions"].as_array().into_iter().flatten() {
                    print_version(p);
                }
            }
            PluginCmd::Logs { name, follow } => {
                // Page through what is kept (the API answers at most a page per request),
                // then, with --follow, keep the last request open.
                let mut after = 0u64;
                loop {
                    let path = format!(
                        "/v1/plugins/{}/logs?after={after}&follow={follow}",
                        segment(&name)
                    );
                    let mut stream = client
                        .send(reqwest::Method::GET, &path, None)
                        .await?
                        .bytes_stream();
                    let (mut buf, mut lines) = (Vec::new(), 0usize);
                    while let Some(chunk) = stream.next().await {
                        buf.extend_from_slice(&chunk?);
                        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = buf.drain(..=i).collect();
                            let l: serde_json::Value = serde_json::from_slice(&line)?;
                            after = l["seq"].as_u64().unwrap_or(after);
                            lines += 1;
                            if output == super::Output::Json {
                                // NDJSON, as the API sends it.
                                println!("{l}");
                                continue;
                            }
                            let task = l["task"]
                                .as_str()
                                .map(|t| format!("[{t}] "))
                                .unwrap_or_default();
                            println!(
                                "{} {:<5} {task}{}",
                                l["time"].as_str().unwrap_or(""),
                                l["level"].as_str().unwrap_or(""),
                                l["message"].as_str().unwrap_or("")
                            );
                            std::io::stdout().flush().ok();
                        }
                    }
                    if follow || lines == 0 {
                        break;
                    }
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
