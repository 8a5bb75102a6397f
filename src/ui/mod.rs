//! What the user sees: one presenter for both binaries.
//!
//! - [`term`]: the one place that decides colour, terminal and `NO_COLOR`;
//! - [`live`]: the progress view (hfget's bar, hfd's repo line), redrawn on
//!   a terminal, a plain line now and then otherwise;
//! - [`presenter`]: messages in hfd.sh's and hfget's words, and hfd's run
//!   events drawn;
//! - here: verbosity and logging. Log lines go through [`LogWriter`], which
//!   clears the progress line while a line is printed so the two never tear
//!   each other.

pub mod live;
pub mod presenter;
pub mod term;

use std::io::{self, Write};
use std::sync::{Mutex, OnceLock};

use indicatif::ProgressBar;

pub use live::{Live, Meter};
pub use presenter::Presenter;
pub use term::{Style, Term};

/// A byte count as hfd.sh prints it: decimal units, two decimals, no space
/// (`512B`, `1.50MB`, `2.15GB`).
pub fn human(n: u64) -> String {
    crate::size::DecimalBytes(n).to_string().replace(' ', "")
}

/// `file` or `files`, as hfd.sh words it.
pub fn files_noun(n: usize) -> &'static str {
    if n == 1 { "file" } else { "files" }
}

/// How much to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
    Debug,
}

impl Verbosity {
    /// From `-q` and the count of `-v` (both binaries spell them alike).
    pub fn from_flags(quiet: bool, verbose: u8) -> Verbosity {
        match (quiet, verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, 1) => Verbosity::Verbose,
            _ => Verbosity::Debug,
        }
    }
}

static ACTIVE_BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();

fn active_bar() -> &'static Mutex<Option<ProgressBar>> {
    ACTIVE_BAR.get_or_init(|| Mutex::new(None))
}

/// Makes `bar` the one that log lines (and [`suspend`]) clear while they
/// print; `None` when it is gone.
pub(crate) fn set_active_bar(bar: Option<ProgressBar>) {
    *active_bar().lock().unwrap() = bar;
}

/// Runs `f` (which prints) with the active progress bar cleared, so the
/// printed line and the bar never tear each other.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bar = active_bar().lock().unwrap().clone();
    match bar {
        Some(b) => b.suspend(f),
        None => f(),
    }
}

/// A `tracing` writer that prints above the progress bar.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let bar = active_bar().lock().unwrap().clone();
        match bar {
            Some(b) => b.suspend(|| io::stderr().write_all(buf))?,
            None => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

/// Sets up logging on stderr for the chosen verbosity (`RUST_LOG`-free on
/// purpose: `-v` and `-vv` are the interface).
pub fn init_logging(v: Verbosity, term: Term) {
    let level = match v {
        Verbosity::Quiet => tracing::Level::ERROR,
        Verbosity::Normal => tracing::Level::WARN,
        Verbosity::Verbose => tracing::Level::INFO,
        Verbosity::Debug => tracing::Level::DEBUG,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(LogWriter)
        .with_ansi(term.color_err)
        .with_target(false);
    // Debug output is for timelines: stamp it with the time since start.
    let _ = if v == Verbosity::Debug {
        builder
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .try_init()
    } else {
        builder.without_time().try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_hfd_sh() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(999), "999B");
        assert_eq!(human(1500), "1.50KB");
        assert_eq!(human(2_150_000_000), "2.15GB");
        assert_eq!(files_noun(1), "file");
        assert_eq!(files_noun(2), "files");
    }
}
