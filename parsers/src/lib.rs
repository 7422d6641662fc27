//! Pure parsers for container log files: the per-line hot path of the
//! kubeship node agent.
//!
//! Bytes in, borrowed structs out:
//!
//! * [`parse_line`] turns one line of a CRI (containerd, CRI-O) or docker
//!   json-file log into a [`Line`] — timestamp ([`time`]), [`Stream`],
//!   partial flag and message. CRI lines are parsed without copying or
//!   allocating; [`Format::detect`] picks the format from a file's first
//!   line.
//! * [`PartialMerger`] reassembles lines that the runtime split into pieces
//!   (CRI `P`, docker chunks without `\n`) into [`Record`]s, per stream,
//!   capped at a byte limit. Whole lines pass through without a copy.
//! * [`Grouper`] joins records into multiline records (stack traces) by a
//!   [`Rule`]: Java, Python, Go, or a custom start regex, with a flush
//!   timeout driven by the caller's clock.
//! * [`structured`] parses a message the pod asked to have parsed (a JSON
//!   object, logfmt, or a regex's named captures) into a JSON object's text,
//!   appended to the caller's buffer (the record's `log_processed`).
//! * [`json`] escapes text as JSON string content; the agent's record encoder
//!   and [`structured`] share it.
//! * Failures are reported as [`Error`] with an [`ErrorKind`].
//! * [`prom`] parses scrape bodies in the Prometheus text format 0.0.4 and
//!   OpenMetrics 1.0 text into samples borrowing from the body (its own
//!   `prom::Error` per skipped line).
//!
//! What this crate does NOT do: no I/O (no files, no tailing, no
//! checkpoints), no clocks (every time-dependent call takes `now_ms` from
//! the caller), no async runtime or threads, no logging, no UTF-8 repair of
//! CRI messages (bytes are passed through as-is; the caller decides), and no
//! interpretation of the message content beyond [`structured`]'s opt-in
//! parsing (no log levels, no timestamps taken from the message).
//!
//! Typical use, for one file:
//!
//! ```
//! use kubeship_parsers::{Format, Grouper, PartialMerger, Rule, parse_line};
//!
//! let file = b"2026-01-02T03:04:05.1Z stdout P hello \n\
//!              2026-01-02T03:04:05.2Z stdout F world\n";
//! let mut merger = PartialMerger::new(256 * 1024);
//! let mut grouper = Grouper::new(Rule::Java, 256 * 1024, 1000);
//! let mut out = Vec::new();
//! let mut offset = 0u64;
//! for line in file.split_inclusive(|&b| b == b'\n') {
//!     let tag = offset;
//!     offset += line.len() as u64;
//!     let parsed = parse_line(Format::Cri, line.strip_suffix(b"\n").unwrap()).unwrap();
//!     merger.push(parsed, tag, |rec| {
//!         grouper.push(rec, 0, |group| out.push(group.message.to_vec()));
//!     });
//! }
//! grouper.flush(|group| out.push(group.message.to_vec()));
//! assert_eq!(out, [b"hello world".to_vec()]);
//! ```
#![deny(missing_docs)]
// `deny`, not `forbid`: `prom/text.rs` allows unsafe for cutting ASCII text
// without char-boundary checks (its SAFETY comments say why that is sound).
#![deny(unsafe_code)]

mod capped;
mod cri;
mod docker;
mod error;
pub mod json;
mod line;
mod multiline;
mod partial;
pub mod prom;
pub mod structured;
pub mod time;

pub use error::{Error, ErrorKind};
pub use line::{Format, Line, Stream, parse_line};
pub use multiline::{Grouper, Rule};
pub use partial::{PartialMerger, Record};
