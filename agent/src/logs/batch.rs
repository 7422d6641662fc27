//! Batches: how records travel from the tailer to a sink.
//!
//! A [`Batch`] holds many records' JSON in one buffer, one small [`Event`] per
//! record, the destinations those events go to, and the file positions the batch
//! covers ([`Mark`]s). A sink acknowledges a whole batch; the ledger then advances
//! the files' checkpoints to the marks. Nothing here is per line except an `Event`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::logs::encode::{Fragment, RecordForm};

/// Where a record goes: the CloudWatch log group and stream it belongs to.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Destination {
    /// Log group name.
    pub group: String,
    /// Log stream name.
    pub stream: String,
}

/// One record inside a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Record time, unix nanoseconds.
    pub time_nanos: i64,
    /// Start of the record's JSON in [`Batch::buf`].
    pub start: u32,
    /// End (exclusive) of the record in [`Batch::buf`].
    pub end: u32,
    /// Index into [`Batch::dests`].
    pub dest: u32,
    /// The record's length as JSON (what CloudWatch counts), its end included:
    /// `end - start` in [`RecordForm::Json`] without an end apart, less than that
    /// when the buffer holds it escaped.
    pub json_len: u32,
    /// The record's end, when it is not in the buffer: an index into
    /// [`Batch::ends`] (the container's `kubernetes` object, then `}`); [`NO_END`]
    /// for none.
    pub end_apart: u32,
}

/// [`Event::end_apart`] of a record written whole.
pub const NO_END: u32 = u32::MAX;

/// A file position the batch covers: once the batch is acknowledged, every record
/// of `file` before `offset` has been delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    /// The ledger's file id.
    pub file: u64,
    /// Byte offset in the file (decompressed offset for `.gz`).
    pub offset: u64,
    /// The tailer let the file go at `offset`: once acknowledged, its checkpoint is
    /// marked done and the ledger stops tracking it.
    pub last: bool,
}

/// A sealed batch on its way to a sink.
#[derive(Debug)]
pub struct Batch {
    /// Sequence number, unique per process, assigned by the ledger.
    pub seq: u64,
    /// The records, back to back, each followed by a newline.
    pub buf: Vec<u8>,
    /// How the records in `buf` are written.
    pub form: RecordForm,
    /// One entry per record, in read order.
    pub events: Vec<Event>,
    /// Destinations referenced by `Event::dest`.
    pub dests: Vec<Arc<Destination>>,
    /// Records' ends referenced by `Event::end_apart`: the `kubernetes` objects of
    /// their containers, one shared copy each.
    pub ends: Vec<Arc<Fragment>>,
    /// Checkpoint positions this batch completes.
    pub marks: Vec<Mark>,
    /// When the batch was sealed.
    pub sealed_at: Instant,
    /// Where `buf` and `events` go back once the batch is done with.
    pool: Arc<BufPool>,
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.pool.give(
            std::mem::take(&mut self.buf),
            std::mem::take(&mut self.events),
        );
    }
}

/// Buffers of delivered batches, for the builder to fill again. The allocator gives
/// large freed blocks back to the kernel, so a fresh buffer for every batch meant
/// page faults on every page the next batch wrote (a tenth of the tailer's CPU at
/// 10k lines/s). A sink that holds batches for a while (CloudWatch: until every
/// stream's request went out, a second or more) hands several back at once, so a
/// few are kept; buffers that were not needed for [`BufPool::TRIM_EVERY`] are let
/// go, so an agent that went quiet after a burst does not keep them.
#[derive(Debug, Default)]
pub struct BufPool {
    free: Mutex<Free>,
}

#[derive(Debug, Default)]
struct Free {
    bufs: Vec<(Vec<u8>, Vec<Event>)>,
    /// The capacity buffers are taken with: a buffer that grew past it is not kept.
    cap: usize,
    /// The fewest buffers kept since the last trim: that many were not needed.
    low: usize,
    last_trim: Option<Instant>,
}

