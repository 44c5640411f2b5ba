//! `flow catalog test`: run a catalog's tests in throwaway embedded hosts.
//!
//! Each test gets a fresh host (empty collections), so tests cannot see each other's data.
//! An `ingest` step is one transaction; a `capture` step runs a capture, its HTTP requests
//! answered by the step's canned responses, until its source is idle (captures run only in
//! such steps: a test host reaches no real source); after every step, every task catches up
//! (as Flow's driver runs each task that can make progress to completion). A
//! verify reads the whole collection, reduces it fully by key, orders it by key, and compares
//! it with the expected documents: same count, and each expected document a subset of the
//! actual one at the same position. A `materialize` step runs a materialization (also only in
//! such steps) into a SQLite database of the test's own until it caught up, and compares the
//! rows of a table or query the same way.

use crate::catalog::{Bundle, SourceRef, TestStep};
use crate::limits::Limits;
use crate::runtime::{Host, HostOptions};
use anyhow::Context;
use flow_doc::compare;
use serde_json::Value;
use std::time::Duration;

/// How long a verify waits for tasks to catch up before failing.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct TestReport {
    pub passed: Vec<String>,
    /// (test name, readable explanation of the mismatch or failure)
    pub failed: Vec<(String, String)>,
}

/// A plugin a catalog names (`wasm: { plugin: NAME }`), given to its tests as a component
/// file (`flow catalog test --plugin NAME=FILE`).
#[derive(Clone)]
pub struct TestPlugin {
    pub name: String,
    pub file: std::path::PathBuf,
    pub bytes: Vec<u8>,
}

impl std::str::FromStr for TestPlugin {
    type Err = String;

    /// `NAME=FILE`, the file read at once.
    fn from_str(arg: &str) -> Result<Self, String> {
        let (name, file) = arg
            .split_once('=')
            .filter(|(n, f)| !n.is_empty() && !f.is_empty())
            .ok_or_else(|| {
                format!("expected NAME=FILE.wasm (e.g. totals=plugin.wasm), got {arg:?}")
            })?;
        TestPlugin::read(name.to_string(), file.into()).map_err(|e| e.to_string())
    }
}

impl TestPlugin {
    /// Plugin `name` from the component at `file`, read at once.
    pub fn read(name: String, file: std::path::PathBuf) -> anyhow::Result<TestPlugin> {
        let bytes = std::fs::read(&file)
            .map_err(|e| anyhow::anyhow!("failed to read {}: {e}", file.display()))?;
        Ok(TestPlugin { name, file, bytes })
    }
}

/// A throwaway host with `plugins` deployed and `bundle` published.
fn host_for(
    dir: std::path::PathBuf,
    limits: &Limits,
    bundle: &Bundle,
    plugins: &[TestPlugin],
) -> anyhow::Result<std::sync::Arc<Host>> {
    let host = Host::open(throwaway(dir, limits))?;
    for p in plugins {
        host.registry
            .deploy(&p.name, &p.bytes)
            .map_err(|e| anyhow::anyhow!("plugin {} ({}): {e}", p.name, p.file.display()))?;
    }
    host.publish(bundle.clone()).map_err(|e| {
        let e = e.to_string();
        if e.contains("is deployed (deploy it with") {
            // Tests run in a host of their own: the plugin comes from a file.
            anyhow::anyhow!("{e}; in a catalog test, give its component: --plugin NAME=FILE.wasm")
        } else {
            anyhow::anyhow!("{e}")
        }
    })?;
    Ok(host)
}

/// Run every test of `bundle`, `plugins` deployed for it, calling `progress` after each with
/// its name, failure (if any) and what its plugins logged (`plugin (task) level: message`).
/// Errors are for a catalog that cannot be published at all.
pub fn run(
    bundle: &Bundle,
    limits: &Limits,
    plugins: &[TestPlugin],
    mut progress: impl FnMut(&str, Option<&str>, &[String]),
) -> anyhow::Result<TestReport> {
    let scratch = tempfile::tempdir().context("failed to create a scratch directory")?;
    let mut report = TestReport::default();
    if bundle.catalog.tests.is_empty() {
        // Still check that the catalog publishes.
        let host = host_for(scratch.path().join("check"), limits, bundle, plugins)?;
        host.shutdown();
        return Ok(report);
    }
    for (i, (name, steps)) in bundle.catalog.tests.iter().enumerate() {
        let dir = scratch.path().join(format!("test-{i}"));
        let host = host_for(dir, limits, bundle, plugins)?;
        let destinations = scratch.path().join(format!("test-{i}-destinations"));
        let outcome = run_steps(&host, &destinations, steps);
        host.shutdown();
        let logs: Vec<String> = host
            .registry
            .logs()
            .task_lines()
            .into_iter()
            .map(|(plugin, l)| {
                format!(
                    "{plugin} ({}) {}: {}",
                    l.task.unwrap_or_default(),
                    l.level,
                    l.message
                )
            })
            .collect();
        match outcome {
            Ok(()) => {
                progress(name, None, &logs);
                report.passed.push(name.clone());
            }
            Err(why) => {
                progress(name, Some(&why), &logs);
                report.failed.push((name.clone(), why));
            }
        }
    }
    Ok(report)
}

