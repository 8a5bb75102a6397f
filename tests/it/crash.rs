//! The real binary killed with SIGKILL at random moments, then resumed: the
//! result must be byte-exact, and each kill may cost at most about one
//! segment of refetched bytes.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn sigkill_at_random_moments_then_resume() {
    let server = TestServer::start();
    let len: u64 = 128 << 20;
    let conns = 8u64;
    // 8 connections at 2 MiB/s: about 8 s in all, so kills land mid-transfer.
    let file = FileSpec::generated(41, len).throttle(2 << 20);
    let want = file.sha256_hex();
    server.add_file("/big.bin", file);
    let dir = tempdir();
    let url = server.url("/big.bin");
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let kills = 5;
    let started = Instant::now();
    for i in 0..kills {
        let mut child = hfget(dir.path())
            .args([
                &url,
                "-o",
                "big.bin",
                "-x",
                &conns.to_string(),
                "-q",
                "--auto-save-interval",
                "0.25",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let wait = Duration::from_millis(rng.u64(150..1200));
        std::thread::sleep(wait);
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(
            !dir.path().join("big.bin").exists(),
            "seed {seed}: kill {i} left a final file"
        );
    }
    let (code, _, err) =
        run(hfget(dir.path()).args([&url, "-o", "big.bin", "-x", &conns.to_string()]));
    assert_eq!(code, 0, "seed {seed}: {err}");
    assert_eq!(
        sha256_file(&dir.path().join("big.bin")),
        want,
        "seed {seed}"
    );
    assert_eq!(listing(dir.path()), vec!["big.bin"]);
    let served = server.stats().bytes_served;
    let segment = len / conns;
    let twice = served.saturating_sub(len);
    eprintln!(
        "seed {seed}: {kills} kills, {:.1} MiB fetched twice ({:.2} segments per kill), {:?}",
        twice as f64 / 1048576.0,
        twice as f64 / segment as f64 / kills as f64,
        started.elapsed()
    );
    assert!(
        twice <= kills * segment,
        "seed {seed}: {twice} bytes fetched twice"
    );
}
