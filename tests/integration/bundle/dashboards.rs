//! The Grafana dashboards (`dashboards/*.json`): conventions (fixed unique uids; `datasource`,
//! `cluster` and `node` variables; rows; a description and a unit on every panel; panels
//! reading their data source from a variable; `$__rate_interval` in every `rate`/`increase`),
//! every PromQL query parsed by promtool, the workload name derived from pod names, and the
//! CloudWatch Logs Insights links (well-formed console URLs, queries on the record's fields).

use std::collections::BTreeSet;

use regex::Regex;
use serde_json::Value;
use tempfile::TempDir;

use kubeship_tests::{bundle, repo_root};

use super::{assert_fails, assert_found, assert_none, assert_ok, json, promtool, run};

/// The dashboards as (file stem, parsed JSON).
pub(crate) fn load() -> Vec<(String, Value)> {
    let all = bundle::dashboards(&repo_root()).expect("read dashboards/");
    assert!(
        all.len() >= 3,
        "expected the three dashboards, found {}",
        all.len()
    );
    all.into_iter()
        .map(|(stem, text)| {
            let value = json(&text, &stem);
            (stem, value)
        })
        .collect()
}

/// Every panel, the panels inside collapsed rows included.
pub(crate) fn panels(dash: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

/// The dashboard's template variables.
pub(crate) fn variables(dash: &Value) -> Vec<&Value> {
    dash["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .collect()
}

/// A panel's title.
pub(crate) fn title(p: &Value) -> &str {
    p["title"].as_str().unwrap_or("<untitled>")
}

/// The PromQL queries of a dashboard as (where, query): panel targets with an `expr`, and the
/// series selectors of `label_values(...)` variable queries.
pub(super) fn queries(stem: &str, dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                out.push((format!("{stem}: panel {:?}", title(p)), expr.to_string()));
            }
        }
    }
    let label_values = Regex::new(r"^label_values\((.*),\s*\w+\)$").expect("regex");
    for v in variables(dash) {
        let query = v["query"].as_str().unwrap_or_default();
        if v["type"] == "query" {
            let selector = label_values.captures(query).map(|c| c[1].to_string());
            let selector = selector.unwrap_or_else(|| query.to_string());
            out.push((format!("{stem}: variable {}", v["name"]), selector));
        }
    }
    out
}

/// `expr` with Grafana's variables replaced by values PromQL accepts: intervals by durations,
/// the dashboard's variables by a plain string (regex placeholders such as `$1` stay).
pub(super) fn substitute(expr: &str, variable_names: &BTreeSet<String>) -> String {
    let intervals = Regex::new(r"\$\{?__(?:rate_interval|interval|range)(?:_s|_ms)?\}?").unwrap();
    let expr = intervals.replace_all(expr, "5m");
    let vars = Regex::new(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)").unwrap();
    vars.replace_all(&expr, |c: &regex::Captures| {
        let name = c.get(1).or_else(|| c.get(2)).map_or("", |m| m.as_str());
        if variable_names.contains(name) {
            "x".to_string()
        } else {
            c[0].to_string()
        }
    })
    .into_owned()
}

fn variable_names(dash: &Value) -> BTreeSet<String> {
    variables(dash)
        .iter()
        .filter_map(|v| v["name"].as_str().map(String::from))
        .collect()
}

/// The conventions every dashboard follows, as a list of problems.
fn problems(dashboards: &[(String, Value)]) -> Vec<String> {
    let mut problems = Vec::new();
    let uid_ok = Regex::new(r"^[a-z0-9][a-z0-9-]{0,39}$").unwrap();
    let mut uids = BTreeSet::new();
    for (stem, dash) in dashboards {
        let mut p = |msg: String| problems.push(format!("{stem}: {msg}"));
        let uid = dash["uid"].as_str().unwrap_or_default();
        if !uid_ok.is_match(uid) {
            p(format!(
                "uid {uid:?} is not a fixed uid (lowercase, digits, '-', 1-40)"
            ));
        } else if !uids.insert(uid.to_string()) {
            p(format!("uid {uid:?} is used by another dashboard"));
        }
        let description = dash["description"].as_str().unwrap_or_default();
        if !(description.contains("`cluster`") && description.contains("`node`")) {
            p(
                "the description does not state where the `cluster` and `node` labels come from"
                    .into(),
            );
        }
        problems_of_variables(dash, &mut p);
        problems_of_panels(dash, &mut p);
    }
    problems
}

fn problems_of_variables(dash: &Value, p: &mut impl FnMut(String)) {
    let vars = variables(dash);
    let find = |name: &str| vars.iter().find(|v| v["name"] == name);
    match find("datasource") {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        _ => p("no `datasource` variable of type datasource (prometheus)".into()),
    }
    for name in ["cluster", "node"] {
        match find(name) {
            Some(v) if v["type"] == "query" && v["datasource"]["uid"] == "${datasource}" => {}
            _ => p(format!("no `{name}` query variable on ${{datasource}}")),
        }
    }
}

