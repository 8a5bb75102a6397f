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
//!    done; files of the right size without a record are hashed (and adopted
//!    when they match); the rest are downloaded.
//! 5. Downloads, `-j` files at a time with up to `-x` connections each, by
//!    the engine: resolve once per file from the commit (so every file comes
//!    from the same commit even if the branch moves meanwhile), data into
//!    `.hfd/partial/`, checksum, then rename into place.
//!
//! With several endpoints (`--endpoint` more than once) the first one
//! answers steps 1 and 2, and each file's resolve URL on every endpoint is a
//! source of the same download, held to the listing's hash and size
//! ([`super::identity`]). An endpoint that fails one file is left out for
//! that file only (a mirror may lack it); one whose connections all give up
//! is left out for the rest of the run, so later files do not wait for it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use http::header::{AUTHORIZATION, HeaderValue};
use http::{HeaderMap, HeaderName};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::engine::adaptive::{Adaptive, Growth};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::api::{Api, ApiError, RepoFile, RepoInfo};
use super::display::{Counters, LiveLine, Printer, Style, files_noun, human};
use super::endpoint::{DEFAULT_ENDPOINT, Endpoint, RepoId, RepoType, hub_page};
use super::filter::Filter;
use super::identity;
use super::state::{self, Listing, LocalDir, Record, Verified};
use crate::engine::{self, Checksum, DownloadSpec, Error, Progress, RetryPolicy};
use crate::net::Net;
use crate::ui::Verbosity;

/// A file whose checksum fails (or that changes on the server while being
/// fetched) is downloaded again, up to this many attempts in all.
const ATTEMPTS_PER_FILE: u32 = 3;

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
    pub local_dir: PathBuf,
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
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Everything downloaded and verified.
    Done,
    /// Nothing needed fetching.
    UpToDate,
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
            Status::Done | Status::UpToDate => 0,
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

/// Runs hfd with `opts`, printing as it goes.
pub async fn run(opts: &Options, net: Net, cancel: CancellationToken) -> Status {
    let p = Printer::from_env();
    run_with(opts, net, cancel, p).await
}

