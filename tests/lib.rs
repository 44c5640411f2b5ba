//! Shared helpers of the end-to-end tests: plugin paths built by `build.rs`, and a host
//! served on loopback.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Paths of the plugin components built by `build.rs`.
pub mod plugins {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}

/// A host over a temporary data directory, with its API served on a loopback port.
pub struct Served {
    pub host: Arc<flow_host::Host>,
    pub base: String,
    pub dir: tempfile::TempDir,
    _server: tokio::task::JoinHandle<()>,
}

impl Served {
    pub async fn start(token: Option<&str>) -> Served {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, token).await
    }

    pub async fn start_in(dir: tempfile::TempDir, token: Option<&str>) -> Served {
        let host =
            flow_host::Host::open(&dir.path().join("data"), flow_host::Limits::default()).unwrap();
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = flow_host::api::router(host.clone(), token.map(String::from));
        let server = tokio::spawn(async move {
            axum_serve(listener, app).await;
        });
        Served {
            host,
            base,
            dir,
            _server: server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

async fn axum_serve(listener: tokio::net::TcpListener, app: flow_host::api::Router) {
    flow_host::api::serve(listener, app).await.unwrap();
}

/// Read a plugin component built by `build.rs`.
pub fn plugin_bytes(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(path)).unwrap_or_else(|e| panic!("failed to read plugin {path}: {e}"))
}
