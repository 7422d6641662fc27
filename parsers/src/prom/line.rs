//! The general grammar of one sample line: name, label set, value,
//! timestamp and (OpenMetrics) exemplar, checked against the [`Limits`] as
//! it is read. The parser tries the fast path (`fast.rs`) first; this
//! module reads the lines that one leaves (spaces and tabs, `\r\n`,
//! exemplars, repeated labels, anything over a limit, errors) and names
//! the error.
//!
//! The line is read in place in the body, up to its `\n`: no separate pass
//! finds the line first. The caller bounds how far it may read (`limit`),
//! which is how [`Limits::max_line_bytes`] holds without a look ahead.
//!
//! Text format 0.0.4 allows runs of spaces and tabs between all tokens
//! (also inside the braces and before `{`, as Prometheus's lexer does) and
//! at the start and end of the line. OpenMetrics allows exactly one space
//! between name-and-labels, value, timestamp and exemplar, and none
//! elsewhere. Both accept `\r\n` line endings.

use super::error::ErrorKind;
use super::kinds::{Format, Suffix};
use super::limits::Limits;
use super::number;
use super::sample::{Family, Labels, SPANS, Sample, span};
use super::scan;
use super::text::Text;

/// `[a-zA-Z_:]`, the first byte of a metric name.
#[inline]
fn metric_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

/// `[a-zA-Z_]`, the first byte of a label name.
#[inline]
fn label_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

/// The line being read: `text` is the body (or a stretch of it), `b` its
/// bytes up to the read limit.
struct Line<'a, 'b> {
    text: &'a str,
    b: &'b [u8],
    om: bool,
}

impl Line<'_, '_> {
    /// Where the line ends if it ends at `i` (after an optional `\r`): the
    /// index of its `\n`, or the end of the text.
    #[inline]
    fn end_at(&self, i: usize) -> Option<usize> {
        let b = self.b;
        match b.get(i) {
            Some(b'\n') => Some(i),
            Some(b'\r') if b.get(i + 1) == Some(&b'\n') => Some(i + 1),
            Some(b'\r') if i + 1 == self.text.len() => Some(i + 1),
            None if i == self.text.len() => Some(i),
            _ => None,
        }
    }

    /// True at a byte that ends a value or timestamp field (or at the read
    /// limit, which the caller then reports).
    #[inline]
    fn field_end(&self, i: usize) -> bool {
        match self.b.get(i) {
            None | Some(b' ' | b'\n' | b'\r') => true,
            Some(b'\t') => !self.om,
            Some(_) => false,
        }
    }

    /// The field starting at `i`, up to its end. Empty when the read limit
    /// cuts it inside a character (the caller then reports the line as too
    /// long).
    fn field(&self, mut i: usize) -> (&str, usize) {
        let start = i;
        while !self.field_end(i) {
            i += 1;
        }
        (self.text.get(start..i).unwrap_or(""), i)
    }

    /// After a separator at `i`: the index of the next field. Text format:
    /// one or more spaces or tabs; OpenMetrics: exactly one space.
    #[inline]
    fn separator(&self, i: usize) -> Option<usize> {
        if self.om {
            (self.b.get(i) == Some(&b' ')).then_some(i + 1)
        } else {
            let j = skip_ws(self.b, i);
            (j > i).then_some(j)
        }
    }
}

