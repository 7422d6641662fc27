//! Pod metadata from the Kubernetes API: one node-scoped watch feeding a cache
//! the tailer reads.
//!
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
pub mod watch;

pub use cache::{Labels, PodCache};
pub use meta::{ContainerMeta, Controls, PodMeta, Workload};
