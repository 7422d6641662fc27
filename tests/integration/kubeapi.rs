//! Self-tests of the fake Kubernetes API server ([`FakeApi`]), driven by the client the agent
//! uses: kube's `runtime::watcher` over a `kube::Client` built from the kubeconfig the fake
//! writes. Raw HTTP requests check the wire format where the client hides it (event types,
//! chunking, paging, status codes).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod as KPod};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as run_watcher};
use kube::{Api, Client, ResourceExt};
use kubeship_tests::{ApiRequest, FakeApi, Head, KubeResource, Pod, read_head, roundtrip, secs};
use serde_json::Value;

const NODE: &str = "node-1";

/// How long to wait for one watcher event.
fn event_timeout() -> Duration {
    secs(15)
}

/// A pod of this test's node with one running container.
fn pod(ns: &str, name: &str) -> Pod {
    Pod::new(ns, name)
        .node(NODE)
        .label("app", name)
        .owner("ReplicaSet", &format!("{name}-rs"))
        .running_container("main", "nginx:1.25")
}

/// The watcher retries at once after an error; this pause keeps a client that is refused
/// from spinning (the agent uses a real backoff).
struct FixedBackoff;

impl Iterator for FixedBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(50))
    }
}

impl Backoff for FixedBackoff {
    fn reset(&mut self) {}
}

/// The real kube client, on a runtime of its own (the tests themselves are synchronous, like
/// the fake).
struct Kube {
    rt: tokio::runtime::Runtime,
    client: Client,
    _dir: tempfile::TempDir,
}

impl Kube {
    fn connect(api: &FakeApi) -> Kube {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("kubeconfig");
        api.write_kubeconfig(&path);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let client = rt.block_on(async {
            let kubeconfig = Kubeconfig::read_from(&path).expect("read kubeconfig");
            let config =
                kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .expect("config from kubeconfig");
            Client::try_from(config).expect("client")
        });
        Kube {
            rt,
            client,
            _dir: dir,
        }
    }

    fn pods(&self) -> Api<KPod> {
        Api::all(self.client.clone())
    }

    /// kube's watcher over this node's pods, as the agent configures it.
    fn watch_pods(&self) -> Watch<KPod> {
        self.watch(
            self.pods(),
            watcher::Config::default().fields(&format!("spec.nodeName={NODE}")),
        )
    }

    /// Runs `watcher(api, config)` in the background; its events arrive in the [`Watch`].
    fn watch<K>(&self, api: Api<K>, config: watcher::Config) -> Watch<K>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = self.rt.spawn(async move {
            let mut events = run_watcher(api, config).backoff(FixedBackoff).boxed();
            while let Some(e) = events.next().await {
                if tx.send(e).is_err() {
                    return;
                }
            }
        });
        Watch {
            rt: self.rt.handle().clone(),
            rx,
            task,
        }
    }
}

/// The events of a running watcher.
struct Watch<K> {
    rt: tokio::runtime::Handle,
    rx: tokio::sync::mpsc::UnboundedReceiver<Result<Event<K>, watcher::Error>>,
    task: tokio::task::JoinHandle<()>,
}

impl<K: ResourceExt> Watch<K> {
    /// The next event or error; panics after [`event_timeout`].
    #[track_caller]
    fn next(&mut self) -> Result<Event<K>, watcher::Error> {
        let t = event_timeout();
        let rx = &mut self.rx;
        match self
            .rt
            .block_on(async { tokio::time::timeout(t, rx.recv()).await })
        {
            Ok(Some(e)) => e,
            Ok(None) => panic!("the watcher task ended"),
            Err(_) => panic!("no watcher event within {t:?}"),
        }
    }

    /// The next event; panics on an error.
    #[track_caller]
    fn next_ok(&mut self) -> Event<K> {
        self.next().unwrap_or_else(|e| panic!("watcher error: {e}"))
    }

    /// The next event after any errors; the errors seen on the way.
    #[track_caller]
    fn next_after_errors(&mut self) -> (Event<K>, Vec<watcher::Error>) {
        let mut errors = Vec::new();
        loop {
            match self.next() {
                Ok(e) => return (e, errors),
                Err(e) => errors.push(e),
            }
        }
    }

    /// A whole initial listing (`Init`, `InitApply`…, `InitDone`): the objects.
    #[track_caller]
    fn init(&mut self) -> Vec<K> {
        match self.next_ok() {
            Event::Init => {}
            e => panic!("expected Init, got {}", describe(&e)),
        }
        self.init_rest()
    }

