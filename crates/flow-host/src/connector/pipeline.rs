//! Statements a plugin `send`s (WIT `sql.send`), run in order by a worker thread of the
//! connection while the plugin goes on building the next: the destination's work overlaps
//! the host's and the plugin's. A connector settles the pipeline before anything that waits
//! for the server (a plugin's `execute` or `query`, the host's commit) and discards it at
//! rollback; a failure is kept until then and is the answer of every waiting call.

use flow_engine::{SqlBounds, SqlValue};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// A sent statement, ready to run on the connection: its error says which statement failed.
type Job = Box<dyn FnOnce() -> Result<(), String> + Send>;

/// Statements queued behind the one running: enough that the server never waits for the
/// plugin, few enough that a plugin cannot make the host hold much on its behalf.
const QUEUED_MAX: usize = 2;

/// How long an idle worker waits for the next job before its thread ends.
const WORKER_LINGER: std::time::Duration = std::time::Duration::from_millis(200);

#[derive(Clone, Default)]
pub(super) struct Pipeline(Arc<(Mutex<Queue>, Condvar)>);

#[derive(Default)]
struct Queue {
    jobs: VecDeque<(Job, usize)>,
    /// Bytes of the queued statements and parameters.
    bytes: usize,
    /// A worker thread drains the queue (it ends once the queue stayed empty a moment).
    worker: bool,
    /// A job taken off the queue is running.
    running: bool,
    /// The first failure since the transaction began.
    failed: Option<String>,
}

/// The start of a statement, to name it in a message.
fn preview(statement: &str) -> String {
    let s = statement.trim();
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// What a sent statement holds in memory: its text and parameters.
fn job_bytes(statement: &str, params: &[SqlValue]) -> usize {
    statement.len() + params.iter().map(super::result_value_bytes).sum::<usize>()
}

impl Pipeline {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.0.0.lock().expect("sql pipeline poisoned")
    }

    /// Queue `job` (of `bytes`), starting a worker if none runs. Waits while `QUEUED_MAX`
    /// jobs or `txn_bytes_max` bytes are queued, up to the sending call's deadline.
    fn send(&self, job: Job, bytes: usize, bounds: &SqlBounds) -> Result<(), String> {
        let mut q = self.lock();
        loop {
            if let Some(e) = &q.failed {
                return Err(e.clone());
            }
            let full = q.jobs.len() >= QUEUED_MAX
                || (!q.jobs.is_empty() && q.bytes + bytes > bounds.txn_bytes_max);
            if !full {
                break;
            }
            let left = bounds.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(super::deadline_error(bounds));
            }
            q = self
                .0
                .1
                .wait_timeout(q, left)
                .expect("sql pipeline poisoned")
                .0;
        }
        q.jobs.push_back((job, bytes));
        q.bytes += bytes;
        // A lingering worker takes it.
        self.0.1.notify_all();
        if !q.worker {
            q.worker = true;
            let me = self.clone();
            let spawned = std::thread::Builder::new()
                .name("flow-sql-send".into())
                .spawn(move || me.work());
            if let Err(e) = spawned {
                // Nothing would run it: take it back, so that no later worker runs it unasked.
                q.worker = false;
                q.jobs.pop_back();
                q.bytes -= bytes;
                return Err(format!("failed to start the statement worker: {e}"));
            }
        }
        Ok(())
    }

    fn work(&self) {
        loop {
            let job = {
                let q = self.lock();
                // Linger a moment for the next job: a task sends a few statements every
                // transaction, and starting a thread for each costs latency.
                let (mut q, _) = self
                    .0
                    .1
                    .wait_timeout_while(q, WORKER_LINGER, |q| q.jobs.is_empty())
                    .expect("sql pipeline poisoned");
                match q.jobs.pop_front() {
                    Some((job, bytes)) => {
                        q.bytes -= bytes;
                        q.running = true;
                        job
                    }
                    None => {
                        q.worker = false;
                        return;
                    }
                }
            };
            self.0.1.notify_all();
            // A panic in the job (the client library, a poisoned connection) fails the
            // transaction instead of leaving `running` set for every later wait.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                .unwrap_or_else(|_| Err("a statement sent earlier panicked in the host".into()));
            let mut q = self.lock();
            q.running = false;
            if let Err(e) = r {
                // The transaction is lost: what is queued behind would fail too.
                q.failed.get_or_insert(e);
                q.jobs.clear();
                q.bytes = 0;
            }
            drop(q);
            self.0.1.notify_all();
        }
    }

    /// Queue `statement` with `params`, for `run` (the connector's statement, run now) to run
    /// in order; its failure names the statement.
    pub(super) fn send_statement(
        &self,
        statement: String,
        params: Vec<SqlValue>,
        bounds: &SqlBounds,
        run: impl FnOnce(&str, &[SqlValue], &SqlBounds) -> Result<u64, String> + Send + 'static,
    ) -> Result<(), String> {
        let bytes = job_bytes(&statement, &params);
        let b = *bounds;
        let job = move || {
            run(&statement, &params, &b).map(drop).map_err(|e| {
                format!(
                    "a statement sent earlier ({}) failed: {e}",
                    preview(&statement)
                )
            })
        };
        self.send(Box::new(job), bytes, bounds)
    }

    /// Wait until every sent statement ran: the first failure among them, if any.
    pub(super) fn settle(&self) -> Result<(), String> {
        let q = self.lock();
        let q = self
            .0
            .1
            .wait_while(q, |q| !q.jobs.is_empty() || q.running)
            .expect("sql pipeline poisoned");
        match &q.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Drop what is queued, wait for the statement running, and forget a failure: the
    /// transaction is over.
    pub(super) fn discard(&self) {
        let mut q = self.lock();
        q.jobs.clear();
        q.bytes = 0;
        let mut q = self
            .0
            .1
            .wait_while(q, |q| q.running)
            .expect("sql pipeline poisoned");
        q.failed = None;
    }
}

