//! The dashboards-and-alerts bundle end to end, with real components: the agent ships a
//! container's logs to CloudWatch Logs (moto) and forwards its own metrics (job `kubeship`),
//! a pod's, a failing pod's and a kubelet cAdvisor stand-in's by remote write to real
//! Prometheus, which evaluates the shipped rules (a copy with `for:` shortened, evaluated
//! every second) and sends to real Alertmanager, configured from the shipped
//! `alerts/alertmanager/alertmanager.yaml` (timings shortened) with a Slack stand-in behind its
//! webhook URL file and SNS in a second moto (read back through a subscribed SQS queue).
//!
//! A real fault: moto's CloudWatch Logs is killed (its port refuses connections), so
//! `KubeshipCloudWatchDeliveryFailing` fires and reaches both Slack and SNS naming the node;
//! moto comes back on the same port, every line written meanwhile is delivered, and the alert
//! resolves in Slack and SNS. Then every PromQL query of every dashboard panel, its variables
//! substituted, returns data from that Prometheus (and each variable lists the test's values);
//! the panels not run are listed exactly in [`NOT_RUN`]. (That every metric name the dashboards
//! and rules use is on the agent's `/metrics` is `bundle::names`.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::{Value, json};

use kubeship_tests::*;

use crate::bundle::{alerts, dashboards, read, yaml};

const NODE: &str = "node-1";
/// `AgentConfig::cluster`, every forwarded sample's `cluster` label.
const CLUSTER: &str = "test";
/// The agent's own pod (`POD_NAMESPACE`, `POD_NAME`): the `namespace` and `pod` labels of
/// its metrics.
const AGENT_NAMESPACE: &str = "kube-system";
const AGENT_POD: &str = "kubeship-x1";
/// The workload whose logs are shipped (a Deployment's pod: workload `web`).
const WEB_POD: &str = "web-7d4b9c-xk2lp";
/// A pod whose scrapes fail (`up` 0).
const WORKER_POD: &str = "worker-5c8d7-q9x2z";
/// The alert the fault raises.
const ALERT: &str = "KubeshipCloudWatchDeliveryFailing";
/// Every rule's `for:` in the test copy.
const FOR: &str = "3s";
/// `$__rate_interval` (Grafana: four scrape intervals at least; the data source's default
/// scrape interval of 15 s makes it 1m).
const RATE_INTERVAL: &str = "1m";

/// Panels whose queries are not run, and why: exactly these (a panel without a PromQL
/// query must be listed; a listed one must have none).
const NOT_RUN: &[(&str, &str, &str)] = &[(
    "kubeship-workloads",
    "Top log-producing namespaces",
    "a CloudWatch Logs Insights query (`stats … by`) through the CloudWatch data source, \
     not PromQL; moto's Logs Insights has no `stats`",
)];

/// The shipped rules with every alert's `for:` set to [`FOR`] (expressions, labels and
/// annotations as shipped), as JSON (which Prometheus reads as YAML).
fn rules_copy() -> String {
    let mut rules = alerts::rules();
    let mut n = 0;
    for group in rules["groups"].as_array_mut().expect("groups") {
        for rule in group["rules"].as_array_mut().expect("rules") {
            if rule.get("alert").is_some() {
                assert!(rule["for"].is_string(), "no for: {rule}");
                rule["for"] = FOR.into();
                n += 1;
            }
        }
    }
    assert!(n >= 15, "only {n} alerts in the rules");
    serde_json::to_string_pretty(&rules).expect("JSON")
}

