//! The record keeper: a thread that saves what operators read after the fact (each task's
//! counters and last failure, every plugin's log lines) into the database at most a second
//! apart and once more at shutdown, so a restart or a publish resets none of it. Counters are
//! observability, not data: a `kill -9` loses at most the last second of them, never a
//! document.

use crate::plugin::{Registry, save_logs};
use crate::storage::Store;
use crate::task::{Record, Statuses, save_records};
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How often the keeper saves what changed.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);

pub(super) struct Keeper {
    parts: Arc<Parts>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Parts {
    store: Arc<Store>,
    statuses: Statuses,
    registry: Arc<Registry>,
    /// What was last saved per task.
    saved: Mutex<BTreeMap<String, Record>>,
    stop: (Mutex<bool>, Condvar),
}

impl Keeper {
    /// Start saving; `saved` is what the database holds now.
    pub(super) fn start(
        store: Arc<Store>,
        statuses: Statuses,
        registry: Arc<Registry>,
        saved: BTreeMap<String, Record>,
    ) -> anyhow::Result<Self> {
        let parts = Arc::new(Parts {
            store,
            statuses,
            registry,
            saved: Mutex::new(saved),
            stop: (Mutex::new(false), Condvar::new()),
        });
        let p = parts.clone();
        let thread = std::thread::Builder::new()
            .name("flow-records".into())
            .spawn(move || {
                loop {
                    let stopped = p.stop.0.lock().expect("keeper poisoned");
                    let (stopped, _) = p
                        .stop
                        .1
                        .wait_timeout_while(stopped, SAVE_INTERVAL, |s| !*s)
                        .expect("keeper poisoned");
                    if *stopped {
                        return;
                    }
                    drop(stopped);
                    p.save();
                }
            })?;
        Ok(Keeper {
            parts,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stop the thread and save once more (once the tasks stopped, this is their last word).
    pub(super) fn stop(&self) {
        *self.parts.stop.0.lock().expect("keeper poisoned") = true;
        self.parts.stop.1.notify_all();
        if let Some(t) = self.thread.lock().expect("keeper poisoned").take() {
            let _ = t.join();
        }
        self.parts.save();
    }

    /// Forget what was saved for `task` (its record was removed with it).
    pub(super) fn forget(&self, task: &str) {
        self.parts
            .saved
            .lock()
            .expect("keeper poisoned")
            .remove(task);
    }
}

impl Parts {
    fn save(&self) {
        let mut saved = self.saved.lock().expect("keeper poisoned");
        let changed: Vec<(String, Record)> = self
            .statuses
            .all()
            .into_iter()
            .map(|s| (s.name.clone(), s.record()))
            .filter(|(n, r)| saved.get(n) != Some(r))
            .collect();
        let logs = self.registry.logs().take_unsaved();
        if changed.is_empty() && logs.is_empty() {
            return;
        }
        let plugins: Vec<String> = logs.iter().map(|(p, _)| p.clone()).collect();
        let records = changed.clone();
        let result = self.store.write(move |txn| {
            save_records(txn, &records)?;
            for (plugin, lines) in &logs {
                save_logs(txn, plugin, lines)?;
            }
            Ok(())
        });
        match result {
            Ok(()) => saved.extend(changed),
            Err(e) => {
                // The database cannot be written now (its fault shows in health): next time.
                tracing::debug!("failed to save task records and plugin logs: {e:#}");
                self.registry.logs().mark_unsaved(plugins);
            }
        }
    }
}
