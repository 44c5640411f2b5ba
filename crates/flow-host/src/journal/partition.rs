//! Logical partitions: a collection with partition fields (`partition: true` projections)
//! keeps one journal per combination of their values, named
//! `{collection}/{field}={value}[/{field}={value}...]` (fields in name order), e.g.
//! `acme/ticks/exchange=NYSE`; its fragments follow as `acme/ticks/exchange=NYSE/pivot=00/...`.
//! A collection without partition fields has one journal, named as the collection.
//!
//! Names of collections hold no `=` (`names::check_name`), so a journal's partition
//! segments are exactly its trailing segments that hold one.
//!
//! A value is written so that each of a field's values has one spelling: an integer in
//! decimal, `true` or `false`, a string with letters, digits, `-`, `_` and `.` kept and any
//! other byte as `+XX` (hex; `+` is what object stores and file systems keep as it is in a
//! path, where `%` is escaped again by some). A partition field has one type, so a string
//! `"1"` and an integer `1` never meet in one field.

use crate::storage::JOURNAL_HEADS;
use serde_json::Value;

/// The longest journal name a partition may give (its fragments' paths add ~130 bytes, and
/// object stores take keys of 1,024 bytes).
pub const JOURNAL_BYTES_MAX: usize = 768;

/// The longest value of one partition field, written (a `file://` store makes each
/// `field=value` a directory, and file systems take names of 255 bytes).
pub const VALUE_BYTES_MAX: usize = 200;

/// Names a partition field may not have: the directories of a journal's fragments.
pub const RESERVED_FIELDS: [&str; 3] = ["pivot", "utc_date", "utc_hour"];

/// A partition value as a journal name writes it; None for a value no partition field may
/// hold (null, a number with a fraction, an array or an object).
pub fn encode_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => {
            let mut out = String::with_capacity(s.len());
            for b in s.bytes() {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("+{b:02X}"));
                }
            }
            Some(out)
        }
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        // An integer written with a fraction of zero (`1.0`, as some languages write every
        // number) is that integer, as validation and keys take it.
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| (f as i64).to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The collection a journal belongs to: its name without its partition segments.
pub fn collection_of(journal: &str) -> &str {
    let mut end = journal.len();
    while let Some(at) = journal[..end].rfind('/') {
        if journal[at + 1..end].contains('=') {
            end = at;
        } else {
            break;
        }
    }
    &journal[..end]
}

/// The partition segments of a journal (`field=value`, in order); none for a collection's own.
pub fn labels_of(journal: &str) -> impl Iterator<Item = (&str, &str)> {
    journal[collection_of(journal).len()..]
        .split('/')
        .filter_map(|s| s.split_once('='))
}

/// Every partition journal of `collection` this database has a head for, in name order.
pub fn journals_in(txn: &redb::ReadTransaction, collection: &str) -> anyhow::Result<Vec<String>> {
    let heads = txn.open_table(JOURNAL_HEADS)?;
    let from = format!("{collection}/");
    // '0' is the byte after '/': the range holds exactly the names under `collection/`.
    let to = format!("{collection}0");
    let mut out = Vec::new();
    for entry in heads.range(from.as_str()..to.as_str())? {
        let (name, _) = entry?;
        let name = name.value();
        if collection_of(name) == collection {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// `journals_in`, in a read transaction of its own.
pub fn journals(store: &crate::storage::Store, collection: &str) -> anyhow::Result<Vec<String>> {
    journals_in(&store.read()?, collection)
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_and_names() {
        assert_eq!(encode_value(&json!("NYSE")).unwrap(), "NYSE");
        assert_eq!(
            encode_value(&json!("a b/c=d+")).unwrap(),
            "a+20b+2Fc+3Dd+2B"
        );
        assert_eq!(encode_value(&json!("é")).unwrap(), "+C3+A9");
        assert_eq!(encode_value(&json!(-12)).unwrap(), "-12");
        assert_eq!(encode_value(&json!(true)).unwrap(), "true");
        assert_eq!(encode_value(&json!(1.5)), None);
        assert_eq!(encode_value(&json!(3.0)).unwrap(), "3");
        assert_eq!(encode_value(&json!(-0.0)).unwrap(), "0");
        assert_eq!(encode_value(&json!(null)), None);
        assert_eq!(
            collection_of("acme/ticks/exchange=NYSE/day=3"),
            "acme/ticks"
        );
        assert_eq!(collection_of("acme/ticks"), "acme/ticks");
        assert_eq!(collection_of("acme/ticks/eu"), "acme/ticks/eu");
        let labels: Vec<_> = labels_of("acme/ticks/exchange=NYSE/day=3").collect();
        assert_eq!(labels, vec![("exchange", "NYSE"), ("day", "3")]);
        assert_eq!(labels_of("acme/ticks").count(), 0);
    }
}
