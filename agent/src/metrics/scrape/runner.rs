//! The loop of one target (one task per target): scrapes at its stable offset in
//! every interval, hands each scrape's samples to the destination, and, when the
//! target goes, sends the staleness markers of its series at what would have been
//! its next scrape, once, then ends. Its settings (interval, timeout, limits) can
//! change in place; its labels and URL cannot (they make the target, see
//! [`Target::identity`]).
//!
//! A scrape is bounded by the target's timeout and body limit; the body is parsed on
//! the blocking pool, so a large one does not hold the runtime's thread. Nothing a
//! target does reaches another target's loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kubeship_parsers::prom::{Format, Limits};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, watch};
use tokio::time::MissedTickBehavior;

use super::http::{BodyBudget, Client, FetchError, Share};
use super::metrics::{Health, Outcome, ScrapeMetrics};
use super::process::{Input, Processed, Report, ReportValues, SeriesCache};
use super::target::{Rules, Source, Target};
use crate::metrics::relabel::Rule;
use crate::metrics::series::{Destination, Sample};
use crate::net::conn::IDLE_TIMEOUT;
use crate::telemetry::{LogLimits, Metrics};

/// A target's body buffer is kept for its next scrape only up to this size, and only
/// when that comes within [`KEEP_BUFFER_FOR`]: hundreds of targets scraped every 15 to
/// 60 s should not each hold their last body between scrapes. (Their connection is
/// kept as a bare socket, a few hundred bytes: a plain-HTTP one while the next scrape
/// comes within [`IDLE_TIMEOUT`], an HTTPS one always, its handshake is costly.)
const KEEP_BUFFER_BYTES: usize = 4 << 20;
/// See [`KEEP_BUFFER_BYTES`].
const KEEP_BUFFER_FOR: Duration = Duration::from_secs(5);
/// A body up to this size is processed on the loop's own thread when the target's
/// last body took at most [`INLINE_WITHIN`] to process (a steady target: ~0.2 ms for
/// 500 samples): handing it to the blocking pool and back costs two thread switches,
/// more than processing it. Others (large bodies, new or churning series) go to the
/// blocking pool, so that no target holds the runtime's thread for long.
const INLINE_BODY_BYTES: usize = 64 << 10;
/// See [`INLINE_BODY_BYTES`].
const INLINE_WITHIN: Duration = Duration::from_millis(1);
/// A scrape's samples past this many are handed on from the blocking pool: a
/// remote-write endpoint encodes and compresses them as it queues them (~0.15 µs a
/// sample), which for a large body would hold a runtime thread, and the targets and log
/// files it serves, for tens of milliseconds.
const INLINE_PUSH_SAMPLES: usize = 4096;
/// A target logs a failure or bad lines at most once per reason this often.
const LOG_EVERY: Duration = Duration::from_secs(300);

/// What every loop shares.
pub struct Shared {
    /// Self-metrics, and the registry the agent's own target reads.
    pub metrics: Arc<Metrics>,
    /// Where samples go.
    pub destination: Arc<dyn Destination>,
    /// Metric relabeling, by the targets' [`Rules`].
    pub relabel: RuleSets,
    /// The node's offset seed.
    pub seed: u64,
    /// Per-line limits of the parser.
    pub limits: Limits,
    /// Wakes the manager (a loop ended).
    pub wake_manager: Arc<Notify>,
    /// Loops running.
    pub running: AtomicUsize,
    /// Loops that have not finished a first scrape, plus one until the manager's
    /// first discovery ([`super::Handle::scraped_once`]).
    pub unscraped: AtomicUsize,
    /// Notified when `unscraped` goes down.
    pub progress: Notify,
    /// Series the targets' caches hold in all ([`Held`]).
    pub series: AtomicUsize,
    /// `metrics.scrape.max_series`: the most series all targets may hold; 0: none.
    pub max_series: usize,
    /// `metrics.scrape.max_body_bytes_in_flight`: the bytes of body all scrapes may
    /// hold at once.
    pub bodies: BodyBudget,
}

