//! Agent configuration: loading, env expansion, validation.
//!
//! [`load_file`] (or [`load_str`]) turns the YAML config file into a validated
//! [`Config`] before anything starts. Steps:
//!
//! 1. `${NAME}` / `${NAME:-default}` / `$${` expansion on the raw text
//!    (`expand.rs`), keeping line numbers and mapping columns back;
//! 2. YAML parsing into the `raw` structs (serde-saphyr, with `Spanned` values),
//!    collecting unknown keys with `serde_ignored` rather than stopping;
//! 3. conversion into [`Config`] (`validate`), which checks every value.
//!
//! Every problem found is reported at once in a [`ConfigError`], each with the
//! file, line and column, and the dotted key path (`logs.multiline[0].rule`).
//! A YAML syntax error or a value of the wrong type (a list where a number is
//! expected) stops parsing, so it is reported together with only the problems
//! found before it (failed env references, unknown keys seen so far).
//!
//! Relative paths in the file (`state_dir`, `logs.containers_dir`, `logs.pods_dir`,
//! `output.local.dir`) are resolved against the config file's directory.
//! Environment lookups go through an injected function; only [`load_file`]
//! reads the process environment.
//!
//! What this module does not do: it does not watch or reload the file, create
//! directories or check that paths exist (the components using them do), or
//! apply the log level (it only checks its syntax).

mod cloudwatch;
mod expand;
mod kubernetes;
mod logs;
mod metrics;
mod raw;
mod relabel;
mod remote_write;
mod scrape;
mod sections;
mod static_targets;
mod tree;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::logs::route;

pub use cloudwatch::CloudWatchConfig;
pub use kubernetes::{KubeSource, KubernetesConfig};
pub use metrics::MetricsConfig;
pub use remote_write::{Auth, MetricsSinkConfig, RemoteWriteConfig};
pub use scrape::{ScrapeConfig, StaticSource, TargetAuth};

/// The validated agent configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `cluster`; required unless env `CLUSTER_NAME` is set.
    pub cluster: String,
    /// `node_name`; default: env `NODE_NAME`, else the machine hostname, else "unknown".
    pub node_name: String,
    /// `state_dir`; default `/var/lib/kubeship`.
    pub state_dir: PathBuf,
    /// `shutdown_timeout_secs`, default 25, 1..=3600.
    pub shutdown_timeout: Duration,
    /// `logs:`.
    pub logs: LogsConfig,
    /// `pipeline:`.
    pub pipeline: PipelineConfig,
    /// `output:`.
    pub output: OutputConfig,
    /// `telemetry:`.
    pub telemetry: TelemetryConfig,
    /// `kubernetes:`.
    pub kubernetes: KubernetesConfig,
    /// `metrics:`; `None` (the metrics pipeline off) when the section is absent.
    pub metrics: Option<MetricsConfig>,
}

/// `logs:` — which files to tail and how.
#[derive(Debug, Clone)]
pub struct LogsConfig {
    /// Default `/var/log/containers`.
    pub containers_dir: PathBuf,
    /// `pods_dir`: the kubelet's per-pod log directories; a link in
    /// `containers_dir` is followed only to a file inside it. Default: the `pods`
    /// directory beside `containers_dir` (`/var/log/pods`).
    pub pods_dir: PathBuf,
    /// Globs matched against the file NAME in `containers_dir`; default `["*.log"]`.
    pub include: globset::GlobSet,
    /// Default `[]`.
    pub exclude: globset::GlobSet,
    /// Default [`ReadFrom::Beginning`].
    pub read_from: ReadFrom,
    /// Default 262144, 1024..=1048550.
    pub max_record_bytes: usize,
    /// Default 262144, 4096..=16 MiB.
    pub read_buffer_bytes: usize,
    /// `poll_interval_ms`, default 500, 10..=10000.
    pub poll_interval: Duration,
    /// `rescan_interval_secs`, default 10, 1..=3600.
    pub rescan_interval: Duration,
    /// `rotate_wait_secs`, default 5, 1..=3600.
    pub rotate_wait: Duration,
    /// `eof_flush_ms`: how long an unterminated last line of a live file waits
    /// for its newline; default 5000, 1..=600000.
    pub eof_flush: Duration,
    /// The agent's own pod, whose logs are not tailed. From `self_pod:
    /// {namespace, name}`; when absent, from env `POD_NAMESPACE` + `POD_NAME`
    /// if both are set; `self_pod: null` disables it.
    pub exclude_self: Option<PodRef>,
    /// First match wins.
    pub multiline: Vec<MultilineSelector>,
    /// `multiline_rules`, by name (also what a pod's `kubeship.io/multiline`
    /// annotation may name).
    pub multiline_rules: BTreeMap<String, regex::bytes::Regex>,
    /// `parsers`: regexes by name, for a pod's `kubeship.io/parser: regex:<name>`.
    pub parsers: BTreeMap<String, regex::bytes::Regex>,
}

impl LogsConfig {
    /// The multiline rule called `name`: `java`, `python`, `go` or a
    /// `multiline_rules` entry (what a `kubeship.io/multiline` annotation names).
    pub fn multiline_rule(&self, name: &str) -> Option<MultilineRule> {
        logs::named_rule(name, &self.multiline_rules)
    }
}

/// Where to start reading a file the agent has no checkpoint for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// `beginning`: ship the file's existing content.
    Beginning,
    /// `end`: skip it. Applies only to files present at the agent's very first
    /// start (no checkpoint file, or one set aside as unreadable); files appearing
    /// later are read from the beginning.
    End,
}

/// A pod, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
}

