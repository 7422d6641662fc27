//! The scrape side's own metrics (`kubeship_scrape*`) and their label values. No
//! per-target label: which target failed is the per-target `up` series the scrapes
//! themselves forward.

use kubeship_parsers::prom::ErrorKind;
use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::telemetry::metrics::{CounterBy, Declared, Labels, label_values, register_by};

label_values! {
    /// A target's health, as its last scrape left it (`scrape_targets{state}`).
    pub enum Health {
        /// The last scrape succeeded, or there was none yet.
        Up => "up",
        /// The last scrape failed.
        Down => "down",
    }
}

label_values! {
    /// How a scrape ended (`scrapes_total{outcome}`).
    pub enum Outcome {
        /// Scraped and handed on (lines that did not parse are counted apart).
        Ok => "ok",
        /// Connection, TLS, HTTP status, content encoding, token file: anything else.
        Error => "error",
        /// Not done within the scrape timeout.
        Timeout => "timeout",
        /// The body (decompressed) passed the body limit.
        BodyTooLarge => "body_too_large",
        /// The bodies being scraped at once would have passed
        /// `metrics.scrape.max_body_bytes_in_flight` with this one's.
        BodyBudget => "body_budget",
        /// More samples than the target's sample limit, after metric relabeling.
        SampleLimit => "sample_limit",
        /// More samples, after metric relabeling, than the agent-wide series budget
        /// (`metrics.scrape.max_series`) left the target.
        SeriesLimit => "series_limit",
    }
}

/// A parser error kind as a label value (`scrape_parse_errors_total{reason}`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct ParseReason(pub ErrorKind);

impl EncodeLabelValue for ParseReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        encoder.write_str(self.0.as_str())
    }
}

/// The scrape side's metrics.
pub struct ScrapeMetrics {
    /// Targets by health.
    pub targets: Family<Labels<Health>, Gauge>,
    /// Scrapes by outcome.
    pub scrapes: CounterBy<Outcome>,
    /// How long one scrape took (connection, request and body; not the parsing).
    pub duration: Histogram,
    /// Samples read from bodies (before metric relabeling and limits).
    pub samples: Counter,
    /// Body lines the parser skipped, by reason.
    pub parse_errors: CounterBy<ParseReason>,
}

impl ScrapeMetrics {
    /// Creates the scrape side's metrics and registers them.
    pub fn register(r: &mut Registry) -> Self {
        let m = Self {
            targets: Family::default(),
            scrapes: CounterBy::default(),
            duration: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            samples: Counter::default(),
            parse_errors: CounterBy::default(),
        };
        for &h in Health::ALL {
            let _ = m.targets.get_or_create(&[("state", h)]);
        }
        r.register(
            "scrape_targets",
            "Scrape targets of this agent, by the outcome of their last scrape (up: none yet, or it succeeded)",
            Declared(m.targets.clone()),
        );
        register_by(
            r,
            "scrapes",
            "Scrapes, by outcome",
            "outcome",
            Outcome::ALL,
            &m.scrapes,
        );
        r.register(
            "scrape_duration_seconds",
            "Duration of one scrape: connection, request and body",
            m.duration.clone(),
        );
        r.register(
            "scrape_samples",
            "Samples read from scraped bodies, before metric relabeling and limits",
            m.samples.clone(),
        );
        let reasons: Vec<ParseReason> = ErrorKind::ALL.iter().copied().map(ParseReason).collect();
        register_by(
            r,
            "scrape_parse_errors",
            "Lines of scraped bodies that did not parse (the rest of the body is kept), by reason",
            "reason",
            &reasons,
            &m.parse_errors,
        );
        m
    }

    /// The gauge of targets in `health`.
    pub fn targets_in(&self, health: Health) -> Gauge {
        self.targets.get_or_create(&[("state", health)]).clone()
    }

    /// Counts a scrape's outcome.
    pub fn scraped(&self, outcome: Outcome) {
        self.scrapes.get_or_create(&[("outcome", outcome)]).inc();
    }

    /// Counts `n` parse errors of `kind`.
    pub fn parse_errors(&self, kind: ErrorKind, n: u64) {
        self.parse_errors
            .get_or_create(&[("reason", ParseReason(kind))])
            .inc_by(n);
    }
}
