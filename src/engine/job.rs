//! One download from start to finish.
//!
//! Order of events, and why:
//! 1. Look at what is on disk (final file, partial data, control file) before
//!    any network traffic, so a wrong invocation fails fast.
//! 2. Probe with a ranged GET from the first missing byte; its answer is data
//!    and becomes the first slot's first response.
//! 3. Compare the probe's length and validators with the control file: a file
//!    that changed on the server is never spliced onto old bytes.
//! 4. Reserve space, start the writer and checkpointer, start the slots.
//! 5. When every byte is written: final checkpoint, checksum, rename to the
//!    final name, fsync the folder, drop the control file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use http_body_util::BodyExt;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::adaptive::Growth;
use super::error::{Error, GaveUpKind};
use super::fetch::{ByteRange, Failure, Fetched, Hop, fetch, status_failure};
use super::progress::Progress;
use super::retry::RetryPolicy;
use super::scheduler::{Scheduler, Slot, Tuning, initial_pieces, useful_connections};
use super::source::Source;
use super::verify;
use super::worker::{self, FirstResponse};
use super::{DownloadSpec, Outcome, SourceCheck};
use crate::extent::ExtentSet;
use crate::net::http::{ContentRange, content_length, content_range, last_modified, strong_etag};
use crate::net::{Conn, Net, redact_url};
use crate::storage::control_file::{ControlError, ControlFile, ControlState, url_hash};
use crate::storage::writer::{Storage, WriteHandle, WriterOptions};
use crate::storage::{Allocation, StorageError, WriteMode, alloc, open_sink};
use crate::sync::lock;

/// Length and validators of the remote file, fixed at the start.
#[derive(Clone, Debug)]
pub struct Validators {
    pub total: u64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

#[derive(Clone, Debug)]
struct LastFailure {
    kind: GaveUpKind,
    detail: String,
    status: Option<u16>,
    attempts: u32,
}

/// What the slots share.
pub struct Job {
    pub net: Net,
    pub sources: Vec<Arc<Source>>,
    pub sched: Arc<Scheduler>,
    pub writer: WriteHandle,
    pub progress: Arc<Progress>,
    pub retry: RetryPolicy,
    pub validators: Validators,
    /// Sent with every segment request: the strong ETag, else Last-Modified.
    pub if_range: Option<String>,
    /// The caller's identity test; with it, each source has its own validators.
    pub source_check: Option<SourceCheck>,
    pub cancel: CancellationToken,
    pub live_slots: AtomicUsize,
    /// The adaptive connection count: slots above it leave.
    pub slot_cap: AtomicUsize,
    /// Bytes a slot gathers before handing them to the writer; see [`batch_bytes`].
    pub batch: usize,
    fatal: Mutex<Option<Error>>,
    last_failure: Mutex<Vec<Option<LastFailure>>>,
}

impl Job {
    /// Counts one slot out if more are live than the cap allows; the caller
    /// must then leave. Atomic, so a lowered cap never sends too many away.
    pub fn retire_one(&self) -> bool {
        let cap = self.slot_cap.load(Relaxed);
        self.live_slots
            .fetch_update(Relaxed, Relaxed, |n| (n > cap.max(1)).then(|| n - 1))
            .is_ok()
    }

    /// Stops the download with `e` (the first error wins).
    pub fn fail(&self, e: Error) {
        let mut f = lock(&self.fatal);
        if f.is_none() {
            *f = Some(e);
        }
        drop(f);
        self.cancel.cancel();
        self.sched.cancel_all();
    }

    /// A source cannot serve this file: drop it, and stop only if it was the last.
    pub fn source_failed(&self, slot: &Slot, e: Error) {
        let src = &self.sources[slot.source];
        self.sched.release(slot);
        if !src.is_dead() {
            src.mark_dead();
            if self.sources.iter().all(|s| s.is_dead()) {
                self.fail(e);
            } else {
                tracing::warn!("dropping source {}: {e}", src.display());
            }
        }
    }

    pub fn record_failure(
        &self,
        source: usize,
        kind: GaveUpKind,
        detail: &str,
        status: Option<u16>,
        attempts: u32,
    ) {
        lock(&self.last_failure)[source] = Some(LastFailure {
            kind,
            detail: detail.to_string(),
            status,
            attempts,
        });
    }

    /// A slot used up its retries: its work goes back to the queue; when no
    /// slot is left, the download fails with the last cause.
    pub fn slot_gave_up(&self, slot: &Slot) {
        let src = &self.sources[slot.source];
        if src.active() <= 1 {
            src.gave_up.store(true, Relaxed);
        }
        self.sched.release(slot);
        if self.live_slots.load(Relaxed) <= 1 {
            self.fail(self.gave_up_error());
        }
    }

    fn gave_up_error(&self) -> Error {
        let lf = lock(&self.last_failure);
        let (i, f) = lf
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.as_ref().map(|f| (i, f)))
            .next_back()
            .map(|(i, f)| (i, f.clone()))
            .unwrap_or((
                0,
                LastFailure {
                    kind: GaveUpKind::Network,
                    detail: "no connection could make progress".into(),
                    status: None,
                    attempts: 0,
                },
            ));
        Error::GaveUp {
            url: self.sources[i].display(),
            attempts: f.attempts,
            status: f.status,
            last: f.detail,
            kind: f.kind,
        }
    }

