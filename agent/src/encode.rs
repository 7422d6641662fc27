//! Record encoding: writes each log record's JSON straight into a batch buffer.
//!
//! The record is the Container Insights shape (see DESIGN.md):
//! `{"log":…,"stream":…,"time":…,"kubernetes":{…}}`. The `kubernetes` object is
//! serialized once per container (`crate::enrich`) and spliced in as bytes;
//! the message is escaped in one pass (with [`kubeship_parsers::json`]). Invalid UTF-8
//! is replaced with U+FFFD.

use kubeship_parsers::{Stream, time};

// Re-exported so the rest of the agent keeps one import path for escaping.
pub use kubeship_parsers::json::{escape_bytes_into, escape_json_text_into, escape_str_into};

/// An app-level parser a pod asked for (`kubeship.io/parser`): its fields go
/// under `log_processed`, next to the raw `log`.
#[derive(Clone, Debug)]
pub enum AppParser {
    /// The message is a JSON object.
    Json,
    /// The message is logfmt (`key=value key2="quoted value"`).
    Logfmt,
    /// Named capture groups of a `logs.parsers` regex.
    Regex(regex::bytes::Regex),
}

impl AppParser {
    /// The `parser` labels of `kubeship_log_parse_failures_total`, by [`AppParser::index`].
    pub const LABELS: [&'static str; 3] = ["json", "logfmt", "regex"];

    /// This parser's place in [`AppParser::LABELS`] (and in per-parser counters).
    pub fn index(&self) -> usize {
        match self {
            AppParser::Json => 0,
            AppParser::Logfmt => 1,
            AppParser::Regex(_) => 2,
        }
    }

    /// Appends the message's fields as a JSON object; false (and `out` as it
    /// was) when the message does not parse.
    pub fn parse_into(&self, msg: &[u8], out: &mut Vec<u8>) -> bool {
        use kubeship_parsers::structured;
        match self {
            AppParser::Json => structured::json_object_into(msg, out),
            AppParser::Logfmt => structured::logfmt_into(msg, out),
            AppParser::Regex(re) => structured::regex_into(re, msg, out),
        }
    }
}

/// What encoding a record ran into.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Invalid UTF-8 was replaced.
    pub replaced: bool,
    /// The app-level parser did not parse the message (it went out raw only).
    pub parse_failed: bool,
}

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
    /// The app-level parser of the container, if any.
    pub parser: Option<&'a AppParser>,
}

/// Appends the record's JSON to `out`.
pub fn encode_record(rec: &RecordRef<'_>, out: &mut Vec<u8>) -> Encoded {
    let mut e = Encoded::default();
    out.extend_from_slice(b"{\"log\":\"");
    e.replaced = escape_bytes_into(rec.message, out);
    out.extend_from_slice(match rec.stream {
        Stream::Stdout => b"\",\"stream\":\"stdout\",\"time\":\"",
        Stream::Stderr => b"\",\"stream\":\"stderr\",\"time\":\"",
    });
    time::format_rfc3339_nanos(rec.time_nanos, out);
    out.push(b'"');
    if let Some(p) = rec.parser {
        let mark = out.len();
        out.extend_from_slice(b",\"log_processed\":");
        if !p.parse_into(rec.message, out) {
            out.truncate(mark);
            e.parse_failed = true;
        }
    }
    out.extend_from_slice(b",\"kubernetes\":");
    out.extend_from_slice(rec.kubernetes);
    out.push(b'}');
    e
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

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(msg: &[u8]) -> (serde_json::Value, bool) {
        let frag = br#"{"pod_name":"p\"q","host":"node-1","docker_id":""}"#;
        let mut out = Vec::new();
        let replaced = encode_record(
            &RecordRef {
                message: msg,
                stream: Stream::Stderr,
                time_nanos: 1_500_000_000_123,
                kubernetes: frag,
                parser: None,
            },
            &mut out,
        )
        .replaced;
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

    fn encode_parsed(parser: &AppParser, msg: &[u8]) -> (serde_json::Value, Encoded) {
        let mut out = b"prefix".to_vec();
        let e = encode_record(
            &RecordRef {
                message: msg,
                stream: Stream::Stdout,
                time_nanos: 0,
                kubernetes: b"{}",
                parser: Some(parser),
            },
            &mut out,
        );
        assert!(out.starts_with(b"prefix"));
        (serde_json::from_slice(&out[6..]).expect("valid JSON"), e)
    }

    #[test]
    fn parsed_fields_go_under_log_processed_next_to_the_raw_log() {
        let msg = br#"{"level":"info","n":3}"#;
        let (v, e) = encode_parsed(&AppParser::Json, msg);
        assert!(!e.parse_failed);
        assert_eq!(v["log"].as_str().unwrap().as_bytes(), msg);
        assert_eq!(
            v["log_processed"],
            serde_json::json!({"level": "info", "n": 3})
        );
        let (v, _) = encode_parsed(&AppParser::Logfmt, b"level=warn msg=\"disk full\"");
        assert_eq!(v["log_processed"]["msg"], "disk full");
        let re = regex::bytes::Regex::new(r"^(?P<status>\d{3}) (?P<path>\S+)$").unwrap();
        let (v, _) = encode_parsed(&AppParser::Regex(re), b"404 /missing");
        assert_eq!(
            v["log_processed"],
            serde_json::json!({"status": "404", "path": "/missing"})
        );
    }

    #[test]
    fn a_line_that_does_not_parse_ships_raw_and_is_reported() {
        for p in [AppParser::Json, AppParser::Logfmt] {
            let (v, e) = encode_parsed(&p, b"plain text, no structure");
            assert!(e.parse_failed, "{p:?}");
            assert!(v.get("log_processed").is_none());
            assert_eq!(v["log"], "plain text, no structure");
            assert_eq!(v["kubernetes"], serde_json::json!({}));
        }
    }
}
