//! `kubeship push-samples` as a child process: its config written to a temporary
//! directory, samples written to its standard input as the test goes (a blank line ends a
//! push), its self-metrics read from its telemetry listener, and its exit awaited.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::time::Duration;

use crate::{free_port, http_get, kubeship, metric_sum, scrub_env, wait_until};

/// A running `kubeship push-samples`. Killed when dropped.
pub struct Pusher {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
    /// `None` once [`Pusher::finish`] handed it over.
    dir: Option<tempfile::TempDir>,
}

/// What a finished run printed.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Its directory (the config's, relative paths in it), kept until this is dropped.
    pub dir: tempfile::TempDir,
}

impl Pusher {
    /// Starts it with `metrics_yaml` (the lines under `metrics:`, indented two spaces) and
    /// `env` (besides a scrubbed environment: no AWS or proxy variables of the machine).
    pub fn start(metrics_yaml: &str, env: &[(&str, String)]) -> Pusher {
        Self::start_with(metrics_yaml, env, 20)
    }

    /// Like [`Pusher::start`], with `shutdown_timeout_secs` (how long the final flush may take).
    pub fn start_with(metrics_yaml: &str, env: &[(&str, String)], shutdown_secs: u64) -> Pusher {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config = format!(
            "cluster: test\nstate_dir: ./state\nshutdown_timeout_secs: {shutdown_secs}\n\
             kubernetes: {{enabled: false}}\n\
             telemetry: {{listen_addr: \"127.0.0.1:{port}\", log_format: json, log_level: info}}\n\
             metrics:\n{metrics_yaml}"
        );
        let path = dir.path().join("kubeship.yaml");
        std::fs::write(&path, config).expect("write the config");
        let mut cmd = kubeship();
        scrub_env(&mut cmd);
        cmd.args(["push-samples", "--config"])
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(dir.path().join("stdout")).expect("stdout file"))
            .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        Pusher {
            child,
            stdin,
            port,
            dir: Some(dir),
        }
    }

    /// The directory its config is in (relative paths resolve there).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("not finished").path()
    }

    /// Writes `lines` and a blank line (one push), and flushes.
    pub fn push(&mut self, lines: &[String]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        let mut text = lines.join("\n");
        text.push_str("\n\n");
        stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("writing samples: {e}; stderr:\n{}", self.stderr()));
    }

    /// `/metrics` text, or an empty string while the listener is not up.
    pub fn metrics(&self) -> String {
        match http_get(SocketAddr::from(([127, 0, 0, 1], self.port)), "/metrics") {
            Ok((200, text)) => text,
            _ => String::new(),
        }
    }

    /// The sum of `name`'s series with `labels` (0 while not exposed yet).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.metrics();
        if text.is_empty() {
            return 0.0;
        }
        metric_sum(&text, name, labels)
    }

    /// Waits until `cond(metrics text)` holds.
    #[track_caller]
    pub fn wait_metrics(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&Pusher) -> bool,
    ) {
        if !wait_until(|| cond(self), timeout) {
            panic!(
                "timed out after {timeout:?} waiting for {what}; /metrics:\n{}\nstderr:\n{}",
                self.metrics()
                    .lines()
                    .filter(|l| l.contains("remote_write") && !l.starts_with('#'))
                    .collect::<Vec<_>>()
                    .join("\n"),
                self.stderr()
            );
        }
    }

    /// Its stderr so far (its logs, JSON lines).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir().join("stderr")).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in bytes (from /proc).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }

    /// Closes its input (the end of the samples) and waits for it to exit.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        drop(self.stdin.take());
        let mut status = None;
        let done = wait_until(
            || {
                status = self.child.try_wait().expect("try_wait");
                status.is_some()
            },
            timeout,
        );
        if !done {
            let _ = self.child.kill();
            panic!(
                "push-samples did not exit within {timeout:?}; stderr:\n{}",
                self.stderr()
            );
        }
        let stderr = self.stderr();
        let dir = self.dir.take().expect("not finished");
        Finished {
            status: status.expect("status"),
            stdout: std::fs::read_to_string(dir.path().join("stdout")).unwrap_or_default(),
            stderr,
            dir,
        }
    }

    /// A path in its directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
