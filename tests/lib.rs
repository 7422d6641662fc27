//! Test harness for kubeship's end-to-end tests.
//!
//! * [`kubeship_bin`] finds the agent binary (`KUBESHIP_BIN`, else next to the test executable).
//! * [`Node`] builds a kubelet-like log layout in a temporary directory; [`Container`] writes
//!   sequenced lines in CRI or docker json-file framing and rotates them like the kubelet does.
//! * [`Agent`] runs `kubeship run` as a child process (killed on drop).
//! * [`Sink`] reads the local sink's `*.jsonl` files incrementally; [`Tracker`] checks
//!   sequences per container (loss, order, duplicates); [`raw_records`] gives the records as
//!   raw JSON ([`RawRecord`]) for the fields [`Record`] leaves out.
//! * [`wait_for`] polls a condition with a deadline; [`metric_value`] reads Prometheus text,
//!   [`metric_sum`] too but panics on a metric name the agent does not expose.
//!
//! * [`cw`]: CloudWatch Logs against moto's server ([`Moto`], [`CwDelivery`], [`FaultProxy`],
//!   the strict [`check_put_log_events`]); [`AgentConfig::cloudwatch`] selects that sink.
//! * [`bundle`]: the generated files of the dashboards-and-alerts bundle (ConfigMaps,
//!   PrometheusRule, AMP alert manager definition), written by the `bundle-gen` binary.
//! * [`rw`]: remote write: real Prometheus as the receiver ([`Prometheus`]), a scripted
//!   loopback receiver ([`RwServer`]), `kubeship push-samples` fed line by line ([`Pusher`]).
//! * Alerting ([`Alertmanager`]: real Alertmanager on loopback; [`SnsInbox`]: an SNS topic in
//!   moto read back through a subscribed SQS queue).
//! * [`kubeapi`]: a fake Kubernetes API server ([`FakeApi`]: list/watch of one node's pods and
//!   of namespaces, with faults) and the [`Pod`] builder.
//! * Scrape targets ([`TargetServer`]: loopback HTTP or HTTPS answering as a test says) and the
//!   samples the agent's scrapes wrote ([`Scraped`], [`AgentConfig::metrics`], [`wait_scraped`]).
//! * Test certificates ([`make_certificates`]: a CA and a server certificate for an IP, openssl).
//!
//! The harness's own parts, one file each: `process` (the binary, timeouts, waiting),
//! `rng`, `framing` (CRI and docker lines, RFC 3339 times), `node` (the node layout and
//! its containers), `agent` (config and the agent process, `/metrics`), `sink` (the local
//! sink's files), `delivery` (loss, order and duplicate tracking), `scrape` (scrape targets,
//! scraped samples), `certs` (test certificates).
//!
//! Environment knobs: `KUBESHIP_BIN` (binary), `KUBESHIP_TEST_TIMEOUT_SCALE` (multiply every
//! timeout, e.g. `3` on a slow machine), `KUBESHIP_KEEP_TMP=1` (keep a failed test's directory).

#![forbid(unsafe_code)]

pub mod bundle;
pub mod cw;
pub use cw::*;
pub mod kubeapi;
pub use kubeapi::*;
mod alerting;
pub use alerting::*;
pub mod rw;
pub use rw::*;

mod process;
pub use process::*;
mod rng;
pub use rng::*;
mod framing;
pub use framing::*;
mod node;
pub use node::*;
mod agent;
pub use agent::*;
mod sink;
pub use sink::*;
mod delivery;
pub use delivery::*;
mod scrape;
pub use scrape::*;
mod certs;
pub use certs::*;

#[cfg(test)]
mod tests {

    use std::fs::{self, File};
    use std::io::Read;

    use super::*;

    #[test]
    fn metric_parsing() {
        let text = "# HELP x\n# TYPE kubeship_log_lines_read_total counter\n\
                    kubeship_log_lines_read_total 42\n\
                    kubeship_log_records_dropped_total{reason=\"unreadable\"} 2\n\
                    kubeship_log_records_dropped_total{reason=\"deleted\",x=\"a,b\"} 3.0\n\
                    kubeship_log_lines_read_total_other 7\n# EOF\n";
        assert_eq!(
            metric_value(text, "kubeship_log_lines_read_total", &[]),
            Some(42.0)
        );
        assert_eq!(
            metric_value(text, "kubeship_log_records_dropped_total", &[]),
            Some(5.0)
        );
        assert_eq!(
            metric_value(
                text,
                "kubeship_log_records_dropped_total",
                &[("reason", "deleted"), ("x", "a,b")]
            ),
            Some(3.0)
        );
        assert_eq!(metric_value(text, "kubeship_missing", &[]), None);
    }

