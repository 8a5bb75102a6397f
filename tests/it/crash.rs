//! Kill campaigns: the real binary killed with SIGKILL at random moments,
//! resumed, and killed again; every finished file is checked by sha256 and
//! the bytes the server sent twice are counted.
//!
//! CI runs a short campaign (30 kills). The full one is
//! `HFD_CAMPAIGN_KILLS=1000 cargo test --release --test it -- --ignored --nocapture crash_campaign_full`
//! (see `benches/crash_campaign.sh`); its results are in docs/reliability.md.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

/// What a campaign saw.
#[derive(Debug)]
pub(crate) struct Campaign {
    pub seed: u64,
    pub kills: u64,
    pub files_completed: u64,
    pub corrupted: u64,
    /// Bytes the server sent beyond what the completed files needed.
    pub fetched_twice: u64,
    /// Aggregate transfer rate while downloading, bytes/s.
    pub rate: f64,
    pub elapsed: Duration,
}

/// `HFD_CAMPAIGN_SEED` when set (to replay a campaign), else a random seed.
pub(crate) fn campaign_seed() -> u64 {
    std::env::var("HFD_CAMPAIGN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

/// A number from the environment, else `default`.
pub(crate) fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Runs `kills` SIGKILLs against hfget downloading `len`-byte files at
/// `conns` × `per_conn` bytes/s, with kill times uniform in `window`.
/// Default checkpoint interval: the campaign measures what users get.
fn campaign(kills: u64, len: u64, conns: u32, per_conn: u64, window: (u64, u64)) -> Campaign {
    let server = TestServer::start();
    let dir = tempdir();
    let seed = campaign_seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();
    let mut file_no = 0u64;
    let add_file = |n: u64| {
        let f = FileSpec::generated(seed ^ n, len).throttle(per_conn);
        let sha = f.sha256_hex();
        server.add_file(&format!("/f{n}.bin"), f);
        sha
    };
    let mut want = add_file(file_no);
    let mut c = Campaign {
        seed,
        kills: 0,
        files_completed: 0,
        corrupted: 0,
        fetched_twice: 0,
        rate: 0.0,
        elapsed: Duration::ZERO,
    };
    let mut busy = Duration::ZERO;
    // `bad_before`: the file was already wrong before something (a re-run)
    // could repair it; it counts as corrupted whatever it is now.
    let check = |dir: &Path, n: u64, want: &str, bad_before: bool, c: &mut Campaign| {
        let out = dir.join(format!("f{n}.bin"));
        if bad_before || sha256_file(&out) != want {
            c.corrupted += 1;
            eprintln!("seed {seed}: file {n} is CORRUPTED");
        }
        c.files_completed += 1;
        std::fs::remove_file(out).unwrap();
    };
    while c.kills < kills {
        let url = server.url(&format!("/f{file_no}.bin"));
        let name = format!("f{file_no}.bin");
        let mut child = hfget(dir.path())
            .args([&url, "-o", &name, "-x", &conns.to_string(), "-q"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        let wait = Duration::from_millis(rng.u64(window.0..window.1));
        let deadline = t0 + wait;
        match wait_until(&mut child, deadline) {
            Some(st) => {
                busy += t0.elapsed();
                let err = child.wait_with_output().unwrap().stderr;
                assert!(
                    st.success(),
                    "seed {seed}: hfget failed: {}",
                    String::from_utf8_lossy(&err)
                );
                check(dir.path(), file_no, &want, false, &mut c);
                file_no += 1;
                want = add_file(file_no);
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                busy += t0.elapsed();
                c.kills += 1;
                if dir.path().join(&name).exists() {
                    // Killed between the final rename and the exit: the file
                    // must be whole as the kill left it (checked before the
                    // re-run, which could repair it), and a re-run (`-c`, as
                    // the name is taken) must tidy up any control file and
                    // succeed.
                    let bad = sha256_file(&dir.path().join(&name)) != want;
                    if bad {
                        eprintln!("seed {seed}: file {file_no} is wrong after a late kill");
                    }
                    let (code, _, err) = run(hfget(dir.path()).args([&url, "-o", &name, "-c"]));
                    assert_eq!(code, 0, "seed {seed}: re-run after a late kill: {err}");
                    check(dir.path(), file_no, &want, bad, &mut c);
                    file_no += 1;
                    want = add_file(file_no);
                }
            }
        }
    }
    // Finish the last file.
    let t0 = Instant::now();
    let (code, _, err) = run(hfget(dir.path()).args([
        &server.url(&format!("/f{file_no}.bin")),
        "-o",
        &format!("f{file_no}.bin"),
        "-x",
        &conns.to_string(),
    ]));
    busy += t0.elapsed();
    assert_eq!(code, 0, "seed {seed}: {err}");
    check(dir.path(), file_no, &want, false, &mut c);
    let served = server.stats().bytes_served;
    c.fetched_twice = served.saturating_sub(c.files_completed * len);
    c.rate = served as f64 / busy.as_secs_f64();
    c.elapsed = started.elapsed();
    assert!(
        listing(dir.path()).is_empty(),
        "seed {seed}: leftovers {:?}",
        listing(dir.path())
    );
    c
}

/// Prints the campaign's line and returns the seconds of transfer lost per kill.
pub(crate) fn report(c: &Campaign) -> f64 {
    let lost_secs = c.fetched_twice as f64 / c.rate.max(1.0) / c.kills.max(1) as f64;
    eprintln!(
        "campaign seed {}: {} kills, {} files completed, {} corrupted, {:.1} MiB fetched twice = {:.2} s of transfer per kill at {:.1} MiB/s, {:?}",
        c.seed,
        c.kills,
        c.files_completed,
        c.corrupted,
        c.fetched_twice as f64 / 1048576.0,
        lost_secs,
        c.rate / 1048576.0,
        c.elapsed
    );
    lost_secs
}

#[test]
fn crash_campaign_short() {
    let c = campaign(30, 256 << 20, 8, 4 << 20, (100, 2000));
    let lost = report(&c);
    assert_eq!(c.corrupted, 0, "seed {}", c.seed);
    // At most about one checkpoint interval (1 s) plus requests in flight.
    assert!(lost <= 2.5, "seed {}: {lost:.2} s lost per kill", c.seed);
}

#[test]
#[ignore = "the full campaign: about 20 minutes; see benches/crash_campaign.sh"]
fn crash_campaign_full() {
    let kills = env_u64("HFD_CAMPAIGN_KILLS", 1000);
    let c = campaign(kills, 512 << 20, 16, 4 << 20, (50, 3000));
    let lost = report(&c);
    assert_eq!(c.corrupted, 0, "seed {}", c.seed);
    assert!(lost <= 2.5, "seed {}: {lost:.2} s lost per kill", c.seed);
}
