//! The kill campaign for `hfd`: the real binary downloading a multi-file
//! repo from the mock Hub, killed with SIGKILL at random moments and run
//! again, over and over. Each time the whole repo is in place, every file is
//! checked by sha256 and a fresh local dir starts the next round; at the end
//! the bytes the servers sent twice are counted.
//!
//! With `cache` set, the same into the Hugging Face cache (`--cache-dir`):
//! after every kill, every file under `blobs/` must have the hash that is
//! its name (nothing half-written ever gets a blob's name).
//!
//! CI runs a short campaign (30 kills, 15 into the cache, and 8 into the cache
//! with files of 70-90 MiB, hashed while they arrive). The full one is
//! `HFD_CAMPAIGN_KILLS=500 cargo test --release --test it -- --ignored --nocapture hfd_crash_campaign_full`
//! (see `benches/crash_campaign_hfd.sh`); its results are in docs/reliability.md.

use std::process::Stdio;
use std::time::{Duration, Instant};

use std::collections::HashSet;
use std::path::Path;

use hfd::engine::Checksum;
use hfd::engine::verify::digest_file;
use hfd_testserver::hub::{MockHub, RepoSpec};

use crate::crash::{Campaign, campaign_seed, env_u64, report};
use crate::support::*;

/// How one campaign is set up.
struct Setup {
    kills: u64,
    /// Stop killing after this long even if `kills` is not reached.
    max_time: Duration,
    /// LFS files in the repo (plus 4 small git files).
    files: usize,
    sizes: std::ops::Range<u64>,
    /// `-x` and `-j`.
    conns: u32,
    jobs: u32,
    /// Bytes/s per connection on the CDN.
    per_conn: u64,
    /// Kill times, ms after the start, uniform in this range.
    window: (u64, u64),
    /// Into the Hugging Face cache (`--cache-dir`) instead of a local dir.
    cache: bool,
}

/// Files under `blobs/` of a cache repo folder whose content is not the
/// hash their name says (or that have no hash for a name): each is
/// counted, and named on stderr. `seen` holds blobs already checked.
fn bad_blobs(repo: &Path, seen: &mut HashSet<String>) -> u64 {
    let mut bad = 0;
    for name in all_files(&repo.join("blobs")) {
        if seen.contains(&name) {
            continue;
        }
        let sum = match name.len() {
            64 => Checksum::sha256(&name),
            40 => Checksum::git_blob_sha1(&name),
            _ => Err(String::new()),
        };
        let ok = sum.is_ok_and(|c| {
            digest_file(&repo.join("blobs").join(&name), &c).is_ok_and(|h| h == c.hex())
        });
        if ok {
            seen.insert(name);
        } else {
            eprintln!("blobs/{name} is not what its name says: CORRUPTED");
            bad += 1;
        }
    }
    bad
}

