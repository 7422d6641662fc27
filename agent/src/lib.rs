//! kubeship: a per-node observability agent for Kubernetes.
//!
//! It tails every container log on its node, enriches each record with its pod's
//! metadata, and ships batches to a sink (the embedded local sink today; CloudWatch
//! Logs next), advancing each file's checkpoint only after delivery. Start at
//! [`app`], which wires the pieces in the order data flows through them.
//!
//! Main types: [`tail::Tailer`] (reads files into batches), [`ledger::Ledger`]
//! (acknowledgements and checkpoints), [`sink::LocalSink`], [`config::Config`].
//! It does not parse log framing itself: that is `kubeship-parsers`.

#![deny(missing_docs)]

pub mod app;
pub mod batch;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod encode;
pub mod enrich;
pub mod kube;
pub mod ledger;
pub mod memory;
pub mod persist;
pub mod route;
pub mod sink;
pub mod tail;
pub mod telemetry;
