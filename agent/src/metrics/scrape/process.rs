//! One scrape's body into samples, as Prometheus's scrape loop does it: parse, give
//! each series its final labels once and keep it across scrapes (the series cache,
//! keyed by a hash of the series as written and walked in step with the body; the
//! target's labels encoded once and shared by its series), check the sample limit,
//! and emit a staleness marker for each series the previous scrape had and this one
//! has not.
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

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use kubeship_parsers::prom::{self, ErrorKind, Format, Limits, MetricType, Parser};

use crate::metrics::relabel::{self, Rule};
use crate::metrics::series::{
    At, Block, BlockBuilder, PreHashed, Record, Sample, Series, SharedLabels, stale_nan,
};

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
    /// Most samples after relabeling; `None`: no limit.
    pub sample_limit: Option<usize>,
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

/// A series of the cache: the index of its block in [`SeriesCache::blocks`] (high 32
/// bits) and its record's place in the block; [`Id::NONE`]: no series (dropped by
/// relabeling, or labels no series can have).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Id(u64);

impl Id {
    const NONE: Id = Id(u64::MAX);

    fn new(block: u32, at: At) -> Id {
        Id((u64::from(block) << 32) | u64::from(at))
    }

    fn block(self) -> usize {
        (self.0 >> 32) as usize
    }

    fn at(self) -> At {
        self.0 as At
    }
}

/// The record of `id`: in `blocks`, or, for the block being written
/// (`new_block`), in `new`.
fn record<'a>(
    blocks: &'a [Arc<Block>],
    new: &'a BlockBuilder,
    new_block: u32,
    id: Id,
) -> Record<'a> {
    if id.block() == new_block as usize {
        new.record(id.at())
    } else {
        blocks[id.block()].record(id.at())
    }
}

/// 96 bits of a series' [`text_key`], hashed by its first 64 (random already).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TextKey([u32; 3]);

impl TextKey {
    fn new(text: &str) -> TextKey {
        let k = text_key(text);
        TextKey([k as u32, (k >> 32) as u32, (k >> 64) as u32])
    }
}

impl Hash for TextKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from(self.0[0]) | (u64::from(self.0[1]) << 32));
    }
}

/// A cache's blocks are copied into one when there are more than this many.
const MAX_BLOCKS: usize = 8;
/// ... or when half of their bytes are dead, from this many bytes on.
const COMPACT_FROM: usize = 4096;

/// [`Entry::seen`]: the scrape's number, in the low bits.
const ITERATION: u32 = (1 << 30) - 1;
/// [`Entry::seen`]: the last scrape that had the series was a success and its
/// sample had no timestamp of its own: the series is marked stale when it goes.
const TRACKED: u32 = 1 << 31;
/// [`Entry::seen`], while a scrape runs: the entry was [`TRACKED`] before it.
const WAS_TRACKED: u32 = 1 << 30;

/// A series of the cache, 24 bytes: its text key, the last scrape that had it (and
/// the bits above), and its series.
#[derive(Debug)]
struct Entry {
    key: TextKey,
    seen: u32,
    series: Id,
}

/// Where a text key is, in a scrape's lookup index.
#[derive(Clone, Copy, Debug)]
enum Slot {
    /// In the previous scrape's entries, at this place.
    Old(u32),
    /// New in this scrape.
    New,
}

/// A target's series across scrapes: the cache and what the last scrape had.
///
/// The entries are a list in the order of the last scrape, not a hash table: a body
/// that lists the same series in the same order (nearly every scrape of nearly every
/// target) finds each at the next place, with no lookup and no set of the scrape's
/// series; an entry is 24 bytes (~2.4 MB for 100,000 series). A lookup index is
/// built only for a scrape whose series moved or changed, and let go after it.
///
/// The series themselves are records of blocks: a scrape's new series go into one
/// new block, and the blocks are copied into one (the live records only) when they
/// are more than [`MAX_BLOCKS`] or half of their bytes are records no entry has. The
/// samples that a queue still holds keep their old block until they are sent.
#[derive(Debug, Default)]
pub struct SeriesCache {
    /// In the order of the last scrape; only series it had.
    entries: Vec<Entry>,
    /// The records of the entries' series (and of series gone since).
    blocks: Vec<Arc<Block>>,
    /// Bytes of the blocks' records that no entry has (about: a series two entries
    /// share counts when either goes).
    dead: usize,
    /// Series two entries share (two texts whose labels came out equal, such as
    /// `le="1"` and `le="1.0"`): the only ones a body can hold twice under different
    /// texts, so the only ones checked for that. Usually empty.
    aliased: HashSet<Id>,
    iteration: u32,
    /// The target's labels, sorted by name.
    target: Vec<(String, String)>,
    /// Per metric name, the target's labels and `__name__` encoded together: shared
    /// by the series of one family, whose names are then not repeated in each.
    families: HashMap<Box<str>, SharedLabels>,
}

