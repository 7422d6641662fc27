//! A fake Kubernetes API server ([`FakeApi`]) for the agent's pod metadata cache: the peer the
//! tests run against where no real API server can be installed. std threads and
//! `serde_json` only; it speaks the real wire protocol, as kube's `watcher` uses it:
//!
//! * `GET /api/v1/pods?fieldSelector=spec.nodeName%3D<node>[&limit=N][&continue=T]
//!   [&resourceVersion=RV[&resourceVersionMatch=NotOlderThan|Exact]]`: a `PodList` of the
//!   node's pods (list items without `apiVersion`/`kind`, as the server sends them),
//!   `metadata.resourceVersion` the list's resource version. `limit` pages with an opaque
//!   `continue` token; every page comes from the snapshot of the first page. Without
//!   `resourceVersion`, or with `"0"` or `NotOlderThan`, the list is of the latest state; with
//!   `Exact` (or, the legacy rule, a non-zero `resourceVersion` and a `limit` without
//!   `resourceVersionMatch`), of that resource version: HTTP 410 `Expired` if compacted, like
//!   a `continue` token from before the compaction.
//! * `GET /api/v1/pods?watch=true&resourceVersion=RV&allowWatchBookmarks=true
//!   &timeoutSeconds=T&fieldSelector=...`: HTTP 200, `Transfer-Encoding: chunked`, one chunk
//!   per event `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK","object":{…}}\n`, events after RV in
//!   order, filtered like the server's watch cache does (a pod that comes onto the node, e.g.
//!   when it is scheduled, is ADDED; one that leaves it is DELETED); the stream ends (zero
//!   chunk) after `T` seconds. From a compacted RV: one ERROR event (`Status` 410 `Expired`,
//!   `too old resource version: X (Y)`) and the end. Without RV (or `"0"`), and with
//!   `sendInitialEvents=true&resourceVersionMatch=NotOlderThan` (streaming lists), the current
//!   objects come first as ADDED events (then, for streaming lists, a BOOKMARK annotated
//!   `k8s.io/initial-events-end: "true"`).
//! * The same for `/api/v1/namespaces`, without selectors.
//!
//! Anything else (a GET of one pod, another path or verb, another field selector or node, a
//! label selector, an unknown query parameter, a resource version the server never gave) is
//! unexpected: answered 4xx/5xx with a `Status` body, recorded, and fatal to the test:
//! [`FakeApi::assert_no_unexpected`] panics listing them, and so does dropping the server.
//!
//! Resource versions come from one counter for the whole store (as etcd's revision);
//! [`FakeApi::compact`] moves the horizon below which they are too old. Faults:
//! [`FakeApi::set_outage`] (connections closed without an answer),
//! [`FakeApi::set_unavailable`] (503s), [`FakeApi::set_delay`] (slow heads),
//! [`FakeApi::expire_watches`] (streams end as on their timeout). [`FakeApi::requests`] counts
//! lists and watches; [`FakeApi::log`] has every request with its query and headers.
//!
//! ```no_run
//! use kubeship_tests::{FakeApi, KubeResource, Pod, secs};
//! let api = FakeApi::start("node-1");
//! let dir = tempfile::tempdir().unwrap();
//! api.write_kubeconfig(&dir.path().join("kubeconfig"));
//! api.upsert_namespace("shop", &[("team", "web")]);
//! let web = Pod::new("shop", "web-0")
//!     .node("node-1")
//!     .owner("StatefulSet", "web")
//!     .running_container("nginx", "nginx:1.25");
//! api.upsert_pod(&web);
//! // ... start the agent with that kubeconfig ...
//! api.wait_for_watch(KubeResource::Pods, secs(30));
//! api.upsert_pod(&web.clone().label("version", "2")); // MODIFIED
//! api.delete_pod("shop", "web-0"); // DELETED
//! assert_eq!(api.requests().pods_list, 1);
//! api.assert_no_unexpected();
//! ```

mod objects;
mod protocol;
mod server;
mod store;

pub use objects::{Pod, container_id_for, image_id_for, kube_time, namespace_json, uid_for};
pub use server::{ApiRequest, FakeApi, RequestKind, Requests};
pub use store::KubeResource;
