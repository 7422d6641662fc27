//! The node's pod metadata cache: written by the watch task, read by the tailer.
//!
//! Pods are keyed by UID (the `/var/log/pods/<ns>_<pod>_<uid>` directory tells it),
//! so a pod deleted and recreated under the same name never lends its metadata to
//! the new one. A deleted pod stays for a grace period so its late lines are still
//! enriched. Entries are `Arc`s replaced only when what the agent keeps of a pod
//! changed, and a generation counter moves with every change: a reader that saw
//! generation `g` needs to look again only when it moved, and compares `Arc`
//! identity to know whether its pod changed.
//!
//! What this module does not do: talk to the API server (`watch.rs`) or build
//! record fragments (the tailer does, once per container).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::meta::PodMeta;

/// Namespace labels, shared.
pub type Labels = Arc<BTreeMap<String, String>>;

#[derive(Debug)]
struct Entry {
    meta: Arc<PodMeta>,
    deleted_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    pods: HashMap<String, Entry>,
    /// (namespace, name) → uid of the pod that lives under that name now.
    by_name: HashMap<(String, String), String>,
    namespaces: HashMap<String, Labels>,
    /// UIDs listed since the pod watch (re)started its list, until the list ends.
    relisting: Option<HashSet<String>>,
    /// Namespaces listed since the namespace watch (re)started its list.
    ns_relisting: Option<HashSet<String>>,
}

/// The cache. Cheap to read from any thread.
pub struct PodCache {
    state: RwLock<State>,
    generation: AtomicU64,
    synced: AtomicBool,
    on_change: RwLock<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for PodCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodCache")
            .field("generation", &self.generation())
            .field("synced", &self.synced())
            .finish_non_exhaustive()
    }
}

impl PodCache {
    /// An empty cache; `on_change` runs after every change (it wakes the tailer).
    pub fn new(on_change: Box<dyn Fn() + Send + Sync>) -> Self {
        Self {
            state: RwLock::new(State::default()),
            generation: AtomicU64::new(0),
            synced: AtomicBool::new(false),
            on_change: RwLock::new(on_change),
        }
    }

    /// Replaces what runs after every change.
    pub fn set_on_change(&self, f: Box<dyn Fn() + Send + Sync>) {
        *self.on_change.write().unwrap_or_else(|p| p.into_inner()) = f;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
        (self.on_change.read().unwrap_or_else(|p| p.into_inner()))();
    }

    /// Moves with every change of what the cache holds.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// True once the pod list completed at least once.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// The pod with this UID, deleted ones in their grace period included.
    pub fn pod(&self, uid: &str) -> Option<Arc<PodMeta>> {
        self.read().pods.get(uid).map(|e| Arc::clone(&e.meta))
    }

    /// The pod living under this name now (for logs whose path tells no UID).
    pub fn pod_by_name(&self, namespace: &str, name: &str) -> Option<Arc<PodMeta>> {
        let s = self.read();
        let uid = s.by_name.get(&(namespace.to_owned(), name.to_owned()))?;
        s.pods.get(uid).map(|e| Arc::clone(&e.meta))
    }

    /// The labels of a namespace, when namespaces are watched and it is known.
    pub fn namespace_labels(&self, namespace: &str) -> Option<Labels> {
        self.read().namespaces.get(namespace).cloned()
    }

    /// Pods held (deleted ones in their grace period included).
    pub fn len(&self) -> usize {
        self.read().pods.len()
    }

    /// The pods not deleted, in no particular order (scrape target discovery).
    pub fn live_pods(&self) -> Vec<Arc<PodMeta>> {
        self.read()
            .pods
            .values()
            .filter(|e| e.deleted_at.is_none())
            .map(|e| Arc::clone(&e.meta))
            .collect()
    }

