//! Pod metadata from the (fake) Kubernetes API server: enrichment end to end.
//!
//! Each test runs the real agent against [`FakeApi`] (the list/watch wire protocol of one
//! node's pods and of namespaces) and a kubelet-like node layout, and checks the records in the
//! local sink. Pods are joined by the UID of their log directory, so a test's [`Pod`] takes
//! the UID of its container ([`ContainerInfo::pod_uid`]).

use std::time::{Duration, Instant};

use kubeship_tests::{
    Agent, AgentConfig, Container, ContainerInfo, Delivery, FakeApi, Format, KubeResource, Node,
    Pod, RawRecord, metric_sum, secs, time_for, wait_for, wait_until,
};
use serde_json::json;

const NODE: &str = "node-1";
/// The local sink's directory for the default group `/aws/containerinsights/test/application`.
const GROUP_DIR: &str = "aws/containerinsights/test/application";

const MISSES: &str = "kubeship_kube_metadata_misses_total";
const PODS_CACHED: &str = "kubeship_kube_pods_cached";
const FILES_TAILED: &str = "kubeship_log_files_tailed";
const WATCH_ERRORS: &str = "kubeship_kube_watch_errors_total";
const DROPPED: &str = "kubeship_log_records_dropped_total";
const LINES_READ: &str = "kubeship_log_lines_read_total";
const PARSE_FAILURES: &str = "kubeship_log_parse_failures_total";

/// A node and a fake API server serving its pods, with the server's kubeconfig in the node
/// root (`./kubeconfig` for the agent).
fn setup() -> (Node, FakeApi) {
    let node = Node::new();
    let api = FakeApi::start(NODE);
    api.write_kubeconfig(&node.root().join("kubeconfig"));
    (node, api)
}

/// The tests' config with pod metadata from the fake API server, plus `extra` raw lines under
/// `kubernetes:`.
fn kube_config(extra: &[&str]) -> AgentConfig {
    let mut lines = vec!["kubeconfig: ./kubeconfig".to_string()];
    lines.extend(extra.iter().map(|l| l.to_string()));
    AgentConfig {
        kubernetes: Some(lines),
        ..AgentConfig::default()
    }
}

/// Starts the agent and waits until it is ready and has asked for its pod watch (so its first
/// list is done).
fn start(node: &Node, cfg: &AgentConfig, api: &FakeApi) -> Agent {
    let before = api.requests().pods_watch;
    let mut agent = Agent::start(node, cfg);
    api.wait_for_requests(|r| r.pods_watch > before, secs(30), "the agent's pod watch");
    agent.wait_ready(secs(30));
    agent
}

/// A pod running on this node, with `c`'s pod UID, namespace and name and one running
/// container `c` of image `image`.
fn pod_of(c: &ContainerInfo, image: &str) -> Pod {
    Pod::new(&c.namespace, &c.pod)
        .uid(&c.pod_uid)
        .node(NODE)
        .running_container(&c.name, image)
}

/// Waits until the local sink holds at least `n` records of container `name`; returns them
/// (file order). Panics after 30 s or when the agent exits.
#[track_caller]
fn wait_records(node: &Node, agent: &mut Agent, name: &str, n: usize) -> Vec<RawRecord> {
    let mut got = Vec::new();
    let mut exited = false;
    let ok = wait_until(
        || {
            got = node.raw_records_of(name);
            exited = !agent.is_running();
            got.len() >= n || exited
        },
        secs(30),
    );
    agent.assert_running(&format!("while waiting for {n} records of {name}"));
    assert!(
        ok && got.len() >= n,
        "{} of {n} records of container {name} after 30 s; stderr tail:\n{}",
        got.len(),
        agent.stderr_tail(30)
    );
    got
}

/// Waits until metric `name{labels}` (0 before its first series; the agent must expose
/// `name`) satisfies `cond`; returns its value.
#[track_caller]
fn wait_metric(
    agent: &Agent,
    name: &str,
    labels: &[(&str, &str)],
    cond: impl Fn(f64) -> bool,
    what: &str,
) -> f64 {
    let mut v = 0.0;
    let ok = wait_until(
        || {
            let Ok(text) = agent.metrics() else {
                return false;
            };
            v = metric_sum(&text, name, labels);
            cond(v)
        },
        secs(30),
    );
    assert!(
        ok,
        "timed out waiting for {what}: {name}{labels:?} = {v}; stderr tail:\n{}",
        agent.stderr_tail(30)
    );
    v
}

/// Checks that `r` carries the full metadata of `pod` as the fake API server serves it: UID,
/// IP, labels, the container's image and imageID, and the workload `(kind, name)`.
#[track_caller]
fn assert_full(r: &RawRecord, pod: &Pod, workload: (&str, &str)) {
    let p = pod.to_json();
    let k = r.kubernetes();
    let line = &r.line;
    assert_eq!(k["pod_id"], p["metadata"]["uid"], "pod_id: {line}");
    assert_eq!(k["pod_name"], p["metadata"]["name"], "pod_name: {line}");
    assert_eq!(k["pod_ip"], p["status"]["podIP"], "pod_ip: {line}");
    assert_eq!(k["labels"], p["metadata"]["labels"], "labels: {line}");
    let status = p["status"]["containerStatuses"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == k["container_name"]))
        .unwrap_or_else(|| panic!("the pod has no container of record {line}"));
    assert_eq!(k["container_image"], status["image"], "image: {line}");
    assert_eq!(k["container_hash"], status["imageID"], "imageID: {line}");
    assert_eq!(k["workload_kind"], workload.0, "workload_kind: {line}");
    assert_eq!(k["workload_name"], workload.1, "workload_name: {line}");
    assert_eq!(k["host"], NODE, "host: {line}");
}

