//! `output.cloudwatch`: the CloudWatch Logs sink's settings and their checks.

use std::collections::BTreeMap;
use std::time::Duration;

use super::raw::RawCloudWatch;
use super::validate::{Problems, in_range, non_empty, size};

/// The retention periods CloudWatch Logs accepts, in days.
pub const RETENTION_DAYS: [u64; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Log group classes CloudWatch Logs accepts.
const GROUP_CLASSES: [&str; 3] = ["STANDARD", "INFREQUENT_ACCESS", "DELIVERY"];

/// `output.cloudwatch`: where and how records are shipped to CloudWatch Logs.
/// Credentials are not configured here: they come from the AWS SDK's chain
/// (IRSA web identity, EKS Pod Identity, environment, profile, IMDS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudWatchConfig {
    /// `region`; default from the AWS chain (`AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// `endpoint_url`: overrides the service endpoint (VPC endpoints, tests).
    pub endpoint_url: Option<String>,
    /// `create_group`, default false: create a missing log group.
    pub create_group: bool,
    /// `retention_days` for groups the agent creates; one of [`RETENTION_DAYS`].
    pub retention_days: Option<i32>,
    /// `log_group_class` for created groups: STANDARD, INFREQUENT_ACCESS, DELIVERY.
    pub log_group_class: Option<String>,
    /// `kms_key_id` (ARN) for created groups.
    pub kms_key_id: Option<String>,
    /// `tags` for created groups.
    pub tags: BTreeMap<String, String>,
    /// `max_concurrent_requests`, default 8 (1..=64): PutLogEvents calls in flight.
    pub max_concurrent_requests: usize,
    /// `request_timeout_secs`, default 30 (1..=300): one call's deadline.
    pub request_timeout: Duration,
    /// `create_stream_per_sec`, default 10 (1..=50): CreateLogStream calls per
    /// second from this node (the account quota is 50 per second).
    pub create_stream_per_sec: u32,
    /// `max_backoff_secs`, default 30 (1..=600): longest wait between retries.
    pub max_backoff: Duration,
}

/// Checks and converts the raw section, recording every problem.
pub(super) fn convert(raw: RawCloudWatch, problems: &mut Problems<'_>) -> CloudWatchConfig {
    let RawCloudWatch {
        region,
        endpoint_url,
        create_group,
        retention_days,
        log_group_class,
        kms_key_id,
        tags,
        max_concurrent_requests,
        request_timeout_secs,
        create_stream_per_sec,
        max_backoff_secs,
    } = raw;
    let p = "output.cloudwatch";
    let region = region.map(|r| non_empty(&r, &format!("{p}.region"), problems));
    let endpoint_url = endpoint_url.map(|u| {
        let url = non_empty(&u, &format!("{p}.endpoint_url"), problems);
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            problems.at(
                u.referenced,
                &format!("{p}.endpoint_url"),
                format!("`{url}` must start with http:// or https://"),
            );
        }
        url
    });
    let retention_days = retention_days.map(|d| {
        if !RETENTION_DAYS.contains(&d.value) {
            let allowed: Vec<String> = RETENTION_DAYS.iter().map(u64::to_string).collect();
            problems.at(
                d.referenced,
                &format!("{p}.retention_days"),
                format!(
                    "{} is not a CloudWatch retention; one of {}",
                    d.value,
                    allowed.join(", ")
                ),
            );
        }
        i32::try_from(d.value).unwrap_or(i32::MAX)
    });
    let log_group_class = log_group_class.map(|c| {
        if !GROUP_CLASSES.contains(&c.value.as_str()) {
            problems.at(
                c.referenced,
                &format!("{p}.log_group_class"),
                format!(
                    "must be one of {}, got `{}`",
                    GROUP_CLASSES.join(", "),
                    c.value
                ),
            );
        }
        c.value
    });
    let kms_key_id = kms_key_id.map(|k| non_empty(&k, &format!("{p}.kms_key_id"), problems));
    let tags = tags.into_iter().map(|(k, v)| (k, v.value)).collect();
    CloudWatchConfig {
        region,
        endpoint_url,
        create_group: create_group.value,
        retention_days,
        log_group_class,
        kms_key_id,
        tags,
        max_concurrent_requests: size(
            &max_concurrent_requests,
            &format!("{p}.max_concurrent_requests"),
            1..=64,
            problems,
        ),
        request_timeout: Duration::from_secs(in_range(
            &request_timeout_secs,
            &format!("{p}.request_timeout_secs"),
            1..=300,
            problems,
        )),
        create_stream_per_sec: in_range(
            &create_stream_per_sec,
            &format!("{p}.create_stream_per_sec"),
            1..=50,
            problems,
        ) as u32,
        max_backoff: Duration::from_secs(in_range(
            &max_backoff_secs,
            &format!("{p}.max_backoff_secs"),
            1..=600,
            problems,
        )),
    }
}
