//! The telemetry HTTP endpoint: `/metrics`, `/healthz`, `/readyz`.
//!
//! Plain HTTP/1.1 on the configured address. `/healthz` answers 200 while the
//! tailer thread is alive; `/readyz` answers 200 once the first discovery ran and
//! the sink is accepting batches and making progress, 503 otherwise.
//!
//! The listener is on the pod network by default (Prometheus scrapes it), so
//! anyone there can connect, and it shares the agent's one-thread runtime with the
//! CloudWatch sink and the pod watch. What a client can hold is bounded: at most
//! [`MAX_CONNECTIONS`] at once (more are closed at once), a request head must
//! arrive within [`HEADER_READ_TIMEOUT`] (also between requests on a keep-alive
//! connection), no connection lives longer than [`CONNECTION_LIFETIME`], and a
//! failing `accept` (out of file descriptors) pauses the loop for
//! [`ACCEPT_ERROR_BACKOFF`] instead of spinning. Refusals and timeouts are counted in
//! `kubeship_telemetry_connections_rejected_total{reason}` and
//! `kubeship_telemetry_connections_timed_out_total{reason}`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use prometheus_client::registry::Registry;

use super::metrics::{CounterBy, label_values, register_by};
use super::{LogLimits, Metrics};

/// Connections served at once. Prometheus and the kubelet's probes need a few; a
/// connection beyond this is closed as soon as it is accepted (counted as
/// `reason="limit"`), so a flood holds at most this many file descriptors.
pub const MAX_CONNECTIONS: usize = 64;

/// Time a client has to send a whole request head, counted from the connection's
/// start or, on a keep-alive connection, from the end of the previous response: an
/// idle connection and a slow-loris trickling its headers are closed after it
/// (`kubeship_telemetry_connections_timed_out_total{reason="header_read"}`).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest life of a connection, however busy: a client sending requests on one
/// keep-alive connection forever, or not reading its answers, lets its slot go after
/// this (`reason="lifetime"`). A scrape takes milliseconds; a client that keeps its
/// connection alive simply opens a new one.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(15);

/// After [`CONNECTION_LIFETIME`] the connection is shut down gracefully (a request
/// in progress is answered, then the connection is closed); it is dropped if that
/// takes longer than this.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Read buffer of a connection (hyper's minimum is 8 KiB): a longer request head is
/// answered 431. Our requests are a few hundred bytes; this bounds a connection's
/// memory to about this much.
pub const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;

/// Pause after `accept` failed (EMFILE and ENFILE above all: retrying at once would
/// fail again and spin the runtime thread the sink and the pod watch share).
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

label_values! {
    /// Why a connection was closed at once (`telemetry_connections_rejected_total`).
    pub enum Rejected {
        /// All connection slots taken.
        Limit => "limit",
        /// `accept` failed (out of file descriptors).
        AcceptError => "accept_error",
    }
}

label_values! {
    /// Why the agent closed a connection (`telemetry_connections_timed_out_total`).
    pub enum TimedOut {
        /// No request head in time (idle keep-alive included).
        HeaderRead => "header_read",
        /// Open longer than a connection may be.
        Lifetime => "lifetime",
    }
}

/// The telemetry endpoint's metrics.
pub struct ServerMetrics {
    /// Connections closed at once, by reason.
    pub rejected: CounterBy<Rejected>,
    /// Connections the agent closed, by reason.
    pub timed_out: CounterBy<TimedOut>,
}

impl ServerMetrics {
    /// Creates the endpoint's metrics and registers them.
    pub fn register(r: &mut Registry) -> Self {
        let m = Self {
            rejected: CounterBy::default(),
            timed_out: CounterBy::default(),
        };
        register_by(
            r,
            "telemetry_connections_rejected",
            "Telemetry endpoint connections closed at once (limit: all slots taken) or accepts that failed (accept_error)",
            "reason",
            Rejected::ALL,
            &m.rejected,
        );
        register_by(
            r,
            "telemetry_connections_timed_out",
            "Telemetry endpoint connections the agent closed: no request head in time (header_read), or at the end of their lifetime",
            "reason",
            TimedOut::ALL,
            &m.timed_out,
        );
        m
    }

