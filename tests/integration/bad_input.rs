//! Hostile input: huge lines, unterminated lines, invalid UTF-8, empty / deleted / unreadable
//! files, malformed lines, and a config with several mistakes.

use std::fs;

use kubeship_tests::{
    Agent, AgentConfig, Delivery, Format, Node, frame, kubeship, parse_diagnostics,
    run_with_timeout, secs, time_for, wait_for,
};

const MAX_RECORD: u64 = 262_144;

fn cfg() -> AgentConfig {
    AgentConfig {
        max_record_bytes: MAX_RECORD,
        eof_flush_ms: 300,
        ..AgentConfig::default()
    }
}

/// A 1.5 MiB line (and a 1.5 MiB record split into 16 KiB CRI partial pieces) is delivered as
/// one record truncated to `max_record_bytes`, counted in
/// `kubeship_log_records_truncated_total`; the lines after it are intact.
#[test]
fn huge_line_is_truncated_counted_and_followed_by_intact_lines() {
    let node = Node::new();
    let mut whole = node.add_container("big", "huge-0", "whole", Format::Cri);
    let mut split = node.add_container("big", "huge-1", "split", Format::Cri);
    let huge_len = 1536 * 1024;
    let body = |prefix: &str| {
        let mut s = String::from(prefix);
        while s.len() < huge_len {
            s.push_str("0123456789abcdefghijklmnopqrstuvwxyz");
        }
        s.truncate(huge_len);
        s
    };
    whole.write_lines(2);
    whole.write_framed(
        &time_for(9_000),
        "stdout",
        body("HUGE-WHOLE ").as_bytes(),
        false,
    );
    whole.write_lines(3);

    split.write_lines(2);
    let text = body("HUGE-SPLIT ");
    let pieces: Vec<&[u8]> = text.as_bytes().chunks(16 * 1024).collect();
    for (i, p) in pieces.iter().enumerate() {
        split.write_framed(&time_for(9_001), "stdout", p, i + 1 < pieces.len());
    }
    split.write_lines(3);

    let mut agent = Agent::start(&node, &cfg());
    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &[("whole", 5), ("split", 5)], secs(60));

    for (prefix, name) in [("HUGE-WHOLE ", "whole"), ("HUGE-SPLIT ", "split")] {
        let huge: Vec<_> = d
            .sink
            .records_of(name)
            .filter(|r| !r.log.starts_with("c="))
            .collect();
        assert_eq!(
            huge.len(),
            1,
            "{name}: the huge line must be exactly one (truncated) record, got {} extra records \
             (first starts {:?})",
            huge.len(),
            huge.first().map(|r| &r.log[..r.log.len().min(40)])
        );
        let log = &huge[0].log;
        assert!(
            log.starts_with(prefix),
            "{name}: truncated record keeps its start"
        );
        assert!(
            log.len() as u64 <= MAX_RECORD,
            "{name}: record of {} bytes exceeds max_record_bytes {MAX_RECORD}",
            log.len()
        );
        assert!(
            log.len() as u64 >= MAX_RECORD / 2,
            "{name}: record cut to {} bytes, far below max_record_bytes {MAX_RECORD}",
            log.len()
        );
    }
    // Order: the intact lines after the huge one come after it.
    for name in ["whole", "split"] {
        let logs: Vec<&str> = d.sink.records_of(name).map(|r| r.log.as_str()).collect();
        let pos = logs
            .iter()
            .position(|l| l.starts_with("HUGE-"))
            .expect("huge record");
        assert_eq!(pos, 2, "{name}: huge record between seq 1 and seq 2");
        assert_eq!(logs.len(), 6, "{name}: 5 lines + 1 huge record");
    }
    for (seq, r) in d
        .sink
        .records_of("whole")
        .filter(|r| r.log.starts_with("c="))
        .enumerate()
    {
        whole
            .info()
            .check(r, seq as u64, "node-1")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    wait_for(
        || agent.metric("kubeship_log_records_truncated_total") >= Some(2.0),
        secs(10),
        "kubeship_log_records_truncated_total >= 2",
    );
    agent.stop(secs(30));
}

/// A last line without its trailing newline is delivered once `eof_flush_ms` passes.
#[test]
fn unterminated_last_line_is_flushed_after_eof_flush_ms() {
    let node = Node::new();
    let mut cri = node.add_container("ns", "eof-cri", "cri", Format::Cri);
    let mut docker = node.add_container("ns", "eof-docker", "docker", Format::Docker);
    for c in [&mut cri, &mut docker] {
        c.write_lines(2);
        let info = c.info().clone();
        let mut line = frame(
            info.format,
            &info.time(2),
            info.stream(2),
            info.message(2).as_bytes(),
            false,
        );
        assert_eq!(line.pop(), Some(b'\n'));
        c.write_raw(&line);
    }
    let mut agent = Agent::start(&node, &cfg());
    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &[("cri", 3), ("docker", 3)], secs(30));
    for c in [&cri, &docker] {
        let recs: Vec<_> = d.sink.records_of(c.name()).collect();
        assert_eq!(recs.len(), 3, "{}: exactly 3 records", c.name());
        c.info()
            .check(recs[2], 2, "node-1")
            .unwrap_or_else(|e| panic!("unterminated line: {e}"));
    }
    agent.stop(secs(30));
}

