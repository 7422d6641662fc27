//! The alert rules (`alerts/kubeship-rules.yaml`): promtool checks and runs their unit tests
//! (`alerts/kubeship-rules.test.yaml`); every alert has a case one evaluation before its
//! `for` elapses and one when it fires; every alert has a `for`, a `severity`, a generic
//! `summary`, a `description` naming the node (and the pod when the alert has one), and a
//! `runbook_url` pointing at its own section of `alerts/runbooks.md`.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;
use serde_json::Value;
use tempfile::TempDir;

use kubeship_tests::{bundle, repo_root};

use super::{
    RUNBOOK_BASE, alert_rules, assert_fails, assert_found, assert_none, assert_ok, duration_secs,
    promtool, read, run, yaml,
};

const TESTS: &str = "alerts/kubeship-rules.test.yaml";
const RUNBOOKS: &str = "alerts/runbooks.md";

pub(crate) fn rules() -> Value {
    yaml(&read(bundle::RULES), bundle::RULES)
}

#[test]
fn rules_pass_promtool_check_and_their_unit_tests() {
    let alerts = repo_root().join("alerts");
    let out = run(
        &promtool(),
        &["check", "rules", "kubeship-rules.yaml"],
        &alerts,
    );
    assert_ok(&out, "promtool check rules");
    let out = run(
        &promtool(),
        &["test", "rules", "kubeship-rules.test.yaml"],
        &alerts,
    );
    assert_ok(&out, "promtool test rules");

    // Broken copies fail: a rule that does not parse, an expected annotation that is wrong.
    let dir = TempDir::new().expect("tempdir");
    let copy = |rules: &str, tests: &str| {
        std::fs::write(dir.path().join("kubeship-rules.yaml"), rules).unwrap();
        std::fs::write(dir.path().join("kubeship-rules.test.yaml"), tests).unwrap();
    };
    let (rules, tests) = (read(bundle::RULES), read(TESTS));
    copy(&rules.replacen("== 0", "== = 0", 1), &tests);
    let out = run(
        &promtool(),
        &["check", "rules", "kubeship-rules.yaml"],
        dir.path(),
    );
    assert_fails(&out, "promtool check rules on a broken rule");
    copy(&rules, &tests.replacen("for 5 minutes", "for 6 minutes", 1));
    let out = run(
        &promtool(),
        &["test", "rules", "kubeship-rules.test.yaml"],
        dir.path(),
    );
    assert_fails(
        &out,
        "promtool test rules with a wrong expected description",
    );
}

/// For every alert: one test case that expects no alert one evaluation interval before a case
/// of the same test group that expects it firing. promtool then proves that the alert fires
/// exactly when its `for` elapses (pending at the first, firing at the second).
fn case_problems(rules: &Value, tests: &Value) -> Vec<String> {
    let default_interval = tests["evaluation_interval"]
        .as_str()
        .and_then(duration_secs)
        .unwrap_or(60);
    // The alerts with such a pair of cases in some test group.
    let mut covered = BTreeSet::new();
    for group in tests["tests"].as_array().into_iter().flatten() {
        let interval = group["interval"]
            .as_str()
            .and_then(duration_secs)
            .unwrap_or(default_interval);
        // alertname -> (eval times expecting no alert, eval times expecting it firing)
        type Times = (BTreeSet<u64>, BTreeSet<u64>);
        let mut per_alert: BTreeMap<&str, Times> = BTreeMap::new();
        for case in group["alert_rule_test"].as_array().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap_or_default();
            let at = case["eval_time"]
                .as_str()
                .and_then(duration_secs)
                .unwrap_or(0);
            let firing = case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty());
            let entry = per_alert.entry(name).or_default();
            if firing { &mut entry.1 } else { &mut entry.0 }.insert(at);
        }
        for (name, (quiet, firing)) in per_alert {
            if firing
                .iter()
                .any(|f| *f >= interval && quiet.contains(&(f - interval)))
            {
                covered.insert(name);
            }
        }
    }
    let mut problems = Vec::new();
    for (_, rule) in alert_rules(rules) {
        let name = rule["alert"].as_str().unwrap_or_default();
        if !covered.contains(name) {
            problems.push(format!(
                "{name}: no test group with a case expecting no alert one interval before a \
                 case expecting it firing"
            ));
        }
    }
    problems
}

