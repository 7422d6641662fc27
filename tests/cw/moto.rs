//! moto's server as the CloudWatch Logs peer, and ways to read back what it holds.
//!
//! * [`Moto`] runs `python3 -m moto.server -H 127.0.0.1 -p <free port>` (killed on drop);
//!   [`Moto::stop`] takes it down (its port refuses connections), [`Moto::restart`] brings it
//!   back on the same port, empty.
//! * [`CwApi`] calls the CloudWatch Logs JSON API directly (std HTTP, no SDK): fast enough to
//!   poll in wait loops.
//! * [`Moto::dump`] runs `tests/cw_dump.py` (boto3) for the whole state: an independent reader,
//!   used for the final assertions.
//! * [`CwDelivery`] feeds a [`Tracker`] from CloudWatch like [`crate::Delivery`] does from the
//!   local sink.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use super::http;
use crate::{
    Agent, Record, TEST_AWS_REGION, Tracker, aws_test_env, free_port, http_get, repo_root,
    run_with_timeout, scrub_env, secs, wait_delivery, wait_until,
};

/// The Python interpreter with moto and boto3 (`KUBESHIP_PYTHON`, default `python3`).
pub fn python() -> String {
    std::env::var("KUBESHIP_PYTHON").unwrap_or_else(|_| "python3".into())
}

const INSTALL_HINT: &str = "moto's server is needed: run tests/run.sh (its ensure_moto step \
    installs it) or `python3 -m pip install 'moto[server]'`; KUBESHIP_PYTHON selects the \
    interpreter";

/// A moto server on 127.0.0.1 (CloudWatch Logs and every other service moto has).
pub struct Moto {
    child: Option<Child>,
    addr: SocketAddr,
    log_path: PathBuf,
    /// Holds moto's output; None only while starting.
    dir: Option<tempfile::TempDir>,
    startup: Duration,
    /// Extra environment of the server ([`Moto::start_with_env`]).
    env: Vec<(String, String)>,
    /// Processes started so far (each logs to its own file).
    runs: usize,
}

impl Moto {
    /// Starts moto on a free port and waits until it answers HTTP; panics after
    /// `secs(30)` or if it exits (a port taken meanwhile is retried on another one).
    pub fn start() -> Moto {
        Self::start_with_env(&[])
    }

    /// Like [`Moto::start`], with more environment variables for the server (e.g.
    /// `MOTO_ACCOUNT_ID`, the account every request acts in).
    pub fn start_with_env(env: &[(&str, &str)]) -> Moto {
        let mut dir = Some(
            tempfile::Builder::new()
                .prefix("kubeship-moto-")
                .tempdir()
                .expect("temp dir for moto"),
        );
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut last_log = String::new();
        for attempt in 0..3 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let mut moto = Moto {
                child: None,
                addr,
                log_path: PathBuf::new(),
                dir: dir.take(),
                startup: Duration::ZERO,
                env: env.clone(),
                runs: attempt,
            };
            if moto.spawn_and_wait() {
                return moto;
            }
            last_log = moto.log();
            dir = moto.dir.take();
            drop(moto);
            if !last_log.contains("Address already in use") {
                break;
            }
        }
        panic!("moto's server did not start; its output:\n{last_log}\n{INSTALL_HINT}");
    }

    /// Runs the server on `self.addr` (its output to a new log file) and waits until it
    /// answers; false if it exited or did not answer within `secs(30)`.
    fn spawn_and_wait(&mut self) -> bool {
        let dir = self.dir.as_ref().expect("moto dir");
        self.log_path = dir.path().join(format!("moto-{}.log", self.runs));
        self.runs += 1;
        let log = File::create(&self.log_path).expect("create moto log");
        let mut cmd = Command::new(python());
        scrub_env(&mut cmd);
        cmd.args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &self.addr.port().to_string(),
        ])
        .env("PYTHONUNBUFFERED", "1")
        .envs(aws_test_env(TEST_AWS_REGION))
        .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log);
        let started = Instant::now();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}\n{INSTALL_HINT}"));
        self.child = Some(child);
        let addr = self.addr;
        let mut exited = false;
        let up = wait_until(
            || {
                if let Some(c) = self.child.as_mut()
                    && c.try_wait().ok().flatten().is_some()
                {
                    exited = true;
                    return true;
                }
                matches!(http_get(addr, "/moto-api/"), Ok((200, _)))
            },
            secs(30),
        );
        if up && !exited {
            self.startup = started.elapsed();
            return true;
        }
        false
    }

    /// Stops the server (killed): its port refuses connections until [`Moto::restart`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port, with an empty state (a stopped one is
    /// stopped first); panics if it does not answer within `secs(30)` (e.g. the port was
    /// taken meanwhile).
    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.spawn_and_wait(),
            "moto did not start again on {}; its output:\n{}\n{INSTALL_HINT}",
            self.addr,
            self.log()
        );
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How long it took from spawn to the first answer.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// Direct API client (region [`TEST_AWS_REGION`]).
    pub fn api(&self) -> CwApi {
        CwApi::new(self.addr, TEST_AWS_REGION)
    }

    /// The server's output so far (a request log line per request).
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Everything CloudWatch Logs holds, read with boto3 by `tests/cw_dump.py`.
    pub fn dump(&self) -> CwState {
        dump(&self.endpoint(), TEST_AWS_REGION, None)
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() && self.startup > Duration::ZERO {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- moto {} output tail ---\n{}\n--- end ---",
                self.addr,
                lines[lines.len().saturating_sub(20)..].join("\n")
            );
        }
    }
}

