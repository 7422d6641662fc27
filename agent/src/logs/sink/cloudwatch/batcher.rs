//! Per-stream queues and request building under the PutLogEvents limits.
//!
//! Records arrive in pipeline batches that mix destinations; each event is queued
//! on its (group, stream). A request takes events from the front of one queue while
//! they fit ([`limits`](super::limits)), is sorted by timestamp (stable), and is cut
//! wherever its span would pass 24 hours. The encoder bounds every record to one
//! event (`crate::logs::encode`); an event that still could not fit an empty request is
//! taken out of its queue as [`Taken::too_large`] for the sink to drop and count,
//! so that no content can hold a queue, and the pipeline behind it, forever.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::limits::{MAX_BATCH_SPAN_MS, MAX_EVENT_BYTES, event_size, fits};
use crate::logs::batch::{Batch, Event};
use crate::logs::encode::RecordForm;

/// An event's message: a slice of its pipeline batch, or text of its own.
#[derive(Clone, Debug)]
pub enum Message {
    /// `batch.buf[start..end]`, in the batch's [`RecordForm`], and the record's end
    /// when it is apart (an index into `batch.ends`, [`NO_END`] for none).
    InBatch(Arc<Batch>, u32, u32, u32),
    /// A record's JSON text held on its own (tests build events so).
    #[cfg(test)]
    Owned(Arc<str>),
}

/// One queued event.
#[derive(Clone, Debug)]
pub struct QueuedEvent {
    /// Timestamp, ms since the epoch.
    pub ts_ms: i64,
    /// The pipeline batch it acknowledges.
    pub seq: u64,
    /// The message's length as CloudWatch counts it (UTF-8 bytes of the record JSON).
    pub json_len: u32,
    /// The record.
    pub msg: Message,
}

impl QueuedEvent {
    /// The record's bytes as held, in parts written one after the other (see
    /// [`Batch::parts`]): JSON, or escaped when [`QueuedEvent::escaped`].
    pub fn parts(&self) -> [&[u8]; 3] {
        match &self.msg {
            Message::InBatch(b, start, end, end_apart) => b.parts(*start, *end, *end_apart),
            #[cfg(test)]
            Message::Owned(s) => [s.as_bytes(), b"", b""],
        }
    }

    /// The record's bytes as held, in one piece (tests).
    #[cfg(test)]
    pub fn bytes(&self) -> Vec<u8> {
        self.parts().concat()
    }

    /// True when [`QueuedEvent::bytes`] are already escaped as a JSON string's content (the
    /// tailer wrote them so: [`RecordForm::JsonString`]).
    pub fn escaped(&self) -> bool {
        matches!(&self.msg, Message::InBatch(b, ..) if b.form == RecordForm::JsonString)
    }
}

/// The queued event for `e` of `batch`: the record as the batch holds it.
pub fn event_of(batch: &Arc<Batch>, e: &Event) -> QueuedEvent {
    QueuedEvent {
        ts_ms: e.time_nanos.div_euclid(1_000_000),
        seq: batch.seq,
        json_len: e.json_len,
        msg: Message::InBatch(Arc::clone(batch), e.start, e.end, e.end_apart),
    }
}

/// What [`StreamQueue::take`] took from the front of a queue.
#[derive(Debug, Default)]
pub struct Taken {
    /// Requests, each within every limit.
    pub requests: Vec<Vec<QueuedEvent>>,
    /// Events larger than one event may be: they can never be sent.
    pub too_large: Vec<QueuedEvent>,
}

/// Events waiting for one (group, stream).
#[derive(Debug, Default)]
pub struct StreamQueue {
    events: VecDeque<QueuedEvent>,
    bytes: usize,
    since: Option<Instant>,
}

impl StreamQueue {
    /// Queues an event.
    pub fn push(&mut self, ev: QueuedEvent, now: Instant) {
        self.bytes += event_size(ev.json_len as usize);
        self.events.push_back(ev);
        self.since.get_or_insert(now);
    }

    /// True when a full request can be taken.
    pub fn is_full(&self) -> bool {
        self.events.len() >= super::limits::MAX_BATCH_EVENTS
            || self.bytes >= super::limits::MAX_BATCH_BYTES
    }

    /// Bytes waiting, as CloudWatch counts them.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// When the oldest waiting event arrived.
    pub fn since(&self) -> Option<Instant> {
        self.since
    }

    /// Takes the events of one request from the front, sorted and cut at 24 h
    /// spans (so possibly several requests), and any event on the way that is too
    /// large for any request. Always takes at least one event from a queue that is
    /// not empty: whatever the events, repeated takes empty the queue.
    pub fn take(&mut self, now: Instant) -> Taken {
        let mut out = Taken::default();
        let mut taken = Vec::new();
        let mut bytes = 0;
        while let Some(ev) = self.events.front() {
            let len = ev.json_len as usize;
            if len > MAX_EVENT_BYTES {
                let ev = self.events.pop_front().expect("front exists");
                self.bytes -= event_size(len);
                out.too_large.push(ev);
                continue;
            }
            if !fits(taken.len(), bytes, len) {
                break;
            }
            bytes += event_size(len);
            taken.push(self.events.pop_front().expect("front exists"));
        }
        self.bytes -= bytes;
        self.since = if self.events.is_empty() {
            None
        } else {
            Some(now)
        };
        out.requests = split_by_span(taken);
        out
    }
}