/// Parses the sample line starting at `start` in `text`, reading no byte at
/// or past `limit`. Returns the sample (in a family of its own: the caller
/// knows the families) and sets `line_end` to where the line ends (the
/// index of its `\n`, or `text.len()`). `names` is scratch space for the duplicate check, reused
/// from line to line.
#[inline(always)]
pub(crate) fn sample<'a>(
    text: &'a str,
    start: usize,
    limit: usize,
    format: Format,
    limits: &Limits,
    names: &mut Vec<&'a str>,
    line_end: &mut usize,
) -> Result<Sample<'a>, ErrorKind> {
    let om = format == Format::OpenMetrics;
    let line = Line {
        text,
        b: &text.as_bytes()[..limit],
        om,
    };
    let b = line.b;
    let name_start = if om { start } else { skip_ws(b, start) };
    if !b.get(name_start).is_some_and(|&c| metric_start(c)) {
        return Err(ErrorKind::BadMetricName);
    }
    let mut i = scan::name_end::<true>(b, name_start + 1);
    let name = &text[name_start..i];
    if name.len() > limits.max_label_value_bytes {
        return Err(ErrorKind::LabelValueTooLong);
    }
    let mut labels = Labels::NONE;
    let brace = if om { i } else { skip_ws(b, i) };
    let braces = b.get(brace) == Some(&b'{');
    if braces {
        let (l, end) = label_set(text, b, brace + 1, om, limits, names)?;
        labels = l;
        i = end;
    }
    let series = &text[name_start..i];

    let Some(v) = line.separator(i).filter(|&v| line.end_at(v).is_none()) else {
        return Err(if line.end_at(skip_ws(b, i)).is_some() {
            ErrorKind::MissingValue
        } else if !braces && !matches!(b.get(i), Some(b' ' | b'\t')) {
            ErrorKind::BadMetricName // `foo-bar 1`
        } else {
            ErrorKind::BadValue
        });
    };
    let (value, mut i) = match number::decimal_at(b, v) {
        Some((value, end)) if line.field_end(end) => (value, end),
        _ => {
            let (field, end) = line.field(v);
            (number::value(field).ok_or(ErrorKind::BadValue)?, end)
        }
    };

    let mut timestamp_ms = None;
    let end = if om {
        match line.end_at(i) {
            Some(end) => end,
            None => {
                let t = line.separator(i).ok_or(ErrorKind::UnexpectedText)?;
                if b.get(t) != Some(&b'#') {
                    let (field, end) = line.field(t);
                    if field.is_empty() {
                        return Err(ErrorKind::UnexpectedText);
                    }
                    let ms = number::seconds_as_millis(field).ok_or(ErrorKind::BadTimestamp)?;
                    timestamp_ms = Some(ms);
                    i = end;
                }
                match line.end_at(i) {
                    Some(end) => end,
                    None if b.get(i..i + 2) == Some(b" #") => {
                        exemplar(&line, i + 1, names).ok_or(ErrorKind::BadExemplar)?
                    }
                    None => return Err(ErrorKind::UnexpectedText),
                }
            }
        }
    } else {
        let t = skip_ws(b, i);
        match line.end_at(t) {
            Some(end) => end,
            None if t == i => return Err(ErrorKind::UnexpectedText),
            None => {
                if b.get(t) == Some(&b'#') {
                    return Err(ErrorKind::UnexpectedText);
                }
                let (ms, after) = number::millis_at(b, t)
                    .filter(|&(_, after)| line.field_end(after))
                    .ok_or(ErrorKind::BadTimestamp)?;
                timestamp_ms = Some(ms);
                line.end_at(skip_ws(b, after))
                    .ok_or(ErrorKind::UnexpectedText)?
            }
        }
    };
    *line_end = end;
    Ok(Sample {
        name,
        labels,
        series,
        value,
        timestamp_ms,
        family: Family::undeclared(name, format),
        suffix: Suffix::None,
    })
}

