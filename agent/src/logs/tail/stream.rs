//! A container stream: every file of one container's log, oldest first.
//!
//! The stream follows the container's directory (`/var/log/pods/<ns>_<pod>_<uid>/
//! <container>/`), not only the file the symlink points at: rotated siblings
//! (`0.log.<timestamp>`, then gzipped) that the agent never saw are read too, in
//! order, before the live file. A file is read to its end and kept for
//! `rotate_wait` after it stopped being the live file, then let go. Renames keep a
//! reader (same inode); a rotated file (not the live one) whose first bytes match an
//! open or just finished reader's is the same content under another name (a gzip of
//! it, a copytruncate copy) and is not read twice; copytruncate is followed into the
//! copy. The live file is never taken for a copy: two files may start alike.
//!
//! `listing` lists the directory (again when it changed meanwhile: nothing is read
//! from a listing a rotation raced) and opens new files at their checkpoints; `loss`
//! counts what will never be read (and links not followed).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::decode::{BatchTarget, ContainerInfo, Decoder};
use super::file::{FileReader, Progress, read_head};
use super::names::Order;
use crate::logs::checkpoint::{FileId, Fingerprint};
use crate::logs::encode::PathMeta;
use crate::logs::enrich::CachedPod;
use crate::logs::ledger::Ledger;
use crate::logs::metrics::{FileError, Rotation};
use crate::telemetry::{LogLimits, Metrics};

mod listing;
mod loss;

pub use loss::refused_link;
use loss::{Lost, lost};

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
pub struct PollContext<'a> {
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
    pub out: BatchTarget<'a>,
    /// Files without a checkpoint start at their end (first start with `read_from: end`).
    pub start_at_end: bool,
    /// Rate limits of warnings.
    pub limits: &'a mut LogLimits,
}

/// Files let go that a stream remembers (to know them, and their gzip copies, when
/// a listing finds them again).
const FINISHED_MEMORY: usize = 16;

/// How often an idle file's live path is looked up for rotation.
const LIVE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// What one poll of a stream did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Poll {
    /// Something was read or found.
    pub progressed: bool,
    /// There is likely more to read right away (a full chunk, new files).
    pub busy: bool,
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
        found: Option<CachedPod>,
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
    skipped: HashMap<FileId, (u64, Fingerprint)>,
    /// Files recently let go, the last [`FINISHED_MEMORY`].
    finished: Vec<LetGo>,
    /// Polls in a row whose listing did not settle (the directory kept changing).
    unsettled: u32,
    /// Tests: runs once inside a listing, at the point given (a rotation racing it).
    #[cfg(test)]
    race: Option<(RacePoint, Box<dyn FnOnce() + Send>)>,
}

/// Where in a listing a test's rotation happens.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RacePoint {
    /// The directory was read; its files were not looked at (`stat`) yet.
    AfterRead,
    /// The files were looked at; none was opened yet.
    BeforeOpen,
}

