//! The metrics pipeline's sending half, end to end: `kubeship push-samples` (the same
//! queues, senders and self-metrics as the agent) against real Prometheus as the receiver,
//! and against a scripted loopback receiver for faults (5xx windows, 429 with Retry-After,
//! 400, a receiver down past the pending bound, a hanging receiver), authentication
//! (basic, bearer, SigV4 checked against botocore) and the local sink.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kubeship_tests::*;

const SAMPLES: &str = "kubeship_remote_write_samples_total";
const REQUESTS: &str = "kubeship_remote_write_requests_total";
const PENDING: &str = "kubeship_remote_write_pending_samples";

/// `metrics:` with one endpoint called `rw` at `url`, and `extra` settings.
fn endpoint(url: &str, extra: &[&str]) -> String {
    let mut y = format!("  remote_write:\n    - url: {url:?}\n      name: rw\n");
    for l in extra {
        y.push_str(&format!("      {l}\n"));
    }
    y
}

fn sent(p: &Pusher) -> f64 {
    p.metric(SAMPLES, &[("outcome", "sent")])
}

fn requests(p: &Pusher, outcome: &str) -> f64 {
    p.metric(REQUESTS, &[("outcome", outcome)])
}

/// A round of samples: series `name{i="0".."n"}` at `t`, value `t/1000 + i`.
fn round(name: &str, n: usize, t: i64) -> Vec<String> {
    (0..n)
        .map(|i| {
            let i = i.to_string();
            sample_line(
                &[("__name__", name), ("i", &i)],
                t,
                (t / 1000) as f64 + i.parse::<f64>().unwrap_or(0.0),
            )
        })
        .collect()
}

/// Every accepted sample as (series, timestamp), in the order received; panics on a
/// series whose timestamps do not increase from one accepted sample to the next.
fn accepted_in_order(server: &RwServer) -> Vec<(String, i64)> {
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    let mut out = Vec::new();
    for req in server.accepted() {
        for ts in &req.timeseries {
            let key = ts.key();
            for s in &ts.samples {
                if let Some(prev) = last.get(&key) {
                    assert!(
                        s.timestamp > *prev,
                        "{key}: {} after {prev}: out of order or sent twice",
                        s.timestamp
                    );
                }
                last.insert(key.clone(), s.timestamp);
                out.push((key.clone(), s.timestamp));
            }
        }
    }
    out
}

/// A value as Prometheus's API writes it, read back (NaN compares equal to NaN).
fn prom_value(text: &str) -> Result<u64, String> {
    let v = match text {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        t => t.parse::<f64>().map_err(|e| format!("{t}: {e}"))?,
    };
    Ok(if v.is_nan() {
        f64::NAN.to_bits()
    } else {
        v.to_bits()
    })
}

