//! Proxies end to end, through the real `hfget` binary: every proxy
//! variable alone and in both spellings, flags over the environment,
//! NO_PROXY forms, per-host routing across a redirect, socks5 vs socks5h,
//! credentials, unreachable proxies, TLS through tunnels, HTTP/2 and `-v`.
//!
//! How "no byte went direct" is proven: the proxies bind their outgoing
//! sockets to 127.0.0.2, and origins that must only be reached through a
//! proxy accept connections from 127.0.0.2 alone (others are closed before a
//! byte is read, and counted). Origins that must be reached directly accept
//! 127.0.0.1 alone. The in-process proxies (`hfd_testserver::proxy`) record
//! what the client sent; the real ones users run (tinyproxy, microsocks) are
//! started from here when installed, and their tests print `SKIPPED: ...`
//! otherwise.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hfd_testserver::proxy::{
    AddrType, HttpProxy, HttpProxyOptions, ProxyAuth, SocksOptions, SocksOutcome, SocksProxy,
    Upstream, userinfo_encode,
};

use crate::support::*;
use crate::tls::{Pki, pki_for};

/// The source address of every proxy's outgoing connections.
const VIA: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// The source address of our own (direct) connections.
const DIRECT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

const PROXY_EXIT: i32 = 41;

/// A user name and password with the characters that need percent-encoding.
const USER: &str = "us@er";
const PASS: &str = "p:ss@w0rd-7f3a";

/// An origin that accepts only `allow` peers (or anyone).
fn origin(tls: Option<&Pki>, allow: Option<IpAddr>) -> TestServer {
    TestServer::start_with(ServerOptions {
        tls: tls.map(|p| p.server.clone()),
        allow_peers: allow.map(|ip| vec![ip]),
        ..ServerOptions::default()
    })
}

/// Serves a generated file at `path`; returns its SHA-256.
fn serve(server: &TestServer, path: &str, seed: u64, len: u64) -> String {
    let f = FileSpec::generated(seed, len);
    let sha = f.sha256_hex();
    server.add_file(path, f);
    sha
}

fn upstream(hosts: Vec<(String, SocketAddr)>) -> Upstream {
    Upstream {
        hosts,
        outgoing: Some(VIA),
    }
}

fn http_proxy(auth: Option<(&str, &str)>) -> HttpProxy {
    HttpProxy::start(HttpProxyOptions {
        auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        upstream: upstream(Vec::new()),
        ..HttpProxyOptions::default()
    })
    .unwrap()
}

fn socks_proxy(auth: Option<(&str, &str)>, hosts: Vec<(String, SocketAddr)>) -> SocksProxy {
    SocksProxy::start(SocksOptions {
        auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        upstream: upstream(hosts),
        ..SocksOptions::default()
    })
    .unwrap()
}

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_ca(dir: &Path, pki: &Pki) -> String {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    path_str(&ca)
}

/// Runs `hfget URL -o OUT ARGS...` with `env` set.
fn get(dir: &Path, url: &str, out: &str, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut c = hfget(dir);
    c.args([url, "-o", out]).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let (code, stdout, stderr) = run(&mut c);
    Outcome {
        code,
        stdout,
        stderr,
        path: dir.join(out),
    }
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
    path: PathBuf,
}

impl Outcome {
    #[track_caller]
    fn ok(&self, sha: &str) {
        assert_eq!(self.code, 0, "stderr: {}", self.stderr);
        assert_eq!(sha256_file(&self.path), sha);
    }

    #[track_caller]
    fn failed(&self, code: i32, wants: &[&str]) {
        assert_eq!(self.code, code, "stderr: {}", self.stderr);
        for w in wants {
            assert!(self.stderr.contains(w), "want {w:?} in: {}", self.stderr);
        }
        assert!(!self.path.exists(), "no output file on failure");
    }

    /// Neither the password nor any encoding of it was printed.
    #[track_caller]
    fn no_secret(&self, user: &str, pass: &str) {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        for text in [&self.stdout, &self.stderr] {
            for secret in [pass, &userinfo_encode(pass), &basic] {
                assert!(!text.contains(secret), "secret {secret:?} printed: {text}");
            }
        }
    }
}

/// Every request the origin logged came from `peer`, and none was refused.
#[track_caller]
fn all_from(server: &TestServer, peer: IpAddr) {
    let reqs = server.requests();
    assert!(!reqs.is_empty(), "the origin saw no request");
    for r in &reqs {
        assert_eq!(r.peer.ip(), peer, "{} {} from {}", r.method, r.uri, r.peer);
    }
    assert_eq!(
        server.stats().foreign_connections,
        0,
        "{:?}",
        server.stats()
    );
}

