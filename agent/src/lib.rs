//! kubeship: a per-node observability agent for Kubernetes.
//!
//! It tails every container log on its node, enriches each record with its pod's
//! metadata, and ships batches to a sink (the embedded local sink today; CloudWatch
//! Logs next), advancing each file's checkpoint only after delivery. Start at
//! [`app`], which wires the pieces in the order data flows through them.
//!
//! Main types: [`logs::tail::Tailer`] (reads files into batches), [`logs::ledger::Ledger`]
//! (acknowledgements and checkpoints), [`logs::sink::LocalSink`], [`config::Config`].
//! It does not parse log framing itself: that is `kubeship-parsers`.

#![deny(missing_docs)]

pub mod app;
pub mod aws;
pub mod cli;
pub mod config;
pub mod kube;
pub mod logs;
pub mod net;
pub mod telemetry;
