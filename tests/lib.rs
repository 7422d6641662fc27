//! Test harness for kubeship's end-to-end tests.
//!
//! * [`kubeship_bin`] finds the agent binary (`KUBESHIP_BIN`, else next to the test executable).
//! * [`Node`] builds a kubelet-like log layout in a temporary directory; [`Container`] writes
//!   sequenced lines in CRI or docker json-file framing and rotates them like the kubelet does.
//! * [`Agent`] runs `kubeship run` as a child process (killed on drop).
//! * [`Sink`] reads the local sink's `*.jsonl` files incrementally; [`Tracker`] checks
//!   sequences per container (loss, order, duplicates); [`raw_records`] gives the records as
//!   raw JSON ([`RawRecord`]) for the fields [`Record`] leaves out.
//! * [`wait_for`] polls a condition with a deadline; [`metric_value`] reads Prometheus text,
//!   [`metric_sum`] too but panics on a metric name the agent does not expose.
//!
//! * [`cw`]: CloudWatch Logs against moto's server ([`Moto`], [`CwDelivery`], [`FaultProxy`],
//!   the strict [`check_put_log_events`]); [`AgentConfig::cloudwatch`] selects that sink.
//! * [`kubeapi`]: a fake Kubernetes API server ([`FakeApi`]: list/watch of one node's pods and
//!   of namespaces, with faults) and the [`Pod`] builder.
//!
//! Environment knobs: `KUBESHIP_BIN` (binary), `KUBESHIP_TEST_TIMEOUT_SCALE` (multiply every
//! timeout, e.g. `3` on a slow machine), `KUBESHIP_KEEP_TMP=1` (keep a failed test's directory).

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsStr;
use std::fmt::{self, Display, Write as _};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

pub mod cw;
pub use cw::*;
pub mod kubeapi;
pub use kubeapi::*;

// ---------------------------------------------------------------------------------------------
// Binary, timeouts, waiting
// ---------------------------------------------------------------------------------------------

/// Path of the `kubeship` binary under test.
///
/// `KUBESHIP_BIN` wins; otherwise `target/<profile>/kubeship` next to the test executable
/// (which lives in `target/<profile>/deps/`). Panics with instructions when missing.
pub fn kubeship_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBESHIP_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "KUBESHIP_BIN={} does not exist; build the agent with `cargo build -p kubeship` \
             or point KUBESHIP_BIN at the binary",
            p.display()
        );
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe
        .parent()
        .expect("test executable has a parent directory");
    let candidate = deps.parent().unwrap_or(deps).join("kubeship");
    assert!(
        candidate.is_file(),
        "kubeship binary not found at {}.\nBuild it first with the same profile and \
         CARGO_TARGET_DIR as the tests: `cargo build -p kubeship` (or `cargo build --workspace`), \
         or set KUBESHIP_BIN=/path/to/kubeship. `tests/run.sh` does both.",
        candidate.display()
    );
    candidate
}

