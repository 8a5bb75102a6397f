//! `hfd --cache-dir` / `--cache` and huggingface_hub's local-dir records,
//! judged by the official client (huggingface_hub from the test venv, see
//! `support::python`): what hfd writes, it reads as its own; what it
//! writes, hfd takes without downloading again (judged by what the mock
//! Hub served). Tests that need the client print SKIPPED without it.

use std::path::{Path, PathBuf};
use std::process::Command;

use hfd_testserver::hub::{HubFile, MockHub, RepoSpec};
use serde_json::Value;

use crate::support::*;

/// Git files at the top and in folders, LFS files, and two paths with the
/// same content (one blob in the cache).
fn files() -> Vec<HubFile> {
    vec![
        HubFile::git("README.md", "# readme\n"),
        HubFile::git("config.json", "{\"hidden\": 64}\n"),
        HubFile::git("sub/dir/notes.txt", "notes\n"),
        HubFile::lfs("model.safetensors", FileSpec::generated(1, 1 << 20)),
        HubFile::lfs("sub/weights.bin", FileSpec::generated(2, 100_000)),
        HubFile::lfs("copy/weights.bin", FileSpec::generated(2, 100_000)),
    ]
}

fn repo_of(spec: RepoSpec, files: &[HubFile]) -> RepoSpec {
    files.iter().cloned().fold(spec, |r, f| r.file(f))
}

fn hfd(dir: &Path, hub: &MockHub) -> Command {
    let mut c = hfd_bin(dir);
    c.env("HF_ENDPOINT", hub.endpoint());
    c
}

/// Runs hfd, expecting success; returns its stdout.
fn hfd_ok(dir: &Path, hub: &MockHub, args: &[&str]) -> String {
    let (code, out, err) = run(hfd(dir, hub).args(args));
    assert_eq!(code, 0, "hfd {args:?}: {out}{err}");
    out
}

