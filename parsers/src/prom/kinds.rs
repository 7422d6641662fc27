//! The small enums of the exposition formats: [`Format`] (which grammar),
//! [`MetricType`] (a family's `# TYPE`) and [`Suffix`] (which part of its
//! family a sample is).

/// Which text exposition format the body is in. The caller picks it from
/// the response's `Content-Type` ([`Format::from_content_type`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text format 0.0.4 (`text/plain; version=0.0.4`):
    /// spaces or tabs between fields, integer millisecond timestamps, free
    /// `#` comments.
    Text,
    /// OpenMetrics 1.0 text (`application/openmetrics-text`): single spaces,
    /// timestamps in seconds, exemplars, `# UNIT`, and a required `# EOF`
    /// as the last line.
    OpenMetrics,
}

impl Format {
    /// The format for a response's `Content-Type` header value, as
    /// Prometheus chooses it: `application/openmetrics-text` (any version,
    /// any parameters) is [`Format::OpenMetrics`]; `text/plain` (any
    /// parameters) and an empty or missing header are [`Format::Text`].
    /// Anything else (protobuf, HTML, JSON) is `None`: the caller decides
    /// whether to try [`Format::Text`] anyway (Prometheus's
    /// `fallback_scrape_protocol`).
    #[must_use]
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Some(Format::OpenMetrics)
        } else if media.is_empty() || media.eq_ignore_ascii_case("text/plain") {
            Some(Format::Text)
        } else {
            None
        }
    }
}

/// A metric family's type, from its `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// `counter`: `name` (text format) or `name_total` (OpenMetrics), and
    /// `name_created`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`: `name_bucket{le=…}`, `name_sum`, `name_count`,
    /// `name_created`.
    Histogram,
    /// `gaugehistogram` (OpenMetrics): `name_bucket{le=…}`, `name_gsum`,
    /// `name_gcount`.
    GaugeHistogram,
    /// `summary`: `name{quantile=…}`, `name_sum`, `name_count`,
    /// `name_created`.
    Summary,
    /// `info` (OpenMetrics): `name_info`, value 1.
    Info,
    /// `stateset` (OpenMetrics): `name{name=…}`, value 0 or 1.
    StateSet,
    /// `untyped` (text format), `unknown` (OpenMetrics), or no `# TYPE`
    /// line for the sample's family.
    Unknown,
}

impl MetricType {
    /// The type word as the format writes it (`untyped` for
    /// [`MetricType::Unknown`] in the text format, `unknown` in
    /// OpenMetrics).
    #[must_use]
    pub const fn as_str(self, format: Format) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => match format {
                Format::Text => "untyped",
                Format::OpenMetrics => "unknown",
            },
        }
    }

    /// Parses a `# TYPE` word of `format` (exact, lowercase).
    pub(crate) fn parse(word: &str, format: Format) -> Option<MetricType> {
        let t = match word {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" if format == Format::Text => MetricType::Unknown,
            "unknown" if format == Format::OpenMetrics => MetricType::Unknown,
            "gaugehistogram" if format == Format::OpenMetrics => MetricType::GaugeHistogram,
            "info" if format == Format::OpenMetrics => MetricType::Info,
            "stateset" if format == Format::OpenMetrics => MetricType::StateSet,
            _ => return None,
        };
        Some(t)
    }
}

/// Which part of its family a sample is: what its name adds to the family's
/// name. The caller needs it for `_created` handling (an OpenMetrics
/// counter's, histogram's or summary's start time, not a series to store
/// as is) and to find a histogram's buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suffix {
    /// The sample's name is the family's name (gauges, text-format
    /// counters, summary quantiles, statesets, unknown), or the sample
    /// belongs to no declared family.
    None,
    /// `_total` of a counter.
    Total,
    /// `_created` of a counter, histogram or summary (OpenMetrics only): the
    /// value is the series' creation time in seconds.
    Created,
    /// `_bucket` of a histogram or gauge histogram (carries `le`).
    Bucket,
    /// `_sum` of a histogram or summary.
    Sum,
    /// `_count` of a histogram or summary.
    Count,
    /// `_gsum` of a gauge histogram.
    Gsum,
    /// `_gcount` of a gauge histogram.
    Gcount,
    /// `_info` of an info family.
    Info,
}

