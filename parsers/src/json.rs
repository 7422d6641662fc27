//! JSON string escaping, shared by the agent's record encoder and this crate's
//! structured parsers.
//!
//! Every function appends the *content* of a JSON string (no surrounding
//! quotes) to a caller's buffer, in one pass and without allocating when the
//! input is valid UTF-8. All bytes below 0x20 are escaped, so the output never
//! holds a raw control character (records are one JSON document per line).
//!
//! What this module does not do: it does not write quotes, keys or any other
//! JSON syntax, it does not parse or unescape JSON, and it does not escape
//! non-ASCII characters (output is UTF-8).

/// What escaping a byte needs: 0 = copy as is, b'u' = `\u00XX`, else the short escape letter.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = ONES * 0x7f;

/// 0x80 in each byte of `x` that is zero, nothing elsewhere (no borrows between bytes).
fn zero_bytes(x: u64) -> u64 {
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

/// Index of the first byte at or after `from` that a JSON string must escape (`"`,
/// `\`, below 0x20), or `bytes.len()`. Messages are mostly plain text: eight bytes
/// are tested at once (exact per-byte masks, SWAR).
fn next_special(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(word) = bytes.get(i..i + 8) {
        let w = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        let hits = zero_bytes(w & (ONES * 0xe0))
            | zero_bytes(w ^ (ONES * u64::from(b'"')))
            | zero_bytes(w ^ (ONES * u64::from(b'\\')));
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < bytes.len() && ESCAPE[bytes[i] as usize] == 0 {
        i += 1;
    }
    i
}

/// Copies `bytes` to `out`, handing each byte JSON must escape to `escape` (with
/// its [`ESCAPE`] entry) instead of copying it.
#[inline]
fn escape_with(bytes: &[u8], out: &mut Vec<u8>, mut escape: impl FnMut(&mut Vec<u8>, u8, u8)) {
    let mut run = 0;
    let mut i = next_special(bytes, 0);
    while i < bytes.len() {
        out.extend_from_slice(&bytes[run..i]);
        escape(out, bytes[i], ESCAPE[bytes[i] as usize]);
        run = i + 1;
        i = next_special(bytes, run);
    }
    out.extend_from_slice(&bytes[run..]);
}

/// `msg` as text: borrowed when valid UTF-8, else with U+FFFD for what is not
/// (the flag says so).
fn text(msg: &[u8]) -> (std::borrow::Cow<'_, str>, bool) {
    match std::str::from_utf8(msg) {
        Ok(s) => (std::borrow::Cow::Borrowed(s), false),
        Err(_) => (String::from_utf8_lossy(msg), true),
    }
}

/// Appends `s` JSON-escaped (without quotes) to `out`.
pub fn escape_str_into(s: &str, out: &mut Vec<u8>) {
    escape_with(s.as_bytes(), out, |out, b, e| {
        if e == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.push(b'\\');
            out.push(e);
        }
    });
}

/// Appends `msg` JSON-escaped (without quotes), invalid UTF-8 replaced with
/// U+FFFD; returns `true` when invalid UTF-8 had to be replaced.
pub fn escape_bytes_into(msg: &[u8], out: &mut Vec<u8>) -> bool {
    let (s, replaced) = text(msg);
    escape_str_into(&s, out);
    replaced
}

/// Appends `s` escaped twice (without quotes): what escaping `s`, quoting
/// nothing, then escaping the result again gives, in one pass. A record's
/// message takes this form when the record itself travels as a JSON string (a
/// PutLogEvents message). Returns the length of `s` escaped once.
pub fn escape_str_twice_into(s: &str, out: &mut Vec<u8>) -> usize {
    let mut once = s.len();
    escape_with(s.as_bytes(), out, |out, b, e| match e {
        b'u' => {
            // `\u00XX` → `\\u00XX`.
            once += 5;
            out.extend_from_slice(b"\\\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        }
        b'"' | b'\\' => {
            // `\"` → `\\\"`, `\\` → `\\\\`.
            once += 1;
            out.extend_from_slice(b"\\\\\\");
            out.push(e);
        }
        _ => {
            // `\n` → `\\n`.
            once += 1;
            out.extend_from_slice(b"\\\\");
            out.push(e);
        }
    });
    once
}

/// [`escape_str_twice_into`] for bytes, invalid UTF-8 replaced with U+FFFD.
/// Returns whether it was replaced and the length of the text escaped once.
pub fn escape_bytes_twice_into(msg: &[u8], out: &mut Vec<u8>) -> (bool, usize) {
    let (s, replaced) = text(msg);
    (replaced, escape_str_twice_into(&s, out))
}

/// Appends JSON text (such as an encoded record: valid UTF-8, no raw control
/// characters) escaped as a JSON string's content. Only `"` and `\\` need
/// escaping there. Records hold a quote every dozen bytes or so, too often for
/// `memchr`'s per-match cost: eight bytes are tested at once (exact per-byte masks,
/// SWAR) and each match found from its bit. A control byte falls back to
/// [`escape_bytes_into`].
pub fn escape_json_text_into(text: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.reserve(text.len() + text.len() / 8);
    let mut run = 0;
    let mut words = text.chunks_exact(8);
    for (k, word) in words.by_ref().enumerate() {
        let w = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        if zero_bytes(w & (ONES * 0xe0)) != 0 {
            out.truncate(start);
            escape_bytes_into(text, out);
            return;
        }
        let mut hits =
            zero_bytes(w ^ (ONES * u64::from(b'"'))) | zero_bytes(w ^ (ONES * u64::from(b'\\')));
        while hits != 0 {
            let i = k * 8 + (hits.trailing_zeros() / 8) as usize;
            out.extend_from_slice(&text[run..i]);
            out.push(b'\\');
            run = i;
            hits &= hits - 1;
        }
    }
    let tail = text.len() - words.remainder().len();
    for (i, &b) in text.iter().enumerate().skip(tail) {
        match b {
            b'"' | b'\\' => {
                out.extend_from_slice(&text[run..i]);
                out.push(b'\\');
                run = i;
            }
            0..0x20 => {
                out.truncate(start);
                escape_bytes_into(text, out);
                return;
            }
            _ => {}
        }
    }
    out.extend_from_slice(&text[run..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` escaped and quoted, parsed back by serde_json.
    fn round_trip(text: &[u8]) -> (String, bool) {
        let mut out = b"\"".to_vec();
        let replaced = escape_bytes_into(text, &mut out);
        out.push(b'"');
        assert!(out.iter().all(|&b| b >= 0x20), "raw control byte");
        (serde_json::from_slice(&out).expect("valid JSON"), replaced)
    }

    #[test]
    fn strings_round_trip_through_a_json_parser() {
        let msg = "tab\there \"quoted\" back\\slash \u{1} bell\u{7} é 日本 \u{1F600}\r\n";
        assert_eq!(round_trip(msg.as_bytes()), (msg.to_owned(), false));
        assert_eq!(round_trip(b""), (String::new(), false));
    }

    #[test]
    fn every_control_byte_is_escaped() {
        let all: Vec<u8> = (0u8..0x80).collect();
        let (back, replaced) = round_trip(&all);
        assert_eq!(back.as_bytes(), &all[..]);
        assert!(!replaced);
        let mut out = Vec::new();
        escape_str_into("\u{8}\u{c}\u{1f}", &mut out);
        assert_eq!(out, br"\b\f\u001f");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        assert_eq!(
            round_trip(b"ok \xff\xfe end"),
            ("ok \u{FFFD}\u{FFFD} end".to_owned(), true)
        );
    }

    #[test]
    fn record_text_escapes_like_the_general_escaper() {
        for text in [
            &br#"{"log":"say \"hi\" \\ \u0001 \u00e9","stream":"stdout"}"#[..],
            "plain é 日本".as_bytes(),
            b"raw\x01control",
            b"",
        ] {
            let mut fast = Vec::new();
            escape_json_text_into(text, &mut fast);
            let mut general = Vec::new();
            escape_bytes_into(text, &mut general);
            assert_eq!(fast, general, "{:?}", String::from_utf8_lossy(text));
        }
    }

    /// Byte by byte, as the JSON grammar says.
    fn reference(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for c in s.chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                '\u{8}' => out.extend_from_slice(b"\\b"),
                '\u{c}' => out.extend_from_slice(b"\\f"),
                c if (c as u32) < 0x20 => {
                    out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
                }
                c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        out
    }

    #[test]
    fn strings_escape_at_every_offset_and_length() {
        // Word boundaries (8 bytes), the tail, runs of specials, multi-byte characters.
        for len in 0..40 {
            for at in 0..len {
                for special in ["\"", "\\", "\u{1}", "\n", "\u{1f}", "é", "\u{7f}"] {
                    let mut text: Vec<String> = (0..len)
                        .map(|i| ((b'a' + (i % 26) as u8) as char).to_string())
                        .collect();
                    text[at] = special.to_string();
                    if at + 1 < len {
                        text[at + 1] = "\"".into();
                    }
                    let text = text.concat();
                    let mut once = b"prefix".to_vec();
                    escape_str_into(&text, &mut once);
                    assert_eq!(&once[6..], &reference(&text)[..], "{text:?}");
                    let mut twice = b"prefix".to_vec();
                    let n = escape_str_twice_into(&text, &mut twice);
                    assert_eq!(n, once.len() - 6);
                    let mut expect = b"prefix".to_vec();
                    escape_json_text_into(&once[6..], &mut expect);
                    assert_eq!(twice, expect, "{text:?}");
                }
            }
        }
    }

    #[test]
    fn twice_is_escaping_the_escaped_text() {
        let mut inputs: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"plain".to_vec(),
            "say \"hi\" back\\slash é 日本 \u{1F600}\r\n\t\u{8}\u{c}".into(),
            b"ok \xff\xfe end \x01".to_vec(),
        ];
        inputs.push((0u8..=0xff).collect());
        for text in inputs {
            let mut once = Vec::new();
            let replaced = escape_bytes_into(&text, &mut once);
            let mut expect = b"prefix".to_vec();
            escape_json_text_into(&once, &mut expect);
            let mut twice = b"prefix".to_vec();
            let got = escape_bytes_twice_into(&text, &mut twice);
            assert_eq!(twice, expect, "{:?}", String::from_utf8_lossy(&text));
            assert_eq!(got, (replaced, once.len()));
        }
    }

    #[test]
    fn record_text_escapes_at_every_offset_and_length() {
        // Word boundaries (8 bytes), the tail, runs of specials, a control byte anywhere.
        for len in 0..40 {
            for at in 0..len {
                for special in [b'"', b'\\', 0x01, b'\n', 0x1f] {
                    let mut text: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                    text[at] = special;
                    if at + 1 < len {
                        text[at + 1] = b'"';
                    }
                    let mut fast = b"prefix".to_vec();
                    escape_json_text_into(&text, &mut fast);
                    let mut general = b"prefix".to_vec();
                    escape_bytes_into(&text, &mut general);
                    assert_eq!(fast, general, "len {len}, {special:#x} at {at}");
                }
            }
        }
    }
}