/// Run a test's steps on `host`; its materializations write into databases in `dir`.
fn run_steps(host: &Host, dir: &std::path::Path, steps: &[TestStep]) -> Result<(), String> {
    for (i, step) in steps.iter().enumerate() {
        let (what, description) = match step {
            TestStep::Ingest(d) => (format!("ingest into {}", d.collection), &d.description),
            TestStep::Verify(d) => (format!("verify {}", d.collection), &d.description),
            TestStep::Capture(c) => (format!("capture {}", c.name), &c.description),
            TestStep::Materialize(m) => (format!("materialize {}", m.name), &m.description),
        };
        let at = match description {
            Some(d) => format!("step {} ({what}: {d})", i + 1),
            None => format!("step {} ({what})", i + 1),
        };
        match step {
            TestStep::Ingest(d) => {
                host.ingest(d.collection.name(), d.documents.clone())
                    .map_err(|e| format!("{at}: {e}"))?;
            }
            TestStep::Capture(c) => {
                host.run_test_capture(&c.name, &c.responses)
                    .map_err(|e| format!("{at}: {e:#}"))?;
            }
            TestStep::Verify(d) => {
                // With a test clock: work that waits for a `readDelay` moves time forward.
                host.wait_idle_advancing_clock(CATCH_UP_TIMEOUT)
                    .map_err(|e| format!("{at}: {e}"))?;
                let actual =
                    reduced_documents(host, &d.collection).map_err(|e| format!("{at}: {e:#}"))?;
                let diff = diff_documents(&d.documents, &actual);
                if !diff.is_empty() {
                    return Err(format!("{at}: documents differ:\n{}", diff.join("\n")));
                }
            }
            TestStep::Materialize(m) => {
                host.wait_idle_advancing_clock(CATCH_UP_TIMEOUT)
                    .map_err(|e| format!("{at}: {e}"))?;
                let db = dir.join(format!(
                    "{}.sqlite",
                    m.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
                ));
                host.run_test_materialization(&m.name, &db)
                    .map_err(|e| format!("{at}: {e:#}"))?;
                let actual = materialized_rows(&db, m).map_err(|e| format!("{at}: {e:#}"))?;
                let expected: Vec<Value> = m.rows.iter().cloned().map(Value::Object).collect();
                let diff = diff_rows(&expected, &actual, "row", "the table");
                if !diff.is_empty() {
                    return Err(format!("{at}: rows differ:\n{}", diff.join("\n")));
                }
            }
        }
        // As Flow's driver does: every task that can make progress runs to completion after
        // each step, so a later step sees everything an earlier one caused; time moves
        // forward only for a verify (work behind a `readDelay` waits for it, so what later
        // steps ingest meanwhile is read first, as the delay intends).
        host.wait_quiet(CATCH_UP_TIMEOUT)
            .map_err(|e| format!("{at}: {e}"))?;
    }
    Ok(())
}

/// Every document of `collection` from its beginning (of the logical partitions its selector
/// names, if it has one; of all, in publish-time order, otherwise), fully reduced by key (its
/// `reduce` annotations), in key order, without `_meta`; deleted keys are left out (by a root
/// delete, or a last change that was a deletion: `_meta/op` `d`).
pub fn reduced_documents(host: &Host, source: &SourceRef) -> anyhow::Result<Vec<Value>> {
    let collection = source.name();
    let catalog = host.catalog();
    let c = catalog.collection(collection)?;
    let selector = c
        .selector(source.partitions())
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut combiner =
        flow_doc::Combiner::new(vec![c.read_binding()], host.limits.combiner_spill_bytes);
    let mut ops = crate::catalog::LastOps::default();
    host.for_each_document_of(c, selector.as_ref(), |mut doc| {
        // Checked by the read schema as a reader checks it (`_meta` aside; a deletion by
        // its key alone, as on write), combined with its `op`, so a deletion's annotations
        // and a key whose last change was a deletion come out as a materialization has them.
        c.check_read_document(&mut doc)
            .map_err(|e| anyhow::anyhow!("a document of {collection} {e}"))?;
        // Its change is the key's last one now: a write supersedes a deletion before it.
        ops.add(|| c.key_of(&doc).to_string(), &doc);
        Ok(combiner.add_valid(0, doc, false)?)
    })?;
    let mut out = Vec::new();
    for d in combiner.drain(true)? {
        let mut d = d?;
        let key = c.key_of(&d.doc).to_string();
        ops.apply(|| key, &mut d.doc);
        if d.deleted || crate::journal::op_of(&d.doc) == Some("d") {
            continue;
        }
        if let Some(m) = d.doc.as_object_mut() {
            m.remove("_meta");
        }
        out.push(d.doc);
    }
    Ok(out)
}

