//! `hfd serve` against real clients: huggingface_hub fills a cache from the
//! mock Hub, `hfd serve` serves it, and huggingface_hub and hfd download
//! from it byte for byte; raw requests check Range, If-Range, HEAD, the
//! Hub's error answers, hostile paths and a bounded load.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hfd::serve::{Options, Server};
use hfd_testserver::hub::{HubFile, MockHub, RepoSpec};
use tokio_util::sync::CancellationToken;

use crate::support::{self, FileSpec, hfd_bin, python, run, run_python, sha256_file, tempdir};

/// An in-process `hfd serve`, stopped (and waited for) on drop.
struct Serving {
    addr: SocketAddr,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Serving {
    fn start(cache: &Path, page_size: usize) -> Serving {
        let mut opts = Options::new("127.0.0.1:0".parse().unwrap(), cache.to_path_buf());
        opts.page_size = page_size;
        let stop = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            support::runtime().block_on(async move {
                let server = Server::bind(opts).await.expect("binds");
                tx.send(server.local_addr()).unwrap();
                server.run(s).await.expect("serves");
            })
        });
        let addr = rx.recv().expect("the server starts");
        Serving {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
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

/// One answer read off a connection.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Reads one answer (`head_only`: a HEAD's, without body) from `r`.
pub(crate) fn read_answer(
    r: &mut BufReader<TcpStream>,
    head_only: bool,
) -> std::io::Result<Answer> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut a = Answer {
        status,
        head,
        body: Vec::new(),
    };
    let len: usize = a
        .header("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    if !head_only {
        a.body = vec![0; len];
        r.read_exact(&mut a.body)?;
    }
    Ok(a)
}

/// Sends `raw` (a whole request, as bytes) on a new connection and reads
/// one answer.
pub(crate) fn raw(addr: SocketAddr, raw: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(raw).unwrap();
    let head_only = raw.starts_with(b"HEAD ");
    read_answer(&mut BufReader::new(s), head_only).unwrap()
}

pub(crate) fn get(addr: SocketAddr, target: &str, headers: &str) -> Answer {
    raw(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

/// A cache laid out by hand as huggingface_hub lays it out: `refs/main`,
/// a snapshot of links into `blobs/`, one LFS blob (sha256 name) and one
/// git blob (sha1 name) in a sub-folder. Returns (cache dir, commit, LFS
/// content).
fn hand_made_cache(root: &Path, lfs_len: usize) -> (PathBuf, String, Vec<u8>) {
    let cache = root.join("cache");
    let repo = cache.join("models--org--m");
    let commit = "c0ffee".repeat(7)[..40].to_string();
    let snap = repo.join("snapshots").join(&commit);
    std::fs::create_dir_all(snap.join("sub")).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), &commit).unwrap();
    let data: Vec<u8> = (0..lfs_len).map(|i| (i * 7 % 251) as u8).collect();
    let sha = support_sha256(&data);
    std::fs::write(repo.join("blobs").join(&sha), &data).unwrap();
    symlink(format!("../../blobs/{sha}"), snap.join("w.bin")).unwrap();
    let text = b"hello\n";
    let oid = "ce013625030ba8dba906f756967f9e9ca394464a"; // git's id of "hello\n"
    std::fs::write(repo.join("blobs").join(oid), text).unwrap();
    symlink(format!("../../../blobs/{oid}"), snap.join("sub/hello.txt")).unwrap();
    (cache, commit, data)
}

fn support_sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn ranges_if_range_and_head_as_the_hub_answers() {
    let dir = tempdir();
    let (cache, commit, data) = hand_made_cache(dir.path(), 100_000);
    let srv = Serving::start(&cache, 1000);
    let url = "/org/m/resolve/main/w.bin";

    let whole = get(srv.addr, url, "");
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, data);
    let etag = whole.header("etag").unwrap();
    assert_eq!(etag, format!("\"{}\"", support_sha256(&data)));
    assert_eq!(whole.header("x-linked-etag"), Some(etag.clone()));
    assert_eq!(whole.header("x-linked-size").as_deref(), Some("100000"));
    assert_eq!(whole.header("x-repo-commit"), Some(commit.clone()));
    assert_eq!(whole.header("accept-ranges").as_deref(), Some("bytes"));