    /// What a request to `source` sends as `If-Range`: the first source's
    /// validator, or with a [`SourceCheck`] the source's own once known.
    pub fn if_range_for(&self, source: &Source) -> Option<String> {
        if self.source_check.is_none() {
            return self.if_range.clone();
        }
        let (etag, lm) = source.own_validators.get()?;
        etag.clone().or_else(|| lm.clone())
    }

    /// Placeholder error for a failed write; the storage's own error replaces
    /// it when the download stops.
    pub fn storage_error(&self) -> Error {
        self.cancel.cancel();
        Error::Storage(StorageError::Io {
            path: PathBuf::new(),
            action: "write",
            source: std::io::Error::other("the writer stopped"),
        })
    }
}

/// The paths a download uses.
#[derive(Clone, Debug)]
pub struct Paths {
    pub output: PathBuf,
    pub part: PathBuf,
    pub control: PathBuf,
}

impl Paths {
    pub fn of(spec: &DownloadSpec) -> Paths {
        let part = spec
            .part_path
            .clone()
            .unwrap_or_else(|| with_suffix(&spec.output, ".part"));
        let control = spec
            .control_path
            .clone()
            .unwrap_or_else(|| with_suffix(&part, ".ctl"));
        Paths {
            output: spec.output.clone(),
            part,
            control,
        }
    }
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn parent_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// What the probe found.
enum Probe {
    /// Ranges work: the answer carries `range` of a `total`-byte file.
    Ranged {
        fetched: Fetched,
        conn: Conn,
        range: std::ops::Range<u64>,
        validators: Validators,
    },
    /// The whole file in one stream (Range ignored or length unknown).
    /// `first` is `None` when the probe's answer cannot be used as the start
    /// of the file and the stream must be requested again.
    Single {
        first: Option<(Fetched, Conn)>,
        length: Option<u64>,
    },
    /// A zero-length file.
    Empty { hops: Vec<Hop> },
    /// The probe asked from `total` (416): everything before it is all there is.
    AtEnd { total: u64 },
}

/// Downloads `spec`; see the module documentation for the order of events.
pub async fn download(
    net: &Net,
    spec: &DownloadSpec,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> Result<Outcome, Error> {
    let started = Instant::now();
    spec.check()?;
    let paths = Paths::of(spec);
    let dir = parent_of(&paths.output);
    std::fs::create_dir_all(&dir).map_err(|source| Error::Create {
        path: dir.clone(),
        source,
    })?;
    if paths.output.is_dir() {
        return Err(Error::Create {
            path: paths.output.clone(),
            source: std::io::Error::other("a folder of that name exists"),
        });
    }
    let sources: Vec<Arc<Source>> = spec
        .urls
        .iter()
        .enumerate()
        .map(|(i, u)| Source::new(i, u.clone(), &spec.headers, spec.per_source).map(Arc::new))
        .collect::<Result<_, _>>()
        .map_err(Error::Net)?;
    let url_id = url_hash(spec.urls[0].as_str());

    // 1. What is on disk.
    let mut ctl = match ControlFile::open(&paths.control) {
        Ok(c) => c,
        Err(ControlError::Damaged { path, reason }) => {
            tracing::warn!(
                "control file {} is unreadable ({reason}); starting over",
                path.display()
            );
            remove_if_exists(&paths.control)?;
            remove_if_exists(&paths.part)?;
            None
        }
        Err(e) => return Err(Error::Storage(StorageError::Control(e))),
    };
    if ctl.is_some() && !paths.part.exists() {
        let (_, state) = ctl.take().expect("checked");
        let complete = state.done.contains_range(0..state.total);
        if complete
            && file_len(&paths.output) == Some(state.total)
            && spec.expected_size.is_none_or(|want| want == state.total)
        {
            // Crashed after the rename, before the control file was removed.
            // The file under the final name may have been replaced since
            // (by another version of the same size): when a checksum is
            // known, it has the last word.
            let verified = match &spec.checksum {
                Some(sum) => verify_in_place(&paths.output, sum).await.is_ok(),
                None => true,
            };
            if verified {
                remove_if_exists(&paths.control)?;
                return Ok(already_complete(spec, &paths, state.total, started));
            }
            tracing::warn!(
                "{} does not match the checksum; its old control file {} is dropped",
                paths.output.display(),
                paths.control.display()
            );
        } else {
            tracing::warn!(
                "{} has no data file; starting over",
                paths.control.display()
            );
        }
        remove_if_exists(&paths.control)?;
    }
    let output_exists = paths.output.exists();
    let mut adopt_output = false;
    if output_exists && ctl.is_none() {
        if spec.continue_partial {
            adopt_output = true;
        } else if !spec.allow_overwrite {
            return Err(Error::FileExists {
                path: paths.output.clone(),
            });
        }
    }
    let mut state = ctl.as_ref().map(|(_, s)| s.clone());
    if let Some(s) = &state
        && s.url_hash != url_id
        && !spec.urls.iter().any(|u| url_hash(u.as_str()) == s.url_hash)
        && s.etag.is_none()
    {
        // Another URL and no strong ETag to prove it is the same file.
        if spec.allow_restart {
            tracing::warn!("the control file was written for another URL; starting over");
            state = None;
        } else {
            return Err(Error::CannotResume {
                path: paths.part.clone(),
                reason: "its control file was written for another URL and the server gives no ETag to prove it is the same file; use --allow-restart to start over".into(),
            });
        }
    }

    // Everything already written? Then no network is needed: finish up.
    if let Some(s) = &state
        && s.done.contains_range(0..s.total)
    {
        let (ctl_file, s) = ctl.take().expect("state comes from ctl");
        progress.set_total(Some(s.total));
        progress.add_existing(s.total);
        drop(ctl_file);
        finalize(spec, &paths, s.total).await?;
        let mut out = already_complete(spec, &paths, s.total, started);
        out.resumed = s.total;
        return Ok(out);
    }

    // 2. Probe from the first missing byte.
    let adopted_len = if adopt_output {
        file_len(&paths.output).unwrap_or(0)
    } else {
        0
    };
    let done_before = match &state {
        Some(s) => s.done.clone(),
        None => ExtentSet::from_range(0..adopted_len),
    };
    let (probe_start, probe_end) = {
        let first_gap = done_before
            .gaps(0..u64::MAX)
            .into_iter()
            .next()
            .unwrap_or(0..u64::MAX);
        let len = probe_len(spec.min_split);
        (
            first_gap.start,
            first_gap.start.saturating_add(len).min(first_gap.end),
        )
    };
    let retry = spec.retry.clone();
    let probe = probe(
        net,
        &sources[0],
        probe_start,
        probe_end,
        &retry,
        spec.source_check.as_ref(),
        &cancel,
    )
    .await?;

    match probe {
        Probe::AtEnd { total } if adopt_output && adopted_len == total => {
            // `-c` on a file that is already whole.
            progress.set_total(Some(total));
            progress.add_existing(total);
            if let Some(sum) = &spec.checksum {
                verify_in_place(&paths.output, sum).await?;
            }
            Ok(already_complete(spec, &paths, total, started))
        }
        Probe::AtEnd { total } => Err(Error::RemoteChanged {
            url: sources[0].display(),
            detail: format!(
                "the file is now {total} bytes long, shorter than what was already downloaded"
            ),
        }),
        Probe::Empty { hops } => {
            drop(ctl);
            progress.set_total(Some(0));
            write_empty(&paths)?;
            finalize(spec, &paths, 0).await?;
            let mut out = already_complete(spec, &paths, 0, started);
            out.hops = hops;
            out.already_complete = false;
            Ok(out)
        }
        Probe::Single { first, length } => {
            if !done_before.is_empty() || adopt_output {
                tracing::warn!("the server does not support ranges; downloading from the start");
            }
            if let Some((c, _)) = ctl.take() {
                drop(c);
                remove_if_exists(&paths.control)?;
            }
            single_stream(
                net,
                spec,
                &paths,
                &sources[0],
                first,
                length,
                progress,
                cancel,
                started,
            )
            .await
        }
        Probe::Ranged {
            fetched,
            conn,
            range,
            validators,
        } => {
            check_size(spec, &sources[0], validators.total)?;
            // 3. Same file as before?
            if let Some(s) = &state
                && let Some(why) = differs(s, &validators)
            {
                if spec.allow_restart {
                    tracing::warn!("the file changed on the server ({why}); starting over");
                    state = None;
                } else {
                    return Err(Error::RemoteChanged {
                        url: sources[0].display(),
                        detail: why,
                    });
                }
            }
            let done = match &state {
                Some(s) => s.done.clone(),
                None if adopt_output => {
                    let len = adopted_len;
                    if len > validators.total {
                        return Err(Error::CannotResume {
                            path: paths.output.clone(),
                            reason: format!(
                                "it is {len} bytes long but the remote file has only {}",
                                validators.total
                            ),
                        });
                    }
                    std::fs::rename(&paths.output, &paths.part).map_err(|source| {
                        Error::Rename {
                            from: paths.output.clone(),
                            to: paths.part.clone(),
                            source,
                        }
                    })?;
                    tracing::info!("-c: continuing after the {len} bytes of the existing file");
                    ExtentSet::from_range(0..len)
                }
                None => ExtentSet::new(),
            };
            if state.is_none() && !adopt_output {
                // Bytes of an untracked partial file cannot be trusted.
                if let Some((c, _)) = ctl.take() {
                    drop(c);
                }
                remove_if_exists(&paths.part)?;
            }
            if !done.contains(range.start) && (range.start == probe_start) {
                ranged(
                    net,
                    spec,
                    &paths,
                    sources,
                    fetched,
                    conn,
                    range,
                    validators,
                    done,
                    ctl.map(|(c, _)| c),
                    url_id,
                    progress,
                    cancel,
                    started,
                )
                .await
            } else {
                // The probe started inside bytes we now consider done (a restart
                // or an adopted prefix): discard it and let the slots fetch.
                drop(fetched);
                drop(conn);
                ranged_without_probe(
                    net,
                    spec,
                    &paths,
                    sources,
                    validators,
                    done,
                    ctl.map(|(c, _)| c),
                    url_id,
                    progress,
                    cancel,
                    started,
                )
                .await
            }
        }
    }
}

fn probe_len(min_split: u64) -> u64 {
    min_split.clamp(64 << 10, 16 << 20)
}

fn differs(s: &ControlState, v: &Validators) -> Option<String> {
    if s.total != v.total {
        return Some(format!("its size was {} bytes, now {}", s.total, v.total));
    }
    match (&s.etag, &v.etag) {
        (Some(a), Some(b)) if a != b => return Some(format!("its ETag was {a}, now {b}")),
        (Some(a), None) => return Some(format!("its ETag was {a}, now there is none")),
        _ => {}
    }
    match (&s.last_modified, &v.last_modified) {
        (Some(a), Some(b)) if a != b && s.etag.is_none() => {
            Some(format!("its Last-Modified was {a}, now {b}"))
        }
        _ => None,
    }
}

fn file_len(p: &Path) -> Option<u64> {
    std::fs::metadata(p)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

fn remove_if_exists(p: &Path) -> Result<(), Error> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Storage(StorageError::io(p, "remove", source))),
    }
}

