//! Property tests for the fast path (`fast.rs`): on random bodies, the
//! parser yields exactly what it yields with every line read by the
//! general grammar (`line.rs`): same samples (labels, positions kept for
//! iteration, values by bits, families), same errors, same lines.
//!
//! The bodies are mostly lines of the plain form the fast path takes, with
//! one thing changed here and there (a tab, a `\r`, unsorted or repeated
//! labels, an escape at the end of a value, odd values and timestamps,
//! small limits), so that both its accepting and its giving up are
//! exercised; plus the property tests' rendered bodies and random bytes.

use proptest::prelude::*;

use super::*;

/// What a parser yields, in a form that compares: each sample as its
/// fields (labels decoded, the kept positions included), or the error.
fn outcome(parser: Parser<'_>) -> Vec<Result<String, Error>> {
    parser
        .map(|item| {
            item.map(|s| {
                let labels: Vec<_> = s.labels.iter().collect();
                let kept = &s.labels.spans[..usize::from(s.labels.known)];
                format!(
                    "{} {} {:?} {:?} {} {} {} {:?} {:x} {:?} {:?} {:?} {:?}",
                    s.name,
                    s.series,
                    labels,
                    s.labels.as_written(),
                    s.labels.len(),
                    s.labels.has_escapes(),
                    s.labels.known,
                    kept,
                    s.value.to_bits(),
                    s.timestamp_ms,
                    s.family,
                    s.family.help(),
                    s.suffix,
                )
            })
        })
        .collect()
}

fn check(body: &[u8], format: Format, limits: Limits) -> Result<(), TestCaseError> {
    let fast = outcome(Parser::new(body, format, limits));
    let general = outcome(Parser::new(body, format, limits).general_only());
    prop_assert_eq!(fast, general, "{:?}", String::from_utf8_lossy(body));
    Ok(())
}

const SMALL: Limits = Limits {
    max_line_bytes: 48,
    max_labels: 2,
    max_label_name_bytes: 4,
    max_label_value_bytes: 6,
};

/// Short lines, everything else generous.
const SHORT_LINES: Limits = Limits {
    max_line_bytes: 24,
    ..Limits::DEFAULT
};

fn limits() -> impl Strategy<Value = Limits> {
    prop::sample::select(vec![Limits::default(), SMALL, SHORT_LINES])
}

/// A token of a plain line, or one of the changes the fast path gives up
/// on (and some it takes).
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z_:][a-z0-9_:]{0,20}",
        1 => prop::sample::select(vec!["", "1a", "a-b", "é", "a\u{e9}", "abcdefghijklmnopqrstuvwxyz_total"])
            .prop_map(str::to_owned),
        // The families of the metadata lines below.
        2 => prop::sample::select(vec!["a", "a_total", "a_b_bucket", "a_b_count", "abc", "abc_sum", "a_b"])
            .prop_map(str::to_owned),
    ]
}

fn label_name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-c_][a-c0-9_]{0,3}",
        2 => "[a-c_][a-c0-9_]{4,9}",
        1 => prop::sample::select(vec!["", "1", "a:b", "abcdefgh", "abcdefghi", "abcdefghj", "é"])
            .prop_map(str::to_owned),
    ]
}

fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z0-9./ ]{0,10}",
        1 => "[a\\\\\"\n\r{},=é]{0,6}",
        1 => prop::sample::select(vec!["a\\", "\\\n", "\\\"", "\\\\", "\\n", "\\\r\n", "é\\"])
            .prop_map(str::to_owned),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "-?[0-9]{1,8}(\\.[0-9]{1,8})?(e[+-]?[0-9]{1,3})?",
        1 => prop::sample::select(vec![
            "NaN", "+Inf", "-Inf", "inf", "1e400", "1e-400", "0x10", "1_0", "1.5x", ".5", "5.",
            "00000000000000000000001", "12345678901234567890", "9007199254740993", "", "#", "+1",
            "1e5000", "1e22", "1e23", "-0",
        ])
        .prop_map(str::to_owned),
    ]
}

fn timestamp() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(String::new()),
        2 => "-?[0-9]{1,13}(\\.[0-9]{1,4})?".prop_map(|t| format!(" {t}")),
        1 => prop::sample::select(vec![
            " 9223372036854775808", " -9223372036854775808", " 1e3", " +5", "  5", " \t5", " #",
            " ", " 5 ", " 1.5 # {a=\"b\"} 1", " # {a=\"b\"} 1", " 1\r", "\t5", " NaN",
        ])
        .prop_map(str::to_owned),
    ]
}

