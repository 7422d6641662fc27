//! Remote write's requests as they leave the agent: the spec's headers, basic and bearer
//! authentication, SigV4 for Amazon Managed Service for Prometheus checked against what
//! botocore signs, a missing region found at start, TLS settings, and the local sink
//! when no endpoint is configured.

use std::path::Path;
use std::process::Command;

use kubeship_tests::*;

fn sent(p: &Pusher, endpoint: &str) -> f64 {
    p.metric(
        "kubeship_remote_write_samples_total",
        &[("endpoint", endpoint), ("outcome", "sent")],
    )
}

fn lines(n: usize, t: i64) -> Vec<String> {
    (0..n)
        .map(|i| sample_line(&[("__name__", "m"), ("i", &i.to_string())], t, i as f64))
        .collect()
}

#[test]
fn every_endpoint_gets_every_sample_with_the_specs_headers_and_its_own_auth() {
    let basic = RwServer::start(|_, _| Act::ok());
    let bearer = RwServer::start(|_, _| Act::ok());
    let metrics = format!(
        "  remote_write:\n\
         \x20   - url: {:?}\n      name: basic\n      basic_auth: {{username: agent, password_file: pw}}\n\
         \x20   - url: {:?}\n      name: bearer\n      bearer_token_file: token\n",
        basic.url(),
        bearer.url()
    );
    let mut p = Pusher::start(&metrics, &[]);
    std::fs::write(p.path("pw"), "s3cr:t\n").unwrap();
    std::fs::write(p.path("token"), "tok-123\n").unwrap();
    p.push(&lines(25, now_ms() - 1000));
    p.wait_metrics("25 sent to each", secs(30), |p| {
        sent(p, "basic") == 25.0 && sent(p, "bearer") == 25.0
    });
    for (server, auth) in [
        (&basic, "Basic YWdlbnQ6czNjcjp0"),
        (&bearer, "Bearer tok-123"),
    ] {
        let received = server.received();
        assert!(!received.is_empty());
        for r in &received {
            let h = &r.head;
            assert_eq!(h.method(), "POST");
            assert_eq!(h.target(), "/api/v1/write");
            assert_eq!(h.get("content-encoding"), Some("snappy"));
            assert_eq!(h.get("content-type"), Some("application/x-protobuf"));
            assert_eq!(h.get("x-prometheus-remote-write-version"), Some("0.1.0"));
            assert!(
                h.get("user-agent")
                    .is_some_and(|u| u.starts_with("kubeship/")),
                "{h:?}"
            );
            assert_eq!(h.get("authorization"), Some(auth));
        }
        let n: usize = server
            .accepted()
            .iter()
            .flat_map(|w| &w.timeseries)
            .map(|t| t.samples.len())
            .sum();
        assert_eq!(n, 25);
    }
    assert!(p.finish(secs(30)).status.success());
}

/// Signs the request as botocore's SigV4Auth does, at the request's own `x-amz-date`, and
/// prints the `Authorization` header it makes.
const BOTOCORE_SIGN: &str = r#"
import json, sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
req = json.load(open(sys.argv[1]))
body = open(sys.argv[2], "rb").read()
r = AWSRequest(method="POST", url=req["url"], data=body, headers=req["headers"])
auth = SigV4Auth(Credentials(req["key"], req["secret"], req["token"]), "aps", req["region"])
r.context["timestamp"] = req["amz_date"]
auth._modify_request_before_signing(r)
canonical = auth.canonical_request(r)
signature = auth.signature(auth.string_to_sign(r, canonical), r)
auth._inject_signature_to_request(r, signature)
print(r.headers["Authorization"])
"#;

#[test]
fn aps_requests_are_signed_as_botocore_signs_them() {
    let server = RwServer::start(|_, _| Act::ok());
    let path = "/workspaces/ws-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d/api/v1/remote_write";
    let url = format!("http://{}{path}", server.addr());
    let metrics = format!(
        "  remote_write:\n    - url: {url:?}\n      name: amp\n      sigv4: {{region: eu-west-2}}\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut env = aws_env_without_keys("us-east-1", dir.path());
    env.extend([
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE".to_string()),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_string(),
        ),
        ("AWS_SESSION_TOKEN", "IQoJb3JpZ2luX2VjEXAMPLE==".to_string()),
    ]);
    let mut p = Pusher::start(&metrics, &env);
    p.push(&lines(3, now_ms() - 1000));
    p.wait_metrics("3 sent", secs(30), |p| sent(p, "amp") == 3.0);
    let r = &server.received()[0];
    let h = &r.head;
    assert_eq!(h.target(), path);
    assert_eq!(
        h.get("x-amz-security-token"),
        Some("IQoJb3JpZ2luX2VjEXAMPLE==")
    );
    let amz_date = h.get("x-amz-date").expect("x-amz-date").to_string();
    let ours = h.get("authorization").expect("authorization").to_string();
    assert!(
        ours.contains("/eu-west-2/aps/aws4_request, SignedHeaders=content-encoding;content-type;host;x-amz-date;x-amz-security-token;x-prometheus-remote-write-version, Signature="),
        "{ours}"
    );
    let request = serde_json::json!({
        "url": url,
        "headers": {
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        },
        "key": "AKIDEXAMPLE",
        "secret": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "token": "IQoJb3JpZ2luX2VjEXAMPLE==",
        "region": "eu-west-2",
        "amz_date": amz_date,
    });
    let req_path = dir.path().join("request.json");
    let body_path = dir.path().join("body");
    std::fs::write(&req_path, request.to_string()).unwrap();
    std::fs::write(&body_path, &r.body).unwrap();
    let botocore = botocore_sign(&req_path, &body_path);
    assert_eq!(ours, botocore, "the agent's signature against botocore's");
    // The same check fails for a body that is not the one signed.
    std::fs::write(&body_path, b"another body").unwrap();
    assert_ne!(ours, botocore_sign(&req_path, &body_path));
    assert!(p.finish(secs(30)).status.success());
}

