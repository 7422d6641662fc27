//! Which targets there are: this node's Running pods that ask to be scraped (from the
//! shared pod cache), the node's kubelet, the agent itself, and the static targets of
//! the config. Pure functions of the config and the pods, recomputed whenever the pod
//! cache changes.
//!
//! A pod is scraped when it is `Running`, has an IP, and is annotated
//! `prometheus.io/scrape: "true"`: on `prometheus.io/port`, else on every TCP port
//! one of its containers declares under a name ending in `metrics`, else not at
//! all; at `prometheus.io/path` (default `/metrics`) over `prometheus.io/scheme`
//! (`http`, default, or `https`). `kubeship.io/scrape-interval` (`30s`, `1m30s`,
//! `500ms`, or seconds) and `kubeship.io/sample-limit` (0: none) override the
//! config for the pod, the sample limit up to `pods.max_sample_limit`, which a pod
//! cannot raise. A bad annotation value is reported and the config's value used (a
//! bad port, path or scheme: the pod is not scraped).

use std::time::Duration;

use hyper::Uri;

use super::target::{Rules, Source, Target};
use crate::config::{PodRef, ScrapeConfig, StaticSource, TargetAuth};
use crate::kube::PodMeta;

/// Annotation: `"true"` asks for the pod to be scraped.
pub const SCRAPE: &str = "prometheus.io/scrape";
/// Annotation: the port to scrape.
pub const PORT: &str = "prometheus.io/port";
/// Annotation: the path to scrape (default `/metrics`).
pub const PATH: &str = "prometheus.io/path";
/// Annotation: `http` (default) or `https`.
pub const SCHEME: &str = "prometheus.io/scheme";
/// Annotation: the pod's scrape interval.
pub const INTERVAL: &str = "kubeship.io/scrape-interval";
/// Annotation: the pod's sample limit (0: none).
pub const SAMPLE_LIMIT: &str = "kubeship.io/sample-limit";

/// Whether discovery reads the annotation `key` (what the pod cache must keep).
pub fn reads_annotation(key: &str) -> bool {
    key.starts_with("prometheus.io/") || key == INTERVAL || key == SAMPLE_LIMIT
}

/// Every target of the node: static ones, the kubelet's, the agent's own, and the
/// pods' (`pods`: the live pods of the cache). What is wrong with a pod's
/// annotations goes to `problems` as (pod, message).
pub fn all(
    cfg: &ScrapeConfig,
    node: &str,
    self_pod: Option<&PodRef>,
    pods: &[std::sync::Arc<PodMeta>],
    problems: &mut Vec<(String, String)>,
) -> Vec<Target> {
    let mut targets = static_targets(cfg, node);
    targets.extend(kubelet_targets(cfg, node));
    if cfg.self_metrics {
        targets.push(self_target(cfg, node, self_pod));
    }
    if cfg.pods.enabled {
        for pod in pods {
            let is_self =
                self_pod.is_some_and(|s| s.namespace == pod.namespace && s.name == pod.name);
            // The agent's own pod is forwarded from its registry already.
            if is_self && cfg.self_metrics {
                continue;
            }
            let mut report = |message: String| {
                problems.push((format!("{}/{}", pod.namespace, pod.name), message));
            };
            targets.extend(pod_targets(pod, cfg, node, &mut report));
        }
    }
    for t in &mut targets {
        let missing: Vec<(String, String)> = cfg
            .external_labels
            .iter()
            .filter(|(name, _)| t.label(name).is_none())
            .cloned()
            .collect();
        if !missing.is_empty() {
            t.labels.extend(missing);
            t.labels.sort();
        }
    }
    targets
}

