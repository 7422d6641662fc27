//! A fault-injecting HTTP/1.1 proxy between the agent and moto (std threads, no async).
//!
//! The agent's `endpoint_url` points at [`FaultProxy::endpoint`]; each request is read in full
//! (`Content-Length` or chunked body, `Expect: 100-continue` answered), then either answered
//! with an injected fault or forwarded to moto on a fresh upstream connection
//! (`Connection: close`) and the response relayed with `Content-Length` framing. Client
//! connections are kept alive. Every exchange is recorded ([`Exchange`]): the request headers
//! (`X-Amz-Target` among them), the request body, the status given, whether it was injected.
//!
//! Faults (thread-safe, set from the test at any time):
//! * [`FaultProxy::throttle_next`]: the next N `PutLogEvents` get HTTP 400
//!   `ThrottlingException` (`x-amzn-ErrorType` header, awsJson 1.1 body);
//! * [`FaultProxy::unavailable_next`]: the next N `PutLogEvents` get HTTP 503
//!   `ServiceUnavailableException`;
//! * [`FaultProxy::set_delay`]: every forwarded request waits D first;
//! * [`FaultProxy::start_outage`]: until [`FaultProxy::end_outage`], every request is answered
//!   503 ([`Outage::Unavailable`]) or its connection is reset ([`Outage::Reset`]: closed with
//!   the request unread, so the kernel sends RST);
//! * [`FaultProxy::deny_until_cleared`]: until [`FaultProxy::clear_deny`], every
//!   `PutLogEvents` gets HTTP 400 `AccessDeniedException` (missing IAM permission);
//! * [`FaultProxy::invalid_when_body_contains`]: every `PutLogEvents` whose body contains a
//!   marker gets HTTP 400 `InvalidParameterException` (the others are forwarded);
//! * [`FaultProxy::reject_in_response`]: the next N `PutLogEvents` moto accepts are answered
//!   with a `rejectedLogEventsInfo` ([`Rejection`]); the events it names are taken out of the
//!   request before it is forwarded, so moto holds what CloudWatch would.

use std::collections::VecDeque;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http::{self, Head};
use super::limits::{InputEvent, PutLogEvents};
use crate::{Record, now_ms, secs, wait_until};

/// How requests fail during an outage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outage {
    /// HTTP 503 `ServiceUnavailableException` for every request.
    Unavailable,
    /// Every connection with a pending request is reset (RST) without an answer.
    Reset,
}

/// What the proxy did instead of forwarding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injected {
    /// 400 ThrottlingException ([`FaultProxy::throttle_next`]).
    Throttled,
    /// 503 ServiceUnavailableException ([`FaultProxy::unavailable_next`]).
    Unavailable,
    /// 503 during an [`Outage::Unavailable`].
    Outage,
    /// Connection reset during an [`Outage::Reset`] (status 0, body unknown).
    Reset,
    /// 400 AccessDeniedException ([`FaultProxy::deny_until_cleared`]).
    Denied,
    /// 400 InvalidParameterException: the body held a marker
    /// ([`FaultProxy::invalid_when_body_contains`]).
    Invalid,
    /// Forwarded (without the events it names) and answered 200 by moto, but the answer
    /// carries the proxy's `rejectedLogEventsInfo` ([`FaultProxy::reject_in_response`]).
    Rejected,
    /// moto could not be reached: 502 (not a planned fault; shows in failures).
    UpstreamError,
}

/// What [`FaultProxy::reject_in_response`] makes a successful `PutLogEvents` report, as
/// CloudWatch does for events outside its time window. Events are counted from the request's
/// (timestamp-ordered) ends; at least one event of a request is always kept, so that moto still
/// validates it (a request of one event is forwarded untouched and does not use up a rejection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The first `k` events are older than 14 days: `tooOldLogEventEndIndex: k`.
    TooOld(usize),
    /// The first `k` events are older than the group's retention: `expiredLogEventEndIndex: k`.
    Expired(usize),
    /// The last `k` events are more than 2 hours ahead: `tooNewLogEventStartIndex: n − k`.
    TooNew(usize),
}