impl BufPool {
    /// Buffers kept at most.
    const KEEP: usize = 8;
    /// How often buffers that were not needed are let go.
    const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    fn lock(&self) -> std::sync::MutexGuard<'_, Free> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Empty buffers, with at least the given capacities.
    fn take(&self, bytes: usize, events: usize) -> (Vec<u8>, Vec<Event>) {
        let reused = {
            let mut f = self.lock();
            f.cap = bytes;
            let b = f.bufs.pop();
            f.low = f.low.min(f.bufs.len());
            b
        };
        let (mut buf, mut evs) = reused.unwrap_or_default();
        buf.reserve(bytes);
        evs.reserve(events);
        (buf, evs)
    }

    fn give(&self, mut buf: Vec<u8>, mut events: Vec<Event>) {
        if buf.capacity() == 0 {
            return;
        }
        buf.clear();
        events.clear();
        let mut f = self.lock();
        if f.bufs.len() < Self::KEEP && buf.capacity() <= f.cap {
            f.bufs.push((buf, events));
        }
    }

    /// Lets go of the buffers that were not needed since the last trim, at most
    /// once per [`BufPool::TRIM_EVERY`].
    fn trim(&self, now: Instant) {
        let mut f = self.lock();
        match f.last_trim {
            Some(last) if now.duration_since(last) < Self::TRIM_EVERY => return,
            Some(_) => {
                let keep = f.bufs.len() - f.low.min(f.bufs.len());
                f.bufs.truncate(keep);
            }
            None => {}
        }
        f.low = f.bufs.len();
        f.last_trim = Some(now);
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.lock().bufs.len()
    }
}

/// Record bytes plus the events' own size: what a batch holds in memory.
fn charge(buf: &[u8], events: &[Event]) -> usize {
    buf.len() + std::mem::size_of_val(events)
}

impl Batch {
    /// The bytes this batch holds against the in-flight budget.
    pub fn charge(&self) -> usize {
        charge(&self.buf, &self.events)
    }

    /// The record at `buf[start..end]` whose end is `end_apart` ([`Event`]'s
    /// fields), in the batch's [`RecordForm`], in its parts: the bytes in the buffer,
    /// then (when apart) its `kubernetes` object and the closing `}`.
    pub fn parts(&self, start: u32, end: u32, end_apart: u32) -> [&[u8]; 3] {
        let head = &self.buf[start as usize..end as usize];
        match self.ends.get(end_apart as usize) {
            Some(end) => [head, &end.bytes, b"}"],
            None => [head, b"", b""],
        }
    }

    /// One event's record, in the batch's [`RecordForm`].
    #[cfg(test)]
    pub fn record(&self, e: &Event) -> Vec<u8> {
        self.parts(e.start, e.end, e.end_apart).concat()
    }

    /// The JSON lines of each destination: runs of consecutive records (each
    /// followed by its newline), per index of [`Batch::dests`].
    pub fn lines_by_dest(&self) -> Vec<Vec<&[u8]>> {
        debug_assert!(
            self.ends.is_empty(),
            "only the JSON string form keeps ends apart"
        );
        let mut out: Vec<Vec<&[u8]>> = vec![Vec::new(); self.dests.len()];
        let mut run: Option<(u32, usize, usize)> = None;
        for e in &self.events {
            let (s, end) = (e.start as usize, e.end as usize + 1);
            run = match run {
                Some((d, rs, re)) if d == e.dest && re == s => Some((d, rs, end)),
                Some((d, rs, re)) => {
                    out[d as usize].push(&self.buf[rs..re]);
                    Some((e.dest, s, end))
                }
                None => Some((e.dest, s, end)),
            };
        }
        if let Some((d, rs, re)) = run {
            out[d as usize].push(&self.buf[rs..re]);
        }
        out
    }
}

/// Accumulates records until the batch is full or old enough.
pub struct BatchBuilder {
    buf: Vec<u8>,
    events: Vec<Event>,
    dests: Vec<Arc<Destination>>,
    /// Address of the last destination used (compared for identity only) and its index.
    last_dest: Option<(usize, u32)>,
    ends: Vec<Arc<Fragment>>,
    /// The same for `ends`.
    last_end: Option<(usize, u32)>,
    first_at: Option<Instant>,
    max_bytes: usize,
    max_records: usize,
    form: RecordForm,
    pool: Arc<BufPool>,
}