/// [`run`] with a chosen printer (the demo prints without colours).
pub async fn run_with(opts: &Options, net: Net, cancel: CancellationToken, p: Printer) -> Status {
    let filter = &opts.filter;
    let creds = match credentials(opts.token.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            p.error(&e);
            return Status::Failed;
        }
    };
    p.out(Style::Bold, &format!("{} ({})", opts.repo, opts.revision));
    let api = Api::new(
        net.clone(),
        opts.endpoint.clone(),
        creds.clone(),
        opts.retry.clone(),
        cancel.clone(),
    );

    // 1. Repo info.
    let info = match api.info(opts.repo_type, &opts.repo, &opts.revision).await {
        Ok(i) => i,
        Err(ApiError::Interrupted) => return interrupted(&p),
        Err(e) => {
            p.error(&info_error(opts, &opts.endpoint, &e));
            return Status::Failed;
        }
    };
    if info.disabled {
        p.error(&format!(
            "{} {} has been disabled on the Hub; nothing can be downloaded.",
            opts.repo_type.name(),
            opts.repo
        ));
        return Status::Failed;
    }
    if info.gated && opts.token.is_none() {
        p.error(&gated_message(opts));
        return Status::Failed;
    }

    let local = match LocalDir::open(&opts.local_dir) {
        Ok(l) => l,
        Err(e) => {
            p.error(&e);
            return Status::Failed;
        }
    };
    if let Err(e) = local.save_metadata(&info.raw) {
        p.warn(&e);
    }

    // 2. The file list of the commit.
    let listing = match file_list(opts, &api, &local, &info, &p).await {
        Ok(l) => l,
        Err(ApiError::Interrupted) => return interrupted(&p),
        Err(e) => {
            p.error(&format!(
                "Failed to list repository files: {e}. Re-run to resume."
            ));
            return Status::Failed;
        }
    };
    // Resolve by commit when we know it: all files then come from the
    // commit that was listed, even if the branch moves during the run.
    let url_rev = info.sha.clone().unwrap_or_else(|| opts.revision.clone());

    // 3. Selection and path safety.
    let selected: Vec<&RepoFile> = listing
        .files
        .iter()
        .filter(|f| filter.selects(&f.path))
        .collect();
    let mut unsafe_names = 0;
    let mut rels = Vec::with_capacity(selected.len());
    for f in &selected {
        match state::safe_relative(&f.path) {
            Ok(r) => rels.push(r),
            Err(e) => {
                unsafe_names += 1;
                p.error(&format!("Refusing {e}."));
            }
        }
    }
    if unsafe_names > 0 {
        p.error(&format!(
            "Nothing was downloaded. To get the other files, leave {} out with --exclude.",
            if unsafe_names == 1 {
                "that name"
            } else {
                "those names"
            }
        ));
        return Status::Failed;
    }
    if let Err(e) = local.save_manifest(&selected) {
        p.warn(&e);
    }
    // Sizes come from the server: add without trusting them not to overflow.
    let total_bytes = selected.iter().fold(0u64, |a, f| a.saturating_add(f.size));
    let total_files = selected.len();

    // 4. What is already here.
    let mut verified = local.load_verified();
    // Records of files the commit no longer has are dropped; those of
    // files merely not selected this time are kept for a later --include.
    let listed: std::collections::HashSet<&str> =
        listing.files.iter().map(|f| f.path.as_str()).collect();
    verified
        .files
        .retain(|path, _| listed.contains(path.as_str()));
    let commit = info.sha.clone();
    let check = match local_check(
        opts,
        &local,
        &selected,
        &rels,
        &mut verified,
        commit.as_deref(),
        &cancel,
        &p,
    )
    .await
    {
        Some(c) => c,
        None => {
            let _ = local.save_verified(&verified);
            return interrupted(&p);
        }
    };
    if let Err(e) = local.save_verified(&verified) {
        p.warn(&e);
    }
    if check.need.is_empty() {
        local.tidy_partials();
        p.out(
            Style::Green,
            &format!(
                "Up to date. {total_files} {} in {}",
                files_noun(total_files),
                opts.local_dir.display()
            ),
        );
        return Status::UpToDate;
    }
    let resuming = check.done_files > 0 || local.has_partials();
    p.out(
        Style::Plain,
        &format!(
            "{} {total_files} {} to {}  ·  Ctrl+C to stop, re-run to resume",
            if resuming { "Resuming" } else { "Downloading" },
            files_noun(total_files),
            opts.local_dir.display()
        ),
    );
    let endpoints: Vec<Endpoint> = std::iter::once(opts.endpoint.clone())
        .chain(opts.mirrors.iter().cloned())
        .collect();
    if endpoints.len() > 1 {
        let all: Vec<&str> = endpoints.iter().map(Endpoint::as_str).collect();
        p.out(
            Style::Dim,
            &format!("From {} endpoints at once: {}", all.len(), all.join(", ")),
        );
    }

    // 5. Downloads.
    let counters = Counters {
        bytes: Progress::new(),
        files_done: Arc::new(AtomicUsize::new(check.done_files)),
        files_total: total_files,
        bytes_total: total_bytes,
    };
    counters.bytes.set_total(Some(total_bytes));
    counters.bytes.add_existing(check.done_bytes);
    let line = LiveLine::start(counters.clone(), opts.verbosity == Verbosity::Quiet);
    let ctx = Arc::new(FileCtx {
        net,
        local_dir: local.root().to_path_buf(),
        down: endpoints.iter().map(|_| AtomicBool::new(false)).collect(),
        endpoints,
        repo: opts.repo.clone(),
        repo_type: opts.repo_type,
        url_rev,
        commit,
        creds,
        connections: opts.connections,
        retry: opts.retry.clone(),
        parent: counters.bytes.clone(),
        cancel: cancel.clone(),
        printer: p,
        permits: Arc::new(Semaphore::new(opts.jobs.max(1))),
    });
    let mut need = check.need;
    // Largest first: the long transfers start at once, and the small ones
    // fill the gaps at the end instead of one big file running alone.
    need.sort_by_key(|&i| std::cmp::Reverse(selected[i].size));
    let mut queue = need.into_iter().peekable();
    let mut running = JoinSet::new();
    let mut failed = 0usize;
    let mut last_save = Instant::now();
    // No -j: more files at once while that pays (see engine::adaptive).
    let mut jobs_now = opts.jobs.max(1);
    let mut growth = (opts.max_jobs > jobs_now).then(|| {
        let a = Adaptive {
            start: jobs_now,
            ..Adaptive::default()
        };
        Growth::new(&a, jobs_now, opts.max_jobs)
    });
    let mut grow_tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        // A file holds one of the -j permits while it transfers; the next
        // file may start while the last one is being verified and synced.
        let want_more = queue.peek().is_some() && !cancel.is_cancelled();
        let joined = tokio::select! {
            permit = ctx.permits.clone().acquire_owned(), if want_more => {
                let (Ok(permit), Some(i)) = (permit, queue.next()) else { continue };
                let f = selected[i].clone();
                let out = local.output(&rels[i]);
                let part = local.partial(&rels[i]);
                running.spawn(download_file(ctx.clone(), f, out, part, permit));
                continue;
            }
            _ = grow_tick.tick(), if want_more && growth.as_ref().is_some_and(|g| !g.stopped()) => {
                let g = growth.as_mut().expect("checked");
                let received = counters.bytes.received();
                match g.tick(Instant::now(), received, jobs_now, opts.max_jobs) {
                    Some(n) if n > jobs_now => {
                        tracing::info!("adaptive: {jobs_now} -> {n} files at once");
                        ctx.permits.add_permits(n - jobs_now);
                        jobs_now = n;
                    }
                    Some(n) => {
                        tracing::info!("adaptive: back to {n} files at once");
                        // Running files keep their turns; the extra ones are
                        // taken out of play as they come back.
                        let extra = (jobs_now - n) as u32;
                        let permits = ctx.permits.clone();
                        tokio::spawn(async move {
                            if let Ok(p) = permits.acquire_many_owned(extra).await {
                                p.forget();
                            }
                        });
                        jobs_now = n;
                    }
                    None => {}
                }
                continue;
            }
            j = running.join_next(), if !running.is_empty() => j,
            _ = cancel.cancelled(), if running.is_empty() && want_more => break,
            else => break,
        };
        let Some(joined) = joined else {
            continue;
        };
        match joined {
            Ok(FileResult::Done(path, record)) => {
                verified.files.insert(path, record);
                counters.files_done.fetch_add(1, Relaxed);
            }
            Ok(FileResult::Failed(msg)) => {
                failed += 1;
                p.error(&msg);
            }
            Ok(FileResult::Interrupted) => {}
            Err(e) => {
                failed += 1;
                p.error(&format!("internal error: a download task failed: {e}"));
            }
        }
        if last_save.elapsed() >= Duration::from_secs(2) {
            if let Err(e) = local.save_verified(&verified) {
                p.warn(&e);
            }
            last_save = Instant::now();
        }
    }
    line.finish().await;
    if let Err(e) = local.save_verified(&verified) {
        p.warn(&e);
    }
    local.tidy_partials();
    if cancel.is_cancelled() {
        return interrupted(&p);
    }
    if failed > 0 || queue.next().is_some() {
        p.out(
            Style::Red,
            &format!(
                "{failed} of {total_files} {} could not be downloaded.",
                files_noun(total_files)
            ),
        );
        p.out(Style::Red, "Download incomplete. Re-run to resume.");
        return Status::Incomplete;
    }
    p.out(
        Style::Green,
        &format!(
            "Done. {total_files} {}, {} in {}",
            files_noun(total_files),
            human(total_bytes),
            opts.local_dir.display()
        ),
    );
    Status::Done
}

