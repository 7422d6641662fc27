//! What the metrics pipeline moves: samples of series, from a scrape to the
//! remote-write queues (or the local sink).
//!
//! A series is a record in a [`Block`]: a scrape loop writes the series new in a
//! scrape into one block and keeps it across scrapes (as Prometheus's series cache
//! keeps its series), and a [`Series`] is a reference to the block and the record's
//! place, which its samples share: a steady scrape allocates nothing per sample but
//! the [`Sample`] itself, and nothing per series. Its labels are what remote write
//! requires: sorted by name, names unique, no empty value (an empty value means "no
//! such label", as in Prometheus). Its hash picks the queue shard, so one series'
//! samples stay in order.
//!
//! A series keeps its labels already encoded as remote write's protobuf `Label`
//! messages, in two sorted runs merged by name when read: the labels every series of
//! its target (and metric name) carries (one copy, shared), and its own. A node's
//! agent holds a series for each of the ~100,000 series its targets expose, so this
//! is most of its memory: a record is its own labels and about 11 bytes, instead of
//! a pair of shared strings per label, and a request copies each label message as it
//! is.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use prost::encoding::{WireType, decode_varint, encode_key, encode_varint, encoded_len_varint};

/// The bits of Prometheus's staleness marker: a NaN no exposition produces.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as a value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// True for the staleness marker (not for other NaNs).
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Why labels cannot make a series.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SeriesError {
    /// No `__name__` label.
    #[error("no __name__ label")]
    NoName,
    /// Two labels of the same name.
    #[error("label {0} appears twice")]
    Duplicate(String),
    /// A label with an empty name.
    #[error("a label with an empty name")]
    EmptyName,
    /// A block of series past 4 GiB (a target whose new series' labels pass that).
    #[error("too many series for one block")]
    Full,
}

/// Labels sorted by name, encoded as a run of `TimeSeries.labels` fields: each label
/// is `0x0a len 0x0a name-len name 0x12 value-len value` (names and values never
/// empty). Shared by every series of a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedLabels(Arc<Box<[u8]>>);

impl Default for SharedLabels {
    fn default() -> SharedLabels {
        SharedLabels::empty()
    }
}

impl SharedLabels {
    /// No labels.
    pub fn empty() -> SharedLabels {
        static EMPTY: OnceLock<Arc<Box<[u8]>>> = OnceLock::new();
        SharedLabels(Arc::clone(EMPTY.get_or_init(Arc::default)))
    }

    /// Whether a series holds these labels (not only the one keeping them).
    pub fn in_use(&self) -> bool {
        Arc::strong_count(&self.0) > 1
    }

    /// `labels` (sorted by name, names unique) encoded; a label with an empty value
    /// is no label and is left out.
    pub fn new<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> SharedLabels {
        let mut out = Vec::new();
        for (n, v) in labels.into_iter().filter(|(_, v)| !v.is_empty()) {
            encode_label(n, v, &mut out);
        }
        SharedLabels(Arc::new(out.into_boxed_slice()))
    }
}

/// Appends one `TimeSeries.labels` field.
fn encode_label(name: &str, value: &str, out: &mut Vec<u8>) {
    let field = |s: &str| 1 + encoded_len_varint(s.len() as u64) + s.len();
    encode_key(1, WireType::LengthDelimited, out);
    encode_varint((field(name) + field(value)) as u64, out);
    for (tag, s) in [(1, name), (2, value)] {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(s.len() as u64, out);
        out.extend_from_slice(s.as_bytes());
    }
}

/// The length of the first field of a run (all of it, were it malformed: it is not).
fn field_len(run: &[u8]) -> usize {
    let mut rest = run.get(1..).unwrap_or_default();
    match decode_varint(&mut rest) {
        Ok(len) => (run.len() - rest.len())
            .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
            .min(run.len()),
        Err(_) => run.len(),
    }
}

/// One label of an encoded run: its name, value, and the whole field as encoded.
#[derive(Clone, Copy)]
struct RawLabel<'a> {
    name: &'a [u8],
    value: &'a [u8],
    field: &'a [u8],
}

