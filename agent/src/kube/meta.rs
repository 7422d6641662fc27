//! What the agent keeps of a pod: the few fields records, routing and scrape target
//! discovery need, taken out of the API object as soon as it arrives (managedFields,
//! spec details, conditions and unkept annotations are never cached), and the
//! `kubeship.io/*` annotations that control a pod's logs, parsed once.

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Included};

use k8s_openapi::api::core::v1::Pod;

/// Annotation: `"true"` excludes every container of the pod.
pub const EXCLUDE: &str = "kubeship.io/exclude";
/// Annotation: comma-separated container names to exclude.
pub const EXCLUDE_CONTAINERS: &str = "kubeship.io/exclude-containers";
/// Annotation prefix: `kubeship.io/parser[-<container>]`.
pub const PARSER: &str = "kubeship.io/parser";
/// Annotation prefix: `kubeship.io/multiline[-<container>]`.
pub const MULTILINE: &str = "kubeship.io/multiline";

/// One container of a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerMeta {
    /// Container name.
    pub name: String,
    /// Image as the runtime reports it (the spec's image before it started).
    pub image: String,
    /// The image's digest reference (`status.containerStatuses[].imageID`).
    pub image_id: String,
    /// Runtime container ID without its `containerd://` scheme; empty before start.
    pub container_id: String,
    /// The TCP ports it declares (`spec.containers[].ports`), for scrape targets.
    pub ports: Vec<ContainerPort>,
}

/// A TCP port a container declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerPort {
    /// `name`; empty when the port has none.
    pub name: String,
    /// `containerPort`.
    pub port: u16,
}

/// A pod's owning workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Deployment, StatefulSet, DaemonSet, Job, CronJob, ReplicaSet, or the
    /// owner's kind as given.
    pub kind: String,
    /// The workload's name.
    pub name: String,
}

/// How a pod's annotations ask for its logs to be handled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Controls {
    /// `kubeship.io/exclude: "true"`.
    pub exclude: bool,
    /// `kubeship.io/exclude-containers`.
    pub exclude_containers: Vec<String>,
    /// `kubeship.io/parser` (key `None`) and `kubeship.io/parser-<container>`.
    pub parser: BTreeMap<Option<String>, String>,
    /// `kubeship.io/multiline` (key `None`) and `kubeship.io/multiline-<container>`.
    pub multiline: BTreeMap<Option<String>, String>,
}

/// What the controls say for one container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerControls<'a> {
    /// Its lines are not shipped.
    pub excluded: bool,
    /// `json`, `logfmt` or `regex:<name>`, as written.
    pub parser: Option<&'a str>,
    /// `java`, `python`, `go` or a rule name, as written.
    pub multiline: Option<&'a str>,
}

impl Controls {
    fn from_annotations(annotations: &BTreeMap<String, String>) -> Self {
        let mut c = Controls::default();
        for (k, v) in
            annotations.range::<str, _>((Included("kubeship.io/"), Excluded("kubeship.io0")))
        {
            let v = v.trim();
            if k == EXCLUDE {
                c.exclude = v.eq_ignore_ascii_case("true");
            } else if k == EXCLUDE_CONTAINERS {
                c.exclude_containers = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
            } else if let Some(rest) = k.strip_prefix(PARSER) {
                if let Some(container) = scoped(rest) {
                    c.parser.insert(container, v.to_owned());
                }
            } else if let Some(rest) = k.strip_prefix(MULTILINE)
                && let Some(container) = scoped(rest)
            {
                c.multiline.insert(container, v.to_owned());
            }
        }
        c
    }

    /// The controls for container `name`: a container's own annotation wins over
    /// the pod's.
    pub fn for_container(&self, name: &str) -> ContainerControls<'_> {
        fn pick<'m>(m: &'m BTreeMap<Option<String>, String>, name: &str) -> Option<&'m str> {
            m.get(&Some(name.to_owned()))
                .or_else(|| m.get(&None))
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        }
        ContainerControls {
            excluded: self.exclude || self.exclude_containers.iter().any(|c| c == name),
            parser: pick(&self.parser, name),
            multiline: pick(&self.multiline, name),
        }
    }
}