/// `host:port`, bracketing an IPv6 address.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The configured static targets.
pub fn static_targets(cfg: &ScrapeConfig, node: &str) -> Vec<Target> {
    cfg.static_targets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (source, instance) = match &s.source {
                StaticSource::Url(url) => (
                    Source::Http {
                        url: url.clone(),
                        auth: s.auth.clone(),
                    },
                    url.authority()
                        .map_or_else(String::new, |a| a.as_str().to_owned()),
                ),
                StaticSource::File(path) => (
                    Source::File(path.clone()),
                    path.file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                ),
            };
            let mut labels = vec![
                ("job".to_owned(), s.job.clone()),
                ("instance".to_owned(), instance),
                ("node".to_owned(), node.to_owned()),
            ];
            labels.extend(s.labels.iter().cloned());
            Target::new(
                source,
                labels,
                s.interval.unwrap_or(cfg.interval),
                s.timeout.unwrap_or(cfg.timeout),
                cfg.body_limit_bytes,
                s.sample_limit.unwrap_or(cfg.sample_limit),
            )
            .with_rules(Rules::Static(i))
        })
        .collect()
}

/// The kubelet's `/metrics/cadvisor` and `/metrics/resource` (job `kubelet`, label
/// `metrics_path`), at `kubelet.address` (else the node name) over HTTPS.
pub fn kubelet_targets(cfg: &ScrapeConfig, node: &str) -> Vec<Target> {
    let k = &cfg.kubelet;
    if !k.enabled {
        return Vec::new();
    }
    let instance = host_port(k.address.as_deref().unwrap_or(node), k.port);
    ["/metrics/cadvisor", "/metrics/resource"]
        .into_iter()
        .filter_map(|path| {
            let url: Uri = format!("https://{instance}{path}").parse().ok()?;
            Some(
                Target::new(
                    Source::Http {
                        url,
                        auth: k.auth.clone(),
                    },
                    vec![
                        ("job".to_owned(), "kubelet".to_owned()),
                        ("instance".to_owned(), instance.clone()),
                        ("node".to_owned(), node.to_owned()),
                        ("metrics_path".to_owned(), path.to_owned()),
                    ],
                    cfg.interval,
                    cfg.timeout,
                    cfg.body_limit_bytes,
                    cfg.sample_limit,
                )
                .with_rules(Rules::Kubelet),
            )
        })
        .collect()
}

/// The agent's own metrics: job `kubeship`, instance and node the node's name (one
/// agent per node), `namespace` and `pod` its pod's when known.
pub fn self_target(cfg: &ScrapeConfig, node: &str, self_pod: Option<&PodRef>) -> Target {
    let mut labels = vec![
        ("job".to_owned(), "kubeship".to_owned()),
        ("instance".to_owned(), node.to_owned()),
        ("node".to_owned(), node.to_owned()),
    ];
    if let Some(p) = self_pod {
        labels.push(("namespace".to_owned(), p.namespace.clone()));
        labels.push(("pod".to_owned(), p.name.clone()));
    }
    Target::new(
        Source::Registry,
        labels,
        cfg.interval,
        cfg.timeout,
        cfg.body_limit_bytes,
        cfg.sample_limit,
    )
}

/// A pod target's sample limit: `limit` (0: none) held to `max` (0: none).
fn ceiling(limit: usize, max: usize) -> usize {
    match (limit, max) {
        (limit, 0) => limit,
        (0, max) => max,
        (limit, max) => limit.min(max),
    }
}