/// One scrape's walk over the previous scrape's entries.
struct Walk {
    old: Vec<Entry>,
    /// Where the next sample's series is expected in `old`.
    next: usize,
    /// Text key to place: built at the first series not at its expected place.
    index: Option<HashMap<TextKey, Slot, PreHashed>>,
    /// Series by labels (by their hash): built at the first series new to the cache.
    by_labels: Option<hashbrown::HashTable<Id>>,
    /// Aliased series this scrape had.
    aliased_seen: HashSet<Id>,
    /// The records of the series new in this scrape: the block `new_block`.
    new: BlockBuilder,
    new_block: u32,
    /// Whether the previous scrape's series can be reused (the target's labels are
    /// the same).
    reuse: bool,
    iteration: u32,
}

/// What a sample's text found.
enum Found {
    /// A cached series, and whether the previous scrape had it tracked.
    Cached(Id, bool),
    /// A text this scrape had already: the first one counts.
    Duplicate,
    /// New to the cache.
    New,
}

impl Walk {
    fn find(&mut self, key: TextKey) -> Found {
        if self.reuse
            && let Some(e) = self.old.get_mut(self.next)
            && e.key == key
            && e.seen & ITERATION != self.iteration
        {
            self.next += 1;
            return Found::Cached(e.series, take_seen(e, self.iteration));
        }
        self.find_indexed(key)
    }

    fn find_indexed(&mut self, key: TextKey) -> Found {
        let (old, reuse) = (&self.old, self.reuse);
        let index = self.index.get_or_insert_with(|| {
            let mut m = HashMap::with_capacity_and_hasher(old.len() + 16, PreHashed);
            if reuse {
                m.extend(
                    old.iter()
                        .enumerate()
                        .map(|(i, e)| (e.key, Slot::Old(i as u32))),
                );
            }
            m
        });
        match index.get(&key).copied() {
            Some(Slot::Old(i)) => {
                let e = &mut self.old[i as usize];
                if e.seen & ITERATION == self.iteration {
                    return Found::Duplicate;
                }
                self.next = i as usize + 1;
                Found::Cached(e.series, take_seen(e, self.iteration))
            }
            Some(Slot::New) => Found::Duplicate,
            None => {
                index.insert(key, Slot::New);
                Found::New
            }
        }
    }

    /// The series this scrape or the last one has with the labels of `built` (the
    /// record just written), if any; else `None`, and `built` is one from now on.
    fn same_labels(&mut self, built: Id, entries: &[Entry], blocks: &[Arc<Block>]) -> Option<Id> {
        let (old, reuse, iteration) = (&self.old, self.reuse, self.iteration);
        let (new, new_block) = (&self.new, self.new_block);
        let rec = |id: Id| record(blocks, new, new_block, id);
        let table = self.by_labels.get_or_insert_with(|| {
            let mine = entries.iter().map(|e| e.series);
            // An entry this scrape had already is in both: once is enough.
            let before = old
                .iter()
                .filter(|e| reuse && e.seen & ITERATION != iteration)
                .map(|e| e.series);
            let mut table = hashbrown::HashTable::with_capacity(old.len() + entries.len());
            for id in mine.chain(before).filter(|id| *id != Id::NONE) {
                table.insert_unique(rec(id).hash(), id, |&o| rec(o).hash());
            }
            table
        });
        let r = rec(built);
        if let Some(&found) = table.find(r.hash(), |&o| o == built || rec(o).same_labels(&r)) {
            return Some(found);
        }
        table.insert_unique(r.hash(), built, |&o| rec(o).hash());
        None
    }
}

