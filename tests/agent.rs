//! Agent config + process.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::*;

/// The agent configuration written by [`Agent::start`]; defaults are tuned for fast tests.
/// All paths are relative to the config file (the node root).
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub cluster: String,
    pub node_name: String,
    pub shutdown_timeout_secs: u64,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub read_from: String,
    pub max_record_bytes: u64,
    pub poll_interval_ms: u64,
    pub rescan_interval_secs: u64,
    pub rotate_wait_secs: u64,
    pub eof_flush_ms: u64,
    /// Raw YAML flow mappings, e.g. `{container: "worker", rule: python}`.
    pub multiline: Vec<String>,
    pub multiline_rules: Vec<String>,
    /// Further raw YAML lines under `logs:` (e.g. `parsers: [{name: kv, regex: '…'}]`), for
    /// options without a field of their own.
    pub logs_extra: Vec<String>,
    pub batch_max_bytes: u64,
    pub batch_max_records: u64,
    pub batch_timeout_ms: u64,
    pub channel_batches: u64,
    pub max_inflight_bytes: u64,
    pub checkpoint_interval_ms: u64,
    pub log_level: String,
    /// `output.group` (placeholders `{cluster}` `{node}` `{namespace}` `{pod}` `{container}`
    /// `{container_id}`).
    pub group_template: String,
    /// `output.stream`.
    pub stream_template: String,
    /// `output.event` (`record` or `log`); `None` leaves the agent default (`record`).
    pub output_event: Option<String>,
    /// `Some`: `output.cloudwatch` is the sink (instead of `output.local`), and the agent is
    /// started with test AWS credentials (see [`AgentConfig::env`]).
    pub cloudwatch: Option<CloudWatchOpts>,
    /// The AWS environment of an agent with a CloudWatch sink. `None` (the default): the static
    /// test keys of [`aws_test_env`]. `Some(vars)`: exactly `vars` (plus the loopback
    /// `NO_PROXY` settings), without static keys unless `vars` has them, to exercise other
    /// links of the credential chain; [`aws_env_without_keys`] is a starting point.
    pub aws_env: Option<Vec<(&'static str, String)>>,
    /// Raw YAML lines under `kubernetes:` (e.g. `kubeconfig: ./kubeconfig`). `None` (the
    /// default): `kubernetes: {enabled: false}`, so that an agent under test never reaches a
    /// real API server even where the tests run inside a pod.
    pub kubernetes: Option<Vec<String>>,
    /// Raw YAML lines under `metrics:` (e.g. `scrape: {interval_secs: 1}`). `Some`: the
    /// metrics pipeline is on; without a `remote_write` endpoint its local sink writes the
    /// samples to [`Node::scraped_file`], read by [`Node::scraped`].
    pub metrics: Option<Vec<String>>,
}

/// `output.cloudwatch` options; `None` fields are left out of the YAML (agent defaults).
#[derive(Clone, Debug, Default)]
pub struct CloudWatchOpts {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub create_group: Option<bool>,
    pub retention_days: Option<u32>,
    pub log_group_class: Option<String>,
    pub tags: Vec<(String, String)>,
    pub max_concurrent_requests: Option<u32>,
    pub request_timeout_secs: Option<u64>,
    /// Further raw `key: value` lines under `output.cloudwatch:` (for options added later).
    pub extra: Vec<String>,
}

/// Region the tests' agents and clients use.
pub const TEST_AWS_REGION: &str = "us-east-1";

impl CloudWatchOpts {
    /// The tests' usual sink: `endpoint` (moto or a proxy in front of it), region
    /// [`TEST_AWS_REGION`], `create_group: true`, `retention_days: 7`, class `STANDARD`,
    /// tag `team: platform`, 8 concurrent requests, 10 s request timeout.
    pub fn for_endpoint(endpoint: impl Into<String>) -> CloudWatchOpts {
        CloudWatchOpts {
            region: Some(TEST_AWS_REGION.into()),
            endpoint_url: Some(endpoint.into()),
            create_group: Some(true),
            retention_days: Some(7),
            log_group_class: Some("STANDARD".into()),
            tags: vec![("team".into(), "platform".into())],
            max_concurrent_requests: Some(8),
            request_timeout_secs: Some(10),
            extra: vec![],
        }
    }