/// Path of `tests/cw_dump.py`.
pub fn cw_dump_script() -> PathBuf {
    repo_root().join("tests/cw_dump.py")
}

fn cw_dump_command(endpoint: &str, region: &str) -> Command {
    let mut cmd = Command::new(python());
    scrub_env(&mut cmd);
    cmd.arg(cw_dump_script())
        .args(["--endpoint", endpoint, "--region", region])
        .envs(aws_test_env(region));
    cmd
}

/// Runs `tests/cw_dump.py` against `endpoint` (optionally only groups starting with
/// `group_prefix`) and parses its output.
pub fn dump(endpoint: &str, region: &str, group_prefix: Option<&str>) -> CwState {
    let mut cmd = cw_dump_command(endpoint, region);
    if let Some(p) = group_prefix {
        cmd.args(["--group-prefix", p]);
    }
    run_dump(&mut cmd)
}

/// `tests/cw_dump.py --put GROUP STREAM MESSAGE...` (boto3 puts, then dumps).
pub fn boto3_put_and_dump(endpoint: &str, group: &str, stream: &str, messages: &[&str]) -> CwState {
    let mut cmd = cw_dump_command(endpoint, TEST_AWS_REGION);
    cmd.args(["--put", group, stream]).args(messages);
    run_dump(&mut cmd)
}

fn run_dump(cmd: &mut Command) -> CwState {
    let out = run_with_timeout(cmd, secs(120));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{INSTALL_HINT}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "cw_dump.py printed invalid JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(500)])
        )
    })
}

// ---------------------------------------------------------------------------------------------
// State model
// ---------------------------------------------------------------------------------------------

