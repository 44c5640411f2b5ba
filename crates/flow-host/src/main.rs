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
    flow_host::cli::main()
}