    /// The rest of an initial listing after its `Init`.
    #[track_caller]
    fn init_rest(&mut self) -> Vec<K> {
        let mut objects = Vec::new();
        loop {
            match self.next_ok() {
                Event::InitApply(o) => objects.push(o),
                Event::InitDone => return objects,
                e => panic!("expected InitApply or InitDone, got {}", describe(&e)),
            }
        }
    }
}

impl<K> Drop for Watch<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn describe<K: ResourceExt>(e: &Event<K>) -> String {
    match e {
        Event::Apply(o) => format!("Apply({})", o.name_any()),
        Event::Delete(o) => format!("Delete({})", o.name_any()),
        Event::Init => "Init".into(),
        Event::InitApply(o) => format!("InitApply({})", o.name_any()),
        Event::InitDone => "InitDone".into(),
    }
}

/// `Apply(name)`/`Delete(name)` of an event (panics on the init markers).
#[track_caller]
fn change<K: ResourceExt>(e: &Event<K>) -> (&'static str, String) {
    match e {
        Event::Apply(o) => ("Apply", o.name_any()),
        Event::Delete(o) => ("Delete", o.name_any()),
        other => panic!("expected Apply or Delete, got {}", describe(other)),
    }
}

fn names<K: ResourceExt>(objects: &[K]) -> Vec<String> {
    let mut v: Vec<String> = objects.iter().map(ResourceExt::name_any).collect();
    v.sort();
    v
}

/// Requests of one kind from the fake's log.
fn of_kind(api: &FakeApi, kind: kubeship_tests::RequestKind) -> Vec<ApiRequest> {
    api.log().into_iter().filter(|r| r.kind == kind).collect()
}

/// The resourceVersion every watch of pods started from, in order.
fn pod_watch_rvs(api: &FakeApi) -> Vec<String> {
    of_kind(api, kubeship_tests::RequestKind::Watch(KubeResource::Pods))
        .iter()
        .map(|r| r.query("resourceVersion").unwrap_or_default())
        .collect()
}

fn is_410(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::WatchError(s) if s.code == 410 && s.reason == "Expired")
}

// ---------------------------------------------------------------------------------------------
// With kube's watcher
// ---------------------------------------------------------------------------------------------

#[test]
fn initial_list_has_only_this_nodes_pods() {
    let api = FakeApi::start(NODE);
    for name in ["web-1", "web-2", "db-0"] {
        api.upsert_pod(&pod("shop", name).ip("10.0.0.5"));
    }
    api.upsert_pod(&Pod::new("shop", "elsewhere").node("node-2"));
    api.upsert_pod(&Pod::new("shop", "unscheduled"));
    let kube = Kube::connect(&api);
    let mut w = kube.watch_pods();
    let pods = w.init();
    assert_eq!(names(&pods), ["db-0", "web-1", "web-2"]);

    // The typed pod holds what the agent needs.
    let web = pods
        .iter()
        .find(|p| p.name_any() == "web-1")
        .expect("web-1");
    let want = pod("shop", "web-1");
    assert_eq!(web.uid().as_deref(), Some(want.get_uid()));
    assert!(web.resource_version().is_some_and(|rv| !rv.is_empty()));
    assert_eq!(web.labels().get("app").map(String::as_str), Some("web-1"));
    assert!(!web.managed_fields().is_empty(), "managedFields are sent");
    let owner = &web.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("ReplicaSet", Some(true))
    );
    let spec = web.spec.as_ref().expect("spec");
    assert_eq!(spec.node_name.as_deref(), Some(NODE));
    let status = web.status.as_ref().expect("status");
    assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.5"));
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let cs = &status
        .container_statuses
        .as_ref()
        .expect("container statuses")[0];
    assert_eq!(cs.name, "main");
    assert!(
        cs.image_id.starts_with("docker.io/library/nginx@sha256:"),
        "{}",
        cs.image_id
    );
    assert_eq!(
        cs.container_id.as_deref(),
        Some(want.container_id_of("main").as_str())
    );

    api.wait_for_watch(KubeResource::Pods, secs(10));
    let r = api.requests();
    assert_eq!(
        (r.pods_list, r.pods_continue, r.pods_watch),
        (1, 0, 1),
        "{}",
        api.summary()
    );
    let log = api.log();
    for req in &log {
        eprintln!("{} {} {:?}", req.method, req.target, req.headers);
    }
    assert_eq!(
        log[0].target, "/api/v1/pods?&fieldSelector=spec.nodeName%3Dnode-1&limit=500",
        "kube 5 starts every query with `&`"
    );
    let list_rv = api.resource_version().to_string();
    assert_eq!(
        log[1].target,
        format!(
            "/api/v1/pods?&watch=true&timeoutSeconds=290&fieldSelector=spec.nodeName%3Dnode-1\
             &allowWatchBookmarks=true&resourceVersion={list_rv}"
        )
    );
    assert_eq!(log[1].header("accept-encoding"), Some("identity"));
    api.assert_no_unexpected();
}