/// Which containers get which multiline rule.
#[derive(Debug, Clone)]
pub struct MultilineSelector {
    /// Glob on the pod's namespace; default `*`.
    pub namespace: globset::GlobMatcher,
    /// Glob on the pod's name; default `*`.
    pub pod: globset::GlobMatcher,
    /// Glob on the container's name; default `*`.
    pub container: globset::GlobMatcher,
    /// How records start.
    pub rule: MultilineRule,
    /// `flush_timeout_ms`, default 1000, 1..=600000.
    pub flush_timeout: Duration,
}

impl MultilineSelector {
    /// Whether this selector applies to the container.
    pub fn matches(&self, namespace: &str, pod: &str, container: &str) -> bool {
        self.namespace.is_match(namespace)
            && self.pod.is_match(pod)
            && self.container.is_match(container)
    }
}

/// How a multiline record is recognised (`java`, `python`, `go`, or a custom start
/// pattern): the parsers' rule itself.
pub use kubeship_parsers::Rule as MultilineRule;

/// `pipeline:` — batching and back-pressure.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Default 512 KiB, 4096..=8 MiB.
    pub batch_max_bytes: usize,
    /// Default 10000, 1..=10000.
    pub batch_max_records: usize,
    /// `batch_timeout_ms`, default 1000, 1..=60000.
    pub batch_timeout: Duration,
    /// Default 8, 1..=1024.
    pub channel_batches: usize,
    /// Default 8 MiB, or `2 * batch_max_bytes` when larger; at least that.
    pub max_inflight_bytes: usize,
    /// `checkpoint_interval_ms`, default 200, 10..=600000: the checkpoint file is
    /// written this long after an acknowledgement at most (writes are coalesced).
    pub checkpoint_interval: Duration,
    /// `stuck_after_secs`, default 120, 1..=86400: a batch unacknowledged this long
    /// makes the sink "stuck" (logged, `/readyz` 503).
    pub stuck_after: Duration,
}

/// `output:` — naming and the sink.
#[derive(Debug, Clone)]
pub struct OutputConfig {
    /// Default `/aws/containerinsights/{cluster}/application`.
    pub group: route::Template,
    /// Default `{pod}_{namespace}_{container}`.
    pub stream: route::Template,
    /// `event`: what one event holds; default [`EventFormat::Record`].
    pub event: EventFormat,
    /// Where records go.
    pub sink: SinkConfig,
}

/// What one CloudWatch event (and one local sink entry) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFormat {
    /// `record`: the whole record as JSON (`log`, `stream`, `time`,
    /// `log_processed`, `kubernetes`).
    Record,
    /// `log`: only the log text (as Fluent Bit's `log_key log`): an app's own
    /// JSON lines stay JSON for Logs Insights; the event's timestamp keeps the time.
    Log,
}

/// Exactly one sink. `local` is the default when no other is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkConfig {
    /// `output.local`: files in a local directory.
    Local {
        /// `output.local.dir`, default `<state_dir>/local-sink`.
        dir: PathBuf,
    },
    /// `output.cloudwatch`: AWS CloudWatch Logs.
    CloudWatch(CloudWatchConfig),
}

/// `telemetry:` — the agent's own metrics endpoint and logs.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `listen_addr`, default `0.0.0.0:2020`; `off` or `null` disables.
    pub listen: Option<SocketAddr>,
    /// Default [`LogFormat::Json`].
    pub log_format: LogFormat,
    /// Default `info`; a level or `target=level` list (syntax-checked only).
    pub log_level: String,
}

/// Format of the agent's own logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `json`: one JSON object per line.
    Json,
    /// `text`: human-readable lines.
    Text,
}

/// One thing wrong with the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based; `None` when the problem is not tied to a place in the file
    /// (e.g. a required key that is missing).
    pub line: Option<usize>,
    /// 1-based, in characters; `None` exactly when `line` is.
    pub column: Option<usize>,
    /// Dotted key path, e.g. `logs.multiline[0].rule`; empty when unknown.
    pub path: String,
    /// What is wrong, e.g. "must be between 1 and 1024, got 0".
    pub message: String,
}