/// Reads the first label of `run` and moves `run` past it. `None` at the end (or on
/// bytes [`encode_label`] does not write, which no run holds).
fn next_label<'a>(run: &mut &'a [u8]) -> Option<RawLabel<'a>> {
    let whole: &'a [u8] = run;
    let mut rest: &'a [u8] = run;
    let part = |tag: u8, rest: &mut &'a [u8]| -> Option<&'a [u8]> {
        let (&t, after) = rest.split_first()?;
        if t != tag {
            return None;
        }
        *rest = after;
        let len = usize::try_from(decode_varint(rest).ok()?).ok()?;
        let (s, after) = (rest.get(..len)?, rest.get(len..)?);
        *rest = after;
        Some(s)
    };
    let body = part(0x0a, &mut rest)?;
    let field = &whole[..whole.len() - rest.len()];
    *run = rest;
    let mut body = body;
    let name = part(0x0a, &mut body)?;
    let value = part(0x12, &mut body)?;
    Some(RawLabel { name, value, field })
}

/// The labels of two sorted runs with distinct names, merged by name.
#[derive(Clone)]
struct Merged<'a> {
    a: Run<'a>,
    b: Run<'a>,
}

/// A run being read: its next label, decoded once, and the rest.
#[derive(Clone)]
struct Run<'a> {
    head: Option<RawLabel<'a>>,
    rest: &'a [u8],
}

impl<'a> Run<'a> {
    fn new(mut rest: &'a [u8]) -> Run<'a> {
        Run {
            head: next_label(&mut rest),
            rest,
        }
    }

    fn pop(&mut self) -> Option<RawLabel<'a>> {
        let head = self.head.take();
        self.head = next_label(&mut self.rest);
        head
    }
}

impl<'a> Merged<'a> {
    fn new(a: &'a [u8], b: &'a [u8]) -> Merged<'a> {
        Merged {
            a: Run::new(a),
            b: Run::new(b),
        }
    }
}

impl<'a> Iterator for Merged<'a> {
    type Item = RawLabel<'a>;

    fn next(&mut self) -> Option<RawLabel<'a>> {
        match (&self.a.head, &self.b.head) {
            (Some(x), Some(y)) if x.name <= y.name => self.a.pop(),
            (_, Some(_)) => self.b.pop(),
            (Some(_), None) => self.a.pop(),
            (None, None) => None,
        }
    }
}

/// A series' labels, sorted by name: `(name, value)`.
#[derive(Clone)]
pub struct Labels<'a>(Merged<'a>);

impl<'a> Iterator for Labels<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        // Runs are only ever encoded from `&str`.
        let text = |b: &'a [u8]| std::str::from_utf8(b).unwrap_or_default();
        self.0.next().map(|l| (text(l.name), text(l.value)))
    }
}

impl std::fmt::Debug for Labels<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.clone()).finish()
    }
}

/// Series records, written one after the other by a [`BlockBuilder`]: the series a
/// target's scrape found new (or one series alone). A record is the hash of its
/// labels (8 bytes, little-endian), then three varints: its order (see
/// [`Record`]), the index of its shared run in the block's `shared`, the length of
/// its own run; then its own run. That is about 11 bytes besides the labels a series
/// has of its own, and no allocation per series: a node's agent keeps a record for
/// each of the ~100,000 series its targets expose, so this is most of its memory.
#[derive(Debug)]
pub struct Block {
    /// The shared runs the records use; the first is the empty run.
    shared: Box<[SharedLabels]>,
    bytes: Box<[u8]>,
}

/// Writes the records of a [`Block`].
#[derive(Debug)]
pub struct BlockBuilder {
    shared: Vec<SharedLabels>,
    /// The index of a shared run in `shared`, by its address.
    index: HashMap<usize, u32>,
    bytes: Vec<u8>,
    /// A record's own run while it is written.
    own: Vec<u8>,
}

/// Where a series is in its block: a record's offset.
pub type At = u32;

/// One record, read in place.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    hash: u64,
    /// Where each label comes from, in name order: bit `i` set when the `i`-th is
    /// shared; [`MERGE_BY_NAME`] when there are too many labels for the bits.
    order: u64,
    /// Labels every series of its target (and family) has, possibly none.
    shared: &'a [u8],
    /// Its other labels: a run as in [`SharedLabels`], no name in both.
    own: &'a [u8],
    /// The record's length in its block.
    len: usize,
}

