use super::*;
use crate::journal::Journals;
use crate::storage::JOURNAL_BLOCKS;
use object_store::ObjectStoreExt;
use redb::ReadableTableMetadata;
use serde_json::{Value, json};

struct Fixture {
    _dir: tempfile::TempDir,
    db: Arc<Store>,
    fragments: Arc<Fragments>,
    journals: Journals,
}

fn fixture(url: &str, settings: Settings) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Store::open(&dir.path().join("db")).unwrap());
    let fragments = Fragments::open(url, db.clone(), 1 << 30).unwrap();
    fragments.configure(BTreeMap::from([("a/b".to_string(), settings)]));
    let journals = Journals::with_fragments(fragments.clone());
    Fixture {
        _dir: dir,
        db,
        fragments,
        journals,
    }
}

fn small(codec: Codec) -> Settings {
    Settings {
        length: 200,
        codec,
        ..Settings::default()
    }
}

fn append(db: &Store, from: u64, n: u64) {
    let docs: Vec<Value> = (from..from + n)
        .map(|i| json!({"i": i, "pad": "x".repeat(20)}))
        .collect();
    db.write(move |txn| crate::journal::append(txn, "a/b", &docs))
        .unwrap();
}

/// The `i` of every document read from `from` in batches of `batch`, and the offsets.
fn read_all(f: &Fixture, from: u64, batch: usize) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let docs = f
            .journals
            .read(&f.db, "a/b", offset, batch, 1 << 20)
            .unwrap();
        let Some(last) = docs.last() else { break };
        offset = last.next_offset();
        for d in docs {
            let v: Value = serde_json::from_slice(&d.bytes).unwrap();
            out.push((d.offset, v["i"].as_u64().unwrap()));
        }
    }
    out
}

/// Blocks of journal rows still in redb.
fn rows_in_redb(db: &Store) -> usize {
    let txn = db.read().unwrap();
    txn.open_table(JOURNAL_BLOCKS).unwrap().len().unwrap() as usize
}

