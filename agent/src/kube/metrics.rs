//! The pod watch's metrics.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::telemetry::metrics::{CounterBy, label_values, register_by};

label_values! {
    /// A watched resource (`kube_watch_errors_total{resource}`).
    pub enum Resource {
        /// This node's pods.
        Pods => "pods",
        /// Namespaces (for their labels).
        Namespaces => "namespaces",
    }
}

/// The pod watch's metrics.
pub struct KubeMetrics {
    /// Pods in the metadata cache (deleted ones in their grace period included).
    pub kube_pods_cached: Gauge,
    /// Watch or list failures against the API server, by resource.
    pub kube_watch_errors: CounterBy<Resource>,
}

impl KubeMetrics {
    /// Creates the pod watch's metrics and registers them.
    pub fn register(r: &mut Registry) -> Self {
        let m = Self {
            kube_pods_cached: Gauge::default(),
            kube_watch_errors: CounterBy::default(),
        };
        r.register(
            "kube_pods_cached",
            "Pods in the metadata cache, deleted ones in their grace period included",
            m.kube_pods_cached.clone(),
        );
        register_by(
            r,
            "kube_watch_errors",
            "Kubernetes API list/watch failures, by resource",
            "resource",
            Resource::ALL,
            &m.kube_watch_errors,
        );
        m
    }

    /// Counts a list or watch failure.
    pub fn watch_error(&self, resource: Resource) {
        self.kube_watch_errors
            .get_or_create(&[("resource", resource)])
            .inc();
    }
}
