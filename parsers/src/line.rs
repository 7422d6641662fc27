//! One physical log line: the [`Line`] type, its [`Stream`], the on-disk
//! [`Format`], and [`parse_line`], which dispatches to the CRI or docker
//! json-file parser.

use std::borrow::Cow;

use crate::error::Error;
use crate::{cri, docker};

/// Which standard stream of the container wrote the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `"stdout"` or `"stderr"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    /// `0` for stdout, `1` for stderr: handy for per-stream arrays.
    #[must_use]
    pub fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }

    /// Parses the exact bytes `stdout` or `stderr`.
    pub(crate) fn from_bytes(b: &[u8]) -> Option<Stream> {
        match b {
            b"stdout" => Some(Stream::Stdout),
            b"stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// The framing of a container log file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// CRI (containerd, CRI-O): `<time> <stream> <P|F> <message>`.
    Cri,
    /// Docker json-file: `{"log":"...\n","stream":"stdout","time":"..."}`.
    Docker,
}

impl Format {
    /// Detect from the first line of a file: a line starting with `{` (after
    /// optional spaces or tabs) is docker json-file, anything else CRI.
    #[must_use]
    pub fn detect(first_line: &[u8]) -> Format {
        match first_line.iter().find(|&&b| b != b' ' && b != b'\t') {
            Some(b'{') => Format::Docker,
            _ => Format::Cri,
        }
    }

    /// `"cri"` or `"docker"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Cri => "cri",
            Format::Docker => "docker",
        }
    }
}

/// One parsed physical line of a container log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// When the runtime wrote the line, in Unix nanoseconds (UTC).
    pub time_nanos: i64,
    /// Which stream wrote it.
    pub stream: Stream,
    /// True when this is not the last piece of a logical line: CRI tag `P`,
    /// or a docker `log` value without a trailing `"\n"`. Feed lines to a
    /// [`PartialMerger`](crate::PartialMerger) to reassemble them.
    pub partial: bool,
    /// The content. CRI: borrowed from the input, bytes as-is (possibly
    /// invalid UTF-8, possibly ending in `\r`). Docker: the unescaped `log`
    /// value without its trailing `"\n"`; borrowed when it had no escapes.
    pub message: Cow<'a, [u8]>,
}

/// Parses one line of a container log file.
///
/// `line` is one line WITHOUT its trailing `\n`. For CRI a trailing `\r` is
/// part of the message; for docker, whitespace after the closing `}`
/// (including `\r`) is ignored.
///
/// The CRI path never allocates. The docker path allocates only when the
/// `log` value contains escapes (`\n` is not counted: the trailing one is
/// stripped by slicing) or when the line is not valid UTF-8.
///
/// # Errors
///
/// Returns an [`Error`] whose [`ErrorKind`](crate::ErrorKind) says which
/// part of the line was missing or malformed.
pub fn parse_line(format: Format, line: &[u8]) -> Result<Line<'_>, Error> {
    match format {
        Format::Cri => cri::parse(line),
        Format::Docker => docker::parse(line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_and_indexes() {
        assert_eq!(Stream::Stdout.as_str(), "stdout");
        assert_eq!(Stream::Stderr.as_str(), "stderr");
        assert_eq!(Stream::Stdout.index(), 0);
        assert_eq!(Stream::Stderr.index(), 1);
        assert_eq!(Stream::from_bytes(b"stderr"), Some(Stream::Stderr));
        assert_eq!(Stream::from_bytes(b"stdin"), None);
    }

    #[test]
    fn detects_format() {
        assert_eq!(
            Format::detect(br#"{"log":"x\n","stream":"stdout","time":"2026-01-02T03:04:05Z"}"#),
            Format::Docker
        );
        assert_eq!(Format::detect(b"  \t{\"log\":1}"), Format::Docker);
        assert_eq!(
            Format::detect(b"2026-01-02T03:04:05.1Z stdout F {\"json\":true}"),
            Format::Cri
        );
        assert_eq!(Format::detect(b""), Format::Cri);
        assert_eq!(Format::detect(b"   "), Format::Cri);
        assert_eq!(Format::Cri.as_str(), "cri");
        assert_eq!(Format::Docker.as_str(), "docker");
    }

    #[test]
    fn dispatches_by_format() {
        let cri = parse_line(Format::Cri, b"2026-01-02T03:04:05Z stdout F hi").unwrap();
        assert_eq!(&*cri.message, b"hi");
        let docker = parse_line(
            Format::Docker,
            br#"{"log":"hi\n","stream":"stderr","time":"2026-01-02T03:04:05Z"}"#,
        )
        .unwrap();
        assert_eq!(&*docker.message, b"hi");
        assert_eq!(docker.stream, Stream::Stderr);
        assert_eq!(cri.time_nanos, docker.time_nanos);
    }
}