impl Rejection {
    /// For a request of `n` (≥ 2) events: the indexes rejected and the `rejectedLogEventsInfo`.
    fn apply(self, n: usize) -> (std::ops::Range<usize>, Value) {
        match self {
            Rejection::TooOld(k) => {
                let k = k.min(n - 1);
                (0..k, serde_json::json!({ "tooOldLogEventEndIndex": k }))
            }
            Rejection::Expired(k) => {
                let k = k.min(n - 1);
                (0..k, serde_json::json!({ "expiredLogEventEndIndex": k }))
            }
            Rejection::TooNew(k) => {
                let start = n - k.min(n - 1);
                (
                    start..n,
                    serde_json::json!({ "tooNewLogEventStartIndex": start }),
                )
            }
        }
    }
}

/// Indexes of a request of `n` events that a `rejectedLogEventsInfo` names (too new, too old
/// or expired), as CloudWatch defines them.
pub fn rejected_indexes(info: &Value, n: usize) -> Vec<usize> {
    let idx = |k: &str| {
        info.get(k)
            .and_then(Value::as_u64)
            .map(|i| (i as usize).min(n))
    };
    let old = idx("tooOldLogEventEndIndex")
        .unwrap_or(0)
        .max(idx("expiredLogEventEndIndex").unwrap_or(0));
    let new = idx("tooNewLogEventStartIndex").unwrap_or(n);
    (0..n).filter(|&i| i < old || i >= new).collect()
}

/// One request the proxy saw and what it answered.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// Order of arrival (0, 1, …).
    pub id: u64,
    /// Client connection number (0, 1, …): shows keep-alive reuse.
    pub conn: u64,
    /// When the request had fully arrived (Unix ms).
    pub at_ms: i64,
    pub method: String,
    pub path: String,
    /// `X-Amz-Target` header, e.g. `Logs_20140328.PutLogEvents` (empty if absent).
    pub target: String,
    /// The request headers as received (empty for a reset connection).
    pub headers: Vec<(String, String)>,
    /// The request body (gzip `Content-Encoding` undone).
    pub body: Vec<u8>,
    /// Status given to the client; 0 for a reset connection.
    pub status: u16,
    pub injected: Option<Injected>,
    /// The response body given to the client.
    pub response_body: Vec<u8>,
    /// Delay added before forwarding.
    pub delayed: Duration,
    /// From the full request to the answer.
    pub elapsed: Duration,
}

impl Exchange {
    /// First value of request header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The operation name: `PutLogEvents` for `Logs_20140328.PutLogEvents`.
    pub fn operation(&self) -> &str {
        self.target.rsplit('.').next().unwrap_or("")
    }

    /// The request body as JSON (Null if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The response body as JSON (Null if it is not JSON).
    pub fn response_json(&self) -> Value {
        serde_json::from_slice(&self.response_body).unwrap_or(Value::Null)
    }

    /// Answered 200 by moto (not injected; a 200 carrying the proxy's rejections,
    /// [`Injected::Rejected`], is not counted: see [`PutCall::stored_events`]).
    pub fn accepted(&self) -> bool {
        self.status == 200 && self.injected.is_none()
    }
}

/// A recorded `PutLogEvents` request.
#[derive(Clone, Debug)]
pub struct PutCall {
    pub exchange: Exchange,
    /// The parsed body, or why it could not be parsed.
    pub put: Result<PutLogEvents, String>,
}

impl PutCall {
    /// `rejectedLogEventsInfo` of an accepted request (events moto/CloudWatch dropped as too
    /// old or too new), if any.
    pub fn rejected_info(&self) -> Option<Value> {
        let v = self.exchange.response_json();
        v.get("rejectedLogEventsInfo").cloned()
    }

