//! The Alertmanager configurations (`alerts/alertmanager/`): `amtool check-config` on both
//! (the AMP one as AMP gets it: extracted from the generated alert manager definition),
//! `amtool config routes test` per severity, the receivers' kinds (critical: SNS and Slack;
//! warning: Slack; AMP: SNS only, signed with SigV4), the inhibition (an agent that is down
//! silences its own symptoms on its node, nothing else), and the notification templates
//! rendered by `amtool template render`.

use std::collections::BTreeSet;
use std::path::Path;

use regex::Regex;
use serde_json::Value;
use tempfile::TempDir;

use kubeship_tests::{bundle, repo_root};

use super::{
    alert_rules, alerts, amtool, assert_fails, assert_found, assert_none, assert_ok, read, run,
    yaml,
};

const CONFIG: &str = "alerts/alertmanager/alertmanager.yaml";

/// The AMP definition as AMP reads it: its configuration and its template files, written
/// side by side into `dir` (the configuration's `templates:` name them relative to it).
fn extract_amp(dir: &Path) -> Value {
    let definition = yaml(&read(bundle::AMP_DEFINITION), bundle::AMP_DEFINITION);
    let config = definition["alertmanager_config"]
        .as_str()
        .expect("alertmanager_config is a string");
    std::fs::write(dir.join("alertmanager.yaml"), config).unwrap();
    for (name, text) in definition["template_files"]
        .as_object()
        .expect("template_files")
    {
        std::fs::write(dir.join(name), text.as_str().expect("a template's text")).unwrap();
    }
    yaml(config, "alertmanager_config")
}

#[test]
fn configs_pass_amtool_check_config() {
    let alerts_dir = repo_root().join("alerts/alertmanager");
    let out = run(
        &amtool(),
        &["check-config", "alertmanager.yaml"],
        &alerts_dir,
    );
    assert_ok(&out, "amtool check-config alertmanager.yaml");
    let amp = TempDir::new().expect("tempdir");
    extract_amp(amp.path());
    let out = run(
        &amtool(),
        &["check-config", "alertmanager.yaml"],
        amp.path(),
    );
    assert_ok(&out, "amtool check-config (AMP's alertmanager_config)");

    // A route to a receiver that does not exist is refused.
    let broken = read(CONFIG).replacen("receiver: slack-warning", "receiver: nowhere", 1);
    std::fs::write(amp.path().join("alertmanager.yaml"), broken).unwrap();
    let out = run(
        &amtool(),
        &["check-config", "alertmanager.yaml"],
        amp.path(),
    );
    assert_fails(&out, "amtool check-config with an unknown receiver");
}

/// The receivers a label set reaches, verified by `amtool config routes test`.
fn routes_test(dir: &Path, config: &str, severity: &str, receivers: &str) -> std::process::Output {
    let verify = format!("--verify.receivers={receivers}");
    let severity = format!("severity={severity}");
    let args = [
        "config",
        "routes",
        "test",
        "--config.file",
        config,
        &verify,
        "alertname=KubeshipAgentDown",
        "cluster=prod",
        "namespace=kubeship",
        &severity,
    ];
    run(&amtool(), &args, dir)
}

