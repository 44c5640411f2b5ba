//! Names of collections, tasks and plugins: one rule for all, below everything that names
//! things (the catalog, the plugin registry).

/// Longest name, in bytes: names are keys of tables, file paths and URL segments.
pub const NAME_BYTES_MAX: usize = 256;

/// Names are `/`-separated paths of letters, digits, `-`, `_` and `.`, e.g. `acme/orders`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.len() > NAME_BYTES_MAX {
        return Err(format!(
            "invalid name '{}...': {} bytes, over the limit of {NAME_BYTES_MAX}",
            &name[..name.char_indices().nth(40).map_or(name.len(), |(i, _)| i)],
            name.len()
        ));
    }
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

#[cfg(test)]
mod test {
    #[test]
    fn names_are_bounded() {
        assert!(super::check_name(&format!("acme/{}", "a".repeat(250))).is_ok());
        let e = super::check_name(&"a".repeat(5000)).unwrap_err();
        assert!(e.contains("5000 bytes, over the limit of 256"), "{e}");
        assert!(e.len() < 200, "the error repeats the whole name: {e}");
    }
}
