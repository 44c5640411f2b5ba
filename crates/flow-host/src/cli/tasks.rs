//! `flow tasks [list|show|pause|resume|reset]`.

use super::Output;
use super::client::{Client, segment};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::process::ExitCode;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Tasks {
    #[command(subcommand)]
    command: Option<TasksCmd>,
}

#[derive(Subcommand)]
enum TasksCmd {
    /// Every task: state, documents in and out, lag (the default).
    List,
    /// One task: its sources with their lag, its last error and last failure.
    Show { name: String },
    /// Pause a task at its next transaction boundary. It stays paused across restarts and
    /// publishes until `flow tasks resume`; its sources keep taking documents meanwhile.
    Pause { name: String },
    /// Resume a paused task from its checkpoint: it catches up with what came meanwhile.
    Resume { name: String },
    /// Start a task over from the beginning: a derivation forgets its checkpoints and state
    /// and derives every source document again (appending what it derives), a capture forgets
    /// its connector's checkpoint and captures its source again, a materialization ignores
    /// its destination's checkpoint once and materializes every source document again
    /// (refused for a binding of a collection with `reduce` annotations, whose rows would be
    /// reduced twice). Asks first, unless --yes.
    Reset {
        name: String,
        /// Do not ask (needed when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
    },
}

impl Tasks {
    pub async fn run(self, client: &Client, output: Output) -> anyhow::Result<ExitCode> {
        match self.command.unwrap_or(TasksCmd::List) {
            TasksCmd::List => {
                let v = client.json(reqwest::Method::GET, "/v1/tasks", None).await?;
                if output == Output::Json {
                    return super::print_json(&v);
                }
                let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
                if tasks.is_empty() {
                    eprintln!(
                        "no tasks: publish a catalog with captures, derivations or materializations"
                    );
                }
                for t in &tasks {
                    print_task(t, false);
                }
            }
            TasksCmd::Show { name } => {
                let v = get(client, &name).await?;
                if output == Output::Json {
                    return super::print_json(&v);
                }
                print_task(&v, true);
            }
            TasksCmd::Pause { name } => {
                let v = act(client, &name, "pause").await?;
                if output == Output::Json {
                    return super::print_json(&v);
                }
                eprintln!("{name} is paused: `flow tasks resume {name}` resumes it");
                print_task(&v, false);
            }
            TasksCmd::Resume { name } => {
                let v = act(client, &name, "resume").await?;
                if output == Output::Json {
                    return super::print_json(&v);
                }
                print_task(&v, false);
            }
            TasksCmd::Reset { name, yes } => {
                // Found first, so a typo is told before the question.
                let t = get(client, &name).await?;
                let what = match t["kind"].as_str() {
                    Some("derivation") => {
                        "forget its checkpoints and state and derive every document of its sources again, appending what it derives to its collection"
                    }
                    Some("capture") => {
                        "forget its connector's checkpoint and capture its source again from the start"
                    }
                    Some("materialization") => {
                        "ignore the checkpoint its destination holds and materialize every document of its sources again, each row replaced by its key's last document"
                    }
                    _ => "start over from the beginning",
                };
                if !super::confirm(&format!("Reset task {name}: {what}?"), yes)? {
                    eprintln!("nothing was reset");
                    return Ok(ExitCode::FAILURE);
                }
                let v = act(client, &name, "reset").await?;
                if output == Output::Json {
                    return super::print_json(&v);
                }
                eprintln!(
                    "{name} reset: {}",
                    v["message"].as_str().unwrap_or_default()
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

async fn get(client: &Client, name: &str) -> anyhow::Result<Value> {
    client
        .json(
            reqwest::Method::GET,
            &format!("/v1/tasks/{}", segment(name)),
            None,
        )
        .await
}

async fn act(client: &Client, name: &str, verb: &str) -> anyhow::Result<Value> {
    client
        .json(
            reqwest::Method::POST,
            &format!("/v1/tasks/{}/{verb}", segment(name)),
            None,
        )
        .await
}

/// A task's line (and, `detail`, its sources one per line).
fn print_task(t: &Value, detail: bool) {
    let sources = t["sources"].as_array().cloned().unwrap_or_default();
    let lag_bytes: u64 = sources.iter().filter_map(|s| s["lagBytes"].as_u64()).sum();
    let lag_docs: u64 = sources.iter().filter_map(|s| s["lagDocs"].as_u64()).sum();
    let lag = if lag_bytes == 0 {
        "caught up".to_string()
    } else {
        let mut lag = format!("{} behind", bytes(lag_bytes));
        if lag_docs > 0 {
            lag = format!("{lag_docs} docs ({}) behind", bytes(lag_bytes));
        }
        if let Some(s) = sources
            .iter()
            .filter_map(|s| s["lagSeconds"].as_f64())
            .reduce(f64::max)
        {
            lag.push_str(&format!(", {}", seconds(s)));
        }
        lag
    };
    println!(
        "{:<40} {:<16} {:<12} in={:<10} out={:<10} {lag}",
        t["name"].as_str().unwrap_or(""),
        t["kind"].as_str().unwrap_or(""),
        t["state"].as_str().unwrap_or(""),
        t["docsIn"],
        t["docsOut"],
    );
    if let Some(e) = t["lastError"].as_str() {
        println!("    error: {e}");
    }
    // A capture: what each binding brought in, and when its checkpoint last committed.
    for b in t["captured"].as_array().into_iter().flatten() {
        println!(
            "    binding {} -> {}: {} captured",
            b["binding"],
            b["collection"].as_str().unwrap_or(""),
            b["docs"]
        );
    }
    if let Some(lag) = t["lagMs"].as_u64() {
        println!("    behind its source by {lag} ms");
    }
    if let Some(at) = t["checkpointAtMs"].as_u64() {
        println!("    checkpoint committed at {}", time(at));
    }
    if !detail {
        return;
    }
    println!(
        "    plugin {} version {}, {} transactions, {} documents failed",
        t["plugin"].as_str().unwrap_or(""),
        t["pluginVersion"],
        t["transactions"],
        t["docsFailed"]
    );
    for s in &sources {
        println!(
            "    source {} ({}): offset {}, {} docs / {} behind{}",
            s["name"].as_str().unwrap_or(""),
            s["collection"].as_str().unwrap_or(""),
            s["offset"],
            s["lagDocs"],
            bytes(s["lagBytes"].as_u64().unwrap_or(0)),
            s["lagSeconds"]
                .as_f64()
                .map(|x| format!(", {}", seconds(x)))
                .unwrap_or_default()
        );
    }
    if let Some(f) = t.get("lastFailure").filter(|f| f.is_object()) {
        println!(
            "    last failure at {}: {}",
            time(f["atMs"].as_u64().unwrap_or(0)),
            f["message"].as_str().unwrap_or("")
        );
    }
}

/// `n` bytes as a person reads them: `812 B`, `27.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms behind in time", s * 1000.0)
    } else {
        format!("{s:.1} s behind in time")
    }
}

fn time(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}
