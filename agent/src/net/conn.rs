//! Keep-alive HTTP/1.1 connections for the hot calls (PutLogEvents, remote write), each
//! driven by the call using it.
//!
//! hyper-util's pooled client runs every connection as a task of its own and passes
//! requests and answers to it through channels: per call a pool checkout, two
//! channel hops and a wake-up of the connection's task besides the caller's. Here a
//! call takes an idle connection (or opens one: TCP, then TLS for `https`, with
//! hyper-rustls' connector) and polls the connection itself while it waits for the
//! answer, so an answer wakes only the caller; then the connection goes back to the
//! idle list. Idle connections are not polled: one the server closed meanwhile is
//! found closed when taken (polled once, it ends), and a call that fails on a reused
//! connection before any answer came is sent once more on a new connection (what
//! the pooled client does for a request it could not send). Connections idle
//! for [`IDLE_TIMEOUT`] are closed when the list is next taken from or swept.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper::http::response::Parts;
use hyper::{Request, Uri};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

/// Idle connections are closed after this long (the SDK's default).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept at most (`max_concurrent_requests` and remote write's `shards`
/// are at most 64).
const MAX_IDLE: usize = 64;

/// A connection's socket, with its TLS session for `https`.
pub type Io = MaybeHttpsStream<TokioIo<TcpStream>>;

/// One HTTP/1.1 connection with request bodies of type `B`: the request side and the
/// connection future that moves its bytes, polled by whoever uses it (no task).
pub struct Conn<B: hyper::body::Body + 'static = Full<Bytes>> {
    /// The request side.
    pub send: http1::SendRequest<B>,
    /// The connection future.
    pub driver: http1::Connection<Io, B>,
}

impl<B> Conn<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Connects with `connector` to `uri`'s host (TCP, TLS for `https`) and speaks
    /// HTTP/1.1 over it, buffering at most `max_read_buffer` bytes of what it reads
    /// (`None`: hyper's default, ~400 KiB). Errors name the URI and their causes.
    pub async fn open(
        connector: &mut HttpsConnector<HttpConnector>,
        uri: &Uri,
        max_read_buffer: Option<usize>,
    ) -> Result<Conn<B>, String> {
        let failed = |e: String| format!("connecting to {uri}: {e}");
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(|e| failed(error_chain(&*e)))?;
        let io = connector
            .call(uri.clone())
            .await
            .map_err(|e| failed(error_chain(&*e)))?;
        Self::resume(io, max_read_buffer)
            .await
            .map_err(|e| failed(error_chain(&e)))
    }

    /// Speaks HTTP/1.1 over `io`: a new connection's, or one kept by
    /// [`Conn::into_io`]. Nothing is sent or read yet.
    pub async fn resume(io: Io, max_read_buffer: Option<usize>) -> hyper::Result<Conn<B>> {
        let mut builder = http1::Builder::new();
        if let Some(max) = max_read_buffer {
            builder.max_buf_size(max);
        }
        let (send, driver) = builder.handshake(io).await?;
        Ok(Conn { send, driver })
    }

    /// True unless the connection has ended (polled once: an idle connection the
    /// server closed ends at once).
    pub fn is_open(&mut self) -> bool {
        !self.send.is_closed() && (&mut self.driver).now_or_never().is_none()
    }

    /// The socket (and TLS session) of a connection between exchanges, without
    /// hyper's buffers and state (an idle connection holds ~24 KiB with them, a few
    /// hundred bytes without), for [`Conn::resume`]; `None` when it cannot carry
    /// another request: it ended, the server said `Connection: close`, or bytes came
    /// after the answer.
    pub fn into_io(mut self) -> Option<Io> {
        if !self.is_open() {
            return None;
        }
        let parts = self.driver.into_parts();
        parts.read_buf.is_empty().then_some(parts.io)
    }
}

/// Connections to one endpoint.
pub struct Conns {
    connector: HttpsConnector<HttpConnector>,
    idle: Mutex<Vec<(Conn, Instant)>>,
}

/// Why an exchange failed, and whether the request may have been sent.
#[derive(Debug)]
pub struct ExchangeError {
    /// What went wrong, with its causes.
    pub message: String,
    /// True when no answer had begun (a reused connection that was closed under it).
    before_answer: bool,
}