fn interrupted(p: &Printer) -> Status {
    p.out(Style::Yellow, "Interrupted. Re-run to resume.");
    Status::Interrupted
}

pub(crate) fn gated_message(opts: &Options) -> String {
    format!(
        "{} is gated: it needs a token. Pass --hf_token or set HF_TOKEN (a username is not needed), and accept the repo's terms with that account on {}. Tokens: {DEFAULT_ENDPOINT}/settings/tokens",
        opts.repo,
        hub_page(opts.repo_type, &opts.repo)
    )
}

/// One line for a failed repo-info call to `ep`.
pub(crate) fn info_error(opts: &Options, ep: &Endpoint, e: &ApiError) -> String {
    let ApiError::Status {
        url,
        status,
        code,
        message,
    } = e
    else {
        return match e {
            ApiError::GaveUp { detail, .. } => format!(
                "Cannot reach {}: {detail}. Check the network, the endpoint (HF_ENDPOINT, --endpoint) and the proxy settings.",
                ep.as_str()
            ),
            other => format!("Failed to fetch metadata: {other}"),
        };
    };
    let code = code.as_deref().unwrap_or("");
    let dataset_hint = if opts.repo_type == RepoType::Model {
        " (for a dataset, add --dataset)"
    } else {
        ""
    };
    match (*status, code) {
        (_, "RevisionNotFound") => format!(
            "Revision {:?} not found in {} {}.",
            opts.revision,
            opts.repo_type.name(),
            opts.repo
        ),
        (_, "GatedRepo") if opts.token.is_none() => gated_message(opts),
        (_, "GatedRepo") => format!(
            "{} is gated and this token has no access yet: accept the repo's terms on {} with the token's account.",
            opts.repo,
            hub_page(opts.repo_type, &opts.repo)
        ),
        (401, _) if message.contains("Invalid credentials in Authorization header") => format!(
            "The token was rejected by {}: check --hf_token / HF_TOKEN.",
            ep.as_str()
        ),
        (401 | 403 | 404, _) if opts.token.is_none() => format!(
            "Repository {} not found on {}{dataset_hint}. If it is private or gated, pass --hf_token or set HF_TOKEN.",
            opts.repo,
            ep.as_str()
        ),
        (401 | 403 | 404, _) => format!(
            "Repository {} not found on {}{dataset_hint}, or the token has no access to it.",
            opts.repo,
            ep.as_str()
        ),
        _ => format!(
            "Failed to fetch metadata from {url}. HTTP status code: {status}.{}",
            if message.is_empty() {
                String::new()
            } else {
                format!(" {message}")
            }
        ),
    }
}

