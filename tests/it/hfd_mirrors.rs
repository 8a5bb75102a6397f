//! `hfd` with several Hub endpoints: `--bench` measurements, and downloads
//! that fetch every file from all endpoints at once. Two mock Hubs stand for
//! the Hub and a mirror: same commits (as a relaying mirror names them),
//! different CDNs (other per-connection throttles, other CDN ETags).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hfd_testserver::Reply;
use hfd_testserver::hub::{HubFile, MockHub, RepoSpec};
use serde_json::Value;

use crate::support::*;

const REPO: &str = "org/m";
const TOKEN: &str = "hf_mirrors_token";

/// An LFS file whose CDN copy is throttled per connection and carries an
/// ETag of that CDN's own (two CDNs never agree on ETags).
fn lfs(path: &str, seed: u64, len: u64, throttle: u64, cdn: &str) -> HubFile {
    HubFile::lfs(
        path,
        FileSpec::generated(seed, len)
            .throttle(throttle)
            .etag(format!("\"{cdn}-{seed}\"")),
    )
}

fn git_files() -> Vec<HubFile> {
    vec![
        HubFile::git("README.md", "# m\n"),
        HubFile::git("config.json", "{\"hidden\": 64}\n"),
    ]
}

/// A mock Hub serving `files` as `org/m`, with commit ids shared by every
/// hub built here and a token that every request may carry.
fn hub(files: Vec<HubFile>) -> MockHub {
    let h = MockHub::start();
    h.set_commit_salt("hfd-mirrors");
    h.set_token(TOKEN);
    h.add_repo(
        files
            .into_iter()
            .fold(RepoSpec::model(REPO), |r, f| r.file(f)),
    );
    h
}

fn hfd(dir: &Path) -> Command {
    let mut c = hfd_bin(dir);
    c.args([REPO, "--hf_token", TOKEN]);
    c
}

/// Body bytes a hub sent, the API and git files included.
fn served(h: &MockHub) -> u64 {
    h.hub()
        .requests()
        .iter()
        .chain(h.cdn().requests().iter())
        .map(|r| r.body_bytes)
        .sum()
}

/// The token reached this hub's own server and never its CDN.
fn token_stayed_home(h: &MockHub) {
    let bearer = format!("Bearer {TOKEN}");
    assert!(
        h.hub()
            .requests()
            .iter()
            .any(|r| r.header("authorization") == Some(bearer.as_str())),
        "the endpoint got the token"
    );
    for r in h.cdn().requests() {
        assert!(
            r.header("authorization").is_none(),
            "the token reached the CDN: {}",
            r.uri
        );
    }
}

fn assert_files(dir: &Path, files: &[HubFile]) {
    for f in files {
        assert_eq!(
            sha256_file(&dir.join(&f.path)),
            f.spec.sha256_hex(),
            "{} has the wrong content",
            f.path
        );
    }
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn row<'a>(v: &'a Value, source: &str) -> &'a Value {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["source"] == source)
        .unwrap_or_else(|| panic!("no row for {source}: {v}"))
}

