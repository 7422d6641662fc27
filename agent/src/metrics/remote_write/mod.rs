//! Prometheus remote write 1.0 to one or more endpoints, each with its own queue.
//!
//! ```text
//! push(scrape's samples) ─▶ endpoint 1: shards by series hash ─▶ one request at a time each
//!                        └▶ endpoint 2: …
//! ```
//!
//! [`RemoteWrite`] is the scraping side's [`Destination`]: a push encodes the samples
//! into every endpoint's [`queue::Queue`] ([`proto`]: protobuf, snappy, in chunks per
//! shard) and never waits. Each shard's sender (`send.rs`, a task on the agent's
//! runtime) takes batches of up to `max_samples_per_send` samples, joins their chunks
//! into one request and sends it ([`client`]) until it is accepted or refused; a failing endpoint
//! pauses all its shards and probes ([`gate`]). [`start`] builds the endpoints from
//! the config and spawns the senders; [`Running::shutdown`] stops taking samples,
//! sends what is held until the deadline and counts the rest as dropped.
//!
//! What it does not do: it keeps nothing on disk (samples wait in memory, bounded
//! per endpoint by `max_pending_samples`), and it does not send metadata or
//! exemplars.

pub mod client;
pub mod gate;
pub mod metrics;
pub mod proto;
pub mod queue;
mod send;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_config::BehaviorVersion;

use crate::app::ConfigProblem;
use crate::aws::creds::{CredentialCache, LOAD_TIMEOUT};
use crate::config::{Auth, RemoteWriteConfig};
use crate::metrics::series::{Destination, Sample};
use crate::telemetry::LogLimits;
use client::{Aws, Client};
use gate::Gate;
use metrics::{EndpointMetrics, RemoteWriteMetrics};
use queue::Queue;

/// One endpoint: its queue, client, pause state and metrics.
pub(crate) struct Endpoint {
    name: String,
    queue: Queue,
    client: Client,
    gate: Gate,
    metrics: EndpointMetrics,
    /// Rate limits of this endpoint's log lines.
    limits: Mutex<LogLimits>,
    /// The newest timestamp accepted, in ms.
    highest_ms: Mutex<Option<i64>>,
}

/// The remote-write endpoints as the scraping side's destination.
pub struct RemoteWrite {
    endpoints: Vec<Arc<Endpoint>>,
}

impl Destination for RemoteWrite {
    fn push(&self, samples: Vec<Sample>) {
        for e in &self.endpoints {
            let dropped = e.queue.push(&samples);
            if dropped > 0 {
                e.log_limited("dropped", |suppressed| {
                    tracing::warn!(
                        endpoint = %e.name,
                        dropped,
                        suppressed,
                        "remote write: pending samples at their bound (max_pending_samples); \
                         the oldest were dropped"
                    );
                });
            }
        }
    }
}

impl Endpoint {
    /// Runs `log` unless a line for `reason` was logged in the last 10 s.
    fn log_limited(&self, reason: &'static str, log: impl FnOnce(u64)) {
        let allowed = self
            .limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(reason, std::time::Instant::now());
        if let Some(suppressed) = allowed {
            log(suppressed);
        }
    }
}

/// What became of one endpoint's samples, at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The endpoint's name.
    pub endpoint: String,
    /// Samples accepted.
    pub sent: u64,
    /// Samples refused (4xx other than 429).
    pub failed: u64,
    /// Samples dropped (pending bound, shutdown).
    pub dropped: u64,
}

