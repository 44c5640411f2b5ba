//! A host over a temporary data directory, its API served on loopback (in-process).

use std::net::SocketAddr;
use std::sync::Arc;

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
            flow_host::Host::open(flow_host::HostOptions::new(dir.path().join("data"))).unwrap();
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