    /// The events of an accepted request (moto's 200, or one answered with the proxy's
    /// [`Rejection`]) that were stored: all but those its `rejectedLogEventsInfo` names.
    /// Empty for a refused request or an unparsable body.
    pub fn stored_events(&self) -> Vec<InputEvent> {
        let e = &self.exchange;
        let stored = e.accepted() || (e.status == 200 && e.injected == Some(Injected::Rejected));
        let Ok(p) = &self.put else {
            return Vec::new();
        };
        if !stored {
            return Vec::new();
        }
        let dropped = self
            .rejected_info()
            .map(|r| rejected_indexes(&r, p.events.len()))
            .unwrap_or_default();
        p.events
            .iter()
            .enumerate()
            .filter(|(i, _)| !dropped.contains(i))
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// The events the answer reported as rejected (`rejectedLogEventsInfo`), none when there
    /// is none.
    pub fn rejected_events(&self) -> Vec<InputEvent> {
        let (Ok(p), Some(r)) = (&self.put, self.rejected_info()) else {
            return Vec::new();
        };
        rejected_indexes(&r, p.events.len())
            .into_iter()
            .map(|i| p.events[i].clone())
            .collect()
    }
}

/// Faults currently armed.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    pub throttle_next: u64,
    pub unavailable_next: u64,
    pub delay: Duration,
    pub outage: Option<Outage>,
    /// Every `PutLogEvents` is denied ([`FaultProxy::deny_until_cleared`]).
    pub deny: bool,
    /// `PutLogEvents` bodies holding any of these are refused as invalid.
    pub invalid_markers: Vec<String>,
    /// What the next accepted `PutLogEvents` report as rejected, in order.
    pub reject_next: VecDeque<Rejection>,
}

