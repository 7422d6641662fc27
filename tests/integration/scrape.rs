//! The metrics pipeline's scraping half, end to end through the real agent: pods discovered
//! from the fake API server ([`FakeApi`]) and scraped on loopback ([`TargetServer`] on
//! 127.0.1.x, the pods' IPs) every second, the samples read back from the local sink
//! ([`Node::scraped`]): their labels, the per-target report series, staleness markers when
//! a series, a pod or an annotation goes; the kubelet's HTTPS endpoints (bearer token, a
//! test CA); the agent's own metrics; and real Prometheus as the remote-write receiver.
//! Hostile targets are in `scrape_faults.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kubeship_tests::*;
use serde_json::json;

const NODE: &str = "node-1";
/// The cluster of the agents' config (`AgentConfig::cluster`), every sample's `cluster` label.
const CLUSTER: &str = "test";
const SCRAPE: &str = "prometheus.io/scrape";
const PORT: &str = "prometheus.io/port";
const PATH: &str = "prometheus.io/path";
const SAMPLE_LIMIT: &str = "kubeship.io/sample-limit";
/// The per-target series every scrape writes besides the target's own.
const REPORT: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// A node and a fake API server serving its pods, its kubeconfig in the node root.
fn setup() -> (Node, FakeApi) {
    let node = Node::new();
    let api = FakeApi::start(NODE);
    api.write_kubeconfig(&node.root().join("kubeconfig"));
    (node, api)
}

/// `metrics:` lines scraping every second (1 s timeout), without the agent's own metrics
/// and, unless `scrape` has a `kubelet:` line, without the kubelet; `scrape`: more lines
/// under `scrape:`; `before` lines come first (e.g. `remote_write:`).
fn metrics_lines(before: &[String], scrape: &[String]) -> Vec<String> {
    let mut lines = before.to_vec();
    lines.extend(
        [
            "scrape:",
            "  interval_secs: 1",
            "  timeout_secs: 1",
            "  self_metrics: false",
        ]
        .map(String::from),
    );
    if !scrape.iter().any(|l| l.starts_with("kubelet:")) {
        lines.push("  kubelet: {enabled: false}".into());
    }
    lines.extend(scrape.iter().map(|l| format!("  {l}")));
    lines
}

/// Lines as owned strings.
fn owned(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|l| l.to_string()).collect()
}

/// The config with pod metadata from the fake API server and these `metrics:` lines.
fn kube_config(metrics: Vec<String>) -> AgentConfig {
    AgentConfig {
        kubernetes: Some(vec!["kubeconfig: ./kubeconfig".into()]),
        metrics: Some(metrics),
        ..AgentConfig::default()
    }
}

/// Starts the agent and waits until it is ready and watches its pods.
fn start(node: &Node, cfg: &AgentConfig, api: &FakeApi) -> Agent {
    let before = api.requests().pods_watch;
    let mut agent = Agent::start(node, cfg);
    api.wait_for_requests(|r| r.pods_watch > before, secs(30), "the agent's pod watch");
    agent.wait_ready(secs(30));
    agent
}

/// A pod of namespace `shop` running on this node at `ip` with one container `app`.
fn pod(name: &str, ip: &str) -> Pod {
    Pod::new("shop", name)
        .node(NODE)
        .ip(ip)
        .running_container("app", "shop/app:1")
}

/// `pod` annotated to be scraped on `port`, which its container declares.
fn scraped_pod(name: &str, ip: &str, port: u16) -> Pod {
    pod(name, ip)
        .annotation(SCRAPE, "true")
        .annotation(PORT, &port.to_string())
        .field(
            "/spec/containers/0/ports",
            json!([{"name": "http", "containerPort": port}]),
        )
}

/// Labels as a map, for exact comparisons.
fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `base` with `more` added (or replaced).
fn with(base: &BTreeMap<String, String>, more: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut l = base.clone();
    l.extend(labels(more));
    l
}

/// The one sample of `name{labels}` at `t`.
#[track_caller]
fn at<'a>(samples: &'a [Scraped], name: &str, l: &[(&str, &str)], t: i64) -> &'a Scraped {
    let found: Vec<&Scraped> = select(samples, name, l)
        .into_iter()
        .filter(|s| s.t == t)
        .collect();
    assert_eq!(found.len(), 1, "{name}{l:?} at {t}: {found:?}");
    found[0]
}

/// `timeout_scale()` applied to `ms` milliseconds.
fn scaled_ms(ms: i64) -> i64 {
    (ms as f64 * timeout_scale()) as i64
}

