//! Every bound the host enforces, in one place, each with its default and the reason for it.

use serde::{Deserialize, Serialize};

/// Bounds on documents, batches and plugins. Defaults suit a small host; all are configurable.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted document, in bytes of JSON. Flow documents are records, not files; 16 MiB
    /// leaves room for fat records while bounding the memory one document can pin.
    pub doc_bytes_max: usize,
    /// Most documents a task reads into one transaction. A task starts at 4,096 (or this, if
    /// smaller) and doubles while its sources have a backlog: larger batches combine more and
    /// amortize the commit (one fsync per transaction); smaller ones bound latency and memory.
    /// 32,768: the pipeline benchmarks ran as fast as at 65,536 with 10-15% less peak memory,
    /// and 16,384 cost the totals pipeline ~10% (docs/benchmarks.md, fifth pass).
    pub txn_docs_max: usize,
    /// Most bytes a task reads into one transaction, for the same reasons.
    pub txn_bytes_max: usize,
    /// Wall time after which a transaction takes no further plugin calls and commits what it
    /// processed: a slow plugin still commits progress, and a stop or hot-swap never waits
    /// longer than this plus one call.
    pub txn_time_max_ms: u64,
    /// Shortest wall time of a transaction that found documents (Flow's `minTxnDuration`):
    /// the task waits out the rest before it reads again, so that what arrives meanwhile is
    /// combined into the next transaction. 0 (the default) reads again at once, for the lowest
    /// latency; a firehose into a destination that commits fast writes fewer rows with more
    /// (measured: 50 ms halves the row writes of the materialize bench's fact table on SQLite).
    pub txn_time_min_ms: u64,
    /// Shortest wall time of a materialization transaction that caught up with its sources
    /// and either folded its documents into at most half as many row writes or mostly
    /// rewrote the rows the transaction before it wrote moments earlier (a firehose over few
    /// keys): as `txnTimeMinMs`, so that the next requests fold into the same rows instead of
    /// rewriting them. A transaction of mostly distinct keys (orders, one row each) would gain
    /// nothing by waiting and commits at once, so its latency stays in milliseconds; a
    /// backlog is read on without waiting. Default 50 (measured: the materialize bench's fact
    /// table, 100,000 events over 1,000 keys, goes from 1 row write per 10 events to 1 per 25
    /// on SQLite and Redis); 0 turns it off.
    pub txn_time_combining_ms: u64,
    /// Most documents passed to one plugin call: big enough that the ~1 us cost of a component
    /// call vanishes per document, small enough that a call stays well inside its deadline.
    pub call_docs_max: usize,
    /// CPU deadline of one plugin call, in milliseconds. A call past it is interrupted.
    pub call_deadline_ms: u64,
    /// Memory cap of one plugin instance (linear memories and tables), in bytes.
    pub plugin_memory_bytes_max: usize,
    /// Most documents one plugin call may return.
    pub call_output_docs_max: usize,
    /// Most bytes (of JSON text) one plugin call may return.
    pub call_output_bytes_max: usize,
    /// Most bytes one host call may return to a plugin (a SQL query's rows), counted as they
    /// are read, so a plugin cannot make the host hold more on its behalf. 32 MiB fits a
    /// `load` of a full batch of ordinary documents; a plugin pages bigger reads.
    pub host_result_bytes_max: usize,
    /// Largest state value a derivation may `set`, in bytes. Per-key state is a record like a
    /// document, so it gets the document's default bound.
    pub state_value_bytes_max: usize,
    /// Most bytes of state (keys and values) one transaction may write, and of key-value
    /// writes (`kv`, Redis) one materialization transaction may queue. The writes are held
    /// until the commit, so this bounds what a plugin can make the host hold on its behalf.
    pub state_txn_bytes_max: usize,
    /// Largest component accepted at deploy. 32 MiB fits interpreters compiled to Wasm (Python).
    pub component_bytes_max: usize,
    /// Plugin log lines kept per plugin and task; older lines are dropped.
    pub plugin_log_lines_max: usize,
    /// Bytes of plugin log kept per plugin and task; older lines are dropped. With the line
    /// cap below, what a plugin can make the host hold in its log.
    pub plugin_log_bytes_max: usize,
    /// Longest plugin log line kept whole; longer lines are cut, saying by how much.
    pub plugin_log_line_bytes_max: usize,
    /// Estimated memory a combiner holds before it spills sorted runs to a temp file. See
    /// `doc::combine::SPILL_THRESHOLD_BYTES_DEFAULT` for why this size.
    pub combiner_spill_bytes: usize,
    /// Unsealed bytes a journal's redb head may hold (or twice its fragment length, if larger)
    /// before appends to it are refused: while the fragment store fails, the host keeps
    /// accepting writes up to this bound, then pushes back instead of filling its disk.
    pub journal_head_bytes_max: u64,
    /// How long an idle task sleeps before re-checking its sources if no append wakes it
    /// (a safety net only: appends wake readers directly).
    pub idle_recheck_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            doc_bytes_max: 16 << 20,
            txn_docs_max: 32768,
            txn_bytes_max: 32 << 20,
            txn_time_max_ms: 1000,
            txn_time_min_ms: 0,
            txn_time_combining_ms: Self::TXN_TIME_COMBINING_MS,
            call_docs_max: 1024,
            call_deadline_ms: 1000,
            plugin_memory_bytes_max: 64 << 20,
            call_output_docs_max: 100_000,
            call_output_bytes_max: 64 << 20,
            host_result_bytes_max: 32 << 20,
            state_value_bytes_max: 16 << 20,
            state_txn_bytes_max: 64 << 20,
            component_bytes_max: 64 << 20,
            plugin_log_lines_max: 1000,
            plugin_log_bytes_max: 1 << 20,
            plugin_log_line_bytes_max: 16 << 10,
            combiner_spill_bytes: flow_doc::combine::SPILL_THRESHOLD_BYTES_DEFAULT,
            journal_head_bytes_max: 1 << 30,
            idle_recheck_ms: 1000,
        }
    }
}

