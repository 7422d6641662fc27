//! One scrape's body into samples, as Prometheus's scrape loop does it: parse, give
//! each series its final labels once and keep it across scrapes (the series cache,
//! keyed by a 128-bit hash of the series as written; the target's labels encoded
//! once and shared by its series), check the sample limit, and emit a staleness marker for each series the
//! previous scrape had and this one has not.
//!
//! Labels: the scraped ones (`le` of histograms and `quantile` of summaries written
//! as Prometheus normalises them: `1` → `1.0`), then the target's, with
//! `honor_labels: false` semantics (a scraped label that a target label clashes
//! with is kept as `exported_<name>`), then metric relabeling. Samples keep the
//! exposition's timestamp; others get the scrape's start. A series with an
//! exposition timestamp is not tracked for staleness (as in Prometheus).
//!
//! [`Report`] writes the per-target series Prometheus writes: `up`,
//! `scrape_duration_seconds`, `scrape_samples_scraped`,
//! `scrape_samples_post_metric_relabeling`, `scrape_series_added`.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use kubeship_parsers::prom::{self, ErrorKind, Format, Limits, MetricType, Parser};

use crate::metrics::relabel::{self, Rule};
use crate::metrics::series::{PreHashed, Sample, Series, SharedLabels, stale_nan};

/// What one scrape's processing needs besides the body.
pub struct Input<'a> {
    /// The body's format (from its `Content-Type`).
    pub format: Format,
    /// The scrape's start, ms since the epoch: the timestamp of samples without one.
    pub timestamp_ms: i64,
    /// The target's labels.
    pub target_labels: &'a [(String, String)],
    /// Metric relabeling.
    pub relabel: &'a [Rule],
    /// Most samples after relabeling; 0: no limit.
    pub sample_limit: usize,
    /// Per-line limits of the parser.
    pub limits: Limits,
}

/// Parse errors of one body, by kind, and the first one with its line.
#[derive(Debug, Default)]
pub struct ParseErrors {
    /// (kind, count), kinds in the parser's order.
    pub counts: Vec<(ErrorKind, u64)>,
    /// The first error and the start of its line (at most 120 bytes, lossy UTF-8).
    pub first: Option<(prom::Error, String)>,
}

impl ParseErrors {
    fn add(&mut self, e: prom::Error, body: &[u8]) {
        match self.counts.iter_mut().find(|(k, _)| *k == e.kind) {
            Some((_, n)) => *n += 1,
            None => self.counts.push((e.kind, 1)),
        }
        if self.first.is_none() {
            let line = &body[e.offset.min(body.len())..];
            let end = memchr::memchr(b'\n', line).unwrap_or(line.len()).min(120);
            self.first = Some((e, String::from_utf8_lossy(&line[..end]).into_owned()));
        }
    }

    /// Lines skipped.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }
}

/// What one scrape gave.
#[derive(Debug, Default)]
pub struct Processed {
    /// The samples to hand on (staleness markers included), or, when the sample
    /// limit was passed, only the staleness markers of the previous scrape's series.
    pub samples: Vec<Sample>,
    /// Sample lines in the body.
    pub scraped: usize,
    /// Samples left after metric relabeling (up to the limit).
    pub post_relabel: usize,
    /// Series new to the cache.
    pub added: usize,
    /// Lines skipped.
    pub errors: ParseErrors,
    /// More samples than the sample limit: the scrape failed.
    pub over_limit: bool,
}

/// A series compared by its labels (the staleness sets).
#[derive(Clone, Debug)]
struct Key(Arc<Series>);

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash());
    }
}

/// A series' cache key: 96 bits of [`text_key`], and the last scrape that had it.
/// Hashed and compared by the text key alone, so `seen` may change in place (a map's
/// key cannot change; a `Cell` in it can): an entry takes 24 bytes instead of 32, and
/// a target's cache has twice as many as series (~1.6 MB for 100,000 series).
#[derive(Debug)]
struct TextKey {
    key: [u32; 3],
    seen: Cell<u32>,
}

impl TextKey {
    fn new(text: &str, seen: u32) -> TextKey {
        let k = text_key(text);
        TextKey {
            key: [k as u32, (k >> 32) as u32, (k >> 64) as u32],
            seen: Cell::new(seen),
        }
    }
}

impl PartialEq for TextKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for TextKey {}

impl Hash for TextKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from(self.key[0]) | (u64::from(self.key[1]) << 32));
    }
}

