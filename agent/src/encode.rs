//! Record encoding: writes each log record's JSON straight into a batch buffer.
//!
//! The record is the Container Insights shape (see DESIGN.md):
//! `{"log":…,"stream":…,"time":…,"kubernetes":{…}}`. The `kubernetes` object is
//! serialized once per container (`crate::enrich`) and spliced in as bytes;
//! the message is escaped in one pass (with [`kubeship_parsers::json`]). Invalid UTF-8
//! is replaced with U+FFFD.
//!
//! For the CloudWatch sink records are written in [`RecordForm::JsonString`]: the
//! record's JSON escaped as a JSON string's content, the form a PutLogEvents
//! message takes, so the sink copies records into request bodies instead of
//! escaping each one again. The message is then escaped twice in one pass, the
//! `kubernetes` object is escaped once per container, the constant parts are
//! written escaped; each record's length as JSON (what CloudWatch counts) is
//! returned alongside.

use kubeship_parsers::json::escape_bytes_twice_into;
use kubeship_parsers::{Stream, time};

// Re-exported so the rest of the agent keeps one import path for escaping.
pub use kubeship_parsers::json::{escape_bytes_into, escape_json_text_into, escape_str_into};

/// How records are written into batch buffers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecordForm {
    /// The record's JSON (the local sink writes it as a line).
    #[default]
    Json,
    /// The record's JSON escaped as a JSON string's content, without quotes: what
    /// a PutLogEvents body carries as an event's message.
    JsonString,
}

impl RecordForm {
    /// The form the configured sink wants.
    pub fn for_sink(sink: &crate::config::SinkConfig) -> Self {
        match sink {
            crate::config::SinkConfig::Local { .. } => RecordForm::Json,
            crate::config::SinkConfig::CloudWatch(_) => RecordForm::JsonString,
        }
    }
}

/// A piece of JSON prepared once (a container's `kubernetes` object) in the form
/// its records take.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fragment {
    /// The bytes, in `form`.
    pub bytes: Vec<u8>,
    /// Its length as JSON.
    pub json_len: usize,
}

impl Fragment {
    /// `json` (valid JSON text) in `form`.
    pub fn new(json: Vec<u8>, form: RecordForm) -> Self {
        let json_len = json.len();
        let bytes = match form {
            RecordForm::Json => json,
            RecordForm::JsonString => {
                let mut out = Vec::with_capacity(json_len + json_len / 4);
                escape_json_text_into(&json, &mut out);
                out
            }
        };
        Self { bytes, json_len }
    }
}

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
    /// The record's length as JSON (what CloudWatch counts), whatever its form.
    pub json_len: usize,
}

/// One record to encode.
pub struct RecordRef<'a> {
    /// Message bytes (no trailing newline).
    pub message: &'a [u8],
    /// Output stream of the container.
    pub stream: Stream,
    /// Record time, unix nanoseconds.
    pub time_nanos: i64,
    /// The container's precomputed `kubernetes` JSON object, in the record's form.
    pub kubernetes: &'a Fragment,
    /// The app-level parser of the container, if any.
    pub parser: Option<&'a AppParser>,
}

/// Writes a record's parts in one form, counting its JSON length.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    form: RecordForm,
    json_len: usize,
}

impl Writer<'_> {
    /// JSON syntax, given in both forms (`escaped` is `json` escaped; a unit test
    /// checks every pair).
    fn lit(&mut self, json: &[u8], escaped: &[u8]) {
        self.json_len += json.len();
        self.out.extend_from_slice(match self.form {
            RecordForm::Json => json,
            RecordForm::JsonString => escaped,
        });
    }

    /// Bytes that need no escaping in either form.
    fn plain(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        let start = self.out.len();
        f(self.out);
        self.json_len += self.out.len() - start;
    }

    /// A string value's content; true when invalid UTF-8 was replaced.
    fn text(&mut self, msg: &[u8]) -> bool {
        match self.form {
            RecordForm::Json => {
                let start = self.out.len();
                let replaced = escape_bytes_into(msg, self.out);
                self.json_len += self.out.len() - start;
                replaced
            }
            RecordForm::JsonString => {
                let (replaced, once) = escape_bytes_twice_into(msg, self.out);
                self.json_len += once;
                replaced
            }
        }
    }

    /// JSON text written by `f` (in JSON) at the end of the buffer; false (and the
    /// buffer as it was) when `f` returns false.
    fn json(&mut self, f: impl FnOnce(&mut Vec<u8>) -> bool) -> bool {
        let start = self.out.len();
        if !f(self.out) {
            self.out.truncate(start);
            return false;
        }
        self.json_len += self.out.len() - start;
        if self.form == RecordForm::JsonString {
            let json = self.out.split_off(start);
            escape_json_text_into(&json, self.out);
        }
        true
    }
}

