//! The tailer: one thread that reads every container log and builds batches.
//!
//! Data flow, per round: discover containers (on change, and every rescan) → poll
//! each container stream in turn, one chunk each (fair: a busy container cannot
//! starve a quiet one for more than a chunk) → decode lines into the open batch →
//! seal the batch when full, when the round found nothing new, or when it is
//! `batch_timeout` old → submit it to the ledger and send it to the sink. Sending
//! blocks when the channel is full or too many bytes are unacknowledged: files are
//! the buffer. The thread sleeps only when a round found nothing.

mod containers;
mod decode;
mod discover;
mod file;
mod names;
mod stream;

pub use decode::ContainerInfo;
pub use discover::watch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::config::Config;
use crate::kube::PodCache;
use crate::logs::batch::{Batch, BatchBuilder, Mark};
use crate::logs::encode::RecordForm;
use crate::logs::enrich::Enricher;
use crate::logs::ledger::Ledger;
use crate::logs::metrics::{DropReason, Framing, ReducedPart};
use crate::telemetry::server::Health;
use crate::telemetry::{LogLimits, Metrics};
use decode::{BatchTarget, Counters};
use stream::{ContainerStream, Poll, PollContext, Settings};

/// Wakes the tailer early (new containers, shutdown).
#[derive(Default)]
pub struct Waker {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Waker {
    /// Wakes the tailer if it sleeps, or makes its next sleep return at once.
    pub fn wake(&self) {
        *self.flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_one();
    }

    fn sleep(&self, timeout: Duration) -> bool {
        let mut g = self.flag.lock().unwrap_or_else(|p| p.into_inner());
        if !*g {
            g = self
                .cv
                .wait_timeout(g, timeout)
                .map(|r| r.0)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        std::mem::replace(&mut *g, false)
    }
}

/// Shared switches between the tailer and the rest of the agent.
#[derive(Default)]
pub struct Control {
    /// Stop reading (shutdown).
    pub stop: AtomicBool,
    /// The containers directory changed.
    pub rescan: AtomicBool,
    /// Wakes the tailer.
    pub waker: Waker,
    /// What `/healthz` and `/readyz` report; ready once the first discovery ran.
    pub health: Arc<Health>,
}

impl Control {
    /// Asks the tailer to stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.wake();
    }
}

/// How the tailer ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Records handed to the sink.
    pub records: u64,
    /// Files read.
    pub files: u64,
}

/// Bad input counted but not yet reported in a log line.
#[derive(Debug, Default)]
struct Unlogged {
    malformed: u64,
    truncated: u64,
    reduced: u64,
    invalid_utf8: u64,
}

/// Bytes a stream may read now: what the open batch has room for at its
/// `expansion` (batch bytes per byte read; records carry metadata, a 200-byte line
/// with pod metadata becomes a 1.2 KB record), between [`MIN_READ`] and `chunk`.
/// A full chunk's records could pass the batch size several times over, and the
/// batch buffer would grow (and stay grown in the pool) to hold them.
fn read_size(chunk: usize, room: usize, expansion: f32) -> usize {
    ((room as f32 / expansion.max(0.25)) as usize).clamp(MIN_READ.min(chunk), chunk)
}

/// The tailer's estimate of batch bytes per byte read before any read told: high,
/// so that the first reads do not overshoot the batch (a 20-byte line with pod
/// metadata becomes a record 50 times larger; path metadata only, 2 to 3). A stream's
/// first read then starts from what all streams' reads showed, since a stream reads
/// only a dozen times in a drain of a few MB per container.
const INITIAL_EXPANSION: f32 = 16.0;

/// The smallest read: a batch that is nearly full still gets a useful read (and
/// then overshoots its size by at most this much input's records).
const MIN_READ: usize = 4096;

