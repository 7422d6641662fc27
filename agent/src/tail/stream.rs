//! A container stream: every file of one container's log, oldest first.
//!
//! The stream follows the container's directory (`/var/log/pods/<ns>_<pod>_<uid>/
//! <container>/`), not only the file the symlink points at: rotated siblings
//! (`0.log.<timestamp>`, then gzipped) that the agent never saw are read too, in
//! order, before the live file. A file is read to its end and kept for
//! `rotate_wait` after it stopped being the live file, then let go. Renames keep a
//! reader (same inode); a file whose first bytes match an open reader's is the same
//! content under another name (a gzip of it, a copytruncate copy) and is not read
//! twice; copytruncate is followed into the copy.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::decode::{ContainerInfo, Decoder, Out};
use super::file::{FileReader, Ino, Progress, read_head};
use super::names::{Order, classify};
use crate::checkpoint::Fingerprint;
use crate::encode::PathMeta;
use crate::enrich::Found;
use crate::ledger::Ledger;
use crate::telemetry::{LogLimits, Metrics};

/// Tailer settings every stream uses.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Bytes per read.
    pub chunk: usize,
    /// Longest line kept whole; longer ones are cut and the rest skipped.
    pub max_line: usize,
    /// Record size limit.
    pub max_record: usize,
    /// How long a rotated file is kept open after it was seen rotated.
    pub rotate_wait: Duration,
    /// How long an unterminated last line waits for its newline.
    pub eof_flush: Duration,
    /// Let every file go at its end (the `--exit-on-eof` mode).
    pub exit_on_eof: bool,
}

/// Everything a stream needs from the tailer for one poll.
pub struct Env<'a> {
    /// Settings.
    pub settings: &'a Settings,
    /// The ledger (file registration, checkpoint lookups).
    pub ledger: &'a Ledger,
    /// Metrics.
    pub metrics: &'a Metrics,
    /// The shared read buffer.
    pub readbuf: &'a mut Vec<u8>,
    /// Bytes this poll may read (at most `settings.chunk`): what the open batch
    /// has room for, so that a batch does not overshoot its size by a chunk's records.
    pub chunk: usize,
    /// Where records go.
    pub out: Out<'a>,
    /// Files without a checkpoint start at their end (first start with `read_from: end`).
    pub start_at_end: bool,
    /// Rate limits of warnings.
    pub limits: &'a mut LogLimits,
}

/// Fingerprints of recently finished files, to recognise their gzip copies.
const FINISHED_MEMORY: usize = 16;

/// How often an idle file's live path is looked up for rotation.
const LIVE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Checkpoint entries of files gone from disk are dropped after this long.
const PRUNE_GRACE_SECS: u64 = 600;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What one poll of a stream did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Poll {
    /// Something was read or found.
    pub progressed: bool,
    /// There is likely more to read right away (a full chunk, new files).
    pub busy: bool,
}

/// What opening a file found.
enum Opened {
    /// It needs reading.
    Reader(Box<FileReader>),
    /// It needs no reading (done, a copy of another, empty); its fingerprint.
    Skip(Fingerprint),
}

/// Where a container's pod metadata stands.
#[derive(Debug)]
pub enum MetaState {
    /// Pod metadata is off: the path tells all.
    Off,
    /// Not in the cache yet: nothing is read until it is, or until the wait ends.
    Waiting {
        /// When the container was found.
        since: Instant,
    },
    /// Decided, as of the cache generation `generation`; `found` is `None` after a
    /// miss (path metadata until the pod shows up).
    Resolved {
        /// Cache generation looked at.
        generation: u64,
        /// The pod found.
        found: Option<Found>,
    },
}

/// One container's log files.
pub struct ContainerStream {
    /// Checkpoint key: the live file's path.
    pub key: Arc<str>,
    dir: PathBuf,
    base: String,
    live_path: PathBuf,
    /// The container's metadata and destination.
    pub info: ContainerInfo,
    /// What the file path tells about the container.
    pub path_meta: PathMeta,
    /// Where its pod metadata stands.
    pub meta: MetaState,
    /// Open files, oldest first.
    pub files: Vec<FileReader>,
    /// Set when the container's link disappeared.
    pub closing_since: Option<Instant>,
    /// The directory must be listed on the next poll.
    pub needs_listing: bool,
    /// Found at the very first start with `read_from: end` and not listed yet (it
    /// may have waited for its pod): its files without checkpoint start at their end.
    pub start_at_end: bool,
    /// Records of this stream went into the open batch: the batch must carry a mark
    /// for each of its files, so that no checkpoint passes the batch before it is
    /// acknowledged (even when the files' safe offsets did not move).
    pub in_batch: bool,
    /// Batch bytes written per byte read (records carry metadata): an estimate that
    /// sizes reads to the room left in the open batch; `None` before the first read
    /// (the tailer's estimate over all streams applies).
    pub expansion: Option<f32>,
    /// Files looked at and left alone, by inode: (size then, fingerprint).
    skipped: HashMap<Ino, (u64, Fingerprint)>,
    finished: Vec<Fingerprint>,
}

