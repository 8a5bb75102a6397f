//! `hfd serve --upstream`: the mock Hub as upstream. Files the cache lacks
//! are fetched once (judged by what the mock Hub and its CDN recorded),
//! served while they arrive, and kept in the cache; gated repos are
//! served only to tokens upstream accepts; the official client downloads
//! through it byte for byte.

use std::io::{BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hfd::hub::Endpoint;
use hfd::net::NetOptions;
use hfd::serve::{Options, Server, UpstreamOptions};
use hfd_testserver::hub::{HubFile, MockHub, RepoSpec};
use sha2::Digest as _;
use tokio_util::sync::CancellationToken;

use crate::serve::{Answer, files_of, get, read_answer, snapshots};
use crate::support::{self, FileSpec, python, tempdir};

/// An in-process `hfd serve` with the mock Hub as upstream (or offline),
/// stopped on drop.
struct Serving {
    addr: SocketAddr,
    stop: CancellationToken,
    fetches: Arc<dyn Fn() -> u64 + Send + Sync>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Serving {
    /// `upstream`: the mock Hub's endpoint and connections per file.
    fn start(cache: &Path, upstream: Option<(&MockHub, usize)>) -> Serving {
        Serving::start_at(cache, upstream.map(|(h, n)| (h.endpoint(), n)))
    }

    fn start_at(cache: &Path, upstream: Option<(String, usize)>) -> Serving {
        Serving::start_ttl(cache, upstream, Duration::from_secs(30))
    }

    fn start_ttl(cache: &Path, upstream: Option<(String, usize)>, ttl: Duration) -> Serving {
        std::fs::create_dir_all(cache).unwrap();
        let mut opts = Options::new("127.0.0.1:0".parse().unwrap(), cache.to_path_buf());
        opts.upstream = upstream.map(|(endpoint, connections)| {
            let mut u =
                UpstreamOptions::new(Endpoint::parse(&endpoint).unwrap(), NetOptions::default());
            u.retry.base = Duration::ZERO;
            u.connections = connections;
            u.wait = Duration::from_secs(30);
            u.ttl = ttl;
            u
        });
        let stop = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            support::runtime().block_on(async move {
                let server = Server::bind(opts).await.expect("binds");
                tx.send((server.local_addr(), server.upstream_fetches()))
                    .unwrap();
                server.run(s).await.expect("serves");
            })
        });
        let (addr, fetches) = rx.recv().expect("the server starts");
        Serving {
            addr,
            stop,
            fetches,
            thread: Some(thread),
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sha256(b: &[u8]) -> String {
    sha2::Sha256::digest(b)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic bytes that differ everywhere (a shifted range shows).
fn data(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Body bytes the mock Hub's CDN sent (LFS files live there; these
/// tests' repos have one).
fn cdn_bytes(hub: &MockHub) -> u64 {
    hub.cdn().requests().iter().map(|r| r.body_bytes).sum()
}

/// Requests the mock Hub got for git files' bytes (`/api/resolve-cache/`).
fn git_file_requests(hub: &MockHub) -> usize {
    hub.hub()
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/resolve-cache/"))
        .count()
}

/// Waits (at most 30 s) for `p` to exist.
fn wait_for(p: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::symlink_metadata(p).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

const CONFIG: &str = "{\"model_type\": \"test\"}\n";

fn small_repo(id: &str, weights: &[u8]) -> RepoSpec {
    RepoSpec::model(id)
        .file(HubFile::git("config.json", CONFIG))
        .file(HubFile::git("sub/notes.txt", "nested\n"))
        .file(HubFile::git("empty/__init__.py", ""))
        .file(HubFile::lfs("w.bin", FileSpec::bytes(weights.to_vec())))
}

#[test]
fn pull_through_is_byte_exact_and_a_second_client_costs_upstream_nothing() {
    let hub = MockHub::start();
    let weights = data(3 << 20, 1);
    let commit = hub.add_repo(small_repo("org/m", &weights));
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let srv = Serving::start(&cache, Some((&hub, 4)));

    let files: [(&str, &[u8]); 4] = [
        ("w.bin", &weights),
        ("empty/__init__.py", b""),
        ("config.json", CONFIG.as_bytes()),
        ("sub/notes.txt", b"nested\n"),
    ];
    for (path, want) in files {
        let a = get(srv.addr, &format!("/org/m/resolve/main/{path}"), "");
        assert_eq!(a.status, 200, "{path}: {}", a.head);
        assert_eq!(sha256(&a.body), sha256(want), "{path}");
        assert_eq!(a.header("x-repo-commit").as_deref(), Some(commit.as_str()));
    }
    assert_eq!((srv.fetches)(), 4);
    assert_eq!(cdn_bytes(&hub), weights.len() as u64);

    // The cache holds them as huggingface_hub lays them out (once the
    // fetches have linked them: a client has every byte a moment before).
    let repo = cache.join("models--org--m");
    wait_for(&repo.join("snapshots").join(&commit).join("sub/notes.txt"));
    wait_for(&repo.join("snapshots").join(&commit).join("w.bin"));
    wait_for(&repo.join("refs/main"));
    wait_for(&repo.join("trees").join(format!("{commit}.json")));
    let blob = repo.join("blobs").join(sha256(&weights));
    assert_eq!(std::fs::read(&blob).unwrap(), weights);
    let link = repo.join("snapshots").join(&commit).join("w.bin");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        PathBuf::from("../../blobs").join(sha256(&weights))
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        commit
    );
    assert!(repo.join("trees").join(format!("{commit}.json")).is_file());

    // A second client, whole files and a range: nothing from upstream.
    let (cdn_before, git_before) = (hub.cdn().requests().len(), git_file_requests(&hub));
    for (path, want) in files {
        let a = get(srv.addr, &format!("/org/m/resolve/main/{path}"), "");
        assert!(
            a.body == want,
            "{path}: {} {}",
            a.head,
            String::from_utf8_lossy(&a.body[..a.body.len().min(500)])
        );
    }
    let a = get(
        srv.addr,
        &format!("/org/m/resolve/{commit}/w.bin"),
        "Range: bytes=1000-1999\r\n",
    );
    assert_eq!((a.status, a.body.as_slice()), (206, &weights[1000..2000]));
    assert_eq!(hub.cdn().requests().len(), cdn_before, "no CDN request");
    assert_eq!(git_file_requests(&hub), git_before, "no git file request");
    assert_eq!((srv.fetches)(), 4);

    // Listings come from upstream, paged and shaped as the routes do.
    let a = get(srv.addr, "/api/models/org/m/tree/main?recursive=true", "");
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    let paths: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "config.json",
            "empty",
            "empty/__init__.py",
            "sub",
            "sub/notes.txt",
            "w.bin"
        ]
    );
    let info = get(srv.addr, "/api/models/org/m", "");
    let v: serde_json::Value = serde_json::from_slice(&info.body).unwrap();
    assert_eq!(v["sha"], commit.as_str());
}

/// Sends a GET on a new connection and reads the head and the first byte;
/// the rest is read by [`finish`].
fn start_get(addr: SocketAddr, target: &str, headers: &str) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    BufReader::new(s)
}

fn finish(mut r: BufReader<TcpStream>) -> Answer {
    read_answer(&mut r, false).unwrap()
}

#[test]
fn two_clients_at_once_cause_one_upstream_fetch() {
    let hub = MockHub::start();
    let weights = data(4 << 20, 2);
    // 1 MiB/s per connection, two connections: about 2 s upstream, so the
    // second client surely asks while the first fetch runs (checked below
    // on the CDN's record, not on the clock).
    let spec = RepoSpec::model("org/m").file(HubFile::lfs(
        "w.bin",
        FileSpec::bytes(weights.clone()).throttle(1 << 20),
    ));
    hub.add_repo(spec);
    let dir = tempdir();
    let srv = Serving::start(&dir.path().join("cache"), Some((&hub, 2)));

    let mut first = start_get(srv.addr, "/org/m/resolve/main/w.bin", "");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut first, &mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let second = start_get(srv.addr, "/org/m/resolve/main/w.bin", "");
    let mut line2 = String::new();
    let mut second = second;
    std::io::BufRead::read_line(&mut second, &mut line2).unwrap();
    assert!(line2.starts_with("HTTP/1.1 200"), "{line2}");
    let sent = cdn_bytes(&hub);
    assert!(
        sent < weights.len() as u64,
        "both clients asked while upstream was still sending ({sent} bytes so far)"
    );
    let rest = |mut r: BufReader<TcpStream>, first_line: &str| {
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut body).unwrap();
        let text = String::from_utf8_lossy(&body[..body.len().min(4096)]).into_owned();
        let at = body
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("{first_line} {text}"));
        body.split_off(at + 4)
    };
    let (b1, b2) = (rest(first, &line), rest(second, &line2));
    assert_eq!(sha256(&b1), sha256(&weights));
    assert_eq!(sha256(&b2), sha256(&weights));
    assert_eq!((srv.fetches)(), 1, "one upstream download");
    assert_eq!(
        cdn_bytes(&hub),
        weights.len() as u64,
        "each byte came from upstream once"
    );
    let resolves = hub
        .hub()
        .requests()
        .iter()
        .filter(|r| r.path.contains("/resolve/") && r.path.ends_with("/w.bin"))
        .count();
    assert_eq!(resolves, 1, "one resolve of the file upstream");
}

