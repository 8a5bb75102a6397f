//! One `hfd` run: repo info, file list, local check, downloads, verdict.
//!
//! Order of events, and why:
//! 1. Repo info (`?blobs=true`): one request that names the commit the
//!    revision points at, the gated flag and, for ordinary repos, every file
//!    with its size and hash. A re-run makes this request and, when the
//!    commit is unchanged, no other (the file list of that commit is kept).
//! 2. The file list: `siblings` when it is complete (its sizes add up to the
//!    `treesize`), else the paginated recursive tree.
//! 3. Selection (hfd.sh's include/exclude), then a refusal of any name that
//!    would leave the local dir, before a byte is written.
//! 4. The local check: files whose fingerprint and hash are on record are
//!    done (in the cache: blobs of the right size, named by their hash);
//!    files of the right size without a record are hashed (and adopted
//!    when they match); the rest are downloaded.
//! 5. Downloads, `-j` files at a time with up to `-x` connections each, by
//!    the engine: resolve once per file from the commit (so every file comes
//!    from the same commit even if the branch moves meanwhile), data into
//!    `.hfd/partial/`, checksum, then rename into place.
//! 6. The finish: the place ([`super::place`]) makes what is here visible
//!    the way huggingface_hub looks for it: snapshot links and the ref in
//!    the cache, download records in a local dir (also when nothing needed
//!    downloading, and after a failure or a stop, for what did arrive).
//!
//! Where files go (a local dir or the Hugging Face cache) is the place's
//! business alone: the steps ask it where a file ends up and where its
//! partial data lives.
//!
//! With several endpoints (`--endpoint` more than once) the first one
//! answers steps 1 and 2, and each file's resolve URL on every endpoint is a
//! source of the same download, held to the listing's hash and size
//! ([`super::identity`], [`super::file`]).
//!
//! The run says what happens through [`Events`]; it prints nothing itself.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderValue};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::api::{Api, ApiError, RepoFile, RepoInfo};
use super::check::{Check, Checker};
use super::endpoint::{Endpoint, RepoId, RepoType};
use super::events::{Counters, Event, Events, Planned, Verdict};
use super::file::FileCtx;
use super::filter::Filter;
use super::listing::file_list;
use super::messages::{gated_message, info_error};
use super::place::{Dest, Place};
use super::queue::Queue;
use super::state::{self, Listing, Verified};
use crate::client::RetryPolicy;
use crate::engine::limit::RateLimit;
use crate::net::Net;
use crate::ui::Verbosity;

/// Everything a run needs, already checked (see `cli::hfd` for the flags).
#[derive(Clone, Debug)]
pub struct Options {
    pub repo: RepoId,
    pub repo_type: RepoType,
    pub revision: String,
    /// Lists the repo, and serves every file.
    pub endpoint: Endpoint,
    /// Further endpoints every file is also fetched from, at once
    /// (`--endpoint` given more than once).
    pub mirrors: Vec<Endpoint>,
    /// Never printed, never written; each endpoint gets it, no other host.
    pub token: Option<String>,
    /// `--include` / `--exclude`, compiled once when the options are made.
    pub filter: Filter,
    /// A local dir, or the Hugging Face cache.
    pub dest: Dest,
    /// `-x`: connections per file.
    pub connections: usize,
    /// `-j`: files at a time (at the start, when adaptive).
    pub jobs: usize,
    /// More than `jobs`: grow the files at once up to this while the total
    /// rate grows (no `-j` given).
    pub max_jobs: usize,
    /// `--verify`: hash every local file, even those whose fingerprint is
    /// unchanged since they were verified.
    pub verify_all: bool,
    pub retry: RetryPolicy,
    pub verbosity: Verbosity,
    /// `--max-download-limit`: a cap for each file, in bytes/s.
    pub file_limit: Option<u64>,
    /// `--max-overall-download-limit`: one cap shared by every file.
    pub overall_limit: Option<Arc<RateLimit>>,
    /// `--dry-run`: list, check what is here, say what would be fetched;
    /// fetch no file and write nothing.
    pub dry_run: bool,
    /// `--verify-origin`: the commit and the hashes come from this
    /// endpoint's API (the bytes still from `endpoint` and `mirrors`).
    pub verify_origin: Option<Endpoint>,
    /// Read Xet storage natively where the endpoint allows (not
    /// `--no-xet`, not `HF_HUB_DISABLE_XET`).
    pub xet: bool,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Everything downloaded and verified.
    Done,
    /// Nothing needed fetching.
    UpToDate,
    /// `--dry-run`: the plan was shown, nothing fetched or written.
    DryRun,
    /// Some files failed; a re-run resumes.
    Incomplete,
    /// Ctrl-C or SIGTERM; a re-run resumes.
    Interrupted,
    /// Nothing could be done (bad repo, revision, access, ...).
    Failed,
}

