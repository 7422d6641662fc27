//! Where the CloudWatch sink's credentials come from, and that they stay secret.
//!
//! The agent builds its client from `aws-config`'s default chain. These tests start it without
//! the harness's static test keys ([`AgentConfig::aws_env`]) and check the links an EKS node
//! uses, each one proved by the request that fetched the credentials *and* by the signatures
//! of the `PutLogEvents` calls that followed:
//!
//! * IRSA (web identity): `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`; the SDK calls STS
//!   `AssumeRoleWithWebIdentity`. STS is moto's, reached through a second [`FaultProxy`] set
//!   with the service-specific `AWS_ENDPOINT_URL_STS`, which the SDK's STS client honours (the
//!   CloudWatch client keeps `output.cloudwatch.endpoint_url`).
//! * EKS Pod Identity (container credentials): `AWS_CONTAINER_CREDENTIALS_FULL_URI` +
//!   `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`; the SDK GETs the credentials JSON from
//!   [`CredsServer`] (std only, on loopback, so plain HTTP is allowed).
//!
//! * Signatures: with moto's IAM authentication on, moto recomputes each request's SigV4
//!   signature with the secret it issued (an IAM user's keys, an assumed role's temporary
//!   ones) and refuses a wrong one (`moto_checks_every_signature`).
//!
//! All three credential links run at `log_level: trace` and check that no secret reaches the agent's logs (the
//! web identity token, the Pod Identity authorization token, secret keys, session tokens);
//! `credentials_never_logged` does so with static keys through denial, throttling and 503s,
//! and also checks the telemetry endpoints. The access key id is not a secret: the SDK logs it
//! at DEBUG and TRACE (credential `Debug` output), never in signed headers.

use std::fs;
use std::io::BufReader;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use kubeship_tests::{
    Agent, AgentConfig, CwDelivery, Exchange, FaultProxy, Format, Injected, TEST_AWS_REGION,
    aws_env_without_keys, metric_sum, now_ms, read_head, read_request_body, rfc3339_ms, roundtrip,
    secs, wait_for, write_response,
};

use crate::cloudwatch::{Env, env, metric};

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/kubeship";
const SESSION_NAME: &str = "kubeship-node-1";

// ---------------------------------------------------------------------------------------------
// Helpers: form bodies, XML, SigV4 headers

/// Percent-decoding of one `application/x-www-form-urlencoded` component (`+` is a space).
fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Value of field `name` of a form-encoded body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(body).split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (form_decode(k) == name).then(|| form_decode(v))
    })
}

/// Text of the first `<tag>…</tag>` of an XML document.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(xml[start..end].to_string())
}

/// The access key id a SigV4 `Authorization` header was signed with
/// (`AWS4-HMAC-SHA256 Credential=<key id>/<date>/<region>/<service>/aws4_request, …`).
fn sigv4_key_id(e: &Exchange) -> Option<String> {
    let auth = e.header("authorization")?;
    let cred = auth.split("Credential=").nth(1)?;
    Some(cred.split('/').next()?.to_string())
}

/// Checks that every CloudWatch Logs request the proxy saw (at least one `PutLogEvents`
/// accepted) was signed with `key_id` and carried `session_token`.
#[track_caller]
fn assert_signed_with(proxy: &FaultProxy, key_id: &str, session_token: &str) {
    let calls: Vec<Exchange> = proxy
        .exchanges()
        .into_iter()
        .filter(|e| e.target.starts_with("Logs_"))
        .collect();
    assert!(
        calls
            .iter()
            .any(|e| e.operation() == "PutLogEvents" && e.accepted()),
        "no accepted PutLogEvents: {}",
        proxy.summary()
    );
    for e in &calls {
        assert_eq!(
            sigv4_key_id(e).as_deref(),
            Some(key_id),
            "request #{} ({}) signed with another key; Authorization: {:?}",
            e.id,
            e.operation(),
            e.header("authorization")
        );
        assert_eq!(
            e.header("x-amz-security-token"),
            Some(session_token),
            "request #{} ({}): session token",
            e.id,
            e.operation()
        );
    }
}