/// A series: its labels, sorted by name, and their hash; a record of a block that
/// its samples share.
#[derive(Clone)]
pub struct Series {
    block: Arc<Block>,
    at: At,
}

/// [`Record`]'s order of a series with more than 64 labels and some shared: merged by
/// name when written (never a valid order: `__name__` is never shared).
const MERGE_BY_NAME: u64 = u64::MAX;

/// The process's key for label hashes: random, so that no one outside can choose
/// series whose hashes collide (hash tables keyed by them take the hash as it is).
fn label_hasher() -> std::collections::hash_map::DefaultHasher {
    use std::hash::BuildHasher as _;
    static KEY: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    KEY.get_or_init(std::collections::hash_map::RandomState::new)
        .build_hasher()
}

/// For hash tables whose keys are a good hash already (randomly keyed): the key's
/// value is the hash, with no second pass (a `u128` key folded to 64 bits).
#[derive(Clone, Copy, Debug, Default)]
pub struct PreHashed;

/// The [`PreHashed`] hasher.
#[derive(Default)]
pub struct PreHashedHasher(u64);

impl std::hash::BuildHasher for PreHashed {
    type Hasher = PreHashedHasher;

    fn build_hasher(&self) -> PreHashedHasher {
        PreHashedHasher(0)
    }
}

impl Hasher for PreHashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by the keys it is meant for; still a hash, should one come.
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 =
                (self.0.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 ^= v;
    }

    fn write_u128(&mut self, v: u128) {
        self.0 ^= (v as u64) ^ ((v >> 64) as u64);
    }
}

impl Default for BlockBuilder {
    fn default() -> BlockBuilder {
        BlockBuilder {
            shared: vec![SharedLabels::empty()],
            index: HashMap::new(),
            bytes: Vec::new(),
            own: Vec::new(),
        }
    }
}

impl BlockBuilder {
    /// Whether no record was written.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Writes the series of `labels` (any order; empty values dropped) of a target
    /// whose series all carry `target` (sorted by name, names unique), whose labels
    /// with a value are encoded in `shared`: when `labels` hold every one of them,
    /// only the others are the series' own.
    pub fn push<'a>(
        &mut self,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        shared: &SharedLabels,
        target: &[(String, String)],
    ) -> Result<At, SeriesError> {
        let mut v: Vec<(&str, &str)> = labels.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        if let Some(w) = v.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(SeriesError::Duplicate(w[0].0.to_string()));
        }
        if v.iter().any(|(n, _)| n.is_empty()) {
            return Err(SeriesError::EmptyName);
        }
        if !v.iter().any(|(n, _)| *n == "__name__") {
            return Err(SeriesError::NoName);
        }
        // Target labels with an empty value are no labels (and not in `shared`).
        let has_all = !shared.0.is_empty()
            && target
                .iter()
                .filter(|(_, tv)| !tv.is_empty())
                .all(|(tn, tv)| {
                    v.binary_search_by(|(n, _)| (*n).cmp(tn.as_str()))
                        .is_ok_and(|i| v[i].1 == tv)
                });
        self.own.clear();
        let mut order = 0u64;
        for (i, &(n, val)) in v.iter().enumerate() {
            let in_shared = has_all
                && target
                    .binary_search_by(|(tn, _)| tn.as_str().cmp(n))
                    .is_ok_and(|i| target[i].1 == val);
            if !in_shared {
                encode_label(n, val, &mut self.own);
            } else if i < 64 {
                order |= 1 << i;
            } else {
                order = MERGE_BY_NAME;
            }
        }
        let mut h = label_hasher();
        for (n, val) in &v {
            n.hash(&mut h);
            val.hash(&mut h);
        }
        let family = if has_all { self.family(shared) } else { 0 };
        let own = std::mem::take(&mut self.own);
        let at = self.write(h.finish(), order, family, &own);
        self.own = own;
        at
    }

    /// The index of `shared` in the block's runs.
    fn family(&mut self, shared: &SharedLabels) -> u32 {
        let key = Arc::as_ptr(&shared.0) as usize;
        let next = self.shared.len() as u32;
        let i = *self.index.entry(key).or_insert(next);
        if i == next {
            self.shared.push(shared.clone());
        }
        i
    }

    fn write(&mut self, hash: u64, order: u64, family: u32, own: &[u8]) -> Result<At, SeriesError> {
        let at = At::try_from(self.bytes.len()).map_err(|_| SeriesError::Full)?;
        self.bytes.extend_from_slice(&hash.to_le_bytes());
        encode_varint(order, &mut self.bytes);
        encode_varint(u64::from(family), &mut self.bytes);
        encode_varint(own.len() as u64, &mut self.bytes);
        self.bytes.extend_from_slice(own);
        Ok(at)
    }

    /// Copies a record of another block (its shared run kept shared).
    pub fn copy(&mut self, s: &Series) -> Result<At, SeriesError> {
        let (family, r) = s.block.family_and_record(s.at);
        let family = self.family(&s.block.shared[family]);
        self.write(r.hash, r.order, family, r.own)
    }

    /// The record at `at`, written by this builder.
    pub fn record(&self, at: At) -> Record<'_> {
        read(&self.shared, &self.bytes, at).1
    }

    /// Lets go of the last record, which starts at `at`.
    pub fn pop(&mut self, at: At) {
        self.bytes.truncate(at as usize);
    }

    /// The block of the records written.
    pub fn finish(self) -> Arc<Block> {
        Arc::new(Block {
            shared: self.shared.into_boxed_slice(),
            bytes: self.bytes.into_boxed_slice(),
        })
    }
}