/// Checks the label set starting after `{` at `i`; returns it and the index
/// after its `}`.
fn label_set<'a>(
    text: &'a str,
    b: &[u8],
    mut i: usize,
    om: bool,
    limits: &Limits,
    names: &mut Vec<&'a str>,
) -> Result<(Labels<'a>, usize), ErrorKind> {
    let open = i;
    let mut labels = Labels::new(Text::utf8(&text[open..]));
    names.clear();
    loop {
        match b.get(i) {
            Some(&c) if label_start(c) => {}
            Some(b'}') => break,
            Some(b' ' | b'\t') if !om => {
                i = skip_ws(b, i);
                continue;
            }
            Some(_) => return Err(ErrorKind::BadLabelName),
            None => return Err(ErrorKind::BadLabels),
        }
        let name_start = i;
        i = scan::name_end::<false>(b, i + 1);
        let name_end = i;
        if name_end - name_start > limits.max_label_name_bytes {
            return Err(ErrorKind::LabelNameTooLong);
        }
        if names.len() >= limits.max_labels {
            return Err(ErrorKind::TooManyLabels);
        }
        names.push(&text[name_start..name_end]);
        if b.get(i..i + 2) == Some(b"=\"") {
            i += 2;
        } else {
            i = equals_quote(b, i, om)?;
        }
        let value_start = i;
        loop {
            i = scan::value_stop(b, i).ok_or(ErrorKind::BadLabels)?;
            match b[i] {
                b'"' => break,
                b'\\' if !matches!(b.get(i + 1), None | Some(b'\n')) => {
                    labels.escaped = true;
                    i += 2;
                }
                _ => return Err(ErrorKind::BadLabels), // `\n`: the line ended
            }
        }
        if i - value_start > limits.max_label_value_bytes {
            return Err(ErrorKind::LabelValueTooLong);
        }
        let k = usize::from(labels.known);
        if k < SPANS && i - open <= usize::from(u16::MAX) {
            // Offsets from `open`, all below `i - open`: they fit.
            labels.spans[k] = span(
                name_start - open,
                name_end - open,
                value_start - open,
                i - open,
            );
            labels.known += 1;
        }
        i += 1;
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => {}
            Some(b' ' | b'\t') if !om => {
                i = skip_ws(b, i);
                match b.get(i) {
                    Some(b',') => i += 1,
                    Some(b'}') => {}
                    _ => return Err(ErrorKind::BadLabels),
                }
            }
            _ => return Err(ErrorKind::BadLabels),
        }
    }
    if has_duplicates(names) {
        return Err(ErrorKind::DuplicateLabel);
    }
    labels.bytes = i - open;
    labels.len = names.len() as u32;
    if labels.known as u32 != labels.len.min(SPANS as u32) {
        labels.known = 0; // a later label did not fit: read them all again
    }
    Ok((labels, i + 1))
}

/// `=` and the opening `"` after a label name at `i` (text format: with
/// spaces or tabs around `=`); the index after the quote.
#[cold]
fn equals_quote(b: &[u8], name_end: usize, om: bool) -> Result<usize, ErrorKind> {
    let mut i = if om { name_end } else { skip_ws(b, name_end) };
    if b.get(i) != Some(&b'=') {
        return Err(
            if i == name_end && !matches!(b.get(i), None | Some(b'}' | b',' | b' ' | b'\t')) {
                ErrorKind::BadLabelName // `a-b="c"`, `a"b"`
            } else {
                ErrorKind::BadLabels
            },
        );
    }
    i += 1;
    if !om {
        i = skip_ws(b, i);
    }
    if b.get(i) != Some(&b'"') {
        return Err(ErrorKind::BadLabels);
    }
    Ok(i + 1)
}

/// Checks an OpenMetrics exemplar starting at its `#`: `# {labels} value`
/// with an optional ` timestamp`, up to the end of the line; returns where
/// the line ends.
fn exemplar<'a>(line: &Line<'a, '_>, i: usize, names: &mut Vec<&'a str>) -> Option<usize> {
    let b = line.b;
    if b.get(i..i + 3) != Some(b"# {") {
        return None;
    }
    let (_, end) = label_set(line.text, b, i + 3, true, &Limits::UNLIMITED, names).ok()?;
    let v = line.separator(end)?;
    let (value, end) = line.field(v);
    number::value(value)?;
    if let Some(eol) = line.end_at(end) {
        return Some(eol);
    }
    let t = line.separator(end)?;
    let (ts, end) = line.field(t);
    number::seconds_as_millis(ts)?;
    line.end_at(end)
}

#[inline]
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    i
}

/// Whether a name repeats: pairwise for a few, sorted beyond (so a line of
/// many labels costs `n log n`, not `n²`).
fn has_duplicates(names: &mut [&str]) -> bool {
    if names.len() <= 8 {
        return names
            .iter()
            .enumerate()
            .any(|(k, a)| names[..k].contains(a));
    }
    names.sort_unstable();
    names.windows(2).any(|w| w[0] == w[1])
}

/// The metric name at the start of `s`, if any, and the rest.
pub(crate) fn split_metric_name(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    if !b.first().is_some_and(|&c| metric_start(c)) {
        return None;
    }
    Some(s.split_at(scan::name_end::<true>(b, 1)))
}
