//! One endpoint's pending samples: shards by series hash, each a bounded FIFO of
//! chunks (a push's samples for the shard, encoded and compressed: [`proto::chunks`]).
//!
//! A series always lands in the same shard (its hash modulo the shard count) and a
//! shard sends one request at a time, retrying it until it is settled before taking
//! the next: so each series' samples go out in the order they were pushed, within
//! and across requests. A push never waits: samples beyond a shard's share of
//! `max_pending_samples`, or chunks beyond [`BYTES_PER_SAMPLE`] bytes per sample of
//! it, push out that shard's oldest queued chunks, whose samples are counted as
//! dropped. The bound counts the batch a shard has in flight too, which is never
//! dropped (it is being retried); the config keeps the bound at least twice what the
//! shards can have in flight, so there is always room to queue.
//!
//! A shard's sender takes a batch when `max_samples_per_send` are queued, when the
//! oldest queued sample has waited `batch_send_deadline`, or at once while closing.
//! Pushes wake it only when its queue was empty (to start the deadline) or just
//! filled a batch: wake-ups do not grow with the number of samples.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::metrics::EndpointMetrics;
use super::proto::{self, Chunk};
use crate::metrics::series::Sample;

/// What a shard's chunks may hold per sample of its bound, on average: a chunk holds a
/// sample in ~17 bytes (`bench/metrics.sh`'s series, a scrape's share compressed
/// together), a few dozen when a target has few series. A target whose labels are
/// large (or random, so that they do not compress) fills this first: the bound in
/// bytes keeps its samples from taking more memory than the bound in samples allows
/// for (the default 500,000 samples: at most ~23 MiB of chunks).
pub const BYTES_PER_SAMPLE: usize = 48;

/// Encoding stages kept between pushes (each up to ~160 KiB: a staged block and snappy's
/// tables): as many as threads commonly push at once.
const KEEP_STAGES: usize = 4;

/// One shard's state.
#[derive(Default)]
struct ShardState {
    queue: VecDeque<Chunk>,
    /// Samples in `queue`.
    queued: usize,
    /// Bytes of the chunks in `queue`.
    queued_bytes: usize,
    /// Samples taken by the sender, not settled yet.
    in_flight: usize,
    /// Bytes of the chunks taken by the sender, not settled yet.
    in_flight_bytes: usize,
    /// When the oldest queued sample (or one pushed no later) arrived.
    oldest_at: Option<Instant>,
    closing: bool,
}

struct Shard {
    state: Mutex<ShardState>,
    wake: Notify,
}

/// The shards of one endpoint.
pub struct Queue {
    shards: Box<[Shard]>,
    /// Samples a shard holds at most (queued and in flight).
    cap: usize,
    /// Bytes of chunks a shard holds at most: [`BYTES_PER_SAMPLE`] per sample of `cap`.
    cap_bytes: usize,
    per_send: usize,
    deadline: Duration,
    /// Where pushes encode: a push takes one (or makes one) and puts it back, so
    /// that pushes from several threads encode side by side, none waiting while
    /// another compresses a large scrape.
    stages: Mutex<Vec<proto::Stage>>,
    metrics: EndpointMetrics,
}

impl Queue {
    /// `shards` shards sharing `max_pending` samples, batches of `per_send` samples
    /// sent at the latest `deadline` after their first sample arrived.
    pub fn new(
        shards: usize,
        max_pending: usize,
        per_send: usize,
        deadline: Duration,
        metrics: EndpointMetrics,
    ) -> Self {
        let shards = shards.max(1);
        let cap = (max_pending / shards).max(2 * per_send);
        Self {
            shards: (0..shards)
                .map(|_| Shard {
                    state: Mutex::new(ShardState::default()),
                    wake: Notify::new(),
                })
                .collect(),
            cap,
            cap_bytes: cap.saturating_mul(BYTES_PER_SAMPLE),
            per_send: per_send.max(1),
            deadline,
            stages: Mutex::new(Vec::new()),
            metrics,
        }
    }

