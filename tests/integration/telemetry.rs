//! The telemetry listener under abuse. It is on the pod network and shares the agent's one
//! runtime thread, so what a client can hold there is bounded: connections beyond a cap are
//! closed at once, a request head must arrive within a timeout, no connection outlives its
//! lifetime, and a failing `accept` (out of file descriptors) backs off instead of spinning.
//! Meanwhile logs keep flowing and the endpoints keep answering.
//!
//! The limits mirror `agent/src/telemetry/server.rs`; a change there shows up here as a
//! failure, not as a test that proves less.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use kubeship_tests::{
    Agent, AgentConfig, Container, Delivery, Format, Node, http_get, secs, wait_for, wait_until,
};

/// `MAX_CONNECTIONS`.
const MAX_CONNECTIONS: usize = 64;
/// `HEADER_READ_TIMEOUT`.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// `CONNECTION_LIFETIME`.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(15);

const REJECTED: &str = "kubeship_telemetry_connections_rejected_total";
const TIMED_OUT: &str = "kubeship_telemetry_connections_timed_out_total";

/// Idle connections opened beyond the cap.
const EXCESS: usize = 40;
/// Slow-loris clients (one header byte a second).
const SLOW: usize = 4;
/// Open file descriptors the agent may hold beyond its baseline and the cap (a rejected
/// connection between accept and close, a checkpoint temp file, …).
const FD_MARGIN: usize = 16;

/// The agent's open file descriptors.
fn open_fds(agent: &Agent) -> usize {
    fs::read_dir(format!("/proc/{}/fd", agent.pid()))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// CPU time (user + system) the agent used so far.
fn cpu_time(agent: &Agent) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{}/stat", agent.pid())).expect("/proc/PID/stat");
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat") + 2..]
        .split_whitespace()
        .collect();
    // utime and stime: fields 14 and 15 of stat(5), 12 and 13 after the name and state.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A connection's state as seen by polling it (non-blocking): `Some(when)` once the server
/// closed it (EOF or reset).
struct Held {
    stream: TcpStream,
    closed: Option<Instant>,
}

impl Held {
    fn open(addr: SocketAddr) -> Held {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        stream.set_nonblocking(true).expect("nonblocking");
        Held {
            stream,
            closed: None,
        }
    }

    /// Reads what is there; notes when the server closed the connection.
    fn poll(&mut self) {
        if self.closed.is_some() {
            return;
        }
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break self.closed = Some(Instant::now()),
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break self.closed = Some(Instant::now()),
            }
        }
    }
}

/// A slow-loris client: starts a request head and sends one more header byte a second until
/// the server closes the connection; returns how long that took (None: still open at `give_up`).
fn slow_loris(addr: SocketAddr, give_up: Duration) -> thread::JoinHandle<Option<Duration>> {
    let mut held = Held::open(addr);
    thread::spawn(move || {
        let start = Instant::now();
        let _ = held
            .stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: kubeship\r\nX-Slow: ");
        while start.elapsed() < give_up {
            // One byte a second; a write into a closed connection fails or is answered by
            // a reset that the next read sees.
            let _ = held.stream.write_all(b"a");
            let next = Instant::now() + Duration::from_secs(1);
            while Instant::now() < next {
                held.poll();
                if held.closed.is_some() {
                    return Some(start.elapsed());
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        None
    })
}

/// A keep-alive client asking `/healthz` twice a second on one connection for as long as the
/// server keeps it; returns how long that was (None: still open at `give_up`) and how many
/// answers it got.
fn keep_alive_client(
    addr: SocketAddr,
    give_up: Duration,
) -> thread::JoinHandle<(Option<Duration>, usize)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let start = Instant::now();
    thread::spawn(move || {
        let mut got = Vec::new();
        let mut answers = 0;
        let mut buf = [0u8; 4096];
        while start.elapsed() < give_up {
            if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: kubeship\r\n\r\n")
                .is_err()
            {
                return (Some(start.elapsed()), answers);
            }
            let next = Instant::now() + Duration::from_millis(500);
            while Instant::now() < next {
                match s.read(&mut buf) {
                    Ok(0) => return (Some(start.elapsed()), answers),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                        ) => {}
                    Err(_) => return (Some(start.elapsed()), answers),
                }
                let complete = got.windows(7).filter(|w| w == b"\r\n\r\nok\n").count();
                if complete > answers {
                    answers = complete;
                }
            }
        }
        (None, answers)
    })
}

/// A container logging a line every 10 ms until `stop`; the container comes back on join.
fn keep_logging(mut c: Container, stop: Arc<AtomicBool>) -> thread::JoinHandle<Container> {
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            c.write_lines(1);
            thread::sleep(Duration::from_millis(10));
        }
        c
    })
}

