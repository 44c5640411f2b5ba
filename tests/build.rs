//! Builds every plugin under `plugins/` as a WebAssembly component and emits their paths as
//! constants (`OUT_DIR/plugins.rs`), and one test per catalog data file under `catalogs/`
//! (`OUT_DIR/catalog_tests.rs`).
//!
//! Rust plugins: `cargo build --release --target wasm32-wasip2` of the plugins workspace; every
//! member is found from `plugins/Cargo.toml`. Python plugins: every `plugins/python/*/app.py`,
//! built with `componentize-py` (PyPI), which the README's test command installs. A plugin that
//! no test uses fails the build.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A plugin to build: its constant in `plugins.rs`, and the file name of its component.
struct Plugin {
    constant: String,
    wasm: String,
}

/// The Rust plugins: every member of the plugins workspace, by its package name
/// (`customer-totals` -> `CUSTOMER_TOTALS`, `customer_totals.wasm`).
fn rust_plugins(plugins: &Path) -> Vec<Plugin> {
    let manifest = read(&plugins.join("Cargo.toml"));
    let members = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("members"))
        .and_then(|l| l.split_once('['))
        .map(|(_, rest)| rest.split(']').next().unwrap_or(""))
        .expect("plugins/Cargo.toml has no `members = [...]` line");
    members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .map(|member| {
            let krate = read(&plugins.join(member).join("Cargo.toml"))
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once('=')?;
                    (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
                })
                .unwrap_or_else(|| panic!("plugins/{member}/Cargo.toml has no package name"));
            let snake = krate.replace('-', "_");
            Plugin {
                constant: snake.to_uppercase(),
                wasm: format!("{snake}.wasm"),
            }
        })
        .collect()
}

/// The Python plugins: every directory under `plugins/python` with an `app.py`, built for
/// the world its docstring's build line names (`-w flow:plugin/WORLD`), at the version of
/// `wit/flow.wit` (`order-counter` -> `PY_ORDER_COUNTER`).
fn python_plugins(plugins: &Path, wit_version: &str) -> Vec<(Plugin, PathBuf, String)> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(plugins.join("python"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    dirs.retain(|d| d.join("app.py").is_file());
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().to_string();
            let app = read(&dir.join("app.py"));
            let world = app
                .split_whitespace()
                .skip_while(|w| *w != "-w")
                .nth(1)
                .unwrap_or_else(|| {
                    panic!("plugins/python/{name}/app.py: its docstring names no `-w flow:plugin/WORLD`")
                });
            let world = format!("{}@{wit_version}", world.split('@').next().unwrap());
            let plugin = Plugin {
                constant: format!("PY_{}", name.replace('-', "_").to_uppercase()),
                wasm: format!("{}.wasm", name.replace('-', "_")),
            };
            (plugin, dir, world)
        })
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text of every file under `dir` whose name ends with one of `exts`.
fn texts(dir: &Path, exts: &[&str], out: &mut String) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            texts(&p, exts, out);
        } else if exts.iter().any(|x| p.to_string_lossy().ends_with(x)) {
            out.push_str(&read(&p));
        }
    }
}

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
        "tests/all",
        "tests/support",
        "tests/lib.rs",
        "examples",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let mut consts = String::new();
    let plugins = root.join("plugins");
    let wit_version = read(&root.join("wit/flow.wit"))
        .lines()
        .find_map(|l| l.trim().strip_prefix("package flow:plugin@"))
        .map(|v| v.trim_end_matches(';').to_string())
        .expect("wit/flow.wit declares no `package flow:plugin@VERSION;`");
    let rust = rust_plugins(&plugins);
    let python = python_plugins(&plugins, &wit_version);

    // A plugin no test uses is dead weight in every build: refuse it.
    let mut used = String::new();
    texts(&root.join("tests"), &[".rs", ".yaml"], &mut used);
    texts(&root.join("examples"), &[".yaml"], &mut used);
    let unused: Vec<&Plugin> = rust
        .iter()
        .chain(python.iter().map(|(p, _, _)| p))
        .filter(|p| {
            !used.contains(&format!("plugins::{}", p.constant))
                && !used.contains(&format!("/{}", p.wasm))
        })
        .collect();
    assert!(
        unused.is_empty(),
        "plugins no test uses (neither `plugins::CONSTANT` in tests/ nor its .wasm in a catalog): {}; use them in a test or remove them from plugins/",
        unused
            .iter()
            .map(|p| format!("{} ({})", p.constant, p.wasm))
            .collect::<Vec<_>>()
            .join(", ")
    );
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
    for p in &rust {
        let wasm = plugins.join("target/wasm32-wasip2/release").join(&p.wasm);
        assert!(wasm.exists(), "{} was not built", wasm.display());
        consts.push_str(&format!(
            "pub const {}: &str = {:?};\n",
            p.constant,
            wasm.display().to_string()
        ));
    }

    for (p, src, world) in &python {
        let wasm = out.join(&p.wasm);
        let mut cmd = Command::new("componentize-py");
        cmd.current_dir(src)
            .arg("-d")
            .arg(root.join("wit"))
            .args(["-w", world, "componentize", "app", "-o"])
            .arg(&wasm);
        run(
            &mut cmd,
            "building a Python plugin (install componentize-py: `pip install componentize-py==0.25.1`)",
        );
        consts.push_str(&format!(
            "pub const {}: &str = {:?};\n",
            p.constant,
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
