//! The log pipeline: discover and tail container logs, enrich, encode and batch their
//! records, deliver them to a sink, and advance checkpoints once they are delivered.

pub mod batch;
pub mod checkpoint;
pub mod encode;
pub mod enrich;
pub mod ledger;
pub mod route;
pub mod sink;
pub mod tail;
