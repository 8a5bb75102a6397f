//! One connection slot: takes a region from the scheduler and fetches it with
//! successive bounded range requests over one keep-alive connection.
//!
//! On our own HTTP/1.1 client (plain http, and HTTPS without `--http2`) the
//! next request goes out when the current answer is half read
//! (pipelining), so a distant server streams one range after the other
//! with no round trip of silence between them; hyper's client sends one
//! request at a time.
//!
//! Every answer is checked before a byte of it is written: status 206, a
//! `Content-Range` that starts exactly where we asked and ends inside the
//! request, the total length and validators recorded at the start. Bytes are
//! claimed from the slot's region frame by frame, so a region cut short by a
//! thief stops the stream at the cut.

use std::ops::Range;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt;

use super::error::{Error, GaveUpKind};
use super::fetch::{ByteRange, Failure, fetch, head_ahead, receive_ahead, status_failure};
use super::job::Job;
use super::scheduler::{Assignment, Preempt, Slot, request_size};
use crate::net::http::{ContentRange, any_etag, content_range, last_modified, strong_etag};
use crate::net::{Body, Conn};
#[cfg(target_os = "linux")]
use crate::storage::pipe::Pipe;
use url::Url;

/// The probe's answer, handed to the first slot so its bytes are not wasted.
pub struct FirstResponse {
    pub conn: Conn,
    pub response: Response<Body>,
    pub range: Range<u64>,
}

/// How a response stream ended.
enum StreamEnd {
    /// The request was served completely; the connection can be reused.
    Complete,
    /// Our region ended before the response did (a thief took the rest), or we
    /// were asked to reconnect: the connection must be dropped.
    Abandoned,
    /// The download is stopping.
    Cancelled,
}

struct Worker {
    job: Arc<Job>,
    slot: Arc<Slot>,
    conn: Option<Conn>,
    counted_live: bool,
    /// Left because the adaptive count went down; `live_slots` already
    /// counts it out.
    retired: bool,
    /// Consecutive failures without a byte received in between.
    failures: u32,
    progressed: bool,
    /// Carry spliced bodies to the writer, taking turns (see
    /// [`crate::storage::pipe`]); kept across requests, dropped after a
    /// failure in case bytes in them were not accounted for.
    pipes: Option<Arc<Pipes>>,
    /// Goes with the connection: a new one has nothing pending.
    ahead: Option<Ahead>,
}

/// A connection fills one pipe while the writer drains the other.
type Pipes = [Pipe; 2];

/// A request sent ahead on the slot's connection, its answer not yet read.
struct Ahead {
    range: Range<u64>,
    url: Url,
    generation: u64,
}

/// Runs a slot until the download is done, cancelled, or the slot gives up.
pub async fn run(job: Arc<Job>, slot: Arc<Slot>, first: Option<FirstResponse>) {
    let source = job.sources[slot.source].clone();
    source.slot_started();
    job.live_slots.fetch_add(1, Relaxed);
    let mut w = Worker {
        job,
        slot,
        conn: None,
        counted_live: false,
        retired: false,
        failures: 0,
        progressed: false,
        pipes: None,
        ahead: None,
    };
    w.main(first).await;
    w.set_conn(None);
    source.slot_ended();
    if !w.retired {
        w.job.live_slots.fetch_sub(1, Relaxed);
    }
    w.job.sched.changed.notify_waiters();
}

impl Worker {
    fn set_conn(&mut self, conn: Option<Conn>) {
        if conn.is_none() {
            self.ahead = None;
        }
        self.conn = conn;
        self.sync_live();
    }

    /// Keeps the progress' live-connection count in step with `self.conn`.
    fn sync_live(&mut self) {
        let live = self.conn.is_some();
        if live != self.counted_live {
            if live {
                self.job.progress.connection_opened();
            } else {
                self.job.progress.connection_closed();
            }
            self.counted_live = live;
        }
    }

