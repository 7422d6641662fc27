//! The checkpoint writer thread, and the watch over the sink's progress.
//!
//! Checkpoints are written soon after acknowledgements move them: the thread waits
//! until the ledger's store has changes, then writes them, at most once per
//! `checkpoint_interval` (so a steady stream of acknowledgements costs one atomic
//! write per interval, and an idle agent none). What a crash makes the agent send
//! again is what was delivered in that window plus what was in flight.
//!
//! The same thread looks at the oldest batch in flight every
//! [`WATCH_EVERY`]: its age is `kubeship_oldest_unacked_age_seconds`; past
//! `stuck_after` the sink is stuck: logged (rate-limited) and `/readyz` turns 503
//! until the batch is acknowledged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::logs::checkpoint::write_atomic;
use crate::logs::ledger::Ledger;
use crate::logs::metrics::WriteOutcome;
use crate::telemetry::server::Health;
use crate::telemetry::{LogLimits, Metrics};

/// How often the oldest batch in flight is looked at when nothing else wakes the thread.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// What the writer thread works with.
pub struct Writer {
    /// The ledger whose store is written.
    pub ledger: Arc<Ledger>,
    /// The checkpoint file.
    pub path: PathBuf,
    /// Least time between two writes.
    pub interval: Duration,
    /// Age of the oldest unacknowledged batch past which the sink is stuck.
    pub stuck_after: Duration,
    /// Metrics (checkpoint writes, the age gauge).
    pub metrics: Arc<Metrics>,
    /// Where the stuck state is reported.
    pub health: Arc<Health>,
}

/// The running writer thread.
pub struct Handle {
    stop: Arc<AtomicBool>,
    ledger: Arc<Ledger>,
    thread: thread::JoinHandle<()>,
}

impl Handle {
    /// Stops the thread without waiting for its next write or watch, and joins it.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.ledger.wake();
        let _ = self.thread.join();
    }
}

impl Writer {
    /// Starts the thread.
    pub fn spawn(self) -> Handle {
        let stop = Arc::new(AtomicBool::new(false));
        let ledger = Arc::clone(&self.ledger);
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || self.run(&flag))
            .expect("spawning the checkpoint thread");
        Handle {
            stop,
            ledger,
            thread,
        }
    }

    fn run(self, stop: &AtomicBool) {
        let mut last_write: Option<Instant> = None;
        let mut limits = LogLimits::default();
        let mut stuck_since_log = false;
        loop {
            self.ledger.wait_changed(WATCH_EVERY, stop);
            if stop.load(Ordering::SeqCst) {
                break;
            }
            // Coalesce: acknowledgements that arrive within the interval share a write.
            if let Some(t) = last_write {
                self.ledger.sleep_until(t + self.interval, stop);
            }
            let now = Instant::now();
            stuck_since_log = self.watch(now, &mut limits, stuck_since_log);
            if write(&self.ledger, &self.path, &self.metrics) {
                last_write = Some(now);
            }
        }
    }

    /// Updates the age gauge and the stuck state; returns whether the sink is stuck.
    fn watch(&self, now: Instant, limits: &mut LogLimits, was_stuck: bool) -> bool {
        let oldest = self.ledger.oldest_in_flight();
        let age = oldest.map_or(Duration::ZERO, |(t, ..)| now.saturating_duration_since(t));
        self.metrics
            .logs
            .oldest_unacked_age_seconds
            .set(age.as_secs_f64());
        let stuck = age >= self.stuck_after;
        self.health.sink_stuck.store(stuck, Ordering::SeqCst);
        if let (true, Some((_, batches, bytes))) = (stuck, oldest)
            && let Some(suppressed) = limits.allow("stuck", now)
        {
            tracing::error!(
                oldest_unacked_secs = age.as_secs(),
                batches_in_flight = batches,
                inflight_bytes = bytes,
                stuck_after_secs = self.stuck_after.as_secs(),
                suppressed,
                "the sink is not making progress: a batch has waited longer than \
                 pipeline.stuck_after_secs for delivery; /readyz answers 503 until it is delivered"
            );
        }
        if was_stuck && !stuck {
            tracing::info!("the sink is making progress again");
        }
        stuck
    }
}