/// The shipped `alertmanager.yaml` for a test: Slack's webhook URL read from `slack_url_file`
/// (as the shipped file reads it from a mounted Secret), SNS sent to moto at `sns_endpoint`
/// with static test keys (SigV4 as shipped, region included), notifications within seconds
/// (group_wait 1s, group_interval 2s, repeat_interval 1m). Routes, inhibitions, receivers,
/// templates and `send_resolved` as shipped (checked on).
fn alertmanager_copy(slack_url_file: &std::path::Path, sns_endpoint: &str) -> String {
    let mut c = yaml(
        &read("alerts/alertmanager/alertmanager.yaml"),
        "alertmanager.yaml",
    );
    assert!(
        c["global"]["slack_api_url_file"].is_string(),
        "the shipped config reads Slack's URL from a file: {}",
        c["global"]
    );
    c["global"]["slack_api_url_file"] = slack_url_file.display().to_string().into();
    fn shorten(route: &mut Value) {
        for (key, value) in [
            ("group_wait", "1s"),
            ("group_interval", "2s"),
            ("repeat_interval", "1m"),
        ] {
            if route.get(key).is_some() {
                route[key] = value.into();
            }
        }
        for r in route["routes"].as_array_mut().into_iter().flatten() {
            shorten(r);
        }
    }
    assert!(c["route"]["group_wait"].is_string(), "{}", c["route"]);
    shorten(&mut c["route"]);
    let mut sns = 0;
    for receiver in c["receivers"].as_array_mut().expect("receivers") {
        let name = receiver["name"].as_str().unwrap_or_default().to_string();
        for kind in ["slack_configs", "sns_configs"] {
            for cfg in receiver[kind].as_array_mut().into_iter().flatten() {
                assert_eq!(
                    cfg["send_resolved"], true,
                    "{name}: {kind} without send_resolved: true"
                );
                if kind == "sns_configs" {
                    let sigv4 = &mut cfg["sigv4"];
                    assert!(sigv4["region"].is_string(), "{name}: no sigv4.region");
                    assert!(sigv4.get("role_arn").is_none(), "{name}: a role_arn");
                    sigv4["access_key"] = "testing".into();
                    sigv4["secret_key"] = "testing".into();
                    cfg["api_url"] = sns_endpoint.into();
                    sns += 1;
                }
            }
        }
    }
    assert!(sns >= 1, "no SNS receiver in the shipped config");
    serde_json::to_string_pretty(&c).expect("JSON")
}

/// The `expr` of the shipped alert `name`.
fn alert_expr(name: &str) -> String {
    let rules = alerts::rules();
    crate::bundle::alert_rules(&rules)
        .into_iter()
        .find(|(_, r)| r["alert"] == name)
        .and_then(|(_, r)| r["expr"].as_str().map(String::from))
        .unwrap_or_else(|| panic!("no alert {name}"))
}

/// The SNS topic of the shipped config's critical receiver.
fn critical_topic() -> String {
    let c = yaml(
        &read("alerts/alertmanager/alertmanager.yaml"),
        "alertmanager.yaml",
    );
    let receiver = c["receivers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == "sns-critical")
        .expect("an sns-critical receiver");
    receiver["sns_configs"][0]["topic_arn"]
        .as_str()
        .expect("a topic ARN")
        .to_string()
}

/// cAdvisor's answer at the `n`th scrape (from 0), `t0_ms` the test's start: the web pod's
/// container `app` (CPU, CFS periods 40 % throttled, working set at 93 % of its limit, an OOM
/// kill per scrape) restarted once (the old container's start time last reported 185 s before
/// the test, the new one's 65 s before: a change of the newest start time between two
/// minute-aligned steps of the dashboards' `[1h:1m]` subqueries), and the agent's container
/// `kubeship`.
fn cadvisor_body(n: u64, t0_ms: i64) -> String {
    let t0_s = t0_ms / 1000;
    let web = |id: &str| {
        format!(
            "container=\"app\",id=\"/kubepods/burstable/pod-web/{id}\",image=\"shop/web:1\",\
             name=\"{id}\",namespace=\"shop\",pod=\"{WEB_POD}\""
        )
    };
    let agent = format!(
        "container=\"kubeship\",id=\"/kubepods/burstable/pod-ks/ks1\",image=\"kubeship:dev\",\
         name=\"ks1\",namespace=\"{AGENT_NAMESPACE}\",pod=\"{AGENT_POD}\""
    );
    let (old, new) = (web("app1"), web("app2"));
    let n_f = n as f64;
    format!(
        "# TYPE container_cpu_usage_seconds_total counter\n\
         container_cpu_usage_seconds_total{{{new}}} {}\n\
         container_cpu_usage_seconds_total{{{agent}}} {}\n\
         # TYPE container_cpu_cfs_periods_total counter\n\
         container_cpu_cfs_periods_total{{{new}}} {}\n\
         # TYPE container_cpu_cfs_throttled_periods_total counter\n\
         container_cpu_cfs_throttled_periods_total{{{new}}} {}\n\
         # TYPE container_memory_working_set_bytes gauge\n\
         container_memory_working_set_bytes{{{new}}} 250000000\n\
         container_memory_working_set_bytes{{{agent}}} 40000000\n\
         # TYPE container_spec_memory_limit_bytes gauge\n\
         container_spec_memory_limit_bytes{{{new}}} 268435456\n\
         container_spec_memory_limit_bytes{{{agent}}} 268435456\n\
         # TYPE container_oom_events_total counter\n\
         container_oom_events_total{{{new}}} {n}\n\
         # TYPE container_start_time_seconds gauge\n\
         container_start_time_seconds{{{old}}} {} {}\n\
         container_start_time_seconds{{{new}}} {} {}\n\
         container_start_time_seconds{{{agent}}} {}\n",
        100.0 + 0.25 * n_f,
        3.0 + 0.01 * n_f,
        1000 + 10 * n,
        400 + 4 * n,
        t0_s - 600,
        t0_ms - 185_000,
        t0_s - 70,
        t0_ms - 65_000,
        t0_s - 5,
    )
}

/// Writes a line to a container every `every` on a thread of its own until stopped.
struct LogWriter {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    fn start(mut c: Container, every: Duration) -> LogWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let (s, w) = (Arc::clone(&stop), Arc::clone(&written));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                c.write_lines(1);
                w.store(c.written(), Ordering::SeqCst);
                std::thread::sleep(every);
            }
        });
        LogWriter {
            stop,
            written,
            thread: Some(thread),
        }
    }

    /// Lines written so far (sequence numbers `0..written()`).
    fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The sequence numbers of the `app` container's lines CloudWatch holds (empty while it
