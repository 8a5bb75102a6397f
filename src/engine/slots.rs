//! The ranged download: storage set up, connection slots started, watched
//! and grown, and the result collected.
//!
//! Storage first: a plainly full disk fails before any more traffic, and the
//! space reservation (fallocate zero-fills pages on tmpfs: about 0.3 s per
//! GiB) runs while the connections are being opened. Then `N = min(-s,
//! -x × sources, pieces)` slots ([`super::worker`]) start; the first reads
//! on the probe's answer. However the download stops (Ctrl-C, a fatal
//! error, a writer that failed), every slot is preempted, so none waits for
//! a server that went silent.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::task::{JoinHandle, JoinSet};

use super::Outcome;
use super::adaptive::Growth;
use super::error::Error;
use super::finish;
use super::job::Ctx;
use super::probe::Ranged;
use super::resume::Plan;
use super::scheduler::{Scheduler, Tuning, initial_pieces, useful_connections};
use super::shared::{Job, JobParts, Validators};
use super::worker::{self, FirstResponse};
use crate::client::FailureKind;
use crate::extent::ExtentSet;
use crate::storage::control_file::{ControlFile, ControlState};
use crate::storage::writer::{Storage, WriteHandle, WriterOptions};
use crate::storage::{Allocation, StorageError, WriteMode, alloc, open_sink};

/// Runs the ranged download from `plan`, starting with the probe's answer.
pub async fn run(ctx: &Ctx<'_>, plan: Plan, probe: Ranged) -> Result<Outcome, Error> {
    let total = probe.validators.total;
    let done = plan.done.clone();
    let resumed = done.covered();
    ctx.progress.set_total(Some(total));
    ctx.progress.add_existing(resumed);
    if resumed > 0 {
        tracing::info!("resuming: {resumed} of {total} bytes already done");
    }
    let wanted = ctx
        .spec
        .connections
        .min(ctx.spec.per_source * ctx.sources.len())
        .max(1);
    let (writer, storage, reserving) = open_storage(ctx, plan, &probe.validators, wanted)?;
    let hops = probe.fetched.hops.clone();
    // A probe that started inside bytes now counted as done (a restart, an
    // adopted prefix) is thrown away; the slots fetch what is missing.
    let first = (!done.contains(probe.range.start)).then(|| FirstResponse {
        conn: probe.conn,
        response: probe.fetched.response,
        range: probe.range,
    });
    let mut slots = Slots::new(ctx, &done, probe.validators, writer, wanted);
    if let Some(reserve) = reserving {
        slots.fail_on_error(reserve);
    }
    let peak = slots.supervise(ctx, first).await;
    let mut end = slots.end();
    let received = ctx.progress.received();
    conclude(ctx, storage, end.fatal.take(), end.complete, total).await?;
    Ok(Outcome {
        path: ctx.spec.output.clone(),
        total: Some(total),
        received,
        resumed,
        elapsed: ctx.started.elapsed(),
        connections: peak,
        single_stream: false,
        already_complete: false,
        hops,
        source_bytes: end.source_bytes,
        sources_gave_up: end.sources_gave_up,
        xet: None,
    })
}

pub(super) type ReserveTask = JoinHandle<Result<Allocation, StorageError>>;

/// Opens the partial data, reserves its space, writes the first control
/// record and starts the writer. Returns the reservation still running.
pub(super) fn open_storage(
    ctx: &Ctx<'_>,
    plan: Plan,
    v: &Validators,
    wanted: usize,
) -> Result<(WriteHandle, Storage, Option<ReserveTask>), Error> {
    let (files, spec, total) = (&ctx.files, ctx.spec, v.total);
    let part = files.part_path();
    let io = |action| move |e| Error::Storage(StorageError::io(part, action, e));
    let file = files.open_part()?;
    if let Err(e) = alloc::check_space(&file, part, total) {
        if plan.done.is_empty() {
            drop(file);
            let _ = files.discard_part();
        }
        return Err(e.into());
    }
    let mut mode = spec.write_mode;
    let mut reserving = None;
    if mode == WriteMode::Mmap {
        // A mapping needs its space before the first store (never SIGBUS).
        if alloc::allocate(&file, part, total, spec.allocation)? != Allocation::Falloc {
            tracing::warn!(
                "mmap writes need the space reserved (--file-allocation=falloc); using pwrite"
            );
            mode = WriteMode::Pwrite;
        }
    } else {
        let f = file.try_clone().map_err(io("open"))?;
        let (path, how) = (part.to_path_buf(), spec.allocation);
        reserving = Some(tokio::task::spawn_blocking(move || {
            alloc::allocate(&f, &path, total, how)
        }));
    }
    let state = ControlState {
        total,
        etag: v.etag.clone(),
        last_modified: v.last_modified.clone(),
        url_hash: plan.url_id,
        done: plan.done,
    };
    let control = first_record(ctx, plan.control, &state)?;
    files.sync_part_dir()?;
    let sync_file = file.try_clone().map_err(io("open"))?;
    let sink = open_sink(mode, file, Some(total)).map_err(io("map"))?;
    let (writer, storage) = Storage::start(
        sink,
        sync_file,
        part.to_path_buf(),
        Some(control),
        state,
        WriterOptions {
            checkpoint_interval: spec.checkpoint_interval,
            queue_bytes: queue_bytes(wanted),
            written: ctx.written.clone(),
            ..WriterOptions::default()
        },
    );
    Ok((writer, storage, reserving))
}

