//! What file and directory names tell: the kubelet's naming conventions.
//!
//! `/var/log/containers/<pod>_<namespace>_<container>-<container id>.log` links to
//! `/var/log/pods/<namespace>_<pod>_<pod uid>/<container>/<restart>.log`; rotated
//! siblings are `<restart>.log.<YYYYMMDD-hhmmss>` and, compressed,
//! `<restart>.log.<YYYYMMDD-hhmmss>.gz` (docker's own rotation numbers them `.1`,
//! `.2`, newest first). Names that do not follow the conventions still work; the
//! fields they cannot tell are left empty.

use std::cmp::Reverse;

/// What a `/var/log/containers` file name tells.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkName {
    /// Pod name.
    pub pod: String,
    /// Namespace.
    pub namespace: String,
    /// Container name.
    pub container: String,
    /// Container ID (64 hex digits), empty when absent.
    pub container_id: String,
}

/// Parses `<pod>_<namespace>_<container>-<id>.log`; `None` when it does not fit.
pub fn parse_link_name(name: &str) -> Option<LinkName> {
    let stem = name.strip_suffix(".log")?;
    let mut parts = stem.splitn(3, '_');
    let (pod, namespace, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let (container, id) = match rest.rsplit_once('-') {
        Some((c, id)) if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) => (c, id),
        _ => (rest, ""),
    };
    if pod.is_empty() || namespace.is_empty() || container.is_empty() {
        return None;
    }
    Some(LinkName {
        pod: pod.to_string(),
        namespace: namespace.to_string(),
        container: container.to_string(),
        container_id: id.to_string(),
    })
}

/// Parses a pod log directory name `<namespace>_<pod>_<uid>` into its parts.
pub fn parse_pod_dir(name: &str) -> Option<(&str, &str, &str)> {
    let mut parts = name.splitn(3, '_');
    let (ns, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    (!ns.is_empty() && !pod.is_empty() && !uid.is_empty()).then_some((ns, pod, uid))
}

/// Where a file stands in its container stream's history: older first, live last.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Order {
    /// `<base>.<YYYYMMDD-hhmmss>[.gz]`: older timestamps first.
    Rotated(String),
    /// `<base>.<n>[.gz]`: higher numbers are older.
    Numbered(Reverse<u64>),
    /// `<base>` itself, the file being written.
    Live,
}

/// Classifies `name` relative to the stream's live file name `base`; `None` for
/// files that do not belong to the stream (other restarts, temp files).
pub fn classify(base: &str, name: &str) -> Option<(Order, bool)> {
    if name == base {
        return Some((Order::Live, false));
    }
    let suffix = name.strip_prefix(base)?.strip_prefix('.')?;
    let (suffix, gz) = match suffix.strip_suffix(".gz") {
        Some(s) => (s, true),
        None => (suffix, false),
    };
    if is_timestamp(suffix) {
        return Some((Order::Rotated(suffix.to_string()), gz));
    }
    if !suffix.is_empty() && suffix.len() <= 6 && suffix.bytes().all(|b| b.is_ascii_digit()) {
        return suffix
            .parse()
            .ok()
            .map(|n| (Order::Numbered(Reverse(n)), gz));
    }
    None
}

/// `YYYYMMDD-hhmmss`, as the kubelet names rotated files.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 15
        && b[8] == b'-'
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[9..].iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn kubelet_link_names() {
        let n = parse_link_name(&format!("web-7d4b9c-xk2lp_shop_nginx-{ID}.log")).unwrap();
        assert_eq!(
            n,
            LinkName {
                pod: "web-7d4b9c-xk2lp".into(),
                namespace: "shop".into(),
                container: "nginx".into(),
                container_id: ID.into()
            }
        );
        // Container names may contain dashes.
        let n = parse_link_name(&format!("p_ns_istio-proxy-{ID}.log")).unwrap();
        assert_eq!(n.container, "istio-proxy");
        // No id: the whole rest is the container.
        assert_eq!(
            parse_link_name("p_ns_my-app.log").unwrap().container,
            "my-app"
        );
        assert_eq!(parse_link_name("p_ns_c.log").unwrap().container_id, "");
        assert!(parse_link_name("random.log").is_none());
        assert!(parse_link_name("p_ns_c.txt").is_none());
        assert!(parse_link_name("__.log").is_none());
    }

    #[test]
    fn pod_dirs() {
        assert_eq!(
            parse_pod_dir("shop_web-1_5f0c8a9e-1b2c-4d3e-9f00-aabbccddeeff"),
            Some(("shop", "web-1", "5f0c8a9e-1b2c-4d3e-9f00-aabbccddeeff"))
        );
        assert_eq!(parse_pod_dir("nounderscore"), None);
    }

    #[test]
    fn rotated_siblings_sort_oldest_first_live_last() {
        let names = [
            "0.log",
            "0.log.20261122-101500",
            "0.log.20261122-100000.gz",
            "0.log.20261122-101500.gz.tmp",
            "1.log",
            "0.log.tmp",
        ];
        let mut got: Vec<(Order, bool, &str)> = names
            .iter()
            .filter_map(|n| classify("0.log", n).map(|(o, gz)| (o, gz, *n)))
            .collect();
        got.sort();
        let order: Vec<&str> = got.iter().map(|g| g.2).collect();
        assert_eq!(
            order,
            ["0.log.20261122-100000.gz", "0.log.20261122-101500", "0.log"]
        );
        assert!(got[0].1, "gz flagged");
    }

    #[test]
    fn docker_numbered_rotation_is_newest_first() {
        let base = "abc-json.log";
        let mut got: Vec<Order> = ["abc-json.log", "abc-json.log.1", "abc-json.log.2"]
            .iter()
            .filter_map(|n| classify(base, n))
            .map(|x| x.0)
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                Order::Numbered(Reverse(2)),
                Order::Numbered(Reverse(1)),
                Order::Live
            ]
        );
    }
}
