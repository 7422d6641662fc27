//! Docker json-file log lines:
//! `{"log":"text\n","stream":"stdout","time":"2026-01-02T03:04:05.123456789Z"}`.
//!
//! Two paths with identical results:
//!
//! * a fast path for the exact shape dockerd writes (`log`, `stream`, `time`
//!   in that order, no `attrs`) with a hand-written unescaper: it borrows the
//!   message when the only escape is the final `\n` and otherwise allocates
//!   exactly one buffer;
//! * a general path through `serde_json` for everything else: keys in any
//!   order, extra keys (such as `attrs`) ignored, escapes unescaped. The
//!   message is still borrowed when the JSON string had no escapes at all.
//!
//! Input that is not valid UTF-8 is retried after
//! `String::from_utf8_lossy` (replacement characters) before giving up.
//! A missing or `null` `log` is treated as `""` (dockerd omits empty values);
//! a missing `stream` or `time` is an error.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, Visitor};

use crate::error::{Error, ErrorKind};
use crate::line::{Line, Stream};
use crate::time::parse_rfc3339;

mod fast;

/// Parses one docker json-file line (without its trailing `\n`).
pub(crate) fn parse(line: &[u8]) -> Result<Line<'_>, Error> {
    if let Some(l) = fast::parse(line) {
        return Ok(l);
    }
    parse_general(line)
}

/// The general path through `serde_json`.
fn parse_general(line: &[u8]) -> Result<Line<'_>, Error> {
    if line.is_empty() || line == b"\r" {
        return Err(ErrorKind::EmptyLine.into());
    }
    match serde_json::from_slice::<Raw<'_>>(line) {
        Ok(raw) => build(raw),
        Err(_) if std::str::from_utf8(line).is_err() => {
            let text = String::from_utf8_lossy(line);
            let raw = serde_json::from_str::<Raw<'_>>(&text)
                .map_err(|_| Error::from(ErrorKind::InvalidJson))?;
            let l = build(raw)?;
            Ok(Line {
                message: Cow::Owned(l.message.into_owned()),
                ..l
            })
        }
        Err(_) => Err(ErrorKind::InvalidJson.into()),
    }
}

fn build(raw: Raw<'_>) -> Result<Line<'_>, Error> {
    let time = raw.time.ok_or(Error::from(ErrorKind::MissingField))?;
    let stream = raw.stream.ok_or(Error::from(ErrorKind::MissingField))?;
    let time_nanos =
        parse_rfc3339(time.0.as_bytes()).ok_or(Error::from(ErrorKind::BadTimestamp))?;
    let stream =
        Stream::from_bytes(stream.0.as_bytes()).ok_or(Error::from(ErrorKind::BadStream))?;
    let log = raw.log.map_or(Cow::Borrowed(""), |s| s.0);
    let partial = !log.ends_with('\n');
    let keep = log.len() - usize::from(!partial);
    let message = match log {
        Cow::Borrowed(s) => Cow::Borrowed(&s.as_bytes()[..keep]),
        Cow::Owned(s) => {
            let mut v = s.into_bytes();
            v.truncate(keep);
            Cow::Owned(v)
        }
    };
    Ok(Line {
        time_nanos,
        stream,
        partial,
        message,
    })
}

/// The keys we read; any other key is skipped.
#[derive(serde::Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    log: Option<Str<'a>>,
    #[serde(borrow)]
    stream: Option<Str<'a>>,
    #[serde(borrow)]
    time: Option<Str<'a>>,
}

