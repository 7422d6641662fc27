//! The parser over whole bodies: every syntax case of both formats, the
//! limits at their boundaries, and the errors' line numbers.

use std::borrow::Cow;

use super::*;

const TEXT: Format = Format::Text;
const OM: Format = Format::OpenMetrics;

fn items(body: &str, format: Format) -> Vec<Result<Sample<'_>, Error>> {
    Parser::new(body.as_bytes(), format, Limits::default()).collect()
}

/// Samples of a body that must parse without errors.
fn samples(body: &str, format: Format) -> Vec<Sample<'_>> {
    items(body, format)
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{e} in {body:?}")))
        .collect()
}

/// The only sample of a one-line text-format body.
fn one(line: &str) -> Sample<'_> {
    let mut s = samples(line, TEXT);
    assert_eq!(s.len(), 1, "{line:?}");
    s.pop().unwrap()
}

/// The errors of a body, as (line, kind).
fn errors(body: &[u8], format: Format, limits: Limits) -> Vec<(u64, ErrorKind)> {
    Parser::new(body, format, limits)
        .filter_map(|r| r.err().map(|e| (e.line, e.kind)))
        .collect()
}

/// The error of a one-line text-format body.
fn kind(line: &str) -> ErrorKind {
    let e = errors(line.as_bytes(), TEXT, Limits::default());
    assert_eq!(e.len(), 1, "{line:?}: {e:?}");
    e[0].1
}

fn om_kind(line: &str) -> ErrorKind {
    let body = format!("{line}\n# EOF\n");
    let e = errors(body.as_bytes(), OM, Limits::default());
    assert_eq!(e.len(), 1, "{line:?}: {e:?}");
    e[0].1
}