#[test]
fn each_of_the_six_variables_alone_routes_through_the_proxy() {
    let pki = pki_for(&["localhost", "127.0.0.1", "hub.test"]);
    let plain = origin(None, Some(VIA));
    let secure = origin(Some(&pki), Some(VIA));
    let sha = serve(&plain, "/f.bin", 1, 300_000);
    let sha_s = serve(&secure, "/f.bin", 1, 300_000);
    let hp = http_proxy(None);
    let sp = socks_proxy(None, vec![("hub.test".into(), SocketAddr::new(DIRECT, 0))]);
    let dir = tempdir();
    let ca = write_ca(dir.path(), &pki);
    let http_url = plain.url("/f.bin");
    let https_url = secure.url("/f.bin");
    // `hub.test` resolves nowhere but in the SOCKS proxy's map.
    let hub_http = plain.url_with_host("hub.test", "/f.bin");
    let hub_https = secure.url_with_host("hub.test", "/f.bin");

    for (var, url, socks) in [
        ("http_proxy", &http_url, false),
        ("HTTP_PROXY", &http_url, false),
        ("https_proxy", &https_url, false),
        ("HTTPS_PROXY", &https_url, false),
        ("all_proxy", &hub_http, true),
        ("ALL_PROXY", &hub_https, true),
    ] {
        hp.clear_requests();
        sp.clear_sessions();
        let proxy = if socks { sp.url("socks5h") } else { hp.url() };
        let out = format!("{var}.bin");
        let o = get(
            dir.path(),
            url,
            &out,
            &["--ca-certificate", &ca],
            &[(var, &proxy)],
        );
        o.ok(if url.starts_with("https") {
            &sha_s
        } else {
            &sha
        });
        assert!(
            !o.stderr.contains("WARN"),
            "{var}: nothing to warn about: {}",
            o.stderr
        );
        if socks {
            let s = sp.sessions();
            assert!(!s.is_empty(), "{var}");
            for session in s {
                assert_eq!(session.atyp, Some(AddrType::Domain), "{var}");
                assert!(session.target.unwrap().starts_with("hub.test:"), "{var}");
            }
        } else {
            let reqs = hp.requests();
            assert!(!reqs.is_empty(), "{var}");
            let want = if url.starts_with("https") {
                "CONNECT"
            } else {
                "GET"
            };
            for r in reqs {
                assert_eq!(r.method, want, "{var}: {r:?}");
            }
        }
    }
    all_from(&plain, VIA);
    all_from(&secure, VIA);
}

#[test]
fn both_spellings_set_and_different_lowercase_wins_and_one_line_says_so() {
    let plain = origin(None, Some(VIA));
    let sha = serve(&plain, "/f.bin", 2, 100_000);
    let hp = http_proxy(Some((USER, PASS)));
    let good = hp.url_with_auth(USER, PASS);
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let dir = tempdir();
    for (lower, upper) in [
        ("http_proxy", "HTTP_PROXY"),
        ("all_proxy", "ALL_PROXY"),
        ("no_proxy", "NO_PROXY"),
    ] {
        let out = format!("{lower}.bin");
        let env: Vec<(&str, &str)> = if lower == "no_proxy" {
            // The lowercase list keeps the proxy in use, the uppercase one
            // would exempt the origin.
            vec![
                ("http_proxy", &good),
                (lower, "example.org"),
                (upper, "127.0.0.1"),
            ]
        } else {
            vec![(lower, &good), (upper, &dead)]
        };
        let o = get(dir.path(), &plain.url("/f.bin"), &out, &[], &env);
        o.ok(&sha);
        o.no_secret(USER, PASS);
        let lines: Vec<&str> = o
            .stderr
            .lines()
            .filter(|l| l.contains("are set and differ"))
            .collect();
        assert_eq!(lines.len(), 1, "{lower}: {}", o.stderr);
        assert!(
            lines[0].contains(&format!(
                "both {lower} and {upper} are set and differ; using {lower}="
            )),
            "{}",
            lines[0]
        );
    }
    all_from(&plain, VIA);
}

#[test]
fn an_empty_variable_counts_as_unset() {
    let pki = pki_for(&["127.0.0.1"]);
    let secure = origin(Some(&pki), Some(VIA));
    let sha = serve(&secure, "/f.bin", 3, 100_000);
    let direct_only = origin(None, Some(DIRECT));
    let sha_d = serve(&direct_only, "/f.bin", 3, 100_000);
    let hp = http_proxy(None);
    let dir = tempdir();
    let ca = write_ca(dir.path(), &pki);
    // An empty lowercase variable does not mask the uppercase one.
    get(
        dir.path(),
        &secure.url("/f.bin"),
        "a.bin",
        &["--ca-certificate", &ca],
        &[("https_proxy", ""), ("HTTPS_PROXY", &hp.url())],
    )
    .ok(&sha);
    all_from(&secure, VIA);
    // Empty variables alone: direct.
    get(
        dir.path(),
        &direct_only.url("/f.bin"),
        "b.bin",
        &[],
        &[("http_proxy", ""), ("all_proxy", ""), ("ALL_PROXY", " ")],
    )
    .ok(&sha_d);
    all_from(&direct_only, DIRECT);
}

