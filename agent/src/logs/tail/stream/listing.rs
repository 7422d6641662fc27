//! Listing a container's directory: which files are new, renamed or copies of
//! others, and where a new one starts reading (its checkpoint, if any).

use std::fs;
use std::io;
use std::os::unix::fs::DirEntryExt;
use std::path::PathBuf;

use super::{ContainerStream, PollContext, refused_link};
use crate::logs::checkpoint::{Entry, FileId, Fingerprint};
use crate::logs::metrics::FileError;
use crate::logs::tail::decode::Decoder;
use crate::logs::tail::file::{FileReader, read_head};
use crate::logs::tail::names::{Order, classify};

/// Checkpoint entries of files gone from disk are dropped after this long.
const PRUNE_GRACE_SECS: u64 = 600;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What opening a file found.
enum Opened {
    /// It needs reading.
    Reader(Box<FileReader>),
    /// It needs no reading (done, a copy of another, empty); its fingerprint.
    Skip(Fingerprint),
    /// The path names another file than the one looked at: the directory changed.
    Changed,
}

/// Times a listing is taken again per poll when the directory changed meanwhile.
const LISTING_ATTEMPTS: u32 = 4;

/// Polls in a row whose listings did not settle after which the stream reads what
/// it found anyway.
const UNSETTLED_POLLS: u32 = 3;

/// The stream's entries as one read of its directory shows them, (name, inode),
/// sorted: two equal reads show that no file of the stream was created, renamed or
/// removed in between (a rotation always makes a new name; the live file made again
/// has a new inode).
type Snapshot = Vec<(std::ffi::OsString, u64)>;

/// A regular file of the stream as listed: path, place in its history, gzip.
type Sibling = (PathBuf, Order, bool);

impl ContainerStream {
    /// The stream's regular files in its directory, (path, order, gzip): the live
    /// file first, then the newest rotated ones, plain before gzip (a file seen first
    /// is the one its copies are recognised by). Symlinks are never followed: they go
    /// to the second list, with the directory itself when it became a link (then
    /// nothing is listed).
    pub(super) fn siblings(&self) -> (Vec<Sibling>, Vec<PathBuf>) {
        let (files, links, _) = self.read_stream_dir();
        (files, links)
    }

