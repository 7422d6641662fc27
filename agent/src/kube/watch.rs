//! The API side: one client, one watch of this node's pods and, when namespace
//! labels are wanted, one of namespaces, feeding the [`PodCache`].
//!
//! kube-runtime's watcher does the protocol: an unpaged list served from the API
//! server's watch cache (`resourceVersion=0`, so a DaemonSet's restart does not
//! reach etcd once per node), then a watch from the list's resource version with
//! bookmarks, re-watching from the last version seen when the server ends the
//! watch, and relisting on 410 Gone. Errors back off exponentially (0.8 s to 30 s,
//! jittered) and are counted and logged (rate-limited); records keep flowing with
//! path metadata meanwhile. Pods are reduced to [`PodMeta`] as they arrive: nothing
//! else of the API object is kept.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::runtime::WatchStreamExt;
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

use super::cache::PodCache;
use super::meta::{Keep, PodMeta};
use super::metrics::Resource;
use crate::config::{KubeSource, KubernetesConfig};
use crate::net::backoff::Backoff;
use crate::telemetry::{LogLimits, Metrics};

/// How often deleted pods past their grace period are dropped.
const EXPIRE_EVERY: Duration = Duration::from_secs(5);

/// The backoff of a failing watch: 0.8 s doubling to 30 s, jittered, from the start
/// again after two quiet minutes (kube-runtime's defaults, with the agent's helper).
fn watch_backoff() -> ResetTimerBackoff<WatchBackoff> {
    ResetTimerBackoff::new(
        WatchBackoff(Backoff::new(
            Duration::from_millis(800),
            Duration::from_secs(30),
        )),
        Duration::from_secs(120),
    )
}

/// [`Backoff`] as kube-runtime's watch streams take it.
struct WatchBackoff(Backoff);

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.0.next()
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.0.reset();
    }
}

/// Builds the API client from the service account or the kubeconfig.
pub async fn client(source: &KubeSource) -> anyhow::Result<Client> {
    use anyhow::Context as _;
    let config = match source {
        KubeSource::InCluster => kube::Config::incluster()
            .context("reading the pod's service account (in-cluster config)")?,
        KubeSource::Kubeconfig(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("using kubeconfig {}", path.display()))?
        }
    };
    let mut config = config;
    // Retries are the watcher's backoff (bounded, counted, logged); the client's own
    // silent retry of 429/503/504 could stall a watch for minutes without a word.
    config.default_retry = false;
    if let Ok(agent) =
        http::HeaderValue::from_str(&format!("kubeship/{}", env!("CARGO_PKG_VERSION")))
    {
        config.headers.push((http::header::USER_AGENT, agent));
    }
    Client::try_from(config).context("building the Kubernetes API client")
}

/// What the pod watch keeps of each pod.
pub struct KeepRules {
    /// `kubernetes.labels`.
    pub labels: bool,
    /// Annotation keys kept: the records' allow-list and what routing reads.
    pub annotation: Box<dyn Fn(&str) -> bool + Send + Sync>,
}

/// Runs the watches until the task is dropped.
pub async fn run(
    client: Client,
    node: String,
    cfg: KubernetesConfig,
    keep: KeepRules,
    cache: Arc<PodCache>,
    metrics: Arc<Metrics>,
) {
    let pods = watch_pods(client.clone(), node, &cfg, keep, &cache, &metrics);
    if cfg.namespace_labels {
        tokio::join!(pods, watch_namespaces(client, &cache, &metrics));
    } else {
        pods.await;
    }
}

fn count_error(metrics: &Metrics, resource: Resource) {
    metrics.kube.watch_error(resource);
}

async fn watch_pods(
    client: Client,
    node: String,
    cfg: &KubernetesConfig,
    keep: KeepRules,
    cache: &PodCache,
    metrics: &Metrics,
) {
    let api: Api<Pod> = Api::all(client);
    let mut wc = watcher::Config::default()
        .fields(&format!("spec.nodeName={node}"))
        .any_semantic();
    // One node's pods fit one response; unpaged, `resourceVersion=0` lets the API
    // server answer from its watch cache instead of etcd (kube drops it when paging).
    wc.page_size = None;
    let mut events = watcher::watcher(api, wc).backoff(watch_backoff()).boxed();
    let keep = Keep {
        labels: keep.labels,
        annotation: &*keep.annotation,
    };
    let mut limits = LogLimits::default();
    let mut expire = tokio::time::interval(EXPIRE_EVERY);
    expire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        let ev = tokio::select! {
            ev = events.try_next() => ev,
            _ = expire.tick() => {
                let n = cache.expire(Instant::now(), cfg.deleted_pod_grace);
                metrics.kube.kube_pods_cached.set(n as i64);
                continue;
            }
        };
        let ev = match ev {
            Ok(Some(ev)) => ev,
            Ok(None) => return,
            Err(e) => {
                count_error(metrics, Resource::Pods);
                failing = true;
                if let Some(n) = limits.allow("pods", Instant::now()) {
                    tracing::warn!(error = %e, suppressed = n, "watching this node's pods failed; retrying with backoff, records carry path metadata for pods not yet seen");
                }
                continue;
            }
        };
        if failing {
            failing = false;
            tracing::info!("pod watch recovered");
        }
        match ev {
            Event::Init => cache.relist_start(),
            Event::InitApply(pod) | Event::Apply(pod) => {
                if let Some(meta) = PodMeta::from_pod(&pod, &keep) {
                    cache.apply(meta);
                }
            }
            Event::InitDone => {
                cache.relist_done(Instant::now());
                tracing::debug!(pods = cache.len(), "pod list complete");
            }
            Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    cache.delete(uid, Instant::now());
                }
            }
        }
        metrics.kube.kube_pods_cached.set(cache.len() as i64);
    }
}

async fn watch_namespaces(client: Client, cache: &PodCache, metrics: &Metrics) {
    let api: Api<Namespace> = Api::all(client);
    let mut wc = watcher::Config::default().any_semantic();
    wc.page_size = None;
    let mut events = watcher::watcher(api, wc).backoff(watch_backoff()).boxed();
    let mut limits = LogLimits::default();
    loop {
        let ev = match events.next().await {
            Some(Ok(ev)) => ev,
            None => return,
            Some(Err(e)) => {
                count_error(metrics, Resource::Namespaces);
                if let Some(n) = limits.allow("namespaces", Instant::now()) {
                    tracing::warn!(error = %e, suppressed = n, "watching namespaces failed; retrying with backoff");
                }
                continue;
            }
        };
        match ev {
            Event::Init => cache.ns_relist_start(),
            Event::InitApply(ns) | Event::Apply(ns) => {
                if let Some(name) = ns.metadata.name {
                    cache.apply_namespace(name, ns.metadata.labels.unwrap_or_default());
                }
            }
            Event::InitDone => cache.ns_relist_done(),
            Event::Delete(ns) => {
                if let Some(name) = ns.metadata.name.as_deref() {
                    cache.delete_namespace(name);
                }
            }
        }
    }
}