#[test]
fn flags_beat_the_environment_and_an_empty_all_proxy_turns_it_off() {
    let pki = pki_for(&["127.0.0.1"]);
    let plain = origin(None, Some(VIA));
    let secure = origin(Some(&pki), Some(VIA));
    let direct_only = origin(None, Some(DIRECT));
    let sha = serve(&plain, "/f.bin", 4, 100_000);
    let sha_s = serve(&secure, "/f.bin", 4, 100_000);
    let sha_d = serve(&direct_only, "/f.bin", 4, 100_000);
    let hp = http_proxy(None);
    let sp = socks_proxy(None, Vec::new());
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let env = [
        ("http_proxy", dead.as_str()),
        ("https_proxy", dead.as_str()),
        ("all_proxy", dead.as_str()),
    ];
    let dir = tempdir();
    let ca = write_ca(dir.path(), &pki);
    let hpu = hp.url();
    let spu = sp.url("socks5h");
    get(
        dir.path(),
        &plain.url("/f.bin"),
        "a.bin",
        &["--all-proxy", &hpu],
        &env,
    )
    .ok(&sha);
    get(
        dir.path(),
        &plain.url("/f.bin"),
        "b.bin",
        &["--http-proxy", &spu],
        &env,
    )
    .ok(&sha);
    get(
        dir.path(),
        &secure.url("/f.bin"),
        "c.bin",
        &["--https-proxy", &hpu, "--ca-certificate", &ca],
        &env,
    )
    .ok(&sha_s);
    all_from(&plain, VIA);
    all_from(&secure, VIA);
    assert!(!sp.sessions().is_empty());
    // `--all-proxy=` (empty): no proxy at all, whatever the environment says.
    get(
        dir.path(),
        &direct_only.url("/f.bin"),
        "d.bin",
        &["--all-proxy="],
        &env,
    )
    .ok(&sha_d);
    // `--no-proxy=` (empty) overrides a NO_PROXY that would exempt the origin.
    let o = get(
        dir.path(),
        &plain.url("/f.bin"),
        "e.bin",
        &["--no-proxy=", "--all-proxy", &hpu],
        &[("NO_PROXY", "*")],
    );
    o.ok(&sha);
    all_from(&direct_only, DIRECT);
    all_from(&plain, VIA);
}

#[test]
fn every_no_proxy_form_end_to_end() {
    let server = origin(None, None);
    let sha = serve(&server, "/f.bin", 5, 50_000);
    let port = server.addr().port();
    let other = port.wrapping_add(1).max(1);
    let hp = http_proxy(None);
    let dir = tempdir();
    let p = port.to_string();
    let cases: Vec<(String, &str, bool)> = vec![
        ("localhost".into(), "localhost", true),
        ("LocalHost".into(), "localhost", true),
        (".localhost".into(), "localhost", true),
        ("*.localhost".into(), "localhost", true),
        (format!("localhost:{p}"), "localhost", true),
        (format!("localhost:{other}"), "localhost", false),
        ("127.0.0.1".into(), "127.0.0.1", true),
        ("127.0.0.0/8".into(), "127.0.0.1", true),
        ("10.0.0.0/8".into(), "127.0.0.1", false),
        (format!("127.0.0.1:{p}"), "127.0.0.1", true),
        (format!("127.0.0.1:{other}"), "127.0.0.1", false),
        ("*".into(), "127.0.0.1", true),
        (" example.com , 127.0.0.1 ".into(), "127.0.0.1", true),
        // Names and addresses are compared as written: no DNS lookups.
        ("localhost".into(), "127.0.0.1", false),
        ("127.0.0.1".into(), "localhost", false),
        // Loopback is not exempt by itself (curl's rule too).
        ("example.com".into(), "127.0.0.1", false),
    ];
    for (i, (list, host, direct)) in cases.iter().enumerate() {
        let var = if i % 2 == 0 { "NO_PROXY" } else { "no_proxy" };
        let url = server.url_with_host(host, "/f.bin");
        let out = format!("{i}.bin");
        let before = server.requests().len();
        let o = get(
            dir.path(),
            &url,
            &out,
            &[],
            &[("all_proxy", &hp.url()), (var, list)],
        );
        o.ok(&sha);
        let reqs = server.requests();
        assert!(reqs.len() > before, "{list}");
        let want = if *direct { DIRECT } else { VIA };
        for r in &reqs[before..] {
            assert_eq!(r.peer.ip(), want, "{var}={list:?} for {url}");
        }
    }
}

#[test]
fn a_redirect_to_a_second_origin_is_routed_by_that_origins_own_name() {
    let hp = http_proxy(None);
    let dir = tempdir();
    // A (named by IP, proxied) redirects to B (named localhost, exempt by
    // NO_PROXY), and the other way round. Each origin accepts only the peer
    // its route implies, for every segment.
    for (a_host, b_host, a_peer, b_peer) in [
        ("127.0.0.1", "localhost", VIA, DIRECT),
        ("localhost", "127.0.0.1", DIRECT, VIA),
    ] {
        let a = origin(None, Some(a_peer));
        let b = origin(None, Some(b_peer));
        let sha = serve(&b, "/data.bin", 6, 3 << 20);
        a.add_redirect(
            "/f.bin",
            Redirect::found(b.url_with_host(b_host, "/data.bin")),
        );
        let out = format!("{a_host}.bin");
        let o = get(
            dir.path(),
            &a.url_with_host(a_host, "/f.bin"),
            &out,
            &["-x", "4", "-k", "512K", "-v"],
            &[("all_proxy", &hp.url()), ("NO_PROXY", "localhost")],
        );
        o.ok(&sha);
        all_from(&a, a_peer);
        all_from(&b, b_peer);
        assert!(
            b.requests().len() >= 3,
            "segments: {:?}",
            b.requests().len()
        );
        // -v says which route each connection took.
        assert!(
            o.stderr.contains(&format!("via {}", hp.url())),
            "{}",
            o.stderr
        );
        assert!(o.stderr.contains("direct (127.0.0.1:"), "{}", o.stderr);
    }
}

