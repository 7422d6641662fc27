//! Retry timing, one helper for every client: exponential backoff with jitter.
//!
//! The `n`-th wait (from 0) is drawn between half and all of `min(base · 2^n, max)`:
//! growing so that an outage is probed rather than hammered, capped so that recovery
//! is noticed soon, jittered so that agents on many nodes do not retry in step. The
//! CloudWatch sink and the local sink take [`Backoff::delay`] per attempt; the pod
//! watch iterates a [`Backoff`] (kube-runtime resets it after a quiet while).

use std::time::Duration;

/// Exponential backoff with jitter, from `base`, capped at `max`.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Waits from `base` (first attempt) doubling up to `max`.
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// The wait before retry number `attempt` (0 for the first), jittered.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.cap(attempt).mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    /// The longest wait before retry number `attempt`: `min(base · 2^attempt, max)`.
    pub fn cap(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max)
    }

    /// Starts over from `base` (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// The waits of successive attempts, without end.
impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let d = self.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_is_jittered_and_capped() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        assert_eq!(b.cap(0), Duration::from_millis(100));
        assert_eq!(b.cap(3), Duration::from_millis(800));
        assert_eq!(b.cap(40), Duration::from_secs(30));
        for attempt in 0..20 {
            let d = b.delay(attempt);
            assert!(d <= b.cap(attempt), "attempt {attempt}: {d:?}");
            assert!(d >= b.cap(attempt) / 2, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn iterates_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(40));
        let caps: Vec<bool> = (0..4)
            .map(|n| b.next().unwrap() <= b.cap(n) && b.cap(n) >= Duration::from_millis(10))
            .collect();
        assert_eq!(caps, vec![true; 4]);
        b.reset();
        assert!(
            b.next().unwrap() <= Duration::from_millis(10),
            "back to base"
        );
    }
}
