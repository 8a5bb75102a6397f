//! One connection slot: takes a region from the scheduler and fetches it with
//! successive bounded range requests over one keep-alive connection.
//!
//! On our own HTTP/1.1 client (plain http, and HTTPS without `--http2`) the
//! next request goes out when the current answer is half read
//! (pipelining), so a distant server streams one range after the other
//! with no round trip of silence between them; hyper's client sends one
//! request at a time.
//!
//! Every answer is checked before a byte of it is written ([`super::answer`]).
//! Bytes are claimed from the slot's region piece by piece, so a region cut
//! short by a thief stops the stream at the cut. Every await on the network
//! races the slot's wake-up (preemption, Ctrl-C) or a timeout.

use std::ops::Range;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use http::Response;
use http_body_util::BodyExt;
use tokio::sync::futures::Notified;
use url::Url;

use super::answer::{Refusal, check};
use super::error::Error;
use super::limit;
use super::receive::{Batch, Piece, Pipes, can_splice, new_pipes, next_piece};
use super::scheduler::{Assignment, Preempt, Slot, scaled_request_size};
use super::shared::Job;
use crate::client::classify::status_failure;
use crate::client::request::head_ahead;
use crate::client::{Backoff, ByteRange, Failure, FailureKind, Fetched, Source, Stop, fetch};
use crate::net::{Body, Conn};

/// How long the end of a body may take once every requested byte of it
/// has arrived; see [`Worker::end_of_body`].
const END_OF_BODY_WAIT: Duration = Duration::from_secs(1);

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

/// What the slot does next.
enum Next {
    Go,
    Stop,
}

/// An answer to stream: what it answers and where it came from.
struct Answer {
    response: Response<Body>,
    req: Range<u64>,
    generation: u64,
    redirected: bool,
    url: Url,
    reused: bool,
}

