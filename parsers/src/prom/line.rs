//! The grammar of one sample line: name, label set, value, timestamp and
//! (OpenMetrics) exemplar, checked against the [`Limits`] as it is read.
//!
//! Text format 0.0.4 allows runs of spaces and tabs between all tokens
//! (also inside the braces and before `{`, as Prometheus's lexer does) and
//! at the start and end of the line. OpenMetrics allows exactly one space
//! between name-and-labels, value, timestamp and exemplar, and none
//! elsewhere.

use super::error::ErrorKind;
use super::limits::Limits;
use super::number;
use super::sample::Labels;

/// Character classes of the name grammars.
const LABEL_START: u8 = 1; // [a-zA-Z_]
const LABEL_CONT: u8 = 2; // [a-zA-Z0-9_]
const NAME_START: u8 = 4; // [a-zA-Z_:]
const NAME_CONT: u8 = 8; // [a-zA-Z0-9_:]

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let alpha = b.is_ascii_alphabetic() || b == b'_';
        if alpha {
            t[c] = LABEL_START | LABEL_CONT | NAME_START | NAME_CONT;
        } else if b.is_ascii_digit() {
            t[c] = LABEL_CONT | NAME_CONT;
        } else if b == b':' {
            t[c] = NAME_START | NAME_CONT;
        }
        c += 1;
    }
    t
};

/// A sample line's parts, before its family is known.
pub(crate) struct Parts<'a> {
    pub name: &'a str,
    pub labels: Labels<'a>,
    pub series: &'a str,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

/// Parses one sample line (without its line ending). `names` is scratch
/// space for the duplicate-label check, reused from line to line.
pub(crate) fn sample<'a>(
    line: &'a str,
    om: bool,
    limits: &Limits,
    names: &mut Vec<&'a str>,
) -> Result<Parts<'a>, ErrorKind> {
    let b = line.as_bytes();
    let start = if om { 0 } else { skip_ws(b, 0) };
    let mut i = name_end(b, start, NAME_START, NAME_CONT).ok_or(ErrorKind::BadMetricName)?;
    let name = &line[start..i];
    if name.len() > limits.max_label_value_bytes {
        return Err(ErrorKind::LabelValueTooLong);
    }
    let mut labels = Labels::NONE;
    let brace = if om { i } else { skip_ws(b, i) };
    let braces = b.get(brace) == Some(&b'{');
    if braces {
        let (l, end) = label_set(line, brace + 1, om, limits, names)?;
        labels = l;
        i = end;
    }
    let series = &line[start..i];

    let Some((value, mut i)) = field(line, i, om) else {
        return Err(if skip_ws(b, i) == b.len() {
            ErrorKind::MissingValue
        } else if !braces && !matches!(b[i], b' ' | b'\t') {
            ErrorKind::BadMetricName // `foo-bar 1`
        } else {
            ErrorKind::BadValue
        });
    };
    let value = number::value(value).ok_or(ErrorKind::BadValue)?;

    let mut timestamp_ms = None;
    if om {
        if i < b.len() && b.get(i + 1) != Some(&b'#') {
            let (ts, end) = field(line, i, true).ok_or(ErrorKind::UnexpectedText)?;
            timestamp_ms = Some(number::seconds_as_millis(ts).ok_or(ErrorKind::BadTimestamp)?);
            i = end;
        }
        if i < b.len() {
            if b.get(i + 1) != Some(&b'#') {
                return Err(ErrorKind::UnexpectedText);
            }
            exemplar(line, i + 1, names).ok_or(ErrorKind::BadExemplar)?;
        }
    } else if let Some((ts, end)) = field(line, i, false) {
        if ts.starts_with('#') {
            return Err(ErrorKind::UnexpectedText);
        }
        timestamp_ms = Some(number::millis(ts).ok_or(ErrorKind::BadTimestamp)?);
        if skip_ws(b, end) != b.len() {
            return Err(ErrorKind::UnexpectedText);
        }
    }
    Ok(Parts {
        name,
        labels,
        series,
        value,
        timestamp_ms,
    })
}

/// The next field after position `i`: OpenMetrics one space and a
/// non-empty run of non-spaces, text format spaces/tabs and a run of
/// others. Returns the field and where it ends; `None` when there is no
/// separator or no field after it.
fn field(line: &str, i: usize, om: bool) -> Option<(&str, usize)> {
    let b = line.as_bytes();
    let start = if om {
        (b.get(i) == Some(&b' ')).then_some(i + 1)?
    } else {
        let s = skip_ws(b, i);
        (s > i).then_some(s)?
    };
    let mut end = start;
    while end < b.len() && b[end] != b' ' && (om || b[end] != b'\t') {
        end += 1;
    }
    (end > start).then(|| (&line[start..end], end))
}

