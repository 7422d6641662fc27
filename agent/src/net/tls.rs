//! TLS for the agent's HTTPS clients: rustls with the AWS SDK's crypto provider
//! (aws-lc-rs) and the system's root certificates, as the SDK's default client has
//! it; optionally more trusted certificates from a PEM file, only those (a scrape
//! target's `ca_file`), or no verification at all (`insecure_skip_verify`, for test
//! setups and self-signed kubelet certificates). [`connector`] wraps a TLS
//! configuration into the connector [`super::conn::Conns`] takes (TCP_NODELAY, a
//! connect timeout; plain HTTP for `http://` URLs).

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The certificates of a PEM file.
pub fn pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("reading certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// Which server certificates a client accepts.
pub enum Trust {
    /// Those the system's roots or these certificates vouch for.
    System(Vec<CertificateDer<'static>>),
    /// Those these certificates alone vouch for (a scrape target's `ca_file`, as
    /// Prometheus has it).
    Only(Vec<CertificateDer<'static>>),
    /// Any (`insecure_skip_verify`): the handshake's signatures are still checked.
    Any,
}

/// The system's root certificates, loaded at first use.
fn system_roots() -> RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            if !native.errors.is_empty() {
                tracing::warn!(errors = ?native.errors, "some system root certificates could not be loaded");
            }
            roots.add_parsable_certificates(native.certs);
            roots
        })
        .clone()
}

/// A client configuration accepting the server certificates `trust` says.
pub fn client_config(trust: Trust) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?;
    let (mut roots, extra) = match trust {
        Trust::Any => {
            return Ok(builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
                .with_no_client_auth());
        }
        Trust::System(extra) => (system_roots(), extra),
        Trust::Only(certs) => (RootCertStore::empty(), certs),
    };
    let (_, invalid) = roots.add_parsable_certificates(extra);
    if invalid > 0 {
        return Err(format!("{invalid} CA certificate(s) could not be used"));
    }
    if roots.is_empty() {
        tracing::warn!("no trusted root certificates: HTTPS connections will fail");
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// The system roots' configuration, or (should that fail, which the default provider's
/// default versions cannot) one that trusts nothing.
pub fn system_client_config() -> ClientConfig {
    client_config(Trust::System(Vec::new())).unwrap_or_else(|e| {
        tracing::error!(error = %e, "TLS configuration; HTTPS endpoints will fail");
        ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map(|b| {
                b.with_root_certificates(RootCertStore::empty())
                    .with_no_client_auth()
            })
            .unwrap_or_else(|_| unreachable!("TLS 1.3 is in the default provider"))
    })
}

/// The connector: TCP_NODELAY and a connect timeout, then TLS with `tls` for
/// `https://`, plain for `http://`.
pub fn connector(tls: ClientConfig, connect_timeout: Duration) -> HttpsConnector<HttpConnector> {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(connect_timeout));
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp)
}

/// Accepts any server certificate; handshake signatures are still verified.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_files_are_read_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let e = pem_certificates(&empty).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = pem_certificates(&dir.path().join("missing.pem")).unwrap_err();
        assert!(e.contains("missing.pem"), "{e}");
        // A PEM block that is no certificate is refused when it is used.
        let bad = dir.path().join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let certs = pem_certificates(&bad).unwrap();
        assert!(client_config(Trust::System(certs.clone())).is_err());
        assert!(client_config(Trust::Only(certs)).is_err());
        assert!(client_config(Trust::Any).is_ok());
    }
}