/// cannot be read).
fn seqs_in_cloudwatch(logs: &Moto) -> BTreeSet<u64> {
    let Ok(state) = logs.api().snapshot(None) else {
        return BTreeSet::new();
    };
    let (records, _) = state.records();
    records
        .iter()
        .filter_map(|r| parse_seq(&r.record.log))
        .filter(|(c, _)| *c == "app")
        .map(|(_, s)| s)
        .collect()
}

/// A Slack message the stand-in received: (title, text, color, channel).
#[derive(Debug)]
struct SlackPost {
    title: String,
    text: String,
    color: String,
    channel: String,
}

fn slack_posts(slack: &RwServer) -> Vec<SlackPost> {
    slack
        .received()
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
                panic!(
                    "Slack got a body that is not JSON ({e}): {}",
                    String::from_utf8_lossy(&r.body)
                )
            });
            let a = &v["attachments"][0];
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            SlackPost {
                title: s(&a["title"]),
                text: s(&a["text"]),
                color: s(&a["color"]),
                channel: s(&v["channel"]),
            }
        })
        .collect()
}

/// What the alerting side shows, for failure messages.
fn alerting_state(prom: &Prometheus, am: &Alertmanager, agent: &Agent) -> String {
    let ratio =
        r#"sum by (outcome) (rate(kubeship_cloudwatch_requests_total{job="kubeship"}[5m]))"#;
    let am_log = am.log();
    let am_tail: Vec<&str> = am_log
        .lines()
        .filter(|l| !l.contains("level=debug") || l.contains("Notify"))
        .collect();
    format!(
        "Prometheus alerts: {:#?}\nrates by outcome: {:?}\nAlertmanager alerts: {:#?}\n\
         Alertmanager log tail:\n{}\nagent stderr tail:\n{}",
        prom.alerts(),
        prom.query(ratio, now_ms() as f64 / 1000.0),
        am.alerts(),
        am_tail[am_tail.len().saturating_sub(30)..].join("\n"),
        agent.stderr_tail(20)
    )
}

/// `expr` as Grafana sends it: the dashboard's variables replaced by `values`, Grafana's
/// interval variables by durations ([`RATE_INTERVAL`]; `$__interval` 15s, `$__range` 1h).
fn render(expr: &str, values: &BTreeMap<&str, &str>) -> String {
    let builtins: BTreeMap<&str, &str> = [
        ("__rate_interval", RATE_INTERVAL),
        ("__interval", "15s"),
        ("__interval_ms", "15000"),
        ("__range", "1h"),
        ("__range_s", "3600"),
        ("__range_ms", "3600000"),
    ]
    .into();
    let vars = Regex::new(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)").unwrap();
    vars.replace_all(expr, |c: &regex::Captures| {
        let name = c.get(1).or_else(|| c.get(2)).map_or("", |m| m.as_str());
        match builtins.get(name).or_else(|| values.get(name)) {
            Some(v) => v.to_string(),
            None => c[0].to_string(),
        }
    })
    .into_owned()
}

