//! The agent's start-up script, in the order of DESIGN.md's data flow: the shared
//! services (configuration, self-telemetry, the pod watch), then each pipeline
//! (`logs::start`, `metrics::start`), then the wait for a signal (or, with `--exit-on-eof`, for
//! the logs to be read), then shutdown in reverse, within `shutdown_timeout_secs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::config::Config;
use crate::kube::Pods;
use crate::logs;
use crate::metrics::scrape;
use crate::telemetry::Metrics;
use crate::telemetry::server::{self, Health};

/// What a run did.
pub struct Report {
    /// The log pipeline.
    pub logs: logs::Report,
    /// The metrics pipeline, when it ran.
    pub metrics: Option<crate::metrics::sink::Summary>,
}

/// When the executable's pages that only start-up used are given back
/// ([`crate::memory`]) at the latest; at the first delivery when that is sooner.
const RELEASE_STARTUP_CODE_AFTER: Duration = Duration::from_secs(10);

/// When they are given back a second time: after every scrape target's first scrape
/// (the default interval is 30 s) and the first requests of each destination, whose
/// one-time code (connection and TLS set-up, building each series) ran after the first
/// release and is not needed again.
const RELEASE_FIRST_RUN_CODE_AFTER: Duration = Duration::from_secs(60);

/// Options of `kubeship run`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Exit once every file was read to its end and delivered, and every scrape target
    /// found at start was scraped once.
    pub exit_on_eof: bool,
}

/// A setting the config file left to the environment and the environment lacks too,
/// found when `kubeship run` starts (`validate` cannot see it): the run stops before
/// reading anything and exits with the bad-config code.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigProblem {
    /// Dotted key path of the setting, e.g. `output.cloudwatch.region`.
    pub key: &'static str,
    /// What is missing and where it may be given.
    pub message: String,
}

/// Runs the agent until a signal (or end of input with `exit_on_eof`).
pub fn run(cfg: Config, opts: RunOptions) -> anyhow::Result<Report> {
    crate::memory::tune_allocator();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    // Signals first: a SIGTERM during start-up must shut down cleanly too.
    let mut signals = Signals::new(&rt)?;
    let cfg = Arc::new(cfg);

    // Shared services.
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let mut pods = Pods::connect(&rt, &cfg)?;
    if let Some(addr) = cfg.telemetry.listen {
        let (bound, _task) = rt
            .block_on(server::serve(
                addr,
                Arc::clone(&metrics),
                Arc::clone(&health),
            ))
            .with_context(|| format!("binding telemetry listen_addr {addr}"))?;
        tracing::info!(addr = %bound, "telemetry listening");
    }
    let shared = logs::Shared {
        cfg: &cfg,
        metrics: &metrics,
        health: &health,
        rt: &rt,
    };

    // The pipelines, then the pod watch they subscribed to.
    let mut logs = logs::start(&shared, pods.as_mut(), opts.exit_on_eof)?;
    let metrics_pipeline = crate::metrics::start(
        &scrape::Context {
            cfg: &cfg,
            metrics: &metrics,
            rt: rt.handle(),
        },
        pods.as_mut(),
    )?;
    if let Some(pods) = pods {
        pods.start(rt.handle(), &metrics);
    }
    schedule_code_release(&rt, &metrics);

    // Until a signal, or (exit_on_eof) the logs are read and every scrape target found
    // at start was scraped once.
    rt.block_on(async {
        tokio::select! {
            why = signals.recv() => tracing::info!("{why}: shutting down"),
            () = async {
                logs.finished().await;
                if let Some(pipeline) = &metrics_pipeline {
                    pipeline.scraped_once().await;
                }
            } => {},
        }
    });

    // Shutdown, in reverse.
    health
        .ready
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let deadline = Instant::now() + cfg.shutdown_timeout;
    let metrics_summary = metrics_pipeline.map(|pipeline| pipeline.shutdown(deadline));
    let logs = logs.shutdown(deadline)?;
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(Report {
        logs,
        metrics: metrics_summary,
    })
}

/// Start-up is over once a batch was delivered or a scrape handed its samples on
/// (config, clients, credentials, the pod list, the first request or scrape), or after
/// a while in any case: lets the kernel take back the code only start-up ran
/// ([`crate::memory`]) before the first scrapes build their series (which would
/// otherwise add to it at the peak); and once more after the first minute, for the
/// code only the first scrapes and requests ran.
fn schedule_code_release(rt: &tokio::runtime::Runtime, metrics: &Arc<Metrics>) {
    let acked = metrics.logs.batches_acked.clone();
    let scraped = metrics
        .scrape
        .scrapes
        .get_or_create(&[("outcome", crate::metrics::scrape::metrics::Outcome::Ok)])
        .clone();
    rt.spawn(async move {
        let t0 = Instant::now();
        while acked.get() == 0 && scraped.get() == 0 && t0.elapsed() < RELEASE_STARTUP_CODE_AFTER {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        release("start-up");
        tokio::time::sleep_until((t0 + RELEASE_FIRST_RUN_CODE_AFTER).into()).await;
        release("first-run");
    });
}

/// Gives back the code pages used since the last time (see [`crate::memory`]).
fn release(what: &'static str) {
    match crate::memory::release_code_pages() {
        Ok(bytes) => tracing::debug!(bytes, what, "code pages released"),
        Err(e) => tracing::debug!(error = %e, what, "could not release code pages"),
    }
}

/// SIGTERM and SIGINT.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new(rt: &tokio::runtime::Runtime) -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let _guard = rt.enter();
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The name of the next signal received.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
