//! `hfd` through the real binary against the mock Hub (`HF_ENDPOINT`
//! pointing at it): compatibility, safety, verification and resume.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hfd_testserver::hub::{HubFile, LimitScope, MockHub, RepoSpec};

use crate::support::*;

/// A small repo: git files at the top and in a subfolder, two LFS files
/// (one big enough to be split over several connections).
fn files() -> Vec<HubFile> {
    vec![
        HubFile::git("README.md", "# readme\n"),
        HubFile::git("config.json", "{\"hidden\": 64}\n"),
        HubFile::git("sub/dir/notes.txt", "notes\n"),
        HubFile::lfs("model.safetensors", FileSpec::generated(1, 3 << 20)),
        HubFile::lfs("sub/weights.bin", FileSpec::generated(2, 100_000)),
    ]
}

fn repo(id: &str) -> RepoSpec {
    files()
        .into_iter()
        .fold(RepoSpec::model(id), |r, f| r.file(f))
}

fn hfd(dir: &Path, hub: &MockHub) -> Command {
    let mut c = hfd_bin(dir);
    c.env("HF_ENDPOINT", hub.endpoint());
    c
}

/// Files under `dir` (relative, sorted), `.hfd/` and huggingface_hub's
/// `.cache/` (its download records, checked in `cache.rs`) left out.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                if p.file_name().is_some_and(|n| n == ".hfd" || n == ".cache") && d == base {
                    continue;
                }
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut v = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut v);
    }
    v.sort();
    v
}

fn sha256_of(spec: &FileSpec) -> String {
    spec.sha256_hex()
}

/// Every file of `files` is in `dir` with the right content.
fn assert_files(dir: &Path, files: &[HubFile]) {
    for f in files {
        let p = dir.join(&f.path);
        assert_eq!(
            sha256_file(&p),
            sha256_of(&f.spec),
            "{} has the wrong content",
            p.display()
        );
    }
}

fn names(files: &[HubFile]) -> Vec<String> {
    let mut v: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
    v.sort();
    v
}

fn no_escapes(s: &str) {
    assert!(!s.contains('\x1b'), "escape codes in output: {s:?}");
}

#[test]
fn help_and_usage_errors() {
    let dir = tempdir();
    // An endpoint that counts connections: nothing here may need the network.
    let watch = TestServer::start();
    let watched = |c: &mut Command| {
        c.env("HF_ENDPOINT", watch.base_url());
    };
    let mut c = hfd_bin(dir.path());
    watched(&mut c);
    let (code, out, _) = run(c.arg("-h"));
    assert_eq!(code, 0);
    assert!(out.contains("Examples:") && out.contains("--tool"), "{out}");
    assert!(out.contains("in-process"), "{out}");
    let mut c = hfd_bin(dir.path());
    watched(&mut c);
    let (code, out, _) = run(c.arg("--help"));
    assert_eq!(code, 0, "{out}");
    for bad in [
        &[][..],
        &["r", "-x", "0"],
        &["r", "-x", "65"],
        &["r", "-x", "ten"],
        &["r", "-j", "0"],
        &["r", "-j", "65"],
        &["r", "--tool", "curl"],
        &["r", "--revision"],
        &["r", "--include"],
        &["r", "--local-dir"],
        &["r", "--bogus"],
        &["../x"],
        &["r", "--include", "(unclosed"],
    ] {
        let started = Instant::now();
        let mut c = hfd_bin(dir.path());
        watched(&mut c);
        let (code, _, err) = run(c.args(bad));
        assert_eq!(code, 1, "{bad:?}: {err}");
        assert!(!err.is_empty(), "{bad:?} says nothing");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{bad:?} was slow"
        );
    }
    let mut c = hfd_bin(dir.path());
    c.env("HF_ENDPOINT", "ftp://nope");
    let (code, _, err) = run(c.arg("r"));
    assert_eq!(code, 1);
    assert!(err.contains("HF_ENDPOINT"), "{err}");
    assert!(tree(dir.path()).is_empty(), "usage errors created files");
    let st = watch.stats();
    assert_eq!(
        (st.connections, st.foreign_connections, st.requests),
        (0, 0, 0),
        "the endpoint was contacted: {:?}",
        watch.requests()
    );
}

