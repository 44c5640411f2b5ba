//! `flow bench --suite fragments`: journal appends (throughput, and latency with fsync),
//! sealing into fragments per codec, and backfill reads of sealed history against reading the
//! same files directly with the same decompressor and `serde_json` (the floor).

use crate::journal::fragment::{Codec, Fragments, Settings};
use crate::journal::{self, Journals};
use crate::storage::Store;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn event(i: usize) -> Value {
    json!({
        "id": i,
        "customer": format!("customer-{}", i % 1000),
        "amount": (i % 997) as f64 / 4.0,
        "items": [{"sku": format!("sku-{}", i % 50), "qty": i % 5 + 1}],
        "note": "a typical event with a few fields and some text",
    })
}

pub fn run(docs: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = Arc::new(Store::open(&dir.path().join("flow.redb"))?);
    let root = dir.path().join("store");
    let fragments = Fragments::open(&format!("file://{}", root.display()), db.clone(), u64::MAX)?;
    let journals = Journals::with_fragments(fragments.clone());

    // Appends: one document per transaction (each waits for its fsync), then batches.
    let singles = (docs / 100).clamp(200, 2000);
    let mut latencies = Vec::with_capacity(singles);
    let started = Instant::now();
    for i in 0..singles {
        let doc = vec![event(i)];
        let t = Instant::now();
        db.write(move |txn| journal::append(txn, "bench/single", &doc))?;
        latencies.push(t.elapsed());
    }
    let single_secs = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "append, 1 doc per transaction (fsync each): {singles} appends, {:.0} appends/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        singles as f64 / single_secs,
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(*latencies.last().unwrap()),
    );

    let codecs = [Codec::Gzip, Codec::Zstd, Codec::None];
    let batch = 1000;
    let started = Instant::now();
    for codec in codecs {
        let journal = journal_of(codec);
        for from in (0..docs).step_by(batch) {
            let chunk: Vec<Value> = (from..(from + batch).min(docs)).map(event).collect();
            let j = journal.clone();
            db.write(move |txn| journal::append(txn, &j, &chunk))?;
        }
    }
    let batch_secs = started.elapsed().as_secs_f64();
    let bytes = journal::head(&db, &journal_of(Codec::Gzip))?;
    println!(
        "append, {batch} docs per transaction: {:.0} docs/s, {:.1} MB/s ({} docs x 3 journals, {:.1} MB each)",
        (3 * docs) as f64 / batch_secs,
        3.0 * bytes as f64 / 1e6 / batch_secs,
        docs,
        bytes as f64 / 1e6,
    );

    println!(
        "\n{:<6} {:>10} {:>8} {:>14} {:>14} {:>14} {:>14} {:>7}",
        "codec",
        "seal MB/s",
        "ratio",
        "backfill MB/s",
        "docs/s",
        "direct MB/s",
        "docs/s",
        "ours/direct"
    );
    for codec in codecs {
        let journal = journal_of(codec);
        let settings = Settings {
            length: 64 << 20,
            codec,
            ..Settings::default()
        };
        let t = Instant::now();
        let sealed = fragments.maintain(&journal, &settings, true)?;
        let seal_secs = t.elapsed().as_secs_f64();
        let stored: u64 = sealed.iter().map(|f| f.size).sum();

        // Best of three, alternating, so both see the same cache and machine noise.
        let (mut ours, mut direct) = (f64::MAX, f64::MAX);
        for _ in 0..3 {
            let t = Instant::now();
            let n = backfill(&journals, &db, &journal)?;
            ours = ours.min(t.elapsed().as_secs_f64());
            anyhow::ensure!(n == docs, "backfill read {n} of {docs} documents");
            let t = Instant::now();
            let n = read_directly(&root, &sealed)?;
            direct = direct.min(t.elapsed().as_secs_f64());
            anyhow::ensure!(n == docs, "direct read {n} of {docs} documents");
        }
        let mb = bytes as f64 / 1e6;
        println!(
            "{:<6} {:>10.1} {:>8.2} {:>14.1} {:>14.0} {:>14.1} {:>14.0} {:>7.2}",
            format!("{codec:?}").to_lowercase(),
            mb / seal_secs,
            bytes as f64 / stored as f64,
            mb / ours,
            docs as f64 / ours,
            mb / direct,
            docs as f64 / direct,
            direct / ours,
        );
    }
    println!(
        "\nseal MB/s: NDJSON bytes sealed per second (read from redb, compress, upload to a file:// store, fsync, index, trim); ratio: NDJSON bytes / file bytes.\nbackfill: Journals::read from offset 0 in task-sized batches, each document parsed to a serde_json::Value. direct: the same files read from disk, decompressed with the same decoder, split into lines and parsed the same way."
    );
    fragments.shutdown();
    Ok(())
}

fn journal_of(codec: Codec) -> String {
    format!("bench/{}", format!("{codec:?}").to_lowercase())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Read the journal from offset 0 as a task does; returns the documents read.
fn backfill(journals: &Journals, db: &Store, journal: &str) -> anyhow::Result<usize> {
    let limits = crate::limits::Limits::default();
    let (mut offset, mut n) = (0, 0);
    loop {
        let docs = journals.read(
            db,
            journal,
            offset,
            limits.txn_docs_max,
            limits.txn_bytes_max,
        )?;
        let Some(last) = docs.last() else {
            return Ok(n);
        };
        offset = last.next_offset();
        for d in &docs {
            let v: Value = serde_json::from_slice(&d.bytes)?;
            std::hint::black_box(v);
        }
        n += docs.len();
    }
}

/// The floor: read each file, decompress it with the same decoder, parse every line.
fn read_directly(
    root: &std::path::Path,
    sealed: &[crate::journal::fragment::Fragment],
) -> anyhow::Result<usize> {
    use std::io::BufRead;
    let mut n = 0;
    for f in sealed {
        let file = std::fs::read(root.join(&f.path))?;
        let mut lines = f.codec.decoder(file.into())?;
        let mut line = Vec::new();
        loop {
            line.clear();
            if lines.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            let v: Value = serde_json::from_slice(&line[..line.len() - 1])?;
            std::hint::black_box(v);
            n += 1;
        }
    }
    Ok(n)
}
