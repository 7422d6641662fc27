//! The `kubeship` binary: a thin shell around [`kubeship::cli::main`].

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    kubeship::cli::main()
}