const WEB_BODY: &str = "# HELP http_requests_total Requests served.\n\
# TYPE http_requests_total counter\n\
http_requests_total{code=\"200\",job=\"web\",instance=\"in-pod\"} 1027\n\
# TYPE go_goroutines gauge\n\
go_goroutines 12\n\
# TYPE queue_depth gauge\n\
queue_depth 3.5\n";

#[test]
fn annotated_running_pods_of_the_node_are_scraped_with_their_labels_and_report_series() {
    let (node, api) = setup();
    let web = TargetServer::start("127.0.1.10", |r| match r.path.as_str() {
        "/custom/metrics" => Answer::Text(WEB_BODY.into()),
        _ => Answer::Status(404),
    });
    let exporter = TargetServer::start("127.0.1.11", |r| match r.path.as_str() {
        "/metrics" => Answer::Text("# TYPE api_ready gauge\napi_ready 1\n".into()),
        _ => Answer::Status(404),
    });
    let limited = TargetServer::start("127.0.1.12", |_| {
        Answer::Text("limited_a 1\nlimited_b 2\nlimited_c 3\n".into())
    });
    let untouched = |ip: &str| TargetServer::start(ip, |_| Answer::Text("never 1\n".into()));
    let (plain, elsewhere, late) = (
        untouched("127.0.1.13"),
        untouched("127.0.1.14"),
        TargetServer::start("127.0.1.15", |_| Answer::Text("late_metric 5\n".into())),
    );

    // web-1: port and path annotations; the port is declared by its second container.
    let web_pod = Pod::new("shop", "web-1")
        .node(NODE)
        .ip("127.0.1.10")
        .label("app.kubernetes.io/name", "web")
        .label("tier", "frontend")
        .annotation(SCRAPE, "true")
        .annotation(PORT, &web.port().to_string())
        .annotation(PATH, "/custom/metrics")
        .running_container("proxy", "envoy:1")
        .running_container("app", "shop/web:1")
        .field(
            "/spec/containers/0/ports",
            json!([{"name": "http", "containerPort": 8080}]),
        )
        .field(
            "/spec/containers/1/ports",
            json!([{"name": "web", "containerPort": web.port()}]),
        );
    // api-1: no port annotation: the port its `exporter` container names `http-metrics`.
    let api_pod = Pod::new("shop", "api-1")
        .node(NODE)
        .ip("127.0.1.11")
        .annotation(SCRAPE, "true")
        .running_container("main", "shop/api:1")
        .running_container("exporter", "exporter:1")
        .field(
            "/spec/containers/0/ports",
            json!([{"name": "http", "containerPort": 8080}]),
        )
        .field(
            "/spec/containers/1/ports",
            json!([{"name": "http-metrics", "containerPort": exporter.port()}]),
        );
    api.upsert_pod(&web_pod);
    api.upsert_pod(&api_pod);
    api.upsert_pod(
        &scraped_pod("limited-1", "127.0.1.12", limited.port()).annotation(SAMPLE_LIMIT, "2"),
    );
    // Not scraped: not annotated; on another node; not Running (yet).
    api.upsert_pod(&pod("plain-1", "127.0.1.13").annotation(PORT, &plain.port().to_string()));
    api.upsert_pod(&scraped_pod("elsewhere-1", "127.0.1.14", elsewhere.port()).node("node-2"));
    let late_pod = scraped_pod("late-1", "127.0.1.15", late.port());
    api.upsert_pod(&late_pod.clone().phase("Pending"));

    let cfg = kube_config(metrics_lines(
        &[],
        &owned(&[
            "pods: {labels: [app.kubernetes.io/name, team]}",
            "metric_relabel_configs:",
            "  - {source_labels: [__name__], regex: 'go_.*', action: drop}",
        ]),
    ));
    let mut agent = start(&node, &cfg, &api);
    let web_sel = [("pod", "web-1")];
    let got = wait_scraped(
        &node,
        &mut agent,
        secs(30),
        "three scrapes of web-1, one of api-1 and limited-1",
        |s| {
            select(s, "up", &web_sel).len() >= 3
                && !select(s, "up", &[("pod", "api-1")]).is_empty()
                && !select(s, "up", &[("pod", "limited-1")]).is_empty()
        },
    );

    // web-1's target labels: job, instance, namespace, pod, the container declaring the
    // port, node, the configured pod label it has (`team` it has not; `tier` is not
    // configured).
    let web_instance = format!("127.0.1.10:{}", web.port());
    let web_target = labels(&[
        ("job", "kubernetes-pods"),
        ("instance", &web_instance),
        ("namespace", "shop"),
        ("pod", "web-1"),
        ("container", "app"),
        ("node", NODE),
        ("cluster", CLUSTER),
        ("app_kubernetes_io_name", "web"),
    ]);
    let ups = select(&got, "up", &web_sel);
    let first = ups[0].t;
    for name in REPORT {
        let s = at(&got, name, &web_sel, first);
        assert_eq!(s.labels, with(&web_target, &[("__name__", name)]), "{name}");
    }
    assert!(ups.iter().all(|s| s.value() == Some(1.0)), "{ups:?}");
    let report = |name: &str, t: i64| at(&got, name, &web_sel, t).value().expect(name);
    let duration = report("scrape_duration_seconds", first);
    assert!(duration > 0.0 && duration < 1.0, "{duration}");
    assert_eq!(report("scrape_samples_scraped", first), 3.0);
    assert_eq!(
        report("scrape_samples_post_metric_relabeling", first),
        2.0,
        "go_goroutines dropped by metric relabeling"
    );
    assert_eq!(report("scrape_series_added", first), 2.0);
    assert_eq!(
        report("scrape_series_added", ups[2].t),
        0.0,
        "no new series in the third scrape"
    );
    // Scraped labels that clash with target labels are kept as exported_*
    // (honor_labels: false); every sample of a scrape has the scrape's start as its time.
    let requests = at(&got, "http_requests_total", &web_sel, first);
    assert_eq!(
        requests.labels,
        with(
            &web_target,
            &[
                ("__name__", "http_requests_total"),
                ("code", "200"),
                ("exported_job", "web"),
                ("exported_instance", "in-pod"),
            ]
        )
    );
    assert_eq!(requests.value(), Some(1027.0));
    assert_eq!(at(&got, "queue_depth", &web_sel, first).value(), Some(3.5));
    assert!(select(&got, "go_goroutines", &[]).is_empty(), "dropped");
    // The spacing of the scrapes: the interval.
    for w in ups.windows(2) {
        let gap = w[1].t - w[0].t;
        assert!(
            (gap - 1000).abs() <= scaled_ms(200),
            "scrapes {gap} ms apart: {ups:?}"
        );
    }
    let head = &web.heads()[0];
    assert_eq!(head.path, "/custom/metrics");
    assert!(
        head.header("accept")
            .is_some_and(|a| a.starts_with("text/plain;version=0.0.4")),
        "{head:?}"
    );
    assert_eq!(
        head.header("x-prometheus-scrape-timeout-seconds"),
        Some("1")
    );
    assert_eq!(head.header("authorization"), None);

    // api-1: the port named *metrics, default path, its container.
    let api_up = select(&got, "up", &[("pod", "api-1")])[0];
    assert_eq!(api_up.value(), Some(1.0));
    let ready = at(&got, "api_ready", &[("pod", "api-1")], api_up.t);
    let exporter_instance = format!("127.0.1.11:{}", exporter.port());
    assert_eq!(
        ready.labels,
        labels(&[
            ("__name__", "api_ready"),
            ("job", "kubernetes-pods"),
            ("instance", &exporter_instance),
            ("namespace", "shop"),
            ("pod", "api-1"),
            ("container", "exporter"),
            ("node", NODE),
            ("cluster", CLUSTER),
            ("cluster", CLUSTER),
        ])
    );
    assert_eq!(exporter.heads()[0].path, "/metrics");

    // limited-1: three samples over its sample limit of two: the scrape fails.
    let limited_sel = [("pod", "limited-1")];
    let limited_up = select(&got, "up", &limited_sel)[0];
    assert_eq!(limited_up.value(), Some(0.0));
    assert_eq!(
        at(&got, "scrape_samples_scraped", &limited_sel, limited_up.t).value(),
        Some(3.0)
    );
    for name in ["limited_a", "limited_b", "limited_c"] {
        assert!(select(&got, name, &[]).is_empty(), "{name} handed on");
    }
    assert!(agent.metric_or_zero("kubeship_scrapes_total", &[("outcome", "sample_limit")]) >= 1.0);

    // Two seconds after every pod was known: the others were never asked.
    assert_eq!(plain.requests(), 0, "a pod without the annotation");
    assert_eq!(elsewhere.requests(), 0, "a pod of another node");
    assert_eq!(late.requests(), 0, "a Pending pod");
    assert!(
        got.iter().all(|s| s.label("job") != Some("kubeship")),
        "self_metrics: false"
    );

    // late-1 starts running: scraped within about a second (its offset in the interval).
    let running = now_ms();
    api.upsert_pod(&late_pod);
    let got = wait_scraped(&node, &mut agent, secs(30), "late-1 scraped", |s| {
        !select(s, "late_metric", &[("pod", "late-1")]).is_empty()
    });
    let late_first = select(&got, "late_metric", &[("pod", "late-1")])[0];
    assert_eq!(late_first.value(), Some(5.0));
    let after = late_first.t - running;
    assert!(
        (0..=scaled_ms(1500)).contains(&after),
        "first scrape {after} ms after the pod was Running"
    );
    // The agent's targets: web-1, api-1, late-1 up; limited-1 down; nothing else.
    let mut targets = (0.0, 0.0);
    let counted = wait_until(
        || {
            let text = agent.metrics().unwrap_or_default();
            targets = (
                metric_value(&text, "kubeship_scrape_targets", &[("state", "up")]).unwrap_or(-1.0),
                metric_value(&text, "kubeship_scrape_targets", &[("state", "down")])
                    .unwrap_or(-1.0),
            );
            targets == (3.0, 1.0)
        },
        secs(10),
    );
    assert!(counted, "kubeship_scrape_targets (up, down) = {targets:?}");
    agent.stop(secs(30));
    api.assert_no_unexpected();
}

