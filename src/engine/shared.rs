//! What the connection slots of one download share: the sources, the
//! scheduler, the writer, the validators, and how the download stops.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use tokio_util::sync::CancellationToken;

use super::SourceCheck;
use super::error::Error;
use super::limit::RateLimit;
use super::progress::Progress;
use super::scheduler::{Scheduler, Slot};
use crate::client::{FailureKind, RetryPolicy, Source};
use crate::net::Net;
use crate::storage::StorageError;
use crate::storage::writer::WriteHandle;
use crate::sync::lock;

/// Length and validators of the remote file, fixed at the start.
#[derive(Clone, Debug)]
pub struct Validators {
    pub total: u64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    /// What a request sends as `If-Range`: the strong ETag, else the date.
    pub fn if_range(&self) -> Option<String> {
        self.etag.clone().or_else(|| self.last_modified.clone())
    }
}

/// The last reason a source's connection failed, for the final message.
#[derive(Clone, Debug)]
struct LastFailure {
    kind: FailureKind,
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
    /// The caller's identity test; with it, each source has its own validators.
    pub source_check: Option<SourceCheck>,
    pub cancel: CancellationToken,
    pub live_slots: AtomicUsize,
    /// The adaptive connection count: slots above it leave.
    pub slot_cap: AtomicUsize,
    /// Bytes a slot gathers before handing them to the writer.
    pub batch: usize,
    /// The partial data file, for the writer's errors.
    pub part: PathBuf,
    /// Bandwidth caps every slot obeys.
    pub limits: Vec<Arc<RateLimit>>,
    fatal: Mutex<Option<Error>>,
    last_failure: Mutex<Vec<Option<LastFailure>>>,
}

/// Everything a [`Job`] is made of.
pub struct JobParts {
    pub net: Net,
    pub sources: Vec<Arc<Source>>,
    pub sched: Arc<Scheduler>,
    pub writer: WriteHandle,
    pub progress: Arc<Progress>,
    pub retry: RetryPolicy,
    pub validators: Validators,
    pub source_check: Option<SourceCheck>,
    pub cancel: CancellationToken,
    pub batch: usize,
    pub part: PathBuf,
    pub limits: Vec<Arc<RateLimit>>,
}

impl Job {
    pub fn new(p: JobParts) -> Job {
        let n = p.sources.len();
        Job {
            net: p.net,
            sources: p.sources,
            sched: p.sched,
            writer: p.writer,
            progress: p.progress,
            retry: p.retry,
            validators: p.validators,
            source_check: p.source_check,
            cancel: p.cancel,
            live_slots: AtomicUsize::new(0),
            slot_cap: AtomicUsize::new(usize::MAX),
            batch: p.batch,
            part: p.part,
            limits: p.limits,
            fatal: Mutex::new(None),
            last_failure: Mutex::new(vec![None; n]),
        }
    }

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

    /// The error that stopped the download, if one did.
    pub fn take_fatal(&self) -> Option<Error> {
        lock(&self.fatal).take()
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
                tracing::warn!("dropping source {}: {e}", src.named());
            }
        }
    }

    pub fn record_failure(
        &self,
        source: usize,
        kind: FailureKind,
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
            .filter_map(|(i, f)| f.as_ref().map(|f| (i, f.clone())))
            .next_back()
            .unwrap_or((
                0,
                LastFailure {
                    kind: FailureKind::Network,
                    detail: "no connection could make progress".into(),
                    status: None,
                    attempts: 0,
                },
            ));
        Error::GaveUp {
            url: self.sources[i].ident(),
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
            return self.validators.if_range();
        }
        let (etag, lm) = source.own_validators.get()?;
        etag.clone().or_else(|| lm.clone())
    }

    /// The writer stopped (its own error is reported when the download
    /// ends): stop the download.
    pub fn writer_stopped(&self) -> Error {
        self.cancel.cancel();
        Error::Storage(StorageError::io(
            &self.part,
            "write",
            std::io::Error::other("the writer stopped"),
        ))
    }
}
