//! The Xet stage: a file fetched natively from Xet storage instead of
//! through `urls` (the caller, hfd's hub run, chose it: the Hub named the
//! file's Xet id and granted a CAS token).
//!
//! It takes the place of the probe and the slots, and shares everything
//! else with a plain download: [`super::resume`] (what is on disk, whether
//! the file changed: the Xet file id is its ETag), the storage (writer,
//! checkpoints, control file) and [`super::finish`] (checksum, final name).
//!
//! 0. The whole file's reconstruction is asked once: its size, and its
//!    terms. With an older version of the file on disk (`src.previous`),
//!    the terms it shares are copied from it ([`crate::xet::reuse`])
//!    through the writer, like downloaded bytes; the layout learnt (terms
//!    and chunk lengths) goes back to the caller in [`XetOutcome`] for the
//!    next update.
//! 1. The missing bytes (all of them, or the gaps a previous run or the
//!    copy left) are asked of the CAS as byte ranges (large gaps in about
//!    one piece per connection, the pieces shared in turn among the CAS of
//!    `src.mirrors` too); each answer becomes units: one
//!    presigned xorb range each, knowing where its chunks go
//!    ([`crate::xet::recon`]). A resume thus fetches only the chunks of
//!    what is missing.
//! 2. Up to `connections` workers take units from one queue and fetch them
//!    ([`super::xet_fetch`]); decoded chunks are written in place (a chunk
//!    that several terms share, several times).
//! 3. A failed unit goes back to the queue; one whose presigned URL was
//!    refused (expired) is planned again from the CAS. Retries go through
//!    the one driver ([`crate::client::retry`]).

use std::collections::VecDeque;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::error::Error;
use super::job::Ctx;
use super::resume::{self, Start};
use super::shared::Validators;
use super::xet_fetch::{self, Fetched};
use super::{Outcome, XetOutcome, finish, slots};
use crate::client::{Backoff, FailureKind, Stop};
use crate::extent::ExtentSet;
use crate::storage::writer::WriteHandle;
use crate::sync::lock;
use crate::xet::XetSource;
use crate::xet::cas::{Cas, CasError};
use crate::xet::recon::{Plan, ReconstructionV1, Term, Unit};
use crate::xet::reuse::{self, ChunkLens, Previous};

/// A unit and the file bytes it is to write.
pub struct Job {
    pub unit: Unit,
    pub want: Range<u64>,
    /// The CAS (index in [`Work::cas`]) whose answer the unit came from.
    pub cas: usize,
}

/// What the workers share.
pub struct Work {
    pub ctx_net: crate::net::Net,
    /// The listing endpoint's CAS, then the other endpoints' that grant
    /// a token.
    pub cas: Vec<Cas>,
    pub src: XetSource,
    pub queue: Mutex<VecDeque<Job>>,
    pub writer: WriteHandle,
    pub progress: Arc<super::Progress>,
    pub retry: crate::client::RetryPolicy,
    pub timeout: std::time::Duration,
    /// The bandwidth caps the xorb ranges are read under.
    pub limits: Vec<Arc<super::limit::RateLimit>>,
    pub cancel: CancellationToken,
    pub fatal: Mutex<Option<Error>>,
    pub ident: crate::client::SourceId,
    /// Chunk lengths learnt (from the older version's layout and from
    /// every chunk decoded): the new file's layout.
    pub lens: Mutex<ChunkLens>,
}

impl Work {
    fn fail(&self, e: Error) {
        lock(&self.fatal).get_or_insert(e);
        self.cancel.cancel();
    }
}