/// A target's series across scrapes: the cache and what the last scrape had.
#[derive(Debug, Default)]
pub struct SeriesCache {
    /// Keyed by [`text_key`] of the series as written; `None`: dropped by
    /// relabeling (or labels no series can have).
    entries: HashMap<TextKey, Option<Arc<Series>>, PreHashed>,
    /// Series of the last successful scrape (without exposition timestamps): only
    /// walked, never looked up, so a list.
    prev: Vec<Key>,
    iteration: u32,
    /// The target's labels, sorted by name.
    target: Vec<(String, String)>,
    /// Per metric name, the target's labels and `__name__` encoded together: shared
    /// by the series of one family, whose names are then not repeated in each.
    families: HashMap<Box<str>, SharedLabels>,
}

impl SeriesCache {
    /// Series cached (dropped ones included).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Turns a body into samples; see the module doc.
    pub fn process(&mut self, body: &[u8], input: &Input<'_>) -> Processed {
        self.iteration = self.iteration.wrapping_add(1);
        if !same_labels(&self.target, input.target_labels) {
            self.target = input.target_labels.to_vec();
            self.target.sort_unstable();
            self.families.clear();
        }
        let target = self.target.as_slice();
        let mut out = Processed {
            samples: Vec::with_capacity(self.prev.len() + 8),
            ..Processed::default()
        };
        let mut cur: HashSet<Key, PreHashed> =
            HashSet::with_capacity_and_hasher(self.prev.len(), PreHashed);
        for item in Parser::new(body, input.format, input.limits) {
            let s = match item {
                Ok(s) => s,
                Err(e) => {
                    out.errors.add(e, body);
                    continue;
                }
            };
            out.scraped += 1;
            if out.over_limit {
                // Counted only, so that scrape_samples_scraped tells the whole body.
                continue;
            }
            let key = TextKey::new(s.series, self.iteration);
            let series = match self.entries.get_key_value(&key) {
                Some((k, series)) => {
                    k.seen.set(self.iteration);
                    series.clone()
                }
                None => {
                    let mut with_name = target.to_vec();
                    let at = with_name.partition_point(|(n, _)| n.as_str() < "__name__");
                    with_name.insert(at, ("__name__".to_owned(), s.name.to_owned()));
                    let shared = match self.families.get(s.name) {
                        Some(shared) => shared.clone(),
                        None => {
                            let shared = SharedLabels::new(
                                with_name.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                            );
                            self.families.insert(s.name.into(), shared.clone());
                            shared
                        }
                    };
                    let series = build(&s, target, (&with_name, &shared), input.relabel);
                    out.added += usize::from(series.is_some());
                    self.entries.insert(key, series.clone());
                    series
                }
            };
            let Some(series) = series else { continue };
            if s.timestamp_ms.is_none() && !cur.insert(Key(Arc::clone(&series))) {
                // The same series twice in one body: the first one counts.
                continue;
            }
            out.post_relabel += 1;
            if input.sample_limit > 0 && out.post_relabel > input.sample_limit {
                out.over_limit = true;
                continue;
            }
            out.samples.push(Sample {
                series,
                timestamp_ms: s.timestamp_ms.unwrap_or(input.timestamp_ms),
                value: s.value,
            });
        }
        if out.over_limit {
            out.samples.clear();
            self.fail(input.timestamp_ms, &mut out.samples);
            return out;
        }
        for gone in self.prev.iter().filter(|k| !cur.contains(k)) {
            out.samples.push(stale(&gone.0, input.timestamp_ms));
        }
        self.prev = cur.into_iter().collect();
        let iteration = self.iteration;
        self.entries.retain(|k, _| k.seen.get() == iteration);
        self.families.retain(|_, shared| shared.in_use());
        out
    }

    /// A failed scrape (or the target's end): a staleness marker at `timestamp_ms`
    /// for each series of the last successful scrape, once; the next failure has none
    /// left to mark.
    pub fn fail(&mut self, timestamp_ms: i64, out: &mut Vec<Sample>) {
        out.extend(self.prev.drain(..).map(|k| stale(&k.0, timestamp_ms)));
    }
}

