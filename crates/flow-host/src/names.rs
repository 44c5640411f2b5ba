//! Names of collections, tasks and plugins: one rule for all, below everything that names
//! things (the catalog, the plugin registry).

/// Names are `/`-separated paths of letters, digits, `-`, `_` and `.`, e.g. `acme/orders`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name '{name}': use '/'-separated parts of letters, digits, '-', '_' and '.', e.g. acme/orders"
        ))
    }
}