/// A file let go, remembered for a while: its checkpoint entry says so only once its
/// last batches are acknowledged, and a listing may find it again before that.
#[derive(Clone, Copy, Debug)]
struct LetGo {
    fp: Fingerprint,
    id: FileId,
    /// Its ledger track: a file found again continues it.
    track: u64,
    /// How far it was read.
    offset: u64,
    /// Read to its end, not given up: a rotated file starting like it is its copy.
    read: bool,
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
            unsettled: 0,
            #[cfg(test)]
            race: None,
        }
    }

    /// Opens the container's files without reading them (while it waits for its
    /// pod): an open file survives its deletion, so a pod that is gone before its
    /// metadata arrived loses no lines.
    pub fn open_only(&mut self, env: &mut PollContext<'_>) -> Poll {
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
    pub fn poll(&mut self, env: &mut PollContext<'_>) -> Poll {
        let mut progressed = false;
        if self.needs_listing {
            progressed |= self.reconcile(env);
            if self.needs_listing {
                // The directory changed while it was listed: nothing is read before a
                // listing settles (a file it missed may be older than those open).
                return Poll {
                    progressed: true,
                    busy: true,
                };
            }
        }
        // New files usually have data: come back at once.
        let busy = progressed;
        let mut i = 0;
        while i < self.files.len() {
            // A file waiting to be read again after a failed read does not hold up
            // the stream's other files.
            if self.files[i].finished || self.files[i].waits_to_retry(env.out.now) {
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
                    if n == chunk {
                        // Behind: how much is there is what a truncation would lose.
                        f.look_at_size();
                    }
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
                    if self.read_failed(i, &e, env) {
                        return Poll {
                            progressed: true,
                            busy: true,
                        };
                    }
                }
            }
            i += 1;
        }
        Poll { progressed, busy }
    }

    /// A read of file `i` failed: counted, and tried again later; given up (what it
    /// still held counted as lost) once it failed
    /// [`READ_ATTEMPTS`](super::file::READ_ATTEMPTS) times in a row, unless it is
    /// the live file, which is read again every
    /// [`READ_RETRY_MAX`](super::file::READ_RETRY_MAX) for as long as it is. True
    /// when the file set changed (the live file was truncated).
    fn read_failed(&mut self, i: usize, e: &io::Error, env: &mut PollContext<'_>) -> bool {
        let now = env.out.now;
        env.metrics.logs.file_error(FileError::Read);
        let f = &self.files[i];
        if f.order == Order::Live && f.rotated_at.is_none() && self.check_live(i, env) {
            return true;
        }
        let f = &mut self.files[i];
        let keep_trying = f.order == Order::Live
            && f.rotated_at.is_none()
            && self.closing_since.is_none()
            && !env.settings.exit_on_eof;
        match f.read_failed(now, keep_trying) {
            (failures, Some(wait)) => {
                if let Some(n) = env.limits.allow("read", now) {
                    tracing::warn!(path = %f.path.display(), error = %e, failures,
                        retry_in_secs = wait.as_secs(), suppressed = n,
                        "reading a log file failed; trying again later");
                }
            }
            (failures, None) => {
                let unread = f.unread_on_disk();
                let path = f.path.clone();
                f.finish(&self.info, &mut env.out);
                // Remembered so that a listing does not open it again; not as read:
                // a file starting like it is not taken for its copy.
                self.remember_finished(i, false);
                let message = format!(
                    "giving up on a log file after {failures} failed reads in a row \
                     (the last: {e}); what it held beyond the offset read is lost"
                );
                lost(env, Lost::ReadError, unread, &path, &message);
            }
        }
        false
    }

    /// File `i` has nothing new: check for rotation, flush what waited, let it go.
    fn at_eof(&mut self, i: usize, env: &mut PollContext<'_>) -> bool {
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
            self.remember_finished(i, true);
        } else {
            f.flush_idle(s.eof_flush, &self.info, &mut env.out);
        }
        progressed
    }

    /// Remembers file `i`, let go; `read`: read to its end (not given up).
    fn remember_finished(&mut self, i: usize, read: bool) {
        let f = &self.files[i];
        self.finished.push(LetGo {
            fp: f.fp,
            id: f.ino,
            track: f.id,
            offset: f.offset,
            read,
        });
        if self.finished.len() > FINISHED_MEMORY {
            self.finished.remove(0);
        }
    }

    /// True when the live path exists and is not one of the open files.
    fn live_path_is_new(&self) -> bool {
        match fs::symlink_metadata(&self.live_path) {
            Ok(m) => {
                let ino = FileId::of(&m);
                !self.files.iter().any(|f| f.ino == ino)
            }
            Err(_) => false,
        }
    }

    /// The live file is at its end: has it been renamed, deleted or truncated?
    fn check_live(&mut self, i: usize, env: &mut PollContext<'_>) -> bool {
        let now = env.out.now;
        let f = &self.files[i];
        match fs::symlink_metadata(&self.live_path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.files[i].rotated_at = Some(now);
                self.needs_listing = true;
                false
            }
            Err(_) => false,
            Ok(m) if FileId::of(&m) != f.ino => {
                tracing::debug!(path = %f.path.display(), offset = f.offset, "log file rotated");
                env.metrics.logs.rotation(Rotation::Rename);
                self.files[i].rotated_at = Some(now);
                self.needs_listing = true;
                false
            }
            Ok(m) if m.len() < f.offset => {
                self.truncated(i, env);
                true
            }
            Ok(m) => {
                self.files[i].saw_size(m.len());
                false
            }
        }
    }

    /// The live file shrank under its reader: copytruncate. Continue in the copy
    /// when there is one (a rotated plain file the stream does not know, starting
    /// like it and at least as long as it was read), and read the live file again
    /// from its start.
    fn truncated(&mut self, i: usize, env: &mut PollContext<'_>) {
        let now = env.out.now;
        let (fp, offset) = (self.files[i].fp, self.files[i].offset);
        tracing::debug!(path = %self.files[i].path.display(), offset, "log file truncated");
        // The copy is a rotated plain file made when the file was truncated: not one
        // the stream knows (open, let go, or with a checkpoint entry of its own),
        // which only starts alike; the newest such (listed first).
        let known = |id: FileId, head: &[u8]| {
            self.files.iter().any(|f| f.ino == id)
                || self.finished.iter().any(|g| g.id == id)
                || env.ledger.with_store(|s| s.has_own(&self.key, head, id))
        };
        let copy = self.siblings().0.into_iter().find_map(|(path, order, gz)| {
            if gz || order == Order::Live {
                return None;
            }
            let (file, head) = read_head(&path, false).ok()?;
            let m = file.metadata().ok()?;
            let copy = fp.len > 0 && fp.matches(&head) && m.len() >= offset;
            (copy && !known(FileId::of(&m), &head)).then_some((file, path, order))
        });
        match copy {
            Some((file, path, order)) => {
                env.metrics.logs.rotation(Rotation::Copytruncate);
                let f = &mut self.files[i];
                if let Err(e) = f.switch_to(file, path, order) {
                    tracing::warn!(error = %e, "following a copytruncate copy failed");
                    f.finish(&self.info, &mut env.out);
                    self.remember_finished(i, true);
                } else {
                    f.rotated_at = Some(now);
                    env.ledger.moved(f.id, f.ino);
                }
            }
            None => {
                env.metrics.logs.rotation(Rotation::Truncated);
                let f = &mut self.files[i];
                let unread = f.unread_seen();
                f.finish(&self.info, &mut env.out);
                lost(
                    env,
                    Lost::Truncated,
                    unread,
                    &self.live_path,
                    "log file truncated in place without a copy: what it held beyond the \
                     offset read is lost; continuing from its start",
                );
                let f = &mut self.files[i];
                // Its inode now holds other content: let the listing open it anew, from
                // the start, whatever its first bytes (they may be the old ones again).
                // The old content is nowhere on disk any more: no copy of it can show up
                // (it is not remembered as finished) and its checkpoint entry goes.
                f.ino = FileId::NONE;
                env.ledger.detach(f.id);
            }
        }
        // The truncated file has new content: a new file, read from its start, after
        // any other copy made meanwhile (the listing orders them).
        self.reconcile(env);
    }

    /// Drops files that were let go (after a batch marked them done).
    pub fn remove_finished(&mut self) {
        self.files.retain(|f| !f.finished);
    }

    /// Tests: runs the race set for `at`, once.
    #[cfg(test)]
    fn race_at(&mut self, at: RacePoint) {
        if self.race.as_ref().is_some_and(|(p, _)| *p == at)
            && let Some((_, race)) = self.race.take()
        {
            race();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::batch::{BatchBuilder, Destination};
    use crate::logs::checkpoint::Store;
    use crate::logs::encode::{Fragment, RecordForm};
    use crate::logs::tail::decode::Counters;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    /// One container stream polled by hand, on a clock the test moves.
    struct Harness {
        _tmp: tempfile::TempDir,
        dir: PathBuf,
        stream: ContainerStream,
        settings: Settings,
        ledger: Ledger,
        metrics: Arc<Metrics>,
        builder: BatchBuilder,
        counters: Counters,
        limits: LogLimits,
        readbuf: Vec<u8>,
        now: Instant,
        start: Instant,
        records: Vec<String>,
        /// Each poll's batch carries marks (as the tailer seals them) and is
        /// acknowledged at once: checkpoints advance.
        deliver: bool,
        /// With `deliver`: batches are submitted but not acknowledged (a sink that
        /// holds events back); their sequence numbers, oldest first.
        held: Option<Vec<u64>>,
    }

    fn info() -> ContainerInfo {
        ContainerInfo {
            dest: Arc::new(Destination {
                group: "g".into(),
                stream: "s".into(),
            }),
            kubernetes: std::sync::Arc::new(Fragment::new(b"{}".to_vec(), RecordForm::Json)),
            kubernetes_reduced: false,
            multiline: None,
            parser: None,
            excluded: false,
            miss: false,
            log_only: true,
        }
    }

    /// CRI lines `<prefix> <i>` for each `i` in `seqs`, padded to about `pad` bytes.
    fn lines(prefix: &str, seqs: std::ops::Range<usize>, pad: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in seqs {
            let msg = format!("{prefix} {i} ");
            let fill = pad.saturating_sub(msg.len() + 32);
            out.extend_from_slice(
                format!(
                    "2026-11-23T10:00:00.000000000Z stdout F {msg}{}\n",
                    "x".repeat(fill)
                )
                .as_bytes(),
            );
        }
        out
    }

    impl Harness {
        fn new(chunk: usize) -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("ns_pod_uid/app");
            fs::create_dir_all(&dir).unwrap();
            fs::File::create(dir.join("0.log")).unwrap();
            let metrics = Arc::new(Metrics::new());
            let stream = ContainerStream::new(
                dir.join("0.log"),
                info(),
                PathMeta::default(),
                MetaState::Off,
            );
            let now = Instant::now();
            Self {
                _tmp: tmp,
                dir,
                stream,
                settings: Settings {
                    chunk,
                    max_line: 64 * 1024,
                    max_record: 32 * 1024,
                    rotate_wait: Duration::from_secs(5),
                    eof_flush: Duration::from_secs(1),
                    exit_on_eof: false,
                },
                ledger: Ledger::new(Store::default(), Arc::clone(&metrics)),
                metrics,
                builder: BatchBuilder::new(64 << 20, 1 << 20),
                counters: Counters::default(),
                limits: LogLimits::default(),
                readbuf: Vec::new(),
                now,
                start: now,
                records: Vec::new(),
                deliver: false,
                held: None,
            }
        }

        /// Marks for every file of the stream, as the tailer's seal makes them when a
        /// batch holds records of the stream.
        fn marks(&mut self) -> Vec<crate::logs::batch::Mark> {
            self.stream
                .files
                .iter_mut()
                .map(|f| {
                    let (offset, last) = if f.finished {
                        (f.offset, true)
                    } else {
                        (f.safe_offset(), false)
                    };
                    f.last_marked = offset;
                    crate::logs::batch::Mark {
                        file: f.id,
                        offset,
                        last,
                    }
                })
                .collect()
        }

        /// The agent stops (a crash: nothing more is read or acknowledged) and starts
        /// again from the checkpoint file its ledger would have written.
        fn restart(&mut self) {
            let path = self._tmp.path().join("checkpoints.json");
            let bytes = self.ledger.with_store(|s| s.serialize());
            crate::logs::checkpoint::write_atomic(&path, &bytes).unwrap();
            let store = Store::load(&path).unwrap().expect("written");
            self.ledger = Ledger::new(store, Arc::clone(&self.metrics));
            self.stream = ContainerStream::new(
                self.dir.join("0.log"),
                info(),
                PathMeta::default(),
                MetaState::Off,
            );
            self.builder = BatchBuilder::new(64 << 20, 1 << 20);
            self.held = self.held.as_ref().map(|_| Vec::new());
        }

        /// The checkpoint entries of the stream whose fingerprint matches `head`:
        /// (inode, offset, done).
        fn entries_of(&self, head: &[u8]) -> Vec<(u64, u64, bool)> {
            let bytes = self.ledger.with_store(|s| s.serialize());
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let fp = format!("{:016x}", Fingerprint::of(head).hash);
            v["files"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["fp"] == fp.as_str())
                .map(|e| {
                    (
                        e["ino"].as_u64().unwrap(),
                        e["offset"].as_u64().unwrap(),
                        e["done"].as_bool().unwrap(),
                    )
                })
                .collect()
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.join(name)
        }

        fn append(&self, name: &str, bytes: &[u8]) {
            fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(self.path(name))
                .unwrap()
                .write_all(bytes)
                .unwrap();
        }

        fn poll(&mut self) -> Poll {
            let mut env = PollContext {
                settings: &self.settings,
                ledger: &self.ledger,
                metrics: &self.metrics,
                readbuf: &mut self.readbuf,
                chunk: self.settings.chunk,
                out: BatchTarget {
                    builder: &mut self.builder,
                    counters: &mut self.counters,
                    now: self.now,
                    now_ms: self.now.duration_since(self.start).as_millis() as u64,
                    wall_nanos: 0,
                    max_processed: self.settings.max_record,
                },
                start_at_end: false,
                limits: &mut self.limits,
            };
            let p = self.stream.poll(&mut env);
            let marks = if self.deliver {
                self.marks()
            } else {
                Vec::new()
            };
            let mut batch = self.builder.seal(marks, self.now);
            if self.deliver {
                self.ledger.submit(&mut batch);
                match &mut self.held {
                    Some(held) => held.push(batch.seq),
                    None => self.ledger.ack(batch.seq),
                }
            }
            self.records.extend(
                batch
                    .events
                    .iter()
                    .map(|e| String::from_utf8_lossy(&batch.record(e)).into_owned()),
            );
            self.stream.remove_finished();
            p
        }

        /// Polls until a poll finds nothing (as the tailer's rounds do).
        fn poll_idle(&mut self) {
            for _ in 0..10_000 {
                let p = self.poll();
                if !p.busy && !p.progressed {
                    return;
                }
            }
            panic!("the stream never caught up");
        }

        fn advance(&mut self, by: Duration) {
            self.now += by;
        }

        /// The value of a series in the metrics text (0 when absent).
        fn metric(&self, series: &str) -> u64 {
            let text = self.metrics.encode();
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or(0)
        }

        /// The records read so far, each as its first two words (`old 20`).
        fn read_order(&self) -> Vec<String> {
            self.records
                .iter()
                .map(|r| r.split(' ').take(2).collect::<Vec<_>>().join(" "))
                .collect()
        }

        fn records_starting(&self, prefix: &str) -> usize {
            self.records
                .iter()
                .filter(|r| r.starts_with(prefix))
                .count()
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// Rotated files found next to the live file, all three starting with the same
    /// 400 bytes (a container repeating its first line): none is a copy of another,
    /// every line of each is read.
    #[test]
    fn rotated_files_starting_like_the_live_one_are_read() {
        let mut h = Harness::new(256 * 1024);
        let banner = lines("BANNER", 0..1, 400);
        let gz = [banner.clone(), lines("gz", 0..30, 100)].concat();
        fs::write(h.path("0.log.20261123-090000.gz"), gzip(&gz)).unwrap();
        h.append("0.log.20261123-100000", &banner);
        h.append("0.log.20261123-100000", &lines("rotated", 0..20, 100));
        h.append("0.log", &banner);
        h.append("0.log", &lines("live", 0..10, 100));
        h.poll_idle();
        assert_eq!(h.records_starting("gz "), 30);
        assert_eq!(h.records_starting("rotated "), 20);
        assert_eq!(h.records_starting("live "), 10);
        assert_eq!(h.records_starting("BANNER "), 3);
    }

    /// A rotated gzip file that fails part way (a second member that is not gzip)
    /// is read again after 1 s, 2 s, 4 s … each failure counted, then given up after
    /// `READ_ATTEMPTS` failures, the compressed bytes after the failure counted as
    /// lost. The live file, starting with the same bytes, is read all along.
    #[test]
    fn a_failing_gz_is_retried_with_backoff_then_given_up_and_counted() {
        use crate::logs::tail::file::READ_ATTEMPTS;
        let mut h = Harness::new(256 * 1024);
        let banner = lines("BANNER", 0..1, 400);
        let good = gzip(&[banner.clone(), lines("gz", 0..30, 100)].concat());
        let rest = gzip(&lines("after", 0..30, 100));
        let gz = [&good[..], b"this is not gzip", &rest[..]].concat();
        fs::write(h.path("0.log.20261123-100000.gz"), &gz).unwrap();
        h.append("0.log", &banner);
        h.append("0.log", &lines("live", 0..10, 100));
        h.poll_idle();
        let errors = |h: &Harness| h.metric("kubeship_log_file_errors_total{reason=\"read\"}");
        assert_eq!(
            (h.records_starting("gz "), h.records_starting("live ")),
            (30, 10)
        );
        assert_eq!(errors(&h), 1);
        for (wait, failures) in [(1000, 2), (2000, 3), (4000, 4)] {
            h.advance(Duration::from_millis(wait - 100));
            h.poll_idle();
            assert_eq!(errors(&h), failures - 1, "not before {wait} ms");
            h.advance(Duration::from_millis(100));
            h.poll_idle();
            assert_eq!(errors(&h), failures, "after {wait} ms");
        }
        for failures in 5..=READ_ATTEMPTS {
            h.advance(Duration::from_secs(60));
            h.poll_idle();
            assert_eq!(errors(&h), u64::from(failures));
        }
        let lost = h.metric("kubeship_log_bytes_lost_total{reason=\"read_error\"}");
        assert!(
            lost >= rest.len() as u64 && lost <= (gz.len() - good.len()) as u64,
            "{lost} bytes lost of {}",
            rest.len()
        );
        h.append("0.log", &lines("live", 10..15, 100));
        h.advance(Duration::from_secs(3600));
        // Listed again (its checkpoint does not say it is done: nothing was acked).
        h.stream.needs_listing = true;
        h.poll_idle();
        assert_eq!(errors(&h), u64::from(READ_ATTEMPTS), "given up");
        assert_eq!(h.records_starting("live "), 15);
        assert_eq!(h.records_starting("after "), 0);
    }

    /// Files let go are known when a listing finds them again before their
    /// checkpoint says they are done (their last batches in flight, as with a sink
    /// that holds events back to fill requests): a rotated file is not read again; a
    /// live file let go while its container seemed gone reads on only what it got
    /// since.
    #[test]
    fn files_let_go_are_not_read_again_before_their_checkpoint_says_so() {
        let mut h = Harness::new(256 * 1024);
        h.append("0.log", &lines("old", 0..20, 100));
        h.poll_idle();
        fs::rename(h.path("0.log"), h.path("0.log.20261123-100000")).unwrap();
        h.append("0.log", &lines("new", 0..5, 100));
        for _ in 0..3 {
            // Rotation seen, the rotated file kept for rotate_wait, then let go.
            h.advance(Duration::from_secs(4));
            h.stream.needs_listing = true;
            h.poll_idle();
        }
        assert_eq!(h.records_starting("old "), 20);
        assert_eq!(h.records_starting("new "), 5);
        // The container seems gone: its live file is let go too, then it is back.
        h.stream.closing_since = Some(h.now);
        h.advance(Duration::from_secs(6));
        h.poll_idle();
        assert!(h.stream.files.is_empty(), "every file let go");
        h.stream.closing_since = None;
        h.stream.needs_listing = true;
        h.poll_idle();
        h.append("0.log", &lines("new", 5..8, 100));
        h.advance(Duration::from_secs(11));
        h.stream.needs_listing = true;
        h.poll_idle();
        assert_eq!(h.records_starting("old "), 20, "the rotated file read once");
        assert_eq!(h.records_starting("new "), 8, "the live file read on");
    }

    /// A live file truncated in place without a copy while the agent was behind: the
    /// bytes it was seen to hold beyond the offset read are counted as lost.
    #[test]
    fn truncation_in_place_counts_the_bytes_seen_beyond_the_offset() {
        let mut h = Harness::new(4096);
        let old = lines("old", 0..40, 1000);
        h.append("0.log", &old);
        let p = h.poll();
        assert!(p.busy, "one full chunk read of {} bytes", old.len());
        fs::File::create(h.path("0.log")).unwrap();
        h.append("0.log", &lines("new", 0..3, 100));
        h.poll_idle();
        assert_eq!(h.records_starting("new "), 3);
        assert_eq!(
            h.metric("kubeship_log_rotations_total{reason=\"truncated\"}"),
            1
        );
        assert_eq!(
            h.metric("kubeship_log_bytes_lost_total{reason=\"truncated\"}"),
            old.len() as u64 - 4096
        );
    }

    /// A live file truncated in place and written again with the same first bytes is
    /// the same inode with new content: read from its start, not taken for a copy of
    /// what it held before.
    #[test]
    fn truncated_and_rewritten_with_the_same_head_is_read_from_its_start() {
        let mut h = Harness::new(256 * 1024);
        let banner = lines("BANNER", 0..1, 400);
        h.append("0.log", &banner);
        h.append("0.log", &lines("old", 0..20, 200));
        h.poll_idle();
        assert_eq!(h.records_starting("old "), 20);
        fs::File::create(h.path("0.log")).unwrap();
        h.append("0.log", &banner);
        h.append("0.log", &lines("new", 0..3, 100));
        for _ in 0..3 {
            // The live path is looked up (and the shrink seen) at most once a second.
            h.advance(Duration::from_millis(1100));
            h.poll_idle();
        }
        assert_eq!(h.records_starting("new "), 3, "the new content");
        assert_eq!(h.records_starting("BANNER "), 2);
    }

    /// A copytruncate done before the agent listed the directory (it was down, or
    /// had just started): the copy has no entry of its own and resumes from the live
    /// file's, which it must take over. The live file's inode holds other content
    /// now; an entry left with it stays at the offset the crash left, and once the
    /// copy was gzipped and deleted, the gzip (found after a restart, with no reader
    /// of the copy to recognise it by) resumed from that stale entry rather than
    /// from the copy's, and read again records delivered and acknowledged since.
    /// (Loaded checkpoints are sorted by inode: the stale entry was picked when the
    /// copy's inode was the lower one, as here.)
    #[test]
    fn copytruncate_before_the_first_listing_leaves_no_stale_entry_for_the_gzip() {
        let mut h = Harness::new(256 * 1024);
        h.deliver = true;
        // Two inodes made up front: the live file gets the higher one, the copy the
        // lower (renames and copies onto an existing file keep inodes).
        let spare = |n: &str| {
            let p = h._tmp.path().join(n);
            fs::File::create(&p).unwrap();
            (fs::metadata(&p).unwrap().ino(), p)
        };
        let mut two = [spare("a"), spare("b")];
        two.sort();
        let [(_, low), (_, high)] = two;
        fs::rename(&high, h.path("0.log")).unwrap();

        let old = lines("old", 0..20, 200);
        h.append("0.log", &old);
        h.poll_idle();
        assert_eq!(h.records_starting("old "), 20);
        // Written, then the agent crashes before reading it.
        h.append("0.log", &lines("old", 20..25, 200));
        h.restart();
        // copytruncate before the restarted agent lists the directory.
        let copy = h.path("0.log.20261123-100000");
        fs::copy(h.path("0.log"), &low).unwrap();
        fs::rename(&low, &copy).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(h.path("0.log"))
            .unwrap()
            .set_len(0)
            .unwrap();
        h.append("0.log", &lines("new", 0..5, 200));
        h.poll_idle();
        assert_eq!(
            (h.records_starting("old "), h.records_starting("new ")),
            (25, 5),
            "the copy is read on from the live file's entry"
        );
        let copy_meta = fs::metadata(&copy).unwrap();
        assert_eq!(
            h.entries_of(&old),
            vec![(copy_meta.ino(), copy_meta.len(), false)],
            "one entry for the content, the copy's: none left with the live file's inode"
        );

        // Everything is acknowledged; while the agent is down (or before it lists the
        // directory) the copy is gzipped and deleted.
        h.restart();
        let gz = h.path("0.log.20261123-100000.gz");
        fs::write(&gz, gzip(&fs::read(&copy).unwrap())).unwrap();
        fs::remove_file(&copy).unwrap();
        h.poll_idle();
        assert_eq!(
            h.records_starting("old "),
            25,
            "the gzip resumes where the copy was delivered to: nothing read again"
        );
        assert_eq!(h.records_starting("new "), 5);
        let gz_ino = fs::metadata(&gz).unwrap().ino();
        assert_eq!(
            h.entries_of(&old),
            vec![(gz_ino, copy_meta.len(), true)],
            "the gzip took the entry of the copy, gone from disk"
        );
    }

    /// `<prefix> <i>` for each `i` in `seqs`: the order records must be read in.
    fn names(prefix: &str, seqs: std::ops::Range<usize>) -> Vec<String> {
        seqs.map(|i| format!("{prefix} {i}")).collect()
    }

    /// The kubelet rotates the live file while a restarted agent lists the
    /// directory, after it looked at the files and before it opened them: the name
    /// `0.log` it saw is the new live file by then, and the file it saw under that
    /// name is `0.log.<timestamp>`, with lines the agent had not delivered. That
    /// file is read first, then the new live file: a listing that opened the new file
    /// as the one it had seen, and found the renamed one only at the next listing,
    /// read the new lines before the old (the sigkill test's first deliveries out of
    /// order).
    #[test]
    fn a_rotation_racing_a_listing_keeps_files_in_order() {
        for at in [RacePoint::AfterRead, RacePoint::BeforeOpen] {
            rotation_racing_a_listing(at);
        }
    }

    fn rotation_racing_a_listing(at: RacePoint) {
        let mut h = Harness::new(256 * 1024);
        h.deliver = true;
        h.append("0.log", &lines("old", 0..20, 100));
        h.poll_idle();
        // Written, then the agent is killed before it reads them.
        h.append("0.log", &lines("old", 20..30, 100));
        h.restart();
        h.records.clear();
        let (live, rotated) = (h.path("0.log"), h.path("0.log.20261123-100000"));
        let new = lines("new", 0..5, 100);
        let race = move || {
            fs::rename(&live, &rotated).unwrap();
            fs::write(&live, &new).unwrap();
        };
        h.stream.race = Some((at, Box::new(race)));
        h.poll_idle();
        // Whatever a listing missed, the next one (a rescan) finds.
        h.stream.needs_listing = true;
        h.poll_idle();
        assert_eq!(
            h.read_order(),
            [names("old", 20..30), names("new", 0..5)].concat(),
            "race {at:?}"
        );
        assert_eq!(
            h.metric("kubeship_log_file_errors_total{reason=\"open\"}"),
            0,
            "race {at:?}: a rotation is no open error"
        );
    }

    /// The kubelet compresses a rotated file (writes the `.gz`, removes the plain
    /// file) while a restarted agent lists the directory: the plain file it saw is
    /// gone when it opens it, and the `.gz` was not there when it read the
    /// directory. The `.gz` is read on from the plain file's checkpoint before the
    /// live file, not found at a later listing after the live file was read.
    #[test]
    fn a_gzip_racing_a_listing_keeps_files_in_order() {
        for at in [RacePoint::AfterRead, RacePoint::BeforeOpen] {
            gzip_racing_a_listing(at);
        }
    }

    fn gzip_racing_a_listing(at: RacePoint) {
        let mut h = Harness::new(256 * 1024);
        h.deliver = true;
        h.append("0.log", &lines("old", 0..20, 100));
        h.poll_idle();
        h.append("0.log", &lines("old", 20..30, 100));
        let rotated = h.path("0.log.20261123-100000");
        fs::rename(h.path("0.log"), &rotated).unwrap();
        h.append("0.log", &lines("new", 0..5, 100));
        h.restart();
        h.records.clear();
        let race = move || {
            let gz = rotated.with_file_name("0.log.20261123-100000.gz");
            fs::write(&gz, gzip(&fs::read(&rotated).unwrap())).unwrap();
            fs::remove_file(&rotated).unwrap();
        };
        h.stream.race = Some((at, Box::new(race)));
        h.poll_idle();
        h.stream.needs_listing = true;
        h.poll_idle();
        assert_eq!(
            h.read_order(),
            [names("old", 20..30), names("new", 0..5)].concat(),
            "race {at:?}"
        );
        assert_eq!(
            h.metric("kubeship_log_file_errors_total{reason=\"open\"}"),
            0,
            "race {at:?}: a rotation is no open error"
        );
    }

    /// Between two listings the kubelet rotates twice and compresses the first
    /// rotated file (the file being read as the live one, with lines not read yet):
    /// the next listing finds that file under no name, only its `.gz` (a copy of it,
    /// not read twice) and a newer rotated file. The reader still taken for the live
    /// file stands where its copy's name says, before the newer file: it sorted after
    /// every rotated file, and the newer lines were read before its own (the sigkill
    /// test's first deliveries out of order, once a listing raced no more).
    #[test]
    fn a_file_rotated_and_compressed_between_listings_keeps_its_place() {
        let mut h = Harness::new(256 * 1024);
        h.append("0.log", &lines("a", 0..10, 100));
        h.poll_idle();
        h.append("0.log", &lines("a", 10..20, 100));
        let first = h.path("0.log.20261123-100009");
        fs::rename(h.path("0.log"), &first).unwrap();
        h.append("0.log", &lines("b", 0..5, 100));
        fs::rename(h.path("0.log"), h.path("0.log.20261123-100010")).unwrap();
        h.append("0.log", &lines("c", 0..5, 100));
        fs::write(
            h.path("0.log.20261123-100009.gz"),
            gzip(&fs::read(&first).unwrap()),
        )
        .unwrap();
        fs::remove_file(&first).unwrap();
        h.stream.needs_listing = true;
        h.poll_idle();
        assert_eq!(
            h.read_order(),
            [names("a", 0..20), names("b", 0..5), names("c", 0..5)].concat()
        );
    }

    /// A live file let go while its container seemed gone, then found again and read
    /// on, while its batches are still in flight (a sink holding events back): the
    /// file it was read from so far.
    fn let_go_and_found_again(h: &mut Harness) -> Vec<u8> {
        h.deliver = true;
        h.held = Some(Vec::new());
        let head = lines("a", 0..10, 100);
        h.append("0.log", &head);
        h.poll_idle();
        h.stream.closing_since = Some(h.now);
        h.advance(Duration::from_secs(6));
        h.poll_idle();
        assert!(h.stream.files.is_empty(), "let go");
        h.stream.closing_since = None;
        h.append("0.log", &lines("a", 10..15, 100));
        h.stream.needs_listing = true;
        h.poll_idle();
        assert_eq!(h.records_starting("a "), 15);
        head
    }

    /// The reopened file continues its checkpoint where acknowledgements left it:
    /// nothing was acknowledged, so a crash right after a checkpoint write reads
    /// every line again (its entry was raised to how far it had been read, and the
    /// lines in flight were lost).
    #[test]
    fn a_file_found_again_keeps_its_checkpoint_until_acknowledged() {
        let mut h = Harness::new(256 * 1024);
        let head = let_go_and_found_again(&mut h);
        let ino = fs::metadata(h.path("0.log")).unwrap().ino();
        assert_eq!(
            h.entries_of(&head),
            vec![(ino, 0, false)],
            "nothing acknowledged"
        );
        h.restart();
        h.records.clear();
        h.poll_idle();
        assert_eq!(
            h.read_order(),
            names("a", 0..15),
            "read again after the crash"
        );
    }

    /// The batches read before the file was let go are acknowledged last: they
    /// neither mark its entry done (it is being read) nor move it back.
    #[test]
    fn late_acknowledgements_of_a_file_found_again_do_not_finish_it() {
        let mut h = Harness::new(256 * 1024);
        let head = let_go_and_found_again(&mut h);
        for seq in h.held.take().unwrap().into_iter().rev() {
            h.ledger.ack(seq);
        }
        let m = fs::metadata(h.path("0.log")).unwrap();
        assert_eq!(h.entries_of(&head), vec![(m.ino(), m.len(), false)]);
    }

    /// A live file truncated in place without a copy, next to an older rotated file
    /// that starts with the same bytes and is longer (read, still open or let go):
    /// that file is not the copytruncate copy. The truncation is counted, the live
    /// file read from its start, the older file not read again from the live file's
    /// offset.
    #[test]
    fn an_older_file_starting_alike_is_not_taken_for_a_copytruncate_copy() {
        for let_go in [false, true] {
            let mut h = Harness::new(256 * 1024);
            let banner = lines("BANNER", 0..1, 400);
            let rotated = [banner.clone(), lines("rotated", 0..40, 100)].concat();
            h.append("0.log.20261123-100000", &rotated);
            h.append("0.log", &banner);
            h.append("0.log", &lines("live", 0..10, 100));
            h.poll_idle();
            if let_go {
                h.advance(Duration::from_secs(6));
                h.poll_idle();
                assert_eq!(h.stream.files.len(), 1, "the rotated file let go");
            }
            fs::File::create(h.path("0.log")).unwrap();
            h.append("0.log", &banner);
            h.append("0.log", &lines("new", 0..3, 100));
            for _ in 0..3 {
                h.advance(Duration::from_millis(1100));
                h.poll_idle();
            }
            let rotations = |h: &Harness, reason: &str| {
                h.metric(&format!(
                    "kubeship_log_rotations_total{{reason=\"{reason}\"}}"
                ))
            };
            assert_eq!(
                (
                    h.records_starting("rotated "),
                    h.records_starting("live "),
                    h.records_starting("new ")
                ),
                (40, 10, 3),
                "let go: {let_go}"
            );
            assert_eq!(
                (rotations(&h, "truncated"), rotations(&h, "copytruncate")),
                (1, 0),
                "let go: {let_go}"
            );
        }
    }
}
