//! How the CloudWatch sink handles CloudWatch's refusals, each injected by the fault proxy in
//! front of moto: denied credentials (`AccessDeniedException`: surfaced on `/readyz`, in the
//! metrics and the log, retried until they work), a request refused as invalid
//! (`InvalidParameterException`: split in halves until the one offending event is alone, which
//! is dropped and counted), and events rejected inside a successful answer
//! (`rejectedLogEventsInfo`: counted by reason and acknowledged), and a log group deleted under
//! it (created again by the first request that finds it missing). Plus a self-test of those
//! proxy faults (no agent).
//!
//! Helpers (moto + proxy + node, config, metrics) are shared with `cloudwatch.rs`.

use std::collections::BTreeSet;
use std::time::Duration;

use kubeship_tests::{
    Agent, AgentConfig, CwApi, CwDelivery, FaultProxy, Format, Injected, InputEvent, Moto, PutCall,
    Record, Rejection, TEST_AWS_REGION, now_ms, parse_seq, roundtrip, secs, wait_for, wait_until,
};
use serde_json::{Value, json};

use crate::cloudwatch::{Env, env, metric};

const DROPPED: &str = "kubeship_log_records_dropped_total";
const REQUESTS: &str = "kubeship_cloudwatch_requests_total";
const LAG: &str = "kubeship_log_checkpoint_lag_bytes";

/// The test config with retries backing off at most 2 s, so recovery is quick to observe.
fn config(env: &Env) -> AgentConfig {
    let mut cfg = env.config();
    if let Some(cw) = cfg.cloudwatch.as_mut() {
        cw.extra.push("max_backoff_secs: 2".into());
    }
    cfg
}

/// `(container, seq)` of an event message that is a sequenced record; None otherwise.
fn seq_of(message: &str) -> Option<(String, u64)> {
    let r: Record = serde_json::from_str(message).ok()?;
    parse_seq(&r.log).map(|(n, s)| (n.to_string(), s))
}

/// Status of `GET /readyz` (0 if the agent cannot be reached).
fn readyz(agent: &Agent) -> u16 {
    agent.http_get("/readyz").map(|r| r.0).unwrap_or(0)
}

/// The agent's JSON log lines at `level` (stderr; `telemetry.log_format: json`).
fn log_lines(agent: &Agent, level: &str) -> Vec<Value> {
    agent
        .stderr()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["level"] == level)
        .collect()
}

/// The JSON log lines at `level` of which some string value contains `needle`.
fn log_lines_mentioning(agent: &Agent, level: &str, needle: &str) -> Vec<Value> {
    log_lines(agent, level)
        .into_iter()
        .filter(|v| {
            v.as_object().is_some_and(|o| {
                o.values()
                    .any(|x| x.as_str().is_some_and(|s| s.contains(needle)))
            })
        })
        .collect()
}

/// The id the proxy will give its next exchange (to tell later requests apart).
fn next_exchange_id(proxy: &FaultProxy) -> u64 {
    proxy.exchanges().last().map_or(0, |e| e.id + 1)
}

/// `PutLogEvents` requests recorded from exchange `from` on.
fn puts_since(proxy: &FaultProxy, from: u64) -> Vec<PutCall> {
    proxy
        .put_log_events()
        .into_iter()
        .filter(|c| c.exchange.id >= from)
        .collect()
}

/// Sequence numbers of `name` in the events of `calls` (every event, whatever the answer),
/// sorted, each once.
fn seqs_sent(calls: &[PutCall], name: &str) -> Vec<u64> {
    calls
        .iter()
        .filter_map(|c| c.put.as_ref().ok())
        .flat_map(|p| p.events.iter())
        .filter_map(|e| seq_of(&e.message))
        .filter(|(n, _)| n == name)
        .map(|(_, s)| s)
        .collect::<BTreeSet<u64>>()
        .into_iter()
        .collect()
}