/// The running senders.
pub struct Running {
    rt: tokio::runtime::Handle,
    endpoints: Vec<Arc<Endpoint>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Builds the endpoints of `cfgs` (SigV4 ones with credentials from the AWS chain)
/// and spawns their shards' senders on `rt`. Fails on what no request could do
/// without: no AWS region for a SigV4 endpoint, an unreadable CA file.
pub fn start(
    cfgs: &[RemoteWriteConfig],
    metrics: &RemoteWriteMetrics,
    rt: &tokio::runtime::Handle,
) -> anyhow::Result<(Arc<RemoteWrite>, Running)> {
    let endpoints = rt.block_on(build(cfgs, metrics))?;
    Ok(spawn(endpoints, rt))
}

/// The endpoints of `cfgs`, not started.
pub(crate) async fn build(
    cfgs: &[RemoteWriteConfig],
    metrics: &RemoteWriteMetrics,
) -> Result<Vec<Arc<Endpoint>>, ConfigProblem> {
    let needs_aws = cfgs.iter().any(|c| matches!(c.auth, Auth::SigV4 { .. }));
    let shared = if needs_aws {
        Some(aws_config::defaults(BehaviorVersion::latest()).load().await)
    } else {
        None
    };
    let creds = shared
        .as_ref()
        .map(|s| Arc::new(CredentialCache::new(s.credentials_provider(), LOAD_TIMEOUT)));
    let mut endpoints = Vec::with_capacity(cfgs.len());
    for cfg in cfgs {
        let aws = match (&cfg.auth, &shared, &creds) {
            (Auth::SigV4 { region }, Some(shared), Some(creds)) => {
                let region = region
                    .clone()
                    .or_else(|| shared.region().map(ToString::to_string))
                    .ok_or_else(|| ConfigProblem {
                        key: "metrics.remote_write.sigv4.region",
                        message: format!(
                            "no AWS region for endpoint `{}`: set its sigv4.region in the config \
                             or AWS_REGION in the environment (AWS_DEFAULT_REGION, the AWS \
                             profile and instance metadata gave none either)",
                            cfg.name
                        ),
                    })?;
                Some(Aws {
                    creds: Arc::clone(creds),
                    region,
                })
            }
            _ => None,
        };
        let client = Client::new(cfg, aws).map_err(|message| ConfigProblem {
            key: "metrics.remote_write",
            message: format!("endpoint `{}`: {message}", cfg.name),
        })?;
        let m = metrics.endpoint(&cfg.name);
        endpoints.push(Arc::new(Endpoint {
            name: cfg.name.clone(),
            queue: Queue::new(
                cfg.shards,
                cfg.max_pending_samples,
                cfg.max_samples_per_send,
                cfg.batch_send_deadline,
                m.clone(),
            ),
            client,
            gate: Gate::default(),
            metrics: m,
            limits: Mutex::new(LogLimits::default()),
            highest_ms: Mutex::new(None),
        }));
    }
    Ok(endpoints)
}

/// Spawns every shard's sender on `rt`.
pub(crate) fn spawn(
    endpoints: Vec<Arc<Endpoint>>,
    rt: &tokio::runtime::Handle,
) -> (Arc<RemoteWrite>, Running) {
    let mut tasks = Vec::new();
    for e in &endpoints {
        for shard in 0..e.queue.shards() {
            tasks.push(rt.spawn(send::run_shard(Arc::clone(e), shard)));
        }
        tracing::info!(
            endpoint = %e.name,
            shards = e.queue.shards(),
            "remote write started"
        );
    }
    let destination = Arc::new(RemoteWrite {
        endpoints: endpoints.clone(),
    });
    (
        destination,
        Running {
            rt: rt.clone(),
            endpoints,
            tasks,
        },
    )
}

impl Running {
    /// Stops taking samples, sends what is held until `deadline` (retrying as
    /// usual), and counts what is left as dropped. Call outside the runtime.
    pub fn shutdown(self, deadline: Instant) -> Vec<Summary> {
        let rt = self.rt.clone();
        rt.block_on(self.stop(deadline))
    }

    /// [`Running::shutdown`] from inside the runtime.
    pub async fn stop(self, deadline: Instant) -> Vec<Summary> {
        let Running {
            rt: _,
            endpoints,
            tasks,
        } = self;
        for e in &endpoints {
            e.queue.close();
        }
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        let all = futures::future::join_all(tasks);
        let finished = tokio::time::timeout_at(deadline.into(), all).await.is_ok();
        if !finished {
            for a in &aborts {
                a.abort();
            }
            // Let the aborted senders unwind before counting what they held.
            while aborts.iter().any(|a| !a.is_finished()) {
                tokio::task::yield_now().await;
            }
        }
        endpoints
            .iter()
            .map(|e| {
                let left = e.queue.held();
                if left > 0 {
                    e.metrics.dropped.inc_by(left as u64);
                    e.metrics.pending.dec_by(left as i64);
                    tracing::warn!(
                        endpoint = %e.name,
                        dropped = left,
                        "remote write: samples not sent before the shutdown deadline"
                    );
                }
                Summary {
                    endpoint: e.name.clone(),
                    sent: e.metrics.sent.get(),
                    failed: e.metrics.failed.get(),
                    dropped: e.metrics.dropped.get(),
                }
            })
            .collect()
    }
}
