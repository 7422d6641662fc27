//! Enrichment: what a container's records carry, decided once per container (and
//! again only when its pod's cached metadata changes), never per line.
//!
//! From the file path's fields ([`PathMeta`]) and, when pod metadata is on, the
//! container's pod in the cache, [`Enricher::info`] builds the container's
//! [`ContainerInfo`]: the serialized `kubernetes` object, the destination (group
//! and stream templates may read labels and annotations), the app-level parser and
//! multiline rule (config, overridden by the pod's `kubeship.io/*` annotations),
//! and whether its lines are excluded.
//!
//! The join is by pod UID, from the `/var/log/pods/<ns>_<pod>_<uid>` directory the
//! container's log lives in; only logs whose path tells no UID fall back to the
//! pod's namespace and name.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::Config;
use crate::kube::{Labels, PodCache, PodMeta};
use crate::logs::batch::Destination;
use crate::logs::encode::{AppParser, Fragment, PathMeta, RecordForm, escape_str_into};
use crate::logs::route::Fields;
use kubeship_parsers::Rule;

/// Flush timeout of a multiline rule a pod annotation chose.
const ANNOTATION_MULTILINE_FLUSH_MS: u64 = 1000;

/// Largest `kubernetes` object a record carries, as JSON. A pod's labels and kept
/// annotations are small in practice, but the API server allows ~1.5 MB of them, more
/// than one CloudWatch event once escaped: past this bound they are left out (the
/// records say so in `kubeship_reduced`, counted).
pub const MAX_KUBERNETES_BYTES: usize = 64 * 1024;

/// What a container's records need: where they go and their `kubernetes` object.
#[derive(Debug)]
pub struct ContainerInfo {
    /// Destination group and stream.
    pub dest: Arc<Destination>,
    /// Precomputed `kubernetes` JSON object, in the form the batches take.
    pub kubernetes: Arc<Fragment>,
    /// The pod's labels and annotations were left out of `kubernetes`: together
    /// larger than [`crate::logs::enrich::MAX_KUBERNETES_BYTES`].
    pub kubernetes_reduced: bool,
    /// Multiline rule and flush timeout for this container, if any.
    pub multiline: Option<(Rule, u64)>,
    /// App-level parser for this container (`kubeship.io/parser`), if any.
    pub parser: Option<AppParser>,
    /// Its pod asked for its lines not to be shipped (`kubeship.io/exclude*`).
    pub excluded: bool,
    /// Pod metadata is on but this container's pod was not found: its records
    /// carry path metadata only (counted as misses).
    pub miss: bool,
    /// Events hold only the log text (`output.event: log`), not the record JSON.
    pub log_only: bool,
}

/// A container's pod as the cache had it: its metadata and its namespace's labels.
#[derive(Debug, Clone)]
pub struct CachedPod {
    /// The pod.
    pub pod: Arc<PodMeta>,
    /// Its namespace's labels, when namespaces are watched and it is known.
    pub namespace_labels: Option<Labels>,
}

impl CachedPod {
    /// Whether this is the same metadata as `other` (the cache replaces an entry
    /// only when it changed, so identity is enough).
    pub fn same_as(&self, other: &CachedPod) -> bool {
        Arc::ptr_eq(&self.pod, &other.pod)
            && match (&self.namespace_labels, &other.namespace_labels) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

/// A problem with a pod's `kubeship.io/*` annotations (logged, rate-limited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationProblem {
    /// `namespace/pod`.
    pub pod: String,
    /// What is wrong.
    pub message: String,
}

/// Builds containers' [`ContainerInfo`] from the config and the pod cache.
pub struct Enricher {
    cfg: Arc<Config>,
    cache: Option<Arc<PodCache>>,
    /// The form the sink wants records in (the `kubernetes` object is prepared in it).
    form: RecordForm,
}

impl Enricher {
    /// An enricher; `cache` is `None` when pod metadata is off.
    pub fn new(cfg: Arc<Config>, cache: Option<Arc<PodCache>>, form: RecordForm) -> Self {
        Self { cfg, cache, form }
    }

    /// The cache, when pod metadata is on.
    pub fn cache(&self) -> Option<&PodCache> {
        self.cache.as_deref()
    }

    /// The container's pod in the cache.
    pub fn lookup(&self, path: &PathMeta) -> Option<CachedPod> {
        let cache = self.cache.as_ref()?;
        let pod = if path.pod_id.is_empty() {
            cache.pod_by_name(&path.namespace_name, &path.pod_name)?
        } else {
            cache.pod(&path.pod_id)?
        };
        let namespace_labels = if self.cfg.kubernetes.namespace_labels {
            cache.namespace_labels(&pod.namespace)
        } else {
            None
        };
        Some(CachedPod {
            pod,
            namespace_labels,
        })
    }