#[test]
fn a_range_inside_the_received_part_is_answered_while_the_file_arrives() {
    let hub = MockHub::start();
    let weights = data(3 << 20, 3);
    // One connection at 512 KiB/s: six seconds for the whole file.
    let spec = RepoSpec::model("org/m").file(HubFile::lfs(
        "w.bin",
        FileSpec::bytes(weights.clone()).throttle(512 << 10),
    ));
    hub.add_repo(spec);
    let dir = tempdir();
    let srv = Serving::start(&dir.path().join("cache"), Some((&hub, 1)));

    // The start of the file: answered from what has arrived.
    let a = get(
        srv.addr,
        "/org/m/resolve/main/w.bin",
        "Range: bytes=0-65535\r\n",
    );
    assert_eq!(a.status, 206, "{}", a.head);
    assert_eq!(a.body, &weights[..65536]);
    let sent = cdn_bytes(&hub);
    assert!(
        sent < weights.len() as u64 / 2,
        "answered while upstream had sent {sent} bytes"
    );
    // Near the end: not there yet, so the answer waits for those bytes.
    let far = (5 << 19) as usize;
    let r = start_get(
        srv.addr,
        "/org/m/resolve/main/w.bin",
        &format!("Range: bytes={far}-{}\r\n", far + 999),
    );
    let asked_at = cdn_bytes(&hub);
    assert!(asked_at < far as u64, "asked before the bytes arrived");
    let b = finish(r);
    assert_eq!(b.status, 206);
    assert_eq!(b.body, &weights[far..far + 1000]);
    assert!(cdn_bytes(&hub) >= far as u64 + 1000);
    // And the whole file, once complete, is the blob.
    let blob = dir
        .path()
        .join("cache/models--org--m/blobs")
        .join(sha256(&weights));
    wait_for(&blob);
    assert_eq!(std::fs::read(&blob).unwrap(), weights);
    assert_eq!((srv.fetches)(), 1);
}

