//! Crash safety: SIGKILL the agent repeatedly at varied points while a writer appends to six
//! containers and rotates + gzips them at a high rate; restart it each time. At the end every
//! line must be delivered exactly as written, first deliveries in order per container, and
//! records acknowledged before a kill (all delivered + zero checkpoint lag during a writer
//! pause) never delivered again. Duplicates are bounded by what was in flight at each kill:
//! records that reached the sink within [`IN_FLIGHT_WINDOW`] before it (acknowledged, their
//! checkpoint not yet written: at most `checkpoint_interval_ms`, 200 ms here, plus the write).
//! A duplicate of an older record, or a checkpoint written late or not at all, fails it.
//!
//! `KUBESHIP_SIGKILL_RATE` (lines/s, default 5000) and `KUBESHIP_SIGKILL_SEED` tune it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kubeship_tests::{
    Agent, AgentConfig, ContainerInfo, Delivery, Format, Node, Rng, secs, wait_for,
};

const KILLS: usize = 8;
const CONTAINERS: usize = 6;
/// How long before a kill a delivered record may still lack a checkpoint on disk: five
/// checkpoint intervals, room for fsync and scheduling on a busy machine.
const IN_FLIGHT_WINDOW: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
enum KillPoint {
    /// Right after spawn, before it can have read anything.
    Immediately,
    /// Once `n` more records reached the sink.
    AfterRecords(usize),
    /// Pause the writer, wait until everything is delivered and checkpointed, resume, then
    /// kill after `n` more records.
    AfterQuiesce(usize),
}

/// Everything below `prefix[c]` was acknowledged; `counts[c][s]` is how often it was
/// delivered at that point — it must never grow.
struct Acked {
    kill: usize,
    prefix: Vec<u64>,
    counts: Vec<Vec<u32>>,
}

