//! [`Limits`]: what one line may hold, checked while it is parsed.

/// Bounds the caller sets on each line, checked while the line is parsed.
/// A line over any of them is skipped and reported with the named
/// [`ErrorKind`](super::ErrorKind); the rest of the body is parsed as usual.
///
/// Work per line is linear in its length (plus `n log n` in its number of
/// labels for the duplicate check), so [`max_line_bytes`](Self::max_line_bytes)
/// bounds the work a hostile line costs; the other limits bound what a
/// sample that passes can hand on (series size downstream). A limit is
/// inclusive: a line of exactly `max_line_bytes` bytes passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest line in bytes, not counting its `\n` (nor a `\r` before it).
    /// A longer line is skipped as
    /// [`LineTooLong`](super::ErrorKind::LineTooLong) without being parsed:
    /// the parser only looks for its end (`memchr`). Applies to every line,
    /// comments and `# HELP` included.
    pub max_line_bytes: usize,
    /// Most labels per sample, the metric name not counted (Prometheus's
    /// `label_limit` counts it: theirs is this plus one). One more is
    /// [`TooManyLabels`](super::ErrorKind::TooManyLabels), reported as soon
    /// as it is seen. Exemplar labels are not counted.
    pub max_labels: usize,
    /// Longest label name in bytes; longer is
    /// [`LabelNameTooLong`](super::ErrorKind::LabelNameTooLong).
    pub max_label_name_bytes: usize,
    /// Longest label value in bytes as written in the body (an escape such
    /// as `\n` counts two), and longest metric name (the value of
    /// `__name__`, as Prometheus's `label_value_length_limit` counts it);
    /// longer is [`LabelValueTooLong`](super::ErrorKind::LabelValueTooLong).
    pub max_label_value_bytes: usize,
}

impl Limits {
    /// Generous bounds no sane exporter reaches: 1 MiB lines, 256 labels,
    /// 1 KiB label names, 128 KiB label values.
    pub const DEFAULT: Limits = Limits {
        max_line_bytes: 1 << 20,
        max_labels: 256,
        max_label_name_bytes: 1 << 10,
        max_label_value_bytes: 128 << 10,
    };

    /// No bounds at all (tests, trusted input).
    pub const UNLIMITED: Limits = Limits {
        max_line_bytes: usize::MAX,
        max_labels: usize::MAX,
        max_label_name_bytes: usize::MAX,
        max_label_value_bytes: usize::MAX,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}
