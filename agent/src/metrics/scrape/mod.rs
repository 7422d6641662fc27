//! The scraping half of the metrics pipeline: find the node's targets, scrape each at
//! its interval, label the samples and hand them to a [`Destination`].
//!
//! ```text
//! pod cache ─┐
//! config ────┴▶ discover ─▶ targets ─▶ one loop per target: fetch ─▶ parse ─▶ label
//!                                        ─▶ relabel ─▶ staleness ─▶ Destination
//! ```
//!
//! [`start`] subscribes to the shared pod cache (no watch of its own: the annotations
//! it reads are kept by the one pod watch) and spawns a manager task on the runtime.
//! The manager recomputes the targets ([`discover`]) whenever the cache changes and
//! runs one task per target ([`runner`]): targets appear as soon as their pod is
//! seen Running, change in place when only their settings change, and leave with
//! staleness markers at what would have been their next scrape. [`Handle::stop`]
//! ends every loop at once.
//!
//! Tasks: one manager plus one per target, whatever the samples; a scrape holds its
//! target's buffer (at most its body limit) and series cache, nothing else grows.
//! The agent's own metrics are read from its registry, not over HTTP.

pub mod discover;
pub mod http;
pub mod metrics;
pub mod process;
pub mod runner;
pub mod target;
#[cfg(test)]
mod testserver;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use kubeship_parsers::prom::Limits;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, PodRef, ScrapeConfig};
use crate::kube::{PodCache, Pods, Subscription};
use crate::metrics::series::Destination;
use crate::telemetry::Metrics;
use runner::Shared;
use target::Target;

/// What the scrapes take from the agent's shared services.
pub struct Context<'a> {
    /// The configuration (`metrics.scrape`, the node's name, the agent's pod).
    pub cfg: &'a Arc<Config>,
    /// Self-metrics, and the registry the agent's own target reads.
    pub metrics: &'a Arc<Metrics>,
    /// The runtime the loops run on.
    pub rt: &'a tokio::runtime::Handle,
}

/// The running scrapes.
pub struct Handle {
    shutdown: watch::Sender<bool>,
    manager: JoinHandle<Vec<JoinHandle<()>>>,
    rt: tokio::runtime::Handle,
    shared: Arc<Shared>,
}

/// Starts scraping the targets of `cfg.metrics.scrape` into `destination`; `pods`
/// (pod metadata on) gets its subscription before its watch starts. `None` when the
/// metrics pipeline is off (no `metrics:` section).
pub fn start(
    cx: &Context<'_>,
    pods: Option<&mut Pods>,
    destination: Arc<dyn Destination>,
) -> Option<Handle> {
    let Context { cfg, metrics, rt } = *cx;
    let scrape = cfg.metrics.as_ref()?.scrape.clone();
    let wake = Arc::new(Notify::new());
    let cache = match (scrape.pods.enabled, pods) {
        (true, Some(pods)) => {
            let w = Arc::clone(&wake);
            Some(pods.subscribe(Subscription {
                labels: !scrape.pods.labels.is_empty(),
                annotation: Box::new(discover::reads_annotation),
                on_change: Box::new(move || w.notify_one()),
            }))
        }
        (true, None) => {
            tracing::info!(
                "no pod metadata: annotated pods are not scraped (kubelet, static and own targets are)"
            );
            None
        }
        (false, _) => None,
    };
    tracing::info!("scraping metrics");
    Some(spawn(
        Setup {
            scrape,
            node: cfg.node_name.clone(),
            self_pod: cfg.logs.exclude_self.clone(),
            cache,
            wake,
            metrics: Arc::clone(metrics),
            destination,
        },
        rt,
    ))
}

/// What the manager of the loops is made of.
struct Setup {
    scrape: ScrapeConfig,
    /// The node's name (`node` label, offset seed).
    node: String,
    /// The agent's own pod (its target's labels; not scraped over HTTP).
    self_pod: Option<PodRef>,
    /// This node's pods, when pod targets are discovered.
    cache: Option<Arc<PodCache>>,
    /// Wakes the manager (the cache changed, a loop ended).
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    destination: Arc<dyn Destination>,
}

