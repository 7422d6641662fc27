//! Per-line parse errors: [`Error`] (where) and [`ErrorKind`] (why).

use std::fmt;

/// One line of the body that was skipped, or a problem with the body as a
/// whole ([`ErrorKind::MissingEof`], [`ErrorKind::DataAfterEof`]).
///
/// The parser goes on with the next line after every error except those
/// two; the caller counts them (`kubeship_scrape_parse_errors_total`,
/// labelled with [`ErrorKind::as_str`]) and may log a sample of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Error {
    /// 1-based number of the line in the body.
    pub line: u64,
    /// Byte offset of that line's first byte in the body: the caller can
    /// show the line (`body[offset..]` up to the next `\n`).
    pub offset: usize,
    /// Why the line was skipped.
    pub kind: ErrorKind,
}

/// Why a line was skipped. Each line gets at most one error: the first
/// problem found, scanning left to right. New kinds may be added.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The line is longer than [`Limits::max_line_bytes`](super::Limits)
    /// (its `\n` and a `\r` before it not counted). It is skipped without
    /// being looked at, whatever it holds.
    LineTooLong,
    /// A sample, `# HELP`, `# TYPE` or `# UNIT` line holds bytes that are not
    /// UTF-8. Label values must be UTF-8 (Prometheus rejects them too) and
    /// every other part of such a line must be ASCII. (A plain comment with
    /// invalid UTF-8 is ignored like any comment.)
    InvalidUtf8,
    /// The line does not start with a metric name
    /// (`[a-zA-Z_:][a-zA-Z0-9_:]*`), or a `# HELP` / `# TYPE` / `# UNIT`
    /// line has none (or one followed by something other than a space).
    /// Quoted UTF-8 names (`{"my.metric"}`, a Prometheus 3 extension) are
    /// not supported and land here.
    BadMetricName,
    /// A label name is not `[a-zA-Z_][a-zA-Z0-9_]*` (quoted label names
    /// included), or a `,` or `{` is followed by something else than a
    /// label name or `}`.
    BadLabelName,
    /// The label set is malformed: no `=` after a label name, a value that
    /// does not start with `"` or never ends (a value ending in `\"` has
    /// not ended), no `,` or `}` after a value, or no `}` at all.
    BadLabels,
    /// Two labels of one sample have the same name (Prometheus refuses such
    /// a series).
    DuplicateLabel,
    /// More labels than [`Limits::max_labels`](super::Limits) (the metric
    /// name not counted).
    TooManyLabels,
    /// A label name longer than
    /// [`Limits::max_label_name_bytes`](super::Limits).
    LabelNameTooLong,
    /// A label value (as written, escapes counted as two bytes) or the metric
    /// name longer than [`Limits::max_label_value_bytes`](super::Limits).
    LabelValueTooLong,
    /// Nothing after the metric name and labels.
    MissingValue,
    /// The value is not a float: decimal with optional exponent, or
    /// `NaN`, `Inf`, `+Inf`, `-Inf` (any case, also `infinity`). Hex floats,
    /// `_` separators and finite numbers too large for an `f64` (`1e400`)
    /// are refused, as Prometheus does. In OpenMetrics, also a separator
    /// other than exactly one space.
    BadValue,
    /// The timestamp is not an integer number of milliseconds that fits an
    /// `i64` (text format), or not a finite number of seconds whose
    /// milliseconds fit an `i64` (OpenMetrics).
    BadTimestamp,
    /// Something follows the value and timestamp: a third field, or in the
    /// text format an exemplar (exemplars are OpenMetrics only), or in
    /// OpenMetrics a trailing space.
    UnexpectedText,
    /// An OpenMetrics exemplar (` # {labels} value [timestamp]`) is
    /// malformed. Well-formed exemplars are checked and ignored.
    BadExemplar,
    /// A `# TYPE` line names no type of the format: text format `counter`,
    /// `gauge`, `histogram`, `summary`, `untyped`; OpenMetrics `counter`,
    /// `gauge`, `histogram`, `gaugehistogram`, `summary`, `info`,
    /// `stateset`, `unknown`.
    BadType,
    /// An OpenMetrics `# UNIT` that is not a suffix of its metric family's
    /// name (`# UNIT foo_seconds seconds` is fine, `# UNIT foo seconds` is
    /// not).
    BadUnit,
    /// An OpenMetrics line starting with `#` that is not `# HELP`, `# TYPE`,
    /// `# UNIT` or `# EOF` (OpenMetrics has no free comments).
    BadComment,
    /// An OpenMetrics body whose last line is not `# EOF`. Reported once, as
    /// the only item: no sample of the body is yielded, because Prometheus
    /// fails the whole scrape in this case (the body was probably cut
    /// short). `line` is the number of lines in the body.
    MissingEof,
    /// An OpenMetrics body with a `# EOF` line before its last line.
    /// Reported with that early `# EOF`'s line number; the samples before
    /// it were yielded, nothing after it is parsed. (Prometheus fails the
    /// whole scrape.)
    DataAfterEof,
}

impl ErrorKind {
    /// A short, stable, snake_case name, suitable as a metrics label
    /// (`reason`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::LineTooLong => "line_too_long",
            ErrorKind::InvalidUtf8 => "invalid_utf8",
            ErrorKind::BadMetricName => "bad_metric_name",
            ErrorKind::BadLabelName => "bad_label_name",
            ErrorKind::BadLabels => "bad_labels",
            ErrorKind::DuplicateLabel => "duplicate_label",
            ErrorKind::TooManyLabels => "too_many_labels",
            ErrorKind::LabelNameTooLong => "label_name_too_long",
            ErrorKind::LabelValueTooLong => "label_value_too_long",
            ErrorKind::MissingValue => "missing_value",
            ErrorKind::BadValue => "bad_value",
            ErrorKind::BadTimestamp => "bad_timestamp",
            ErrorKind::UnexpectedText => "unexpected_text",
            ErrorKind::BadExemplar => "bad_exemplar",
            ErrorKind::BadType => "bad_type",
            ErrorKind::BadUnit => "bad_unit",
            ErrorKind::BadComment => "bad_comment",
            ErrorKind::MissingEof => "missing_eof",
            ErrorKind::DataAfterEof => "data_after_eof",
        }
    }

    /// Every kind, in declaration order (for registering a counter per
    /// reason up front).
    pub const ALL: [ErrorKind; 19] = [
        ErrorKind::LineTooLong,
        ErrorKind::InvalidUtf8,
        ErrorKind::BadMetricName,
        ErrorKind::BadLabelName,
        ErrorKind::BadLabels,
        ErrorKind::DuplicateLabel,
        ErrorKind::TooManyLabels,
        ErrorKind::LabelNameTooLong,
        ErrorKind::LabelValueTooLong,
        ErrorKind::MissingValue,
        ErrorKind::BadValue,
        ErrorKind::BadTimestamp,
        ErrorKind::UnexpectedText,
        ErrorKind::BadExemplar,
        ErrorKind::BadType,
        ErrorKind::BadUnit,
        ErrorKind::BadComment,
        ErrorKind::MissingEof,
        ErrorKind::DataAfterEof,
    ];
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "metrics line {}: {}", self.line, self.kind)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case() {
        let mut names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert!(names.iter().all(|n| {
            n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        }));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }

    #[test]
    fn display_names_line_and_kind() {
        let e = Error {
            line: 7,
            offset: 120,
            kind: ErrorKind::BadValue,
        };
        assert_eq!(e.to_string(), "metrics line 7: bad_value");
        let _: &dyn std::error::Error = &e;
    }
}
