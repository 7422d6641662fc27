//! The CloudWatch Logs API as the sink uses it: PutLogEvents, and creating a
//! missing stream (and group) on ResourceNotFoundException. PutLogEvents goes out
//! through [`PutClient`] (signed and sent without the SDK's orchestrator); the rare
//! lifecycle calls through the SDK client. Both share one [`CredentialCache`].
//! Errors are sorted into what the dispatcher does about them ([`Fail`]), the same
//! way for both. The SDK's own retries are off: the dispatcher retries, so every
//! attempt is counted and backs off the same way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::config::IdentityCache;
use aws_sdk_cloudwatchlogs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatchlogs::types::LogGroupClass;
use bytes::Bytes;

use super::batcher::QueuedEvent;
use super::metrics::Outcome;
use super::put::{PutClient, PutFail};
use crate::aws::creds::{CredentialCache, LOAD_TIMEOUT, SharedCache};
use crate::config::CloudWatchConfig;
use crate::logs::encode::{escape_json_text_into, escape_str_into};

/// (group, stream).
type StreamKey = (String, String);

/// Streams remembered as created before the memory is cleared.
const CREATED_MEMORY: usize = 10_000;

/// Why a call failed, by what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    /// Throttled: retry later, send less at once.
    Throttled,
    /// 5xx, timeout, connection error: retry later.
    Transient(String),
    /// The request itself is wrong (InvalidParameterException): split it.
    Invalid(String),
    /// Credentials or permissions: retry later, report not ready.
    Auth(String),
    /// The log group does not exist and `create_group` is off: retry later.
    NoGroup(String),
}

impl Fail {
    /// The `outcome` label of `kubeship_cloudwatch_requests_total`.
    pub fn outcome(&self) -> Outcome {
        match self {
            Fail::Throttled => Outcome::Throttled,
            Fail::Transient(_) => Outcome::Error,
            Fail::Invalid(_) => Outcome::Invalid,
            Fail::Auth(_) => Outcome::Denied,
            Fail::NoGroup(_) => Outcome::NoGroup,
        }
    }
}

/// Events CloudWatch accepted the request for but rejected, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// Newer than 2 h in the future: indexes from here on.
    pub too_new_from: Option<usize>,
    /// Older than 14 days: indexes below this.
    pub too_old_until: Option<usize>,
    /// Older than the group's retention: indexes below this.
    pub expired_until: Option<usize>,
}

/// The clients plus what they remember about groups and streams created.
pub struct Api {
    client: Client,
    puts: PutClient,
    cfg: CloudWatchConfig,
    groups_created: tokio::sync::Mutex<HashMap<String, Instant>>,
    created_streams: Mutex<HashMap<StreamKey, Instant>>,
    creating: Mutex<HashMap<StreamKey, Arc<tokio::sync::Mutex<()>>>>,
    create_pacer: tokio::sync::Mutex<Instant>,
}

/// No AWS region anywhere the SDK looks (`output.cloudwatch.region`, `AWS_REGION`,
/// `AWS_DEFAULT_REGION`, the profile, instance metadata): without one there is no
/// endpoint to call and nothing to sign for, so every call would fail for ever.
#[derive(Debug, thiserror::Error)]
#[error(
    "no AWS region: set output.cloudwatch.region in the config or AWS_REGION in the \
     environment (AWS_DEFAULT_REGION, the AWS profile and instance metadata gave none either)"
)]
pub struct NoRegion;

/// What the lifecycle calls did (for metrics).
#[derive(Debug, Default, Clone, Copy)]
pub struct Created {
    /// Streams created.
    pub streams: u64,
    /// Groups created.
    pub groups: u64,
}

impl Api {
    /// Closes PutLogEvents connections that idled too long or were closed by the server.
    pub fn sweep(&self) {
        self.puts.sweep();
    }

