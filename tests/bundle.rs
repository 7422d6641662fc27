//! The generated files of the dashboards-and-alerts bundle, made from the files people edit:
//!
//! * `dashboards/configmaps/<name>.yaml`: one ConfigMap per `dashboards/<name>.json`, labelled
//!   `grafana_dashboard: "1"` for the Grafana sidecar of kube-prometheus-stack;
//! * `alerts/prometheusrule.yaml`: a `PrometheusRule` whose `spec` is `alerts/kubeship-rules.yaml`;
//! * `alerts/alertmanager/amp-alertmanager.yaml`: the alert manager definition of Amazon Managed
//!   Service for Prometheus, from `alerts/alertmanager/amp-config.yaml` and the notification
//!   templates.
//!
//! Sources are embedded as text (YAML block scalars), not re-serialized: a generated file holds
//! its source byte for byte, comments included. `cargo run -p kubeship-tests --bin bundle-gen`
//! writes them; the `bundle` integration tests check that they are in sync.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The command that writes the generated files (named in their headers).
pub const GENERATE_COMMAND: &str = "cargo run -p kubeship-tests --bin bundle-gen";

/// The rules file people edit, relative to the repository root.
pub const RULES: &str = "alerts/kubeship-rules.yaml";
/// The PrometheusRule made from [`RULES`].
pub const PROMETHEUS_RULE: &str = "alerts/prometheusrule.yaml";
/// The Alertmanager configuration for AMP people edit.
pub const AMP_CONFIG: &str = "alerts/alertmanager/amp-config.yaml";
/// The notification templates, shared by both Alertmanager configurations.
pub const TEMPLATES_DIR: &str = "alerts/alertmanager/templates";
/// The AMP alert manager definition made from [`AMP_CONFIG`] and the templates.
pub const AMP_DEFINITION: &str = "alerts/alertmanager/amp-alertmanager.yaml";
/// Where the dashboards are; their ConfigMaps go to `configmaps/` inside it.
pub const DASHBOARDS_DIR: &str = "dashboards";

/// One generated file: its path relative to the repository root and its full text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// Path relative to the repository root.
    pub path: PathBuf,
    /// The whole file.
    pub text: String,
}

/// Every generated file, made from the sources under `root` (a repository checkout).
pub fn generate(root: &Path) -> io::Result<Vec<Generated>> {
    let mut out = Vec::new();
    for (stem, json) in dashboards(root)? {
        out.push(Generated {
            path: Path::new(DASHBOARDS_DIR)
                .join("configmaps")
                .join(format!("{stem}.yaml")),
            text: dashboard_configmap(&stem, &json),
        });
    }
    let rules = fs::read_to_string(root.join(RULES))?;
    out.push(Generated {
        path: PROMETHEUS_RULE.into(),
        text: prometheus_rule(&rules)?,
    });
    let amp = fs::read_to_string(root.join(AMP_CONFIG))?;
    out.push(Generated {
        path: AMP_DEFINITION.into(),
        text: amp_definition(&amp, &templates(root)?),
    });
    Ok(out)
}

/// The dashboards as (file stem, JSON text), sorted by name.
pub fn dashboards(root: &Path) -> io::Result<Vec<(String, String)>> {
    files_with_extension(&root.join(DASHBOARDS_DIR), "json")
}

/// The notification templates as (file name, text), sorted by name.
pub fn templates(root: &Path) -> io::Result<Vec<(String, String)>> {
    Ok(files_with_extension(&root.join(TEMPLATES_DIR), "tmpl")?
        .into_iter()
        .map(|(stem, text)| (format!("{stem}.tmpl"), text))
        .collect())
}

fn files_with_extension(dir: &Path, ext: &str) -> io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) == Some(ext) {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or_else(|| io::Error::other(format!("bad file name {}", path.display())))?
                .to_string();
            out.push((stem, fs::read_to_string(&path)?));
        }
    }
    out.sort();
    Ok(out)
}

fn header(source: &str) -> String {
    format!("# Generated from {source} by `{GENERATE_COMMAND}`: edit that, not this.\n")
}

