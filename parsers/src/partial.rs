//! Reassembling logical lines from runtime-split pieces.
//!
//! Container runtimes split long lines: CRI writes `P` pieces followed by a
//! final `F` piece (containerd splits at 16 KiB by default), docker
//! json-file writes chunks whose `log` lacks the trailing `"\n"`. stdout and
//! stderr pieces interleave in one file, so pieces are merged per stream.
//!
//! [`PartialMerger`] turns a sequence of [`Line`]s into [`Record`]s:
//!
//! * fast path: a full line with nothing pending on its stream is emitted
//!   borrowing the line's message — no copy;
//! * pieces are copied into a per-stream buffer capped at `max_bytes`;
//!   excess bytes are dropped and the record is flagged `truncated`, but the
//!   rest of the pieces are still consumed until the final one, so a giant
//!   line never turns into a burst of bogus records;
//! * a full line longer than `max_bytes` is emitted cut to `max_bytes`.
//!
//! Cuts never split a valid UTF-8 character: they move back to the start of
//! the character that straddles the limit.

use crate::capped::{Capped, cut_len};
use crate::line::{Line, Stream};

/// A complete logical line: the output of [`PartialMerger`], and the input
/// and output of [`Grouper`](crate::Grouper).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Time of the first piece, Unix nanoseconds (UTC).
    pub time_nanos: i64,
    /// Which stream wrote it.
    pub stream: Stream,
    /// The content, at most the configured `max_bytes` long.
    pub message: &'a [u8],
    /// True when content beyond `max_bytes` was cut.
    pub truncated: bool,
    /// The caller's opaque tag of the first piece (for example the line's
    /// file offset, so a checkpoint never skips unemitted data).
    pub tag: u64,
}

/// Merges CRI `P` pieces / docker chunks into whole records, separately per
/// stream (stdout and stderr interleave).
#[derive(Clone, Debug)]
pub struct PartialMerger {
    max_bytes: usize,
    pending: [Pending; 2],
}

/// The record being assembled for one stream.
#[derive(Clone, Debug)]
struct Pending {
    active: bool,
    time_nanos: i64,
    tag: u64,
    buf: Capped,
}

const STREAMS: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

impl PartialMerger {
    /// A merger whose records hold at most `max_bytes` bytes of content.
    #[must_use]
    pub fn new(max_bytes: usize) -> Self {
        let pending = || Pending {
            active: false,
            time_nanos: 0,
            tag: 0,
            buf: Capped::new(max_bytes),
        };
        PartialMerger {
            max_bytes,
            pending: [pending(), pending()],
        }
    }

    /// Feed one parsed line with its tag; calls `emit` 0 or 1 times with a
    /// complete record.
    ///
    /// Fast path: a non-partial line with nothing pending for its stream is
    /// emitted borrowing `line.message` (no copy). Pieces are appended up to
    /// `max_bytes` total; beyond that bytes are discarded and the record is
    /// marked truncated, and pieces keep being consumed until the final piece
    /// arrives.
    pub fn push(&mut self, line: Line<'_>, tag: u64, mut emit: impl FnMut(Record<'_>)) {
        let stream = line.stream;
        let p = &mut self.pending[stream.index()];
        if !p.active {
            if !line.partial {
                let cut = cut_len(&line.message, self.max_bytes);
                emit(Record {
                    time_nanos: line.time_nanos,
                    stream,
                    message: &line.message[..cut],
                    truncated: cut < line.message.len(),
                    tag,
                });
                return;
            }
            p.active = true;
            p.time_nanos = line.time_nanos;
            p.tag = tag;
            p.buf.clear();
        }
        p.buf.push(&line.message);
        if !line.partial {
            p.emit(stream, &mut emit);
        }
    }

    /// Emit every pending record (e.g. file finished), stdout first then
    /// stderr; pending state is cleared.
    pub fn flush(&mut self, mut emit: impl FnMut(Record<'_>)) {
        for (p, stream) in self.pending.iter_mut().zip(STREAMS) {
            if p.active {
                p.emit(stream, &mut emit);
            }
        }
    }

    /// Smallest tag among pending (not yet emitted) pieces, if any.
    #[must_use]
    pub fn pending_tag(&self) -> Option<u64> {
        self.pending
            .iter()
            .filter(|p| p.active)
            .map(|p| p.tag)
            .min()
    }

    /// Whether any stream has pieces waiting for their final piece.
    #[must_use]
    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(|p| p.active)
    }
}