/// Checks that `r` carries path metadata only: exactly the six fields the log path tells.
#[track_caller]
fn assert_path_only(r: &RawRecord, c: &ContainerInfo) {
    let want = json!({
        "pod_name": c.pod,
        "namespace_name": c.namespace,
        "pod_id": c.pod_uid,
        "host": NODE,
        "container_name": c.name,
        "docker_id": c.container_id,
    });
    assert_eq!(r.kubernetes(), &want, "not path metadata only: {}", r.line);
}

/// Records sorted by sequence number (sequenced lines only).
fn by_seq(mut recs: Vec<RawRecord>) -> Vec<RawRecord> {
    recs.sort_by_key(|r| r.seq());
    recs
}

/// Appends one framed stdout line with an app message of the test's choice.
fn write_msg(c: &mut Container, i: u64, msg: &str) {
    c.write_framed(&time_for(i), "stdout", msg.as_bytes(), false);
}

/// Records of a pod the API server knows carry its metadata, joined by the pod UID of the
/// log's directory.
#[test]
fn records_carry_pod_metadata() {
    let node = Node::new();
    let api = FakeApi::start("node-1");
    api.write_kubeconfig(&node.root().join("kubeconfig"));
    let mut c = node.add_container("shop", "web-5f6b7-x2x9z", "nginx", Format::Cri);
    let pod = Pod::new("shop", "web-5f6b7-x2x9z")
        .uid(&c.info().pod_uid)
        .node("node-1")
        .ip("10.0.3.17")
        .label("app", "web")
        .label("pod-template-hash", "5f6b7")
        .annotation("team.io/owner", "payments")
        .annotation("not.kept/x", "1")
        .owner("ReplicaSet", "web-5f6b7")
        .running_container("nginx", "nginx:1.27");
    api.upsert_pod(&pod);
    c.write_lines(5);
    let cfg = AgentConfig {
        kubernetes: Some(vec![
            "kubeconfig: ./kubeconfig".into(),
            "annotations: [\"team.io/*\"]".into(),
        ]),
        ..AgentConfig::default()
    };
    let mut agent = Agent::start(&node, &cfg);
    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &[("nginx", 5)], secs(30));
    api.wait_for_watch(KubeResource::Pods, secs(10));
    let out = std::fs::read_to_string(
        node.out_dir()
            .join("aws/containerinsights/test/application/web-5f6b7-x2x9z_shop_nginx.jsonl"),
    )
    .expect("sink file");
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON record");
        let k = &v["kubernetes"];
        assert_eq!(k["pod_ip"], "10.0.3.17", "{line}");
        assert_eq!(k["labels"]["app"], "web", "{line}");
        assert_eq!(
            k["annotations"],
            serde_json::json!({"team.io/owner": "payments"})
        );
        assert_eq!(k["workload_kind"], "Deployment", "{line}");
        assert_eq!(k["workload_name"], "web", "{line}");
        assert_eq!(k["container_image"], "nginx:1.27", "{line}");
        assert!(
            k["container_hash"].as_str().unwrap().contains("sha256:"),
            "{line}"
        );
        assert_eq!(k["pod_id"], c.info().pod_uid.as_str(), "{line}");
    }
    let r = api.requests();
    assert_eq!((r.pods_list, r.pods_watch), (1, 1), "{}", api.summary());
    api.assert_no_unexpected();
    agent.sigterm();
    assert!(agent.wait_exit(secs(30)).success());
}

/// A pod that is created, writes 10 lines and is deleted within 2 s while the agent runs gets
/// full metadata on all 10 lines: the pod reaches the cache through the watch, and its
/// deletion does not take the metadata away from lines read after it.
#[test]
fn short_lived_pod_gets_full_metadata_on_every_line() {
    let (node, api) = setup();
    let mut agent = start(&node, &kube_config(&[]), &api);
    let t0 = Instant::now();
    let mut c = node.add_container("jobs", "report-28934820-x7k2p", "report", Format::Cri);
    let pod = pod_of(c.info(), "busybox:1.36")
        .ip("10.0.9.1")
        .label("app", "report")
        .owner("Job", "report-28934820");
    api.upsert_pod(&pod);
    c.write_lines(5);
    // The app writes before and after its pod reached the agent (through the watch: the
    // agent's list was done before the pod existed), and is deleted right after.
    wait_metric(
        &agent,
        PODS_CACHED,
        &[],
        |v| v >= 1.0,
        "the pod in the cache",
    );
    c.write_lines(5);
    api.delete_pod("jobs", "report-28934820-x7k2p");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "the pod lived {:?}, not under 2 s",
        t0.elapsed()
    );

    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &[("report", 10)], secs(30));
    let recs = node.raw_records_of("report");
    assert_eq!(recs.len(), 10, "exactly once each");
    for r in &recs {
        assert_full(r, &pod, ("CronJob", "report"));
    }
    assert_eq!(agent.metric_or_zero(MISSES, &[]), 0.0, "no metadata misses");
    api.assert_no_unexpected();
    agent.stop(secs(30));
}

