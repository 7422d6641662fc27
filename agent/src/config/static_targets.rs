//! `metrics.scrape.static_targets`: fixed targets by URL or file, checked.

use std::time::Duration;

use hyper::Uri;

use super::raw::Spanned;
use super::relabel::convert_rules;
use super::scrape::{RawStaticTarget, StaticSource, StaticTarget, auth, checked_labels};
use super::validate::{Context, Problems, in_range, non_empty, path};

pub(super) fn convert_static(
    index: usize,
    entry: Spanned<RawStaticTarget>,
    context: &Context<'_>,
    problems: &mut Problems<'_>,
) -> Option<StaticTarget> {
    let p = format!("metrics.scrape.static_targets[{index}]");
    let RawStaticTarget {
        url,
        file,
        job,
        labels,
        interval_secs,
        timeout_secs,
        sample_limit,
        bearer_token_file,
        ca_file,
        insecure_skip_verify,
        metric_relabel_configs,
    } = entry.value;
    let source = match (url, file) {
        (None, None) => {
            problems.at(
                entry.referenced,
                &format!("{p}.url"),
                "is required (or `file`)",
            );
            None
        }
        (Some(_), Some(f)) => {
            problems.at(
                f.referenced,
                &format!("{p}.file"),
                "only one of `url` and `file`",
            );
            None
        }
        (Some(u), None) => match target_url(&u.value) {
            Ok(url) => Some(StaticSource::Url(url)),
            Err(why) => {
                problems.at(u.referenced, &format!("{p}.url"), why);
                None
            }
        },
        (None, Some(f)) => Some(StaticSource::File(path(
            &f,
            &format!("{p}.file"),
            context,
            problems,
        ))),
    };
    let checked = checked_labels(
        labels,
        &format!("{p}.labels"),
        "(use `job:` for the job)",
        problems,
    );
    let secs = |v: Option<Spanned<u64>>, key: &str, problems: &mut Problems<'_>| {
        v.map(|v| Duration::from_secs(in_range(&v, &format!("{p}.{key}"), 1..=3600, problems)))
    };
    let interval = secs(interval_secs, "interval_secs", problems);
    let timeout = secs(timeout_secs, "timeout_secs", problems);
    Some(StaticTarget {
        job: non_empty(&job, &format!("{p}.job"), problems),
        labels: checked,
        interval,
        timeout,
        sample_limit: sample_limit.map(|s| usize::try_from(s.value).unwrap_or(usize::MAX)),
        auth: auth(
            bearer_token_file,
            ca_file,
            &insecure_skip_verify,
            &p,
            context,
            problems,
        ),
        metric_relabel: convert_rules(
            &format!("{p}.metric_relabel_configs"),
            metric_relabel_configs,
            problems,
        ),
        source: source?,
    })
}

/// A static target's URL: `http` or `https`, with a host; an empty path is `/metrics`.
fn target_url(text: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("`{text}` must start with http:// or https://"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{text}` has no host"));
    }
    let mut parts = uri.into_parts();
    if parts
        .path_and_query
        .as_ref()
        .is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/")
    {
        parts.path_and_query = Some(hyper::http::uri::PathAndQuery::from_static("/metrics"));
    }
    Uri::from_parts(parts).map_err(|e| format!("`{text}`: {e}"))
}
