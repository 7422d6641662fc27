//! The AWS side shared by every AWS client of the agent (CloudWatch Logs now, Amazon
//! Managed Prometheus next): credentials from the SDK's chain (IRSA web identity, EKS
//! Pod Identity, environment, profile, instance metadata) held by one cache, and
//! SigV4 signing for any service. Connections and retry timing are not AWS-specific
//! and live in `crate::net`.

pub mod creds;
pub mod sign;