#[test]
fn changes_arrive_in_order() {
    let api = FakeApi::start(NODE);
    api.upsert_pod(&pod("shop", "a"));
    api.upsert_pod(&Pod::new("shop", "pending"));
    let kube = Kube::connect(&api);
    let mut w = kube.watch_pods();
    assert_eq!(names(&w.init()), ["a"]);
    api.wait_for_watch(KubeResource::Pods, secs(10));

    api.upsert_pod(&pod("shop", "b"));
    api.upsert_pod(&pod("shop", "a").label("version", "2"));
    api.upsert_pod(&Pod::new("shop", "other").node("node-2"));
    // Scheduled onto this node: enters the selection.
    api.upsert_pod(&Pod::new("shop", "pending").node(NODE));
    api.upsert_pod(&pod("shop", "b").terminating());
    api.delete_pod("shop", "b");
    api.delete_pod("shop", "other");

    let mut got = Vec::new();
    let mut rvs = Vec::new();
    for _ in 0..5 {
        let e = w.next_ok();
        if let Event::Apply(p) | Event::Delete(p) = &e {
            rvs.push(
                p.resource_version()
                    .expect("rv")
                    .parse::<u64>()
                    .expect("numeric rv"),
            );
            if p.name_any() == "a" {
                assert_eq!(p.labels().get("version").map(String::as_str), Some("2"));
            }
        }
        got.push(change(&e));
    }
    let got: Vec<(&str, &str)> = got.iter().map(|(k, n)| (*k, n.as_str())).collect();
    assert_eq!(
        got,
        [
            ("Apply", "b"),
            ("Apply", "a"),
            ("Apply", "pending"),
            ("Apply", "b"),
            ("Delete", "b"),
        ]
    );
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "{rvs:?}");
    assert_eq!(api.requests().pods_list, 1);
    api.assert_no_unexpected();
}

#[test]
fn bookmarks_advance_the_clients_resource_version() {
    let api = FakeApi::start(NODE);
    api.upsert_pod(&pod("shop", "a"));
    let kube = Kube::connect(&api);
    let mut w = kube.watch_pods();
    w.init();
    api.wait_for_watch(KubeResource::Pods, secs(10));
    // Changes the client does not see move the resource version on...
    api.upsert_pod(&Pod::new("shop", "x").node("node-2"));
    api.compact();
    // ...and only a bookmark tells it: without it, resuming would be from a compacted version.
    api.bookmark();
    let bookmark_rv = api.resource_version();
    api.expire_watches();
    api.wait_for_requests(|r| r.pods_watch >= 2, secs(10), "the watch to resume");
    api.upsert_pod(&pod("shop", "b"));
    assert_eq!(change(&w.next_ok()), ("Apply", "b".to_string()));
    assert_eq!(
        pod_watch_rvs(&api)[1],
        bookmark_rv.to_string(),
        "resumed from the bookmark"
    );
    assert_eq!(api.requests().pods_list, 1, "{}", api.summary());
    api.assert_no_unexpected();
}

#[test]
fn expired_watch_resumes_without_a_relist() {
    let api = FakeApi::start(NODE);
    api.upsert_pod(&pod("shop", "a"));
    let kube = Kube::connect(&api);
    let mut w = kube.watch_pods();
    w.init();
    api.wait_for_watch(KubeResource::Pods, secs(10));
    let rv_b = api.upsert_pod(&pod("shop", "b"));
    // Sent before the stream ends.
    api.expire_watches();
    assert_eq!(change(&w.next_ok()), ("Apply", "b".to_string()));
    api.upsert_pod(&pod("shop", "c"));
    assert_eq!(change(&w.next_ok()), ("Apply", "c".to_string()));
    let r = api.requests();
    assert_eq!((r.pods_list, r.pods_watch), (1, 2), "{}", api.summary());
    assert_eq!(pod_watch_rvs(&api)[1], rv_b.to_string(), "resumed from b");
    api.assert_no_unexpected();
}