/// The hash of the record at `at`: its first 8 bytes (0, were `at` not a record's
/// start: it always is).
fn hash_at(bytes: &[u8], at: At) -> u64 {
    let at = at as usize;
    bytes
        .get(at..)
        .and_then(|b| b.first_chunk::<8>())
        .map_or(0, |h| u64::from_le_bytes(*h))
}

/// Reads the record at `at`: the index of its shared run, and the record (empty, were
/// `at` not a record's start: it always is).
fn read<'a>(shared: &'a [SharedLabels], bytes: &'a [u8], at: At) -> (usize, Record<'a>) {
    let whole = bytes.get(at as usize..).unwrap_or_default();
    let hash = hash_at(bytes, at);
    let mut rest = whole.get(8..).unwrap_or_default();
    let mut varint = || decode_varint(&mut rest).unwrap_or(0);
    let (order, family, len) = (varint(), varint(), varint());
    let family = usize::try_from(family).unwrap_or(0);
    let len = usize::try_from(len).unwrap_or(0).min(rest.len());
    let own = &rest[..len];
    let record = Record {
        hash,
        order,
        shared: shared.get(family).map_or(&[][..], |s| &s.0[..]),
        own,
        len: whole.len() - (rest.len() - len),
    };
    (family, record)
}

impl Block {
    /// The record at `at`.
    pub fn record(&self, at: At) -> Record<'_> {
        read(&self.shared, &self.bytes, at).1
    }

    fn family_and_record(&self, at: At) -> (usize, Record<'_>) {
        read(&self.shared, &self.bytes, at)
    }

    /// Bytes of records.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}

impl<'a> Record<'a> {
    fn merged(&self) -> Merged<'a> {
        Merged::new(self.shared, self.own)
    }

    /// The labels, sorted by name.
    pub fn labels(&self) -> Labels<'a> {
        Labels(self.merged())
    }

    /// A hash of the labels.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The record's length in its block.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The encoded length of the labels as `TimeSeries.labels` fields.
    pub fn encoded_len(&self) -> usize {
        self.shared.len() + self.own.len()
    }

    /// Appends the labels as `TimeSeries.labels` fields, in name order
    /// ([`Record::encoded_len`] bytes): each field copied as it is, in the order
    /// the record's order bits tell (no name is read).
    pub fn write_labels(&self, out: &mut Vec<u8>) {
        let (mut shared, mut own) = (self.shared, self.own);
        if shared.is_empty() {
            out.extend_from_slice(own);
            return;
        }
        if self.order == MERGE_BY_NAME {
            for l in self.merged() {
                out.extend_from_slice(l.field);
            }
            return;
        }
        let mut order = self.order;
        while !shared.is_empty() || !own.is_empty() {
            let from = if (order & 1 == 1 && !shared.is_empty()) || own.is_empty() {
                &mut shared
            } else {
                &mut own
            };
            order >>= 1;
            let n = field_len(from);
            out.extend_from_slice(&from[..n]);
            *from = &from[n..];
        }
    }

    /// Whether both have the same labels.
    pub fn same_labels(&self, o: &Record<'_>) -> bool {
        self.hash == o.hash
            && ((self.shared == o.shared && self.own == o.own)
                || self
                    .merged()
                    .map(|l| (l.name, l.value))
                    .eq(o.merged().map(|l| (l.name, l.value))))
    }
}

