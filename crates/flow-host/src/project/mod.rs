//! Plugin projects (`flow plugin init|build|test`): a folder with a plugin's source, a catalog
//! that uses it and that catalog's tests, built with its language's toolchain into
//! `plugin.wasm`; `flow plugin test` (`cli/plugin.rs`) then runs the tests in a throwaway
//! embedded host with that component standing for its name, and `flow bench --suite
//! languages` builds the same template in each language.
//!
//! A project's `flow-plugin.yaml` says what it is: the plugin's name (what the catalog's
//! `wasm: { plugin: NAME }` and `flow plugin deploy NAME` use), its language and its world.
//! Templates are the customer-totals derivation of `examples/acme`, an orders capture from an
//! HTTP API and a SQLite table of per-customer totals, each in every language.

mod c;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The project file, in the project's folder.
pub const MANIFEST: &str = "flow-plugin.yaml";
/// What `build` writes, in the project's folder.
pub const COMPONENT: &str = "plugin.wasm";
/// The componentize-py release the tests and README use.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

const CATALOG_TEMPLATE: &str = include_str!("templates/flow.yaml");
/// The capture world's templates: orders paged from an HTTP API, in each language.
const CAPTURE_CATALOG_TEMPLATE: &str = include_str!("templates/capture/flow.yaml");
const CAPTURE_RUST_TEMPLATE: &str = include_str!("templates/capture/lib.rs");
const CAPTURE_PYTHON_TEMPLATE: &str = include_str!("templates/capture/app.py");
const CAPTURE_JS_TEMPLATE: &str = include_str!("templates/capture/app.js");
const CAPTURE_TS_TEMPLATE: &str = include_str!("templates/capture/app.ts");
const CAPTURE_C_TEMPLATE: &str = include_str!("templates/capture/app.c");
/// The materialization world's templates: a SQLite table of per-customer totals, in each
/// language.
const MATERIALIZATION_CATALOG_TEMPLATE: &str = include_str!("templates/materialization/flow.yaml");
const MATERIALIZATION_RUST_TEMPLATE: &str = include_str!("templates/materialization/lib.rs");
const MATERIALIZATION_PYTHON_TEMPLATE: &str = include_str!("templates/materialization/app.py");
const MATERIALIZATION_JS_TEMPLATE: &str = include_str!("templates/materialization/app.js");
const MATERIALIZATION_TS_TEMPLATE: &str = include_str!("templates/materialization/app.ts");
const MATERIALIZATION_C_TEMPLATE: &str = include_str!("templates/materialization/app.c");
const CARGO_TEMPLATE: &str = include_str!("templates/Cargo.toml.in");
const PYTHON_TEMPLATE: &str = include_str!("templates/app.py");
/// The Python SDK, copied into a Python project beside its `app.py`.
const PYTHON_SDK: &str = include_str!("../../../../sdk/python/flow_sdk.py");
const JS_TEMPLATE: &str = include_str!("templates/app.js");
const PACKAGE_TEMPLATE: &str = include_str!("templates/package.json.in");
/// The JavaScript SDK, copied into a JavaScript or TypeScript project beside its `app.js`:
/// what every world shares, then the derivation's or the capture's module.
const JS_SDK_BASE: &str = include_str!("../../../../sdk/js/flow_base.js");
const JS_SDK: &str = include_str!("../../../../sdk/js/flow_sdk.js");
const JS_SDK_CAPTURE: &str = include_str!("../../../../sdk/js/flow_capture.js");
const JS_SDK_MATERIALIZE: &str = include_str!("../../../../sdk/js/flow_materialize.js");
/// Outgoing HTTP, for the worlds that import it (captures, materializations).
const JS_SDK_HTTP: &str = include_str!("../../../../sdk/js/flow_http.js");
const JS_SDK_HTTP_TYPES: &str = include_str!("../../../../sdk/js/flow_http.d.ts");
/// State migration, copied into derivation projects beside the derivation's module.
const JS_SDK_MIGRATE: &str = include_str!("../../../../sdk/js/flow_migrate.js");
const JS_SDK_MIGRATE_TYPES: &str = include_str!("../../../../sdk/js/flow_migrate.d.ts");
/// Their types, for TypeScript projects.
const JS_SDK_BASE_TYPES: &str = include_str!("../../../../sdk/js/flow_base.d.ts");
const JS_SDK_TYPES: &str = include_str!("../../../../sdk/js/flow_sdk.d.ts");
const JS_SDK_CAPTURE_TYPES: &str = include_str!("../../../../sdk/js/flow_capture.d.ts");
const JS_SDK_MATERIALIZE_TYPES: &str = include_str!("../../../../sdk/js/flow_materialize.d.ts");
const C_TEMPLATE: &str = include_str!("templates/app.c");
/// The C SDK, copied into a C project beside its `app.c`: what every world shares, then the
/// derivation's or the capture's glue.
const C_SDK_HEADER: &str = include_str!("../../../../sdk/c/flow_sdk.h");
const C_SDK: &str = include_str!("../../../../sdk/c/flow_sdk.c");
const C_SDK_DERIVE_HEADER: &str = include_str!("../../../../sdk/c/flow_derive.h");
const C_SDK_DERIVE: &str = include_str!("../../../../sdk/c/flow_derive.c");
const C_SDK_CAPTURE_HEADER: &str = include_str!("../../../../sdk/c/flow_capture.h");
const C_SDK_CAPTURE: &str = include_str!("../../../../sdk/c/flow_capture.c");
const C_SDK_MATERIALIZE_HEADER: &str = include_str!("../../../../sdk/c/flow_materialize.h");
const C_SDK_MATERIALIZE: &str = include_str!("../../../../sdk/c/flow_materialize.c");
/// Outgoing HTTP, for the worlds that import it (captures, materializations).
const C_SDK_HTTP_HEADER: &str = include_str!("../../../../sdk/c/flow_http.h");
const C_SDK_HTTP: &str = include_str!("../../../../sdk/c/flow_http.inc");
const TS_TEMPLATE: &str = include_str!("templates/app.ts");
const TS_PACKAGE_TEMPLATE: &str = include_str!("templates/package-ts.json.in");
const TSCONFIG_TEMPLATE: &str = include_str!("templates/tsconfig.json");
/// The Rust template is the repository's own customer-totals plugin, which its tests build.
const RUST_TEMPLATE: &str = include_str!("../../../../plugins/customer-totals/src/lib.rs");
/// How that plugin says it is built, replaced in a project by how a project is.
const RUST_TEMPLATE_BUILD_LINE: &str =
    "//! Build: cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml";