/// The targets of one pod (none unless it is Running, has an IP and asks to be
/// scraped); what is wrong with its annotations goes to `report`.
pub fn pod_targets(
    pod: &PodMeta,
    cfg: &ScrapeConfig,
    node: &str,
    report: &mut dyn FnMut(String),
) -> Vec<Target> {
    let a = &pod.annotations;
    let wants = a.get(SCRAPE).is_some_and(|v| v.trim() == "true");
    if !wants || pod.phase != "Running" || pod.pod_ip.is_empty() {
        return Vec::new();
    }
    // (port, the container declaring it)
    let ports: Vec<(u16, Option<&str>)> = match a.get(PORT).map(|p| p.trim()) {
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port > 0 => {
                let container = pod
                    .containers
                    .iter()
                    .find(|c| c.ports.iter().any(|cp| cp.port == port))
                    .map(|c| c.name.as_str());
                vec![(port, container)]
            }
            _ => {
                report(format!("{PORT}: `{p}` is not a port number; not scraped"));
                return Vec::new();
            }
        },
        None => pod
            .containers
            .iter()
            .flat_map(|c| {
                c.ports
                    .iter()
                    .filter(|p| p.name.ends_with("metrics"))
                    .map(|p| (p.port, Some(c.name.as_str())))
            })
            .collect(),
    };
    let scheme = match a.get(SCHEME).map(|s| s.trim()) {
        None | Some("" | "http") => "http",
        Some("https") => "https",
        Some(other) => {
            report(format!(
                "{SCHEME}: `{other}` is neither http nor https; not scraped"
            ));
            return Vec::new();
        }
    };
    let path = match a.get(PATH).map(|p| p.trim()).filter(|p| !p.is_empty()) {
        None => "/metrics".to_owned(),
        Some(p) if p.starts_with('/') => p.to_owned(),
        Some(p) => format!("/{p}"),
    };
    let interval = match a.get(INTERVAL) {
        None => cfg.interval,
        Some(v) => match parse_duration(v.trim()) {
            Some(d) if (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&d) => d,
            _ => {
                report(format!(
                    "{INTERVAL}: `{v}` is not a duration between 1s and 1h (e.g. 15s, 1m); using {:?}",
                    cfg.interval
                ));
                cfg.interval
            }
        },
    };
    let asked = match a.get(SAMPLE_LIMIT) {
        None => cfg.sample_limit,
        Some(v) => v.trim().parse::<usize>().unwrap_or_else(|_| {
            report(format!(
                "{SAMPLE_LIMIT}: `{v}` is not a number; using {}",
                cfg.sample_limit
            ));
            cfg.sample_limit
        }),
    };
    let sample_limit = ceiling(asked, cfg.pods.max_sample_limit);
    if sample_limit != asked && a.contains_key(SAMPLE_LIMIT) {
        report(format!(
            "{SAMPLE_LIMIT}: {} is above metrics.scrape.pods.max_sample_limit; using {sample_limit}",
            if asked == 0 {
                "0 (none)".to_owned()
            } else {
                asked.to_string()
            }
        ));
    }
    let auth: &TargetAuth = &cfg.pods.auth;
    let mut targets = Vec::new();
    for (port, container) in ports {
        let instance = host_port(&pod.pod_ip, port);
        let url: Uri = match format!("{scheme}://{instance}{path}").parse() {
            Ok(url) => url,
            Err(e) => {
                report(format!(
                    "{PATH}: `{path}` does not make a URL ({e}); not scraped"
                ));
                return Vec::new();
            }
        };
        let mut labels = vec![
            ("job".to_owned(), cfg.pods.job.clone()),
            ("instance".to_owned(), instance),
            ("namespace".to_owned(), pod.namespace.clone()),
            ("pod".to_owned(), pod.name.clone()),
            ("container".to_owned(), container.unwrap_or("").to_owned()),
            ("node".to_owned(), node.to_owned()),
        ];
        for (key, name) in &cfg.pods.labels {
            if let Some(v) = pod.labels.get(key) {
                labels.push((name.clone(), v.clone()));
            }
        }
        targets.push(
            Target::new(
                Source::Http {
                    url,
                    auth: auth.clone(),
                },
                labels,
                interval,
                cfg.timeout,
                cfg.body_limit_bytes,
                sample_limit,
            )
            .with_rules(Rules::Pods),
        );
    }
    targets
}