    async fn main(&mut self, mut first: Option<FirstResponse>) {
        let job = self.job.clone();
        let source = job.sources[self.slot.source].clone();
        loop {
            if job.cancel.is_cancelled() {
                return;
            }
            match self.slot.take_preempt() {
                Preempt::Cancel => return,
                Preempt::RegionLost | Preempt::Reconnect | Preempt::Stalled => self.set_conn(None),
                Preempt::None => {}
            }
            if source.is_dead() {
                job.sched.release(&self.slot);
                return;
            }
            if !self.slot.has_work() {
                match job.sched.assign(&self.slot) {
                    Assignment::Done => return,
                    Assignment::Work(_) => {}
                    Assignment::Wait => {
                        // Nothing to take: keep no idle connection open to the server.
                        self.set_conn(None);
                        tokio::select! {
                            _ = job.sched.changed.notified() => {}
                            _ = self.slot.wake.notified() => {}
                            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                            _ = job.cancel.cancelled() => return,
                        }
                        continue;
                    }
                }
            }
            // After 429/503 a source carries fewer connections: extra slots leave.
            if source.active() > source.conn_limit() && job.live_slots.load(Relaxed) > 1 {
                tracing::debug!("slot {} leaves: connection limit lowered", self.slot.id);
                job.sched.release(&self.slot);
                return;
            }
            // The adaptive count went down: as many slots leave as it says.
            if job.retire_one() {
                tracing::debug!(
                    "slot {} leaves: fewer connections did as well",
                    self.slot.id
                );
                self.retired = true;
                job.sched.release(&self.slot);
                return;
            }

            let reused = self.conn.is_some() && first.is_none();
            let (response, req, generation, redirected, url) = match first.take() {
                Some(f) => {
                    self.set_conn(Some(f.conn));
                    let (url, g) = source.current();
                    (f.response, f.range, g, source.is_redirected(), url)
                }
                None => {
                    // The answer sent ahead is used while it still starts
                    // where the region does; else the connection goes.
                    let ahead = self.ahead.take().filter(|a| {
                        self.conn.as_ref().is_some_and(|c| c.has_answer_pending())
                            && a.range.start == self.slot.region().start
                    });
                    let mut conn = self.conn.take();
                    let (req, generation, r) = match ahead {
                        Some(a) => {
                            let r = tokio::select! {
                                r = receive_ahead(&source, a.url, &mut conn) => r,
                                _ = job.cancel.cancelled() => return,
                            };
                            (a.range, a.generation, r)
                        }
                        None => {
                            let Some(req) = self
                                .slot
                                .next_request(request_size(self.slot.rate(), source.ttfb()))
                            else {
                                self.set_conn(conn);
                                continue;
                            };
                            let (url, generation) = source.current();
                            let if_range = job.if_range_for(&source);
                            // A server that went silent must not hold up Ctrl-C
                            // for the response timeout.
                            let r = tokio::select! {
                                r = fetch(
                                    &job.net,
                                    &source,
                                    url,
                                    ByteRange::of(&req),
                                    if_range.as_deref(),
                                    &mut conn,
                                ) => r,
                                _ = job.cancel.cancelled() => return,
                            };
                            if let Ok(f) = &r {
                                source.record_ttfb(f.ttfb);
                            }
                            (req, generation, r)
                        }
                    };
                    self.set_conn(conn);
                    match r {
                        Ok(f) => {
                            if !f.hops.is_empty() {
                                source.set_resolved(f.url.clone());
                            }
                            let redirected = f.url != source.original;
                            let from_source = !f.hops.is_empty() || !redirected;
                            if let Some(c) = &job.source_check
                                && from_source
                                && let Err(e) = c.verify(&source, &f)
                            {
                                self.set_conn(None);
                                if !self.on_failure(Failure::Fatal(e), generation).await {
                                    return;
                                }
                                continue;
                            }
                            (f.response, req, generation, redirected, f.url)
                        }
                        Err(failure) => {
                            if !self.on_failure(failure, generation).await {
                                return;
                            }
                            continue;
                        }
                    }
                }
            };

            if let Err(failure) = self.check(&response, &req) {
                let failure = match failure {
                    Some(f) => f,
                    None => {
                        let url = source.current().0;
                        status_failure(response, &url, redirected, &source).await
                    }
                };
                self.set_conn(None);
                if !self.on_failure(failure, generation).await {
                    return;
                }
                continue;
            }

            job.sched.transfer_started(&self.slot, !reused);
            match self.stream(response, &req, &url, generation).await {
                Ok(StreamEnd::Complete) => {}
                Ok(StreamEnd::Abandoned) => self.set_conn(None),
                Ok(StreamEnd::Cancelled) => return,
                Err(failure) => {
                    self.set_conn(None);
                    self.pipes = None;
                    if !self.on_failure(failure, generation).await {
                        return;
                    }
                }
            }
        }
    }

