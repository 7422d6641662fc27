//! The log pipeline's own metrics (tailer, ledger, checkpoints) and their label values.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::telemetry::metrics::{CounterBy, label_values, register_by};

label_values! {
    /// Why records were deliberately not delivered (`log_records_dropped_total`).
    pub enum DropReason {
        /// CloudWatch rejected them as older than 14 days.
        TooOld => "too_old",
        /// CloudWatch rejected them as more than 2 hours in the future.
        TooNew => "too_new",
        /// CloudWatch rejected them as older than the group's retention.
        Expired => "expired",
        /// CloudWatch refused one alone as invalid.
        InvalidParameter => "invalid_parameter",
        /// Larger than one event may be (cannot happen with bounded records).
        TooLarge => "too_large",
        /// Their pod asked for them not to be shipped.
        Excluded => "excluded",
    }
}

label_values! {
    /// What was left out of a record to bound it (`log_records_reduced_total`).
    pub enum ReducedPart {
        /// `log_processed`.
        LogProcessed => "log_processed",
        /// The `kubernetes` object, or its labels and annotations.
        Kubernetes => "kubernetes",
    }
}

label_values! {
    /// Errors with log files (`log_file_errors_total`).
    pub enum FileError {
        /// Opening a file failed.
        Open => "open",
        /// A read failed (each attempt).
        Read => "read",
        /// Listing the containers directory failed.
        Scan => "scan",
        /// A link not followed: out of `logs.pods_dir`, or a symlink in a container's
        /// log directory.
        OutsidePodsDir => "outside_pods_dir",
    }
}

label_values! {
    /// How files were seen rotated (`log_rotations_total`).
    pub enum Rotation {
        /// Renamed away (the kubelet's rotation).
        Rename => "rename",
        /// Copied and truncated: the reader follows the copy.
        Copytruncate => "copytruncate",
        /// Truncated in place without a copy.
        Truncated => "truncated",
    }
}

label_values! {
    /// Why bytes of logs will never be read (`log_bytes_lost_total`).
    pub enum LossReason {
        /// A file truncated in place without a copy.
        Truncated => "truncated",
        /// A file given up after repeated read errors.
        ReadError => "read_error",
    }
}

label_values! {
    /// A log file's framing (`log_lines_malformed_total{format}`).
    pub enum Framing {
        /// CRI (containerd, CRI-O).
        Cri => "cri",
        /// docker json-file.
        Docker => "docker",
    }
}

label_values! {
    /// An app-level parser a pod asked for (`log_parse_failures_total{parser}`).
    pub enum ParserKind {
        /// `json`.
        Json => "json",
        /// `logfmt`.
        Logfmt => "logfmt",
        /// `regex:<name>`.
        Regex => "regex",
    }
}

label_values! {
    /// How a checkpoint write ended (`checkpoint_writes_total{reason}`).
    pub enum WriteOutcome {
        /// Written and synced.
        Ok => "ok",
        /// Failed (retried at the next write).
        Error => "error",
    }
}