fn problems_of_panels(dash: &Value, p: &mut impl FnMut(String)) {
    let datasource_vars: BTreeSet<String> = variables(dash)
        .iter()
        .filter(|v| v["type"] == "datasource")
        .filter_map(|v| v["name"].as_str().map(|n| format!("${{{n}}}")))
        .collect();
    let all = panels(dash);
    if all.first().map(|p| &p["type"]) != Some(&Value::from("row")) {
        p("panels are not arranged in rows (the first panel is not a row)".into());
    }
    let mut ids = BTreeSet::new();
    let rate = Regex::new(r"\b(?:i?rate|increase)\(").unwrap();
    for panel in all {
        let t = title(panel);
        if !ids.insert(panel["id"].as_u64()) {
            p(format!("panel {t:?}: id {} is not unique", panel["id"]));
        }
        if panel["type"] == "row" {
            continue;
        }
        if panel["description"]
            .as_str()
            .is_none_or(|d| d.trim().is_empty())
        {
            p(format!("panel {t:?} has no description"));
        }
        if panel["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            p(format!(
                "panel {t:?} has no unit (fieldConfig.defaults.unit)"
            ));
        }
        let ds = panel["datasource"]["uid"].as_str().unwrap_or_default();
        if !datasource_vars.contains(ds) {
            p(format!(
                "panel {t:?}: data source {ds:?} is not a data source variable"
            ));
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            let tds = target["datasource"]["uid"].as_str().unwrap_or(ds);
            if tds != ds {
                p(format!(
                    "panel {t:?}: a target's data source {tds:?} is not the panel's"
                ));
            }
            let Some(expr) = target["expr"].as_str() else {
                continue;
            };
            for m in rate.find_iter(expr) {
                let rest = &expr[m.end()..];
                let range = rest.find('[').and_then(|i| {
                    let end = rest[i..].find(']')?;
                    Some(&rest[i + 1..i + end])
                });
                if range != Some("$__rate_interval") {
                    p(format!(
                        "panel {t:?}: {}…] does not use [$__rate_interval]: {range:?}",
                        m.as_str()
                    ));
                }
            }
        }
    }
}

#[test]
fn dashboards_follow_the_conventions() {
    let dashboards = load();
    assert_none(&problems(&dashboards), "dashboard conventions");

    // Each convention fails on a copy broken for it.
    let broken = |f: &dyn Fn(&mut Value)| {
        let mut copy = dashboards.clone();
        f(&mut copy[0].1);
        problems(&copy)
    };
    assert_found(
        &broken(&|d| d["panels"][1]["description"] = "".into()),
        "has no description",
        "a panel without a description",
    );
    assert_found(
        &broken(&|d| d["panels"][1]["fieldConfig"]["defaults"]["unit"] = Value::Null),
        "has no unit",
        "a panel without a unit",
    );
    assert_found(
        &broken(&|d| {
            let expr = "sum(rate(kubeship_log_lines_read_total[5m]))";
            d["panels"][1]["targets"][0]["expr"] = expr.into();
        }),
        "[$__rate_interval]",
        "rate over a fixed range",
    );
    assert_found(
        &broken(&|d| d["panels"][1]["datasource"]["uid"] = "P1809F7CD0C75ACF3".into()),
        "is not a data source variable",
        "a hard-coded data source",
    );
    assert_found(
        &broken(&|d| d["uid"] = dashboards[1].1["uid"].clone()),
        "is used by another dashboard",
        "a duplicate uid",
    );
    assert_found(
        &broken(&|d| d["uid"] = "${uid}".into()),
        "is not a fixed uid",
        "a templated uid",
    );
    assert_found(
        &broken(&|d| {
            let list = d["templating"]["list"].as_array_mut().unwrap();
            list.retain(|v| v["name"] != "node");
        }),
        "no `node` query variable",
        "no node variable",
    );
    assert_found(
        &broken(&|d| {
            d["panels"].as_array_mut().unwrap().remove(0);
        }),
        "arranged in rows",
        "no rows",
    );
}

/// Every query wrapped in a recording rule, in one rules file for `promtool check rules`.
fn rules_file(dashboards: &[(String, Value)]) -> String {
    let mut s = String::from("groups:\n  - name: dashboard-queries\n    rules:\n");
    let mut n = 0;
    for (stem, dash) in dashboards {
        let names = variable_names(dash);
        for (place, expr) in queries(stem, dash) {
            n += 1;
            let expr = substitute(&expr, &names);
            let quoted = serde_json::to_string(&expr).expect("a JSON string is a YAML string");
            s.push_str(&format!(
                "      # {place}\n      - record: dashboard:query:{n}\n        expr: {quoted}\n"
            ));
        }
    }
    s
}