/// The tailer thread's state.
pub struct Tailer {
    cfg: Arc<Config>,
    settings: Settings,
    ledger: Arc<Ledger>,
    metrics: Arc<Metrics>,
    control: Arc<Control>,
    tx: mpsc::Sender<Batch>,
    enricher: Enricher,
    streams: Vec<ContainerStream>,
    builder: BatchBuilder,
    readbuf: Vec<u8>,
    counters: Counters,
    /// Bad-input counts not yet reported in a (rate-limited) log line.
    unlogged: Unlogged,
    limits: LogLimits,
    start_at_end: bool,
    epoch: Instant,
    round_robin: usize,
    /// Batch bytes per byte read over all streams' recent reads ([`read_size`]).
    expansion: f32,
    summary: Summary,
}

/// What a tailer is built from.
pub struct Setup {
    /// The agent's configuration.
    pub cfg: Arc<Config>,
    /// The pod metadata cache, `None` when pod metadata is off.
    pub pods: Option<Arc<PodCache>>,
    /// Where files are registered and batches submitted.
    pub ledger: Arc<Ledger>,
    /// Self-metrics.
    pub metrics: Arc<Metrics>,
    /// Switches shared with the rest of the agent.
    pub control: Arc<Control>,
    /// Where sealed batches go (the sink).
    pub batches: mpsc::Sender<Batch>,
    /// The form the sink wants records in.
    pub form: RecordForm,
    /// There are no checkpoints to go on (no checkpoint file, or one set aside as
    /// unreadable): `logs.read_from` applies to the files found now.
    pub first_start: bool,
    /// Read every file to its end, then stop (`--exit-on-eof`).
    pub exit_on_eof: bool,
}

impl Tailer {
    /// A tailer as `setup` says.
    pub fn new(setup: Setup) -> Self {
        let Setup {
            cfg,
            pods,
            ledger,
            metrics,
            control,
            batches: tx,
            form,
            first_start,
            exit_on_eof,
        } = setup;
        let l = &cfg.logs;
        let settings = Settings {
            chunk: l.read_buffer_bytes,
            max_line: l.max_record_bytes + 4096,
            max_record: l.max_record_bytes,
            rotate_wait: l.rotate_wait,
            eof_flush: l.eof_flush,
            exit_on_eof,
        };
        let builder =
            BatchBuilder::new(cfg.pipeline.batch_max_bytes, cfg.pipeline.batch_max_records)
                .with_form(form);
        Self {
            start_at_end: first_start && l.read_from == crate::config::ReadFrom::End,
            enricher: Enricher::new(Arc::clone(&cfg), pods, form),
            cfg,
            settings,
            ledger,
            metrics,
            control,
            tx,
            streams: Vec::new(),
            builder,
            readbuf: Vec::new(),
            counters: Counters::default(),
            unlogged: Unlogged::default(),
            limits: LogLimits::default(),
            epoch: Instant::now(),
            round_robin: 0,
            summary: Summary::default(),
            expansion: INITIAL_EXPANSION,
        }
    }

    /// Runs until stopped (or, with `exit_on_eof`, until everything was read).
    pub fn run(mut self) -> Summary {
        let poll = self.cfg.logs.poll_interval;
        let rescan_every = self.cfg.logs.rescan_interval;
        self.discover(Instant::now());
        // Only the containers found at the very first start begin at their end (each
        // stream carries that to its first listing, which may wait for its pod).
        self.start_at_end = false;
        let mut last_rescan = Instant::now();
        loop {
            if self.control.stop.load(Ordering::SeqCst) {
                break;
            }
            let now = Instant::now();
            if self.control.rescan.swap(false, Ordering::SeqCst)
                || now.duration_since(last_rescan) >= rescan_every
            {
                self.discover(now);
                last_rescan = now;
            }
            let Poll { progressed, busy } = self.round();
            self.flush_counters(now);
            let old = self
                .builder
                .first_at()
                .is_some_and(|t| t.elapsed() >= self.cfg.pipeline.batch_timeout);
            if (!busy || old) && !self.seal_and_send() {
                break;
            }
            // Caught up everywhere: sleep, so that a steady trickle is read a poll's
            // worth at a time instead of a few lines per round.
            if !busy {
                if self.settings.exit_on_eof
                    && !progressed
                    && self
                        .streams
                        .iter()
                        .all(|s| s.files.is_empty() && !s.needs_listing)
                {
                    break;
                }
                self.builder.trim_pool(now);
                self.control.waker.sleep(poll);
            }
        }
        self.seal_and_send();
        self.metrics.logs.log_files_tailed.set(0);
        self.summary
    }