#[test]
fn downloads_with_defaults_and_x16_one_resolve_per_file() {
    let hub = MockHub::start();
    hub.add_repo(repo("org/name"));
    let dir = tempdir();
    // A trailing '/' on HF_ENDPOINT is tolerated.
    let mut c = hfd(dir.path(), &hub);
    c.env("HF_ENDPOINT", format!("{}/", hub.endpoint()));
    c.env_remove("NO_COLOR");
    let (code, out, err) = run(c.args(["org/name", "-x", "16", "--tool", "wget"]));
    assert_eq!(code, 0, "{out}{err}");
    no_escapes(&out);
    no_escapes(&err);
    assert!(out.contains("Downloading 5 files to name"), "{out}");
    assert!(out.contains("Done. 5 files, "), "{out}");
    assert!(out.contains(" in name"), "{out}");
    let local = dir.path().join("name");
    assert_eq!(tree(&local), names(&files()));
    assert_files(&local, &files());
    let hfd_dir: BTreeSet<String> = listing(&local.join(".hfd")).into_iter().collect();
    for f in [
        "repo_metadata.json",
        "manifest",
        "files.json",
        "verified.json",
    ] {
        assert!(hfd_dir.contains(f), "{f} missing from .hfd: {hfd_dir:?}");
    }
    assert!(listing(&local.join(".hfd/partial")).is_empty());
    let manifest = std::fs::read_to_string(local.join(".hfd/manifest")).unwrap();
    assert!(
        manifest.contains("3145728\tmodel.safetensors"),
        "{manifest}"
    );
    // One resolve per file, though the big one went over many connections.
    let resolves = hub.resolve_requests();
    assert_eq!(
        resolves.len(),
        5,
        "{:?}",
        resolves.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    let big = hub.cdn().requests();
    let ranges = big.iter().filter(|r| r.range.is_some()).count();
    assert!(
        ranges > 2,
        "the big file was not split: {ranges} ranged requests"
    );
    // Every file came from the listed commit; no request carried a Referer.
    let commit = hub.commit_of("org/name", "main").unwrap();
    assert!(
        resolves
            .iter()
            .all(|r| r.path.contains(&format!("/resolve/{commit}/")))
    );
    for r in hub
        .hub()
        .requests()
        .iter()
        .chain(hub.cdn().requests().iter())
    {
        assert!(r.header("referer").is_none(), "Referer sent: {r:?}");
        assert!(r.path != "//api" && !r.path.starts_with("//"), "{}", r.path);
    }
}

#[test]
fn rerun_is_up_to_date_with_one_cheap_request() {
    let hub = MockHub::start();
    hub.add_repo(repo("org/name"));
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path(), &hub).arg("org/name"));
    assert_eq!(code, 0, "{out}{err}");
    hub.hub().reset_stats();
    hub.cdn().reset_stats();
    let (code, out, err) = run(hfd(dir.path(), &hub).arg("org/name"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Up to date. 5 files in name"), "{out}");
    let reqs = hub.hub().requests();
    assert_eq!(
        reqs.len(),
        1,
        "{:?}",
        reqs.iter().map(|r| &r.uri).collect::<Vec<_>>()
    );
    assert!(reqs[0].path.starts_with("/api/models/org/name"));
    assert_eq!(hub.cdn().requests().len(), 0);
}

#[test]
fn include_and_exclude_select_like_hfd_sh() {
    let hub = MockHub::start();
    hub.add_repo(repo("org/name"));
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path(), &hub).args([
        "org/name",
        "--include",
        "*.json",
        "sub/*",
        "--exclude",
        "notes",
        "--local-dir",
        "sel",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        tree(&dir.path().join("sel")),
        ["config.json", "sub/weights.bin"]
    );
    assert!(out.contains("Done. 2 files"), "{out}");
    // Substring semantics: 'weights' alone selects sub/weights.bin.
    let (code, out, _) =
        run(hfd(dir.path(), &hub).args(["org/name", "--include", "weights", "--local-dir", "w"]));
    assert_eq!(code, 0);
    assert_eq!(tree(&dir.path().join("w")), ["sub/weights.bin"], "{out}");
    // Case-sensitive; nothing selected is "up to date", as in hfd.sh.
    let (code, out, _) = run(hfd(dir.path(), &hub).args([
        "org/name",
        "--include",
        "README.MD",
        "--local-dir",
        "none",
    ]));
    assert_eq!(code, 0);
    assert!(out.contains("Up to date. 0 files in none"), "{out}");
}

#[test]
fn datasets_use_dataset_paths() {
    let hub = MockHub::start();
    let f = vec![
        HubFile::git("data/train.csv", "a,b\n1,2\n"),
        HubFile::git("data/__init__.py", ""),
        HubFile::lfs("data/big.parquet", FileSpec::generated(5, 50_000)),
    ];
    hub.add_repo(
        f.iter()
            .cloned()
            .fold(RepoSpec::dataset("org/ds"), |r, x| r.file(x)),
    );
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path(), &hub).args(["org/ds", "--dataset"]));
    assert_eq!(code, 0, "{out}{err}");
    assert_files(&dir.path().join("ds"), &f);
    let reqs = hub.hub().requests();
    assert!(reqs.iter().any(|r| r.path == "/api/datasets/org/ds"));
    assert!(
        reqs.iter()
            .filter(|r| r.path.contains("/resolve/"))
            .all(|r| r.path.starts_with("/datasets/org/ds/resolve/"))
    );
    // Without --dataset it is not found, and the message says what to try.
    let (code, _, err) = run(hfd(dir.path(), &hub).args(["org/ds", "--local-dir", "x"]));
    assert_eq!(code, 1);
    assert!(err.contains("--dataset"), "{err}");
}