fn already_complete(spec: &DownloadSpec, paths: &Paths, total: u64, started: Instant) -> Outcome {
    Outcome {
        path: paths.output.clone(),
        total: Some(total),
        received: 0,
        resumed: 0,
        elapsed: started.elapsed(),
        connections: 0,
        single_stream: false,
        already_complete: true,
        hops: Vec::new(),
        source_bytes: vec![0; spec.urls.len()],
        sources_gave_up: vec![false; spec.urls.len()],
    }
}

fn write_empty(paths: &Paths) -> Result<(), Error> {
    let f = std::fs::File::create(&paths.part).map_err(|source| Error::Create {
        path: paths.part.clone(),
        source,
    })?;
    f.sync_all()
        .map_err(|e| Error::Storage(StorageError::io(&paths.part, "sync", e)))?;
    Ok(())
}

/// The probe request, retried like any other; see [`Probe`].
async fn probe(
    net: &Net,
    source: &Source,
    start: u64,
    end: u64,
    retry: &RetryPolicy,
    check: Option<&SourceCheck>,
    cancel: &CancellationToken,
) -> Result<Probe, Error> {
    let mut failures = 0u32;
    let mut conn: Option<Conn> = None;
    loop {
        if cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        let (url, generation) = source.current();
        let range = ByteRange::of(&(start..end));
        let failure = match fetch(net, source, url, range, None, &mut conn).await {
            Ok(fetched) => {
                source.record_ttfb(fetched.ttfb);
                source.set_resolved(fetched.url.clone());
                if let Some(c) = check {
                    c.verify(source, &fetched)?;
                }
                let redirected = fetched.url != source.original;
                match classify_probe(fetched, conn.take(), start, source, redirected).await {
                    Ok(p) => return Ok(p),
                    Err(f) => f,
                }
            }
            Err(f) => f,
        };
        conn = None;
        match failure {
            Failure::Fatal(e) => return Err(e),
            Failure::Expired { detail, status } => {
                if !source.expire(generation) {
                    return Err(Error::Auth {
                        url: source.display(),
                        status,
                        hint: format!(": {detail}"),
                    });
                }
            }
            Failure::Retry {
                kind,
                detail,
                status,
                retry_after,
                ..
            } => {
                failures += 1;
                tracing::info!("{}: {detail}; attempt {failures} failed", source.display());
                if retry.exhausted(failures) {
                    return Err(Error::GaveUp {
                        url: source.display(),
                        attempts: failures,
                        status,
                        last: detail,
                        kind,
                    });
                }
                let delay = retry.delay(failures, retry_after);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return Err(Error::Interrupted),
                }
            }
        }
    }
}

