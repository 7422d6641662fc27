//! One open log file: chunked reads, line splitting, its place in the checkpoint.
//!
//! A [`FileReader`] reads a plain or gzip file in large chunks into the tailer's
//! shared buffer, splits complete lines with `memchr`, and hands them to its
//! [`Decoder`]. An incomplete last line is carried to the next read; a line longer
//! than the record limit is cut and the rest of it skipped. `offset` is how far the
//! file was read; [`FileReader::safe_offset`] is how far a checkpoint may go.
//!
//! A read that fails (EIO, a corrupt or truncated `.gz`, a `.gz` still being
//! written) is tried again later, [`READ_RETRY_FIRST`] doubling to
//! [`READ_RETRY_MAX`]; a gzip file is decompressed anew up to its offset for that.
//! After [`READ_ATTEMPTS`] failures in a row the caller may give it up.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::decode::{BatchTarget, ContainerInfo, Decoder};
use super::names::Order;
use crate::logs::checkpoint::{FINGERPRINT_BYTES, FileId, Fingerprint};

mod open;

pub use open::read_head;
use open::{Gz, gz_at, read_at_full, start_bytes};

/// How long after a failed read a file is read again, the first time.
pub const READ_RETRY_FIRST: Duration = Duration::from_secs(1);

/// The wait doubles after each failure in a row up to this.
pub const READ_RETRY_MAX: Duration = Duration::from_secs(60);

/// Failed reads in a row after which a file may be given up: with the waits above,
/// about four minutes after the first failure (1 + 2 + … + 32 + 3 × 60 s), long
/// enough for a `.gz` being written to be complete, for a passing I/O error to pass.
pub const READ_ATTEMPTS: u32 = 10;

/// The wait after the `failures`-th failed read in a row.
fn retry_wait(failures: u32) -> Duration {
    let doubled = READ_RETRY_FIRST.saturating_mul(1 << failures.saturating_sub(1).min(16));
    doubled.min(READ_RETRY_MAX)
}

enum Source {
    Plain(File),
    Gz(Box<Gz>),
}

/// Reads of a file that failed in a row, and when the next one is due.
#[derive(Clone, Copy, Debug)]
struct Failing {
    failures: u32,
    next: Instant,
}

/// What one read did.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Bytes were read and decoded.
    Data(usize),
    /// Nothing new.
    Eof,
}

/// An open log file of a container stream.
pub struct FileReader {
    /// The ledger's id for this file.
    pub id: u64,
    /// Where the file was last seen.
    pub path: PathBuf,
    /// Its place in the stream's history.
    pub order: Order,
    /// Identity on disk.
    pub ino: FileId,
    /// Content identity.
    pub fp: Fingerprint,
    /// Bytes read so far (decompressed for gzip).
    pub offset: u64,
    /// The largest size of a plain file seen (at its opening, when a read filled a
    /// whole chunk, when its live path was looked up): what it is known to have held.
    pub size_seen: u64,
    /// When the file stopped being the live file (rotated, deleted, stream gone).
    pub rotated_at: Option<Instant>,
    /// Set once the file was let go; the next batch marks it done.
    pub finished: bool,
    /// The last offset a batch marked.
    pub last_marked: u64,
    /// When the file last grew.
    pub last_growth: Instant,
    /// When the live path was last checked for rotation.
    pub live_checked: Option<Instant>,
    /// The directory was listed when this (empty when opened) file got bytes.
    pub listed_when_filled: bool,
    source: Source,
    failing: Option<Failing>,
    head: Vec<u8>,
    carry: Vec<u8>,
    carry_since: Option<Instant>,
    skip_from: Option<u64>,
    decoder: Decoder,
}

impl FileReader {
    /// Replaces the decoder (the container's multiline rule became known before
    /// anything of the file was decoded).
    pub fn set_decoder(&mut self, decoder: Decoder) {
        self.decoder = decoder;
    }

