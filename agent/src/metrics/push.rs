//! `kubeship push-samples`: samples as JSON lines (the metrics local sink's format)
//! into the configured metrics destination, then a flush within
//! `shutdown_timeout_secs`.
//!
//! For replaying what the local sink wrote into remote write, for checking an
//! endpoint's URL, credentials and TLS settings with a sample of one's own, and for
//! the end-to-end tests of the sending half (which runs here exactly as in the
//! agent: the same queues, senders, self-metrics on the telemetry listener).
//!
//! Input: one sample per line, `{"labels":{…},"t":<ms>,"v":<number, "NaN", "+Inf",
//! "-Inf" or "stale">}`. A blank line ends a push (what one scrape would hand over);
//! a push is also made every [`MAX_PUSH`] samples and at the end of the input.
//! Lines that do not parse are reported on standard error and skipped.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use serde::Deserialize;

use super::series::{Sample, Series, stale_nan};
use super::sink::{self, Summary};
use crate::config::Config;
use crate::telemetry::Metrics;
use crate::telemetry::server::{self, Health};

/// Samples pushed at once at most.
pub const MAX_PUSH: usize = 10_000;
/// Bad lines reported one by one at most (the rest are only counted).
const MAX_REPORTED: usize = 10;

/// What a push-samples run did.
#[derive(Debug)]
pub struct Report {
    /// Samples read and pushed.
    pub pushed: u64,
    /// Lines skipped because they did not parse.
    pub bad_lines: u64,
    /// What became of the samples.
    pub summary: Summary,
}

impl Report {
    /// True when every line parsed and every sample was delivered.
    pub fn complete(&self) -> bool {
        self.bad_lines == 0
            && match &self.summary {
                Summary::RemoteWrite(s) => s.iter().all(|e| e.failed == 0 && e.dropped == 0),
                Summary::Local(_) => true,
            }
    }
}

#[derive(Deserialize)]
struct Line {
    labels: BTreeMap<String, String>,
    t: i64,
    v: Value,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Value {
    Number(f64),
    Word(String),
}

/// One line's sample; `series` keeps each label set's [`Series`] (as a scrape loop's
/// series cache does).
fn parse(
    line: &str,
    series: &mut HashMap<BTreeMap<String, String>, Series>,
) -> Result<Sample, String> {
    let Line { labels, t, v } = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let value = match v {
        Value::Number(n) => n,
        Value::Word(w) => match w.as_str() {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "stale" => stale_nan(),
            other => {
                return Err(format!(
                    "`v`: `{other}` is not a number, NaN, +Inf, -Inf or stale"
                ));
            }
        },
    };
    let s = match series.get(&labels) {
        Some(s) => s.clone(),
        None => {
            let s = Series::new(labels.clone()).map_err(|e| e.to_string())?;
            series.insert(labels, s.clone());
            s
        }
    };
    Ok(Sample {
        series: s,
        timestamp_ms: t,
        value,
    })
}

/// Runs the metrics destination of `cfg` (and its telemetry listener), pushes what
/// `input` holds, and shuts down.
pub fn run(cfg: Config, input: impl BufRead) -> anyhow::Result<Report> {
    let metrics_cfg = cfg
        .metrics
        .clone()
        .context("the config has no `metrics:` section: nothing says where samples go")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    health
        .ready
        .store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(addr) = cfg.telemetry.listen {
        let (bound, _task) = rt
            .block_on(server::serve(addr, Arc::clone(&metrics), health))
            .with_context(|| format!("binding telemetry listen_addr {addr}"))?;
        tracing::info!(addr = %bound, "telemetry listening");
    }
    let (dest, running) = sink::start(&metrics_cfg, &metrics, rt.handle())?;
    let mut cache = HashMap::new();
    let mut batch = Vec::new();
    let (mut pushed, mut bad_lines) = (0u64, 0u64);
    for (n, line) in input.lines().enumerate() {
        let line = line.context("reading the samples")?;
        if line.trim().is_empty() {
            if !batch.is_empty() {
                pushed += batch.len() as u64;
                dest.push(std::mem::take(&mut batch));
            }
            continue;
        }
        match parse(&line, &mut cache) {
            Ok(s) => batch.push(s),
            Err(e) => {
                bad_lines += 1;
                if bad_lines as usize <= MAX_REPORTED {
                    eprintln!("line {}: {e}", n + 1);
                }
            }
        }
        if batch.len() >= MAX_PUSH {
            pushed += batch.len() as u64;
            dest.push(std::mem::take(&mut batch));
        }
    }
    if !batch.is_empty() {
        pushed += batch.len() as u64;
        dest.push(batch);
    }
    let summary = running.shutdown(Instant::now() + cfg.shutdown_timeout);
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(Report {
        pushed,
        bad_lines,
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::series::is_stale;

    #[test]
    fn lines_parse_and_share_their_series() {
        let mut cache = HashMap::new();
        let a = parse(
            r#"{"labels":{"job":"x","__name__":"up"},"t":1700000000000,"v":1}"#,
            &mut cache,
        )
        .unwrap();
        let b = parse(
            r#"{"labels":{"__name__":"up","job":"x"},"t":1700000015000,"v":"stale"}"#,
            &mut cache,
        )
        .unwrap();
        assert!(a.series.is(&b.series));
        assert_eq!(a.series.name(), "up");
        assert_eq!((a.timestamp_ms, a.value), (1_700_000_000_000, 1.0));
        assert!(is_stale(b.value));
        for (v, want) in [
            ("\"NaN\"", f64::NAN),
            ("\"+Inf\"", f64::INFINITY),
            ("-0.5", -0.5),
        ] {
            let s = parse(
                &format!(r#"{{"labels":{{"__name__":"m"}},"t":1,"v":{v}}}"#),
                &mut cache,
            )
            .unwrap();
            assert_eq!(s.value.is_nan(), want.is_nan());
            assert!(s.value.is_nan() || s.value == want);
        }
        for bad in [
            r#"{"labels":{"job":"x"},"t":1,"v":1}"#,
            r#"{"labels":{"__name__":"m"},"t":1,"v":"big"}"#,
            r#"{"labels":{"__name__":"m"},"v":1}"#,
            "not json",
        ] {
            assert!(parse(bad, &mut cache).is_err(), "{bad}");
        }
    }
}