/// No line of `container` below `before` (written before a restart) is in `calls`.
#[track_caller]
fn assert_none_resent(calls: &[PutCall], container: &str, before: u64) {
    let resent: Vec<u64> = seqs_sent(calls, container)
        .into_iter()
        .filter(|&s| s < before)
        .collect();
    assert!(
        resent.is_empty(),
        "lines before the restart sent again: {}",
        kubeship_tests::ranges(&resent, 12)
    );
}

/// Polls moto until every seq of `0..n` of container `name` but those in `except` is there;
/// panics after `timeout` or if the agent exits.
#[track_caller]
fn wait_delivered_except(
    d: &mut CwDelivery,
    agent: &mut Agent,
    name: &str,
    n: u64,
    except: &BTreeSet<u64>,
    timeout: Duration,
) {
    let want: Vec<u64> = (0..n).filter(|s| !except.contains(s)).collect();
    let ok = wait_until(
        || {
            agent.assert_running("while waiting for CloudWatch events");
            d.poll();
            let t = d.tracker.track(name);
            want.iter().all(|&s| t.count_of(s) > 0)
        },
        timeout,
    );
    if !ok {
        let t = d.tracker.track(name);
        let missing: Vec<u64> = want.into_iter().filter(|&s| t.count_of(s) == 0).collect();
        panic!(
            "{name}: {} lines missing from CloudWatch after {timeout:?}: {}\n{}agent stderr \
             tail:\n{}",
            missing.len(),
            kubeship_tests::ranges(&missing, 12),
            d.state.summary(),
            agent.stderr_tail(40)
        );
    }
}

/// ⌈log2 n⌉ (0 for n ≤ 1).
fn ceil_log2(n: usize) -> u32 {
    if n <= 1 {
        0
    } else {
        usize::BITS - (n - 1).leading_zeros()
    }
}

// ---------------------------------------------------------------------------------------------

/// Credentials the role does not grant `logs:PutLogEvents`: the agent keeps running, reports
/// not ready, counts `outcome="denied"`, logs the refusal as an error, keeps its data and
/// retries; once the permission is there everything arrives, once, and it is ready again.
#[test]
fn access_denied_is_surfaced_and_recovers() {
    let env = env();
    let mut c = env.container("secure", "api-5f7c9-qx8zt", "api", Format::Cri);
    let cfg = config(&env);
    env.proxy.deny_until_cleared();
    // Ready first (nothing to ship yet): the 503 below is the sink's doing, not start-up.
    let mut agent = env.start(&cfg);
    let pid = agent.pid();
    c.write_lines(300);

    let p = &env.proxy;
    let denied_by_proxy = || p.count(|e| e.injected == Some(Injected::Denied));
    wait_for(
        || {
            agent.assert_running("while denied");
            readyz(&agent) == 503
                && metric(&agent, REQUESTS, &[("outcome", "denied")]) > 0.0
                && !log_lines_mentioning(&agent, "ERROR", "AccessDeniedException").is_empty()
        },
        secs(15),
        "/readyz 503, outcome=\"denied\" counted and an ERROR log line about the refusal",
    );
    let errors = log_lines_mentioning(&agent, "ERROR", "AccessDeniedException");
    let line = errors[0].to_string();
    assert!(
        line.contains("not authorized to perform: logs:PutLogEvents"),
        "the error line carries CloudWatch's message: {line}"
    );
    assert_eq!(
        agent.http_get("/healthz").map(|r| r.0).unwrap_or(0),
        200,
        "denied is not dead: /healthz stays 200"
    );

    // Lines read while denied are kept too; retries go on and readiness does not flap back.
    c.write_lines(200);
    let seen = denied_by_proxy();
    p.wait_count(
        |e| e.injected == Some(Injected::Denied),
        seen + 2,
        secs(15),
        "more denied PutLogEvents (retries)",
    );
    assert_eq!(readyz(&agent), 503, "still denied: /readyz must stay 503");
    assert_eq!(
        p.count(|e| e.operation() == "PutLogEvents" && e.accepted()),
        0,
        "nothing accepted while denied: {}",
        p.summary()
    );

    p.clear_deny();
    let mut d = CwDelivery::new(&env.moto);
    d.wait_all(&mut agent, &[("api", c.written())], secs(20));
    wait_for(
        || readyz(&agent) == 200,
        secs(10),
        "/readyz 200 once a call succeeded",
    );
    agent.assert_running("after the denial ended");
    assert_eq!(agent.pid(), pid, "the agent was never restarted");

    let denied = metric(&agent, REQUESTS, &[("outcome", "denied")]);
    let refused = denied_by_proxy();
    eprintln!(
        "access_denied: {refused} denied requests, {} errors logged; proxy: {}",
        errors.len(),
        p.summary()
    );
    assert_eq!(
        denied, refused as f64,
        "outcome=\"denied\" counts every denied call the proxy answered"
    );
    assert!(metric(&agent, REQUESTS, &[("outcome", "ok")]) >= 1.0);
    assert_eq!(
        metric(&agent, DROPPED, &[]),
        0.0,
        "denied credentials drop nothing"
    );
    agent.stop(secs(20));
    d.poll();
    assert!(d.tracker.unknown.is_empty(), "{:?}", d.tracker.unknown);
    assert_eq!(
        d.tracker.total_dups(),
        0,
        "denied requests never reached moto: nothing is sent twice"
    );
    env.assert_requests_valid();
}

