//! Record encoding: writes each log record's JSON straight into a batch buffer.
//!
//! The record is the Container Insights shape (see DESIGN.md):
//! `{"log":…,"stream":…,"time":…,"kubernetes":{…}}`. The `kubernetes` object is
//! serialized once per container (`crate::logs::enrich`) and spliced in as bytes;
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

use crate::logs::metrics::ParserKind;
use crate::logs::sink::cloudwatch::limits::MAX_EVENT_BYTES;

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
    /// Which parser it is (the `parser` label of `kubeship_log_parse_failures_total`).
    pub fn kind(&self) -> ParserKind {
        match self {
            AppParser::Json => ParserKind::Json,
            AppParser::Logfmt => ParserKind::Logfmt,
            AppParser::Regex(_) => ParserKind::Regex,
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

/// Appended to a `log` cut so that its record fits one CloudWatch event.
pub const TRUNCATED_MARKER: &str = "…[truncated by kubeship]";

/// The field a reduced record carries: which of its parts were left out to bound it
/// (`log_processed`, `kubernetes`, comma-separated).
pub const REDUCED_FIELD: &str = "kubeship_reduced";

/// What encoding a record ran into.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Invalid UTF-8 was replaced.
    pub replaced: bool,
    /// The app-level parser did not parse the message (it went out raw only).
    pub parse_failed: bool,
    /// `log_processed` was left out: larger than its bound, or than what one event
    /// leaves beside the rest of the record.
    pub processed_dropped: bool,
    /// The `kubernetes` object was reduced: its labels and annotations left out by
    /// the enricher (larger than their bound), or the whole object left out (the rest
    /// of the record would not fit one event beside it).
    pub kubernetes_reduced: bool,
    /// `log` was cut (with [`TRUNCATED_MARKER`]) so the record fits one event.
    pub log_cut: bool,
    /// The record's length as JSON (what CloudWatch counts), whatever its form.
    pub json_len: usize,
    /// The record was written without its end: the `kubernetes` object and the
    /// closing `}` ([`RecordRef::kubernetes_apart`]).
    pub kubernetes_apart: bool,
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
    /// Largest `log_processed` object, as JSON; a larger one is left out.
    pub max_processed: usize,
    /// The `kubernetes` object lacks its labels and annotations (too large).
    pub kubernetes_reduced: bool,
    /// Leave the record's end out (the `kubernetes` object and the closing `}`): the
    /// batch holds the container's shared object once instead of a copy per record,
    /// and the sink writes it after the record's bytes. A reduced record is written
    /// whole ([`Encoded::kubernetes_apart`] says which).
    pub kubernetes_apart: bool,
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

/// Appends the record in `form` to `out`. Every part of it is bounded: the message
/// by the reader (`max_record_bytes`), `log_processed` by `rec.max_processed` (left
/// out, marked in [`REDUCED_FIELD`], when larger), and the whole record by one
/// CloudWatch event ([`MAX_EVENT_BYTES`] as JSON): a record larger than that is
/// written again in a reduced form ([`encode_reduced`]), whatever its content.
pub fn encode_record(rec: &RecordRef<'_>, form: RecordForm, out: &mut Vec<u8>) -> Encoded {
    let start = out.len();
    let e = encode_full(rec, form, out);
    if e.json_len <= MAX_EVENT_BYTES {
        return e;
    }
    out.truncate(start);
    encode_reduced(rec, form, out, e)
}

/// [`encode_record`] without the event bound.
fn encode_full(rec: &RecordRef<'_>, form: RecordForm, out: &mut Vec<u8>) -> Encoded {
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
        let object = w.json_len;
        if !w.json(|o| p.parse_into(rec.message, o)) {
            w.out.truncate(mark.0);
            w.json_len = mark.1;
            e.parse_failed = true;
        } else if w.json_len - object > rec.max_processed {
            w.out.truncate(mark.0);
            w.json_len = mark.1;
            e.processed_dropped = true;
        }
    }
    e.kubernetes_reduced = rec.kubernetes_reduced;
    match (e.processed_dropped, e.kubernetes_reduced) {
        (false, false) => {}
        (true, false) => w.lit(
            br#","kubeship_reduced":"log_processed""#,
            br#",\"kubeship_reduced\":\"log_processed\""#,
        ),
        (false, true) => w.lit(
            br#","kubeship_reduced":"kubernetes""#,
            br#",\"kubeship_reduced\":\"kubernetes\""#,
        ),
        (true, true) => w.lit(
            br#","kubeship_reduced":"log_processed,kubernetes""#,
            br#",\"kubeship_reduced\":\"log_processed,kubernetes\""#,
        ),
    }
    w.lit(br#","kubernetes":"#, br#",\"kubernetes\":"#);
    w.json_len += rec.kubernetes.json_len;
    if rec.kubernetes_apart {
        w.json_len += 1;
        e.kubernetes_apart = true;
    } else {
        w.out.extend_from_slice(&rec.kubernetes.bytes);
        w.lit(b"}", b"}");
    }
    e.json_len = w.json_len;
    e
}

/// Rewrites a record whose JSON is larger than one event ([`MAX_EVENT_BYTES`]) so
/// that it fits, whatever its content: `log_processed` is left out when the rest of
/// the record would not fit beside it, the `kubernetes` object too when even that is
/// not enough (it cannot be, with the enricher's bound on it; kept as a last resort),
/// both named in [`REDUCED_FIELD`]; then `log` is cut between characters and escape
/// sequences to the room left, marked with [`TRUNCATED_MARKER`]. Rare, so it builds
/// the record as JSON in a scratch buffer first and escapes it afterwards when `form`
/// asks for that. `full` is what the full encoding found.
fn encode_reduced(
    rec: &RecordRef<'_>,
    form: RecordForm,
    out: &mut Vec<u8>,
    full: Encoded,
) -> Encoded {
    let mut e = Encoded {
        json_len: 0,
        ..full
    };
    let mut log = Vec::new();
    escape_bytes_into(rec.message, &mut log);
    let mut head = Vec::with_capacity(64);
    head.extend_from_slice(match rec.stream {
        Stream::Stdout => br#"","stream":"stdout","time":""#,
        Stream::Stderr => br#"","stream":"stderr","time":""#,
    });
    time::format_rfc3339_nanos(rec.time_nanos, &mut head);
    head.push(b'"');
    let mut processed = Vec::new();
    if !full.processed_dropped
        && !full.parse_failed
        && let Some(p) = rec.parser
    {
        processed.extend_from_slice(br#","log_processed":"#);
        p.parse_into(rec.message, &mut processed);
    }
    let kubernetes = fragment_json(rec.kubernetes);
    let fixed = br#"{"log":""#.len() + head.len() + TRUNCATED_MARKER.len() + 1;
    let marker_len = br#","kubeship_reduced":"log_processed,kubernetes""#.len();
    let kube_len = br#","kubernetes":"#.len() + kubernetes.len();
    let mut rest = fixed + marker_len + kube_len;
    if rest + processed.len() > MAX_EVENT_BYTES {
        e.processed_dropped |= !processed.is_empty();
        processed.clear();
    }
    let kube_dropped = rest > MAX_EVENT_BYTES;
    if kube_dropped {
        e.kubernetes_reduced = true;
        rest -= kube_len;
    }
    let room = MAX_EVENT_BYTES.saturating_sub(rest + processed.len());
    let cut = escaped_boundary(&log, room);
    let mut json = Vec::with_capacity(MAX_EVENT_BYTES);
    json.extend_from_slice(br#"{"log":""#);
    json.extend_from_slice(&log[..cut]);
    if cut < log.len() {
        e.log_cut = true;
        json.extend_from_slice(TRUNCATED_MARKER.as_bytes());
    }
    json.extend_from_slice(&head);
    json.extend_from_slice(&processed);
    let reduced: Vec<&str> = [
        (e.processed_dropped, "log_processed"),
        (e.kubernetes_reduced, "kubernetes"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    if !reduced.is_empty() {
        json.extend_from_slice(format!(r#","{REDUCED_FIELD}":"{}""#, reduced.join(",")).as_bytes());
    }
    if !kube_dropped {
        json.extend_from_slice(br#","kubernetes":"#);
        json.extend_from_slice(&kubernetes);
    }
    json.push(b'}');
    debug_assert!(json.len() <= MAX_EVENT_BYTES, "{}", json.len());
    e.json_len = json.len();
    e.kubernetes_apart = false;
    match form {
        RecordForm::Json => out.extend_from_slice(&json),
        RecordForm::JsonString => escape_json_text_into(&json, out),
    }
    e
}

/// A fragment's JSON, unescaped when it is held as a JSON string's content.
fn fragment_json(f: &Fragment) -> std::borrow::Cow<'_, [u8]> {
    if f.bytes.len() == f.json_len {
        // Nothing was escaped: the same bytes in either form.
        return std::borrow::Cow::Borrowed(&f.bytes);
    }
    let mut quoted = Vec::with_capacity(f.bytes.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(&f.bytes);
    quoted.push(b'"');
    match serde_json::from_slice::<String>(&quoted) {
        Ok(json) => std::borrow::Cow::Owned(json.into_bytes()),
        // Escaped by `Fragment::new`: it cannot fail to unescape.
        Err(_) => std::borrow::Cow::Borrowed(b"{}"),
    }
}

/// The largest cut ≤ `max` of escaped JSON string content that splits neither an
/// escape sequence nor a character.
pub fn escaped_boundary(s: &[u8], max: usize) -> usize {
    let mut i = 0;
    while i < s.len() {
        let step = match s[i] {
            b'\\' if s.get(i + 1) == Some(&b'u') => 6,
            b'\\' => 2,
            b if b >= 0xf0 => 4,
            b if b >= 0xe0 => 3,
            b if b >= 0xc0 => 2,
            _ => 1,
        };
        if i + step > max {
            break;
        }
        i += step;
    }
    i
}

/// What [`encode_text`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodedText {
    /// Invalid UTF-8 was replaced.
    pub replaced: bool,
    /// The text was cut (with [`TRUNCATED_MARKER`]) to fit one event.
    pub cut: bool,
    /// The text's length (what CloudWatch counts).
    pub len: usize,
}

/// Appends a record that is only the log text (`output.event: log`) in `form`,
/// invalid UTF-8 replaced with U+FFFD (which may make it up to three times longer
/// than the bytes read), cut between characters to fit one event.
pub fn encode_text(msg: &[u8], form: RecordForm, out: &mut Vec<u8>) -> EncodedText {
    let text = String::from_utf8_lossy(msg);
    let replaced = matches!(text, std::borrow::Cow::Owned(_));
    let (text, cut) = if text.len() > MAX_EVENT_BYTES {
        let mut at = MAX_EVENT_BYTES - TRUNCATED_MARKER.len();
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        (
            std::borrow::Cow::Owned(format!("{}{TRUNCATED_MARKER}", &text[..at])),
            true,
        )
    } else {
        (text, false)
    };
    match form {
        RecordForm::Json => out.extend_from_slice(text.as_bytes()),
        RecordForm::JsonString => escape_str_into(&text, out),
    }
    EncodedText {
        replaced,
        cut,
        len: text.len(),
    }
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
                max_processed: 1 << 20,
                kubernetes_reduced: false,
                kubernetes_apart: false,
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
                EncodedText {
                    replaced,
                    cut: false,
                    len: text.len()
                }
            );
            assert_eq!(&json[1..], text.as_bytes());
            let mut string = b"p".to_vec();
            assert_eq!(
                encode_text(msg, RecordForm::JsonString, &mut string),
                EncodedText {
                    replaced,
                    cut: false,
                    len: text.len()
                }
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
                max_processed: 1 << 20,
                kubernetes_reduced: false,
                kubernetes_apart: false,
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

    /// Encodes `msg` as a record of a container with `parser`, a `kubernetes` object of
    /// `frag`, in both forms (checked equal); returns the JSON, parsed, and what it found.
    fn reduced(
        msg: &[u8],
        parser: Option<&AppParser>,
        max_processed: usize,
        frag: &[u8],
    ) -> (Vec<u8>, serde_json::Value, Encoded) {
        let empty = Fragment::default();
        let (out, e) = both(
            &RecordRef {
                message: msg,
                stream: Stream::Stdout,
                time_nanos: 1_700_000_000_000_000_000,
                kubernetes: &empty,
                parser,
                max_processed,
                kubernetes_reduced: false,
                kubernetes_apart: false,
            },
            frag,
        );
        let v = serde_json::from_slice(&out).expect("valid JSON");
        (out, v, e)
    }

    #[test]
    fn log_processed_larger_than_its_bound_is_left_out_and_marked() {
        let msg = format!("level=info msg={}", "x".repeat(500));
        let (_, v, e) = reduced(msg.as_bytes(), Some(&AppParser::Logfmt), 100, b"{}");
        assert!(e.processed_dropped && !e.log_cut && !e.parse_failed);
        assert!(v.get("log_processed").is_none());
        assert_eq!(v[REDUCED_FIELD], "log_processed");
        assert_eq!(v["log"], msg.as_str());
        let (_, v, e) = reduced(msg.as_bytes(), Some(&AppParser::Logfmt), 600, b"{}");
        assert!(!e.processed_dropped);
        assert_eq!(v["log_processed"]["level"], "info");
        assert!(v.get(REDUCED_FIELD).is_none());
    }

    /// Regression (a poison record wedged the CloudWatch sink for the whole node): a
    /// logfmt line of 200,000 control bytes made `log_processed` alone larger than one
    /// event once escaped (six bytes each), so no cut of `log` could fit the record.
    #[test]
    fn a_logfmt_line_of_control_bytes_fits_one_event() {
        let mut msg = b"level=info msg=\"".to_vec();
        msg.extend(std::iter::repeat_n(1u8, 200_000));
        msg.extend_from_slice(b"\" seq=x");
        let (out, v, e) = reduced(
            &msg,
            Some(&AppParser::Logfmt),
            262_144,
            br#"{"pod_name":"p"}"#,
        );
        assert!(out.len() <= MAX_EVENT_BYTES, "{}", out.len());
        assert_eq!(e.json_len, out.len());
        assert!(e.processed_dropped && e.log_cut);
        assert_eq!(v[REDUCED_FIELD], "log_processed");
        assert_eq!(v["kubernetes"]["pod_name"], "p");
        let log = v["log"].as_str().unwrap();
        let kept = log.strip_suffix(TRUNCATED_MARKER).expect("marked");
        assert!(msg.starts_with(kept.as_bytes()));
        assert!(
            kept.len() > 100_000,
            "not cut more than needed: {}",
            kept.len()
        );
    }

    #[test]
    fn a_record_larger_than_an_event_keeps_what_fits_and_cuts_log() {
        // log_processed within its bound, but beside the log the record is too large:
        // the parsed fields stay, the log is cut.
        let mut msg = b"msg=\"".to_vec();
        msg.extend(std::iter::repeat_n(1u8, 120_000));
        msg.push(b'"');
        let (out, v, e) = reduced(&msg, Some(&AppParser::Logfmt), MAX_EVENT_BYTES, b"{}");
        assert!(out.len() <= MAX_EVENT_BYTES);
        assert!(e.log_cut && !e.processed_dropped);
        assert_eq!(v["log_processed"]["msg"].as_str().unwrap().len(), 120_000);
        assert!(v.get(REDUCED_FIELD).is_none());
        // Fields keep their order.
        let text = String::from_utf8(out).unwrap();
        let order: Vec<usize> = [
            "\"log\"",
            "\"stream\"",
            "\"time\"",
            "\"log_processed\"",
            "\"kubernetes\"",
        ]
        .iter()
        .map(|k| text.find(k).unwrap())
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        // A kubernetes object too large for any event (the enricher bounds it; the
        // encoder copes anyway) is left out, marked.
        let big = format!(r#"{{"labels":{{"a":"{}"}}}}"#, "\\u0001".repeat(200_000));
        let (out, v, e) = reduced(b"short", None, 1 << 20, big.as_bytes());
        assert!(out.len() <= MAX_EVENT_BYTES);
        assert!(e.kubernetes_reduced);
        assert_eq!(v[REDUCED_FIELD], "kubernetes");
        assert!(v.get("kubernetes").is_none());
        assert_eq!(v["log"], "short");
    }

    #[test]
    fn log_only_text_is_cut_to_one_event() {
        // Invalid bytes become U+FFFD, three bytes each: three times the bytes read.
        let msg = vec![0xffu8; 500_000];
        for form in [RecordForm::Json, RecordForm::JsonString] {
            let mut out = Vec::new();
            let t = encode_text(&msg, form, &mut out);
            assert!(t.replaced && t.cut);
            assert!(t.len <= MAX_EVENT_BYTES);
            let text = match form {
                RecordForm::Json => String::from_utf8(out).unwrap(),
                RecordForm::JsonString => {
                    serde_json::from_slice::<String>(&[b"\"", &out[..], b"\""].concat()).unwrap()
                }
            };
            assert_eq!(text.len(), t.len);
            assert!(text.ends_with(TRUNCATED_MARKER));
        }
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        /// Bytes that JSON must escape, or that are not UTF-8, mixed with plain text.
        fn message() -> impl Strategy<Value = Vec<u8>> {
            let unit = prop_oneof![
                Just(b"a".to_vec()),
                Just(b"\"".to_vec()),
                Just(b"\\".to_vec()),
                Just(vec![1u8]),
                Just(vec![0xffu8]),
                Just("é".as_bytes().to_vec()),
                Just(b" k=v".to_vec()),
            ];
            (
                unit,
                0usize..400_000,
                prop::collection::vec(any::<u8>(), 0..64),
            )
                .prop_map(|(unit, n, tail)| {
                    let mut m = b"msg=\"".to_vec();
                    m.extend(unit.iter().cycle().take(n));
                    m.extend_from_slice(b"\" ");
                    m.extend(tail);
                    m
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]

            /// Whatever the message, parser, bound and metadata size, a record is valid
            /// JSON of at most one event, its JSON length is reported exactly, both forms
            /// agree, and what was cut or left out is marked and flagged.
            #[test]
            fn every_record_fits_one_event(
                msg in message(),
                parser in 0usize..3,
                max_processed in prop_oneof![Just(1024usize), Just(262_144), Just(MAX_EVENT_BYTES)],
                labels in 0usize..300_000,
            ) {
                let frag = format!(r#"{{"pod_name":"p","labels":{{"k":"{}"}}}}"#, "\\u0001".repeat(labels / 6));
                let p = [None, Some(AppParser::Logfmt), Some(AppParser::Json)];
                let (out, v, e) = reduced(&msg, p[parser].as_ref(), max_processed, frag.as_bytes());
                prop_assert!(out.len() <= MAX_EVENT_BYTES, "{} bytes", out.len());
                prop_assert_eq!(e.json_len, out.len());
                let log = v["log"].as_str().unwrap();
                let lossy = String::from_utf8_lossy(&msg);
                match log.strip_suffix(TRUNCATED_MARKER) {
                    Some(kept) if e.log_cut => prop_assert!(lossy.starts_with(kept)),
                    _ => prop_assert_eq!(log, &*lossy),
                }
                let marker = v.get(REDUCED_FIELD).and_then(|m| m.as_str()).unwrap_or("");
                prop_assert_eq!(marker.contains("log_processed"), e.processed_dropped);
                prop_assert_eq!(marker.contains("kubernetes"), e.kubernetes_reduced);
                prop_assert_eq!(v.get("kubernetes").is_some(), !e.kubernetes_reduced);
                if let Some(lp) = v.get("log_processed") {
                    prop_assert!(serde_json::to_vec(lp).unwrap().len() <= max_processed);
                }
            }
        }
    }
}
