//! What can end a download, worded for the user, with its exit code.

use std::io;
use std::path::PathBuf;

use crate::client::{self, FailureKind, SourceId};
use crate::exit::ExitCode;
use crate::net::NetError;
use crate::storage::StorageError;
use crate::storage::control_file::ControlError;

/// Errors of a download, one per way it can stop. Those about one source
/// name it by [`SourceId`]: its place in the download's URLs and its URL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{url}: not found (HTTP {status})")]
    NotFound { url: SourceId, status: u16 },
    #[error("{url}: access denied (HTTP {status}){hint}")]
    Auth {
        url: SourceId,
        status: u16,
        hint: String,
    },
    #[error("{url}: gave up after {attempts} failed attempts{}: {last}", status_note(*.status))]
    GaveUp {
        url: SourceId,
        attempts: u32,
        status: Option<u16>,
        last: String,
        kind: FailureKind,
    },
    #[error(
        "{url}: the file changed on the server ({detail}). The partial download was kept; re-run with --allow-restart to discard it and start over"
    )]
    RemoteChanged { url: SourceId, detail: String },
    #[error("{url}: {detail}")]
    BadResponse { url: SourceId, detail: String },
    /// A source failed the caller's [`super::SourceCheck`].
    #[error("{url} serves another file: {detail}")]
    OtherFile { url: SourceId, detail: String },
    #[error("{url}: more than {max} redirects")]
    TooManyRedirects { url: SourceId, max: usize },
    #[error(
        "checksum mismatch for {path}: expected {algo} {expected}, got {actual}; the downloaded data was discarded"
    )]
    ChecksumMismatch {
        path: PathBuf,
        algo: &'static str,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{path} already exists; use -c to continue it, or --allow-overwrite to replace it")]
    FileExists { path: PathBuf },
    #[error("cannot resume {path}: {reason}")]
    CannotResume { path: PathBuf, reason: String },
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot rename {from} to {to}: {source}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A network failure retrying cannot help (a bad URL, a refused
    /// certificate, proxy credentials), about the source `url` when known.
    #[error("{error}")]
    Net {
        error: NetError,
        url: Option<SourceId>,
    },
    #[error("interrupted; progress is saved, run the same command again to resume")]
    Interrupted,
    #[error("{0}")]
    Config(String),
}

fn status_note(status: Option<u16>) -> String {
    status
        .map(|s| format!(" (last HTTP status {s})"))
        .unwrap_or_default()
}

impl Error {
    /// `e`, a request's error, as an error of the download about `source`.
    pub fn from_client(e: client::Error, url: SourceId) -> Error {
        match e {
            client::Error::NotFound { status, .. } => Error::NotFound { url, status },
            client::Error::Auth { status, hint, .. } => Error::Auth { url, status, hint },
            client::Error::BadResponse { detail, .. } => Error::BadResponse { url, detail },
            client::Error::TooManyRedirects { max, .. } => Error::TooManyRedirects { url, max },
            client::Error::Net(error) => Error::Net {
                error,
                url: Some(url),
            },
        }
    }

    /// The index (in the download's URLs) of the source this error is
    /// about, when one source caused it.
    pub fn source_index(&self) -> Option<usize> {
        match self {
            Error::NotFound { url, .. }
            | Error::Auth { url, .. }
            | Error::GaveUp { url, .. }
            | Error::RemoteChanged { url, .. }
            | Error::BadResponse { url, .. }
            | Error::OtherFile { url, .. }
            | Error::TooManyRedirects { url, .. } => Some(url.index),
            Error::Net { url, .. } => url.as_ref().map(|u| u.index),
            _ => None,
        }
    }

    /// The process exit status for this error (aria2c's numbers where it has one).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::NotFound { .. } => ExitCode::NotFound,
            Error::Auth { .. } => ExitCode::AuthFailed,
            Error::GaveUp { kind, .. } => match kind {
                FailureKind::Network => ExitCode::NetworkGaveUp,
                FailureKind::Timeout => ExitCode::Timeout,
                FailureKind::Dns => ExitCode::NameResolution,
                FailureKind::Overloaded => ExitCode::ServiceUnavailable,
                FailureKind::Proxy => ExitCode::ProxyFailed,
                FailureKind::Tls => ExitCode::TlsFailed,
                FailureKind::BadResponse => ExitCode::BadResponse,
            },
            Error::RemoteChanged { .. } | Error::OtherFile { .. } => ExitCode::RemoteChanged,
            Error::BadResponse { .. } => ExitCode::BadResponse,
            Error::TooManyRedirects { .. } => ExitCode::TooManyRedirects,
            Error::ChecksumMismatch { .. } => ExitCode::ChecksumMismatch,
            Error::Storage(StorageError::DiskFull { .. }) => ExitCode::DiskFull,
            Error::Storage(StorageError::Io { .. }) => ExitCode::IoError,
            Error::Storage(StorageError::Symlink { .. }) => ExitCode::CreateFailed,
            Error::Storage(StorageError::Control(c)) => match c {
                ControlError::Locked { .. } => ExitCode::AlreadyRunning,
                ControlError::FutureVersion { .. } | ControlError::NotOurs { .. } => {
                    ExitCode::CannotResume
                }
                _ => ExitCode::IoError,
            },
            Error::FileExists { .. } => ExitCode::FileExists,
            Error::CannotResume { .. } => ExitCode::CannotResume,
            Error::Create { .. } => ExitCode::CreateFailed,
            Error::Rename { .. } => ExitCode::RenameFailed,
            Error::Net { error, .. } => match error {
                NetError::Proxy { .. } => ExitCode::ProxyFailed,
                NetError::Tls { .. } => ExitCode::TlsFailed,
                NetError::Dns { .. } => ExitCode::NameResolution,
                NetError::BadUrl { .. } | NetError::Config(_) => ExitCode::BadOption,
                NetError::ResponseTimeout { .. } => ExitCode::Timeout,
                _ => ExitCode::NetworkGaveUp,
            },
            Error::Interrupted => ExitCode::Interrupted,
            Error::Config(_) => ExitCode::BadOption,
        }
    }
}