/// A log group deleted while the agent ships to it (or an endpoint that lost its state) is
/// created again, with its stream, by the first request that finds it missing: no failed
/// call, although this agent created that group moments before.
#[test]
fn a_deleted_log_group_is_created_again_at_once() {
    let env = env();
    let mut c = env.container("shop", "cart-6d5f8-k2m9x", "cart", Format::Cri);
    let mut agent = env.start(&config(&env));
    c.write_lines(20);
    let mut d = CwDelivery::new(&env.moto);
    d.wait_all(&mut agent, &[("cart", 20)], secs(20));
    let group = d.records[0].group.clone();
    let created = |agent: &Agent, what: &str| {
        metric(
            agent,
            &format!("kubeship_cloudwatch_{what}_created_total"),
            &[],
        )
    };
    assert_eq!(
        (created(&agent, "groups"), created(&agent, "streams")),
        (1.0, 1.0)
    );

    env.moto
        .api()
        .call("DeleteLogGroup", &json!({ "logGroupName": group }))
        .expect("DeleteLogGroup");
    c.write_lines(20);
    let api = env.moto.api();
    let mut seqs = BTreeSet::new();
    let arrived = wait_until(
        || {
            agent.assert_running("after the group was deleted");
            seqs = api
                .snapshot(None)
                .map(|s| {
                    s.events()
                        .filter_map(|(_, _, e)| seq_of(&e.message))
                        .map(|(_, seq)| seq)
                        .collect()
                })
                .unwrap_or_default();
            (20..40).all(|s| seqs.contains(&s))
        },
        secs(15),
    );
    assert!(
        arrived,
        "the lines written after the deletion did not arrive within 15 s: {seqs:?}; \
         agent stderr:\n{}",
        agent.stderr_tail(10)
    );
    assert_eq!(
        (created(&agent, "groups"), created(&agent, "streams")),
        (2.0, 2.0)
    );
    for outcome in ["error", "no_group"] {
        assert_eq!(
            metric(&agent, REQUESTS, &[("outcome", outcome)]),
            0.0,
            "outcome {outcome}: {}",
            env.proxy.summary()
        );
    }
    agent.stop(secs(20));
    env.assert_requests_valid();
}

// ---------------------------------------------------------------------------------------------

const POISON: &str = "POISON-PILL";