/// Where to join the parts of a line: almost always what the fast path
/// expects.
fn glue(plain: &'static str) -> impl Strategy<Value = &'static str> {
    prop_oneof![
        20 => Just(plain),
        1 => prop::sample::select(vec!["", " ", "\t", "  ", ",", "\r"]),
    ]
}

/// Labels: mostly in ascending order of name (as the fast path wants
/// them), sometimes as generated (unsorted, repeated).
fn labels() -> impl Strategy<Value = Vec<(String, &'static str, String, &'static str)>> {
    (
        // Up to nine: the fast path checks the first four names for repeats
        // one way and later ones another.
        prop::collection::vec(
            (label_name(), glue("=\""), label_value(), glue("\"")),
            0..10,
        ),
        0..4u8,
    )
        .prop_map(|(mut labels, order)| {
            if order != 0 {
                labels.sort_by(|a, b| a.0.cmp(&b.0));
            }
            labels
        })
}

fn line() -> impl Strategy<Value = String> {
    (
        name(),
        prop::option::of(labels()),
        (glue(","), glue("}"), glue(" ")),
        value(),
        timestamp(),
        prop_oneof![8 => Just("\n"), 1 => Just("\r\n"), 1 => Just(" \n"), 1 => Just("")],
    )
        .prop_map(|(name, labels, (comma, close, space), value, ts, end)| {
            let mut out = name;
            if let Some(labels) = labels {
                out.push('{');
                let l: Vec<String> = labels
                    .iter()
                    .map(|(n, eq, v, q)| format!("{n}{eq}{v}{q}"))
                    .collect();
                out += &l.join(comma);
                out += close;
            }
            out += space;
            out += &value;
            out += &ts;
            out += end;
            out
        })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let meta = prop::sample::select(vec![
        "# TYPE a counter\n",
        "# TYPE a_b histogram\n",
        "# HELP a some help\n",
        "# HELP a_b  two\\n spaces \n",
        "# HELP abc\n",
        "# HELP abc \n",
        "# HELP a_b x\r\n",
        "# TYPE abc summary\n",
        "# TYPE abc summary \n",
        "# TYPE abc\tsummary\n",
        "# TYPE abc  gauge\n",
        "# TYPE a untyped\n",
        "# TYPE a unknown\n",
        "# TYPE a info\n",
        "# TYPE a bogus\n",
        "# TYPE a\n",
        "# UNIT a_b b\n",
        "#HELP a x\n",
        "#  HELP a x\n",
        "# HELP é x\n",
        "# HELP a_b_c_d_e_f_g_h long name\n",
        "# EOF\n",
        "\n",
        "# comment\n",
    ]);
    let part = prop_oneof![8 => line(), 1 => meta.prop_map(str::to_owned)];
    prop::collection::vec(part, 0..8).prop_map(|parts| parts.concat().into_bytes())
}

/// 1,000 cases per property, or `PROPTEST_CASES` when set.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

/// A piece of a long label value: plain runs that carry a value across the
/// 64-byte blocks the fast path classifies at once, and escapes, quotes,
/// newlines and non-ASCII bytes that may land on a block's edge.
fn value_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z]{0,70}",
        2 => prop::sample::select(vec!["\\\"", "\\\\", "\\n", "\\", "\"", "\n", "é", "\\é", "\\\\\\\""])
            .prop_map(str::to_owned),
    ]
}

