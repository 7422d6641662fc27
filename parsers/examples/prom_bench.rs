//! Throughput of `kubeship_parsers::prom` against the `prometheus-parse`
//! crate (0.2.5) on the same generated bodies, in the Prometheus text
//! format 0.0.4:
//!
//! * `node`: a node_exporter-like body, 972 series in 214 families with
//!   `# HELP` / `# TYPE` lines, labels, a summary, Go-style float values;
//! * `histogram`: histogram-heavy, 240 histograms of 12 to 15 lines
//!   (`_bucket` with `le`, `_sum`, `_count`);
//! * `node-16MiB`: the node body repeated to 16 MiB (one large scrape).
//!
//! Both parsers must agree before anything is timed: the same number of
//! values and the same checksum of their bits (prometheus-parse folds a
//! histogram's buckets and a summary's quantiles into one sample; each of
//! their values counts). The kubeship row decodes every sample's labels
//! too (prometheus-parse always builds them); the `values only` row skips
//! that, as a caller with a series cache would for known series.
//! prometheus-parse is fed the body as owned lines, as its API takes them
//! (`impl Iterator<Item = io::Result<String>>`); that copy is part of its
//! cost.
//!
//! Each row is the median of 7 rounds of about 0.3 s (min and max beside
//! it) of on-CPU time (`/proc/thread-self/schedstat`: time spent waiting
//! for a CPU on a shared machine is left out); MB/s and samples/s follow
//! from it; the last column is the median wall-clock time. Run it several
//! times on a shared machine.
//!
//! Run with: `cargo run --release -p kubeship-parsers --example prom_bench`
//!
//! Allocations are counted outside the program (no counting allocator: the
//! workspace forbids `unsafe`): `bench/prom.sh` runs
//! `prom_bench --once PARSER BODY PASSES` under `valgrind --tool=dhat` for
//! two numbers of passes and divides the difference in blocks by the
//! samples parsed.

use std::hint::black_box;
use std::io;
use std::time::Instant;

use kubeship_parsers::prom::{Format, Limits, Parser};

const ROUNDS: usize = 7;
const ROUND_SECS: f64 = 0.3;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--once") {
        return once(&args[1..]);
    }
    let bodies = bodies();
    for (name, body) in &bodies {
        let ours = kubeship(body, true);
        let theirs = prometheus_parse(body);
        assert_eq!(ours.values, theirs.values, "{name}: value counts differ");
        assert_eq!(ours.bits, theirs.bits, "{name}: value checksums differ");
        println!(
            "{name}: {} bytes, {} lines, {} samples (checksum {:016x}, equal for both)",
            body.len(),
            body.iter().filter(|&&b| b == b'\n').count(),
            ours.values,
            ours.bits
        );
    }
    println!();
    println!(
        "{:<12} {:<30} {:>10} {:>15} {:>8} {:>8} {:>10}",
        "body", "parser", "ns/sample", "(min-max)", "MB/s", "Msamp/s", "wall ns/s."
    );
    for (name, body) in &bodies {
        let samples = kubeship(body, true).values;
        row(name, "kubeship prom", body, samples, || {
            kubeship(body, true)
        });
        row(name, "kubeship prom (values only)", body, samples, || {
            kubeship(body, false)
        });
        row(name, "prometheus-parse 0.2.5", body, samples, || {
            prometheus_parse(body)
        });
    }
}

/// `--once PARSER BODY PASSES`: parse that many times, print the samples.
fn once(args: &[String]) {
    let [parser, body, passes] = args else {
        panic!("usage: prom_bench --once kubeship|crate node|histogram|node-16MiB PASSES");
    };
    let passes: usize = passes.parse().expect("PASSES is a number");
    let bodies = bodies();
    let (_, body) = bodies
        .iter()
        .find(|(n, _)| n == body)
        .expect("body is node, histogram or node-16MiB");
    let mut samples = 0;
    for _ in 0..passes {
        samples += match parser.as_str() {
            "kubeship" => black_box(kubeship(black_box(body), true)).values,
            "crate" => black_box(prometheus_parse(black_box(body))).values,
            _ => panic!("parser is kubeship or crate"),
        };
    }
    println!("samples {samples}");
}

