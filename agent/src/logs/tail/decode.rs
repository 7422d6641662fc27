//! Per-file decoding: framing, partial merge, multiline grouping, record encoding.
//!
//! A [`Decoder`] belongs to one file. Lines go in with their file offset; records
//! come out as JSON in the batch builder. The decoder remembers the offset of the
//! oldest line it still holds (a pending partial or multiline group) so that the
//! file's checkpoint never passes it.

use std::time::Instant;

use kubeship_parsers::{Format, Grouper, Line, PartialMerger, Record, Stream, parse_line};

use crate::logs::batch::BatchBuilder;
use crate::logs::encode::{RecordForm, RecordRef, encode_record, encode_text};
pub use crate::logs::enrich::ContainerInfo;
use crate::logs::metrics::ParserKind;

/// Per-round counters, added to the metrics in bulk.
#[derive(Debug, Default)]
pub struct Counters {
    /// Lines read.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Records cut to the maximum size.
    pub truncated: u64,
    /// Records with invalid UTF-8 replaced.
    pub invalid_utf8: u64,
    /// Malformed CRI lines.
    pub malformed_cri: u64,
    /// Malformed docker lines.
    pub malformed_docker: u64,
    /// Lines of excluded containers, not shipped.
    pub excluded: u64,
    /// Records shipped with path metadata only.
    pub misses: u64,
    /// Records whose app-level parsing failed, by parser.
    pub parse_failed: ParseFailures,
    /// Records shipped without their `log_processed` (too large).
    pub reduced_processed: u64,
    /// Records shipped with a reduced `kubernetes` object (too large).
    pub reduced_kubernetes: u64,
}

/// Lines a pod asked to parse that did not, per parser.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ParseFailures {
    /// `json`.
    pub json: u64,
    /// `logfmt`.
    pub logfmt: u64,
    /// `regex:<name>`.
    pub regex: u64,
}

impl ParseFailures {
    /// Counts one failure of `parser`.
    pub fn add(&mut self, parser: ParserKind) {
        match parser {
            ParserKind::Json => self.json += 1,
            ParserKind::Logfmt => self.logfmt += 1,
            ParserKind::Regex => self.regex += 1,
        }
    }

    /// Each parser with its count.
    pub fn each(self) -> [(ParserKind, u64); 3] {
        [
            (ParserKind::Json, self.json),
            (ParserKind::Logfmt, self.logfmt),
            (ParserKind::Regex, self.regex),
        ]
    }
}

/// Where decoded records go, and the clock of this round.
pub struct BatchTarget<'a> {
    /// The open batch.
    pub builder: &'a mut BatchBuilder,
    /// Counters of this round.
    pub counters: &'a mut Counters,
    /// Monotonic now.
    pub now: Instant,
    /// Monotonic now in milliseconds (for multiline timeouts).
    pub now_ms: u64,
    /// Wall clock now, unix nanoseconds (the time of malformed lines).
    pub wall_nanos: i64,
    /// Largest `log_processed` object (JSON bytes) a record may carry.
    pub max_processed: usize,
}

impl BatchTarget<'_> {
    fn emit(&mut self, info: &ContainerInfo, rec: Record<'_>) {
        let mut e = crate::logs::encode::Encoded::default();
        let form = self.builder.form();
        if info.log_only {
            let mut t = crate::logs::encode::EncodedText::default();
            self.builder
                .push(&info.dest, rec.time_nanos, self.now, |buf| {
                    t = encode_text(rec.message, form, buf);
                    t.len
                });
            self.counters.invalid_utf8 += u64::from(t.replaced);
            self.counters.truncated += u64::from(rec.truncated || t.cut);
            return;
        }
        let max_processed = self.max_processed;
        // The CloudWatch form keeps each container's `kubernetes` object apart, once
        // per batch: most of a record with pod metadata, so the records waiting in
        // the sink's queues take a third of the memory. (The local sink writes the
        // buffer's JSON lines as they are.)
        let apart = form == RecordForm::JsonString;
        self.builder.push_with_end(
            &info.dest,
            rec.time_nanos,
            self.now,
            Some(&info.kubernetes),
            |buf| {
                e = encode_record(
                    &RecordRef {
                        message: rec.message,
                        stream: rec.stream,
                        time_nanos: rec.time_nanos,
                        kubernetes: &info.kubernetes,
                        parser: info.parser.as_ref(),
                        max_processed,
                        kubernetes_reduced: info.kubernetes_reduced,
                        kubernetes_apart: apart,
                    },
                    form,
                    buf,
                );
                (e.json_len, e.kubernetes_apart)
            },
        );
        let c = &mut self.counters;
        c.truncated += u64::from(rec.truncated || e.log_cut);
        c.reduced_processed += u64::from(e.processed_dropped);
        c.reduced_kubernetes += u64::from(e.kubernetes_reduced);
        c.invalid_utf8 += u64::from(e.replaced);
        c.misses += u64::from(info.miss);
        if e.parse_failed
            && let Some(p) = &info.parser
        {
            c.parse_failed.add(p.kind());
        }
    }
}