#[test]
fn prometheus_gets_exact_labels_values_and_timestamps() {
    let prom = Prometheus::start();
    let mut p = Pusher::start(
        &endpoint(
            &prom.write_url(),
            &[
                "shards: 4",
                "max_samples_per_send: 100",
                "batch_send_deadline_secs: 1",
            ],
        ),
        &[],
    );
    // Three scrapes, 15 s apart, ten minutes ago (whole seconds plus milliseconds).
    let t0 = (now_ms() / 1000 - 600) * 1000 + 123;
    let times = [t0, t0 + 15_000, t0 + 30_000];
    let mut want: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
    let mut pushed = 0;
    for (r, &t) in times.iter().enumerate() {
        let r = r as f64;
        let mut lines = Vec::new();
        let mut add = |labels: &[(&str, &str)], v: f64| {
            lines.push(sample_line(labels, t, v));
            if v.to_bits() != STALE_NAN_BITS {
                let mut sorted: Vec<String> =
                    labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                sorted.sort();
                want.entry(sorted.join(",")).or_default().push((
                    t,
                    if v.is_nan() {
                        f64::NAN.to_bits()
                    } else {
                        v.to_bits()
                    },
                ));
            }
        };
        // A histogram.
        for (le, v) in [("0.1", 2.0), ("0.5", 5.0), ("+Inf", 7.0)] {
            add(
                &[
                    ("__name__", "req_seconds_bucket"),
                    ("job", "api"),
                    ("le", le),
                ],
                v + r,
            );
        }
        add(&[("__name__", "req_seconds_sum"), ("job", "api")], 1.25 + r);
        add(
            &[("__name__", "req_seconds_count"), ("job", "api")],
            7.0 + r,
        );
        // A summary.
        for (q, v) in [("0.5", 0.002), ("0.99", 0.75)] {
            add(
                &[("__name__", "rpc_seconds"), ("job", "api"), ("quantile", q)],
                v,
            );
        }
        add(&[("__name__", "rpc_seconds_sum"), ("job", "api")], 3.5 + r);
        add(
            &[("__name__", "rpc_seconds_count"), ("job", "api")],
            10.0 + r,
        );
        // Special values.
        add(&[("__name__", "special"), ("kind", "nan")], f64::NAN);
        add(&[("__name__", "special"), ("kind", "pinf")], f64::INFINITY);
        add(
            &[("__name__", "special"), ("kind", "ninf")],
            f64::NEG_INFINITY,
        );
        add(&[("__name__", "special"), ("kind", "neg")], -1e-9);
        // A series that goes away: a staleness marker in the last scrape.
        let gone = if r < 2.0 {
            42.0 + r
        } else {
            f64::from_bits(STALE_NAN_BITS)
        };
        add(&[("__name__", "gone"), ("pod", "web-1")], gone);
        // Many series, across the shards.
        for i in 0..400 {
            let i = i.to_string();
            add(
                &[("__name__", "many"), ("i", &i), ("job", "api")],
                r * 1000.0 + i.parse::<f64>().unwrap(),
            );
        }
        pushed += lines.len();
        p.push(&lines);
    }
    p.wait_metrics("every sample sent", secs(60), |p| sent(p) == pushed as f64);
    let at = |t: i64| t as f64 / 1000.0;
    let end = at(times[2]) + 1.0;
    let got = prom.raw_samples(
        r#"{__name__=~"req_seconds.*|rpc_seconds.*|special|gone|many"}"#,
        120,
        end,
    );
    assert_eq!(
        got.len(),
        want.len(),
        "series: {:?}",
        got.keys().collect::<Vec<_>>()
    );
    for (series, samples) in &want {
        let values: Option<Vec<(i64, u64)>> = got.get(series).map(|v| {
            v.iter()
                .map(|(t, text)| (*t, prom_value(text).unwrap()))
                .collect()
        });
        assert_eq!(
            values.as_ref(),
            Some(samples),
            "{series}: {:?}",
            got.get(series)
        );
    }
    // The staleness marker ends the series: gone at the last scrape, there before.
    assert!(
        prom.query("gone", end).is_empty(),
        "a stale series answers nothing"
    );
    let before = prom.query("gone", at(times[1]) + 1.0);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0]["value"][1], "43");
    assert_eq!(prom.query("count(many)", end)[0]["value"][1], "400");
    let f = p.finish(secs(30));
    assert!(f.status.success(), "{f:?}");
    assert!(
        f.stdout
            .contains(&format!("endpoint rw: sent {pushed}, failed 0, dropped 0")),
        "{}",
        f.stdout
    );
}

#[test]
fn a_5xx_window_backs_off_and_loses_nothing_keeping_each_series_in_order() {
    let failing = Arc::new(AtomicBool::new(true));
    let f = failing.clone();
    let server = RwServer::start(move |_, _| {
        if f.load(Ordering::SeqCst) {
            Act::status(503)
        } else {
            Act::ok()
        }
    });
    let mut p = Pusher::start(
        &endpoint(
            &server.url(),
            &[
                "shards: 4",
                "max_samples_per_send: 50",
                "batch_send_deadline_secs: 1",
            ],
        ),
        &[],
    );
    let t0 = now_ms() - 60_000;
    for r in 0..10 {
        p.push(&round("m", 40, t0 + r * 1000));
    }
    p.wait_metrics("seven 503s", secs(60), |p| {
        requests(p, "retried_5xx") >= 7.0
    });
    failing.store(false, Ordering::SeqCst);
    p.wait_metrics("all 400 sent", secs(60), |p| {
        sent(p) == 400.0 && p.metric(PENDING, &[]) == 0.0
    });
    let got = accepted_in_order(&server);
    let unique: BTreeSet<&(String, i64)> = got.iter().collect();
    assert_eq!((got.len(), unique.len()), (400, 400), "each sample once");
    // The pause: after the first failures (one per shard at most), one probe at a time,
    // each after a backoff of at least half the first step.
    let failed: Vec<_> = server
        .received()
        .into_iter()
        .filter(|r| r.act == Act::status(503))
        .collect();
    assert_eq!(failed.len() as f64, requests(&p, "retried_5xx"));
    let gaps: Vec<Duration> = failed.windows(2).map(|w| w[1].at - w[0].at).collect();
    for (i, gap) in gaps.iter().enumerate().skip(4) {
        assert!(
            *gap >= Duration::from_millis(120),
            "probe {i} came {gap:?} after the previous failure: {gaps:?}"
        );
    }
    let longest = gaps.iter().max().copied().unwrap_or_default();
    assert!(
        longest >= Duration::from_millis(400),
        "the pause grows: {gaps:?}"
    );
    assert!(p.finish(secs(30)).status.success());
}