async fn classify_probe(
    fetched: Fetched,
    conn: Option<Conn>,
    start: u64,
    source: &Source,
    redirected: bool,
) -> Result<Probe, Failure> {
    let h = fetched.response.headers();
    let status = fetched.response.status();
    let conn = conn.expect("fetch leaves the connection of its answer");
    match status {
        StatusCode::PARTIAL_CONTENT => match content_range(h) {
            Some(ContentRange::Bytes {
                first,
                last,
                total: Some(total),
            }) if first == start => {
                let validators = Validators {
                    total,
                    etag: strong_etag(h),
                    last_modified: last_modified(h),
                };
                Ok(Probe::Ranged {
                    range: first..last + 1,
                    fetched,
                    conn,
                    validators,
                })
            }
            Some(ContentRange::Bytes { total: None, .. }) => {
                // Ranges work but the size is unknown: one stream from the start.
                Ok(Probe::Single {
                    first: None,
                    length: None,
                })
            }
            other => Err(Failure::Retry {
                kind: GaveUpKind::BadResponse,
                detail: format!(
                    "asked for bytes from {start}, got Content-Range {other:?}; nothing of it was written"
                ),
                status: Some(206),
                retry_after: None,
                overloaded: false,
            }),
        },
        StatusCode::OK => {
            let length = content_length(h);
            if length == Some(0) {
                return Ok(Probe::Empty { hops: fetched.hops });
            }
            Ok(Probe::Single {
                length,
                first: Some((fetched, conn)),
            })
        }
        StatusCode::RANGE_NOT_SATISFIABLE => match content_range(h) {
            Some(ContentRange::Unsatisfied { total: 0 }) => Ok(Probe::Empty { hops: fetched.hops }),
            Some(ContentRange::Unsatisfied { total }) if start >= total => {
                Ok(Probe::AtEnd { total })
            }
            Some(ContentRange::Unsatisfied { total }) => Err(Failure::Fatal(Error::BadResponse {
                url: source.display(),
                detail: format!("HTTP 416 for a range inside the {total}-byte file"),
            })),
            _ => Err(Failure::Fatal(Error::BadResponse {
                url: source.display(),
                detail: "HTTP 416 without the file size".into(),
            })),
        },
        _ => {
            let url = fetched.url.clone();
            Err(status_failure(fetched.response, &url, redirected, source).await)
        }
    }
}

