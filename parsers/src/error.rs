//! The crate's error type: a small, copyable [`Error`] carrying an [`ErrorKind`].

use std::fmt;

/// Why a log line could not be parsed.
///
/// Parse errors are per line: the caller counts them, optionally logs a
/// sample, and moves on to the next line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Error {
    /// What went wrong. Also available through [`Error::kind`].
    pub kind: ErrorKind,
}

/// The kinds of [`Error`]. New kinds may be added in minor releases.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The line was empty (zero bytes, or only a `\r`).
    EmptyLine,
    /// A CRI line ended before the timestamp, stream and tag fields were all
    /// present, or a docker line lacked its `log`, `stream` or `time` key.
    MissingField,
    /// The timestamp was not RFC 3339 (`2026-01-02T03:04:05.123456789Z`,
    /// optional 1–9 fraction digits, `Z` or `±hh:mm`), named an impossible
    /// date or time, or fell outside the range of `i64` nanoseconds
    /// (years 1677–2262).
    BadTimestamp,
    /// The stream was neither `stdout` nor `stderr`.
    BadStream,
    /// The CRI tag field did not start with `P` or `F` (the first
    /// `:`-separated tag is the one that counts).
    BadTag,
    /// A docker json-file line was not a JSON object of the expected shape
    /// (even after replacing invalid UTF-8), e.g. `log` was not a string.
    InvalidJson,
}

impl Error {
    /// Creates an error of the given kind.
    #[must_use]
    pub const fn new(kind: ErrorKind) -> Self {
        Error { kind }
    }

    /// What went wrong.
    #[must_use]
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error { kind }
    }
}

impl ErrorKind {
    /// A short, stable, snake_case name, suitable as a metrics label.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::EmptyLine => "empty_line",
            ErrorKind::MissingField => "missing_field",
            ErrorKind::BadTimestamp => "bad_timestamp",
            ErrorKind::BadStream => "bad_stream",
            ErrorKind::BadTag => "bad_tag",
            ErrorKind::InvalidJson => "invalid_json",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            ErrorKind::EmptyLine => "empty line",
            ErrorKind::MissingField => "missing field",
            ErrorKind::BadTimestamp => "invalid RFC 3339 timestamp",
            ErrorKind::BadStream => "stream is neither stdout nor stderr",
            ErrorKind::BadTag => "CRI tag is neither P nor F",
            ErrorKind::InvalidJson => "invalid docker json-file line",
        };
        f.write_str(text)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "log line parse error: {}", self.kind)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_kind() {
        let e = Error::from(ErrorKind::BadTag);
        assert_eq!(e.kind(), ErrorKind::BadTag);
        assert_eq!(
            e.to_string(),
            "log line parse error: CRI tag is neither P nor F"
        );
        assert_eq!(ErrorKind::BadTimestamp.as_str(), "bad_timestamp");
    }

    #[test]
    fn is_std_error() {
        let e: Box<dyn std::error::Error> = Box::new(Error::new(ErrorKind::InvalidJson));
        assert!(e.to_string().contains("docker"));
    }
}