/// Lines of `text` holding any of `secrets` (`(what, value)`), shortened, for a failure message.
fn leaks(text: &str, secrets: &[(&str, &str)]) -> Vec<String> {
    let mut found = Vec::new();
    for (what, secret) in secrets {
        for l in text.lines().filter(|l| l.contains(secret)) {
            let mut end = l.len().min(400);
            while !l.is_char_boundary(end) {
                end -= 1;
            }
            found.push(format!("{what}: {}", &l[..end]));
        }
    }
    found
}

/// Checks that the agent's logs (stderr), written at trace level, hold none of `secrets`.
#[track_caller]
fn assert_not_logged(stderr: &str, secrets: &[(&str, &str)]) {
    assert!(
        stderr.contains("\"level\":\"TRACE\""),
        "no TRACE line: log_level trace was not applied"
    );
    let found = leaks(stderr, secrets);
    assert!(
        found.is_empty(),
        "credentials in the agent's logs ({} lines of stderr):\n{}",
        stderr.lines().count(),
        found.join("\n")
    );
}

/// RFC 3339 without fraction digits, `ms` Unix milliseconds (`2026-11-23T10:00:00Z`).
fn rfc3339_secs(ms: i64) -> String {
    format!("{}Z", &rfc3339_ms(ms)[..19])
}

// ---------------------------------------------------------------------------------------------
// A container credentials endpoint (EKS Pod Identity agent / ECS), std only

/// One request the credentials endpoint answered.
#[derive(Clone, Debug)]
struct CredsRequest {
    method: String,
    path: String,
    authorization: Option<String>,
    status: u16,
}

struct CredsShared {
    path: String,
    token: String,
    body: String,
    log: Mutex<Vec<CredsRequest>>,
    stop: AtomicBool,
    open: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serves a credentials JSON at `path` to requests whose `Authorization` header is exactly
/// `token` (401 otherwise, 404 for other paths), records every request; stops on drop.
struct CredsServer {
    addr: SocketAddr,
    shared: Arc<CredsShared>,
    accept: Option<JoinHandle<()>>,
}

impl CredsServer {
    fn start(path: &str, token: &str, body: String) -> CredsServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind credentials server");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(CredsShared {
            path: path.into(),
            token: token.into(),
            body,
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
        });
        let accept = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("creds-accept".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if shared.stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(stream) = conn else { continue };
                        if let Ok(c) = stream.try_clone() {
                            lock(&shared.open).push(c);
                        }
                        let sh = shared.clone();
                        let h = thread::spawn(move || serve_creds(stream, &sh));
                        lock(&shared.threads).push(h);
                    }
                })
                .expect("spawn credentials server")
        };
        CredsServer {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.shared.path)
    }

    fn requests(&self) -> Vec<CredsRequest> {
        lock(&self.shared.log).clone()
    }
}

fn serve_creds(stream: TcpStream, sh: &CredsShared) {
    // A short read timeout so that an idle keep-alive connection notices the stop flag.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        if sh.stop.load(Ordering::SeqCst) {
            return;
        }
        let mut probe = [0u8; 1];
        match writer.peek(&mut probe) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(_) => return,
        }
        let _ = writer.set_read_timeout(Some(secs(10)));
        let Ok(Some(head)) = read_head(&mut reader) else {
            return;
        };
        if read_request_body(&mut reader, &head).is_err() {
            return;
        }
        let _ = writer.set_read_timeout(Some(Duration::from_millis(200)));
        let authorization = head.get("authorization").map(str::to_string);
        let path = head.target().to_string();
        let (status, reason, body) = if path != sh.path {
            (
                404,
                "Not Found",
                r#"{"Message":"no such path"}"#.to_string(),
            )
        } else if authorization.as_deref() != Some(sh.token.as_str()) {
            (
                401,
                "Unauthorized",
                r#"{"Message":"bad token"}"#.to_string(),
            )
        } else {
            (200, "OK", sh.body.clone())
        };
        lock(&sh.log).push(CredsRequest {
            method: head.method().to_string(),
            path,
            authorization,
            status,
        });
        let headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        if write_response(&mut writer, status, reason, &headers, body.as_bytes(), true).is_err() {
            return;
        }
    }
}

