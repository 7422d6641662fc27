//! Remote write's self-metrics, per endpoint: the `endpoint` label is the endpoint's
//! configured `name` (endpoints are few and fixed by the config, so the label is
//! bounded); `outcome` values are a fixed set.
//!
//! The families are registered with the rest when the agent starts, before any
//! endpoint exists; [`RemoteWriteMetrics::endpoint`] creates an endpoint's series
//! (every outcome at 0) and hands out their handles, so the hot path touches no map.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::telemetry::metrics::{Declared, label_values};

label_values! {
    /// What became of samples (`remote_write_samples_total{outcome}`).
    pub enum SampleOutcome {
        /// Accepted by the endpoint (a 2xx answer).
        Sent => "sent",
        /// Refused by the endpoint with a 4xx other than 429: not retried.
        Failed => "failed",
        /// Never sent: the oldest, dropped when the pending bound was reached, or what
        /// was left at shutdown.
        Dropped => "dropped",
    }
}

label_values! {
    /// How a request ended (`remote_write_requests_total{outcome}`).
    pub enum RequestOutcome {
        /// A 2xx answer.
        Ok => "ok",
        /// A 5xx answer: retried after a backoff.
        Retried5xx => "retried_5xx",
        /// 429 Too Many Requests: retried after its `Retry-After` (at least).
        Retried429 => "retried_429",
        /// Another 4xx: its samples are counted `failed`, not retried.
        Rejected4xx => "rejected_4xx",
        /// No answer (connection, TLS, timeout) or no credentials: retried.
        Error => "error",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SampleLabels {
    endpoint: String,
    outcome: SampleOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    endpoint: String,
    outcome: RequestOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    endpoint: String,
}

/// Request duration buckets, in seconds.
const DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The families, registered once.
pub struct RemoteWriteMetrics {
    samples: Family<SampleLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    duration: Family<EndpointLabel, Histogram, fn() -> Histogram>,
    pending: Family<EndpointLabel, Gauge>,
    highest_sent: Family<EndpointLabel, Gauge<f64, AtomicU64>>,
}

/// One endpoint's series.
#[derive(Clone, Debug)]
pub struct EndpointMetrics {
    /// Samples accepted.
    pub sent: Counter,
    /// Samples refused (4xx other than 429).
    pub failed: Counter,
    /// Samples dropped (pending bound, shutdown).
    pub dropped: Counter,
    requests: [Counter; 5],
    /// Request durations, every attempt.
    pub duration: Histogram,
    /// Samples held: queued and in flight.
    pub pending: Gauge,
    /// The newest sample timestamp accepted, in seconds.
    pub highest_sent: Gauge<f64, AtomicU64>,
}

impl EndpointMetrics {
    /// Counts a request.
    pub fn request(&self, outcome: RequestOutcome) {
        self.requests[outcome as usize].inc();
    }

    /// Requests so far that ended with `outcome`.
    #[cfg(test)]
    pub fn requests(&self, outcome: RequestOutcome) -> u64 {
        self.requests[outcome as usize].get()
    }
}

impl RemoteWriteMetrics {
    /// Creates the families and registers them.
    pub fn register(r: &mut Registry) -> Self {
        let m = Self {
            samples: Family::default(),
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            pending: Family::default(),
            highest_sent: Family::default(),
        };
        r.register(
            "remote_write_samples",
            "Remote-write samples by what became of them: sent, failed (refused with a 4xx \
             other than 429, not retried), dropped (pending bound reached, or left at shutdown)",
            Declared(m.samples.clone()),
        );
        r.register(
            "remote_write_requests",
            "Remote-write requests by outcome: ok, retried_5xx, retried_429, rejected_4xx, \
             error (no answer: connection, TLS, timeout; or no credentials)",
            Declared(m.requests.clone()),
        );
        r.register_with_unit(
            "remote_write_request_duration",
            "Remote-write request durations, every attempt",
            Unit::Seconds,
            Declared(m.duration.clone()),
        );
        r.register(
            "remote_write_pending_samples",
            "Samples held for an endpoint: queued and in flight",
            Declared(m.pending.clone()),
        );
        r.register(
            "remote_write_highest_sent_timestamp_seconds",
            "Timestamp of the newest sample an endpoint accepted",
            Declared(m.highest_sent.clone()),
        );
        m
    }

    /// The series of endpoint `name`, every outcome present from now on.
    pub fn endpoint(&self, name: &str) -> EndpointMetrics {
        let sample = |outcome| {
            self.samples
                .get_or_create(&SampleLabels {
                    endpoint: name.to_owned(),
                    outcome,
                })
                .clone()
        };
        let request = |outcome| {
            self.requests
                .get_or_create(&RequestLabels {
                    endpoint: name.to_owned(),
                    outcome,
                })
                .clone()
        };
        let label = EndpointLabel {
            endpoint: name.to_owned(),
        };
        debug_assert!(
            RequestOutcome::ALL
                .iter()
                .enumerate()
                .all(|(i, &o)| o as usize == i)
        );
        EndpointMetrics {
            sent: sample(SampleOutcome::Sent),
            failed: sample(SampleOutcome::Failed),
            dropped: sample(SampleOutcome::Dropped),
            requests: [
                request(RequestOutcome::Ok),
                request(RequestOutcome::Retried5xx),
                request(RequestOutcome::Retried429),
                request(RequestOutcome::Rejected4xx),
                request(RequestOutcome::Error),
            ],
            duration: self.duration.get_or_create(&label).clone(),
            pending: self.pending.get_or_create(&label).clone(),
            highest_sent: self.highest_sent.get_or_create(&label).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_declared_before_any_endpoint_and_filled_per_endpoint() {
        let mut r = Registry::with_prefix("kubeship");
        let m = RemoteWriteMetrics::register(&mut r);
        let text = |r: &Registry| {
            let mut s = String::new();
            prometheus_client::encoding::text::encode(&mut s, r).unwrap();
            s
        };
        let before = text(&r);
        for family in [
            "# TYPE kubeship_remote_write_samples counter",
            "# TYPE kubeship_remote_write_requests counter",
            "# TYPE kubeship_remote_write_request_duration_seconds histogram",
            "# TYPE kubeship_remote_write_pending_samples gauge",
            "# TYPE kubeship_remote_write_highest_sent_timestamp_seconds gauge",
        ] {
            assert!(before.contains(family), "{family} in\n{before}");
        }
        let e = m.endpoint("amp");
        e.dropped.inc_by(3);
        e.request(RequestOutcome::Retried429);
        e.highest_sent.set(1.7e9);
        let after = text(&r);
        for line in [
            r#"kubeship_remote_write_samples_total{endpoint="amp",outcome="dropped"} 3"#,
            r#"kubeship_remote_write_samples_total{endpoint="amp",outcome="failed"} 0"#,
            r#"kubeship_remote_write_requests_total{endpoint="amp",outcome="retried_429"} 1"#,
            r#"kubeship_remote_write_requests_total{endpoint="amp",outcome="error"} 0"#,
            r#"kubeship_remote_write_pending_samples{endpoint="amp"} 0"#,
            r#"kubeship_remote_write_highest_sent_timestamp_seconds{endpoint="amp"} 1700000000.0"#,
        ] {
            assert!(after.contains(line), "{line} in\n{after}");
        }
        assert_eq!(e.requests(RequestOutcome::Retried429), 1);
    }
}
