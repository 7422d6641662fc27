//! `rw-counter`: a count-only Prometheus remote-write 1.0 receiver for `bench/metrics.sh`.
//!
//! ```text
//! rw-counter [--port P]
//! ```
//!
//! Listens on `127.0.0.1:P` (default: a free port), prints its write URL
//! (`http://127.0.0.1:P/api/v1/write`) on the first line of stdout, and answers every
//! `POST` with 204 after decoding its body (snappy block format, protobuf `WriteRequest`,
//! as [`kubeship_tests::decode`] does): a body that does not decode is answered 400 and
//! counted as bad. `GET /stats` answers a JSON object: `requests`, `bad_requests`,
//! `bytes` (bodies as sent) and `raw_bytes` (decompressed), `samples`, `stale_samples`
//! (Prometheus staleness markers), `series` (distinct label sets), `bench_samples`,
//! `bench_stale_samples` and `bench_series` (those of metric names starting with `bench_`,
//! the benchmark's targets),
//! `other` (samples per metric name for the rest, e.g. `up` and `scrape_*`),
//! `label_names` (the label names of the first `bench_` series, sorted as sent),
//! `content_encodings` and `user_agents` (requests per header value), `first_s` and
//! `last_s` (seconds since start of the first and latest request), `min_ts`/`max_ts`
//! (sample timestamps, ms). Runs until killed.

#![forbid(unsafe_code)]

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kubeship_tests::{STALE_NAN_BITS, decode, read_head, read_request_body};

#[derive(Default)]
struct Counts {
    requests: u64,
    bad_requests: u64,
    bytes: u64,
    raw_bytes: u64,
    samples: u64,
    stale_samples: u64,
    bench_samples: u64,
    bench_stale_samples: u64,
    series: HashSet<u64>,
    bench_series: HashSet<u64>,
    other: BTreeMap<String, u64>,
    label_names: Vec<String>,
    content_encodings: BTreeMap<String, u64>,
    user_agents: BTreeMap<String, u64>,
    first_s: Option<f64>,
    last_s: f64,
    min_ts: Option<i64>,
    max_ts: Option<i64>,
}

impl Counts {
    fn json(&self) -> String {
        serde_json::json!({
            "requests": self.requests,
            "bad_requests": self.bad_requests,
            "bytes": self.bytes,
            "raw_bytes": self.raw_bytes,
            "samples": self.samples,
            "stale_samples": self.stale_samples,
            "series": self.series.len(),
            "bench_samples": self.bench_samples,
            "bench_stale_samples": self.bench_stale_samples,
            "bench_series": self.bench_series.len(),
            "other": self.other,
            "label_names": self.label_names,
            "content_encodings": self.content_encodings,
            "user_agents": self.user_agents,
            "first_s": self.first_s,
            "last_s": self.last_s,
            "min_ts": self.min_ts,
            "max_ts": self.max_ts,
        })
        .to_string()
    }
}

struct Shared {
    counts: Mutex<Counts>,
    start: Instant,
}

fn serve(conn: TcpStream, shared: &Shared) {
    let _ = conn.set_nodelay(true);
    let Ok(clone) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(256 << 10, clone);
    let mut writer = conn;
    while let Ok(Some(head)) = read_head(&mut reader) {
        let Ok(body) = read_request_body(&mut reader, &head) else {
            return;
        };
        if head.method().eq_ignore_ascii_case("GET") {
            let out = shared.counts.lock().unwrap().json();
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{out}",
                out.len()
            );
            if writer.write_all(answer.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        let decoded = decode(&body);
        let raw_len = snap::raw::decompress_len(&body).unwrap_or(0);
        let now = shared.start.elapsed().as_secs_f64();
        let ok = decoded.is_ok();
        {
            let mut c = shared.counts.lock().unwrap();
            c.requests += 1;
            c.bytes += body.len() as u64;
            c.raw_bytes += raw_len as u64;
            c.first_s.get_or_insert(now);
            c.last_s = now;
            let enc = head.get("content-encoding").unwrap_or("-").to_owned();
            *c.content_encodings.entry(enc).or_default() += 1;
            let ua = head.get("user-agent").unwrap_or("-").to_owned();
            *c.user_agents.entry(ua).or_default() += 1;
            match decoded {
                Err(_) => c.bad_requests += 1,
                Ok(req) => {
                    for ts in &req.timeseries {
                        let mut h = DefaultHasher::new();
                        for l in &ts.labels {
                            l.name.hash(&mut h);
                            l.value.hash(&mut h);
                        }
                        let key = h.finish();
                        let name = ts
                            .labels
                            .iter()
                            .find(|l| l.name == "__name__")
                            .map_or("", |l| l.value.as_str());
                        let n = ts.samples.len() as u64;
                        c.samples += n;
                        c.series.insert(key);
                        let bench = name.starts_with("bench_");
                        if bench {
                            c.bench_samples += n;
                            c.bench_series.insert(key);
                            if c.label_names.is_empty() {
                                c.label_names = ts.labels.iter().map(|l| l.name.clone()).collect();
                            }
                        } else {
                            *c.other.entry(name.to_owned()).or_default() += n;
                        }
                        for s in &ts.samples {
                            if s.value.to_bits() == STALE_NAN_BITS {
                                c.stale_samples += 1;
                                c.bench_stale_samples += u64::from(bench);
                            }
                            c.min_ts = Some(c.min_ts.map_or(s.timestamp, |m| m.min(s.timestamp)));
                            c.max_ts = Some(c.max_ts.map_or(s.timestamp, |m| m.max(s.timestamp)));
                        }
                    }
                }
            }
        }
        let answer: &[u8] = if ok {
            b"HTTP/1.1 204 No Content\r\n\r\n"
        } else {
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
        };
        if writer.write_all(answer).is_err() {
            return;
        }
    }
}

fn main() -> ExitCode {
    let mut port = 0u16;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--port", Some(p)) if p.parse::<u16>().is_ok() => port = p.parse().unwrap_or(0),
            _ => {
                eprintln!("usage: rw-counter [--port P]");
                return ExitCode::from(2);
            }
        }
    }
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rw-counter: bind 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().expect("local addr");
    println!("http://{addr}/api/v1/write");
    let shared = Arc::new(Shared {
        counts: Mutex::default(),
        start: Instant::now(),
    });
    for conn in listener.incoming().flatten() {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || serve(conn, &shared));
    }
    ExitCode::SUCCESS
}