/// Sorts by timestamp (stable) and cuts wherever the span from a request's first
/// event would pass [`MAX_BATCH_SPAN_MS`].
pub fn split_by_span(mut evs: Vec<QueuedEvent>) -> Vec<Vec<QueuedEvent>> {
    evs.sort_by_key(|e| e.ts_ms);
    // Cut points, from the back, so that each `split_off` moves only the tail.
    let mut cuts = Vec::new();
    let mut first = evs.first().map_or(0, |e| e.ts_ms);
    for (i, ev) in evs.iter().enumerate() {
        if ev.ts_ms - first > MAX_BATCH_SPAN_MS {
            cuts.push(i);
            first = ev.ts_ms;
        }
    }
    let mut out = Vec::with_capacity(cuts.len() + 1);
    for &at in cuts.iter().rev() {
        out.push(evs.split_off(at));
    }
    if !evs.is_empty() {
        out.push(evs);
    }
    out.reverse();
    out
}

/// A batch of the given records (JSON texts) at `time_nanos`, in `form`, as the
/// tailer writes them (for tests).
#[cfg(test)]
pub(crate) fn batch_of(records: &[&str], form: RecordForm, time_nanos: i64) -> Arc<Batch> {
    let d = Arc::new(crate::logs::batch::Destination {
        group: "g".into(),
        stream: "s".into(),
    });
    let mut bb = crate::logs::batch::BatchBuilder::new(4 << 20, 100).with_form(form);
    for r in records {
        bb.push(&d, time_nanos, Instant::now(), |o| {
            match form {
                RecordForm::Json => o.extend_from_slice(r.as_bytes()),
                RecordForm::JsonString => {
                    crate::logs::encode::escape_json_text_into(r.as_bytes(), o)
                }
            }
            r.len()
        });
    }
    Arc::new(bb.seal(vec![], Instant::now()))
}

#[cfg(test)]
mod tests {
    use super::super::limits::{MAX_BATCH_BYTES, MAX_BATCH_EVENTS};
    use super::*;

    fn ev(ts_ms: i64, len: usize) -> QueuedEvent {
        QueuedEvent {
            ts_ms,
            seq: 1,
            json_len: len as u32,
            msg: Message::Owned(Arc::from("x".repeat(len))),
        }
    }