    fn write_yaml(&self, y: &mut String) {
        let _ = writeln!(y, "  cloudwatch:");
        if let Some(v) = &self.region {
            let _ = writeln!(y, "    region: {v:?}");
        }
        if let Some(v) = &self.endpoint_url {
            let _ = writeln!(y, "    endpoint_url: {v:?}");
        }
        if let Some(v) = self.create_group {
            let _ = writeln!(y, "    create_group: {v}");
        }
        if let Some(v) = self.retention_days {
            let _ = writeln!(y, "    retention_days: {v}");
        }
        if let Some(v) = &self.log_group_class {
            let _ = writeln!(y, "    log_group_class: {v}");
        }
        if !self.tags.is_empty() {
            let tags: Vec<String> = self
                .tags
                .iter()
                .map(|(k, v)| format!("{k:?}: {v:?}"))
                .collect();
            let _ = writeln!(y, "    tags: {{{}}}", tags.join(", "));
        }
        if let Some(v) = self.max_concurrent_requests {
            let _ = writeln!(y, "    max_concurrent_requests: {v}");
        }
        if let Some(v) = self.request_timeout_secs {
            let _ = writeln!(y, "    request_timeout_secs: {v}");
        }
        for l in &self.extra {
            let _ = writeln!(y, "    {l}");
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            cluster: "test".into(),
            node_name: "node-1".into(),
            shutdown_timeout_secs: 20,
            include: vec!["*.log".into()],
            exclude: vec![],
            read_from: "beginning".into(),
            max_record_bytes: 262_144,
            poll_interval_ms: 50,
            rescan_interval_secs: 1,
            rotate_wait_secs: 5,
            eof_flush_ms: 1000,
            multiline: vec![],
            multiline_rules: vec![],
            logs_extra: vec![],
            batch_max_bytes: 1 << 20,
            batch_max_records: 10_000,
            batch_timeout_ms: 100,
            channel_batches: 8,
            max_inflight_bytes: 64 << 20,
            checkpoint_interval_ms: 200,
            log_level: std::env::var("KUBESHIP_TEST_LOG_LEVEL").unwrap_or_else(|_| "info".into()),
            group_template: "/aws/containerinsights/{cluster}/application".into(),
            stream_template: "{pod}_{namespace}_{container}".into(),
            output_event: None,
            cloudwatch: None,
            aws_env: None,
            kubernetes: None,
            metrics: None,
        }
    }
}

fn yaml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

impl AgentConfig {
    /// The YAML text, telemetry on `127.0.0.1:<port>`.
    pub fn to_yaml(&self, port: u16) -> String {
        let mut y = String::new();
        let _ = writeln!(y, "cluster: {:?}", self.cluster);
        let _ = writeln!(y, "node_name: {:?}", self.node_name);
        let _ = writeln!(y, "state_dir: ./state");
        let _ = writeln!(y, "shutdown_timeout_secs: {}", self.shutdown_timeout_secs);
        let _ = writeln!(y, "logs:");
        let _ = writeln!(y, "  containers_dir: ./logs/containers");
        let _ = writeln!(y, "  include: {}", yaml_list(&self.include));
        let _ = writeln!(y, "  exclude: {}", yaml_list(&self.exclude));
        let _ = writeln!(y, "  read_from: {}", self.read_from);
        let _ = writeln!(y, "  max_record_bytes: {}", self.max_record_bytes);
        let _ = writeln!(y, "  poll_interval_ms: {}", self.poll_interval_ms);
        let _ = writeln!(y, "  rescan_interval_secs: {}", self.rescan_interval_secs);
        let _ = writeln!(y, "  rotate_wait_secs: {}", self.rotate_wait_secs);
        let _ = writeln!(y, "  eof_flush_ms: {}", self.eof_flush_ms);
        if self.multiline.is_empty() {
            let _ = writeln!(y, "  multiline: []");
        } else {
            let _ = writeln!(y, "  multiline:");
            for m in &self.multiline {
                let _ = writeln!(y, "    - {m}");
            }
        }
        if !self.multiline_rules.is_empty() {
            let _ = writeln!(y, "  multiline_rules:");
            for m in &self.multiline_rules {
                let _ = writeln!(y, "    - {m}");
            }
        }
        for l in &self.logs_extra {
            let _ = writeln!(y, "  {l}");
        }
        let _ = writeln!(y, "pipeline:");
        let _ = writeln!(y, "  batch_max_bytes: {}", self.batch_max_bytes);
        let _ = writeln!(y, "  batch_max_records: {}", self.batch_max_records);
        let _ = writeln!(y, "  batch_timeout_ms: {}", self.batch_timeout_ms);
        let _ = writeln!(y, "  channel_batches: {}", self.channel_batches);
        let _ = writeln!(y, "  max_inflight_bytes: {}", self.max_inflight_bytes);
        let _ = writeln!(
            y,
            "  checkpoint_interval_ms: {}",
            self.checkpoint_interval_ms
        );
        let _ = writeln!(y, "output:");
        let _ = writeln!(y, "  group: {:?}", self.group_template);
        let _ = writeln!(y, "  stream: {:?}", self.stream_template);
        if let Some(e) = &self.output_event {
            let _ = writeln!(y, "  event: {e}");
        }
        match &self.cloudwatch {
            Some(cw) => cw.write_yaml(&mut y),
            None => {
                let _ = writeln!(y, "  local:");
                let _ = writeln!(y, "    dir: ./out");
            }
        }
        match &self.kubernetes {
            None => {
                let _ = writeln!(y, "kubernetes: {{enabled: false}}");
            }
            Some(lines) => {
                let _ = writeln!(y, "kubernetes:");
                for l in lines {
                    let _ = writeln!(y, "  {l}");
                }
            }
        }
        if let Some(lines) = &self.metrics {
            let _ = writeln!(y, "metrics:");
            for l in lines {
                let _ = writeln!(y, "  {l}");
            }
        }
        let _ = writeln!(y, "telemetry:");
        let _ = writeln!(y, "  listen_addr: \"127.0.0.1:{port}\"");
        let _ = writeln!(y, "  log_format: json");
        let _ = writeln!(y, "  log_level: {}", self.log_level);
        y
    }
}