impl Status {
    /// hfd.sh's exit codes: 0 success, 1 failure, 130 interrupted.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Done | Status::UpToDate | Status::DryRun => 0,
            Status::Interrupted => 130,
            Status::Incomplete | Status::Failed => 1,
        }
    }
}

/// The `Authorization` header for a token, marked sensitive so it never
/// shows in debug output.
pub(crate) fn credentials(token: Option<&str>) -> Result<HeaderMap, String> {
    let mut h = HeaderMap::new();
    if let Some(t) = token {
        let mut v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
            "the token contains characters that cannot be sent in an HTTP header".to_string()
        })?;
        v.set_sensitive(true);
        h.insert(AUTHORIZATION, v);
    }
    Ok(h)
}

/// Runs hfd with `opts`, telling `events` what happens.
pub async fn run(
    opts: &Options,
    net: Net,
    cancel: CancellationToken,
    events: Arc<dyn Events>,
) -> Status {
    let verdict = match flow(opts, net, cancel, &events).await {
        Ok(v) | Err(v) => v,
    };
    events.event(Event::Finished(&verdict));
    verdict.status()
}

/// A step of the run: its result, or the verdict that ends the run.
type Step<T> = Result<T, Verdict>;

/// The steps in order; see the module documentation.
async fn flow(
    opts: &Options,
    net: Net,
    cancel: CancellationToken,
    events: &Arc<dyn Events>,
) -> Step<Verdict> {
    let ev: &dyn Events = events.as_ref();
    let creds = credentials(opts.token.as_deref()).map_err(|e| failed(ev, &e))?;
    ev.event(Event::Started {
        repo: &opts.repo,
        revision: &opts.revision,
    });
    let api_of = |endpoint: &Endpoint| {
        let (retry, cancel) = (opts.retry.clone(), cancel.clone());
        Api::new(net.clone(), endpoint.clone(), creds.clone(), retry, cancel)
    };
    let api = api_of(&opts.endpoint);
    let info = repo_info(opts, &api, ev).await?;
    // With --verify-origin, the origin lists (commit and hashes); the
    // endpoints only serve bytes.
    let (api, info) = match &opts.verify_origin {
        None => (api, info),
        Some(origin) => {
            let o_api = api_of(origin);
            let o_info =
                super::origin::info(opts, origin, &o_api, &opts.endpoint, &info, ev).await?;
            (o_api, o_info)
        }
    };
    let place = Place::open(opts, info.sha.as_deref()).map_err(|e| failed(ev, &e))?;
    if let Err(e) = place.state.save_metadata(&info.raw) {
        ev.event(Event::Warning(&e));
    }
    let listing = match file_list(opts, &api, &place.state, &info, ev).await {
        Ok(l) => l,
        Err(ApiError::Interrupted) => return Err(Verdict::Interrupted),
        Err(e) => {
            let msg = format!("Failed to list repository files: {e}. Re-run to resume.");
            return Err(failed(ev, &msg));
        }
    };
    let sel = select(opts, &listing, &place, ev)?;
    let (check, mut verified) =
        what_is_here(opts, &place, &sel, &listing, &info, &cancel, ev).await?;
    if opts.dry_run {
        return Ok(plan(&place, &sel, &check, ev));
    }
    let verdict = if check.need.is_empty() {
        place.state.tidy_partials();
        Verdict::UpToDate {
            files: sel.files.len(),
            dir: place.shown().to_path_buf(),
        }
    } else {
        let downloads = Downloads {
            opts,
            net,
            cancel,
            events: events.clone(),
            creds,
            commit: info.sha.clone(),
        };
        downloads.run(&place, &sel, check, &mut verified).await
    };
    let commit = info.sha.as_deref();
    finish(opts, &place, (&sel, &listing), &verified, commit, ev);
    Ok(verdict)
}

