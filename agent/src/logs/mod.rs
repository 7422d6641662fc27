//! The log pipeline: discover and tail container logs, enrich, encode and batch their
//! records, deliver them to a sink, and advance checkpoints once they are delivered.
//!
//! ```text
//! discover ─▶ tail ─▶ frame ─▶ partial merge ─▶ multiline ─▶ enrich ─▶ encode ─▶ batch ─▶ sink
//!     ◀──────────── ack (ledger): checkpoint advances only after delivery ────────────┘
//! ```
//!
//! [`start`] loads the checkpoints, starts the sink, subscribes to the pod cache,
//! and starts the tailer thread and the checkpoint writer; [`Handle::shutdown`]
//! stops reading, lets the sink deliver what is in flight until the deadline, and
//! writes the checkpoints a last time.

pub mod batch;
pub mod checkpoint;
pub mod encode;
pub mod enrich;
pub mod ledger;
pub mod metrics;
pub mod route;
pub mod sink;
pub mod tail;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Instant;

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::kube::{Pods, Subscription};
use crate::telemetry::Metrics;
use crate::telemetry::server::Health;
use checkpoint::writer;
use ledger::Ledger;
use tail::{Control, Setup, Summary, Tailer};

/// What the log pipeline takes from the agent's shared services.
pub struct Shared<'a> {
    /// The configuration.
    pub cfg: &'a Arc<Config>,
    /// Self-metrics.
    pub metrics: &'a Arc<Metrics>,
    /// What `/healthz` and `/readyz` report.
    pub health: &'a Arc<Health>,
    /// The runtime (sink tasks, signals).
    pub rt: &'a tokio::runtime::Runtime,
}

/// What a run of the log pipeline did.
#[derive(Clone, Debug)]
pub struct Report {
    /// Records and files handled by the tailer.
    pub summary: Summary,
    /// The local sink's directory, when that is the sink.
    pub local_dir: Option<PathBuf>,
    /// True when everything in flight was delivered before exit.
    pub drained: bool,
}

/// The running log pipeline.
pub struct Handle {
    control: Arc<Control>,
    ledger: Arc<Ledger>,
    metrics: Arc<Metrics>,
    checkpoints: PathBuf,
    watcher: Option<notify::RecommendedWatcher>,
    tailer: thread::JoinHandle<thread::Result<Summary>>,
    tailer_done: Option<oneshot::Receiver<()>>,
    sink: sink::Running,
    writer: writer::Handle,
}

/// Starts the log pipeline; `pods` (when pod metadata is on) gets its subscription
/// before the watch starts. With `exit_on_eof` the tailer stops once every file was
/// read to its end ([`Handle::finished`]).
pub fn start(
    shared: &Shared<'_>,
    pods: Option<&mut Pods>,
    exit_on_eof: bool,
) -> anyhow::Result<Handle> {
    let Shared {
        cfg,
        metrics,
        health,
        rt,
    } = *shared;
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("creating state_dir {}", cfg.state_dir.display()))?;
    let checkpoints = checkpoint::path(&cfg.state_dir);
    let (store, first_start) = checkpoint::load(&checkpoints, metrics);
    let ledger = Arc::new(Ledger::new(store, Arc::clone(metrics)));
    let (batches, received) = mpsc::channel(cfg.pipeline.channel_batches);
    let sink = sink::start(
        sink::Context {
            cfg: Arc::clone(cfg),
            ledger: Arc::clone(&ledger),
            metrics: Arc::clone(metrics),
            health: Arc::clone(health),
            rt: rt.handle().clone(),
        },
        received,
    )?;
    let control = Arc::new(Control {
        health: Arc::clone(health),
        ..Control::default()
    });
    let watcher = watch_containers_dir(cfg, &control);
    let pods = pods.map(|p| p.subscribe(subscription(cfg, &control)));
    let tailer = Tailer::new(Setup {
        cfg: Arc::clone(cfg),
        pods,
        ledger: Arc::clone(&ledger),
        metrics: Arc::clone(metrics),
        control: Arc::clone(&control),
        batches,
        form: sink.form,
        first_start,
        exit_on_eof,
    });
    let (done_tx, tailer_done) = oneshot::channel();
    let tailer = {
        let health = Arc::clone(health);
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
    let writer = writer::Writer {
        ledger: Arc::clone(&ledger),
        path: checkpoints.clone(),
        interval: cfg.pipeline.checkpoint_interval,
        stuck_after: cfg.pipeline.stuck_after,
        metrics: Arc::clone(metrics),
        health: Arc::clone(health),
    }
    .spawn();
    Ok(Handle {
        control,
        ledger,
        metrics: Arc::clone(metrics),
        checkpoints,
        watcher,
        tailer,
        tailer_done: Some(tailer_done),
        sink,
        writer,
    })
}

/// What the log pipeline needs of each pod, and the wake-up of the tailer when the
/// cache changes.
fn subscription(cfg: &Arc<Config>, control: &Arc<Control>) -> Subscription {
    let route_keys: Vec<String> = cfg
        .output
        .group
        .annotation_keys()
        .chain(cfg.output.stream.annotation_keys())
        .map(str::to_owned)
        .collect();
    let k = cfg.kubernetes.clone();
    let c = Arc::clone(control);
    Subscription {
        labels: k.labels
            || cfg.output.group.uses_pod_metadata()
            || cfg.output.stream.uses_pod_metadata(),
        annotation: Box::new(move |key| {
            k.keeps_annotation(key) || route_keys.iter().any(|r| r == key)
        }),
        on_change: Box::new(move || c.waker.wake()),
    }
}

/// An inotify watch on the containers directory that wakes the tailer to list it
/// again; `None` (rescans only) when it cannot be set up.
fn watch_containers_dir(
    cfg: &Config,
    control: &Arc<Control>,
) -> Option<notify::RecommendedWatcher> {
    let c = Arc::clone(control);
    let on_change: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        c.rescan.store(true, Ordering::SeqCst);
        c.waker.wake();
    });
    match tail::watch(&cfg.logs.containers_dir, on_change) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(dir = %cfg.logs.containers_dir.display(), error = %e, "cannot watch the containers directory; relying on rescans");
            None
        }
    }
}

impl Handle {
    /// Completes when the tailer ended by itself (`exit_on_eof`: everything read).
    pub async fn finished(&mut self) {
        match self.tailer_done.as_mut() {
            Some(done) => {
                let _ = done.await;
                self.tailer_done = None;
            }
            None => std::future::pending().await,
        }
    }

    /// Stops reading, lets the sink deliver what is in flight until `deadline`, and
    /// writes the checkpoints (what was not delivered is read again after the restart).
    pub fn shutdown(self, deadline: Instant) -> anyhow::Result<Report> {
        let Handle {
            control,
            ledger,
            metrics,
            checkpoints,
            watcher,
            tailer,
            tailer_done: _,
            sink,
            writer,
        } = self;
        control.stop();
        drop(watcher);
        let summary = match tailer.join() {
            Ok(Ok(s)) => s,
            _ => anyhow::bail!("the tailer thread panicked"),
        };
        let drained = ledger.wait_drained(deadline.saturating_duration_since(Instant::now()));
        let local_dir = sink.local_dir.clone();
        if drained {
            sink.stop(deadline);
        } else {
            tracing::warn!(
                in_flight = ledger.batches_in_flight(),
                "shutdown timeout: undelivered batches will be read again after restart"
            );
        }
        writer.stop();
        writer::write(&ledger, &checkpoints, &metrics);
        Ok(Report {
            summary,
            local_dir,
            drained,
        })
    }
}