#[test]
fn dashboard_queries_parse() {
    let dashboards = load();
    let dir = TempDir::new().expect("tempdir");
    let text = rules_file(&dashboards);
    assert!(
        text.matches("record:").count() > 60,
        "too few queries:\n{text}"
    );
    std::fs::write(dir.path().join("queries.yaml"), &text).unwrap();
    let out = run(&promtool(), &["check", "rules", "queries.yaml"], dir.path());
    assert_ok(&out, "promtool check rules (the dashboards' queries)");

    // A query that does not parse is refused.
    let mut broken = dashboards.clone();
    broken[0].1["panels"][1]["targets"][0]["expr"] =
        "sum by (node) (rate(x[$__rate_interval])".into();
    std::fs::write(dir.path().join("queries.yaml"), rules_file(&broken)).unwrap();
    let out = run(&promtool(), &["check", "rules", "queries.yaml"], dir.path());
    assert_fails(&out, "promtool check rules on a broken query");
}

#[test]
fn grafana_variables_are_substituted() {
    let names: BTreeSet<String> = ["cluster", "node"].map(String::from).into();
    assert_eq!(
        substitute(
            r#"rate(x{cluster=~"$cluster", node=~"${node}"}[$__rate_interval]) + y{a="$1"}"#,
            &names
        ),
        r#"rate(x{cluster=~"x", node=~"x"}[5m]) + y{a="$1"}"#
    );
}