/// Sets up storage for a ranged download and runs the slots.
#[allow(clippy::too_many_arguments)]
async fn ranged(
    net: &Net,
    spec: &DownloadSpec,
    paths: &Paths,
    sources: Vec<Arc<Source>>,
    fetched: Fetched,
    conn: Conn,
    probe_range: std::ops::Range<u64>,
    validators: Validators,
    done: ExtentSet,
    ctl: Option<ControlFile>,
    url_id: [u8; 32],
    progress: Arc<Progress>,
    cancel: CancellationToken,
    started: Instant,
) -> Result<Outcome, Error> {
    let hops = fetched.hops.clone();
    let first = FirstResponse {
        conn,
        response: fetched.response,
        range: probe_range,
    };
    run_slots(
        net,
        spec,
        paths,
        sources,
        Some(first),
        validators,
        done,
        ctl,
        url_id,
        progress,
        cancel,
        started,
        hops,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn ranged_without_probe(
    net: &Net,
    spec: &DownloadSpec,
    paths: &Paths,
    sources: Vec<Arc<Source>>,
    validators: Validators,
    done: ExtentSet,
    ctl: Option<ControlFile>,
    url_id: [u8; 32],
    progress: Arc<Progress>,
    cancel: CancellationToken,
    started: Instant,
) -> Result<Outcome, Error> {
    run_slots(
        net,
        spec,
        paths,
        sources,
        None,
        validators,
        done,
        ctl,
        url_id,
        progress,
        cancel,
        started,
        Vec::new(),
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn run_slots(
    net: &Net,
    spec: &DownloadSpec,
    paths: &Paths,
    sources: Vec<Arc<Source>>,
    first: Option<FirstResponse>,
    validators: Validators,
    done: ExtentSet,
    ctl: Option<ControlFile>,
    url_id: [u8; 32],
    progress: Arc<Progress>,
    cancel: CancellationToken,
    started: Instant,
    hops: Vec<Hop>,
) -> Result<Outcome, Error> {
    let total = validators.total;
    progress.set_total(Some(total));
    let resumed = done.covered();
    progress.add_existing(resumed);
    if resumed > 0 {
        tracing::info!("resuming: {resumed} of {total} bytes already done");
    }

    // 4. Storage. A plainly full disk fails here, before any more traffic;
    // the reservation itself (fallocate zero-fills pages on tmpfs: about
    // 0.3 s per GiB) then runs while the connections are being opened.
    let file = alloc::open_data_file(&paths.part)?;
    if let Err(e) = alloc::check_space(&file, &paths.part, total) {
        if done.is_empty() {
            drop(file);
            let _ = std::fs::remove_file(&paths.part);
        }
        return Err(e.into());
    }
    let mut mode = spec.write_mode;
    let mut reserving = None;
    if mode == WriteMode::Mmap {
        // A mapping needs its space before the first store (never SIGBUS).
        if alloc::allocate(&file, &paths.part, total, spec.allocation)? != Allocation::Falloc {
            tracing::warn!(
                "mmap writes need the space reserved (--file-allocation=falloc); using pwrite"
            );
            mode = WriteMode::Pwrite;
        }
    } else {
        let f = file
            .try_clone()
            .map_err(|e| Error::Storage(StorageError::io(&paths.part, "open", e)))?;
        let (path, how) = (paths.part.clone(), spec.allocation);
        reserving = Some(tokio::task::spawn_blocking(move || {
            alloc::allocate(&f, &path, total, how)
        }));
    }
    let state = ControlState {
        total,
        etag: validators.etag.clone(),
        last_modified: validators.last_modified.clone(),
        url_hash: url_id,
        done: done.clone(),
    };
    let ctl = match ctl {
        Some(mut c) => {
            c.save(&state).map_err(StorageError::from)?;
            c
        }
        None => ControlFile::create(&paths.control, &state).map_err(StorageError::from)?,
    };
    alloc::sync_dir(&parent_of(&paths.part))
        .map_err(|e| Error::Storage(StorageError::io(&paths.part, "sync the folder of", e)))?;
    let sync_file = file
        .try_clone()
        .map_err(|e| Error::Storage(StorageError::io(&paths.part, "open", e)))?;
    let sink = open_sink(mode, file, Some(total))
        .map_err(|e| Error::Storage(StorageError::io(&paths.part, "map", e)))?;
    let wanted = spec.connections.min(spec.per_source * sources.len()).max(1);
    let (writer, storage) = Storage::start(
        sink,
        sync_file,
        paths.part.clone(),
        Some(ctl),
        state,
        WriterOptions {
            checkpoint_interval: spec.checkpoint_interval,
            queue_bytes: queue_bytes(wanted),
            ..WriterOptions::default()
        },
    );

    // 5. Slots.
    let missing: ExtentSet = done.gaps(0..total).into_iter().collect();
    let start = spec
        .adaptive
        .as_ref()
        .map_or(wanted, |a| a.start.clamp(1, wanted));
    let conns = useful_connections(&initial_pieces(&missing, start, spec.min_split), start);
    let sched = Arc::new(Scheduler::new(
        total,
        &missing,
        conns,
        Tuning::new(spec.min_split),
    ));
    let if_range = validators
        .etag
        .clone()
        .or_else(|| validators.last_modified.clone());
    let n_sources = sources.len();
    if spec.source_check.is_some() {
        let _ = sources[0]
            .own_validators
            .set((validators.etag.clone(), validators.last_modified.clone()));
    }
    let job = Arc::new(Job {
        net: net.clone(),
        sources,
        sched: sched.clone(),
        writer,
        progress: progress.clone(),
        retry: spec.retry.clone(),
        validators,
        if_range,
        source_check: spec.source_check.clone(),
        cancel: cancel.child_token(),
        live_slots: AtomicUsize::new(0),
        slot_cap: AtomicUsize::new(usize::MAX),
        batch: batch_bytes(wanted),
        fatal: Mutex::new(None),
        last_failure: Mutex::new(vec![None; n_sources]),
    });

    if let Some(reserve) = reserving {
        let job = job.clone();
        tokio::spawn(async move {
            if let Ok(Err(e)) = reserve.await {
                job.fail(Error::Storage(e));
            }
        });
    }
    let mut tasks = JoinSet::new();
    let mut first = first;
    let mut spawned = 0;
    let mut spawn_slot = |tasks: &mut JoinSet<()>| {
        let source = pick_source(&job, spawned, spec.per_source);
        let slot = sched.add_slot(source);
        let f = if spawned == 0 {
            first.take().inspect(|f| {
                sched.take_for_probe(&slot, f.range.clone());
            })
        } else {
            None
        };
        spawned += 1;
        tasks.spawn(worker::run(job.clone(), slot, f));
    };
    for _ in 0..conns {
        spawn_slot(&mut tasks);
    }
    let monitor = {
        let job = job.clone();
        let timeout = spec.timeout;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    _ = tick.tick() => { job.sched.health_check(timeout); }
                    _ = job.cancel.cancelled() => break,
                }
                if job.sched.is_done() {
                    break;
                }
            }
        })
    };
    // Growth only makes sense when the file is split in as many pieces as
    // we started with: a file too small for more stays as it is.
    let mut growth = spec
        .adaptive
        .as_ref()
        .filter(|_| conns == start && start < wanted)
        .map(|a| Growth::new(a, conns, wanted));
    let mut grow_tick = tokio::time::interval(Duration::from_millis(250));
    let mut peak = conns;
    // However the job's token is cancelled (Ctrl-C from the caller, a fatal
    // error, a writer that stopped), every slot is preempted, so none waits
    // for a server that went silent.
    let mut preempted = false;
    loop {
        tokio::select! {
            joined = tasks.join_next() => if joined.is_none() { break },
            _ = job.cancel.cancelled(), if !preempted => {
                preempted = true;
                sched.cancel_all();
            }
            _ = grow_tick.tick(), if growth.as_ref().is_some_and(|g| !g.stopped()) => {
                let g = growth.as_mut().expect("checked");
                let live = job.live_slots.load(Relaxed);
                let allowed = job
                    .sources
                    .iter()
                    .filter(|s| !s.is_dead())
                    .map(|s| s.conn_limit().min(spec.per_source))
                    .sum::<usize>()
                    .min(wanted);
                // Not worth growing for the last few seconds' bytes.
                let (now, received) = (Instant::now(), progress.received());
                if g
                    .window_rate(now, received)
                    .is_some_and(|rate| (sched.remaining() as f64) < rate * 4.0)
                {
                    g.stop();
                    continue;
                }
                match g.tick(now, received, live, allowed) {
                    Some(n) if n > live => {
                        tracing::info!("adaptive: {live} -> {n} connections");
                        for _ in live..n {
                            spawn_slot(&mut tasks);
                        }
                        peak = peak.max(n);
                    }
                    Some(n) => {
                        tracing::info!("adaptive: back to {n} connections");
                        job.slot_cap.store(n, Relaxed);
                    }
                    None => {}
                }
            }
        }
    }
    monitor.abort();

    let fatal = lock(&job.fatal).take();
    let complete = sched.is_done();
    let source_bytes = job.sources.iter().map(|s| s.bytes.load(Relaxed)).collect();
    let sources_gave_up = job
        .sources
        .iter()
        .map(|s| s.gave_up.load(Relaxed))
        .collect();
    let received = progress.received();
    drop(job);

    if !complete || fatal.is_some() || cancel.is_cancelled() {
        let saved = tokio::task::spawn_blocking(move || storage.abort())
            .await
            .expect("the storage thread does not panic");
        if let Err(e) = saved {
            return Err(Error::Storage(e));
        }
        if cancel.is_cancelled() && fatal.is_none() {
            return Err(Error::Interrupted);
        }
        return Err(fatal.unwrap_or_else(|| Error::GaveUp {
            url: redact_url(&spec.urls[0]),
            attempts: 0,
            status: None,
            last: "every connection gave up".into(),
            kind: GaveUpKind::Network,
        }));
    }
    let written = tokio::task::spawn_blocking(move || storage.finish())
        .await
        .expect("the storage thread does not panic")?;
    if !written.contains_range(0..total) {
        return Err(Error::Storage(StorageError::Io {
            path: paths.part.clone(),
            action: "complete",
            source: std::io::Error::other(format!(
                "internal error: {} of {total} bytes written",
                written.covered()
            )),
        }));
    }
    finalize(spec, paths, total).await?;
    Ok(Outcome {
        path: paths.output.clone(),
        total: Some(total),
        received,
        resumed: done.covered(),
        elapsed: started.elapsed(),
        connections: peak,
        single_stream: false,
        already_complete: false,
        hops,
        source_bytes,
        sources_gave_up,
    })
}

