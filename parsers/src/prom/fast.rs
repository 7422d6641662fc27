//! The fast path for sample lines as exporters write them: one space
//! between fields, no spaces inside the braces, no `\r`, no exemplar, no
//! trailing comma, no repeated label, nothing over a limit. Such a line is
//! read once with few branches;
//! anything else, valid or not, makes [`sample`] return `None` and the
//! parser reads the line again with the general grammar ([`super::line`]),
//! which also names the error. So this path never reports an error, and
//! what it accepts it returns exactly as the general path would: the
//! property tests in `roundtrip.rs` compare the two on random bodies.
//!
//! The lines it takes are valid in both formats, except the timestamp:
//! integer milliseconds in the text format, seconds in OpenMetrics.
//!
//! [`metadata`] does the same for `# HELP` and `# TYPE` lines: one space
//! after `#`, the keyword and the name, a known type word, no `\r`.

use memchr::memchr;

use super::kinds::{Format, MetricType, Suffix};
use super::limits::Limits;
use super::number;
use super::sample::{Family, Labels, SPANS, Sample, Span, span};
use super::scan;
use super::text::Text;

/// The sample line starting at `start` in `text`, in `family` (the one
/// declared last) if its name is the family's plus a suffix of its type,
/// and the index of the `\n` that ends the line; `None` when the line is
/// not of the plain form above (the caller then parses it with
/// [`super::line::sample`]). `OM` picks the timestamp's form; `keys` is
/// scratch space for the duplicate check, reused from line to line.
#[inline(always)]
pub(crate) fn sample<'a, const OM: bool>(
    text: Text<'a>,
    start: usize,
    family: &Family<'a>,
    limits: &Limits,
    keys: &mut Vec<NameKey>,
) -> Option<(Sample<'a>, usize)> {
    let b = text.bytes();
    // Most samples start with their family's name: comparing it is cheaper
    // than checking its bytes, and tells the family apart at once.
    let prefix = family.name.as_bytes();
    let in_family = !prefix.is_empty() && b.get(start..start + prefix.len()) == Some(prefix);
    let rest_start = if in_family {
        start + prefix.len()
    } else if b
        .get(start)
        .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
    {
        start + 1
    } else {
        return None;
    };
    let mut i = scan::name_end::<true>(b, rest_start);
    if i - start > limits.max_label_value_bytes {
        return None;
    }
    let name = text.get(start, i)?;
    let mut labels = Labels::NONE;
    if b.get(i) == Some(&b'{') {
        (labels, i) = label_set(text, i + 1, limits, keys)?;
    }
    let series = text.get(start, i)?;
    if b.get(i) != Some(&b' ') {
        return None;
    }
    let (value, mut i) = value(text, i + 1)?;
    let mut timestamp_ms = None;
    if b.get(i) == Some(&b' ') {
        let (ms, end) = if OM {
            seconds(text, i + 1)?
        } else {
            number::millis_at(b, i + 1)?
        };
        timestamp_ms = Some(ms);
        i = end;
    }
    if b.get(i) != Some(&b'\n') || i - start > limits.max_line_bytes {
        return None;
    }
    let format = if OM {
        Format::OpenMetrics
    } else {
        Format::Text
    };
    let suffix = match in_family {
        true => Suffix::of(name.as_bytes().get(prefix.len()..)?, family.kind, format),
        false => None,
    };
    let sample = Sample {
        name,
        labels,
        series,
        value,
        timestamp_ms,
        family: if suffix.is_some() {
            *family
        } else {
            Family::undeclared(name, format)
        },
        suffix: suffix.unwrap_or(Suffix::None),
    };
    Some((sample, i))
}

/// What a plain `# HELP` or `# TYPE` line declares.
pub(crate) enum Meta<'a> {
    /// The help text as written.
    Help(&'a str),
    Type(MetricType),
}