#[test]
fn sealed_history_reads_like_the_head_in_every_codec() {
    for codec in [Codec::Gzip, Codec::Zstd, Codec::None] {
        let f = fixture("memory://", small(codec));
        append(&f.db, 0, 40);
        let before = read_all(&f, 0, 1000);
        // Nothing is due yet with a 200-byte length... except that 40 docs are far more.
        let sealed = f.fragments.maintain("a/b", &small(codec), false).unwrap();
        assert!(sealed.len() >= 5, "{codec:?}: sealed {}", sealed.len());
        // Contiguous, and every full fragment is at least `length` long.
        for w in sealed.windows(2) {
            assert_eq!(w[0].end, w[1].begin);
            assert!(w[0].end - w[0].begin >= 200);
        }
        assert!(
            sealed[0].path.starts_with("a/b/pivot=00/utc_date="),
            "{}",
            sealed[0].path
        );
        assert!(
            sealed[0]
                .path
                .ends_with(&format!(".ndjson{}", codec.extension()))
        );
        // The sealed rows are gone from redb; the unsealed tail (under `length`) stays.
        let status = f.fragments.status("a/b").unwrap();
        assert_eq!(status.fragments as usize, sealed.len());
        assert_eq!(status.persisted_through, sealed.last().unwrap().end);
        assert!(status.unsealed_bytes < 200);
        assert!(rows_in_redb(&f.db) < 40);
        // Reads are identical in any batch size, and from the middle of a fragment.
        for batch in [1, 3, 7, 1000] {
            assert_eq!(read_all(&f, 0, batch), before, "{codec:?} batch {batch}");
        }
        let (mid, _) = before[13];
        assert_eq!(read_all(&f, mid, 5), before[13..].to_vec());
        // An offset inside a document starts at the next one.
        assert_eq!(read_all(&f, mid + 1, 5), before[14..].to_vec());
        // Force seals the tail too; appends continue at the same head.
        f.fragments.maintain("a/b", &small(codec), true).unwrap();
        assert_eq!(rows_in_redb(&f.db), 0);
        append(&f.db, 40, 5);
        let all = read_all(&f, 0, 4);
        assert_eq!(
            all.iter().map(|d| d.1).collect::<Vec<_>>(),
            (0..45).collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_fresh_database_reconciled_with_the_store_reads_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("store").display());
    let f = fixture(&url, small(Codec::Zstd));
    append(&f.db, 0, 30);
    let before = read_all(&f, 0, 1000);
    f.fragments
        .maintain("a/b", &small(Codec::Zstd), true)
        .unwrap();
    let head = crate::journal::head(&f.db, "a/b").unwrap();

    // A new database over the same store.
    let g = fixture(&url, small(Codec::Zstd));
    assert_eq!(
        crate::journal::head(&g.db, "a/b").unwrap(),
        head,
        "the head moves past the history"
    );
    assert_eq!(read_all(&g, 0, 7), before);
    // Appends continue after the history, never reusing an offset.
    append(&g.db, 30, 1);
    let all = read_all(&g, 0, 1000);
    assert_eq!(all.len(), 31);
    assert_eq!(all[30].0, head);
}

#[test]
fn a_record_lost_after_upload_is_recovered_and_trim_catches_up() {
    let f = fixture("memory://", small(Codec::Gzip));
    append(&f.db, 0, 20);
    let before = read_all(&f, 0, 1000);
    let sealed = f
        .fragments
        .maintain("a/b", &small(Codec::Gzip), true)
        .unwrap();
    // As if the host died after uploading the last fragment but before recording it: drop the
    // record, and put the trimmed rows back.
    let last = sealed.last().unwrap().clone();
    let rows: Vec<(u64, Vec<u8>)> = before
        .iter()
        .filter(|(o, _)| *o >= last.begin)
        .map(|(o, _)| {
            (
                *o,
                f.journals.read(&f.db, "a/b", *o, 1, 1 << 20).unwrap()[0]
                    .bytes
                    .to_vec(),
            )
        })
        .collect();
    let begin = last.begin;
    f.db.write(move |txn| {
        txn.open_table(FRAGMENTS)?.remove(("a/b", begin))?;
        let mut blocks = txn.open_table(JOURNAL_BLOCKS)?;
        for (o, b) in &rows {
            // One line per block, as a format 1 upgrade leaves them.
            blocks.insert(("a/b", *o), [b.as_slice(), b"\n"].concat().as_slice())?;
        }
        Ok(())
    })
    .unwrap();
    assert!(rows_in_redb(&f.db) > 0);
    assert_eq!(
        read_all(&f, 0, 3),
        before,
        "head rows serve what the index lacks"
    );
    let r = f.fragments.reconcile("a/b").unwrap();
    assert_eq!(
        r,
        seal::Reconciled {
            added: 1,
            dropped: 0,
            skipped: 0
        }
    );
    assert_eq!(
        rows_in_redb(&f.db),
        0,
        "rows below the recovered fragment are trimmed"
    );
    assert_eq!(read_all(&f, 0, 3), before);
}

#[test]
fn corrupt_and_foreign_files_are_reported_and_skipped() {
    let f = fixture("memory://", small(Codec::Gzip));
    append(&f.db, 0, 30);
    let before = read_all(&f, 0, 1000);
    let sealed = f
        .fragments
        .maintain("a/b", &small(Codec::Gzip), true)
        .unwrap();
    assert!(sealed.len() >= 3);
    // Corrupt the second fragment in place, and drop foreign files beside the fragments.
    let victim = sealed[1].clone();
    let store = f.fragments.object.clone();
    f.fragments.block_on(async {
        let p = object_store::path::Path::parse(&victim.path).unwrap();
        let mut bytes = store.get(&p).await.unwrap().bytes().await.unwrap().to_vec();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        store.put(&p, bytes.into()).await.unwrap();
        for foreign in [
            "a/b/pivot=00/_SUCCESS",
            "a/b/pivot=00/utc_date=2026-01-01/utc_hour=00/part-0.parquet",
        ] {
            store
                .put(
                    &object_store::path::Path::parse(foreign).unwrap(),
                    "x".into(),
                )
                .await
                .unwrap();
        }
    });
    let got = read_all(&f, 0, 4);
    let expected: Vec<(u64, u64)> = before
        .iter()
        .filter(|(o, _)| *o < victim.begin || *o >= victim.end)
        .cloned()
        .collect();
    assert_eq!(
        got, expected,
        "the corrupt fragment is skipped, the rest is read in order"
    );
    let r = f.fragments.reconcile("a/b").unwrap();
    assert_eq!(r.skipped, 2);
    let status = f.fragments.status("a/b").unwrap();
    assert_eq!(status.skipped.len(), 3, "{:?}", status.skipped);
    assert!(
        status
            .skipped
            .iter()
            .any(|s| s.contains(&victim.path) && s.contains("digest"))
    );
    assert!(
        status
            .skipped
            .iter()
            .any(|s| s.contains("_SUCCESS") && s.contains("not a fragment"))
    );
}

#[test]
fn retention_deletes_old_fragments_and_readers_pass_over_them() {
    let settings = Settings {
        retention: Some(Duration::from_millis(200)),
        ..small(Codec::Zstd)
    };
    let f = fixture("memory://", settings.clone());
    append(&f.db, 0, 20);
    let old = f.fragments.maintain("a/b", &settings, true).unwrap();
    assert!(!old.is_empty());
    std::thread::sleep(Duration::from_millis(300));
    append(&f.db, 20, 10);
    let kept = f.fragments.maintain("a/b", &settings, true).unwrap();
    assert!(!kept.is_empty());
    // The maintain pass that sealed `kept` expired `old`.
    let listed = f.fragments.list("a/b").unwrap();
    assert_eq!(listed, kept);
    let left: Vec<_> = f
        .fragments
        .block_on(f.fragments.object.list(None).try_collect::<Vec<_>>())
        .unwrap();
    assert_eq!(left.len(), kept.len());
    let got: Vec<u64> = read_all(&f, 0, 4).iter().map(|d| d.1).collect();
    assert_eq!(got, (20..30).collect::<Vec<_>>());
    assert_eq!(
        f.fragments.status("a/b").unwrap().first_offset,
        kept[0].begin
    );
}

/// A reader following a journal while it is appended to, sealed and trimmed concurrently sees
/// every document once, in order: a trim never opens a gap under a reader.
#[test]
fn readers_racing_seals_and_trims_see_every_document_once() {
    let f = Arc::new(fixture("memory://", small(Codec::Zstd)));
    const N: u64 = 3000;
    let writer = {
        let f = f.clone();
        std::thread::spawn(move || {
            for from in (0..N).step_by(30) {
                append(&f.db, from, 30);
            }
        })
    };
    let sealer = {
        let f = f.clone();
        std::thread::spawn(move || {
            while crate::journal::head(&f.db, "a/b").unwrap() < 1 || !writer_done(&f, N) {
                f.fragments
                    .maintain("a/b", &small(Codec::Zstd), true)
                    .unwrap();
            }
            f.fragments
                .maintain("a/b", &small(Codec::Zstd), true)
                .unwrap();
        })
    };
    let (mut offset, mut next) = (0, 0u64);
    while next < N {
        let docs = f.journals.read(&f.db, "a/b", offset, 7, 1 << 20).unwrap();
        for d in &docs {
            let v: Value = serde_json::from_slice(&d.bytes).unwrap();
            assert_eq!(v["i"], next, "at offset {}", d.offset);
            assert_eq!(d.offset, offset);
            offset = d.next_offset();
            next += 1;
        }
    }
    writer.join().unwrap();
    sealer.join().unwrap();
    assert_eq!(rows_in_redb(&f.db), 0);
    assert!(f.fragments.list("a/b").unwrap().len() > 20);
}

fn writer_done(f: &Fixture, n: u64) -> bool {
    f.journals
        .read(&f.db, "a/b", 0, usize::MAX, usize::MAX)
        .unwrap()
        .len() as u64
        >= n
}

use futures::TryStreamExt;
