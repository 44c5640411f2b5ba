//! Plugin logs: what plugins wrote through `log`, stdout or stderr, and what the host says of
//! them, kept per plugin and task in rings bounded by lines and bytes, with each line capped,
//! readable a page at a time and followable.
//!
//! Each task running a plugin has its own ring, so a chatty task cannot evict another's lines,
//! and every line names the task it came from.

use flow_engine::LogLevel;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;

#[derive(Clone, Debug, Serialize, PartialEq, schemars::JsonSchema)]
pub struct LogLine {
    /// Increases by one per line of a plugin, so followers can resume.
    pub seq: u64,
    pub time: String,
    pub level: &'static str,
    /// The task whose instance wrote it; none for registry events (deploys, rollbacks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    pub message: String,
}

/// Bounds of the logs (from `Limits`).
#[derive(Clone, Copy, Debug)]
pub struct LogBounds {
    /// Lines kept per plugin and task.
    pub lines_max: usize,
    /// Bytes of messages kept per plugin and task.
    pub bytes_max: usize,
    /// Longest line kept whole; longer ones are cut, saying by how much.
    pub line_bytes_max: usize,
}

impl LogBounds {
    /// Drop a ring's oldest lines until it is within the bounds (its newest line stays).
    fn trim(&self, ring: &mut Ring) {
        while ring.lines.len() > self.lines_max
            || (ring.bytes > self.bytes_max && ring.lines.len() > 1)
        {
            if let Some(old) = ring.lines.pop_front() {
                ring.bytes -= old.message.len();
            }
        }
    }
}

/// Every saved line, by plugin, in sequence order.
pub fn load(store: &crate::storage::Store) -> anyhow::Result<Vec<(String, LogLine)>> {
    use redb::ReadableTable;
    let txn = store.read()?;
    let table = txn.open_table(crate::storage::PLUGIN_LOGS)?;
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        let Ok(saved) = serde_json::from_slice::<Saved>(v.value()) else {
            continue;
        };
        let level = match saved.level.as_str() {
            "trace" => "trace",
            "debug" => "debug",
            "warn" => "warn",
            "error" => "error",
            _ => "info",
        };
        out.push((
            k.value().0.to_string(),
            LogLine {
                seq: k.value().1,
                time: saved.time,
                level,
                task: saved.task,
                message: saved.message,
            },
        ));
    }
    Ok(out)
}

/// A saved line as it is read back.
#[derive(serde::Deserialize)]
struct Saved {
    time: String,
    level: String,
    task: Option<String>,
    message: String,
}

/// Make `plugin`'s saved lines exactly `lines` (what `take_unsaved` gave), in `txn`.
pub fn save(txn: &redb::WriteTransaction, plugin: &str, lines: &[LogLine]) -> anyhow::Result<()> {
    use redb::ReadableTable;
    let mut table = txn.open_table(crate::storage::PLUGIN_LOGS)?;
    let keep: BTreeSet<u64> = lines.iter().map(|l| l.seq).collect();
    let mut saved = BTreeSet::new();
    for entry in table.range((plugin, 0)..=(plugin, u64::MAX))? {
        saved.insert(entry?.0.value().1);
    }
    for seq in saved.difference(&keep) {
        table.remove((plugin, *seq))?;
    }
    for l in lines.iter().filter(|l| !saved.contains(&l.seq)) {
        table.insert((plugin, l.seq), serde_json::to_vec(l)?.as_slice())?;
    }
    Ok(())
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    bytes: usize,
}

#[derive(Default)]
struct Plugin {
    /// The last sequence number given out.
    seq: u64,
    /// By task ("" for registry events).
    rings: BTreeMap<String, Ring>,
}

pub struct PluginLogs {
    bounds: LogBounds,
    logs: Mutex<BTreeMap<String, Plugin>>,
    grown: tokio::sync::watch::Sender<u64>,
    /// Plugins with lines not saved yet (`take_unsaved`).
    unsaved: Mutex<BTreeSet<String>>,
}

impl PluginLogs {
    pub fn new(bounds: LogBounds) -> Self {
        PluginLogs {
            bounds,
            logs: Mutex::new(BTreeMap::new()),
            grown: tokio::sync::watch::Sender::new(0),
            unsaved: Mutex::new(BTreeSet::new()),
        }
    }

    /// Put back lines saved by an earlier run of the host (`load`), before any is pushed:
    /// each plugin's sequence goes on after its last saved line.
    pub fn restore(&self, saved: Vec<(String, LogLine)>) {
        let mut logs = self.logs.lock().expect("plugin logs poisoned");
        for (plugin, line) in saved {
            let p = logs.entry(plugin).or_default();
            p.seq = p.seq.max(line.seq);
            let ring = p
                .rings
                .entry(line.task.clone().unwrap_or_default())
                .or_default();
            ring.bytes += line.message.len();
            ring.lines.push_back(line);
        }
        // Saved by a host with larger bounds: keep what these bounds allow.
        for p in logs.values_mut() {
            for ring in p.rings.values_mut() {
                self.bounds.trim(ring);
            }
        }
    }