fn campaign(s: &Setup) -> Campaign {
    let seed = campaign_seed();
    let hub = MockHub::start();
    let repo = RepoSpec::generated("org/camp", s.files, s.sizes.clone(), seed, Some(s.per_conn));
    let want: Vec<(String, String)> = repo
        .files
        .iter()
        .map(|f| (f.path.clone(), f.spec.sha256_hex()))
        .collect();
    let round_bytes: u64 = repo.files.iter().map(|f| f.spec.len()).sum();
    let commit = hub.add_repo(repo);
    let dir = tempdir();
    // Where round `r`'s files are, and (in the cache) the repo's folder.
    let repo_dir = |round: u64| dir.path().join(format!("r{round}/models--org--camp"));
    let files_dir = |round: u64| {
        if s.cache {
            repo_dir(round).join("snapshots").join(&commit)
        } else {
            dir.path().join(format!("r{round}"))
        }
    };
    let mut seen_blobs = HashSet::new();
    let log = dir.path().join("stderr.log");
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();
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
    let mut round = 0u64;
    let mut rounds_done = 0u64;
    let args = |round: u64| {
        vec![
            "org/camp".to_string(),
            if s.cache {
                "--cache-dir"
            } else {
                "--local-dir"
            }
            .into(),
            format!("r{round}"),
            "-x".into(),
            s.conns.to_string(),
            "-j".into(),
            s.jobs.to_string(),
            "-q".into(),
        ]
    };
    // A whole repo is in place: check it, then start the next round afresh.
    let check = |round: u64, c: &mut Campaign, seen: &mut HashSet<String>| {
        let local = files_dir(round);
        for (path, sha) in &want {
            if sha256_file(&local.join(path)) != *sha {
                c.corrupted += 1;
                eprintln!("seed {seed}: round {round}: {path} is CORRUPTED");
            }
            c.files_completed += 1;
        }
        let state = if s.cache {
            repo_dir(round)
        } else {
            local.clone()
        };
        let left: Vec<String> = all_files(&state.join(".hfd/partial"));
        assert!(
            left.is_empty(),
            "seed {seed}: round {round}: leftovers {left:?}"
        );
        if s.cache {
            c.corrupted += bad_blobs(&repo_dir(round), seen);
            // Every file has its blob (their contents all differ), and
            // nothing else is there.
            let blobs = all_files(&repo_dir(round).join("blobs"));
            assert_eq!(blobs.len(), want.len(), "seed {seed}: {blobs:?}");
            seen.clear();
            std::fs::remove_dir_all(dir.path().join(format!("r{round}"))).unwrap();
            return;
        }
        let extra: Vec<String> = all_files(&local)
            .into_iter()
            .filter(|p| {
                !p.starts_with(".hfd/") && !want.iter().any(|(w, _)| w == p || is_hf_record(p, w))
            })
            .collect();
        assert!(
            extra.is_empty(),
            "seed {seed}: round {round}: strays {extra:?}"
        );
        std::fs::remove_dir_all(&local).unwrap();
    };
    while c.kills < s.kills && started.elapsed() < s.max_time {
        let mut child = hfd_bin(dir.path())
            .env("HF_ENDPOINT", hub.endpoint())
            .args(args(round))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_millis(rng.u64(s.window.0..s.window.1));
        match wait_until(&mut child, deadline) {
            Some(st) => {
                busy += t0.elapsed();
                assert!(
                    st.success(),
                    "seed {seed}: hfd failed: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                check(round, &mut c, &mut seen_blobs);
                rounds_done += 1;
                round += 1;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                busy += t0.elapsed();
                c.kills += 1;
                if s.cache {
                    c.corrupted += bad_blobs(&repo_dir(round), &mut seen_blobs);
                }
            }
        }
    }
    // Finish the last round.
    let t0 = Instant::now();
    let mut cmd = hfd_bin(dir.path());
    cmd.env("HF_ENDPOINT", hub.endpoint()).args(args(round));
    let (code, out, err) = run(&mut cmd);
    busy += t0.elapsed();
    assert_eq!(code, 0, "seed {seed}: {out}{err}");
    check(round, &mut c, &mut seen_blobs);
    rounds_done += 1;
    let served = file_bytes_served(&hub);
    c.fetched_twice = served.saturating_sub(rounds_done * round_bytes);
    c.rate = served as f64 / busy.as_secs_f64();
    c.elapsed = started.elapsed();
    c
}

#[test]
fn hfd_crash_campaign_short() {
    let c = campaign(&Setup {
        kills: 30,
        max_time: Duration::from_secs(45),
        files: 20,
        sizes: (2 << 20)..(6 << 20),
        conns: 4,
        jobs: 4,
        per_conn: 2 << 20,
        window: (100, 2000),
        cache: false,
    });
    let lost = report(&c);
    assert_eq!(c.corrupted, 0, "seed {}", c.seed);
    assert!(c.kills >= 10, "seed {}: only {} kills", c.seed, c.kills);
    // About one checkpoint interval (1 s) plus requests in flight.
    assert!(lost <= 2.5, "seed {}: {lost:.2} s lost per kill", c.seed);
}

#[test]
#[ignore = "the full hfd campaign: about 15 minutes; see benches/crash_campaign_hfd.sh"]
fn hfd_crash_campaign_full() {
    let c = campaign(&Setup {
        kills: env_u64("HFD_CAMPAIGN_KILLS", 500),
        max_time: Duration::from_secs(env_u64("HFD_CAMPAIGN_SECS", 1800)),
        files: 20,
        sizes: (4 << 20)..(24 << 20),
        conns: 8,
        jobs: 4,
        per_conn: 2 << 20,
        window: (50, 3000),
        cache: false,
    });
    let lost = report(&c);
    assert_eq!(c.corrupted, 0, "seed {}", c.seed);
    assert!(lost <= 2.5, "seed {}: {lost:.2} s lost per kill", c.seed);
}

/// `kill -9` into the Hugging Face cache: every round ends with every file
/// byte-exact behind its snapshot link, and no kill ever leaves a file
/// under `blobs/` that is not complete and verified.
#[test]
fn hfd_crash_campaign_into_the_cache() {
    let c = campaign(&Setup {
        kills: 15,
        max_time: Duration::from_secs(30),
        files: 10,
        sizes: (1 << 20)..(3 << 20),
        conns: 4,
        jobs: 4,
        per_conn: 2 << 20,
        window: (100, 1500),
        cache: true,
    });
    let lost = report(&c);
    assert_eq!(c.corrupted, 0, "seed {}", c.seed);
    assert!(c.kills >= 5, "seed {}: only {} kills", c.seed, c.kills);
    assert!(lost <= 2.5, "seed {}: {lost:.2} s lost per kill", c.seed);
}

/// The same with files large enough to be hashed while they arrive
/// (`engine::prefix_hash`, from 64 MiB): a kill in the middle of that hash
/// and a resume that hashes the kept bytes from disk never let a blob
/// through unverified.
#[test]
fn hfd_crash_campaign_into_the_cache_hashing_on_the_way() {
    let c = campaign(&Setup {
        kills: 8,
        max_time: Duration::from_secs(40),
        files: 2,
        sizes: (70 << 20)..(90 << 20),
        conns: 4,
        jobs: 2,
        per_conn: 8 << 20,
        window: (200, 2500),
        cache: true,
    });
    let lost = report(&c);
    assert_eq!(c.corrupted, 0, "seed {}", c.seed);
    assert!(c.kills >= 3, "seed {}: only {} kills", c.seed, c.kills);
    assert!(lost <= 2.5, "seed {}: {lost:.2} s lost per kill", c.seed);
}