    #[test]
    fn metric_names_must_be_exposed() {
        // As the agent writes them (OpenMetrics): families without their sample suffixes.
        let text = "# HELP kubeship_log_records_truncated Log records cut.\n\
                    # TYPE kubeship_log_records_truncated counter\n\
                    kubeship_log_records_truncated_total 2\n\
                    # TYPE kubeship_log_records_dropped counter\n\
                    # TYPE kubeship_inflight_bytes gauge\n\
                    kubeship_inflight_bytes 7\n\
                    # TYPE kubeship_batch_ack_seconds histogram\n\
                    kubeship_batch_ack_seconds_count 1\n# EOF\n";
        assert_eq!(
            metric_sum(text, "kubeship_log_records_truncated_total", &[]),
            2.0
        );
        assert_eq!(
            metric_sum(
                text,
                "kubeship_log_records_dropped_total",
                &[("reason", "x")]
            ),
            0.0,
            "exposed, no series yet"
        );
        assert_eq!(metric_sum(text, "kubeship_inflight_bytes", &[]), 7.0);
        assert_eq!(
            metric_sum(text, "kubeship_batch_ack_seconds_count", &[]),
            1.0
        );
        for unknown in [
            "kubeship_cloudwatch_events_truncated_total",
            "kubeship_inflight_bytes_total",
            "kubeship_batch_ack_seconds",
            "kubeship_log_records",
            "kubeship_log_records_truncated",
        ] {
            assert!(!exposes_metric(text, unknown), "{unknown}");
            let r = std::panic::catch_unwind(|| metric_sum(text, unknown, &[]));
            assert!(r.is_err(), "{unknown} read as a value");
        }
    }

    #[test]
    fn framing_and_seq() {
        let c = ContainerInfo {
            namespace: "ns".into(),
            pod: "p".into(),
            name: "c1".into(),
            pod_uid: "u".into(),
            container_id: "i".into(),
            format: Format::Cri,
            pad_min: 5,
            pad_spread: 3,
            time_base_ms: None,
        };
        let m = c.message(17);
        assert_eq!(parse_seq(&m), Some(("c1", 17)));
        let cri = frame(Format::Cri, &time_for(1), "stdout", b"hi", true);
        assert_eq!(cri, b"2026-11-23T10:00:00.001000001Z stdout P hi\n");
        let d = frame(Format::Docker, "t", "stderr", b"a\"b\xff", false);
        assert_eq!(
            d,
            b"{\"log\":\"a\\\"b\xff\\n\",\"stream\":\"stderr\",\"time\":\"t\"}\n"
        );
        let v: serde_json::Value =
            serde_json::from_slice(&frame(Format::Docker, "t", "stdout", b"x\ty", true))
                .expect("valid json");
        assert_eq!(v["log"], "x\ty");
    }

    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000000000Z");
        for t in [
            "2026-11-23T10:00:00.001000001Z",
            "2024-02-29T23:59:59.999999999Z",
            "2000-03-01T00:00:00.000000000Z",
            "1999-12-31T12:34:56.500000000Z",
        ] {
            let n = parse_rfc3339_nanos(t).expect("parses");
            assert_eq!(rfc3339_nanos(n), t);
        }
        assert_eq!(
            parse_rfc3339_nanos("2026-11-23T12:00:00.5+02:00"),
            parse_rfc3339_nanos("2026-11-23T10:00:00.500000000Z")
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-23T10:00:00.001999999Z"),
            Some(1_795_428_000_001)
        );
        assert_eq!(parse_rfc3339_ms(&time_for(0)), Some(1_795_428_000_000));
        assert!(parse_rfc3339_nanos("2026-11-23 10:00:00").is_none());
        assert!(parse_rfc3339_nanos("2026-13-23T10:00:00Z").is_none());
        assert!(parse_rfc3339_nanos("2026-11-23T10:00:00.Z").is_none());