/// The log file appears before the pod reaches the API server (the kubelet is faster than the
/// watch): the agent does not read the container until its pod is in the cache (within
/// `metadata_wait_ms`), so every line gets the pod's metadata and nothing counts as a miss.
#[test]
fn log_written_before_the_pod_reaches_the_api_waits_for_it() {
    let (node, api) = setup();
    let mut agent = start(&node, &kube_config(&["metadata_wait_ms: 10000"]), &api);
    let mut c = node.add_container("jobs", "sync-28934821-p4r8t", "sync", Format::Cri);
    c.write_lines(10);
    // The agent found the file and holds it open while its pod is unknown; nothing is read
    // from it meanwhile, so nothing is shipped.
    wait_metric(
        &agent,
        FILES_TAILED,
        &[],
        |v| v >= 1.0,
        "the file held open",
    );
    assert_eq!(
        agent.metric_or_zero(LINES_READ, &[]),
        0.0,
        "lines read before the pod was known"
    );
    assert!(
        node.raw_records_of("sync").is_empty(),
        "records shipped before the pod was known: {:?}",
        node.raw_records_of("sync")
            .iter()
            .map(|r| &r.line)
            .collect::<Vec<_>>()
    );
    let pod = pod_of(c.info(), "busybox:1.36")
        .ip("10.0.9.2")
        .label("app", "sync")
        .owner("Job", "sync-28934821");
    let upserted = Instant::now();
    api.upsert_pod(&pod);
    api.delete_pod("jobs", "sync-28934821-p4r8t");

    let recs = wait_records(&node, &mut agent, "sync", 10);
    assert!(
        upserted.elapsed() < Duration::from_secs(8),
        "the records waited for metadata_wait_ms instead of the pod: {:?} after the pod",
        upserted.elapsed()
    );
    assert_eq!(recs.len(), 10);
    for r in &recs {
        assert_full(r, &pod, ("CronJob", "sync"));
    }
    assert_eq!(agent.metric_or_zero(MISSES, &[]), 0.0, "no metadata misses");
    agent.stop(secs(30));
}

/// A StatefulSet pod deleted and recreated under the same name is a new pod (new UID, IP,
/// labels): each container's records carry the metadata of their own pod, never the other's.
/// The old pod's last lines are read after the new pod is known (a reader lagging behind),
/// and still carry the old pod's metadata (joined by UID, kept through the deletion grace).
#[test]
fn same_name_recreation_keeps_each_pods_metadata() {
    let (node, api) = setup();
    let mut agent = start(&node, &kube_config(&[]), &api);
    let mut a = node.add_container("data", "db-0", "postgres", Format::Cri);
    let pod_a = pod_of(a.info(), "postgres:16.1")
        .ip("10.0.5.1")
        .label("app", "db")
        .label("version", "1")
        .owner("StatefulSet", "db");
    api.upsert_pod(&pod_a);
    a.write_lines(5);
    wait_records(&node, &mut agent, "postgres", 5);
    api.delete_pod("data", "db-0");

    let mut b = node.add_container("data", "db-0", "postgres", Format::Cri);
    assert_ne!(a.info().pod_uid, b.info().pod_uid, "a new pod directory");
    let pod_b = pod_of(b.info(), "postgres:16.2")
        .ip("10.0.5.2")
        .label("app", "db")
        .label("version", "2")
        .owner("StatefulSet", "db");
    api.upsert_pod(&pod_b);
    b.write_lines(5);
    wait_records(&node, &mut agent, "postgres", 10);
    // The old pod's last lines, read now that the new pod is in the cache.
    a.write_lines(3);

    let recs = wait_records(&node, &mut agent, "postgres", 13);
    assert_eq!(recs.len(), 13);
    let (of_a, of_b): (Vec<_>, Vec<_>) = recs
        .iter()
        .partition(|r| r.pod_id() == a.info().pod_uid.as_str());
    assert_eq!((of_a.len(), of_b.len()), (8, 5), "records of each pod");
    for r in of_a {
        assert_full(r, &pod_a, ("StatefulSet", "db"));
        assert_eq!(r.kubernetes()["labels"]["version"], "1");
    }
    for r in of_b {
        assert_full(r, &pod_b, ("StatefulSet", "db"));
        assert_eq!(r.kubernetes()["labels"]["version"], "2");
    }
    assert_eq!(agent.metric_or_zero(MISSES, &[]), 0.0);
    agent.stop(secs(30));
}

/// How the API server fails in [`api_down_then_back`].
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Connections closed without an answer.
    Refuse,
    /// 503 ServiceUnavailable.
    Unavailable,
}

