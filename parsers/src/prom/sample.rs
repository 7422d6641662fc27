//! What the parser yields: [`Sample`], its [`Labels`] (decoded lazily from
//! the body) and its [`Family`] (`# TYPE`, `# HELP`, `# UNIT`).

use std::borrow::Cow;

use memchr::memchr;

use super::kinds::{Format, MetricType, Suffix};
use super::scan;
use super::text::Text;

/// One sample line, borrowing from the body.
///
/// Nothing in it is copied: the name, labels and family point into the
/// body; only [`Labels::iter`] (and [`Family::help`]) allocate, for a value
/// that holds an escape.
#[derive(Clone, Copy, Debug)]
pub struct Sample<'a> {
    /// The metric name as written (`http_requests_total`,
    /// `request_seconds_bucket`).
    pub name: &'a str,
    /// The labels, checked but not decoded: see [`Labels`].
    pub labels: Labels<'a>,
    /// The name and label set exactly as written
    /// (`name{a="b",c="d"}`), to use as a cache key before decoding the
    /// labels (Prometheus's scrape cache does the same). Two spellings of
    /// one series (other label order, spaces) are two keys.
    pub series: &'a str,
    /// The value. A `NaN` in the body is [`f64::NAN`] (so it is never
    /// Prometheus's staleness marker, another NaN), `+Inf`/`-Inf` are the
    /// infinities.
    pub value: f64,
    /// The sample's own timestamp in milliseconds since the epoch, if it
    /// had one (OpenMetrics seconds are converted exactly for up to three
    /// decimals, later digits truncated toward zero). `None`: the caller
    /// stamps it with the scrape time.
    pub timestamp_ms: Option<i64>,
    /// The family the sample belongs to: the one declared by the `# TYPE`
    /// (or `# HELP`, `# UNIT`) lines just before it, when the sample's name
    /// is that family's name plus a suffix of its type; otherwise a family
    /// of its own name with [`MetricType::Unknown`].
    pub family: Family<'a>,
    /// Which part of the family the sample is (`_bucket`, `_created`, …).
    pub suffix: Suffix,
}

/// A metric family's metadata, as declared by `# TYPE`, `# HELP` and
/// (OpenMetrics) `# UNIT` lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family<'a> {
    /// The family's name (`http_requests` for OpenMetrics samples
    /// `http_requests_total`; a sample's own name when it has no family).
    pub name: &'a str,
    /// The declared type; [`MetricType::Unknown`] without a `# TYPE` line.
    pub kind: MetricType,
    /// The `# UNIT` (OpenMetrics), if declared and not empty.
    pub unit: Option<&'a str>,
    pub(crate) help: Option<&'a str>,
    pub(crate) format: Format,
}

impl<'a> Family<'a> {
    pub(crate) fn undeclared(name: &'a str, format: Format) -> Family<'a> {
        Family {
            name,
            kind: MetricType::Unknown,
            unit: None,
            help: None,
            format,
        }
    }

    /// The `# HELP` text with its escapes decoded (`\\` and `\n`, and in
    /// OpenMetrics also `\"`; any other backslash is kept as written).
    /// Borrowed unless it holds an escape.
    #[must_use]
    pub fn help(&self) -> Option<Cow<'a, str>> {
        let quote = self.format == Format::OpenMetrics;
        self.help.map(|h| unescape(h, quote))
    }

    /// The `# HELP` text as written, escapes included.
    #[must_use]
    pub fn help_as_written(&self) -> Option<&'a str> {
        self.help
    }
}

/// A sample's label set, checked while parsing (names, quoting, escapes,
/// UTF-8, duplicates, limits) but decoded only when iterated.
///
/// Iterating reads the label text again (a few ns per label) and yields
/// the labels in the order written; a value is borrowed from the body
/// unless it holds an escape. The metric name is not a label here.
#[derive(Clone, Copy, Debug)]
pub struct Labels<'a> {
    /// From the first byte after `{` to the end of the body (scans read
    /// ahead); the labels are its first `bytes` bytes. Private, as is
    /// `ascii`: they are set together, by [`Labels::new`] only.
    text: &'a str,
    /// True only when `text` is all ASCII, taken from the [`Text`] it was
    /// cut from (whose own invariant it is): then any index up to its
    /// length is a char boundary, and iterating cuts the known labels
    /// without checking that again.
    ascii: bool,
    pub(crate) bytes: usize,
    pub(crate) len: u32,
    pub(crate) escaped: bool,
    /// Where the parser found the first `known` labels, so that iterating
    /// them reads nothing again: name start and end, value start and end,
    /// as offsets in `text` (kept while they fit a `u16`). Later labels
    /// are read again.
    pub(crate) known: u8,
    pub(crate) spans: [Span; SPANS],
}

