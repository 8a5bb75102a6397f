//! The security review's findings (issue #17), each against the real
//! binaries: a token only to the endpoints the user named, no hang on a body
//! that never ends, user info never in a request target, no write through a
//! symbolic link, a warning for an https → http redirect, and a single
//! stream that never writes a 206 at the wrong offset.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hfd_testserver::proxy::{HttpProxy, HttpProxyOptions, Upstream};

use crate::support::*;

// ---------------------------------------------------------------------------
// A server that answers with exactly the bytes a test scripts.

/// What a scripted answer does after writing its bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Close the connection.
    Close,
    /// Keep it open, reading nothing, until the client closes it (or 60 s).
    Hold,
}

type Script = Arc<dyn Fn(usize, &str) -> (Vec<u8>, Then) + Send + Sync>;

/// One request at a time, one per connection; `script(n, head)` gives the
/// bytes of the `n`-th answer. Records each request head and, for held
/// connections, whether the client closed it.
struct Scripted {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    /// Sent once per held connection: the client closed it before 60 s.
    closed: mpsc::Receiver<()>,
    /// Sent when an answer to be held has been written.
    written: mpsc::Receiver<()>,
}

impl Scripted {
    fn start(script: Script) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (closed_tx, closed) = mpsc::channel();
        let (written_tx, written) = mpsc::channel();
        let h = heads.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate().take(64) {
                let Ok(mut s) = stream else { return };
                let Some(head) = read_head(&mut s) else {
                    continue;
                };
                h.lock().unwrap().push(head.clone());
                let (bytes, then) = script(n, &head);
                let _ = s.write_all(&bytes);
                if then == Then::Hold {
                    let (closed_tx, written_tx) = (closed_tx.clone(), written_tx.clone());
                    std::thread::spawn(move || {
                        let _ = written_tx.send(());
                        let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                        let mut buf = [0u8; 4096];
                        // Anything but a timeout means the client let go.
                        loop {
                            match s.read(&mut buf) {
                                Ok(0) => break,
                                Ok(_) => continue,
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return,
                                Err(_) => break,
                            }
                        }
                        let _ = closed_tx.send(());
                    });
                }
            }
        });
        Scripted {
            addr,
            heads,
            closed,
            written,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn read_head(s: &mut TcpStream) -> Option<String> {
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).ok()? == 0 || buf.len() > 64 << 10 {
            return None;
        }
        buf.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn body_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------
// 2. A body that never ends must not hold the download.

const LEN: usize = 100_000;

/// A 206 for the whole file whose Content-Length claims 100 bytes more than
/// it sends, held open.
fn content_length_too_large(_: usize, _: &str) -> (Vec<u8>, Then) {
    let body = body_bytes(LEN);
    let mut out = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-{}/{LEN}\r\nContent-Length: {}\r\nETag: \"e1\"\r\n\r\n",
        LEN - 1,
        LEN + 100
    )
    .into_bytes();
    out.extend(body);
    (out, Then::Hold)
}

/// A chunked 206 for the whole file without its closing `0\r\n\r\n`, held open.
fn chunked_without_end(_: usize, _: &str) -> (Vec<u8>, Then) {
    let body = body_bytes(LEN);
    let mut out = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-{}/{LEN}\r\nTransfer-Encoding: chunked\r\nETag: \"e1\"\r\n\r\n",
        LEN - 1
    )
    .into_bytes();
    for c in body.chunks(16 << 10) {
        out.extend(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend(c);
        out.extend(b"\r\n");
    }
    (out, Then::Hold)
}

