//! `flow preview`: run one derivation, unpublished, and print what it publishes.

use super::client::Client;
use crate::catalog::TestDocs;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Run one derivation of a catalog without publishing it, in a throwaway embedded host, and
/// print what it publishes (NDJSON on stdout; a line per input transaction on stderr, after
/// the documents it published). Every input document reaches the derivation as written.
/// Input: a fixture file, or what a running host's source collections hold now (`--live`).
#[derive(Args)]
pub struct Preview {
    /// The catalog file (YAML or JSON).
    #[arg(long)]
    source: PathBuf,
    /// The derivation (its collection's name), e.g. `acme/customer-totals`.
    #[arg(long)]
    name: String,
    /// A YAML or JSON file of input transactions, in order, each
    /// `{collection: SOURCE, documents: [...]}` (as a test's `ingest` step).
    #[arg(long, conflicts_with = "live", required_unless_present = "live")]
    fixture: Option<PathBuf>,
    /// Read the sources' documents from the host at --api-url instead (from their first,
    /// in publish-time order; that host is only read).
    #[arg(long)]
    live: bool,
    /// With --live: at most this many documents per source (default 10,000).
    #[arg(long, default_value_t = 10_000)]
    docs: usize,
}

impl Preview {
    pub fn run(self, api_url: &str, token: Option<String>) -> anyhow::Result<ExitCode> {
        let bundle = crate::catalog::load(&self.source)?;
        let input: Vec<TestDocs> = match &self.fixture {
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| anyhow::anyhow!("failed to read {}: {e}", f.display()))?;
                serde_yaml::from_str(&text).map_err(|e| {
                    anyhow::anyhow!(
                        "{}: not a list of {{collection, documents}} transactions: {e}",
                        f.display()
                    )
                })?
            }
            None => {
                let sources = crate::preview::sources_of(&bundle, &self.name);
                let client = Client::new(api_url, token);
                let rt = tokio::runtime::Runtime::new()?;
                let read = rt.block_on(read_live(&client, &sources, self.docs))?;
                crate::preview::live_input(read, 4096)
            }
        };
        let report = crate::preview::run(
            &bundle,
            &self.name,
            &input,
            &crate::limits::Limits::default(),
            |event| match event {
                crate::preview::Event::Published(doc) => println!("{doc}"),
                crate::preview::Event::Transaction {
                    index,
                    collection,
                    inputs,
                    outputs,
                } => eprintln!(
                    "transaction {}: {inputs} document{} into {collection} -> {outputs} published",
                    index + 1,
                    plural(inputs)
                ),
            },
        )?;
        eprintln!(
            "preview of {}: {} input document{} in {} transaction{} -> {} document{} published",
            self.name,
            report.inputs,
            plural(report.inputs),
            report.transactions,
            plural(report.transactions),
            report.outputs,
            plural(report.outputs)
        );
        Ok(ExitCode::SUCCESS)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Up to `docs` documents of each source, from the first.
async fn read_live(
    client: &Client,
    sources: &[String],
    docs: usize,
) -> anyhow::Result<Vec<(String, Vec<serde_json::Value>)>> {
    let mut out = Vec::new();
    for source in sources {
        let mut read = Vec::new();
        client
            .read_documents(source, docs, |d| read.push(d))
            .await?;
        out.push((source.clone(), read));
    }
    Ok(out)
}
