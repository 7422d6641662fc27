//! Record encoding: writes each log record's JSON straight into a batch buffer.
//!
//! The record is the Container Insights shape (see DESIGN.md):
//! `{"log":…,"stream":…,"time":…,"kubernetes":{…}}`. The `kubernetes` object is
//! serialized once per container ([`kubernetes_fragment`]) and spliced in as bytes;
//! the message is escaped in one pass. Invalid UTF-8 is replaced with U+FFFD.

use kubeship_parsers::{Stream, time};

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

/// Appends `msg` JSON-escaped; returns `true` when invalid UTF-8 had to be replaced.
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

/// Appends JSON text (a record this module encoded: valid UTF-8, no raw control
/// characters) escaped as a JSON string's content. Only `"` and `\\` need escaping
/// there, found with `memchr`; anything else falls back to [`escape_bytes_into`].
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

/// One record to encode.
pub struct RecordRef<'a> {
    /// Message bytes (no trailing newline).
    pub message: &'a [u8],
    /// Output stream of the container.
    pub stream: Stream,
    /// Record time, unix nanoseconds.
    pub time_nanos: i64,
    /// The container's precomputed `kubernetes` JSON object.
    pub kubernetes: &'a [u8],
}

/// Appends the record's JSON to `out`; returns `true` when invalid UTF-8 was replaced.
pub fn encode_record(rec: &RecordRef<'_>, out: &mut Vec<u8>) -> bool {
    out.extend_from_slice(b"{\"log\":\"");
    let replaced = escape_bytes_into(rec.message, out);
    out.extend_from_slice(match rec.stream {
        Stream::Stdout => b"\",\"stream\":\"stdout\",\"time\":\"",
        Stream::Stderr => b"\",\"stream\":\"stderr\",\"time\":\"",
    });
    time::format_rfc3339_nanos(rec.time_nanos, out);
    out.extend_from_slice(b"\",\"kubernetes\":");
    out.extend_from_slice(rec.kubernetes);
    out.push(b'}');
    replaced
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

/// Serializes the `kubernetes` object once per container, in Fluent Bit's field order.
pub fn kubernetes_fragment(meta: &PathMeta) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let fields = [
        ("pod_name", &meta.pod_name),
        ("namespace_name", &meta.namespace_name),
        ("pod_id", &meta.pod_id),
        ("host", &meta.host),
        ("container_name", &meta.container_name),
        ("docker_id", &meta.docker_id),
    ];
    out.push(b'{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b"\":\"");
        escape_str_into(v, &mut out);
        out.push(b'"');
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(msg: &[u8]) -> (serde_json::Value, bool) {
        let meta = PathMeta {
            pod_name: "p\"q".into(),
            namespace_name: "ns".into(),
            host: "node-1".into(),
            ..Default::default()
        };
        let frag = kubernetes_fragment(&meta);
        let mut out = Vec::new();
        let replaced = encode_record(
            &RecordRef {
                message: msg,
                stream: Stream::Stderr,
                time_nanos: 1_500_000_000_123,
                kubernetes: &frag,
            },
            &mut out,
        );
        (serde_json::from_slice(&out).expect("valid JSON"), replaced)
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

    #[test]
    fn every_control_byte_is_escaped() {
        let all: Vec<u8> = (0u8..0x80).collect();
        let (v, _) = enc(&all);
        assert_eq!(v["log"].as_str().unwrap().as_bytes(), &all[..]);
    }
}