impl fmt::Display for Problem {
    /// `LINE:COL: key.path: message`, leaving out what is unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "{line}:")?;
            if let Some(column) = self.column {
                write!(f, "{column}:")?;
            }
            f.write_str(" ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// All problems found in a config file. Display prints one per line as
/// `FILE:LINE:COL: key.path: message`.
#[derive(Debug, Clone)]
pub struct ConfigError {
    origin: PathBuf,
    problems: Vec<Problem>,
}

impl ConfigError {
    /// Never empty.
    #[cfg(test)]
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The config file the problems are about.
    #[cfg(test)]
    pub fn origin(&self) -> &Path {
        &self.origin
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            let separator = if problem.line.is_some() { ":" } else { ": " };
            write!(f, "{}{separator}{problem}", self.origin.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates the config file, using the process environment.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
        origin: path.to_path_buf(),
        problems: vec![Problem {
            line: None,
            column: None,
            path: String::new(),
            message: format!("cannot read the config file: {err}"),
        }],
    })?;
    load_str(&text, path, &|name| std::env::var(name).ok())
}

/// Validates config `text`. `origin` is the config file's path, used in
/// messages and as the base of relative paths; `env` looks variables up.
pub fn load_str(
    text: &str,
    origin: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    load_with(text, origin, env, &machine_hostname)
}

/// [`load_str`] with the hostname lookup injected too.
fn load_with(
    text: &str,
    origin: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    hostname: &dyn Fn() -> Option<String>,
) -> Result<Config, ConfigError> {
    let expanded = expand::expand(text, env);
    let mut problems = validate::Problems::new(&expanded.columns);
    let base_dir = base_dir(origin);
    let context = validate::Context {
        base_dir: &base_dir,
        env,
        hostname,
    };
    let config = validate::parse(&expanded, &context, &mut problems);
    let problems = problems.finish();
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(ConfigError {
            origin: origin.to_path_buf(),
            problems,
        }),
    }
}

/// The directory relative paths are resolved against.
fn base_dir(origin: &Path) -> PathBuf {
    let origin = std::path::absolute(origin).unwrap_or_else(|_| origin.to_path_buf());
    origin.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The machine's hostname, from the kernel or `/etc/hostname`.
fn machine_hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|file| {
            let name = std::fs::read_to_string(file).ok()?;
            let name = name.trim();
            (!name.is_empty()).then(|| name.to_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "/etc/kubeship/kubeship.yaml";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn host() -> Option<String> {
        Some("host-1".to_owned())
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        load_with(text, Path::new(ORIGIN), &no_env, &host)
    }

    fn load_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = |name: &str| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        };
        load_with(text, Path::new(ORIGIN), &env, &host)
    }

    fn ok(text: &str) -> Config {
        load(text).unwrap_or_else(|err| panic!("expected a valid config, got:\n{err}"))
    }

    /// The problems, each rendered `LINE:COL: path: message`.
    fn problems(text: &str) -> Vec<String> {
        problems_of(load(text))
    }

    fn problems_of(result: Result<Config, ConfigError>) -> Vec<String> {
        match result {
            Ok(_) => panic!("expected problems, the config is valid"),
            Err(err) => err.problems().iter().map(ToString::to_string).collect(),
        }
    }

    fn assert_one(text: &str, expected_prefix: &str) {
        let found = problems(text);
        assert!(
            found.len() == 1 && found[0].starts_with(expected_prefix),
            "expected one problem starting with {expected_prefix:?}, got {found:#?}"
        );
    }

    #[test]
    fn minimal_config_yields_every_default() {
        let config = ok("cluster: x\n");
        let Config {
            cluster,
            node_name,
            state_dir,
            shutdown_timeout,
            logs,
            pipeline,
            output,
            telemetry,
            kubernetes,
            metrics,
        } = config;
        assert!(
            metrics.is_none(),
            "the metrics pipeline is off without its section"
        );
        assert_eq!(cluster, "x");
        assert_eq!(node_name, "host-1");
        assert_eq!(state_dir, PathBuf::from("/var/lib/kubeship"));
        assert_eq!(shutdown_timeout, Duration::from_secs(25));

        let LogsConfig {
            containers_dir,
            pods_dir,
            include,
            exclude,
            read_from,
            max_record_bytes,
            read_buffer_bytes,
            poll_interval,
            rescan_interval,
            rotate_wait,
            eof_flush,
            exclude_self,
            multiline,
            multiline_rules,
            parsers,
        } = logs;
        assert_eq!(containers_dir, PathBuf::from("/var/log/containers"));
        assert_eq!(pods_dir, PathBuf::from("/var/log/pods"));
        assert_eq!(include.len(), 1);
        assert!(include.is_match("web_default_nginx-0123.log"));
        assert!(!include.is_match("web_default_nginx-0123.log.gz"));
        assert!(exclude.is_empty());
        assert_eq!(read_from, ReadFrom::Beginning);
        assert_eq!(max_record_bytes, 262_144);
        assert_eq!(read_buffer_bytes, 262_144);
        assert_eq!(poll_interval, Duration::from_millis(500));
        assert_eq!(rescan_interval, Duration::from_secs(10));
        assert_eq!(rotate_wait, Duration::from_secs(5));
        assert_eq!(eof_flush, Duration::from_millis(5000));
        assert_eq!(exclude_self, None);
        assert!(multiline.is_empty());
        assert!(multiline_rules.is_empty() && parsers.is_empty());

        let PipelineConfig {
            batch_max_bytes,
            batch_max_records,
            batch_timeout,
            channel_batches,
            max_inflight_bytes,
            checkpoint_interval,
            stuck_after,
        } = pipeline;
        assert_eq!(batch_max_bytes, 524_288);
        assert_eq!(batch_max_records, 10_000);
        assert_eq!(batch_timeout, Duration::from_millis(1000));
        assert_eq!(channel_batches, 8);
        assert_eq!(max_inflight_bytes, 8_388_608);
        assert_eq!(checkpoint_interval, Duration::from_millis(200));
        assert_eq!(stuck_after, Duration::from_secs(120));

        let OutputConfig {
            group,
            stream,
            event,
            sink,
        } = output;
        assert_eq!(event, EventFormat::Record);
        assert_eq!(
            group.source(),
            "/aws/containerinsights/{cluster}/application"
        );
        assert_eq!(stream.source(), "{pod}_{namespace}_{container}");
        assert_eq!(
            sink,
            SinkConfig::Local {
                dir: PathBuf::from("/var/lib/kubeship/local-sink")
            }
        );

        let TelemetryConfig {
            listen,
            log_format,
            log_level,
        } = telemetry;
        assert_eq!(listen, Some("0.0.0.0:2020".parse().unwrap()));
        assert_eq!(log_format, LogFormat::Json);
        assert_eq!(log_level, "info");

        // Outside a pod and without a kubeconfig, `auto` means off.
        assert_eq!(
            kubernetes,
            KubernetesConfig {
                source: None,
                metadata_wait: Duration::from_millis(2000),
                deleted_pod_grace: Duration::from_secs(300),
                labels: true,
                annotations: vec![],
                namespace_labels: false,
            }
        );
    }

    #[test]
    fn kubernetes_source_follows_enabled_and_the_environment() {
        let in_pod = [("KUBERNETES_SERVICE_HOST", "10.100.0.1")];
        let c = load_env(
            "cluster: x
",
            &in_pod,
        )
        .unwrap();
        assert_eq!(c.kubernetes.source, Some(KubeSource::InCluster));
        let c = load_env(
            "cluster: x
kubernetes: {enabled: false}
",
            &in_pod,
        )
        .unwrap();
        assert_eq!(c.kubernetes.source, None);
        let c = ok("cluster: x
kubernetes: {kubeconfig: ./kc}
");
        assert_eq!(
            c.kubernetes.source,
            Some(KubeSource::Kubeconfig(PathBuf::from("/etc/kubeship/kc")))
        );
        assert_one(
            "cluster: x
kubernetes: {enabled: true}
",
            "2:23: kubernetes.enabled: is true, but there is no service account",
        );
        assert_one(
            "cluster: x
kubernetes: {enabled: maybe}
",
            "2:23: kubernetes.enabled: must be true, false or `auto`, got `maybe`",
        );
    }

    #[test]
    fn output_event_is_record_or_log() {
        let c = ok("cluster: x\noutput: {event: log}\n");
        assert_eq!(c.output.event, EventFormat::Log);
        assert_one(
            "cluster: x\noutput: {event: json}\n",
            "2:17: output.event: must be `record` or `log`, got `json`",
        );
    }

    #[test]
    fn kubernetes_values_are_checked() {
        let found = problems(
            r#"cluster: x
kubernetes:
  metadata_wait_ms: 60001
  deleted_pod_grace_secs: 86401
  annotations: ["a/*", "", "b*c", "exact"]
"#,
        );
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(
            found[0].starts_with("3:21: kubernetes.metadata_wait_ms: must be between 0 and 60000")
        );
        assert!(found[1].starts_with("4:27: kubernetes.deleted_pod_grace_secs"));
        assert!(found[2].contains("kubernetes.annotations[1]"), "{found:#?}");
        assert!(found[3].contains("kubernetes.annotations[2]"), "{found:#?}");
        let c = ok(r#"cluster: x
kubernetes: {annotations: ["team.io/*", owner]}
"#);
        assert!(c.kubernetes.keeps_annotation("team.io/cost-center"));
        assert!(c.kubernetes.keeps_annotation("owner"));
        assert!(!c.kubernetes.keeps_annotation("owner2"));
    }

    #[test]
    fn regex_parsers_need_a_name_and_a_named_group() {
        let found = problems(
            r"cluster: x
logs:
  parsers:
    - {name: a, regex: '(?P<x>\d+)'}
    - {name: a, regex: '(?P<y>.)'}
    - {name: b, regex: '\d+'}
    - {regex: '(?P<z>.)'}
",
        );
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(found[0].contains("duplicate parser name `a`"), "{found:#?}");
        assert!(
            found[1].contains("has no named capture group"),
            "{found:#?}"
        );
        assert!(
            found[2].contains("logs.parsers[3].name: is required"),
            "{found:#?}"
        );
    }

    #[test]
    fn empty_sections_take_defaults() {
        let config = ok("cluster: x\nlogs:\npipeline: {}\noutput:\n  local:\ntelemetry:\n");
        assert_eq!(config.logs.max_record_bytes, 262_144);
        assert_eq!(config.pipeline.channel_batches, 8);
        assert_eq!(
            config.output.sink,
            SinkConfig::Local {
                dir: PathBuf::from("/var/lib/kubeship/local-sink")
            }
        );
        assert_eq!(config.telemetry.log_format, LogFormat::Json);
    }

    #[test]
    fn cluster_is_required_unless_in_the_environment() {
        let found = problems("");
        assert_eq!(
            found,
            vec!["cluster: is required: set `cluster:` or the CLUSTER_NAME environment variable"]
        );
        let config = load_env("# nothing\n", &[("CLUSTER_NAME", "from-env")]).unwrap();
        assert_eq!(config.cluster, "from-env");
        let config = load_env("cluster: written\n", &[("CLUSTER_NAME", "from-env")]).unwrap();
        assert_eq!(config.cluster, "written");
        assert_one("cluster: ''\n", "1:10: cluster: must not be empty");
    }

    #[test]
    fn node_name_sources() {
        let config = load_env("cluster: x\n", &[("NODE_NAME", "node-env")]).unwrap();
        assert_eq!(config.node_name, "node-env");
        let config = load_env("cluster: x\nnode_name: n1\n", &[("NODE_NAME", "node-env")]);
        assert_eq!(config.unwrap().node_name, "n1");
        // Empty NODE_NAME counts as unset.
        let config = load_env("cluster: x\n", &[("NODE_NAME", "")]).unwrap();
        assert_eq!(config.node_name, "host-1");
        let config = load_with("cluster: x\n", Path::new(ORIGIN), &no_env, &|| None).unwrap();
        assert_eq!(config.node_name, "unknown");
    }

    /// (section, key, min, max); `None` section means top level.
    const RANGES: &[(Option<&str>, &str, u64, u64)] = &[
        (None, "shutdown_timeout_secs", 1, 3600),
        (Some("logs"), "max_record_bytes", 1024, 1_048_550),
        (Some("logs"), "read_buffer_bytes", 4096, 16 * 1024 * 1024),
        (Some("logs"), "poll_interval_ms", 10, 10_000),
        (Some("logs"), "rescan_interval_secs", 1, 3600),
        (Some("logs"), "rotate_wait_secs", 1, 3600),
        (Some("logs"), "eof_flush_ms", 1, 600_000),
        (Some("pipeline"), "batch_max_bytes", 4096, 8 * 1024 * 1024),
        (Some("pipeline"), "batch_max_records", 1, 10_000),
        (Some("pipeline"), "batch_timeout_ms", 1, 60_000),
        (Some("pipeline"), "channel_batches", 1, 1024),
        (Some("pipeline"), "checkpoint_interval_ms", 10, 600_000),
        (Some("pipeline"), "stuck_after_secs", 1, 86_400),
    ];

    #[test]
    fn every_range_is_checked_at_its_boundaries() {
        for &(section, key, min, max) in RANGES {
            let text = |value: u64| match section {
                None => format!("cluster: x\n\n{key}: {value}\n"),
                Some(section) => format!("cluster: x\n{section}:\n  {key}: {value}\n"),
            };
            let path = section.map_or_else(|| key.to_owned(), |s| format!("{s}.{key}"));
            let column = key.len() + if section.is_some() { 5 } else { 3 };
            for good in [min, max] {
                if let Err(err) = load(&text(good)) {
                    panic!("{path}: {good} must be accepted, got {err}");
                }
            }
            for bad in [min - 1, max + 1] {
                let expected =
                    format!("3:{column}: {path}: must be between {min} and {max}, got {bad}");
                assert_eq!(problems(&text(bad)), vec![expected], "{path} = {bad}");
            }
        }
    }

    #[test]
    fn multiline_flush_timeout_range() {
        let text = |ms: u64| {
            format!(
                "cluster: x\nlogs:\n  multiline:\n    - rule: go\n      flush_timeout_ms: {ms}\n"
            )
        };
        assert_eq!(
            ok(&text(1)).logs.multiline[0].flush_timeout,
            Duration::from_millis(1)
        );
        ok(&text(600_000));
        assert_one(
            &text(0),
            "5:25: logs.multiline[0].flush_timeout_ms: must be between 1 and 600000, got 0",
        );
        assert_one(&text(600_001), "5:25: logs.multiline[0].flush_timeout_ms");
    }

    #[test]
    fn inflight_bytes_must_hold_two_batches() {
        let text = |inflight: u64| {
            format!(
                "cluster: x\npipeline:\n  batch_max_bytes: 4096\n  max_inflight_bytes: {inflight}\n"
            )
        };
        assert_eq!(ok(&text(8192)).pipeline.max_inflight_bytes, 8192);
        assert_one(
            &text(8191),
            "4:23: pipeline.max_inflight_bytes: must be at least twice pipeline.batch_max_bytes (8192), got 8191",
        );
        // Unset, the budget is the default or two of the batches set, if larger.
        let c = ok("cluster: x\npipeline:\n  batch_max_bytes: 8388608\n");
        assert_eq!(c.pipeline.max_inflight_bytes, 16 * 1024 * 1024);
        let c = ok("cluster: x\npipeline:\n  batch_max_bytes: 65536\n");
        assert_eq!(c.pipeline.max_inflight_bytes, 8 * 1024 * 1024);
    }

    #[test]
    fn env_references_are_expanded() {
        let text = "\
cluster: ${CLUSTER}
node_name: ${NODE:-fallback}
state_dir: ${EMPTY:-/data}
telemetry:
  log_level: \"${LEVEL:-info},kubeship=debug\"
";
        let config = load_env(text, &[("CLUSTER", "prod"), ("EMPTY", "")]).unwrap();
        assert_eq!(config.cluster, "prod");
        assert_eq!(config.node_name, "fallback");
        assert_eq!(config.state_dir, PathBuf::from("/data"));
        assert_eq!(config.telemetry.log_level, "info,kubeship=debug");
    }

    #[test]
    fn dollar_dollar_brace_is_a_literal_dollar_brace() {
        let config = ok("cluster: a$${b}\n");
        assert_eq!(config.cluster, "a${b}");
    }

    #[test]
    fn unset_env_reference_is_a_located_problem() {
        let found = problems_of(load_env(
            "cluster: x\nlogs:\n  containers_dir: /x/${ROOT}/containers\n",
            &[],
        ));
        assert_eq!(
            found,
            vec![
                "3:22: logs.containers_dir: environment variable ROOT is not set (use `${ROOT:-default}` to give a \
                 default)"
            ]
        );
    }

    #[test]
    fn failed_reference_hides_its_consequences_only() {
        // The number stays `${BYTES}`, a type error on the same line: not reported.
        let found = problems("cluster: x\nlogs:\n  max_record_bytes: ${BYTES}\n");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with("3:21: logs.max_record_bytes: environment variable BYTES"),
            "{found:#?}"
        );
        // Other problems are still reported.
        let found = problems("cluster: ${CLUSTER}\nbogus: 1\ntelemetry:\n  log_format: xml\n");
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(found[0].starts_with("1:10: cluster: environment variable CLUSTER"));
        assert_eq!(found[1], "2:1: bogus: unknown key `bogus`");
        assert!(found[2].starts_with("4:15: telemetry.log_format"));
    }

    #[test]
    fn columns_after_an_expansion_point_into_the_file() {
        let text = "cluster: x\npipeline: {batch_timeout_ms: ${T}, channel_batches: 0}\n";
        let found = problems_of(load_env(text, &[("T", "12345")]));
        assert_eq!(
            found,
            vec!["2:53: pipeline.channel_batches: must be between 1 and 1024, got 0"]
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let config = ok("\
cluster: x
state_dir: state
logs:
  containers_dir: ./logs/containers
output:
  local:
    dir: ../out
");
        assert_eq!(config.state_dir, PathBuf::from("/etc/kubeship/state"));
        assert_eq!(
            config.logs.containers_dir,
            PathBuf::from("/etc/kubeship/logs/containers")
        );
        assert_eq!(
            config.logs.pods_dir,
            PathBuf::from("/etc/kubeship/logs/pods"),
            "beside containers_dir by default"
        );
        let explicit = ok("cluster: x\nlogs: {pods_dir: ./node/pods}\n");
        assert_eq!(
            explicit.logs.pods_dir,
            PathBuf::from("/etc/kubeship/node/pods")
        );
        assert_one(
            "cluster: x\nlogs: {pods_dir: \"\"}\n",
            "2:18: logs.pods_dir: must not be empty",
        );
        assert_eq!(
            config.output.sink,
            SinkConfig::Local {
                dir: PathBuf::from("/etc/kubeship/../out")
            }
        );
        // The default sink directory follows state_dir.
        let config = ok("cluster: x\nstate_dir: /srv/ks\n");
        assert_eq!(
            config.output.sink,
            SinkConfig::Local {
                dir: PathBuf::from("/srv/ks/local-sink")
            }
        );
        let config = ok("cluster: x\nstate_dir: rel\n");
        assert_eq!(
            config.output.sink,
            SinkConfig::Local {
                dir: PathBuf::from("/etc/kubeship/rel/local-sink")
            }
        );
    }

    #[test]
    fn relative_origin_is_made_absolute() {
        let config = load_with(
            "cluster: x\nstate_dir: st\n",
            Path::new("conf/kubeship.yaml"),
            &no_env,
            &host,
        )
        .unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(config.state_dir, cwd.join("conf/st"));
    }

    #[test]
    fn three_mistakes_in_three_sections_are_all_reported() {
        let text = "\
cluster: prod
logs:
  include: ['*.log']
  tail_from: end
  multiline_rules:
    - name: stamp
      start_pattern: '^(\\d+'
pipeline:
  batch_max_records: 20000
";
        let found = problems(text);
        assert_eq!(
            found,
            vec![
                "4:3: logs.tail_from: unknown key `tail_from`",
                "7:22: logs.multiline_rules[0].start_pattern: invalid regex `^(\\d+`: unclosed group",
                "9:22: pipeline.batch_max_records: must be between 1 and 10000, got 20000",
            ]
        );
    }

    #[test]
    fn unknown_keys_are_located_at_any_depth() {
        let text = "\
cluster: x
colour: blue
logs:
  self_pod: {namespace: a, name: b, uid: c}
  multiline:
    - rule: go
    - rule: java
      rulez: python
output:
  local:
    dir: /x
    fsync: true
  s3:
    bucket: logs
";
        let found = problems(text);
        assert_eq!(
            found,
            vec![
                "2:1: colour: unknown key `colour`",
                "4:37: logs.self_pod.uid: unknown key `uid`",
                "8:7: logs.multiline[1].rulez: unknown key `rulez`",
                "12:5: output.local.fsync: unknown key `fsync`",
                "13:3: output.s3: unknown key `s3`",
            ]
        );
    }

    #[test]
    fn multiline_rules_resolve() {
        let text = "\
cluster: x
logs:
  multiline:
    - namespace: payments
      pod: 'api-*'
      rule: java
    - rule: python
      container: worker
    - rule: go
      flush_timeout_ms: 250
    - rule: stamp
  multiline_rules:
    - name: stamp
      start_pattern: '^\\d{4}-'
";
        let config = ok(text);
        let selectors = &config.logs.multiline;
        assert_eq!(selectors.len(), 4);
        assert!(matches!(selectors[0].rule, MultilineRule::Java));
        assert!(matches!(selectors[1].rule, MultilineRule::Python));
        assert!(matches!(selectors[2].rule, MultilineRule::Go));
        assert_eq!(selectors[2].flush_timeout, Duration::from_millis(250));
        match &selectors[3].rule {
            MultilineRule::Custom(regex) => {
                assert!(regex.is_match(b"2024-01-01 boom"));
                assert!(!regex.is_match(b"\tat Foo.bar"));
            }
            other => panic!("expected a custom rule, got {other:?}"),
        }
        assert!(selectors[0].matches("payments", "api-7f9", "app"));
        assert!(!selectors[0].matches("payments", "web-7f9", "app"));
        assert!(!selectors[0].matches("billing", "api-7f9", "app"));
        assert!(selectors[1].matches("any", "thing", "worker"));
        assert!(!selectors[1].matches("any", "thing", "sidecar"));
        assert_eq!(selectors[3].flush_timeout, Duration::from_millis(1000));
    }

    #[test]
    fn multiline_rule_problems() {
        let text = "\
cluster: x
logs:
  multiline:
    - rule: ruby
    - pod: 'web-['
      rule: go
    - namespace: x
  multiline_rules:
    - name: stamp
      start_pattern: '^\\d'
    - name: stamp
      start_pattern: '^x'
    - name: java
      start_pattern: '^y'
    - start_pattern: '[z'
";
        let found = problems(text);
        assert_eq!(
            found,
            vec![
                "4:13: logs.multiline[0].rule: unknown multiline rule `ruby` (expected java, \
                 python, go or a `logs.multiline_rules` name: stamp)",
                "5:12: logs.multiline[1].pod: invalid glob `web-[`: unclosed character class; \
                 missing ']'",
                "7:7: logs.multiline[2].rule: is required (expected java, python, go or a \
                 `logs.multiline_rules` name: stamp)",
                "11:13: logs.multiline_rules[1].name: duplicate rule name `stamp` (first \
                 defined on line 9)",
                "13:13: logs.multiline_rules[2].name: `java` is a built-in rule; choose another \
                 name",
                "15:7: logs.multiline_rules[3].name: is required",
                "15:22: logs.multiline_rules[3].start_pattern: invalid regex `[z`: unclosed \
                 character class",
            ]
        );
    }

    #[test]
    fn self_pod_sources() {
        let pod_env = [
            ("POD_NAMESPACE", "kube-system"),
            ("POD_NAME", "kubeship-x1"),
        ];
        let config = load_env("cluster: x\n", &pod_env).unwrap();
        assert_eq!(
            config.logs.exclude_self,
            Some(PodRef {
                namespace: "kube-system".to_owned(),
                name: "kubeship-x1".to_owned()
            })
        );
        // Only one of the two: no default.
        let config = load_env("cluster: x\n", &pod_env[..1]).unwrap();
        assert_eq!(config.logs.exclude_self, None);
        // Explicit null disables even with the environment set.
        let config = load_env("cluster: x\nlogs:\n  self_pod: null\n", &pod_env).unwrap();
        assert_eq!(config.logs.exclude_self, None);
        let config = load_env(
            "cluster: x\nlogs:\n  self_pod: {namespace: ns, name: me}\n",
            &pod_env,
        )
        .unwrap();
        assert_eq!(
            config.logs.exclude_self,
            Some(PodRef {
                namespace: "ns".to_owned(),
                name: "me".to_owned()
            })
        );
        assert_one(
            "cluster: x\nlogs:\n  self_pod:\n    namespace: ns\n",
            "4:5: logs.self_pod.name: is required",
        );
    }

    #[test]
    fn file_globs_are_checked() {
        let config = ok(
            "cluster: x\nlogs:\n  include: ['*_prod_*.log', 'x?.log']\n  exclude: ['*_kube-system_*']\n",
        );
        assert!(config.logs.include.is_match("a_prod_b.log"));
        assert!(config.logs.include.is_match("x1.log"));
        assert!(
            config
                .logs
                .exclude
                .is_match("coredns_kube-system_coredns-1.log")
        );
        let found = problems(
            "cluster: x\nlogs:\n  include: []\n  exclude: ['/var/log/containers/*.log', '[a']\n",
        );
        assert_eq!(
            found,
            vec![
                "3:12: logs.include: must list at least one glob, or nothing is tailed",
                "4:13: logs.exclude[0]: `/var/log/containers/*.log` contains `/`, but these \
                 globs match file names in logs.containers_dir, not paths",
                "4:42: logs.exclude[1]: invalid glob `[a`: unclosed character class; missing ']'",
            ]
        );
    }

    #[test]
    fn enum_values_are_checked_together() {
        let found = problems(
            "cluster: x\nlogs:\n  read_from: start\ntelemetry:\n  log_format: xml\n  log_level: loud\n",
        );
        assert_eq!(
            found,
            vec![
                "3:14: logs.read_from: must be `beginning` or `end`, got `start`",
                "5:15: telemetry.log_format: must be `json` or `text`, got `xml`",
                "6:14: telemetry.log_level: `loud` is neither a level (trace, debug, info, \
                 warn, error, off) nor a `target=level` directive",
            ]
        );
        let config = ok("cluster: x\nlogs:\n  read_from: end\ntelemetry:\n  log_format: text\n");
        assert_eq!(config.logs.read_from, ReadFrom::End);
        assert_eq!(config.telemetry.log_format, LogFormat::Text);
    }

    #[test]
    fn listen_addr_forms() {
        let listen = |value: &str| {
            ok(&format!("cluster: x\ntelemetry:\n  listen_addr: {value}\n"))
                .telemetry
                .listen
        };
        assert_eq!(listen("off"), None);
        assert_eq!(listen("null"), None);
        assert_eq!(listen("~"), None);
        assert_eq!(
            listen("127.0.0.1:9090"),
            Some("127.0.0.1:9090".parse().unwrap())
        );
        assert_eq!(listen("'[::]:2020'"), Some("[::]:2020".parse().unwrap()));
        assert_one(
            "cluster: x\ntelemetry:\n  listen_addr: localhost:2020\n",
            "3:16: telemetry.listen_addr: `localhost:2020` is not an IP:port address",
        );
        assert_one(
            "cluster: x\ntelemetry:\n  listen_addr: 0.0.0.0\n",
            "3:16: telemetry.listen_addr: `0.0.0.0` is not",
        );
    }

    #[test]
    fn templates_are_checked() {
        let config = ok(
            "cluster: x\noutput:\n  group: '/k8s/{cluster}/{{literal}}'\n  stream: '{node}.{container_id}'\n",
        );
        let fields = route::Fields {
            cluster: "prod",
            node: "n1",
            namespace: "ns",
            pod: "p",
            container: "c",
            container_id: "abc",
            labels: None,
            annotations: None,
        };
        assert_eq!(config.output.group.render(&fields), "/k8s/prod/{literal}");
        assert_eq!(config.output.stream.render(&fields), "n1.abc");
        let found = problems("cluster: x\noutput:\n  group: '/k8s/{cluser}'\n  stream: ''\n");
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found[0].starts_with("3:10: output.group: unknown placeholder `{cluser}`"),
            "{found:#?}"
        );
        assert_eq!(found[1], "4:11: output.stream: must not be empty");
    }

    #[test]
    fn yaml_syntax_error_is_located() {
        let found = problems("cluster: x\nlogs:\n  include: ['*.log'\n  exclude: []\n");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with("4:"), "{found:#?}");
        let found = problems("cluster: x\ntelemetry:\n  log_level: \"info\n");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with("3:14: "), "{found:#?}");
        assert!(found[0].contains("quote"), "{found:#?}");
    }

    #[test]
    fn type_errors_are_located_with_their_path() {
        assert_eq!(
            problems("cluster: x\nlogs:\n  poll_interval_ms: 250ms\n"),
            vec!["3:21: logs.poll_interval_ms: expected a non-negative integer, found `250ms`"]
        );
        assert_eq!(
            problems("cluster: x\nlogs:\n  include: '*.log'\n"),
            vec!["3:12: logs.include: expected a list, found `'*.log'`"]
        );
        assert_eq!(
            problems("cluster: x\npipeline: 5\n"),
            vec!["2:11: pipeline: expected a mapping, found `5`"]
        );
        assert_eq!(
            problems("- cluster: x\n"),
            vec!["1:1: expected a mapping, found a list"]
        );
        // Unknown keys seen before the type error are reported too.
        assert_eq!(
            problems("cluster: x\ntypo: 1\npipeline:\n  channel_batches: [1]\n"),
            vec![
                "2:1: typo: unknown key `typo`",
                "4:20: pipeline.channel_batches: expected a single value, found a list"
            ]
        );
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let found = problems("cluster: x\ncluster: y\n");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with("2:1: "), "{found:#?}");
        assert!(found[0].contains("duplicate"), "{found:#?}");
    }