#[test]
fn a_429_waits_for_its_retry_after() {
    let server = RwServer::start(|n, _| {
        if n == 0 {
            Act::Answer(429, vec![("Retry-After".into(), "2".into())])
        } else {
            Act::ok()
        }
    });
    let mut p = Pusher::start(
        &endpoint(&server.url(), &["shards: 1", "batch_send_deadline_secs: 1"]),
        &[],
    );
    p.push(&round("m", 10, now_ms() - 1000));
    p.wait_metrics("10 sent", secs(30), |p| sent(p) == 10.0);
    let r = server.received();
    assert_eq!(r.len(), 2, "throttled once, then accepted");
    assert!(
        r[1].at - r[0].at >= Duration::from_secs(2),
        "retried after {:?}",
        r[1].at - r[0].at
    );
    assert_eq!(r[0].body, r[1].body, "the same request again");
    assert_eq!(requests(&p, "retried_429"), 1.0);
    assert_eq!(p.metric(SAMPLES, &[("outcome", "dropped")]), 0.0);
    assert!(p.finish(secs(30)).status.success());
}

#[test]
fn a_400_is_counted_failed_and_never_sent_again() {
    let server = RwServer::start(|n, _| if n == 0 { Act::status(400) } else { Act::ok() });
    let mut p = Pusher::start(
        &endpoint(&server.url(), &["shards: 1", "batch_send_deadline_secs: 1"]),
        &[],
    );
    let t = now_ms() - 1000;
    p.push(&round("refused", 30, t));
    p.wait_metrics("30 failed", secs(30), |p| {
        p.metric(SAMPLES, &[("outcome", "failed")]) == 30.0
    });
    p.push(&round("later", 20, t));
    p.wait_metrics("20 sent", secs(30), |p| sent(p) == 20.0);
    assert_eq!(server.count(), 2, "the refused request was not sent again");
    assert_eq!(requests(&p, "rejected_4xx"), 1.0);
    assert_eq!(requests(&p, "ok"), 1.0);
    let got = accepted_in_order(&server);
    assert!(got.iter().all(|(k, _)| k.contains("later")), "{got:?}");
    let f = p.finish(secs(30));
    assert_eq!(
        f.status.code(),
        Some(3),
        "not everything was delivered: {f:?}"
    );
    assert!(
        f.stdout.contains("sent 20, failed 30, dropped 0"),
        "{}",
        f.stdout
    );
    assert!(f.stderr.contains("request refused"), "{}", f.stderr);
}

