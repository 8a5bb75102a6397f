//! Local storage: where downloaded bytes go and how progress survives a crash.
//!
//! Layout of the layer:
//! - [`Sink`]: a positional byte sink over the partial data file, with two
//!   implementations, [`pwrite::PwriteSink`] (vectored positional writes) and
//!   [`mmap::MmapSink`] (windowed shared mappings);
//! - [`alloc`]: creating the data file, reserving space (fallocate), free-space
//!   checks and directory fsync;
//! - [`folder`]: folders held open, files opened and renamed by name in
//!   them, never through a symbolic link;
//! - [`shared_blobs`]: huggingface_hub's cache-wide store of Xet files, the
//!   one link below a cache that is followed (by handle, its shape exact);
//! - [`control_file`]: the small A/B-slot file next to the data that records
//!   which byte ranges are durably written;
//! - [`writer`]: the writer thread that owns the sink, and the checkpointer that
//!   makes progress durable in the one safe order (data, then control record);
//! - [`watch`]: the written bytes told as they are written, to a reader of
//!   the file still arriving (`hfd serve`).
//!
//! Invariant: a byte range is recorded in the control file only after an
//! `fdatasync` of the data file that started after the range's write returned.

pub mod alloc;
pub mod control_file;
pub mod files;
pub mod folder;
pub mod mmap;
#[cfg(target_os = "linux")]
pub mod pipe;
pub mod pwrite;
pub mod shared_blobs;
#[cfg(test)]
mod testutil;
pub mod watch;
pub mod writer;

use std::fs::File;
use std::io;
use std::path::PathBuf;

use bytes::Bytes;

/// How bytes reach the data file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WriteMode {
    /// `pwritev` from the writer thread (the default: see docs/storage.md).
    #[default]
    Pwrite,
    /// Copies into windowed shared mappings; needs space reserved up front.
    Mmap,
}

impl std::str::FromStr for WriteMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pwrite" => Ok(WriteMode::Pwrite),
            "mmap" => Ok(WriteMode::Mmap),
            _ => Err(format!("unknown write mode {s:?}: use pwrite or mmap")),
        }
    }
}

/// aria2's `--file-allocation` choices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Allocation {
    /// Do not size the file up front; writes extend it.
    None,
    /// `ftruncate` to the full size (a sparse file).
    Trunc,
    /// `fallocate` the full size, so a full disk fails at the start; falls
    /// back to `Trunc` where the file system cannot fallocate.
    #[default]
    Falloc,
}

impl std::str::FromStr for Allocation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Allocation::None),
            "trunc" => Ok(Allocation::Trunc),
            "falloc" | "prealloc" => Ok(Allocation::Falloc),
            _ => Err(format!(
                "unknown file allocation {s:?}: use none, trunc or falloc"
            )),
        }
    }
}

/// A positional byte sink over the data file. Owned by the writer thread.
pub trait Sink: Send + 'static {
    /// Writes `bufs`, which are contiguous, starting at `offset`. Returns only
    /// when every byte is written (or on error).
    fn write_at(&mut self, offset: u64, bufs: &[Bytes]) -> io::Result<()>;

    /// Writes `len` bytes waiting at the head of `pipe` at `offset`. Sinks
    /// that cannot splice read them out and write them like any others.
    #[cfg(target_os = "linux")]
    fn write_from_pipe(
        &mut self,
        pipe: std::os::fd::BorrowedFd<'_>,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        self.write_at(offset, &[pipe::read_bytes(pipe, len)?])
    }

    /// Pushes whatever the sink holds back (mapped dirty pages, buffers) so
    /// that an `fdatasync` of the data file afterwards covers every write that
    /// returned before this call.
    fn flush(&mut self) -> io::Result<()>;
}

/// Opens the sink of the chosen kind over `file`, whose final length is
/// `total` when known.
pub fn open_sink(mode: WriteMode, file: File, total: Option<u64>) -> io::Result<Box<dyn Sink>> {
    match mode {
        WriteMode::Pwrite => Ok(Box::new(pwrite::PwriteSink::new(file))),
        WriteMode::Mmap => Ok(Box::new(mmap::MmapSink::new(file, total)?)),
    }
}

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("not enough disk space for {path}: {}", space_detail(*.needed, *.available))]
    DiskFull {
        path: PathBuf,
        needed: Option<u64>,
        available: Option<u64>,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Control(#[from] control_file::ControlError),
    /// A link where a file or folder of the download was to be written.
    #[error(
        "refusing to write through the symbolic link {path}: nothing is written outside the folder you named; remove the link, or name the folder it points to instead"
    )]
    Symlink { path: PathBuf },
}

fn space_detail(needed: Option<u64>, available: Option<u64>) -> String {
    use crate::size::Bytes as B;
    match (needed, available) {
        (Some(n), Some(a)) => format!("need {} more, {} free", B(n), B(a)),
        (Some(n), None) => format!("need {} more", B(n)),
        (None, Some(a)) => format!("only {} free", B(a)),
        (None, None) => "the disk is full".to_string(),
    }
}

impl StorageError {
    /// Wraps an io error, turning ENOSPC/EDQUOT into [`StorageError::DiskFull`].
    pub fn io(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> Self {
        let path = path.into();
        if is_disk_full(&source) {
            StorageError::DiskFull {
                path,
                needed: None,
                available: None,
            }
        } else {
            StorageError::Io {
                path,
                action,
                source,
            }
        }
    }
}

/// True for "no space left on device" and "disk quota exceeded".
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
