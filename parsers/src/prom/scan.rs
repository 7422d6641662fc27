//! Byte scanning eight bytes at a time, in safe and portable Rust: each
//! helper reads a `u64` and finds the bytes it looks for with integer
//! arithmetic ("SWAR": SIMD within a register), then the first one with
//! `trailing_zeros`. Names, label values and separators are mostly shorter
//! than `memchr`'s setup costs, and longer than a byte loop likes. (Sixteen
//! byte flag arrays left to LLVM's auto-vectoriser cost more: it does not
//! turn them into a byte mask, and they went through the stack.)
//!
//! Every helper reads up to 8 bytes past its start (as far as the slice
//! goes; missing bytes read as zeros, which match nothing but the end of a
//! name).

/// `0x01` in every byte.
const ONES: u64 = 0x0101_0101_0101_0101;
/// The high bit of every byte.
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The 8 bytes at `i` as a little-endian `u64` (the byte at `i` lowest),
/// zero-padded past the end of `b`.
#[inline(always)]
pub(crate) fn word(b: &[u8], i: usize) -> u64 {
    match b.get(i..i + 8) {
        Some(bytes) => u64::from_le_bytes(bytes.try_into().unwrap_or_default()),
        None => word_tail(b, i),
    }
}

#[cold]
#[inline(never)]
fn word_tail(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    let tail = b.get(i..).unwrap_or(&[]);
    w[..tail.len()].copy_from_slice(tail);
    u64::from_le_bytes(w)
}

/// Index of the first flagged byte of a mask of high bits.
#[inline(always)]
fn first(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}

/// The high bit set in the bytes of `w` equal to `c`. Exact for the lowest
/// such byte, the only one callers use (a borrow may flag a byte above a
/// true match).
#[inline(always)]
fn equal(w: u64, c: u8) -> u64 {
    let x = w ^ (ONES * u64::from(c));
    x.wrapping_sub(ONES) & !x & HIGH
}

/// For 7-bit bytes `x`: the high bit set in those within `lo..=hi`. No sum
/// leaves its byte, so every byte is exact.
#[inline(always)]
fn within(x: u64, lo: u8, hi: u8) -> u64 {
    (x + ONES * u64::from(0x80 - lo)) & !(x + ONES * u64::from(0x7f - hi)) & HIGH
}

/// The high bit set in every byte of `w` that is not a name byte
/// (`[a-zA-Z0-9_]`, and `:` when `COLON`). Exact for every byte.
#[inline(always)]
pub(crate) fn not_name<const COLON: bool>(w: u64) -> u64 {
    let x = w & !HIGH;
    // `| 0x20` folds upper case onto lower case; it maps no other byte
    // into `a..=z`.
    let alpha = within(x | (ONES * 0x20), b'a', b'z');
    let digit = within(x, b'0', b'9');
    let underscore = within(x, b'_', b'_');
    let colon = if COLON { within(x, b':', b':') } else { 0 };
    // `& !w` drops bytes that had their high bit set (not ASCII).
    !((alpha | digit | underscore | colon) & !w) & HIGH
}

/// End of the run of name bytes starting at `i`: `[a-zA-Z0-9_]`, and `:`
/// when `COLON` (metric names).
#[inline(always)]
pub(crate) fn name_end<const COLON: bool>(b: &[u8], mut i: usize) -> usize {
    loop {
        let stop = not_name::<COLON>(word(b, i));
        if stop != 0 {
            return (i + first(stop)).min(b.len());
        }
        i += 8;
    }
}

/// Index of the first `"`, `\` or `\n` at or after `i`: where a label
/// value ends, escapes, or runs off its line.
#[inline(always)]
pub(crate) fn value_stop(b: &[u8], mut i: usize) -> Option<usize> {
    while i < b.len() {
        let w = word(b, i);
        let stop = equal(w, b'"') | equal(w, b'\\') | equal(w, b'\n');
        if stop != 0 {
            return Some(i + first(stop));
        }
        i += 8;
    }
    None
}

/// Index of the first `"` at or after `i` (values known to hold no escape).
#[inline(always)]
pub(crate) fn quote(b: &[u8], mut i: usize) -> Option<usize> {
    while i < b.len() {
        let stop = equal(word(b, i), b'"');
        if stop != 0 {
            return Some(i + first(stop));
        }
        i += 8;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_ends() {
        let metric = |s: &str| name_end::<true>(s.as_bytes(), 0);
        let label = |s: &str| name_end::<false>(s.as_bytes(), 0);
        assert_eq!(metric("abc"), 3);
        assert_eq!(metric("a:b_C9{x"), 6);
        assert_eq!(label("a:b"), 1);
        assert_eq!(metric(""), 0);
        assert_eq!(metric("é"), 0);
        let long = "x".repeat(40) + " ";
        assert_eq!(metric(&long), 40);
        assert_eq!(metric(&"x".repeat(32)), 32);
        for c in 0..=255u8 {
            let ok = c.is_ascii_alphanumeric() || c == b'_';
            assert_eq!(name_end::<false>(&[c], 0), usize::from(ok), "{c}");
            assert_eq!(
                name_end::<true>(&[c], 0),
                usize::from(ok || c == b':'),
                "{c}"
            );
        }
    }

    /// Every byte value in every position of a word, next to every other
    /// class of byte: the masks are exact byte by byte.
    #[test]
    fn name_mask_is_exact_in_every_lane() {
        let is_name =
            |c: u8, colon: bool| c.is_ascii_alphanumeric() || c == b'_' || (colon && c == b':');
        for lane in 0..8 {
            for c in 0..=255u8 {
                for fill in [b'a', b'0', 0xff, 0x00, b':', b'_', 0x7f, 0x80] {
                    let mut bytes = [fill; 8];
                    bytes[lane] = c;
                    let w = u64::from_le_bytes(bytes);
                    let (a, b) = (not_name::<true>(w), not_name::<false>(w));
                    for (k, &x) in bytes.iter().enumerate() {
                        let bit = 0x80u64 << (8 * k);
                        assert_eq!(a & bit == 0, is_name(x, true), "{bytes:?} {k}");
                        assert_eq!(b & bit == 0, is_name(x, false), "{bytes:?} {k}");
                    }
                }
            }
        }
    }

    #[test]
    fn stops() {
        let b = br#"0123456789abcdefgh"ij\k"#;
        assert_eq!(value_stop(b, 0), Some(18));
        assert_eq!(value_stop(b, 19), Some(21));
        assert_eq!(value_stop(b, 22), None);
        assert_eq!(value_stop(b"abc\nd\"", 0), Some(3));
        assert_eq!(quote(b, 0), Some(18));
        assert_eq!(quote(b, 19), None);
        assert_eq!(quote(b, 40), None);
        assert_eq!(value_stop(b"", 0), None);
        // A byte just above a match (where a borrow can flag a byte) and
        // matches in every lane.
        for lane in 0..8 {
            for c in [b'"', b'\\', b'\n'] {
                let mut bytes = [b'x'; 12];
                bytes[lane] = c;
                bytes[lane + 1] = c ^ 1;
                assert_eq!(value_stop(&bytes, 0), Some(lane), "{bytes:?}");
                assert_eq!(quote(&bytes, 0), (c == b'"').then_some(lane), "{bytes:?}");
            }
        }
    }
}