/// A JSON string that borrows from the input when it has no escapes.
/// (`Option<Cow<str>>` with `#[serde(borrow)]` would always allocate.)
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_767_323_045_123_456_789;
    const TS: &str = "2026-01-02T03:04:05.123456789Z";

    fn ok(line: &[u8]) -> Line<'_> {
        parse(line).unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(line)))
    }

    fn kind(line: &[u8]) -> ErrorKind {
        parse(line).unwrap_err().kind()
    }

    fn canonical(log: &str, stream: &str) -> String {
        format!(r#"{{"log":"{log}","stream":"{stream}","time":"{TS}"}}"#)
    }

    #[test]
    fn canonical_line_is_zero_copy() {
        let s = canonical(r"hello world\n", "stdout");
        let l = ok(s.as_bytes());
        assert_eq!(l.time_nanos, T);
        assert_eq!(l.stream, Stream::Stdout);
        assert!(!l.partial);
        assert_eq!(&*l.message, b"hello world");
        assert!(matches!(l.message, Cow::Borrowed(_)));
    }

    #[test]
    fn no_trailing_newline_is_partial() {
        let s = canonical("first 16k chunk", "stderr");
        let l = ok(s.as_bytes());
        assert!(l.partial);
        assert_eq!(l.stream, Stream::Stderr);
        assert_eq!(&*l.message, b"first 16k chunk");
        let empty = canonical("", "stdout");
        assert!(ok(empty.as_bytes()).partial);
    }

    #[test]
    fn escapes_are_unescaped() {
        let s = canonical(
            r#"a\tb \"q\" caf\u00e9 \ud83d\ude00 back\\slash\nsecond\n"#,
            "stdout",
        );
        let l = ok(s.as_bytes());
        assert!(!l.partial);
        assert_eq!(
            &*l.message,
            "a\tb \"q\" café 😀 back\\slash\nsecond".as_bytes()
        );
        assert!(matches!(l.message, Cow::Owned(_)));
    }

    #[test]
    fn only_newline_is_empty_full_line() {
        let s = canonical(r"\n", "stdout");
        let l = ok(s.as_bytes());
        assert!(!l.partial);
        assert_eq!(&*l.message, b"");
    }

    #[test]
    fn keys_in_other_order_and_extra_keys() {
        let s = format!(
            r#"{{"time":"{TS}","attrs":{{"tag":"x","n":[1,2]}},"stream":"stderr","log":"hi\n"}}"#
        );
        let l = ok(s.as_bytes());
        assert_eq!(
            (l.time_nanos, l.stream, l.partial),
            (T, Stream::Stderr, false)
        );
        assert_eq!(&*l.message, b"hi");
        // dockerd's own order with attrs between stream and time.
        let s = format!(r#"{{"log":"x\n","stream":"stdout","attrs":{{"a":"b"}},"time":"{TS}"}}"#);
        assert_eq!(&*ok(s.as_bytes()).message, b"x");
    }

    #[test]
    fn general_path_borrows_unescaped_values() {
        let s = format!(r#"{{"stream":"stdout","time":"{TS}","log":"no newline"}}"#);
        let l = ok(s.as_bytes());
        assert!(matches!(l.message, Cow::Borrowed(_)));
        assert!(l.partial);
    }

    #[test]
    fn whitespace_and_cr_tolerated() {
        let s = format!(
            r#" {{ "log" : "x\n" , "stream" : "stdout" , "time" : "{TS}" }}{}"#,
            "\r"
        );
        assert_eq!(&*ok(s.as_bytes()).message, b"x");
        let s = format!("{}\r", canonical(r"y\n", "stdout"));
        assert_eq!(&*ok(s.as_bytes()).message, b"y");
    }

    #[test]
    fn crlf_content_keeps_cr() {
        let s = canonical(r"windows\r\n", "stdout");
        assert_eq!(&*ok(s.as_bytes()).message, b"windows\r");
    }

    #[test]
    fn missing_log_is_empty() {
        let s = format!(r#"{{"stream":"stdout","time":"{TS}"}}"#);
        let l = ok(s.as_bytes());
        assert_eq!(&*l.message, b"");
        assert!(l.partial);
        let s = format!(r#"{{"log":null,"stream":"stdout","time":"{TS}"}}"#);
        assert_eq!(&*ok(s.as_bytes()).message, b"");
    }

    #[test]
    fn invalid_utf8_input_is_replaced() {
        let mut bytes = br#"{"log":"caf"#.to_vec();
        bytes.push(0xE9);
        bytes.extend_from_slice(format!(r#" ok\n","stream":"stdout","time":"{TS}"}}"#).as_bytes());
        let l = ok(&bytes);
        assert_eq!(&*l.message, "caf\u{FFFD} ok".as_bytes());
        assert!(!l.partial);
        assert_eq!(l.time_nanos, T);
    }

    #[test]
    fn errors() {
        assert_eq!(kind(b""), ErrorKind::EmptyLine);
        assert_eq!(kind(b"{"), ErrorKind::InvalidJson);
        assert_eq!(kind(b"not json"), ErrorKind::InvalidJson);
        assert_eq!(kind(b"[1,2]"), ErrorKind::InvalidJson);
        assert_eq!(kind(br#"{"log":"x"} trailing"#), ErrorKind::InvalidJson);
        assert_eq!(kind(b"{\"log\":\"x\xff"), ErrorKind::InvalidJson);
        let s = format!(r#"{{"log":5,"stream":"stdout","time":"{TS}"}}"#);
        assert_eq!(kind(s.as_bytes()), ErrorKind::InvalidJson);
        assert_eq!(
            kind(br#"{"log":"x\n","stream":"stdout"}"#),
            ErrorKind::MissingField
        );
        let s = format!(r#"{{"log":"x\n","time":"{TS}"}}"#);
        assert_eq!(kind(s.as_bytes()), ErrorKind::MissingField);
        assert_eq!(
            kind(br#"{"log":"x\n","stream":"stdout","time":"2026-02-30T00:00:00Z"}"#),
            ErrorKind::BadTimestamp
        );
        assert_eq!(
            kind(br#"{"log":"x\n","stream":"stdout","time":17}"#),
            ErrorKind::InvalidJson
        );
        assert_eq!(
            kind(canonical(r"x\n", "console").as_bytes()),
            ErrorKind::BadStream
        );
    }

    #[test]
    fn fast_and_general_paths_agree() {
        let logs = [
            r"plain\n",
            "plain",
            "",
            r"\n",
            r"tab\tin\n",
            r#"quote\"in\n"#,
            r"x\n\n",
            r"x\ny",
            r"\\n",
            "caf\u{e9}\\n",
            "\u{1F600}",
            r"caf\u00e9\n",
            r"\ud83d\ude00 smile\n",
            r"lone \ud83d",
            r"lone \udc00\n",
            r"a\/b\b\f\r\n",
            r"bad \q escape",
            r#"{\"level\":\"info\",\"msg\":\"ok\"}\n"#,
        ];
        let mut fast_hits = 0;
        let times = [
            TS,
            "2026-01-02T03:04:05+01:00",
            "bad",
            "2026-01-02T03:04:05.1Z",
        ];
        for log in logs {
            for stream in ["stdout", "stderr", "stdin"] {
                for time in times {
                    let s = format!(r#"{{"log":"{log}","stream":"{stream}","time":"{time}"}}"#);
                    let general = parse_general(s.as_bytes());
                    if let Some(quick) = fast::parse(s.as_bytes()) {
                        fast_hits += 1;
                        assert_eq!(Ok(quick), general, "{s}");
                    }
                    assert_eq!(parse(s.as_bytes()), general, "{s}");
                }
            }
        }
        // 15 logs the fast path takes x 2 streams x 3 valid times.
        assert_eq!(fast_hits, 90);
        // Raw control characters are invalid JSON on both paths.
        let s = canonical("a\u{1}b", "stdout");
        assert!(fast::parse(s.as_bytes()).is_none());
        assert_eq!(kind(s.as_bytes()), ErrorKind::InvalidJson);
    }
}