    /// Builds the client from the AWS chain, the configured region and endpoint.
    /// The region is resolved here, as the SDK does (the configured one, else
    /// `AWS_REGION`/`AWS_DEFAULT_REGION`, the profile, instance metadata); none is an
    /// error, found before anything is sent.
    pub async fn new(cfg: &CloudWatchConfig) -> Result<Self, NoRegion> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &cfg.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let shared = loader.load().await;
        if shared.region().is_none() {
            return Err(NoRegion);
        }
        let creds = Arc::new(CredentialCache::new(
            shared.credentials_provider(),
            LOAD_TIMEOUT,
        ));
        let connect_timeout = Duration::from_secs(5).min(cfg.request_timeout);
        // The SDK client takes its credentials from the same cache, not a cache of its own.
        let mut b = aws_sdk_cloudwatchlogs::config::Builder::from(&shared)
            .credentials_provider(SharedCache(Arc::clone(&creds)))
            .identity_cache(IdentityCache::no_cache())
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(cfg.request_timeout)
                    .connect_timeout(connect_timeout)
                    .build(),
            );
        if let Some(url) = &cfg.endpoint_url {
            b = b.endpoint_url(url);
        }
        let puts = PutClient::new(
            &shared,
            cfg.endpoint_url.as_deref(),
            creds,
            cfg.request_timeout,
            connect_timeout,
        )
        .await;
        Ok(Self {
            client: Client::from_conf(b.build()),
            puts,
            cfg: cfg.clone(),
            groups_created: tokio::sync::Mutex::new(HashMap::new()),
            created_streams: Mutex::new(HashMap::new()),
            creating: Mutex::new(HashMap::new()),
            create_pacer: tokio::sync::Mutex::new(Instant::now()),
        })
    }

    /// Sends one request; on ResourceNotFoundException creates what is missing and
    /// sends it once more.
    pub async fn put(
        &self,
        group: &str,
        stream: &str,
        events: &[QueuedEvent],
    ) -> (Result<Rejected, Fail>, Created) {
        let mut created = Created::default();
        let sent = Instant::now();
        match self.put_once(group, stream, events).await {
            Err(PutFail::NotFound) => {}
            Err(PutFail::Other(f)) => return (Err(f), created),
            Ok(r) => return (Ok(r), created),
        }
        // One creation per stream at a time: requests that found it missing together
        // wait for the first one's creation instead of each creating it. One created
        // before this request was sent and missing now is gone again: created anew.
        let key = (group.to_string(), stream.to_string());
        let gate = {
            let mut c = self.creating.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(c.entry(key.clone()).or_default())
        };
        let guard = gate.lock().await;
        let made_by_other = self.created_since(&key, sent);
        if !made_by_other {
            if let Err(f) = self.create_stream(group, stream, &mut created).await {
                return (Err(f), created);
            }
            self.note_created(key.clone());
        }
        drop(guard);
        self.creating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        let r = match self.put_once(group, stream, events).await {
            Ok(r) => Ok(r),
            Err(PutFail::NotFound) => {
                // Deleted again (or never there): create it next time.
                self.forget_created(&key);
                Err(Fail::Transient("stream not found after creating it".into()))
            }
            Err(PutFail::Other(f)) => Err(f),
        };
        (r, created)
    }

    /// Whether this agent created the stream at or after `t`.
    fn created_since(&self, key: &StreamKey, t: Instant) -> bool {
        self.created_streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .is_some_and(|at| *at >= t)
    }

    /// Notes that the stream was created now. The memory is a cache: it is cleared
    /// when it grows large.
    fn note_created(&self, key: StreamKey) {
        let mut s = self
            .created_streams
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if s.len() >= CREATED_MEMORY {
            s.clear();
        }
        s.insert(key, Instant::now());
    }

    fn forget_created(&self, key: &StreamKey) {
        self.created_streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    async fn put_once(
        &self,
        group: &str,
        stream: &str,
        events: &[QueuedEvent],
    ) -> Result<Rejected, PutFail> {
        self.puts
            .put(Bytes::from(request_body(group, stream, events)))
            .await
    }

    /// Waits for this node's CreateLogStream / CreateLogGroup pace.
    async fn pace(&self) {
        let interval = Duration::from_secs(1) / self.cfg.create_stream_per_sec.max(1);
        let at = {
            let mut next = self.create_pacer.lock().await;
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + interval;
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }

    async fn create_stream(
        &self,
        group: &str,
        stream: &str,
        created: &mut Created,
    ) -> Result<(), Fail> {
        self.pace().await;
        let asked = Instant::now();
        let r = self
            .client
            .create_log_stream()
            .log_group_name(group)
            .log_stream_name(stream)
            .send()
            .await;
        match r {
            Ok(_) => {
                created.streams += 1;
                Ok(())
            }
            Err(e) if code(&e) == Some("ResourceAlreadyExistsException") => Ok(()),
            Err(e) if code(&e) == Some("ResourceNotFoundException") => {
                if !self.cfg.create_group {
                    return Err(Fail::NoGroup(format!(
                        "log group {group} does not exist and output.cloudwatch.create_group is false"
                    )));
                }
                self.create_group(group, asked, created).await?;
                self.pace().await;
                match self
                    .client
                    .create_log_stream()
                    .log_group_name(group)
                    .log_stream_name(stream)
                    .send()
                    .await
                {
                    Ok(_) => {
                        created.streams += 1;
                        Ok(())
                    }
                    Err(e) if code(&e) == Some("ResourceAlreadyExistsException") => Ok(()),
                    Err(e) => Err(classify(&e)),
                }
            }
            Err(e) => Err(classify(&e)),
        }
    }

    /// Creates the group (with retention, class, key, tags), found missing by a call
    /// sent at `missing_at`, unless this agent created it since: concurrent callers
    /// that found it missing together wait for one creation. A group created earlier
    /// and gone since (deleted, or the endpoint's state lost) is created again at once.
    async fn create_group(
        &self,
        group: &str,
        missing_at: Instant,
        created: &mut Created,
    ) -> Result<(), Fail> {
        let mut recent = self.groups_created.lock().await;
        if recent.get(group).is_some_and(|t| *t >= missing_at) {
            return Ok(());
        }
        self.pace().await;
        let mut req = self.client.create_log_group().log_group_name(group);
        if let Some(k) = &self.cfg.kms_key_id {
            req = req.kms_key_id(k);
        }
        if let Some(c) = &self.cfg.log_group_class {
            req = req.log_group_class(LogGroupClass::from(c.as_str()));
        }
        for (k, v) in &self.cfg.tags {
            req = req.tags(k, v);
        }
        match req.send().await {
            Ok(_) => created.groups += 1,
            Err(e) if code(&e) == Some("ResourceAlreadyExistsException") => {}
            Err(e) => return Err(classify(&e)),
        }
        if let Some(days) = self.cfg.retention_days {
            self.client
                .put_retention_policy()
                .log_group_name(group)
                .retention_in_days(days)
                .send()
                .await
                .map_err(|e| classify(&e))?;
        }
        if recent.len() >= CREATED_MEMORY {
            recent.clear();
        }
        recent.insert(group.to_string(), Instant::now());
        Ok(())
    }
}

/// The PutLogEvents JSON body: messages are the records' JSON as a JSON string,
/// copied when the tailer wrote them escaped, else escaped here in one pass.
pub fn request_body(group: &str, stream: &str, events: &[QueuedEvent]) -> Vec<u8> {
    // Escaping adds a byte per quote: about one in a dozen bytes of a record.
    let size: usize = events
        .iter()
        .map(|e| {
            let len: usize = e.parts().iter().map(|p| p.len()).sum();
            48 + if e.escaped() { len } else { len * 9 / 8 }
        })
        .sum();
    let mut out = Vec::with_capacity(size + group.len() + stream.len() + 64);
    out.extend_from_slice(b"{\"logGroupName\":\"");
    escape_str_into(group, &mut out);
    out.extend_from_slice(b"\",\"logStreamName\":\"");
    escape_str_into(stream, &mut out);
    out.extend_from_slice(b"\",\"logEvents\":[");
    for (i, ev) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"timestamp\":");
        push_decimal(ev.ts_ms, &mut out);
        out.extend_from_slice(b",\"message\":\"");
        let escaped = ev.escaped();
        for part in ev.parts() {
            if escaped {
                out.extend_from_slice(part);
            } else {
                escape_json_text_into(part, &mut out);
            }
        }
        out.extend_from_slice(b"\"}");
    }
    out.extend_from_slice(b"]}");
    out
}