#[derive(Clone, Copy, Debug, Default)]
struct Sum {
    values: u64,
    /// Wrapping sum of the values' bits: independent of order.
    bits: u64,
    label_bytes: u64,
}

impl Sum {
    fn add(&mut self, v: f64) {
        self.values += 1;
        self.bits = self.bits.wrapping_add(v.to_bits());
    }
}

fn kubeship(body: &[u8], labels: bool) -> Sum {
    let mut sum = Sum::default();
    for item in Parser::new(body, Format::Text, Limits::default()) {
        let sample = item.expect("generated bodies parse");
        sum.add(sample.value);
        if labels {
            for l in sample.labels.iter() {
                sum.label_bytes += (l.name.len() + l.value.len()) as u64;
            }
        }
    }
    sum
}

fn prometheus_parse(body: &[u8]) -> Sum {
    use prometheus_parse::{Scrape, Value};
    let text = std::str::from_utf8(body).expect("generated bodies are UTF-8");
    let lines = text.lines().map(|l| Ok::<_, io::Error>(l.to_owned()));
    let scrape = Scrape::parse(lines).expect("no I/O errors");
    let mut sum = Sum::default();
    for s in &scrape.samples {
        match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => sum.add(*v),
            Value::Histogram(buckets) => buckets.iter().for_each(|b| sum.add(b.count)),
            Value::Summary(quantiles) => quantiles.iter().for_each(|q| sum.add(q.count)),
        }
        for (k, v) in s.labels.iter() {
            sum.label_bytes += (k.len() + v.len()) as u64;
        }
    }
    sum
}

fn row(body_name: &str, parser: &str, body: &[u8], samples: u64, f: impl Fn() -> Sum) {
    // Calibrate: passes per round of about ROUND_SECS.
    let start = Instant::now();
    black_box(f());
    let once = start.elapsed().as_secs_f64().max(1e-7);
    let passes = ((ROUND_SECS / once) as usize).max(1);
    let per_sample = passes as f64 * samples as f64;
    let (mut wall, mut cpu): (Vec<f64>, Vec<f64>) = (0..ROUNDS)
        .map(|_| {
            let (start, cpu_start) = (Instant::now(), cpu_ns());
            for _ in 0..passes {
                black_box(f());
            }
            let wall = start.elapsed().as_secs_f64() * 1e9 / per_sample;
            (wall, (cpu_ns() - cpu_start) as f64 / per_sample)
        })
        .unzip();
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    let median = cpu[ROUNDS / 2];
    let bytes_per_sample = body.len() as f64 / samples as f64;
    println!(
        "{body_name:<12} {parser:<30} {median:>10.1} {:>15} {:>8.0} {:>8.2} {:>10.1}",
        format!("({:.1}-{:.1})", cpu[0], cpu[ROUNDS - 1]),
        bytes_per_sample / median * 1e3,
        1e3 / median,
        wall[ROUNDS / 2],
    );
}

/// Nanoseconds this thread has run on a CPU (`/proc/thread-self/schedstat`,
/// first field): on a shared machine, time spent waiting for a CPU is not
/// counted, as it is in wall-clock time.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("/proc/thread-self/schedstat is readable (Linux)")
}

fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let node = node_body();
    let mut big = Vec::with_capacity(16 << 20);
    while big.len() + node.len() <= 16 << 20 {
        big.extend_from_slice(&node);
    }
    vec![
        ("node", node),
        ("histogram", histogram_body()),
        ("node-16MiB", big),
    ]
}

/// Deterministic pseudo-random numbers (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value as node_exporter's Go client writes one (`%g`-like:
    /// integers, decimals, exponents for large and tiny numbers).
    fn value(&mut self) -> String {
        match self.next() % 6 {
            0 => "0".to_owned(),
            1 => (self.next() % 100_000).to_string(),
            2 => format!("{}", (self.next() % 10_000_000) as f64 / 1000.0),
            3 => go_exp((self.next() % 1_000_000_000_000) as f64 * 37.0),
            4 => go_exp((self.next() % 1000) as f64 * 1.3e-7 + 1e-9),
            _ => format!("{}", (self.next() % 1_000_000) as f64 / 64.0),
        }
    }
}

