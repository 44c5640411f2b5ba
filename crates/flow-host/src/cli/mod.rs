//! The `flow` command line: a client of the HTTP API, plus `serve` (the host) and
//! `catalog test` (an embedded host).

mod catalog;
mod client;
mod collections;
mod plugin;
mod preview;
mod progress;
mod serve;
mod tasks;

use clap::{Parser, Subcommand};

/// Flow: keep data products fresh with WebAssembly plugins.
///
/// Run `flow serve` to start a host, then publish a catalog, deploy plugins, ingest and read
/// documents with the other commands, which talk to the host over its HTTP API.
#[derive(Parser)]
#[command(name = "flow", version, propagate_version = true)]
pub struct Cli {
    /// Base URL of the host's HTTP API.
    #[arg(
        long,
        global = true,
        env = "FLOW_API_URL",
        default_value = "http://127.0.0.1:8670"
    )]
    api_url: String,
    /// Bearer token for the API, if the host requires one.
    #[arg(long, global = true, env = "FLOW_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How read commands print: `table` (for people) or `json` (the API's answer, for
    /// scripts and `jq`).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "table",
        env = "FLOW_OUTPUT"
    )]
    output: Output,
    /// How the host's own log lines (stderr) are written: `text`, colored only on a
    /// terminal, or `json`, one object per line (time, level, target, fields, message) for
    /// log collectors. `FLOW_LOG` sets the level (`info`; e.g. `flow_host::task=debug`).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "FLOW_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the host: journals, tasks and the HTTP API.
    Serve(serve::Serve),
    /// Publish and test catalogs.
    #[command(subcommand)]
    Catalog(catalog::CatalogCmd),
    /// Write, build and test plugin projects; deploy and inspect plugins on a host.
    #[command(subcommand)]
    Plugin(plugin::PluginCmd),
    /// List, ingest into and read collections.
    #[command(subcommand)]
    Collections(collections::CollectionsCmd),
    /// Show tasks (state, lag in documents, bytes and seconds, document counts, last
    /// error), pause, resume or reset them. Without a subcommand: `list`.
    Tasks(tasks::Tasks),
    /// Print a shell completion script: `flow completions bash > ~/.local/share/bash-completion/completions/flow`,
    /// `flow completions zsh > ~/.zfunc/_flow`, `flow completions fish > ~/.config/fish/completions/flow.fish`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Run one derivation without publishing it and print what it publishes (Flow's
    /// `flowctl preview`), against fixture documents or a running host's collections.
    Preview(preview::Preview),
    /// Benchmarks. `derive`: a pass-through Wasm derivation against the same JSON work in
    /// native Rust, and the ingest -> derivation pipeline. `combiner`: combiner throughput
    /// against plain JSON parsing. `combiner-memory`: peak memory with many distinct keys.
    /// `latency`: ingest-to-derived latency at 1k and 10k docs/s, swap stall, deploy-to-live.
    /// `fragments`: append throughput and fsync latency, sealing per codec, and backfill reads
    /// from fragments against reading the same files directly.
    /// `pipeline`: orders over HTTP -> customer-totals Wasm -> SQLite, beside HTTP ingest
    /// alone and a native one-pass floor; orders and customer updates -> join-customers Wasm
    /// -> SQLite beside its native floor; best of 3 alternating rounds with peak RSS.
    /// `backfill`: a derivation created after `--docs` orders were written reads them all
    /// (fragments, then redb): throughput and peak RSS. `materialize`: per destination (SQLite,
    /// and PostgreSQL when installed: started here in a temp dir), row writes per event into
    /// a fact table, ack -> row visible latency at 1k docs/s, and (PostgreSQL) a backfill of
    /// `--docs` documents beside psql's \copy of the same rows; `capture` (PostgreSQL): a
    /// backfill of a `--docs`-row table beside psql's COPY TO STDOUT, and commit -> captured
    /// document latency at 1k changes/s. `languages`: the customer-totals derivation of `flow
    /// plugin init` in Rust, Python, JavaScript, TypeScript and C (all but Rust built here, so
    /// their toolchains must be installed): docs/s beside native Rust, component size,
    /// deploy-to-live cold and cached.
    /// Build with --release for meaningful numbers (`make bench`).
    Bench {
        #[arg(long, value_enum, default_value = "derive")]
        suite: BenchSuite,
        /// The pass-through plugin component (suite `derive`).
        #[arg(
            long,
            default_value = "plugins/target/wasm32-wasip2/release/passthrough.wasm"
        )]
        plugin: std::path::PathBuf,
        /// Documents per measurement (`combiner-memory`: distinct keys).
        #[arg(long, default_value_t = 200_000)]
        docs: usize,
        /// Spill threshold in MiB (suite `combiner-memory`).
        #[arg(long, default_value_t = 64)]
        spill_mib: usize,
        /// A large (Python) derivation component, to time its deploy-to-live (suite `latency`).
        #[arg(long)]
        python: Option<std::path::PathBuf>,
        /// Run only these measures, e.g. to profile one (comma-separated; suite `pipeline`:
        /// native, totals, ingest, native-join, join; suite `materialize`: writes, latency,
        /// backfill).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Ingest requests in flight at once, as from that many producers (suite `pipeline`,
        /// its orders-only measures; the join's requests always go one at a time, since its
        /// result depends on their order).
        #[arg(long, default_value_t = 1)]
        clients: usize,
    },
}

