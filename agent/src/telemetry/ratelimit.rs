//! Rate-limited logging: at most one line per reason per interval, with a count
//! of what was suppressed, so bad input cannot flood the agent's own log.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Rate limits for log lines, by reason.
#[derive(Debug)]
pub struct LogLimits {
    every: Duration,
    last: HashMap<&'static str, (Instant, u64)>,
}

impl LogLimits {
    /// At most one line per reason every `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: HashMap::new(),
        }
    }

    /// `Some(suppressed since the last line)` when a line for `reason` may be logged now.
    pub fn allow(&mut self, reason: &'static str, now: Instant) -> Option<u64> {
        match self.last.get_mut(reason) {
            Some((at, suppressed)) if now.duration_since(*at) < self.every => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                let n = *suppressed;
                *at = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                self.last.insert(reason, (now, 0));
                Some(0)
            }
        }
    }
}

impl Default for LogLimits {
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_suppressed_count() {
        let mut l = LogLimits::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(l.allow("a", t0), Some(0));
        assert_eq!(l.allow("a", t0 + Duration::from_secs(1)), None);
        assert_eq!(l.allow("a", t0 + Duration::from_secs(2)), None);
        assert_eq!(
            l.allow("b", t0 + Duration::from_secs(2)),
            Some(0),
            "reasons are independent"
        );
        assert_eq!(l.allow("a", t0 + Duration::from_secs(10)), Some(2));
    }
}