/// Tells the place which files are here (snapshot links, refs, download
/// records), saying what went wrong without changing the verdict.
fn finish(
    opts: &Options,
    place: &Place,
    (sel, listing): (&Selection<'_>, &Listing),
    verified: &Verified,
    commit: Option<&str>,
    ev: &dyn Events,
) {
    for w in place.finish(opts, sel, listing, verified, commit) {
        ev.event(Event::Warning(&w));
    }
}

/// Step 5, and what it needs besides the local dir and the selection.
struct Downloads<'a> {
    opts: &'a Options,
    net: Net,
    cancel: CancellationToken,
    events: Arc<dyn Events>,
    creds: HeaderMap,
    /// The listed commit, when the endpoint named one.
    commit: Option<String>,
}

impl Downloads<'_> {
    /// Downloads what `check` found missing; the verdict.
    async fn run(
        self,
        place: &Place,
        sel: &Selection<'_>,
        check: Check,
        verified: &mut Verified,
    ) -> Verdict {
        let opts = self.opts;
        let resuming = check.done_files > 0 || place.state.has_partials();
        let counters = Counters::new(sel.files.len(), sel.bytes);
        counters.files_done.store(check.done_files, Relaxed);
        counters.bytes.add_existing(check.done_bytes);
        let endpoints: Vec<Endpoint> = std::iter::once(opts.endpoint.clone())
            .chain(opts.mirrors.iter().cloned())
            .collect();
        self.events.event(Event::Downloading {
            files: sel.files.len(),
            dir: place.shown(),
            resuming,
            endpoints: &endpoints,
            verify_origin: opts.verify_origin.as_ref(),
            counters: &counters,
        });
        let cancel = self.cancel.clone();
        let ctx = Arc::new(FileCtx {
            net: self.net,
            opts: opts.clone(),
            root: place.root().to_path_buf(),
            down: endpoints.iter().map(|_| AtomicBool::new(false)).collect(),
            endpoints,
            url_rev: self.commit.clone().unwrap_or_else(|| opts.revision.clone()),
            commit: self.commit,
            creds: self.creds,
            retry: opts.retry.clone(),
            parent: counters.bytes.clone(),
            cancel: self.cancel,
            events: self.events,
            permits: Arc::new(Semaphore::new(opts.jobs.max(1))),
            xet: super::xet::XetTokens::default(),
        });
        let queue = Queue {
            ctx,
            place,
            sel,
            verified,
            counters: &counters,
            jobs: opts.jobs,
            max_jobs: opts.max_jobs,
        };
        let end = queue.run(check.need).await;
        place.state.tidy_partials();
        if cancel.is_cancelled() {
            Verdict::Interrupted
        } else if end.failed > 0 || end.left > 0 {
            Verdict::Incomplete {
                failed: end.failed,
                files: sel.files.len(),
            }
        } else {
            Verdict::Done {
                files: sel.files.len(),
                bytes: sel.bytes,
                dir: place.shown().to_path_buf(),
            }
        }
    }
}

/// `--dry-run`'s end: each selected file, whether the local check found it
/// current, and what a run would fetch.
fn plan(place: &Place, sel: &Selection<'_>, check: &Check, ev: &dyn Events) -> Verdict {
    let mut current = vec![true; sel.files.len()];
    for &i in check.need.iter().chain(&check.twins) {
        current[i] = false;
    }
    let files: Vec<Planned<'_>> = sel
        .files
        .iter()
        .zip(current)
        .map(|(f, current)| Planned {
            path: &f.path,
            size: f.size,
            current,
        })
        .collect();
    ev.event(Event::Plan {
        files: &files,
        dir: place.shown(),
    });
    let bytes = check
        .need
        .iter()
        .fold(0u64, |a, &i| a.saturating_add(sel.files[i].size));
    // A blob two paths share is fetched once: both are listed, its bytes
    // counted once.
    Verdict::DryRun {
        files: sel.files.len(),
        need: check.need.len() + check.twins.len(),
        bytes,
    }
}

