//! Binary, timeouts, waiting.

use std::fmt::Display;
use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of the `kubeship` binary under test.
///
/// `KUBESHIP_BIN` wins; otherwise `target/<profile>/kubeship` next to the test executable
/// (which lives in `target/<profile>/deps/`). Panics with instructions when missing.
pub fn kubeship_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBESHIP_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "KUBESHIP_BIN={} does not exist; build the agent with `cargo build -p kubeship` \
             or point KUBESHIP_BIN at the binary",
            p.display()
        );
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe
        .parent()
        .expect("test executable has a parent directory");
    let candidate = deps.parent().unwrap_or(deps).join("kubeship");
    assert!(
        candidate.is_file(),
        "kubeship binary not found at {}.\nBuild it first with the same profile and \
         CARGO_TARGET_DIR as the tests: `cargo build -p kubeship` (or `cargo build --workspace`), \
         or set KUBESHIP_BIN=/path/to/kubeship. `tests/run.sh` does both.",
        candidate.display()
    );
    candidate
}

/// A `Command` for the kubeship binary.
pub fn kubeship() -> Command {
    let mut cmd = Command::new(kubeship_bin());
    // Where the tests run in a pod, `kubernetes.enabled: auto` must not find its API server.
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("KUBERNETES_")) {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Multiplier for every timeout (`KUBESHIP_TEST_TIMEOUT_SCALE`, default 1).
pub fn timeout_scale() -> f64 {
    std::env::var("KUBESHIP_TEST_TIMEOUT_SCALE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(1.0)
}

/// `n` seconds, scaled by [`timeout_scale`].
pub fn secs(n: u64) -> Duration {
    Duration::from_secs_f64(n as f64 * timeout_scale())
}

/// Polls `cond` until it returns true or `timeout` passes; true if it held.
pub fn wait_until(mut cond: impl FnMut() -> bool, timeout: Duration) -> bool {
    let start = Instant::now();
    let mut delay = Duration::from_millis(2);
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

/// Polls `cond` until it returns true; panics with `what` after `timeout`.
#[track_caller]
pub fn wait_for(cond: impl FnMut() -> bool, timeout: Duration, what: impl Display) {
    if !wait_until(cond, timeout) {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Runs `cmd` with stdin closed, collecting output; kills it and panics after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let mut status = None;
    let done = wait_until(
        || {
            status = child.try_wait().expect("try_wait");
            status.is_some()
        },
        timeout,
    );
    if !done {
        let _ = child.kill();
        let _ = child.wait();
        let stderr = t_err.join().unwrap_or_default();
        panic!(
            "{cmd:?} did not exit within {timeout:?}; stderr:\n{}",
            String::from_utf8_lossy(&stderr)
        );
    }
    Output {
        status: status.expect("status"),
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}