/// Appends the record in `form` to `out`.
pub fn encode_record(rec: &RecordRef<'_>, form: RecordForm, out: &mut Vec<u8>) -> Encoded {
    let mut e = Encoded::default();
    let mut w = Writer {
        out,
        form,
        json_len: 0,
    };
    w.lit(br#"{"log":""#, br#"{\"log\":\""#);
    e.replaced = w.text(rec.message);
    match rec.stream {
        Stream::Stdout => w.lit(
            br#"","stream":"stdout","time":""#,
            br#"\",\"stream\":\"stdout\",\"time\":\""#,
        ),
        Stream::Stderr => w.lit(
            br#"","stream":"stderr","time":""#,
            br#"\",\"stream\":\"stderr\",\"time\":\""#,
        ),
    }
    w.plain(|o| time::format_rfc3339_nanos(rec.time_nanos, o));
    w.lit(br#"""#, br#"\""#);
    if let Some(p) = rec.parser {
        let mark = (w.out.len(), w.json_len);
        w.lit(br#","log_processed":"#, br#",\"log_processed\":"#);
        if !w.json(|o| p.parse_into(rec.message, o)) {
            w.out.truncate(mark.0);
            w.json_len = mark.1;
            e.parse_failed = true;
        }
    }
    w.lit(br#","kubernetes":"#, br#",\"kubernetes\":"#);
    w.out.extend_from_slice(&rec.kubernetes.bytes);
    w.json_len += rec.kubernetes.json_len;
    w.lit(b"}", b"}");
    e.json_len = w.json_len;
    e
}

/// Appends a record that is only the log text (`output.event: log`) in `form`,
/// invalid UTF-8 replaced with U+FFFD. Returns whether it was replaced and the
/// text's length.
pub fn encode_text(msg: &[u8], form: RecordForm, out: &mut Vec<u8>) -> (bool, usize) {
    let text = String::from_utf8_lossy(msg);
    match form {
        RecordForm::Json => out.extend_from_slice(text.as_bytes()),
        RecordForm::JsonString => escape_str_into(&text, out),
    }
    (matches!(text, std::borrow::Cow::Owned(_)), text.len())
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

    /// Encodes `rec` in both forms after a prefix; checks that the JSON-string form
    /// is the JSON escaped and that both report the JSON's length. Returns the JSON.
    fn both(rec: &RecordRef<'_>, frag: &[u8]) -> (Vec<u8>, Encoded) {
        let json_frag = Fragment::new(frag.to_vec(), RecordForm::Json);
        let string_frag = Fragment::new(frag.to_vec(), RecordForm::JsonString);
        let mut json = b"prefix".to_vec();
        let e = encode_record(
            &RecordRef {
                kubernetes: &json_frag,
                ..*rec
            },
            RecordForm::Json,
            &mut json,
        );
        let json = json.split_off(6);
        assert_eq!(e.json_len, json.len());
        let mut string = b"prefix".to_vec();
        let e2 = encode_record(
            &RecordRef {
                kubernetes: &string_frag,
                ..*rec
            },
            RecordForm::JsonString,
            &mut string,
        );
        let mut escaped = b"prefix".to_vec();
        escape_json_text_into(&json, &mut escaped);
        assert_eq!(
            String::from_utf8_lossy(&string),
            String::from_utf8_lossy(&escaped)
        );
        assert_eq!(e, e2);
        (json, e)
    }

    fn enc(msg: &[u8]) -> (serde_json::Value, bool) {
        let frag = br#"{"pod_name":"p\"q","host":"node-1","docker_id":""}"#;
        let empty = Fragment::default();
        let (out, e) = both(
            &RecordRef {
                message: msg,
                stream: Stream::Stderr,
                time_nanos: 1_500_000_000_123,
                kubernetes: &empty,
                parser: None,
            },
            frag,
        );
        (
            serde_json::from_slice(&out).expect("valid JSON"),
            e.replaced,
        )
    }

    #[test]
    fn text_only_records_in_both_forms() {
        for (msg, replaced, text) in [
            (&b"say \"hi\"\t\\"[..], false, "say \"hi\"\t\\"),
            (b"bad \xff", true, "bad \u{FFFD}"),
        ] {
            let mut json = b"p".to_vec();
            assert_eq!(
                encode_text(msg, RecordForm::Json, &mut json),
                (replaced, text.len())
            );
            assert_eq!(&json[1..], text.as_bytes());
            let mut string = b"p".to_vec();
            assert_eq!(
                encode_text(msg, RecordForm::JsonString, &mut string),
                (replaced, text.len())
            );
            let quoted = format!("\"{}\"", String::from_utf8_lossy(&string[1..]));
            assert_eq!(serde_json::from_str::<String>(&quoted).unwrap(), text);
        }
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
        let empty = Fragment::default();
        let (out, e) = both(
            &RecordRef {
                message: msg,
                stream: Stream::Stdout,
                time_nanos: 0,
                kubernetes: &empty,
                parser: Some(parser),
            },
            b"{}",
        );
        (serde_json::from_slice(&out).expect("valid JSON"), e)
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