/// Spawns the manager of the loops on `rt`.
fn spawn(setup: Setup, rt: &tokio::runtime::Handle) -> Handle {
    let Setup {
        scrape,
        node,
        self_pod,
        cache,
        wake,
        metrics,
        destination,
    } = setup;
    let shared = Arc::new(Shared {
        metrics,
        destination,
        relabel: runner::RuleSets::new(&scrape),
        seed: target::fnv1a(node.as_bytes()),
        limits: Limits::DEFAULT,
        wake_manager: Arc::clone(&wake),
        running: AtomicUsize::new(0),
        unscraped: AtomicUsize::new(1),
        progress: Notify::new(),
        series: AtomicUsize::new(0),
        max_series: scrape.max_series,
        bodies: http::BodyBudget::new(scrape.max_body_bytes_in_flight),
    });
    let (shutdown, stopping) = watch::channel(false);
    let manager = Manager {
        scrape,
        node,
        self_pod,
        cache,
        shared: Arc::clone(&shared),
        wake,
        stopping,
        loops: HashMap::new(),
        problems: HashSet::new(),
    };
    Handle {
        shutdown,
        manager: rt.spawn(manager.run()),
        rt: rt.clone(),
        shared,
    }
}

impl Handle {
    /// Stops every loop (no staleness markers: the agent is stopping) and waits for
    /// them until `deadline`.
    pub async fn stop(self, deadline: Instant) {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::from_std(deadline);
        let Ok(Ok(loops)) = tokio::time::timeout_at(deadline, self.manager).await else {
            return;
        };
        for l in loops {
            let _ = tokio::time::timeout_at(deadline, l).await;
        }
    }

    /// Returns once every target found at start has been scraped once (successfully
    /// or not): what `kubeship run --exit-on-eof` waits for besides the logs.
    pub async fn scraped_once(&self) {
        loop {
            let progress = self.shared.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if self
                .shared
                .unscraped
                .load(std::sync::atomic::Ordering::SeqCst)
                == 0
            {
                return;
            }
            progress.await;
        }
    }

