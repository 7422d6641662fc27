//! The dashboards-and-alerts bundle (`dashboards/`, `alerts/`), checked with the tools that
//! will read it: promtool (rule syntax, rule unit tests, every dashboard query's PromQL),
//! amtool (both Alertmanager configurations, routing per severity, notification templates),
//! the running agent (every metric name used exists, or is listed as pending), plus the
//! conventions no tool checks (dashboard variables, units, descriptions, `$__rate_interval`;
//! alert labels, annotations and runbook anchors; a pending and a firing test case per alert;
//! generated files in sync). Each check is a function returning its problems, and each test
//! also shows that its check fails on a broken copy.
//!
//! Run alone: `cargo test -p kubeship-tests --test integration bundle::` (needs `promtool` and
//! `amtool`, from Debian's `prometheus` and `prometheus-alertmanager`: `tests/run.sh` installs
//! them; the metric-name test also needs the agent binary).

mod alertmanager;
// The end-to-end test (`alerts_e2e.rs`) loads the rules and the dashboards as these do.
pub(crate) mod alerts;
pub(crate) mod dashboards;
mod names;
mod sync;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use kubeship_tests::{repo_root, run_with_timeout, secs};

/// Where every `runbook_url` points: the repository's `alerts/runbooks.md` on `main`.
const RUNBOOK_BASE: &str = "https://github.com/kubeship/kubeship/blob/main/alerts/runbooks.md";

/// The file `rel` of the repository as text.
pub(crate) fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// YAML text as a JSON value (the bundle's YAML is plain data: maps, lists, strings, numbers).
pub(crate) fn yaml(text: &str, what: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{what}: not YAML: {e}"))
}

/// JSON text as a value.
fn json(text: &str, what: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"))
}

/// `name` on `PATH`, or a panic saying which package brings it.
fn tool(name: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} not found on PATH: install Debian's {package} (tests/run.sh does)")
        })
}

fn promtool() -> PathBuf {
    tool("promtool", "prometheus")
}

fn amtool() -> PathBuf {
    tool("amtool", "prometheus-alertmanager")
}

/// Runs `program args…` in `dir` (30 s at most) and returns its output.
fn run(program: &Path, args: &[&str], dir: &Path) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir);
    run_with_timeout(&mut cmd, secs(30))
}

/// The output as one text, for assertion messages.
fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that the command succeeded.
#[track_caller]
fn assert_ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed: {}", describe(out));
}

/// Asserts that the command failed (a broken copy is refused).
#[track_caller]
fn assert_fails(out: &Output, what: &str) {
    assert!(
        !out.status.success(),
        "{what} should fail: {}",
        describe(out)
    );
}

/// Asserts that a check found no problem.
#[track_caller]
fn assert_none(problems: &[String], what: &str) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

/// Asserts that a check finds a problem in a broken copy, one that mentions `needle`.
#[track_caller]
fn assert_found(problems: &[String], needle: &str, what: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "{what}: expected a problem mentioning {needle:?}, got {problems:?}"
    );
}

/// A Prometheus duration (`90s`, `5m`, `1h30m`) in seconds; None when it is not one.
fn duration_secs(s: &str) -> Option<u64> {
    let mut total = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        total += n * match &rest[..unit] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            _ => return None,
        };
        rest = &rest[unit..];
    }
    Some(total)
}

/// Every alerting rule of a rules file (`groups[].rules[]` with an `alert`), with its group.
pub(crate) fn alert_rules(rules: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for group in rules["groups"].as_array().into_iter().flatten() {
        let name = group["name"].as_str().unwrap_or_default().to_string();
        for rule in group["rules"].as_array().into_iter().flatten() {
            if rule.get("alert").is_some() {
                out.push((name.clone(), rule.clone()));
            }
        }
    }
    out
}

#[test]
fn durations_parse() {
    assert_eq!(duration_secs("5m"), Some(300));
    assert_eq!(duration_secs("1h30m"), Some(5400));
    assert_eq!(duration_secs("0"), None);
    assert_eq!(duration_secs("5x"), None);
}