/// `""` → the pod (`Some(None)`), `-<container>` → that container, else not ours.
fn scoped(rest: &str) -> Option<Option<String>> {
    match rest {
        "" => Some(None),
        _ => rest
            .strip_prefix('-')
            .filter(|c| !c.is_empty())
            .map(|c| Some(c.to_owned())),
    }
}

/// The cached form of a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodMeta {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `status.podIP`; empty until assigned.
    pub pod_ip: String,
    /// `status.phase` (`Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`);
    /// empty when the API server sent none.
    pub phase: String,
    /// Labels (empty when `kubernetes.labels` is off).
    pub labels: BTreeMap<String, String>,
    /// Annotations kept: the configured allow-list plus those routing reads.
    pub annotations: BTreeMap<String, String>,
    /// The owning workload, when there is a controller.
    pub workload: Option<Workload>,
    /// Regular, init and ephemeral containers.
    pub containers: Vec<ContainerMeta>,
    /// The `kubeship.io/*` annotations, parsed.
    pub controls: Controls,
}

/// What to keep of a pod.
pub struct Keep<'a> {
    /// Keep labels.
    pub labels: bool,
    /// Keep this annotation.
    pub annotation: &'a (dyn Fn(&str) -> bool + Send + Sync),
}

impl PodMeta {
    /// The container named `name`.
    pub fn container(&self, name: &str) -> Option<&ContainerMeta> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// Takes what the agent needs out of an API pod; `None` without a uid.
    pub fn from_pod(pod: &Pod, keep: &Keep<'_>) -> Option<PodMeta> {
        let m = &pod.metadata;
        let uid = m.uid.clone().filter(|u| !u.is_empty())?;
        let empty = BTreeMap::new();
        let all_annotations = m.annotations.as_ref().unwrap_or(&empty);
        let labels = match (&m.labels, keep.labels) {
            (Some(l), true) => l.clone(),
            _ => BTreeMap::new(),
        };
        let annotations = all_annotations
            .iter()
            .filter(|(k, _)| (keep.annotation)(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut containers = Vec::new();
        if let Some(spec) = &pod.spec {
            let specs = spec
                .init_containers
                .iter()
                .flatten()
                .chain(spec.containers.iter())
                .map(|c| (c.name.as_str(), c.image.as_deref(), tcp_ports(c)));
            let ephemeral = spec
                .ephemeral_containers
                .iter()
                .flatten()
                .map(|c| (c.name.as_str(), c.image.as_deref(), Vec::new()));
            for (name, image, ports) in specs.chain(ephemeral) {
                containers.push(ContainerMeta {
                    name: name.to_owned(),
                    image: image.unwrap_or_default().to_owned(),
                    ports,
                    ..Default::default()
                });
            }
        }
        let mut pod_ip = String::new();
        let mut phase = String::new();
        if let Some(status) = &pod.status {
            pod_ip = status.pod_ip.clone().unwrap_or_default();
            phase = status.phase.clone().unwrap_or_default();
            let statuses = status
                .init_container_statuses
                .iter()
                .flatten()
                .chain(status.container_statuses.iter().flatten())
                .chain(status.ephemeral_container_statuses.iter().flatten());
            for st in statuses {
                let c = match containers.iter_mut().find(|c| c.name == st.name) {
                    Some(c) => c,
                    None => {
                        containers.push(ContainerMeta {
                            name: st.name.clone(),
                            ..Default::default()
                        });
                        containers.last_mut().expect("just pushed")
                    }
                };
                if !st.image.is_empty() {
                    c.image = st.image.clone();
                }
                c.image_id = st.image_id.clone();
                c.container_id = st
                    .container_id
                    .as_deref()
                    .map(|id| id.split_once("://").map_or(id, |(_, id)| id))
                    .unwrap_or_default()
                    .to_owned();
            }
        }
        Some(PodMeta {
            uid,
            name: m.name.clone().unwrap_or_default(),
            namespace: m.namespace.clone().unwrap_or_default(),
            pod_ip,
            phase,
            workload: workload(pod),
            controls: Controls::from_annotations(all_annotations),
            labels,
            annotations,
            containers,
        })
    }
}

/// The TCP ports a container declares (a port without a protocol is TCP).
fn tcp_ports(c: &k8s_openapi::api::core::v1::Container) -> Vec<ContainerPort> {
    c.ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().is_none_or(|proto| proto == "TCP"))
        .filter_map(|p| {
            Some(ContainerPort {
                name: p.name.clone().unwrap_or_default(),
                port: u16::try_from(p.container_port).ok().filter(|&n| n > 0)?,
            })
        })
        .collect()
}

/// The pod's workload from its controller reference: a ReplicaSet whose name is
/// `<deployment>-<pod-template-hash>` is its Deployment; a Job named
/// `<cronjob>-<scheduled minute>` (digits only) is its CronJob.
fn workload(pod: &Pod) -> Option<Workload> {
    let owners = pod.metadata.owner_references.as_ref()?;
    let owner = owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or(owners.first())?;
    let (kind, name) = (owner.kind.as_str(), owner.name.as_str());
    let parent = |suffix_ok: &dyn Fn(&str) -> bool| {
        name.rsplit_once('-')
            .filter(|(base, suffix)| !base.is_empty() && suffix_ok(suffix))
            .map(|(base, _)| base.to_owned())
    };
    let found = match kind {
        "ReplicaSet" => {
            let hash = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("pod-template-hash"));
            parent(&|suffix| hash.is_some_and(|h| h == suffix)).map(|d| ("Deployment", d))
        }
        "Job" => parent(&|suffix| suffix.len() >= 8 && suffix.bytes().all(|b| b.is_ascii_digit()))
            .map(|c| ("CronJob", c)),
        _ => None,
    };
    let (kind, name) = found.unwrap_or((kind, name.to_owned()));
    Some(Workload {
        kind: kind.to_owned(),
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("a pod")
    }

    const KEEP_ALL: Keep<'static> = Keep {
        labels: true,
        annotation: &|_| true,
    };

