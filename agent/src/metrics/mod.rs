//! The metrics pipeline (being built): discover the node's scrape targets, scrape
//! their `/metrics`, label the samples and forward them with Prometheus remote write.
//!
//! ```text
//! pod cache ─▶ targets ─▶ scrape ─▶ parse ─▶ label ─▶ relabel ─▶ queue (shards) ─▶ remote write
//! ```
//!
//! [`series`] is the interface between the scraping side and the sending side:
//! [`series::Sample`]s of shared [`series::Series`], handed to a
//! [`series::Destination`] (the remote-write queues, or the local sink).

// Until `metrics::start` wires the pipeline into the agent, its parts are used by
// their tests only.
#![allow(dead_code)]

pub mod relabel;
pub mod scrape;
pub mod series;
pub mod testing;
