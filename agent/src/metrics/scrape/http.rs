//! One scrape over HTTP(S): a GET on a keep-alive HTTP/1.1 connection that the
//! target's loop can keep between scrapes (it keeps HTTPS ones, and plain-HTTP ones
//! of targets scraped often) and polls itself while it waits (no task per
//! connection, as `net/conn.rs`), the body streamed into the loop's buffer and
//! decompressed on the way (gzip), never past the body limit.
//!
//! The request says what Prometheus says: `Accept` preferring the text format 0.0.4
//! (then OpenMetrics 1.0), `Accept-Encoding: gzip`,
//! `X-Prometheus-Scrape-Timeout-Seconds`, and `Authorization: Bearer` with the token
//! file's contents, read at every scrape. The body's format comes from its
//! `Content-Type` (text 0.0.4 when missing or unknown).
//!
//! Limits: a `Content-Length` over the limit fails at once; otherwise bytes are
//! appended as they arrive and the read stops as soon as the (decompressed) body
//! would pass the limit, so the buffer never holds more than the limit (its
//! capacity included). The caller bounds the whole exchange with the timeout.
//! Across targets, the bytes of body all scrapes hold at once are bounded by a
//! [`BodyBudget`] (`metrics.scrape.max_body_bytes_in_flight`): a scrape whose body
//! would pass what the others leave fails at once, as one over its own limit.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use kubeship_parsers::prom::Format;

use crate::config::TargetAuth;
use crate::net::conn::{Io, error_chain};
use crate::net::tls;

/// What the agent accepts, best first (Prometheus's header for these two formats).
pub const ACCEPT: &str =
    "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1";

/// Why a fetch failed.
#[derive(Debug, PartialEq, Eq)]
pub enum FetchError {
    /// The body (decompressed) would pass the limit.
    TooLarge,
    /// The body would pass what the [`BodyBudget`] leaves it.
    OverBudget,
    /// Anything else, with what went wrong.
    Failed(String),
}

/// A target's connection, kept between scrapes as its socket (and TLS session)
/// alone: hyper's buffers and state are built again for each scrape.
#[derive(Default)]
pub struct Client {
    idle: Option<Io>,
}

/// A scrape's connection: requests without a body.
type Conn = crate::net::conn::Conn<Empty<Bytes>>;

/// An exchange's failure, and whether its answer had begun.
struct ExchangeError {
    error: FetchError,
    before_answer: bool,
}

impl Client {
    /// GETs `url` into `buf` (cleared first), at most `limit` bytes of body after
    /// decompression; returns the body's format.
    /// The body's bytes are taken from `share` as they arrive.
    pub async fn fetch(
        &mut self,
        url: &Uri,
        auth: &TargetAuth,
        timeout: Duration,
        limit: usize,
        share: &mut Share<'_>,
        buf: &mut Vec<u8>,
    ) -> Result<Format, FetchError> {
        buf.clear();
        let req = request(url, auth, timeout)?;
        if let Some(io) = self.idle.take()
            && let Ok(mut conn) = Conn::resume(io, Some(READ_BUFFER_BYTES)).await
        {
            match conn.exchange(clone_request(&req), limit, share, buf).await {
                Ok(format) => {
                    self.idle = conn.into_io();
                    return Ok(format);
                }
                Err(e) if !e.before_answer => return Err(e.error),
                // Closed by the server while idle (the request found the socket
                // closed or reset): once more on a new connection.
                Err(_) => buf.clear(),
            }
        }
        let mut conn = connect(url, auth).await?;
        let format = conn
            .exchange(req, limit, share, buf)
            .await
            .map_err(|e| e.error)?;
        self.idle = conn.into_io();
        Ok(format)
    }
}

