//! Node layout.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::*;

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
    /// Where the metrics pipeline's local sink writes the samples (JSON lines) when
    /// [`AgentConfig::metrics`] is set without a `remote_write` endpoint (its default
    /// directory, `<state_dir>/metrics-sink`).
    pub fn scraped_file(&self) -> PathBuf {
        self.state_dir().join("metrics-sink/samples.jsonl")
    }

    /// The samples the agent's scrapes wrote so far.
    pub fn scraped(&self) -> Vec<Scraped> {
        read_scraped(&self.scraped_file())
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

pub(crate) fn truncate_for_display(s: &str) -> String {
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
