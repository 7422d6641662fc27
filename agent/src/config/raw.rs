//! The config file as written: serde structs mirroring the YAML, with defaults.
//!
//! Every value that validation may complain about is a [`Spanned`] (serde-saphyr's
//! `Spanned`) so the complaint can point at its line and column; defaults carry
//! an unknown location (they are valid by construction). Enum-like values
//! (`read_from`, `log_format`, multiline `rule`) are plain strings here, checked
//! in [`super::validate`], so a bad one is reported together with every other
//! problem instead of stopping the parse.
//!
//! Unknown keys: the structs do not use `#[serde(deny_unknown_fields)]`, which
//! would stop at the first one; the loader wraps the deserializer in
//! `serde_ignored` and reports every ignored key as a problem, which gives the
//! same contract with all offenders listed.
//!
//! Nothing here interprets a value; see `validate.rs` for ranges and meaning.

use serde::{Deserialize, Deserializer};
use serde_saphyr::Location;
/// A value with its position in the (expanded) config text.
pub(super) use serde_saphyr::Spanned;

/// A default value: no position, since it was not written in the file.
pub(super) fn unlocated<T>(value: T) -> Spanned<T> {
    Spanned::new(value, Location::UNKNOWN, Location::UNKNOWN)
}

/// Deserializes a present key as `Some`, even when its value is `null`, so a
/// field typed `Option<Spanned<Option<T>>>` tells "absent" (`None`) from "explicitly
/// null" (`Some(null)`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A section whose every field has a default, built as if it were written `{}`.
pub(super) fn all_defaults<T: for<'de> Deserialize<'de>>() -> T {
    let empty = serde::de::value::MapDeserializer::<_, serde::de::value::Error>::new(
        std::iter::empty::<(String, String)>(),
    );
    match T::deserialize(empty) {
        Ok(value) => value,
        Err(err) => unreachable!("a raw config section lacks a default: {err}"),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RawConfig {
    /// Required unless the `CLUSTER_NAME` environment variable is set.
    pub cluster: Option<Spanned<String>>,
    /// Defaults to `NODE_NAME`, then the machine's hostname.
    pub node_name: Option<Spanned<String>>,
    #[serde(default = "default_state_dir")]
    pub state_dir: Spanned<String>,
    #[serde(default = "default_shutdown_timeout_secs")]
    pub shutdown_timeout_secs: Spanned<u64>,
    #[serde(default)]
    pub logs: Option<RawLogs>,
    #[serde(default)]
    pub pipeline: Option<RawPipeline>,
    #[serde(default)]
    pub output: Option<RawOutput>,
    #[serde(default)]
    pub telemetry: Option<RawTelemetry>,
    #[serde(default)]
    pub kubernetes: Option<RawKubernetes>,
    #[serde(default)]
    pub metrics: Option<super::metrics::RawMetrics>,
}

fn default_state_dir() -> Spanned<String> {
    unlocated("/var/lib/kubeship".to_owned())
}
fn default_shutdown_timeout_secs() -> Spanned<u64> {
    unlocated(25)
}

#[derive(Debug, Deserialize)]
pub(super) struct RawLogs {
    #[serde(default = "default_containers_dir")]
    pub containers_dir: Spanned<String>,
    /// Defaults to the `pods` directory beside `containers_dir`.
    #[serde(default)]
    pub pods_dir: Option<Spanned<String>>,
    #[serde(default = "default_include")]
    pub include: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    #[serde(default = "default_read_from")]
    pub read_from: Spanned<String>,
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: Spanned<u64>,
    #[serde(default = "default_read_buffer_bytes")]
    pub read_buffer_bytes: Spanned<u64>,
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: Spanned<u64>,
    #[serde(default = "default_rescan_interval_secs")]
    pub rescan_interval_secs: Spanned<u64>,
    #[serde(default = "default_rotate_wait_secs")]
    pub rotate_wait_secs: Spanned<u64>,
    #[serde(default = "default_eof_flush_ms")]
    pub eof_flush_ms: Spanned<u64>,
    /// Absent: from `POD_NAMESPACE` + `POD_NAME`. Explicit `null`: disabled.
    #[serde(default, deserialize_with = "present")]
    pub self_pod: Option<Spanned<Option<RawPodRef>>>,
    #[serde(default)]
    pub multiline: Vec<Spanned<RawMultiline>>,
    #[serde(default)]
    pub multiline_rules: Vec<Spanned<RawMultilineRule>>,
    #[serde(default)]
    pub parsers: Vec<Spanned<RawParser>>,
}

impl Default for RawLogs {
    fn default() -> Self {
        all_defaults()
    }
}

fn default_containers_dir() -> Spanned<String> {
    unlocated("/var/log/containers".to_owned())
}
fn default_include() -> Spanned<Vec<Spanned<String>>> {
    unlocated(vec![unlocated("*.log".to_owned())])
}
fn default_read_from() -> Spanned<String> {
    unlocated("beginning".to_owned())
}
fn default_max_record_bytes() -> Spanned<u64> {
    unlocated(262_144)
}
fn default_read_buffer_bytes() -> Spanned<u64> {
    unlocated(262_144)
}
fn default_poll_interval_ms() -> Spanned<u64> {
    unlocated(500)
}
fn default_rescan_interval_secs() -> Spanned<u64> {
    unlocated(10)
}
fn default_rotate_wait_secs() -> Spanned<u64> {
    unlocated(5)
}
fn default_eof_flush_ms() -> Spanned<u64> {
    unlocated(5000)
}

#[derive(Debug, Deserialize)]
pub(super) struct RawPodRef {
    pub namespace: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawMultiline {
    #[serde(default = "default_any")]
    pub namespace: Spanned<String>,
    #[serde(default = "default_any")]
    pub pod: Spanned<String>,
    #[serde(default = "default_any")]
    pub container: Spanned<String>,
    /// `java`, `python`, `go` or the name of a `multiline_rules` entry. Required.
    pub rule: Option<Spanned<String>>,
    #[serde(default = "default_flush_timeout_ms")]
    pub flush_timeout_ms: Spanned<u64>,
}

fn default_any() -> Spanned<String> {
    unlocated("*".to_owned())
}
fn default_flush_timeout_ms() -> Spanned<u64> {
    unlocated(1000)
}

#[derive(Debug, Deserialize)]
pub(super) struct RawMultilineRule {
    pub name: Option<Spanned<String>>,
    /// A line matching this regex starts a new record.
    pub start_pattern: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawParser {
    pub name: Option<Spanned<String>>,
    /// Named capture groups become the fields of `log_processed`.
    pub regex: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawPipeline {
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: Spanned<u64>,
    #[serde(default = "default_batch_max_records")]
    pub batch_max_records: Spanned<u64>,
    #[serde(default = "default_batch_timeout_ms")]
    pub batch_timeout_ms: Spanned<u64>,
    #[serde(default = "default_channel_batches")]
    pub channel_batches: Spanned<u64>,
    #[serde(default = "default_max_inflight_bytes")]
    pub max_inflight_bytes: Spanned<u64>,
    #[serde(default = "default_checkpoint_interval_ms")]
    pub checkpoint_interval_ms: Spanned<u64>,
    #[serde(default = "default_stuck_after_secs")]
    pub stuck_after_secs: Spanned<u64>,
}

impl Default for RawPipeline {
    fn default() -> Self {
        all_defaults()
    }
}

fn default_batch_max_bytes() -> Spanned<u64> {
    unlocated(512 * 1024)
}
fn default_batch_max_records() -> Spanned<u64> {
    unlocated(10_000)
}
fn default_batch_timeout_ms() -> Spanned<u64> {
    unlocated(1000)
}
fn default_channel_batches() -> Spanned<u64> {
    unlocated(8)
}
fn default_max_inflight_bytes() -> Spanned<u64> {
    unlocated(8 * 1024 * 1024)
}
fn default_checkpoint_interval_ms() -> Spanned<u64> {
    unlocated(200)
}
fn default_stuck_after_secs() -> Spanned<u64> {
    unlocated(120)
}

#[derive(Debug, Deserialize)]
pub(super) struct RawOutput {
    #[serde(default = "default_group")]
    pub group: Spanned<String>,
    #[serde(default = "default_stream")]
    pub stream: Spanned<String>,
    /// `record` or `log`.
    #[serde(default = "default_event")]
    pub event: Spanned<String>,
    /// The local-directory sink; the default sink when no other is configured.
    #[serde(default)]
    pub local: Option<RawLocalSink>,
    /// CloudWatch Logs.
    #[serde(default)]
    pub cloudwatch: Option<RawCloudWatch>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawCloudWatch {
    pub region: Option<Spanned<String>>,
    pub endpoint_url: Option<Spanned<String>>,
    #[serde(default = "default_false")]
    pub create_group: Spanned<bool>,
    pub retention_days: Option<Spanned<u64>>,
    pub log_group_class: Option<Spanned<String>>,
    pub kms_key_id: Option<Spanned<String>>,
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, Spanned<String>>,
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: Spanned<u64>,
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: Spanned<u64>,
    #[serde(default = "default_create_stream_per_sec")]
    pub create_stream_per_sec: Spanned<u64>,
    #[serde(default = "default_max_backoff_secs")]
    pub max_backoff_secs: Spanned<u64>,
}

fn default_false() -> Spanned<bool> {
    unlocated(false)
}
fn default_max_concurrent_requests() -> Spanned<u64> {
    unlocated(8)
}
fn default_request_timeout_secs() -> Spanned<u64> {
    unlocated(30)
}
fn default_create_stream_per_sec() -> Spanned<u64> {
    unlocated(10)
}
fn default_max_backoff_secs() -> Spanned<u64> {
    unlocated(30)
}

impl Default for RawOutput {
    fn default() -> Self {
        all_defaults()
    }
}

fn default_group() -> Spanned<String> {
    unlocated("/aws/containerinsights/{cluster}/application".to_owned())
}
fn default_event() -> Spanned<String> {
    unlocated("record".to_owned())
}
fn default_stream() -> Spanned<String> {
    unlocated("{pod}_{namespace}_{container}".to_owned())
}

#[derive(Debug, Deserialize)]
pub(super) struct RawLocalSink {
    /// Defaults to `<state_dir>/local-sink`.
    pub dir: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawTelemetry {
    /// `null` or `"off"` disables the listener.
    #[serde(default = "default_listen_addr")]
    pub listen_addr: Spanned<Option<String>>,
    #[serde(default = "default_log_format")]
    pub log_format: Spanned<String>,
    #[serde(default = "default_log_level")]
    pub log_level: Spanned<String>,
}

impl Default for RawTelemetry {
    fn default() -> Self {
        all_defaults()
    }
}

fn default_listen_addr() -> Spanned<Option<String>> {
    unlocated(Some("0.0.0.0:2020".to_owned()))
}
fn default_log_format() -> Spanned<String> {
    unlocated("json".to_owned())
}
fn default_log_level() -> Spanned<String> {
    unlocated("info".to_owned())
}

/// `kubernetes.enabled`: `auto`, or a boolean.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawSwitch {
    Bool(bool),
    Word(String),
}

#[derive(Debug, Deserialize)]
pub(super) struct RawKubernetes {
    #[serde(default = "default_enabled")]
    pub enabled: Spanned<RawSwitch>,
    pub kubeconfig: Option<Spanned<String>>,
    #[serde(default = "default_metadata_wait_ms")]
    pub metadata_wait_ms: Spanned<u64>,
    #[serde(default = "default_deleted_pod_grace_secs")]
    pub deleted_pod_grace_secs: Spanned<u64>,
    #[serde(default = "default_true")]
    pub labels: Spanned<bool>,
    #[serde(default)]
    pub annotations: Vec<Spanned<String>>,
    #[serde(default = "default_false")]
    pub namespace_labels: Spanned<bool>,
}

impl Default for RawKubernetes {
    fn default() -> Self {
        all_defaults()
    }
}

fn default_enabled() -> Spanned<RawSwitch> {
    unlocated(RawSwitch::Word("auto".to_owned()))
}
fn default_metadata_wait_ms() -> Spanned<u64> {
    unlocated(2000)
}
fn default_deleted_pod_grace_secs() -> Spanned<u64> {
    unlocated(300)
}
fn default_true() -> Spanned<bool> {
    unlocated(true)
}
