//! Response bodies: a small fixed body, or a file body that produces its
//! bytes on demand and applies the per-response faults (pacing, stall, cut,
//! corruption) as it goes.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hyper::body::{Frame, SizeHint};
use tokio::time::Sleep;

use super::conn::{ConnState, CutKind, Schedule};
use super::server::{FileEntry, PathCounters, StatsInner};
use super::spec::Body;

/// Largest body frame. Big frames keep per-frame overhead (allocation,
/// syscalls) small; 256 KiB lets hyper hand the kernel large writes.
pub(crate) const MAX_FRAME: usize = 256 << 10;

/// Pacing granularity: a paced body sends one slice of this many
/// milliseconds' worth of bytes at a time.
const PACE_SLICE_MS: u64 = 10;

/// Counts the bytes a body sends, wherever they need counting, and tracks
/// the transfer in `current_transfers`/`peak_transfers` until it ends.
pub(crate) struct Meter {
    stats: Arc<StatsInner>,
    path: Arc<PathCounters>,
    request: Arc<AtomicU64>,
    file: Option<Arc<FileEntry>>,
    open: bool,
}

impl Meter {
    /// Starts a transfer when `has_body`; a bodiless answer is counted as
    /// a request only.
    pub(crate) fn new(
        stats: Arc<StatsInner>,
        path: Arc<PathCounters>,
        request: Arc<AtomicU64>,
        file: Option<Arc<FileEntry>>,
        has_body: bool,
    ) -> Meter {
        if has_body {
            stats.transfer_started();
        }
        Meter {
            stats,
            path,
            request,
            file,
            open: has_body,
        }
    }

    fn count(&self, n: u64) {
        self.stats.bytes_served.fetch_add(n, Ordering::Relaxed);
        self.path.bytes_served.fetch_add(n, Ordering::Relaxed);
        self.request.fetch_add(n, Ordering::Relaxed);
        if let Some(file) = &self.file {
            file.add_served(n);
        }
    }

    /// Ends the transfer (idempotent): at the last byte, at a cut or stall
    /// forever, or when hyper drops the body.
    fn close(&mut self) {
        if std::mem::take(&mut self.open) {
            self.stats.transfer_ended();
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.close();
    }
}

/// Every response body the server sends.
pub(crate) enum ServerBody {
    Empty,
    Full(Option<Bytes>, Meter),
    Paced(Box<Paced>),
    File(Box<FileBody>),
}

/// A fixed body sent at a pace (a handler's slow answer).
pub(crate) struct Paced {
    data: Bytes,
    pos: usize,
    slice: usize,
    sleep: Option<Pin<Box<Sleep>>>,
    meter: Meter,
}

impl Paced {
    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(s) = &mut self.sleep {
            if s.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        if self.pos >= self.data.len() {
            self.meter.close();
            return Poll::Ready(None);
        }
        let n = self.slice.min(self.data.len() - self.pos);
        let d = self.data.slice(self.pos..self.pos + n);
        self.pos += n;
        self.meter.count(n as u64);
        self.sleep = Some(Box::pin(tokio::time::sleep(Duration::from_millis(
            PACE_SLICE_MS,
        ))));
        Poll::Ready(Some(Ok(Frame::data(d))))
    }
}

impl ServerBody {
    pub(crate) fn paced(data: Bytes, rate: u64, meter: Meter) -> ServerBody {
        let slice = (rate * PACE_SLICE_MS / 1000).max(1) as usize;
        ServerBody::Paced(Box::new(Paced {
            data,
            pos: 0,
            slice,
            sleep: None,
            meter,
        }))
    }

    pub(crate) fn full(data: Bytes, meter: Meter) -> ServerBody {
        if data.is_empty() {
            ServerBody::Empty
        } else {
            ServerBody::Full(Some(data), meter)
        }
    }
}

impl hyper::body::Body for ServerBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ServerBody::Empty => Poll::Ready(None),
            ServerBody::Full(data, meter) => match data.take() {
                Some(d) => {
                    meter.count(d.len() as u64);
                    meter.close();
                    Poll::Ready(Some(Ok(Frame::data(d))))
                }
                None => Poll::Ready(None),
            },
            ServerBody::Paced(p) => p.poll_next(cx),
            ServerBody::File(f) => f.poll_next(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ServerBody::Empty => true,
            ServerBody::Full(data, _) => data.is_none(),
            ServerBody::Paced(p) => p.pos >= p.data.len(),
            ServerBody::File(f) => f.pos >= f.end && f.booked.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ServerBody::Empty => SizeHint::with_exact(0),
            ServerBody::Full(data, _) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ServerBody::Paced(p) => SizeHint::with_exact((p.data.len() - p.pos) as u64),
            ServerBody::File(f) if f.chunked => SizeHint::default(),
            ServerBody::File(f) => SizeHint::with_exact(f.end - f.pos),
        }
    }
}