impl ContainerStream {
    /// A stream for the live file `live_path`.
    pub fn new(
        live_path: PathBuf,
        info: ContainerInfo,
        path_meta: PathMeta,
        meta: MetaState,
    ) -> Self {
        let dir = live_path.parent().map(PathBuf::from).unwrap_or_default();
        let base = live_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            key: Arc::from(live_path.to_string_lossy().as_ref()),
            dir,
            base,
            live_path,
            info,
            path_meta,
            meta,
            files: Vec::new(),
            closing_since: None,
            needs_listing: true,
            start_at_end: false,
            in_batch: false,
            expansion: None,
            skipped: HashMap::new(),
            finished: Vec::new(),
        }
    }

    /// Opens the container's files without reading them (while it waits for its
    /// pod): an open file survives its deletion, so a pod that is gone before its
    /// metadata arrived loses no lines.
    pub fn open_only(&mut self, env: &mut Env<'_>) -> Poll {
        let progressed = self.needs_listing && self.reconcile(env);
        Poll {
            progressed,
            busy: false,
        }
    }

    /// Takes the container's final info after its wait: files opened meanwhile get
    /// decoders for it (nothing of them was decoded yet).
    pub fn resolved(&mut self, info: ContainerInfo, max_record: usize) {
        for f in &mut self.files {
            f.set_decoder(Decoder::new(&info, max_record));
        }
        self.info = info;
    }

    /// True when every file was let go and the container is gone.
    pub fn is_done(&self) -> bool {
        self.closing_since.is_some() && self.files.is_empty() && !self.needs_listing
    }

    /// Reads at most one chunk; returns true when it read or found anything new.
    pub fn poll(&mut self, env: &mut Env<'_>) -> Poll {
        let mut progressed = false;
        if self.needs_listing {
            progressed |= self.reconcile(env);
        }
        // New files usually have data: come back at once.
        let busy = progressed;
        let mut i = 0;
        while i < self.files.len() {
            if self.files[i].finished {
                i += 1;
                continue;
            }
            let f = &mut self.files[i];
            let live = f.order == Order::Live && f.rotated_at.is_none();
            if live && f.fp.len == 0 && !f.listed_when_filled && f.empty_got_bytes() {
                // The first bytes of a file that was empty: list the directory once
                // before reading them, so that a copy made meanwhile (copytruncate
                // of what it held before we read anything) is read first.
                f.listed_when_filled = true;
                self.reconcile(env);
                return Poll {
                    progressed: true,
                    busy: true,
                };
            }
            if live && f.head_changed() {
                // Truncated and rewritten before we noticed it shrink.
                self.truncated(i, env);
                return Poll {
                    progressed: true,
                    busy: true,
                };
            }
            let s = env.settings;
            let chunk = env.chunk;
            let res =
                self.files[i].read_chunk(env.readbuf, chunk, s.max_line, &self.info, &mut env.out);
            match res {
                Ok(Progress::Data(n)) => {
                    let f = &mut self.files[i];
                    env.ledger.note_size(f.id, f.offset);
                    if let Some(fp) = f.grow_fingerprint() {
                        env.ledger.update_fingerprint(f.id, fp);
                    }
                    // A short read of a plain file reached its end: no need for another
                    // read to find out; a full one means there is likely more.
                    let caught_up = n < chunk && !f.is_gz();
                    if caught_up {
                        self.at_eof(i, env);
                    }
                    return Poll {
                        progressed: true,
                        busy: !caught_up,
                    };
                }
                Ok(Progress::Eof) => {
                    if self.at_eof(i, env) {
                        // The file set changed (copytruncate): start over from the
                        // oldest file so order holds.
                        return Poll {
                            progressed: true,
                            busy: true,
                        };
                    }
                }
                Err(e) => {
                    let f = &mut self.files[i];
                    Metrics::inc_reason(&env.metrics.log_file_errors, "read", 1);
                    if let Some(n) = env.limits.allow("read", env.out.now) {
                        tracing::warn!(path = %f.path.display(), error = %e, suppressed = n, "reading a log file failed; letting it go");
                    }
                    f.finish(&self.info, &mut env.out);
                    self.remember_finished(i);
                }
            }
            i += 1;
        }
        Poll { progressed, busy }
    }

    /// File `i` has nothing new: check for rotation, flush what waited, let it go.
    fn at_eof(&mut self, i: usize, env: &mut Env<'_>) -> bool {
        let now = env.out.now;
        let mut progressed = false;
        let newest = i + 1 == self.files.len();
        // Looking up the live path costs a path walk: at most once a second per file
        // (truncation is caught sooner, by the head check before each read).
        let f = &mut self.files[i];
        let due = env.settings.exit_on_eof
            || f.live_checked
                .is_none_or(|t| now.duration_since(t) >= LIVE_CHECK_EVERY);
        if due {
            f.live_checked = Some(now);
            if f.rotated_at.is_none() {
                progressed |= self.check_live(i, env);
            } else if newest && self.live_path_is_new() {
                self.needs_listing = true;
            }
        }
        let s = env.settings;
        let f = &mut self.files[i];
        if f.finished {
            return progressed;
        }
        f.flush_expired(&self.info, &mut env.out);
        let gone_since = f.rotated_at.or(self.closing_since);
        let let_go = match gone_since {
            _ if s.exit_on_eof => true,
            Some(_) if f.is_gz() => true,
            Some(t) => now.duration_since(t) >= s.rotate_wait,
            None => false,
        };
        if let_go {
            tracing::debug!(path = %f.path.display(), offset = f.offset, "letting log file go");
            f.finish(&self.info, &mut env.out);
            self.remember_finished(i);
        } else {
            f.flush_idle(s.eof_flush, &self.info, &mut env.out);
        }
        progressed
    }

    fn remember_finished(&mut self, i: usize) {
        let fp = self.files[i].fp;
        if fp.len > 0 {
            self.finished.push(fp);
            if self.finished.len() > FINISHED_MEMORY {
                self.finished.remove(0);
            }
        }
    }

    /// True when the live path exists and is not one of the open files.
    fn live_path_is_new(&self) -> bool {
        match fs::metadata(&self.live_path) {
            Ok(m) => {
                let ino = Ino::of(&m);
                !self.files.iter().any(|f| f.ino == ino)
            }
            Err(_) => false,
        }
    }

    /// The live file is at its end: has it been renamed, deleted or truncated?
    fn check_live(&mut self, i: usize, env: &mut Env<'_>) -> bool {
        let now = env.out.now;
        let f = &self.files[i];
        match fs::metadata(&self.live_path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.files[i].rotated_at = Some(now);
                self.needs_listing = true;
                false
            }
            Err(_) => false,
            Ok(m) if Ino::of(&m) != f.ino => {
                tracing::debug!(path = %f.path.display(), offset = f.offset, "log file rotated");
                Metrics::inc_reason(&env.metrics.log_rotations, "rename", 1);
                self.files[i].rotated_at = Some(now);
                self.needs_listing = true;
                false
            }
            Ok(m) if m.len() < f.offset => {
                self.truncated(i, env);
                true
            }
            Ok(_) => false,
        }
    }

    /// The live file shrank under its reader: copytruncate. Continue in the copy
    /// when there is one, and read the live file again from its start.
    fn truncated(&mut self, i: usize, env: &mut Env<'_>) {
        let now = env.out.now;
        let (fp, offset) = (self.files[i].fp, self.files[i].offset);
        tracing::debug!(path = %self.files[i].path.display(), offset, "log file truncated");
        let copy = self.siblings().into_iter().find_map(|(path, order, gz)| {
            if gz || order == Order::Live {
                return None;
            }
            let (file, head) = read_head(&path, false).ok()?;
            let len = file.metadata().ok()?.len();
            (fp.len > 0 && fp.matches(&head) && len >= offset).then_some((file, path, order))
        });
        match copy {
            Some((file, path, order)) => {
                Metrics::inc_reason(&env.metrics.log_rotations, "copytruncate", 1);
                let f = &mut self.files[i];
                if let Err(e) = f.switch_to(file, path, order) {
                    tracing::warn!(error = %e, "following a copytruncate copy failed");
                    f.finish(&self.info, &mut env.out);
                    self.remember_finished(i);
                } else {
                    f.rotated_at = Some(now);
                }
            }
            None => {
                Metrics::inc_reason(&env.metrics.log_rotations, "truncated", 1);
                if let Some(n) = env.limits.allow("truncated", now) {
                    tracing::warn!(path = %self.live_path.display(), offset, suppressed = n,
                        "log file truncated in place without a copy; continuing from its start");
                }
                let f = &mut self.files[i];
                f.finish(&self.info, &mut env.out);
                // Its inode now holds other content: let the listing open it anew.
                f.ino = Ino::NONE;
                self.remember_finished(i);
            }
        }
        // The truncated file has new content: a new file, read from its start, after
        // any other copy made meanwhile (the listing orders them).
        self.reconcile(env);
    }

    /// The stream's files in its directory: (path, order, gzip).
    fn siblings(&self) -> Vec<(PathBuf, Order, bool)> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name();
            let (order, gz) = classify(&self.base, name.to_str()?)?;
            Some((e.path(), order, gz))
        })
        .collect()
    }

    /// Lists the directory: follows renames, opens files not seen before.
    fn reconcile(&mut self, env: &mut Env<'_>) -> bool {
        self.needs_listing = false;
        env.start_at_end |= std::mem::take(&mut self.start_at_end);
        let now = env.out.now;
        let mut added = false;
        let mut seen = Vec::new();
        let mut present = Vec::new();
        let mut complete = true;
        for (path, order, gz) in self.siblings() {
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            let ino = Ino::of(&meta);
            seen.push(ino);
            if let Some(f) = self.files.iter_mut().find(|f| f.ino == ino && !f.finished) {
                present.push(f.fp);
                if f.order != order {
                    if order != Order::Live && f.rotated_at.is_none() {
                        f.rotated_at = Some(now);
                    }
                    f.path = path;
                    f.order = order;
                }
                continue;
            }
            if let Some(f) = self.files.iter().find(|f| f.ino == ino) {
                present.push(f.fp);
                continue;
            }
            if let Some(&(size, fp)) = self.skipped.get(&ino)
                && size == meta.len()
            {
                present.push(fp);
                continue;
            }
            match self.open(path, order, gz, meta.len(), env) {
                Ok(Opened::Reader(reader)) => {
                    present.push(reader.fp);
                    self.files.push(*reader);
                    added = true;
                }
                Ok(Opened::Skip(fp)) => {
                    present.push(fp);
                    self.skipped.insert(ino, (meta.len(), fp));
                }
                Err(e) => {
                    complete = false;
                    Metrics::inc_reason(&env.metrics.log_file_errors, "open", 1);
                    if let Some(n) = env.limits.allow("open", now) {
                        tracing::warn!(stream = %self.key, error = %e, suppressed = n, "opening a log file failed; retrying at the next rescan");
                    }
                }
            }
        }
        self.skipped.retain(|ino, _| seen.contains(ino));
        self.files.sort_by(|a, b| a.order.cmp(&b.order));
        if complete {
            present.extend(self.finished.iter().copied());
            let stale_before = unix_now().saturating_sub(PRUNE_GRACE_SECS);
            env.ledger
                .with_store(|s| s.prune_stream(&self.key, &present, stale_before));
        }
        added
    }

    /// Opens a file not seen before, at its checkpoint, unless it needs no reading.
    fn open(
        &mut self,
        path: PathBuf,
        order: Order,
        gz: bool,
        size: u64,
        env: &mut Env<'_>,
    ) -> io::Result<Opened> {
        let (file, head) = read_head(&path, gz)?;
        let live = order == Order::Live;
        let fp = Fingerprint::of(&head);
        if head.is_empty() && !live {
            return Ok(Opened::Skip(fp));
        }
        let same_content = |fp: &Fingerprint| fp.len > 0 && fp.matches(&head);
        if self
            .files
            .iter()
            .any(|f| !f.finished && same_content(&f.fp))
            || self.finished.iter().any(same_content)
        {
            // A gzip or copy of a file being read (or just let go): not read twice.
            return Ok(Opened::Skip(fp));
        }
        let entry = env
            .ledger
            .with_store(|s| s.lookup(&self.key, &head).cloned());
        let offset = match entry {
            Some(e) if e.done && !live && (gz || e.offset >= size) => {
                return Ok(Opened::Skip(e.fingerprint()));
            }
            Some(e) if !gz && e.offset > size => {
                tracing::warn!(path = %path.display(), checkpoint = e.offset, size, "file is shorter than its checkpoint; reading it from the start");
                0
            }
            Some(e) => e.offset,
            None if env.start_at_end => {
                if !live {
                    return Ok(Opened::Skip(fp));
                }
                size
            }
            None => 0,
        };
        let decoder = Decoder::new(&self.info, env.settings.max_record);
        tracing::debug!(path = %path.display(), offset, fp = fp.hash, fp_len = fp.len, "opening log file");
        let mut reader =
            FileReader::new(0, file, path, order, gz, head, offset, decoder, env.out.now)?;
        reader.id = env.ledger.register_file(&self.key, fp, offset);
        Ok(Opened::Reader(Box::new(reader)))
    }

    /// Drops files that were let go (after a batch marked them done).
    pub fn remove_finished(&mut self) {
        self.files.retain(|f| !f.finished);
    }
}
