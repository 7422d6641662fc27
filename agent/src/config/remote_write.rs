//! `metrics.remote_write` and `metrics.local`: where the metrics pipeline's samples
//! go, checked and converted. Several remote-write endpoints, each with its own queue;
//! with none, the embedded local sink (files under `metrics.local.dir`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_saphyr::Location;

use super::raw::Spanned;
use super::validate::{Context, Problems, in_range, non_empty, path, size};

/// Largest `max_pending_samples`.
const MAX_PENDING_SAMPLES: u64 = 50_000_000;

/// `metrics.remote_write[]` as written.
#[derive(Debug, Deserialize)]
pub(super) struct RawRemoteWrite {
    pub url: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    /// `sigv4: {}` (region from the AWS chain) is as valid as `sigv4: {region: …}`;
    /// a key present with an empty value too.
    #[serde(default, deserialize_with = "present")]
    pub sigv4: Option<Spanned<Option<RawSigV4>>>,
    pub basic_auth: Option<Spanned<RawBasicAuth>>,
    pub bearer_token_file: Option<Spanned<String>>,
    pub tls: Option<Spanned<RawTls>>,
    #[serde(default = "default_max_samples_per_send")]
    pub max_samples_per_send: Spanned<u64>,
    #[serde(default = "default_batch_send_deadline_secs")]
    pub batch_send_deadline_secs: Spanned<u64>,
    #[serde(default = "default_max_pending_samples")]
    pub max_pending_samples: Spanned<u64>,
    #[serde(default = "default_shards")]
    pub shards: Spanned<u64>,
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: Spanned<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawSigV4 {
    pub region: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawBasicAuth {
    pub username: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawTls {
    pub ca_file: Option<Spanned<String>>,
    #[serde(default = "default_false")]
    pub insecure_skip_verify: Spanned<bool>,
}

/// `metrics.local` as written.
#[derive(Debug, Deserialize)]
pub(super) struct RawMetricsLocal {
    /// Defaults to `<state_dir>/metrics-sink`.
    pub dir: Option<Spanned<String>>,
}

/// Deserializes a present key as `Some`, even when its value is `null`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

fn unlocated<T>(value: T) -> Spanned<T> {
    Spanned::new(value, Location::UNKNOWN, Location::UNKNOWN)
}
fn default_false() -> Spanned<bool> {
    unlocated(false)
}
fn default_max_samples_per_send() -> Spanned<u64> {
    unlocated(2000)
}
fn default_batch_send_deadline_secs() -> Spanned<u64> {
    unlocated(5)
}
fn default_max_pending_samples() -> Spanned<u64> {
    unlocated(DEFAULT_MAX_PENDING_SAMPLES as u64)
}
fn default_shards() -> Spanned<u64> {
    unlocated(4)
}
fn default_request_timeout_secs() -> Spanned<u64> {
    unlocated(30)
}

/// The default `max_pending_samples` per endpoint (see DESIGN.md, "Data flow
/// (metrics)", bounded pending, for what it holds).
pub const DEFAULT_MAX_PENDING_SAMPLES: usize = 500_000;

/// Where samples go: exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsSinkConfig {
    /// `metrics.remote_write`: one or more endpoints, each with its own queue.
    RemoteWrite(Vec<RemoteWriteConfig>),
    /// `metrics.local`: JSON lines under `dir` (the default with no endpoint).
    Local {
        /// `metrics.local.dir`, default `<state_dir>/metrics-sink`.
        dir: PathBuf,
    },
}

/// One remote-write endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteWriteConfig {
    /// `name`: the `endpoint` label of its self-metrics and its log lines; default
    /// the URL's `host[:port]`; unique.
    pub name: String,
    /// `url`, `http://` or `https://`.
    pub url: String,
    /// How requests are authenticated.
    pub auth: Auth,
    /// `tls`: for `https://` URLs.
    pub tls: TlsConfig,
    /// `max_samples_per_send`, default 2000 (1..=100000): samples per request.
    pub max_samples_per_send: usize,
    /// `batch_send_deadline_secs`, default 5 (1..=300): the longest a sample waits
    /// for its request to fill.
    pub batch_send_deadline: Duration,
    /// `max_pending_samples`, default [`DEFAULT_MAX_PENDING_SAMPLES`] (at least
    /// `2 · shards · max_samples_per_send`): samples held for the endpoint, sent or not
    /// yet; past it the oldest are dropped, counted.
    pub max_pending_samples: usize,
    /// `shards`, default 4 (1..=64): queues sending in parallel, each one request at a time.
    pub shards: usize,
    /// `request_timeout_secs`, default 30 (1..=300): one request's deadline.
    pub request_timeout: Duration,
}

/// Authentication of a remote-write endpoint: at most one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// None.
    None,
    /// `sigv4`: AWS SigV4 for service `aps` (Amazon Managed Service for Prometheus),
    /// credentials from the AWS chain (IRSA, EKS Pod Identity, environment, profile).
    SigV4 {
        /// `sigv4.region`; default from the AWS chain (`AWS_REGION`, profile, IMDS),
        /// none is a start-up error.
        region: Option<String>,
    },
    /// `basic_auth`: the password read from a file (again when it changes).
    Basic {
        /// `basic_auth.username`.
        username: String,
        /// `basic_auth.password_file`.
        password_file: PathBuf,
    },
    /// `bearer_token_file`: `Authorization: Bearer <the file's content>`.
    Bearer {
        /// The token's file (read again when it changes).
        token_file: PathBuf,
    },
}