impl Drop for CredsServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        for s in lock(&self.shared.open).iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
        for h in std::mem::take(&mut *lock(&self.shared.threads)) {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// Writes `n` lines of one container (timed an hour ago) and returns its name.
/// A Pod Identity credentials endpoint serving `(key id, secret, session token)` to
/// requests carrying `token`, and the agent environment pointing at it with a token
/// file holding `token_in_file`. Returns the server, the environment and the file.
fn pod_identity(
    env: &Env,
    path: &str,
    token: &str,
    token_in_file: &str,
    (key_id, secret, session): (&str, &str, &str),
) -> (CredsServer, Vec<(&'static str, String)>, std::path::PathBuf) {
    let token_file = env.node.root().join("eks-pod-identity-token");
    fs::write(&token_file, token_in_file).expect("write token file");
    let body = serde_json::json!({
        "AccessKeyId": key_id,
        "SecretAccessKey": secret,
        "Token": session,
        "AccountId": "123456789012",
        "Expiration": rfc3339_secs(now_ms() + 3_600_000),
    })
    .to_string();
    let server = CredsServer::start(path, token, body);
    let mut vars = aws_env_without_keys(TEST_AWS_REGION, env.node.root());
    vars.extend([
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", server.url()),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token_file.to_string_lossy().into_owned(),
        ),
    ]);
    (server, vars, token_file)
}

fn some_lines(env: &Env, n: u64) -> String {
    let mut c = env.container("shop", "web-7d4b9c-xk2lp", "nginx", Format::Cri);
    c.write_lines(n);
    c.name().to_string()
}

#[test]
fn irsa_web_identity_credentials() {
    let env = env();
    // STS goes to moto through its own recording proxy.
    let sts = FaultProxy::start(env.moto.addr());
    let name = some_lines(&env, 300);
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6a3ViZS1zeXN0ZW06a3ViZXNoaXAifQ.kubeship-irsa-signature";
    let token_file = env
        .node
        .root()
        .join("eks.amazonaws.com-serviceaccount-token");
    fs::write(&token_file, token).expect("write token file");
    let mut vars = aws_env_without_keys(TEST_AWS_REGION, env.node.root());
    vars.extend([
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            token_file.to_string_lossy().into_owned(),
        ),
        ("AWS_ROLE_ARN", ROLE_ARN.to_string()),
        ("AWS_ROLE_SESSION_NAME", SESSION_NAME.to_string()),
        ("AWS_STS_REGIONAL_ENDPOINTS", "regional".to_string()),
        ("AWS_ENDPOINT_URL_STS", sts.endpoint()),
    ]);
    let cfg = AgentConfig {
        aws_env: Some(vars),
        log_level: "trace".into(),
        ..env.config()
    };
    let mut agent = env.start(&cfg);
    let mut d = CwDelivery::new(&env.moto);
    d.wait_all(&mut agent, &[(&name, 300)], secs(15));

    // The chain called STS AssumeRoleWithWebIdentity with the token, unsigned.
    let assumes: Vec<Exchange> = sts
        .exchanges()
        .into_iter()
        .filter(|e| form_field(&e.body, "Action").as_deref() == Some("AssumeRoleWithWebIdentity"))
        .collect();
    assert_eq!(
        assumes.len(),
        1,
        "one AssumeRoleWithWebIdentity (the credentials are cached); STS proxy saw: {:?}",
        sts.exchanges()
            .iter()
            .map(|e| (
                e.method.clone(),
                String::from_utf8_lossy(&e.body).into_owned()
            ))
            .collect::<Vec<_>>()
    );
    let call = &assumes[0];
    assert_eq!(call.method, "POST");
    assert!(
        call.header("content-type")
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded")),
        "content type {:?}",
        call.header("content-type")
    );
    let field = |k: &str| form_field(&call.body, k);
    assert_eq!(field("WebIdentityToken").as_deref(), Some(token));
    assert_eq!(field("RoleArn").as_deref(), Some(ROLE_ARN));
    assert_eq!(field("RoleSessionName").as_deref(), Some(SESSION_NAME));
    assert_eq!(field("Version").as_deref(), Some("2011-06-15"));
    assert_eq!(
        call.header("authorization"),
        None,
        "AssumeRoleWithWebIdentity is an anonymous call"
    );
    assert_eq!(
        call.status,
        200,
        "moto's answer: {}",
        String::from_utf8_lossy(&call.response_body)
    );
    assert!(
        sts.exchanges().iter().all(|e| e.target.is_empty()),
        "only STS calls go to AWS_ENDPOINT_URL_STS"
    );
    assert!(
        env.proxy
            .exchanges()
            .iter()
            .all(|e| form_field(&e.body, "Action").is_none()),
        "no STS call went to the CloudWatch endpoint"
    );

    // CloudWatch was called with the role's temporary credentials.
    let answer = String::from_utf8_lossy(&call.response_body).into_owned();
    let key_id = xml_text(&answer, "AccessKeyId").expect("AccessKeyId in the STS answer");
    let session = xml_text(&answer, "SessionToken").expect("SessionToken in the STS answer");
    assert!(key_id.starts_with("ASIA"), "temporary key id {key_id}");
    assert_signed_with(&env.proxy, &key_id, &session);
    agent.stop(secs(10));
    // Neither the token nor what it was exchanged for shows in the logs, although the SDK
    // traces the STS call.
    let secret = xml_text(&answer, "SecretAccessKey").expect("SecretAccessKey in the STS answer");
    let stderr = agent.stderr();
    assert!(
        stderr.contains("AssumeRoleWithWebIdentity"),
        "the STS call is not in the trace logs"
    );
    assert_not_logged(
        &stderr,
        &[
            ("web identity token", token),
            ("web identity token signature", "kubeship-irsa-signature"),
            ("secret access key from STS", &secret),
            ("session token from STS", &session),
        ],
    );
    assert!(
        agent.error_lines().is_empty(),
        "errors logged: {:?}",
        agent.error_lines()
    );
}

