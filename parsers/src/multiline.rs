//! Multiline grouping: joining stack traces and other continuation lines
//! into one record.
//!
//! A [`Grouper`] handles ONE stream of one container. Each incoming
//! [`Record`] (already partial-merged) is classified by its [`Rule`] as
//! either *starting* a new group or *continuing* the current one. The
//! current group is held until a line starts a new group, or until it has
//! waited `flush_timeout_ms` since its last line arrived (the caller drives
//! time with a monotonic `now_ms`). An ordinary line that no rule would
//! continue is therefore held briefly too: a line can always be followed by
//! a continuation, and the flush timeout bounds that latency.
//!
//! Joined lines are separated by `\n`. A group keeps at most `max_bytes`;
//! the excess is dropped and the record flagged `truncated`, but the group
//! still consumes its continuation lines. A single trailing `\r` is ignored
//! when classifying (not when emitting).
//!
//! Rules (heuristics drawn from real traces; see each module for details):
//!
//! * [`Rule::Java`] — continuations: indented `at ...` frames,
//!   `... N more`, `... N common frames omitted`, `Caused by: `,
//!   `Suppressed: `, `Wrapped by: `, exception lines (a dotted class
//!   name whose last segment contains `Exception` or ends in `Error` or
//!   `Throwable`, alone or followed by `:`), and, once the group holds an
//!   exception, any indented line. Everything else, including
//!   `Exception in thread "main" ...`, starts a new group, so the log line
//!   that precedes a trace heads the group.
//! * [`Rule::Python`] — a state machine. `Traceback (most recent call
//!   last):` (or the 3.11 `+ Exception Group Traceback ...` header) starts a
//!   group; indented lines continue it; the first unindented `Name: msg` or
//!   bare `Name` ends the frames; after it, blank lines, indented lines and
//!   the chaining sentences (`During handling of the above exception...`,
//!   `The above exception was the direct cause...`) followed by another
//!   `Traceback` stay in the group. Anything else starts a new group.
//! * [`Rule::Go`] — a state machine. `panic: `, `fatal error: `,
//!   `goroutine N [...]:`, `SIGxxx: ` and `runtime: ` lines start a group;
//!   inside it, blank lines, indented lines, `goroutine ...:`, `[signal ...`,
//!   function-call lines (`main.main()`, `main.(*T).M(0x1, {0x2, 0x3})`),
//!   `created by ...`, `runtime stack:`, `exit status N`, register dumps and
//!   `...additional frames elided...` continue. Anything else starts a new
//!   group.
//! * [`Rule::Custom`] — lines matching the regex start a group, all others
//!   continue it.
//!
//! Known limits: exception messages that span several unindented lines are
//! split after their first line (Java, Python); a log line that happens to
//! look like a continuation (say an unindented `com.acme.FooError: x` right
//! after an unrelated line) is glued to the previous group.

use regex::bytes::Regex;

use crate::capped::Capped;
use crate::line::Stream;
use crate::partial::Record;

mod golang;
mod java;
mod python;

/// Multiline grouping rules.
#[derive(Clone, Debug)]
pub enum Rule {
    /// Java / JVM stack traces (also Kotlin, Scala; logback, log4j2, JUL).
    Java,
    /// Python tracebacks, including chained exceptions.
    Python,
    /// Go panics, fatal errors and goroutine dumps.
    Go,
    /// Start pattern: a matching line starts a new record, other lines
    /// continue the current one.
    Custom(Regex),
}

/// Whether a line opens a new group or joins the pending one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Start,
    Continue,
}

/// A rule plus its state machine.
#[derive(Clone, Debug)]
enum Matcher {
    Java(java::State),
    Python(python::State),
    Go(golang::State),
    Custom(Regex),
}

impl Matcher {
    fn new(rule: Rule) -> Self {
        match rule {
            Rule::Java => Matcher::Java(java::State::default()),
            Rule::Python => Matcher::Python(python::State::default()),
            Rule::Go => Matcher::Go(golang::State::default()),
            Rule::Custom(re) => Matcher::Custom(re),
        }
    }

