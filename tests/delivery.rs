//! Delivery tracking.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::fs::{self};
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::*;

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
