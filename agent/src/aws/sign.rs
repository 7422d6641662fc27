//! SigV4 signing for any AWS service, its signing key kept for the day.
//!
//! `aws_sigv4::http_request::sign` handles any request: it parses the URI, builds
//! header maps, formats the canonical request and the string to sign through
//! `Display`, and derives the signing key anew (four HMACs) on every call — about
//! a sixth of the CloudWatch sink's CPU per request at a steady load, besides the
//! payload hash. The agent's hot calls are always the same kind of request (a
//! PutLogEvents POST to `/`, a remote-write POST to one path) with a few fixed
//! headers, so [`Signer::sign`] writes the canonical request into one buffer and
//! keeps the signing key (aws-sigv4's own `generate_signing_key`) until the date
//! or the credentials change; the signature is aws-sigv4's `calculate_signature`.
//! Tests check the headers are byte for byte what `sign` produces, for PutLogEvents
//! and for a remote write to Amazon Managed Prometheus, with and without a session
//! token. A path that would need encoding is signed by [`Signer::sign_general`].

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::{self, calculate_signature, generate_signing_key};
use aws_smithy_runtime_api::client::identity::Identity;
use sha2::{Digest, Sha256};

/// The headers a signed request carries besides its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `x-amz-date`.
    pub amz_date: String,
    /// `authorization` (sensitive).
    pub authorization: String,
    /// `x-amz-security-token`, for temporary credentials (sensitive).
    pub security_token: Option<String>,
}

/// What is signed of a request: method, path, its headers besides `host`,
/// `x-amz-date` and `x-amz-security-token` (lower-case names, values without
/// surrounding or repeated spaces), and the body.
#[derive(Debug, Clone, Copy)]
pub struct Signable<'a> {
    /// `POST`, `GET`, ….
    pub method: &'a str,
    /// The URI path, `/` for the root; no query.
    pub path: &'a str,
    /// Headers to sign, in any order.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body, hashed into the signature.
    pub body: &'a [u8],
}

/// Signs requests to one host for one service in one region.
pub struct Signer {
    host: String,
    region: String,
    service: &'static str,
    key: Mutex<Option<DayKey>>,
}

/// A signing key and what it was derived from.
struct DayKey {
    access_key_id: String,
    secret: String,
    day: [u8; 8],
    key: [u8; 32],
}

impl Signer {
    /// A signer for requests to `host` (the `host` header's value) for `service`
    /// (`logs`, `aps`) in `region`.
    pub fn new(host: &str, region: &str, service: &'static str) -> Self {
        Self {
            host: host.to_string(),
            region: region.to_string(),
            service,
            key: Mutex::new(None),
        }
    }

    /// True when [`Signer::sign`] can sign requests to `path`: its canonical form is
    /// the path itself (unreserved characters and `/` only). Otherwise use
    /// [`Signer::sign_general`].
    pub fn signs_path(path: &str) -> bool {
        path.starts_with('/')
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~'))
    }