/// The GET request of a scrape.
fn request(
    url: &Uri,
    auth: &TargetAuth,
    timeout: Duration,
) -> Result<Request<Empty<Bytes>>, FetchError> {
    let failed = |what: String| FetchError::Failed(what);
    let authority = url
        .authority()
        .ok_or_else(|| failed(format!("{url}: no host")))?;
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let mut req = Request::get(path)
        .header(header::HOST, authority.as_str())
        .header(header::ACCEPT, ACCEPT)
        .header(header::ACCEPT_ENCODING, "gzip")
        .header(
            header::USER_AGENT,
            concat!("kubeship/", env!("CARGO_PKG_VERSION")),
        )
        .header(
            "x-prometheus-scrape-timeout-seconds",
            format!("{}", timeout.as_secs_f64()),
        )
        .body(Empty::new())
        .map_err(|e| failed(format!("{url}: {e}")))?;
    if let Some(file) = &auth.bearer_token_file {
        let token = std::fs::read_to_string(file)
            .map_err(|e| failed(format!("reading bearer_token_file {}: {e}", file.display())))?;
        let mut value =
            HeaderValue::try_from(format!("Bearer {}", token.trim())).map_err(|_| {
                failed(format!(
                    "bearer_token_file {}: not a header value",
                    file.display()
                ))
            })?;
        value.set_sensitive(true);
        req.headers_mut().insert(header::AUTHORIZATION, value);
    }
    Ok(req)
}

fn clone_request(req: &Request<Empty<Bytes>>) -> Request<Empty<Bytes>> {
    let mut r = Request::new(Empty::new());
    *r.method_mut() = req.method().clone();
    *r.uri_mut() = req.uri().clone();
    *r.headers_mut() = req.headers().clone();
    r
}

/// The longest a connection may take (the largest `timeout_secs` is longer: the
/// target's timeout still bounds the whole scrape).
const MAX_CONNECT: std::time::Duration = std::time::Duration::from_secs(60);

/// The most a connection buffers of what it reads (hyper's default is ~400 KiB).
/// Response heads must fit: a target's are small.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// A new connection to `url`'s host: TCP (no delay), then TLS for `https`.
async fn connect(url: &Uri, auth: &TargetAuth) -> Result<Conn, FetchError> {
    let failed = |e: String| FetchError::Failed(format!("connecting to {url}: {e}"));
    // For plain HTTP the TLS configuration is not used: any will do. That one is
    // built once (plain-HTTP connections are opened at every scrape of most targets).
    static ANY: OnceLock<Result<rustls::ClientConfig, String>> = OnceLock::new();
    let tls = if auth.insecure_skip_verify || url.scheme_str() != Some("https") {
        ANY.get_or_init(|| tls::client_config(tls::Trust::Any))
            .clone()
            .map_err(failed)?
    } else {
        let trust = match &auth.ca_file {
            // Read at every new connection: a rotated CA is picked up.
            Some(file) => tls::Trust::Only(
                tls::pem_certificates(file).map_err(|e| failed(format!("ca_file: {e}")))?,
            ),
            None => tls::Trust::System(Vec::new()),
        };
        tls::client_config(trust).map_err(failed)?
    };
    // The scrape's timeout bounds the connection too; this only ends a connect
    // that would outlast any scrape.
    let mut connector = tls::connector(tls, MAX_CONNECT);
    // A small read buffer: a node can have hundreds of idle keep-alive connections to
    // its targets, and a body streams through it into the scrape's own buffer anyway.
    Conn::open(&mut connector, url, Some(READ_BUFFER_BYTES))
        .await
        .map_err(FetchError::Failed)
}