        let node = Node::new();
        let mut c = node.add_container("ns", "pod", "app", Format::Cri);
        assert_eq!(c.info().time(5), time_for(5), "fixed times by default");
        let base = 1_795_000_000_123;
        c.set_time_base_ms(Some(base));
        for seq in [0, 1, 996, 997, 12_345] {
            assert_eq!(c.info().timestamp_ms(seq), base + seq as i64);
            let nanos = parse_rfc3339_nanos(&c.info().time(seq)).expect("time");
            assert_eq!(nanos % 1_000_000, i128::from(seq % 997));
        }
        let seq = c.write_line_at("2026-11-20T00:00:00.000000000Z");
        assert_eq!((seq, c.written()), (0, 1));
        let text = fs::read_to_string(c.live_path()).expect("read");
        assert!(text.starts_with("2026-11-20T00:00:00.000000000Z stdout F c=app seq=0 "));
    }

    #[test]
    fn cloudwatch_config_yaml() {
        let mut cfg = AgentConfig::default();
        assert!(cfg.env().is_empty());
        assert!(cfg.to_yaml(1).contains("  local:\n    dir: ./out\n"));
        cfg.stream_template = "{namespace}".into();
        cfg.cloudwatch = Some(CloudWatchOpts::for_endpoint("http://127.0.0.1:9"));
        let y = cfg.to_yaml(1);
        assert!(!y.contains("local:"), "{y}");
        assert!(
            y.contains(
                "output:\n  group: \"/aws/containerinsights/{cluster}/application\"\n  \
                 stream: \"{namespace}\"\n  cloudwatch:\n    region: \"us-east-1\"\n    \
                 endpoint_url: \"http://127.0.0.1:9\"\n    create_group: true\n    \
                 retention_days: 7\n    log_group_class: STANDARD\n    \
                 tags: {\"team\": \"platform\"}\n    max_concurrent_requests: 8\n    \
                 request_timeout_secs: 10\nkubernetes: {enabled: false}\ntelemetry:"
            ),
            "{y}"
        );
        let env = cfg.env();
        assert!(env.contains(&("AWS_ACCESS_KEY_ID", "testing".into())));
        assert!(env.contains(&("AWS_SECRET_ACCESS_KEY", "testing".into())));
        assert!(env.contains(&("AWS_REGION", "us-east-1".into())));
        assert!(env.contains(&("AWS_EC2_METADATA_DISABLED", "true".into())));
        let dir = tempfile::tempdir().expect("temp dir");
        cfg.aws_env = Some(aws_env_without_keys("eu-west-1", dir.path()));
        let env = cfg.env();
        assert!(
            !env.iter().any(|(k, _)| k.starts_with("AWS_ACCESS_KEY")),
            "{env:?}"
        );
        assert!(
            !env.iter().any(|(k, _)| *k == "AWS_SECRET_ACCESS_KEY"),
            "{env:?}"
        );
        assert!(env.contains(&("AWS_REGION", "eu-west-1".into())));
        assert!(env.contains(&("NO_PROXY", "127.0.0.1,localhost".into())));
        cfg.cloudwatch = None;
        assert!(
            cfg.env().is_empty(),
            "no AWS environment without the CloudWatch sink"
        );
    }

    #[test]
    fn diagnostics_parse() {
        let d = Diagnostic::parse("cfg/k.yaml:12:5: logs.read_from: unknown variant `x`")
            .expect("parses");
        assert_eq!(d.file, "cfg/k.yaml");
        assert_eq!((d.line, d.col), (12, 5));
        assert_eq!(d.key, "logs.read_from");
        assert!(Diagnostic::parse("error: something").is_none());
    }

    #[test]
    fn rng_is_deterministic() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert!((0..1000).all(|_| a.range(3, 9) < 9));
    }

    #[test]
    fn ranges_format() {
        assert_eq!(ranges(&[1, 2, 3, 7, 9, 10], 10), "1-3, 7, 9-10");
        assert_eq!(ranges(&[1, 3, 5], 2), "1, 3, …");
    }

    #[test]
    fn container_rotation_bookkeeping() {
        let node = Node::new();
        let mut c = node.add_container("ns", "pod", "app", Format::Docker);
        c.write_lines(3);
        c.rotate();
        c.write_partial(3);
        c.copytruncate();
        c.write_lines(2);
        c.rotate();
        let gz = c.gzip_oldest().expect("oldest rotated gets gzipped");
        assert!(gz.to_string_lossy().ends_with(".gz"));
        let second = c.gzip_oldest().expect("second oldest gets gzipped");
        assert_eq!(second, c.rotated()[1].path);
        assert_eq!(
            c.gzip_oldest(),
            None,
            "the newest rotated file stays uncompressed"
        );
        assert!(c.rotated()[0].gz && c.rotated()[1].gz && !c.rotated()[2].gz);
        let mut text = String::new();
        flate2::read::GzDecoder::new(File::open(&second).expect("open gz"))
            .read_to_string(&mut text)
            .expect("gunzip");
        assert_eq!(text.lines().count(), 3, "3 partial pieces: {text}");
        assert!(
            !second.with_extension("tmp").exists(),
            "the .tmp file is renamed"
        );
        assert!(
            !second.with_extension("").exists(),
            "the uncompressed file is deleted"
        );
        assert_eq!(
            c.rotated()
                .iter()
                .map(|r| r.seqs.clone())
                .collect::<Vec<_>>(),
            vec![0..3, 3..4, 4..6]
        );
        assert_eq!(fs::metadata(c.live_path()).expect("live").len(), 0);
        let target = fs::read_link(c.link_path()).expect("symlink");
        assert!(target.is_relative());
        assert!(fs::metadata(c.link_path()).is_ok(), "symlink resolves");
        let r = c.delete_rotated_oldest().expect("deleted");
        assert!(!r.path.exists());
    }
}
