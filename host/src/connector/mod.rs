//! Host-owned destinations granted to connector plugins as capabilities.

pub mod sqlite;