/// The log pipeline's metrics.
pub struct LogMetrics {
    /// Files currently open for reading.
    pub log_files_tailed: Gauge,
    /// Records shipped with only the metadata their file path tells.
    pub kube_metadata_misses: Counter,
    /// App lines a pod asked to parse that did not parse (shipped raw), by parser.
    pub log_parse_failures: CounterBy<ParserKind>,
    /// Container log lines read (before partial merging and multiline grouping).
    pub log_lines_read: Counter,
    /// Bytes read from container log files (decompressed for `.gz`).
    pub log_bytes_read: Counter,
    /// Records deliberately not delivered, by reason.
    pub log_records_dropped: CounterBy<DropReason>,
    /// Records whose `log` was cut (to `max_record_bytes`, or to fit one event).
    pub log_records_truncated: Counter,
    /// Records shipped with a part left out to fit their bounds, by the part.
    pub log_records_reduced: CounterBy<ReducedPart>,
    /// Lines that were neither valid CRI nor docker json-file, kept as raw text.
    pub log_lines_malformed: CounterBy<Framing>,
    /// Records whose invalid UTF-8 was replaced with U+FFFD.
    pub log_invalid_utf8: Counter,
    /// Errors opening or reading log files, by reason.
    pub log_file_errors: CounterBy<FileError>,
    /// Files found rotated or truncated.
    pub log_rotations: CounterBy<Rotation>,
    /// Bytes of container logs that will never be read, by reason.
    pub log_bytes_lost: CounterBy<LossReason>,
    /// Bytes of open files (as far as seen) not covered by the checkpoint file on disk.
    pub log_checkpoint_lag_bytes: Gauge,
    /// Records handed to the sink.
    pub log_records_sent: Counter,
    /// Batches acknowledged by the sink.
    pub batches_acked: Counter,
    /// Bytes of batches sent to the sink and not yet acknowledged.
    pub inflight_bytes: Gauge,
    /// Age of the oldest batch not yet acknowledged (0 when none), in seconds.
    pub oldest_unacked_age_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Checkpoint writes, by outcome.
    pub checkpoint_writes: CounterBy<WriteOutcome>,
    /// Checkpoint files that could not be loaded at start and were set aside.
    pub checkpoint_load_errors: Counter,
    /// Time from a batch being sealed to its acknowledgement.
    pub batch_ack_seconds: Histogram,
}

impl LogMetrics {
    /// Creates the log pipeline's metrics and registers them.
    pub fn register(r: &mut Registry) -> Self {
        let m = Self {
            log_files_tailed: Gauge::default(),
            kube_metadata_misses: Counter::default(),
            log_parse_failures: CounterBy::default(),
            log_lines_read: Counter::default(),
            log_bytes_read: Counter::default(),
            log_records_dropped: CounterBy::default(),
            log_records_truncated: Counter::default(),
            log_records_reduced: CounterBy::default(),
            log_lines_malformed: CounterBy::default(),
            log_invalid_utf8: Counter::default(),
            log_file_errors: CounterBy::default(),
            log_rotations: CounterBy::default(),
            log_bytes_lost: CounterBy::default(),
            log_checkpoint_lag_bytes: Gauge::default(),
            log_records_sent: Counter::default(),
            batches_acked: Counter::default(),
            inflight_bytes: Gauge::default(),
            oldest_unacked_age_seconds: Gauge::default(),
            checkpoint_writes: CounterBy::default(),
            checkpoint_load_errors: Counter::default(),
            batch_ack_seconds: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        };
        r.register(
            "log_files_tailed",
            "Container log files open for reading",
            m.log_files_tailed.clone(),
        );
        r.register(
            "log_lines_read",
            "Container log lines read",
            m.log_lines_read.clone(),
        );
        r.register(
            "log_bytes_read",
            "Container log bytes read",
            m.log_bytes_read.clone(),
        );
        r.register(
            "kube_metadata_misses",
            "Log records shipped with only the metadata their file path tells",
            m.kube_metadata_misses.clone(),
        );
        register_by(
            r,
            "log_parse_failures",
            "App log lines a pod asked to parse that did not parse (shipped raw), by parser",
            "parser",
            ParserKind::ALL,
            &m.log_parse_failures,
        );
        register_by(
            r,
            "log_records_dropped",
            "Log records deliberately not delivered, by reason",
            "reason",
            DropReason::ALL,
            &m.log_records_dropped,
        );
        r.register(
            "log_records_truncated",
            "Log records whose log was cut: to max_record_bytes, or to fit one CloudWatch event",
            m.log_records_truncated.clone(),
        );
        register_by(
            r,
            "log_records_reduced",
            "Log records shipped with a part left out to fit their bounds (reason: the part, log_processed or kubernetes)",
            "reason",
            ReducedPart::ALL,
            &m.log_records_reduced,
        );
        register_by(
            r,
            "log_lines_malformed",
            "Lines that did not parse in their file's format, kept as raw text",
            "format",
            Framing::ALL,
            &m.log_lines_malformed,
        );
        r.register(
            "log_invalid_utf8",
            "Log records whose invalid UTF-8 was replaced",
            m.log_invalid_utf8.clone(),
        );
        register_by(
            r,
            "log_file_errors",
            "Errors opening or reading container log files, by reason",
            "reason",
            FileError::ALL,
            &m.log_file_errors,
        );
        register_by(
            r,
            "log_rotations",
            "Container log files seen rotated or truncated, by kind",
            "reason",
            Rotation::ALL,
            &m.log_rotations,
        );
        register_by(
            r,
            "log_bytes_lost",
            "Bytes of container logs that will never be read, by reason: truncated (a file \
             truncated in place without a copy: its size last seen minus the offset read, a \
             lower bound), read_error (a file given up after repeated read errors: its size \
             minus the offset read; for a .gz the compressed bytes after the point where \
             decompression failed)",
            "reason",
            LossReason::ALL,
            &m.log_bytes_lost,
        );
        r.register(
            "log_checkpoint_lag_bytes",
            "Bytes of open container log files not covered by the checkpoint file on disk",
            m.log_checkpoint_lag_bytes.clone(),
        );
        r.register(
            "log_records_sent",
            "Log records handed to the sink",
            m.log_records_sent.clone(),
        );
        r.register(
            "batches_acked",
            "Batches acknowledged by the sink",
            m.batches_acked.clone(),
        );
        r.register(
            "inflight_bytes",
            "Bytes of batches sent to the sink and not yet acknowledged",
            m.inflight_bytes.clone(),
        );
        r.register(
            "oldest_unacked_age_seconds",
            "Age of the oldest batch sent to the sink and not yet acknowledged (0 when none)",
            m.oldest_unacked_age_seconds.clone(),
        );
        register_by(
            r,
            "checkpoint_writes",
            "Checkpoint file writes, by outcome",
            "reason",
            WriteOutcome::ALL,
            &m.checkpoint_writes,
        );
        r.register(
            "checkpoint_load_errors",
            "Checkpoint files that could not be loaded at start and were set aside",
            m.checkpoint_load_errors.clone(),
        );
        r.register_with_unit(
            "batch_ack",
            "Time from sealing a batch to its acknowledgement by the sink",
            Unit::Seconds,
            m.batch_ack_seconds.clone(),
        );
        m
    }

