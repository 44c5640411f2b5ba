//! The `log` capability, granted to every plugin, and the plugin's stdout and stderr, which
//! land in the same log.

use super::bindings::LogLevel;
use super::bindings::derivation::flow::plugin::log;
use std::sync::Arc;

/// Where a plugin's log lines go: (level, line). Stdout and stderr arrive as `info` and `warn`.
pub type LogSink = Arc<dyn Fn(LogLevel, String) + Send + Sync>;

/// The `log` grant of a plugin instance: where its lines go.
pub(crate) struct LogGrant(pub(crate) LogSink);

impl log::Host for LogGrant {
    fn write(&mut self, level: log::Level, message: String) {
        (self.0)(level, message)
    }
}

/// Plugin stdout/stderr: complete lines go to the plugin's log.
pub(crate) struct LogStream {
    pub level: LogLevel,
    pub sink: LogSink,
}

impl wasmtime_wasi::cli::IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            level: self.level,
            sink: self.sink.clone(),
            partial: Vec::new(),
        })
    }

    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(LineWriter {
            level: self.level,
            sink: self.sink.clone(),
            partial: Vec::new(),
        })
    }
}

/// Splits written bytes into lines. A partial line longer than `PARTIAL_MAX` is emitted as is,
/// so a plugin that never writes a newline cannot grow host memory.
struct LineWriter {
    level: LogLevel,
    sink: LogSink,
    partial: Vec<u8>,
}

const PARTIAL_MAX: usize = 64 << 10;

impl LineWriter {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' || self.partial.len() >= PARTIAL_MAX {
                let line = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                (self.sink)(self.level, line);
                if b == b'\n' {
                    continue;
                }
            }
            self.partial.push(b);
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            (self.sink)(
                self.level,
                String::from_utf8_lossy(&self.partial).into_owned(),
            );
        }
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl wasmtime_wasi::p2::OutputStream for LineWriter {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(PARTIAL_MAX)
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