/// The contract, for toolchains that read it from a folder (componentize-py).
const WIT: &str = include_str!("../../../../wit/flow.wit");

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Rust,
    Python,
    Js,
    Ts,
    C,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum World {
    Derivation,
    Materialization,
    Capture,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub lang: Lang,
    pub world: World,
}

/// Write a new project into `dir` (which must not exist or be empty).
pub fn init(dir: &Path, name: Option<&str>, lang: Lang, world: World) -> anyhow::Result<()> {
    // The template or SDK file of this world, from those of the derivation, the
    // materialization and the capture.
    let at = match world {
        World::Derivation => 0,
        World::Materialization => 1,
        World::Capture => 2,
    };
    let pick = |texts: [&str; 3]| texts[at].to_string();
    let pick_file = |files: [(&'static str, &str); 3]| (files[at].0, files[at].1.to_string());
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("failed to read {}", dir.display()))?
            .next()
            .is_some()
    {
        anyhow::bail!(
            "{} exists and is not empty: `flow plugin init` writes a new project",
            dir.display()
        );
    }
    let name = match name {
        Some(n) => n.to_string(),
        None => default_name(dir)?,
    };
    crate::names::check_name(&name).map_err(|e| anyhow::anyhow!("plugin name: {e}"))?;
    let mut files: Vec<(&str, String)> = vec![
        (
            MANIFEST,
            format!(
                "# A Flow plugin project: `flow plugin build` builds {COMPONENT}, `flow plugin test` \
                 runs flow.yaml's tests against it.\n{}",
                serde_yaml::to_string(&Manifest {
                    name: name.clone(),
                    lang,
                    world
                })?
            ),
        ),
        // Quoted: a name like `2024` or `true` is a number or a boolean to YAML.
        (
            "flow.yaml",
            pick([
                CATALOG_TEMPLATE,
                MATERIALIZATION_CATALOG_TEMPLATE,
                CAPTURE_CATALOG_TEMPLATE,
            ])
            .replace("{{NAME}}", &serde_json::to_string(&name)?),
        ),
    ];
    match lang {
        Lang::Rust => {
            let sdk = rust_sdk()?;
            files.push((
                "Cargo.toml",
                CARGO_TEMPLATE
                    .replace("{{CRATE}}", &crate_name(&name))
                    .replace(
                        "{{SDK}}",
                        &serde_json::to_string(&sdk.display().to_string())?,
                    ),
            ));
            files.push((
                "src/lib.rs",
                pick([
                    &rust_source(),
                    MATERIALIZATION_RUST_TEMPLATE,
                    CAPTURE_RUST_TEMPLATE,
                ]),
            ));
        }
        Lang::Python => {
            files.push((
                "app.py",
                pick([
                    PYTHON_TEMPLATE,
                    MATERIALIZATION_PYTHON_TEMPLATE,
                    CAPTURE_PYTHON_TEMPLATE,
                ]),
            ));
            files.push(("flow_sdk.py", PYTHON_SDK.to_string()));
            files.push(("wit/flow.wit", WIT.to_string()));
        }
        Lang::Js | Lang::Ts => {
            let package = match lang {
                Lang::Ts => {
                    files.push((
                        "app.ts",
                        pick([
                            TS_TEMPLATE,
                            MATERIALIZATION_TS_TEMPLATE,
                            CAPTURE_TS_TEMPLATE,
                        ]),
                    ));
                    files.push(("flow_base.d.ts", JS_SDK_BASE_TYPES.to_string()));
                    files.push(pick_file([
                        ("flow_sdk.d.ts", JS_SDK_TYPES),
                        ("flow_materialize.d.ts", JS_SDK_MATERIALIZE_TYPES),
                        ("flow_capture.d.ts", JS_SDK_CAPTURE_TYPES),
                    ]));
                    files.push((
                        "tsconfig.json",
                        TSCONFIG_TEMPLATE.replace("{{VERSION}}", wit_version()),
                    ));
                    TS_PACKAGE_TEMPLATE
                }
                _ => {
                    files.push((
                        "app.js",
                        pick([
                            JS_TEMPLATE,
                            MATERIALIZATION_JS_TEMPLATE,
                            CAPTURE_JS_TEMPLATE,
                        ]),
                    ));
                    PACKAGE_TEMPLATE
                }
            };
            // State migration for derivations; HTTP for the worlds that import it.
            let (module, types) = match world {
                World::Derivation => (
                    ("flow_migrate.js", JS_SDK_MIGRATE),
                    ("flow_migrate.d.ts", JS_SDK_MIGRATE_TYPES),
                ),
                _ => (
                    ("flow_http.js", JS_SDK_HTTP),
                    ("flow_http.d.ts", JS_SDK_HTTP_TYPES),
                ),
            };
            files.push((module.0, module.1.to_string()));
            if lang == Lang::Ts {
                files.push((types.0, types.1.to_string()));
            }
            files.push(("flow_base.js", JS_SDK_BASE.to_string()));
            files.push(pick_file([
                ("flow_sdk.js", JS_SDK),
                ("flow_materialize.js", JS_SDK_MATERIALIZE),
                ("flow_capture.js", JS_SDK_CAPTURE),
            ]));
            files.push((
                "package.json",
                package
                    .replace("{{PACKAGE}}", &crate_name(&name))
                    .replace("{{WORLD}}", &value_name(world))
                    .replace("{{VERSION}}", wit_version()),
            ));
            files.push(("wit/flow.wit", WIT.to_string()));
        }
        Lang::C => {
            files.push((
                "app.c",
                pick([C_TEMPLATE, MATERIALIZATION_C_TEMPLATE, CAPTURE_C_TEMPLATE]),
            ));
            files.push(("flow_sdk.h", C_SDK_HEADER.to_string()));
            files.push(("flow_sdk.c", C_SDK.to_string()));
            files.push(pick_file([
                ("flow_derive.h", C_SDK_DERIVE_HEADER),
                ("flow_materialize.h", C_SDK_MATERIALIZE_HEADER),
                ("flow_capture.h", C_SDK_CAPTURE_HEADER),
            ]));
            files.push(pick_file([
                ("flow_derive.c", C_SDK_DERIVE),
                ("flow_materialize.c", C_SDK_MATERIALIZE),
                ("flow_capture.c", C_SDK_CAPTURE),
            ]));
            if world != World::Derivation {
                files.push(("flow_http.h", C_SDK_HTTP_HEADER.to_string()));
                files.push(("flow_http.inc", C_SDK_HTTP.to_string()));
            }
        }
    }
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("failed to create {}", parent.display()))?;
        }
        std::fs::write(&path, text)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(())
}

