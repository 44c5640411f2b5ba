//! What a component imports and exports, read from its bytes before anything is compiled: a
//! component that needs an interface this host never grants, or that implements no world of
//! `wit/`, is refused in milliseconds, not after Cranelift spent a minute on it (a JavaScript
//! component is ~10 MB of SpiderMonkey). What passes is checked again, exactly, against the
//! linker once compiled (`Engine::world_of`).

use crate::{DERIVE_PACKED, EngineError, WIT_PACKAGE, World, compatible};

/// The packages of WASI 0.2 the host's linker serves (all denied at run time: no files,
/// sockets, environment or wall clock; see `wasi.rs`).
const WASI_PACKAGES: [&str; 6] = [
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// The top-level import and export names of a component.
fn names(bytes: &[u8]) -> Result<(Vec<String>, Vec<String>), String> {
    use wasmparser::Payload;
    let (mut imports, mut exports, mut depth) = (Vec::new(), Vec::new(), 0usize);
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| e.to_string())? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    imports.push(full_name(&import.map_err(|e| e.to_string())?.name));
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    exports.push(full_name(&export.map_err(|e| e.to_string())?.name));
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

/// An import's or export's name with its version: the text after `@` in the name, and a
/// suffix to it where the binary spells one.
fn full_name(n: &wasmparser::ComponentExternName<'_>) -> String {
    match n.version_suffix {
        Some(suffix) if n.name.contains('@') => format!("{}{suffix}", n.name),
        _ => n.name.to_string(),
    }
}

/// Refuse a component that imports what no plugin of this host is granted, naming the
/// import and the likely fix, or that exports no world's interface. Every import is taken as
/// needed: the component tools (wit-component, componentize-py, componentize-js) leave out
/// the interfaces a component does not use. Text that does not parse
/// is left to the compiler, whose message is the better one.
pub(crate) fn check(bytes: &[u8]) -> Result<(), EngineError> {
    match names(bytes) {
        Ok((imports, exports)) => check_names(&imports, &exports),
        Err(_) => Ok(()),
    }
}

fn check_names(imports: &[String], exports: &[String]) -> Result<(), EngineError> {
    let ours = |name: &str| {
        let iface = name.split('@').next().unwrap_or(name);
        compatible(
            name,
            &format!("{iface}@{}", WIT_PACKAGE.split('@').nth(1).unwrap_or("")),
        )
    };
    for import in imports {
        let granted = if import.starts_with("flow:plugin/") {
            ours(import)
        } else {
            WASI_PACKAGES.iter().any(|p| import.starts_with(p))
                && import
                    .split('@')
                    .nth(1)
                    .is_some_and(|v| v.starts_with("0.2."))
        };
        if !granted {
            return Err(EngineError::UngrantedImport {
                import: import.clone(),
                hint: hint(import),
            });
        }
    }
    let known = [World::Derivation, World::Capture, World::Materialization]
        .iter()
        .map(|w| w.export())
        .chain([DERIVE_PACKED]);
    let known: Vec<&str> = known.collect();
    if !exports
        .iter()
        .any(|e| known.iter().any(|k| compatible(e, k)))
    {
        return Err(EngineError::NoKnownWorld(exports.join(", ")));
    }
    Ok(())
}

/// What to do about an import the host does not grant.
fn hint(import: &str) -> String {
    if import.starts_with("wasi:http/") {
        "plugins reach HTTP only through flow:plugin/http, granted to captures. A component \
         built with componentize-js imports wasi:http through its default features: build it \
         with `componentize-js -d http fetch-event` (disable the http and fetch-event \
         features)"
            .into()
    } else if import.starts_with("flow:plugin/") {
        format!(
            "it was built against another version of the plugin contract than this host's \
             {WIT_PACKAGE}: rebuild it against wit/flow.wit of this host"
        )
    } else if import.starts_with("wasi:") {
        "this host grants WASI 0.2's io, clocks, random, cli, filesystem and sockets \
         interfaces (all denied at run time) and nothing else of WASI"
            .into()
    } else {
        "a plugin may import only flow:plugin interfaces and WASI 0.2's io, clocks, random, \
         cli, filesystem and sockets; remove the import or what pulls it in"
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(import: &str) -> String {
        let exports = ["flow:plugin/derive-packed@0.1.5".to_string()];
        check_names(&[import.to_string()], &exports)
            .map_or_else(|e| e.to_string(), |_| "accepted".into())
    }

    #[test]
    fn imports_no_plugin_is_granted_are_refused_by_name_with_a_fix() {
        for (import, fix) in [
            (
                "wasi:http/types@0.2.0",
                "componentize-js -d http fetch-event",
            ),
            (
                "flow:plugin/state@0.2.0",
                "another version of the plugin contract",
            ),
            (
                "flow:plugin/state",
                "another version of the plugin contract",
            ),
            ("wasi:keyvalue/store@0.2.0", "nothing else of WASI"),
            ("wasi:io/streams@0.3.0", "nothing else of WASI"),
            ("acme:thing/x", "may import only"),
        ] {
            let e = refusal(import);
            assert!(e.contains(import) && e.contains(fix), "{import}: {e}");
        }
    }

    #[test]
    fn granted_imports_pass_and_exports_must_name_a_world() {
        for import in [
            "wasi:io/streams@0.2.6",
            "flow:plugin/state@0.1.0",
            "wasi:cli/stdout@0.2.0",
        ] {
            assert_eq!(refusal(import), "accepted");
        }
        let e = check_names(&[], &["wasi:http/incoming-handler@0.2.0".into()]).unwrap_err();
        assert!(e.to_string().contains("implements no known world"), "{e}");
        for world in [
            "flow:plugin/derive@0.1.0",
            "flow:plugin/sink@0.1.2",
            "flow:plugin/source@0.1.4",
        ] {
            assert!(check_names(&[], &[world.into()]).is_ok(), "{world}");
        }
        // Not parsable: left to the compiler.
        assert!(check(b"\0asm\x0d\0\x01\0\x99").is_ok());
    }
}
