//! [`Text`]: a stretch of the body as `&str` that remembers whether it is
//! all ASCII, so that cutting it at the positions the parser found costs
//! no char-boundary check. With the label iterator in `sample.rs`, which
//! keeps that fact for a sample's label set, the parser's only `unsafe`.
//!
//! Why: cutting a `&str` (`&s[a..b]`, `s.get(a..b)`) checks that both ends
//! are char boundaries, two more loads and branches per cut. A sample is
//! cut three times (name, series, label set) and each label twice more
//! when iterated. On `bench/prom.sh`'s histogram body (four labels per
//! sample), cutting the iterated labels unchecked took a sample from 75 to
//! 68 ns in the same run. Exposition bodies are nearly always ASCII; a
//! body with any other byte is cut with the checks, as before.

/// A stretch of the body: valid UTF-8, and all ASCII when `ascii` is true.
///
/// The invariant that makes [`Text::get`] sound: `ascii`
/// is true only when every byte of `s` is ASCII. It is set only by
/// [`Text::of_prefix`] after checking the bytes, and kept by
/// [`Text::tail`] (a part of ASCII text is ASCII); the fields are private
/// to this module.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Text<'a> {
    s: &'a str,
    ascii: bool,
}

impl<'a> Text<'a> {
    /// Text whose ASCII-ness is not known: every cut is checked.
    pub(crate) const fn utf8(s: &'a str) -> Text<'a> {
        Text { s, ascii: false }
    }

    /// The longest prefix of `bytes` that is UTF-8, marked ASCII when the
    /// whole of `bytes` is ASCII.
    pub(crate) fn of_prefix(bytes: &'a [u8]) -> Text<'a> {
        if bytes.is_ascii() {
            // SAFETY: every byte is ASCII (checked just above), and a
            // sequence of ASCII bytes is valid UTF-8.
            #[allow(unsafe_code)]
            let s = unsafe { std::str::from_utf8_unchecked(bytes) };
            return Text { s, ascii: true };
        }
        let s = match std::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
        };
        Text::utf8(s)
    }

    /// The text as `&str`.
    #[inline(always)]
    pub(crate) fn as_str(self) -> &'a str {
        self.s
    }

    /// True when the text is known to be all ASCII: then every index up to
    /// its length is a char boundary.
    #[inline(always)]
    pub(crate) fn is_ascii(self) -> bool {
        self.ascii
    }

    /// The text's bytes.
    #[inline(always)]
    pub(crate) fn bytes(self) -> &'a [u8] {
        self.s.as_bytes()
    }

    /// Length in bytes.
    #[inline(always)]
    pub(crate) fn len(self) -> usize {
        self.s.len()
    }

    /// `s[a..b]`, or `None` when that is out of range or (text not known
    /// to be ASCII) not cut at char boundaries.
    #[inline(always)]
    pub(crate) fn get(self, a: usize, b: usize) -> Option<&'a str> {
        if self.ascii {
            let part = self.s.as_bytes().get(a..b)?;
            // SAFETY: `self.s` is all ASCII (the type's invariant), so any
            // part of it is ASCII, which is valid UTF-8.
            #[allow(unsafe_code)]
            Some(unsafe { std::str::from_utf8_unchecked(part) })
        } else {
            self.s.get(a..b)
        }
    }

    /// The text from `a` on (ASCII if this is), or `None` when `a` is out
    /// of range or not a char boundary.
    #[inline(always)]
    pub(crate) fn tail(self, a: usize) -> Option<Text<'a>> {
        Some(Text {
            s: self.get(a, self.s.len())?,
            ascii: self.ascii,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_text_cuts_anywhere_other_text_at_boundaries() {
        let a = Text::of_prefix(b"abc{x=\"1\"}");
        assert!(a.ascii);
        assert_eq!(a.get(3, 10), Some("{x=\"1\"}"));
        assert_eq!(a.get(3, 11), None);
        assert_eq!(a.tail(4).map(Text::as_str), Some("x=\"1\"}"));
        assert!(a.tail(4).is_some_and(|t| t.ascii));

        let u = Text::of_prefix("aé b".as_bytes());
        assert!(!u.ascii);
        assert_eq!(u.as_str(), "aé b");
        assert_eq!(u.get(0, 2), None, "inside é");
        assert_eq!(u.get(1, 3), Some("é"));
        assert!(u.tail(2).is_none());
        assert!(!u.tail(3).is_some_and(|t| t.ascii));

        // An invalid byte ends the valid prefix.
        let v = Text::of_prefix(b"ab\xffcd");
        assert_eq!((v.as_str(), v.ascii), ("ab", false));
        assert_eq!(Text::of_prefix(b"").len(), 0);
    }
}
