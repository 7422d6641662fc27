//! Scrape targets for the metrics pipeline's tests: [`TargetServer`], a loopback HTTP or
//! HTTPS server (any 127.x.y.z address) answering each request as the test says, and
//! [`Scraped`], the samples the agent's metrics pipeline wrote to its local sink (one JSON
//! object per line), [`select`]ed by name and labels, awaited with [`wait_scraped`].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request's head.
#[derive(Clone, Debug, Default)]
pub struct TargetRequest {
    /// Path and query.
    pub path: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl TargetRequest {
    /// The value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How a [`TargetServer`] answers a request.
pub enum Answer {
    /// 200, text format 0.0.4.
    Text(String),
    /// 200, text format 0.0.4, gzip-compressed (`Content-Encoding: gzip`), chunked.
    Gzip(String),
    /// This status and a short body.
    Status(u16),
    /// 200, then `n` bytes of sample lines, chunked, as fast as the client takes them.
    Stream(usize),
    /// Never answer; the connection stays open until the server is dropped.
    Hang,
    /// Reset the connection (RST) instead of answering.
    Reset,
}

/// What a [`TargetServer`] saw.
#[derive(Default)]
pub struct TargetSeen {
    /// Requests read.
    pub requests: AtomicUsize,
    /// Their heads, in order.
    pub heads: Mutex<Vec<TargetRequest>>,
    /// Bytes of [`Answer::Stream`] bodies written.
    pub streamed: AtomicUsize,
    /// [`Answer::Stream`] bodies that ended (written whole, or the client went away).
    pub streams_ended: AtomicUsize,
}

type Handler = dyn Fn(&TargetRequest) -> Answer + Send + Sync;
type Tls = Arc<rustls::ServerConfig>;

/// A scrape target on loopback; it stops (and its hanging answers end) when dropped.
pub struct TargetServer {
    addr: SocketAddr,
    seen: Arc<TargetSeen>,
    stop: Arc<AtomicBool>,
}

impl TargetServer {
    /// Plain HTTP on `ip` (e.g. `127.0.1.2`), a port the system picks.
    pub fn start(
        ip: &str,
        handler: impl Fn(&TargetRequest) -> Answer + Send + Sync + 'static,
    ) -> TargetServer {
        Self::spawn(ip, None, Arc::new(handler))
    }

    /// HTTPS on `ip` with the certificate chain and key of these PEM files.
    pub fn start_tls(
        ip: &str,
        cert: &Path,
        key: &Path,
        handler: impl Fn(&TargetRequest) -> Answer + Send + Sync + 'static,
    ) -> TargetServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .expect("certificate file")
            .collect::<Result<_, _>>()
            .expect("certificates");
        let key = PrivateKeyDer::from_pem_file(key).expect("key file");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server certificate");
        Self::spawn(ip, Some(Arc::new(config)), Arc::new(handler))
    }

    fn spawn(ip: &str, tls: Option<Tls>, handler: Arc<Handler>) -> TargetServer {
        let listener = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}: {e}"));
        let addr = listener.local_addr().expect("local addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let seen = Arc::new(TargetSeen::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&seen), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let (h, s, st, tls) = (
                            Arc::clone(&handler),
                            Arc::clone(&s),
                            Arc::clone(&st),
                            tls.clone(),
                        );
                        std::thread::spawn(move || serve(stream, tls, &*h, &s, &st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TargetServer { addr, seen, stop }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What it saw.
    pub fn seen(&self) -> &TargetSeen {
        &self.seen
    }

    /// Requests read so far.
    pub fn requests(&self) -> usize {
        self.seen.requests.load(Ordering::SeqCst)
    }

    /// The heads of the requests so far.
    pub fn heads(&self) -> Vec<TargetRequest> {
        self.seen.heads.lock().expect("heads").clone()
    }
}

impl Drop for TargetServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(
    stream: TcpStream,
    tls: Option<Tls>,
    handler: &Handler,
    seen: &TargetSeen,
    stop: &AtomicBool,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    match tls {
        None => {
            let raw = stream.try_clone().expect("clone stream");
            serve_on(stream, Some(raw), handler, seen, stop);
        }
        Some(config) => {
            let conn = rustls::ServerConnection::new(config).expect("TLS connection");
            serve_on(
                rustls::StreamOwned::new(conn, stream),
                None,
                handler,
                seen,
                stop,
            );
        }
    }
}

/// Answers requests on `io` until the client or an answer ends the connection; `raw`
/// is the plain socket, for resets.
fn serve_on<S: Read + Write>(
    io: S,
    raw: Option<TcpStream>,
    handler: &Handler,
    seen: &TargetSeen,
    stop: &AtomicBool,
) {
    let mut io = BufReader::new(io);
    loop {
        let mut head = TargetRequest::default();
        let mut line = String::new();
        if io.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        head.path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        loop {
            line.clear();
            if io.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':') {
                head.headers
                    .push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        seen.requests.fetch_add(1, Ordering::SeqCst);
        seen.heads.lock().expect("heads").push(head.clone());
        let w = io.get_mut();
        let ok = match handler(&head) {
            Answer::Text(body) => respond(w, "", body.as_bytes()),
            Answer::Gzip(body) => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(body.as_bytes()).expect("gzip");
                let gz = e.finish().expect("gzip");
                chunked(w, "Content-Encoding: gzip\r\n", &gz)
            }
            Answer::Status(code) => {
                let body = format!("status {code}\n");
                write!(
                    w,
                    "HTTP/1.1 {code} Test\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .and_then(|()| w.flush())
                .is_ok()
            }
            Answer::Stream(n) => {
                let ok = stream(w, n, seen);
                seen.streams_ended.fetch_add(1, Ordering::SeqCst);
                ok
            }
            Answer::Hang => {
                let until = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(20));
                }
                false
            }
            Answer::Reset => {
                if let Some(raw) = &raw {
                    reset(raw);
                }
                false
            }
        };
        if !ok {
            return;
        }
    }
}

fn respond(w: &mut impl Write, extra: &str, body: &[u8]) -> bool {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    w.write_all(head.as_bytes())
        .and_then(|()| w.write_all(body))
        .and_then(|()| w.flush())
        .is_ok()
}

fn chunked(w: &mut impl Write, extra: &str, body: &[u8]) -> bool {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n{extra}Transfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for piece in body.chunks(4096) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    w.write_all(&out).and_then(|()| w.flush()).is_ok()
}

fn stream(w: &mut impl Write, n: usize, seen: &TargetSeen) -> bool {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nTransfer-Encoding: chunked\r\n\r\n";
    if w.write_all(head.as_bytes()).is_err() {
        return false;
    }
    let line = b"a_metric_streamed_without_end{label=\"value\"} 1\n";
    let piece: Vec<u8> = line.iter().copied().cycle().take(64 * 1024).collect();
    let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
    chunk.extend_from_slice(&piece);
    chunk.extend_from_slice(b"\r\n");
    let mut sent = 0;
    while sent < n {
        if w.write_all(&chunk).is_err() {
            return false;
        }
        sent += piece.len();
        seen.streamed.fetch_add(piece.len(), Ordering::SeqCst);
    }
    w.write_all(b"0\r\n\r\n").and_then(|()| w.flush()).is_ok()
}

/// Makes the close of `stream` (when its last handle is dropped) a reset: `SO_LINGER` 0,
/// set through tokio (std has no setter) on a duplicate of the socket.
fn reset(stream: &TcpStream) {
    let Ok(s) = stream.try_clone() else { return };
    let _ = s.set_nonblocking(true);
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    else {
        return;
    };
    let _guard = rt.enter();
    if let Ok(s) = tokio::net::TcpStream::from_std(s) {
        let _ = s.set_zero_linger();
    }
}

/// One sample the agent's local sink wrote.
#[derive(Clone, Debug)]
pub struct Scraped {
    /// Every label, `__name__` included.
    pub labels: BTreeMap<String, String>,
    /// Milliseconds since the epoch.
    pub t: i64,
    /// A number, or `"stale"`, `"NaN"`, `"+Inf"`, `"-Inf"`.
    pub v: serde_json::Value,
}

impl Scraped {
    /// The metric name.
    pub fn name(&self) -> &str {
        self.label("__name__").unwrap_or("")
    }

    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    /// The value, when a number.
    pub fn value(&self) -> Option<f64> {
        self.v.as_f64()
    }

    /// True for a staleness marker.
    pub fn is_stale(&self) -> bool {
        self.v == "stale"
    }

    /// True when it has every `(label, value)` of `labels`.
    pub fn has(&self, labels: &[(&str, &str)]) -> bool {
        labels.iter().all(|(k, v)| self.label(k) == Some(v))
    }
}

/// The samples in `path` (a JSON object per line; a torn last line is left out).
pub fn read_scraped(path: &Path) -> Vec<Scraped> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let labels = v["labels"]
                .as_object()?
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect();
            Some(Scraped {
                labels,
                t: v["t"].as_i64()?,
                v: v["v"].clone(),
            })
        })
        .collect()
}

