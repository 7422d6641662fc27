//! One endpoint's pause after failures: no retry storm.
//!
//! When a request fails in a way worth retrying (5xx, 429, no answer), the whole
//! endpoint pauses: every shard waits. When the pause ends, one shard's request goes
//! out alone as the probe; its success resumes every shard, its failure pauses
//! again, for longer (exponential backoff with jitter, `net::backoff`, from
//! [`MIN_BACKOFF`] to [`MAX_BACKOFF`]), and never shorter than a `Retry-After` the
//! endpoint asked for. Requests already in flight when the pause began may fail too:
//! they lengthen the pause to their `Retry-After` but do not count as more failures.
//! An answer that refuses the request itself (another 4xx) shows the endpoint is up.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::net::backoff::Backoff;

/// The first pause after a failure (at most; jittered down to half).
pub const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// The longest pause from backoff alone (a `Retry-After` may ask for longer).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Default)]
struct State {
    /// Failures since the last success.
    failures: u32,
    /// While paused: when the next probe may go.
    paused_until: Option<Instant>,
    /// A probe is in flight.
    probing: bool,
}

/// What a shard may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Send: the endpoint is not paused.
    Send,
    /// Send the probe: the endpoint is paused and this request decides.
    Probe,
}

/// The pause state of one endpoint.
pub struct Gate {
    state: Mutex<State>,
    changed: Notify,
    backoff: Backoff,
}

impl Default for Gate {
    fn default() -> Self {
        Self::new(MIN_BACKOFF, MAX_BACKOFF)
    }
}

impl Gate {
    /// A gate backing off from `min` to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            backoff: Backoff::new(min, max),
        }
    }

    /// Waits until this shard may send.
    pub async fn turn(&self) -> Turn {
        loop {
            // Registered before the state is read: no change is missed.
            let changed = self.changed.notified();
            let wait = {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                match st.paused_until {
                    None => return Turn::Send,
                    Some(t) if !st.probing && Instant::now() >= t => {
                        st.probing = true;
                        return Turn::Probe;
                    }
                    Some(_) if st.probing => None,
                    Some(t) => Some(t),
                }
            };
            match wait {
                Some(t) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(t) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// The endpoint answered (accepted, or refused the request itself): resume.
    pub fn answered(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let was_paused = st.paused_until.is_some();
        *st = State::default();
        drop(st);
        if was_paused {
            self.changed.notify_waiters();
        }
    }

    /// A request of `turn` failed in a way worth retrying; `retry_after` is what the
    /// endpoint asked for. Returns the pause now in force.
    pub fn failed(&self, turn: Turn, retry_after: Option<Duration>) -> Duration {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let asked = retry_after.unwrap_or_default();
        let until = if turn == Turn::Probe || st.paused_until.is_none() {
            st.probing = false;
            let delay = self.backoff.delay(st.failures).max(asked);
            st.failures = st.failures.saturating_add(1);
            now + delay
        } else {
            // In flight when the pause began: only a longer Retry-After counts.
            let current = st.paused_until.unwrap_or(now);
            current.max(now + asked)
        };
        st.paused_until = Some(until);
        drop(st);
        self.changed.notify_waiters();
        until.saturating_duration_since(now)
    }

    /// Failures since the last answer.
    pub fn failures(&self) -> u32 {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failures
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_failure_pauses_every_shard_and_one_probe_decides() {
        let gate = Arc::new(Gate::new(Duration::from_secs(1), Duration::from_secs(8)));
        assert_eq!(gate.turn().await, Turn::Send);
        let pause = gate.failed(Turn::Send, None);
        assert!(pause <= Duration::from_secs(1) && pause >= Duration::from_millis(500));
        // Four shards wait; when the pause ends exactly one probes.
        let probes = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (gate, probes, sent) = (gate.clone(), probes.clone(), sent.clone());
                tokio::spawn(async move {
                    match gate.turn().await {
                        Turn::Probe => probes.fetch_add(1, Ordering::SeqCst),
                        Turn::Send => sent.fetch_add(1, Ordering::SeqCst),
                    };
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            probes.load(Ordering::SeqCst) + sent.load(Ordering::SeqCst),
            0
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(probes.load(Ordering::SeqCst), 1, "one probe");
        assert_eq!(sent.load(Ordering::SeqCst), 0, "the others wait for it");
        // The probe fails: a longer pause (the second step, 1..2 s).
        let pause = gate.failed(Turn::Probe, None);
        assert!(pause >= Duration::from_secs(1), "{pause:?}");
        assert_eq!(gate.failures(), 2);
        // A request that was in flight fails too: no extra failure, a Retry-After counts.
        let longer = gate.failed(Turn::Send, Some(Duration::from_secs(5)));
        assert_eq!(longer, Duration::from_secs(5));
        assert_eq!(gate.failures(), 2);
        tokio::time::sleep(Duration::from_millis(5100)).await;
        assert_eq!(probes.load(Ordering::SeqCst), 2, "the next probe");
        gate.answered();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(sent.load(Ordering::SeqCst), 2, "resumed");
        assert_eq!(gate.failures(), 0);
        assert_eq!(gate.turn().await, Turn::Send);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_and_backoff_is_capped() {
        let gate = Gate::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut last = Duration::ZERO;
        for _ in 0..10 {
            let turn = gate.turn().await;
            last = gate.failed(turn, None);
            assert!(last <= Duration::from_secs(2), "{last:?}");
        }
        assert!(last >= Duration::from_secs(1), "grew to the cap: {last:?}");
        let turn = gate.turn().await;
        let t0 = tokio::time::Instant::now();
        assert_eq!(
            gate.failed(turn, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(gate.turn().await, Turn::Probe);
        assert!(t0.elapsed() >= Duration::from_secs(7));
    }
}
