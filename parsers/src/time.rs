//! RFC 3339 timestamps to and from `i64` Unix nanoseconds (UTC).
//!
//! Hand-written for speed: one timestamp is parsed per log line. Civil-date
//! math follows Howard Hinnant's `days_from_civil` / `civil_from_days`
//! algorithms (proleptic Gregorian calendar).
//!
//! Range: `i64` nanoseconds span 1677-09-21T00:12:43.145224192Z to
//! 2262-04-11T23:47:16.854775807Z. Well-formed timestamps outside that span
//! (for example in year 9999) are rejected by [`parse_rfc3339`] rather than
//! wrapped or clamped.

const NANOS_PER_SEC: i128 = 1_000_000_000;
/// 10^0 to 10^8: scales a fraction of fewer than nine digits to nanoseconds.
const POW10: [i64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];
const SECS_PER_DAY: i64 = 86_400;

/// Parses an RFC 3339 timestamp into Unix nanoseconds, UTC.
///
/// Accepted: `YYYY-MM-DDTHH:MM:SS`, optionally `.` and 1–9 fraction digits,
/// then `Z` or `±hh:mm`. `t` and `z` are accepted in lower case. Rejected:
/// impossible dates (month 13, day 32, February 29 outside leap years),
/// hour 24, minute or second 60 (no leap seconds), more than 9 fraction
/// digits, trailing bytes, and results outside the `i64` nanosecond range.
#[must_use]
pub fn parse_rfc3339(s: &[u8]) -> Option<i64> {
    if s.len() < 20 {
        return None;
    }
    let year = digits(&s[0..4])?;
    let month = digits(&s[5..7])?;
    let day = digits(&s[8..10])?;
    let hour = digits(&s[11..13])?;
    let minute = digits(&s[14..16])?;
    let second = digits(&s[17..19])?;
    if s[4] != b'-'
        || s[7] != b'-'
        || !matches!(s[10], b'T' | b't')
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }

    let mut i = 19;
    let mut frac: i64 = 0;
    if s[i] == b'.' {
        i += 1;
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            frac = frac * 10 + i64::from(s[i] - b'0');
            i += 1;
            if i - start > 9 {
                return None;
            }
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        frac *= POW10[9 - n];
    }

    let offset_secs: i64 = match s.get(i)? {
        b'Z' | b'z' if i + 1 == s.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == s.len() && s[i + 3] == b':' => {
            let oh = digits(&s[i + 1..i + 3])?;
            let om = digits(&s[i + 4..i + 6])?;
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };

    let days = days_from_civil(year, month, day);
    let secs = days * SECS_PER_DAY + hour * 3600 + minute * 60 + second - offset_secs;
    let nanos = i128::from(secs) * NANOS_PER_SEC + i128::from(frac);
    i64::try_from(nanos).ok()
}

/// Appends `nanos` as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (UTC, always nine
/// fraction digits, always 30 bytes) to `out`.
pub fn format_rfc3339_nanos(nanos: i64, out: &mut Vec<u8>) {
    let secs = nanos.div_euclid(NANOS_PER_SEC as i64);
    let frac = nanos.rem_euclid(NANOS_PER_SEC as i64);
    let days = secs.div_euclid(SECS_PER_DAY);
    let sod = secs.rem_euclid(SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);

    let mut buf = *b"0000-00-00T00:00:00.000000000Z";
    put_pair(&mut buf[0..2], year / 100);
    put_pair(&mut buf[2..4], year % 100);
    put_pair(&mut buf[5..7], month);
    put_pair(&mut buf[8..10], day);
    put_pair(&mut buf[11..13], sod / 3600);
    put_pair(&mut buf[14..16], sod / 60 % 60);
    put_pair(&mut buf[17..19], sod % 60);
    // Nine fraction digits: one, then four pairs.
    let (hi, lo) = (frac / 100_000_000, frac % 100_000_000);
    buf[20] = b'0' + hi as u8;
    put_pair(&mut buf[21..23], lo / 1_000_000);
    put_pair(&mut buf[23..25], lo / 10_000 % 100);
    put_pair(&mut buf[25..27], lo / 100 % 100);
    put_pair(&mut buf[27..29], lo % 100);
    out.extend_from_slice(&buf);
}

/// "00" to "99".
static PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// Writes `v` (0..=99) as two digits.
#[inline]
fn put_pair(dst: &mut [u8], v: i64) {
    dst.copy_from_slice(&PAIRS[v as usize]);
}

