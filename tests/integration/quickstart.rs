//! The quick start: `kubeship run --config examples/quickstart.yaml --exit-on-eof` against a
//! copy of the examples tree, checked record by record.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kubeship_tests::{
    Kubernetes, Record, Scraped, Sink, copy_tree, free_port, kubeship, read_scraped, repo_root,
    run_with_timeout, secs,
};

/// Copies `examples/quickstart.yaml` and `examples/logs/` into a fresh directory.
fn copy_examples() -> tempfile::TempDir {
    let src = repo_root().join("examples");
    let dir = tempfile::Builder::new()
        .prefix("kubeship-quickstart-")
        .tempdir()
        .expect("tempdir");
    fs::copy(
        src.join("quickstart.yaml"),
        dir.path().join("quickstart.yaml"),
    )
    .expect("copy quickstart.yaml");
    copy_tree(&src.join("logs"), &dir.path().join("logs")).expect("copy examples/logs");
    copy_tree(&src.join("metrics"), &dir.path().join("metrics")).expect("copy examples/metrics");
    dir
}

/// Expected `kubernetes` fields per container name, from the symlinks of the sample layout.
fn expected_kubernetes(root: &Path) -> HashMap<String, Kubernetes> {
    let mut out = HashMap::new();
    for e in fs::read_dir(root.join("logs/containers")).expect("containers dir") {
        let e = e.expect("entry");
        let name = e.file_name().to_string_lossy().into_owned();
        let stem = name.strip_suffix(".log").expect(".log symlink");
        let (rest, id) = stem.rsplit_once('-').expect("<pod>_<ns>_<container>-<id>");
        let mut parts = rest.splitn(3, '_');
        let (pod, ns, container) = (
            parts.next().expect("pod"),
            parts.next().expect("ns"),
            parts.next().expect("container"),
        );
        let target = fs::read_link(e.path()).expect("symlink");
        let pod_dir = target
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .expect("pod dir")
            .to_string_lossy()
            .into_owned();
        let uid = pod_dir
            .strip_prefix(&format!("{ns}_{pod}_"))
            .expect("<ns>_<pod>_<uid>");
        out.insert(
            container.to_string(),
            Kubernetes {
                pod_name: pod.into(),
                namespace_name: ns.into(),
                pod_id: uid.into(),
                host: "node-1".into(),
                container_name: container.into(),
                docker_id: id.into(),
            },
        );
    }
    out
}