/// A `Command` for the kubeship binary.
pub fn kubeship() -> Command {
    let mut cmd = Command::new(kubeship_bin());
    // Where the tests run in a pod, `kubernetes.enabled: auto` must not find its API server.
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("KUBERNETES_")) {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Multiplier for every timeout (`KUBESHIP_TEST_TIMEOUT_SCALE`, default 1).
pub fn timeout_scale() -> f64 {
    std::env::var("KUBESHIP_TEST_TIMEOUT_SCALE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(1.0)
}

/// `n` seconds, scaled by [`timeout_scale`].
pub fn secs(n: u64) -> Duration {
    Duration::from_secs_f64(n as f64 * timeout_scale())
}

/// Polls `cond` until it returns true or `timeout` passes; true if it held.
pub fn wait_until(mut cond: impl FnMut() -> bool, timeout: Duration) -> bool {
    let start = Instant::now();
    let mut delay = Duration::from_millis(2);
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

/// Polls `cond` until it returns true; panics with `what` after `timeout`.
#[track_caller]
pub fn wait_for(cond: impl FnMut() -> bool, timeout: Duration, what: impl Display) {
    if !wait_until(cond, timeout) {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Runs `cmd` with stdin closed, collecting output; kills it and panics after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let mut status = None;
    let done = wait_until(
        || {
            status = child.try_wait().expect("try_wait");
            status.is_some()
        },
        timeout,
    );
    if !done {
        let _ = child.kill();
        let _ = child.wait();
        let stderr = t_err.join().unwrap_or_default();
        panic!(
            "{cmd:?} did not exit within {timeout:?}; stderr:\n{}",
            String::from_utf8_lossy(&stderr)
        );
    }
    Output {
        status: status.expect("status"),
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// Small deterministic RNG (xorshift64*), seeded through splitmix64
// ---------------------------------------------------------------------------------------------

/// Deterministic RNG for reproducible randomized tests.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        self.next_u64() % n
    }

    /// Uniform in `lo..hi` (`lo < hi`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A seed from the clock, for "random" runs (print it!).
pub fn clock_seed() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_secs() ^ u64::from(d.subsec_nanos()).rotate_left(32) ^ u64::from(std::process::id())
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    z = (z ^ (z >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    z ^ (z >> 33)
}

fn hex64(seed: u64) -> String {
    let mut s = String::with_capacity(64);
    for i in 0..4u64 {
        let _ = write!(s, "{:016x}", mix(seed.wrapping_mul(31).wrapping_add(i)));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------------

/// Container runtime log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// containerd / CRI-O: `<time> <stream> <P|F> <message>`.
    Cri,
    /// docker json-file: `{"log":"...\n","stream":"...","time":"..."}`.
    Docker,
}

/// One framed log line (with trailing newline).
///
/// `partial`: CRI tag `P`, or a docker chunk without trailing `\n`.
/// The message may contain arbitrary bytes (docker framing escapes `"`, `\` and controls only,
/// so invalid UTF-8 passes through raw like a buggy writer would produce).
pub fn frame(format: Format, time: &str, stream: &str, msg: &[u8], partial: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 80);
    match format {
        Format::Cri => {
            out.extend_from_slice(time.as_bytes());
            out.push(b' ');
            out.extend_from_slice(stream.as_bytes());
            out.extend_from_slice(if partial { b" P " } else { b" F " });
            out.extend_from_slice(msg);
        }
        Format::Docker => {
            out.extend_from_slice(b"{\"log\":\"");
            json_escape_bytes(msg, &mut out);
            if !partial {
                out.extend_from_slice(b"\\n");
            }
            out.extend_from_slice(b"\",\"stream\":\"");
            out.extend_from_slice(stream.as_bytes());
            out.extend_from_slice(b"\",\"time\":\"");
            out.extend_from_slice(time.as_bytes());
            out.extend_from_slice(b"\"}");
        }
    }
    out.push(b'\n');
    out
}

fn json_escape_bytes(msg: &[u8], out: &mut Vec<u8>) {
    for &b in msg {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                let _ = write!(out, "\\u{b:04x}");
            }
            _ => out.push(b),
        }
    }
}

/// Canonical RFC 3339 timestamp with nanoseconds for sequence number `seq`
/// (`2026-11-23T10:00:00.000000000Z` + seq milliseconds + a few nanoseconds).
pub fn time_for(seq: u64) -> String {
    let secs = 10 * 3600 + seq / 1000;
    let nanos = (seq % 1000) * 1_000_000 + seq % 997;
    let day = 23 + secs / 86_400;
    let s = secs % 86_400;
    format!(
        "2026-11-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_millis()).expect("ms fit i64")
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `(year, month, day)` of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// RFC 3339 UTC timestamp with nine fraction digits for `nanos` since the Unix epoch
/// (`2026-11-23T10:00:00.123456789Z`), the agent's canonical `time` format.
pub fn rfc3339_nanos(nanos: i128) -> String {
    let secs = nanos.div_euclid(1_000_000_000) as i64;
    let frac = nanos.rem_euclid(1_000_000_000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// RFC 3339 timestamp for Unix milliseconds `ms` (nine fraction digits).
pub fn rfc3339_ms(ms: i64) -> String {
    rfc3339_nanos(i128::from(ms) * 1_000_000)
}

/// Unix nanoseconds of an RFC 3339 timestamp (`Z` or `±hh:mm` offset, any fraction digits).
pub fn parse_rfc3339_nanos(t: &str) -> Option<i128> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { t.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut i = 19;
    let mut frac: i128 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &t[start..i];
        if digits.is_empty() {
            return None;
        }
        let mut padded = digits.chars().take(9).collect::<String>();
        while padded.len() < 9 {
            padded.push('0');
        }
        frac = padded.parse().ok()?;
    }
    let offset_secs: i64 = match &t[i..] {
        "Z" | "z" => 0,
        off if off.len() == 6 && (off.starts_with('+') || off.starts_with('-')) => {
            let oh: i64 = off.get(1..3)?.parse().ok()?;
            let om: i64 = off.get(4..6)?.parse().ok()?;
            let v = oh * 3600 + om * 60;
            if off.starts_with('-') { -v } else { v }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_secs;
    Some(i128::from(secs) * 1_000_000_000 + frac)
}

/// Unix milliseconds (rounded down) of an RFC 3339 timestamp: CloudWatch's event timestamp.
pub fn parse_rfc3339_ms(t: &str) -> Option<i64> {
    parse_rfc3339_nanos(t).map(|n| n.div_euclid(1_000_000) as i64)
}

/// Parses `c=<name> seq=<n> ...` into `(name, n)`.
pub fn parse_seq(log: &str) -> Option<(&str, u64)> {
    let rest = log.strip_prefix("c=")?;
    let (name, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix("seq=")?;
    let end = rest.find(' ').unwrap_or(rest.len());
    Some((name, rest[..end].parse().ok()?))
}

// ---------------------------------------------------------------------------------------------
// Node layout
// ---------------------------------------------------------------------------------------------

/// A kubelet-like node layout in a temporary directory:
/// `<root>/logs/containers/*.log` symlinks into `<root>/logs/pods/<ns>_<pod>_<uid>/<container>/`.
pub struct Node {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    counter: AtomicU64,
}

impl Default for Node {
    fn default() -> Self {
        Self::new()
    }
}

impl Node {
    pub fn new() -> Node {
        let dir = tempfile::Builder::new()
            .prefix("kubeship-test-")
            .tempdir()
            .expect("create temp dir");
        let root = dir.path().to_path_buf();
        fs::create_dir_all(root.join("logs/containers")).expect("mkdir containers");
        fs::create_dir_all(root.join("logs/pods")).expect("mkdir pods");
        Node {
            dir: Some(dir),
            root,
            counter: AtomicU64::new(1),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("logs/containers")
    }
    pub fn pods_dir(&self) -> PathBuf {
        self.root.join("logs/pods")
    }
    /// Local sink directory (`output.local.dir` in the configs written by [`Agent::start`]).
    pub fn out_dir(&self) -> PathBuf {
        self.root.join("out")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }
    pub fn sink(&self) -> Sink {
        Sink::new(self.out_dir())
    }

    fn next_id(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a container whose `containers_dir` symlink is relative.
    pub fn add_container(&self, ns: &str, pod: &str, name: &str, format: Format) -> Container {
        self.add_container_with(ns, pod, name, format, false)
    }

    /// Adds a container; `absolute_link` chooses an absolute instead of a relative symlink.
    pub fn add_container_with(
        &self,
        ns: &str,
        pod: &str,
        name: &str,
        format: Format,
        absolute_link: bool,
    ) -> Container {
        let n = self.next_id();
        let u = hex64(n ^ 0x706f_6475_6964);
        let uid = format!(
            "{}-{}-{}-{}-{}",
            &u[0..8],
            &u[8..12],
            &u[12..16],
            &u[16..20],
            &u[20..32]
        );
        self.container_in_pod(n, ns, pod, &uid, name, format, absolute_link)
    }

    /// Adds another container `name` to the pod of `sibling` (same namespace, pod name and
    /// pod UID, so the same `<ns>_<pod>_<uid>` directory), as a pod with several containers
    /// has.
    pub fn add_sibling(&self, sibling: &ContainerInfo, name: &str, format: Format) -> Container {
        self.container_in_pod(
            self.next_id(),
            &sibling.namespace,
            &sibling.pod,
            &sibling.pod_uid,
            name,
            format,
            false,
        )
    }

    /// A container of pod `ns/pod` with UID `uid`; `n` (a fresh [`Node::next_id`]) seeds its
    /// container id.
    #[allow(clippy::too_many_arguments)]
    fn container_in_pod(
        &self,
        n: u64,
        ns: &str,
        pod: &str,
        uid: &str,
        name: &str,
        format: Format,
        absolute_link: bool,
    ) -> Container {
        let id = hex64(n ^ 0x6b75_6265_7368_6970);
        let pod_dir_name = format!("{ns}_{pod}_{uid}");
        let pod_dir = self.pods_dir().join(&pod_dir_name);
        let dir = pod_dir.join(name);
        fs::create_dir_all(&dir).expect("mkdir container dir");
        let live = dir.join("0.log");
        File::create(&live).expect("create 0.log");
        let link = self
            .containers_dir()
            .join(format!("{pod}_{ns}_{name}-{id}.log"));
        let target = if absolute_link {
            live.clone()
        } else {
            PathBuf::from(format!("../pods/{pod_dir_name}/{name}/0.log"))
        };
        symlink(&target, &link).expect("symlink");
        Container {
            info: ContainerInfo {
                namespace: ns.to_string(),
                pod: pod.to_string(),
                name: name.to_string(),
                pod_uid: uid.to_string(),
                container_id: id,
                format,
                pad_min: 24,
                pad_spread: 48,
                time_base_ms: None,
            },
            pod_dir,
            dir,
            link,
            live,
            next_seq: 0,
            live_first: 0,
            rotations: 0,
            rotated: VecDeque::new(),
        }
    }

    /// Writes `kubeship.yaml` for `cfg` (telemetry on `port`) and returns its path.
    pub fn write_config(&self, cfg: &AgentConfig, port: u16) -> PathBuf {
        let path = self.root.join("kubeship.yaml");
        fs::write(&path, cfg.to_yaml(port)).expect("write config");
        path
    }

    /// Keep the directory (on failure with `KUBESHIP_KEEP_TMP=1`).
    fn keep(&mut self) {
        if let Some(d) = self.dir.take() {
            let p = d.keep();
            eprintln!("kept test directory {}", p.display());
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if std::env::var_os("KUBESHIP_KEEP_TMP").is_some() {
                self.keep();
            } else {
                eprintln!(
                    "(set KUBESHIP_KEEP_TMP=1 to keep the test directory {})",
                    self.root.display()
                );
            }
        }
    }
}

/// What a container writes: enough to compute the expected record for any sequence number.
#[derive(Clone, Debug)]
pub struct ContainerInfo {
    pub namespace: String,
    pub pod: String,
    pub name: String,
    pub pod_uid: String,
    pub container_id: String,
    pub format: Format,
    /// Padding length of line `seq` is `pad_min + mix(seq) % pad_spread`.
    pub pad_min: usize,
    pub pad_spread: usize,
    /// `None`: line `seq` carries [`time_for`]`(seq)` (fixed, 2026-11-23). `Some(base)`: Unix
    /// ms `base + seq` plus `seq % 997` ns — for sinks that reject old events (CloudWatch takes
    /// nothing older than 14 days): see [`Container::set_time_base_ms`].
    pub time_base_ms: Option<i64>,
}

impl ContainerInfo {
    /// The message text of line `seq`: `c=<name> seq=<seq> <padding>`.
    pub fn message(&self, seq: u64) -> String {
        let h = mix(seq ^ 0xabcdef);
        let len = self.pad_min + (h as usize % self.pad_spread.max(1));
        let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut s = format!("c={} seq={} ", self.name, seq);
        let start = (h >> 20) as usize;
        s.extend((0..len).map(|i| alphabet[(start + i) % alphabet.len()] as char));
        s
    }

    pub fn stream(&self, seq: u64) -> &'static str {
        if seq % 7 == 3 { "stderr" } else { "stdout" }
    }

    pub fn time(&self, seq: u64) -> String {
        match self.time_base_ms {
            None => time_for(seq),
            Some(base) => rfc3339_nanos(
                (i128::from(base) + i128::from(seq)) * 1_000_000 + i128::from(seq % 997),
            ),
        }
    }

    /// The CloudWatch event timestamp (Unix ms) of line `seq`.
    pub fn timestamp_ms(&self, seq: u64) -> i64 {
        parse_rfc3339_ms(&self.time(seq)).expect("valid time")
    }

    /// Checks that `rec` is exactly line `seq` of this container, enriched for `host`.
    pub fn check(&self, rec: &Record, seq: u64, host: &str) -> Result<(), String> {
        let mut problems = Vec::new();
        let msg = self.message(seq);
        if rec.log != msg {
            problems.push(format!(
                "log differs: got {:?} (len {}), want {:?} (len {})",
                truncate_for_display(&rec.log),
                rec.log.len(),
                truncate_for_display(&msg),
                msg.len()
            ));
        }
        if rec.stream != self.stream(seq) {
            problems.push(format!(
                "stream {:?}, want {:?}",
                rec.stream,
                self.stream(seq)
            ));
        }
        if rec.time != self.time(seq) {
            problems.push(format!("time {:?}, want {:?}", rec.time, self.time(seq)));
        }
        if let Err(e) = self.check_kubernetes(rec, host) {
            problems.push(e);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "record for c={} seq={seq}: {}",
                self.name,
                problems.join("; ")
            ))
        }
    }

    /// Checks the `kubernetes` enrichment of `rec`.
    pub fn check_kubernetes(&self, rec: &Record, host: &str) -> Result<(), String> {
        let k = &rec.kubernetes;
        let want = Kubernetes {
            pod_name: self.pod.clone(),
            namespace_name: self.namespace.clone(),
            pod_id: self.pod_uid.clone(),
            host: host.to_string(),
            container_name: self.name.clone(),
            docker_id: self.container_id.clone(),
        };
        if *k == want {
            Ok(())
        } else {
            Err(format!("kubernetes fields {k:?}, want {want:?}"))
        }
    }
}

fn truncate_for_display(s: &str) -> String {
    if s.len() <= 160 {
        s.to_string()
    } else {
        let mut end = 160;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

/// A rotated sibling of `0.log`.
#[derive(Clone, Debug)]
pub struct Rotated {
    pub path: PathBuf,
    pub gz: bool,
    /// Sequence numbers of the complete lines it holds.
    pub seqs: Range<u64>,
}

/// One container's log directory; writes sequenced lines and rotates like the kubelet.
#[derive(Debug)]
pub struct Container {
    pub info: ContainerInfo,
    pod_dir: PathBuf,
    dir: PathBuf,
    link: PathBuf,
    live: PathBuf,
    next_seq: u64,
    live_first: u64,
    rotations: u64,
    rotated: VecDeque<Rotated>,
}

impl Container {
    pub fn info(&self) -> &ContainerInfo {
        &self.info
    }
    pub fn name(&self) -> &str {
        &self.info.name
    }
    pub fn format(&self) -> Format {
        self.info.format
    }
    /// Directory holding `0.log` and its rotated siblings.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The live file (`.../<container>/0.log`).
    pub fn live_path(&self) -> &Path {
        &self.live
    }
    /// The `containers_dir` symlink.
    pub fn link_path(&self) -> &Path {
        &self.link
    }
    /// Sequence numbers written so far: `0..written()`.
    pub fn written(&self) -> u64 {
        self.next_seq
    }
    /// Sequence numbers of the complete lines in the live `0.log`.
    pub fn live_seqs(&self) -> Range<u64> {
        self.live_first..self.next_seq
    }
    /// Rotated files, oldest first.
    pub fn rotated(&self) -> &VecDeque<Rotated> {
        &self.rotated
    }
    /// Sets the padding of subsequent lines (see [`ContainerInfo::message`]).
    pub fn set_padding(&mut self, min: usize, spread: usize) {
        self.info.pad_min = min;
        self.info.pad_spread = spread;
    }

    /// Times subsequent lines from Unix ms `base` (line `seq` at `base + seq` ms), or from the
    /// fixed [`time_for`] with `None`. CloudWatch tests use a recent base
    /// (`now_ms() - 3_600_000`): CloudWatch (and moto) reject events older than 14 days.
    pub fn set_time_base_ms(&mut self, base: Option<i64>) {
        self.info.time_base_ms = base;
    }

    /// Appends the next sequenced line with an explicit `time` (RFC 3339) instead of
    /// [`ContainerInfo::time`]; returns its sequence number.
    pub fn write_line_at(&mut self, time: &str) -> u64 {
        let seq = self.next_seq;
        let b = frame(
            self.info.format,
            time,
            self.info.stream(seq),
            self.info.message(seq).as_bytes(),
            false,
        );
        self.append(&b);
        self.next_seq += 1;
        seq
    }

    fn append(&self, bytes: &[u8]) {
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.live)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.live.display()));
        f.write_all(bytes)
            .unwrap_or_else(|e| panic!("write {}: {e}", self.live.display()));
    }

    /// Appends raw bytes to `0.log` in one write.
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.append(bytes);
    }

    /// Appends one framed line (not sequenced) with the container's format.
    pub fn write_framed(&mut self, time: &str, stream: &str, msg: &[u8], partial: bool) {
        let b = frame(self.info.format, time, stream, msg, partial);
        self.append(&b);
    }

    /// Appends `n` complete sequenced lines in one write; returns their sequence numbers.
    pub fn write_lines(&mut self, n: u64) -> Range<u64> {
        let start = self.next_seq;
        let mut buf = Vec::new();
        for seq in start..start + n {
            buf.extend(frame(
                self.info.format,
                &self.info.time(seq),
                self.info.stream(seq),
                self.info.message(seq).as_bytes(),
                false,
            ));
        }
        self.append(&buf);
        self.next_seq += n;
        start..self.next_seq
    }

    /// Writes one sequenced record split into `pieces` (≥ 2) partial pieces — CRI `P` pieces
    /// then an `F` piece, or docker chunks without `\n` then one with it — each in its own
    /// write. Returns the sequence number.
    pub fn write_partial(&mut self, pieces: usize) -> u64 {
        let (seq, frames) = self.partial_frames(pieces);
        for f in &frames {
            self.append(f);
        }
        self.commit_partial();
        seq
    }

    /// The framed pieces of the next sequenced record split into `pieces` (≥ 2) parts, for
    /// writing one by one with [`Container::write_raw`]; call [`Container::commit_partial`]
    /// after the last one.
    pub fn partial_frames(&self, pieces: usize) -> (u64, Vec<Vec<u8>>) {
        assert!(pieces >= 2, "a partial record needs at least 2 pieces");
        let seq = self.next_seq;
        let msg = self.info.message(seq);
        let bytes = msg.as_bytes();
        assert!(bytes.len() >= pieces, "message too short to split");
        let time = self.info.time(seq);
        let stream = self.info.stream(seq);
        let chunk = bytes.len().div_ceil(pieces);
        let parts: Vec<&[u8]> = bytes.chunks(chunk).collect();
        let frames = parts
            .iter()
            .enumerate()
            .map(|(i, part)| frame(self.info.format, &time, stream, part, i + 1 < parts.len()))
            .collect();
        (seq, frames)
    }

    /// Records that the partial record from [`Container::partial_frames`] was fully written.
    pub fn commit_partial(&mut self) {
        self.next_seq += 1;
    }

    fn next_rotated_name(&mut self) -> PathBuf {
        let k = self.rotations;
        self.rotations += 1;
        assert!(k < 13 * 3600, "too many rotations for the name scheme");
        let s = 10 * 3600 + k;
        let name = format!(
            "0.log.20261123-{:02}{:02}{:02}",
            s / 3600,
            (s / 60) % 60,
            s % 60
        );
        self.dir.join(name)
    }

    /// Kubelet rotation: rename `0.log` to `0.log.<timestamp>` (names sort in rotation order)
    /// and create a new empty `0.log`.
    pub fn rotate(&mut self) -> PathBuf {
        let to = self.next_rotated_name();
        fs::rename(&self.live, &to).expect("rename 0.log");
        File::create(&self.live).expect("create new 0.log");
        self.rotated.push_back(Rotated {
            path: to.clone(),
            gz: false,
            seqs: self.live_first..self.next_seq,
        });
        self.live_first = self.next_seq;
        to
    }

    /// copytruncate rotation: copy `0.log` to `0.log.<timestamp>`, then truncate `0.log`.
    pub fn copytruncate(&mut self) -> PathBuf {
        let to = self.next_rotated_name();
        fs::copy(&self.live, &to).expect("copy 0.log");
        OpenOptions::new()
            .write(true)
            .open(&self.live)
            .and_then(|f| f.set_len(0))
            .expect("truncate 0.log");
        self.rotated.push_back(Rotated {
            path: to.clone(),
            gz: false,
            seqs: self.live_first..self.next_seq,
        });
        self.live_first = self.next_seq;
        to
    }

    /// Kubelet compression: gzip the oldest uncompressed rotated file except the newest rotated
    /// one (the kubelet keeps that uncompressed). Like the kubelet, it writes `<name>.tmp`,
    /// renames it to `<name>.gz`, then deletes `<name>`. Returns the new path, if any.
    pub fn gzip_oldest(&mut self) -> Option<PathBuf> {
        let newest = self.rotated.len().checked_sub(1)?;
        let idx = self.rotated.iter().position(|r| !r.gz)?;
        if idx >= newest {
            return None;
        }
        let r = &mut self.rotated[idx];
        let data = fs::read(&r.path).expect("read rotated file");
        let tmp = PathBuf::from(format!("{}.tmp", r.path.display()));
        let gz = PathBuf::from(format!("{}.gz", r.path.display()));
        {
            let f = File::create(&tmp).expect("create .tmp");
            let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
            enc.write_all(&data).expect("gzip");
            enc.finish().expect("gzip finish");
        }
        fs::rename(&tmp, &gz).expect("rename .tmp to .gz");
        fs::remove_file(&r.path).expect("remove uncompressed rotated file");
        r.path = gz.clone();
        r.gz = true;
        Some(gz)
    }

    /// Deletes the oldest rotated file (compressed or not); returns what it held.
    pub fn delete_rotated_oldest(&mut self) -> Option<Rotated> {
        let r = self.rotated.pop_front()?;
        fs::remove_file(&r.path).expect("delete rotated file");
        Some(r)
    }

    /// Sets the permission bits of `0.log`.
    pub fn chmod_live(&self, mode: u32) {
        fs::set_permissions(&self.live, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// The pod is gone: remove the `containers_dir` symlink and the pod's log directory.
    pub fn remove(self) -> ContainerInfo {
        let _ = fs::remove_file(&self.link);
        fs::remove_dir_all(&self.pod_dir).expect("remove pod dir");
        self.info
    }
}

// ---------------------------------------------------------------------------------------------
// Agent config + process
// ---------------------------------------------------------------------------------------------

/// The agent configuration written by [`Agent::start`]; defaults are tuned for fast tests.
/// All paths are relative to the config file (the node root).
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub cluster: String,
    pub node_name: String,
    pub shutdown_timeout_secs: u64,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub read_from: String,
    pub max_record_bytes: u64,
    pub poll_interval_ms: u64,
    pub rescan_interval_secs: u64,
    pub rotate_wait_secs: u64,
    pub eof_flush_ms: u64,
    /// Raw YAML flow mappings, e.g. `{container: "worker", rule: python}`.
    pub multiline: Vec<String>,
    pub multiline_rules: Vec<String>,
    /// Further raw YAML lines under `logs:` (e.g. `parsers: [{name: kv, regex: '…'}]`), for
    /// options without a field of their own.
    pub logs_extra: Vec<String>,
    pub batch_max_bytes: u64,
    pub batch_max_records: u64,
    pub batch_timeout_ms: u64,
    pub channel_batches: u64,
    pub max_inflight_bytes: u64,
    pub checkpoint_interval_ms: u64,
    pub log_level: String,
    /// `output.group` (placeholders `{cluster}` `{node}` `{namespace}` `{pod}` `{container}`
    /// `{container_id}`).
    pub group_template: String,
    /// `output.stream`.
    pub stream_template: String,
    /// `output.event` (`record` or `log`); `None` leaves the agent default (`record`).
    pub output_event: Option<String>,
    /// `Some`: `output.cloudwatch` is the sink (instead of `output.local`), and the agent is
    /// started with test AWS credentials (see [`AgentConfig::env`]).
    pub cloudwatch: Option<CloudWatchOpts>,
    /// The AWS environment of an agent with a CloudWatch sink. `None` (the default): the static
    /// test keys of [`aws_test_env`]. `Some(vars)`: exactly `vars` (plus the loopback
    /// `NO_PROXY` settings), without static keys unless `vars` has them, to exercise other
    /// links of the credential chain; [`aws_env_without_keys`] is a starting point.
    pub aws_env: Option<Vec<(&'static str, String)>>,
    /// Raw YAML lines under `kubernetes:` (e.g. `kubeconfig: ./kubeconfig`). `None` (the
    /// default): `kubernetes: {enabled: false}`, so that an agent under test never reaches a
    /// real API server even where the tests run inside a pod.
    pub kubernetes: Option<Vec<String>>,
}

/// `output.cloudwatch` options; `None` fields are left out of the YAML (agent defaults).
#[derive(Clone, Debug, Default)]
pub struct CloudWatchOpts {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub create_group: Option<bool>,
    pub retention_days: Option<u32>,
    pub log_group_class: Option<String>,
    pub tags: Vec<(String, String)>,
    pub max_concurrent_requests: Option<u32>,
    pub request_timeout_secs: Option<u64>,
    /// Further raw `key: value` lines under `output.cloudwatch:` (for options added later).
    pub extra: Vec<String>,
}

/// Region the tests' agents and clients use.
pub const TEST_AWS_REGION: &str = "us-east-1";

impl CloudWatchOpts {
    /// The tests' usual sink: `endpoint` (moto or a proxy in front of it), region
    /// [`TEST_AWS_REGION`], `create_group: true`, `retention_days: 7`, class `STANDARD`,
    /// tag `team: platform`, 8 concurrent requests, 10 s request timeout.
    pub fn for_endpoint(endpoint: impl Into<String>) -> CloudWatchOpts {
        CloudWatchOpts {
            region: Some(TEST_AWS_REGION.into()),
            endpoint_url: Some(endpoint.into()),
            create_group: Some(true),
            retention_days: Some(7),
            log_group_class: Some("STANDARD".into()),
            tags: vec![("team".into(), "platform".into())],
            max_concurrent_requests: Some(8),
            request_timeout_secs: Some(10),
            extra: vec![],
        }
    }

    fn write_yaml(&self, y: &mut String) {
        let _ = writeln!(y, "  cloudwatch:");
        if let Some(v) = &self.region {
            let _ = writeln!(y, "    region: {v:?}");
        }
        if let Some(v) = &self.endpoint_url {
            let _ = writeln!(y, "    endpoint_url: {v:?}");
        }
        if let Some(v) = self.create_group {
            let _ = writeln!(y, "    create_group: {v}");
        }
        if let Some(v) = self.retention_days {
            let _ = writeln!(y, "    retention_days: {v}");
        }
        if let Some(v) = &self.log_group_class {
            let _ = writeln!(y, "    log_group_class: {v}");
        }
        if !self.tags.is_empty() {
            let tags: Vec<String> = self
                .tags
                .iter()
                .map(|(k, v)| format!("{k:?}: {v:?}"))
                .collect();
            let _ = writeln!(y, "    tags: {{{}}}", tags.join(", "));
        }
        if let Some(v) = self.max_concurrent_requests {
            let _ = writeln!(y, "    max_concurrent_requests: {v}");
        }
        if let Some(v) = self.request_timeout_secs {
            let _ = writeln!(y, "    request_timeout_secs: {v}");
        }
        for l in &self.extra {
            let _ = writeln!(y, "    {l}");
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            cluster: "test".into(),
            node_name: "node-1".into(),
            shutdown_timeout_secs: 20,
            include: vec!["*.log".into()],
            exclude: vec![],
            read_from: "beginning".into(),
            max_record_bytes: 262_144,
            poll_interval_ms: 50,
            rescan_interval_secs: 1,
            rotate_wait_secs: 5,
            eof_flush_ms: 1000,
            multiline: vec![],
            multiline_rules: vec![],
            logs_extra: vec![],
            batch_max_bytes: 1 << 20,
            batch_max_records: 10_000,
            batch_timeout_ms: 100,
            channel_batches: 8,
            max_inflight_bytes: 64 << 20,
            checkpoint_interval_ms: 200,
            log_level: std::env::var("KUBESHIP_TEST_LOG_LEVEL").unwrap_or_else(|_| "info".into()),
            group_template: "/aws/containerinsights/{cluster}/application".into(),
            stream_template: "{pod}_{namespace}_{container}".into(),
            output_event: None,
            cloudwatch: None,
            aws_env: None,
            kubernetes: None,
        }
    }
}

fn yaml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

impl AgentConfig {
    /// The YAML text, telemetry on `127.0.0.1:<port>`.
    pub fn to_yaml(&self, port: u16) -> String {
        let mut y = String::new();
        let _ = writeln!(y, "cluster: {:?}", self.cluster);
        let _ = writeln!(y, "node_name: {:?}", self.node_name);
        let _ = writeln!(y, "state_dir: ./state");
        let _ = writeln!(y, "shutdown_timeout_secs: {}", self.shutdown_timeout_secs);
        let _ = writeln!(y, "logs:");
        let _ = writeln!(y, "  containers_dir: ./logs/containers");
        let _ = writeln!(y, "  include: {}", yaml_list(&self.include));
        let _ = writeln!(y, "  exclude: {}", yaml_list(&self.exclude));
        let _ = writeln!(y, "  read_from: {}", self.read_from);
        let _ = writeln!(y, "  max_record_bytes: {}", self.max_record_bytes);
        let _ = writeln!(y, "  poll_interval_ms: {}", self.poll_interval_ms);
        let _ = writeln!(y, "  rescan_interval_secs: {}", self.rescan_interval_secs);
        let _ = writeln!(y, "  rotate_wait_secs: {}", self.rotate_wait_secs);
        let _ = writeln!(y, "  eof_flush_ms: {}", self.eof_flush_ms);
        if self.multiline.is_empty() {
            let _ = writeln!(y, "  multiline: []");
        } else {
            let _ = writeln!(y, "  multiline:");
            for m in &self.multiline {
                let _ = writeln!(y, "    - {m}");
            }
        }
        if !self.multiline_rules.is_empty() {
            let _ = writeln!(y, "  multiline_rules:");
            for m in &self.multiline_rules {
                let _ = writeln!(y, "    - {m}");
            }
        }
        for l in &self.logs_extra {
            let _ = writeln!(y, "  {l}");
        }
        let _ = writeln!(y, "pipeline:");
        let _ = writeln!(y, "  batch_max_bytes: {}", self.batch_max_bytes);
        let _ = writeln!(y, "  batch_max_records: {}", self.batch_max_records);
        let _ = writeln!(y, "  batch_timeout_ms: {}", self.batch_timeout_ms);
        let _ = writeln!(y, "  channel_batches: {}", self.channel_batches);
        let _ = writeln!(y, "  max_inflight_bytes: {}", self.max_inflight_bytes);
        let _ = writeln!(
            y,
            "  checkpoint_interval_ms: {}",
            self.checkpoint_interval_ms
        );
        let _ = writeln!(y, "output:");
        let _ = writeln!(y, "  group: {:?}", self.group_template);
        let _ = writeln!(y, "  stream: {:?}", self.stream_template);
        if let Some(e) = &self.output_event {
            let _ = writeln!(y, "  event: {e}");
        }
        match &self.cloudwatch {
            Some(cw) => cw.write_yaml(&mut y),
            None => {
                let _ = writeln!(y, "  local:");
                let _ = writeln!(y, "    dir: ./out");
            }
        }
        match &self.kubernetes {
            None => {
                let _ = writeln!(y, "kubernetes: {{enabled: false}}");
            }
            Some(lines) => {
                let _ = writeln!(y, "kubernetes:");
                for l in lines {
                    let _ = writeln!(y, "  {l}");
                }
            }
        }
        let _ = writeln!(y, "telemetry:");
        let _ = writeln!(y, "  listen_addr: \"127.0.0.1:{port}\"");
        let _ = writeln!(y, "  log_format: json");
        let _ = writeln!(y, "  log_level: {}", self.log_level);
        y
    }
}

impl AgentConfig {
    /// Environment for the agent process: with a CloudWatch sink, the standard AWS variables
    /// with test credentials (`AWS_ACCESS_KEY_ID=testing`, `AWS_SECRET_ACCESS_KEY=testing`,
    /// `AWS_REGION`, `AWS_EC2_METADATA_DISABLED=true`), or [`AgentConfig::aws_env`] when set;
    /// nothing otherwise.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match (&self.cloudwatch, &self.aws_env) {
            (None, _) => vec![],
            (Some(cw), None) => aws_test_env(cw.region.as_deref().unwrap_or(TEST_AWS_REGION)),
            (Some(_), Some(vars)) => {
                let mut env = loopback_no_proxy_env();
                env.extend(vars.iter().cloned());
                env
            }
        }
    }
}

fn loopback_no_proxy_env() -> Vec<(&'static str, String)> {
    vec![
        ("NO_PROXY", "127.0.0.1,localhost".into()),
        ("no_proxy", "127.0.0.1,localhost".into()),
    ]
}

/// AWS settings without any credentials, for [`AgentConfig::aws_env`]: the region,
/// `AWS_EC2_METADATA_DISABLED=true`, and `AWS_CONFIG_FILE` / `AWS_SHARED_CREDENTIALS_FILE`
/// pointing at empty files it creates in `dir`, so that neither IMDS nor a profile of the
/// machine running the tests can supply credentials.
pub fn aws_env_without_keys(region: &str, dir: &Path) -> Vec<(&'static str, String)> {
    let empty = |name: &str| {
        let p = dir.join(name);
        fs::write(&p, "").unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        p.to_string_lossy().into_owned()
    };
    vec![
        ("AWS_REGION", region.into()),
        ("AWS_DEFAULT_REGION", region.into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", empty("aws-config-empty")),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            empty("aws-credentials-empty"),
        ),
    ]
}

/// Test AWS credentials and settings for processes that talk to moto.
pub fn aws_test_env(region: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", region.into()),
        ("AWS_DEFAULT_REGION", region.into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("NO_PROXY", "127.0.0.1,localhost".into()),
        ("no_proxy", "127.0.0.1,localhost".into()),
    ]
}

/// Removes every `AWS_*` and `KUBERNETES_*` variable and HTTP proxy setting inherited from the
/// test environment (profiles, session tokens, endpoint overrides, an in-cluster API server), so
/// child processes see only what the test passes.
pub fn scrub_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        let lower = k.to_ascii_lowercase();
        if k.starts_with("AWS_")
            || k.starts_with("KUBERNETES_")
            || matches!(
                lower.as_str(),
                "http_proxy" | "https_proxy" | "all_proxy" | "no_proxy"
            )
        {
            cmd.env_remove(k);
        }
    }
}

static AGENT_RUNS: AtomicU64 = AtomicU64::new(0);

/// A running `kubeship run` process. Dropping it kills the process.
pub struct Agent {
    child: Option<Child>,
    pid: u32,
    port: u16,
    status: Option<ExitStatus>,
    stderr_path: PathBuf,
    pub config_path: PathBuf,
}

impl Agent {
    /// Writes the config into the node root and starts `kubeship run --config <it>`.
    pub fn start(node: &Node, cfg: &AgentConfig) -> Agent {
        Self::start_with_args(node, cfg, &[])
    }

    /// Like [`Agent::start`] with extra arguments after `run --config FILE`.
    pub fn start_with_args(node: &Node, cfg: &AgentConfig, extra: &[&str]) -> Agent {
        Self::start_with(node, cfg, extra, &[])
    }

    /// Like [`Agent::start`], as the pod `namespace/pod` (`POD_NAMESPACE`, `POD_NAME` from the
    /// downward API): the agent's own pod.
    pub fn start_in_pod(node: &Node, cfg: &AgentConfig, namespace: &str, pod: &str) -> Agent {
        Self::start_with(
            node,
            cfg,
            &[],
            &[("POD_NAMESPACE", namespace), ("POD_NAME", pod)],
        )
    }

    fn start_with(
        node: &Node,
        cfg: &AgentConfig,
        extra: &[&str],
        extra_env: &[(&str, &str)],
    ) -> Agent {
        let port = free_port();
        let config_path = node.write_config(cfg, port);
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("run"),
            OsStr::new("--config"),
            config_path.as_os_str(),
        ];
        args.extend(extra.iter().map(OsStr::new));
        let env = cfg.env();
        let mut envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        envs.extend_from_slice(extra_env);
        Self::spawn(node.root(), &config_path, port, &args, &envs)
    }

    /// Starts `kubeship <args>` in `cwd`, stderr/stdout to files under `log_dir`.
    pub fn spawn(
        log_dir: &Path,
        config_path: &Path,
        port: u16,
        args: &[&OsStr],
        envs: &[(&str, &str)],
    ) -> Agent {
        let run = AGENT_RUNS.fetch_add(1, Ordering::Relaxed);
        let stderr_path = log_dir.join(format!("agent-{run}.stderr.log"));
        let stdout_path = log_dir.join(format!("agent-{run}.stdout.log"));
        let mut cmd = kubeship();
        scrub_env(&mut cmd);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("create stdout log"))
            .stderr(File::create(&stderr_path).expect("create stderr log"));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Agent {
            pid: child.id(),
            child: Some(child),
            port,
            status: None,
            stderr_path,
            config_path: config_path.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The agent's stderr so far (its logs).
    pub fn stderr(&self) -> String {
        fs::read(&self.stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Last `n` lines of stderr.
    pub fn stderr_tail(&self, n: usize) -> String {
        let s = self.stderr();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Log lines at ERROR level (JSON `"level":"ERROR"` or text ` ERROR `).
    pub fn error_lines(&self) -> Vec<String> {
        self.stderr()
            .lines()
            .filter(|l| l.contains("\"level\":\"ERROR\"") || l.contains(" ERROR "))
            .map(str::to_string)
            .collect()
    }

    /// Exit status if the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Some(child) = self.child.as_mut()
        {
            self.status = child.try_wait().expect("try_wait");
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Panics (with stderr) if the process has exited.
    #[track_caller]
    pub fn assert_running(&mut self, context: &str) {
        if let Some(st) = self.try_status() {
            panic!(
                "kubeship exited unexpectedly ({st}) {context}; stderr tail:\n{}",
                self.stderr_tail(60)
            );
        }
    }

    /// A `VmXxx:` value of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`: peak RSS, …);
    /// None once the process is gone.
    pub fn proc_status_kib(&self, field: &str) -> Option<u64> {
        let text = fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
    }

    /// Peak resident set size (`VmHWM`) in bytes.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        self.proc_status_kib("VmHWM").map(|k| k * 1024)
    }

    /// Current resident set size (`VmRSS`) in bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        self.proc_status_kib("VmRSS").map(|k| k * 1024)
    }

    /// Sends SIGTERM.
    pub fn sigterm(&mut self) {
        if self.try_status().is_some() {
            return;
        }
        let st = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(
            st.success() || self.try_status().is_some(),
            "kill -TERM failed"
        );
    }

    /// Sends SIGKILL and reaps the process.
    pub fn sigkill(&mut self) {
        if let Some(child) = self.child.as_mut()
            && self.status.is_none()
        {
            let _ = child.kill();
            self.status = Some(child.wait().expect("wait"));
        }
    }

    /// Waits for exit; panics (with stderr) after `timeout`.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let ok = wait_until(|| self.try_status().is_some(), timeout);
        if !ok {
            let tail = self.stderr_tail(60);
            self.sigkill();
            panic!("kubeship did not exit within {timeout:?}; stderr tail:\n{tail}");
        }
        self.status.expect("status")
    }

    /// SIGTERM, then wait for a clean (code 0) exit.
    #[track_caller]
    pub fn stop(&mut self, timeout: Duration) {
        self.sigterm();
        let st = self.wait_exit(timeout);
        assert!(
            st.success(),
            "kubeship exited with {st} after SIGTERM; stderr tail:\n{}",
            self.stderr_tail(60)
        );
    }

    /// GET `path` on the telemetry listener: `(status, body)`.
    pub fn http_get(&self, path: &str) -> io::Result<(u16, String)> {
        http_get(self.addr(), path)
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> io::Result<String> {
        match self.http_get("/metrics")? {
            (200, body) => Ok(body),
            (code, body) => Err(io::Error::other(format!("/metrics: HTTP {code}: {body}"))),
        }
    }

    /// Sum of all series of metric `name` (any labels); None when `/metrics` cannot be read
    /// (the agent is down or restarting) or has no series of it yet. Panics when the agent
    /// answers but does not expose `name` at all (see [`metric_sum`]).
    #[track_caller]
    pub fn metric(&self, name: &str) -> Option<f64> {
        let text = self.metrics().ok()?;
        assert_exposed(&text, name);
        metric_value(&text, name, &[])
    }

    /// Sum of the series of metric `name` whose labels include `labels`; 0 when there is none
    /// (a labelled counter has no series before its first increment); panics when `/metrics`
    /// cannot be read or does not expose `name` (see [`metric_sum`]).
    #[track_caller]
    pub fn metric_or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self
            .metrics()
            .unwrap_or_else(|e| panic!("reading /metrics: {e}"));
        metric_sum(&text, name, labels)
    }

    /// Waits until `/readyz` answers 200; panics (with stderr) on timeout or exit.
    #[track_caller]
    pub fn wait_ready(&mut self, timeout: Duration) {
        let mut exited = None;
        let ok = wait_until(
            || {
                if let Some(st) = self.try_status() {
                    exited = Some(st);
                    return true;
                }
                matches!(self.http_get("/readyz"), Ok((200, _)))
            },
            timeout,
        );
        if let Some(st) = exited {
            panic!(
                "kubeship exited ({st}) before becoming ready; stderr tail:\n{}",
                self.stderr_tail(60)
            );
        }
        if !ok {
            panic!(
                "kubeship not ready (GET /readyz != 200) within {timeout:?}; stderr tail:\n{}",
                self.stderr_tail(60)
            );
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let was_running = self.try_status().is_none();
        self.sigkill();
        if std::thread::panicking() {
            eprintln!(
                "--- kubeship pid {} ({}) stderr tail, {} ---\n{}\n--- end ---",
                self.pid,
                if was_running {
                    "killed by test teardown"
                } else {
                    "had exited"
                },
                self.stderr_path.display(),
                self.stderr_tail(40)
            );
        }
    }
}

/// Minimal HTTP/1.0 GET (no client dependency): `(status, body)`.
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other("malformed HTTP response"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other("malformed HTTP status line"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((code, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Value of metric `name` in Prometheus/OpenMetrics text, summed over all series whose labels
/// include every `(key, value)` in `labels` (empty: all series). None if no series matched.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => continue,
        };
        if series != name {
            continue;
        }
        let (label_text, value_text) = if let Some(r) = rest.strip_prefix('{') {
            match r.rfind('}') {
                Some(i) => (&r[..i], r[i + 1..].trim()),
                None => continue,
            }
        } else {
            ("", rest.trim())
        };
        let parsed = parse_labels(label_text);
        if !labels
            .iter()
            .all(|(k, v)| parsed.iter().any(|(pk, pv)| pk == k && pv == v))
        {
            continue;
        }
        let v: f64 = match value_text.split_whitespace().next().map(str::parse) {
            Some(Ok(v)) => v,
            _ => continue,
        };
        *sum.get_or_insert(0.0) += v;
    }
    sum
}

/// Like [`metric_value`], 0 when no series matched; but panics when `text` does not expose
/// `name` at all ([`exposes_metric`]): a misspelt or renamed metric must fail the test, not
/// read as a counter that never moved.
#[track_caller]
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    assert_exposed(text, name);
    metric_value(text, name, labels).unwrap_or(0.0)
}

#[track_caller]
fn assert_exposed(text: &str, name: &str) {
    if !exposes_metric(text, name) {
        let mut families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.split_whitespace().next())
            .collect();
        families.sort_unstable();
        panic!(
            "the agent does not expose the metric {name} (no `# TYPE` or `# HELP` line of its \
             family); it exposes: {}",
            families.join(", ")
        );
    }
}

/// Whether `text` declares the family of sample name `name` in a `# TYPE` line (for the
/// family's type: `_total` of a counter, `_bucket`/`_sum`/`_count` of a histogram, …) or, for
/// a family without one, in a `# HELP` line of exactly that name.
pub fn exposes_metric(text: &str, name: &str) -> bool {
    let mut helped = false;
    let mut typed = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(family), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            typed |= family == name;
            let suffixes: &[&str] = match kind {
                // The Prometheus text format names a counter's family with its `_total`.
                "counter" if family.ends_with("_total") => &[""],
                "counter" => &["_total", "_created"],
                "histogram" | "gaugehistogram" => {
                    &["_bucket", "_sum", "_count", "_created", "_gsum", "_gcount"]
                }
                "summary" => &["", "_sum", "_count", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            if suffixes
                .iter()
                .any(|s| name.strip_suffix(s) == Some(family))
            {
                return true;
            }
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            helped |= rest.split_whitespace().next() == Some(name);
        }
    }
    helped && !typed
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while let Some((k, r)) = rest.split_once('=') {
        let r = r.trim_start();
        let Some(r) = r.strip_prefix('"') else { break };
        let mut val = String::new();
        let mut chars = r.char_indices();
        let mut end = r.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        val.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => val.push(c),
            }
        }
        out.push((k.trim().trim_start_matches(',').trim().to_string(), val));
        rest = r[end..].trim_start().trim_start_matches(',').trim_start();
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Sink reader
// ---------------------------------------------------------------------------------------------

/// `kubernetes` enrichment of a record.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Kubernetes {
    pub pod_name: String,
    pub namespace_name: String,
    pub pod_id: String,
    pub host: String,
    pub container_name: String,
    pub docker_id: String,
}

/// One output record of the local sink.
#[derive(Clone, Debug, Deserialize)]
pub struct Record {
    pub log: String,
    pub stream: String,
    pub time: String,
    pub kubernetes: Kubernetes,
}

#[derive(Default, Debug)]
struct SinkFile {
    offset: u64,
    records: Vec<Record>,
}

/// Incremental reader of the local sink's `*.jsonl` files (only complete lines are consumed).
#[derive(Debug)]
pub struct Sink {
    dir: PathBuf,
    files: BTreeMap<PathBuf, SinkFile>,
    bad: Vec<(PathBuf, String, String)>,
    total: usize,
}

impl Sink {
    pub fn new(dir: impl Into<PathBuf>) -> Sink {
        Sink {
            dir: dir.into(),
            files: BTreeMap::new(),
            bad: Vec::new(),
            total: 0,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads newly completed lines; returns the new records (in file order, file by file).
    pub fn poll(&mut self) -> Vec<Record> {
        let mut paths = Vec::new();
        collect_jsonl(&self.dir, &mut paths);
        paths.sort();
        let mut new = Vec::new();
        for path in paths {
            let state = self.files.entry(path.clone()).or_default();
            let Ok(mut f) = File::open(&path) else {
                continue;
            };
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            assert!(
                len >= state.offset,
                "sink file {} shrank from {} to {len} bytes",
                path.display(),
                state.offset
            );
            if len == state.offset {
                continue;
            }
            f.seek(SeekFrom::Start(state.offset)).expect("seek");
            let mut buf = Vec::new();
            f.take(len - state.offset)
                .read_to_end(&mut buf)
                .expect("read sink file");
            let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            for line in buf[..last_nl].split(|&b| b == b'\n') {
                if line.is_empty() {
                    continue;
                }
                match serde_json::from_slice::<Record>(line) {
                    Ok(r) => {
                        state.records.push(r.clone());
                        new.push(r);
                    }
                    Err(e) => self.bad.push((
                        path.clone(),
                        String::from_utf8_lossy(&line[..line.len().min(300)]).into_owned(),
                        e.to_string(),
                    )),
                }
            }
            state.offset += last_nl as u64 + 1;
        }
        self.total += new.len();
        new
    }

    /// All records read so far, file by file.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.files.values().flat_map(|f| f.records.iter())
    }

    /// Records of one sink file so far.
    pub fn file_records(&self, path: &Path) -> &[Record] {
        self.files.get(path).map(|f| &f.records[..]).unwrap_or(&[])
    }

    /// Paths of sink files seen so far.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.keys().map(PathBuf::as_path)
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Lines that were not valid records: `(file, line prefix, error)`.
    pub fn bad_lines(&self) -> &[(PathBuf, String, String)] {
        &self.bad
    }

    /// Records of the container `name` (matched on `kubernetes.container_name`).
    pub fn records_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Record> + 'a {
        self.records()
            .filter(move |r| r.kubernetes.container_name == name)
    }
}

/// One local-sink record as raw JSON, for the fields [`Record`] does not have (`log_processed`,
/// the pod metadata in `kubernetes`), and its exact line.
#[derive(Clone, Debug)]
pub struct RawRecord {
    /// The sink file it is in.
    pub file: PathBuf,
    /// The record's line, without its newline.
    pub line: String,
    pub value: serde_json::Value,
}

impl RawRecord {
    /// `log`.
    pub fn log(&self) -> &str {
        self.value["log"].as_str().unwrap_or_default()
    }

    /// The `kubernetes` object.
    pub fn kubernetes(&self) -> &serde_json::Value {
        &self.value["kubernetes"]
    }

    /// `kubernetes.container_name`.
    pub fn container(&self) -> &str {
        self.kubernetes()["container_name"]
            .as_str()
            .unwrap_or_default()
    }

    /// `kubernetes.pod_id`.
    pub fn pod_id(&self) -> &str {
        self.kubernetes()["pod_id"].as_str().unwrap_or_default()
    }

    /// The sequence number of a sequenced line (`c=<name> seq=<n> …`).
    pub fn seq(&self) -> Option<u64> {
        parse_seq(self.log()).map(|(_, n)| n)
    }
}

/// Every complete record in the local sink under `dir` now, file by file (sorted by path), in
/// file order; panics on a line that is not JSON.
pub fn raw_records(dir: &Path) -> Vec<RawRecord> {
    let mut paths = Vec::new();
    collect_jsonl(dir, &mut paths);
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let Ok(bytes) = fs::read(&path) else { continue };
        let complete = bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(&bytes[..0], |i| &bytes[..i]);
        for line in complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line = String::from_utf8_lossy(line).into_owned();
            let value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{}: not a JSON record ({e}): {line}", path.display()));
            out.push(RawRecord {
                file: path.clone(),
                line,
                value,
            });
        }
    }
    out
}

impl Node {
    /// Every complete record in the local sink now ([`raw_records`]).
    pub fn raw_records(&self) -> Vec<RawRecord> {
        raw_records(&self.out_dir())
    }

    /// The records of container `name` (`kubernetes.container_name`) in the local sink now.
    pub fn raw_records_of(&self, name: &str) -> Vec<RawRecord> {
        let mut v = self.raw_records();
        v.retain(|r| r.container() == name);
        v
    }
}

fn collect_jsonl(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => collect_jsonl(&p, out),
            Ok(t) if t.is_file() && p.extension() == Some(OsStr::new("jsonl")) => out.push(p),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery tracking
// ---------------------------------------------------------------------------------------------

/// Per-container delivery state built from sink records carrying `c=<name> seq=<n>`.
#[derive(Default, Debug, Clone)]
pub struct Track {
    /// Delivery count per sequence number.
    pub count: Vec<u32>,
    /// Distinct sequence numbers delivered.
    pub distinct: u64,
    /// Records beyond the first delivery of their sequence number.
    pub dups: u64,
    /// Highest sequence number delivered so far.
    pub max_first: Option<u64>,
    /// `(seq, previous max)` where a first delivery came after a higher sequence number.
    pub order_violations: Vec<(u64, u64)>,
}

impl Track {
    /// Whether every sequence number in `0..n` has been delivered.
    pub fn has_all(&self, n: u64) -> bool {
        self.distinct >= n && (0..n).all(|s| self.count.get(s as usize).is_some_and(|&c| c > 0))
    }

    /// Sequence numbers in `0..n` not delivered yet.
    pub fn missing(&self, n: u64) -> Vec<u64> {
        (0..n)
            .filter(|&s| self.count.get(s as usize).is_none_or(|&c| c == 0))
            .collect()
    }

    pub fn count_of(&self, seq: u64) -> u32 {
        self.count.get(seq as usize).copied().unwrap_or(0)
    }
}

/// What [`Tracker::observe`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    First(u64),
    Duplicate(u64),
    /// The record's log carries no `c=<name> seq=<n>` of a tracked container.
    Unknown,
}

/// Tracks sequenced records of several containers.
#[derive(Default, Debug)]
pub struct Tracker {
    pub tracks: HashMap<String, Track>,
    /// Records that were not sequenced lines (log prefix kept).
    pub unknown: Vec<String>,
}

/// Polls `has_all` until it holds; `Err(what went wrong)` when `timeout` passes or the
/// agent exits first (`place`: where the records were expected, for the message).
pub fn wait_delivery(
    agent: &mut Agent,
    timeout: Duration,
    place: &str,
    mut has_all: impl FnMut() -> bool,
) -> Result<(), String> {
    let mut exited = None;
    let ok = wait_until(
        || {
            if has_all() {
                return true;
            }
            exited = agent.try_status();
            exited.is_some()
        },
        timeout,
    );
    match exited {
        _ if ok && exited.is_none() => Ok(()),
        Some(st) => Err(format!(
            "kubeship exited ({st}) before delivering everything"
        )),
        None => Err(format!("not everything {place} within {timeout:?}")),
    }
}

impl Tracker {
    /// Describes what is missing of `expect` (`(container name, n)`: all of `0..n`).
    pub fn describe_missing(&self, expect: &[(&str, u64)]) -> String {
        let mut s = String::new();
        for (name, n) in expect {
            let missing = self.track(name).missing(*n);
            if !missing.is_empty() {
                let _ = writeln!(
                    s,
                    "  {name}: {} of {n} missing: {}",
                    missing.len(),
                    ranges(&missing, 12)
                );
            }
        }
        s
    }

    pub fn new() -> Tracker {
        Tracker::default()
    }

    pub fn observe(&mut self, rec: &Record) -> (Option<String>, Seen) {
        let Some((name, seq)) = parse_seq(&rec.log) else {
            self.unknown.push(truncate_for_display(&rec.log));
            return (None, Seen::Unknown);
        };
        let t = self.tracks.entry(name.to_string()).or_default();
        let i = seq as usize;
        if t.count.len() <= i {
            t.count.resize(i + 1, 0);
        }
        t.count[i] += 1;
        let seen = if t.count[i] == 1 {
            t.distinct += 1;
            if let Some(m) = t.max_first
                && seq < m
            {
                t.order_violations.push((seq, m));
            }
            t.max_first = Some(t.max_first.map_or(seq, |m| m.max(seq)));
            Seen::First(seq)
        } else {
            t.dups += 1;
            Seen::Duplicate(seq)
        };
        (Some(name.to_string()), seen)
    }

    pub fn track(&self, name: &str) -> Track {
        self.tracks.get(name).cloned().unwrap_or_default()
    }

    pub fn has_all(&self, name: &str, n: u64) -> bool {
        n == 0 || self.tracks.get(name).is_some_and(|t| t.has_all(n))
    }

    pub fn total_dups(&self) -> u64 {
        self.tracks.values().map(|t| t.dups).sum()
    }
}

/// A [`Sink`] plus a [`Tracker`] fed from it.
#[derive(Debug)]
pub struct Delivery {
    pub sink: Sink,
    pub tracker: Tracker,
    /// When each poll ran and how many records the sink held then: a lower bound of what
    /// had been delivered by that time.
    pub polls: Vec<(Instant, usize)>,
}

impl Delivery {
    pub fn new(node: &Node) -> Delivery {
        Delivery {
            sink: node.sink(),
            tracker: Tracker::new(),
            polls: Vec::new(),
        }
    }

    /// Reads new sink records and feeds them to the tracker; returns them.
    pub fn poll(&mut self) -> Vec<Record> {
        let new = self.sink.poll();
        for r in &new {
            self.tracker.observe(r);
        }
        self.polls.push((Instant::now(), self.sink.total()));
        new
    }

    /// Records the sink held at the last poll at or before `t` (0 before the first).
    pub fn total_at(&self, t: Instant) -> usize {
        let i = self.polls.partition_point(|&(at, _)| at <= t);
        i.checked_sub(1).map_or(0, |i| self.polls[i].1)
    }

    /// Whether every `(container name, n)` has all of `0..n` delivered (after a poll).
    pub fn has_all(&mut self, expect: &[(&str, u64)]) -> bool {
        self.poll();
        expect
            .iter()
            .all(|(name, n)| self.tracker.has_all(name, *n))
    }

    /// Describes what is missing of `expect`.
    pub fn describe_missing(&self, expect: &[(&str, u64)]) -> String {
        self.tracker.describe_missing(expect)
    }

    /// Polls until every `(container name, n)` has all of `0..n` delivered; panics after
    /// `timeout` (listing what is missing) or if the agent exits meanwhile.
    #[track_caller]
    pub fn wait_all(&mut self, agent: &mut Agent, expect: &[(&str, u64)], timeout: Duration) {
        let Err(what) = wait_delivery(agent, timeout, "delivered", || self.has_all(expect)) else {
            return;
        };
        panic!(
            "{what}:\n{}sink: {} records, {} bad lines; stderr tail:\n{}",
            self.describe_missing(expect),
            self.sink.total(),
            self.sink.bad_lines().len(),
            agent.stderr_tail(40)
        );
    }
}

/// Formats a list of numbers compactly as ranges (`1-5, 9, 12-13`), at most `max` items.
pub fn ranges(nums: &[u64], max: usize) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < nums.len() && parts.len() < max {
        let start = nums[i];
        let mut end = start;
        while i + 1 < nums.len() && nums[i + 1] == end + 1 {
            i += 1;
            end = nums[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    if i < nums.len() {
        parts.push("…".into());
    }
    parts.join(", ")
}

/// Copies a directory tree, recreating symlinks as symlinks (targets unchanged).
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let src = e.path();
        let dst = to.join(e.file_name());
        let t = e.file_type()?;
        if t.is_symlink() {
            symlink(fs::read_link(&src)?, &dst)?;
        } else if t.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// Root of the repository (the tests crate lives in `<root>/tests`). Cargo's run-time
/// `CARGO_MANIFEST_DIR` comes first: checkouts sharing a target directory share this
/// library's build, so the compile-time one may name another checkout.
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .parent()
        .expect("tests crate has a parent")
        .to_path_buf()
}

/// Lines of `text` that look like `FILE:LINE:COL: key.path: message`, parsed.
pub fn parse_diagnostics(text: &str) -> Vec<Diagnostic> {
    text.lines().filter_map(Diagnostic::parse).collect()
}

/// One `FILE:LINE:COL: key.path: message` line from `kubeship validate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub key: String,
    pub message: String,
}

impl Diagnostic {
    pub fn parse(l: &str) -> Option<Diagnostic> {
        // FILE may contain ':' itself: take the first ":<digits>:<digits>: " occurrence.
        for (i, _) in l.match_indices(':') {
            let rest = &l[i + 1..];
            let Some((line, rest)) = rest.split_once(':') else {
                continue;
            };
            let Ok(line) = line.parse::<u32>() else {
                continue;
            };
            let Some((col, rest)) = rest.split_once(':') else {
                continue;
            };
            let Ok(col) = col.parse::<u32>() else {
                continue;
            };
            let rest = rest.strip_prefix(' ')?;
            let (key, message) = rest.split_once(": ")?;
            return Some(Diagnostic {
                file: l[..i].to_string(),
                line,
                col,
                key: key.to_string(),
                message: message.to_string(),
            });
        }
        None
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.col, self.key, self.message
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_parsing() {
        let text = "# HELP x\n# TYPE kubeship_log_lines_read_total counter\n\
                    kubeship_log_lines_read_total 42\n\
                    kubeship_log_records_dropped_total{reason=\"unreadable\"} 2\n\
                    kubeship_log_records_dropped_total{reason=\"deleted\",x=\"a,b\"} 3.0\n\
                    kubeship_log_lines_read_total_other 7\n# EOF\n";
        assert_eq!(
            metric_value(text, "kubeship_log_lines_read_total", &[]),
            Some(42.0)
        );
        assert_eq!(
            metric_value(text, "kubeship_log_records_dropped_total", &[]),
            Some(5.0)
        );
        assert_eq!(
            metric_value(
                text,
                "kubeship_log_records_dropped_total",
                &[("reason", "deleted"), ("x", "a,b")]
            ),
            Some(3.0)
        );
        assert_eq!(metric_value(text, "kubeship_missing", &[]), None);
    }

    #[test]
    fn metric_names_must_be_exposed() {
        // As the agent writes them (OpenMetrics): families without their sample suffixes.
        let text = "# HELP kubeship_log_records_truncated Log records cut.\n\
                    # TYPE kubeship_log_records_truncated counter\n\
                    kubeship_log_records_truncated_total 2\n\
                    # TYPE kubeship_log_records_dropped counter\n\
                    # TYPE kubeship_inflight_bytes gauge\n\
                    kubeship_inflight_bytes 7\n\
                    # TYPE kubeship_batch_ack_seconds histogram\n\
                    kubeship_batch_ack_seconds_count 1\n# EOF\n";
        assert_eq!(
            metric_sum(text, "kubeship_log_records_truncated_total", &[]),
            2.0
        );
        assert_eq!(
            metric_sum(
                text,
                "kubeship_log_records_dropped_total",
                &[("reason", "x")]
            ),
            0.0,
            "exposed, no series yet"
        );
        assert_eq!(metric_sum(text, "kubeship_inflight_bytes", &[]), 7.0);
        assert_eq!(
            metric_sum(text, "kubeship_batch_ack_seconds_count", &[]),
            1.0
        );
        for unknown in [
            "kubeship_cloudwatch_events_truncated_total",
            "kubeship_inflight_bytes_total",
            "kubeship_batch_ack_seconds",
            "kubeship_log_records",
            "kubeship_log_records_truncated",
        ] {
            assert!(!exposes_metric(text, unknown), "{unknown}");
            let r = std::panic::catch_unwind(|| metric_sum(text, unknown, &[]));
            assert!(r.is_err(), "{unknown} read as a value");
        }
    }

    #[test]
    fn framing_and_seq() {
        let c = ContainerInfo {
            namespace: "ns".into(),
            pod: "p".into(),
            name: "c1".into(),
            pod_uid: "u".into(),
            container_id: "i".into(),
            format: Format::Cri,
            pad_min: 5,
            pad_spread: 3,
            time_base_ms: None,
        };
        let m = c.message(17);
        assert_eq!(parse_seq(&m), Some(("c1", 17)));
        let cri = frame(Format::Cri, &time_for(1), "stdout", b"hi", true);
        assert_eq!(cri, b"2026-11-23T10:00:00.001000001Z stdout P hi\n");
        let d = frame(Format::Docker, "t", "stderr", b"a\"b\xff", false);
        assert_eq!(
            d,
            b"{\"log\":\"a\\\"b\xff\\n\",\"stream\":\"stderr\",\"time\":\"t\"}\n"
        );
        let v: serde_json::Value =
            serde_json::from_slice(&frame(Format::Docker, "t", "stdout", b"x\ty", true))
                .expect("valid json");
        assert_eq!(v["log"], "x\ty");
    }

    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000000000Z");
        for t in [
            "2026-11-23T10:00:00.001000001Z",
            "2024-02-29T23:59:59.999999999Z",
            "2000-03-01T00:00:00.000000000Z",
            "1999-12-31T12:34:56.500000000Z",
        ] {
            let n = parse_rfc3339_nanos(t).expect("parses");
            assert_eq!(rfc3339_nanos(n), t);
        }
        assert_eq!(
            parse_rfc3339_nanos("2026-11-23T12:00:00.5+02:00"),
            parse_rfc3339_nanos("2026-11-23T10:00:00.500000000Z")
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-23T10:00:00.001999999Z"),
            Some(1_795_428_000_001)
        );
        assert_eq!(parse_rfc3339_ms(&time_for(0)), Some(1_795_428_000_000));
        assert!(parse_rfc3339_nanos("2026-11-23 10:00:00").is_none());
        assert!(parse_rfc3339_nanos("2026-13-23T10:00:00Z").is_none());
        assert!(parse_rfc3339_nanos("2026-11-23T10:00:00.Z").is_none());

        let node = Node::new();
        let mut c = node.add_container("ns", "pod", "app", Format::Cri);
        assert_eq!(c.info().time(5), time_for(5), "fixed times by default");
        let base = 1_795_000_000_123;
        c.set_time_base_ms(Some(base));
        for seq in [0, 1, 996, 997, 12_345] {
            assert_eq!(c.info().timestamp_ms(seq), base + seq as i64);
            let nanos = parse_rfc3339_nanos(&c.info().time(seq)).expect("time");
            assert_eq!(nanos % 1_000_000, i128::from(seq % 997));
        }
        let seq = c.write_line_at("2026-11-20T00:00:00.000000000Z");
        assert_eq!((seq, c.written()), (0, 1));
        let text = fs::read_to_string(c.live_path()).expect("read");
        assert!(text.starts_with("2026-11-20T00:00:00.000000000Z stdout F c=app seq=0 "));
    }

    #[test]
    fn cloudwatch_config_yaml() {
        let mut cfg = AgentConfig::default();
        assert!(cfg.env().is_empty());
        assert!(cfg.to_yaml(1).contains("  local:\n    dir: ./out\n"));
        cfg.stream_template = "{namespace}".into();
        cfg.cloudwatch = Some(CloudWatchOpts::for_endpoint("http://127.0.0.1:9"));
        let y = cfg.to_yaml(1);
        assert!(!y.contains("local:"), "{y}");
        assert!(
            y.contains(
                "output:\n  group: \"/aws/containerinsights/{cluster}/application\"\n  \
                 stream: \"{namespace}\"\n  cloudwatch:\n    region: \"us-east-1\"\n    \
                 endpoint_url: \"http://127.0.0.1:9\"\n    create_group: true\n    \
                 retention_days: 7\n    log_group_class: STANDARD\n    \
                 tags: {\"team\": \"platform\"}\n    max_concurrent_requests: 8\n    \
                 request_timeout_secs: 10\nkubernetes: {enabled: false}\ntelemetry:"
            ),
            "{y}"
        );
        let env = cfg.env();
        assert!(env.contains(&("AWS_ACCESS_KEY_ID", "testing".into())));
        assert!(env.contains(&("AWS_SECRET_ACCESS_KEY", "testing".into())));
        assert!(env.contains(&("AWS_REGION", "us-east-1".into())));
        assert!(env.contains(&("AWS_EC2_METADATA_DISABLED", "true".into())));
        let dir = tempfile::tempdir().expect("temp dir");
        cfg.aws_env = Some(aws_env_without_keys("eu-west-1", dir.path()));
        let env = cfg.env();
        assert!(
            !env.iter().any(|(k, _)| k.starts_with("AWS_ACCESS_KEY")),
            "{env:?}"
        );
        assert!(
            !env.iter().any(|(k, _)| *k == "AWS_SECRET_ACCESS_KEY"),
            "{env:?}"
        );
        assert!(env.contains(&("AWS_REGION", "eu-west-1".into())));
        assert!(env.contains(&("NO_PROXY", "127.0.0.1,localhost".into())));
        cfg.cloudwatch = None;
        assert!(
            cfg.env().is_empty(),
            "no AWS environment without the CloudWatch sink"
        );
    }

    #[test]
    fn diagnostics_parse() {
        let d = Diagnostic::parse("cfg/k.yaml:12:5: logs.read_from: unknown variant `x`")
            .expect("parses");
        assert_eq!(d.file, "cfg/k.yaml");
        assert_eq!((d.line, d.col), (12, 5));
        assert_eq!(d.key, "logs.read_from");
        assert!(Diagnostic::parse("error: something").is_none());
    }

    #[test]
    fn rng_is_deterministic() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert!((0..1000).all(|_| a.range(3, 9) < 9));
    }

    #[test]
    fn ranges_format() {
        assert_eq!(ranges(&[1, 2, 3, 7, 9, 10], 10), "1-3, 7, 9-10");
        assert_eq!(ranges(&[1, 3, 5], 2), "1, 3, …");
    }

    #[test]
    fn container_rotation_bookkeeping() {
        let node = Node::new();
        let mut c = node.add_container("ns", "pod", "app", Format::Docker);
        c.write_lines(3);
        c.rotate();
        c.write_partial(3);
        c.copytruncate();
        c.write_lines(2);
        c.rotate();
        let gz = c.gzip_oldest().expect("oldest rotated gets gzipped");
        assert!(gz.to_string_lossy().ends_with(".gz"));
        let second = c.gzip_oldest().expect("second oldest gets gzipped");
        assert_eq!(second, c.rotated()[1].path);
        assert_eq!(
            c.gzip_oldest(),
            None,
            "the newest rotated file stays uncompressed"
        );
        assert!(c.rotated()[0].gz && c.rotated()[1].gz && !c.rotated()[2].gz);
        let mut text = String::new();
        flate2::read::GzDecoder::new(File::open(&second).expect("open gz"))
            .read_to_string(&mut text)
            .expect("gunzip");
        assert_eq!(text.lines().count(), 3, "3 partial pieces: {text}");
        assert!(
            !second.with_extension("tmp").exists(),
            "the .tmp file is renamed"
        );
        assert!(
            !second.with_extension("").exists(),
            "the uncompressed file is deleted"
        );
        assert_eq!(
            c.rotated()
                .iter()
                .map(|r| r.seqs.clone())
                .collect::<Vec<_>>(),
            vec![0..3, 3..4, 4..6]
        );
        assert_eq!(fs::metadata(c.live_path()).expect("live").len(), 0);
        let target = fs::read_link(c.link_path()).expect("symlink");
        assert!(target.is_relative());
        assert!(fs::metadata(c.link_path()).is_ok(), "symlink resolves");
        let r = c.delete_rotated_oldest().expect("deleted");
        assert!(!r.path.exists());
    }
}
