//! Self-telemetry: metrics, the HTTP endpoint that serves them, logging setup.

pub mod logging;
pub mod metrics;
pub mod ratelimit;
pub mod server;

pub use metrics::Metrics;
pub use ratelimit::LogLimits;
