//! The CloudWatch sink and the in-flight budget: a tailer blocked on the budget is never left
//! waiting for `batch_timeout_ms`.
//!
//! A pipeline batch is acknowledged (and its budget freed) only once every one of its events,
//! over all its streams, was delivered; the sink holds events back in per-stream queues to fill
//! large requests. When the budget is full of batches whose last events sit in such queues,
//! nothing more arrives to fill them: the sink must send them at once instead of waiting.

use std::time::{Duration, Instant};

use kubeship_tests::{Agent, AgentConfig, CwDelivery, Format, MAX_PUT_BYTES, secs};

use crate::cloudwatch::env;

const BATCH_TIMEOUT: Duration = Duration::from_secs(60);

/// One busy container and many quiet ones, read from the start. Batches are 1 MiB and the
/// budget holds three of them (pressure, the queued bytes at which every queue is sent, is
/// 1.5 MiB). The quiet containers' few lines all land in the first batches and never fill a
/// request; the busy container fills 1 MiB requests, but each of its batches is a little more
/// than one request (a request counts 26 bytes per event more than a batch), so its last events
/// stay queued. With those two batches unacknowledged the next one does not fit, the tailer
/// stops, and what is queued (a few hundred KB) stays below the pressure. Waiting for
/// `batch_timeout_ms` (60 s) there would stall the whole drain; every line must be in
/// CloudWatch well before that.
#[test]
fn a_tailer_waiting_for_budget_is_not_left_waiting_for_the_batch_timeout() {
    let env = env();
    let mut containers = Vec::new();
    let mut busy = env.container("budget", "busy-1", "busy", Format::Cri);
    busy.set_padding(900, 200);
    busy.write_lines(4_000);
    containers.push(busy);
    for i in 0..30 {
        let mut c = env.container(
            "budget",
            &format!("quiet-{i}"),
            &format!("quiet-{i}"),
            Format::Cri,
        );
        c.set_padding(900, 200);
        c.write_lines(5);
        containers.push(c);
    }
    let expect: Vec<(&str, u64)> = containers.iter().map(|c| (c.name(), c.written())).collect();
    let cfg = AgentConfig {
        batch_timeout_ms: BATCH_TIMEOUT.as_millis() as u64,
        batch_max_bytes: 1 << 20,
        max_inflight_bytes: 3 << 20,
        ..env.config()
    };
    // A drain: the agent exits once it read every file to its end and all was delivered (the
    // last queued events go when the pipeline closes).
    let started = Instant::now();
    let mut agent = Agent::start_with_args(&env.node, &cfg, &["--exit-on-eof"]);
    let st = agent.wait_exit(secs(20).min(BATCH_TIMEOUT / 2));
    assert!(
        st.success(),
        "kubeship --exit-on-eof: {st}\n{}",
        agent.stderr_tail(30)
    );
    eprintln!(
        "budget drain: done in {:?} (batch timeout {BATCH_TIMEOUT:?})",
        started.elapsed()
    );
    let mut d = CwDelivery::new(&env.moto);
    d.poll();
    assert!(d.bad.is_empty(), "events that are not records: {:?}", d.bad);
    for (name, n) in &expect {
        let t = d.tracker.track(name);
        assert!(
            t.has_all(*n),
            "{name}: lost lines:\n{}",
            d.describe_missing(&expect)
        );
        assert_eq!(t.dups, 0, "{name}: duplicates");
    }
    env.assert_requests_valid();
    // The busy container's requests stay full: sending at once is for a waiting tailer only.
    let largest = env
        .proxy
        .put_log_events()
        .iter()
        .filter(|c| c.exchange.accepted())
        .filter_map(|c| c.put.as_ref().ok())
        .map(|p| p.batch_bytes())
        .max()
        .unwrap_or(0);
    assert!(
        largest * 10 >= MAX_PUT_BYTES * 9,
        "the largest request has {largest} bytes: a backlog should fill requests"
    );
}