/// The kinds of notifier (`sns`, `slack`, …) of each receiver.
fn receiver_kinds(config: &Value, name: &str) -> BTreeSet<String> {
    config["receivers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["name"] == name)
        .flat_map(|r| r.as_object().into_iter().flatten())
        .filter_map(|(k, _)| k.strip_suffix("_configs").map(String::from))
        .collect()
}

#[test]
fn each_severity_reaches_its_receivers() {
    let plain_dir = repo_root().join("alerts/alertmanager");
    let plain = yaml(&read(CONFIG), CONFIG);
    let amp_dir = TempDir::new().expect("tempdir");
    let amp = extract_amp(amp_dir.path());
    // (config, where, severity, receivers, their kinds together)
    let cases: [(&Value, &Path, &str, &str, &[&str]); 6] = [
        (
            &plain,
            &plain_dir,
            "critical",
            "sns-critical,slack-critical",
            &["slack", "sns"],
        ),
        (&plain, &plain_dir, "warning", "slack-warning", &["slack"]),
        (&plain, &plain_dir, "none", "slack-warning", &["slack"]),
        (&amp, amp_dir.path(), "critical", "sns-critical", &["sns"]),
        (&amp, amp_dir.path(), "warning", "sns-warning", &["sns"]),
        (&amp, amp_dir.path(), "none", "sns-warning", &["sns"]),
    ];
    for (config, dir, severity, receivers, kinds) in cases {
        let out = routes_test(dir, "alertmanager.yaml", severity, receivers);
        assert_ok(
            &out,
            &format!(
                "severity={severity} reaches {receivers} ({})",
                dir.display()
            ),
        );
        let got: BTreeSet<String> = receivers
            .split(',')
            .flat_map(|r| receiver_kinds(config, r))
            .collect();
        let want: BTreeSet<String> = kinds.iter().map(|k| k.to_string()).collect();
        assert_eq!(got, want, "severity={severity}: kinds of {receivers}");
    }
    let out = routes_test(&plain_dir, "alertmanager.yaml", "critical", "slack-warning");
    assert_fails(
        &out,
        "amtool config routes test expecting the wrong receiver",
    );
}

/// AMP's managed Alertmanager takes only SNS receivers, signed with SigV4 in a region, and no
/// `api_url` or `http_config` anywhere.
fn amp_problems(config: &Value) -> Vec<String> {
    fn forbidden_keys(v: &Value, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    if matches!(k.as_str(), "api_url" | "http_config")
                        || (k.ends_with("_configs") && k != "sns_configs")
                        || k.starts_with("slack_api_url")
                    {
                        out.push(format!("{path}.{k} is not accepted by AMP"));
                    }
                    forbidden_keys(v, &format!("{path}.{k}"), out);
                }
            }
            Value::Array(list) => {
                for (i, v) in list.iter().enumerate() {
                    forbidden_keys(v, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut problems = Vec::new();
    forbidden_keys(config, "", &mut problems);
    for r in config["receivers"].as_array().into_iter().flatten() {
        let sns = r["sns_configs"].as_array().map_or(&[][..], Vec::as_slice);
        if sns.is_empty() {
            problems.push(format!("receiver {} has no sns_configs", r["name"]));
        }
        for c in sns {
            if c["sigv4"]["region"].as_str().is_none_or(str::is_empty) {
                problems.push(format!(
                    "receiver {}: an sns_config without sigv4.region",
                    r["name"]
                ));
            }
        }
    }
    problems
}

#[test]
fn amp_config_has_only_sns_receivers_with_sigv4() {
    let dir = TempDir::new().expect("tempdir");
    let amp = extract_amp(dir.path());
    assert_none(&amp_problems(&amp), "AMP configuration");
    let plain = yaml(&read(CONFIG), CONFIG);
    assert_found(
        &amp_problems(&plain),
        "slack_configs",
        "the plain configuration for AMP",
    );
    let mut broken = amp.clone();
    broken["receivers"][0]["sns_configs"][0]["api_url"] = "https://sns.example".into();
    broken["receivers"][1]["sns_configs"][0]["sigv4"] = Value::Null;
    let problems = amp_problems(&broken);
    assert_found(&problems, "api_url", "an api_url");
    assert_found(&problems, "sigv4.region", "no sigv4");
}

/// A matcher of an inhibit rule (`name=v`, `name!=v`, `name=~re`, `name!~re`) applied to an
/// alert's labels.
fn matches(matcher: &str, labels: &dyn Fn(&str) -> String) -> bool {
    let m = Regex::new(r#"^\s*(\w+)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$"#).unwrap();
    let c = m
        .captures(matcher)
        .unwrap_or_else(|| panic!("matcher {matcher:?}"));
    let value = labels(&c[1]);
    let re = Regex::new(&format!("^(?:{})$", &c[3])).expect("matcher regex");
    match &c[2] {
        "=" => value == c[3],
        "!=" => value != c[3],
        "=~" => re.is_match(&value),
        _ => !re.is_match(&value),
    }
}

/// Which alerts of the rules file an inhibit rule silences, and what it requires equal.
fn inhibition_problems(config: &Value, rules: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let inhibit = config["inhibit_rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let [rule] = inhibit.as_slice() else {
        return vec![format!(
            "expected one inhibit rule, found {}",
            inhibit.len()
        )];
    };
    let all = |key: &str, name: &str| {
        rule[key].as_array().into_iter().flatten().all(|m| {
            matches(m.as_str().unwrap_or_default(), &|l: &str| {
                if l == "alertname" {
                    name.to_string()
                } else {
                    String::new()
                }
            })
        })
    };
    let equal: BTreeSet<&str> = rule["equal"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !(equal.contains("node") && equal.contains("cluster")) {
        problems.push(format!(
            "the inhibition does not require the same cluster and node: {equal:?}"
        ));
    }
    for (group, alert) in alert_rules(rules) {
        let name = alert["alert"].as_str().unwrap_or_default();
        let source = name == "KubeshipAgentDown" || name == "KubeshipAgentMissingOnNode";
        let symptom = !source && group.starts_with("kubeship-") && group != "kubeship-workloads";
        if all("source_matchers", name) != source {
            problems.push(format!(
                "{name}: inhibits = {}, should be {source}",
                !source
            ));
        }
        if all("target_matchers", name) != symptom {
            problems.push(format!(
                "{name}: inhibited = {}, should be {symptom}",
                !symptom
            ));
        }
    }
    problems
}

#[test]
fn agent_down_inhibits_its_own_symptoms_only() {
    let rules = alerts::rules();
    let plain = yaml(&read(CONFIG), CONFIG);
    let dir = TempDir::new().expect("tempdir");
    let amp = extract_amp(dir.path());
    assert_none(
        &inhibition_problems(&plain, &rules),
        "inhibition (alertmanager.yaml)",
    );
    assert_eq!(
        plain["inhibit_rules"], amp["inhibit_rules"],
        "both configurations inhibit alike"
    );

    let mut broken = plain.clone();
    broken["inhibit_rules"][0]["target_matchers"] = serde_json::json!([r#"alertname=~".+""#]);
    assert_found(
        &inhibition_problems(&broken, &rules),
        "ContainerOOMKilled: inhibited",
        "inhibiting all",
    );
    broken["inhibit_rules"][0]["equal"] = serde_json::json!(["cluster"]);
    assert_found(
        &inhibition_problems(&broken, &rules),
        "same cluster and node",
        "any node",
    );
}

/// One firing and one resolved alert, as Alertmanager passes them to templates.
const SAMPLE: &str = r#"{"receiver": "slack-critical", "status": "firing",
 "alerts": [
  {"status": "firing", "startsAt": "2026-01-02T03:04:05Z", "endsAt": "0001-01-01T00:00:00Z",
   "labels": {"alertname": "KubeshipAgentDown", "severity": "critical", "cluster": "prod",
              "namespace": "kubeship", "pod": "kubeship-x2k9p", "node": "ip-10-0-1-17"},
   "annotations": {"summary": "A kubeship agent cannot be scraped.",
                   "description": "kubeship pod kubeship/kubeship-x2k9p on node ip-10-0-1-17 has not answered.",
                   "runbook_url": "https://github.com/kubeship/kubeship/blob/main/alerts/runbooks.md#kubeshipagentdown"}},
  {"status": "resolved", "startsAt": "2026-01-02T03:00:05Z", "endsAt": "2026-01-02T03:10:05Z",
   "labels": {"alertname": "KubeshipAgentDown", "severity": "critical", "cluster": "prod",
              "namespace": "kubeship", "pod": "kubeship-b7rt5", "node": "ip-10-0-2-4"},
   "annotations": {"summary": "A kubeship agent cannot be scraped.",
                   "description": "kubeship pod kubeship/kubeship-b7rt5 on node ip-10-0-2-4 has not answered.",
                   "runbook_url": "https://github.com/kubeship/kubeship/blob/main/alerts/runbooks.md#kubeshipagentdown"}}],
 "groupLabels": {"alertname": "KubeshipAgentDown", "cluster": "prod", "namespace": "kubeship"},
 "commonLabels": {"alertname": "KubeshipAgentDown", "severity": "critical", "cluster": "prod",
                  "namespace": "kubeship"},
 "commonAnnotations": {}, "externalURL": "http://alertmanager:9093"}"#;

fn render(dir: &Path, name: &str) -> std::process::Output {
    let text = format!("{{{{ template \"{name}\" . }}}}");
    let args = [
        "template",
        "render",
        "--template.glob=*.tmpl",
        "--template.data=data.json",
        "--template.text",
        &text,
    ];
    run(&amtool(), &args, dir)
}

#[test]
fn notification_templates_render() {
    let dir = TempDir::new().expect("tempdir");
    extract_amp(dir.path());
    std::fs::write(dir.path().join("data.json"), SAMPLE).unwrap();
    let define = Regex::new(r#"\{\{-?\s*define\s+"([^"]+)""#).unwrap();
    let mut names = BTreeSet::new();
    for (_, text) in bundle::templates(&repo_root()).expect("templates") {
        names.extend(define.captures_iter(&text).map(|c| c[1].to_string()));
    }
    let config = read(CONFIG) + &read(bundle::AMP_CONFIG);
    for name in &names {
        let out = render(dir.path(), name);
        assert_ok(&out, &format!("amtool template render {name}"));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.trim().is_empty() && !text.contains("<no value>"),
            "{name} rendered {text:?}"
        );
    }
    for used in Regex::new(r#"template "([^"]+)""#)
        .unwrap()
        .captures_iter(&config)
    {
        assert!(
            names.contains(&used[1]),
            "the configurations use undefined template {}",
            &used[1]
        );
    }
    assert_fails(
        &render(dir.path(), "kubeship.nope"),
        "rendering an undefined template",
    );
}
