//! The embedded local sink: writes what CloudWatch would receive to files.
//!
//! Each record goes to `DIR/<log group>/<log stream>.jsonl` (the group's leading
//! `/` dropped, its other `/` making directories), one record per line, exactly the
//! message CloudWatch would get. A batch is acknowledged once all its lines were
//! written to the files (handed to the kernel: they survive the agent being killed).
//! A failed write is retried with backoff; nothing is acknowledged before it is
//! written.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use crate::logs::batch::{Batch, Destination};
use crate::logs::ledger::Ledger;
use crate::net::backoff::Backoff;
use crate::telemetry::Metrics;

/// Open files kept at most; others are closed and reopened on demand.
const MAX_OPEN: usize = 512;

/// Slices per `writev` (the kernel's IOV_MAX is 1024).
const MAX_IOVECS: usize = 1024;

/// Writes every slice, continuing after short writes.
fn write_all_vectored(file: &mut File, slices: &[&[u8]]) -> io::Result<()> {
    let mut iov: Vec<IoSlice<'_>> = slices.iter().map(|s| IoSlice::new(s)).collect();
    let mut iov = &mut iov[..];
    while !iov.is_empty() {
        match file.write_vectored(iov) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut iov, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The local sink's metrics.
pub struct LocalSinkMetrics {
    /// Records written.
    pub local_sink_records_written: Counter,
    /// Write errors (each retried).
    pub local_sink_write_errors: Counter,
}

impl LocalSinkMetrics {
    /// Creates the local sink's metrics and registers them.
    pub fn register(r: &mut Registry) -> Self {
        let m = Self {
            local_sink_records_written: Counter::default(),
            local_sink_write_errors: Counter::default(),
        };
        r.register(
            "local_sink_records_written",
            "Records written by the embedded local sink",
            m.local_sink_records_written.clone(),
        );
        r.register(
            "local_sink_write_errors",
            "Write errors in the embedded local sink (the batch is retried)",
            m.local_sink_write_errors.clone(),
        );
        m
    }
}

/// The local sink.
pub struct LocalSink {
    dir: PathBuf,
    open: HashMap<Arc<Destination>, File>,
    ledger: Arc<Ledger>,
    metrics: Arc<Metrics>,
}

/// Maps a group and stream to the output file, without escaping `dir`.
pub fn output_path(dir: &Path, dest: &Destination) -> PathBuf {
    let mut p = dir.to_path_buf();
    for c in Path::new(&dest.group).components() {
        if let Component::Normal(c) = c {
            p.push(c);
        }
    }
    let stream: String = dest
        .stream
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    let stream = if stream == "." || stream == ".." || stream.is_empty() {
        format!("_{stream}")
    } else {
        stream
    };
    p.push(format!("{stream}.jsonl"));
    p
}

impl LocalSink {
    /// A sink writing under `dir`.
    pub fn new(dir: PathBuf, ledger: Arc<Ledger>, metrics: Arc<Metrics>) -> Self {
        Self {
            dir,
            open: HashMap::new(),
            ledger,
            metrics,
        }
    }

    /// Receives batches until the channel closes; acknowledges each once written.
    pub fn run(mut self, mut rx: mpsc::Receiver<Batch>) {
        // A crash during a write can leave a partial last line; it was never
        // acknowledged, so it is read again from the log files: drop the fragment.
        let mut repaired = 0;
        repair_tails(&self.dir, &mut repaired);
        if repaired > 0 {
            tracing::warn!(files = repaired, dir = %self.dir.display(),
                "dropped partial last lines left by an interrupted write (they are delivered again)");
        }
        while let Some(batch) = rx.blocking_recv() {
            let mut retry = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
            loop {
                match self.write(&batch) {
                    Ok(()) => break,
                    Err(e) => {
                        let delay = retry.next().unwrap_or(Duration::from_secs(10));
                        self.metrics.local_sink.local_sink_write_errors.inc();
                        tracing::error!(error = %e, dir = %self.dir.display(), retry_in_ms = delay.as_millis() as u64, "local sink write failed; retrying");
                        self.open.clear();
                        std::thread::sleep(delay);
                    }
                }
            }
            self.metrics
                .local_sink
                .local_sink_records_written
                .inc_by(batch.events.len() as u64);
            self.ledger.ack(batch.seq);
        }
    }

    /// Writes one batch straight from its buffer: one vectored write per
    /// destination file (runs of its consecutive records).
    fn write(&mut self, batch: &Batch) -> io::Result<()> {
        for (dest, runs) in batch.dests.iter().zip(batch.lines_by_dest()) {
            if runs.is_empty() {
                continue;
            }
            let file = self.file(dest)?;
            for chunk in runs.chunks(MAX_IOVECS) {
                write_all_vectored(file, chunk)?;
            }
        }
        Ok(())
    }

    fn file(&mut self, dest: &Arc<Destination>) -> io::Result<&mut File> {
        if !self.open.contains_key(dest.as_ref()) {
            if self.open.len() >= MAX_OPEN {
                self.open.clear();
            }
            let path = output_path(&self.dir, dest);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            let f = OpenOptions::new().create(true).append(true).open(&path)?;
            self.open.insert(Arc::clone(dest), f);
        }
        Ok(self.open.get_mut(dest.as_ref()).expect("inserted above"))
    }
}

/// Cuts every `*.jsonl` under `dir` back to its last complete line.
fn repair_tails(dir: &Path, repaired: &mut usize) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => repair_tails(&p, repaired),
            Ok(t) if t.is_file() && p.extension().is_some_and(|x| x == "jsonl") => {
                match repair_tail(&p) {
                    Ok(true) => *repaired += 1,
                    Ok(false) => {}
                    Err(err) => {
                        tracing::warn!(path = %p.display(), error = %err, "checking a local sink file failed")
                    }
                }
            }
            _ => {}
        }
    }
}

