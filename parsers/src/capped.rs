//! A size-capped byte buffer shared by the partial merger and the multiline
//! grouper, and the UTF-8-aware cut that both use.

/// Capacity kept across records; a buffer that grew past this (a giant
/// record) is shrunk back when cleared so idle streams do not pin memory.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Longest look-ahead needed to check the UTF-8 sequence that straddles the
/// cut: a 4-byte sequence starting one byte before the limit.
const LOOKAHEAD: usize = 3;

/// Accumulates bytes, keeping at most `max` bytes of content.
///
/// Up to [`LOOKAHEAD`] bytes past `max` are retained so that [`content`]
/// can move the cut back to a character boundary even when a multi-byte
/// character was split across two appends.
///
/// [`content`]: Capped::content
#[derive(Clone, Debug)]
pub(crate) struct Capped {
    buf: Vec<u8>,
    max: usize,
    truncated: bool,
}

impl Capped {
    pub(crate) fn new(max: usize) -> Self {
        Capped {
            buf: Vec::new(),
            max,
            truncated: false,
        }
    }

    /// Appends `bytes`, discarding whatever falls beyond the cap.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let room = self
            .max
            .saturating_add(LOOKAHEAD)
            .saturating_sub(self.buf.len());
        let take = bytes.len().min(room);
        self.buf.extend_from_slice(&bytes[..take]);
        if self.buf.len() > self.max {
            self.truncated = true;
        }
    }

    /// Records that content was lost before it reached this buffer.
    pub(crate) fn mark_truncated(&mut self) {
        self.truncated = true;
    }

    /// The kept content (at most `max` bytes, cut on a character boundary
    /// when the content there is valid UTF-8) and whether anything was cut.
    pub(crate) fn content(&self) -> (&[u8], bool) {
        let cut = cut_len(&self.buf, self.max);
        (&self.buf[..cut], self.truncated)
    }

    /// Empties the buffer for the next record.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.truncated = false;
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf.shrink_to(KEEP_CAPACITY);
        }
    }
}

/// How many bytes of `bytes` to keep under a `limit`.
///
/// `bytes.len()` when it fits. Otherwise `limit`, moved back to the start of
/// the character that straddles it when that character is a complete, valid
/// UTF-8 sequence (invalid or incomplete sequences are cut at `limit` as
/// plain bytes).
pub(crate) fn cut_len(bytes: &[u8], limit: usize) -> usize {
    if bytes.len() <= limit {
        return bytes.len();
    }
    if bytes[limit] & 0xC0 != 0x80 {
        return limit; // the cut lands before a lead byte or an ASCII byte
    }
    let lowest = limit.saturating_sub(LOOKAHEAD);
    let mut start = limit;
    while start > lowest {
        start -= 1;
        if bytes[start] & 0xC0 != 0x80 {
            break;
        }
    }
    let width = match bytes[start] {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return limit,
    };
    let end = start + width;
    if end <= limit || end > bytes.len() || std::str::from_utf8(&bytes[start..end]).is_err() {
        return limit;
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_fits() {
        assert_eq!(cut_len(b"abc", 3), 3);
        assert_eq!(cut_len(b"abc", 10), 3);
        assert_eq!(cut_len(b"", 0), 0);
    }

    #[test]
    fn cut_ascii() {
        assert_eq!(cut_len(b"abcdef", 4), 4);
        assert_eq!(cut_len(b"abcdef", 0), 0);
    }

    #[test]
    fn cut_moves_back_to_char_boundary() {
        let s = "aé😀b".as_bytes(); // a(1) é(2) 😀(4) b(1)
        assert_eq!(cut_len(s, 1), 1);
        assert_eq!(cut_len(s, 2), 1); // inside é
        assert_eq!(cut_len(s, 3), 3);
        assert_eq!(cut_len(s, 4), 3); // inside 😀
        assert_eq!(cut_len(s, 5), 3);
        assert_eq!(cut_len(s, 6), 3);
        assert_eq!(cut_len(s, 7), 7);
        for limit in 0..s.len() {
            let cut = cut_len(s, limit);
            assert!(cut <= limit);
            assert!(std::str::from_utf8(&s[..cut]).is_ok(), "limit {limit}");
        }
    }

    #[test]
    fn cut_invalid_sequences_at_limit() {
        assert_eq!(cut_len(b"ab\x80\x80\x80\x80", 4), 4); // stray continuation bytes
        assert_eq!(cut_len(b"a\xE9\x80z", 2), 2); // truncated 3-byte sequence
        assert_eq!(cut_len(b"a\xC0\x80z", 2), 2); // overlong encoding
        assert_eq!(cut_len(b"a\xED\xA0\x80z", 2), 2); // surrogate
    }

    #[test]
    fn capped_keeps_max_and_flags_truncation() {
        let mut c = Capped::new(5);
        c.push(b"abc");
        assert_eq!(c.content(), (&b"abc"[..], false));
        c.push(b"de");
        assert_eq!(c.content(), (&b"abcde"[..], false));
        c.push(b"f");
        assert_eq!(c.content(), (&b"abcde"[..], true));
        c.push(&[b'x'; 100]);
        assert_eq!(c.content(), (&b"abcde"[..], true));
        c.clear();
        assert_eq!(c.content(), (&b""[..], false));
        c.mark_truncated();
        assert_eq!(c.content(), (&b""[..], true));
    }

    #[test]
    fn capped_char_split_across_pushes() {
        let s = "abcd😀".as_bytes();
        let mut c = Capped::new(6);
        c.push(&s[..5]);
        c.push(&s[5..]);
        assert_eq!(c.content(), (&b"abcd"[..], true));
    }

    #[test]
    fn capped_zero_max() {
        let mut c = Capped::new(0);
        c.push(b"");
        assert_eq!(c.content(), (&b""[..], false));
        c.push(b"x");
        assert_eq!(c.content(), (&b""[..], true));
    }

    #[test]
    fn capped_shrinks_after_giant_record() {
        let mut c = Capped::new(1 << 20);
        c.push(&vec![b'a'; 1 << 20]);
        c.clear();
        assert!(c.buf.capacity() <= KEEP_CAPACITY);
    }
}
