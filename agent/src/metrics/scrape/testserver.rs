//! A loopback HTTP/1.1 server for the scrape tests: each request is answered as the
//! test's handler says (a body, plain or gzip, chunked or not; a status; an endless
//! stream; a hang; a reset), and what happened is counted.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A request's head.
#[derive(Clone, Debug, Default)]
pub struct Head {
    /// Path and query.
    pub path: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How to answer.
pub enum Reply {
    /// 200 with this body and content type; `gzip`: compressed, with
    /// `Content-Encoding: gzip`; `chunked`: no `Content-Length`.
    Body {
        body: Vec<u8>,
        content_type: &'static str,
        gzip: bool,
        chunked: bool,
    },
    /// This status, empty body.
    Status(u16),
    /// These bytes as the whole answer.
    Raw(&'static str),
    /// A text body, then the connection closed 100 ms later without saying so (an
    /// idle timeout on the server's side, after the client has put it aside).
    TextThenClose(&'static str),
    /// 200, then `total` bytes of `x 1\n`-like lines in chunks, as fast as taken.
    Stream(usize),
    /// 200, then `n` bytes of `x 1\n` lines in one chunk, then nothing more (the
    /// body never ends).
    Partial(usize),
    /// Never answer (the connection stays open).
    Hang,
    /// Reset the connection (RST) instead of answering.
    Reset,
}

impl Reply {
    /// A plain text 0.0.4 body.
    pub fn text(body: &str) -> Reply {
        Reply::Body {
            body: body.as_bytes().to_vec(),
            content_type: "text/plain; version=0.0.4",
            gzip: false,
            chunked: false,
        }
    }
}

/// What the server saw.
#[derive(Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Connections the server closed (or saw closed).
    pub closed: AtomicUsize,
    /// Requests read.
    pub requests: AtomicUsize,
    /// Bytes of streamed bodies written.
    pub streamed: AtomicUsize,
    /// Streamed bodies that ended (written whole, or the client went away).
    pub streams_ended: AtomicUsize,
    /// Heads of the requests, in order.
    pub heads: Mutex<Vec<Head>>,
}

/// The running server (it runs until the test's runtime ends).
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw.
    pub stats: Arc<Stats>,
}

type Handler = Arc<dyn Fn(&Head) -> Reply + Send + Sync>;

impl TestServer {
    /// Listens on `ip` (port chosen by the system) and answers with `handler`.
    pub async fn start(
        ip: IpAddr,
        handler: impl Fn(&Head) -> Reply + Send + Sync + 'static,
    ) -> TestServer {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let stats = Arc::new(Stats::default());
        let handler: Handler = Arc::new(handler);
        let s = Arc::clone(&stats);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                s.connections.fetch_add(1, Ordering::SeqCst);
                let (handler, s) = (Arc::clone(&handler), Arc::clone(&s));
                tokio::spawn(async move {
                    serve(stream, handler, Arc::clone(&s)).await;
                    s.closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        TestServer { addr, stats }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> hyper::Uri {
        format!("http://{}{path}", self.addr).parse().expect("url")
    }

    /// Requests read so far.
    pub fn requests(&self) -> usize {
        self.stats.requests.load(Ordering::SeqCst)
    }
}

async fn serve(stream: TcpStream, handler: Handler, stats: Arc<Stats>) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut head = Head::default();
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        head.path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        loop {
            line.clear();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
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
        stats.requests.fetch_add(1, Ordering::SeqCst);
        stats.heads.lock().unwrap().push(head.clone());
        let w = stream.get_mut();
        match handler(&head) {
            Reply::Body {
                body,
                content_type,
                gzip,
                chunked,
            } => {
                let body = if gzip { gzipped(&body) } else { body };
                let mut out = format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n");
                if gzip {
                    out.push_str("Content-Encoding: gzip\r\n");
                }
                if chunked {
                    out.push_str("Transfer-Encoding: chunked\r\n\r\n");
                    let mut bytes = out.into_bytes();
                    for piece in body.chunks(4096) {
                        bytes.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                        bytes.extend_from_slice(piece);
                        bytes.extend_from_slice(b"\r\n");
                    }
                    bytes.extend_from_slice(b"0\r\n\r\n");
                    if w.write_all(&bytes).await.is_err() {
                        return;
                    }
                } else {
                    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                    let mut bytes = out.into_bytes();
                    bytes.extend_from_slice(&body);
                    if w.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
            }
            Reply::TextThenClose(text) => {
                let out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                );
                let _ = w.write_all(out.as_bytes()).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            }
            Reply::Raw(text) => {
                if w.write_all(text.as_bytes()).await.is_err() {
                    return;
                }
            }
            Reply::Status(code) => {
                let out = format!("HTTP/1.1 {code} Oops\r\nContent-Length: 0\r\n\r\n");
                if w.write_all(out.as_bytes()).await.is_err() {
                    return;
                }
            }
            Reply::Stream(total) => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
                if w.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let line = b"some_metric_with_a_long_name{label=\"value\"} 1\n";
                let piece: Vec<u8> = line.iter().copied().cycle().take(64 * 1024).collect();
                let mut sent = 0;
                let mut ok = true;
                while ok && sent < total {
                    let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
                    chunk.extend_from_slice(&piece);
                    chunk.extend_from_slice(b"\r\n");
                    ok = w.write_all(&chunk).await.is_ok();
                    if ok {
                        sent += piece.len();
                        stats.streamed.fetch_add(piece.len(), Ordering::SeqCst);
                    }
                }
                ok = ok && w.write_all(b"0\r\n\r\n").await.is_ok();
                stats.streams_ended.fetch_add(1, Ordering::SeqCst);
                if !ok {
                    return;
                }
            }
            Reply::Partial(n) => {
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n{n:x}\r\n"
                )
                .into_bytes();
                out.extend(b"x 1\n".iter().copied().cycle().take(n));
                out.extend_from_slice(b"\r\n");
                if w.write_all(&out).await.is_ok() {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                return;
            }
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Reply::Reset => {
                let _ = w.set_zero_linger();
                return;
            }
        }
    }
}

/// `body` gzip-compressed.
pub fn gzipped(body: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(body).expect("gzip");
    e.finish().expect("gzip")
}