/// Build the project in `dir` into `dir/plugin.wasm`, with the toolchain of its language.
/// Returns the component's path.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = read_manifest(dir)?;
    let out = dir.join(COMPONENT);
    // A build that writes nothing must not leave an older component to be tested.
    match std::fs::remove_file(&out) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("failed to remove {}", out.display()));
        }
        _ => {}
    }
    match manifest.lang {
        Lang::Rust => build_rust(dir, &out)?,
        Lang::Python => build_python(dir, &out, manifest.world)?,
        Lang::Js | Lang::Ts => build_js(dir, &out, manifest.lang, manifest.world)?,
        Lang::C => c::build(dir, &out, WIT, &value_name(manifest.world))?,
    }
    Ok(out)
}

/// The project file of the project in `dir`, checked.
pub fn read_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "failed to read {} (is {} a plugin project? `flow plugin init DIR` makes one)",
            path.display(),
            dir.display()
        )
    })?;
    let manifest: Manifest =
        serde_yaml::from_str(&text).with_context(|| format!("{} is invalid", path.display()))?;
    crate::names::check_name(&manifest.name)
        .map_err(|e| anyhow::anyhow!("{}: name: {e}", path.display()))?;
    Ok(manifest)
}

fn build_rust(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let target = "wasm32-wasip2";
    if missing("cargo")? {
        anyhow::bail!(
            "cargo is not installed (or not on PATH): install Rust with rustup \
             (https://rustup.rs), then `rustup target add {target}`"
        );
    }
    // rustup knows which targets are installed; without rustup, cargo says so itself.
    if let Ok(o) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        && o.status.success()
        && !String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.trim() == target)
    {
        anyhow::bail!("the Rust target {target} is not installed: `rustup target add {target}`");
    }
    let manifest_path = dir.join("Cargo.toml");
    let output = Command::new("cargo")
        .args(["build", "--release", "--target", target])
        .arg("--manifest-path")
        .arg(&manifest_path)
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()
        .context("failed to run cargo")?;
    if !output.status.success() {
        anyhow::bail!("cargo build of {} failed (above)", manifest_path.display());
    }
    // The component is the cdylib cargo reports (wherever CARGO_TARGET_DIR puts it): the
    // project is a workspace of its own, whose one cdylib is the plugin.
    let built = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["target"]["crate_types"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "cdylib"))
        })
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
                .collect::<Vec<_>>()
        })
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        .with_context(|| {
            format!(
                "cargo built no .wasm for {}: is it a `crate-type = [\"cdylib\"]` library?",
                manifest_path.display()
            )
        })?;
    std::fs::copy(&built, out)
        .with_context(|| format!("failed to copy {} to {}", built.display(), out.display()))?;
    Ok(())
}

