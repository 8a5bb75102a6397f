//! Sending a file that is still arriving from upstream: the bytes already
//! written go at once (by `sendfile`, as any cache file), the rest as they
//! are written.
//!
//! What "written" means is the engine's: a write that returned
//! ([`crate::storage::watch`]). A byte outside that set is never read, so
//! a client never gets the zeros of a reserved but unwritten region. Two
//! things end an answer early (the connection is closed, the client sees
//! a short body and retries): the download starting over (a new
//! generation: what was sent may not be what now arrives), and no new
//! byte for [`Growing::wait`]. When the fetch ends well, the rest is read
//! from the verified blob.

use std::fs::File;
use std::io;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::storage::watch::Written;

/// How a fetch ended, as its waiters see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    Running,
    /// The blob is verified and in place.
    Done,
    Failed(String),
}

/// Opens the fetch's files for reading, by handle below the cache.
pub trait Files: Send + Sync + std::fmt::Debug {
    /// The data file being written.
    fn part(&self) -> Option<File>;
    /// The verified blob.
    fn blob(&self) -> Option<File>;
}

/// A body of `len` bytes from `offset` of a file still arriving.
#[derive(Debug)]
pub struct Growing {
    pub files: Box<dyn Files>,
    pub written: watch::Receiver<Written>,
    pub end: watch::Receiver<End>,
    pub offset: u64,
    pub len: u64,
    /// The longest wait for the next byte.
    pub wait: Duration,
}

fn gone(why: &str) -> io::Error {
    io::Error::other(why.to_string())
}

impl Growing {
    /// Sends the body, waiting for bytes not written yet.
    pub async fn send(mut self, stream: &mut TcpStream) -> io::Result<()> {
        let mut off = self.offset;
        let end = self.offset + self.len;
        // The data file of the generation the bytes sent so far came from.
        let mut open: Option<(u64, File)> = None;
        while off < end {
            let state = self.end.borrow_and_update().clone();
            let (generation, ready) = {
                let w = self.written.borrow_and_update();
                let ready = w
                    .set
                    .iter()
                    .find(|r| r.start <= off && off < r.end)
                    .map_or(off, |r| r.end.min(end));
                (w.generation, ready)
            };
            if let Some((g, _)) = &open
                && *g != generation
            {
                return Err(gone("the upstream download started over"));
            }
            match state {
                End::Failed(why) => return Err(gone(&why)),
                End::Done => {
                    let blob = self.files.blob().ok_or_else(|| gone("the blob is gone"))?;
                    return super::http::send_file(stream, &blob, off, end - off).await;
                }
                End::Running => {}
            }
            if ready > off {
                if open.is_none() {
                    let f = self
                        .files
                        .part()
                        .ok_or_else(|| gone("the partial data is gone"))?;
                    open = Some((generation, f));
                }
                let (_, f) = open.as_ref().expect("opened above");
                super::http::send_file(stream, f, off, ready - off).await?;
                off = ready;
                continue;
            }
            let changed = async {
                tokio::select! {
                    r = self.written.changed() => r.is_ok(),
                    r = self.end.changed() => r.is_ok(),
                }
            };
            match tokio::time::timeout(self.wait, changed).await {
                Ok(true) => {}
                // A sender dropped: fine once the end is known.
                Ok(false) if *self.end.borrow() != End::Running => {}
                Ok(false) => return Err(gone("the upstream download went away")),
                Err(_) => return Err(gone("no byte from upstream in time")),
            }
        }
        Ok(())
    }
}