/// Sends a merged record through the container's multiline grouping, if any.
fn group(
    groupers: &mut Option<Box<[Grouper; 2]>>,
    rec: Record<'_>,
    info: &ContainerInfo,
    out: &mut BatchTarget<'_>,
) {
    match groupers {
        Some(g) => {
            let now_ms = out.now_ms;
            g[rec.stream.index()].push(rec, now_ms, |r| out.emit(info, r));
        }
        None => out.emit(info, rec),
    }
}

/// Decoding state of one file.
pub struct Decoder {
    format: Option<Format>,
    merger: PartialMerger,
    groupers: Option<Box<[Grouper; 2]>>,
}

impl Decoder {
    /// A decoder for a file of the container described by `info`.
    pub fn new(info: &ContainerInfo, max_record_bytes: usize) -> Self {
        let groupers = info.multiline.as_ref().map(|(rule, flush_ms)| {
            Box::new([
                Grouper::new(rule.clone(), max_record_bytes, *flush_ms),
                Grouper::new(rule.clone(), max_record_bytes, *flush_ms),
            ])
        });
        Self {
            format: None,
            merger: PartialMerger::new(max_record_bytes),
            groupers,
        }
    }

    /// Decodes one line (without its newline) that starts at file offset `tag`.
    pub fn line(&mut self, line: &[u8], tag: u64, info: &ContainerInfo, out: &mut BatchTarget<'_>) {
        if line.is_empty() {
            return;
        }
        if info.excluded {
            out.counters.lines += 1;
            out.counters.excluded += 1;
            return;
        }
        let format = *self.format.get_or_insert_with(|| Format::detect(line));
        out.counters.lines += 1;
        let parsed = match parse_line(format, line) {
            Ok(l) => l,
            Err(_) => {
                match format {
                    Format::Cri => out.counters.malformed_cri += 1,
                    Format::Docker => out.counters.malformed_docker += 1,
                }
                Line {
                    time_nanos: out.wall_nanos,
                    stream: Stream::Stdout,
                    partial: false,
                    message: line.into(),
                }
            }
        };
        let Self {
            merger, groupers, ..
        } = self;
        merger.push(parsed, tag, |rec| group(groupers, rec, info, out));
    }

    /// Emits multiline groups whose flush timeout passed.
    pub fn flush_expired(&mut self, info: &ContainerInfo, out: &mut BatchTarget<'_>) {
        if let Some(g) = &mut self.groupers {
            let now_ms = out.now_ms;
            for gr in g.iter_mut() {
                gr.flush_expired(now_ms, |r| out.emit(info, r));
            }
        }
    }

    /// Emits pending partial records (a writer that never finished its line).
    pub fn flush_partials(&mut self, info: &ContainerInfo, out: &mut BatchTarget<'_>) {
        if self.merger.has_pending() {
            let Self {
                merger, groupers, ..
            } = self;
            merger.flush(|rec| group(groupers, rec, info, out));
        }
    }

    /// Emits everything held: pending partials, then pending groups.
    pub fn flush_all(&mut self, info: &ContainerInfo, out: &mut BatchTarget<'_>) {
        self.flush_partials(info, out);
        if let Some(g) = &mut self.groupers {
            for gr in g.iter_mut() {
                gr.flush(|r| out.emit(info, r));
            }
        }
    }

    /// Offset of the oldest line still held, if any.
    pub fn pending_tag(&self) -> Option<u64> {
        let g = self
            .groupers
            .as_ref()
            .map(|g| [g[0].pending_tag(), g[1].pending_tag()])
            .unwrap_or([None, None]);
        [self.merger.pending_tag(), g[0], g[1]]
            .into_iter()
            .flatten()
            .min()
    }
}