impl BatchBuilder {
    /// A builder that seals at `max_bytes` of JSON or `max_records` records.
    pub fn new(max_bytes: usize, max_records: usize) -> Self {
        Self {
            buf: Vec::new(),
            events: Vec::new(),
            dests: Vec::new(),
            last_dest: None,
            ends: Vec::new(),
            last_end: None,
            first_at: None,
            max_bytes,
            max_records,
            form: RecordForm::Json,
            pool: Arc::default(),
        }
    }

    /// The same builder, its records written in `form` (default [`RecordForm::Json`]).
    pub fn with_form(mut self, form: RecordForm) -> Self {
        self.form = form;
        self
    }

    /// The form records must be written in.
    pub fn form(&self) -> RecordForm {
        self.form
    }

    /// Appends one record: `write` writes it into the buffer in [`Self::form`] and
    /// returns its length as JSON. A newline follows each record in the buffer
    /// (outside its event's range), so that consecutive JSON records of one
    /// destination are ready-made JSON lines.
    pub fn push(
        &mut self,
        dest: &Arc<Destination>,
        time_nanos: i64,
        now: Instant,
        write: impl FnOnce(&mut Vec<u8>) -> usize,
    ) {
        self.push_with_end(dest, time_nanos, now, None, |buf| (write(buf), false));
    }

    /// [`BatchBuilder::push`] for a record whose end (`end`: the container's
    /// `kubernetes` object, then `}`) `write` may leave out, saying so: the batch then
    /// holds `end` once for all the records that leave it out.
    pub fn push_with_end(
        &mut self,
        dest: &Arc<Destination>,
        time_nanos: i64,
        now: Instant,
        end: Option<&Arc<Fragment>>,
        write: impl FnOnce(&mut Vec<u8>) -> (usize, bool),
    ) {
        let dest = index_of(&mut self.dests, &mut self.last_dest, dest);
        let start = self.buf.len();
        let (json_len, apart) = write(&mut self.buf);
        let end_apart = match end {
            Some(end) if apart => index_of(&mut self.ends, &mut self.last_end, end),
            _ => NO_END,
        };
        let end = self.buf.len();
        self.buf.push(b'\n');
        self.events.push(Event {
            time_nanos,
            start: start as u32,
            end: end as u32,
            dest,
            json_len: json_len as u32,
            end_apart,
        });
        self.first_at.get_or_insert(now);
    }

    /// True when the next record could overflow the limits.
    pub fn is_full(&self) -> bool {
        self.events.len() >= self.max_records || self.buf.len() >= self.max_bytes
    }

    /// What the open batch will charge against the in-flight budget ([`Batch::charge`]).
    pub fn charge(&self) -> usize {
        charge(&self.buf, &self.events)
    }

    /// Bytes of the open batch's records.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// The size at which a batch is full.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Bytes the open batch may still take before it is full.
    pub fn room(&self) -> usize {
        self.max_bytes.saturating_sub(self.buf.len())
    }

    /// Records added since the last seal.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when no record was added since the last seal.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// When the first record of the open batch was added.
    pub fn first_at(&self) -> Option<Instant> {
        self.first_at
    }

    /// Lets go of kept buffers that were not needed lately (call now and then).
    pub fn trim_pool(&self, now: Instant) {
        self.pool.trim(now);
    }

    /// Seals the open batch (possibly empty, to carry marks) and starts a new one.
    pub fn seal(&mut self, marks: Vec<Mark>, now: Instant) -> Batch {
        // Room for a full batch up front: a buffer that grows is copied into fresh
        // pages (only the pages written become resident).
        let cap = self.max_bytes + self.max_bytes / 4;
        let (buf, events) = self.pool.take(cap, self.events.len());
        self.last_dest = None;
        self.last_end = None;
        self.first_at = None;
        Batch {
            seq: 0,
            buf: std::mem::replace(&mut self.buf, buf),
            form: self.form,
            events: std::mem::replace(&mut self.events, events),
            dests: std::mem::take(&mut self.dests),
            ends: std::mem::take(&mut self.ends),
            marks,
            sealed_at: now,
            pool: Arc::clone(&self.pool),
        }
    }
}