    /// The plugins whose lines changed since the last call, each with every line it keeps
    /// now: what `save` makes the saved lines.
    pub fn take_unsaved(&self) -> Vec<(String, Vec<LogLine>)> {
        let names = std::mem::take(&mut *self.unsaved.lock().expect("plugin logs poisoned"));
        names
            .into_iter()
            .map(|n| {
                let lines = self.read(&n, 0);
                (n, lines)
            })
            .collect()
    }

    /// Mark `plugins` unsaved again (their save failed).
    pub fn mark_unsaved(&self, plugins: impl IntoIterator<Item = String>) {
        self.unsaved
            .lock()
            .expect("plugin logs poisoned")
            .extend(plugins);
    }

    /// Drop every line of `plugin` (its last version was deleted); `save` then removes them.
    pub fn forget(&self, plugin: &str) {
        self.logs
            .lock()
            .expect("plugin logs poisoned")
            .remove(plugin);
        self.unsaved
            .lock()
            .expect("plugin logs poisoned")
            .insert(plugin.to_string());
    }

    pub fn push(&self, plugin: &str, task: Option<&str>, level: LogLevel, mut message: String) {
        let level = match level {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        };
        let max = self.bounds.line_bytes_max;
        if message.len() > max {
            let mut end = max;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            let cut = message.len() - end;
            message.truncate(end);
            message.push_str(&format!(
                "... ({cut} bytes cut: lines are kept up to {max} bytes)"
            ));
        }
        tracing::debug!(plugin, task, level, "{message}");
        let mut logs = self.logs.lock().expect("plugin logs poisoned");
        let p = logs.entry(plugin.to_string()).or_default();
        p.seq += 1;
        let ring = p.rings.entry(task.unwrap_or("").to_string()).or_default();
        ring.bytes += message.len();
        ring.lines.push_back(LogLine {
            seq: p.seq,
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            level,
            task: task.map(str::to_string),
            message,
        });
        self.bounds.trim(ring);
        drop(logs);
        self.unsaved
            .lock()
            .expect("plugin logs poisoned")
            .insert(plugin.to_string());
        self.grown.send_modify(|g| *g += 1);
    }

    /// Lines of `plugin` with `seq > after`, oldest first, every task's together.
    pub fn read(&self, plugin: &str, after: u64) -> Vec<LogLine> {
        self.read_page(plugin, after, usize::MAX)
    }

    /// What every task of every plugin wrote, by plugin name, then task, then in order
    /// (registry events left out): what a catalog test shows under each test, in an order
    /// that does not depend on which task ran first.
    pub fn task_lines(&self) -> Vec<(String, LogLine)> {
        let names: Vec<String> = self
            .logs
            .lock()
            .expect("plugin logs poisoned")
            .keys()
            .cloned()
            .collect();
        names
            .into_iter()
            .flat_map(|name| {
                let mut lines: Vec<LogLine> = self
                    .read(&name, 0)
                    .into_iter()
                    .filter(|l| l.task.is_some())
                    .collect();
                lines.sort_by(|a, b| (&a.task, a.seq).cmp(&(&b.task, b.seq)));
                lines.into_iter().map(move |l| (name.clone(), l))
            })
            .collect()
    }

    /// At most `limit` of the lines `read` returns: the oldest ones.
    pub fn read_page(&self, plugin: &str, after: u64, limit: usize) -> Vec<LogLine> {
        let logs = self.logs.lock().expect("plugin logs poisoned");
        let Some(p) = logs.get(plugin) else {
            return Vec::new();
        };
        let mut out: Vec<&LogLine> = p
            .rings
            .values()
            .flat_map(|r| r.lines.iter().filter(|l| l.seq > after))
            .collect();
        out.sort_by_key(|l| l.seq);
        out.into_iter().take(limit).cloned().collect()
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.grown.subscribe()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn bounded_by_lines_bytes_and_line_size_per_task() {
        let logs = PluginLogs::new(LogBounds {
            lines_max: 100,
            bytes_max: 1000,
            line_bytes_max: 50,
        });
        // A line over the cap is cut, saying so.
        logs.push("p", Some("a"), LogLevel::Info, "x".repeat(200));
        let l = &logs.read("p", 0)[0];
        assert!(l.message.starts_with(&"x".repeat(50)), "{}", l.message);
        assert!(l.message.contains("150 bytes cut"), "{}", l.message);
        // A flood from task a keeps a's ring under its byte bound and leaves b's lines alone.
        logs.push("p", Some("b"), LogLevel::Warn, "b's panic".into());
        for i in 0..1000 {
            logs.push("p", Some("a"), LogLevel::Info, format!("{i:040}"));
        }
        let all = logs.read("p", 0);
        let bytes: usize = all
            .iter()
            .filter(|l| l.task.as_deref() == Some("a"))
            .map(|l| l.message.len())
            .sum();
        assert!(bytes <= 1000, "{bytes}");
        let b: Vec<_> = all
            .iter()
            .filter(|l| l.task.as_deref() == Some("b"))
            .collect();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].message, "b's panic");
        // Pages are in sequence order and resume after the last line read.
        let page = logs.read_page("p", 0, 10);
        assert_eq!(page.len(), 10);
        assert!(page.windows(2).all(|w| w[0].seq < w[1].seq));
        let next = logs.read_page("p", page[9].seq, 10);
        assert!(next[0].seq > page[9].seq);
    }
}
