//! The fake API server: HTTP/1.1 over std threads (one per connection, keep-alive), the
//! list/watch protocol of `/api/v1/pods` (for one node) and `/api/v1/namespaces`, faults, and
//! the record of every request.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::objects::{Pod, namespace_json, uid_for};
use super::protocol::{
    Out, Reject, Route, WatchReq, event_line, list, outs, parse_query, parse_rv, reason_phrase,
    route, selected, status_body, status_json, too_large, too_old,
};
use super::store::{Entry, EventType, KubeResource, Store};
use crate::cw::{Head, read_head, read_request_body, write_response};
use crate::secs;

/// How long a watch stream waits for news before checking that its client is still there.
const LIVENESS_CHECK: Duration = Duration::from_millis(200);

/// What the server refuses to do during an outage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outage {
    /// Connections are closed as soon as a request has arrived, without an answer.
    Refuse,
    /// Every request is answered 503 with a `Status` body.
    Unavailable,
}

/// Request counts by kind (see [`FakeApi::requests`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    /// Pod lists begun (requests without a `continue` token), whatever their answer.
    pub pods_list: usize,
    /// Further pages of pod lists (requests with a `continue` token).
    pub pods_continue: usize,
    /// Pod watches, whatever their answer (including a `410 Expired` ERROR event).
    pub pods_watch: usize,
    pub namespaces_list: usize,
    pub namespaces_continue: usize,
    pub namespaces_watch: usize,
    /// Requests whose connection was closed without an answer ([`FakeApi::set_outage`]).
    pub refused: usize,
    /// Requests answered 503 ([`FakeApi::set_unavailable`]).
    pub unavailable: usize,
    /// Requests the fake does not expect from the agent (`"GET /path?query: why"`).
    pub unexpected: Vec<String>,
}

impl Requests {
    /// Lists of `resource` begun.
    pub fn lists(&self, resource: KubeResource) -> usize {
        match resource {
            KubeResource::Pods => self.pods_list,
            KubeResource::Namespaces => self.namespaces_list,
        }
    }

    /// Watches of `resource`.
    pub fn watches(&self, resource: KubeResource) -> usize {
        match resource {
            KubeResource::Pods => self.pods_watch,
            KubeResource::Namespaces => self.namespaces_watch,
        }
    }
}

/// What a request was taken for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// A list (first page).
    List(KubeResource),
    /// A further page of a list.
    Continue(KubeResource),
    Watch(KubeResource),
    /// Closed without an answer during an outage.
    Refused,
    /// Answered 503 during an outage.
    Unavailable,
    /// Not a request the fake expects (answered 4xx/5xx and listed in
    /// [`Requests::unexpected`]).
    Unexpected,
}

/// One request as the fake received it and what it answered.
#[derive(Clone, Debug)]
pub struct ApiRequest {
    /// Order of arrival (0, 1, …).
    pub id: u64,
    /// Connection number (0, 1, …): shows keep-alive reuse.
    pub conn: u64,
    pub method: String,
    /// Path and query as sent (`/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1&limit=500`).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub kind: RequestKind,
    /// HTTP status answered (0: none, the connection was closed). A watch's status is 200
    /// even when its stream holds only an ERROR event.
    pub status: u16,
}

