//! The ledger: which batches are in flight and how far each file is delivered.
//!
//! The tailer registers files and submits sealed batches; a sink acknowledges
//! batches, in any order. A file's committed offset advances only over the longest
//! prefix of its batches that were all acknowledged, so a checkpoint never passes
//! a record that was not delivered. Registering a file makes its checkpoint entry;
//! acknowledgements only advance it, so an entry moved to a copy, taken over or
//! dropped is never written back by one that arrives late. The ledger also enforces
//! the in-flight byte budget: the tailer waits while too many bytes are
//! unacknowledged, and says so ([`Ledger::tailer_waiting`],
//! [`Ledger::room_wanted`]), so that a sink holding records back to fill larger
//! requests sends them instead.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use crate::logs::batch::Batch;
use crate::logs::checkpoint::{FileId, Fingerprint, Store};
use crate::telemetry::Metrics;

struct FileTrack {
    stream: Arc<str>,
    fp: Fingerprint,
    /// The file on disk its checkpoint entry is of.
    file: FileId,
    /// It has no checkpoint entry any more and acknowledgements write none: its
    /// content is gone from disk (truncated in place), or the entry went to another
    /// file or track (a copy took it over, another reader of the file moved it).
    detached: bool,
    committed: u64,
    /// The committed offset the checkpoint file on disk holds.
    persisted: u64,
    /// The file was let go and its last batch acknowledged: tracking ends once
    /// that is persisted.
    done: bool,
    /// Submitted, not yet committed marks.
    pending: VecDeque<Pending>,
    /// Largest size seen on disk, for the lag gauge.
    size_seen: u64,
}

struct Pending {
    seq: u64,
    offset: u64,
    last: bool,
    acked: bool,
}

/// A checkpoint file's contents and the offsets they hold.
pub struct Snapshot {
    /// The serialized checkpoint store.
    pub bytes: Vec<u8>,
    committed: Vec<(u64, u64)>,
}

struct InFlight {
    files: Vec<u64>,
    charge: usize,
    sealed_at: Instant,
}

#[derive(Default)]
struct Inner {
    next_seq: u64,
    next_file: u64,
    files: HashMap<u64, FileTrack>,
    batches: HashMap<u64, InFlight>,
    inflight: usize,
    /// Σ (size_seen − persisted) over tracked files.
    lag: u64,
    store: Store,
}

impl Inner {
    /// Tracks of (`stream`, `fp`, `file`) other than `except` stop writing
    /// checkpoints: that key is no longer the entry of the content they read.
    fn retire_tracks(&mut self, stream: &str, fp: Fingerprint, file: FileId, except: Option<u64>) {
        for (id, t) in &mut self.files {
            if Some(*id) != except && t.fp == fp && t.file == file && *t.stream == *stream {
                t.detached = true;
            }
        }
    }

    /// The entry (`stream`, `fp`, `file`) goes, and no track writes it again.
    fn retire(&mut self, stream: &str, fp: Fingerprint, file: FileId, except: Option<u64>) {
        self.retire_tracks(stream, fp, file, except);
        self.store.remove(stream, fp, file);
    }
}

/// Shared between the tailer, the sink and the checkpoint writer.
pub struct Ledger {
    inner: Mutex<Inner>,
    acked: Condvar,
    /// True while the tailer waits in [`Ledger::wait_for_room`].
    waiting: AtomicBool,
    /// Notified each time the tailer starts waiting for room.
    room_wanted: Notify,
    metrics: Arc<Metrics>,
}