    /// Counts `n` records deliberately not delivered.
    pub fn dropped(&self, reason: DropReason, n: u64) {
        self.log_records_dropped
            .get_or_create(&[("reason", reason)])
            .inc_by(n);
    }

    /// Counts `n` records shipped with `part` left out.
    pub fn reduced(&self, part: ReducedPart, n: u64) {
        self.log_records_reduced
            .get_or_create(&[("reason", part)])
            .inc_by(n);
    }

    /// Counts a file error.
    pub fn file_error(&self, e: FileError) {
        self.log_file_errors.get_or_create(&[("reason", e)]).inc();
    }

    /// Counts a rotation.
    pub fn rotation(&self, r: Rotation) {
        self.log_rotations.get_or_create(&[("reason", r)]).inc();
    }

    /// Counts `bytes` that will never be read.
    pub fn lost(&self, reason: LossReason, bytes: u64) {
        self.log_bytes_lost
            .get_or_create(&[("reason", reason)])
            .inc_by(bytes);
    }

    /// Counts `n` lines that did not parse in their file's framing.
    pub fn malformed(&self, framing: Framing, n: u64) {
        self.log_lines_malformed
            .get_or_create(&[("format", framing)])
            .inc_by(n);
    }

    /// Counts `n` lines a pod asked to parse that did not parse.
    pub fn parse_failed(&self, parser: ParserKind, n: u64) {
        self.log_parse_failures
            .get_or_create(&[("parser", parser)])
            .inc_by(n);
    }

    /// Counts a checkpoint write.
    pub fn checkpoint_written(&self, outcome: WriteOutcome) {
        self.checkpoint_writes
            .get_or_create(&[("reason", outcome)])
            .inc();
    }
}
