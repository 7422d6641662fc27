//! `bundle-gen`: writes the generated files of the dashboards-and-alerts bundle (the
//! dashboards' ConfigMaps, the PrometheusRule, the AMP alert manager definition; see
//! [`kubeship_tests::bundle`]) from the files people edit, and prints what it wrote.
//!
//! ```text
//! cargo run -p kubeship-tests --bin bundle-gen
//! ```
//!
//! The `bundle` integration tests fail while a generated file differs from what this writes.

use std::fs;
use std::process::ExitCode;

use kubeship_tests::{bundle, repo_root};

fn main() -> ExitCode {
    let root = repo_root();
    let files = match bundle::generate(&root) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("bundle-gen: {e}");
            return ExitCode::FAILURE;
        }
    };
    for file in files {
        let path = root.join(&file.path);
        if fs::read_to_string(&path).ok().as_deref() == Some(file.text.as_str()) {
            println!("unchanged {}", file.path.display());
            continue;
        }
        let written = path
            .parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|()| fs::write(&path, &file.text));
        if let Err(e) = written {
            eprintln!("bundle-gen: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", file.path.display());
    }
    ExitCode::SUCCESS
}
