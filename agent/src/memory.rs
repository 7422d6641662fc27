//! Memory the agent holds without needing it: the executable's pages that only
//! start-up ran, and large blocks freed that glibc's malloc would keep
//! ([`tune_allocator`]).
//!
//! The binary's code and read-only data are mapped from its file, and every page
//! touched stays in the resident set until the kernel needs the memory back.
//! Start-up touches most of them (config parsing, the AWS SDK's credential chain
//! and clients, the Kubernetes client and its types, TLS roots): with pod metadata
//! and the CloudWatch sink, 17 of the 21 MiB an agent holds at rest are these
//! pages, its heap 3. [`release_code_pages`] asks the kernel to reclaim them
//! (`MADV_PAGEOUT`) once start-up is over, and again a minute later for the code
//! only the first scrapes and requests ran; what runs afterwards faults its pages
//! back in, about 4 MiB.
//! The shared libraries' pages (libc, libm, the loader: ~2 MiB) cannot be reclaimed
//! while other processes map them, but this process can let go of its own mappings
//! of them (`MADV_DONTNEED` on their read-only mappings never written); what it uses
//! again is mapped again from the page cache. None of this touches the heap, stacks
//! or writable data, and it changes no behaviour: a page read again comes back as it
//! was.

use std::io;

/// The size from which glibc's malloc maps an allocation on its own (and unmaps it
/// when freed) instead of carving it from its heaps. glibc starts at 128 KiB but
/// raises the threshold to the size of each mapped block freed, up to 32 MiB: once a
/// scrape's 16 MiB body buffer has been freed, the next one comes from a heap, where
/// it stays resident after it is freed (a heap is trimmed only past twice the
/// threshold). Fixed here, a body past the limit costs its 16 MiB only while it is
/// read: with a 50 MB target among 200, peak RSS 73 -> 57 MiB and median 73 -> 41 MiB
/// (`bench/metrics.sh --with-huge`, at 1 MiB). Below it, the log pipeline's buffers
/// (512 KiB batches, PutLogEvents bodies up to 1 MiB) stay in the heaps, reused: at
/// 1 MiB a drain's full requests were mapped and faulted in each time (95k instead
/// of 117k lines/s).
const MMAP_THRESHOLD_BYTES: i32 = 4 << 20;

/// How many heaps (arenas) glibc's malloc keeps: one, shared by every thread. By
/// default each thread that allocates gets its own (up to 8 per core), and what one
/// thread allocates and another frees goes back to the first one's heap: a scrape
/// target's series were built on a blocking-pool thread and later replaced on the
/// runtime's, and with 100,000 series over 200 targets three heaps held 14.5 MiB
/// where one holds 13 (`bench/metrics.sh`: RssAnon 17.0 -> 15.6 MiB). The agent's
/// few threads seldom allocate at once: a log drain and a steady CloudWatch run
/// measured the same CPU either way. `MALLOC_ARENA_MAX` in the environment wins.
const ARENA_MAX: i32 = 1;

/// Fixes malloc's mmap threshold at [`MMAP_THRESHOLD_BYTES`] and its arenas at
/// [`ARENA_MAX`] (glibc; elsewhere nothing). Call first thing, before threads start.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        set(
            libc::M_MMAP_THRESHOLD,
            MMAP_THRESHOLD_BYTES,
            "mmap threshold",
        );
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            set(libc::M_ARENA_MAX, ARENA_MAX, "arena count");
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set(param: i32, value: i32, what: &str) {
    // SAFETY: mallopt only changes a tuning value of glibc's allocator, under its
    // own lock; it reads and writes no memory of ours. M_MMAP_THRESHOLD with a value
    // in glibc's allowed range (0..=32 MiB on 64-bit) and M_ARENA_MAX with a positive
    // count cannot fail in a way that matters: a refusal (return 0) leaves the
    // default behaviour.
    let ok = unsafe { libc::mallopt(param, value) };
    if ok == 0 {
        tracing::debug!("malloc refused a fixed {what}");
    }
}

/// Asks the kernel to reclaim the pages of this executable's read-only mappings
/// (code, and the read-only data at the file's start) that are not shared with
/// another process, and lets go of the pages of the shared libraries' read-only,
/// never written mappings (they stay in the page cache, shared with whoever else maps
/// them: a page used again is mapped again from there). Returns the bytes of the
/// mappings advised.
pub fn release_code_pages() -> io::Result<usize> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let exe = exe.to_string_lossy();
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut advised = 0;
    for (start, len) in maps.lines().filter_map(|l| startup_mapping(l, &exe)) {
        // No read-around when a page comes back: for read-only data the kernel then
        // reads only that page, and fault-around has no cached neighbours to map
        // (executable code is read around whatever this says: see DESIGN.md).
        advise(start, len, libc::MADV_RANDOM)?;
        advise(start, len, libc::MADV_PAGEOUT)?;
        advised += len;
    }
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    for (start, len) in library_mappings(&smaps, &exe) {
        advise(start, len, libc::MADV_DONTNEED)?;
        advised += len;
    }
    Ok(advised)
}