/// Everything a CloudWatch Logs endpoint holds (groups sorted by name, streams by name, events
/// as GetLogEvents returns them: by timestamp).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct CwState {
    pub groups: Vec<CwGroup>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct CwGroup {
    pub name: String,
    #[serde(rename = "retentionInDays")]
    pub retention_in_days: Option<u32>,
    /// moto 5 does not report it (keep the CreateLogGroup request from the proxy to check it).
    #[serde(rename = "logGroupClass")]
    pub log_group_class: Option<String>,
    /// None when the endpoint cannot list tags.
    pub tags: Option<BTreeMap<String, String>>,
    pub streams: Vec<CwStream>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct CwStream {
    pub name: String,
    pub events: Vec<CwEvent>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct CwEvent {
    pub timestamp: i64,
    #[serde(rename = "ingestionTime")]
    pub ingestion_time: Option<i64>,
    pub message: String,
}

impl CwState {
    pub fn group(&self, name: &str) -> Option<&CwGroup> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn stream(&self, group: &str, stream: &str) -> Option<&CwStream> {
        self.group(group)?.streams.iter().find(|s| s.name == stream)
    }

    pub fn group_names(&self) -> Vec<&str> {
        self.groups.iter().map(|g| g.name.as_str()).collect()
    }

    /// `(group, stream, event)` for every event.
    pub fn events(&self) -> impl Iterator<Item = (&str, &str, &CwEvent)> {
        self.groups.iter().flat_map(|g| {
            g.streams.iter().flat_map(move |s| {
                s.events
                    .iter()
                    .map(move |e| (g.name.as_str(), s.name.as_str(), e))
            })
        })
    }

    pub fn total_events(&self) -> usize {
        self.groups
            .iter()
            .flat_map(|g| &g.streams)
            .map(|s| s.events.len())
            .sum()
    }

    /// Every event's message parsed as a record: `(records, unparsable)`.
    pub fn records(&self) -> (Vec<CwRecord>, Vec<CwBadEvent>) {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for (g, s, e) in self.events() {
            match serde_json::from_str::<Record>(&e.message) {
                Ok(record) => good.push(CwRecord {
                    group: g.to_string(),
                    stream: s.to_string(),
                    timestamp: e.timestamp,
                    message: e.message.clone(),
                    record,
                }),
                Err(err) => bad.push(CwBadEvent {
                    group: g.to_string(),
                    stream: s.to_string(),
                    message_prefix: e.message.chars().take(300).collect(),
                    message_len: e.message.len(),
                    error: err.to_string(),
                }),
            }
        }
        (good, bad)
    }

    /// One line per group and stream with event counts (for failure messages).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        for g in &self.groups {
            let _ = writeln!(
                s,
                "group {} (retention {:?}, class {:?}, tags {:?})",
                g.name, g.retention_in_days, g.log_group_class, g.tags
            );
            for st in &g.streams {
                let _ = writeln!(s, "  stream {}: {} events", st.name, st.events.len());
            }
        }
        if s.is_empty() {
            s.push_str("(no log groups)\n");
        }
        s
    }
}

/// An event whose message is a record.
#[derive(Clone, Debug)]
pub struct CwRecord {
    pub group: String,
    pub stream: String,
    pub timestamp: i64,
    /// The event's message: the record JSON as the agent sent it.
    pub message: String,
    pub record: Record,
}

impl CwRecord {
    /// Checks that the event timestamp is the record's `time` in Unix ms.
    pub fn check_timestamp(&self) -> Result<(), String> {
        let want = crate::parse_rfc3339_ms(&self.record.time)
            .ok_or_else(|| format!("record time {:?} is not RFC 3339", self.record.time))?;
        if want == self.timestamp {
            Ok(())
        } else {
            Err(format!(
                "event timestamp {} but record time {} is {want} ms",
                self.timestamp, self.record.time
            ))
        }
    }
}

/// An event whose message is not a record.
#[derive(Clone, Debug)]
pub struct CwBadEvent {
    pub group: String,
    pub stream: String,
    pub message_prefix: String,
    pub message_len: usize,
    pub error: String,
}

