//! The metrics pipeline's local sink: with no remote-write endpoint, samples are
//! written as JSON lines under `metrics.local.dir`, as the log pipeline's local sink
//! writes records — for the quick start, for a look at what would be sent, and for a
//! script to check.
//!
//! One line per sample, in `DIR/samples.jsonl`:
//!
//! ```text
//! {"labels":{"__name__":"up","job":"api"},"t":1700000000000,"v":1.0}
//! ```
//!
//! `labels` sorted by name, `t` in milliseconds since the Unix epoch, `v` a JSON number,
//! or `"NaN"`, `"+Inf"`, `"-Inf"`, and `"stale"` for Prometheus's staleness marker.
//! Past [`ROTATE_BYTES`] the file is renamed `samples.jsonl.1` (replacing an older
//! one) and a new one begun, so the sink holds at most twice that on disk.
//!
//! A push queues the samples (bounded by [`MAX_PENDING`]: beyond it the oldest are
//! dropped, counted) and a thread of its own writes them; a write that fails drops
//! what it held, counted and logged (rate-limited).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Instant;

use anyhow::Context as _;
use prometheus_client::registry::Registry;

use crate::metrics::series::{Destination, Sample, is_stale};
use crate::telemetry::LogLimits;
use crate::telemetry::metrics::{CounterBy, label_values, register_by};

/// The file samples are appended to.
pub const FILE_NAME: &str = "samples.jsonl";
/// The file is rotated once it is this large.
pub const ROTATE_BYTES: u64 = 256 * 1024 * 1024;
/// Lines are written in pieces of about this size.
const WRITE_BYTES: usize = 64 * 1024;
/// Samples queued for the writer at most.
pub const MAX_PENDING: usize = 1_000_000;

label_values! {
    /// What became of samples handed to the local sink
    /// (`metrics_local_sink_samples_total{outcome}`).
    pub enum LocalOutcome {
        /// Written to the file.
        Written => "written",
        /// Dropped: the queue was full, or the write failed.
        Dropped => "dropped",
    }
}

/// The local sink's metrics.
pub struct MetricsLocalSinkMetrics {
    /// Samples by outcome.
    pub samples: CounterBy<LocalOutcome>,
}

impl MetricsLocalSinkMetrics {
    /// Creates the sink's metrics and registers them.
    pub fn register(r: &mut Registry) -> Self {
        let m = Self {
            samples: CounterBy::default(),
        };
        register_by(
            r,
            "metrics_local_sink_samples",
            "Samples the metrics pipeline's local sink wrote, or dropped (queue full, write failed)",
            "outcome",
            LocalOutcome::ALL,
            &m.samples,
        );
        m
    }

    fn count(&self, outcome: LocalOutcome, n: usize) {
        if n > 0 {
            self.samples
                .get_or_create(&[("outcome", outcome)])
                .inc_by(n as u64);
        }
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Sample>,
    closing: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    metrics: Arc<crate::telemetry::Metrics>,
}

/// The local sink as the scraping side's destination.
pub struct LocalSink {
    shared: Arc<Shared>,
}

impl Destination for LocalSink {
    fn push(&self, samples: Vec<Sample>) {
        let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.closing {
            drop(st);
            self.shared
                .metrics
                .metrics_local_sink
                .count(LocalOutcome::Dropped, samples.len());
            return;
        }
        st.queue.extend(samples);
        let over = st.queue.len().saturating_sub(MAX_PENDING);
        st.queue.drain(..over);
        drop(st);
        self.shared.wake.notify_one();
        self.shared
            .metrics
            .metrics_local_sink
            .count(LocalOutcome::Dropped, over);
    }
}

/// The writer thread.
pub struct Running {
    shared: Arc<Shared>,
    done: std::sync::mpsc::Receiver<()>,
    thread: thread::JoinHandle<()>,
}

/// Creates `dir` and starts the writer.
pub fn start(
    dir: &Path,
    metrics: &Arc<crate::telemetry::Metrics>,
) -> anyhow::Result<(Arc<LocalSink>, Running)> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the metrics local sink dir {}", dir.display()))?;
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        wake: Condvar::new(),
        metrics: Arc::clone(metrics),
    });
    let (tx, done) = std::sync::mpsc::channel();
    let writer = Writer {
        path: dir.join(FILE_NAME),
        file: None,
        size: 0,
        line: Vec::with_capacity(64 * 1024),
        limits: LogLimits::default(),
    };
    let s = Arc::clone(&shared);
    let thread = thread::Builder::new()
        .name("metrics-sink".into())
        .spawn(move || {
            writer.run(&s);
            let _ = tx.send(());
        })?;
    tracing::info!(dir = %dir.display(), "metrics local sink started");
    Ok((
        Arc::new(LocalSink {
            shared: Arc::clone(&shared),
        }),
        Running {
            shared,
            done,
            thread,
        },
    ))
}

impl Running {
    /// Writes what is queued, until `deadline` at most.
    pub fn shutdown(self, deadline: Instant) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .closing = true;
        self.shared.wake.notify_one();
        let left = deadline.saturating_duration_since(Instant::now());
        if self.done.recv_timeout(left).is_ok() {
            let _ = self.thread.join();
        }
    }
}