/// With the watch up, the API server goes down: a pod created meanwhile is unknown to the
/// agent, its lines ship after `metadata_wait_ms` with path metadata, counted as misses, and
/// the watch errors are counted. The server comes back: without a restart, the watch resumes
/// (no relist: its resource version is still valid), the same container's later lines carry
/// its pod's metadata, and a pod created after the recovery gets full metadata.
fn api_down_then_back(fault: Fault) {
    let (node, api) = setup();
    let mut agent = start(&node, &kube_config(&["metadata_wait_ms: 500"]), &api);
    match fault {
        Fault::Refuse => api.set_outage(true),
        Fault::Unavailable => api.set_unavailable(true),
    }
    let created = Instant::now();
    let mut c = node.add_container("shop", "cart-7c9d4-q2w8e", "cart", Format::Cri);
    let pod = pod_of(c.info(), "shop/cart:3.2")
        .ip("10.0.7.1")
        .label("app", "cart")
        .label("pod-template-hash", "7c9d4")
        .owner("ReplicaSet", "cart-7c9d4");
    api.upsert_pod(&pod); // created while the agent cannot see it
    c.write_lines(5);
    let recs = wait_records(&node, &mut agent, "cart", 5);
    assert!(
        created.elapsed() >= Duration::from_millis(500),
        "shipped {:?} after the container appeared, before metadata_wait_ms",
        created.elapsed()
    );
    for r in &recs {
        assert_path_only(r, c.info());
    }
    assert_eq!(
        wait_metric(&agent, MISSES, &[], |v| v >= 5.0, "5 misses"),
        5.0,
        "one miss per record"
    );
    wait_metric(
        &agent,
        WATCH_ERRORS,
        &[("resource", "pods")],
        |v| v > 0.0,
        "pod watch errors to be counted",
    );
    // The agent keeps trying (with backoff) and meets the fault itself, not only the broken
    // connection of its watch.
    api.wait_for_requests(
        |r| match fault {
            Fault::Refuse => r.refused > 0,
            Fault::Unavailable => r.unavailable > 0,
        },
        secs(30),
        "a request during the outage",
    );
    agent.assert_running("during the API outage");

    match fault {
        Fault::Refuse => api.set_outage(false),
        Fault::Unavailable => api.set_unavailable(false),
    }
    wait_metric(
        &agent,
        PODS_CACHED,
        &[],
        |v| v >= 1.0,
        "the pod created during the outage to reach the cache",
    );
    c.write_lines(5);
    let recs = by_seq(wait_records(&node, &mut agent, "cart", 10));
    assert_eq!(recs.len(), 10);
    for r in &recs[..5] {
        assert_path_only(r, c.info());
    }
    for r in &recs[5..] {
        assert_full(r, &pod, ("Deployment", "cart"));
    }

    let mut late = node.add_container("shop", "checkout-0", "checkout", Format::Cri);
    let late_pod = pod_of(late.info(), "shop/checkout:1.0")
        .ip("10.0.7.2")
        .label("app", "checkout")
        .owner("StatefulSet", "checkout");
    api.upsert_pod(&late_pod);
    late.write_lines(5);
    for r in &wait_records(&node, &mut agent, "checkout", 5) {
        assert_full(r, &late_pod, ("StatefulSet", "checkout"));
    }
    assert_eq!(
        agent.metric_or_zero(MISSES, &[]),
        5.0,
        "no miss after the recovery"
    );
    let r = api.requests();
    assert_eq!(
        r.pods_list,
        1,
        "resumed without a relist: {}",
        api.summary()
    );
    api.assert_no_unexpected();
    agent.stop(secs(30));
}

#[test]
fn api_outage_and_recovery() {
    api_down_then_back(Fault::Refuse);
}

#[test]
fn api_unavailable_503_and_recovery() {
    api_down_then_back(Fault::Unavailable);
}

/// A slow API server (every response head 2 s late) at the agent's start: the container
/// present at start does not wait for the list beyond `metadata_wait_ms`; its lines flow with
/// path metadata (counted as misses); once the slow list arrives, its later lines carry the
/// pod's metadata. Slowness is not an error.
#[test]
fn slow_api_at_start_does_not_hold_records_back() {
    let (node, api) = setup();
    let mut c = node.add_container("shop", "search-6b8c5-m3n4p", "search", Format::Cri);
    let pod = pod_of(c.info(), "shop/search:2.0")
        .ip("10.0.8.1")
        .label("app", "search")
        .label("pod-template-hash", "6b8c5")
        .owner("ReplicaSet", "search-6b8c5");
    api.upsert_pod(&pod);
    c.write_lines(5);
    api.set_delay(Duration::from_secs(2));
    let mut agent = Agent::start(&node, &kube_config(&["metadata_wait_ms: 300"]));
    let started = Instant::now();
    let recs = wait_records(&node, &mut agent, "search", 5);
    assert!(
        agent.metric_or_zero(PODS_CACHED, &[]) == 0.0,
        "the list arrived before the records ({:?} after the start): the test proves nothing",
        started.elapsed()
    );
    for r in &recs {
        assert_path_only(r, c.info());
    }
    api.set_delay(Duration::ZERO);
    wait_metric(
        &agent,
        PODS_CACHED,
        &[],
        |v| v >= 1.0,
        "the slow list to fill the cache",
    );
    c.write_lines(5);
    let recs = by_seq(wait_records(&node, &mut agent, "search", 10));
    for r in &recs[5..] {
        assert_full(r, &pod, ("Deployment", "search"));
    }
    assert_eq!(agent.metric_or_zero(MISSES, &[]), 5.0);
    assert_eq!(
        agent.metric_or_zero(WATCH_ERRORS, &[]),
        0.0,
        "a slow answer is not an error"
    );
    assert_eq!(api.requests().pods_list, 1, "{}", api.summary());
    api.assert_no_unexpected();
    agent.stop(secs(30));
}

/// A pod with ~100 KiB of annotations (a big last-applied-configuration): records carry only
/// the allow-listed annotation and stay small, and the agent's memory stays bounded, also
/// through 30 updates of that pod.
#[test]
fn big_annotations_are_not_carried_or_kept() {
    let (node, api) = setup();
    let mut agent = start(&node, &kube_config(&["annotations: [\"team.io/*\"]"]), &api);
    let mut c = node.add_container("shop", "fat-0", "fat", Format::Cri);
    let pod = pod_of(c.info(), "shop/fat:1.0")
        .label("app", "fat")
        .owner("StatefulSet", "fat")
        .annotation("team.io/owner", "payments")
        .bulk_annotations(100 * 1024);
    let size = pod.to_json().to_string().len();
    assert!(size > 100 * 1024, "the pod is {size} bytes");
    api.upsert_pod(&pod);
    c.write_lines(10);
    let recs = wait_records(&node, &mut agent, "fat", 10);
    for r in &recs {
        assert_full(r, &pod, ("StatefulSet", "fat"));
        assert_eq!(
            r.kubernetes()["annotations"],
            json!({"team.io/owner": "payments"})
        );
        assert!(
            r.line.len() < 1024,
            "a record of {} bytes: {}",
            r.line.len(),
            r.line
        );
    }
    // 30 updates (MODIFIED events of ~100 KiB each); the last one is seen by the records.
    for rev in 0..30 {
        api.upsert_pod(&pod.clone().label("rev", &rev.to_string()));
    }
    let last = pod.clone().label("rev", "29");
    wait_for(
        || {
            c.write_lines(1);
            node.raw_records_of("fat")
                .iter()
                .any(|r| r.kubernetes()["labels"]["rev"] == "29")
        },
        secs(30),
        "a record carrying the last update",
    );
    let rss = agent.rss_bytes().expect("agent RSS");
    let peak = agent.peak_rss_bytes().expect("agent peak RSS");
    eprintln!("agent RSS {} KiB, peak {} KiB", rss >> 10, peak >> 10);
    assert!(
        peak < 100 << 20,
        "peak RSS {} MiB (now {} MiB)",
        peak >> 20,
        rss >> 20
    );
    let recs = by_seq(node.raw_records_of("fat"));
    assert_full(recs.last().expect("records"), &last, ("StatefulSet", "fat"));
    assert_eq!(agent.metric_or_zero(MISSES, &[]), 0.0);
    agent.stop(secs(30));
}

