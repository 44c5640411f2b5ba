//! Data parallelism for the per-document work of one request (parsing and validating an
//! ingest): a large batch is split into one chunk per core, each on a scoped thread, so one
//! client's big request uses both cores instead of one.

/// Below this many items a batch runs on the calling thread: a thread costs more than it saves.
const MIN_PARALLEL: usize = 2048;

/// The cores this process may use, asked once: the answer reads cgroup files, which is not
/// free per batch.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `f` over consecutive chunks of `items` (each given the index of its first item), on up to
/// one thread per core; the results in chunk order.
pub(crate) fn chunks<T: Sync, R: Send>(items: &[T], f: impl Fn(usize, &[T]) -> R + Sync) -> Vec<R> {
    if items.len() < MIN_PARALLEL {
        return vec![f(0, items)];
    }
    let cores = cores();
    if cores < 2 {
        return vec![f(0, items)];
    }
    let size = items.len().div_ceil(cores);
    let f = &f;
    std::thread::scope(|s| {
        let mut parts = items.chunks(size).enumerate();
        // The first chunk runs here, the others beside it.
        let (_, first) = parts.next().expect("a non-empty batch has a chunk");
        let others: Vec<_> = parts
            .map(|(i, c)| s.spawn(move || f(i * size, c)))
            .collect();
        let mut out = vec![f(0, first)];
        for h in others {
            out.push(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        out
    })
}

/// `chunks` of a fallible `f` per item: every item's result in order, or the error of the
/// first item (in item order) that failed.
pub(crate) fn try_map<T: Sync, R: Send, E: Send>(
    items: &[T],
    f: impl Fn(usize, &T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let parts = chunks(items, |offset, chunk| {
        chunk
            .iter()
            .enumerate()
            .map(|(j, item)| f(offset + j, item))
            .collect::<Result<Vec<R>, E>>()
    });
    let mut out = Vec::with_capacity(items.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

#[cfg(test)]
mod test {
    #[test]
    fn results_keep_their_order_and_the_first_error_wins() {
        let items: Vec<usize> = (0..10_000).collect();
        let doubled = super::try_map(&items, |i, x| Ok::<_, String>(i + x)).unwrap();
        assert_eq!(doubled, (0..10_000).map(|x| 2 * x).collect::<Vec<_>>());
        let failed = super::try_map(&items, |i, _| match i {
            3 | 9_000 => Err(i),
            _ => Ok(()),
        });
        assert_eq!(failed, Err(3));
    }
}