    /// Checks the answer to a request for `req`. `Err(None)` means "an error
    /// status: let `status_failure` read and classify it".
    fn check(&self, response: &Response<Body>, req: &Range<u64>) -> Result<(), Option<Failure>> {
        let job = &self.job;
        let source = &job.sources[self.slot.source];
        let url = source.display();
        let h = response.headers();
        let changed = |detail: String| {
            Some(Failure::Fatal(Error::RemoteChanged {
                url: url.clone(),
                detail,
            }))
        };
        let same_validators = |etag: &Option<String>, lm: &Option<String>| {
            if let (Some(want), Some(got)) = (etag, any_etag(h))
                && *want != got
            {
                return Err(changed(format!("its ETag was {want}, now {got}")));
            }
            if etag.is_none()
                && let (Some(want), Some(got)) = (lm, last_modified(h))
                && *want != got
            {
                return Err(changed(format!("its Last-Modified was {want}, now {got}")));
            }
            Ok(())
        };
        // Validators first: whatever the status, a different ETag is a
        // different file. With a source check each source answers for its
        // own, once a good answer has fixed them (below).
        if job.source_check.is_none() {
            same_validators(&job.validators.etag, &job.validators.last_modified)?;
        } else if let Some((etag, lm)) = source.own_validators.get() {
            same_validators(etag, lm)?;
        }
        match response.status() {
            StatusCode::PARTIAL_CONTENT => {}
            StatusCode::OK => {
                return Err(changed(
                    "a range request was answered with the whole file, so the file no longer matches what was started".into(),
                ));
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                return match content_range(h) {
                    Some(ContentRange::Unsatisfied { total }) if total != job.validators.total => {
                        Err(changed(format!(
                            "its size was {} bytes, now {total}",
                            job.validators.total
                        )))
                    }
                    _ => Err(Some(Failure::Retry {
                        kind: GaveUpKind::BadResponse,
                        detail: format!("HTTP 416 for bytes {}-{}", req.start, req.end - 1),
                        status: Some(416),
                        retry_after: None,
                        overloaded: false,
                    })),
                };
            }
            _ => return Err(None),
        }
        let bad = |detail: String| {
            Err(Some(Failure::Retry {
                kind: GaveUpKind::BadResponse,
                detail,
                status: Some(206),
                retry_after: None,
                overloaded: false,
            }))
        };
        match content_range(h) {
            Some(ContentRange::Bytes { first, last, total }) => {
                if let Some(t) = total
                    && t != job.validators.total
                {
                    return Err(changed(format!(
                        "its size was {} bytes, now {t}",
                        job.validators.total
                    )));
                }
                if first != req.start {
                    return bad(format!(
                        "asked for bytes from {} but the answer starts at {first} (Content-Range {first}-{last}); nothing of it was written",
                        req.start
                    ));
                }
                if last >= req.end {
                    return bad(format!(
                        "asked for bytes {}-{} but got {first}-{last}",
                        req.start,
                        req.end - 1
                    ));
                }
                if job.source_check.is_some() && source.own_validators.get().is_none() {
                    let (etag, lm) = source
                        .own_validators
                        .get_or_init(|| (strong_etag(h), last_modified(h)));
                    same_validators(etag, lm)?;
                }
                Ok(())
            }
            _ => bad("a 206 answer without a valid Content-Range".into()),
        }
    }