/// An instant query's problem: no series, or no finite value (`None`: data).
fn no_data(prom: &Prometheus, expr: &str, at_s: f64) -> Option<String> {
    let result = prom.query(expr, at_s);
    if result.is_empty() {
        return Some("no series".into());
    }
    let finite = result.iter().any(|r| {
        r["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    });
    (!finite).then(|| format!("no finite value: {result:?}"))
}

/// Every dashboard's variables list the test's values, and every PromQL query of every
/// panel (variables substituted) returns data; the panels without one are [`NOT_RUN`].
fn check_dashboards(prom: &Prometheus) {
    let values: BTreeMap<&str, &str> =
        [("cluster", CLUSTER), ("node", NODE), ("namespace", "shop")].into();
    let label_values = Regex::new(r"^label_values\((.*),\s*(\w+)\)$").unwrap();
    // A variable left (`$1` in a label_replace is a regex group, not a variable).
    let unset = Regex::new(r"\$\{?[A-Za-z_]").unwrap();
    let now_s = now_ms() as f64 / 1000.0;
    let mut problems = Vec::new();
    let mut not_run = BTreeSet::new();
    let mut run = 0;
    let mut first: Option<String> = None;
    for (stem, dash) in dashboards::load() {
        for v in dashboards::variables(&dash) {
            if v["type"] != "query" {
                continue;
            }
            let name = v["name"].as_str().unwrap_or_default();
            let query = v["query"].as_str().unwrap_or_default();
            let Some(c) = label_values.captures(query) else {
                problems.push(format!(
                    "{stem}: variable {name}: not label_values: {query}"
                ));
                continue;
            };
            let selector = render(&c[1], &values);
            let found: BTreeSet<String> = prom
                .series(&selector, now_s - 300.0, now_s)
                .iter()
                .filter_map(|s| s[&c[2]].as_str().map(String::from))
                .collect();
            let want = values.get(name).copied().unwrap_or("?");
            if !found.contains(want) {
                problems.push(format!(
                    "{stem}: variable {name} ({selector}) lists {found:?}, not {want:?}"
                ));
            }
        }
        for panel in dashboards::panels(&dash) {
            if panel["type"] == "row" {
                continue;
            }
            let title = dashboards::title(panel);
            let exprs: Vec<&str> = panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["expr"].as_str())
                .collect();
            if exprs.is_empty() {
                not_run.insert((stem.clone(), title.to_string()));
                continue;
            }
            for expr in exprs {
                let rendered = render(expr, &values);
                assert!(!unset.is_match(&rendered), "{stem}: {title}: {rendered}");
                first.get_or_insert_with(|| expr.to_string());
                run += 1;
                if let Some(why) = no_data(prom, &rendered, now_s) {
                    problems.push(format!("{stem}: panel {title:?}: {why}: {rendered}"));
                }
            }
        }
    }
    assert!(run >= 50, "only {run} panel queries");
    assert!(
        problems.is_empty(),
        "dashboard queries without data ({} of {run}):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
    let listed: BTreeSet<(String, String)> = NOT_RUN
        .iter()
        .map(|(stem, title, _)| (stem.to_string(), title.to_string()))
        .collect();
    assert_eq!(
        not_run, listed,
        "the panels without a PromQL query are not exactly NOT_RUN"
    );
    // The check fails where there is no data: the first query for another node.
    let first = first.expect("a query");
    let other: BTreeMap<&str, &str> = [
        ("cluster", CLUSTER),
        ("node", "node-2"),
        ("namespace", "shop"),
    ]
    .into();
    assert!(
        no_data(prom, &render(&first, &other), now_s).is_some(),
        "{first} has data for node-2"
    );
}

#[test]
fn cloudwatch_delivery_failing_alerts_slack_and_sns_then_resolves_and_every_panel_has_data() {
    let started = Instant::now();
    let t0_ms = now_ms();
    // CloudWatch Logs and SNS in two moto servers: only the first one fails.
    let topic = critical_topic();
    let account = topic.split(':').nth(4).expect("account").to_string();
    let logs_thread = std::thread::spawn(Moto::start);
    let sns = Moto::start_with_env(&[("MOTO_ACCOUNT_ID", &account)]);
    let mut inbox = SnsInbox::create(&sns, &topic);
    let slack = RwServer::start(|_, _| Act::ok());
    let secrets = tempfile::tempdir().expect("tempdir");
    let slack_url_file = secrets.path().join("slack-webhook-url");
    std::fs::write(
        &slack_url_file,
        format!("http://{}/services/T0/B0/test\n", slack.addr()),
    )
    .expect("write the webhook URL file");
    let template = read("alerts/alertmanager/templates/kubeship.tmpl");
    let am = Alertmanager::start(
        &alertmanager_copy(&slack_url_file, &sns.endpoint()),
        &[("templates/kubeship.tmpl", &template)],
    );
    let rules = rules_copy();
    let prom = Prometheus::start_with_config(
        &format!(
            "global:\n  evaluation_interval: 1s\nrule_files: [kubeship-rules.json]\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{}']\n",
            am.addr()
        ),
        &[("kubeship-rules.json", &rules)],
    );
    let mut logs = logs_thread.join().expect("moto for CloudWatch Logs");

    // The node: a pod writing logs and serving metrics, a pod whose scrapes fail, the
    // agent's own pod; cAdvisor.
    let node = Node::new();
    let api = FakeApi::start(NODE);
    api.write_kubeconfig(&node.root().join("kubeconfig"));
    let mut app = node.add_container("shop", WEB_POD, "app", Format::Cri);
    app.set_time_base_ms(Some(t0_ms - 60_000));
    let web = TargetServer::start("127.0.1.80", |_| {
        Answer::Text(
            "# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\"} 7\n".into(),
        )
    });
    let worker = TargetServer::start("127.0.1.81", |_| Answer::Status(500));
    let count = AtomicU64::new(0);
    let cadvisor = TargetServer::start("127.0.0.1", move |_| {
        Answer::Text(cadvisor_body(count.fetch_add(1, Ordering::SeqCst), t0_ms))
    });
    let scraped = |pod: Pod, ip: &str, port: u16, container: &str| {
        pod.node(NODE)
            .ip(ip)
            .annotation("prometheus.io/scrape", "true")
            .annotation("prometheus.io/port", &port.to_string())
            .running_container(container, "shop/app:1")
    };
    api.upsert_pod(&scraped(
        Pod::new("shop", WEB_POD).uid(&app.info().pod_uid),
        "127.0.1.80",
        web.port(),
        "app",
    ));
    api.upsert_pod(&scraped(
        Pod::new("shop", WORKER_POD),
        "127.0.1.81",
        worker.port(),
        "worker",
    ));
    api.upsert_pod(
        &Pod::new(AGENT_NAMESPACE, AGENT_POD)
            .node(NODE)
            .ip("127.0.1.82")
            .running_container("kubeship", "kubeship:dev"),
    );
    let writer = LogWriter::start(app, Duration::from_millis(100));

    let cfg = AgentConfig {
        kubernetes: Some(vec!["kubeconfig: ./kubeconfig".into()]),
        cloudwatch: Some(CloudWatchOpts {
            max_concurrent_requests: Some(2),
            extra: vec!["max_backoff_secs: 1".into()],
            ..CloudWatchOpts::for_endpoint(logs.endpoint())
        }),
        metrics: Some(vec![
            "remote_write:".into(),
            format!(
                "  - {{url: {:?}, name: prometheus, batch_send_deadline_secs: 1}}",
                prom.write_url()
            ),
            "scrape:".into(),
            "  interval_secs: 1".into(),
            "  timeout_secs: 1".into(),
            "  kubelet: {enabled: false}".into(),
            "  static_targets:".into(),
            format!(
                "    - {{url: 'http://{}/metrics/cadvisor', job: kubelet, \
                 labels: {{metrics_path: /metrics/cadvisor}}}}",
                cadvisor.addr()
            ),
        ]),
        ..AgentConfig::default()
    };
    let mut agent = Agent::start_in_pod(&node, &cfg, AGENT_NAMESPACE, AGENT_POD);
    agent.wait_ready(secs(30));

    // Healthy: lines reach CloudWatch, the agent's calls reach Prometheus with the labels
    // the rules group by, and the alert is inactive.
    wait_for(
        || {
            agent.assert_running("while waiting for CloudWatch");
            seqs_in_cloudwatch(&logs).len() >= 5
        },
        secs(30),
        "the first lines in CloudWatch",
    );
    let ok_selector = r#"kubeship_cloudwatch_requests_total{job="kubeship", outcome="ok"}"#;
    let mut ok_series = Vec::new();
    let arrived = wait_until(
        || {
            ok_series = prom.query(&format!("{ok_selector} > 0"), now_ms() as f64 / 1000.0);
            !ok_series.is_empty()
        },
        secs(30),
    );
    assert!(
        arrived,
        "no successful calls in Prometheus; agent stderr:\n{}\nprometheus log:\n{}",
        agent.stderr_tail(20),
        prom.log()
    );
    let labels = ok_series[0]["metric"].clone();
    assert_eq!(
        labels,
        json!({
            "__name__": "kubeship_cloudwatch_requests_total",
            "cluster": CLUSTER,
            "instance": NODE,
            "job": "kubeship",
            "namespace": AGENT_NAMESPACE,
            "node": NODE,
            "outcome": "ok",
            "pod": AGENT_POD,
        })
    );
    // The alert's condition is false while the calls it divides by have a rate.
    let expr = alert_expr(ALERT);
    let calls = r#"sum(rate(kubeship_cloudwatch_requests_total{job="kubeship"}[5m])) > 0"#;
    wait_for(
        || !prom.query(calls, now_ms() as f64 / 1000.0).is_empty(),
        secs(30),
        format!("data for {calls}"),
    );
    let at = now_ms() as f64 / 1000.0;
    assert!(
        prom.query(&expr, at).is_empty(),
        "{expr} holds while healthy"
    );
    assert!(
        prom.alerts()
            .iter()
            .all(|a| a["labels"]["alertname"] != ALERT),
        "{:#?}",
        prom.alerts()
    );

    // The fault: CloudWatch Logs goes away.
    let fault = Instant::now();
    logs.stop();
    let written_at_fault = writer.written();
    let firing = |posts: &[SlackPost]| {
        posts
            .iter()
            .position(|p| p.title.contains(ALERT) && p.title.starts_with("[FIRING"))
    };
    let sns_firing = |n: &[SnsNotification]| {
        n.iter()
            .position(|n| n.subject.contains(ALERT) && n.subject.starts_with("[FIRING"))
    };
    let both = wait_until(
        || {
            agent.assert_running("during the CloudWatch outage");
            firing(&slack_posts(&slack)).is_some() && sns_firing(inbox.poll()).is_some()
        },
        secs(60),
    );
    assert!(
        both,
        "{ALERT} did not reach both Slack ({:?}) and SNS ({:?}) within 60 s of the fault:\n{}",
        slack_posts(&slack),
        inbox.poll(),
        alerting_state(&prom, &am, &agent)
    );
    let fired_after = fault.elapsed();
    assert!(
        agent.metric_or_zero(
            "kubeship_cloudwatch_requests_total",
            &[("outcome", "error")]
        ) > 0.0
    );
    let posts = slack_posts(&slack);
    let post = &posts[firing(&posts).unwrap()];
    assert_eq!(
        post.title,
        format!("[FIRING:1] {ALERT} ({CLUSTER}/{AGENT_NAMESPACE})")
    );
    assert_eq!(
        (post.channel.as_str(), post.color.as_str()),
        ("#kubeship-critical", "danger")
    );
    for want in [
        format!("{AGENT_NAMESPACE}/{AGENT_POD} on node {NODE}"),
        "Runbook: https://github.com/kubeship/kubeship/blob/main/alerts/runbooks.md#kubeshipcloudwatchdeliveryfailing".into(),
    ] {
        assert!(post.text.contains(&want), "Slack text lacks {want:?}: {}", post.text);
    }
    let notifications = inbox.poll().to_vec();
    let n = &notifications[sns_firing(&notifications).unwrap()];
    assert_eq!(
        n.subject,
        format!("[FIRING:1] {ALERT} ({CLUSTER}/{AGENT_NAMESPACE})")
    );
    assert_eq!(
        n.attributes["severity"]["Value"], "critical",
        "{:?}",
        n.attributes
    );
    for want in [
        format!("on node {NODE}"),
        format!("node={NODE} "),
        format!("pod={AGENT_POD} "),
    ] {
        assert!(
            n.message.contains(&want),
            "SNS message lacks {want:?}: {}",
            n.message
        );
    }

    // CloudWatch Logs comes back (empty): every line written since the fault is delivered and
    // the alert resolves in both.
    logs.restart();
    let restored = Instant::now();
    let written_at_restore = writer.written();
    let resolved = |posts: &[SlackPost]| {
        posts
            .iter()
            .position(|p| p.title.contains(ALERT) && p.title.starts_with("[RESOLVED]"))
    };
    let sns_resolved = |n: &[SnsNotification]| {
        n.iter()
            .position(|n| n.subject.contains(ALERT) && n.subject.starts_with("[RESOLVED]"))
    };
    let both = wait_until(
        || {
            agent.assert_running("after CloudWatch came back");
            resolved(&slack_posts(&slack)).is_some() && sns_resolved(inbox.poll()).is_some()
        },
        secs(60),
    );
    assert!(
        both,
        "{ALERT} did not resolve in both Slack ({:?}) and SNS ({:?}) within 60 s:\n{}",
        slack_posts(&slack),
        inbox.poll(),
        alerting_state(&prom, &am, &agent)
    );
    let resolved_after = restored.elapsed();
    let posts = slack_posts(&slack);
    let post = &posts[resolved(&posts).unwrap()];
    assert_eq!(
        post.title,
        format!("[RESOLVED] {ALERT} ({CLUSTER}/{AGENT_NAMESPACE})")
    );
    assert_eq!(post.color, "good");
    for want in ["_resolved_ ".to_string(), format!("on node {NODE}")] {
        assert!(
            post.text.contains(&want),
            "resolved Slack text lacks {want:?}: {}",
            post.text
        );
    }
    let notifications = inbox.poll().to_vec();
    let n = &notifications[sns_resolved(&notifications).unwrap()];
    for want in ["RESOLVED since ".to_string(), format!("on node {NODE}")] {
        assert!(
            n.message.contains(&want),
            "resolved SNS message lacks {want:?}: {}",
            n.message
        );
    }
    let want: BTreeSet<u64> = (written_at_fault..written_at_restore).collect();
    let mut missing = want.clone();
    let delivered = wait_until(
        || {
            missing = want
                .difference(&seqs_in_cloudwatch(&logs))
                .copied()
                .collect();
            missing.is_empty()
        },
        secs(30),
    );
    assert!(
        delivered,
        "lines written during the outage never reached CloudWatch: {missing:?}"
    );
    // Warnings (a failing scrape target, the workload's OOM kills…) go to Slack only: every
    // page is the delivery alert.
    let pages = inbox.poll().to_vec();
    assert!(
        pages.iter().all(|n| n.subject.contains(ALERT)),
        "{:#?}",
        pages.iter().map(|n| &n.subject).collect::<Vec<_>>()
    );

    // Every forwarded series has the `cluster` and `node` labels the rules and dashboards
    // select on (ALERTS* are Prometheus's own, from the rules).
    let now_s = now_ms() as f64 / 1000.0;
    let forwarded = r#"{__name__=~".+", __name__!~"ALERTS.*"}"#;
    let total = prom.query(&format!("count({forwarded})"), now_s);
    let total: f64 = total[0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(total >= 100.0, "only {total} series in Prometheus");
    for label in ["cluster", "node"] {
        let without = format!(
            r#"count by (__name__, job) ({{__name__=~".+", __name__!~"ALERTS.*", {label}=""}})"#
        );
        let found = prom.query(&without, now_s);
        assert!(found.is_empty(), "series without {label}: {found:?}");
    }
    check_dashboards(&prom);
    drop(writer);
    agent.stop(secs(30));
    api.assert_no_unexpected();
    eprintln!(
        "fired {fired_after:?} after the fault, resolved {resolved_after:?} after the restore; \
         {} s in all",
        started.elapsed().as_secs_f64()
    );
}