#[test]
fn compaction_makes_the_client_relist() {
    let api = FakeApi::start(NODE);
    api.upsert_pod(&pod("shop", "a"));
    let kube = Kube::connect(&api);
    let mut w = kube.watch_pods();
    w.init();
    api.wait_for_watch(KubeResource::Pods, secs(10));
    api.upsert_pod(&pod("shop", "b"));
    assert_eq!(change(&w.next_ok()), ("Apply", "b".to_string()));
    // The last version the client saw is compacted when its watch ends.
    api.compact();
    api.expire_watches();
    match w.next() {
        Err(e) => assert!(is_410(&e), "expected a 410 Expired watch error, got {e:?}"),
        Ok(e) => panic!("expected the 410, got {}", describe(&e)),
    }
    match w.next_ok() {
        Event::Init => {}
        e => panic!("expected a relist, got {}", describe(&e)),
    }
    assert_eq!(names(&w.init_rest()), ["a", "b"]);
    let relist_rv = api.resource_version();
    api.upsert_pod(&pod("shop", "c"));
    assert_eq!(change(&w.next_ok()), ("Apply", "c".to_string()));
    let r = api.requests();
    assert_eq!((r.pods_list, r.pods_watch), (2, 3), "{}", api.summary());
    assert_eq!(
        pod_watch_rvs(&api)[2],
        relist_rv.to_string(),
        "watching from the relist"
    );
    api.assert_no_unexpected();
}

#[test]
fn outage_then_recovery_resumes_the_watch() {
    let api = FakeApi::start(NODE);
    api.upsert_pod(&pod("shop", "a"));
    api.upsert_pod(&pod("shop", "b"));
    let kube = Kube::connect(&api);
    let mut w = kube.watch_pods();
    w.init();
    api.wait_for_watch(KubeResource::Pods, secs(10));

    api.set_outage(true);
    assert_eq!(api.open_watches(), 0);
    api.wait_for_requests(|r| r.refused >= 2, secs(10), "refused requests");
    // Changes made while the client cannot see them.
    api.upsert_pod(&pod("shop", "c"));
    api.delete_pod("shop", "a");
    api.set_outage(false);

    let (first, errors) = w.next_after_errors();
    assert!(!errors.is_empty(), "the outage shows as watcher errors");
    eprintln!(
        "errors during the outage: {:?}",
        errors.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
    assert_eq!(change(&first), ("Apply", "c".to_string()));
    assert_eq!(change(&w.next_ok()), ("Delete", "a".to_string()));
    let r = api.requests();
    assert_eq!(
        r.pods_list,
        1,
        "resumed without a relist: {}",
        api.summary()
    );
    assert!(r.pods_watch >= 2);
    api.assert_no_unexpected();
}

#[test]
fn unavailable_answers_are_retried_inside_the_client() {
    let api = FakeApi::start(NODE);
    api.upsert_pod(&pod("shop", "a"));
    let kube = Kube::connect(&api);
    let mut w = kube.watch_pods();
    w.init();
    api.wait_for_watch(KubeResource::Pods, secs(10));
    api.set_unavailable(true);
    api.wait_for_requests(|r| r.unavailable >= 2, secs(10), "503 answers");
    api.upsert_pod(&pod("shop", "b"));
    api.set_unavailable(false);
    let (first, errors) = w.next_after_errors();
    assert_eq!(change(&first), ("Apply", "b".to_string()));
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        !shown
            .iter()
            .any(|e| e.contains("503") || e.contains("unable to handle")),
        "kube's client retries 503s itself: {shown:?}"
    );
    assert_eq!(api.requests().pods_list, 1, "{}", api.summary());
    api.assert_no_unexpected();
}

