//! The CloudWatch Logs sink's metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::telemetry::metrics::{CounterBy, label_values, register_by};

label_values! {
    /// How a PutLogEvents call ended (`cloudwatch_requests_total{outcome}`).
    pub enum Outcome {
        /// Accepted (some events may have been rejected, counted as drops).
        Ok => "ok",
        /// Throttled: retried later, fewer calls at once.
        Throttled => "throttled",
        /// 5xx, timeout, connection error: retried later.
        Error => "error",
        /// InvalidParameterException: split until the offender is alone.
        Invalid => "invalid",
        /// Credentials, signature or permissions refused: retried, not ready.
        Denied => "denied",
        /// The log group does not exist and may not be created: retried, not ready.
        NoGroup => "no_group",
    }
}

/// The CloudWatch sink's metrics.
pub struct CloudWatchMetrics {
    /// Log events CloudWatch accepted.
    pub cloudwatch_events_sent: Counter,
    /// PutLogEvents calls by outcome.
    pub cloudwatch_requests: CounterBy<Outcome>,
    /// PutLogEvents call durations (including stream creation when needed).
    pub cloudwatch_request_duration_seconds: Histogram,
    /// Log streams the agent created.
    pub cloudwatch_streams_created: Counter,
    /// Log groups the agent created.
    pub cloudwatch_groups_created: Counter,
    /// PutLogEvents calls in flight.
    pub cloudwatch_requests_in_flight: Gauge,
    /// How many calls may be in flight now (halved on throttling).
    pub cloudwatch_concurrency_limit: Gauge,
}

impl CloudWatchMetrics {
    /// Creates the sink's metrics and registers them.
    pub fn register(r: &mut Registry) -> Self {
        let m = Self {
            cloudwatch_events_sent: Counter::default(),
            cloudwatch_requests: CounterBy::default(),
            cloudwatch_request_duration_seconds: Histogram::new([
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            cloudwatch_streams_created: Counter::default(),
            cloudwatch_groups_created: Counter::default(),
            cloudwatch_requests_in_flight: Gauge::default(),
            cloudwatch_concurrency_limit: Gauge::default(),
        };
        r.register(
            "cloudwatch_events_sent",
            "Log events CloudWatch Logs accepted",
            m.cloudwatch_events_sent.clone(),
        );
        register_by(
            r,
            "cloudwatch_requests",
            "PutLogEvents calls by outcome",
            "outcome",
            Outcome::ALL,
            &m.cloudwatch_requests,
        );
        r.register_with_unit(
            "cloudwatch_request_duration",
            "PutLogEvents call durations, including creating a missing stream",
            Unit::Seconds,
            m.cloudwatch_request_duration_seconds.clone(),
        );
        r.register(
            "cloudwatch_streams_created",
            "Log streams created by the agent",
            m.cloudwatch_streams_created.clone(),
        );
        r.register(
            "cloudwatch_groups_created",
            "Log groups created by the agent",
            m.cloudwatch_groups_created.clone(),
        );
        r.register(
            "cloudwatch_requests_in_flight",
            "PutLogEvents calls in flight",
            m.cloudwatch_requests_in_flight.clone(),
        );
        r.register(
            "cloudwatch_concurrency_limit",
            "PutLogEvents calls allowed in flight now (halved on throttling)",
            m.cloudwatch_concurrency_limit.clone(),
        );
        m
    }

    /// Counts a call.
    pub fn request(&self, outcome: Outcome) {
        self.cloudwatch_requests
            .get_or_create(&[("outcome", outcome)])
            .inc();
    }
}