/// One event CloudWatch refuses as invalid among 200 good ones of the same stream: the refused
/// request is split in halves until that event is alone, which is dropped and counted; every
/// other line arrives once, and the checkpoint moves past the offender (a restart sends
/// nothing again).
#[test]
fn invalid_parameter_isolates_the_offender() {
    let env = env();
    let mut c = env.container("shop", "checkout-6d9f-2kq7w", "checkout", Format::Cri);
    c.write_lines(100);
    let poison_time = c.info().time(99);
    c.write_framed(
        &poison_time,
        "stdout",
        format!("{POISON} this one CloudWatch refuses").as_bytes(),
        false,
    );
    c.write_lines(100);
    env.proxy.invalid_when_body_contains(POISON);
    let cfg = config(&env);
    let mut agent = env.start(&cfg);
    let mut d = CwDelivery::new(&env.moto);
    d.wait_all(&mut agent, &[("checkout", c.written())], secs(20));
    wait_for(
        || metric(&agent, LAG, &[]) == 0.0,
        secs(10),
        "checkpoint lag 0: the batch holding the refused event acknowledged",
    );

    let dropped = metric(&agent, DROPPED, &[("reason", "invalid_parameter")]);
    assert_eq!(
        dropped, 1.0,
        "log_records_dropped_total{{reason=\"invalid_parameter\"}}"
    );
    assert_eq!(
        metric(&agent, DROPPED, &[]),
        1.0,
        "no other drop: {}",
        agent.metrics().unwrap_or_default()
    );
    let refused: Vec<PutCall> = env
        .proxy
        .put_log_events()
        .into_iter()
        .filter(|c| c.exchange.injected == Some(Injected::Invalid))
        .collect();
    let sizes: Vec<usize> = refused
        .iter()
        .map(|c| c.put.as_ref().map_or(0, |p| p.events.len()))
        .collect();
    eprintln!(
        "invalid_parameter: refused request sizes {sizes:?}; proxy: {}",
        env.proxy.summary()
    );
    assert!(!refused.is_empty(), "no request was refused");
    assert_eq!(
        metric(&agent, REQUESTS, &[("outcome", "invalid")]),
        refused.len() as f64,
        "outcome=\"invalid\" counts each refused request"
    );
    let first = sizes[0];
    let bound = (ceil_log2(first) as usize + 1).min(20);
    assert!(
        refused.len() <= bound,
        "{} refused requests to isolate one event in {first} (≤ ⌈log2 {first}⌉ + 1 = {bound}): \
         sizes {sizes:?}",
        refused.len()
    );
    for w in sizes.windows(2) {
        assert!(
            w[1] == w[0] / 2 || w[1] == w[0] - w[0] / 2,
            "each refused request is a half of the one before: sizes {sizes:?}"
        );
    }
    let last = refused
        .last()
        .and_then(|c| c.put.as_ref().ok())
        .expect("parsed");
    assert_eq!(last.events.len(), 1, "sizes {sizes:?}");
    assert!(
        last.events[0].message.contains(POISON),
        "the event refused alone is the offender: {}",
        last.events[0].message
    );
    let errors = log_lines_mentioning(&agent, "ERROR", "InvalidParameterException");
    assert!(
        !errors.is_empty(),
        "dropping the offender is logged as an error; stderr tail:\n{}",
        agent.stderr_tail(20)
    );

    agent.stop(secs(20));
    d.poll();
    assert!(
        d.state
            .events()
            .all(|(_, _, e)| !e.message.contains(POISON)),
        "the refused event is not in CloudWatch"
    );
    assert!(d.tracker.unknown.is_empty(), "{:?}", d.tracker.unknown);
    assert_eq!(d.tracker.total_dups(), 0, "every other line exactly once");

    // Restart with the refusal still armed: nothing before the checkpoint goes out again.
    let from = next_exchange_id(&env.proxy);
    let mut agent = env.start(&cfg);
    let before = c.written();
    c.write_lines(50);
    d.wait_all(&mut agent, &[("checkout", c.written())], secs(20));
    let after = puts_since(&env.proxy, from);
    assert_none_resent(&after, "checkout", before);
    assert!(
        after.iter().all(|c| c.exchange.injected.is_none()
            && !String::from_utf8_lossy(&c.exchange.body).contains(POISON)),
        "the offender was sent again after the restart: {}",
        env.proxy.summary()
    );
    assert_eq!(
        metric(&agent, DROPPED, &[]),
        0.0,
        "nothing dropped after the restart"
    );
    agent.stop(secs(20));
    d.poll();
    assert_eq!(d.tracker.total_dups(), 0, "no duplicates after the restart");
    env.assert_requests_valid();
}

