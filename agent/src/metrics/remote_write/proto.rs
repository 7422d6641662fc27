//! Remote write 1.0's body: a protobuf `prometheus.WriteRequest`, snappy-compressed
//! (block format).
//!
//! The messages are derived here by hand with prost (no protoc), as the spec's
//! `remote.proto` / `types.proto` define the fields remote write 1.0 sends. The
//! sender does not build them: [`encode`] writes the same bytes prost would (proto3:
//! a field at its default value is left out) straight from the samples' shared
//! [`Series`], so a request costs no allocation per label or sample; the tests
//! decode its output with the derived messages and compare.
//!
//! A request's samples are grouped by series (one `TimeSeries` per series, in the
//! order each first appears), each series' samples in timestamp order; labels are
//! sorted by name and unique (what [`Series`] guarantees).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use crate::metrics::series::{PreHashed, Sample, Series};

/// `prometheus.WriteRequest`: what one remote-write request carries.
#[cfg(test)]
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series and their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: one series' labels and samples.
#[cfg(test)]
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Sorted by name, names unique.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// In timestamp order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<ProtoSample>,
}

/// `prometheus.Label`.
#[cfg(test)]
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// The label's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[cfg(test)]
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoSample {
    /// The value (the staleness marker is a NaN of its own bits).
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// A series as a map key: equal labels, whatever `Arc` holds them.
struct Key<'a>(&'a Series);

impl Hash for Key<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash());
    }
}
impl PartialEq for Key<'_> {
    fn eq(&self, o: &Self) -> bool {
        std::ptr::eq(self.0, o.0) || self.0 == o.0
    }
}
impl Eq for Key<'_> {}

/// Buffers reused from one request to the next.
#[derive(Default)]
pub struct Scratch {
    /// The batch's sample indexes, grouped by series.
    order: Vec<u32>,
    /// Each sample's group.
    group_of: Vec<u32>,
    /// Where each group starts in `order`.
    starts: Vec<u32>,
    /// The protobuf of the block being filled, before compression.
    raw: Vec<u8>,
    /// Each group's `TimeSeries` content length.
    lens: Vec<usize>,
}

/// The encoded length of a `string`/`message` field with tag `tag` holding `len` bytes.
fn field_len(tag: u32, len: usize) -> usize {
    prost::encoding::key_len(tag) + encoded_len_varint(len as u64) + len
}

/// The length of one `Sample` message's content.
fn sample_len(s: &Sample) -> usize {
    let v = if s.value != 0.0 { 1 + 8 } else { 0 };
    let t = if s.timestamp_ms != 0 {
        1 + encoded_len_varint(s.timestamp_ms as u64)
    } else {
        0
    };
    v + t
}

/// Writes the `WriteRequest` of `batch` into `out` (cleared first): the bytes prost's
/// `WriteRequest::encode` writes for the same request.
#[cfg(test)]
pub fn encode(batch: &[Sample], scratch: &mut Scratch, out: &mut Vec<u8>) {
    out.clear();
    group(batch, scratch);
    sort_groups(batch, scratch);
    for g in 0..scratch.starts.len() - 1 {
        let members = members(scratch, g);
        write_group(batch, members, group_content_len(batch, members), out);
    }
}

/// The sample indexes of group `g`, in timestamp order (stable, so equal timestamps
/// keep their order; usually sorted already).
fn members(scratch: &Scratch, g: usize) -> &[u32] {
    let (from, to) = (scratch.starts[g] as usize, scratch.starts[g + 1] as usize);
    &scratch.order[from..to]
}

/// Sorts each group's samples by timestamp.
fn sort_groups(batch: &[Sample], scratch: &mut Scratch) {
    for g in 0..scratch.starts.len() - 1 {
        let (from, to) = (scratch.starts[g] as usize, scratch.starts[g + 1] as usize);
        let members = &mut scratch.order[from..to];
        if !members.is_sorted_by_key(|&i| batch[i as usize].timestamp_ms) {
            members.sort_by_key(|&i| batch[i as usize].timestamp_ms);
        }
    }
}

/// The length of one `TimeSeries` message's content: its series' labels and
/// `members`' samples.
fn group_content_len(batch: &[Sample], members: &[u32]) -> usize {
    let labels = batch[members[0] as usize].series.encoded_len();
    let samples: usize = members
        .iter()
        .map(|&i| field_len(2, sample_len(&batch[i as usize])))
        .sum();
    labels + samples
}

