//! The metrics pipeline: discover the node's scrape targets, scrape their `/metrics`,
//! label the samples and forward them with Prometheus remote write.
//!
//! ```text
//! pod cache ─▶ targets ─▶ scrape ─▶ parse ─▶ label ─▶ relabel ─▶ queue (shards) ─▶ remote write
//! ```
//!
//! [`series`] is the interface between the scraping side and the sending side:
//! [`series::Sample`]s of shared [`series::Series`], handed to a
//! [`series::Destination`] (the remote-write queues, or the local sink).
//!
//! [`start`] starts the sending half first ([`sink::start`]: [`remote_write`] or
//! [`local`]), then the scrapes ([`scrape::start`]) into it; [`Handle::shutdown`]
//! stops them in reverse. [`push`] feeds the sending half from JSON lines
//! (`kubeship push-samples`).

use std::time::Instant;

use crate::kube::Pods;

pub mod local;
pub mod push;
pub mod relabel;
pub mod remote_write;
pub mod scrape;
pub mod series;
pub mod sink;
#[cfg(test)]
pub mod testing;

/// The running metrics pipeline.
pub struct Handle {
    scrapes: Option<scrape::Handle>,
    sink: sink::Running,
}

/// Starts the metrics pipeline when the config has a `metrics:` section (`None`
/// otherwise): where samples go, then the scrapes; `pods` (pod metadata on) gets its
/// subscription before its watch starts. Fails on what the sink cannot work without.
pub fn start(cx: &scrape::Context<'_>, pods: Option<&mut Pods>) -> anyhow::Result<Option<Handle>> {
    let Some(cfg) = cx.cfg.metrics.as_ref() else {
        return Ok(None);
    };
    let (destination, sink) = sink::start(cfg, cx.metrics, cx.rt)?;
    let scrapes = scrape::start(cx, pods, destination);
    Ok(Some(Handle { scrapes, sink }))
}

impl Handle {
    /// Returns once every target found at start has been scraped once (at once when
    /// nothing is scraped).
    pub async fn scraped_once(&self) {
        if let Some(scrapes) = &self.scrapes {
            scrapes.scraped_once().await;
        }
    }

    /// Stops scraping, then sends (or writes) what is held until `deadline`. Call
    /// outside the runtime.
    pub fn shutdown(self, deadline: Instant) -> sink::Summary {
        if let Some(scrapes) = self.scrapes {
            scrapes.shutdown(deadline);
        }
        self.sink.shutdown(deadline)
    }
}