/// The blob name huggingface_hub gives a file: sha256 for LFS, git sha1 else.
fn etag(f: &HubFile) -> String {
    use sha1::Digest as _;
    if f.lfs {
        return f.spec.sha256_hex();
    }
    let data = match &f.spec.body {
        hfd_testserver::Body::Static(b) => b.to_vec(),
        hfd_testserver::Body::Generated(c) => c.bytes(0..c.len()).to_vec(),
    };
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", data.len()).as_bytes());
    h.update(&data);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of repo files the mock Hub served and the resolve calls it
/// answered.
fn served(hub: &MockHub) -> (u64, usize) {
    (file_bytes_served(hub), hub.resolve_requests().len())
}

/// huggingface_hub's `snapshot_download` of `repo` from `hub` into
/// `cache`, expecting success; returns its output and errors.
fn official_fill(py: &Path, hub: &MockHub, repo: &str, cache: &Path) -> (String, String) {
    let (code, out, err) = run_python(
        py,
        "import sys\nfrom huggingface_hub import snapshot_download\nprint(snapshot_download(sys.argv[1], cache_dir=sys.argv[2]))",
        &[repo, &path_str(cache)],
        &[("HF_ENDPOINT", &hub.endpoint())],
    );
    assert_eq!(code, 0, "{out}{err}");
    (out, err)
}

fn reset(hub: &MockHub) {
    hub.hub().reset_stats();
    hub.cdn().reset_stats();
}

/// What huggingface_hub, offline, makes of a cache: the snapshot
/// `snapshot_download` returns, each file's sha256 read through it, what
/// `try_to_load_from_cache` finds, and `scan_cache_dir`'s report.
const READ_CACHE: &str = r#"
import hashlib, json, os, sys
from huggingface_hub import scan_cache_dir, snapshot_download, try_to_load_from_cache
cache, repo, repo_type, revision = sys.argv[1:5]
files = json.loads(sys.argv[5])
snap = snapshot_download(repo, repo_type=repo_type, revision=revision,
                         cache_dir=cache, local_files_only=True)
out = {"snapshot": snap, "sha256": {}, "cached": {}}
for f in files:
    with open(os.path.join(snap, f), "rb") as fh:
        out["sha256"][f] = hashlib.sha256(fh.read()).hexdigest()
    got = try_to_load_from_cache(repo, f, cache_dir=cache, revision=revision, repo_type=repo_type)
    out["cached"][f] = os.path.realpath(got) if isinstance(got, str) else None
info = scan_cache_dir(cache)
out["warnings"] = [str(w) for w in info.warnings]
out["repos"] = [{"id": r.repo_id, "type": r.repo_type, "size": r.size_on_disk,
                 "revisions": sorted([v.commit_hash, sorted(v.refs), len(v.files)]
                                     for v in r.revisions)} for r in info.repos]
print(json.dumps(out))
"#;

/// Runs `script`, expecting success, and parses its last line as JSON.
fn py_json(py: &Path, script: &str, args: &[&str], env: &[(&str, &str)]) -> Value {
    let (code, out, err) = run_python(py, script, args, env);
    assert_eq!(code, 0, "python failed:\n{out}\n{err}");
    serde_json::from_str(out.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// huggingface_hub, offline, reads `files` of `repo` at `revision` from the
/// cache `cache` byte-exact, finds each with `try_to_load_from_cache` (as
/// the blob its hash names), and returns `scan_cache_dir`'s repos.
fn official_reads(
    py: &Path,
    cache: &Path,
    repo: (&str, &str),
    revision: &str,
    commit: &str,
    files: &[HubFile],
) -> Value {
    let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let v = py_json(
        py,
        READ_CACHE,
        &[
            &path_str(cache),
            repo.0,
            repo.1,
            revision,
            &serde_json::to_string(&names).unwrap(),
        ],
        &[("HF_HUB_OFFLINE", "1")],
    );
    let folder = format!("{}s--{}", repo.1, repo.0.replace('/', "--"));
    let snap = cache.join(&folder).join("snapshots").join(commit);
    assert_eq!(
        PathBuf::from(v["snapshot"].as_str().unwrap()),
        snap.canonicalize().unwrap()
    );
    for f in files {
        assert_eq!(
            v["sha256"][&f.path],
            f.spec.sha256_hex().as_str(),
            "{}",
            f.path
        );
        let blob = cache.join(&folder).join("blobs").join(etag(f));
        assert_eq!(
            v["cached"][&f.path].as_str().map(PathBuf::from),
            Some(blob.canonicalize().unwrap()),
            "{}",
            f.path
        );
    }
    assert_eq!(v["warnings"], Value::Array(vec![]), "{v}");
    v["repos"].clone()
}

/// Sum of the distinct blobs' sizes (what the cache holds on disk).
fn blob_bytes(files: &[HubFile]) -> u64 {
    let mut seen = std::collections::HashSet::new();
    files
        .iter()
        .filter(|f| seen.insert(etag(f)))
        .map(|f| f.spec.len())
        .sum()
}

/// The layout itself: relative links into `blobs/`, blobs that are plain
/// files named by their hash, nothing else under `blobs/`, no partial data
/// left.
fn assert_layout(repo_dir: &Path, commit: &str, files: &[HubFile]) {
    let snap = repo_dir.join("snapshots").join(commit);
    for f in files {
        let depth = f.path.matches('/').count() + 1;
        let want = PathBuf::from(format!("{}blobs/{}", "../".repeat(depth + 1), etag(f)));
        assert_eq!(std::fs::read_link(snap.join(&f.path)).unwrap(), want);
        let blob = repo_dir.join("blobs").join(etag(f));
        assert!(std::fs::symlink_metadata(&blob).unwrap().is_file());
    }
    for b in all_files(&repo_dir.join("blobs")) {
        let hex = b.bytes().all(|c| c.is_ascii_hexdigit());
        assert!(hex && (b.len() == 40 || b.len() == 64), "blobs/{b}");
    }
    assert!(all_files(&repo_dir.join(".hfd/partial")).is_empty());
}

#[test]
fn hfd_fills_a_cache_that_huggingface_hub_reads_and_reruns_fetch_nothing() {
    let hub = MockHub::start();
    let commit = hub.add_repo(repo_of(RepoSpec::model("org/name"), &files()));
    let dir = tempdir();
    let out = hfd_ok(dir.path(), &hub, &["org/name", "--cache-dir", "c"]);
    let last = out.lines().last().unwrap();
    let snap = format!("c/models--org--name/snapshots/{commit}");
    assert!(
        last.starts_with("Done. 6 files") && last.ends_with(&snap),
        "{out}"
    );
    let repo_dir = dir.path().join("c/models--org--name");
    assert_layout(&repo_dir, &commit, &files());
    let mut blobs: Vec<String> = files().iter().map(etag).collect();
    blobs.sort();
    blobs.dedup();
    assert_eq!(blobs.len(), 5);
    assert_eq!(all_files(&repo_dir.join("blobs")), blobs);
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        commit
    );
    // The shared blob was downloaded once.
    assert_eq!(served(&hub).0, blob_bytes(&files()));

    reset(&hub);
    let out = hfd_ok(dir.path(), &hub, &["org/name", "--cache-dir", "c"]);
    assert!(
        out.trim_end()
            .ends_with(&format!("Up to date. 6 files in {snap}")),
        "{out}"
    );
    assert_eq!(served(&hub), (0, 0));
    assert_eq!(hub.hub().requests().len(), 1);

    let Some(py) = python() else { return };
    let cache = dir.path().join("c");
    let repos = official_reads(
        &py,
        &cache,
        ("org/name", "model"),
        "main",
        &commit,
        &files(),
    );
    let want = serde_json::json!([{
        "id": "org/name", "type": "model", "size": blob_bytes(&files()),
        "revisions": [[commit, ["main"], 6]],
    }]);
    assert_eq!(repos, want);

    // Online, huggingface_hub asks for the commit and nothing else: the
    // file list is hfd's trees/<commit>.json, every file is in the snapshot.
    reset(&hub);
    official_fill(&py, &hub, "org/name", &cache);
    assert_eq!(served(&hub), (0, 0));
    let paths: Vec<String> = hub
        .hub()
        .requests()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(paths, ["/api/models/org/name/revision/main"]);
}

#[test]
fn a_cache_huggingface_hub_filled_is_used_as_it_is() {
    let Some(py) = python() else { return };
    let hub = MockHub::start();
    let commit = hub.add_repo(repo_of(RepoSpec::model("org/name"), &files()));
    let dir = tempdir();
    let cache = dir.path().join("c");
    let (out, _) = official_fill(&py, &hub, "org/name", &cache);
    assert!(out.trim_end().ends_with(&commit), "{out}");

    reset(&hub);
    let out = hfd_ok(dir.path(), &hub, &["org/name", "--cache-dir", "c"]);
    assert!(out.contains("Up to date. 6 files"), "{out}");
    assert_eq!(served(&hub), (0, 0), "hfd downloaded what was there");

    // A blob that went missing is the one thing fetched again.
    let big = &files()[3];
    let repo_dir = cache.join("models--org--name");
    std::fs::remove_file(repo_dir.join("blobs").join(etag(big))).unwrap();
    reset(&hub);
    let out = hfd_ok(dir.path(), &hub, &["org/name", "--cache-dir", "c"]);
    assert!(out.contains("Done. 6 files"), "{out}");
    assert_eq!(served(&hub), (big.spec.len(), 1));
    assert_layout(&repo_dir, &commit, &files());
}

/// huggingface_hub 2.x keeps a file it read through hf_xet once per cache
/// (`CACHE/blobs/<h[..2]>/<h>`) and links the repo's blob to it: hfd takes
/// such a blob as it is, hashes it through the link with `--verify`, and
/// when it must fetch one again, replaces the link and never writes into
/// the store.
#[test]
fn a_cache_huggingface_hub_filled_through_xet_is_used_as_it_is() {
    let Some(py) = python() else { return };
    let files = vec![
        HubFile::git("config.json", "{\"hidden\": 64}\n"),
        HubFile::xet("model.safetensors", FileSpec::generated(31, 1 << 20)),
        HubFile::xet("sub/weights.bin", FileSpec::generated(32, 200_000)),
    ];
    let hub = MockHub::start_with_xet();
    let commit = hub.add_repo(repo_of(RepoSpec::model("org/name"), &files));
    let dir = tempdir();
    let big = &files[1];
    // Publishing into its store is best effort in huggingface_hub (a lock
    // or a rename that fails leaves a regular blob, seen under parallel
    // load): a fresh cache each time, three tries at most.
    let mut tries = Vec::new();
    let (name, store) = (0..3)
        .find_map(|i| {
            let name = format!("c{i}");
            let (out, err) = official_fill(&py, &hub, "org/name", &dir.path().join(&name));
            let blob = dir
                .path()
                .join(&name)
                .join("models--org--name/blobs")
                .join(etag(big));
            match std::fs::read_link(&blob) {
                Ok(store) => Some((name, store)),
                Err(e) => {
                    tries.push(format!("{e}:\n{out}\n{err}"));
                    None
                }
            }
        })
        .unwrap_or_else(|| {
            panic!("huggingface_hub never linked the blob to its store: {tries:#?}")
        });
    let name = name.as_str();
    let repo_dir = dir.path().join(name).join("models--org--name");
    let blob = repo_dir.join("blobs").join(etag(big));
    assert!(store.starts_with("../../blobs"), "{}", store.display());
    let store = repo_dir.join("blobs").join(store);
    let xet_reads =
        |hub: &MockHub| hub.xet().cas().requests().len() + hub.xet().transfer().requests().len();
    assert!(xet_reads(&hub) > 0, "the official client read Xet");

    let reset_all = |hub: &MockHub| {
        reset(hub);
        hub.xet().cas().reset_stats();
        hub.xet().transfer().reset_stats();
    };
    reset_all(&hub);
    let out = hfd_ok(dir.path(), &hub, &["org/name", "--cache-dir", name]);
    assert!(out.contains("Up to date. 3 files"), "{out}");
    assert_eq!(served(&hub), (0, 0), "hfd downloaded what was there");
    assert_eq!(xet_reads(&hub), 0);
    let out = hfd_ok(
        dir.path(),
        &hub,
        &["org/name", "--cache-dir", name, "--verify"],
    );
    assert!(out.contains("Up to date. 3 files"), "{out}");
    assert_eq!(xet_reads(&hub) + served(&hub).1, 0);

    // Bit rot in the store: --verify fetches the file again into a blob of
    // hfd's own; the store keeps what it had.
    let mut bytes = std::fs::read(&store).unwrap();
    bytes[500] ^= 0xff;
    std::fs::write(&store, &bytes).unwrap();
    let out = hfd_ok(
        dir.path(),
        &hub,
        &["org/name", "--cache-dir", name, "--verify"],
    );
    assert!(out.contains("Done. 3 files"), "{out}");
    assert!(!std::fs::symlink_metadata(&blob).unwrap().is_symlink());
    assert_eq!(sha256_file(&blob), big.spec.sha256_hex());
    assert_eq!(
        std::fs::read(&store).unwrap(),
        bytes,
        "hfd wrote into the store"
    );
    let snap = repo_dir.join("snapshots").join(&commit);
    for f in &files {
        assert_eq!(
            sha256_file(&snap.join(&f.path)),
            f.spec.sha256_hex(),
            "{}",
            f.path
        );
    }
}

#[test]
fn tags_commits_and_pull_requests_share_blobs() {
    let hub = MockHub::start();
    let main = hub.add_repo(repo_of(RepoSpec::model("org/name"), &files()));
    let new_readme = HubFile::git("README.md", "# v1\n");
    let tag = hub.push("org/name", "v1.0", vec![new_readme.clone()], &[]);
    let new_model = HubFile::lfs("model.safetensors", FileSpec::generated(9, 200_000));
    let pr = hub.push("org/name", "refs/pr/1", vec![new_model.clone()], &[]);
    let dir = tempdir();
    hfd_ok(dir.path(), &hub, &["org/name", "--cache-dir", "c"]);

    // Each revision downloads only what differs from the blobs already here.
    for (rev, changed) in [("refs/pr/1", &new_model), ("v1.0", &new_readme)] {
        reset(&hub);
        let out = hfd_ok(
            dir.path(),
            &hub,
            &["org/name", "--cache-dir", "c", "--revision", rev],
        );
        assert!(out.contains("Done. 6 files"), "{rev}: {out}");
        assert_eq!(served(&hub), (changed.spec.len(), 1), "{rev}");
    }
    reset(&hub);
    let out = hfd_ok(
        dir.path(),
        &hub,
        &["org/name", "--cache-dir", "c", "--revision", &main],
    );
    assert!(out.contains("Up to date. 6 files"), "{out}");
    assert_eq!(served(&hub), (0, 0));

    let repo_dir = dir.path().join("c/models--org--name");
    let read = |p: &str| std::fs::read_to_string(repo_dir.join(p)).unwrap();
    assert_eq!(read("refs/main"), main);
    assert_eq!(read("refs/v1.0"), tag);
    assert_eq!(read("refs/refs/pr/1"), pr);
    assert_eq!(
        all_files(&repo_dir.join("refs")).len(),
        3,
        "a ref for the commit id"
    );
    let with = |f: &HubFile| {
        let mut v = files();
        v.retain(|x| x.path != f.path);
        v.push(f.clone());
        v
    };
    assert_layout(&repo_dir, &pr, &with(&new_model));

    let Some(py) = python() else { return };
    let cache = dir.path().join("c");
    let id = ("org/name", "model");
    official_reads(&py, &cache, id, "v1.0", &tag, &with(&new_readme));
    official_reads(&py, &cache, id, &main, &main, &files());
    let repos = official_reads(&py, &cache, id, "refs/pr/1", &pr, &with(&new_model));
    let mut all = files();
    all.push(new_readme);
    all.push(new_model);
    let mut revisions = vec![
        serde_json::json!([main, ["main"], 6]),
        serde_json::json!([tag, ["v1.0"], 6]),
        serde_json::json!([pr, ["refs/pr/1"], 6]),
    ];
    revisions.sort_by_key(|v| v[0].as_str().unwrap().to_string());
    assert_eq!(repos[0]["size"], blob_bytes(&all));
    assert_eq!(repos[0]["revisions"], Value::Array(revisions));
}

#[test]
fn datasets_and_gated_repos_go_to_their_cache_folders() {
    let hub = MockHub::start();
    hub.set_token("hf_cachetoken");
    let data = vec![
        HubFile::git("README.md", "# data\n"),
        HubFile::lfs("data/train.parquet", FileSpec::generated(5, 300_000)),
    ];
    let dcommit = hub.add_repo(repo_of(RepoSpec::dataset("org/data"), &data));
    let gcommit = hub.add_repo(repo_of(RepoSpec::model("org/gated").gated("manual"), &data));
    let dir = tempdir();
    let out = hfd_ok(
        dir.path(),
        &hub,
        &["org/data", "--dataset", "--cache-dir", "c"],
    );
    assert!(
        out.contains(&format!("datasets--org--data/snapshots/{dcommit}")),
        "{out}"
    );
    let (code, out, err) = run(hfd(dir.path(), &hub).args(["org/gated", "--cache-dir", "c"]));
    assert_eq!(code, 1, "a gated repo without a token: {out}{err}");
    let out = hfd_ok(
        dir.path(),
        &hub,
        &[
            "org/gated",
            "--cache-dir",
            "c",
            "--hf_token",
            "hf_cachetoken",
        ],
    );
    assert!(out.contains("Done. 2 files"), "{out}");
    let cache = dir.path().join("c");
    assert_layout(&cache.join("datasets--org--data"), &dcommit, &data);
    assert_layout(&cache.join("models--org--gated"), &gcommit, &data);
    for p in all_files(&cache) {
        let bytes = std::fs::read(cache.join(&p)).unwrap_or_default();
        assert!(
            !bytes.windows(13).any(|w| w == b"hf_cachetoken"),
            "the token is in {p}"
        );
    }

    let Some(py) = python() else { return };
    let repos = official_reads(
        &py,
        &cache,
        ("org/data", "dataset"),
        "main",
        &dcommit,
        &data,
    );
    let types: Vec<&str> = repos
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.len(), 2);
    assert!(
        types.contains(&"dataset") && types.contains(&"model"),
        "{types:?}"
    );
}

#[test]
fn cache_and_local_dir_together_is_a_clear_error() {
    let watch = TestServer::start();
    let dir = tempdir();
    for (args, flag) in [
        (
            &["org/name", "--cache-dir", "c", "--local-dir", "l"][..],
            "--cache-dir",
        ),
        (&["org/name", "--local-dir", "l", "--cache"], "--cache "),
    ] {
        let mut c = hfd_bin(dir.path());
        c.env("HF_ENDPOINT", watch.base_url()).env("HF_HOME", "h");
        let (code, out, err) = run(c.args(args));
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(
            err.contains("--local-dir") && err.contains(flag),
            "{args:?}: {err}"
        );
    }
    assert!(all_files(dir.path()).is_empty(), "files were created");
    assert_eq!(watch.stats().requests, 0, "the endpoint was contacted");
}

#[test]
fn include_exclude_and_help_in_the_cache() {
    let hub = MockHub::start();
    let commit = hub.add_repo(repo_of(RepoSpec::model("org/name"), &files()));
    let dir = tempdir();
    let args = [
        "org/name",
        "--cache-dir",
        "c",
        "--include",
        "*.json",
        "sub/*",
        "--exclude",
        "*.txt",
    ];
    let out = hfd_ok(dir.path(), &hub, &args);
    assert!(out.contains("Done. 2 files"), "{out}");
    let repo_dir = dir.path().join("c/models--org--name");
    let kept: Vec<HubFile> = files()
        .into_iter()
        .filter(|f| f.path == "config.json" || f.path == "sub/weights.bin")
        .collect();
    assert_layout(&repo_dir, &commit, &kept);
    let snap = repo_dir.join("snapshots").join(&commit);
    assert_eq!(all_files(&snap), ["config.json", "sub/weights.bin"]);
    assert_eq!(served(&hub).0, blob_bytes(&kept));
    // The rest later: only what is missing, and copy/weights.bin shares a blob.
    reset(&hub);
    let out = hfd_ok(dir.path(), &hub, &["org/name", "--cache-dir", "c"]);
    assert!(out.contains("Done. 6 files"), "{out}");
    assert_eq!(served(&hub).0, blob_bytes(&files()) - blob_bytes(&kept));
    assert_layout(&repo_dir, &commit, &files());

    let (code, help, _) = run(hfd_bin(dir.path()).arg("--help"));
    assert_eq!(code, 0);
    assert!(
        help.contains("--cache-dir <DIR>") && help.contains("hfd gpt2 --cache "),
        "{help}"
    );
}

/// A dry run's table: (state, path) per file, and its total line.
fn dry_run(dir: &Path, hub: &MockHub) -> (Vec<(String, String)>, String) {
    let out = hfd_ok(dir, hub, &["org/name", "--cache-dir", "c", "--dry-run"]);
    let mut rows: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().skip(1).collect();
            match words.as_slice() {
                ["up", "to", "date", p] => Some(("up to date".into(), p.to_string())),
                ["download", p] => Some(("download".into(), p.to_string())),
                _ => None,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.1.cmp(&b.1));
    let total = out.lines().find(|l| l.contains("in total")).unwrap_or("");
    (rows, total.to_string())
}

/// Every file under `dir` (links as links) with what it holds or points to.
fn tree(dir: &Path) -> Vec<(String, String)> {
    all_files(dir)
        .into_iter()
        .map(|rel| {
            let p = dir.join(&rel);
            let what = match std::fs::read_link(&p) {
                Ok(to) => format!("-> {}", to.display()),
                Err(_) => sha256_file(&p),
            };
            (rel, what)
        })
        .collect()
}

#[test]
fn a_dry_run_into_the_cache_says_what_is_missing_and_writes_nothing() {
    let hub = MockHub::start();
    hub.add_repo(repo_of(RepoSpec::model("org/name"), &files()));
    let dir = tempdir();
    let cache = dir.path().join("c");
    // An empty cache: all six would come (the two paths that share a blob
    // are both listed, their bytes counted once); not even the cache dir is
    // created.
    let (rows, total) = dry_run(dir.path(), &hub);
    let mut all: Vec<(String, String)> = files()
        .iter()
        .map(|f| ("download".to_string(), f.path.clone()))
        .collect();
    all.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(rows, all);
    assert!(total.contains("6 of 6 files"), "{total}");
    assert!(!cache.exists(), "a dry run created the cache");
    assert_eq!(served(&hub), (0, 0));

    // Part of it in the cache: the rest would come, and a dry run leaves
    // every blob, link, ref and state file as it was.
    hfd_ok(
        dir.path(),
        &hub,
        &[
            "org/name",
            "--cache-dir",
            "c",
            "--include",
            "*.json",
            "sub/*",
        ],
    );
    let before = tree(&cache);
    reset(&hub);
    let (rows, total) = dry_run(dir.path(), &hub);
    let here = [
        "config.json",
        "copy/weights.bin",
        "sub/dir/notes.txt",
        "sub/weights.bin",
    ];
    let want: Vec<(String, String)> = all
        .iter()
        .map(|(_, p)| {
            let s = if here.contains(&p.as_str()) {
                "up to date"
            } else {
                "download"
            };
            (s.to_string(), p.clone())
        })
        .collect();
    assert_eq!(rows, want);
    assert!(total.contains("2 of 6 files"), "{total}");
    assert_eq!(tree(&cache), before, "a dry run changed the cache");
    assert_eq!(served(&hub), (0, 0));
}

/// Two paths with one blob, the download killed part-way: the re-run
/// resumes the blob's partial data instead of tidying it away as the
/// leftover of a file that is "done" (it was not: it came with its twin).
#[test]
fn a_blob_two_paths_share_resumes_after_a_kill() {
    const SIZE: u64 = 4 << 20;
    let hub = MockHub::start();
    let spec = FileSpec::generated(9, SIZE).throttle(1 << 20);
    hub.add_repo(
        RepoSpec::model("org/twins")
            .file(HubFile::lfs("a.bin", spec.clone()))
            .file(HubFile::lfs("b/a.bin", spec.clone())),
    );
    let dir = tempdir();
    let args = ["org/twins", "--cache-dir", "c", "-x", "1", "-j", "1"];
    let mut child = hfd(dir.path(), &hub)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_progress(&mut child, "the download", || {
        hub.cdn().stats().bytes_served >= SIZE * 5 / 8
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let first = hub.cdn().stats().bytes_served;
    assert!(
        (SIZE * 5 / 8..SIZE).contains(&first),
        "killed after {first} bytes"
    );

    // What was written up to the last checkpoint (once a second) is kept:
    // at 1 MiB/s, at least a quarter of the file.
    reset(&hub);
    let out = hfd_ok(dir.path(), &hub, &["org/twins", "--cache-dir", "c"]);
    assert!(out.contains("Done. 2 files"), "{out}");
    let again = hub.cdn().stats().bytes_served;
    assert!(
        again <= SIZE * 7 / 8,
        "the re-run fetched {again} of {SIZE} bytes after {first} had come"
    );
    let snap = std::fs::read_dir(dir.path().join("c/models--org--twins/snapshots"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for p in ["a.bin", "b/a.bin"] {
        assert_eq!(sha256_file(&snap.join(p)), spec.sha256_hex(), "{p}");
    }
}

#[test]
fn blobs_are_trusted_by_name_and_verify_hashes_them() {
    let hub = MockHub::start();
    let commit = hub.add_repo(repo_of(RepoSpec::model("org/name"), &files()));
    let dir = tempdir();
    hfd_ok(dir.path(), &hub, &["org/name", "--cache-dir", "c"]);
    // Bit rot in a blob: same size, other bytes.
    let big = &files()[3];
    let repo_dir = dir.path().join("c/models--org--name");
    let blob = repo_dir.join("blobs").join(etag(big));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    reset(&hub);
    let out = hfd_ok(dir.path(), &hub, &["org/name", "--cache-dir", "c"]);
    assert!(
        out.contains("Up to date"),
        "a blob's name is its verified hash: {out}"
    );
    assert_eq!(served(&hub), (0, 0));
    let out = hfd_ok(
        dir.path(),
        &hub,
        &["org/name", "--cache-dir", "c", "--verify"],
    );
    assert!(out.contains("Done. 6 files"), "{out}");
    assert_eq!(served(&hub), (big.spec.len(), 1));
    assert_eq!(sha256_file(&blob), big.spec.sha256_hex());
    assert_layout(&repo_dir, &commit, &files());
}

#[test]
fn links_planted_in_the_cache_are_refused_not_written_through() {
    let hub = MockHub::start();
    hub.add_repo(repo_of(RepoSpec::model("org/name"), &files()));
    let dir = tempdir();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let repo_dir = dir.path().join("c/models--org--name");
    std::fs::create_dir_all(&repo_dir).unwrap();
    std::os::unix::fs::symlink(&outside, repo_dir.join("blobs")).unwrap();
    let (code, out, err) = run(hfd(dir.path(), &hub).args(["org/name", "--cache-dir", "c"]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("link"), "{err}");
    assert!(all_files(&outside).is_empty(), "written through the link");
    assert_eq!(served(&hub), (0, 0));
}

#[test]
fn cache_flag_uses_hf_hub_cache() {
    let hub = MockHub::start();
    let commit = hub.add_repo(repo_of(RepoSpec::model("org/name"), &files()[..2]));
    let dir = tempdir();
    let mut c = hfd(dir.path(), &hub);
    c.env("HF_HUB_CACHE", dir.path().join("hubcache"))
        .env("HF_HOME", "elsewhere");
    let (code, out, err) = run(c.args(["org/name", "--cache"]));
    assert_eq!(code, 0, "{out}{err}");
    assert_layout(
        &dir.path().join("hubcache/models--org--name"),
        &commit,
        &files()[..2],
    );
    assert!(!dir.path().join("elsewhere").exists());
}

/// huggingface_hub's `snapshot_download(local_dir=...)`, online; prints
/// the folder.
const LOCAL_DIR_DOWNLOAD: &str = r#"
import sys
from huggingface_hub import snapshot_download
print(snapshot_download(sys.argv[1], local_dir=sys.argv[2], cache_dir=sys.argv[3]))
"#;

#[test]
fn local_dir_records_work_both_ways() {
    let Some(py) = python() else { return };
    let hub = MockHub::start();
    let commit = hub.add_repo(repo_of(RepoSpec::model("org/name"), &files()));
    let dir = tempdir();
    let env = [("HF_ENDPOINT", hub.endpoint())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let official = |local: &str| {
        let (code, out, err) = run_python(
            &py,
            LOCAL_DIR_DOWNLOAD,
            &[
                "org/name",
                &path_str(&dir.path().join(local)),
                &path_str(&dir.path().join("unused-cache")),
            ],
            &env,
        );
        assert_eq!(code, 0, "{out}{err}");
    };

    // hfd first: the official client then transfers nothing.
    hfd_ok(dir.path(), &hub, &["org/name", "--local-dir", "l"]);
    let meta = std::fs::read_to_string(
        dir.path()
            .join("l/.cache/huggingface/download/sub/weights.bin.metadata"),
    )
    .unwrap();
    let lines: Vec<&str> = meta.lines().collect();
    assert_eq!(lines[..2], [commit.as_str(), etag(&files()[4]).as_str()]);
    assert!(lines[2].parse::<f64>().is_ok(), "{meta}");
    reset(&hub);
    official("l");
    assert_eq!(served(&hub), (0, 0), "huggingface_hub downloaded again");
    // hfd's trees/<commit>.json served as the file list.
    let paths: Vec<String> = hub
        .hub()
        .requests()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert!(paths.iter().all(|p| !p.contains("/tree/")), "{paths:?}");
    for f in files() {
        assert_eq!(
            sha256_file(&dir.path().join("l").join(&f.path)),
            f.spec.sha256_hex()
        );
    }

    // The official client first: hfd hashes its files and takes them.
    official("m");
    reset(&hub);
    let out = hfd_ok(dir.path(), &hub, &["org/name", "--local-dir", "m"]);
    assert!(out.contains("Up to date. 6 files"), "{out}");
    assert_eq!(served(&hub), (0, 0), "hfd downloaded again");
    // ... and what hfd leaves, the official client still takes as current.
    reset(&hub);
    official("m");
    assert_eq!(served(&hub), (0, 0));
}
