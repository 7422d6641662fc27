//! [`Target`]: what one scrape loop scrapes (where, with which labels, how often,
//! within which limits), its identity and its stable offset inside the interval.

use std::time::Duration;

use hyper::Uri;

use crate::config::TargetAuth;

/// Where a target's body comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A GET of this URL (`http` or `https`).
    Http {
        /// Scheme, authority, path and query.
        url: Uri,
        /// Token and TLS settings.
        auth: TargetAuth,
    },
    /// The agent's own metrics registry, read in process (`self_metrics`).
    Registry,
    /// A text exposition in a file, read at every scrape (a static `file` target).
    File(std::path::PathBuf),
}

impl Source {
    /// A GET over plain HTTP (no TLS).
    pub fn is_plain_http(&self) -> bool {
        matches!(self, Source::Http { url, .. } if url.scheme_str() != Some("https"))
    }
}

/// Which metric relabeling rules a target's series go through: the agent-wide ones
/// (`metrics.scrape.metric_relabel_configs`), then its group's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rules {
    /// The agent-wide ones only (the agent's own target).
    #[default]
    AgentWide,
    /// Then `pods.metric_relabel_configs`.
    Pods,
    /// Then `kubelet.metric_relabel_configs`.
    Kubelet,
    /// Then those of `static_targets[i]`.
    Static(usize),
}

/// One scrape target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Where its body comes from.
    pub source: Source,
    /// Target labels, sorted by name, names unique, values not empty: `job`,
    /// `instance`, `node`, and `namespace`, `pod`, `container`, pod labels… as the
    /// target has them. Every sample gets them.
    pub labels: Vec<(String, String)>,
    /// Time between two scrapes.
    pub interval: Duration,
    /// One scrape's deadline; at most `interval`.
    pub timeout: Duration,
    /// Largest body after decompression.
    pub body_limit: usize,
    /// Most samples after metric relabeling; 0 for no limit.
    pub sample_limit: usize,
    /// Its metric relabeling rules.
    pub rules: Rules,
}

impl Target {
    /// A target; `labels` in any order (sorted here), `timeout` capped at `interval`.
    pub fn new(
        source: Source,
        mut labels: Vec<(String, String)>,
        interval: Duration,
        timeout: Duration,
        body_limit: usize,
        sample_limit: usize,
    ) -> Target {
        labels.retain(|(_, v)| !v.is_empty());
        labels.sort();
        labels.dedup_by(|a, b| a.0 == b.0);
        Target {
            source,
            labels,
            interval,
            timeout: timeout.min(interval),
            body_limit,
            sample_limit,
            rules: Rules::AgentWide,
        }
    }

    /// The same target with its group's relabeling rules.
    pub fn with_rules(self, rules: Rules) -> Target {
        Target { rules, ..self }
    }

    /// The value of target label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// What identifies the target across discoveries, as Prometheus's target hash:
    /// its labels and URL. Two discoveries that yield the same identity are one
    /// target (its settings may change in place); a new identity is a new target.
    pub fn identity(&self) -> u64 {
        let mut h = Fnv::new();
        for (name, value) in &self.labels {
            h.write(name.as_bytes());
            h.write(&[0xff]);
            h.write(value.as_bytes());
            h.write(&[0xff]);
        }
        match &self.source {
            Source::Http { url, .. } => h.write(url.to_string().as_bytes()),
            Source::Registry => h.write(b"registry"),
            Source::File(path) => h.write(path.as_os_str().as_encoded_bytes()),
        }
        h.0
    }

    /// Where in each interval this target is scraped: a stable function of its
    /// identity and `seed` (the node name's hash), so that targets spread over the
    /// interval and keep their place across restarts of the agent.
    pub fn offset(&self, seed: u64) -> Duration {
        let interval = u64::try_from(self.interval.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_nanos((self.identity() ^ seed) % interval)
    }

    /// `job/instance` (plus the path when the job has several), for logs.
    pub fn describe(&self) -> String {
        let job = self.label("job").unwrap_or("");
        let instance = self.label("instance").unwrap_or("");
        match &self.source {
            Source::Http { url, .. } => format!("{job}/{instance}{}", url.path()),
            Source::Registry => format!("{job}/{instance} (registry)"),
            Source::File(path) => format!("{job}/{}", path.display()),
        }
    }
}

/// The FNV-1a hash of `bytes` (the offset seed of a node name): fixed, unlike the
/// standard library's hasher, so offsets survive a rebuild of the agent.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = Fnv::new();
    h.write(bytes);
    h.0
}

/// FNV-1a, 64 bits.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(instance: &str, interval_secs: u64) -> Target {
        Target::new(
            Source::Http {
                url: format!("http://{instance}/metrics").parse().unwrap(),
                auth: TargetAuth::default(),
            },
            vec![
                ("job".into(), "j".into()),
                ("instance".into(), instance.into()),
                ("empty".into(), String::new()),
            ],
            Duration::from_secs(interval_secs),
            Duration::from_secs(10),
            1 << 20,
            0,
        )
    }

    #[test]
    fn labels_are_sorted_without_empty_values_and_timeout_is_capped() {
        let t = target("10.0.0.1:8080", 5);
        let names: Vec<&str> = t.labels.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["instance", "job"]);
        assert_eq!(t.timeout, Duration::from_secs(5));
        assert_eq!(t.label("job"), Some("j"));
        assert_eq!(t.describe(), "j/10.0.0.1:8080/metrics");
    }

    #[test]
    fn the_offset_is_stable_spread_and_inside_the_interval() {
        let seed = fnv1a(b"node-1");
        let a = target("10.0.0.1:8080", 30);
        // Stable: the same target (built again) gets the same offset; pinned so that
        // a change of the hash, which would move every target on every node, shows.
        assert_eq!(a.offset(seed), target("10.0.0.1:8080", 30).offset(seed));
        assert_eq!(fnv1a(b"node-1"), 0xe696_ecc2_2078_79c3);
        assert_eq!(a.identity(), target("10.0.0.1:8080", 30).identity());
        // Inside the interval, and spread: 200 targets do not bunch up.
        let offsets: Vec<Duration> = (0..200)
            .map(|i| target(&format!("10.0.{}.{}:9090", i / 250, i % 250), 30).offset(seed))
            .collect();
        assert!(offsets.iter().all(|o| *o < Duration::from_secs(30)));
        let mut per_second = [0usize; 30];
        for o in &offsets {
            per_second[o.as_secs() as usize] += 1;
        }
        assert!(
            per_second.iter().all(|&n| n <= 20),
            "bunched: {per_second:?}"
        );
        // Another node (seed) puts the same target elsewhere; another target too.
        assert_ne!(a.offset(seed), a.offset(fnv1a(b"node-2")));
        assert_ne!(a.identity(), target("10.0.0.2:8080", 30).identity());
        // The identity does not depend on settings: an interval change keeps the target.
        assert_eq!(a.identity(), target("10.0.0.1:8080", 10).identity());
    }
}
