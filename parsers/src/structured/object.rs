//! [`json_object_into`](super::json_object_into): validates a JSON object with
//! serde_json and copies it, or re-serializes it when it spans lines.
//!
//! One serde visitor, [`Transcode`], does both jobs: without a buffer it only
//! lets serde_json check the text (strings, escapes and numbers decoded as
//! strictly as when building a `serde_json::Value`, but nothing built); with
//! a buffer it also writes each token compactly as it is visited. Both paths
//! thus accept exactly the same objects.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::Serialize;

use crate::json::escape_str_into;

/// See [`json_object_into`](super::json_object_into).
pub(super) fn append(msg: &[u8], out: &mut Vec<u8>) -> bool {
    let trimmed = msg.trim_ascii();
    if trimmed.first() != Some(&b'{') {
        return false;
    }
    let text: Cow<'_, str> = String::from_utf8_lossy(trimmed);
    if text.bytes().all(|b| b >= 0x20) {
        if !walk(&text, None) {
            return false;
        }
        out.extend_from_slice(text.as_bytes());
        return true;
    }
    let len = out.len();
    if walk(&text, Some(out)) {
        return true;
    }
    out.truncate(len);
    false
}

/// Whether `text` is one JSON value and nothing else; writes it compactly to
/// `out` (possibly in part when it is not) when given.
fn walk(text: &str, out: Option<&mut Vec<u8>>) -> bool {
    let mut de = serde_json::Deserializer::from_str(text);
    Transcode { out }.deserialize(&mut de).is_ok() && de.end().is_ok()
}

/// Visits one JSON value, writing it compactly when `out` is set.
struct Transcode<'o> {
    out: Option<&'o mut Vec<u8>>,
}