/// Invalid UTF-8 in a message is replaced with U+FFFD (CRI and docker json-file).
#[test]
fn invalid_utf8_is_replaced() {
    let node = Node::new();
    let mut cri = node.add_container("ns", "utf-cri", "cri", Format::Cri);
    let mut docker = node.add_container("ns", "utf-docker", "docker", Format::Docker);
    for c in [&mut cri, &mut docker] {
        c.write_lines(1);
        c.write_framed(
            &time_for(500),
            "stdout",
            b"BAD-UTF8 left\xff\xfe\xc3right",
            false,
        );
        c.write_lines(1);
    }
    let mut agent = Agent::start(&node, &cfg());
    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &[("cri", 2), ("docker", 2)], secs(30));
    for name in ["cri", "docker"] {
        let recs: Vec<_> = d.sink.records_of(name).collect();
        assert_eq!(recs.len(), 3, "{name}: 3 records");
        let log = &recs[1].log;
        let middle = log
            .strip_prefix("BAD-UTF8 left")
            .and_then(|s| s.strip_suffix("right"))
            .unwrap_or_else(|| panic!("{name}: bad record {log:?}"));
        assert!(
            !middle.is_empty() && middle.chars().all(|c| c == '\u{FFFD}'),
            "{name}: invalid bytes should become U+FFFD, got {middle:?}"
        );
    }
    assert!(
        d.sink.bad_lines().is_empty(),
        "sink lines not valid JSON records: {:?}",
        d.sink.bad_lines()
    );
    agent.stop(secs(30));
}

/// An empty file yields no records and no errors; lines appended later are delivered.
#[test]
fn empty_file_then_appended_lines() {
    let node = Node::new();
    let mut empty = node.add_container("ns", "quiet", "empty", Format::Cri);
    let mut other = node.add_container("ns", "busy", "other", Format::Docker);
    other.write_lines(5);
    let mut agent = Agent::start(&node, &cfg());
    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &[("other", 5)], secs(30));
    wait_for(
        || agent.metric("kubeship_log_files_tailed") >= Some(2.0),
        secs(10),
        "kubeship_log_files_tailed >= 2 (the empty file is tailed too)",
    );
    d.poll();
    assert_eq!(
        d.sink.records_of("empty").count(),
        0,
        "no records from an empty file"
    );
    empty.write_lines(4);
    d.wait_all(&mut agent, &[("empty", 4), ("other", 5)], secs(30));
    assert_eq!(d.tracker.total_dups(), 0, "no duplicates");
    let errors = agent.error_lines();
    assert!(errors.is_empty(), "ERROR logs: {errors:#?}");
    agent.stop(secs(30));
}

/// Deleting a pod's logs while the agent reads them does not crash it; what was read is
/// delivered in order without gaps, and other containers keep flowing.
#[test]
fn file_deleted_while_being_read() {
    let node = Node::new();
    let mut doomed = node.add_container("ns", "doomed", "doomed", Format::Cri);
    let mut other = node.add_container("ns", "survivor", "other", Format::Cri);
    doomed.set_padding(150, 50);
    doomed.write_lines(20_000);
    other.write_lines(10);
    let cfg = AgentConfig {
        batch_max_records: 500,
        ..cfg()
    };
    let mut agent = Agent::start(&node, &cfg);
    let mut d = Delivery::new(&node);
    wait_for(
        || {
            d.poll();
            d.tracker.track("doomed").distinct > 0
        },
        secs(30),
        "first records of the doomed container",
    );
    let written = doomed.written();
    doomed.remove();
    other.write_lines(10);
    d.wait_all(&mut agent, &[("other", 20)], secs(30));
    // Settle: everything read is delivered or counted as dropped.
    wait_for(
        || {
            d.poll();
            let Ok(m) = agent.metrics() else { return false };
            let read = kubeship_tests::metric_value(&m, "kubeship_log_lines_read_total", &[]);
            let dropped = kubeship_tests::metric_sum(&m, "kubeship_log_records_dropped_total", &[]);
            read.is_some_and(|r| r <= d.sink.total() as f64 + dropped)
        },
        secs(30),
        "lines read == records delivered + dropped",
    );
    agent.assert_running("after its input was deleted");
    assert!(
        matches!(agent.http_get("/healthz"), Ok((200, _))),
        "/healthz after deletion"
    );
    let t = d.tracker.track("doomed");
    let k = t.distinct;
    assert!(k >= 1 && k <= written);
    assert_eq!(
        t.missing(k),
        Vec::<u64>::new(),
        "delivered lines of the deleted file form a prefix"
    );
    assert!(
        t.order_violations.is_empty(),
        "order: {:?}",
        t.order_violations
    );
    eprintln!("file_deleted_while_being_read: {k} of {written} lines delivered");
    agent.stop(secs(30));
}

