//! The writer thread, which owns the sink, and the checkpointer thread, which
//! makes progress durable.
//!
//! Downloads run on tokio, but file writes block. Rather than a
//! `spawn_blocking` hop per write (which measurably halves throughput), one
//! long-lived thread owns the [`Sink`] and takes writes from a channel. A
//! byte budget in front of the channel is the backpressure that keeps memory
//! bounded when the disk is slower than the network.
//!
//! # The durability invariant
//!
//! A range appears in a saved control record only if its write returned
//! before the `fdatasync` of the data file that preceded that save started.
//! The checkpointer gets there in this order:
//!
//! 1. it queues a barrier behind every write already queued; the writer
//!    thread reaches it only after those writes returned, calls
//!    [`Sink::flush`], and answers with a snapshot of the written set (every
//!    range in it belongs to a write that has returned);
//! 2. it calls `fdatasync` on the data file, which therefore starts after
//!    every write in the snapshot returned and so covers all of them;
//! 3. only if that succeeded does it save the snapshot in the control file
//!    (which `fdatasync`s the control file itself).
//!
//! Early writeback (`sync_file_range`) is also issued from the checkpointer
//! thread, on a hint from the writer, so the writer never blocks on it.
//!
//! If a sync or save fails, nothing is saved any more: after a failed
//! `fdatasync` Linux may mark the lost pages clean, so a later successful
//! one proves nothing about them.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::{io, thread};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::alloc::start_writeback;
use super::control_file::{ControlError, ControlFile, ControlState};
use super::watch::WrittenWatch;
use super::{Sink, StorageError};
use crate::extent::ExtentSet;
use crate::sync::lock;

/// Tuning of [`Storage`].
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Most bytes queued for the writer at once. 8 MiB absorbs a disk
    /// stall of several milliseconds at loopback speed (tens of ms at
    /// network speeds). Queued slices keep their network buffers alive, so
    /// the engine asks for less when many connections feed the queue
    /// (docs/performance.md, "Memory").
    pub queue_bytes: usize,
    /// How often progress is made durable. At 1 s a crash loses about a
    /// second of transfer, and a checkpoint costs a few tens of ms on a
    /// background thread (engine notes §3.5).
    pub checkpoint_interval: Duration,
    /// Start kernel writeback after this many bytes written, so checkpoints
    /// find little dirty data left; 0 turns it off.
    pub writeback_bytes: u64,
    /// Told every write that returned, and the start (see [`super::watch`]).
    pub written: Option<WrittenWatch>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            queue_bytes: 8 << 20,
            checkpoint_interval: Duration::from_secs(1),
            writeback_bytes: 32 << 20,
            written: None,
        }
    }
}

/// The error [`WriteHandle::write`] returns once writing is over, carrying
/// the message of the error that ended it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the writer stopped: {0}")]
pub struct WriteFailed(pub String);

enum Op {
    Write {
        offset: u64,
        bufs: Vec<Bytes>,
        /// Held until the write returns, so queued-but-unwritten bytes count
        /// against the budget.
        _permit: OwnedSemaphorePermit,
    },
    /// `len` bytes at the head of `pipe` go to `offset`; the `discard` bytes
    /// after them are thrown away.
    #[cfg(target_os = "linux")]
    Piped {
        offset: u64,
        len: u64,
        discard: u64,
        pipe: super::pipe::Queued,
        _permit: Option<OwnedSemaphorePermit>,
    },
    Barrier(mpsc::SyncSender<BarrierReply>),
    Stop,
}

struct BarrierReply {
    flushed: io::Result<()>,
    written: ExtentSet,
    writes_done: u64,
}

enum CkMsg {
    Checkpoint(mpsc::SyncSender<Result<(), StorageError>>),
    Writeback,
    Stop {
        sync: bool,
        reply: mpsc::SyncSender<Result<(), StorageError>>,
    },
}

/// State shared by the handles, the two threads and [`Storage`].
struct Shared {
    data_path: PathBuf,
    written: Mutex<ExtentSet>,
    durable: Mutex<ExtentSet>,
    /// The first error; later ones are consequences and are dropped.
    failure: Mutex<Option<StorageError>>,
    /// Any failure: writes are refused.
    failed: AtomicBool,
    /// A sync or save failed: no record may be saved any more.
    sync_failed: AtomicBool,
    budget: Arc<Semaphore>,
    budget_permits: u32,
}