/// `(start, length)` of each mapping in `/proc/self/smaps` text that maps a file other
/// than `exe` private and read-only (no `w`) and holds no anonymous page: none of its
/// pages was ever written (the loader's relocations, then protected, make a
/// library's RELRO mapping hold anonymous pages, so it is left alone). Its pages are
/// the file's, as the page cache has them.
fn library_mappings<'a>(smaps: &'a str, exe: &'a str) -> impl Iterator<Item = (usize, usize)> + 'a {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut f = line.split_ascii_whitespace();
        let Some(first) = f.next() else { continue };
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            // A mapping's header: range perms offset dev inode path.
            let perms = f.next().unwrap_or("");
            let path = f.nth(3).unwrap_or("");
            let readonly_private = perms.len() == 4
                && perms.starts_with('r')
                && perms.as_bytes()[1] == b'-'
                && perms.ends_with('p');
            let library = path.starts_with('/') && path.contains(".so") && path != exe;
            current = (readonly_private && library && b > a).then_some((a, b - a));
            continue;
        }
        if first == "Anonymous:"
            && let Some(m) = current.take()
            && f.next() == Some("0")
        {
            blocks.push(m);
        }
    }
    blocks.into_iter()
}

/// `(start, length)` of a `/proc/self/maps` line that maps `exe` read-only and
/// unmodified: executable, or at file offset 0 (headers, read-only data, unwind
/// tables). The read-only mapping after the code is RELRO: written by the loader
/// (relocations) and then protected, so its pages are private copies, not the
/// file's, and they are left alone.
fn startup_mapping(line: &str, exe: &str) -> Option<(usize, usize)> {
    let mut f = line.split_ascii_whitespace();
    let (range, perms, offset) = (f.next()?, f.next()?, f.next()?);
    let path = f.nth(2)?;
    if path != exe || perms.as_bytes().get(1) != Some(&b'-') {
        return None;
    }
    let exec = perms.as_bytes().get(2) == Some(&b'x');
    if !exec && u64::from_str_radix(offset, 16).ok()? != 0 {
        return None;
    }
    let (a, b) = range.split_once('-')?;
    let (a, b) = (
        usize::from_str_radix(a, 16).ok()?,
        usize::from_str_radix(b, 16).ok()?,
    );
    (b > a).then_some((a, b - a))
}

#[allow(unsafe_code)]
fn advise(start: usize, len: usize, advice: libc::c_int) -> io::Result<()> {
    // SAFETY: madvise only passes the range to the kernel; no Rust object is read,
    // written or referenced through it, and each advice used leaves the contents
    // that a later read sees as they are:
    // - MADV_RANDOM only changes how much the kernel reads ahead.
    // - MADV_PAGEOUT reclaims the range's pages that are not shared: the range is a
    //   read-only, unmodified mapping of this process's own executable (see
    //   `startup_mapping`), so a page reclaimed is read back from the file, byte for
    //   byte, the next time it is used.
    // - MADV_DONTNEED drops the range's pages from this process: the range is a
    //   private, read-only mapping of a shared library holding no anonymous page
    //   (see `library_mappings`), so no page of it was ever written and each page
    //   dropped is mapped again from the file's page cache, as it was.
    // The loader maps the executable and the libraries once and nothing unmaps them
    // (glibc never unloads a library it loaded itself), so the range still is the
    // mapping read from /proc; were it not mapped, madvise would fail with ENOMEM
    // and change nothing.
    let r = unsafe { libc::madvise(start as *mut libc::c_void, len, advice) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_executables_unmodified_read_only_mappings() {
        let exe = "/usr/bin/kubeship";
        let line = |range: &str, perms: &str, off: &str, path: &str| {
            format!("{range} {perms} {off} fe:00 1234    {path}")
        };
        let m = |l: String| startup_mapping(&l, exe);
        assert_eq!(
            m(line("1000-3000", "r--p", "00000000", exe)),
            Some((0x1000, 0x2000))
        );
        assert_eq!(
            m(line("3000-9000", "r-xp", "00002000", exe)),
            Some((0x3000, 0x6000))
        );
        assert_eq!(m(line("9000-a000", "r--p", "00008000", exe)), None, "RELRO");
        assert_eq!(m(line("a000-b000", "rw-p", "00009000", exe)), None);
        assert_eq!(
            m(line("b000-c000", "r-xp", "00000000", "/lib/libc.so.6")),
            None
        );
        assert_eq!(m("c000-d000 rw-p 00000000 00:00 0 ".to_string()), None);
    }

    #[test]
    fn only_unwritten_read_only_library_mappings_are_let_go() {
        let exe = "/usr/bin/kubeship";
        let block = |range: &str, perms: &str, path: &str, anon: u32| {
            format!(
                "{range} {perms} 00000000 fe:00 1234    {path}\nSize: 8 kB\nRss: 8 kB\nAnonymous: {anon} kB\nVmFlags: rd mr\n"
            )
        };
        let smaps = [
            block("1000-2000", "r--p", "/lib/libc.so.6", 0),
            block("2000-4000", "r-xp", "/lib/libc.so.6", 0),
            block("4000-5000", "r--p", "/lib/libc.so.6", 4), // RELRO, written
            block("5000-6000", "rw-p", "/lib/libc.so.6", 0),
            block("6000-7000", "---p", "/lib/libc.so.6", 0),
            block("7000-8000", "r-xp", exe, 0),
            block("8000-9000", "r--p", "/usr/lib/locale/C.utf8/LC_CTYPE", 0),
            block("9000-a000", "r--s", "/lib/libm.so.6", 0),
            block("a000-b000", "rw-p", "", 8),
        ]
        .concat();
        let got: Vec<_> = library_mappings(&smaps, exe).collect();
        assert_eq!(got, [(0x1000, 0x1000), (0x2000, 0x2000)]);
    }

    #[test]
    fn releasing_keeps_the_process_working() {
        let advised = release_code_pages().expect("madvise");
        assert!(advised > 0, "the test binary's code is mapped");
        // Code paged out comes back when it runs.
        assert_eq!(format!("{}", 6 * 7), "42");
    }
}
