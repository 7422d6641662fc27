//! The objects the fake API server serves, as the real API server renders them: [`Pod`] (a
//! builder) and namespaces ([`namespace_json`]).
//!
//! Identifiers (uids, container ids, image digests, IPs) are derived deterministically from
//! the names, so a test's objects are the same on every run unless it sets them itself.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::{hex64, now_ms, rfc3339_ms};

/// FNV-1a of `s`, then [`hex64`]: 64 hex digits that depend on `s` only.
fn hex_of(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    hex64(h)
}

/// A version-4-shaped UUID derived from `seed`.
pub fn uid_for(seed: &str) -> String {
    let h = hex_of(seed);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// The digest-pinned image reference the kubelet reports as `imageID` for `image`:
/// `nginx:1.25` → `docker.io/library/nginx@sha256:<64 hex>`.
pub fn image_id_for(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    // A tag is a `:` after the last `/` (a `:` before it is a registry port).
    let repo = match without_digest.rfind(':') {
        Some(i) if !without_digest[i..].contains('/') => &without_digest[..i],
        _ => without_digest,
    };
    let first = repo.split('/').next().unwrap_or("");
    let full = if !repo.contains('/') {
        format!("docker.io/library/{repo}")
    } else if first.contains('.') || first.contains(':') || first == "localhost" {
        repo.to_string()
    } else {
        format!("docker.io/{repo}")
    };
    format!("{full}@sha256:{}", hex_of(image))
}

/// A containerd container id (`containerd://<64 hex>`) derived from `seed`.
pub fn container_id_for(seed: &str) -> String {
    format!("containerd://{}", hex_of(seed))
}

/// A Kubernetes timestamp (RFC 3339, whole seconds, `Z`) of Unix milliseconds `ms`.
pub fn kube_time(ms: i64) -> String {
    let t = rfc3339_ms(ms);
    format!("{}Z", &t[..19])
}

#[derive(Clone, Debug)]
struct ContainerSpec {
    name: String,
    image: String,
    image_id: String,
    container_id: String,
}

/// Builder of a Pod as the API server returns it (`serde_json::Value`, [`Pod::to_json`]).
///
/// ```
/// use kubeship_tests::Pod;
/// let pod = Pod::new("shop", "web-7d4b9c-x2x9q")
///     .node("node-1")
///     .ip("10.0.0.5")
///     .label("app", "web")
///     .owner("ReplicaSet", "web-7d4b9c")
///     .running_container("nginx", "nginx:1.25");
/// let v = pod.to_json();
/// assert_eq!(v["spec"]["nodeName"], "node-1");
/// assert_eq!(v["status"]["containerStatuses"][0]["name"], "nginx");
/// ```
///
/// Rendered like the real thing: `metadata` with `uid`, `creationTimestamp`, `labels`,
/// `annotations`, `ownerReferences` (`controller: true`) and bulky `managedFields` (which a
/// client that keeps pods in memory should strip); `spec.containers` and
/// `status.containerStatuses` (name, image, `imageID`, `containerID`); `status.podIP(s)`,
/// `hostIP(s)`, `phase`, `conditions`. A pod without [`Pod::node`] is unscheduled: `Pending`
/// with no container statuses and no IPs. `metadata.resourceVersion` is set by the server.
#[derive(Clone, Debug)]
pub struct Pod {
    namespace: String,
    name: String,
    uid: String,
    node: Option<String>,
    ip: Option<String>,
    phase: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    owner: Option<(String, String)>,
    containers: Vec<ContainerSpec>,
    init_containers: Vec<ContainerSpec>,
    created_ms: i64,
    terminating: bool,
    fields: Vec<(String, Option<Value>)>,
}

impl Pod {
    /// A pod `namespace/name` with a uid derived from the names, created now, unscheduled and
    /// without containers.
    pub fn new(namespace: &str, name: &str) -> Pod {
        Pod {
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid: uid_for(&format!("pod/{namespace}/{name}")),
            node: None,
            ip: None,
            phase: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            owner: None,
            containers: Vec::new(),
            init_containers: Vec::new(),
            created_ms: now_ms() / 1000 * 1000,
            terminating: false,
            fields: Vec::new(),
        }
    }

    pub fn uid(mut self, uid: &str) -> Pod {
        self.uid = uid.to_string();
        self
    }

    /// Scheduled on `node` (`spec.nodeName`): `Running` unless [`Pod::phase`] says otherwise.
    pub fn node(mut self, node: &str) -> Pod {
        self.node = Some(node.to_string());
        self
    }

    /// `status.podIP` and `status.podIPs` (default: derived from the uid, once scheduled).
    pub fn ip(mut self, ip: &str) -> Pod {
        self.ip = Some(ip.to_string());
        self
    }

    /// `status.phase` (default `Running` when scheduled, else `Pending`).
    pub fn phase(mut self, phase: &str) -> Pod {
        self.phase = Some(phase.to_string());
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Pod {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Pod {
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }

    /// About `total_bytes` of extra annotations (`test.kubeship.io/pad-<i>`, 1 KiB values), as
    /// a pod carrying a big `kubectl.kubernetes.io/last-applied-configuration` would have.
    pub fn bulk_annotations(mut self, total_bytes: usize) -> Pod {
        const VALUE: usize = 1024;
        let chunks = total_bytes.div_ceil(VALUE);
        for i in 0..chunks {
            let fill = char::from(b'a' + (i % 26) as u8);
            self = self.annotation(
                &format!("test.kubeship.io/pad-{i:04}"),
                &fill.to_string().repeat(VALUE),
            );
        }
        self
    }

    /// The controller owner (`ownerReferences[0]` with `controller: true`): e.g.
    /// `("ReplicaSet", "web-7d4b9c")`, `("StatefulSet", "db")`, `("DaemonSet", "agent")`,
    /// `("Job", "migrate")`, `("Node", "node-1")` (a static pod's mirror).
    pub fn owner(mut self, kind: &str, name: &str) -> Pod {
        self.owner = Some((kind.to_string(), name.to_string()));
        self
    }

    /// A running container: `spec.containers[]` and `status.containerStatuses[]` with the
    /// given `imageID` (e.g. `docker.io/library/nginx@sha256:…`) and `containerID`
    /// (`containerd://<64 hex>`).
    pub fn container(mut self, name: &str, image: &str, image_id: &str, container_id: &str) -> Pod {
        self.containers.push(ContainerSpec {
            name: name.to_string(),
            image: image.to_string(),
            image_id: image_id.to_string(),
            container_id: container_id.to_string(),
        });
        self
    }

    /// [`Pod::container`] with the `imageID` and `containerID` derived from the image and from
    /// the pod's uid and the container name ([`image_id_for`], [`Pod::container_id_of`]).
    pub fn running_container(self, name: &str, image: &str) -> Pod {
        let container_id = self.container_id_of(name);
        self.container(name, image, &image_id_for(image), &container_id)
    }

    /// A completed init container: `spec.initContainers[]` and
    /// `status.initContainerStatuses[]` (terminated, exit code 0).
    pub fn init_container(
        mut self,
        name: &str,
        image: &str,
        image_id: &str,
        container_id: &str,
    ) -> Pod {
        self.init_containers.push(ContainerSpec {
            name: name.to_string(),
            image: image.to_string(),
            image_id: image_id.to_string(),
            container_id: container_id.to_string(),
        });
        self
    }

    /// `metadata.creationTimestamp` (Unix ms, rounded down to the second); default: when
    /// [`Pod::new`] was called.
    pub fn created_ms(mut self, ms: i64) -> Pod {
        self.created_ms = ms / 1000 * 1000;
        self
    }

    /// Being deleted gracefully: `metadata.deletionTimestamp` and
    /// `deletionGracePeriodSeconds` set (the MODIFIED event that precedes a pod's DELETED).
    pub fn terminating(mut self) -> Pod {
        self.terminating = true;
        self
    }

    /// Sets the field at JSON pointer `pointer` (e.g. `/spec/priorityClassName`,
    /// `/spec/containers/0/ports`) of the rendered pod, creating missing objects on the way
    /// (a number indexes an existing array element).
    pub fn field(mut self, pointer: &str, value: Value) -> Pod {
        self.fields.push((pointer.to_string(), Some(value)));
        self
    }

    /// Removes the field at JSON pointer `pointer` from the rendered pod.
    pub fn without(mut self, pointer: &str) -> Pod {
        self.fields.push((pointer.to_string(), None));
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn get_uid(&self) -> &str {
        &self.uid
    }

    pub fn get_node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// The `containerID` [`Pod::running_container`] gives container `name` of this pod.
    pub fn container_id_of(&self, name: &str) -> String {
        container_id_for(&format!("{}/{name}", self.uid))
    }

    /// The pod as the API server serializes it (with `apiVersion` and `kind`, without
    /// `metadata.resourceVersion`).
    pub fn to_json(&self) -> Value {
        let created = kube_time(self.created_ms);
        let scheduled = self.node.is_some();
        let phase = self
            .phase
            .clone()
            .unwrap_or_else(|| if scheduled { "Running" } else { "Pending" }.to_string());
        let mut metadata = json!({
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid,
            "creationTimestamp": created,
        });
        if let Some((kind, owner)) = &self.owner {
            metadata["generateName"] = json!(format!("{owner}-"));
            metadata["ownerReferences"] = json!([{
                "apiVersion": owner_api_version(kind),
                "kind": kind,
                "name": owner,
                "uid": uid_for(&format!("{kind}/{}/{owner}", self.namespace)),
                "controller": true,
                "blockOwnerDeletion": true,
            }]);
        }
        if !self.labels.is_empty() {
            metadata["labels"] = json!(self.labels);
        }
        if !self.annotations.is_empty() {
            metadata["annotations"] = json!(self.annotations);
        }
        if self.terminating {
            metadata["deletionTimestamp"] = json!(kube_time(now_ms() + 30_000));
            metadata["deletionGracePeriodSeconds"] = json!(30);
        }
        metadata["managedFields"] = self.managed_fields(&created);

        let containers: Vec<Value> = self.containers.iter().map(container_spec).collect();
        let mut spec = json!({
            "volumes": [{
                "name": "kube-api-access-x7k2p",
                "projected": {
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt",
                                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    ],
                    "defaultMode": 420,
                },
            }],
            "containers": containers,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300},
            ],
            "priority": 0,
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
        });
        if !self.init_containers.is_empty() {
            spec["initContainers"] = self.init_containers.iter().map(container_spec).collect();
        }

        let mut status = json!({ "phase": phase, "qosClass": "BestEffort" });
        if let Some(node) = &self.node {
            spec["nodeName"] = json!(node);
            let host_ip = ip_for(&format!("node/{node}"), "10.0.1");
            let pod_ip = self
                .ip
                .clone()
                .unwrap_or_else(|| ip_for(&self.uid, "10.244.0"));
            let ready = if phase == "Running" { "True" } else { "False" };
            status["conditions"] = json!([
                {"type": "PodReadyToStartContainers", "status": "True",
                 "lastProbeTime": null, "lastTransitionTime": created},
                {"type": "Initialized", "status": "True",
                 "lastProbeTime": null, "lastTransitionTime": created},
                {"type": "Ready", "status": ready,
                 "lastProbeTime": null, "lastTransitionTime": created},
                {"type": "ContainersReady", "status": ready,
                 "lastProbeTime": null, "lastTransitionTime": created},
                {"type": "PodScheduled", "status": "True",
                 "lastProbeTime": null, "lastTransitionTime": created},
            ]);
            status["hostIP"] = json!(host_ip);
            status["hostIPs"] = json!([{ "ip": host_ip }]);
            status["podIP"] = json!(pod_ip);
            status["podIPs"] = json!([{ "ip": pod_ip }]);
            status["startTime"] = json!(created);
            status["containerStatuses"] = self
                .containers
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "state": {"running": {"startedAt": created}},
                        "lastState": {},
                        "ready": phase == "Running",
                        "restartCount": 0,
                        "image": c.image,
                        "imageID": c.image_id,
                        "containerID": c.container_id,
                        "started": phase == "Running",
                    })
                })
                .collect();
            if !self.init_containers.is_empty() {
                status["initContainerStatuses"] = self
                    .init_containers
                    .iter()
                    .map(|c| {
                        json!({
                            "name": c.name,
                            "state": {"terminated": {
                                "exitCode": 0, "reason": "Completed",
                                "startedAt": created, "finishedAt": created,
                                "containerID": c.container_id,
                            }},
                            "lastState": {},
                            "ready": true,
                            "restartCount": 0,
                            "image": c.image,
                            "imageID": c.image_id,
                            "containerID": c.container_id,
                            "started": false,
                        })
                    })
                    .collect();
            }
        } else {
            status["conditions"] = json!([{
                "type": "PodScheduled", "status": "False", "lastProbeTime": null,
                "lastTransitionTime": created, "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
            }]);
        }

        let mut pod = json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": metadata,
            "spec": spec,
            "status": status,
        });
        for (pointer, value) in &self.fields {
            match value {
                Some(v) => set_pointer(&mut pod, pointer, v.clone()),
                None => remove_pointer(&mut pod, pointer),
            }
        }
        pod
    }

    /// `managedFields` as a controller-created, kubelet-updated pod carries them: one entry per
    /// manager, each a `fieldsV1` tree naming every field it set (kilobytes per pod).
    fn managed_fields(&self, time: &str) -> Value {
        let keys = |m: &BTreeMap<String, String>| -> Value {
            let mut o = Map::new();
            o.insert(".".into(), json!({}));
            for k in m.keys() {
                o.insert(format!("f:{k}"), json!({}));
            }
            Value::Object(o)
        };
        let mut meta = Map::new();
        if !self.labels.is_empty() {
            meta.insert("f:labels".into(), keys(&self.labels));
        }
        if !self.annotations.is_empty() {
            meta.insert("f:annotations".into(), keys(&self.annotations));
        }
        if self.owner.is_some() {
            meta.insert("f:generateName".into(), json!({}));
            meta.insert(
                "f:ownerReferences".into(),
                json!({".": {}, format!("k:{{\"uid\":\"{}\"}}", self.uid): {}}),
            );
        }
        let mut spec_containers = Map::new();
        let mut status_containers = Map::new();
        for c in &self.containers {
            spec_containers.insert(
                format!("k:{{\"name\":\"{}\"}}", c.name),
                json!({".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {},
                       "f:resources": {}, "f:terminationMessagePath": {},
                       "f:terminationMessagePolicy": {}}),
            );
            status_containers.insert(
                format!("k:{{\"name\":\"{}\"}}", c.name),
                json!({".": {}, "f:containerID": {}, "f:image": {}, "f:imageID": {},
                       "f:lastState": {}, "f:name": {}, "f:ready": {}, "f:restartCount": {},
                       "f:started": {}, "f:state": {".": {}, "f:running": {".": {},
                       "f:startedAt": {}}}}),
            );
        }
        json!([
            {
                "manager": "kube-controller-manager",
                "operation": "Update",
                "apiVersion": "v1",
                "time": time,
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": meta,
                    "f:spec": {
                        "f:containers": spec_containers,
                        "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {},
                        "f:schedulerName": {}, "f:securityContext": {},
                        "f:terminationGracePeriodSeconds": {},
                    },
                },
            },
            {
                "manager": "kubelet",
                "operation": "Update",
                "apiVersion": "v1",
                "time": time,
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:status": {
                        "f:conditions": {
                            "k:{\"type\":\"ContainersReady\"}": {".": {}, "f:lastProbeTime": {},
                                "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
                            "k:{\"type\":\"Initialized\"}": {".": {}, "f:lastProbeTime": {},
                                "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
                            "k:{\"type\":\"Ready\"}": {".": {}, "f:lastProbeTime": {},
                                "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
                        },
                        "f:containerStatuses": status_containers,
                        "f:hostIP": {}, "f:hostIPs": {}, "f:phase": {}, "f:podIP": {},
                        "f:podIPs": {".": {}}, "f:startTime": {},
                    },
                },
                "subresource": "status",
            },
        ])
    }
}