/// TLS settings of a remote-write endpoint (system roots always trusted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// `tls.ca_file`: PEM certificates trusted besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// `tls.insecure_skip_verify`, default false: accept any server certificate.
    pub insecure_skip_verify: bool,
}

/// Checks and converts `metrics.remote_write` and `metrics.local`.
pub(super) fn convert(
    remote_write: Vec<Spanned<RawRemoteWrite>>,
    local: Option<RawMetricsLocal>,
    state_dir: &Path,
    context: &Context<'_>,
    problems: &mut Problems<'_>,
) -> MetricsSinkConfig {
    let default_dir = || state_dir.join("metrics-sink");
    if remote_write.is_empty() {
        return match local {
            Some(RawMetricsLocal { dir: Some(dir) }) => MetricsSinkConfig::Local {
                dir: path(&dir, "metrics.local.dir", context, problems),
            },
            Some(RawMetricsLocal { dir: None }) | None => {
                MetricsSinkConfig::Local { dir: default_dir() }
            }
        };
    }
    if local.is_some() {
        problems.unlocated(
            "metrics",
            "configure one destination for samples: `remote_write` or `local`, not both",
        );
    }
    let mut endpoints: Vec<RemoteWriteConfig> = Vec::new();
    let mut names: Vec<(String, Location)> = Vec::new();
    for (index, entry) in remote_write.into_iter().enumerate() {
        let prefix = format!("metrics.remote_write[{index}]");
        let referenced = entry.referenced;
        let (endpoint, name_at) = convert_one(entry.value, referenced, &prefix, context, problems);
        if endpoint.name.is_empty() {
            // Its URL or name was reported already.
        } else if let Some((_, first)) = names.iter().find(|(n, _)| *n == endpoint.name) {
            let line = first.line();
            problems.at(
                name_at,
                &format!("{prefix}.name"),
                format!(
                    "duplicate endpoint name `{}` (first used on line {line}); give each \
                     endpoint a `name` of its own",
                    endpoint.name
                ),
            );
        } else {
            names.push((endpoint.name.clone(), name_at));
        }
        endpoints.push(endpoint);
    }
    MetricsSinkConfig::RemoteWrite(endpoints)
}