/// Slot `i`'s source: round robin over the sources, at most `per_source` each.
fn pick_source(job: &Job, i: usize, per_source: usize) -> usize {
    let n = job.sources.len();
    let s = i % n;
    if i / n < per_source { s } else { 0 }
}

async fn verify_in_place(path: &Path, sum: &super::Checksum) -> Result<(), Error> {
    let p = path.to_path_buf();
    let s = sum.clone();
    let actual = tokio::task::spawn_blocking(move || verify::digest_file(&p, &s))
        .await
        .expect("hashing does not panic")
        .map_err(|e| Error::Storage(StorageError::io(path, "read back", e)))?;
    if actual.eq_ignore_ascii_case(sum.hex()) {
        Ok(())
    } else {
        Err(Error::ChecksumMismatch {
            path: path.to_path_buf(),
            algo: sum.algorithm(),
            expected: sum.hex().to_string(),
            actual,
        })
    }
}

/// Each slot's batch pins the network buffers its pieces live in, so the
/// memory held by batches grows with the connection count: 4 MiB shared
/// between the slots keeps 64 connections within the 40 MiB budget, while
/// 256 KiB per slot at low counts keeps `pwritev` calls few and large.
fn batch_bytes(connections: usize) -> usize {
    ((4 << 20) / connections.max(1)).clamp(64 << 10, 256 << 10)
}

