//! The agent, wired together. Reads like the data flow in DESIGN.md:
//!
//! ```text
//! discover ─▶ tail ─▶ frame ─▶ partial merge ─▶ multiline ─▶ encode ─▶ batch ─▶ sink
//!     ◀──────────── ack: checkpoint advances only after delivery ────────────┘
//! ```
//!
//! [`run`] checks what only the environment can tell (a CloudWatch sink needs an AWS
//! region), loads the checkpoints, starts the sink thread, the tailer thread, the
//! checkpoint writer and the telemetry endpoint, then waits for SIGTERM/SIGINT (or,
//! with `exit_on_eof`, for the tailer to finish). Shutdown: stop reading, let the
//! sink drain what is in flight within `shutdown_timeout`, write checkpoints.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot};

use crate::checkpoint::Store;
use crate::config::{Config, KubeSource, SinkConfig};
use crate::kube::{self, PodCache};
use crate::ledger::Ledger;
use crate::persist;
use crate::sink::cloudwatch::client::Api;
use crate::sink::{CloudWatchSink, LocalSink};
use crate::tail::{Control, Summary, Tailer};
use crate::telemetry::Metrics;
use crate::telemetry::server;

/// When the executable's pages that only start-up used are given back
/// ([`crate::memory`]) at the latest; at the first delivery when that is sooner.
const RELEASE_STARTUP_CODE_AFTER: Duration = Duration::from_secs(10);

/// Options of `kubeship run`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Exit once every file was read to its end and delivered.
    pub exit_on_eof: bool,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Report {
    /// Records and files handled by the tailer.
    pub summary: Summary,
    /// The local sink's directory, when that is the sink.
    pub local_dir: Option<PathBuf>,
    /// True when everything in flight was delivered before exit.
    pub drained: bool,
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

/// The checkpoint file inside the state directory.
pub fn checkpoint_path(state_dir: &Path) -> PathBuf {
    state_dir.join("checkpoints.json")
}

/// Loads checkpoints; also says whether there are none to go on (the first start,
/// where `logs.read_from` applies). A corrupt or unreadable file is set aside
/// (never silently reused; counted in `checkpoint_load_errors_total`) and the start
/// is a first start: files are read as `read_from` says (from their beginnings by
/// default: duplicates, not loss).
fn load_store(path: &Path, metrics: &Metrics) -> (Store, bool) {
    match Store::load(path) {
        Ok(Some(s)) => (s, false),
        Ok(None) => (Store::default(), true),
        Err(e) => {
            metrics.checkpoint_load_errors.inc();
            let unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let aside = path.with_extension(format!("json.corrupt-{unix}"));
            match std::fs::rename(path, &aside) {
                Ok(()) => {
                    tracing::error!(error = %e, moved_to = %aside.display(), "checkpoint file unreadable; set aside, starting as on a first start (logs.read_from applies)");
                }
                Err(re) => {
                    tracing::error!(error = %e, rename_error = %re, "checkpoint file unreadable and could not be set aside; starting as on a first start (logs.read_from applies)");
                }
            }
            (Store::default(), true)
        }
    }
}

/// Runs the agent until a signal (or end of input with `exit_on_eof`).
pub fn run(cfg: Config, opts: RunOptions) -> anyhow::Result<Report> {
    // Signals first: a SIGTERM during start-up must shut down cleanly too.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (mut term, mut int) = {
        let _guard = rt.enter();
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        )
    };
    let output = match &cfg.output.sink {
        SinkConfig::Local { dir } => Output::Local(dir.clone()),
        SinkConfig::CloudWatch(cw) => {
            let api = rt.block_on(Api::new(cw)).map_err(|e| ConfigProblem {
                key: "output.cloudwatch.region",
                message: e.to_string(),
            })?;
            Output::CloudWatch(cw.clone(), Box::new(api))
        }
    };
    let cfg = Arc::new(cfg);
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("creating state_dir {}", cfg.state_dir.display()))?;
    let metrics = Arc::new(Metrics::new());
    let ckpt_path = checkpoint_path(&cfg.state_dir);
    let (store, first_start) = load_store(&ckpt_path, &metrics);
    let ledger = Arc::new(Ledger::new(store, Arc::clone(&metrics)));
    let control = Arc::new(Control::default());
    let health = Arc::clone(&control.health);

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

    let (tx, rx) = mpsc::channel(cfg.pipeline.channel_batches);
    let (sink, local_dir) = match output {
        Output::Local(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating local sink dir {}", dir.display()))?;
            let sink = LocalSink::new(dir.clone(), Arc::clone(&ledger), Arc::clone(&metrics));
            let t = thread::Builder::new()
                .name("sink".into())
                .spawn(move || sink.run(rx))?;
            (SinkTask::Thread(t), Some(dir))
        }
        Output::CloudWatch(cw, api) => {
            let sink = CloudWatchSink::new(
                cw,
                cfg.pipeline.batch_timeout,
                cfg.pipeline.max_inflight_bytes / 2,
                Arc::clone(&ledger),
                Arc::clone(&metrics),
                Arc::clone(&health),
            );
            (SinkTask::Task(rt.spawn(sink.run(*api, rx))), None)
        }
    };

    let watcher = {
        let c = Arc::clone(&control);
        let on_change: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            c.rescan.store(true, Ordering::SeqCst);
            c.waker.wake();
        });
        match crate::tail::watch(&cfg.logs.containers_dir, on_change) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %cfg.logs.containers_dir.display(), error = %e, "cannot watch the containers directory; relying on rescans");
                None
            }
        }
    };

    let pods = match &cfg.kubernetes.source {
        Some(source) => Some(start_pod_watch(&rt, &cfg, source, &control, &metrics)?),
        None => {
            tracing::info!(
                "pod metadata off (no service account, no kubernetes.kubeconfig, or kubernetes.enabled: false): records carry what the log path tells"
            );
            None
        }
    };

    let (done_tx, done_rx) = oneshot::channel();
    let tailer = Tailer::new(
        Arc::clone(&cfg),
        pods,
        Arc::clone(&ledger),
        Arc::clone(&metrics),
        Arc::clone(&control),
        tx,
        first_start,
        opts.exit_on_eof,
    );
    let tailer_thread = {
        let health = Arc::clone(&health);
        thread::Builder::new()
            .name("tailer".into())
            .spawn(move || {
                health.alive.store(true, Ordering::SeqCst);
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tailer.run()));
                health.alive.store(false, Ordering::SeqCst);
                let _ = done_tx.send(());
                r
            })?
    };
    let ckpt_thread = persist::Writer {
        ledger: Arc::clone(&ledger),
        path: ckpt_path.clone(),
        interval: cfg.pipeline.checkpoint_interval,
        stuck_after: cfg.pipeline.stuck_after,
        metrics: Arc::clone(&metrics),
        health: Arc::clone(&health),
    }
    .spawn();

    // Start-up is over once a batch was delivered (config, clients, credentials,
    // the pod list, the first request), or after a while in any case: let the
    // kernel take back the code only it ran.
    let acked = metrics.batches_acked.clone();
    rt.spawn(async move {
        let t0 = Instant::now();
        while acked.get() == 0 && t0.elapsed() < RELEASE_STARTUP_CODE_AFTER {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match crate::memory::release_startup_code() {
            Ok(bytes) => tracing::debug!(bytes, "start-up code released"),
            Err(e) => tracing::debug!(error = %e, "could not release start-up code"),
        }
    });

    rt.block_on(async {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            _ = done_rx => {},
        }
    });
    health.ready.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + cfg.shutdown_timeout;
    control.stop();
    drop(watcher);
    let summary = match tailer_thread.join() {
        Ok(Ok(s)) => s,
        _ => anyhow::bail!("the tailer thread panicked"),
    };
    let drained = ledger.wait_drained(deadline.saturating_duration_since(Instant::now()));
    if drained {
        match sink {
            SinkTask::Thread(t) => {
                let _ = t.join();
            }
            SinkTask::Task(t) => {
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = rt.block_on(async move { tokio::time::timeout(left, t).await });
            }
        }
    } else {
        tracing::warn!(
            in_flight = ledger.batches_in_flight(),
            "shutdown timeout: undelivered batches will be read again after restart"
        );
    }
    ckpt_thread.stop();
    persist::write(&ledger, &ckpt_path, &metrics);
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(Report {
        summary,
        local_dir,
        drained,
    })
}