    /// The headers that sign `req`, made at `time` (its path must be one
    /// [`Signer::signs_path`] accepts).
    pub fn sign(&self, creds: &Credentials, time: SystemTime, req: &Signable<'_>) -> SignedHeaders {
        debug_assert!(Self::signs_path(req.path), "{}", req.path);
        let stamp = amz_date(time);
        let day: [u8; 8] = stamp.as_bytes()[..8].try_into().unwrap_or([b'0'; 8]);
        let token = creds.session_token();
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(req.headers.len() + 3);
        headers.extend_from_slice(req.headers);
        headers.push(("host", &self.host));
        headers.push(("x-amz-date", &stamp));
        if let Some(t) = token {
            headers.push(("x-amz-security-token", t));
        }
        headers.sort_unstable_by_key(|h| h.0);
        let mut signed_names = String::with_capacity(96);
        for (i, (name, _)) in headers.iter().enumerate() {
            if i > 0 {
                signed_names.push(';');
            }
            signed_names.push_str(name);
        }
        let mut canonical = String::with_capacity(384 + token.map_or(0, str::len));
        canonical.push_str(req.method);
        canonical.push('\n');
        canonical.push_str(req.path);
        canonical.push_str("\n\n");
        for (name, value) in &headers {
            canonical.push_str(name);
            canonical.push(':');
            canonical.push_str(value);
            canonical.push('\n');
        }
        canonical.push('\n');
        canonical.push_str(&signed_names);
        canonical.push('\n');
        push_hex(&Sha256::digest(req.body), &mut canonical);

        let day_str = &stamp[..8];
        let scope_len = day_str.len() + self.region.len() + self.service.len() + 16;
        let mut to_sign = String::with_capacity(64 + 16 + scope_len + 64);
        to_sign.push_str("AWS4-HMAC-SHA256\n");
        to_sign.push_str(&stamp);
        to_sign.push('\n');
        let scope_at = to_sign.len();
        let _ = write!(
            to_sign,
            "{day_str}/{}/{}/aws4_request",
            self.region, self.service
        );
        let scope_end = to_sign.len();
        to_sign.push('\n');
        push_hex(&Sha256::digest(canonical.as_bytes()), &mut to_sign);

        let key = self.key_for(creds, day, time);
        let signature = calculate_signature(key, to_sign.as_bytes());
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={signed_names}, Signature={signature}",
            creds.access_key_id(),
            &to_sign[scope_at..scope_end],
        );
        SignedHeaders {
            amz_date: stamp,
            authorization,
            security_token: token.map(str::to_string),
        }
    }

    /// The same headers from aws-sigv4's general `sign`, for `req` sent to `uri`
    /// (any path; the `host` header is this signer's).
    pub fn sign_general(
        &self,
        uri: &str,
        identity: &Identity,
        time: SystemTime,
        req: &Signable<'_>,
    ) -> Result<SignedHeaders, String> {
        let what = self.service;
        let params = v4::SigningParams::builder()
            .identity(identity)
            .region(&self.region)
            .name(self.service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| format!("signing a {what} request: {e}"))?
            .into();
        let headers =
            std::iter::once(("host", self.host.as_str())).chain(req.headers.iter().copied());
        let signable =
            SignableRequest::new(req.method, uri, headers, SignableBody::Bytes(req.body))
                .map_err(|e| format!("signing a {what} request: {e}"))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| format!("signing a {what} request: {e}"))?
            .into_parts();
        let (headers, _) = instructions.into_parts();
        let get = |name: &str| {
            headers
                .iter()
                .find(|h| h.name() == name)
                .map(|h| h.value().to_string())
        };
        Ok(SignedHeaders {
            amz_date: get("x-amz-date")
                .ok_or_else(|| format!("signing a {what} request: no x-amz-date"))?,
            authorization: get("authorization")
                .ok_or_else(|| format!("signing a {what} request: no authorization"))?,
            security_token: get("x-amz-security-token"),
        })
    }

    /// The signing key for `creds` on `day`, derived when either changed.
    fn key_for(&self, creds: &Credentials, day: [u8; 8], time: SystemTime) -> [u8; 32] {
        let mut held = self.key.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = held.as_ref()
            && k.day == day
            && k.access_key_id == creds.access_key_id()
            && k.secret == creds.secret_access_key()
        {
            return k.key;
        }
        let derived =
            generate_signing_key(creds.secret_access_key(), time, &self.region, self.service);
        let mut key = [0u8; 32];
        key.copy_from_slice(derived.as_ref());
        *held = Some(DayKey {
            access_key_id: creds.access_key_id().to_string(),
            secret: creds.secret_access_key().to_string(),
            day,
            key,
        });
        key
    }
}

