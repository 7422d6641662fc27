//! A shard's sender: takes a batch, joins its chunks into one request (encoded when
//! they were queued), and sends it until the endpoint
//! accepts or refuses it, waiting its turn at the endpoint's [`Gate`](super::gate::Gate)
//! before every attempt; then the next batch. One request at a time per shard, so a
//! series' samples leave in order, retries included.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::Endpoint;
use super::client::{Answer, RetryKind};
use super::metrics::RequestOutcome;
use super::proto::{self, Chunk};

/// Runs shard `shard` of `e` until its queue is closed and empty.
pub(super) async fn run_shard(e: Arc<Endpoint>, shard: usize) {
    let mut batch: Vec<Chunk> = Vec::new();
    while e.queue.next_batch(shard, &mut batch).await {
        e.client.sweep();
        let n: usize = batch.iter().map(Chunk::samples).sum();
        let bytes: usize = batch.iter().map(Chunk::size).sum();
        let newest = batch.iter().map(Chunk::newest_ms).max();
        // A new buffer each time: the request's `Bytes` takes it over, and a shard
        // keeps no request-sized buffer between requests.
        let body = proto::request_body(&batch);
        batch.clear();
        deliver(&e, Bytes::from(body), n, newest).await;
        e.queue.settle(shard, n, bytes);
    }
}

/// Sends `body` (a batch of `samples`) until it is accepted or refused.
async fn deliver(e: &Endpoint, body: Bytes, samples: usize, newest: Option<i64>) {
    let n = samples as u64;
    loop {
        let turn = e.gate.turn().await;
        let t0 = Instant::now();
        let answer = e.client.send(body.clone()).await;
        e.metrics.duration.observe(t0.elapsed().as_secs_f64());
        match answer {
            Answer::Accepted => {
                e.metrics.request(RequestOutcome::Ok);
                e.metrics.sent.inc_by(n);
                note_highest(e, newest);
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

/// Raises the endpoint's newest-timestamp gauge to a sent batch's newest sample.
fn note_highest(e: &Endpoint, newest: Option<i64>) {
    let Some(newest) = newest else {
        return;
    };
    let mut highest = e.highest_ms.lock().unwrap_or_else(|p| p.into_inner());
    if highest.is_none_or(|h| newest > h) {
        *highest = Some(newest);
        e.metrics.highest_sent.set(newest as f64 / 1000.0);
    }
}
