//! `flow catalog publish|test`.

use super::client::Client;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum CatalogCmd {
    /// Apply a catalog's collections and tasks to a running host. Component files named by
    /// `module` are deployed as plugins named after their task.
    Publish(Source),
    /// Run a catalog's tests in a throwaway embedded host (no server needed). Exits 0 iff
    /// every test passes; prints a diff for each mismatch. Steps: `ingest` (one transaction),
    /// `verify` (after every task caught up), and `capture` (runs a capture until its source
    /// is idle, its HTTP requests answered by the step's canned `responses`, never the network;
    /// materializations and database captures do not run in tests).
    Test(Source),
    /// Print the catalog the host runs (as JSON; modules appear as the plugins they were
    /// deployed as).
    Show,
    /// Delete collections (a derivation is its collection), materializations, captures or
    /// tests from the host's catalog, all in one transaction. Refused, deleting nothing,
    /// while something not named uses one of them (the refusal names each user). Deleted
    /// tasks stop and lose their checkpoints, state and counters; documents stay in their
    /// journals and a materialization's tables in its destination. Asks first, unless --yes.
    Delete {
        /// What to delete, e.g. `acme/to-sqlite acme/customer_totals`.
        #[arg(required = true)]
        names: Vec<String>,
        /// Do not ask (needed when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Args)]
pub struct Source {
    /// The catalog file (YAML or JSON).
    #[arg(long)]
    source: PathBuf,
    /// `test` only: a plugin the catalog names (`wasm: { plugin: NAME }`), as a component
    /// file, deployed in each test's host: `--plugin totals=plugins/customer_totals.wasm`.
    /// Repeat for several. A catalog in a plugin project's folder (`flow plugin init`) has
    /// the project's plugin from its last build (`plugin.wasm`) unless this names it.
    #[arg(long = "plugin", value_name = "NAME=FILE")]
    plugins: Vec<crate::catalog_test::TestPlugin>,
}

impl CatalogCmd {
    pub async fn run(self, client: &Client, output: super::Output) -> anyhow::Result<ExitCode> {
        match self {
            CatalogCmd::Show => {
                let v = client
                    .json(reqwest::Method::GET, "/v1/catalog", None)
                    .await?;
                super::print_json(&v)
            }
            CatalogCmd::Delete { names, yes } => {
                if !super::confirm(
                    &format!("Delete {} from the catalog?", names.join(", ")),
                    yes,
                )? {
                    eprintln!("nothing was deleted");
                    return Ok(ExitCode::FAILURE);
                }
                let body = serde_json::to_vec(&serde_json::json!({ "names": names }))?;
                let v = client
                    .json(
                        reqwest::Method::POST,
                        "/v1/catalog/delete",
                        Some((body, "application/json")),
                    )
                    .await?;
                if output == super::Output::Json {
                    return super::print_json(&v);
                }
                for (what, field) in [
                    ("collection", "collections"),
                    ("materialization", "materializations"),
                    ("capture", "captures"),
                    ("test", "tests"),
                    ("stopped task", "tasks"),
                ] {
                    for name in v[field].as_array().into_iter().flatten() {
                        println!("deleted {what:<16} {}", name.as_str().unwrap_or_default());
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            CatalogCmd::Publish(s) => {
                anyhow::ensure!(
                    s.plugins.is_empty(),
                    "--plugin is for `flow catalog test`; deploy plugins to a host with `flow plugin deploy NAME FILE.wasm`"
                );
                let bundle = crate::catalog::load(&s.source)?;
                let body = serde_json::to_vec(&bundle)?;
                let spinner = super::progress::Progress::spinner(&format!(
                    "publishing {}: checks, plugin compiles, then the swap",
                    s.source.display()
                ));
                let v = client
                    .json(
                        reqwest::Method::POST,
                        "/v1/catalog",
                        Some((body, "application/json")),
                    )
                    .await;
                drop(spinner);
                let v = v?;
                for (what, field) in [
                    ("collection", "collections"),
                    ("derivation", "derivations"),
                    ("materialization", "materializations"),
                    ("capture", "captures"),
                    ("deployed plugin", "deployed"),
                ] {
                    for name in v[field].as_array().into_iter().flatten() {
                        println!("{what:<16} {}", name.as_str().unwrap_or_default());
                    }
                }
                eprintln!("published {}", s.source.display());
                Ok(ExitCode::SUCCESS)
            }
            CatalogCmd::Test(s) => s.run_tests(),
        }
    }
}

impl Source {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        self.run_tests()
    }

    fn run_tests(&self) -> anyhow::Result<ExitCode> {
        for (i, p) in self.plugins.iter().enumerate() {
            anyhow::ensure!(
                !self.plugins[..i].iter().any(|q| q.name == p.name),
                "--plugin {} is given twice: name each plugin once",
                p.name
            );
        }
        let mut plugins = self.plugins.clone();
        let folder = self
            .source
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if folder.join(crate::project::MANIFEST).is_file() {
            let name = crate::project::read_manifest(folder)?.name;
            let built = folder.join(crate::project::COMPONENT);
            if !plugins.iter().any(|p| p.name == name) {
                anyhow::ensure!(
                    built.is_file(),
                    "{} is a plugin project whose plugin {name} is not built yet: `flow plugin \
                     test {}` builds and tests it (or `flow plugin build` it first)",
                    folder.display(),
                    folder.display()
                );
                eprintln!(
                    "plugin {name}: {} (the project's last build; `flow plugin test {}` \
                     builds it first)",
                    built.display(),
                    folder.display()
                );
                plugins.push(crate::catalog_test::TestPlugin::read(name, built)?);
            }
        }
        run_tests(&self.source, &plugins)
    }
}

/// Run the tests of the catalog at `source`, printing each result; exit 0 iff all pass.
pub fn run_tests(
    source: &std::path::Path,
    plugins: &[crate::catalog_test::TestPlugin],
) -> anyhow::Result<ExitCode> {
    run_loaded_tests(&crate::catalog::load(source)?, plugins)
}

/// `run_tests` of a catalog already loaded.
pub fn run_loaded_tests(
    bundle: &crate::catalog::Bundle,
    plugins: &[crate::catalog_test::TestPlugin],
) -> anyhow::Result<ExitCode> {
    let report = crate::catalog_test::run(
        bundle,
        &crate::limits::Limits::default(),
        plugins,
        |name, failure, logs| {
            match failure {
                None => println!("PASS {name}"),
                Some(why) => println!("FAIL {name}\n{why}"),
            }
            for line in logs {
                println!("  log {line}");
            }
        },
    )?;
    println!(
        "catalog tests: {} passed, {} failed",
        report.passed.len(),
        report.failed.len()
    );
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