/// Truncates `path` after its last newline when it does not end with one.
fn repair_tail(path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        f.read_exact_at(chunk, start)?;
        if let Some(nl) = memchr::memrchr(b'\n', chunk) {
            let keep = start + nl as u64 + 1;
            if keep == len {
                return Ok(false);
            }
            f.set_len(keep)?;
            return Ok(true);
        }
        end = start;
    }
    if len == 0 {
        return Ok(false);
    }
    f.set_len(0)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_last_lines_are_cut_back() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("g");
        fs::create_dir_all(&sub).unwrap();
        fs::write(sub.join("a.jsonl"), b"{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap();
        fs::write(sub.join("b.jsonl"), b"{\"b\":1}\n").unwrap();
        fs::write(sub.join("c.jsonl"), b"{\"c\"").unwrap();
        let mut n = 0;
        repair_tails(dir.path(), &mut n);
        assert_eq!(n, 2);
        assert_eq!(
            fs::read(sub.join("a.jsonl")).unwrap(),
            b"{\"a\":1}\n{\"a\":2}\n"
        );
        assert_eq!(fs::read(sub.join("b.jsonl")).unwrap(), b"{\"b\":1}\n");
        assert_eq!(fs::read(sub.join("c.jsonl")).unwrap(), b"");
    }

    #[test]
    fn output_paths_stay_inside_the_directory() {
        let d = |g: &str, s: &str| Destination {
            group: g.into(),
            stream: s.into(),
        };
        let base = Path::new("out");
        assert_eq!(
            output_path(base, &d("/aws/containerinsights/c/application", "p_ns_c")),
            Path::new("out/aws/containerinsights/c/application/p_ns_c.jsonl")
        );
        assert_eq!(
            output_path(base, &d("/../../etc", "a/b")),
            Path::new("out/etc/a_b.jsonl")
        );
        assert_eq!(
            output_path(base, &d("g", "..")),
            Path::new("out/g/_...jsonl")
        );
    }

    mod property {
        use super::*;
        use crate::logs::batch::BatchBuilder;
        use crate::logs::checkpoint::Store;
        use proptest::prelude::*;
        use std::time::Instant;

        /// Destinations, hostile ones among them (two of them share a file).
        const DESTS: [(&str, &str); 5] = [
            ("/aws/containerinsights/c/application", "web_shop_app"),
            ("/../../etc", ".."),
            ("/g", "a/b"),
            ("/g", "a_b"),
            ("/é/ü", "日本"),
        ];

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(24))]

            /// Whatever the records (sizes up to and past an event, bytes JSON must
            /// escape), every batch handed to the local sink is written and acknowledged,
            /// each record as one line of its destination's file, in order.
            #[test]
            fn every_batch_is_written_and_acknowledged(
                batches in prop::collection::vec(
                    prop::collection::vec(
                        (0usize..DESTS.len(),
                         prop_oneof![4 => 0usize..200, 1 => 1000usize..200_000, 1 => 1_000_000usize..1_100_000],
                         any::<u8>()),
                        1..40),
                    1..6),
            ) {
                let dir = tempfile::tempdir().unwrap();
                let metrics = Arc::new(Metrics::new());
                let ledger = Arc::new(Ledger::new(Store::default(), Arc::clone(&metrics)));
                let dests: Vec<Arc<Destination>> = DESTS
                    .iter()
                    .map(|(g, s)| Arc::new(Destination { group: (*g).into(), stream: (*s).into() }))
                    .collect();
                let sink = LocalSink::new(dir.path().to_path_buf(), Arc::clone(&ledger), metrics);
                let (tx, rx) = mpsc::channel(2);
                let t = std::thread::spawn(move || sink.run(rx));
                let mut want: HashMap<PathBuf, Vec<u8>> = HashMap::new();
                for records in &batches {
                    let mut bb = BatchBuilder::new(8 << 20, 10_000);
                    for &(d, len, byte) in records {
                        let msg = vec![byte; len];
                        bb.push(&dests[d], 0, Instant::now(), |o| {
                            o.extend_from_slice(b"{\"log\":\"");
                            crate::logs::encode::escape_bytes_into(&msg, o);
                            o.extend_from_slice(b"\"}");
                            0
                        });
                    }
                    let mut b = bb.seal(vec![], Instant::now());
                    ledger.submit(&mut b);
                    for (i, dest) in b.dests.iter().enumerate() {
                        let file = want.entry(output_path(dir.path(), dest)).or_default();
                        for e in b.events.iter().filter(|e| e.dest as usize == i) {
                            file.extend_from_slice(&b.record(e));
                            file.push(b'\n');
                        }
                    }
                    tx.blocking_send(b).unwrap();
                }
                drop(tx);
                t.join().unwrap();
                prop_assert_eq!(ledger.batches_in_flight(), 0, "every batch acknowledged");
                for (path, bytes) in want {
                    let got = fs::read(&path).unwrap();
                    prop_assert!(got == bytes, "{}: {} bytes, want {}", path.display(), got.len(), bytes.len());
                }
            }
        }
    }
}