/// The relabeling rules of each [`Rules`]: the agent-wide ones followed by the
/// group's, chained once at start.
#[derive(Default)]
pub struct RuleSets {
    agent_wide: Arc<[Rule]>,
    pods: Arc<[Rule]>,
    kubelet: Arc<[Rule]>,
    statics: Vec<Arc<[Rule]>>,
}

impl RuleSets {
    /// The rule sets of `cfg`.
    pub fn new(cfg: &crate::config::ScrapeConfig) -> RuleSets {
        let chain = |group: &[Rule]| -> Arc<[Rule]> {
            cfg.metric_relabel.iter().chain(group).cloned().collect()
        };
        RuleSets {
            agent_wide: chain(&[]),
            pods: chain(&cfg.pods_relabel),
            kubelet: chain(&cfg.kubelet_relabel),
            statics: cfg
                .static_targets
                .iter()
                .map(|s| chain(&s.metric_relabel))
                .collect(),
        }
    }

    /// The rules of `rules`.
    pub fn of(&self, rules: Rules) -> Arc<[Rule]> {
        Arc::clone(match rules {
            Rules::AgentWide => &self.agent_wide,
            Rules::Pods => &self.pods,
            Rules::Kubelet => &self.kubelet,
            Rules::Static(i) => self.statics.get(i).unwrap_or(&self.agent_wide),
        })
    }
}

impl Shared {
    /// One fewer loop (or the first discovery) to wait for.
    pub fn scraped(&self) {
        self.unscraped.fetch_sub(1, Ordering::SeqCst);
        self.progress.notify_waiters();
    }
}

/// Counted in [`Shared::unscraped`] (by the manager, before the loop is spawned)
/// until its loop's first scrape ends, or the loop does.
struct FirstScrape<'a>(Option<&'a Shared>);

impl FirstScrape<'_> {
    fn done(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.scraped();
        }
    }
}

impl Drop for FirstScrape<'_> {
    fn drop(&mut self) {
        self.done();
    }
}

/// Counts a loop in [`Shared::running`] while it lives.
struct Alive<'a>(&'a AtomicUsize);

impl<'a> Alive<'a> {
    fn new(running: &'a AtomicUsize) -> Self {
        running.fetch_add(1, Ordering::SeqCst);
        Alive(running)
    }
}

impl Drop for Alive<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A loop's share of [`Shared::series`]: the series its cache holds, given back when
/// the loop ends.
struct Held<'a> {
    total: &'a AtomicUsize,
    n: usize,
}

impl Held<'_> {
    /// The cache now holds `n` series.
    fn set(&mut self, n: usize) {
        if n >= self.n {
            self.total.fetch_add(n - self.n, Ordering::Relaxed);
        } else {
            self.total.fetch_sub(self.n - n, Ordering::Relaxed);
        }
        self.n = n;
    }

    /// Samples after relabeling the next scrape may keep within `max` series in all
    /// (0: no budget, `None`). Checked at the scrape's start: targets scraping at once
    /// can each pass it by what they add.
    fn room(&self, max: usize) -> Option<usize> {
        if max == 0 {
            return None;
        }
        let others = self.total.load(Ordering::Relaxed).saturating_sub(self.n);
        Some(max.saturating_sub(others))
    }
}