/// A line whose label set runs over several 64-byte blocks: after a name
/// of `pad` bytes (moving the set against the blocks), up to ten labels
/// (some names over 60 bytes), sorted or not, then a tail that may end it,
/// leave it open or cut it.
fn long_set_line() -> impl Strategy<Value = Vec<u8>> {
    let label_name = prop_oneof![6 => "[a-c][a-c0-9_]{0,3}", 1 => "[a-c][a-z_]{60,70}"];
    let value = prop::collection::vec(value_piece(), 0..6).prop_map(|v| v.concat());
    (
        0usize..70,
        prop::collection::vec((label_name, value), 0..10),
        any::<bool>(),
        prop::sample::select(vec!["} 1\n", "} 1", "}", "", "} 1\n# x\n", "}é 1\n"]),
    )
        .prop_map(|(pad, mut labels, sorted, tail)| {
            if sorted {
                labels.sort();
            }
            let set: Vec<String> = labels.iter().map(|(n, v)| format!("{n}=\"{v}\"")).collect();
            format!("{}{{{}{tail}", "m".repeat(pad + 1), set.join(",")).into_bytes()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn fast_path_agrees_on_plain_lines(
        limits in limits(),
        body in body(),
    ) {
        check(&body, Format::Text, limits)?;
        let mut om_body = body;
        om_body.extend_from_slice(b"# EOF\n");
        check(&om_body, Format::OpenMetrics, limits)?;
    }

    #[test]
    fn fast_path_agrees_on_rendered_families(
        text in roundtrip::families(Format::Text),
        om in roundtrip::families(Format::OpenMetrics),
    ) {
        let text = roundtrip::render(&text, Format::Text);
        check(text.as_bytes(), Format::Text, Limits::default())?;
        let om = roundtrip::render(&om, Format::OpenMetrics);
        check(om.as_bytes(), Format::OpenMetrics, Limits::default())?;
    }

    #[test]
    fn fast_path_agrees_on_random_bytes(
        body in prop::collection::vec(
            prop::sample::select(b"ab_:{}=\",# \t\n\r\\.0123456789eE+-INafn\xc3\xa9\xff".to_vec()),
            0..200,
        ),
        om in any::<bool>(),
        limits in limits(),
    ) {
        let format = if om { Format::OpenMetrics } else { Format::Text };
        check(&body, format, limits)?;
    }

    /// Label sets over several 64-byte blocks, escapes on their edges,
    /// cut anywhere or with an invalid byte where the cut was.
    #[test]
    fn fast_path_agrees_on_long_label_sets(
        line in long_set_line(),
        cut in prop::option::of(0usize..400),
        limits in prop::sample::select(vec![Limits::DEFAULT, Limits::UNLIMITED]),
    ) {
        let mut bodies = vec![line.clone()];
        if let Some(cut) = cut.filter(|&c| c < line.len()) {
            bodies.push(line[..cut].to_vec());
            let mut invalid = line.clone();
            invalid[cut] = 0xff;
            bodies.push(invalid);
        }
        for mut body in bodies {
            check(&body, Format::Text, limits)?;
            body.extend_from_slice(b"# EOF\n");
            check(&body, Format::OpenMetrics, limits)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// A plain line with a long label set is taken by the fast path (and
    /// agrees with the general one): only the rest is left to the general
    /// grammar.
    #[test]
    fn fast_path_takes_long_plain_label_sets(
        pad in 0usize..70,
        labels in prop::collection::btree_map(
            prop_oneof![6 => "[a-c][a-c0-9_]{0,3}", 1 => "[a-c][a-z_]{60,70}"],
            prop::collection::vec(
                prop_oneof![
                    8 => "[a-z]{0,70}",
                    3 => prop::sample::select(vec!["\\\"", "\\\\", "\\n", "é", "\\a"]).prop_map(str::to_owned),
                ],
                0..6,
            )
            .prop_map(|v| v.concat()),
            1..12,
        ),
        reverse in any::<bool>(),
    ) {
        let mut labels: Vec<_> = labels.into_iter().collect();
        if reverse {
            labels.reverse();
        }
        let set: Vec<String> = labels.iter().map(|(n, v)| format!("{n}=\"{v}\"")).collect();
        let line = format!("{}{{{}}} 1\n", "m".repeat(pad + 1), set.join(","));
        let family = Family::undeclared("", Format::Text);
        let taken = fast::sample::<false>(
            text::Text::of_prefix(line.as_bytes()),
            0,
            &family,
            &Limits::DEFAULT,
            &mut Vec::new(),
        );
        prop_assert!(taken.is_some(), "{:?}", line);
        check(line.as_bytes(), Format::Text, Limits::DEFAULT)?;
    }
}

/// The positions of the first four labels are kept as the general path
/// keeps them: when the fourth (or last) ends within `u16` offsets of the
/// set's start, however long the rest is.
#[test]
fn positions_kept_past_u16_offsets_as_the_general_path_keeps_them() {
    for (before, long) in [
        (0usize, 65_530usize),
        (3, 65_500),
        (4, 65_490),
        (4, 70_000),
        (1, 65_600),
    ] {
        for extra in 0..12 {
            let mut labels: Vec<String> = (0..before)
                .map(|k| format!("{}=\"1\"", char::from(b'a' + k as u8)))
                .collect();
            labels.push(format!("z=\"{}\"", "v".repeat(long + extra)));
            let body = format!("x{{{}}} 1\n", labels.join(","));
            check(body.as_bytes(), Format::Text, Limits::UNLIMITED)
                .unwrap_or_else(|e| panic!("{before} labels, then {} bytes: {e}", long + extra));
        }
    }
}
