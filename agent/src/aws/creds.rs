//! Credentials for the CloudWatch sink: the AWS chain's, held until shortly before
//! they expire.
//!
//! The SDK wraps a credentials provider in an identity cache of its own; PutLogEvents
//! is signed here, outside the SDK, so the sink caches them itself, once, for both
//! its own calls and the SDK client's (stream and group creation, which is built
//! without the SDK's cache). Loads happen one at a time: requests that find the
//! credentials stale together wait for one load. A load that fails is not
//! remembered (the next request tries again); credentials a call was refused with
//! are dropped ([`CredentialCache::invalidate`]) so the next call loads fresh ones.
//! Nothing here formats the secret parts: `Credentials`' `Debug` redacts them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_smithy_runtime_api::client::identity::Identity;

/// Credentials are loaded again this long before they expire (or at half their
/// remaining lifetime, when that is shorter).
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// The longest a load may take before it counts as failed.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Credentials as loaded, ready to sign with.
#[derive(Clone, Debug)]
pub struct HeldCredentials {
    /// For the SDK client.
    pub creds: Credentials,
    /// For the SigV4 signer.
    pub identity: Identity,
    /// Which load they came from (see [`CredentialCache::invalidate`]).
    pub generation: u64,
    /// When to load again; `None`: they do not expire.
    refresh_at: Option<SystemTime>,
}

/// The AWS credential chain behind a cache.
#[derive(Debug)]
pub struct CredentialCache {
    /// `None` when the AWS configuration has no chain at all.
    chain: Option<SharedCredentialsProvider>,
    held: Mutex<Option<HeldCredentials>>,
    loads: tokio::sync::Mutex<u64>,
    load_timeout: Duration,
}

/// When credentials loaded at `now` and expiring at `expiry` are to be loaded again.
fn refresh_at(expiry: Option<SystemTime>, now: SystemTime) -> Option<SystemTime> {
    let expiry = expiry?;
    let left = expiry.duration_since(now).unwrap_or_default();
    Some(expiry - REFRESH_BEFORE_EXPIRY.min(left / 2))
}

impl CredentialCache {
    /// A cache in front of `chain`; loads taking longer than `load_timeout` fail.
    pub fn new(chain: Option<SharedCredentialsProvider>, load_timeout: Duration) -> Self {
        Self {
            chain,
            held: Mutex::new(None),
            loads: tokio::sync::Mutex::new(0),
            load_timeout,
        }
    }

    fn fresh(&self, now: SystemTime) -> Option<HeldCredentials> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.as_ref()
            .filter(|h| h.refresh_at.is_none_or(|t| now < t))
            .cloned()
    }

    /// The held credentials while fresh, else newly loaded ones.
    pub async fn get(&self) -> Result<HeldCredentials, CredentialsError> {
        if let Some(h) = self.fresh(SystemTime::now()) {
            return Ok(h);
        }
        let mut loads = self.loads.lock().await;
        // Someone else may have loaded them while this call waited.
        if let Some(h) = self.fresh(SystemTime::now()) {
            return Ok(h);
        }
        let chain = self.chain.as_ref().ok_or_else(|| {
            CredentialsError::not_loaded("the AWS configuration has no credentials provider")
        })?;
        let creds = tokio::time::timeout(self.load_timeout, chain.provide_credentials())
            .await
            .map_err(|_| CredentialsError::provider_timed_out(self.load_timeout))??;
        *loads += 1;
        let held = HeldCredentials {
            identity: Identity::from(creds.clone()),
            refresh_at: refresh_at(creds.expiry(), SystemTime::now()),
            creds,
            generation: *loads,
        };
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(held.clone());
        Ok(held)
    }

    /// Drops the credentials of load `generation` (a call signed with them was
    /// refused); newer ones are kept.
    pub fn invalidate(&self, generation: u64) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.as_ref().is_some_and(|h| h.generation == generation) {
            *held = None;
        }
    }
}

/// The cache as the SDK client's credentials provider.
#[derive(Clone, Debug)]
pub struct SharedCache(pub Arc<CredentialCache>);