/// A Prometheus-style duration (`500ms`, `15s`, `1m30s`, `2h`), or whole seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return None,
        };
        total = total.checked_add(unit.checked_mul(u32::try_from(n).ok()?)?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::kube::ContainerMeta;
    use crate::kube::meta::ContainerPort;

    fn cfg(extra: &str) -> ScrapeConfig {
        let text = format!("cluster: c\nmetrics:\n  scrape:\n{extra}");
        crate::config::load_str(&text, Path::new("/k.yaml"), &|_| None)
            .unwrap_or_else(|e| panic!("{e}"))
            .metrics
            .unwrap()
            .scrape
    }

    fn port(name: &str, port: u16) -> ContainerPort {
        ContainerPort {
            name: name.into(),
            port,
        }
    }

    fn pod(annotations: &[(&str, &str)], containers: Vec<(&str, Vec<ContainerPort>)>) -> PodMeta {
        PodMeta {
            uid: "u".into(),
            name: "web-1".into(),
            namespace: "shop".into(),
            pod_ip: "10.1.2.3".into(),
            phase: "Running".into(),
            labels: BTreeMap::from([
                ("app.kubernetes.io/name".into(), "web".into()),
                ("other".into(), "x".into()),
            ]),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            containers: containers
                .into_iter()
                .map(|(name, ports)| ContainerMeta {
                    name: name.into(),
                    ports,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn targets_of(p: &PodMeta, c: &ScrapeConfig) -> (Vec<Target>, Vec<String>) {
        let mut problems = Vec::new();
        let t = pod_targets(p, c, "node-1", &mut |m| problems.push(m));
        (t, problems)
    }

    fn urls(t: &[Target]) -> Vec<String> {
        t.iter()
            .map(|t| match &t.source {
                Source::Http { url, .. } => url.to_string(),
                Source::Registry => "registry".into(),
                Source::File(p) => format!("file:{}", p.display()),
            })
            .collect()
    }

    #[test]
    fn external_labels_go_to_targets_that_lack_them() {
        let c = cfg("    kubelet: {enabled: false}\n    static_targets:\n      \
             - {url: 'http://127.0.0.1:9100', labels: {cluster: other}}\n      \
             - {url: 'http://127.0.0.1:9101'}\n");
        let t = all(&c, "node-1", None, &[], &mut Vec::new());
        let clusters: Vec<(Option<&str>, Option<&str>)> = t
            .iter()
            .map(|t| (t.label("instance"), t.label("cluster")))
            .collect();
        assert_eq!(
            clusters,
            [
                (Some("127.0.0.1:9100"), Some("other")),
                (Some("127.0.0.1:9101"), Some("c")),
                (Some("node-1"), Some("c")),
            ],
            "the target's own label wins; the agent's own target gets it too"
        );
        assert!(
            t.iter()
                .all(|t| t.labels.windows(2).all(|w| w[0].0 < w[1].0)),
            "labels stay sorted and unique"
        );
    }

    #[test]
    fn the_port_annotation_wins_and_names_its_container() {
        let c = cfg("    pods: {labels: [app.kubernetes.io/name, missing]}\n");
        let p = pod(
            &[(SCRAPE, "true"), (PORT, "9102")],
            vec![
                ("app", vec![port("http", 8080), port("http-metrics", 9090)]),
                ("exporter", vec![port("", 9102)]),
            ],
        );
        let (t, problems) = targets_of(&p, &c);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(urls(&t), ["http://10.1.2.3:9102/metrics"]);
        let labels: Vec<(&str, &str)> = t[0]
            .labels
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("app_kubernetes_io_name", "web"),
                ("container", "exporter"),
                ("instance", "10.1.2.3:9102"),
                ("job", "kubernetes-pods"),
                ("namespace", "shop"),
                ("node", "node-1"),
                ("pod", "web-1"),
            ]
        );
        assert_eq!(t[0].interval, Duration::from_secs(30));
        // A port no container declares: scraped, without a container label.
        let p = pod(&[(SCRAPE, "true"), (PORT, "7000")], vec![("app", vec![])]);
        let (t, _) = targets_of(&p, &c);
        assert_eq!(t[0].label("container"), None);
        assert_eq!(t[0].label("instance"), Some("10.1.2.3:7000"));
    }

    #[test]
    fn without_a_port_annotation_every_port_named_metrics() {
        let c = cfg("    {}\n");
        let p = pod(
            &[(SCRAPE, "true"), (PATH, "stats"), (SCHEME, "https")],
            vec![
                ("app", vec![port("http", 8080), port("http-metrics", 9090)]),
                ("proxy", vec![port("metrics", 15090), port("metricsz", 1)]),
            ],
        );
        let (t, _) = targets_of(&p, &c);
        assert_eq!(
            urls(&t),
            [
                "https://10.1.2.3:9090/stats",
                "https://10.1.2.3:15090/stats"
            ]
        );
        let containers: Vec<_> = t.iter().map(|t| t.label("container")).collect();
        assert_eq!(containers, [Some("app"), Some("proxy")]);
        // No port named *metrics and no annotation: nothing.
        let p = pod(&[(SCRAPE, "true")], vec![("app", vec![port("http", 80)])]);
        assert!(targets_of(&p, &c).0.is_empty());
    }

    #[test]
    fn only_running_annotated_pods_with_an_ip() {
        let c = cfg("    {}\n");
        let scraped = |annotations: &[(&str, &str)], phase: &str, ip: &str| {
            let mut p = pod(annotations, vec![("app", vec![port("metrics", 9090)])]);
            p.phase = phase.into();
            p.pod_ip = ip.into();
            !targets_of(&p, &c).0.is_empty()
        };
        assert!(scraped(&[(SCRAPE, "true")], "Running", "10.0.0.1"));
        assert!(!scraped(&[(SCRAPE, "false")], "Running", "10.0.0.1"));
        assert!(!scraped(&[], "Running", "10.0.0.1"));
        for phase in ["Pending", "Succeeded", "Failed", "Unknown", ""] {
            assert!(!scraped(&[(SCRAPE, "true")], phase, "10.0.0.1"), "{phase}");
        }
        assert!(!scraped(&[(SCRAPE, "true")], "Running", ""));
    }

    #[test]
    fn overrides_and_bad_annotations() {
        let c = cfg("    sample_limit: 100\n");
        let base = [(SCRAPE, "true"), (PORT, "9090")];
        let with = |extra: &[(&str, &str)]| {
            let mut a = base.to_vec();
            a.extend_from_slice(extra);
            targets_of(&pod(&a, vec![]), &c)
        };
        let (t, problems) = with(&[(INTERVAL, "1m30s"), (SAMPLE_LIMIT, "5000")]);
        assert!(problems.is_empty());
        assert_eq!(t[0].interval, Duration::from_secs(90));
        assert_eq!(t[0].sample_limit, 5000);
        let (t, _) = with(&[(INTERVAL, "5s")]);
        assert_eq!(
            (t[0].interval, t[0].timeout),
            (Duration::from_secs(5), Duration::from_secs(5)),
            "the timeout never exceeds the interval"
        );
        let (t, problems) = with(&[(INTERVAL, "soon"), (SAMPLE_LIMIT, "-1")]);
        assert_eq!(
            (t[0].interval, t[0].sample_limit),
            (Duration::from_secs(30), 100)
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        let (t, problems) = with(&[(INTERVAL, "2h")]);
        assert_eq!(t[0].interval, Duration::from_secs(30));
        assert!(problems[0].contains("between 1s and 1h"), "{problems:?}");
        for (bad_key, bad_value) in [(PORT, "http"), (PORT, "0"), (SCHEME, "ftp")] {
            let (t, problems) =
                targets_of(&pod(&[(SCRAPE, "true"), (bad_key, bad_value)], vec![]), &c);
            assert!(t.is_empty(), "{bad_key}={bad_value}");
            assert!(problems[0].contains("not scraped"), "{problems:?}");
        }
        let mut p = pod(&base, vec![]);
        p.pod_ip = "fd00::7".into();
        assert_eq!(
            urls(&targets_of(&p, &c).0),
            ["http://[fd00::7]:9090/metrics"]
        );
    }

    #[test]
    fn a_pods_sample_limit_is_held_to_the_ceiling() {
        let base = [(SCRAPE, "true"), (PORT, "9090")];
        let limit = |c: &ScrapeConfig, extra: &[(&str, &str)]| {
            let mut a = base.to_vec();
            a.extend_from_slice(extra);
            let (t, problems) = targets_of(&pod(&a, vec![]), c);
            (t[0].sample_limit, problems.len())
        };
        let default = cfg("    interval_secs: 30\n");
        assert_eq!(default.pods.max_sample_limit, 200_000);
        let max = 200_000;
        assert_eq!(
            limit(&default, &[]),
            (max, 0),
            "no limit anywhere: the ceiling"
        );
        assert_eq!(limit(&default, &[(SAMPLE_LIMIT, "5000")]), (5000, 0));
        assert_eq!(limit(&default, &[(SAMPLE_LIMIT, "900000")]), (max, 1));
        assert_eq!(limit(&default, &[(SAMPLE_LIMIT, "0")]), (max, 1));
        let c = cfg("    sample_limit: 300000\n    pods: {max_sample_limit: 1000}\n");
        assert_eq!(
            limit(&c, &[]),
            (1000, 0),
            "the config's own limit is held too"
        );
        let none = cfg("    sample_limit: 300000\n    pods: {max_sample_limit: 0}\n");
        assert_eq!(limit(&none, &[]), (300_000, 0));
        assert_eq!(
            limit(&none, &[(SAMPLE_LIMIT, "0")]),
            (0, 0),
            "0: no ceiling"
        );
        // Only pods: the kubelet, static targets and the agent keep `sample_limit`.
        let c = cfg(
            "    pods: {max_sample_limit: 10}\n    static_targets:\n      \
                     - {url: 'http://127.0.0.1:9/m'}\n",
        );
        assert!(
            static_targets(&c, "node-1")
                .iter()
                .all(|t| t.sample_limit == 0)
        );
        assert!(
            kubelet_targets(&c, "node-1")
                .iter()
                .all(|t| t.sample_limit == 0)
        );
    }

    #[test]
    fn durations() {
        let d = |s| parse_duration(s);
        assert_eq!(d("30"), Some(Duration::from_secs(30)));
        assert_eq!(d("15s"), Some(Duration::from_secs(15)));
        assert_eq!(d("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(d("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(d("1h"), Some(Duration::from_secs(3600)));
        for bad in ["", "s", "1x", "1.5s", "-1s", "1 s"] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    #[test]
    fn node_targets_and_the_agent_itself() {
        let c = cfg(
            "    kubelet: {address: 10.0.1.7}\n    static_targets:\n      \
             - {url: 'http://127.0.0.1:9100', job: node, labels: {team: a}, interval_secs: 5}\n",
        );
        let me = PodRef {
            namespace: "kube-system".into(),
            name: "kubeship-x".into(),
        };
        let mut own = pod(&[(SCRAPE, "true"), (PORT, "2020")], vec![]);
        own.namespace = me.namespace.clone();
        own.name = me.name.clone();
        let other = pod(&[(SCRAPE, "true"), (PORT, "9090")], vec![]);
        let mut problems = Vec::new();
        let t = all(
            &c,
            "node-1",
            Some(&me),
            &[Arc::new(own), Arc::new(other)],
            &mut problems,
        );
        assert_eq!(
            urls(&t),
            [
                "http://127.0.0.1:9100/metrics",
                "https://10.0.1.7:10250/metrics/cadvisor",
                "https://10.0.1.7:10250/metrics/resource",
                "registry",
                "http://10.1.2.3:9090/metrics",
            ],
            "the agent's own pod is not scraped over HTTP besides its registry"
        );
        assert_eq!(t[0].label("team"), Some("a"));
        assert_eq!(t[0].label("instance"), Some("127.0.0.1:9100"));
        assert_eq!(t[0].interval, Duration::from_secs(5));
        assert_eq!(t[1].label("job"), Some("kubelet"));
        assert_eq!(t[1].label("metrics_path"), Some("/metrics/cadvisor"));
        let Source::Http { auth, .. } = &t[1].source else {
            panic!("kubelet over HTTP")
        };
        assert!(auth.bearer_token_file.is_some() && auth.ca_file.is_some());
        assert_eq!(t[3].label("job"), Some("kubeship"));
        assert_eq!(t[3].label("pod"), Some("kubeship-x"));
        // Off switches.
        let off = cfg(
            "    kubelet: {enabled: false}\n    self_metrics: false\n    pods: {enabled: false}\n",
        );
        let pods = [Arc::new(pod(&[(SCRAPE, "true"), (PORT, "1")], vec![]))];
        assert!(all(&off, "n", None, &pods, &mut problems).is_empty());
        // Without an address, the node's name.
        let t = kubelet_targets(&cfg("    {}\n"), "ip-10-0-1-7.ec2.internal");
        assert_eq!(
            t[0].label("instance"),
            Some("ip-10-0-1-7.ec2.internal:10250")
        );
        assert!(reads_annotation(PORT) && reads_annotation(INTERVAL));
        assert!(!reads_annotation("kubeship.io/parser"));
    }
}
