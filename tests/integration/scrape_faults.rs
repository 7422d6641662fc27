//! Hostile scrape targets, end to end through the real agent: a target that hangs, one
//! that streams 50 MB past the body limit, a malformed body, a gzip body, a connection
//! reset and a 500, all beside a good target that must keep being scraped every interval,
//! with the agent's memory bounded.

use kubeship_tests::*;

const MIB: u64 = 1024 * 1024;
/// `body_limit_bytes` of the test's agent.
const BODY_LIMIT: usize = 1 << 20;
/// What the streaming target would send, were it let.
const STREAM_BYTES: usize = 50_000_000;

/// Three bad lines (reasons `bad_label_name`, `missing_value`, `bad_value`) among three
/// good ones.
const MALFORMED: &str = "ok_metric 1\n\
bad{ 1\n\
also_ok{x=\"y\"} 2\n\
no_value_here\n\
bad_number x\n\
ok_again 3\n";
const BAD_REASONS: [&str; 3] = ["bad_label_name", "missing_value", "bad_value"];

#[test]
fn hostile_targets_fail_alone_while_the_good_one_keeps_its_pace_in_bounded_memory() {
    let good = TargetServer::start("127.0.1.40", |_| Answer::Text("good_metric 1\n".into()));
    let hang = TargetServer::start("127.0.1.41", |_| Answer::Hang);
    let stream = TargetServer::start("127.0.1.42", |_| Answer::Stream(STREAM_BYTES));
    let malformed = TargetServer::start("127.0.1.43", |_| Answer::Text(MALFORMED.into()));
    let gzip = TargetServer::start("127.0.1.44", |_| {
        Answer::Gzip("# TYPE gz_metric gauge\ngz_metric{k=\"v\"} 42\n".into())
    });
    let reset = TargetServer::start("127.0.1.45", |_| Answer::Reset);
    let status = TargetServer::start("127.0.1.46", |_| Answer::Status(500));
    let targets = [
        ("good", &good),
        ("hang", &hang),
        ("stream", &stream),
        ("malformed", &malformed),
        ("gzip", &gzip),
        ("reset", &reset),
        ("status", &status),
    ];
    let mut lines: Vec<String> = [
        "scrape:",
        "  interval_secs: 1",
        "  timeout_secs: 1",
        "  self_metrics: false",
        "  kubelet: {enabled: false}",
        "  static_targets:",
    ]
    .map(String::from)
    .to_vec();
    lines.insert(3, format!("  body_limit_bytes: {BODY_LIMIT}"));
    for (job, server) in &targets {
        lines.push(format!(
            "    - {{url: 'http://{}/metrics', job: {job}}}",
            server.addr()
        ));
    }
    let node = Node::new();
    let cfg = AgentConfig {
        metrics: Some(lines),
        ..AgentConfig::default()
    };
    let mut agent = Agent::start(&node, &cfg);
    agent.wait_ready(secs(30));
    let up = |s: &[Scraped], job: &str| -> Vec<f64> {
        select(s, "up", &[("job", job)])
            .iter()
            .filter_map(|u| u.value())
            .collect()
    };
    wait_scraped(
        &node,
        &mut agent,
        secs(30),
        "two scrapes of every target",
        |s| targets.iter().all(|(job, _)| up(s, job).len() >= 2),
    );
    // Then six seconds of it all.
    let from = now_ms();
    let got = wait_scraped(&node, &mut agent, secs(30), "six more good scrapes", |s| {
        select(s, "up", &[("job", "good")])
            .iter()
            .filter(|u| u.t >= from)
            .count()
            >= 6
    });
    let text = agent.metrics().expect("/metrics");
    let peak = agent.peak_rss_bytes().expect("the agent's peak RSS");

    // The good target: every interval, each scrape whole.
    let good_ups = select(&got, "up", &[("job", "good")]);
    assert!(good_ups.len() >= 8, "{good_ups:?}");
    assert!(
        good_ups.iter().all(|u| u.value() == Some(1.0)),
        "{good_ups:?}"
    );
    let gaps: Vec<i64> = good_ups.windows(2).map(|w| w[1].t - w[0].t).collect();
    let slack = (200.0 * timeout_scale()) as i64;
    assert!(
        gaps.iter().all(|g| (g - 1000).abs() <= slack),
        "the good target's scrapes were not 1 s apart: {gaps:?} ms"
    );
    for u in &good_ups {
        let m = select(&got, "good_metric", &[("job", "good")]);
        assert!(
            m.iter().any(|s| s.t == u.t && s.value() == Some(1.0)),
            "{u:?}"
        );
    }

    // Each hostile target failed or succeeded on its own.
    for job in ["hang", "stream", "reset", "status"] {
        let ups = up(&got, job);
        assert!(ups.iter().all(|v| *v == 0.0), "{job}: {ups:?}");
    }
    for job in ["malformed", "gzip"] {
        let ups = up(&got, job);
        assert!(ups.iter().all(|v| *v == 1.0), "{job}: {ups:?}");
    }
    let durations = select(&got, "scrape_duration_seconds", &[("job", "hang")]);
    assert!(
        durations
            .iter()
            .all(|d| d.value().is_some_and(|v| (0.9..1.5).contains(&v))),
        "a hanging scrape lasts its timeout: {durations:?}"
    );
    // The malformed body: its good lines kept, its bad ones skipped and counted.
    let m = [("job", "malformed")];
    let first = select(&got, "up", &m)[0].t;
    let value_at = |name: &str, t: i64| {
        select(&got, name, &m)
            .iter()
            .find(|s| s.t == t)
            .and_then(|s| s.value())
    };
    assert_eq!(value_at("ok_metric", first), Some(1.0));
    assert_eq!(value_at("also_ok", first), Some(2.0));
    assert_eq!(value_at("ok_again", first), Some(3.0));
    assert_eq!(value_at("scrape_samples_scraped", first), Some(3.0));
    // The gzip body, decoded.
    let gz = select(&got, "gz_metric", &[("job", "gzip"), ("k", "v")]);
    assert!(
        !gz.is_empty() && gz.iter().all(|s| s.value() == Some(42.0)),
        "{gz:?}"
    );
    assert!(
        gzip.heads()
            .iter()
            .all(|h| h.header("accept-encoding") == Some("gzip")),
        "{:?}",
        gzip.heads()
    );

    // The counters, read after the samples: at least one outcome per scrape written.
    let scrapes = |job: &str| up(&got, job).len() as f64;
    let outcome = |o: &str| metric_sum(&text, "kubeship_scrapes_total", &[("outcome", o)]);
    assert!(outcome("timeout") >= scrapes("hang"), "{text}");
    assert!(outcome("body_too_large") >= scrapes("stream"), "{text}");
    assert!(
        outcome("error") >= scrapes("reset") + scrapes("status"),
        "{text}"
    );
    assert!(
        outcome("ok") >= scrapes("good") + scrapes("malformed") + scrapes("gzip"),
        "{text}"
    );
    for reason in BAD_REASONS {
        let n = metric_sum(
            &text,
            "kubeship_scrape_parse_errors_total",
            &[("reason", reason)],
        );
        assert!(n >= scrapes("malformed"), "{reason}: {n}\n{text}");
    }
    let all_reasons = metric_sum(&text, "kubeship_scrape_parse_errors_total", &[]);
    let listed: f64 = BAD_REASONS
        .iter()
        .map(|r| {
            metric_sum(
                &text,
                "kubeship_scrape_parse_errors_total",
                &[("reason", r)],
            )
        })
        .sum();
    assert_eq!(all_reasons, listed, "no other parse error: {text}");
    let state = |s: &str| metric_sum(&text, "kubeship_scrape_targets", &[("state", s)]);
    assert_eq!((state("up"), state("down")), (3.0, 4.0), "{text}");

    // The 50 MB stream was cut short at every scrape: what the server could write is the
    // body limit plus what the sockets' buffers hold.
    let streams = stream.requests();
    let streamed = stream
        .seen()
        .streamed
        .load(std::sync::atomic::Ordering::SeqCst) as u64;
    eprintln!(
        "streamed {streamed} bytes in {streams} scrapes; peak RSS {} MiB",
        peak / MIB
    );
    assert!(streams >= 2, "{streams}");
    assert!(
        streamed < streams as u64 * 16 * MIB,
        "{streamed} bytes streamed in {streams} scrapes"
    );
    assert!(
        stream
            .seen()
            .streams_ended
            .load(std::sync::atomic::Ordering::SeqCst)
            >= streams - 1,
        "streams left running"
    );
    assert!(peak < 100 * MIB, "peak RSS {} MiB", peak / MIB);
    agent.stop(secs(30));
}