    #[test]
    fn takes_at_most_the_event_limit() {
        let mut q = StreamQueue::default();
        let now = Instant::now();
        for i in 0..(MAX_BATCH_EVENTS + 5) {
            q.push(ev(i as i64, 1), now);
        }
        assert!(q.is_full());
        let r = q.take(now).requests;
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].len(), MAX_BATCH_EVENTS);
        assert_eq!(q.take(now).requests[0].len(), 5);
        assert!(q.is_empty());
    }

    #[test]
    fn takes_at_most_the_byte_limit_with_overhead() {
        let mut q = StreamQueue::default();
        let now = Instant::now();
        // Four events that exactly fill a request, then one more byte's worth.
        let len = MAX_BATCH_BYTES / 4 - 26;
        for i in 0..5 {
            q.push(ev(i, len), now);
        }
        let r = q.take(now).requests;
        assert_eq!(r[0].len(), 4);
        let total: usize = r[0].iter().map(|e| e.bytes().len() + 26).sum();
        assert_eq!(total, MAX_BATCH_BYTES);
    }

    #[test]
    fn sorts_stably_and_cuts_at_a_day() {
        let day = MAX_BATCH_SPAN_MS;
        let evs = vec![
            ev(5, 1),
            ev(1, 2),
            ev(5, 3),
            ev(day + 1, 4),
            ev(day + 2, 5),
            ev(0, 6),
        ];
        let r = split_by_span(evs);
        let lens: Vec<Vec<usize>> = r
            .iter()
            .map(|req| req.iter().map(|e| e.bytes().len()).collect())
            .collect();
        // 0, 1, 5, 5 (stable: 1 before 3), day+1 is 24 h + 1 ms after 0: next request.
        assert_eq!(lens, vec![vec![6, 2, 1, 3], vec![4, 5]]);
        let exactly = split_by_span(vec![ev(0, 1), ev(day, 1)]);
        assert_eq!(exactly.len(), 1, "a span of exactly 24 h is allowed");
    }

    #[test]
    fn events_of_either_form_count_the_same() {
        let small = r#"{"log":"a \"quoted\" word \u0001 é","stream":"stderr"}"#;
        let plain = batch_of(&[small], RecordForm::Json, 1_500_000);
        let escaped = batch_of(&[small], RecordForm::JsonString, 1_500_000);
        let (a, b) = (
            event_of(&plain, &plain.events[0]),
            event_of(&escaped, &escaped.events[0]),
        );
        assert_eq!(
            (a.json_len, b.json_len),
            (small.len() as u32, small.len() as u32)
        );
        assert_eq!((a.ts_ms, b.ts_ms), (1, 1));
        assert!(!a.escaped() && b.escaped());
        let mut esc = Vec::new();
        crate::logs::encode::escape_json_text_into(&a.bytes(), &mut esc);
        assert_eq!(b.bytes(), &esc[..]);
    }

    /// Regression (a poison record wedged the sink for the whole node): an event that
    /// no request can take was left at the front of its queue, every take returned
    /// nothing, and the queue, its batch and the in-flight budget were held forever.
    #[test]
    fn an_event_too_large_for_any_request_is_taken_out_not_waited_on() {
        let mut q = StreamQueue::default();
        let now = Instant::now();
        q.push(ev(1, 10), now);
        q.push(ev(2, MAX_EVENT_BYTES + 1), now);
        q.push(ev(3, 10), now);
        let t = q.take(now);
        assert_eq!(t.too_large.len(), 1);
        assert_eq!(t.too_large[0].ts_ms, 2);
        let lens: Vec<Vec<u32>> = t
            .requests
            .iter()
            .map(|r| r.iter().map(|e| e.json_len).collect())
            .collect();
        assert_eq!(lens, vec![vec![10, 10]]);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
        let mut exactly = StreamQueue::default();
        exactly.push(ev(1, MAX_EVENT_BYTES), now);
        let t = exactly.take(now);
        assert!(t.too_large.is_empty(), "one maximal event is sent");
        assert_eq!(t.requests.len(), 1);
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        /// Event sizes near every boundary, tiny ones, and ones past the event limit.
        fn size() -> impl Strategy<Value = usize> {
            prop_oneof![
                4 => 0usize..64,
                2 => 64usize..20_000,
                1 => (MAX_BATCH_BYTES / 4 - 100)..(MAX_BATCH_BYTES / 4 + 100),
                1 => (MAX_EVENT_BYTES - 50)..(MAX_EVENT_BYTES + 50),
                1 => MAX_EVENT_BYTES..(2 * MAX_EVENT_BYTES),
            ]
        }

        /// Timestamps over three days, in runs that are close together or far apart.
        fn stamp() -> impl Strategy<Value = i64> {
            prop_oneof![
                3 => 0i64..1000,
                1 => 0i64..(3 * MAX_BATCH_SPAN_MS),
                1 => Just(MAX_BATCH_SPAN_MS),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Whatever the events, taking from a queue empties it in at most one take
            /// per event; every event leaves exactly once, in a request within every
            /// limit or (only when larger than an event may be) as too large.
            #[test]
            fn every_event_leaves_within_the_limits(
                events in prop::collection::vec((stamp(), size()), 1..400),
                many_tiny in 0usize..25_000,
            ) {
                let mut q = StreamQueue::default();
                let now = Instant::now();
                let mut want = Vec::new();
                for (i, (ts, len)) in events.iter().copied().enumerate() {
                    want.push((i as u64, len));
                    q.push(QueuedEvent { ts_ms: ts, seq: i as u64, json_len: len as u32,
                        msg: Message::Owned(Arc::from("")) }, now);
                }
                for k in 0..many_tiny {
                    let seq = (events.len() + k) as u64;
                    want.push((seq, 1));
                    q.push(QueuedEvent { ts_ms: 5, seq, json_len: 1, msg: Message::Owned(Arc::from("")) }, now);
                }
                let mut left = Vec::new();
                let mut takes = 0;
                while !q.is_empty() {
                    takes += 1;
                    prop_assert!(takes <= want.len(), "the queue does not drain");
                    let t = q.take(now);
                    prop_assert!(!t.requests.is_empty() || !t.too_large.is_empty(), "a take took nothing");
                    for ev in t.too_large {
                        prop_assert!(ev.json_len as usize > MAX_EVENT_BYTES);
                        left.push((ev.seq, ev.json_len as usize));
                    }
                    for r in t.requests {
                        prop_assert!(!r.is_empty());
                        prop_assert!(r.len() <= MAX_BATCH_EVENTS);
                        let bytes: usize = r.iter().map(|e| event_size(e.json_len as usize)).sum();
                        prop_assert!(bytes <= MAX_BATCH_BYTES, "{} bytes", bytes);
                        prop_assert!(r.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms), "not sorted");
                        let span = r.last().unwrap().ts_ms - r[0].ts_ms;
                        prop_assert!(span <= MAX_BATCH_SPAN_MS, "span {}", span);
                        left.extend(r.iter().map(|e| (e.seq, e.json_len as usize)));
                    }
                }
                prop_assert_eq!(q.bytes(), 0);
                left.sort_unstable();
                prop_assert_eq!(left, want);
            }
        }
    }
}