#[test]
fn revisions_and_odd_file_names_are_encoded() {
    let hub = MockHub::start();
    hub.add_repo(repo("org/name"));
    let odd = vec![
        HubFile::git("a b.txt", "space\n"),
        HubFile::git("c#d.txt", "hash\n"),
        HubFile::git("100%.txt", "percent\n"),
        HubFile::git("q?.txt", "question\n"),
        HubFile::git("中文/文件.md", "unicode\n"),
        HubFile::lfs("dir with space/m#1.bin", FileSpec::generated(9, 30_000)),
        HubFile::git("config.json", "{\"pr\": 1}\n"),
    ];
    hub.push("org/name", "refs/pr/1", odd.clone(), &[]);
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path(), &hub).args(["org/name", "--revision", "refs/pr/1"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("org/name (refs/pr/1)"), "{out}");
    let local = dir.path().join("name");
    assert_files(&local, &odd);
    assert_eq!(tree(&local).len(), 5 + odd.len() - 1);
    let info = &hub.hub().requests()[0];
    assert_eq!(
        info.path, "/api/models/org/name/revision/refs%2Fpr%2F1",
        "{}",
        info.uri
    );
}

#[test]
fn names_that_leave_the_folder_are_refused() {
    let hub = MockHub::start();
    hub.add_repo(
        RepoSpec::model("org/evil")
            .file(HubFile::git("ok.txt", "ok\n"))
            .file(HubFile::git("../escape.txt", "escaped\n"))
            .file(HubFile::git("a/../../up.txt", "up\n")),
    );
    let dir = tempdir();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let (code, out, err) = run(hfd(&work, &hub).arg("org/evil"));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("Refusing") && err.contains("../escape.txt"),
        "{err}"
    );
    assert!(err.contains("--exclude"), "{err}");
    assert!(!work.join("escape.txt").exists() && !dir.path().join("up.txt").exists());
    assert!(
        tree(&work.join("evil")).is_empty(),
        "{:?}",
        tree(&work.join("evil"))
    );
    assert!(hub.resolve_requests().is_empty(), "nothing may be fetched");
    // Excluding them (hfd.sh's pattern rule: dots are literal) gets the rest.
    let (code, out, err) = run(hfd(&work, &hub).args(["org/evil", "--exclude", "../"]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(tree(&work.join("evil")), ["ok.txt"]);
}

/// Every byte of every file under `dir`, searched for `needle`.
fn grep_dir(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                hits.push(p);
            }
        }
    }
    hits
}

