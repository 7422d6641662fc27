//! `metrics-targets`: loopback scrape targets for `bench/metrics.sh`, all in one process on
//! one thread, so that their CPU can be measured apart from the agent's.
//!
//! ```text
//! metrics-targets [--targets N] [--series S] [--huge-bytes B] [--ip IP]
//! ```
//!
//! Listens on `N` ports of `IP` (default 200 ports of 127.0.0.1), each a target whose
//! body (text format 0.0.4, `# HELP` and `# TYPE` included, ~90 bytes a sample) holds `S`
//! series (default 500): about 40 % counters in families of 50, 40 % histograms (12
//! buckets, `_sum`, `_count`), the rest gauges. Every answer has new values: a target's
//! n-th scrape gives counters and histogram buckets that grew with n (buckets stay
//! cumulative) and gauges that moved. With `--huge-bytes B` (> 0) one more port streams a
//! body of `B` bytes of distinct series, chunked, as fast as the client reads it (a target
//! past any sane body limit; the client may stop reading at its limit).
//!
//! Prints on stdout, one a line: `control URL`, `target URL` (N lines), `huge URL` (with
//! `--huge-bytes`), then `ready`. `GET <control>/stats` answers a JSON object: `scrapes`
//! (bodies of the N targets written whole), `samples` (their samples: scrapes x S), `bytes`,
//! `series_per_target`, `body_bytes` (the latest body's size), `huge_requests`,
//! `huge_bytes` (bytes of huge bodies written), `huge_complete` (huge bodies written whole).
//! Runs until killed.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const USAGE: &str = "usage: metrics-targets [--targets N] [--series S] [--huge-bytes B] [--ip IP]";

/// Buckets of every histogram (Prometheus's default buckets, +Inf last).
const BUCKETS: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];
/// Series of one histogram label set: the buckets, `_sum` and `_count`.
const HISTOGRAM_SERIES: usize = BUCKETS.len() + 2;
/// Label sets per counter or gauge family.
const FAMILY_SIZE: usize = 50;