/// Marks an old entry as had by scrape `iteration`; whether it was tracked.
fn take_seen(e: &mut Entry, iteration: u32) -> bool {
    let was = e.seen & TRACKED != 0;
    e.seen = iteration;
    was
}

impl SeriesCache {
    /// Turns a body into samples; see the module doc.
    pub fn process(&mut self, body: &[u8], input: &Input<'_>) -> Processed {
        self.iteration = (self.iteration % ITERATION) + 1;
        let reuse = same_labels(&self.target, input.target_labels);
        if !reuse {
            self.target = input.target_labels.to_vec();
            self.target.sort_unstable();
            self.families.clear();
        }
        let mut walk = Walk {
            old: std::mem::take(&mut self.entries),
            next: 0,
            index: None,
            by_labels: None,
            aliased_seen: HashSet::new(),
            reuse,
            iteration: self.iteration,
            new: BlockBuilder::default(),
            new_block: u32::try_from(self.blocks.len()).unwrap_or(u32::MAX - 1),
        };
        let mut entries: Vec<Entry> = Vec::with_capacity(walk.old.len() + 8);
        let mut out = Processed::default();
        // The samples, by series id until this scrape's block exists.
        let mut samples: Vec<(Id, i64, f64)> = Vec::with_capacity(walk.old.len() + 8);
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
            let key = TextKey::new(s.series);
            let (series, was) = match walk.find(key) {
                Found::Duplicate => continue,
                Found::Cached(series, was) => (series, was),
                Found::New => (
                    self.build_new(&s, input.relabel, &mut walk, &entries, &mut out),
                    false,
                ),
            };
            let mut seen = self.iteration | if was { WAS_TRACKED } else { 0 };
            if series == Id::NONE {
                entries.push(Entry { key, seen, series });
                continue;
            }
            let tracked = s.timestamp_ms.is_none();
            let duplicate = tracked
                && !self.aliased.is_empty()
                && self.aliased.contains(&series)
                && !walk.aliased_seen.insert(series);
            if tracked && !duplicate {
                seen |= TRACKED;
            }
            let sample = (
                series,
                s.timestamp_ms.unwrap_or(input.timestamp_ms),
                s.value,
            );
            entries.push(Entry { key, seen, series });
            if duplicate {
                // The same series under another text: the first one counts.
                continue;
            }
            out.post_relabel += 1;
            if input.sample_limit.is_some_and(|l| out.post_relabel > l) {
                out.over_limit = true;
                continue;
            }
            samples.push(sample);
        }
        let new = std::mem::take(&mut walk.new);
        if !new.is_empty() {
            debug_assert_eq!(self.blocks.len(), walk.new_block as usize);
            self.blocks.push(new.finish());
        }
        if out.over_limit {
            self.settle_over_limit(walk, entries, input.timestamp_ms, &mut out.samples);
        } else {
            out.samples.reserve_exact(samples.len() + 8);
            out.samples
                .extend(samples.into_iter().map(|(id, timestamp_ms, value)| Sample {
                    series: self.series(id),
                    timestamp_ms,
                    value,
                }));
            self.settle(walk, entries, input.timestamp_ms, &mut out.samples);
        }
        self.compact();
        // A family is let go with the last block that has a record of it.
        self.families.retain(|_, shared| shared.in_use());
        out
    }

    /// The series of `id` (not [`Id::NONE`]).
    fn series(&self, id: Id) -> Series {
        Series::in_block(&self.blocks[id.block()], id.at())
    }

    /// The length of `id`'s record.
    fn record_len(&self, id: Id) -> usize {
        self.blocks[id.block()].record(id.at()).len()
    }

    /// Copies the live records into one block when the blocks are many or half dead.
    fn compact(&mut self) {
        let total: usize = self.blocks.iter().map(|b| b.len()).sum();
        let half_dead = total >= COMPACT_FROM && self.dead * 2 > total;
        if self.blocks.len() <= MAX_BLOCKS && !half_dead {
            return;
        }
        let mut b = BlockBuilder::default();
        // Aliased series: one record for the entries that share it.
        let mut moved: HashMap<Id, Id> = HashMap::new();
        let mut copied = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            if e.series == Id::NONE {
                copied.push(Id::NONE);
                continue;
            }
            if let Some(&to) = moved.get(&e.series) {
                copied.push(to);
                continue;
            }
            let Ok(at) = b.copy(&self.series(e.series)) else {
                // Past a block's 4 GiB: the blocks stay as they are.
                return;
            };
            let to = Id::new(0, at);
            if self.aliased.contains(&e.series) {
                moved.insert(e.series, to);
            }
            copied.push(to);
        }
        for (e, to) in self.entries.iter_mut().zip(copied) {
            e.series = to;
        }
        self.aliased = self
            .aliased
            .iter()
            .filter_map(|id| moved.get(id))
            .copied()
            .collect();
        self.blocks.clear();
        self.dead = 0;
        if !b.is_empty() {
            self.blocks.push(b.finish());
        }
    }

    /// The series of a sample new to the cache; counted as added unless another
    /// text has it already.
    fn build_new(
        &mut self,
        s: &prom::Sample<'_>,
        rules: &[Rule],
        walk: &mut Walk,
        entries: &[Entry],
        out: &mut Processed,
    ) -> Id {
        let target = self.target.as_slice();
        let mut with_name = target.to_vec();
        let at = with_name.partition_point(|(n, _)| n.as_str() < "__name__");
        with_name.insert(at, ("__name__".to_owned(), s.name.to_owned()));
        let shared = match self.families.get(s.name) {
            Some(shared) => shared.clone(),
            None => {
                let shared =
                    SharedLabels::new(with_name.iter().map(|(n, v)| (n.as_str(), v.as_str())));
                self.families.insert(s.name.into(), shared.clone());
                shared
            }
        };
        let Some(at) = build(s, target, (&with_name, &shared), rules, &mut walk.new) else {
            return Id::NONE;
        };
        let built = Id::new(walk.new_block, at);
        let Some(series) = walk.same_labels(built, entries, &self.blocks) else {
            out.added += 1;
            return built;
        };
        // Another entry has these labels: its series is this one too.
        walk.new.pop(at);
        self.aliased.insert(series);
        // Had already in this scrape, under the other text: this one is the duplicate.
        let had = entries
            .iter()
            .any(|e| e.seen & TRACKED != 0 && e.series == series);
        if had {
            walk.aliased_seen.insert(series);
        }
        series
    }

    /// After a scrape within its limit: a staleness marker for each series the last
    /// successful scrape had and this one has not; the cache becomes this scrape's.
    fn settle(
        &mut self,
        walk: Walk,
        mut entries: Vec<Entry>,
        timestamp_ms: i64,
        out: &mut Vec<Sample>,
    ) {
        let Walk {
            old,
            mut aliased_seen,
            ..
        } = walk;
        for e in old {
            if e.seen & ITERATION != self.iteration && e.series != Id::NONE {
                self.dead += self.record_len(e.series);
            }
            if e.seen & TRACKED != 0
                && e.series != Id::NONE
                && self.first_of(e.series, &mut aliased_seen)
            {
                out.push(stale(self.series(e.series), timestamp_ms));
            }
        }
        for e in &mut entries {
            e.seen &= !WAS_TRACKED;
        }
        entries.shrink_to_fit();
        self.entries = entries;
        self.prune_aliased();
    }

    /// After a scrape over the sample limit: a marker for every series the last
    /// successful scrape had, none left to mark; the series stay cached.
    fn settle_over_limit(
        &mut self,
        walk: Walk,
        mut entries: Vec<Entry>,
        timestamp_ms: i64,
        out: &mut Vec<Sample>,
    ) {
        let Walk { old, reuse, .. } = walk;
        let mut marked = HashSet::new();
        for e in &mut entries {
            if e.seen & WAS_TRACKED != 0
                && e.series != Id::NONE
                && self.first_of(e.series, &mut marked)
            {
                out.push(stale(self.series(e.series), timestamp_ms));
            }
            e.seen &= ITERATION;
        }
        for mut e in old
            .into_iter()
            .filter(|e| e.seen & ITERATION != self.iteration)
        {
            if e.seen & TRACKED != 0 && e.series != Id::NONE && self.first_of(e.series, &mut marked)
            {
                out.push(stale(self.series(e.series), timestamp_ms));
            }
            e.seen &= ITERATION;
            if reuse {
                entries.push(e);
            } else if e.series != Id::NONE {
                self.dead += self.record_len(e.series);
            }
        }
        self.entries = entries;
        self.prune_aliased();
    }

    /// Whether `series` is met for the first time in a walk that records aliased
    /// series in `met` (a series no two entries share is met once anyway).
    fn first_of(&self, series: Id, met: &mut HashSet<Id>) -> bool {
        !self.aliased.contains(&series) || met.insert(series)
    }

    /// Keeps only the aliased series two entries still share.
    fn prune_aliased(&mut self) {
        if self.aliased.is_empty() {
            return;
        }
        let mut count: HashMap<Id, u32> = HashMap::new();
        for e in &self.entries {
            if self.aliased.contains(&e.series) {
                *count.entry(e.series).or_default() += 1;
            }
        }
        self.aliased
            .retain(|p| count.get(p).is_some_and(|&n| n > 1));
    }

    /// Series cached: those of its last scrape, dropped ones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// A failed scrape (or the target's end): a staleness marker at `timestamp_ms`
    /// for each series of the last successful scrape, once; the next failure has none
    /// left to mark.
    pub fn fail(&mut self, timestamp_ms: i64, out: &mut Vec<Sample>) {
        let mut marked = HashSet::new();
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            if e.seen & TRACKED != 0 && e.series != Id::NONE && self.first_of(e.series, &mut marked)
            {
                out.push(stale(self.series(e.series), timestamp_ms));
            }
            self.entries[i].seen &= !TRACKED;
        }
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