    /// Streams the body of a validated 206 into storage.
    async fn stream(
        &mut self,
        response: Response<Body>,
        req: &Range<u64>,
        url: &Url,
        generation: u64,
    ) -> Result<StreamEnd, Failure> {
        let job = self.job.clone();
        let source = &job.sources[self.slot.source];
        let mut body = response.into_body();
        // Half way through the answer, the next request goes out.
        let mut ahead_at =
            matches!(body, Body::Plain(_)).then(|| req.start + (req.end - req.start) / 2);
        let mut batch = Batch::new(req.start, self.pipes_for(&body));
        let mut expected = req.start;
        let slot = self.slot.clone();
        let mut woken = pin!(slot.wake.notified());
        woken.as_mut().enable();
        // A stop that came while the request was under way was announced
        // before `woken` listened.
        if job.cancel.is_cancelled() {
            return Ok(StreamEnd::Cancelled);
        }
        let end = loop {
            if batch.must_flush_for_room() {
                batch.flush(&job).await?;
            }
            let piece = tokio::select! {
                biased;
                _ = &mut woken => {
                    match self.slot.take_preempt() {
                        Preempt::Cancel => break StreamEnd::Cancelled,
                        Preempt::RegionLost | Preempt::Reconnect => break StreamEnd::Abandoned,
                        // Bytes came since the last stall or failure: a
                        // slow patch, not a server that always stalls here.
                        // Reconnect without counting, but only once.
                        Preempt::Stalled if std::mem::take(&mut self.progressed) => {
                            break StreamEnd::Abandoned;
                        }
                        Preempt::Stalled => {
                            batch.flush(&job).await?;
                            return Err(Failure::retry(
                                GaveUpKind::Timeout,
                                "no data arrived for too long; reconnecting",
                            ));
                        }
                        Preempt::None => {
                            woken.set(slot.wake.notified());
                            woken.as_mut().enable();
                            continue;
                        }
                    }
                }
                p = next_piece(&mut body, batch.pipe(), batch.splice_size()) => p,
            };
            let len = match piece {
                Piece::End => {
                    if expected < req.end && self.slot.region().start < req.end {
                        batch.flush(&job).await?;
                        return Err(Failure::retry(
                            GaveUpKind::Network,
                            format!(
                                "the connection closed after {} of {} bytes",
                                expected - req.start,
                                req.end - req.start
                            ),
                        ));
                    }
                    break StreamEnd::Complete;
                }
                Piece::Failed(e) => {
                    batch.flush(&job).await?;
                    return Err(Failure::retry(
                        GaveUpKind::Network,
                        format!("receiving failed after {} bytes: {e}", expected - req.start),
                    ));
                }
                Piece::Data(ref d) => d.len() as u64,
                Piece::Piped(n) => n as u64,
            };
            if len == 0 {
                continue;
            }
            if expected + len > req.end {
                // Spliced bytes past the request are in the pipe: drop them.
                batch.add(piece, expected, 0);
                batch.flush(&job).await?;
                return Err(Failure::retry(
                    GaveUpKind::BadResponse,
                    "the server sent more bytes than the range asked for".to_string(),
                ));
            }
            if matches!(piece, Piece::Data(_)) && batch.piped() > 0 {
                batch.flush(&job).await?;
            }
            let (at, take) = self.slot.claim(len);
            debug_assert!(
                take == 0 || at == expected,
                "claim at {at}, expected {expected}"
            );
            batch.add(piece, at, take);
            if take > 0 {
                expected += take;
                job.sched.received(&self.slot, take);
                job.progress.add_received(take);
                source.bytes.fetch_add(take, Relaxed);
                if !self.progressed {
                    self.progressed = true;
                    self.failures = 0;
                }
                if batch.full(job.batch) {
                    batch.flush(&job).await?;
                }
            }
            if take < len {
                // The region ended inside this piece: stolen, or taken over.
                break StreamEnd::Abandoned;
            }
            if ahead_at.is_some_and(|at| expected >= at) && expected < req.end {
                ahead_at = None;
                self.send_ahead(&mut body, url, req.end, generation).await;
            }
            if expected == req.end {
                // Read the end of the body so the connection can be reused.
                match body.frame().await {
                    None => break StreamEnd::Complete,
                    Some(_) => break StreamEnd::Abandoned,
                }
            }
        };
        batch.flush(&job).await?;
        Ok(end)
    }