    /// Target loops running (those ending with their staleness markers included).
    #[cfg(test)]
    pub fn loops(&self) -> usize {
        self.shared
            .running
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// [`Handle::stop`], from outside the runtime.
    pub fn shutdown(self, deadline: Instant) {
        let rt = self.rt.clone();
        rt.block_on(self.stop(deadline));
    }
}

/// A target's loop, as the manager sees it.
struct Running {
    updates: watch::Sender<Option<Arc<Target>>>,
    task: JoinHandle<()>,
    current: Arc<Target>,
    removed: bool,
}

/// Keeps one loop per discovered target.
struct Manager {
    scrape: ScrapeConfig,
    node: String,
    self_pod: Option<PodRef>,
    cache: Option<Arc<PodCache>>,
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    stopping: watch::Receiver<bool>,
    loops: HashMap<u64, Running>,
    /// Annotation problems logged, so that each is logged once while it lasts.
    problems: HashSet<(String, String)>,
}

impl Manager {
    async fn run(mut self) -> Vec<JoinHandle<()>> {
        self.reconcile();
        // The targets found at start are counted: the first discovery is done.
        self.shared.scraped();
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                _ = self.stopping.changed() => break,
            }
            self.reconcile();
        }
        self.loops.into_values().map(|r| r.task).collect()
    }

    /// Starts, updates and retires loops to match the targets discovered now.
    fn reconcile(&mut self) {
        let pods = self
            .cache
            .as_ref()
            .map(|c| c.live_pods())
            .unwrap_or_default();
        let mut problems = Vec::new();
        let desired = discover::all(
            &self.scrape,
            &self.node,
            self.self_pod.as_ref(),
            &pods,
            &mut problems,
        );
        let now: HashSet<(String, String)> = problems.into_iter().collect();
        for (pod, message) in now.difference(&self.problems) {
            tracing::warn!(%pod, "pod annotation: {message}");
        }
        self.problems = now;
        let mut wanted = HashSet::new();
        for t in desired {
            let id = t.identity();
            if !wanted.insert(id) {
                continue;
            }
            match self.loops.get_mut(&id) {
                Some(r) if !r.task.is_finished() => {
                    if r.removed || *r.current != t {
                        r.current = Arc::new(t);
                        r.removed = false;
                        r.updates.send_replace(Some(Arc::clone(&r.current)));
                    }
                }
                _ => {
                    self.shared
                        .unscraped
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let t = Arc::new(t);
                    let (updates, rx) = watch::channel(Some(Arc::clone(&t)));
                    let task = tokio::spawn(runner::run(
                        Arc::clone(&t),
                        Arc::clone(&self.shared),
                        rx,
                        self.stopping.clone(),
                    ));
                    self.loops.insert(
                        id,
                        Running {
                            updates,
                            task,
                            current: t,
                            removed: false,
                        },
                    );
                }
            }
        }
        for (id, r) in &mut self.loops {
            if !wanted.contains(id) && !r.removed {
                r.removed = true;
                r.updates.send_replace(None);
            }
        }
        self.loops
            .retain(|_, r| !(r.removed && r.task.is_finished()));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::kube::meta::ContainerPort;
    use crate::kube::{ContainerMeta, PodMeta};
    use crate::metrics::series::{Sample, is_stale};
    use crate::metrics::testing::Collect;
    use testserver::{Reply, TestServer};

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const WAIT: Duration = Duration::from_secs(10);

    /// Scrapes every 200 ms, only what `extra` adds (no kubelet, no self).
    fn config(extra: &str) -> ScrapeConfig {
        let text = format!(
            "cluster: c\nmetrics:\n  scrape:\n    kubelet: {{enabled: false}}\n    self_metrics: false\n{extra}"
        );
        let mut s = crate::config::load_str(&text, Path::new("/k.yaml"), &|_| None)
            .unwrap_or_else(|e| panic!("{e}"))
            .metrics
            .unwrap()
            .scrape;
        s.interval = Duration::from_millis(200);
        s.timeout = Duration::from_millis(200);
        s
    }

    struct Running {
        handle: Handle,
        dest: Arc<Collect>,
        cache: Arc<PodCache>,
        metrics: Arc<Metrics>,
    }

    fn run(scrape: ScrapeConfig) -> Running {
        let wake = Arc::new(Notify::new());
        let w = Arc::clone(&wake);
        let cache = Arc::new(PodCache::new(Box::new(move || w.notify_one())));
        let dest = Arc::new(Collect::default());
        let metrics = Arc::new(Metrics::new());
        let handle = spawn(
            Setup {
                scrape,
                node: "node-1".into(),
                self_pod: None,
                cache: Some(Arc::clone(&cache)),
                wake,
                metrics: Arc::clone(&metrics),
                destination: Arc::clone(&dest) as Arc<dyn Destination>,
            },
            &tokio::runtime::Handle::current(),
        );
        Running {
            handle,
            dest,
            cache,
            metrics,
        }
    }

    fn pod(name: &str, port: u16, annotated: bool) -> PodMeta {
        let mut annotations = BTreeMap::new();
        if annotated {
            annotations.insert("prometheus.io/scrape".to_string(), "true".to_string());
        }
        PodMeta {
            uid: format!("uid-{name}"),
            name: name.into(),
            namespace: "shop".into(),
            pod_ip: "127.0.0.1".into(),
            phase: "Running".into(),
            annotations,
            containers: vec![ContainerMeta {
                name: "app".into(),
                ports: vec![ContainerPort {
                    name: "http-metrics".into(),
                    port,
                }],
                ..ContainerMeta::default()
            }],
            ..PodMeta::default()
        }
    }

    /// The samples of all pushes named `name` whose label `key` is `value`.
    fn of<'a>(pushes: &'a [Vec<Sample>], name: &str, key: &str, value: &str) -> Vec<&'a Sample> {
        pushes
            .iter()
            .flatten()
            .filter(|s| s.series.name() == name && s.series.get(key) == Some(value))
            .collect()
    }

    /// The values of job `job`'s `up` series in `pushes`, in order.
    fn ups(pushes: &[Vec<Sample>], job: &str) -> Vec<f64> {
        of(pushes, "up", "job", job)
            .iter()
            .map(|s| s.value)
            .collect()
    }

    /// The value of `series` (as exposed: name and labels) in the exposition `text`.
    fn value_in(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    /// `kubeship_scrapes_total{outcome}` in `text`, 0 when absent.
    fn scrapes(text: &str, outcome: &str) -> f64 {
        let series = format!("kubeship_scrapes_total{{outcome=\"{outcome}\"}}");
        value_in(text, &series).unwrap_or(0.0)
    }

    fn gauge(m: &Metrics, state: &str) -> f64 {
        let text = m.encode();
        let series = format!("kubeship_scrape_targets{{state=\"{state}\"}}");
        value_in(&text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    async fn until(within: Duration, what: &str, cond: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        while !cond() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pod_target_is_scraped_while_it_runs_and_marked_stale_once_when_it_goes() {
        let s = TestServer::start(LOCAL, |_| {
            Reply::text("# TYPE m gauge\nm{code=\"200\"} 7\n")
        })
        .await;
        let r = run(config(""));
        let seen = std::time::Instant::now();
        r.cache.apply(pod("web-1", s.addr.port(), true));
        until(Duration::from_secs(1), "the target to appear", || {
            gauge(&r.metrics, "up") == 1.0
        })
        .await;
        assert!(seen.elapsed() < Duration::from_secs(1));
        let pushes = r
            .dest
            .wait_for(WAIT, |p| !of(p, "m", "pod", "web-1").is_empty())
            .await;
        let m = of(&pushes, "m", "pod", "web-1")[0];
        let labels: Vec<(String, String)> = m
            .series
            .labels()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let want: Vec<(String, String)> = [
            ("__name__", "m"),
            ("cluster", "c"),
            ("code", "200"),
            ("container", "app"),
            ("instance", &format!("127.0.0.1:{}", s.addr.port())),
            ("job", "kubernetes-pods"),
            ("namespace", "shop"),
            ("node", "node-1"),
            ("pod", "web-1"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        assert_eq!(labels, want);
        assert_eq!(m.value, 7.0);
        let up = of(&pushes, "up", "pod", "web-1");
        assert_eq!(up[0].value, 1.0);
        assert_eq!(up[0].timestamp_ms, m.timestamp_ms, "scrape start, both");

        // The pod goes: the target leaves the gauge at once, its loop ends at what
        // would have been its next scrape, after one marker per series.
        let gone = runner::now_ms();
        r.cache.delete("uid-web-1", std::time::Instant::now());
        until(WAIT, "the target to leave the gauge", || {
            gauge(&r.metrics, "up") == 0.0
        })
        .await;
        until(WAIT, "the loop to end", || r.handle.loops() == 0).await;
        let pushes = r.dest.pushes();
        for name in ["m", "up", "scrape_duration_seconds", "scrape_series_added"] {
            let markers: Vec<&Sample> = of(&pushes, name, "pod", "web-1")
                .into_iter()
                .filter(|s| is_stale(s.value))
                .collect();
            assert_eq!(markers.len(), 1, "{name}: one staleness marker");
            assert!(markers[0].timestamp_ms >= gone);
        }
        assert_eq!(gauge(&r.metrics, "down"), 0.0);
        r.handle.stop(std::time::Instant::now() + WAIT).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn removing_the_annotation_ends_the_target_and_a_new_pod_starts_one() {
        let s = TestServer::start(LOCAL, |_| Reply::text("m 1\n")).await;
        let r = run(config(""));
        r.cache.apply(pod("web-1", s.addr.port(), true));
        r.dest
            .wait_for(WAIT, |p| !of(p, "m", "pod", "web-1").is_empty())
            .await;
        r.cache.apply(pod("web-1", s.addr.port(), false));
        until(WAIT, "the loop to end", || r.handle.loops() == 0).await;
        let pushes = r.dest.pushes();
        let markers = of(&pushes, "m", "pod", "web-1")
            .into_iter()
            .filter(|s| is_stale(s.value))
            .count();
        assert_eq!(markers, 1);
        // Not Running: no target; Running again with the annotation: a new one.
        let mut pending = pod("web-2", s.addr.port(), true);
        pending.phase = "Pending".into();
        r.cache.apply(pending);
        assert_eq!(r.handle.loops(), 0);
        r.cache.apply(pod("web-2", s.addr.port(), true));
        r.dest
            .wait_for(WAIT, |p| !of(p, "m", "pod", "web-2").is_empty())
            .await;
        r.handle.stop(std::time::Instant::now() + WAIT).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hanging_target_does_not_delay_another() {
        let hang = TestServer::start(LOCAL, |_| Reply::Hang).await;
        let good = TestServer::start(LOCAL, |_| Reply::text("ok 1\n")).await;
        let mut cfg = config(&format!(
            "    static_targets:\n      - {{url: 'http://{}', job: hang}}\n      - {{url: 'http://{}', job: good}}\n",
            hang.addr, good.addr
        ));
        cfg.static_targets[0].interval = Some(Duration::from_secs(2));
        cfg.static_targets[0].timeout = Some(Duration::from_secs(2));
        cfg.static_targets[1].interval = Some(Duration::from_millis(50));
        let r = run(cfg);
        // The hanging target's first scrape is in flight (its request was read).
        until(WAIT, "the hanging scrape", || hang.requests() == 1).await;
        let asked = std::time::Instant::now();
        let pushes = r
            .dest
            .wait_for(WAIT, |p| of(p, "up", "job", "good").len() >= 10)
            .await;
        // Ten scrapes of the good target while the other hangs, each at its pace.
        let ups = of(&pushes, "up", "job", "good");
        assert!(ups.iter().all(|s| s.value == 1.0));
        let span = ups[9].timestamp_ms - ups[0].timestamp_ms;
        assert!(span < 1500, "ten scrapes 50 ms apart took {span} ms");
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "before the hang timed out"
        );
        assert!(of(&pushes, "up", "job", "hang").is_empty(), "still hanging");
        // Then the hang times out: up 0, counted.
        let pushes = r
            .dest
            .wait_for(WAIT, |p| !of(p, "up", "job", "hang").is_empty())
            .await;
        assert_eq!(of(&pushes, "up", "job", "hang")[0].value, 0.0);
        assert!(
            r.metrics
                .encode()
                .contains("kubeship_scrapes_total{outcome=\"timeout\"} 1"),
            "{}",
            r.metrics.encode()
        );
        r.handle.stop(std::time::Instant::now() + WAIT).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_static_targets_relabeling_follows_the_agent_wide_rules_for_it_alone() {
        let s = TestServer::start(LOCAL, |_| Reply::text("keep_me 1\ngo_gc 2\nsecret 3\n")).await;
        let a = s.addr;
        let mut cfg = config(&format!(
            "    metric_relabel_configs:\n      \
             - {{source_labels: [__name__], regex: 'go_.*', action: drop}}\n    \
             static_targets:\n      \
             - {{url: 'http://{a}/a', job: a, metric_relabel_configs: \
             [{{source_labels: [__name__], regex: secret, action: drop}}]}}\n      \
             - {{url: 'http://{a}/b', job: b}}\n"
        ));
        for t in &mut cfg.static_targets {
            t.interval = Some(Duration::from_millis(200));
        }
        let r = run(cfg);
        let pushes = r
            .dest
            .wait_for(WAIT, |p| {
                ["a", "b"].iter().all(|j| !of(p, "up", "job", j).is_empty())
            })
            .await;
        let names = |job: &str| -> Vec<String> {
            let mut n: Vec<String> = pushes
                .iter()
                .flatten()
                .filter(|s| s.series.get("job") == Some(job))
                .map(|s| s.series.name().to_owned())
                .filter(|n| !n.starts_with("scrape_") && n != "up")
                .collect();
            n.sort();
            n.dedup();
            n
        };
        assert_eq!(names("a"), ["keep_me"], "agent-wide, then its own rules");
        assert_eq!(names("b"), ["keep_me", "secret"], "agent-wide rules only");
        r.handle.stop(std::time::Instant::now() + WAIT).await;
    }

    /// One thread runs the loops: a push from any other came from the blocking pool.
    #[tokio::test(flavor = "current_thread")]
    async fn a_large_scrape_is_handed_on_from_the_blocking_pool_a_small_one_from_its_loop() {
        let many: String = (0..5000).map(|i| format!("m{{i=\"{i}\"}} 1\n")).collect();
        let s = TestServer::start(LOCAL, move |h| match h.path.as_str() {
            "/large" => Reply::text(&many),
            _ => Reply::text("m 1\n"),
        })
        .await;
        let a = s.addr;
        let mut cfg = config(&format!(
            "    static_targets:\n      \
             - {{url: 'http://{a}/large', job: large}}\n      \
             - {{url: 'http://{a}/small', job: small}}\n"
        ));
        for t in &mut cfg.static_targets {
            t.interval = Some(Duration::from_millis(200));
        }
        let r = run(cfg);
        r.dest
            .wait_for(WAIT, |p| {
                ["large", "small"]
                    .iter()
                    .all(|j| of(p, "up", "job", j).len() >= 2)
            })
            .await;
        let (pushes, threads) = (r.dest.pushes(), r.dest.threads());
        let here = std::thread::current().id();
        let from = |job: &str| -> Vec<bool> {
            pushes
                .iter()
                .zip(&threads)
                .filter(|(p, _)| p.iter().any(|s| s.series.get("job") == Some(job)))
                .map(|(p, &t)| {
                    if job == "large" {
                        assert_eq!(p.len(), 5000 + 5, "the samples and the target's five");
                    }
                    t == here
                })
                .collect()
        };
        let (large, small) = (from("large"), from("small"));
        assert!(large.len() >= 2 && small.len() >= 2, "{large:?} {small:?}");
        assert!(large.iter().all(|&on_loop| !on_loop), "large: {large:?}");
        assert!(small.iter().all(|&on_loop| on_loop), "small: {small:?}");
        r.handle.stop(std::time::Instant::now() + WAIT).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_series_budget_keeps_the_targets_that_fit_and_fails_the_rest() {
        let s = TestServer::start(LOCAL, |h| match h.path.as_str() {
            "/five" => Reply::text("a 1\nb 1\nc 1\nd 1\ne 1\n"),
            _ => Reply::text("x 1\ny 1\n"),
        })
        .await;
        let a = s.addr;
        // Room for one five-series target and the two-series one, not for both of
        // the five-series ones.
        let mut cfg = config(&format!(
            "    max_series: 8\n    static_targets:\n      \
             - {{url: 'http://{a}/five', job: one}}\n      \
             - {{url: 'http://{a}/five', job: two}}\n      \
             - {{url: 'http://{a}/two', job: small}}\n"
        ));
        for t in &mut cfg.static_targets {
            t.interval = Some(Duration::from_millis(200));
        }
        let r = run(cfg);
        let pushes = r
            .dest
            .wait_for(WAIT, |p| {
                ["one", "two", "small"].iter().all(|j| ups(p, j).len() >= 6)
            })
            .await;
        // Which five-series target comes first is up to their offsets (scraping at
        // once, both can pass in one round); from the third round on one keeps its
        // room and the other fails every scrape.
        let last = |job: &str| {
            let u = ups(&pushes, job);
            u[u.len() - 3..].to_vec()
        };
        let (one, two) = (last("one"), last("two"));
        assert!(
            (one.iter().all(|&v| v == 1.0) && two.iter().all(|&v| v == 0.0))
                || (one.iter().all(|&v| v == 0.0) && two.iter().all(|&v| v == 1.0)),
            "one: {one:?}, two: {two:?}"
        );
        assert!(
            last("small").iter().all(|&v| v == 1.0),
            "the small one fits"
        );
        let text = r.metrics.encode();
        assert!(scrapes(&text, "series_limit") >= 3.0, "{text}");
        r.handle.stop(std::time::Instant::now() + WAIT).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_held_in_flight_leaves_the_budget_to_the_bodies_that_fit() {
        const K: usize = 1024;
        let s = TestServer::start(LOCAL, |h| match h.path.as_str() {
            // 150 KiB of a body that never ends: its scrape holds 192 KiB (whole
            // steps of 64 KiB) until its timeout, longer than the test.
            "/slow" => Reply::Partial(150 * K),
            "/large" => Reply::text(&"x 1\n".repeat(25 * K)),
            _ => Reply::text("x 1\n"),
        })
        .await;
        let a = s.addr;
        let mut cfg = config(&format!(
            "    body_limit_bytes: {}\n    max_body_bytes_in_flight: {}\n    static_targets:\n      \
             - {{url: 'http://{a}/slow', job: slow}}\n      \
             - {{url: 'http://{a}/large', job: large}}\n      \
             - {{url: 'http://{a}/small', job: small}}\n",
            256 * K,
            256 * K
        ));
        // The slow one may find the large one in flight and fail at first (first
        // come, first kept); scraped at another interval, it soon finds the room
        // free, and then holds it.
        for t in &mut cfg.static_targets {
            let slow = t.job == "slow";
            t.interval = Some(Duration::from_millis(if slow { 130 } else { 200 }));
            t.timeout = Some(if slow {
                2 * WAIT
            } else {
                Duration::from_millis(200)
            });
        }
        let r = run(cfg);
        let pushes = r
            .dest
            .wait_for(WAIT, |p| {
                ups(p, "large").iter().filter(|&&v| v == 0.0).count() >= 2
                    && ups(p, "small").len() >= 4
            })
            .await;
        // 100 KiB (128 KiB taken) beside 192 KiB passes 256 KiB; 4 bytes (64 KiB
        // taken) do not, unless they meet the large body's first 64 KiB.
        let small = ups(&pushes, "small");
        let fit = small.iter().filter(|&&v| v == 1.0).count();
        assert!(fit * 2 > small.len(), "{small:?}");
        let text = r.metrics.encode();
        assert!(scrapes(&text, "body_budget") >= 2.0, "{text}");
        let stopping = std::time::Instant::now();
        r.handle.stop(stopping + WAIT).await;
        assert!(
            stopping.elapsed() < WAIT,
            "the held scrape ends with the loop"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_count_their_outcome_and_bad_lines_their_reason() {
        let s = TestServer::start(LOCAL, |h| match h.path.as_str() {
            "/big" => Reply::text(&"x 1\n".repeat(1000)),
            "/many" => Reply::text("a 1\nb 1\nc 1\n"),
            "/500" => Reply::Status(500),
            _ => Reply::text("good 1\nbad{ 1\nalso_good 2\n"),
        })
        .await;
        let a = s.addr;
        let mut cfg = config(&format!(
            "    body_limit_bytes: 1024\n    static_targets:\n      \
             - {{url: 'http://{a}/big', job: big}}\n      \
             - {{url: 'http://{a}/many', job: many, sample_limit: 2}}\n      \
             - {{url: 'http://{a}/500', job: err}}\n      \
             - {{url: 'http://{a}/bad', job: bad}}\n"
        ));
        for t in &mut cfg.static_targets {
            t.interval = Some(Duration::from_millis(200));
        }
        let r = run(cfg);
        let pushes = r
            .dest
            .wait_for(WAIT, |p| {
                ["big", "many", "err", "bad"]
                    .iter()
                    .all(|j| !of(p, "up", "job", j).is_empty())
            })
            .await;
        for (job, up) in [("big", 0.0), ("many", 0.0), ("err", 0.0), ("bad", 1.0)] {
            assert_eq!(of(&pushes, "up", "job", job)[0].value, up, "{job}");
        }
        let scraped = of(&pushes, "scrape_samples_scraped", "job", "many")[0].value;
        assert_eq!(scraped, 3.0);
        assert_eq!(
            of(&pushes, "also_good", "job", "bad")[0].value,
            2.0,
            "the rest is kept"
        );
        assert!(
            of(&pushes, "a", "job", "many").is_empty(),
            "a failed scrape hands on no sample"
        );
        let text = r.metrics.encode();
        for outcome in ["body_too_large", "sample_limit", "error", "ok"] {
            let v = scrapes(&text, outcome);
            assert!(v >= 1.0, "{outcome}: {v}\n{text}");
        }
        let bad = "kubeship_scrape_parse_errors_total{reason=\"bad_label_name\"}";
        assert!(value_in(&text, bad).unwrap_or(0.0) >= 1.0, "{text}");
        assert_eq!(gauge(&r.metrics, "down"), 3.0);
        assert_eq!(gauge(&r.metrics, "up"), 1.0);
        r.handle.stop(std::time::Instant::now() + WAIT).await;
        assert_eq!(
            gauge(&r.metrics, "down") + gauge(&r.metrics, "up"),
            0.0,
            "stopped"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_agent_forwards_its_own_metrics_from_its_registry() {
        let mut cfg = config("");
        cfg.self_metrics = true;
        let r = run(cfg);
        let pushes = r
            .dest
            .wait_for(WAIT, |p| {
                !of(p, "kubeship_build_info", "job", "kubeship").is_empty()
            })
            .await;
        let info = of(&pushes, "kubeship_build_info", "job", "kubeship")[0];
        assert_eq!(info.series.get("node"), Some("node-1"));
        assert_eq!(info.series.get("instance"), Some("node-1"));
        assert_eq!(of(&pushes, "up", "job", "kubeship")[0].value, 1.0);
        r.handle.stop(std::time::Instant::now() + WAIT).await;
    }
}