#[test]
fn a_series_a_pod_or_an_annotation_that_goes_gets_exactly_one_staleness_marker() {
    let (node, api) = setup();
    let shrink = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&shrink);
    let web = TargetServer::start("127.0.1.20", move |_| {
        Answer::Text(if s.load(Ordering::SeqCst) {
            "kept 1\n".into()
        } else {
            "kept 1\ngoes_away 2\n".into()
        })
    });
    let fail = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&fail);
    let failing = TargetServer::start("127.0.1.23", move |_| {
        if f.load(Ordering::SeqCst) {
            Answer::Status(500)
        } else {
            Answer::Text("failing_metric 1\n".into())
        }
    });
    let gone = TargetServer::start("127.0.1.21", |_| Answer::Text("gone_metric 1\n".into()));
    let quiet = TargetServer::start("127.0.1.22", |_| Answer::Text("quiet_metric 1\n".into()));
    api.upsert_pod(&scraped_pod("web-1", "127.0.1.20", web.port()));
    api.upsert_pod(&scraped_pod("gone-1", "127.0.1.21", gone.port()));
    api.upsert_pod(&scraped_pod("failing-1", "127.0.1.23", failing.port()));
    let quiet_pod = pod("quiet-1", "127.0.1.22").annotation(PORT, &quiet.port().to_string());
    api.upsert_pod(&quiet_pod.clone().annotation(SCRAPE, "true"));
    let mut agent = start(&node, &kube_config(metrics_lines(&[], &[])), &api);
    wait_scraped(&node, &mut agent, secs(30), "every pod scraped", |s| {
        !select(s, "goes_away", &[]).is_empty()
            && !select(s, "gone_metric", &[]).is_empty()
            && !select(s, "quiet_metric", &[]).is_empty()
            && !select(s, "failing_metric", &[]).is_empty()
    });

    // A series the target stops exposing: one marker, in the scrape that missed it. A
    // target whose scrapes start failing: one marker for each of its series.
    let shrunk = now_ms();
    shrink.store(true, Ordering::SeqCst);
    fail.store(true, Ordering::SeqCst);
    let got = wait_scraped(&node, &mut agent, secs(30), "goes_away marked stale", |s| {
        select(s, "goes_away", &[]).iter().any(|x| x.is_stale())
            && select(s, "failing_metric", &[])
                .iter()
                .any(|x| x.is_stale())
    });
    let marker = select(&got, "goes_away", &[])
        .into_iter()
        .find(|x| x.is_stale())
        .expect("marker");
    assert!(marker.t >= shrunk, "{marker:?} before {shrunk}");
    assert_eq!(
        at(&got, "kept", &[], marker.t).value(),
        Some(1.0),
        "marked at the scrape without it"
    );
    let failed = select(&got, "failing_metric", &[])
        .into_iter()
        .find(|x| x.is_stale())
        .expect("marker");
    assert_eq!(
        at(&got, "up", &[("pod", "failing-1")], failed.t).value(),
        Some(0.0),
        "marked at the first failed scrape"
    );

    // A deleted pod and a pod that lost its annotation: each of their series once.
    let removed = now_ms();
    api.delete_pod("shop", "gone-1");
    api.upsert_pod(&quiet_pod);
    let pods = [("gone-1", "gone_metric"), ("quiet-1", "quiet_metric")];
    let got = wait_scraped(&node, &mut agent, secs(30), "the pods' markers", |s| {
        pods.iter().all(|(p, metric)| {
            [*metric, "up"]
                .iter()
                .all(|name| select(s, name, &[("pod", p)]).iter().any(|x| x.is_stale()))
        })
    });
    let last_marker = got
        .iter()
        .filter(|s| s.is_stale())
        .map(|s| s.t)
        .max()
        .expect("markers");
    let asked = (gone.requests(), quiet.requests());
    // Three more scrapes of web-1: time for any further marker or scrape to show.
    let got = wait_scraped(&node, &mut agent, secs(30), "three more scrapes", |s| {
        select(s, "kept", &[])
            .iter()
            .filter(|x| x.t > last_marker)
            .count()
            >= 3
    });
    assert_eq!(
        (gone.requests(), quiet.requests()),
        asked,
        "scraped after they went"
    );
    for name in ["goes_away", "failing_metric"] {
        let series = select(&got, name, &[]);
        assert_eq!(series.iter().filter(|x| x.is_stale()).count(), 1, "{name}");
        assert!(series.last().is_some_and(|x| x.is_stale()), "{series:?}");
    }
    // The failing target stays: up 0 at every scrape, never marked stale.
    let failing_ups = select(&got, "up", &[("pod", "failing-1")]);
    let after: Vec<&&Scraped> = failing_ups.iter().filter(|x| x.t >= failed.t).collect();
    assert!(after.len() >= 3, "{failing_ups:?}");
    assert!(
        after.iter().all(|x| x.value() == Some(0.0)),
        "{failing_ups:?}"
    );
    assert!(
        select(&got, "kept", &[])
            .iter()
            .all(|x| x.value() == Some(1.0))
    );
    assert!(
        select(&got, "up", &[("pod", "web-1")])
            .iter()
            .all(|x| x.value() == Some(1.0))
    );
    for (p, metric) in pods {
        for name in std::iter::once(metric).chain(REPORT) {
            let series = select(&got, name, &[("pod", p)]);
            let markers: Vec<&&Scraped> = series.iter().filter(|x| x.is_stale()).collect();
            assert_eq!(markers.len(), 1, "{p} {name}: {series:?}");
            assert!(markers[0].t >= removed, "{p} {name}: marked before it went");
            assert!(
                series.last().is_some_and(|x| x.is_stale()),
                "{p} {name}: samples after its marker: {series:?}"
            );
        }
    }
    agent.stop(secs(30));
    api.assert_no_unexpected();
}