impl AgentConfig {
    /// Environment for the agent process: with a CloudWatch sink, the standard AWS variables
    /// with test credentials (`AWS_ACCESS_KEY_ID=testing`, `AWS_SECRET_ACCESS_KEY=testing`,
    /// `AWS_REGION`, `AWS_EC2_METADATA_DISABLED=true`), or [`AgentConfig::aws_env`] when set;
    /// nothing otherwise.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match (&self.cloudwatch, &self.aws_env) {
            (None, _) => vec![],
            (Some(cw), None) => aws_test_env(cw.region.as_deref().unwrap_or(TEST_AWS_REGION)),
            (Some(_), Some(vars)) => {
                let mut env = loopback_no_proxy_env();
                env.extend(vars.iter().cloned());
                env
            }
        }
    }
}

fn loopback_no_proxy_env() -> Vec<(&'static str, String)> {
    vec![
        ("NO_PROXY", "127.0.0.1,localhost".into()),
        ("no_proxy", "127.0.0.1,localhost".into()),
    ]
}

/// AWS settings without any credentials, for [`AgentConfig::aws_env`]: the region,
/// `AWS_EC2_METADATA_DISABLED=true`, and `AWS_CONFIG_FILE` / `AWS_SHARED_CREDENTIALS_FILE`
/// pointing at empty files it creates in `dir`, so that neither IMDS nor a profile of the
/// machine running the tests can supply credentials.
pub fn aws_env_without_keys(region: &str, dir: &Path) -> Vec<(&'static str, String)> {
    let empty = |name: &str| {
        let p = dir.join(name);
        fs::write(&p, "").unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        p.to_string_lossy().into_owned()
    };
    vec![
        ("AWS_REGION", region.into()),
        ("AWS_DEFAULT_REGION", region.into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", empty("aws-config-empty")),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            empty("aws-credentials-empty"),
        ),
    ]
}

/// Test AWS credentials and settings for processes that talk to moto.
pub fn aws_test_env(region: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", region.into()),
        ("AWS_DEFAULT_REGION", region.into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("NO_PROXY", "127.0.0.1,localhost".into()),
        ("no_proxy", "127.0.0.1,localhost".into()),
    ]
}

/// Removes every `AWS_*` and `KUBERNETES_*` variable and HTTP proxy setting inherited from the
/// test environment (profiles, session tokens, endpoint overrides, an in-cluster API server), so
/// child processes see only what the test passes.
pub fn scrub_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        let lower = k.to_ascii_lowercase();
        if k.starts_with("AWS_")
            || k.starts_with("KUBERNETES_")
            || matches!(
                lower.as_str(),
                "http_proxy" | "https_proxy" | "all_proxy" | "no_proxy"
            )
        {
            cmd.env_remove(k);
        }
    }
}

static AGENT_RUNS: AtomicU64 = AtomicU64::new(0);

