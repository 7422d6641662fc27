//! Real Prometheus (Debian's `prometheus`) as the remote-write receiver: started on a free
//! loopback port with `--web.enable-remote-write-receiver` and a temporary data directory,
//! killed when dropped; queried through its HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, http_get, secs, wait_until};

/// A Prometheus server for one test.
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

const HINT: &str = "Prometheus is needed: run tests/run.sh (it installs Debian's `prometheus`) \
                    or `apt-get install --no-install-recommends prometheus`";

impl Prometheus {
    /// Starts it and waits until it is ready.
    pub fn start() -> Prometheus {
        Self::start_with_config("global: {}\n", &[])
    }

    /// Starts it with this `prometheus.yml` and these further files beside it (name,
    /// content: rule files the config names, relative to it) and waits until it is ready.
    pub fn start_with_config(config_text: &str, files: &[(&str, &str)]) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_text).expect("write prometheus.yml");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text)
                .unwrap_or_else(|e| panic!("write {name}: {e}"));
        }
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting prometheus: {e}; {HINT}"));
        let mut p = Prometheus { child, addr, dir };
        let ready = wait_until(
            || matches!(http_get(addr, "/-/ready"), Ok((200, _))),
            secs(60),
        );
        if !ready {
            let _ = p.child.kill();
            panic!(
                "prometheus was not ready within 60 s; its log:\n{}",
                p.log()
            );
        }
        p
    }

    /// Its address (HTTP API).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its remote-write receiver.
    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.log")
    }

    /// `GET /api/v1/query?query=<expr>&time=<time_s>`: the `data.result` array.
    pub fn query(&self, expr: &str, time_s: f64) -> Vec<serde_json::Value> {
        let path = format!(
            "/api/v1/query?query={}&time={time_s:.3}",
            percent_encode(expr)
        );
        let (status, body) = http_get(self.addr, &path)
            .unwrap_or_else(|e| panic!("querying prometheus for {expr}: {e}"));
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("prometheus answered {status} {body}: {e}"));
        assert_eq!(v["status"], "success", "{expr}: {body}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// `GET /api/v1/alerts`: the alerts of its rules, pending and firing (`data.alerts`).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        self.get_data("/api/v1/alerts")["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The label sets of the series `selector` selects between `start_s` and `end_s`
    /// (`GET /api/v1/series`), each as a JSON object.
    pub fn series(&self, selector: &str, start_s: f64, end_s: f64) -> Vec<serde_json::Value> {
        let path = format!(
            "/api/v1/series?match[]={}&start={start_s:.3}&end={end_s:.3}",
            percent_encode(selector)
        );
        self.get_data(&path).as_array().cloned().unwrap_or_default()
    }

    /// `GET path` of its API: `data` of a successful answer.
    fn get_data(&self, path: &str) -> serde_json::Value {
        let (status, body) =
            http_get(self.addr, path).unwrap_or_else(|e| panic!("GET {path} from prometheus: {e}"));
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("prometheus answered {status} {body}: {e}"));
        assert_eq!(v["status"], "success", "GET {path}: {body}");
        v["data"].clone()
    }

    /// The raw samples of every series `selector` selects over the `range_s` seconds up
    /// to `time_s` (a range-vector query: exact timestamps, stale markers left out), by
    /// series (labels as `name=value` joined by `,`, sorted by name).
    pub fn raw_samples(
        &self,
        selector: &str,
        range_s: u64,
        time_s: f64,
    ) -> std::collections::BTreeMap<String, Vec<(i64, String)>> {
        let mut out = std::collections::BTreeMap::new();
        for series in self.query(&format!("{selector}[{range_s}s]"), time_s) {
            let labels = series["metric"].as_object().cloned().unwrap_or_default();
            let mut pairs: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            pairs.sort();
            let values = series["values"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    let t = (p[0].as_f64().unwrap_or_default() * 1000.0).round() as i64;
                    (t, p[1].as_str().unwrap_or_default().to_string())
                })
                .collect();
            out.insert(pairs.join(","), values);
        }
        out
    }

    /// Waits until `selector` has `n` series with samples in the `range_s` seconds up to
    /// `time_s`.
    pub fn wait_series(
        &self,
        selector: &str,
        n: usize,
        range_s: u64,
        time_s: f64,
        timeout: Duration,
    ) {
        let ok = wait_until(
            || self.raw_samples(selector, range_s, time_s).len() >= n,
            timeout,
        );
        assert!(
            ok,
            "prometheus did not get {n} series of {selector} within {timeout:?}; it has {:?}; log:\n{}",
            self.raw_samples(selector, range_s, time_s)
                .keys()
                .collect::<Vec<_>>(),
            self.log()
        );
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter's value.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