/// The sample limit a scrape runs with: the target's own (`own`, 0: none) or the
/// `room` the series budget leaves it, whichever is lower (the target's own when
/// equal), and whether it is the budget's.
fn sample_limit(own: usize, room: Option<usize>) -> (Option<usize>, bool) {
    let own = (own > 0).then_some(own);
    match (own, room) {
        (Some(own), Some(room)) if room < own => (Some(room), true),
        (Some(own), _) => (Some(own), false),
        (None, room) => (room, room.is_some()),
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Ticks at `target`'s offset in every interval, by the wall clock: the first tick
/// is the next time the clock is at the offset modulo the interval.
fn schedule(target: &Target, seed: u64) -> tokio::time::Interval {
    let interval = target.interval.max(Duration::from_millis(1));
    let interval_ns = interval.as_nanos();
    let offset_ns = target.offset(seed).as_nanos();
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        % interval_ns;
    let delay = (offset_ns + interval_ns - now_ns) % interval_ns;
    let delay = Duration::from_nanos(u64::try_from(delay).unwrap_or(0));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + delay, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    ticks
}

/// The target's place in `scrape_targets{state}`; left when the loop ends.
struct Counted {
    up: Gauge,
    down: Gauge,
    now: Option<Health>,
}

impl Counted {
    fn new(m: &ScrapeMetrics) -> Self {
        let mut c = Counted {
            up: m.targets_in(Health::Up),
            down: m.targets_in(Health::Down),
            now: None,
        };
        c.set(Some(Health::Up));
        c
    }

    fn gauge(&self, h: Health) -> &Gauge {
        match h {
            Health::Up => &self.up,
            Health::Down => &self.down,
        }
    }

    fn set(&mut self, h: Option<Health>) {
        if let Some(old) = self.now {
            self.gauge(old).dec();
        }
        if let Some(new) = h {
            self.gauge(new).inc();
        }
        self.now = h;
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.set(None);
    }
}

/// What a loop keeps between scrapes.
struct State<'a> {
    cache: SeriesCache,
    /// How many series `cache` holds, counted in the agent-wide total.
    held: Held<'a>,
    buf: Vec<u8>,
    client: Client,
    logs: LogLimits,
    health: Counted,
    /// The health of the last scrape, kept while the target is not counted.
    last: Health,
    /// How long the last body took to process (on the blocking pool: the hand-over
    /// included).
    last_processing: Option<Duration>,
}

/// Runs `target`'s loop until `updates` says it is gone (then its end-of-run
/// staleness markers) or `shutdown` (at once, no markers: the agent is stopping).
pub async fn run(
    target: Arc<Target>,
    shared: Arc<Shared>,
    mut updates: watch::Receiver<Option<Arc<Target>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _alive = Alive::new(&shared.running);
    let mut first = FirstScrape(Some(&shared));
    let mut t = target;
    let report = Report::new(&t.labels);
    let mut ticks = schedule(&t, shared.seed);
    let mut st = State {
        cache: SeriesCache::default(),
        held: Held {
            total: &shared.series,
            n: 0,
        },
        buf: Vec::new(),
        client: Client::default(),
        logs: LogLimits::new(LOG_EVERY),
        health: Counted::new(&shared.metrics.scrape),
        last: Health::Up,
        last_processing: None,
    };
    let mut removed = false;
    tracing::debug!(target = %t.describe(), "scrape target added");
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            changed = updates.changed() => {
                if changed.is_err() {
                    return;
                }
                let next = updates.borrow_and_update().clone();
                match next {
                    None => {
                        removed = true;
                        st.health.set(None);
                    }
                    Some(new) => {
                        if removed {
                            removed = false;
                            st.health.set(Some(st.last));
                        }
                        if new.interval != t.interval {
                            ticks = schedule(&new, shared.seed);
                        }
                        t = new;
                    }
                }
            }
            _ = ticks.tick() => {
                if removed {
                    let now = now_ms();
                    let mut out = Vec::new();
                    st.cache.fail(now, &mut out);
                    report.push_stale(&mut out, now);
                    hand_on(&shared, out).await;
                    tracing::debug!(target = %t.describe(), "scrape target gone: its series are marked stale");
                    shared.wake_manager.notify_one();
                    return;
                }
                tokio::select! {
                    biased;
                    _ = shutdown.changed() => return,
                    // Boxed: between scrapes the loop's future is small (hundreds of
                    // targets wait at once), the scrape's state lives only while it runs.
                    () = Box::pin(scrape(&t, &shared, &report, &mut st)) => first.done(),
                }
            }
        }
    }
}

/// Why a scrape got no body.
struct Failure {
    outcome: Outcome,
    message: String,
}

