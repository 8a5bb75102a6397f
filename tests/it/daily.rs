//! Issue 21's everyday pieces, through the real `hfd` binary: a bare `hfd`,
//! hfd.sh's words for a gated repo, `--dry-run`, `--verify-origin`.

use std::path::Path;
use std::process::Command;

use hfd_testserver::hub::{HubFile, MockHub, RepoSpec};

use crate::support::*;

fn files() -> Vec<HubFile> {
    vec![
        HubFile::git("README.md", "# readme\n"),
        HubFile::git("config.json", "{\"hidden\": 64}\n"),
        HubFile::lfs("model.safetensors", FileSpec::generated(1, 1 << 20)),
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

#[test]
fn bare_hfd_prints_the_usage_with_its_options_and_exits_1() {
    let dir = tempdir();
    let (code, out, err) = run(&mut bare_bin(env!("CARGO_BIN_EXE_hfd"), dir.path()));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "the usage goes to stderr: {out}");
    for want in [
        "Usage:",
        "REPO_ID",
        "--include",
        "--hf_token",
        "--revision",
        "-x",
        "Examples:",
    ] {
        assert!(err.contains(want), "{want} missing from:\n{err}");
    }
    assert!(err.lines().count() > 20, "not the whole usage:\n{err}");
    assert!(all_files(dir.path()).is_empty());
}

#[test]
fn a_gated_repo_without_a_token_requires_authentication_in_hfd_sh_words() {
    let hub = MockHub::start();
    hub.set_token("hf_good");
    hub.add_repo(repo("org/gated").gated("auto"));
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path(), &hub).arg("org/gated"));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("requires authentication"), "{err}");
    // The advice stays.
    assert!(
        err.contains("--hf_token") && err.contains("HF_TOKEN") && err.contains("terms"),
        "{err}"
    );
    assert!(hub.resolve_requests().is_empty());
    assert!(hub.cdn().requests().is_empty());
}

/// No file byte left either server: no resolve, nothing from the resolve
/// cache (git files) or the CDN (LFS files).
fn assert_no_file_bytes(hub: &MockHub) {
    let file_reqs: Vec<String> = hub
        .hub()
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/resolve"))
        .map(|r| r.uri)
        .collect();
    assert!(
        file_reqs.is_empty(),
        "file requests to the hub: {file_reqs:?}"
    );
    assert!(hub.cdn().requests().is_empty());
    assert_eq!(hub.cdn().stats().bytes_served, 0);
}

/// The lines of a dry run's table: (state, path).
fn planned(out: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let _size = words.next()?;
            let rest: Vec<&str> = words.collect();
            match rest.as_slice() {
                ["up", "to", "date", path] => Some(("up to date".into(), path.to_string())),
                ["download", path] => Some(("download".into(), path.to_string())),
                _ => None,
            }
        })
        .collect();
    v.sort_by(|a, b| a.1.cmp(&b.1));
    v
}

fn total_line(out: &str) -> String {
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("total")).collect();
    assert_eq!(lines.len(), 1, "one total line expected: {out}");
    lines[0].to_string()
}

