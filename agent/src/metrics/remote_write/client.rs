//! One remote-write endpoint's HTTP side: the request as remote write 1.0 specifies
//! it, authentication, and the answer sorted into what the sender does about it.
//!
//! Requests go out on keep-alive HTTP/1.1 connections the sender's own future
//! drives (`net::conn`, as the CloudWatch sink's PutLogEvents), TLS per the
//! endpoint's settings (`net::tls`). Headers: `Content-Encoding: snappy`,
//! `Content-Type: application/x-protobuf`, `X-Prometheus-Remote-Write-Version:
//! 0.1.0`, `User-Agent: kubeship/<version>`, and the endpoint's authentication:
//! SigV4 for service `aps` (Amazon Managed Service for Prometheus; the three remote
//! write headers are signed with `host` and the body), basic, or bearer (secrets
//! read from files, again whenever a file changes).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_types::date_time::{DateTime, Format};
use aws_smithy_types::error::display::DisplayErrorContext;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};

use crate::aws::creds::CredentialCache;
use crate::aws::sign::{Signable, Signer};
use crate::config::{Auth, RemoteWriteConfig};
use crate::net::conn::Conns;
use crate::net::tls;

/// `Content-Encoding` of a remote-write body.
pub const CONTENT_ENCODING: &str = "snappy";
/// `Content-Type` of a remote-write body.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// The protocol version header's name and value (remote write 1.0).
pub const VERSION_HEADER: &str = "x-prometheus-remote-write-version";
/// Remote write 1.0.
pub const VERSION: &str = "0.1.0";
/// The service Amazon Managed Service for Prometheus signs for.
pub const SIGV4_SERVICE: &str = "aps";
/// `User-Agent`.
pub const USER_AGENT: &str = concat!("kubeship/", env!("CARGO_PKG_VERSION"));
/// The most of an answer's body read (for the log line of a refusal).
const MAX_ANSWER_BYTES: usize = 4096;
/// The longest `Retry-After` honoured as given; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// A new connection's share of the request timeout, at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request should be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryKind {
    /// A 5xx answer.
    Status5xx,
    /// 429 Too Many Requests.
    TooMany,
    /// No answer: connection, TLS, timeout; or no credentials, no secret file.
    NoAnswer,
}

/// What a request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A 2xx answer.
    Accepted,
    /// Worth sending again, after `retry_after` when the endpoint said so.
    Retry {
        /// Why.
        kind: RetryKind,
        /// The answer's `Retry-After`.
        retry_after: Option<Duration>,
        /// For the log line: status and the answer's text, or the error.
        detail: String,
    },
    /// Refused (a 4xx other than 429): sending it again would be refused again.
    Refused {
        /// The status code.
        status: u16,
        /// The answer's text, cut.
        detail: String,
    },
}

/// A secret read from a file, again when the file's modification time changes.
struct SecretFile {
    path: PathBuf,
    held: Mutex<Option<(SystemTime, Arc<str>)>>,
}

impl SecretFile {
    fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            held: Mutex::new(None),
        }
    }

    /// The file's content without its trailing newline.
    fn get(&self) -> Result<Arc<str>, String> {
        let what = |e: std::io::Error| format!("reading {}: {e}", self.path.display());
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .map_err(what)?;
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, secret)) = held.as_ref()
            && *at == modified
        {
            return Ok(Arc::clone(secret));
        }
        let text = std::fs::read_to_string(&self.path).map_err(what)?;
        let secret: Arc<str> = text.trim_end_matches(['\r', '\n']).into();
        *held = Some((modified, Arc::clone(&secret)));
        Ok(secret)
    }
}

/// How requests are authenticated.
enum Authn {
    None,
    SigV4 {
        signer: Signer,
        creds: Arc<CredentialCache>,
        /// The path needs encoding: aws-sigv4's general signer signs it.
        general: bool,
    },
    Basic {
        username: String,
        password: SecretFile,
    },
    Bearer(SecretFile),
}

/// Sends one endpoint's requests.
pub struct Client {
    conns: Conns,
    uri: Uri,
    origin_form: Uri,
    host: HeaderValue,
    authn: Authn,
    timeout: Duration,
}

/// What building a client needs besides the endpoint's config.
pub struct Aws {
    /// The AWS chain's credentials, cached.
    pub creds: Arc<CredentialCache>,
    /// The region to sign for.
    pub region: String,
}