/// One scrape, its samples handed on and counted.
async fn scrape(t: &Arc<Target>, shared: &Arc<Shared>, report: &Report, st: &mut State<'_>) {
    let start_ms = now_ms();
    let started = Instant::now();
    let mut buf = std::mem::take(&mut st.buf);
    // The body's part of the budget, held until the body is processed.
    let mut share = shared.bodies.share();
    let fetched = fetch(t, shared, st, &mut share, &mut buf).await;
    if t.interval > IDLE_TIMEOUT && t.source.is_plain_http() {
        // Servers close connections idle that long; opening one costs little.
        st.client = Client::default();
    }
    let duration = started.elapsed().as_secs_f64();
    let m = &shared.metrics.scrape;
    m.duration.observe(duration);
    let cache = std::mem::take(&mut st.cache);
    // Whether the scrape's sample limit is the series budget's, not the target's.
    let mut by_budget = false;
    let (cache, buf, result) = match fetched {
        Ok(format) => {
            let inline = buf.len() <= INLINE_BODY_BYTES
                && st.last_processing.is_some_and(|d| d <= INLINE_WITHIN);
            let began = Instant::now();
            let (limit, budget) = sample_limit(t.sample_limit, st.held.room(shared.max_series));
            by_budget = budget;
            let run = Run {
                format,
                start_ms,
                inline,
                sample_limit: limit,
            };
            let r = process(t, shared, cache, buf, run).await;
            st.last_processing = Some(began.elapsed());
            r
        }
        Err(failure) => (cache, buf, Err(failure)),
    };
    st.cache = cache;
    if buf.capacity() <= KEEP_BUFFER_BYTES && t.interval <= KEEP_BUFFER_FOR {
        st.buf = buf;
    } else {
        drop(buf);
    }
    // The body is processed (its samples are built) and its buffer dropped or kept:
    // a kept one is at most KEEP_BUFFER_BYTES, of a target scraped often, and not
    // counted.
    drop(share);
    let mut values = ReportValues {
        duration_secs: duration,
        ..ReportValues::default()
    };
    let (outcome, mut samples) = match result {
        Ok(p) => {
            values.scraped = p.scraped;
            values.post_relabel = p.post_relabel;
            values.added = p.added;
            m.samples.inc_by(p.scraped as u64);
            for &(kind, n) in &p.errors.counts {
                m.parse_errors(kind, n);
            }
            if let Some((e, line)) = &p.errors.first
                && let Some(suppressed) = st.logs.allow("parse", Instant::now())
            {
                tracing::warn!(target = %t.describe(), lines = p.errors.total(), first_line = e.line, reason = %e.kind, line = %line, suppressed, "scraped lines skipped; the rest of the body is kept");
            }
            let over_budget = p.over_limit && by_budget;
            let outcome = if over_budget {
                // Held, its series would count against the room of the targets that
                // fit (and could push them out in turn): let them go. The markers of
                // its last successful scrape are among `p.samples`.
                st.cache = SeriesCache::default();
                Outcome::SeriesLimit
            } else if p.over_limit {
                Outcome::SampleLimit
            } else {
                values.up = true;
                Outcome::Ok
            };
            if over_budget && let Some(suppressed) = st.logs.allow("budget", Instant::now()) {
                tracing::warn!(target = %t.describe(), samples = p.post_relabel, max_series = shared.max_series, suppressed, "scrape failed: the targets' series would pass metrics.scrape.max_series");
            } else if p.over_limit
                && let Some(suppressed) = st.logs.allow("limit", Instant::now())
            {
                tracing::warn!(target = %t.describe(), samples = p.post_relabel, sample_limit = t.sample_limit, suppressed, "scrape failed: more samples than the sample limit");
            }
            (outcome, p.samples)
        }
        Err(f) => {
            if let Some(suppressed) = st.logs.allow(f.outcome.as_str(), Instant::now()) {
                tracing::warn!(target = %t.describe(), outcome = f.outcome.as_str(), error = %f.message, suppressed, "scrape failed");
            }
            let mut markers = Vec::new();
            st.cache.fail(start_ms, &mut markers);
            (f.outcome, markers)
        }
    };
    st.held.set(st.cache.len());
    m.scraped(outcome);
    // The target's state is counted before its samples can be seen.
    st.last = if values.up { Health::Up } else { Health::Down };
    st.health.set(Some(st.last));
    report.push(&mut samples, start_ms, values);
    hand_on(shared, samples).await;
}

