//! The fake API server's storage: objects by collection, one global resource version counter,
//! the change log that watches replay and that snapshots for paged or `Exact` lists are rebuilt
//! from, and the compaction horizon.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

/// A collection the fake serves (the cluster-wide list/watch endpoint of a core/v1 resource).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KubeResource {
    /// `/api/v1/pods`, only with `fieldSelector=spec.nodeName=<node>`.
    Pods,
    /// `/api/v1/namespaces`, without selectors.
    Namespaces,
}

impl KubeResource {
    /// The collection's URL path.
    pub fn path(self) -> &'static str {
        match self {
            KubeResource::Pods => "/api/v1/pods",
            KubeResource::Namespaces => "/api/v1/namespaces",
        }
    }

    /// The object `kind`.
    pub fn kind(self) -> &'static str {
        match self {
            KubeResource::Pods => "Pod",
            KubeResource::Namespaces => "Namespace",
        }
    }

    /// The list `kind`.
    pub fn list_kind(self) -> &'static str {
        match self {
            KubeResource::Pods => "PodList",
            KubeResource::Namespaces => "NamespaceList",
        }
    }

    /// The plural resource name (as in Status `details.kind` and RBAC).
    pub fn plural(self) -> &'static str {
        match self {
            KubeResource::Pods => "pods",
            KubeResource::Namespaces => "namespaces",
        }
    }

    fn index(self) -> usize {
        match self {
            KubeResource::Pods => 0,
            KubeResource::Namespaces => 1,
        }
    }
}

/// A watch event type for objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub(super) fn wire(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change: the object after it (for a deletion: the last state, carrying the deletion's
/// resource version, as the server sends it) and the object before it.
#[derive(Clone, Debug)]
pub(super) struct Change {
    pub rv: u64,
    pub resource: KubeResource,
    pub kind: EventType,
    pub key: String,
    pub object: Arc<Value>,
    pub prev: Option<Arc<Value>>,
}

/// A log entry: a change, or a bookmark asked for at resource version `rv`.
#[derive(Clone, Debug)]
pub(super) enum Entry {
    Change(Change),
    Bookmark(u64),
}

impl Entry {
    fn rv(&self) -> u64 {
        match self {
            Entry::Change(c) => c.rv,
            Entry::Bookmark(rv) => *rv,
        }
    }
}

/// Objects, resource versions and the change log.
#[derive(Debug)]
pub(super) struct Store {
    rv: u64,
    horizon: u64,
    log: Vec<Entry>,
    current: [BTreeMap<String, Arc<Value>>; 2],
}

/// The first resource version handed out is above this (so `"0"` is never a real one).
const FIRST_RV: u64 = 1000;

impl Store {
    pub fn new() -> Store {
        Store {
            rv: FIRST_RV,
            horizon: 0,
            log: Vec::new(),
            current: [BTreeMap::new(), BTreeMap::new()],
        }
    }

    /// The current (latest) resource version.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// Resource versions below this are compacted ("too old").
    pub fn horizon(&self) -> u64 {
        self.horizon
    }

    pub fn get(&self, resource: KubeResource, key: &str) -> Option<&Arc<Value>> {
        self.current[resource.index()].get(key)
    }

    /// Stores `object` under `key` (ADDED if absent, else MODIFIED) with a new resource version.
    pub fn put(
        &mut self,
        resource: KubeResource,
        key: &str,
        mut object: Value,
    ) -> (u64, EventType) {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        let object = Arc::new(object);
        let prev = self.current[resource.index()].insert(key.to_string(), object.clone());
        let kind = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.log.push(Entry::Change(Change {
            rv: self.rv,
            resource,
            kind,
            key: key.to_string(),
            object,
            prev,
        }));
        (self.rv, kind)
    }

    /// Deletes `key`; its resource version, or None if there is no such object.
    pub fn delete(&mut self, resource: KubeResource, key: &str) -> Option<u64> {
        let prev = self.current[resource.index()].remove(key)?;
        self.rv += 1;
        let mut last = (*prev).clone();
        last["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        self.log.push(Entry::Change(Change {
            rv: self.rv,
            resource,
            kind: EventType::Deleted,
            key: key.to_string(),
            object: Arc::new(last),
            prev: Some(prev),
        }));
        Some(self.rv)
    }

    /// Logs a bookmark at the current resource version.
    pub fn bookmark(&mut self) {
        self.log.push(Entry::Bookmark(self.rv));
    }

    /// The cluster moves on (one resource version passes, as a write elsewhere in the cluster
    /// would make it) and every earlier resource version becomes too old.
    pub fn compact(&mut self) {
        self.rv += 1;
        self.horizon = self.rv;
    }

    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    pub fn entries(&self, range: std::ops::Range<usize>) -> &[Entry] {
        &self.log[range]
    }

    /// Index of the first log entry after resource version `rv` (where a watch from `rv`
    /// starts).
    pub fn cursor_after(&self, rv: u64) -> usize {
        self.log.partition_point(|e| e.rv() <= rv)
    }

    /// The objects of `resource` as they were at resource version `at` (≤ the current one),
    /// keyed and ordered like etcd keys (`namespace/name`, or `name`).
    pub fn snapshot(&self, resource: KubeResource, at: u64) -> BTreeMap<String, Arc<Value>> {
        if at >= self.rv {
            return self.current[resource.index()].clone();
        }
        let mut objects = BTreeMap::new();
        for e in &self.log[..self.cursor_after(at)] {
            if let Entry::Change(c) = e
                && c.resource == resource
            {
                match c.kind {
                    EventType::Added | EventType::Modified => {
                        objects.insert(c.key.clone(), c.object.clone());
                    }
                    EventType::Deleted => {
                        objects.remove(&c.key);
                    }
                }
            }
        }
        objects
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snapshots_and_cursors() {
        let mut s = Store::new();
        let r0 = s.rv();
        let (r1, k1) = s.put(KubeResource::Pods, "a/x", json!({"metadata": {}}));
        assert_eq!((r1, k1), (r0 + 1, EventType::Added));
        let (r2, k2) = s.put(KubeResource::Pods, "a/x", json!({"metadata": {"v": 2}}));
        assert_eq!(k2, EventType::Modified);
        s.bookmark();
        let r3 = s.delete(KubeResource::Pods, "a/x").expect("exists");
        assert!(s.delete(KubeResource::Pods, "a/x").is_none());
        assert!(s.snapshot(KubeResource::Pods, r0).is_empty());
        let at1 = s.snapshot(KubeResource::Pods, r1);
        assert_eq!(at1["a/x"]["metadata"]["resourceVersion"], r1.to_string());
        assert_eq!(
            s.snapshot(KubeResource::Pods, r2)["a/x"]["metadata"]["v"],
            2
        );
        assert!(s.snapshot(KubeResource::Pods, r3).is_empty());
        assert_eq!(s.cursor_after(r0), 0);
        assert_eq!(s.cursor_after(r1), 1);
        assert_eq!(
            s.cursor_after(r2),
            3,
            "the bookmark at r2 is before the cursor"
        );
        assert_eq!(s.cursor_after(r3), 4);
        let Entry::Change(del) = &s.entries(3..4)[0] else {
            panic!("a change");
        };
        assert_eq!(del.kind, EventType::Deleted);
        assert_eq!(del.object["metadata"]["resourceVersion"], r3.to_string());
        assert_eq!(del.object["metadata"]["v"], 2, "the last state");
        s.compact();
        assert_eq!(s.horizon(), r3 + 1);
        assert_eq!(s.rv(), r3 + 1);
    }
}
