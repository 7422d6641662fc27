//! PutLogEvents without the SDK's orchestrator.
//!
//! PutLogEvents is the sink's one hot call (about one per stream per
//! `batch_timeout`). Through the SDK each call went through its interceptors,
//! endpoint and identity resolution, retry plumbing and request/response shape
//! handling: a third of the sink's CPU. Here the body the sink wrote
//! ([`request_body`](super::client::request_body)) is signed with SigV4
//! ([`Signer`]; aws-sigv4's general signer for an endpoint path other than `/`)
//! and sent on a keep-alive HTTP/1.1 connection ([`Conns`]: hyper, rustls with
//! the SDK's crypto provider and the system's roots; plain HTTP for an `http://`
//! `endpoint_url`), and the answer is read here: `rejectedLogEventsInfo` on
//! success, the AWS JSON 1.1 error type (or an XML error's code) otherwise, sorted
//! into [`Fail`] exactly as the SDK path sorts its errors.
//!
//! The endpoint is resolved once, at start, with the SDK's own resolver
//! (region, FIPS, dual stack, `endpoint_url` and the `AWS_ENDPOINT_URL*`
//! settings), so every partition gets the URL the SDK would use.
//! Credentials come from the [`CredentialCache`]; credentials a call was refused
//! with are dropped so the next call loads fresh ones. The clock skew an error
//! answer shows (its `Date`) is applied to later signatures, as the SDK does.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_sdk_cloudwatchlogs::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
use aws_smithy_types::date_time::{DateTime, Format};
use aws_smithy_types::error::display::DisplayErrorContext;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;

use super::client::{Fail, Rejected, fail_for_code};
use crate::aws::creds::{CredentialCache, HeldCredentials};
use crate::aws::sign::{Signable, Signer};
use crate::net::conn::Conns;
use crate::net::tls;

/// The service name requests are signed for.
const SIGNING_NAME: &str = "logs";
/// `X-Amz-Target` of PutLogEvents (AWS JSON 1.1).
const TARGET: &str = "Logs_20140328.PutLogEvents";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// Answers are small (`{"nextSequenceToken":…}` or an error); more is not read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why a PutLogEvents call failed.
#[derive(Debug, PartialEq, Eq)]
pub enum PutFail {
    /// ResourceNotFoundException: the stream (or group) is missing.
    NotFound,
    /// Anything else, by what to do about it.
    Other(Fail),
}

/// Where PutLogEvents goes.
struct Target {
    /// The endpoint (scheme, authority, path).
    uri: Uri,
    /// What the request line carries: the path (and query).
    origin_form: Uri,
    host: HeaderValue,
    /// Signs its requests.
    signer: Signer,
    /// The path is `/` (every AWS endpoint): the day-key signer applies; others are
    /// signed by aws-sigv4's general `sign`.
    root: bool,
}

/// Sends PutLogEvents bodies.
pub struct PutClient {
    conns: Conns,
    /// The endpoint, or why there is none (every call then fails with it).
    target: Result<Target, String>,
    creds: Arc<CredentialCache>,
    timeout: Duration,
    user_agent: HeaderValue,
    /// Server time minus ours, in ms, as last seen in an error answer.
    skew_ms: AtomicI64,
}

