//! The command line: `kubeship run`, `kubeship validate`, `kubeship push-samples`,
//! `kubeship --version`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::{self, RunOptions};
use crate::config;

/// Per-node observability agent for Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "kubeship", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent.
    Run {
        /// Configuration file (YAML).
        #[arg(long, short)]
        config: PathBuf,
        /// Exit once every log file was read to its end and delivered.
        #[arg(long)]
        exit_on_eof: bool,
    },
    /// Check a configuration file and report every problem in it.
    Validate {
        /// Configuration file (YAML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Send samples, as JSON lines in the metrics local sink's format, to the
    /// config's metrics destination (remote write, else the local sink), then exit.
    /// A blank line ends one push. Exits 3 when a sample was not delivered.
    PushSamples {
        /// Configuration file (YAML) with a `metrics:` section.
        #[arg(long, short)]
        config: PathBuf,
        /// Read the samples from this file instead of standard input.
        #[arg(long)]
        input: Option<PathBuf>,
    },
}

/// Exit code for a configuration that does not load, or lacks a setting the
/// environment does not give either ([`app::ConfigProblem`]).
const EXIT_CONFIG: u8 = 1;
/// Exit code for a failure while running.
const EXIT_RUNTIME: u8 = 3;

/// Parses the arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { config } => match config::load_file(&config) {
            Ok(_) => {
                println!("config ok");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::PushSamples { config, input } => push_samples(&config, input.as_deref()),
        Command::Run {
            config,
            exit_on_eof,
        } => {
            let cfg = match config::load_file(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            crate::telemetry::logging::init(cfg.telemetry.log_format, &cfg.telemetry.log_level);
            match app::run(cfg, RunOptions { exit_on_eof }) {
                Ok(report) => {
                    if exit_on_eof {
                        print_report(&report);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => match e.downcast_ref::<app::ConfigProblem>() {
                    // Like a problem `validate` reports: `FILE: key.path: message`.
                    Some(problem) => {
                        tracing::error!(error = %problem, "configuration problem");
                        eprintln!("{}: {problem}", config.display());
                        ExitCode::from(EXIT_CONFIG)
                    }
                    None => {
                        tracing::error!(error = format!("{e:#}"), "kubeship failed");
                        eprintln!("kubeship: {e:#}");
                        ExitCode::from(EXIT_RUNTIME)
                    }
                },
            }
        }
    }
}

/// `kubeship push-samples`: prints what became of the samples.
fn push_samples(config: &std::path::Path, input: Option<&std::path::Path>) -> ExitCode {
    let cfg = match config::load_file(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    crate::telemetry::logging::init(cfg.telemetry.log_format, &cfg.telemetry.log_level);
    let result = match input {
        Some(path) => std::fs::File::open(path)
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))
            .and_then(|f| crate::metrics::push::run(cfg, std::io::BufReader::new(f))),
        None => crate::metrics::push::run(cfg, std::io::stdin().lock()),
    };
    match result {
        Ok(report) => {
            println!(
                "kubeship: pushed {} samples ({} lines skipped)",
                report.pushed, report.bad_lines
            );
            print_metrics_summary(&report.summary);
            if report.complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_RUNTIME)
            }
        }
        Err(e) => match e.downcast_ref::<app::ConfigProblem>() {
            Some(problem) => {
                eprintln!("{}: {problem}", config.display());
                ExitCode::from(EXIT_CONFIG)
            }
            None => {
                eprintln!("kubeship: {e:#}");
                ExitCode::from(EXIT_RUNTIME)
            }
        },
    }
}

/// Where the metrics pipeline's samples went.
fn print_metrics_summary(summary: &crate::metrics::sink::Summary) {
    match summary {
        crate::metrics::sink::Summary::RemoteWrite(endpoints) => {
            for e in endpoints {
                println!(
                    "  endpoint {}: sent {}, failed {}, dropped {}",
                    e.endpoint, e.sent, e.failed, e.dropped
                );
            }
        }
        crate::metrics::sink::Summary::Local(dir) => {
            let file = dir.join(crate::metrics::local::FILE_NAME);
            let lines = std::fs::read(&file)
                .map(|b| memchr::memchr_iter(b'\n', &b).count())
                .unwrap_or(0);
            println!("  local sink: {} ({lines} samples)", file.display());
        }
    }
}

fn print_report(
    app::Report {
        logs: report,
        metrics,
    }: &app::Report,
) {
    let s = report.summary;
    println!(
        "kubeship: shipped {} records from {} files",
        s.records, s.files
    );
    if let Some(dir) = &report.local_dir {
        println!("local sink output: {}", dir.display());
        let mut files = Vec::new();
        collect_jsonl(dir, &mut files);
        files.sort();
        for f in files {
            let lines = std::fs::read(&f)
                .map(|b| memchr::memchr_iter(b'\n', &b).count())
                .unwrap_or(0);
            println!("  {} ({lines} records)", f.display());
        }
    }
    if let Some(summary) = metrics {
        println!("kubeship: metrics pipeline");
        print_metrics_summary(summary);
    }
    if !report.drained {
        println!("warning: not everything in flight was delivered before the shutdown timeout");
    }
}

fn collect_jsonl(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_jsonl(&p, out);
        } else if p.extension().is_some_and(|x| x == "jsonl") {
            out.push(p);
        }
    }
}