/// The samples of `samples` named `name` that have every `(label, value)` of `labels`, in
/// the order they were written.
pub fn select<'a>(samples: &'a [Scraped], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Scraped> {
    samples
        .iter()
        .filter(|s| s.name() == name && s.has(labels))
        .collect()
}

/// Waits until the samples in `node`'s metrics sink ([`Node::scraped`]) satisfy `cond`;
/// returns them. Panics after `timeout`, or as soon as the agent exits, with what the sink
/// holds of `name` and the agent's log.
#[track_caller]
pub fn wait_scraped(
    node: &crate::Node,
    agent: &mut crate::Agent,
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut(&[Scraped]) -> bool,
) -> Vec<Scraped> {
    let mut got = Vec::new();
    let mut exited = false;
    let ok = crate::wait_until(
        || {
            got = node.scraped();
            exited = !agent.is_running();
            cond(&got) || exited
        },
        timeout,
    );
    agent.assert_running(&format!("while waiting for {what}"));
    if !ok {
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for s in &got {
            *names.entry(s.name().to_owned()).or_default() += 1;
        }
        panic!(
            "timed out after {timeout:?} waiting for {what}; the sink holds {} samples ({names:?}); \
             agent stderr tail:\n{}",
            got.len(),
            agent.stderr_tail(30)
        );
    }
    got
}
