//! The telemetry HTTP endpoint: `/metrics`, `/healthz`, `/readyz`.
//!
//! Plain HTTP/1.1 on the configured address. `/healthz` answers 200 while the
//! tailer thread is alive; `/readyz` answers 200 once the first discovery ran and
//! the sink is accepting batches and making progress, 503 otherwise.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::Metrics;

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
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (metrics, health) = (Arc::clone(&metrics), Arc::clone(&health));
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let resp = handle(&req, &metrics, &health);
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((local, task))
}
