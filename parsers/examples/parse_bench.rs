//! Throughput check for the per-line hot path.
//!
//! Generates 1M synthetic CRI lines of about 200 bytes in memory (1 in 100
//! split into a `P` + `F` pair, stdout and stderr mixed), then times
//! `parse_line` + `PartialMerger::push` over them. Also times the same
//! content as docker json-file lines and CRI through a Java `Grouper`.
//!
//! Run with: `cargo run --release -p kubeship-parsers --example parse_bench`

use std::hint::black_box;
use std::time::{Duration, Instant};

use kubeship_parsers::{Format, Grouper, PartialMerger, Rule, parse_line, time};

const LINES: usize = 1_000_000;
const MAX_BYTES: usize = 256 * 1024;

fn main() {
    let cri = generate(Format::Cri);
    let docker = generate(Format::Docker);
    let avg = cri.iter().map(|l| l.len()).sum::<usize>() / cri.len();
    println!("{} CRI lines, {avg} bytes on average", cri.len());

    report("cri parse_line + PartialMerger", &cri, |lines| {
        run(Format::Cri, lines, None)
    });
    report("docker parse_line + PartialMerger", &docker, |lines| {
        run(Format::Docker, lines, None)
    });
    report("cri + PartialMerger + Grouper(Java)", &cri, |lines| {
        run(
            Format::Cri,
            lines,
            Some(Grouper::new(Rule::Java, MAX_BYTES, 1000)),
        )
    });
}

/// Parses and merges every line; returns a checksum so nothing is optimized away.
fn run(format: Format, lines: &[&[u8]], mut grouper: Option<Grouper>) -> u64 {
    let mut merger = PartialMerger::new(MAX_BYTES);
    let mut sum = 0u64;
    for (i, line) in lines.iter().enumerate() {
        let parsed = parse_line(format, line).expect("synthetic line parses");
        merger.push(parsed, i as u64, |rec| match grouper.as_mut() {
            Some(g) => g.push(rec, 0, |r| sum += r.message.len() as u64),
            None => sum += rec.message.len() as u64 + rec.tag,
        });
    }
    merger.flush(|rec| sum += rec.message.len() as u64);
    sum
}

fn report(name: &str, lines: &[&[u8]], f: impl Fn(&[&[u8]]) -> u64) {
    black_box(f(black_box(&lines[..lines.len() / 10]))); // warm-up
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        black_box(f(black_box(lines)));
        best = best.min(start.elapsed());
    }
    let secs = best.as_secs_f64();
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    println!(
        "{name:<38} {:>6.2} M lines/s  {:>6.1} ns/line  {:>6.0} MB/s  (best of 3)",
        lines.len() as f64 / secs / 1e6,
        secs * 1e9 / lines.len() as f64,
        bytes as f64 / secs / 1e6,
    );
}

/// Builds `LINES` lines in one buffer and returns them without their `\n`.
fn generate(format: Format) -> Vec<&'static [u8]> {
    let mut buf = Vec::with_capacity(LINES * 240);
    let mut ends = Vec::with_capacity(LINES);
    let mut ts = Vec::with_capacity(32);
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut n = 0;
    while n < LINES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ts.clear();
        time::format_rfc3339_nanos(1_767_323_045_000_000_000 + n as i64 * 1_000_347, &mut ts);
        let stream = if x.is_multiple_of(5) {
            "stderr"
        } else {
            "stdout"
        };
        let msg = format!(
            "{{\"level\":\"info\",\"ts\":{},\"caller\":\"server/handler.go:{}\",\"msg\":\"request served\",\"method\":\"GET\",\"path\":\"/api/v1/items/{}\",\"status\":200,\"latency_ms\":{}}}",
            x % 1_000_000,
            x % 997,
            x % 100_000,
            x % 250
        );
        let pieces: Vec<(&str, bool)> = if x.is_multiple_of(100) && n + 1 < LINES {
            let (a, b) = msg.split_at(60);
            vec![(a, true), (b, false)]
        } else {
            vec![(&msg, false)]
        };
        for (text, partial) in pieces {
            match format {
                Format::Cri => {
                    buf.extend_from_slice(&ts);
                    let tag = if partial { "P" } else { "F" };
                    buf.extend_from_slice(format!(" {stream} {tag} {text}").as_bytes());
                }
                Format::Docker => {
                    let log = serde_json::to_string(&format!(
                        "{text}{}",
                        if partial { "" } else { "\n" }
                    ))
                    .unwrap();
                    let ts = std::str::from_utf8(&ts).unwrap();
                    buf.extend_from_slice(
                        format!(r#"{{"log":{log},"stream":"{stream}","time":"{ts}"}}"#).as_bytes(),
                    );
                }
            }
            buf.push(b'\n');
            ends.push(buf.len() - 1);
            n += 1;
        }
    }
    let buf: &'static [u8] = Vec::leak(buf);
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let line = &buf[start..end];
            start = end + 1;
            line
        })
        .collect()
}
