//! Every metric name the dashboards and the alert rules use exists: every `kubeship_` name on
//! the running agent's `/metrics` (the families of its `# TYPE` lines); any other name in the
//! explicit lists below of series the metrics pipeline forwards (the kubelet's and cAdvisor's)
//! or writes for every target (`up`).

use std::collections::BTreeSet;

use regex::Regex;

use super::{alert_rules, alerts, assert_found, assert_none, dashboards};
use crate::contract::exposed_families;

/// The kubelet's and its cAdvisor's series, which the metrics pipeline forwards
/// (`/metrics/cadvisor`; `kubelet_node_name` is on the kubelet's `/metrics`).
const KUBELET: &[&str] = &[
    "container_cpu_usage_seconds_total",
    "container_cpu_cfs_periods_total",
    "container_cpu_cfs_throttled_periods_total",
    "container_memory_working_set_bytes",
    "container_spec_memory_limit_bytes",
    "container_start_time_seconds",
    "container_oom_events_total",
    "kubelet_node_name",
];

/// Series a scraper writes for every target: Prometheus for the agent, the agent (metrics
/// pipeline) for the targets it scrapes.
const SCRAPE_SERIES: &[&str] = &["up"];

/// The metric names a PromQL expression selects: identifiers outside strings, label
/// matchers, ranges and grouping clauses that are not functions, keywords or numbers.
pub(super) fn metric_names(expr: &str) -> BTreeSet<String> {
    let strings = Regex::new(r#""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`"#).unwrap();
    let braces = Regex::new(r"\{[^}]*\}|\[[^\]]*\]").unwrap();
    let grouping =
        Regex::new(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)").unwrap();
    let s = strings.replace_all(expr, " ");
    let s = braces.replace_all(&s, " ");
    let s = grouping.replace_all(&s, " ");
    let ident = Regex::new(r"[A-Za-z_:][A-Za-z0-9_:]*").unwrap();
    let keywords = [
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "inf",
        "nan",
    ];
    let bytes = s.as_bytes();
    ident
        .find_iter(&s)
        .filter(|m| {
            let before = m.start().checked_sub(1).map(|i| bytes[i]);
            let after = s[m.end()..].trim_start().as_bytes().first().copied();
            !matches!(before, Some(b) if b.is_ascii_alphanumeric() || b == b'.' || b == b'$')
                && after != Some(b'(')
                && !keywords.contains(&m.as_str().to_lowercase().as_str())
        })
        .map(|m| m.as_str().to_string())
        .collect()
}

/// Where each name is used: (source, expr).
fn uses() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (stem, dash) in dashboards::load() {
        for (place, expr) in dashboards::queries(&stem, &dash) {
            out.push((place, expr));
        }
    }
    for (group, rule) in alert_rules(&alerts::rules()) {
        let expr = rule["expr"].as_str().unwrap_or_default().to_string();
        let place = format!(
            "alert {} (group {group})",
            rule["alert"].as_str().unwrap_or_default()
        );
        out.push((place, expr));
    }
    out
}

/// `name` is `family` or one of its histogram or summary series.
fn of_family(name: &str, family: &str) -> bool {
    name == family
        || ["_bucket", "_sum", "_count"]
            .iter()
            .any(|s| name.strip_suffix(s) == Some(family))
}

fn name_problems(exposed: &BTreeSet<String>, uses: &[(String, String)]) -> Vec<String> {
    let known = |list: &[&str], name: &str| list.iter().any(|f| of_family(name, f));
    let mut problems = Vec::new();
    for (place, expr) in uses {
        for name in metric_names(expr) {
            let on_agent = exposed.iter().any(|f| of_family(&name, f));
            let forwarded = known(KUBELET, &name) || known(SCRAPE_SERIES, &name);
            if name.starts_with("kubeship_") && !on_agent {
                problems.push(format!("{place}: {name} is not on the agent's /metrics"));
            } else if !(on_agent || forwarded) {
                problems.push(format!(
                    "{place}: {name} is neither on the agent's /metrics nor a forwarded series"
                ));
            }
        }
    }
    problems
}

#[test]
fn metric_names_are_exposed_by_the_agent_or_pending() {
    let text = crate::contract::running_agent_metrics();
    let exposed = exposed_families(&text);
    assert!(
        exposed.len() >= 25,
        "too few families on /metrics: {exposed:?}"
    );

    let uses = uses();
    assert!(uses.len() > 70, "too few queries and rules: {}", uses.len());
    assert_none(&name_problems(&exposed, &uses), "metric names");

    // A kubeship_ name the agent does not expose, an unknown other name: each fails.
    let with = |expr: &str| {
        let mut u = uses.clone();
        u.push(("made up".into(), expr.into()));
        name_problems(&exposed, &u)
    };
    assert_found(
        &with("rate(kubeship_log_lines_shipped_total[5m])"),
        "kubeship_log_lines_shipped_total is not on the agent's /metrics",
        "an unknown kubeship_ name",
    );
    assert_found(
        &with("container_cpu_usage_seconds"),
        "container_cpu_usage_seconds is neither",
        "an unknown kubelet name",
    );
}

#[test]
fn metric_names_of_expressions() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="y(z)"}[5m]))) / on (node) group_left b offset 1h > bool 1e3"#
        ),
        ["a_bucket", "b"]
    );
    assert_eq!(
        names(r#"label_replace(c, "w", "$1", "pod", "(.*)") unless max without (i) (d)[1h:1m]"#),
        ["c", "d"]
    );
    assert_eq!(names("time() - e > 64 * 1024"), ["e"]);
}
