//! Framing.

use std::io::Write;

/// Container runtime log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// containerd / CRI-O: `<time> <stream> <P|F> <message>`.
    Cri,
    /// docker json-file: `{"log":"...\n","stream":"...","time":"..."}`.
    Docker,
}

/// One framed log line (with trailing newline).
///
/// `partial`: CRI tag `P`, or a docker chunk without trailing `\n`.
/// The message may contain arbitrary bytes (docker framing escapes `"`, `\` and controls only,
/// so invalid UTF-8 passes through raw like a buggy writer would produce).
pub fn frame(format: Format, time: &str, stream: &str, msg: &[u8], partial: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 80);
    match format {
        Format::Cri => {
            out.extend_from_slice(time.as_bytes());
            out.push(b' ');
            out.extend_from_slice(stream.as_bytes());
            out.extend_from_slice(if partial { b" P " } else { b" F " });
            out.extend_from_slice(msg);
        }
        Format::Docker => {
            out.extend_from_slice(b"{\"log\":\"");
            json_escape_bytes(msg, &mut out);
            if !partial {
                out.extend_from_slice(b"\\n");
            }
            out.extend_from_slice(b"\",\"stream\":\"");
            out.extend_from_slice(stream.as_bytes());
            out.extend_from_slice(b"\",\"time\":\"");
            out.extend_from_slice(time.as_bytes());
            out.extend_from_slice(b"\"}");
        }
    }
    out.push(b'\n');
    out
}

fn json_escape_bytes(msg: &[u8], out: &mut Vec<u8>) {
    for &b in msg {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                let _ = write!(out, "\\u{b:04x}");
            }
            _ => out.push(b),
        }
    }
}

/// Canonical RFC 3339 timestamp with nanoseconds for sequence number `seq`
/// (`2026-11-23T10:00:00.000000000Z` + seq milliseconds + a few nanoseconds).
pub fn time_for(seq: u64) -> String {
    let secs = 10 * 3600 + seq / 1000;
    let nanos = (seq % 1000) * 1_000_000 + seq % 997;
    let day = 23 + secs / 86_400;
    let s = secs % 86_400;
    format!(
        "2026-11-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_millis()).expect("ms fit i64")
}

/// RFC 3339 UTC timestamp with nine fraction digits for `nanos` since the Unix epoch
/// (`2026-11-23T10:00:00.123456789Z`), the agent's canonical `time` format.
pub fn rfc3339_nanos(nanos: i128) -> String {
    let secs = nanos.div_euclid(1_000_000_000) as i64;
    let frac = nanos.rem_euclid(1_000_000_000);
    let (y, mo, d) = kubeship_parsers::time::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// RFC 3339 timestamp for Unix milliseconds `ms` (nine fraction digits).
pub fn rfc3339_ms(ms: i64) -> String {
    rfc3339_nanos(i128::from(ms) * 1_000_000)
}

/// Unix nanoseconds of an RFC 3339 timestamp (`Z` or `±hh:mm` offset, any fraction digits).
pub fn parse_rfc3339_nanos(t: &str) -> Option<i128> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { t.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut i = 19;
    let mut frac: i128 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &t[start..i];
        if digits.is_empty() {
            return None;
        }
        let mut padded = digits.chars().take(9).collect::<String>();
        while padded.len() < 9 {
            padded.push('0');
        }
        frac = padded.parse().ok()?;
    }
    let offset_secs: i64 = match &t[i..] {
        "Z" | "z" => 0,
        off if off.len() == 6 && (off.starts_with('+') || off.starts_with('-')) => {
            let oh: i64 = off.get(1..3)?.parse().ok()?;
            let om: i64 = off.get(4..6)?.parse().ok()?;
            let v = oh * 3600 + om * 60;
            if off.starts_with('-') { -v } else { v }
        }
        _ => return None,
    };
    let days = kubeship_parsers::time::days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_secs;
    Some(i128::from(secs) * 1_000_000_000 + frac)
}

/// Unix milliseconds (rounded down) of an RFC 3339 timestamp: CloudWatch's event timestamp.
pub fn parse_rfc3339_ms(t: &str) -> Option<i64> {
    parse_rfc3339_nanos(t).map(|n| n.div_euclid(1_000_000) as i64)
}

/// Parses `c=<name> seq=<n> ...` into `(name, n)`.
pub fn parse_seq(log: &str) -> Option<(&str, u64)> {
    let rest = log.strip_prefix("c=")?;
    let (name, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix("seq=")?;
    let end = rest.find(' ').unwrap_or(rest.len());
    Some((name, rest[..end].parse().ok()?))
}