    let part = get(srv.addr, url, "Range: bytes=10-19\r\n");
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &data[10..20]);
    assert_eq!(
        part.header("content-range").as_deref(),
        Some("bytes 10-19/100000")
    );

    let tail = get(srv.addr, url, "Range: bytes=-5\r\n");
    assert_eq!((tail.status, &tail.body[..]), (206, &data[99_995..]));
    let open = get(srv.addr, url, "Range: bytes=99990-\r\n");
    assert_eq!((open.status, &open.body[..]), (206, &data[99_990..]));

    // If-Range: the strong tag keeps the range, another tag gets it all.
    let same = get(
        srv.addr,
        url,
        &format!("Range: bytes=0-0\r\nIf-Range: {etag}\r\n"),
    );
    assert_eq!((same.status, same.body.len()), (206, 1));
    let changed = get(srv.addr, url, "Range: bytes=0-0\r\nIf-Range: \"other\"\r\n");
    assert_eq!((changed.status, changed.body.len()), (200, 100_000));

    let beyond = get(srv.addr, url, "Range: bytes=100000-\r\n");
    assert_eq!(beyond.status, 416);
    assert_eq!(
        beyond.header("content-range").as_deref(),
        Some("bytes */100000")
    );
    // Ranges we do not understand are ignored, as RFC 9110 allows.
    for bad in ["bytes=5-1", "bytes=x-y", "bytes=0-1,5-6", "lines=1-2"] {
        let a = get(srv.addr, url, &format!("Range: {bad}\r\n"));
        assert_eq!((a.status, a.body.len()), (200, 100_000), "{bad}");
    }

    let head = raw(
        srv.addr,
        format!("HEAD {url} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length").as_deref(), Some("100000"));
    assert_eq!(head.header("etag"), Some(etag));

    // The git file in a sub-folder, and a commit named directly.
    let git = get(
        srv.addr,
        &format!("/org/m/resolve/{commit}/sub/hello.txt"),
        "",
    );
    assert_eq!((git.status, &git.body[..]), (200, &b"hello\n"[..]));
    assert_eq!(
        git.header("etag").as_deref(),
        Some("\"ce013625030ba8dba906f756967f9e9ca394464a\"")
    );

    // Keep-alive with pipelining: three requests in one write, three answers.
    let mut s = TcpStream::connect(srv.addr).unwrap();
    let one = format!("GET {url} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-2\r\n\r\n");
    s.write_all(format!("{one}{one}{one}").as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    for _ in 0..3 {
        let a = read_answer(&mut r, false).unwrap();
        assert_eq!((a.status, &a.body[..]), (206, &data[..3]));
    }
}

#[test]
fn paths_info_takes_a_form_after_100_continue() {
    let dir = tempdir();
    let (cache, _, _) = hand_made_cache(dir.path(), 10);
    let srv = Serving::start(&cache, 1000);
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = "paths=w.bin&paths=sub&paths=nope&expand=True";
    write!(
        s,
        "POST /api/models/org/m/paths-info/main HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    assert_eq!(read_answer(&mut r, true).unwrap().status, 100);
    s.write_all(body.as_bytes()).unwrap();
    let a = read_answer(&mut r, false).unwrap();
    assert_eq!(a.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    let paths: Vec<(&str, &str)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["path"].as_str().unwrap(), e["type"].as_str().unwrap()))
        .collect();
    assert_eq!(paths, [("w.bin", "file"), ("sub", "directory")]);
}

