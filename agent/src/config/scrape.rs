//! `metrics.scrape:`: what the metrics pipeline scrapes and how (targets from pod
//! annotations, the node's kubelet, the agent's own metrics, static targets;
//! intervals, limits, labels, metric relabeling), as written and checked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use hyper::Uri;
use serde::Deserialize;

use super::raw::{Spanned, all_defaults, unlocated};
use super::relabel::convert_rules;
use super::validate::{Context, KIB, MIB, Problems, in_range, non_empty, path, size};
use crate::metrics::relabel::{Rule, valid_label_name};

/// The service account's files in a pod (the kubelet's defaults).
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Target labels a pod label or a static label may not take.
const RESERVED: [&str; 6] = ["job", "instance", "namespace", "pod", "container", "node"];

/// `metrics.scrape` as written.
#[derive(Debug, Deserialize)]
pub(super) struct RawScrape {
    #[serde(default = "default_interval_secs")]
    pub interval_secs: Spanned<u64>,
    /// Default: 10, or the interval when shorter.
    pub timeout_secs: Option<Spanned<u64>>,
    #[serde(default = "default_body_limit_bytes")]
    pub body_limit_bytes: Spanned<u64>,
    /// 0: no limit.
    #[serde(default = "default_zero")]
    pub sample_limit: Spanned<u64>,
    /// 0: no budget.
    #[serde(default = "default_max_series")]
    pub max_series: Spanned<u64>,
    /// 0: no budget. Default: 64 MiB, or `body_limit_bytes` when larger.
    pub max_body_bytes_in_flight: Option<Spanned<u64>>,
    #[serde(default)]
    pub pods: RawPods,
    #[serde(default)]
    pub kubelet: RawKubelet,
    #[serde(default = "default_on")]
    pub self_metrics: Spanned<bool>,
    #[serde(default)]
    pub static_targets: Vec<Spanned<RawStaticTarget>>,
    #[serde(default)]
    pub metric_relabel_configs: Vec<Spanned<RawRelabel>>,
}