    /// Adds the round's counters to the metrics; bad input also gets a log line, at
    /// most one per kind every 10 s, with the count since the last one.
    fn flush_counters(&mut self, now: Instant) {
        let c = std::mem::take(&mut self.counters);
        let m = &self.metrics;
        m.logs.log_lines_read.inc_by(c.lines);
        m.logs.log_bytes_read.inc_by(c.bytes);
        m.logs.log_records_truncated.inc_by(c.truncated);
        m.logs.log_invalid_utf8.inc_by(c.invalid_utf8);
        m.logs.kube_metadata_misses.inc_by(c.misses);
        if c.excluded > 0 {
            m.logs.dropped(DropReason::Excluded, c.excluded);
        }
        for (part, n) in [
            (ReducedPart::LogProcessed, c.reduced_processed),
            (ReducedPart::Kubernetes, c.reduced_kubernetes),
        ] {
            if n > 0 {
                m.logs.reduced(part, n);
            }
        }
        for (parser, n) in c.parse_failed.each() {
            if n > 0 {
                m.logs.parse_failed(parser, n);
            }
        }
        for (framing, n) in [
            (Framing::Cri, c.malformed_cri),
            (Framing::Docker, c.malformed_docker),
        ] {
            if n > 0 {
                m.logs.malformed(framing, n);
            }
        }
        let u = &mut self.unlogged;
        u.malformed += c.malformed_cri + c.malformed_docker;
        u.truncated += c.truncated;
        u.reduced += c.reduced_processed + c.reduced_kubernetes;
        u.invalid_utf8 += c.invalid_utf8;
        if u.malformed > 0 && self.limits.allow("malformed", now).is_some() {
            tracing::warn!(
                lines = u.malformed,
                "lines did not parse as CRI or docker json-file; shipped as raw text"
            );
            u.malformed = 0;
        }
        if u.truncated > 0 && self.limits.allow("truncated_record", now).is_some() {
            tracing::warn!(
                records = u.truncated,
                max_record_bytes = self.settings.max_record,
                "records longer than max_record_bytes were truncated"
            );
            u.truncated = 0;
        }
        if u.reduced > 0 && self.limits.allow("reduced_record", now).is_some() {
            tracing::warn!(
                records = u.reduced,
                max_record_bytes = self.settings.max_record,
                "records too large to ship whole were shipped without log_processed or kubernetes (see kubeship_reduced in the record)"
            );
            u.reduced = 0;
        }
        if u.invalid_utf8 > 0 && self.limits.allow("invalid_utf8", now).is_some() {
            tracing::warn!(
                records = u.invalid_utf8,
                "records with invalid UTF-8 had it replaced by U+FFFD"
            );
            u.invalid_utf8 = 0;
        }
    }

    fn clock(&self) -> (Instant, u64, i64) {
        let now = Instant::now();
        let ms = now.duration_since(self.epoch).as_millis() as u64;
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        (now, ms, wall)
    }

