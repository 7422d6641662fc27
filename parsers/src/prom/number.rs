//! Sample values and timestamps: text to `f64` and to milliseconds.
//!
//! Values take a fast path for plain decimals (at most 19 significant
//! digits, a power of ten within ±22: exact, since both factors are exact
//! `f64`s and one IEEE operation rounds correctly), everything else goes
//! through `str::parse::<f64>`. The accepted spellings are Go's
//! `strconv.ParseFloat`'s without hex floats and `_` (what Prometheus
//! accepts): decimals with optional sign, fraction and exponent, and
//! `inf`, `infinity`, `nan` in any case with an optional sign.

/// Exact powers of ten as `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Parses a sample value. `NaN` of any spelling is [`f64::NAN`]; a finite
/// number too large for an `f64` is refused (Go's `ParseFloat` returns
/// `ErrRange`, and Prometheus refuses the line).
pub(crate) fn value(s: &str) -> Option<f64> {
    match decimal_at(s.as_bytes(), 0) {
        Some((v, end)) if end == s.len() => Some(v),
        _ => slow_value(s),
    }
}

/// The plain decimal starting at `start`, if one does and the fast path
/// takes it, and the index after it. `None` sends the caller to [`value`]
/// with the whole field (NaN, Inf, more than 19 digits, large exponents,
/// and what is not a number).
#[inline(always)]
pub(crate) fn decimal_at(b: &[u8], start: usize) -> Option<(f64, usize)> {
    let neg = b.get(start) == Some(&b'-');
    let mut i = start + usize::from(neg || b.get(start) == Some(&b'+'));
    let mut mantissa: u64 = 0;
    let int_start = i;
    while let Some(d) = digit(b, i) {
        mantissa = mantissa.wrapping_mul(10).wrapping_add(d);
        i += 1;
    }
    let mut digits = i - int_start;
    let mut exp: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let frac_start = i;
        while let Some(d) = digit(b, i) {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(d);
            i += 1;
        }
        digits += i - frac_start;
        exp = -((i - frac_start) as i64);
    }
    // More than 19 digits may not fit (leading zeros included: rare).
    if digits == 0 || digits > 19 {
        return None;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        let neg_exp = b.get(i) == Some(&b'-');
        i += usize::from(neg_exp || b.get(i) == Some(&b'+'));
        let exp_start = i;
        let mut e: i64 = 0;
        while let Some(d) = digit(b, i) {
            if i - exp_start == 4 {
                return None;
            }
            e = e * 10 + d as i64;
            i += 1;
        }
        if i == exp_start {
            return None;
        }
        exp += if neg_exp { -e } else { e };
    }
    if mantissa > 1 << 53 {
        return None;
    }
    let m = mantissa as f64;
    let v = match exp {
        0..=22 => m * POW10[exp as usize],
        -22..=-1 => m / POW10[(-exp) as usize],
        _ if mantissa == 0 => 0.0,
        _ => return None,
    };
    Some((if neg { -v } else { v }, i))
}

#[inline(always)]
fn digit(b: &[u8], i: usize) -> Option<u64> {
    let d = b.get(i)?.wrapping_sub(b'0');
    (d <= 9).then_some(u64::from(d))
}

#[cold]
fn slow_value(s: &str) -> Option<f64> {
    let v: f64 = s.parse().ok()?;
    if v.is_nan() {
        return Some(f64::NAN);
    }
    if v.is_infinite() && !s.bytes().any(|c| c == b'i' || c == b'I') {
        return None;
    }
    Some(v)
}

/// Parses a text-format timestamp: an integer number of milliseconds,
/// optionally negative.
#[cfg(test)]
pub(crate) fn millis(s: &str) -> Option<i64> {
    millis_at(s.as_bytes(), 0).and_then(|(v, end)| (end == s.len()).then_some(v))
}

/// The integer starting at `start` (optionally negative) and the index
/// after its digits; `None` when there are no digits or it overflows.
#[inline]
pub(crate) fn millis_at(b: &[u8], start: usize) -> Option<(i64, usize)> {
    let neg = b.get(start) == Some(&b'-');
    let first = start + usize::from(neg);
    let mut i = first;
    let mut v: i64 = 0;
    while let Some(&c) = b.get(i) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        // Accumulated negatively so that i64::MIN fits.
        v = v.checked_mul(10)?.checked_sub(i64::from(d))?;
        i += 1;
    }
    if i == first {
        return None;
    }
    Some((if neg { v } else { v.checked_neg()? }, i))
}

/// Parses an OpenMetrics timestamp (seconds, maybe fractional) into
/// milliseconds. Plain decimals are converted exactly (digits after the
/// third decimal truncated toward zero); exponent forms go through `f64`
/// and are truncated toward zero as Prometheus does (`int64(ts * 1000)`).
/// NaN, infinities and out-of-range values are refused.
pub(crate) fn seconds_as_millis(s: &str) -> Option<i64> {
    exact_seconds(s.as_bytes()).or_else(|| {
        let secs = value(s)?;
        let ms = secs * 1000.0;
        // -2^63 is exact; 2^63 is the first value that does not fit.
        (ms.is_finite() && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&ms))
            .then_some(ms as i64)
    })
}

