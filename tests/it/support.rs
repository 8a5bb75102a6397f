//! Shared helpers: a runtime, engine runs with test settings, the real
//! binaries with a clean environment, and file hashes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use hfd::engine::{self, DownloadSpec, Error, Outcome, Progress};
use hfd::net::{Net, NetOptions};
use sha2::Digest;
use tokio_util::sync::CancellationToken;
use url::Url;

pub use hfd_testserver::{Fail, FileSpec, Redirect, ServerOptions, TestServer};

/// A spec with test settings: no backoff delays of our own.
pub fn spec(url: &str, out: &Path) -> DownloadSpec {
    let mut s = DownloadSpec::new(Url::parse(url).unwrap(), out);
    s.retry.base = std::time::Duration::ZERO;
    s
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs the engine in-process with direct connections.
pub fn download(spec: &DownloadSpec) -> Result<Outcome, Error> {
    download_with(spec, NetOptions::default(), Progress::new())
}

pub fn download_with(
    spec: &DownloadSpec,
    opts: NetOptions,
    progress: Arc<Progress>,
) -> Result<Outcome, Error> {
    runtime().block_on(engine::download(
        &Net::new(opts),
        spec,
        progress,
        CancellationToken::new(),
    ))
}

pub fn sha256_file(p: &Path) -> String {
    let mut f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap();
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hfd-it-")
        .tempdir()
        .unwrap()
}

/// Every file under `dir`, relative, `.hfd/` included, sorted; nothing for
/// a missing `dir`.
pub fn all_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// `p` (relative to a local dir) is one of huggingface_hub's files that
/// hfd keeps beside the repo file `w`: its download record, the folder's
/// `.gitignore` and `CACHEDIR.TAG`, or a commit's `trees/<commit>.json`.
pub fn is_hf_record(p: &str, w: &str) -> bool {
    let tree = p
        .strip_prefix(".cache/huggingface/trees/")
        .and_then(|n| n.strip_suffix(".json"))
        .is_some_and(|c| c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()));
    tree || p == ".cache/huggingface/.gitignore"
        || p == ".cache/huggingface/CACHEDIR.TAG"
        || p == format!(".cache/huggingface/download/{w}.metadata")
}

/// Waits (at most 60 s) until `reached()` holds while `child` still runs,
/// polling every 20 ms: the moment to kill it, judged by what a server saw.
pub fn wait_for_progress(
    child: &mut std::process::Child,
    what: &str,
    mut reached: impl FnMut() -> bool,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !reached() {
        assert!(std::time::Instant::now() < deadline, "{what} did not start");
        assert!(child.try_wait().unwrap().is_none(), "it ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Waits for `child` to exit until `deadline`; `None` if it is still running.
pub fn wait_until(
    child: &mut std::process::Child,
    deadline: std::time::Instant,
) -> Option<std::process::ExitStatus> {
    while std::time::Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}

/// Names of the files in `dir`, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const PROXY_VARS: &[&str] = &[
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "HF_TOKEN",
    "HF_ENDPOINT",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUEST_METHOD",
];

/// The `hfget` binary with an environment that cannot leak in: no proxy
/// variables, no terminal; and no backoff of its own (`--retry-wait=0`).
pub fn hfget(dir: &Path) -> Command {
    bin(env!("CARGO_BIN_EXE_hfget"), dir)
}

pub fn hfd_bin(dir: &Path) -> Command {
    bin(env!("CARGO_BIN_EXE_hfd"), dir)
}

fn bin(path: &str, dir: &Path) -> Command {
    let mut c = bare_bin(path, dir);
    c.arg("--retry-wait=0");
    c
}

/// The binary at `path` in `dir`, with the clean environment of [`hfget`]
/// but no argument at all.
pub fn bare_bin(path: &str, dir: &Path) -> Command {
    let mut c = Command::new(path);
    c.current_dir(dir);
    for v in PROXY_VARS {
        c.env_remove(v);
    }
    c.env("NO_COLOR", "1").env("TERM", "dumb");
    c
}

/// Runs a command, returning (exit code, stdout, stderr).
pub fn run(c: &mut Command) -> (i32, String, String) {
    let out = c.output().expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

pub fn join(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// What a server had done at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub at: std::time::Instant,
    /// Body bytes produced (`Stats::bytes_served`).
    pub served: u64,
    /// Bytes that reached the client (`Stats::bytes_delivered`).
    pub delivered: u64,
    pub transfers: u64,
}

/// Runs `f` while sampling `server`'s counters every 100 ms.
pub fn sampling<T>(server: &TestServer, f: impl FnOnce() -> T) -> (T, Vec<Sample>) {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut v = Vec::new();
            // Bounded: at most ten minutes of samples.
            for _ in 0..6000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let st = server.stats();
                v.push(Sample {
                    at: std::time::Instant::now(),
                    served: st.bytes_served,
                    delivered: st.bytes_delivered,
                    transfers: st.current_transfers,
                });
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            v
        });
        let r = f();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (r, sampler.join().unwrap())
    })
}

/// The Python interpreter of the test virtual environment (`.ci/pyenv.sh`,
/// with huggingface_hub and hf_xet), or `None` after printing why the
/// caller skips: tests that check us against the official clients need it.
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("HFD_TEST_PYTHON") {
        Some(p) if Path::new(&p).is_file() => Some(PathBuf::from(p)),
        _ => {
            println!(
                "SKIPPED: HFD_TEST_PYTHON is not set (run `bash .ci/pyenv.sh` and export its output)"
            );
            None
        }
    }
}

/// Runs `script` with the test interpreter and `args`, in a clean
/// environment except for `env`; returns (exit code, stdout, stderr).
pub fn run_python(
    python: &Path,
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut c = Command::new(python);
    c.arg("-c").arg(script).args(args);
    for v in PROXY_VARS {
        c.env_remove(v);
    }
    // A home of its own for each run: no token or settings of the user's,
    // and hf_xet's state (caches, logs) not shared by tests running at once.
    let home = tempdir();
    c.env_remove("HF_HUB_CACHE").env("HF_HOME", home.path());
    c.env("HF_HUB_DISABLE_TELEMETRY", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    run(&mut c)
}

/// Bytes of repo files `hub` served: LFS files from its CDN, git files from
/// its resolve cache (API answers are not counted).
pub fn file_bytes_served(hub: &hfd_testserver::hub::MockHub) -> u64 {
    let git: u64 = hub
        .hub()
        .stats()
        .per_path
        .iter()
        .filter(|(p, _)| p.starts_with("/api/resolve-cache/"))
        .map(|(_, s)| s.bytes_served)
        .sum();
    hub.cdn().stats().bytes_served + git
}
