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
//!
//! The sending half: [`sink::start`] starts the configured destination
//! ([`remote_write`] or [`local`]) and returns it with a handle to shut it down;
//! [`push`] feeds it from JSON lines (`kubeship push-samples`).

// Until `metrics::start` wires the pipeline into the agent, its parts are used by
// their tests only.
#![allow(dead_code)]

pub mod local;
pub mod push;
pub mod remote_write;
pub mod series;
pub mod sink;
