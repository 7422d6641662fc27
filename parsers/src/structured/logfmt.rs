//! [`logfmt_into`](super::logfmt_into): splits a line into `key=value` pairs,
//! then writes them as a JSON object of strings.
//!
//! Two steps so that a line which turns out not to be logfmt leaves the
//! output untouched: the whole line is split first (pairs borrowed from it,
//! up to [`INLINE`] of them in a stack array), then written. A key given more
//! than once is written once, at its last position with its last value.

use std::cmp::Ordering;

use memchr::{memchr, memchr2};

use crate::json::escape_bytes_into;

/// Pairs kept on the stack; longer lines spill to one `Vec`.
const INLINE: usize = 32;

/// One pair, borrowed from the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pair<'a> {
    key: &'a [u8],
    value: Value<'a>,
}

/// A pair's value as written in the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value<'a> {
    /// A bare key, no `=`: the value is `""`.
    Bare,
    /// `key=value` or `key=` (empty).
    Plain(&'a [u8]),
    /// `key="..."`: the text between the quotes, escapes not yet decoded.
    Quoted(&'a [u8]),
}

impl Pair<'_> {
    const EMPTY: Pair<'static> = Pair {
        key: b"",
        value: Value::Bare,
    };
}

/// The line is not logfmt.
#[derive(Debug, PartialEq, Eq)]
struct NotLogfmt;

/// See [`logfmt_into`](super::logfmt_into).
pub(super) fn append(msg: &[u8], out: &mut Vec<u8>) -> bool {
    let mut inline = [Pair::EMPTY; INLINE];
    let mut spilled = Vec::new();
    let mut count = 0;
    let mut has_value = false;
    let mut pairs = Pairs { line: msg, pos: 0 };
    while let Some(pair) = pairs.next_pair() {
        let Ok(pair) = pair else {
            return false;
        };
        has_value |= pair.value != Value::Bare;
        if count < INLINE {
            inline[count] = pair;
        } else {
            if count == INLINE {
                spilled.extend_from_slice(&inline);
            }
            spilled.push(pair);
        }
        count += 1;
    }
    if !has_value {
        return false;
    }
    if count <= INLINE {
        let pairs = &inline[..count];
        let overridden = |i: usize| pairs[i + 1..].iter().any(|p| same_key(p.key, pairs[i].key));
        write(pairs, overridden, out);
    } else {
        let overridden = overridden_by_sorting(&spilled);
        write(&spilled, |i| overridden[i], out);
    }
    true
}

/// Writes the pairs not `overridden` as a JSON object.
fn write(pairs: &[Pair<'_>], overridden: impl Fn(usize) -> bool, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut first = true;
    for (i, pair) in pairs.iter().enumerate() {
        if overridden(i) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        escape_bytes_into(pair.key, out);
        out.extend_from_slice(b"\":\"");
        match pair.value {
            Value::Bare => {}
            Value::Plain(v) => {
                escape_bytes_into(v, out);
            }
            Value::Quoted(v) => unquote_into(v, out),
        }
        out.push(b'"');
    }
    out.push(b'}');
}

/// For many pairs: which ones a later pair with the same key overrides, in
/// O(n log n) rather than comparing every pair with every later one.
fn overridden_by_sorting(pairs: &[Pair<'_>]) -> Vec<bool> {
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by(|&a, &b| cmp_keys(pairs[a].key, pairs[b].key).then(a.cmp(&b)));
    let mut overridden = vec![false; pairs.len()];
    for w in order.windows(2) {
        overridden[w[0]] = same_key(pairs[w[0]].key, pairs[w[1]].key);
    }
    overridden
}

/// Whether two keys are the same once invalid UTF-8 is replaced (`a\xff` and
/// `a\xfe` both become `a\u{FFFD}`).
fn same_key(a: &[u8], b: &[u8]) -> bool {
    a == b || (!a.is_ascii() && !b.is_ascii() && cmp_keys(a, b) == Ordering::Equal)
}

/// Orders keys by their text with invalid UTF-8 replaced, without allocating.
fn cmp_keys(a: &[u8], b: &[u8]) -> Ordering {
    fn chars(key: &[u8]) -> impl Iterator<Item = char> + '_ {
        key.utf8_chunks().flat_map(|chunk| {
            let bad = (!chunk.invalid().is_empty()).then_some(char::REPLACEMENT_CHARACTER);
            chunk.valid().chars().chain(bad)
        })
    }
    chars(a).cmp(chars(b))
}

/// Splits a line into pairs.
struct Pairs<'a> {
    line: &'a [u8],
    pos: usize,
}