/// Idle connections beyond the cap, slow-loris clients and a keep-alive client that never
/// stops asking, while a container keeps logging: the excess connections are closed at once
/// (counted), the idle and slow ones after the header read timeout, the keep-alive one at the
/// end of its lifetime; the agent's file descriptors stay bounded; `/healthz` and `/metrics`
/// answer on a fresh connection within the header read timeout; every line is delivered.
#[test]
fn telemetry_connections_are_bounded_and_logs_keep_flowing() {
    let node = Node::new();
    let c = node.add_container("shop", "web-0", "web", Format::Cri);
    let mut agent = Agent::start(&node, &AgentConfig::default());
    agent.wait_ready(secs(20));
    let addr = agent.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = keep_logging(c, Arc::clone(&stop));
    let mut d = Delivery::new(&node);
    wait_for(
        || {
            d.poll();
            d.tracker.track("web").distinct >= 10
        },
        secs(20),
        "the first lines delivered",
    );
    let baseline = open_fds(&agent);

    // The clients that must get a slot come first; the server holds each one's socket.
    let give_up = CONNECTION_LIFETIME + secs(10);
    let keep_alive = keep_alive_client(addr, give_up);
    let slow: Vec<_> = (0..SLOW).map(|_| slow_loris(addr, give_up)).collect();
    wait_for(
        || open_fds(&agent) > baseline + SLOW,
        secs(10),
        "the keep-alive and slow-loris connections accepted",
    );

    // The flood: more idle connections than there are slots.
    d.poll();
    let delivered_before = d.tracker.track("web").distinct;
    let flood_start = Instant::now();
    let mut idle: Vec<Held> = (0..MAX_CONNECTIONS + EXCESS)
        .map(|_| Held::open(addr))
        .collect();
    let mut max_fds = 0;
    let mut sample = |agent: &Agent| max_fds = max_fds.max(open_fds(agent));

    // A fresh connection is answered once the idle ones' header read timeout freed slots.
    let mut healthy = None;
    let mut metrics = None;
    wait_for(
        || {
            sample(&agent);
            for h in idle.iter_mut() {
                h.poll();
            }
            if healthy.is_none() && matches!(http_get(addr, "/healthz"), Ok((200, _))) {
                healthy = Some(flood_start.elapsed());
            }
            if metrics.is_none() && agent.metrics().is_ok() {
                metrics = Some(flood_start.elapsed());
            }
            healthy.is_some() && metrics.is_some()
        },
        HEADER_READ_TIMEOUT + secs(10),
        "GET /healthz and /metrics answered on fresh connections during the flood",
    );
    let bound = HEADER_READ_TIMEOUT + secs(3);
    for (what, took) in [("/healthz", healthy), ("/metrics", metrics)] {
        let took = took.expect("answered");
        assert!(
            took <= bound,
            "{what} answered {took:?} after the flood began"
        );
    }

    // Every idle connection is closed by the server: the excess at once, the others after the
    // header read timeout. Lines keep being delivered meanwhile.
    let ok = wait_until(
        || {
            sample(&agent);
            d.poll();
            for h in idle.iter_mut() {
                h.poll();
            }
            idle.iter().all(|h| h.closed.is_some())
        },
        HEADER_READ_TIMEOUT + secs(5),
    );
    let delivered_during = d.tracker.track("web").distinct - delivered_before;
    let open = idle.iter().filter(|h| h.closed.is_none()).count();
    assert!(
        ok,
        "{open} of {} idle connections still open {:?} after they were opened",
        idle.len(),
        flood_start.elapsed()
    );
    let latest = idle
        .iter()
        .filter_map(|h| h.closed)
        .max()
        .expect("closed")
        .duration_since(flood_start);
    assert!(
        latest <= HEADER_READ_TIMEOUT + secs(3),
        "the last idle connection was closed {latest:?} after the flood began"
    );
    for (i, t) in slow.into_iter().enumerate() {
        let lived = t.join().expect("slow-loris thread");
        let lived = lived.unwrap_or_else(|| panic!("slow-loris {i} still open after {give_up:?}"));
        assert!(
            lived <= HEADER_READ_TIMEOUT + secs(3),
            "slow-loris {i} was kept {lived:?}"
        );
    }

    // The writer adds a line every 10 ms: the flood lasted about HEADER_READ_TIMEOUT.
    assert!(
        delivered_during >= 20,
        "{delivered_during} lines delivered while the idle connections were held"
    );

    let (lived, answers) = keep_alive.join().expect("keep-alive thread");
    let lived = lived.unwrap_or_else(|| {
        panic!("the keep-alive connection was still open after {give_up:?} ({answers} answers)")
    });
    assert!(
        lived <= CONNECTION_LIFETIME + secs(3),
        "the keep-alive connection lived {lived:?} ({answers} answers)"
    );
    assert!(
        answers >= 10,
        "the keep-alive client was answered {answers} times in {lived:?}: it was not served"
    );
    sample(&agent);
    assert!(
        max_fds <= baseline + MAX_CONNECTIONS + FD_MARGIN,
        "the agent held {max_fds} file descriptors (baseline {baseline}, cap {MAX_CONNECTIONS})"
    );

    stop.store(true, Ordering::Relaxed);
    let c = writer.join().expect("writer");
    d.wait_all(&mut agent, &[("web", c.written())], secs(30));
    assert_eq!(d.tracker.total_dups(), 0, "duplicates");

    let rejected = agent.metric_or_zero(REJECTED, &[("reason", "limit")]);
    assert!(
        rejected >= EXCESS as f64,
        "{REJECTED}{{reason=\"limit\"}} = {rejected}, {EXCESS} connections beyond the cap"
    );
    // The idle and slow connections that had a slot: all but the keep-alive one (and a few
    // the test's own earlier requests may still have held when the flood came).
    let header = agent.metric_or_zero(TIMED_OUT, &[("reason", "header_read")]);
    assert!(
        header >= (MAX_CONNECTIONS - 1 - 4) as f64,
        "{TIMED_OUT}{{reason=\"header_read\"}} = {header}"
    );
    assert_eq!(
        agent.metric_or_zero(TIMED_OUT, &[("reason", "lifetime")]),
        1.0,
        "the keep-alive connection"
    );
    assert_eq!(
        agent.metric_or_zero(REJECTED, &[("reason", "accept_error")]),
        0.0
    );
    drop(idle);
    agent.stop(secs(30));
}