fn run_quickstart(root: &Path) -> String {
    let port = free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let out = run_with_timeout(
        kubeship()
            .current_dir(root)
            .env("KUBESHIP_LISTEN_ADDR", &addr)
            .args(["run", "--config", "quickstart.yaml", "--exit-on-eof"]),
        secs(60),
    );
    assert!(
        out.status.success(),
        "quick start run exited with {}; stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sink_file(root: &Path, stream: &str) -> PathBuf {
    root.join("out/sink/aws/containerinsights/demo/application")
        .join(format!("{stream}.jsonl"))
}

fn logs(recs: &[Record]) -> Vec<&str> {
    recs.iter().map(|r| r.log.as_str()).collect()
}

#[test]
fn quickstart_delivers_the_sample_node() {
    let dir = copy_examples();
    let root = dir.path();
    let stdout = run_quickstart(root);
    assert!(
        stdout.contains("local sink output:") && stdout.contains("metrics-sink/samples.jsonl ("),
        "the run says where records and samples are: {stdout}"
    );

    let mut sink = Sink::new(root.join("out/sink"));
    sink.poll();
    assert!(
        sink.bad_lines().is_empty(),
        "invalid sink lines: {:?}",
        sink.bad_lines()
    );
    let expected = expected_kubernetes(root);
    assert_eq!(expected.len(), 3, "3 sample containers");
    for r in sink.records() {
        let want = expected
            .get(&r.kubernetes.container_name)
            .unwrap_or_else(|| panic!("record of unknown container: {r:?}"));
        assert_eq!(&r.kubernetes, want, "kubernetes fields of {:?}", r.log);
    }

    // nginx: gz (1-4), rotated (5-8), live (9-12), in order; two stderr lines.
    let nginx_file = sink_file(root, "web-5f7c9d8b4-q2x7m_default_nginx");
    let nginx = sink.file_records(&nginx_file).to_vec();
    assert!(
        !nginx.is_empty(),
        "no records in {}; sink files: {:?}",
        nginx_file.display(),
        sink.files().collect::<Vec<_>>()
    );
    let items: Vec<u32> = nginx
        .iter()
        .filter_map(|r| {
            let rest = r.log.split_once("GET /items/")?.1;
            rest.split(' ').next()?.parse().ok()
        })
        .collect();
    assert_eq!(
        items,
        (1..=12).collect::<Vec<_>>(),
        "nginx requests from .gz, rotated and live file, oldest first"
    );
    assert_eq!(nginx.len(), 14, "nginx: 12 access + 2 error lines");
    let errs: Vec<&Record> = nginx.iter().filter(|r| r.stream == "stderr").collect();
    assert_eq!(errs.len(), 2, "nginx stderr records");
    assert!(
        errs.iter()
            .all(|r| r.log.contains("[warn]") || r.log.contains("[error]"))
    );
    assert_eq!(
        nginx[0].log,
        r#"10.42.0.17 - - [22/Nov/2026:09:59:01 +0000] "GET /items/1 HTTP/1.1" 200 601 "-" "curl/8.5.0""#
    );
    assert_eq!(nginx[0].time, "2026-11-22T09:59:01.100000000Z");
    assert_eq!(nginx[0].stream, "stdout");

    // Java: P/F merged; the stack trace is one record headed by the logger's line.
    let app = sink
        .file_records(&sink_file(root, "checkout-7d4b9c-xk2lp_shop_app"))
        .to_vec();
    let trace = [
        "2026-11-22 10:20:02.003 ERROR 1 --- [nio-8080-exec-2] c.e.checkout.PaymentService              : charge failed for order A-1001",
        "java.lang.IllegalStateException: card declined",
        "\tat com.example.checkout.PaymentService.charge(PaymentService.java:42)",
        "\tat com.example.checkout.OrderController.pay(OrderController.java:88)",
        "Caused by: java.io.IOException: connection reset by peer",
        "\tat com.example.payments.HttpClient.post(HttpClient.java:117)",
        "\t... 23 more",
    ]
    .join("\n");
    let merged = "2026-11-22 10:20:01.250  INFO 1 --- [nio-8080-exec-1] c.e.checkout.OrderController             : order A-1001 accepted: {\"items\":[{\"sku\":\"KB-001\",\"qty\":1},{\"sku\":\"MS-204\",\"qty\":2},{\"sku\":\"HD-512\",\"qty\":1}],\"total\":\"184.97\",\"currency\":\"EUR\"}";
    let app_logs = logs(&app);
    assert_eq!(
        app.iter().filter(|r| r.log.contains("\tat ")).count(),
        1,
        "the Java stack trace must be exactly one record: {app_logs:#?}"
    );
    let t = app
        .iter()
        .find(|r| r.log.contains("\tat "))
        .expect("trace record");
    assert_eq!(t.log, trace, "Java trace record");
    assert_eq!(t.stream, "stderr");
    assert_eq!(
        t.time, "2026-11-22T10:20:02.003000000Z",
        "time of the first line"
    );
    let m = app
        .iter()
        .find(|r| r.log.contains("order A-1001 accepted"))
        .unwrap_or_else(|| panic!("merged partial record missing: {app_logs:#?}"));
    assert_eq!(m.log, merged, "CRI P/P/F pieces merged into one record");
    assert_eq!(m.stream, "stdout");
    assert_eq!(app.len(), 5, "Java records: {app_logs:#?}");
    assert!(app_logs.iter().any(|l| l.ends_with("order A-1001 paid")));

    // Python (docker json-file): traceback one record; partial chunk merged.
    let worker = sink
        .file_records(&sink_file(root, "report-worker-6b8f5c-r9zt4_batch_worker"))
        .to_vec();
    let tb = [
        "Traceback (most recent call last):",
        "  File \"/app/worker.py\", line 42, in run",
        "    result = handle(job)",
        "  File \"/app/worker.py\", line 27, in handle",
        "    raise ValueError(f\"invalid payload for job {job.id}\")",
        "ValueError: invalid payload for job 41",
    ]
    .join("\n");
    let worker_logs = logs(&worker);
    assert_eq!(
        worker
            .iter()
            .filter(|r| r.log.contains("File \"/app/worker.py\""))
            .count(),
        1,
        "the traceback must be exactly one record: {worker_logs:#?}"
    );
    let t = worker
        .iter()
        .find(|r| r.log.contains("Traceback"))
        .expect("traceback record");
    assert_eq!(t.log, tb, "Python traceback record");
    assert_eq!(t.stream, "stderr");
    assert!(
        worker_logs.contains(&"2026-11-22 10:30:02,502 ERROR worker: job 41 failed"),
        "the logger line before the traceback: {worker_logs:#?}"
    );
    assert!(
        worker_logs.contains(&"2026-11-22 10:30:01,200 INFO worker: job 41 payload: {\"report\":\"daily-sales\",\"regions\":[\"eu-west-1\",\"us-east-1\",\"ap-south-1\"],\"format\":\"csv\"}"),
        "docker partial chunks merged: {worker_logs:#?}"
    );
    assert_eq!(worker.len(), 7, "worker records: {worker_logs:#?}");
    assert!(worker.iter().all(|r| !r.log.ends_with('\n')));
    let first = &worker[0];
    assert_eq!(
        first.log,
        "2026-11-22 10:30:00,001 INFO worker: started, queue=reports"
    );
    assert_eq!(first.time, "2026-11-22T10:30:00.001000000Z");

    // A second run resumes from the checkpoints and delivers nothing new.
    let before = sink.total();
    run_quickstart(root);
    let mut again = Sink::new(root.join("out/sink"));
    again.poll();
    assert_eq!(
        again.total(),
        before,
        "a second run must not re-deliver checkpointed records"
    );
}

/// The metrics half: the sample exposition (a static `file` target) and the agent's own
/// metrics, scraped once before `--exit-on-eof` exits, labelled, in the local sink.
#[test]
fn quickstart_scrapes_the_sample_exposition_and_the_agent() {
    let dir = copy_examples();
    let root = dir.path();
    run_quickstart(root);
    let samples = read_scraped(&root.join("out/metrics-sink/samples.jsonl"));
    let find = |name: &str, labels: &[(&str, &str)]| -> Vec<&Scraped> {
        samples
            .iter()
            .filter(|s| s.name() == name && s.has(labels))
            .collect()
    };
    let target = [
        ("cluster", "demo"),
        ("job", "checkout"),
        ("instance", "checkout.prom"),
        ("namespace", "shop"),
        ("node", "node-1"),
    ];
    let one = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let all: Vec<(&str, &str)> = target
            .iter()
            .copied()
            .chain(labels.iter().copied())
            .collect();
        let found = find(name, &all);
        assert_eq!(found.len(), 1, "one scrape of {name}{labels:?}: {found:#?}");
        assert_eq!(
            found[0].labels.len(),
            all.len() + 1,
            "exactly the target's and the exposition's labels: {:?}",
            found[0].labels
        );
        found[0]
            .value()
            .unwrap_or_else(|| panic!("{name}: {:?}", found[0].v))
    };
    assert_eq!(
        one(
            "http_requests_total",
            &[("method", "POST"), ("code", "502")]
        ),
        4.0
    );
    assert_eq!(
        one("http_request_duration_seconds_bucket", &[("le", "0.25")]),
        1301.0
    );
    assert_eq!(
        one("http_request_duration_seconds_bucket", &[("le", "+Inf")]),
        1342.0
    );
    assert_eq!(one("http_request_duration_seconds_count", &[]), 1342.0);
    assert_eq!(one("payment_latency_seconds", &[("quantile", "0.99")]), 1.7);
    assert_eq!(one("orders_in_flight", &[]), 3.0);
    assert_eq!(one("up", &[]), 1.0);
    assert_eq!(one("scrape_samples_scraped", &[]), 15.0);
    let checkout = samples.iter().filter(|s| s.has(&target)).count();
    assert_eq!(
        checkout,
        15 + 5,
        "15 exposition samples and 5 report series"
    );

    // The agent itself, job "kubeship", read from its registry.
    let own = find("up", &[("job", "kubeship")]);
    assert_eq!(own.len(), 1, "the agent's own target: {own:#?}");
    assert_eq!(own[0].value(), Some(1.0));
    assert!(
        samples
            .iter()
            .any(|s| s.has(&[("job", "kubeship")]) && s.name().starts_with("kubeship_log_")),
        "the agent's log-pipeline metrics forwarded"
    );
    // One timestamp per scrape: every sample of the checkout target shares it.
    let times: std::collections::BTreeSet<i64> = samples
        .iter()
        .filter(|s| s.has(&target))
        .map(|s| s.t)
        .collect();
    assert_eq!(times.len(), 1, "one scrape, one timestamp: {times:?}");
}

