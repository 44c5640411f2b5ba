//! Fragment file names: where a fragment lives in the store, and parsing that back.
//!
//! `{journal}/pivot=00/utc_date=YYYY-MM-DD/utc_hour=HH/{begin:016x}-{end:016x}-{digest}.ndjson{.gz|.zst}`
//!
//! The journal is the collection's name, or for a collection with logical partitions,
//! `{collection}/{field}={value}...` (`journal::partition`); `pivot=00` names its only key
//! range (journals are not split by key yet). Date and hour are those of the fragment's first
//! document's publish time, in UTC, as Hive-style `key=value` directories that Spark, DuckDB
//! and Snowflake read as partition columns. `begin` and `end` are the journal byte offsets the
//! fragment covers; `digest` is the SHA-256 of the file's bytes, so a name identifies its
//! content and a re-upload after a crash writes the very same object.

use super::Codec;

/// The one key range of a journal, until journals are split by key.
pub const PARTITION: &str = "pivot=00";

/// What a fragment's name says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub journal: String,
    pub begin: u64,
    pub end: u64,
    pub digest: String,
    pub codec: Codec,
}

/// The prefix under which every fragment of `journal` lives (with a trailing `/`).
pub fn journal_prefix(journal: &str) -> String {
    format!("{journal}/{PARTITION}/")
}

/// The path of a fragment. `published` is the first document's RFC 3339 UTC publish time.
pub fn path(
    journal: &str,
    published: &str,
    begin: u64,
    end: u64,
    digest: &str,
    codec: Codec,
) -> String {
    let date = published.get(0..10).unwrap_or("1970-01-01");
    let hour = published.get(11..13).unwrap_or("00");
    format!(
        "{}utc_date={date}/utc_hour={hour}/{begin:016x}-{end:016x}-{digest}.ndjson{}",
        journal_prefix(journal),
        codec.extension()
    )
}

/// Parse a path written by `path`; the error says why a file is not a fragment.
pub fn parse(path: &str) -> Result<Parsed, String> {
    let (journal, rest) = path
        .split_once(&format!("/{PARTITION}/"))
        .ok_or_else(|| format!("not under a '{PARTITION}' partition directory"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [date, hour, file] = parts.as_slice() else {
        return Err("expected utc_date=YYYY-MM-DD/utc_hour=HH/FILE after the partition".into());
    };
    let date_ok = date.strip_prefix("utc_date=").is_some_and(|d| {
        d.len() == 10
            && d.chars().enumerate().all(|(i, c)| {
                if i == 4 || i == 7 {
                    c == '-'
                } else {
                    c.is_ascii_digit()
                }
            })
    });
    let hour_ok = hour
        .strip_prefix("utc_hour=")
        .is_some_and(|h| h.len() == 2 && h.parse::<u8>().is_ok_and(|h| h < 24));
    if !date_ok || !hour_ok {
        return Err(format!("bad date or hour directory '{date}/{hour}'"));
    }
    let (stem, codec) = if let Some(s) = file.strip_suffix(".ndjson.gz") {
        (s, Codec::Gzip)
    } else if let Some(s) = file.strip_suffix(".ndjson.zst") {
        (s, Codec::Zstd)
    } else if let Some(s) = file.strip_suffix(".ndjson") {
        (s, Codec::None)
    } else {
        return Err(format!(
            "'{file}' does not end in .ndjson, .ndjson.gz or .ndjson.zst"
        ));
    };
    let fields: Vec<&str> = stem.split('-').collect();
    let [begin, end, digest] = fields.as_slice() else {
        return Err(format!("'{file}' is not BEGIN-END-DIGEST"));
    };
    let hex16 = |s: &str| {
        (s.len() == 16)
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
            .ok_or_else(|| format!("'{s}' in '{file}' is not a 16-digit hex offset"))
    };
    let (begin, end) = (hex16(begin)?, hex16(end)?);
    if begin >= end {
        return Err(format!("'{file}' has begin {begin} not below end {end}"));
    }
    if digest.len() != 64
        || !digest
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    {
        return Err(format!("'{file}' does not carry a SHA-256 digest"));
    }
    Ok(Parsed {
        journal: journal.to_string(),
        begin,
        end,
        digest: digest.to_string(),
        codec,
    })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let digest = "ab".repeat(32);
        let p = path(
            "acme/orders",
            "2026-11-24T07:05:01.123456Z",
            0,
            0x1f4,
            &digest,
            Codec::Gzip,
        );
        assert_eq!(
            p,
            format!(
                "acme/orders/pivot=00/utc_date=2026-11-24/utc_hour=07/0000000000000000-00000000000001f4-{digest}.ndjson.gz"
            )
        );
        let parsed = parse(&p).unwrap();
        assert_eq!(
            parsed,
            Parsed {
                journal: "acme/orders".into(),
                begin: 0,
                end: 500,
                digest: digest.clone(),
                codec: Codec::Gzip
            }
        );
        let zst = path("j", "2026-01-02T23:00:00Z", 5, 6, &digest, Codec::Zstd);
        assert_eq!(parse(&zst).unwrap().codec, Codec::Zstd);
        assert_eq!(
            parse(&path(
                "j",
                "2026-01-02T23:00:00Z",
                5,
                6,
                &digest,
                Codec::None
            ))
            .unwrap()
            .codec,
            Codec::None
        );

        for (bad, why) in [
            ("acme/orders/notes.txt", "partition"),
            ("acme/orders/pivot=00/README.md", "utc_date"),
            (
                "acme/orders/pivot=00/utc_date=2026-11-24/utc_hour=25/x.ndjson.gz",
                "hour",
            ),
            (
                "acme/orders/pivot=00/utc_date=2026-11-24/utc_hour=07/x.parquet",
                "does not end",
            ),
            (
                "acme/orders/pivot=00/utc_date=2026-11-24/utc_hour=07/x.ndjson.gz",
                "BEGIN-END-DIGEST",
            ),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let backwards = format!(
            "j/pivot=00/utc_date=2026-11-24/utc_hour=07/0000000000000009-0000000000000001-{digest}.ndjson"
        );
        assert!(parse(&backwards).unwrap_err().contains("not below"));
        let short = "j/pivot=00/utc_date=2026-11-24/utc_hour=07/0000000000000000-0000000000000001-abc.ndjson";
        assert!(parse(short).unwrap_err().contains("SHA-256"));
    }
}
