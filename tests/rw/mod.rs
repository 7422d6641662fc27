//! The remote-write side of the harness: the wire format decoded ([`WriteRequest`],
//! [`decode`]), a loopback receiver the test scripts ([`RwServer`]: answers, hangs,
//! records every request), real Prometheus as the receiver ([`Prometheus`]), and
//! `kubeship push-samples` as a process fed line by line ([`Pusher`]).

mod prometheus;
mod pusher;
mod server;

pub use prometheus::*;
pub use pusher::*;
pub use server::*;

/// `prometheus.WriteRequest` as remote write 1.0 sends it (derived by hand, as the agent does).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<WireSample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireSample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// A snappy-compressed (block format) `WriteRequest` body, decoded.
pub fn decode(body: &[u8]) -> Result<WriteRequest, String> {
    use prost::Message as _;
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy: {e}"))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}"))
}

impl TimeSeries {
    /// The labels as `name=value` pairs joined by `,` (sorted as sent).
    pub fn key(&self) -> String {
        let parts: Vec<String> = self
            .labels
            .iter()
            .map(|l| format!("{}={}", l.name, l.value))
            .collect();
        parts.join(",")
    }
}

/// The bits of Prometheus's staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// One sample as `kubeship push-samples` reads it (the metrics local sink's line).
pub fn sample_line(labels: &[(&str, &str)], t_ms: i64, v: f64) -> String {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{}:{}", serde_json::json!(k), serde_json::json!(v)))
        .collect();
    let v = if v.to_bits() == STALE_NAN_BITS {
        "\"stale\"".to_string()
    } else if v.is_nan() {
        "\"NaN\"".to_string()
    } else if v == f64::INFINITY {
        "\"+Inf\"".to_string()
    } else if v == f64::NEG_INFINITY {
        "\"-Inf\"".to_string()
    } else {
        serde_json::json!(v).to_string()
    };
    format!(
        "{{\"labels\":{{{}}},\"t\":{t_ms},\"v\":{v}}}",
        labels.join(",")
    )
}