    /// What the container's records carry. `found` is its pod, `None` for path
    /// metadata only. Problems with the pod's annotations go to `problems`.
    pub fn info(
        &self,
        path: &PathMeta,
        found: Option<&CachedPod>,
        problems: &mut Vec<AnnotationProblem>,
    ) -> ContainerInfo {
        let cfg = &self.cfg;
        let pod = found.map(|f| &*f.pod);
        let container = pod.and_then(|p| p.container(&path.container_name));
        let controls = pod
            .map(|p| p.controls.for_container(&path.container_name))
            .unwrap_or_default();
        let problem = |message: String| AnnotationProblem {
            pod: format!("{}/{}", path.namespace_name, path.pod_name),
            message,
        };
        let fields = Fields {
            cluster: &cfg.cluster,
            node: &path.host,
            namespace: &path.namespace_name,
            pod: &path.pod_name,
            container: &path.container_name,
            container_id: &path.docker_id,
            labels: pod.map(|p| &p.labels),
            annotations: pod.map(|p| &p.annotations),
        };
        let dest = Arc::new(Destination {
            group: crate::logs::route::sanitize_group(&cfg.output.group.render(&fields)),
            stream: crate::logs::route::sanitize_stream(&cfg.output.stream.render(&fields)),
        });
        let mut multiline = cfg
            .logs
            .multiline
            .iter()
            .find(|m| m.matches(&path.namespace_name, &path.pod_name, &path.container_name))
            .map(|m| (m.rule.clone(), m.flush_timeout.as_millis() as u64));
        if let Some(name) = controls.multiline {
            match cfg.logs.multiline_rule(name) {
                Some(r) => multiline = Some((r, ANNOTATION_MULTILINE_FLUSH_MS)),
                None => problems.push(problem(format!(
                    "unknown multiline rule `{name}` in its kubeship.io/multiline annotation \
                     (java, python, go or a logs.multiline_rules name); ignored"
                ))),
            }
        }
        let parser = controls.parser.and_then(|spec| {
            let parsed = match spec {
                "json" => Some(AppParser::Json),
                "logfmt" => Some(AppParser::Logfmt),
                other => other
                    .strip_prefix("regex:")
                    .and_then(|name| cfg.logs.parsers.get(name))
                    .map(|re| AppParser::Regex(re.clone())),
            };
            if parsed.is_none() {
                problems.push(problem(format!(
                    "unknown parser `{spec}` in its kubeship.io/parser annotation (json, logfmt \
                     or regex:<a logs.parsers name>); ignored"
                )));
            }
            parsed
        });
        let mut kubernetes = self.fragment(path, found, container, true);
        let kubernetes_reduced = kubernetes.len() > MAX_KUBERNETES_BYTES;
        if kubernetes_reduced {
            problems.push(problem(format!(
                "its labels and annotations make the records' kubernetes object {} bytes, more \
                 than {MAX_KUBERNETES_BYTES}; its records carry it without them",
                kubernetes.len()
            )));
            kubernetes = self.fragment(path, found, container, false);
        }
        ContainerInfo {
            dest,
            kubernetes: Arc::new(Fragment::new(kubernetes, self.form)),
            kubernetes_reduced,
            multiline,
            parser,
            excluded: controls.excluded,
            miss: self.cache.is_some() && found.is_none(),
            log_only: cfg.output.event == crate::config::EventFormat::Log,
        }
    }

