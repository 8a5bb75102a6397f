//! Xet: the mock CAS checked by the official client, and hfd's native
//! path against it (records of the hub, CAS, transfer and CDN servers say
//! which path was taken and what each was sent).

use std::path::{Path, PathBuf};
use std::process::Command;

use hfd_testserver::hub::{HubFile, HubOptions, MockHub, RepoSpec};
use hfd_testserver::tls::throwaway_tls;
use hfd_testserver::{FileSpec, RequestInfo};

use crate::support::*;

const TOKEN: &str = "hf_user_token_for_xet_tests";

/// Two Xet files (one spanning several xorbs, so several fetch ranges),
/// one git file.
fn xet_files() -> Vec<HubFile> {
    vec![
        HubFile::git("config.json", "{\"hidden\": 64}\n"),
        HubFile::xet("model.safetensors", FileSpec::generated(11, 3 << 20)),
        HubFile::xet("sub/small.bin", FileSpec::generated(12, 70_000)),
    ]
}

fn xet_hub(id: &str, files: &[HubFile]) -> MockHub {
    xet_hub_with(None, id, files)
}

/// `org/xet` of [`xet_files`] over HTTPS on every server, signed by a
/// throwaway CA written to `dir/ca.pem`; returns the hub, that file and the
/// files.
fn tls_xet_hub(dir: &Path) -> (MockHub, PathBuf, Vec<HubFile>) {
    let ca = dir.join("ca.pem");
    let tls = throwaway_tls(&ca).expect("a throwaway CA");
    let files = xet_files();
    let hub = xet_hub_with(Some(tls), "org/xet", &files);
    assert!(hub.endpoint().starts_with("https://"), "{}", hub.endpoint());
    (hub, ca, files)
}

/// [`xet_hub`], over HTTPS with `tls` when given.
fn xet_hub_with(
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    id: &str,
    files: &[HubFile],
) -> MockHub {
    let hub = MockHub::start_with(HubOptions { xet: true, tls });
    hub.xet().set_xorb_limit(512 << 10);
    hub.add_repo(
        files
            .iter()
            .cloned()
            .fold(RepoSpec::model(id), |r, f| r.file(f)),
    );
    hub
}

fn paths(reqs: &[RequestInfo], part: &str) -> usize {
    reqs.iter().filter(|r| r.path.contains(part)).count()
}

/// The official client (huggingface_hub + hf_xet) downloads from the mock
/// through Xet, byte-exact: the mock speaks the protocol as hf_xet reads it.
#[test]
fn the_official_client_downloads_through_the_mock_cas() {
    let Some(py) = python() else { return };
    let files = xet_files();
    let hub = xet_hub("org/xet", &files);
    official_client_reads_xet(&py, &hub, &files, &[]);
}

/// The same over HTTPS on every server (hub, CDN, CAS, transfer) signed by
/// a throwaway CA that the official client is told of only by
/// `SSL_CERT_FILE`: huggingface_hub's httpx and hf_xet both honour it.
#[test]
fn the_official_client_reads_xet_over_tls_trusting_ssl_cert_file() {
    let Some(py) = python() else { return };
    let dir = tempdir();
    let (hub, ca, files) = tls_xet_hub(dir.path());
    let ca = path_str(&ca);
    official_client_reads_xet(&py, &hub, &files, &[("SSL_CERT_FILE", &ca)]);
}

/// Runs huggingface_hub (`hf_hub_download`, then `snapshot_download`) on
/// the mock's `org/xet` with `env`, and checks that every file arrived
/// byte-exact through the CAS, not a byte over the plain path.
fn official_client_reads_xet(py: &Path, hub: &MockHub, files: &[HubFile], env: &[(&str, &str)]) {
    let dir = tempdir();
    let script = r#"
import sys
from huggingface_hub import hf_hub_download, snapshot_download
out = sys.argv[1]
p = hf_hub_download("org/xet", "model.safetensors", local_dir=out)
print(p)
snapshot_download("org/xet", local_dir=out)
"#;
    let home = dir.path().join("hf-home");
    let out = dir.path().join("out");
    let (endpoint, home) = (hub.endpoint(), path_str(&home));
    let mut vars = vec![
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_HOME", home.as_str()),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
    ];
    vars.extend_from_slice(env);
    let (code, stdout, stderr) = run_python(py, script, &[&path_str(&out)], &vars);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    for f in files {
        assert_eq!(
            sha256_file(&out.join(&f.path)),
            f.spec.sha256_hex(),
            "{}",
            f.path
        );
    }
    let cas = hub.xet().cas().requests();
    let transfer = hub.xet().transfer().requests();
    assert!(paths(&cas, "/v1/reconstructions/") >= 2, "{cas:#?}");
    assert!(transfer.iter().all(|r| r.status == 206), "{transfer:#?}");
    assert!(transfer.len() >= 3, "{transfer:#?}");
    // No byte over the plain path.
    assert_eq!(hub.cdn().requests().len(), 0);
    let tokens = hub.hub().requests();
    assert!(paths(&tokens, "/xet-read-token/") >= 1);
}

