//! Regression tests, each named after what broke.

use kubeship_tests::{AgentConfig, Container, FakeApi, Format, Pod, secs};

use crate::cloudwatch::{env, metric};

/// A pod annotated `kubeship.io/parser: logfmt` wrote one line whose quoted value was
/// 200,000 control bytes. Its `log_processed` alone was larger than one CloudWatch event once
/// escaped (six bytes a byte), no cut of `log` could fit the record, and the sink waited on it
/// forever: nothing more was delivered for any pod of the node, the in-flight budget stayed
/// full, SIGTERM waited out the shutdown timeout, and a restart wedged again on the same line.
#[test]
fn poison_logfmt_record_does_not_wedge_cloudwatch() {
    let env = env();
    let api = FakeApi::start("node-1");
    api.write_kubeconfig(&env.node.root().join("kubeconfig"));
    let pod = |c: &Container, parser: Option<&str>| {
        let i = c.info();
        let p = Pod::new(&i.namespace, &i.pod)
            .uid(&i.pod_uid)
            .node("node-1")
            .running_container(&i.name, "app:1");
        match parser {
            Some(kind) => p.annotation("kubeship.io/parser", kind),
            None => p,
        }
    };
    let mut web = env.container("shop", "web-0", "web", Format::Cri);
    let mut other = env.container("shop", "other-0", "other", Format::Cri);
    api.upsert_pod(&pod(&web, Some("logfmt")));
    api.upsert_pod(&pod(&other, None));

    web.write_lines(10);
    let mut poison = b"c=web seq=1000 level=info msg=\"".to_vec();
    poison.extend(std::iter::repeat_n(1u8, 200_000));
    poison.extend_from_slice(b"\" seq=x");
    let poison_time = web.info().time(1000);
    web.write_framed(&poison_time, "stdout", &poison, false);
    web.write_lines(10);
    other.write_lines(20);

    let cfg = AgentConfig {
        kubernetes: Some(vec!["kubeconfig: ./kubeconfig".into()]),
        shutdown_timeout_secs: 60,
        ..env.config()
    };
    let mut agent = env.start(&cfg);
    let mut d = kubeship_tests::CwDelivery::new(&env.moto);
    d.wait_all(&mut agent, &[("web", 20), ("other", 20)], secs(120));
    let reduced = metric(
        &agent,
        "kubeship_log_records_reduced_total",
        &[("reason", "log_processed")],
    );
    let truncated = metric(&agent, "kubeship_log_records_truncated_total", &[]);
    kubeship_tests::wait_for(
        || metric(&agent, "kubeship_inflight_bytes", &[]) == 0.0,
        secs(30),
        "every batch acknowledged (in-flight bytes back to 0)",
    );
    // A wedged sink held SIGTERM for the whole shutdown timeout (60 s here).
    let t0 = std::time::Instant::now();
    agent.stop(secs(30));
    assert!(t0.elapsed() < secs(20), "SIGTERM took {:?}", t0.elapsed());
    d.poll();
    env.assert_requests_valid();
    assert_eq!(reduced, 1.0, "the poison record was reduced, counted once");
    assert!(truncated >= 1.0, "its log was cut, counted");
    let r = d
        .records
        .iter()
        .find(|r| r.record.log.starts_with("c=web seq=1000 "))
        .expect("the poison line was delivered, reduced");
    assert!(r.message.len() <= kubeship_tests::MAX_EVENT_MESSAGE_BYTES);
    let v: serde_json::Value = serde_json::from_str(&r.message).expect("a JSON record");
    assert_eq!(
        v["kubeship_reduced"],
        "log_processed",
        "{}",
        &r.message[..200]
    );
    assert!(v.get("log_processed").is_none());
    assert!(
        v["log"]
            .as_str()
            .unwrap()
            .ends_with("…[truncated by kubeship]")
    );
    assert_eq!(v["kubernetes"]["pod_name"], "web-0");
    // The ordinary lines of the same pod still carry their parsed fields.
    let plain = d
        .records
        .iter()
        .find(|r| r.record.log.starts_with("c=web seq=11 "))
        .expect("seq 11");
    let v: serde_json::Value = serde_json::from_str(&plain.message).unwrap();
    assert_eq!(v["log_processed"]["seq"], "11");
    assert_eq!(d.tracker.total_dups(), 0);

    // A restart resumes after the poison line: nothing is sent again.
    let before = d.poll();
    let mut agent = env.start(&cfg);
    other.write_lines(1);
    d.wait_all(&mut agent, &[("other", 21)], secs(60));
    agent.stop(secs(30));
    assert_eq!(d.poll(), before + 1, "only the new line was shipped");
}