/// The complete file list of the revision: kept from an earlier run when
/// the commit is the same, else `siblings` when complete, else the tree.
async fn file_list(
    opts: &Options,
    api: &Api,
    local: &LocalDir,
    info: &RepoInfo,
    p: &Printer,
) -> Result<Listing, ApiError> {
    let t = opts.repo_type.name();
    if let Some(sha) = &info.sha
        && let Some(l) = local.load_listing()
        && l.commit == *sha
        && l.repo == opts.repo.as_str()
        && l.repo_type == t
    {
        return Ok(l);
    }
    let files = list_files(opts, api, info, true).await?;
    let (n, bytes) = files
        .iter()
        .filter(|f| opts.filter.selects(&f.path))
        .fold((0usize, 0u64), |(n, b), f| {
            (n + 1, b.saturating_add(f.size))
        });
    p.out(
        Style::Dim,
        &format!("Listed {n} {} ({})", files_noun(n), human(bytes)),
    );
    let listing = Listing::new(
        opts.repo.as_str(),
        t,
        info.sha.as_deref().unwrap_or(""),
        files,
    );
    if info.sha.is_some()
        && let Err(e) = local.save_listing(&listing)
    {
        p.warn(&e);
    }
    Ok(listing)
}

/// Every file of the revision on `api`'s endpoint: `siblings` when complete
/// (its sizes add up to the `treesize`), else the paginated tree.
pub(crate) async fn list_files(
    opts: &Options,
    api: &Api,
    info: &RepoInfo,
    show_progress: bool,
) -> Result<Vec<RepoFile>, ApiError> {
    if info.siblings_detailed && !info.siblings.is_empty() {
        let sum = info
            .siblings
            .iter()
            .fold(0u64, |a, f| a.saturating_add(f.size));
        let treesize = api
            .treesize(opts.repo_type, &opts.repo, &opts.revision)
            .await;
        if treesize == Some(sum) {
            return Ok(info.siblings.clone());
        }
    }
    let progress = |n| {
        if show_progress {
            super::display::listing_progress(n)
        }
    };
    let r = api
        .tree(
            opts.repo_type,
            &opts.repo,
            &opts.revision,
            super::api::MAX_FILES,
            progress,
        )
        .await;
    if show_progress {
        super::display::listing_done();
    }
    r
}