    /// Sends the request for the bytes after `from` (the end of the request
    /// being read) on `body`'s connection. Best effort: when it cannot be
    /// sent, the next request goes out after this answer as usual.
    async fn send_ahead(&mut self, body: &mut Body, url: &Url, from: u64, generation: u64) {
        let Body::Plain(plain) = body else { return };
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        let job = self.job.clone();
        let source = &job.sources[self.slot.source];
        if !source.pipelines() {
            return;
        }
        let Some(range) = self
            .slot
            .request_after(from, request_size(self.slot.rate(), source.ttfb()))
        else {
            return;
        };
        let if_range = job.if_range_for(source);
        let byte_range = ByteRange::of(&range);
        let Some(head) = head_ahead(&job.net, source, conn, url, byte_range, if_range.as_deref())
        else {
            self.slot.withdraw_request(&range);
            return;
        };
        match plain.send_ahead(&head).await {
            Ok(()) => {
                self.ahead = Some(Ahead {
                    range,
                    url: url.clone(),
                    generation,
                })
            }
            Err(e) => {
                self.slot.withdraw_request(&range);
                tracing::debug!("slot {}: no request sent ahead: {e}", self.slot.id)
            }
        }
    }

    /// The pipes to splice `body` through, when it can be spliced: our own
    /// HTTP/1.1 client's answer with a `Content-Length`, on a plain socket.
    #[cfg(target_os = "linux")]
    fn pipes_for(&mut self, body: &Body) -> Option<Arc<Pipes>> {
        if !matches!(body, Body::Plain(p) if p.can_splice() && p.remaining().is_some_and(|n| n > 0))
        {
            return None;
        }
        if self.pipes.is_none() {
            match Pipe::new().and_then(|a| Ok([a, Pipe::new()?])) {
                Ok(p) => self.pipes = Some(Arc::new(p)),
                Err(e) => {
                    tracing::debug!("no pipe, reading through user space: {e}");
                    return None;
                }
            }
        }
        self.pipes.clone()
    }

    #[cfg(not(target_os = "linux"))]
    fn pipes_for(&mut self, _body: &Body) -> Option<Arc<Pipes>> {
        None
    }

    /// Handles a failed request; returns false when the slot must stop.
    async fn on_failure(&mut self, failure: Failure, generation: u64) -> bool {
        let job = self.job.clone();
        let source = job.sources[self.slot.source].clone();
        self.set_conn(None);
        match failure {
            Failure::Fatal(e) => {
                job.source_failed(&self.slot, e);
                false
            }
            Failure::Expired { detail, status } => {
                if source.expire(generation) {
                    true
                } else {
                    job.source_failed(
                        &self.slot,
                        Error::Auth {
                            url: source.display(),
                            status,
                            hint: format!(
                                "; the redirect target keeps refusing even after resolving again ({detail})"
                            ),
                        },
                    );
                    false
                }
            }
            Failure::Retry {
                kind,
                detail,
                status,
                retry_after,
                overloaded,
            } => {
                let had_progress = std::mem::replace(&mut self.progressed, false);
                if had_progress {
                    self.failures = 0;
                }
                self.failures += 1;
                tracing::info!(
                    "{} (slot {}): {detail}; attempt {} failed",
                    source.display(),
                    self.slot.id,
                    self.failures
                );
                job.record_failure(source.id, kind, &detail, status, self.failures);
                if overloaded {
                    source.lower_conn_limit();
                }
                if job.retry.exhausted(self.failures) {
                    job.slot_gave_up(&self.slot);
                    return false;
                }
                // A connection that was delivering retries at once; repeated
                // failures back off (full jitter), never below Retry-After.
                let delay = if had_progress && retry_after.is_none() && !overloaded {
                    Duration::ZERO
                } else {
                    job.retry.delay(self.failures, retry_after)
                };
                if !delay.is_zero() {
                    tracing::debug!("slot {} waits {:?} before retrying", self.slot.id, delay);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = job.cancel.cancelled() => return false,
                    }
                }
                true
            }
        }
    }
}

/// Stands in where pipes do not exist; never constructed.
#[cfg(not(target_os = "linux"))]
pub struct Pipe;

#[cfg(not(target_os = "linux"))]
impl Pipe {
    fn capacity(&self) -> usize {
        0
    }
    fn has_room(&self) -> bool {
        true
    }
}

/// The next bit of a body.
enum Piece {
    /// Bytes in memory.
    Data(Bytes),
    /// This many bytes went from the socket into the pipe.
    Piped(usize),
    End,
    Failed(String),
}

