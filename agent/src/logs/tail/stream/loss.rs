//! Accounting for what is not read: bytes that never will be (counted by reason in
//! `kubeship_log_bytes_lost_total`) and links not followed.

use std::path::Path;
use std::time::Instant;

use super::PollContext;
use crate::logs::metrics::{FileError, LossReason};
use crate::telemetry::{LogLimits, Metrics};

/// Why bytes of a log file will never be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lost {
    /// Truncated in place without a copy: the bytes the file was seen to hold beyond
    /// the offset read (a lower bound: what was written after it was last looked at
    /// is not known).
    Truncated,
    /// Given up after [`READ_ATTEMPTS`](crate::logs::tail::file::READ_ATTEMPTS) failed
    /// reads in a row: the bytes on disk past the offset read (for a `.gz`, the
    /// compressed bytes past the point where decompression failed).
    ReadError,
}

impl Lost {
    fn reason(self) -> LossReason {
        match self {
            Lost::Truncated => LossReason::Truncated,
            Lost::ReadError => LossReason::ReadError,
        }
    }
}

/// Counts bytes of `path` that will never be read in
/// `kubeship_log_bytes_lost_total{reason}` and says so (rate-limited per reason):
/// every such loss goes through here.
pub(super) fn lost(env: &mut PollContext<'_>, why: Lost, bytes: u64, path: &Path, message: &str) {
    let reason = why.reason();
    env.metrics.logs.lost(reason, bytes);
    let reason = reason.as_str();
    if let Some(n) = env.limits.allow(reason, env.out.now) {
        tracing::warn!(path = %path.display(), reason, lost_bytes = bytes, suppressed = n, "{message}");
    }
}

/// A link not followed: in the containers directory, one resolving outside
/// `logs.pods_dir`; in a container's log directory, any symlink (or the directory
/// itself become one). Counted in
/// `kubeship_log_file_errors_total{reason="outside_pods_dir"}` and logged
/// (rate-limited): every refused link goes through here.
pub fn refused_link(
    metrics: &Metrics,
    limits: &mut LogLimits,
    now: Instant,
    link: &dyn std::fmt::Display,
) {
    metrics.logs.file_error(FileError::OutsidePodsDir);
    if let Some(n) = limits.allow("outside_pods_dir", now) {
        tracing::warn!(%link, suppressed = n,
            "not following a link out of logs.pods_dir (or a symlink among a container's log files)");
    }
}