/// How log lines are written.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How read commands print.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Print the API's answer as JSON (`--output json`).
fn print_json(v: &serde_json::Value) -> anyhow::Result<std::process::ExitCode> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(std::process::ExitCode::SUCCESS)
}

/// Ask `question` on the terminal (true for y/yes); `yes` answers without asking. Without a
/// terminal to ask on, refuses, naming --yes.
fn confirm(question: &str, yes: bool) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if yes {
        return Ok(true);
    }
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "{question} There is no terminal to ask on: pass --yes to confirm"
    );
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchSuite {
    Derive,
    Combiner,
    CombinerMemory,
    Latency,
    Fragments,
    Pipeline,
    Backfill,
    Materialize,
    Capture,
    Languages,
}

/// Entry point of the `flow` binary.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory;
        clap_complete::generate(shell, &mut Cli::command(), "flow", &mut std::io::stdout());
        return std::process::ExitCode::SUCCESS;
    }
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("FLOW_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => {
            use std::io::IsTerminal;
            logs.with_ansi(std::io::stderr().is_terminal()).init()
        }
    }
    let result = match cli.command {
        Command::Serve(s) => s.run(cli.token),
        Command::Catalog(catalog::CatalogCmd::Test(t)) => t.run(),
        // Plugin projects need no host (their tests start embedded ones, outside any runtime).
        Command::Plugin(p) if p.is_local() => p.run_local(),
        Command::Preview(p) => p.run(&cli.api_url, cli.token),
        Command::Bench {
            suite,
            plugin,
            docs,
            spill_mib,
            python,
            only,
            clients,
        } => match suite {
            BenchSuite::Derive => crate::bench::derive::run(&plugin, docs).and_then(|r| {
                r.print();
                let join = plugin.with_file_name("join_customers.wasm");
                crate::bench::derive::join(&join, docs)
            }),
            BenchSuite::Combiner => crate::bench::combiner::throughput(docs),
            BenchSuite::CombinerMemory => crate::bench::combiner::memory(docs, spill_mib << 20),
            BenchSuite::Fragments => crate::bench::fragments::run(docs),
            BenchSuite::Pipeline => crate::bench::pipeline::run(
                plugin.parent().unwrap_or(std::path::Path::new(".")),
                docs,
                &only,
                clients,
            ),
            BenchSuite::Materialize => crate::bench::materialize::run(
                plugin.parent().unwrap_or(std::path::Path::new(".")),
                docs,
                &only,
            ),
            BenchSuite::Backfill => crate::bench::backfill::run(
                plugin.parent().unwrap_or(std::path::Path::new(".")),
                docs,
            ),
            BenchSuite::Capture => crate::bench::capture::run(
                plugin.parent().unwrap_or(std::path::Path::new(".")),
                docs,
            ),
            BenchSuite::Languages => crate::bench::languages::run(
                plugin.parent().unwrap_or(std::path::Path::new(".")),
                docs,
            ),
            BenchSuite::Latency => crate::bench::latency::run(
                plugin.parent().unwrap_or(std::path::Path::new(".")),
                python.as_deref(),
            ),
        }
        .map(|()| std::process::ExitCode::SUCCESS),
        command => {
            let rt = tokio::runtime::Runtime::new().expect("failed to start the async runtime");
            let client = client::Client::new(&cli.api_url, cli.token);
            let output = cli.output;
            rt.block_on(async move {
                match command {
                    Command::Catalog(c) => c.run(&client, output).await,
                    Command::Plugin(p) => p.run(&client, output).await,
                    Command::Collections(c) => c.run(&client, output).await,
                    Command::Tasks(t) => t.run(&client, output).await,
                    Command::Serve(_)
                    | Command::Bench { .. }
                    | Command::Preview(_)
                    | Command::Completions { .. } => {
                        unreachable!("handled above")
                    }
                }
            })
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod test {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        // Every subcommand's arguments are unique and consistent (what completions also build).
        super::Cli::command().debug_assert();
    }
}