    fn classify(&mut self, line: &[u8]) -> Action {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match self {
            Matcher::Java(state) => java::classify(state, line),
            Matcher::Python(state) => python::classify(state, line),
            Matcher::Go(state) => golang::classify(state, line),
            Matcher::Custom(re) if re.is_match(line) => Action::Start,
            Matcher::Custom(_) => Action::Continue,
        }
    }

    /// Forget any trace in progress (the pending group was emitted by a
    /// flush rather than by a new group starting).
    fn reset(&mut self) {
        match self {
            Matcher::Java(state) => *state = java::State::default(),
            Matcher::Python(state) => *state = python::State::default(),
            Matcher::Go(state) => *state = golang::State::default(),
            Matcher::Custom(_) => {}
        }
    }
}

/// Groups records into multiline records for ONE stream of one container
/// (the caller keeps one `Grouper` per stream).
#[derive(Clone, Debug)]
pub struct Grouper {
    matcher: Matcher,
    flush_timeout_ms: u64,
    active: bool,
    time_nanos: i64,
    stream: Stream,
    tag: u64,
    last_ms: u64,
    buf: Capped,
}

impl Grouper {
    /// A grouper applying `rule`, keeping at most `max_bytes` per group and
    /// emitting a group `flush_timeout_ms` after its last line at the latest.
    #[must_use]
    pub fn new(rule: Rule, max_bytes: usize, flush_timeout_ms: u64) -> Self {
        Grouper {
            matcher: Matcher::new(rule),
            flush_timeout_ms,
            active: false,
            time_nanos: 0,
            stream: Stream::Stdout,
            tag: 0,
            last_ms: 0,
            buf: Capped::new(max_bytes),
        }
    }

