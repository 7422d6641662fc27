//! Self-tests of the CloudWatch test infrastructure (no agent involved): moto starts, boto3
//! round-trips through the fault proxy, the proxy's faults give the answers the AWS SDK will
//! see, and [`CwDelivery`] tracks sequenced records read back from moto.

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use kubeship_tests::{
    CwApi, CwDelivery, FaultProxy, Format, Injected, InputEvent, Moto, Node, Outage,
    TEST_AWS_REGION, boto3_put_and_dump, now_ms, secs,
};
use serde_json::json;

/// Unique-per-test group names keep failures readable.
const GROUP: &str = "/kubeship/infra";

#[test]
fn moto_starts_and_boto3_round_trips_through_the_proxy() {
    let moto = Moto::start();
    eprintln!("moto started in {:?}", moto.startup_time());
    assert!(
        moto.startup_time() < secs(20),
        "moto took {:?} to start",
        moto.startup_time()
    );
    let proxy = FaultProxy::start(moto.addr());
    let messages = ["hello", "wörld \"quoted\" ✓", "third"];
    let state = boto3_put_and_dump(&proxy.endpoint(), GROUP, "s1", &messages);

    // What boto3 reads back through the proxy.
    let stream = state
        .stream(GROUP, "s1")
        .unwrap_or_else(|| panic!("stream missing after the round trip:\n{}", state.summary()));
    let got: Vec<&str> = stream.events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(got, messages);
    let ts: Vec<i64> = stream.events.iter().map(|e| e.timestamp).collect();
    assert!(ts.windows(2).all(|w| w[1] == w[0] + 1), "timestamps {ts:?}");
    assert!((ts[0] - now_ms()).abs() < 120_000, "timestamps are now-ish");

    // What the proxy saw: every call, relayed with moto's status.
    let ops: Vec<String> = proxy
        .exchanges()
        .iter()
        .map(|e| format!("{} {}", e.operation(), e.status))
        .collect();
    for want in [
        "CreateLogGroup 200",
        "CreateLogStream 200",
        "PutLogEvents 200",
        "DescribeLogGroups 200",
        "DescribeLogStreams 200",
        "GetLogEvents 200",
    ] {
        assert!(ops.iter().any(|o| o == want), "{want} not in {ops:?}");
    }
    let puts = proxy.put_log_events();
    assert_eq!(puts.len(), 1, "{ops:?}");
    let put = puts[0].put.as_ref().expect("PutLogEvents body parses");
    assert_eq!((put.group.as_str(), put.stream.as_str()), (GROUP, "s1"));
    let sent: Vec<&str> = put.events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(sent, messages);
    assert_eq!(proxy.check_put_log_events(), Ok(1));
    let exchanges = proxy.exchanges();
    assert!(
        exchanges.len() > exchanges.iter().map(|e| e.conn).max().unwrap_or(0) as usize + 1,
        "boto3 should reuse a kept-alive connection: {} exchanges on connections {:?}",
        exchanges.len(),
        exchanges.iter().map(|e| e.conn).collect::<Vec<_>>()
    );

    // The direct (Rust) reader and boto3 agree on moto's state.
    let direct = moto.api().snapshot(None).expect("snapshot");
    assert_eq!(direct, moto.dump());
    assert_eq!(direct, state);
}

