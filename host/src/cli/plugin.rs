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
    println!(
        "{}@{}  {}  {}  {} bytes  {}",
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
            PluginCmd::Deploy { name, file } => {
                let bytes = std::fs::read(&file)
                    .map_err(|e| anyhow::anyhow!("failed to read {}: {e}", file.display()))?;
                let v = client
                    .json(
                        reqwest::Method::POST,
                        &format!("/v1/plugins/{}", segment(&name)),
                        Some((bytes, "application/wasm")),
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
                let path = format!("/v1/plugins/{}/logs?follow={follow}", segment(&name));
                let mut stream = client
                    .send(reqwest::Method::GET, &path, None)
                    .await?
                    .bytes_stream();
                let mut buf = Vec::new();
                while let Some(chunk) = stream.next().await {
                    buf.extend_from_slice(&chunk?);
                    while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=i).collect();
                        let l: serde_json::Value = serde_json::from_slice(&line)?;
                        println!(
                            "{} {:<5} {}",
                            l["time"].as_str().unwrap_or(""),
                            l["level"].as_str().unwrap_or(""),
                            l["message"].as_str().unwrap_or("")
                        );
                        std::io::stdout().flush().ok();
                    }
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