/// `1.2345e+09` rather than Rust's `1.2345e9`.
fn go_exp(v: f64) -> String {
    let s = format!("{v:e}");
    let (m, e) = s.split_once('e').expect("exponent");
    let e: i32 = e.parse().expect("exponent");
    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

struct Body {
    out: String,
    rng: Rng,
}

impl Body {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        self.out += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)]) {
        let value = self.rng.value();
        self.sample_value(name, labels, &value);
    }

    fn sample_value(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.out += name;
        if !labels.is_empty() {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            self.out += &format!("{{{}}}", l.join(","));
        }
        self.out += &format!(" {value}\n");
    }

    /// One family per name, each with a sample per label set.
    fn families(&mut self, names: &[&str], kind: &str, sets: &[Vec<(&str, &str)>]) {
        for name in names {
            self.family(name, kind, &format!("Value of {name}."));
            for set in sets {
                self.sample(name, set);
            }
        }
    }
}

fn node_body() -> Vec<u8> {
    let mut b = Body {
        out: String::new(),
        rng: Rng(0x2545_F491_4F6C_DD1D),
    };
    let none = vec![vec![]];
    b.family(
        "go_gc_duration_seconds",
        "summary",
        "A summary of the pause duration of garbage collection cycles.",
    );
    for q in ["0", "0.25", "0.5", "0.75", "1"] {
        b.sample("go_gc_duration_seconds", &[("quantile", q)]);
    }
    b.sample("go_gc_duration_seconds_sum", &[]);
    b.sample("go_gc_duration_seconds_count", &[]);
    let go: Vec<String> = (0..28)
        .map(|i| format!("go_memstats_stat_{i}_bytes"))
        .collect();
    let go: Vec<&str> = go.iter().map(String::as_str).collect();
    b.families(&go, "gauge", &none);
    b.family("go_info", "gauge", "Information about the Go environment.");
    b.sample_value("go_info", &[("version", "go1.21.5")], "1");

    let cpus: Vec<String> = (0..12).map(|c| c.to_string()).collect();
    let modes = [
        "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
    ];
    let cpu_sets: Vec<Vec<(&str, &str)>> = cpus
        .iter()
        .flat_map(|c| {
            modes
                .iter()
                .map(move |m| vec![("cpu", c.as_str()), ("mode", *m)])
        })
        .collect();
    b.families(&["node_cpu_seconds_total"], "counter", &cpu_sets);
    let guest: Vec<Vec<(&str, &str)>> = cpus
        .iter()
        .flat_map(|c| ["nice", "user"].map(|m| vec![("cpu", c.as_str()), ("mode", m)]))
        .collect();
    b.families(&["node_cpu_guest_seconds_total"], "counter", &guest);

    let disks: Vec<Vec<(&str, &str)>> = ["nvme0n1", "nvme1n1", "dm-0", "loop0"]
        .iter()
        .map(|d| vec![("device", *d)])
        .collect();
    let disk_names: Vec<String> = [
        "reads_completed",
        "reads_merged",
        "read_bytes",
        "read_time_seconds",
        "writes_completed",
        "writes_merged",
        "written_bytes",
        "write_time_seconds",
        "io_now",
        "io_time_seconds",
        "io_time_weighted_seconds",
        "discards_completed",
        "discards_merged",
        "discarded_sectors",
        "discard_time_seconds",
        "flush_requests",
        "flush_requests_time_seconds",
    ]
    .iter()
    .map(|n| format!("node_disk_{n}_total"))
    .collect();
    let disk_names: Vec<&str> = disk_names.iter().map(String::as_str).collect();
    b.families(&disk_names, "counter", &disks);

    let mounts = [
        ("/dev/nvme0n1p1", "xfs", "/"),
        ("/dev/nvme0n1p1", "xfs", "/var/lib/kubelet"),
        ("/dev/nvme1n1", "ext4", "/var/lib/containerd"),
        ("tmpfs", "tmpfs", "/run"),
        ("tmpfs", "tmpfs", "/run/lock"),
        ("tmpfs", "tmpfs", "/dev/shm"),
        (
            "shm",
            "tmpfs",
            "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/0b1c2d3e/shm",
        ),
        (
            "overlay",
            "overlay",
            "/run/containerd/io.containerd.runtime.v2.task/k8s.io/4f5e6d7c/rootfs",
        ),
        ("/dev/nvme0n1p128", "vfat", "/boot/efi"),
        (
            "tmpfs",
            "tmpfs",
            "/var/lib/kubelet/pods/5a6b7c8d-1111-2222-3333-444455556666/volumes/kubernetes.io~projected/kube-api-access-x7k2p",
        ),
    ];
    let fs_sets: Vec<Vec<(&str, &str)>> = mounts
        .iter()
        .map(|(d, f, m)| vec![("device", *d), ("fstype", *f), ("mountpoint", *m)])
        .collect();
    b.families(
        &[
            "node_filesystem_avail_bytes",
            "node_filesystem_device_error",
            "node_filesystem_files",
            "node_filesystem_files_free",
            "node_filesystem_free_bytes",
            "node_filesystem_readonly",
            "node_filesystem_size_bytes",
        ],
        "gauge",
        &fs_sets,
    );

    let mem: Vec<String> = [
        "Active",
        "Active_anon",
        "Active_file",
        "AnonHugePages",
        "AnonPages",
        "Bounce",
        "Buffers",
        "Cached",
        "CommitLimit",
        "Committed_AS",
        "DirectMap1G",
        "DirectMap2M",
        "DirectMap4k",
        "Dirty",
        "FileHugePages",
        "FilePmdMapped",
        "HardwareCorrupted",
        "HugePages_Free",
        "HugePages_Rsvd",
        "HugePages_Surp",
        "HugePages_Total",
        "Hugepagesize",
        "Hugetlb",
        "Inactive",
        "Inactive_anon",
        "Inactive_file",
        "KReclaimable",
        "KernelStack",
        "Mapped",
        "MemAvailable",
        "MemFree",
        "MemTotal",
        "Mlocked",
        "NFS_Unstable",
        "PageTables",
        "Percpu",
        "SReclaimable",
        "SUnreclaim",
        "ShmemHugePages",
        "ShmemPmdMapped",
        "Shmem",
        "Slab",
        "SwapCached",
        "SwapFree",
        "SwapTotal",
        "Unevictable",
        "VmallocChunk",
        "VmallocTotal",
        "VmallocUsed",
        "Writeback",
        "WritebackTmp",
    ]
    .iter()
    .map(|m| format!("node_memory_{m}_bytes"))
    .collect();
    let mem: Vec<&str> = mem.iter().map(String::as_str).collect();
    b.families(&mem, "gauge", &none);

    let netstat: Vec<String> = (0..40)
        .map(|i| format!("node_netstat_Tcp_Stat{i}"))
        .collect();
    let netstat: Vec<&str> = netstat.iter().map(String::as_str).collect();
    b.families(&netstat, "untyped", &none);

    let nics: Vec<Vec<(&str, &str)>> = [
        "eth0",
        "eth1",
        "lo",
        "eni1a2b3c4d5e6",
        "eni6f7a8b9c0d1",
        "pod-id-link0",
    ]
    .iter()
    .map(|d| vec![("device", *d)])
    .collect();
    let net: Vec<String> = [
        "receive_bytes",
        "receive_compressed",
        "receive_drop",
        "receive_errs",
        "receive_fifo",
        "receive_frame",
        "receive_multicast",
        "receive_packets",
        "transmit_bytes",
        "transmit_carrier",
        "transmit_colls",
        "transmit_compressed",
        "transmit_drop",
        "transmit_errs",
        "transmit_fifo",
        "transmit_packets",
    ]
    .iter()
    .map(|n| format!("node_network_{n}_total"))
    .collect();
    let net: Vec<&str> = net.iter().map(String::as_str).collect();
    b.families(&net, "counter", &nics);
    b.families(
        &[
            "node_network_mtu_bytes",
            "node_network_up",
            "node_network_carrier",
        ],
        "gauge",
        &nics,
    );

    let collectors: Vec<String> = (0..60).map(|i| format!("collector{i:02}")).collect();
    let coll_sets: Vec<Vec<(&str, &str)>> = collectors
        .iter()
        .map(|c| vec![("collector", c.as_str())])
        .collect();
    b.families(
        &[
            "node_scrape_collector_duration_seconds",
            "node_scrape_collector_success",
        ],
        "gauge",
        &coll_sets,
    );

    let cpu_only: Vec<Vec<(&str, &str)>> = cpus.iter().map(|c| vec![("cpu", c.as_str())]).collect();
    b.families(
        &[
            "node_schedstat_running_seconds_total",
            "node_schedstat_timeslices_total",
            "node_schedstat_waiting_seconds_total",
            "node_softnet_dropped_total",
            "node_softnet_processed_total",
            "node_softnet_times_squeezed_total",
        ],
        "counter",
        &cpu_only,
    );

    let irq_types: Vec<String> = (0..20).map(|i| format!("{}", 24 + i)).collect();
    let irq_sets: Vec<Vec<(&str, &str)>> = cpus
        .iter()
        .flat_map(|c| {
            irq_types.iter().map(move |t| {
                vec![
                    ("cpu", c.as_str()),
                    ("devices", "nvme0q1"),
                    ("info", "PCI-MSIX-0000:00:04.0"),
                    ("type", t.as_str()),
                ]
            })
        })
        .collect();
    b.families(&["node_interrupts_total"], "counter", &irq_sets);

    let vmstat: Vec<String> = (0..30).map(|i| format!("node_vmstat_stat{i}")).collect();
    let vmstat: Vec<&str> = vmstat.iter().map(String::as_str).collect();
    b.families(&vmstat, "untyped", &none);

    b.family(
        "node_uname_info",
        "gauge",
        "Labeled system information as provided by the uname system call.",
    );
    b.sample_value(
        "node_uname_info",
        &[
            ("domainname", "(none)"),
            ("machine", "x86_64"),
            ("nodename", "ip-10-0-12-34.eu-west-1.compute.internal"),
            ("release", "6.1.112-124.190.amzn2023.x86_64"),
            ("sysname", "Linux"),
            (
                "version",
                "#1 SMP PREEMPT_DYNAMIC Tue Oct  8 15:34:35 UTC 2024",
            ),
        ],
        "1",
    );
    let process: Vec<&str> = vec![
        "process_cpu_seconds_total",
        "process_max_fds",
        "process_open_fds",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_virtual_memory_bytes",
        "process_virtual_memory_max_bytes",
    ];
    b.families(&process, "gauge", &none);
    let codes: Vec<Vec<(&str, &str)>> = ["200", "500", "503"]
        .iter()
        .map(|c| vec![("code", *c)])
        .collect();
    b.families(
        &["promhttp_metric_handler_requests_total"],
        "counter",
        &codes,
    );
    b.out.into_bytes()
}

