//! Sinks: where batches go. A sink acknowledges each batch to the ledger once it
//! was delivered; only then do the files' checkpoints advance.

pub mod local;

pub use local::LocalSink;
