//! Per-connection state: the pacing schedule shared by every response on a
//! TCP connection, and the machinery that cuts a connection at an exact body
//! offset (reset or truncate faults).
//!
//! # How an exact cut works
//!
//! hyper owns the socket while it serves, so a body cannot close it. The
//! body instead stops producing data at the cut point and *asks* for the
//! cut. The I/O wrapper (`ConnIo`) watches flushes: the first successful
//! flush after the request means every byte hyper buffered (the body up to
//! the cut) is in the kernel. The connection task then finishes the job on
//! the raw socket: for a reset it waits for the kernel send queue to drain
//! (so the client really received the bytes before the RST), sets
//! `SO_LINGER` to 0 and closes; for a truncate it shuts down the write side
//! (FIN after the data) and closes a little later.
//!
//! For HTTP/2 the cut applies to the whole connection, and a DATA frame held
//! back by the client's flow-control window can be lost with it; the cut
//! point is exact only for HTTP/1.1.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::sync::lock;

/// How a connection is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CutKind {
    /// Abrupt close: RST.
    Reset,
    /// Clean close: FIN.
    Truncate,
}

/// How far a schedule may fall behind real time and still catch up: the
/// bucket depth. Enough to absorb a late timer or a server thread that
/// lost the CPU for a moment (the machine is shared), small enough that a
/// pause is not followed by a noticeable burst.
const SCHEDULE_SLACK: Duration = Duration::from_millis(20);

/// A send schedule: the earliest instant the next chunk may leave. Rate
/// limiting by schedule rather than by sleeping a fixed time per chunk
/// means timer lateness does not accumulate, so the long-run rate is exact.
#[derive(Debug)]
pub(crate) struct Schedule(Mutex<Instant>);

impl Schedule {
    pub(crate) fn new() -> Schedule {
        Schedule(Mutex::new(Instant::now()))
    }

    /// Books `n` bytes at `rate` bytes/s and returns when they may be sent.
    /// Idle time earns at most `SCHEDULE_SLACK` of credit.
    pub(crate) fn reserve(&self, n: usize, rate: u64) -> Instant {
        let now = Instant::now();
        let floor = now.checked_sub(SCHEDULE_SLACK).unwrap_or(now);
        let mut next = lock(&self.0);
        let start = (*next).max(floor);
        let nanos = (n as u128 * 1_000_000_000 / u128::from(rate.max(1))) as u64;
        *next = start + Duration::from_nanos(nanos);
        start
    }
}

/// State shared between a connection's task, its I/O wrapper and the
/// bodies of the responses sent on it.
#[derive(Debug)]
pub(crate) struct ConnState {
    /// Accept order, from 0.
    pub(crate) serial: u64,
    pub(crate) peer: SocketAddr,
    /// The server name the client sent in its TLS ClientHello (SNI).
    pub(crate) sni: OnceLock<String>,
    /// The per-connection token bucket for `throttle`/`slow_connections`.
    pub(crate) schedule: Schedule,
    cut: Mutex<Option<CutKind>>,
    cut_wanted: AtomicBool,
    cut_ready: Notify,
    /// Bytes written that the kernel still held at the last write (not
    /// yet sent or acknowledged); see `Stats::bytes_delivered`.
    pub(crate) in_kernel: std::sync::atomic::AtomicU64,
}

