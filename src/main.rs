fn main() -> std::process::ExitCode {
    patchcore::cli::main()
}
