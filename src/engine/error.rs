//! What can end a download, worded for the user, with its exit code.

use std::io;
use std::path::PathBuf;

use crate::exit::ExitCode;
use crate::net::NetError;
use crate::storage::StorageError;
use crate::storage::control_file::ControlError;

/// Why retries ran out: decides the exit code of a give-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GaveUpKind {
    Network,
    Timeout,
    Dns,
    Overloaded,
    Proxy,
    Tls,
    BadResponse,
}

/// Errors of a download, one per way it can stop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{url}: not found (HTTP {status})")]
    NotFound { url: String, status: u16 },
    #[error("{url}: access denied (HTTP {status}){hint}")]
    Auth {
        url: String,
        status: u16,
        hint: String,
    },
    #[error("{url}: gave up after {attempts} failed attempts{}: {last}", status_note(*.status))]
    GaveUp {
        url: String,
        attempts: u32,
        status: Option<u16>,
        last: String,
        kind: GaveUpKind,
    },
    #[error(
        "{url}: the file changed on the server ({detail}). The partial download was kept; re-run with --allow-restart to discard it and start over"
    )]
    RemoteChanged { url: String, detail: String },
    #[error("{url}: {detail}")]
    BadResponse { url: String, detail: String },
    /// A source failed the caller's [`super::SourceCheck`].
    #[error("{url} serves another file: {detail}")]
    OtherFile { url: String, detail: String },
    #[error("{url}: more than {max} redirects")]
    TooManyRedirects { url: String, max: usize },
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
    #[error("{0}")]
    Net(NetError),
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
    /// The process exit status for this error (aria2c's numbers where it has one).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::NotFound { .. } => ExitCode::NotFound,
            Error::Auth { .. } => ExitCode::AuthFailed,
            Error::GaveUp { kind, .. } => match kind {
                GaveUpKind::Network => ExitCode::NetworkGaveUp,
                GaveUpKind::Timeout => ExitCode::Timeout,
                GaveUpKind::Dns => ExitCode::NameResolution,
                GaveUpKind::Overloaded => ExitCode::ServiceUnavailable,
                GaveUpKind::Proxy => ExitCode::ProxyFailed,
                GaveUpKind::Tls => ExitCode::TlsFailed,
                GaveUpKind::BadResponse => ExitCode::BadResponse,
            },
            Error::RemoteChanged { .. } | Error::OtherFile { .. } => ExitCode::RemoteChanged,
            Error::BadResponse { .. } => ExitCode::BadResponse,
            Error::TooManyRedirects { .. } => ExitCode::TooManyRedirects,
            Error::ChecksumMismatch { .. } => ExitCode::ChecksumMismatch,
            Error::Storage(StorageError::DiskFull { .. }) => ExitCode::DiskFull,
            Error::Storage(StorageError::Io { .. }) => ExitCode::IoError,
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
            Error::Net(n) => match n {
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