/// Says why the run cannot go on.
pub(super) fn failed(events: &dyn Events, msg: &str) -> Verdict {
    events.event(Event::Error(msg));
    Verdict::Failed
}

/// Step 1: repo info, refused when disabled or gated without a token.
async fn repo_info(opts: &Options, api: &Api, ev: &dyn Events) -> Step<RepoInfo> {
    let info = match api.info(opts.repo_type, &opts.repo, &opts.revision).await {
        Ok(i) => i,
        Err(ApiError::Interrupted) => return Err(Verdict::Interrupted),
        Err(e) => return Err(failed(ev, &info_error(opts, &opts.endpoint, &e))),
    };
    if info.disabled {
        let msg = format!(
            "{} {} has been disabled on the Hub; nothing can be downloaded.",
            opts.repo_type.name(),
            opts.repo
        );
        return Err(failed(ev, &msg));
    }
    if info.gated && opts.token.is_none() {
        return Err(failed(ev, &gated_message(opts)));
    }
    Ok(info)
}

/// The selected files of a listing, with their safe relative paths.
pub struct Selection<'a> {
    pub files: Vec<&'a RepoFile>,
    pub rels: Vec<PathBuf>,
    /// Their total size (sizes come from the server: added without
    /// trusting them not to overflow).
    pub bytes: u64,
}

/// Step 3: hfd.sh's include/exclude, then a refusal of any name that would
/// leave the local dir, before a byte is written.
fn select<'a>(
    opts: &Options,
    listing: &'a Listing,
    place: &Place,
    ev: &dyn Events,
) -> Result<Selection<'a>, Verdict> {
    let files: Vec<&RepoFile> = listing
        .files
        .iter()
        .filter(|f| opts.filter.selects(&f.path))
        .collect();
    let mut unsafe_names = 0;
    let mut rels = Vec::with_capacity(files.len());
    for f in &files {
        match state::safe_relative(&f.path) {
            Ok(r) => rels.push(r),
            Err(e) => {
                unsafe_names += 1;
                ev.event(Event::Error(&format!("Refusing {e}.")));
            }
        }
    }
    if unsafe_names > 0 {
        let those = if unsafe_names == 1 {
            "that name"
        } else {
            "those names"
        };
        let msg = format!(
            "Nothing was downloaded. To get the other files, leave {those} out with --exclude."
        );
        return Err(failed(ev, &msg));
    }
    if let Some(why) = place.refusal(&files) {
        return Err(failed(ev, &why));
    }
    if let Err(e) = place.state.save_manifest(&files) {
        ev.event(Event::Warning(&e));
    }
    let bytes = files.iter().fold(0u64, |a, f| a.saturating_add(f.size));
    Ok(Selection { files, rels, bytes })
}

/// Step 4: what is already here, with the records of verified files (those
/// of files the commit no longer has dropped; those merely not selected
/// this time kept for a later `--include`).
async fn what_is_here(
    opts: &Options,
    place: &Place,
    sel: &Selection<'_>,
    listing: &Listing,
    info: &RepoInfo,
    cancel: &CancellationToken,
    ev: &dyn Events,
) -> Step<(Check, Verified)> {
    let mut verified = place.state.load_verified();
    let listed: HashSet<&str> = listing.files.iter().map(|f| f.path.as_str()).collect();
    verified
        .files
        .retain(|path, _| listed.contains(path.as_str()));
    let checker = Checker {
        opts,
        place,
        sel,
        commit: info.sha.as_deref(),
        cancel,
        events: ev,
    };
    let checked = checker.run(&mut verified).await;
    let saved = place.state.save_verified(&verified);
    let Some(check) = checked else {
        return Err(Verdict::Interrupted);
    };
    if let Err(e) = saved {
        ev.event(Event::Warning(&e));
    }
    Ok((check, verified))
}

/// The local dir hfd.sh would pick: the part of the repo id after the
/// first `/`, relative to the working directory.
pub fn default_local_dir(repo: &RepoId) -> PathBuf {
    Path::new(repo.default_dir_name()).to_path_buf()
}
