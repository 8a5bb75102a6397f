//! Power-cut campaign: hfget downloads onto cutfs (see cutfs.rs) from the
//! project's local server; at a random moment the process is killed and
//! the power is cut (the file system keeps what was synced plus a random,
//! torn part of the rest). After every cut, the control file is loaded with
//! hfget's own loader and every byte it claims as done is compared with the
//! true content; a file under its final name must be whole and right. Then
//! hfget runs again on what survived.
//!
//! Usage: hfd-powercut HFGET_BINARY [CUTS] [SEED]
//! (benches/powercut.sh builds both and runs it). Needs /dev/fuse and root.

mod cutfs;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hfd::storage::control_file::{ControlError, ControlFile};
use hfd_testserver::{Content, FileSpec, TestServer};

use cutfs::{CutFs, State};

const LEN: u64 = 64 << 20;
const CONNS: u32 = 8;
const PER_CONN: u64 = 2 << 20;
/// Kill and cut between these many ms after the start.
const WINDOW: (u64, u64) = (50, 2500);

#[derive(Default, Debug)]
struct Tally {
    cuts: u64,
    files_completed: u64,
    /// Resumes whose control file claimed bytes; bytes claimed and checked.
    resumes: u64,
    claimed_bytes: u64,
    /// Claimed bytes that were not the file's bytes: must stay 0.
    wrong_bytes: u64,
    /// Final files with wrong content: must stay 0.
    wrong_finals: u64,
    /// Control files the loader refused as damaged (hfget starts over).
    damaged: u64,
    /// A run was cut before a control file was durably there (a fresh start).
    fresh: u64,
    /// Failed hfget runs (they must not happen).
    failed_runs: u64,
}

fn mount(state: &Arc<Mutex<State>>, at: &Path) -> fuser::BackgroundSession {
    fuser::spawn_mount2(
        CutFs(state.clone()),
        at,
        &[fuser::MountOption::FSName("cutfs".into())],
    )
    .unwrap_or_else(|e| {
        eprintln!(
            "cannot mount cutfs at {}: {e} (needs /dev/fuse and root)",
            at.display()
        );
        std::process::exit(2)
    })
}

/// Unmounts (dropping the session unmounts; its thread ends by itself).
/// `BackgroundSession::join` would panic when the kernel reports the
/// aborted connection (ECONNABORTED) as the session's result.
fn unmount(session: fuser::BackgroundSession) {
    drop(session);
}

/// What survived a cut, checked against the truth.
fn check(mnt: &Path, name: &str, content: &Content, ran: bool, t: &mut Tally) -> bool {
    let out = mnt.join(name);
    if out.exists() {
        let data = std::fs::read(&out).unwrap();
        let mut want = vec![0u8; content.len() as usize];
        content.fill(0, &mut want);
        if data != want {
            t.wrong_finals += 1;
            eprintln!("WRONG: {name} under its final name has the wrong content");
        }
        return true;
    }
    let ctl = mnt.join(format!("{name}.part.ctl"));
    match ControlFile::open(&ctl) {
        Ok(Some((c, state))) => {
            if !state.done.is_empty() {
                t.resumes += 1;
            }
            let data = std::fs::read(mnt.join(format!("{name}.part"))).unwrap_or_default();
            for r in state.done.iter() {
                t.claimed_bytes += r.end - r.start;
                let mut want = vec![0u8; (r.end - r.start) as usize];
                content.fill(r.start, &mut want);
                let have = data
                    .get(r.start as usize..(r.end as usize).min(data.len()))
                    .unwrap_or(&[]);
                let bad = want
                    .iter()
                    .enumerate()
                    .filter(|(i, b)| have.get(*i) != Some(b))
                    .count() as u64;
                if bad > 0 {
                    t.wrong_bytes += bad;
                    eprintln!(
                        "WRONG: {name}: {bad} of the claimed bytes {}..{} are not the file's",
                        r.start, r.end
                    );
                }
            }
            drop(c);
        }
        Ok(None) if ran => t.fresh += 1,
        Ok(None) => {}
        Err(ControlError::Damaged { reason, .. }) => {
            t.damaged += 1;
            eprintln!("  control file damaged by the cut ({reason}); hfget starts over");
        }
        Err(e) => {
            t.failed_runs += 1;
            eprintln!("UNEXPECTED: {e}");
        }
    }
    false
}