#[test]
fn a_client_that_goes_away_does_not_stop_the_fetch() {
    let hub = MockHub::start();
    let weights = data(2 << 20, 5);
    let spec = RepoSpec::model("org/m").file(HubFile::lfs(
        "w.bin",
        FileSpec::bytes(weights.clone()).throttle(1 << 20),
    ));
    hub.add_repo(spec);
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let srv = Serving::start(&cache, Some((&hub, 1)));
    let mut r = start_get(srv.addr, "/org/m/resolve/main/w.bin", "");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut r, &mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    drop(r);
    assert!(
        cdn_bytes(&hub) < weights.len() as u64,
        "gone before the end"
    );
    let blob = cache.join("models--org--m/blobs").join(sha256(&weights));
    wait_for(&blob);
    assert_eq!(std::fs::read(&blob).unwrap(), weights);
    let a = get(srv.addr, "/org/m/resolve/main/w.bin", "");
    assert_eq!(sha256(&a.body), sha256(&weights));
    assert_eq!((srv.fetches)(), 1);
    assert_eq!(cdn_bytes(&hub), weights.len() as u64);
}

#[test]
fn a_branch_moved_upstream_is_followed_and_datasets_pull_through() {
    let hub = MockHub::start();
    let first = hub.add_repo(small_repo("org/m", b"v1"));
    hub.add_repo(
        RepoSpec::dataset("org/d").file(HubFile::lfs("data/train.csv", FileSpec::bytes("a,b\n"))),
    );
    let dir = tempdir();
    // No time-to-live: every request asks upstream where `main` is.
    let srv = Serving::start_ttl(
        &dir.path().join("cache"),
        Some((hub.endpoint(), 2)),
        Duration::ZERO,
    );
    let a = get(srv.addr, "/org/m/resolve/main/w.bin", "");
    assert_eq!(
        (a.body.as_slice(), a.header("x-repo-commit")),
        (&b"v1"[..], Some(first.clone()))
    );
    let second = hub.push(
        "org/m",
        "main",
        vec![HubFile::lfs("w.bin", FileSpec::bytes("v2"))],
        &[],
    );
    assert_ne!(first, second);
    let a = get(srv.addr, "/org/m/resolve/main/w.bin", "");
    assert_eq!(
        (a.body.as_slice(), a.header("x-repo-commit")),
        (&b"v2"[..], Some(second.clone()))
    );
    // The old commit is still there by its id, from the cache.
    let a = get(srv.addr, &format!("/org/m/resolve/{first}/w.bin"), "");
    assert_eq!(a.body, b"v1");
    let a = get(srv.addr, "/datasets/org/d/resolve/main/data/train.csv", "");
    assert_eq!((a.status, a.body.as_slice()), (200, &b"a,b\n"[..]));
    assert_eq!((srv.fetches)(), 3);
}