/// Hands a scrape's samples to the destination: at once when they are few, on the
/// blocking pool when they are many ([`INLINE_PUSH_SAMPLES`]). The target's next scrape
/// waits for it either way, so its samples leave in the order it made them.
async fn hand_on(shared: &Arc<Shared>, samples: Vec<Sample>) {
    if samples.len() <= INLINE_PUSH_SAMPLES {
        shared.destination.push(samples);
        return;
    }
    let destination = Arc::clone(&shared.destination);
    let n = samples.len();
    if let Err(e) = tokio::task::spawn_blocking(move || destination.push(samples)).await {
        // A panic in the destination, or the runtime shutting down.
        tracing::error!(samples = n, error = %e, "scraped samples could not be handed on; they are lost");
    }
}

/// The body of one scrape into `buf`, within the target's timeout and limit.
async fn fetch(
    t: &Target,
    shared: &Shared,
    st: &mut State<'_>,
    share: &mut Share<'_>,
    buf: &mut Vec<u8>,
) -> Result<Format, Failure> {
    let failure = |outcome, message| Failure { outcome, message };
    match &t.source {
        Source::Registry => {
            let text = shared.metrics.encode();
            if text.len() > t.body_limit {
                return Err(failure(
                    Outcome::BodyTooLarge,
                    format!("{} bytes", text.len()),
                ));
            }
            buf.clear();
            buf.extend_from_slice(text.as_bytes());
            Ok(Format::OpenMetrics)
        }
        Source::File(path) => read_file(path, t.body_limit, buf)
            .await
            .map(|()| Format::Text)
            .map_err(|(outcome, message)| failure(outcome, message)),
        Source::Http { url, auth } => {
            let fetched = tokio::time::timeout(
                t.timeout,
                st.client
                    .fetch(url, auth, t.timeout, t.body_limit, share, buf),
            )
            .await;
            let r = match fetched {
                Ok(Ok(format)) => return Ok(format),
                Err(_) => failure(
                    Outcome::Timeout,
                    format!("no answer within {:?}", t.timeout),
                ),
                Ok(Err(FetchError::TooLarge)) => failure(
                    Outcome::BodyTooLarge,
                    format!("the body passes body_limit_bytes ({})", t.body_limit),
                ),
                Ok(Err(FetchError::OverBudget)) => failure(
                    Outcome::BodyBudget,
                    format!(
                        "the bodies being scraped at once would pass \
                         metrics.scrape.max_body_bytes_in_flight ({}: this one had {} bytes, \
                         all {} bytes)",
                        shared.bodies.max(),
                        buf.len(),
                        shared.bodies.used()
                    ),
                ),
                Ok(Err(FetchError::Failed(m))) => failure(Outcome::Error, m),
            };
            // A connection that failed, timed out or was left mid-body is not reused.
            st.client = Client::default();
            Err(r)
        }
    }
}

/// A file target's body into `buf`: at most `limit` bytes are read, one more fails
/// the scrape (`body_too_large`), as over HTTP.
async fn read_file(
    path: &std::path::Path,
    limit: usize,
    buf: &mut Vec<u8>,
) -> Result<(), (Outcome, String)> {
    use tokio::io::AsyncReadExt as _;
    let failed = |e: std::io::Error| (Outcome::Error, format!("{}: {e}", path.display()));
    let file = tokio::fs::File::open(path).await.map_err(failed)?;
    buf.clear();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap).read_to_end(buf).await.map_err(failed)?;
    if buf.len() > limit {
        buf.clear();
        return Err((
            Outcome::BodyTooLarge,
            format!("{} passes body_limit_bytes ({limit})", path.display()),
        ));
    }
    Ok(())
}

/// How to process one body.
struct Run {
    format: Format,
    /// The scrape's start, ms since the epoch.
    start_ms: i64,
    /// On the loop's thread, not the blocking pool.
    inline: bool,
    /// The target's sample limit or the series budget's room ([`sample_limit`]).
    sample_limit: Option<usize>,
}

