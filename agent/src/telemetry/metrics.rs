//! The agent's own Prometheus metrics (`kubeship_*`), registered in one place.
//!
//! Every name here is part of the self-telemetry contract in DESIGN.md: the
//! dashboards and alerts query them. No metric carries a per-pod label. Hot paths
//! add to these counters once per chunk or batch, never once per line.

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Label set for counters split by a reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why it happened (`snake_case`).
    pub reason: String,
}

/// Label set for counters split by log framing format.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FormatLabel {
    /// `cri` or `docker`.
    pub format: String,
}

/// Label set for counters split by outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// How it ended (`ok`, `throttled`, `error`, …).
    pub outcome: String,
}

/// Label set for counters split by Kubernetes resource.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabel {
    /// `pods` or `namespaces`.
    pub resource: String,
}

/// Label set for counters split by app-level parser.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ParserLabel {
    /// `json`, `logfmt` or `regex`.
    pub parser: String,
}

/// Label set of `kubeship_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// All self-metrics of the agent.
pub struct Metrics {
    registry: Registry,
    /// Files currently open for reading.
    pub log_files_tailed: Gauge,
    /// Records shipped with only the metadata their file path tells.
    pub kube_metadata_misses: Counter,
    /// Pods in the metadata cache (deleted ones in their grace period included).
    pub kube_pods_cached: Gauge,
    /// Watch or list failures against the API server, by resource.
    pub kube_watch_errors: Family<ResourceLabel, Counter>,
    /// App lines a pod asked to parse that did not parse (shipped raw), by parser.
    pub log_parse_failures: Family<ParserLabel, Counter>,
    /// Container log lines read (before partial merging and multiline grouping).
    pub log_lines_read: Counter,
    /// Bytes read from container log files (decompressed for `.gz`).
    pub log_bytes_read: Counter,
    /// Records deliberately not delivered, by reason.
    pub log_records_dropped: Family<ReasonLabel, Counter>,
    /// Records cut to `max_record_bytes`.
    pub log_records_truncated: Counter,
    /// Records shipped in a reduced form (a part left out to bound them), by the part.
    pub log_records_reduced: Family<ReasonLabel, Counter>,
    /// Lines that were neither valid CRI nor docker json-file, kept as raw text.
    pub log_lines_malformed: Family<FormatLabel, Counter>,
    /// Records whose invalid UTF-8 was replaced with U+FFFD.
    pub log_invalid_utf8: Counter,
    /// Errors opening or reading log files, by reason.
    pub log_file_errors: Family<ReasonLabel, Counter>,
    /// Files found rotated or truncated.
    pub log_rotations: Family<ReasonLabel, Counter>,
    /// Bytes of container logs known to be lost before they were read, by reason.
    pub log_bytes_lost: Family<ReasonLabel, Counter>,
    /// Bytes of open files (as far as seen) not covered by the checkpoint file on disk.
    pub log_checkpoint_lag_bytes: Gauge,
    /// Records handed to the sink.
    pub log_records_sent: Counter,
    /// Batches acknowledged by the sink.
    pub batches_acked: Counter,
    /// Bytes of batches sent to the sink and not yet acknowledged.
    pub inflight_bytes: Gauge,
    /// Age of the oldest batch not yet acknowledged (0 when none), in seconds.
    pub oldest_unacked_age_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Checkpoint writes, by outcome (`ok`, `error`).
    pub checkpoint_writes: Family<ReasonLabel, Counter>,
    /// Checkpoint files that could not be loaded at start and were set aside.
    pub checkpoint_load_errors: Counter,
    /// Records written by the embedded local sink.
    pub local_sink_records_written: Counter,
    /// Write errors in the embedded local sink (each retried).
    pub local_sink_write_errors: Counter,
    /// Time from a batch being sealed to its acknowledgement.
    pub batch_ack_seconds: Histogram,
    /// Log events CloudWatch accepted.
    pub cloudwatch_events_sent: Counter,
    /// PutLogEvents calls by outcome.
    pub cloudwatch_requests: Family<OutcomeLabel, Counter>,
    /// PutLogEvents call durations (including stream creation when needed).
    pub cloudwatch_request_duration_seconds: Histogram,
    /// Log streams the agent created.
    pub cloudwatch_streams_created: Counter,
    /// Log groups the agent created.
    pub cloudwatch_groups_created: Counter,
    /// PutLogEvents calls in flight.
    pub cloudwatch_requests_in_flight: Gauge,
    /// How many calls may be in flight now (halved on throttling).
    pub cloudwatch_concurrency_limit: Gauge,
    /// Telemetry connections closed as soon as accepted: all slots taken
    /// (`telemetry_connections_rejected_total{reason="limit"}`).
    pub telemetry_rejected_limit: Counter,
    /// Failed accepts on the telemetry listener (`{reason="accept_error"}`).
    pub telemetry_rejected_accept_error: Counter,
    /// Telemetry connections closed for not sending a request head in time
    /// (`telemetry_connections_timed_out_total{reason="header_read"}`).
    pub telemetry_timed_out_header_read: Counter,
    /// Telemetry connections closed at the end of their lifetime (`{reason="lifetime"}`).
    pub telemetry_timed_out_lifetime: Counter,
}