#[test]
fn a_receiver_down_past_the_bound_costs_the_oldest_samples_counted() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    let mut p = Pusher::start(
        &endpoint(
            &url,
            &[
                "shards: 1",
                "max_samples_per_send: 500",
                "max_pending_samples: 2000",
                "batch_send_deadline_secs: 1",
            ],
        ),
        &[],
    );
    let t0 = now_ms() - 60_000;
    // The first round fills a request, which is sent (and fails) before the rest arrive.
    p.push(&round("m", 500, t0));
    p.wait_metrics("a failed request", secs(30), |p| {
        requests(p, "error") >= 1.0
    });
    for r in 1..10 {
        p.push(&round("m", 500, t0 + r * 1000));
    }
    p.wait_metrics("3000 dropped", secs(30), |p| {
        p.metric(SAMPLES, &[("outcome", "dropped")]) == 3000.0
    });
    assert_eq!(p.metric(PENDING, &[]), 2000.0, "held at the bound");
    let server = RwServer::start_on_port(port, |_, _| Act::ok());
    p.wait_metrics("2000 sent", secs(60), |p| {
        sent(p) == 2000.0 && p.metric(PENDING, &[]) == 0.0
    });
    // What was in flight, then the newest that fitted.
    let times: BTreeSet<i64> = accepted_in_order(&server).iter().map(|(_, t)| *t).collect();
    let want: BTreeSet<i64> = [0, 7, 8, 9].iter().map(|r| t0 + r * 1000).collect();
    assert_eq!(times, want);
    assert_eq!(accepted_in_order(&server).len(), 2000);
    let f = p.finish(secs(30));
    assert!(
        f.stdout.contains("sent 2000, failed 0, dropped 3000"),
        "{}",
        f.stdout
    );
}

#[test]
fn memory_stays_bounded_while_samples_are_dropped() {
    let url = format!("http://127.0.0.1:{}/api/v1/write", free_port());
    let mut p = Pusher::start_with(&endpoint(&url, &["max_pending_samples: 50000"]), &[], 1);
    let t0 = now_ms() - 3_600_000;
    let mut pushed = 0;
    let mut push_rounds = |p: &mut Pusher, rounds: std::ops::Range<i64>| {
        for r in rounds {
            p.push(&round("m", 1000, t0 + r * 1000));
            pushed += 1000;
        }
    };
    // Enough for every shard to reach its share of the bound. Whole chunks are
    // dropped (a push's samples for a shard, ~250 here): a shard may hold up to one
    // chunk less than its share.
    let near_bound = |p: &Pusher, pushed: f64| {
        let (pending, dropped) = (
            p.metric(PENDING, &[]),
            p.metric(SAMPLES, &[("outcome", "dropped")]),
        );
        pending + dropped == pushed && (49_000.0..=50_000.0).contains(&pending)
    };
    push_rounds(&mut p, 0..100);
    p.wait_metrics("the bound reached", secs(120), |p| near_bound(p, 100_000.0));
    let full = p.rss_bytes();
    push_rounds(&mut p, 100..200);
    p.wait_metrics("the rest dropped", secs(120), |p| near_bound(p, 200_000.0));
    assert_eq!(pushed, 200_000);
    let after = p.rss_bytes();
    eprintln!(
        "RSS with ~50,000 pending: {full} bytes; after 100,000 more pushed and dropped: {after}"
    );
    assert!(
        after <= full + (4 << 20),
        "RSS grew from {full} to {after} bytes while only dropping"
    );
    assert!(after < 64 << 20, "RSS {after} bytes");
    // Shutdown within its 1 s deadline: what is held is counted as dropped.
    let f = p.finish(secs(30));
    assert!(
        f.stdout.contains("sent 0, failed 0, dropped 200000"),
        "{}",
        f.stdout
    );
}

#[test]
fn a_hanging_receiver_times_out_and_is_retried() {
    let server = RwServer::start(|n, _| {
        if n == 0 {
            Act::Hang(Duration::from_secs(10))
        } else {
            Act::ok()
        }
    });
    let mut p = Pusher::start(
        &endpoint(
            &server.url(),
            &[
                "shards: 1",
                "batch_send_deadline_secs: 1",
                "request_timeout_secs: 1",
            ],
        ),
        &[],
    );
    p.push(&round("m", 10, now_ms() - 1000));
    p.wait_metrics("10 sent", secs(30), |p| sent(p) == 10.0);
    let r = server.received();
    assert_eq!(r.len(), 2);
    assert!(
        r[1].at - r[0].at >= Duration::from_secs(1),
        "{:?}",
        r[1].at - r[0].at
    );
    assert_eq!(requests(&p, "error"), 1.0);
    assert_eq!(p.metric(SAMPLES, &[("outcome", "failed")]), 0.0);
    let f = p.finish(secs(30));
    assert!(f.stderr.contains("no answer within 1s"), "{}", f.stderr);
}
