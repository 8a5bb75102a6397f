//! A file missing from the cache, fetched from upstream once however many
//! clients ask for it (single flight), by the engine (the retries,
//! proxies and checksum of any hfd download), into the cache layout: data
//! in the repo's `.hfd/partial/<blob>.part` (where `hfd --cache-dir` puts
//! it too), the blob named by its hash only once verified, then the
//! snapshot's link, the revision's ref and huggingface_hub's tree listing.
//!
//! A flight lives on its own task: a client that goes away does not stop
//! it (others may be waiting, and the next client finds the blob). While
//! it runs, its waiters read the bytes already written
//! ([`crate::serve::growing`]); when it ends it leaves the map, so the
//! next request finds the blob in the cache.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::{Semaphore, watch};

use super::Inner;
use super::meta::Auth;
use crate::engine::{self, DownloadSpec, Progress};
use crate::hub::api::RepoFile;
use crate::hub::cache::RepoCache;
use crate::hub::state::{HFD_DIR, safe_relative};
use crate::hub::{RepoId, RepoType};
use crate::serve::growing::{End, Files};
use crate::storage::folder::Folder;
use crate::storage::watch::{Written, WrittenWatch};
use crate::sync::lock;

/// Attempts when the data fails its checksum (as many as an hfd run makes).
const ATTEMPTS: u32 = 3;

/// One upstream fetch, and what its waiters watch.
pub struct Flight {
    written: WrittenWatch,
    end: watch::Sender<End>,
    files: FlightFiles,
    /// When it started: the Last-Modified of answers made meanwhile.
    pub started: SystemTime,
}

impl Flight {
    pub fn written(&self) -> watch::Receiver<Written> {
        self.written.subscribe()
    }

    pub fn end(&self) -> watch::Receiver<End> {
        self.end.subscribe()
    }

    pub fn files(&self) -> Box<dyn Files> {
        Box::new(self.files.clone())
    }
}

/// The flight's data file and blob, opened by handle (no link followed).
#[derive(Clone, Debug)]
struct FlightFiles {
    partial: Folder,
    blobs: Folder,
    blob: String,
}

impl Files for FlightFiles {
    fn part(&self) -> Option<File> {
        self.partial
            .open_read(OsStr::new(&format!("{}.part", self.blob)))
            .ok()
    }

    fn blob(&self) -> Option<File> {
        self.blobs.open_read(OsStr::new(&self.blob)).ok()
    }
}

/// What to fetch.
pub struct Job {
    pub repo_type: RepoType,
    pub repo: RepoId,
    /// The revision asked for (its ref is written), and its commit.
    pub rev: String,
    pub commit: String,
    pub file: RepoFile,
    pub blob: String,
    /// Every file of the commit (huggingface_hub's `trees/` listing).
    pub listing: Arc<Vec<RepoFile>>,
    /// The client's credentials, for a gated or private repo only (a
    /// public file is fetched without any: one client's bad token must not
    /// fail everyone's download).
    pub auth: Auth,
}

/// Flights at once, at most (each holds a permit while it runs).
const MAX_FLIGHTS: usize = 1024;

/// The flights under way, by repo folder and blob.
pub struct Flights {
    map: Mutex<HashMap<(String, String), Arc<Flight>>>,
    /// Flights started, in all (tests and logs).
    pub started: AtomicU64,
    running: Arc<Semaphore>,
}

impl Default for Flights {
    fn default() -> Self {
        Flights {
            map: Mutex::default(),
            started: AtomicU64::new(0),
            running: Arc::new(Semaphore::new(MAX_FLIGHTS)),
        }
    }
}

