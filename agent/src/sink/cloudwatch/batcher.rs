//! Per-stream queues and request building under the PutLogEvents limits.
//!
//! Records arrive in pipeline batches that mix destinations; each event is queued
//! on its (group, stream). A request takes events from the front of one queue while
//! they fit ([`limits`](super::limits)), is sorted by timestamp (stable), and is cut
//! wherever its span would pass 24 hours. A record whose JSON is larger than an
//! event may be gets its `log` cut, with a marker, so the record stays valid JSON.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::limits::{MAX_BATCH_SPAN_MS, MAX_EVENT_BYTES, event_size, fits};
use crate::batch::{Batch, Event};
use crate::encode::RecordForm;

/// Appended to a `log` cut to fit one event.
pub const TRUNCATED_MARKER: &str = "…[truncated by kubeship]";

/// An event's message: a slice of its pipeline batch, or a cut copy.
#[derive(Clone, Debug)]
pub enum Message {
    /// `batch.buf[start..end]`, in the batch's [`RecordForm`].
    InBatch(Arc<Batch>, u32, u32),
    /// A record re-encoded to fit, as JSON.
    Owned(Arc<str>),
}

/// One queued event.
#[derive(Clone, Debug)]
pub struct Ev {
    /// Timestamp, ms since the epoch.
    pub ts_ms: i64,
    /// The pipeline batch it acknowledges.
    pub seq: u64,
    /// The message's length as CloudWatch counts it (UTF-8 bytes of the record JSON).
    pub json_len: u32,
    /// The record.
    pub msg: Message,
}

impl Ev {
    /// The record's bytes as held: JSON, or escaped when [`Ev::escaped`].
    pub fn bytes(&self) -> &[u8] {
        match &self.msg {
            Message::InBatch(b, s, e) => &b.buf[*s as usize..*e as usize],
            Message::Owned(s) => s.as_bytes(),
        }
    }

    /// True when [`Ev::bytes`] are already escaped as a JSON string's content (the
    /// tailer wrote them so: [`RecordForm::JsonString`]).
    pub fn escaped(&self) -> bool {
        matches!(&self.msg, Message::InBatch(b, ..) if b.form == RecordForm::JsonString)
    }
}

/// The queued event for `e` of `batch`: the record as the batch holds it, or a
/// JSON copy with its `log` cut to fit one event (then the flag is true).
pub fn event_of(batch: &Arc<Batch>, e: &Event) -> (Ev, bool) {
    let cut = if e.json_len as usize > MAX_EVENT_BYTES {
        fit_record(&record_json(batch, e))
    } else {
        None
    };
    let ts_ms = e.time_nanos.div_euclid(1_000_000);
    let (msg, json_len, cut) = match cut {
        None => (
            Message::InBatch(Arc::clone(batch), e.start, e.end),
            e.json_len,
            false,
        ),
        Some(c) => {
            let len = c.len() as u32;
            (Message::Owned(c), len, true)
        }
    };
    (
        Ev {
            ts_ms,
            seq: batch.seq,
            json_len,
            msg,
        },
        cut,
    )
}

/// The record's JSON: unescaped when the batch holds it as a JSON string's content.
fn record_json<'a>(batch: &'a Batch, e: &Event) -> Cow<'a, [u8]> {
    let rec = batch.record(e);
    if batch.form == RecordForm::Json {
        return Cow::Borrowed(rec);
    }
    let mut quoted = Vec::with_capacity(rec.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(rec);
    quoted.push(b'"');
    match serde_json::from_slice::<String>(&quoted) {
        Ok(json) => Cow::Owned(json.into_bytes()),
        // The tailer wrote it escaped; it cannot fail to unescape.
        Err(_) => Cow::Borrowed(rec),
    }
}

/// Events waiting for one (group, stream).
#[derive(Debug, Default)]
pub struct StreamQueue {
    events: VecDeque<Ev>,
    bytes: usize,
    since: Option<Instant>,
}