/// With `namespace_labels: true` the agent also watches namespaces (one list, one watch);
/// records carry their namespace's labels, and a relabelled namespace's new labels reach the
/// records of an already running container.
#[test]
fn namespace_labels_follow_the_namespace() {
    let (node, api) = setup();
    api.upsert_namespace("shop", &[("team", "web")]);
    let mut agent = start(&node, &kube_config(&["namespace_labels: true"]), &api);
    api.wait_for_watch(KubeResource::Namespaces, secs(30));
    let mut c = node.add_container("shop", "web-0", "web", Format::Cri);
    let pod = pod_of(c.info(), "shop/web:1.0")
        .label("app", "web")
        .owner("StatefulSet", "web");
    api.upsert_pod(&pod);
    c.write_lines(3);
    for r in &wait_records(&node, &mut agent, "web", 3) {
        assert_full(r, &pod, ("StatefulSet", "web"));
        assert_eq!(
            r.kubernetes()["namespace_labels"],
            json!({"kubernetes.io/metadata.name": "shop", "team": "web"})
        );
    }

    // (The API server adds `kubernetes.io/metadata.name` to every namespace.)
    let new_labels = json!({
        "kubernetes.io/metadata.name": "shop",
        "team": "payments",
        "tier": "gold"
    });
    api.upsert_namespace("shop", &[("team", "payments"), ("tier", "gold")]);
    // The container keeps writing until a record shows the new labels.
    wait_for(
        || {
            c.write_lines(1);
            node.raw_records_of("web")
                .iter()
                .any(|r| r.kubernetes()["namespace_labels"] == new_labels)
        },
        secs(30),
        "a record with the namespace's new labels",
    );
    c.write_lines(3);
    let n = c.written() as usize;
    let recs = by_seq(wait_records(&node, &mut agent, "web", n));
    let first_new = recs
        .iter()
        .position(|r| r.kubernetes()["namespace_labels"] == new_labels)
        .expect("new labels");
    for r in &recs[first_new..] {
        assert_eq!(
            r.kubernetes()["namespace_labels"],
            new_labels,
            "old labels after new ones: {}",
            r.line
        );
    }
    assert!(first_new >= 3 && first_new + 3 < recs.len());
    let r = api.requests();
    assert_eq!(
        (
            r.pods_list,
            r.pods_watch,
            r.namespaces_list,
            r.namespaces_watch
        ),
        (1, 1, 1, 1),
        "{}",
        api.summary()
    );
    api.assert_no_unexpected();
    agent.stop(secs(30));
}

/// `kubeship.io/exclude: "true"` drops every line of a pod, `kubeship.io/exclude-containers`
/// those of the named containers; the lines are counted as `dropped{reason="excluded"}`, and
/// the checkpoints advance over them: after a clean restart they are neither shipped nor read
/// again (only lines written since are counted).
#[test]
fn exclusion_annotations_drop_lines_and_advance_checkpoints() {
    let (node, api) = setup();
    let cfg = kube_config(&[]);
    let mut agent = start(&node, &cfg, &api);
    let mut noisy = node.add_container("shop", "noisy-0", "noisy", Format::Cri);
    api.upsert_pod(
        &pod_of(noisy.info(), "shop/noisy:1.0")
            .label("app", "noisy")
            .annotation("kubeship.io/exclude", "true"),
    );
    let mut a = node.add_container("shop", "multi-0", "a", Format::Cri);
    let mut b = node.add_sibling(a.info(), "b", Format::Docker);
    let multi = Pod::new("shop", "multi-0")
        .uid(&a.info().pod_uid)
        .node(NODE)
        .label("app", "multi")
        .annotation("kubeship.io/exclude-containers", "b")
        .running_container("a", "shop/a:1.0")
        .running_container("b", "shop/b:1.0");
    api.upsert_pod(&multi);
    noisy.write_lines(20);
    a.write_lines(20);
    b.write_lines(20);

    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &[("a", 20)], secs(30));
    let dropped = &[("reason", "excluded")];
    assert_eq!(
        wait_metric(&agent, DROPPED, dropped, |v| v >= 40.0, "40 excluded lines"),
        40.0
    );
    agent.stop(secs(30));
    d.poll();
    for name in ["noisy", "b"] {
        assert_eq!(
            d.tracker.track(name).distinct,
            0,
            "{name}'s lines were shipped"
        );
    }

    let mut agent = start(&node, &cfg, &api);
    wait_metric(&agent, PODS_CACHED, &[], |v| v >= 2.0, "both pods cached");
    noisy.write_lines(5);
    b.write_lines(5);
    a.write_lines(5);
    d.wait_all(&mut agent, &[("a", 25)], secs(30));
    assert_eq!(
        wait_metric(
            &agent,
            DROPPED,
            dropped,
            |v| v >= 10.0,
            "10 new excluded lines"
        ),
        10.0,
        "the restarted agent read excluded lines again (checkpoints did not advance over them)"
    );
    agent.stop(secs(30));
    d.poll();
    for name in ["noisy", "b"] {
        assert_eq!(
            d.tracker.track(name).distinct,
            0,
            "{name}'s lines were shipped"
        );
    }
    assert_eq!(
        d.tracker.total_dups(),
        0,
        "duplicates after a clean restart"
    );
    assert!(d.tracker.track("a").has_all(25));
}

