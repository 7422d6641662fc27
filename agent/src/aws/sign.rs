//! SigV4 for PutLogEvents, its signing key kept for the day.
//!
//! `aws_sigv4::http_request::sign` handles any request: it parses the URI, builds
//! header maps, formats the canonical request and the string to sign through
//! `Display`, and derives the signing key anew (four HMACs) on every call — about
//! a sixth of the sink's CPU per request at a steady load, besides the payload
//! hash. A PutLogEvents request is always the same POST to `/` with the same three
//! headers, so [`PutSigner`] writes its canonical request into one buffer and
//! keeps the signing key (aws-sigv4's own `generate_signing_key`) until the date
//! or the credentials change; the signature is aws-sigv4's `calculate_signature`.
//! A test checks the headers are byte for byte what `sign` produces, with and
//! without a session token. Endpoints with another path are signed by `sign`.

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

/// Signs PutLogEvents requests to one endpoint: [`PutSigner::sign`] when its path is
/// `/`, [`PutSigner::sign_general`] otherwise.
pub struct PutSigner {
    host: String,
    region: String,
    service: &'static str,
    content_type: &'static str,
    target: &'static str,
    key: Mutex<Option<DayKey>>,
}

/// A signing key and what it was derived from.
struct DayKey {
    access_key_id: String,
    secret: String,
    day: [u8; 8],
    key: [u8; 32],
}

impl PutSigner {
    /// A signer for requests with these `host`, `content-type` and `x-amz-target`
    /// header values, for `service` in `region`.
    pub fn new(
        host: &str,
        region: &str,
        service: &'static str,
        content_type: &'static str,
        target: &'static str,
    ) -> Self {
        Self {
            host: host.to_string(),
            region: region.to_string(),
            service,
            content_type,
            target,
            key: Mutex::new(None),
        }
    }

    /// The headers that sign a request with `body`, made at `time`.
    pub fn sign(&self, creds: &Credentials, time: SystemTime, body: &[u8]) -> SignedHeaders {
        let stamp = amz_date(time);
        let day: [u8; 8] = stamp.as_bytes()[..8].try_into().unwrap_or([b'0'; 8]);
        let token = creds.session_token();
        let signed_names = if token.is_some() {
            "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
        } else {
            "content-type;host;x-amz-date;x-amz-target"
        };
        let mut canonical = String::with_capacity(384 + token.map_or(0, str::len));
        canonical.push_str("POST\n/\n\ncontent-type:");
        canonical.push_str(self.content_type);
        canonical.push_str("\nhost:");
        canonical.push_str(&self.host);
        canonical.push_str("\nx-amz-date:");
        canonical.push_str(&stamp);
        if let Some(t) = token {
            canonical.push_str("\nx-amz-security-token:");
            canonical.push_str(t);
        }
        canonical.push_str("\nx-amz-target:");
        canonical.push_str(self.target);
        canonical.push_str("\n\n");
        canonical.push_str(signed_names);
        canonical.push('\n');
        push_hex(&Sha256::digest(body), &mut canonical);

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

    /// The same headers from aws-sigv4's general `sign`, for a POST to `uri` (any
    /// path; the `host` header is this signer's).
    pub fn sign_general(
        &self,
        uri: &str,
        identity: &Identity,
        time: SystemTime,
        body: &[u8],
    ) -> Result<SignedHeaders, String> {
        let params = v4::SigningParams::builder()
            .identity(identity)
            .region(&self.region)
            .name(self.service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| format!("signing PutLogEvents: {e}"))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            uri,
            [
                ("host", self.host.as_str()),
                ("content-type", self.content_type),
                ("x-amz-target", self.target),
            ]
            .into_iter(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| format!("signing PutLogEvents: {e}"))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| format!("signing PutLogEvents: {e}"))?
            .into_parts();
        let (headers, _) = instructions.into_parts();
        let get = |name: &str| {
            headers
                .iter()
                .find(|h| h.name() == name)
                .map(|h| h.value().to_string())
        };
        Ok(SignedHeaders {
            amz_date: get("x-amz-date").ok_or("signing PutLogEvents: no x-amz-date")?,
            authorization: get("authorization").ok_or("signing PutLogEvents: no authorization")?,
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
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
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

    const CT: &str = "application/x-amz-json-1.1";
    const TARGET: &str = "Logs_20140328.PutLogEvents";

    /// What aws-sigv4's general signer adds to the same request.
    fn reference(
        host: &str,
        region: &str,
        creds: &Credentials,
        time: SystemTime,
        body: &[u8],
    ) -> SignedHeaders {
        let s = PutSigner::new(host, region, "logs", CT, TARGET);
        let uri = format!("https://{host}/");
        let r = s
            .sign_general(&uri, &creds.clone().into(), time, body)
            .unwrap();
        assert_eq!(r.security_token.is_some(), creds.session_token().is_some());
        r
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
        let signer = |host, region| PutSigner::new(host, region, "logs", CT, TARGET);
        let cases = [
            ("logs.us-east-1.amazonaws.com", "us-east-1"),
            ("127.0.0.1:4566", "eu-west-1"),
            (
                "vpce-0a1b.logs.ap-southeast-2.vpce.amazonaws.com",
                "ap-southeast-2",
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
        for (host, region) in cases {
            let s = signer(host, region);
            for creds in [&plain, &session, &plain] {
                for t in times {
                    let time = UNIX_EPOCH + Duration::from_secs(t);
                    for body in bodies {
                        assert_eq!(
                            s.sign(creds, time, body),
                            reference(host, region, creds, time, body),
                            "{host} {region} {t}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_key_follows_the_credentials_and_the_day() {
        let s = PutSigner::new("h", "us-east-1", "logs", CT, TARGET);
        let a = Credentials::new("AKIDA", "secret-a", None, None, "t");
        let a2 = Credentials::new("AKIDA", "secret-b", None, None, "t");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let first = s.sign(&a, t, b"x");
        // Same key id, new secret (a rotated key pair that kept its id): a new key.
        assert_eq!(
            s.sign(&a2, t, b"x"),
            reference("h", "us-east-1", &a2, t, b"x")
        );
        assert_ne!(s.sign(&a2, t, b"x").authorization, first.authorization);
        assert_eq!(s.sign(&a, t, b"x"), first);
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