/// An unreadable file does not stop the agent: other files are delivered, each failed open is
/// counted in `kubeship_log_file_errors_total{reason="open"}` and retried, and once the file is
/// readable its lines are delivered. As root the agent runs as `nobody`: root (CAP_DAC_OVERRIDE)
/// reads through `chmod 000`.
#[test]
fn unreadable_file_is_counted_retried_and_read_once_readable() {
    let node = Node::new();
    let mut locked = node.add_container("ns", "locked", "locked", Format::Cri);
    let mut other = node.add_container("ns", "open", "other", Format::Cri);
    locked.write_lines(5);
    locked.chmod_live(0o000);
    other.write_lines(5);
    let mut agent = Agent::start_unprivileged(&node, &cfg());
    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &[("other", 5)], secs(30));
    // Retried at each rescan (every second here), counted each time.
    let what = format!(
        "kubeship_log_file_errors_total{{reason=\"open\"}} >= 2 (agent as nobody: {})",
        agent.unprivileged
    );
    wait_for(
        || agent.metric_or_zero("kubeship_log_file_errors_total", &[("reason", "open")]) >= 2.0,
        secs(30),
        what,
    );
    other.write_lines(5);
    d.wait_all(&mut agent, &[("other", 10)], secs(30));
    agent.assert_running("with an unreadable file present");
    assert_eq!(
        d.sink.records_of("locked").count(),
        0,
        "lines of an unreadable file cannot have been read"
    );
    locked.chmod_live(0o644);
    d.wait_all(&mut agent, &[("locked", 5), ("other", 10)], secs(30));
    agent.stop(secs(30));
}

/// A line that is neither CRI nor docker json is kept as a record whose log is the raw text,
/// counted in `kubeship_log_lines_malformed_total`; it keeps its place in the order.
#[test]
fn malformed_lines_are_kept_raw_and_counted() {
    let node = Node::new();
    let mut cri = node.add_container("ns", "mal-cri", "cri", Format::Cri);
    let mut docker = node.add_container("ns", "mal-docker", "docker", Format::Docker);
    let raw_cri = "MALFORMED this is not a CRI line";
    let raw_docker = "{\"log\":\"MALFORMED unterminated json";
    cri.write_lines(2);
    cri.write_raw(format!("{raw_cri}\n").as_bytes());
    cri.write_lines(2);
    docker.write_lines(2);
    docker.write_raw(format!("{raw_docker}\n").as_bytes());
    docker.write_lines(2);
    let mut agent = Agent::start(&node, &cfg());
    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &[("cri", 4), ("docker", 4)], secs(30));
    for (name, raw) in [("cri", raw_cri), ("docker", raw_docker)] {
        let logs: Vec<&str> = d.sink.records_of(name).map(|r| r.log.as_str()).collect();
        assert_eq!(
            logs.len(),
            5,
            "{name}: 4 lines + the malformed one: {logs:?}"
        );
        assert_eq!(logs[2], raw, "{name}: malformed line kept raw, in place");
    }
    wait_for(
        || agent.metric("kubeship_log_lines_malformed_total") >= Some(2.0),
        secs(10),
        "kubeship_log_lines_malformed_total >= 2",
    );
    agent.stop(secs(30));
}

/// `validate` reports all three mistakes of a config (not just the first), exit 1.
#[test]
fn config_with_three_mistakes_reports_all_three() {
    let node = Node::new();
    let path = node.root().join("three.yaml");
    let yaml = "\
cluster: demo
node_name: node-1
state_dir: ./state
logs:
  containers_dir: ./logs/containers
  read_from: middle
  poll_interval_msec: 100
output:
  local: {dir: ./out}
telemetry:
  listen_addr: \"not-an-address\"
";
    fs::write(&path, yaml).expect("write config");
    let out = run_with_timeout(
        kubeship().arg("validate").arg("--config").arg(&path),
        secs(10),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit code; stderr:\n{stderr}");
    let diags = parse_diagnostics(&stderr);
    for (key, line) in [
        ("logs.read_from", 6),
        ("logs.poll_interval_msec", 7),
        ("telemetry.listen_addr", 11),
    ] {
        let d = diags.iter().find(|d| d.key == key).unwrap_or_else(|| {
            panic!("no `FILE:LINE:COL: {key}: ...` diagnostic; stderr:\n{stderr}")
        });
        assert_eq!(d.line, line, "line of {key}: {d}");
        assert!(d.col >= 1, "column of {key}: {d}");
        assert!(d.file.ends_with("three.yaml"), "file of {key}: {d}");
        assert!(!d.message.trim().is_empty(), "message of {key}: {d}");
    }
    assert_eq!(
        diags.len(),
        3,
        "exactly the three problems, one per line; stderr:\n{stderr}"
    );
}