/// How many label positions a [`Labels`] keeps.
pub(crate) const SPANS: usize = 4;

/// A label's name start, name end, value start, value end in its
/// [`Labels`]' text, sixteen bits each, in one `u64`: the parser keeps it
/// in a register and writes it once (an array of `u16`s written piece by
/// piece and then copied whole stalled the copy).
pub(crate) type Span = u64;

/// The [`Span`] of offsets that fit a `u16` (the caller checks).
#[inline(always)]
pub(crate) fn span(
    name_start: usize,
    name_end: usize,
    value_start: usize,
    value_end: usize,
) -> Span {
    [name_start, name_end, value_start, value_end]
        .iter()
        .enumerate()
        .fold(0, |s, (k, &x)| s | (x as u64 & 0xffff) << (16 * k))
}

/// The four offsets of a [`Span`].
#[inline(always)]
pub(crate) fn offsets(span: Span) -> [usize; 4] {
    [0, 1, 2, 3].map(|k| (span >> (16 * k)) as u16 as usize)
}

impl<'a> Labels<'a> {
    pub(crate) const NONE: Labels<'static> = Labels {
        text: "",
        ascii: true,
        bytes: 0,
        len: 0,
        escaped: false,
        known: 0,
        spans: [0; SPANS],
    };

    /// No labels yet, in `text` (from after the `{`); the parser fills in
    /// the rest.
    #[inline(always)]
    pub(crate) fn new(text: Text<'a>) -> Labels<'a> {
        Labels {
            text: text.as_str(),
            ascii: text.is_ascii(),
            ..Labels::NONE
        }
    }

    /// Number of labels.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True for a sample without labels (no braces, or `{}`).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when some label value holds a `\` escape (iterating then
    /// allocates for those values).
    #[must_use]
    pub fn has_escapes(&self) -> bool {
        self.escaped
    }

    /// The text between the braces, as written.
    #[must_use]
    pub fn as_written(&self) -> &'a str {
        &self.text[..self.bytes]
    }

    /// The labels in the order written.
    #[must_use]
    pub fn iter(&self) -> LabelIter<'a> {
        LabelIter {
            text: self.text,
            ascii: self.ascii,
            pos: 0,
            known: u32::from(self.known),
            remaining: self.len,
            escaped: self.escaped,
            spans: (self.spans[0], self.spans[1], self.spans[2], self.spans[3]),
        }
    }

    /// The value of the label `name`, if the sample has it.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<Cow<'a, str>> {
        self.iter().find(|l| l.name == name).map(|l| l.value)
    }
}

impl<'a> IntoIterator for Labels<'a> {
    type Item = Label<'a>;
    type IntoIter = LabelIter<'a>;
    fn into_iter(self) -> LabelIter<'a> {
        self.iter()
    }
}

/// One label: name and decoded value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label<'a> {
    /// The label name.
    pub name: &'a str,
    /// The value, `\\`, `\"` and `\n` decoded; any other backslash is kept
    /// as written, as Prometheus does. Borrowed unless it held an escape.
    pub value: Cow<'a, str>,
}

/// Iterator over a [`Labels`]' labels.
#[derive(Clone, Debug)]
pub struct LabelIter<'a> {
    text: &'a str,
    /// As [`Labels`]' `ascii`, copied with `text`.
    ascii: bool,
    /// Where reading again starts (after the last label yielded).
    pos: usize,
    /// How many of the labels still to yield have their span in `spans`.
    known: u32,
    remaining: u32,
    escaped: bool,
    /// The known spans still to yield, the next one first: shifted along
    /// as they are used (fixed fields rather than an array indexed by a
    /// count, so that an inlined iterator stays in registers).
    spans: (Span, Span, Span, Span),
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = Label<'a>;

    #[inline]
    fn next(&mut self) -> Option<Label<'a>> {
        self.remaining = self.remaining.checked_sub(1)?;
        let (name, raw, close) = if self.known > 0 {
            self.known -= 1;
            let [ns, ne, vs, ve] = offsets(self.spans.0);
            self.spans = (self.spans.1, self.spans.2, self.spans.3, 0);
            if self.ascii {
                let b = self.text.as_bytes();
                let (name, value) = (&b[ns..ne], &b[vs..ve]);
                // SAFETY: `text` is all ASCII (`ascii` is true only then;
                // both are private to this module and set together by
                // `Labels::new` from a `Text`, whose invariant it is), so
                // any part of it is ASCII, which is valid UTF-8.
                #[allow(unsafe_code)]
                unsafe {
                    (
                        std::str::from_utf8_unchecked(name),
                        std::str::from_utf8_unchecked(value),
                        ve,
                    )
                }
            } else {
                (&self.text[ns..ne], &self.text[vs..ve], ve)
            }
        } else {
            read_again(self.text, self.pos, self.escaped)?
        };
        self.pos = close + 1;
        let value = if self.escaped {
            unescape(raw, true)
        } else {
            Cow::Borrowed(raw)
        };
        Some(Label { name, value })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining as usize, Some(self.remaining as usize))
    }
}