fn botocore_sign(request: &Path, body: &Path) -> String {
    let out = run_with_timeout(
        Command::new(python())
            .arg("-c")
            .arg(BOTOCORE_SIGN)
            .arg(request)
            .arg(body),
        secs(60),
    );
    assert!(
        out.status.success(),
        "botocore (from moto's install, see tests/run.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn sigv4_without_a_region_stops_at_start_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(&str, String)> = aws_env_without_keys("unused", dir.path())
        .into_iter()
        .filter(|(k, _)| !k.ends_with("REGION"))
        .collect();
    let p = Pusher::start(
        "  remote_write:\n    - url: https://aps-workspaces.example/w\n      sigv4: {}\n",
        &env,
    );
    let f = p.finish(secs(30));
    assert_eq!(f.status.code(), Some(1), "{f:?}");
    assert!(
        f.stderr.contains(
            "metrics.remote_write.sigv4.region: no AWS region for endpoint `aps-workspaces.example`"
        ),
        "{}",
        f.stderr
    );
}

#[test]
fn without_an_endpoint_samples_go_to_the_local_sink_as_json_lines() {
    let mut p = Pusher::start("  local: {dir: ./msink}\n", &[]);
    let t = now_ms();
    let stale = f64::from_bits(STALE_NAN_BITS);
    let mut want = Vec::new();
    for (v, i) in [
        (1.5, "a"),
        (f64::NAN, "b"),
        (f64::INFINITY, "c"),
        (f64::NEG_INFINITY, "d"),
        (stale, "e"),
        (-0.25, "f"),
    ] {
        want.push(sample_line(
            &[("__name__", "m"), ("i", i), ("job", "x\"y")],
            t,
            v,
        ));
    }
    p.push(&want);
    let f = p.finish(secs(30));
    assert!(f.status.success(), "{f:?}");
    assert!(f.stdout.contains("local sink:"), "{}", f.stdout);
    let text = std::fs::read_to_string(f.dir.path().join("msink/samples.jsonl")).unwrap();
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(got, want.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(text.contains(r#""v":"stale""#) && text.contains(r#""v":"+Inf""#));
}

/// An HTTPS receiver answering 200 to every POST (Python's http.server behind its ssl
/// module), with the certificate and key given; prints its port.
const HTTPS_RECEIVER: &str = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A child process killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn tls_trusts_a_ca_file_or_skips_verification_and_refuses_an_unknown_certificate() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let TestCerts { ca, cert, key } = make_certificates(dir.path(), "127.0.0.1");
    let mut child = Command::new(python())
        .arg("-c")
        .arg(HTTPS_RECEIVER)
        .arg(&cert)
        .arg(&key)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    let stdout = child.stdout.take().unwrap();
    let _server = Killed(child);
    let mut port = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut port)
        .unwrap();
    let url = format!("https://127.0.0.1:{}/api/v1/write", port.trim());
    let metrics = format!(
        "  remote_write:\n\
         \x20   - {{url: {url:?}, name: ca, tls: {{ca_file: {:?}}}}}\n\
         \x20   - {{url: {url:?}, name: skip, tls: {{insecure_skip_verify: true}}}}\n\
         \x20   - {{url: {url:?}, name: system}}\n",
        ca.display().to_string()
    );
    let mut p = Pusher::start_with(&metrics, &[], 1);
    p.push(&lines(5, now_ms() - 1000));
    p.wait_metrics(
        "sent with the CA file and without verification; refused otherwise",
        secs(60),
        |p| {
            sent(p, "ca") == 5.0
                && sent(p, "skip") == 5.0
                && p.metric(
                    "kubeship_remote_write_requests_total",
                    &[("endpoint", "system"), ("outcome", "error")],
                ) >= 1.0
        },
    );
    assert_eq!(sent(&p, "system"), 0.0);
    let f = p.finish(secs(30));
    assert!(
        f.stdout
            .contains("endpoint system: sent 0, failed 0, dropped 5"),
        "{}",
        f.stdout
    );
    assert!(f.stderr.contains("UnknownIssuer"), "{}", f.stderr);
}