#[test]
fn gated_repos_need_only_a_token_which_never_reaches_the_cdn_or_the_disk() {
    const TOKEN: &str = "hf_SecretToken0123456789";
    let hub = MockHub::start();
    hub.set_token(TOKEN);
    hub.add_repo(repo("org/gated").gated("manual"));
    let dir = tempdir();
    // No token: one clear message, nothing fetched.
    let (code, out, err) = run(hfd(dir.path(), &hub).arg("org/gated"));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("--hf_token") && err.contains("HF_TOKEN") && err.contains("terms"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(hub.cdn().requests().is_empty());
    assert!(hub.resolve_requests().is_empty());
    // A wrong token is named as such.
    let (code, _, err) = run(hfd(dir.path(), &hub).args(["org/gated", "--hf_token", "hf_wrong"]));
    assert_eq!(code, 1);
    assert!(err.contains("token was rejected"), "{err}");
    // The token alone (from HF_TOKEN, no username) works.
    hub.hub().reset_stats();
    let mut c = hfd(dir.path(), &hub);
    c.env("HF_TOKEN", TOKEN);
    let (code, out, err) = run(c.arg("org/gated"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains(TOKEN) && !err.contains(TOKEN));
    assert_files(&dir.path().join("gated"), &files());
    let bearer = format!("Bearer {TOKEN}");
    let hub_reqs = hub.hub().requests();
    assert!(!hub_reqs.is_empty());
    for r in &hub_reqs {
        assert_eq!(
            r.header("authorization"),
            Some(bearer.as_str()),
            "{}",
            r.uri
        );
    }
    let cdn_reqs = hub.cdn().requests();
    assert!(!cdn_reqs.is_empty());
    for r in &cdn_reqs {
        assert!(
            r.header("authorization").is_none(),
            "token sent to the CDN: {}",
            r.uri
        );
    }
    assert!(
        grep_dir(dir.path(), TOKEN.as_bytes()).is_empty(),
        "the token is on disk"
    );
    // With the flag and a username too (hfd.sh's form).
    let (code, out, err) = run(hfd(dir.path(), &hub).args([
        "org/gated",
        "--hf_username",
        "me",
        "--hf_token",
        TOKEN,
        "--local-dir",
        "g2",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(grep_dir(dir.path(), TOKEN.as_bytes()).is_empty());
}

#[test]
fn private_missing_repo_bad_revision_and_missing_file() {
    let hub = MockHub::start();
    hub.set_token("hf_good");
    hub.add_repo(repo("org/private").private());
    hub.add_repo(repo("org/name"));
    let dir = tempdir();
    for id in ["org/private", "org/missing"] {
        let (code, out, err) = run(hfd(dir.path(), &hub).arg(id));
        assert_eq!(code, 1, "{out}{err}");
        assert!(
            err.contains("not found") && err.contains("HF_TOKEN"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        let name = id.split('/').nth(1).unwrap();
        assert!(!dir.path().join(name).exists(), "a failed run left {name}/");
    }
    // The private repo works with the token.
    let (code, out, err) =
        run(hfd(dir.path(), &hub).args(["org/private", "--hf_token", "hf_good"]));
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = run(hfd(dir.path(), &hub).args(["org/name", "--revision", "nope"]));
    assert_eq!(code, 1);
    assert!(err.contains("Revision \"nope\" not found"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    hub.hide_file("org/name", "config.json");
    let (code, out, err) = run(hfd(dir.path(), &hub).args(["org/name", "--local-dir", "m"]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("config.json: not found"), "{err}");
    assert!(
        out.contains("Download incomplete. Re-run to resume."),
        "{out}"
    );
    assert_eq!(
        tree(&dir.path().join("m")).len(),
        4,
        "the other files still came"
    );
}

#[test]
fn rate_limits_are_honoured_on_api_and_resolve() {
    let hub = MockHub::start();
    hub.add_repo(repo("org/name"));
    hub.rate_limit(1, LimitScope::Api, 1);
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path(), &hub).args(["org/name", "--include", "README"]));
    assert_eq!(code, 0, "{out}{err}");
    let reqs = hub.hub().requests();
    assert_eq!(reqs[0].status, 429);
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    assert!(err.contains("rate limited"), "{err}");

    hub.hub().reset_stats();
    hub.rate_limit(1, LimitScope::Resolvers, 1);
    let (code, out, err) =
        run(hfd(dir.path(), &hub).args(["org/name", "--include", "config", "--local-dir", "c"]));
    assert_eq!(code, 0, "{out}{err}");
    let resolves = hub.resolve_requests();
    assert_eq!(resolves.len(), 2, "{resolves:?}");
    assert_eq!(resolves[0].status, 429);
    let gap = resolves[1].at.duration_since(resolves[0].at);
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
}

#[test]
fn sigkill_then_resume_refetches_little() {
    let hub = MockHub::start();
    let len: u64 = 6 << 20;
    let big = HubFile::lfs("big.bin", FileSpec::generated(21, len).throttle(1 << 20));
    hub.add_repo(RepoSpec::model("org/big").file(big.clone()));
    let dir = tempdir();
    let mut child = hfd(dir.path(), &hub)
        .args(["org/big", "-x", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let local = dir.path().join("big");
    assert!(
        !local.join("big.bin").exists(),
        "killed mid-way, yet the file is final"
    );
    assert!(local.join(".hfd/partial/big.bin.part").exists());
    let first = hub.cdn().stats().bytes_served;
    assert!(
        first > 1 << 20,
        "too little was fetched before the kill: {first}"
    );
    let (code, out, err) = run(hfd(dir.path(), &hub).args(["org/big", "-x", "2"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Resuming 1 file to big"), "{out}");
    assert_files(&local, &[big]);
    let total = hub.cdn().stats().bytes_served;
    let second = total - first;
    assert!(
        second < len - (1 << 19),
        "the resume fetched {second} of {len} bytes"
    );
    assert!(
        total <= len + (3 << 20),
        "{total} bytes fetched for a {len}-byte file"
    );
    assert!(!local.join(".hfd/partial/big.bin.part").exists());
}

#[test]
fn corrupted_local_files_are_fetched_again() {
    let hub = MockHub::start();
    hub.add_repo(repo("org/name"));
    let dir = tempdir();
    assert_eq!(run(hfd(dir.path(), &hub).arg("org/name")).0, 0);
    let local = dir.path().join("name");
    std::thread::sleep(Duration::from_millis(20));
    // Same size, different bytes: only a hash can tell.
    let p = local.join("sub/weights.bin");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&p, &bytes).unwrap();
    let cfg = local.join("config.json");
    let len = std::fs::metadata(&cfg).unwrap().len() as usize;
    std::fs::write(&cfg, vec![b'x'; len]).unwrap();
    // Wrong size.
    std::fs::write(local.join("README.md"), b"#").unwrap();
    hub.hub().reset_stats();
    hub.cdn().reset_stats();
    let (code, out, err) = run(hfd(dir.path(), &hub).arg("org/name"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Resuming 5 files"), "{out}");
    assert!(
        err.contains("sub/weights.bin: the local copy does not match"),
        "{err}"
    );
    assert_files(&local, &files());
    let mut fetched: Vec<String> = hub
        .resolve_requests()
        .iter()
        .map(|r| r.path.rsplit('/').next().unwrap().to_string())
        .collect();
    fetched.sort();
    assert_eq!(fetched, ["README.md", "config.json", "weights.bin"]);
    // --verify re-hashes everything but fetches nothing when all is well.
    hub.hub().reset_stats();
    let (code, out, _) = run(hfd(dir.path(), &hub).args(["org/name", "--verify"]));
    assert_eq!(code, 0);
    assert!(
        out.contains("Verifying 5 local files") && out.contains("Up to date"),
        "{out}"
    );
    assert!(hub.resolve_requests().is_empty());
}

#[test]
fn corrupted_transfers_are_retried() {
    let hub = MockHub::start();
    let f = vec![
        HubFile::lfs(
            "bad.bin",
            FileSpec::generated(3, 200_000).corrupt(12_345, 1),
        ),
        HubFile::git("ok.txt", "fine\n"),
    ];
    hub.add_repo(
        f.iter()
            .cloned()
            .fold(RepoSpec::model("org/c"), |r, x| r.file(x)),
    );
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path(), &hub).arg("org/c"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("checksum mismatch") && err.contains("downloading it again"),
        "{err}"
    );
    assert_files(&dir.path().join("c"), &f);
    let bad = hub
        .resolve_requests()
        .iter()
        .filter(|r| r.path.ends_with("/bad.bin"))
        .count();
    assert_eq!(bad, 2);
}

#[test]
fn moved_branch_replaces_changed_files_and_keeps_the_users() {
    let hub = MockHub::start();
    let first = hub.add_repo(repo("org/name"));
    let dir = tempdir();
    assert_eq!(run(hfd(dir.path(), &hub).arg("org/name")).0, 0);
    let local = dir.path().join("name");
    std::fs::write(local.join("mine.txt"), b"user notes").unwrap();
    std::fs::write(local.join("sub/mine.bin"), b"user data").unwrap();
    let changed = vec![
        HubFile::git("config.json", "{\"hidden\": 128}\n"),
        HubFile::lfs("model.safetensors", FileSpec::generated(77, 1 << 20)),
        HubFile::git("new.txt", "new\n"),
    ];
    hub.push("org/name", "main", changed.clone(), &["README.md"]);
    hub.hub().reset_stats();
    let (code, out, err) = run(hfd(dir.path(), &hub).arg("org/name"));
    assert_eq!(code, 0, "{out}{err}");
    assert_files(&local, &changed);
    assert_eq!(
        std::fs::read(local.join("mine.txt")).unwrap(),
        b"user notes"
    );
    assert_eq!(
        std::fs::read(local.join("sub/mine.bin")).unwrap(),
        b"user data"
    );
    // Gone upstream, left alone here (like any file of the user's).
    assert!(local.join("README.md").exists());
    assert_eq!(
        hub.resolve_requests().len(),
        3,
        "only the changed files are fetched"
    );
    // --revision back to the first commit: the changed files are replaced again.
    hub.hub().reset_stats();
    let (code, out, err) = run(hfd(dir.path(), &hub).args(["org/name", "--revision", &first]));
    assert_eq!(code, 0, "{out}{err}");
    assert_files(&local, &files());
    assert_eq!(
        hub.resolve_requests().len(),
        2,
        "config.json and model.safetensors"
    );
    assert_eq!(
        std::fs::read(local.join("mine.txt")).unwrap(),
        b"user notes"
    );
}

#[test]
fn paginated_tree_with_a_foreign_next_link() {
    let hub = MockHub::start();
    let upstream = TestServer::start();
    hub.add_repo(repo("org/name"));
    hub.truncate_siblings(true);
    hub.set_page_size(2);
    hub.set_next_link_base(Some(upstream.base_url()));
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path(), &hub).arg("org/name"));
    assert_eq!(code, 0, "{out}{err}");
    assert_files(&dir.path().join("name"), &files());
    assert!(
        upstream.requests().is_empty(),
        "a next link was followed off the endpoint"
    );
    let pages = hub
        .hub()
        .requests()
        .iter()
        .filter(|r| r.path.contains("/tree/"))
        .count();
    assert!(pages >= 4, "{pages} tree pages");
    // No treesize either: the tree is walked too.
    hub.truncate_siblings(false);
    hub.set_treesize(false);
    let (code, out, err) = run(hfd(dir.path(), &hub).args(["org/name", "--local-dir", "t2"]));
    assert_eq!(code, 0, "{out}{err}");
    assert_files(&dir.path().join("t2"), &files());
}

#[test]
fn expired_signed_urls_are_resolved_again() {
    let hub = MockHub::start();
    // 3 MiB over 2 connections of 1 MiB/s, asked for 1 MiB at a time: the
    // second requests go out after about 1 s, past the 0.7 s expiry, so the
    // URL is resolved again once or twice (each followed by data, so none
    // counts against the engine's budget).
    hub.set_url_ttl(Duration::from_millis(700));
    let f = HubFile::lfs(
        "slow.bin",
        FileSpec::generated(8, 3 << 20).throttle(1 << 20),
    );
    hub.add_repo(RepoSpec::model("org/slow").file(f.clone()));
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path(), &hub).args(["org/slow", "-x", "2"]));
    assert_eq!(code, 0, "{out}{err}");
    assert_files(&dir.path().join("slow"), &[f]);
    let n = hub.resolve_requests().len();
    assert!((2..=4).contains(&n), "{n} resolves");
}

#[test]
fn ctrl_c_exits_130_and_the_rerun_resumes() {
    let hub = MockHub::start();
    // 8 MiB over 2 connections of 1 MiB/s: 4 s, interrupted after 1 s.
    let f = HubFile::lfs("big.bin", FileSpec::generated(4, 8 << 20).throttle(1 << 20));
    hub.add_repo(RepoSpec::model("org/int").file(f.clone()));
    let dir = tempdir();
    let child = hfd(dir.path(), &hub)
        .args(["org/int", "-x", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}");
    assert!(
        stdout.contains("Interrupted. Re-run to resume."),
        "{stdout}"
    );
    let (code, out, err) = run(hfd(dir.path(), &hub).arg("org/int"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Resuming"), "{out}");
    assert_files(&dir.path().join("int"), &[f]);
}

#[test]
fn hostile_answers_fail_cleanly() {
    use hfd_testserver::Reply;
    use serde_json::json;
    let server = TestServer::start();
    server.add_handler_fn("/api/models/bad/json", |_| Reply::text(200, "not json"));
    // No sizes in siblings (so the tree is walked), and a tree page whose
    // next link is itself.
    server.add_handler_fn("/api/models/bad/loop", |r| {
        if r.path.contains("/tree/") {
            Reply::json(200, &json!([])).header(
                "link",
                "</api/models/bad/loop/tree/main?recursive=true&expand=false>; rel=\"next\"",
            )
        } else {
            Reply::json(
                200,
                &json!({"sha": "abc", "siblings": [{"rfilename": "x"}]}),
            )
        }
    });
    // Sizes that overflow any sum, then files the server does not have.
    server.add_handler_fn("/api/models/bad/huge", |r| {
        if r.path.contains("/tree/") {
            Reply::json(
                200,
                &json!([
                    {"type": "file", "path": "a", "size": u64::MAX, "oid": "ce013625030ba8dba906f756967f9e9ca394464a"},
                    {"type": "file", "path": "b", "size": u64::MAX, "oid": "not hex"},
                    {"type": "file", "path": "c\u{1b}[2J", "size": 1},
                ]),
            )
        } else {
            Reply::json(200, &json!({"sha": "abc", "siblings": []}))
        }
    });
    let dir = tempdir();
    for (repo, says) in [
        ("bad/json", "unexpected answer"),
        ("bad/loop", "links back"),
        ("bad/huge", "control characters"),
    ] {
        let mut c = hfd_bin(dir.path());
        c.env("HF_ENDPOINT", server.base_url());
        let (code, out, err) = run(c.args([repo, "-x", "2"]));
        assert_eq!(code, 1, "{repo}: {out}{err}");
        assert!(err.contains(says), "{repo}: {err}");
        assert!(!err.contains("panicked"), "{repo}: {err}");
        assert!(
            !err.contains('\x1b'),
            "{repo}: an escape sequence reached the terminal"
        );
    }
    let mut c = hfd_bin(dir.path());
    c.env("HF_ENDPOINT", server.base_url());
    let (code, out, err) = run(c.args(["bad/huge", "--exclude", "c"]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.contains("Download incomplete"), "{out}{err}");
}

#[test]
fn without_j_more_files_run_at_once_while_that_pays() {
    // 40 shards of 256 KiB at 128 KiB/s per connection, one connection per
    // file: every extra file at once adds its full rate, so hfd must go
    // past hfd.sh's 5 by itself (`-j` given keeps it fixed: the other
    // tests, which all pass -j or have fewer files).
    let hub = MockHub::start();
    hub.add_repo(RepoSpec::generated(
        "org/many",
        40,
        (256 << 10)..(256 << 10) + 1,
        7,
        Some(128 << 10),
    ));
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path(), &hub).args(["org/many", "-x", "1", "-v"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Done. 44 files"), "{out}");
    assert!(err.contains("adaptive: 5 -> 8 files at once"), "{err}");
    let peak = hub.cdn().stats().peak_transfers;
    assert!(peak >= 8, "at most {peak} transfers at once\n{err}");
}

#[test]
fn absolute_nul_and_reserved_names_are_refused() {
    let dir = tempdir();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let outside = dir.path().join("outside.txt");
    let hub = MockHub::start();
    hub.add_repo(
        RepoSpec::model("org/evil")
            .file(HubFile::git("ok.txt", "ok\n"))
            .file(HubFile::git(outside.to_str().unwrap(), "absolute\n"))
            .file(HubFile::git("nul\0.txt", "nul\n"))
            .file(HubFile::git(".hfd/files.json", "{}"))
            .file(HubFile::git("a//b.txt", "empty segment\n"))
            .file(HubFile::git("sub/./c.txt", "dot\n"))
            .file(HubFile::git("line\nbreak.txt", "newline\n")),
    );
    let (code, out, err) = run(hfd(&work, &hub).arg("org/evil"));
    assert_eq!(code, 1, "{out}{err}");
    for (name, why) in [
        ("outside.txt", "absolute path"),
        ("nul", "control characters"),
        (".hfd/files.json", ".hfd"),
        ("a//b.txt", "empty path segment"),
        ("sub/./c.txt", "'.' or '..'"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains("Refusing") && l.contains(name) && l.contains(why)),
            "{name}: {err}"
        );
    }
    assert_eq!(err.matches("Refusing").count(), 6, "{err}");
    assert!(!err.contains('\0'), "a NUL reached the terminal");
    assert!(!outside.exists());
    assert!(tree(&work.join("evil")).is_empty());
    assert_eq!(
        listing(dir.path()),
        ["work"],
        "written outside the local dir"
    );
    assert!(hub.resolve_requests().is_empty(), "nothing may be fetched");
}

/// A server whose API answers come from `handler` (the hostile tests).
fn hostile(
    repo: &str,
    handler: impl Fn(&hfd_testserver::RequestInfo) -> hfd_testserver::Reply + Send + Sync + 'static,
) -> TestServer {
    let server = TestServer::start();
    server.add_handler_fn(&format!("/api/models/{repo}"), handler);
    server
}

#[test]
fn a_huge_tree_page_is_refused_without_reading_it_all() {
    use hfd_testserver::Reply;
    use serde_json::json;
    let server = hostile("bad/page", |_| {
        Reply::json(200, &json!({"sha": "abc", "siblings": []}))
    });
    // The tree page, 1 GiB: far past the 64 MiB a page may have. A file
    // route (it wins over the handler) makes its bytes as they are sent and
    // counts them, so reading the page through shows in the bytes served.
    let page = "/api/models/bad/page/tree/main";
    server.add_file(
        page,
        FileSpec::generated(30, 1 << 30).header("content-type", "application/json"),
    );
    let dir = tempdir();
    let mut c = hfd_bin(dir.path());
    c.env("HF_ENDPOINT", server.base_url());
    let (code, out, err) = run(c.arg("bad/page"));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("larger than"), "{err}");
    assert!(tree(&dir.path().join("page")).is_empty());
    // The 64 MiB of the limit, plus what socket buffers and the server's
    // frames in flight held when hfd hung up (tens of MiB at most), once.
    let served = server.stats().per_path[page].bytes_served;
    assert!(
        served <= 128 << 20,
        "{served} bytes of the page were sent before hfd gave up"
    );
}

#[test]
fn an_endless_tree_is_refused_at_the_file_limit() {
    use hfd::hub::api::{Api, ApiError};
    use hfd_testserver::Reply;
    // Every page has 1,000 new files and a link to one more page.
    let server = hostile("bad/endless", |r| {
        let page: u64 = r
            .query_param("cursor")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let entries: Vec<serde_json::Value> = (0..1000)
            .map(
                |i| serde_json::json!({"type": "file", "path": format!("d{page}/f{i}"), "size": 1}),
            )
            .collect();
        Reply::json(200, &serde_json::Value::Array(entries)).header(
            "link",
            format!(
                "</api/models/bad/endless/tree/main?recursive=true&cursor={}>; rel=\"next\"",
                page + 1
            ),
        )
    });
    let rt = runtime();
    let api = Api::new(
        hfd::net::Net::new(hfd::net::NetOptions::default()),
        hfd::hub::Endpoint::parse(&server.base_url()).unwrap(),
        http::HeaderMap::new(),
        hfd::engine::RetryPolicy::default(),
        tokio_util::sync::CancellationToken::new(),
    );
    // The real limit is a million files; the same check at 5,000.
    let repo = hfd::hub::RepoId::parse("bad/endless").unwrap();
    let r = rt.block_on(api.tree(hfd::hub::RepoType::Model, &repo, "main", 5000, |_| {}));
    match r {
        Err(ApiError::BadAnswer { detail, .. }) => {
            assert!(detail.contains("more than 5000 files"), "{detail}")
        }
        Err(e) => panic!("{e}"),
        Ok(f) => panic!("{} files accepted", f.len()),
    }
    let pages = server.requests().len();
    assert!(pages <= 7, "{pages} pages read");
}

#[test]
fn sizes_that_do_not_match_the_bytes_are_refused() {
    use hfd_testserver::Reply;
    use serde_json::json;
    // a.bin: the listing says 1,000 bytes and gives the sha256 of the 5,000
    // bytes served; b.txt: 10 bytes listed, 7 served, no hash.
    let a = FileSpec::generated(31, 5000);
    let a_sha = a.sha256_hex();
    let server = hostile("bad/size", move |r| {
        if r.path.contains("/tree/") {
            Reply::json(
                200,
                &json!([
                    {"type": "file", "path": "a.bin", "size": 1000, "oid": "x",
                     "lfs": {"oid": a_sha, "size": 1000}},
                    {"type": "file", "path": "b.txt", "size": 10},
                    {"type": "file", "path": "ok.txt", "size": 3},
                ]),
            )
        } else {
            Reply::json(200, &json!({"sha": "abc", "siblings": []}))
        }
    });
    server.add_file("/bad/size/resolve/abc/a.bin", a);
    server.add_file("/bad/size/resolve/abc/b.txt", FileSpec::bytes("7 bytes"));
    server.add_file("/bad/size/resolve/abc/ok.txt", FileSpec::bytes("ok\n"));
    let dir = tempdir();
    let mut c = hfd_bin(dir.path());
    c.env("HF_ENDPOINT", server.base_url());
    let (code, out, err) = run(c.args(["bad/size", "-x", "2"]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("a.bin") && err.contains("5000 bytes, but 1000 were expected"),
        "{err}"
    );
    assert!(
        err.contains("b.txt") && err.contains("7 bytes, but 10 were expected"),
        "{err}"
    );
    // Nothing of the wrong size under a final name, nothing left to resume.
    assert_eq!(tree(&dir.path().join("size")), ["ok.txt"]);
    assert!(all_files(&dir.path().join("size/.hfd/partial")).is_empty());
    assert!(out.contains("Download incomplete"), "{out}");
}

#[test]
fn a_control_file_left_by_a_kill_after_the_rename_is_tidied_and_never_trusted() {
    use hfd::storage::control_file::{ControlFile, ControlState, url_hash};
    let hub = MockHub::start();
    let len = 200_000;
    let v1 = HubFile::lfs("w.bin", FileSpec::generated(41, len));
    hub.add_repo(RepoSpec::model("org/stale").file(v1.clone()));
    let dir = tempdir();
    assert_eq!(run(hfd(dir.path(), &hub).arg("org/stale")).0, 0);
    let local = dir.path().join("stale");
    // What a SIGKILL between the final rename and the control file's
    // removal leaves: a control file claiming every byte, no data file.
    let ctl = local.join(".hfd/partial/w.bin.part.ctl");
    let state = ControlState {
        total: len,
        etag: None,
        last_modified: None,
        url_hash: url_hash("http://elsewhere/w.bin"),
        done: hfd::extent::ExtentSet::from_range(0..len),
    };
    let stale = || drop(ControlFile::create(&ctl, &state).unwrap());
    stale();
    // The next run adopts the file (its hash matches) and removes the leftover.
    let (code, out, err) = run(hfd(dir.path(), &hub).arg("org/stale"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(all_files(&local.join(".hfd/partial")).is_empty());
    // A new version of the same size while such a leftover is there: the
    // leftover must not vouch for the old bytes.
    stale();
    let v2 = HubFile::lfs("w.bin", FileSpec::generated(42, len));
    hub.push("org/stale", "main", vec![v2.clone()], &[]);
    let (code, out, err) = run(hfd(dir.path(), &hub).arg("org/stale"));
    assert_eq!(code, 0, "{out}{err}");
    assert_files(&local, &[v2]);
    assert!(all_files(&local.join(".hfd/partial")).is_empty());
    // And the record now says v2: a re-run is up to date without fetching.
    hub.hub().reset_stats();
    hub.cdn().reset_stats();
    let (code, out, _) = run(hfd(dir.path(), &hub).args(["org/stale", "--verify"]));
    assert_eq!(code, 0);
    assert!(out.contains("Up to date"), "{out}");
    assert!(
        hub.resolve_requests().is_empty(),
        "w.bin was resolved again"
    );
    let cdn = hub.cdn().requests();
    assert!(cdn.is_empty(), "w.bin was fetched again: {cdn:?}");
}