#[test]
fn bench_names_the_faster_endpoint_and_writes_nothing() {
    let big = 32 << 20;
    let files = |throttle: u64, cdn: &str| {
        let mut v = git_files();
        v.push(lfs("model.safetensors", 1, big, throttle, cdn));
        // Larger, but left out by --exclude: never measured.
        v.push(lfs("extra/huge.bin", 2, 2 * big, throttle, cdn));
        v
    };
    let slow = hub(files(1 << 20, "cdn-a"));
    let fast = hub(files(4 << 20, "cdn-b"));
    let (s, f) = (slow.endpoint(), fast.endpoint());
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path()).args([
        "--bench",
        "--json",
        "--seconds",
        "1",
        "-x",
        "4",
        "--exclude",
        "huge",
        "--endpoint",
        &s,
        "--endpoint",
        &f,
    ]));
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert_eq!(v["fastest"], Value::String(f.clone()), "{v}");
    let (rs, rf) = (row(&v, &s), row(&v, &f));
    for r in [rs, rf] {
        assert!(r["error"].is_null(), "{r}");
        assert_eq!(r["file"], "model.safetensors", "{r}");
        assert!(r["ttfb_ms"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["bytes"].as_u64().unwrap() > 0, "{r}");
        assert!(r["single_connection_bps"].as_f64().unwrap() > 0.0, "{r}");
    }
    let (ts, tf) = (
        rs["throughput_bps"].as_f64().unwrap(),
        rf["throughput_bps"].as_f64().unwrap(),
    );
    // Four times the per-connection rate: clearly ahead even on a busy machine.
    assert!(tf > 2.0 * ts, "fast {tf} vs slow {ts}");
    // Nothing on disk: no local dir, no .hfd/.
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
    let huge_sha = FileSpec::generated(2, 2 * big).sha256_hex();
    for h in [&slow, &fast] {
        token_stayed_home(h);
        assert!(
            h.cdn()
                .requests()
                .iter()
                .all(|r| !r.path.contains(&huge_sha)),
            "an excluded file was measured"
        );
    }
    // --seconds bounds the measurement: at 4 x 1 MiB/s the slow endpoint
    // cannot have sent half its file in about a second (it would take 4 s).
    assert!(
        rs["bytes"].as_u64().unwrap() < big / 2,
        "the slow endpoint was measured past --seconds: {rs}"
    );

    // The table marks the fastest.
    let (code, out, err) = run(hfd(dir.path()).args([
        "--bench",
        "--seconds",
        "0.3",
        "-x",
        "2",
        "--exclude",
        "huge",
        "--endpoint",
        &s,
        "--endpoint",
        &f,
    ]));
    assert_eq!(code, 0, "{err}");
    let fast_line = out
        .lines()
        .find(|l| l.starts_with(&format!("{f} ")))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(fast_line.contains("fastest"), "{out}");
    assert!(
        err.contains("model.safetensors"),
        "says what it measures: {err}"
    );
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn bench_reports_failing_endpoints_in_their_rows() {
    let mut files = git_files();
    files.push(lfs("model.safetensors", 3, 16 << 20, 4 << 20, "cdn"));
    let good = hub(files);
    let broken = TestServer::start();
    broken.add_handler_fn("/", |_| Reply::text(500, "Internal Server Error"));
    let empty = MockHub::start();
    let (g, b, e) = (good.endpoint(), broken.base_url(), empty.endpoint());
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path()).args([
        "--bench",
        "--json",
        "--seconds",
        "0.5",
        "-x",
        "2",
        "--endpoint",
        &b,
        "--endpoint",
        &e,
        "--endpoint",
        &g,
    ]));
    assert_eq!(code, 0, "one endpoint works: {err}");
    let v = json(&out);
    assert_eq!(v["results"].as_array().unwrap().len(), 3);
    assert_eq!(v["fastest"], Value::String(g.clone()));
    let rb = row(&v, &b);
    assert!(rb["error"].as_str().unwrap().contains("500"), "{rb}");
    assert_eq!(rb["throughput_bps"].as_f64().unwrap(), 0.0);
    let re = row(&v, &e);
    assert!(re["error"].as_str().unwrap().contains("not found"), "{re}");
    let rg = row(&v, &g);
    assert!(rg["error"].is_null(), "{rg}");
    assert!(rg["bytes"].as_u64().unwrap() > 0, "{rg}");
    assert!(listing(dir.path()).is_empty());

    // Every endpoint failing (one not even listening): exit 1, rows still printed.
    let (code, out, _) = run(hfd(dir.path()).args([
        "--bench",
        "--json",
        "--seconds",
        "0.2",
        "--endpoint",
        &b,
        "--endpoint",
        "http://127.0.0.1:9",
    ]));
    assert_eq!(code, 1);
    let v = json(&out);
    assert!(v["fastest"].is_null(), "{v}");
    assert!(row(&v, "http://127.0.0.1:9")["error"].is_string(), "{v}");
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn multi_endpoint_download_is_exact_and_favours_the_faster_endpoint() {
    let len = 16 << 20;
    let files = |throttle: u64, cdn: &str| {
        let mut v = git_files();
        v.push(lfs("model-1.safetensors", 4, len, throttle, cdn));
        v.push(lfs("model-2.safetensors", 5, len, throttle, cdn));
        v
    };
    // Eight times the per-connection rate: the faster must serve most bytes.
    let slow = hub(files(512 << 10, "cdn-a"));
    let fast = hub(files(4 << 20, "cdn-b"));
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path()).args([
        "--endpoint",
        &slow.endpoint(),
        "--endpoint",
        &fast.endpoint(),
        "-x",
        "2",
        "-j",
        "2",
        "--local-dir",
        "m",
    ]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("Done."), "{out}");
    assert!(out.contains("From 2 endpoints"), "{out}");
    // Different CDN ETags for the same bytes are no reason to refuse.
    assert!(
        !err.contains("dropping") && !err.contains("not using"),
        "{err}"
    );
    assert_files(&dir.path().join("m"), &files(1, "x"));
    let (from_slow, from_fast) = (served(&slow), served(&fast));
    assert!(
        from_fast > 2 * from_slow,
        "slow {from_slow}, fast {from_fast}"
    );
    assert!(from_slow > 0, "both endpoints serve");
    // -x per endpoint and file, -j files.
    assert!(slow.cdn().stats().peak_transfers <= 4);
    assert!(fast.cdn().stats().peak_transfers <= 4);
    for h in [&slow, &fast] {
        token_stayed_home(h);
    }
}

