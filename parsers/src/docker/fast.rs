//! The docker fast path: the exact shape dockerd writes,
//! `{"log":"...","stream":"stdout|stderr","time":"..."}`, with at most
//! trailing JSON whitespace after the `}`.
//!
//! `None` means "not this shape, or something the general path must judge"
//! (raw control characters, invalid UTF-8, unknown escapes, lone
//! surrogates), never "invalid": the caller then runs the general path, so
//! both paths always agree. The `log` value is borrowed when its only escape
//! is the trailing `\n`; other escapes are unescaped into one allocation.

use std::borrow::Cow;

use memchr::memchr;

use crate::line::{Line, Stream};
use crate::time::parse_rfc3339;

pub(super) fn parse(line: &[u8]) -> Option<Line<'_>> {
    let rest = line.strip_prefix(br#"{"log":""#)?;
    let JsonStr {
        value: message,
        newline,
        rest,
    } = string(rest)?;
    let rest = rest.strip_prefix(br#","stream":""#)?;
    let (stream, rest) = if let Some(r) = rest.strip_prefix(b"stdout") {
        (Stream::Stdout, r)
    } else {
        (Stream::Stderr, rest.strip_prefix(b"stderr")?)
    };
    let rest = rest.strip_prefix(br#"","time":""#)?;
    let q = memchr(b'"', rest)?;
    let tail = rest[q + 1..].strip_prefix(b"}")?;
    if !tail
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    {
        return None;
    }
    let time_nanos = parse_rfc3339(&rest[..q])?;
    Some(Line {
        time_nanos,
        stream,
        partial: !newline,
        message,
    })
}

/// A JSON string value read by [`string`].
struct JsonStr<'a> {
    /// The unescaped value with one trailing `\n` removed.
    value: Cow<'a, [u8]>,
    /// Whether that trailing `\n` was there.
    newline: bool,
    /// The input after the closing quote.
    rest: &'a [u8],
}

/// Reads a JSON string body (input starts after the opening quote).
fn string(s: &[u8]) -> Option<JsonStr<'_>> {
    let mut owned: Option<Vec<u8>> = None;
    let mut pos = 0; // start of the raw run not yet copied into `owned`
    loop {
        // A plain loop beats memchr2 here: escapes are frequent in JSON
        // logs (every quote), and it checks for control characters too.
        let i = pos
            + s[pos..]
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if s[i] < 0x20 {
            return None;
        }
        let closing = s[i] == b'"';
        let newline_then_close = !closing && s.get(i + 1..i + 3) == Some(b"n\"");
        if closing || (newline_then_close && owned.is_none()) {
            // Escapes are ASCII, so validating the whole raw text validates
            // every literal run.
            let raw = &s[..i];
            if std::str::from_utf8(raw).is_err() {
                return None;
            }
            let rest = &s[i + if closing { 1 } else { 3 }..];
            return Some(match owned {
                None => JsonStr {
                    value: Cow::Borrowed(raw),
                    newline: !closing,
                    rest,
                },
                Some(mut v) => {
                    v.extend_from_slice(&s[pos..i]);
                    let newline = v.last() == Some(&b'\n');
                    if newline {
                        v.pop();
                    }
                    JsonStr {
                        value: Cow::Owned(v),
                        newline,
                        rest,
                    }
                }
            });
        }
        let v = owned.get_or_insert_with(|| Vec::with_capacity(s.len()));
        v.extend_from_slice(&s[pos..i]);
        pos = i + 2;
        match *s.get(i + 1)? {
            b'"' => v.push(b'"'),
            b'\\' => v.push(b'\\'),
            b'/' => v.push(b'/'),
            b'b' => v.push(0x08),
            b'f' => v.push(0x0C),
            b'n' => v.push(b'\n'),
            b'r' => v.push(b'\r'),
            b't' => v.push(b'\t'),
            b'u' => {
                let (c, used) = unicode_escape(&s[pos..])?;
                let mut utf8 = [0; 4];
                v.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                pos += used;
            }
            _ => return None,
        }
    }
}