    #[test]
    fn error_display_names_the_file() {
        let err = load("logs:\n  bogus: 1\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/kubeship/kubeship.yaml:2:3: logs.bogus: unknown key `bogus`\n\
             /etc/kubeship/kubeship.yaml: cluster: is required: set `cluster:` or the \
             CLUSTER_NAME environment variable"
        );
        assert_eq!(err.origin(), Path::new(ORIGIN));
        assert_eq!(
            err.problems()[0],
            Problem {
                line: Some(2),
                column: Some(3),
                path: "logs.bogus".to_owned(),
                message: "unknown key `bogus`".to_owned(),
            }
        );
    }

    #[test]
    fn example_config_loads() {
        let text = include_str!("../../../examples/kubeship.yaml");
        let config = load_str(text, Path::new("/etc/kubeship/kubeship.yaml"), &no_env)
            .unwrap_or_else(|err| panic!("examples/kubeship.yaml:\n{err}"));
        assert_eq!(config.cluster, "my-cluster");
        // The example shows the defaults: it must equal the minimal config.
        let minimal = load_str(
            "cluster: my-cluster\n",
            Path::new("/etc/kubeship/kubeship.yaml"),
            &no_env,
        )
        .unwrap();
        assert_eq!(format!("{config:?}"), format!("{minimal:?}"));
    }