impl Pending {
    fn emit(&mut self, stream: Stream, emit: &mut impl FnMut(Record<'_>)) {
        let (message, truncated) = self.buf.content();
        emit(Record {
            time_nanos: self.time_nanos,
            stream,
            message,
            truncated,
            tag: self.tag,
        });
        self.active = false;
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    struct Out {
        time: i64,
        stream: Stream,
        msg: Vec<u8>,
        truncated: bool,
        tag: u64,
    }

    fn line(time: i64, stream: Stream, partial: bool, msg: &[u8]) -> Line<'_> {
        Line {
            time_nanos: time,
            stream,
            partial,
            message: Cow::Borrowed(msg),
        }
    }

    fn collect(out: &mut Vec<Out>) -> impl FnMut(Record<'_>) + '_ {
        |r| {
            out.push(Out {
                time: r.time_nanos,
                stream: r.stream,
                msg: r.message.to_vec(),
                truncated: r.truncated,
                tag: r.tag,
            })
        }
    }

    #[test]
    fn full_line_fast_path_borrows() {
        let mut m = PartialMerger::new(100);
        let msg = b"hello".to_vec();
        let mut seen = None;
        m.push(line(7, Stream::Stdout, false, &msg), 42, |r| {
            seen = Some((r.message.as_ptr(), r.tag, r.time_nanos, r.truncated));
        });
        assert_eq!(seen, Some((msg.as_ptr(), 42, 7, false)));
        assert!(!m.has_pending());
        assert_eq!(m.pending_tag(), None);
    }

    #[test]
    fn pieces_are_merged() {
        let mut m = PartialMerger::new(100);
        let mut out = Vec::new();
        m.push(line(1, Stream::Stdout, true, b"ab"), 10, collect(&mut out));
        m.push(line(2, Stream::Stdout, true, b"cd"), 20, collect(&mut out));
        assert!(out.is_empty());
        assert!(m.has_pending());
        assert_eq!(m.pending_tag(), Some(10));
        m.push(line(3, Stream::Stdout, false, b"ef"), 30, collect(&mut out));
        assert_eq!(
            out,
            vec![Out {
                time: 1,
                stream: Stream::Stdout,
                msg: b"abcdef".to_vec(),
                truncated: false,
                tag: 10
            }]
        );
        assert!(!m.has_pending());
    }

    #[test]
    fn interleaved_streams() {
        let mut m = PartialMerger::new(100);
        let mut out = Vec::new();
        m.push(
            line(1, Stream::Stdout, true, b"out-1 "),
            100,
            collect(&mut out),
        );
        m.push(
            line(2, Stream::Stderr, true, b"err-1 "),
            200,
            collect(&mut out),
        );
        assert_eq!(m.pending_tag(), Some(100));
        m.push(
            line(3, Stream::Stdout, false, b"out-2"),
            300,
            collect(&mut out),
        );
        assert_eq!(m.pending_tag(), Some(200));
        m.push(
            line(4, Stream::Stderr, false, b"err-2"),
            400,
            collect(&mut out),
        );
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].stream, &out[0].msg[..], out[0].tag, out[0].time),
            (Stream::Stdout, &b"out-1 out-2"[..], 100, 1)
        );
        assert_eq!(
            (out[1].stream, &out[1].msg[..], out[1].tag, out[1].time),
            (Stream::Stderr, &b"err-1 err-2"[..], 200, 2)
        );
        assert_eq!(m.pending_tag(), None);
    }

    #[test]
    fn full_line_on_other_stream_passes_through() {
        let mut m = PartialMerger::new(100);
        let mut out = Vec::new();
        m.push(line(1, Stream::Stdout, true, b"a"), 1, collect(&mut out));
        m.push(line(2, Stream::Stderr, false, b"err"), 2, collect(&mut out));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].msg, b"err");
        assert_eq!(m.pending_tag(), Some(1));
    }

    #[test]
    fn truncation_across_pieces() {
        let mut m = PartialMerger::new(5);
        let mut out = Vec::new();
        m.push(line(1, Stream::Stdout, true, b"abc"), 1, collect(&mut out));
        m.push(line(2, Stream::Stdout, true, b"def"), 2, collect(&mut out));
        m.push(line(3, Stream::Stdout, true, b"ghi"), 3, collect(&mut out));
        assert!(out.is_empty(), "excess pieces must not become records");
        m.push(line(4, Stream::Stdout, false, b"jkl"), 4, collect(&mut out));
        m.push(
            line(5, Stream::Stdout, false, b"next"),
            5,
            collect(&mut out),
        );
        assert_eq!(out.len(), 2);
        assert_eq!(
            (&out[0].msg[..], out[0].truncated, out[0].tag),
            (&b"abcde"[..], true, 1)
        );
        assert_eq!(
            (&out[1].msg[..], out[1].truncated, out[1].tag),
            (&b"next"[..], false, 5)
        );
    }

    #[test]
    fn exactly_max_bytes_is_not_truncated() {
        let mut m = PartialMerger::new(4);
        let mut out = Vec::new();
        m.push(line(1, Stream::Stdout, true, b"ab"), 1, collect(&mut out));
        m.push(line(1, Stream::Stdout, false, b"cd"), 2, collect(&mut out));
        m.push(
            line(1, Stream::Stdout, false, b"wxyz"),
            3,
            collect(&mut out),
        );
        assert_eq!((&out[0].msg[..], out[0].truncated), (&b"abcd"[..], false));
        assert_eq!((&out[1].msg[..], out[1].truncated), (&b"wxyz"[..], false));
    }

    #[test]
    fn giant_single_line_is_cut() {
        let mut m = PartialMerger::new(1000);
        let mut out = Vec::new();
        let giant = vec![b'x'; 1_000_000];
        m.push(line(1, Stream::Stderr, false, &giant), 9, collect(&mut out));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].msg.len(), 1000);
        assert!(out[0].truncated);
    }

    #[test]
    fn giant_split_line_is_one_record() {
        // 1 MiB written as 16 KiB CRI pieces.
        let mut m = PartialMerger::new(64 * 1024);
        let mut out = Vec::new();
        let piece = vec![b'y'; 16 * 1024];
        for i in 0..63 {
            m.push(
                line(i, Stream::Stdout, true, &piece),
                i as u64,
                collect(&mut out),
            );
        }
        m.push(
            line(63, Stream::Stdout, false, &piece),
            63,
            collect(&mut out),
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].msg.len(), 64 * 1024);
        assert!(out[0].truncated);
        assert_eq!((out[0].tag, out[0].time), (0, 0));
    }

    #[test]
    fn truncation_respects_utf8_across_pieces() {
        let text = "ab€€€".as_bytes(); // 2 + 3*3 bytes
        let mut m = PartialMerger::new(6);
        let mut out = Vec::new();
        // Split inside the second € on purpose, like a runtime's byte split.
        m.push(
            line(1, Stream::Stdout, true, &text[..6]),
            1,
            collect(&mut out),
        );
        m.push(
            line(1, Stream::Stdout, false, &text[6..]),
            2,
            collect(&mut out),
        );
        assert_eq!(out[0].msg, "ab€".as_bytes());
        assert!(out[0].truncated);
        let mut m = PartialMerger::new(7);
        m.push(line(1, Stream::Stdout, false, text), 3, collect(&mut out));
        assert_eq!(out[1].msg, "ab€".as_bytes());
        let mut m = PartialMerger::new(8);
        m.push(line(1, Stream::Stdout, false, text), 3, collect(&mut out));
        assert_eq!(out[2].msg, "ab€€".as_bytes());
    }

    #[test]
    fn invalid_utf8_cut_at_limit() {
        let mut m = PartialMerger::new(3);
        let mut out = Vec::new();
        m.push(
            line(1, Stream::Stdout, false, b"\xff\x80\x80\x80\x80"),
            1,
            collect(&mut out),
        );
        assert_eq!(out[0].msg, b"\xff\x80\x80");
    }

    #[test]
    fn flush_emits_stdout_then_stderr() {
        let mut m = PartialMerger::new(100);
        let mut out = Vec::new();
        m.push(line(1, Stream::Stderr, true, b"err"), 1, collect(&mut out));
        m.push(line(2, Stream::Stdout, true, b"out"), 2, collect(&mut out));
        assert_eq!(m.pending_tag(), Some(1));
        m.flush(collect(&mut out));
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].stream, &out[0].msg[..], out[0].truncated),
            (Stream::Stdout, &b"out"[..], false)
        );
        assert_eq!(
            (out[1].stream, &out[1].msg[..]),
            (Stream::Stderr, &b"err"[..])
        );
        assert!(!m.has_pending());
        assert_eq!(m.pending_tag(), None);
        m.flush(collect(&mut out));
        assert_eq!(out.len(), 2, "second flush emits nothing");
    }

    #[test]
    fn empty_pieces() {
        let mut m = PartialMerger::new(10);
        let mut out = Vec::new();
        m.push(line(1, Stream::Stdout, true, b""), 1, collect(&mut out));
        assert!(m.has_pending());
        m.push(line(2, Stream::Stdout, false, b""), 2, collect(&mut out));
        assert_eq!((&out[0].msg[..], out[0].tag), (&b""[..], 1));
    }

    #[test]
    fn owned_messages_work() {
        let mut m = PartialMerger::new(10);
        let mut out = Vec::new();
        let l = Line {
            time_nanos: 1,
            stream: Stream::Stdout,
            partial: false,
            message: Cow::Owned(b"owned".to_vec()),
        };
        m.push(l, 1, collect(&mut out));
        assert_eq!(out[0].msg, b"owned");
    }
}