/// One endpoint; also the location its name is reported at.
fn convert_one(
    raw: RawRemoteWrite,
    referenced: Location,
    p: &str,
    context: &Context<'_>,
    problems: &mut Problems<'_>,
) -> (RemoteWriteConfig, Location) {
    let RawRemoteWrite {
        url,
        name,
        sigv4,
        basic_auth,
        bearer_token_file,
        tls,
        max_samples_per_send,
        batch_send_deadline_secs,
        max_pending_samples,
        shards,
        request_timeout_secs,
    } = raw;
    let (url, authority, https) = match url {
        None => {
            problems.at(referenced, &format!("{p}.url"), "is required");
            (String::new(), String::new(), false)
        }
        Some(url) => {
            let (authority, https) = check_url(&url, &format!("{p}.url"), problems);
            (url.value, authority, https)
        }
    };
    let (name, name_at) = match name {
        Some(n) => (non_empty(&n, &format!("{p}.name"), problems), n.referenced),
        None => (authority, referenced),
    };
    let auth = convert_auth(sigv4, basic_auth, bearer_token_file, p, context, problems);
    let tls = match tls {
        None => TlsConfig::default(),
        Some(t) => {
            if !https {
                problems.at(
                    t.referenced,
                    &format!("{p}.tls"),
                    "applies to https:// URLs only; this endpoint's URL is not one",
                );
            }
            let RawTls {
                ca_file,
                insecure_skip_verify,
            } = t.value;
            TlsConfig {
                ca_file: ca_file.map(|f| path(&f, &format!("{p}.tls.ca_file"), context, problems)),
                insecure_skip_verify: insecure_skip_verify.value,
            }
        }
    };
    let per_send = size(
        &max_samples_per_send,
        &format!("{p}.max_samples_per_send"),
        1..=100_000,
        problems,
    );
    let shard_count = size(&shards, &format!("{p}.shards"), 1..=64, problems);
    let least = 2 * per_send as u64 * shard_count as u64;
    let pending_range = least.max(1)..=MAX_PENDING_SAMPLES;
    if !pending_range.contains(&max_pending_samples.value) {
        problems.at(
            max_pending_samples.referenced,
            &format!("{p}.max_pending_samples"),
            format!(
                "must be between {} (2 · shards · max_samples_per_send) and {}, got {}",
                pending_range.start(),
                pending_range.end(),
                max_pending_samples.value
            ),
        );
    }
    let endpoint = RemoteWriteConfig {
        name,
        url,
        auth,
        tls,
        max_samples_per_send: per_send,
        batch_send_deadline: Duration::from_secs(in_range(
            &batch_send_deadline_secs,
            &format!("{p}.batch_send_deadline_secs"),
            1..=300,
            problems,
        )),
        max_pending_samples: usize::try_from(max_pending_samples.value).unwrap_or(usize::MAX),
        shards: shard_count,
        request_timeout: Duration::from_secs(in_range(
            &request_timeout_secs,
            &format!("{p}.request_timeout_secs"),
            1..=300,
            problems,
        )),
    };
    (endpoint, name_at)
}

/// Checks a URL: `http://` or `https://`, a host, no user info or fragment. Returns its
/// `host[:port]` and whether it is `https`.
fn check_url(url: &Spanned<String>, key: &str, problems: &mut Problems<'_>) -> (String, bool) {
    let text = url.value.trim();
    let bad = |problems: &mut Problems<'_>, why: &str| {
        problems.at(url.referenced, key, format!("`{text}` {why}"));
        (String::new(), false)
    };
    let https = if text.starts_with("https://") {
        true
    } else if text.starts_with("http://") {
        false
    } else {
        return bad(problems, "must start with http:// or https://");
    };
    if text.contains('#') {
        return bad(problems, "must not have a fragment (`#…`)");
    }
    match text.parse::<hyper::Uri>() {
        Ok(uri) => match uri.authority() {
            Some(a) if a.as_str().contains('@') => bad(
                problems,
                "must not hold credentials; use basic_auth with a password_file",
            ),
            Some(a) if !a.host().is_empty() => (a.as_str().to_owned(), https),
            _ => bad(problems, "has no host"),
        },
        Err(e) => bad(problems, &format!("is not a valid URL: {e}")),
    }
}

