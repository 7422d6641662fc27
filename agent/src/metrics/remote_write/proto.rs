//! Remote write 1.0's body: a protobuf `prometheus.WriteRequest`, snappy-compressed
//! (block format).
//!
//! The messages are derived here by hand with prost (no protoc), as the spec's
//! `remote.proto` / `types.proto` define the fields remote write 1.0 sends. The
//! sender does not build them: [`chunks`] writes the same bytes prost would (proto3:
//! a field at its default value is left out) straight from the samples' shared
//! [`Series`](crate::metrics::series::Series), so a request costs no allocation per
//! label or sample; the tests decode its output with the derived messages and
//! compare.
//!
//! Each sample is a `TimeSeries` of its own, in the order pushed (a series' samples
//! then go out in the order its target's scrapes made them); labels are sorted by name
//! and unique (what a series guarantees). The samples are encoded and compressed when
//! they are queued, while the scrape that made them still has their records in cache,
//! into [`Chunk`]s: at send time the records are cold (a request of 2,000 samples took
//! ~200 ns per sample to encode then, ~85 with them in cache), and a chunk holds a
//! sample in ~17 bytes, half of what the sample took.

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use crate::metrics::series::Sample;

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

/// How much protobuf is handed to snappy at a time: its block size. Snappy's encoder
/// compresses each 64 KiB block of its input on its own, so a body compressed block
/// by block is the same body, and the protobuf of a push (about 0.5 MB for 2,000
/// samples) never exists whole: one block is staged at a time.
const BLOCK: usize = 1 << 16;

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

/// Some samples of one shard, encoded and compressed when they were pushed (while the
/// scrape that made them still had their records in cache): each sample a `TimeSeries`
/// of its own, then snappy's elements for each block of at most [`BLOCK`] bytes of that
/// protobuf, without the length snappy puts first. A request is the length of all its
/// chunks' protobuf, then their elements one after the other ([`request_body`]).
#[derive(Debug)]
pub struct Chunk {
    bytes: Box<[u8]>,
    raw_len: usize,
    samples: usize,
    newest_ms: i64,
}

impl Chunk {
    /// How many samples it holds.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The newest of their timestamps.
    pub fn newest_ms(&self) -> i64 {
        self.newest_ms
    }

    /// Bytes it holds.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
}

/// What encoding keeps from one call of [`chunks`] to the next: the protobuf being
/// staged (about a block) and snappy's encoder (its hash tables).
pub struct Stage {
    raw: Vec<u8>,
    encoder: snap::raw::Encoder,
}

impl Default for Stage {
    fn default() -> Stage {
        Stage {
            raw: Vec::new(),
            encoder: snap::raw::Encoder::new(),
        }
    }
}

/// Appends `samples`, in order, as chunks of at most `per_chunk` samples to `out`.
pub fn chunks<'a>(
    samples: impl IntoIterator<Item = &'a Sample>,
    per_chunk: usize,
    stage: &mut Stage,
    out: &mut Vec<Chunk>,
) -> Result<(), snap::Error> {
    let Stage {
        raw: stage,
        encoder,
    } = stage;
    let mut samples = samples.into_iter().peekable();
    while samples.peek().is_some() {
        stage.clear();
        let mut bytes = Vec::new();
        let (mut raw_len, mut n, mut newest_ms) = (0, 0, i64::MIN);
        for s in samples.by_ref().take(per_chunk.max(1)) {
            let at = stage.len();
            write_one(s, stage);
            raw_len += stage.len() - at;
            n += 1;
            newest_ms = newest_ms.max(s.timestamp_ms);
            while stage.len() >= BLOCK {
                compress_block(encoder, &stage[..BLOCK], &mut bytes)?;
                stage.drain(..BLOCK);
            }
        }
        if !stage.is_empty() {
            compress_block(encoder, stage, &mut bytes)?;
        }
        out.push(Chunk {
            bytes: bytes.into_boxed_slice(),
            raw_len,
            samples: n,
            newest_ms,
        });
    }
    stage.clear();
    if stage.capacity() > 4 * BLOCK {
        stage.shrink_to(2 * BLOCK);
    }
    Ok(())
}

/// The request of `chunks`: snappy's block format, the length of their protobuf then
/// their elements.
pub fn request_body(chunks: &[Chunk]) -> Vec<u8> {
    let raw: usize = chunks.iter().map(|c| c.raw_len).sum();
    let size: usize = chunks.iter().map(|c| c.bytes.len()).sum();
    let mut out = Vec::with_capacity(encoded_len_varint(raw as u64) + size);
    encode_varint(raw as u64, &mut out);
    for c in chunks {
        out.extend_from_slice(&c.bytes);
    }
    out
}