/// Every file under `dir` with its content, `.hfd/` included.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    all_files(dir)
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(dir.join(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

#[test]
fn dry_run_lists_sizes_states_and_the_total_and_fetches_and_writes_nothing() {
    let hub = MockHub::start();
    hub.add_repo(repo("org/name"));
    let dir = tempdir();
    // Nothing here yet: everything would be downloaded; not even the local
    // dir is created.
    let (code, out, err) = run(hfd(dir.path(), &hub).args(["org/name", "--dry-run"]));
    assert_eq!(code, 0, "{out}{err}");
    let all: Vec<(String, String)> = {
        let mut v: Vec<_> = files()
            .iter()
            .map(|f| ("download".to_string(), f.path.clone()))
            .collect();
        v.sort_by(|a, b| a.1.cmp(&b.1));
        v
    };
    assert_eq!(planned(&out), all, "{out}");
    assert!(total_line(&out).contains("4 of 4 files"), "{out}");
    assert!(out.contains("1.05MB"), "sizes are shown: {out}");
    assert!(
        all_files(dir.path()).is_empty(),
        "{:?}",
        all_files(dir.path())
    );
    assert!(!dir.path().join("name").exists());
    assert_no_file_bytes(&hub);

    // After a real run, with one file changed by hand (same size) and one
    // removed: only those two would be fetched.
    let (code, out, err) = run(hfd(dir.path(), &hub).arg("org/name"));
    assert_eq!(code, 0, "{out}{err}");
    let local = dir.path().join("name");
    std::fs::write(local.join("README.md"), "# README\n").unwrap();
    std::fs::remove_file(local.join("sub/weights.bin")).unwrap();
    let before = snapshot(&local);
    hub.hub().reset_stats();
    hub.cdn().reset_stats();
    let (code, out, err) = run(hfd(dir.path(), &hub).args(["org/name", "--dry-run"]));
    assert_eq!(code, 0, "{out}{err}");
    let want: Vec<(String, String)> = [
        ("download", "README.md"),
        ("up to date", "config.json"),
        ("up to date", "model.safetensors"),
        ("download", "sub/weights.bin"),
    ]
    .iter()
    .map(|(s, p)| (s.to_string(), p.to_string()))
    .collect();
    assert_eq!(planned(&out), want, "{out}");
    let total = total_line(&out);
    // 9 + 100,000 bytes.
    assert!(
        total.contains("2 of 4 files") && total.contains("100.01KB"),
        "{total}"
    );
    assert_eq!(snapshot(&local), before, "a dry run changed the local dir");
    assert_no_file_bytes(&hub);
    // The real run agrees: it fetches exactly those two.
    let (code, out, err) = run(hfd(dir.path(), &hub).arg("org/name"));
    assert_eq!(code, 0, "{out}{err}");
    let fetched: Vec<String> = hub
        .resolve_requests()
        .into_iter()
        .map(|r| r.path.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(fetched.len(), 2, "{fetched:?}");
}

#[test]
fn dry_run_follows_include_exclude_and_revision() {
    let hub = MockHub::start();
    hub.add_repo(repo("org/name"));
    hub.push(
        "org/name",
        "dev",
        vec![HubFile::git("extra.json", "{}\n")],
        &["README.md"],
    );
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path(), &hub).args([
        "org/name",
        "--dry-run",
        "--include",
        "*.json",
        "*.bin",
        "--exclude",
        "sub",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        planned(&out),
        [("download".to_string(), "config.json".to_string())],
        "{out}"
    );
    assert!(total_line(&out).contains("1 of 1 file"), "{out}");
    let (code, out, err) = run(hfd(dir.path(), &hub).args([
        "org/name",
        "--dry-run",
        "--revision",
        "dev",
        "--include",
        "*.json",
        "README",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    let paths: Vec<String> = planned(&out).into_iter().map(|(_, p)| p).collect();
    assert_eq!(paths, ["config.json", "extra.json"], "{out}");
    assert!(out.contains("(dev)"), "{out}");
    assert!(all_files(dir.path()).is_empty());
    assert_no_file_bytes(&hub);
}

const TOKEN: &str = "hf_OriginToken0123456789";

/// A hub whose commit ids are made from `salt` (two hubs with the same
/// salt and repos name the same commits, as a mirror relaying the Hub).
fn hub_with(salt: &str, files: Vec<HubFile>) -> MockHub {
    let hub = MockHub::start();
    hub.set_commit_salt(salt);
    hub.add_repo(
        files
            .into_iter()
            .fold(RepoSpec::model("org/name"), |r, f| r.file(f)),
    );
    hub
}

/// `files()` with the LFS weights altered (same size, other bytes).
fn altered() -> Vec<HubFile> {
    files()
        .into_iter()
        .map(|f| {
            if f.path == "model.safetensors" {
                HubFile::lfs(f.path, FileSpec::generated(99, 1 << 20))
            } else {
                f
            }
        })
        .collect()
}

/// The origin answered API calls only, each with the token; nothing of
/// its storage was asked for.
fn origin_listed_only(origin: &MockHub) {
    let reqs = origin.hub().requests();
    assert!(!reqs.is_empty(), "the origin was not asked");
    let bearer = format!("Bearer {TOKEN}");
    for r in &reqs {
        assert!(
            r.path.starts_with("/api/") && !r.path.contains("resolve"),
            "{}",
            r.uri
        );
        assert_eq!(
            r.header("authorization"),
            Some(bearer.as_str()),
            "{}",
            r.uri
        );
    }
    assert!(origin.cdn().requests().is_empty());
    assert_eq!(origin.cdn().stats().bytes_served, 0);
}

#[test]
fn verify_origin_refuses_a_file_the_mirror_altered_by_name() {
    let origin = hub_with("relayed", files());
    let mirror = hub_with("relayed", altered());
    assert_eq!(
        origin.commit_of("org/name", "main"),
        mirror.commit_of("org/name", "main")
    );
    let dir = tempdir();
    // The mirror agrees with itself: without the origin the altered file passes.
    let mut c = hfd_bin(dir.path());
    c.env("HF_ENDPOINT", mirror.endpoint())
        .env("HF_TOKEN", TOKEN);
    let (code, out, err) = run(c.args(["org/name", "--local-dir", "trusting"]));
    assert_eq!(code, 0, "{out}{err}");
    mirror.hub().reset_stats();
    mirror.cdn().reset_stats();

    let mut c = hfd_bin(dir.path());
    c.env("HF_ENDPOINT", mirror.endpoint())
        .env("HF_TOKEN", TOKEN);
    let origin_flag = format!("--verify-origin={}", origin.endpoint());
    let (code, out, err) = run(c.args(["org/name", &origin_flag]));
    assert_eq!(code, 1, "{out}{err}");
    let refusal: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("model.safetensors") && l.contains("does not match the origin"))
        .collect();
    assert_eq!(refusal.len(), 1, "{err}");
    assert!(out.contains("Download incomplete"), "{out}");
    let local = dir.path().join("name");
    assert!(!local.join("model.safetensors").exists());
    // The other files came from the mirror and match the origin.
    for f in files().iter().filter(|f| f.path != "model.safetensors") {
        assert_eq!(
            sha256_file(&local.join(&f.path)),
            f.spec.sha256_hex(),
            "{}",
            f.path
        );
    }
    origin_listed_only(&origin);
    assert!(
        !mirror.cdn().requests().is_empty(),
        "the bytes come from the mirror"
    );
    for r in mirror.cdn().requests() {
        assert!(
            r.header("authorization").is_none(),
            "token to the mirror's CDN"
        );
    }
    // A mirror serving the origin's bytes passes, and a re-run is up to date.
    let good = hub_with("relayed", files());
    let mut c = hfd_bin(dir.path());
    c.env("HF_ENDPOINT", good.endpoint()).env("HF_TOKEN", TOKEN);
    let (code, out, err) = run(c.args(["org/name", &origin_flag]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("hashes from"), "{out}");
    let weights = &files()[2];
    assert_eq!(
        sha256_file(&local.join("model.safetensors")),
        weights.spec.sha256_hex()
    );
}

#[test]
fn verify_origin_names_a_mirror_serving_another_commit() {
    let origin = hub_with("hub", files());
    let stale = hub_with("stale mirror", files());
    assert_ne!(
        origin.commit_of("org/name", "main"),
        stale.commit_of("org/name", "main")
    );
    let dir = tempdir();
    let mut c = hfd_bin(dir.path());
    c.env("HF_TOKEN", TOKEN);
    let (code, out, err) = run(c.args([
        "org/name",
        "--endpoint",
        &stale.endpoint(),
        "--verify-origin",
        &origin.endpoint(),
    ]));
    assert_eq!(code, 1, "{out}{err}");
    let line = err
        .lines()
        .find(|l| l.contains("commit"))
        .unwrap_or_default();
    assert!(
        line.contains(&stale.endpoint()) && line.contains("origin"),
        "{err}"
    );
    assert!(stale.resolve_requests().is_empty());
    assert!(stale.cdn().requests().is_empty());
    origin_listed_only(&origin);
    assert!(!dir.path().join("name").join("README.md").exists());

    // --bench with the origin: the stale mirror is named, not measured.
    let good = hub_with("hub", files());
    let mut c = hfd_bin(dir.path());
    c.env("HF_TOKEN", TOKEN);
    let origin_flag = format!("--verify-origin={}", origin.endpoint());
    let (code, out, err) = run(c.args([
        "org/name",
        "--bench",
        "--json",
        "--seconds",
        "0.2",
        "--endpoint",
        &stale.endpoint(),
        "--endpoint",
        &good.endpoint(),
        &origin_flag,
    ]));
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = v["results"].as_array().unwrap();
    let row = |ep: &str| {
        rows.iter()
            .find(|r| r.to_string().contains(ep))
            .unwrap()
            .clone()
    };
    let stale_row = row(&stale.endpoint());
    assert!(
        stale_row["error"].as_str().unwrap().contains("origin"),
        "{stale_row}"
    );
    assert!(row(&good.endpoint())["error"].is_null());
    assert!(
        stale.cdn().requests().is_empty(),
        "the stale mirror was measured"
    );
    origin_listed_only(&origin);
}

#[test]
fn verify_origin_goes_through_the_proxy_like_every_request() {
    use hfd_testserver::proxy::{HttpProxy, HttpProxyOptions};
    let origin = hub_with("relayed", files());
    let mirror = hub_with("relayed", files());
    let proxy = HttpProxy::start(HttpProxyOptions::default()).unwrap();
    let dir = tempdir();
    let mut c = hfd_bin(dir.path());
    c.env("HF_ENDPOINT", mirror.endpoint())
        .env("HF_TOKEN", TOKEN);
    let origin_flag = format!("--verify-origin={}", origin.endpoint());
    let (code, out, err) = run(c.args(["org/name", &origin_flag, "--all-proxy", &proxy.url()]));
    assert_eq!(code, 0, "{out}{err}");
    let via: Vec<String> = proxy.requests().into_iter().map(|r| r.target).collect();
    let origin_api = format!("{}/api/", origin.endpoint());
    assert!(via.iter().any(|t| t.starts_with(&origin_api)), "{via:?}");
    // Every request the origin saw came through the proxy.
    assert_eq!(
        origin.hub().requests().len(),
        via.iter().filter(|t| t.starts_with(&origin_api)).count()
    );
    assert!(
        via.iter().any(|t| t.starts_with(&mirror.endpoint())),
        "{via:?}"
    );
    origin_listed_only(&origin);
}

#[test]
fn a_hub_whose_signed_urls_serve_one_request_each_does_not_fail_hfd() {
    let hub = MockHub::start();
    hub.set_url_uses(Some(1));
    // 4 MiB over 2 connections of 512 KiB/s: about a second's worth per
    // request, each needing a fresh URL until the ranges grow.
    let f = HubFile::lfs(
        "w.bin",
        FileSpec::generated(31, 4 << 20).throttle(512 << 10),
    );
    hub.add_repo(RepoSpec::model("org/resign").file(f.clone()));
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path(), &hub).args(["org/resign", "-x", "2"]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        sha256_file(&dir.path().join("resign/w.bin")),
        f.spec.sha256_hex()
    );
    let expired = hub
        .cdn()
        .requests()
        .iter()
        .filter(|r| r.status == 403)
        .count();
    assert!(expired > 0, "no URL expired");
    assert!(hub.resolve_requests().len() >= 2);
}
