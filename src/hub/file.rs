//! One file of the repo: resolved on every endpoint from the listed commit,
//! downloaded by the engine into `.hfd/partial/`, checked against the hash
//! the listing (or the Hub's resolve answer) gives, and recorded.
//!
//! A file whose checksum fails, or that changes on the server while being
//! fetched, is downloaded again, up to [`ATTEMPTS_PER_FILE`] attempts. With
//! several endpoints, one that fails this file is left out for it (a mirror
//! may lack it); one whose connections all give up is left out for the rest
//! of the run, so later files do not wait for it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use http::{HeaderMap, HeaderName};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::api::RepoFile;
use super::check::hash_key;
use super::endpoint::Endpoint;
use super::events::{Event, Events, FileError};
use super::identity;
use super::messages::file_error;
use super::run::Options;
use super::state::{self, Record, XetRecord};
use crate::client::RetryPolicy;
use crate::engine::limit::RateLimit;
use crate::engine::{self, Checksum, DownloadSpec, Error, Outcome, Progress};
use crate::net::Net;
use crate::xet::reuse::Previous;

/// Attempts per file, in all, when its data fails its checksum or the file
/// changes on the server meanwhile.
pub const ATTEMPTS_PER_FILE: u32 = 3;

/// What every file download shares.
pub struct FileCtx {
    pub net: Net,
    pub opts: Options,
    /// The folder the user named (local dir or cache): no link below it
    /// is followed.
    pub root: PathBuf,
    /// The listing's endpoint first, then `--endpoint`'s others.
    pub endpoints: Vec<Endpoint>,
    /// Endpoints that stopped answering during this run: later files do
    /// not wait for them.
    pub down: Vec<AtomicBool>,
    /// The revision files are resolved at: the listed commit when known.
    pub url_rev: String,
    pub commit: Option<String>,
    pub creds: HeaderMap,
    pub retry: RetryPolicy,
    pub parent: Arc<Progress>,
    pub cancel: CancellationToken,
    pub events: Arc<dyn Events>,
    /// `-j`: one per file transferring.
    pub permits: Arc<Semaphore>,
    /// Xet tokens granted (or refused) so far, by token route.
    pub xet: super::xet::XetTokens,
}

impl FileCtx {
    /// Marks endpoint `i` as down for the rest of the run, saying so once.
    fn endpoint_down(&self, i: usize, why: &str) {
        if !self.down[i].swap(true, Relaxed) {
            self.warn(&format!(
                "{} stopped answering ({why}); the other endpoints carry on",
                self.endpoints[i].as_str()
            ));
        }
    }

    fn warn(&self, text: &str) {
        self.events.event(Event::Warning(text));
    }
}

/// Where a file goes.
pub struct Dest {
    pub out: PathBuf,
    /// Its data until complete and verified.
    pub part: PathBuf,
    /// An older version on disk with a known Xet layout.
    pub previous: Option<Previous>,
}

/// How one file ended.
pub enum FileResult {
    /// Verified; with its Xet layout when read natively.
    Done(String, Record, Option<Box<XetRecord>>),
    Failed(String, FileError),
    Interrupted,
}

/// What to do after an attempt.
enum Next {
    Again,
    End(FileResult),
}

/// One file's download, across attempts and endpoints.
struct FileJob {
    ctx: Arc<FileCtx>,
    f: RepoFile,
    out: PathBuf,
    spec: DownloadSpec,
    /// The file's resolve URL on each endpoint.
    urls: Vec<Url>,
    /// Endpoints this file no longer uses (a mirror lacking it, or serving
    /// another version): other files may still come from them.
    left_out: Vec<bool>,
    /// After a checksum failure with several endpoints nobody can tell
    /// which one sent the bad bytes: the next attempt uses the first alone.
    first_only: bool,
    attempt: u32,
    /// The endpoints of the attempt under way, in the order of its sources.
    live: Vec<usize>,
}