    /// Wraps an opened file positioned at `offset`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u64,
        file: File,
        path: PathBuf,
        order: Order,
        gz: bool,
        head: Vec<u8>,
        offset: u64,
        decoder: Decoder,
        now: Instant,
    ) -> io::Result<Self> {
        let meta = file.metadata()?;
        let ino = FileId::of(&meta);
        let size_seen = if gz { 0 } else { meta.len() };
        let source = if gz {
            let (d, skipped) = gz_at(file, offset);
            skipped?;
            Source::Gz(d)
        } else {
            let mut file = file;
            file.seek(SeekFrom::Start(offset))?;
            Source::Plain(file)
        };
        let fp = Fingerprint::of(&head);
        let head = if fp.is_complete() { Vec::new() } else { head };
        let rotated_at = (order != Order::Live).then_some(now);
        Ok(Self {
            id,
            path,
            order,
            ino,
            fp,
            offset,
            size_seen,
            rotated_at,
            finished: false,
            last_marked: offset,
            last_growth: now,
            live_checked: None,
            listed_when_filled: false,
            source,
            failing: None,
            head,
            carry: Vec::new(),
            carry_since: None,
            skip_from: None,
            decoder,
        })
    }

    /// True for a gzip file.
    pub fn is_gz(&self) -> bool {
        matches!(self.source, Source::Gz(_))
    }

    /// True when the file's first bytes no longer match its fingerprint: it was
    /// truncated and written again (copytruncate), even if it is as long as before.
    pub fn head_changed(&self) -> bool {
        let Source::Plain(f) = &self.source else {
            return false;
        };
        if self.fp.len == 0 {
            return false;
        }
        let mut buf = [0u8; FINGERPRINT_BYTES];
        let want = &mut buf[..self.fp.len as usize];
        match read_at_full(f, want, 0) {
            Ok(n) => !self.fp.matches(&want[..n]),
            Err(_) => false,
        }
    }

    /// Notes the size of the file on disk (a plain file's), as `stat` told it.
    pub fn saw_size(&mut self, len: u64) {
        if !self.is_gz() {
            self.size_seen = self.size_seen.max(len);
        }
    }

    /// Looks at the file's size on disk (`fstat`): it is behind.
    pub fn look_at_size(&mut self) {
        if let Source::Plain(f) = &self.source
            && let Ok(m) = f.metadata()
        {
            self.size_seen = self.size_seen.max(m.len());
        }
    }

    /// Bytes the file is known to have held beyond what was read (a lower bound
    /// of what a truncation lost).
    pub fn unread_seen(&self) -> u64 {
        self.size_seen.saturating_sub(self.offset)
    }

    /// True when `other` (starting with this file's fingerprinted bytes; gzip when
    /// `other_gz`) may be a copy of this file: this one was truncated since (its
    /// first bytes changed: the copy holds what it held), or both hold the same
    /// bytes (decompressed) as far as [`COPY_CHECK_BYTES`](open::COPY_CHECK_BYTES) reach.
    pub fn copied_to(&self, other: &File, other_gz: bool) -> bool {
        if self.head_changed() {
            return true;
        }
        let (mine, gz) = match &self.source {
            Source::Plain(f) => (f, false),
            Source::Gz(d) => (d.get_ref().get_ref(), true),
        };
        match (start_bytes(mine, gz), start_bytes(other, other_gz)) {
            (Ok(a), Ok(b)) => {
                let n = a.len().min(b.len());
                a[..n] == b[..n]
            }
            _ => true,
        }
    }

    /// True when a file that was empty when opened has bytes now.
    pub fn empty_got_bytes(&self) -> bool {
        let Source::Plain(f) = &self.source else {
            return false;
        };
        let mut b = [0u8; 1];
        self.fp.len == 0 && self.offset == 0 && matches!(read_at_full(f, &mut b, 0), Ok(1))
    }

    /// Continues reading the same content from another path (a copytruncate copy).
    pub fn switch_to(&mut self, file: File, path: PathBuf, order: Order) -> io::Result<()> {
        let mut file = file;
        file.seek(SeekFrom::Start(self.offset))?;
        self.ino = FileId::of(&file.metadata()?);
        self.source = Source::Plain(file);
        self.path = path;
        self.order = order;
        Ok(())
    }

    /// Everything before this offset is in a batch already (or deliberately skipped).
    pub fn safe_offset(&self) -> u64 {
        let carry_start = self.offset - self.carry.len() as u64;
        [
            Some(carry_start),
            self.skip_from,
            self.decoder.pending_tag(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(carry_start)
    }

    /// A fingerprint that got longer since the file was opened, if any.
    pub fn grow_fingerprint(&mut self) -> Option<Fingerprint> {
        if self.fp.is_complete() || self.offset <= u64::from(self.fp.len) {
            return None;
        }
        if let Source::Plain(f) = &self.source {
            let mut buf = [0u8; FINGERPRINT_BYTES];
            let n = read_at_full(f, &mut buf, 0).ok()?;
            self.head.clear();
            self.head.extend_from_slice(&buf[..n]);
        }
        let fp = Fingerprint::of(&self.head);
        if fp == self.fp || !self.fp.matches(&self.head) {
            return None;
        }
        self.fp = fp;
        if fp.is_complete() {
            self.head = Vec::new();
        }
        Some(fp)
    }

    /// True while the file waits to be read again after a failed read.
    pub fn waits_to_retry(&self, now: Instant) -> bool {
        self.failing.is_some_and(|f| now < f.next)
    }

    /// A read failed: the number of failures in a row, and when the file is read
    /// again (`None` when it failed [`READ_ATTEMPTS`] times and may be given up,
    /// unless `keep_trying`: then it is read again every [`READ_RETRY_MAX`]).
    pub fn read_failed(&mut self, now: Instant, keep_trying: bool) -> (u32, Option<Duration>) {
        let failures = self.failing.map_or(0, |f| f.failures) + 1;
        if failures >= READ_ATTEMPTS && !keep_trying {
            return (failures, None);
        }
        let wait = retry_wait(failures);
        self.failing = Some(Failing {
            failures,
            next: now + wait,
        });
        (failures, Some(wait))
    }

    /// Bytes not read of a file given up: for a plain file its size now minus the
    /// offset read; for a gzip file the compressed bytes after the point where
    /// decompression failed (what it would have held decompressed is not known).
    pub fn unread_on_disk(&self) -> u64 {
        match &self.source {
            Source::Plain(f) => f
                .metadata()
                .map_or(0, |m| m.len().saturating_sub(self.offset)),
            Source::Gz(d) => {
                let reader = d.get_ref();
                let mut file = reader.get_ref();
                let (Ok(m), Ok(pos)) = (file.metadata(), file.stream_position()) else {
                    return 0;
                };
                let consumed = pos.saturating_sub(reader.buffer().len() as u64);
                m.len().saturating_sub(consumed)
            }
        }
    }

    /// After a failed read of a gzip file, a new decoder from the file's start,
    /// positioned at the offset read (the old one's state is unusable).
    fn restart_gz(&mut self) -> io::Result<()> {
        let Source::Gz(d) = &self.source else {
            return Ok(());
        };
        // The same open file (a path may name another one by now); its position is
        // shared with the old decoder's, which is dropped.
        let mut file = d.get_ref().get_ref().try_clone()?;
        file.seek(SeekFrom::Start(0))?;
        let (d, skipped) = gz_at(file, self.offset);
        self.source = Source::Gz(d);
        skipped
    }

    /// Reads one chunk and decodes its complete lines.
    pub fn read_chunk(
        &mut self,
        buf: &mut Vec<u8>,
        chunk: usize,
        max_line: usize,
        info: &ContainerInfo,
        out: &mut BatchTarget<'_>,
    ) -> io::Result<Progress> {
        if self.failing.is_some() {
            self.restart_gz()?;
        }
        // The buffer only grows (no zeroing per read); the carried tail goes first.
        let carried = self.carry.len();
        if buf.len() < carried + chunk {
            buf.resize(carried + chunk, 0);
        }
        buf[..carried].copy_from_slice(&self.carry);
        let n = loop {
            let dst = &mut buf[carried..carried + chunk];
            let r = match &mut self.source {
                Source::Plain(f) => f.read(dst),
                Source::Gz(d) => d.read(dst),
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        let n = n?;
        self.failing = None;
        if n == 0 {
            return Ok(Progress::Eof);
        }
        self.last_growth = out.now;
        let base = self.offset - carried as u64;
        self.offset += n as u64;
        out.counters.bytes += n as u64;
        self.carry.clear();
        self.process(&buf[..carried + n], base, max_line, info, out);
        Ok(Progress::Data(n))
    }

    fn process(
        &mut self,
        buf: &[u8],
        base: u64,
        max_line: usize,
        info: &ContainerInfo,
        out: &mut BatchTarget<'_>,
    ) {
        let mut pos = 0;
        if self.skip_from.is_some() {
            match memchr::memchr(b'\n', buf) {
                Some(nl) => {
                    pos = nl + 1;
                    self.skip_from = None;
                }
                None => return,
            }
        }
        let start = pos;
        for nl in memchr::memchr_iter(b'\n', &buf[start..]) {
            let end = start + nl;
            self.decoder
                .line(&buf[pos..end], base + pos as u64, info, out);
            pos = end + 1;
        }
        let rest = &buf[pos..];
        if rest.len() >= max_line {
            // A line longer than any record may be: decode its head (the record is
            // cut to the limit and counted), skip the rest up to its newline.
            self.decoder.line(rest, base + pos as u64, info, out);
            self.skip_from = Some(base + pos as u64);
            self.carry_since = None;
        } else if !rest.is_empty() {
            self.carry.extend_from_slice(rest);
            self.carry_since.get_or_insert(out.now);
        } else {
            self.carry_since = None;
        }
        if self.carry.capacity() > 4 * max_line.max(64 * 1024) && self.carry.len() < 64 * 1024 {
            self.carry.shrink_to(64 * 1024);
        }
    }

    /// A live file at its end: emits an unterminated last line and pending partial
    /// records that waited longer than `eof_flush` for their end.
    pub fn flush_idle(
        &mut self,
        eof_flush: std::time::Duration,
        info: &ContainerInfo,
        out: &mut BatchTarget<'_>,
    ) {
        if out.now.duration_since(self.last_growth) < eof_flush {
            return;
        }
        self.emit_carry(info, out);
        self.decoder.flush_partials(info, out);
    }

    fn emit_carry(&mut self, info: &ContainerInfo, out: &mut BatchTarget<'_>) {
        if !self.carry.is_empty() {
            let carry = std::mem::take(&mut self.carry);
            let tag = self.offset - carry.len() as u64;
            self.decoder.line(&carry, tag, info, out);
            self.carry = carry;
            self.carry.clear();
            self.carry_since = None;
        }
    }

    /// Emits multiline groups whose timeout passed.
    pub fn flush_expired(&mut self, info: &ContainerInfo, out: &mut BatchTarget<'_>) {
        self.decoder.flush_expired(info, out);
    }

    /// Lets the file go: everything held is emitted; the next batch marks it done.
    pub fn finish(&mut self, info: &ContainerInfo, out: &mut BatchTarget<'_>) {
        self.emit_carry(info, out);
        self.skip_from = None;
        self.decoder.flush_all(info, out);
        self.finished = true;
    }
}
