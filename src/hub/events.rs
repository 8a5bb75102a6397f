//! What an hfd run tells whoever shows it: typed events, in order.
//!
//! The flow ([`super::run`]) decides what happened; a presenter
//! ([`crate::ui::Presenter`], or a test's recorder) decides how it looks.
//! Byte progress is not an event: the engine bumps [`Counters`] and the
//! presenter samples them as often as it draws.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use super::endpoint::{Endpoint, RepoId};
use super::run::Status;
use crate::engine::Progress;

/// The counters hfd's progress is drawn from.
#[derive(Clone)]
pub struct Counters {
    /// Bytes of the selected files (done + received), summed over files.
    pub bytes: Arc<Progress>,
    pub files_done: Arc<AtomicUsize>,
    pub files_total: usize,
    pub bytes_total: u64,
}

impl Counters {
    pub fn new(files_total: usize, bytes_total: u64) -> Counters {
        let bytes = Progress::new();
        bytes.set_total(Some(bytes_total));
        Counters {
            bytes,
            files_done: Arc::new(AtomicUsize::new(0)),
            files_total,
            bytes_total,
        }
    }
}

/// One thing that happened in a run.
pub enum Event<'a> {
    /// The run starts on `repo` at `revision`.
    Started { repo: &'a RepoId, revision: &'a str },
    /// Listing the repo's tree: entries scanned so far.
    Listing { scanned: usize },
    /// The tree listing ended (successfully or not).
    ListingEnded,
    /// The selected files of the listing.
    Listed { files: usize, bytes: u64 },
    /// Local files of the right size are being hashed.
    Verifying { files: usize },
    /// Downloads start.
    Downloading {
        files: usize,
        dir: &'a Path,
        /// Some files (or parts of them) are already here.
        resuming: bool,
        /// More than one: every file comes from all of them at once.
        endpoints: &'a [Endpoint],
        /// `--verify-origin`: every hash comes from this endpoint.
        verify_origin: Option<&'a Endpoint>,
        counters: &'a Counters,
    },
    /// `--dry-run`: the selected files and which are already here; nothing
    /// is fetched or written after this.
    Plan {
        files: &'a [Planned<'a>],
        dir: &'a Path,
    },
    /// A file failed; the others go on.
    FileFailed { path: &'a str, error: &'a FileError },
    /// Something the user should know; the run goes on.
    Warning(&'a str),
    /// Why the run cannot go on (a bad repo, revision, access, ...).
    Error(&'a str),
    /// The verdict.
    Finished(&'a Verdict),
}

/// One selected file of a dry run.
pub struct Planned<'a> {
    pub path: &'a str,
    pub size: u64,
    /// Present and current: the check a real run makes to call it up to
    /// date said so; otherwise a run would download it.
    pub current: bool,
}

/// How a run ended, with what the user is told about it.
pub enum Verdict {
    /// `--dry-run`: what a run would download (`need` of `files`, `bytes`).
    DryRun {
        files: usize,
        need: usize,
        bytes: u64,
    },
    /// `dir`: the local dir, or the snapshot folder in the cache.
    UpToDate {
        files: usize,
        dir: PathBuf,
    },
    Done {
        files: usize,
        bytes: u64,
        dir: PathBuf,
    },
    Incomplete {
        failed: usize,
        files: usize,
    },
    Interrupted,
    /// The reason was an [`Event::Error`].
    Failed,
}

impl Verdict {
    pub fn status(&self) -> Status {
        match self {
            Verdict::UpToDate { .. } => Status::UpToDate,
            Verdict::DryRun { .. } => Status::DryRun,
            Verdict::Done { .. } => Status::Done,
            Verdict::Incomplete { .. } => Status::Incomplete,
            Verdict::Interrupted => Status::Interrupted,
            Verdict::Failed => Status::Failed,
        }
    }
}

/// Why one file could not be downloaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FileError {
    #[error(
        "not found on {endpoint} (HTTP {status}); the file may have been removed, or the mirror lacks it"
    )]
    NotFound { endpoint: String, status: u16 },
    #[error(
        "access denied (HTTP {status}). If {repo} is gated, accept its terms on {page} and pass --hf_token or set HF_TOKEN; check the token's permissions"
    )]
    Denied {
        status: u16,
        repo: String,
        page: String,
    },
    #[error("the data did not match its {algo} in {attempts} attempts and was discarded")]
    Checksum { algo: &'static str, attempts: u32 },
    #[error(
        "does not match the origin: {origin} states another {algo} for this file; the endpoint's bytes were refused and discarded"
    )]
    Origin { algo: &'static str, origin: String },
    #[error(
        "the origin {origin} states no hash for this file, so --verify-origin cannot check it; it was not downloaded"
    )]
    OriginNoHash { origin: String },
    #[error("the downloaded data does not match the {algo} the Hub states; it was discarded")]
    HubHash { algo: &'static str },
    #[error("the server sent {sent} bytes, the listing says {listed}")]
    Size { sent: u64, listed: u64 },
    #[error("another process is downloading this file")]
    Busy,
    /// Anything else, in the engine's words.
    #[error("{0}")]
    Other(String),
}

/// Whoever shows a run. Called from the run's tasks; must not block.
pub trait Events: Send + Sync {
    fn event(&self, e: Event<'_>);
}