/// Checks that `message` has exactly the record shape of DESIGN.md "Record format": the keys
/// `log`, `stream`, `time`, `kubernetes` in that order, `kubernetes` with `pod_name`,
/// `namespace_name`, `pod_id`, `host`, `container_name`, `docker_id` in that order, all strings.
pub fn check_record_shape(message: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(message).map_err(|e| format!("not JSON: {e}"))?;
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    // serde_json without `preserve_order` sorts keys: check the order on the text itself.
    let order = |text: &str, keys: &[&str]| -> bool {
        let mut at = 0;
        keys.iter()
            .all(|k| match text[at..].find(&format!("\"{k}\":")) {
                Some(i) => {
                    at += i + 1;
                    true
                }
                None => false,
            })
    };
    let top = ["log", "stream", "time", "kubernetes"];
    let k8s = [
        "pod_name",
        "namespace_name",
        "pod_id",
        "host",
        "container_name",
        "docker_id",
    ];
    let mut got = keys(&v);
    got.sort();
    let mut want: Vec<String> = top.iter().map(|s| s.to_string()).collect();
    want.sort();
    if got != want {
        return Err(format!("record keys {got:?}, want {top:?}"));
    }
    let mut got = keys(&v["kubernetes"]);
    got.sort();
    let mut want: Vec<String> = k8s.iter().map(|s| s.to_string()).collect();
    want.sort();
    if got != want {
        return Err(format!("kubernetes keys {got:?}, want {k8s:?}"));
    }
    for k in ["log", "stream", "time"] {
        if !v[k].is_string() {
            return Err(format!("`{k}` is not a string"));
        }
    }
    if let Some(k) = k8s.iter().find(|k| !v["kubernetes"][**k].is_string()) {
        return Err(format!("`kubernetes.{k}` is not a string"));
    }
    if !order(message, &top) {
        return Err(format!("record keys not in the order {top:?}"));
    }
    let k8s_text = &message[message.find("\"kubernetes\":").unwrap_or(0)..];
    if !order(k8s_text, &k8s) {
        return Err(format!("kubernetes keys not in the order {k8s:?}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Direct API client
// ---------------------------------------------------------------------------------------------

/// A CloudWatch Logs API error (or a transport failure, `status` 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CwError {
    pub status: u16,
    /// `__type` without its namespace, e.g. `ResourceNotFoundException`.
    pub kind: String,
    pub message: String,
}

impl std::fmt::Display for CwError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {}: {}", self.status, self.kind, self.message)
    }
}

/// Calls the CloudWatch Logs JSON API (`X-Amz-Target: Logs_20140328.<Op>`) over plain HTTP.
/// Requests carry a syntactically valid but unsigned SigV4 `Authorization` header (moto reads
/// the region and access key from it and checks no signature).
#[derive(Clone, Debug)]
pub struct CwApi {
    addr: SocketAddr,
    region: String,
    timeout: Duration,
}

impl CwApi {
    pub fn new(addr: SocketAddr, region: &str) -> CwApi {
        CwApi {
            addr,
            region: region.to_string(),
            timeout: secs(60),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Calls `op` with the JSON `body`; the JSON answer or the error.
    pub fn call(&self, op: &str, body: &Value) -> Result<Value, CwError> {
        let payload = serde_json::to_vec(body).expect("serialize request");
        let headers = vec![
            ("Host".to_string(), self.addr.to_string()),
            (
                "Content-Type".to_string(),
                "application/x-amz-json-1.1".to_string(),
            ),
            ("X-Amz-Target".to_string(), format!("Logs_20140328.{op}")),
            ("X-Amz-Date".to_string(), "20261123T100000Z".to_string()),
            (
                "Authorization".to_string(),
                format!(
                    "AWS4-HMAC-SHA256 Credential=testing/20261123/{}/logs/aws4_request, \
                     SignedHeaders=host;x-amz-date;x-amz-target, Signature={}",
                    self.region,
                    "0".repeat(64)
                ),
            ),
        ];
        let resp = http::roundtrip(self.addr, "POST", "/", &headers, &payload, self.timeout)
            .map_err(|e| CwError {
                status: 0,
                kind: "Transport".into(),
                message: format!("{op} to {}: {e}", self.addr),
            })?;
        let v: Value = if resp.body.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&resp.body).unwrap_or_else(|_| json!({"raw": resp.text()}))
        };
        if resp.status() == 200 {
            return Ok(v);
        }
        let kind = v["__type"]
            .as_str()
            .or(resp.head.get("x-amzn-ErrorType"))
            .unwrap_or("Unknown");
        let kind = kind.rsplit('#').next().unwrap_or(kind);
        let kind = kind.split(':').next().unwrap_or(kind).to_string();
        let message = v["message"]
            .as_str()
            .or(v["Message"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| resp.text());
        Err(CwError {
            status: resp.status(),
            kind,
            message,
        })
    }

    fn paginate(&self, op: &str, mut body: Value, key: &str) -> Result<Vec<Value>, CwError> {
        let mut out = Vec::new();
        loop {
            let page = self.call(op, &body)?;
            if let Some(items) = page[key].as_array() {
                out.extend(items.iter().cloned());
            }
            match page["nextToken"].as_str() {
                Some(t) if !t.is_empty() && body["nextToken"].as_str() != Some(t) => {
                    body["nextToken"] = json!(t);
                }
                _ => return Ok(out),
            }
        }
    }

    /// DescribeLogGroups (all pages), optionally by name prefix.
    pub fn describe_groups(&self, prefix: Option<&str>) -> Result<Vec<Value>, CwError> {
        let mut body = json!({});
        if let Some(p) = prefix {
            body["logGroupNamePrefix"] = json!(p);
        }
        self.paginate("DescribeLogGroups", body, "logGroups")
    }

    /// Stream names of `group`, sorted.
    pub fn stream_names(&self, group: &str) -> Result<Vec<String>, CwError> {
        let streams = self.paginate(
            "DescribeLogStreams",
            json!({"logGroupName": group, "orderBy": "LogStreamName"}),
            "logStreams",
        )?;
        let mut names: Vec<String> = streams
            .iter()
            .filter_map(|s| s["logStreamName"].as_str().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Every event of a stream (GetLogEvents from the head, following `nextForwardToken`
    /// until it repeats).
    pub fn events(&self, group: &str, stream: &str) -> Result<Vec<CwEvent>, CwError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body =
                json!({"logGroupName": group, "logStreamName": stream, "startFromHead": true});
            if let Some(t) = &token {
                body["nextToken"] = json!(t);
            }
            let page = self.call("GetLogEvents", &body)?;
            for e in page["events"].as_array().into_iter().flatten() {
                out.push(CwEvent {
                    timestamp: e["timestamp"].as_i64().unwrap_or(i64::MIN),
                    ingestion_time: e["ingestionTime"].as_i64(),
                    message: e["message"].as_str().unwrap_or_default().to_string(),
                });
            }
            let next = page["nextForwardToken"].as_str().map(str::to_string);
            if next.is_none() || next == token {
                return Ok(out);
            }
            token = next;
        }
    }

    /// Tags of a group (ListTagsLogGroup).
    pub fn group_tags(&self, group: &str) -> Result<BTreeMap<String, String>, CwError> {
        let v = self.call("ListTagsLogGroup", &json!({"logGroupName": group}))?;
        Ok(v["tags"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The whole state (or the groups starting with `prefix`), like [`Moto::dump`] but
    /// without Python.
    pub fn snapshot(&self, prefix: Option<&str>) -> Result<CwState, CwError> {
        let mut groups = Vec::new();
        for g in self.describe_groups(prefix)? {
            let name = g["logGroupName"].as_str().unwrap_or_default().to_string();
            let mut streams = Vec::new();
            for s in self.stream_names(&name)? {
                let events = self.events(&name, &s)?;
                streams.push(CwStream { name: s, events });
            }
            groups.push(CwGroup {
                retention_in_days: g["retentionInDays"].as_u64().map(|v| v as u32),
                log_group_class: g["logGroupClass"].as_str().map(str::to_string),
                tags: self.group_tags(&name).ok(),
                name,
                streams,
            });
        }
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(CwState { groups })
    }

    pub fn create_group(&self, group: &str) -> Result<(), CwError> {
        self.call("CreateLogGroup", &json!({"logGroupName": group}))
            .map(drop)
    }

    pub fn create_stream(&self, group: &str, stream: &str) -> Result<(), CwError> {
        self.call(
            "CreateLogStream",
            &json!({"logGroupName": group, "logStreamName": stream}),
        )
        .map(drop)
    }

    /// PutLogEvents; the answer (`rejectedLogEventsInfo` when moto dropped some).
    pub fn put(
        &self,
        group: &str,
        stream: &str,
        events: &[super::InputEvent],
    ) -> Result<Value, CwError> {
        let list: Vec<Value> = events
            .iter()
            .map(|e| json!({"timestamp": e.timestamp, "message": e.message}))
            .collect();
        self.call(
            "PutLogEvents",
            &json!({"logGroupName": group, "logStreamName": stream, "logEvents": list}),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery tracking from CloudWatch
// ---------------------------------------------------------------------------------------------

/// [`crate::Delivery`] for the CloudWatch sink: every poll reads the whole state back from moto
/// ([`CwApi::snapshot`]) and rebuilds the [`Tracker`] from it, stream by stream in timestamp
/// order (what CloudWatch keeps is a set ordered by timestamp, not a delivery log: for delivery
/// order see [`super::FaultProxy::delivered_records`]).
pub struct CwDelivery {
    api: CwApi,
    prefix: Option<String>,
    pub state: CwState,
    pub records: Vec<CwRecord>,
    pub bad: Vec<CwBadEvent>,
    pub tracker: Tracker,
    /// When each poll ran and how many events CloudWatch held then: a lower bound of what
    /// had been delivered by that time.
    pub polls: Vec<(std::time::Instant, usize)>,
}

impl CwDelivery {
    pub fn new(moto: &Moto) -> CwDelivery {
        Self::with_api(moto.api(), None)
    }

    /// Only log groups whose name starts with `prefix`.
    pub fn with_api(api: CwApi, prefix: Option<&str>) -> CwDelivery {
        CwDelivery {
            api,
            prefix: prefix.map(str::to_string),
            state: CwState::default(),
            records: Vec::new(),
            bad: Vec::new(),
            tracker: Tracker::new(),
            polls: Vec::new(),
        }
    }

    /// Events CloudWatch held at the last poll at or before `t` (0 before the first).
    pub fn total_at(&self, t: std::time::Instant) -> usize {
        let i = self.polls.partition_point(|&(at, _)| at <= t);
        i.checked_sub(1).map_or(0, |i| self.polls[i].1)
    }

    /// Reads everything again; returns the number of events. Panics if moto cannot be read.
    pub fn poll(&mut self) -> usize {
        let state = self
            .api
            .snapshot(self.prefix.as_deref())
            .unwrap_or_else(|e| panic!("reading CloudWatch state from moto: {e}"));
        self.set_state(state);
        self.polls.push((std::time::Instant::now(), self.total()));
        self.total()
    }

    /// Replaces the state (e.g. with [`Moto::dump`]'s) and rebuilds records and tracker.
    pub fn set_state(&mut self, state: CwState) {
        let (records, bad) = state.records();
        let mut tracker = Tracker::new();
        for r in &records {
            tracker.observe(&r.record);
        }
        self.state = state;
        self.records = records;
        self.bad = bad;
        self.tracker = tracker;
    }

    /// Events read by the last poll.
    pub fn total(&self) -> usize {
        self.state.total_events()
    }

    /// Records of container `name` (matched on `kubernetes.container_name`).
    pub fn records_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a CwRecord> + 'a {
        self.records
            .iter()
            .filter(move |r| r.record.kubernetes.container_name == name)
    }

    /// Whether every `(container name, n)` has all of `0..n` delivered (after a poll).
    pub fn has_all(&mut self, expect: &[(&str, u64)]) -> bool {
        self.poll();
        expect
            .iter()
            .all(|(name, n)| self.tracker.has_all(name, *n))
    }

    /// Describes what is missing of `expect`.
    pub fn describe_missing(&self, expect: &[(&str, u64)]) -> String {
        self.tracker.describe_missing(expect)
    }

    /// Polls until every `(container name, n)` has all of `0..n` in CloudWatch; panics after
    /// `timeout` (listing what is missing) or if the agent exits meanwhile.
    #[track_caller]
    pub fn wait_all(&mut self, agent: &mut Agent, expect: &[(&str, u64)], timeout: Duration) {
        let Err(what) = wait_delivery(agent, timeout, "reached CloudWatch", || {
            self.has_all(expect)
        }) else {
            return;
        };
        panic!(
            "{what}:\n{}CloudWatch holds {} events ({} not records):\n{}agent stderr tail:\n{}",
            self.describe_missing(expect),
            self.total(),
            self.bad.len(),
            self.state.summary(),
            agent.stderr_tail(40)
        );
    }

    /// Polls until CloudWatch holds at least `n` events; panics after `timeout` or if the agent
    /// exits.
    #[track_caller]
    pub fn wait_total(&mut self, agent: &mut Agent, n: usize, timeout: Duration) {
        let ok = wait_until(
            || {
                agent.assert_running("while waiting for CloudWatch events");
                self.poll() >= n
            },
            timeout,
        );
        assert!(
            ok,
            "CloudWatch holds {} events, want at least {n} within {timeout:?}:\n{}agent stderr \
             tail:\n{}",
            self.total(),
            self.state.summary(),
            agent.stderr_tail(40)
        );
    }
}

/// Waits until `cond(moto state)` holds, polling with [`CwApi::snapshot`]; panics with the
/// state summary after `timeout`.
#[track_caller]
pub fn wait_for_state(
    api: &CwApi,
    mut cond: impl FnMut(&CwState) -> bool,
    timeout: Duration,
    what: &str,
) -> CwState {
    let mut last = CwState::default();
    let ok = wait_until(
        || match api.snapshot(None) {
            Ok(s) => {
                let done = cond(&s);
                last = s;
                done
            }
            Err(_) => false,
        },
        timeout,
    );
    assert!(
        ok,
        "timed out after {timeout:?} waiting for {what}; CloudWatch holds:\n{}",
        last.summary()
    );
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"log":"a","stream":"stdout","time":"2026-11-23T10:00:00.000000000Z","kubernetes":{"pod_name":"p","namespace_name":"n","pod_id":"u","host":"h","container_name":"c","docker_id":"d"}}"#;

    #[test]
    fn record_shape() {
        assert_eq!(check_record_shape(GOOD), Ok(()));
        let reordered = GOOD.replace(
            r#""stream":"stdout","time":"2026-11-23T10:00:00.000000000Z""#,
            r#""time":"2026-11-23T10:00:00.000000000Z","stream":"stdout""#,
        );
        assert!(
            check_record_shape(&reordered)
                .unwrap_err()
                .contains("order")
        );
        let extra = GOOD.replace(r#""log":"a","#, r#""log":"a","x":1,"#);
        assert!(
            check_record_shape(&extra)
                .unwrap_err()
                .contains("record keys")
        );
        let missing = GOOD.replace(r#","docker_id":"d""#, "");
        assert!(
            check_record_shape(&missing)
                .unwrap_err()
                .contains("kubernetes keys")
        );
        let number = GOOD.replace(r#""host":"h""#, r#""host":1"#);
        assert!(
            check_record_shape(&number)
                .unwrap_err()
                .contains("kubernetes.host")
        );
        assert!(
            check_record_shape(&GOOD[..40])
                .unwrap_err()
                .contains("not JSON")
        );
    }

    #[test]
    fn state_records_and_timestamps() {
        let state = CwState {
            groups: vec![CwGroup {
                name: "/g".into(),
                streams: vec![CwStream {
                    name: "s".into(),
                    events: vec![
                        CwEvent {
                            timestamp: 1_795_428_000_000,
                            ingestion_time: None,
                            message: GOOD.into(),
                        },
                        CwEvent {
                            timestamp: 1_795_428_000_001,
                            ingestion_time: None,
                            message: GOOD.into(),
                        },
                        CwEvent {
                            timestamp: 1,
                            ingestion_time: None,
                            message: "not json".into(),
                        },
                    ],
                }],
                ..CwGroup::default()
            }],
        };
        assert_eq!(state.total_events(), 3);
        assert_eq!(state.stream("/g", "s").map(|s| s.events.len()), Some(3));
        assert!(state.stream("/g", "x").is_none());
        let (good, bad) = state.records();
        assert_eq!((good.len(), bad.len()), (2, 1));
        assert_eq!(good[0].check_timestamp(), Ok(()));
        assert!(good[1].check_timestamp().is_err());
        assert!(state.summary().contains("stream s: 3 events"));
    }
}
