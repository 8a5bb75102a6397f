//! A pipe that carries body bytes from a socket to the data file inside the
//! kernel (`splice(2)`), so they are copied once instead of twice.
//!
//! The connection's task splices socket → pipe and then queues a write op
//! naming the pipe; the writer thread splices pipe → file in queue order.
//! Bytes are consumed from a pipe in the order they went in, so the ops of
//! one pipe must be queued in that order too, and every byte put in must be
//! covered by exactly one op (written or discarded).
//!
//! Both splices take the pipe's lock for their whole length, and the
//! writer's includes the copy into the page cache. A connection that fills
//! the pipe the writer is draining therefore spins on that lock (8% of all
//! CPU at 16 connections, measured), so each pipe counts the bytes queued
//! from it and [`Pipe::writable`] waits until none are left before the
//! connection fills it again; a connection keeps two pipes to go on
//! receiving meanwhile.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

/// Asked-for pipe size. Linux lets anyone raise a pipe to 1 MiB
/// (`/proc/sys/fs/pipe-max-size`); the kernel memory a pipe pins is what
/// was spliced in and not yet drained, so a connection's two pipes together
/// pin at most 1 MiB.
const WANTED_SIZE: i32 = 512 << 10;

pub struct Pipe {
    read: Arc<Reader>,
    write: AsyncFd<OwnedFd>,
    capacity: usize,
}

/// The read end, shared with the writer thread, and how many bytes the
/// writer still has to take out of the pipe.
struct Reader {
    fd: OwnedFd,
    queued: AtomicU64,
    drained: Notify,
}

/// Bytes queued from a pipe for the writer. Dropping it, once the op that
/// holds it is done (or thrown away), tells the pipe they are out.
pub struct Queued {
    reader: Arc<Reader>,
    bytes: u64,
}

impl Queued {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.reader.fd.as_fd()
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        if self.reader.queued.fetch_sub(self.bytes, Ordering::AcqRel) == self.bytes {
            self.reader.drained.notify_waiters();
        }
    }
}