/// Parses and labels a body, on the blocking pool unless `run.inline`; gives back
/// the cache and buffer.
async fn process(
    t: &Arc<Target>,
    shared: &Arc<Shared>,
    mut cache: SeriesCache,
    buf: Vec<u8>,
    run: Run,
) -> (SeriesCache, Vec<u8>, Result<Processed, Failure>) {
    let Run {
        format,
        start_ms,
        inline,
        sample_limit,
    } = run;
    let target = Arc::clone(t);
    let relabel = shared.relabel.of(t.rules);
    let limits = shared.limits;
    let work = move || {
        let input = Input {
            format,
            timestamp_ms: start_ms,
            target_labels: &target.labels,
            relabel: &relabel,
            sample_limit,
            limits,
        };
        let p = cache.process(&buf, &input);
        (cache, buf, p)
    };
    // A panic while processing costs this target its cache (it starts afresh), never
    // its loop: inline it is caught here, on the pool by the join.
    let done = if inline {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|payload| {
            payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned())
        })
    } else {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| e.to_string())
    };
    match done {
        Ok((cache, buf, p)) => (cache, buf, Ok(p)),
        Err(e) => (
            SeriesCache::default(),
            Vec::new(),
            Err(Failure {
                outcome: Outcome::Error,
                message: format!("processing the body: {e}"),
            }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_series_room_fails_the_scrape_as_a_sample_limit_and_says_so() {
        let run = |own: usize, room: usize| {
            let (limit, budget) = sample_limit(own, Some(room));
            let p = SeriesCache::default().process(
                b"a 1\nb 2\nc 3\nd 4\n",
                &Input {
                    format: Format::Text,
                    timestamp_ms: 1000,
                    target_labels: &[],
                    relabel: &[],
                    sample_limit: limit,
                    limits: Limits::DEFAULT,
                },
            );
            let over_budget = p.over_limit && budget;
            (p, over_budget)
        };
        let (p, over_budget) = run(0, 3);
        assert!(p.over_limit && over_budget);
        assert_eq!((p.scraped, p.samples.len()), (4, 0), "counted, no sample");
        let (p, over_budget) = run(2, 3);
        assert!(p.over_limit && !over_budget, "the target's own limit first");
        let (p, over_budget) = run(0, 4);
        assert!(!p.over_limit && !over_budget, "room for exactly all");
        assert_eq!(p.samples.len(), 4);
        let (_, over_budget) = run(0, 0);
        assert!(over_budget, "no room at all");
        assert_eq!(sample_limit(0, None), (None, false), "no limit at all");
        assert_eq!(
            sample_limit(5, Some(5)),
            (Some(5), false),
            "equal: the target's"
        );
    }

    #[test]
    fn held_series_add_up_and_leave_room_for_the_others() {
        let total = AtomicUsize::new(0);
        let mut a = Held {
            total: &total,
            n: 0,
        };
        let mut b = Held {
            total: &total,
            n: 0,
        };
        assert_eq!(a.room(0), None, "no budget");
        a.set(600);
        b.set(300);
        assert_eq!(total.load(Ordering::Relaxed), 900);
        assert_eq!(
            a.room(1000),
            Some(700),
            "a's own series do not count against it"
        );
        assert_eq!(b.room(1000), Some(400));
        assert_eq!(b.room(500), Some(0));
        a.set(100);
        assert_eq!(b.room(1000), Some(900));
        drop(a);
        assert_eq!(
            total.load(Ordering::Relaxed),
            300,
            "a loop's end gives its share back"
        );
        drop(b);
        assert_eq!(total.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_file_target_is_read_up_to_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.prom");
        std::fs::write(&path, "a 1\n".repeat(500)).unwrap();
        let mut buf = vec![b'x'; 10];
        read_file(&path, 2000, &mut buf).await.unwrap();
        assert_eq!(buf.len(), 2000, "the whole file, nothing left of before");
        assert!(buf.starts_with(b"a 1\n"));

        let err = read_file(&path, 1999, &mut buf).await.unwrap_err();
        assert_eq!(err.0, Outcome::BodyTooLarge);
        assert!(buf.is_empty(), "nothing of a body past its limit is kept");

        let err = read_file(&dir.path().join("gone"), 2000, &mut buf)
            .await
            .unwrap_err();
        assert_eq!(err.0, Outcome::Error);
        assert!(err.1.contains("gone"), "{}", err.1);
    }
}
