//! Start-up checks that turn silent failures for ever into clear errors: a CloudWatch sink
//! without an AWS region stops the start with a bad-config exit.

use std::fs;
use std::time::{Duration, Instant};

use kubeship_tests::{
    AgentConfig, CloudWatchOpts, Format, Node, kubeship, run_with_timeout, scrub_env, secs,
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
