//! Discovery: which containers have logs, from the links in `/var/log/containers`.
//!
//! Each `*.log` entry (after include/exclude globs, and never the agent's own pod)
//! is resolved to the file it links to; that file's path is the container stream's
//! key. Only a link resolving to a file inside `logs.pods_dir` is followed: a link
//! to anywhere else on the node (`/etc/shadow`, through `..`, or through a linked
//! directory) is refused. A `notify` watch on the directory makes new containers
//! show up within a poll; a periodic rescan is the safety net.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::LogsConfig;
use crate::logs::encode::PathMeta;

use super::names::{LinkName, parse_link_name, parse_pod_dir};

/// A container log found in the containers directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerLog {
    /// The live file the link resolves to.
    pub target: PathBuf,
    /// What the names tell about the container.
    pub meta: PathMeta,
    /// The link's own name.
    pub link: String,
}

/// Why an entry was passed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Not matched by `include`, or matched by `exclude`.
    Filtered,
    /// The agent's own pod.
    OwnPod,
    /// A link whose target does not exist (yet).
    Dangling,
    /// A link resolving outside `logs.pods_dir`: not followed.
    Outside,
}

/// Lists the containers directory.
pub fn scan(cfg: &LogsConfig, host: &str) -> io::Result<Vec<Result<ContainerLog, (String, Skip)>>> {
    // Resolved at each scan: the pods directory may itself be a link (to a larger disk).
    let root = fs::canonicalize(&cfg.pods_dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("logs.pods_dir {}: {e}", cfg.pods_dir.display()),
        )
    })?;
    let mut out = Vec::new();
    for entry in fs::read_dir(&cfg.containers_dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        out.push(examine(cfg, &root, host, name, &entry.path()));
    }
    Ok(out)
}

fn examine(
    cfg: &LogsConfig,
    root: &Path,
    host: &str,
    name: &str,
    path: &Path,
) -> Result<ContainerLog, (String, Skip)> {
    let skip = |why| Err((name.to_string(), why));
    if !cfg.include.is_match(name) || cfg.exclude.is_match(name) {
        return skip(Skip::Filtered);
    }
    let link = parse_link_name(name).unwrap_or_else(|| LinkName {
        pod: name.trim_end_matches(".log").to_string(),
        ..LinkName::default()
    });
    if let Some(me) = &cfg.exclude_self
        && me.name == link.pod
        && me.namespace == link.namespace
    {
        return skip(Skip::OwnPod);
    }
    let Ok(target) = fs::canonicalize(path) else {
        return skip(Skip::Dangling);
    };
    if !target.starts_with(root) {
        return skip(Skip::Outside);
    }
    if !target.is_file() {
        return skip(Skip::Dangling);
    }
    let pod_dir = target
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .and_then(|n| n.to_str());
    let pod_id = pod_dir
        .and_then(parse_pod_dir)
        .map(|(_, _, uid)| uid.to_string())
        .unwrap_or_default();
    Ok(ContainerLog {
        meta: PathMeta {
            pod_name: link.pod,
            namespace_name: link.namespace,
            pod_id,
            host: host.to_string(),
            container_name: link.container,
            docker_id: link.container_id,
        },
        target,
        link: name.to_string(),
    })
}

/// Watches the containers directory; `on_change` runs on the watcher's thread.
pub fn watch(
    dir: &Path,
    on_change: Arc<dyn Fn() + Send + Sync>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let mut w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        use notify::EventKind;
        use notify::event::ModifyKind;
        if let Ok(ev) = ev
            && matches!(
                ev.kind,
                EventKind::Create(_)
                    | EventKind::Remove(_)
                    | EventKind::Modify(ModifyKind::Name(_))
            )
        {
            on_change();
        }
    })?;
    w.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(w)
}
