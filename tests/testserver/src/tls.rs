//! A throwaway certificate authority for serving HTTPS on loopback: the
//! examples' `--tls CA_FILE` (serve, mock_hub) and tests that need the CA as
//! a file, as a user would pass it to `--ca-certificate` or `SSL_CERT_FILE`.
//!
//! A fresh CA per call, so nothing here is a secret worth keeping and no
//! key is ever written: only the CA certificate goes to disk.

use std::path::Path;
use std::sync::Arc;

/// Makes a CA that lives as long as the returned configuration, signs a
/// server certificate for `127.0.0.1` and `localhost` with it, writes the
/// CA certificate (PEM) to `ca_file`, and returns the server configuration
/// for [`crate::ServerOptions::tls`]. It lists no ALPN protocols, so the
/// server offers `h2` and `http/1.1`.
pub fn throwaway_tls(ca_file: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let ca_key = rcgen::KeyPair::generate().map_err(|e| err(&e))?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| err(&e))?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "hfd-testserver throwaway CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(|e| err(&e))?;
    let key = rcgen::KeyPair::generate().map_err(|e| err(&e))?;
    let leaf =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(|e| err(&e))?
            .signed_by(&key, &ca)
            .map_err(|e| err(&e))?;
    std::fs::write(ca_file, ca.pem()).map_err(|e| format!("{}: {e}", ca_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&e))?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .map_err(|e| err(&e))?;
    Ok(Arc::new(config))
}
