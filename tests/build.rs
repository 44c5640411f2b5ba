//! Builds every plugin under `plugins/` as a WebAssembly component and emits their paths as
//! constants (`OUT_DIR/plugins.rs`), and one test per catalog data file under `catalogs/`
//! (`OUT_DIR/catalog_tests.rs`).
//!
//! Rust plugins: `cargo build --release --target wasm32-wasip2` of the plugins workspace.
//! Python plugins: `componentize-py` (PyPI), which the README's test command installs.

use std::path::PathBuf;
use std::process::Command;

/// Rust plugins of the plugins workspace: (constant, crate name).
const RUST_PLUGINS: &[(&str, &str)] = &[
    ("PASSTHROUGH", "passthrough"),
    ("CUSTOMER_TOTALS", "customer_totals"),
    ("MATERIALIZE_SQLITE", "materialize_sqlite"),
    ("NO_WORLD", "no_world"),
    ("REACTIVE_JOIN", "reactive_join"),
    ("COUNTER_V1", "counter_v1"),
    ("COUNTER_V2", "counter_v2"),
    ("COUNTER_V3", "counter_v3"),
    ("SANDBOX_PROBE", "sandbox_probe"),
];

/// Python plugins: (constant, directory under plugins/python, world).
const PYTHON_PLUGINS: &[(&str, &str, &str)] = &[(
    "PY_ORDER_COUNTER",
    "order-counter",
    "flow:plugin/derivation@0.1.0",
)];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for watched in [
        "plugins",
        "sdk/rust/src",
        "sdk/rust/Cargo.toml",
        "wit",
        "tests/catalogs",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let mut consts = String::new();
    let plugins = root.join("plugins");
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(plugins.join("Cargo.toml"))
        // The outer build's settings are for the host, not for Wasm guests.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_MAKEFLAGS")
        .env("CARGO_TARGET_DIR", plugins.join("target"));
    run(
        &mut cargo,
        "building plugins/ (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)",
    );
    for (name, krate) in RUST_PLUGINS {
        let wasm = plugins.join(format!("target/wasm32-wasip2/release/{krate}.wasm"));
        assert!(wasm.exists(), "{} was not built", wasm.display());
        consts.push_str(&format!(
            "pub const {name}: &str = {:?};\n",
            wasm.display().to_string()
        ));
    }

    for (name, dir, world) in PYTHON_PLUGINS {
        let src = plugins.join("python").join(dir);
        let wasm = out.join(format!("{dir}.wasm"));
        let mut cmd = Command::new("componentize-py");
        cmd.current_dir(&src)
            .arg("-d")
            .arg(root.join("wit"))
            .args(["-w", world, "componentize", "app", "-o"])
            .arg(&wasm);
        run(
            &mut cmd,
            "building a Python plugin (install componentize-py: `pip install componentize-py==0.25.1`)",
        );
        consts.push_str(&format!(
            "pub const {name}: &str = {:?};\n",
            wasm.display().to_string()
        ));
    }
    std::fs::write(out.join("plugins.rs"), consts).unwrap();

    // One test per catalog file.
    let mut tests = String::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("tests/catalogs"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.to_string_lossy().ends_with(".flow.yaml"));
    files.sort();
    for f in files {
        let stem = f
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".flow.yaml")
            .replace(['-', '.'], "_");
        tests.push_str(&format!(
            "#[test]\nfn catalog_{stem}() {{\n    crate::catalogs::run_catalog_file(std::path::Path::new({:?}));\n}}\n",
            f.display().to_string()
        ));
    }
    std::fs::write(out.join("catalog_tests.rs"), tests).unwrap();
}

fn run(cmd: &mut Command, what: &str) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("{what}: failed to start {:?}: {e}", cmd.get_program()));
    assert!(
        status.success(),
        "{what}: {:?} failed with {status}",
        cmd.get_program()
    );
}