impl Conns {
    /// Connections made by `connector`.
    pub fn new(connector: HttpsConnector<HttpConnector>) -> Self {
        Self {
            connector,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends `req` to `uri` (scheme and authority; `req` carries the path) and reads
    /// the answer, at most `max_body` bytes of its body.
    pub async fn exchange(
        &self,
        uri: &Uri,
        req: Request<Full<Bytes>>,
        max_body: usize,
    ) -> Result<(Parts, Bytes), String> {
        if let Some(mut conn) = self.take() {
            match conn.exchange(req.clone(), max_body).await {
                Ok(answer) => {
                    self.put_back(conn);
                    return Ok(answer);
                }
                Err(e) if !e.before_answer => return Err(e.message),
                // Closed by the server while idle: once more on a new connection.
                Err(e) => {
                    tracing::debug!(error = %e.message, "reused connection failed; sending on a new one")
                }
            }
        }
        let mut conn = self.connect(uri).await?;
        let answer = conn.exchange(req, max_body).await.map_err(|e| e.message)?;
        self.put_back(conn);
        Ok(answer)
    }

    /// Closes idle connections that timed out or that the server closed.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain_mut(|(c, since)| now.duration_since(*since) < IDLE_TIMEOUT && c.is_open());
    }

    /// The most recently used idle connection that is still open.
    fn take(&self) -> Option<Conn> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|(_, since)| now.duration_since(*since) < IDLE_TIMEOUT);
        while let Some((mut c, _)) = idle.pop() {
            if c.is_open() {
                return Some(c);
            }
        }
        None
    }

    fn put_back(&self, conn: Conn) {
        if conn.send.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((conn, Instant::now()));
        }
    }

    async fn connect(&self, uri: &Uri) -> Result<Conn, String> {
        Conn::open(&mut self.connector.clone(), uri, None).await
    }
}

impl Conn {
    /// One request and its whole answer, the connection polled meanwhile.
    async fn exchange(
        &mut self,
        req: Request<Full<Bytes>>,
        max_body: usize,
    ) -> Result<(Parts, Bytes), ExchangeError> {
        let Conn { send, driver } = self;
        let work = async {
            send.ready().await.map_err(|e| (false, e.into()))?;
            let resp = send
                .send_request(req)
                .await
                .map_err(|e| (false, e.into()))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, max_body)
                .collect()
                .await
                .map_err(|e| (true, e))?
                .to_bytes();
            Ok::<_, (bool, Box<dyn std::error::Error + Send + Sync>)>((parts, body))
        };
        tokio::pin!(work);
        let ended = tokio::select! {
            biased;
            r = &mut work => return r.map_err(failed),
            ended = &mut *driver => ended,
        };
        // The connection ended first: what it delivered may still complete the answer.
        let r = work.await.map_err(failed);
        match (r, ended) {
            (Ok(a), _) => Ok(a),
            (Err(e), Err(c)) => Err(ExchangeError {
                message: format!("{}: {}", e.message, error_chain(&c)),
                ..e
            }),
            (Err(e), Ok(())) => Err(e),
        }
    }
}

/// An exchange's error, and whether its answer had begun.
fn failed((began, e): (bool, Box<dyn std::error::Error + Send + Sync>)) -> ExchangeError {
    ExchangeError {
        message: format!("sending the request: {}", error_chain(&*e)),
        before_answer: !began,
    }
}

