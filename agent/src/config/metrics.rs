//! `metrics:`: the metrics pipeline's settings. Off when the section is absent.
//!
//! Two parts, each converted in a file of its own: what is scraped and how
//! (`scrape`: targets from pod annotations, the node's kubelet, the agent itself,
//! static targets; intervals, limits, labels, relabeling) and where samples go
//! (`remote_write` endpoints, else the embedded local sink).

use serde::Deserialize;

use super::scrape::{self, RawScrape, ScrapeConfig};
use super::validate::{Context, Problems};

/// `metrics:` as written.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawMetrics {
    /// `metrics.scrape` (config/scrape.rs).
    #[serde(default)]
    pub scrape: RawScrape,
}

/// `metrics:`: the metrics pipeline, on when the section is present.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// `scrape`: targets, intervals, limits, labels, relabeling.
    pub scrape: ScrapeConfig,
}

/// Checks and converts `metrics:`; `None` when the section is absent (the pipeline
/// is off).
pub(super) fn convert(
    raw: Option<RawMetrics>,
    context: &Context<'_>,
    problems: &mut Problems<'_>,
) -> Option<MetricsConfig> {
    let RawMetrics { scrape } = raw?;
    Some(MetricsConfig {
        scrape: scrape::convert(scrape, context, problems),
    })
}