/// Reads the next piece of `body`: spliced into `pipe` when there is one
/// (at most `max` bytes), else a frame.
async fn next_piece(body: &mut Body, pipe: Option<&Pipe>, max: usize) -> Piece {
    #[cfg(target_os = "linux")]
    if let (Some(pipe), Body::Plain(p)) = (pipe, &mut *body) {
        // What came in with the head is already in memory.
        if let Some(d) = p.take_buffered() {
            return Piece::Data(d);
        }
        if p.remaining() == Some(0) {
            return Piece::End;
        }
        return match p.splice_into(pipe, max).await {
            Ok(n) => Piece::Piped(n),
            Err(e) => Piece::Failed(e.to_string()),
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (pipe, max);
    match body.frame().await {
        None => Piece::End,
        Some(Err(e)) => Piece::Failed(e.to_string()),
        Some(Ok(frame)) => Piece::Data(frame.into_data().unwrap_or_default()),
    }
}

/// Body bytes received but not yet handed to the writer: frames in memory,
/// then bytes waiting in the current pipe, then pipe bytes to throw away
/// (past a cut). Batching keeps writer ops large. Frames are flushed at
/// `batch` bytes (they pin user-space buffers); a pipe when it is full, and
/// the next bytes then go into the other pipe.
struct Batch {
    pipes: Option<Arc<Pipes>>,
    /// Which of `pipes` is being filled.
    cur: usize,
    /// File offset of the first pending byte.
    start: u64,
    bufs: Vec<Bytes>,
    buf_len: usize,
    piped: u64,
    discard: u64,
}

impl Batch {
    fn new(start: u64, pipes: Option<Arc<Pipes>>) -> Batch {
        Batch {
            pipes,
            cur: 0,
            start,
            bufs: Vec::new(),
            buf_len: 0,
            piped: 0,
            discard: 0,
        }
    }

    fn pipe(&self) -> Option<&Pipe> {
        self.pipes.as_deref().map(|p| &p[self.cur])
    }

    fn piped(&self) -> u64 {
        self.piped
    }

    fn full(&self, batch: usize) -> bool {
        self.buf_len >= batch
            || self
                .pipe()
                .is_some_and(|p| self.piped as usize >= p.capacity())
    }

    /// Largest splice that fits in what is left of the pipe.
    fn splice_size(&self) -> usize {
        self.pipe()
            .map_or(0, |p| p.capacity())
            .saturating_sub((self.piped + self.discard) as usize)
            .max(4096)
    }

    /// The pipe is full and holds bytes the writer has not been told about.
    fn must_flush_for_room(&self) -> bool {
        self.piped + self.discard > 0 && self.pipe().is_some_and(|p| !p.has_room())
    }

    /// Adds the first `take` bytes of `piece`, which start at file offset
    /// `at`; spliced bytes beyond `take` are dropped from the pipe.
    fn add(&mut self, piece: Piece, at: u64, take: u64) {
        if take > 0 && self.buf_len == 0 && self.piped == 0 {
            self.start = at;
        }
        match piece {
            Piece::Data(d) if take > 0 => {
                debug_assert_eq!(self.piped, 0, "frames never follow spliced bytes unflushed");
                let len = d.len() as u64;
                self.bufs.push(if take == len {
                    d
                } else {
                    d.slice(..take as usize)
                });
                self.buf_len += take as usize;
            }
            Piece::Piped(n) => {
                self.piped += take;
                self.discard += n as u64 - take;
            }
            _ => {}
        }
    }

    async fn flush(&mut self, job: &Job) -> Result<(), Failure> {
        let fatal = |_| Failure::Fatal(job.storage_error());
        if self.buf_len > 0 {
            let bufs = std::mem::take(&mut self.bufs);
            job.writer.write(self.start, bufs).await.map_err(fatal)?;
            self.start += self.buf_len as u64;
            self.buf_len = 0;
        }
        #[cfg(target_os = "linux")]
        if self.piped + self.discard > 0
            && let Some(pipes) = &self.pipes
        {
            job.writer
                .write_piped(self.start, self.piped, self.discard, &pipes[self.cur])
                .await
                .map_err(fatal)?;
            self.start += self.piped;
            self.piped = 0;
            self.discard = 0;
            self.cur ^= 1;
        }
        Ok(())
    }
}