impl<'a> Pairs<'a> {
    /// The next pair, `None` at the end of the line.
    fn next_pair(&mut self) -> Option<Result<Pair<'a>, NotLogfmt>> {
        let line = self.line;
        self.skip(|b| b <= b' ');
        if self.pos == line.len() {
            return None;
        }
        let start = self.pos;
        self.skip(|b| b > b' ' && b != b'=' && b != b'"');
        let key = &line[start..self.pos];
        if key.is_empty() {
            return Some(Err(NotLogfmt)); // `=` or `"` where a key should start
        }
        let value = match line.get(self.pos) {
            None => Value::Bare,
            Some(&b) if b <= b' ' => Value::Bare,
            Some(b'=') => {
                self.pos += 1;
                match self.value() {
                    Ok(value) => value,
                    Err(e) => return Some(Err(e)),
                }
            }
            Some(_) => return Some(Err(NotLogfmt)), // `key"`
        };
        Some(Ok(Pair { key, value }))
    }

    /// The value after `=`.
    fn value(&mut self) -> Result<Value<'a>, NotLogfmt> {
        let line = self.line;
        if line.get(self.pos) != Some(&b'"') {
            let start = self.pos;
            self.skip(|b| b > b' ');
            return Ok(Value::Plain(&line[start..self.pos]));
        }
        let start = self.pos + 1;
        let mut at = start;
        loop {
            let found = memchr2(b'"', b'\\', line.get(at..).unwrap_or_default());
            let i = at + found.ok_or(NotLogfmt)?; // unterminated
            if line[i] == b'\\' {
                at = i + 2; // the escaped byte cannot close the quote
                continue;
            }
            self.pos = i + 1;
            if line.get(self.pos).is_some_and(|&b| b > b' ') {
                return Err(NotLogfmt); // `key="x"y`
            }
            return Ok(Value::Quoted(&line[start..i]));
        }
    }

    fn skip(&mut self, take: impl Fn(u8) -> bool) {
        let rest = &self.line[self.pos..];
        self.pos += rest.iter().position(|&b| !take(b)).unwrap_or(rest.len());
    }
}

/// Appends a quoted value's text JSON-escaped, its logfmt escapes decoded.
/// `text` never ends inside an escape (the splitter skips escaped bytes).
fn unquote_into(text: &[u8], out: &mut Vec<u8>) {
    let mut run = 0;
    let mut at = 0;
    while let Some(found) = memchr(b'\\', &text[at..]) {
        let i = at + found;
        escape_bytes_into(&text[run..i], out);
        let (escape, len): (&[u8], usize) = match text[i + 1] {
            b'"' => (b"\\\"", 2),
            b'\\' => (b"\\\\", 2),
            b'/' => (b"/", 2),
            b'b' => (b"\\b", 2),
            b'f' => (b"\\f", 2),
            b'n' => (b"\\n", 2),
            b'r' => (b"\\r", 2),
            b't' => (b"\\t", 2),
            b'u' => match unicode_escape(&text[i..]) {
                Some(len) => (&text[i..i + len], len),
                None if hex4(&text[i..]).is_some() => (b"\\ufffd", 6), // lone surrogate
                None => (b"\\\\", 1),
            },
            // Unknown escape: the backslash is kept, the next byte is text.
            _ => (b"\\\\", 1),
        };
        out.extend_from_slice(escape);
        run = i + len;
        at = i + len.max(2);
    }
    escape_bytes_into(&text[run..], out);
}

/// The length of a `\uXXXX` escape at the start of `s` that JSON accepts as
/// is: 6 for a character outside the surrogates, 12 for a surrogate pair.
fn unicode_escape(s: &[u8]) -> Option<usize> {
    let unit = hex4(s)?;
    if !(0xD800..0xE000).contains(&unit) {
        return Some(6);
    }
    let low = hex4(s.get(6..)?)?;
    ((0xD800..0xDC00).contains(&unit) && (0xDC00..0xE000).contains(&low)).then_some(12)
}

