//! CloudWatch Logs `PutLogEvents` quotas, checked strictly on the request bodies the agent
//! sent (moto enforces only the ordering rule; real CloudWatch rejects the rest).
//!
//! From the PutLogEvents API reference:
//! * at most 10,000 events per request, and at least one;
//! * the batch size — Σ(UTF-8 bytes of each message + 26) — at most 1,048,576 bytes;
//! * so one message at most 1,048,576 − 26 bytes, and at least 1 byte;
//! * events in chronological (non-decreasing timestamp) order;
//! * the events of one request span at most 24 hours;
//! * none more than 2 hours in the future or older than 14 days (checked against the time the
//!   request was sent, by [`PutLogEvents::violations_at`]).

use serde_json::{Map, Value};

/// Most events in one request.
pub const MAX_EVENTS_PER_PUT: usize = 10_000;
/// Largest batch: Σ(message bytes + [`EVENT_OVERHEAD_BYTES`]).
pub const MAX_PUT_BYTES: usize = 1_048_576;
/// Bytes CloudWatch adds to each message when sizing a batch.
pub const EVENT_OVERHEAD_BYTES: usize = 26;
/// Largest message of one event.
pub const MAX_EVENT_MESSAGE_BYTES: usize = MAX_PUT_BYTES - EVENT_OVERHEAD_BYTES;
/// Widest span (last − first timestamp) of one request.
pub const MAX_SPAN_MS: i64 = 24 * 3600 * 1000;
/// Oldest accepted event, relative to the request.
pub const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
/// Furthest accepted future, relative to the request.
pub const MAX_FUTURE_MS: i64 = 2 * 3600 * 1000;

/// One `InputLogEvent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputEvent {
    pub timestamp: i64,
    pub message: String,
}

impl InputEvent {
    pub fn new(timestamp: i64, message: impl Into<String>) -> InputEvent {
        InputEvent {
            timestamp,
            message: message.into(),
        }
    }

    /// Bytes this event counts towards [`MAX_PUT_BYTES`].
    pub fn size(&self) -> usize {
        self.message.len() + EVENT_OVERHEAD_BYTES
    }
}

/// A parsed `PutLogEvents` request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutLogEvents {
    pub group: String,
    pub stream: String,
    pub events: Vec<InputEvent>,
}

impl PutLogEvents {
    /// Parses the JSON body (awsJson1_1: `logGroupName`, `logStreamName`,
    /// `logEvents: [{timestamp, message}]`; other members are ignored).
    pub fn parse(body: &[u8]) -> Result<PutLogEvents, String> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| format!("PutLogEvents body is not JSON: {e}"))?;
        let obj = v
            .as_object()
            .ok_or("PutLogEvents body is not a JSON object")?;
        let string = |o: &Map<String, Value>, k: &str| -> Result<String, String> {
            match o.get(k) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(format!("`{k}` is not a string: {other}")),
                None => Err(format!("`{k}` is missing")),
            }
        };
        let group = string(obj, "logGroupName")?;
        let stream = string(obj, "logStreamName")?;
        let list = match obj.get("logEvents") {
            Some(Value::Array(a)) => a,
            Some(_) => return Err("`logEvents` is not an array".into()),
            None => return Err("`logEvents` is missing".into()),
        };
        let mut events = Vec::with_capacity(list.len());
        for (i, e) in list.iter().enumerate() {
            let o = e
                .as_object()
                .ok_or_else(|| format!("logEvents[{i}] is not an object"))?;
            let timestamp = o
                .get("timestamp")
                .and_then(Value::as_i64)
                .ok_or_else(|| format!("logEvents[{i}].timestamp is missing or not an integer"))?;
            let message = string(o, "message").map_err(|e| format!("logEvents[{i}]: {e}"))?;
            events.push(InputEvent { timestamp, message });
        }
        Ok(PutLogEvents {
            group,
            stream,
            events,
        })
    }

    /// The JSON body the AWS SDK would send for this request.
    pub fn to_body(&self) -> Vec<u8> {
        let events: Vec<Value> = self
            .events
            .iter()
            .map(|e| serde_json::json!({"timestamp": e.timestamp, "message": e.message}))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "logGroupName": self.group,
            "logStreamName": self.stream,
            "logEvents": events,
        }))
        .expect("serialize PutLogEvents")
    }

    /// Σ(message bytes + 26): what CloudWatch compares with [`MAX_PUT_BYTES`].
    pub fn batch_bytes(&self) -> usize {
        self.events.iter().map(InputEvent::size).sum()
    }

    /// Last − first timestamp (0 for fewer than two events).
    pub fn span_ms(&self) -> i64 {
        match (self.events.first(), self.events.last()) {
            (Some(a), Some(b)) => b.timestamp - a.timestamp,
            _ => 0,
        }
    }

    /// Every quota this request breaks (empty: CloudWatch would accept it). The time window
    /// relative to "now" is not checked; see [`PutLogEvents::violations_at`].
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        let n = self.events.len();
        if n == 0 {
            v.push("empty logEvents".to_string());
        }
        if n > MAX_EVENTS_PER_PUT {
            v.push(format!("{n} events > {MAX_EVENTS_PER_PUT}"));
        }
        let bytes = self.batch_bytes();
        if bytes > MAX_PUT_BYTES {
            v.push(format!(
                "batch size {bytes} bytes (messages + {EVENT_OVERHEAD_BYTES} per event) > \
                 {MAX_PUT_BYTES}"
            ));
        }
        for (i, e) in self.events.iter().enumerate() {
            if e.message.is_empty() {
                v.push(format!("event {i}: empty message"));
            }
            if e.message.len() > MAX_EVENT_MESSAGE_BYTES {
                v.push(format!(
                    "event {i}: message of {} bytes > {MAX_EVENT_MESSAGE_BYTES}",
                    e.message.len()
                ));
            }
        }
        if let Some(i) = self
            .events
            .windows(2)
            .position(|w| w[1].timestamp < w[0].timestamp)
        {
            v.push(format!(
                "events not in chronological order: event {} at {} after event {i} at {}",
                i + 1,
                self.events[i + 1].timestamp,
                self.events[i].timestamp
            ));
        }
        let span = self.span_ms();
        if span > MAX_SPAN_MS {
            v.push(format!("events span {span} ms > 24 h ({MAX_SPAN_MS} ms)"));
        }
        v
    }

    /// [`PutLogEvents::violations`] plus the acceptance window for a request sent at
    /// `sent_at_ms` (Unix ms): no event older than 14 days or more than 2 hours ahead.
    pub fn violations_at(&self, sent_at_ms: i64) -> Vec<String> {
        let mut v = self.violations();
        if let Some(e) = self
            .events
            .iter()
            .find(|e| e.timestamp < sent_at_ms - MAX_AGE_MS)
        {
            v.push(format!(
                "event at {} is older than 14 days (sent at {sent_at_ms}): CloudWatch rejects it",
                e.timestamp
            ));
        }
        if let Some(e) = self
            .events
            .iter()
            .find(|e| e.timestamp > sent_at_ms + MAX_FUTURE_MS)
        {
            v.push(format!(
                "event at {} is more than 2 hours ahead (sent at {sent_at_ms}): CloudWatch \
                 rejects it",
                e.timestamp
            ));
        }
        v
    }
}