/// Downloads `f` to `dest.out` (its data in `dest.part` meanwhile), holding
/// `permit` while it transfers. Read natively from Xet, it copies what it
/// shares with `dest.previous` instead of fetching it.
pub async fn download_file(
    ctx: Arc<FileCtx>,
    f: RepoFile,
    dest: Dest,
    permit: OwnedSemaphorePermit,
) -> FileResult {
    let Dest {
        out,
        part,
        previous,
    } = dest;
    if let Some(origin) = &ctx.opts.verify_origin
        && f.checksum().is_none()
    {
        // The endpoint's own word for the hash is what the user does not trust.
        let origin = origin.as_str().to_string();
        return FileResult::Failed(f.path.clone(), FileError::OriginNoHash { origin });
    }
    let mut urls = Vec::with_capacity(ctx.endpoints.len());
    for ep in &ctx.endpoints {
        match ep.resolve_url(ctx.opts.repo_type, &ctx.opts.repo, &ctx.url_rev, &f.path) {
            Ok(u) => urls.push(u),
            Err(e) => return FileResult::Failed(f.path.clone(), FileError::Other(e)),
        }
    }
    let mut spec = spec_for(&ctx, &f, &urls, &out, part);
    spec.xet = super::xet::choose(&ctx, &f, &urls[0]).await;
    if let Some(x) = spec.xet.as_mut() {
        x.previous = previous.map(Arc::new);
    }
    let mut job = FileJob {
        left_out: vec![false; urls.len()],
        ctx,
        f,
        out,
        spec,
        urls,
        first_only: false,
        attempt: 0,
        live: Vec::new(),
    };
    let mut permit = Some(permit);
    loop {
        job.attempt += 1;
        job.choose_endpoints();
        let progress = Progress::child(&job.ctx.parent);
        let result = transfer(&job.ctx, &job.spec, &progress, &mut permit).await;
        // Verification below uses no connection either.
        permit = None;
        let next = match result {
            Ok(o) => job.arrived(o, &progress).await,
            Err(e) => job.failed(e, &progress),
        };
        if let Next::End(r) = next {
            return r;
        }
    }
}

/// The engine's spec for `f`: every byte checked against the listing.
fn spec_for(
    ctx: &FileCtx,
    f: &RepoFile,
    urls: &[Url],
    out: &PathBuf,
    part: PathBuf,
) -> DownloadSpec {
    let mut spec = DownloadSpec::new(urls[0].clone(), out);
    spec.headers = ctx.creds.clone();
    spec.part_path = Some(part);
    // No link below the folder the user named is followed: a repo's folder
    // that is a link out of it is refused, not written through.
    spec.root = Some(ctx.root.clone());
    spec.per_source = ctx.opts.connections;
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
        spec.source_check = Some(identity::check_for(f));
    }
    let opts = &ctx.opts;
    spec.limits
        .extend(opts.file_limit.map(|r| Arc::new(RateLimit::new(r))));
    spec.limits.extend(opts.overall_limit.clone());
    spec
}

