//! Network plumbing shared by the agent's clients, AWS or not: keep-alive HTTP/1.1
//! connections that the calling future drives itself, TLS settings, and retry timing.

pub mod backoff;
pub mod conn;
pub mod tls;