    /// How many shards there are.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    fn shard_of(&self, s: &Sample) -> usize {
        (s.series.hash() % self.shards.len() as u64) as usize
    }

    fn take_stage(&self) -> proto::Stage {
        let mut stages = self.stages.lock().unwrap_or_else(|p| p.into_inner());
        stages.pop().unwrap_or_default()
    }

    /// Keeps `stage` for the next push, unless [`KEEP_STAGES`] are kept already
    /// (pushes at once beyond that, rare, make their own).
    fn put_stage(&self, stage: proto::Stage) {
        let mut stages = self.stages.lock().unwrap_or_else(|p| p.into_inner());
        if stages.len() < KEEP_STAGES {
            stages.push(stage);
        }
    }

    /// `samples` grouped by shard, each group in push order, in two passes (not one
    /// per shard): their indices, shard `i`'s at `order[starts[i]..starts[i + 1]]`.
    fn by_shard(&self, samples: &[Sample]) -> (Vec<u32>, Vec<usize>) {
        // Each sample's shard, read once: shards are at most 64.
        let picks: Vec<u8> = samples.iter().map(|s| self.shard_of(s) as u8).collect();
        let mut starts = vec![0; self.shards.len() + 1];
        for &p in &picks {
            starts[usize::from(p) + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut next = starts.clone();
        let mut order = vec![0; samples.len()];
        for (k, &p) in picks.iter().enumerate() {
            order[next[usize::from(p)]] = k as u32;
            next[usize::from(p)] += 1;
        }
        (order, starts)
    }

    /// Queues `samples` (in order), dropping each shard's oldest beyond its bound.
    /// Returns how many were dropped. Never waits for the senders.
    ///
    /// Each shard's share is encoded and compressed here, into chunks of at most
    /// `max_samples_per_send` samples: the scrape that pushes them has just read
    /// their records. The bound drops whole chunks, oldest first.
    pub fn push(&self, samples: &[Sample]) -> usize {
        let now = Instant::now();
        let (mut dropped, mut refused) = (0, 0);
        let (order, starts) = self.by_shard(samples);
        let of = |i: usize| {
            order[starts[i]..starts[i + 1]]
                .iter()
                .map(|&k| &samples[k as usize])
        };
        let mut chunks = Vec::new();
        let mut stage = self.take_stage();
        for (i, shard) in self.shards.iter().enumerate() {
            chunks.clear();
            if let Err(e) = proto::chunks(of(i), self.per_send, &mut stage, &mut chunks) {
                // Cannot happen: snappy refuses only inputs past 4 GiB, and a block is
                // 64 KiB.
                let n = of(i).count();
                self.metrics.failed.inc_by(n as u64);
                refused += n;
                tracing::error!(error = %e, samples = n, "remote write: cannot compress samples");
                continue;
            }
            let incoming: usize = chunks.iter().map(Chunk::samples).sum();
            if incoming == 0 {
                continue;
            }
            let mut st = shard.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.closing {
                dropped += incoming;
                continue;
            }
            let was_empty = st.queue.is_empty();
            let before = st.queued;
            for c in chunks.drain(..) {
                st.queued += c.samples();
                st.queued_bytes += c.size();
                st.queue.push_back(c);
            }
            // Back within the bound: the oldest queued chunks go first, then (when one
            // push alone is larger than the bound) the oldest of the push.
            while st.queued + st.in_flight > self.cap
                || st.queued_bytes + st.in_flight_bytes > self.cap_bytes
            {
                let Some(c) = st.queue.pop_front() else {
                    break;
                };
                st.queued -= c.samples();
                st.queued_bytes -= c.size();
                dropped += c.samples();
            }
            if st.queue.is_empty() {
                // All of it dropped (one chunk larger than the bound in bytes): no
                // deadline to wait for, or the sender would wake for nothing, at once
                // and again.
                st.oldest_at = None;
            } else if was_empty || st.oldest_at.is_none() {
                st.oldest_at = Some(now);
            }
            let len = st.queued;
            drop(st);
            if was_empty || (len >= self.per_send && before < self.per_send) {
                shard.wake.notify_one();
            }
        }
        self.put_stage(stage);
        // Each pushed sample stayed or pushed out one held before it (or itself).
        self.metrics
            .pending
            .inc_by(samples.len() as i64 - dropped as i64 - refused as i64);
        if dropped > 0 {
            self.metrics.dropped.inc_by(dropped as u64);
        }
        dropped
    }

    /// Waits for shard `i`'s next batch and moves its chunks into `out` (cleared
    /// first): at most `max_samples_per_send` samples; false once the shard is closing
    /// and empty.
    pub async fn next_batch(&self, i: usize, out: &mut Vec<Chunk>) -> bool {
        let shard = &self.shards[i];
        out.clear();
        loop {
            let notified = shard.wake.notified();
            let wait_until = {
                let mut st = shard.state.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let due = st.oldest_at.map(|t| t + self.deadline);
                let ready = st.queued >= self.per_send
                    || (!st.queue.is_empty() && (st.closing || due.is_some_and(|d| now >= d)));
                if ready {
                    let (mut n, mut bytes) = (0, 0);
                    while let Some(c) = st.queue.front() {
                        if n > 0 && n + c.samples() > self.per_send {
                            break;
                        }
                        n += c.samples();
                        bytes += c.size();
                        out.extend(st.queue.pop_front());
                    }
                    st.queued -= n;
                    st.queued_bytes -= bytes;
                    st.in_flight += n;
                    st.in_flight_bytes += bytes;
                    if st.queue.is_empty() {
                        st.oldest_at = None;
                        if st.queue.capacity() > 64 {
                            st.queue.shrink_to(16);
                        }
                    }
                    return true;
                }
                if st.closing && st.queue.is_empty() {
                    return false;
                }
                due
            };
            match wait_until {
                Some(t) => {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(t) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Shard `i`'s batch of `n` samples in `bytes` of chunks was settled (sent,
    /// refused, or given up).
    pub fn settle(&self, i: usize, n: usize, bytes: usize) {
        let mut st = self.shards[i]
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        st.in_flight -= n.min(st.in_flight);
        st.in_flight_bytes -= bytes.min(st.in_flight_bytes);
        drop(st);
        self.metrics.pending.dec_by(n as i64);
    }

    /// From now on every shard sends what it holds at once and then ends; pushes are
    /// dropped.
    pub fn close(&self) {
        for shard in self.shards.iter() {
            shard
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .closing = true;
            shard.wake.notify_one();
        }
    }

    /// Samples held now (queued and in flight).
    pub fn held(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let st = s.state.lock().unwrap_or_else(|p| p.into_inner());
                st.queued + st.in_flight
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use prometheus_client::registry::Registry;

    use prost::Message as _;

    use super::super::metrics::RemoteWriteMetrics;
    use super::super::proto::WriteRequest;
    use super::*;
    use crate::metrics::series::Series;

    /// A queue bounded by samples only.
    fn queue(shards: usize, max_pending: usize, per_send: usize) -> Queue {
        let mut q = bounded(shards, max_pending, per_send);
        q.cap_bytes = usize::MAX;
        q
    }

    /// A queue bounded by samples and bytes.
    fn bounded(shards: usize, max_pending: usize, per_send: usize) -> Queue {
        let m = RemoteWriteMetrics::register(&mut Registry::default()).endpoint("test");
        Queue::new(shards, max_pending, per_send, Duration::from_secs(5), m)
    }

    fn series(n: usize) -> Vec<Series> {
        (0..n)
            .map(|i| Series::new([("__name__", "m"), ("i", &*i.to_string())]).unwrap())
            .collect()
    }

    /// A batch's samples as sent: each one's labels (joined) and timestamp.
    fn sent(batch: &[Chunk]) -> Vec<(String, i64)> {
        let body = proto::request_body(batch);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        WriteRequest::decode(raw.as_slice())
            .unwrap()
            .timeseries
            .iter()
            .map(|t| {
                let labels: Vec<String> = t
                    .labels
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect();
                (labels.join(","), t.samples[0].timestamp)
            })
            .collect()
    }

    fn count(batch: &[Chunk]) -> usize {
        batch.iter().map(Chunk::samples).sum()
    }

    fn size(batch: &[Chunk]) -> usize {
        batch.iter().map(Chunk::size).sum()
    }

    /// Round `r`'s samples: every series at time `r`.
    fn round(all: &[Series], r: i64) -> Vec<Sample> {
        all.iter()
            .map(|s| Sample {
                series: s.clone(),
                timestamp_ms: r,
                value: r as f64,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_series_stays_in_one_shard_in_order() {
        let q = queue(4, 100_000, 50);
        let all = series(40);
        for r in 0..10 {
            assert_eq!(q.push(&round(&all, r)), 0);
        }
        assert_eq!(q.held(), 400);
        assert_eq!(q.metrics.pending.get(), 400);
        let mut seen: HashMap<String, (usize, Vec<i64>)> = HashMap::new();
        let mut batch = Vec::new();
        let mut per_shard = [0; 4];
        q.close();
        for (shard, taken) in per_shard.iter_mut().enumerate() {
            while q.next_batch(shard, &mut batch).await {
                let n = count(&batch);
                assert!(n <= 50);
                let samples = sent(&batch);
                assert_eq!(samples.len(), n);
                for (labels, t) in samples {
                    let e = seen.entry(labels).or_insert((shard, vec![]));
                    assert_eq!(e.0, shard, "a series in two shards");
                    e.1.push(t);
                }
                *taken += n;
                q.settle(shard, n, size(&batch));
            }
        }
        assert_eq!(seen.len(), 40);
        for (_, (_, times)) in seen {
            assert_eq!(times, (0..10).collect::<Vec<_>>(), "in push order");
        }
        assert!(per_shard.iter().all(|&n| n > 0), "spread: {per_shard:?}");
        assert_eq!(q.metrics.pending.get(), 0);
    }

    #[tokio::test]
    async fn pushes_from_several_threads_at_once_each_arrive_whole_and_in_order() {
        let q = queue(4, 1_000_000, 300);
        let threads = 8;
        let per_thread: Vec<Vec<Series>> = (0..threads)
            .map(|t| {
                (0..50)
                    .map(|i| {
                        Series::new([
                            ("__name__", "m"),
                            ("t", &*t.to_string()),
                            ("i", &*i.to_string()),
                        ])
                        .unwrap()
                    })
                    .collect()
            })
            .collect();
        let start = std::sync::Barrier::new(threads);
        std::thread::scope(|scope| {
            for all in &per_thread {
                let (q, start) = (&q, &start);
                scope.spawn(move || {
                    start.wait();
                    for r in 0..20 {
                        assert_eq!(q.push(&round(all, r)), 0);
                    }
                });
            }
        });
        assert_eq!(q.held(), threads * 50 * 20);
        let kept = q.stages.lock().unwrap().len();
        assert!((1..=KEEP_STAGES).contains(&kept), "{kept} stages kept");
        q.close();
        let mut seen: HashMap<String, Vec<i64>> = HashMap::new();
        let mut batch = Vec::new();
        for shard in 0..4 {
            while q.next_batch(shard, &mut batch).await {
                for (labels, t) in sent(&batch) {
                    seen.entry(labels).or_default().push(t);
                }
                q.settle(shard, count(&batch), size(&batch));
            }
        }
        assert_eq!(seen.len(), threads * 50);
        for (labels, times) in seen {
            assert_eq!(times, (0..20).collect::<Vec<_>>(), "{labels} in push order");
        }
    }

    #[tokio::test]
    async fn the_oldest_are_dropped_at_the_bound_never_the_batch_in_flight() {
        // One shard, room for 100, batches of 10.
        let q = queue(1, 100, 10);
        let s = series(1);
        let mut batch = Vec::new();
        q.push(&round(&s, 0));
        q.close_for_test_take(&mut batch).await;
        assert_eq!(sent(&batch)[0].1, 0, "in flight");
        // 150 more: room for 99 beside the one in flight.
        let mut dropped = 0;
        for r in 1..=150 {
            dropped += q.push(&round(&s, r));
        }
        assert_eq!(dropped, 51);
        assert_eq!(q.held(), 100);
        assert_eq!(q.metrics.dropped.get(), 51);
        assert_eq!(q.metrics.pending.get(), 100);
        q.settle(0, 1, 0);
        q.close();
        let mut times = Vec::new();
        while q.next_batch(0, &mut batch).await {
            times.extend(sent(&batch).iter().map(|s| s.1));
            q.settle(0, count(&batch), size(&batch));
        }
        assert_eq!(times, (52..=150).collect::<Vec<_>>(), "the newest 99 kept");
        // One push larger than the bound keeps its newest (whole chunks of 10).
        let q = queue(1, 20, 10);
        let big: Vec<Sample> = (0..50).flat_map(|r| round(&s, r)).collect();
        assert_eq!(q.push(&big), 30);
        q.close();
        q.next_batch(0, &mut batch).await;
        let times: Vec<i64> = sent(&batch).iter().map(|s| s.1).collect();
        assert_eq!(times, (30..40).collect::<Vec<_>>());
        assert_eq!(q.push(&big[..5]), 5, "closed: dropped");
    }

    #[tokio::test]
    async fn large_labels_are_bounded_by_bytes_too() {
        // Room for 100 samples: 4,800 bytes of chunks. A series with 1,000 bytes of
        // labels that do not compress fills the bytes first.
        let q = bounded(1, 100, 10);
        let mut x = 1u64;
        let value: String = (0..1000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                char::from(b'!' + (x >> 58) as u8)
            })
            .collect();
        let s = vec![Series::new([("__name__", "m"), ("v", &*value)]).unwrap()];
        let mut dropped = 0;
        for r in 0..50 {
            dropped += q.push(&round(&s, r));
        }
        let held = q.held();
        assert!((1..=5).contains(&held), "{held} held");
        assert_eq!(dropped, 50 - held);
        assert_eq!(q.metrics.dropped.get() as usize, dropped);
        {
            let st = q.shards[0].state.lock().unwrap();
            assert!(st.queued_bytes <= q.cap_bytes, "{} bytes", st.queued_bytes);
            assert!(
                st.queued_bytes > 1000 * held,
                "incompressible: {}",
                st.queued_bytes
            );
        }
        // A chunk larger than the bound in bytes is dropped whole, and leaves no
        // deadline behind.
        let q2 = bounded(1, 20, 10);
        let huge = vec![Series::new([("__name__", "m"), ("v", &*value.repeat(3))]).unwrap()];
        assert_eq!(q2.push(&round(&huge, 0)), 1);
        assert_eq!(q2.held(), 0);
        assert!(q2.shards[0].state.lock().unwrap().oldest_at.is_none());
        // The newest were kept.
        let mut batch = Vec::new();
        q.close();
        assert!(q.next_batch(0, &mut batch).await);
        let times: Vec<i64> = sent(&batch).iter().map(|s| s.1).collect();
        assert_eq!(times, ((50 - held as i64)..50).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_for_its_size_or_the_deadline() {
        let q = Arc::new(queue(1, 1000, 10));
        let s = series(1);
        q.push(&round(&s, 0));
        let taker = {
            let q = Arc::clone(&q);
            tokio::spawn(async move {
                let mut batch = Vec::new();
                assert!(q.next_batch(0, &mut batch).await);
                (tokio::time::Instant::now(), count(&batch))
            })
        };
        let t0 = tokio::time::Instant::now();
        let (at, n) = taker.await.unwrap();
        assert_eq!(n, 1);
        assert_eq!(at - t0, Duration::from_secs(5), "the batch deadline");
        q.settle(0, 1, 0);
        // A full batch goes at once.
        let q2 = Arc::clone(&q);
        let taker = tokio::spawn(async move {
            let mut batch = Vec::new();
            assert!(q2.next_batch(0, &mut batch).await);
            (tokio::time::Instant::now(), count(&batch))
        });
        tokio::task::yield_now().await;
        let t1 = tokio::time::Instant::now();
        for r in 1..=12 {
            q.push(&round(&s, r));
        }
        let (at, n) = taker.await.unwrap();
        assert_eq!((at - t1, n), (Duration::ZERO, 10));
    }

    impl Queue {
        /// Closes, takes one batch, and reopens (a sender that took a batch).
        async fn close_for_test_take(&self, out: &mut Vec<Chunk>) {
            self.close();
            assert!(self.next_batch(0, out).await);
            self.shards[0].state.lock().unwrap().closing = false;
        }
    }
}