fn container_spec(c: &ContainerSpec) -> Value {
    json!({
        "name": c.name,
        "image": c.image,
        "resources": {},
        "volumeMounts": [{
            "name": "kube-api-access-x7k2p",
            "readOnly": true,
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        }],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    })
}

fn owner_api_version(kind: &str) -> &'static str {
    match kind {
        "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Deployment" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        _ => "v1",
    }
}

/// `prefix.<1..=250>` derived from `seed`.
fn ip_for(seed: &str, prefix: &str) -> String {
    let h = hex_of(seed);
    let n = u64::from_str_radix(&h[..8], 16).unwrap_or(0) % 250 + 1;
    format!("{prefix}.{n}")
}

fn pointer_tokens(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

fn set_pointer(root: &mut Value, pointer: &str, value: Value) {
    let tokens = pointer_tokens(pointer);
    let Some((last, parents)) = tokens.split_last() else {
        *root = value;
        return;
    };
    let mut cur = root;
    for t in parents {
        cur = match array_index(cur, t) {
            Some(i) => &mut cur[i],
            None => {
                if !cur.is_object() {
                    *cur = json!({});
                }
                cur.as_object_mut()
                    .expect("object")
                    .entry(t.clone())
                    .or_insert_with(|| json!({}))
            }
        };
    }
    if let Some(i) = array_index(cur, last) {
        cur[i] = value;
        return;
    }
    if !cur.is_object() {
        *cur = json!({});
    }
    cur.as_object_mut()
        .expect("object")
        .insert(last.clone(), value);
}

/// `token` as the index of an element `cur` (an array) has.
fn array_index(cur: &Value, token: &str) -> Option<usize> {
    let i: usize = token.parse().ok()?;
    (i < cur.as_array()?.len()).then_some(i)
}

fn remove_pointer(root: &mut Value, pointer: &str) {
    let tokens = pointer_tokens(pointer);
    let Some((last, parents)) = tokens.split_last() else {
        return;
    };
    let mut cur = root;
    for t in parents {
        match cur.get_mut(t.as_str()) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(o) = cur.as_object_mut() {
        o.remove(last);
    }
}

/// A Namespace as the API server serializes it (without `metadata.resourceVersion`);
/// `kubernetes.io/metadata.name` is always among the labels, as the real server adds it.
pub fn namespace_json(name: &str, uid: &str, labels: &[(&str, &str)]) -> Value {
    let mut l = BTreeMap::new();
    l.insert("kubernetes.io/metadata.name".to_string(), name.to_string());
    for (k, v) in labels {
        l.insert((*k).to_string(), (*v).to_string());
    }
    let created = kube_time(now_ms());
    let label_fields: Map<String, Value> =
        l.keys().map(|k| (format!("f:{k}"), json!({}))).collect();
    json!({
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": uid,
            "creationTimestamp": created,
            "labels": l,
            "managedFields": [{
                "manager": "kubectl-create",
                "operation": "Update",
                "apiVersion": "v1",
                "time": created,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": label_fields}},
            }],
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_ids_and_uids() {
        let d = hex_of("nginx:1.25");
        assert_eq!(
            image_id_for("nginx:1.25"),
            format!("docker.io/library/nginx@sha256:{d}")
        );
        assert!(image_id_for("bitnami/redis:7").starts_with("docker.io/bitnami/redis@sha256:"));
        assert!(
            image_id_for("registry.k8s.io/pause:3.9").starts_with("registry.k8s.io/pause@sha256:")
        );
        assert!(image_id_for("localhost:5000/app").starts_with("localhost:5000/app@sha256:"));
        let u = uid_for("x");
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(uid_for("x"), uid_for("y"));
        assert!(container_id_for("a").starts_with("containerd://"));
        assert_eq!(container_id_for("a").len(), "containerd://".len() + 64);
    }

    #[test]
    fn pointers() {
        let p = Pod::new("ns", "p")
            .field("/spec/priorityClassName", json!("high"))
            .field("/metadata/labels/a~1b", json!("c"))
            .without("/spec/tolerations")
            .running_container("app", "app:1")
            .running_container("sidecar", "proxy:1")
            .field("/spec/containers/1/ports", json!([{"containerPort": 9090}]))
            .field("/spec/volumes/0", json!({"name": "v"}));
        let v = p.to_json();
        assert_eq!(v["spec"]["priorityClassName"], "high");
        assert_eq!(v["metadata"]["labels"]["a/b"], "c");
        assert!(v["spec"].get("tolerations").is_none());
        let containers = v["spec"]["containers"].as_array().expect("still an array");
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[1]["name"], "sidecar");
        assert_eq!(containers[1]["ports"][0]["containerPort"], 9090);
        assert!(containers[0].get("ports").is_none());
        assert_eq!(v["spec"]["volumes"], json!([{"name": "v"}]));
    }
}
