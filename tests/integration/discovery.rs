//! Discovery: new containers are noticed through inotify (not only by the periodic rescan),
//! and the agent never tails its own pod.

use kubeship_tests::{Agent, AgentConfig, Delivery, Format, Node, secs};

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