#[test]
fn every_alert_has_a_pending_and_a_firing_case() {
    let (rules, tests) = (rules(), yaml(&read(TESTS), TESTS));
    assert_none(&case_problems(&rules, &tests), "rule test cases");
    assert!(
        alert_rules(&rules).len() >= 16,
        "expected every alert of the issue"
    );

    // Without the case before `for` elapses, or with it two intervals early, the check fails.
    for drop_quiet_case in [true, false] {
        let mut broken = tests.clone();
        let group = broken["tests"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|g| g["alert_rule_test"][0]["alertname"] == "KubeshipOldestUnackedBatchTooOld")
            .expect("a test group of KubeshipOldestUnackedBatchTooOld");
        let cases = group["alert_rule_test"].as_array_mut().unwrap();
        if drop_quiet_case {
            cases.retain(|c| c["exp_alerts"].as_array().is_none_or(|a| !a.is_empty()));
        } else {
            cases[0]["eval_time"] = "6m".into();
        }
        assert_found(
            &case_problems(&rules, &broken),
            "KubeshipOldestUnackedBatchTooOld",
            "an alert without its pending case",
        );
    }
}

/// GitHub's anchors of the `#`-headings of a Markdown text.
fn anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

/// Labels, annotations and runbook sections of every alert, as a list of problems; also
/// runbook sections that belong to no alert.
fn annotation_problems(rules: &Value, runbooks: &str) -> Vec<String> {
    let by_clause = Regex::new(r"\bby \(([^)]*)\)").unwrap();
    let anchors = anchors(runbooks);
    let mut problems = Vec::new();
    let mut sections: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_string())
        .collect();
    for (_, rule) in alert_rules(rules) {
        let name = rule["alert"].as_str().unwrap_or_default();
        let mut p = |msg: &str| problems.push(format!("{name}: {msg}"));
        if rule["for"].as_str().and_then(duration_secs).is_none() {
            p("no `for` (a pending case before it fires needs one)");
        }
        if !matches!(
            rule["labels"]["severity"].as_str(),
            Some("critical" | "warning")
        ) {
            p("severity is not critical or warning");
        }
        let ann = &rule["annotations"];
        let summary = ann["summary"].as_str().unwrap_or_default();
        if summary.is_empty() || summary.contains("{{") {
            p("summary missing or templated (it is the generic line)");
        }
        let description = ann["description"].as_str().unwrap_or_default();
        if !description.contains("{{ $labels.node }}") {
            p("description does not name the node");
        }
        let expr = rule["expr"].as_str().unwrap_or_default();
        let has_pod = by_clause
            .captures_iter(expr)
            .any(|c| c[1].split(',').any(|l| l.trim() == "pod"));
        if has_pod && !(description.contains("{{ $labels.namespace }}/{{ $labels.pod }}")) {
            p("description does not name the namespace and pod");
        }
        let url = ann["runbook_url"].as_str().unwrap_or_default();
        match url
            .strip_prefix(RUNBOOK_BASE)
            .and_then(|a| a.strip_prefix('#'))
        {
            None => p(&format!(
                "runbook_url {url:?} is not {RUNBOOK_BASE}#<anchor>"
            )),
            Some(a) if !anchors.contains(a) => p(&format!(
                "runbook anchor #{a} is not a heading of runbooks.md"
            )),
            Some(a) if a != name.to_lowercase() => p(&format!(
                "runbook anchor #{a} is not the alert's own section"
            )),
            Some(_) => {}
        }
        sections.remove(name);
    }
    for orphan in sections {
        problems.push(format!("runbooks.md: section {orphan:?} is no alert's"));
    }
    problems
}

#[test]
fn every_alert_is_annotated_and_its_runbook_section_exists() {
    let (rules, runbooks) = (rules(), read(RUNBOOKS));
    assert_none(&annotation_problems(&rules, &runbooks), "alert annotations");

    let broken = |f: &dyn Fn(&mut Value)| {
        let mut copy = rules.clone();
        f(&mut copy["groups"][0]["rules"][0]);
        annotation_problems(&copy, &runbooks)
    };
    assert_found(
        &broken(&|r| {
            r["annotations"]["runbook_url"] = format!("{RUNBOOK_BASE}#kubeship-agent-down").into()
        }),
        "is not a heading",
        "a runbook anchor that does not exist",
    );
    assert_found(
        &broken(&|r| r["labels"]["severity"] = "page".into()),
        "severity",
        "an unknown severity",
    );
    assert_found(
        &broken(&|r| r["annotations"]["description"] = "The agent is down.".into()),
        "does not name the node",
        "a description without the node",
    );
    assert_found(
        &broken(&|r| {
            r["annotations"]["description"] = "The agent on {{ $labels.node }} is down.".into()
        }),
        "does not name the namespace and pod",
        "a description without the pod",
    );
    let without_section = runbooks.replace("## KubeshipAgentDown", "## Agent down");
    assert_found(
        &annotation_problems(&rules, &without_section),
        "is not a heading",
        "a runbook section renamed",
    );
}

#[test]
fn runbook_anchors_follow_github() {
    let a = anchors("# kubeship runbooks\n## KubeshipAgentDown\n### What it means, now\n");
    let want: BTreeSet<String> = [
        "kubeship-runbooks",
        "kubeshipagentdown",
        "what-it-means-now",
    ]
    .map(String::from)
    .into();
    assert_eq!(a, want);
}