/// Runs the Xet stage from `start`.
pub async fn run(ctx: &Ctx<'_>, start: Start, src: &XetSource) -> Result<Outcome, Error> {
    let ident = ctx.sources[0].ident();
    let cancel = ctx.cancel.child_token();
    let cas = cas_clients(ctx, src, &cancel);
    let (full, total) = whole_file(ctx, &cas[0], src, &ident).await?;
    if total == 0 {
        drop(start);
        ctx.progress.set_total(Some(0));
        finish::empty_file(ctx).await?;
        return Ok(outcome(ctx, 0, 0, 0));
    }
    let v = Validators {
        total,
        etag: Some(format!("xet:{}", src.file_id.hex())),
        last_modified: None,
    };
    let plan = resume::reconcile(ctx, start, &v)?;
    let mut done = plan.done.clone();
    let resumed = done.covered();
    ctx.progress.set_total(Some(total));
    ctx.progress.add_existing(resumed);
    let (writer, storage, reserving) = slots::open_storage(ctx, plan, &v, ctx.spec.connections)?;
    let terms = full.terms.clone();
    let mut lens = ChunkLens::default();
    let mut copied = 0;
    if let Some(prev) = &src.previous {
        lens.learn(&prev.layout);
        copied = copy_shared(ctx, &writer, prev, &terms, &mut done).await;
    }
    let jobs = match plan_jobs(&cas, src, &done, total, Some(full), ctx.spec.connections).await {
        Ok(j) => j,
        Err(e) => {
            let e = cas_error(e, &ident);
            drop(writer);
            slots::conclude(ctx, storage, Some(e), false, total).await?;
            unreachable!("conclude returns the error it is given");
        }
    };
    let conns = ctx.spec.connections.clamp(1, jobs.len().max(1));
    tracing::info!(
        "xet: {} ranges of xorbs for {} bytes over {conns} connections ({copied} bytes copied \
         from the older version)",
        jobs.len(),
        total - resumed - copied
    );
    let work = Arc::new(Work {
        ctx_net: ctx.net.clone(),
        cas,
        src: src.clone(),
        queue: Mutex::new(jobs.into()),
        writer,
        progress: ctx.progress.clone(),
        retry: ctx.spec.retry.clone(),
        timeout: ctx.spec.timeout,
        limits: ctx.spec.limits.clone(),
        cancel: cancel.clone(),
        fatal: Mutex::new(None),
        ident,
        lens: Mutex::new(lens),
    });
    watch_reserving(&work, reserving);
    supervise(&work, conns, &ctx.cancel).await;
    let fatal = lock(&work.fatal).take();
    let complete = fatal.is_none() && !ctx.cancel.is_cancelled() && lock(&work.queue).is_empty();
    if complete {
        ctx.progress.all_received();
    }
    let received = ctx.progress.received();
    let layout = lock(&work.lens).layout(&terms);
    drop(work);
    slots::conclude(ctx, storage, fatal, complete, total).await?;
    let mut out = outcome(ctx, total, received, resumed);
    out.connections = conns;
    out.xet = Some(XetOutcome { layout, copied });
    Ok(out)
}

/// A CAS client for the listing endpoint's token, then one per mirror that
/// granted one.
fn cas_clients(ctx: &Ctx<'_>, src: &XetSource, cancel: &CancellationToken) -> Vec<Cas> {
    std::iter::once(&src.auth)
        .chain(&src.mirrors)
        .map(|auth| {
            let (retry, cancel) = (ctx.spec.retry.clone(), cancel.clone());
            Cas::new(ctx.net.clone(), auth.clone(), retry, cancel)
        })
        .collect()
}

/// The whole file's reconstruction (its size, what an older version on
/// disk shares with it, and its layout for the next update) and the
/// file's size, which must agree with the listing's.
async fn whole_file(
    ctx: &Ctx<'_>,
    cas: &Cas,
    src: &XetSource,
    ident: &crate::client::SourceId,
) -> Result<(ReconstructionV1, u64), Error> {
    let full = match ctx.spec.expected_size {
        Some(0) => ReconstructionV1 {
            offset_into_first_range: 0,
            terms: Vec::new(),
            fetch_info: Default::default(),
        },
        _ => cas
            .reconstruction(&src.file_id, None)
            .await
            .map_err(|e| cas_error(e, ident))?,
    };
    let listed = full.terms.iter().map(|t| t.unpacked_length).sum::<u64>();
    let total = ctx.spec.expected_size.unwrap_or(listed);
    if total != 0 && listed != total {
        return Err(Error::BadResponse {
            url: ident.clone(),
            detail: format!(
                "Xet storage: the file's reconstruction is {listed} bytes, not the {total} expected"
            ),
        });
    }
    Ok((full, total))
}

/// Space reservation that fails later (a full disk) stops the download.
fn watch_reserving(work: &Arc<Work>, reserving: Option<slots::ReserveTask>) {
    if let Some(r) = reserving {
        let w = work.clone();
        tokio::spawn(async move {
            if let Ok(Err(e)) = r.await {
                w.fail(Error::Storage(e));
            }
        });
    }
}

/// Reads of the older version are this large at most.
const COPY_BLOCK: u64 = 1 << 20;

