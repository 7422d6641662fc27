//! Record encoding: writes each log record's JSON straight into a batch buffer.
//!
//! The record is the Container Insights shape (see DESIGN.md):
//! `{"log":…,"stream":…,"time":…,"kubernetes":{…}}`. The `kubernetes` object is
//! serialized once per container ([`kubernetes_fragment`]) and spliced in as bytes;
//! the message is escaped in one pass (with [`kubeship_parsers::json`]). Invalid UTF-8
//! is replaced with U+FFFD.

use kubeship_parsers::{Stream, time};

// Re-exported so the rest of the agent keeps one import path for escaping.
pub use kubeship_parsers::json::{escape_bytes_into, escape_json_text_into, escape_str_into};

/// One record to encode.
pub struct RecordRef<'a> {
    /// Message bytes (no trailing newline).
    pub message: &'a [u8],
    /// Output stream of the container.
    pub stream: Stream,
    /// Record time, unix nanoseconds.
    pub time_nanos: i64,
    /// The container's precomputed `kubernetes` JSON object.
    pub kubernetes: &'a [u8],
}

/// Appends the record's JSON to `out`; returns `true` when invalid UTF-8 was replaced.
pub fn encode_record(rec: &RecordRef<'_>, out: &mut Vec<u8>) -> bool {
    out.extend_from_slice(b"{\"log\":\"");
    let replaced = escape_bytes_into(rec.message, out);
    out.extend_from_slice(match rec.stream {
        Stream::Stdout => b"\",\"stream\":\"stdout\",\"time\":\"",
        Stream::Stderr => b"\",\"stream\":\"stderr\",\"time\":\"",
    });
    time::format_rfc3339_nanos(rec.time_nanos, out);
    out.extend_from_slice(b"\",\"kubernetes\":");
    out.extend_from_slice(rec.kubernetes);
    out.push(b'}');
    replaced
}

/// The fields of the `kubernetes` object that the file path tells.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathMeta {
    /// Pod name.
    pub pod_name: String,
    /// Namespace name.
    pub namespace_name: String,
    /// Pod UID (from `/var/log/pods/<ns>_<pod>_<uid>`), empty when unknown.
    pub pod_id: String,
    /// Node name.
    pub host: String,
    /// Container name.
    pub container_name: String,
    /// Container ID (64 hex digits), empty when unknown.
    pub docker_id: String,
}

/// Serializes the `kubernetes` object once per container, in Fluent Bit's field order.
pub fn kubernetes_fragment(meta: &PathMeta) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let fields = [
        ("pod_name", &meta.pod_name),
        ("namespace_name", &meta.namespace_name),
        ("pod_id", &meta.pod_id),
        ("host", &meta.host),
        ("container_name", &meta.container_name),
        ("docker_id", &meta.docker_id),
    ];
    out.push(b'{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b"\":\"");
        escape_str_into(v, &mut out);
        out.push(b'"');
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(msg: &[u8]) -> (serde_json::Value, bool) {
        let meta = PathMeta {
            pod_name: "p\"q".into(),
            namespace_name: "ns".into(),
            host: "node-1".into(),
            ..Default::default()
        };
        let frag = kubernetes_fragment(&meta);
        let mut out = Vec::new();
        let replaced = encode_record(
            &RecordRef {
                message: msg,
                stream: Stream::Stderr,
                time_nanos: 1_500_000_000_123,
                kubernetes: &frag,
            },
            &mut out,
        );
        (serde_json::from_slice(&out).expect("valid JSON"), replaced)
    }

    #[test]
    fn record_round_trips_through_a_json_parser() {
        let msg =
            "tab\there \"quoted\" back\\slash \u{1} bell\u{7} é 日本 \u{1F600}\r\n".as_bytes();
        let (v, replaced) = enc(msg);
        assert!(!replaced);
        assert_eq!(v["log"].as_str().unwrap().as_bytes(), msg);
        assert_eq!(v["stream"], "stderr");
        assert_eq!(v["time"], "1970-01-01T00:25:00.000000123Z");
        assert_eq!(v["kubernetes"]["pod_name"], "p\"q");
        assert_eq!(v["kubernetes"]["host"], "node-1");
        assert_eq!(v["kubernetes"]["docker_id"], "");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let (v, replaced) = enc(b"ok \xff\xfe end");
        assert!(replaced);
        assert_eq!(v["log"], "ok \u{FFFD}\u{FFFD} end");
    }

    #[test]
    fn every_control_byte_is_escaped() {
        let all: Vec<u8> = (0u8..0x80).collect();
        let (v, _) = enc(&all);
        assert_eq!(v["log"].as_str().unwrap().as_bytes(), &all[..]);
    }
}
