//! Checkpoints: how far each log file has been delivered, persisted atomically.
//!
//! A file is identified by the container stream it belongs to (the live path,
//! `/var/log/pods/<ns>_<pod>_<uid>/<container>/0.log`) and a [`Fingerprint`] of its
//! first bytes (decompressed for `.gz`). Content, not inode, is the identity so that
//! a rotated file keeps its checkpoint when the kubelet renames and later gzips it,
//! and a reused inode with other content is a new file. The [`Store`] holds one
//! [`Entry`] per known file and is written with temp file, fsync, rename.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

    /// The best entry of `stream` whose fingerprint matches `head` (longest fingerprint wins).
    pub fn lookup(&self, stream: &str, head: &[u8]) -> Option<&Entry> {
        self.streams
            .get(stream)?
            .iter()
            .filter(|e| e.fp_len > 0 && e.fingerprint().matches(head))
            .max_by_key(|e| e.fp_len)
    }

    /// Creates or updates the entry of (`stream`, `fp`).
    pub fn put(&mut self, stream: &str, fp: Fingerprint, offset: u64, done: bool, now_unix: u64) {
        if fp.len == 0 {
            return;
        }
        let list = self.streams.entry(stream.to_string()).or_default();
        match list.iter_mut().find(|e| e.fingerprint() == fp) {
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

    /// Replaces the fingerprint of an entry that grew a longer one.
    pub fn rekey(&mut self, stream: &str, old: Fingerprint, new: Fingerprint) {
        if let Some(list) = self.streams.get_mut(stream)
            && let Some(e) = list.iter_mut().find(|e| e.fingerprint() == old)
        {
            e.fp = new.hash;
            e.fp_len = new.len;
            self.dirty = true;
        }
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
    pub fn len(&self) -> usize {
        self.streams.values().map(Vec::len).sum()
    }

    /// True when there is no entry.
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
        files.sort_by(|a, b| (&a.stream, a.fp).cmp(&(&b.stream, b.fp)));
        serde_json::to_vec_pretty(&OnDisk { version: 1, files }).expect("checkpoint serializes")
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

    #[test]
    fn store_round_trips_atomically_and_prefers_longest_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints.json");
        let mut s = Store::default();
        let head = b"line one\nline two\n";
        s.put("/p/0.log", Fingerprint::of(&head[..9]), 9, false, 1);
        s.put("/p/0.log", Fingerprint::of(head), 9, true, 2);
        s.put("/p/0.log", Fingerprint::of(b""), 0, false, 3); // empty: ignored
        let bytes = s.take_dirty().expect("dirty");
        assert!(s.take_dirty().is_none());
        write_atomic(&path, &bytes).unwrap();
        let back = Store::load(&path).unwrap().expect("exists");
        assert_eq!(back.len(), 2);
        let e = back.lookup("/p/0.log", head).unwrap();
        assert_eq!((e.offset, e.done), (9, true));
        assert!(back.lookup("/q/0.log", head).is_none());
        assert!(
            Store::load(&dir.path().join("missing.json"))
                .unwrap()
                .is_none()
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
            s.put("/p/0.log", Fingerprint { hash: i, len: 10 }, i, true, i);
        }
        assert_eq!(s.len(), MAX_ENTRIES_PER_STREAM);
        s.retain_streams(|_| false);
        assert!(s.is_empty());
    }
}
