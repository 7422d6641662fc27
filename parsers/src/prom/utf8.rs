//! [`Utf8Window`]: the body as [`Text`] for the parser, checked for UTF-8
//! (and ASCII) once up front, with the lines around invalid bytes handled one valid
//! stretch at a time.

use super::text::Text;

/// The body as [`Text`], one valid stretch at a time: the whole body when it
/// is UTF-8 (checked once, up front, and marked ASCII when it is), else
/// from line to line around the invalid bytes. Total work stays linear in
/// the body's length.
#[derive(Debug)]
pub(crate) struct Utf8Window<'a> {
    body: &'a [u8],
    /// Where `valid` starts in the body.
    start: usize,
    /// The longest UTF-8 stretch of the body from `start`.
    valid: Text<'a>,
}

impl<'a> Utf8Window<'a> {
    pub(crate) fn new(body: &'a [u8]) -> Utf8Window<'a> {
        Utf8Window {
            body,
            start: 0,
            valid: Text::of_prefix(body),
        }
    }

    /// The valid stretch holding `start` (revalidating from `start` when
    /// it lies past the current one), and where that stretch starts in the
    /// body. Lines are asked for in order.
    #[inline]
    pub(crate) fn text_from(&mut self, start: usize) -> (Text<'a>, usize) {
        if start >= self.start + self.valid.len() {
            self.start = start;
            self.valid = Text::of_prefix(&self.body[start..]);
        }
        (self.valid, self.start)
    }

    /// `body[start..stop]` as text, or `None` when it is not UTF-8. Lines
    /// are asked for in order.
    pub(crate) fn get(&mut self, start: usize, stop: usize) -> Option<&'a str> {
        let valid_end = self.start + self.valid.len();
        if start > valid_end || (start == valid_end && stop > start) {
            // Past the invalid bytes that ended the stretch: a new one.
            self.start = start;
            self.valid = Text::of_prefix(&self.body[start..]);
        }
        let (a, b) = (start.checked_sub(self.start)?, stop - self.start);
        self.valid.get(a, b)
    }
}
