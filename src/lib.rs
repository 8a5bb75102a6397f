//! hfd: a fast, crash-safe segmented downloader, and a drop-in for the
//! hfd.sh Hugging Face downloader built on it.
//!
//! The layers, top down (docs/architecture.md draws them; each depends only
//! on those below it):
//!
//! - [`cli`], [`ui`]: the command lines of the two binaries, and what the
//!   user sees (one presenter; colour and terminal decided in one place);
//! - [`hub`]: the Hugging Face front end of `hfd`: listing, selection,
//!   local state, a repo's files downloaded as a queue, typed run events;
//! - [`serve`]: `hfd serve`, a cache folder served with the Hub's API;
//! - [`mirrors`]: measuring sources (`--bench`);
//! - [`engine`]: one file over many connections, resumable, verified;
//! - [`xet`]: the Hub's Xet storage protocol (chunks, hashes,
//!   reconstructions, CAS tokens), which the engine's Xet stage runs;
//! - [`client`]: requests as every caller sends them (redirects by hand,
//!   credentials per origin, one status table, one retry driver);
//! - [`storage`]: the file's on-disk life, the writer, the control file;
//! - [`net`]: connections: routes through proxies, TLS, HTTP/1.1 and 2;
//! - [`exit`], [`size`], [`extent`]: exit codes, sizes and rates, byte-range
//!   sets.
//!
//! The items most callers need are re-exported here.

/// `println!` that ignores a closed stdout: `hfget URL | head -1` must not
/// turn a finished download into a panic and exit code 101.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that ignores a closed stderr (`2>&-`, a dead log pipe).
#[macro_export]
macro_rules! tell {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod cli;
pub mod ui;

pub mod hub;
pub mod mirrors;
pub mod serve;

pub mod engine;

pub mod xet;

pub mod client;

pub mod storage;

pub mod net;

pub mod exit;
pub mod extent;
pub mod size;
mod sync;

pub use client::RetryPolicy;
pub use engine::{Checksum, DownloadSpec, Outcome, Progress, download};
pub use exit::ExitCode;
pub use net::{Net, NetOptions};