    /// A pod was added or changed.
    pub fn apply(&self, meta: PodMeta) {
        let mut s = self.write();
        if let Some(set) = &mut s.relisting {
            set.insert(meta.uid.clone());
        }
        let key = (meta.namespace.clone(), meta.name.clone());
        let uid = meta.uid.clone();
        let unchanged = s
            .pods
            .get(&uid)
            .is_some_and(|e| e.deleted_at.is_none() && *e.meta == meta);
        if !unchanged {
            s.pods.insert(
                uid.clone(),
                Entry {
                    meta: Arc::new(meta),
                    deleted_at: None,
                },
            );
        }
        s.by_name.insert(key, uid);
        drop(s);
        if !unchanged {
            self.changed();
        }
    }

    /// A pod was deleted: it stays for its late lines until [`PodCache::expire`]
    /// (not among [`PodCache::live_pods`] any more: a change).
    pub fn delete(&self, uid: &str, now: Instant) {
        let mut s = self.write();
        let Some(e) = s.pods.get_mut(uid) else {
            return;
        };
        let newly = e.deleted_at.is_none();
        e.deleted_at.get_or_insert(now);
        let key = (e.meta.namespace.clone(), e.meta.name.clone());
        if s.by_name.get(&key).is_some_and(|u| u == uid) {
            s.by_name.remove(&key);
        }
        drop(s);
        if newly {
            self.changed();
        }
    }

    /// The pod watch starts a (re)list.
    pub fn relist_start(&self) {
        self.write().relisting = Some(HashSet::new());
    }

    /// The (re)list ended: pods it did not list were deleted meanwhile.
    pub fn relist_done(&self, now: Instant) {
        let gone: Vec<String> = {
            let mut s = self.write();
            let listed = s.relisting.take().unwrap_or_default();
            s.pods
                .iter()
                .filter(|(uid, e)| e.deleted_at.is_none() && !listed.contains(*uid))
                .map(|(uid, _)| uid.clone())
                .collect()
        };
        for uid in gone {
            self.delete(&uid, now);
        }
        self.synced.store(true, Ordering::Release);
        // Containers waiting for their pods look again (the ones the list had go now).
        self.changed();
    }

    /// Drops deleted pods older than `grace`; returns how many pods are held.
    pub fn expire(&self, now: Instant, grace: Duration) -> usize {
        let mut s = self.write();
        s.pods
            .retain(|_, e| e.deleted_at.is_none_or(|t| now.duration_since(t) < grace));
        s.pods.len()
    }

    /// A namespace was added or changed.
    pub fn apply_namespace(&self, name: String, labels: BTreeMap<String, String>) {
        let mut s = self.write();
        if let Some(set) = &mut s.ns_relisting {
            set.insert(name.clone());
        }
        if s.namespaces.get(&name).is_some_and(|l| **l == labels) {
            return;
        }
        s.namespaces.insert(name, Arc::new(labels));
        drop(s);
        self.changed();
    }

    /// A namespace was deleted.
    pub fn delete_namespace(&self, name: &str) {
        if self.write().namespaces.remove(name).is_some() {
            self.changed();
        }
    }

    /// The namespace watch starts a (re)list.
    pub fn ns_relist_start(&self) {
        self.write().ns_relisting = Some(HashSet::new());
    }