#[test]
fn missing_repos_revisions_and_files_as_the_hub_answers_online_and_offline() {
    let hub = MockHub::start();
    hub.add_repo(small_repo("org/m", b"weights"));
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let srv = Serving::start(&cache, Some((&hub, 2)));
    let code = |a: &Answer| a.header("x-error-code").unwrap_or_default();
    let a = get(srv.addr, "/org/m/resolve/main/none.bin", "");
    assert_eq!((a.status, code(&a).as_str()), (404, "EntryNotFound"));
    let a = get(srv.addr, "/org/m/resolve/nope/config.json", "");
    assert_eq!((a.status, code(&a).as_str()), (404, "RevisionNotFound"));
    // The mock Hub, as the Hub, answers 401 for a repo it does not show.
    let a = get(srv.addr, "/api/models/org/none", "");
    assert_eq!((a.status, code(&a).as_str()), (401, "RepoNotFound"));
    assert_eq!((srv.fetches)(), 0);
    drop(srv);

    // Offline: the repo is upstream but not in the cache; nothing asked.
    let before = hub.hub().requests().len();
    let off = Serving::start(&cache, None);
    let a = get(off.addr, "/org/m/resolve/main/config.json", "");
    assert_eq!((a.status, code(&a).as_str()), (404, "RepoNotFound"));
    let a = get(off.addr, "/api/models/org/m", "");
    assert_eq!((a.status, code(&a).as_str()), (404, "RepoNotFound"));
    assert_eq!(hub.hub().requests().len(), before, "offline asks nobody");
}