/// `kubeship.io/exclude` annotated onto a running pod (`kubectl annotate`) stops its lines
/// from being shipped, without a restart; removing the annotation ships them again. Every
/// line is either shipped once or counted as excluded.
#[test]
fn exclusion_annotation_on_a_running_pod_takes_effect() {
    let (node, api) = setup();
    let mut agent = start(&node, &kube_config(&[]), &api);
    let mut c = node.add_container("shop", "chatty-0", "chatty", Format::Cri);
    let pod = pod_of(c.info(), "shop/chatty:1.0").label("app", "chatty");
    api.upsert_pod(&pod);
    c.write_lines(5);
    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &[("chatty", 5)], secs(30));

    api.upsert_pod(&pod.clone().annotation("kubeship.io/exclude", "true"));
    let dropped = &[("reason", "excluded")];
    // The container keeps writing until the agent drops a line.
    wait_for(
        || {
            c.write_lines(1);
            agent.metric_or_zero(DROPPED, dropped) > 0.0
        },
        secs(30),
        "a line dropped as excluded",
    );
    let excluded_from = c.written();
    let excluded_seqs = c.write_lines(5);
    // Every line so far was read (the only container), so these 5 were read while excluded.
    wait_metric(
        &agent,
        LINES_READ,
        &[],
        |v| v >= c.written() as f64,
        "every line read",
    );

    api.upsert_pod(&pod);
    wait_for(
        || {
            c.write_lines(1);
            d.poll();
            d.tracker.track("chatty").max_first >= Some(excluded_seqs.end)
        },
        secs(30),
        "a record once the annotation is gone",
    );
    c.write_lines(3);
    let n = c.written();
    let mut excluded = 0.0;
    wait_for(
        || {
            d.poll();
            excluded = agent.metric_or_zero(DROPPED, dropped);
            d.tracker.track("chatty").distinct + excluded as u64 >= n
        },
        secs(30),
        "every line shipped or excluded",
    );
    let track = d.tracker.track("chatty");
    assert_eq!(track.distinct + excluded as u64, n, "shipped + excluded");
    assert_eq!(track.dups, 0);
    let shipped_while_excluded: Vec<u64> = (excluded_from..excluded_seqs.end)
        .filter(|&s| track.count_of(s) > 0)
        .collect();
    assert!(
        shipped_while_excluded.is_empty(),
        "lines shipped while the pod was excluded: {shipped_while_excluded:?}"
    );
    assert!(
        (n - 3..n).all(|s| track.count_of(s) == 1),
        "lines after the annotation was removed"
    );
    agent.stop(secs(30));
}