#[test]
fn unexpected_requests_fail_the_test() {
    let api = FakeApi::start(NODE);
    api.upsert_pod(&pod("ns", "x"));
    let kube = Kube::connect(&api);
    let got = kube
        .rt
        .block_on(Api::<KPod>::namespaced(kube.client.clone(), "ns").get("x"));
    match got {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (404, "NotFound")),
        other => panic!("expected a 404 Status, got {other:?}"),
    }
    let caught = catch_unwind(AssertUnwindSafe(|| api.assert_no_unexpected()));
    let msg = panic_message(caught.expect_err("assert_no_unexpected must panic"));
    assert!(msg.contains("GET /api/v1/namespaces/ns/pods/x"), "{msg}");

    // A watcher of another node's pods is refused too.
    {
        let mut w = kube.watch(
            kube.pods(),
            watcher::Config::default().fields("spec.nodeName=node-2"),
        );
        match w.next() {
            Ok(Event::Init) => {}
            other => panic!("expected Init, got {:?}", other.map(|e| describe(&e))),
        }
        let e = w.next().map(|e| describe(&e)).expect_err("the list fails");
        assert!(
            e.to_string().contains("400") || e.to_string().contains("spec.nodeName"),
            "{e}"
        );
    }
    let unexpected = api.take_unexpected();
    assert!(unexpected.len() >= 2, "{unexpected:?}");
    assert!(
        unexpected
            .iter()
            .any(|u| u.contains("spec.nodeName%3Dnode-2")),
        "{unexpected:?}"
    );
    api.assert_no_unexpected();

    // Dropping a server that saw an unexpected request panics.
    let other = FakeApi::start(NODE);
    let resp = roundtrip(
        other.addr(),
        "DELETE",
        "/api/v1/namespaces/ns/pods/x",
        &[],
        b"",
        secs(10),
    )
    .expect("round trip");
    assert_eq!(resp.status(), 405);
    let caught = catch_unwind(AssertUnwindSafe(move || drop(other)));
    let msg = panic_message(caught.expect_err("drop must panic"));
    assert!(msg.contains("DELETE /api/v1/namespaces/ns/pods/x"), "{msg}");
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn paging_with_the_default_limit() {
    let api = FakeApi::start(NODE);
    for i in 0..1201 {
        api.upsert_pod(&Pod::new("bulk", &format!("p-{i:04}")).node(NODE));
    }
    for i in 0..30 {
        api.upsert_pod(&Pod::new("bulk", &format!("q-{i:04}")).node("node-2"));
    }
    let kube = Kube::connect(&api);
    let mut w = kube.watch_pods();
    let pods = w.init();
    let mut got = names(&pods);
    got.dedup();
    assert_eq!(got.len(), 1201);
    assert!(got.iter().all(|n| n.starts_with("p-")));
    let r = api.requests();
    assert_eq!((r.pods_list, r.pods_continue), (1, 2), "{}", api.summary());
    for c in of_kind(
        &api,
        kubeship_tests::RequestKind::Continue(KubeResource::Pods),
    ) {
        assert_eq!(c.query("limit").as_deref(), Some("500"));
        assert!(c.query("continue").is_some());
        assert!(c.query("resourceVersion").is_none(), "{}", c.target);
    }
    api.assert_no_unexpected();
}

#[test]
fn streaming_lists_are_served() {
    let api = FakeApi::start(NODE);
    api.upsert_pod(&pod("shop", "a"));
    api.upsert_pod(&pod("shop", "b"));
    api.upsert_pod(&Pod::new("shop", "c").node("node-2"));
    let kube = Kube::connect(&api);
    let mut w = kube.watch(
        kube.pods(),
        watcher::Config::default()
            .fields(&format!("spec.nodeName={NODE}"))
            .streaming_lists(),
    );
    assert_eq!(names(&w.init()), ["a", "b"]);
    api.upsert_pod(&pod("shop", "d"));
    assert_eq!(change(&w.next_ok()), ("Apply", "d".to_string()));
    let r = api.requests();
    assert_eq!((r.pods_list, r.pods_watch), (0, 1), "{}", api.summary());
    let q = api.log()[0].target.clone();
    for want in [
        "sendInitialEvents=true",
        "resourceVersionMatch=NotOlderThan",
        "resourceVersion=0",
    ] {
        assert!(q.contains(want), "{q}");
    }
    api.assert_no_unexpected();
}

#[test]
fn namespaces_are_listed_and_watched() {
    let api = FakeApi::start(NODE);
    api.upsert_namespace("shop", &[("team", "web")]);
    api.upsert_namespace("kube-system", &[]);
    let kube = Kube::connect(&api);
    let mut w = kube.watch(
        Api::<Namespace>::all(kube.client.clone()),
        watcher::Config::default(),
    );
    let ns = w.init();
    assert_eq!(names(&ns), ["kube-system", "shop"]);
    let shop = ns.iter().find(|n| n.name_any() == "shop").expect("shop");
    assert_eq!(shop.labels().get("team").map(String::as_str), Some("web"));
    assert_eq!(
        shop.labels()
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("shop")
    );
    api.wait_for_watch(KubeResource::Namespaces, secs(10));
    let uid = shop.uid();
    api.upsert_namespace("shop", &[("team", "payments")]);
    match w.next_ok() {
        Event::Apply(n) => {
            assert_eq!(n.labels().get("team").map(String::as_str), Some("payments"));
            assert_eq!(n.uid(), uid, "the same namespace");
        }
        e => panic!("expected Apply, got {}", describe(&e)),
    }
    api.delete_namespace("shop");
    assert_eq!(change(&w.next_ok()), ("Delete", "shop".to_string()));
    let log = api.log();
    assert_eq!(log[0].target, "/api/v1/namespaces?&limit=500");
    assert!(log[1].target.starts_with("/api/v1/namespaces?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion="), "{}", log[1].target);
    let r = api.requests();
    assert_eq!(
        (r.namespaces_list, r.namespaces_watch, r.pods_list),
        (1, 1, 0)
    );
    api.assert_no_unexpected();
}