/// The code unit of a `\uXXXX` escape at the start of `s`.
fn hex4(s: &[u8]) -> Option<u32> {
    let digits = s.strip_prefix(b"\\u")?.get(..4)?;
    let digits = std::str::from_utf8(digits).ok()?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None; // from_str_radix would accept a sign
    }
    u32::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::logfmt_into;
    use super::super::tests::run;
    use super::*;

    fn parse(msg: &[u8]) -> Option<serde_json::Value> {
        run(logfmt_into, msg).map(serde_json::Value::Object)
    }

    /// The exact text appended.
    fn text(msg: &[u8]) -> String {
        let mut out = Vec::new();
        assert!(logfmt_into(msg, &mut out), "{msg:?}");
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn pairs_become_an_object_of_strings() {
        assert_eq!(
            parse(br#"a=1 b="x y" c"#),
            Some(json!({"a": "1", "b": "x y", "c": ""}))
        );
        assert_eq!(
            text(br#"level=info msg="GET /x" status=200 dur=1.5ms"#),
            r#"{"level":"info","msg":"GET /x","status":"200","dur":"1.5ms"}"#,
            "in line order"
        );
        assert_eq!(
            parse(b"\t a=  b=\"\"\t c=3 \r"),
            Some(json!({"a": "", "b": "", "c": "3"})),
            "any bytes <= ' ' separate; `key=` and `key=\"\"` are empty"
        );
        assert_eq!(parse(b"k=v"), Some(json!({"k": "v"})));
    }

    #[test]
    fn bare_keys_are_empty_strings() {
        assert_eq!(parse(b"a=1 debug"), Some(json!({"a": "1", "debug": ""})));
        assert_eq!(parse(b"debug a=1"), Some(json!({"debug": "", "a": "1"})));
    }

    #[test]
    fn quoted_values_decode_escapes() {
        assert_eq!(
            parse(br#"m="say \"hi\" \\ \/ a\nb\tc\rd \b\f""#),
            Some(json!({"m": "say \"hi\" \\ / a\nb\tc\rd \u{8}\u{c}"}))
        );
        assert_eq!(
            parse(br#"m="\u00e9 \u001b \uD83D\uDE00 \u0000""#),
            Some(json!({"m": "é \u{1b} \u{1F600} \u{0}"}))
        );
        assert_eq!(
            parse(br#"m="\ud800 \udc00x \ud800\u0041""#),
            Some(json!({"m": "\u{FFFD} \u{FFFD}x \u{FFFD}A"})),
            "lone surrogates are replaced"
        );
        assert_eq!(
            parse(br#"m="\q \u12 \uzzzz \u+123 end\\""#),
            Some(json!({"m": "\\q \\u12 \\uzzzz \\u+123 end\\"})),
            "unknown escapes keep their backslash"
        );
        assert_eq!(
            parse(b"m=\"tab\there\nraw\" x=\"=\""),
            Some(json!({"m": "tab\there\nraw", "x": "="})),
            "raw control bytes inside quotes are escaped"
        );
    }

    #[test]
    fn unquoted_values_run_to_whitespace() {
        assert_eq!(
            parse(br#"url=http://h/p?a=b&c="d" x=y"#),
            Some(json!({"url": "http://h/p?a=b&c=\"d\"", "x": "y"}))
        );
        assert_eq!(parse(b"a==b"), Some(json!({"a": "=b"})));
        assert_eq!(parse(b"it's=ok"), Some(json!({"it's": "ok"})));
    }

    #[test]
    fn last_duplicate_wins() {
        assert_eq!(text(b"a=1 b=2 a=3"), r#"{"b":"2","a":"3"}"#);
        assert_eq!(text(b"a a=1 a=\"\""), r#"{"a":""}"#);
        assert_eq!(
            text(b"k\xff=1 k\xfe=2"),
            "{\"k\u{FFFD}\":\"2\"}",
            "keys equal once repaired are duplicates"
        );
        assert_eq!(text(b"k\xef\xbf\xbd=1 k\xfe=2"), "{\"k\u{FFFD}\":\"2\"}");
    }

    #[test]
    fn many_pairs_spill_and_still_dedupe() {
        let mut line = String::new();
        for i in 0..1000 {
            line.push_str(&format!("k{}={i} ", i % 300));
        }
        let v = parse(line.as_bytes()).unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 300);
        assert_eq!(obj["k0"], "900");
        assert_eq!(obj["k99"], "999");
        assert_eq!(obj["k100"], "700");
        let out = text(line.as_bytes());
        assert!(
            out.starts_with(r#"{"k100":"700","k101":"701""#),
            "{}",
            &out[..40]
        );
        let exactly_inline: String = (0..INLINE).map(|i| format!("k{i}=v ")).collect();
        assert_eq!(
            parse(exactly_inline.as_bytes())
                .unwrap()
                .as_object()
                .unwrap()
                .len(),
            INLINE
        );
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(
            parse(b"k\xff=v\xfe q=\"\xc3(\\n\""),
            Some(json!({"k\u{FFFD}": "v\u{FFFD}", "q": "\u{FFFD}(\n"}))
        );
    }

    #[test]
    fn huge_values_survive() {
        let v = "é\"x".repeat(100_000);
        let quoted = v.replace('"', "\\\"");
        let line = format!("a=1 big=\"{quoted}\" z");
        assert_eq!(
            parse(line.as_bytes()),
            Some(json!({"a": "1", "big": v, "z": ""}))
        );
    }

    #[test]
    fn what_is_not_logfmt() {
        for msg in [
            &b""[..],
            b"    ",
            b"\t\r\n",
            b"plain text without pairs",
            b"=value",
            b"a=1 =value",
            b"\"quoted\"",
            b"a=1 \"quoted\"",
            b"a\"b=c",
            b"a=\"unterminated",
            b"a=\"escaped end\\\"",
            b"a=\"ends in backslash\\",
            b"a=\"x\"trailing",
            b"a=\"x\"\"y\"",
        ] {
            assert_eq!(parse(msg), None, "{:?}", String::from_utf8_lossy(msg));
        }
    }

    #[test]
    fn splitting_borrows_from_the_line() {
        let mut pairs = Pairs {
            line: br#" a=1  b="x\"y" c "#,
            pos: 0,
        };
        let mut got = Vec::new();
        while let Some(pair) = pairs.next_pair() {
            got.push(pair.unwrap());
        }
        assert_eq!(
            got,
            [
                Pair {
                    key: b"a",
                    value: Value::Plain(b"1")
                },
                Pair {
                    key: b"b",
                    value: Value::Quoted(br#"x\"y"#)
                },
                Pair {
                    key: b"c",
                    value: Value::Bare
                },
            ]
        );
    }
}
