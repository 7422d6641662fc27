//! Opening log files and reading their first bytes: without touching access times,
//! never through a symlink; gzip decoders positioned at an offset.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

use crate::logs::checkpoint::FINGERPRINT_BYTES;

/// How far a rotated file starting like a file being read is compared with it, to
/// tell a copy of it (gzip, copytruncate) from another file that starts alike.
pub(super) const COPY_CHECK_BYTES: usize = 64 * 1024;

/// A gzip file's decoder: it consumes from the one buffer (`flate2::read`'s adds
/// its own), so what the buffer holds is what was read and not decompressed.
pub(super) type Gz = MultiGzDecoder<BufReader<File>>;

/// A decoder of `file` from its start, past the first `offset` bytes of its content
/// when that worked (else as far as it got).
pub(super) fn gz_at(file: File, offset: u64) -> (Box<Gz>, io::Result<()>) {
    let mut d = Box::new(MultiGzDecoder::new(BufReader::with_capacity(
        32 * 1024,
        file,
    )));
    let skipped = match io::copy(&mut (&mut d).take(offset), &mut io::sink()) {
        Ok(n) => n,
        Err(e) => return (d, Err(e)),
    };
    if skipped < offset {
        let e = io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "gzip file shorter than its checkpoint",
        );
        return (d, Err(e));
    }
    (d, Ok(()))
}

/// Opens a log file for reading without updating its access time (each read
/// would otherwise touch the inode): `O_NOATIME` needs the file's owner or
/// CAP_FOWNER, which an agent reading other containers' logs as root has;
/// without them the open is retried plainly. Never through a symlink
/// (`O_NOFOLLOW`): a link among a container's files could lead anywhere.
pub fn open_log(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = |flags| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags | libc::O_NOFOLLOW)
            .open(path)
    };
    match open(libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(0),
        r => r,
    }
}

/// Reads the first bytes of a file (decompressed for gzip), for its fingerprint.
pub fn read_head(path: &Path, gz: bool) -> io::Result<(File, Vec<u8>)> {
    let file = open_log(path)?;
    let mut head = Vec::with_capacity(FINGERPRINT_BYTES);
    if gz {
        // A separate open: a cloned descriptor would share (and move) the offset.
        let f = open_log(path)?;
        MultiGzDecoder::new(BufReader::new(f))
            .take(FINGERPRINT_BYTES as u64)
            .read_to_end(&mut head)?;
    } else {
        let mut buf = [0u8; FINGERPRINT_BYTES];
        let n = read_at_full(&file, &mut buf, 0)?;
        head.extend_from_slice(&buf[..n]);
    }
    Ok((file, head))
}

/// The first [`COPY_CHECK_BYTES`] of a file's content (decompressed for gzip), read
/// without moving its offset.
pub(super) fn start_bytes(file: &File, gz: bool) -> io::Result<Vec<u8>> {
    /// Reads a file from its start by position, leaving its offset alone.
    struct At<'a>(&'a File, u64);
    impl Read for At<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.read_at(buf, self.1)?;
            self.1 += n as u64;
            Ok(n)
        }
    }
    let mut out = Vec::with_capacity(COPY_CHECK_BYTES);
    let limit = COPY_CHECK_BYTES as u64;
    if gz {
        let mut d = MultiGzDecoder::new(BufReader::new(At(file, 0))).take(limit);
        // A gzip file still being written or corrupt: what could be decompressed.
        let _ = d.read_to_end(&mut out);
    } else {
        At(file, 0).take(limit).read_to_end(&mut out)?;
    }
    Ok(out)
}

pub(super) fn read_at_full(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::FileTimes;
    use std::path::PathBuf;
    use std::time::{Duration, SystemTime};

    /// An access time older than any modification time: relatime updates it on the
    /// next read (strictatime always does; only noatime never does).
    const OLD: Duration = Duration::from_secs(1_000_000);

    fn set_old_atime(path: &Path) {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_times(FileTimes::new().set_accessed(SystemTime::UNIX_EPOCH + OLD))
            .unwrap();
    }

    fn atime(path: &Path) -> SystemTime {
        std::fs::metadata(path).unwrap().accessed().unwrap()
    }

    /// Reads `path` whole after making its access time old; true when the read
    /// changed the access time.
    fn read_touches(path: &Path, open: impl Fn(&Path) -> io::Result<File>) -> bool {
        set_old_atime(path);
        let mut buf = Vec::new();
        open(path).unwrap().read_to_end(&mut buf).unwrap();
        assert_eq!(buf, b"a line\n");
        atime(path) != SystemTime::UNIX_EPOCH + OLD
    }

    /// A log file in a directory whose filesystem updates access times on reads
    /// (checked with a plain open: the control): the temp dir, else /dev/shm.
    fn file_on_an_atime_filesystem() -> (tempfile::TempDir, PathBuf) {
        for base in [std::env::temp_dir(), PathBuf::from("/dev/shm")] {
            let Ok(dir) = tempfile::tempdir_in(&base) else {
                continue;
            };
            let path = dir.path().join("a.log");
            std::fs::write(&path, b"a line\n").unwrap();
            if read_touches(&path, |p| File::open(p)) {
                return (dir, path);
            }
        }
        panic!("no filesystem here updates access times on reads (all mounted noatime?)");
    }

    #[test]
    fn reading_a_log_leaves_its_access_time() {
        let (_dir, path) = file_on_an_atime_filesystem();
        assert!(
            read_touches(&path, |p| File::open(p)),
            "the control: a plain open's read updates the access time"
        );
        assert!(
            !read_touches(&path, open_log),
            "open_log's read touched the access time"
        );
    }
}