/// The `# HELP` or `# TYPE` line starting at `start` in `text`: the
/// family's name, what the line declares, and the index of the `\n` that
/// ends it; `None` when the line is anything else, or not of the plain
/// form (the caller then reads it as the general path does).
#[inline(always)]
pub(crate) fn metadata<'a>(
    text: Text<'a>,
    start: usize,
    format: Format,
    limits: &Limits,
) -> Option<(&'a str, Meta<'a>, usize)> {
    let b = text.bytes();
    let help = match b.get(start..start + 7)? {
        b"# HELP " => true,
        b"# TYPE " => false,
        _ => return None,
    };
    let name_start = start + 7;
    if !b
        .get(name_start)
        .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
    {
        return None;
    }
    let name_end = scan::name_end::<true>(b, name_start + 1);
    if b.get(name_end) != Some(&b' ') || name_end - name_start > limits.max_label_value_bytes {
        return None;
    }
    let content_start = name_end + 1;
    let stop = content_start + memchr(b'\n', b.get(content_start..)?)?;
    if b[stop - 1] == b'\r' || stop - start > limits.max_line_bytes {
        return None;
    }
    let name = text.get(name_start, name_end)?;
    let content = text.get(content_start, stop)?;
    let meta = if help {
        Meta::Help(content)
    } else {
        // A text-format type word with spaces around it is left to the
        // general path, which trims them.
        Meta::Type(MetricType::parse(content, format)?)
    };
    Some((name, meta, stop))
}

/// The label set starting after `{` at `open`: the labels and the index
/// after the `}`.
#[inline(always)]
fn label_set<'a>(
    text: Text<'a>,
    open: usize,
    limits: &Limits,
    keys: &mut Vec<NameKey>,
) -> Option<(Labels<'a>, usize)> {
    let b = text.bytes();
    let mut i = open;
    let mut count = 0usize;
    let mut escaped = false;
    // The positions of the first four labels (see `Labels::spans`), the
    // latest first: kept in locals shifted along as labels come, rather
    // than an array indexed by `count`, which would live in memory.
    let mut spans: (Span, Span, Span, Span) = (0, 0, 0, 0);
    // Where the last of them ends: they are kept if that fits a `u16`.
    let mut spans_end = open;
    // The largest name key so far: a name with a larger one is new without
    // comparing it to the others (the Go client writes names in order, then
    // `le` or `quantile`).
    let mut largest = 0u64;
    // The first four names' keys (zero: none, no name has that key), in
    // the order written; later names' keys and positions go to `keys`.
    let mut k = [0u64; SPANS];
    keys.clear();
    let mut stops = scan::Stops::new(b, open);
    loop {
        let name_start = i;
        let word = scan::word(b, i);
        let stop = scan::not_name::<false>(word);
        // The first byte is a name byte (the mask flags the lowest byte
        // otherwise; past the end it reads as zero) and not a digit.
        if stop & 0x80 != 0 || (word as u8).is_ascii_digit() {
            return None;
        }
        // The name's key (see `NameKey`): its bytes before the first stop
        // (`stop ^ (stop - 1)` sets the bits up to the lowest flag, one
        // byte more than the name), or all eight.
        let prefix;
        (i, prefix) = if stop != 0 {
            let keep = (stop ^ stop.wrapping_sub(1)) >> 8;
            (
                i + (stop.trailing_zeros() / 8) as usize,
                (word & keep).swap_bytes(),
            )
        } else {
            (scan::name_end::<false>(b, i + 8), word.swap_bytes())
        };
        let name_end = i;
        let len = name_end - name_start;
        if len > limits.max_label_name_bytes || count >= limits.max_labels {
            return None;
        }
        // A name is new when its key is the largest so far; else it is
        // compared with the first four by key, and in full only on an equal
        // key (or when there are more than four).
        if prefix > largest {
            largest = prefix;
        } else if (k.contains(&prefix) || count > SPANS)
            && repeats(b, open, spans, count, keys, prefix, name_start..name_end)
        {
            return None; // the general path reports it
        }
        if let Some(slot) = k.get_mut(count) {
            *slot = prefix;
        } else {
            keys.push(NameKey {
                prefix,
                start: name_start,
                end: name_end,
            });
        }
        if b.get(i..i + 2) != Some(b"=\"") {
            return None;
        }
        i += 2;
        let value_start = i;
        loop {
            i = stops.next(b, i)?;
            match b[i] {
                b'"' => break,
                b'\\' if !matches!(b.get(i + 1), None | Some(b'\n')) => {
                    escaped = true;
                    i += 2;
                }
                _ => return None,
            }
        }
        if i - value_start > limits.max_label_value_bytes {
            return None;
        }
        if count < SPANS {
            // Offsets from `open`, kept only if the last of the four (or
            // fewer) fits a `u16` (checked at the end).
            spans_end = i;
            let s = span(
                name_start - open,
                name_end - open,
                value_start - open,
                i - open,
            );
            spans = (s, spans.0, spans.1, spans.2);
        }
        count += 1;
        i += 1;
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => break,
            _ => return None,
        }
    }
    let mut labels = Labels::new(text.tail(open)?);
    labels.bytes = i - open;
    labels.len = count as u32;
    labels.escaped = escaped;
    // As the general path: all of the first four positions, or none (labels
    // too far into the set for `u16` offsets are read again when iterated).
    if spans_end - open <= usize::from(u16::MAX) {
        labels.known = count.min(SPANS) as u8;
        labels.spans = match count {
            0 => [0; SPANS],
            1 => [spans.0, 0, 0, 0],
            2 => [spans.1, spans.0, 0, 0],
            3 => [spans.2, spans.1, spans.0, 0],
            _ => [spans.3, spans.2, spans.1, spans.0],
        };
    }
    Some((labels, i + 1))
}

