/// mimalloc instead of glibc's allocator: documents are many small, short-lived allocations
/// made on one thread and freed on another (ingest parses, the committer drops; a task reads,
/// the plugin boundary copies), where glibc's malloc/free were ~23% of the pipeline's CPU
/// (docs/benchmarks.md, third pass).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    flow_host::cli::main()
}
