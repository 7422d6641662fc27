//! Prometheus text format and OpenMetrics bodies: no panics; samples point
//! into the input and respect the limits; labels iterate as counted,
//! borrowed unless escaped; and every accepted sample, written back in the
//! text format, parses to the same sample.
//!
//! The first byte picks the format (bit 0: OpenMetrics) and the limits
//! (bit 1: small ones, so that every limit is reached).
#![no_main]

use std::borrow::Cow;

use kubeship_parsers::prom::{Format, Limits, Parser, Sample};
use libfuzzer_sys::fuzz_target;

const SMALL: Limits = Limits {
    max_line_bytes: 64,
    max_labels: 3,
    max_label_name_bytes: 4,
    max_label_value_bytes: 8,
};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let format = if selector & 1 == 1 { Format::OpenMetrics } else { Format::Text };
    let limits = if selector & 2 == 2 { SMALL } else { Limits::default() };
    let range = body.as_ptr_range();
    let mut last_line = 0;
    let mut rendered = String::new();
    for item in Parser::new(body, format, limits) {
        match item {
            Ok(s) => {
                assert!(range.contains(&s.name.as_ptr()));
                assert!(s.series.starts_with(s.name));
                assert!(s.name.len() <= limits.max_label_value_bytes);
                assert!(s.labels.len() <= limits.max_labels);
                assert_eq!(s.labels.iter().count(), s.labels.len());
                for l in s.labels.iter() {
                    assert!(!l.name.is_empty() && l.name.len() <= limits.max_label_name_bytes);
                    if !s.labels.has_escapes() {
                        assert!(matches!(l.value, Cow::Borrowed(_)));
                        assert!(l.value.len() <= limits.max_label_value_bytes);
                    }
                }
                rendered.clear();
                render(&s, &mut rendered);
                let again: Vec<_> = Parser::new(rendered.as_bytes(), Format::Text, Limits::UNLIMITED).collect();
                assert_eq!(again.len(), 1, "{rendered:?}");
                let again = again[0].as_ref().unwrap_or_else(|e| panic!("{e}: {rendered:?}"));
                assert_eq!(again.name, s.name);
                assert!(again.labels.iter().eq(s.labels.iter()), "{rendered:?}");
                assert_eq!(again.value.to_bits(), s.value.to_bits());
                assert_eq!(again.timestamp_ms, s.timestamp_ms);
            }
            Err(e) => {
                assert!(e.offset <= body.len());
                assert!(e.line > last_line || last_line == 0);
                last_line = e.line;
            }
        }
    }
});

/// The sample as one text-format line.
fn render(s: &Sample<'_>, out: &mut String) {
    out.push_str(s.name);
    out.push('{');
    for l in s.labels.iter() {
        out.push_str(l.name);
        out.push_str("=\"");
        for c in l.value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push_str("\",");
    }
    out.push_str("} ");
    if s.value.is_nan() {
        out.push_str("NaN");
    } else {
        out.push_str(&format!("{:e}", s.value));
    }
    if let Some(ts) = s.timestamp_ms {
        out.push_str(&format!(" {ts}"));
    }
    out.push('\n');
}
