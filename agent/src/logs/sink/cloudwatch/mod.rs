//! The CloudWatch Logs sink.
//!
//! One dispatcher task owns all state: per-(group, stream) queues
//! ([`batcher`]), ready and delayed requests, and how many events of each
//! pipeline batch are still undelivered. Requests run as futures inside that task
//! (no task of their own, no channel back), at most `max_concurrent_requests` at
//! once (halved on throttling, grown back by one per success). After a failed call the whole sink pauses for a
//! backoff that grows with the failures in a row, so an outage is probed rather
//! than hammered; the first success ends the pause. A pipeline batch is acknowledged to the ledger only
//! when every one of its events was accepted by CloudWatch, or rejected by it
//! (too old, too new, expired) or refused as invalid on its own — each of those
//! counted by reason and logged. Everything else is retried with exponential
//! backoff and jitter, without limit: files are the buffer.
//!
//! Queues wait to fill large requests only while waiting can fill them: when the
//! tailer is blocked on the in-flight budget nothing more arrives, and the batches
//! holding the budget are acknowledged only once their queued events are sent. So
//! whenever the tailer waits for room and the sink could send more now (calls in
//! flight, ready and waiting to be retried below the concurrency limit, no backoff
//! pause) every queue is sent. While the sink is busy, queues keep filling.

pub mod batcher;
pub mod client;
pub mod limits;
pub mod metrics;
pub mod put;

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;

use crate::config::CloudWatchConfig;
use crate::logs::batch::{Batch, Destination};
use crate::logs::ledger::Ledger;
use crate::logs::metrics::DropReason;
use crate::net::backoff::Backoff;
use crate::telemetry::server::Health;
use crate::telemetry::{LogLimits, Metrics};
use batcher::{QueuedEvent, StreamQueue, event_of};
use client::{Api, Fail, Rejected};
use metrics::Outcome;

/// How often idle connections are checked for being closed or timed out.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// One PutLogEvents call's worth of events.
struct Request {
    dest: Arc<Destination>,
    events: Vec<QueuedEvent>,
    attempt: u32,
}

/// A request waiting for its retry time (min-heap by time).
struct Delayed(Instant, Request);

impl PartialEq for Delayed {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Delayed {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.0.cmp(&self.0)
    }
}

/// What a request task reports.
struct Done {
    req: Request,
    result: Result<Rejected, Fail>,
    created: client::Created,
    took: Duration,
}

/// The sink's dispatcher state.
pub struct CloudWatchSink {
    cfg: CloudWatchConfig,
    batch_timeout: Duration,
    ledger: Arc<Ledger>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    queues: HashMap<Arc<Destination>, StreamQueue>,
    ready: VecDeque<Request>,
    delayed: BinaryHeap<Delayed>,
    /// Undelivered events per pipeline batch.
    pending: HashMap<u64, usize>,
    in_flight: usize,
    limit: usize,
    /// Bytes waiting in the queues, and the level at which they are all sent at
    /// once (half the in-flight budget: past it the tailer would soon stop, and
    /// waiting for `batch_timeout` would only slow the pipeline down).
    queued: usize,
    pressure: usize,
    /// Failed calls in a row; while it is not 0 the whole sink waits `paused_until`
    /// before sending anything, so an outage is probed, not hammered.
    failures: u32,
    paused_until: Option<Instant>,
    limits: LogLimits,
}