struct Writer {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    line: Vec<u8>,
    limits: LogLimits,
}

impl Writer {
    fn run(mut self, shared: &Shared) {
        let mut batch: VecDeque<Sample> = VecDeque::new();
        loop {
            let closing = {
                let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                while st.queue.is_empty() && !st.closing {
                    st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                std::mem::swap(&mut st.queue, &mut batch);
                st.closing
            };
            if !batch.is_empty() {
                let n = batch.len();
                let outcome = match self.write(&batch) {
                    Ok(()) => LocalOutcome::Written,
                    Err(e) => {
                        self.file = None;
                        if let Some(suppressed) = self.limits.allow("write", Instant::now()) {
                            tracing::error!(path = %self.path.display(), error = %e, samples = n, suppressed, "metrics local sink: write failed; the samples are dropped");
                        }
                        LocalOutcome::Dropped
                    }
                };
                shared.metrics.metrics_local_sink.count(outcome, n);
                batch.clear();
            } else if closing {
                return;
            }
        }
    }

    fn write(&mut self, batch: &VecDeque<Sample>) -> std::io::Result<()> {
        if self.file.is_none() || self.size >= ROTATE_BYTES {
            if self.size >= ROTATE_BYTES {
                let mut old = self.path.clone().into_os_string();
                old.push(".1");
                std::fs::rename(&self.path, old)?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = f.metadata()?.len();
            self.file = Some(f);
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        self.line.clear();
        for (i, s) in batch.iter().enumerate() {
            write_line(s, &mut self.line);
            if self.line.len() >= WRITE_BYTES || i + 1 == batch.len() {
                file.write_all(&self.line)?;
                self.size += self.line.len() as u64;
                self.line.clear();
            }
        }
        Ok(())
    }
}

/// Appends `s` as one JSON line.
pub fn write_line(s: &Sample, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"labels\":{");
    for (i, (name, value)) in s.series.labels().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, name);
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, value);
    }
    out.extend_from_slice(b"},\"t\":");
    out.extend_from_slice(s.timestamp_ms.to_string().as_bytes());
    out.extend_from_slice(b",\"v\":");
    let v = s.value;
    if is_stale(v) {
        out.extend_from_slice(b"\"stale\"");
    } else if v.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if v == f64::INFINITY {
        out.extend_from_slice(b"\"+Inf\"");
    } else if v == f64::NEG_INFINITY {
        out.extend_from_slice(b"\"-Inf\"");
    } else {
        let _ = serde_json::to_writer(&mut *out, &v);
    }
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::series::{Series, stale_nan};

    fn sample(labels: &[(&str, &str)], t: i64, v: f64) -> Sample {
        Sample {
            series: Series::new(labels.iter().copied()).unwrap(),
            timestamp_ms: t,
            value: v,
        }
    }

    #[test]
    fn lines_a_person_can_read_and_a_script_can_check() {
        let mut out = Vec::new();
        let labels = [("job", "a\"b"), ("__name__", "up"), ("pod", "p-é")];
        for (v, want) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5e-300, "-2.5e-300"),
            (f64::NAN, "\"NaN\""),
            (f64::INFINITY, "\"+Inf\""),
            (f64::NEG_INFINITY, "\"-Inf\""),
            (stale_nan(), "\"stale\""),
        ] {
            out.clear();
            write_line(&sample(&labels, 1_700_000_000_123, v), &mut out);
            assert_eq!(
                String::from_utf8(out.clone()).unwrap(),
                format!(
                    "{{\"labels\":{{\"__name__\":\"up\",\"job\":\"a\\\"b\",\"pod\":\"p-é\"}},\"t\":1700000000123,\"v\":{want}}}\n"
                )
            );
            let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
            if let Some(n) = back["v"].as_f64() {
                assert_eq!(n.to_bits(), v.to_bits(), "numbers round-trip exactly");
            }
        }
    }

    #[test]
    fn samples_are_written_in_order_and_flushed_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(crate::telemetry::Metrics::new());
        let (sink, running) = start(dir.path(), &metrics).unwrap();
        for i in 0..3 {
            sink.push(vec![
                sample(&[("__name__", "a")], i, i as f64),
                sample(&[("__name__", "b")], i, stale_nan()),
            ]);
        }
        running.shutdown(Instant::now() + Duration::from_secs(10));
        sink.push(vec![sample(&[("__name__", "late")], 9, 9.0)]);
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert_eq!(lines[4], r#"{"labels":{"__name__":"a"},"t":2,"v":2.0}"#);
        assert_eq!(lines[5], r#"{"labels":{"__name__":"b"},"t":2,"v":"stale"}"#);
        let m = metrics.encode();
        assert!(
            m.contains(r#"kubeship_metrics_local_sink_samples_total{outcome="written"} 6"#),
            "{m}"
        );
        assert!(
            m.contains(r#"kubeship_metrics_local_sink_samples_total{outcome="dropped"} 1"#),
            "pushed after shutdown: {m}"
        );
    }
}
