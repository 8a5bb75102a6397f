//! Bandwidth caps (`--max-download-limit`, `--max-overall-download-limit`),
//! judged at the server: the bytes it delivered over every two-second span.

use hfd_testserver::hub::{HubFile, MockHub, RepoSpec};

use crate::support::*;

/// The most bytes the server delivered over any `span_ms` of `samples` (taken
/// every 100 ms), as a rate in bytes/s; and the average rate from its first
/// byte to its last.
fn peak_and_average(samples: &[Sample], span_ms: u128) -> (f64, f64) {
    let mut peak = 0.0f64;
    for (i, a) in samples.iter().enumerate() {
        for b in &samples[i + 1..] {
            let dt = b.at.duration_since(a.at).as_millis();
            if dt >= span_ms {
                peak = peak.max((b.delivered - a.delivered) as f64 / (dt as f64 / 1000.0));
                break;
            }
        }
    }
    let first = samples.iter().find(|s| s.delivered > 0);
    let end = samples.last().map(|s| s.delivered);
    let last = samples.iter().find(|s| Some(s.delivered) == end);
    let average = match (first, last) {
        (Some(f), Some(l)) if l.at > f.at => {
            (l.delivered - f.delivered) as f64 / l.at.duration_since(f.at).as_secs_f64()
        }
        _ => 0.0,
    };
    (peak, average)
}

#[test]
fn a_download_cap_holds_at_the_server_and_is_shared_fairly() {
    const CAP: u64 = 2 << 20;
    let server = TestServer::start();
    let len = 12 << 20;
    let file = FileSpec::generated(71, len);
    let want = file.sha256_hex();
    server.add_file("/f.bin", file);
    let dir = tempdir();
    let url = server.url("/f.bin");
    let ((code, _, err), samples) = sampling(&server, || {
        run(hfget(dir.path()).args([&url, "-o", "f.bin", "-x", "4", "--max-download-limit", "2M"]))
    });
    assert_eq!(code, 0, "{err}");
    assert_eq!(sha256_file(&dir.path().join("f.bin")), want);
    let (peak, average) = peak_and_average(&samples, 2000);
    assert!(
        peak <= CAP as f64 * 1.1,
        "{:.2} MiB/s over two seconds, cap 2 MiB/s",
        peak / (1 << 20) as f64
    );
    // Not a cap far below what was asked for (CPU steal can only slow it).
    assert!(average > CAP as f64 * 0.5, "{average:.0} B/s on average");
    // Fairly shared: while all four connections ran, each got its part.
    let reqs = server.requests();
    let t0 = reqs.iter().map(|r| r.at).min().unwrap();
    let mut per_conn = std::collections::BTreeMap::<u64, u64>::new();
    for r in reqs
        .iter()
        .filter(|r| r.at.duration_since(t0).as_millis() < 2500)
    {
        *per_conn.entry(r.conn).or_default() += r.body_bytes;
    }
    let (min, max) = (
        per_conn.values().min().copied().unwrap_or(0),
        per_conn.values().max().copied().unwrap_or(0),
    );
    assert!(per_conn.len() >= 4, "{per_conn:?}");
    assert!(min as f64 >= max as f64 * 0.5, "shares {per_conn:?}");
}

#[test]
fn a_capped_download_does_not_grow_its_connections() {
    // Without -x the count would grow from 16 while it pays; under a cap
    // that 16 connections already reach, it must not.
    let server = TestServer::start();
    let file = FileSpec::generated(72, 8 << 20).throttle(256 << 10);
    server.add_file("/f.bin", file);
    let dir = tempdir();
    let url = server.url("/f.bin");
    // -k 256K: 32 pieces, so the count starts at 16.
    let (code, out, err) = run(hfget(dir.path())
        .args([&url, "-o", "f.bin", "-k", "256K"])
        .args(["--max-download-limit", "1M"]));
    assert_eq!(code, 0, "{err}");
    assert!(server.stats().peak_transfers <= 16, "{:?}", server.stats());
    assert!(out.contains("16 connections"), "{out}");
}

#[test]
fn hfd_caps_all_files_together() {
    const CAP: u64 = 2 << 20;
    let hub = MockHub::start();
    let mut repo = RepoSpec::model("org/capped");
    for i in 0..4 {
        repo = repo.file(HubFile::lfs(
            format!("w{i}.bin"),
            FileSpec::generated(80 + i, 3 << 20),
        ));
    }
    hub.add_repo(repo);
    let dir = tempdir();
    let ((code, out, err), samples) = sampling(hub.cdn(), || {
        run(hfd_bin(dir.path())
            .env("HF_ENDPOINT", hub.endpoint())
            .args(["org/capped", "-j", "4", "-x", "4"])
            .args(["--max-overall-download-limit", "2M"]))
    });
    assert_eq!(code, 0, "{out}{err}");
    let (peak, average) = peak_and_average(&samples, 2000);
    assert!(
        peak <= CAP as f64 * 1.1,
        "{:.2} MiB/s over two seconds across files, cap 2 MiB/s",
        peak / (1 << 20) as f64
    );
    assert!(average > CAP as f64 * 0.5, "{average:.0} B/s on average");
}

/// Xet files read natively keep the cap too: judged at the mock's xorb
/// server.
#[test]
fn xet_reads_keep_the_cap() {
    const CAP: u64 = 2 << 20;
    let hub = MockHub::start_with_xet();
    hub.xet().set_xorb_limit(512 << 10);
    let file = HubFile::xet("w.bin", FileSpec::generated(90, 8 << 20));
    let want = file.spec.sha256_hex();
    hub.add_repo(RepoSpec::model("org/xcap").file(file));
    let dir = tempdir();
    let ((code, out, err), samples) = sampling(hub.xet().transfer(), || {
        run(hfd_bin(dir.path())
            .env("HF_ENDPOINT", hub.endpoint())
            .env_remove("HF_HUB_DISABLE_XET")
            .args(["org/xcap", "-x", "4", "--max-download-limit", "2M"]))
    });
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(sha256_file(&dir.path().join("xcap/w.bin")), want);
    assert!(hub.cdn().requests().is_empty(), "read through Xet");
    let (peak, average) = peak_and_average(&samples, 2000);
    assert!(
        peak <= CAP as f64 * 1.1,
        "{:.2} MiB/s of xorbs over two seconds, cap 2 MiB/s",
        peak / (1 << 20) as f64
    );
    assert!(average > CAP as f64 * 0.5, "{average:.0} B/s on average");
}
