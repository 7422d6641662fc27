//! What the agent does with the files it finds: which file is which (inode and content), read
//! errors, truncation, and links it must not follow.

use kubeship_tests::{Agent, AgentConfig, Container, Delivery, Format, Node, secs, time_for};

/// A line longer than the 256 bytes a fingerprint covers, the same in every file: with docker
/// json-file the varying `time` comes last, so files starting with it share their first 300
/// bytes (for CRI the test writes it with the same time).
fn banner() -> String {
    format!("BANNER {}", "the same long first line ".repeat(16))
}

fn write_banner(c: &mut Container) {
    c.write_framed(&time_for(1_000_000), "stdout", banner().as_bytes(), false);
}

fn banners(d: &Delivery, name: &str) -> usize {
    d.sink
        .records_of(name)
        .filter(|r| r.log.starts_with("BANNER "))
        .count()
}

/// Two files of one container whose first 300 bytes agree (a rotation by rename, the new live
/// file starting with the line the old one started with) are two files: every line of both is
/// delivered, once. The agent reads through the rotation.
#[test]
fn rotated_and_new_file_with_the_same_head_are_both_read() {
    let node = Node::new();
    let mut cs = [
        node.add_container("ns", "same-docker", "docker", Format::Docker),
        node.add_container("ns", "same-cri", "cri", Format::Cri),
    ];
    for c in &mut cs {
        write_banner(c);
        c.write_lines(5);
    }
    let mut agent = Agent::start(&node, &AgentConfig::default());
    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &[("docker", 5), ("cri", 5)], secs(30));
    for c in &mut cs {
        c.rotate();
        write_banner(c);
        c.write_lines(8);
    }
    d.wait_all(&mut agent, &[("docker", 13), ("cri", 13)], secs(30));
    agent.stop(secs(30));
    d.poll();
    for c in &cs {
        assert_eq!(
            banners(&d, c.name()),
            2,
            "{}: one banner per file",
            c.name()
        );
    }
    assert_eq!(d.tracker.total_dups(), 0, "no duplicates");
}

/// The same across a clean restart with the checkpoint on disk, the old file written to and
/// rotated while the agent is down: the rotated file resumes from its own entry (same inode,
/// not taken for a copy of the new live file), the new live file starts at its beginning
/// rather than at the rotated file's offset, and it is not taken for a copy of the rotated one.
#[test]
fn same_head_files_across_a_restart_resume_from_their_own_checkpoints() {
    let node = Node::new();
    let mut cs = [
        node.add_container("ns", "restart-docker", "docker", Format::Docker),
        node.add_container("ns", "restart-cri", "cri", Format::Cri),
    ];
    for c in &mut cs {
        write_banner(c);
        c.write_lines(5);
    }
    let cfg = AgentConfig::default();
    let mut agent = Agent::start(&node, &cfg);
    let mut d = Delivery::new(&node);
    d.wait_all(&mut agent, &[("docker", 5), ("cri", 5)], secs(30));
    agent.stop(secs(30));
    for c in &mut cs {
        // Lines the rotated file gets while the agent is down.
        c.write_lines(4);
        c.rotate();
        write_banner(c);
        // Longer than the rotated file: its checkpoint offset lies inside this one.
        c.write_lines(12);
    }
    let mut agent = Agent::start(&node, &cfg);
    d.wait_all(&mut agent, &[("docker", 21), ("cri", 21)], secs(30));
    for c in &mut cs {
        c.write_lines(3);
    }
    d.wait_all(&mut agent, &[("docker", 24), ("cri", 24)], secs(30));
    agent.stop(secs(30));
    d.poll();
    for c in &cs {
        assert_eq!(
            banners(&d, c.name()),
            2,
            "{}: one banner per file",
            c.name()
        );
    }
    assert_eq!(
        d.tracker.total_dups(),
        0,
        "no duplicates after a clean restart"
    );
}
