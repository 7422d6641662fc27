//! [`Parser`]: the iterator over a body's samples. Splits lines, tracks
//! the current family from `# TYPE` / `# HELP` / `# UNIT`, and enforces
//! OpenMetrics' `# EOF`.

use memchr::memchr;

use super::error::{Error, ErrorKind};
use super::fast;
use super::kinds::{Format, Suffix};
use super::limits::Limits;
use super::line::{self, skip_ws};
use super::sample::{Family, Sample};
use super::utf8::Utf8Window;

/// Streams the samples of one scrape body, in order.
///
/// Yields `Ok(sample)` for each sample line and `Err(error)` for each line
/// it skipped (see [`ErrorKind`]); comments, `# HELP` / `# TYPE` /
/// `# UNIT` lines and blank lines yield nothing. Each sample borrows from
/// the body. The parser allocates only scratch vectors for the duplicate
/// label check (growing to the largest label count seen), never per
/// sample.
///
/// ```
/// use kubeship_parsers::prom::{Format, Limits, MetricType, Parser, Suffix};
///
/// let body = concat!(
///     "# TYPE http_requests counter\n",
///     "http_requests_total{code=\"200\"} 1027 1395066363.5\n",
///     "# EOF\n",
/// );
/// let mut parser = Parser::new(body.as_bytes(), Format::OpenMetrics, Limits::default());
/// let sample = parser.next().unwrap().unwrap();
/// assert_eq!(sample.name, "http_requests_total");
/// assert_eq!(sample.labels.get("code").as_deref(), Some("200"));
/// assert_eq!(sample.value, 1027.0);
/// assert_eq!(sample.timestamp_ms, Some(1_395_066_363_500));
/// assert_eq!(sample.family.kind, MetricType::Counter);
/// assert_eq!(sample.suffix, Suffix::Total);
/// assert!(parser.next().is_none());
/// ```
#[derive(Debug)]
pub struct Parser<'a> {
    pub(super) body: &'a [u8],
    /// Start of the next line.
    pub(super) pos: usize,
    /// Where the lines to parse end (OpenMetrics: at the final `# EOF`).
    pub(super) end: usize,
    /// Number of the last line read.
    pub(super) line: u64,
    pub(super) format: Format,
    pub(super) limits: Limits,
    pub(super) utf8: Utf8Window<'a>,
    pub(super) family: Family<'a>,
    /// Scratch space for the duplicate label check of the general path
    /// (`line.rs`) and of the fast path (`fast.rs`).
    pub(super) names: Vec<&'a str>,
    pub(super) keys: Vec<fast::NameKey>,
    /// An error to yield before reading on (a missing `# EOF`).
    pub(super) pending: Option<Error>,
    /// Tests only: read every line with the general grammar.
    #[cfg(test)]
    general_only: bool,
}

impl<'a> Parser<'a> {
    /// A parser over a whole body in `format`, checking `limits`.
    ///
    /// An OpenMetrics body whose last line is not `# EOF` (optionally
    /// followed by `\n` or `\r\n`) yields one
    /// [`MissingEof`](ErrorKind::MissingEof) error and no samples.
    #[must_use]
    pub fn new(body: &'a [u8], format: Format, limits: Limits) -> Parser<'a> {
        let mut parser = Parser {
            body,
            pos: 0,
            end: body.len(),
            line: 0,
            format,
            limits,
            utf8: Utf8Window::new(body),
            family: Family::undeclared("", format),
            names: Vec::new(),
            keys: Vec::new(),
            pending: None,
            #[cfg(test)]
            general_only: false,
        };
        if format == Format::OpenMetrics {
            match final_eof(body) {
                Some(start) => parser.end = start,
                None => {
                    parser.end = 0;
                    parser.pending = Some(Error {
                        line: count_lines(body),
                        offset: memchr::memrchr(b'\n', trim_newline(body)).map_or(0, |i| i + 1),
                        kind: ErrorKind::MissingEof,
                    });
                }
            }
        }
        parser
    }

    /// The format being parsed.
    #[must_use]
    pub fn format(&self) -> Format {
        self.format
    }

    /// Reads the sample line starting at `start` (the current line): the
    /// sample, or why the line was skipped. Moves `pos` to the next line.
    #[inline(always)]
    fn sample_at(&mut self, start: usize) -> Result<Sample<'a>, Error> {
        let (text, offset) = self.utf8.text_from(start);
        let (s, family) = (start - offset, &self.family);
        let fast = match self.format {
            _ if !self.fast_path() => None,
            Format::Text => fast::sample::<false>(text, s, family, &self.limits, &mut self.keys),
            Format::OpenMetrics => {
                fast::sample::<true>(text, s, family, &self.limits, &mut self.keys)
            }
        };
        if let Some((sample, end)) = fast {
            self.pos = offset + end + 1;
            return Ok(sample);
        }
        let mut sample = self.general_sample(start, text.as_str(), offset)?;
        let current = &self.family;
        if let Some(rest) = sample.name.strip_prefix(current.name)
            && !current.name.is_empty()
            && let Some(suffix) = Suffix::of(rest.as_bytes(), current.kind, self.format)
        {
            sample.family = *current;
            sample.suffix = suffix;
        }
        Ok(sample)
    }

