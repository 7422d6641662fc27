//! What the agent does with the files it finds: which file is which (inode and content), read
//! errors, truncation, and links it must not follow.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use flate2::Compression;
use flate2::write::GzEncoder;
use kubeship_tests::{
    Agent, AgentConfig, Container, Delivery, Format, Node, secs, time_for, wait_for,
};

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

/// A rotated `.gz` still being written when the agent reads it (its deflate stream ends part
/// way): the failed read is counted in `kubeship_log_file_errors_total{reason="read"}` and
/// tried again (after 1 s, then 2 s, …), the live file is read meanwhile, and once the `.gz`
/// is complete every line of it is delivered, once.
#[test]
fn a_gz_still_being_written_is_read_once_complete() {
    let node = Node::new();
    let mut c = node.add_container("ns", "gz-0", "gz", Format::Cri);
    c.write_lines(3000);
    let rotated = c.rotate();
    c.write_lines(5);
    let data = fs::read(&rotated).expect("read the rotated file");
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(&data).expect("gzip");
    let gz = e.finish().expect("gzip");
    fs::remove_file(&rotated).expect("remove the rotated file");
    let gz_path = PathBuf::from(format!("{}.gz", rotated.display()));
    let (first, rest) = gz.split_at(gz.len() / 2);
    fs::write(&gz_path, first).expect("write half the .gz");

    let mut agent = Agent::start(&node, &AgentConfig::default());
    agent.wait_ready(secs(30));
    let mut d = Delivery::new(&node);
    wait_for(
        || agent.metric_or_zero("kubeship_log_file_errors_total", &[("reason", "read")]) >= 1.0,
        secs(30),
        "a failed read of the half-written .gz",
    );
    wait_for(
        || {
            d.poll();
            let t = d.tracker.track("gz");
            (3000..3005).all(|s| t.count_of(s) == 1)
        },
        secs(30),
        "the live file's lines while the .gz is incomplete",
    );
    fs::OpenOptions::new()
        .append(true)
        .open(&gz_path)
        .and_then(|mut f| f.write_all(rest))
        .expect("complete the .gz");
    d.wait_all(&mut agent, &[("gz", 3005)], secs(30));
    assert_eq!(
        agent.metric_or_zero("kubeship_log_bytes_lost_total", &[]),
        0.0,
        "nothing lost"
    );
    agent.stop(secs(30));
    d.poll();
    assert_eq!(d.tracker.total_dups(), 0, "no duplicates");
}