/// The verdict of the local check.
struct Check {
    /// Indices (into `selected`) of files to download.
    need: Vec<usize>,
    done_files: usize,
    done_bytes: u64,
    /// `.hfd/partial/` has something in it, so finished files may have
    /// left a control file behind (read once: most runs have none).
    leftovers: bool,
}

impl Check {
    /// A file that is on disk and verified: counted, its leftovers tidied.
    fn done(&mut self, local: &LocalDir, rel: &Path, size: u64) {
        if self.leftovers {
            local.forget_partial(rel);
        }
        self.done_files += 1;
        self.done_bytes = self.done_bytes.saturating_add(size);
    }
}

fn hash_key(c: &Checksum) -> String {
    format!("{}:{}", c.algorithm(), c.hex())
}

/// Sorts the selected files into done and needed, hashing files of the
/// right size that have no valid record. `None` when interrupted.
#[allow(clippy::too_many_arguments)]
async fn local_check(
    opts: &Options,
    local: &LocalDir,
    selected: &[&RepoFile],
    rels: &[PathBuf],
    verified: &mut Verified,
    commit: Option<&str>,
    cancel: &CancellationToken,
    p: &Printer,
) -> Option<Check> {
    let mut check = Check {
        need: Vec::new(),
        done_files: 0,
        done_bytes: 0,
        leftovers: local.has_partials(),
    };
    let mut to_hash = Vec::new();
    for (i, f) in selected.iter().enumerate() {
        let out = local.output(&rels[i]);
        let meta = match std::fs::metadata(&out) {
            Ok(m) if m.is_file() && m.len() == f.size => m,
            _ => {
                verified.files.remove(&f.path);
                check.need.push(i);
                continue;
            }
        };
        let fp = state::fingerprint(&meta);
        let expected = f.checksum().map(|c| hash_key(&c));
        let record_ok = verified.files.get(&f.path).is_some_and(|r| {
            r.fingerprint == fp
                && r.size == f.size
                && match &expected {
                    Some(h) => r.hash == *h,
                    None => true,
                }
        });
        if record_ok && !opts.verify_all {
            check.done(local, &rels[i], f.size);
        } else if f.checksum().is_some() {
            to_hash.push(i);
        } else {
            verified.files.remove(&f.path);
            check.need.push(i);
        }
    }
    if !to_hash.is_empty() {
        p.out(
            Style::Dim,
            &format!(
                "Verifying {} local {}...",
                to_hash.len(),
                files_noun(to_hash.len())
            ),
        );
    }
    let parallel = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(opts.jobs.max(1));
    let mut queue = to_hash.into_iter();
    let mut running = JoinSet::new();
    loop {
        while running.len() < parallel && !cancel.is_cancelled() {
            let Some(i) = queue.next() else { break };
            let f = selected[i];
            let sum = f.checksum().expect("only files with a checksum are hashed");
            let out = local.output(&rels[i]);
            running.spawn_blocking(move || {
                let before = std::fs::metadata(&out).ok().map(|m| state::fingerprint(&m));
                let got = engine::verify::digest_file(&out, &sum).ok();
                let after = std::fs::metadata(&out).ok().map(|m| state::fingerprint(&m));
                let ok = got.as_deref() == Some(sum.hex()) && before.is_some() && before == after;
                (i, ok, after)
            });
        }
        let Some(r) = running.join_next().await else {
            break;
        };
        let Ok((i, ok, fp)) = r else { continue };
        let f = selected[i];
        match (ok, fp) {
            (true, Some(fp)) => {
                let sum = f.checksum().expect("hashed files have a checksum");
                verified.files.insert(
                    f.path.clone(),
                    Record {
                        size: f.size,
                        hash: hash_key(&sum),
                        commit: commit.map(str::to_string),
                        fingerprint: fp,
                    },
                );
                check.done(local, &rels[i], f.size);
            }
            _ => {
                verified.files.remove(&f.path);
                p.warn(&format!(
                    "{}: the local copy does not match its {}; downloading it again",
                    f.path,
                    f.checksum().map_or("hash", |c| c.algorithm())
                ));
                check.need.push(i);
            }
        }
    }
    if cancel.is_cancelled() {
        return None;
    }
    Some(check)
}