    fn reject(&self, why: Rejected) {
        self.rejected.get_or_create(&[("reason", why)]).inc();
    }

    fn time_out(&self, why: TimedOut) {
        self.timed_out.get_or_create(&[("reason", why)]).inc();
    }
}

/// What the health endpoints report.
pub struct Health {
    /// The tailer thread runs.
    pub alive: AtomicBool,
    /// The first discovery ran.
    pub ready: AtomicBool,
    /// The sink is not refused by its peer (credentials, permissions, missing group).
    pub sink_ok: AtomicBool,
    /// A batch has waited longer than `pipeline.stuck_after_secs` for its
    /// acknowledgement: the sink is not making progress.
    pub sink_stuck: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            alive: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            sink_ok: AtomicBool::new(true),
            sink_stuck: AtomicBool::new(false),
        }
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

fn handle(req: &Request<Incoming>, metrics: &Metrics, health: &Health) -> Response<Full<Bytes>> {
    let check = |ok: bool| {
        if ok {
            respond(StatusCode::OK, "text/plain", "ok\n")
        } else {
            respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n")
        }
    };
    match (req.method(), req.uri().path()) {
        (&hyper::Method::GET, "/metrics") => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        (&hyper::Method::GET, "/healthz") => check(health.alive.load(Ordering::SeqCst)),
        (&hyper::Method::GET, "/readyz") => check(
            health.ready.load(Ordering::SeqCst)
                && health.sink_ok.load(Ordering::SeqCst)
                && !health.sink_stuck.load(Ordering::SeqCst),
        ),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// Binds `addr`; returns the bound address and the task serving it.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(accept_loop(listener, metrics, health));
    Ok((local, task))
}

/// Accepts connections for ever: each one with a free slot is served by a task of
/// its own, others are closed at once; a failed accept pauses the loop.
async fn accept_loop(listener: TcpListener, metrics: Arc<Metrics>, health: Arc<Health>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut limits = LogLimits::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                metrics.server.reject(Rejected::AcceptError);
                if let Some(suppressed) = limits.allow("accept_error", Instant::now()) {
                    tracing::warn!(error = %e, suppressed, pause_ms = ACCEPT_ERROR_BACKOFF.as_millis() as u64, "telemetry listener: accept failed");
                }
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.server.reject(Rejected::Limit);
            if let Some(suppressed) = limits.allow("limit", Instant::now()) {
                tracing::warn!(
                    limit = MAX_CONNECTIONS,
                    suppressed,
                    "telemetry listener: too many connections; closing new ones"
                );
            }
            drop(stream);
            continue;
        };
        tokio::spawn(serve_connection(
            stream,
            slot,
            Arc::clone(&metrics),
            Arc::clone(&health),
        ));
    }
}

/// Serves one connection within [`HEADER_READ_TIMEOUT`] and [`CONNECTION_LIFETIME`];
/// its slot is freed when this returns.
async fn serve_connection(
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) {
    let m = Arc::clone(&metrics);
    let svc = service_fn(move |req| {
        let resp = handle(&req, &m, &health);
        async move { Ok::<_, Infallible>(resp) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), svc);
    let mut conn = std::pin::pin!(conn);
    match tokio::time::timeout(CONNECTION_LIFETIME, conn.as_mut()).await {
        Ok(Err(e)) if e.is_timeout() => {
            metrics.server.time_out(TimedOut::HeaderRead);
        }
        // Served, or the client went away or sent garbage: nothing to count.
        Ok(_) => {}
        Err(_) => {
            metrics.server.time_out(TimedOut::Lifetime);
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
        }
    }
}