#[test]
fn unknown_repos_revisions_and_files_get_the_hubs_404s() {
    let dir = tempdir();
    let (cache, _, _) = hand_made_cache(dir.path(), 10);
    let srv = Serving::start(&cache, 1000);
    let code = |t: &str| {
        let a = get(srv.addr, t, "");
        (a.status, a.header("x-error-code"))
    };
    let s = |c: &str| Some(c.to_string());
    assert_eq!(code("/api/models/org/none"), (404, s("RepoNotFound")));
    assert_eq!(
        code("/org/none/resolve/main/w.bin"),
        (404, s("RepoNotFound"))
    );
    assert_eq!(
        code("/api/models/org/m/revision/nope"),
        (404, s("RevisionNotFound"))
    );
    assert_eq!(
        code("/org/m/resolve/nope/w.bin"),
        (404, s("RevisionNotFound"))
    );
    assert_eq!(
        code("/org/m/resolve/main/none.bin"),
        (404, s("EntryNotFound"))
    );
    assert_eq!(
        code("/api/models/org/m/tree/main/none"),
        (404, s("EntryNotFound"))
    );
    // No Xet: the token route does not exist, so clients take plain HTTP.
    assert_eq!(code("/api/models/org/m/xet-read-token/main").0, 404);
    assert_eq!(
        code("/api/datasets/org/m").0,
        404,
        "a model is not a dataset"
    );
}

