fn main() -> std::process::ExitCode {
    flow_host::cli::main()
}