    #[test]
    fn example_metrics_section_is_the_defaults_and_one_endpoint() {
        let text = include_str!("../../../examples/kubeship.yaml");
        let origin = Path::new("/etc/kubeship/kubeship.yaml");
        let start = text
            .find("\n# metrics:\n")
            .expect("the commented metrics section")
            + 1;
        let mut uncommented = text[..start].to_owned();
        for line in text[start..].lines() {
            uncommented.push_str(line.strip_prefix("# ").unwrap_or(line));
            uncommented.push('\n');
        }
        let config = load_str(&uncommented, origin, &no_env)
            .unwrap_or_else(|err| panic!("examples/kubeship.yaml's metrics section:\n{err}"));
        let metrics = config.metrics.expect("the section is on once uncommented");
        let load = |text: &str| {
            load_str(text, origin, &no_env)
                .unwrap()
                .metrics
                .expect("metrics")
        };
        let defaults = load("cluster: my-cluster\nmetrics: {}\n");
        assert_eq!(
            format!("{:?}", metrics.scrape),
            format!("{:?}", defaults.scrape),
            "metrics.scrape in the example is not the defaults"
        );
        let (MetricsSinkConfig::RemoteWrite(example), MetricsSinkConfig::RemoteWrite(plain)) = (
            metrics.sink,
            load("cluster: x\nmetrics:\n  remote_write: [{url: 'https://h/w'}]\n").sink,
        ) else {
            panic!("expected remote write in both")
        };
        let ([example], [plain]) = (&example[..], &plain[..]) else {
            panic!("one endpoint each")
        };
        assert_eq!(
            example.auth,
            Auth::SigV4 {
                region: Some("eu-west-1".into())
            }
        );
        assert_eq!(example.name, "amp");
        let settings = |e: &RemoteWriteConfig| {
            format!(
                "{:?}",
                (
                    &e.tls,
                    e.max_samples_per_send,
                    e.batch_send_deadline,
                    e.max_pending_samples,
                    e.shards,
                    e.request_timeout
                )
            )
        };
        assert_eq!(
            settings(example),
            settings(plain),
            "the example's remote-write settings are not the defaults"
        );
    }