fn exact_seconds(b: &[u8]) -> Option<i64> {
    let (neg, b) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    let dot = b.iter().position(|&c| c == b'.').unwrap_or(b.len());
    let (int, frac) = (&b[..dot], b.get(dot + 1..).unwrap_or(&[]));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut ms: i128 = 0;
    for &c in int {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        ms = ms.checked_mul(10)?.checked_add(i128::from(d))?;
        if ms > i128::from(i64::MAX) {
            return None;
        }
    }
    ms *= 1000;
    for (k, &c) in frac.iter().enumerate() {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        if k < 3 {
            ms += i128::from(d) * [100, 10, 1][k];
        }
    }
    let ms = if neg { -ms } else { ms };
    i64::try_from(ms).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(s: &str) -> Option<u64> {
        value(s).map(f64::to_bits)
    }

    #[test]
    fn decimals_match_std_parsing() {
        for s in [
            "0",
            "-0",
            "+0",
            "1",
            "12345.67",
            "0.1",
            "1e3",
            "1E+06",
            "3.4e-05",
            "1.7976931348623157e308",
            "5e-324",
            "123456789012345678",
            "1234567890123456789012",
            "0.000000000000000000000000000001",
            "9007199254740993",
            ".5",
            "5.",
            "-1.5e-7",
            "4.9406564584124654e-324",
            "2.2250738585072014e-308",
            "1e22",
            "1e23",
            "00000000000000000000001.5",
        ] {
            let want: f64 = s.parse().unwrap();
            assert_eq!(bits(s), Some(want.to_bits()), "{s}");
        }
    }

    proptest::proptest! {
        /// Any decimal spelling: the value std's parser gives, bit for bit
        /// (the fast path's digits, exponents and rounding included).
        #[test]
        fn decimals_parse_as_std_does(
            s in "[+-]?[0-9]{0,21}(\\.[0-9]{0,21})?([eE][+-]?[0-9]{1,3})?",
        ) {
            let want = s.parse::<f64>().ok().filter(|v| v.is_finite());
            proptest::prop_assert_eq!(value(&s).map(f64::to_bits), want.map(f64::to_bits), "{}", s);
        }
    }

    #[test]
    fn specials() {
        for s in ["+Inf", "Inf", "inf", "+inf", "Infinity", "INF"] {
            assert_eq!(value(s), Some(f64::INFINITY), "{s}");
        }
        for s in ["-Inf", "-inf", "-Infinity"] {
            assert_eq!(value(s), Some(f64::NEG_INFINITY), "{s}");
        }
        for s in ["NaN", "nan", "NAN", "-NaN", "+nan"] {
            assert_eq!(bits(s), Some(f64::NAN.to_bits()), "{s}");
        }
    }

    #[test]
    fn refused_like_prometheus() {
        for s in [
            "", "-", "+", ".", "e5", "1e", "1e+", "0x1p-2", "0x10", "1_000", "1,5", "1.2.3", "abc",
            "1e400", "-1e400", "Infx", "1 ", " 1", "--1", "NaN1",
        ] {
            assert_eq!(value(s), None, "{s:?}");
        }
        // Underflow is not an error in Go either.
        assert_eq!(value("1e-400"), Some(0.0));
    }

    #[test]
    fn text_timestamps() {
        assert_eq!(millis("1395066363000"), Some(1_395_066_363_000));
        assert_eq!(millis("0"), Some(0));
        assert_eq!(millis("-5"), Some(-5));
        assert_eq!(millis("9223372036854775807"), Some(i64::MAX));
        assert_eq!(millis("-9223372036854775808"), Some(i64::MIN));
        for s in [
            "9223372036854775808",
            "-9223372036854775809",
            "",
            "-",
            "1.5",
            "1e3",
            "+1",
        ] {
            assert_eq!(millis(s), None, "{s}");
        }
    }

    #[test]
    fn openmetrics_timestamps() {
        assert_eq!(seconds_as_millis("1520879607.789"), Some(1_520_879_607_789));
        assert_eq!(seconds_as_millis("1520879607"), Some(1_520_879_607_000));
        assert_eq!(
            seconds_as_millis("1520879607.7899"),
            Some(1_520_879_607_789)
        );
        assert_eq!(seconds_as_millis("-1.5"), Some(-1500));
        assert_eq!(seconds_as_millis(".5"), Some(500));
        assert_eq!(seconds_as_millis("1.5e3"), Some(1_500_000));
        assert_eq!(seconds_as_millis("-9223372036854775.808"), Some(i64::MIN));
        assert_eq!(seconds_as_millis("9223372036854775.807"), Some(i64::MAX));
        for s in [
            "9223372036854775.808",
            "1e17",
            "NaN",
            "+Inf",
            "-Inf",
            "",
            ".",
            "1.2.3",
            "x",
            "99999999999999999999999999999999999999999",
        ] {
            assert_eq!(seconds_as_millis(s), None, "{s}");
        }
    }
}