/// The kubelet stand-in's token.
const KUBELET_TOKEN: &str = "kubelet-token-7f3a";

/// cAdvisor's answer; the working set carries an exposition timestamp (`stamp`), as
/// cAdvisor's samples do.
fn cadvisor_body(stamp: i64) -> String {
    format!(
        "# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.\n\
         # TYPE container_cpu_usage_seconds_total counter\n\
         container_cpu_usage_seconds_total{{container=\"app\",cpu=\"total\",id=\"/kubepods/pod-1/c1\",\
         image=\"shop/web:1\",name=\"c1\",namespace=\"shop\",pod=\"web-1\"}} 12.5\n\
         # TYPE container_memory_working_set_bytes gauge\n\
         container_memory_working_set_bytes{{container=\"app\",namespace=\"shop\",pod=\"web-1\"}} \
         1.048576e+07 {stamp}\n"
    )
}

const RESOURCE_BODY: &str = "# TYPE node_cpu_usage_seconds_total counter\n\
node_cpu_usage_seconds_total 345.6\n";

/// A kubelet on 127.0.1.30 (HTTPS with `certs`): 401 to a request without
/// `Authorization: Bearer KUBELET_TOKEN`, else its two metrics paths.
fn kubelet(certs: &TestCerts, stamp: i64) -> TargetServer {
    TargetServer::start_tls("127.0.1.30", &certs.cert, &certs.key, move |r| {
        if r.header("authorization") != Some(&*format!("Bearer {KUBELET_TOKEN}")) {
            return Answer::Status(401);
        }
        match r.path.as_str() {
            "/metrics/cadvisor" => Answer::Text(cadvisor_body(stamp)),
            "/metrics/resource" => Answer::Text(RESOURCE_BODY.into()),
            _ => Answer::Status(404),
        }
    })
}

