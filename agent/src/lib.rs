//! kubeship: a per-node observability agent for Kubernetes.
//!
//! It tails every container log on its node, enriches each record with its pod's
//! metadata, and ships batches to CloudWatch Logs (or the embedded local sink),
//! advancing each file's checkpoint only after delivery. With a `metrics:` section it
//! also scrapes the node's annotated pods, its kubelet and itself, and forwards the
//! samples with Prometheus remote write (SigV4 for Amazon Managed Service for
//! Prometheus) or into a local sink. Start at `app`, the start-up script: the shared
//! services (`config`, `telemetry`, the pod watch of `kube`, [`aws`] and `net`), then
//! the pipelines (`logs`, then `metrics`), in the order data flows.
//!
//! It does not parse log framing or scrape bodies itself: that is `kubeship-parsers`.
//! Only [`cli`] (for `main.rs`) and [`aws`] (for the signing benchmark) are public.

#![deny(missing_docs)]

pub(crate) mod app;
pub mod aws;
pub mod cli;
pub(crate) mod config;
pub(crate) mod kube;
pub(crate) mod logs;
pub(crate) mod memory;
pub(crate) mod metrics;
pub(crate) mod net;
pub(crate) mod telemetry;
