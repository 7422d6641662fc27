//! CRI lines and RFC 3339 timestamps: no panics, zero-copy messages, and
//! timestamps that survive a format/parse round trip.
#![no_main]

use std::borrow::Cow;

use kubeship_parsers::{Format, parse_line, time};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = Vec::with_capacity(30);
    for line in data.split(|&b| b == b'\n') {
        if let Ok(l) = parse_line(Format::Cri, line) {
            assert!(matches!(l.message, Cow::Borrowed(_)), "CRI must not copy");
            assert!(line.ends_with(&l.message));
            buf.clear();
            time::format_rfc3339_nanos(l.time_nanos, &mut buf);
            assert_eq!(buf.len(), 30);
            assert_eq!(time::parse_rfc3339(&buf), Some(l.time_nanos));
        }
    }
    if let Some(nanos) = time::parse_rfc3339(data) {
        buf.clear();
        time::format_rfc3339_nanos(nanos, &mut buf);
        assert_eq!(time::parse_rfc3339(&buf), Some(nanos));
    }
    if data.len() >= 8 {
        let nanos = i64::from_le_bytes(data[..8].try_into().unwrap());
        buf.clear();
        time::format_rfc3339_nanos(nanos, &mut buf);
        assert_eq!(time::parse_rfc3339(&buf), Some(nanos));
    }
});
