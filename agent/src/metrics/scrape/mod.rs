//! The scraping half of the metrics pipeline (being built): find the node's targets,
//! scrape each at its interval, label the samples and hand them to a
//! [`Destination`](crate::metrics::series::Destination).

pub mod discover;
pub mod http;
pub mod metrics;
pub mod process;
pub mod target;
#[cfg(test)]
mod testserver;
pub mod tls;