fn build_python(dir: &Path, out: &Path, world: World) -> anyhow::Result<()> {
    if missing("componentize-py")? {
        anyhow::bail!(
            "componentize-py is not installed (or not on PATH): `pip install {COMPONENTIZE_PY}`"
        );
    }
    // A derivation that exports a state migration is built on the world with both.
    let migrates = world == World::Derivation
        && std::fs::read_to_string(dir.join("app.py"))
            .is_ok_and(|app| app.contains("export_migration("));
    let world = match migrates {
        true => "migrating-derivation".to_string(),
        false => value_name(world),
    };
    let world = format!("flow:plugin/{world}@{}", wit_version());
    run_in(
        dir,
        "componentize-py",
        &[
            "-d",
            "wit",
            "-w",
            &world,
            "componentize",
            "app",
            "-o",
            COMPONENT,
        ],
        &format!(
            "componentize-py failed to build {}",
            dir.join("app.py").display()
        ),
    )?;
    anyhow::ensure!(out.is_file(), "componentize-py wrote no {}", out.display());
    Ok(())
}

/// `npm run build` (the project's package.json says how: componentize-js, after `jco types`
/// and `tsc` for TypeScript), after `npm install` the first time.
fn build_js(dir: &Path, out: &Path, lang: Lang, world: World) -> anyhow::Result<()> {
    // A derivation that exports a state migration is built on the world with both, which
    // its package.json's build script names.
    let app = dir.join(if lang == Lang::Ts { "app.ts" } else { "app.js" });
    if world == World::Derivation
        && std::fs::read_to_string(&app).is_ok_and(|a| a.contains("exportMigration("))
    {
        let package = dir.join("package.json");
        let text = std::fs::read_to_string(&package)
            .with_context(|| format!("failed to read {}", package.display()))?;
        let wanted = format!("flow:plugin/migrating-derivation@{}", wit_version());
        anyhow::ensure!(
            text.contains(&wanted),
            "{} exports a state migration (exportMigration): build it on world {wanted}: in {}, \
             change flow:plugin/derivation@{} to that in the build{} script",
            app.display(),
            package.display(),
            wit_version(),
            if lang == Lang::Ts { " and types" } else { "" },
        );
    }
    if missing("npm")? {
        anyhow::bail!(
            "npm is not installed (or not on PATH): install Node.js 18 or newer with npm \
             (Debian: `apt-get install nodejs npm`)"
        );
    }
    if !dir.join("node_modules/.bin/componentize-js").exists() {
        eprintln!(
            "npm install in {} (its package.json's tools, the first time)",
            dir.display()
        );
        run_in(
            dir,
            "npm",
            &["install", "--no-audit", "--no-fund"],
            &format!("npm install in {} failed", dir.display()),
        )?;
    }
    run_in(
        dir,
        "npm",
        &["run", "--silent", "build"],
        &format!("`npm run build` in {} failed", dir.display()),
    )?;
    anyhow::ensure!(out.is_file(), "`npm run build` wrote no {}", out.display());
    Ok(())
}