fn stale(series: Series, timestamp_ms: i64) -> Sample {
    Sample {
        series,
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
/// has them all; written to `block`. `None` when relabeling dropped it or the result
/// has no name.
fn build(
    s: &prom::Sample<'_>,
    target: &[(String, String)],
    (share, shared): (&[(String, String)], &SharedLabels),
    rules: &[Rule],
    block: &mut BlockBuilder,
) -> Option<At> {
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
    block.push(labels, shared, share).ok()
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
    series: [Series; 5],
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
            Series::new(labels).expect("target labels are unique, named and not __name__")
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
                series: series.clone(),
                timestamp_ms,
                value,
            });
        }
    }

    /// Appends a staleness marker for each report series (the target is gone).
    pub fn push_stale(&self, out: &mut Vec<Sample>, timestamp_ms: i64) {
        out.extend(self.series.iter().map(|s| stale(s.clone(), timestamp_ms)));
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
        run_with(cache, body, ts, &[], None)
    }

    fn run_with(
        cache: &mut SeriesCache,
        body: &str,
        ts: i64,
        rules: &[Rule],
        limit: Option<usize>,
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
        // Enough of b that its block is compacted once they are gone.
        let bs: String = (0..300).map(|i| format!("b{{id=\"{i}\"}} 3\n")).collect();
        let p = run(
            &mut cache,
            &format!("a{{method=\"GET\"}} 1\na{{method=\"PUT\"}} 2\n{bs}"),
            1000,
        );
        for s in &p.samples {
            let alone = Series::new(s.series.labels()).unwrap();
            assert_eq!(s.series, alone);
            assert!(s.series.own_bytes() < alone.own_bytes(), "{:?}", s.series);
        }
        // The name is shared with the target's labels: a series holds only its own
        // label (a field of 2 + 2 + 6 + 2 + 3 bytes for method="GET").
        assert_eq!(p.samples[0].series.own_bytes(), 15);
        assert_eq!(cache.families.len(), 2);
        drop(p);
        // b goes: its family with it, once its records' block is compacted and its
        // markers are let go.
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
                sample_limit: None,
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
    fn series_churn_keeps_few_blocks_and_samples_held_elsewhere_keep_theirs() {
        assert_eq!(std::mem::size_of::<Entry>(), 24);
        let mut c = SeriesCache::default();
        let steady: String = (0..100).map(|i| format!("s{{i=\"{i}\"}} 1\n")).collect();
        let mut held = Vec::new();
        for r in 0..200i64 {
            let p = run(&mut c, &format!("{steady}churn{{r=\"{r}\"}} 2\n"), r + 1);
            assert_eq!(p.added, if r == 0 { 101 } else { 1 });
            let want_markers = usize::from(r > 0);
            assert_eq!(
                p.samples.iter().filter(|s| is_stale(s.value)).count(),
                want_markers
            );
            if r % 50 == 0 {
                // As a queue holds them, across the compactions to come.
                held.push((r, p.samples));
            }
            let total: usize = c.blocks.iter().map(|b| b.len()).sum();
            let live: usize = c
                .entries
                .iter()
                .map(|e| c.series(e.series).record().len())
                .sum();
            assert!(c.blocks.len() <= MAX_BLOCKS, "{} blocks", c.blocks.len());
            assert!(
                total <= 2 * live.max(COMPACT_FROM),
                "{total} bytes for {live}"
            );
        }
        for (r, samples) in &held {
            let t = text(samples);
            assert_eq!(t.len(), 101 + usize::from(*r > 0), "{t:?}");
            assert_eq!(t[0], format!("s{{i=0}} 1@{}", r + 1));
            assert_eq!(t[100], format!("churn{{r={r}}} 2@{}", r + 1));
        }
        // The live series read as they were written, whatever block they are in now.
        let p = run(&mut c, &steady, 1000);
        assert_eq!(p.added, 0);
        assert_eq!(text(&p.samples)[99], "s{i=99} 1@1000");
        assert_eq!(text(&p.samples)[100], "churn{r=199} stale@1000");
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
            assert!(x.series.is(&y.series), "the same Series is reused");
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
    fn series_in_another_order_are_still_cached_and_the_list_follows_the_body() {
        let mut c = SeriesCache::default();
        let first = run(&mut c, "a 1\nb 2\nc 3\n", 1000);
        let p = run(&mut c, "c 3\na 1\nb 2\n", 2000);
        assert_eq!(p.added, 0);
        assert_eq!(text(&p.samples), ["c{} 3@2000", "a{} 1@2000", "b{} 2@2000"]);
        assert!(first.samples[0].series.is(&p.samples[1].series));
        assert_eq!(
            c.entries
                .iter()
                .map(|e| c.series(e.series).name().to_string())
                .collect::<Vec<_>>(),
            ["c", "a", "b"]
        );
        assert_eq!(c.entries.capacity(), c.entries.len(), "no room kept");
        // One gone from the middle, one new at the end.
        let p = run(&mut c, "c 3\nb 2\nd 4\n", 3000);
        assert_eq!(p.added, 1);
        assert_eq!(
            text(&p.samples),
            ["c{} 3@3000", "b{} 2@3000", "d{} 4@3000", "a{} stale@3000"]
        );
    }

    #[test]
    fn two_texts_of_one_series_count_once_in_either_order() {
        let mut c = SeriesCache::default();
        let h = "# TYPE h histogram\n";
        // le="1" is written le="1.0": the same series as the second line.
        let p = run(
            &mut c,
            &format!("{h}h_bucket{{le=\"1\"}} 1\nh_bucket{{le=\"1.0\"}} 2\n"),
            1000,
        );
        assert_eq!(
            text(&p.samples),
            ["h_bucket{le=1.0} 1@1000"],
            "the first counts"
        );
        assert_eq!((p.post_relabel, p.added), (1, 1));
        let p = run(
            &mut c,
            &format!("{h}h_bucket{{le=\"1.0\"}} 3\nh_bucket{{le=\"1\"}} 4\n"),
            2000,
        );
        assert_eq!(text(&p.samples), ["h_bucket{le=1.0} 3@2000"]);
        // Only the other text now: the series is still there, no marker.
        let p = run(&mut c, &format!("{h}h_bucket{{le=\"1\"}} 5\n"), 3000);
        assert_eq!(text(&p.samples), ["h_bucket{le=1.0} 5@3000"]);
        // A new text of it after the first in the same scrape: still once.
        let p = run(
            &mut c,
            &format!("{h}h_bucket{{le=\"1\"}} 6\nh_bucket{{le=\"1e0\"}} 7\n"),
            4000,
        );
        assert_eq!(text(&p.samples), ["h_bucket{le=1.0} 6@4000"]);
        assert_eq!(p.added, 0);
        let p = run(&mut c, "x 1\n", 5000);
        assert_eq!(
            text(&p.samples),
            ["x{} 1@5000", "h_bucket{le=1.0} stale@5000"],
            "marked once"
        );
        assert!(c.aliased.is_empty());
    }

    #[test]
    fn a_target_whose_labels_change_marks_its_old_series_and_builds_new_ones() {
        let mut c = SeriesCache::default();
        run(&mut c, "a 1\n", 1000);
        let mut labels = target();
        labels[2].1 = "web-2".into();
        let p = c.process(
            b"a 1\n",
            &Input {
                format: Format::Text,
                timestamp_ms: 2000,
                target_labels: &labels,
                relabel: &[],
                sample_limit: None,
                limits: Limits::DEFAULT,
            },
        );
        let pods: Vec<String> = p
            .samples
            .iter()
            .map(|s| {
                let pod = s
                    .series
                    .labels()
                    .find(|(n, _)| *n == "pod")
                    .unwrap()
                    .1
                    .to_string();
                format!("{pod} {}", if is_stale(s.value) { "stale" } else { "1" })
            })
            .collect();
        assert_eq!(pods, ["web-2 1", "web-1 stale"]);
        assert_eq!(p.added, 1);
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
        run_with(&mut c, "a 1\n", 1000, &[], Some(2));
        let p = run_with(&mut c, "a 1\nb 2\nc 3\nd 4\n", 2000, &[], Some(2));
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
        let p = run_with(&mut c, "a 1\nb 2\nc 3\nd 4\n", 3000, &[drop_cd], Some(2));
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

    /// Texts of a few series: two pairs name one series each (`le` normalised), one
    /// has its own timestamp.
    const POOL: [&str; 7] = [
        "a{x=\"1\"}",
        "a{x=\"2\"}",
        "b",
        "h_bucket{le=\"1\"}",
        "h_bucket{le=\"1.0\"}",
        "h_bucket{le=\"+Inf\"}",
        "t",
    ];

    /// The series (as `text` writes it) of `POOL[i]`.
    fn model_series(i: usize) -> &'static str {
        [
            "a{x=1}",
            "a{x=2}",
            "b{}",
            "h_bucket{le=1.0}",
            "h_bucket{le=1.0}",
            "h_bucket{le=+Inf}",
            "t{}",
        ][i]
    }

    proptest::proptest! {
        /// Against a model: in a scrape, a text counts once and a series once (its
        /// first text); a series the last successful scrape had without a timestamp
        /// and this one has not is marked stale once; a failure marks them all.
        #[test]
        fn scrapes_match_the_model(
            steps in proptest::collection::vec(
                proptest::option::weighted(0.9, proptest::collection::vec(0usize..7, 0..12)),
                1..12,
            )
        ) {
            let mut c = SeriesCache::default();
            let mut prev: HashSet<&str> = HashSet::new();
            for (n, step) in steps.iter().enumerate() {
                let ts = 1000 * (n as i64 + 1);
                let Some(seq) = step else {
                    let mut out = Vec::new();
                    c.fail(ts, &mut out);
                    let mut got = text(&out);
                    got.sort();
                    let mut want: Vec<String> = prev.iter().map(|s| format!("{s} stale@{ts}")).collect();
                    want.sort();
                    proptest::prop_assert_eq!(got, want);
                    prev.clear();
                    continue;
                };
                let mut body = String::from("# TYPE h histogram\n");
                for (k, &i) in seq.iter().enumerate() {
                    let stamp = if i == 6 { " 500" } else { "" };
                    body.push_str(&format!("{} {k}{stamp}\n", POOL[i]));
                }
                let p = run(&mut c, &body, ts);
                let (mut texts, mut series, mut cur) = (HashSet::new(), HashSet::new(), HashSet::new());
                let mut want = Vec::new();
                for (k, &i) in seq.iter().enumerate() {
                    if !texts.insert(i) || (i != 6 && !series.insert(model_series(i))) {
                        continue;
                    }
                    let at = if i == 6 { 500 } else { ts };
                    want.push(format!("{} {k}@{at}", model_series(i)));
                    if i != 6 {
                        cur.insert(model_series(i));
                    }
                }
                let mut stale: Vec<String> = prev.difference(&cur).map(|s| format!("{s} stale@{ts}")).collect();
                stale.sort();
                let got = text(&p.samples);
                let (fresh, marked) = got.split_at(want.len());
                proptest::prop_assert_eq!(fresh, &want[..]);
                let mut marked = marked.to_vec();
                marked.sort();
                proptest::prop_assert_eq!(marked, stale);
                prev = cur;
            }
        }
    }
}