/// Copies the bytes the older version `prev` shares with the new file
/// (`terms`) into those still missing from `done`, adding them to it;
/// returns the bytes copied. An older version that cannot be read is
/// simply not used: its bytes are fetched.
async fn copy_shared(
    ctx: &Ctx<'_>,
    writer: &WriteHandle,
    prev: &Previous,
    terms: &[Term],
    done: &mut ExtentSet,
) -> u64 {
    let copies = reuse::copies(&prev.layout, terms);
    if copies.is_empty() {
        return 0;
    }
    let file = match open_previous(prev) {
        Ok(f) => Arc::new(f),
        Err(e) => {
            tracing::info!("xet: the older version is not used: {e}");
            return 0;
        }
    };
    let mut copied = 0;
    for c in copies {
        for gap in done.gaps(c.to..c.to + c.len) {
            let mut at = gap.start;
            while at < gap.end {
                if ctx.cancel.is_cancelled() {
                    return copied;
                }
                let n = (gap.end - at).min(COPY_BLOCK);
                let (f, from) = (file.clone(), c.from + (at - c.to));
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0; n as usize];
                    f.read_exact_at(&mut buf, from).map(|()| buf)
                })
                .await
                .expect("reading does not panic");
                let buf = match read {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::info!("xet: reading the older version: {e}; fetching the rest");
                        return copied;
                    }
                };
                if let Err(e) = writer.write(at, vec![Bytes::from(buf)]).await {
                    tracing::info!("xet: {e}");
                    return copied;
                }
                done.insert(at..at + n);
                ctx.progress.add_existing(n);
                copied += n;
                at += n;
            }
        }
    }
    copied
}

/// The older version, opened without following a link, and of the length
/// its layout says.
fn open_previous(prev: &Previous) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&prev.path)?;
    let m = f.metadata()?;
    if !m.is_file() || m.len() != prev.len() {
        return Err(std::io::Error::other(format!(
            "{} is not the {} bytes recorded",
            prev.path.display(),
            prev.len()
        )));
    }
    Ok(f)
}

/// The units for every missing byte: one reconstruction per piece (or the
/// whole file's, already asked), the pieces shared among the CAS in turn;
/// a piece another endpoint's CAS cannot answer is asked of the first.
async fn plan_jobs(
    cas: &[Cas],
    src: &XetSource,
    done: &ExtentSet,
    total: u64,
    first: Option<crate::xet::recon::ReconstructionV1>,
    conns: usize,
) -> Result<Vec<Job>, CasError> {
    let mut jobs = Vec::new();
    let mut first = first;
    for (k, gap) in pieces(done.gaps(0..total), conns).into_iter().enumerate() {
        let mut c = k % cas.len();
        let r = match first.take() {
            Some(r) if gap == (0..total) => r,
            _ => match cas[c].reconstruction(&src.file_id, Some(gap.clone())).await {
                Ok(r) => r,
                Err(CasError::Interrupted) => return Err(CasError::Interrupted),
                Err(e) if c > 0 => {
                    tracing::info!("xet: another endpoint's CAS: {e}; asking the first");
                    c = 0;
                    cas[0]
                        .reconstruction(&src.file_id, Some(gap.clone()))
                        .await?
                }
                Err(e) => return Err(e),
            },
        };
        let plan = Plan::build(r, gap)?;
        let want = plan.want.clone();
        jobs.extend(plan.units.into_iter().map(|unit| Job {
            unit,
            want: want.clone(),
            cas: c,
        }));
    }
    Ok(jobs)
}

/// A large file is asked of the CAS in pieces of at least this much.
const MIN_PIECE: u64 = 32 << 20;

/// The ranges to ask the CAS for: the gaps, a large one cut into about one
/// piece per connection. A presigned xorb range is served whole (it cannot
/// be split or stolen), so without this a file of few large xorb ranges
/// would use few connections; a piece's answer holds only the chunks of
/// that piece (a chunk on a boundary is fetched by both neighbours).
fn pieces(gaps: Vec<Range<u64>>, conns: usize) -> Vec<Range<u64>> {
    let missing: u64 = gaps.iter().map(|g| g.end - g.start).sum();
    let size = (missing / conns.max(1) as u64).max(MIN_PIECE);
    let mut out = Vec::new();
    for g in gaps {
        let n = (g.end - g.start).div_ceil(size).max(1);
        let step = (g.end - g.start).div_ceil(n);
        let mut at = g.start;
        while at < g.end {
            let end = (at + step).min(g.end);
            out.push(at..end);
            at = end;
        }
    }
    out
}