#[test]
fn pod_identity_container_credentials() {
    const PATH: &str = "/v1/credentials";
    const KEY_ID: &str = "ASIAPODIDENTITY00001";
    const SECRET: &str = "pod-identity-secret-key-5d1f0e";
    const SESSION: &str = "pod-identity-session-token-8c2b4a";
    let env = env();
    let name = some_lines(&env, 300);
    let token = "kubeship-eks-pod-identity-token-3f9a";
    let (server, vars, _) = pod_identity(&env, PATH, token, token, (KEY_ID, SECRET, SESSION));
    let cfg = AgentConfig {
        aws_env: Some(vars),
        log_level: "trace".into(),
        ..env.config()
    };
    let mut agent = env.start(&cfg);
    let mut d = CwDelivery::new(&env.moto);
    d.wait_all(&mut agent, &[(&name, 300)], secs(15));

    let reqs = server.requests();
    assert!(
        !reqs.is_empty(),
        "the credentials endpoint was never called"
    );
    for r in &reqs {
        assert_eq!(
            (
                r.method.as_str(),
                r.path.as_str(),
                r.authorization.as_deref(),
                r.status
            ),
            ("GET", PATH, Some(token), 200),
            "every credentials request: GET {PATH} with the token from the file"
        );
    }
    assert_eq!(
        reqs.len(),
        1,
        "credentials valid for an hour are fetched once: {reqs:?}"
    );
    assert_signed_with(&env.proxy, KEY_ID, SESSION);
    agent.stop(secs(10));
    assert_not_logged(
        &agent.stderr(),
        &[
            ("authorization token", token),
            ("secret access key", SECRET),
            ("session token", SESSION),
        ],
    );
    assert!(
        agent.error_lines().is_empty(),
        "errors logged: {:?}",
        agent.error_lines()
    );
    drop(server);
}