impl Shared {
    fn fail(&self, e: StorageError, sync: bool) {
        let mut slot = lock(&self.failure);
        if slot.is_none() {
            *slot = Some(e);
        }
        drop(slot);
        if sync {
            self.sync_failed.store(true, Ordering::SeqCst);
        }
        self.failed.store(true, Ordering::SeqCst);
        // Wakes writers waiting for budget; they then report the failure.
        self.budget.close();
    }

    fn failure_copy(&self) -> Option<StorageError> {
        lock(&self.failure).as_ref().map(duplicate)
    }

    fn write_failed(&self) -> WriteFailed {
        WriteFailed(match &*lock(&self.failure) {
            Some(e) => e.to_string(),
            None => "the download's storage was closed".to_string(),
        })
    }
}

/// A copy of `e` for a second caller; the original stays for `finish`.
fn duplicate(e: &StorageError) -> StorageError {
    fn io_copy(e: &io::Error) -> io::Error {
        match e.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(e.kind(), e.to_string()),
        }
    }
    match e {
        StorageError::DiskFull {
            path,
            needed,
            available,
        } => StorageError::DiskFull {
            path: path.clone(),
            needed: *needed,
            available: *available,
        },
        StorageError::Io {
            path,
            action,
            source,
        } => StorageError::Io {
            path: path.clone(),
            action,
            source: io_copy(source),
        },
        StorageError::Symlink { path } => StorageError::Symlink { path: path.clone() },
        StorageError::Control(c) => StorageError::Control(match c {
            ControlError::Damaged { path, reason } => ControlError::Damaged {
                path: path.clone(),
                reason: reason.clone(),
            },
            ControlError::FutureVersion {
                path,
                version,
                record,
            } => ControlError::FutureVersion {
                path: path.clone(),
                version: *version,
                record: *record,
            },
            ControlError::NotOurs { path } => ControlError::NotOurs { path: path.clone() },
            ControlError::Locked { path } => ControlError::Locked { path: path.clone() },
            ControlError::Io {
                path,
                action,
                source,
            } => ControlError::Io {
                path: path.clone(),
                action,
                source: io_copy(source),
            },
        }),
    }
}

/// Queues writes for the writer thread; cheap to clone, one per segment task.
#[derive(Clone)]
pub struct WriteHandle {
    tx: Arc<Mutex<Option<mpsc::Sender<Op>>>>,
    shared: Arc<Shared>,
}

impl WriteHandle {
    /// Queues contiguous `bufs` at `offset`; waits (async) while more than
    /// `queue_bytes` are queued — this is the backpressure that keeps memory
    /// bounded. Err once a write has failed or the storage was finished.
    ///
    /// Returning Ok means queued, not written: [`Storage::written`] says
    /// when the bytes are in the file.
    pub async fn write(&self, offset: u64, bufs: Vec<Bytes>) -> Result<(), WriteFailed> {
        let len: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        if len == 0 {
            return self.check();
        }
        let permit = self.permit(len).await?;
        self.send(Op::Write {
            offset,
            bufs,
            _permit: permit,
        })
    }

    /// Queues `len` bytes waiting in `pipe` for `offset`, and `discard` bytes
    /// behind them to be dropped; like [`write`](Self::write) otherwise.
    /// Ops naming one pipe must be queued in the order its bytes went in.
    #[cfg(target_os = "linux")]
    pub async fn write_piped(
        &self,
        offset: u64,
        len: u64,
        discard: u64,
        pipe: &super::pipe::Pipe,
    ) -> Result<(), WriteFailed> {
        if len + discard == 0 {
            return self.check();
        }
        let permit = if len > 0 {
            Some(self.permit(len).await?)
        } else {
            None
        };
        self.send(Op::Piped {
            offset,
            len,
            discard,
            pipe: pipe.queue(len + discard),
            _permit: permit,
        })
    }

    fn check(&self) -> Result<(), WriteFailed> {
        if self.shared.failed.load(Ordering::SeqCst) {
            Err(self.shared.write_failed())
        } else {
            Ok(())
        }
    }

    async fn permit(&self, len: u64) -> Result<OwnedSemaphorePermit, WriteFailed> {
        self.check()?;
        // A batch larger than the whole budget takes the whole budget, so it
        // waits for an empty queue instead of forever.
        let kib = len.div_ceil(1024).min(self.shared.budget_permits as u64) as u32;
        Arc::clone(&self.shared.budget)
            .acquire_many_owned(kib)
            .await
            .map_err(|_| self.shared.write_failed())
    }

    fn send(&self, op: Op) -> Result<(), WriteFailed> {
        let sent = lock(&self.tx)
            .as_ref()
            .is_some_and(|tx| tx.send(op).is_ok());
        if sent {
            Ok(())
        } else {
            Err(self.shared.write_failed())
        }
    }
}