/// Runs the engine on one file, giving `permit` back as soon as every byte
/// has arrived (the checksum, fsync and rename that follow use no
/// connection).
async fn transfer(
    ctx: &FileCtx,
    spec: &DownloadSpec,
    progress: &Arc<Progress>,
    permit: &mut Option<OwnedSemaphorePermit>,
) -> Result<Outcome, Error> {
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

impl FileJob {
    /// The endpoints this attempt uses.
    fn choose_endpoints(&mut self) {
        let n = self.urls.len();
        let (ctx, left_out) = (&self.ctx, &self.left_out);
        let mut live: Vec<usize> = (0..n)
            .filter(|&i| !left_out[i] && !ctx.down[i].load(Relaxed))
            .collect();
        if live.is_empty() {
            // Every endpoint failed some earlier file: try them anyway.
            live = (0..n).filter(|&i| !left_out[i]).collect();
        }
        if self.first_only {
            live.truncate(1);
        }
        self.spec.urls = live.iter().map(|&i| self.urls[i].clone()).collect();
        self.spec.connections = self.ctx.opts.connections * self.spec.urls.len();
        self.live = live;
    }

    fn end(&self, e: FileError) -> Next {
        Next::End(FileResult::Failed(self.f.path.clone(), e))
    }

    /// Every byte arrived: check what the listing could not, and record it.
    async fn arrived(&mut self, o: Outcome, progress: &Progress) -> Next {
        if self.live.len() > 1 {
            for (k, gave_up) in o.sources_gave_up.iter().enumerate() {
                if *gave_up && let Some(&i) = self.live.get(k) {
                    self.ctx
                        .endpoint_down(i, "its connections used up their retries");
                }
            }
        }
        let sum = match &self.spec.checksum {
            Some(c) => Some(c.clone()),
            None => match self.hub_hash(&o, progress).await {
                Ok(sum) => sum,
                Err(next) => return next,
            },
        };
        if sum.is_none() && o.total != Some(self.f.size) {
            return self.end(FileError::Size {
                sent: o.total.unwrap_or(0),
                listed: self.f.size,
            });
        }
        let fp = match std::fs::metadata(&self.out) {
            Ok(m) => state::fingerprint(&m),
            Err(e) => return self.end(FileError::Other(format!("{}: {e}", self.out.display()))),
        };
        let record = Record {
            size: o.total.unwrap_or(self.f.size),
            hash: sum.as_ref().map_or_else(|| "size-only".into(), hash_key),
            commit: self.ctx.commit.clone(),
            fingerprint: fp,
        };
        let xet = self.xet_record(&o, sum.as_ref());
        Next::End(FileResult::Done(self.f.path.clone(), record, xet))
    }

    /// What to keep of a file read natively from Xet for its next update.
    fn xet_record(&self, o: &Outcome, sum: Option<&Checksum>) -> Option<Box<XetRecord>> {
        let (x, src, sum) = (o.xet.as_ref()?, self.spec.xet.as_ref()?, sum?);
        if x.copied > 0 {
            tracing::info!(
                "{}: {} bytes copied from the older version on disk",
                self.f.path,
                x.copied
            );
        }
        Some(Box::new(XetRecord::new(
            &self.f.path,
            hash_key(sum),
            o.total.unwrap_or(self.f.size),
            src.file_id.hex(),
            x.layout.clone(),
        )))
    }

    /// Stops copying from the older version for the next attempts; true
    /// when this attempt did.
    fn forget_previous(&mut self) -> bool {
        self.spec
            .xet
            .as_mut()
            .is_some_and(|x| x.previous.take().is_some())
    }

    /// A listing without a hash: the one the Hub states in its resolve
    /// answer, checked now; `None` when there is none either.
    async fn hub_hash(
        &mut self,
        o: &Outcome,
        progress: &Progress,
    ) -> Result<Option<Checksum>, Next> {
        let Some(c) = linked_checksum(&o.hops, self.f.lfs) else {
            self.ctx.warn(&format!(
                "{}: the Hub gave no hash for this file; only its size was checked",
                self.f.path
            ));
            return Ok(None);
        };
        let (p, c2) = (self.out.clone(), c.clone());
        let got = tokio::task::spawn_blocking(move || engine::verify::digest_file(&p, &c2))
            .await
            .ok()
            .and_then(|r| r.ok());
        if got.as_deref() == Some(c.hex()) {
            return Ok(Some(c));
        }
        let _ = std::fs::remove_file(&self.out);
        progress.discard(progress.done());
        self.forget_previous();
        if self.attempt < ATTEMPTS_PER_FILE {
            self.first_only = self.live.len() > 1;
            return Err(Next::Again);
        }
        Err(self.end(FileError::HubHash {
            algo: c.algorithm(),
        }))
    }

    /// The engine failed this attempt.
    fn failed(&mut self, e: Error, progress: &Progress) -> Next {
        let ctx = self.ctx.clone();
        if matches!(e, Error::Interrupted) || ctx.cancel.is_cancelled() {
            return Next::End(FileResult::Interrupted);
        }
        if self.live.len() > 1
            && self.spec.xet.is_some()
            && e.source_index().is_some()
            && !matches!(e, Error::ChecksumMismatch { .. })
        {
            // Xet storage failed this file, not an endpoint: every endpoint
            // serves it over the plain path instead.
            self.spec.xet = None;
            progress.discard(progress.done());
            ctx.warn(&format!(
                "{}: Xet storage failed ({e}); fetching it from every endpoint over the plain path",
                self.f.path
            ));
            return Next::Again;
        }
        if self.live.len() > 1
            && let Some(k) = e.source_index()
        {
            // One endpoint failed this file: the others carry on with it,
            // keeping what was downloaded (it is checked at the end).
            let i = self.live[k];
            progress.discard(progress.done());
            self.left_out[i] = true;
            self.attempt -= 1;
            if matches!(e, Error::GaveUp { .. } | Error::Net { .. }) {
                ctx.endpoint_down(i, &e.to_string());
            } else {
                ctx.warn(&format!(
                    "{}: not using {} for this file: {e}",
                    self.f.path,
                    ctx.endpoints[i].as_str()
                ));
            }
            return Next::Again;
        }
        if matches!(e, Error::ChecksumMismatch { .. })
            && self.forget_previous()
            && self.attempt < ATTEMPTS_PER_FILE
        {
            // The older version on disk is not what its record says (it
            // was changed): the file is fetched whole.
            progress.discard(progress.done());
            ctx.warn(&format!(
                "{}: {e}; the older version on disk did not match its record, \
                 fetching the file whole",
                self.f.path
            ));
            return Next::Again;
        }
        // With --verify-origin, bytes that do not match the origin's hash
        // are the endpoint's answer, not an accident: not fetched again.
        let again = match e {
            Error::ChecksumMismatch { .. } => ctx.opts.verify_origin.is_none(),
            Error::RemoteChanged { .. } => true,
            _ => false,
        };
        if again && self.attempt < ATTEMPTS_PER_FILE {
            progress.discard(progress.done());
            self.first_only = matches!(e, Error::ChecksumMismatch { .. }) && self.live.len() > 1;
            let from = if self.first_only {
                format!(" from {} alone", ctx.endpoints[self.live[0]].as_str())
            } else {
                String::new()
            };
            ctx.warn(&format!("{}: {e}; downloading it again{from}", self.f.path));
            return Next::Again;
        }
        let endpoints: Vec<&Endpoint> = self.live.iter().map(|&i| &ctx.endpoints[i]).collect();
        self.end(file_error(&ctx.opts, &e, &endpoints))
    }
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
    let v = identity::hash_of(&raw)?;
    match v.len() {
        64 => Checksum::sha256(&v).ok(),
        40 if !lfs => Checksum::git_blob_sha1(&v).ok(),
        _ => None,
    }
}