/// A running `kubeship run` process. Dropping it kills the process.
pub struct Agent {
    child: Option<Child>,
    pid: u32,
    port: u16,
    status: Option<ExitStatus>,
    stderr_path: PathBuf,
    pub config_path: PathBuf,
    /// Started by [`Agent::start_unprivileged`] as `nobody` (the tests run as root).
    pub unprivileged: bool,
}

/// True when the tests run as root (the owner of `/proc/self`).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl Agent {
    /// Writes the config into the node root and starts `kubeship run --config <it>`.
    pub fn start(node: &Node, cfg: &AgentConfig) -> Agent {
        Self::start_with_args(node, cfg, &[])
    }

    /// Like [`Agent::start`] with extra arguments after `run --config FILE`.
    pub fn start_with_args(node: &Node, cfg: &AgentConfig, extra: &[&str]) -> Agent {
        Self::start_with(node, cfg, extra, &[], None)
    }

    /// Like [`Agent::start`], as the pod `namespace/pod` (`POD_NAMESPACE`, `POD_NAME` from the
    /// downward API): the agent's own pod.
    pub fn start_in_pod(node: &Node, cfg: &AgentConfig, namespace: &str, pod: &str) -> Agent {
        Self::start_with(
            node,
            cfg,
            &[],
            &[("POD_NAMESPACE", namespace), ("POD_NAME", pod)],
            None,
        )
    }

    /// Like [`Agent::start`], as the unprivileged user `nobody` (uid and gid 65534) when the
    /// tests run as root, so that file permissions apply to the agent (root reads through
    /// `chmod 000`). The node root becomes traversable by everyone, `state/` and `out/` are
    /// created for `nobody`, and the binary is linked (or copied) into the node root (the
    /// target directory may sit under a home directory `nobody` cannot enter). Not root: the
    /// same as [`Agent::start`]; [`Agent::unprivileged`] tells which.
    pub fn start_unprivileged(node: &Node, cfg: &AgentConfig) -> Agent {
        if !running_as_root() {
            return Self::start(node, cfg);
        }
        const NOBODY: u32 = 65_534;
        let root = node.root();
        fs::set_permissions(root, fs::Permissions::from_mode(0o755)).expect("chmod node root");
        for dir in [node.state_dir(), node.out_dir()] {
            fs::create_dir_all(&dir).expect("mkdir");
            std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).expect("chown");
        }
        let bin = root.join("kubeship");
        if fs::hard_link(kubeship_bin(), &bin).is_err() {
            fs::copy(kubeship_bin(), &bin).expect("copy the kubeship binary");
        }
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod binary");
        let mut agent = Self::start_with(node, cfg, &[], &[], Some((&bin, NOBODY)));
        agent.unprivileged = true;
        agent
    }

    /// `kubeship run --config FILE <extra>`; with `user`, its binary run as that user and
    /// group id.
    fn start_with(
        node: &Node,
        cfg: &AgentConfig,
        extra: &[&str],
        extra_env: &[(&str, &str)],
        user: Option<(&Path, u32)>,
    ) -> Agent {
        let port = free_port();
        let config_path = node.write_config(cfg, port);
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("run"),
            OsStr::new("--config"),
            config_path.as_os_str(),
        ];
        args.extend(extra.iter().map(OsStr::new));
        let env = cfg.env();
        let mut envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        envs.extend_from_slice(extra_env);
        Self::spawn_as(node.root(), &config_path, port, &args, &envs, user)
    }

    /// Starts `kubeship <args>` in `cwd`, stderr/stdout to files under `log_dir`.
    pub fn spawn(
        log_dir: &Path,
        config_path: &Path,
        port: u16,
        args: &[&OsStr],
        envs: &[(&str, &str)],
    ) -> Agent {
        Self::spawn_as(log_dir, config_path, port, args, envs, None)
    }

    fn spawn_as(
        log_dir: &Path,
        config_path: &Path,
        port: u16,
        args: &[&OsStr],
        envs: &[(&str, &str)],
        user: Option<(&Path, u32)>,
    ) -> Agent {
        let run = AGENT_RUNS.fetch_add(1, Ordering::Relaxed);
        let stderr_path = log_dir.join(format!("agent-{run}.stderr.log"));
        let stdout_path = log_dir.join(format!("agent-{run}.stdout.log"));
        let mut cmd = kubeship();
        if let Some((bin, id)) = user {
            use std::os::unix::process::CommandExt;
            let mut as_user = Command::new(bin);
            for (k, v) in cmd.get_envs() {
                match v {
                    Some(v) => as_user.env(k, v),
                    None => as_user.env_remove(k),
                };
            }
            as_user.uid(id).gid(id);
            cmd = as_user;
        }
        scrub_env(&mut cmd);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("create stdout log"))
            .stderr(File::create(&stderr_path).expect("create stderr log"));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Agent {
            pid: child.id(),
            child: Some(child),
            port,
            status: None,
            stderr_path,
            config_path: config_path.to_path_buf(),
            unprivileged: false,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The agent's stderr so far (its logs).
    pub fn stderr(&self) -> String {
        fs::read(&self.stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Last `n` lines of stderr.
    pub fn stderr_tail(&self, n: usize) -> String {
        let s = self.stderr();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Log lines at ERROR level (JSON `"level":"ERROR"` or text ` ERROR `).
    pub fn error_lines(&self) -> Vec<String> {
        self.stderr()
            .lines()
            .filter(|l| l.contains("\"level\":\"ERROR\"") || l.contains(" ERROR "))
            .map(str::to_string)
            .collect()
    }

    /// Exit status if the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Some(child) = self.child.as_mut()
        {
            self.status = child.try_wait().expect("try_wait");
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Panics (with stderr) if the process has exited.
    #[track_caller]
    pub fn assert_running(&mut self, context: &str) {
        if let Some(st) = self.try_status() {
            panic!(
                "kubeship exited unexpectedly ({st}) {context}; stderr tail:\n{}",
                self.stderr_tail(60)
            );
        }
    }

    /// A `VmXxx:` value of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`: peak RSS, …);
    /// None once the process is gone.
    pub fn proc_status_kib(&self, field: &str) -> Option<u64> {
        let text = fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
    }

    /// Peak resident set size (`VmHWM`) in bytes.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        self.proc_status_kib("VmHWM").map(|k| k * 1024)
    }

    /// Current resident set size (`VmRSS`) in bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        self.proc_status_kib("VmRSS").map(|k| k * 1024)
    }

    /// Sends SIGTERM.
    pub fn sigterm(&mut self) {
        if self.try_status().is_some() {
            return;
        }
        let st = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(
            st.success() || self.try_status().is_some(),
            "kill -TERM failed"
        );
    }

    /// Sends SIGKILL and reaps the process.
    pub fn sigkill(&mut self) {
        if let Some(child) = self.child.as_mut()
            && self.status.is_none()
        {
            let _ = child.kill();
            self.status = Some(child.wait().expect("wait"));
        }
    }

    /// Waits for exit; panics (with stderr) after `timeout`.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let ok = wait_until(|| self.try_status().is_some(), timeout);
        if !ok {
            let tail = self.stderr_tail(60);
            self.sigkill();
            panic!("kubeship did not exit within {timeout:?}; stderr tail:\n{tail}");
        }
        self.status.expect("status")
    }

    /// SIGTERM, then wait for a clean (code 0) exit.
    #[track_caller]
    pub fn stop(&mut self, timeout: Duration) {
        self.sigterm();
        let st = self.wait_exit(timeout);
        assert!(
            st.success(),
            "kubeship exited with {st} after SIGTERM; stderr tail:\n{}",
            self.stderr_tail(60)
        );
    }

    /// GET `path` on the telemetry listener: `(status, body)`.
    pub fn http_get(&self, path: &str) -> io::Result<(u16, String)> {
        http_get(self.addr(), path)
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> io::Result<String> {
        match self.http_get("/metrics")? {
            (200, body) => Ok(body),
            (code, body) => Err(io::Error::other(format!("/metrics: HTTP {code}: {body}"))),
        }
    }

    /// Sum of all series of metric `name` (any labels); None when `/metrics` cannot be read
    /// (the agent is down or restarting) or has no series of it yet. Panics when the agent
    /// answers but does not expose `name` at all (see [`metric_sum`]).
    #[track_caller]
    pub fn metric(&self, name: &str) -> Option<f64> {
        let text = self.metrics().ok()?;
        assert_exposed(&text, name);
        metric_value(&text, name, &[])
    }

    /// Sum of the series of metric `name` whose labels include `labels`; 0 when there is none
    /// (a labelled counter has no series before its first increment); panics when `/metrics`
    /// cannot be read or does not expose `name` (see [`metric_sum`]).
    #[track_caller]
    pub fn metric_or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self
            .metrics()
            .unwrap_or_else(|e| panic!("reading /metrics: {e}"));
        metric_sum(&text, name, labels)
    }

    /// Waits until `/readyz` answers 200; panics (with stderr) on timeout or exit.
    #[track_caller]
    pub fn wait_ready(&mut self, timeout: Duration) {
        let mut exited = None;
        let ok = wait_until(
            || {
                if let Some(st) = self.try_status() {
                    exited = Some(st);
                    return true;
                }
                matches!(self.http_get("/readyz"), Ok((200, _)))
            },
            timeout,
        );
        if let Some(st) = exited {
            panic!(
                "kubeship exited ({st}) before becoming ready; stderr tail:\n{}",
                self.stderr_tail(60)
            );
        }
        if !ok {
            panic!(
                "kubeship not ready (GET /readyz != 200) within {timeout:?}; stderr tail:\n{}",
                self.stderr_tail(60)
            );
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let was_running = self.try_status().is_none();
        self.sigkill();
        if std::thread::panicking() {
            eprintln!(
                "--- kubeship pid {} ({}) stderr tail, {} ---\n{}\n--- end ---",
                self.pid,
                if was_running {
                    "killed by test teardown"
                } else {
                    "had exited"
                },
                self.stderr_path.display(),
                self.stderr_tail(40)
            );
        }
    }
}

/// Minimal HTTP/1.0 GET (no client dependency): `(status, body)`.
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other("malformed HTTP response"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other("malformed HTTP status line"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((code, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Value of metric `name` in Prometheus/OpenMetrics text, summed over all series whose labels
/// include every `(key, value)` in `labels` (empty: all series). None if no series matched.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => continue,
        };
        if series != name {
            continue;
        }
        let (label_text, value_text) = if let Some(r) = rest.strip_prefix('{') {
            match r.rfind('}') {
                Some(i) => (&r[..i], r[i + 1..].trim()),
                None => continue,
            }
        } else {
            ("", rest.trim())
        };
        let parsed = parse_labels(label_text);
        if !labels
            .iter()
            .all(|(k, v)| parsed.iter().any(|(pk, pv)| pk == k && pv == v))
        {
            continue;
        }
        let v: f64 = match value_text.split_whitespace().next().map(str::parse) {
            Some(Ok(v)) => v,
            _ => continue,
        };
        *sum.get_or_insert(0.0) += v;
    }
    sum
}

/// Like [`metric_value`], 0 when no series matched; but panics when `text` does not expose
/// `name` at all ([`exposes_metric`]): a misspelt or renamed metric must fail the test, not
/// read as a counter that never moved.
#[track_caller]
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    assert_exposed(text, name);
    metric_value(text, name, labels).unwrap_or(0.0)
}

#[track_caller]
fn assert_exposed(text: &str, name: &str) {
    if !exposes_metric(text, name) {
        let mut families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.split_whitespace().next())
            .collect();
        families.sort_unstable();
        panic!(
            "the agent does not expose the metric {name} (no `# TYPE` or `# HELP` line of its \
             family); it exposes: {}",
            families.join(", ")
        );
    }
}

/// Whether `text` declares the family of sample name `name` in a `# TYPE` line (for the
/// family's type: `_total` of a counter, `_bucket`/`_sum`/`_count` of a histogram, …) or, for
/// a family without one, in a `# HELP` line of exactly that name.
pub fn exposes_metric(text: &str, name: &str) -> bool {
    let mut helped = false;
    let mut typed = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(family), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            typed |= family == name;
            let suffixes: &[&str] = match kind {
                // The Prometheus text format names a counter's family with its `_total`.
                "counter" if family.ends_with("_total") => &[""],
                "counter" => &["_total", "_created"],
                "histogram" | "gaugehistogram" => {
                    &["_bucket", "_sum", "_count", "_created", "_gsum", "_gcount"]
                }
                "summary" => &["", "_sum", "_count", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            if suffixes
                .iter()
                .any(|s| name.strip_suffix(s) == Some(family))
            {
                return true;
            }
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            helped |= rest.split_whitespace().next() == Some(name);
        }
    }
    helped && !typed
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while let Some((k, r)) = rest.split_once('=') {
        let r = r.trim_start();
        let Some(r) = r.strip_prefix('"') else { break };
        let mut val = String::new();
        let mut chars = r.char_indices();
        let mut end = r.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        val.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => val.push(c),
            }
        }
        out.push((k.trim().trim_start_matches(',').trim().to_string(), val));
        rest = r[end..].trim_start().trim_start_matches(',').trim_start();
    }
    out
}
