//! Checkpoints: how far each log file has been delivered, persisted atomically.
//!
//! A file is identified by the container stream it belongs to (the live path,
//! `/var/log/pods/<ns>_<pod>_<uid>/<container>/0.log`), a [`Fingerprint`] of its
//! first bytes (decompressed for `.gz`) and the [`FileId`] it had on disk (device,
//! inode, birth time). Neither alone is enough: the kubelet renames a rotated file
//! (same inode) and later gzips it (same content, new inode), while two files of
//! one container may start with the same bytes (docker json-file writes `time`
//! last, so a container printing the same long line after each rotation makes
//! files whose first 256 bytes agree) and an inode is reused for other content.
//! A file resumes from its own entry ([`Store::find_own`]: same inode, matching
//! content); only a file that is not the live one may take another file's entry
//! with the same content ([`Store::find_copy`]: it is a gzip or copytruncate copy of
//! it). The [`Store`] holds one [`Entry`] per known file and content: the operations
//! that give an entry another key ([`Store::moved`], [`Store::rekey`]) replace an
//! entry that had that key, and acknowledgements only [`Store::advance`] an entry,
//! never create one, so an entry moved away or dropped is not written back. It is
//! written with temp file, fsync, rename.

pub mod writer;

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::telemetry::Metrics;

/// How many head bytes identify a file.
pub const FINGERPRINT_BYTES: usize = 256;

/// A hash of a file's first `len` bytes (up to [`FINGERPRINT_BYTES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Fingerprint {
    /// FNV-1a 64 of the first `len` bytes.
    pub hash: u64,
    /// How many bytes were hashed; 0 for an empty file.
    pub len: u32,
}

impl Fingerprint {
    /// Fingerprint of the first [`FINGERPRINT_BYTES`] of `head`; of a shorter head,
    /// only its complete lines. A half-written first line (`2026-11-23T1`) is common
    /// to every file of a container and must not identify one: its length is 0.
    pub fn of(head: &[u8]) -> Self {
        let head = if head.len() >= FINGERPRINT_BYTES {
            &head[..FINGERPRINT_BYTES]
        } else {
            match memchr::memrchr(b'\n', head) {
                Some(nl) => &head[..=nl],
                None => &[],
            }
        };
        Self {
            hash: fnv1a(head),
            len: head.len() as u32,
        }
    }

    /// True when `head` starts with the bytes this fingerprint was taken of.
    pub fn matches(&self, head: &[u8]) -> bool {
        let n = self.len as usize;
        head.len() >= n && fnv1a(&head[..n]) == self.hash
    }

    /// True when it covers as many bytes as it ever will.
    pub fn is_complete(&self) -> bool {
        self.len as usize >= FINGERPRINT_BYTES
    }
}

/// Which file on disk: device, inode and birth time, so that an inode freed and
/// reused for another file is not taken for the old one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FileId {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Birth time, unix nanoseconds; 0 where the filesystem (or kernel) does not
    /// tell it: the inode number alone then.
    pub born: u64,
}

impl FileId {
    /// Not recorded: an entry written before identities were kept.
    pub const UNKNOWN: FileId = FileId {
        dev: 0,
        ino: 0,
        born: 0,
    };

    /// No file: the identity of a reader whose inode was taken over by new content.
    pub const NONE: FileId = FileId {
        dev: u64::MAX,
        ino: u64::MAX,
        born: u64::MAX,
    };

    /// From file metadata (`stat`, the birth time from `statx`).
    pub fn of(m: &fs::Metadata) -> Self {
        let born = m
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        Self {
            dev: m.dev(),
            ino: m.ino(),
            born,
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// One file's checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The container stream (live file path) the file belongs to.
    pub stream: String,
    /// Fingerprint hash, hex.
    #[serde(with = "hex_u64")]
    pub fp: u64,
    /// Bytes covered by the fingerprint.
    pub fp_len: u32,
    /// The file's device, inode and birth time ([`FileId`]); all 0 in entries
    /// written before they were recorded (those match by content alone).
    #[serde(default)]
    pub dev: u64,
    /// See `dev`.
    #[serde(default)]
    pub ino: u64,
    /// See `dev`.
    #[serde(default)]
    pub born: u64,
    /// Everything before this offset was delivered.
    pub offset: u64,
    /// The file was read to its end and let go (rotated away, or its container gone).
    pub done: bool,
    /// Unix seconds of the last change.
    pub updated: u64,
}

impl Entry {
    /// The fingerprint this entry is keyed by.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            hash: self.fp,
            len: self.fp_len,
        }
    }