/// The rows a `materialize` step compares, each an object of its columns: the table's in the
/// order of their values (column by column), or the query's as it returns them.
fn materialized_rows(
    db: &std::path::Path,
    step: &crate::catalog::TestMaterialize,
) -> anyhow::Result<Vec<Value>> {
    let (query, sort) = match (&step.table, &step.query) {
        (Some(t), _) => (
            format!("SELECT * FROM \"{}\"", t.replace('"', "\"\"")),
            true,
        ),
        (None, Some(q)) => (q.clone(), false),
        (None, None) => anyhow::bail!("it names neither `table` nor `query`"),
    };
    let (columns, mut rows) =
        crate::connector::sqlite::read_rows(db, &query).with_context(|| match &step.table {
            Some(t) => format!("table {t:?} cannot be read"),
            None => format!("query {query:?} cannot be run"),
        })?;
    if sort {
        rows.sort_by(|a, b| {
            a.iter()
                .zip(b)
                .map(|(x, y)| compare(x, y))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    }
    Ok(rows
        .into_iter()
        .map(|r| Value::Object(columns.iter().cloned().zip(r).collect()))
        .collect())
}

/// Readable differences between expected and actual documents; empty if they match.
pub fn diff_documents(expected: &[Value], actual: &[Value]) -> Vec<String> {
    diff_rows(expected, actual, "document", "the collection")
}

/// Readable differences between expected and actual `item`s (documents, rows) of `whole`;
/// empty if they match: same count, and each expected one a subset of the actual one at the
/// same position.
fn diff_rows(expected: &[Value], actual: &[Value], item: &str, whole: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, e) in expected.iter().enumerate() {
        match actual.get(i) {
            None => out.push(format!(
                "  {item} {}: expected {e}, but {whole} has only {} {item}s",
                i + 1,
                actual.len()
            )),
            Some(a) => {
                let mut at = Vec::new();
                subset_diff("", e, a, &mut at);
                if !at.is_empty() {
                    out.push(format!("  {item} {}: {}", i + 1, a));
                    out.extend(at.into_iter().map(|l| format!("    {l}")));
                }
            }
        }
    }
    for (i, a) in actual.iter().enumerate().skip(expected.len()) {
        out.push(format!("  {item} {}: unexpected {a}", i + 1));
    }
    out
}

fn subset_diff(at: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    let loc = if at.is_empty() { "/" } else { at };
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let child = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                match a.get(k) {
                    Some(av) => subset_diff(&child, ev, av, out),
                    None => out.push(format!("at {child}: expected {ev}, but it is missing")),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                subset_diff(&format!("{at}/{i}"), ev, av, out);
            }
        }
        (e, a) => {
            if compare(e, a) != std::cmp::Ordering::Equal {
                out.push(format!("at {loc}: expected {e}, actual {a}"));
            }
        }
    }
}

/// A throwaway host: no tasks that act outside Flow (they would write to real destinations).
fn throwaway(data_dir: std::path::PathBuf, limits: &Limits) -> HostOptions {
    HostOptions::new(data_dir)
        .limits(limits.clone())
        .run_external_tasks(false)
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_cases() {
        let cases: &[(Value, Value, &[&str])] = &[
            (json!([{"a": 1}]), json!([{"a": 1, "b": 2}]), &[]),
            (json!([{"a": 1.0}]), json!([{"a": 1}]), &[]),
            (
                json!([{"a": 1}]),
                json!([{"a": 2}]),
                &["at /a: expected 1, actual 2"],
            ),
            (
                json!([{"a": {"b": [1, 2]}}]),
                json!([{"a": {"b": [1, 3]}}]),
                &["at /a/b/1: expected 2, actual 3"],
            ),
            (
                json!([{"a": [1]}]),
                json!([{"a": [1, 2]}]),
                &["at /a: expected [1], actual [1,2]"],
            ),
            (
                json!([{"x": 1}]),
                json!([{}]),
                &["at /x: expected 1, but it is missing"],
            ),
            (
                json!([{}, {}]),
                json!([{}]),
                &["expected {}, but the collection has only 1 documents"],
            ),
            (json!([]), json!([{"z": 1}]), &["unexpected {\"z\":1}"]),
        ];
        for (e, a, expect) in cases {
            let diff = diff_documents(e.as_array().unwrap(), a.as_array().unwrap()).join("\n");
            for want in *expect {
                assert!(diff.contains(want), "{want:?} not in {diff:?}");
            }
            assert_eq!(diff.is_empty(), expect.is_empty(), "{diff}");
        }
    }
}
