//! Process exit codes.
//!
//! `hfget` keeps aria2c's numbers where aria2c has one, so scripts written
//! against aria2c keep working; codes above 32 are ours. `hfd` exits 0, 1 or
//! 130 like hfd.sh.

/// Why `hfget` stopped. The numeric value is the process exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExitCode {
    Ok = 0,
    Unknown = 1,
    Timeout = 2,
    NotFound = 3,
    NetworkGaveUp = 6,
    /// Stopped by Ctrl-C or SIGTERM; progress was saved.
    Interrupted = 7,
    CannotResume = 8,
    DiskFull = 9,
    /// Another process is writing the same file.
    AlreadyRunning = 11,
    FileExists = 13,
    RenameFailed = 14,
    CreateFailed = 16,
    IoError = 17,
    NameResolution = 19,
    BadResponse = 22,
    TooManyRedirects = 23,
    AuthFailed = 24,
    BadOption = 28,
    ServiceUnavailable = 29,
    ChecksumMismatch = 32,
    /// The file on the server changed since the download started (ours; aria2c
    /// does not detect this).
    RemoteChanged = 40,
    /// A proxy refused, failed or could not be reached (ours).
    ProxyFailed = 41,
    /// TLS failed: unknown issuer, bad certificate, handshake error (ours).
    TlsFailed = 42,
}

impl ExitCode {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Every code with a short description, for `--help` and the docs.
    pub const TABLE: &'static [(ExitCode, &'static str)] = &[
        (
            ExitCode::Ok,
            "the file is complete under its final name (and its checksum matched)",
        ),
        (ExitCode::Unknown, "an unexpected error"),
        (
            ExitCode::Timeout,
            "the server stopped sending and retries ran out",
        ),
        (
            ExitCode::NotFound,
            "the server says the file does not exist (404/410)",
        ),
        (
            ExitCode::NetworkGaveUp,
            "network errors went on until --max-tries ran out",
        ),
        (
            ExitCode::Interrupted,
            "stopped by Ctrl-C or SIGTERM; re-run to resume",
        ),
        (
            ExitCode::CannotResume,
            "the saved progress cannot be used (see the message)",
        ),
        (ExitCode::DiskFull, "not enough disk space"),
        (
            ExitCode::AlreadyRunning,
            "another hfget is downloading the same file",
        ),
        (
            ExitCode::FileExists,
            "the output file exists (use -c or --allow-overwrite)",
        ),
        (
            ExitCode::RenameFailed,
            "the finished file could not be renamed to its final name",
        ),
        (
            ExitCode::CreateFailed,
            "the output file or folder could not be created",
        ),
        (
            ExitCode::IoError,
            "a read or write on the local disk failed",
        ),
        (
            ExitCode::NameResolution,
            "the host name could not be resolved",
        ),
        (
            ExitCode::BadResponse,
            "the server answered with something unusable",
        ),
        (ExitCode::TooManyRedirects, "more than 20 redirects"),
        (ExitCode::AuthFailed, "the server refused access (401/403)"),
        (ExitCode::BadOption, "a command-line option is wrong"),
        (
            ExitCode::ServiceUnavailable,
            "the server stayed overloaded (429/503)",
        ),
        (
            ExitCode::ChecksumMismatch,
            "the checksum did not match; the data was discarded",
        ),
        (
            ExitCode::RemoteChanged,
            "the file changed on the server (use --allow-restart)",
        ),
        (
            ExitCode::ProxyFailed,
            "the proxy refused, failed or could not be reached",
        ),
        (ExitCode::TlsFailed, "TLS failed (certificate or handshake)"),
    ];
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(c: ExitCode) -> Self {
        std::process::ExitCode::from(c.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_listed() {
        let mut seen = std::collections::HashSet::new();
        for (c, _) in ExitCode::TABLE {
            assert!(seen.insert(c.code()), "duplicate {c:?}");
        }
        assert_eq!(seen.len(), ExitCode::TABLE.len());
    }
}