impl ProvideCredentials for SharedCache {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move { self.0.get().await.map(|h| h.creds) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A chain that counts its loads and hands out credentials valid for `valid`
    /// (or failing, while `fail` is set).
    #[derive(Debug)]
    struct Counting {
        loads: AtomicUsize,
        valid: Option<Duration>,
        fail: std::sync::atomic::AtomicBool,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.loads.fetch_add(1, Ordering::SeqCst) + 1;
            if self.fail.load(Ordering::SeqCst) {
                return future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
                    "no credentials here",
                )));
            }
            let expiry = self.valid.map(|v| SystemTime::now() + v);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AKID{n}"),
                "secret",
                Some("token".into()),
                expiry,
                "test",
            )))
        }
    }

    fn cache(valid: Option<Duration>) -> (CredentialCache, Arc<Counting>) {
        let chain = Arc::new(Counting {
            loads: AtomicUsize::new(0),
            valid,
            fail: Default::default(),
        });
        let shared = SharedCredentialsProvider::new(SharedChain(Arc::clone(&chain)));
        (CredentialCache::new(Some(shared), LOAD_TIMEOUT), chain)
    }

    #[derive(Debug)]
    struct SharedChain(Arc<Counting>);
    impl ProvideCredentials for SharedChain {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.0.provide_credentials()
        }
    }

    fn loads(c: &Counting) -> usize {
        c.loads.load(Ordering::SeqCst)
    }

    #[test]
    fn refresh_time_leaves_a_margin() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = now + Duration::from_secs(3600);
        assert_eq!(
            refresh_at(Some(hour), now),
            Some(hour - REFRESH_BEFORE_EXPIRY)
        );
        let soon = now + Duration::from_secs(120);
        assert_eq!(
            refresh_at(Some(soon), now),
            Some(now + Duration::from_secs(60)),
            "short-lived: refreshed at half their lifetime"
        );
        assert_eq!(refresh_at(Some(now), now), Some(now), "expired: at once");
        assert_eq!(refresh_at(None, now), None, "static keys never expire");
    }

    #[tokio::test]
    async fn loads_once_while_fresh() {
        let (c, chain) = cache(Some(Duration::from_secs(3600)));
        let a = c.get().await.expect("creds");
        let b = c.get().await.expect("creds");
        assert_eq!(loads(&chain), 1);
        assert_eq!(a.generation, b.generation);
        assert_eq!(b.creds.access_key_id(), "AKID1");
        assert!(b.identity.data::<Credentials>().is_some());
        let (c, chain) = cache(None);
        for _ in 0..3 {
            c.get().await.expect("creds");
        }
        assert_eq!(loads(&chain), 1, "credentials without expiry are kept");
    }

    #[tokio::test]
    async fn loads_again_before_expiry() {
        // Valid for 1 s: stale at once with a 0.5 s margin... after half a second.
        let (c, chain) = cache(Some(Duration::from_secs(1)));
        c.get().await.expect("creds");
        c.get().await.expect("creds");
        assert_eq!(loads(&chain), 1);
        tokio::time::sleep(Duration::from_millis(600)).await;
        let h = c.get().await.expect("creds");
        assert_eq!(loads(&chain), 2, "reloaded within the margin before expiry");
        assert_eq!(h.creds.access_key_id(), "AKID2");
    }

    #[tokio::test]
    async fn invalidate_reloads_but_spares_newer_credentials() {
        let (c, chain) = cache(Some(Duration::from_secs(3600)));
        let first = c.get().await.expect("creds");
        c.invalidate(first.generation);
        let second = c.get().await.expect("creds");
        assert_eq!(loads(&chain), 2);
        assert_ne!(first.generation, second.generation);
        // A late refusal of the first credentials does not drop the second.
        c.invalidate(first.generation);
        c.get().await.expect("creds");
        assert_eq!(loads(&chain), 2);
    }

    #[tokio::test]
    async fn failed_loads_are_not_remembered() {
        let (c, chain) = cache(Some(Duration::from_secs(3600)));
        chain.fail.store(true, Ordering::SeqCst);
        assert!(c.get().await.is_err());
        assert!(c.get().await.is_err());
        assert_eq!(loads(&chain), 2, "each call tries again");
        chain.fail.store(false, Ordering::SeqCst);
        c.get().await.expect("creds once the chain has them");
        c.get().await.expect("creds");
        assert_eq!(loads(&chain), 3);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_load() {
        let (c, chain) = cache(Some(Duration::from_secs(3600)));
        let c = Arc::new(c);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let c = Arc::clone(&c);
                tokio::spawn(async move { c.get().await.map(|h| h.generation) })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.expect("task").expect("creds"), 1);
        }
        assert_eq!(loads(&chain), 1);
    }

    #[tokio::test]
    async fn the_sdk_side_gets_the_same_credentials() {
        let (c, chain) = cache(Some(Duration::from_secs(3600)));
        let shared = SharedCache(Arc::new(c));
        let a = shared.provide_credentials().await.expect("creds");
        let b = shared.0.get().await.expect("creds");
        assert_eq!(a.access_key_id(), b.creds.access_key_id());
        assert_eq!(loads(&chain), 1);
    }
}