#[test]
fn slow_api_delays_every_answer() {
    let api = FakeApi::start(NODE);
    api.upsert_pod(&pod("shop", "a"));
    let delay = Duration::from_millis(400);
    api.set_delay(delay);
    let kube = Kube::connect(&api);
    let start = Instant::now();
    let mut w = kube.watch_pods();
    assert_eq!(names(&w.init()), ["a"]);
    assert!(
        start.elapsed() >= delay,
        "the list came after {:?}",
        start.elapsed()
    );
    api.upsert_pod(&pod("shop", "b"));
    assert_eq!(change(&w.next_ok()), ("Apply", "b".to_string()));
    // The list's head and then the watch's were delayed.
    assert!(
        start.elapsed() >= 2 * delay,
        "the event came after {:?}",
        start.elapsed()
    );
    api.assert_no_unexpected();
}

#[test]
fn big_pods_pass_intact() {
    let api = FakeApi::start(NODE);
    let big = pod("shop", "big").bulk_annotations(100 * 1024);
    let want = big.to_json()["metadata"]["annotations"].clone();
    let bytes: usize = want
        .as_object()
        .expect("annotations")
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    assert!(bytes >= 100 * 1024, "{bytes}");
    api.upsert_pod(&big);
    let kube = Kube::connect(&api);
    let mut w = kube.watch_pods();
    let listed = w.init();
    assert_eq!(
        serde_json::to_value(listed[0].annotations()).expect("json"),
        want
    );
    api.wait_for_watch(KubeResource::Pods, secs(10));
    let big2 = pod("shop", "big2").bulk_annotations(100 * 1024);
    api.upsert_pod(&big2);
    match w.next_ok() {
        Event::Apply(p) => {
            assert_eq!(p.annotations().len(), want.as_object().expect("map").len());
        }
        e => panic!("expected Apply, got {}", describe(&e)),
    }
    api.assert_no_unexpected();
}

