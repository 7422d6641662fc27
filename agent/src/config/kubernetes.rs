//! `kubernetes:`: the pod metadata watch's settings and their checks.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawKubernetes, RawSwitch};
use super::validate::{Context, Problems, in_range, path};

/// Where the API client's settings come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeSource {
    /// The pod's service account (`KUBERNETES_SERVICE_HOST` and the mounted token).
    InCluster,
    /// `kubernetes.kubeconfig`: a kubeconfig file (development).
    Kubeconfig(PathBuf),
}

/// An annotation key the records carry: exact, or a prefix (`example.com/*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPattern {
    /// This key only.
    Exact(String),
    /// Every key starting with this.
    Prefix(String),
}

impl KeyPattern {
    /// Whether `key` is one this pattern names.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            KeyPattern::Exact(k) => k == key,
            KeyPattern::Prefix(p) => key.starts_with(p.as_str()),
        }
    }
}

/// `kubernetes:`: pod metadata from the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// Where the client comes from; `None` when metadata is off (`enabled: false`,
    /// or `auto` outside a cluster without a kubeconfig): records carry what the
    /// file path tells.
    pub source: Option<KubeSource>,
    /// `metadata_wait_ms`, default 2000 (0..=60000): how long a new container's
    /// lines wait for its pod to reach the cache before they ship with path metadata.
    pub metadata_wait: Duration,
    /// `deleted_pod_grace_secs`, default 300 (0..=86400): how long a deleted pod's
    /// metadata stays for its late lines.
    pub deleted_pod_grace: Duration,
    /// `labels`, default true: records carry the pod's labels.
    pub labels: bool,
    /// `annotations`, default none: the annotation keys records carry.
    pub annotations: Vec<KeyPattern>,
    /// `namespace_labels`, default false: watch namespaces, records carry their labels.
    pub namespace_labels: bool,
}

impl KubernetesConfig {
    /// Whether records carry the annotation `key`.
    pub fn keeps_annotation(&self, key: &str) -> bool {
        self.annotations.iter().any(|p| p.matches(key))
    }
}

/// Checks and converts the raw section, recording every problem.
pub(super) fn convert(
    raw: RawKubernetes,
    context: &Context<'_>,
    problems: &mut Problems<'_>,
) -> KubernetesConfig {
    let RawKubernetes {
        enabled,
        kubeconfig,
        metadata_wait_ms,
        deleted_pod_grace_secs,
        labels,
        annotations,
        namespace_labels,
    } = raw;
    let p = "kubernetes";
    let kubeconfig = kubeconfig.map(|k| path(&k, &format!("{p}.kubeconfig"), context, problems));
    let in_cluster = context.env_non_empty("KUBERNETES_SERVICE_HOST").is_some();
    let found = match (kubeconfig, in_cluster) {
        (Some(file), _) => Some(KubeSource::Kubeconfig(file)),
        (None, true) => Some(KubeSource::InCluster),
        (None, false) => None,
    };
    let source = match &enabled.value {
        RawSwitch::Bool(false) => None,
        RawSwitch::Word(w) if w == "auto" => found,
        RawSwitch::Bool(true) => {
            if found.is_none() {
                problems.at(
                    enabled.referenced,
                    &format!("{p}.enabled"),
                    "is true, but there is no service account (KUBERNETES_SERVICE_HOST is \
                     not set) and no `kubernetes.kubeconfig`",
                );
            }
            found
        }
        RawSwitch::Word(other) => {
            problems.at(
                enabled.referenced,
                &format!("{p}.enabled"),
                format!("must be true, false or `auto`, got `{other}`"),
            );
            None
        }
    };
    let annotations = annotations
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            let key = a.value.trim();
            let pattern = match key.strip_suffix('*') {
                Some(prefix) if !prefix.contains('*') => KeyPattern::Prefix(prefix.to_owned()),
                None if !key.is_empty() && !key.contains('*') => KeyPattern::Exact(key.to_owned()),
                _ => {
                    problems.at(
                        a.referenced,
                        &format!("{p}.annotations[{i}]"),
                        format!(
                            "`{}` is not an annotation key or a prefix ending in `*`",
                            a.value
                        ),
                    );
                    return None;
                }
            };
            Some(pattern)
        })
        .collect();
    KubernetesConfig {
        source,
        metadata_wait: Duration::from_millis(in_range(
            &metadata_wait_ms,
            &format!("{p}.metadata_wait_ms"),
            0..=60_000,
            problems,
        )),
        deleted_pod_grace: Duration::from_secs(in_range(
            &deleted_pod_grace_secs,
            &format!("{p}.deleted_pod_grace_secs"),
            0..=86_400,
            problems,
        )),
        labels: labels.value,
        annotations,
        namespace_labels: namespace_labels.value,
    }
}