/// The running storage of one download: the writer and checkpointer threads.
pub struct Storage {
    shared: Arc<Shared>,
    tx: Arc<Mutex<Option<mpsc::Sender<Op>>>>,
    ck_tx: mpsc::Sender<CkMsg>,
    threads: Vec<JoinHandle<()>>,
}

impl Storage {
    /// `data_file` is a second handle (try_clone) on the data file, used for
    /// fdatasync from the checkpointer.
    /// `control`: None for downloads that cannot be resumed (no checkpoints then).
    /// `state.done` is the durable set at start and seeds the written set.
    pub fn start(
        sink: Box<dyn Sink>,
        data_file: File,
        data_path: PathBuf,
        control: Option<ControlFile>,
        state: ControlState,
        opts: WriterOptions,
    ) -> (WriteHandle, Storage) {
        let budget_permits = (opts.queue_bytes / 1024)
            .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize))
            as u32;
        let shared = Arc::new(Shared {
            data_path,
            written: Mutex::new(state.done.clone()),
            durable: Mutex::new(state.done.clone()),
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
            sync_failed: AtomicBool::new(false),
            budget: Arc::new(Semaphore::new(budget_permits as usize)),
            budget_permits,
        });
        let (tx, rx) = mpsc::channel::<Op>();
        let (ck_tx, ck_rx) = mpsc::channel::<CkMsg>();
        if let Some(w) = &opts.written {
            w.start(&state.done);
        }

        let writer = WriterThread {
            sink,
            shared: Arc::clone(&shared),
            ck_tx: ck_tx.clone(),
            writeback_bytes: opts.writeback_bytes,
            since_writeback: 0,
            writes_done: 0,
            watch: opts.written.clone(),
        };
        let checkpointer = Checkpointer {
            data: data_file,
            control,
            last_saved: state.done.clone(),
            state,
            shared: Arc::clone(&shared),
            writer: tx.clone(),
            synced_writes: 0,
        };
        let interval = opts.checkpoint_interval;
        let threads = vec![
            thread::Builder::new()
                .name("hfd-writer".into())
                .spawn(move || writer.run(rx))
                .expect("spawning the writer thread"),
            thread::Builder::new()
                .name("hfd-checkpoint".into())
                .spawn(move || checkpointer.run(ck_rx, interval))
                .expect("spawning the checkpointer thread"),
        ];
        let tx = Arc::new(Mutex::new(Some(tx)));
        (
            WriteHandle {
                tx: Arc::clone(&tx),
                shared: Arc::clone(&shared),
            },
            Storage {
                shared,
                tx,
                ck_tx,
                threads,
            },
        )
    }

    /// Bytes whose write returned (they are in the page cache, maybe not yet
    /// on disk).
    pub fn written(&self) -> ExtentSet {
        lock(&self.shared.written).clone()
    }

    /// What the last saved control record says: bytes that survive a crash.
    pub fn durable(&self) -> ExtentSet {
        lock(&self.shared.durable).clone()
    }

    /// Blocks until everything written so far is durable (and recorded, if
    /// there is a control file). Returns the first error of the storage, if
    /// any, even when this checkpoint itself succeeded, so a caller polling
    /// this learns of a failed write.
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.ck_tx
            .send(CkMsg::Checkpoint(reply))
            .map_err(|_| self.gone())?;
        let res = rx.recv().map_err(|_| self.gone())?;
        if let Some(e) = self.shared.failure_copy() {
            return Err(e);
        }
        res
    }

    /// Stops accepting writes, drains the queue, makes everything durable
    /// (with a final checkpoint), joins the threads, and returns the written
    /// set.
    pub fn finish(mut self) -> Result<ExtentSet, StorageError> {
        self.shutdown(true)
    }

    /// Like [`Storage::finish`], for a stop on error or Ctrl-C: it still
    /// drains the queue and checkpoints what was written, so a resume loses
    /// nothing, but a download without a control file skips the final
    /// fdatasync (nothing could use it, and it can take seconds).
    pub fn abort(mut self) -> Result<ExtentSet, StorageError> {
        self.shutdown(false)
    }

    fn gone(&self) -> StorageError {
        StorageError::Io {
            path: self.shared.data_path.clone(),
            action: "write",
            source: io::Error::other("the storage threads have stopped"),
        }
    }

    fn shutdown(&mut self, sync: bool) -> Result<ExtentSet, StorageError> {
        if self.threads.is_empty() {
            return Ok(self.written());
        }
        // Taking the sender under its lock means every write a handle got
        // into the channel is queued before the barrier of the final
        // checkpoint, and none can follow.
        drop(lock(&self.tx).take());
        self.shared.budget.close();
        let (reply, rx) = mpsc::sync_channel(1);
        let res = match self.ck_tx.send(CkMsg::Stop { sync, reply }) {
            Ok(()) => rx.recv().unwrap_or_else(|_| Err(self.gone())),
            Err(_) => Err(self.gone()),
        };
        let mut panicked = false;
        for t in self.threads.drain(..) {
            panicked |= t.join().is_err();
        }
        if let Some(e) = lock(&self.shared.failure).take() {
            return Err(e);
        }
        res?;
        if panicked {
            return Err(StorageError::Io {
                path: self.shared.data_path.clone(),
                action: "write",
                source: io::Error::other("a storage thread panicked"),
            });
        }
        Ok(self.written())
    }
}