    /// [`siblings`](Self::siblings), with the [`Snapshot`] of the read (`None` when
    /// the directory could not be read, or became a link).
    fn read_stream_dir(&self) -> (Vec<Sibling>, Vec<PathBuf>, Option<Snapshot>) {
        let mut links = Vec::new();
        let mut snapshot = Vec::new();
        // The directory was found through its canonical path: a component of it
        // replaced by a link since would lead out of the pods directory.
        if !fs::canonicalize(&self.dir).is_ok_and(|d| d == self.dir) {
            if fs::symlink_metadata(&self.dir).is_ok() {
                links.push(self.dir.clone());
            }
            return (Vec::new(), links, None);
        }
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return (Vec::new(), links, None);
        };
        let mut files: Vec<_> = rd
            .filter_map(|e| {
                let e = e.ok()?;
                let name = e.file_name();
                let (order, gz) = classify(&self.base, name.to_str()?)?;
                snapshot.push((name, e.ino()));
                let kind = e.file_type().ok()?;
                if kind.is_symlink() {
                    links.push(e.path());
                }
                kind.is_file().then(|| (e.path(), order, gz))
            })
            .collect();
        files.sort_by(|a, b| (&b.1, !b.2).cmp(&(&a.1, !a.2)));
        snapshot.sort();
        (files, links, Some(snapshot))
    }

    /// Lists the directory: follows renames, opens files not seen before. A listing
    /// that finds the directory changed while it was taken (a rotation or a
    /// compression under way) is taken again, up to [`LISTING_ATTEMPTS`] times;
    /// when none settles, `needs_listing` stays set and the stream reads nothing
    /// until one does (for at most [`UNSETTLED_POLLS`] polls in a row): a file
    /// renamed meanwhile, which that listing did not see, may be older than the files
    /// open, and files are read oldest first.
    pub(super) fn reconcile(&mut self, env: &mut PollContext<'_>) -> bool {
        self.needs_listing = false;
        env.start_at_end |= std::mem::take(&mut self.start_at_end);
        let mut added = false;
        for attempt in 0..LISTING_ATTEMPTS {
            let (opened, settled) = self.list(attempt == 0, env);
            added |= opened;
            if settled {
                self.unsettled = 0;
                return added;
            }
        }
        self.unsettled += 1;
        if self.unsettled < UNSETTLED_POLLS {
            self.needs_listing = true;
        } else {
            // A directory that never stops changing (or a filesystem whose reads of
            // it never agree) must not stop the stream: read what was found.
            self.unsettled = 0;
            if let Some(n) = env.limits.allow("listing", env.out.now) {
                tracing::warn!(stream = %self.key, suppressed = n,
                    "a container's log directory kept changing while it was listed; \
                     reading the files found so far");
            }
        }
        added
    }

    /// One listing; (a file was opened, the listing settled). It is settled when the
    /// directory read the same before and after the files were looked at (`stat`),
    /// and each file opened was the one looked at: in between, a rename or removal
    /// could hide a file (the live file renamed away after the directory was read:
    /// `0.log` then names the new live file, and the old one is listed under no
    /// name). What an unsettled listing opened is kept (each reader holds the file
    /// it opened); the next one sees the rest.
    fn list(&mut self, first: bool, env: &mut PollContext<'_>) -> (bool, bool) {
        let now = env.out.now;
        let mut added = false;
        let mut seen = Vec::new();
        let mut present = Vec::new();
        let mut complete = true;
        // The live file's identity as listed now (it comes first): a reader that
        // thinks it reads the live file may not have noticed its rotation yet.
        let mut live_now = None;
        let (files, links, before) = self.read_stream_dir();
        if first {
            // Counted once per listing, however often it is taken.
            for link in &links {
                refused_link(env.metrics, env.limits, now, &link.display());
            }
        }
        complete &= before.is_some();
        #[cfg(test)]
        self.race_at(super::RacePoint::AfterRead);
        let files: Vec<_> = files
            .into_iter()
            .filter_map(|(path, order, gz)| match fs::symlink_metadata(&path) {
                Ok(meta) => Some((path, order, gz, meta)),
                // Gone since the directory was read: the second read tells.
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(_) => {
                    complete = false;
                    None
                }
            })
            .collect();
        if self.read_stream_dir().2 != before {
            return (false, false);
        }
        // Every file listed, by identity: whether the file of an entry a copy resumes
        // from is still there.
        let on_disk: Vec<_> = files
            .iter()
            .map(|(path, _, gz, meta)| (FileId::of(meta), path.clone(), *gz))
            .collect();
        let rotated: Vec<_> = files
            .iter()
            .filter(|(_, order, _, _)| *order != Order::Live)
            .map(|(path, order, gz, meta)| (FileId::of(meta), path.clone(), order.clone(), *gz))
            .collect();
        #[cfg(test)]
        self.race_at(super::RacePoint::BeforeOpen);
        let mut settled = true;
        for (path, order, gz, meta) in files {
            let ino = FileId::of(&meta);
            seen.push(ino);
            if order == Order::Live {
                live_now = Some(ino);
            }
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
            match self.open(path, order, gz, ino, meta.len(), live_now, &on_disk, env) {
                Ok(Opened::Reader(reader)) => {
                    present.push(reader.fp);
                    self.files.push(*reader);
                    added = true;
                }
                Ok(Opened::Skip(fp)) => {
                    present.push(fp);
                    self.skipped.insert(ino, (meta.len(), fp));
                }
                Ok(Opened::Changed) => {
                    settled = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Renamed or removed since it was looked at.
                    settled = false;
                    break;
                }
                Err(e) => {
                    complete = false;
                    env.metrics.logs.file_error(FileError::Open);
                    if let Some(n) = env.limits.allow("open", now) {
                        tracing::warn!(stream = %self.key, error = %e, suppressed = n, "opening a log file failed; retrying at the next rescan");
                    }
                }
            }
        }
        if settled && complete {
            self.place_unlisted(&seen, &rotated, now);
        }
        self.files.sort_by(|a, b| a.order.cmp(&b.order));
        if !settled {
            return (added, false);
        }
        self.skipped.retain(|ino, _| seen.contains(ino));
        if complete {
            present.extend(self.finished.iter().map(|g| g.fp));
            let stale_before = unix_now().saturating_sub(PRUNE_GRACE_SECS);
            env.ledger
                .with_store(|s| s.prune_stream(&self.key, &present, stale_before));
        }
        (added, true)
    }

    /// Readers whose file a settled and complete listing found under no name
    /// (`seen`: the files it listed) are not live: the kubelet renamed the file and
    /// compressed it (made the `.gz`, removed the file) between two listings. Each
    /// stands where the name of its copy among the `rotated` files listed says
    /// (identity, path, order, gzip): a reader still taken for the live file sorted
    /// after every rotated file, newer ones found with its copy too, and was read
    /// after them.
    fn place_unlisted(
        &mut self,
        seen: &[FileId],
        rotated: &[(FileId, PathBuf, Order, bool)],
        now: std::time::Instant,
    ) {
        for f in &mut self.files {
            if f.finished || seen.contains(&f.ino) {
                continue;
            }
            f.rotated_at.get_or_insert(now);
            let copy = rotated.iter().find(|(id, path, _, gz)| {
                f.fp.len > 0
                    && read_head(path, *gz).is_ok_and(|(file, head)| {
                        file.metadata().is_ok_and(|m| FileId::of(&m) == *id)
                            && f.fp.matches(&head)
                            && f.copied_to(&file, *gz)
                    })
            });
            if let Some((_, _, order, _)) = copy {
                f.order = order.clone();
            }
        }
    }

    /// Opens a file not seen before, at its checkpoint, unless it needs no reading.
    /// `listed` is the identity the listing saw under `path` (another file there now
    /// is [`Opened::Changed`]); `live_now` the live file as listed; `on_disk` every
    /// file listed (identity, path, gzip).
    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        path: PathBuf,
        order: Order,
        gz: bool,
        listed: FileId,
        size: u64,
        live_now: Option<FileId>,
        on_disk: &[(FileId, PathBuf, bool)],
        env: &mut PollContext<'_>,
    ) -> io::Result<Opened> {
        let (file, head) = read_head(&path, gz)?;
        let id = FileId::of(&file.metadata()?);
        if id != listed {
            return Ok(Opened::Changed);
        }
        let live = order == Order::Live;
        let fp = Fingerprint::of(&head);
        if head.is_empty() && !live {
            return Ok(Opened::Skip(fp));
        }
        // A file let go a moment ago: its checkpoint may not say so yet (its last
        // batches in flight). Only what it got since is read (a live file let go
        // while its container seemed gone); one given up is left alone.
        let let_go = self
            .finished
            .iter()
            .rfind(|g| g.id == id && g.fp.matches(&head))
            .copied();
        if let Some(g) = let_go
            && (!g.read || gz || size <= g.offset)
        {
            return Ok(Opened::Skip(fp));
        }
        // A file with an entry of its own resumes from it. Else a rotated file may be
        // a copy of another (a gzip, a copytruncate copy): not read twice, or read on
        // from the other's entry. The live file never is (copies get new names),
        // however its first bytes look: a container may start two files alike.
        let (entry, copied) = match env.ledger.with_store(|s| s.find_own(&self.key, &head, id)) {
            Some(e) => (Some(e), false),
            None if live => (None, false),
            None if self.is_copy(&file, &head, gz, live_now) => return Ok(Opened::Skip(fp)),
            None => {
                let reading: Vec<_> = self.files.iter().map(|f| (f.fp, f.ino)).collect();
                let e = env
                    .ledger
                    .with_store(|s| s.find_copy(&self.key, &head, &reading).cloned());
                (e, true)
            }
        };
        // A copy resuming from the entry of a file that no longer holds that content
        // (gone from disk; truncated since: a copytruncate while the agent was down or
        // before it listed the directory) takes that entry over, so that the content
        // keeps one entry; one left behind would stay at that offset, and a later copy
        // (the copy's gzip) could resume from it and read again what was delivered.
        let mut takes_over = None;
        let offset = match entry {
            _ if let Some(g) = let_go => g.offset,
            Some(e) if e.done && !live && (gz || e.offset >= size) => {
                return Ok(Opened::Skip(e.fingerprint()));
            }
            Some(e) if !gz && e.offset > size => {
                tracing::warn!(path = %path.display(), checkpoint = e.offset, size, "file is shorter than its checkpoint; reading it from the start");
                0
            }
            Some(e) => {
                if copied && !still_holds(&e, on_disk) {
                    takes_over = Some((e.fingerprint(), e.file_id()));
                }
                e.offset
            }
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
        reader.id = match let_go {
            // Read on in the same track: a new one would put its entry at how far the
            // file was read while its last batches may be in flight (a crash then
            // loses them), and both would write that entry.
            Some(g) if env.ledger.reopen(g.track) => {
                if fp != g.fp {
                    env.ledger.update_fingerprint(g.track, fp);
                }
                g.track
            }
            _ => env
                .ledger
                .register_file(&self.key, fp, reader.ino, offset, takes_over),
        };
        Ok(Opened::Reader(Box::new(reader)))
    }

    /// True when `file`, a rotated file with no entry of its own whose first bytes
    /// are `head`, is a copy of a file being read (its content further on is the
    /// same, or that file was truncated since) or just let go: a gzip of a rotated
    /// file, a copytruncate copy of the live one (`live_now`; never a gzip). A
    /// container may start two files alike.
    fn is_copy(&self, file: &fs::File, head: &[u8], gz: bool, live_now: Option<FileId>) -> bool {
        let same = |fp: &Fingerprint| fp.len > 0 && fp.matches(head);
        self.finished.iter().any(|g| g.read && same(&g.fp))
            || self.files.iter().any(|f| {
                let live = Some(f.ino) == live_now;
                !f.finished && same(&f.fp) && !(live && gz) && f.copied_to(file, gz)
            })
    }
}

/// True when the file `e` is an entry of is listed (`on_disk`: identity, path, gzip)
/// and still starts with the content `e` was taken of.
fn still_holds(e: &Entry, on_disk: &[(FileId, PathBuf, bool)]) -> bool {
    on_disk.iter().any(|(id, path, gz)| {
        *id == e.file_id()
            && read_head(path, *gz).is_ok_and(|(file, head)| {
                // The path may name another file by now.
                file.metadata().is_ok_and(|m| FileId::of(&m) == *id)
                    && e.fp_len > 0
                    && e.fingerprint().matches(&head)
            })
    })
}