struct Args {
    targets: usize,
    series: usize,
    huge_bytes: u64,
    ip: String,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        targets: 200,
        series: 500,
        huge_bytes: 0,
        ip: "127.0.0.1".to_owned(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--targets" => a.targets = value()?.parse().map_err(|e| format!("--targets: {e}"))?,
            "--series" => a.series = value()?.parse().map_err(|e| format!("--series: {e}"))?,
            "--huge-bytes" => {
                a.huge_bytes = value()?.parse().map_err(|e| format!("--huge-bytes: {e}"))?;
            }
            "--ip" => a.ip = value()?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.targets == 0 || a.series == 0 {
        return Err("--targets and --series must be at least 1".to_owned());
    }
    Ok(a)
}

/// How a series' value follows the scrape count `n`.
#[derive(Clone, Copy)]
enum Value {
    /// A counter: `n * step + base`.
    Count { step: u64, base: u64 },
    /// A gauge that moves every scrape.
    Gauge { seed: u64 },
    /// A histogram's `_sum`: grows by `per` each scrape.
    Sum { per: f64 },
}

impl Value {
    fn write(self, n: u64, out: &mut String) {
        match self {
            Value::Count { step, base } => {
                let _ = write!(out, "{}", n * step + base);
            }
            Value::Gauge { seed } => {
                let x = (n.wrapping_mul(2_654_435_761).wrapping_add(seed * 40_503)) % 100_000;
                let _ = write!(out, "{}", x as f64 / 16.0);
            }
            Value::Sum { per } => {
                let _ = write!(out, "{}", n as f64 * per);
            }
        }
    }
}

/// One target's body: static text with a value after each piece.
struct Template {
    /// (text before the value: header lines, the series, a space; the value).
    pieces: Vec<(String, Value)>,
    series: usize,
}

impl Template {
    /// `series` series of counters, histograms and gauges; `target` varies the names of
    /// the label values a little, as real targets differ.
    fn new(series: usize, target: usize) -> Template {
        let hist_sets = series * 2 / 5 / HISTOGRAM_SERIES;
        let counters = series * 2 / 5;
        let gauges = series - hist_sets * HISTOGRAM_SERIES - counters;
        let mut pieces = Vec::with_capacity(series);
        // Histograms: one family, `handler` varies.
        let h = "bench_http_request_duration_seconds";
        for j in 0..hist_sets {
            let mut head = String::new();
            if j == 0 {
                head = format!("# HELP {h} Latency of HTTP requests.\n# TYPE {h} histogram\n");
            }
            let labels = format!("handler=\"/api/v1/resource_{j}\",method=\"GET\"");
            for (i, le) in BUCKETS.iter().enumerate() {
                let step = (i as u64 + 1) * 3;
                pieces.push((
                    format!("{head}{h}_bucket{{{labels},le=\"{le}\"}} "),
                    Value::Count {
                        step,
                        base: j as u64,
                    },
                ));
                head.clear();
            }
            pieces.push((
                format!("{h}_sum{{{labels}}} "),
                Value::Sum {
                    per: 0.0125 * (j + 1) as f64,
                },
            ));
            pieces.push((
                format!("{h}_count{{{labels}}} "),
                Value::Count {
                    step: BUCKETS.len() as u64 * 3,
                    base: j as u64,
                },
            ));
        }
        const COUNTERS: [(&str, &str); 4] = [
            ("bench_http_requests_total", "HTTP requests handled."),
            ("bench_rpc_client_calls_total", "RPC calls made."),
            ("bench_network_transmit_bytes_total", "Bytes sent."),
            ("bench_jobs_processed_total", "Background jobs processed."),
        ];
        for k in 0..counters {
            let f = k / FAMILY_SIZE;
            let (base, help) = COUNTERS[f % COUNTERS.len()];
            let name = family_name(base, f / COUNTERS.len());
            let head = if k % FAMILY_SIZE == 0 {
                format!("# HELP {name} {help}\n# TYPE {name} counter\n")
            } else {
                String::new()
            };
            let codes = ["200", "201", "204", "400", "404", "500"];
            let labels = format!(
                "code=\"{}\",instance_id=\"pod-{target}-{}\",path=\"/v1/items/{}\"",
                codes[k % codes.len()],
                k % 3,
                k % FAMILY_SIZE
            );
            pieces.push((
                format!("{head}{name}{{{labels}}} "),
                Value::Count {
                    step: (k % 13 + 1) as u64,
                    base: k as u64 * 7,
                },
            ));
        }
        const GAUGES: [(&str, &str); 3] = [
            ("bench_queue_depth", "Items waiting in a queue."),
            ("bench_memory_bytes", "Memory in use by area."),
            ("bench_temperature_celsius", "A sensor's reading."),
        ];
        for k in 0..gauges {
            let f = k / FAMILY_SIZE;
            let (base, help) = GAUGES[f % GAUGES.len()];
            let name = family_name(base, f / GAUGES.len());
            let head = if k % FAMILY_SIZE == 0 {
                format!("# HELP {name} {help}\n# TYPE {name} gauge\n")
            } else {
                String::new()
            };
            pieces.push((
                format!(
                    "{head}{name}{{area=\"area_{}\",shard=\"{}\"}} ",
                    k % FAMILY_SIZE,
                    k % 4
                ),
                Value::Gauge { seed: k as u64 },
            ));
        }
        assert_eq!(pieces.len(), series);
        Template { pieces, series }
    }

    /// The body of scrape `n`.
    fn body(&self, n: u64, out: &mut String) {
        out.clear();
        for (text, value) in &self.pieces {
            out.push_str(text);
            value.write(n, out);
            out.push('\n');
        }
    }
}

/// `base` for the first family of that base name, `base` with a number before `_total`
/// (or at the end) for the next ones.
fn family_name(base: &str, k: usize) -> String {
    if k == 0 {
        return base.to_owned();
    }
    match base.strip_suffix("_total") {
        Some(stem) => format!("{stem}_{k}_total"),
        None => format!("{base}_{k}"),
    }
}

#[derive(Default)]
struct Stats {
    scrapes: AtomicU64,
    samples: AtomicU64,
    bytes: AtomicU64,
    body_bytes: AtomicU64,
    huge_requests: AtomicU64,
    huge_bytes: AtomicU64,
    huge_complete: AtomicU64,
}

impl Stats {
    fn json(&self, series: usize) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "scrapes": g(&self.scrapes),
            "samples": g(&self.samples),
            "bytes": g(&self.bytes),
            "series_per_target": series,
            "body_bytes": g(&self.body_bytes),
            "huge_requests": g(&self.huge_requests),
            "huge_bytes": g(&self.huge_bytes),
            "huge_complete": g(&self.huge_complete),
        })
        .to_string()
    }
}

/// Reads one request head; `Ok(false)` when the connection ended first.
async fn read_head(r: &mut BufReader<TcpStream>, line: &mut String) -> std::io::Result<bool> {
    loop {
        line.clear();
        if r.read_line(line).await? == 0 {
            return Ok(false);
        }
        if line == "\r\n" || line == "\n" {
            return Ok(true);
        }
    }
}