impl Pipe {
    /// Must be called inside a tokio runtime.
    pub fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are fresh descriptors we own.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a descriptor we own; failure leaves the default size.
        let capacity = unsafe {
            libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, WANTED_SIZE);
            libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ)
        };
        // SAFETY: the OwnedFd is moved into the AsyncFd and stays open, the
        // same descriptor, for as long as the AsyncFd lives.
        let write = unsafe { AsyncFd::register_with_interest(write, Interest::WRITABLE) }
            .map_err(io::Error::from)?;
        Ok(Pipe {
            read: Arc::new(Reader {
                fd: read,
                queued: AtomicU64::new(0),
                drained: Notify::new(),
            }),
            write,
            capacity: capacity.max(4096) as usize,
        })
    }

    /// Hands the `bytes` at the head of the pipe (those not queued yet) to
    /// whoever drains it; the pipe is not idle until the ticket is dropped.
    pub fn queue(&self, bytes: u64) -> Queued {
        self.read.queued.fetch_add(bytes, Ordering::AcqRel);
        Queued {
            reader: self.read.clone(),
            bytes,
        }
    }

    /// Waits until everything queued from the pipe has been taken out.
    async fn idle(&self) {
        loop {
            let mut drained = pin!(self.read.drained.notified());
            drained.as_mut().enable();
            if self.read.queued.load(Ordering::Acquire) == 0 {
                return;
            }
            drained.await;
        }
    }

    /// The read end, for tests that take bytes out by hand.
    #[cfg(test)]
    pub fn read_end(&self) -> BorrowedFd<'_> {
        self.read.fd.as_fd()
    }

    /// Bytes the pipe can hold when it is made of whole pages.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the pipe has room for at least one more buffer.
    pub fn has_room(&self) -> bool {
        has_room(self.write.get_ref().as_fd())
    }

    /// Waits until the pipe may be filled: the writer has taken out
    /// everything queued from it, and it has room for one more buffer.
    pub async fn writable(&self) -> io::Result<()> {
        self.idle().await;
        loop {
            let mut guard = self.write.writable().await?;
            if has_room(self.write.get_ref().as_fd()) {
                guard.retain_ready();
                return Ok(());
            }
            guard.clear_ready();
        }
    }

    /// One non-blocking `splice` of up to `max` bytes from `socket` into the
    /// pipe. `Ok(0)` is the end of the socket's stream.
    pub fn fill_from(&self, socket: RawFd, max: usize) -> io::Result<usize> {
        // SAFETY: both descriptors are open for the duration of the call;
        // null offsets are what splice wants for a socket and a pipe.
        let n = unsafe {
            libc::splice(
                socket,
                std::ptr::null_mut(),
                self.write.get_ref().as_raw_fd(),
                std::ptr::null_mut(),
                max,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
impl Pipe {
    /// Puts `data` into the pipe the ordinary way (tests stand in for a socket).
    pub fn push(&self, data: &[u8]) {
        // SAFETY: `data` is valid for reads of its length.
        let n = unsafe {
            libc::write(
                self.write.get_ref().as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
            )
        };
        assert_eq!(n, data.len() as isize, "{}", io::Error::last_os_error());
    }
}

fn has_room(fd: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r > 0 && p.revents & libc::POLLOUT != 0
}

/// Moves exactly `len` bytes from `pipe` into `file` at `offset`, in the
/// kernel. The bytes must already be in the pipe. `Err` with
/// `Unsupported` when the file system cannot take spliced writes; the
/// bytes are then still in the pipe.
pub fn drain_to_file(
    pipe: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: u64,
    len: u64,
) -> io::Result<()> {
    let mut off = offset as libc::loff_t;
    let mut left = len;
    while left > 0 {
        // SAFETY: open descriptors; `off` is a valid loff_t the kernel advances.
        let n = unsafe {
            libc::splice(
                pipe.as_raw_fd(),
                std::ptr::null_mut(),
                file.as_raw_fd(),
                &mut off,
                left.min(1 << 30) as usize,
                libc::SPLICE_F_MOVE,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) && left == len {
                return Err(io::Error::new(io::ErrorKind::Unsupported, e));
            }
            return Err(e);
        }
        if n == 0 {
            return Err(short_pipe(len - left, len));
        }
        left -= n as u64;
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes out of `pipe` (already there).
pub fn read_exact(pipe: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: `buf[done..]` is valid writable memory of the given length.
        let n = unsafe {
            libc::read(
                pipe.as_raw_fd(),
                buf[done..].as_mut_ptr().cast(),
                buf.len() - done,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Err(short_pipe(done as u64, buf.len() as u64));
        }
        done += n as usize;
    }
    Ok(())
}

/// Reads the `len` bytes at the head of `pipe` into memory, for sinks (or
/// file systems) that cannot take them spliced.
pub fn read_bytes(pipe: BorrowedFd<'_>, len: u64) -> io::Result<bytes::Bytes> {
    let mut buf = vec![0u8; len as usize];
    read_exact(pipe, &mut buf)?;
    Ok(buf.into())
}

/// Throws away `len` bytes at the head of `pipe` (a region cut short under
/// the stream: the bytes past the cut belong to another connection).
pub fn discard(pipe: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let mut scratch = vec![0u8; len.min(64 << 10) as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(scratch.len() as u64) as usize;
        read_exact(pipe, &mut scratch[..n])?;
        left -= n as u64;
    }
    Ok(())
}

fn short_pipe(got: u64, want: u64) -> io::Error {
    // The pipe held less than its ops said: a bookkeeping bug, never data.
    io::Error::other(format!(
        "pipe held {got} of the {want} bytes queued from it"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn idle_waits_for_every_queued_op_to_be_done() {
        let pipe = Pipe::new().unwrap();
        tokio::time::timeout(Duration::from_secs(5), pipe.idle())
            .await
            .expect("a pipe with nothing queued is idle");
        pipe.push(b"abcdefgh");
        let first = pipe.queue(4);
        let second = pipe.queue(4);
        let mut buf = [0u8; 4];
        read_exact(first.fd(), &mut buf).unwrap();
        assert_eq!(&buf, b"abcd");
        drop(first);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), pipe.idle())
                .await
                .is_err(),
            "idle while an op is still queued"
        );
        let waiter = async { pipe.idle().await };
        let drain = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            read_exact(second.fd(), &mut buf).unwrap();
            drop(second);
        };
        tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(waiter, drain)
        })
        .await
        .expect("idle once the last op is dropped");
        assert_eq!(&buf, b"efgh");
        assert!(pipe.has_room());
    }
}