/// `time` as SigV4's `YYYYMMDD'T'HHMMSS'Z'` (UTC).
fn amz_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = kubeship_parsers::time::civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Appends `bytes` as lowercase hex.
fn push_hex(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A PutLogEvents request's headers.
    const LOGS: &[(&str, &str)] = &[
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "Logs_20140328.PutLogEvents"),
    ];
    /// A remote write's headers (Amazon Managed Prometheus).
    const APS: &[(&str, &str)] = &[
        ("content-encoding", "snappy"),
        ("content-type", "application/x-protobuf"),
        ("x-prometheus-remote-write-version", "0.1.0"),
    ];

    fn req<'a>(path: &'a str, headers: &'a [(&'a str, &'a str)], body: &'a [u8]) -> Signable<'a> {
        Signable {
            method: "POST",
            path,
            headers,
            body,
        }
    }

    /// What aws-sigv4's general signer adds to the same request.
    fn reference(
        s: &Signer,
        host: &str,
        creds: &Credentials,
        time: SystemTime,
        r: &Signable<'_>,
    ) -> SignedHeaders {
        let uri = format!("https://{host}{}", r.path);
        let h = s
            .sign_general(&uri, &creds.clone().into(), time, r)
            .unwrap();
        assert_eq!(h.security_token.is_some(), creds.session_token().is_some());
        h
    }

    #[test]
    fn headers_are_what_the_sdk_signer_makes() {
        let plain = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "t",
        );
        let session = Credentials::new(
            "ASIAEXAMPLE",
            "secret/with+chars",
            Some("IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ==".into()),
            None,
            "t",
        );
        let bodies: [&[u8]; 3] = [
            b"",
            br#"{"logGroupName":"g","logStreamName":"s","logEvents":[]}"#,
            &[0xff; 70_000],
        ];
        /// Host, region, path, service, headers.
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a str,
            &'static str,
            &'a [(&'a str, &'a str)],
        );
        let cases: [Case<'_>; 4] = [
            (
                "logs.us-east-1.amazonaws.com",
                "us-east-1",
                "/",
                "logs",
                LOGS,
            ),
            ("127.0.0.1:4566", "eu-west-1", "/", "logs", LOGS),
            (
                "vpce-0a1b.logs.ap-southeast-2.vpce.amazonaws.com",
                "ap-southeast-2",
                "/",
                "logs",
                LOGS,
            ),
            (
                "aps-workspaces.eu-central-1.amazonaws.com",
                "eu-central-1",
                "/workspaces/ws-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d/api/v1/remote_write",
                "aps",
                APS,
            ),
        ];
        // Across days, leap days, a year's end, and the key cache's changes of day.
        let times = [
            1_709_164_800u64,
            1_709_251_199,
            1_735_689_599,
            1_735_689_600,
            1_795_000_123,
            0,
        ];
        for (host, region, path, service, headers) in cases {
            let s = Signer::new(host, region, service);
            assert!(Signer::signs_path(path));
            for creds in [&plain, &session, &plain] {
                for t in times {
                    let time = UNIX_EPOCH + Duration::from_secs(t);
                    for body in bodies {
                        let r = req(path, headers, body);
                        assert_eq!(
                            s.sign(creds, time, &r),
                            reference(&s, host, creds, time, &r),
                            "{host} {region} {path} {t}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn paths_that_need_encoding_go_to_the_general_signer() {
        assert!(Signer::signs_path("/"));
        assert!(Signer::signs_path("/workspaces/ws-1/api/v1/remote_write"));
        for p in ["", "/a b", "/a%20b", "/a?x=1", "/é"] {
            assert!(!Signer::signs_path(p), "{p}");
        }
    }

    #[test]
    fn the_key_follows_the_credentials_and_the_day() {
        let s = Signer::new("h", "us-east-1", "logs");
        let a = Credentials::new("AKIDA", "secret-a", None, None, "t");
        let a2 = Credentials::new("AKIDA", "secret-b", None, None, "t");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let r = req("/", LOGS, b"x");
        let first = s.sign(&a, t, &r);
        // Same key id, new secret (a rotated key pair that kept its id): a new key.
        assert_eq!(s.sign(&a2, t, &r), reference(&s, "h", &a2, t, &r));
        assert_ne!(s.sign(&a2, t, &r).authorization, first.authorization);
        assert_eq!(s.sign(&a, t, &r), first);
    }

    #[test]
    fn dates_are_formatted_in_utc() {
        let at = |s| amz_date(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "19700101T000000Z");
        assert_eq!(at(951_782_400), "20000229T000000Z");
        assert_eq!(at(1_709_251_199), "20240229T235959Z");
        assert_eq!(at(1_795_000_123), "20261118T110843Z");
        assert_eq!(at(253_402_300_799), "99991231T235959Z");
    }
}