/// `kubeship.io/parser` (pod-wide) and `kubeship.io/parser-<container>` (one container, wins):
/// json, logfmt and `regex:<logs.parsers name>` put the message's fields under
/// `log_processed` and keep `log` raw; lines that do not parse ship raw, without
/// `log_processed`, and are counted per parser; a pod without the annotation is not parsed.
#[test]
fn parser_annotations_merge_fields_under_log_processed() {
    let (node, api) = setup();
    let cfg = AgentConfig {
        logs_extra: vec![
            r#"parsers: [{name: access, regex: '^(?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d{3})$'}]"#
                .into(),
        ],
        ..kube_config(&[])
    };
    let mut agent = start(&node, &cfg, &api);

    let mut api_c = node.add_container("shop", "api-0", "api", Format::Cri);
    api.upsert_pod(&pod_of(api_c.info(), "shop/api:1.0").annotation("kubeship.io/parser", "json"));
    let mut worker = node.add_container("shop", "worker-0", "worker", Format::Cri);
    let mut sidecar = node.add_sibling(worker.info(), "sidecar", Format::Docker);
    api.upsert_pod(
        &Pod::new("shop", "worker-0")
            .uid(&worker.info().pod_uid)
            .node(NODE)
            .annotation("kubeship.io/parser", "logfmt")
            .annotation("kubeship.io/parser-sidecar", "regex:access")
            .running_container("worker", "shop/worker:1.0")
            .running_container("sidecar", "envoy:1.30"),
    );
    let mut plain = node.add_container("shop", "plain-0", "plain", Format::Cri);
    api.upsert_pod(&pod_of(plain.info(), "shop/plain:1.0"));

    let json_line = r#"{"level":"info","msg":"hello","n":1,"nested":{"ok":true}}"#;
    write_msg(&mut api_c, 0, json_line);
    write_msg(&mut api_c, 1, "not json at all");
    let logfmt_line = r#"level=warn msg="disk full" free=3%"#;
    write_msg(&mut worker, 0, logfmt_line);
    write_msg(&mut worker, 1, "just some words");
    write_msg(&mut sidecar, 0, "GET /healthz 200");
    write_msg(&mut sidecar, 1, "garbage!");
    write_msg(&mut plain, 0, r#"{"a":1}"#);

    let recs = wait_records(&node, &mut agent, "api", 2);
    assert_eq!(recs[0].log(), json_line, "log stays raw");
    assert_eq!(
        recs[0].value["log_processed"],
        json!({"level": "info", "msg": "hello", "n": 1, "nested": {"ok": true}})
    );
    assert_eq!(recs[1].log(), "not json at all");
    assert!(
        recs[1].value.get("log_processed").is_none(),
        "{}",
        recs[1].line
    );

    let recs = wait_records(&node, &mut agent, "worker", 2);
    assert_eq!(recs[0].log(), logfmt_line);
    assert_eq!(
        recs[0].value["log_processed"],
        json!({"level": "warn", "msg": "disk full", "free": "3%"})
    );
    assert!(
        recs[1].value.get("log_processed").is_none(),
        "{}",
        recs[1].line
    );

    let recs = wait_records(&node, &mut agent, "sidecar", 2);
    assert_eq!(
        recs[0].value["log_processed"],
        json!({"method": "GET", "path": "/healthz", "status": "200"}),
        "the container's own annotation wins over the pod's"
    );
    assert_eq!(recs[1].log(), "garbage!");
    assert!(
        recs[1].value.get("log_processed").is_none(),
        "{}",
        recs[1].line
    );

    let recs = wait_records(&node, &mut agent, "plain", 1);
    assert!(
        recs[0].value.get("log_processed").is_none(),
        "parsed without an annotation: {}",
        recs[0].line
    );

    for parser in ["json", "logfmt", "regex"] {
        assert_eq!(
            agent.metric_or_zero(PARSE_FAILURES, &[("parser", parser)]),
            1.0,
            "{parser} failures"
        );
    }
    assert_eq!(agent.metric_or_zero(MISSES, &[]), 0.0);
    agent.stop(secs(30));
}

/// `kubeship.io/multiline-<container>: java` groups a Java stack trace of that container into
/// one record; the pod's other container is not grouped.
#[test]
fn multiline_annotation_groups_a_stack_trace() {
    let (node, api) = setup();
    let mut agent = start(&node, &kube_config(&[]), &api);
    let mut app = node.add_container("shop", "orders-0", "app", Format::Cri);
    let mut other = node.add_sibling(app.info(), "other", Format::Cri);
    api.upsert_pod(
        &Pod::new("shop", "orders-0")
            .uid(&app.info().pod_uid)
            .node(NODE)
            .annotation("kubeship.io/multiline-app", "java")
            .running_container("app", "shop/orders:1.0")
            .running_container("other", "shop/other:1.0"),
    );
    let trace = [
        "2026-11-23 10:00:00.000 ERROR request failed",
        "java.lang.IllegalStateException: boom",
        "\tat com.example.Orders.place(Orders.java:42)",
        "\tat com.example.Api.handle(Api.java:7)",
        "Caused by: java.io.IOException: disk full",
        "\t... 2 more",
    ];
    let next = "2026-11-23 10:00:01.000 INFO next request";
    for c in [&mut app, &mut other] {
        for (i, l) in trace.iter().chain([&next]).enumerate() {
            write_msg(c, i as u64, l);
        }
    }
    let recs = wait_records(&node, &mut agent, "app", 2);
    assert_eq!(recs[0].log(), trace.join("\n"), "the trace is one record");
    assert_eq!(recs[1].log(), next);
    let recs = wait_records(&node, &mut agent, "other", 7);
    assert_eq!(recs.len(), 7, "the other container's lines are not grouped");
    assert_eq!(recs[2].log(), trace[2]);
    assert_eq!(
        node.raw_records_of("app").len(),
        2,
        "nothing after the two groups"
    );
    agent.stop(secs(30));
}

/// `output.stream: "{label:app}-{container}"`: the sink file (the CloudWatch stream) is
/// named from the pod's label; a pod without the label gets an empty placeholder.
#[test]
fn stream_name_from_a_pod_label() {
    let (node, api) = setup();
    let cfg = AgentConfig {
        stream_template: "{label:app}-{container}".into(),
        ..kube_config(&[])
    };
    let mut agent = start(&node, &cfg, &api);
    let mut web = node.add_container("shop", "web-7d4b9-k8s9x", "web", Format::Cri);
    api.upsert_pod(&pod_of(web.info(), "shop/web:1.0").label("app", "checkout"));
    let mut bare = node.add_container("shop", "bare-0", "bare", Format::Cri);
    api.upsert_pod(&pod_of(bare.info(), "shop/bare:1.0"));
    web.write_lines(5);
    bare.write_lines(5);
    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &[("web", 5), ("bare", 5)], secs(30));
    let dir = node.out_dir().join(GROUP_DIR);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("group dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["-bare.jsonl", "checkout-web.jsonl"]);
    let recs = d.sink.file_records(&dir.join("checkout-web.jsonl"));
    assert_eq!(recs.len(), 5);
    assert!(recs.iter().all(|r| r.kubernetes.container_name == "web"));
    agent.stop(secs(30));
}

/// With pod metadata on, the agent's own pod (POD_NAMESPACE / POD_NAME) is still never
/// tailed, although the API server knows it; the other pods are enriched.
#[test]
fn own_pod_is_excluded_with_pod_metadata_on() {
    let (node, api) = setup();
    let mut own = node.add_container("kube-system", "kubeship-x7k2p", "agent", Format::Cri);
    let mut app = node.add_container("shop", "web-0", "web", Format::Cri);
    api.upsert_pod(
        &pod_of(own.info(), "kubeship:dev")
            .label("app", "kubeship")
            .owner("DaemonSet", "kubeship"),
    );
    let app_pod = pod_of(app.info(), "shop/web:1.0")
        .label("app", "web")
        .owner("StatefulSet", "web");
    api.upsert_pod(&app_pod);
    own.write_lines(20);
    app.write_lines(20);

    let mut agent = Agent::start_in_pod(&node, &kube_config(&[]), "kube-system", "kubeship-x7k2p");
    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &[("web", 20)], secs(30));
    own.write_lines(5);
    app.write_lines(5);
    d.wait_all(&mut agent, &[("web", 25)], secs(30));
    assert_eq!(agent.metric_or_zero(MISSES, &[]), 0.0);
    agent.stop(secs(30));
    d.poll();
    assert_eq!(
        d.tracker.track("agent").distinct,
        0,
        "own pod's records shipped"
    );
    for r in &node.raw_records_of("web") {
        assert_full(r, &app_pod, ("StatefulSet", "web"));
    }
    api.assert_no_unexpected();
}