impl Transcode<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if let Some(out) = self.out.as_deref_mut() {
            out.extend_from_slice(bytes);
        }
    }

    /// Where the output ends, to take back a separator with [`Self::cut`].
    fn mark(&self) -> usize {
        self.out.as_deref().map_or(0, Vec::len)
    }

    fn cut(&mut self, mark: usize) {
        if let Some(out) = self.out.as_deref_mut() {
            out.truncate(mark);
        }
    }

    /// A visitor for a nested value, writing to the same buffer.
    fn nested(&mut self) -> Transcode<'_> {
        Transcode {
            out: self.out.as_deref_mut(),
        }
    }

    /// Numbers are written the way serde_json writes them (`1.0`, `1e+300`).
    fn number<E: de::Error>(self, n: impl Serialize) -> Result<(), E> {
        match self.out {
            Some(out) => serde_json::to_writer(out, &n).map_err(E::custom),
            None => Ok(()),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Transcode<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Transcode<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<(), E> {
        self.put(if v { b"true" } else { b"false" });
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.number(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.number(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.number(v)
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        if let Some(out) = self.out.as_deref_mut() {
            out.push(b'"');
            escape_str_into(v, out);
            out.push(b'"');
        }
        Ok(())
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.put(b"null");
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.put(b"[");
        let mut first = true;
        loop {
            let mark = self.mark();
            if !first {
                self.put(b",");
            }
            if seq.next_element_seed(self.nested())?.is_none() {
                self.cut(mark);
                break;
            }
            first = false;
        }
        self.put(b"]");
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.put(b"{");
        let mut first = true;
        loop {
            let mark = self.mark();
            if !first {
                self.put(b",");
            }
            if map.next_key_seed(self.nested())?.is_none() {
                self.cut(mark);
                break;
            }
            self.put(b":");
            map.next_value_seed(self.nested())?;
            first = false;
        }
        self.put(b"}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::json_object_into;
    use super::super::tests::run;

    fn parse(msg: &[u8]) -> Option<Value> {
        run(json_object_into, msg).map(Value::Object)
    }

    /// The exact text appended, for checks on copying vs re-serializing.
    fn text(msg: &[u8]) -> String {
        let mut out = Vec::new();
        assert!(json_object_into(msg, &mut out), "{msg:?}");
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn one_line_objects_are_copied_as_is() {
        let line = r#"{"level": "info", "msg":"say \"hi\"\n", "n":[1,2.5,-3e2,null,true], "é":{"日本":"\u00e9"}}"#;
        assert_eq!(text(line.as_bytes()), line);
        assert_eq!(
            parse(line.as_bytes()),
            Some(
                json!({"level": "info", "msg": "say \"hi\"\n", "n": [1, 2.5, -300.0, null, true], "é": {"日本": "é"}})
            )
        );
        assert_eq!(text(b"{}"), "{}");
        assert_eq!(
            text(b"  \r{\"a\":1}  \r"),
            "{\"a\":1}",
            "outer whitespace trimmed"
        );
        let big = "123456789012345678901234567890";
        assert_eq!(
            text(format!("{{\"n\":{big}}}").as_bytes()),
            format!("{{\"n\":{big}}}")
        );
    }

    #[test]
    fn multi_line_objects_are_reserialized_compactly() {
        let pretty =
            "{\n\t\"b\": [ 1, {\"c\" : \"x\\ty\"} ],\n\t\"a\": 1.0,\n\t\"e\": {}, \"f\": [] \n}\n";
        assert_eq!(
            text(pretty.as_bytes()),
            r#"{"b":[1,{"c":"x\ty"}],"a":1.0,"e":{},"f":[]}"#,
            "keys stay in order"
        );
        assert_eq!(text(b"{\n}"), "{}");
        assert_eq!(
            text(b"{\"u\":\"\\ud83d\\ude00\",\n\"big\":1e300}"),
            "{\"u\":\"\u{1F600}\",\"big\":1e+300}"
        );
    }

    #[test]
    fn duplicate_keys_are_kept_as_given() {
        assert_eq!(text(br#"{"a":1,"a":2}"#), r#"{"a":1,"a":2}"#);
        assert_eq!(text(b"{\"a\":1,\n\"a\":2}"), r#"{"a":1,"a":2}"#);
        assert_eq!(parse(br#"{"a":1,"a":2}"#), Some(json!({"a": 2})));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(
            parse(b"{\"k\xff\":\"v\xfe\"}"),
            Some(json!({"k\u{FFFD}": "v\u{FFFD}"}))
        );
        assert_eq!(
            parse(b"{\"k\":\n\"v\xfe\"}"),
            Some(json!({"k": "v\u{FFFD}"}))
        );
        assert_eq!(parse(b"{\"k\":1}\xff"), None);
    }

    #[test]
    fn only_objects_count() {
        for msg in [
            &b""[..],
            b"   ",
            b"[1,2]",
            b"\"{}\"",
            b"42",
            b"null",
            b"{",
            b"{ not json",
            b"{\"a\":1}}",
            b"{\"a\":1} trailing",
            b"{\"a\":1}{\"b\":2}",
            b"{\"a\":1,}",
            b"{'a':1}",
            b"{a:1}",
            b"x {\"a\":1}",
        ] {
            assert_eq!(parse(msg), None, "{:?}", String::from_utf8_lossy(msg));
        }
    }

    #[test]
    fn strictly_invalid_objects_are_rejected_on_both_paths() {
        for msg in [
            &br#"{"s":"\ud800"}"#[..],
            br#"{"s":"\udc00x"}"#,
            br#"{"n":1e400}"#,
            br#"{"s":"bad \x escape"}"#,
            b"{\"s\":\"raw\ttab\"}",
            b"{\"s\":\"raw\nnewline\"}",
        ] {
            assert_eq!(parse(msg), None, "{:?}", String::from_utf8_lossy(msg));
            let mut spread = msg.to_vec();
            spread.insert(1, b'\n');
            assert_eq!(
                parse(&spread),
                None,
                "{:?}",
                String::from_utf8_lossy(&spread)
            );
        }
    }

    #[test]
    fn nesting_is_limited() {
        let deep = |n: usize| format!("{{\"a\":{}0{}}}", "[".repeat(n), "]".repeat(n));
        assert!(parse(deep(100).as_bytes()).is_some());
        assert_eq!(parse(deep(1000).as_bytes()), None);
        assert_eq!(parse(format!("\n{}", deep(1000)).as_bytes()), None);
    }

    #[test]
    fn huge_values_survive() {
        let v = "x\"é\t".repeat(100_000);
        let msg = serde_json::to_vec(&json!({ "v": v })).unwrap();
        assert_eq!(parse(&msg), Some(json!({ "v": v })));
    }
}