struct Shared {
    upstream: SocketAddr,
    faults: Mutex<Faults>,
    log: Mutex<Vec<Exchange>>,
    next_id: AtomicU64,
    next_conn: AtomicU64,
    /// Requests read in full and not answered yet.
    in_flight: AtomicU64,
    stop: AtomicBool,
    /// Open client connections (a clone of each, to shut them down on drop). A connection
    /// removes its own entry when it ends, so that its socket really closes (a reset needs the
    /// last descriptor closed with the request unread).
    open: Mutex<std::collections::HashMap<u64, TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The proxy; stops (closing every connection) on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (free port) and forwards to `upstream` (moto's address).
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let shared = Arc::new(Shared {
            upstream,
            faults: Mutex::new(Faults::default()),
            log: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            next_conn: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            open: Mutex::new(Default::default()),
            threads: Mutex::new(Vec::new()),
        });
        let accept = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("fault-proxy-accept".into())
                .spawn(move || accept_loop(listener, shared))
                .expect("spawn proxy thread")
        };
        FaultProxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:<port>`: the agent's `endpoint_url`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Disarms every fault (no delay, no outage, no pending throttles, 503s or rejections, no
    /// denial, no invalid markers).
    pub fn pass_through(&self) {
        *lock(&self.shared.faults) = Faults::default();
    }

    /// The next `n` `PutLogEvents` (in addition to those still pending) get 400 Throttling.
    pub fn throttle_next(&self, n: u64) {
        lock(&self.shared.faults).throttle_next += n;
    }

    /// The next `n` `PutLogEvents` get 503 ServiceUnavailable (after pending throttles).
    pub fn unavailable_next(&self, n: u64) {
        lock(&self.shared.faults).unavailable_next += n;
    }

    /// Every forwarded request waits `d` first (`Duration::ZERO`: none).
    pub fn set_delay(&self, d: Duration) {
        lock(&self.shared.faults).delay = d;
    }

    pub fn start_outage(&self, kind: Outage) {
        lock(&self.shared.faults).outage = Some(kind);
    }

    pub fn end_outage(&self) {
        lock(&self.shared.faults).outage = None;
    }

    /// Until [`FaultProxy::clear_deny`], every `PutLogEvents` gets HTTP 400
    /// `AccessDeniedException` (as when the role lacks `logs:PutLogEvents`); nothing reaches
    /// moto.
    pub fn deny_until_cleared(&self) {
        lock(&self.shared.faults).deny = true;
    }

    /// Ends [`FaultProxy::deny_until_cleared`].
    pub fn clear_deny(&self) {
        lock(&self.shared.faults).deny = false;
    }

    /// From now on, every `PutLogEvents` whose body (gzip undone) contains `marker` gets HTTP
    /// 400 `InvalidParameterException`; the others are forwarded. Markers add up; cleared by
    /// [`FaultProxy::pass_through`].
    pub fn invalid_when_body_contains(&self, marker: &str) {
        assert!(
            !marker.is_empty(),
            "an empty marker would refuse everything"
        );
        lock(&self.shared.faults)
            .invalid_markers
            .push(marker.to_string());
    }

    /// The next `n` `PutLogEvents` of two or more events that moto accepts (after those still
    /// pending) report `kind` in `rejectedLogEventsInfo`; the events it names are left out of
    /// what moto gets. Recorded as [`Injected::Rejected`] (status 200; the recorded body is
    /// the agent's, whole).
    pub fn reject_in_response(&self, kind: Rejection, n: u64) {
        let mut f = lock(&self.shared.faults);
        for _ in 0..n {
            f.reject_next.push_back(kind);
        }
    }

    /// Faults still armed.
    pub fn faults(&self) -> Faults {
        lock(&self.shared.faults).clone()
    }

    /// Requests received in full and not answered yet (e.g. held by [`FaultProxy::set_delay`]
    /// or waiting for moto).
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Every exchange so far, in order of arrival.
    pub fn exchanges(&self) -> Vec<Exchange> {
        lock(&self.shared.log).clone()
    }

    /// Number of exchanges matching `pred`.
    pub fn count(&self, pred: impl Fn(&Exchange) -> bool) -> usize {
        lock(&self.shared.log).iter().filter(|e| pred(e)).count()
    }

    /// Forgets the recorded exchanges.
    pub fn clear(&self) {
        lock(&self.shared.log).clear();
    }

    /// Waits until at least `n` exchanges match `pred`; panics after `timeout`.
    #[track_caller]
    pub fn wait_count(
        &self,
        pred: impl Fn(&Exchange) -> bool,
        n: usize,
        timeout: Duration,
        what: &str,
    ) {
        let ok = wait_until(|| self.count(&pred) >= n, timeout);
        assert!(
            ok,
            "timed out after {timeout:?} waiting for {n} × {what}; the proxy saw {} ({} \
             matching): {}",
            self.count(|_| true),
            self.count(&pred),
            self.summary()
        );
    }

    /// Recorded `PutLogEvents` requests, in order of arrival.
    pub fn put_log_events(&self) -> Vec<PutCall> {
        lock(&self.shared.log)
            .iter()
            .filter(|e| e.operation() == "PutLogEvents" && e.injected != Some(Injected::Reset))
            .map(|e| PutCall {
                exchange: e.clone(),
                put: PutLogEvents::parse(&e.body),
            })
            .collect()
    }

    /// Applies the strict quota checker ([`PutLogEvents::violations_at`], relative to when each
    /// request arrived) to every recorded `PutLogEvents` request, accepted or not, and checks
    /// that moto dropped no event of an accepted one (`rejectedLogEventsInfo`). `Ok(number of
    /// requests checked)` or every problem, one per line.
    pub fn check_put_log_events(&self) -> Result<usize, String> {
        let calls = self.put_log_events();
        let mut problems = Vec::new();
        for c in &calls {
            let e = &c.exchange;
            match &c.put {
                Err(err) => problems.push(format!("request #{} ({}): {err}", e.id, e.status)),
                Ok(p) => {
                    for v in p.violations_at(e.at_ms) {
                        problems.push(format!(
                            "request #{} to {}/{} ({} events, {} bytes, status {}): {v}",
                            e.id,
                            p.group,
                            p.stream,
                            p.events.len(),
                            p.batch_bytes(),
                            e.status
                        ));
                    }
                }
            }
            if e.accepted()
                && let Some(r) = c.rejected_info()
            {
                problems.push(format!(
                    "request #{} was accepted with rejectedLogEventsInfo {r}: events dropped",
                    e.id
                ));
            }
            // ResourceNotFoundException (missing group or stream) is the protocol for creating
            // them; any other 4xx from moto means CloudWatch refused the request.
            let kind = e.response_json()["__type"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if (400..500).contains(&e.status)
                && e.injected.is_none()
                && !kind.ends_with("ResourceNotFoundException")
            {
                problems.push(format!(
                    "request #{} rejected by moto: {}",
                    e.id,
                    String::from_utf8_lossy(&e.response_body)
                ));
            }
        }
        if problems.is_empty() {
            Ok(calls.len())
        } else {
            Err(problems.join("\n"))
        }
    }

    /// Events of the `PutLogEvents` requests moto accepted, in delivery order, without those
    /// reported rejected ([`PutCall::stored_events`]): `(group, stream, timestamp, message)`.
    pub fn delivered_events(&self) -> Vec<(String, String, i64, String)> {
        let mut out = Vec::new();
        for c in self.put_log_events() {
            let stored = c.stored_events();
            if let Ok(p) = c.put {
                for e in stored {
                    out.push((p.group.clone(), p.stream.clone(), e.timestamp, e.message));
                }
            }
        }
        out
    }

    /// [`FaultProxy::delivered_events`] parsed as records (unparsable messages skipped).
    pub fn delivered_records(&self) -> Vec<Record> {
        self.delivered_events()
            .into_iter()
            .filter_map(|(_, _, _, m)| serde_json::from_str(&m).ok())
            .collect()
    }

    /// Counts per operation and outcome, for failure messages.
    pub fn summary(&self) -> String {
        let mut counts: std::collections::BTreeMap<(String, u16, String), usize> =
            Default::default();
        for e in lock(&self.shared.log).iter() {
            *counts
                .entry((
                    e.operation().to_string(),
                    e.status,
                    e.injected.map(|i| format!("{i:?}")).unwrap_or_default(),
                ))
                .or_default() += 1;
        }
        let parts: Vec<String> = counts
            .into_iter()
            .map(|((op, st, inj), n)| {
                if inj.is_empty() {
                    format!("{op} {st}: {n}")
                } else {
                    format!("{op} {st} ({inj}): {n}")
                }
            })
            .collect();
        if parts.is_empty() {
            "no requests".into()
        } else {
            parts.join(", ")
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        for s in lock(&self.shared.open).values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let threads = std::mem::take(&mut *lock(&self.shared.threads));
        for h in threads {
            let _ = h.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = conn else { continue };
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        lock(&shared.open).insert(id, clone);
        let sh = shared.clone();
        let handle = thread::Builder::new()
            .name(format!("fault-proxy-conn-{id}"))
            .spawn(move || {
                serve_connection(stream, id, &sh);
                lock(&sh.open).remove(&id);
            })
            .expect("spawn proxy connection thread");
        let mut threads = lock(&shared.threads);
        // Reap finished connections so the list stays short.
        let (done, live): (Vec<_>, Vec<_>) = std::mem::take(&mut *threads)
            .into_iter()
            .partition(JoinHandle::is_finished);
        *threads = live;
        threads.push(handle);
        drop(threads);
        for h in done {
            let _ = h.join();
        }
    }
}

/// Waits until the client has sent something (true) or closed / the proxy stops (false),
/// without consuming it.
fn wait_readable(stream: &TcpStream, shared: &Shared) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut b = [0u8; 1];
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return false;
        }
        match stream.peek(&mut b) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Best-effort `X-Amz-Target` of a request still in the socket (for recording resets).
fn peek_target(stream: &TcpStream) -> String {
    let mut buf = [0u8; 4096];
    let n = stream.peek(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("x-amz-target")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default()
}

fn serve_connection(stream: TcpStream, conn: u64, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut writer = stream.try_clone().expect("clone stream");
    loop {
        if reader.buffer().is_empty() {
            if !wait_readable(&stream, shared) {
                return;
            }
            if lock(&shared.faults).outage == Some(Outage::Reset) {
                let target = peek_target(&stream);
                record(
                    shared,
                    conn,
                    RecordArgs {
                        method: String::new(),
                        path: String::new(),
                        target,
                        headers: Vec::new(),
                        body: Vec::new(),
                        status: 0,
                        injected: Some(Injected::Reset),
                        response_body: Vec::new(),
                        delayed: Duration::ZERO,
                        elapsed: Duration::ZERO,
                    },
                );
                // Closing with unread data makes the kernel send RST: drop every descriptor.
                lock(&shared.open).remove(&conn);
                drop(reader);
                drop(writer);
                drop(stream);
                return;
            }
        }
        let _ = stream.set_read_timeout(Some(secs(30)));
        let head = match http::read_head(&mut reader) {
            Ok(Some(h)) => h,
            _ => return,
        };
        if head.has_token("expect", "100-continue")
            && writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
        {
            return;
        }
        let Ok(raw_body) = http::read_request_body(&mut reader, &head) else {
            return;
        };
        let arrived = Instant::now();
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let keep_alive = !head.has_token("connection", "close")
            && (head.request_version() != "HTTP/1.0" || head.has_token("connection", "keep-alive"));
        let (status, reason, headers, body, injected, delayed) = answer(shared, &head, &raw_body);
        // Recorded before answering: once the client has its answer, the test sees the record.
        record(
            shared,
            conn,
            RecordArgs {
                method: head.method().to_string(),
                path: head.target().to_string(),
                target: head.get("x-amz-target").unwrap_or_default().to_string(),
                headers: head.headers.clone(),
                body: decode_body(&head, &raw_body),
                status,
                injected,
                response_body: body.clone(),
                delayed,
                elapsed: arrived.elapsed(),
            },
        );
        let ok =
            http::write_response(&mut writer, status, &reason, &headers, &body, keep_alive).is_ok();
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !ok || !keep_alive {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    }
}

struct RecordArgs {
    method: String,
    path: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
    injected: Option<Injected>,
    response_body: Vec<u8>,
    delayed: Duration,
    elapsed: Duration,
}

fn record(shared: &Shared, conn: u64, a: RecordArgs) {
    let mut log = lock(&shared.log);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    log.push(Exchange {
        id,
        conn,
        at_ms: now_ms(),
        method: a.method,
        path: a.path,
        target: a.target,
        headers: a.headers,
        body: a.body,
        status: a.status,
        injected: a.injected,
        response_body: a.response_body,
        delayed: a.delayed,
        elapsed: a.elapsed,
    });
}

fn decode_body(head: &Head, body: &[u8]) -> Vec<u8> {
    if head.has_token("content-encoding", "gzip") {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .is_ok()
        {
            return out;
        }
    }
    body.to_vec()
}

type Answer = (
    u16,
    String,
    Vec<(String, String)>,
    Vec<u8>,
    Option<Injected>,
    Duration,
);

fn aws_error(status: u16, reason: &str, kind: &str, message: &str, injected: Injected) -> Answer {
    let body = serde_json::to_vec(&serde_json::json!({"__type": kind, "message": message}))
        .expect("serialize error");
    (
        status,
        reason.to_string(),
        vec![
            ("Content-Type".into(), "application/x-amz-json-1.1".into()),
            ("x-amzn-ErrorType".into(), kind.to_string()),
            (
                "x-amzn-RequestId".into(),
                format!("fault-proxy-{}", now_ms()),
            ),
        ],
        body,
        Some(injected),
        Duration::ZERO,
    )
}

fn answer(shared: &Shared, head: &Head, body: &[u8]) -> Answer {
    let target = head.get("x-amz-target").unwrap_or_default();
    let is_put = target.rsplit('.').next() == Some("PutLogEvents");
    let (delay, may_reject) = {
        let mut f = lock(&shared.faults);
        if f.outage.is_some() {
            // A Reset outage that began while this request was being read is answered 503.
            return aws_error(
                503,
                "Service Unavailable",
                "ServiceUnavailableException",
                "The service is unavailable (injected outage)",
                Injected::Outage,
            );
        }
        if is_put && f.deny {
            return aws_error(
                400,
                "Bad Request",
                "AccessDeniedException",
                "User is not authorized to perform: logs:PutLogEvents",
                Injected::Denied,
            );
        }
        if is_put && f.throttle_next > 0 {
            f.throttle_next -= 1;
            return aws_error(
                400,
                "Bad Request",
                "ThrottlingException",
                "Rate exceeded",
                Injected::Throttled,
            );
        }
        if is_put && f.unavailable_next > 0 {
            f.unavailable_next -= 1;
            return aws_error(
                503,
                "Service Unavailable",
                "ServiceUnavailableException",
                "The service is unavailable (injected)",
                Injected::Unavailable,
            );
        }
        if is_put && !f.invalid_markers.is_empty() {
            let decoded = decode_body(head, body);
            if let Some(m) = f
                .invalid_markers
                .iter()
                .find(|m| contains(&decoded, m.as_bytes()))
            {
                return aws_error(
                    400,
                    "Bad Request",
                    "InvalidParameterException",
                    &format!("Log event rejected as invalid (injected: the request holds {m:?})"),
                    Injected::Invalid,
                );
            }
        }
        (f.delay, is_put && !f.reject_next.is_empty())
    };
    // A rejection to report: the request without the events it names goes to moto.
    let mut rejection = None;
    let mut forwarded_body = None;
    if may_reject
        && let Ok(mut v) = serde_json::from_slice::<Value>(&decode_body(head, body))
        && let Some(n) = v["logEvents"].as_array().map(Vec::len)
        && n >= 2
        && let Some(kind) = lock(&shared.faults).reject_next.pop_front()
    {
        let (gone, info) = kind.apply(n);
        if let Some(list) = v["logEvents"].as_array_mut() {
            let kept: Vec<Value> = std::mem::take(list)
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !gone.contains(i))
                .map(|(_, e)| e)
                .collect();
            *list = kept;
        }
        rejection = Some((kind, info));
        forwarded_body = Some(serde_json::to_vec(&v).expect("serialize PutLogEvents"));
    }
    if !delay.is_zero() {
        thread::sleep(delay); // the injected latency itself
    }
    let headers: Vec<(String, String)> = head
        .headers
        .iter()
        .filter(|(k, _)| !http::is_hop_header(k))
        // A rewritten body is sent decoded.
        .filter(|(k, _)| forwarded_body.is_none() || !k.eq_ignore_ascii_case("content-encoding"))
        .cloned()
        .collect();
    let result = http::roundtrip(
        shared.upstream,
        head.method(),
        head.target(),
        &headers,
        forwarded_body.as_deref().unwrap_or(body),
        secs(60),
    );
    if let Some((kind, _)) = &rejection
        && !matches!(&result, Ok(r) if r.status() == 200)
    {
        // Not accepted: nothing was stored, the rejection is still to come.
        lock(&shared.faults).reject_next.push_front(*kind);
    }
    match result {
        Ok(resp) => {
            let status = resp.status();
            let reason = resp
                .head
                .start_line
                .splitn(3, ' ')
                .nth(2)
                .unwrap_or("")
                .to_string();
            match rejection {
                Some((_, info)) if status == 200 => {
                    let mut v: Value = serde_json::from_slice(&resp.body)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| serde_json::json!({}));
                    v["rejectedLogEventsInfo"] = info;
                    let body = serde_json::to_vec(&v).expect("serialize response");
                    let headers = resp
                        .head
                        .headers
                        .into_iter()
                        .filter(|(k, _)| !k.eq_ignore_ascii_case("content-encoding"))
                        .collect();
                    (
                        status,
                        reason,
                        headers,
                        body,
                        Some(Injected::Rejected),
                        delay,
                    )
                }
                _ => (status, reason, resp.head.headers, resp.body, None, delay),
            }
        }
        Err(e) => {
            let mut a = aws_error(
                502,
                "Bad Gateway",
                "InternalFailure",
                &format!("fault proxy: upstream {}: {e}", shared.upstream),
                Injected::UpstreamError,
            );
            a.5 = delay;
            a
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