#[test]
fn proxy_throttles_and_fails_put_log_events_on_demand() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.addr());
    let api = CwApi::new(proxy.addr(), TEST_AWS_REGION);
    api.create_group(GROUP).expect("create group");
    proxy.throttle_next(2);
    proxy.unavailable_next(1);
    // Other operations are not affected by PutLogEvents faults.
    api.create_stream(GROUP, "s").expect("create stream");
    let ev = [InputEvent::new(now_ms(), "m")];

    for _ in 0..2 {
        let e = api.put(GROUP, "s", &ev).expect_err("throttled");
        assert_eq!(
            (e.status, e.kind.as_str()),
            (400, "ThrottlingException"),
            "{e}"
        );
        assert_eq!(e.message, "Rate exceeded");
    }
    let e = api.put(GROUP, "s", &ev).expect_err("unavailable");
    assert_eq!(
        (e.status, e.kind.as_str()),
        (503, "ServiceUnavailableException"),
        "{e}"
    );
    api.put(GROUP, "s", &ev).expect("faults used up: forwarded");
    let f = proxy.faults();
    assert_eq!((f.throttle_next, f.unavailable_next), (0, 0));

    let puts = proxy.put_log_events();
    let outcomes: Vec<(u16, Option<Injected>)> = puts
        .iter()
        .map(|p| (p.exchange.status, p.exchange.injected))
        .collect();
    assert_eq!(
        outcomes,
        [
            (400, Some(Injected::Throttled)),
            (400, Some(Injected::Throttled)),
            (503, Some(Injected::Unavailable)),
            (200, None),
        ]
    );
    assert_eq!(
        moto.api().events(GROUP, "s").expect("events").len(),
        1,
        "injected failures never reach moto"
    );

    // The wire format the AWS SDK classifies: status, x-amzn-ErrorType, awsJson body.
    let raw = raw_exchange(
        &proxy,
        &[
            put_request(&proxy, "s", false),
            put_request(&proxy, "s", true),
        ],
        true,
    );
    assert!(raw.is_empty(), "no faults armed: {raw:?}");
    proxy.throttle_next(1);
    let resp = raw_exchange(&proxy, &[put_request(&proxy, "s", false)], false);
    assert!(resp[0].starts_with("HTTP/1.1 400 "), "{resp:?}");
    let lower = resp[0].to_ascii_lowercase();
    assert!(
        lower.contains("x-amzn-errortype: throttlingexception\r\n"),
        "{resp:?}"
    );
    assert!(
        lower.contains("content-type: application/x-amz-json-1.1\r\n"),
        "{resp:?}"
    );
    let body = resp[0].split("\r\n\r\n").nth(1).expect("body");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(body).expect("json"),
        json!({"__type": "ThrottlingException", "message": "Rate exceeded"})
    );
}

#[test]
fn proxy_outages_and_delay() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.addr());
    let api = CwApi::new(proxy.addr(), TEST_AWS_REGION);
    api.create_group(GROUP).expect("create group");

    proxy.start_outage(Outage::Unavailable);
    for _ in 0..3 {
        let e = api.describe_groups(None).expect_err("outage");
        assert_eq!(
            (e.status, e.kind.as_str()),
            (503, "ServiceUnavailableException")
        );
    }
    proxy.start_outage(Outage::Reset);
    let e = api.describe_groups(None).expect_err("reset");
    assert_eq!(e.status, 0, "transport error, got {e}");
    // A raw client sees the reset itself.
    let mut s = TcpStream::connect(proxy.addr()).expect("connect");
    s.set_read_timeout(Some(secs(10))).expect("timeout");
    s.write_all(&put_request(&proxy, "s", false))
        .expect("write request");
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!("expected a reset, read {n} bytes"),
    }
    proxy.end_outage();
    api.describe_groups(None).expect("outage over");
    let resets = proxy.count(|e| e.injected == Some(Injected::Reset));
    let outage503 = proxy.count(|e| e.injected == Some(Injected::Outage) && e.status == 503);
    assert_eq!((outage503, resets), (3, 2), "{}", proxy.summary());

    proxy.set_delay(Duration::from_millis(400));
    let t = Instant::now();
    api.describe_groups(None).expect("delayed");
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    let last = proxy.exchanges().pop().expect("recorded");
    assert_eq!(last.delayed, Duration::from_millis(400));
    assert_eq!(last.status, 200);
    proxy.pass_through();
    assert!(proxy.faults().delay.is_zero());
}

#[test]
fn moto_process_is_gone_after_drop() {
    let mut moto = Moto::start();
    assert!(moto.is_running());
    let addr = moto.addr();
    drop(moto);
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "moto still listening on {addr} after drop"
    );
}