impl Flights {
    /// The flight fetching `job`'s blob: the one under way, or a new one.
    pub fn get_or_start(&self, inner: &Arc<Inner>, job: Job) -> Result<Arc<Flight>, String> {
        let cache = RepoCache::open(&inner.cache_dir, job.repo_type, &job.repo)?;
        let key = (cache.repo_rel().display().to_string(), job.blob.clone());
        let mut map = lock(&self.map);
        if let Some(f) = map.get(&key) {
            return Ok(f.clone());
        }
        let permit = self.running.clone().try_acquire_owned().map_err(|_| {
            format!("{MAX_FLIGHTS} files are being fetched from upstream already; try again")
        })?;
        let top = Folder::open(&inner.cache_dir).map_err(|e| e.to_string())?;
        let partial = top
            .sub(&cache.repo_rel().join(HFD_DIR).join("partial"))
            .map_err(|e| e.to_string())?;
        let blobs = top
            .sub(&cache.repo_rel().join("blobs"))
            .map_err(|e| e.to_string())?;
        let flight = Arc::new(Flight {
            written: WrittenWatch::new(),
            end: watch::channel(End::Running).0,
            files: FlightFiles {
                partial,
                blobs,
                blob: job.blob.clone(),
            },
            started: SystemTime::now(),
        });
        map.insert(key.clone(), flight.clone());
        self.started.fetch_add(1, Relaxed);
        drop(map);
        let inner = inner.clone();
        let f = flight.clone();
        tokio::spawn(async move {
            let end = match fly(&inner, &cache, &job, &f).await {
                Ok(()) => End::Done,
                Err(e) => {
                    tracing::warn!("{}: {}: {e}", job.repo, job.file.path);
                    End::Failed(e)
                }
            };
            f.end.send_replace(end);
            lock(&inner.flights.map).remove(&key);
            drop(permit);
        });
        Ok(flight)
    }

    /// Waits (at most `limit`) for the flights under way to end; they were
    /// told to stop, and save what they received.
    pub async fn drain(&self, limit: std::time::Duration) {
        let all = MAX_FLIGHTS as u32;
        let _ = tokio::time::timeout(limit, self.running.acquire_many(all)).await;
    }
}

/// Downloads the blob and makes it visible in the snapshot.
async fn fly(inner: &Inner, cache: &RepoCache, job: &Job, flight: &Flight) -> Result<(), String> {
    let url = inner
        .endpoint
        .resolve_url(job.repo_type, &job.repo, &job.commit, &job.file.path)?;
    let part: PathBuf = flight
        .files
        .partial
        .path_of(OsStr::new(&format!("{}.part", job.blob)));
    let mut spec = DownloadSpec::new(url, cache.blob_path(&job.blob));
    spec.part_path = Some(part);
    spec.root = Some(inner.cache_dir.clone());
    spec.headers = job.auth.headers();
    spec.connections = inner.connections;
    spec.per_source = inner.connections;
    spec.retry = inner.retry.clone();
    spec.checksum = job.file.checksum();
    // A listing without sizes says 0; then the hash decides (as hfd does).
    spec.expected_size = (job.file.size > 0).then_some(job.file.size);
    spec.allow_restart = true;
    spec.allow_overwrite = true;
    spec.written = Some(flight.written.clone());
    for attempt in 1..=ATTEMPTS {
        let progress = Progress::new();
        match engine::download(&inner.net, &spec, progress, inner.stop.clone()).await {
            Ok(_) => break,
            Err(engine::Error::ChecksumMismatch { .. }) if attempt < ATTEMPTS => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
    // The blob is verified and in place: what follows only makes it
    // visible to huggingface_hub, and a request that finds the blob does
    // it again, so a failure here is a warning, not a failed fetch.
    link_existing(cache, (&job.rev, &job.commit), &job.file.path, &job.blob);
    if let Err(e) = cache.write_tree(&job.commit, &job.listing) {
        tracing::warn!("{}: huggingface_hub's listing not written: {e}", job.repo);
    }
    Ok(())
}

/// Makes a blob already in the cache visible at `path` of `commit` (and
/// the ref), as a finished flight would. Two requests may do it at once:
/// what one fails at the other has done, so failures are only logged.
pub fn link_existing(cache: &RepoCache, (rev, commit): (&str, &str), path: &str, blob: &str) {
    let linked = safe_relative(path).and_then(|rel| cache.link(commit, &rel, blob));
    if let Err(e) = linked {
        tracing::warn!("{path}: snapshot link not made: {e}");
    }
    if rev != commit
        && cache.read_ref(rev).as_deref() != Some(commit)
        && let Err(e) = cache.write_ref(rev, commit)
    {
        tracing::warn!("refs/{rev} not written: {e}");
    }
}