impl Suffix {
    /// The suffix's text, `""` for [`Suffix::None`].
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Suffix::None => "",
            Suffix::Total => "_total",
            Suffix::Created => "_created",
            Suffix::Bucket => "_bucket",
            Suffix::Sum => "_sum",
            Suffix::Count => "_count",
            Suffix::Gsum => "_gsum",
            Suffix::Gcount => "_gcount",
            Suffix::Info => "_info",
        }
    }

    /// The suffix `rest` (a sample's name minus its family's name) is for a
    /// family of type `kind`, if that family has such samples.
    pub(crate) fn of(rest: &[u8], kind: MetricType, format: Format) -> Option<Suffix> {
        use MetricType as T;
        let om = format == Format::OpenMetrics;
        let s = match rest {
            b"" => Suffix::None,
            b"_total" if kind == T::Counter => Suffix::Total,
            b"_created" if om && matches!(kind, T::Counter | T::Histogram | T::Summary) => {
                Suffix::Created
            }
            b"_bucket" if matches!(kind, T::Histogram | T::GaugeHistogram) => Suffix::Bucket,
            b"_sum" if matches!(kind, T::Histogram | T::Summary) => Suffix::Sum,
            b"_count" if matches!(kind, T::Histogram | T::Summary) => Suffix::Count,
            b"_gsum" if kind == T::GaugeHistogram => Suffix::Gsum,
            b"_gcount" if kind == T::GaugeHistogram => Suffix::Gcount,
            b"_info" if kind == T::Info => Suffix::Info,
            _ => return None,
        };
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let om = Some(Format::OpenMetrics);
        let text = Some(Format::Text);
        assert_eq!(
            Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            om
        );
        assert_eq!(
            Format::from_content_type("Application/OpenMetrics-Text"),
            om
        );
        assert_eq!(Format::from_content_type("text/plain; version=0.0.4"), text);
        assert_eq!(Format::from_content_type("text/plain"), text);
        assert_eq!(Format::from_content_type(""), text);
        assert_eq!(
            Format::from_content_type(
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily"
            ),
            None
        );
        assert_eq!(Format::from_content_type("text/html"), None);
    }

    #[test]
    fn type_words_per_format() {
        use MetricType as T;
        for (word, text, om) in [
            ("counter", Some(T::Counter), Some(T::Counter)),
            ("gauge", Some(T::Gauge), Some(T::Gauge)),
            ("histogram", Some(T::Histogram), Some(T::Histogram)),
            ("summary", Some(T::Summary), Some(T::Summary)),
            ("untyped", Some(T::Unknown), None),
            ("unknown", None, Some(T::Unknown)),
            ("gaugehistogram", None, Some(T::GaugeHistogram)),
            ("info", None, Some(T::Info)),
            ("stateset", None, Some(T::StateSet)),
            ("Counter", None, None),
            ("", None, None),
        ] {
            assert_eq!(MetricType::parse(word, Format::Text), text, "{word}");
            assert_eq!(MetricType::parse(word, Format::OpenMetrics), om, "{word}");
            for (f, t) in [(Format::Text, text), (Format::OpenMetrics, om)] {
                if let Some(t) = t {
                    assert_eq!(t.as_str(f), word);
                }
            }
        }
    }

    #[test]
    fn suffixes_belong_to_their_types() {
        use MetricType as T;
        let om = Format::OpenMetrics;
        assert_eq!(Suffix::of(b"", T::Histogram, om), Some(Suffix::None));
        assert_eq!(Suffix::of(b"_total", T::Counter, om), Some(Suffix::Total));
        assert_eq!(Suffix::of(b"_total", T::Gauge, om), None);
        assert_eq!(
            Suffix::of(b"_created", T::Counter, om),
            Some(Suffix::Created)
        );
        assert_eq!(Suffix::of(b"_created", T::Counter, Format::Text), None);
        assert_eq!(Suffix::of(b"_created", T::GaugeHistogram, om), None);
        assert_eq!(
            Suffix::of(b"_bucket", T::GaugeHistogram, om),
            Some(Suffix::Bucket)
        );
        assert_eq!(
            Suffix::of(b"_sum", T::Summary, Format::Text),
            Some(Suffix::Sum)
        );
        assert_eq!(
            Suffix::of(b"_count", T::Histogram, Format::Text),
            Some(Suffix::Count)
        );
        assert_eq!(
            Suffix::of(b"_gsum", T::GaugeHistogram, om),
            Some(Suffix::Gsum)
        );
        assert_eq!(Suffix::of(b"_gcount", T::Histogram, om), None);
        assert_eq!(Suffix::of(b"_info", T::Info, om), Some(Suffix::Info));
        assert_eq!(Suffix::of(b"_bucketx", T::Histogram, om), None);
        for s in [Suffix::Total, Suffix::Created, Suffix::Gcount, Suffix::Info] {
            assert!(s.as_str().starts_with('_'));
        }
    }
}