fn labels<'a>(s: &Sample<'a>) -> Vec<(&'a str, Cow<'a, str>)> {
    s.labels.iter().map(|l| (l.name, l.value)).collect()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn label_strings(s: &Sample<'_>) -> Vec<(String, String)> {
    s.labels
        .iter()
        .map(|l| (l.name.to_owned(), l.value.into_owned()))
        .collect()
}

// ---- text format: samples -------------------------------------------------

#[test]
fn name_labels_value() {
    let s = one(r#"http_requests_total{method="post",code="200"} 1027"#);
    assert_eq!(s.name, "http_requests_total");
    assert_eq!(s.series, r#"http_requests_total{method="post",code="200"}"#);
    assert_eq!(
        labels(&s),
        [("method", "post".into()), ("code", "200".into())]
    );
    assert!(s.labels.iter().all(|l| matches!(l.value, Cow::Borrowed(_))));
    assert_eq!(s.labels.len(), 2);
    assert_eq!(s.value, 1027.0);
    assert_eq!(s.timestamp_ms, None);
    assert_eq!(s.family.kind, MetricType::Unknown);
    assert_eq!(s.family.name, "http_requests_total");
    assert_eq!(s.suffix, Suffix::None);
}

#[test]
fn name_without_labels_and_colons() {
    let s = one("job:rpc_latency:rate5m 3");
    assert_eq!(s.name, "job:rpc_latency:rate5m");
    assert!(s.labels.is_empty());
    assert_eq!(s.series, "job:rpc_latency:rate5m");
    assert_eq!(one("_x 1").name, "_x");
    assert_eq!(one(":x 1").name, ":x");
}

#[test]
fn values() {
    for (text, want) in [
        ("1", 1.0),
        ("-1.5", -1.5),
        ("1e3", 1000.0),
        ("1.5E-3", 0.0015),
        ("3.4e+06", 3.4e6),
        ("+Inf", f64::INFINITY),
        ("Inf", f64::INFINITY),
        ("-Inf", f64::NEG_INFINITY),
        ("0", 0.0),
    ] {
        assert_eq!(one(&format!("m {text}")).value, want, "{text}");
    }
    assert_eq!(one("m NaN").value.to_bits(), f64::NAN.to_bits());
    assert!(one("m -0").value.is_sign_negative());
}

#[test]
fn timestamps_are_milliseconds() {
    let s = one("m 1 1395066363000");
    assert_eq!(s.timestamp_ms, Some(1_395_066_363_000));
    assert_eq!(one("m 1 -1").timestamp_ms, Some(-1));
    assert_eq!(kind("m 1 1.5"), ErrorKind::BadTimestamp);
    assert_eq!(kind("m 1 9223372036854775808"), ErrorKind::BadTimestamp);
    assert_eq!(kind("m 1 NaN"), ErrorKind::BadTimestamp);
}

#[test]
fn spaces_and_tabs_anywhere_between_tokens() {
    let s = one(" \tm { a = \"1\" ,\tb=\"2\" , } \t 5 \t 7 \t");
    assert_eq!(s.name, "m");
    assert_eq!(label_strings(&s), owned(&[("a", "1"), ("b", "2")]));
    assert_eq!(s.value, 5.0);
    assert_eq!(s.timestamp_ms, Some(7));
    assert_eq!(one("m\t{a=\"1\"}\t2").labels.len(), 1);
}

#[test]
fn empty_label_set_and_trailing_comma() {
    let s = one("m{} 1");
    assert!(s.labels.is_empty());
    assert_eq!(s.series, "m{}");
    let s = one(r#"m{a="b",} 1"#);
    assert_eq!(label_strings(&s), owned(&[("a", "b")]));
    assert_eq!(kind("m{,} 1"), ErrorKind::BadLabelName);
    assert_eq!(kind(r#"m{a="b",,} 1"#), ErrorKind::BadLabelName);
}

#[test]
fn label_values_holding_syntax() {
    let s = one(r##"m{a="}",b="#",c="x,y=z",d="{ } 1 2"} 3"##);
    assert_eq!(
        label_strings(&s),
        owned(&[("a", "}"), ("b", "#"), ("c", "x,y=z"), ("d", "{ } 1 2")])
    );
    assert_eq!(s.value, 3.0);
    let s = one(r#"m{a="é ü 日本"} 1"#);
    assert_eq!(s.labels.get("a").as_deref(), Some("é ü 日本"));
}

#[test]
fn escapes_in_label_values() {
    let s = one(r#"m{a="x\\y",b="say \"hi\"",c="l1\nl2",d="\t"} 1"#);
    assert!(s.labels.has_escapes());
    assert_eq!(
        label_strings(&s),
        owned(&[
            ("a", "x\\y"),
            ("b", "say \"hi\""),
            ("c", "l1\nl2"),
            ("d", "\\t"),
        ])
    );
    let v: Vec<_> = s.labels.iter().map(|l| l.value).collect();
    assert!(v.iter().all(|v| matches!(v, Cow::Owned(_))));
}

#[test]
fn escapes_at_the_end_of_a_value() {
    let s = one(r#"m{a="x\\"} 1"#);
    assert_eq!(s.labels.get("a").as_deref(), Some("x\\"));
    let s = one(r#"m{a="\\",b="\""} 1"#);
    assert_eq!(label_strings(&s), owned(&[("a", "\\"), ("b", "\"")]));
    // `\"` does not end the value: it never ends.
    assert_eq!(kind(r#"m{a="x\"} 1"#), ErrorKind::BadLabels);
    assert_eq!(kind(r#"m{a="x\"#), ErrorKind::BadLabels);
    assert_eq!(kind(r#"m{a="x\\\"} 1"#), ErrorKind::BadLabels);
}

#[test]
fn duplicate_labels() {
    assert_eq!(kind(r#"m{a="1",a="2"} 1"#), ErrorKind::DuplicateLabel);
    assert_eq!(kind(r#"m{a="1",b="2",a="1"} 1"#), ErrorKind::DuplicateLabel);
    let many: Vec<String> = (0..20).map(|i| format!("l{i}=\"v\"")).collect();
    let ok = format!("m{{{}}} 1", many.join(","));
    assert_eq!(one(&ok).labels.len(), 20);
    let dup = format!("m{{{},l7=\"x\"}} 1", many.join(","));
    assert_eq!(kind(&dup), ErrorKind::DuplicateLabel);
    // Names that only share a prefix are not duplicates.
    assert_eq!(one(r#"m{a="1",ab="2",a_="3"} 1"#).labels.len(), 3);
}

#[test]
fn malformed_sample_lines() {
    for (line, want) in [
        ("m", ErrorKind::MissingValue),
        ("m   ", ErrorKind::MissingValue),
        ("m{a=\"b\"}", ErrorKind::MissingValue),
        ("m x", ErrorKind::BadValue),
        ("m 0x1p3", ErrorKind::BadValue),
        ("m 1_000", ErrorKind::BadValue),
        ("m 1e400", ErrorKind::BadValue),
        ("m{a=\"b\"}x 1", ErrorKind::BadValue),
        ("m-x 1", ErrorKind::BadMetricName),
        ("9m 1", ErrorKind::BadMetricName),
        ("{a=\"b\"} 1", ErrorKind::BadMetricName),
        ("{\"quoted.name\"} 1", ErrorKind::BadMetricName),
        ("m{\"quoted.label\"=\"v\"} 1", ErrorKind::BadLabelName),
        ("m{9a=\"v\"} 1", ErrorKind::BadLabelName),
        ("m{a:b=\"v\"} 1", ErrorKind::BadLabelName),
        ("m{a-b=\"v\"} 1", ErrorKind::BadLabelName),
        ("m{a} 1", ErrorKind::BadLabels),
        ("m{a=b} 1", ErrorKind::BadLabels),
        ("m{a=\"b\" c=\"d\"} 1", ErrorKind::BadLabels),
        ("m{a=\"b\"", ErrorKind::BadLabels),
        ("m{a=\"b\",", ErrorKind::BadLabels),
        ("m{", ErrorKind::BadLabels),
        ("m 1 2 3", ErrorKind::UnexpectedText),
        ("m 1 2 x", ErrorKind::UnexpectedText),
        ("m 1 # {t=\"x\"} 1", ErrorKind::UnexpectedText),
    ] {
        assert_eq!(kind(line), want, "{line:?}");
    }
}

// ---- text format: lines, comments, families -------------------------------

#[test]
fn blank_lines_comments_and_crlf() {
    let body = "\n  \n\t\r\n# a comment\n#no space comment\n# HELPER not help\n# TYPE\n\
                a 1\r\n\r\nb 2\n# just words 3\nc 3";
    let s = samples(body, TEXT);
    assert_eq!(
        s.iter().map(|s| (s.name, s.value)).collect::<Vec<_>>(),
        [("a", 1.0), ("b", 2.0), ("c", 3.0)]
    );
    assert_eq!(samples("", TEXT).len(), 0);
    assert_eq!(samples("\n\n", TEXT).len(), 0);
    let s = one("m{a=\"b\"} 1 2\r");
    assert_eq!(s.timestamp_ms, Some(2));
}

#[test]
fn help_and_type_set_the_family() {
    let body = "# HELP http_requests_total The total number of HTTP requests.\n\
                # TYPE http_requests_total counter\n\
                http_requests_total{code=\"200\"} 1027 1395066363000\n\
                http_requests_total{code=\"400\"} 3 1395066363000\n";
    let s = samples(body, TEXT);
    assert_eq!(s.len(), 2);
    for s in &s {
        assert_eq!(s.family.name, "http_requests_total");
        assert_eq!(s.family.kind, MetricType::Counter);
        assert_eq!(
            s.family.help().as_deref(),
            Some("The total number of HTTP requests.")
        );
        assert_eq!(s.family.unit, None);
        assert_eq!(s.suffix, Suffix::None);
    }
}

#[test]
fn every_text_type() {
    for (word, kind) in [
        ("counter", MetricType::Counter),
        ("gauge", MetricType::Gauge),
        ("histogram", MetricType::Histogram),
        ("summary", MetricType::Summary),
        ("untyped", MetricType::Unknown),
    ] {
        let body = format!("# TYPE m {word}\nm 1\n");
        assert_eq!(samples(&body, TEXT)[0].family.kind, kind, "{word}");
    }
    for word in [
        "unknown",
        "info",
        "stateset",
        "gaugehistogram",
        "Counter",
        "",
    ] {
        let body = format!("# TYPE m {word}\nm 1\n");
        let e = errors(body.as_bytes(), TEXT, Limits::default());
        assert_eq!(e, [(1, ErrorKind::BadType)], "{word}");
    }
    // Tabs, and spaces after the word.
    let s = samples("#\tTYPE\tm\tgauge \t\nm 1\n", TEXT);
    assert_eq!(s[0].family.kind, MetricType::Gauge);
}

#[test]
fn histogram_samples() {
    let body = "# HELP rpc_seconds RPC latency.\n\
                # TYPE rpc_seconds histogram\n\
                rpc_seconds_bucket{le=\"0.05\"} 24054\n\
                rpc_seconds_bucket{le=\"0.1\"} 33444\n\
                rpc_seconds_bucket{le=\"+Inf\"} 144320\n\
                rpc_seconds_sum 53423\n\
                rpc_seconds_count 144320\n";
    let s = samples(body, TEXT);
    let got: Vec<_> = s.iter().map(|s| (s.suffix, s.value)).collect();
    assert_eq!(
        got,
        [
            (Suffix::Bucket, 24054.0),
            (Suffix::Bucket, 33444.0),
            (Suffix::Bucket, 144320.0),
            (Suffix::Sum, 53423.0),
            (Suffix::Count, 144320.0),
        ]
    );
    assert!(s.iter().all(|s| s.family.kind == MetricType::Histogram));
    assert!(s.iter().all(|s| s.family.name == "rpc_seconds"));
    assert_eq!(s[2].labels.get("le").as_deref(), Some("+Inf"));
}

#[test]
fn summary_samples() {
    let body = "# TYPE rpc_duration_seconds summary\n\
                rpc_duration_seconds{quantile=\"0.01\"} 3102\n\
                rpc_duration_seconds{quantile=\"0.99\"} NaN\n\
                rpc_duration_seconds_sum 1.7560473e+07\n\
                rpc_duration_seconds_count 2693\n\
                rpc_duration_seconds_created 1\n";
    let s = samples(body, TEXT);
    let got: Vec<_> = s.iter().map(|s| (s.family.kind, s.suffix)).collect();
    assert_eq!(
        got,
        [
            (MetricType::Summary, Suffix::None),
            (MetricType::Summary, Suffix::None),
            (MetricType::Summary, Suffix::Sum),
            (MetricType::Summary, Suffix::Count),
            // `_created` is OpenMetrics only: its own, untyped family.
            (MetricType::Unknown, Suffix::None),
        ]
    );
    assert_eq!(s[0].labels.get("quantile").as_deref(), Some("0.01"));
    assert!(s[1].value.is_nan());
    assert_eq!(s[4].family.name, "rpc_duration_seconds_created");
}

#[test]
fn type_after_samples_applies_from_there_on() {
    let body = "m 1\n# TYPE m counter\nm 2\n";
    let s = samples(body, TEXT);
    assert_eq!(s[0].family.kind, MetricType::Unknown);
    assert_eq!(s[1].family.kind, MetricType::Counter);
}

#[test]
fn samples_of_another_name_are_not_in_the_family() {
    let body = "# TYPE a gauge\na 1\nb 2\na_total 3\nab 4\na 5\n";
    let s = samples(body, TEXT);
    let got: Vec<_> = s
        .iter()
        .map(|s| (s.name, s.family.name, s.family.kind))
        .collect();
    assert_eq!(
        got,
        [
            ("a", "a", MetricType::Gauge),
            ("b", "b", MetricType::Unknown),
            ("a_total", "a_total", MetricType::Unknown),
            ("ab", "ab", MetricType::Unknown),
            ("a", "a", MetricType::Gauge),
        ]
    );
}

#[test]
fn help_escapes_and_spacing() {
    let body = "# HELP m  two spaces, a \\\\ and a \\n and \\\" kept\nm 1\n";
    let f = samples(body, TEXT)[0].family;
    assert_eq!(
        f.help().as_deref(),
        Some(" two spaces, a \\ and a \n and \\\" kept")
    );
    let f = samples("# HELP m\nm 1\n", TEXT)[0].family;
    assert_eq!(f.help().as_deref(), Some(""));
    // HELP then TYPE of another name: the HELP is not carried over.
    let f = samples("# HELP a x\n# TYPE b gauge\nb 1\n", TEXT)[0].family;
    assert_eq!((f.name, f.help()), ("b", None));
    assert_eq!(
        errors(b"# HELP 9x y\n", TEXT, Limits::default()),
        [(1, ErrorKind::BadMetricName)]
    );
    assert_eq!(
        errors(b"# HELP a-b y\n", TEXT, Limits::default()),
        [(1, ErrorKind::BadMetricName)]
    );
}

#[test]
fn text_counter_total_is_a_suffix() {
    let s = samples("# TYPE requests counter\nrequests_total 5\n", TEXT);
    assert_eq!((s[0].family.name, s[0].suffix), ("requests", Suffix::Total));
}

#[test]
fn text_has_no_unit_lines() {
    // `# UNIT` is a plain comment in the text format.
    let s = samples("# UNIT m_seconds seconds\nm_seconds 1\n", TEXT);
    assert_eq!(s[0].family.unit, None);
}

// ---- UTF-8 ---------------------------------------------------------------

#[test]
fn invalid_utf8_label_value_rejects_only_its_line() {
    let body = b"a{v=\"ok\"} 1\nb{v=\"caf\xe9\"} 2\nc 3\nd{v=\"\xff\xfe\"} 4\n\xc3\n# HELP e bad \xff\n# also \xff fine\ne 5\n";
    let items: Vec<_> = Parser::new(body, TEXT, Limits::default()).collect();
    let ok: Vec<_> = items.iter().flatten().map(|s| s.name).collect();
    assert_eq!(ok, ["a", "c", "e"]);
    let errs: Vec<_> = items
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|e| (e.line, e.kind))
        .collect();
    assert_eq!(
        errs,
        [
            (2, ErrorKind::InvalidUtf8),
            (4, ErrorKind::InvalidUtf8),
            (5, ErrorKind::InvalidUtf8),
            (6, ErrorKind::InvalidUtf8),
        ]
    );
}

#[test]
fn invalid_utf8_at_the_very_end_and_start() {
    let e = errors(
        b"\xffa 1\nb 2\nc{x=\"\xe2\x82\"} 3",
        TEXT,
        Limits::default(),
    );
    assert_eq!(
        e,
        [(1, ErrorKind::InvalidUtf8), (3, ErrorKind::InvalidUtf8)]
    );
}

// ---- limits ---------------------------------------------------------------

fn limits() -> Limits {
    Limits {
        max_line_bytes: 20,
        max_labels: 2,
        max_label_name_bytes: 3,
        max_label_value_bytes: 4,
    }
}

#[test]
fn line_length_limit_is_inclusive_and_skips_only_that_line() {
    let at = "m{a=\"1234\"} 12345678"; // 20 bytes
    assert_eq!(at.len(), 20);
    let over = "m{a=\"1234\"} 123456789";
    let body = format!("{at}\n{over}\n{at}\r\n# HELP m {}\nm 1\n", "h".repeat(20));
    let items: Vec<_> = Parser::new(body.as_bytes(), TEXT, limits()).collect();
    let kinds: Vec<_> = items
        .iter()
        .map(|r| r.as_ref().map(|s| s.name).map_err(|e| (e.line, e.kind)))
        .collect();
    assert_eq!(
        kinds,
        [
            Ok("m"),
            Err((2, ErrorKind::LineTooLong)),
            Ok("m"),
            Err((4, ErrorKind::LineTooLong)),
            Ok("m"),
        ]
    );
}

#[test]
fn very_long_line_with_default_limits() {
    let long = format!("m{{a=\"{}\"}} 1", "x".repeat(2 << 20));
    let body = format!("a 1\n{long}\nb 2\n");
    let items: Vec<_> = Parser::new(body.as_bytes(), TEXT, Limits::default()).collect();
    assert_eq!(items.len(), 3);
    assert_eq!(items[1].as_ref().unwrap_err().kind, ErrorKind::LineTooLong);
    assert_eq!(items[2].as_ref().unwrap().name, "b");
    // Unlimited: parsed, value borrowed.
    let s = Parser::new(long.as_bytes(), TEXT, Limits::UNLIMITED)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(s.labels.get("a").unwrap().len(), 2 << 20);
}

#[test]
fn label_count_limit() {
    let e = |line: &str| errors(line.as_bytes(), TEXT, limits());
    assert_eq!(e("m{a=\"1\",b=\"2\"} 1"), []);
    assert_eq!(
        e("m{a=\"\",b=\"\",c=\"\"} 1"),
        [(1, ErrorKind::TooManyLabels)]
    );
}

#[test]
fn label_name_and_value_length_limits() {
    let e = |line: &str| errors(line.as_bytes(), TEXT, limits());
    assert_eq!(e("m{abc=\"1234\"} 1"), []);
    assert_eq!(e("m{abcd=\"1\"} 1"), [(1, ErrorKind::LabelNameTooLong)]);
    assert_eq!(e("m{a=\"12345\"} 1"), [(1, ErrorKind::LabelValueTooLong)]);
    // An escape counts as written: two bytes.
    assert_eq!(e("m{a=\"12\\n\"} 1"), []);
    assert_eq!(e("m{a=\"123\\n\"} 1"), [(1, ErrorKind::LabelValueTooLong)]);
    // The metric name is the value of `__name__`.
    assert_eq!(e("abcd 1"), []);
    assert_eq!(e("abcde 1"), [(1, ErrorKind::LabelValueTooLong)]);
    assert_eq!(e("# TYPE abcde gauge"), [(1, ErrorKind::LabelValueTooLong)]);
}

#[test]
fn errors_carry_line_and_offset() {
    let body = "a 1\n\nb x\nc 3\n";
    let e: Vec<_> = Parser::new(body.as_bytes(), TEXT, Limits::default())
        .filter_map(Result::err)
        .collect();
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0].line, e[0].offset, e[0].kind),
        (3, 5, ErrorKind::BadValue)
    );
    assert!(body[e[0].offset..].starts_with("b x"));
}

// ---- OpenMetrics ----------------------------------------------------------

const OM_BODY: &str = "# TYPE acme_http_router_request_seconds summary\n\
# UNIT acme_http_router_request_seconds seconds\n\
# HELP acme_http_router_request_seconds Latency \\\"quoted\\\" though an HTTP router.\n\
acme_http_router_request_seconds_sum{path=\"/api/v1\",method=\"GET\"} 9036.32\n\
acme_http_router_request_seconds_count{path=\"/api/v1\",method=\"GET\"} 807283.0\n\
acme_http_router_request_seconds_created{path=\"/api/v1\",method=\"GET\"} 1605281325.0\n\
# TYPE go_goroutines gauge\n\
go_goroutines 69\n\
# TYPE process_cpu_seconds counter\n\
# UNIT process_cpu_seconds seconds\n\
process_cpu_seconds_total 4.20072246e+06\n\
process_cpu_seconds_created 1.6e9 1605281325.5\n\
# TYPE foo histogram\n\
foo_bucket{le=\"0.01\"} 0\n\
foo_bucket{le=\"+Inf\"} 17 # {trace_id=\"KOO5S4vxi0o\"} 0.67\n\
foo_count 17\n\
foo_sum 324789.3\n\
foo_created 1520430000.123\n\
# EOF\n";

#[test]
fn openmetrics_body() {
    let s = samples(OM_BODY, OM);
    let got: Vec<_> = s
        .iter()
        .map(|s| (s.name, s.family.name, s.family.kind, s.suffix))
        .collect();
    let (sm, g, c, h) = (
        MetricType::Summary,
        MetricType::Gauge,
        MetricType::Counter,
        MetricType::Histogram,
    );
    let req = "acme_http_router_request_seconds";
    assert_eq!(
        got,
        [
            ("acme_http_router_request_seconds_sum", req, sm, Suffix::Sum),
            (
                "acme_http_router_request_seconds_count",
                req,
                sm,
                Suffix::Count
            ),
            (
                "acme_http_router_request_seconds_created",
                req,
                sm,
                Suffix::Created
            ),
            ("go_goroutines", "go_goroutines", g, Suffix::None),
            (
                "process_cpu_seconds_total",
                "process_cpu_seconds",
                c,
                Suffix::Total
            ),
            (
                "process_cpu_seconds_created",
                "process_cpu_seconds",
                c,
                Suffix::Created
            ),
            ("foo_bucket", "foo", h, Suffix::Bucket),
            ("foo_bucket", "foo", h, Suffix::Bucket),
            ("foo_count", "foo", h, Suffix::Count),
            ("foo_sum", "foo", h, Suffix::Sum),
            ("foo_created", "foo", h, Suffix::Created),
        ]
    );
    assert_eq!(s[0].family.unit, Some("seconds"));
    assert_eq!(
        s[0].family.help().as_deref(),
        Some("Latency \"quoted\" though an HTTP router.")
    );
    assert_eq!(s[4].value, 4.20072246e+06);
    assert_eq!(s[5].timestamp_ms, Some(1_605_281_325_500));
    assert_eq!(s[7].value, 17.0);
    assert_eq!(s[7].timestamp_ms, None);
    assert_eq!(s[10].value, 1_520_430_000.123);
}

#[test]
fn openmetrics_types() {
    let body = "# TYPE a info\na_info{version=\"1\"} 1\n\
                # TYPE b stateset\nb{b=\"x\"} 1\nb{b=\"y\"} 0\n\
                # TYPE c gaugehistogram\nc_bucket{le=\"+Inf\"} 3\nc_gcount 3\nc_gsum 2\n\
                # TYPE d unknown\nd 1\n# EOF";
    let s = samples(body, OM);
    let got: Vec<_> = s.iter().map(|s| (s.family.kind, s.suffix)).collect();
    use MetricType as T;
    assert_eq!(
        got,
        [
            (T::Info, Suffix::Info),
            (T::StateSet, Suffix::None),
            (T::StateSet, Suffix::None),
            (T::GaugeHistogram, Suffix::Bucket),
            (T::GaugeHistogram, Suffix::Gcount),
            (T::GaugeHistogram, Suffix::Gsum),
            (T::Unknown, Suffix::None),
        ]
    );
    assert_eq!(om_kind("# TYPE a untyped"), ErrorKind::BadType);
    assert_eq!(om_kind("# TYPE a counter "), ErrorKind::BadType);
    assert_eq!(om_kind("# TYPE a"), ErrorKind::BadType);
}

#[test]
fn openmetrics_units() {
    assert_eq!(om_kind("# UNIT a seconds"), ErrorKind::BadUnit);
    assert_eq!(om_kind("# UNIT aseconds seconds"), ErrorKind::BadUnit);
    assert_eq!(om_kind("# UNIT _seconds seconds"), ErrorKind::BadUnit);
    let s = samples("# UNIT a_seconds seconds\na_seconds 1\n# EOF\n", OM);
    assert_eq!(s[0].family.unit, Some("seconds"));
    let s = samples("# UNIT a_seconds \na_seconds 1\n# EOF\n", OM);
    assert_eq!(s[0].family.unit, None);
}

#[test]
fn openmetrics_timestamps_are_seconds() {
    let s = samples("a 1 1520879607.789\nb 1 -1.5\nc 1 1.5e3\nd 1 0\n# EOF", OM);
    let ts: Vec<_> = s.iter().map(|s| s.timestamp_ms).collect();
    assert_eq!(
        ts,
        [
            Some(1_520_879_607_789),
            Some(-1500),
            Some(1_500_000),
            Some(0)
        ]
    );
    assert_eq!(om_kind("a 1 NaN"), ErrorKind::BadTimestamp);
    assert_eq!(om_kind("a 1 +Inf"), ErrorKind::BadTimestamp);
    assert_eq!(om_kind("a 1 1e30"), ErrorKind::BadTimestamp);
    assert_eq!(om_kind("a 1 x"), ErrorKind::BadTimestamp);
}

#[test]
fn openmetrics_exemplars_are_checked_and_ignored() {
    let body = "a_bucket{le=\"1\"} 2 # {trace_id=\"a}b#c\",span=\"\"} 0.5\n\
                a_bucket{le=\"2\"} 3 # {} 1 1520879607.7\n\
                a_total 4 1520879607 # {trace_id=\"x\"} 1e-3 1520879607.001\n\
                # EOF\n";
    let s = samples(body, OM);
    let got: Vec<_> = s.iter().map(|s| (s.value, s.timestamp_ms)).collect();
    assert_eq!(
        got,
        [(2.0, None), (3.0, None), (4.0, Some(1_520_879_607_000))]
    );
    assert_eq!(s[0].labels.len(), 1);
    for bad in [
        "a 1 # trace_id=\"x\" 1",
        "a 1 # {trace_id=\"x\"}",
        "a 1 # {trace_id=\"x\"} x",
        "a 1 # {trace_id=\"x\"} 1 NaN",
        "a 1 # {trace_id=\"x\"} 1 2 3",
        "a 1 # {trace_id=x} 1",
        "a 1 # {trace_id=\"x\"}  1",
        "a 1 2 # {t=\"x\"}",
    ] {
        assert_eq!(om_kind(bad), ErrorKind::BadExemplar, "{bad}");
    }
    assert_eq!(om_kind("a 1 2 #"), ErrorKind::BadExemplar);
    assert_eq!(om_kind("a 1 2 x"), ErrorKind::UnexpectedText);
}

#[test]
fn openmetrics_is_strict_about_spaces_and_comments() {
    for (line, want) in [
        ("a  1", ErrorKind::BadValue),
        ("a\t1", ErrorKind::BadValue),
        ("a 1 ", ErrorKind::UnexpectedText),
        ("a 1  2", ErrorKind::UnexpectedText),
        (" a 1", ErrorKind::BadMetricName),
        ("a {b=\"c\"} 1", ErrorKind::BadValue),
        ("a{b=\"c\", d=\"e\"} 1", ErrorKind::BadLabelName),
        ("a{b = \"c\"} 1", ErrorKind::BadLabels),
        ("# a free comment", ErrorKind::BadComment),
        ("#HELP a b", ErrorKind::BadComment),
        ("# HELP", ErrorKind::BadComment),
        ("#", ErrorKind::BadComment),
    ] {
        assert_eq!(om_kind(line), want, "{line:?}");
    }
    // Blank lines are tolerated (the spec has none; they lose nothing).
    assert_eq!(samples("a 1\n\nb 2\n# EOF\n", OM).len(), 2);
}

#[test]
fn openmetrics_without_eof_yields_nothing() {
    for body in [
        "a 1\nb 2\n",
        "a 1\nb 2",
        "a 1\n# EOF\n\n",
        "a 1\n# EOF \n",
        "",
        "a 1\n#EOF\n",
    ] {
        let items: Vec<_> = Parser::new(body.as_bytes(), OM, Limits::default()).collect();
        assert_eq!(items.len(), 1, "{body:?}");
        let e = items[0].as_ref().unwrap_err();
        assert_eq!(e.kind, ErrorKind::MissingEof, "{body:?}");
    }
    let e = Parser::new(b"a 1\nb 2\n", OM, Limits::default())
        .next()
        .unwrap()
        .unwrap_err();
    assert_eq!((e.line, e.offset), (2, 4));
}

#[test]
fn openmetrics_eof_spellings() {
    for body in ["a 1\n# EOF", "a 1\n# EOF\n", "a 1\r\n# EOF\r\n"] {
        assert_eq!(samples(body, OM).len(), 1, "{body:?}");
    }
    assert_eq!(samples("# EOF\n", OM).len(), 0);
    assert_eq!(samples("# EOF", OM).len(), 0);
}

#[test]
fn openmetrics_data_after_eof() {
    let body = "a 1\n# EOF\nb 2\n# EOF\n";
    let items: Vec<_> = Parser::new(body.as_bytes(), OM, Limits::default()).collect();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].as_ref().unwrap().name, "a");
    let e = items[1].as_ref().unwrap_err();
    assert_eq!((e.line, e.kind), (2, ErrorKind::DataAfterEof));
}

#[test]
fn text_format_ignores_eof() {
    // `# EOF` is a comment in the text format.
    assert_eq!(samples("a 1\n# EOF\nb 2\n", TEXT).len(), 2);
}

#[test]
fn a_line_never_runs_into_the_next() {
    let e = errors(b"a 1\xff\nb 2\n", TEXT, Limits::default());
    assert_eq!(e, [(1, ErrorKind::InvalidUtf8)]);
    let body = b"a{x=\"y\\\nz\"} 1\nb 2\na{x=\"y\nc 3\n";
    let items: Vec<_> = Parser::new(body, TEXT, Limits::default()).collect();
    let got: Vec<_> = items
        .iter()
        .map(|r| r.as_ref().map(|s| s.name).map_err(|e| (e.line, e.kind)))
        .collect();
    assert_eq!(
        got,
        [
            Err((1, ErrorKind::BadLabels)),
            Err((2, ErrorKind::BadMetricName)),
            Ok("b"),
            Err((4, ErrorKind::BadLabels)),
            Ok("c"),
        ]
    );
}

#[test]
fn the_read_limit_never_cuts_into_a_panic() {
    // Found by fuzzing: spaces up to the read limit before a timestamp.
    let limits = Limits {
        max_line_bytes: 8,
        ..Limits::default()
    };
    let body = "m 0\t\t\t\t\t\t\t\t\t\t\t\t1\nok 1\n";
    assert_eq!(
        errors(body.as_bytes(), TEXT, limits),
        [(1, ErrorKind::LineTooLong)]
    );
    // A value whose multi-byte character the limit cuts.
    let body = "m 1ééééé\nok 1\n";
    assert_eq!(
        errors(body.as_bytes(), TEXT, limits),
        [(1, ErrorKind::LineTooLong)]
    );
    let body = "m 1 1é\nok 1\n# EOF\n";
    let limits = Limits {
        max_line_bytes: 6,
        ..Limits::default()
    };
    assert_eq!(
        errors(body.as_bytes(), OM, limits),
        [(1, ErrorKind::LineTooLong)]
    );
}
