//! PartialMerger + Grouper for every rule: no panics, no record longer than
//! `max_bytes`, valid UTF-8 in gives valid UTF-8 out, and pending tags never
//! run ahead of what was fed.
//!
//! Input: byte 0 picks `max_bytes` (0..=255), byte 1 the flush timeout;
//! the rest is split into lines, each line's first byte choosing the stream
//! (bit 0), the partial flag (bit 1) and how far the clock advances (bits
//! 2..), the remainder being the message.
#![no_main]

use std::borrow::Cow;
use std::sync::LazyLock;

use kubeship_parsers::{Grouper, Line, PartialMerger, Record, Rule, Stream};
use libfuzzer_sys::fuzz_target;
use regex::bytes::Regex;

/// Compiled once: compiling per input would dominate the run time.
static START: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\d{4}-\d{2}-\d{2}").unwrap());

fuzz_target!(|data: &[u8]| {
    let [max, timeout, rest @ ..] = data else {
        return;
    };
    let max_bytes = usize::from(*max);
    let timeout_ms = u64::from(*timeout);
    // Only messages (lines minus their control byte) need be valid UTF-8.
    let all_utf8 = rest
        .split(|&b| b == b'\n')
        .all(|l| std::str::from_utf8(l.get(1..).unwrap_or_default()).is_ok());
    let check = |r: &Record<'_>| {
        assert!(
            r.message.len() <= max_bytes,
            "{} > {max_bytes}",
            r.message.len()
        );
        if all_utf8 {
            assert!(
                std::str::from_utf8(r.message).is_ok(),
                "cut split a character"
            );
        }
    };

    let rules = [
        Rule::Java,
        Rule::Python,
        Rule::Go,
        Rule::Custom(START.clone()),
    ];
    for rule in rules {
        let mut merger = PartialMerger::new(max_bytes);
        let mut groupers = [
            Grouper::new(rule.clone(), max_bytes, timeout_ms),
            Grouper::new(rule, max_bytes, timeout_ms),
        ];
        let mut now = 0u64;
        for (tag, raw) in rest.split(|&b| b == b'\n').enumerate() {
            let tag = tag as u64;
            let Some((&ctl, message)) = raw.split_first() else {
                continue;
            };
            let stream = if ctl & 1 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            let line = Line {
                time_nanos: tag as i64,
                stream,
                partial: ctl & 2 != 0,
                message: Cow::Borrowed(message),
            };
            now += u64::from(ctl >> 2);
            merger.push(line, tag, |rec| {
                check(&rec);
                assert!(rec.tag <= tag);
                groupers[rec.stream.index()].push(rec, now, |g| check(&g));
            });
            for g in &mut groupers {
                g.flush_expired(now, |r| check(&r));
                if let Some(deadline) = g.deadline_ms() {
                    assert!(deadline > now, "expired group left pending");
                }
                assert!(g.pending_tag().is_none_or(|t| t <= tag));
            }
            assert!(merger.pending_tag().is_none_or(|t| t <= tag));
        }
        merger.flush(|rec| {
            check(&rec);
            groupers[rec.stream.index()].push(rec, now, |g| check(&g));
        });
        for g in &mut groupers {
            g.flush(|r| check(&r));
            assert_eq!(g.pending_tag(), None);
        }
        assert!(!merger.has_pending());
    }
});