fn hfget(bin: &Path, mnt: &Path, url: &str, name: &str) -> Command {
    let mut c = Command::new(bin);
    c.current_dir(mnt)
        .args([url, "-o", name, "-x", &CONNS.to_string(), "-q", "--retry-wait=0"])
        .env("NO_COLOR", "1")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("all_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(bin) = args.get(1).map(PathBuf::from) else {
        eprintln!("usage: hfd-powercut HFGET_BINARY [CUTS] [SEED]");
        std::process::exit(2)
    };
    let bin = std::fs::canonicalize(&bin).expect("the hfget binary exists");
    let cuts: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let seed: u64 = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();

    let server = TestServer::start();
    let mnt_dir = std::env::temp_dir().join(format!("hfd-powercut-{}", std::process::id()));
    std::fs::create_dir_all(&mnt_dir).unwrap();
    let state = Arc::new(Mutex::new(State::new()));
    let mut t = Tally::default();
    let mut file_no = 0u64;
    let add = |n: u64| {
        let c = Content::new(seed ^ n, LEN);
        server.add_file(
            &format!("/f{n}.bin"),
            FileSpec::generated(seed ^ n, LEN).throttle(PER_CONN),
        );
        c
    };
    let mut content = add(file_no);
    println!("power-cut campaign, seed {seed}: {cuts} cuts, {LEN}-byte files");

    let mut last_run = false;
    // Whether hfget ran on the current file yet.
    let mut ran = false;
    loop {
        let session = mount(&state, &mnt_dir);
        let name = format!("f{file_no}.bin");
        if check(&mnt_dir, &name, &content, ran, &mut t) {
            std::fs::remove_file(mnt_dir.join(&name)).unwrap();
            for leftover in [format!("{name}.part"), format!("{name}.part.ctl")] {
                if mnt_dir.join(&leftover).exists() {
                    // Cut between the rename and the control file's removal:
                    // hfget tidies this on its next run; here the file is done.
                    std::fs::remove_file(mnt_dir.join(&leftover)).unwrap();
                }
            }
            state.lock().unwrap().sync_all();
            t.files_completed += 1;
            file_no += 1;
            content = add(file_no);
            ran = false;
            if last_run {
                unmount(session);
                break;
            }
            unmount(session);
            continue;
        }
        let url = server.url(&format!("/{name}"));
        let mut cmd = hfget(&bin, &mnt_dir, &url, &name);
        if t.cuts >= cuts {
            // The end: let the download finish on what the cuts left.
            last_run = true;
            let out = cmd.output().unwrap();
            if !out.status.success() {
                t.failed_runs += 1;
                eprintln!("final run failed: {}", String::from_utf8_lossy(&out.stderr));
                unmount(session);
                break;
            }
            unmount(session);
            continue;
        }
        ran = true;
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_millis(rng.u64(WINDOW.0..WINDOW.1));
        let mut exited = None;
        while Instant::now() < deadline {
            if let Some(st) = child.try_wait().unwrap() {
                exited = Some(st);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        match exited {
            Some(st) if !st.success() => {
                t.failed_runs += 1;
                let out = child.wait_with_output().unwrap();
                eprintln!(
                    "hfget failed ({st}): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Some(_) => {}
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
            }
        }
        unmount(session);
        // The power cut: the process is gone, the mount is down.
        state.lock().unwrap().cut(&mut rng);
        t.cuts += 1;
        if t.cuts % 25 == 0 {
            println!("  {} cuts, {:?}", t.cuts, started.elapsed());
        }
    }
    let _ = std::fs::remove_dir(&mnt_dir);
    let served = server.stats().bytes_served;
    let refetched = served.saturating_sub(t.files_completed * LEN);
    let st = state.lock().unwrap().stats;
    println!("{t:?}");
    println!("{st:?}");
    println!(
        "seed {seed}: {} cuts, {} files completed, {} resumes checking {:.1} MiB of claimed bytes, \
         {} wrong bytes, {} wrong final files, {} control files damaged by a cut, {} fresh starts, \
         {} failed runs, {:.1} MiB fetched again ({:.2} MiB per cut), {:?}",
        t.cuts,
        t.files_completed,
        t.resumes,
        t.claimed_bytes as f64 / 1048576.0,
        t.wrong_bytes,
        t.wrong_finals,
        t.damaged,
        t.fresh,
        t.failed_runs,
        refetched as f64 / 1048576.0,
        refetched as f64 / 1048576.0 / t.cuts.max(1) as f64,
        started.elapsed()
    );
    if t.wrong_bytes > 0 || t.wrong_finals > 0 || t.failed_runs > 0 {
        std::process::exit(1);
    }
}