#[cfg(test)]
mod test {
    use super::Pipeline;
    use flow_engine::SqlBounds;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    fn bounds(ms: u64) -> SqlBounds {
        SqlBounds {
            deadline: Instant::now() + Duration::from_millis(ms),
            deadline_ms: ms,
            result_bytes_max: 1 << 20,
            txn_bytes_max: 1 << 20,
        }
    }

    #[test]
    fn sent_jobs_run_in_order_and_the_first_failure_is_every_later_answer() {
        let p = Pipeline::default();
        let ran = Arc::new(Mutex::new(Vec::new()));
        for i in 0..5 {
            let ran = ran.clone();
            p.send(
                Box::new(move || {
                    std::thread::sleep(Duration::from_millis(2));
                    ran.lock().unwrap().push(i);
                    if i == 2 {
                        Err(format!("job {i} failed"))
                    } else {
                        Ok(())
                    }
                }),
                10,
                &bounds(10_000),
            )
            .ok();
        }
        assert_eq!(p.settle(), Err("job 2 failed".to_string()));
        // Nothing ran after the failure, and later sends and settles answer with it.
        assert_eq!(*ran.lock().unwrap(), [0, 1, 2]);
        assert_eq!(
            p.send(Box::new(|| Ok(())), 1, &bounds(10_000)),
            Err("job 2 failed".to_string())
        );
        assert_eq!(p.settle(), Err("job 2 failed".to_string()));
        // A rollback forgets it.
        p.discard();
        assert_eq!(p.settle(), Ok(()));
    }

    #[test]
    fn a_job_that_panics_fails_the_transaction_instead_of_hanging_it() {
        let p = Pipeline::default();
        p.send(Box::new(|| panic!("boom")), 1, &bounds(10_000))
            .unwrap();
        let e = p.settle().unwrap_err();
        assert!(e.contains("panicked"), "{e}");
        p.discard();
        p.send(Box::new(|| Ok(())), 1, &bounds(10_000)).unwrap();
        assert_eq!(p.settle(), Ok(()));
    }

    #[test]
    fn a_full_queue_makes_the_sender_wait_until_its_deadline() {
        let p = Pipeline::default();
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        // One running (blocked on the gate) and two queued: the fourth waits, then gives up.
        for _ in 0..3 {
            let gate = gate.clone();
            let job = move || {
                drop(gate.lock());
                Ok(())
            };
            p.send(Box::new(job), 1, &bounds(10_000)).unwrap();
        }
        let e = p.send(Box::new(|| Ok(())), 1, &bounds(50)).unwrap_err();
        assert!(e.contains("CPU deadline"), "{e}");
        drop(held);
        assert_eq!(p.settle(), Ok(()));
    }
}
