//! A shard's sender: takes a batch, encodes it once, and sends it until the endpoint
//! accepts or refuses it, waiting its turn at the endpoint's [`Gate`](super::gate::Gate)
//! before every attempt; then the next batch. One request at a time per shard, so a
//! series' samples leave in order, retries included.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::Endpoint;
use super::client::{Answer, RetryKind};
use super::metrics::RequestOutcome;
use super::proto::{self, Scratch};
use crate::metrics::series::Sample;

/// Runs shard `shard` of `e` until its queue is closed and empty.
pub(super) async fn run_shard(e: Arc<Endpoint>, shard: usize) {
    let mut batch: Vec<Sample> = Vec::new();
    let mut scratch = Scratch::default();
    while e.queue.next_batch(shard, &mut batch).await {
        e.client.sweep();
        let n = batch.len();
        // A new buffer each time: the request's `Bytes` takes it over, and a shard
        // keeps no request-sized buffer between requests.
        let mut body = Vec::new();
        match proto::body(&batch, &mut scratch, &mut body) {
            Ok(()) => deliver(&e, Bytes::from(body), &batch).await,
            Err(err) => {
                // Only a body larger than snappy's 4 GiB limit: cannot happen with
                // at most 100,000 samples per request.
                e.metrics.failed.inc_by(n as u64);
                tracing::error!(endpoint = %e.name, error = %err, "remote write: cannot compress a request");
            }
        }
        e.queue.settle(shard, n);
        batch.clear();
    }
}

/// Sends `body` (the encoded `batch`) until it is accepted or refused.
async fn deliver(e: &Endpoint, body: Bytes, batch: &[Sample]) {
    let n = batch.len() as u64;
    loop {
        let turn = e.gate.turn().await;
        let t0 = Instant::now();
        let answer = e.client.send(body.clone()).await;
        e.metrics.duration.observe(t0.elapsed().as_secs_f64());
        match answer {
            Answer::Accepted => {
                e.metrics.request(RequestOutcome::Ok);
                e.metrics.sent.inc_by(n);
                note_highest(e, batch);
                e.gate.answered();
                return;
            }
            Answer::Refused { status, detail } => {
                e.metrics.request(RequestOutcome::Rejected4xx);
                e.metrics.failed.inc_by(n);
                e.gate.answered();
                e.log_limited("refused", |suppressed| {
                    tracing::error!(
                        endpoint = %e.name,
                        status,
                        detail = %detail,
                        samples = n,
                        suppressed,
                        "remote write: request refused; its samples are not sent again"
                    );
                });
                return;
            }
            Answer::Retry {
                kind,
                retry_after,
                detail,
            } => {
                e.metrics.request(match kind {
                    RetryKind::Status5xx => RequestOutcome::Retried5xx,
                    RetryKind::TooMany => RequestOutcome::Retried429,
                    RetryKind::NoAnswer => RequestOutcome::Error,
                });
                let pause = e.gate.failed(turn, retry_after);
                e.log_limited("retry", |suppressed| {
                    tracing::warn!(
                        endpoint = %e.name,
                        detail = %detail,
                        retry_after = ?retry_after,
                        pause = ?pause,
                        failures = e.gate.failures(),
                        suppressed,
                        "remote write: request failed; the endpoint pauses, then retries"
                    );
                });
            }
        }
    }
}

/// Raises the endpoint's newest-timestamp gauge to `batch`'s newest sample.
fn note_highest(e: &Endpoint, batch: &[Sample]) {
    let Some(newest) = batch.iter().map(|s| s.timestamp_ms).max() else {
        return;
    };
    let mut highest = e.highest_ms.lock().unwrap_or_else(|p| p.into_inner());
    if highest.is_none_or(|h| newest > h) {
        *highest = Some(newest);
        e.metrics.highest_sent.set(newest as f64 / 1000.0);
    }
}