/// The writer's queue pins network buffers as the batches do (a queued
/// 16 KiB slice keeps its whole read buffer alive), so it shrinks as
/// connections grow: 8 MiB up to 16 connections, 4 MiB from 32. At 64
/// connections over TLS the read buffers held 17.7 MiB of a 20.5 MiB heap
/// peak with 8 MiB (heaptrack); 4 MiB is still several milliseconds of
/// writing at loopback speed.
fn queue_bytes(connections: usize) -> usize {
    ((128 << 20) / connections.max(1)).clamp(4 << 20, 8 << 20)
}

/// Refuses a file whose size is not the one the caller expects.
fn check_size(spec: &DownloadSpec, source: &Source, total: u64) -> Result<(), Error> {
    match spec.expected_size {
        Some(want) if want != total => Err(Error::BadResponse {
            url: source.display(),
            detail: format!("the server's file is {total} bytes, but {want} were expected"),
        }),
        _ => Ok(()),
    }
}

/// Checksum, rename, folder fsync, control file removal: the last steps,
/// in the order that keeps a crash at any point safe.
async fn finalize(spec: &DownloadSpec, paths: &Paths, total: u64) -> Result<(), Error> {
    if let Some(want) = spec.expected_size
        && want != total
    {
        // Wrong-sized data is worth nothing; it never gets the final name.
        let _ = std::fs::remove_file(&paths.part);
        let _ = std::fs::remove_file(&paths.control);
        return Err(Error::BadResponse {
            url: redact_url(&spec.urls[0]),
            detail: format!("the server sent {total} bytes, but {want} were expected"),
        });
    }
    if let Some(sum) = &spec.checksum
        && let Err(e) = verify_in_place(&paths.part, sum).await
    {
        if let Error::ChecksumMismatch { .. } = e {
            // Wrong bytes are worth nothing; never leave them to be resumed.
            let _ = std::fs::remove_file(&paths.part);
            let _ = std::fs::remove_file(&paths.control);
        }
        return Err(match e {
            Error::ChecksumMismatch {
                algo,
                expected,
                actual,
                ..
            } => Error::ChecksumMismatch {
                path: paths.output.clone(),
                algo,
                expected,
                actual,
            },
            other => other,
        });
    }
    let len = file_len(&paths.part);
    if len != Some(total) {
        // A sparse or never-extended file must end exactly at the total.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&paths.part)
            .and_then(|f| f.set_len(total).map(|_| f))
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::Storage(StorageError::io(&paths.part, "size", e)));
        f?;
    }
    std::fs::rename(&paths.part, &paths.output).map_err(|source| Error::Rename {
        from: paths.part.clone(),
        to: paths.output.clone(),
        source,
    })?;
    let dir = parent_of(&paths.output);
    alloc::sync_dir(&dir).map_err(|e| Error::Storage(StorageError::io(&dir, "sync", e)))?;
    if paths.control.exists() {
        remove_if_exists(&paths.control)?;
        alloc::sync_dir(&parent_of(&paths.control))
            .map_err(|e| Error::Storage(StorageError::io(&dir, "sync", e)))?;
    }
    Ok(())
}

