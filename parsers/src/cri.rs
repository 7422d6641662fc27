//! CRI log lines (containerd, CRI-O): `<RFC3339Nano> <stdout|stderr> <tags> <message>`.
//!
//! `tags` is `P` (partial) or `F` (full); future runtimes may send several
//! `:`-separated tags (`F:x`), of which the first decides. The message is
//! everything after the single space following the tags, kept byte-for-byte
//! (it may be empty, contain spaces and tabs, or be invalid UTF-8). A line
//! that ends right after the tags (`... stdout F`) has an empty message.
//!
//! Zero-copy: the returned [`Line`] borrows its message from the input.

use std::borrow::Cow;

use memchr::memchr;

use crate::error::{Error, ErrorKind};
use crate::line::{Line, Stream};
use crate::time::parse_rfc3339;

/// Parses one CRI line (without its trailing `\n`).
pub(crate) fn parse(line: &[u8]) -> Result<Line<'_>, Error> {
    if line.is_empty() || line == b"\r" {
        return Err(ErrorKind::EmptyLine.into());
    }
    let missing = || Error::from(ErrorKind::MissingField);

    let ts_end = memchr(b' ', line).ok_or_else(missing)?;
    let (ts, rest) = (&line[..ts_end], &line[ts_end + 1..]);
    let stream_end = memchr(b' ', rest).ok_or_else(missing)?;
    let (stream, rest) = (&rest[..stream_end], &rest[stream_end + 1..]);
    if rest.is_empty() {
        return Err(missing());
    }
    let (tags, message) = match memchr(b' ', rest) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &rest[rest.len()..]),
    };

    let time_nanos = parse_rfc3339(ts).ok_or(Error::from(ErrorKind::BadTimestamp))?;
    let stream = Stream::from_bytes(stream).ok_or(Error::from(ErrorKind::BadStream))?;
    let first_tag = match memchr(b':', tags) {
        Some(i) => &tags[..i],
        None => tags,
    };
    let partial = match first_tag {
        b"P" => true,
        b"F" => false,
        _ => return Err(ErrorKind::BadTag.into()),
    };
    Ok(Line {
        time_nanos,
        stream,
        partial,
        message: Cow::Borrowed(message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_767_323_045_123_456_789;

    fn ok(line: &[u8]) -> Line<'_> {
        parse(line).unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(line)))
    }

    fn kind(line: &[u8]) -> ErrorKind {
        parse(line).unwrap_err().kind()
    }

    #[test]
    fn full_stdout_line() {
        let l = ok(b"2026-01-02T03:04:05.123456789Z stdout F hello world");
        assert_eq!(l.time_nanos, T);
        assert_eq!(l.stream, Stream::Stdout);
        assert!(!l.partial);
        assert_eq!(&*l.message, b"hello world");
        assert!(matches!(l.message, Cow::Borrowed(_)));
    }

    #[test]
    fn partial_stderr_line() {
        let l = ok(b"2026-01-02T03:04:05.123456789Z stderr P first piece ");
        assert_eq!(l.stream, Stream::Stderr);
        assert!(l.partial);
        assert_eq!(&*l.message, b"first piece ");
    }

    #[test]
    fn offset_timestamp() {
        let l = ok(b"2026-01-02T05:04:05.123456789+02:00 stdout F x");
        assert_eq!(l.time_nanos, T);
    }

    #[test]
    fn empty_messages() {
        let with_space = ok(b"2026-01-02T03:04:05.123456789Z stdout F ");
        assert_eq!(&*with_space.message, b"");
        let without_space = ok(b"2026-01-02T03:04:05.123456789Z stderr P");
        assert_eq!(&*without_space.message, b"");
        assert!(without_space.partial);
    }

    #[test]
    fn message_keeps_spaces_tabs_and_cr() {
        let l = ok(b"2026-01-02T03:04:05Z stdout F   \tindented  text\t \r");
        assert_eq!(&*l.message, b"  \tindented  text\t \r");
    }

    #[test]
    fn message_keeps_json_and_colons() {
        let l = ok(br#"2026-01-02T03:04:05Z stdout F {"level":"info","msg":"a b"}"#);
        assert_eq!(&*l.message, br#"{"level":"info","msg":"a b"}"#);
    }

    #[test]
    fn invalid_utf8_kept_as_is() {
        let l = ok(b"2026-01-02T03:04:05Z stdout F caf\xe9 \xff\xfe end");
        assert_eq!(&*l.message, b"caf\xe9 \xff\xfe end");
    }

    #[test]
    fn multi_tag_field() {
        assert!(!ok(b"2026-01-02T03:04:05Z stdout F:x msg").partial);
        assert!(ok(b"2026-01-02T03:04:05Z stdout P:foo:bar msg").partial);
        assert_eq!(&*ok(b"2026-01-02T03:04:05Z stdout F:x msg").message, b"msg");
    }

    #[test]
    fn empty_line() {
        assert_eq!(kind(b""), ErrorKind::EmptyLine);
        assert_eq!(kind(b"\r"), ErrorKind::EmptyLine);
    }

    #[test]
    fn missing_fields() {
        assert_eq!(kind(b"2026-01-02T03:04:05Z"), ErrorKind::MissingField);
        assert_eq!(
            kind(b"2026-01-02T03:04:05Z stdout"),
            ErrorKind::MissingField
        );
        assert_eq!(
            kind(b"2026-01-02T03:04:05Z stdout "),
            ErrorKind::MissingField
        );
        assert_eq!(kind(b"garbage"), ErrorKind::MissingField);
    }

    #[test]
    fn bad_timestamp() {
        assert_eq!(
            kind(b"2026-13-02T03:04:05Z stdout F x"),
            ErrorKind::BadTimestamp
        );
        assert_eq!(kind(b"yesterday stdout F x"), ErrorKind::BadTimestamp);
        assert_eq!(kind(b" stdout F x"), ErrorKind::BadTimestamp);
        assert_eq!(
            kind(b"hello world, this is plain text"),
            ErrorKind::BadTimestamp
        );
    }

    #[test]
    fn bad_stream() {
        assert_eq!(
            kind(b"2026-01-02T03:04:05Z stdin F x"),
            ErrorKind::BadStream
        );
        assert_eq!(
            kind(b"2026-01-02T03:04:05Z STDOUT F x"),
            ErrorKind::BadStream
        );
        assert_eq!(
            kind(b"2026-01-02T03:04:05Z  stdout F x"),
            ErrorKind::BadStream
        );
    }

    #[test]
    fn bad_tag() {
        assert_eq!(
            kind(b"2026-01-02T03:04:05Z stdout X msg"),
            ErrorKind::BadTag
        );
        assert_eq!(
            kind(b"2026-01-02T03:04:05Z stdout p msg"),
            ErrorKind::BadTag
        );
        assert_eq!(
            kind(b"2026-01-02T03:04:05Z stdout FP msg"),
            ErrorKind::BadTag
        );
        assert_eq!(
            kind(b"2026-01-02T03:04:05Z stdout :F msg"),
            ErrorKind::BadTag
        );
        assert_eq!(kind(b"2026-01-02T03:04:05Z stdout  msg"), ErrorKind::BadTag);
    }
}