impl Default for RawScrape {
    fn default() -> Self {
        all_defaults()
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RawPods {
    #[serde(default = "default_on")]
    pub enabled: Spanned<bool>,
    #[serde(default = "default_pods_job")]
    pub job: Spanned<String>,
    #[serde(default)]
    pub labels: Vec<Spanned<String>>,
    pub bearer_token_file: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    #[serde(default = "default_off")]
    pub insecure_skip_verify: Spanned<bool>,
    #[serde(default = "default_max_sample_limit")]
    pub max_sample_limit: Spanned<u64>,
    /// Rules for this group's series, after `metrics.scrape.metric_relabel_configs`.
    #[serde(default)]
    pub metric_relabel_configs: Vec<Spanned<RawRelabel>>,
}

impl Default for RawPods {
    fn default() -> Self {
        all_defaults()
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RawKubelet {
    #[serde(default = "default_on")]
    pub enabled: Spanned<bool>,
    /// Defaults to `$NODE_IP`, then the node name.
    pub address: Option<Spanned<String>>,
    #[serde(default = "default_kubelet_port")]
    pub port: Spanned<u64>,
    #[serde(default = "default_ca_file")]
    pub ca_file: Spanned<String>,
    #[serde(default = "default_token_file")]
    pub token_file: Spanned<String>,
    #[serde(default = "default_off")]
    pub insecure_skip_verify: Spanned<bool>,
    /// Rules for this group's series, after `metrics.scrape.metric_relabel_configs`.
    #[serde(default)]
    pub metric_relabel_configs: Vec<Spanned<RawRelabel>>,
}

impl Default for RawKubelet {
    fn default() -> Self {
        all_defaults()
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RawStaticTarget {
    pub url: Option<Spanned<String>>,
    pub file: Option<Spanned<String>>,
    #[serde(default = "default_static_job")]
    pub job: Spanned<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, Spanned<String>>,
    pub interval_secs: Option<Spanned<u64>>,
    pub timeout_secs: Option<Spanned<u64>>,
    pub sample_limit: Option<Spanned<u64>>,
    pub bearer_token_file: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    #[serde(default = "default_off")]
    pub insecure_skip_verify: Spanned<bool>,
    /// Rules for this group's series, after `metrics.scrape.metric_relabel_configs`.
    #[serde(default)]
    pub metric_relabel_configs: Vec<Spanned<RawRelabel>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawRelabel {
    #[serde(default)]
    pub source_labels: Vec<Spanned<String>>,
    #[serde(default = "default_separator")]
    pub separator: Spanned<String>,
    #[serde(default = "default_regex")]
    pub regex: Spanned<String>,
    pub target_label: Option<Spanned<String>>,
    #[serde(default = "default_replacement")]
    pub replacement: Spanned<String>,
    #[serde(default = "default_action")]
    pub action: Spanned<String>,
}

fn default_interval_secs() -> Spanned<u64> {
    unlocated(30)
}
/// `timeout_secs` when not given (capped at the interval).
const DEFAULT_TIMEOUT_SECS: u64 = 10;

fn default_body_limit_bytes() -> Spanned<u64> {
    unlocated(16 * MIB)
}
fn default_zero() -> Spanned<u64> {
    unlocated(0)
}
fn default_on() -> Spanned<bool> {
    unlocated(true)
}
fn default_off() -> Spanned<bool> {
    unlocated(false)
}
fn default_pods_job() -> Spanned<String> {
    unlocated("kubernetes-pods".to_owned())
}
fn default_static_job() -> Spanned<String> {
    unlocated("static".to_owned())
}
fn default_max_series() -> Spanned<u64> {
    unlocated(DEFAULT_MAX_SERIES as u64)
}
fn default_max_sample_limit() -> Spanned<u64> {
    unlocated(DEFAULT_MAX_SAMPLE_LIMIT as u64)
}
fn default_kubelet_port() -> Spanned<u64> {
    unlocated(10250)
}
fn default_ca_file() -> Spanned<String> {
    unlocated(format!("{SA_DIR}/ca.crt"))
}
fn default_token_file() -> Spanned<String> {
    unlocated(format!("{SA_DIR}/token"))
}
fn default_separator() -> Spanned<String> {
    unlocated(";".to_owned())
}
fn default_regex() -> Spanned<String> {
    unlocated("(.*)".to_owned())
}
fn default_replacement() -> Spanned<String> {
    unlocated("$1".to_owned())
}
fn default_action() -> Spanned<String> {
    unlocated("replace".to_owned())
}

/// `metrics.scrape`: what is scraped and how.
#[derive(Debug, Clone)]
pub struct ScrapeConfig {
    /// `interval_secs`, default 30 (1..=3600): time between two scrapes of a target.
    pub interval: Duration,
    /// `timeout_secs`, default 10 or the interval when shorter (1..=3600, at most
    /// the interval): one scrape's
    /// deadline, connection and whole body included.
    pub timeout: Duration,
    /// `body_limit_bytes`, default 16 MiB (1 KiB..=1 GiB): the largest body, after
    /// decompression; a larger one fails the scrape and is not read further.
    pub body_limit_bytes: usize,
    /// `sample_limit`, default 0 (none): a scrape with more samples after metric
    /// relabeling fails, as Prometheus's `sample_limit`.
    pub sample_limit: usize,
    /// `max_series`, default [`DEFAULT_MAX_SERIES`] (0: none): the most series all
    /// targets' caches may hold together (kept between scrapes: ~80 bytes each); a
    /// scrape whose samples after relabeling would pass what the others leave fails
    /// (`series_limit`), as over a sample limit. However many pods a node runs, their
    /// series cannot outgrow the agent's memory.
    pub max_series: usize,
    /// `max_body_bytes_in_flight`, default [`DEFAULT_MAX_BODY_BYTES_IN_FLIGHT`] or
    /// `body_limit_bytes` when larger (0: none; else at least `body_limit_bytes`): the bytes of body (decompressed) all
    /// scrapes may hold at once, each until its samples are handed on. A scrape whose
    /// body would pass what the others leave fails at once (`body_budget`). The body
    /// limit bounds one target; this bounds many answering large or slow bodies at
    /// the same time.
    pub max_body_bytes_in_flight: usize,
    /// `pods`: targets from the annotations of this node's pods.
    pub pods: PodsConfig,
    /// `kubelet`: this node's kubelet (`/metrics/cadvisor`, `/metrics/resource`).
    pub kubelet: KubeletConfig,
    /// `self_metrics`, default true: the agent's own metrics, forwarded as job
    /// `kubeship` (read from its registry, not over HTTP).
    pub self_metrics: bool,
    /// `static_targets`: fixed URLs.
    pub static_targets: Vec<StaticTarget>,
    /// `metric_relabel_configs`: rules every scraped series goes through.
    pub metric_relabel: Vec<Rule>,
    /// `pods.metric_relabel_configs`: then these, for pod targets' series.
    pub pods_relabel: Vec<Rule>,
    /// `kubelet.metric_relabel_configs`: then these, for the kubelet's series.
    pub kubelet_relabel: Vec<Rule>,
    /// `metrics.external_labels` (config/metrics.rs), default `cluster: <cluster>`:
    /// added to every target's labels that lacks them; sorted, values not empty.
    pub external_labels: Vec<(String, String)>,
}

/// How a target is authenticated and its TLS server checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetAuth {
    /// Sent as `Authorization: Bearer <contents>`, read at every scrape (tokens
    /// rotate).
    pub bearer_token_file: Option<PathBuf>,
    /// Servers are verified against this PEM bundle instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Do not verify the server's certificate at all.
    pub insecure_skip_verify: bool,
}

/// `metrics.scrape.pods`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodsConfig {
    /// `enabled`, default true (needs pod metadata: `kubernetes` on).
    pub enabled: bool,
    /// `job`, default `kubernetes-pods`.
    pub job: String,
    /// `labels`: pod label keys copied onto every sample, as (key, label name): the
    /// name is the key with every character outside `[a-zA-Z0-9_]` made `_`.
    pub labels: Vec<(String, String)>,
    /// For targets whose `prometheus.io/scheme` is `https`, and a token for all.
    pub auth: TargetAuth,
    /// `max_sample_limit`, default [`DEFAULT_MAX_SAMPLE_LIMIT`] (0: none): the largest
    /// sample limit a pod target gets, whatever `sample_limit` or its
    /// `kubeship.io/sample-limit` says (0 there, no limit, becomes this). A pod
    /// controls its body: a million tiny series fit in the 16 MiB body limit, and the
    /// agent scraping them peaked at 195 MiB; held to 200,000, at 49–59 MiB.
    pub max_sample_limit: usize,
}

/// See [`ScrapeConfig::max_series`].
pub const DEFAULT_MAX_SERIES: usize = 1_000_000;

/// See [`ScrapeConfig::max_body_bytes_in_flight`]: four bodies at the default body
/// limit.
pub const DEFAULT_MAX_BODY_BYTES_IN_FLIGHT: usize = 64 << 20;

/// See [`PodsConfig::max_sample_limit`].
pub const DEFAULT_MAX_SAMPLE_LIMIT: usize = 200_000;

/// `metrics.scrape.kubelet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletConfig {
    /// `enabled`, default true.
    pub enabled: bool,
    /// `address`: the kubelet's host; default `$NODE_IP`; `None`: the node name.
    pub address: Option<String>,
    /// `port`, default 10250.
    pub port: u16,
    /// `token_file` (the service account's token), `ca_file` (the cluster CA),
    /// `insecure_skip_verify`.
    pub auth: TargetAuth,
}

/// Where a static target's body comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaticSource {
    /// `url`: `http` or `https`, with a host; an empty path is `/metrics`.
    Url(Uri),
    /// `file`: a text exposition read from this file at every scrape (relative to the
    /// config file), e.g. node_exporter's textfile output, or the quick start's sample.
    File(PathBuf),
}

/// One `metrics.scrape.static_targets` entry.
#[derive(Debug, Clone)]
pub struct StaticTarget {
    /// `url` or `file`: where the body comes from.
    pub source: StaticSource,
    /// `job`, default `static`.
    pub job: String,
    /// `labels`, added to every sample (not `job`, `instance`, `node`, nor `__*`).
    pub labels: Vec<(String, String)>,
    /// Overrides of the scrape settings.
    pub interval: Option<Duration>,
    /// `timeout_secs`.
    pub timeout: Option<Duration>,
    /// `sample_limit`.
    pub sample_limit: Option<usize>,
    /// `bearer_token_file`, `ca_file`, `insecure_skip_verify`.
    pub auth: TargetAuth,
    /// `metric_relabel_configs`: rules for its series, after the agent-wide ones.
    pub metric_relabel: Vec<Rule>,
}

/// A pod label key as a label name: characters outside `[a-zA-Z0-9_]` become `_`,
/// and a leading digit gets a `_` before it.
pub fn label_name_of(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// Checks and converts `metrics.scrape`.
pub(super) fn convert(
    raw: RawScrape,
    context: &Context<'_>,
    problems: &mut Problems<'_>,
) -> ScrapeConfig {
    let RawScrape {
        interval_secs,
        timeout_secs,
        body_limit_bytes,
        sample_limit,
        max_series,
        max_body_bytes_in_flight,
        pods,
        kubelet,
        self_metrics,
        static_targets,
        metric_relabel_configs,
    } = raw;
    let p = "metrics.scrape";
    let (pods, pods_relabel) = convert_pods(pods, context, problems);
    let (kubelet, kubelet_relabel) = convert_kubelet(kubelet, context, problems);
    let interval = in_range(
        &interval_secs,
        &format!("{p}.interval_secs"),
        1..=3600,
        problems,
    );
    let timeout = match &timeout_secs {
        None => DEFAULT_TIMEOUT_SECS.min(interval),
        Some(timeout_secs) => {
            let timeout = in_range(
                timeout_secs,
                &format!("{p}.timeout_secs"),
                1..=3600,
                problems,
            );
            if timeout > interval {
                problems.at(
                    timeout_secs.referenced,
                    &format!("{p}.timeout_secs"),
                    format!("must not exceed interval_secs ({interval}), got {timeout}"),
                );
            }
            timeout
        }
    };
    let body_limit_bytes = size(
        &body_limit_bytes,
        &format!("{p}.body_limit_bytes"),
        KIB..=1024 * MIB,
        problems,
    );
    let in_flight = match &max_body_bytes_in_flight {
        None => DEFAULT_MAX_BODY_BYTES_IN_FLIGHT.max(body_limit_bytes),
        Some(set) => {
            let in_flight = usize::try_from(set.value).unwrap_or(usize::MAX);
            if in_flight != 0 && in_flight < body_limit_bytes {
                problems.at(
                    set.referenced,
                    &format!("{p}.max_body_bytes_in_flight"),
                    format!(
                        "must be 0 (no budget) or at least body_limit_bytes ({body_limit_bytes}), got {in_flight}"
                    ),
                );
            }
            in_flight
        }
    };
    ScrapeConfig {
        interval: Duration::from_secs(interval),
        timeout: Duration::from_secs(timeout),
        body_limit_bytes,
        sample_limit: usize::try_from(sample_limit.value).unwrap_or(usize::MAX),
        max_series: usize::try_from(max_series.value).unwrap_or(usize::MAX),
        max_body_bytes_in_flight: in_flight,
        pods,
        kubelet,
        self_metrics: self_metrics.value,
        static_targets: static_targets
            .into_iter()
            .enumerate()
            .filter_map(|(i, t)| super::static_targets::convert_static(i, t, context, problems))
            .collect(),
        metric_relabel: convert_rules(
            "metrics.scrape.metric_relabel_configs",
            metric_relabel_configs,
            problems,
        ),
        pods_relabel,
        kubelet_relabel,
        external_labels: Vec::new(),
    }
}

/// Labels to add to every sample of a target, checked: a label name, not `__*`, not
/// `job`, `instance` or `node` (the agent sets those; `why` says how); empty values
/// are left out.
pub(super) fn checked_labels(
    raw: BTreeMap<String, Spanned<String>>,
    key: &str,
    why: &str,
    problems: &mut Problems<'_>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, value) in raw {
        let at = format!("{key}.{name}");
        if !valid_label_name(&name) || name.starts_with("__") {
            problems.at(
                value.referenced,
                &at,
                format!("`{name}` is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not __*)"),
            );
        } else if ["job", "instance", "node"].contains(&name.as_str()) {
            problems.at(
                value.referenced,
                &at,
                format!("`{name}` is set by the agent {why}"),
            );
        } else if !value.value.is_empty() {
            out.push((name, value.value));
        }
    }
    out
}

/// `metrics.external_labels`: label names checked (not `__*`, not `job`, `instance`
/// or `node`, which every target has); an empty value drops the label.
pub(super) fn convert_external_labels(
    raw: Option<BTreeMap<String, Spanned<String>>>,
    cluster: &str,
    problems: &mut Problems<'_>,
) -> Vec<(String, String)> {
    let Some(raw) = raw else {
        return vec![("cluster".to_owned(), cluster.to_owned())];
    };
    checked_labels(raw, "metrics.external_labels", "on every target", problems)
}

pub(super) fn auth(
    token: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
    skip: &Spanned<bool>,
    prefix: &str,
    context: &Context<'_>,
    problems: &mut Problems<'_>,
) -> TargetAuth {
    TargetAuth {
        bearer_token_file: token.map(|t| {
            path(
                &t,
                &format!("{prefix}.bearer_token_file"),
                context,
                problems,
            )
        }),
        ca_file: ca.map(|c| path(&c, &format!("{prefix}.ca_file"), context, problems)),
        insecure_skip_verify: skip.value,
    }
}

fn convert_pods(
    raw: RawPods,
    context: &Context<'_>,
    problems: &mut Problems<'_>,
) -> (PodsConfig, Vec<Rule>) {
    let RawPods {
        enabled,
        job,
        labels,
        bearer_token_file,
        ca_file,
        insecure_skip_verify,
        max_sample_limit,
        metric_relabel_configs,
    } = raw;
    let p = "metrics.scrape.pods";
    let mut named: Vec<(String, String)> = Vec::new();
    for (i, key) in labels.iter().enumerate() {
        let item = format!("{p}.labels[{i}]");
        let name = label_name_of(key.value.trim());
        let problem = if key.value.trim().is_empty() {
            Some("must not be empty".to_owned())
        } else if RESERVED.contains(&name.as_str()) || name.starts_with("__") {
            Some(format!(
                "`{}` would become the label `{name}`, which the agent sets itself",
                key.value
            ))
        } else if let Some((other, _)) = named.iter().find(|(_, n)| *n == name) {
            Some(format!(
                "`{}` and `{other}` would both become the label `{name}`",
                key.value
            ))
        } else {
            None
        };
        match problem {
            Some(message) => problems.at(key.referenced, &item, message),
            None => named.push((key.value.trim().to_owned(), name)),
        }
    }
    let pods = PodsConfig {
        enabled: enabled.value,
        job: non_empty(&job, &format!("{p}.job"), problems),
        labels: named,
        auth: auth(
            bearer_token_file,
            ca_file,
            &insecure_skip_verify,
            p,
            context,
            problems,
        ),
        max_sample_limit: usize::try_from(max_sample_limit.value).unwrap_or(usize::MAX),
    };
    let rules = convert_rules(
        &format!("{p}.metric_relabel_configs"),
        metric_relabel_configs,
        problems,
    );
    (pods, rules)
}

fn convert_kubelet(
    raw: RawKubelet,
    context: &Context<'_>,
    problems: &mut Problems<'_>,
) -> (KubeletConfig, Vec<Rule>) {
    let RawKubelet {
        enabled,
        address,
        port,
        ca_file,
        token_file,
        insecure_skip_verify,
        metric_relabel_configs,
    } = raw;
    let p = "metrics.scrape.kubelet";
    let address = match address {
        Some(a) => Some(non_empty(&a, &format!("{p}.address"), problems)),
        None => context.env_non_empty("NODE_IP"),
    };
    let port = in_range(&port, &format!("{p}.port"), 1..=65535, problems);
    let rules = convert_rules(
        &format!("{p}.metric_relabel_configs"),
        metric_relabel_configs,
        problems,
    );
    let kubelet = KubeletConfig {
        enabled: enabled.value,
        address,
        port: u16::try_from(port).unwrap_or(10250),
        auth: TargetAuth {
            bearer_token_file: Some(path(
                &token_file,
                &format!("{p}.token_file"),
                context,
                problems,
            )),
            ca_file: Some(path(&ca_file, &format!("{p}.ca_file"), context, problems)),
            insecure_skip_verify: insecure_skip_verify.value,
        },
    };
    (kubelet, rules)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, ConfigError, load_with};
    use crate::metrics::relabel::Action;

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = |name: &str| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        };
        load_with(
            text,
            Path::new("/etc/kubeship/kubeship.yaml"),
            &env,
            &|| Some("host-1".to_owned()),
        )
    }

