//! The generated files (dashboards' ConfigMaps, PrometheusRule, AMP alert manager definition)
//! are what `bundle-gen` makes from their sources now, and parse back to those sources.

use std::path::Path;

use tempfile::TempDir;

use kubeship_tests::{bundle, repo_root};

use super::{assert_found, assert_none, yaml};

/// Differences between the generated files under `root` and what `bundle-gen` would write,
/// and between what they hold (parsed) and their sources.
fn sync_problems(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let generated = match bundle::generate(root) {
        Ok(g) => g,
        Err(e) => return vec![format!("generate: {e}")],
    };
    for file in &generated {
        let on_disk = std::fs::read_to_string(root.join(&file.path)).unwrap_or_default();
        if on_disk != file.text {
            problems.push(format!(
                "{} is not what `{}` writes: run it",
                file.path.display(),
                bundle::GENERATE_COMMAND
            ));
        }
    }
    let read = |rel: &str| std::fs::read_to_string(root.join(rel)).unwrap_or_default();
    for (stem, json) in bundle::dashboards(root).unwrap_or_default() {
        let rel = format!("{}/configmaps/{stem}.yaml", bundle::DASHBOARDS_DIR);
        let cm = yaml(&read(&rel), &rel);
        if cm["metadata"]["labels"]["grafana_dashboard"] != "1" {
            problems.push(format!("{rel}: no label grafana_dashboard: \"1\""));
        }
        if cm["data"][format!("{stem}.json")].as_str() != Some(json.as_str()) {
            problems.push(format!("{rel}: data does not hold dashboards/{stem}.json"));
        }
    }
    let rule = yaml(&read(bundle::PROMETHEUS_RULE), bundle::PROMETHEUS_RULE);
    if rule["spec"] != yaml(&read(bundle::RULES), bundle::RULES) {
        problems.push(format!(
            "{}: spec is not {}",
            bundle::PROMETHEUS_RULE,
            bundle::RULES
        ));
    }
    let amp = yaml(&read(bundle::AMP_DEFINITION), bundle::AMP_DEFINITION);
    if amp["alertmanager_config"].as_str() != Some(read(bundle::AMP_CONFIG).as_str()) {
        problems.push(format!(
            "{}: alertmanager_config is not {}",
            bundle::AMP_DEFINITION,
            bundle::AMP_CONFIG
        ));
    }
    for (name, text) in bundle::templates(root).unwrap_or_default() {
        if amp["template_files"][&name].as_str() != Some(text.as_str()) {
            problems.push(format!(
                "{}: template_files.{name} is not the template",
                bundle::AMP_DEFINITION
            ));
        }
    }
    problems
}

#[test]
fn generated_files_are_in_sync() {
    let root = repo_root();
    assert_none(&sync_problems(&root), "generated files");

    // A copy whose source changed after generating is out of sync.
    let copy = TempDir::new().expect("tempdir");
    for dir in ["dashboards/configmaps", "alerts/alertmanager/templates"] {
        std::fs::create_dir_all(copy.path().join(dir)).unwrap();
    }
    let mut files = vec![
        bundle::RULES.to_string(),
        bundle::PROMETHEUS_RULE.to_string(),
        bundle::AMP_CONFIG.to_string(),
        bundle::AMP_DEFINITION.to_string(),
    ];
    for (stem, _) in bundle::dashboards(&root).unwrap() {
        files.push(format!("dashboards/{stem}.json"));
        files.push(format!("dashboards/configmaps/{stem}.yaml"));
    }
    for (name, _) in bundle::templates(&root).unwrap() {
        files.push(format!("{}/{name}", bundle::TEMPLATES_DIR));
    }
    for f in &files {
        std::fs::copy(root.join(f), copy.path().join(f)).unwrap();
    }
    assert_none(&sync_problems(copy.path()), "the copy before changing it");
    let rules = std::fs::read_to_string(copy.path().join(bundle::RULES)).unwrap();
    std::fs::write(
        copy.path().join(bundle::RULES),
        rules.replacen("for: 5m", "for: 6m", 1),
    )
    .unwrap();
    let template = copy
        .path()
        .join(bundle::TEMPLATES_DIR)
        .join("kubeship.tmpl");
    let text = std::fs::read_to_string(&template).unwrap();
    std::fs::write(&template, text.replacen("Runbook", "Runbook page", 1)).unwrap();
    let dashboard = copy.path().join("dashboards/kubeship-agent.json");
    let text = std::fs::read_to_string(&dashboard).unwrap();
    std::fs::write(&dashboard, text.replacen("Lines read", "Lines", 1)).unwrap();
    let problems = sync_problems(copy.path());
    assert_found(&problems, "spec is not", "a changed rules file");
    assert_found(
        &problems,
        "template_files.kubeship.tmpl",
        "a changed template",
    );
    assert_found(
        &problems,
        "does not hold dashboards/kubeship-agent.json",
        "a changed dashboard",
    );
    assert_found(&problems, "run it", "generated text");
}
