//! The capture task: one per capture. Protocol steps: `README.md`.
//!
//! `CaptureTask::start` opens it; `transaction` runs one poll, marked by comments.

use crate::catalog::{
    Built, BuiltCapture, BuiltCollection, Combining, ErrorPolicy, TestResponse, Unprepared,
};
use crate::connector::{self, Destination};
use crate::journal;
use crate::storage::CAPTURE_CHECKPOINTS;
use crate::task::{self, CapturedStatus, Kind, Task, TaskCtx, TaskDef};
use flow_engine::{Capture, World, source_api};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub(crate) const KIND: Kind = Kind {
    name: "capture",
    world: World::Capture,
    external: true,
    endpoints: |catalog| {
        catalog
            .captures
            .iter_mut()
            .map(|(name, c)| (name, &mut c.endpoint.wasm))
            .collect()
    },
    tasks: |catalog| {
        catalog
            .captures
            .values()
            .map(|c| {
                let (catalog, spec) = (catalog.clone(), c.clone());
                TaskDef {
                    name: c.name.clone(),
                    plugin: c.plugin.clone(),
                    limits: c.limits.clone(),
                    run: Box::new(move |ctx| {
                        let plugin = spec.plugin.clone();
                        task::run(ctx, &plugin, |ctx| {
                            CaptureTask::start(ctx, &catalog, &spec, None)
                        })
                    }),
                }
            })
            .collect()
    },
};

/// The first wait after a poll that found the source idle; it doubles while the source stays
/// idle, up to the capture's `interval`. Short, so a source that changes now and then is read
/// within milliseconds (a quiet one is polled less and less often).
const IDLE_FIRST: Duration = Duration::from_millis(10);

/// A running capture.
struct CaptureTask {
    spec: Arc<BuiltCapture>,
    /// The target collection of each binding.
    targets: Vec<Arc<BuiltCollection>>,
    /// The source database its endpoint names, if any (granted to the plugin as `sql`): each
    /// poll runs in one transaction of it.
    source: Option<Box<dyn Destination>>,
    instance: Capture,
    /// Whether the server of the plugin's last HTTP request was unavailable.
    http_down: connector::http::Down,
    /// How long to sleep after the last poll, which found the source idle.
    wait: Duration,
    /// The wait after the next idle poll.
    next_idle: Duration,
    /// Where records of refused documents go, under `onError: deadLetter`.
    dead_letters: Option<Arc<BuiltCollection>>,
    /// The plugin version it runs: (sequence, digest), for dead-letter records.
    version: (u64, String),
}

