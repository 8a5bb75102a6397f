//! HTTPS: our own CA, `--ca-certificate`, `SSL_CERT_FILE`, a clear error for
//! an unknown issuer, `--check-certificate=false`, HTTP/2 by ALPN, and our
//! own TLS records under HTTP/1.1 (TLS 1.3 and 1.2) against tokio-rustls.

use std::sync::Arc;

use crate::support::*;

/// A CA and a server certificate for localhost/127.0.0.1 signed by it.
pub struct Pki {
    pub server: Arc<rustls::ServerConfig>,
    pub ca_pem: String,
}

pub fn pki() -> Pki {
    pki_for(&["localhost", "127.0.0.1"])
}

/// A CA and a server certificate for `names` (DNS names or IP addresses).
pub fn pki_for(names: &[&str]) -> Pki {
    pki_with(names, rustls::DEFAULT_VERSIONS)
}

/// As [`pki_for`], with a server that speaks only `versions`.
fn pki_with(names: &[&str], versions: &[&'static rustls::SupportedProtocolVersion]) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "hfd test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Pki {
        server: Arc::new(server),
        ca_pem: ca.pem(),
    }
}

fn tls_server(pki: &Pki) -> TestServer {
    TestServer::start_with(ServerOptions {
        tls: Some(pki.server.clone()),
        ..ServerOptions::default()
    })
}

#[test]
fn https_with_our_ca_by_flag_env_or_not_at_all() {
    let pki = pki();
    let server = tls_server(&pki);
    let file = FileSpec::generated(21, 3 << 20);
    let want = file.sha256_hex();
    server.add_file("/f.bin", file);
    let dir = tempdir();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let url = server.url("/f.bin");
    assert!(url.starts_with("https://"), "{url}");

    // Unknown issuer: a clear error that says what to do, exit 42, no file.
    let (code, _, err) = run(hfget(dir.path()).args([&url, "-o", "a.bin"]));
    assert_eq!(code, 42, "{err}");
    assert!(err.contains("--ca-certificate"), "{err}");
    assert!(!dir.path().join("a.bin").exists());

    let (code, _, err) =
        run(hfget(dir.path()).args([&url, "-o", "b.bin", "--ca-certificate", &path_str(&ca)]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(sha256_file(&dir.path().join("b.bin")), want);

    let (code, _, err) = run(hfget(dir.path())
        .args([&url, "-o", "c.bin"])
        .env("SSL_CERT_FILE", &ca));
    assert_eq!(code, 0, "{err}");
    assert_eq!(sha256_file(&dir.path().join("c.bin")), want);

    let (code, _, err) =
        run(hfget(dir.path()).args([&url, "-o", "d.bin", "--check-certificate=false"]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("NOT checked"), "a loud warning: {err}");
    assert_eq!(sha256_file(&dir.path().join("d.bin")), want);
}

#[test]
fn http2_is_used_when_offered_and_asked_for() {
    let pki = pki();
    let server = tls_server(&pki);
    let file = FileSpec::generated(22, 4 << 20);
    let want = file.sha256_hex();
    server.add_file("/f.bin", file);
    let dir = tempdir();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let url = server.url("/f.bin");
    let (code, _, err) = run(hfget(dir.path()).args([
        &url,
        "-o",
        "h1.bin",
        "--ca-certificate",
        &path_str(&ca),
        "-x",
        "4",
        "-k",
        "512K",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.version == http::Version::HTTP_11)
    );
    server.reset_stats();
    let (code, _, err) = run(hfget(dir.path()).args([
        &url,
        "-o",
        "h2.bin",
        "--http2",
        "-v",
        "--ca-certificate",
        &path_str(&ca),
        "-x",
        "4",
        "-k",
        "512K",
    ]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(sha256_file(&dir.path().join("h2.bin")), want);
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.version == http::Version::HTTP_2)
    );
    // -v names the route, TLS version, cipher suite and ALPN of each
    // connection. The server takes the client's order, so the suite shows
    // that AES-128-GCM is offered first.
    assert!(
        err.contains("direct")
            && err.contains("TLS 1.3, TLS13_AES_128_GCM_SHA256")
            && err.contains("ALPN h2"),
        "{err}"
    );
    // Still one TCP connection per segment worker.
    assert!(server.stats().connections >= 4, "{:?}", server.stats());
}

/// HTTP/1.1 over TLS goes through our own records by default and through
/// tokio-rustls and hyper with `--no-own-tls`: the same file either way,
/// throttled so that connections take over each other's tails, and with
/// connections kept for several requests. A server that speaks only TLS 1.2
/// gets our records too.
#[test]
fn own_tls_records_and_hyper_give_the_same_file_in_tls_13_and_12() {
    for (pki, version) in [
        (pki(), "TLS 1.3"),
        (
            pki_with(&["localhost", "127.0.0.1"], &[&rustls::version::TLS12]),
            "TLS 1.2",
        ),
    ] {
        let server = tls_server(&pki);
        let file = FileSpec::generated(34, 12 << 20).throttle(4 << 20);
        let want = file.sha256_hex();
        server.add_file("/t.bin", file);
        let dir = tempdir();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        for own in [true, false] {
            server.reset_stats();
            let mut cmd = hfget(dir.path());
            cmd.args([
                &server.url("/t.bin"),
                "-x",
                "6",
                "-k",
                "1M",
                "-v",
                "--allow-overwrite",
                "--ca-certificate",
                &path_str(&ca),
            ]);
            if !own {
                cmd.arg("--no-own-tls");
            }
            let (code, _, err) = run(&mut cmd);
            assert_eq!(code, 0, "{version} own={own}: {err}");
            let line = err
                .lines()
                .find(|l| l.contains("connected:"))
                .unwrap_or_else(|| panic!("no connection line: {err}"));
            assert!(line.contains(version), "{line}");
            assert_eq!(line.contains("HTTP/1.1 (own TLS records)"), own, "{line}");
            assert_eq!(
                sha256_file(&dir.path().join("t.bin")),
                want,
                "{version} own={own}"
            );
            let stats = server.stats();
            assert!(
                stats.requests > stats.connections,
                "connections are reused: {stats:?}"
            );
        }
    }
}

/// `--no-own-tls` is a user's fallback should our TLS reader misbehave, so
/// `--help` shows it and says what it changes.
#[test]
fn no_own_tls_is_explained_in_help() {
    let dir = tempdir();
    let (code, out, _) = run(hfget(dir.path()).arg("--help"));
    assert_eq!(code, 0);
    let line = out
        .lines()
        .position(|l| l.contains("--no-own-tls"))
        .unwrap_or_else(|| panic!("--help lacks --no-own-tls:\n{out}"));
    let text: String = out.lines().skip(line).take(3).collect();
    assert!(text.contains("tokio-rustls and hyper"), "{text}");
}