impl PutClient {
    /// A client for the endpoint `shared` (with `endpoint_url` over it) resolves to;
    /// each call may take `timeout`, its connection `connect_timeout` of that.
    pub async fn new(
        shared: &SdkConfig,
        endpoint_url: Option<&str>,
        creds: Arc<CredentialCache>,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Self {
        let target = resolve_target(shared, endpoint_url).await;
        if let Err(why) = &target {
            tracing::error!(error = %why, "no CloudWatch Logs endpoint; every PutLogEvents will fail");
        }
        Self {
            conns: Conns::new(https_connector(connect_timeout)),
            target,
            creds,
            timeout,
            user_agent: HeaderValue::from_static(concat!("kubeship/", env!("CARGO_PKG_VERSION"))),
            skew_ms: AtomicI64::new(0),
        }
    }

    /// Sends one PutLogEvents `body` and sorts the answer.
    pub async fn put(&self, body: Bytes) -> Result<Rejected, PutFail> {
        let target = self
            .target
            .as_ref()
            .map_err(|why| PutFail::Other(Fail::Transient(why.clone())))?;
        let held = self.creds.get().await.map_err(|e| {
            PutFail::Other(Fail::Auth(format!(
                "loading credentials: {}",
                DisplayErrorContext(&e)
            )))
        })?;
        let req = self
            .signed(target, &held, body)
            .map_err(|why| PutFail::Other(Fail::Auth(why)))?;
        let r = match tokio::time::timeout(self.timeout, self.exchange(target, req)).await {
            Err(_) => Err(PutFail::Other(Fail::Transient(format!(
                "PutLogEvents timed out after {:?}",
                self.timeout
            )))),
            Ok(Err(why)) => Err(PutFail::Other(Fail::Transient(why))),
            Ok(Ok(answer)) => {
                if let Some(date) = &answer.date {
                    self.note_skew(date);
                }
                parse_answer(answer.status, answer.error_type.as_deref(), &answer.body)
            }
        };
        if let Err(PutFail::Other(Fail::Auth(_))) = &r {
            self.creds.invalidate(held.generation);
        }
        r
    }

    /// The request, signed.
    fn signed(
        &self,
        target: &Target,
        held: &HeldCredentials,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, String> {
        let time = skewed(SystemTime::now(), self.skew_ms.load(Ordering::Relaxed));
        let req = signable(&body);
        let signed = if target.root {
            target.signer.sign(&held.creds, time, &req)
        } else {
            target
                .signer
                .sign_general(&target.uri.to_string(), &held.identity, time, &req)?
        };
        let value = |v: String, sensitive: bool| {
            let mut v = HeaderValue::try_from(v)
                .map_err(|_| "signing PutLogEvents: a header value is not valid".to_string())?;
            v.set_sensitive(sensitive);
            Ok::<_, String>(v)
        };
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = target.origin_form.clone();
        let h = req.headers_mut();
        h.insert(header::HOST, target.host.clone());
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        h.insert(
            HeaderName::from_static("x-amz-target"),
            HeaderValue::from_static(TARGET),
        );
        h.insert(header::USER_AGENT, self.user_agent.clone());
        h.insert(
            HeaderName::from_static("x-amz-date"),
            value(signed.amz_date, false)?,
        );
        h.insert(header::AUTHORIZATION, value(signed.authorization, true)?);
        if let Some(token) = signed.security_token {
            h.insert(
                HeaderName::from_static("x-amz-security-token"),
                value(token, true)?,
            );
        }
        Ok(req)
    }

    async fn exchange(&self, target: &Target, req: Request<Full<Bytes>>) -> Result<Answer, String> {
        let (head, body) = self
            .conns
            .exchange(&target.uri, req, MAX_ANSWER_BYTES)
            .await?;
        let text = |name: &str| {
            head.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let status = head.status;
        let error_type = (!status.is_success())
            .then(|| text("x-amzn-errortype"))
            .flatten();
        let date = (!status.is_success()).then(|| text("date")).flatten();
        Ok(Answer {
            status,
            error_type,
            date,
            body,
        })
    }

    /// Closes idle connections that timed out or that the server closed.
    pub fn sweep(&self) {
        self.conns.sweep();
    }

    /// Remembers how far the server's clock (an HTTP date) is from ours.
    fn note_skew(&self, date: &str) {
        let Ok(server) = DateTime::from_str(date, Format::HttpDate) else {
            return;
        };
        let ours = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let skew = server.to_millis().unwrap_or(ours) - ours;
        // HTTP dates have whole seconds: smaller differences are noise.
        let skew = if skew.abs() < 2_000 { 0 } else { skew };
        self.skew_ms.store(skew, Ordering::Relaxed);
    }
}

/// An HTTP exchange's outcome, read.
struct Answer {
    status: StatusCode,
    error_type: Option<String>,
    date: Option<String>,
    body: Bytes,
}

/// `now` moved by `skew_ms`.
fn skewed(now: SystemTime, skew_ms: i64) -> SystemTime {
    let d = Duration::from_millis(skew_ms.unsigned_abs());
    if skew_ms >= 0 { now + d } else { now - d }
}

/// The connector: TCP_NODELAY, then TLS (rustls with the aws-lc-rs provider and the
/// system's roots, as the SDK's default client) or plain HTTP.
fn https_connector(connect_timeout: Duration) -> HttpsConnector<HttpConnector> {
    tls::connector(tls::system_client_config(), connect_timeout)
}

/// The endpoint URL and signing region, resolved as the SDK client would.
async fn resolve_target(shared: &SdkConfig, endpoint_url: Option<&str>) -> Result<Target, String> {
    let region = shared
        .region()
        .map(|r| r.to_string())
        .ok_or("no AWS region: set output.cloudwatch.region, AWS_REGION, or a profile region")?;
    // The SDK's order: the client's own setting, the service's (AWS_ENDPOINT_URL_CLOUDWATCH_LOGS
    // or the profile's `services` section), then the global one (AWS_ENDPOINT_URL).
    let url = endpoint_url.map(str::to_string).or_else(|| {
        shared
            .service_config()
            .and_then(|c| {
                c.load_config(
                    aws_types::service_config::ServiceConfigKey::builder()
                        .service_id("CloudWatch Logs")
                        .env("AWS_ENDPOINT_URL")
                        .profile("endpoint_url")
                        .build()
                        .ok()?,
                )
            })
            .or_else(|| shared.endpoint_url().map(str::to_string))
    });
    let mut params = Params::builder()
        .region(region.clone())
        .use_fips(shared.use_fips().unwrap_or(false))
        .use_dual_stack(shared.use_dual_stack().unwrap_or(false));
    if let Some(url) = url {
        params = params.endpoint(url);
    }
    let params = params
        .build()
        .map_err(|e| format!("CloudWatch Logs endpoint parameters: {e}"))?;
    let endpoint = DefaultResolver::new()
        .resolve_endpoint(&params)
        .await
        .map_err(|e| format!("resolving the CloudWatch Logs endpoint: {e}"))?;
    target_of(endpoint.url(), region)
}

/// The target for an endpoint URL (an empty path is `/`).
fn target_of(url: &str, region: String) -> Result<Target, String> {
    let bad = |why: &dyn std::fmt::Display| format!("CloudWatch Logs endpoint {url}: {why}");
    let uri: Uri = url.parse().map_err(|e| bad(&e))?;
    let authority = uri.authority().ok_or_else(|| bad(&"no host"))?.clone();
    let mut parts = uri.into_parts();
    if parts
        .path_and_query
        .as_ref()
        .is_none_or(|p| p.as_str().is_empty())
    {
        parts.path_and_query = Some(hyper::http::uri::PathAndQuery::from_static("/"));
    }
    let origin_form = Uri::from(
        parts
            .path_and_query
            .clone()
            .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/")),
    );
    let uri = Uri::from_parts(parts).map_err(|e| bad(&e))?;
    let host = HeaderValue::from_str(authority.as_str()).map_err(|e| bad(&e))?;
    let root = uri.path() == "/" && uri.query().is_none();
    let signer = Signer::new(authority.as_str(), &region, SIGNING_NAME);
    Ok(Target {
        uri,
        origin_form,
        host,
        signer,
        root,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Accepted {
    rejected_log_events_info: Option<RejectedInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RejectedInfo {
    too_new_log_event_start_index: Option<i64>,
    too_old_log_event_end_index: Option<i64>,
    expired_log_event_end_index: Option<i64>,
}

/// The AWS JSON 1.1 error body's fields.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(rename = "__type")]
    kind: Option<String>,
    code: Option<String>,
    #[serde(alias = "Message", alias = "errorMessage")]
    message: Option<String>,
}

/// The text of the first `<tag>` of an XML error answer
/// (`<ErrorResponse><Error><Code>…</Code><Message>…`), which the query-protocol front of
/// some endpoints (and moto's signature check) sends.
fn xml_text<'a>(body: &'a [u8], tag: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find(&format!("<{tag}>"))? + tag.len() + 2;
    let len = text[start..].find(&format!("</{tag}>"))?;
    Some(text[start..start + len].trim())
}

/// The error code without a namespace (`ns#Code`) or a URL suffix (`Code:http…`),
/// as the SDK reads it.
fn sanitize_code(code: &str) -> &str {
    let code = code.split(':').next().unwrap_or(code);
    code.split_once('#').map_or(code, |(_, c)| c)
}

/// Sorts a PutLogEvents answer: its HTTP status, `x-amzn-ErrorType` header and body.
pub fn parse_answer(
    status: StatusCode,
    error_type: Option<&str>,
    body: &[u8],
) -> Result<Rejected, PutFail> {
    if status.is_success() {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Rejected::default());
        }
        let a: Accepted = serde_json::from_slice(body).map_err(|e| {
            PutFail::Other(Fail::Transient(format!(
                "unreadable PutLogEvents answer ({e})"
            )))
        })?;
        let idx = |v: Option<i64>| v.and_then(|i| usize::try_from(i).ok());
        return Ok(a
            .rejected_log_events_info
            .map(|r| Rejected {
                too_new_from: idx(r.too_new_log_event_start_index),
                too_old_until: idx(r.too_old_log_event_end_index),
                expired_until: idx(r.expired_log_event_end_index),
            })
            .unwrap_or_default());
    }
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let ErrorBody {
        kind,
        code,
        message,
    } = parsed.unwrap_or_default();
    let message = message.or_else(|| xml_text(body, "Message").map(str::to_string));
    let code = error_type
        .or(code.as_deref())
        .or(kind.as_deref())
        .or_else(|| xml_text(body, "Code"))
        .map(sanitize_code)
        .filter(|c| !c.is_empty());
    let Some(code) = code else {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
        let detail = format!("HTTP {}: {}", status.as_u16(), text.trim());
        // Refused without saying why: as refused as a denial.
        return Err(PutFail::Other(match status.as_u16() {
            401 | 403 => Fail::Auth(detail),
            _ => Fail::Transient(detail),
        }));
    };
    if code == "ResourceNotFoundException" {
        return Err(PutFail::NotFound);
    }
    Err(PutFail::Other(fail_for_code(code, || {
        format!("{code}: {}", message.as_deref().unwrap_or(""))
    })))
}

/// What SigV4 signs of a PutLogEvents request with `body`.
fn signable(body: &[u8]) -> Signable<'_> {
    Signable {
        method: "POST",
        path: "/",
        headers: &[("content-type", CONTENT_TYPE), ("x-amz-target", TARGET)],
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, header: Option<&str>, body: &str) -> PutFail {
        parse_answer(
            StatusCode::from_u16(status).unwrap(),
            header,
            body.as_bytes(),
        )
        .expect_err("an error")
    }

    #[test]
    fn accepted_answers() {
        let ok = |body: &str| parse_answer(StatusCode::OK, None, body.as_bytes());
        assert_eq!(ok(""), Ok(Rejected::default()));
        assert_eq!(ok(r#"{"nextSequenceToken":"49"}"#), Ok(Rejected::default()));
        assert_eq!(
            ok(
                r#"{"nextSequenceToken":"1","rejectedLogEventsInfo":{"tooNewLogEventStartIndex":8,"tooOldLogEventEndIndex":2,"expiredLogEventEndIndex":3}}"#
            ),
            Ok(Rejected {
                too_new_from: Some(8),
                too_old_until: Some(2),
                expired_until: Some(3),
            })
        );
        assert_eq!(
            ok(
                r#"{"rejectedLogEventsInfo":{"tooOldLogEventEndIndex":5,"tooNewLogEventStartIndex":null}}"#
            ),
            Ok(Rejected {
                too_old_until: Some(5),
                ..Rejected::default()
            })
        );
        assert!(matches!(
            ok("<html>"),
            Err(PutFail::Other(Fail::Transient(_)))
        ));
    }

    #[test]
    fn error_codes_sort_like_the_sdk_path() {
        // The proxy's and CloudWatch's shape: header and body.
        let aws = |code: &str, msg: &str| {
            err(
                400,
                Some(code),
                &format!(r#"{{"__type":"{code}","message":"{msg}"}}"#),
            )
        };
        assert_eq!(
            aws("ThrottlingException", "Rate exceeded"),
            PutFail::Other(Fail::Throttled)
        );
        assert_eq!(
            aws("LimitExceededException", ""),
            PutFail::Other(Fail::Throttled)
        );
        assert_eq!(
            aws("InvalidParameterException", "bad event"),
            PutFail::Other(Fail::Invalid("InvalidParameterException: bad event".into()))
        );
        assert_eq!(
            aws("ResourceNotFoundException", "no stream"),
            PutFail::NotFound
        );
        for code in [
            "AccessDeniedException",
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "ExpiredTokenException",
            "IncompleteSignature",
            "MissingAuthenticationToken",
            "SignatureDoesNotMatch",
            "InvalidClientTokenId",
            "AccessDenied",
        ] {
            assert!(
                matches!(aws(code, "no"), PutFail::Other(Fail::Auth(ref d)) if d.starts_with(code)),
                "{code}"
            );
        }
        let denied = aws(
            "AccessDeniedException",
            "User: arn:aws:sts::1:assumed-role/x is not authorized to perform: logs:PutLogEvents",
        );
        assert!(
            matches!(&denied, PutFail::Other(Fail::Auth(d)) if d.contains("not authorized to perform: logs:PutLogEvents")),
            "CloudWatch's message is kept: {denied:?}"
        );
        assert_eq!(
            err(
                503,
                Some("ServiceUnavailableException"),
                r#"{"__type":"ServiceUnavailableException"}"#
            ),
            PutFail::Other(Fail::Transient("ServiceUnavailableException: ".into()))
        );
    }

    #[test]
    fn error_code_sources_and_prefixes() {
        // Body only, with a namespace; `code` wins over `__type`; the header over both.
        assert_eq!(
            err(
                400,
                None,
                r#"{"__type":"com.amazonaws.logs#ThrottlingException","message":"x"}"#
            ),
            PutFail::Other(Fail::Throttled)
        );
        assert_eq!(
            err(
                400,
                None,
                r#"{"code":"ThrottlingException","__type":"Other"}"#
            ),
            PutFail::Other(Fail::Throttled)
        );
        assert_eq!(
            err(
                400,
                Some("ThrottlingException:http://internal.amazon.com/coral/"),
                r#"{"__type":"InvalidParameterException"}"#
            ),
            PutFail::Other(Fail::Throttled)
        );
        assert_eq!(
            err(
                400,
                None,
                r#"{"__type":"ExpiredTokenException","Message":"token expired"}"#
            ),
            PutFail::Other(Fail::Auth("ExpiredTokenException: token expired".into()))
        );
        assert_eq!(
            sanitize_code("aws.protocoltests#FooError:http://x/y"),
            "FooError"
        );
        assert_eq!(sanitize_code("FooError"), "FooError");
        // An XML error answer (query-protocol fronts; moto's signature check).
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message><Type>Sender</Type></Error></Errors></ErrorResponse>"#;
        assert_eq!(
            err(403, None, xml),
            PutFail::Other(Fail::Auth(
                "SignatureDoesNotMatch: The request signature we calculated does not match".into()
            ))
        );
        assert_eq!(
            err(
                400,
                None,
                "<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>"
            ),
            PutFail::Other(Fail::Throttled)
        );
        assert_eq!(
            xml_text(b"<Code> InvalidClientTokenId </Code>", "Code"),
            Some("InvalidClientTokenId")
        );
        assert_eq!(xml_text(b"<Code>open", "Code"), None);
    }

    #[test]
    fn answers_without_an_error_code_are_transient_unless_refused() {
        for (status, body) in [(502, "<html>Bad Gateway</html>"), (503, ""), (500, "{}")] {
            assert!(
                matches!(err(status, None, body), PutFail::Other(Fail::Transient(ref d)) if d.starts_with(&format!("HTTP {status}"))),
                "{status} {body:?}"
            );
        }
        // 401 and 403 refuse the caller: reported like a denial (and retried like one).
        for (status, body) in [(403, "Forbidden"), (401, "")] {
            assert!(
                matches!(err(status, None, body), PutFail::Other(Fail::Auth(ref d)) if d.starts_with(&format!("HTTP {status}"))),
                "{status} {body:?}"
            );
        }
        // An unknown code: retried as transient, its message kept.
        assert_eq!(
            err(
                500,
                None,
                r#"{"__type":"InternalFailure","message":"oops"}"#
            ),
            PutFail::Other(Fail::Transient("InternalFailure: oops".into()))
        );
    }

    #[test]
    fn endpoint_urls_become_targets() {
        let t = target_of("http://127.0.0.1:4566", "us-east-1".into()).expect("target");
        assert_eq!(t.uri.to_string(), "http://127.0.0.1:4566/");
        assert_eq!(t.host, "127.0.0.1:4566");
        let t = target_of("https://logs.eu-west-1.amazonaws.com", "eu-west-1".into()).unwrap();
        assert_eq!(t.uri.to_string(), "https://logs.eu-west-1.amazonaws.com/");
        assert_eq!(t.host, "logs.eu-west-1.amazonaws.com");
        assert!(t.root);
        let t = target_of("https://vpce-1.logs.example/prefix", "x".into()).unwrap();
        assert_eq!(t.uri.path(), "/prefix");
        assert!(
            !t.root,
            "another path is signed by aws-sigv4's general signer"
        );
        assert!(target_of("not a url", "x".into()).is_err());
    }

    #[test]
    fn both_signers_sign_a_root_endpoint_alike() {
        use aws_credential_types::Credentials;
        let t = target_of("https://logs.eu-west-1.amazonaws.com", "eu-west-1".into()).unwrap();
        let creds = Credentials::new("ASIAX", "s3cr/t", Some("tok==".into()), None, "t");
        let identity = creds.clone().into();
        let time = UNIX_EPOCH + Duration::from_secs(1_795_000_123);
        let fast = t.signer.sign(&creds, time, &signable(b"{}"));
        let general = t
            .signer
            .sign_general(&t.uri.to_string(), &identity, time, &signable(b"{}"));
        assert_eq!(fast, general.unwrap());
        assert!(
            fast.authorization
                .contains("/20261118/eu-west-1/logs/aws4_request")
        );
        assert_eq!(fast.security_token.as_deref(), Some("tok=="));
    }

    #[tokio::test]
    async fn the_sdk_resolver_picks_the_partition() {
        let resolve = |region: &str, fips: bool| {
            let shared = SdkConfig::builder()
                .region(aws_config::Region::new(region.to_string()))
                .use_fips(fips)
                .build();
            async move {
                resolve_target(&shared, None)
                    .await
                    .expect("endpoint")
                    .uri
                    .to_string()
            }
        };
        assert_eq!(
            resolve("eu-west-1", false).await,
            "https://logs.eu-west-1.amazonaws.com/"
        );
        assert_eq!(
            resolve("cn-north-1", false).await,
            "https://logs.cn-north-1.amazonaws.com.cn/"
        );
        assert_eq!(
            resolve("us-east-1", true).await,
            "https://logs-fips.us-east-1.amazonaws.com/"
        );
        let shared = SdkConfig::builder()
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let t = resolve_target(&shared, Some("http://127.0.0.1:9"))
            .await
            .unwrap();
        assert_eq!(t.uri.to_string(), "http://127.0.0.1:9/");
        let none = SdkConfig::builder().build();
        assert!(resolve_target(&none, None).await.is_err(), "no region");
    }

    #[test]
    fn skew_moves_the_signing_time() {
        let t = UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(skewed(t, 0), t);
        assert_eq!(skewed(t, 5_000), t + Duration::from_secs(5));
        assert_eq!(skewed(t, -5_000), t - Duration::from_secs(5));
    }
}