#[test]
fn socks5_resolves_names_locally_and_socks5h_lets_the_proxy_resolve() {
    let server = origin(None, Some(VIA));
    let sha = serve(&server, "/f.bin", 7, 50_000);
    let port = server.addr().port();
    let sp = socks_proxy(None, vec![("hub.test".into(), SocketAddr::new(DIRECT, 0))]);
    let dir = tempdir();
    for (i, (scheme, host, atyp, target)) in [
        (
            "socks5",
            "localhost",
            AddrType::Ipv4,
            format!("127.0.0.1:{port}"),
        ),
        (
            "socks5h",
            "localhost",
            AddrType::Domain,
            format!("localhost:{port}"),
        ),
        (
            "socks5h",
            "hub.test",
            AddrType::Domain,
            format!("hub.test:{port}"),
        ),
        // An IP literal is sent as an address with either scheme.
        (
            "socks5h",
            "127.0.0.1",
            AddrType::Ipv4,
            format!("127.0.0.1:{port}"),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        sp.clear_sessions();
        let o = get(
            dir.path(),
            &server.url_with_host(host, "/f.bin"),
            &format!("{i}.bin"),
            &["--all-proxy", &sp.url(scheme), "-v"],
            &[],
        );
        o.ok(&sha);
        let sessions = sp.sessions();
        assert!(!sessions.is_empty());
        for s in sessions {
            assert_eq!(s.outcome, SocksOutcome::Connected);
            assert_eq!(
                (s.atyp, s.target.as_deref()),
                (Some(atyp), Some(target.as_str())),
                "{scheme} {host}"
            );
            assert_eq!(s.user, None);
        }
        if scheme == "socks5" {
            assert!(
                o.stderr.contains("resolved locally to 127.0.0.1"),
                "{}",
                o.stderr
            );
        }
    }
    all_from(&server, VIA);
}

#[test]
fn http_proxy_credentials_good_bad_and_missing() {
    let pki = pki_for(&["127.0.0.1"]);
    let plain = origin(None, Some(VIA));
    let secure = origin(Some(&pki), Some(VIA));
    let sha = serve(&plain, "/f.bin", 8, 100_000);
    let sha_s = serve(&secure, "/f.bin", 8, 100_000);
    let hp = http_proxy(Some((USER, PASS)));
    let dir = tempdir();
    let ca = write_ca(dir.path(), &pki);
    let good = hp.url_with_auth(USER, PASS);
    let bad = hp.url_with_auth(USER, "wrong-secret-91");
    let none = hp.url();
    let shown = format!("http://***@{}", hp.addr());
    for (url, sha) in [(plain.url("/f.bin"), &sha), (secure.url("/f.bin"), &sha_s)] {
        let tag = if url.starts_with("https") { "s" } else { "p" };
        // Good: absolute form (http) and CONNECT (https), -v on.
        let o = get(
            dir.path(),
            &url,
            &format!("good-{tag}.bin"),
            &["-v", "--ca-certificate", &ca],
            &[("all_proxy", &good)],
        );
        o.ok(sha);
        o.no_secret(USER, PASS);
        assert!(o.stderr.contains(&format!("via {shown}")), "{}", o.stderr);
        assert!(hp.requests().iter().all(|r| r.auth == ProxyAuth::Valid));
        hp.clear_requests();
        // Bad: a clear message, exit 41, no retries, nothing printed twice.
        let o = get(
            dir.path(),
            &url,
            &format!("bad-{tag}.bin"),
            &["-v", "--ca-certificate", &ca],
            &[("all_proxy", &bad)],
        );
        o.failed(
            PROXY_EXIT,
            &[&format!("proxy {shown} rejected the user name or password")],
        );
        o.no_secret(USER, "wrong-secret-91");
        let reqs = hp.requests();
        assert_eq!(
            reqs.len(),
            1,
            "a credentials failure is not retried: {reqs:?}"
        );
        assert_eq!((reqs[0].auth, reqs[0].status), (ProxyAuth::Invalid, 407));
        hp.clear_requests();
        // Missing: says how to give them.
        let o = get(
            dir.path(),
            &url,
            &format!("none-{tag}.bin"),
            &["--ca-certificate", &ca],
            &[("all_proxy", &none)],
        );
        o.failed(PROXY_EXIT, &["requires authentication", "user:password"]);
        hp.clear_requests();
    }
    all_from(&plain, VIA);
    all_from(&secure, VIA);
}

#[test]
fn socks5_credentials_good_bad_and_missing() {
    let server = origin(None, Some(VIA));
    let sha = serve(&server, "/f.bin", 9, 100_000);
    let sp = socks_proxy(Some((USER, PASS)), Vec::new());
    let dir = tempdir();
    let url = server.url_with_host("localhost", "/f.bin");
    let with = |pass: &str| {
        format!(
            "socks5h://{}:{}@{}",
            userinfo_encode(USER),
            userinfo_encode(pass),
            sp.addr()
        )
    };
    let o = get(
        dir.path(),
        &url,
        "good.bin",
        &["-v"],
        &[("ALL_PROXY", &with(PASS))],
    );
    o.ok(&sha);
    o.no_secret(USER, PASS);
    let sessions = sp.sessions();
    assert!(
        !sessions.is_empty(),
        "the download did not go through the proxy"
    );
    for s in sessions {
        assert_eq!(s.user.as_deref(), Some(USER));
        assert_eq!(s.outcome, SocksOutcome::Connected);
    }
    sp.clear_sessions();
    let o = get(
        dir.path(),
        &url,
        "bad.bin",
        &["-v"],
        &[("ALL_PROXY", &with("wrong-secret-92"))],
    );
    o.failed(
        PROXY_EXIT,
        &[&format!(
            "SOCKS5 proxy socks5h://***@{} rejected the user name or password",
            sp.addr()
        )],
    );
    o.no_secret(USER, "wrong-secret-92");
    let s = sp.sessions();
    assert_eq!(s.len(), 1, "not retried: {s:?}");
    assert_eq!(s[0].outcome, SocksOutcome::AuthRejected);
    sp.clear_sessions();
    let o = get(
        dir.path(),
        &url,
        "none.bin",
        &[],
        &[("ALL_PROXY", &sp.url("socks5h"))],
    );
    o.failed(PROXY_EXIT, &["requires authentication", "user:password"]);
    assert_eq!(sp.sessions()[0].outcome, SocksOutcome::NoAcceptableMethod);
    all_from(&server, VIA);
}

#[test]
fn an_unreachable_proxy_fails_with_advice_and_never_falls_back_to_direct() {
    let pki = pki_for(&["127.0.0.1"]);
    // These origins would happily serve a direct connection.
    let plain = origin(None, None);
    let secure = origin(Some(&pki), None);
    serve(&plain, "/f.bin", 10, 10_000);
    serve(&secure, "/f.bin", 10, 10_000);
    let dir = tempdir();
    let ca = write_ca(dir.path(), &pki);
    let port = dead_port();
    for (i, (proxy, shown, url)) in [
        (
            format!("http://127.0.0.1:{port}"),
            format!("http://127.0.0.1:{port}"),
            plain.url("/f.bin"),
        ),
        (
            format!("127.0.0.1:{port}"),
            format!("http://127.0.0.1:{port}"),
            secure.url("/f.bin"),
        ),
        (
            format!(
                "socks5h://{}:{}@127.0.0.1:{port}",
                userinfo_encode(USER),
                userinfo_encode(PASS)
            ),
            format!("socks5h://***@127.0.0.1:{port}"),
            secure.url("/f.bin"),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let o = get(
            dir.path(),
            &url,
            &format!("{i}.bin"),
            &["--ca-certificate", &ca, "-v"],
            &[("all_proxy", &proxy)],
        );
        o.failed(
            PROXY_EXIT,
            &[&format!(
                "cannot reach proxy {shown}: connection refused — is it running?"
            )],
        );
        o.no_secret(USER, PASS);
    }
    for s in [&plain, &secure] {
        assert_eq!(s.stats().connections, 0, "no direct fallback");
        assert!(s.requests().is_empty());
    }
}

#[test]
fn proxies_that_cannot_reach_the_target_say_so() {
    let dir = tempdir();
    let port = dead_port();
    let url = format!("https://127.0.0.1:{port}/f.bin");
    let sp = socks_proxy(None, Vec::new());
    let o = get(
        dir.path(),
        &url,
        "a.bin",
        &[],
        &[("all_proxy", &sp.url("socks5h"))],
    );
    o.failed(
        PROXY_EXIT,
        &[&format!(
            "SOCKS5 proxy {} could not reach 127.0.0.1:{port}",
            sp.url("socks5h")
        )],
    );
    assert_eq!(sp.sessions()[0].outcome, SocksOutcome::Failed(5));
    let hp = http_proxy(None);
    let o = get(dir.path(), &url, "b.bin", &[], &[("all_proxy", &hp.url())]);
    o.failed(
        PROXY_EXIT,
        &[
            &format!("proxy {} could not reach 127.0.0.1:{port}", hp.url()),
            "502",
        ],
    );
}

#[test]
fn https_origin_trusted_through_ssl_cert_file_via_connect_and_socks_checks_the_target_name() {
    let pki = pki_for(&["hub.test", "localhost"]);
    let secure = origin(Some(&pki), Some(VIA));
    let sha = serve(&secure, "/f.bin", 11, 200_000);
    let target = SocketAddr::new(DIRECT, 0);
    let hp = HttpProxy::start(HttpProxyOptions {
        upstream: upstream(vec![
            ("hub.test".into(), target),
            ("other.test".into(), target),
        ]),
        ..HttpProxyOptions::default()
    })
    .unwrap();
    let sp = socks_proxy(
        None,
        vec![("hub.test".into(), target), ("other.test".into(), target)],
    );
    let dir = tempdir();
    let ca = write_ca(dir.path(), &pki);
    let url = secure.url_with_host("hub.test", "/f.bin");
    for (i, proxy) in [hp.url(), sp.url("socks5h")].iter().enumerate() {
        let o = get(
            dir.path(),
            &url,
            &format!("{i}.bin"),
            &[],
            &[("https_proxy", proxy), ("SSL_CERT_FILE", &ca)],
        );
        o.ok(&sha);
        // SNI names the target, not the proxy.
        for r in secure.requests() {
            assert_eq!(r.sni.as_deref(), Some("hub.test"));
        }
        // A certificate that does not name the target is refused (exit 42),
        // although the proxy's address is fine.
        let o = get(
            dir.path(),
            &secure.url_with_host("other.test", "/f.bin"),
            &format!("x{i}.bin"),
            &[],
            &[("https_proxy", proxy), ("SSL_CERT_FILE", &ca)],
        );
        o.failed(42, &["other.test"]);
    }
    // Without the CA the certificate is not trusted.
    let o = get(
        dir.path(),
        &url,
        "n.bin",
        &[],
        &[("https_proxy", &hp.url())],
    );
    o.failed(42, &["--ca-certificate"]);
    all_from(&secure, VIA);
}

#[test]
fn http2_through_proxies_and_verbose_shows_route_tls_and_alpn() {
    let pki = pki_for(&["127.0.0.1"]);
    let secure = origin(Some(&pki), Some(VIA));
    let sha = serve(&secure, "/f.bin", 12, 3 << 20);
    let hp = http_proxy(Some((USER, PASS)));
    let sp = socks_proxy(None, Vec::new());
    let dir = tempdir();
    let ca = write_ca(dir.path(), &pki);
    for (i, (proxy, shown)) in [
        (
            hp.url_with_auth(USER, PASS),
            format!("via http://***@{}", hp.addr()),
        ),
        (sp.url("socks5"), format!("via {}", sp.url("socks5"))),
    ]
    .into_iter()
    .enumerate()
    {
        let o = get(
            dir.path(),
            &secure.url("/f.bin"),
            &format!("{i}.bin"),
            &[
                "--http2",
                "-v",
                "--ca-certificate",
                &ca,
                "-x",
                "4",
                "-k",
                "512K",
            ],
            &[("HTTPS_PROXY", &proxy)],
        );
        o.ok(&sha);
        o.no_secret(USER, PASS);
        let connected: Vec<&str> = o
            .stderr
            .lines()
            .filter(|l| l.contains("connected: "))
            .collect();
        assert!(
            connected.len() >= 2,
            "one line per connection: {}",
            o.stderr
        );
        for l in &connected {
            assert!(
                l.contains(&shown)
                    && l.contains("HTTP/2, TLS 1.3, TLS13_AES_128_GCM_SHA256, ALPN h2"),
                "{l}"
            );
        }
        assert!(
            o.stderr
                .contains(&format!("proxy: https:// URLs {shown} (from HTTPS_PROXY)")),
            "{}",
            o.stderr
        );
    }
    assert!(
        secure
            .requests()
            .iter()
            .all(|r| r.version == http::Version::HTTP_2)
    );
    // Still one TCP connection per segment worker.
    assert!(secure.stats().connections >= 4, "{:?}", secure.stats());
    all_from(&secure, VIA);
}

#[test]
fn an_https_proxy_is_reached_over_tls() {
    let pki = pki_for(&["127.0.0.1"]);
    let plain = origin(None, Some(VIA));
    let secure = origin(Some(&pki), Some(VIA));
    let sha = serve(&plain, "/f.bin", 13, 100_000);
    let sha_s = serve(&secure, "/f.bin", 13, 100_000);
    let hp = HttpProxy::start(HttpProxyOptions {
        tls: Some(pki.server.clone()),
        auth: Some((USER.into(), PASS.into())),
        upstream: upstream(Vec::new()),
        ..HttpProxyOptions::default()
    })
    .unwrap();
    let dir = tempdir();
    let ca = write_ca(dir.path(), &pki);
    let proxy = hp.url_with_auth(USER, PASS);
    assert!(proxy.starts_with("https://"));
    get(
        dir.path(),
        &plain.url("/f.bin"),
        "a.bin",
        &["--ca-certificate", &ca],
        &[("all_proxy", &proxy)],
    )
    .ok(&sha);
    get(
        dir.path(),
        &secure.url("/f.bin"),
        "b.bin",
        &["--ca-certificate", &ca],
        &[("all_proxy", &proxy)],
    )
    .ok(&sha_s);
    let methods: Vec<String> = hp.requests().into_iter().map(|r| r.method).collect();
    assert!(
        methods.contains(&"GET".to_string()) && methods.contains(&"CONNECT".to_string()),
        "{methods:?}"
    );
    all_from(&plain, VIA);
    all_from(&secure, VIA);
}

// ---------------------------------------------------------------------------
// The real proxies users run: tinyproxy (HTTP) and microsocks (SOCKS5).

/// A proxy process on loopback, killed on drop.
pub(crate) struct RealProxy {
    child: Child,
    pub(crate) port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for RealProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Starts `make(port, dir)` on a free port and waits until it accepts
/// connections; a few attempts, in case another process took the port.
fn start_real(
    name: &str,
    make: impl Fn(&Path, u16, &Path) -> Command,
) -> Result<RealProxy, String> {
    let bin = find_binary(name).ok_or_else(|| format!("{name} is not installed"))?;
    let mut last = String::new();
    for _ in 0..3 {
        let dir = tempfile::Builder::new()
            .prefix("hfd-proxy-")
            .tempdir()
            .unwrap();
        let port = dead_port();
        let log = std::fs::File::create(dir.path().join("output.log")).unwrap();
        let mut cmd = make(&bin, port, dir.path());
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(RealProxy {
                    child,
                    port,
                    _dir: dir,
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                last = format!(
                    "{name} exited with {status}: {}",
                    std::fs::read_to_string(dir.path().join("output.log")).unwrap_or_default()
                );
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                last = format!("{name} did not listen on port {port} within 5 s");
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Err(last)
}

/// tinyproxy 1.11 (Debian 12): `Bind` sets the source address of both
/// forwarded requests and CONNECT tunnels; with no `ConnectPort` line every
/// port may be tunnelled; `BasicAuth` takes only `[-a-z0-9._]` characters,
/// and wrong credentials get 401 (not 407), missing ones 407.
pub(crate) fn tinyproxy(auth: Option<(&str, &str)>) -> Result<RealProxy, String> {
    start_real("tinyproxy", |bin, port, dir| {
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nBind 127.0.0.2\nTimeout 30\nAllow 127.0.0.1\n\
             MaxClients 64\nLogLevel Error\nLogFile \"{}\"\nPidFile \"{}\"\nDisableViaHeader Yes\n",
            dir.join("tinyproxy.log").display(),
            dir.join("tinyproxy.pid").display(),
        );
        if let Some((u, p)) = auth {
            conf.push_str(&format!("BasicAuth {u} {p}\n"));
        }
        let path = dir.join("tinyproxy.conf");
        std::fs::write(&path, conf).unwrap();
        let mut c = Command::new(bin);
        c.arg("-d").arg("-c").arg(path);
        c
    })
}

/// microsocks 1.0.3: `-b` binds outgoing connections, `-u`/`-P` require
/// RFC 1929 credentials (any bytes), names are resolved by the proxy.
pub(crate) fn microsocks(auth: Option<(&str, &str)>) -> Result<RealProxy, String> {
    start_real("microsocks", |bin, port, _| {
        let mut c = Command::new(bin);
        c.args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-b",
            "127.0.0.2",
        ]);
        if let Some((u, p)) = auth {
            c.args(["-u", u, "-P", p]);
        }
        c
    })
}

macro_rules! real_or_skip {
    ($e:expr) => {
        match $e {
            Ok(p) => p,
            Err(why) => {
                println!("SKIPPED: {why}");
                return;
            }
        }
    };
}

#[test]
fn tinyproxy_for_http_and_https_variables_with_credentials_and_a_redirect() {
    let (user, pass) = ("alice", "s3cret-tiny.42");
    let tp = real_or_skip!(tinyproxy(Some((user, pass))));
    let pki = pki_for(&["127.0.0.1", "localhost"]);
    let plain = origin(None, Some(VIA));
    let secure = origin(Some(&pki), Some(VIA));
    let direct_only = origin(None, Some(DIRECT));
    let sha = serve(&plain, "/f.bin", 14, 2 << 20);
    let sha_s = serve(&secure, "/f.bin", 14, 2 << 20);
    let sha_d = serve(&direct_only, "/data.bin", 15, 2 << 20);
    let dir = tempdir();
    let ca = write_ca(dir.path(), &pki);
    let good = format!("http://{user}:{pass}@127.0.0.1:{}", tp.port);
    for (var, url, sha) in [
        ("http_proxy", plain.url("/f.bin"), &sha),
        ("HTTP_PROXY", plain.url("/f.bin"), &sha),
        ("https_proxy", secure.url("/f.bin"), &sha_s),
        ("HTTPS_PROXY", secure.url("/f.bin"), &sha_s),
    ] {
        let o = get(
            dir.path(),
            &url,
            &format!("{var}.bin"),
            &["-x", "4", "-k", "512K", "-v"],
            &[(var, &good), ("SSL_CERT_FILE", &ca)],
        );
        o.ok(sha);
        o.no_secret(user, pass);
    }
    // A proxied origin redirects to one exempt by NO_PROXY.
    plain.add_redirect(
        "/r.bin",
        Redirect::found(direct_only.url_with_host("localhost", "/data.bin")),
    );
    get(
        dir.path(),
        &plain.url("/r.bin"),
        "r.bin",
        &["-x", "4", "-k", "512K"],
        &[("http_proxy", &good), ("no_proxy", "localhost")],
    )
    .ok(&sha_d);
    all_from(&plain, VIA);
    all_from(&secure, VIA);
    all_from(&direct_only, DIRECT);
    // Wrong credentials, for a forwarded request and on a CONNECT tunnel
    // (tinyproxy answers 401 to both; its realm tells it from an origin's).
    let o = get(
        dir.path(),
        &plain.url("/f.bin"),
        "bad-plain.bin",
        &["-v"],
        &[(
            "http_proxy",
            &format!("http://{user}:wrong-90@127.0.0.1:{}", tp.port),
        )],
    );
    o.failed(PROXY_EXIT, &["rejected the user name or password"]);
    o.no_secret(user, "wrong-90");
    let o = get(
        dir.path(),
        &secure.url("/f.bin"),
        "bad.bin",
        &["-v"],
        &[
            (
                "https_proxy",
                &format!("http://{user}:wrong-91@127.0.0.1:{}", tp.port),
            ),
            ("SSL_CERT_FILE", &ca),
        ],
    );
    o.failed(PROXY_EXIT, &["rejected the user name or password"]);
    o.no_secret(user, "wrong-91");
    let o = get(
        dir.path(),
        &secure.url("/f.bin"),
        "none.bin",
        &[],
        &[
            ("https_proxy", &format!("http://127.0.0.1:{}", tp.port)),
            ("SSL_CERT_FILE", &ca),
        ],
    );
    o.failed(PROXY_EXIT, &["requires authentication"]);
}

#[test]
fn microsocks_for_all_proxy_socks5_and_socks5h_with_credentials() {
    let tp = real_or_skip!(microsocks(Some((USER, PASS))));
    let pki = pki_for(&["127.0.0.1", "localhost"]);
    let plain = origin(None, Some(VIA));
    let secure = origin(Some(&pki), Some(VIA));
    let sha = serve(&plain, "/f.bin", 16, 2 << 20);
    let sha_s = serve(&secure, "/f.bin", 16, 2 << 20);
    let dir = tempdir();
    let ca = write_ca(dir.path(), &pki);
    let url_for = |scheme: &str, pass: &str| {
        format!(
            "{scheme}://{}:{}@127.0.0.1:{}",
            userinfo_encode(USER),
            userinfo_encode(pass),
            tp.port
        )
    };
    for (i, (var, scheme, url, sha)) in [
        (
            "all_proxy",
            "socks5h",
            plain.url_with_host("localhost", "/f.bin"),
            &sha,
        ),
        (
            "ALL_PROXY",
            "socks5",
            secure.url_with_host("localhost", "/f.bin"),
            &sha_s,
        ),
        ("all_proxy", "socks5h", secure.url("/f.bin"), &sha_s),
    ]
    .into_iter()
    .enumerate()
    {
        let o = get(
            dir.path(),
            &url,
            &format!("{i}.bin"),
            &["-x", "4", "-k", "512K", "-v"],
            &[(var, &url_for(scheme, PASS)), ("SSL_CERT_FILE", &ca)],
        );
        o.ok(sha);
        o.no_secret(USER, PASS);
    }
    all_from(&plain, VIA);
    all_from(&secure, VIA);
    let o = get(
        dir.path(),
        &plain.url("/f.bin"),
        "bad.bin",
        &["-v"],
        &[("all_proxy", &url_for("socks5h", "wrong-93"))],
    );
    o.failed(PROXY_EXIT, &["rejected the user name or password"]);
    o.no_secret(USER, "wrong-93");
    let o = get(
        dir.path(),
        &plain.url("/f.bin"),
        "none.bin",
        &[],
        &[("all_proxy", &format!("socks5h://127.0.0.1:{}", tp.port))],
    );
    o.failed(PROXY_EXIT, &["requires authentication"]);
}

#[test]
fn microsocks_without_auth_and_a_redirect_between_proxied_and_direct_origins() {
    let ms = real_or_skip!(microsocks(None));
    let a = origin(None, Some(DIRECT));
    let b = origin(None, Some(VIA));
    let sha = serve(&b, "/data.bin", 17, 2 << 20);
    a.add_redirect(
        "/f.bin",
        Redirect::temporary(b.url_with_host("localhost", "/data.bin")),
    );
    let dir = tempdir();
    get(
        dir.path(),
        &a.url("/f.bin"),
        "f.bin",
        &["-x", "4", "-k", "512K"],
        &[
            ("ALL_PROXY", &format!("socks5h://127.0.0.1:{}", ms.port)),
            ("NO_PROXY", "127.0.0.0/8"),
        ],
    )
    .ok(&sha);
    all_from(&a, DIRECT);
    all_from(&b, VIA);
}

#[test]
fn the_origin_filter_closes_direct_connections_so_a_bypass_cannot_pass() {
    let server = origin(None, Some(VIA));
    serve(&server, "/f.bin", 18, 10_000);
    let dir = tempdir();
    let o = get(
        dir.path(),
        &server.url("/f.bin"),
        "f.bin",
        &["-m", "2"],
        &[],
    );
    assert_ne!(o.code, 0, "{}", o.stderr);
    let stats = server.stats();
    assert!(stats.foreign_connections >= 1, "{stats:?}");
    assert_eq!((stats.connections, stats.requests), (0, 0), "{stats:?}");
}

#[test]
fn the_test_proxies_survive_garbage() {
    use std::io::{Read, Write};
    let sp = socks_proxy(Some((USER, PASS)), Vec::new());
    let hp = http_proxy(None);
    let inputs: [&[u8]; 5] = [
        b"GET / HTTP/1.1\r\n\r\n",
        &[5, 255],
        &[5, 1, 2, 1, 200],
        &[4, 1, 0, 80, 127, 0, 0, 1, 0],
        &[5, 1, 0, 5, 1, 0, 9],
    ];
    for input in inputs {
        for addr in [sp.addr(), hp.addr()] {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(input).unwrap();
            let _ = s.shutdown(std::net::Shutdown::Write);
            // The session ends (an answer, then EOF) instead of hanging.
            // A proxy that stops reading garbage and closes leaves bytes
            // unread, so the kernel may end it with a reset: an end too.
            // The read timeout (WouldBlock) is the hang.
            let mut buf = Vec::new();
            match s.read_to_end(&mut buf) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                Err(e) => panic!("{input:?} to {addr}: the session did not end: {e}"),
            }
        }
    }
    let sessions = sp.sessions();
    assert_eq!(sessions.len(), inputs.len(), "{sessions:?}");
    assert!(
        sessions
            .iter()
            .all(|s| s.outcome != SocksOutcome::Connected)
    );
    // Both still serve.
    let server = origin(None, Some(VIA));
    let sha = serve(&server, "/f.bin", 19, 10_000);
    let dir = tempdir();
    get(
        dir.path(),
        &server.url("/f.bin"),
        "a.bin",
        &[],
        &[("http_proxy", &hp.url())],
    )
    .ok(&sha);
    let socks = format!(
        "socks5h://{}:{}@{}",
        userinfo_encode(USER),
        userinfo_encode(PASS),
        sp.addr()
    );
    get(
        dir.path(),
        &server.url("/f.bin"),
        "b.bin",
        &[],
        &[("all_proxy", &socks)],
    )
    .ok(&sha);
}