/// Appends `v` in decimal (no allocation, unlike `to_string`).
fn push_decimal(v: i64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[i..]);
}

fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    match e {
        SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

/// What to do about a call CloudWatch Logs refused with error `code` (other than
/// ResourceNotFoundException, which the caller handles); `detail` describes it.
pub fn fail_for_code(code: &str, detail: impl FnOnce() -> String) -> Fail {
    match code {
        "ThrottlingException"
        | "LimitExceededException"
        | "TooManyRequestsException"
        | "Throttling" => Fail::Throttled,
        "InvalidParameterException" | "ValidationException" | "SerializationException" => {
            Fail::Invalid(detail())
        }
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "SignatureDoesNotMatch"
        | "InvalidClientTokenId"
        | "AccessDenied" => Fail::Auth(detail()),
        _ => Fail::Transient(detail()),
    }
}

/// Sorts an SDK error by what to do about it.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    e: &SdkError<E, R>,
) -> Fail {
    let detail = || match e {
        SdkError::ServiceError(s) => {
            format!(
                "{}: {}",
                s.err().code().unwrap_or("unknown"),
                s.err().message().unwrap_or("")
            )
        }
        other => format!(
            "{}",
            aws_sdk_cloudwatchlogs::error::DisplayErrorContext(other)
        ),
    };
    match e {
        SdkError::ServiceError(_) => fail_for_code(code(e).unwrap_or(""), detail),
        // Credentials that cannot be loaded (web identity refused, container
        // credentials endpoint answering 401, no provider) fail before sending:
        // as refused as a denied call, and reported the same way.
        _ => {
            let d = detail();
            if d.to_ascii_lowercase().contains("credential") {
                Fail::Auth(d)
            } else {
                Fail::Transient(d)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::batcher::Message;
    use super::*;
    use std::sync::Arc;

    #[test]
    fn request_body_is_the_put_log_events_json() {
        let rec = r#"{"log":"say \"hi\"\\ é","stream":"stdout"}"#;
        let evs = vec![
            QueuedEvent {
                ts_ms: 1_700_000_000_123,
                seq: 1,
                json_len: rec.len() as u32,
                msg: Message::Owned(Arc::from(rec)),
            },
            QueuedEvent {
                ts_ms: -5,
                seq: 1,
                json_len: 2,
                msg: Message::Owned(Arc::from("{}")),
            },
        ];
        let body = request_body("/aws/g\"x", "s", &evs);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(v["logGroupName"], "/aws/g\"x");
        assert_eq!(v["logStreamName"], "s");
        assert_eq!(v["logEvents"][0]["timestamp"], 1_700_000_000_123i64);
        assert_eq!(v["logEvents"][0]["message"], rec);
        assert_eq!(v["logEvents"][1]["timestamp"], -5);
        assert_eq!(v["logEvents"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn request_body_is_the_same_from_escaped_records() {
        let records = [
            r#"{"log":"say \"hi\" \\ \u0001 é","stream":"stdout"}"#,
            r#"{"log":"","kubernetes":{"pod_name":"p"}}"#,
        ];
        let body = |form| {
            let batch = super::super::batcher::batch_of(&records, form, 1_700_000_000_000_000_000);
            let evs: Vec<QueuedEvent> = batch
                .events
                .iter()
                .map(|e| super::super::batcher::event_of(&batch, e))
                .collect();
            request_body("g", "s", &evs)
        };
        let plain = body(crate::logs::encode::RecordForm::Json);
        assert_eq!(
            String::from_utf8_lossy(&plain),
            String::from_utf8_lossy(&body(crate::logs::encode::RecordForm::JsonString))
        );
        let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(v["logEvents"][0]["message"], records[0]);
        assert_eq!(v["logEvents"][1]["timestamp"], 1_700_000_000_000i64);
    }

    #[test]
    fn decimals_like_to_string() {
        for v in [0, 7, -5, 10, 1_700_000_000_123, i64::MAX, i64::MIN] {
            let mut out = b"x".to_vec();
            push_decimal(v, &mut out);
            assert_eq!(out, format!("x{v}").into_bytes());
        }
    }
}