impl Drop for Storage {
    /// Dropped without finish/abort (a panic unwinding, say): save what was
    /// written, as `abort` would, so the progress is not lost.
    fn drop(&mut self) {
        let _ = self.shutdown(false);
    }
}

struct WriterThread {
    sink: Box<dyn Sink>,
    shared: Arc<Shared>,
    ck_tx: mpsc::Sender<CkMsg>,
    writeback_bytes: u64,
    since_writeback: u64,
    writes_done: u64,
    watch: Option<WrittenWatch>,
}

impl WriterThread {
    fn run(mut self, rx: mpsc::Receiver<Op>) {
        // Ends on Stop, or when every sender is gone.
        while let Ok(op) = rx.recv() {
            match op {
                Op::Write {
                    offset,
                    bufs,
                    _permit,
                } => self.write(offset, &bufs),
                #[cfg(target_os = "linux")]
                Op::Piped {
                    offset,
                    len,
                    discard,
                    pipe,
                    _permit,
                } => self.write_piped(offset, len, discard, pipe.fd()),
                Op::Barrier(reply) => {
                    let flushed = self.sink.flush();
                    if let Err(e) = &flushed {
                        let copy = io::Error::new(e.kind(), e.to_string());
                        self.shared.fail(
                            StorageError::io(&self.shared.data_path, "flush", copy),
                            true,
                        );
                    }
                    let _ = reply.send(BarrierReply {
                        flushed,
                        written: lock(&self.shared.written).clone(),
                        writes_done: self.writes_done,
                    });
                }
                Op::Stop => break,
            }
        }
    }

    fn write(&mut self, offset: u64, bufs: &[Bytes]) {
        // After the first failure, queued writes are dropped unwritten: the
        // download is stopping, and writing past a full disk only fails again.
        if self.shared.failed.load(Ordering::SeqCst) {
            return;
        }
        let len: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        let r = self.sink.write_at(offset, bufs);
        self.wrote(offset, len, r);
    }

    #[cfg(target_os = "linux")]
    fn write_piped(
        &mut self,
        offset: u64,
        len: u64,
        discard: u64,
        pipe: std::os::fd::BorrowedFd<'_>,
    ) {
        if self.shared.failed.load(Ordering::SeqCst) {
            return;
        }
        if len > 0 {
            let r = self.sink.write_from_pipe(pipe, offset, len);
            let ok = r.is_ok();
            self.wrote(offset, len, r);
            if !ok {
                return;
            }
        }
        if discard > 0
            && let Err(e) = super::pipe::discard(pipe, discard)
        {
            self.shared.fail(
                StorageError::io(
                    &self.shared.data_path,
                    "drop the spliced bytes past a cut for",
                    e,
                ),
                false,
            );
        }
    }

    /// Records a returned write of `len` bytes at `offset`, or its failure.
    fn wrote(&mut self, offset: u64, len: u64, result: io::Result<()>) {
        match result {
            Ok(()) => {
                lock(&self.shared.written).insert(offset..offset + len);
                if let Some(w) = &self.watch {
                    w.add(offset..offset + len);
                }
                self.writes_done += 1;
                if self.writeback_bytes > 0 {
                    self.since_writeback += len;
                    if self.since_writeback >= self.writeback_bytes {
                        self.since_writeback = 0;
                        let _ = self.ck_tx.send(CkMsg::Writeback);
                    }
                }
            }
            Err(e) => self.shared.fail(
                StorageError::io(&self.shared.data_path, "write to", e),
                false,
            ),
        }
    }
}

struct Checkpointer {
    data: File,
    control: Option<ControlFile>,
    /// Validators and size for the records; `done` is replaced per save.
    state: ControlState,
    last_saved: ExtentSet,
    shared: Arc<Shared>,
    writer: mpsc::Sender<Op>,
    /// The writer's write count covered by the last fdatasync.
    synced_writes: u64,
}