/// An error and its sources, joined.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream as StdStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hyper::Method;

    use super::*;

    /// What the test server does with the `n`th request (from 0) on a connection.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Act {
        /// Answers and keeps the connection.
        Answer,
        /// Answers with `Connection: close` and closes.
        AnswerClose,
        /// Answers, then closes without saying so (an idle timeout on its side).
        AnswerThenDrop,
        /// Reads the request and closes without an answer.
        Drop,
    }

    /// A loopback HTTP/1.1 server: `script(connection, request on it)` says what to
    /// do; counts connections and requests read.
    struct Server {
        addr: std::net::SocketAddr,
        connections: Arc<AtomicUsize>,
        requests: Arc<AtomicUsize>,
        closed: Arc<AtomicUsize>,
    }

    impl Server {
        fn start(script: fn(usize, usize) -> Act) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let connections = Arc::new(AtomicUsize::new(0));
            let requests = Arc::new(AtomicUsize::new(0));
            let closed = Arc::new(AtomicUsize::new(0));
            let (c, r, d) = (connections.clone(), requests.clone(), closed.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { return };
                    let conn = c.fetch_add(1, Ordering::SeqCst);
                    let (r, d) = (r.clone(), d.clone());
                    std::thread::spawn(move || {
                        serve(stream, conn, script, &r);
                        d.fetch_add(1, Ordering::SeqCst);
                    });
                }
            });
            Server {
                addr,
                connections,
                requests,
                closed,
            }
        }

        fn uri(&self) -> Uri {
            format!("http://{}/", self.addr).parse().unwrap()
        }
    }

    fn serve(
        stream: StdStream,
        conn: usize,
        script: fn(usize, usize) -> Act,
        requests: &AtomicUsize,
    ) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        for n in 0.. {
            let mut len = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            requests.fetch_add(1, Ordering::SeqCst);
            let act = script(conn, n);
            if act == Act::Drop {
                return;
            }
            let close = if act == Act::AnswerClose {
                "Connection: close\r\n"
            } else {
                ""
            };
            let answer = format!("{{\"n\":{n},\"conn\":{conn}}}");
            let _ = write!(
                writer,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{close}\r\n{answer}",
                answer.len()
            );
            if act != Act::Answer {
                return;
            }
        }
    }

    fn conns() -> Conns {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        Conns::new(
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .wrap_connector(tcp),
        )
    }

    fn request(body: &'static str) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(Bytes::from_static(body.as_bytes())));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = Uri::from_static("/");
        req.headers_mut()
            .insert(hyper::header::HOST, "test".parse().unwrap());
        req
    }

    async fn call(c: &Conns, s: &Server) -> Result<String, String> {
        let (head, body) = c.exchange(&s.uri(), request("{}"), 1024).await?;
        assert_eq!(head.status, 200);
        Ok(String::from_utf8(body.to_vec()).unwrap())
    }

    fn idle(c: &Conns) -> usize {
        c.idle.lock().unwrap().len()
    }

    /// Waits (bounded) until `n` connections were closed by the server.
    async fn server_closed(s: &Server, n: usize) {
        for _ in 0..500 {
            if s.closed.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the server did not close {n} connections");
    }

    #[tokio::test]
    async fn calls_in_a_row_share_one_connection() {
        let s = Server::start(|_, _| Act::Answer);
        let c = conns();
        for n in 0..5 {
            assert_eq!(
                call(&c, &s).await.unwrap(),
                format!("{{\"n\":{n},\"conn\":0}}")
            );
        }
        assert_eq!(s.connections.load(Ordering::SeqCst), 1);
        assert_eq!(idle(&c), 1);
    }

    #[tokio::test]
    async fn a_connection_closed_while_idle_is_not_used_again() {
        let s = Server::start(|_, _| Act::AnswerThenDrop);
        let c = conns();
        assert_eq!(call(&c, &s).await.unwrap(), r#"{"n":0,"conn":0}"#);
        server_closed(&s, 1).await;
        assert_eq!(call(&c, &s).await.unwrap(), r#"{"n":0,"conn":1}"#);
        // Found closed when taken: the request went out once.
        assert_eq!(s.requests.load(Ordering::SeqCst), 2);
        server_closed(&s, 2).await;
        c.sweep();
        assert_eq!(idle(&c), 0, "a sweep lets closed connections go");
    }

    #[tokio::test]
    async fn a_reused_connection_failing_before_an_answer_is_retried_on_a_new_one() {
        // The first connection answers once, then drops the second request unanswered.
        let s = Server::start(|conn, n| {
            if conn == 0 && n == 1 {
                Act::Drop
            } else {
                Act::Answer
            }
        });
        let c = conns();
        assert_eq!(call(&c, &s).await.unwrap(), r#"{"n":0,"conn":0}"#);
        assert_eq!(call(&c, &s).await.unwrap(), r#"{"n":0,"conn":1}"#);
        assert_eq!(s.connections.load(Ordering::SeqCst), 2);
        assert_eq!(
            s.requests.load(Ordering::SeqCst),
            3,
            "sent twice: once unanswered"
        );
    }

    #[tokio::test]
    async fn a_new_connection_failing_is_an_error() {
        let s = Server::start(|_, _| Act::Drop);
        let c = conns();
        let e = call(&c, &s).await.unwrap_err();
        assert!(e.contains("sending the request"), "{e}");
        assert_eq!(s.requests.load(Ordering::SeqCst), 1, "not retried");
        assert_eq!(idle(&c), 0);
    }

    #[tokio::test]
    async fn connection_close_is_honoured() {
        let s = Server::start(|_, _| Act::AnswerClose);
        let c = conns();
        assert_eq!(call(&c, &s).await.unwrap(), r#"{"n":0,"conn":0}"#);
        assert_eq!(call(&c, &s).await.unwrap(), r#"{"n":0,"conn":1}"#);
        assert_eq!(s.requests.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn answers_are_read_up_to_the_limit() {
        let s = Server::start(|_, _| Act::Answer);
        let c = conns();
        let e = c.exchange(&s.uri(), request("{}"), 4).await.unwrap_err();
        assert!(e.contains("length limit"), "{e}");
        let refused = "http://127.0.0.1:1/".parse::<Uri>().unwrap();
        let e = c.exchange(&refused, request("{}"), 4).await.unwrap_err();
        assert!(e.starts_with("connecting to http://127.0.0.1:1/"), "{e}");
    }
}