/// An agent (no pod metadata) scraping `server` as its kubelet with these TLS settings
/// (YAML flow entries), and `more` lines under `scrape:`.
fn start_with_kubelet(node: &Node, server: &TargetServer, tls: &str, more: &[String]) -> Agent {
    std::fs::write(
        node.root().join("kubelet-token"),
        format!("{KUBELET_TOKEN}\n"),
    )
    .unwrap();
    let mut scrape = vec![format!(
        "kubelet: {{address: 127.0.1.30, port: {}, token_file: ./kubelet-token, {tls}}}",
        server.port()
    )];
    scrape.extend_from_slice(more);
    let cfg = AgentConfig {
        metrics: Some(metrics_lines(&[], &scrape)),
        ..AgentConfig::default()
    };
    let mut agent = Agent::start(node, &cfg);
    agent.wait_ready(secs(30));
    agent
}

#[test]
fn the_kubelets_endpoints_are_scraped_over_https_with_the_token_and_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (trusted, unknown) = (dir.path().join("trusted"), dir.path().join("unknown"));
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::create_dir_all(&unknown).unwrap();
    let certs = make_certificates(&trusted, "127.0.1.30");
    let other_ca = make_certificates(&unknown, "127.0.1.30").ca;
    let path = |p: &std::path::Path| format!("{:?}", p.display().to_string());
    let stamp = now_ms() - 5_000;
    // Three agents at once, each with a kubelet of its own: the cluster's CA; no
    // verification (and a CA that would refuse it); a CA that does not know it.
    let (verified, skipped, refused) = (
        kubelet(&certs, stamp),
        kubelet(&certs, stamp),
        kubelet(&certs, stamp),
    );
    let nodes = [Node::new(), Node::new(), Node::new()];
    let no_token = format!(
        "  - {{url: 'https://127.0.1.30:{}/metrics/cadvisor', job: no-token, ca_file: {}}}",
        verified.port(),
        path(&certs.ca)
    );
    let mut a = start_with_kubelet(
        &nodes[0],
        &verified,
        &format!("ca_file: {}", path(&certs.ca)),
        &["static_targets:".into(), no_token],
    );
    let mut b = start_with_kubelet(
        &nodes[1],
        &skipped,
        &format!("ca_file: {}, insecure_skip_verify: true", path(&other_ca)),
        &[],
    );
    let mut c = start_with_kubelet(
        &nodes[2],
        &refused,
        &format!("ca_file: {}", path(&other_ca)),
        &[],
    );
    let cadvisor = [("job", "kubelet"), ("metrics_path", "/metrics/cadvisor")];
    let resource = [("job", "kubelet"), ("metrics_path", "/metrics/resource")];
    let both_scraped = |s: &[Scraped]| {
        !select(s, "up", &cadvisor).is_empty() && !select(s, "up", &resource).is_empty()
    };

    let got = wait_scraped(
        &nodes[0],
        &mut a,
        secs(30),
        "the kubelet with its CA",
        |s| both_scraped(s) && !select(s, "up", &[("job", "no-token")]).is_empty(),
    );
    let instance = format!("127.0.1.30:{}", verified.port());
    let target = |path: &str| {
        labels(&[
            ("job", "kubelet"),
            ("instance", &instance),
            ("node", NODE),
            ("cluster", CLUSTER),
            ("cluster", CLUSTER),
            ("metrics_path", path),
        ])
    };
    for sel in [&cadvisor, &resource] {
        let ups = select(&got, "up", sel);
        assert!(ups.iter().all(|u| u.value() == Some(1.0)), "{ups:?}");
    }
    let cpu = select(&got, "container_cpu_usage_seconds_total", &[]);
    assert_eq!(
        cpu[0].labels,
        with(
            &target("/metrics/cadvisor"),
            &[
                ("__name__", "container_cpu_usage_seconds_total"),
                ("container", "app"),
                ("cpu", "total"),
                ("id", "/kubepods/pod-1/c1"),
                ("image", "shop/web:1"),
                ("name", "c1"),
                ("namespace", "shop"),
                ("pod", "web-1"),
            ]
        )
    );
    assert_eq!(cpu[0].value(), Some(12.5));
    let memory = select(&got, "container_memory_working_set_bytes", &[])[0];
    assert_eq!(
        (memory.t, memory.value()),
        (stamp, Some(10_485_760.0)),
        "the exposition's timestamp kept"
    );
    let node_cpu = select(&got, "node_cpu_usage_seconds_total", &[])[0];
    assert_eq!(
        node_cpu.labels,
        with(
            &target("/metrics/resource"),
            &[("__name__", "node_cpu_usage_seconds_total")]
        )
    );
    // The kubelet stand-in refuses a request without the token: the static target without
    // one is down, and every request that had one had the right one.
    let no_token_ups = select(&got, "up", &[("job", "no-token")]);
    assert!(
        no_token_ups.iter().all(|u| u.value() == Some(0.0)),
        "{no_token_ups:?}"
    );
    let heads = verified.heads();
    let authorized = heads
        .iter()
        .filter(|h| h.header("authorization").is_some())
        .collect::<Vec<_>>();
    assert!(authorized.len() >= 2, "{heads:?}");
    assert!(
        authorized
            .iter()
            .all(|h| h.header("authorization") == Some(&*format!("Bearer {KUBELET_TOKEN}"))),
        "{heads:?}"
    );
    assert!(
        authorized.len() < heads.len(),
        "no request without a token: {heads:?}"
    );

    let got = wait_scraped(
        &nodes[1],
        &mut b,
        secs(30),
        "the kubelet unverified",
        both_scraped,
    );
    for sel in [&cadvisor, &resource] {
        let ups = select(&got, "up", sel);
        assert!(ups.iter().all(|u| u.value() == Some(1.0)), "{ups:?}");
    }
    assert!(!select(&got, "container_cpu_usage_seconds_total", &[]).is_empty());

    let got = wait_scraped(
        &nodes[2],
        &mut c,
        secs(30),
        "the kubelet refused",
        both_scraped,
    );
    for sel in [&cadvisor, &resource] {
        let ups = select(&got, "up", sel);
        assert!(ups.iter().all(|u| u.value() == Some(0.0)), "{ups:?}");
    }
    assert!(select(&got, "container_cpu_usage_seconds_total", &[]).is_empty());
    assert_eq!(
        refused.requests(),
        0,
        "no request over an unverified connection"
    );
    assert!(c.metric_or_zero("kubeship_scrapes_total", &[("outcome", "error")]) >= 2.0);
    assert!(
        c.stderr().contains("UnknownIssuer"),
        "{}",
        c.stderr_tail(20)
    );
    for agent in [&mut a, &mut b, &mut c] {
        agent.stop(secs(30));
    }
}

