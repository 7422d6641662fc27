//! PutLogEvents limits, in one place. Each has a boundary test here, and the
//! integration tests check every request the agent sends against all of them.

/// Bytes a request may carry: Σ (UTF-8 bytes of each message + [`EVENT_OVERHEAD_BYTES`]).
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// Bytes CloudWatch counts for each event on top of its message.
pub const EVENT_OVERHEAD_BYTES: usize = 26;
/// Events a request may carry.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Longest time span (last − first timestamp) of one request, in milliseconds.
pub const MAX_BATCH_SPAN_MS: i64 = 24 * 60 * 60 * 1000;
/// Largest message of one event, in bytes (the event with its overhead is 1 MiB).
pub const MAX_EVENT_BYTES: usize = MAX_BATCH_BYTES - EVENT_OVERHEAD_BYTES;

/// Bytes an event with a message of `len` bytes counts against [`MAX_BATCH_BYTES`].
pub const fn event_size(len: usize) -> usize {
    len + EVENT_OVERHEAD_BYTES
}

/// True when a request of `events` events and `bytes` counted bytes may take one
/// more event of `len` message bytes.
pub const fn fits(events: usize, bytes: usize, len: usize) -> bool {
    events < MAX_BATCH_EVENTS && bytes + event_size(len) <= MAX_BATCH_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_count_boundary() {
        assert!(fits(MAX_BATCH_EVENTS - 1, 0, 1));
        assert!(!fits(MAX_BATCH_EVENTS, 0, 1));
    }

    #[test]
    fn byte_boundary_counts_the_overhead() {
        let full = MAX_BATCH_BYTES - event_size(100);
        assert!(fits(1, full, 100), "exactly at the limit fits");
        assert!(!fits(1, full + 1, 100), "one byte over does not");
        assert_eq!(event_size(MAX_EVENT_BYTES), MAX_BATCH_BYTES);
        assert!(
            fits(0, 0, MAX_EVENT_BYTES),
            "one maximal event fills a request"
        );
        assert!(!fits(0, 0, MAX_EVENT_BYTES + 1));
    }

    #[test]
    fn span_is_a_day() {
        assert_eq!(MAX_BATCH_SPAN_MS, 86_400_000);
    }
}
