//! The `pipeline`, `output` and `telemetry` sections: their checks and conversion
//! (the `logs`, `kubernetes` and `output.cloudwatch` sections have files of their own).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::raw::{RawLocalSink, RawOutput, RawPipeline, RawTelemetry, Spanned};
use super::validate::{Context, KIB, MIB, Problems, in_range, path, size};
use super::{EventFormat, LogFormat, OutputConfig, PipelineConfig, SinkConfig, TelemetryConfig};
use crate::logs::route::Template;
use serde_saphyr::Location;

pub(super) fn convert_pipeline(raw: RawPipeline, problems: &mut Problems<'_>) -> PipelineConfig {
    let RawPipeline {
        batch_max_bytes,
        batch_max_records,
        batch_timeout_ms,
        channel_batches,
        max_inflight_bytes,
        checkpoint_interval_ms,
        stuck_after_secs,
    } = raw;
    let batch_range = 4 * KIB..=8 * MIB;
    let mut max_inflight_bytes = max_inflight_bytes;
    if max_inflight_bytes.referenced == Location::UNKNOWN {
        // Not set: the default, or two batches when they are larger.
        max_inflight_bytes.value = max_inflight_bytes.value.max(2 * batch_max_bytes.value);
    }
    if batch_range.contains(&batch_max_bytes.value)
        && max_inflight_bytes.value < 2 * batch_max_bytes.value
    {
        problems.at(
            max_inflight_bytes.referenced,
            "pipeline.max_inflight_bytes",
            format!(
                "must be at least twice pipeline.batch_max_bytes ({}), got {}",
                2 * batch_max_bytes.value,
                max_inflight_bytes.value
            ),
        );
    }
    PipelineConfig {
        batch_max_bytes: size(
            &batch_max_bytes,
            "pipeline.batch_max_bytes",
            batch_range,
            problems,
        ),
        batch_max_records: size(
            &batch_max_records,
            "pipeline.batch_max_records",
            1..=10_000,
            problems,
        ),
        batch_timeout: Duration::from_millis(in_range(
            &batch_timeout_ms,
            "pipeline.batch_timeout_ms",
            1..=60_000,
            problems,
        )),
        channel_batches: size(
            &channel_batches,
            "pipeline.channel_batches",
            1..=1024,
            problems,
        ),
        max_inflight_bytes: usize::try_from(max_inflight_bytes.value).unwrap_or(usize::MAX),
        checkpoint_interval: Duration::from_millis(in_range(
            &checkpoint_interval_ms,
            "pipeline.checkpoint_interval_ms",
            10..=600_000,
            problems,
        )),
        stuck_after: Duration::from_secs(in_range(
            &stuck_after_secs,
            "pipeline.stuck_after_secs",
            1..=86_400,
            problems,
        )),
    }
}

pub(super) fn convert_output(
    raw: RawOutput,
    state_dir: &Path,
    context: &Context<'_>,
    problems: &mut Problems<'_>,
) -> Option<OutputConfig> {
    let RawOutput {
        group,
        stream,
        event,
        local,
        cloudwatch,
    } = raw;
    let event = match event.value.as_str() {
        "record" => EventFormat::Record,
        "log" => EventFormat::Log,
        other => {
            problems.at(
                event.referenced,
                "output.event",
                format!("must be `record` or `log`, got `{other}`"),
            );
            EventFormat::Record
        }
    };
    // Exactly one sink; `local` is the default.
    let sink = match (local, cloudwatch) {
        (Some(_), Some(_)) => {
            problems.unlocated(
                "output",
                "configure exactly one sink: `local` or `cloudwatch`, not both",
            );
            SinkConfig::Local {
                dir: state_dir.join("local-sink"),
            }
        }
        (None, Some(cw)) => SinkConfig::CloudWatch(super::cloudwatch::convert(cw, problems)),
        (Some(RawLocalSink { dir: Some(dir) }), None) => SinkConfig::Local {
            dir: path(&dir, "output.local.dir", context, problems),
        },
        (Some(RawLocalSink { dir: None }) | None, None) => SinkConfig::Local {
            dir: state_dir.join("local-sink"),
        },
    };
    let group = template(&group, "output.group", problems);
    let stream = template(&stream, "output.stream", problems);
    Some(OutputConfig {
        group: group?,
        stream: stream?,
        event,
        sink,
    })
}

pub(super) fn convert_telemetry(raw: RawTelemetry, problems: &mut Problems<'_>) -> TelemetryConfig {
    let RawTelemetry {
        listen_addr,
        log_format,
        log_level,
    } = raw;
    let listen = match listen_addr.value.as_deref() {
        None | Some("off") => None,
        Some(addr) => match addr.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                problems.at(
                    listen_addr.referenced,
                    "telemetry.listen_addr",
                    format!(
                        "`{addr}` is not an IP:port address (e.g. `0.0.0.0:2020`, `[::]:2020`) \
                         or `off`"
                    ),
                );
                None
            }
        },
    };
    let log_format = match log_format.value.as_str() {
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        other => {
            problems.at(
                log_format.referenced,
                "telemetry.log_format",
                format!("must be `json` or `text`, got `{other}`"),
            );
            LogFormat::Json
        }
    };
    if let Err(message) = check_log_level(&log_level.value) {
        problems.at(log_level.referenced, "telemetry.log_level", message);
    }
    TelemetryConfig {
        listen,
        log_format,
        log_level: log_level.value,
    }
}

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Accepts `level` or a comma-separated list of `level` / `target=level`
/// directives (the common subset of tracing's `EnvFilter` syntax).
fn check_log_level(filter: &str) -> Result<(), String> {
    let is_level = |level: &str| LEVELS.iter().any(|known| known.eq_ignore_ascii_case(level));
    if filter.trim().is_empty() {
        return Err(format!(
            "must not be empty; expected one of {}",
            LEVELS.join(", ")
        ));
    }
    for directive in filter.split(',').map(str::trim) {
        let ok = match directive.split_once('=') {
            None => is_level(directive),
            Some((target, level)) => {
                !target.is_empty()
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'))
                    && is_level(level)
            }
        };
        if !ok {
            return Err(format!(
                "`{directive}` is neither a level ({}) nor a `target=level` directive",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

fn template(value: &Spanned<String>, path: &str, problems: &mut Problems<'_>) -> Option<Template> {
    if value.value.is_empty() {
        problems.at(value.referenced, path, "must not be empty");
        return None;
    }
    Template::parse(&value.value)
        .map_err(|message| problems.at(value.referenced, path, message))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_level_syntax() {
        for ok in [
            "info",
            "DEBUG",
            "off",
            "warn,kubeship=debug",
            "kubeship::tailer=trace, hyper=warn",
            "my-crate.mod=error",
        ] {
            assert_eq!(check_log_level(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "verbose",
            "info,",
            "=info",
            "kubeship=loud",
            "a b=info",
            "x[span]=info",
        ] {
            assert!(check_log_level(bad).is_err(), "{bad}");
        }
    }
}