    /// The `kubernetes` object, in Fluent Bit's field order; what is unknown is
    /// left out (the path fields are always there), and so are the pod's and its
    /// namespace's labels and annotations unless `maps`.
    fn fragment(
        &self,
        path: &PathMeta,
        found: Option<&CachedPod>,
        container: Option<&crate::kube::ContainerMeta>,
        maps: bool,
    ) -> Vec<u8> {
        let mut o = JsonObject::new(256);
        let pod = found.map(|f| &*f.pod);
        o.str("pod_name", &path.pod_name);
        o.str("namespace_name", &path.namespace_name);
        o.str("pod_id", &path.pod_id);
        if let Some(p) = pod {
            o.str_if("pod_ip", &p.pod_ip);
        }
        if let Some(p) = pod.filter(|_| maps) {
            let k = &self.cfg.kubernetes;
            if k.labels {
                o.map_if("labels", &p.labels);
            }
            let kept = p
                .annotations
                .iter()
                .filter(|(key, _)| k.keeps_annotation(key));
            o.map_iter_if("annotations", kept);
        }
        o.str("host", &path.host);
        o.str("container_name", &path.container_name);
        let docker_id = match (&*path.docker_id, container) {
            ("", Some(c)) => &*c.container_id,
            (id, _) => id,
        };
        o.str("docker_id", docker_id);
        if let Some(c) = container {
            o.str_if("container_hash", &c.image_id);
            o.str_if("container_image", &c.image);
        }
        if let Some(w) = pod.and_then(|p| p.workload.as_ref()) {
            o.str("workload_kind", &w.kind);
            o.str("workload_name", &w.name);
        }
        if let Some(labels) = found
            .and_then(|f| f.namespace_labels.as_ref())
            .filter(|_| maps)
        {
            o.map_if("namespace_labels", labels);
        }
        o.finish()
    }
}

/// A JSON object written field by field.
struct JsonObject {
    out: Vec<u8>,
    first: bool,
}

impl JsonObject {
    fn new(capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity);
        out.push(b'{');
        Self { out, first: true }
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.quoted(k);
        self.out.push(b':');
    }

