//! TLS client configuration.
//!
//! Roots are the union of the bundled Mozilla set (webpki-roots) and the
//! system store (rustls-native-certs, which honours `SSL_CERT_FILE` and
//! `SSL_CERT_DIR`), plus `--ca-certificate`: the bundled set alone fails behind
//! TLS-inspecting corporate proxies, the system set alone fails in slim
//! containers. The ring provider is named explicitly so that no process-wide
//! default is needed (see docs: ring builds in a quarter of aws-lc's time).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// TLS choices (aria2c's option names).
#[derive(Clone, Debug)]
pub struct TlsOptions {
    /// Extra trusted CA certificates (PEM), `--ca-certificate`.
    pub ca_certificate: Option<PathBuf>,
    /// `--check-certificate=false` turns verification off (with a warning).
    pub check_certificate: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            ca_certificate: None,
            check_certificate: true,
        }
    }
}

/// ring's suites with AES-128-GCM offered first. Servers take the client's
/// order, and ring's starts with AES-256-GCM, whose 14 rounds (against
/// AES-128's 10) cost about 6% of a TLS download's CPU here
/// (docs/performance.md).
fn provider() -> Arc<CryptoProvider> {
    use rustls::CipherSuite::{
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS13_AES_128_GCM_SHA256,
    };
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            TLS13_AES_128_GCM_SHA256
                | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(p)
}

/// Builds the client configuration; `alpn` lists the protocols offered.
pub fn client_config(opts: &TlsOptions, alpn: &[&[u8]]) -> Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let mut config = if opts.check_certificate {
        builder
            .with_root_certificates(root_store(opts)?)
            .with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertificateCheck(provider)))
            .with_no_client_auth()
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Our own HTTP/1.1 client takes the traffic keys after the handshake
    // and protects the records itself (net::tls_link); they stay in memory.
    config.enable_secret_extraction = true;
    Ok(config)
}

fn root_store(opts: &TlsOptions) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // Load errors of the system store are not fatal: the bundled roots remain.
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!("system certificate store: {e}");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!("system roots: {added} added, {ignored} unusable");
    if let Some(path) = &opts.ca_certificate {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read --ca-certificate {}: {e}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot parse --ca-certificate {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "--ca-certificate {}: no PEM certificate found in the file",
                path.display()
            ));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("--ca-certificate {}: {e}", path.display()))?;
        }
    }
    Ok(roots)
}

/// The TLS part of a connection's `-v` line: version, cipher suite and ALPN,
/// e.g. `TLS 1.3, TLS13_AES_128_GCM_SHA256, ALPN http/1.1`.
pub fn describe(session: &rustls::CommonState) -> String {
    format!(
        "{}, {}, ALPN {}",
        session
            .protocol_version()
            .map(|v| match v {
                rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3".to_string(),
                rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2".to_string(),
                other => format!("{other:?}"),
            })
            .unwrap_or_else(|| "TLS".into()),
        session
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default(),
        session
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_else(|| "none".into())
    )
}

/// The server name to present (SNI) and verify: always the *target* host,
/// also inside proxy tunnels.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(h.to_string()).map_err(|e| format!("invalid TLS server name {h:?}: {e}"))
}

/// Accepts any certificate but still checks the handshake signatures, so the
/// connection is at least consistent with the key the server presented.
#[derive(Debug)]
struct NoCertificateCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCertificateCheck {
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
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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
