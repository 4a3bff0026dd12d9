//! Bolt over TLS, as the Neo4j drivers define the URL schemes: `+s` encrypts and verifies the server's certificate
//! (against the system's roots plus the sink's `ca_file`), `+ssc` encrypts and accepts any certificate
//! ("self-signed certificate": protects against eavesdropping, not against an impostor). rustls with ring, the
//! one TLS stack of the workspace.

use std::sync::Arc;

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms},
    pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime},
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_rustls::TlsConnector;

use super::target::{BoltTarget, Encryption};

/// The connector for `target`, or `None` for plain `bolt://`. Fails for a CA file that cannot be read or holds no
/// certificate: a configuration error, reported at start-up by the sink's settings.
pub fn connector(target: &BoltTarget) -> Result<Option<TlsConnector>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let config = match target.encryption {
        Encryption::None => return Ok(None),
        Encryption::Verified => builder.with_root_certificates(roots(target)?).with_no_client_auth(),
        Encryption::Unverified => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.signature_verification_algorithms)))
            .with_no_client_auth(),
    };
    Ok(Some(TlsConnector::from(Arc::new(config))))
}

/// The name the certificate must carry: the URL's host (a DNS name or an IP address).
pub fn server_name(target: &BoltTarget) -> Result<ServerName<'static>, String> {
    ServerName::try_from(target.host.clone()).map_err(|e| format!("{:?} is not a TLS server name: {e}", target.host))
}

/// The system's roots (those it cannot parse are skipped, as browsers do) and every certificate of the CA file.
fn roots(target: &BoltTarget) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = &target.ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("bolt CA file {}: {e}", path.display()))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("bolt CA file {}: {e}", path.display()))?;
            roots.add(cert).map_err(|e| format!("bolt CA file {}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("bolt CA file {} holds no PEM certificate", path.display()));
        }
    }
    Ok(roots)
}

/// `+ssc`: any certificate is accepted, but the handshake's signatures are still checked (so the session keys are
/// the server's, whoever it is).
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
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
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