    fn quoted(&mut self, s: &str) {
        self.out.push(b'"');
        escape_str_into(s, &mut self.out);
        self.out.push(b'"');
    }

    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        self.quoted(v);
    }

    fn str_if(&mut self, k: &str, v: &str) {
        if !v.is_empty() {
            self.str(k, v);
        }
    }

    fn map_if(&mut self, k: &str, m: &BTreeMap<String, String>) {
        self.map_iter_if(k, m.iter());
    }

    fn map_iter_if<'a>(&mut self, k: &str, it: impl Iterator<Item = (&'a String, &'a String)>) {
        let mut it = it.peekable();
        if it.peek().is_none() {
            return;
        }
        self.key(k);
        self.out.push(b'{');
        for (i, (key, v)) in it.enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.quoted(key);
            self.out.push(b':');
            self.quoted(v);
        }
        self.out.push(b'}');
    }

    fn finish(mut self) -> Vec<u8> {
        self.out.push(b'}');
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::ContainerMeta;
    use crate::kube::meta::{Controls, Workload};

    fn config(extra: &str) -> Arc<Config> {
        let output = if extra.contains("output:") {
            ""
        } else {
            "output: {local: {dir: ./o}}\n"
        };
        let yaml = format!("cluster: c1\nnode_name: n1\nstate_dir: ./s\n{output}{extra}");
        let env = |k: &str| (k == "KUBERNETES_SERVICE_HOST").then(|| "10.0.0.1".to_string());
        Arc::new(crate::config::load_str(&yaml, std::path::Path::new("k.yaml"), &env).unwrap())
    }

    fn path() -> PathMeta {
        PathMeta {
            pod_name: "web-1".into(),
            namespace_name: "shop".into(),
            pod_id: "u-1".into(),
            host: "n1".into(),
            container_name: "app".into(),
            docker_id: "ab".repeat(32),
        }
    }

    fn pod() -> PodMeta {
        PodMeta {
            uid: "u-1".into(),
            name: "web-1".into(),
            namespace: "shop".into(),
            pod_ip: "10.1.2.3".into(),
            phase: "Running".into(),
            labels: BTreeMap::from([("app".into(), "web".into()), ("team".into(), "a\"b".into())]),
            annotations: BTreeMap::from([
                ("keep.io/x".into(), "1".into()),
                ("route.io/r".into(), "r".into()),
            ]),
            workload: Some(Workload {
                kind: "StatefulSet".into(),
                name: "web".into(),
            }),
            containers: vec![ContainerMeta {
                name: "app".into(),
                image: "nginx:1".into(),
                image_id: "nginx@sha256:ff".into(),
                container_id: "cd".repeat(32),
                ports: Vec::new(),
            }],
            controls: Controls::default(),
        }
    }

    fn json(v: &[u8]) -> serde_json::Value {
        serde_json::from_slice(v).expect("fragment is JSON")
    }

    #[test]
    fn full_fragment_has_every_field_in_order() {
        let cfg = config("kubernetes: {annotations: [\"keep.io/*\"]}\n");
        let e = Enricher::new(Arc::clone(&cfg), None, RecordForm::Json);
        let found = CachedPod {
            pod: Arc::new(pod()),
            namespace_labels: Some(Arc::new(BTreeMap::from([("env".into(), "prod".into())]))),
        };
        let frag = e.fragment(&path(), Some(&found), found.pod.container("app"), true);
        let v = json(&frag);
        let text = String::from_utf8(frag).unwrap();
        let mut keys: Vec<(usize, &str)> = v
            .as_object()
            .unwrap()
            .keys()
            .map(|k| (text.find(&format!("\"{k}\":")).unwrap(), k.as_str()))
            .collect();
        keys.sort();
        let keys: Vec<&str> = keys.into_iter().map(|(_, k)| k).collect();
        assert_eq!(
            keys,
            [
                "pod_name",
                "namespace_name",
                "pod_id",
                "pod_ip",
                "labels",
                "annotations",
                "host",
                "container_name",
                "docker_id",
                "container_hash",
                "container_image",
                "workload_kind",
                "workload_name",
                "namespace_labels"
            ]
        );
        assert_eq!(v["labels"]["team"], "a\"b");
        assert_eq!(v["annotations"], serde_json::json!({"keep.io/x": "1"}));
        assert_eq!(
            v["docker_id"],
            "ab".repeat(32),
            "the path's container id wins"
        );
        assert_eq!(v["namespace_labels"]["env"], "prod");
    }

    #[test]
    fn path_only_fragment_is_the_six_path_fields() {
        let cfg = config("");
        let e = Enricher::new(cfg, None, RecordForm::Json);
        let v = json(&e.fragment(&path(), None, None, true));
        assert_eq!(v.as_object().unwrap().len(), 6);
        assert_eq!(v["pod_id"], "u-1");
    }

    #[test]
    fn annotations_choose_parser_multiline_and_exclusion() {
        let cfg = config(
            "logs:\n  parsers: [{name: kv, regex: '(?P<k>\\w+)'}]\n  multiline_rules: [{name: ts, start_pattern: '^\\d'}]\n",
        );
        let e = Enricher::new(cfg, None, RecordForm::Json);
        let mut p = pod();
        p.controls.parser.insert(None, "regex:kv".into());
        p.controls.multiline.insert(Some("app".into()), "ts".into());
        let found = CachedPod {
            pod: Arc::new(p),
            namespace_labels: None,
        };
        let mut problems = Vec::new();
        let info = e.info(&path(), Some(&found), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(matches!(info.parser, Some(AppParser::Regex(_))));
        assert!(matches!(
            info.multiline,
            Some((kubeship_parsers::Rule::Custom(_), 1000))
        ));
        assert!(!info.excluded);

        let mut p = pod();
        p.controls.parser.insert(None, "yaml".into());
        p.controls.multiline.insert(None, "nope".into());
        p.controls.exclude_containers = vec!["app".into()];
        let found = CachedPod {
            pod: Arc::new(p),
            namespace_labels: None,
        };
        let info = e.info(&path(), Some(&found), &mut problems);
        assert!(info.parser.is_none() && info.multiline.is_none());
        assert!(info.excluded);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].message.contains("`nope`"), "{problems:?}");
    }

    #[test]
    fn routing_reads_labels_and_annotations() {
        let cfg = config(
            "output: {local: {dir: ./o}, group: \"/eks/{label:app}\", stream: \"{annotation:route.io/r}-{container}\"}\n",
        );
        let e = Enricher::new(cfg, None, RecordForm::Json);
        let found = CachedPod {
            pod: Arc::new(pod()),
            namespace_labels: None,
        };
        let info = e.info(&path(), Some(&found), &mut Vec::new());
        assert_eq!(info.dest.group, "/eks/web");
        assert_eq!(info.dest.stream, "r-app");
        let info = e.info(&path(), None, &mut Vec::new());
        assert_eq!(info.dest.group, "/eks/");
    }

    #[test]
    fn lookup_joins_by_uid_and_falls_back_to_the_name_without_one() {
        let cache = Arc::new(PodCache::new(Box::new(|| {})));
        let e = Enricher::new(config(""), Some(Arc::clone(&cache)), RecordForm::Json);
        let mut old = pod();
        old.uid = "u-0".into();
        old.pod_ip = "10.0.0.1".into();
        cache.apply(old);
        cache.delete("u-0", std::time::Instant::now());
        cache.apply(pod());
        // The path's UID picks its own pod, deleted or not.
        let mut p = path();
        p.pod_id = "u-0".into();
        assert_eq!(e.lookup(&p).unwrap().pod.pod_ip, "10.0.0.1");
        // Without a UID in the path: the pod living under that name now.
        p.pod_id.clear();
        assert_eq!(e.lookup(&p).unwrap().pod.uid, "u-1");
        // A UID the cache does not know: no metadata, never another pod's.
        p.pod_id = "u-9".into();
        assert!(e.lookup(&p).is_none());
    }
}