/// A series as written (`name{labels}` of the body) as a cache key: two independent
/// randomly keyed SipHash-1-3 hashes, 128 bits (the cache keeps 96), instead of the
/// ~100 bytes of text a series would keep (a collision, which would take two series of
/// one target for one, is about as likely as guessing a 96-bit key: for a target of
/// 100,000 series, one in 10^19 per start; the keys are new at every start).
fn text_key(text: &str) -> u128 {
    use std::hash::BuildHasher as _;
    static KEYS: std::sync::OnceLock<[std::collections::hash_map::RandomState; 2]> =
        std::sync::OnceLock::new();
    let [a, b] = KEYS.get_or_init(|| {
        [
            std::collections::hash_map::RandomState::new(),
            std::collections::hash_map::RandomState::new(),
        ]
    });
    (u128::from(a.hash_one(text)) << 64) | u128::from(b.hash_one(text))
}

fn stale(series: &Arc<Series>, timestamp_ms: i64) -> Sample {
    Sample {
        series: Arc::clone(series),
        timestamp_ms,
        value: stale_nan(),
    }
}

/// Whether `sorted` (sorted by name) holds the same labels as `labels` (any order).
fn same_labels(sorted: &[(String, String)], labels: &[(String, String)]) -> bool {
    sorted.len() == labels.len()
        && labels.iter().all(|(n, v)| {
            sorted
                .binary_search_by(|(sn, _)| sn.cmp(n))
                .is_ok_and(|i| sorted[i].1 == *v)
        })
}

/// The series of sample `s` of a target with labels `target`: the sample's labels
/// (normalised), the target's with clashing scraped ones renamed `exported_*`, then
/// relabeled; sharing `share` (labels sorted by name, and their encoding) when it
/// has them all. `None` when relabeling dropped it or the result has no name.
fn build(
    s: &prom::Sample<'_>,
    target: &[(String, String)],
    (share, shared): (&[(String, String)], &SharedLabels),
    rules: &[Rule],
) -> Option<Arc<Series>> {
    let mut labels: Vec<(String, String)> = Vec::with_capacity(s.labels.len() + target.len() + 1);
    labels.push(("__name__".to_owned(), s.name.to_owned()));
    for l in s.labels.iter().filter(|l| !l.value.is_empty()) {
        let value = match normalised(s.family.kind, l.name, &l.value) {
            Some(v) => v,
            None => l.value.into_owned(),
        };
        labels.push((l.name.to_owned(), value));
    }
    for (name, value) in target {
        if let Some(i) = labels.iter().position(|(n, _)| n == name) {
            let mut exported = format!("exported_{name}");
            while labels.iter().any(|(n, _)| *n == exported) {
                exported.insert_str(0, "exported_");
            }
            labels[i].0 = exported;
        }
        labels.push((name.clone(), value.clone()));
    }
    if !relabel::apply(rules, &mut labels) {
        return None;
    }
    let labels = labels.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    Series::with_shared(labels, shared, share)
        .ok()
        .map(Arc::new)
}