fn hfd(dir: &Path, hub: &MockHub) -> Command {
    let mut c = hfd_bin(dir);
    c.env("HF_ENDPOINT", hub.endpoint())
        .env_remove("HF_HUB_DISABLE_XET")
        .env_remove("HF_TOKEN");
    c
}

fn assert_files(dir: &Path, files: &[HubFile]) {
    for f in files {
        assert_eq!(
            sha256_file(&dir.join(&f.path)),
            f.spec.sha256_hex(),
            "{}",
            f.path
        );
    }
}

/// What each server saw of the user's Hub token.
fn saw_token(reqs: &[RequestInfo]) -> usize {
    reqs.iter()
        .filter(|r| r.headers.iter().any(|(_, v)| v.contains(TOKEN)))
        .count()
}

/// hfd reads Xet files natively: reconstructions from the CAS, xorb
/// ranges from the transfer server, not a byte from the bridge (the CDN);
/// the Hub token only at the hub, the CAS token only at the CAS, nothing
/// at the presigned URLs.
#[test]
fn hfd_reads_xet_natively_and_keeps_tokens_apart() {
    let files = xet_files();
    let hub = MockHub::start_with_xet();
    hub.set_token(TOKEN);
    hub.xet().set_xorb_limit(512 << 10);
    hub.add_repo(
        files
            .iter()
            .cloned()
            .fold(RepoSpec::model("org/gated").gated("auto"), |r, f| r.file(f)),
    );
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path(), &hub).args([
        "org/gated",
        "--hf_token",
        TOKEN,
        "-x",
        "4",
        "--local-dir",
        "m",
    ]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_files(&dir.path().join("m"), &files);
    let (cas, transfer) = (hub.xet().cas().requests(), hub.xet().transfer().requests());
    assert!(paths(&cas, "/reconstructions/") >= 2, "{cas:#?}");
    assert!(transfer.len() >= 7, "{} xorb ranges", transfer.len());
    assert!(transfer.iter().all(|r| r.status == 206));
    assert_eq!(hub.cdn().requests().len(), 0, "no byte over the bridge");
    assert_eq!(saw_token(&cas) + saw_token(&transfer), 0);
    assert!(transfer.iter().all(|r| r.header("authorization").is_none()));
    assert!(cas.iter().filter(|r| r.status == 200).all(|r| {
        r.header("authorization")
            .is_some_and(|a| a.starts_with("Bearer xet_mock_"))
    }));
    // One token for the run's files; /v2/ asked only until its 404 was
    // seen (by files started at the same time, at most once each).
    assert_eq!(paths(&hub.hub().requests(), "/xet-read-token/"), 1);
    assert!(paths(&cas, "/v2/") <= 2, "{cas:#?}");
    assert_eq!(paths(&cas, "/v1/"), 2, "{cas:#?}");
}

