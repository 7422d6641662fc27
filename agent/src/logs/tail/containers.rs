//! The tailer's containers: finding them in the containers directory, and the pod
//! metadata each stream carries (waiting for its pod, then refreshed as the cache
//! changes).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::discover::{self, Skip};
use super::stream::{self, ContainerStream, MetaState};
use super::{ContainerInfo, Tailer};
use crate::logs::encode::PathMeta;
use crate::logs::enrich::AnnotationProblem;
use crate::logs::metrics::FileError;

impl Tailer {
    /// Finds new containers and notices vanished ones.
    pub(super) fn discover(&mut self, now: Instant) {
        let found = match discover::scan(&self.cfg.logs, &self.cfg.node_name) {
            Ok(f) => f,
            Err(e) => {
                self.metrics.logs.file_error(FileError::Scan);
                if let Some(n) = self.limits.allow("scan", now) {
                    tracing::warn!(dir = %self.cfg.logs.containers_dir.display(), error = %e, suppressed = n, "listing the containers directory failed");
                }
                return;
            }
        };
        let index: HashMap<Arc<str>, usize> = self
            .streams
            .iter()
            .enumerate()
            .map(|(i, s)| (Arc::clone(&s.key), i))
            .collect();
        let mut seen = vec![false; self.streams.len()];
        for f in found {
            let found = match f {
                Ok(found) => found,
                Err((name, Skip::OwnPod)) => {
                    tracing::debug!(link = %name, "not tailing the agent's own pod");
                    continue;
                }
                Err((name, Skip::Outside)) => {
                    stream::refused_link(&self.metrics, &mut self.limits, now, &name);
                    continue;
                }
                Err(_) => continue,
            };
            let key = found.target.to_string_lossy();
            if let Some(&i) = index.get(key.as_ref()) {
                seen[i] = true;
                self.streams[i].closing_since = None;
                continue;
            }
            tracing::debug!(link = %found.link, target = %found.target.display(), "new container log");
            let (info, meta) = self.first_info(&found.meta, now);
            let mut stream = ContainerStream::new(found.target, info, found.meta, meta);
            stream.start_at_end = self.start_at_end;
            self.streams.push(stream);
            seen.push(true);
        }
        for (s, seen) in self.streams.iter_mut().zip(seen) {
            if seen {
                // Rotated siblings and copies show up at the next listing.
                s.needs_listing = true;
            } else {
                s.closing_since.get_or_insert(now);
            }
        }
        let live: std::collections::HashSet<Arc<str>> =
            self.streams.iter().map(|s| Arc::clone(&s.key)).collect();
        self.ledger.with_store(|st| {
            st.retain_streams(|k| {
                live.contains(k) || std::path::Path::new(k).parent().is_some_and(|d| d.exists())
            })
        });
        self.control.health.ready.store(true, Ordering::SeqCst);
    }

    /// A new container's info: with its pod when the cache has it, else path
    /// metadata while it waits for its pod (pod metadata on) or for good (off).
    pub(super) fn first_info(
        &mut self,
        path: &PathMeta,
        now: Instant,
    ) -> (ContainerInfo, MetaState) {
        let Some(cache) = self.enricher.cache() else {
            return (self.info_for(path, None), MetaState::Off);
        };
        let generation = cache.generation();
        match self.enricher.lookup(path) {
            Some(found) => {
                let info = self.info_for(path, Some(&found));
                let found = Some(found);
                (info, MetaState::Resolved { generation, found })
            }
            None => (self.info_for(path, None), MetaState::Waiting { since: now }),
        }
    }

    pub(super) fn info_for(
        &mut self,
        path: &PathMeta,
        found: Option<&crate::logs::enrich::CachedPod>,
    ) -> ContainerInfo {
        let mut problems = Vec::new();
        let info = self.enricher.info(path, found, &mut problems);
        for AnnotationProblem { pod, message } in problems {
            if let Some(n) = self.limits.allow("annotation", Instant::now()) {
                tracing::warn!(pod = %pod, suppressed = n, "{message}");
            }
        }
        info
    }

    /// Brings stream `idx`'s pod metadata up to date with the cache; false while it
    /// must not be read yet (waiting for its pod).
    pub(super) fn refresh_meta(&mut self, idx: usize) -> bool {
        let Some(cache) = self.enricher.cache() else {
            return true;
        };
        let generation = cache.generation();
        let wait = self.cfg.kubernetes.metadata_wait;
        let stopping = self.control.stop.load(Ordering::Relaxed);
        let s = &self.streams[idx];
        let waited_out = match &s.meta {
            MetaState::Off => return true,
            MetaState::Resolved { generation: g, .. } if *g == generation => return true,
            MetaState::Resolved { .. } => false,
            MetaState::Waiting { since } => stopping || since.elapsed() >= wait,
        };
        let found = self.enricher.lookup(&s.path_meta);
        let unchanged = match (&s.meta, &found) {
            (MetaState::Waiting { .. }, None) if !waited_out => return false,
            (MetaState::Waiting { .. }, None) => {
                tracing::debug!(stream = %s.key, "no pod metadata within metadata_wait_ms; shipping with path metadata");
                true
            }
            (MetaState::Resolved { found: Some(a), .. }, Some(b)) => a.same_as(b),
            (MetaState::Resolved { found: None, .. }, None) => true,
            _ => false,
        };
        let was_waiting = matches!(s.meta, MetaState::Waiting { .. });
        let path = s.path_meta.clone();
        if was_waiting {
            let info = self.info_for(&path, found.as_ref());
            self.streams[idx].resolved(info, self.settings.max_record);
        } else if !unchanged {
            let info = self.info_for(&path, found.as_ref());
            self.streams[idx].info = info;
        }
        self.streams[idx].meta = MetaState::Resolved { generation, found };
        true
    }
}
