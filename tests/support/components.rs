//! The plugin components `build.rs` built, and what tests need of them.

use std::path::Path;

/// Paths of the plugin components built by `build.rs`.
pub mod plugins {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}

/// A plugin component built by `build.rs`, base64-encoded as a bundle's `modules` carry it.
pub fn module_base64(path: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(plugin_bytes(path))
}

/// Read a plugin component built by `build.rs`.
pub fn plugin_bytes(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(path)).unwrap_or_else(|e| panic!("failed to read plugin {path}: {e}"))
}

/// The `sha256:...` digest of a plugin component file, as the registry names versions.
pub fn digest(path: &str) -> String {
    use std::fmt::Write;
    let mut hex = String::new();
    for b in flow_host_digest(&plugin_bytes(path)) {
        let _ = write!(hex, "{b:02x}");
    }
    format!("sha256:{hex}")
}

fn flow_host_digest(bytes: &[u8]) -> Vec<u8> {
    flow_host::plugin::sha256(bytes)
}