/// `state` as the newest record of the control file found, or of a new one.
fn first_record(
    ctx: &Ctx<'_>,
    found: Option<ControlFile>,
    state: &ControlState,
) -> Result<ControlFile, Error> {
    match found {
        Some(mut c) => {
            c.save(state).map_err(StorageError::from)?;
            Ok(c)
        }
        None => Ok(ctx.files.create_control(state)?),
    }
}

/// The slots of one download and the tasks that watch them.
struct Slots {
    job: Arc<Job>,
    tasks: JoinSet<()>,
    /// Slots started so far (the next one's number).
    spawned: usize,
    /// Connections the adaptive count starts with (or all wanted).
    planned: usize,
    /// Connections at the start (fewer than planned for a small file).
    start: usize,
    /// The most at once.
    peak: usize,
    wanted: usize,
}

/// What the slots left when they all ended.
struct End {
    fatal: Option<Error>,
    complete: bool,
    source_bytes: Vec<u64>,
    sources_gave_up: Vec<bool>,
}

impl Slots {
    fn new(
        ctx: &Ctx<'_>,
        done: &ExtentSet,
        validators: Validators,
        writer: WriteHandle,
        wanted: usize,
    ) -> Slots {
        let spec = ctx.spec;
        let total = validators.total;
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
        if spec.source_check.is_some() {
            let _ = ctx.sources[0]
                .own_validators
                .set((validators.etag.clone(), validators.last_modified.clone()));
        }
        let job = Arc::new(Job::new(JobParts {
            net: ctx.net.clone(),
            sources: ctx.sources.clone(),
            sched,
            writer,
            progress: ctx.progress.clone(),
            retry: spec.retry.clone(),
            validators,
            source_check: spec.source_check.clone(),
            cancel: ctx.cancel.child_token(),
            batch: batch_bytes(wanted),
            part: ctx.files.part_path().to_path_buf(),
            limits: spec.limits.clone(),
        }));
        Slots {
            job,
            tasks: JoinSet::new(),
            spawned: 0,
            planned: start,
            start: conns,
            peak: conns,
            wanted,
        }
    }

    /// Stops the download when the space reservation fails.
    fn fail_on_error(&self, reserve: ReserveTask) {
        let job = self.job.clone();
        tokio::spawn(async move {
            if let Ok(Err(e)) = reserve.await {
                job.fail(Error::Storage(e));
            }
        });
    }

    /// Starts one more slot; the first one takes `first`.
    fn spawn(&mut self, first: Option<FirstResponse>, per_source: usize) {
        let job = &self.job;
        let slot = job
            .sched
            .add_slot(pick_source(job, self.spawned, per_source));
        if let Some(f) = &first {
            job.sched.take_for_probe(&slot, f.range.clone());
        }
        self.spawned += 1;
        self.tasks.spawn(worker::run(job.clone(), slot, first));
    }