// ---------------------------------------------------------------------------------------------

/// A successful PutLogEvents whose answer reports the first K events as too old: the agent
/// counts K drops with `reason="too_old"`, the rest as sent, acknowledges the batch, and after a
/// restart sends none of those lines again.
#[test]
fn rejected_events_are_counted_and_acknowledged() {
    const K: usize = 7;
    let env = env();
    let mut c = env.container("billing", "ledger-84c2d-w9m4s", "ledger", Format::Docker);
    c.write_lines(200);
    env.proxy.reject_in_response(Rejection::TooOld(K), 1);
    let cfg = config(&env);
    let mut agent = env.start(&cfg);
    env.proxy.wait_count(
        |e| e.injected == Some(Injected::Rejected),
        1,
        secs(20),
        "a PutLogEvents answered with rejectedLogEventsInfo",
    );
    let tampered: Vec<PutCall> = env
        .proxy
        .put_log_events()
        .into_iter()
        .filter(|c| c.exchange.injected == Some(Injected::Rejected))
        .collect();
    assert_eq!(tampered.len(), 1, "{}", env.proxy.summary());
    assert_eq!(
        tampered[0].rejected_info(),
        Some(json!({"tooOldLogEventEndIndex": K})),
        "the request held more than {K} events (sizes: {:?})",
        tampered[0].put.as_ref().map(|p| p.events.len())
    );
    // The rejected lines: the K oldest of that request.
    let rejected: BTreeSet<u64> = tampered[0]
        .rejected_events()
        .iter()
        .map(|e| seq_of(&e.message).expect("sequenced record").1)
        .collect();
    assert_eq!(rejected.len(), K);
    let request = tampered[0].put.as_ref().expect("parsed");
    let max_rejected_ts = request.events[..K].iter().map(|e| e.timestamp).max();
    assert!(
        request.events[K..]
            .iter()
            .all(|e| Some(e.timestamp) >= max_rejected_ts),
        "the events reported too old are the request's oldest"
    );

    let mut d = CwDelivery::new(&env.moto);
    wait_delivered_except(
        &mut d,
        &mut agent,
        "ledger",
        c.written(),
        &rejected,
        secs(20),
    );
    wait_for(
        || metric(&agent, DROPPED, &[("reason", "too_old")]) >= K as f64,
        secs(10),
        "log_records_dropped_total{reason=\"too_old\"} to count the rejections",
    );
    wait_for(
        || metric(&agent, LAG, &[]) == 0.0,
        secs(10),
        "checkpoint lag 0: the batch with rejected events acknowledged",
    );
    assert_eq!(
        metric(&agent, DROPPED, &[("reason", "too_old")]),
        K as f64,
        "log_records_dropped_total{{reason=\"too_old\"}}"
    );
    for reason in ["too_new", "expired", "invalid_parameter"] {
        assert_eq!(
            metric(&agent, DROPPED, &[("reason", reason)]),
            0.0,
            "{reason}"
        );
    }
    assert_eq!(
        metric(&agent, "kubeship_cloudwatch_events_sent_total", &[]),
        (c.written() - K as u64) as f64,
        "events sent = events written − events rejected"
    );
    let warned = log_lines_mentioning(&agent, "WARN", "too_old");
    assert!(
        !warned.is_empty(),
        "the rejection is logged (WARN, with its reason); stderr tail:\n{}",
        agent.stderr_tail(20)
    );
    agent.stop(secs(20));

    // Restart (no more rejections): the rejected lines were acknowledged, not lost in flight.
    assert!(env.proxy.faults().reject_next.is_empty());
    let from = next_exchange_id(&env.proxy);
    let mut agent = env.start(&cfg);
    let before = c.written();
    c.write_lines(50);
    wait_delivered_except(
        &mut d,
        &mut agent,
        "ledger",
        c.written(),
        &rejected,
        secs(20),
    );
    let after = puts_since(&env.proxy, from);
    assert_none_resent(&after, "ledger", before);
    assert_eq!(
        metric(&agent, DROPPED, &[]),
        0.0,
        "nothing dropped after the restart"
    );
    agent.stop(secs(20));
    d.poll();
    let t = d.tracker.track("ledger");
    for &s in &rejected {
        assert_eq!(t.count_of(s), 0, "rejected seq {s} is not in CloudWatch");
    }
    assert_eq!(d.tracker.total_dups(), 0, "no duplicates");
    assert!(d.tracker.unknown.is_empty(), "{:?}", d.tracker.unknown);
    assert_eq!(
        d.total() as u64,
        c.written() - K as u64,
        "CloudWatch holds every line but the rejected ones"
    );
    // What the proxy says moto stored agrees with moto.
    let stored: BTreeSet<u64> = env
        .proxy
        .delivered_events()
        .iter()
        .filter_map(|(_, _, _, m)| seq_of(m).map(|x| x.1))
        .collect();
    assert_eq!(stored.len() as u64, c.written() - K as u64);
    assert!(stored.is_disjoint(&rejected));
    env.assert_requests_valid();
}

