//! Where the metrics pipeline's samples go, started from the config: the
//! remote-write endpoints, or (with none) the local sink. The scraping side pushes
//! into the [`Destination`] [`start`] returns; [`Running::shutdown`] flushes what it
//! can before the deadline.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{MetricsConfig, MetricsSinkConfig};
use crate::metrics::series::Destination;
use crate::metrics::{local, remote_write};
use crate::telemetry::Metrics;

/// The started sink.
pub enum Running {
    /// Remote write: the shards' senders on the runtime.
    RemoteWrite(remote_write::Running),
    /// The local sink's writer thread, writing into the directory.
    Local(local::Running, PathBuf),
}

/// What became of the samples, at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Summary {
    /// Per endpoint.
    RemoteWrite(Vec<remote_write::Summary>),
    /// The local sink's directory.
    Local(PathBuf),
}

/// Starts the configured sink; remote write's senders run on `rt`. Fails on what
/// the sink cannot work without (a directory it cannot create, no AWS region for a
/// SigV4 endpoint, an unreadable CA file).
pub fn start(
    cfg: &MetricsConfig,
    metrics: &Arc<Metrics>,
    rt: &tokio::runtime::Handle,
) -> anyhow::Result<(Arc<dyn Destination>, Running)> {
    let MetricsConfig { sink, .. } = cfg;
    match sink {
        MetricsSinkConfig::RemoteWrite(endpoints) => {
            let (dest, running) = remote_write::start(endpoints, &metrics.remote_write, rt)?;
            Ok((dest, Running::RemoteWrite(running)))
        }
        MetricsSinkConfig::Local { dir } => {
            let (dest, running) = local::start(dir, metrics)?;
            Ok((dest, Running::Local(running, dir.clone())))
        }
    }
}

impl Running {
    /// Stops taking samples and sends or writes what is held until `deadline`.
    /// Call outside the runtime.
    pub fn shutdown(self, deadline: Instant) -> Summary {
        match self {
            Running::RemoteWrite(r) => Summary::RemoteWrite(r.shutdown(deadline)),
            Running::Local(r, dir) => {
                r.shutdown(deadline);
                Summary::Local(dir)
            }
        }
    }
}