/// Bodies of every answer to these raw requests, none of which may carry
/// the secret planted outside the cache.
#[test]
fn hostile_paths_and_planted_links_never_read_outside_the_cache() {
    let dir = tempdir();
    let (cache, commit, _) = hand_made_cache(dir.path(), 10);
    let secret = "TOP-SECRET-4711";
    std::fs::write(dir.path().join("secret.txt"), secret).unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), secret).unwrap();
    let repo = cache.join("models--org--m");
    let snap = repo.join("snapshots").join(&commit);
    // Links planted in the snapshot, in refs/ and as a whole repo folder.
    symlink("../../../../secret.txt", snap.join("up.txt")).unwrap();
    symlink(dir.path().join("secret.txt"), snap.join("abs.txt")).unwrap();
    symlink(
        "../../blobs/../../../secret.txt",
        snap.join("via-blobs.txt"),
    )
    .unwrap();
    symlink("../../../outside", snap.join("dir")).unwrap();
    symlink(&outside, cache.join("models--org--evil")).unwrap();
    std::fs::write(outside.join("main"), &commit).unwrap();
    // A second repo whose blobs/ folder is a link out.
    let r2 = cache.join("models--org--b");
    std::fs::create_dir_all(r2.join("snapshots").join(&commit)).unwrap();
    std::fs::create_dir_all(r2.join("refs")).unwrap();
    std::fs::write(r2.join("refs/main"), &commit).unwrap();
    symlink(&outside, r2.join("blobs")).unwrap();
    symlink(
        "../../blobs/secret.txt",
        r2.join("snapshots").join(&commit).join("s.txt"),
    )
    .unwrap();
    let srv = Serving::start(&cache, 1000);

    let targets = [
        "/org/m/resolve/main/up.txt",
        "/org/m/resolve/main/abs.txt",
        "/org/m/resolve/main/via-blobs.txt",
        "/org/m/resolve/main/dir/secret.txt",
        "/org/b/resolve/main/s.txt",
        "/org/evil/resolve/main/secret.txt",
        "/api/models/org/evil/tree/main",
        "/api/models/org/m/tree/main/dir",
        "/org/m/resolve/main/../../../../secret.txt",
        "/org/m/resolve/main/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        "/org/m/resolve/main/%2E%2E%2F%2E%2E%2F%2E%2E%2F%2E%2E%2Fsecret.txt",
        "/org/m/resolve/main/..%2f..%2f..%2f..%2fsecret.txt",
        "/org/m/resolve/refs%2F..%2F..%2F..%2F..%2Fsecret.txt/x",
        "/org/m/resolve/main//etc/passwd",
        "/org/m/resolve/main/%2Fetc%2Fpasswd",
        "/org/m/resolve/main/sub%5C..%5C..%5Csecret.txt",
        "//etc/passwd",
        "/etc/passwd",
        "/../secret.txt",
        "http://x/../secret.txt",
        "/api/models/..%2F..%2Fsecret.txt",
        "/api/models/org/m/tree/main/..%2F..%2F..",
    ];
    for t in targets {
        let a = raw(
            srv.addr,
            format!("GET {t} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let body = String::from_utf8_lossy(&a.body);
        assert!(!body.contains(secret), "{t} leaked: {body}");
        assert!(matches!(a.status, 400 | 404), "{t}: {}", a.status);
    }
    // The listing shows none of the planted links either.
    let tree = get(srv.addr, "/api/models/org/m/tree/main?recursive=true", "");
    let listed = String::from_utf8_lossy(&tree.body).into_owned();
    for name in ["up.txt", "abs.txt", "via-blobs.txt", "\"dir\""] {
        assert!(!listed.contains(name), "{name} listed: {listed}");
    }
    assert!(
        listed.contains("w.bin") && listed.contains("sub/hello.txt"),
        "{listed}"
    );

    // Heads too large, too many headers, bad syntax: refused, connection kept safe.
    let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert_eq!(raw(srv.addr, long.as_bytes()).status, 431);
    let many: String = (0..200).map(|i| format!("X-{i}: y\r\n")).collect();
    assert_eq!(
        raw(srv.addr, format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).status,
        431
    );
    assert_eq!(raw(srv.addr, b"GARBAGE\0\r\n\r\n").status, 400);
    let big_post =
        "POST /api/models/org/m/paths-info/main HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n";
    assert_eq!(raw(srv.addr, big_post.as_bytes()).status, 413);
}

/// A repo with git files (one in a folder) and LFS files, on the mock Hub.
fn model_spec(id: &str) -> RepoSpec {
    RepoSpec::generated(id, 2, 150_000..400_000, 11, None)
}

fn dataset_spec(id: &str) -> RepoSpec {
    RepoSpec::dataset(id)
        .file(HubFile::git("README.md", "# data\n"))
        .file(HubFile::git("data/labels.csv", "a,b\n1,2\n"))
        .file(HubFile::lfs(
            "data/train-00000-of-00001.parquet",
            FileSpec::generated(77, 300_000),
        ))
}

/// Fills `cache` from `endpoint` with huggingface_hub's snapshot_download:
/// each of `repos` is (id, "model"|"dataset", revision). Prints the
/// snapshot folders, one per line.
pub(crate) const SNAPSHOTS: &str = r#"
import json, sys
from huggingface_hub import snapshot_download
cache, endpoint, repos = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
for repo, kind, rev in repos:
    print(snapshot_download(repo, repo_type=kind, revision=rev, cache_dir=cache, endpoint=endpoint))
"#;

/// Runs [`SNAPSHOTS`] for `repos` (a JSON list of [id, kind, revision])
/// from `endpoint` into `cache`, expecting success; returns the snapshot
/// folders. `env` is added to the client's environment.
pub(crate) fn snapshots(
    py: &Path,
    cache: &Path,
    endpoint: &str,
    repos: &str,
    env: &[(&str, &str)],
) -> Vec<PathBuf> {
    let (code, out, err) = run_python(
        py,
        SNAPSHOTS,
        &[&support::path_str(cache), endpoint, repos],
        env,
    );
    assert_eq!(code, 0, "{err}");
    out.lines().map(PathBuf::from).collect()
}

/// The official client's view of errors and metadata from `endpoint`.
const PROBES: &str = r#"
import sys
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError
cache, endpoint = sys.argv[1], sys.argv[2]
api = HfApi(endpoint=endpoint)
def outcome(f):
    try:
        f()
        return "ok"
    except RepositoryNotFoundError:
        return "RepositoryNotFoundError"
    except RevisionNotFoundError:
        return "RevisionNotFoundError"
    except RemoteEntryNotFoundError:
        return "RemoteEntryNotFoundError"
print("missing-repo", outcome(lambda: hf_hub_download("org/none", "x", cache_dir=cache, endpoint=endpoint)))
print("missing-rev", outcome(lambda: hf_hub_download("org/model", "config.json", revision="nope", cache_dir=cache, endpoint=endpoint)))
print("missing-file", outcome(lambda: hf_hub_download("org/model", "none.bin", cache_dir=cache, endpoint=endpoint)))
info = api.repo_info("org/model", files_metadata=True)
for s in sorted(info.siblings, key=lambda s: s.rfilename):
    print("sibling", s.rfilename, s.size, s.blob_id, s.lfs.sha256 if s.lfs else "-")
for e in api.list_repo_tree("org/model", recursive=True):
    print("tree", e.path)
if sys.argv[3:] == ["paths-info"]:  # the mock Hub has no paths-info
    for e in api.get_paths_info("org/data", ["README.md", "data", "nope"], repo_type="dataset"):
        print("paths-info", e.path)
"#;

#[test]
fn huggingface_hub_downloads_byte_exact_from_hfd_serve() {
    let Some(py) = python() else { return };
    let hub = MockHub::start();
    hub.add_repo(model_spec("org/model"));
    hub.push(
        "org/model",
        "dev",
        vec![HubFile::git("config.json", "{\"dev\": true}\n")],
        &[],
    );
    let tag = hub.push(
        "org/model",
        "v1.0",
        vec![HubFile::lfs("extra.bin", FileSpec::generated(5, 123_456))],
        &["README.md"],
    );
    hub.push(
        "org/model",
        "refs/pr/1",
        vec![HubFile::git("sub dir/odd name+1.txt", "pr\n")],
        &[],
    );
    hub.add_repo(dataset_spec("org/data"));
    let dir = tempdir();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let repos = r#"[["org/model","model","main"],["org/model","model","dev"],["org/model","model","v1.0"],["org/data","dataset","main"],["org/model","model","refs/pr/1"]]"#;
    let closed = [("HF_ENDPOINT", "http://127.0.0.1:9")];
    let fill = |cache: &Path, endpoint: &str| snapshots(&py, cache, endpoint, repos, &closed);
    let from_hub = fill(&src, &hub.endpoint());
    // A page size of 3 makes the official client follow Link pages.
    let srv = Serving::start(&src, 3);
    let from_serve = fill(&dst, &srv.url());

    assert_eq!(from_hub.len(), 5);
    for (a, b) in from_hub.iter().zip(&from_serve) {
        // Same commit (the snapshot folder's name), same files, same bytes.
        assert_eq!(a.file_name(), b.file_name());
        let (fa, fb) = (files_of(a), files_of(b));
        assert_eq!(fa, fb, "{}", a.display());
        assert!(!fa.is_empty());
    }
    assert!(from_hub[2].ends_with(&tag));
    // And the refs the client wrote name the same commits.
    for r in ["main", "dev", "v1.0", "refs/pr/1"] {
        let read = |c: &Path| std::fs::read_to_string(c.join("models--org--model/refs").join(r));
        assert_eq!(read(&src).unwrap(), read(&dst).unwrap(), "{r}");
    }

    let (code, out, err) = run_python(
        &py,
        PROBES,
        &[
            &support::path_str(&dir.path().join("probe")),
            &srv.url(),
            "paths-info",
        ],
        &closed,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("missing-repo RepositoryNotFoundError"),
        "{out}"
    );
    assert!(out.contains("missing-rev RevisionNotFoundError"), "{out}");
    assert!(
        out.contains("missing-file RemoteEntryNotFoundError"),
        "{out}"
    );
    // Sizes, blob ids and LFS hashes as the mock Hub itself lists them.
    let (code, hub_out, err) = run_python(
        &py,
        PROBES,
        &[
            &support::path_str(&dir.path().join("probe2")),
            &hub.endpoint(),
        ],
        &closed,
    );
    assert_eq!(code, 0, "{err}");
    let lines = |s: &str, p: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.starts_with(p))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(lines(&out, "sibling"), lines(&hub_out, "sibling"));
    assert_eq!(lines(&out, "tree"), lines(&hub_out, "tree"));
    assert_eq!(
        lines(&out, "paths-info"),
        ["paths-info README.md", "paths-info data"]
    );
}