/// Parses a fixed-width run of ASCII digits.
#[inline]
fn digits(s: &[u8]) -> Option<i64> {
    let mut v = 0i64;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(b - b'0');
    }
    Some(v)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (the project's one
/// calendar: SigV4 dates and the test harness use it too).
#[must_use]
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: `(year, month, day)`.
#[must_use]
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<i64> {
        parse_rfc3339(s.as_bytes())
    }

    fn fmt(n: i64) -> String {
        let mut out = Vec::new();
        format_rfc3339_nanos(n, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn parses_known_instants() {
        assert_eq!(p("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(p("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(p("1969-12-31T23:59:59.999999999Z"), Some(-1));
        assert_eq!(p("2009-02-13T23:31:30Z"), Some(1_234_567_890_000_000_000));
        assert_eq!(
            p("2026-01-02T03:04:05.123456789Z"),
            Some(1_767_323_045_123_456_789)
        );
        assert_eq!(p("2026-01-02t03:04:05.5z"), Some(1_767_323_045_500_000_000));
        assert_eq!(
            p("2026-01-02T03:04:05.12Z"),
            Some(1_767_323_045_120_000_000)
        );
    }

    #[test]
    fn applies_offsets() {
        let utc = p("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(p("2026-01-02T05:04:05+02:00"), Some(utc));
        assert_eq!(p("2026-01-01T21:34:05-05:30"), Some(utc));
        assert_eq!(p("2026-01-02T03:04:05+00:00"), Some(utc));
        assert_eq!(p("2026-01-02T03:04:05-00:00"), Some(utc));
    }

    #[test]
    fn leap_years() {
        assert!(p("2024-02-29T00:00:00Z").is_some());
        assert!(p("2000-02-29T00:00:00Z").is_some());
        assert!(p("2023-02-29T00:00:00Z").is_none());
        assert!(p("1900-02-29T00:00:00Z").is_none());
        assert_eq!(
            p("2024-03-01T00:00:00Z").unwrap() - p("2024-02-28T00:00:00Z").unwrap(),
            2 * 86_400 * 1_000_000_000
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "2026-01-02",
            "2026-13-02T03:04:05Z",
            "2026-00-02T03:04:05Z",
            "2026-01-32T03:04:05Z",
            "2026-04-31T03:04:05Z",
            "2026-01-00T03:04:05Z",
            "2026-01-02T24:00:00Z",
            "2026-01-02T03:60:05Z",
            "2026-01-02T03:04:60Z",
            "2026-01-02T03:04:05",
            "2026-01-02T03:04:05.Z",
            "2026-01-02T03:04:05.1234567891Z",
            "2026-01-02T03:04:05ZZ",
            "2026-01-02T03:04:05Z ",
            "2026-01-02 03:04:05Z",
            "2026/01/02T03:04:05Z",
            "2026-01-02T03:04:05+2:00",
            "2026-01-02T03:04:05+24:00",
            "2026-01-02T03:04:05+02:60",
            "2026-01-02T03:04:05+0200",
            "2026-1-02T03:04:05Z",
            "+026-01-02T03:04:05Z",
            "2026-01-02T03:04:05.12a4Z",
        ] {
            assert_eq!(p(bad), None, "{bad:?} should be rejected");
        }
    }

    #[test]
    fn rejects_out_of_i64_range() {
        assert_eq!(p("9999-12-31T23:59:59.999999999Z"), None);
        assert_eq!(p("0001-01-01T00:00:00Z"), None);
        assert_eq!(p("2262-04-11T23:47:16.854775808Z"), None);
        assert_eq!(p("1677-09-21T00:12:43.145224191Z"), None);
    }

    #[test]
    fn extremes_round_trip() {
        assert_eq!(fmt(i64::MAX), "2262-04-11T23:47:16.854775807Z");
        assert_eq!(fmt(i64::MIN), "1677-09-21T00:12:43.145224192Z");
        assert_eq!(p("2262-04-11T23:47:16.854775807Z"), Some(i64::MAX));
        assert_eq!(p("1677-09-21T00:12:43.145224192Z"), Some(i64::MIN));
        assert_eq!(p("2262-04-11T23:47:16.854775807+00:00"), Some(i64::MAX));
    }

    #[test]
    fn formats_fixed_width() {
        assert_eq!(fmt(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(fmt(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            fmt(1_767_323_045_120_000_000),
            "2026-01-02T03:04:05.120000000Z"
        );
        assert_eq!(
            fmt(p("1900-03-01T12:00:00Z").unwrap()),
            "1900-03-01T12:00:00.000000000Z"
        );
        let mut out = b"prefix ".to_vec();
        format_rfc3339_nanos(0, &mut out);
        assert_eq!(out.len(), 7 + 30);
    }

    #[test]
    fn round_trips_many_values() {
        // Deterministic pseudo-random values over the whole i64 range plus
        // values around interesting boundaries (pre-1970, leap days).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut values = vec![0, -1, 1, i64::MIN, i64::MAX, -86_400_000_000_000];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x as i64);
        }
        let mut buf = Vec::new();
        for v in values {
            buf.clear();
            format_rfc3339_nanos(v, &mut buf);
            assert_eq!(buf.len(), 30);
            assert_eq!(
                parse_rfc3339(&buf),
                Some(v),
                "{}",
                String::from_utf8_lossy(&buf)
            );
        }
    }

    #[test]
    fn civil_days_round_trip_every_day() {
        // Every day from 1600 to 2400 maps back to itself and increments by one.
        let start = days_from_civil(1600, 1, 1);
        let end = days_from_civil(2400, 12, 31);
        let mut prev = None;
        for d in start..=end {
            let (y, m, day) = civil_from_days(d);
            assert!((1..=12).contains(&m) && day >= 1 && day <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, day), d);
            if let Some((py, pm, pd)) = prev {
                let next_ok = (y == py && m == pm && day == pd + 1)
                    || (y == py && m == pm + 1 && day == 1)
                    || (y == py + 1 && m == 1 && day == 1);
                assert!(next_ok, "{py}-{pm}-{pd} -> {y}-{m}-{day}");
            }
            prev = Some((y, m, day));
        }
    }
}