/// `examples/make-samples.sh` regenerates exactly the committed sample tree (including the
/// gzip bytes).
#[test]
fn sample_tree_is_reproducible() {
    let src = repo_root().join("examples");
    let dir = tempfile::tempdir().expect("tempdir");
    fs::copy(
        src.join("make-samples.sh"),
        dir.path().join("make-samples.sh"),
    )
    .expect("copy script");
    let out = run_with_timeout(
        Command::new("bash").arg(dir.path().join("make-samples.sh")),
        secs(30),
    );
    assert!(
        out.status.success(),
        "make-samples.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = tree(&src.join("logs"));
    let b = tree(&dir.path().join("logs"));
    let names_a: Vec<_> = a.keys().collect();
    let names_b: Vec<_> = b.keys().collect();
    assert_eq!(
        names_a, names_b,
        "committed examples/logs differs from make-samples.sh output"
    );
    for (k, v) in &a {
        assert!(
            b.get(k) == Some(v),
            "{k} differs from make-samples.sh output; rerun examples/make-samples.sh"
        );
    }
}

/// Relative path -> content (files) or `-> target` (symlinks).
fn tree(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).expect("read_dir") {
            let e = e.expect("entry");
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            let t = e.file_type().expect("file type");
            if t.is_symlink() {
                let target = fs::read_link(&p).expect("read_link");
                out.insert(rel, format!("-> {}", target.display()).into_bytes());
            } else if t.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(rel, fs::read(&p).expect("read"));
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(root, root, &mut out);
    out
}
