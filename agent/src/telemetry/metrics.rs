//! The agent's own Prometheus metrics (`kubeship_*`): one registry, filled by each
//! component with its own metrics (`register(&mut Registry)`, as linkerd2-proxy does):
//! the log pipeline ([`crate::logs::metrics`]), its sinks, the pod watch, the metrics
//! pipeline's scrapes ([`crate::metrics::scrape::metrics`]) and remote write, and the
//! telemetry endpoint.
//!
//! Every name is part of the self-telemetry contract in DESIGN.md: the dashboards
//! and alerts query them, and a test compares the table there with `/metrics`. No
//! metric carries a per-pod label: label values are enums of a fixed set
//! ([`label_values!`](crate::telemetry::metrics::label_values)), every one of which is
//! on `/metrics` from the start (at 0). Hot paths add to these counters once per chunk
//! or batch, never once per line.

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::kube::metrics::KubeMetrics;
use crate::logs::metrics::LogMetrics;
use crate::logs::sink::cloudwatch::metrics::CloudWatchMetrics;
use crate::logs::sink::local::LocalSinkMetrics;
use crate::metrics::local::MetricsLocalSinkMetrics;
use crate::metrics::remote_write::metrics::RemoteWriteMetrics;
use crate::metrics::scrape::metrics::ScrapeMetrics;
use crate::telemetry::server::ServerMetrics;

/// One label with a value of a fixed set (an enum declared by [`label_values!`]).
pub type Labels<V> = [(&'static str, V); 1];

/// A counter family with one label of fixed values.
pub type CounterBy<V> = Family<Labels<V>, Counter>;

/// Declares an enum of label values: its variants, the text of each, `ALL`, and its
/// encoding as a Prometheus label value.
macro_rules! label_values {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            #[allow(dead_code)]
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The label value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl prometheus_client::encoding::EncodeLabelValue for $name {
            fn encode(
                &self,
                encoder: &mut prometheus_client::encoding::LabelValueEncoder,
            ) -> Result<(), std::fmt::Error> {
                use std::fmt::Write as _;
                encoder.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use label_values;

/// Registers `family` under `name` with every value of its label (`key`) present
/// from the start, at 0.
pub fn register_by<V: Copy + std::hash::Hash + Eq + Send + Sync + std::fmt::Debug + 'static>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    key: &'static str,
    all: &[V],
    family: &CounterBy<V>,
) where
    Labels<V>: EncodeLabelSet,
{
    for &v in all {
        let _ = family.get_or_create(&[(key, v)]);
    }
    registry.register(name, help, Declared(family.clone()));
}

/// A labelled family registered so that its `# HELP` and `# TYPE` lines are written
/// before its first series too (prometheus-client leaves an empty family out
/// altogether): every name of the contract is on `/metrics` from the start, so a
/// scraper, a dashboard's author or a test can tell a name that does not exist from a
/// counter that did not move yet.
#[derive(Debug)]
pub struct Declared<M>(pub M);

impl<M: EncodeMetric> EncodeMetric for Declared<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

/// Label set of `kubeship_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// All self-metrics of the agent, by component.
pub struct Metrics {
    registry: Registry,
    /// The log pipeline: tailer, ledger, checkpoints.
    pub logs: LogMetrics,
    /// The embedded local sink.
    pub local_sink: LocalSinkMetrics,
    /// The CloudWatch Logs sink.
    pub cloudwatch: CloudWatchMetrics,
    /// The pod watch and cache.
    pub kube: KubeMetrics,
    /// The metrics pipeline's scrapes (registered even when the pipeline is off).
    pub scrape: ScrapeMetrics,
    /// The metrics pipeline's remote write (per endpoint).
    pub remote_write: RemoteWriteMetrics,
    /// The metrics pipeline's local sink.
    pub metrics_local_sink: MetricsLocalSinkMetrics,
    /// The telemetry endpoint itself.
    pub server: ServerMetrics,
}

impl Metrics {
    /// Creates the registry and lets every component register its metrics.
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
        let logs = LogMetrics::register(&mut registry);
        let kube = KubeMetrics::register(&mut registry);
        let local_sink = LocalSinkMetrics::register(&mut registry);
        let cloudwatch = CloudWatchMetrics::register(&mut registry);
        let scrape = ScrapeMetrics::register(&mut registry);
        let server = ServerMetrics::register(&mut registry);
        let remote_write = RemoteWriteMetrics::register(&mut registry);
        let metrics_local_sink = MetricsLocalSinkMetrics::register(&mut registry);
        Self {
            registry,
            logs,
            local_sink,
            cloudwatch,
            kube,
            scrape,
            remote_write,
            metrics_local_sink,
            server,
        }
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
    use crate::logs::metrics::DropReason;

    #[test]
    fn components_register_their_metrics_with_every_label_value() {
        let m = Metrics::new();
        m.logs.log_lines_read.inc_by(3);
        m.logs.dropped(DropReason::Excluded, 2);
        let text = m.encode();
        for name in [
            "kubeship_build_info{version=",
            "kubeship_log_files_tailed ",
            "kubeship_log_lines_read_total 3",
            "kubeship_log_records_dropped_total{reason=\"excluded\"} 2",
            "kubeship_log_records_dropped_total{reason=\"too_old\"} 0",
            "kubeship_log_checkpoint_lag_bytes ",
            "kubeship_inflight_bytes ",
            "kubeship_checkpoint_load_errors_total 0",
            "kubeship_cloudwatch_requests_total{outcome=\"no_group\"} 0",
            "kubeship_kube_watch_errors_total{resource=\"namespaces\"} 0",
            "kubeship_telemetry_connections_rejected_total{reason=\"limit\"} 0",
            "kubeship_telemetry_connections_timed_out_total{reason=\"lifetime\"} 0",
            "kubeship_local_sink_write_errors_total 0",
            "kubeship_scrape_targets{state=\"down\"} 0",
            "kubeship_scrapes_total{outcome=\"sample_limit\"} 0",
            "kubeship_scrapes_total{outcome=\"series_limit\"} 0",
            "kubeship_scrapes_total{outcome=\"body_budget\"} 0",
            "kubeship_scrape_duration_seconds_count 0",
            "kubeship_scrape_samples_total 0",
            "kubeship_scrape_parse_errors_total{reason=\"missing_eof\"} 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