/// Decodes the `XXXX` after `\u` (and a following `\uXXXX` low surrogate
/// when the first is a high surrogate). Returns the char and bytes used.
fn unicode_escape(s: &[u8]) -> Option<(char, usize)> {
    let hi = hex4(s)?;
    match hi {
        0xD800..=0xDBFF => {
            if s.get(4..6)? != b"\\u" {
                return None;
            }
            let lo = hex4(&s[6..])?;
            if !(0xDC00..=0xDFFF).contains(&lo) {
                return None;
            }
            let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
            Some((char::from_u32(c)?, 10))
        }
        0xDC00..=0xDFFF => None,
        _ => Some((char::from_u32(hi)?, 4)),
    }
}

fn hex4(s: &[u8]) -> Option<u32> {
    let digits = s.get(..4)?;
    digits.iter().try_fold(0u32, |acc, &b| {
        let d = (b as char).to_digit(16)?;
        Some(acc * 16 + d)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unescaped(json_body: &str) -> Option<(Vec<u8>, bool, usize)> {
        string(json_body.as_bytes()).map(|j| (j.value.into_owned(), j.newline, j.rest.len()))
    }

    #[test]
    fn plain_and_newline_strings_borrow() {
        let j = string(b"abc\" tail").unwrap();
        assert!(matches!(j.value, Cow::Borrowed(b"abc")));
        assert!(!j.newline);
        assert_eq!(j.rest, b" tail");
        let j = string(b"abc\\n\"x").unwrap();
        assert!(matches!(j.value, Cow::Borrowed(b"abc")));
        assert!(j.newline);
        assert_eq!(j.rest, b"x");
    }

    #[test]
    fn escapes() {
        assert_eq!(
            unescaped(r#"a\"b\\c\/d\be\ff\ng\rh\ti\n""#),
            Some((b"a\"b\\c/d\x08e\x0Cf\ng\rh\ti".to_vec(), true, 0))
        );
        assert_eq!(
            unescaped(r#"caf\u00e9 \u00E9 \ud83d\ude00 \u20ac""#),
            Some(("café é 😀 €".as_bytes().to_vec(), false, 0))
        );
        assert_eq!(unescaped(r#"\n\n""#), Some((b"\n".to_vec(), true, 0)));
        assert_eq!(unescaped(r#"\\n""#), Some((b"\\n".to_vec(), false, 0)));
    }

    #[test]
    fn defers_to_general_path() {
        for body in [
            "unterminated",
            "bad \\x escape\"",
            "lone \\ud83d surrogate\"",
            "lone \\ude00 low\"",
            "short \\u12\"",
            "non-hex \\u12zz\"",
            "raw \u{1} control\"",
            "trailing backslash \\",
        ] {
            assert_eq!(unescaped(body), None, "{body:?}");
        }
        assert!(string(b"caf\xe9\"").is_none());
    }

    #[test]
    fn canonical_line() {
        let l = parse(br#"{"log":"{\"a\":1}\n","stream":"stderr","time":"1970-01-01T00:00:01Z"}"#)
            .unwrap();
        assert_eq!(&*l.message, br#"{"a":1}"#);
        assert!(!l.partial);
        assert_eq!(l.stream, Stream::Stderr);
        assert_eq!(l.time_nanos, 1_000_000_000);
        for other in [
            &br#"{"log":"x\n","stream":"stdout","attrs":{},"time":"1970-01-01T00:00:01Z"}"#[..],
            br#"{"log":"x\n","stream":"stdin","time":"1970-01-01T00:00:01Z"}"#,
            br#"{"log":"x\n","stream":"stdout","time":"1970-01-01T00:00:01Z"} x"#,
            br#"{"log":"x\n","stream":"stdout","time":"yesterday"}"#,
            br#"{"stream":"stdout","log":"x\n","time":"1970-01-01T00:00:01Z"}"#,
        ] {
            assert_eq!(parse(other), None, "{}", String::from_utf8_lossy(other));
        }
    }
}