#[test]
fn the_agents_own_metrics_are_forwarded_as_job_kubeship() {
    let (node, api) = setup();
    // self_metrics is on by default.
    let cfg = AgentConfig {
        kubernetes: Some(vec!["kubeconfig: ./kubeconfig".into()]),
        metrics: Some(owned(&[
            "scrape:",
            "  interval_secs: 1",
            "  timeout_secs: 1",
            "  kubelet: {enabled: false}",
        ])),
        ..AgentConfig::default()
    };
    let watches = api.requests().pods_watch;
    let mut agent = Agent::start_in_pod(&node, &cfg, "kube-system", "kubeship-x1");
    api.wait_for_requests(|r| r.pods_watch > watches, secs(30), "the pod watch");
    agent.wait_ready(secs(30));
    // Its own pod, annotated to be scraped on its telemetry port: forwarded from its
    // registry, not scraped over HTTP besides.
    api.upsert_pod(
        &Pod::new("kube-system", "kubeship-x1")
            .node(NODE)
            .ip("127.0.0.1")
            .annotation(SCRAPE, "true")
            .annotation(PORT, &agent.port().to_string())
            .running_container("kubeship", "kubeship:dev"),
    );
    let cached = wait_until(
        || agent.metric("kubeship_kube_pods_cached") == Some(1.0),
        secs(30),
    );
    assert!(cached, "the agent's pod never reached its cache");
    let known = now_ms();
    let own = [("job", "kubeship")];
    let got = wait_scraped(
        &node,
        &mut agent,
        secs(30),
        "three scrapes of itself since its pod is known",
        |s| select(s, "up", &own).iter().filter(|u| u.t > known).count() >= 3,
    );
    let target = labels(&[
        ("job", "kubeship"),
        ("instance", NODE),
        ("node", NODE),
        ("cluster", CLUSTER),
        ("namespace", "kube-system"),
        ("pod", "kubeship-x1"),
    ]);
    let ups = select(&got, "up", &own);
    assert!(ups.iter().all(|u| u.value() == Some(1.0)), "{ups:?}");
    assert_eq!(ups[0].labels, with(&target, &[("__name__", "up")]));
    let text = agent.metrics().expect("/metrics");
    let version = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("kubeship_build_info{version=\"")?
                .split('"')
                .next()
        })
        .unwrap_or_else(|| panic!("no kubeship_build_info in\n{text}"));
    let info = select(&got, "kubeship_build_info", &own);
    assert_eq!(
        info[0].labels,
        with(
            &target,
            &[("__name__", "kubeship_build_info"), ("version", version)]
        )
    );
    assert_eq!(info[0].value(), Some(1.0));
    // Live values: its own target is the only one, so each scrape of it counts one more
    // successful scrape than the one before.
    let ok: Vec<f64> = select(
        &got,
        "kubeship_scrapes_total",
        &[("job", "kubeship"), ("outcome", "ok")],
    )
    .iter()
    .filter_map(|s| s.value())
    .collect();
    assert!(ok.len() >= 3, "{ok:?}");
    assert!(ok.windows(2).all(|w| w[1] == w[0] + 1.0), "{ok:?}");
    assert!(
        got.iter().all(|s| s.label("job") == Some("kubeship")),
        "only the agent itself is scraped, from its registry"
    );
    agent.stop(secs(30));
    api.assert_no_unexpected();
}