    #[test]
    fn load_file_reads_and_resolves() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kubeship.yaml");
        std::fs::write(&file, "cluster: x\nstate_dir: state\n").unwrap();
        let config = load_file(&file).unwrap();
        assert_eq!(config.state_dir, dir.path().join("state"));

        let missing = dir.path().join("missing.yaml");
        let err = load_file(&missing).unwrap_err();
        assert_eq!(err.problems().len(), 1);
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "{}: cannot read the config file",
                missing.display()
            )),
            "{text}"
        );
    }

    #[test]
    fn cloudwatch_sink_defaults_and_checks() {
        let c = ok("cluster: x\noutput:\n  cloudwatch:\n    region: eu-west-1\n");
        let SinkConfig::CloudWatch(cw) = c.output.sink else {
            panic!("expected the cloudwatch sink")
        };
        assert_eq!(cw.region.as_deref(), Some("eu-west-1"));
        assert!(!cw.create_group);
        assert_eq!(cw.max_concurrent_requests, 8);
        assert_eq!(cw.request_timeout, Duration::from_secs(30));
        assert_eq!(cw.create_stream_per_sec, 10);
        let found = problems(
            "cluster: x\noutput:\n  cloudwatch:\n    retention_days: 10\n    log_group_class: COLD\n    \
             endpoint_url: ftp://x\n    max_concurrent_requests: 0\n",
        );
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found[0].starts_with(
            "4:21: output.cloudwatch.retention_days: 10 is not a CloudWatch retention"
        ));
        assert!(found[1].starts_with("5:22: output.cloudwatch.log_group_class: must be one of"));
        assert!(found[2].starts_with("6:19: output.cloudwatch.endpoint_url:"));
        assert!(found[3].starts_with(
            "7:30: output.cloudwatch.max_concurrent_requests: must be between 1 and 64"
        ));
        let both = problems("cluster: x\noutput:\n  local: {dir: /x}\n  cloudwatch: {}\n");
        assert_eq!(
            both,
            ["output: configure exactly one sink: `local` or `cloudwatch`, not both"]
        );
    }
}