/// Runs hfget against `script`; with `ctrl_c`, sends SIGINT once the server
/// has written its answer. The download must end (and the client must let go
/// of the held connection) long before the server would give up (60 s).
fn no_hang(script: Script, ctrl_c: bool) {
    let server = Scripted::start(script);
    let dir = tempdir();
    let mut child = hfget(dir.path())
        .args([&server.url("/f.bin"), "-o", "f.bin", "-t", "3", "-x", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    server
        .written
        .recv_timeout(Duration::from_secs(20))
        .expect("hfget asked for the file");
    if ctrl_c {
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: kill only sends a signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    }
    let status = wait_until(&mut child, Instant::now() + Duration::from_secs(30));
    let Some(status) = status else {
        let _ = child.kill();
        panic!("hfget still runs 30 s after the last byte (ctrl_c: {ctrl_c})");
    };
    server
        .closed
        .recv_timeout(Duration::from_secs(5))
        .expect("hfget let go of the connection");
    let code = status.code();
    if ctrl_c {
        assert!(matches!(code, Some(0) | Some(7)), "{code:?}");
    } else {
        assert_eq!(code, Some(0));
    }
    if code == Some(0) {
        assert_eq!(
            std::fs::read(dir.path().join("f.bin")).unwrap(),
            body_bytes(LEN),
            "the data was complete and is kept"
        );
    }
}

#[test]
fn a_content_length_too_large_does_not_hang_the_download() {
    no_hang(Arc::new(content_length_too_large), false);
}

#[test]
fn a_content_length_too_large_does_not_hang_ctrl_c() {
    no_hang(Arc::new(content_length_too_large), true);
}

#[test]
fn a_chunked_body_without_its_end_does_not_hang_the_download() {
    no_hang(Arc::new(chunked_without_end), false);
}

#[test]
fn a_chunked_body_without_its_end_does_not_hang_ctrl_c() {
    no_hang(Arc::new(chunked_without_end), true);
}

// ---------------------------------------------------------------------------
// 6 (last point). A single stream retried never writes a 206 at the wrong offset.

#[test]
fn a_single_stream_refuses_a_206_that_does_not_start_the_file() {
    let body = body_bytes(LEN);
    let b = body.clone();
    let script: Script = Arc::new(move |n, _head| {
        let out = match n {
            // The probe: the whole file, no ranges, cut after half.
            0 => {
                let mut o =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {LEN}\r\n\r\n").into_bytes();
                o.extend(&b[..LEN / 2]);
                o
            }
            // The retry: a 206 from byte 100 of a file 100 bytes longer,
            // with as many bytes as the file has. Written at offset 0 it
            // would make a complete file of the right size, but wrong.
            1 => {
                let mut o = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 100-{}/{}\r\nContent-Length: {LEN}\r\n\r\n",
                    LEN + 99,
                    LEN + 100
                )
                .into_bytes();
                o.extend(std::iter::repeat_n(0xEEu8, LEN));
                o
            }
            _ => {
                let mut o =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {LEN}\r\n\r\n").into_bytes();
                o.extend(&b);
                o
            }
        };
        (out, Then::Close)
    });
    let server = Scripted::start(script);
    let dir = tempdir();
    let (code, _, err) = run(hfget(dir.path()).args([&server.url("/f.bin"), "-o", "f.bin"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        sha256_file(&dir.path().join("f.bin")),
        sha256(&body),
        "{:?}",
        server.heads()
    );
    assert!(server.heads().len() >= 3, "the wrong 206 was retried");
}

// ---------------------------------------------------------------------------
// 3. User info in a URL: Basic auth to its origin, never in a request target.

#[test]
fn user_info_is_basic_auth_to_its_origin_and_never_reaches_a_proxy() {
    let server = TestServer::start();
    let file = FileSpec::generated(17, 300_000);
    let want = file.sha256_hex();
    server.add_file("/f.bin", file);
    let other = TestServer::start();
    other.add_file("/g.bin", FileSpec::generated(18, 200_000));
    server.add_redirect("/away.bin", Redirect::found(other.url("/g.bin")));
    let port = server.addr().port();
    let basic = format!("Basic {}", base64_encode(b"alice:s3cret"));

    // Directly: Basic auth on every request to the origin.
    let dir = tempdir();
    let url = format!("http://alice:s3cret@127.0.0.1:{port}/f.bin");
    let (code, _, err) = run(hfget(dir.path()).args([&url, "-o", "a.bin"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(sha256_file(&dir.path().join("a.bin")), want);
    let reqs = server.requests();
    assert!(!reqs.is_empty());
    for r in &reqs {
        assert_eq!(
            header(&r.headers, "authorization"),
            Some(basic.as_str()),
            "{r:?}"
        );
        assert!(
            !r.uri.contains("s3cret") && !r.uri.contains("alice"),
            "{r:?}"
        );
    }
    assert!(!err.contains("s3cret"), "{err}");

    // Through an HTTP proxy: the request target has no user info.
    let proxy = HttpProxy::start(HttpProxyOptions {
        upstream: Upstream {
            hosts: vec![("origin.test".into(), server.addr())],
            outgoing: None,
        },
        ..HttpProxyOptions::default()
    })
    .unwrap();
    server.reset_stats();
    let url = format!("http://alice:s3cret@origin.test:{port}/f.bin");
    let (code, _, err) = run(hfget(dir.path())
        .args([&url, "-o", "b.bin"])
        .env("http_proxy", proxy.url()));
    assert_eq!(code, 0, "{err}");
    let seen = proxy.requests();
    assert!(!seen.is_empty());
    for r in &seen {
        assert!(
            !r.target.contains("s3cret") && !r.target.contains("alice"),
            "the proxy saw the password: {r:?}"
        );
    }
    for r in server.requests() {
        assert_eq!(
            header(&r.headers, "authorization"),
            Some(basic.as_str()),
            "{r:?}"
        );
    }

    // A redirect to another origin gets no credentials.
    other.reset_stats();
    let url = format!("http://alice:s3cret@127.0.0.1:{port}/away.bin");
    let (code, _, err) = run(hfget(dir.path()).args([&url, "-o", "c.bin"]));
    assert_eq!(code, 0, "{err}");
    let seen = other.requests();
    assert!(!seen.is_empty());
    for r in &seen {
        assert_eq!(header(&r.headers, "authorization"), None, "{r:?}");
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

// ---------------------------------------------------------------------------
// 4. Nothing is written through a symbolic link.

/// `outside/victim` with known content, and a download folder `root`.
fn planted(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let outside = dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"keep me").unwrap();
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    (outside, root)
}

#[test]
fn hfget_never_writes_through_a_planted_link() {
    let server = TestServer::start();
    server.add_file("/f.bin", FileSpec::generated(3, 300_000));
    server.add_file("/empty.bin", FileSpec::bytes(Vec::new()));
    server.add_file("/plain.bin", FileSpec::generated(4, 50_000).ignore_range());
    // The data file, the control file, the empty-file path and the single
    // stream each meet a link planted under the name they write.
    for (path, link) in [
        ("/f.bin", "f.bin.part"),
        ("/f.bin", "f.bin.part.ctl"),
        ("/empty.bin", "empty.bin.part"),
        ("/plain.bin", "plain.bin.part"),
    ] {
        let dir = tempdir();
        let (outside, root) = planted(dir.path());
        std::os::unix::fs::symlink(outside.join("victim"), root.join(link)).unwrap();
        let name = path.trim_start_matches('/');
        let (code, _, err) = run(hfget(&root).args([&server.url(path), "-o", name]));
        assert_ne!(code, 0, "{link}: {err}");
        assert!(
            err.contains("symbolic link") && err.contains(link),
            "{link}: {err}"
        );
        assert_eq!(
            std::fs::read(outside.join("victim")).unwrap(),
            b"keep me",
            "{link}: the link's target was written"
        );
        assert!(!root.join(name).exists(), "{link}");
    }
}

#[test]
fn hfd_never_writes_through_a_linked_folder_in_the_local_dir() {
    use hfd_testserver::hub::{HubFile, MockHub, RepoSpec};
    let hub = MockHub::start();
    hub.add_repo(
        RepoSpec::model("org/evil")
            .file(HubFile::git("sub/evil.txt", "pwned\n"))
            .file(HubFile::lfs("w.bin", FileSpec::generated(5, 100_000))),
    );
    // A folder of the repo that is a link out of the local dir, and a link
    // in place of hfd's own state folder.
    for (link, to) in [("sub", "../outside"), (".hfd", "../outside")] {
        let dir = tempdir();
        let (outside, root) = planted(dir.path());
        let local = root.join("evil");
        std::fs::create_dir_all(&local).unwrap();
        std::os::unix::fs::symlink(to, local.join(link)).unwrap();
        let (code, out, err) = run(hfd_bin(&root)
            .env("HF_ENDPOINT", hub.endpoint())
            .args(["org/evil"]));
        assert_eq!(code, 1, "{link}: {out}{err}");
        let said = format!("{out}{err}");
        assert!(said.contains("symbolic link"), "{link}: {said}");
        let mut left: Vec<String> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec!["victim"],
            "{link}: something was written outside"
        );
        assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"keep me");
    }
}

// ---------------------------------------------------------------------------
// 1. The Hub token goes only to the endpoints the user named.

/// `hfd --bench` with its default endpoints (huggingface.co, hf-mirror.com,
/// and HF_ENDPOINT when set), each name mapped by a recording proxy to a
/// server of ours on loopback that speaks TLS with a certificate from our
/// own CA. Only the endpoints the user named (and the Hub) see the token.
#[test]
fn bench_sends_the_token_only_to_endpoints_the_user_named() {
    let pki = crate::tls::pki_for(&["huggingface.co", "hf-mirror.com", "mirror.example"]);
    let server = |gated: bool| {
        let s = TestServer::start_with(ServerOptions {
            tls: Some(pki.server.clone()),
            ..ServerOptions::default()
        });
        // Every endpoint knows a gated repo whose files nobody may list.
        s.add_handler_fn("/", move |req| {
            if req.path.starts_with("/api/models/org/gated") && !req.path.contains("/tree") {
                hfd_testserver::Reply::json(
                    200,
                    &serde_json::json!({"sha": "0123456789abcdef0123456789abcdef01234567",
                        "gated": if gated { serde_json::json!("manual") } else { serde_json::json!(false) },
                        "siblings": []}),
                )
            } else {
                hfd_testserver::Reply::text(404, "not here")
            }
        });
        s
    };
    let (hub, mirror, named) = (server(true), server(true), server(true));
    let proxy = HttpProxy::start(HttpProxyOptions {
        upstream: Upstream {
            hosts: vec![
                ("huggingface.co".into(), hub.addr()),
                ("hf-mirror.com".into(), mirror.addr()),
                ("mirror.example".into(), named.addr()),
            ],
            outgoing: None,
        },
        ..HttpProxyOptions::default()
    })
    .unwrap();
    let dir = tempdir();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let (_, out, err) = run(hfd_bin(dir.path())
        .args([
            "org/gated",
            "--bench",
            "--seconds",
            "0.2",
            "--hf_token",
            "hf_secret_token",
        ])
        .args(["--ca-certificate", &path_str(&ca)])
        .env("HF_ENDPOINT", "https://mirror.example")
        .env("https_proxy", proxy.url()));
    let said = format!("{out}{err}");
    assert!(!said.contains("hf_secret_token"), "{said}");
    let carried = |s: &TestServer| {
        let reqs = s.requests();
        assert!(!reqs.is_empty(), "every endpoint was asked: {said}");
        reqs.iter()
            .any(|r| header(&r.headers, "authorization") == Some("Bearer hf_secret_token"))
    };
    assert!(carried(&hub), "the Hub gets the token");
    assert!(carried(&named), "HF_ENDPOINT was named by the user");
    assert!(!carried(&mirror), "hf-mirror.com was not named: {said}");
    // The row says why the gated repo could not be measured there.
    let row = said
        .lines()
        .find(|l| l.contains("hf-mirror.com") && l.contains("token"))
        .unwrap_or_else(|| panic!("no word on the mirror's token: {said}"));
    assert!(row.contains("--endpoint"), "{row}");
}

// ---------------------------------------------------------------------------
// 7. An https → http redirect without a known checksum is named once.

#[test]
fn an_https_to_http_redirect_is_warned_about_unless_a_checksum_protects_it() {
    let pki = crate::tls::pki();
    let secure = TestServer::start_with(ServerOptions {
        tls: Some(pki.server.clone()),
        ..ServerOptions::default()
    });
    let plain = TestServer::start();
    let file = FileSpec::generated(9, 2 << 20);
    let sha = file.sha256_hex();
    plain.add_file("/f.bin", file);
    secure.add_redirect("/f.bin", Redirect::found(plain.url("/f.bin")));
    let dir = tempdir();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let ca = path_str(&ca);
    let url = secure.url("/f.bin");

    let (code, _, err) =
        run(hfget(dir.path()).args([&url, "-o", "a.bin", "--ca-certificate", &ca]));
    assert_eq!(code, 0, "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("unencrypted")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("127.0.0.1"), "{err}");

    let sum = format!("sha-256={sha}");
    let (code, _, err) = run(hfget(dir.path()).args([
        &url,
        "-o",
        "b.bin",
        "--ca-certificate",
        &ca,
        "--checksum",
        &sum,
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("unencrypted"), "{err}");
}
