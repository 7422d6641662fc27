//! Sinks: where batches go. A sink acknowledges each batch to the ledger once it
//! was delivered; only then do the files' checkpoints advance.

pub mod cloudwatch;
pub mod local;

pub use cloudwatch::CloudWatchSink;
pub use local::LocalSink;
