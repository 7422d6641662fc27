//! Docker json-file lines: no panics, messages are valid UTF-8, and the
//! zero-copy fast path agrees with the serde_json path.
//!
//! The fast path only fires on lines starting exactly with `{"log":"`;
//! prefixing a space (still valid JSON) forces the general path, so for
//! every accepted line both paths are compared.
#![no_main]

use kubeship_parsers::{Format, parse_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = parse_line(Format::Docker, data) else {
        return;
    };
    assert!(std::str::from_utf8(&line.message).is_ok());
    let mut spaced = Vec::with_capacity(data.len() + 1);
    spaced.push(b' ');
    spaced.extend_from_slice(data);
    assert_eq!(parse_line(Format::Docker, &spaced), Ok(line));
});