/// The index of `item` (compared by address) in `items`, added when new; `last` is
/// the last one asked for and its index.
fn index_of<T>(items: &mut Vec<Arc<T>>, last: &mut Option<(usize, u32)>, item: &Arc<T>) -> u32 {
    let ptr = Arc::as_ptr(item).addr();
    if let Some((p, i)) = *last
        && p == ptr
    {
        return i;
    }
    let i = match items.iter().position(|d| Arc::as_ptr(d).addr() == ptr) {
        Some(i) => i as u32,
        None => {
            items.push(Arc::clone(item));
            (items.len() - 1) as u32
        }
    };
    *last = Some((ptr, i));
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_whose_end_is_apart_share_one_copy_of_it() {
        let d = Arc::new(Destination {
            group: "g".into(),
            stream: "s".into(),
        });
        let (k1, k2) = (
            Arc::new(Fragment::new(
                br#"{"pod":"a"}"#.to_vec(),
                RecordForm::JsonString,
            )),
            Arc::new(Fragment::new(
                br#"{"pod":"b"}"#.to_vec(),
                RecordForm::JsonString,
            )),
        );
        let mut bb = BatchBuilder::new(1 << 20, 100).with_form(RecordForm::JsonString);
        let now = Instant::now();
        for (end, apart, head) in [
            (&k1, true, "{x:"),
            (&k2, true, "{y:"),
            (&k1, true, "{z:"),
            (&k1, false, "{whole}"),
        ] {
            bb.push_with_end(&d, 0, now, Some(end), |o| {
                o.extend_from_slice(head.as_bytes());
                (head.len() + end.json_len + usize::from(apart), apart)
            });
        }
        let batch = bb.seal(Vec::new(), now);
        assert_eq!(batch.ends.len(), 2, "one copy per container");
        let records: Vec<String> = batch
            .events
            .iter()
            .map(|e| String::from_utf8(batch.record(e)).unwrap())
            .collect();
        assert_eq!(
            records,
            [
                r#"{x:{\"pod\":\"a\"}}"#,
                r#"{y:{\"pod\":\"b\"}}"#,
                r#"{z:{\"pod\":\"a\"}}"#,
                "{whole}"
            ]
        );
        assert_eq!(batch.events[3].end_apart, NO_END);
    }

    #[test]
    fn events_index_their_destination_and_bytes() {
        let a = Arc::new(Destination {
            group: "g".into(),
            stream: "a".into(),
        });
        let b = Arc::new(Destination {
            group: "g".into(),
            stream: "b".into(),
        });
        let now = Instant::now();
        let mut bb = BatchBuilder::new(1 << 20, 3);
        bb.push(&a, 1, now, |o| {
            o.extend_from_slice(b"one");
            3
        });
        bb.push(&b, 2, now, |o| {
            o.extend_from_slice(b"two");
            3
        });
        assert!(!bb.is_full());
        bb.push(&a, 3, now, |o| {
            o.extend_from_slice(b"three");
            5
        });
        assert!(bb.is_full());
        let batch = bb.seal(
            vec![Mark {
                file: 7,
                offset: 10,
                last: false,
            }],
            now,
        );
        assert_eq!(batch.dests.len(), 2);
        let got: Vec<(Vec<u8>, &str)> = batch
            .events
            .iter()
            .map(|e| {
                (
                    batch.record(e),
                    batch.dests[e.dest as usize].stream.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (b"one".to_vec(), "a"),
                (b"two".to_vec(), "b"),
                (b"three".to_vec(), "a")
            ]
        );
        let lines = batch.lines_by_dest();
        assert_eq!(lines[0], vec![&b"one\n"[..], &b"three\n"[..]]);
        assert_eq!(lines[1], vec![&b"two\n"[..]]);
        assert!(bb.is_empty());
        assert_eq!(bb.first_at(), None);
    }

    #[test]
    fn delivered_buffers_are_filled_again() {
        let d = Arc::new(Destination {
            group: "g".into(),
            stream: "s".into(),
        });
        let now = Instant::now();
        let mut bb = BatchBuilder::new(1 << 20, 100);
        let fill = |bb: &mut BatchBuilder| {
            for i in 0..50 {
                bb.push(&d, i, now, |o| {
                    o.extend_from_slice(&[b'x'; 1000]);
                    1000
                });
            }
        };
        fill(&mut bb);
        let first = bb.seal(Vec::new(), now);
        fill(&mut bb);
        let second = bb.seal(Vec::new(), now);
        let at = second.buf.as_ptr().addr();
        drop(second);
        // The builder's open buffer was taken before `second` was back; the next
        // one is `second`'s, emptied, with room for a full batch.
        fill(&mut bb);
        let third = bb.seal(Vec::new(), now);
        fill(&mut bb);
        let fourth = bb.seal(Vec::new(), now);
        assert_eq!(fourth.buf.as_ptr().addr(), at, "second's buffer reused");
        assert!(fourth.buf.capacity() >= (1 << 20) + (1 << 18));
        assert_eq!(fourth.buf.len(), 50 * 1001);
        assert_eq!(fourth.events.len(), 50);
        assert_eq!(fourth.record(&fourth.events[0]), &[b'x'; 1000][..]);
        drop((first, third, fourth));
        assert!(bb.pool.kept() <= BufPool::KEEP);
    }

    #[test]
    fn a_buffer_that_grew_past_its_reserve_is_not_kept() {
        let d = Arc::new(Destination {
            group: "g".into(),
            stream: "s".into(),
        });
        let t0 = Instant::now();
        let mut bb = BatchBuilder::new(1 << 16, 100);
        drop(bb.seal(Vec::new(), t0));
        assert_eq!(bb.pool.kept(), 0, "the first buffer was empty");
        bb.push(&d, 0, t0, |o| {
            o.extend_from_slice(&[b'x'; 1 << 17]);
            1 << 17
        });
        drop(bb.seal(Vec::new(), t0));
        assert_eq!(bb.pool.kept(), 0, "twice the batch size: let go");
        bb.push(&d, 0, t0, |o| {
            o.extend_from_slice(b"x");
            1
        });
        drop(bb.seal(Vec::new(), t0));
        assert_eq!(bb.pool.kept(), 1, "a buffer within its reserve is kept");
    }

    #[test]
    fn buffers_not_needed_for_a_while_are_let_go() {
        let d = Arc::new(Destination {
            group: "g".into(),
            stream: "s".into(),
        });
        let t0 = Instant::now();
        let mut bb = BatchBuilder::new(1 << 16, 100);
        let mut held = Vec::new();
        for _ in 0..6 {
            bb.push(&d, 0, t0, |o| {
                o.extend_from_slice(b"x");
                1
            });
            held.push(bb.seal(Vec::new(), t0));
        }
        bb.trim_pool(t0);
        drop(held);
        assert_eq!(bb.pool.kept(), 6, "a burst's buffers are kept");
        let period = BufPool::TRIM_EVERY;
        bb.trim_pool(t0 + period);
        assert_eq!(bb.pool.kept(), 6, "they were needed in that period");
        // Two are in use at once in the next period: the four others were not needed.
        let (a, b) = (bb.seal(Vec::new(), t0), bb.seal(Vec::new(), t0));
        drop((a, b));
        bb.trim_pool(t0 + period + period / 2);
        assert_eq!(bb.pool.kept(), 6, "not before the period ends");
        bb.trim_pool(t0 + period * 2);
        assert_eq!(bb.pool.kept(), 2);
        bb.trim_pool(t0 + period * 3);
        assert_eq!(bb.pool.kept(), 0, "a quiet period lets all go");
    }
}