struct Worker {
    job: Arc<Job>,
    source: Arc<Source>,
    slot: Arc<Slot>,
    conn: Option<Conn>,
    counted_live: bool,
    /// Left because the adaptive count went down; `live_slots` already
    /// counts it out.
    retired: bool,
    /// Failures in a row without a byte received in between, and the waits.
    backoff: Backoff,
    progressed: bool,
    /// Carry spliced bodies to the writer, taking turns (see
    /// [`super::receive`]); kept across requests, dropped after a failure in
    /// case bytes in them were not accounted for.
    pipes: Option<Arc<Pipes>>,
    /// Goes with the connection: a new one has nothing pending.
    ahead: Option<Ahead>,
}

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
        backoff: Backoff::new(job.retry.clone(), job.cancel.clone()),
        job,
        source: source.clone(),
        slot,
        conn: None,
        counted_live: false,
        retired: false,
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
        loop {
            if let Next::Stop = self.ready().await {
                return;
            }
            let answer = match first.take() {
                Some(f) => Ok(self.first_answer(f)),
                None => match self.next_answer().await {
                    Some(a) => a,
                    None => continue,
                },
            };
            let next = match answer {
                Ok(a) => self.take(a).await,
                Err((failure, generation)) => self.on_failure(failure, generation).await,
            };
            if let Next::Stop = next {
                return;
            }
        }
    }

    /// Before each request: stop, leave, wait for work, or go on.
    async fn ready(&mut self) -> Next {
        let job = self.job.clone();
        if job.cancel.is_cancelled() {
            return Next::Stop;
        }
        match self.slot.take_preempt() {
            Preempt::Cancel => return Next::Stop,
            Preempt::RegionLost | Preempt::Reconnect | Preempt::Stalled => self.set_conn(None),
            Preempt::None => {}
        }
        if self.source.is_dead() {
            job.sched.release(&self.slot);
            return Next::Stop;
        }
        if !self.slot.has_work() {
            match job.sched.assign(&self.slot) {
                Assignment::Done => return Next::Stop,
                Assignment::Work(_) => {}
                Assignment::Wait => {
                    // Nothing to take: keep no idle connection open to the server.
                    self.set_conn(None);
                    tokio::select! {
                        _ = job.sched.changed.notified() => {}
                        _ = self.slot.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        _ = job.cancel.cancelled() => return Next::Stop,
                    }
                    return Box::pin(self.ready()).await;
                }
            }
        }
        // After 429/503 a source carries fewer connections: extra slots leave.
        if self.source.active() > self.source.conn_limit() && job.live_slots.load(Relaxed) > 1 {
            tracing::debug!("slot {} leaves: connection limit lowered", self.slot.id);
            job.sched.release(&self.slot);
            return Next::Stop;
        }
        // The adaptive count went down: as many slots leave as it says.
        if job.retire_one() {
            tracing::debug!(
                "slot {} leaves: fewer connections did as well",
                self.slot.id
            );
            self.retired = true;
            job.sched.release(&self.slot);
            return Next::Stop;
        }
        Next::Go
    }

    /// The probe's answer, read on by this slot.
    fn first_answer(&mut self, f: FirstResponse) -> Answer {
        self.set_conn(Some(f.conn));
        let (url, generation) = self.source.current();
        Answer {
            response: f.response,
            req: f.range,
            generation,
            redirected: self.source.is_redirected(),
            url,
            reused: false,
        }
    }

    /// The answer to the slot's next request: the one sent ahead when it
    /// still starts where the region does, else a new request. `None` when
    /// there is nothing to ask for now; `Some(Err)` for a failed request.
    async fn next_answer(&mut self) -> Option<Result<Answer, (Failure<Error>, u64)>> {
        let source = self.source.clone();
        let reused = self.conn.is_some();
        let ahead = self.ahead.take().filter(|a| {
            self.conn.as_ref().is_some_and(|c| c.has_answer_pending())
                && a.range.start == self.slot.region().start
        });
        let mut conn = self.conn.take();
        let (req, generation, r) = match ahead {
            Some(a) => {
                let r = self.receive_ahead(a.url, &mut conn).await?;
                (a.range, a.generation, r)
            }
            None => {
                let Some(req) = self.slot.next_request(scaled_request_size(
                    self.slot.rate(),
                    source.ttfb(),
                    source.request_scale(),
                )) else {
                    self.set_conn(conn);
                    return None;
                };
                let (url, generation) = source.current();
                let if_range = self.job.if_range_for(&source);
                let request = source.request(&url, Some(ByteRange::of(&req)), if_range.as_deref());
                // A server that went silent must not hold up Ctrl-C for the
                // response timeout.
                let r = self
                    .backoff
                    .attempt(fetch(&self.job.net, request, &mut conn))
                    .await
                    .ok()?;
                if let Ok(f) = &r {
                    source.record_ttfb(f.ttfb);
                }
                (req, generation, r)
            }
        };
        self.set_conn(conn);
        let f = match r {
            Ok(f) => f,
            Err(failure) => {
                let failure = failure.map_fatal(|e| Error::from_client(e, source.ident()));
                return Some(Err((failure, generation)));
            }
        };
        Some(self.checked_source(f, req, generation, reused))
    }

    /// The answer to the request sent ahead; `None` when the download stops
    /// meanwhile.
    async fn receive_ahead(
        &self,
        url: Url,
        conn: &mut Option<Conn>,
    ) -> Option<Result<Fetched, Failure>> {
        self.backoff
            .attempt(self.source.receive_ahead(url, conn))
            .await
            .ok()
    }

    /// Where the answer came from, and the caller's identity check when it
    /// began at the source's own URL.
    fn checked_source(
        &mut self,
        f: Fetched,
        req: Range<u64>,
        generation: u64,
        reused: bool,
    ) -> Result<Answer, (Failure<Error>, u64)> {
        let source = &self.source;
        if !f.hops.is_empty() {
            source.set_resolved(f.url.clone());
        }
        let redirected = f.url != source.original;
        let from_source = !f.hops.is_empty() || !redirected;
        if let Some(c) = &self.job.source_check
            && from_source
            && let Err(e) = c.verify(source, &f)
        {
            self.set_conn(None);
            return Err((Failure::Fatal(e), generation));
        }
        Ok(Answer {
            response: f.response,
            req,
            generation,
            redirected,
            url: f.url,
            reused,
        })
    }

    /// Checks an answer and streams it into storage.
    async fn take(&mut self, a: Answer) -> Next {
        let job = self.job.clone();
        let source = self.source.clone();
        if let Err(refusal) = check(&job, &source, &a.response, &a.req) {
            let failure = match refusal {
                Refusal::Failed(f) => f,
                Refusal::Status => {
                    let url = source.current().0;
                    status_failure(a.response, &url, a.redirected, source.named())
                        .await
                        .map_fatal(|e| Error::from_client(e, source.ident()))
                }
            };
            self.set_conn(None);
            return self.on_failure(failure, a.generation).await;
        }
        job.sched.transfer_started(&self.slot, !a.reused);
        match self.stream(a.response, &a.req, &a.url, a.generation).await {
            Ok(StreamEnd::Complete) => Next::Go,
            Ok(StreamEnd::Abandoned) => {
                self.set_conn(None);
                Next::Go
            }
            Ok(StreamEnd::Cancelled) => Next::Stop,
            Err(failure) => {
                self.set_conn(None);
                self.pipes = None;
                self.on_failure(failure, a.generation).await
            }
        }
    }

    /// Streams the body of a validated 206 into storage.
    async fn stream(
        &mut self,
        response: Response<Body>,
        req: &Range<u64>,
        url: &Url,
        generation: u64,
    ) -> Result<StreamEnd, Failure<Error>> {
        let job = self.job.clone();
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
        // Under a bandwidth cap each read is booked first: how much, and
        // when it may be taken in.
        let cap_piece = limit::piece(&job.limits);
        let mut booking: Option<(usize, Option<std::time::Instant>)> = None;
        let end = loop {
            if batch.must_flush_for_room() {
                batch.flush(&job).await?;
            }
            let max = cap_piece.map_or(batch.splice_size(), |c| c.min(batch.splice_size()));
            let (booked, at) = *booking.get_or_insert_with(|| (max, limit::book(&job.limits, max)));
            let piece = tokio::select! {
                biased;
                _ = &mut woken => {
                    match self.woken(&mut batch).await? {
                        Some(end) => break end,
                        None => {
                            woken.set(slot.wake.notified());
                            woken.as_mut().enable();
                            continue;
                        }
                    }
                }
                p = async {
                    limit::until(at).await;
                    next_piece(&mut body, batch.pipe(), booked).await
                } => p,
            };
            booking = None;
            limit::settle(&job.limits, booked, piece.bytes());
            if let Some(end) = self
                .take_piece(&mut batch, piece, &mut expected, req)
                .await?
            {
                break end;
            }
            if ahead_at.is_some_and(|at| expected >= at) && expected < req.end {
                ahead_at = None;
                self.send_ahead(&mut body, url, req.end, generation).await;
            }
            if expected == req.end {
                break self.end_of_body(&mut body, woken.as_mut()).await;
            }
        };
        if let Some((booked, _)) = booking {
            limit::settle(&job.limits, booked, 0);
        }
        batch.flush(&job).await?;
        Ok(end)
    }

    /// Takes in one piece of the answer to `req`, whose bytes so far reach
    /// `expected`. `Some` when the stream ends here.
    async fn take_piece(
        &mut self,
        batch: &mut Batch,
        piece: Piece,
        expected: &mut u64,
        req: &Range<u64>,
    ) -> Result<Option<StreamEnd>, Failure<Error>> {
        let job = self.job.clone();
        let done = *expected - req.start;
        let len = match piece {
            Piece::End if *expected < req.end && self.slot.region().start < req.end => {
                batch.flush(&job).await?;
                let detail = format!(
                    "the connection closed after {done} of {} bytes",
                    req.end - req.start
                );
                return Err(Failure::retry(FailureKind::Network, detail));
            }
            Piece::End => return Ok(Some(StreamEnd::Complete)),
            Piece::Failed(e) => {
                batch.flush(&job).await?;
                let detail = format!("receiving failed after {done} bytes: {e}");
                return Err(Failure::retry(FailureKind::Network, detail));
            }
            Piece::Data(ref d) => d.len() as u64,
            Piece::Piped(n) => n as u64,
        };
        if len == 0 {
            return Ok(None);
        }
        if *expected + len > req.end {
            // Spliced bytes past the request are in the pipe: drop them.
            batch.add(piece, *expected, 0);
            batch.flush(&job).await?;
            return Err(Failure::retry(
                FailureKind::BadResponse,
                "the server sent more bytes than the range asked for",
            ));
        }
        if matches!(piece, Piece::Data(_)) && batch.piped() > 0 {
            batch.flush(&job).await?;
        }
        let take = self.claim(batch, piece, *expected, len).await?;
        *expected += take;
        // The region ended inside this piece: stolen, or taken over.
        Ok((take < len).then_some(StreamEnd::Abandoned))
    }

    /// The slot was woken while reading: what the preemption means for the
    /// stream (`None`: nothing, read on).
    async fn woken(&mut self, batch: &mut Batch) -> Result<Option<StreamEnd>, Failure<Error>> {
        Ok(match self.slot.take_preempt() {
            Preempt::Cancel => Some(StreamEnd::Cancelled),
            Preempt::RegionLost | Preempt::Reconnect => Some(StreamEnd::Abandoned),
            // Bytes came since the last stall or failure: a slow patch, not a
            // server that always stalls here. Reconnect without counting,
            // but only once.
            Preempt::Stalled if std::mem::take(&mut self.progressed) => Some(StreamEnd::Abandoned),
            Preempt::Stalled => {
                batch.flush(&self.job).await?;
                return Err(Failure::retry(
                    FailureKind::Timeout,
                    "no data arrived for too long; reconnecting",
                ));
            }
            Preempt::None => None,
        })
    }

    /// Claims the `len` bytes of `piece` (at file offset `at`) from the
    /// slot's region and batches what it got; returns how many.
    async fn claim(
        &mut self,
        batch: &mut Batch,
        piece: Piece,
        at: u64,
        len: u64,
    ) -> Result<u64, Failure<Error>> {
        let job = &self.job;
        let (claimed_at, take) = self.slot.claim(len);
        debug_assert!(
            take == 0 || claimed_at == at,
            "claim at {claimed_at}, expected {at}"
        );
        batch.add(piece, claimed_at, take);
        if take == 0 {
            return Ok(0);
        }
        job.sched.received(&self.slot, take);
        job.progress.add_received(take);
        self.source.bytes.fetch_add(take, Relaxed);
        if job.sched.is_done() {
            job.progress.all_received();
        }
        if !self.progressed {
            self.progressed = true;
            self.backoff.progressed();
        }
        if batch.full(job.batch) {
            batch.flush(job).await?;
        }
        Ok(take)
    }

    /// Reads the end of a body whose requested bytes are all in, so the
    /// connection can be reused. A server that announced more than it sends
    /// (a Content-Length too large, a chunked body without its last chunk)
    /// gets [`END_OF_BODY_WAIT`], then the connection goes; the data is kept,
    /// it was complete and checked. A stop or preemption ends the wait.
    async fn end_of_body(&self, body: &mut Body, woken: Pin<&mut Notified<'_>>) -> StreamEnd {
        tokio::select! {
            biased;
            _ = woken => match self.slot.take_preempt() {
                Preempt::Cancel => StreamEnd::Cancelled,
                _ => StreamEnd::Abandoned,
            },
            frame = body.frame() => match frame {
                None => StreamEnd::Complete,
                Some(_) => StreamEnd::Abandoned,
            },
            _ = tokio::time::sleep(END_OF_BODY_WAIT) => {
                tracing::debug!(
                    "slot {}: the body did not end after its last requested byte; dropping the connection",
                    self.slot.id
                );
                StreamEnd::Abandoned
            }
        }
    }

    /// Sends the request for the bytes after `from` (the end of the request
    /// being read) on `body`'s connection. Best effort: when it cannot be
    /// sent, the next request goes out after this answer as usual.
    async fn send_ahead(&mut self, body: &mut Body, url: &Url, from: u64, generation: u64) {
        let Body::Plain(plain) = body else { return };
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        let (job, source) = (&self.job, &self.source);
        if !source.pipelines() {
            return;
        }
        let Some(range) = self.slot.request_after(
            from,
            scaled_request_size(self.slot.rate(), source.ttfb(), source.request_scale()),
        ) else {
            return;
        };
        let if_range = job.if_range_for(source);
        let req = source.request(url, Some(ByteRange::of(&range)), if_range.as_deref());
        let Some(head) = head_ahead(&job.net, req, conn, url) else {
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

    /// The pipes to splice `body` through, when it can be spliced.
    fn pipes_for(&mut self, body: &Body) -> Option<Arc<Pipes>> {
        if !can_splice(body) {
            return None;
        }
        if self.pipes.is_none() {
            self.pipes = new_pipes();
        }
        self.pipes.clone()
    }

    /// Handles a failed request made at resolve `generation`.
    async fn on_failure(&mut self, failure: Failure<Error>, generation: u64) -> Next {
        let job = self.job.clone();
        let source = self.source.clone();
        self.set_conn(None);
        match failure {
            Failure::Fatal(e) => {
                job.source_failed(&self.slot, e);
                Next::Stop
            }
            Failure::Expired { .. } if source.expire(generation) => Next::Go,
            Failure::Expired { detail, status } => {
                let hint = format!(
                    "; the redirect target refused every fresh URL: resolved again {} times in a row without receiving any data ({detail})",
                    crate::client::source::MAX_FRUITLESS_RERESOLVES
                );
                let e = Error::Auth {
                    url: source.ident(),
                    status,
                    hint,
                };
                job.source_failed(&self.slot, e);
                Next::Stop
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
                    self.backoff.progressed();
                }
                let attempt = self.backoff.failures() + 1;
                tracing::info!(
                    "{} (slot {}): {detail}; attempt {attempt} failed",
                    source.named(),
                    self.slot.id,
                );
                job.record_failure(source.id, kind, &detail, status, attempt);
                if overloaded {
                    source.lower_conn_limit();
                }
                // A connection that was delivering retries at once; repeated
                // failures back off (full jitter), never below Retry-After.
                let at_once = had_progress && retry_after.is_none() && !overloaded;
                match self.backoff.failed(retry_after, at_once).await {
                    Ok(()) => Next::Go,
                    Err(Stop::Cancelled) => Next::Stop,
                    Err(Stop::Exhausted { .. }) => {
                        job.slot_gave_up(&self.slot);
                        Next::Stop
                    }
                }
            }
        }
    }
}