/// Runs `conns` workers until the queue is empty or the download stops.
async fn supervise(work: &Arc<Work>, conns: usize, outer: &CancellationToken) {
    let mut tasks = JoinSet::new();
    for _ in 0..conns {
        tasks.spawn(worker(work.clone()));
    }
    loop {
        tokio::select! {
            joined = tasks.join_next() => if joined.is_none() { break },
            _ = outer.cancelled() => work.cancel.cancel(),
        }
    }
}

/// One connection: units from the queue until none is left.
async fn worker(work: Arc<Work>) {
    let mut backoff = Backoff::new(work.retry.clone(), work.cancel.clone());
    let mut conn = None;
    loop {
        if work.cancel.is_cancelled() {
            return;
        }
        let Some(job) = lock(&work.queue).pop_front() else {
            return;
        };
        let failure = match backoff
            .attempt(xet_fetch::fetch(&work, &job, &mut conn))
            .await
        {
            Err(_) => {
                lock(&work.queue).push_front(job);
                return;
            }
            Ok(Fetched::Done) => {
                backoff.progressed();
                continue;
            }
            Ok(Fetched::Failed(f)) => f,
        };
        conn = None;
        if failure.expired {
            // The presigned URL is refused: ask the CAS again for its bytes.
            match replan(&work, &job).await {
                Ok(more) => lock(&work.queue).extend(more),
                Err(CasError::Interrupted) => return,
                Err(e) => return work.fail(cas_error(e, &work.ident)),
            }
        } else {
            lock(&work.queue).push_front(job);
        }
        tracing::info!(
            "xet: {}; attempt {} failed",
            failure.detail,
            backoff.failures() + 1
        );
        match backoff.failed(failure.wait, failure.delivered).await {
            Ok(()) => {}
            Err(Stop::Cancelled) => return,
            Err(Stop::Exhausted { attempts }) => {
                return work.fail(Error::GaveUp {
                    url: work.ident.clone(),
                    attempts,
                    status: failure.status,
                    last: failure.detail,
                    kind: failure.kind,
                });
            }
        }
    }
}

/// Fresh units for the bytes `job` was to write.
async fn replan(work: &Work, job: &Job) -> Result<Vec<Job>, CasError> {
    let mut out = Vec::new();
    for r in job.unit.writes(&job.want) {
        let answer = work.cas[job.cas]
            .reconstruction(&work.src.file_id, Some(r.clone()))
            .await?;
        let plan = Plan::build(answer, r)?;
        let want = plan.want.clone();
        out.extend(plan.units.into_iter().map(|unit| Job {
            unit,
            want: want.clone(),
            cas: job.cas,
        }));
    }
    Ok(out)
}

/// A CAS failure as the download's error, about its first URL.
fn cas_error(e: CasError, url: &crate::client::SourceId) -> Error {
    let url = url.clone();
    match e {
        CasError::Interrupted => Error::Interrupted,
        CasError::Status { status: 404, .. } => Error::NotFound { url, status: 404 },
        CasError::Status {
            status, snippet, ..
        } if matches!(status, 401 | 403) => Error::Auth {
            url,
            status,
            hint: snippet,
        },
        CasError::GaveUp { attempts, last, .. } => Error::GaveUp {
            url,
            attempts,
            status: None,
            last: format!("Xet storage: {last}"),
            kind: FailureKind::Network,
        },
        other => Error::BadResponse {
            url,
            detail: format!("Xet storage: {other}"),
        },
    }
}

fn outcome(ctx: &Ctx<'_>, total: u64, received: u64, resumed: u64) -> Outcome {
    let mut out = ctx.already_complete(total);
    out.already_complete = false;
    out.received = received;
    out.resumed = resumed;
    if let Some(b) = out.source_bytes.first_mut() {
        *b = received;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_gaps_are_asked_in_pieces_small_ones_whole() {
        const M: u64 = 1 << 20;
        assert_eq!(
            pieces(vec![0..10 * M, 20 * M..21 * M], 8),
            vec![0..10 * M, 20 * M..21 * M]
        );
        let p = pieces(std::iter::once(0..512 * M).collect(), 8);
        assert_eq!(p.len(), 8);
        assert_eq!(p.first().unwrap().start, 0);
        assert_eq!(p.last().unwrap().end, 512 * M);
        assert!(p.windows(2).all(|w| w[0].end == w[1].start));
        let p = pieces(std::iter::once(0..100 * M + 1).collect(), 16);
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(pieces(vec![], 4).is_empty());
    }
}
