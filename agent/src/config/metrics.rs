//! `metrics:`: the metrics pipeline's settings. Off when the section is absent.
//!
//! Two parts, each converted in a file of its own: what is scraped and how
//! (`scrape`: targets from pod annotations, the node's kubelet, the agent itself,
//! static targets; intervals, limits, labels, relabeling) and where samples go
//! (`remote_write` endpoints, else the embedded local sink).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::raw::Spanned;
use super::remote_write::{MetricsSinkConfig, RawMetricsLocal, RawRemoteWrite};
use super::scrape::{self, RawScrape, ScrapeConfig};
use super::validate::{Context, Problems};

/// `metrics:` as written.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawMetrics {
    /// `metrics.scrape` (config/scrape.rs).
    #[serde(default)]
    pub scrape: RawScrape,
    /// Remote-write endpoints (`remote_write.rs`).
    #[serde(default)]
    pub remote_write: Vec<Spanned<RawRemoteWrite>>,
    /// The local sink, the default without an endpoint.
    #[serde(default)]
    pub local: Option<RawMetricsLocal>,
    /// Labels every sample gets (when its target lacks them); default
    /// `cluster: <cluster>`.
    #[serde(default)]
    pub external_labels: Option<BTreeMap<String, Spanned<String>>>,
}

/// `metrics:`: the metrics pipeline, on when the section is present.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// `scrape`: targets, intervals, limits, labels, relabeling.
    pub scrape: ScrapeConfig,
    /// Where samples go: `remote_write` endpoints, else the local sink.
    pub sink: MetricsSinkConfig,
}

/// Checks and converts `metrics:`; `None` when the section is absent (the pipeline
/// is off).
pub(super) fn convert(
    raw: Option<RawMetrics>,
    cluster: &str,
    state_dir: &Path,
    context: &Context<'_>,
    problems: &mut Problems<'_>,
) -> Option<MetricsConfig> {
    let RawMetrics {
        scrape,
        remote_write,
        local,
        external_labels,
    } = raw?;
    let mut scrape = scrape::convert(scrape, context, problems);
    scrape.external_labels = scrape::convert_external_labels(external_labels, cluster, problems);
    let sink = super::remote_write::convert(remote_write, local, state_dir, context, problems);
    Some(MetricsConfig { scrape, sink })
}