/// A file served without ranges: one stream from the start, restarted from
/// zero on failure (nothing else is possible), no control file.
#[allow(clippy::too_many_arguments)]
async fn single_stream(
    net: &Net,
    spec: &DownloadSpec,
    paths: &Paths,
    source: &Arc<Source>,
    first: Option<(Fetched, Conn)>,
    length: Option<u64>,
    progress: Arc<Progress>,
    cancel: CancellationToken,
    started: Instant,
) -> Result<Outcome, Error> {
    tracing::warn!(
        "{}: the server does not support range requests; downloading over one connection, and an interrupted download will restart from zero",
        source.display()
    );
    progress.set_total(length);
    let hops = first
        .as_ref()
        .map(|(f, _)| f.hops.clone())
        .unwrap_or_default();
    let file = std::fs::File::create(&paths.part).map_err(|e| Error::Create {
        path: paths.part.clone(),
        source: e,
    })?;
    if let Some(len) = length {
        alloc::allocate(&file, &paths.part, len, Allocation::None)?;
    }
    let sync_file = file
        .try_clone()
        .map_err(|e| Error::Storage(StorageError::io(&paths.part, "open", e)))?;
    let sink = open_sink(WriteMode::Pwrite, file, length)
        .map_err(|e| Error::Storage(StorageError::io(&paths.part, "open", e)))?;
    let (writer, storage) = Storage::start(
        sink,
        sync_file,
        paths.part.clone(),
        None,
        ControlState {
            total: length.unwrap_or(0),
            etag: None,
            last_modified: None,
            url_hash: [0; 32],
            done: ExtentSet::new(),
        },
        WriterOptions::default(),
    );
    let etag = first
        .as_ref()
        .and_then(|(f, _)| strong_etag(f.response.headers()));
    let mut response = first.map(|(f, c)| (f.response, c));
    let mut failures = 0u32;
    let mut got = 0u64;
    progress.connection_opened();
    let result: Result<u64, Error> = loop {
        let resp = match response.take() {
            Some((r, _conn)) => r,
            None => {
                let mut c = None;
                let (url, _) = source.current();
                let r = fetch(
                    net,
                    source,
                    url,
                    ByteRange {
                        start: 0,
                        end: None,
                    },
                    None,
                    &mut c,
                )
                .await;
                match r {
                    Ok(f)
                        if f.response.status() == StatusCode::OK
                            || f.response.status() == StatusCode::PARTIAL_CONTENT =>
                    {
                        if etag.is_some() && strong_etag(f.response.headers()) != etag {
                            break Err(Error::RemoteChanged {
                                url: source.display(),
                                detail: "its ETag changed between attempts".into(),
                            });
                        }
                        f.response
                    }
                    Ok(f) => {
                        let url = f.url.clone();
                        match status_failure(f.response, &url, f.url != source.original, source)
                            .await
                        {
                            Failure::Fatal(e) => break Err(e),
                            other => {
                                failures += 1;
                                if spec.retry.exhausted(failures) {
                                    break Err(single_gave_up(source, failures, other));
                                }
                                tokio::time::sleep(spec.retry.delay(failures, None)).await;
                                continue;
                            }
                        }
                    }
                    Err(Failure::Fatal(e)) => break Err(e),
                    Err(other) => {
                        failures += 1;
                        if spec.retry.exhausted(failures) {
                            break Err(single_gave_up(source, failures, other));
                        }
                        tokio::time::sleep(spec.retry.delay(failures, None)).await;
                        continue;
                    }
                }
            }
        };
        if got > 0 {
            progress.discard(got);
            got = 0;
        }
        let mut body = resp.into_body();
        let outcome: Result<(), String> = loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                _ = cancel.cancelled() => break Err("interrupted".into()),
            };
            match frame {
                None => break Ok(()),
                Some(Err(e)) => break Err(e.to_string()),
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        let n = d.len() as u64;
                        if writer.write(got, vec![d]).await.is_err() {
                            break Err("write failed".into());
                        }
                        got += n;
                        progress.add_received(n);
                    }
                }
            }
        };
        if cancel.is_cancelled() {
            break Err(Error::Interrupted);
        }
        match outcome {
            Ok(()) if length.is_none_or(|l| l == got) => break Ok(got),
            Ok(()) => {
                failures += 1;
                if spec.retry.exhausted(failures) {
                    break Err(Error::GaveUp {
                        url: source.display(),
                        attempts: failures,
                        status: None,
                        last: format!(
                            "the body ended after {got} of {} bytes",
                            length.unwrap_or(0)
                        ),
                        kind: GaveUpKind::Network,
                    });
                }
            }
            Err(e) => {
                if e == "write failed" {
                    break Err(Error::Storage(StorageError::Io {
                        path: paths.part.clone(),
                        action: "write",
                        source: std::io::Error::other("the writer stopped"),
                    }));
                }
                failures += 1;
                if spec.retry.exhausted(failures) {
                    break Err(Error::GaveUp {
                        url: source.display(),
                        attempts: failures,
                        status: None,
                        last: e,
                        kind: GaveUpKind::Network,
                    });
                }
                tokio::time::sleep(spec.retry.delay(failures, None)).await;
            }
        }
    };
    progress.connection_closed();
    drop(writer);
    let finished = tokio::task::spawn_blocking(move || storage.finish())
        .await
        .expect("the storage thread does not panic");
    let got = match (result, finished) {
        (Err(e), _) => {
            let _ = std::fs::remove_file(&paths.part);
            return Err(e);
        }
        (Ok(_), Err(e)) => return Err(Error::Storage(e)),
        (Ok(n), Ok(_)) => n,
    };
    progress.set_total(Some(got));
    finalize(spec, paths, got).await?;
    Ok(Outcome {
        path: paths.output.clone(),
        total: Some(got),
        received: got,
        resumed: 0,
        elapsed: started.elapsed(),
        connections: 1,
        single_stream: true,
        already_complete: false,
        hops,
        source_bytes: vec![got],
        sources_gave_up: vec![false; spec.urls.len()],
    })
}

fn single_gave_up(source: &Source, attempts: u32, f: Failure) -> Error {
    let (kind, last, status) = match f {
        Failure::Retry {
            kind,
            detail,
            status,
            ..
        } => (kind, detail, status),
        Failure::Expired { detail, status } => (GaveUpKind::Network, detail, Some(status)),
        Failure::Fatal(e) => return e,
    };
    Error::GaveUp {
        url: source.display(),
        attempts,
        status,
        last,
        kind,
    }
}