/// The workloads dashboard names a pod's workload by stripping the suffixes Kubernetes
/// generates; promtool evaluates that `label_replace` on real pod names.
#[test]
fn workload_names_from_pod_names() {
    let dashboards = load();
    let find = Regex::new(r#""workload", "\$1", "pod", "([^"]+)"\)"#).unwrap();
    let mut found = BTreeSet::new();
    for (stem, dash) in &dashboards {
        for (_, expr) in queries(stem, dash) {
            for c in find.captures_iter(&expr) {
                if &c[1] != "(.*)" {
                    found.insert(c[1].to_string());
                }
            }
        }
    }
    assert_eq!(found.len(), 1, "one workload regex everywhere: {found:?}");
    let regex = found.into_iter().next().unwrap();
    let dir = TempDir::new().expect("tempdir");
    let out = run_workload_test(&dir, &regex);
    assert_ok(&out, "promtool test rules (workload names)");
    let out = run_workload_test(&dir, "^(.+)-[^-]+$");
    assert_fails(&out, "promtool test rules with a naive workload regex");
}

fn run_workload_test(dir: &TempDir, regex: &str) -> std::process::Output {
    let rule = format!(
        r#"label_replace(label_replace(p, "workload", "$1", "pod", "(.*)"), "workload", "$1", "pod", "{regex}")"#
    );
    let rules = format!(
        "groups:\n  - name: w\n    rules:\n      - record: w\n        expr: {}\n",
        serde_json::to_string(&rule).unwrap()
    );
    std::fs::write(dir.path().join("workload.yaml"), rules).unwrap();
    let cases = [
        ("web-7d4b9c-xk2lp", "web"),                    // Deployment
        ("coredns-5d78c9869d-bvzks", "coredns"),        // Deployment, 10-character hash
        ("api-gateway-6f9c8d7b5-2xk4m", "api-gateway"), // Deployment, name with '-'
        ("redis-cart-0", "redis-cart"),                 // StatefulSet
        ("aws-node-x2k9p", "aws-node"),                 // DaemonSet
        ("kube-proxy-2xk4m", "kube-proxy"),             // DaemonSet
        ("backup-28391234-x7k2p", "backup-28391234"),   // Job (of a CronJob)
        (
            "etcd-ip-10-0-1-17.ec2.internal",
            "etcd-ip-10-0-1-17.ec2.internal",
        ), // static pod
    ];
    let mut series = String::new();
    let mut samples = String::new();
    for (pod, workload) in cases {
        series.push_str(&format!(
            "      - series: 'p{{pod=\"{pod}\"}}'\n        values: '1'\n"
        ));
        samples.push_str(&format!(
            "          - labels: 'w{{pod=\"{pod}\", workload=\"{workload}\"}}'\n            value: 1\n"
        ));
    }
    let test = format!(
        "rule_files: [workload.yaml]\ntests:\n  - interval: 1m\n    input_series:\n{series}\
         \x20   promql_expr_test:\n      - expr: w\n        eval_time: 0m\n        exp_samples:\n{samples}"
    );
    std::fs::write(dir.path().join("workload.test.yaml"), test).unwrap();
    run(
        &promtool(),
        &["test", "rules", "workload.test.yaml"],
        dir.path(),
    )
}

/// The links of a dashboard (panel links, data links, links in field overrides) that open
/// CloudWatch Logs Insights, as (panel title, URL).
fn logs_insights_links(dash: &Value) -> Vec<(String, String)> {
    fn walk(v: &Value, title: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                if let Some(url) = map.get("url").and_then(Value::as_str)
                    && url.contains("logs-insights")
                {
                    out.push((title.to_string(), url.to_string()));
                }
                for v in map.values() {
                    walk(v, title, out);
                }
            }
            Value::Array(list) => list.iter().for_each(|v| walk(v, title, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for p in panels(dash) {
        walk(p, title(p), &mut out);
    }
    out
}

/// A Logs Insights console URL's query and log group, decoded (`*xx` is the byte 0xxx; Grafana
/// `${...}` placeholders stay as they are), or why it is not one.
fn decode_logs_insights(url: &str) -> Result<(String, String), String> {
    let shape = Regex::new(concat!(
        r"^https://console\.aws\.amazon\.com/cloudwatch/home\?region=\$\{region\}",
        r"#logsV2:logs-insights\$3FqueryDetail\$3D~\(end~0~start~-\d+~timeType~'RELATIVE",
        r"~unit~'seconds~editorString~'([^~]*)~source~\(~'([^~)]*)\)\)$"
    ))
    .unwrap();
    let c = shape
        .captures(url)
        .ok_or("not the console's Logs Insights URL shape")?;
    let decode = |s: &str| -> Result<String, String> {
        let raw = Regex::new(r"^(?:[A-Za-z0-9._-]|\*[0-9a-f]{2}|\$\{[A-Za-z0-9_.:]+\})*$").unwrap();
        if !raw.is_match(s) {
            return Err(format!(
                "{s:?} holds characters the console does not take raw"
            ));
        }
        let hex = Regex::new(r"\*([0-9a-f]{2})").unwrap();
        Ok(hex
            .replace_all(s, |h: &regex::Captures| {
                char::from(u8::from_str_radix(&h[1], 16).expect("two hex digits")).to_string()
            })
            .into_owned())
    };
    Ok((decode(&c[1])?, decode(&c[2])?))
}

fn logs_link_problems(dashboards: &[(String, Value)]) -> Vec<String> {
    let fields = Regex::new(r"kubernetes\.\w+|@\w+|\b(?:log|stream)\b").unwrap();
    let record: BTreeSet<&str> = [
        "@timestamp",
        "log",
        "stream",
        "kubernetes.namespace_name",
        "kubernetes.pod_name",
        "kubernetes.container_name",
    ]
    .into();
    let mut problems = Vec::new();
    for (stem, dash) in dashboards {
        for (panel, url) in logs_insights_links(dash) {
            let mut p = |msg: String| problems.push(format!("{stem}: panel {panel:?}: {msg}"));
            match decode_logs_insights(&url) {
                Err(e) => p(e),
                Ok((query, group)) => {
                    if group != "/aws/containerinsights/${cluster}/application" {
                        p(format!("log group {group:?} is not the default one"));
                    }
                    if !query.contains("kubernetes.namespace_name") {
                        p(format!("query {query:?} does not select by namespace"));
                    }
                    for f in fields.find_iter(&query) {
                        if !record.contains(f.as_str()) {
                            p(format!("query field {} is not a record field", f.as_str()));
                        }
                    }
                }
            }
        }
    }
    problems
}

#[test]
fn logs_insights_links_are_well_formed() {
    let dashboards = load();
    let count: usize = dashboards
        .iter()
        .map(|(_, d)| logs_insights_links(d).len())
        .sum();
    assert!(
        count >= 8,
        "expected links on the workloads panels, found {count}"
    );
    assert_none(&logs_link_problems(&dashboards), "Logs Insights links");

    let with_link = |url: &str| {
        let mut copy = dashboards.clone();
        let panel = &mut copy[0].1["panels"][1];
        panel["links"] = serde_json::json!([{"title": "logs", "url": url}]);
        logs_link_problems(&copy)
    };
    let good = logs_insights_links(&dashboards[2].1)[0].1.clone();
    assert_none(&with_link(&good), "a good link copied");
    assert_found(
        &with_link(&good.replace("*20", " ")),
        "not take raw",
        "a raw space",
    );
    assert_found(
        &with_link(&good.replace("namespace_name*20*3d", "namespace*20*3d")),
        "kubernetes.namespace is not a record field",
        "a field the record does not have",
    );
    assert_found(
        &with_link(&good.replace("*2fapplication", "*2fapp")),
        "not the default one",
        "another log group",
    );
    assert_found(
        &with_link(&good.replace("~source~(", "~source~")),
        "URL shape",
        "a broken structure",
    );
}