#[test]
fn a_replacement_pod_comes_after_a_delete() {
    let api = FakeApi::start(NODE);
    let old = pod("db", "db-0").owner("StatefulSet", "db");
    api.upsert_pod(&old);
    let kube = Kube::connect(&api);
    let mut w = kube.watch_pods();
    w.init();
    api.wait_for_watch(KubeResource::Pods, secs(10));
    let new = old.clone().uid("7d3c7a62-0d6e-4b1b-9a8e-5c1f7e0b9a01");
    let caught = catch_unwind(AssertUnwindSafe(|| api.upsert_pod(&new)));
    let msg = panic_message(caught.expect_err("same name, other uid, without a delete"));
    assert!(msg.contains("delete it first"), "{msg}");
    api.delete_pod("db", "db-0");
    api.upsert_pod(&new);
    match w.next_ok() {
        Event::Delete(p) => assert_eq!(p.uid().as_deref(), Some(old.get_uid())),
        e => panic!("expected Delete, got {}", describe(&e)),
    }
    match w.next_ok() {
        Event::Apply(p) => assert_eq!(p.uid().as_deref(), Some(new.get_uid())),
        e => panic!("expected Apply, got {}", describe(&e)),
    }
    api.assert_no_unexpected();
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP: what the client hides
// ---------------------------------------------------------------------------------------------

/// A GET on its own connection, with the response head read; the body is read by the caller.
struct Raw {
    reader: BufReader<TcpStream>,
    head: Head,
}

impl Raw {
    fn get(api: &FakeApi, target: &str) -> Raw {
        let mut stream = TcpStream::connect(api.addr()).expect("connect");
        stream.set_read_timeout(Some(secs(15))).expect("timeout");
        write!(
            stream,
            "GET {target} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n\r\n",
            api.addr()
        )
        .expect("send");
        let mut reader = BufReader::new(stream);
        let head = read_head(&mut reader).expect("read head").expect("a head");
        Raw { reader, head }
    }

    /// The next chunk of a chunked body; None at the terminating chunk.
    fn chunk(&mut self) -> Option<Vec<u8>> {
        let mut size = String::new();
        self.reader.read_line(&mut size).expect("chunk size");
        let n = usize::from_str_radix(size.trim(), 16)
            .unwrap_or_else(|_| panic!("chunk size {size:?}"));
        let mut data = vec![0; n + 2];
        self.reader.read_exact(&mut data).expect("chunk");
        assert_eq!(&data[n..], b"\r\n");
        data.truncate(n);
        (n > 0).then_some(data)
    }

    /// The next watch event (one chunk, one line).
    fn event(&mut self) -> Option<Value> {
        let c = self.chunk()?;
        assert_eq!(c.last(), Some(&b'\n'), "an event ends with a newline");
        assert_eq!(
            c.iter().filter(|b| **b == b'\n').count(),
            1,
            "one event per chunk"
        );
        Some(serde_json::from_slice(&c).expect("event JSON"))
    }

    /// A `Content-Length` body as JSON.
    fn json(&mut self) -> Value {
        let n: usize = self
            .head
            .get("content-length")
            .expect("length")
            .parse()
            .expect("number");
        let mut body = vec![0; n];
        self.reader.read_exact(&mut body).expect("body");
        serde_json::from_slice(&body).expect("JSON body")
    }
}

const SELECTOR: &str = "fieldSelector=spec.nodeName%3Dnode-1";

#[test]
fn raw_watch_wire_format() {
    let api = FakeApi::start(NODE);
    api.upsert_pod(&pod("shop", "a"));
    api.upsert_pod(&Pod::new("shop", "p"));
    let rv0 = api.resource_version();
    let mut w = Raw::get(
        &api,
        &format!(
            "/api/v1/pods?watch=true&timeoutSeconds=2&{SELECTOR}&allowWatchBookmarks=true&resourceVersion={rv0}"
        ),
    );
    assert_eq!(w.head.status(), Some(200));
    assert_eq!(w.head.get("transfer-encoding"), Some("chunked"));
    assert_eq!(w.head.get("content-type"), Some("application/json"));
    api.wait_for_watch(KubeResource::Pods, secs(10));
    let opened = Instant::now();

    api.upsert_pod(&pod("shop", "a").label("v", "2"));
    api.upsert_pod(&Pod::new("shop", "p").node(NODE)); // scheduled here
    api.upsert_pod(&Pod::new("shop", "q").node("node-2")); // not seen
    api.delete_pod("shop", "a");
    api.bookmark();
    let want = [("MODIFIED", "a"), ("ADDED", "p"), ("DELETED", "a")];
    let mut last_rv = rv0;
    for (t, name) in want {
        let e = w.event().expect("an event");
        assert_eq!(
            (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
            (Some(t), Some(name)),
            "{e}"
        );
        assert_eq!(e["object"]["kind"], "Pod");
        assert_eq!(e["object"]["apiVersion"], "v1");
        let rv: u64 = e["object"]["metadata"]["resourceVersion"]
            .as_str()
            .expect("rv")
            .parse()
            .expect("n");
        assert!(rv > last_rv);
        last_rv = rv;
    }
    let b = w.event().expect("the bookmark");
    assert_eq!(b["type"], "BOOKMARK");
    assert_eq!(
        b["object"],
        serde_json::json!({"kind": "Pod", "apiVersion": "v1",
                           "metadata": {"resourceVersion": api.resource_version().to_string()}})
    );
    // timeoutSeconds=2 ends the stream.
    assert!(w.chunk().is_none(), "the terminating chunk");
    assert!(
        opened.elapsed() >= Duration::from_millis(1500),
        "ended after {:?}",
        opened.elapsed()
    );
    assert_eq!(api.open_watches(), 0);

    // From a compacted version: one ERROR event, then the end.
    api.compact();
    let mut w = Raw::get(
        &api,
        &format!("/api/v1/pods?watch=true&{SELECTOR}&resourceVersion={rv0}"),
    );
    assert_eq!(w.head.status(), Some(200));
    let e = w.event().expect("the error event");
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["kind"], "Status");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert_eq!(
        e["object"]["message"],
        format!(
            "too old resource version: {rv0} ({})",
            api.resource_version()
        )
    );
    assert!(w.chunk().is_none());

    // Without a resource version: the current objects first, as ADDED.
    let mut w = Raw::get(
        &api,
        &format!("/api/v1/pods?watch=true&timeoutSeconds=1&{SELECTOR}"),
    );
    let e = w.event().expect("synthetic ADDED");
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("p"))
    );
    assert!(w.chunk().is_none());
    api.assert_no_unexpected();
}