/// Run `tool args` in `dir`, its output on stderr (where a build's errors go); `failed` says
/// what failed, the tool's own words being above it.
fn run_in(dir: &Path, tool: &str, args: &[&str], failed: &str) -> anyhow::Result<()> {
    let status = Command::new(tool)
        .current_dir(dir)
        .args(args)
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("failed to run {tool}"))?;
    anyhow::ensure!(status.success(), "{failed} (above)");
    Ok(())
}

/// Whether `tool` is not on PATH (`tool --version` cannot start); any other failure to start
/// it is an error with its reason.
fn missing(tool: &str) -> anyhow::Result<bool> {
    match Command::new(tool).arg("--version").output() {
        Ok(_) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(anyhow::anyhow!("failed to run {tool}: {e}")),
    }
}

/// The version of the WIT package, e.g. `0.1.5`.
fn wit_version() -> &'static str {
    flow_engine::WIT_PACKAGE
        .split_once('@')
        .map_or("", |(_, v)| v)
}

/// The Rust SDK a new project depends on: `FLOW_SDK_RUST`, or `sdk/rust` of the checkout
/// this `flow` was built from.
fn rust_sdk() -> anyhow::Result<PathBuf> {
    let (path, from) = match std::env::var_os("FLOW_SDK_RUST") {
        Some(p) => (PathBuf::from(p), "FLOW_SDK_RUST"),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/rust"),
            "the checkout this flow was built from",
        ),
    };
    let path = path.canonicalize().map_err(|e| {
        anyhow::anyhow!(
            "the Rust SDK is not at {} ({from}): {e}; set FLOW_SDK_RUST to the sdk/rust \
             folder of a Flow checkout",
            path.display()
        )
    })?;
    anyhow::ensure!(
        path.join("Cargo.toml").is_file(),
        "{} ({from}) has no Cargo.toml: set FLOW_SDK_RUST to the sdk/rust folder of a Flow checkout",
        path.display()
    );
    Ok(path)
}

fn rust_source() -> String {
    RUST_TEMPLATE.replace(
        RUST_TEMPLATE_BUILD_LINE,
        "//! Build: flow plugin build (cargo build --release --target wasm32-wasip2, then plugin.wasm)",
    )
}

/// A plugin name from a folder's name: `totals` for `./totals`.
fn default_name(dir: &Path) -> anyhow::Result<String> {
    let abs = std::path::absolute(dir)?;
    abs.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .with_context(|| format!("{} has no folder name: pass --name", dir.display()))
}

/// A Rust package name for a plugin name: its last part, `-` for what cargo does not allow.
fn crate_name(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    let mut s: String = last
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        s.insert_str(0, "plugin-");
    }
    s
}

/// How `--lang` and `--world` (and `flow-plugin.yaml`) spell a value.
fn value_name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rust_template_says_how_a_project_builds() {
        assert!(RUST_TEMPLATE.contains(RUST_TEMPLATE_BUILD_LINE));
        assert!(rust_source().contains("Build: flow plugin build"));
    }

    #[test]
    fn the_js_sdk_imports_this_wit_version() {
        for (sdk, file, import) in [
            (JS_SDK_BASE, "flow_base.js", "log"),
            (JS_SDK, "flow_sdk.js", "state"),
            (JS_SDK_CAPTURE, "flow_capture.js", "progress"),
            (JS_SDK_HTTP, "flow_http.js", "http"),
            (JS_SDK_MATERIALIZE, "flow_materialize.js", "sql"),
        ] {
            let at = format!("'flow:plugin/{import}@{}'", wit_version());
            assert!(sdk.contains(&at), "sdk/js/{file} must import {at}");
        }
    }

    #[test]
    fn crate_names_from_plugin_names() {
        assert_eq!(crate_name("acme/Totals.v2"), "totals-v2");
        assert_eq!(crate_name("9lives"), "plugin-9lives");
    }
}