    /// The file this entry is of.
    pub fn file_id(&self) -> FileId {
        FileId {
            dev: self.dev,
            ino: self.ino,
            born: self.born,
        }
    }

    fn set_file_id(&mut self, id: FileId) {
        (self.dev, self.ino, self.born) = (id.dev, id.ino, id.born);
    }

    fn fingerprint_matches(&self, head: &[u8]) -> bool {
        self.fp_len > 0 && self.fingerprint().matches(head)
    }

    fn is(&self, fp: Fingerprint, id: FileId) -> bool {
        self.fingerprint() == fp && self.file_id() == id
    }
}

mod hex_u64 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:016x}"))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        u64::from_str_radix(&s, 16).map_err(serde::de::Error::custom)
    }
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    files: Vec<Entry>,
}

/// Entries kept per stream at most (the kubelet keeps five files per container;
/// entries of files gone from disk are pruned, this only bounds the worst case).
const MAX_ENTRIES_PER_STREAM: usize = 256;

/// All checkpoints, by stream.
#[derive(Debug, Default)]
pub struct Store {
    streams: HashMap<String, Vec<Entry>>,
    dirty: bool,
}

impl Store {
    /// Loads `path`; a missing file is an empty store (`Ok(None)` tells the caller it
    /// is the agent's first start).
    pub fn load(path: &Path) -> io::Result<Option<Self>> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let disk: OnDisk = serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        if disk.version != 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: unsupported checkpoint version {}",
                    path.display(),
                    disk.version
                ),
            ));
        }
        let mut store = Store::default();
        for e in disk.files {
            store.streams.entry(e.stream.clone()).or_default().push(e);
        }
        Ok(Some(store))
    }

    /// The entry of the file `id` of `stream` whose first bytes are `head`, if any
    /// (longest fingerprint wins). Entries without a recorded identity (older
    /// checkpoint files) match by content and take `id`, so that an upgrade keeps
    /// every position.
    pub fn find_own(&mut self, stream: &str, head: &[u8], id: FileId) -> Option<Entry> {
        let list = self.streams.get_mut(stream)?;
        let best = |want: FileId| {
            list.iter()
                .enumerate()
                .filter(|(_, e)| e.file_id() == want && e.fingerprint_matches(head))
                .max_by_key(|(_, e)| e.fp_len)
                .map(|(i, _)| i)
        };
        let i = best(id).or_else(|| best(FileId::UNKNOWN))?;
        let e = &mut list[i];
        if e.file_id() != id {
            e.set_file_id(id);
            self.dirty = true;
        }
        Some(e.clone())
    }

    /// True when the file `id` of `stream` whose first bytes are `head` has an entry
    /// of its own (by its identity; unlike [`Store::find_own`], entries without one
    /// are not adopted).
    pub fn has_own(&self, stream: &str, head: &[u8], id: FileId) -> bool {
        self.streams.get(stream).is_some_and(|list| {
            list.iter()
                .any(|e| e.file_id() == id && e.fingerprint_matches(head))
        })
    }

    /// An entry of `stream` of another file whose first bytes were `head` too, for a
    /// copy of that file (a gzip of a rotated file, a copytruncate copy), except the
    /// entries of `reading` (files being read, by identity and fingerprint: their
    /// copies are recognised while they are open). Of several, the longest
    /// fingerprint, then the lowest offset: whatever order the entries were loaded
    /// or made in, and reading again is a duplicate where skipping would be a loss.
    pub fn find_copy(
        &self,
        stream: &str,
        head: &[u8],
        reading: &[(Fingerprint, FileId)],
    ) -> Option<&Entry> {
        self.streams
            .get(stream)?
            .iter()
            .filter(|e| e.fingerprint_matches(head) && !reading.iter().any(|&(f, i)| e.is(f, i)))
            .min_by_key(|e| (std::cmp::Reverse(e.fp_len), e.offset))
    }

    /// Sets the offset of the entry of (`stream`, `fp`, `id`) if there is one (an
    /// acknowledgement: it never creates an entry, so one moved to another file,
    /// taken over by a copy or dropped stays so). True when there is one.
    pub fn advance(
        &mut self,
        stream: &str,
        fp: Fingerprint,
        id: FileId,
        offset: u64,
        done: bool,
        now_unix: u64,
    ) -> bool {
        let Some(e) = self.entry_mut(stream, fp, id) else {
            return false;
        };
        if e.offset != offset || e.done != done {
            e.offset = offset;
            e.done = done;
            e.updated = now_unix;
            self.dirty = true;
        }
        true
    }

    /// Creates or updates the entry of (`stream`, `fp`, `id`).
    pub fn put(
        &mut self,
        stream: &str,
        fp: Fingerprint,
        id: FileId,
        offset: u64,
        done: bool,
        now_unix: u64,
    ) {
        if fp.len == 0 {
            return;
        }
        let list = self.streams.entry(stream.to_string()).or_default();
        match list.iter_mut().find(|e| e.is(fp, id)) {
            Some(e) => {
                if e.offset == offset && e.done == done {
                    return;
                }
                e.offset = offset;
                e.done = done;
                e.updated = now_unix;
            }
            None => {
                list.push(Entry {
                    stream: stream.to_string(),
                    fp: fp.hash,
                    fp_len: fp.len,
                    dev: id.dev,
                    ino: id.ino,
                    born: id.born,
                    offset,
                    done,
                    updated: now_unix,
                });
                if list.len() > MAX_ENTRIES_PER_STREAM {
                    // Drop the stalest finished entry (or the stalest at all).
                    let victim = list
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, e)| (!e.done, e.updated))
                        .map(|(i, _)| i)
                        .unwrap_or(0);
                    list.remove(victim);
                }
            }
        }
        self.dirty = true;
    }

    /// Replaces the fingerprint of an entry that grew a longer one (an entry that had
    /// the new key already goes: one entry per file and content).
    pub fn rekey(&mut self, stream: &str, id: FileId, old: Fingerprint, new: Fingerprint) {
        if old == new || self.entry_mut(stream, old, id).is_none() {
            return;
        }
        self.remove(stream, new, id);
        if let Some(e) = self.entry_mut(stream, old, id) {
            e.fp = new.hash;
            e.fp_len = new.len;
            self.dirty = true;
        }
    }

    /// The file of an entry is now `new` (a copytruncate copy holds its content); no
    /// entry of `old` with that content is left, and an entry `new` had for it goes
    /// (one entry per file and content).
    pub fn moved(&mut self, stream: &str, fp: Fingerprint, old: FileId, new: FileId) {
        if old == new || self.entry_mut(stream, fp, old).is_none() {
            return;
        }
        self.remove(stream, fp, new);
        if let Some(e) = self.entry_mut(stream, fp, old) {
            e.set_file_id(new);
            self.dirty = true;
        }
    }

    /// Drops the entry of a file whose content is gone from disk (truncated in place;
    /// taken over by a copy).
    pub fn remove(&mut self, stream: &str, fp: Fingerprint, id: FileId) {
        if let Some(list) = self.streams.get_mut(stream)
            && let Some(i) = list.iter().position(|e| e.is(fp, id))
        {
            list.remove(i);
            self.dirty = true;
        }
    }

    fn entry_mut(&mut self, stream: &str, fp: Fingerprint, id: FileId) -> Option<&mut Entry> {
        self.streams
            .get_mut(stream)?
            .iter_mut()
            .find(|e| e.is(fp, id))
    }

    /// Drops every stream for which `keep` says no.
    pub fn retain_streams(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let before = self.streams.len();
        self.streams.retain(|s, _| keep(s));
        if self.streams.len() != before {
            self.dirty = true;
        }
    }

    /// Number of entries.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.streams.values().map(Vec::len).sum()
    }

    /// True when there is no entry.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the store changed since it was last taken.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Forces the next [`Store::take_dirty`] to return the store (a write failed).
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Drops entries of `stream` whose file is no longer on disk: not in `present`
    /// and unchanged since `stale_before` (unix seconds), a grace against races
    /// with a listing.
    pub fn prune_stream(&mut self, stream: &str, present: &[Fingerprint], stale_before: u64) {
        if let Some(list) = self.streams.get_mut(stream) {
            let before = list.len();
            list.retain(|e| e.updated >= stale_before || present.contains(&e.fingerprint()));
            if list.len() != before {
                self.dirty = true;
            }
        }
    }

    /// The serialized store when it changed since the last call.
    pub fn take_dirty(&mut self) -> Option<Vec<u8>> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        Some(self.serialize())
    }

    /// The serialized store.
    pub fn serialize(&self) -> Vec<u8> {
        let mut files: Vec<Entry> = self.streams.values().flatten().cloned().collect();
        files.sort_by(|a, b| (&a.stream, a.fp, a.ino).cmp(&(&b.stream, b.fp, b.ino)));
        serde_json::to_vec_pretty(&OnDisk { version: 1, files }).expect("checkpoint serializes")
    }
}