impl StreamQueue {
    /// Queues an event.
    pub fn push(&mut self, ev: Ev, now: Instant) {
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
    /// spans (so possibly several requests).
    pub fn take(&mut self, now: Instant) -> Vec<Vec<Ev>> {
        let (mut n, mut bytes) = (0, 0);
        for ev in &self.events {
            let len = ev.json_len as usize;
            if !fits(n, bytes, len) {
                break;
            }
            n += 1;
            bytes += event_size(len);
        }
        let taken: Vec<Ev> = self.events.drain(..n).collect();
        self.bytes -= bytes;
        self.since = if self.events.is_empty() {
            None
        } else {
            Some(now)
        };
        split_by_span(taken)
    }
}

/// Sorts by timestamp (stable) and cuts wherever the span from a request's first
/// event would pass [`MAX_BATCH_SPAN_MS`].
pub fn split_by_span(mut evs: Vec<Ev>) -> Vec<Vec<Ev>> {
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

/// Cuts a record's `log` so its JSON fits one event, marking the cut. Returns
/// `None` when the record already fits. The record's other bytes (field order
/// included) are kept: the escaped `log` value is cut between escape sequences
/// and characters, and the marker spliced in.
pub fn fit_record(json: &[u8]) -> Option<Arc<str>> {
    if json.len() <= MAX_EVENT_BYTES {
        return None;
    }
    const HEAD: &[u8] = b"{\"log\":\"";
    if let Some(log) = json.strip_prefix(HEAD)
        && let Some(log_len) = escaped_len(log)
    {
        let rest = &json[HEAD.len() + log_len..];
        let room = MAX_EVENT_BYTES.saturating_sub(HEAD.len() + rest.len() + TRUNCATED_MARKER.len());
        let cut = escaped_boundary(&log[..log_len], room);
        let mut out = Vec::with_capacity(MAX_EVENT_BYTES);
        out.extend_from_slice(HEAD);
        out.extend_from_slice(&log[..cut]);
        out.extend_from_slice(TRUNCATED_MARKER.as_bytes());
        out.extend_from_slice(rest);
        if let Ok(s) = String::from_utf8(out) {
            return Some(Arc::from(s));
        }
    }
    // Not one of our records (should not happen): cut the bytes.
    let s = String::from_utf8_lossy(json);
    let mut cut = MAX_EVENT_BYTES - TRUNCATED_MARKER.len();
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    Some(Arc::from(format!("{}{TRUNCATED_MARKER}", &s[..cut])))
}

/// Length of a JSON string's escaped content (up to its closing quote).
fn escaped_len(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'"' => return Some(i),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// The largest cut ≤ `max` that splits neither an escape sequence nor a character.
fn escaped_boundary(s: &[u8], max: usize) -> usize {
    let mut i = 0;
    while i < s.len() {
        let step = match s[i] {
            b'\\' if s.get(i + 1) == Some(&b'u') => 6,
            b'\\' => 2,
            b if b >= 0xf0 => 4,
            b if b >= 0xe0 => 3,
            b if b >= 0xc0 => 2,
            _ => 1,
        };
        if i + step > max {
            break;
        }
        i += step;
    }
    i
}

/// A batch of the given records (JSON texts) at `time_nanos`, in `form`, as the
/// tailer writes them (for tests).
#[cfg(test)]
pub(crate) fn batch_of(records: &[&str], form: RecordForm, time_nanos: i64) -> Arc<Batch> {
    let d = Arc::new(crate::batch::Destination {
        group: "g".into(),
        stream: "s".into(),
    });
    let mut bb = crate::batch::BatchBuilder::new(4 << 20, 100).with_form(form);
    for r in records {
        bb.push(&d, time_nanos, Instant::now(), |o| {
            match form {
                RecordForm::Json => o.extend_from_slice(r.as_bytes()),
                RecordForm::JsonString => crate::encode::escape_json_text_into(r.as_bytes(), o),
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

    fn ev(ts_ms: i64, len: usize) -> Ev {
        Ev {
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
        let r = q.take(now);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].len(), MAX_BATCH_EVENTS);
        assert_eq!(q.take(now)[0].len(), 5);
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
        let r = q.take(now);
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
    fn events_of_either_form_count_and_cut_the_same() {
        let big = serde_json::to_string(&serde_json::json!({
            "log": "say \"hi\" \u{1} é ".repeat(80_000),
            "stream": "stdout",
        }))
        .unwrap();
        assert!(big.len() > MAX_EVENT_BYTES);
        let small = r#"{"log":"a \"quoted\" word","stream":"stderr"}"#;
        let plain = batch_of(&[small, &big], RecordForm::Json, 0);
        let escaped = batch_of(&[small, &big], RecordForm::JsonString, 0);
        for (i, want_cut) in [(0, false), (1, true)] {
            let (a, cut_a) = event_of(&plain, &plain.events[i]);
            let (b, cut_b) = event_of(&escaped, &escaped.events[i]);
            assert_eq!((cut_a, cut_b), (want_cut, want_cut));
            assert_eq!(a.json_len, b.json_len);
            assert_eq!(a.ts_ms, b.ts_ms);
            assert!(!a.escaped());
            assert_eq!(b.escaped(), !want_cut, "a cut copy is JSON again");
            if want_cut {
                assert_eq!(a.bytes(), b.bytes());
                assert!(a.json_len as usize <= MAX_EVENT_BYTES);
            } else {
                assert_eq!(a.json_len as usize, small.len());
                let mut esc = Vec::new();
                crate::encode::escape_json_text_into(a.bytes(), &mut esc);
                assert_eq!(b.bytes(), &esc[..]);
            }
        }
    }

    #[test]
    fn oversized_record_is_cut_to_one_event_and_stays_json() {
        let log = "é\u{1}".repeat(400_000); // escaping makes \u0001 six bytes
        let json =
            serde_json::to_vec(&serde_json::json!({"log": log, "stream": "stdout"})).unwrap();
        assert!(json.len() > MAX_EVENT_BYTES);
        let fit = fit_record(&json).expect("cut");
        assert!(fit.len() <= MAX_EVENT_BYTES, "{}", fit.len());
        assert!(
            fit.len() > MAX_EVENT_BYTES / 2,
            "not cut more than needed: {}",
            fit.len()
        );
        let v: serde_json::Value = serde_json::from_str(&fit).unwrap();
        assert!(v["log"].as_str().unwrap().ends_with(TRUNCATED_MARKER));
        assert_eq!(v["stream"], "stdout");
        assert!(
            fit.ends_with(&format!("{TRUNCATED_MARKER}\",\"stream\":\"stdout\"}}")),
            "order kept"
        );
        assert!(fit_record(b"{\"log\":\"small\"}").is_none());
    }
}
