//! Fragment files of a `file://` store, read with the host's own name parser.

use std::path::Path;

/// The fragments of `journal` in the `file://` store at `root`, as (begin, end) by begin, read
/// from their names with the host's own parser, and the files under the journal that are not
/// fragments (e.g. a temporary file of an upload a kill interrupted).
pub fn fragment_files(root: &Path, journal: &str) -> (Vec<(u64, u64)>, Vec<String>) {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    let mut files = Vec::new();
    walk(&root.join(journal), &mut files);
    let (mut ranges, mut others) = (Vec::new(), Vec::new());
    for f in files {
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        match flow_host::journal::fragment::parse_name(&rel) {
            Ok(p) if p.journal == journal => ranges.push((p.begin, p.end)),
            _ => others.push(rel),
        }
    }
    ranges.sort();
    (ranges, others)
}

/// Check that `ranges` (sorted) tile a journal from offset 0 with no gap or overlap; where
/// they end.
pub fn tiled_end(ranges: &[(u64, u64)], what: &str) -> u64 {
    let mut at = 0;
    for (b, e) in ranges {
        assert_eq!(*b, at, "{what}: fragments {ranges:?}");
        at = *e;
    }
    at
}