    /// Polls every stream once, starting one further each round.
    fn round(&mut self) -> Poll {
        let n = self.streams.len();
        let mut round = Poll::default();
        for k in 0..n {
            let idx = (self.round_robin + k) % n;
            // A batch nearly full is sent before the next read rather than topped
            // up with a few KiB from each of the next streams.
            if self.builder.room() < self.builder.max_bytes() / 4 && !self.seal_and_send() {
                return Poll::default();
            }
            let may_read = self.refresh_meta(idx);
            let (now, now_ms, wall_nanos) = self.clock();
            let chunk = read_size(
                self.settings.chunk,
                self.builder.room(),
                self.streams[idx].expansion.unwrap_or(self.expansion),
            );
            let (read_before, bytes_before) = (self.counters.bytes, self.builder.bytes());
            let mut env = PollContext {
                settings: &self.settings,
                ledger: &self.ledger,
                metrics: &self.metrics,
                readbuf: &mut self.readbuf,
                chunk,
                out: BatchTarget {
                    builder: &mut self.builder,
                    counters: &mut self.counters,
                    now,
                    now_ms,
                    wall_nanos,
                    max_processed: self.settings.max_record,
                },
                start_at_end: false,
                limits: &mut self.limits,
            };
            let before = env.out.builder.len();
            let p = if may_read {
                self.streams[idx].poll(&mut env)
            } else {
                self.streams[idx].open_only(&mut env)
            };
            let s = &mut self.streams[idx];
            s.in_batch |= self.builder.len() != before;
            let read = self.counters.bytes - read_before;
            if read >= 4096 {
                let written = self.builder.bytes().saturating_sub(bytes_before);
                let seen = (written as f32 / read as f32).clamp(0.25, 64.0);
                s.expansion = Some(s.expansion.map_or(seen, |e| (e + seen) / 2.0));
                self.expansion = (self.expansion + seen) / 2.0;
            }
            round.progressed |= p.progressed;
            round.busy |= p.busy;
            if self.builder.is_full() && !self.seal_and_send() {
                return Poll::default();
            }
        }
        self.round_robin = self.round_robin.wrapping_add(1);
        round
    }

    /// Seals the open batch with the files' checkpoint marks and sends it. Returns
    /// false when the sink is gone.
    ///
    /// A file gets a mark when its safe offset moved, when it was let go, and
    /// whenever the batch holds records of its stream, even at an unchanged offset:
    /// the ledger commits a file's offset only over a prefix of acknowledged batches
    /// *that carry its marks*, so a batch holding a file's records without a mark
    /// (its safe offset pinned by a pending partial line, multiline group or skipped
    /// long line) could be passed by a later batch's mark acknowledged first.
    fn seal_and_send(&mut self) -> bool {
        let mut marks = Vec::new();
        let mut files = 0;
        for s in &mut self.streams {
            let in_batch = std::mem::take(&mut s.in_batch);
            for f in &mut s.files {
                files += 1;
                if f.finished {
                    marks.push(Mark {
                        file: f.id,
                        offset: f.offset,
                        last: true,
                    });
                    self.summary.files += 1;
                    continue;
                }
                let safe = f.safe_offset();
                if safe != f.last_marked || in_batch {
                    marks.push(Mark {
                        file: f.id,
                        offset: safe,
                        last: false,
                    });
                    f.last_marked = safe;
                }
            }
        }
        self.metrics.logs.log_files_tailed.set(files);
        if self.builder.is_empty() && marks.is_empty() {
            return true;
        }
        if !self.ledger.wait_for_room(
            self.builder.charge(),
            self.cfg.pipeline.max_inflight_bytes,
            &self.control.stop,
        ) {
            // Stopping with the budget exhausted: these records were not submitted,
            // so no checkpoint covers them; they are read again after the restart.
            return false;
        }
        let mut batch = self.builder.seal(marks, Instant::now());
        self.ledger.submit(&mut batch);
        let n = batch.events.len() as u64;
        if self.tx.blocking_send(batch).is_err() {
            return false;
        }
        self.summary.records += n;
        self.metrics.logs.log_records_sent.inc_by(n);
        for s in &mut self.streams {
            s.remove_finished();
        }
        self.streams.retain(|s| !s.is_done());
        true
    }
}

