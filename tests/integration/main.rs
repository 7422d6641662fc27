//! End-to-end tests of the real `kubeship` binary against kubelet-like node layouts.
//!
//! The binary must be built first (`cargo build -p kubeship`, same profile and target dir), or
//! pointed at with `KUBESHIP_BIN`; `tests/run.sh` does that. See `tests/lib.rs` for the harness.

#![forbid(unsafe_code)]

mod alerts_e2e;
mod bad_input;
mod bundle;
mod cli;
mod cloudwatch;
mod cloudwatch_budget;
mod cloudwatch_errors;
mod cloudwatch_infra;
mod contract;
mod credentials;
mod discovery;
mod kube;
mod kubeapi;
mod log_files;
mod model;
mod quickstart;
mod regression;
mod remote_write;
mod remote_write_auth;
mod scrape;
mod scrape_faults;
mod sigkill;
mod startup;
mod telemetry;
