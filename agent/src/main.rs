//! The `kubeship` binary: a thin shell around [`kubeship::cli::main`].

fn main() -> std::process::ExitCode {
    kubeship::cli::main()
}