/// The ConfigMap of dashboard `stem` (`dashboards/<stem>.json`).
pub fn dashboard_configmap(stem: &str, json: &str) -> String {
    let mut s = header(&format!("{DASHBOARDS_DIR}/{stem}.json"));
    s.push_str(
        "# Apply it in a namespace the Grafana sidecar watches (kube-prometheus-stack:\n\
         # grafana.sidecar.dashboards.searchNamespace); the label makes the sidecar load it.\n",
    );
    s.push_str("apiVersion: v1\nkind: ConfigMap\nmetadata:\n");
    s.push_str(&format!("  name: {stem}-dashboard\n"));
    s.push_str("  labels:\n    grafana_dashboard: \"1\"\n");
    s.push_str(
        "    app.kubernetes.io/name: kubeship\n    app.kubernetes.io/component: dashboards\n",
    );
    s.push_str("  annotations:\n    grafana_folder: kubeship\n");
    s.push_str("data:\n");
    s.push_str(&format!("  {stem}.json: "));
    s.push_str(&block_scalar(json, 4));
    s
}

/// The PrometheusRule whose `spec` is the rules file (from its `groups:` line on).
pub fn prometheus_rule(rules: &str) -> io::Result<String> {
    let start = rules
        .lines()
        .position(|l| l.starts_with("groups:"))
        .ok_or_else(|| io::Error::other(format!("{RULES} has no top-level `groups:`")))?;
    let mut s = header(RULES);
    s.push_str(
        "# kube-prometheus-stack loads PrometheusRules whose labels match its ruleSelector\n\
         # (by default `release: <its release name>`): add that label when applying.\n",
    );
    s.push_str("apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n");
    s.push_str("  name: kubeship\n  labels:\n");
    s.push_str("    app.kubernetes.io/name: kubeship\n    app.kubernetes.io/component: alerts\n");
    s.push_str("spec:\n");
    for line in rules.lines().skip(start) {
        if !line.is_empty() {
            s.push_str("  ");
            s.push_str(line);
        }
        s.push('\n');
    }
    Ok(s)
}

/// The AMP alert manager definition: the templates under `template_files` (keyed by file
/// name, as the configuration's `templates:` names them) and the configuration under
/// `alertmanager_config`.
pub fn amp_definition(config: &str, templates: &[(String, String)]) -> String {
    let mut s = header(&format!("{AMP_CONFIG} and {TEMPLATES_DIR}/"));
    s.push_str(
        "# Amazon Managed Service for Prometheus alert manager definition: upload it with\n\
         #   aws amp create-alert-manager-definition --workspace-id <id> --data fileb://amp-alertmanager.yaml\n\
         # (put-alert-manager-definition replaces it).\n",
    );
    s.push_str("template_files:\n");
    for (name, text) in templates {
        s.push_str(&format!("  {name}: "));
        s.push_str(&block_scalar(text, 4));
    }
    s.push_str("alertmanager_config: ");
    s.push_str(&block_scalar(config, 2));
    s
}

/// `text` as a YAML literal block scalar (the indicator line and the indented lines), such
/// that a YAML parser gives back `text` exactly: the chomping indicator keeps its trailing
/// newlines, an indentation indicator protects a first line that starts with a space.
fn block_scalar(text: &str, indent: usize) -> String {
    let body = text.trim_end_matches('\n');
    let trailing = text.len() - body.len();
    let mut s = String::from("|");
    if body.starts_with(' ') {
        s.push_str(&indent.to_string());
    }
    s.push_str(match trailing {
        0 => "-",
        1 => "",
        _ => "+",
    });
    s.push('\n');
    let pad = " ".repeat(indent);
    for line in body.split('\n') {
        if !line.is_empty() {
            s.push_str(&pad);
            s.push_str(line);
        }
        s.push('\n');
    }
    for _ in 1..trailing {
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_scalar_keeps_trailing_newlines_and_leading_spaces() {
        assert_eq!(block_scalar("a\n", 2), "|\n  a\n");
        assert_eq!(block_scalar("a", 2), "|-\n  a\n");
        assert_eq!(block_scalar("a\n\n", 2), "|+\n  a\n\n");
        assert_eq!(block_scalar(" a\n\nb\n", 2), "|2\n   a\n\n  b\n");
    }
}
