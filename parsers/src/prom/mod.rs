//! Scrape bodies in the Prometheus text exposition formats, streamed as
//! samples that borrow from the body: the parser the metrics pipeline
//! (`agent/src/metrics/`) runs on each target's `/metrics` answer.
//!
//! Both text formats Prometheus scrapes:
//!
//! * **Text format 0.0.4** ([`Format::Text`]): `# HELP` / `# TYPE`
//!   (`counter`, `gauge`, `histogram`, `summary`, `untyped`), free `#`
//!   comments, blank lines, spaces or tabs between fields, optional integer
//!   millisecond timestamps.
//! * **OpenMetrics 1.0 text** ([`Format::OpenMetrics`]): also `# UNIT`,
//!   the `gaugehistogram`, `info`, `stateset` and `unknown` types, `_total`,
//!   `_created`, `_gsum`/`_gcount` and `_info` samples, timestamps in
//!   (fractional) seconds, exemplars (checked, then ignored) and the
//!   required final `# EOF`.
//!
//! Main types:
//!
//! * [`Parser`]: `Parser::new(body, format, limits)` is an iterator of
//!   `Result<`[`Sample`]`, `[`Error`]`>`, one item per sample line or
//!   skipped line.
//! * [`Sample`]: name, [`Labels`] (iterated as [`Label`]s), value,
//!   `timestamp_ms` (`Some` when the line had its own), the [`Family`] it
//!   belongs to ([`MetricType`], help, unit) and its [`Suffix`] in that
//!   family. Everything borrows from the body; a label value is a `Cow`,
//!   owned only when it held an escape.
//! * [`Limits`]: what one line may hold, checked while parsing.
//! * [`Error`] and [`ErrorKind`]: which line was skipped, and why.
//!
//! Errors are per line: a bad line is skipped and reported, the rest of the
//! body is kept (Prometheus instead fails the whole scrape on the first
//! error). The exception is an OpenMetrics body without `# EOF` at its end:
//! it yields only [`ErrorKind::MissingEof`], no sample, as Prometheus drops
//! such a scrape (it was most likely cut short).
//!
//! Cost: no allocation per sample (the parser keeps scratch vectors for
//! the duplicate-label check; iterating labels allocates only for a value
//! holding an escape); the body is checked for UTF-8 once up front. Lines
//! as exporters write them (single spaces, no `\r`, no repeated label,
//! nothing over a limit) take a fast path (`fast.rs`) that reads each line
//! once, in place: names and label values eight bytes at a time in a `u64`
//! (`scan.rs`), a sample's name compared with its family's first (most
//! samples start with it, which also settles the family), `# HELP` text
//! skipped with one `memchr`, and the positions of a sample's first four
//! labels kept so that iterating them reads nothing again. Any other line
//! is read again with the general grammar (`line.rs`), which also names
//! the error. [`Sample::series`] is the name and labels as written, a key
//! under which a caller can cache what it built from the labels, as
//! Prometheus's scrape cache does. About 1,140 instructions per sample of
//! a node_exporter body (1,330 for a histogram-heavy one), 24 to 26 times
//! fewer than the `prometheus-parse` crate (`bench/prom.sh`), spread over
//! names, labels, values and per-sample bookkeeping, none dominant. A
//! label set's value ends come from a mask of 64 bytes at a time
//! (`scan.rs`); an ASCII body (nearly all are) is cut into names and
//! values without char-boundary checks (`text.rs`).
//!
//! What this module does not do:
//!
//! * No I/O, no clock: samples without a timestamp have `timestamp_ms:
//!   None` and the caller stamps them with its scrape time.
//! * No protobuf exposition format, no native histograms, no Prometheus 3
//!   quoted UTF-8 metric or label names (`{"my.metric"}`: reported as
//!   [`ErrorKind::BadMetricName`] / [`ErrorKind::BadLabelName`]).
//! * No checks across lines beyond the family a sample belongs to: families
//!   split in two, a `# TYPE` after its samples (they were
//!   [`MetricType::Unknown`]; later ones get the type), repeated series,
//!   histogram buckets out of order or without `+Inf`, negative counters
//!   are all passed on as written. A sample belongs to the family of the
//!   `# TYPE`/`# HELP`/`# UNIT` lines just before it when its name is that
//!   family's name plus a suffix of the family's type; otherwise it is a
//!   family of its own, of unknown type.
//! * No normalisation of label values: `le="1"` stays `1` (Prometheus's
//!   OpenMetrics parser rewrites it to `1.0`), label order stays as
//!   written, exemplars are not returned.
//! * No sample limit per body: the caller counts samples.

#[cfg(test)]
mod differential;
mod error;
mod fast;
mod kinds;
mod limits;
mod line;
mod meta;
mod number;
mod parser;
#[cfg(test)]
mod roundtrip;
mod sample;
mod scan;
#[cfg(test)]
mod tests;
mod text;
mod utf8;

pub use error::{Error, ErrorKind};
pub use kinds::{Format, MetricType, Suffix};
pub use limits::Limits;
pub use parser::Parser;
pub use sample::{Family, Label, LabelIter, Labels, Sample};
