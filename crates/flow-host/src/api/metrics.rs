//! `/metrics`: the host's metrics in the OpenMetrics text format when the scraper asks for
//! it (`Accept: application/openmetrics-text`, as Prometheus does), else in Prometheus's text
//! format 0.0.4. Counters are named `*_total` in both (a family's `# TYPE` line names it
//! without the suffix in OpenMetrics, with it in 0.0.4, each as its format requires).

use crate::journal::fragment::FragmentStatus;
use crate::runtime::{CollectionInfo, TaskStatus};
use crate::task::{BUCKETS_S, Timings};
use std::fmt::Write;
use std::sync::Arc;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family: its samples as (labels, value) pairs, or for a histogram, per labels
/// its cumulative bucket counts and sum.
struct Family {
    /// Without `_total`.
    name: &'static str,
    help: &'static str,
    unit: Option<&'static str>,
    kind: Kind,
    samples: Vec<(String, f64)>,
    histograms: Vec<(String, [u64; 15], f64)>,
}

impl Family {
    fn new(name: &'static str, kind: Kind, help: &'static str) -> Self {
        Family {
            name,
            help,
            unit: None,
            kind,
            samples: Vec::new(),
            histograms: Vec::new(),
        }
    }

    fn unit(mut self, unit: &'static str) -> Self {
        self.unit = Some(unit);
        self
    }

    fn render(&self, out: &mut String, openmetrics: bool) {
        let typed = match (self.kind, openmetrics) {
            (Kind::Counter, false) => format!("{}_total", self.name),
            _ => self.name.to_string(),
        };
        let kind = match self.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {typed} {}", self.help);
        let _ = writeln!(out, "# TYPE {typed} {kind}");
        if openmetrics && let Some(unit) = self.unit {
            let _ = writeln!(out, "# UNIT {typed} {unit}");
        }
        let sample = match self.kind {
            Kind::Counter => format!("{}_total", self.name),
            _ => self.name.to_string(),
        };
        for (labels, value) in &self.samples {
            let _ = writeln!(out, "{sample}{{{labels}}} {value}");
        }
        for (labels, buckets, sum) in &self.histograms {
            for (i, count) in buckets.iter().enumerate() {
                let le = BUCKETS_S
                    .get(i)
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "+Inf".into());
                let _ = writeln!(out, "{}_bucket{{{labels},le=\"{le}\"}} {count}", self.name);
            }
            let _ = writeln!(out, "{}_count{{{labels}}} {}", self.name, buckets[14]);
            let _ = writeln!(out, "{}_sum{{{labels}}} {sum}", self.name);
        }
    }
}

/// A label value escaped as both formats require (backslash, quote, newline).
fn label(key: &str, value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("{key}=\"{escaped}\"")
}