/// How a file body is paced.
pub(crate) enum Pace {
    /// At `rate` bytes/s on the connection's shared schedule.
    Connection(u64),
    /// At `rate` bytes/s on this response's own schedule (drip).
    Own(Schedule, u64),
}

/// The body of a 200/206 file answer: bytes `pos..end` of `source`, with
/// the faults picked for this response.
pub(crate) struct FileBody {
    pub(crate) source: Body,
    /// Next file offset to send.
    pub(crate) pos: u64,
    /// End of the range sent (exclusive).
    pub(crate) end: u64,
    /// Body bytes sent so far.
    pub(crate) sent: u64,
    /// No `Content-Length`: HTTP/1.1 falls back to chunked encoding.
    pub(crate) chunked: bool,
    /// File offset whose byte is inverted.
    pub(crate) corrupt: Option<u64>,
    /// Stop at this file offset; resume after the duration, or never.
    pub(crate) stall: Option<(u64, Option<Duration>)>,
    /// Cut the connection after this many body bytes.
    pub(crate) cut: Option<(u64, CutKind)>,
    pub(crate) pace: Option<Pace>,
    pub(crate) conn: Arc<ConnState>,
    pub(crate) meter: Meter,
    /// A timer we wait on before continuing (pacing or a timed stall).
    pub(crate) sleep: Option<Pin<Box<Sleep>>>,
    /// A paced slice already booked on the schedule, sent when `sleep` ends.
    pub(crate) booked: Option<usize>,
    /// Stalled forever or cut: never produce anything again.
    pub(crate) halted: bool,
}

impl FileBody {
    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            if self.halted {
                // Nothing will wake us, on purpose: the connection stays
                // open and silent until the client or the server gives up.
                return Poll::Pending;
            }
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            if let Some(n) = self.booked.take() {
                return Poll::Ready(Some(Ok(Frame::data(self.emit(n)))));
            }
            if self.pos >= self.end {
                self.meter.close();
                return Poll::Ready(None);
            }
            if let Some((after, kind)) = self.cut
                && self.sent >= after
            {
                self.halted = true;
                self.meter.close();
                self.conn.request_cut(kind);
                return Poll::Pending;
            }
            if let Some((at, resume)) = self.stall
                && self.pos == at
            {
                self.stall = None;
                match resume {
                    None => {
                        self.halted = true;
                        self.meter.close();
                        return Poll::Pending;
                    }
                    Some(d) => {
                        self.sleep = Some(Box::pin(tokio::time::sleep(d)));
                        continue;
                    }
                }
            }

            let mut n = (self.end - self.pos).min(MAX_FRAME as u64);
            if let Some((at, _)) = self.stall
                && at > self.pos
            {
                n = n.min(at - self.pos);
            }
            if let Some((after, _)) = self.cut {
                n = n.min(after - self.sent);
            }
            let n = n as usize;
            let Some(pace) = &self.pace else {
                return Poll::Ready(Some(Ok(Frame::data(self.emit(n)))));
            };
            let (schedule, rate) = match pace {
                Pace::Connection(rate) => (&self.conn.schedule, *rate),
                Pace::Own(schedule, rate) => (schedule, *rate),
            };
            let slice = (rate.saturating_mul(PACE_SLICE_MS) / 1000).max(1) as usize;
            let n = n.min(slice);
            let when = schedule.reserve(n, rate);
            if when <= Instant::now() {
                return Poll::Ready(Some(Ok(Frame::data(self.emit(n)))));
            }
            self.booked = Some(n);
            self.sleep = Some(Box::pin(tokio::time::sleep_until(when.into())));
        }
    }

    /// Produces the next `n` bytes and does the bookkeeping.
    fn emit(&mut self, n: usize) -> Bytes {
        let mut chunk = self.source.chunk(self.pos, n);
        if let Some(at) = self.corrupt
            && (self.pos..self.pos + n as u64).contains(&at)
        {
            let mut copy = BytesMut::from(&chunk[..]);
            copy[(at - self.pos) as usize] ^= 0xFF;
            chunk = copy.freeze();
            self.corrupt = None;
        }
        self.pos += n as u64;
        self.sent += n as u64;
        self.meter.count(n as u64);
        if self.pos >= self.end {
            self.meter.close();
        }
        chunk
    }
}
