//! C plugin projects: `flow plugin build` makes the bindings with wit-bindgen's C generator
//! and the component with wit-component and the WASI p1 reactor adapter, all linked into
//! `flow`; only the compiler comes from outside: Debian's clang with wasi-libc.
//!
//! Steps, in the project's folder:
//! 1. `gen/derivation.{h,c}` and `gen/derivation_component_type.o` from the WIT of this
//!    `flow` (rewritten each build, so they always match the host);
//! 2. clang: `*.c` of the project and `gen/derivation.c` into a core module `gen/core.wasm`
//!    (reactor model: no `main`, exports called by the host);
//! 3. that module and the adapter into `plugin.wasm`.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The generated files' folder, in the project.
const GEN: &str = "gen";
/// The Debian packages that give clang its wasm32-wasi target.
const DEBIAN_PACKAGES: &str = "clang lld wasi-libc libclang-rt-dev-wasm32";

/// C bindings for `world` of the WIT package `wit` (`flow.wit`'s text): file name and contents.
pub fn bindings(wit: &str, world: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut resolve = wit_parser::Resolve::default();
    let pkg = resolve
        .push_str("flow.wit", wit)
        .context("the WIT of this flow does not parse")?;
    let world = resolve.select_world(&[pkg], Some(world))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .context("wit-bindgen's C generator failed")?;
    Ok(files
        .iter()
        .map(|(name, bytes)| (name.to_string(), bytes.to_vec()))
        .collect())
}

/// Build the C project in `dir` into `out`, a component of `world` of `wit` (a derivation
/// is built on `derivation-packed`, which the SDK's glue speaks: a call's documents cross
/// in a few buffers each way).
pub fn build(dir: &Path, out: &Path, wit: &str, world: &str) -> anyhow::Result<()> {
    // A derivation whose sources define `flow_migrate` also exports `migrate`.
    let migrates = world == "derivation" && defines_migrate(dir)?;
    let world = match world {
        "derivation" if migrates => "migrating-derivation-packed",
        "derivation" => "derivation-packed",
        other => other,
    };
    let clang = clang()?;
    // clang runs in the project's folder: the paths it is given must not be relative to ours.
    let dir = &std::path::absolute(dir)?;
    let gen_dir = dir.join(GEN);
    std::fs::create_dir_all(&gen_dir)
        .with_context(|| format!("failed to create {}", gen_dir.display()))?;
    let mut objects = Vec::new();
    for (name, bytes) in bindings(wit, world)? {
        let path = gen_dir.join(&name);
        std::fs::write(&path, bytes)
            .with_context(|| format!("failed to write {}", path.display()))?;
        if name.ends_with(".c") || name.ends_with(".o") {
            objects.push(path);
        }
    }
    let mut sources: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("failed to read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    anyhow::ensure!(!sources.is_empty(), "{} has no .c files", dir.display());
    sources.sort();
    let core = gen_dir.join("core.wasm");
    let status = Command::new(&clang)
        .current_dir(dir)
        .args([
            "--target=wasm32-wasi",
            "-mexec-model=reactor",
            "-O2",
            "-std=c11",
            "-Wall",
            "-Werror=implicit-function-declaration",
        ])
        .args(migrates.then_some("-DFLOW_MIGRATE"))
        .arg("-I")
        .arg(&gen_dir)
        .args(&sources)
        .args(&objects)
        .arg("-o")
        .arg(&core)
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("failed to run {}", clang.display()))?;
    anyhow::ensure!(
        status.success(),
        "{} failed to compile {} (above)",
        clang.display(),
        dir.display()
    );
    let module =
        std::fs::read(&core).with_context(|| format!("failed to read {}", core.display()))?;
    let component = componentize(&module)
        .with_context(|| format!("failed to make a component of {}", core.display()))?;
    std::fs::write(out, component).with_context(|| format!("failed to write {}", out.display()))
}

/// Whether a `.c` file of the project other than the SDK's defines `flow_migrate`.
fn defines_migrate(dir: &Path) -> anyhow::Result<bool> {
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("failed to read {}", dir.display()))?
    {
        let path = entry?.path();
        let sdk = path
            .file_name()
            .is_some_and(|n| n.to_str().is_some_and(|n| n.starts_with("flow_")));
        if path.extension().is_some_and(|e| e == "c") && !sdk {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("failed to read {}", path.display()))?;
            if text.contains("flow_migrate(") {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// A core module built against wasi-libc, with its component type embedded (the `.o`
/// wit-bindgen wrote), as a component: WASI p1 calls go through the reactor adapter.
pub fn componentize(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    use wasi_preview1_component_adapter_provider as adapter;
    wit_component::ComponentEncoder::default()
        .module(module)?
        .validate(true)
        .adapter(
            adapter::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            adapter::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()
}

/// The clang that targets wasm32-wasi: `CC` if set, else the first of `clang`, `clang-14`..
/// that has wasi-libc beside it.
fn clang() -> anyhow::Result<PathBuf> {
    let install = format!(
        "install clang with the wasm32-wasi target and wasi-libc (Debian: `apt-get install \
         {DEBIAN_PACKAGES}`), or set CC to such a clang"
    );
    let candidates: Vec<PathBuf> = match std::env::var_os("CC") {
        Some(cc) => vec![PathBuf::from(cc)],
        None => ["clang", "clang-19", "clang-16", "clang-15", "clang-14"]
            .into_iter()
            .map(PathBuf::from)
            .collect(),
    };
    let mut tried = Vec::new();
    for cc in candidates {
        // A clang that can link a reactor module for wasm32-wasi has the target, wasi-libc
        // and the wasm builtins: try it on an empty program.
        let probe = tempfile::tempdir()?;
        let src = probe.path().join("probe.c");
        std::fs::write(&src, "int flow_probe(void) { return 0; }\n")?;
        let result = Command::new(&cc)
            .args(["--target=wasm32-wasi", "-mexec-model=reactor", "-o"])
            .arg(probe.path().join("probe.wasm"))
            .arg(&src)
            .output();
        match result {
            Ok(o) if o.status.success() => return Ok(cc),
            Ok(o) => tried.push(format!(
                "{} cannot build for wasm32-wasi: {}",
                cc.display(),
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .find(|l| l.contains("error"))
                    .unwrap_or("it failed")
                    .trim()
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tried.push(format!("{}: {e}", cc.display())),
        }
    }
    if tried.is_empty() {
        anyhow::bail!("clang is not installed (or not on PATH): {install}");
    }
    anyhow::bail!("{}; {install}", tried.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_bindings_for_the_capture_world() {
        let files = bindings(super::super::WIT, "capture").unwrap();
        let header = files.iter().find(|(n, _)| n == "capture.h").unwrap();
        let header = String::from_utf8_lossy(&header.1);
        for f in [
            "exports_flow_plugin_source_poll(",
            "flow_plugin_http_send(",
            "flow_plugin_progress_source_time(",
        ] {
            assert!(header.contains(f), "{f}");
        }
    }

    #[test]
    fn c_bindings_for_the_packed_derivation_world() {
        let files = bindings(super::super::WIT, "derivation-packed").unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "derivation_packed.c",
                "derivation_packed.h",
                "derivation_packed_component_type.o"
            ]
        );
        let header = String::from_utf8_lossy(&files[1].1);
        assert!(
            header.contains("exports_flow_plugin_derive_packed_transform("),
            "{header}"
        );
    }
}
