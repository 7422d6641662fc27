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

/// `metrics:` lines scraping every second (1 s timeout), without the kubelet nor the
/// agent's own metrics, `scrape` more lines under `scrape:`; `before` lines come first
/// (e.g. `remote_write:`).
fn metrics_lines(before: &[String], scrape: &[&str]) -> Vec<String> {
    let mut lines = before.to_vec();
    lines.extend(
        [
            "scrape:",
            "  interval_secs: 1",
            "  timeout_secs: 1",
            "  self_metrics: false",
            "  kubelet: {enabled: false}",
        ]
        .map(String::from),
    );
    lines.extend(scrape.iter().map(|l| format!("  {l}")));
    lines
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

/// `pod` annotated to be scraped on `port`.
fn scraped_pod(name: &str, ip: &str, port: u16) -> Pod {
    pod(name, ip)
        .annotation(SCRAPE, "true")
        .annotation(PORT, &port.to_string())
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
        &[
            "pods: {labels: [app.kubernetes.io/name, team]}",
            "metric_relabel_configs:",
            "  - {source_labels: [__name__], regex: 'go_.*', action: drop}",
        ],
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
            (800..=1200).contains(&gap),
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
    let gone = TargetServer::start("127.0.1.21", |_| Answer::Text("gone_metric 1\n".into()));
    let quiet = TargetServer::start("127.0.1.22", |_| Answer::Text("quiet_metric 1\n".into()));
    api.upsert_pod(&scraped_pod("web-1", "127.0.1.20", web.port()));
    api.upsert_pod(&scraped_pod("gone-1", "127.0.1.21", gone.port()));
    let quiet_pod = pod("quiet-1", "127.0.1.22").annotation(PORT, &quiet.port().to_string());
    api.upsert_pod(&quiet_pod.clone().annotation(SCRAPE, "true"));
    let mut agent = start(&node, &kube_config(metrics_lines(&[], &[])), &api);
    wait_scraped(&node, &mut agent, secs(30), "every pod scraped", |s| {
        !select(s, "goes_away", &[]).is_empty()
            && !select(s, "gone_metric", &[]).is_empty()
            && !select(s, "quiet_metric", &[]).is_empty()
    });

    // A series the target stops exposing: one marker, in the scrape that missed it.
    let shrunk = now_ms();
    shrink.store(true, Ordering::SeqCst);
    let got = wait_scraped(&node, &mut agent, secs(30), "goes_away marked stale", |s| {
        select(s, "goes_away", &[]).iter().any(|x| x.is_stale())
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
    let goes_away = select(&got, "goes_away", &[]);
    assert_eq!(goes_away.iter().filter(|x| x.is_stale()).count(), 1);
    assert!(
        goes_away.last().is_some_and(|x| x.is_stale()),
        "{goes_away:?}"
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
