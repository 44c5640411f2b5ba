/// mimalloc instead of glibc's allocator: documents are many small, short-lived allocations
/// made on one thread and freed on another (ingest parses, the committer drops; a task reads,
/// the plugin boundary copies), where glibc's malloc/free were ~23% of the pipeline's CPU
/// (docs/benchmarks.md, third pass).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // No transparent huge pages for this process: mimalloc's arena would be backed by 2 MiB
    // pages, and a huge page counts whole in RSS however little of it is used. Measured on
    // the pipeline suite: peak RSS 274-298 MiB with them, 209-222 MiB without, same
    // throughput. (mimalloc is also built not to ask for them: feature `no_thp`.)
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    purge_sooner();
    flow_host::cli::main()
}

/// mimalloc hands freed memory back to the OS 1 s after it is freed; 500 ms keeps less of a
/// transaction's garbage resident while the next one runs. Measured on the pipeline suite
/// (docs/benchmarks.md, seventh pass): the join's peak RSS 256-270 -> 238-248 MiB, the
/// totals pipeline ~3% slower by its ratio to the floor (250 ms: 234-235 MiB, but ~5-9%).
/// `MIMALLOC_PURGE_DELAY` in the environment still decides.
#[allow(unsafe_code)]
fn purge_sooner() {
    /// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (include/mimalloc.h).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's options, which it reads atomically at each purge.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 500) };
    }
}