/// Checks the label set starting after `{` at `i`; returns it and the index
/// after its `}`.
pub(crate) fn label_set<'a>(
    line: &'a str,
    mut i: usize,
    om: bool,
    limits: &Limits,
    names: &mut Vec<&'a str>,
) -> Result<(Labels<'a>, usize), ErrorKind> {
    let b = line.as_bytes();
    let open = i;
    let mut escaped = false;
    names.clear();
    loop {
        if !om {
            i = skip_ws(b, i);
        }
        match b.get(i) {
            Some(b'}') => break,
            None => return Err(ErrorKind::BadLabels),
            Some(_) => {}
        }
        let name_start = i;
        i = name_end(b, i, LABEL_START, LABEL_CONT).ok_or(ErrorKind::BadLabelName)?;
        if i - name_start > limits.max_label_name_bytes {
            return Err(ErrorKind::LabelNameTooLong);
        }
        if names.len() >= limits.max_labels {
            return Err(ErrorKind::TooManyLabels);
        }
        names.push(&line[name_start..i]);
        let name_end = i;
        if !om {
            i = skip_ws(b, i);
        }
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
        i += 1;
        let value_start = i;
        loop {
            i = find_quote_or_backslash(b, i).ok_or(ErrorKind::BadLabels)?;
            if b[i] == b'"' {
                break;
            }
            escaped = true;
            i += 2;
        }
        if i - value_start > limits.max_label_value_bytes {
            return Err(ErrorKind::LabelValueTooLong);
        }
        i += 1;
        if !om {
            i = skip_ws(b, i);
        }
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => {}
            _ => return Err(ErrorKind::BadLabels),
        }
    }
    if has_duplicates(names) {
        return Err(ErrorKind::DuplicateLabel);
    }
    let labels = Labels {
        text: &line[open..i],
        len: names.len() as u32,
        escaped,
    };
    Ok((labels, i + 1))
}

/// Checks an OpenMetrics exemplar starting at its `#`: `# {labels} value`
/// with an optional ` timestamp`, up to the end of the line.
fn exemplar<'a>(line: &'a str, i: usize, names: &mut Vec<&'a str>) -> Option<()> {
    let b = line.as_bytes();
    if b.get(i..i + 3) != Some(b"# {") {
        return None;
    }
    let (_, end) = label_set(line, i + 3, true, &Limits::UNLIMITED, names).ok()?;
    let (value, end) = field(line, end, true)?;
    number::value(value)?;
    if end == b.len() {
        return Some(());
    }
    let (ts, end) = field(line, end, true)?;
    number::seconds_as_millis(ts)?;
    (end == b.len()).then_some(())
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `x` equal to `byte` (exact up to the first
/// match, which is all that is used).
#[inline]
fn bytes_equal(x: u64, byte: u8) -> u64 {
    let y = x ^ (LO * u64::from(byte));
    y.wrapping_sub(LO) & !y & HI
}

/// Index of the first byte at or after `i` that `hit` marks in a word,
/// eight bytes at a time (label values are mostly short: `memchr`'s setup
/// costs more than the scan).
#[inline]
fn find_in_words(b: &[u8], mut i: usize, hit: impl Fn(u64) -> u64) -> Option<usize> {
    while let Some(word) = b.get(i..i + 8) {
        let m = hit(u64::from_le_bytes(word.try_into().ok()?));
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let tail = b.get(i..)?;
    let mut word = [0u8; 8];
    word[..tail.len()].copy_from_slice(tail);
    let m = hit(u64::from_le_bytes(word)) & ((1u64 << (tail.len() * 8)) - 1);
    (m != 0).then(|| i + (m.trailing_zeros() / 8) as usize)
}

/// Index of the first `"` or `\\` at or after `i`.
#[inline]
pub(crate) fn find_quote_or_backslash(b: &[u8], i: usize) -> Option<usize> {
    find_in_words(b, i, |x| bytes_equal(x, b'"') | bytes_equal(x, b'\\'))
}

/// Index of the first `"` at or after `i`.
#[inline]
pub(crate) fn find_quote(b: &[u8], i: usize) -> Option<usize> {
    find_in_words(b, i, |x| bytes_equal(x, b'"'))
}

/// End of the label name starting at `i` (which is known to be one).
#[inline]
pub(crate) fn label_name_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && CLASS[b[i] as usize] & LABEL_CONT != 0 {
        i += 1;
    }
    i
}

/// End of the name starting at `i`, if one does.
#[inline]
fn name_end(b: &[u8], mut i: usize, start: u8, cont: u8) -> Option<usize> {
    if CLASS[*b.get(i)? as usize] & start == 0 {
        return None;
    }
    i += 1;
    while i < b.len() && CLASS[b[i] as usize] & cont != 0 {
        i += 1;
    }
    Some(i)
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
    let end = name_end(s.as_bytes(), 0, NAME_START, NAME_CONT)?;
    Some(s.split_at(end))
}
