//! Pod metadata from the Kubernetes API: one node-scoped watch feeding a cache that
//! several subscribers read (the log pipeline, the metrics pipeline's scrape target
//! discovery).
//!
//! * [`Pods`]: the client and the subscribers; each says which labels and
//!   annotations it needs kept and what to run when the cache changes; the watch
//!   keeps what any of them needs and starts once they are all there.
//! * [`watch`]: the client (service account or kubeconfig) and the watches of
//!   this node's pods and, optionally, of namespaces.
//! * [`cache`]: pods by UID, deleted ones kept for a grace period, a generation
//!   counter that tells readers when to look again.
//! * [`meta`]: what is kept of a pod, and its `kubeship.io/*` controls.
//!
//! No per-pod GETs and no per-line API calls: the tailer looks a container up
//! when it first sees it and again only when the cache's generation moved.

pub mod cache;
pub mod meta;
pub mod metrics;
pub mod watch;

pub use cache::{Labels, PodCache};
pub use meta::{ContainerMeta, PodMeta};

use std::sync::Arc;

use crate::config::Config;
use crate::telemetry::Metrics;

/// What a subscriber of the pod cache needs of each pod.
pub struct Subscription {
    /// Keep the pods' labels.
    pub labels: bool,
    /// Annotation keys to keep (`kubeship.io/*` controls are always kept).
    pub annotation: Box<dyn Fn(&str) -> bool + Send + Sync>,
    /// Runs after every change of the cache (wakes the subscriber).
    pub on_change: Box<dyn Fn() + Send + Sync>,
}

/// The pod watch before it starts, collecting its subscribers.
pub struct Pods {
    client: ::kube::Client,
    cfg: Arc<Config>,
    cache: Arc<PodCache>,
    subscribers: Vec<Subscription>,
}

impl Pods {
    /// The API client, from the service account or the kubeconfig (a bad one stops
    /// the start, with the reason); `None` when pod metadata is off.
    pub fn connect(
        rt: &tokio::runtime::Runtime,
        cfg: &Arc<Config>,
    ) -> anyhow::Result<Option<Pods>> {
        let Some(source) = &cfg.kubernetes.source else {
            tracing::info!(
                "pod metadata off (no service account, no kubernetes.kubeconfig, or kubernetes.enabled: false): records carry what the log path tells"
            );
            return Ok(None);
        };
        let client = rt.block_on(watch::client(source))?;
        Ok(Some(Pods {
            client,
            cfg: Arc::clone(cfg),
            cache: Arc::new(PodCache::new(Box::new(|| {}))),
            subscribers: Vec::new(),
        }))
    }

    /// Adds a subscriber; returns the cache it reads.
    pub fn subscribe(&mut self, s: Subscription) -> Arc<PodCache> {
        self.subscribers.push(s);
        Arc::clone(&self.cache)
    }

    /// Starts the watch on `rt`, keeping what any subscriber needs.
    pub fn start(self, rt: &tokio::runtime::Handle, metrics: &Arc<Metrics>) {
        let Pods {
            client,
            cfg,
            cache,
            subscribers,
        } = self;
        let labels = subscribers.iter().any(|s| s.labels);
        let (keeps, wakes): (Vec<_>, Vec<_>) = subscribers
            .into_iter()
            .map(|s| (s.annotation, s.on_change))
            .unzip();
        cache.set_on_change(Box::new(move || wakes.iter().for_each(|w| w())));
        let keep = watch::KeepRules {
            labels,
            annotation: Box::new(move |key| keeps.iter().any(|k| k(key))),
        };
        tracing::info!(node = %cfg.node_name, namespace_labels = cfg.kubernetes.namespace_labels, "watching this node's pods for metadata");
        rt.spawn(watch::run(
            client,
            cfg.node_name.clone(),
            cfg.kubernetes.clone(),
            keep,
            cache,
            Arc::clone(metrics),
        ));
    }
}