/// Parses `body` and checks every quota: the request, or every problem found.
pub fn check_put_log_events(body: &[u8]) -> Result<PutLogEvents, Vec<String>> {
    let put = PutLogEvents::parse(body).map_err(|e| vec![e])?;
    let v = put.violations();
    if v.is_empty() { Ok(put) } else { Err(v) }
}

/// Like [`check_put_log_events`], with the acceptance window relative to `sent_at_ms`.
pub fn check_put_log_events_at(body: &[u8], sent_at_ms: i64) -> Result<PutLogEvents, Vec<String>> {
    let put = PutLogEvents::parse(body).map_err(|e| vec![e])?;
    let v = put.violations_at(sent_at_ms);
    if v.is_empty() { Ok(put) } else { Err(v) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_000_000_000;

    fn body(events: Vec<InputEvent>) -> Vec<u8> {
        PutLogEvents {
            group: "/g".into(),
            stream: "s".into(),
            events,
        }
        .to_body()
    }

    fn small(n: usize) -> Vec<InputEvent> {
        (0..n)
            .map(|i| InputEvent::new(T0 + i as i64, "x"))
            .collect()
    }

    /// Events of `k` messages whose batch size is exactly `total` bytes; the messages are
    /// made of 2-byte characters (`é`) plus ASCII fill, so bytes ≠ chars.
    fn sized(k: usize, total: usize) -> Vec<InputEvent> {
        let msg_total = total - k * EVENT_OVERHEAD_BYTES;
        (0..k)
            .map(|i| {
                let len = msg_total / k + usize::from(i < msg_total % k);
                let mut m = "é".repeat(len / 2);
                if len % 2 == 1 {
                    m.push('"'); // escaped in the JSON body, one byte in the message
                }
                assert_eq!(m.len(), len);
                InputEvent::new(T0, m)
            })
            .collect()
    }

    fn problems(b: &[u8]) -> Vec<String> {
        match check_put_log_events(b) {
            Ok(_) => vec![],
            Err(v) => v,
        }
    }

    #[track_caller]
    fn rejected_for(b: &[u8], what: &str) {
        let p = problems(b);
        assert!(
            p.iter().any(|m| m.contains(what)),
            "expected a problem containing {what:?}, got {p:?}"
        );
    }

    #[test]
    fn event_count_boundary() {
        assert_eq!(problems(&body(small(1))), Vec::<String>::new());
        assert_eq!(problems(&body(small(9_999))), Vec::<String>::new());
        let ok = check_put_log_events(&body(small(10_000))).expect("10,000 events pass");
        assert_eq!(ok.events.len(), 10_000);
        rejected_for(&body(small(10_001)), "10001 events > 10000");
        rejected_for(&body(vec![]), "empty logEvents");
    }

    #[test]
    fn batch_bytes_boundary() {
        for k in [1, 3, 40] {
            let under = body(sized(k, MAX_PUT_BYTES - 1));
            let at = body(sized(k, MAX_PUT_BYTES));
            let over = body(sized(k, MAX_PUT_BYTES + 1));
            assert!(
                under.len() > MAX_PUT_BYTES,
                "the JSON body is larger than the batch size: bytes are counted on messages"
            );
            assert_eq!(problems(&under), Vec::<String>::new(), "k={k} under");
            let put = check_put_log_events(&at).expect("exactly 1 MiB passes");
            assert_eq!(put.batch_bytes(), MAX_PUT_BYTES);
            rejected_for(&over, "batch size 1048577 bytes");
        }
    }

    #[test]
    fn message_size_boundary() {
        let one = |len: usize| body(vec![InputEvent::new(T0, "m".repeat(len))]);
        assert_eq!(
            problems(&one(MAX_EVENT_MESSAGE_BYTES - 1)),
            Vec::<String>::new()
        );
        assert_eq!(
            problems(&one(MAX_EVENT_MESSAGE_BYTES)),
            Vec::<String>::new()
        );
        let p = problems(&one(MAX_EVENT_MESSAGE_BYTES + 1));
        assert!(
            p.iter().any(|m| m.contains("message of 1048551 bytes")),
            "{p:?}"
        );
        assert!(p.iter().any(|m| m.contains("batch size")), "{p:?}");
        rejected_for(&body(vec![InputEvent::new(T0, "")]), "empty message");
    }

    #[test]
    fn order_boundary() {
        let ev = |ts: &[i64]| body(ts.iter().map(|&t| InputEvent::new(t, "m")).collect());
        assert_eq!(problems(&ev(&[T0, T0, T0])), Vec::<String>::new());
        assert_eq!(problems(&ev(&[T0, T0 + 1, T0 + 1])), Vec::<String>::new());
        rejected_for(&ev(&[T0, T0 + 5, T0 + 4]), "not in chronological order");
        rejected_for(&ev(&[T0 + 1, T0]), "event 1 at");
    }

    #[test]
    fn span_boundary() {
        let ev = |span: i64| {
            body(vec![
                InputEvent::new(T0, "a"),
                InputEvent::new(T0 + span / 2, "b"),
                InputEvent::new(T0 + span, "c"),
            ])
        };
        assert_eq!(problems(&ev(MAX_SPAN_MS - 1)), Vec::<String>::new());
        assert_eq!(problems(&ev(MAX_SPAN_MS)), Vec::<String>::new());
        rejected_for(&ev(MAX_SPAN_MS + 1), "span 86400001 ms > 24 h");
    }

    #[test]
    fn acceptance_window() {
        let at = |t: i64| body(vec![InputEvent::new(t, "m")]);
        let now = T0;
        let ok = |b: &[u8]| check_put_log_events_at(b, now).is_ok();
        assert!(ok(&at(now - MAX_AGE_MS)));
        assert!(!ok(&at(now - MAX_AGE_MS - 1)));
        assert!(ok(&at(now + MAX_FUTURE_MS)));
        assert!(!ok(&at(now + MAX_FUTURE_MS + 1)));
        assert!(
            check_put_log_events(&at(now - MAX_AGE_MS - 1)).is_ok(),
            "the window is only checked with a send time"
        );
    }

    #[test]
    fn malformed_bodies() {
        for (b, what) in [
            (&b"nope"[..], "not JSON"),
            (b"[]", "not a JSON object"),
            (b"{\"logStreamName\":\"s\",\"logEvents\":[]}", "`logGroupName` is missing"),
            (
                b"{\"logGroupName\":\"g\",\"logStreamName\":\"s\",\"logEvents\":{}}",
                "not an array",
            ),
            (
                b"{\"logGroupName\":\"g\",\"logStreamName\":\"s\",\"logEvents\":[{\"message\":\"m\"}]}",
                "timestamp is missing",
            ),
            (
                b"{\"logGroupName\":\"g\",\"logStreamName\":\"s\",\"logEvents\":[{\"timestamp\":1.5,\"message\":\"m\"}]}",
                "not an integer",
            ),
            (
                b"{\"logGroupName\":\"g\",\"logStreamName\":\"s\",\"logEvents\":[{\"timestamp\":1,\"message\":7}]}",
                "`message` is not a string",
            ),
        ] {
            rejected_for(b, what);
        }
        let p = PutLogEvents::parse(
            b"{\"logGroupName\":\"g\",\"logStreamName\":\"s\",\"sequenceToken\":\"x\",\
              \"logEvents\":[{\"timestamp\":5,\"message\":\"\\u00e9\\\"\"}]}",
        )
        .expect("parses");
        assert_eq!(p.events, vec![InputEvent::new(5, "é\"")]);
        assert_eq!(p.batch_bytes(), 3 + EVENT_OVERHEAD_BYTES);
    }
}