#[test]
fn a_gated_repo_is_served_only_to_tokens_upstream_accepts() {
    let hub = MockHub::start();
    hub.set_token("hf_good_token_1234");
    let weights = data(1 << 20, 4);
    hub.add_repo(small_repo("org/gated", &weights).gated("manual"));
    hub.add_repo(small_repo("org/public", b"public weights"));
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let srv = Serving::start(&cache, Some((&hub, 2)));
    let good = "Authorization: Bearer hf_good_token_1234\r\n";
    let bad = "Authorization: Bearer hf_wrong\r\n";
    let target = "/org/gated/resolve/main/w.bin";

    // Not in the cache: no token, a wrong one: refused in the Hub's words.
    let a = get(srv.addr, target, "");
    assert_eq!(a.status, 401, "{}", a.head);
    assert_eq!(a.header("x-error-code").as_deref(), Some("GatedRepo"));
    assert_eq!(get(srv.addr, target, bad).status, 401);
    assert_eq!((srv.fetches)(), 0);
    // A good token: fetched (with that token) and served.
    let a = get(srv.addr, target, good);
    assert_eq!(a.status, 200, "{}", a.head);
    assert_eq!(sha256(&a.body), sha256(&weights));
    let c = get(srv.addr, "/org/gated/resolve/main/config.json", good);
    assert_eq!(c.body, CONFIG.as_bytes());
    assert_eq!((srv.fetches)(), 2);

    // In the cache now: still refused without the token, or with a bad one.
    for h in ["", bad] {
        let a = get(srv.addr, target, h);
        assert_eq!(a.status, 401, "{h:?}");
        assert_ne!(sha256(&a.body), sha256(&weights));
        let a = get(srv.addr, "/org/gated/resolve/main/config.json", h);
        assert_eq!(a.status, 401, "{h:?}");
    }
    let cdn = hub.cdn().requests().len();
    let a = get(srv.addr, target, good);
    assert_eq!(
        (a.status, sha256(&a.body)),
        (200, sha256(&weights)),
        "{}",
        String::from_utf8_lossy(&a.body[..a.body.len().min(500)])
    );
    assert_eq!(hub.cdn().requests().len(), cdn, "served from the cache");

    // The token went to the mock Hub only, and is nowhere on disk.
    for r in hub.cdn().requests() {
        assert!(r.header("authorization").is_none(), "{}", r.uri);
    }
    let seen: Vec<_> = hub
        .hub()
        .requests()
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_string))
        .collect();
    assert!(seen.iter().any(|h| h.contains("hf_good_token_1234")));
    let p = get(srv.addr, "/org/public/resolve/main/w.bin", "");
    assert_eq!(p.body, b"public weights");
    wait_for(&cache.join("models--org--public/refs/main"));

    // Upstream gone, the server restarted: the public repo's cached file is
    // still served; the gated one's is refused, token or not (nobody can
    // check it).
    let endpoint = hub.endpoint();
    drop(srv);
    drop(hub);
    let srv = Serving::start_at(&cache, Some((endpoint, 2)));
    let p = get(srv.addr, "/org/public/resolve/main/w.bin", "");
    assert_eq!((p.status, p.body.as_slice()), (200, &b"public weights"[..]));
    for h in ["", good] {
        let a = get(srv.addr, target, h);
        assert_eq!(a.status, 502, "{h:?}");
        assert_ne!(sha256(&a.body), sha256(&weights));
    }
    for f in support::all_files(&cache) {
        let bytes = std::fs::read(cache.join(&f)).unwrap_or_default();
        assert!(
            !bytes.windows(18).any(|w| w == b"hf_good_token_1234"),
            "{f} holds the token"
        );
    }
}

/// `hfd serve --upstream URL` started as the binary; its URL.
fn serve_binary(cache: &Path, upstream: &str) -> (std::process::Child, String) {
    std::fs::create_dir_all(cache).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hfd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--upstream", upstream])
        .arg("--cache-dir")
        .arg(cache)
        .env("NO_COLOR", "1")
        .env_remove("HF_ENDPOINT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut first, mut second) = (String::new(), String::new());
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    std::io::BufRead::read_line(&mut out, &mut second).unwrap();
    assert!(second.contains(upstream), "{second}");
    let url = first.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{first}");
    (child, url)
}

#[test]
fn huggingface_hub_snapshot_download_through_hfd_serve_upstream_is_byte_exact() {
    let Some(py) = python() else { return };
    let hub = MockHub::start();
    hub.add_repo(RepoSpec::generated(
        "org/model",
        2,
        150_000..400_000,
        11,
        None,
    ));
    let dir = tempdir();
    let (child, url) = serve_binary(&dir.path().join("served"), &hub.endpoint());
    let repos = r#"[["org/model","model","main"]]"#;
    let closed = [("HF_ENDPOINT", "http://127.0.0.1:9")];
    let fill = |cache: &Path, endpoint: &str| snapshots(&py, cache, endpoint, repos, &closed);
    let direct = fill(&dir.path().join("direct"), &hub.endpoint());
    let cdn = hub.cdn().requests().len();
    let through = fill(&dir.path().join("through"), &url);
    assert_eq!(direct.len(), 1);
    assert_eq!(direct[0].file_name(), through[0].file_name(), "same commit");
    let files = files_of(&direct[0]);
    assert!(files.len() >= 4, "{files:?}");
    assert_eq!(files, files_of(&through[0]));
    let fetched = hub.cdn().requests().len() - cdn;
    assert!(fetched > 0, "the LFS files came from upstream");
    // The server's cache has them now: a second client costs upstream nothing.
    let cdn = hub.cdn().requests().len();
    let again = fill(&dir.path().join("again"), &url);
    assert_eq!(files_of(&again[0]), files);
    assert_eq!(hub.cdn().requests().len(), cdn);
    // SAFETY: kill(2) on the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait_with_output().unwrap().status;
    assert_eq!(status.code(), Some(0));
}