#[test]
fn an_endpoint_dying_midway_leaves_the_other_to_finish() {
    let len = 8 << 20;
    let files = |cdn: &str| {
        let mut v = git_files();
        for i in 0..3 {
            v.push(lfs(
                &format!("model-{i}.safetensors"),
                10 + i,
                len,
                2 << 20,
                cdn,
            ));
        }
        v
    };
    let doomed = hub(files("cdn-a"));
    let steady = hub(files("cdn-b"));
    let doomed_ep = doomed.endpoint();
    let dir = tempdir();
    // One file at a time: files that start after the death must not wait
    // for the dead endpoint, nor fail because it listed the repo.
    let mut child = hfd(dir.path())
        .args([
            "--endpoint",
            &doomed_ep,
            "--endpoint",
            &steady.endpoint(),
            "-x",
            "2",
            "-j",
            "1",
            "--local-dir",
            "m",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while doomed.cdn().requests().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if doomed.cdn().requests().is_empty() {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "no download from {doomed_ep} within 10 s, so it cannot die midway: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::thread::sleep(Duration::from_millis(600));
    drop(doomed);
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_files(&dir.path().join("m"), &files("x"));
    assert!(
        stderr.contains(&format!("{doomed_ep} stopped answering")),
        "the dead endpoint is named: {stderr}"
    );
}

#[test]
fn an_endpoint_serving_other_content_is_refused_by_name() {
    let len = 8 << 20;
    let good_files = |cdn: &str| {
        let mut v = git_files();
        v.push(lfs("model.safetensors", 20, len, 4 << 20, cdn));
        v.push(lfs("other.bin", 21, len, 4 << 20, cdn));
        v.push(lfs("late.bin", 22, 3 << 20, 4 << 20, cdn));
        v
    };
    let good = hub(good_files("cdn-a"));
    // Listed by the first endpoint, yet missing there (a file it lost, a
    // lagging cache): it comes from the other endpoint.
    good.hide_file(REPO, "late.bin");
    let good_ep = good.endpoint();
    // Same names, same sizes, same commit; other bytes in one file.
    let mut stale_files = good_files("cdn-b");
    stale_files[2] = lfs("model.safetensors", 99, len, 4 << 20, "cdn-b");
    let stale = hub(stale_files);
    let stale_ep = stale.endpoint();
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path()).args([
        "--endpoint",
        &good_ep,
        "--endpoint",
        &stale_ep,
        "-x",
        "2",
        "--local-dir",
        "m",
    ]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_files(&dir.path().join("m"), &good_files("x"));
    let refusal = err
        .lines()
        .find(|l| l.contains("serves another file"))
        .unwrap_or_else(|| panic!("no refusal: {err}"));
    assert!(
        refusal.contains(&format!("{stale_ep}/")) && refusal.contains("model.safetensors"),
        "the refused endpoint and file are named: {refusal}"
    );
    // Refused for that file only: the file they agree on came from both.
    let other_sha = FileSpec::generated(21, len).sha256_hex();
    let stale_other: u64 = stale
        .cdn()
        .requests()
        .iter()
        .filter(|r| r.path.contains(&other_sha))
        .map(|r| r.body_bytes)
        .sum();
    assert!(stale_other > 0, "{err}");
    assert!(
        err.contains(&format!("late.bin: not using {good_ep} for this file")),
        "{err}"
    );
}