impl Client {
    /// The client of `cfg`; `aws` must be given for a SigV4 endpoint.
    pub fn new(cfg: &RemoteWriteConfig, aws: Option<Aws>) -> Result<Self, String> {
        let uri: Uri = cfg
            .url
            .parse()
            .map_err(|e| format!("remote write url {}: {e}", cfg.url))?;
        let authority = uri
            .authority()
            .ok_or_else(|| format!("remote write url {}: no host", cfg.url))?
            .clone();
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let origin_form: Uri = path
            .parse()
            .map_err(|e| format!("remote write url {}: {e}", cfg.url))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| format!("remote write url {}: {e}", cfg.url))?;
        let authn = match &cfg.auth {
            Auth::None => Authn::None,
            Auth::SigV4 { .. } => {
                let aws = aws.ok_or("SigV4 without AWS credentials")?;
                Authn::SigV4 {
                    signer: Signer::new(authority.as_str(), &aws.region, SIGV4_SERVICE),
                    creds: aws.creds,
                    general: !Signer::signs_path(path),
                }
            }
            Auth::Basic {
                username,
                password_file,
            } => Authn::Basic {
                username: username.clone(),
                password: SecretFile::new(password_file),
            },
            Auth::Bearer { token_file } => Authn::Bearer(SecretFile::new(token_file)),
        };
        let extra_roots = match &cfg.tls.ca_file {
            Some(f) => tls::pem_certificates(f)?,
            None => Vec::new(),
        };
        let tls = tls::client_config(if cfg.tls.insecure_skip_verify {
            tls::Trust::Any
        } else {
            tls::Trust::System(extra_roots)
        })?;
        let connect_timeout = CONNECT_TIMEOUT.min(cfg.request_timeout);
        Ok(Self {
            conns: Conns::new(tls::connector(tls, connect_timeout)),
            uri,
            origin_form,
            host,
            authn,
            timeout: cfg.request_timeout,
        })
    }

    /// Sends one compressed `WriteRequest` and sorts the answer.
    pub async fn send(&self, body: Bytes) -> Answer {
        let (req, generation) = match self.request(body).await {
            Ok(r) => r,
            Err(detail) => {
                return Answer::Retry {
                    kind: RetryKind::NoAnswer,
                    retry_after: None,
                    detail,
                };
            }
        };
        let exchange = self.conns.exchange(&self.uri, req, MAX_ANSWER_BYTES);
        let (head, body) = match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => {
                return Answer::Retry {
                    kind: RetryKind::NoAnswer,
                    retry_after: None,
                    detail: format!("no answer within {:?}", self.timeout),
                };
            }
            Ok(Err(e)) => {
                return Answer::Retry {
                    kind: RetryKind::NoAnswer,
                    retry_after: None,
                    detail: e,
                };
            }
            Ok(Ok(answer)) => answer,
        };
        let answer = sort(
            head.status,
            header_text(&head.headers, "retry-after"),
            &body,
        );
        if let (
            Answer::Refused {
                status: 401 | 403, ..
            },
            Authn::SigV4 { creds, .. },
            Some(g),
        ) = (&answer, &self.authn, generation)
        {
            // Refused with these credentials: the next request loads them again.
            creds.invalidate(g);
        }
        answer
    }

    /// The request for `body`, authenticated; with SigV4, which credentials signed it.
    async fn request(&self, body: Bytes) -> Result<(Request<Full<Bytes>>, Option<u64>), String> {
        let mut generation = None;
        let mut auth: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(3);
        let sensitive = |v: String| {
            let mut v = HeaderValue::try_from(v)
                .map_err(|_| "an authentication header value is not valid".to_string())?;
            v.set_sensitive(true);
            Ok::<_, String>(v)
        };
        match &self.authn {
            Authn::None => {}
            Authn::SigV4 {
                signer,
                creds,
                general,
            } => {
                let held = creds
                    .get()
                    .await
                    .map_err(|e| format!("loading AWS credentials: {}", DisplayErrorContext(&e)))?;
                generation = Some(held.generation);
                let signable = Signable {
                    method: "POST",
                    path: self.origin_form.path(),
                    headers: &SIGNED_HEADERS,
                    body: &body,
                };
                let now = SystemTime::now();
                let signed = if *general {
                    signer.sign_general(&self.uri.to_string(), &held.identity, now, &signable)?
                } else {
                    signer.sign(&held.creds, now, &signable)
                };
                auth.push((
                    HeaderName::from_static("x-amz-date"),
                    HeaderValue::try_from(signed.amz_date)
                        .map_err(|_| "x-amz-date is not a header value".to_string())?,
                ));
                auth.push((header::AUTHORIZATION, sensitive(signed.authorization)?));
                if let Some(token) = signed.security_token {
                    auth.push((
                        HeaderName::from_static("x-amz-security-token"),
                        sensitive(token)?,
                    ));
                }
            }
            Authn::Basic { username, password } => {
                let password = password.get()?;
                let pair = format!("{username}:{password}");
                auth.push((
                    header::AUTHORIZATION,
                    sensitive(format!("Basic {}", base64(pair.as_bytes())))?,
                ));
            }
            Authn::Bearer(token) => {
                let token = token.get()?;
                auth.push((header::AUTHORIZATION, sensitive(format!("Bearer {token}"))?));
            }
        }
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.origin_form.clone();
        let h = req.headers_mut();
        h.insert(header::HOST, self.host.clone());
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(CONTENT_ENCODING),
        );
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        h.insert(
            HeaderName::from_static(VERSION_HEADER),
            HeaderValue::from_static(VERSION),
        );
        h.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        for (name, value) in auth {
            h.insert(name, value);
        }
        Ok((req, generation))
    }

    /// Closes idle connections that timed out or that the server closed.
    pub fn sweep(&self) {
        self.conns.sweep();
    }
}

