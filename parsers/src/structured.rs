//! App-level structured parsing: a message the pod asked to have parsed (by
//! annotation) turned into a JSON object, which the agent merges into the
//! record as `log_processed` next to the raw `log` (as Fluent Bit's
//! `Merge_Log` does).
//!
//! Three parsers, each appending the object's JSON text to the caller's
//! buffer (the agent writes records straight into a batch buffer) and
//! returning whether the message had that shape:
//!
//! * [`json_object_into`]: the message is a JSON object. Copied as is when it
//!   is already one line; re-serialized compactly otherwise (see below).
//! * [`logfmt_into`]: `key=value key2="quoted value"` pairs (the go-logfmt /
//!   Heroku grammar), as an object of strings.
//! * [`regex_into`]: a regex's named captures, as an object of strings.
//!
//! Guarantees, whatever the input: on `true` the appended bytes are one JSON
//! object that strict parsers (serde_json into a map) accept, with no raw
//! control character (records are one JSON document per line) and invalid
//! UTF-8 replaced with U+FFFD; on `false`, `out` is exactly as it was.
//!
//! Duplicate keys: a JSON object's keys are kept as given, duplicates
//! included (JSON allows them; most readers keep the last). logfmt writes a
//! repeated key once, with its last value, at its last position.
//!
//! Allocation: a logfmt line of up to 32 pairs allocates nothing beyond the
//! growth of `out`; a JSON object allocates only serde_json's scratch buffer,
//! and only when a string holds a backslash escape (no `Value` tree is
//! built); a regex match allocates its captures.
//!
//! What this module does not do: it does not pick a parser (the caller does,
//! from the pod's annotation), type logfmt or regex values (they stay
//! strings), take the record's time or level from the message, or flatten
//! nested JSON.

mod logfmt;
mod object;

use regex::bytes::Regex;

use crate::json::{escape_bytes_into, escape_str_into};

/// Appends `msg` as a compact JSON object when it is one (leading/trailing
/// ASCII whitespace ignored); false and `out` untouched otherwise.
///
/// Only objects count: arrays, scalars, and an object followed by anything
/// but whitespace are rejected. Text without bytes below 0x20 is validated
/// and copied as is (spacing, escapes, number spelling and duplicate keys
/// unchanged); text with tabs or newlines between tokens (a pretty-printed
/// object joined by multiline grouping) is re-serialized compactly, keys in
/// their original order. Strings must not hold lone surrogate escapes and
/// numbers must fit an `f64`, as serde_json requires; nesting is limited to
/// serde_json's 128 levels.
pub fn json_object_into(msg: &[u8], out: &mut Vec<u8>) -> bool {
    object::append(msg, out)
}

/// Appends the logfmt pairs of `msg` as a JSON object of strings; false and
/// `out` untouched when it is not logfmt.
///
/// Grammar (go-logfmt's, slightly more lenient): pairs are separated by runs
/// of bytes `<= b' '`; a key is a run of bytes above `b' '` other than `=`
/// and `"`; then `=value` (a run of bytes above `b' '`, which may contain
/// `=` and `"`), `="quoted value"` (escapes `\"` `\\` `\/` `\b` `\f` `\n`
/// `\r` `\t` `\uXXXX`; any other backslash is kept literally; the closing
/// quote must be followed by whitespace or the end), `=` alone (empty
/// value), or nothing (a bare key, whose value is `""` as in go-logfmt and
/// Loki, not Fluent Bit's boolean `true`, since values stay strings).
///
/// Not logfmt: a line without a single `=`-pair (plain text, only spaces,
/// empty), `=` or `"` where a key should start (`=value`, `"quoted"`), a key
/// followed by `"`, an unterminated quote, or bytes right after a closing
/// quote. A key given more than once keeps its last value.
pub fn logfmt_into(msg: &[u8], out: &mut Vec<u8>) -> bool {
    logfmt::append(msg, out)
}

/// Appends the named captures of `re` on `msg` as a JSON object of strings
/// (groups that did not take part are left out); false and `out` untouched
/// when it does not match.
///
/// The regex is searched for anywhere in `msg` (anchor it with `^…$` to match
/// the whole message); the first match counts. A regex without named groups
/// gives `{}` when it matches.
pub fn regex_into(re: &Regex, msg: &[u8], out: &mut Vec<u8>) -> bool {
    let Some(caps) = re.captures(msg) else {
        return false;
    };
    out.push(b'{');
    let mut first = true;
    for (name, group) in re.capture_names().zip(caps.iter()) {
        let (Some(name), Some(group)) = (name, group) else {
            continue;
        };
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        escape_str_into(name, out);
        out.extend_from_slice(b"\":\"");
        escape_bytes_into(group.as_bytes(), out);
        out.push(b'"');
    }
    out.push(b'}');
    true
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::*;

    /// Runs `f` after a prefix already in `out`; checks the prefix survives and
    /// `out` is untouched on failure; returns the appended object, if any.
    pub(super) fn run(
        f: impl Fn(&[u8], &mut Vec<u8>) -> bool,
        msg: &[u8],
    ) -> Option<Map<String, Value>> {
        let mut out = b"prefix".to_vec();
        if !f(msg, &mut out) {
            assert_eq!(out, b"prefix", "out changed on failure");
            return None;
        }
        let appended = out.strip_prefix(b"prefix").expect("prefix kept");
        assert!(appended.iter().all(|&b| b >= 0x20), "raw control byte");
        Some(serde_json::from_slice(appended).expect("a JSON object"))
    }

    fn regex(re: &str, msg: &[u8]) -> Option<Value> {
        let re = Regex::new(re).unwrap();
        run(|m, out| regex_into(&re, m, out), msg).map(Value::Object)
    }

    #[test]
    fn regex_named_captures_become_strings() {
        let re = r"^(?P<ip>\S+) (?<method>[A-Z]+) (?P<path>\S+)(?: (?<status>\d+))?$";
        assert_eq!(
            regex(re, b"10.0.0.1 GET /index.html 200"),
            Some(
                json!({"ip": "10.0.0.1", "method": "GET", "path": "/index.html", "status": "200"})
            )
        );
        assert_eq!(
            regex(re, b"10.0.0.1 GET /x"),
            Some(json!({"ip": "10.0.0.1", "method": "GET", "path": "/x"})),
            "a group that did not take part is left out"
        );
        assert_eq!(regex(re, b"no match here"), None);
    }

    #[test]
    fn regex_values_are_escaped_and_repaired() {
        assert_eq!(
            regex(r"(?s-u)^(?P<all>.*)$", b"tab\t\"q\" \\ nl\n bad\xff \x01"),
            Some(json!({"all": "tab\t\"q\" \\ nl\n bad\u{FFFD} \u{1}"}))
        );
        assert_eq!(regex(r"x(y)", b"axyb"), Some(json!({})));
        assert_eq!(regex(r"(?P<e>)", b""), Some(json!({"e": ""})));
        let huge = "é".repeat(100_000);
        assert_eq!(
            regex(r"(?P<v>.+)", huge.as_bytes()),
            Some(json!({ "v": huge }))
        );
    }
}
