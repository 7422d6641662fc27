//! Structured parsers (JSON object, logfmt, regex captures): whatever the
//! input, a `true` appends one JSON object (serde_json parses it into a map)
//! with no raw control byte, and a `false` leaves `out` exactly as it was.
//!
//! The JSON object path is also checked against itself: a newline right after
//! the opening brace (still the same object) forces re-serialization, which
//! must accept the same inputs and give the same object as the copy (floats
//! within a rounding error: serde_json's default float parsing is
//! best-effort, so a reprinted float may read back one ULP apart).
#![no_main]

use std::sync::LazyLock;

use kubeship_parsers::structured::{json_object_into, logfmt_into, regex_into};
use libfuzzer_sys::fuzz_target;
use regex::bytes::Regex;
use serde_json::{Map, Value};

/// Compiled once: compiling per input would dominate the run time.
static REGEXES: LazyLock<[Regex; 3]> = LazyLock::new(|| {
    [
        Regex::new(r"(?P<key>\w+)=(?P<value>\S*)").unwrap(),
        Regex::new(r"(?s-u)^(?P<all>.*)$").unwrap(),
        Regex::new(r"(?-u)^(?P<a>.)?(?P<b>[\x00-\x1f\x80-\xff]+)?").unwrap(),
    ]
});

const PREFIX: &[u8] = b"{\"log\":\"x\",\"log_processed\":";

/// Runs one parser after a prefix; returns the object it appended, if any.
fn check(data: &[u8], f: impl Fn(&[u8], &mut Vec<u8>) -> bool) -> Option<Map<String, Value>> {
    let mut out = PREFIX.to_vec();
    if !f(data, &mut out) {
        assert_eq!(out, PREFIX, "out changed on failure");
        return None;
    }
    let appended = out.strip_prefix(PREFIX).expect("prefix kept");
    assert!(appended.iter().all(|&b| b >= 0x20), "raw control byte");
    match serde_json::from_slice(appended) {
        Ok(map) => Some(map),
        Err(e) => panic!("{e}: {:?}", String::from_utf8_lossy(appended)),
    }
}

/// Equal, floats compared within a rounding error.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let copied = check(data, json_object_into);
    let trimmed = data.trim_ascii();
    if trimmed.first() == Some(&b'{') {
        let mut spread = b"{\n".to_vec();
        spread.extend_from_slice(&trimmed[1..]);
        let reserialized = check(&spread, json_object_into);
        let agree = match (&copied, &reserialized) {
            (Some(a), Some(b)) => same(&Value::Object(a.clone()), &Value::Object(b.clone())),
            (a, b) => a.is_none() && b.is_none(),
        };
        assert!(
            agree,
            "copy {copied:?} != re-serialization {reserialized:?}"
        );
    }
    check(data, logfmt_into);
    for re in REGEXES.iter() {
        check(data, |msg, out| regex_into(re, msg, out));
    }
});