    fn scrape(text: &str, vars: &[(&str, &str)]) -> ScrapeConfig {
        let c = load(text, vars).unwrap_or_else(|e| panic!("expected a valid config:\n{e}"));
        c.metrics.expect("the metrics section").scrape
    }

    fn problems(text: &str) -> Vec<String> {
        match load(text, &[]) {
            Ok(_) => panic!("expected problems"),
            Err(e) => e.problems().iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn an_empty_section_yields_every_default() {
        let ScrapeConfig {
            interval,
            timeout,
            body_limit_bytes,
            sample_limit,
            max_series,
            max_body_bytes_in_flight,
            pods,
            kubelet,
            self_metrics,
            static_targets,
            metric_relabel,
            pods_relabel,
            kubelet_relabel,
            external_labels,
        } = scrape("cluster: x\nmetrics: {}\n", &[]);
        assert_eq!(max_series, 1_000_000);
        assert_eq!(max_body_bytes_in_flight, 64 << 20);
        assert!(pods_relabel.is_empty() && kubelet_relabel.is_empty());
        assert_eq!(external_labels, [("cluster".to_string(), "x".to_string())]);
        assert_eq!(interval, Duration::from_secs(30));
        assert_eq!(timeout, Duration::from_secs(10));
        assert_eq!(body_limit_bytes, 16 << 20);
        assert_eq!(sample_limit, 0);
        assert_eq!(
            pods,
            PodsConfig {
                enabled: true,
                job: "kubernetes-pods".into(),
                labels: vec![],
                auth: TargetAuth::default(),
                max_sample_limit: 200_000,
            }
        );
        assert_eq!(
            kubelet,
            KubeletConfig {
                enabled: true,
                address: None,
                port: 10250,
                auth: TargetAuth {
                    bearer_token_file: Some(format!("{SA_DIR}/token").into()),
                    ca_file: Some(format!("{SA_DIR}/ca.crt").into()),
                    insecure_skip_verify: false,
                },
            }
        );
        assert!(self_metrics);
        assert!(static_targets.is_empty() && metric_relabel.is_empty());
        let with_ip = scrape("cluster: x\nmetrics: {}\n", &[("NODE_IP", "10.0.1.7")]);
        assert_eq!(with_ip.kubelet.address.as_deref(), Some("10.0.1.7"));
        assert!(
            load("cluster: x\n", &[]).unwrap().metrics.is_none(),
            "off without the section"
        );
    }

    #[test]
    fn settings_targets_and_rules_convert() {
        let s = scrape(
            "cluster: x\nmetrics:\n  scrape:\n    interval_secs: 15\n    timeout_secs: 15\n    \
             sample_limit: 5000\n    pods:\n      job: pods\n      labels: [app.kubernetes.io/name, team]\n    \
             kubelet: {address: 127.0.0.1, port: 10443, insecure_skip_verify: true, token_file: tok}\n    \
             static_targets:\n      - url: http://127.0.0.1:9100\n        labels: {env: prod}\n        \
             interval_secs: 5\n        bearer_token_file: /t\n      - url: https://h/m?x=1\n        job: h\n    \
             metric_relabel_configs:\n      - {source_labels: [__name__], regex: 'go_.*', action: drop}\n      \
             - {source_labels: [a, b], separator: '-', target_label: c, replacement: '$1!'}\n      \
             - {regex: 'tmp_.*', action: labeldrop}\n",
            &[],
        );
        assert_eq!(s.interval, Duration::from_secs(15));
        assert_eq!(s.sample_limit, 5000);
        assert_eq!(s.pods.job, "pods");
        assert_eq!(
            s.pods.labels,
            [
                (
                    "app.kubernetes.io/name".to_string(),
                    "app_kubernetes_io_name".to_string()
                ),
                ("team".to_string(), "team".to_string())
            ]
        );
        assert_eq!(s.kubelet.address.as_deref(), Some("127.0.0.1"));
        assert_eq!(s.kubelet.port, 10443);
        assert!(s.kubelet.auth.insecure_skip_verify);
        assert_eq!(
            s.kubelet.auth.bearer_token_file.as_deref(),
            Some(Path::new("/etc/kubeship/tok")),
            "relative to the config file"
        );
        let [a, b] = &s.static_targets[..] else {
            panic!("two static targets: {:?}", s.static_targets)
        };
        assert_eq!(
            a.source,
            StaticSource::Url(Uri::from_static("http://127.0.0.1:9100/metrics"))
        );
        assert_eq!(
            (a.job.as_str(), a.interval),
            ("static", Some(Duration::from_secs(5)))
        );
        assert_eq!(a.labels, [("env".to_string(), "prod".to_string())]);
        assert_eq!(a.auth.bearer_token_file.as_deref(), Some(Path::new("/t")));
        assert_eq!(
            b.source,
            StaticSource::Url(Uri::from_static("https://h/m?x=1"))
        );
        assert_eq!(b.job, "h");
        let actions: Vec<Action> = s.metric_relabel.iter().map(|r| r.action).collect();
        assert_eq!(actions, [Action::Drop, Action::Replace, Action::LabelDrop]);
        assert_eq!(s.metric_relabel[1].separator, "-");
        assert_eq!(s.metric_relabel[1].replacement, "$1!");
        assert!(s.metric_relabel[0].regex.is_match("go_gc"));
        assert!(!s.metric_relabel[0].regex.is_match("x_go_gc"), "anchored");
    }

    #[test]
    fn the_body_budget_is_none_or_at_least_one_body() {
        let s = |text: &str| {
            scrape(&format!("cluster: x\nmetrics:\n  scrape:\n{text}"), &[])
                .max_body_bytes_in_flight
        };
        assert_eq!(s("    max_body_bytes_in_flight: 0\n"), 0);
        assert_eq!(
            s("    body_limit_bytes: 134217728\n"),
            128 << 20,
            "unset, at least one body"
        );
        assert_eq!(
            s("    body_limit_bytes: 1024\n    max_body_bytes_in_flight: 1024\n"),
            1024
        );
        let found =
            problems("cluster: x\nmetrics:\n  scrape:\n    max_body_bytes_in_flight: 1048576\n");
        assert_eq!(
            found,
            [
                "4:31: metrics.scrape.max_body_bytes_in_flight: must be 0 (no budget) or at least body_limit_bytes (16777216), got 1048576"
            ]
        );
    }

    #[test]
    fn external_labels_replace_the_cluster_default() {
        let s = scrape(
            "cluster: x\nmetrics:\n  external_labels: {region: eu, cluster: ''}\n",
            &[],
        );
        assert_eq!(
            s.external_labels,
            [("region".to_string(), "eu".to_string())],
            "an empty value drops the label"
        );
        let found = problems("cluster: x\nmetrics:\n  external_labels: {job: a, __x: b}\n");
        assert_eq!(
            found,
            [
                "3:26: metrics.external_labels.job: `job` is set by the agent on every target",
                "3:34: metrics.external_labels.__x: `__x` is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not __*)",
            ]
        );
    }

    #[test]
    fn each_group_has_its_relabeling_rules_checked_at_their_place() {
        let s = scrape(
            "cluster: x\nmetrics:\n  scrape:\n    pods:\n      metric_relabel_configs: \
             [{action: labeldrop, regex: pod_template_hash}]\n    kubelet:\n      \
             metric_relabel_configs: [{source_labels: [__name__], regex: 'container_(fs|network)_.*', \
             action: drop}, {action: keep, source_labels: [__name__], regex: '.*'}]\n",
            &[],
        );
        assert_eq!(s.pods_relabel.len(), 1);
        assert_eq!(s.kubelet_relabel.len(), 2);
        assert!(s.metric_relabel.is_empty());
        let found = problems(
            "cluster: x\nmetrics:\n  scrape:\n    kubelet:\n      metric_relabel_configs: \
             [{action: nope}]\n    static_targets:\n      - url: http://h\n        \
             metric_relabel_configs: [{regex: '(', source_labels: [a]}]\n",
        );
        assert_eq!(
            found,
            [
                "5:41: metrics.scrape.kubelet.metric_relabel_configs[0].action: must be one of \
                 replace, keep, drop, labeldrop, labelkeep, got `nope`",
                "8:34: metrics.scrape.static_targets[0].metric_relabel_configs[0].target_label: \
                 is required for `replace`",
                "8:42: metrics.scrape.static_targets[0].metric_relabel_configs[0].regex: invalid \
                 regex `(`: unclosed group",
            ]
        );
    }

    #[test]
    fn a_file_target_and_the_timeout_default() {
        let s = scrape(
            "cluster: x\nmetrics:\n  scrape:\n    interval_secs: 2\n    static_targets:\n      \
             - {file: ./m/app.prom, job: app}\n",
            &[],
        );
        assert_eq!(
            s.static_targets[0].source,
            StaticSource::File("/etc/kubeship/m/app.prom".into()),
            "relative to the config file"
        );
        assert_eq!(
            s.timeout,
            Duration::from_secs(2),
            "the default capped at the interval"
        );
        assert_eq!(
            scrape("cluster: x\nmetrics: {}\n", &[]).timeout,
            Duration::from_secs(10)
        );
        let found = problems(
            "cluster: x\nmetrics:\n  scrape:\n    static_targets:\n      \
             - {url: 'http://h', file: ./f}\n      - {file: ''}\n",
        );
        assert_eq!(
            found,
            [
                "5:33: metrics.scrape.static_targets[0].file: only one of `url` and `file`",
                "6:16: metrics.scrape.static_targets[1].file: must not be empty",
            ]
        );
    }

    #[test]
    fn bad_values_are_reported_with_their_place() {
        let found = problems(
            "cluster: x\nmetrics:\n  scrape:\n    interval_secs: 5\n    timeout_secs: 6\n    \
             body_limit_bytes: 10\n    pods:\n      labels: [job, a.b, a_b, '']\n    \
             kubelet: {port: 0}\n    static_targets:\n      - url: ftp://x\n      \
             - labels: {instance: i, 1x: y}\n    metric_relabel_configs:\n      \
             - {action: hashmod, source_labels: [a]}\n      - {regex: '(', source_labels: [a], action: drop}\n      \
             - {source_labels: [a]}\n      - {action: labeldrop, source_labels: [a], regex: x}\n      \
             - {action: keep, regex: x}\n      - {action: keep, source_labels: [a], target_label: b}\n    \
             bogus: 1\n",
        );
        let want = [
            "5:19: metrics.scrape.timeout_secs: must not exceed interval_secs (5), got 6",
            "6:23: metrics.scrape.body_limit_bytes: must be between 1024 and",
            "8:16: metrics.scrape.pods.labels[0]: `job` would become the label `job`",
            "8:26: metrics.scrape.pods.labels[2]: `a_b` and `a.b` would both become",
            "8:31: metrics.scrape.pods.labels[3]: must not be empty",
            "9:21: metrics.scrape.kubelet.port: must be between 1 and 65535, got 0",
            "11:14: metrics.scrape.static_targets[0].url: `ftp://x` must start with http",
            "12:9: metrics.scrape.static_targets[1].url: is required",
            "12:28: metrics.scrape.static_targets[1].labels.instance: `instance` is set by",
            "12:35: metrics.scrape.static_targets[1].labels.1x: `1x` is not a label name",
            "14:18: metrics.scrape.metric_relabel_configs[0].action: must be one of replace, keep",
            "15:17: metrics.scrape.metric_relabel_configs[1].regex: invalid regex `(`: unclosed group",
            "16:9: metrics.scrape.metric_relabel_configs[2].target_label: is required for `replace`",
            "17:9: metrics.scrape.metric_relabel_configs[3].source_labels: `labeldrop` matches",
            "18:9: metrics.scrape.metric_relabel_configs[4].source_labels: `keep` needs",
            "19:58: metrics.scrape.metric_relabel_configs[5].target_label: is only for `replace`",
            "20:5: metrics.scrape.bogus: unknown key `bogus`",
        ];
        assert_eq!(found.len(), want.len(), "{found:#?}");
        for (f, w) in found.iter().zip(want) {
            assert!(
                f.starts_with(w),
                "expected {w:?}, got {f:?}\nall: {found:#?}"
            );
        }
    }

    #[test]
    fn label_names_of_pod_label_keys() {
        assert_eq!(
            label_name_of("app.kubernetes.io/name"),
            "app_kubernetes_io_name"
        );
        assert_eq!(label_name_of("9lives"), "_9lives");
        assert_eq!(label_name_of("team"), "team");
    }
}