/// Appends one sample as a `timeseries` field of its own.
fn write_one(s: &Sample, out: &mut Vec<u8>) {
    // The record is read once, for its length and its labels.
    let record = s.series.record();
    let len = record.encoded_len() + field_len(2, sample_len(s));
    encode_key(1, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
    record.write_labels(out);
    write_sample(s, out);
}

/// Appends the `samples` field of one sample.
fn write_sample(s: &Sample, out: &mut Vec<u8>) {
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

#[cfg(test)]
mod tests {

    use proptest::prelude::*;
    use prost::Message as _;

    use super::*;
    use crate::metrics::series::{Series, is_stale, stale_nan};

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

    /// The request prost writes for the same samples: one `TimeSeries` each.
    fn with_prost(batch: &[Sample]) -> WriteRequest {
        let timeseries = batch
            .iter()
            .map(|s| TimeSeries {
                labels: s
                    .series
                    .labels()
                    .map(|(n, v)| Label {
                        name: n.to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
                samples: vec![ProtoSample {
                    value: s.value,
                    timestamp: s.timestamp_ms,
                }],
            })
            .collect();
        WriteRequest { timeseries }
    }

    /// `batch` in chunks of at most `per_chunk` samples.
    fn chunked(batch: &[Sample], per_chunk: usize) -> Vec<Chunk> {
        let mut out = Vec::new();
        chunks(batch, per_chunk, &mut Stage::default(), &mut out).unwrap();
        out
    }

    /// The protobuf of the request of `chunks`, decompressed.
    fn raw(chunks: &[Chunk]) -> Vec<u8> {
        let body = request_body(chunks);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        assert_eq!(snap::raw::decompress_len(&body).unwrap(), raw.len());
        raw
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
        let bytes = raw(&chunked(&batch, 100));
        let prost_bytes = with_prost(&batch).encode_to_vec();
        assert_eq!(bytes, prost_bytes, "byte for byte what prost writes");
        let back = WriteRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.timeseries.len(), 8, "one TimeSeries per sample");
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
        let value = |i: usize| back.timeseries[i].samples[0].value;
        assert!(value(3).is_nan() && !is_stale(value(3)));
        assert!(is_stale(value(5)), "the marker's bits survive");
        let sums: Vec<(i64, f64)> = [2, 6, 7]
            .iter()
            .map(|&i| (back.timeseries[i].samples[0].timestamp, value(i)))
            .collect();
        assert_eq!(
            sums,
            [(1_700_000_000_000, f64::INFINITY), (0, 0.0), (-5, -0.25)],
            "in push order; zeros left out on the wire decode as zeros"
        );
    }

    #[test]
    fn chunks_hold_at_most_their_share_and_any_run_of_them_is_one_request() {
        let pool: Vec<Series> = (0..7)
            .map(|i| series(&[("__name__", "m"), ("pod", &format!("p{i}"))]))
            .collect();
        let batch: Vec<Sample> = (0..2000)
            .map(|i| sample(&pool[i % 7], 1_700_000_000_000 + i as i64, i as f64))
            .collect();
        let chunks = chunked(&batch, 300);
        let sizes: Vec<usize> = chunks.iter().map(Chunk::samples).collect();
        assert_eq!(sizes, [300, 300, 300, 300, 300, 300, 200]);
        assert_eq!(chunks[1].newest_ms(), 1_700_000_000_599);
        assert_eq!(raw(&chunks), with_prost(&batch).encode_to_vec());
        assert_eq!(
            raw(&chunks[2..4]),
            with_prost(&batch[600..1200]).encode_to_vec(),
            "a request of some chunks is those samples"
        );
        let body = request_body(&chunks);
        let whole = with_prost(&batch).encode_to_vec();
        assert!(
            body.len() * 4 < whole.len(),
            "{} of {}",
            body.len(),
            whole.len()
        );
        assert!(chunked(&[], 10).is_empty());
    }

    #[test]
    fn a_body_of_many_blocks_is_one_snappy_body() {
        // ~1 MB of protobuf: many 64 KiB blocks, samples cut at block boundaries, and
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
        let mut stage = Stage::default();
        let mut out = Vec::new();
        chunks(&batch, 10_000, &mut stage, &mut out).unwrap();
        let bytes = raw(&out);
        assert!(bytes.len() > 10 * BLOCK, "{} bytes", bytes.len());
        assert_eq!(
            WriteRequest::decode(bytes.as_slice()).unwrap(),
            with_prost(&batch)
        );
        // The same as compressing the protobuf whole.
        let whole = snap::raw::Encoder::new().compress_vec(&bytes).unwrap();
        assert_eq!(request_body(&out), whole);
        // What is staged stays about a block once the big series is gone.
        assert!(
            stage.raw.capacity() <= 4 * BLOCK,
            "{}",
            stage.raw.capacity()
        );
        let small: Vec<Sample> = batch
            .iter()
            .filter(|s| s.series.record().encoded_len() < 1000)
            .cloned()
            .collect();
        let mut stage = Stage::default();
        out.clear();
        chunks(&small, 10_000, &mut stage, &mut out).unwrap();
        assert_eq!(raw(&out), with_prost(&small).encode_to_vec());
        assert!(stage.raw.capacity() < 3 * BLOCK, "{}", stage.raw.capacity());
    }

    proptest! {
        #[test]
        fn any_batch_decodes_to_what_was_encoded(
            picks in proptest::collection::vec((0usize..6, any::<i64>(), any::<f64>()), 0..60),
            per_chunk in 1usize..20,
        ) {
            let pool: Vec<Series> = (0..6)
                .map(|i| {
                    let v = format!("v{i}é");
                    series(&[("__name__", "m"), ("a", &v), ("z", "🙂")])
                })
                .collect();
            let batch: Vec<Sample> = picks.iter().map(|&(s, t, v)| sample(&pool[s], t, v)).collect();
            let chunks = chunked(&batch, per_chunk);
            prop_assert!(chunks.iter().all(|c| (1..=per_chunk).contains(&c.samples())));
            prop_assert_eq!(chunks.iter().map(Chunk::samples).sum::<usize>(), batch.len());
            let bytes = raw(&chunks);
            prop_assert_eq!(&bytes, &with_prost(&batch).encode_to_vec());
            let back = WriteRequest::decode(bytes.as_slice()).unwrap();
            prop_assert_eq!(bits(&back), bits(&with_prost(&batch)));
        }
    }
}