/// Every file below a snapshot folder (links followed), relative path and
/// sha256, sorted.
pub(crate) fn files_of(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.push((rel, support::sha256_file(&p)));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn hfd_with_8_connections_downloads_byte_exact_from_hfd_serve() {
    let Some(py) = python() else { return };
    let hub = MockHub::start();
    hub.add_repo(model_spec("org/model"));
    hub.add_repo(dataset_spec("org/data"));
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let repos = r#"[["org/model","model","main"],["org/data","dataset","main"]]"#;
    let snaps = snapshots(&py, &cache, &hub.endpoint(), repos, &[]);
    let srv = Serving::start(&cache, 1000);
    for (i, (id, dataset)) in [("org/model", false), ("org/data", true)]
        .iter()
        .enumerate()
    {
        let local = dir.path().join(format!("out{i}"));
        let mut c = hfd_bin(dir.path());
        c.env("HF_ENDPOINT", srv.url())
            .args([*id, "-x", "8", "--local-dir"])
            .arg(&local);
        if *dataset {
            c.arg("--dataset");
        }
        let (code, out, err) = run(&mut c);
        assert_eq!(code, 0, "{out}\n{err}");
        let mut got = files_of(&local);
        // Beside the repo's files: hfd's state and huggingface_hub's
        // local-dir records (tests/it/cache.rs checks those).
        got.retain(|(p, _)| !p.starts_with(".hfd") && !p.starts_with(".cache/huggingface/"));
        assert_eq!(got, files_of(&snaps[i]), "{id}");
    }
}

/// A cache that huggingface_hub filled through hf_xet links the repo's
/// blobs into its store of Xet files (`CACHE/blobs/<h[..2]>/<h>`): those
/// files are served like any other.
#[test]
fn files_in_huggingface_hubs_xet_store_are_served() {
    let Some(py) = python() else { return };
    let hub = MockHub::start_with_xet();
    let files = [
        HubFile::git("config.json", "{}\n"),
        HubFile::xet("model.safetensors", FileSpec::generated(51, 700_000)),
    ];
    hub.add_repo(
        files
            .iter()
            .cloned()
            .fold(RepoSpec::model("org/xet"), |r, f| r.file(f)),
    );
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let repos = r#"[["org/xet","model","main"]]"#;
    snapshots(&py, &cache, &hub.endpoint(), repos, &[]);
    let blob = cache
        .join("models--org--xet/blobs")
        .join(files[1].spec.sha256_hex());
    assert!(std::fs::symlink_metadata(&blob).unwrap().is_symlink());
    let srv = Serving::start(&cache, 1000);
    let local = dir.path().join("out");
    let mut c = hfd_bin(dir.path());
    c.env("HF_ENDPOINT", srv.url())
        .args(["org/xet", "-x", "4", "--local-dir"])
        .arg(&local);
    let (code, out, err) = run(&mut c);
    assert_eq!(code, 0, "{out}\n{err}");
    for f in &files {
        assert_eq!(
            sha256_file(&local.join(&f.path)),
            f.spec.sha256_hex(),
            "{}",
            f.path
        );
    }
}

#[test]
fn serve_binary_prints_its_url_logs_requests_and_stops_on_sigterm() {
    let dir = tempdir();
    let (cache, _, data) = hand_made_cache(dir.path(), 1000);
    let (child, addr) = serve_binary(&cache);
    assert_eq!(get(addr, "/org/m/resolve/main/w.bin", "").body, data);
    let (status, err) = stop_binary(child);
    assert_eq!(status, Some(0), "{err}");
    assert!(
        err.contains("\"GET /org/m/resolve/main/w.bin\" 200 1000"),
        "{err}"
    );
}

/// 32 clients on keep-alive connections, each sending Range requests for
/// random parts of one file, for a bounded time and count; every answer
/// must be a 206 with exactly the asked bytes. Prints throughput and p99.
#[test]
fn load_32_clients_with_ranges_no_error() {
    let dir = tempdir();
    let len = 8 << 20;
    let (cache, _, data) = hand_made_cache(dir.path(), len);
    let srv = Serving::start(&cache, 1000);
    let seconds: u64 = std::env::var("HFD_SERVE_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .min(120);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let data = std::sync::Arc::new(data);
    let started = Instant::now();
    let results: Vec<(u64, Vec<Duration>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32u64)
            .map(|i| {
                let data = data.clone();
                let addr = srv.addr;
                s.spawn(move || client(addr, &data, i, deadline))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let bytes: u64 = results.iter().map(|r| r.0).sum();
    let mut lat: Vec<Duration> = results.into_iter().flat_map(|r| r.1).collect();
    lat.sort();
    assert!(!lat.is_empty());
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "serve load: 32 clients, {} requests in {elapsed:.1} s, {:.0} MiB/s, p50 {:.2} ms, p99 {:.2} ms",
        lat.len(),
        bytes as f64 / elapsed / (1 << 20) as f64,
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
    );
}

/// One load client: Range requests of 64 KiB to 1 MiB at random offsets
/// until `deadline` (at most 100,000); panics on any wrong answer.
fn client(addr: SocketAddr, data: &[u8], seed: u64, deadline: Instant) -> (u64, Vec<Duration>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let (mut bytes, mut lat) = (0u64, Vec::new());
    for _ in 0..100_000 {
        if Instant::now() >= deadline {
            break;
        }
        let n = rng.usize(64 << 10..=1 << 20);
        let start = rng.usize(0..data.len() - n);
        let t = Instant::now();
        write!(
            w,
            "GET /org/m/resolve/main/w.bin HTTP/1.1\r\nHost: x\r\nRange: bytes={start}-{}\r\n\r\n",
            start + n - 1
        )
        .unwrap();
        let a = read_answer(&mut r, false).unwrap();
        lat.push(t.elapsed());
        assert_eq!(a.status, 206);
        assert!(
            a.body == data[start..start + n],
            "wrong bytes at {start}+{n}"
        );
        bytes += n as u64;
    }
    (bytes, lat)
}

/// `hfd serve -v` started as the binary; returns the child, its address
/// and its stderr reader thread's output (joined after the child ends).
fn serve_binary(cache: &Path) -> (std::process::Child, SocketAddr) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hfd"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--offline",
            "-v",
            "--cache-dir",
        ])
        .arg(cache)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    (child, url.trim_start_matches("http://").parse().unwrap())
}

