//! The alerting side of the harness: real Alertmanager (Debian's `prometheus-alertmanager`)
//! on loopback with a data directory of its own ([`Alertmanager`]), and an SNS topic in moto
//! read back through an SQS queue subscribed to it ([`SnsInbox`]), moto's way of showing what
//! was published.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::cw::roundtrip;
use crate::{Moto, free_port, http_get, percent_encode, secs, wait_until};

const HINT: &str = "Alertmanager is needed: run tests/run.sh (it installs Debian's \
                    `prometheus-alertmanager`) or `apt-get install --no-install-recommends \
                    prometheus-alertmanager`";

/// The Alertmanager binary: `alertmanager` on `PATH`, else Debian's `prometheus-alertmanager`.
fn alertmanager_bin() -> PathBuf {
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    };
    on_path("alertmanager")
        .or_else(|| on_path("prometheus-alertmanager"))
        .unwrap_or_else(|| panic!("no alertmanager on PATH; {HINT}"))
}

/// An Alertmanager for one test: on a free loopback port, clustering off, killed when
/// dropped.
pub struct Alertmanager {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts it with `config` (YAML, or JSON) as `alertmanager.yml` and `files` beside it
    /// (relative path, content: e.g. `templates/x.tmpl`), and waits until it is ready.
    pub fn start(config: &str, files: &[(&str, &str)]) -> Alertmanager {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("alertmanager.yml");
        std::fs::write(&config_path, config).expect("write alertmanager.yml");
        for (rel, text) in files {
            let path = dir.path().join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {rel}: {e}"));
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).expect("log file");
        let child = Command::new(alertmanager_bin())
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            // No gossip port (9094 by default): one instance, nothing shared.
            .arg("--cluster.listen-address=")
            .arg("--log.level=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting alertmanager: {e}; {HINT}"));
        let mut am = Alertmanager { child, addr, dir };
        let ready = wait_until(
            || matches!(http_get(addr, "/-/ready"), Ok((200, _))),
            secs(30),
        );
        if !ready {
            let _ = am.child.kill();
            panic!(
                "alertmanager was not ready within 30 s; its log:\n{}",
                am.log()
            );
        }
        am
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its directory (configuration, files, data, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    /// The alerts it holds (`GET /api/v2/alerts`).
    pub fn alerts(&self) -> Vec<Value> {
        let (status, body) = http_get(self.addr, "/api/v2/alerts")
            .unwrap_or_else(|e| panic!("GET /api/v2/alerts from alertmanager: {e}"));
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("alertmanager answered {status} {body}: {e}"));
        v.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One SNS notification as delivered to the subscribed queue.
#[derive(Clone, Debug)]
pub struct SnsNotification {
    pub subject: String,
    pub message: String,
    /// `MessageAttributes` as SNS wrote them (`{"name": {"Type": …, "Value": …}}`).
    pub attributes: Value,
}

/// An SNS topic in moto with an SQS queue subscribed to it: every message published to the
/// topic lands in the queue, read back here.
pub struct SnsInbox {
    addr: SocketAddr,
    region: String,
    queue_url: String,
    received: Vec<SnsNotification>,
}

impl SnsInbox {
    /// Creates the topic `topic_arn` (`arn:aws:sns:<region>:<account>:<name>`) in `moto`,
    /// which must act in that account (`MOTO_ACCOUNT_ID`, [`Moto::start_with_env`]), and a
    /// queue subscribed to it.
    pub fn create(moto: &Moto, topic_arn: &str) -> SnsInbox {
        let parts: Vec<&str> = topic_arn.split(':').collect();
        assert!(
            parts.len() == 6 && parts[..3] == ["arn", "aws", "sns"],
            "not a topic ARN: {topic_arn}"
        );
        let (region, account, name) = (parts[3], parts[4], parts[5]);
        let mut inbox = SnsInbox {
            addr: moto.addr(),
            region: region.to_string(),
            queue_url: String::new(),
            received: Vec::new(),
        };
        let created = inbox.sns(&[("Action", "CreateTopic"), ("Name", name)]);
        assert!(
            created.contains(&format!("<TopicArn>{topic_arn}</TopicArn>")),
            "moto created another topic than {topic_arn} (is MOTO_ACCOUNT_ID {account}?): {created}"
        );
        let queue = format!("{name}-inbox");
        let v = inbox.sqs("CreateQueue", &json!({ "QueueName": queue }));
        inbox.queue_url = v["QueueUrl"]
            .as_str()
            .unwrap_or_else(|| panic!("CreateQueue answered {v}"))
            .to_string();
        let queue_arn = format!("arn:aws:sqs:{region}:{account}:{queue}");
        inbox.sns(&[
            ("Action", "Subscribe"),
            ("TopicArn", topic_arn),
            ("Protocol", "sqs"),
            ("Endpoint", &queue_arn),
        ]);
        inbox
    }

    /// An unsigned but well-formed SigV4 `Authorization` header (moto reads the region from it
    /// and checks no signature).
    fn auth(&self, service: &str) -> (String, String) {
        (
            "Authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential=testing/20261123/{}/{service}/aws4_request, \
                 SignedHeaders=host, Signature={}",
                self.region,
                "0".repeat(64)
            ),
        )
    }

    /// An SNS Query API call; the XML answer (panics unless 200).
    fn sns(&self, params: &[(&str, &str)]) -> String {
        let mut body: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect();
        body.push("Version=2010-03-31".into());
        let headers = [
            (
                "Content-Type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
            self.auth("sns"),
        ];
        let r = roundtrip(
            self.addr,
            "POST",
            "/",
            &headers,
            body.join("&").as_bytes(),
            secs(30),
        )
        .unwrap_or_else(|e| panic!("SNS {params:?} to moto: {e}"));
        assert_eq!(r.status(), 200, "SNS {params:?}: {}", r.text());
        r.text()
    }

    /// An SQS JSON API call; the answer (panics unless 200).
    fn sqs(&self, op: &str, body: &Value) -> Value {
        let headers = [
            (
                "Content-Type".to_string(),
                "application/x-amz-json-1.0".to_string(),
            ),
            ("X-Amz-Target".to_string(), format!("AmazonSQS.{op}")),
            self.auth("sqs"),
        ];
        let r = roundtrip(
            self.addr,
            "POST",
            "/",
            &headers,
            body.to_string().as_bytes(),
            secs(30),
        )
        .unwrap_or_else(|e| panic!("SQS {op} to moto: {e}"));
        assert_eq!(r.status(), 200, "SQS {op}: {}", r.text());
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("SQS {op}: {e}: {}", r.text()))
    }

    /// Reads what arrived since the last call; returns every notification so far, in order.
    pub fn poll(&mut self) -> &[SnsNotification] {
        loop {
            // Received messages stay invisible for an hour: each is read once.
            let v = self.sqs(
                "ReceiveMessage",
                &json!({
                    "QueueUrl": self.queue_url,
                    "MaxNumberOfMessages": 10,
                    "VisibilityTimeout": 3600,
                }),
            );
            let messages = v["Messages"].as_array().cloned().unwrap_or_default();
            if messages.is_empty() {
                return &self.received;
            }
            for m in messages {
                let body = m["Body"].as_str().unwrap_or_default();
                let n: Value = serde_json::from_str(body)
                    .unwrap_or_else(|e| panic!("an SNS envelope in the queue: {e}: {body}"));
                self.received.push(SnsNotification {
                    subject: n["Subject"].as_str().unwrap_or_default().to_string(),
                    message: n["Message"].as_str().unwrap_or_default().to_string(),
                    attributes: n["MessageAttributes"].clone(),
                });
            }
        }
    }
}
