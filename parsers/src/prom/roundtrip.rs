//! Property tests: random families and samples rendered in either format
//! (with the spacing, escapes and line endings each allows) parse back to
//! what was rendered; and any bytes parse without a panic into samples
//! that point into the body.

use proptest::prelude::*;

use super::*;

#[derive(Clone, Debug)]
pub(super) struct Fam {
    name: String,
    kind: MetricType,
    help: Option<String>,
    samples: Vec<Smp>,
}

#[derive(Clone, Debug)]
struct Smp {
    suffix: Suffix,
    labels: Vec<(String, String)>,
    value: f64,
    timestamp_ms: Option<i64>,
    /// Picks spellings and spacing when rendering.
    style: u32,
}

const SUFFIXES: [Suffix; 9] = [
    Suffix::None,
    Suffix::Total,
    Suffix::Created,
    Suffix::Bucket,
    Suffix::Sum,
    Suffix::Count,
    Suffix::Gsum,
    Suffix::Gcount,
    Suffix::Info,
];

fn kinds(format: Format) -> Vec<MetricType> {
    use MetricType as T;
    let mut k = vec![T::Counter, T::Gauge, T::Histogram, T::Summary, T::Unknown];
    if format == Format::OpenMetrics {
        k.extend([T::GaugeHistogram, T::Info, T::StateSet]);
    }
    k
}

fn label_value() -> impl Strategy<Value = String> {
    "[a-z0-9\\\\\"\n}{#,= \t\r:./é日]{0,12}"
}

fn sample(format: Format, kind: MetricType) -> impl Strategy<Value = Smp> {
    let suffixes: Vec<Suffix> = SUFFIXES
        .into_iter()
        .filter(|s| Suffix::of(s.as_str().as_bytes(), kind, format).is_some())
        .collect();
    (
        prop::sample::select(suffixes),
        prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", label_value(), 0..5),
        any::<f64>(),
        prop::option::of(any::<i64>()),
        any::<u32>(),
    )
        .prop_map(|(suffix, labels, value, timestamp_ms, style)| Smp {
            suffix,
            labels: labels.into_iter().collect(),
            value,
            timestamp_ms,
            style,
        })
}

pub(super) fn families(format: Format) -> impl Strategy<Value = Vec<Fam>> {
    let fam = (
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,15}",
        prop::sample::select(kinds(format)),
        prop::option::of("[a-z \\\\\"\n\té#{}]{0,20}"),
    )
        .prop_flat_map(move |(name, kind, help)| {
            prop::collection::vec(sample(format, kind), 0..6).prop_map(move |samples| Fam {
                name: name.clone(),
                kind,
                help: help.clone(),
                samples,
            })
        });
    prop::collection::vec(fam, 0..6).prop_map(|mut fams| {
        // Unique names, or the second family's `# TYPE` would not start one.
        let mut seen = std::collections::HashSet::new();
        fams.retain(|f| seen.insert(f.name.clone()));
        fams
    })
}

fn escape(s: &str, quote: bool) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

fn render_value(v: f64, style: u32) -> String {
    if v.is_nan() {
        return ["NaN", "nan", "NAN"][style as usize % 3].to_owned();
    }
    if v.is_infinite() {
        let spelled = ["Inf", "inf", "Infinity"][style as usize % 3];
        let sign = if v < 0.0 {
            "-"
        } else {
            ["+", ""][(style >> 2) as usize % 2]
        };
        return format!("{sign}{spelled}");
    }
    match style % 3 {
        0 => format!("{v}"),
        1 => format!("{v:e}"),
        _ => format!("{v:E}"),
    }
}