/// What every file download shares.
struct FileCtx {
    net: Net,
    /// The local dir: no link below it is followed.
    local_dir: PathBuf,
    /// The listing's endpoint first, then `--endpoint`'s others.
    endpoints: Vec<Endpoint>,
    /// Endpoints that stopped answering during this run: later files do
    /// not wait for them.
    down: Vec<AtomicBool>,
    repo: RepoId,
    repo_type: RepoType,
    url_rev: String,
    commit: Option<String>,
    creds: HeaderMap,
    connections: usize,
    retry: RetryPolicy,
    parent: Arc<Progress>,
    cancel: CancellationToken,
    printer: Printer,
    /// `-j`: one per file transferring.
    permits: Arc<Semaphore>,
}

impl FileCtx {
    /// Marks endpoint `i` as down for the rest of the run, saying so once.
    fn endpoint_down(&self, i: usize, why: &str) {
        if !self.down[i].swap(true, Relaxed) {
            self.printer.warn(&format!(
                "{} stopped answering ({why}); the other endpoints carry on",
                self.endpoints[i].as_str()
            ));
        }
    }
}

enum FileResult {
    Done(String, Record),
    Failed(String),
    Interrupted,
}

/// The hash the Hub states for a file in its resolve answer
/// (`X-Linked-Etag`, else `ETag`): used only when the listing gave none.
fn linked_checksum(hops: &[engine::Hop], lfs: bool) -> Option<Checksum> {
    let name = HeaderName::from_static("x-linked-etag");
    let raw = hops.iter().find_map(|h| {
        h.headers
            .get(&name)
            .or_else(|| h.headers.get(http::header::ETAG))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    })?;
    let v = super::identity::hash_of(&raw)?;
    match v.len() {
        64 => Checksum::sha256(&v).ok(),
        40 if !lfs => Checksum::git_blob_sha1(&v).ok(),
        _ => None,
    }
}

/// Runs the engine on one file, giving `permit` back as soon as every byte
/// has arrived (the checksum, fsync and rename that follow use no
/// connection).
async fn transfer(
    ctx: &FileCtx,
    spec: &DownloadSpec,
    progress: &Arc<Progress>,
    permit: &mut Option<OwnedSemaphorePermit>,
) -> Result<engine::Outcome, Error> {
    if permit.is_none() {
        // A retry: wait for a turn like any other file.
        tokio::select! {
            p = ctx.permits.clone().acquire_owned() => *permit = p.ok(),
            _ = ctx.cancel.cancelled() => return Err(Error::Interrupted),
        }
    }
    let dl = engine::download(&ctx.net, spec, progress.clone(), ctx.cancel.clone());
    tokio::pin!(dl);
    loop {
        tokio::select! {
            r = &mut dl => return r,
            _ = progress.wait_all_received(), if permit.is_some() => *permit = None,
        }
    }
}

