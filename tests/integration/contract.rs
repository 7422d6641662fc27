//! The self-telemetry contract: the metric names in DESIGN.md's table (dashboards and alerts
//! query them) are exactly the families a running agent exposes on `/metrics`.

use std::collections::BTreeSet;

use kubeship_tests::{Agent, AgentConfig, Format, Node, repo_root, secs};

/// The metric names of the table in DESIGN.md's "Self-telemetry" section, prefixed:
/// `` `name{label}` `` cells, several per cell when separated by ` / `.
fn design_names() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join("DESIGN.md")).expect("DESIGN.md");
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Self-telemetry"))
        .expect("a Self-telemetry section in DESIGN.md");
    let mut names = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cell = row.split('|').nth(1).expect("a first cell");
        for part in cell.split(" / ") {
            let name = part.trim().trim_matches('`');
            let name = name.split('{').next().unwrap_or(name);
            names.insert(format!("kubeship_{name}"));
        }
    }
    assert!(
        names.len() >= 25,
        "too few names found in DESIGN.md: {names:?}"
    );
    names
}

/// The families `/metrics` declares (`# TYPE` lines), named as their samples are: a counter
/// family `x` is `x_total`. (Also used by the bundle test: the names dashboards and alerts use.)
pub(crate) fn exposed_families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let mut parts = rest.split_whitespace();
            let (family, kind) = (parts.next()?, parts.next()?);
            Some(match kind {
                "counter" if !family.ends_with("_total") => format!("{family}_total"),
                _ => family.to_string(),
            })
        })
        .collect()
}

/// The `/metrics` text of an agent that read a few lines (and is then stopped).
pub(crate) fn running_agent_metrics() -> String {
    let node = Node::new();
    let mut c = node.add_container("ns", "pod-0", "app", Format::Cri);
    c.write_lines(3);
    let mut agent = Agent::start(&node, &AgentConfig::default());
    agent.wait_ready(secs(30));
    let text = agent.metrics().expect("GET /metrics");
    agent.stop(secs(30));
    text
}

#[test]
fn every_metric_in_the_design_is_exposed_and_no_other() {
    let text = running_agent_metrics();
    let want = design_names();
    let exposed = exposed_families(&text);
    let missing: Vec<&String> = want.difference(&exposed).collect();
    assert!(
        missing.is_empty(),
        "in DESIGN.md's table but not on /metrics: {missing:?}"
    );
    let undocumented: Vec<&String> = exposed.difference(&want).collect();
    assert!(
        undocumented.is_empty(),
        "on /metrics but not in DESIGN.md's table (dashboards and alerts rely on that table): \
         {undocumented:?}"
    );
}