/// The headers SigV4 signs besides `host` and `x-amz-date`, sorted.
const SIGNED_HEADERS: [(&str, &str); 3] = [
    ("content-encoding", CONTENT_ENCODING),
    ("content-type", CONTENT_TYPE),
    (VERSION_HEADER, VERSION),
];

fn header_text<'a>(headers: &'a hyper::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Sorts an answer by its status: 2xx accepted, 429 and 5xx retried (after
/// `Retry-After` when given), any other status refused.
pub fn sort(status: StatusCode, retry_after: Option<&str>, body: &[u8]) -> Answer {
    if status.is_success() {
        return Answer::Accepted;
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
    let detail = format!("HTTP {}: {}", status.as_u16(), text.trim());
    let retry = |kind| Answer::Retry {
        kind,
        retry_after: retry_after.and_then(|v| parse_retry_after(v, SystemTime::now())),
        detail: detail.clone(),
    };
    match status.as_u16() {
        429 => retry(RetryKind::TooMany),
        500..=599 => retry(RetryKind::Status5xx),
        s => Answer::Refused { status: s, detail },
    }
}

/// A `Retry-After` value: delay seconds or an HTTP date, at most [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = DateTime::from_str(value, Format::HttpDate).ok()?;
        let at_ms = at.to_millis().ok()?;
        let now_ms = now.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64;
        Duration::from_millis(u64::try_from(at_ms - now_ms).unwrap_or(0))
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Standard base64 with padding (basic authentication).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_sorted_by_status() {
        let ok = |s: u16| sort(StatusCode::from_u16(s).unwrap(), None, b"");
        assert_eq!(ok(200), Answer::Accepted);
        assert_eq!(ok(204), Answer::Accepted);
        for s in [500, 502, 503, 599] {
            assert!(
                matches!(
                    ok(s),
                    Answer::Retry {
                        kind: RetryKind::Status5xx,
                        ..
                    }
                ),
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 409, 413, 422] {
            assert!(
                matches!(ok(s), Answer::Refused { status, .. } if status == s),
                "{s}"
            );
        }
        let limited = sort(
            StatusCode::TOO_MANY_REQUESTS,
            Some("7"),
            b"ingestion rate limit exceeded",
        );
        assert_eq!(
            limited,
            Answer::Retry {
                kind: RetryKind::TooMany,
                retry_after: Some(Duration::from_secs(7)),
                detail: "HTTP 429: ingestion rate limit exceeded".into()
            }
        );
        let refused = sort(StatusCode::BAD_REQUEST, Some("1"), b"out of order sample\n");
        assert_eq!(
            refused,
            Answer::Refused {
                status: 400,
                detail: "HTTP 400: out of order sample".into()
            },
            "not retried whatever Retry-After says"
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after(" 30 ", now),
            Some(Duration::from_secs(30))
        );
        // 2023-11-14T22:13:20Z is 1_700_000_000.
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:13:45 GMT", now),
            Some(Duration::from_secs(25))
        );
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past: at once"
        );
        assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn base64_of_basic_credentials() {
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
    }

    #[test]
    fn secret_files_are_read_again_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "one\n").unwrap();
        let s = SecretFile::new(&f);
        assert_eq!(&*s.get().unwrap(), "one");
        std::fs::write(&f, "two\r\n").unwrap();
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(&*s.get().unwrap(), "two");
        std::fs::remove_file(&f).unwrap();
        assert!(s.get().unwrap_err().contains("token"));
    }
}