/// A label name's position in the text, and its key: its first eight
/// bytes (zero-padded) as a big-endian number, so that shorter names sort
/// first, as in string order, and two names with different keys differ.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NameKey {
    prefix: u64,
    start: usize,
    end: usize,
}

/// Whether the label name at `name` (its key `prefix`) repeats an earlier
/// one of the `count` before it: the first four by their positions
/// (`spans`, offsets from `open`, the latest first), later ones by their
/// [`NameKey`]s. True also when a position may not have fit its `u16` (the
/// general path then checks the line).
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn repeats(
    b: &[u8],
    open: usize,
    spans: (Span, Span, Span, Span),
    count: usize,
    keys: &[NameKey],
    prefix: u64,
    name: std::ops::Range<usize>,
) -> bool {
    if name.end - open > usize::from(u16::MAX) {
        return true;
    }
    let name = &b[name];
    let spans = [spans.0, spans.1, spans.2, spans.3];
    spans[..count.min(SPANS)].iter().any(|&s| {
        let [ns, ne, _, _] = super::sample::offsets(s);
        &b[open + ns..open + ne] == name
    }) || keys
        .iter()
        .any(|k| k.prefix == prefix && &b[k.start..k.end] == name)
}

/// The value field starting at `v` and the index after it, which holds a
/// space or `\n`.
#[inline(always)]
fn value(text: Text<'_>, v: usize) -> Option<(f64, usize)> {
    let b = text.bytes();
    match number::decimal_at(b, v) {
        Some((x, end)) if matches!(b.get(end), Some(b' ' | b'\n')) => Some((x, end)),
        _ => {
            let end = field_end(b, v)?;
            Some((number::value(text.get(v, end)?)?, end))
        }
    }
}

/// An OpenMetrics timestamp field starting at `t` (not an exemplar's `#`),
/// as milliseconds, and the index after it.
fn seconds(text: Text<'_>, t: usize) -> Option<(i64, usize)> {
    let end = field_end(text.bytes(), t)?;
    if end == t || text.bytes()[t] == b'#' {
        return None;
    }
    Some((number::seconds_as_millis(text.get(t, end)?)?, end))
}