const SHOP_BODY: &str = "# HELP orders_total Orders placed.\n\
# TYPE orders_total counter\n\
orders_total{method=\"card\"} 1027\n\
# HELP request_seconds Request latency.\n\
# TYPE request_seconds histogram\n\
request_seconds_bucket{le=\"0.1\"} 5\n\
request_seconds_bucket{le=\"1\"} 9\n\
request_seconds_bucket{le=\"+Inf\"} 10\n\
request_seconds_sum 4.25\n\
request_seconds_count 10\n\
# HELP rpc_seconds RPC latency.\n\
# TYPE rpc_seconds summary\n\
rpc_seconds{quantile=\"0.5\"} 0.012\n\
rpc_seconds{quantile=\"0.99\"} 0.25\n\
rpc_seconds_sum 7.5\n\
rpc_seconds_count 300\n";

/// An instant query's result as `labels` (sorted `name=value`, joined by `,`) → value.
fn instant(prom: &Prometheus, expr: &str) -> BTreeMap<String, String> {
    prom.query(expr, now_ms() as f64 / 1000.0)
        .iter()
        .map(|r| {
            let mut pairs: Vec<String> = r["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            pairs.sort();
            (
                pairs.join(","),
                r["value"][1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn prometheus_gets_the_scraped_series_exactly_and_a_deleted_pods_go_stale_at_once() {
    let prom = Prometheus::start();
    let (node, api) = setup();
    let shop = TargetServer::start("127.0.1.50", |_| Answer::Text(SHOP_BODY.into()));
    let broken = TargetServer::start("127.0.1.51", |_| Answer::Status(500));
    api.upsert_pod(&scraped_pod("checkout-1", "127.0.1.50", shop.port()));
    api.upsert_pod(&scraped_pod("broken-1", "127.0.1.51", broken.port()));
    let rw = owned(&[
        "remote_write:",
        &format!(
            "  - {{url: {:?}, name: prom, batch_send_deadline_secs: 1}}",
            prom.write_url()
        ),
    ]);
    let mut agent = start(&node, &kube_config(metrics_lines(&rw, &[])), &api);

    let selector = r#"{pod="checkout-1",__name__=~"orders_total|request_seconds.*|rpc_seconds.*"}"#;
    let mut got = BTreeMap::new();
    let arrived = wait_until(
        || {
            agent.assert_running("while waiting for Prometheus");
            got = instant(&prom, selector);
            got.len() >= 10
        },
        secs(30),
    );
    assert!(
        arrived,
        "Prometheus has {got:#?}; agent stderr:\n{}\nprometheus log:\n{}",
        agent.stderr_tail(20),
        prom.log()
    );
    let target = format!(
        "cluster={CLUSTER},container=app,instance=127.0.1.50:{},job=kubernetes-pods,namespace=shop,node={NODE},\
         pod=checkout-1",
        shop.port()
    );
    let series = |name: &str, extra: &str, v: &str| {
        let mut pairs: Vec<String> = format!("__name__={name},{target}")
            .split(',')
            .chain(extra.split(',').filter(|e| !e.is_empty()))
            .map(String::from)
            .collect();
        pairs.sort();
        (pairs.join(","), v.to_owned())
    };
    let want: BTreeMap<String, String> = [
        series("orders_total", "method=card", "1027"),
        series("request_seconds_bucket", "le=0.1", "5"),
        series("request_seconds_bucket", "le=1.0", "9"),
        series("request_seconds_bucket", "le=+Inf", "10"),
        series("request_seconds_sum", "", "4.25"),
        series("request_seconds_count", "", "10"),
        series("rpc_seconds", "quantile=0.5", "0.012"),
        series("rpc_seconds", "quantile=0.99", "0.25"),
        series("rpc_seconds_sum", "", "7.5"),
        series("rpc_seconds_count", "", "300"),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
    let up = |pod: &str| instant(&prom, &format!("up{{pod={pod:?}}}"));
    assert_eq!(
        up("checkout-1").into_values().collect::<Vec<_>>(),
        ["1"],
        "{:?}",
        up("checkout-1")
    );
    let broken_up = up("broken-1");
    assert_eq!(
        broken_up.values().collect::<Vec<_>>(),
        ["0"],
        "{broken_up:?}"
    );
    assert!(
        broken_up.keys().all(|k| k.contains(",container=app,")),
        "{broken_up:?}"
    );

    // The pod goes: its series leave instant queries at once (staleness markers), not
    // after the five minutes of lookback.
    api.delete_pod("shop", "checkout-1");
    let everything = r#"{pod="checkout-1"}"#;
    let gone = wait_until(|| instant(&prom, everything).is_empty(), secs(20));
    assert!(gone, "still there: {:#?}", instant(&prom, everything));
    assert_eq!(up("broken-1").values().collect::<Vec<_>>(), ["0"]);
    agent.stop(secs(30));
    api.assert_no_unexpected();
}