impl ConnState {
    pub(crate) fn new(serial: u64, peer: SocketAddr) -> ConnState {
        ConnState {
            serial,
            peer,
            sni: OnceLock::new(),
            schedule: Schedule::new(),
            cut: Mutex::new(None),
            cut_wanted: AtomicBool::new(false),
            cut_ready: Notify::new(),
            in_kernel: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Called by a body that reached its cut point. The first request wins.
    pub(crate) fn request_cut(&self, kind: CutKind) {
        let mut cut = lock(&self.cut);
        if cut.is_none() {
            *cut = Some(kind);
            self.cut_wanted.store(true, Ordering::Release);
        }
    }

    /// Resolves once a cut was requested and everything before it flushed.
    pub(crate) async fn cut_ready(&self) -> CutKind {
        loop {
            self.cut_ready.notified().await;
            if let Some(kind) = *lock(&self.cut) {
                return kind;
            }
        }
    }
}

/// A plain or TLS server stream.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The stream hyper sees: passes everything through, counts what it
/// writes, and signals the connection task when a requested cut has been
/// flushed.
pub(crate) struct ConnIo {
    pub(crate) inner: Stream,
    pub(crate) state: std::sync::Arc<ConnState>,
    /// Bytes written into the socket, for all connections of the server.
    pub(crate) written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// This connection's socket, to read how much of it the kernel holds.
    pub(crate) sock: RawSock,
}

impl ConnIo {
    /// Counts a write, and notes what the kernel still holds of this
    /// connection's writes. Read here, in the connection's own task, where
    /// the socket is surely open.
    fn count(&self, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = r {
            self.written.fetch_add(n as u64, Ordering::Relaxed);
            let held = self.sock.unsent().unwrap_or(0) as u64;
            self.state.in_kernel.store(held, Ordering::Relaxed);
        }
        r
    }
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        // Gone with the socket: nothing of it is held any more.
        self.state.in_kernel.store(0, Ordering::Relaxed);
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.count(r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.count(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_flush(cx);
        if matches!(res, Poll::Ready(Ok(()))) && this.state.cut_wanted.load(Ordering::Acquire) {
            this.state.cut_ready.notify_one();
        }
        res
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The raw socket, for the few operations hyper gives no access to while it
/// owns the stream. Valid as long as the connection (which owns the fd) is
/// alive; the connection task guarantees that by calling these first.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawSock(#[cfg(unix)] std::os::fd::RawFd);

impl RawSock {
    pub(crate) fn of(stream: &TcpStream) -> RawSock {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            RawSock(stream.as_raw_fd())
        }
        #[cfg(not(unix))]
        {
            let _ = stream;
            RawSock()
        }
    }

    /// Bytes the kernel still holds for sending (unsent or unacknowledged).
    /// `None` where the platform cannot tell.
    pub(crate) fn unsent(self) -> Option<usize> {
        #[cfg(target_os = "linux")]
        {
            let mut n: libc::c_int = 0;
            // SAFETY: the fd is open (see the type's invariant) and TIOCOUTQ
            // (= SIOCOUTQ for sockets) writes one c_int.
            let rc = unsafe { libc::ioctl(self.0, libc::TIOCOUTQ, &mut n) };
            (rc == 0).then_some(n.max(0) as usize)
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }

    /// Waits (up to `limit`) until the client has received everything sent,
    /// so that a following RST does not destroy data still in flight.
    pub(crate) async fn drain_send_queue(self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            match self.unsent() {
                Some(0) => return,
                None => {
                    // Cannot observe the queue: give loopback a moment.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    return;
                }
                Some(_) if Instant::now() >= deadline => return,
                Some(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }

    /// Makes the coming close send RST instead of FIN.
    pub(crate) fn set_abortive_close(self) {
        #[cfg(unix)]
        {
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: the fd is open, and we pass a valid `linger` with its
            // exact size.
            unsafe {
                libc::setsockopt(
                    self.0,
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        }
    }

    /// Sends FIN after the queued data; reading stays possible.
    pub(crate) fn shutdown_write(self) {
        #[cfg(unix)]
        // SAFETY: the fd is open; shutdown takes no pointers.
        unsafe {
            libc::shutdown(self.0, libc::SHUT_WR);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_books_back_to_back() {
        let s = Schedule::new();
        let t0 = s.reserve(1000, 1000); // 1 s worth
        let t1 = s.reserve(500, 1000);
        let t2 = s.reserve(500, 1000);
        assert_eq!(t1 - t0, Duration::from_secs(1));
        assert_eq!(t2 - t1, Duration::from_millis(500));
        // After a pause, at most SCHEDULE_SLACK of credit.
        let idle = Schedule(Mutex::new(Instant::now() - Duration::from_secs(5)));
        let t = idle.reserve(1, 1000);
        assert!(t + SCHEDULE_SLACK + Duration::from_millis(5) >= Instant::now());
    }
}