/// Builds the API client (a bad kubeconfig or service account stops the start,
/// with the reason) and starts the pod watch; returns the cache it fills.
fn start_pod_watch(
    rt: &tokio::runtime::Runtime,
    cfg: &Arc<Config>,
    source: &KubeSource,
    control: &Arc<Control>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Arc<PodCache>> {
    let client = rt.block_on(kube::watch::client(source))?;
    let c = Arc::clone(control);
    let cache = Arc::new(PodCache::new(Box::new(move || c.waker.wake())));
    let route_keys: Vec<String> = cfg
        .output
        .group
        .annotation_keys()
        .chain(cfg.output.stream.annotation_keys())
        .map(str::to_owned)
        .collect();
    let k = cfg.kubernetes.clone();
    let keep = kube::watch::KeepRules {
        labels: k.labels
            || cfg.output.group.uses_pod_metadata()
            || cfg.output.stream.uses_pod_metadata(),
        annotation: Box::new(move |key| {
            k.keeps_annotation(key) || route_keys.iter().any(|r| r == key)
        }),
    };
    tracing::info!(node = %cfg.node_name, namespace_labels = cfg.kubernetes.namespace_labels, "watching this node's pods for metadata");
    rt.spawn(kube::watch::run(
        client,
        cfg.node_name.clone(),
        cfg.kubernetes.clone(),
        keep,
        Arc::clone(&cache),
        Arc::clone(metrics),
    ));
    Ok(cache)
}

/// The configured sink, with what it needs from the environment.
enum Output {
    /// The local sink's directory.
    Local(PathBuf),
    /// The CloudWatch sink's settings and its client (region resolved).
    CloudWatch(crate::config::CloudWatchConfig, Box<Api>),
}

/// The running sink: the local sink is a thread, the CloudWatch sink a task.
enum SinkTask {
    Thread(thread::JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}