/// The end of the field starting at `i`, where a space or `\n` follows;
/// `None` when a tab, `\r` or the end of the text comes first.
#[cold]
fn field_end(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        match b.get(i)? {
            b' ' | b'\n' => return Some(i),
            b'\t' | b'\r' => return None,
            _ => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the fast path makes of a one-line body: the sample's value
    /// and label count, or `None` when it leaves the line to the general
    /// path.
    fn fast(line: &str, om: bool) -> Option<(f64, usize)> {
        let mut keys = Vec::new();
        let family = Family::undeclared("", Format::Text);
        let text = Text::of_prefix(line.as_bytes());
        let s = if om {
            sample::<true>(text, 0, &family, &Limits::default(), &mut keys)
        } else {
            sample::<false>(text, 0, &family, &Limits::default(), &mut keys)
        };
        s.map(|(s, end)| {
            assert_eq!(end, line.len() - 1);
            (s.value, s.labels.len())
        })
    }

    #[test]
    fn takes_what_exporters_write() {
        for line in [
            "up 1\n",
            "a:b_c{x=\"1\"} -1.5e+09\n",
            // `le` after the sorted names, as the Go client writes it.
            "h_bucket{code=\"200\",method=\"GET\",le=\"+Inf\"} 3\n",
            // Names sharing their first eight bytes.
            "kube_pod_info{created_by_kind=\"a\",created_by_name=\"b\"} 1\n",
            "x{v=\"a\\\"b\\\\c\\nd\"} NaN\n",
            "x{a=\"\"} +Inf 1700000000000\n",
            // Names sharing their first eight bytes, the later one not the
            // largest: compared whole.
            "kube_pod_container_info{container_id=\"a\",container=\"b\"} 1\n",
            // Over four labels, none repeated, in falling order.
            "x{e=\"1\",d=\"2\",c=\"3\",b=\"4\",a=\"5\",ab=\"6\"} 1\n",
            // Non-ASCII label values.
            "x{a=\"é\",b=\"日本\"} 1\n",
        ] {
            assert!(fast(line, false).is_some(), "{line:?}");
        }
        assert_eq!(fast("t 2 1700000000.5\n", true), Some((2.0, 0)));
        assert_eq!(fast("t 2 1700000000500\n", false), Some((2.0, 0)));
    }

    #[test]
    fn leaves_the_rest_to_the_general_path() {
        for line in [
            "up  1\n",
            "up\t1\n",
            "up 1\r\n",
            "up 1",
            "up 1 \n",
            " up 1\n",
            "up {a=\"b\"} 1\n",
            "up{} 1\n",
            "up{a=\"b\",} 1\n",
            "up{1a=\"b\"} 1\n",
            "up{a=\"b\",9=\"c\"} 1\n",
            "up{é=\"b\"} 1\n",
            "up{a=\"b\", c=\"d\"} 1\n",
            "up{a=\"b\",a=\"c\"} 1\n",
            "up{b=\"b\",abcdefghij=\"c\",abcdefghij=\"c\"} 1\n",
            // Repeated after the first four, of them or of a later one.
            "x{a=\"1\",b=\"2\",c=\"3\",d=\"4\",e=\"5\",a=\"6\"} 1\n",
            "x{e=\"1\",d=\"2\",c=\"3\",b=\"4\",a=\"5\",a=\"6\"} 1\n",
            "x{container_id=\"a\",container=\"b\",container_id=\"c\"} 1\n",
            "up{a=\"b\\\n\"} 1\n",
            "up 1 2 3\n",
            "up 1 # {a=\"b\"} 1\n",
            "up 0x1\n",
        ] {
            assert_eq!(fast(line, false), None, "{line:?}");
        }
    }
}