impl ApiRequest {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query string (without `?`; empty when there is none).
    pub fn query_string(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// The decoded value of query parameter `name`.
    pub fn query(&self, name: &str) -> Option<String> {
        parse_query(self.query_string())
            .ok()?
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct State {
    store: Store,
    outage: Option<Outage>,
    delay: Duration,
    /// Open watch streams: id → resource.
    watches: BTreeMap<u64, KubeResource>,
    /// Watches told to end ([`FakeApi::expire_watches`]) once they have sent the log up to
    /// this length.
    expiring: HashMap<u64, usize>,
    next_watch: u64,
    requests: Requests,
    log: Vec<ApiRequest>,
}

struct Shared {
    node: String,
    state: Mutex<State>,
    /// Signalled on every change of `state`: new log entries, watches opening and closing,
    /// requests recorded, faults switched.
    changed: Condvar,
    stop: AtomicBool,
    open: Mutex<HashMap<u64, TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next_conn: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Waits until `cond` holds on the state; false after `timeout`.
    fn wait_state(&self, timeout: Duration, mut cond: impl FnMut(&State) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.state();
        while !cond(&st) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    fn shutdown_connections(&self) {
        for s in lock(&self.open).values() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// A fake Kubernetes API server for one node's agent, on `127.0.0.1:<ephemeral port>` (plain
/// HTTP, no authentication); see the [module documentation](super) for what it serves. Stops
/// on drop, and then panics if it saw requests it does not expect (unless the thread is
/// already panicking).
pub struct FakeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FakeApi {
    /// Starts serving the pods of `node` (and all namespaces).
    pub fn start(node: &str) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake API server");
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(Shared {
            node: node.to_string(),
            state: Mutex::new(State {
                store: Store::new(),
                outage: None,
                delay: Duration::ZERO,
                watches: BTreeMap::new(),
                expiring: HashMap::new(),
                next_watch: 0,
                requests: Requests::default(),
                log: Vec::new(),
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            open: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            next_conn: AtomicU64::new(0),
        });
        let sh = shared.clone();
        let accept = thread::Builder::new()
            .name("fake-kubeapi-accept".into())
            .spawn(move || accept_loop(listener, sh))
            .expect("spawn accept thread");
        FakeApi {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// The node whose pods are served.
    pub fn node(&self) -> &str {
        &self.shared.node
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig (one cluster, user, context; `current-context` set) pointing at
    /// [`FakeApi::url`], without credentials.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    \
             namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n\
             preferences: {{}}\n",
            self.url()
        )
    }

    /// Writes [`FakeApi::kubeconfig`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path) {
        std::fs::write(path, self.kubeconfig())
            .unwrap_or_else(|e| panic!("write kubeconfig {}: {e}", path.display()));
    }

    /// The current resource version.
    pub fn resource_version(&self) -> u64 {
        self.shared.state().store.rv()
    }

    /// Creates the pod (ADDED) or updates it (MODIFIED) and returns the new resource version.
    ///
    /// A pod is the same pod if namespace, name *and* uid match. Panics if a pod of that name
    /// with another uid exists: a replacement (a StatefulSet's) is created only after the old
    /// pod is gone ([`FakeApi::delete_pod`] first).
    pub fn upsert_pod(&self, pod: &Pod) -> u64 {
        let key = format!("{}/{}", pod.namespace(), pod.name());
        let object = pod.to_json();
        let mut st = self.shared.state();
        if let Some(old) = st.store.get(KubeResource::Pods, &key) {
            let old_uid = old["metadata"]["uid"].as_str().unwrap_or("").to_string();
            if old_uid != pod.get_uid() {
                drop(st);
                panic!(
                    "upsert_pod: pod {key} exists with uid {old_uid}, not {}: delete it first \
                     (a pod of the same name is a new pod)",
                    pod.get_uid()
                );
            }
        }
        let (rv, _) = st.store.put(KubeResource::Pods, &key, object);
        drop(st);
        self.shared.changed.notify_all();
        rv
    }

    /// Deletes the pod (DELETED, carrying its last state); the new resource version. Panics if
    /// there is no such pod.
    pub fn delete_pod(&self, namespace: &str, name: &str) -> u64 {
        self.delete(KubeResource::Pods, &format!("{namespace}/{name}"))
    }

    /// Creates (ADDED) or relabels (MODIFIED) namespace `name`; the new resource version.
    pub fn upsert_namespace(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let mut st = self.shared.state();
        let uid = match st.store.get(KubeResource::Namespaces, name) {
            Some(old) => old["metadata"]["uid"].as_str().unwrap_or("").to_string(),
            None => uid_for(&format!("namespace/{name}/{}", st.store.rv())),
        };
        let mut object = namespace_json(name, &uid, labels);
        if let Some(old) = st.store.get(KubeResource::Namespaces, name) {
            object["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
        }
        let (rv, _) = st.store.put(KubeResource::Namespaces, name, object);
        drop(st);
        self.shared.changed.notify_all();
        rv
    }

    /// Deletes namespace `name` (DELETED); the new resource version. Panics if absent.
    pub fn delete_namespace(&self, name: &str) -> u64 {
        self.delete(KubeResource::Namespaces, name)
    }

    fn delete(&self, resource: KubeResource, key: &str) -> u64 {
        let rv = self.shared.state().store.delete(resource, key);
        let Some(rv) = rv else {
            panic!("delete: no {} {key}", resource.kind());
        };
        self.shared.changed.notify_all();
        rv
    }

    /// Sends a BOOKMARK at the current resource version to every open watch that allows
    /// bookmarks (after the events before it).
    pub fn bookmark(&self) {
        self.shared.state().store.bookmark();
        self.shared.changed.notify_all();
    }

    /// Ends every open watch stream cleanly (terminating chunk), as `timeoutSeconds` would,
    /// once it has sent the events made so far; returns when they have all ended. No bookmark
    /// is sent first: the client resumes from the last resource version it saw.
    pub fn expire_watches(&self) {
        let ids: Vec<u64> = {
            let mut st = self.shared.state();
            let len = st.store.log_len();
            let ids: Vec<u64> = st.watches.keys().copied().collect();
            for id in &ids {
                st.expiring.insert(*id, len);
            }
            ids
        };
        self.shared.changed.notify_all();
        let ended = self.shared.wait_state(secs(10), |st| {
            ids.iter().all(|id| !st.watches.contains_key(id))
        });
        assert!(
            ended,
            "expire_watches: watch streams did not end within 10 s"
        );
    }

    /// Compaction: the cluster's resource version moves on by one (as a write elsewhere in the
    /// cluster would make it) and every earlier resource version becomes too old. A watch from
    /// an older version then gets a `410 Expired` ERROR event, a list with `Exact` match or a
    /// `continue` token from before gets HTTP 410. Open watches are not affected.
    pub fn compact(&self) {
        self.shared.state().store.compact();
        self.shared.changed.notify_all();
    }

    /// While on, the API server is unreachable: open connections (watches among them) are
    /// closed at once, and each new request's connection is closed without an answer
    /// ([`Requests::refused`]).
    pub fn set_outage(&self, on: bool) {
        self.set_fault(on.then_some(Outage::Refuse));
    }

    /// While on, every request is answered `503 ServiceUnavailable` with a `Status` body
    /// ([`Requests::unavailable`]); open connections are closed when it starts. (kube's client
    /// retries 503s itself, with backoff, before its caller sees an error.)
    pub fn set_unavailable(&self, on: bool) {
        self.set_fault(on.then_some(Outage::Unavailable));
    }

    fn set_fault(&self, outage: Option<Outage>) {
        self.shared.state().outage = outage;
        self.shared.changed.notify_all();
        if outage.is_some() {
            self.shared.shutdown_connections();
            let dropped = self.shared.wait_state(secs(10), |st| st.watches.is_empty());
            assert!(dropped, "outage: watch streams did not end within 10 s");
        }
    }

    /// Delays the head of every response (lists, watches, errors) by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.state().delay = delay;
    }

    /// Request counts so far.
    pub fn requests(&self) -> Requests {
        self.shared.state().requests.clone()
    }

    /// Every request so far, in order of arrival.
    pub fn log(&self) -> Vec<ApiRequest> {
        self.shared.state().log.clone()
    }

    /// Watch streams open now.
    pub fn open_watches(&self) -> usize {
        self.shared.state().watches.len()
    }

    /// Watch streams of `resource` open now.
    pub fn open_watches_of(&self, resource: KubeResource) -> usize {
        let st = self.shared.state();
        st.watches.values().filter(|r| **r == resource).count()
    }

    /// Blocks until a watch of `resource` is open; panics after `timeout`.
    #[track_caller]
    pub fn wait_for_watch(&self, resource: KubeResource, timeout: Duration) {
        let open = self
            .shared
            .wait_state(timeout, |st| st.watches.values().any(|r| *r == resource));
        if !open {
            panic!(
                "no {} watch opened within {timeout:?}; requests: {}",
                resource.plural(),
                self.summary()
            );
        }
    }

    /// Blocks until the request counts satisfy `cond`; panics after `timeout` naming `what`.
    #[track_caller]
    pub fn wait_for_requests(
        &self,
        cond: impl Fn(&Requests) -> bool,
        timeout: Duration,
        what: &str,
    ) {
        if !self.shared.wait_state(timeout, |st| cond(&st.requests)) {
            panic!(
                "timed out after {timeout:?} waiting for {what}; requests: {}",
                self.summary()
            );
        }
    }

    /// One line per request (`#id conn status METHOD target`), for failure messages.
    pub fn summary(&self) -> String {
        let st = self.shared.state();
        if st.log.is_empty() {
            return "none".into();
        }
        let mut s = String::new();
        for r in &st.log {
            let _ = write!(
                s,
                "\n  #{} conn {} {} {} {}",
                r.id, r.conn, r.status, r.method, r.target
            );
        }
        s
    }

    /// Panics listing the unexpected requests, if any.
    #[track_caller]
    pub fn assert_no_unexpected(&self) {
        let unexpected = self.shared.state().requests.unexpected.clone();
        if !unexpected.is_empty() {
            panic!(
                "the fake API server got {} unexpected request(s):\n  {}",
                unexpected.len(),
                unexpected.join("\n  ")
            );
        }
    }

    /// Takes (and forgets) the unexpected requests seen so far: a test that provokes them on
    /// purpose calls this so that drop does not panic.
    pub fn take_unexpected(&self) -> Vec<String> {
        std::mem::take(&mut self.shared.state().requests.unexpected)
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            // Under the lock: a watch between its checks and its wait cannot miss this.
            let _st = self.shared.state();
            self.shared.changed.notify_all();
        }
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        self.shared.shutdown_connections();
        let threads = std::mem::take(&mut *lock(&self.shared.threads));
        for h in threads {
            let _ = h.join();
        }
        if !thread::panicking() {
            self.assert_no_unexpected();
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
            .name(format!("fake-kubeapi-conn-{id}"))
            .spawn(move || {
                serve_connection(&stream, id, &sh);
                let _ = stream.shutdown(Shutdown::Both);
                lock(&sh.open).remove(&id);
            })
            .expect("spawn fake API connection thread");
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

/// Serves requests on one connection until it closes, a response ends it, or the server
/// stops. Requests are answered in order (a pipelined request waits in the reader's buffer).
fn serve_connection(stream: &TcpStream, conn: u64, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    loop {
        let head = match read_head(&mut reader) {
            Ok(Some(h)) => h,
            _ => return,
        };
        // Bodies are read (to keep the framing) and ignored.
        if read_request_body(&mut reader, &head).is_err() || shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let keep_alive = !head.has_token("connection", "close")
            && (head.request_version() != "HTTP/1.0" || head.has_token("connection", "keep-alive"));
        let outage = shared.state().outage;
        let ok = match outage {
            Some(Outage::Refuse) => {
                record(shared, conn, &head, RequestKind::Refused, 0, None);
                return;
            }
            Some(Outage::Unavailable) => {
                record(shared, conn, &head, RequestKind::Unavailable, 503, None);
                let body = status_body(
                    503,
                    "ServiceUnavailable",
                    "the server is currently unable to handle the request",
                    None,
                );
                respond(shared, stream, 503, &body, keep_alive)
            }
            None => handle(shared, stream, conn, &head, keep_alive),
        };
        if !ok || !keep_alive {
            return;
        }
    }
}

/// Records a request (before it is answered: once the client has its answer, the test sees
/// the record).
fn record(
    shared: &Shared,
    conn: u64,
    head: &Head,
    kind: RequestKind,
    status: u16,
    unexpected: Option<String>,
) {
    let mut st = shared.state();
    record_in(&mut st, conn, head, kind, status, unexpected);
    drop(st);
    shared.changed.notify_all();
}

/// [`record`] under a lock already held (the caller notifies).
fn record_in(
    st: &mut State,
    conn: u64,
    head: &Head,
    kind: RequestKind,
    status: u16,
    unexpected: Option<String>,
) {
    let r = &mut st.requests;
    match kind {
        RequestKind::List(KubeResource::Pods) => r.pods_list += 1,
        RequestKind::List(KubeResource::Namespaces) => r.namespaces_list += 1,
        RequestKind::Continue(KubeResource::Pods) => r.pods_continue += 1,
        RequestKind::Continue(KubeResource::Namespaces) => r.namespaces_continue += 1,
        RequestKind::Watch(KubeResource::Pods) => r.pods_watch += 1,
        RequestKind::Watch(KubeResource::Namespaces) => r.namespaces_watch += 1,
        RequestKind::Refused => r.refused += 1,
        RequestKind::Unavailable => r.unavailable += 1,
        RequestKind::Unexpected => {}
    }
    if let Some(why) = unexpected {
        r.unexpected
            .push(format!("{} {}: {why}", head.method(), head.target()));
    }
    let id = st.log.len() as u64;
    st.log.push(ApiRequest {
        id,
        conn,
        method: head.method().to_string(),
        target: head.target().to_string(),
        headers: head.headers.clone(),
        kind,
        status,
    });
}

/// Writes a complete JSON response after the configured delay; false if the client is gone.
fn respond(
    shared: &Shared,
    stream: &TcpStream,
    status: u16,
    body: &[u8],
    keep_alive: bool,
) -> bool {
    delay(shared);
    let headers = [
        ("Cache-Control".to_string(), "no-cache, private".to_string()),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    let mut w = stream;
    write_response(
        &mut w,
        status,
        reason_phrase(status),
        &headers,
        body,
        keep_alive,
    )
    .is_ok()
}

fn delay(shared: &Shared) {
    let d = shared.state().delay;
    if !d.is_zero() {
        thread::sleep(d); // the injected latency itself
    }
}

/// Answers one (non-outage) request; false when the connection must close.
fn handle(shared: &Shared, stream: &TcpStream, conn: u64, head: &Head, keep_alive: bool) -> bool {
    match route(head, &shared.node) {
        Err(r) => reject(
            shared,
            stream,
            conn,
            head,
            RequestKind::Unexpected,
            r,
            keep_alive,
        ),
        Ok(Route::List(req)) => {
            let kind = if req.cont.is_some() {
                RequestKind::Continue(req.resource)
            } else {
                RequestKind::List(req.resource)
            };
            let result = list(&shared.state().store, &shared.node, &req);
            match result {
                Ok(body) => {
                    record(shared, conn, head, kind, 200, None);
                    respond(shared, stream, 200, &body, keep_alive)
                }
                Err(r) => reject(shared, stream, conn, head, kind, r, keep_alive),
            }
        }
        Ok(Route::Watch(req)) => watch(shared, stream, conn, head, &req, keep_alive),
    }
}

fn reject(
    shared: &Shared,
    stream: &TcpStream,
    conn: u64,
    head: &Head,
    kind: RequestKind,
    r: Reject,
    keep_alive: bool,
) -> bool {
    let kind = if r.unexpected.is_some() {
        RequestKind::Unexpected
    } else {
        kind
    };
    record(shared, conn, head, kind, r.status, r.unexpected);
    let body = status_body(r.status, r.reason, &r.message, r.details);
    respond(shared, stream, r.status, &body, keep_alive)
}

fn write_chunks(mut stream: &TcpStream, resource: KubeResource, outs: &[Out]) -> io::Result<()> {
    let mut buf = Vec::new();
    for o in outs {
        let line = event_line(resource, o);
        let _ = write!(buf, "{:x}\r\n", line.len());
        buf.extend_from_slice(&line);
        buf.extend_from_slice(b"\r\n");
    }
    stream.write_all(&buf)
}

/// How a watch stream goes on.
enum Step {
    Send(Vec<Entry>),
    /// Timed out or expired: end cleanly.
    End,
    /// Outage or server stop: drop the connection.
    Abort,
    /// Nothing for a while: check the client is still there.
    Idle,
}

/// True if the client has closed the connection (or it failed). Only this thread writes on
/// the socket, so making it non-blocking for the peek disturbs no one.
fn client_gone(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut b = [0u8; 1];
    let gone = match stream.peek(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).is_err() || gone
}

/// Serves a watch: head, initial events, then the log as it grows, until the timeout,
/// [`FakeApi::expire_watches`], an outage or the client leaving.
fn watch(
    shared: &Shared,
    stream: &TcpStream,
    conn: u64,
    head: &Head,
    req: &WatchReq,
    keep_alive: bool,
) -> bool {
    let kind = RequestKind::Watch(req.resource);
    let start = Instant::now();
    // Under the lock: where the stream starts, what it sends first, registration.
    let setup = {
        let mut st = shared.state();
        if st.outage.is_some() {
            // The outage began while this request was being read.
            drop(st);
            record(shared, conn, head, RequestKind::Refused, 0, None);
            return false;
        }
        let current = st.store.rv();
        let initial = |st: &State| -> Vec<Out> {
            let mut v: Vec<Out> = st
                .store
                .snapshot(req.resource, current)
                .into_values()
                .filter(|o| selected(req.resource, &shared.node, o))
                .map(|o| Out::Object(EventType::Added, o))
                .collect();
            if req.initial_events {
                v.push(Out::Bookmark(current, true));
            }
            v
        };
        let from = match req.rv.as_deref() {
            // "Get state and start at most recent" / "start at any": synthetic ADDED events.
            None | Some("" | "0") => Ok((initial(&st), st.store.log_len())),
            Some(v) => match parse_rv(v) {
                Err(r) => Err(r),
                Ok(rv) if rv > current => Err(too_large(rv, current)),
                Ok(rv) if rv < st.store.horizon() => {
                    Ok((
                        vec![Out::Error(status_json(
                            410,
                            "Expired",
                            &too_old(rv, st.store.horizon()),
                            None,
                        ))],
                        usize::MAX, // the stream ends after the error
                    ))
                }
                Ok(_) if req.initial_events => Ok((initial(&st), st.store.log_len())),
                Ok(rv) => Ok((Vec::new(), st.store.cursor_after(rv))),
            },
        };
        match from {
            Err(r) => Err(r),
            Ok((first, cursor)) => {
                // Recorded with the registration: a test that sees the watch open sees it
                // counted.
                record_in(&mut st, conn, head, kind, 200, None);
                if cursor == usize::MAX {
                    Ok((first, None))
                } else {
                    let id = st.next_watch;
                    st.next_watch += 1;
                    st.watches.insert(id, req.resource);
                    Ok((first, Some((id, cursor))))
                }
            }
        }
    };
    let (first, registered) = match setup {
        Err(r) => return reject(shared, stream, conn, head, kind, r, keep_alive),
        Ok(s) => s,
    };
    shared.changed.notify_all();
    let clean = serve_stream(shared, stream, req, start, first, registered, keep_alive);
    if let Some((id, _)) = registered {
        let mut st = shared.state();
        st.watches.remove(&id);
        st.expiring.remove(&id);
        drop(st);
        shared.changed.notify_all();
    }
    // After the unregistration: a client that has read the end sees the watch closed.
    let mut w = stream;
    clean && w.write_all(b"0\r\n\r\n").is_ok()
}

/// Writes a watch stream up to its end (without the terminating chunk); true if it ended
/// cleanly (timeout or expiry), false if the connection must close.
fn serve_stream(
    shared: &Shared,
    stream: &TcpStream,
    req: &WatchReq,
    start: Instant,
    first: Vec<Out>,
    registered: Option<(u64, usize)>,
    keep_alive: bool,
) -> bool {
    delay(shared);
    let mut w = stream;
    let head = format!(
        "HTTP/1.1 200 OK\r\nCache-Control: no-cache, private\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n{}\r\n",
        if keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        }
    );
    if w.write_all(head.as_bytes()).is_err() || write_chunks(stream, req.resource, &first).is_err()
    {
        return false;
    }
    if let Some((id, mut cursor)) = registered {
        let deadline = start + req.timeout;
        loop {
            match next_step(shared, id, &mut cursor, deadline) {
                Step::Send(entries) => {
                    let outs = outs(&entries, req, &shared.node);
                    if !outs.is_empty() && write_chunks(stream, req.resource, &outs).is_err() {
                        return false;
                    }
                }
                Step::Idle => {
                    if client_gone(stream) {
                        return false;
                    }
                }
                Step::Abort => {
                    let _ = stream.shutdown(Shutdown::Both);
                    return false;
                }
                Step::End => break,
            }
        }
    }
    true
}

fn next_step(shared: &Shared, id: u64, cursor: &mut usize, deadline: Instant) -> Step {
    let mut st = shared.state();
    loop {
        if shared.stop.load(Ordering::SeqCst) || st.outage.is_some() {
            return Step::Abort;
        }
        let end_at = st.expiring.get(&id).copied();
        let upto = end_at.unwrap_or_else(|| st.store.log_len());
        if *cursor < upto {
            let entries = st.store.entries(*cursor..upto).to_vec();
            *cursor = upto;
            return Step::Send(entries);
        }
        let now = Instant::now();
        if end_at.is_some() || now >= deadline {
            return Step::End;
        }
        let (g, r) = shared
            .changed
            .wait_timeout(st, (deadline - now).min(LIVENESS_CHECK))
            .unwrap_or_else(|e| e.into_inner());
        st = g;
        if r.timed_out() && Instant::now() < deadline {
            return Step::Idle;
        }
    }
}