impl Conn {
    /// One request and its whole body, the connection polled meanwhile.
    async fn exchange(
        &mut self,
        req: Request<Empty<Bytes>>,
        limit: usize,
        share: &mut Share<'_>,
        buf: &mut Vec<u8>,
    ) -> Result<Format, ExchangeError> {
        let Conn { send, driver } = self;
        let before = |e: hyper::Error| ExchangeError {
            error: FetchError::Failed(error_chain(&e)),
            before_answer: true,
        };
        let work = async {
            send.ready().await.map_err(before)?;
            let resp = send.send_request(req).await.map_err(before)?;
            read_answer(resp, limit, share, buf)
                .await
                .map_err(|error| ExchangeError {
                    error,
                    before_answer: false,
                })
        };
        tokio::pin!(work);
        let ended = tokio::select! {
            biased;
            r = &mut work => return r,
            ended = &mut *driver => ended,
        };
        // The connection ended first: what it delivered may still complete the answer.
        match (work.await, ended) {
            (Ok(format), _) => Ok(format),
            (Err(mut e), Err(c)) => {
                if let FetchError::Failed(m) = &mut e.error {
                    m.push_str(&format!(": {}", error_chain(&c)));
                }
                Err(e)
            }
            (Err(e), Ok(())) => Err(e),
        }
    }
}

/// Checks the answer's head and reads its body into `buf`.
async fn read_answer(
    resp: hyper::Response<Incoming>,
    limit: usize,
    share: &mut Share<'_>,
    buf: &mut Vec<u8>,
) -> Result<Format, FetchError> {
    let (head, body) = resp.into_parts();
    if head.status != StatusCode::OK {
        return Err(FetchError::Failed(format!("HTTP status {}", head.status)));
    }
    let text = |name: header::HeaderName| head.headers.get(name).and_then(|v| v.to_str().ok());
    let format =
        Format::from_content_type(text(header::CONTENT_TYPE).unwrap_or("")).unwrap_or(Format::Text);
    let gzip = match text(header::CONTENT_ENCODING).map(str::trim) {
        None | Some("" | "identity") => false,
        Some(e) if e.eq_ignore_ascii_case("gzip") => true,
        Some(other) => {
            return Err(FetchError::Failed(format!(
                "unsupported Content-Encoding `{other}`"
            )));
        }
    };
    let length = text(header::CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok());
    if !gzip && length.is_some_and(|l| l > limit as u64) {
        return Err(FetchError::TooLarge);
    }
    read_body(body, gzip, limit, share, buf).await?;
    Ok(format)
}

/// Streams `body` into `buf`, gunzipping when `gzip`, failing as soon as it would
/// pass `limit` or what `share` can take.
pub async fn read_body<B>(
    mut body: B,
    gzip: bool,
    limit: usize,
    share: &mut Share<'_>,
    buf: &mut Vec<u8>,
) -> Result<(), FetchError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let out = Bounded {
        buf,
        limit,
        share,
        exceeded: None,
    };
    let mut sink = if gzip {
        Sink::Gzip(Box::new(flate2::write::MultiGzDecoder::new(out)))
    } else {
        Sink::Plain(out)
    };
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| FetchError::Failed(format!("reading the body: {}", error_chain(&e))))?;
        if let Ok(data) = frame.into_data() {
            sink.write(&data)?;
        }
    }
    sink.finish()
}

/// Where body bytes go: straight to the buffer, or through a gzip decoder.
enum Sink<'a, 'b> {
    Plain(Bounded<'a, 'b>),
    Gzip(Box<flate2::write::MultiGzDecoder<Bounded<'a, 'b>>>),
}

impl Sink<'_, '_> {
    fn write(&mut self, data: &[u8]) -> Result<(), FetchError> {
        let r = match self {
            Sink::Plain(b) => b.write_all(data),
            Sink::Gzip(d) => d.write_all(data),
        };
        r.map_err(|e| self.error(&e))
    }

    fn finish(&mut self) -> Result<(), FetchError> {
        match self {
            Sink::Plain(_) => Ok(()),
            Sink::Gzip(d) => d.try_finish().map_err(|e| self.error(&e)),
        }
    }