impl Task for CaptureTask {
    fn outputs(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .targets
            .iter()
            .chain(&self.dead_letters)
            .map(|c| c.name.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// A capture reads no journal.
    fn sources(&self) -> Vec<(String, String, u64)> {
        Vec::new()
    }

    fn transaction(&mut self, ctx: &TaskCtx) -> anyhow::Result<usize> {
        transaction(ctx, self)
    }

    /// Asked only after a poll that found the source idle (one that found more returns at
    /// least 1, and the loop polls again at once).
    fn idle_wait(&self) -> Option<Duration> {
        Some(self.wait)
    }
}

impl CaptureTask {
    /// Open the source database its endpoint names (if any), instantiate the plugin with its
    /// grants, and once the task is the only run (`TaskCtx::ready`), `open` it with the last
    /// committed checkpoint. Its `http` is the host's client for the endpoint's allow-list,
    /// unless `fixture` (a catalog test's canned responses) answers instead.
    fn start(
        ctx: &TaskCtx,
        catalog: &Built,
        spec: &Arc<BuiltCapture>,
        fixture: Option<(Vec<connector::http::Canned>, connector::http::Misses)>,
    ) -> anyhow::Result<(Self, u64)> {
        let targets = spec
            .bindings
            .iter()
            .map(|b| catalog.collection(&b.target).cloned())
            .collect::<Result<Vec<_>, _>>()?;
        let source = match &spec.source {
            Some(d) => Some(connector::open_source(&d.connector, &d.config)?),
            None => None,
        };
        let (version, component) = ctx.registry.resolve(&spec.plugin, World::Capture)?;
        let engine = ctx.registry.engine().clone();
        let log = ctx.registry.log_sink(&spec.plugin, &ctx.name);
        let mut instance =
            Capture::instantiate(&engine, &component, log.clone(), &ctx.limits.sandbox())?;
        instance.set_call_timer(ctx.call_timer());
        if let Some(sql) = source.as_ref().and_then(|d| d.grant().sql()) {
            instance.set_sql(Some(sql));
        }
        let http_down = match fixture {
            None => {
                let http = connector::http::Http::new(&spec.http.allow, &spec.http.headers, log)?;
                let down = http.down();
                instance.set_http(Some(Box::new(http)));
                down
            }
            Some((canned, misses)) => {
                let fixture = connector::http::Fixture::new(
                    &spec.http.allow,
                    !spec.http.headers.is_empty(),
                    canned,
                    log,
                )
                .map_err(anyhow::Error::msg)?
                .with_misses(misses);
                instance.set_http(Some(Box::new(fixture)));
                connector::http::Down::default()
            }
        };
        // Until here nothing read the checkpoint: a swapped-out run of this task may still be
        // committing its last poll.
        ctx.ready();

        let checkpoint = ctx.store.capture_checkpoint(&ctx.name)?;
        let open_spec = source_api::CaptureSpec {
            name: spec.name.clone(),
            config: spec.config.to_string(),
            bindings: spec
                .bindings
                .iter()
                .map(|b| source_api::BindingSpec {
                    target: b.target.clone(),
                    resource: b.resource.to_string(),
                })
                .collect(),
        };
        connector::in_txn(source.as_deref(), || {
            instance
                .open(&open_spec, checkpoint.as_deref())
                .map_err(|e| anyhow::anyhow!("open: {e}"))
        })?;
        let from = match &checkpoint {
            Some(cp) => format!("checkpoint {}", task::truncate(cp)),
            None => "the beginning (no checkpoint yet)".into(),
        };
        ctx.log_running(&spec.plugin, version.seq, &from);
        let captured = spec
            .bindings
            .iter()
            .enumerate()
            .map(|(i, b)| CapturedStatus {
                binding: i as u32,
                collection: b.target.clone(),
                docs: 0,
            })
            .collect();
        ctx.statuses.update(&ctx.name, |s| s.captured = captured);
        let task = CaptureTask {
            spec: spec.clone(),
            targets,
            source,
            instance,
            http_down,
            wait: IDLE_FIRST,
            next_idle: IDLE_FIRST,
            dead_letters: spec
                .dead_letters
                .as_ref()
                .map(|dl| catalog.collection(dl).cloned())
                .transpose()?,
            version: (version.seq, version.digest.clone()),
        };
        Ok((task, version.seq))
    }
}

/// Most polls a catalog test's `capture` step runs before it gives up on the capture ever
/// finding its source idle.
const TEST_POLLS_MAX: usize = 10_000;

/// A test step's responses as the `http` capability answers them: a body that is not a
/// string is its JSON, with `content-type: application/json` unless a header says otherwise.
pub(crate) fn canned(responses: &[TestResponse]) -> Vec<connector::http::Canned> {
    responses
        .iter()
        .map(|r| {
            let mut headers: Vec<(String, String)> = r
                .headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect();
            let body = match &r.body {
                serde_json::Value::String(text) => text.clone().into_bytes(),
                json => {
                    if !headers.iter().any(|(n, _)| n == "content-type") {
                        headers.push(("content-type".into(), "application/json".into()));
                    }
                    json.to_string().into_bytes()
                }
            };
            connector::http::Canned {
                method: r.method.clone(),
                url: r.url.clone(),
                status: r.status,
                headers,
                body,
            }
        })
        .collect()
}

/// Run capture `spec` as a catalog test's `capture` step does: from its committed
/// checkpoint, one transaction per poll, until a poll finds the source idle; its HTTP
/// requests answered by `responses`.
pub(crate) fn run_test_step(
    ctx: &TaskCtx,
    catalog: &Built,
    spec: &Arc<BuiltCapture>,
    responses: &[TestResponse],
) -> anyhow::Result<()> {
    let canned = canned(responses);
    let misses = connector::http::Misses::default();
    let (mut task, _) = CaptureTask::start(ctx, catalog, spec, Some((canned, misses.clone())))?;
    for _ in 0..TEST_POLLS_MAX {
        let idle = transaction(ctx, &mut task)? == 0;
        // A request no response answered fails the step, even when the plugin went on.
        if let Some(miss) = misses.first() {
            anyhow::bail!("{miss}");
        }
        if idle {
            return Ok(());
        }
    }
    anyhow::bail!("its source was still not idle after {TEST_POLLS_MAX} polls")
}

/// Run one poll as one transaction: what it captured and its checkpoint commit together, or
/// (on any error) nothing of it does. Returns how many documents it captured, at least 1
/// when the source said it has more (the loop polls again at once), 0 when it is idle.
fn transaction(ctx: &TaskCtx, task: &mut CaptureTask) -> anyhow::Result<usize> {
    // 1. poll
    let began = std::time::Instant::now();
    let (polled, source_ms) = connector::in_txn(task.source.as_deref(), || {
        task.instance
            .poll()
            .map_err(|e| anyhow::anyhow!("poll: {e}"))
    })
    .map_err(|e| unavailable(task, e))?;

    // 2. check: caps, the checkpoint, every document against its binding's target
    let polled_at = began.elapsed();
    let Checked {
        combined,
        per_binding,
        n: n_in,
        refused,
    } = check(ctx, task, polled.documents)?;
    let dead_letters = set_aside(ctx, task, &refused)?;
    let checked_at = began.elapsed();
    let checkpoint = polled
        .checkpoint
        .map(|cp| check_checkpoint(ctx, cp))
        .transpose()?;

    // 3. commit: the documents and the checkpoint in one redb transaction
    let has_checkpoint = checkpoint.is_some();
    if n_in > 0 || has_checkpoint {
        let mut appends = Vec::new();
        let mut n_out = 0;
        for (target, combining) in combined {
            let docs = combining
                .finish()
                .map_err(|e| anyhow::anyhow!("combining documents of {target}: {e}"))?;
            n_out += docs.len();
            let collection = task
                .targets
                .iter()
                .find(|t| t.name == target)
                .ok_or_else(|| anyhow::anyhow!("no binding captures into {target}"))?;
            // Into the journal of each document's logical partition, if it has them.
            appends.extend(
                collection
                    .by_journal(docs)
                    .map_err(|e| anyhow::anyhow!("documents of {target}: {e}"))?,
            );
        }
        if let Some(dl) = &task.dead_letters
            && !dead_letters.is_empty()
        {
            appends.extend(
                dl.by_journal(dead_letters)
                    .map_err(|e| anyhow::anyhow!("dead letters of {}: {e}", dl.name))?,
            );
        }
        let appended = appends.iter().any(|(_, d)| !d.is_empty());
        let name = ctx.name.clone();
        let clock = ctx.store.clock.clone();
        let job = move |txn: &redb::WriteTransaction| {
            for (target, docs) in &appends {
                if !docs.is_empty() {
                    journal::append_encoded(txn, target, docs, &clock)?;
                }
            }
            if let Some(cp) = &checkpoint {
                txn.open_table(CAPTURE_CHECKPOINTS)?
                    .insert(name.as_str(), cp.as_str())?;
            }
            Ok(())
        };
        crate::storage::pause_point("capture-commit");
        ctx.store.write(job)?;
        tracing::debug!(
            task = %ctx.name,
            docs = n_in,
            "poll {polled_at:?}, check {:?}, commit {:?}",
            checked_at - polled_at,
            began.elapsed() - checked_at
        );
        if appended {
            ctx.journals.notify();
        }
        let now = task::now_ms();
        ctx.statuses.update(&ctx.name, |s| {
            s.transactions += 1;
            s.docs_in += n_in as u64;
            s.docs_out += n_out as u64;
            s.docs_failed += refused.len() as u64;
            for (b, n) in &per_binding {
                if let Some(c) = s.captured.get_mut(*b) {
                    c.docs += n;
                }
            }
            if has_checkpoint {
                s.checkpoint_at_ms = Some(now);
            }
            if let Some(ms) = source_ms {
                s.lag_ms = Some(now.saturating_sub(ms));
            }
        });
    }
    if polled.idle && n_in == 0 {
        ctx.statuses.update(&ctx.name, |s| {
            if s.lag_ms.is_some() {
                s.lag_ms = Some(0);
            }
        });
    }

    // 4. back off while the source is idle
    if polled.idle {
        task.wait = task.next_idle;
        task.next_idle = (task.wait * 2).min(Duration::from_millis(task.spec.interval_ms));
        Ok(0)
    } else {
        task.next_idle = IDLE_FIRST.min(Duration::from_millis(task.spec.interval_ms));
        Ok(n_in.max(1))
    }
}

/// A poll that failed because its source did not answer (its database connection is gone,
/// or its last HTTP request found no server) is `Unavailable`: the task retries with
/// backoff, from its checkpoint, instead of failing.
fn unavailable(task: &CaptureTask, e: anyhow::Error) -> anyhow::Error {
    if connector::is_unavailable(&e) {
        return e;
    }
    let why = match &task.source {
        Some(d) if !d.available() => Some("its database does not answer".to_string()),
        _ => task.http_down.why(),
    };
    match why {
        Some(why) => anyhow::Error::new(connector::Unavailable(format!(
            "the source is unavailable ({why}): {e:#}"
        ))),
        None => e,
    }
}

/// A poll's documents, checked and combined by key per target collection; how many each
/// binding brought (by binding index); how many there were; the documents the policy set
/// aside (`skip`, `deadLetter`).
struct Checked {
    combined: BTreeMap<String, Combining>,
    per_binding: Vec<(usize, u64)>,
    n: usize,
    refused: Vec<Refused>,
}

/// A document its target refused, set aside by the capture's `onError`.
struct Refused {
    binding: usize,
    /// Where it was in the poll, 0-based.
    at: usize,
    error: String,
    text: bytes::Bytes,
}

/// Check one poll's documents: the call's output caps, then each is JSON, names a binding,
/// and is valid for that binding's target (schema, size, key). Under `onError: fail` the
/// first that is not fails the poll, naming the binding, the document and the reason; under
/// `skip` or `deadLetter` a document its target refuses is set aside (one that names no
/// binding still fails the poll: the connector is broken, not the document).
fn check(
    ctx: &TaskCtx,
    task: &CaptureTask,
    docs: Vec<source_api::Captured>,
) -> anyhow::Result<Checked> {
    let bytes = docs.iter().map(|d| d.document.len()).sum();
    task::check_output_caps(ctx, "poll", docs.len(), bytes)?;
    let n = docs.len();
    // Parsed and checked on every core (the first failure in poll order is the one named);
    // combined by key here, in order.
    let docs: Vec<(u32, bytes::Bytes)> = docs
        .into_iter()
        .map(|d| (d.binding, bytes::Bytes::from(d.document)))
        .collect();
    let (targets, limits) = (&task.targets, &ctx.limits);
    let set_aside = task.spec.on_error != ErrorPolicy::Fail;
    let quoted = |text: &bytes::Bytes| task::truncate(&String::from_utf8_lossy(text));
    let prepared = crate::par::try_map(&docs, |i, (binding, text)| {
        let b = *binding as usize;
        let Some(target) = targets.get(b) else {
            return Err(format!(
                "document {} of the poll names binding {b}, but the capture has {} binding(s): {}",
                i + 1,
                targets.len(),
                quoted(text)
            ));
        };
        match target.prepare(limits, text) {
            Ok(p) => Ok(Ok((b, p))),
            Err(e) => {
                let why = match e {
                    Unprepared::Json(e) => format!("is not JSON ({e})"),
                    Unprepared::Invalid(e) => e,
                };
                if set_aside {
                    return Ok(Err(Refused {
                        binding: b,
                        at: i,
                        error: why,
                        text: text.clone(),
                    }));
                }
                Err(format!(
                    "binding {b} ({}): document {} of the poll {why}: {}",
                    target.name,
                    i + 1,
                    quoted(text)
                ))
            }
        }
    })
    .map_err(anyhow::Error::msg)?;
    drop(docs);
    let mut combined: BTreeMap<String, Combining> = BTreeMap::new();
    let mut counts = vec![0u64; task.targets.len()];
    let mut refused = Vec::new();
    for p in prepared {
        let (b, p) = match p {
            Ok(p) => p,
            Err(r) => {
                refused.push(r);
                continue;
            }
        };
        let target = &task.targets[b];
        combined
            .entry(target.name.clone())
            .or_insert_with(|| Combining::new(target, &ctx.limits))
            .add_prepared(p)
            .map_err(|e| anyhow::anyhow!("binding {b} ({}): combining: {e}", target.name))?;
        counts[b] += 1;
    }
    let per_binding = counts
        .into_iter()
        .enumerate()
        .filter(|(_, n)| *n > 0)
        .collect();
    Ok(Checked {
        combined,
        per_binding,
        n,
        refused,
    })
}

/// What the capture's `onError` makes of the documents its targets refused: each logged to
/// the plugin's log; under `deadLetter`, records for its collection, checked against it:
/// `{id, task, binding, target, plugin, version, digest, error, document}` (the document as
/// JSON, or as text when it is not JSON).
fn set_aside(
    ctx: &TaskCtx,
    task: &CaptureTask,
    refused: &[Refused],
) -> anyhow::Result<Vec<crate::journal::Encoded>> {
    let policy = task.spec.on_error;
    let mut records = Vec::new();
    for r in refused {
        let target = &task.targets[r.binding].name;
        let what = if policy == ErrorPolicy::Skip {
            "skipped"
        } else {
            "dead-lettered"
        };
        ctx.registry.logs().push(
            &task.spec.plugin,
            Some(&ctx.name),
            flow_engine::LogLevel::Warn,
            format!(
                "capture {}: {what} document {} of the poll for binding {} ({target}): it {}: {}",
                ctx.name,
                r.at + 1,
                r.binding,
                r.error,
                task::truncate(&String::from_utf8_lossy(&r.text))
            ),
        );
        let Some(dl) = &task.dead_letters else {
            continue;
        };
        let mut record = serde_json::json!({
            "id": uuid::Uuid::now_v7().to_string(),
            "task": ctx.name,
            "binding": r.binding,
            "target": target,
            "plugin": task.spec.plugin,
            "version": task.version.0,
            "digest": task.version.1,
            "error": r.error,
        });
        task::dead_letter_document(&ctx.limits, &mut record, &r.text);
        dl.check_document(&ctx.limits, &record)
            .map_err(|e| anyhow::anyhow!("dead-letter record for {}: {e}", dl.name))?;
        records.push(crate::journal::Encoded::of(&record));
    }
    Ok(records)
}

/// A checkpoint must be JSON text of at most `docBytesMax` bytes: what `open` gets back.
fn check_checkpoint(ctx: &TaskCtx, cp: String) -> anyhow::Result<String> {
    if cp.len() > ctx.limits.doc_bytes_max {
        anyhow::bail!(
            "the poll's checkpoint is {} bytes, over the limit of {} bytes (docBytesMax)",
            cp.len(),
            ctx.limits.doc_bytes_max
        );
    }
    serde_json::from_str::<serde::de::IgnoredAny>(&cp).map_err(|e| {
        anyhow::anyhow!(
            "the poll's checkpoint is not JSON text ({e}): {}",
            task::truncate(&cp)
        )
    })?;
    Ok(cp)
}