/// At most one of `sigv4`, `basic_auth`, `bearer_token_file`.
fn convert_auth(
    sigv4: Option<Spanned<Option<RawSigV4>>>,
    basic_auth: Option<Spanned<RawBasicAuth>>,
    bearer_token_file: Option<Spanned<String>>,
    p: &str,
    context: &Context<'_>,
    problems: &mut Problems<'_>,
) -> Auth {
    let given: Vec<(&str, Location)> = [
        sigv4.as_ref().map(|s| ("sigv4", s.referenced)),
        basic_auth.as_ref().map(|b| ("basic_auth", b.referenced)),
        bearer_token_file
            .as_ref()
            .map(|b| ("bearer_token_file", b.referenced)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let [(first, _), rest @ ..] = given.as_slice() {
        for (other, at) in rest {
            problems.at(
                *at,
                &format!("{p}.{other}"),
                format!("configure one kind of authentication: `{first}` is set already"),
            );
        }
    }
    if let Some(s) = sigv4 {
        let RawSigV4 { region } = s.value.unwrap_or_default();
        return Auth::SigV4 {
            region: region.map(|r| non_empty(&r, &format!("{p}.sigv4.region"), problems)),
        };
    }
    if let Some(b) = basic_auth {
        let RawBasicAuth {
            username,
            password_file,
        } = b.value;
        let username = match username {
            Some(u) => non_empty(&u, &format!("{p}.basic_auth.username"), problems),
            None => {
                problems.at(
                    b.referenced,
                    &format!("{p}.basic_auth.username"),
                    "is required",
                );
                String::new()
            }
        };
        let password_file = match password_file {
            Some(f) => path(
                &f,
                &format!("{p}.basic_auth.password_file"),
                context,
                problems,
            ),
            None => {
                problems.at(
                    b.referenced,
                    &format!("{p}.basic_auth.password_file"),
                    "is required (the password is read from a file, never written in the config)",
                );
                PathBuf::new()
            }
        };
        return Auth::Basic {
            username,
            password_file,
        };
    }
    if let Some(f) = bearer_token_file {
        return Auth::Bearer {
            token_file: path(&f, &format!("{p}.bearer_token_file"), context, problems),
        };
    }
    Auth::None
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::super::{Config, load_str};
    use super::*;

    const ORIGIN: &str = "/etc/kubeship/kubeship.yaml";

    fn load(text: &str) -> Result<Config, String> {
        load_str(text, Path::new(ORIGIN), &|_| None).map_err(|e| {
            e.problems()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    fn sink(text: &str) -> MetricsSinkConfig {
        let c = load(text).unwrap_or_else(|e| panic!("expected a valid config, got:\n{e}"));
        c.metrics.expect("the metrics section").sink
    }

    fn endpoints(text: &str) -> Vec<RemoteWriteConfig> {
        match sink(text) {
            MetricsSinkConfig::RemoteWrite(e) => e,
            other => panic!("expected remote write, got {other:?}"),
        }
    }

    fn problems(text: &str) -> Vec<String> {
        match load(text) {
            Ok(_) => panic!("expected problems, the config is valid"),
            Err(e) => e.lines().map(str::to_owned).collect(),
        }
    }

    #[test]
    fn without_endpoints_samples_go_to_the_local_sink() {
        let state = "cluster: x\nstate_dir: /s\n";
        assert_eq!(
            sink(&format!("{state}metrics: {{}}\n")),
            MetricsSinkConfig::Local {
                dir: "/s/metrics-sink".into()
            }
        );
        assert_eq!(
            sink(&format!("{state}metrics:\n  local: {{dir: out}}\n")),
            MetricsSinkConfig::Local {
                dir: "/etc/kubeship/out".into()
            },
            "relative to the config file"
        );
        assert_eq!(
            problems(&format!(
                "{state}metrics:\n  local: {{}}\n  remote_write: [{{url: 'http://a:9090/w'}}]\n"
            )),
            ["metrics: configure one destination for samples: `remote_write` or `local`, not both"]
        );
    }

    #[test]
    fn endpoint_defaults() {
        let e = endpoints(
            "cluster: x\nmetrics:\n  remote_write:\n    - url: https://prom.example:9090/api/v1/write\n",
        );
        assert_eq!(
            e,
            [RemoteWriteConfig {
                name: "prom.example:9090".into(),
                url: "https://prom.example:9090/api/v1/write".into(),
                auth: Auth::None,
                tls: TlsConfig::default(),
                max_samples_per_send: 2000,
                batch_send_deadline: Duration::from_secs(5),
                max_pending_samples: DEFAULT_MAX_PENDING_SAMPLES,
                shards: 4,
                request_timeout: Duration::from_secs(30),
            }]
        );
    }

    #[test]
    fn every_setting_is_read() {
        let e = endpoints(
            "cluster: x
metrics:
  remote_write:
    - url: https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write
      name: amp
      sigv4: {region: eu-west-1}
      tls: {ca_file: ca.pem, insecure_skip_verify: true}
      max_samples_per_send: 500
      batch_send_deadline_secs: 1
      max_pending_samples: 4000
      shards: 2
      request_timeout_secs: 3
    - url: http://mimir:8080/api/v1/push
      basic_auth: {username: agent, password_file: /secrets/pw}
    - url: http://thanos:19291/api/v1/receive
      bearer_token_file: token
    - url: https://amp.example/w
      sigv4:
",
        );
        assert_eq!(e.len(), 4);
        assert_eq!(e[0].name, "amp");
        assert_eq!(
            e[0].auth,
            Auth::SigV4 {
                region: Some("eu-west-1".into())
            }
        );
        assert_eq!(
            e[0].tls,
            TlsConfig {
                ca_file: Some("/etc/kubeship/ca.pem".into()),
                insecure_skip_verify: true
            }
        );
        assert_eq!(
            (
                e[0].max_samples_per_send,
                e[0].batch_send_deadline,
                e[0].max_pending_samples,
                e[0].shards,
                e[0].request_timeout
            ),
            (500, Duration::from_secs(1), 4000, 2, Duration::from_secs(3))
        );
        assert_eq!(
            e[1].auth,
            Auth::Basic {
                username: "agent".into(),
                password_file: "/secrets/pw".into()
            }
        );
        assert_eq!(e[1].name, "mimir:8080");
        assert_eq!(
            e[2].auth,
            Auth::Bearer {
                token_file: "/etc/kubeship/token".into()
            }
        );
        assert_eq!(
            e[3].auth,
            Auth::SigV4 { region: None },
            "`sigv4:` alone: the region from the AWS chain"
        );
    }

    #[test]
    fn every_problem_is_located() {
        let found = problems(
            "cluster: x
metrics:
  remote_write:
    - url: ftp://x/y
      shards: 0
    - name: b
      max_samples_per_send: 1000
      max_pending_samples: 1000
    - url: http://user:pw@h/w
      tls: {insecure_skip_verify: true}
      basic_auth: {username: u}
      bearer_token_file: t
      request_timeout_secs: 0
    - url: http://a/w
      name: b
      batch_send_deadline_secs: 900
      sigv4: {region: ''}
",
        );
        assert_eq!(
            found,
            [
                "4:12: metrics.remote_write[0].url: `ftp://x/y` must start with http:// or https://",
                "5:15: metrics.remote_write[0].shards: must be between 1 and 64, got 0",
                "6:7: metrics.remote_write[1].url: is required",
                "8:28: metrics.remote_write[1].max_pending_samples: must be between 8000 \
                 (2 · shards · max_samples_per_send) and 50000000, got 1000",
                "9:12: metrics.remote_write[2].url: `http://user:pw@h/w` must not hold \
                 credentials; use basic_auth with a password_file",
                "10:12: metrics.remote_write[2].tls: applies to https:// URLs only; this \
                 endpoint's URL is not one",
                "11:19: metrics.remote_write[2].basic_auth.password_file: is required (the \
                 password is read from a file, never written in the config)",
                "12:26: metrics.remote_write[2].bearer_token_file: configure one kind of \
                 authentication: `basic_auth` is set already",
                "13:29: metrics.remote_write[2].request_timeout_secs: must be between 1 and 300, \
                 got 0",
                "15:13: metrics.remote_write[3].name: duplicate endpoint name `b` (first used on \
                 line 6); give each endpoint a `name` of its own",
                "16:33: metrics.remote_write[3].batch_send_deadline_secs: must be between 1 and \
                 300, got 900",
                "17:23: metrics.remote_write[3].sigv4.region: must not be empty",
            ]
        );
    }

    #[test]
    fn unknown_keys_are_reported() {
        let found = problems(
            "cluster: x\nmetrics:\n  remote_write:\n    - url: http://a/w\n      queue_config: {}\n",
        );
        assert_eq!(
            found,
            ["5:7: metrics.remote_write[0].queue_config: unknown key `queue_config`"]
        );
    }
}
