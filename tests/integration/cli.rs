//! Command-line surface: `--version`, `validate` exit codes and diagnostics, env expansion.

use std::fs;

use kubeship_tests::{
    AgentConfig, Format, Node, Sink, kubeship, parse_diagnostics, run_with_timeout, secs,
};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn version_prints_name_and_version() {
    let out = run_with_timeout(kubeship().arg("--version"), secs(10));
    assert!(out.status.success(), "--version exited with {}", out.status);
    assert_eq!(
        text(&out.stdout).trim(),
        format!("kubeship {}", env!("CARGO_PKG_VERSION")),
        "--version output"
    );
}

#[test]
fn validate_accepts_a_valid_config() {
    let node = Node::new();
    let cfg = AgentConfig {
        multiline: vec![
            r#"{namespace: "shop", pod: "checkout-*", container: "app", rule: java}"#.into(),
            r#"{container: "worker", rule: python}"#.into(),
            r#"{container: "mine", rule: mine}"#.into(),
        ],
        multiline_rules: vec![r#"{name: mine, start_pattern: '^\d{4}-\d{2}-\d{2}'}"#.into()],
        ..AgentConfig::default()
    };
    let path = node.write_config(&cfg, 0);
    let out = run_with_timeout(
        kubeship().arg("validate").arg("--config").arg(&path),
        secs(10),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "validate of a valid config; stderr:\n{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).lines().any(|l| l.trim() == "config ok"),
        "stdout should say `config ok`, got {:?}",
        text(&out.stdout)
    );
}

#[test]
fn validate_reports_a_type_error_with_position_and_exit_1() {
    let node = Node::new();
    let path = node.root().join("bad.yaml");
    fs::write(
        &path,
        "cluster: demo\nnode_name: node-1\npipeline:\n  batch_max_records: lots\n",
    )
    .expect("write config");
    let out = run_with_timeout(
        kubeship().arg("validate").arg("--config").arg(&path),
        secs(10),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit code; stderr:\n{stderr}");
    assert!(
        !text(&out.stdout).contains("config ok"),
        "must not say config ok"
    );
    let diags = parse_diagnostics(&stderr);
    let d = diags
        .iter()
        .find(|d| d.key == "pipeline.batch_max_records")
        .unwrap_or_else(|| {
            panic!("no `FILE:LINE:COL: pipeline.batch_max_records: ...` line in stderr:\n{stderr}")
        });
    assert_eq!(d.line, 4, "line of the bad value: {d}");
    assert!(d.col >= 1, "column is 1-based: {d}");
    assert!(d.file.ends_with("bad.yaml"), "file name in {d}");
}

#[test]
fn validate_missing_file_fails() {
    let node = Node::new();
    let out = run_with_timeout(
        kubeship()
            .arg("validate")
            .arg("--config")
            .arg(node.root().join("nope.yaml")),
        secs(10),
    );
    assert!(
        !out.status.success(),
        "validate of a missing file succeeded"
    );
    assert!(
        text(&out.stderr).contains("nope.yaml"),
        "the error names the file; stderr:\n{}",
        text(&out.stderr)
    );
}

#[test]
fn unknown_subcommand_fails() {
    let out = run_with_timeout(kubeship().arg("frobnicate"), secs(10));
    assert!(!out.status.success(), "unknown subcommand succeeded");
    assert!(!out.stderr.is_empty(), "unknown subcommand prints an error");
}

/// `${VAR}` and `${VAR:-default}` are expanded; relative paths resolve against the config
/// file's directory (the agent runs with a different working directory); the sink path is
/// `<dir>/<group without leading '/'>/<stream>.jsonl`; `--exit-on-eof` exits 0 after delivery.
#[test]
fn env_expansion_relative_paths_and_exit_on_eof() {
    let node = Node::new();
    let mut c = node.add_container("shop", "cart-1", "app", Format::Cri);
    c.write_lines(20);
    let yaml = "\
cluster: ${KUBESHIP_TEST_CLUSTER}
node_name: ${KUBESHIP_TEST_UNSET_NODE:-node-from-default}
state_dir: ./state
logs:
  containers_dir: ./logs/containers
  poll_interval_ms: 50
  eof_flush_ms: 200
output:
  group: \"/aws/containerinsights/{cluster}/application\"
  stream: \"{pod}_{namespace}_{container}\"
  local: {dir: ./out}
telemetry: {listen_addr: \"127.0.0.1:0\", log_format: json, log_level: info}
";
    let path = node.root().join("kubeship.yaml");
    fs::write(&path, yaml).expect("write config");
    let cwd = tempfile::tempdir().expect("cwd");
    let mut cmd = kubeship();
    cmd.current_dir(cwd.path())
        .env("KUBESHIP_TEST_CLUSTER", "from-env")
        .env_remove("KUBESHIP_TEST_UNSET_NODE")
        .args(["run", "--exit-on-eof", "--config"])
        .arg(&path);
    let out = run_with_timeout(&mut cmd, secs(60));
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "run --exit-on-eof: {}; stderr:\n{stderr}",
        out.status
    );
    let file = node
        .out_dir()
        .join("aws/containerinsights/from-env/application/cart-1_shop_app.jsonl");
    assert!(
        file.is_file(),
        "expected sink file {}; found: {:?}",
        file.display(),
        Sink::new(node.out_dir()).files().collect::<Vec<_>>()
    );
    let mut sink = Sink::new(node.out_dir());
    sink.poll();
    let recs: Vec<_> = sink.file_records(&file).to_vec();
    assert_eq!(recs.len(), 20, "all 20 lines delivered");
    for (seq, r) in recs.iter().enumerate() {
        c.info()
            .check(r, seq as u64, "node-from-default")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(
        node.state_dir().is_dir(),
        "state_dir resolved relative to the config"
    );
    assert!(
        fs::read_dir(cwd.path()).expect("cwd").next().is_none(),
        "nothing written into the working directory"
    );
    // The same run again resumes from checkpoints: nothing new is delivered.
    let out = run_with_timeout(&mut cmd, secs(60));
    assert!(
        out.status.success(),
        "second run: {}; stderr:\n{}",
        out.status,
        text(&out.stderr)
    );
    let mut again = Sink::new(node.out_dir());
    again.poll();
    assert_eq!(
        again.total(),
        20,
        "a second --exit-on-eof run must not re-deliver checkpointed lines"
    );
}