#[test]
fn cw_delivery_tracks_sequenced_records() {
    let moto = Moto::start();
    let api = moto.api();
    let node = Node::new();
    let mut c = node.add_container("ns", "pod", "app", Format::Cri);
    c.set_time_base_ms(Some(now_ms() - 3_600_000));
    let info = c.info().clone();
    // The record as the agent writes it (key order matters: json! would sort the keys).
    let q = |s: &str| serde_json::to_string(s).expect("json string");
    let record = |seq: u64| {
        format!(
            "{{\"log\":{},\"stream\":{},\"time\":{},\"kubernetes\":{{\"pod_name\":{},\
             \"namespace_name\":{},\"pod_id\":{},\"host\":\"node-1\",\"container_name\":{},\
             \"docker_id\":{}}}}}",
            q(&info.message(seq)),
            q(info.stream(seq)),
            q(&info.time(seq)),
            q(&info.pod),
            q(&info.namespace),
            q(&info.pod_uid),
            q(&info.name),
            q(&info.container_id)
        )
    };
    api.create_group("/g").expect("group");
    api.create_stream("/g", "s").expect("stream");
    // Seqs 0..10 except 4, and 7 twice.
    let seqs = [0u64, 1, 2, 3, 5, 6, 7, 7, 8, 9];
    let events: Vec<InputEvent> = seqs
        .iter()
        .map(|&s| InputEvent::new(info.timestamp_ms(s), record(s)))
        .collect();
    let answer = api.put("/g", "s", &events).expect("put");
    assert!(answer.get("rejectedLogEventsInfo").is_none(), "{answer}");
    api.put(
        "/g",
        "s",
        &[InputEvent::new(info.timestamp_ms(9), "not a record")],
    )
    .expect("put");

    let mut d = CwDelivery::new(&moto);
    assert_eq!(d.poll(), 11);
    assert!(!d.has_all(&[("app", 10)]));
    assert!(d.has_all(&[("app", 4)]));
    assert_eq!(
        d.describe_missing(&[("app", 10)]).trim(),
        "app: 1 of 10 missing: 4"
    );
    assert_eq!(d.tracker.total_dups(), 1);
    assert_eq!(d.bad.len(), 1);
    assert_eq!(d.records_of("app").count(), 10);
    for r in d.records_of("app") {
        let seq = kubeship_tests::parse_seq(&r.record.log).expect("seq").1;
        info.check(&r.record, seq, "node-1").expect("record");
        r.check_timestamp().expect("timestamp");
        kubeship_tests::check_record_shape(&r.message).expect("shape");
    }
    // Old events are rejected by moto, as by CloudWatch: the reason for time bases.
    let old = api
        .put(
            "/g",
            "s",
            &[InputEvent::new(now_ms() - 15 * 86_400_000, "old")],
        )
        .expect("put");
    assert!(old.get("rejectedLogEventsInfo").is_some(), "{old}");
}

/// A raw PutLogEvents request for the proxy (optionally chunked with `Expect: 100-continue`).
fn put_request(proxy: &FaultProxy, stream: &str, chunked: bool) -> Vec<u8> {
    let body = json!({"logGroupName": GROUP, "logStreamName": stream,
        "logEvents": [{"timestamp": now_ms(), "message": "raw"}]})
    .to_string();
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-amz-json-1.1\r\n\
         X-Amz-Target: Logs_20140328.PutLogEvents\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20261123/us-east-1/logs/aws4_request, SignedHeaders=host, Signature=00\r\n",
        proxy.addr()
    )
    .into_bytes();
    if chunked {
        req.extend_from_slice(b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n");
        let (a, b) = body.split_at(body.len() / 2);
        for part in [a, b] {
            req.extend_from_slice(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes());
        }
        req.extend_from_slice(b"0\r\n\r\n");
    } else {
        req.extend_from_slice(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    }
    req
}

/// Sends `requests` on one kept-alive connection; returns the non-200 responses (head and
/// body, `100 Continue` skipped) — or, with `only_failures == false`, every response.
fn raw_exchange(proxy: &FaultProxy, requests: &[Vec<u8>], only_failures: bool) -> Vec<String> {
    let s = TcpStream::connect(proxy.addr()).expect("connect");
    s.set_read_timeout(Some(secs(10))).expect("timeout");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut out = Vec::new();
    for req in requests {
        (&s).write_all(req).expect("write");
        let (head, body) = loop {
            let mut head = String::new();
            loop {
                let mut line = String::new();
                std::io::BufRead::read_line(&mut r, &mut line).expect("read");
                assert!(!line.is_empty(), "connection closed; keep-alive expected");
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            if head.starts_with("HTTP/1.1 100 ") {
                continue;
            }
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("Content-Length");
            let mut body = vec![0; len];
            r.read_exact(&mut body).expect("body");
            break (head, String::from_utf8(body).expect("utf8"));
        };
        if !(only_failures && head.starts_with("HTTP/1.1 200 ")) {
            out.push(format!("{head}{body}"));
        }
    }
    out
}
