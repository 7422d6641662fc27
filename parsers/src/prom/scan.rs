//! Byte scanning for the parser's fast path.
//!
//! Most helpers work eight bytes at a time, in safe and portable Rust: each
//! reads a `u64` and finds the bytes it looks for with integer arithmetic
//! ("SWAR": SIMD within a register), then the first one with
//! `trailing_zeros`. Names, label values and separators are mostly shorter
//! than `memchr`'s setup costs, and longer than a byte loop likes. (Sixteen
//! byte flag arrays left to LLVM's auto-vectoriser cost more: it does not
//! turn them into a byte mask, and they went through the stack.) They read
//! up to 8 bytes past their start (as far as the slice goes; missing bytes
//! read as zeros, which match nothing but the end of a name).
//!
//! [`Stops`], the ends of a label set's values, is the exception: on x86-64
//! it classifies 64 bytes at a time with SSE2 (see [`MaskStops`]).

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
        None => u64::from_le_bytes(padded(b, i)),
    }
}

/// The `N` bytes of `b` at `i`, zero-padded past its end (near the end of
/// a body only).
#[cold]
#[inline(never)]
fn padded<const N: usize>(b: &[u8], i: usize) -> [u8; N] {
    let mut out = [0u8; N];
    let tail = b.get(i..).unwrap_or(&[]);
    let len = tail.len().min(N);
    out[..len].copy_from_slice(&tail[..len]);
    out
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

/// The positions of the `"`, `\` and `\n` bytes of a label set, in
/// order: what [`value_stop`] finds, for one value after another.
/// [`MaskStops`] where SSE2 is there (every x86-64 CPU), else
/// [`ScanStops`].
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
pub(crate) type Stops = MaskStops;
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
pub(crate) type Stops = ScanStops;

/// [`Stops`] found 64 bytes at a time into a bit mask (SSE2, through
/// `safe_arch`'s safe wrappers), each position then taken from the mask.
///
/// Why: a label set is read one field after another, and each field's
/// start depends on where the one before ended. Scanning for each value's
/// end ([`ScanStops`]) puts a load and a dozen dependent instructions on
/// that chain per value; a position taken from the mask costs two
/// (`tzcnt`, clear the lowest bit), and the masks depend on no position
/// found in them. On `bench/prom.sh`'s bodies that took a histogram
/// sample (four labels) from 60 to 51 ns and a node one from 53 to 48.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
pub(crate) struct MaskStops {
    /// Where the current block of 64 bytes starts.
    base: usize,
    /// The stops of the current block not yet taken (bit `k`: byte
    /// `base + k`).
    bits: u64,
    /// Debug builds: the least `from` the next call may ask for (after the
    /// last stop taken); a stop before it would have been passed over.
    #[cfg(debug_assertions)]
    least: usize,
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
impl MaskStops {
    /// The stops of `b` from `start` on (`next` must be given the same
    /// `b`).
    #[inline(always)]
    pub(crate) fn new(b: &[u8], start: usize) -> MaskStops {
        MaskStops {
            base: start,
            bits: sse2::block(b, start),
            #[cfg(debug_assertions)]
            least: start,
        }
    }

    /// The first stop at or after `from` (which must not be before the
    /// stops already taken); stops before it are passed over.
    #[inline(always)]
    pub(crate) fn next(&mut self, b: &[u8], from: usize) -> Option<usize> {
        #[cfg(debug_assertions)]
        {
            debug_assert!(from >= self.least, "stops asked for out of order");
            self.least = from;
        }
        loop {
            while self.bits == 0 {
                self.base += 64;
                if self.base >= b.len() {
                    return None;
                }
                self.bits = sse2::block(b, self.base);
            }
            let p = self.base + self.bits.trailing_zeros() as usize;
            self.bits &= self.bits - 1;
            if p >= from {
                #[cfg(debug_assertions)]
                {
                    self.least = p + 1;
                }
                return Some(p);
            }
        }
    }
}

/// [`Stops`] by scanning from each position asked for ([`value_stop`]),
/// in portable Rust.
#[cfg_attr(
    all(target_arch = "x86_64", target_feature = "sse2", not(test)),
    allow(dead_code)
)]
pub(crate) struct ScanStops;

#[cfg_attr(
    all(target_arch = "x86_64", target_feature = "sse2", not(test)),
    allow(dead_code)
)]
impl ScanStops {
    #[inline(always)]
    pub(crate) fn new(_: &[u8], _: usize) -> ScanStops {
        ScanStops
    }

    #[inline(always)]
    pub(crate) fn next(&mut self, b: &[u8], from: usize) -> Option<usize> {
        value_stop(b, from)
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    use safe_arch::{
        bitor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i,
        set_splat_i8_m128i,
    };

    /// A bit set for each of the sixteen bytes that is `"`, `\` or `\n`
    /// (bit `k` for byte `k`).
    #[inline(always)]
    fn stops16(chunk: &[u8; 16]) -> u64 {
        let v = load_unaligned_m128i(chunk);
        let is = |c: u8| cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(c as i8));
        let stops = bitor_m128i(bitor_m128i(is(b'"'), is(b'\\')), is(b'\n'));
        u64::from(move_mask_i8_m128i(stops) as u16)
    }

    /// The stops of the 64 bytes of `b` from `base` (bit `k`: byte
    /// `base + k`); bytes past the end are none.
    #[inline(always)]
    pub(super) fn block(b: &[u8], base: usize) -> u64 {
        match b.get(base..base + 64) {
            Some(block) => block.chunks_exact(16).enumerate().fold(0, |m, (k, c)| {
                m | stops16(c.try_into().unwrap_or(&[0; 16])) << (16 * k)
            }),
            None => block_tail(b, base),
        }
    }

    #[cold]
    #[inline(never)]
    fn block_tail(b: &[u8], base: usize) -> u64 {
        block(&super::padded::<64>(b, base), 0)
    }
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

    /// `Stops` (and `ScanStops`, used where SSE2 is missing) find what
    /// `value_stop` finds, from every start, for stops in every position
    /// of a block and across blocks, and pass over the stops before the
    /// position asked for.
    #[test]
    fn stops_agree_with_value_stop() {
        let bytes: Vec<u8> = (0..300u32)
            .map(|k| match k * 7919 % 23 {
                0 => b'"',
                1 => b'\\',
                2 => b'\n',
                3 => 0x80 | (k as u8),
                _ => b'a' + (k % 26) as u8,
            })
            .collect();
        for end in [0, 1, 15, 16, 63, 64, 65, 130, 300] {
            let b = &bytes[..end];
            for start in 0..=end {
                let expect = b[start..].iter().position(|c| b"\"\\\n".contains(c));
                assert_eq!(value_stop(b, start), expect.map(|p| start + p));
                let mut stops = Stops::new(b, start);
                let mut scan = ScanStops::new(b, start);
                let mut from = start;
                loop {
                    let want = value_stop(b, from);
                    assert_eq!(stops.next(b, from), want, "{start} {from} {end}");
                    assert_eq!(scan.next(b, from), want);
                    match want {
                        // Every other time, skip a byte (as after `\\`).
                        Some(p) => from = p + 1 + (p % 2),
                        None => break,
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
