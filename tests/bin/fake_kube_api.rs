//! `fake-kube-api`: the tests' fake Kubernetes API server ([`kubeship_tests::FakeApi`]) as a
//! process of its own, for benchmarks (`bench/logs.sh --kube`) and manual runs of the agent.
//!
//! ```text
//! fake-kube-api --node NODE --kubeconfig PATH [--pods FILE] [--exit-on-stdin-eof]
//! ```
//!
//! Serves the pods of `NODE` (list/watch, the real wire protocol), writes a kubeconfig
//! pointing at itself to `PATH`, loads the pods (and namespaces) of `FILE`, prints its URL
//! on the first line of stdout, and serves until SIGTERM or SIGINT (or, with
//! `--exit-on-stdin-eof`, until its stdin ends). Then it prints the requests it answered
//! on stderr and exits 0, or, when it saw requests the fake does not expect from the agent
//! (see the `kubeapi` module), prints them and exits 1.
//!
//! `FILE` is JSON:
//!
//! ```json
//! {"pods": [{"namespace": "shop", "name": "web-7d4b9c-x2x9q", "uid": "…",
//!            "node": "node-1", "ip": "10.0.3.17",
//!            "labels": {"app": "web"}, "annotations": {"team.io/owner": "payments"},
//!            "owner": {"kind": "ReplicaSet", "name": "web-7d4b9c"},
//!            "containers": [{"name": "nginx", "image": "nginx:1.27",
//!                            "image_id": "docker.io/library/nginx@sha256:…",
//!                            "container_id": "containerd://…"}]}],
//!  "namespaces": [{"name": "shop", "labels": {"team": "web"}}]}
//! ```
//!
//! Only `namespace` and `name` are required: `uid` defaults to one derived from the names,
//! `node` to `NODE`, `ip` to one derived from the uid, `image_id` and `container_id` to
//! ones derived from the image and the pod (as [`Pod::running_container`] does).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use kubeship_tests::{FakeApi, Pod};
use serde::Deserialize;

const USAGE: &str =
    "usage: fake-kube-api --node NODE --kubeconfig PATH [--pods FILE] [--exit-on-stdin-eof]";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PodsFile {
    #[serde(default)]
    pods: Vec<PodSpec>,
    #[serde(default)]
    namespaces: Vec<NamespaceSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PodSpec {
    namespace: String,
    name: String,
    uid: Option<String>,
    node: Option<String>,
    ip: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    owner: Option<OwnerSpec>,
    #[serde(default)]
    containers: Vec<ContainerSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerSpec {
    kind: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainerSpec {
    name: String,
    image: String,
    image_id: Option<String>,
    container_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceSpec {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

impl PodSpec {
    fn to_pod(&self, default_node: &str) -> Pod {
        let mut pod = Pod::new(&self.namespace, &self.name);
        if let Some(uid) = &self.uid {
            pod = pod.uid(uid);
        }
        pod = pod.node(self.node.as_deref().unwrap_or(default_node));
        if let Some(ip) = &self.ip {
            pod = pod.ip(ip);
        }
        for (k, v) in &self.labels {
            pod = pod.label(k, v);
        }
        for (k, v) in &self.annotations {
            pod = pod.annotation(k, v);
        }
        if let Some(o) = &self.owner {
            pod = pod.owner(&o.kind, &o.name);
        }
        for c in &self.containers {
            pod = match (&c.image_id, &c.container_id) {
                (None, None) => pod.running_container(&c.name, &c.image),
                (image_id, container_id) => {
                    let image_id = image_id
                        .clone()
                        .unwrap_or_else(|| kubeship_tests::image_id_for(&c.image));
                    let container_id = container_id
                        .clone()
                        .unwrap_or_else(|| pod.container_id_of(&c.name));
                    pod.container(&c.name, &c.image, &image_id, &container_id)
                }
            };
        }
        pod
    }
}

struct Args {
    node: String,
    kubeconfig: PathBuf,
    pods: Option<PathBuf>,
    exit_on_stdin_eof: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut node = None;
    let mut kubeconfig = None;
    let mut pods = None;
    let mut exit_on_stdin_eof = false;
    let mut it = std::env::args_os().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_string_lossy().into_owned();
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--node" => node = Some(value()?.to_string_lossy().into_owned()),
            "--kubeconfig" => kubeconfig = Some(PathBuf::from(value()?)),
            "--pods" => pods = Some(PathBuf::from(value()?)),
            "--exit-on-stdin-eof" => exit_on_stdin_eof = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Args {
        node: node.ok_or("--node is required")?,
        kubeconfig: kubeconfig.ok_or("--kubeconfig is required")?,
        pods,
        exit_on_stdin_eof,
    })
}

fn load(path: &PathBuf) -> Result<PodsFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Blocks until SIGTERM or SIGINT, or (when asked) the end of stdin.
fn wait_for_stop(exit_on_stdin_eof: bool) -> Result<&'static str, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM: {e}"))?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT: {e}"))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // Without --exit-on-stdin-eof the sender is held here, so `rx` never resolves.
        let _held = if exit_on_stdin_eof {
            // A plain thread: it may stay blocked in read(2) when a signal ends the process.
            std::thread::spawn(move || {
                let mut sink = [0u8; 4096];
                let mut stdin = std::io::stdin();
                while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
                let _ = tx.send(());
            });
            None
        } else {
            Some(tx)
        };
        Ok(tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = rx => "end of stdin",
        })
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fake-kube-api: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let file = match args.pods.as_ref().map(load).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => {
            eprintln!("fake-kube-api: {e}");
            return ExitCode::from(2);
        }
    };
    let api = FakeApi::start(&args.node);
    for ns in &file.namespaces {
        let labels: Vec<(&str, &str)> = ns
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        api.upsert_namespace(&ns.name, &labels);
    }
    for p in &file.pods {
        api.upsert_pod(&p.to_pod(&args.node));
    }
    api.write_kubeconfig(&args.kubeconfig);
    println!("{}", api.url());
    let _ = std::io::stdout().flush();
    eprintln!(
        "fake-kube-api: serving {} pods and {} namespaces for node {} at {}",
        file.pods.len(),
        file.namespaces.len(),
        args.node,
        api.url()
    );

    let why = match wait_for_stop(args.exit_on_stdin_eof) {
        Ok(why) => why,
        Err(e) => {
            eprintln!("fake-kube-api: {e}");
            return ExitCode::from(2);
        }
    };
    let r = api.requests();
    let unexpected = api.take_unexpected();
    eprintln!(
        "fake-kube-api: {why}: stopping; answered {} pod lists (+{} pages), {} pod watches, \
         {} namespace lists, {} namespace watches; {} unexpected",
        r.pods_list,
        r.pods_continue,
        r.pods_watch,
        r.namespaces_list,
        r.namespaces_watch,
        unexpected.len()
    );
    drop(api);
    if unexpected.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("fake-kube-api: {} unexpected request(s):", unexpected.len());
        for u in &unexpected {
            eprintln!("  {u}");
        }
        ExitCode::FAILURE
    }
}