impl Series {
    /// The series of these labels (any order; empty values are dropped), alone in
    /// its block.
    pub fn new<N: AsRef<str>, V: AsRef<str>>(
        labels: impl IntoIterator<Item = (N, V)>,
    ) -> Result<Series, SeriesError> {
        let labels: Vec<(N, V)> = labels.into_iter().collect();
        let refs = labels.iter().map(|(n, v)| (n.as_ref(), v.as_ref()));
        Series::with_shared(refs, &SharedLabels::empty(), &[])
    }

    /// As [`BlockBuilder::push`], alone in its block.
    pub fn with_shared<'a>(
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        shared: &SharedLabels,
        target: &[(String, String)],
    ) -> Result<Series, SeriesError> {
        let mut b = BlockBuilder::default();
        let at = b.push(labels, shared, target)?;
        Ok(Series {
            block: b.finish(),
            at,
        })
    }

    /// The series of the record at `at` of `block`.
    pub fn in_block(block: &Arc<Block>, at: At) -> Series {
        Series {
            block: Arc::clone(block),
            at,
        }
    }

    /// Its record.
    pub fn record(&self) -> Record<'_> {
        self.block.record(self.at)
    }

    /// The labels, sorted by name.
    pub fn labels(&self) -> Labels<'_> {
        self.record().labels()
    }

    /// Whether both are the same record (not only the same labels).
    pub fn is(&self, o: &Series) -> bool {
        self.at == o.at && Arc::ptr_eq(&self.block, &o.block)
    }

    /// The value of label `name`.
    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The metric name (`__name__`).
    #[cfg(test)]
    pub fn name(&self) -> &str {
        self.get("__name__").unwrap_or("")
    }

    /// A hash of the labels (the queue shard of the series).
    pub fn hash(&self) -> u64 {
        // Read without decoding the rest of its record.
        hash_at(&self.block.bytes, self.at)
    }

    /// Bytes of labels the series holds of its own (not shared with its target).
    #[cfg(test)]
    pub fn own_bytes(&self) -> usize {
        self.record().own.len()
    }

    /// Its order bits (see [`Record`]).
    #[cfg(test)]
    fn order(&self) -> u64 {
        self.record().order
    }
}

impl PartialEq for Series {
    fn eq(&self, o: &Self) -> bool {
        self.is(o) || self.record().same_labels(&o.record())
    }
}

impl Eq for Series {}

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.labels().fmt(f)
    }
}

/// One sample of a series.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Its series.
    pub series: Series,
    /// Milliseconds since the Unix epoch: the exposition's, else the scrape's start.
    pub timestamp_ms: i64,
    /// The value ([`stale_nan`] for a staleness marker).
    pub value: f64,
}