impl ExactSizeIterator for LabelIter<'_> {}

/// The next label of `text` read from `pos` on (beyond the known spans):
/// name, raw value, and the index of its closing quote. A free function
/// taking copies, so that the iterator calling it can stay in registers.
#[inline(never)]
fn read_again(text: &str, pos: usize, escaped: bool) -> Option<(&str, &str, usize)> {
    // The text was checked by the parser: names, `=`, quoted values,
    // separators. Only `,`, spaces and tabs come between labels, and only
    // spaces and tabs around `=`.
    let b = text.as_bytes();
    let mut i = pos;
    while matches!(b.get(i), Some(b',' | b' ' | b'\t')) {
        i += 1;
    }
    let name_start = i;
    i = scan::name_end::<false>(b, i);
    let name = &text[name_start..i];
    i += b.get(i..)?.iter().position(|&c| c == b'"')? + 1;
    let close = if escaped {
        closing_quote(b, i)?
    } else {
        scan::quote(b, i)?
    };
    Some((name, &text[i..close], close))
}

/// Index of the `"` that closes the value starting at `from`.
fn closing_quote(b: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let i = scan::value_stop(b, from)?;
        if b[i] == b'"' {
            return Some(i);
        }
        from = i + 2;
    }
}

/// Decodes `\\`, `\n` and (if `quote`) `\"`; any other backslash stays.
fn unescape(raw: &str, quote: bool) -> Cow<'_, str> {
    let Some(first) = memchr(b'\\', raw.as_bytes()) else {
        return Cow::Borrowed(raw);
    };
    let mut out = String::with_capacity(raw.len());
    out.push_str(&raw[..first]);
    let mut chars = raw[first..].chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.clone().next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quote => out.push('"'),
            _ => {
                out.push('\\');
                continue;
            }
        }
        chars.next();
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(text: &str, len: u32) -> Vec<(String, String)> {
        let l = Labels {
            bytes: text.len(),
            len,
            escaped: text.contains('\\'),
            ..Labels::new(Text::utf8(text))
        };
        l.iter()
            .map(|l| (l.name.to_owned(), l.value.into_owned()))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn iterates_in_written_order_with_spaces_and_trailing_comma() {
        assert_eq!(
            labels(r#" b = "2" ,	a="1", "#, 2),
            pairs(&[("b", "2"), ("a", "1")])
        );
        assert!(labels("", 0).is_empty());
    }

    #[test]
    fn values_with_separators_inside() {
        assert_eq!(
            labels(r#"a="x,y=\"z\"}#",b="""#, 2),
            pairs(&[("a", r#"x,y="z"}#"#), ("b", "")])
        );
    }

    #[test]
    fn escapes_decoded_unknown_kept() {
        assert_eq!(
            labels(r#"a="\\",b="\n\"\t",c="end\\\\""#, 3),
            pairs(&[("a", "\\"), ("b", "\n\"\\t"), ("c", r"end\\")])
        );
    }

    #[test]
    fn borrowed_unless_escaped() {
        let l = Labels {
            bytes: 14,
            len: 2,
            escaped: true,
            ..Labels::new(Text::utf8(r#"a="x",b="y\\z""#))
        };
        let v: Vec<_> = l.iter().collect();
        assert!(matches!(v[0].value, Cow::Borrowed("x")));
        assert!(matches!(v[1].value, Cow::Owned(_)));
        assert_eq!(l.get("b").as_deref(), Some("y\\z"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn help_escapes_per_format() {
        let mut f = Family::undeclared("x", Format::Text);
        f.help = Some(r#"a\\b\nc\"d"#);
        assert_eq!(f.help().unwrap(), "a\\b\nc\\\"d");
        f.format = Format::OpenMetrics;
        assert_eq!(f.help().unwrap(), "a\\b\nc\"d");
        assert_eq!(f.help_as_written(), Some(r#"a\\b\nc\"d"#));
        f.help = Some("plain");
        assert!(matches!(f.help(), Some(Cow::Borrowed("plain"))));
        f.help = Some("trailing\\");
        assert_eq!(f.help().unwrap(), "trailing\\");
    }
}