    /// Feed one record (already partial-merged). `now_ms` is a
    /// caller-supplied monotonic clock in milliseconds.
    ///
    /// Calls `emit` 0..=2 times, in order (this implementation emits at most
    /// once per push: the pending group, when `rec` starts a new one or when
    /// the pending group had already expired at `now_ms`).
    pub fn push(&mut self, rec: Record<'_>, now_ms: u64, mut emit: impl FnMut(Record<'_>)) {
        if self.active && now_ms >= self.deadline() {
            self.emit_pending(&mut emit);
            self.matcher.reset();
        }
        let action = self.matcher.classify(rec.message);
        if self.active && action == Action::Start {
            self.emit_pending(&mut emit);
        }
        if self.active {
            self.buf.push(b"\n");
        } else {
            self.active = true;
            self.time_nanos = rec.time_nanos;
            self.stream = rec.stream;
            self.tag = rec.tag;
        }
        self.buf.push(rec.message);
        if rec.truncated {
            self.buf.mark_truncated();
        }
        self.last_ms = now_ms;
    }

    /// Emit the pending group if it has waited `flush_timeout_ms` since its
    /// LAST line arrived (`now_ms >= last + flush_timeout_ms`).
    pub fn flush_expired(&mut self, now_ms: u64, mut emit: impl FnMut(Record<'_>)) {
        if self.active && now_ms >= self.deadline() {
            self.emit_pending(&mut emit);
            self.matcher.reset();
        }
    }

    /// Emit the pending group unconditionally.
    pub fn flush(&mut self, mut emit: impl FnMut(Record<'_>)) {
        if self.active {
            self.emit_pending(&mut emit);
        }
        self.matcher.reset();
    }

    /// Tag of the first line of the pending group, if any.
    #[must_use]
    pub fn pending_tag(&self) -> Option<u64> {
        self.active.then_some(self.tag)
    }

    /// When the pending group will expire (None if nothing pending).
    #[must_use]
    pub fn deadline_ms(&self) -> Option<u64> {
        self.active.then(|| self.deadline())
    }

    fn deadline(&self) -> u64 {
        self.last_ms.saturating_add(self.flush_timeout_ms)
    }

    fn emit_pending(&mut self, emit: &mut impl FnMut(Record<'_>)) {
        let (message, truncated) = self.buf.content();
        emit(Record {
            time_nanos: self.time_nanos,
            stream: self.stream,
            message,
            truncated,
            tag: self.tag,
        });
        self.active = false;
        self.buf.clear();
    }
}

/// Test helper: runs `text`'s lines (split on `\n` only, so `\r` stays)
/// through a grouper and returns the emitted messages.
#[cfg(test)]
pub(crate) fn group_lines(rule: Rule, text: &str) -> Vec<String> {
    let mut g = Grouper::new(rule, 1 << 20, 1000);
    let mut out = Vec::new();
    let mut collect = |r: Record<'_>| out.push(String::from_utf8(r.message.to_vec()).unwrap());
    for (i, line) in text.split('\n').enumerate() {
        let rec = Record {
            time_nanos: i as i64,
            stream: Stream::Stdout,
            message: line.as_bytes(),
            truncated: false,
            tag: i as u64,
        };
        g.push(rec, i as u64, &mut collect);
    }
    g.flush(&mut collect);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(msg: &[u8], tag: u64) -> Record<'_> {
        Record {
            time_nanos: tag as i64 * 10,
            stream: Stream::Stderr,
            message: msg,
            truncated: false,
            tag,
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    struct Out {
        msg: String,
        truncated: bool,
        tag: u64,
        time: i64,
    }

    fn collect(out: &mut Vec<Out>) -> impl FnMut(Record<'_>) + '_ {
        |r| {
            assert_eq!(r.stream, Stream::Stderr);
            out.push(Out {
                msg: String::from_utf8_lossy(r.message).into_owned(),
                truncated: r.truncated,
                tag: r.tag,
                time: r.time_nanos,
            });
        }
    }

    fn custom() -> Rule {
        Rule::Custom(Regex::new(r"^\d{4}-\d{2}-\d{2} ").unwrap())
    }

    #[test]
    fn custom_rule_groups_by_start_pattern() {
        let text = "2026-01-02 03:04:05 first\n  detail a\n  detail b\n2026-01-02 03:04:06 second\nnot a start either\n2026-01-02 03:04:07 third";
        assert_eq!(
            group_lines(custom(), text),
            [
                "2026-01-02 03:04:05 first\n  detail a\n  detail b",
                "2026-01-02 03:04:06 second\nnot a start either",
                "2026-01-02 03:04:07 third"
            ]
        );
    }

    #[test]
    fn continuation_without_pending_starts_group() {
        assert_eq!(
            group_lines(custom(), "orphan 1\norphan 2\n2026-01-02 03:04:05 x"),
            ["orphan 1\norphan 2", "2026-01-02 03:04:05 x"]
        );
    }

    #[test]
    fn emitted_record_carries_first_line_metadata() {
        let mut g = Grouper::new(custom(), 1000, 100);
        let mut out = Vec::new();
        g.push(rec(b"2026-01-02 03:04:05 a", 7), 0, collect(&mut out));
        g.push(rec(b"  b", 8), 1, collect(&mut out));
        assert_eq!(g.pending_tag(), Some(7));
        g.push(rec(b"2026-01-02 03:04:05 c", 9), 2, collect(&mut out));
        assert_eq!(
            out,
            [Out {
                msg: "2026-01-02 03:04:05 a\n  b".into(),
                truncated: false,
                tag: 7,
                time: 70
            }]
        );
        assert_eq!(g.pending_tag(), Some(9));
    }

    #[test]
    fn flush_expired_exactly_at_deadline() {
        let mut g = Grouper::new(custom(), 1000, 50);
        let mut out = Vec::new();
        assert_eq!(g.deadline_ms(), None);
        g.push(rec(b"2026-01-02 03:04:05 a", 1), 100, collect(&mut out));
        assert_eq!(g.deadline_ms(), Some(150));
        g.push(rec(b"  more", 2), 120, collect(&mut out));
        assert_eq!(
            g.deadline_ms(),
            Some(170),
            "deadline counts from the LAST line"
        );
        g.flush_expired(169, collect(&mut out));
        assert!(out.is_empty());
        assert_eq!(g.pending_tag(), Some(1));
        g.flush_expired(170, collect(&mut out));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].msg, "2026-01-02 03:04:05 a\n  more");
        assert_eq!(g.pending_tag(), None);
        assert_eq!(g.deadline_ms(), None);
        g.flush_expired(10_000, collect(&mut out));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn push_after_deadline_does_not_join_expired_group() {
        let mut g = Grouper::new(custom(), 1000, 50);
        let mut out = Vec::new();
        g.push(rec(b"2026-01-02 03:04:05 a", 1), 100, collect(&mut out));
        g.push(rec(b"  late continuation", 2), 150, collect(&mut out));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].msg, "2026-01-02 03:04:05 a");
        assert_eq!(g.pending_tag(), Some(2));
        g.push(rec(b"  timely continuation", 3), 199, collect(&mut out));
        g.flush(collect(&mut out));
        assert_eq!(out[1].msg, "  late continuation\n  timely continuation");
    }

    #[test]
    fn zero_timeout_expires_immediately() {
        let mut g = Grouper::new(custom(), 1000, 0);
        let mut out = Vec::new();
        g.push(rec(b"x", 1), 5, collect(&mut out));
        assert_eq!(g.deadline_ms(), Some(5));
        g.flush_expired(5, collect(&mut out));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn deadline_saturates() {
        let mut g = Grouper::new(custom(), 1000, u64::MAX);
        g.push(rec(b"x", 1), 5, |_| {});
        assert_eq!(g.deadline_ms(), Some(u64::MAX));
    }

    #[test]
    fn max_bytes_truncates_but_consumes_continuations() {
        let mut g = Grouper::new(custom(), 30, 1000);
        let mut out = Vec::new();
        g.push(rec(b"2026-01-02 03:04:05 start", 1), 0, collect(&mut out));
        for i in 0..100 {
            g.push(rec(b"  continuation line", 2 + i), 1, collect(&mut out));
        }
        assert!(out.is_empty(), "continuations must not become records");
        g.push(rec(b"2026-01-02 03:04:06 next", 200), 2, collect(&mut out));
        g.flush(collect(&mut out));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].msg, "2026-01-02 03:04:05 start\n  co");
        assert_eq!(out[0].msg.len(), 30);
        assert!(out[0].truncated);
        assert_eq!(out[0].tag, 1);
        assert_eq!(
            (out[1].msg.as_str(), out[1].truncated),
            ("2026-01-02 03:04:06 next", false)
        );
    }

    #[test]
    fn truncated_input_marks_group() {
        let mut g = Grouper::new(custom(), 1000, 1000);
        let mut out = Vec::new();
        g.push(rec(b"2026-01-02 03:04:05 a", 1), 0, collect(&mut out));
        g.push(
            Record {
                truncated: true,
                ..rec(b"  cut", 2)
            },
            0,
            collect(&mut out),
        );
        g.flush(collect(&mut out));
        assert!(out[0].truncated);
        g.push(rec(b"2026-01-02 03:04:05 b", 3), 0, collect(&mut out));
        g.flush(collect(&mut out));
        assert!(!out[1].truncated, "flag does not leak into the next group");
    }

    #[test]
    fn group_truncation_keeps_utf8_boundary() {
        let mut g = Grouper::new(custom(), 9, 1000);
        let mut out = Vec::new();
        g.push(rec("2026€".as_bytes(), 1), 0, collect(&mut out));
        g.push(rec("€€".as_bytes(), 2), 0, collect(&mut out));
        g.flush(collect(&mut out));
        assert_eq!(out[0].msg, "2026€\n");
        assert!(out[0].truncated);
    }

    #[test]
    fn flush_and_pending_tag() {
        let mut g = Grouper::new(Rule::Java, 1000, 1000);
        let mut out = Vec::new();
        assert_eq!(g.pending_tag(), None);
        g.flush(collect(&mut out));
        assert!(out.is_empty());
        g.push(rec(b"INFO hello", 4), 0, collect(&mut out));
        assert_eq!(g.pending_tag(), Some(4));
        g.flush(collect(&mut out));
        assert_eq!(out.len(), 1);
        assert_eq!(g.pending_tag(), None);
    }

    #[test]
    fn cr_is_ignored_for_matching_but_kept() {
        let text =
            "INFO x\r\njava.lang.IllegalStateException: y\r\n\tat a.B.c(B.java:1)\r\nINFO z\r";
        assert_eq!(
            group_lines(Rule::Java, text),
            [
                "INFO x\r\njava.lang.IllegalStateException: y\r\n\tat a.B.c(B.java:1)\r",
                "INFO z\r"
            ]
        );
    }
}