/// Where scrapes hand their samples: the remote-write queues, or the local sink.
/// Must not block: a full destination drops the oldest samples, counted.
pub trait Destination: Send + Sync {
    /// Takes one scrape's samples (in scrape order).
    fn push(&self, samples: Vec<Sample>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_unique_and_named() {
        let s = Series::new([("job", "a"), ("__name__", "up"), ("instance", "x:1")]).unwrap();
        let names: Vec<&str> = s.labels().map(|(n, _)| n).collect();
        assert_eq!(names, ["__name__", "instance", "job"]);
        assert_eq!(s.name(), "up");
        assert_eq!(s.get("job"), Some("a"));
        assert_eq!(s.get("nope"), None);
        let empty_dropped = Series::new([("__name__", "up"), ("env", "")]).unwrap();
        assert_eq!(empty_dropped.labels().count(), 1);
        assert_eq!(
            Series::new([("__name__", "a"), ("x", "1"), ("x", "2")]),
            Err(SeriesError::Duplicate("x".into()))
        );
        assert_eq!(Series::new([("x", "1")]), Err(SeriesError::NoName));
        assert_eq!(
            Series::new([("__name__", "a"), ("", "1")]),
            Err(SeriesError::EmptyName)
        );
    }

    #[test]
    fn equal_label_sets_hash_alike_whatever_their_order() {
        let a = Series::new([("__name__", "m"), ("a", "1"), ("b", "2")]).unwrap();
        let b = Series::new([("b", "2"), ("a", "1"), ("__name__", "m")]).unwrap();
        let c = Series::new([("b", "3"), ("a", "1"), ("__name__", "m")]).unwrap();
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), c.hash());
    }

    fn target() -> (Vec<(String, String)>, SharedLabels) {
        let t: Vec<(String, String)> = [
            ("instance", "10.0.0.1:80"),
            ("job", "pods"),
            ("pod", "web-1"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let shared = SharedLabels::new(t.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        (t, shared)
    }

    #[test]
    fn a_series_with_all_its_target_labels_shares_them_and_equals_one_that_does_not() {
        let (t, shared) = target();
        let labels = [
            ("__name__", "http_requests_total"),
            ("code", "200"),
            ("job", "pods"),
            ("instance", "10.0.0.1:80"),
            ("zone", "a"),
            ("pod", "web-1"),
        ];
        let split = Series::with_shared(labels, &shared, &t).unwrap();
        let whole = Series::new(labels).unwrap();
        assert!(split.own_bytes() < whole.own_bytes());
        assert_eq!(split.hash(), whole.hash());
        assert_eq!(split, whole);
        let names: Vec<&str> = split.labels().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["__name__", "code", "instance", "job", "pod", "zone"]
        );
        assert_eq!(split.get("zone"), Some("a"));
        assert_eq!(split.get("instance"), Some("10.0.0.1:80"));
        // A target label changed (by relabeling): nothing is shared.
        let mut changed = labels;
        changed[2] = ("job", "other");
        let s = Series::with_shared(changed, &shared, &t).unwrap();
        assert_eq!(s.own_bytes(), Series::new(changed).unwrap().own_bytes());
        assert_eq!(s.get("job"), Some("other"));
        assert_ne!(s, whole);
    }

    #[test]
    fn a_series_of_more_than_64_labels_is_written_in_name_order() {
        use crate::metrics::remote_write::proto::TimeSeries;
        use prost::Message as _;
        let mut labels: Vec<(String, String)> = (0..70)
            .map(|i| (format!("l{i:02}"), format!("v{i}")))
            .collect();
        let target: Vec<(String, String)> = labels.iter().skip(1).step_by(3).cloned().collect();
        let shared = SharedLabels::new(target.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        labels.push(("__name__".into(), "m".into()));
        let refs = labels.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        let s = Series::with_shared(refs.clone(), &shared, &target).unwrap();
        assert_eq!(s.order(), MERGE_BY_NAME);
        let mut bytes = Vec::new();
        s.record().write_labels(&mut bytes);
        let names: Vec<String> = TimeSeries::decode(&bytes[..])
            .unwrap()
            .labels
            .into_iter()
            .map(|l| l.name)
            .collect();
        let mut want: Vec<String> = labels.iter().map(|(n, _)| n.clone()).collect();
        want.sort();
        assert_eq!(names, want);
        assert_eq!(s, Series::new(refs).unwrap());
    }

    #[test]
    fn encoded_labels_are_what_prost_writes_for_them() {
        use crate::metrics::remote_write::proto::{Label, TimeSeries};
        use prost::Message as _;
        let (t, shared) = target();
        let long = "v".repeat(300);
        let labels = [
            ("__name__", "m"),
            ("instance", "10.0.0.1:80"),
            ("job", "pods"),
            ("pod", "web-1"),
            ("a", long.as_str()),
            ("ünï", "cödé"),
        ];
        let s = Series::with_shared(labels, &shared, &t).unwrap();
        let mut bytes = Vec::new();
        s.record().write_labels(&mut bytes);
        assert_eq!(bytes.len(), s.record().encoded_len());
        let decoded = TimeSeries::decode(&bytes[..]).unwrap();
        let mut want: Vec<Label> = labels
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect();
        want.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(decoded.labels, want);
        assert_eq!(
            TimeSeries {
                labels: want,
                samples: vec![]
            }
            .encode_to_vec(),
            bytes
        );
    }

    proptest::proptest! {
        #[test]
        fn a_split_series_reads_as_the_whole(
            labels in proptest::collection::btree_map("[a-e_]{1,3}", "[a-c\u{e9}]{0,3}", 0..8),
            picks in proptest::collection::vec(proptest::prelude::any::<bool>(), 8),
            other in proptest::prelude::any::<bool>(),
        ) {
            use crate::metrics::remote_write::proto::TimeSeries;
            use prost::Message as _;
            let mut all: Vec<(String, String)> = labels.into_iter().collect();
            all.retain(|(n, _)| n != "__name__");
            all.push(("__name__".into(), "m".into()));
            // The target: some of the labels (a value changed when `other`).
            let mut t: Vec<(String, String)> = all
                .iter()
                .zip(&picks)
                .filter(|(_, p)| **p)
                .map(|(l, _)| l.clone())
                .filter(|(n, _)| n != "__name__")
                .collect();
            if other && let Some(l) = t.first_mut() {
                l.1.push('x');
            }
            t.sort();
            let shared = SharedLabels::new(t.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            let refs = all.iter().map(|(n, v)| (n.as_str(), v.as_str()));
            let split = Series::with_shared(refs.clone(), &shared, &t).unwrap();
            let whole = Series::new(refs).unwrap();
            proptest::prop_assert_eq!(&split, &whole);
            proptest::prop_assert_eq!(split.hash(), whole.hash());
            let read: Vec<(&str, &str)> = split.labels().collect();
            let want: Vec<(&str, &str)> = whole.labels().collect();
            proptest::prop_assert_eq!(&read, &want);
            proptest::prop_assert!(read.windows(2).all(|w| w[0].0 < w[1].0));
            let mut bytes = Vec::new();
            split.record().write_labels(&mut bytes);
            proptest::prop_assert_eq!(bytes.len(), split.record().encoded_len());
            let decoded = TimeSeries::decode(&bytes[..]).unwrap();
            let pairs: Vec<(&str, &str)> =
                decoded.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
            proptest::prop_assert_eq!(pairs, want);
        }
    }

    #[test]
    fn a_record_is_its_own_labels_and_a_few_bytes_and_a_sample_32_bytes() {
        let (t, shared) = target();
        let mut b = BlockBuilder::default();
        let labels = [
            ("__name__", "m"),
            ("instance", "10.0.0.1:80"),
            ("job", "pods"),
            ("pod", "web-1"),
            ("method", "GET"),
        ];
        let first = b.push(labels, &shared, &t).unwrap();
        let second = b
            .push([("__name__", "n"), ("a", "1")], &SharedLabels::empty(), &[])
            .unwrap();
        let block = b.finish();
        let s = Series::in_block(&block, first);
        // __name__="m" and method="GET", 15 bytes each, of its own (the target's are
        // shared); the hash, 8 bytes, and three 1-byte varints.
        assert_eq!(s.own_bytes(), 30);
        assert_eq!(s.record().len(), 30 + 8 + 3);
        assert_eq!(second as usize, s.record().len());
        assert_eq!(s, Series::new(labels).unwrap());
        assert_eq!(s.hash(), Series::new(labels).unwrap().hash());
        let n = Series::in_block(&block, second);
        assert_eq!(n.name(), "n");
        assert!(!n.is(&s) && n.is(&Series::in_block(&block, second)));
        assert_eq!(block.len(), s.record().len() + n.record().len());
        assert_eq!(std::mem::size_of::<Sample>(), 32);
    }

    #[test]
    fn the_stale_marker_is_its_own_nan() {
        assert!(is_stale(stale_nan()));
        assert!(!is_stale(f64::NAN));
        assert!(stale_nan().is_nan());
    }
}