/// The checkpoint file inside the state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("checkpoints.json")
}

/// Loads checkpoints; also says whether there are none to go on (the first start,
/// where `logs.read_from` applies). A corrupt or unreadable file is set aside
/// (never silently reused; counted in `checkpoint_load_errors_total`) and the start
/// is a first start: files are read as `read_from` says (from their beginnings by
/// default: duplicates, not loss).
pub fn load(path: &Path, metrics: &Metrics) -> (Store, bool) {
    match Store::load(path) {
        Ok(Some(s)) => (s, false),
        Ok(None) => (Store::default(), true),
        Err(e) => {
            metrics.logs.checkpoint_load_errors.inc();
            let unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let aside = path.with_extension(format!("json.corrupt-{unix}"));
            match std::fs::rename(path, &aside) {
                Ok(()) => {
                    tracing::error!(error = %e, moved_to = %aside.display(), "checkpoint file unreadable; set aside, starting as on a first start (logs.read_from applies)");
                }
                Err(re) => {
                    tracing::error!(error = %e, rename_error = %re, "checkpoint file unreadable and could not be set aside; starting as on a first start (logs.read_from applies)");
                }
            }
            (Store::default(), true)
        }
    }
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_prefix_of_a_grown_file() {
        let fp = Fingerprint::of(b"2026-01-01T00:00:00Z stdout F a\n2026-01-01T00:00:01Z std");
        assert_eq!(fp.len, 32, "complete lines only");
        assert!(fp.matches(b"2026-01-01T00:00:00Z stdout F a\n2026-01-01T00:00:01Z stdout F b\n"));
        assert!(!fp.matches(b"2026-01-01T00:00:00Z stdout F b\n"));
        assert!(!fp.matches(b"2026"), "shorter head cannot match");
        assert_eq!(
            Fingerprint::of(b"2026-01-01T0").len,
            0,
            "a half-written line identifies nothing"
        );
        assert_eq!(
            Fingerprint::of(&[b'x'; 1000]).len as usize,
            FINGERPRINT_BYTES
        );
    }

    const A: FileId = FileId {
        dev: 1,
        ino: 10,
        born: 100,
    };
    const B: FileId = FileId {
        dev: 1,
        ino: 11,
        born: 101,
    };

    #[test]
    fn store_round_trips_atomically_and_prefers_longest_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints.json");
        let mut s = Store::default();
        let head = b"line one\nline two\n";
        s.put("/p/0.log", Fingerprint::of(&head[..9]), A, 9, false, 1);
        s.put("/p/0.log", Fingerprint::of(head), A, 9, true, 2);
        s.put("/p/0.log", Fingerprint::of(b""), A, 0, false, 3); // empty: ignored
        let bytes = s.take_dirty().expect("dirty");
        assert!(s.take_dirty().is_none());
        write_atomic(&path, &bytes).unwrap();
        let mut back = Store::load(&path).unwrap().expect("exists");
        assert_eq!(back.len(), 2);
        let e = back.find_own("/p/0.log", head, A).unwrap();
        assert_eq!((e.offset, e.done, e.file_id()), (9, true, A));
        assert!(back.find_own("/q/0.log", head, A).is_none());
        assert!(
            Store::load(&dir.path().join("missing.json"))
                .unwrap()
                .is_none()
        );
    }

    /// Two files of a stream with the same first bytes are two entries: each finds
    /// its own; a copy (another inode) finds the other's, unless that one is open.
    #[test]
    fn same_head_other_inode_is_another_file_unless_a_copy() {
        let mut s = Store::default();
        let head = [b'x'; 300];
        let fp = Fingerprint::of(&head);
        s.put("/p/0.log", fp, A, 5000, true, 1);
        assert!(
            s.find_own("/p/0.log", &head, B).is_none(),
            "B has no entry of its own"
        );
        let gz = FileId { ino: 12, ..B };
        assert_eq!(
            s.find_copy("/p/0.log", &head, &[]).map(|e| e.offset),
            Some(5000),
            "a copy (gzip, copytruncate) of A resumes from A's entry"
        );
        assert!(
            s.find_copy("/p/0.log", &head, &[(fp, A)]).is_none(),
            "A is being read"
        );
        s.put("/p/0.log", fp, B, 70, false, 2);
        assert_eq!(s.len(), 2, "one entry per file");
        assert_eq!(s.find_own("/p/0.log", &head, B).unwrap().offset, 70);
        assert_eq!(s.find_own("/p/0.log", &head, A).unwrap().offset, 5000);
        // A reused inode number with a new birth time is another file.
        let reused = FileId { born: 999, ..A };
        assert!(s.find_own("/p/0.log", &head, reused).is_none());
        s.moved("/p/0.log", fp, B, gz);
        assert!(s.find_own("/p/0.log", &head, B).is_none(), "moved away");
        s.remove("/p/0.log", fp, gz);
        assert_eq!(s.len(), 1);
    }

    /// Identity operations keep one entry per (stream, fingerprint, file): a move or
    /// a longer fingerprint onto a key that had an entry replaces it; an
    /// acknowledgement ([`Store::advance`]) never makes an entry, so one moved away is
    /// not written back; of several entries a copy could resume from, the choice does
    /// not depend on their order (a loaded store is sorted by inode).
    #[test]
    fn one_entry_per_file_and_content_whatever_moves_it() {
        let head = b"a line of twenty b.\n".repeat(15);
        let fp = Fingerprint::of(&head);
        let count = |s: &Store| s.streams.get("/p/0.log").map_or(0, Vec::len);
        let mut s = Store::default();
        s.put("/p/0.log", fp, A, 100, false, 1);
        s.put("/p/0.log", fp, B, 40, false, 1);
        s.moved("/p/0.log", fp, A, B);
        assert_eq!(count(&s), 1, "B's old entry replaced");
        assert_eq!(s.find_own("/p/0.log", &head, B).unwrap().offset, 100);
        assert!(
            !s.advance("/p/0.log", fp, A, 120, true, 2),
            "a late acknowledgement of A finds no entry"
        );
        assert!(s.find_own("/p/0.log", &head, A).is_none(), "and makes none");
        assert!(s.advance("/p/0.log", fp, B, 120, false, 2));
        assert_eq!(s.find_own("/p/0.log", &head, B).unwrap().offset, 120);

        let short = Fingerprint::of(&head[..100]);
        assert_eq!(short.len, 100);
        s.put("/p/0.log", short, A, 50, false, 3);
        s.put("/p/0.log", fp, A, 10, false, 3);
        s.rekey("/p/0.log", A, short, fp);
        assert_eq!(
            count(&s),
            2,
            "A's entry with the longer fingerprint replaced"
        );
        assert_eq!(s.find_own("/p/0.log", &head, A).unwrap().offset, 50);

        // Two entries of one content: the lowest offset whatever their order.
        for order in [[(A, 50), (B, 120)], [(B, 120), (A, 50)]] {
            let mut s = Store::default();
            for (id, offset) in order {
                s.put("/p/0.log", fp, id, offset, false, 1);
            }
            assert_eq!(
                s.find_copy("/p/0.log", &head, &[]).map(|e| e.offset),
                Some(50)
            );
        }
    }

    /// Checkpoint files written before file identities were recorded still load; their
    /// entries match by content and take the identity found.
    #[test]
    fn entries_without_identity_match_by_content_and_adopt_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints.json");
        let head = b"2026-11-23T10:00:00Z stdout F hello\n";
        let fp = Fingerprint::of(head);
        let old = format!(
            r#"{{"version":1,"files":[{{"stream":"/p/0.log","fp":"{:016x}","fp_len":{},"offset":36,"done":false,"updated":1}}]}}"#,
            fp.hash, fp.len
        );
        fs::write(&path, old).unwrap();
        let mut s = Store::load(&path).unwrap().unwrap();
        let e = s.find_own("/p/0.log", head, A).expect("legacy entry");
        assert_eq!((e.offset, e.file_id()), (36, A), "adopted");
        assert!(s.take_dirty().is_some(), "the adoption is written");
        assert!(
            s.find_own("/p/0.log", head, B).is_none(),
            "adopted: A's entry now, not another file's"
        );
    }

    #[test]
    fn corrupt_checkpoint_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        fs::write(&path, b"{not json").unwrap();
        assert_eq!(
            Store::load(&path).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn per_stream_entries_are_capped() {
        let mut s = Store::default();
        for i in 0..(MAX_ENTRIES_PER_STREAM as u64 + 5) {
            s.put("/p/0.log", Fingerprint { hash: i, len: 10 }, A, i, true, i);
        }
        assert_eq!(s.len(), MAX_ENTRIES_PER_STREAM);
        s.retain_streams(|_| false);
        assert!(s.is_empty());
    }
}