/// 200 short-lived pods (created, 3 lines, deleted; 10 batches of 20 while the agent runs):
/// every record carries its own pod's metadata, and the whole run costs the API server one
/// list and one watch of pods, and one of each of namespaces.
#[test]
fn request_count_over_200_churns() {
    let (node, api) = setup();
    api.upsert_namespace("churn", &[("team", "batch")]);
    let mut agent = start(&node, &kube_config(&["namespace_labels: true"]), &api);
    api.wait_for_watch(KubeResource::Namespaces, secs(30));
    let mut pods = Vec::new();
    for batch in 0..10 {
        let mut containers = Vec::new();
        for i in batch * 20..(batch + 1) * 20 {
            let name = format!("w{i:03}");
            let mut c =
                node.add_container("churn", &format!("job-{i:03}-x2b4c"), &name, Format::Cri);
            let pod = pod_of(c.info(), "batch/worker:1.0")
                .label("app", "churn")
                .label("idx", &i.to_string())
                .owner("Job", &format!("job-{i:03}"));
            api.upsert_pod(&pod);
            c.write_lines(3);
            containers.push(c);
            pods.push(pod);
        }
        for c in &containers {
            api.delete_pod(&c.info().namespace, &c.info().pod);
        }
    }
    let expect: Vec<(String, u64)> = (0..200).map(|i| (format!("w{i:03}"), 3)).collect();
    let expect: Vec<(&str, u64)> = expect.iter().map(|(n, k)| (n.as_str(), *k)).collect();
    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &expect, secs(60));

    let recs = node.raw_records();
    assert_eq!(recs.len(), 600, "every line once");
    for r in &recs {
        let i: usize = r.container()[1..].parse().expect("w<i>");
        let job = format!("job-{i:03}");
        assert_full(r, &pods[i], ("Job", &job));
        assert_eq!(
            r.kubernetes()["namespace_labels"],
            json!({"kubernetes.io/metadata.name": "churn", "team": "batch"})
        );
    }
    assert_eq!(agent.metric_or_zero(MISSES, &[]), 0.0);
    let r = api.requests();
    assert_eq!(
        (
            r.pods_list,
            r.pods_continue,
            r.pods_watch,
            r.namespaces_list,
            r.namespaces_watch
        ),
        (1, 0, 1, 1, 1),
        "{}",
        api.summary()
    );
    api.assert_no_unexpected();
    agent.stop(secs(30));
}

/// A watch the server ends (its timeout) is resumed from the last resource version, without
/// a relist; a watch from a compacted version gets 410 Gone and the agent relists. Pods
/// created after each keep getting their metadata.
#[test]
fn watch_expiry_resumes_and_410_relists() {
    let (node, api) = setup();
    let mut agent = start(&node, &kube_config(&[]), &api);
    let mut n = 0;
    let mut enriched_pod = |api: &FakeApi, agent: &mut Agent| {
        n += 1;
        let mut c = node.add_container("shop", &format!("p{n}-0"), &format!("p{n}"), Format::Cri);
        let pod = pod_of(c.info(), "shop/p:1.0")
            .label("app", &format!("p{n}"))
            .owner("StatefulSet", &format!("p{n}"));
        api.upsert_pod(&pod);
        c.write_lines(3);
        let name = format!("p{n}");
        for r in &wait_records(&node, agent, &name, 3) {
            assert_full(r, &pod, ("StatefulSet", &name));
        }
    };
    enriched_pod(&api, &mut agent);

    api.expire_watches();
    api.wait_for_requests(|r| r.pods_watch >= 2, secs(30), "a second pod watch");
    api.wait_for_watch(KubeResource::Pods, secs(30));
    let r = api.requests();
    assert_eq!((r.pods_list, r.pods_watch), (1, 2), "{}", api.summary());
    let watches = api.log();
    let rv = |i: usize| {
        watches
            .iter()
            .filter(|w| w.query("watch").is_some())
            .nth(i)
            .and_then(|w| w.query("resourceVersion"))
    };
    assert!(
        rv(1).is_some() && rv(1) != Some("0".into()),
        "the second watch resumes from a resource version: {}",
        api.summary()
    );
    enriched_pod(&api, &mut agent);

    api.compact();
    api.expire_watches();
    api.wait_for_requests(|r| r.pods_list >= 2, secs(30), "a relist after 410 Gone");
    api.wait_for_watch(KubeResource::Pods, secs(30));
    let r = api.requests();
    // Watches: the first, the resumed one, the one answered 410, the one after the relist.
    assert_eq!((r.pods_list, r.pods_watch), (2, 4), "{}", api.summary());
    enriched_pod(&api, &mut agent);
    assert_eq!(agent.metric_or_zero(MISSES, &[]), 0.0);
    api.assert_no_unexpected();
    agent.stop(secs(30));
}