impl Limits {
    /// The default `txnTimeCombiningMs`.
    pub const TXN_TIME_COMBINING_MS: u64 = 50;

    /// The bounds the engine enforces on each plugin instance.
    pub fn sandbox(&self) -> flow_engine::Sandbox {
        flow_engine::Sandbox {
            call_deadline_ms: self.call_deadline_ms,
            memory_bytes_max: self.plugin_memory_bytes_max,
            host_result_bytes_max: self.host_result_bytes_max,
            host_txn_bytes_max: self.state_txn_bytes_max,
        }
    }

    /// Check that the bounds are consistent with each other.
    pub fn check(&self) -> Result<(), String> {
        let rules: [(bool, &str); 9] = [
            (
                self.txn_time_min_ms <= self.txn_time_max_ms,
                "txnTimeMinMs must not be over txnTimeMaxMs",
            ),
            (self.doc_bytes_max > 0, "docBytesMax must be positive"),
            (
                self.txn_docs_max > 0 && self.call_docs_max > 0,
                "batch sizes must be positive",
            ),
            (
                self.txn_bytes_max >= self.doc_bytes_max,
                "txnBytesMax must fit one maximal document",
            ),
            (
                self.call_deadline_ms >= 10,
                "callDeadlineMs must be at least one epoch tick (10 ms)",
            ),
            (
                self.plugin_memory_bytes_max >= 1 << 20,
                "pluginMemoryBytesMax must be at least 1 MiB",
            ),
            (
                self.call_output_bytes_max >= self.doc_bytes_max,
                "callOutputBytesMax must fit one maximal document",
            ),
            (
                self.host_result_bytes_max >= self.doc_bytes_max,
                "hostResultBytesMax must fit one maximal document",
            ),
            (
                self.state_txn_bytes_max >= self.state_value_bytes_max,
                "stateTxnBytesMax must fit one maximal state value",
            ),
        ];
        match rules.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(why.to_string()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod test {
    #[test]
    fn defaults_are_consistent() {
        super::Limits::default().check().unwrap();
        let bad = super::Limits {
            call_deadline_ms: 1,
            ..Default::default()
        };
        assert!(bad.check().unwrap_err().contains("callDeadlineMs"));
    }
}