impl CloudWatchSink {
    /// A sink acknowledging to `ledger`; `batch_timeout` is how long a stream's
    /// first queued event may wait for more.
    pub fn new(
        cfg: CloudWatchConfig,
        batch_timeout: Duration,
        pressure_bytes: usize,
        ledger: Arc<Ledger>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Self {
        let limit = cfg.max_concurrent_requests;
        Self {
            cfg,
            batch_timeout,
            ledger,
            metrics,
            health,
            queues: HashMap::new(),
            ready: VecDeque::new(),
            delayed: BinaryHeap::new(),
            pending: HashMap::new(),
            in_flight: 0,
            limit,
            queued: 0,
            pressure: pressure_bytes,
            failures: 0,
            paused_until: None,
            limits: LogLimits::default(),
        }
    }

    /// Runs until the pipeline channel closes and everything was delivered, calling
    /// CloudWatch through `api` (built from this sink's config by [`Api::new`]).
    pub async fn run(mut self, api: Api, mut rx: mpsc::Receiver<Batch>) {
        let api = Arc::new(api);
        // Calls run inside this task, not as tasks of their own: a spawned task and a
        // channel back cost a task allocation and two more wake-ups per call.
        let mut calls = FuturesUnordered::new();
        let tick_every =
            (self.batch_timeout / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ledger = Arc::clone(&self.ledger);
        let mut closed = false;
        let mut last_sweep = Instant::now();
        loop {
            let now = Instant::now();
            self.flush_for_tailer(now);
            let paused = self.paused(now);
            while !paused
                && self.in_flight < self.limit
                && let Some(req) = self.ready.pop_front()
            {
                self.in_flight += 1;
                let api = Arc::clone(&api);
                calls.push(async move {
                    let t0 = Instant::now();
                    let (result, created) = api
                        .put(&req.dest.group, &req.dest.stream, &req.events)
                        .await;
                    Done {
                        req,
                        result,
                        created,
                        took: t0.elapsed(),
                    }
                });
            }
            self.metrics
                .cloudwatch
                .cloudwatch_requests_in_flight
                .set(self.in_flight as i64);
            if closed
                && self.in_flight == 0
                && self.ready.is_empty()
                && self.delayed.is_empty()
                && self.queues.is_empty()
            {
                break;
            }
            tokio::select! {
                b = rx.recv(), if !closed => match b {
                    Some(batch) => self.enqueue(batch),
                    None => {
                        closed = true;
                        self.flush(true);
                    }
                },
                Some(done) = calls.next(), if !calls.is_empty() => self.completed(done),
                _ = tick.tick() => {
                    self.flush(closed);
                    self.release_delayed();
                    if last_sweep.elapsed() >= SWEEP_EVERY {
                        api.sweep();
                        last_sweep = Instant::now();
                    }
                }
                // The tailer started waiting for room: checked at the top of the loop
                // (as after every batch, completion and tick, where the sink may have
                // become free while the tailer still waits).
                () = ledger.room_wanted() => {}
            }
        }
    }

    /// True while the sink backs off after failed calls.
    fn paused(&self, now: Instant) -> bool {
        self.paused_until.is_some_and(|t| now < t)
    }

    /// Sends every queue when the tailer waits for budget room and the sink has
    /// room for more calls now: the tailer adds nothing while it waits, and the
    /// batches holding the budget may each lack only a few queued events. A sink
    /// with calls ready, in flight or due for a retry up to its limit, or paused by
    /// backoff, is left to finish those first (the check runs again as each call
    /// completes), so requests stay large while it is busy. Returns true when it
    /// turned queues into requests.
    fn flush_for_tailer(&mut self, now: Instant) -> bool {
        if self.queues.is_empty()
            || self.paused(now)
            || self.in_flight + self.ready.len() + self.delayed.len() >= self.limit
            || !self.ledger.tailer_waiting()
        {
            return false;
        }
        self.flush(true);
        true
    }

    /// Queues a pipeline batch's events on their streams.
    fn enqueue(&mut self, batch: Batch) {
        let now = Instant::now();
        if batch.events.is_empty() {
            self.ledger.ack(batch.seq);
            return;
        }
        let batch = Arc::new(batch);
        self.pending.insert(batch.seq, batch.events.len());
        // Records of one file come in runs: one queue lookup per run, not per record.
        for run in batch.events.chunk_by(|a, b| a.dest == b.dest) {
            let dest = &batch.dests[run[0].dest as usize];
            let q = self.queues.entry(Arc::clone(dest)).or_default();
            let before = q.bytes();
            let mut too_large = Vec::new();
            for e in run {
                q.push(event_of(&batch, e), now);
                if q.is_full() {
                    let taken = q.take(now);
                    too_large.extend(taken.too_large);
                    for events in taken.requests {
                        self.ready.push_back(Request {
                            dest: Arc::clone(dest),
                            events,
                            attempt: 0,
                        });
                    }
                }
            }
            self.queued = self.queued + q.bytes() - before;
            self.drop_too_large(dest, &too_large);
        }
        if self.queued >= self.pressure {
            self.flush(true);
        }
    }

    /// Turns queues whose oldest event waited `batch_timeout` (all, when `all`) into requests.
    fn flush(&mut self, all: bool) {
        let now = Instant::now();
        let mut too_large = Vec::new();
        for (dest, q) in self.queues.iter_mut() {
            while !q.is_empty()
                && (all
                    || q.since()
                        .is_some_and(|t| now.duration_since(t) >= self.batch_timeout))
            {
                let before = q.bytes();
                let taken = q.take(now);
                if !taken.too_large.is_empty() {
                    too_large.push((Arc::clone(dest), taken.too_large));
                }
                for events in taken.requests {
                    self.ready.push_back(Request {
                        dest: Arc::clone(dest),
                        events,
                        attempt: 0,
                    });
                }
                self.queued -= before - q.bytes();
            }
        }
        self.queues.retain(|_, q| !q.is_empty());
        for (dest, evs) in too_large {
            self.drop_too_large(&dest, &evs);
        }
    }

    /// Events no request can take (the encoder bounds records to one event, so this
    /// is a last line of defence): dropped, counted, logged, and settled, so that
    /// their batches are acknowledged and nothing waits on them.
    fn drop_too_large(&mut self, dest: &Destination, events: &[QueuedEvent]) {
        if events.is_empty() {
            return;
        }
        let now = Instant::now();
        self.metrics
            .logs
            .dropped(DropReason::TooLarge, events.len() as u64);
        if let Some(s) = self.limits.allow("too_large", now) {
            tracing::error!(group = %dest.group, stream = %dest.stream, events = events.len(),
                largest = events.iter().map(|e| e.json_len).max().unwrap_or(0), suppressed = s,
                "log events larger than one CloudWatch event; dropped them");
        }
        self.settle(events);
    }

    fn release_delayed(&mut self) {
        let now = Instant::now();
        while self.delayed.peek().is_some_and(|d| d.0 <= now) {
            if let Some(Delayed(_, req)) = self.delayed.pop() {
                self.ready.push_back(req);
            }
        }
    }

    /// Events of `req` are done with (accepted, or dropped with a counted reason).
    fn settle(&mut self, events: &[QueuedEvent]) {
        // A request's events come from a few pipeline batches, in runs.
        for run in events.chunk_by(|a, b| a.seq == b.seq) {
            let seq = run[0].seq;
            if let Some(n) = self.pending.get_mut(&seq) {
                *n -= run.len().min(*n);
                if *n == 0 {
                    self.pending.remove(&seq);
                    self.ledger.ack(seq);
                }
            }
        }
    }

    fn completed(&mut self, done: Done) {
        let Done {
            mut req,
            result,
            created,
            took,
        } = done;
        self.in_flight -= 1;
        let m = &self.metrics;
        m.cloudwatch
            .cloudwatch_request_duration_seconds
            .observe(took.as_secs_f64());
        m.cloudwatch
            .cloudwatch_streams_created
            .inc_by(created.streams);
        m.cloudwatch
            .cloudwatch_groups_created
            .inc_by(created.groups);
        let now = Instant::now();
        match result {
            Ok(rejected) => {
                m.cloudwatch.request(Outcome::Ok);
                self.health.sink_ok.store(true, Ordering::SeqCst);
                self.failures = 0;
                self.paused_until = None;
                self.limit = (self.limit + 1).min(self.cfg.max_concurrent_requests);
                let n = req.events.len();
                let dropped = count_rejected(&rejected, n);
                m.cloudwatch
                    .cloudwatch_events_sent
                    .inc_by((n - dropped.iter().map(|d| d.1).sum::<usize>()) as u64);
                for (reason, k) in dropped {
                    if k > 0 {
                        m.logs.dropped(reason, k as u64);
                        let reason = reason.as_str();
                        if let Some(s) = self.limits.allow(reason, now) {
                            tracing::warn!(group = %req.dest.group, stream = %req.dest.stream, events = k, reason, suppressed = s,
                                "CloudWatch rejected log events");
                        }
                    }
                }
                self.settle(&req.events);
            }
            Err(Fail::Invalid(why)) => {
                m.cloudwatch.request(Outcome::Invalid);
                if req.events.len() > 1 {
                    // Isolate the offender: halves go out again.
                    let tail = req.events.split_off(req.events.len() / 2);
                    let dest = Arc::clone(&req.dest);
                    self.ready.push_front(Request {
                        dest,
                        events: tail,
                        attempt: 0,
                    });
                    self.ready.push_front(Request {
                        dest: req.dest,
                        events: req.events,
                        attempt: 0,
                    });
                } else {
                    m.logs.dropped(DropReason::InvalidParameter, 1);
                    if let Some(s) = self.limits.allow("invalid_parameter", now) {
                        tracing::error!(group = %req.dest.group, stream = %req.dest.stream, error = %why, suppressed = s,
                            "CloudWatch refused a log event as invalid; dropped it");
                    }
                    self.settle(&req.events);
                }
            }
            Err(fail) => {
                m.cloudwatch.request(fail.outcome());
                // Send less at once, and pause the whole sink for a growing while.
                // Calls that fail together (already in flight) count once.
                self.limit = (self.limit / 2).max(1);
                if self.paused_until.is_none_or(|t| now >= t) {
                    self.failures += 1;
                    self.paused_until = Some(now + backoff(self.failures, self.cfg.max_backoff));
                }
                match &fail {
                    Fail::Throttled => {}
                    Fail::Auth(why) | Fail::NoGroup(why) => {
                        self.health.sink_ok.store(false, Ordering::SeqCst);
                        if let Some(s) = self.limits.allow(fail.outcome().as_str(), now) {
                            tracing::error!(error = %why, suppressed = s, "CloudWatch Logs refused the agent; retrying");
                        }
                    }
                    Fail::Transient(why) => {
                        if let Some(s) = self.limits.allow("transient", now) {
                            tracing::warn!(error = %why, suppressed = s, "CloudWatch Logs call failed; retrying");
                        }
                    }
                    Fail::Invalid(_) => {}
                }
                req.attempt += 1;
                let wait = backoff(req.attempt, self.cfg.max_backoff);
                self.delayed.push(Delayed(now + wait, req));
            }
        }
        self.metrics
            .cloudwatch
            .cloudwatch_concurrency_limit
            .set(self.limit as i64);
    }
}

/// How many events of a request of `n` were rejected, by drop reason.
fn count_rejected(r: &Rejected, n: usize) -> [(DropReason, usize); 3] {
    let too_new = r.too_new_from.map(|i| n.saturating_sub(i)).unwrap_or(0);
    let too_old = r.too_old_until.map(|i| i.min(n)).unwrap_or(0);
    let expired = r
        .expired_until
        .map(|i| i.min(n))
        .unwrap_or(0)
        .saturating_sub(too_old);
    [
        (DropReason::TooNew, too_new),
        (DropReason::TooOld, too_old),
        (DropReason::Expired, expired),
    ]
}

/// Exponential backoff with jitter (half to all of it): 100 ms · 2^attempt, capped.
fn backoff(attempt: u32, max: Duration) -> Duration {
    Backoff::new(Duration::from_millis(100), max).delay(attempt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::batch::BatchBuilder;
    use crate::logs::checkpoint::Store;
    use std::sync::atomic::AtomicBool;

    fn sink(ledger: &Arc<Ledger>) -> CloudWatchSink {
        let cfg = CloudWatchConfig {
            region: None,
            endpoint_url: None,
            create_group: false,
            retention_days: None,
            log_group_class: None,
            kms_key_id: None,
            tags: Default::default(),
            max_concurrent_requests: 4,
            request_timeout: Duration::from_secs(30),
            create_stream_per_sec: 10,
            max_backoff: Duration::from_secs(30),
        };
        CloudWatchSink::new(
            cfg,
            Duration::from_secs(60),
            1 << 30,
            Arc::clone(ledger),
            Arc::new(Metrics::new()),
            Arc::new(Health::default()),
        )
    }

    /// A pipeline batch of `n` small records spread over streams `s0`..`s2`, submitted.
    fn submitted(ledger: &Ledger, n: usize) -> Batch {
        let dests: Vec<Arc<Destination>> = (0..3)
            .map(|i| {
                Arc::new(Destination {
                    group: "g".into(),
                    stream: format!("s{i}"),
                })
            })
            .collect();
        let mut b = BatchBuilder::new(1 << 20, 10_000);
        for i in 0..n {
            b.push(&dests[i % 3], i as i64, Instant::now(), |o| {
                o.extend_from_slice(br#"{"log":"x"}"#);
                11
            });
        }
        let mut b = b.seal(vec![], Instant::now());
        ledger.submit(&mut b);
        b
    }

    #[test]
    fn queues_are_sent_when_the_tailer_waits_and_the_sink_has_room() {
        let ledger = Arc::new(Ledger::new(Store::default(), Arc::new(Metrics::new())));
        let mut s = sink(&ledger);
        let batch = submitted(&ledger, 30);
        let charge = batch.charge();
        s.enqueue(batch);
        assert_eq!(
            (s.queues.len(), s.ready.len()),
            (3, 0),
            "not full, below pressure: queued"
        );
        assert!(
            !s.flush_for_tailer(Instant::now()),
            "the tailer is not waiting: queues keep filling"
        );

        // The budget holds the batch; the tailer waits to send one more like it.
        let stop = Arc::new(AtomicBool::new(false));
        let (l2, stop2) = (Arc::clone(&ledger), Arc::clone(&stop));
        let tailer = std::thread::spawn(move || l2.wait_for_room(charge, charge, &stop2));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), ledger.room_wanted()).await
        })
        .expect("the tailer waits for room");
        assert!(ledger.tailer_waiting());

        // Busy (calls in flight, ready or due for a retry up to the limit) or paused:
        // the queues keep filling.
        s.in_flight = s.limit;
        assert!(!s.flush_for_tailer(Instant::now()), "all calls in flight");
        s.in_flight = s.limit - 1;
        s.ready.push_back(Request {
            dest: Arc::new(Destination {
                group: "g".into(),
                stream: "other".into(),
            }),
            events: vec![],
            attempt: 0,
        });
        assert!(
            !s.flush_for_tailer(Instant::now()),
            "a ready request fills the limit"
        );
        let other = s.ready.pop_front().expect("pushed");
        s.delayed
            .push(Delayed(Instant::now() + Duration::from_secs(1), other));
        assert!(
            !s.flush_for_tailer(Instant::now()),
            "a retry to come fills the limit"
        );
        s.delayed.clear();
        s.paused_until = Some(Instant::now() + Duration::from_secs(1));
        assert!(!s.flush_for_tailer(Instant::now()), "paused by backoff");
        s.paused_until = None;
        assert_eq!(s.ready.len(), 0);

        // Room for a call: every queue goes, however small.
        assert!(s.flush_for_tailer(Instant::now()));
        assert_eq!((s.queues.len(), s.ready.len(), s.queued), (0, 3, 0));
        assert!(
            !s.flush_for_tailer(Instant::now()),
            "nothing left to send: nothing to do"
        );

        // Delivering them acknowledges the batch, and the tailer goes on.
        for req in std::mem::take(&mut s.ready) {
            s.settle(&req.events);
        }
        assert!(tailer.join().unwrap(), "the tailer found room");
        assert!(!ledger.tailer_waiting());
    }

    #[test]
    fn rejected_counts() {
        let r = Rejected {
            too_new_from: Some(8),
            too_old_until: Some(2),
            expired_until: Some(3),
        };
        assert_eq!(
            count_rejected(&r, 10),
            [
                (DropReason::TooNew, 2),
                (DropReason::TooOld, 2),
                (DropReason::Expired, 1)
            ]
        );
        assert_eq!(
            count_rejected(&Rejected::default(), 10),
            [
                (DropReason::TooNew, 0),
                (DropReason::TooOld, 0),
                (DropReason::Expired, 0)
            ]
        );
    }
}