pub(super) fn render(fams: &[Fam], format: Format) -> String {
    let om = format == Format::OpenMetrics;
    let mut out = String::new();
    for f in fams {
        if let Some(help) = &f.help {
            out += &format!("# HELP {} {}\n", f.name, escape(help, om));
        }
        out += &format!("# TYPE {} {}\n", f.name, f.kind.as_str(format));
        for s in &f.samples {
            // Text format: some spacing, blank lines and comments around.
            let sep = if om {
                " "
            } else {
                [" ", "\t", "  ", " \t "][s.style as usize % 4]
            };
            let inner = if om {
                ""
            } else {
                [" ", ""][(s.style >> 3) as usize % 2]
            };
            if !om && s.style % 7 == 0 {
                out += "\n# a comment { } \"\n  \n";
            }
            out += &f.name;
            out += s.suffix.as_str();
            if !s.labels.is_empty() || s.style % 5 == 0 {
                out += if om {
                    "{"
                } else {
                    ["{", " {"][(s.style >> 5) as usize % 2]
                };
                let labels: Vec<String> = s
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{inner}{k}{inner}={inner}\"{}\"", escape(v, true)))
                    .collect();
                out += &labels.join(",");
                if !s.labels.is_empty() && (s.style >> 7) % 2 == 0 {
                    out += ",";
                }
                out += inner;
                out += "}";
            }
            out += sep;
            out += &render_value(s.value, s.style >> 9);
            if let Some(ms) = s.timestamp_ms {
                out += sep;
                if om {
                    let sign = if ms < 0 { "-" } else { "" };
                    let abs = ms.unsigned_abs();
                    out += &format!("{sign}{}.{:03}", abs / 1000, abs % 1000);
                } else {
                    out += &ms.to_string();
                }
            }
            if om && s.style % 11 == 0 {
                out += " # {trace_id=\"a}b\"} 1.5";
            }
            out += if (s.style >> 12) % 3 == 0 {
                "\r\n"
            } else {
                "\n"
            };
        }
    }
    if om {
        out += "# EOF\n";
    }
    out
}

fn check_roundtrip(fams: &[Fam], format: Format) -> Result<(), TestCaseError> {
    let body = render(fams, format);
    let got: Vec<Sample<'_>> = Parser::new(body.as_bytes(), format, Limits::default())
        .collect::<Result<_, _>>()
        .map_err(|e| TestCaseError::fail(format!("{e} in {body:?}")))?;
    let want: Vec<(&Fam, &Smp)> = fams
        .iter()
        .flat_map(|f| f.samples.iter().map(move |s| (f, s)))
        .collect();
    prop_assert_eq!(got.len(), want.len(), "{:?}", body);
    for (g, (f, s)) in got.iter().zip(want) {
        prop_assert_eq!(g.name, format!("{}{}", f.name, s.suffix.as_str()));
        prop_assert_eq!(g.family.name, f.name.as_str());
        prop_assert_eq!(g.family.kind, f.kind);
        prop_assert_eq!(g.suffix, s.suffix);
        prop_assert_eq!(g.family.help().map(|h| h.into_owned()), f.help.clone());
        let labels: Vec<(String, String)> = g
            .labels
            .iter()
            .map(|l| (l.name.to_owned(), l.value.into_owned()))
            .collect();
        prop_assert_eq!(&labels, &s.labels, "{:?}", body);
        prop_assert_eq!(g.labels.len(), s.labels.len());
        let want_bits = if s.value.is_nan() { f64::NAN } else { s.value }.to_bits();
        prop_assert_eq!(g.value.to_bits(), want_bits, "{:?}", body);
        prop_assert_eq!(g.timestamp_ms, s.timestamp_ms);
    }
    Ok(())
}

proptest! {
    #[test]
    fn text_format_roundtrip(fams in families(Format::Text)) {
        check_roundtrip(&fams, Format::Text)?;
    }

    #[test]
    fn openmetrics_roundtrip(fams in families(Format::OpenMetrics)) {
        check_roundtrip(&fams, Format::OpenMetrics)?;
    }

    #[test]
    fn any_bytes_parse_without_panic(
        body in prop::collection::vec(
            prop::sample::select(b"ab_:{}=\",# \t\n\r\\.0123456789eE+-INafn\xc3\xa9\xff".to_vec()),
            0..200,
        ),
        om in any::<bool>(),
        small in any::<bool>(),
    ) {
        let format = if om { Format::OpenMetrics } else { Format::Text };
        let limits = if small {
            Limits { max_line_bytes: 40, max_labels: 2, max_label_name_bytes: 3, max_label_value_bytes: 5 }
        } else {
            Limits::default()
        };
        let range = body.as_ptr_range();
        let mut last_line = 0;
        for item in Parser::new(&body, format, limits) {
            match item {
                Ok(s) => {
                    prop_assert!(range.contains(&s.series.as_ptr()));
                    prop_assert!(s.series.starts_with(s.name));
                    prop_assert!(s.labels.len() <= limits.max_labels);
                    prop_assert_eq!(s.labels.iter().count(), s.labels.len());
                    for l in s.labels.iter() {
                        prop_assert!(l.name.len() <= limits.max_label_name_bytes);
                        prop_assert!(!l.name.is_empty());
                    }
                }
                Err(e) => {
                    prop_assert!(e.line > last_line || e.kind == ErrorKind::MissingEof);
                    prop_assert!(e.offset <= body.len());
                    last_line = e.line;
                }
            }
        }
    }
}