/// Clears [`Ledger::waiting`] however `wait_for_room` ends.
struct Waiting<'a>(&'a AtomicBool);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Ledger {
    /// A ledger starting from the loaded checkpoints.
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                store,
                ..Inner::default()
            }),
            acked: Condvar::new(),
            waiting: AtomicBool::new(false),
            room_wanted: Notify::new(),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (no multi-step
        // invariants span a panic point), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the checkpoint store (lookups when opening files, pruning).
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut self.lock().store)
    }

    /// Starts tracking `file`, opened at `offset`; returns its id. `takes_over`: the
    /// entry (fingerprint, file) of another file that no longer holds the content
    /// `file` is a copy of: it goes (this file's entry replaces it) and no track
    /// writes it any more.
    pub fn register_file(
        &self,
        stream: &Arc<str>,
        fp: Fingerprint,
        file: FileId,
        offset: u64,
        takes_over: Option<(Fingerprint, FileId)>,
    ) -> u64 {
        let g = &mut *self.lock();
        if let Some((old_fp, old_file)) = takes_over {
            g.retire(stream, old_fp, old_file, None);
        }
        g.next_file += 1;
        let id = g.next_file;
        g.store.put(stream, fp, file, offset, false, now_unix());
        g.files.insert(
            id,
            FileTrack {
                stream: Arc::clone(stream),
                fp,
                file,
                detached: false,
                committed: offset,
                persisted: offset,
                done: false,
                pending: VecDeque::new(),
                size_seen: offset,
            },
        );
        id
    }

    /// The file of track `id`, let go, is read on (a listing found it again before
    /// its checkpoint said it was done): the track continues, so that its entry moves
    /// only over acknowledged batches, those from before it was let go first, and its
    /// mark of being let go no longer finishes it. False when there is no track to
    /// continue: its last batch was acknowledged and persisted (its entry holds how
    /// far it was read), or its entry went to another file or track (detached).
    pub fn reopen(&self, id: u64) -> bool {
        let g = &mut *self.lock();
        let Some(t) = g.files.get_mut(&id) else {
            return false;
        };
        if t.detached {
            return false;
        }
        for p in &mut t.pending {
            p.last = false;
        }
        if std::mem::take(&mut t.done) {
            // Acknowledged to its end but not yet persisted: its entry says done.
            let (stream, fp, file, committed) = (Arc::clone(&t.stream), t.fp, t.file, t.committed);
            g.store
                .advance(&stream, fp, file, committed, false, now_unix());
        }
        true
    }

    /// The file's fingerprint grew (it was shorter than the fingerprint length).
    pub fn update_fingerprint(&self, id: u64, fp: Fingerprint) {
        let g = &mut *self.lock();
        if let Some(t) = g.files.get_mut(&id) {
            if t.detached {
                // No entry to keep.
            } else if t.fp.len == 0 {
                g.store
                    .put(&t.stream, fp, t.file, t.committed, false, now_unix());
            } else {
                g.store.rekey(&t.stream, t.file, t.fp, fp);
            }
            t.fp = fp;
        }
    }

    /// The file's content is read on from another file now (a copytruncate copy).
    /// Other tracks of the old file with that content (a file let go and opened
    /// again) write no more.
    pub fn moved(&self, id: u64, to: FileId) {
        let g = &mut *self.lock();
        let Some(t) = g.files.get(&id) else {
            return;
        };
        let (stream, fp, from, detached) = (Arc::clone(&t.stream), t.fp, t.file, t.detached);
        if !detached {
            // The entry of (fp, to) is this track's now: no other writes it, nor (fp, from).
            g.retire_tracks(&stream, fp, from, Some(id));
            g.retire_tracks(&stream, fp, to, Some(id));
            g.store.moved(&stream, fp, from, to);
        }
        if let Some(t) = g.files.get_mut(&id) {
            t.file = to;
        }
    }

    /// The file's content is gone from disk (truncated in place without a copy): its
    /// checkpoint entry is dropped, so that the new content of its inode starts from
    /// scratch, and its remaining acknowledgements (or another track's of that file
    /// and content) do not write one again.
    pub fn detach(&self, id: u64) {
        let g = &mut *self.lock();
        if let Some(t) = g.files.get(&id) {
            let (stream, fp, file) = (Arc::clone(&t.stream), t.fp, t.file);
            g.retire(&stream, fp, file, None);
        }
    }

    /// Records the file's size on disk (for `kubeship_log_checkpoint_lag_bytes`).
    pub fn note_size(&self, id: u64, size: u64) {
        let g = &mut *self.lock();
        if let Some(t) = g.files.get_mut(&id)
            && size > t.size_seen
        {
            g.lag += size - t.size_seen;
            t.size_seen = size;
            self.metrics.logs.log_checkpoint_lag_bytes.set(g.lag as i64);
        }
    }

    /// Assigns the batch its sequence number and starts tracking it.
    pub fn submit(&self, batch: &mut Batch) {
        let g = &mut *self.lock();
        g.next_seq += 1;
        batch.seq = g.next_seq;
        let charge = batch.charge();
        let mut files = Vec::with_capacity(batch.marks.len());
        for m in &batch.marks {
            if let Some(t) = g.files.get_mut(&m.file) {
                t.pending.push_back(Pending {
                    seq: batch.seq,
                    offset: m.offset,
                    last: m.last,
                    acked: false,
                });
                files.push(m.file);
            }
        }
        g.inflight += charge;
        g.batches.insert(
            batch.seq,
            InFlight {
                files,
                charge,
                sealed_at: batch.sealed_at,
            },
        );
        self.metrics.logs.inflight_bytes.set(g.inflight as i64);
    }

    /// The sink delivered batch `seq` (or deliberately dropped its records, counted).
    pub fn ack(&self, seq: u64) {
        let g = &mut *self.lock();
        let Some(b) = g.batches.remove(&seq) else {
            return;
        };
        g.inflight -= b.charge;
        self.metrics.logs.inflight_bytes.set(g.inflight as i64);
        self.metrics.logs.batches_acked.inc();
        // Whichever sink acknowledged it (local files, CloudWatch).
        self.metrics
            .logs
            .batch_ack_seconds
            .observe(b.sealed_at.elapsed().as_secs_f64());
        for id in b.files {
            let Some(t) = g.files.get_mut(&id) else {
                continue;
            };
            if let Some(p) = t.pending.iter_mut().find(|p| p.seq == seq) {
                p.acked = true;
            }
            let (mut advanced, mut done) = (false, false);
            while let Some(p) = t.pending.front().filter(|p| p.acked) {
                t.committed = p.offset;
                done |= p.last;
                t.pending.pop_front();
                advanced = true;
            }
            t.done |= done;
            if advanced && t.detached {
                // Nothing to write, but a snapshot ends the tracking once done.
                g.store.mark_dirty();
            } else if advanced {
                let (stream, fp, file, committed) =
                    (Arc::clone(&t.stream), t.fp, t.file, t.committed);
                // Only the entry registered for it: an acknowledgement never makes one.
                if !g
                    .store
                    .advance(&stream, fp, file, committed, done, now_unix())
                    && done
                {
                    // No entry to hold it, but a snapshot ends the tracking once done.
                    g.store.mark_dirty();
                }
            }
        }
        self.acked.notify_all();
    }

    /// Blocks until a batch charging `charge` bytes fits under `limit` with what is
    /// in flight (or nothing is in flight: a batch larger than the budget still goes,
    /// alone), or until `stop` is set. Returns false when it gave up because of `stop`.
    ///
    /// While it blocks, [`Ledger::tailer_waiting`] is true; when it starts to block it
    /// notifies [`Ledger::room_wanted`] (once per wait, not per wake-up).
    pub fn wait_for_room(&self, charge: usize, limit: usize, stop: &AtomicBool) -> bool {
        let fits = |g: &Inner| g.inflight == 0 || g.inflight + charge <= limit;
        let mut g = self.lock();
        if fits(&g) {
            return true;
        }
        self.waiting.store(true, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        self.room_wanted.notify_one();
        while !fits(&g) {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            g = self
                .acked
                .wait_timeout(g, Duration::from_millis(100))
                .map(|r| r.0)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        true
    }

    /// True while the tailer is blocked in [`Ledger::wait_for_room`]: nothing more
    /// is read until acknowledgements free room in the budget.
    pub fn tailer_waiting(&self) -> bool {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Completes when the tailer started waiting for room since the last call (a
    /// start of waiting that nobody awaited is kept for the next call), so check
    /// [`Ledger::tailer_waiting`]: the wait may already be over.
    pub async fn room_wanted(&self) {
        self.room_wanted.notified().await;
    }

    /// Blocks until no batch is in flight or `timeout` passes; true when drained.
    pub fn wait_drained(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut g = self.lock();
        while !g.batches.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            g = self
                .acked
                .wait_timeout(g, left.min(Duration::from_millis(100)))
                .map(|r| r.0)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        true
    }

    /// Batches submitted and not yet acknowledged.
    pub fn batches_in_flight(&self) -> usize {
        self.lock().batches.len()
    }

    /// When the oldest batch still in flight was sealed, with the number of batches
    /// and bytes in flight; `None` when nothing is in flight.
    pub fn oldest_in_flight(&self) -> Option<(Instant, usize, usize)> {
        let g = self.lock();
        let oldest = g.batches.values().map(|b| b.sealed_at).min()?;
        Some((oldest, g.batches.len(), g.inflight))
    }

    /// Blocks until the checkpoint store has changes to write, `stop` is set (see
    /// [`Ledger::wake`]) or `timeout` passed.
    pub fn wait_changed(&self, timeout: Duration, stop: &AtomicBool) {
        let deadline = Instant::now() + timeout;
        let mut g = self.lock();
        while !g.store.is_dirty() && !stop.load(Ordering::SeqCst) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            g = self
                .acked
                .wait_timeout(g, left)
                .map(|r| r.0)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Blocks until `deadline` or until `stop` is set (see [`Ledger::wake`]).
    pub fn sleep_until(&self, deadline: Instant, stop: &AtomicBool) {
        let mut g = self.lock();
        while !stop.load(Ordering::SeqCst) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            g = self
                .acked
                .wait_timeout(g, left)
                .map(|r| r.0)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Wakes whoever waits in [`Ledger::wait_changed`] or [`Ledger::sleep_until`]
    /// (after setting their `stop`). Taking the lock first means a waiter that checked
    /// `stop` just before it was set is already waiting, and gets the notification.
    pub fn wake(&self) {
        let _g = self.lock();
        self.acked.notify_all();
    }

    /// The checkpoint file's new contents when anything changed (`None` when the
    /// file on disk is current). Once they are written, hand the snapshot to
    /// [`Ledger::persisted`].
    pub fn checkpoint_if_changed(&self) -> Option<Snapshot> {
        let g = &mut *self.lock();
        let bytes = g.store.take_dirty()?;
        let committed = g.files.iter().map(|(&id, t)| (id, t.committed)).collect();
        Some(Snapshot { bytes, committed })
    }

    /// The snapshot is on disk: its offsets are what a restart resumes from.
    pub fn persisted(&self, snap: Snapshot) {
        let g = &mut *self.lock();
        for (id, committed) in snap.committed {
            let Some(t) = g.files.get_mut(&id) else {
                continue;
            };
            if committed > t.persisted {
                g.lag -= (committed - t.persisted).min(t.size_seen.saturating_sub(t.persisted));
                t.persisted = committed;
            }
            if t.done && t.persisted == t.committed {
                g.lag -= t.size_seen.saturating_sub(t.persisted);
                g.files.remove(&id);
            }
        }
        self.metrics.logs.log_checkpoint_lag_bytes.set(g.lag as i64);
    }

    /// Bytes of tracked files not covered by the persisted checkpoint.
    #[cfg(test)]
    pub fn lag(&self) -> u64 {
        self.lock().lag
    }

    /// The committed offset of a tracked file (tests).
    #[cfg(test)]
    pub fn committed(&self, id: u64) -> Option<u64> {
        self.lock().files.get(&id).map(|t| t.committed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::batch::{BatchBuilder, Mark};
    use std::time::Instant;

    const FILE: FileId = FileId {
        dev: 1,
        ino: 2,
        born: 3,
    };

    fn batch(marks: Vec<Mark>) -> Batch {
        BatchBuilder::new(1024, 10).seal(marks, Instant::now())
    }

    #[test]
    fn out_of_order_acks_commit_only_the_acknowledged_prefix() {
        let l = Ledger::new(Store::default(), Arc::new(Metrics::new()));
        let s: Arc<str> = Arc::from("/p/0.log");
        let f = l.register_file(&s, Fingerprint::of(b"head\n"), FILE, 0, None);
        let mut b1 = batch(vec![Mark {
            file: f,
            offset: 100,
            last: false,
        }]);
        let mut b2 = batch(vec![Mark {
            file: f,
            offset: 200,
            last: false,
        }]);
        let mut b3 = batch(vec![Mark {
            file: f,
            offset: 300,
            last: false,
        }]);
        l.submit(&mut b1);
        l.submit(&mut b2);
        l.submit(&mut b3);
        l.ack(b3.seq);
        assert_eq!(l.committed(f), Some(0), "b1 and b2 are still in flight");
        l.ack(b1.seq);
        assert_eq!(l.committed(f), Some(100));
        l.ack(b2.seq);
        assert_eq!(l.committed(f), Some(300));
        assert_eq!(l.batches_in_flight(), 0);
        let acks = |l: &Ledger| {
            let text = l.metrics.encode();
            text.lines()
                .find_map(|line| line.strip_prefix("kubeship_batch_ack_seconds_count "))
                .map(str::to_owned)
        };
        assert_eq!(
            acks(&l).as_deref(),
            Some("3"),
            "seal to ack, each batch once"
        );
        l.ack(b2.seq);
        assert_eq!(acks(&l).as_deref(), Some("3"), "not an unknown batch");
        l.note_size(f, 350);
        assert_eq!(l.lag(), 350, "nothing persisted yet");
        let snap = l.checkpoint_if_changed().expect("changed");
        let text = String::from_utf8(snap.bytes.clone()).unwrap();
        assert!(text.contains("\"offset\": 300"), "{text}");
        assert_eq!(l.lag(), 350, "not yet written");
        l.persisted(snap);
        assert_eq!(l.lag(), 50);
        assert!(l.checkpoint_if_changed().is_none());
    }

    #[test]
    fn finished_file_is_done_only_after_its_last_ack() {
        let l = Ledger::new(Store::default(), Arc::new(Metrics::new()));
        let s: Arc<str> = Arc::from("/p/0.log");
        let fp = Fingerprint::of(b"head\n");
        let f = l.register_file(&s, fp, FILE, 0, None);
        let mut b1 = batch(vec![Mark {
            file: f,
            offset: 40,
            last: false,
        }]);
        let mut b2 = batch(vec![Mark {
            file: f,
            offset: 50,
            last: true,
        }]);
        l.submit(&mut b1);
        l.submit(&mut b2);
        l.ack(b2.seq);
        assert!(!l.with_store(|st| st.find_own("/p/0.log", b"head\n", FILE).unwrap().done));
        l.ack(b1.seq);
        let e = l
            .with_store(|st| st.find_own("/p/0.log", b"head\n", FILE))
            .unwrap();
        assert!(e.done);
        assert_eq!(e.offset, 50);
        assert_eq!(l.committed(f), Some(50), "tracked until persisted");
        let snap = l.checkpoint_if_changed().expect("changed");
        l.persisted(snap);
        assert_eq!(l.committed(f), None, "tracking ended");
    }

    /// Once a file's entry moved to a copy (copytruncate), no acknowledgement writes
    /// an entry of the old file again: not the moving track's (it follows the copy),
    /// not another track's of the same file and content (a file let go and opened
    /// again, its last batch acknowledged late).
    #[test]
    fn acknowledgements_after_a_move_do_not_write_the_old_entry_back() {
        let l = Ledger::new(Store::default(), Arc::new(Metrics::new()));
        let s: Arc<str> = Arc::from("/p/0.log");
        let head = [b'x'; 300];
        let fp = Fingerprint::of(&head);
        let copy = FileId { ino: 9, ..FILE };
        let mark = |file, offset, last| Mark { file, offset, last };
        let first = l.register_file(&s, fp, FILE, 0, None);
        let mut late = batch(vec![mark(first, 500, true)]);
        l.submit(&mut late);
        let second = l.register_file(&s, fp, FILE, 500, None);
        let mut b = batch(vec![mark(second, 700, false)]);
        l.submit(&mut b);
        l.moved(second, copy);
        l.ack(b.seq);
        l.ack(late.seq);
        let entries = |l: &Ledger| {
            l.with_store(|st| {
                (
                    st.find_own("/p/0.log", &head, FILE).map(|e| e.offset),
                    st.find_own("/p/0.log", &head, copy).map(|e| e.offset),
                    st.len(),
                )
            })
        };
        assert_eq!(entries(&l), (None, Some(700), 1));
        // Tracking of the retired track still ends once done and persisted.
        let snap = l.checkpoint_if_changed().expect("changed");
        l.persisted(snap);
        assert_eq!(l.committed(first), None);
        assert_eq!(l.committed(second), Some(700));
    }

    /// A copy taking over the entry of a file that no longer holds its content: the
    /// old entry goes, and a late acknowledgement of that file does not bring it back.
    #[test]
    fn a_copy_taking_over_an_entry_leaves_none_behind() {
        let l = Ledger::new(Store::default(), Arc::new(Metrics::new()));
        let s: Arc<str> = Arc::from("/p/0.log");
        let head = [b'x'; 300];
        let fp = Fingerprint::of(&head);
        let copy = FileId { ino: 9, ..FILE };
        let old = l.register_file(&s, fp, FILE, 0, None);
        let mut late = batch(vec![Mark {
            file: old,
            offset: 300,
            last: true,
        }]);
        l.submit(&mut late);
        l.register_file(&s, fp, copy, 200, Some((fp, FILE)));
        l.ack(late.seq);
        l.with_store(|st| {
            assert!(st.find_own("/p/0.log", &head, FILE).is_none());
            assert_eq!(st.find_own("/p/0.log", &head, copy).unwrap().offset, 200);
            assert_eq!(st.len(), 1);
        });
    }

    /// A file let go and read on continues its track: its entry moves only over
    /// acknowledged batches in order, those before the let-go too, the let-go mark no
    /// longer finishes it, an entry acknowledged to its end (not yet persisted) is
    /// done no more, and a track that ended cannot be continued.
    #[test]
    fn a_reopened_track_is_not_finished_by_its_let_go_mark() {
        let l = Ledger::new(Store::default(), Arc::new(Metrics::new()));
        let s: Arc<str> = Arc::from("/p/0.log");
        let head = [b'x'; 300];
        let f = l.register_file(&s, Fingerprint::of(&head), FILE, 0, None);
        let entry = |l: &Ledger| {
            l.with_store(|st| st.find_own("/p/0.log", &head, FILE))
                .map(|e| (e.offset, e.done))
        };
        let mark = |offset, last| Mark {
            file: f,
            offset,
            last,
        };
        let mut let_go = batch(vec![mark(100, true)]);
        l.submit(&mut let_go);
        assert!(l.reopen(f));
        let mut more = batch(vec![mark(150, false)]);
        l.submit(&mut more);
        l.ack(more.seq);
        assert_eq!(
            entry(&l),
            Some((0, false)),
            "the batch before it is in flight"
        );
        l.ack(let_go.seq);
        assert_eq!(entry(&l), Some((150, false)));

        let mut again = batch(vec![mark(200, true)]);
        l.submit(&mut again);
        l.ack(again.seq);
        assert_eq!(entry(&l), Some((200, true)), "let go and acknowledged");
        assert!(l.reopen(f), "not yet persisted: still tracked");
        assert_eq!(entry(&l), Some((200, false)));

        let mut last = batch(vec![mark(200, true)]);
        l.submit(&mut last);
        l.ack(last.seq);
        let snap = l.checkpoint_if_changed().expect("changed");
        l.persisted(snap);
        assert_eq!(l.committed(f), None, "tracking ended");
        assert!(
            !l.reopen(f),
            "nothing to continue: its entry says how far it was read"
        );
    }

    #[test]
    fn budget_blocks_until_acknowledged() {
        let l = Arc::new(Ledger::new(Store::default(), Arc::new(Metrics::new())));
        let mut b = BatchBuilder::new(1 << 20, 10);
        let d = Arc::new(crate::logs::batch::Destination {
            group: "g".into(),
            stream: "s".into(),
        });
        b.push(&d, 0, Instant::now(), |o| {
            o.extend_from_slice(&[b'x'; 1000]);
            1000
        });
        let mut b = b.seal(vec![], Instant::now());
        l.submit(&mut b);
        let stop = AtomicBool::new(false);
        let seq = b.seq;
        let l2 = Arc::clone(&l);
        // The ack comes only once the wait is under way: the wait must have blocked.
        let t = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !l2.tailer_waiting() {
                assert!(
                    Instant::now() < deadline,
                    "wait_for_room never blocked for the budget"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            l2.ack(seq);
        });
        assert!(
            l.wait_for_room(600, 1500, &stop),
            "waits for the ack, then fits"
        );
        t.join().expect("the ack thread saw the wait");
        assert!(!l.tailer_waiting(), "no longer waiting once it fits");
        stop.store(true, Ordering::Relaxed);
        let mut b2 = BatchBuilder::new(1 << 20, 10);
        b2.push(&d, 0, Instant::now(), |o| {
            o.extend_from_slice(&[b'x'; 1000]);
            1000
        });
        let mut b2 = b2.seal(vec![], Instant::now());
        l.submit(&mut b2);
        assert!(!l.wait_for_room(600, 1500, &stop), "gives up when stopping");
        assert!(
            l.wait_for_room(400, 1500, &stop),
            "fits beside what is in flight"
        );
    }

    #[test]
    fn waiting_for_room_is_signalled_once_per_wait() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        // A stored notification completes at once (`timeout` polls its future first).
        let signalled = |l: &Ledger| {
            rt.block_on(async { tokio::time::timeout(Duration::ZERO, l.room_wanted()).await })
                .is_ok()
        };
        let wait_signal = |l: &Ledger| {
            rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), l.room_wanted()).await
            })
            .expect("the tailer's wait is signalled");
        };
        let l = Arc::new(Ledger::new(Store::default(), Arc::new(Metrics::new())));
        let d = Arc::new(crate::logs::batch::Destination {
            group: "g".into(),
            stream: "s".into(),
        });
        let submit = || {
            let mut b = BatchBuilder::new(1 << 20, 10);
            b.push(&d, 0, Instant::now(), |o| {
                o.extend_from_slice(&[b'x'; 1000]);
                1000
            });
            let mut b = b.seal(vec![], Instant::now());
            l.submit(&mut b);
            b.seq
        };
        let seq = submit();
        let stop = Arc::new(AtomicBool::new(false));
        assert!(l.wait_for_room(400, 1500, &stop), "fits");
        assert!(!l.tailer_waiting());
        assert!(!signalled(&l), "no signal when there was room");

        let (l2, stop2) = (Arc::clone(&l), Arc::clone(&stop));
        let t = std::thread::spawn(move || l2.wait_for_room(600, 1500, &stop2));
        wait_signal(&l);
        assert!(l.tailer_waiting());
        // The wait wakes up every 100 ms to look at `stop`: no new signal for that.
        std::thread::sleep(Duration::from_millis(250));
        assert!(!signalled(&l), "one signal per wait");
        assert!(l.tailer_waiting());
        l.ack(seq);
        assert!(t.join().unwrap(), "room after the ack");
        assert!(!l.tailer_waiting(), "cleared when the wait ends");

        // Stopping ends the wait too, and clears the flag.
        submit();
        submit();
        let (l2, stop2) = (Arc::clone(&l), Arc::clone(&stop));
        let t = std::thread::spawn(move || l2.wait_for_room(600, 1500, &stop2));
        wait_signal(&l);
        assert!(l.tailer_waiting());
        stop.store(true, Ordering::Relaxed);
        assert!(!t.join().unwrap(), "gave up because of stop");
        assert!(!l.tailer_waiting(), "cleared when the wait gives up");
    }
}
