//! Sinks: where batches of records go, and the contract every sink keeps.
//!
//! # The contract
//!
//! - **What a sink receives**: sealed [`Batch`]es on a bounded channel (its depth is
//!   `pipeline.channel_batches`; a full channel stops the tailer, so the files are the
//!   buffer). A batch mixes destinations (log group and stream, [`Batch::dests`]); its
//!   records are written in the [`RecordForm`] the sink asked for when it was started
//!   ([`Running::form`]), each with its length as JSON and its timestamp. Every record
//!   already fits one CloudWatch event (`crate::logs::encode` bounds them).
//! - **How it acknowledges**: exactly once per batch, by [`Ledger::ack`] with the
//!   batch's sequence number, once every record of the batch was delivered or dropped
//!   with a counted reason. Acknowledgements may come in any order; nothing may be
//!   acknowledged before it is delivered (the checkpoint then passes it for good).
//! - **How it drops**: a record the sink gives up on (its peer rejected it, or it can
//!   never be sent) is counted once in `kubeship_log_records_dropped_total{reason}`
//!   (a fixed reason, see DESIGN.md), logged at most once per 10 s per reason, and
//!   then counts as delivered for the acknowledgement. Everything else is retried:
//!   a sink does not drop because its peer is down.
//! - **Progress**: every record handed to a sink leaves it within bounded time,
//!   delivered or dropped, whatever its content. A sink whose peer refuses it says so
//!   (`Health::sink_ok` false: `/readyz` 503); one that is merely slow shows in the
//!   oldest unacknowledged batch's age.
//! - **How it stops**: when the channel closes it delivers what it holds and ends;
//!   [`Running::stop`] waits for that up to the shutdown deadline (what is left is
//!   read again after the restart: its checkpoints did not pass it).
//!
//! Adding a sink (Loki, say): a folder here, a variant of [`SinkConfig`], and one
//! arm in [`start`].

pub mod cloudwatch;
pub mod local;

pub use cloudwatch::CloudWatchSink;
pub use local::LocalSink;

use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::mpsc;

use crate::config::{Config, SinkConfig};
use crate::logs::batch::Batch;
use crate::logs::encode::RecordForm;
use crate::logs::ledger::Ledger;
use crate::telemetry::Metrics;
use crate::telemetry::server::Health;

/// What a sink is started with.
pub struct Context {
    /// The agent's configuration (the sink's own section, pipeline settings).
    pub cfg: Arc<Config>,
    /// Where batches are acknowledged.
    pub ledger: Arc<Ledger>,
    /// Self-metrics.
    pub metrics: Arc<Metrics>,
    /// Where the sink says whether its peer accepts it.
    pub health: Arc<Health>,
    /// The runtime for sinks that are tasks.
    pub rt: tokio::runtime::Handle,
}

/// A started sink.
pub struct Running {
    /// The form the tailer must write records in for this sink.
    pub form: RecordForm,
    /// The local sink's directory, when that is the sink.
    pub local_dir: Option<PathBuf>,
    task: Task,
}

/// How a sink runs: the local sink writes files from a thread of its own, the
/// CloudWatch sink is a task on the runtime.
enum Task {
    Thread(thread::JoinHandle<()>),
    Future(tokio::runtime::Handle, tokio::task::JoinHandle<()>),
}

/// Starts the configured sink, receiving from `batches`. Fails on what the sink
/// cannot work without (a directory it cannot create, no AWS region).
pub fn start(ctx: Context, batches: mpsc::Receiver<Batch>) -> anyhow::Result<Running> {
    let Context {
        cfg,
        ledger,
        metrics,
        health,
        rt,
    } = ctx;
    match &cfg.output.sink {
        SinkConfig::Local { dir } => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating local sink dir {}", dir.display()))?;
            let sink = LocalSink::new(dir.clone(), ledger, metrics);
            let t = thread::Builder::new()
                .name("sink".into())
                .spawn(move || sink.run(batches))?;
            Ok(Running {
                form: RecordForm::Json,
                local_dir: Some(dir.clone()),
                task: Task::Thread(t),
            })
        }
        SinkConfig::CloudWatch(cw) => {
            let api = rt.block_on(cloudwatch::client::Api::new(cw)).map_err(|e| {
                crate::app::ConfigProblem {
                    key: "output.cloudwatch.region",
                    message: e.to_string(),
                }
            })?;
            let sink = CloudWatchSink::new(
                cw.clone(),
                cfg.pipeline.batch_timeout,
                cfg.pipeline.max_inflight_bytes / 2,
                ledger,
                metrics,
                health,
            );
            let task = rt.spawn(sink.run(api, batches));
            Ok(Running {
                form: RecordForm::JsonString,
                local_dir: None,
                task: Task::Future(rt, task),
            })
        }
    }
}

impl Running {
    /// Waits for the sink to end (its channel closed) until `deadline`.
    pub fn stop(self, deadline: Instant) {
        match self.task {
            Task::Thread(t) => {
                let _ = t.join();
            }
            Task::Future(rt, t) => {
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = rt.block_on(async move {
                    tokio::time::timeout(left.max(Duration::from_millis(1)), t).await
                });
            }
        }
    }
}
