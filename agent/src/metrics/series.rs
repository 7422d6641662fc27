//! What the metrics pipeline moves: samples of series, from a scrape to the
//! remote-write queues (or the local sink).
//!
//! A [`Series`] is built once per series of a target (the scrape loop keeps it across
//! scrapes, as Prometheus's series cache does) and shared by its samples through an
//! `Arc`: a steady scrape allocates nothing per sample but the [`Sample`] itself. Its
//! labels are what remote write requires: sorted by name, names unique, no empty
//! value (an empty value means "no such label", as in Prometheus). Its hash picks the
//! queue shard, so one series' samples stay in order.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

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

/// One label of a series. Shared text: a target's series share their label names,
/// the target's label values and every repeated value ([`Interner`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    /// Name (`__name__` for the metric name).
    pub name: Arc<str>,
    /// Value, never empty.
    pub value: Arc<str>,
}

/// One copy of each label name and value a target's series use, so that its hundreds
/// of series hold one allocation of their own (their label list) instead of one per
/// name and value. [`Interner::prune`] lets go of what no series holds any more.
#[derive(Debug, Default)]
pub struct Interner {
    strings: std::collections::HashSet<Arc<str>>,
}

impl Interner {
    /// The shared copy of `s`.
    pub fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return Arc::clone(a);
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(Arc::clone(&a));
        a
    }

    /// Forgets the strings only the interner holds.
    pub fn prune(&mut self) {
        self.strings.retain(|a| Arc::strong_count(a) > 1);
    }

    /// Strings held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.strings.len()
    }
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
}

/// A series: its labels, sorted by name, and their hash.
#[derive(Debug, PartialEq, Eq)]
pub struct Series {
    labels: Box<[Label]>,
    hash: u64,
}

impl Series {
    /// The series of these labels (any order; empty values are dropped).
    pub fn new<N: Into<Arc<str>>, V: Into<Arc<str>>>(
        labels: impl IntoIterator<Item = (N, V)>,
    ) -> Result<Series, SeriesError> {
        let mut v: Vec<Label> = labels
            .into_iter()
            .map(|(n, v)| Label {
                name: n.into(),
                value: v.into(),
            })
            .filter(|l| !l.value.is_empty())
            .collect();
        v.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = v.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(SeriesError::Duplicate(w[0].name.to_string()));
        }
        if v.iter().any(|l| l.name.is_empty()) {
            return Err(SeriesError::EmptyName);
        }
        if !v.iter().any(|l| &*l.name == "__name__") {
            return Err(SeriesError::NoName);
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        v.hash(&mut h);
        Ok(Series {
            labels: v.into_boxed_slice(),
            hash: h.finish(),
        })
    }

    /// The labels, sorted by name.
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// The value of label `name`.
    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|l| (*l.name).cmp(name))
            .ok()
            .map(|i| &*self.labels[i].value)
    }

    /// The metric name (`__name__`).
    #[cfg(test)]
    pub fn name(&self) -> &str {
        self.get("__name__").unwrap_or("")
    }

    /// A hash of the labels (the queue shard of the series).
    pub fn hash(&self) -> u64 {
        self.hash
    }
}

/// One sample of a series.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Its series.
    pub series: Arc<Series>,
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
        let names: Vec<&str> = s.labels().iter().map(|l| &*l.name).collect();
        assert_eq!(names, ["__name__", "instance", "job"]);
        assert_eq!(s.name(), "up");
        assert_eq!(s.get("job"), Some("a"));
        assert_eq!(s.get("nope"), None);
        let empty_dropped = Series::new([("__name__", "up"), ("env", "")]).unwrap();
        assert_eq!(empty_dropped.labels().len(), 1);
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

    #[test]
    fn the_stale_marker_is_its_own_nan() {
        assert!(is_stale(stale_nan()));
        assert!(!is_stale(f64::NAN));
        assert!(stale_nan().is_nan());
    }
}