fn histogram_body() -> Vec<u8> {
    let mut b = Body {
        out: String::new(),
        rng: Rng(0x9E37_79B9_7F4A_7C15),
    };
    let handlers: Vec<String> = (0..20).map(|i| format!("/api/v1/resource{i}")).collect();
    let families: [(&str, &[&str]); 2] = [
        (
            "http_request_duration_seconds",
            &[
                "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
                "+Inf",
            ],
        ),
        (
            "http_response_size_bytes",
            &[
                "100", "1000", "10000", "100000", "1e+06", "1e+07", "1e+08", "1e+09", "+Inf",
            ],
        ),
    ];
    for (name, les) in families {
        b.family(name, "histogram", &format!("Histogram of {name}."));
        for h in &handlers {
            for method in ["GET", "POST"] {
                for code in ["200", "404", "500"] {
                    let mut count = 0u64;
                    let labels = [("handler", h.as_str()), ("method", method), ("code", code)];
                    for le in les {
                        count += b.rng.next() % 1000;
                        let mut with_le = labels.to_vec();
                        with_le.push(("le", le));
                        b.sample_value(&format!("{name}_bucket"), &with_le, &count.to_string());
                    }
                    let sum = format!("{}", (b.rng.next() % 100_000_000) as f64 / 1024.0);
                    b.sample_value(&format!("{name}_sum"), &labels, &sum);
                    b.sample_value(&format!("{name}_count"), &labels, &count.to_string());
                }
            }
        }
    }
    b.out.into_bytes()
}