/// Over HTTPS on every server (hub, CDN, CAS, transfer), signed by a
/// throwaway CA: refused until hfd is told of the CA, then read natively
/// (reconstructions from the CAS, xorb ranges from the transfer server,
/// nothing from the CDN) and byte-exact.
#[test]
fn hfd_reads_xet_natively_over_tls_with_its_ca() {
    let dir = tempdir();
    let (hub, ca, files) = tls_xet_hub(dir.path());

    let (code, out, err) = run(hfd(dir.path(), &hub).args(["org/xet", "--local-dir", "a"]));
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(err.contains("--ca-certificate"), "{err}");
    assert!(!dir.path().join("a/model.safetensors").exists());
    assert_eq!(hub.hub().requests().len(), 0, "no request got past TLS");

    let (code, out, err) = run(hfd(dir.path(), &hub).args([
        "org/xet",
        "--local-dir",
        "m",
        "--ca-certificate",
        &path_str(&ca),
    ]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_files(&dir.path().join("m"), &files);
    let (cas, transfer) = (hub.xet().cas().requests(), hub.xet().transfer().requests());
    assert_eq!(paths(&cas, "/v1/reconstructions/"), 2, "{cas:#?}");
    assert!(transfer.len() >= 7, "{} xorb ranges", transfer.len());
    assert!(transfer.iter().all(|r| r.status == 206), "{transfer:#?}");
    assert_eq!(hub.cdn().requests().len(), 0, "no byte over the bridge");
}

/// `--no-xet` and `HF_HUB_DISABLE_XET=1` take the plain path; so does a
/// mirror whose token route answers 404 or 501.
#[test]
fn the_plain_path_when_xet_is_off_or_not_offered() {
    let files = xet_files();
    for how in ["--no-xet", "env", "404", "501"] {
        let hub = xet_hub("org/plain", &files);
        let dir = tempdir();
        let mut c = hfd(dir.path(), &hub);
        c.args(["org/plain", "--local-dir", "m", "-v"]);
        match how {
            "--no-xet" => {
                c.arg("--no-xet");
            }
            "env" => {
                c.env("HF_HUB_DISABLE_XET", "1");
            }
            s => hub
                .xet()
                .knobs(|k| k.token_route_off = Some(s.parse().unwrap())),
        }
        let (code, out, err) = run(&mut c);
        assert_eq!(code, 0, "{how}: {out}\n{err}");
        assert_files(&dir.path().join("m"), &files);
        assert_eq!(hub.xet().cas().requests().len(), 0, "{how}");
        assert_eq!(hub.xet().transfer().requests().len(), 0, "{how}");
        assert!(hub.cdn().requests().len() >= 2, "{how}");
        if how.parse::<u16>().is_ok() {
            assert!(err.contains("grants no Xet token"), "{how}: {err}");
        }
    }
}

/// Short-lived tokens are renewed before they expire, and a 401 from the
/// CAS renews the token too; the download goes on.
#[test]
fn tokens_are_renewed_before_expiry_and_after_a_401() {
    let files = xet_files();
    let hub = xet_hub("org/tok", &files);
    hub.xet().knobs(|k| {
        // Less than the 30 s margin: every use renews it.
        k.token_ttl = std::time::Duration::from_secs(10);
        k.recon_faults.push_back((401, None));
    });
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path(), &hub).args(["org/tok", "--local-dir", "m"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_files(&dir.path().join("m"), &files);
    let cas = hub.xet().cas().requests();
    assert!(cas.iter().any(|r| r.status == 401), "{cas:#?}");
    // A fresh token after the 401: the next request carries another one.
    let i = cas.iter().position(|r| r.status == 401).unwrap();
    let next = cas[i + 1..].iter().find(|r| r.status == 200).unwrap();
    assert_ne!(cas[i].header("authorization"), next.header("authorization"));
    assert!(paths(&hub.hub().requests(), "/xet-read-token/") >= 3);
    assert_eq!(hub.cdn().requests().len(), 0);
}

/// 429 and 503 with Retry-After on the reconstruction are waited out: the
/// next request comes no sooner than the server asked.
#[test]
fn a_rate_limited_reconstruction_is_waited_out() {
    let files = vec![HubFile::xet("w.bin", FileSpec::generated(21, 600_000))];
    let hub = xet_hub("org/rl", &files);
    hub.xet().knobs(|k| {
        k.recon_faults.push_back((429, Some(1)));
        k.recon_faults.push_back((503, Some(1)));
    });
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path(), &hub).args(["org/rl", "--local-dir", "m"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_files(&dir.path().join("m"), &files);
    let cas: Vec<RequestInfo> = hub
        .xet()
        .cas()
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/v1/"))
        .collect();
    let statuses: Vec<u16> = cas.iter().map(|r| r.status).collect();
    assert_eq!(statuses[..3], [429, 503, 200], "{statuses:?}");
    for w in cas[..3].windows(2) {
        assert!(w[1].at.duration_since(w[0].at) >= std::time::Duration::from_millis(990));
    }
}

/// A xorb range with a broken chunk header or broken LZ4 is fetched again;
/// the file is right (a damaged chunk is never written as data).
#[test]
fn a_damaged_xorb_range_is_fetched_again() {
    use hfd_testserver::xet::Corruption;
    let files = vec![HubFile::xet("w.bin", FileSpec::generated(22, 1 << 20))];
    let hub = xet_hub("org/bad", &files);
    hub.xet().knobs(|k| {
        k.corrupt.push_back(Corruption::Header);
        k.corrupt.push_back(Corruption::Lz4);
    });
    let dir = tempdir();
    let (code, out, err) =
        run(hfd(dir.path(), &hub).args(["org/bad", "--local-dir", "m", "-x", "1", "-v"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_files(&dir.path().join("m"), &files);
    let t = hub.xet().transfer().requests();
    // The two damaged answers were asked again: two more requests than
    // distinct ranges.
    let distinct: std::collections::BTreeSet<&str> = t.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(t.len(), distinct.len() + 2, "{t:#?}");
    assert!(
        err.contains("damaged xorb range") || out.contains("damaged"),
        "{err}"
    );
}

/// Bytes of `reqs` (delivered ones) per xorb, as ranges.
fn delivered(reqs: &[RequestInfo]) -> Vec<(String, std::ops::Range<u64>)> {
    reqs.iter()
        .filter(|r| r.status == 206)
        .filter_map(|r| {
            let (a, _) = r
                .range
                .as_deref()?
                .strip_prefix("bytes=")?
                .split_once('-')?;
            let a: u64 = a.parse().ok()?;
            Some((r.path.clone(), a..a + r.body_bytes))
        })
        .collect()
}

/// kill -9 mid-download, then the same command: the second run fetches
/// what was missing and little more (bytes the transfer server served
/// twice).
#[test]
fn kill_9_then_resume_fetches_little_twice() {
    let files = vec![HubFile::xet("big.bin", FileSpec::generated(23, 3 << 20))];
    let hub = xet_hub("org/kill", &files);
    hub.xet().knobs(|k| k.pace = Some(256 << 10));
    let dir = tempdir();
    let mut child = hfd(dir.path(), &hub)
        .args(["org/kill", "--local-dir", "m", "-x", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = hub.xet().transfer();
    wait_for_progress(&mut child, "the download", || {
        t.requests().iter().map(|r| r.body_bytes).sum::<u64>() >= 1_500_000
    });
    // A checkpoint a second, so at least one since the bytes above.
    std::thread::sleep(std::time::Duration::from_millis(1300));
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let first = delivered(&t.requests());
    let n_first = t.requests().len();
    hub.xet().knobs(|k| k.pace = None);
    let (code, out, err) =
        run(hfd(dir.path(), &hub).args(["org/kill", "--local-dir", "m", "-x", "2"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_files(&dir.path().join("m"), &files);
    let second = delivered(&t.requests()[n_first..]);
    let again: u64 = second
        .iter()
        .map(|(p, r)| {
            first
                .iter()
                .filter(|(q, _)| q == p)
                .map(|(_, s)| r.end.min(s.end).saturating_sub(r.start.max(s.start)))
                .sum::<u64>()
        })
        .sum();
    let fetched_first: u64 = first.iter().map(|(_, r)| r.end - r.start).sum();
    println!("served before the kill: {fetched_first}; served twice: {again}");
    // Two connections at 256 KiB/s lose at most the last checkpoint
    // interval or so each, plus a chunk at each edge.
    assert!(
        again <= 1 << 20,
        "{again} bytes served twice of {fetched_first}"
    );
    assert!(fetched_first >= 1_500_000);
}

/// Every CAS and xorb request goes through the proxy the user set, for an
/// HTTP proxy (tinyproxy) and socks5h (microsocks): each proxy connects
/// from 127.0.0.2, so the servers' records show which requests came
/// through it.
#[test]
fn cas_and_xorb_requests_go_through_the_proxy() {
    use crate::proxy::{microsocks, tinyproxy};
    let files = xet_files();
    for which in ["tinyproxy", "microsocks"] {
        let p = match if which == "tinyproxy" {
            tinyproxy(None)
        } else {
            microsocks(None)
        } {
            Ok(p) => p,
            Err(why) => {
                println!("SKIPPED: {why}");
                continue;
            }
        };
        let (var, url) = if which == "tinyproxy" {
            ("http_proxy", format!("http://127.0.0.1:{}", p.port))
        } else {
            ("all_proxy", format!("socks5h://127.0.0.1:{}", p.port))
        };
        let hub = xet_hub("org/px", &files);
        let dir = tempdir();
        let (code, out, err) = run(hfd(dir.path(), &hub)
            .args(["org/px", "--local-dir", "m"])
            .env(var, &url));
        assert_eq!(code, 0, "{which}: {out}\n{err}");
        assert_files(&dir.path().join("m"), &files);
        let via = std::net::IpAddr::from([127, 0, 0, 2]);
        let (cas, tr) = (hub.xet().cas().requests(), hub.xet().transfer().requests());
        assert!(!cas.is_empty() && !tr.is_empty(), "{which}");
        for r in cas.iter().chain(&tr).chain(&hub.hub().requests()) {
            assert_eq!(r.peer.ip(), via, "{which}: {} came directly", r.path);
        }
    }
}

/// `--verify-origin` holds on the native path too: a mirror whose CAS
/// serves other bytes for a file than the origin lists gets it refused by
/// name, though its bytes came from the mirror's xorbs; the origin is only
/// listed, and its CAS is never asked.
#[test]
fn verify_origin_refuses_altered_xet_bytes_from_a_mirror() {
    let files = xet_files();
    let altered: Vec<HubFile> = files
        .iter()
        .cloned()
        .map(|f| match f.path.as_str() {
            "model.safetensors" => HubFile::xet(f.path, FileSpec::generated(99, 3 << 20)),
            _ => f,
        })
        .collect();
    let hub_of = |files: &[HubFile]| {
        let hub = MockHub::start_with_xet();
        hub.set_commit_salt("relayed");
        hub.xet().set_xorb_limit(512 << 10);
        hub.add_repo(
            files
                .iter()
                .cloned()
                .fold(RepoSpec::model("org/name"), |r, f| r.file(f)),
        );
        hub
    };
    let (origin, mirror) = (hub_of(&files), hub_of(&altered));
    assert_eq!(
        origin.commit_of("org/name", "main"),
        mirror.commit_of("org/name", "main")
    );
    let dir = tempdir();
    let origin_flag = format!("--verify-origin={}", origin.endpoint());
    let (code, out, err) =
        run(hfd(dir.path(), &mirror).args(["org/name", &origin_flag, "--local-dir", "m"]));
    assert_eq!(code, 1, "{out}\n{err}");
    let refusals = err
        .lines()
        .filter(|l| l.contains("model.safetensors") && l.contains("does not match the origin"))
        .count();
    assert_eq!(refusals, 1, "{err}");
    let local = dir.path().join("m");
    assert!(!local.join("model.safetensors").exists());
    let others: Vec<HubFile> = files
        .into_iter()
        .filter(|f| f.path != "model.safetensors")
        .collect();
    assert_files(&local, &others);
    // The bytes came natively from the mirror's CAS, none over its bridge.
    let cas = mirror.xet().cas().requests();
    assert!(paths(&cas, "/reconstructions/") >= 1, "{cas:#?}");
    assert!(!mirror.xet().transfer().requests().is_empty());
    assert!(mirror.cdn().requests().is_empty());
    // The origin was listed, nothing more.
    let asked = origin.hub().requests();
    assert!(!asked.is_empty());
    assert!(asked.iter().all(|r| r.path.starts_with("/api/")
        && !r.path.contains("resolve")
        && !r.path.contains("xet-read-token")));
    assert!(origin.xet().cas().requests().is_empty());
    assert!(origin.xet().transfer().requests().is_empty());
}

/// Version 1 of a file and version 2 with about a tenth of its chunks
/// changed in place (the mock cuts chunks by the length alone, so the
/// others stay the same chunks in the same xorbs).
fn two_versions() -> (Vec<u8>, Vec<u8>) {
    let len = 3u64 << 20;
    let v1 = hfd_testserver::Content::new(21, len).bytes(0..len).to_vec();
    let mut v2 = v1.clone();
    let step = v2.len() / 11;
    for k in 0..11 {
        v2[k * step + 1000] ^= 0x5a;
    }
    (v1, v2)
}

/// Xorb bytes the transfer server sent.
fn xorb_bytes(hub: &MockHub) -> u64 {
    hub.xet()
        .transfer()
        .requests()
        .iter()
        .map(|r| r.body_bytes)
        .sum()
}

/// hfd in `mode` (a local dir or the cache), then the bytes served.
fn hfd_xet_run(dir: &Path, hub: &MockHub, repo: &str, mode: &[&str]) -> (String, u64) {
    let before = xorb_bytes(hub);
    let (code, out, err) = run(hfd(dir, hub).args([repo, "-v"]).args(mode));
    assert_eq!(code, 0, "{out}\n{err}");
    (err, xorb_bytes(hub) - before)
}

/// Where `mode` puts the file with content `data`.
fn placed(dir: &Path, mode: &[&str], data: &[u8]) -> std::path::PathBuf {
    if mode[0] == "--local-dir" {
        dir.join(mode[1]).join("model.bin")
    } else {
        let sha = FileSpec::bytes(data.to_vec()).sha256_hex();
        dir.join(mode[1]).join("models--org--upd/blobs").join(sha)
    }
}

/// A hub serving `v1` as `org/upd`'s `model.bin`, downloaded by hfd in
/// `mode` under `dir`; then `v2` pushed as the new `main`. Returns the hub
/// and the xorb bytes the download of `v1` was served.
fn downloaded_then_updated(dir: &Path, mode: &[&str], v1: &[u8], v2: &[u8]) -> (MockHub, u64) {
    let hub = xet_hub(
        "org/upd",
        &[HubFile::xet("model.bin", FileSpec::bytes(v1.to_vec()))],
    );
    let (_, first) = hfd_xet_run(dir, &hub, "org/upd", mode);
    hub.push(
        "org/upd",
        "main",
        vec![HubFile::xet("model.bin", FileSpec::bytes(v2.to_vec()))],
        &[],
    );
    (hub, first)
}

/// Updating a Xet file copies the terms the new version shares with the
/// old one on disk (its layout kept in the state folder) and fetches the
/// rest: about a tenth of the xorb bytes, byte-exact, in a local dir and
/// in the cache.
#[test]
fn an_update_fetches_only_the_changed_chunks() {
    let (v1, v2) = two_versions();
    for mode in [["--local-dir", "m"], ["--cache-dir", "c"]] {
        let dir = tempdir();
        let (hub, first) = downloaded_then_updated(dir.path(), &mode, &v1, &v2);
        assert_eq!(std::fs::read(placed(dir.path(), &mode, &v1)).unwrap(), v1);
        let (err, second) = hfd_xet_run(dir.path(), &hub, "org/upd", &mode);
        let got = std::fs::read(placed(dir.path(), &mode, &v2)).unwrap();
        assert!(got == v2, "{mode:?}: the update is not byte-exact");
        eprintln!("{mode:?}: version 1 served {first} xorb bytes, the update {second}");
        assert!(second > 0, "{mode:?}: the changed chunks are fetched");
        assert!(
            second * 100 <= first * 20,
            "{mode:?}: the update was served {second} of {first} bytes\n{err}"
        );
        assert!(
            err.contains("bytes copied from the older version on disk"),
            "{err}"
        );
    }
}

/// An old file changed on disk after it was recorded (same size) cannot
/// spoil the new version: the copy fails the sha256 check and the file
/// is fetched whole.
#[test]
fn a_tampered_old_version_is_not_trusted() {
    let (v1, v2) = two_versions();
    let dir = tempdir();
    let mode = ["--local-dir", "m"];
    let (hub, first) = downloaded_then_updated(dir.path(), &mode, &v1, &v2);
    let old = dir.path().join("m/model.bin");
    let mut bytes = std::fs::read(&old).unwrap();
    // Halfway between two edits: a chunk the versions share.
    let at = bytes.len() / 22 + 1000;
    bytes[at] ^= 0xff;
    std::fs::write(&old, &bytes).unwrap();
    let (err, second) = hfd_xet_run(dir.path(), &hub, "org/upd", &mode);
    assert!(std::fs::read(&old).unwrap() == v2, "not byte-exact");
    assert!(err.contains("did not match its record"), "{err}");
    // The copy attempt, then the whole file.
    assert!(second >= first, "{second} of {first}");

    // The same version damaged on disk is fetched again, but not copied
    // from itself: one clean attempt.
    let mut bytes = std::fs::read(&old).unwrap();
    bytes[at] ^= 0xff;
    std::fs::write(&old, &bytes).unwrap();
    let (err, third) = hfd_xet_run(dir.path(), &hub, "org/upd", &mode);
    assert!(std::fs::read(&old).unwrap() == v2, "not byte-exact");
    assert!(!err.contains("did not match its record"), "{err}");
    assert!(
        !err.contains("bytes copied from the older version on disk"),
        "{err}"
    );
    assert!(third < first * 11 / 10, "{third} of {first}: one attempt");
}

/// The Hub (Xet) and a mirror without Xet, same commits, same file.
fn xet_and_mirror() -> (MockHub, MockHub, FileSpec) {
    let spec = FileSpec::generated(31, 3 << 20);
    let xet = MockHub::start_with_xet();
    xet.set_commit_salt("xet-two-endpoints");
    xet.xet().set_xorb_limit(512 << 10);
    xet.add_repo(
        RepoSpec::model("org/two")
            .file(HubFile::git("config.json", "{}\n"))
            .file(HubFile::xet("model.bin", spec.clone())),
    );
    let plain = MockHub::start();
    plain.set_commit_salt("xet-two-endpoints");
    plain.add_repo(
        RepoSpec::model("org/two")
            .file(HubFile::git("config.json", "{}\n"))
            .file(HubFile::lfs("model.bin", spec.clone())),
    );
    (xet, plain, spec)
}

/// Bytes of `model.bin` a hub's CDN (the plain path) sent.
fn cdn_bytes(h: &MockHub) -> u64 {
    h.cdn().requests().iter().map(|r| r.body_bytes).sum()
}

/// With two endpoints, one granting Xet tokens and a mirror without Xet,
/// a Xet file arrives byte-exact in either order: natively from the CAS
/// when the listing's endpoint grants a token, else over the plain path
/// from both; and when Xet storage fails, over the plain path from both.
#[test]
fn a_xet_file_from_two_endpoints() {
    let check = |dir: &Path, spec: &FileSpec| {
        assert_eq!(sha256_file(&dir.join("model.bin")), spec.sha256_hex());
    };
    for case in ["xet first", "mirror first", "cas down"] {
        let (xet, plain, spec) = xet_and_mirror();
        let (x, p) = (xet.endpoint(), plain.endpoint());
        let order = if case == "mirror first" {
            [&p, &x]
        } else {
            [&x, &p]
        };
        if case == "cas down" {
            xet.xet()
                .knobs(|k| k.recon_faults.extend([(503, None); 20]));
        }
        let dir = tempdir();
        let (code, out, err) = run(hfd(dir.path(), &xet).args([
            "org/two",
            "--local-dir",
            "m",
            "-x",
            "2",
            "--max-tries",
            "2",
            "--endpoint",
            order[0],
            "--endpoint",
            order[1],
        ]));
        assert_eq!(code, 0, "{case}: {out}\n{err}");
        check(&dir.path().join("m"), &spec);
        let served = xorb_bytes(&xet);
        match case {
            "xet first" => {
                assert!(served >= spec.len() / 2, "{case}: {served} xorb bytes");
                assert_eq!(cdn_bytes(&xet), 0, "{case}");
            }
            _ => {
                assert_eq!(served, 0, "{case}");
                assert!(cdn_bytes(&xet) > 0, "{case}: the Xet hub's plain path");
                assert!(cdn_bytes(&plain) > 0, "{case}: the mirror");
            }
        }
        if case == "cas down" {
            assert!(err.contains("Xet storage failed"), "{err}");
        }
    }
}

/// `--bench` measures a Xet repo's endpoints (over the plain path, what
/// every client can fetch) and writes nothing.
#[test]
fn bench_measures_a_xet_repo() {
    let (xet, plain, _) = xet_and_mirror();
    let (x, p) = (xet.endpoint(), plain.endpoint());
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path(), &xet).args([
        "org/two",
        "--bench",
        "--json",
        "--seconds",
        "0.5",
        "--endpoint",
        &x,
        "--endpoint",
        &p,
    ]));
    assert_eq!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let rows = v["results"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(rows.len(), 2, "{v}");
    for r in rows {
        assert!(r["error"].is_null(), "{r}");
        assert_eq!(r["file"], "model.bin", "{r}");
        assert!(r["bytes"].as_u64().unwrap() > 0, "{r}");
    }
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

/// The xorb bytes an uninterrupted update from `v1` to `v2` is served.
fn update_cost(v1: &[u8], v2: &[u8]) -> u64 {
    let dir = tempdir();
    let mode = ["--local-dir", "m"];
    let (hub, _) = downloaded_then_updated(dir.path(), &mode, v1, v2);
    hfd_xet_run(dir.path(), &hub, "org/upd", &mode).1
}

/// kill -9 in the middle of an update (copies done, changed chunks being
/// fetched), then the same command: byte-exact, and the second run does not
/// start the update over (it is served less than the whole update was).
#[test]
fn an_update_killed_midway_resumes() {
    let (v1, v2) = two_versions();
    let dir = tempdir();
    let mode = ["--local-dir", "m"];
    let (hub, _) = downloaded_then_updated(dir.path(), &mode, &v1, &v2);
    hub.xet().knobs(|k| k.pace = Some(32 << 10));
    let t = hub.xet().transfer();
    let before = xorb_bytes(&hub);
    let mut child = hfd(dir.path(), &hub)
        .args(["org/upd", "--local-dir", "m", "-x", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_progress(&mut child, "the update", || {
        xorb_bytes(&hub) - before >= 64 << 10
    });
    // A checkpoint a second, so at least one since the copies.
    std::thread::sleep(std::time::Duration::from_millis(1300));
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let n_first = t.requests().len();
    hub.xet().knobs(|k| k.pace = None);
    let (_, after) = hfd_xet_run(dir.path(), &hub, "org/upd", &mode);
    assert!(
        std::fs::read(dir.path().join("m/model.bin")).unwrap() == v2,
        "not byte-exact"
    );
    let whole_update = update_cost(&v1, &v2);
    println!("the resumed update was served {after} of {whole_update}");
    assert!(after < whole_update, "{after}");
    assert!(t.requests().len() > n_first, "the rest was fetched");
}

/// Two endpoints that both grant Xet tokens (the Hub and a mirror with a
/// CAS of its own) share a large file's pieces: each transfer server
/// serves part of it, nothing goes over the plain path, byte-exact.
#[test]
fn two_endpoints_with_xet_share_the_pieces() {
    // Over 64 MiB: three pieces of at least 32 MiB.
    let spec = FileSpec::generated(41, 80 << 20);
    let hubs: Vec<MockHub> = (0..2)
        .map(|_| {
            let h = MockHub::start_with_xet();
            h.set_commit_salt("xet-shared");
            h.xet().set_xorb_limit(8 << 20);
            h.add_repo(RepoSpec::model("org/big").file(HubFile::xet("big.bin", spec.clone())));
            h
        })
        .collect();
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path(), &hubs[0]).args([
        "org/big",
        "--local-dir",
        "m",
        "-x",
        "4",
        "-v",
        "--endpoint",
        &hubs[0].endpoint(),
        "--endpoint",
        &hubs[1].endpoint(),
    ]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        sha256_file(&dir.path().join("m/big.bin")),
        spec.sha256_hex()
    );
    let served: Vec<u64> = hubs.iter().map(xorb_bytes).collect();
    println!("xorb bytes served by each endpoint's storage: {served:?}");
    assert!(served.iter().all(|&b| b >= 16 << 20), "{served:?}\n{err}");
    assert!(
        served.iter().sum::<u64>() < spec.len() + (4 << 20),
        "{served:?}"
    );
    for h in &hubs {
        assert_eq!(cdn_bytes(h), 0, "no byte over the plain path");
    }
}