    /// The namespace (re)list ended: namespaces it did not list are gone.
    pub fn ns_relist_done(&self) {
        let mut s = self.write();
        let listed = s.ns_relisting.take().unwrap_or_default();
        let before = s.namespaces.len();
        s.namespaces.retain(|n, _| listed.contains(n));
        let removed = s.namespaces.len() != before;
        drop(s);
        if removed {
            self.changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn pod(uid: &str, name: &str, ip: &str) -> PodMeta {
        PodMeta {
            uid: uid.into(),
            name: name.into(),
            namespace: "ns".into(),
            pod_ip: ip.into(),
            ..Default::default()
        }
    }

    fn cache() -> (PodCache, Arc<AtomicUsize>) {
        let n = Arc::new(AtomicUsize::new(0));
        let m = Arc::clone(&n);
        let c = PodCache::new(Box::new(move || {
            m.fetch_add(1, Ordering::SeqCst);
        }));
        (c, n)
    }

    #[test]
    fn same_name_recreated_keeps_each_uid_apart() {
        let (c, _) = cache();
        let t0 = Instant::now();
        c.apply(pod("u1", "db-0", "10.0.0.1"));
        c.delete("u1", t0);
        c.apply(pod("u2", "db-0", "10.0.0.2"));
        assert_eq!(c.pod("u1").unwrap().pod_ip, "10.0.0.1", "old pod in grace");
        assert_eq!(c.pod("u2").unwrap().pod_ip, "10.0.0.2");
        assert_eq!(c.pod_by_name("ns", "db-0").unwrap().uid, "u2");
        // A late delete of the old pod does not unname the new one.
        c.delete("u1", t0);
        assert_eq!(c.pod_by_name("ns", "db-0").unwrap().uid, "u2");
    }

    #[test]
    fn live_pods_leave_deleted_ones_out() {
        let (c, _) = cache();
        c.apply(pod("u1", "a", ""));
        c.apply(pod("u2", "b", ""));
        let g = c.generation();
        c.delete("u1", Instant::now());
        assert!(c.generation() > g, "a deletion is a change");
        let g = c.generation();
        c.delete("u1", Instant::now());
        assert_eq!(c.generation(), g, "once");
        let live: Vec<String> = c.live_pods().iter().map(|p| p.uid.clone()).collect();
        assert_eq!(live, ["u2"]);
        assert_eq!(
            c.len(),
            2,
            "the deleted pod is still held for its late lines"
        );
    }

    #[test]
    fn deleted_pods_expire_after_grace() {
        let (c, _) = cache();
        let t0 = Instant::now();
        c.apply(pod("u1", "a", ""));
        c.apply(pod("u2", "b", ""));
        c.delete("u1", t0);
        let grace = Duration::from_secs(300);
        assert_eq!(c.expire(t0 + Duration::from_secs(299), grace), 2);
        assert!(c.pod("u1").is_some());
        assert_eq!(c.expire(t0 + Duration::from_secs(300), grace), 1);
        assert!(c.pod("u1").is_none());
        assert!(c.pod("u2").is_some(), "live pods never expire");
    }

    #[test]
    fn unchanged_applies_do_not_move_the_generation() {
        let (c, woken) = cache();
        c.apply(pod("u1", "a", ""));
        let g = c.generation();
        let first = c.pod("u1").unwrap();
        c.apply(pod("u1", "a", ""));
        assert_eq!(c.generation(), g);
        assert!(Arc::ptr_eq(&first, &c.pod("u1").unwrap()));
        c.apply(pod("u1", "a", "10.1.1.1"));
        assert!(c.generation() > g);
        assert!(!Arc::ptr_eq(&first, &c.pod("u1").unwrap()));
        assert_eq!(woken.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_relist_marks_unlisted_pods_deleted() {
        let (c, _) = cache();
        let t0 = Instant::now();
        c.apply(pod("u1", "a", ""));
        c.apply(pod("u2", "b", ""));
        assert!(!c.synced());
        c.relist_start();
        c.apply(pod("u2", "b", ""));
        c.relist_done(t0);
        assert!(c.synced());
        assert!(
            c.pod_by_name("ns", "a").is_none(),
            "u1 was deleted meanwhile"
        );
        assert!(c.pod("u1").is_some(), "but stays for its grace period");
        assert_eq!(c.expire(t0 + Duration::from_secs(1), Duration::ZERO), 1);
    }

    #[test]
    fn namespaces() {
        let (c, _) = cache();
        let labels = |v: &str| BTreeMap::from([("team".to_string(), v.to_string())]);
        c.apply_namespace("shop".into(), labels("a"));
        let g = c.generation();
        c.apply_namespace("shop".into(), labels("a"));
        assert_eq!(c.generation(), g, "unchanged");
        c.apply_namespace("shop".into(), labels("b"));
        assert_eq!(c.namespace_labels("shop").unwrap()["team"], "b");
        c.ns_relist_start();
        c.ns_relist_done();
        assert!(c.namespace_labels("shop").is_none());
    }
}