#[test]
fn raw_lists_page_consistently_and_expire() {
    let api = FakeApi::start(NODE);
    for name in ["a", "b", "c", "d", "e"] {
        api.upsert_pod(&pod("shop", name));
    }
    let rv = api.resource_version();
    let mut l = Raw::get(&api, &format!("/api/v1/pods?{SELECTOR}&limit=2"));
    assert_eq!(l.head.status(), Some(200));
    let page1 = l.json();
    assert_eq!(page1["kind"], "PodList");
    assert_eq!(page1["apiVersion"], "v1");
    assert_eq!(page1["metadata"]["resourceVersion"], rv.to_string());
    assert!(
        page1["items"][0].get("kind").is_none(),
        "list items carry no kind"
    );
    let token = page1["metadata"]["continue"]
        .as_str()
        .expect("continue")
        .to_string();
    let item_names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(item_names(&page1), ["a", "b"]);

    // Changes between pages do not show: the pages come from the first page's snapshot.
    api.delete_pod("shop", "c");
    api.upsert_pod(&pod("shop", "bb"));
    let mut l = Raw::get(
        &api,
        &format!("/api/v1/pods?{SELECTOR}&limit=2&continue={token}"),
    );
    let page2 = l.json();
    assert_eq!(item_names(&page2), ["c", "d"]);
    assert_eq!(page2["metadata"]["resourceVersion"], rv.to_string());
    let token2 = page2["metadata"]["continue"]
        .as_str()
        .expect("continue")
        .to_string();
    let mut l = Raw::get(
        &api,
        &format!("/api/v1/pods?{SELECTOR}&limit=2&continue={token2}"),
    );
    let page3 = l.json();
    assert_eq!(item_names(&page3), ["e"]);
    assert!(page3["metadata"].get("continue").is_none());

    // An Exact list of an old version is that version's state.
    let mut l = Raw::get(
        &api,
        &format!("/api/v1/pods?{SELECTOR}&resourceVersion={rv}&resourceVersionMatch=Exact"),
    );
    assert_eq!(item_names(&l.json()), ["a", "b", "c", "d", "e"]);
    // So is a paged list from an old version without a match (the legacy rule).
    let mut l = Raw::get(
        &api,
        &format!("/api/v1/pods?{SELECTOR}&resourceVersion={rv}&limit=10"),
    );
    assert_eq!(item_names(&l.json()), ["a", "b", "c", "d", "e"]);
    // NotOlderThan (or unset without a limit): the latest.
    let mut l = Raw::get(
        &api,
        &format!("/api/v1/pods?{SELECTOR}&resourceVersion={rv}"),
    );
    assert_eq!(item_names(&l.json()), ["a", "b", "bb", "d", "e"]);

    // After compaction: 410 for the old token and the old Exact version.
    api.compact();
    for target in [
        format!("/api/v1/pods?{SELECTOR}&limit=2&continue={token}"),
        format!("/api/v1/pods?{SELECTOR}&resourceVersion={rv}&resourceVersionMatch=Exact"),
        format!("/api/v1/pods?{SELECTOR}&resourceVersion={rv}&limit=10"),
    ] {
        let mut l = Raw::get(&api, &target);
        assert_eq!(l.head.status(), Some(410), "{target}");
        let s = l.json();
        assert_eq!(
            (s["kind"].as_str(), s["reason"].as_str(), s["code"].as_u64()),
            (Some("Status"), Some("Expired"), Some(410)),
            "{s}"
        );
    }
    let r = api.requests();
    assert_eq!((r.pods_list, r.pods_continue), (6, 3), "{}", api.summary());

    // Namespaces: no selector, so remainingItemCount is given.
    for n in ["n1", "n2", "n3"] {
        api.upsert_namespace(n, &[]);
    }
    let mut l = Raw::get(&api, "/api/v1/namespaces?limit=1");
    let page = l.json();
    assert_eq!(page["kind"], "NamespaceList");
    assert_eq!(page["metadata"]["remainingItemCount"], 2);
    api.assert_no_unexpected();
}

#[test]
fn raw_requests_the_fake_does_not_serve() {
    let api = FakeApi::start(NODE);
    let cases = [
        ("/api/v1/pods?limit=500", 400),
        ("/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-2", 400),
        (
            "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1&labelSelector=app%3Dweb",
            400,
        ),
        ("/api/v1/namespaces/shop/pods", 404),
        ("/api/v1/namespaces/shop", 404),
        ("/apis/apps/v1/replicasets", 404),
        ("/api/v1/namespaces?fieldSelector=metadata.name%3Dx", 400),
        ("/api/v1/namespaces?watch=true&resourceVersion=999999", 504),
    ];
    for (target, status) in cases {
        let mut r = Raw::get(&api, target);
        assert_eq!(r.head.status(), Some(status), "{target}");
        let s = r.json();
        assert_eq!(
            (s["kind"].as_str(), s["status"].as_str()),
            (Some("Status"), Some("Failure")),
            "{target}: {s}"
        );
    }
    let unexpected = api.take_unexpected();
    assert_eq!(unexpected.len(), cases.len(), "{unexpected:#?}");
    for ((target, _), u) in cases.iter().zip(&unexpected) {
        assert!(u.starts_with(&format!("GET {target}: ")), "{u}");
    }
}