/// SIGTERM, then the exit status and what it logged.
fn stop_binary(child: std::process::Child) -> (Option<i32>, String) {
    // SAFETY: kill(2) on the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// nginx with docs/fleet/nginx-hfd-cache.conf in front of `hfd serve`:
/// four clients at once fetch a cold 3-slice file through it, then four
/// more ask for ranges; hfd serve's own log shows each slice fetched once.
#[test]
fn nginx_in_front_fetches_each_slice_once() {
    if std::process::Command::new("nginx")
        .arg("-v")
        .output()
        .is_err()
    {
        println!("SKIPPED: nginx is not installed");
        return;
    }
    let dir = tempdir();
    let slice = 8 << 20;
    let (cache, _, data) = hand_made_cache(dir.path(), 2 * slice + 12_345);
    let (hfd, hfd_addr) = serve_binary(&cache);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let snippet = include_str!("../../docs/fleet/nginx-hfd-cache.conf");
    let ngx = dir.path().join("nginx");
    std::fs::create_dir_all(&ngx).unwrap();
    let cache_dir = ngx.join("cache");
    let changed = [
        ("/var/cache/nginx/hfd", support::path_str(&cache_dir)),
        ("10.0.0.5:8080", hfd_addr.to_string()),
        ("listen 8080;", format!("listen 127.0.0.1:{port};")),
    ];
    let mut conf = snippet.to_string();
    for (from, to) in &changed {
        assert_eq!(conf.matches(from).count(), 1, "{from} once in the config");
        conf = conf.replace(from, to);
    }
    std::fs::write(ngx.join("hfd.conf"), conf).unwrap();
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;"
    } else {
        ""
    };
    let n = support::path_str(&ngx);
    std::fs::write(
        ngx.join("nginx.conf"),
        format!(
            "{user}\nworker_processes 2;\npid {n}/nginx.pid;\nerror_log {n}/error.log;\n\
             events {{ worker_connections 256; }}\nhttp {{\n access_log off;\n\
             client_body_temp_path {n}/body; proxy_temp_path {n}/proxy;\n\
             fastcgi_temp_path {n}/fcgi; uwsgi_temp_path {n}/uwsgi; scgi_temp_path {n}/scgi;\n\
             include {n}/hfd.conf;\n}}\n"
        ),
    )
    .unwrap();
    let (code, out, err) = run(std::process::Command::new("nginx")
        .args(["-p", &n, "-e", &format!("{n}/error.log"), "-c"])
        .arg(ngx.join("nginx.conf")));
    assert_eq!(code, 0, "nginx: {out}{err}");
    let front: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let url = "/org/m/resolve/main/w.bin";

    let whole: Vec<Answer> = std::thread::scope(|s| {
        let h: Vec<_> = (0..4).map(|_| s.spawn(|| get(front, url, ""))).collect();
        h.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ranges: Vec<(Answer, usize)> = std::thread::scope(|s| {
        let h: Vec<_> = (0..4usize)
            .map(|i| {
                s.spawn(move || {
                    let start = i * 5_000_000;
                    let r = format!("Range: bytes={start}-{}\r\n", start + 999_999);
                    (get(front, url, &r), start)
                })
            })
            .collect();
        h.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let pid = std::fs::read_to_string(ngx.join("nginx.pid")).unwrap();
    // SAFETY: kill(2) on the nginx master we started.
    unsafe { libc::kill(pid.trim().parse().unwrap(), libc::SIGTERM) };
    let (status, log) = stop_binary(hfd);
    assert_eq!(status, Some(0), "{log}");

    for a in &whole {
        assert_eq!(a.status, 200, "{}", a.head);
        assert!(a.body == data, "a client got other bytes through nginx");
    }
    for (a, start) in &ranges {
        assert_eq!(a.status, 206, "{}", a.head);
        assert!(a.body == data[*start..start + 1_000_000]);
        assert_eq!(a.header("x-cache-status").as_deref(), Some("HIT"));
    }
    // What hfd serve sent: each slice once, the file's bytes once in all.
    let fetches: Vec<u64> = log
        .lines()
        .filter(|l| l.contains(&format!("\"GET {url}\"")))
        .map(|l| l.split(' ').rev().nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(fetches.len(), 3, "{log}");
    assert_eq!(fetches.iter().sum::<u64>(), data.len() as u64, "{log}");
}

/// SIGTERM while a client is in the middle of a file: the answer in
/// progress is finished (whole and exact), the connection closed after
/// it, the server exits 0, and a new connection is refused.
#[test]
fn sigterm_lets_the_answer_in_progress_finish() {
    let dir = tempdir();
    let (cache, _, data) = hand_made_cache(dir.path(), 32 << 20);
    let (child, addr) = serve_binary(&cache);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /org/m/resolve/main/w.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut r = BufReader::with_capacity(4096, s);
    let mut first = [0u8; 4096];
    r.read_exact(&mut first).unwrap();
    // SAFETY: kill(2) on the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    let mut all = first.to_vec();
    all.extend_from_slice(&rest);
    let body_at = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    // read_to_end returned: after the answer, the server closed the
    // keep-alive connection instead of waiting for another request.
    assert!(all[body_at..] == data[..], "the answer in progress was cut");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after the stop"
    );
}
