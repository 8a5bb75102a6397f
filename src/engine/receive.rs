//! A body's bytes on their way to the writer: spliced socket → pipe →
//! file where the kernel can (plain http with a `Content-Length`, on our
//! own HTTP/1.1 client), else frames in memory, batched so writer calls
//! stay few and large.
//!
//! Two pipes per connection: a slot fills one while the writer drains the
//! other (both splices hold the pipe's lock; sharing one cost 8% of the CPU
//! in spinning on it).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;

use super::error::Error;
use super::shared::Job;
use crate::client::Failure;
use crate::net::Body;
#[cfg(target_os = "linux")]
pub use crate::storage::pipe::Pipe;

/// A connection fills one pipe while the writer drains the other.
pub type Pipes = [Pipe; 2];

/// New pipes for a connection, when the kernel gives them.
#[cfg(target_os = "linux")]
pub fn new_pipes() -> Option<Arc<Pipes>> {
    match Pipe::new().and_then(|a| Ok([a, Pipe::new()?])) {
        Ok(p) => Some(Arc::new(p)),
        Err(e) => {
            tracing::debug!("no pipe, reading through user space: {e}");
            None
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn new_pipes() -> Option<Arc<Pipes>> {
    None
}

/// Whether `body` can be spliced: our own HTTP/1.1 client's answer with a
/// `Content-Length`, on a plain socket.
pub fn can_splice(body: &Body) -> bool {
    cfg!(target_os = "linux")
        && matches!(body, Body::Plain(p) if p.can_splice() && p.remaining().is_some_and(|n| n > 0))
}

/// Stands in where pipes do not exist; never constructed.
#[cfg(not(target_os = "linux"))]
pub struct Pipe;

#[cfg(not(target_os = "linux"))]
impl Pipe {
    pub fn capacity(&self) -> usize {
        0
    }
    pub fn has_room(&self) -> bool {
        true
    }
}

/// The next bit of a body.
pub enum Piece {
    /// Bytes in memory.
    Data(Bytes),
    /// This many bytes went from the socket into the pipe.
    Piped(usize),
    End,
    Failed(String),
}

impl Piece {
    /// The bytes it carries.
    pub fn bytes(&self) -> usize {
        match self {
            Piece::Data(d) => d.len(),
            Piece::Piped(n) => *n,
            Piece::End | Piece::Failed(_) => 0,
        }
    }
}

/// Reads the next piece of `body`: spliced into `pipe` when there is one
/// (at most `max` bytes), else a frame.
pub async fn next_piece(body: &mut Body, pipe: Option<&Pipe>, max: usize) -> Piece {
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
pub struct Batch {
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
    pub fn new(start: u64, pipes: Option<Arc<Pipes>>) -> Batch {
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

    pub fn pipe(&self) -> Option<&Pipe> {
        self.pipes.as_deref().map(|p| &p[self.cur])
    }

    pub fn piped(&self) -> u64 {
        self.piped
    }

    pub fn full(&self, batch: usize) -> bool {
        self.buf_len >= batch
            || self
                .pipe()
                .is_some_and(|p| self.piped as usize >= p.capacity())
    }

    /// Largest splice that fits in what is left of the pipe.
    pub fn splice_size(&self) -> usize {
        self.pipe()
            .map_or(0, |p| p.capacity())
            .saturating_sub((self.piped + self.discard) as usize)
            .max(4096)
    }

    /// The pipe is full and holds bytes the writer has not been told about.
    pub fn must_flush_for_room(&self) -> bool {
        self.piped + self.discard > 0 && self.pipe().is_some_and(|p| !p.has_room())
    }

    /// Adds the first `take` bytes of `piece`, which start at file offset
    /// `at`; spliced bytes beyond `take` are dropped from the pipe.
    pub fn add(&mut self, piece: Piece, at: u64, take: u64) {
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

    pub async fn flush(&mut self, job: &Job) -> Result<(), Failure<Error>> {
        let fatal = |_| Failure::Fatal(job.writer_stopped());
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