/// `le` of a histogram and `quantile` of a summary as Prometheus writes them (its
/// `normalizeFloatsInLabelValues`): the number formatted back (`1` → `1.0`, `1e3` →
/// `1000.0`, `0.00001` → `1e-05`); `None` to keep the value as written (another
/// label, another type, or not a number).
pub fn normalised(kind: MetricType, label: &str, value: &str) -> Option<String> {
    let applies = (kind == MetricType::Histogram && label == "le")
        || (kind == MetricType::Summary && label == "quantile");
    if !applies {
        return None;
    }
    let f: f64 = value.parse().ok()?;
    if f.is_infinite() && !value.to_ascii_lowercase().contains("inf") {
        // Out of range (`1e400`): Go's ParseFloat fails, so the value stays.
        return None;
    }
    Some(format_openmetrics_float(f))
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)` with `.0` added when it has neither a
/// `.` nor an `e` (Prometheus's `FormatOpenMetricsFloat`).
pub fn format_openmetrics_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if f == 0.0 {
        return "0.0".into();
    }
    // Shortest round-trip digits and decimal exponent, from Rust's `{:e}`.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    let s = if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{dot}{rest}e{esign}{:02}", exp.abs())
    } else if exp < 0 {
        let zeros = "0".repeat(usize::try_from(-exp - 1).unwrap_or(0));
        format!("{sign}0.{zeros}{digits}")
    } else {
        let int_len = usize::try_from(exp + 1).unwrap_or(1);
        if digits.len() <= int_len {
            format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
        } else {
            format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
        }
    };
    if s.contains(['.', 'e']) { s } else { s + ".0" }
}

/// The per-target series of every scrape (`up` and the `scrape_*` ones), built once.
#[derive(Debug)]
pub struct Report {
    series: [Arc<Series>; 5],
}

/// The values of one scrape's report series.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReportValues {
    /// 1 when the scrape succeeded.
    pub up: bool,
    /// Seconds the scrape took.
    pub duration_secs: f64,
    /// `scrape_samples_scraped`.
    pub scraped: usize,
    /// `scrape_samples_post_metric_relabeling`.
    pub post_relabel: usize,
    /// `scrape_series_added`.
    pub added: usize,
}

impl Report {
    /// The report series of a target with these labels (unique, validated names).
    pub fn new(target_labels: &[(String, String)]) -> Report {
        let one = |name: &str| {
            let labels = std::iter::once(("__name__".to_owned(), name.to_owned()))
                .chain(target_labels.iter().cloned());
            Arc::new(Series::new(labels).expect("target labels are unique, named and not __name__"))
        };
        Report {
            series: [
                one("up"),
                one("scrape_duration_seconds"),
                one("scrape_samples_scraped"),
                one("scrape_samples_post_metric_relabeling"),
                one("scrape_series_added"),
            ],
        }
    }

    /// Appends the report samples of a scrape that started at `timestamp_ms`.
    pub fn push(&self, out: &mut Vec<Sample>, timestamp_ms: i64, v: ReportValues) {
        let values = [
            f64::from(u8::from(v.up)),
            v.duration_secs,
            v.scraped as f64,
            v.post_relabel as f64,
            v.added as f64,
        ];
        for (series, value) in self.series.iter().zip(values) {
            out.push(Sample {
                series: Arc::clone(series),
                timestamp_ms,
                value,
            });
        }
    }

    /// Appends a staleness marker for each report series (the target is gone).
    pub fn push_stale(&self, out: &mut Vec<Sample>, timestamp_ms: i64) {
        out.extend(self.series.iter().map(|s| stale(s, timestamp_ms)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::relabel::{Action, anchored};
    use crate::metrics::series::is_stale;

    fn target() -> Vec<(String, String)> {
        [
            ("instance", "10.0.0.1:9090"),
            ("job", "pods"),
            ("pod", "web-1"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
    }

    fn run(cache: &mut SeriesCache, body: &str, ts: i64) -> Processed {
        run_with(cache, body, ts, &[], 0)
    }

    fn run_with(
        cache: &mut SeriesCache,
        body: &str,
        ts: i64,
        rules: &[Rule],
        limit: usize,
    ) -> Processed {
        let labels = target();
        cache.process(
            body.as_bytes(),
            &Input {
                format: Format::Text,
                timestamp_ms: ts,
                target_labels: &labels,
                relabel: rules,
                sample_limit: limit,
                limits: Limits::DEFAULT,
            },
        )
    }

    #[test]
    fn series_text_keys_are_stable_and_tell_series_apart() {
        assert_eq!(text_key("a{b=\"c\"}"), text_key("a{b=\"c\"}"));
        let keys: HashSet<u128> = (0..10_000)
            .map(|i| text_key(&format!("m{{i=\"{i}\"}}")))
            .collect();
        assert_eq!(keys.len(), 10_000);
        assert_ne!(text_key(""), text_key(" "));
    }

    #[test]
    fn a_targets_series_share_its_labels_unless_relabeling_changed_them() {
        let mut cache = SeriesCache::default();
        let p = run(
            &mut cache,
            "a{method=\"GET\"} 1\na{method=\"PUT\"} 2\nb{id=\"x\"} 3\n",
            1000,
        );
        for s in &p.samples {
            let alone = Series::new(s.series.labels()).unwrap();
            assert_eq!(*s.series, alone);
            assert!(s.series.own_bytes() < alone.own_bytes(), "{:?}", s.series);
        }
        // The name is shared with the target's labels: a series holds only its own
        // label (a field of 2 + 2 + 6 + 2 + 3 bytes for method="GET").
        assert_eq!(p.samples[0].series.own_bytes(), 15);
        assert_eq!(cache.families.len(), 2);
        drop(p);
        // b goes: its family with it, once its marker is let go.
        let p = run(
            &mut cache,
            "a{method=\"GET\"} 1\na{method=\"PUT\"} 2\n",
            2000,
        );
        drop(p);
        run(
            &mut cache,
            "a{method=\"GET\"} 1\na{method=\"PUT\"} 2\n",
            3000,
        );
        assert_eq!(cache.families.len(), 1);
        // New target labels (a pod relabeled): the next scrape's new series share them.
        let mut other = target();
        other[1].1 = "pods-2".into();
        let rules = [];
        let p = cache.process(
            b"c 1\n",
            &Input {
                format: Format::Text,
                timestamp_ms: 2000,
                target_labels: &other,
                relabel: &rules,
                sample_limit: 0,
                limits: Limits::DEFAULT,
            },
        );
        let c = &p.samples[0].series;
        assert_eq!(c.get("job"), Some("pods-2"));
        assert!(c.own_bytes() < Series::new(c.labels()).unwrap().own_bytes());
    }

    /// Samples as `name{labels} value@ts`, `stale` for markers, in order.
    fn text(samples: &[Sample]) -> Vec<String> {
        samples
            .iter()
            .map(|s| {
                let labels: Vec<String> = s
                    .series
                    .labels()
                    .filter(|(n, _)| !matches!(*n, "__name__" | "instance" | "job" | "pod"))
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect();
                let v = if is_stale(s.value) {
                    "stale".to_string()
                } else {
                    s.value.to_string()
                };
                format!(
                    "{}{{{}}} {v}@{}",
                    s.series.name(),
                    labels.join(","),
                    s.timestamp_ms
                )
            })
            .collect()
    }

    #[test]
    fn target_labels_win_and_clashing_scraped_ones_are_exported() {
        let mut c = SeriesCache::default();
        let p = run(
            &mut c,
            "m{job=\"app\",exported_job=\"x\",pod=\"\",team=\"a\"} 1\n",
            1000,
        );
        let labels: Vec<(String, String)> = p.samples[0]
            .series
            .labels()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let want: Vec<(String, String)> = [
            ("__name__", "m"),
            ("exported_exported_job", "app"),
            ("exported_job", "x"),
            ("instance", "10.0.0.1:9090"),
            ("job", "pods"),
            ("pod", "web-1"),
            ("team", "a"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        assert_eq!(labels, want, "an empty scraped pod label is no clash");
    }

    #[test]
    fn series_are_built_once_and_kept_across_scrapes() {
        let mut c = SeriesCache::default();
        let body = "a 1\nb{x=\"1\"} 2\n";
        let first = run(&mut c, body, 1000);
        assert_eq!((first.scraped, first.post_relabel, first.added), (2, 2, 2));
        let second = run(&mut c, body, 2000);
        assert_eq!(second.added, 0, "cached");
        for (x, y) in first.samples.iter().zip(&second.samples) {
            assert!(
                Arc::ptr_eq(&x.series, &y.series),
                "the same Series is reused"
            );
        }
        assert_eq!(text(&second.samples), ["a{} 1@2000", "b{x=1} 2@2000"]);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn a_series_gone_is_marked_stale_at_the_next_scrape_exactly_once() {
        let mut c = SeriesCache::default();
        run(&mut c, "a 1\nb 2\nc 3 5000\n", 1000);
        let p = run(&mut c, "a 1\n", 2000);
        assert_eq!(
            text(&p.samples),
            ["a{} 1@2000", "b{} stale@2000"],
            "c had its own timestamp: not tracked"
        );
        let p = run(&mut c, "a 1\n", 3000);
        assert_eq!(text(&p.samples), ["a{} 1@3000"], "once");
        assert_eq!(c.len(), 1, "entries not seen are let go");
        // It comes back, then goes again: marked again.
        run(&mut c, "a 1\nb 2\n", 4000);
        let p = run(&mut c, "a 1\n", 5000);
        assert_eq!(text(&p.samples), ["a{} 1@5000", "b{} stale@5000"]);
    }

    #[test]
    fn a_failed_scrape_marks_every_series_stale_once() {
        let mut c = SeriesCache::default();
        run(&mut c, "a 1\nb 2\n", 1000);
        let mut out = Vec::new();
        c.fail(2000, &mut out);
        let mut t = text(&out);
        t.sort();
        assert_eq!(t, ["a{} stale@2000", "b{} stale@2000"]);
        out.clear();
        c.fail(3000, &mut out);
        assert!(out.is_empty(), "nothing left to mark");
        let p = run(&mut c, "a 1\n", 4000);
        assert_eq!(text(&p.samples), ["a{} 1@4000"], "no marker for b again");
    }

    #[test]
    fn the_sample_limit_fails_the_scrape_as_prometheus_does() {
        let mut c = SeriesCache::default();
        run_with(&mut c, "a 1\n", 1000, &[], 2);
        let p = run_with(&mut c, "a 1\nb 2\nc 3\nd 4\n", 2000, &[], 2);
        assert!(p.over_limit);
        assert_eq!(p.scraped, 4, "the whole body is counted");
        assert_eq!(
            text(&p.samples),
            ["a{} stale@2000"],
            "no sample, only markers"
        );
        // Relabeling comes first: dropped series do not count (the rules are the
        // loop's for its whole life, so a new cache).
        let mut c = SeriesCache::default();
        let drop_cd = Rule {
            source_labels: vec!["__name__".into()],
            separator: ";".into(),
            regex: anchored("c|d").unwrap(),
            target_label: String::new(),
            replacement: "$1".into(),
            action: Action::Drop,
        };
        let p = run_with(&mut c, "a 1\nb 2\nc 3\nd 4\n", 3000, &[drop_cd], 2);
        assert!(!p.over_limit);
        assert_eq!((p.scraped, p.post_relabel), (4, 2));
        assert_eq!(text(&p.samples), ["a{} 1@3000", "b{} 2@3000"]);
    }

    #[test]
    fn bad_lines_are_counted_and_the_rest_kept() {
        let mut c = SeriesCache::default();
        let p = run(&mut c, "a 1\nb{ 2\nc x\nd 4\nd 5\n", 1000);
        assert_eq!(
            text(&p.samples),
            ["a{} 1@1000", "d{} 4@1000"],
            "a duplicate: the first counts"
        );
        assert_eq!(p.errors.total(), 2);
        let (first, line) = p.errors.first.as_ref().unwrap();
        assert_eq!((first.line, line.as_str()), (2, "b{ 2"));
        assert_eq!(
            p.errors.counts,
            [(ErrorKind::BadLabelName, 1), (ErrorKind::BadValue, 1)]
        );
    }

    #[test]
    fn le_and_quantile_are_normalised_in_their_types_only() {
        let mut c = SeriesCache::default();
        let body = "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+inf\"} 1\n\
                    # TYPE s summary\ns{quantile=\"0.50\"} 1\n\
                    # TYPE g gauge\ng{le=\"1\"} 1\n";
        let p = run(&mut c, body, 1);
        let t = text(&p.samples);
        assert_eq!(
            t,
            [
                "h_bucket{le=1.0} 1@1",
                "h_bucket{le=+Inf} 1@1",
                "s{quantile=0.5} 1@1",
                "g{le=1} 1@1"
            ]
        );
    }

    #[test]
    fn floats_format_as_go_does() {
        for (f, want) in [
            (1.0, "1.0"),
            (0.0, "0.0"),
            (-1.0, "-1.0"),
            (10.0, "10.0"),
            (0.5, "0.5"),
            (0.005, "0.005"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (2.5e-7, "2.5e-07"),
            (123456.0, "123456.0"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (1e21, "1e+21"),
            (-0.25, "-0.25"),
            (100.5, "100.5"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(format_openmetrics_float(f), want, "{f}");
        }
        assert_eq!(
            normalised(MetricType::Histogram, "le", "1e3").as_deref(),
            Some("1000.0")
        );
        assert_eq!(
            normalised(MetricType::Histogram, "le", "+Inf").as_deref(),
            Some("+Inf")
        );
        assert_eq!(normalised(MetricType::Histogram, "le", "fast"), None);
        assert_eq!(normalised(MetricType::Histogram, "le", "1e400"), None);
        assert_eq!(normalised(MetricType::GaugeHistogram, "le", "1"), None);
        assert_eq!(normalised(MetricType::Histogram, "quantile", "1"), None);
    }

    #[test]
    fn report_series_carry_the_target_labels() {
        let r = Report::new(&target());
        let mut out = Vec::new();
        r.push(
            &mut out,
            7,
            ReportValues {
                up: true,
                duration_secs: 0.25,
                scraped: 3,
                post_relabel: 2,
                added: 1,
            },
        );
        assert_eq!(
            text(&out),
            [
                "up{} 1@7",
                "scrape_duration_seconds{} 0.25@7",
                "scrape_samples_scraped{} 3@7",
                "scrape_samples_post_metric_relabeling{} 2@7",
                "scrape_series_added{} 1@7",
            ]
        );
        assert_eq!(out[0].series.get("job"), Some("pods"));
        out.clear();
        r.push_stale(&mut out, 8);
        assert!(out.iter().all(|s| is_stale(s.value)) && out.len() == 5);
    }
}
