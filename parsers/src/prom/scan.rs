//! Byte scanning sixteen bytes at a time, in safe Rust: each helper builds a
//! `[u8; 16]` of `0xff`/`0` flags in a loop LLVM turns into SSE2 compares,
//! and finds the first flag with `u128::trailing_zeros`. Names, label
//! values and separators are mostly shorter than `memchr`'s setup costs, and
//! longer than a byte loop likes.
//!
//! Every helper reads up to 16 bytes past its start (as far as the slice
//! goes; missing bytes read as zeros, which match nothing but the end of a
//! name).

const CHUNK: usize = 16;

/// The 16 bytes at `i`, zero-padded past the end of `b`.
#[inline(always)]
fn load(b: &[u8], i: usize) -> [u8; CHUNK] {
    let mut chunk = [0u8; CHUNK];
    match b.get(i..i + CHUNK) {
        Some(bytes) => chunk.copy_from_slice(bytes),
        None => load_tail(b, i, &mut chunk),
    }
    chunk
}

#[cold]
#[inline(never)]
fn load_tail(b: &[u8], i: usize, chunk: &mut [u8; CHUNK]) {
    let tail = b.get(i..).unwrap_or(&[]);
    chunk[..tail.len()].copy_from_slice(tail);
}

/// Index of the first flagged byte, `CHUNK` if none.
#[inline(always)]
fn first(flags: [u8; CHUNK]) -> usize {
    (u128::from_le_bytes(flags).trailing_zeros() / 8) as usize
}

#[inline(always)]
fn flag(hit: bool) -> u8 {
    if hit { 0xff } else { 0 }
}

/// End of the run of name bytes starting at `i`: `[a-zA-Z0-9_]`, and `:`
/// when `COLON` (metric names).
#[inline(always)]
pub(crate) fn name_end<const COLON: bool>(b: &[u8], mut i: usize) -> usize {
    loop {
        let chunk = load(b, i);
        let mut flags = [0u8; CHUNK];
        for k in 0..CHUNK {
            let c = chunk[k];
            let alpha = flag((c | 0x20).wrapping_sub(b'a') < 26);
            let digit = flag(c.wrapping_sub(b'0') < 10);
            let underscore = flag(c == b'_');
            let colon = flag(COLON && c == b':');
            flags[k] = !(alpha | digit | underscore | colon);
        }
        let n = first(flags);
        if n < CHUNK {
            return (i + n).min(b.len());
        }
        i += CHUNK;
    }
}

/// Index of the first `"`, `\` or `\n` at or after `i`: where a label
/// value ends, escapes, or runs off its line.
#[inline(always)]
pub(crate) fn value_stop(b: &[u8], mut i: usize) -> Option<usize> {
    while i < b.len() {
        let chunk = load(b, i);
        let mut flags = [0u8; CHUNK];
        for k in 0..CHUNK {
            let c = chunk[k];
            flags[k] = flag(c == b'"') | flag(c == b'\\') | flag(c == b'\n');
        }
        let n = first(flags);
        if n < CHUNK {
            return Some(i + n);
        }
        i += CHUNK;
    }
    None
}

/// Index of the first `"` at or after `i` (values known to hold no escape).
#[inline(always)]
pub(crate) fn quote(b: &[u8], mut i: usize) -> Option<usize> {
    while i < b.len() {
        let chunk = load(b, i);
        let mut flags = [0u8; CHUNK];
        for k in 0..CHUNK {
            flags[k] = flag(chunk[k] == b'"');
        }
        let n = first(flags);
        if n < CHUNK {
            return Some(i + n);
        }
        i += CHUNK;
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
    }
}