/// Appends the `timeseries` field of one group (`members` of `batch`, one series).
/// `len` is its content's length ([`group_content_len`]).
fn write_group(batch: &[Sample], members: &[u32], len: usize, out: &mut Vec<u8>) {
    encode_key(1, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
    batch[members[0] as usize].series.write_labels(out);
    for &i in members {
        let s = &batch[i as usize];
        encode_key(2, WireType::LengthDelimited, out);
        encode_varint(sample_len(s) as u64, out);
        if s.value != 0.0 {
            encode_key(1, WireType::SixtyFourBit, out);
            out.extend_from_slice(&s.value.to_bits().to_le_bytes());
        }
        if s.timestamp_ms != 0 {
            encode_key(2, WireType::Varint, out);
            encode_varint(s.timestamp_ms as u64, out);
        }
    }
}

/// Fills `scratch.order` with `batch`'s indexes grouped by series (groups in order of
/// first appearance, members in batch order) and `scratch.starts` with the group
/// boundaries (one more than there are groups).
fn group(batch: &[Sample], scratch: &mut Scratch) {
    let Scratch {
        order,
        group_of,
        starts,
        raw: _,
        lens: _,
    } = scratch;
    let mut groups: HashMap<Key<'_>, u32, PreHashed> =
        HashMap::with_capacity_and_hasher(batch.len().min(4096), PreHashed);
    group_of.clear();
    starts.clear();
    for s in batch {
        let next = groups.len() as u32;
        let g = *groups.entry(Key(&s.series)).or_insert(next);
        group_of.push(g);
        if g == next {
            starts.push(0);
        }
        starts[g as usize] += 1;
    }
    // Counts to offsets, then place each sample.
    let mut at = 0u32;
    for c in starts.iter_mut() {
        let n = *c;
        *c = at;
        at += n;
    }
    starts.push(at);
    order.clear();
    order.resize(batch.len(), 0);
    let mut fill: Vec<u32> = starts[..starts.len() - 1].to_vec();
    for (i, &g) in group_of.iter().enumerate() {
        order[fill[g as usize] as usize] = i as u32;
        fill[g as usize] += 1;
    }
}

/// How much protobuf is handed to snappy at a time: its block size. Snappy's encoder
/// compresses each 64 KiB block of its input on its own, so a body compressed block
/// by block is the same body, and the protobuf of a request (about 0.5 MB for 2,000
/// samples) never exists whole: a shard keeps one block, not the request twice over.
const BLOCK: usize = 1 << 16;

/// A request body: `batch` encoded and compressed into `out` (cleared first), in
/// snappy's block format: the length of the protobuf, then each block's compressed
/// elements.
pub fn body(batch: &[Sample], scratch: &mut Scratch, out: &mut Vec<u8>) -> Result<(), snap::Error> {
    group(batch, scratch);
    sort_groups(batch, scratch);
    let groups = scratch.starts.len() - 1;
    let mut lens = std::mem::take(&mut scratch.lens);
    lens.clear();
    lens.extend((0..groups).map(|g| group_content_len(batch, members(scratch, g))));
    let total: usize = lens.iter().map(|&len| field_len(1, len)).sum();
    out.clear();
    out.reserve(snap::raw::max_compress_len(BLOCK.min(total)) + total / 4);
    encode_varint(total as u64, out);
    let mut stage = std::mem::take(&mut scratch.raw);
    stage.clear();
    let mut encoder = snap::raw::Encoder::new();
    let mut result = Ok(());
    for (g, &len) in lens.iter().enumerate() {
        write_group(batch, members(scratch, g), len, &mut stage);
        while stage.len() >= BLOCK && result.is_ok() {
            result = compress_block(&mut encoder, &stage[..BLOCK], out);
            stage.drain(..BLOCK);
        }
    }
    if !stage.is_empty() && result.is_ok() {
        result = compress_block(&mut encoder, &stage, out);
    }
    scratch.raw = stage;
    scratch.lens = lens;
    result
}

/// Appends `block` compressed, without the length snappy puts first (the body has
/// one length, of all its blocks).
fn compress_block(
    encoder: &mut snap::raw::Encoder,
    block: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), snap::Error> {
    let at = out.len();
    out.resize(at + snap::raw::max_compress_len(block.len()), 0);
    let n = encoder.compress(block, &mut out[at..])?;
    let header = encoded_len_varint(block.len() as u64);
    out.copy_within(at + header..at + n, at);
    out.truncate(at + n - header);
    Ok(())
}

#[cfg(test)]
mod tests {

    use proptest::prelude::*;
    use prost::Message as _;

    use super::*;
    use crate::metrics::series::{is_stale, stale_nan};

    fn series(labels: &[(&str, &str)]) -> Series {
        Series::new(labels.iter().copied()).unwrap()
    }

    fn sample(series: &Series, t: i64, v: f64) -> Sample {
        Sample {
            series: series.clone(),
            timestamp_ms: t,
            value: v,
        }
    }

    /// The request prost writes for the same samples, grouped as [`encode`] groups them.
    fn with_prost(batch: &[Sample]) -> WriteRequest {
        let mut out: Vec<TimeSeries> = Vec::new();
        let mut keys: Vec<Vec<(String, String)>> = Vec::new();
        for s in batch {
            let labels: Vec<(String, String)> = s
                .series
                .labels()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            let at = match keys.iter().position(|k| *k == labels) {
                Some(i) => i,
                None => {
                    keys.push(labels.clone());
                    out.push(TimeSeries {
                        labels: labels
                            .into_iter()
                            .map(|(name, value)| Label { name, value })
                            .collect(),
                        samples: vec![],
                    });
                    out.len() - 1
                }
            };
            out[at].samples.push(ProtoSample {
                value: s.value,
                timestamp: s.timestamp_ms,
            });
        }
        for ts in &mut out {
            ts.samples.sort_by_key(|s| s.timestamp);
        }
        WriteRequest { timeseries: out }
    }

    fn encoded(batch: &[Sample]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(batch, &mut Scratch::default(), &mut out);
        out
    }

    /// Values compared by their bits (NaN payloads matter: the staleness marker); a
    /// zero is left out on the wire, so -0.0 decodes as 0.0 (as with Prometheus's Go
    /// code).
    type Bits = Vec<(Vec<(String, String)>, Vec<(i64, u64)>)>;

    fn bits(r: &WriteRequest) -> Bits {
        r.timeseries
            .iter()
            .map(|t| {
                (
                    t.labels
                        .iter()
                        .map(|l| (l.name.clone(), l.value.clone()))
                        .collect(),
                    t.samples
                        .iter()
                        .map(|s| {
                            (
                                s.timestamp,
                                if s.value == 0.0 { 0 } else { s.value.to_bits() },
                            )
                        })
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn histogram_and_summary_shaped_series_with_special_values() {
        let b = |le: &str| series(&[("__name__", "req_bucket"), ("job", "api"), ("le", le)]);
        let (b1, binf) = (b("0.5"), b("+Inf"));
        let sum = series(&[("__name__", "req_sum"), ("job", "api")]);
        let q = series(&[("__name__", "rpc"), ("quantile", "0.99")]);
        let batch = vec![
            sample(&b1, 1_700_000_000_000, 3.0),
            sample(&binf, 1_700_000_000_000, 7.0),
            sample(&sum, 1_700_000_000_000, f64::INFINITY),
            sample(&q, 1_700_000_000_000, f64::NAN),
            sample(&b1, 1_700_000_015_000, f64::NEG_INFINITY),
            sample(&q, 1_700_000_015_000, stale_nan()),
            sample(&sum, 0, 0.0),
            sample(&sum, -5, -0.25),
        ];
        let bytes = encoded(&batch);
        let prost_bytes = with_prost(&batch).encode_to_vec();
        assert_eq!(bytes, prost_bytes, "byte for byte what prost writes");
        let back = WriteRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.timeseries.len(), 4, "one TimeSeries per series");
        assert_eq!(
            back.timeseries[0].labels,
            [
                Label {
                    name: "__name__".into(),
                    value: "req_bucket".into()
                },
                Label {
                    name: "job".into(),
                    value: "api".into()
                },
                Label {
                    name: "le".into(),
                    value: "0.5".into()
                },
            ]
        );
        let q_samples = &back.timeseries[3].samples;
        assert!(q_samples[0].value.is_nan() && !is_stale(q_samples[0].value));
        assert!(is_stale(q_samples[1].value), "the marker's bits survive");
        let sums: Vec<(i64, f64)> = back.timeseries[2]
            .samples
            .iter()
            .map(|s| (s.timestamp, s.value))
            .collect();
        assert_eq!(
            sums,
            [(-5, -0.25), (0, 0.0), (1_700_000_000_000, f64::INFINITY)],
            "in timestamp order; zeros left out on the wire decode as zeros"
        );
    }

    #[test]
    fn equal_labels_in_different_arcs_are_one_series() {
        let a = series(&[("__name__", "m"), ("x", "1")]);
        let a2 = series(&[("x", "1"), ("__name__", "m")]);
        let batch = vec![sample(&a, 1, 1.0), sample(&a2, 2, 2.0)];
        let back = WriteRequest::decode(encoded(&batch).as_slice()).unwrap();
        assert_eq!(back.timeseries.len(), 1);
        assert_eq!(back.timeseries[0].samples.len(), 2);
    }

    #[test]
    fn snappy_round_trip() {
        let s = series(&[("__name__", "m"), ("pod", "p")]);
        let batch: Vec<Sample> = (0..2000)
            .map(|i| sample(&s, 1_700_000_000_000 + i * 15_000, i as f64))
            .collect();
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        body(&batch, &mut scratch, &mut out).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&out).unwrap();
        assert_eq!(raw, encoded(&batch));
        assert!(out.len() < raw.len(), "{} >= {}", out.len(), raw.len());
        // The scratch buffers are reused: a second, smaller body is right too.
        body(&batch[..3], &mut scratch, &mut out).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&out).unwrap();
        assert_eq!(raw, encoded(&batch[..3]));
        assert_eq!(snap::raw::decompress_len(&out).unwrap(), raw.len());
    }

    #[test]
    fn a_body_of_many_blocks_is_one_snappy_body() {
        // ~1 MB of protobuf: many 64 KiB blocks, groups cut at block boundaries, and
        // one series whose labels alone span more than two blocks.
        let big = "x".repeat(150_000);
        let mut pool: Vec<Series> = (0..3000)
            .map(|i| {
                let pod = format!("pod-{i:05}-{}", "p".repeat(200));
                series(&[("__name__", "http_requests_total"), ("pod", &pod)])
            })
            .collect();
        pool.insert(1500, series(&[("__name__", "big"), ("v", &big)]));
        let batch: Vec<Sample> = pool
            .iter()
            .enumerate()
            .map(|(i, s)| sample(s, 1_700_000_000_000 + i as i64, i as f64))
            .collect();
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        body(&batch, &mut scratch, &mut out).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&out).unwrap();
        assert!(raw.len() > 10 * BLOCK, "{} bytes", raw.len());
        assert_eq!(raw, encoded(&batch));
        assert_eq!(
            WriteRequest::decode(raw.as_slice()).unwrap(),
            with_prost(&batch)
        );
        // The same as compressing the protobuf whole.
        let whole = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
        assert_eq!(out, whole);
        // Without the big series, what is staged stays about a block.
        let small: Vec<Sample> = batch
            .iter()
            .filter(|s| s.series.encoded_len() < 1000)
            .cloned()
            .collect();
        let mut scratch = Scratch::default();
        body(&small, &mut scratch, &mut out).unwrap();
        assert_eq!(
            snap::raw::Decoder::new().decompress_vec(&out).unwrap(),
            encoded(&small)
        );
        assert!(
            scratch.raw.capacity() < 3 * BLOCK,
            "{}",
            scratch.raw.capacity()
        );
    }

    proptest! {
        #[test]
        fn any_batch_decodes_to_what_was_encoded(
            picks in proptest::collection::vec((0usize..6, any::<i64>(), any::<f64>()), 0..60)
        ) {
            let pool: Vec<Series> = (0..6)
                .map(|i| {
                    let v = format!("v{i}é");
                    series(&[("__name__", "m"), ("a", &v), ("z", "🙂")])
                })
                .collect();
            let batch: Vec<Sample> = picks.iter().map(|&(s, t, v)| sample(&pool[s], t, v)).collect();
            let bytes = encoded(&batch);
            prop_assert_eq!(&bytes, &with_prost(&batch).encode_to_vec());
            let back = WriteRequest::decode(bytes.as_slice()).unwrap();
            prop_assert_eq!(bits(&back), bits(&with_prost(&batch)));
        }
    }
}