/// A family whose label values are fixed: every series exists from the start (at
/// 0), and each is counted through its own handle, without a lookup.
fn fixed_reasons<const N: usize>(
    reasons: [&str; N],
) -> (Family<ReasonLabel, Counter>, [Counter; N]) {
    let family: Family<ReasonLabel, Counter> = Family::default();
    let counters = reasons.map(|reason| {
        family
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .clone()
    });
    (family, counters)
}

/// A labelled family registered so that its `# HELP` and `# TYPE` lines are written
/// before its first series too (prometheus-client leaves an empty family out
/// altogether): every name of the contract is on `/metrics` from the start, so a
/// scraper, a dashboard's author or a test can tell a name that does not exist from a
/// counter that did not move yet.
#[derive(Debug)]
struct Declared<M>(M);

impl<M: EncodeMetric> EncodeMetric for Declared<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kubeship");
        let build_info: Family<BuildLabels, Gauge> = Family::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        registry.register(
            "build_info",
            "Build information; value is always 1",
            build_info,
        );
        let (telemetry_rejected, [telemetry_rejected_limit, telemetry_rejected_accept_error]) =
            fixed_reasons(["limit", "accept_error"]);
        let (
            telemetry_timed_out,
            [
                telemetry_timed_out_header_read,
                telemetry_timed_out_lifetime,
            ],
        ) = fixed_reasons(["header_read", "lifetime"]);
        let m = Self {
            log_files_tailed: Gauge::default(),
            kube_metadata_misses: Counter::default(),
            kube_pods_cached: Gauge::default(),
            kube_watch_errors: Family::default(),
            log_parse_failures: Family::default(),
            log_lines_read: Counter::default(),
            log_bytes_read: Counter::default(),
            log_records_dropped: Family::default(),
            log_records_truncated: Counter::default(),
            log_records_reduced: Family::default(),
            log_lines_malformed: Family::default(),
            log_invalid_utf8: Counter::default(),
            log_file_errors: Family::default(),
            log_rotations: Family::default(),
            log_bytes_lost: Family::default(),
            log_checkpoint_lag_bytes: Gauge::default(),
            log_records_sent: Counter::default(),
            batches_acked: Counter::default(),
            inflight_bytes: Gauge::default(),
            oldest_unacked_age_seconds: Gauge::default(),
            checkpoint_writes: Family::default(),
            checkpoint_load_errors: Counter::default(),
            local_sink_records_written: Counter::default(),
            local_sink_write_errors: Counter::default(),
            batch_ack_seconds: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            cloudwatch_events_sent: Counter::default(),
            cloudwatch_requests: Family::default(),
            cloudwatch_request_duration_seconds: Histogram::new([
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            cloudwatch_streams_created: Counter::default(),
            cloudwatch_groups_created: Counter::default(),
            cloudwatch_requests_in_flight: Gauge::default(),
            cloudwatch_concurrency_limit: Gauge::default(),
            telemetry_rejected_limit,
            telemetry_rejected_accept_error,
            telemetry_timed_out_header_read,
            telemetry_timed_out_lifetime,
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "log_files_tailed",
            "Container log files open for reading",
            m.log_files_tailed.clone(),
        );
        r.register(
            "log_lines_read",
            "Container log lines read",
            m.log_lines_read.clone(),
        );
        r.register(
            "log_bytes_read",
            "Container log bytes read",
            m.log_bytes_read.clone(),
        );
        r.register(
            "kube_metadata_misses",
            "Log records shipped with only the metadata their file path tells",
            m.kube_metadata_misses.clone(),
        );
        r.register(
            "kube_pods_cached",
            "Pods in the metadata cache, deleted ones in their grace period included",
            m.kube_pods_cached.clone(),
        );
        r.register(
            "kube_watch_errors",
            "Kubernetes API list/watch failures, by resource",
            Declared(m.kube_watch_errors.clone()),
        );
        r.register(
            "log_parse_failures",
            "App log lines a pod asked to parse that did not parse (shipped raw), by parser",
            Declared(m.log_parse_failures.clone()),
        );
        r.register(
            "log_records_dropped",
            "Log records deliberately not delivered, by reason",
            Declared(m.log_records_dropped.clone()),
        );
        r.register(
            "log_records_truncated",
            "Log records whose log was cut: to max_record_bytes, or to fit one CloudWatch event",
            m.log_records_truncated.clone(),
        );
        r.register(
            "log_records_reduced",
            "Log records shipped with a part left out to fit their bounds (reason: the part, log_processed or kubernetes)",
            Declared(m.log_records_reduced.clone()),
        );
        r.register(
            "log_lines_malformed",
            "Lines that did not parse in their file's format, kept as raw text",
            Declared(m.log_lines_malformed.clone()),
        );
        r.register(
            "log_invalid_utf8",
            "Log records whose invalid UTF-8 was replaced",
            m.log_invalid_utf8.clone(),
        );
        r.register(
            "log_file_errors",
            "Errors opening or reading container log files, by reason",
            Declared(m.log_file_errors.clone()),
        );
        r.register(
            "log_rotations",
            "Container log files seen rotated or truncated, by kind",
            Declared(m.log_rotations.clone()),
        );
        r.register(
            "log_bytes_lost",
            "Bytes of container logs that will never be read, by reason: truncated (a file \
             truncated in place without a copy: its size last seen minus the offset read, a \
             lower bound), read_error (a file given up after repeated read errors: its size \
             minus the offset read; for a .gz the compressed bytes after the point where \
             decompression failed)",
            Declared(m.log_bytes_lost.clone()),
        );
        r.register(
            "log_checkpoint_lag_bytes",
            "Bytes of open container log files not covered by the checkpoint file on disk",
            m.log_checkpoint_lag_bytes.clone(),
        );
        r.register(
            "log_records_sent",
            "Log records handed to the sink",
            m.log_records_sent.clone(),
        );
        r.register(
            "batches_acked",
            "Batches acknowledged by the sink",
            m.batches_acked.clone(),
        );
        r.register(
            "inflight_bytes",
            "Bytes of batches sent to the sink and not yet acknowledged",
            m.inflight_bytes.clone(),
        );
        r.register(
            "oldest_unacked_age_seconds",
            "Age of the oldest batch sent to the sink and not yet acknowledged (0 when none)",
            m.oldest_unacked_age_seconds.clone(),
        );
        r.register(
            "checkpoint_writes",
            "Checkpoint file writes, by outcome",
            Declared(m.checkpoint_writes.clone()),
        );
        r.register(
            "checkpoint_load_errors",
            "Checkpoint files that could not be loaded at start and were set aside",
            m.checkpoint_load_errors.clone(),
        );
        r.register(
            "local_sink_records_written",
            "Records written by the embedded local sink",
            m.local_sink_records_written.clone(),
        );
        r.register(
            "local_sink_write_errors",
            "Write errors in the embedded local sink (the batch is retried)",
            m.local_sink_write_errors.clone(),
        );
        r.register_with_unit(
            "batch_ack",
            "Time from sealing a batch to its acknowledgement by the sink",
            Unit::Seconds,
            m.batch_ack_seconds.clone(),
        );
        r.register(
            "cloudwatch_events_sent",
            "Log events CloudWatch Logs accepted",
            m.cloudwatch_events_sent.clone(),
        );
        r.register(
            "cloudwatch_requests",
            "PutLogEvents calls by outcome",
            Declared(m.cloudwatch_requests.clone()),
        );
        r.register_with_unit(
            "cloudwatch_request_duration",
            "PutLogEvents call durations, including creating a missing stream",
            Unit::Seconds,
            m.cloudwatch_request_duration_seconds.clone(),
        );
        r.register(
            "cloudwatch_streams_created",
            "Log streams created by the agent",
            m.cloudwatch_streams_created.clone(),
        );
        r.register(
            "cloudwatch_groups_created",
            "Log groups created by the agent",
            m.cloudwatch_groups_created.clone(),
        );
        r.register(
            "cloudwatch_requests_in_flight",
            "PutLogEvents calls in flight",
            m.cloudwatch_requests_in_flight.clone(),
        );
        r.register(
            "cloudwatch_concurrency_limit",
            "PutLogEvents calls allowed in flight now (halved on throttling)",
            m.cloudwatch_concurrency_limit.clone(),
        );
        r.register(
            "telemetry_connections_rejected",
            "Telemetry endpoint connections closed at once (limit: all slots taken) or accepts that failed (accept_error)",
            telemetry_rejected,
        );
        r.register(
            "telemetry_connections_timed_out",
            "Telemetry endpoint connections the agent closed: no request head in time (header_read), or at the end of their lifetime",
            telemetry_timed_out,
        );
        Self { registry, ..m }
    }

    /// Counts one more event of `family` under `reason`.
    pub fn inc_reason(family: &Family<ReasonLabel, Counter>, reason: &str, by: u64) {
        family
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc_by(by);
    }

    /// Counts one more event of `family` with `outcome`.
    pub fn inc_outcome(family: &Family<OutcomeLabel, Counter>, outcome: &str) {
        family
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Renders every metric in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_names_are_exported() {
        let m = Metrics::new();
        m.log_lines_read.inc_by(3);
        Metrics::inc_reason(&m.log_records_dropped, "excluded", 2);
        let text = m.encode();
        for name in [
            "kubeship_build_info{version=",
            "kubeship_log_files_tailed ",
            "kubeship_log_lines_read_total 3",
            "kubeship_log_bytes_read_total ",
            "kubeship_log_records_dropped_total{reason=\"excluded\"} 2",
            "kubeship_log_checkpoint_lag_bytes ",
            "kubeship_inflight_bytes ",
            "kubeship_checkpoint_load_errors_total 0",
            "kubeship_telemetry_connections_rejected_total{reason=\"limit\"} 0",
            "kubeship_telemetry_connections_rejected_total{reason=\"accept_error\"} 0",
            "kubeship_telemetry_connections_timed_out_total{reason=\"header_read\"} 0",
            "kubeship_telemetry_connections_timed_out_total{reason=\"lifetime\"} 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        // Labelled families without a series yet are declared all the same.
        for family in [
            "kube_watch_errors",
            "log_parse_failures",
            "log_lines_malformed",
            "log_file_errors",
            "log_rotations",
            "checkpoint_writes",
            "cloudwatch_requests",
        ] {
            let declared = format!("# TYPE kubeship_{family} counter\n");
            assert!(text.contains(&declared), "missing {declared:?} in\n{text}");
        }
    }
}