#[test]
fn credentials_never_logged() {
    const KEY_ID: &str = "AKIAKUBESHIPTEST0001";
    const SECRET: &str = "kubeship-secret-do-not-log-wJalrXUtnFEMI7K4d9";
    const SESSION: &str = "kubeship-session-token-do-not-log-IQoJb3JpZ2luX2VjEA";
    let env = env();
    let mut vars = aws_env_without_keys(TEST_AWS_REGION, env.node.root());
    vars.extend([
        ("AWS_ACCESS_KEY_ID", KEY_ID.to_string()),
        ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
        ("AWS_SESSION_TOKEN", SESSION.to_string()),
    ]);
    let mut cfg = AgentConfig {
        aws_env: Some(vars),
        log_level: "trace".into(),
        ..env.config()
    };
    if let Some(cw) = cfg.cloudwatch.as_mut() {
        cw.extra.push("max_backoff_secs: 1".into());
    }
    // Error paths first: denied until cleared, then throttled, then 503.
    env.proxy.deny_until_cleared();
    env.proxy.throttle_next(2);
    env.proxy.unavailable_next(1);
    let mut c = env.container("shop", "web-7d4b9c-xk2lp", "nginx", Format::Cri);
    c.write_lines(200);
    let mut agent = env.start(&cfg);
    env.proxy.wait_count(
        |e| e.injected == Some(Injected::Denied),
        2,
        secs(10),
        "denied PutLogEvents",
    );
    env.proxy.clear_deny();
    c.write_lines(200);
    let mut d = CwDelivery::new(&env.moto);
    d.wait_all(&mut agent, &[(c.name(), 400)], secs(15));
    for outcome in ["denied", "throttled", "error", "ok"] {
        wait_for(
            || {
                metric(
                    &agent,
                    "kubeship_cloudwatch_requests_total",
                    &[("outcome", outcome)],
                ) >= 1.0
            },
            secs(5),
            format!("kubeship_cloudwatch_requests_total{{outcome={outcome:?}}}"),
        );
    }
    // Everything the agent serves, then its logs up to a clean exit.
    let mut served = String::new();
    for path in ["/metrics", "/healthz", "/readyz"] {
        let (status, body) = agent
            .http_get(path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        served.push_str(&format!("GET {path}: {status}\n{body}\n"));
    }
    agent.stop(secs(10));
    let stderr = agent.stderr();

    // The credentials were really in use, and the failures really were logged.
    assert_signed_with(&env.proxy, KEY_ID, SESSION);
    assert!(
        stderr.contains("AccessDenied") || stderr.contains("not authorized"),
        "the denial is logged; stderr tail:\n{}",
        agent.stderr_tail(20)
    );

    // The marker prefixes also catch a value cut short or with a redacted tail.
    let secrets = [
        ("secret access key", SECRET),
        ("session token", SESSION),
        ("secret access key (prefix)", "kubeship-secret-do-not-log"),
        (
            "session token (prefix)",
            "kubeship-session-token-do-not-log",
        ),
    ];
    assert_not_logged(&stderr, &secrets);
    let in_served = leaks(&served, &secrets);
    assert!(
        in_served.is_empty(),
        "credentials on the telemetry endpoints:\n{}",
        in_served.join("\n")
    );
    // Not a secret, but worth knowing where it shows.
    let key_id_lines = leaks(&stderr, &[("access key id", KEY_ID)]);
    eprintln!(
        "credentials_never_logged: {} stderr lines; the access key id appears in {} of them{}; \
         on the endpoints: {}",
        stderr.lines().count(),
        key_id_lines.len(),
        key_id_lines
            .first()
            .map(|l| format!(", e.g. {l}"))
            .unwrap_or_default(),
        served.contains(KEY_ID)
    );
}

/// Credentials that cannot be loaded (the Pod Identity endpoint refuses the token) make the
/// agent not ready and count as `denied`, like a denied call; once the token file holds the
/// right token the agent recovers without a restart and delivers everything.
#[test]
fn unavailable_credentials_turn_readyz_off_until_they_load() {
    const PATH: &str = "/v1/credentials";
    let env = env();
    let name = some_lines(&env, 100);
    let token = "kubeship-right-token-71c2";
    let creds = (
        "ASIAPODIDENTITY00002",
        "pod-identity-secret-key-aa01",
        "pod-identity-session-token-bb02",
    );
    let (server, vars, token_file) = pod_identity(&env, PATH, token, "a-wrong-token", creds);
    let mut cfg = AgentConfig {
        aws_env: Some(vars),
        ..env.config()
    };
    if let Some(cw) = cfg.cloudwatch.as_mut() {
        cw.extra.push("max_backoff_secs: 1".into());
    }
    let mut agent = env.start(&cfg);
    wait_for(
        || {
            agent.assert_running("while credentials are refused");
            let denied = metric(
                &agent,
                "kubeship_cloudwatch_requests_total",
                &[("outcome", "denied")],
            );
            let readyz = agent.http_get("/readyz").map(|r| r.0).unwrap_or(0);
            denied >= 1.0 && readyz == 503
        },
        secs(20),
        "outcome=\"denied\" counted and /readyz 503 while no credentials load",
    );
    assert!(
        server.requests().iter().all(|r| r.status == 401),
        "the credentials endpoint refused every request so far"
    );
    assert_eq!(
        env.proxy.count(|e| e.operation() == "PutLogEvents"),
        0,
        "nothing is sent without credentials"
    );
    fs::write(&token_file, token).expect("fix token file");
    let mut d = CwDelivery::new(&env.moto);
    d.wait_all(&mut agent, &[(&name, 100)], secs(30));
    wait_for(
        || agent.http_get("/readyz").map(|r| r.0).unwrap_or(0) == 200,
        secs(10),
        "/readyz back to 200 once credentials load",
    );
    agent.stop(secs(10));
    drop(server);
}

// ---------------------------------------------------------------------------------------------
// Signatures checked by moto's IAM authentication

/// A query-protocol call (IAM, STS) to moto while its authentication is off; the answer's
/// XML. moto picks the service from the credential scope of the `Authorization` header,
/// which is not checked yet.
fn moto_query(env: &Env, service: &str, params: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let body = params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=testing/20261123/{TEST_AWS_REGION}/{service}/aws4_request, \
         SignedHeaders=host, Signature=0"
    );
    let headers = [
        (
            "Content-Type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("Authorization".to_string(), auth),
    ];
    let r = roundtrip(
        env.moto.addr(),
        "POST",
        "/",
        &headers,
        body.as_bytes(),
        secs(10),
    )
    .unwrap_or_else(|e| panic!("{service} {params:?}: {e}"));
    assert_eq!(r.status(), 200, "{service} {params:?}: {}", r.text());
    r.text()
}

/// Sets moto's count of requests served before authentication applies (`0`: from now on;
/// `inf`: never).
fn moto_auth_after(env: &Env, count: &str) {
    let r = roundtrip(
        env.moto.addr(),
        "POST",
        "/moto-api/reset-auth",
        &[],
        count.as_bytes(),
        secs(10),
    )
    .expect("moto reset-auth");
    assert_eq!(r.status(), 200, "moto reset-auth: {}", r.text());
}

/// With moto's IAM authentication on, moto recomputes every request's SigV4 signature
/// (botocore's signer, with the secret it issued) and checks the caller's policy. The agent
/// ships with an IAM user's keys, then with an assumed role's temporary credentials (session
/// token): every call is accepted, the day-key signer's PutLogEvents as well as the SDK's
/// lifecycle calls. With a wrong secret the same calls are refused (SignatureDoesNotMatch),
/// reported as denied, and nothing is delivered: moto does check.
#[test]
fn moto_checks_every_signature() {
    const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"logs:*","Resource":"*"}]}"#;
    const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}"#;
    let env = env();
    let iam = |params: &[(&str, &str)]| {
        let mut p = vec![("Version", "2010-05-08")];
        p.extend_from_slice(params);
        moto_query(&env, "iam", &p)
    };
    iam(&[("Action", "CreateUser"), ("UserName", "kubeship")]);
    iam(&[
        ("Action", "PutUserPolicy"),
        ("UserName", "kubeship"),
        ("PolicyName", "logs"),
        ("PolicyDocument", POLICY),
    ]);
    let key = iam(&[("Action", "CreateAccessKey"), ("UserName", "kubeship")]);
    let key_id = xml_text(&key, "AccessKeyId").expect("AccessKeyId");
    let secret = xml_text(&key, "SecretAccessKey").expect("SecretAccessKey");
    let role = iam(&[
        ("Action", "CreateRole"),
        ("RoleName", "kubeship-node"),
        ("AssumeRolePolicyDocument", TRUST),
    ]);
    let role_arn = xml_text(&role, "Arn").expect("role Arn");
    iam(&[
        ("Action", "PutRolePolicy"),
        ("RoleName", "kubeship-node"),
        ("PolicyName", "logs"),
        ("PolicyDocument", POLICY),
    ]);
    let assumed = moto_query(
        &env,
        "sts",
        &[
            ("Version", "2011-06-15"),
            ("Action", "AssumeRole"),
            ("RoleArn", &role_arn),
            ("RoleSessionName", "node-1"),
        ],
    );
    let temp_id = xml_text(&assumed, "AccessKeyId").expect("temporary AccessKeyId");
    let temp_secret = xml_text(&assumed, "SecretAccessKey").expect("temporary secret");
    let temp_token = xml_text(&assumed, "SessionToken").expect("SessionToken");
    moto_auth_after(&env, "0");

    // Started without waiting for /readyz: with refused calls it may never say ready.
    let run = |name: &str, keys: &[(&'static str, String)]| {
        let mut vars = aws_env_without_keys(TEST_AWS_REGION, env.node.root());
        vars.extend(keys.iter().cloned());
        let mut cfg = AgentConfig {
            aws_env: Some(vars),
            // The refused run gives up on its undelivered lines at shutdown.
            shutdown_timeout_secs: 3,
            ..env.config()
        };
        if let Some(cw) = cfg.cloudwatch.as_mut() {
            cw.extra.push("max_backoff_secs: 1".into());
        }
        let mut c = env.container("shop", &format!("{name}-7d4b9c-xk2lp"), name, Format::Cri);
        c.write_lines(300);
        (Agent::start(&env.node, &cfg), c)
    };
    let counter = |agent: &Agent, name: &str, labels: &[(&str, &str)]| {
        // 0 while the agent does not answer (starting or gone).
        match agent.metrics() {
            Ok(text) => metric_sum(&text, name, labels),
            Err(_) => 0.0,
        }
    };
    let sent = |agent: &Agent| counter(agent, "kubeship_cloudwatch_events_sent_total", &[]);

    // An IAM user's keys, then an assumed role's (the checkpoints carry over: each agent
    // ships only its own container's lines).
    let user = [
        ("AWS_ACCESS_KEY_ID", key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", secret.clone()),
    ];
    let temporary = [
        ("AWS_ACCESS_KEY_ID", temp_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", temp_secret),
        ("AWS_SESSION_TOKEN", temp_token.clone()),
    ];
    let mut names = Vec::new();
    for (pod, keys) in [("user", &user[..]), ("role", &temporary[..])] {
        let (mut agent, c) = run(pod, keys);
        wait_for(
            || {
                agent.assert_running("while shipping with moto's authentication on");
                sent(&agent) >= 300.0
            },
            secs(20),
            format!("300 events accepted by moto with authentication on ({pod})"),
        );
        agent.stop(secs(10));
        names.push(c.name().to_string());
    }
    let calls: Vec<Exchange> = env
        .proxy
        .exchanges()
        .into_iter()
        .filter(|e| e.target.starts_with("Logs_"))
        .collect();
    for op in ["PutLogEvents", "CreateLogStream", "CreateLogGroup"] {
        assert!(
            calls.iter().any(|e| e.operation() == op),
            "no {op} call: {}",
            env.proxy.summary()
        );
    }
    // Accepted, or (PutLogEvents before its stream exists) authenticated and then not found.
    for e in &calls {
        let body = String::from_utf8_lossy(&e.response_body);
        assert!(
            e.status == 200 || (e.status == 400 && body.contains("ResourceNotFoundException")),
            "request #{} ({}, key {:?}) refused by moto: {} {}",
            e.id,
            e.operation(),
            sigv4_key_id(e),
            e.status,
            body
        );
    }
    for key in [&key_id, &temp_id] {
        assert!(
            calls.iter().any(|e| e.operation() == "PutLogEvents"
                && sigv4_key_id(e).as_deref() == Some(key.as_str())),
            "no PutLogEvents signed with {key}"
        );
    }
    assert!(
        calls
            .iter()
            .filter(|e| sigv4_key_id(e).as_deref() == Some(temp_id.as_str()))
            .all(|e| e.header("x-amz-security-token") == Some(temp_token.as_str())),
        "the session token goes with the temporary key"
    );

    // A wrong secret: refused, reported, nothing delivered.
    let before = calls.len();
    let (mut agent, bad) = run(
        "refused",
        &[
            ("AWS_ACCESS_KEY_ID", key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", format!("{secret}x")),
        ],
    );
    wait_for(
        || {
            agent.assert_running("while its signatures are refused");
            let denied = counter(
                &agent,
                "kubeship_cloudwatch_requests_total",
                &[("outcome", "denied")],
            );
            let readyz = agent.http_get("/readyz").map(|r| r.0).unwrap_or(0);
            denied >= 2.0 && readyz == 503
        },
        secs(20),
        "outcome=\"denied\" counted and /readyz 503 while the signatures are refused",
    );
    assert_eq!(sent(&agent), 0.0, "nothing accepted with a wrong secret");
    let refused: Vec<Exchange> = env.proxy.exchanges()[..]
        .iter()
        .filter(|e| e.target.starts_with("Logs_"))
        .skip(before)
        .cloned()
        .collect();
    assert!(
        !refused.is_empty()
            && refused.iter().all(|e| e.status == 403
                && String::from_utf8_lossy(&e.response_body).contains("SignatureDoesNotMatch")),
        "every call with the wrong secret refused as SignatureDoesNotMatch: {}",
        env.proxy.summary()
    );
    agent.stop(secs(10));
    assert!(
        agent.stderr().contains("SignatureDoesNotMatch"),
        "the refusal is logged; stderr tail:\n{}",
        agent.stderr_tail(20)
    );

    // Read back without authentication: both containers complete, the third absent.
    moto_auth_after(&env, "inf");
    let mut d = CwDelivery::new(&env.moto);
    let mut reader = Agent::start(
        &env.node,
        &AgentConfig {
            include: vec!["nothing-matches-*".into()],
            ..env.config()
        },
    );
    d.wait_all(
        &mut reader,
        &[(names[0].as_str(), 300), (names[1].as_str(), 300)],
        secs(15),
    );
    reader.stop(secs(10));
    assert_eq!(
        d.records_of(bad.name()).count(),
        0,
        "a record sent with the wrong secret reached moto"
    );
}
