//! Destinations for tests, until the sending side exists: [`JsonLines`] writes every
//! sample to a file (the agent scrapes into it when `KUBESHIP_TEST_METRICS_FILE` is set,
//! so that integration tests can read what its scrapes produced; without it the agent
//! does not scrape), and `Collect` keeps them in memory for unit tests.
//!
//! Not for production: [`JsonLines`] writes in `push`, on the scrape loop's thread.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use std::sync::Arc;

use anyhow::Context as _;

use super::series::{Destination, Sample, is_stale};

/// The environment variable naming the file of [`destination_from_env`].
pub const FILE_ENV: &str = "KUBESHIP_TEST_METRICS_FILE";

/// A [`JsonLines`] destination appending to the file `KUBESHIP_TEST_METRICS_FILE`
/// names, when it is set: the scrapes' only destination until the sending side
/// exists (test-only wiring in `app.rs`).
pub fn destination_from_env() -> anyhow::Result<Option<Arc<dyn Destination>>> {
    let Some(path) = std::env::var_os(FILE_ENV) else {
        return Ok(None);
    };
    let path = std::path::PathBuf::from(path);
    let file =
        JsonLines::create(&path).with_context(|| format!("{FILE_ENV}={}", path.display()))?;
    tracing::warn!(file = %path.display(), "test-only: scraped samples go to this file");
    Ok(Some(Arc::new(file)))
}

/// Writes each sample as one JSON line:
/// `{"labels":{"__name__":"up",…},"t":<ms>,"v":<value>}`; `v` is a string for the
/// staleness marker (`"stale"`), other NaNs (`"NaN"`) and infinities (`"+Inf"`,
/// `"-Inf"`). Each push is flushed.
pub struct JsonLines {
    out: Mutex<BufWriter<File>>,
}

impl JsonLines {
    /// Appends to `path` (created when missing).
    pub fn create(path: &Path) -> std::io::Result<JsonLines> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(JsonLines {
            out: Mutex::new(BufWriter::new(file)),
        })
    }
}

/// A sample as one JSON line (without its newline).
pub fn json_line(s: &Sample) -> String {
    let labels: serde_json::Map<String, serde_json::Value> = s
        .series
        .labels()
        .iter()
        .map(|l| (l.name.to_string(), serde_json::Value::from(&*l.value)))
        .collect();
    let v = if is_stale(s.value) {
        serde_json::Value::from("stale")
    } else if s.value.is_nan() {
        serde_json::Value::from("NaN")
    } else if s.value.is_infinite() {
        serde_json::Value::from(if s.value > 0.0 { "+Inf" } else { "-Inf" })
    } else {
        serde_json::Value::from(s.value)
    };
    serde_json::json!({"labels": labels, "t": s.timestamp_ms, "v": v}).to_string()
}

impl Destination for JsonLines {
    fn push(&self, samples: Vec<Sample>) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        for s in &samples {
            let _ = writeln!(out, "{}", json_line(s));
        }
        let _ = out.flush();
    }
}

/// Keeps every push in memory and wakes waiters (unit tests).
#[cfg(test)]
#[derive(Default)]
pub struct Collect {
    pushes: Mutex<Vec<Vec<Sample>>>,
    pushed: tokio::sync::Notify,
}

#[cfg(test)]
impl Collect {
    /// Every push so far, in order.
    pub fn pushes(&self) -> Vec<Vec<Sample>> {
        self.pushes.lock().unwrap().clone()
    }

    /// Waits (at most `within`) until `cond` holds for the pushes so far.
    pub async fn wait_for(
        &self,
        within: std::time::Duration,
        cond: impl Fn(&[Vec<Sample>]) -> bool,
    ) -> Vec<Vec<Sample>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.pushed.notified();
            {
                let p = self.pushes.lock().unwrap();
                if cond(&p) {
                    return p.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let p = self.pushes.lock().unwrap();
                let names: Vec<Vec<String>> = p
                    .iter()
                    .map(|push| {
                        push.iter()
                            .map(|s| format!("{:?}={}", s.series.labels(), s.value))
                            .collect()
                    })
                    .collect();
                panic!("condition not met within {within:?}; pushes: {names:#?}");
            }
        }
    }
}

#[cfg(test)]
impl Destination for Collect {
    fn push(&self, samples: Vec<Sample>) {
        self.pushes.lock().unwrap().push(samples);
        self.pushed.notify_waiters();
    }
}