/// The metrics text, and whether it is OpenMetrics.
pub fn render(
    collections: &[CollectionInfo],
    tasks: &[TaskStatus],
    timings: &[(String, Arc<Timings>)],
    openmetrics: bool,
) -> String {
    let mut families = Vec::new();
    let by_collection = |name, kind, help, value: fn(&CollectionInfo) -> u64| {
        let mut f = Family::new(name, kind, help);
        for c in collections {
            f.samples
                .push((label("collection", &c.name), value(c) as f64));
        }
        f
    };
    families.push(
        by_collection(
            "flow_journal_written_bytes",
            Kind::Counter,
            "Bytes written to a collection's journal (its head offset).",
            |c| c.head,
        )
        .unit("bytes"),
    );
    type Fragment = fn(&FragmentStatus) -> u64;
    let gauges: [(&'static str, &'static str, Option<&'static str>, Fragment); 3] = [
        (
            "flow_journal_persisted_bytes",
            "Offset below which a collection's journal is persisted to the fragment store.",
            Some("bytes"),
            |f| f.persisted_through,
        ),
        (
            "flow_journal_unsealed_bytes",
            "Bytes of a collection's journal not yet persisted to the fragment store.",
            Some("bytes"),
            |f| f.unsealed_bytes,
        ),
        (
            "flow_journal_seal_failures",
            "Sealing attempts that failed in a row (0 when the store works).",
            None,
            |f| u64::from(f.failures),
        ),
    ];
    for (name, help, unit, value) in gauges {
        let mut f = Family::new(name, Kind::Gauge, help);
        f.unit = unit;
        for c in collections {
            f.samples
                .push((label("collection", &c.name), value(&c.fragments) as f64));
        }
        families.push(f);
    }
    type Counter = fn(&TaskStatus) -> u64;
    let counters: [(&'static str, &'static str, Counter); 4] = [
        (
            "flow_task_docs_in",
            "Documents a task read (since it was created or reset).",
            |t| t.docs_in,
        ),
        (
            "flow_task_docs_out",
            "Documents a task wrote (since it was created or reset).",
            |t| t.docs_out,
        ),
        (
            "flow_task_docs_failed",
            "Source documents a task skipped or dead-lettered by its error policy.",
            |t| t.docs_failed,
        ),
        (
            "flow_task_transactions",
            "Transactions a task committed (since it was created or reset).",
            |t| t.transactions,
        ),
    ];
    for (name, help, value) in counters {
        let mut f = Family::new(name, Kind::Counter, help);
        for t in tasks {
            f.samples.push((label("task", &t.name), value(t) as f64));
        }
        families.push(f);
    }
    let mut lag_bytes = Family::new(
        "flow_task_lag_bytes",
        Kind::Gauge,
        "Bytes of a task's source it has not read yet.",
    )
    .unit("bytes");
    let mut lag_docs = Family::new(
        "flow_task_lag_documents",
        Kind::Gauge,
        "Documents of a task's source it has not read yet (estimated for a range already in fragments).",
    );
    let mut lag_seconds = Family::new(
        "flow_task_lag_seconds",
        Kind::Gauge,
        "How long ago the first document of a task's source it has not read was written (0 when caught up).",
    )
    .unit("seconds");
    for t in tasks {
        for s in &t.sources {
            let labels = format!(
                "{},{},{}",
                label("task", &t.name),
                label("source", &s.name),
                label("collection", &s.collection)
            );
            lag_bytes.samples.push((labels.clone(), s.lag_bytes as f64));
            lag_docs.samples.push((labels.clone(), s.lag_docs as f64));
            if let Some(secs) = s.lag_seconds {
                lag_seconds.samples.push((labels, secs));
            }
        }
    }
    families.extend([lag_bytes, lag_docs, lag_seconds]);
    let mut state = Family::new(
        "flow_task_state",
        Kind::Gauge,
        "1 for the state a task is in (running, paused, failed, retrying, backpressure, starting, stopped).",
    );
    let mut failed = Family::new(
        "flow_task_failed",
        Kind::Gauge,
        "Whether a task has failed.",
    );
    for t in tasks {
        state.samples.push((
            format!(
                "{},{}",
                label("task", &t.name),
                label("state", t.state.as_str())
            ),
            1.0,
        ));
        failed.samples.push((
            label("task", &t.name),
            f64::from(u8::from(t.state == "failed")),
        ));
    }
    families.extend([state, failed]);
    let mut txns = Family::new(
        "flow_task_transaction_seconds",
        Kind::Histogram,
        "How long a task's transactions that found documents took (since the host started).",
    )
    .unit("seconds");
    let mut calls = Family::new(
        "flow_task_plugin_call_seconds",
        Kind::Histogram,
        "How long each call into a task's plugin took (since the host started).",
    )
    .unit("seconds");
    for (task, t) in timings {
        let (b, sum) = t.transactions.read();
        txns.histograms.push((label("task", task), b, sum));
        let (b, sum) = t.plugin_calls.read();
        calls.histograms.push((label("task", task), b, sum));
    }
    families.extend([txns, calls]);

    let mut out = String::new();
    for f in &families {
        f.render(&mut out, openmetrics);
    }
    if openmetrics {
        out.push_str("# EOF\n");
    }
    out
}