impl Checkpointer {
    fn run(mut self, rx: mpsc::Receiver<CkMsg>, interval: Duration) {
        let mut next = Instant::now() + interval;
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(CkMsg::Checkpoint(reply)) => {
                    let _ = reply.send(self.checkpoint(true));
                }
                Ok(CkMsg::Writeback) => {
                    // Only a hint to the kernel; the checkpoint's fdatasync
                    // is what durability rests on, so a failure here is moot.
                    let _ = start_writeback(&self.data);
                }
                Ok(CkMsg::Stop { sync, reply }) => {
                    let res = self.checkpoint(sync);
                    let _ = self.writer.send(Op::Stop);
                    let _ = reply.send(res);
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.control.is_some() {
                        // Failures are kept in `shared` and reported by the
                        // next caller-facing call.
                        let _ = self.checkpoint(false);
                    }
                    next = Instant::now() + interval;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.checkpoint(false);
                    let _ = self.writer.send(Op::Stop);
                    return;
                }
            }
        }
    }

    /// One checkpoint in the order the module doc argues for. `sync_anyway`
    /// fdatasyncs even without a control file (for a caller about to rename
    /// the finished file).
    fn checkpoint(&mut self, sync_anyway: bool) -> Result<(), StorageError> {
        if self.shared.sync_failed.load(Ordering::SeqCst) {
            return Err(self.failure());
        }
        if self.control.is_none() && !sync_anyway {
            // Still drain: the caller may be waiting for the queue to empty.
            return self.barrier().map(|_| ());
        }
        let snap = self.barrier()?;
        snap.flushed.map_err(|_| self.failure())?;
        if snap.writes_done == self.synced_writes {
            return Ok(()); // nothing written since the last sync
        }
        if let Err(e) = self.data.sync_data() {
            self.shared
                .fail(StorageError::io(&self.shared.data_path, "sync", e), true);
            return Err(self.failure());
        }
        self.synced_writes = snap.writes_done;
        let Some(control) = self.control.as_mut() else {
            return Ok(());
        };
        if snap.written == self.last_saved {
            return Ok(());
        }
        self.state.done = snap.written;
        if let Err(e) = control.save(&self.state) {
            self.shared.fail(StorageError::Control(e), true);
            return Err(self.failure());
        }
        self.last_saved = self.state.done.clone();
        *lock(&self.shared.durable) = self.last_saved.clone();
        Ok(())
    }

    fn barrier(&self) -> Result<BarrierReply, StorageError> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.writer
            .send(Op::Barrier(reply))
            .ok()
            .and_then(|()| rx.recv().ok())
            .ok_or_else(|| StorageError::Io {
                path: self.shared.data_path.clone(),
                action: "write",
                source: io::Error::other("the writer thread has stopped"),
            })
    }

    fn failure(&self) -> StorageError {
        self.shared
            .failure_copy()
            .unwrap_or_else(|| StorageError::Io {
                path: self.shared.data_path.clone(),
                action: "sync",
                source: io::Error::other("an earlier sync failed"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Allocation;
    use crate::storage::alloc::{allocate, open_data_file};
    use crate::storage::control_file::tests::{read_newest, sample};
    use crate::storage::mmap::MmapSink;
    use crate::storage::pwrite::PwriteSink;
    use std::ops::Range;
    use std::path::Path;

    #[derive(Clone, Debug)]
    enum Event {
        Wrote(Range<u64>),
        Flushed,
    }

    /// Logs what the writer thread does, and optionally waits for a token
    /// before each write so a test can hold the writer inside the sink.
    struct Recording {
        inner: Box<dyn Sink>,
        log: Arc<Mutex<Vec<Event>>>,
        gate: Option<mpsc::Receiver<()>>,
    }

    impl Sink for Recording {
        fn write_at(&mut self, offset: u64, bufs: &[Bytes]) -> io::Result<()> {
            if let Some(g) = &self.gate {
                g.recv().map_err(|_| io::Error::other("gate closed"))?;
            }
            self.inner.write_at(offset, bufs)?;
            let len: u64 = bufs.iter().map(|b| b.len() as u64).sum();
            lock(&self.log).push(Event::Wrote(offset..offset + len));
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()?;
            lock(&self.log).push(Event::Flushed);
            Ok(())
        }
    }

    fn data_file(dir: &Path, total: u64, mode: Allocation) -> (File, PathBuf) {
        let p = dir.join("f.part");
        let f = open_data_file(&p).unwrap();
        allocate(&f, &p, total, mode).unwrap();
        (f, p)
    }

    fn state(total: u64, done: ExtentSet) -> ControlState {
        ControlState {
            total,
            done,
            ..sample(&[])
        }
    }

    /// 16 tasks, one per region, each writing a random prefix of its region
    /// in random batches split into random frames. Returns the model.
    async fn write_regions(h: &WriteHandle, total: u64, seed: u64) -> (Vec<u8>, ExtentSet) {
        let region = total / 16;
        let mut tasks = Vec::new();
        for i in 0..16u64 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(seed * 100 + i);
                let start = i * region;
                let stop = start + rng.u64(0..=region);
                let mut data = Vec::new();
                let mut pos = start;
                while pos < stop {
                    let len = rng.u64(1..=100_000.min(stop - pos));
                    let chunk: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
                    data.extend_from_slice(&chunk);
                    let b = Bytes::from(chunk);
                    let cut = rng.usize(0..=b.len());
                    h.write(pos, vec![b.slice(..cut), b.slice(cut..)])
                        .await
                        .unwrap();
                    pos += len;
                    if rng.u8(..10) == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                (start, data)
            }));
        }
        let mut model = vec![0u8; total as usize];
        let mut set = ExtentSet::new();
        for t in tasks {
            let (start, data) = t.await.unwrap();
            model[start as usize..start as usize + data.len()].copy_from_slice(&data);
            set.insert(start..start + data.len() as u64);
        }
        (model, set)
    }

    #[test]
    fn storage_and_handles_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Storage>();
        shareable::<WriteHandle>();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finish_leaves_the_model_on_disk_for_both_sinks() {
        for (k, use_mmap) in [false, true].into_iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let total = 5_000_000 + k as u64;
            let (f, p) = data_file(dir.path(), total, Allocation::Falloc);
            let ctl_path = dir.path().join("f.part.ctl");
            let st = state(total, ExtentSet::new());
            let control = ControlFile::create(&ctl_path, &st).unwrap();
            let sink: Box<dyn Sink> = if use_mmap {
                Box::new(MmapSink::new(f.try_clone().unwrap(), Some(total)).unwrap())
            } else {
                Box::new(PwriteSink::new(f.try_clone().unwrap()))
            };
            let opts = WriterOptions {
                queue_bytes: 256 << 10,
                checkpoint_interval: Duration::from_millis(5),
                writeback_bytes: 1 << 20,
                written: None,
            };
            let (h, storage) = Storage::start(sink, f, p.clone(), Some(control), st, opts);
            let (model, set) = write_regions(&h, total, k as u64).await;
            let written = tokio::task::spawn_blocking(move || storage.finish())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(written, set, "mmap={use_mmap}");
            assert!(std::fs::read(&p).unwrap() == model, "mmap={use_mmap}");
            // The final checkpoint recorded exactly the written set.
            assert_eq!(read_newest(&ctl_path).unwrap().1.done, set);
            // Nothing is accepted after finish.
            assert!(h.write(0, vec![Bytes::from_static(b"x")]).await.is_err());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn write_waits_while_the_queue_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let (f, p) = data_file(dir.path(), 1 << 20, Allocation::Trunc);
        let (gate_tx, gate_rx) = mpsc::channel();
        let sink = Recording {
            inner: Box::new(PwriteSink::new(f.try_clone().unwrap())),
            log: Arc::default(),
            gate: Some(gate_rx),
        };
        let opts = WriterOptions {
            queue_bytes: 4096,
            ..WriterOptions::default()
        };
        let st = state(1 << 20, ExtentSet::new());
        let (h, storage) = Storage::start(Box::new(sink), f, p.clone(), None, st, opts);
        // 10 KiB is more than the whole 4 KiB budget: it takes all of it.
        h.write(0, vec![Bytes::from(vec![1u8; 10 << 10])])
            .await
            .unwrap();
        let h2 = h.clone();
        let mut second =
            tokio::spawn(
                async move { h2.write(10 << 10, vec![Bytes::from(vec![2u8; 1024])]).await },
            );
        // The writer is stuck in the sink with the first batch: the second
        // cannot get budget.
        let waited = tokio::time::timeout(Duration::from_millis(200), &mut second).await;
        assert!(waited.is_err(), "write completed while the queue was full");
        assert!(storage.written().is_empty());
        gate_tx.send(()).unwrap(); // let the first write through
        second.await.unwrap().unwrap();
        gate_tx.send(()).unwrap();
        let written = tokio::task::spawn_blocking(move || storage.finish())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(written, ExtentSet::from_range(0..11 << 10));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn saved_records_are_exactly_what_returned_before_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let total = 4_000_000;
        let (f, p) = data_file(dir.path(), total, Allocation::Falloc);
        let ctl_path = dir.path().join("f.part.ctl");
        let seed = ExtentSet::from_range(0..1000);
        let st = state(total, seed.clone());
        let control = ControlFile::create(&ctl_path, &st).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Recording {
            inner: Box::new(PwriteSink::new(f.try_clone().unwrap())),
            log: Arc::clone(&log),
            gate: None,
        };
        let opts = WriterOptions {
            queue_bytes: 64 << 10,
            checkpoint_interval: Duration::from_millis(2),
            writeback_bytes: 0,
            written: None,
        };
        let (h, storage) = Storage::start(Box::new(sink), f, p, Some(control), st, opts);
        let storage = Arc::new(storage);

        // Watch the file on disk while writes and checkpoints run.
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (stop, ctl_path) = (Arc::clone(&stop), ctl_path.clone());
            thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    if let Some((_, s)) = read_newest(&ctl_path) {
                        seen.push(s.done);
                    }
                    thread::sleep(Duration::from_micros(300));
                }
                seen
            })
        };
        let checker = {
            let storage = Arc::clone(&storage);
            let ctl_path = ctl_path.clone();
            tokio::task::spawn_blocking(move || {
                for _ in 0..20 {
                    storage.checkpoint().unwrap();
                    let durable = storage.durable();
                    let written = storage.written();
                    for r in durable.iter() {
                        assert!(written.contains_range(r));
                    }
                    // After a checkpoint, the file says at least what
                    // `durable` says (a periodic save may already be newer).
                    let on_disk = read_newest(&ctl_path).unwrap().1.done;
                    for r in durable.iter() {
                        assert!(on_disk.contains_range(r));
                    }
                    thread::sleep(Duration::from_millis(3));
                }
            })
        };
        let (_, set) = write_regions(&h, total, 7).await;
        checker.await.unwrap();
        stop.store(true, Ordering::SeqCst);
        let seen = watcher.join().unwrap();
        let storage = Arc::into_inner(storage).unwrap();
        let mut want = set.clone();
        want.insert(0..1000);
        assert_eq!(storage.finish().unwrap(), want);

        // Every record ever seen on disk equals the seed plus the writes that
        // returned before some flush barrier.
        let mut prefixes = vec![seed.clone()];
        let mut acc = seed;
        for e in lock(&log).iter() {
            match e {
                Event::Wrote(r) => acc.insert(r.clone()),
                Event::Flushed => prefixes.push(acc.clone()),
            }
        }
        assert!(seen.len() > 5, "saw only {} records", seen.len());
        for s in &seen {
            assert!(prefixes.contains(s), "a record no flush explains: {s:?}");
        }
        assert_eq!(read_newest(&ctl_path).unwrap().1.done, want);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_still_in_the_sink_is_never_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let (f, p) = data_file(dir.path(), 1000, Allocation::Falloc);
        let ctl_path = dir.path().join("f.part.ctl");
        let st = state(1000, ExtentSet::new());
        let control = ControlFile::create(&ctl_path, &st).unwrap();
        let (gate_tx, gate_rx) = mpsc::channel();
        let sink = Recording {
            inner: Box::new(PwriteSink::new(f.try_clone().unwrap())),
            log: Arc::default(),
            gate: Some(gate_rx),
        };
        let opts = WriterOptions {
            checkpoint_interval: Duration::from_millis(2),
            ..WriterOptions::default()
        };
        let (h, storage) = Storage::start(Box::new(sink), f, p, Some(control), st, opts);
        gate_tx.send(()).unwrap();
        h.write(0, vec![Bytes::from(vec![1u8; 100])]).await.unwrap();
        // A periodic checkpoint records the first write.
        let t0 = Instant::now();
        while read_newest(&ctl_path).unwrap().1.done.is_empty() {
            assert!(t0.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // The second write is held inside the sink: checkpoints queue behind
        // it and none may record it, however many intervals pass.
        h.write(100, vec![Bytes::from(vec![2u8; 100])])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            read_newest(&ctl_path).unwrap().1.done,
            ExtentSet::from_range(0..100)
        );
        gate_tx.send(()).unwrap();
        let storage = tokio::task::spawn_blocking(move || {
            storage.checkpoint().unwrap();
            storage
        })
        .await
        .unwrap();
        assert_eq!(storage.durable(), ExtentSet::from_range(0..200));
        assert_eq!(
            read_newest(&ctl_path).unwrap().1.done,
            ExtentSet::from_range(0..200)
        );
        storage.finish().unwrap();
    }

    #[test]
    fn a_resume_with_nothing_new_does_not_rewrite_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let (f, p) = data_file(dir.path(), 1000, Allocation::Falloc);
        let ctl_path = dir.path().join("f.part.ctl");
        let st = state(1000, ExtentSet::from_range(0..500));
        ControlFile::create(&ctl_path, &st).unwrap();
        let (control, st) = ControlFile::open(&ctl_path).unwrap().unwrap();
        let sink = Box::new(PwriteSink::new(f.try_clone().unwrap()));
        let (_h, storage) = Storage::start(sink, f, p, Some(control), st, WriterOptions::default());
        assert_eq!(storage.written(), ExtentSet::from_range(0..500));
        assert_eq!(storage.durable(), ExtentSet::from_range(0..500));
        storage.checkpoint().unwrap();
        assert_eq!(storage.abort().unwrap(), ExtentSet::from_range(0..500));
        assert_eq!(read_newest(&ctl_path).unwrap().0, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_surfaces_as_disk_full_and_progress_is_kept() {
        let Some(fs) = crate::storage::testutil::SmallTmpfs::mount("4m") else {
            return;
        };
        // 3 MiB fits the 4 MiB file system when the download starts...
        let total = 3 << 20;
        let (f, p) = data_file(fs.path(), total, Allocation::None);
        let ctl_path = fs.path().join("f.part.ctl");
        let st = state(total, ExtentSet::new());
        let control = ControlFile::create(&ctl_path, &st).unwrap();
        // ...until another program takes 2 MiB of it.
        std::fs::write(fs.path().join("other"), vec![9u8; 2 << 20]).unwrap();
        let sink = Box::new(PwriteSink::new(f.try_clone().unwrap()));
        let opts = WriterOptions {
            queue_bytes: 1 << 20,
            ..WriterOptions::default()
        };
        let (h, storage) = Storage::start(sink, f, p, Some(control), st, opts);
        let mut refused = None;
        for i in 0..12u64 {
            let chunk = Bytes::from(vec![i as u8 + 1; 256 << 10]);
            if let Err(e) = h.write(i * (256 << 10), vec![chunk]).await {
                refused = Some(e);
                break;
            }
        }
        let refused = refused.expect("writes past a full disk were accepted");
        assert!(refused.0.contains("not enough disk space"), "{refused}");
        let storage = tokio::task::spawn_blocking(move || {
            // checkpoint saves what was written, then reports the failure.
            match storage.checkpoint() {
                Err(StorageError::DiskFull { .. }) => {}
                other => panic!("{other:?}"),
            }
            storage
        })
        .await
        .unwrap();
        let written = storage.written();
        assert!(
            written.prefix_len() > 0 && written.end() < 4 << 20,
            "{written:?}"
        );
        assert_eq!(written.len(), 1);
        assert_eq!(read_newest(&ctl_path).unwrap().1.done, written);
        match storage.abort() {
            Err(e @ StorageError::DiskFull { .. }) => {
                assert!(e.to_string().contains("not enough disk space"))
            }
            other => panic!("{other:?}"),
        }
    }

    /// Spliced writes land where their ops say, the bytes a cut left in
    /// the pipe are thrown away, and the written set counts only the
    /// former; for both sinks (the mmap one reads the pipe out).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn piped_writes_land_in_order_and_discarded_bytes_do_not() {
        for use_mmap in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let total = 12;
            let (f, p) = data_file(dir.path(), total, Allocation::Falloc);
            let sink: Box<dyn Sink> = if use_mmap {
                Box::new(MmapSink::new(f.try_clone().unwrap(), Some(total)).unwrap())
            } else {
                Box::new(PwriteSink::new(f.try_clone().unwrap()))
            };
            let st = state(total, ExtentSet::new());
            let (h, storage) =
                Storage::start(sink, f, p.clone(), None, st, WriterOptions::default());
            let pipe = crate::storage::pipe::Pipe::new().unwrap();
            pipe.push(b"AAAAxxxxBBBB");
            h.write_piped(0, 4, 4, &pipe).await.unwrap();
            h.write(4, vec![Bytes::from_static(b"mmmm")]).await.unwrap();
            h.write_piped(8, 4, 0, &pipe).await.unwrap();
            let written = tokio::task::spawn_blocking(move || storage.finish())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                std::fs::read(&p).unwrap(),
                b"AAAAmmmmBBBB",
                "mmap={use_mmap}"
            );
            let mut want = ExtentSet::new();
            want.insert(0..12);
            assert_eq!(written, want);
        }
    }
}