    /// The sample line starting at `start` read with the general grammar
    /// (`text` is the valid stretch holding it, from `offset`): the
    /// sample, or why the line was skipped. Moves `pos` to the next line.
    #[inline(never)]
    fn general_sample(
        &mut self,
        start: usize,
        text: &'a str,
        offset: usize,
    ) -> Result<Sample<'a>, Error> {
        // Read at most a line of the longest length, its `\r\n`, and no
        // further than valid UTF-8 and the lines to parse go.
        let limit = start
            .saturating_add(self.limits.max_line_bytes)
            .saturating_add(2)
            .min(self.end)
            .min(offset + text.len())
            - offset;
        let mut end = 0;
        let parsed = line::sample(
            text,
            start - offset,
            limit,
            self.format,
            &self.limits,
            &mut self.names,
            &mut end,
        );
        let sample = match parsed {
            // The end of the valid stretch is the end of a line only at the
            // end of the body; elsewhere an invalid byte follows.
            Ok(_) if end == text.len() && offset + end < self.body.len() => {
                return Err(self.skip_line(start, ErrorKind::InvalidUtf8));
            }
            Ok(sample) => sample,
            Err(kind) => return Err(self.skip_line(start, kind)),
        };
        let end = end + offset;
        self.pos = end + 1;
        let stop = if end > start && self.body[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        if stop - start > self.limits.max_line_bytes {
            return Err(self.error(start, ErrorKind::LineTooLong));
        }
        Ok(sample)
    }

    /// Whether to try [`fast::sample`] first (always, except in tests that
    /// compare the general path with it).
    #[cfg(not(test))]
    #[inline(always)]
    pub(super) fn fast_path(&self) -> bool {
        true
    }

    #[cfg(test)]
    pub(super) fn fast_path(&self) -> bool {
        !self.general_only
    }

    /// This parser with the fast path turned off: every line is read with
    /// the general grammar.
    #[cfg(test)]
    pub(crate) fn general_only(mut self) -> Parser<'a> {
        self.general_only = true;
        self
    }

    /// The error for the current line, which starts at `start`.
    pub(super) fn error(&self, start: usize, kind: ErrorKind) -> Error {
        Error {
            line: self.line,
            offset: start,
            kind,
        }
    }

    /// A sample line that did not parse: moves on to the next line, and
    /// reports this one as too long or not UTF-8 if it is (the parse
    /// stopped at the read limit), else as `kind`.
    #[cold]
    fn skip_line(&mut self, start: usize, kind: ErrorKind) -> Error {
        let (stop, next) = self.line_end(start);
        self.pos = next;
        let kind = if stop - start > self.limits.max_line_bytes {
            ErrorKind::LineTooLong
        } else if self.utf8.get(start, stop).is_none() {
            ErrorKind::InvalidUtf8
        } else {
            kind
        };
        self.error(start, kind)
    }

    /// The line starting at `start`: where it stops (before `\r\n` or
    /// `\n`) and where the next one starts.
    fn line_end(&self, start: usize) -> (usize, usize) {
        let (mut stop, next) = match memchr(b'\n', &self.body[start..self.end]) {
            Some(i) => (start + i, start + i + 1),
            None => (self.end, self.end),
        };
        if stop > start && self.body[stop - 1] == b'\r' {
            stop -= 1;
        }
        (stop, next)
    }

    /// A line that does not start with a metric name: blank, a comment or
    /// metadata, or (text format) a sample after spaces. `None` when there
    /// is nothing to yield. Moves `pos` to the next line.
    fn other_line(&mut self, start: usize) -> Option<Result<Sample<'a>, Error>> {
        let (stop, next) = self.line_end(start);
        self.pos = next;
        if stop - start > self.limits.max_line_bytes {
            return Some(Err(self.error(start, ErrorKind::LineTooLong)));
        }
        let bytes = &self.body[start..stop];
        let first = match self.format {
            Format::Text => skip_ws(bytes, 0),
            Format::OpenMetrics => 0,
        };
        match bytes.get(first) {
            None => None,
            Some(b'#') => match self.comment(start, stop, first) {
                Ok(()) => None,
                Err(kind) => Some(Err(self.error(start, kind))),
            },
            Some(_) => Some(self.sample_at(start)),
        }
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Sample<'a>, Error>;

    // Inlined into the caller's loop, so that a sample's fields can stay in
    // registers: written to the return slot and read back at once, the
    // reads stalled on the narrower writes.
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.pending.is_some() {
            return self.pending.take().map(Err);
        }
        while self.pos < self.end {
            let start = self.pos;
            self.line += 1;
            let first = self.body[start];
            if first.is_ascii_alphabetic() || first == b'_' || first == b':' {
                return Some(self.sample_at(start));
            }
            if first == b'#' && self.fast_path() && self.plain_metadata(start) {
                continue;
            }
            if let Some(item) = self.other_line(start) {
                return Some(item);
            }
        }
        None
    }
}

/// Where the body's last line starts, if that line is `# EOF`.
fn final_eof(body: &[u8]) -> Option<usize> {
    let last = trim_newline(body);
    let start = last.len().checked_sub(5)?;
    (&last[start..] == b"# EOF" && (start == 0 || last[start - 1] == b'\n')).then_some(start)
}

/// The body without one final `\n` or `\r\n`.
fn trim_newline(body: &[u8]) -> &[u8] {
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    body.strip_suffix(b"\r").unwrap_or(body)
}

fn count_lines(body: &[u8]) -> u64 {
    let newlines = memchr::memchr_iter(b'\n', body).count() as u64;
    newlines + u64::from(!body.is_empty() && !body.ends_with(b"\n"))
}