    /// Starts the slots and runs until every one has ended; returns the
    /// most connections used at once.
    async fn supervise(&mut self, ctx: &Ctx<'_>, first: Option<FirstResponse>) -> usize {
        let per_source = ctx.spec.per_source;
        let mut first = first;
        for _ in 0..self.start {
            self.spawn(first.take(), per_source);
        }
        let monitor = self.monitor(ctx.spec.timeout);
        // Growth only makes sense when the file is split in as many pieces
        // as we started with: a file too small for more stays as it is.
        let mut growth = ctx
            .spec
            .adaptive
            .as_ref()
            .filter(|_| self.start == self.planned && self.start < self.wanted)
            .map(|a| Growth::new(a, self.start, self.wanted));
        let mut grow_tick = tokio::time::interval(Duration::from_millis(250));
        let mut preempted = false;
        let cancel = self.job.cancel.clone();
        loop {
            tokio::select! {
                joined = self.tasks.join_next() => if joined.is_none() { break },
                _ = cancel.cancelled(), if !preempted => {
                    preempted = true;
                    self.job.sched.cancel_all();
                }
                _ = grow_tick.tick(), if growth.as_ref().is_some_and(|g| !g.stopped()) => {
                    let g = growth.as_mut().expect("checked");
                    self.grow(g, per_source);
                }
            }
        }
        monitor.abort();
        self.peak
    }

    /// Every 250 ms: stalled and far-too-slow connections are asked to
    /// reconnect (see [`Scheduler::health_check`]).
    fn monitor(&self, timeout: Duration) -> JoinHandle<()> {
        let job = self.job.clone();
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
    }

    /// One growth tick: more slots while they pay, fewer when they did not.
    fn grow(&mut self, g: &mut Growth, per_source: usize) {
        let job = self.job.clone();
        let live = job.live_slots.load(Relaxed);
        let allowed = job
            .sources
            .iter()
            .filter(|s| !s.is_dead())
            .map(|s| s.conn_limit().min(per_source))
            .sum::<usize>()
            .min(self.wanted);
        // Not worth growing for the last few seconds' bytes, nor near the
        // bandwidth cap: within a quarter of it, no step could gain what
        // the growth rule asks of a step (half of its share).
        let (now, received) = (Instant::now(), job.progress.received());
        let cap = job.limits.iter().map(|l| l.rate()).reduce(f64::min);
        if g.window_rate(now, received).is_some_and(|rate| {
            (job.sched.remaining() as f64) < rate * 4.0 || cap.is_some_and(|c| rate >= c * 0.75)
        }) {
            g.stop();
            return;
        }
        match g.tick(now, received, live, allowed) {
            Some(n) if n > live => {
                tracing::info!("adaptive: {live} -> {n} connections");
                for _ in live..n {
                    self.spawn(None, per_source);
                }
                self.peak = self.peak.max(n);
            }
            Some(n) => {
                tracing::info!("adaptive: back to {n} connections");
                job.slot_cap.store(n, Relaxed);
            }
            None => {}
        }
    }

    /// What the slots left.
    fn end(self) -> End {
        let job = self.job;
        End {
            fatal: job.take_fatal(),
            complete: job.sched.is_done(),
            source_bytes: job.sources.iter().map(|s| s.bytes.load(Relaxed)).collect(),
            sources_gave_up: job
                .sources
                .iter()
                .map(|s| s.gave_up.load(Relaxed))
                .collect(),
        }
    }
}

/// Saves what was written and says why the download stopped, or, when
/// every byte is in, makes it durable, checks it and gives it its name.
pub(super) async fn conclude(
    ctx: &Ctx<'_>,
    storage: Storage,
    fatal: Option<Error>,
    complete: bool,
    total: u64,
) -> Result<(), Error> {
    let cancelled = ctx.cancel.is_cancelled();
    if !complete || fatal.is_some() || cancelled {
        tokio::task::spawn_blocking(move || storage.abort())
            .await
            .expect("the storage thread does not panic")?;
        return Err(match fatal {
            Some(e) => e,
            None if cancelled => Error::Interrupted,
            None => Error::GaveUp {
                url: ctx.sources[0].ident(),
                attempts: 0,
                status: None,
                last: "every connection gave up".into(),
                kind: FailureKind::Network,
            },
        });
    }
    let written = tokio::task::spawn_blocking(move || storage.finish())
        .await
        .expect("the storage thread does not panic")?;
    if !written.contains_range(0..total) {
        return Err(Error::Storage(StorageError::io(
            ctx.files.part_path(),
            "complete",
            std::io::Error::other(format!(
                "internal error: {} of {total} bytes written",
                written.covered()
            )),
        )));
    }
    finish::finalize(ctx, total).await
}

/// Slot `i`'s source: round robin over the sources, at most `per_source` each.
fn pick_source(job: &Job, i: usize, per_source: usize) -> usize {
    let n = job.sources.len();
    let s = i % n;
    if i / n < per_source { s } else { 0 }
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