/// Writes the checkpoint file if the store changed; returns whether it wrote.
pub fn write(ledger: &Ledger, path: &Path, metrics: &Metrics) -> bool {
    let Some(snap) = ledger.checkpoint_if_changed() else {
        return false;
    };
    match write_atomic(path, &snap.bytes) {
        Ok(()) => {
            metrics.logs.checkpoint_written(WriteOutcome::Ok);
            ledger.persisted(snap);
        }
        Err(e) => {
            metrics.logs.checkpoint_written(WriteOutcome::Error);
            tracing::error!(path = %path.display(), error = %e, "writing checkpoints failed");
            ledger.with_store(|s| s.mark_dirty());
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::batch::{BatchBuilder, Mark};
    use crate::logs::checkpoint::{Fingerprint, Store};

    fn writer(dir: &Path, interval: Duration, stuck_after: Duration) -> (Writer, Arc<Ledger>) {
        let metrics = Arc::new(Metrics::new());
        let ledger = Arc::new(Ledger::new(Store::default(), Arc::clone(&metrics)));
        let w = Writer {
            ledger: Arc::clone(&ledger),
            path: dir.join("checkpoints.json"),
            interval,
            stuck_after,
            metrics,
            health: Arc::new(Health::default()),
        };
        (w, ledger)
    }

    /// Waits (bounded) until `cond` holds.
    fn until(what: &str, mut cond: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !cond() {
            assert!(t0.elapsed() < Duration::from_secs(30), "timed out: {what}");
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn stops_without_finishing_its_wait() {
        let dir = tempfile::tempdir().unwrap();
        // An hour between writes and watches: only the wake can end it in time.
        let (mut w, _ledger) = writer(dir.path(), Duration::from_secs(3600), Duration::MAX);
        w.interval = Duration::from_secs(3600);
        let h = w.spawn();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            h.stop();
            let _ = done_tx.send(());
        });
        assert!(
            done_rx.recv_timeout(Duration::from_secs(30)).is_ok(),
            "the checkpoint thread was not woken to stop"
        );
    }

    /// An acknowledgement reaches the disk within the interval, not at some later tick.
    #[test]
    fn an_acknowledgement_is_written_soon() {
        let dir = tempfile::tempdir().unwrap();
        let (w, ledger) = writer(dir.path(), Duration::from_millis(100), Duration::MAX);
        let path = w.path.clone();
        let h = w.spawn();
        let s: Arc<str> = Arc::from("/p/0.log");
        let f = ledger.register_file(
            &s,
            Fingerprint::of(b"head line\n"),
            crate::logs::checkpoint::FileId::UNKNOWN,
            0,
            None,
        );
        let mut b = BatchBuilder::new(1024, 10).seal(
            vec![Mark {
                file: f,
                offset: 777,
                last: false,
            }],
            Instant::now(),
        );
        ledger.submit(&mut b);
        let t0 = Instant::now();
        ledger.ack(b.seq);
        until("the acknowledged offset on disk", || {
            std::fs::read_to_string(&path).is_ok_and(|t| t.contains("\"offset\": 777"))
        });
        // Well below the old one-second tick, with room for a slow machine.
        assert!(
            t0.elapsed() < Duration::from_millis(900),
            "{:?}",
            t0.elapsed()
        );
        h.stop();
    }

    /// A batch in flight past `stuck_after` shows in the gauge and turns readiness off,
    /// until it is acknowledged.
    #[test]
    fn a_batch_waiting_too_long_makes_the_sink_stuck() {
        let dir = tempfile::tempdir().unwrap();
        let (w, ledger) = writer(
            dir.path(),
            Duration::from_millis(10),
            Duration::from_millis(50),
        );
        let (health, metrics) = (Arc::clone(&w.health), Arc::clone(&w.metrics));
        let h = w.spawn();
        let mut b = BatchBuilder::new(1024, 10).seal(vec![], Instant::now());
        ledger.submit(&mut b);
        until("stuck", || health.sink_stuck.load(Ordering::SeqCst));
        assert!(metrics.logs.oldest_unacked_age_seconds.get() >= 0.05);
        ledger.ack(b.seq);
        until("not stuck", || !health.sink_stuck.load(Ordering::SeqCst));
        until("age back to 0", || {
            metrics.logs.oldest_unacked_age_seconds.get() == 0.0
        });
        h.stop();
    }
}