async fn download_file(
    ctx: Arc<FileCtx>,
    f: RepoFile,
    out: PathBuf,
    part: PathBuf,
    permit: OwnedSemaphorePermit,
) -> FileResult {
    let mut permit = Some(permit);
    let mut urls = Vec::with_capacity(ctx.endpoints.len());
    for ep in &ctx.endpoints {
        match ep.resolve_url(ctx.repo_type, &ctx.repo, &ctx.url_rev, &f.path) {
            Ok(u) => urls.push(u),
            Err(e) => return FileResult::Failed(format!("{}: {e}", f.path)),
        }
    }
    let mut spec = DownloadSpec::new(urls[0].clone(), &out);
    spec.headers = ctx.creds.clone();
    spec.part_path = Some(part);
    // No link below the local dir is followed: a repo's folder that is a
    // link out of it is refused, not written through.
    spec.root = Some(ctx.local_dir.clone());
    spec.per_source = ctx.connections;
    spec.retry = ctx.retry.clone();
    spec.checksum = f.checksum();
    // A server whose file is not the listed size is refused up front. (A
    // listing without sizes says 0; then the hash, if any, decides.)
    spec.expected_size = (f.size > 0).then_some(f.size);
    // Whatever we find is checked against the hash at the end, so a file
    // that changed on the server is simply fetched again from the start.
    spec.allow_restart = true;
    spec.allow_overwrite = true;
    if urls.len() > 1 {
        spec.source_check = Some(identity::check_for(&f));
    }
    // Endpoints this file no longer uses (a mirror lacking it, or serving
    // another version): other files may still come from them.
    let mut left_out = vec![false; urls.len()];
    // After a checksum failure with several endpoints nobody can tell which
    // one sent the bad bytes: the next attempt uses the listing's endpoint.
    let mut first_only = false;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut live: Vec<usize> = (0..urls.len())
            .filter(|&i| !left_out[i] && !ctx.down[i].load(Relaxed))
            .collect();
        if live.is_empty() {
            // Every endpoint failed some earlier file: try them anyway.
            live = (0..urls.len()).filter(|&i| !left_out[i]).collect();
        }
        if first_only {
            live.truncate(1);
        }
        spec.urls = live.iter().map(|&i| urls[i].clone()).collect();
        spec.connections = ctx.connections * spec.urls.len();
        let progress = Progress::child(&ctx.parent);
        let result = transfer(&ctx, &spec, &progress, &mut permit).await;
        // Verification below uses no connection either.
        permit = None;
        match result {
            Ok(o) => {
                if live.len() > 1 {
                    for (k, gave_up) in o.sources_gave_up.iter().enumerate() {
                        if *gave_up && let Some(&i) = live.get(k) {
                            ctx.endpoint_down(i, "its connections used up their retries");
                        }
                    }
                }
                let sum = match &spec.checksum {
                    Some(c) => Some(c.clone()),
                    None => match linked_checksum(&o.hops, f.lfs) {
                        Some(c) => {
                            let p = out.clone();
                            let c2 = c.clone();
                            let got = tokio::task::spawn_blocking(move || {
                                engine::verify::digest_file(&p, &c2)
                            })
                            .await
                            .ok()
                            .and_then(|r| r.ok());
                            if got.as_deref() != Some(c.hex()) {
                                let _ = std::fs::remove_file(&out);
                                progress.discard(progress.done());
                                if attempt < ATTEMPTS_PER_FILE {
                                    first_only = live.len() > 1;
                                    continue;
                                }
                                return FileResult::Failed(format!(
                                    "{}: the downloaded data does not match the {} the Hub states; it was discarded",
                                    f.path,
                                    c.algorithm()
                                ));
                            }
                            Some(c)
                        }
                        None => {
                            ctx.printer.warn(&format!(
                                "{}: the Hub gave no hash for this file; only its size was checked",
                                f.path
                            ));
                            None
                        }
                    },
                };
                if sum.is_none() && o.total != Some(f.size) {
                    return FileResult::Failed(format!(
                        "{}: the server sent {} bytes, the listing says {}",
                        f.path,
                        o.total.unwrap_or(0),
                        f.size
                    ));
                }
                let fp = match std::fs::metadata(&out) {
                    Ok(m) => state::fingerprint(&m),
                    Err(e) => {
                        return FileResult::Failed(format!("{}: {e}", out.display()));
                    }
                };
                let record = Record {
                    size: o.total.unwrap_or(f.size),
                    hash: sum.as_ref().map_or_else(|| "size-only".into(), hash_key),
                    commit: ctx.commit.clone(),
                    fingerprint: fp,
                };
                return FileResult::Done(f.path.clone(), record);
            }
            Err(Error::Interrupted) => return FileResult::Interrupted,
            Err(_) if ctx.cancel.is_cancelled() => return FileResult::Interrupted,
            Err(e) if live.len() > 1 && e.source_index().is_some() => {
                // One endpoint failed this file: the others carry on with it,
                // keeping what was downloaded (it is checked at the end).
                let k = e.source_index().expect("checked in the guard");
                let i = live[k];
                progress.discard(progress.done());
                left_out[i] = true;
                attempt -= 1;
                if matches!(e, Error::GaveUp { .. } | Error::Net { .. }) {
                    ctx.endpoint_down(i, &e.to_string());
                } else {
                    ctx.printer.warn(&format!(
                        "{}: not using {} for this file: {e}",
                        f.path,
                        ctx.endpoints[i].as_str()
                    ));
                }
            }
            Err(e @ (Error::ChecksumMismatch { .. } | Error::RemoteChanged { .. }))
                if attempt < ATTEMPTS_PER_FILE =>
            {
                progress.discard(progress.done());
                first_only = matches!(e, Error::ChecksumMismatch { .. }) && live.len() > 1;
                let from = if first_only {
                    format!(" from {} alone", ctx.endpoints[live[0]].as_str())
                } else {
                    String::new()
                };
                ctx.printer
                    .warn(&format!("{}: {e}; downloading it again{from}", f.path));
            }
            Err(e) => return FileResult::Failed(file_error(&ctx, &f, &e, &live)),
        }
    }
}