#[test]
fn repeated_sigkill_loses_nothing() {
    let rate: u64 = env_u64("KUBESHIP_SIGKILL_RATE", 5000).max(CONTAINERS as u64 * 10);
    let seed = env_u64("KUBESHIP_SIGKILL_SEED", 0x51_6b11);
    eprintln!("sigkill: seed {seed} (KUBESHIP_SIGKILL_SEED), {rate} lines/s");
    let mut rng = Rng::new(seed);
    let node = Node::new();
    let mut containers = Vec::new();
    for i in 0..CONTAINERS {
        let format = if i % 2 == 0 {
            Format::Cri
        } else {
            Format::Docker
        };
        let mut c = node.add_container_with(
            "crash",
            &format!("writer-{i}"),
            &format!("w{i}"),
            format,
            i % 3 == 2,
        );
        c.set_padding(40 + 20 * i, 120);
        containers.push(c);
    }
    let infos: Vec<ContainerInfo> = containers.iter().map(|c| c.info().clone()).collect();
    let names: Vec<String> = infos.iter().map(|c| c.name.clone()).collect();

    // Writer: ticks of 20 ms; one rotation (+ gzip of older rotated files) every 5 ticks.
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_writer_on_panic = StopOnDrop(stop.clone());
    let gate = Arc::new(Mutex::new(()));
    let written: Arc<Vec<AtomicU64>> =
        Arc::new((0..CONTAINERS).map(|_| AtomicU64::new(0)).collect());
    let per_tick = (rate / 50 / CONTAINERS as u64).max(1);
    let writer = {
        let (stop, gate, written) = (stop.clone(), gate.clone(), written.clone());
        let mut wrng = Rng::new(seed ^ 0xfeed);
        thread::spawn(move || {
            let tick = Duration::from_millis(20);
            let mut next = Instant::now();
            let mut ticks = 0u64;
            let mut rotations = 0u64;
            while !stop.load(Ordering::Relaxed) {
                {
                    let _g = gate.lock().expect("gate");
                    for (i, c) in containers.iter_mut().enumerate() {
                        let n = per_tick + wrng.below(per_tick);
                        c.write_lines(n);
                        written[i].store(c.written(), Ordering::Release);
                    }
                    ticks += 1;
                    if ticks.is_multiple_of(5) {
                        let i = wrng.below(CONTAINERS as u64) as usize;
                        containers[i].rotate();
                        while containers[i].gzip_oldest().is_some() {}
                        rotations += 1;
                    }
                }
                next += tick;
                match next.checked_duration_since(Instant::now()) {
                    Some(d) => thread::sleep(d), // pacing, not synchronisation
                    None => next = Instant::now(),
                }
            }
            (containers, rotations)
        })
    };

    let cfg = AgentConfig::default();
    let mut d = Delivery::new(&node);
    let schedule = [
        KillPoint::Immediately,
        KillPoint::AfterRecords(1),
        KillPoint::AfterQuiesce(rng.range(1, 500) as usize),
        KillPoint::AfterRecords(rng.range(100, 8000) as usize),
        KillPoint::AfterQuiesce(0),
        KillPoint::AfterRecords(rng.range(1, 8000) as usize),
        KillPoint::AfterQuiesce(rng.range(1, 5000) as usize),
        KillPoint::AfterRecords(rng.range(1000, 10_000) as usize),
    ];
    assert_eq!(schedule.len(), KILLS);
    let mut acked: Vec<Acked> = Vec::new();
    let mut log = Vec::new();
    let mut in_flight: Vec<u64> = Vec::new();
    let mut dups_at_kill: Vec<u64> = Vec::new();
    for (k, point) in schedule.iter().enumerate() {
        let mut agent = Agent::start(&node, &cfg);
        let more = match *point {
            KillPoint::Immediately => 0,
            KillPoint::AfterRecords(n) => n,
            KillPoint::AfterQuiesce(n) => {
                let guard = gate.lock().expect("gate");
                let expect: Vec<(&str, u64)> = names
                    .iter()
                    .zip(written.iter())
                    .map(|(n, w)| (n.as_str(), w.load(Ordering::Acquire)))
                    .collect();
                d.wait_all(&mut agent, &expect, secs(90));
                agent.wait_ready(secs(10));
                wait_for(
                    || agent.metric("kubeship_log_checkpoint_lag_bytes") == Some(0.0),
                    secs(30),
                    "kubeship_log_checkpoint_lag_bytes == 0 while writers are paused",
                );
                d.poll();
                acked.push(Acked {
                    kill: k,
                    prefix: expect.iter().map(|(_, w)| *w).collect(),
                    counts: names
                        .iter()
                        .map(|n| d.tracker.track(n).count.clone())
                        .collect(),
                });
                drop(guard);
                n
            }
        };
        if more > 0 {
            d.poll();
            let target = d.sink.total() + more;
            wait_for(
                || {
                    d.poll();
                    agent.assert_running("before its planned kill");
                    d.sink.total() >= target
                },
                secs(90),
                format!("{more} more records before kill #{k}"),
            );
        }
        let killed_at = Instant::now();
        agent.sigkill();
        d.poll();
        // Delivered within the window before the kill (an upper bound: the sink's total at
        // the last poll before the window is a lower bound of what it held then).
        let recent = d.sink.total() - d.total_at(killed_at - IN_FLIGHT_WINDOW);
        in_flight.push(recent as u64);
        dups_at_kill.push(d.tracker.total_dups());
        log.push(format!(
            "kill #{k} {point:?}: {} records in sink, {recent} delivered in the last \
             {IN_FLIGHT_WINDOW:?}, {} dups so far",
            d.sink.total(),
            d.tracker.total_dups()
        ));
    }
    stop.store(true, Ordering::Relaxed);
    let (containers, rotations) = writer.join().expect("writer thread");

    // Final run: everything must arrive; then a clean stop.
    let mut agent = Agent::start(&node, &cfg);
    let expect: Vec<(&str, u64)> = containers.iter().map(|c| (c.name(), c.written())).collect();
    d.wait_all(&mut agent, &expect, secs(180));
    agent.stop(secs(60));
    d.poll();
    for l in &log {
        eprintln!("sigkill: {l}");
    }

    assert!(
        d.sink.bad_lines().is_empty(),
        "sink has {} torn/invalid lines (a kill must not leave partial JSON lines), first: {:?}",
        d.sink.bad_lines().len(),
        d.sink.bad_lines().first()
    );
    assert!(
        d.tracker.unknown.is_empty(),
        "records that no container wrote: {:?}",
        &d.tracker.unknown[..d.tracker.unknown.len().min(5)]
    );
    let total: u64 = containers.iter().map(|c| c.written()).sum();
    for (c, info) in containers.iter().zip(&infos) {
        let t = d.tracker.track(c.name());
        assert!(t.has_all(c.written()), "{}: lines missing", c.name());
        assert_eq!(
            t.distinct,
            c.written(),
            "{}: records for unwritten seqs",
            c.name()
        );
        assert!(
            t.order_violations.is_empty(),
            "{}: first deliveries out of order, e.g. seq {:?}",
            c.name(),
            &t.order_violations[..t.order_violations.len().min(5)]
        );
        for r in d.sink.records_of(c.name()) {
            let seq = kubeship_tests::parse_seq(&r.log).expect("sequenced").1;
            info.check(r, seq, "node-1")
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    for a in &acked {
        for (ci, name) in names.iter().enumerate() {
            let now = d.tracker.track(name);
            for s in 0..a.prefix[ci] {
                let before = a.counts[ci].get(s as usize).copied().unwrap_or(0);
                assert_eq!(
                    now.count_of(s),
                    before,
                    "{name} seq {s} was acknowledged (delivered, checkpoint lag 0) before kill \
                     #{} but was delivered again later",
                    a.kill
                );
            }
        }
    }
    let dups = d.tracker.total_dups();
    eprintln!(
        "sigkill: {total} lines over {CONTAINERS} containers, {rotations} rotations, {KILLS} kills, \
         {dups} duplicates ({:.2}%)",
        dups as f64 * 100.0 / total.max(1) as f64
    );
    // A kill's duplicates show in the runs after it (the next one may be killed before it
    // re-delivers them): by each kill, at most what was in flight at the kills before it.
    for k in 0..KILLS {
        let bound: u64 = in_flight[..k].iter().sum();
        assert!(
            dups_at_kill[k] <= bound,
            "{} duplicates by kill #{k}, but only {bound} records were delivered within \
             {IN_FLIGHT_WINDOW:?} before the kills before it:\n{}",
            dups_at_kill[k],
            log.join("\n")
        );
    }
    let bound: u64 = in_flight.iter().sum();
    assert!(
        dups <= bound,
        "{dups} duplicates for {total} lines, more than the {bound} records delivered within \
         {IN_FLIGHT_WINDOW:?} before the kills: the agent re-reads more than was in flight"
    );
}

/// Stops the writer thread when the test unwinds.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