    fn error(&self, e: &std::io::Error) -> FetchError {
        let bounded = match self {
            Sink::Plain(b) => b,
            Sink::Gzip(d) => d.get_ref(),
        };
        match &bounded.exceeded {
            Some(FetchError::OverBudget) => FetchError::OverBudget,
            Some(_) => FetchError::TooLarge,
            None => FetchError::Failed(format!("gzip body: {e}")),
        }
    }
}

/// The bytes of body all scrapes may hold at once
/// (`metrics.scrape.max_body_bytes_in_flight`; 0: no bound). Each target's body
/// limit bounds one scrape; this bounds them together, so that many pods answering
/// large bodies at once (or slowly: a body is held until its scrape ends) cannot
/// take the agent past its memory. A scrape takes its body's bytes from it as they
/// arrive ([`Share`]) and gives them back when its samples are handed on.
#[derive(Debug)]
pub struct BodyBudget {
    max: usize,
    used: AtomicUsize,
}

/// What a [`Share`] takes at a time: hyper hands a body on in pieces of a few KiB.
const SHARE_STEP: usize = 64 * 1024;

impl BodyBudget {
    /// A budget of `max` bytes; 0: none.
    pub fn new(max: usize) -> BodyBudget {
        BodyBudget {
            max,
            used: AtomicUsize::new(0),
        }
    }

    /// The budget in bytes; 0: none.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes the scrapes' shares hold now (0 without a budget: nothing is counted).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty share, for one scrape.
    pub fn share(&self) -> Share<'_> {
        Share {
            budget: self,
            held: 0,
        }
    }
}

/// One scrape's part of the [`BodyBudget`], given back when dropped.
#[derive(Debug)]
pub struct Share<'a> {
    budget: &'a BodyBudget,
    held: usize,
}

impl Share<'_> {
    /// Grows the share to at least `bytes` (in steps of [`SHARE_STEP`]); false when
    /// the budget does not have the room (the share stays as it was).
    pub fn take(&mut self, bytes: usize) -> bool {
        if bytes <= self.held {
            return true;
        }
        let max = self.budget.max;
        if max == 0 {
            // No budget: nothing to count (`drop` gives nothing back either).
            self.held = bytes;
            return true;
        }
        if bytes > max {
            return false;
        }
        let step = bytes.next_multiple_of(SHARE_STEP).min(max);
        self.grow_to(step) || (step > bytes && self.grow_to(bytes))
    }

    fn grow_to(&mut self, want: usize) -> bool {
        let (max, more) = (self.budget.max, want - self.held);
        let taken = self
            .budget
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                let total = used.checked_add(more)?;
                (total <= max).then_some(total)
            })
            .is_ok();
        if taken {
            self.held = want;
        }
        taken
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held
    }
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        if self.budget.max != 0 {
            self.budget.used.fetch_sub(self.held, Ordering::Relaxed);
        }
    }
}

/// Past this many bytes of body, [`Bounded`] grows straight to its limit.
const JUMP_TO_LIMIT_PAST: usize = 1024 * 1024;

/// A buffer that refuses to grow past `limit` (its capacity neither), or past what
/// its share of the [`BodyBudget`] can take.
struct Bounded<'a, 'b> {
    buf: &'a mut Vec<u8>,
    limit: usize,
    share: &'a mut Share<'b>,
    /// Why a write was refused: [`FetchError::TooLarge`] or
    /// [`FetchError::OverBudget`].
    exceeded: Option<FetchError>,
}