/// Out of file descriptors, `accept` fails: the listener counts it, logs it once, pauses
/// between attempts instead of spinning the runtime thread the sink and the pod watch share,
/// and serves again once descriptors are free.
#[test]
fn telemetry_accept_errors_back_off() {
    let node = Node::new();
    let mut c = node.add_container("shop", "web-0", "web", Format::Cri);
    c.write_lines(10);
    let mut agent = Agent::start(&node, &AgentConfig::default());
    agent.wait_ready(secs(20));
    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &[("web", 10)], secs(30));
    let pid = agent.pid().to_string();
    let soft_limit = |n: &str| {
        let st = Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={n}:")])
            .status()
            .expect("run prlimit (util-linux)");
        assert!(st.success(), "prlimit --nofile={n}: failed");
    };
    let before = fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let old_soft = before
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .expect("Max open files")
        .to_string();
    // Room for a few connections only, then accept fails with EMFILE.
    let room = 4;
    soft_limit(&(open_fds(&agent) + room).to_string());

    let addr = agent.addr();
    let conns: Vec<Held> = (0..room + 20).map(|_| Held::open(addr)).collect();
    // The connections beyond the room wait in the backlog; each accept of them fails until
    // the accepted ones time out (HEADER_READ_TIMEOUT).
    let cpu0 = cpu_time(&agent);
    let t0 = Instant::now();
    let window = Duration::from_secs(3);
    thread::sleep(window); // Measuring CPU use over a while, not waiting for something.
    let used = cpu_time(&agent) - cpu0;
    let elapsed = t0.elapsed();
    assert!(
        used < elapsed / 4,
        "the agent used {used:?} of CPU in {elapsed:?} while accept failed: it spins"
    );
    drop(conns);
    soft_limit(&old_soft);
    wait_for(
        || matches!(http_get(addr, "/healthz"), Ok((200, _))),
        HEADER_READ_TIMEOUT + secs(10),
        "GET /healthz answered once descriptors are free",
    );
    let errors = agent.metric_or_zero(REJECTED, &[("reason", "accept_error")]);
    assert!(
        errors >= 1.0,
        "{REJECTED}{{reason=\"accept_error\"}} = {errors}"
    );
    let logged = agent
        .stderr()
        .lines()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(
        (1..=2).contains(&logged),
        "`accept failed` logged {logged} times (rate-limited: once per 10 s)"
    );
    c.write_lines(10);
    d.wait_all(&mut agent, &[("web", 20)], secs(30));
    agent.stop(secs(30));
}