/// One target: its body's template and how often it was scraped.
struct Target {
    template: Template,
    scrapes: AtomicU64,
}

async fn serve_target(conn: TcpStream, target: Arc<Target>, stats: Arc<Stats>) {
    let template = &target.template;
    let _ = conn.set_nodelay(true);
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    let mut body = String::new();
    let mut out = Vec::new();
    while let Ok(true) = read_head(&mut r, &mut line).await {
        let n = target.scrapes.fetch_add(1, Ordering::Relaxed) + 1;
        template.body(n, &mut body);
        out.clear();
        let _ = std::io::Write::write_fmt(
            &mut out,
            format_args!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            ),
        );
        out.extend_from_slice(body.as_bytes());
        if r.get_mut().write_all(&out).await.is_err() {
            return;
        }
        stats.scrapes.fetch_add(1, Ordering::Relaxed);
        stats
            .samples
            .fetch_add(template.series as u64, Ordering::Relaxed);
        stats.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        stats.body_bytes.store(body.len() as u64, Ordering::Relaxed);
    }
}

async fn serve_huge(conn: TcpStream, total: u64, stats: Arc<Stats>) {
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    let mut series = 0u64;
    let mut chunk = String::with_capacity(70 << 10);
    while let Ok(true) = read_head(&mut r, &mut line).await {
        stats.huge_requests.fetch_add(1, Ordering::Relaxed);
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                    Transfer-Encoding: chunked\r\n\r\n";
        if r.get_mut().write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let mut written = 0u64;
        while written < total {
            chunk.clear();
            while chunk.len() < 64 << 10 && written + (chunk.len() as u64) < total {
                series += 1;
                let _ = writeln!(chunk, "bench_huge_series{{i=\"{series:012}\"}} {series}");
            }
            let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
            if r.get_mut().write_all(framed.as_bytes()).await.is_err() {
                return; // the client stopped reading (its body limit)
            }
            written += chunk.len() as u64;
            stats
                .huge_bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        if r.get_mut().write_all(b"0\r\n\r\n").await.is_err() {
            return;
        }
        stats.huge_complete.fetch_add(1, Ordering::Relaxed);
    }
}

async fn serve_control(conn: TcpStream, stats: Arc<Stats>, series: usize) {
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    if let Ok(true) = read_head(&mut r, &mut line).await {
        let body = stats.json(series);
        let out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = r.get_mut().write_all(out.as_bytes()).await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("metrics-targets: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let stats = Arc::new(Stats::default());
    let bind = |ip: String| async move {
        TcpListener::bind((ip.as_str(), 0)).await.map_err(|e| {
            eprintln!("metrics-targets: bind {ip}: {e}");
            ExitCode::FAILURE
        })
    };
    let mut lines = Vec::new();
    let control = match bind(args.ip.clone()).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    lines.push(format!(
        "control http://{}",
        control.local_addr().expect("addr")
    ));
    {
        let stats = Arc::clone(&stats);
        let series = args.series;
        tokio::spawn(async move {
            while let Ok((c, _)) = control.accept().await {
                tokio::spawn(serve_control(c, Arc::clone(&stats), series));
            }
        });
    }
    for t in 0..args.targets {
        let l = match bind(args.ip.clone()).await {
            Ok(l) => l,
            Err(code) => return code,
        };
        lines.push(format!(
            "target http://{}/metrics",
            l.local_addr().expect("addr")
        ));
        let target = Arc::new(Target {
            template: Template::new(args.series, t),
            scrapes: AtomicU64::new(0),
        });
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            while let Ok((c, _)) = l.accept().await {
                tokio::spawn(serve_target(c, Arc::clone(&target), Arc::clone(&stats)));
            }
        });
    }
    if args.huge_bytes > 0 {
        let l = match bind(args.ip.clone()).await {
            Ok(l) => l,
            Err(code) => return code,
        };
        lines.push(format!(
            "huge http://{}/metrics",
            l.local_addr().expect("addr")
        ));
        let stats = Arc::clone(&stats);
        let total = args.huge_bytes;
        tokio::spawn(async move {
            while let Ok((c, _)) = l.accept().await {
                tokio::spawn(serve_huge(c, total, Arc::clone(&stats)));
            }
        });
    }
    lines.push("ready".to_owned());
    println!("{}", lines.join("\n"));
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}
