//! `flow plugin deploy|list|history|logs`.

use super::client::{Client, segment};
use clap::Subcommand;
use futures::StreamExt;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum PluginCmd {
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
    pub async fn run(self, client: &Client) -> anyhow::Result<ExitCode> {
        match self {
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
                    print_version(&deploy(read()?).await?);
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
            PluginCmd::List => {
                let v = client
                    .json(reqwest::Method::GET, "/v1/plugins", None)
                    .await?;
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
