//! Discovery: new containers are noticed through inotify (not only by the periodic rescan),
//! the agent never tails its own pod, and it follows links only into the pods directory.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use kubeship_tests::{Agent, AgentConfig, Delivery, Format, Node, frame, secs, time_for, wait_for};

/// With the rescan an hour away, only the inotify watch on the containers directory can make
/// the agent see a container that appears after it started.
#[test]
fn new_container_is_found_through_inotify_without_a_rescan() {
    let node = Node::new();
    let mut first = node.add_container("app", "first-0", "early", Format::Cri);
    first.write_lines(3);
    let cfg = AgentConfig {
        rescan_interval_secs: 3600,
        ..AgentConfig::default()
    };
    let mut agent = Agent::start(&node, &cfg);
    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &[("early", 3)], secs(30));

    let mut late = node.add_container("app", "late-0", "late", Format::Docker);
    late.write_lines(5);
    d.wait_all(&mut agent, &[("late", 5)], secs(30));
    agent.assert_running("after discovering the late container");
}

/// The agent's own pod (POD_NAMESPACE / POD_NAME from the downward API) is never tailed, even
/// though its log link sits in the containers directory next to the others.
#[test]
fn own_pod_is_never_tailed() {
    let node = Node::new();
    let mut own = node.add_container("kube-system", "kubeship-x7k2p", "agent", Format::Cri);
    let mut app = node.add_container("shop", "web-0", "web", Format::Cri);
    own.write_lines(20);
    app.write_lines(20);

    let mut agent = Agent::start_in_pod(
        &node,
        &AgentConfig::default(),
        "kube-system",
        "kubeship-x7k2p",
    );
    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &[("web", 20)], secs(30));
    // Lines the own pod writes later are not picked up either.
    own.write_lines(5);
    app.write_lines(5);
    d.wait_all(&mut agent, &[("web", 25)], secs(30));
    agent.sigterm();
    assert!(agent.wait_exit(secs(30)).success());
    d.poll();
    let own_records = d.tracker.track("agent").distinct;
    assert_eq!(
        own_records, 0,
        "the agent shipped {own_records} records of its own pod"
    );
}

/// A file outside the pods directory with lines the agent must never ship.
fn secret(node: &Node, name: &str) -> PathBuf {
    let path = node.root().join(name);
    let line = frame(
        Format::Cri,
        &time_for(0),
        "stdout",
        b"SECRET do not ship",
        false,
    );
    fs::write(&path, line.repeat(3)).expect("write the secret file");
    path
}

/// `kubeship_log_file_errors_total{reason="outside_pods_dir"}`.
fn refused(agent: &Agent) -> f64 {
    agent.metric_or_zero(
        "kubeship_log_file_errors_total",
        &[("reason", "outside_pods_dir")],
    )
}

/// Whether any local sink file holds `needle`.
fn sink_holds(node: &Node, needle: &str) -> bool {
    let mut found = false;
    let mut stack = vec![node.out_dir()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                found |= fs::read_to_string(&p).is_ok_and(|t| t.contains(needle));
            }
        }
    }
    found
}

/// Links in the containers directory are followed only into `logs.pods_dir`: a link to a file
/// elsewhere, one escaping through `..`, and one through a container directory that is itself
/// a link out of it are never read, and each is counted in
/// `kubeship_log_file_errors_total{reason="outside_pods_dir"}`.
#[test]
fn links_out_of_the_pods_dir_are_not_followed() {
    let node = Node::new();
    let mut app = node.add_container("shop", "web-0", "web", Format::Cri);
    app.write_lines(5);
    let outside = secret(&node, "secret.log");
    let id = "ab".repeat(32);
    let link = |name: &str, target: &Path| {
        let path = node
            .containers_dir()
            .join(format!("{name}_evil_c-{id}.log"));
        symlink(target, path).expect("symlink");
    };
    link("absolute-0", &outside);
    link("dotdot-0", Path::new("../pods/../../secret.log"));
    let elsewhere = node.root().join("elsewhere/c");
    fs::create_dir_all(&elsewhere).expect("mkdir");
    fs::copy(&outside, elsewhere.join("0.log")).expect("copy");
    let pod_dir = node.pods_dir().join("evil_linked-0_uid-1");
    fs::create_dir_all(&pod_dir).expect("mkdir");
    symlink(&elsewhere, pod_dir.join("c")).expect("symlink the container directory");
    link("linked-0", &pod_dir.join("c/0.log"));

    let mut agent = Agent::start(&node, &AgentConfig::default());
    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &[("web", 5)], secs(30));
    app.write_lines(5);
    d.wait_all(&mut agent, &[("web", 10)], secs(30));
    assert!(
        !sink_holds(&node, "SECRET"),
        "a file outside logs.pods_dir was shipped"
    );
    wait_for(
        || refused(&agent) >= 3.0,
        secs(30),
        "three refused links counted",
    );
    agent.stop(secs(30));
    assert!(!sink_holds(&node, "SECRET"), "shipped at the end");
}

/// A symlink among a container's rotated files is never followed (`O_NOFOLLOW`), wherever it
/// points: it is counted like a link out of the pods directory, and the container's own files
/// are read.
#[test]
fn a_symlinked_rotated_sibling_is_not_read() {
    let node = Node::new();
    let mut app = node.add_container("shop", "web-0", "web", Format::Cri);
    let outside = secret(&node, "secret.log");
    symlink(&outside, app.dir().join("0.log.20261123-090000")).expect("symlink");
    symlink(&outside, app.dir().join("0.log.20261123-090001.gz")).expect("symlink");
    app.write_lines(5);
    let mut agent = Agent::start(&node, &AgentConfig::default());
    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &[("web", 5)], secs(30));
    // Rotations list the directory again: still not followed.
    app.rotate();
    app.write_lines(5);
    d.wait_all(&mut agent, &[("web", 10)], secs(30));
    assert!(!sink_holds(&node, "SECRET"), "a symlinked sibling was read");
    wait_for(
        || refused(&agent) >= 2.0,
        secs(30),
        "the two symlinked siblings counted",
    );
    agent.stop(secs(30));
    assert!(!sink_holds(&node, "SECRET"), "read at the end");
}
