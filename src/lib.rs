//! hfd: a fast, crash-safe segmented downloader.

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
pub mod client;
pub mod engine;
pub mod exit;
pub mod extent;
pub mod hub;
pub mod mirrors;
pub mod net;
pub mod size;
pub mod storage;
mod sync;
pub mod ui;
