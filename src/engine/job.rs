//! One download from start to finish: the stages in order.
//!
//! 1. [`super::resume`]: look at what is on disk (final file, partial data,
//!    control file) before any network traffic, so a wrong invocation fails
//!    fast and a complete file costs no request.
//! 2. [`super::probe`]: a ranged GET from the first missing byte; its answer
//!    is data and becomes the first slot's first response.
//! 3. [`super::resume::reconcile`]: the probe's length and validators
//!    against the control file: a file that changed on the server is never
//!    spliced onto old bytes.
//! 4. [`super::slots`] (ranges work) or [`super::single`] (they do not).
//!    A Xet download (`spec.xet`) skips the probe: its stage plans from
//!    the CAS and fetches xorb ranges instead.
//! 5. [`super::finish`]: checksum, final name, folder fsync, control file
//!    removal.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::error::Error;
use super::prefix_hash::{self, PrefixHash};
use super::probe::{self, Probe};
use super::progress::Progress;
use super::resume::{self, Look, Start};
use super::{DownloadSpec, Outcome, finish, single, slots};
use crate::client::Source;
use crate::net::Net;
use crate::storage::files::DownloadFiles;
use crate::storage::watch::WrittenWatch;

/// One download's context, handed to every stage.
pub struct Ctx<'a> {
    pub net: &'a Net,
    pub spec: &'a DownloadSpec,
    pub files: DownloadFiles,
    pub sources: Vec<Arc<Source>>,
    pub progress: Arc<Progress>,
    pub cancel: CancellationToken,
    pub started: Instant,
    /// Told every write that returned: the spec's watch, or one of our own
    /// for [`Ctx::prefix`].
    pub written: Option<WrittenWatch>,
    /// The checksum, hashed while the bytes arrive; taken by the check.
    pub prefix: Mutex<Option<PrefixHash>>,
}

impl Ctx<'_> {
    /// The outcome of a run that fetched nothing: the file was complete.
    pub fn already_complete(&self, total: u64) -> Outcome {
        let n = self.spec.urls.len();
        Outcome {
            path: self.spec.output.clone(),
            total: Some(total),
            received: 0,
            resumed: 0,
            elapsed: self.started.elapsed(),
            connections: 0,
            single_stream: false,
            already_complete: true,
            hops: Vec::new(),
            source_bytes: vec![0; n],
            sources_gave_up: vec![false; n],
            xet: None,
        }
    }
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
    let files = DownloadFiles::open(&spec.layout())?;
    if files.output().is_some_and(|e| e.is_dir) {
        return Err(Error::Create {
            path: spec.output.clone(),
            source: std::io::Error::other("a folder of that name exists"),
        });
    }
    let sources = spec
        .urls
        .iter()
        .enumerate()
        .map(|(i, u)| Source::new(i, u.clone(), &spec.headers, spec.per_source).map(Arc::new))
        .collect::<Result<_, _>>()
        .map_err(|error| Error::Net { error, url: None })?;
    let (written, prefix) = prefix_hash::for_download(spec, files.part_path());
    let ctx = Ctx {
        net,
        spec,
        files,
        sources,
        progress,
        cancel,
        started,
        written,
        prefix: Mutex::new(prefix),
    };
    let start = match resume::look(&ctx).await? {
        Look::Complete(outcome) => return Ok(outcome),
        Look::Start(start) => start,
    };
    if let Some(src) = &spec.xet {
        return super::xet::run(&ctx, start, src).await;
    }
    let probed = probe::run(&ctx, &start).await?;
    after_probe(&ctx, start, probed).await
}

/// Stage 4: what the probe found decides how the rest is fetched.
async fn after_probe(ctx: &Ctx<'_>, start: Start, probed: Probe) -> Result<Outcome, Error> {
    match probed {
        Probe::AtEnd { total } if start.adopted == Some(total) => {
            // `-c` on a file that is already whole.
            ctx.progress.set_total(Some(total));
            ctx.progress.add_existing(total);
            if let Some(sum) = &ctx.spec.checksum {
                finish::verify_in_place(ctx.files.output_path(), sum).await?;
            }
            Ok(ctx.already_complete(total))
        }
        Probe::AtEnd { total } => Err(Error::RemoteChanged {
            url: ctx.sources[0].ident(),
            detail: format!(
                "the file is now {total} bytes long, shorter than what was already downloaded"
            ),
        }),
        Probe::Empty { hops } => {
            drop(start);
            ctx.progress.set_total(Some(0));
            finish::empty_file(ctx).await?;
            let mut out = ctx.already_complete(0);
            out.hops = hops;
            out.already_complete = false;
            Ok(out)
        }
        Probe::Single { first, length } => {
            if !start.done.is_empty() || start.adopted.is_some() {
                tracing::warn!("the server does not support ranges; downloading from the start");
            }
            if start.control.is_some() {
                drop(start);
                ctx.files.discard_control()?;
            }
            single::run(ctx, first, length).await
        }
        Probe::Ranged(r) => {
            let plan = resume::reconcile(ctx, start, &r.validators)?;
            slots::run(ctx, plan, r).await
        }
    }
}
