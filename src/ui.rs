//! Showing progress: a live bar on a terminal, a few plain lines otherwise.
//!
//! The engine only bumps atomic counters; a display task samples them. Log
//! lines go through [`LogWriter`], which clears the bar while a line is
//! printed so the two never tear each other.

use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::engine::Progress;
use crate::size::{Bytes, Rate, format_duration};

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

/// True when stderr is a terminal we may draw on (not `TERM=dumb`).
pub fn stderr_is_terminal() -> bool {
    io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// Colour only on a terminal and never with `NO_COLOR` set (no-color.org).
pub fn use_color() -> bool {
    stderr_is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

static ACTIVE_BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();

fn active_bar() -> &'static Mutex<Option<ProgressBar>> {
    ACTIVE_BAR.get_or_init(|| Mutex::new(None))
}

/// Makes `bar` the one that log lines (and [`suspend`]) clear while they
/// print; `None` when it is gone. For displays other than [`Display`]
/// (hfd's one-line repo progress).
pub fn set_active_bar(bar: Option<ProgressBar>) {
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
pub fn init_logging(v: Verbosity) {
    let level = match v {
        Verbosity::Quiet => tracing::Level::ERROR,
        Verbosity::Normal => tracing::Level::WARN,
        Verbosity::Verbose => tracing::Level::INFO,
        Verbosity::Debug => tracing::Level::DEBUG,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(LogWriter)
        .with_ansi(use_color())
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

/// A running display of one progress.
pub struct Display {
    stop: Arc<tokio::sync::Notify>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Display {
    /// Starts drawing `progress` labelled `label`; draws nothing when quiet.
    pub fn start(label: String, progress: Arc<Progress>, v: Verbosity) -> Display {
        let stop = Arc::new(tokio::sync::Notify::new());
        let task = match v {
            Verbosity::Quiet => None,
            _ if stderr_is_terminal() => {
                Some(tokio::spawn(draw_bar(label, progress, stop.clone())))
            }
            _ => Some(tokio::spawn(draw_lines(label, progress, stop.clone()))),
        };
        Display { stop, task }
    }

    /// Stops drawing and clears the bar.
    pub async fn finish(mut self) {
        self.stop.notify_one();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

async fn draw_bar(label: String, progress: Arc<Progress>, stop: Arc<tokio::sync::Notify>) {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
    let style = ProgressStyle::with_template(
        "{prefix} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta_precise} CN:{msg}",
    )
    .expect("valid template")
    .with_key("eta_precise", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = write!(w, "{}", format_duration(s.eta()));
    })
    .progress_chars("=> ");
    let spinner =
        ProgressStyle::with_template("{prefix} {spinner} {bytes} {binary_bytes_per_sec} CN:{msg}")
            .expect("valid template");
    bar.set_prefix(label);
    *active_bar().lock().unwrap() = Some(bar.clone());
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut has_len = false;
    loop {
        match progress.total() {
            Some(t) if !has_len => {
                bar.set_length(t);
                bar.set_style(style.clone());
                has_len = true;
            }
            None if !has_len => bar.set_style(spinner.clone()),
            _ => {}
        }
        bar.set_position(progress.done());
        bar.set_message(progress.connections().to_string());
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.notified() => break,
        }
    }
    *active_bar().lock().unwrap() = None;
    bar.finish_and_clear();
}

async fn draw_lines(label: String, progress: Arc<Progress>, stop: Arc<tokio::sync::Notify>) {
    let start = Instant::now();
    let mut last_line = Instant::now();
    let mut last_tenth = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.notified() => break,
        }
        let done = progress.done();
        let elapsed = start.elapsed().as_secs_f64().max(1e-3);
        let rate = progress.received() as f64 / elapsed;
        let (tenth, pct) = match progress.total() {
            Some(t) if t > 0 => (done * 10 / t, format!("{:>3}%", done * 100 / t)),
            _ => (0, "   ?".to_string()),
        };
        // A line per tenth of the file, but not more than every 5 s; and one
        // at least every minute so logs show the download is alive.
        let due = (tenth > last_tenth && last_line.elapsed() >= Duration::from_secs(5))
            || last_line.elapsed() >= Duration::from_secs(60);
        if due {
            last_tenth = tenth;
            last_line = Instant::now();
            let total = progress
                .total()
                .map(|t| format!("/{}", Bytes(t)))
                .unwrap_or_default();
            let eta = match progress.total() {
                Some(t) if rate > 0.0 => format!(
                    " ETA {}",
                    format_duration(Duration::from_secs_f64(
                        t.saturating_sub(done) as f64 / rate
                    ))
                ),
                _ => String::new(),
            };
            crate::tell!(
                "{label}: {pct} {}{total} {}{eta} CN:{}",
                Bytes(done),
                Rate(rate),
                progress.connections()
            );
        }
    }
}
