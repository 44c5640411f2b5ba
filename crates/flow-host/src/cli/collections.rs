//! `flow collections list|ingest|read|infer-schema`.

use super::client::{Client, segment};
use clap::Subcommand;
use futures::StreamExt;
use std::io::{Read, Write};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum CollectionsCmd {
    /// List collections with their keys and sizes.
    List,
    /// Ingest NDJSON documents (one JSON object per line) from FILE or stdin (`-`). All
    /// documents are validated first; on any error nothing is appended.
    Ingest {
        #[arg(long)]
        collection: String,
        /// NDJSON file, or `-` for stdin.
        #[arg(default_value = "-")]
        file: String,
    },
    /// Print documents as NDJSON.
    Read {
        /// The collection, or for one with logical partitions, the journal of one of them
        /// (`acme/ticks/exchange=NYSE`; `flow collections list` shows them). All partitions
        /// of a collection are read one after another with `--from-start` alone.
        #[arg(long)]
        collection: String,
        /// Start at the first document ever written (default: only documents written from now on).
        #[arg(long)]
        from_start: bool,
        /// Keep printing documents as they are written.
        #[arg(long)]
        follow: bool,
    },
    /// Infer a JSON schema from a collection's documents and print it as YAML: the types
    /// seen at each location, the properties every object had as `required`, array items,
    /// and string formats every value had (`date-time`, `date`, `uuid`). A start for a
    /// catalog from real data: review it, then write it as the collection's `schema`.
    InferSchema {
        /// The collection whose documents to read, e.g. `acme/orders`.
        #[arg(long)]
        collection: String,
        /// Read at most this many documents, from the first (default: all of them).
        #[arg(long)]
        docs: Option<usize>,
    },
}

impl CollectionsCmd {
    pub async fn run(self, client: &Client, output: super::Output) -> anyhow::Result<ExitCode> {
        match self {
            CollectionsCmd::List => {
                let v = client
                    .json(reqwest::Method::GET, "/v1/collections", None)
                    .await?;
                if output == super::Output::Json {
                    return super::print_json(&v);
                }
                for c in v["collections"].as_array().into_iter().flatten() {
                    let key: Vec<&str> = c["key"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|k| k.as_str())
                        .collect();
                    let f = &c["fragments"];
                    println!(
                        "{:<40} key=[{}] {}{} bytes, {} persisted in {} fragment{}, {} unsealed",
                        c["name"].as_str().unwrap_or_default(),
                        key.join(", "),
                        if c["derived"].as_bool() == Some(true) {
                            "derived "
                        } else {
                            ""
                        },
                        c["head"],
                        f["persistedThrough"],
                        f["fragments"],
                        if f["fragments"] == 1 { "" } else { "s" },
                        f["unsealedBytes"],
                    );
                    if let Some(e) = f["lastError"].as_str() {
                        println!(
                            "    sealing failed {} times in a row; retrying in {} ms: {e}",
                            f["failures"], f["retryInMs"]
                        );
                    }
                    for skipped in f["skipped"].as_array().into_iter().flatten() {
                        println!("    skipped {}", skipped.as_str().unwrap_or_default());
                    }
                    for j in c["journals"].as_array().into_iter().flatten() {
                        let f = &j["fragments"];
                        println!(
                            "    {} {} bytes, {} persisted in {} fragment{}, {} unsealed",
                            j["name"].as_str().unwrap_or_default(),
                            j["head"],
                            f["persistedThrough"],
                            f["fragments"],
                            if f["fragments"] == 1 { "" } else { "s" },
                            f["unsealedBytes"],
                        );
                    }
                }
            }
            CollectionsCmd::Ingest { collection, file } => {
                let mut body = Vec::new();
                if file == "-" {
                    std::io::stdin().read_to_end(&mut body)?;
                } else {
                    body = std::fs::read(&file)
                        .map_err(|e| anyhow::anyhow!("failed to read {file}: {e}"))?;
                }
                let path = format!("/v1/collections/{}/documents", segment(&collection));
                // Sent in chunks a bar follows; then the host checks every document before it
                // appends any, which the bar shows as waiting.
                let total = body.len() as u64;
                let progress = std::sync::Arc::new(super::progress::Progress::bytes(
                    total,
                    &format!("ingesting into {collection}"),
                ));
                let chunks: Vec<bytes::Bytes> = bytes::Bytes::from(body)
                    .chunks(1 << 20)
                    .map(bytes::Bytes::copy_from_slice)
                    .collect();
                let (shown, mut sent) = (progress.clone(), 0u64);
                let stream = futures::stream::iter(chunks).map(move |c| {
                    sent += c.len() as u64;
                    shown.inc(c.len() as u64);
                    if sent == total {
                        shown.waiting("the host is checking and appending the documents");
                    }
                    Ok::<_, std::io::Error>(c)
                });
                let resp = client
                    .send_body(
                        reqwest::Method::POST,
                        &path,
                        Some((reqwest::Body::wrap_stream(stream), "application/x-ndjson")),
                    )
                    .await;
                drop(progress);
                let v: serde_json::Value = resp?
                    .json()
                    .await
                    .map_err(|e| anyhow::anyhow!("the host sent an invalid answer: {e}"))?;
                eprintln!("ingested {} documents into {collection}", v["docs"]);
            }
            CollectionsCmd::Read {
                collection,
                from_start,
                follow,
            } => {
                if !from_start && !follow {
                    eprintln!(
                        "note: without --from-start or --follow there is nothing to read; add one of them"
                    );
                }
                let offset = if from_start { "0" } else { "end" };
                let name = crate::journal::partition::collection_of(&collection);
                let journal = match name == collection {
                    true => String::new(),
                    false => format!("&journal={}", segment(&collection)),
                };
                let path = format!(
                    "/v1/collections/{}/documents?offset={offset}&follow={follow}{journal}",
                    segment(name)
                );
                let mut stream = client
                    .send(reqwest::Method::GET, &path, None)
                    .await?
                    .bytes_stream();
                let mut out = std::io::stdout().lock();
                while let Some(chunk) = stream.next().await {
                    out.write_all(&chunk?)?;
                    out.flush()?;
                }
            }
            CollectionsCmd::InferSchema { collection, docs } => {
                let mut shape = flow_doc::infer::Shape::default();
                let n = client
                    .read_documents(&collection, docs.unwrap_or(usize::MAX), |doc| {
                        shape.add_document(&doc)
                    })
                    .await?;
                if n == 0 {
                    anyhow::bail!("{collection} has no documents to infer a schema from");
                }
                println!(
                    "# Inferred from {n} document{} of {collection}.\n{}",
                    if n == 1 { "" } else { "s" },
                    serde_yaml::to_string(&shape.to_schema())?
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