/// One line for a file that could not be downloaded.
fn file_error(ctx: &FileCtx, f: &RepoFile, e: &Error, live: &[usize]) -> String {
    match e {
        Error::NotFound { status, url } => format!(
            "{}: not found on {} (HTTP {status}); the file may have been removed, or the mirror lacks it",
            f.path,
            ctx.endpoints[live.get(url.index).copied().unwrap_or(0)].as_str()
        ),
        Error::Auth { status, .. } => format!(
            "{}: access denied (HTTP {status}). If {} is gated, accept its terms on {} and pass --hf_token or set HF_TOKEN; check the token's permissions",
            f.path,
            ctx.repo,
            hub_page(ctx.repo_type, &ctx.repo)
        ),
        Error::ChecksumMismatch { algo, .. } => format!(
            "{}: the data did not match its {algo} in {ATTEMPTS_PER_FILE} attempts and was discarded",
            f.path
        ),
        Error::Storage(crate::storage::StorageError::Control(
            crate::storage::control_file::ControlError::Locked { .. },
        )) => format!("{}: another process is downloading this file", f.path),
        other => format!("{}: {other}", f.path),
    }
}

/// The local dir hfd.sh would pick: the part of the repo id after the
/// first `/`, relative to the working directory.
pub fn default_local_dir(repo: &RepoId) -> PathBuf {
    Path::new(repo.default_dir_name()).to_path_buf()
}