    #[test]
    fn fields_come_from_spec_and_status() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "web-7d9f8-abcde", "namespace": "shop", "uid": "u-1",
                "labels": {"app": "web", "pod-template-hash": "7d9f8"},
                "annotations": {"a": "1", "kubeship.io/exclude-containers": "side, x"},
                "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-7d9f8", "uid": "rs", "controller": true}]},
            "spec": {"nodeName": "n1", "containers": [
                {"name": "app", "image": "nginx:1", "ports": [
                    {"name": "http", "containerPort": 8080},
                    {"name": "http-metrics", "containerPort": 9090, "protocol": "TCP"},
                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                    {"containerPort": 7070}]},
                {"name": "side", "image": "busybox"}],
                "initContainers": [{"name": "init", "image": "alpine"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.7", "containerStatuses": [
                {"name": "app", "image": "docker.io/library/nginx:1",
                 "imageID": "docker.io/library/nginx@sha256:abc",
                 "containerID": "containerd://0123", "ready": true, "restartCount": 0}]}
        }));
        let m = PodMeta::from_pod(&p, &KEEP_ALL).unwrap();
        assert_eq!(
            (m.uid.as_str(), m.name.as_str()),
            ("u-1", "web-7d9f8-abcde")
        );
        assert_eq!(m.pod_ip, "10.0.0.7");
        assert_eq!(m.phase, "Running");
        let app = m.container("app").unwrap();
        let port = |name: &str, port| ContainerPort {
            name: name.into(),
            port,
        };
        assert_eq!(
            app.ports,
            [
                port("http", 8080),
                port("http-metrics", 9090),
                port("", 7070)
            ],
            "TCP ports only"
        );
        assert!(m.container("side").unwrap().ports.is_empty());
        assert_eq!(app.image, "docker.io/library/nginx:1");
        assert_eq!(app.image_id, "docker.io/library/nginx@sha256:abc");
        assert_eq!(app.container_id, "0123");
        assert_eq!(m.container("side").unwrap().image, "busybox");
        assert_eq!(m.container("init").unwrap().image, "alpine");
        assert_eq!(
            m.workload,
            Some(Workload {
                kind: "Deployment".into(),
                name: "web".into()
            })
        );
        assert!(m.controls.for_container("side").excluded);
        assert!(!m.controls.for_container("app").excluded);
        assert_eq!(m.labels.len(), 2);
    }

    #[test]
    fn only_kept_annotations_are_cached() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "uid": "u",
                "labels": {"a": "b"},
                "annotations": {"keep.me/x": "1", "drop": "2", "kubeship.io/parser": "json"}}
        }));
        let keep = Keep {
            labels: false,
            annotation: &|k| k.starts_with("keep.me/"),
        };
        let m = PodMeta::from_pod(&p, &keep).unwrap();
        assert_eq!(m.annotations.keys().collect::<Vec<_>>(), ["keep.me/x"]);
        assert!(m.labels.is_empty());
        // Controls are read from every annotation, kept or not.
        assert_eq!(m.controls.for_container("c").parser, Some("json"));
    }

    #[test]
    fn a_pod_without_uid_is_not_cached() {
        let p = pod(serde_json::json!({"metadata": {"name": "p", "namespace": "n"}}));
        assert!(PodMeta::from_pod(&p, &KEEP_ALL).is_none());
    }

    #[test]
    fn workloads() {
        let owned = |kind: &str, name: &str, hash: Option<&str>| {
            let mut labels = serde_json::Map::new();
            if let Some(h) = hash {
                labels.insert("pod-template-hash".into(), h.into());
            }
            let p = pod(serde_json::json!({"metadata": {"name": "p", "uid": "u",
                "labels": labels,
                "ownerReferences": [{"apiVersion": "v1", "kind": kind, "name": name,
                    "uid": "o", "controller": true}]}}));
            workload(&p).map(|w| (w.kind, w.name))
        };
        let w = |k: &str, n: &str| Some((k.to_string(), n.to_string()));
        assert_eq!(
            owned("ReplicaSet", "api-5f6b", Some("5f6b")),
            w("Deployment", "api")
        );
        assert_eq!(
            owned("ReplicaSet", "api-5f6b", None),
            w("ReplicaSet", "api-5f6b")
        );
        assert_eq!(
            owned("ReplicaSet", "bare", Some("x")),
            w("ReplicaSet", "bare")
        );
        assert_eq!(owned("StatefulSet", "db", None), w("StatefulSet", "db"));
        assert_eq!(owned("DaemonSet", "agent", None), w("DaemonSet", "agent"));
        assert_eq!(
            owned("Job", "backup-29012345", None),
            w("CronJob", "backup")
        );
        assert_eq!(owned("Job", "migrate-v2", None), w("Job", "migrate-v2"));
        assert_eq!(owned("Node", "ip-10-0-0-1", None), w("Node", "ip-10-0-0-1"));
        let bare = pod(serde_json::json!({"metadata": {"name": "p", "uid": "u"}}));
        assert_eq!(workload(&bare), None);
    }

    #[test]
    fn controls_per_container_win_over_the_pod() {
        let a: BTreeMap<String, String> = [
            ("kubeship.io/parser", "json"),
            ("kubeship.io/parser-proxy", "logfmt"),
            ("kubeship.io/multiline-app", "java"),
            ("kubeship.io/exclude", "TRUE"),
            ("kubeship.io/parser-", "ignored"),
            ("kubeship.io/parsers", "ignored"),
            ("other.io/parser", "ignored"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = Controls::from_annotations(&a);
        assert!(c.exclude);
        let app = c.for_container("app");
        assert_eq!((app.parser, app.multiline), (Some("json"), Some("java")));
        let proxy = c.for_container("proxy");
        assert_eq!((proxy.parser, proxy.multiline), (Some("logfmt"), None));
        assert!(proxy.excluded);
    }
}