// ---------------------------------------------------------------------------------------------

/// The proxy's refusals as the AWS SDK sees them, without the agent: denial, invalid marker,
/// rejections in a successful answer (events taken out of what moto stores).
#[test]
fn proxy_denies_refuses_and_rejects_on_demand() {
    const G: &str = "/kubeship/errors";
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.addr());
    let api = CwApi::new(proxy.addr(), TEST_AWS_REGION);
    let t0 = now_ms() - 60_000;
    let evs = |tag: &str, n: usize| -> Vec<InputEvent> {
        (0..n)
            .map(|i| InputEvent::new(t0 + i as i64, format!("{tag}-{i}")))
            .collect()
    };
    api.create_group(G).expect("create group");

    // Denied: PutLogEvents only, until cleared; the wire format the SDK classifies.
    proxy.deny_until_cleared();
    api.create_stream(G, "s")
        .expect("other operations are not denied");
    let e = api.put(G, "s", &evs("denied", 1)).expect_err("denied");
    assert_eq!(
        (e.status, e.kind.as_str()),
        (400, "AccessDeniedException"),
        "{e}"
    );
    assert_eq!(
        e.message,
        "User is not authorized to perform: logs:PutLogEvents"
    );
    let body = serde_json::to_vec(&json!({
        "logGroupName": G, "logStreamName": "s", "logEvents": [{"timestamp": t0, "message": "m"}]
    }))
    .expect("json");
    let headers = vec![
        (
            "Content-Type".to_string(),
            "application/x-amz-json-1.1".to_string(),
        ),
        (
            "X-Amz-Target".to_string(),
            "Logs_20140328.PutLogEvents".to_string(),
        ),
    ];
    let raw = roundtrip(proxy.addr(), "POST", "/", &headers, &body, secs(10)).expect("raw");
    assert_eq!(raw.status(), 400);
    assert_eq!(
        raw.head.get("x-amzn-ErrorType"),
        Some("AccessDeniedException")
    );
    assert_eq!(
        raw.head.get("content-type"),
        Some("application/x-amz-json-1.1")
    );
    let v: Value = serde_json::from_slice(&raw.body).expect("JSON error body");
    assert_eq!(v["__type"], "AccessDeniedException");
    proxy.clear_deny();
    api.put(G, "s", &evs("allowed", 1)).expect("deny cleared");

    // Invalid: only bodies with the marker.
    proxy.invalid_when_body_contains("BAD-MARK");
    let mut mixed = evs("fine", 2);
    mixed.push(InputEvent::new(t0 + 5, "has BAD-MARK inside"));
    let e = api.put(G, "s", &mixed).expect_err("invalid");
    assert_eq!(
        (e.status, e.kind.as_str()),
        (400, "InvalidParameterException"),
        "{e}"
    );
    api.put(G, "s", &evs("clean", 2))
        .expect("no marker: forwarded");

    // Rejections: a one-event request and a refused one do not use them up.
    proxy.reject_in_response(Rejection::TooOld(2), 1);
    proxy.reject_in_response(Rejection::TooNew(1), 1);
    proxy.reject_in_response(Rejection::Expired(9), 1);
    let r = api.put(G, "s", &evs("single", 1)).expect("single");
    assert!(r.get("rejectedLogEventsInfo").is_none(), "{r}");
    let e = api
        .put(G, "missing", &evs("nf", 3))
        .expect_err("no such stream");
    assert_eq!(e.kind, "ResourceNotFoundException", "{e}");
    assert_eq!(proxy.faults().reject_next.len(), 3);
    let r = api.put(G, "s", &evs("old", 4)).expect("old");
    assert_eq!(
        r["rejectedLogEventsInfo"],
        json!({"tooOldLogEventEndIndex": 2}),
        "{r}"
    );
    let r = api.put(G, "s", &evs("new", 3)).expect("new");
    assert_eq!(
        r["rejectedLogEventsInfo"],
        json!({"tooNewLogEventStartIndex": 2}),
        "{r}"
    );
    // Clamped: at least one event is kept.
    let r = api.put(G, "s", &evs("exp", 3)).expect("expired");
    assert_eq!(
        r["rejectedLogEventsInfo"],
        json!({"expiredLogEventEndIndex": 2}),
        "{r}"
    );
    assert!(proxy.faults().reject_next.is_empty());
    let r = api.put(G, "s", &evs("after", 2)).expect("after");
    assert!(r.get("rejectedLogEventsInfo").is_none(), "used up: {r}");

    let stored: Vec<String> = moto
        .api()
        .events(G, "s")
        .expect("events")
        .into_iter()
        .map(|e| e.message)
        .collect();
    let mut stored_sorted = stored.clone();
    stored_sorted.sort();
    let mut want: Vec<String> = [
        "allowed-0",
        "clean-0",
        "clean-1",
        "single-0",
        "old-2",
        "old-3",
        "new-0",
        "new-1",
        "exp-2",
        "after-0",
        "after-1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    want.sort();
    assert_eq!(
        stored_sorted, want,
        "moto holds all but the rejected events"
    );
    let mut delivered: Vec<String> = proxy
        .delivered_events()
        .into_iter()
        .map(|(_, _, _, m)| m)
        .collect();
    delivered.sort();
    assert_eq!(
        delivered, want,
        "FaultProxy::delivered_events agrees with moto"
    );
    let injected: Vec<Injected> = proxy
        .exchanges()
        .iter()
        .filter_map(|e| e.injected)
        .collect();
    assert_eq!(
        injected,
        [
            Injected::Denied,
            Injected::Denied,
            Injected::Invalid,
            Injected::Rejected,
            Injected::Rejected,
            Injected::Rejected
        ]
    );
    proxy
        .check_put_log_events()
        .expect("injected answers are not moto's refusals");
}
