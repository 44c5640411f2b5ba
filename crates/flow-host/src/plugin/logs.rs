//! Plugin logs: what plugins wrote through `log`, stdout or stderr, kept per plugin in a
//! bounded ring, and followable.

use flow_engine::LogLevel;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LogLine {
    /// Increases by one per line of a plugin, so followers can resume.
    pub seq: u64,
    pub time: String,
    pub level: &'static str,
    pub message: String,
}

pub struct PluginLogs {
    lines_max: usize,
    logs: Mutex<BTreeMap<String, (u64, VecDeque<LogLine>)>>,
    grown: tokio::sync::watch::Sender<u64>,
}

impl PluginLogs {
    pub fn new(lines_max: usize) -> Self {
        PluginLogs {
            lines_max,
            logs: Mutex::new(BTreeMap::new()),
            grown: tokio::sync::watch::Sender::new(0),
        }
    }

    pub fn push(&self, plugin: &str, level: LogLevel, message: String) {
        let level = match level {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        };
        tracing::debug!(plugin, level, "{message}");
        let mut logs = self.logs.lock().expect("plugin logs poisoned");
        let (next, lines) = logs.entry(plugin.to_string()).or_default();
        *next += 1;
        let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        lines.push_back(LogLine {
            seq: *next,
            time,
            level,
            message,
        });
        while lines.len() > self.lines_max {
            lines.pop_front();
        }
        self.grown.send_modify(|g| *g += 1);
    }

    /// Lines of `plugin` with `seq > after`, oldest first.
    pub fn read(&self, plugin: &str, after: u64) -> Vec<LogLine> {
        let logs = self.logs.lock().expect("plugin logs poisoned");
        logs.get(plugin)
            .map(|(_, l)| l.iter().filter(|l| l.seq > after).cloned().collect())
            .unwrap_or_default()
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.grown.subscribe()
    }
}
