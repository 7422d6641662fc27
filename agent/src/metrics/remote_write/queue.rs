//! One endpoint's pending samples: shards by series hash, each a bounded FIFO.
//!
//! A series always lands in the same shard (its hash modulo the shard count) and a
//! shard sends one request at a time, retrying it until it is settled before taking
//! the next: so each series' samples go out in the order they were pushed, within
//! and across requests. A push never waits: samples beyond a shard's share of
//! `max_pending_samples` push out that shard's oldest queued ones, which are counted
//! as dropped. The bound counts the batch a shard has in flight too, which is never
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
use crate::metrics::series::Sample;

/// One shard's state.
#[derive(Default)]
struct ShardState {
    queue: VecDeque<Sample>,
    /// Samples taken by the sender, not settled yet.
    in_flight: usize,
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
    per_send: usize,
    deadline: Duration,
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
                    state: Mutex::new(ShardState {
                        // Two requests' worth: it grows while an endpoint is behind
                        // (to about `cap`) and gives the room back once it caught up.
                        queue: VecDeque::with_capacity(2 * per_send),
                        ..ShardState::default()
                    }),
                    wake: Notify::new(),
                })
                .collect(),
            cap,
            per_send,
            deadline,
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

    /// Queues `samples` (in order), dropping each shard's oldest beyond its bound.
    /// Returns how many were dropped. Never waits for the senders.
    pub fn push(&self, samples: &[Sample]) -> usize {
        let now = Instant::now();
        let mut dropped = 0;
        // Each sample's shard, read once (a series' hash is a read of the series,
        // most likely a cache miss): shards are at most 64.
        let picks: Vec<u8> = if self.shards.len() == 1 {
            Vec::new()
        } else {
            samples.iter().map(|s| self.shard_of(s) as u8).collect()
        };
        let of = |i: usize| {
            let picks = &picks;
            samples
                .iter()
                .enumerate()
                .filter(move |&(k, _)| picks.is_empty() || usize::from(picks[k]) == i)
                .map(|(_, s)| s)
        };
        for (i, shard) in self.shards.iter().enumerate() {
            let incoming = of(i).count();
            if incoming == 0 {
                continue;
            }
            let mut st = shard.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.closing {
                dropped += incoming;
                continue;
            }
            let was_empty = st.queue.is_empty();
            // Room for the newest `incoming`: first the oldest queued go, then (when
            // one push alone is larger than the bound) the oldest of the push.
            let room = self.cap - st.in_flight;
            let over = (st.queue.len() + incoming).saturating_sub(room);
            let from_queue = over.min(st.queue.len());
            st.queue.drain(..from_queue);
            let skip = over - from_queue;
            st.queue.extend(of(i).skip(skip).cloned());
            dropped += over;
            if was_empty {
                st.oldest_at = Some(now);
            }
            let len = st.queue.len();
            drop(st);
            if was_empty || (len >= self.per_send && len - (incoming - skip) < self.per_send) {
                shard.wake.notify_one();
            }
        }
        // Each pushed sample stayed or pushed out one held before it (or itself).
        self.metrics
            .pending
            .inc_by(samples.len() as i64 - dropped as i64);
        if dropped > 0 {
            self.metrics.dropped.inc_by(dropped as u64);
        }
        dropped
    }

    /// Waits for shard `i`'s next batch and moves it into `out` (cleared first);
    /// false once the shard is closing and empty.
    pub async fn next_batch(&self, i: usize, out: &mut Vec<Sample>) -> bool {
        let shard = &self.shards[i];
        out.clear();
        loop {
            let notified = shard.wake.notified();
            let wait_until = {
                let mut st = shard.state.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let due = st.oldest_at.map(|t| t + self.deadline);
                let ready = st.queue.len() >= self.per_send
                    || (!st.queue.is_empty() && (st.closing || due.is_some_and(|d| now >= d)));
                if ready {
                    let n = st.queue.len().min(self.per_send);
                    out.extend(st.queue.drain(..n));
                    st.in_flight += n;
                    if st.queue.is_empty() {
                        st.oldest_at = None;
                    }
                    let keep = (2 * self.per_send).max(2 * st.queue.len());
                    if st.queue.capacity() > 2 * keep {
                        st.queue.shrink_to(keep);
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

    /// Shard `i`'s batch of `n` samples was settled (sent, refused, or given up).
    pub fn settle(&self, i: usize, n: usize) {
        let mut st = self.shards[i]
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        st.in_flight -= n.min(st.in_flight);
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
                st.queue.len() + st.in_flight
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use prometheus_client::registry::Registry;

    use super::super::metrics::RemoteWriteMetrics;
    use super::*;
    use crate::metrics::series::Series;

    fn queue(shards: usize, max_pending: usize, per_send: usize) -> Queue {
        let m = RemoteWriteMetrics::register(&mut Registry::default()).endpoint("test");
        Queue::new(shards, max_pending, per_send, Duration::from_secs(5), m)
    }

    fn series(n: usize) -> Vec<Series> {
        (0..n)
            .map(|i| Series::new([("__name__", "m"), ("i", &*i.to_string())]).unwrap())
            .collect()
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
        let mut seen: HashMap<u64, (usize, Vec<i64>)> = HashMap::new();
        let mut batch = Vec::new();
        let mut per_shard = [0; 4];
        q.close();
        for (shard, taken) in per_shard.iter_mut().enumerate() {
            while q.next_batch(shard, &mut batch).await {
                assert!(batch.len() <= 50);
                for s in &batch {
                    let e = seen.entry(s.series.hash()).or_insert((shard, vec![]));
                    assert_eq!(e.0, shard, "a series in two shards");
                    e.1.push(s.timestamp_ms);
                }
                *taken += batch.len();
                q.settle(shard, batch.len());
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
    async fn the_oldest_are_dropped_at_the_bound_never_the_batch_in_flight() {
        // One shard, room for 100, batches of 10.
        let q = queue(1, 100, 10);
        let s = series(1);
        let mut batch = Vec::new();
        q.push(&round(&s, 0));
        q.close_for_test_take(&mut batch).await;
        assert_eq!(batch[0].timestamp_ms, 0, "in flight");
        // 150 more: room for 99 beside the one in flight.
        let mut dropped = 0;
        for r in 1..=150 {
            dropped += q.push(&round(&s, r));
        }
        assert_eq!(dropped, 51);
        assert_eq!(q.held(), 100);
        assert_eq!(q.metrics.dropped.get(), 51);
        assert_eq!(q.metrics.pending.get(), 100);
        q.settle(0, 1);
        q.close();
        let mut times = Vec::new();
        while q.next_batch(0, &mut batch).await {
            times.extend(batch.iter().map(|s| s.timestamp_ms));
            q.settle(0, batch.len());
        }
        assert_eq!(times, (52..=150).collect::<Vec<_>>(), "the newest 99 kept");
        // One push larger than the bound keeps its newest.
        let q = queue(1, 20, 10);
        let big: Vec<Sample> = (0..50).flat_map(|r| round(&s, r)).collect();
        assert_eq!(q.push(&big), 30);
        q.close();
        q.next_batch(0, &mut batch).await;
        assert_eq!(batch[0].timestamp_ms, 30);
        assert_eq!(q.push(&big[..5]), 5, "closed: dropped");
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
                (tokio::time::Instant::now(), batch.len())
            })
        };
        let t0 = tokio::time::Instant::now();
        let (at, n) = taker.await.unwrap();
        assert_eq!(n, 1);
        assert_eq!(at - t0, Duration::from_secs(5), "the batch deadline");
        q.settle(0, 1);
        // A full batch goes at once.
        let q2 = Arc::clone(&q);
        let taker = tokio::spawn(async move {
            let mut batch = Vec::new();
            assert!(q2.next_batch(0, &mut batch).await);
            (tokio::time::Instant::now(), batch.len())
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
        async fn close_for_test_take(&self, out: &mut Vec<Sample>) {
            self.close();
            assert!(self.next_batch(0, out).await);
            self.shards[0].state.lock().unwrap().closing = false;
        }
    }
}