impl Write for Bounded<'_, '_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let need = self.buf.len() + data.len();
        if need > self.limit {
            self.exceeded = Some(FetchError::TooLarge);
            return Err(std::io::Error::other("the body passes the limit"));
        }
        // Bytes written, not capacity: past `JUMP_TO_LIMIT_PAST` the capacity is
        // address space until written.
        if !self.share.take(need) {
            self.exceeded = Some(FetchError::OverBudget);
            return Err(std::io::Error::other(
                "the body passes what the body budget leaves",
            ));
        }
        if need > self.buf.capacity() {
            // Doubling up to a large body, then the limit at once: a buffer that grows
            // in steps of megabytes is copied at each and leaves the steps behind in the
            // allocator; one of the limit's size is only address space until written.
            let grown = if need > JUMP_TO_LIMIT_PAST {
                self.limit
            } else {
                (self.buf.capacity() * 2)
                    .max(need)
                    .max(8192)
                    .min(self.limit)
            };
            self.buf.reserve_exact(grown - self.buf.len());
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write as _};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    use super::*;
    use crate::metrics::scrape::testserver::{Reply, TestServer, gzipped};

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const MIB: usize = 1 << 20;

    async fn get(
        c: &mut Client,
        url: &Uri,
        auth: &TargetAuth,
        limit: usize,
    ) -> (Result<Format, FetchError>, Vec<u8>) {
        let (mut buf, none) = (Vec::new(), BodyBudget::new(0));
        let r = c
            .fetch(
                url,
                auth,
                Duration::from_secs(10),
                limit,
                &mut none.share(),
                &mut buf,
            )
            .await;
        (r, buf)
    }

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/tls"
        ))
        .join(name)
    }

    #[tokio::test]
    async fn a_scrape_sends_prometheus_headers_and_reads_the_body() {
        let s = TestServer::start(LOCAL, |_| Reply::text("up 1\n")).await;
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let auth = TargetAuth {
            bearer_token_file: Some(token),
            ..TargetAuth::default()
        };
        let (r, body) = get(&mut Client::default(), &s.url("/metrics?x=1"), &auth, MIB).await;
        assert_eq!(r, Ok(Format::Text));
        assert_eq!(body, b"up 1\n");
        let head = s.stats.heads.lock().unwrap()[0].clone();
        assert_eq!(head.path, "/metrics?x=1");
        assert_eq!(head.header("accept"), Some(ACCEPT));
        assert!(ACCEPT.starts_with("text/plain;version=0.0.4;q=1,"));
        assert_eq!(head.header("accept-encoding"), Some("gzip"));
        assert_eq!(head.header("authorization"), Some("Bearer s3cret"));
        assert_eq!(
            head.header("x-prometheus-scrape-timeout-seconds"),
            Some("10")
        );
        assert_eq!(head.header("host"), Some(s.addr.to_string().as_str()));
        // A token file that cannot be read fails the scrape; nothing is sent.
        let missing = TargetAuth {
            bearer_token_file: Some(dir.path().join("nope")),
            ..TargetAuth::default()
        };
        let (r, _) = get(&mut Client::default(), &s.url("/metrics"), &missing, MIB).await;
        assert!(matches!(r, Err(FetchError::Failed(m)) if m.contains("bearer_token_file")));
        assert_eq!(s.requests(), 1);
    }

    #[tokio::test]
    async fn the_format_comes_from_the_content_type() {
        let s = TestServer::start(LOCAL, |h| {
            let content_type = match h.path.as_str() {
                "/om" => "application/openmetrics-text; version=1.0.0; charset=utf-8",
                "/html" => "text/html",
                _ => "text/plain",
            };
            Reply::Body {
                body: b"# EOF\n".to_vec(),
                content_type,
                gzip: false,
                // A chunked answer leaves the kept connection as reusable as one with
                // a length.
                chunked: h.path == "/om",
            }
        })
        .await;
        let mut c = Client::default();
        let a = TargetAuth::default();
        assert_eq!(
            get(&mut c, &s.url("/om"), &a, MIB).await.0,
            Ok(Format::OpenMetrics)
        );
        assert_eq!(
            get(&mut c, &s.url("/html"), &a, MIB).await.0,
            Ok(Format::Text)
        );
        assert_eq!(get(&mut c, &s.url("/"), &a, MIB).await.0, Ok(Format::Text));
        assert_eq!(
            s.stats.connections.load(Ordering::SeqCst),
            1,
            "one kept-alive connection"
        );
    }

    #[test]
    fn shares_take_from_the_budget_in_steps_and_give_back_when_dropped() {
        const K: usize = 1024;
        let b = BodyBudget::new(250 * K);
        let mut one = b.share();
        assert!(one.take(1));
        assert_eq!((one.held(), b.used()), (64 * K, 64 * K), "a step at a time");
        assert!(one.take(64 * K), "within what it holds");
        assert!(one.take(100 * K));
        assert_eq!((one.held(), b.used()), (128 * K, 128 * K));
        let mut two = b.share();
        assert!(!two.take(200 * K), "128 KiB + 200 KiB > 250 KiB");
        assert_eq!(
            (two.held(), b.used()),
            (0, 128 * K),
            "a refused take holds nothing"
        );
        assert!(two.take(100 * K), "the step does not fit, the bytes do");
        assert_eq!((two.held(), b.used()), (100 * K, 228 * K));
        assert!(!b.share().take(251 * K), "more than the whole budget");
        drop(one);
        assert_eq!(b.used(), 100 * K);
        drop(two);
        assert_eq!(b.used(), 0);

        let none = BodyBudget::new(0);
        let mut s = none.share();
        assert!(s.take(1 << 30), "no budget: any size");
        assert_eq!((s.held(), none.used()), (1 << 30, 0), "and nothing counted");
        drop(s);
        assert_eq!(none.used(), 0);
    }

    #[tokio::test]
    async fn a_body_past_what_the_budget_leaves_fails_and_gives_its_bytes_back() {
        const K: usize = 1024;
        // 320 KiB in 64 KiB pieces, plain and gzipped.
        let s = TestServer::start(LOCAL, |h| match h.path.as_str() {
            "/gzip" => Reply::Body {
                body: "x 1\n".repeat(80 * K).into_bytes(),
                content_type: "text/plain",
                gzip: true,
                chunked: true,
            },
            _ => Reply::Stream(300 * K),
        })
        .await;
        let budget = BodyBudget::new(512 * K);
        let a = TargetAuth::default();
        let fetch = |path: &'static str, budget: &'static BodyBudget| {
            let url = s.url(path);
            let a = a.clone();
            async move {
                let (mut buf, mut share) = (Vec::new(), budget.share());
                let r = Client::default()
                    .fetch(&url, &a, Duration::from_secs(10), MIB, &mut share, &mut buf)
                    .await;
                (r, buf.len(), share.held())
            }
        };
        let budget: &'static BodyBudget = Box::leak(Box::new(budget));
        // Alone, the body fits; its share is given back when the scrape is done.
        let (r, len, held) = fetch("/", budget).await;
        assert_eq!((r, len), (Ok(Format::Text), 320 * K));
        assert_eq!(held, 320 * K);
        assert_eq!(budget.used(), 0);
        // With 256 KiB held by another scrape, it does not.
        let mut other = budget.share();
        assert!(other.take(256 * K));
        for path in ["/", "/gzip"] {
            let (r, len, _) = fetch(path, budget).await;
            assert_eq!(r, Err(FetchError::OverBudget), "{path}");
            assert!(len <= 256 * K, "{path}: held {len} bytes");
            assert_eq!(
                budget.used(),
                256 * K,
                "{path}: the failed scrape's bytes are back"
            );
        }
        drop(other);
        assert_eq!(fetch("/gzip", budget).await.0, Ok(Format::Text));
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn a_streaming_body_of_50_mb_stops_at_the_limit() {
        let s = TestServer::start(LOCAL, |_| Reply::Stream(50 * MIB)).await;
        let mut c = Client::default();
        let mut buf = Vec::new();
        let r = c
            .fetch(
                &s.url("/"),
                &TargetAuth::default(),
                Duration::from_secs(10),
                MIB,
                &mut BodyBudget::new(0).share(),
                &mut buf,
            )
            .await;
        assert_eq!(r, Err(FetchError::TooLarge));
        assert!(buf.len() <= MIB, "held {} bytes", buf.len());
        assert!(
            buf.capacity() <= MIB,
            "the buffer grew to {} bytes",
            buf.capacity()
        );
        drop(c);
        // The connection is dropped: the server's writes fail long before 50 MB.
        for _ in 0..500 {
            if s.stats.streams_ended.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            s.stats.streams_ended.load(Ordering::SeqCst),
            1,
            "the stream did not end"
        );
        let sent = s.stats.streamed.load(Ordering::SeqCst);
        assert!(
            sent < 24 * MIB,
            "the server could write {sent} bytes: the body was read on"
        );
    }

    #[tokio::test]
    async fn gzip_bodies_are_inflated_within_the_limit() {
        let text: String = (0..20_000)
            .map(|i| format!("m{{i=\"{i}\"}} {i}\n"))
            .collect();
        let big = "x 1\n".repeat(50 * MIB / 4);
        let (t, b) = (text.clone(), big.clone());
        let s = TestServer::start(LOCAL, move |h| match h.path.as_str() {
            "/bomb" => Reply::Body {
                body: b.clone().into_bytes(),
                content_type: "text/plain",
                gzip: true,
                chunked: true,
            },
            "/corrupt" => Reply::Raw(
                "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!",
            ),
            "/brotli" => Reply::Raw(
                "HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 3\r\n\r\nabc",
            ),
            _ => Reply::Body {
                body: t.clone().into_bytes(),
                content_type: "text/plain",
                gzip: true,
                chunked: h.path == "/chunked",
            },
        })
        .await;
        assert!(
            gzipped(big.as_bytes()).len() < MIB,
            "a small body inflating to 50 MB"
        );
        let a = TargetAuth::default();
        for path in ["/", "/chunked"] {
            let (r, body) = get(&mut Client::default(), &s.url(path), &a, MIB).await;
            assert_eq!(r, Ok(Format::Text), "{path}");
            assert!(
                body == text.as_bytes(),
                "{path}: the body inflated as it was"
            );
        }
        let mut buf = Vec::new();
        let r = Client::default()
            .fetch(
                &s.url("/bomb"),
                &a,
                Duration::from_secs(10),
                MIB,
                &mut BodyBudget::new(0).share(),
                &mut buf,
            )
            .await;
        assert_eq!(r, Err(FetchError::TooLarge));
        assert!(buf.capacity() <= MIB);
        let (r, _) = get(&mut Client::default(), &s.url("/corrupt"), &a, MIB).await;
        assert!(
            matches!(&r, Err(FetchError::Failed(m)) if m.starts_with("gzip body")),
            "{r:?}"
        );
        let (r, _) = get(&mut Client::default(), &s.url("/brotli"), &a, MIB).await;
        assert!(
            matches!(&r, Err(FetchError::Failed(m)) if m.contains("Content-Encoding `br`")),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_content_length_over_the_limit_fails_before_the_body() {
        let s = TestServer::start(LOCAL, |_| Reply::text(&"x 1\n".repeat(1000))).await;
        let (r, body) = get(
            &mut Client::default(),
            &s.url("/"),
            &TargetAuth::default(),
            1024,
        )
        .await;
        assert_eq!(r, Err(FetchError::TooLarge));
        assert!(body.is_empty(), "nothing read");
    }

    #[tokio::test]
    async fn statuses_resets_and_refusals_fail() {
        let s = TestServer::start(LOCAL, |h| match h.path.as_str() {
            "/500" => Reply::Status(500),
            _ => Reply::Reset,
        })
        .await;
        let a = TargetAuth::default();
        let (r, _) = get(&mut Client::default(), &s.url("/500"), &a, MIB).await;
        assert!(
            matches!(&r, Err(FetchError::Failed(m)) if m.contains("HTTP status 500")),
            "{r:?}"
        );
        let (r, _) = get(&mut Client::default(), &s.url("/reset"), &a, MIB).await;
        assert!(matches!(&r, Err(FetchError::Failed(_))), "{r:?}");
        let refused: Uri = "http://127.0.0.1:1/metrics".parse().unwrap();
        let (r, _) = get(&mut Client::default(), &refused, &a, MIB).await;
        assert!(
            matches!(&r, Err(FetchError::Failed(m)) if m.starts_with("connecting to")),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_connection_the_server_said_it_closes_is_not_kept() {
        // `Connection: close`, the socket left open: the next scrape must not send on it.
        let s = TestServer::start(LOCAL, |_| {
            Reply::Raw(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nup 1\n",
            )
        })
        .await;
        let mut c = Client::default();
        let a = TargetAuth::default();
        for _ in 0..2 {
            let (r, body) = get(&mut c, &s.url("/"), &a, MIB).await;
            assert_eq!((r, body), (Ok(Format::Text), b"up 1\n".to_vec()));
        }
        assert_eq!(s.stats.connections.load(Ordering::SeqCst), 2);
        assert_eq!(s.requests(), 2);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_while_idle_is_replaced() {
        let s = TestServer::start(LOCAL, |_| Reply::TextThenClose("up 1\n")).await;
        let mut c = Client::default();
        let a = TargetAuth::default();
        assert!(get(&mut c, &s.url("/"), &a, MIB).await.0.is_ok());
        for _ in 0..500 {
            // Until the server has closed its side of the idle connection.
            if s.stats.closed.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(s.stats.closed.load(Ordering::SeqCst), 1);
        let (r, body) = get(&mut c, &s.url("/"), &a, MIB).await;
        assert_eq!((r, body), (Ok(Format::Text), b"up 1\n".to_vec()));
        assert_eq!(
            s.stats.connections.load(Ordering::SeqCst),
            2,
            "a new connection"
        );
        assert_eq!(
            s.requests(),
            2,
            "nothing reached the server on the closed one"
        );
    }

    /// An HTTPS server with the fixture certificate, answering `up 1` to one request
    /// per connection.
    fn tls_server() -> SocketAddr {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(fixture("server.crt"))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_file(fixture("server.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let config = Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match tls.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                if head.ends_with(b"\r\n\r\n") {
                    let _ = tls.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nup 1\n",
                    );
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn https_verifies_against_the_ca_file_unless_told_not_to() {
        let addr = tls_server();
        let url: Uri = format!("https://127.0.0.1:{}/metrics", addr.port())
            .parse()
            .unwrap();
        let with_ca = |file: &str| TargetAuth {
            ca_file: Some(fixture(file)),
            ..TargetAuth::default()
        };
        let (r, body) = get(&mut Client::default(), &url, &with_ca("ca.crt"), MIB).await;
        assert_eq!((r, body), (Ok(Format::Text), b"up 1\n".to_vec()));
        let (r, _) = get(&mut Client::default(), &url, &with_ca("other-ca.crt"), MIB).await;
        assert!(
            matches!(&r, Err(FetchError::Failed(m)) if m.contains("certificate")),
            "{r:?}"
        );
        let (r, _) = get(&mut Client::default(), &url, &TargetAuth::default(), MIB).await;
        assert!(r.is_err(), "the system's roots do not know the test CA");
        let skip = TargetAuth {
            insecure_skip_verify: true,
            ..TargetAuth::default()
        };
        let (r, _) = get(&mut Client::default(), &url, &skip, MIB).await;
        assert_eq!(r, Ok(Format::Text));
        let (r, _) = get(&mut Client::default(), &url, &with_ca("missing.crt"), MIB).await;
        assert!(
            matches!(&r, Err(FetchError::Failed(m)) if m.contains("ca_file")),
            "{r:?}"
        );
    }
}