#[cfg(test)]
mod ack_model;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::checkpoint::Store;
    use std::fs;
    use std::path::Path;

    fn container(root: &Path, ns: &str, pod: &str, name: &str, lines: usize, pad: usize) {
        let dir = root.join(format!("pods/{ns}_{pod}_uid-{pod}/{name}"));
        fs::create_dir_all(&dir).unwrap();
        let mut text = String::new();
        for i in 0..lines {
            text.push_str(&format!(
                "2026-11-23T10:00:00.{i:09}Z stdout F c={name} seq={i} {}\n",
                "x".repeat(pad)
            ));
        }
        fs::write(dir.join("0.log"), text).unwrap();
        let id = "ab".repeat(32);
        std::os::unix::fs::symlink(
            dir.join("0.log"),
            root.join(format!("containers/{pod}_{ns}_{name}-{id}.log")),
        )
        .unwrap();
    }

    /// Reads everything with `exit_on_eof`, acknowledging each batch; returns the batches.
    fn drain(root: &Path) -> Vec<Batch> {
        drain_with(root, "", "", None, Arc::new(Metrics::new()))
    }

    /// [`drain`] with more config and a pod cache.
    fn drain_with(
        root: &Path,
        logs: &str,
        extra: &str,
        pods: Option<Arc<PodCache>>,
        metrics: Arc<Metrics>,
    ) -> Vec<Batch> {
        let yaml = format!(
            "cluster: t\nnode_name: n\nstate_dir: ./state\nlogs: {{containers_dir: ./containers{logs}}}\n\
             output: {{local: {{dir: ./out}}}}\ntelemetry: {{listen_addr: \"off\"}}\n{extra}"
        );
        let cfg = crate::config::load_str(&yaml, &root.join("k.yaml"), &|_| None).unwrap();
        let ledger = Arc::new(Ledger::new(Store::default(), Arc::clone(&metrics)));
        let (tx, mut rx) = mpsc::channel(4);
        let control = Arc::new(Control::default());
        if let Some(p) = &pods {
            // What the watch task does: a cache change wakes the tailer.
            let c = Arc::clone(&control);
            p.set_on_change(Box::new(move || c.waker.wake()));
        }
        let t = Tailer::new(Setup {
            cfg: Arc::new(cfg),
            pods,
            ledger: Arc::clone(&ledger),
            metrics,
            control,
            batches: tx,
            form: RecordForm::Json,
            first_start: true,
            exit_on_eof: true,
        });
        let h = std::thread::spawn(move || t.run());
        let mut out = Vec::new();
        while let Some(b) = rx.blocking_recv() {
            ledger.ack(b.seq);
            out.push(b);
        }
        h.join().unwrap();
        out
    }

    #[test]
    fn reads_take_what_the_open_batch_has_room_for() {
        let chunk = 256 * 1024;
        assert_eq!(read_size(chunk, 1 << 20, 2.0), chunk, "at most a chunk");
        assert_eq!(read_size(chunk, 1 << 20, 8.0), 128 * 1024);
        assert_eq!(read_size(chunk, 1000, 8.0), MIN_READ, "at least MIN_READ");
        assert_eq!(read_size(chunk, 0, 0.0), MIN_READ);
    }

    /// Records many times the size of their lines (short lines, long metadata) do not
    /// overshoot a batch by a chunk's worth: each read takes what the batch has room
    /// for, so no batch buffer grows past the size it was reserved with.
    #[test]
    fn batches_do_not_overshoot_by_a_chunk_of_records() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("containers")).unwrap();
        // ~50-byte lines, ~250-byte records: five times larger.
        container(root, "ns", "short-0", "short", 40_000, 0);
        let max = 64 * 1024;
        let batches = drain_with(
            root,
            "",
            &format!("pipeline: {{batch_max_bytes: {max}}}\n"),
            None,
            Arc::new(Metrics::new()),
        );
        assert_eq!(
            batches.iter().map(|b| b.events.len()).sum::<usize>(),
            40_000
        );
        for b in &batches {
            // A whole chunk (256 KiB of lines) would be 1.2 MB of records.
            assert!(
                b.buf.len() <= max + max / 2,
                "a batch of {} bytes (batch_max_bytes {max})",
                b.buf.len()
            );
        }
    }

    /// A container with a large backlog cannot delay a quiet container's line by more than
    /// one read chunk: the quiet line is in the first batch.
    #[test]
    fn a_busy_container_cannot_starve_a_quiet_one() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("containers")).unwrap();
        container(root, "ns", "noisy-0", "noisy", 60_000, 150);
        container(root, "ns", "quiet-0", "quiet", 1, 10);
        let batches = drain(root);
        let records: Vec<(usize, bool)> = batches
            .iter()
            .enumerate()
            .flat_map(|(i, b)| {
                b.events
                    .iter()
                    .map(move |e| (i, b.dests[e.dest as usize].stream.contains("quiet")))
            })
            .collect();
        assert_eq!(records.len(), 60_001);
        assert!(
            batches.len() >= 10,
            "the backlog spans many batches ({})",
            batches.len()
        );
        let (quiet_batch, _) = records.iter().find(|r| r.1).expect("quiet line delivered");
        assert_eq!(
            *quiet_batch, 0,
            "the quiet line waited behind the noisy backlog"
        );
        let noisy_before = records.iter().take_while(|r| !r.1).count();
        let chunk_lines = 262_144 / 190 + 1;
        assert!(
            noisy_before <= chunk_lines,
            "{noisy_before} noisy records before the quiet one"
        );
    }

    /// Blocks until the tailer holds a file open (`log_files_tailed`): a container
    /// waiting for its pod has been found and its file opened.
    fn wait_for_open_files(metrics: &Metrics) {
        let start = Instant::now();
        while metrics.logs.log_files_tailed.get() < 1 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no file opened within 10 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn pod(name: &str, ip: &str) -> crate::kube::PodMeta {
        crate::kube::PodMeta {
            uid: format!("uid-{name}"),
            name: name.into(),
            namespace: "ns".into(),
            pod_ip: ip.into(),
            ..Default::default()
        }
    }

    fn records(batches: &[Batch]) -> Vec<serde_json::Value> {
        batches
            .iter()
            .flat_map(|b| {
                b.events
                    .iter()
                    .map(move |e| serde_json::from_slice(&b.record(e)).unwrap())
            })
            .collect()
    }

    /// A container whose pod reaches the cache after its lines were written waits for
    /// it: every record carries the pod's metadata, no miss.
    #[test]
    fn a_new_container_waits_for_its_pod() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("containers")).unwrap();
        container(root, "ns", "late-0", "app", 10, 10);
        let cache = Arc::new(PodCache::new(Box::new(|| {})));
        let metrics = Arc::new(Metrics::new());
        let adder = {
            let (cache, metrics) = (Arc::clone(&cache), Arc::clone(&metrics));
            std::thread::spawn(move || {
                // The pod reaches the cache after the container was found and its
                // file opened (it waits for its pod).
                wait_for_open_files(&metrics);
                cache.apply(pod("late-0", "10.0.0.9"));
            })
        };
        let extra = "kubernetes: {metadata_wait_ms: 10000}\n";
        let batches = drain_with(root, "", extra, Some(cache), Arc::clone(&metrics));
        adder.join().unwrap();
        let recs = records(&batches);
        assert_eq!(recs.len(), 10);
        assert!(
            recs.iter().all(|r| r["kubernetes"]["pod_ip"] == "10.0.0.9"),
            "{recs:?}"
        );
        assert_eq!(metrics.logs.kube_metadata_misses.get(), 0);
    }

    /// Without its pod, a container ships with path metadata after the wait, counted.
    #[test]
    fn a_container_without_pod_ships_path_metadata_after_the_wait() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("containers")).unwrap();
        container(root, "ns", "gone-0", "app", 7, 10);
        let cache = Arc::new(PodCache::new(Box::new(|| {})));
        let metrics = Arc::new(Metrics::new());
        let started = Instant::now();
        let extra = "kubernetes: {metadata_wait_ms: 300}\n";
        let batches = drain_with(root, "", extra, Some(cache), Arc::clone(&metrics));
        assert!(started.elapsed() >= Duration::from_millis(300), "it waited");
        let recs = records(&batches);
        assert_eq!(recs.len(), 7);
        assert!(recs.iter().all(|r| r["kubernetes"].get("pod_ip").is_none()));
        assert_eq!(recs[0]["kubernetes"]["pod_id"], "uid-gone-0");
        assert_eq!(metrics.logs.kube_metadata_misses.get(), 7);
    }

    /// An excluded container's lines are skipped and counted; its checkpoint advances.
    #[test]
    fn excluded_containers_are_skipped_and_counted() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("containers")).unwrap();
        container(root, "ns", "mix-0", "noisy", 5, 10);
        container(root, "ns", "mix-0", "keep", 3, 10);
        let cache = Arc::new(PodCache::new(Box::new(|| {})));
        let mut p = pod("mix-0", "10.0.0.1");
        p.controls.exclude_containers = vec!["noisy".into()];
        cache.apply(p);
        let metrics = Arc::new(Metrics::new());
        let batches = drain_with(root, "", "", Some(cache), Arc::clone(&metrics));
        let recs = records(&batches);
        assert_eq!(recs.len(), 3);
        assert!(
            recs.iter()
                .all(|r| r["kubernetes"]["container_name"] == "keep")
        );
        let dropped = metrics.encode();
        assert!(
            dropped.contains("kubeship_log_records_dropped_total{reason=\"excluded\"} 5"),
            "{dropped}"
        );
    }

    /// `read_from: end` at the very first start skips what the files held, also for a
    /// container that first waited for its pod.
    #[test]
    fn read_from_end_holds_for_containers_that_waited_for_their_pod() {
        for with_pods in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path();
            fs::create_dir_all(root.join("containers")).unwrap();
            container(root, "ns", "old-0", "app", 5, 10);
            let cache = with_pods.then(|| Arc::new(PodCache::new(Box::new(|| {}))));
            let metrics = Arc::new(Metrics::new());
            let adder = cache.clone().map(|cache| {
                let metrics = Arc::clone(&metrics);
                std::thread::spawn(move || {
                    // The pod reaches the cache after the container was found and its
                    // file opened (it waits for its pod).
                    wait_for_open_files(&metrics);
                    cache.apply(pod("old-0", "10.0.0.2"));
                })
            });
            let extra = "kubernetes: {metadata_wait_ms: 10000}\n";
            let batches = drain_with(root, ", read_from: end", extra, cache, metrics);
            if let Some(a) = adder {
                a.join().unwrap();
            }
            assert_eq!(records(&batches).len(), 0, "with_pods: {with_pods}");
        }
    }

    /// A container waiting for its pod already holds its files open: when the pod's
    /// log directory is deleted before the metadata arrives, no line is lost.
    #[test]
    fn files_deleted_during_the_wait_are_still_read() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        fs::create_dir_all(root.join("containers")).unwrap();
        container(&root, "ns", "brief-0", "app", 6, 10);
        let cache = Arc::new(PodCache::new(Box::new(|| {})));
        let metrics = Arc::new(Metrics::new());
        let deleter = {
            let (cache, metrics, root) = (Arc::clone(&cache), Arc::clone(&metrics), root.clone());
            std::thread::spawn(move || {
                wait_for_open_files(&metrics);
                fs::remove_dir_all(root.join("pods")).unwrap();
                for e in fs::read_dir(root.join("containers")).unwrap() {
                    fs::remove_file(e.unwrap().path()).unwrap();
                }
                cache.apply(pod("brief-0", "10.0.0.3"));
            })
        };
        let extra = "kubernetes: {metadata_wait_ms: 10000}\n";
        let batches = drain_with(&root, "", extra, Some(cache), Arc::clone(&metrics));
        deleter.join().unwrap();
        let recs = records(&batches);
        assert_eq!(recs.len(), 6);
        assert!(recs.iter().all(|r| r["kubernetes"]["pod_ip"] == "10.0.0.3"));
    }
}
