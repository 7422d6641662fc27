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

/// Appends `s` JSON-escaped (without quotes) to `out`.
pub fn escape_str_into(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let e = ESCAPE[b as usize];
        if e == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        if e == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.push(b'\\');
            out.push(e);
        }
    }
    out.extend_from_slice(&bytes[run..]);
}

/// Appends `msg` JSON-escaped (without quotes), invalid UTF-8 replaced with
/// U+FFFD; returns `true` when invalid UTF-8 had to be replaced.
pub fn escape_bytes_into(msg: &[u8], out: &mut Vec<u8>) -> bool {
    match std::str::from_utf8(msg) {
        Ok(s) => {
            escape_str_into(s, out);
            false
        }
        Err(_) => {
            escape_str_into(&String::from_utf8_lossy(msg), out);
            true
        }
    }
}

/// Appends JSON text (such as an encoded record: valid UTF-8, no raw control
/// characters) escaped as a JSON string's content. Only `"` and `\\` need
/// escaping there, found with `memchr`; anything else falls back to
/// [`escape_bytes_into`].
pub fn escape_json_text_into(text: &[u8], out: &mut Vec<u8>) {
    if !text.iter().all(|&b| b >= 0x20) {
        escape_bytes_into(text, out);
        return;
    }
    let mut run = 0;
    for i in memchr::memchr2_iter(b'"', b'\\', text) {
        out.extend_from_slice(&text[run..i]);
        out.push(b'\\');
        out.push(text[i]);
        run = i + 1;
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
}
