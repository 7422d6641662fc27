//! Start-up checks that turn silent failures for ever into clear errors or counted events: a
//! CloudWatch sink without an AWS region stops the start with a bad-config exit, and a corrupt
//! checkpoint file is set aside, counted, and treated as a first start (`logs.read_from`
//! applies).

use std::fs;
use std::time::{Duration, Instant};

use kubeship_tests::{
    Agent, AgentConfig, CloudWatchOpts, Delivery, Format, Node, kubeship, run_with_timeout,
    scrub_env, secs, wait_for,
};

/// `output.cloudwatch` without `region`, and no region in the environment, the AWS profile or
/// instance metadata: `kubeship run` exits at once with code 1 and says where to set one,
/// instead of running with every PutLogEvents failing for ever while `/readyz` says 200.
#[test]
fn cloudwatch_without_a_region_is_a_config_error() {
    let node = Node::new();
    node.add_container("shop", "web-0", "web", Format::Cri)
        .write_lines(3);
    let cfg = AgentConfig {
        cloudwatch: Some(CloudWatchOpts {
            region: None,
            // Never called: nothing may be sent without a region.
            endpoint_url: Some("http://127.0.0.1:9".into()),
            ..CloudWatchOpts::default()
        }),
        ..AgentConfig::default()
    };
    let path = node.write_config(&cfg, 0);
    let empty = |name: &str| {
        let p = node.root().join(name);
        fs::write(&p, "").expect("write");
        p
    };
    let mut cmd = kubeship();
    scrub_env(&mut cmd);
    cmd.arg("run")
        .arg("--config")
        .arg(&path)
        // Credentials are there; the region is not, anywhere the SDK looks.
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", empty("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", empty("aws-credentials"));
    let t0 = Instant::now();
    let out = run_with_timeout(&mut cmd, secs(30));
    let took = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit code; stderr:\n{stderr}");
    for needle in ["output.cloudwatch.region", "AWS_REGION"] {
        assert!(
            stderr.contains(needle),
            "no `{needle}` in stderr:\n{stderr}"
        );
    }
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} to fail; stderr:\n{stderr}"
    );
    assert!(
        !node.state_dir().join("checkpoints.json").exists(),
        "it started before failing"
    );
}

/// A corrupt `checkpoints.json` with `logs.read_from: end`: the file is set aside (kept for a
/// post-mortem) and counted in `kubeship_checkpoint_load_errors_total`, and the start is a first
/// start: lines already in the files are skipped as `read_from: end` says, new lines shipped.
/// (Read from their start, they would all ship again: that is what `read_from: end` is there to
/// prevent.)
#[test]
fn corrupt_checkpoints_are_set_aside_counted_and_read_from_applies() {
    let node = Node::new();
    let mut c = node.add_container("shop", "web-0", "web", Format::Cri);
    let old = c.write_lines(10);
    let corrupt = br#"{"version":1,"files":[{"stream":"/var/log/pods/"#;
    fs::create_dir_all(node.state_dir()).expect("state dir");
    let ckpt = node.state_dir().join("checkpoints.json");
    fs::write(&ckpt, corrupt).expect("write corrupt checkpoints");
    let cfg = AgentConfig {
        read_from: "end".into(),
        ..AgentConfig::default()
    };
    let mut agent = Agent::start(&node, &cfg);
    agent.wait_ready(secs(20));
    // The file is open (at its end) before more is written.
    wait_for(
        || agent.metric("kubeship_log_files_tailed") >= Some(1.0),
        secs(20),
        "the log file open",
    );
    let new = c.write_lines(5);
    let mut d = Delivery::new(&node);
    wait_for(
        || {
            d.poll();
            let t = d.tracker.track("web");
            new.clone().all(|s| t.count_of(s) > 0)
        },
        secs(30),
        format!("lines {new:?} delivered"),
    );
    assert_eq!(
        agent.metric_or_zero("kubeship_checkpoint_load_errors_total", &[]),
        1.0
    );
    agent.stop(secs(30));
    d.poll();
    let t = d.tracker.track("web");
    let shipped_old: Vec<u64> = old.filter(|&s| t.count_of(s) > 0).collect();
    assert!(
        shipped_old.is_empty(),
        "lines written before the start shipped despite read_from: end: {shipped_old:?}"
    );
    assert_eq!(t.dups, 0, "duplicates");

    let aside: Vec<_> = fs::read_dir(node.state_dir())
        .expect("state dir")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("checkpoints.json.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "one file set aside");
    assert_eq!(
        fs::read(aside[0].path()).expect("read set-aside file"),
        corrupt,
        "the corrupt file kept as it was"
    );
    let fresh: serde_json::Value =
        serde_json::from_slice(&fs::read(&ckpt).expect("new checkpoints")).expect("valid JSON");
    assert_eq!(fresh["version"], 1, "new checkpoints written: {fresh}");
}
